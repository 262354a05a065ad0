// docs/filter-semantics.md, "Parsing". Every read goes through `fits()` first;
// offsets are size_t and bounded by header lengths, so they cannot wrap.
#include "srl/filters/packet.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace srl::filters {
namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherVlan = 0x8100;
constexpr std::uint16_t kEtherQinQ = 0x88A8;
constexpr std::size_t kEthLen = 14;
constexpr std::size_t kMaxVlanTags = 2;
constexpr std::size_t kMaxIpv6ExtHeaders = 4;

constexpr std::uint8_t kProtoIcmp = 1;
constexpr std::uint8_t kProtoTcp = 6;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kProtoIcmpv6 = 58;
constexpr std::uint8_t kIpv6HopByHop = 0;
constexpr std::uint8_t kIpv6Routing = 43;
constexpr std::uint8_t kIpv6Fragment = 44;
constexpr std::uint8_t kIpv6Ah = 51;
constexpr std::uint8_t kIpv6DestOpts = 60;

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> f) : f_(f) {}
  bool fits(std::size_t off, std::size_t n) const {
    return off <= f_.size() && n <= f_.size() - off;
  }
  std::uint8_t u8(std::size_t off) const { return f_[off]; }
  std::uint16_t u16(std::size_t off) const {
    return static_cast<std::uint16_t>((f_[off] << 8) | f_[off + 1]);
  }
  void copy(std::size_t off, std::size_t n, std::uint8_t* out) const {
    std::memcpy(out, f_.data() + off, n);
  }

 private:
  std::span<const std::uint8_t> f_;
};

bool skipped_ext_header(std::uint8_t next) {
  return next == kIpv6HopByHop || next == kIpv6Routing || next == kIpv6DestOpts || next == kIpv6Ah;
}

// Step 3. Leaves `p.l3` none when the header is not a valid IPv4 one.
void parse_ipv4(const Reader& r, ParsedPacket& p) {
  const std::size_t off = p.l3_offset;
  if (!r.fits(off, 1)) return;
  const std::uint8_t vihl = r.u8(off);
  const std::size_t ihl = vihl & 0x0Fu;
  if ((vihl >> 4) != 4 || ihl < 5 || !r.fits(off, ihl * 4)) return;
  p.l3 = L3Kind::ipv4;
  p.l4_proto = r.u8(off + 9);
  r.copy(off + 12, 4, p.saddr.data());
  r.copy(off + 16, 4, p.daddr.data());
  p.non_first_fragment = (r.u16(off + 6) & 0x1FFFu) != 0;
  p.l4_offset = static_cast<std::uint32_t>(off + ihl * 4);
}

// Step 4. Leaves `p.l3` none when the fixed header is not a valid IPv6 one.
void parse_ipv6(const Reader& r, ParsedPacket& p) {
  std::size_t off = p.l3_offset;
  if (!r.fits(off, 40) || (r.u8(off) >> 4) != 6) return;
  p.l3 = L3Kind::ipv6;
  r.copy(off + 8, 16, p.saddr.data());
  r.copy(off + 24, 16, p.daddr.data());
  std::uint8_t next = r.u8(off + 6);
  off += 40;
  std::size_t skipped = 0;
  while (skipped_ext_header(next)) {
    // Only the header's first 8 bytes (next header, length) must fit; a
    // header cut short in its body leaves the L4 header out of the frame.
    if (skipped == kMaxIpv6ExtHeaders || !r.fits(off, 8)) {
      p.l4_offset = static_cast<std::uint32_t>(off);
      return;  // l4_proto stays unknown
    }
    const std::size_t units = r.u8(off + 1);
    const std::size_t hlen = next == kIpv6Ah ? (units + 2) * 4 : (units + 1) * 8;
    next = r.u8(off);
    off += hlen;
    ++skipped;
  }
  if (next == kIpv6Fragment) {
    if (!r.fits(off, 8)) {
      p.l4_offset = static_cast<std::uint32_t>(off);
      return;
    }
    p.non_first_fragment = (r.u16(off + 2) >> 3) != 0;
    next = r.u8(off);
    off += 8;
  }
  p.l4_proto = next;
  p.l4_offset = static_cast<std::uint32_t>(off);
}

// Step 5.
void parse_l4(const Reader& r, ParsedPacket& p) {
  if (!p.is_ip() || p.non_first_fragment || p.l4_proto == kUnknownProto) return;
  const std::size_t off = p.l4_offset;
  switch (p.l4_proto) {
    case kProtoTcp: {
      if (!r.fits(off, 20)) return;
      const std::size_t doff = r.u8(off + 12) >> 4;
      if (doff < 5 || !r.fits(off, doff * 4)) return;
      p.l4 = L4Kind::tcp;
      p.sport = r.u16(off);
      p.dport = r.u16(off + 2);
      p.tcp_flags = r.u8(off + 13);
      return;
    }
    case kProtoUdp:
      if (!r.fits(off, 8)) return;
      p.l4 = L4Kind::udp;
      p.sport = r.u16(off);
      p.dport = r.u16(off + 2);
      return;
    case kProtoIcmp:
    case kProtoIcmpv6: {
      const std::uint8_t want = p.l3 == L3Kind::ipv4 ? kProtoIcmp : kProtoIcmpv6;
      if (p.l4_proto == want && r.fits(off, 4)) p.l4 = L4Kind::icmp;
      return;
    }
    default:
      return;
  }
}

}  // namespace

ParsedPacket parse_packet(std::span<const std::uint8_t> frame, std::uint32_t wire_len) {
  ParsedPacket p;
  p.len = static_cast<std::uint32_t>(
      std::min<std::size_t>(frame.size(), std::numeric_limits<std::uint32_t>::max()));
  p.wire_len = std::max(wire_len, p.len);
  const Reader r(frame);
  if (!r.fits(0, kEthLen)) return p;
  p.eth = true;
  p.ethertype = r.u16(12);
  std::size_t off = kEthLen;
  while ((p.ethertype == kEtherVlan || p.ethertype == kEtherQinQ) && p.vlan_count < kMaxVlanTags &&
         r.fits(off, 4)) {
    if (p.vlan_count == 0) p.vlan_id = r.u16(off) & 0x0FFFu;
    p.ethertype = r.u16(off + 2);
    off += 4;
    ++p.vlan_count;
  }
  p.l3_offset = static_cast<std::uint32_t>(off);
  if (p.ethertype == kEtherIpv4)
    parse_ipv4(r, p);
  else if (p.ethertype == kEtherIpv6)
    parse_ipv6(r, p);
  parse_l4(r, p);
  return p;
}

}  // namespace srl::filters
