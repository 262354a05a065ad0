// One parse of an Ethernet frame's L2-L4 headers, shared by every reference
// filter. The rules are docs/filter-semantics.md, "Parsing", to the letter:
// every implementation of the header filters must derive the same fields
// from the same bytes.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace srl::filters {

enum class L3Kind : std::uint8_t { none, ipv4, ipv6 };
enum class L4Kind : std::uint8_t { none, tcp, udp, icmp };

// `l4_proto` when it is unknown: no IP header, or an IPv6 extension-header
// chain that is too long or does not fit.
inline constexpr std::uint8_t kUnknownProto = 255;

struct ParsedPacket {
  std::uint32_t len = 0;  // bytes captured: the whole frame, no FCS
  // Length on the wire, where a capture kept less (snap length): what
  // `len`, `count`'s bytes, `rate`'s bits and classic BPF's `len` (tcpdump's
  // `greater`, `less`) see. 0: unknown, the frame is whole (see wire()).
  std::uint32_t wire_len = 0;

  // Layer 2.
  bool eth = false;             // the 14-byte Ethernet header fits
  std::uint8_t vlan_count = 0;  // tags parsed (0, 1 or 2)
  std::uint16_t vlan_id = 0;    // VID of the outermost tag, when vlan_count > 0
  std::uint16_t ethertype = 0;  // after the parsed tags
  std::uint32_t l3_offset = 0;  // 14 + 4 per parsed tag

  // Layer 3. `l3` is also the address family of saddr/daddr.
  L3Kind l3 = L3Kind::none;
  std::array<std::uint8_t, 16> saddr{};  // IPv4: the first 4 bytes, the rest 0
  std::array<std::uint8_t, 16> daddr{};
  std::uint8_t l4_proto = kUnknownProto;  // IPv4 protocol / IPv6 upper-layer header
  bool non_first_fragment = false;        // fragment offset != 0: no L4 header
  std::uint32_t l4_offset = 0;            // where the L4 header starts (may be >= len)

  // Layer 4 (first fragments and unfragmented packets only).
  L4Kind l4 = L4Kind::none;
  std::uint16_t sport = 0;  // TCP/UDP only
  std::uint16_t dport = 0;
  std::uint8_t tcp_flags = 0;  // TCP only: byte 13

  bool is_ip() const { return l3 != L3Kind::none; }
  // Bytes of each address: 4, 16, or 0 without IP.
  std::size_t addr_len() const { return l3 == L3Kind::ipv4 ? 4 : l3 == L3Kind::ipv6 ? 16 : 0; }
  bool has_ports() const { return l4 == L4Kind::tcp || l4 == L4Kind::udp; }
  std::uint32_t wire() const { return wire_len > len ? wire_len : len; }
};

// Total on every input: never reads outside `frame`. `wire_len`: the
// frame's length on the wire where `frame` holds less of it (a capture's
// snap length), else 0.
ParsedPacket parse_packet(std::span<const std::uint8_t> frame, std::uint32_t wire_len = 0);

}  // namespace srl::filters
