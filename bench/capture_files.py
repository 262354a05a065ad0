#!/usr/bin/python3
"""Checks capture files of the capture benchmarks.

Usage: capture_files.py PORT SNAPLEN FILE...
Prints one line per file: FILE RECORDS BAD, where BAD counts the records
that are not an IPv4 UDP datagram to PORT or whose captured length is not
min(length on the wire, SNAPLEN). A file that cannot be read or is not a
pcap file prints RECORDS 0 and BAD -1.
"""
import struct
import sys


def check(path, port, snap):
    try:
        f = open(path, "rb")
    except OSError:
        return 0, -1
    with f:
        head = f.read(24)
        if len(head) < 24 or struct.unpack("<I", head[:4])[0] not in (0xA1B2C3D4, 0xA1B23C4D):
            return 0, -1
        records = bad = 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                bad += len(rec) != 0  # a cut record header
                return records, bad
            _, _, caplen, wirelen = struct.unpack("<IIII", rec)
            data = f.read(caplen)
            records += 1
            ok = (len(data) == caplen and caplen == min(wirelen, snap) and len(data) >= 38
                  and data[12:14] == b"\x08\x00" and data[23] == 17)
            if ok:
                ihl = (data[14] & 15) * 4
                ok = (len(data) >= 14 + ihl + 4
                      and struct.unpack("!H", data[16 + ihl:18 + ihl])[0] == port)
            bad += not ok


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    port, snap = int(sys.argv[1]), int(sys.argv[2])
    for path in sys.argv[3:]:
        records, bad = check(path, port, snap)
        print(path, records, bad)


main()
