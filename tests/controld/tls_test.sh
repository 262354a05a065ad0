#!/usr/bin/env bash
# controld over TCP with TLS both ways, on loopback: a client whose verified
# certificate names root may list and apply; one naming a user outside the
# daemon's group is refused; one naming no local user, one without a
# certificate, and one signed by another CA do not get in.
# Usage: tls_test.sh CONTROLD SRL
set -uo pipefail
controld=$(realpath "$1")
srl=$(realpath "$2")
command -v openssl >/dev/null || { echo "skipped: no openssl"; exit 77; }
tmp=$(mktemp -d)
dpid=""
cleanup() {
  [[ -n $dpid ]] && { kill -TERM "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

cd "$tmp"
ca() {  # NAME: a self-signed CA
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
cert() {  # CA CN FILE [SAN]: a certificate for CN signed by CA
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$3.key" -out "$3.csr" 2>/dev/null
  local ext=()
  [[ -n ${4:-} ]] && { printf 'subjectAltName=%s\n' "$4" >"$3.ext"; ext=(-extfile "$3.ext"); }
  openssl x509 -req -in "$3.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial -days 2 \
    -out "$3.pem" "${ext[@]}" 2>/dev/null
}
ca ca
ca other
cert ca localhost server "IP:127.0.0.1,DNS:localhost"
cert ca root client-root
cert ca daemon client-outsider
cert ca no-such-user-srl client-unknown
cert other root client-foreign

"$controld" --socket "$tmp/controld.sock" --group nogroup --state "$tmp/state.db" \
  --bpffs "$tmp/bpffs" --tcp 127.0.0.1:0 --tls-cert server.pem --tls-key server.key \
  --tls-client-ca ca.pem 2>"$tmp/log" &
dpid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.* listening tcp_port=\([0-9]*\).*/\1/p' "$tmp/log")
  [[ -n $port ]] && break
  sleep 0.05
done
[[ -n $port ]] && ok "listens on TCP port $port" || { fail "no TCP port: $(cat "$tmp/log")"; exit 1; }

as() {  # CLIENT-FILE srl ARGS...
  local who=$1
  shift
  "$srl" "$@" --socket "127.0.0.1:$port" --tls-ca ca.pem --tls-cert "$who.pem" --tls-key "$who.key"
}
capture=$tmp/in.pcap
python3 - "$capture" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    frame = bytes(12) + b"\x08\x00" + bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17]) + bytes(10) + bytes(8)
    for i in range(3):
        f.write(struct.pack("<IIII", 1700000000 + i, 0, len(frame), len(frame)) + frame)
PY
out=$(as client-root apply -n replay -e "(pcapin, file=\"$capture\") > (udp) > (count)" 2>&1)
[[ $? -eq 0 && $out == *"applied replay"* ]] && ok "root's certificate: apply" || fail "root apply: $out"
out=$(as client-root ls -q 2>&1)
[[ $out == replay ]] && ok "root's certificate: ls" || fail "root ls: $out"
out=$(as client-outsider ls 2>&1)
[[ $? -eq 1 && $out == *"neither root nor in group nogroup"* ]] && ok "outsider's certificate: refused" \
  || fail "outsider: $out"
out=$(as client-unknown ls 2>&1)
[[ $? -eq 1 && $out == *"credentials are unknown"* ]] && ok "no such local user: refused" \
  || fail "unknown user: $out"
out=$("$srl" ls --socket "127.0.0.1:$port" --tls-ca ca.pem 2>&1)
[[ $? -eq 1 ]] && ok "no client certificate: no connection" || fail "no cert: $out"
out=$(as client-foreign ls 2>&1)
[[ $? -eq 1 && $out != *replay* ]] && ok "a certificate of another CA: no connection" \
  || fail "foreign: $out"
as client-root rm replay >/dev/null 2>&1 && ok "root's certificate: rm" || fail "root rm"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
