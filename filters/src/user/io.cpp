// Helpers the file and pipe sinks share: little-endian output and the pcap
// record layout.
#include "io.h"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace srl::filters::user {

void append_le16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}

void append_le32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void append_le64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void append_pcap_header(std::vector<std::uint8_t>& out, std::uint32_t snaplen) {
  append_le32(out, kPcapNanoMagic);
  append_le16(out, 2);  // version 2.4
  append_le16(out, 4);
  append_le32(out, 0);  // thiszone
  append_le32(out, 0);  // sigfigs
  append_le32(out, snaplen);
  append_le32(out, kLinktypeEthernet);
}

std::size_t append_pcap_record(std::vector<std::uint8_t>& out, const Block& block,
                               std::uint32_t snaplen) {
  // The sinks' per-packet path: the header goes in as one 16-byte piece.
  const std::size_t caplen = std::min<std::size_t>(block.data.size(), snaplen);
  const auto wire = block.wire();
  const std::uint32_t fields[4] = {
      static_cast<std::uint32_t>(block.ts_ns / 1'000'000'000),
      static_cast<std::uint32_t>(block.ts_ns % 1'000'000'000), static_cast<std::uint32_t>(caplen),
      static_cast<std::uint32_t>(std::min<std::uint64_t>(wire, UINT32_MAX))};
  std::uint8_t header[16];
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(header, fields, sizeof header);
  } else {
    for (int i = 0; i < 16; ++i)
      header[i] = static_cast<std::uint8_t>(fields[i / 4] >> (8 * (i % 4)));
  }
  out.insert(out.end(), header, header + 16);
  out.insert(out.end(), block.data.begin(),
             block.data.begin() + static_cast<std::ptrdiff_t>(caplen));
  return caplen;
}

std::string proto_text(std::uint8_t proto) {
  switch (proto) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 58:
      return "icmp6";
    case kUnknownProto:
      return "unknown-proto";
    default:
      return "ip-proto-" + std::to_string(proto);
  }
}

std::string address_text(L3Kind family, const std::array<std::uint8_t, 16>& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == L3Kind::ipv4)
    inet_ntop(AF_INET, addr.data(), text, sizeof text);
  else if (family == L3Kind::ipv6)
    inet_ntop(AF_INET6, addr.data(), text, sizeof text);
  else
    return "?";
  return text;
}

}  // namespace srl::filters::user
