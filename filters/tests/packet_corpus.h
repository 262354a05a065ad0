// Test frames for the L2-L4 filters: small builders for hand-made frames and
// a deterministic standard corpus shared by the reference filter tests and
// the kernel differential tests (same names, same bytes, every build).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace srl::testing {

using Bytes = std::vector<std::uint8_t>;
using Ip4 = std::array<std::uint8_t, 4>;
using Ip6 = std::array<std::uint8_t, 16>;

struct TestFrame {
  std::string name;  // unique in the corpus, e.g. "ipv4-tcp-syn", "trunc/arp/13"
  Bytes bytes;       // the whole Ethernet frame, no FCS
};

Bytes operator+(Bytes a, const Bytes& b);
// The bytes of `s` (payloads written as text).
Bytes text(std::string_view s);

// Addresses from text ("192.0.2.1", "2001:db8::1"); throws on bad text.
Ip4 ip4(std::string_view text);
Ip6 ip6(std::string_view text);

struct Vlan {
  std::uint16_t vid = 0;  // the low 12 bits of the TCI
  std::uint16_t tpid = 0x8100;
  std::uint8_t pcp = 0;
  bool dei = false;
};

// Destination 02:00:00:00:00:02, source 02:00:00:00:00:01, then the tags
// (outermost first), then `ethertype`.
Bytes ethernet(std::uint16_t ethertype, const std::vector<Vlan>& tags = {});

struct Ipv4Fields {
  std::uint16_t frag_offset = 0;  // in 8-byte units (13 bits)
  bool more_fragments = false;
  bool dont_fragment = false;
  Bytes options;  // padded with zeros to a multiple of 4
  std::uint8_t version = 4;
  std::optional<std::uint8_t> ihl;  // default: from the options' length
  std::uint8_t ttl = 64;
};
// An IPv4 header (correct header checksum) followed by `payload`.
Bytes ipv4(std::uint8_t proto, Ip4 src, Ip4 dst, const Bytes& payload, const Ipv4Fields& f = {});

// An IPv6 header followed by `payload` (extension headers included).
Bytes ipv6(std::uint8_t next, Ip6 src, Ip6 dst, const Bytes& payload, std::uint8_t version = 6);
// Hop-by-hop (0), routing (43) or destination options (60) header of
// (len_field + 1) * 8 bytes.
Bytes ipv6_ext(std::uint8_t next, std::uint8_t len_field = 0);
// Authentication header (51) of (len_field + 2) * 4 bytes.
Bytes ipv6_ah(std::uint8_t next, std::uint8_t len_field = 4);
// Fragment header (44); `offset` in 8-byte units.
Bytes ipv6_frag(std::uint8_t next, std::uint16_t offset, bool more_fragments,
                std::uint32_t id = 0x1234);

namespace tcpflag {
inline constexpr std::uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10,
                              urg = 0x20, ece = 0x40, cwr = 0x80;
}
// A TCP header with `options` (padded with EOL to a multiple of 4) and
// `payload`; `data_offset` overrides the computed one. Checksum left 0.
Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, const Bytes& options = {},
          const Bytes& payload = {}, std::optional<std::uint8_t> data_offset = {});
// MSS, SACK permitted, timestamps, NOP, window scale: 20 bytes, as in a SYN.
Bytes tcp_syn_options();
Bytes udp(std::uint16_t sport, std::uint16_t dport, const Bytes& payload = {});
// ICMP / ICMPv6 message (checksum left 0).
Bytes icmp(std::uint8_t type, std::uint8_t code, const Bytes& payload = {});
// The 28-byte ARP request body (Ethernet/IPv4).
Bytes arp_request(Ip4 sender, Ip4 target);

// The standard corpus: hand-made frames of every kind the L2-L4 parser
// distinguishes, every truncation of several of them, and seeded random
// garbage. Deterministic; names are unique. Includes frames shorter than an
// Ethernet header (down to 0 bytes).
std::vector<TestFrame> standard_corpus();

// A 20-byte TCP header with the given sequence and acknowledgment numbers
// and window, then `payload`. Checksum left 0.
Bytes tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
                  std::uint8_t flags, const Bytes& payload = {}, std::uint16_t window = 65535);

}  // namespace srl::testing
