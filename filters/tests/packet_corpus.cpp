#include "packet_corpus.h"

#include <arpa/inet.h>

#include <set>
#include <stdexcept>
#include <string>

namespace srl::testing {
namespace {

std::uint8_t u8(unsigned v) {
  return static_cast<std::uint8_t>(v & 0xFFu);
}

void put16(Bytes& b, unsigned v) {
  b.push_back(u8(v >> 8));
  b.push_back(u8(v));
}

void put32(Bytes& b, std::uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xFFFFu);
}

void pad_to(Bytes& b, std::size_t multiple, std::uint8_t fill) {
  while (b.size() % multiple != 0)
    b.push_back(fill);
}

std::uint16_t internet_checksum(const Bytes& b, std::size_t from, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2)
    sum += static_cast<std::uint32_t>((b[from + i] << 8) | b[from + i + 1]);
  if (n % 2 != 0) sum += static_cast<std::uint32_t>(b[from + n - 1] << 8);
  while (sum > 0xFFFFu)
    sum = (sum & 0xFFFFu) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xFFFFu);
}

// splitmix64: a fixed, portable sequence (std distributions are not).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
  std::uint8_t byte() { return u8(static_cast<unsigned>(next() & 0xFFu)); }
  Bytes bytes(std::size_t n) {
    Bytes b(n);
    for (auto& x : b)
      x = byte();
    return b;
  }

 private:
  std::uint64_t s_;
};

constexpr std::uint16_t kIpv4 = 0x0800, kIpv6 = 0x86DD, kArp = 0x0806, kVlan = 0x8100,
                        kQinQ = 0x88A8;
constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58, kHbh = 0, kRouting = 43,
                       kFrag = 44, kAh = 51, kDstOpts = 60, kNoNext = 59, kGre = 47;

// A DNS query for example.com, type A.
Bytes dns_query() {
  Bytes b = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  b = b + Bytes{7} + text("example") + Bytes{3} + text("com") + Bytes{0, 0x00, 0x01, 0x00, 0x01};
  return b;
}

class CorpusBuilder {
 public:
  void add(std::string name, Bytes bytes) {
    if (!names_.insert(name).second) throw std::logic_error("duplicate corpus frame " + name);
    frames_.push_back({std::move(name), std::move(bytes)});
  }
  // The frame and every proper prefix of it, 0 to size-1 bytes.
  void add_with_truncations(const std::string& name, const Bytes& bytes) {
    add(name, bytes);
    for (std::size_t n = 0; n < bytes.size(); ++n)
      add("trunc/" + name + "/" + std::to_string(n),
          Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)));
  }
  std::vector<TestFrame> take() { return std::move(frames_); }

 private:
  std::vector<TestFrame> frames_;
  std::set<std::string> names_;
};

}  // namespace

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Ip4 ip4(std::string_view t) {
  Ip4 a{};
  if (inet_pton(AF_INET, std::string(t).c_str(), a.data()) != 1)
    throw std::invalid_argument("bad IPv4 address " + std::string(t));
  return a;
}

Ip6 ip6(std::string_view t) {
  Ip6 a{};
  if (inet_pton(AF_INET6, std::string(t).c_str(), a.data()) != 1)
    throw std::invalid_argument("bad IPv6 address " + std::string(t));
  return a;
}

Bytes ethernet(std::uint16_t ethertype, const std::vector<Vlan>& tags) {
  Bytes b = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  for (const Vlan& t : tags) {
    put16(b, t.tpid);
    put16(b, (unsigned{t.pcp} << 13) | (t.dei ? 0x1000u : 0u) | (t.vid & 0x0FFFu));
  }
  put16(b, ethertype);
  return b;
}

Bytes ipv4(std::uint8_t proto, Ip4 src, Ip4 dst, const Bytes& payload, const Ipv4Fields& f) {
  Bytes opts = f.options;
  pad_to(opts, 4, 0);
  const std::size_t hlen = 20 + opts.size();
  const unsigned ihl = f.ihl ? *f.ihl : static_cast<unsigned>(hlen / 4);
  Bytes b;
  b.push_back(u8((unsigned{f.version} << 4) | (ihl & 0x0Fu)));
  b.push_back(0);
  put16(b, static_cast<unsigned>(hlen + payload.size()));
  put16(b, 0xBEEF);  // identification
  put16(b, (f.dont_fragment ? 0x4000u : 0u) | (f.more_fragments ? 0x2000u : 0u) |
               (f.frag_offset & 0x1FFFu));
  b.push_back(f.ttl);
  b.push_back(proto);
  put16(b, 0);
  b.insert(b.end(), src.begin(), src.end());
  b.insert(b.end(), dst.begin(), dst.end());
  b = b + opts;
  const std::uint16_t sum = internet_checksum(b, 0, b.size());
  b[10] = u8(sum >> 8u);
  b[11] = u8(sum);
  return b + payload;
}

Bytes ipv6(std::uint8_t next, Ip6 src, Ip6 dst, const Bytes& payload, std::uint8_t version) {
  Bytes b;
  b.push_back(u8(unsigned{version} << 4));
  b.push_back(0);
  put16(b, 0x0001);  // flow label
  put16(b, static_cast<unsigned>(payload.size()));
  b.push_back(next);
  b.push_back(64);  // hop limit
  b.insert(b.end(), src.begin(), src.end());
  b.insert(b.end(), dst.begin(), dst.end());
  return b + payload;
}

Bytes ipv6_ext(std::uint8_t next, std::uint8_t len_field) {
  Bytes b = {next, len_field};
  // PadN filling the rest, so that the options area is well formed.
  const std::size_t total = (std::size_t{len_field} + 1) * 8;
  b.push_back(1);
  b.push_back(u8(static_cast<unsigned>(total - 4)));
  b.resize(total, 0);
  return b;
}

Bytes ipv6_ah(std::uint8_t next, std::uint8_t len_field) {
  Bytes b = {next, len_field, 0, 0};
  put32(b, 0x00000100);  // SPI
  put32(b, 1);           // sequence number
  b.resize((std::size_t{len_field} + 2) * 4, 0xA5);
  return b;
}

Bytes ipv6_frag(std::uint8_t next, std::uint16_t offset, bool more_fragments, std::uint32_t id) {
  Bytes b = {next, 0};
  put16(b, (static_cast<unsigned>(offset & 0x1FFFu) << 3) | (more_fragments ? 1u : 0u));
  put32(b, id);
  return b;
}

Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, const Bytes& options,
          const Bytes& payload, std::optional<std::uint8_t> data_offset) {
  Bytes opts = options;
  pad_to(opts, 4, 0);
  const unsigned doff = data_offset ? *data_offset : static_cast<unsigned>((20 + opts.size()) / 4);
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put32(b, 0x01020304);                                      // sequence number
  put32(b, (flags & tcpflag::ack) != 0 ? 0x0A0B0C0Du : 0u);  // acknowledgment
  b.push_back(u8((doff & 0x0Fu) << 4));
  b.push_back(flags);
  put16(b, 65535);  // window
  put16(b, 0);      // checksum
  put16(b, 0);      // urgent pointer
  return b + opts + payload;
}

Bytes tcp_syn_options() {
  return {2, 4,  0x05, 0xB4,                          // MSS 1460
          4, 2,                                       // SACK permitted
          8, 10, 0,    0,    0x12, 0x34, 0, 0, 0, 0,  // timestamps
          1,                                          // NOP
          3, 3,  7};                                  // window scale 7
}

Bytes udp(std::uint16_t sport, std::uint16_t dport, const Bytes& payload) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<unsigned>(8 + payload.size()));
  put16(b, 0);
  return b + payload;
}

Bytes icmp(std::uint8_t type, std::uint8_t code, const Bytes& payload) {
  return Bytes{type, code, 0, 0} + payload;
}

Bytes arp_request(Ip4 sender, Ip4 target) {
  Bytes b;
  put16(b, 1);      // Ethernet
  put16(b, kIpv4);  // IPv4
  b.push_back(6);
  b.push_back(4);
  put16(b, 1);  // request
  b = b + Bytes{0x02, 0, 0, 0, 0, 0x01};
  b.insert(b.end(), sender.begin(), sender.end());
  b = b + Bytes(6, 0);
  b.insert(b.end(), target.begin(), target.end());
  return b;
}

std::vector<TestFrame> standard_corpus() {
  CorpusBuilder c;
  const Ip4 a4 = ip4("192.0.2.1"), b4 = ip4("198.51.100.7"), c4 = ip4("10.1.2.3");
  const Ip6 a6 = ip6("2001:db8::1"), b6 = ip6("2001:db8:0:1::2"), c6 = ip6("fe80::1");
  const Bytes echo = Bytes{0x00, 0x2A, 0x00, 0x01} + text("abcdefghijklmnopqrstuvwabcdefghi");
  const Bytes http = text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
  const Bytes pad46(46, 0);

  // Layer 2.
  c.add("eth-only-ipv4-ethertype", ethernet(kIpv4));
  c.add("eth-unknown-ethertype", ethernet(0x88B5) + pad46);
  c.add("eth-ipv6-ethertype-short", ethernet(kIpv6) + Bytes(39, 0x60));
  c.add_with_truncations("arp-request", ethernet(kArp) + arp_request(a4, b4) + Bytes(18, 0));
  c.add("arp-vlan10", ethernet(kArp, {{.vid = 10}}) + arp_request(c4, a4));

  // IPv4 and TCP.
  const Bytes syn = tcp(40000, 22, tcpflag::syn, tcp_syn_options());
  c.add("ipv4-tcp-syn", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn));
  c.add("ipv4-tcp-synack",
        ethernet(kIpv4) +
            ipv4(kTcp, b4, a4, tcp(22, 40000, tcpflag::syn | tcpflag::ack, tcp_syn_options())));
  c.add(
      "ipv4-tcp-psh-ack-http",
      ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(40001, 80, tcpflag::psh | tcpflag::ack, {}, http)));
  c.add("ipv4-tcp-fin-ack",
        ethernet(kIpv4) + ipv4(kTcp, b4, a4, tcp(80, 40001, tcpflag::fin | tcpflag::ack)));
  c.add("ipv4-tcp-rst", ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(40002, 443, tcpflag::rst)));
  c.add("ipv4-tcp-all-flags", ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(1, 2, 0xFF)));
  c.add("ipv4-tcp-no-flags", ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(65535, 0, 0)));
  c.add("ipv4-tcp-same-addrs", ethernet(kIpv4) + ipv4(kTcp, a4, a4, tcp(5000, 4000, 0x10)));
  c.add("ipv4-tcp-doff-4", ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(1000, 22, 2, {}, {}, 4)));
  c.add("ipv4-tcp-doff-0", ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(1000, 22, 2, {}, {}, 0)));
  c.add("ipv4-tcp-doff-15-short",
        ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(1000, 22, 2, tcp_syn_options(), {}, 15)));
  c.add("ipv4-tcp-19-bytes",
        ethernet(kIpv4) + ipv4(kTcp, a4, b4, Bytes(syn.begin(), syn.begin() + 19)));
  c.add("ipv4-tcp-df", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.dont_fragment = true}));
  c.add("ipv4-tcp-padded",
        ethernet(kIpv4) + ipv4(kTcp, a4, b4, tcp(40003, 25, tcpflag::ack)) + Bytes(6, 0));

  // IPv4 and UDP, ICMP, other protocols.
  c.add("ipv4-udp-dns-query", ethernet(kIpv4) + ipv4(kUdp, a4, b4, udp(53000, 53, dns_query())));
  c.add("ipv4-udp-dns-reply", ethernet(kIpv4) + ipv4(kUdp, b4, a4, udp(53, 53000, dns_query())));
  c.add("ipv4-udp-same-ports", ethernet(kIpv4) + ipv4(kUdp, c4, a4, udp(123, 123, Bytes(48, 0))));
  c.add("ipv4-udp-empty", ethernet(kIpv4) + ipv4(kUdp, a4, b4, udp(9, 9)) + Bytes(18, 0));
  c.add("ipv4-udp-7-bytes", ethernet(kIpv4) + ipv4(kUdp, a4, b4, Bytes{0, 53, 0, 53, 0, 8, 0}));
  c.add("ipv4-icmp-echo", ethernet(kIpv4) + ipv4(kIcmp, a4, b4, icmp(8, 0, echo)));
  c.add("ipv4-icmp-3-bytes", ethernet(kIpv4) + ipv4(kIcmp, a4, b4, Bytes{8, 0, 0}));
  c.add("ipv4-proto-58-not-icmp", ethernet(kIpv4) + ipv4(kIcmpv6, a4, b4, icmp(128, 0, echo)));
  c.add("ipv4-gre", ethernet(kIpv4) + ipv4(kGre, a4, b4, Bytes{0, 0, 0x08, 0} + Bytes(20, 0x45)));
  c.add("ipv4-proto-255", ethernet(kIpv4) + ipv4(255, a4, b4, Bytes(26, 0)));
  c.add("ipv4-proto-0", ethernet(kIpv4) + ipv4(0, a4, b4, Bytes(26, 0)));

  // IPv4 options and fragments.
  c.add_with_truncations(
      "ipv4-options-icmp",
      ethernet(kIpv4) + ipv4(kIcmp, c4, b4, icmp(0, 0, echo), {.options = {1, 1, 1, 0}}));
  c.add("ipv4-options-40-tcp",
        ethernet(kIpv4) +
            ipv4(kTcp, a4, b4, syn, {.options = Bytes{7, 39, 4} + Bytes(36, 0) + Bytes{0}}));
  c.add("ipv4-frag-first-udp", ethernet(kIpv4) + ipv4(kUdp, a4, b4, udp(5353, 5353, Bytes(64, 1)),
                                                      {.more_fragments = true}));
  c.add("ipv4-frag-nonfirst-udp",
        ethernet(kIpv4) + ipv4(kUdp, a4, b4, udp(5353, 5353, Bytes(64, 2)),
                               {.frag_offset = 185, .more_fragments = true}));
  c.add("ipv4-frag-last-tcp", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.frag_offset = 1}));
  c.add("ipv4-frag-nonfirst-icmp",
        ethernet(kIpv4) + ipv4(kIcmp, a4, b4, icmp(8, 0, echo), {.frag_offset = 8191}));

  // Malformed IPv4.
  c.add("ipv4-version-5", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.version = 5}));
  c.add("ipv4-version-6-in-0800", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.version = 6}));
  c.add("ipv4-ihl-4", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.ihl = 4}));
  c.add("ipv4-ihl-0", ethernet(kIpv4) + ipv4(kTcp, a4, b4, syn, {.ihl = 0}));
  c.add("ipv4-ihl-15-short", ethernet(kIpv4) + ipv4(kTcp, a4, b4, Bytes(20, 0), {.ihl = 15}));
  c.add("ipv4-ihl-15-fits", ethernet(kIpv4) + ipv4(kTcp, a4, b4, Bytes(60, 0), {.ihl = 15}));

  // VLAN tags.
  const Bytes ipv4_syn_opts =
      ipv4(kTcp, a4, b4, tcp(40000, 22, tcpflag::syn, tcp_syn_options(), text("hello")),
           {.options = {0x94, 4, 0, 0}});  // router alert
  c.add_with_truncations("vlan100-ipv4-tcp-options",
                         ethernet(kIpv4, {{.vid = 100}}) + ipv4_syn_opts);
  c.add_with_truncations("qinq-88a8-200-8100-300-ipv4-udp",
                         ethernet(kIpv4, {{.vid = 200, .tpid = kQinQ}, {.vid = 300}}) +
                             ipv4(kUdp, b4, a4, udp(53, 53000, dns_query())));
  c.add("qinq-8100-8100-ipv6-tcp",
        ethernet(kIpv6, {{.vid = 7}, {.vid = 8}}) + ipv6(kTcp, a6, b6, syn));
  c.add("vlan-triple-ipv4-tcp",
        ethernet(kIpv4, {{.vid = 1, .tpid = kQinQ}, {.vid = 2}, {.vid = 3}}) +
            ipv4(kTcp, a4, b4, syn));
  c.add("vlan-4095-pcp7-dei-ipv4-tcp",
        ethernet(kIpv4, {{.vid = 4095, .pcp = 7, .dei = true}}) + ipv4(kTcp, a4, b4, syn));
  c.add("vlan-0-ipv4-udp", ethernet(kIpv4, {{.vid = 0, .pcp = 5}}) +
                               ipv4(kUdp, a4, b4, udp(40000, 4789, Bytes(16, 0))));
  c.add("vlan-tag-cut", ethernet(kVlan) + Bytes{0x00, 0x64, 0x08});
  c.add("vlan-then-cut", ethernet(kIpv4, {{.vid = 42}}));
  c.add("vlan-ipv6-udp", ethernet(kIpv6, {{.vid = 4000}}) + ipv6(kUdp, a6, b6, udp(546, 547)));
  c.add("vlan-arp", ethernet(kArp, {{.vid = 99, .tpid = kQinQ}}) + arp_request(a4, c4));

  // IPv6 and its extension headers.
  c.add("ipv6-tcp-syn", ethernet(kIpv6) + ipv6(kTcp, a6, b6, syn));
  c.add("ipv6-tcp-synack",
        ethernet(kIpv6) + ipv6(kTcp, b6, a6, tcp(22, 40000, tcpflag::syn | tcpflag::ack)));
  c.add("ipv6-udp-dns", ethernet(kIpv6) + ipv6(kUdp, a6, b6, udp(53000, 53, dns_query())));
  c.add("ipv6-icmpv6-echo", ethernet(kIpv6) + ipv6(kIcmpv6, a6, c6, icmp(128, 0, echo)));
  c.add("ipv6-proto-1-not-icmp", ethernet(kIpv6) + ipv6(kIcmp, a6, b6, icmp(8, 0, echo)));
  c.add("ipv6-no-next-header", ethernet(kIpv6) + ipv6(kNoNext, a6, b6, Bytes(8, 0)));
  c.add("ipv6-only-header", ethernet(kIpv6) + ipv6(kTcp, a6, b6, {}));
  c.add("ipv6-version-4", ethernet(kIpv6) + ipv6(kTcp, a6, b6, syn, 4));
  c.add("ipv6-hbh-tcp", ethernet(kIpv6) + ipv6(kHbh, a6, b6, ipv6_ext(kTcp) + syn));
  c.add("ipv6-hbh-24-tcp", ethernet(kIpv6) + ipv6(kHbh, a6, b6, ipv6_ext(kTcp, 2) + syn));
  c.add("ipv6-routing-udp",
        ethernet(kIpv6) + ipv6(kRouting, a6, b6, ipv6_ext(kUdp, 2) + udp(1000, 2000)));
  c.add("ipv6-dstopts-tcp", ethernet(kIpv6) + ipv6(kDstOpts, a6, b6, ipv6_ext(kTcp) + syn));
  c.add_with_truncations("ipv6-ah-tcp", ethernet(kIpv6) + ipv6(kAh, a6, b6, ipv6_ah(kTcp) + syn));
  c.add("ipv6-ah-len-0-udp", ethernet(kIpv6) + ipv6(kAh, a6, b6, ipv6_ah(kUdp, 0) + udp(1, 2)));
  c.add_with_truncations(
      "ipv6-frag-first-udp",
      ethernet(kIpv6) +
          ipv6(kFrag, a6, b6, ipv6_frag(kUdp, 0, true) + udp(5353, 5353, Bytes(32, 3))));
  c.add("ipv6-frag-nonfirst-udp",
        ethernet(kIpv6) +
            ipv6(kFrag, a6, b6, ipv6_frag(kUdp, 185, false) + udp(5353, 5353, Bytes(32, 4))));
  c.add("ipv6-frag-nonfirst-tcp",
        ethernet(kIpv6) + ipv6(kFrag, a6, b6, ipv6_frag(kTcp, 1, true) + syn));
  c.add("ipv6-frag-then-dstopts-tcp",
        ethernet(kIpv6) + ipv6(kFrag, a6, b6, ipv6_frag(kDstOpts, 0, true) + ipv6_ext(kTcp) + syn));
  c.add("ipv6-frag-cut", ethernet(kIpv6) + ipv6(kFrag, a6, b6, Bytes{kTcp, 0, 0, 0, 0, 0, 0}));
  const Bytes chain4 = ipv6_ext(kDstOpts) + ipv6_ext(kRouting, 1) + ipv6_ext(kDstOpts) +
                       ipv6_ext(kTcp, 3);  // hop-by-hop, dest opts, routing, dest opts
  c.add_with_truncations("ipv6-chain4-tcp", ethernet(kIpv6) + ipv6(kHbh, a6, b6, chain4 + syn));
  const Bytes chain5 =
      ipv6_ext(kDstOpts) + ipv6_ext(kRouting) + ipv6_ext(kDstOpts) + ipv6_ext(kAh) + ipv6_ah(kTcp);
  c.add("ipv6-chain5-tcp", ethernet(kIpv6) + ipv6(kHbh, a6, b6, chain5 + syn));
  const Bytes chain4_frag = ipv6_ext(kRouting) + ipv6_ext(kAh) + ipv6_ah(kDstOpts) +
                            ipv6_ext(kFrag) + ipv6_frag(kUdp, 0, true);
  c.add("ipv6-chain4-frag-udp",
        ethernet(kIpv6) + ipv6(kHbh, a6, b6, chain4_frag + udp(7, 7, Bytes(8, 0))));
  c.add("ipv6-chain4-then-hbh",
        ethernet(kIpv6) + ipv6(kHbh, a6, b6,
                               ipv6_ext(kHbh) + ipv6_ext(kHbh) + ipv6_ext(kHbh) + ipv6_ext(kHbh) +
                                   ipv6_ext(kTcp) + syn));
  c.add("ipv6-ext-7-bytes", ethernet(kIpv6) + ipv6(kHbh, a6, b6, Bytes{kTcp, 0, 1, 4, 0, 0, 0}));
  c.add("ipv6-ext-len-beyond-frame",
        ethernet(kIpv6) + ipv6(kDstOpts, a6, b6, Bytes{kTcp, 255, 1, 4, 0, 0, 0, 0} + syn));
  c.add("ipv6-ext-body-cut-no-next",
        ethernet(kIpv6) + ipv6(kRouting, a6, b6, Bytes{kNoNext, 1, 0, 0, 0, 0, 0, 0}));

  // Seeded garbage: wholly random, and random behind a valid prefix so that
  // the deeper parsing steps see odd bytes too.
  Rng rng(0x5EED5EED2024ull);
  for (int i = 0; i < 64; ++i)
    c.add("garbage/" + std::to_string(i), rng.bytes(rng.below(160)));
  const std::array<std::uint8_t, 12> next_headers = {kTcp,  kUdp, kIcmp,    kIcmpv6, kHbh, kRouting,
                                                     kFrag, kAh,  kDstOpts, kNoNext, 255,  0x11};
  for (int i = 0; i < 64; ++i) {
    Bytes b4bytes = rng.bytes(20 + rng.below(80));
    b4bytes[0] = u8(0x40u | (rng.byte() & 0x0Fu));
    if (i % 2 == 0) b4bytes[9] = i % 4 == 0 ? kTcp : kUdp;
    if (i % 3 == 0) b4bytes[6] &= 0xE0;  // mostly first fragments
    if (i % 3 == 0) b4bytes[7] = 0;
    c.add("garbage-ipv4/" + std::to_string(i), ethernet(kIpv4) + b4bytes);
  }
  for (int i = 0; i < 64; ++i) {
    Bytes b6bytes = rng.bytes(40 + rng.below(120));
    b6bytes[0] = u8(0x60u | (rng.byte() & 0x0Fu));
    b6bytes[6] = next_headers[rng.below(next_headers.size())];
    // Keep extension headers short so that chains stay inside the frame.
    for (std::size_t off = 40; off + 1 < b6bytes.size(); off += 8) {
      b6bytes[off] = next_headers[rng.below(next_headers.size())];
      b6bytes[off + 1] = u8(static_cast<unsigned>(rng.below(2)));
    }
    c.add("garbage-ipv6/" + std::to_string(i), ethernet(kIpv6) + b6bytes);
  }
  for (int i = 0; i < 32; ++i) {
    const std::uint16_t tpid = i % 2 == 0 ? kVlan : kQinQ;
    c.add("garbage-vlan/" + std::to_string(i), ethernet(tpid) + rng.bytes(rng.below(80)));
  }
  return c.take();
}

Bytes tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
                  std::uint8_t flags, const Bytes& payload, std::uint16_t window) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put32(b, seq);
  put32(b, ack);
  b.push_back(u8(5u << 4));
  b.push_back(flags);
  put16(b, window);
  put16(b, 0);  // checksum
  put16(b, 0);  // urgent pointer
  return b + payload;
}

Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

}  // namespace srl::testing
