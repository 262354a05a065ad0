// The reference L2-L4 filters against hand-computed expectations
// (docs/filter-semantics.md), their safety on the whole standard corpus, and
// whole compiled requests through the reference DAG evaluator.
#include <doctest/doctest.h>
#include <pcap/pcap.h>

#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include "packet_corpus.h"
#include "reference_dag.h"
#include "srl/compiler/compiler.h"
#include "srl/filters/packet.h"
#include "srl/filters/reference.h"

using namespace srl;
using namespace srl::testing;
using filters::ClassicBpf;
using filters::kReject;
using filters::OptionValue;
using filters::Verdict;

namespace {

using Options = std::map<std::string, OptionValue>;

const std::map<std::string, Bytes>& corpus_by_name() {
  static const std::map<std::string, Bytes> m = [] {
    std::map<std::string, Bytes> out;
    for (auto& f : standard_corpus())
      out.emplace(f.name, f.bytes);
    return out;
  }();
  return m;
}

const Bytes& frame(const std::string& name) {
  const auto& m = corpus_by_name();
  auto it = m.find(name);
  if (it == m.end()) throw std::logic_error("no corpus frame " + name);
  return it->second;
}

Verdict run(std::string_view filter, const Bytes& bytes, const Options& options = {}) {
  return filters::make_reference_filter(filter, options)->process(bytes);
}

Verdict run(std::string_view filter, const std::string& frame_name, const Options& options = {}) {
  return run(filter, frame(frame_name), options);
}

Verdict acc(std::uint16_t cls) {
  return filters::accept_with(cls);
}

const Ip4 kA4 = ip4("192.0.2.1"), kB4 = ip4("198.51.100.7");
const Ip6 kA6 = ip6("2001:db8::1"), kB6 = ip6("2001:db8:0:1::2");

ClassicBpf compile_cbpf(const char* expr) {
  pcap_t* handle = pcap_open_dead(DLT_EN10MB, 262144);
  REQUIRE(handle != nullptr);
  bpf_program prog{};
  REQUIRE(pcap_compile(handle, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) == 0);
  ClassicBpf out;
  for (unsigned i = 0; i < prog.bf_len; ++i)
    out.push_back(
        {prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf, prog.bf_insns[i].k});
  pcap_freecode(&prog);
  pcap_close(handle);
  return out;
}

}  // namespace

TEST_CASE("parse: an IPv4 TCP SYN with options") {
  const filters::ParsedPacket p = filters::parse_packet(frame("ipv4-tcp-syn"));
  CHECK(p.eth);
  CHECK(p.len == 14 + 20 + 40);
  CHECK(p.vlan_count == 0);
  CHECK(p.ethertype == 0x0800);
  CHECK(p.l3 == filters::L3Kind::ipv4);
  CHECK(p.l3_offset == 14);
  CHECK(p.l4_offset == 34);
  CHECK(p.l4_proto == 6);
  CHECK(p.l4 == filters::L4Kind::tcp);
  CHECK(p.sport == 40000);
  CHECK(p.dport == 22);
  CHECK(p.tcp_flags == 2);
  CHECK(!p.non_first_fragment);
  CHECK(p.saddr[0] == 192);
  CHECK(p.daddr[3] == 7);
  CHECK(p.saddr[4] == 0);
}

TEST_CASE("parse: QinQ offsets and the IPv6 extension chain") {
  const auto q = filters::parse_packet(frame("qinq-88a8-200-8100-300-ipv4-udp"));
  CHECK(q.vlan_count == 2);
  CHECK(q.vlan_id == 200);
  CHECK(q.l3_offset == 22);
  CHECK(q.l4_offset == 42);
  const auto c = filters::parse_packet(frame("ipv6-chain4-tcp"));
  CHECK(c.l3 == filters::L3Kind::ipv6);
  CHECK(c.l4_proto == 6);
  CHECK(c.l4_offset == 14 + 40 + 8 + 16 + 8 + 32);
  CHECK(c.l4 == filters::L4Kind::tcp);
  const auto ah = filters::parse_packet(frame("ipv6-ah-tcp"));
  CHECK(ah.l4_offset == 14 + 40 + 24);  // (4 + 2) * 4
  const auto ah0 = filters::parse_packet(frame("ipv6-ah-len-0-udp"));
  CHECK(ah0.l4_offset == 14 + 40 + 8);
  CHECK(ah0.l4 == filters::L4Kind::udp);
  const auto empty = filters::parse_packet({});
  CHECK(!empty.eth);
  CHECK(empty.l4_proto == filters::kUnknownProto);
}

TEST_CASE("eth") {
  CHECK(run("eth", "eth-only-ipv4-ethertype") == acc(0));
  CHECK(run("eth", "trunc/arp-request/13") == kReject);
  CHECK(run("eth", "trunc/arp-request/14") == acc(0));
  CHECK(run("eth", Bytes{}) == kReject);
}

TEST_CASE("vlan: class is the outermost VID") {
  CHECK(run("vlan", "vlan100-ipv4-tcp-options") == acc(100));
  CHECK(run("vlan", "qinq-88a8-200-8100-300-ipv4-udp") == acc(200));
  CHECK(run("vlan", "qinq-8100-8100-ipv6-tcp") == acc(7));
  CHECK(run("vlan", "vlan-4095-pcp7-dei-ipv4-tcp") == acc(4095));
  CHECK(run("vlan", "vlan-0-ipv4-udp") == acc(0));
  CHECK(run("vlan", "vlan-triple-ipv4-tcp") == acc(1));
  CHECK(run("vlan", "vlan-then-cut") == acc(42));
  CHECK(run("vlan", "vlan-arp") == acc(99));
  CHECK(run("vlan", "ipv4-tcp-syn") == kReject);
  // 0x8100 with only 3 bytes after it: no tag parsed.
  CHECK(run("vlan", "vlan-tag-cut") == kReject);
  // A third tag is not parsed: the frame is not IP.
  const auto p = filters::parse_packet(frame("vlan-triple-ipv4-tcp"));
  CHECK(p.vlan_count == 2);
  CHECK(p.ethertype == 0x8100);
  CHECK(run("ip", "vlan-triple-ipv4-tcp") == kReject);
  CHECK(run("tcp", "vlan-triple-ipv4-tcp") == kReject);
  // The tags do not hide what is behind them.
  CHECK(run("tcp", "vlan100-ipv4-tcp-options") == acc(0));
  CHECK(run("udp", "qinq-88a8-200-8100-300-ipv4-udp") == acc(0));
  CHECK(run("tcp", "qinq-8100-8100-ipv6-tcp") == acc(0));
}

TEST_CASE("arp") {
  CHECK(run("arp", "arp-request") == acc(0));
  CHECK(run("arp", "arp-vlan10") == acc(0));
  CHECK(run("arp", "vlan-arp") == acc(0));
  CHECK(run("arp", "trunc/arp-request/14") == acc(0));
  CHECK(run("arp", "trunc/arp-request/13") == kReject);
  CHECK(run("arp", "ipv4-tcp-syn") == kReject);
  CHECK(run("ip", "arp-request") == kReject);
}

TEST_CASE("ip, ipv4, ipv6: header validity") {
  for (const char* name : {"ipv4-tcp-syn", "ipv4-options-40-tcp", "ipv4-ihl-15-fits",
                           "ipv4-frag-nonfirst-udp", "ipv4-proto-255"}) {
    CAPTURE(name);
    CHECK(run("ipv4", name) == acc(0));
    CHECK(run("ip", name) == acc(0));
    CHECK(run("ipv6", name) == kReject);
  }
  for (const char* name : {"ipv6-tcp-syn", "ipv6-chain5-tcp", "ipv6-ext-7-bytes",
                           "ipv6-only-header", "vlan-ipv6-udp"}) {
    CAPTURE(name);
    CHECK(run("ipv6", name) == acc(0));
    CHECK(run("ip", name) == acc(0));
    CHECK(run("ipv4", name) == kReject);
  }
  for (const char* name :
       {"ipv4-version-5", "ipv4-version-6-in-0800", "ipv4-ihl-4", "ipv4-ihl-0", "ipv4-ihl-15-short",
        "ipv6-version-4", "eth-ipv6-ethertype-short", "eth-only-ipv4-ethertype",
        "trunc/ipv6-ah-tcp/53", "trunc/ipv4-options-icmp/37"}) {
    CAPTURE(name);
    CHECK(run("ip", name) == kReject);
    CHECK(run("ipv4", name) == kReject);
    CHECK(run("ipv6", name) == kReject);
    CHECK(run("proto", name) == kReject);
    CHECK(run("hash", name) == kReject);
  }
  CHECK(run("ipv6", "trunc/ipv6-ah-tcp/54") == acc(0));
  CHECK(run("ipv4", "trunc/ipv4-options-icmp/38") == acc(0));
}

TEST_CASE("proto: the L4 protocol number, or reject when unknown") {
  CHECK(run("proto", "ipv4-tcp-syn") == acc(6));
  CHECK(run("proto", "ipv4-udp-dns-query") == acc(17));
  CHECK(run("proto", "ipv4-icmp-echo") == acc(1));
  CHECK(run("proto", "ipv4-gre") == acc(47));
  CHECK(run("proto", "ipv4-proto-0") == acc(0));
  CHECK(run("proto", "ipv4-proto-255") == kReject);
  // Fragments keep their protocol; so do truncated L4 headers.
  CHECK(run("proto", "ipv4-frag-nonfirst-udp") == acc(17));
  CHECK(run("proto", "ipv4-tcp-19-bytes") == acc(6));
  CHECK(run("proto", "ipv6-icmpv6-echo") == acc(58));
  CHECK(run("proto", "ipv6-chain4-tcp") == acc(6));
  CHECK(run("proto", "ipv6-ah-tcp") == acc(6));
  CHECK(run("proto", "ipv6-routing-udp") == acc(17));
  CHECK(run("proto", "ipv6-frag-nonfirst-udp") == acc(17));
  CHECK(run("proto", "ipv6-frag-then-dstopts-tcp") == acc(60));  // parsing stops at fragment
  CHECK(run("proto", "ipv6-chain4-frag-udp") == acc(17));
  CHECK(run("proto", "ipv6-no-next-header") == acc(59));
  CHECK(run("proto", "ipv6-ext-body-cut-no-next") == acc(59));
  CHECK(run("proto", "ipv6-chain5-tcp") == kReject);
  CHECK(run("proto", "ipv6-chain4-then-hbh") == kReject);
  CHECK(run("proto", "ipv6-ext-7-bytes") == kReject);
  CHECK(run("proto", "ipv6-frag-cut") == kReject);
}

TEST_CASE("tcp") {
  for (const char* name :
       {"ipv4-tcp-syn", "ipv4-tcp-psh-ack-http", "ipv4-options-40-tcp", "ipv4-tcp-df",
        "ipv4-tcp-padded", "ipv6-tcp-syn", "ipv6-hbh-tcp", "ipv6-hbh-24-tcp", "ipv6-dstopts-tcp",
        "ipv6-ah-tcp", "ipv6-chain4-tcp"}) {
    CAPTURE(name);
    CHECK(run("tcp", name) == acc(0));
    CHECK(run("udp", name) == kReject);
  }
  // 18 bytes of Ethernet and tag, 24 of IPv4, 40 of TCP (data offset 10).
  CHECK(run("tcp", "trunc/vlan100-ipv4-tcp-options/81") == kReject);
  CHECK(run("tcp", "trunc/vlan100-ipv4-tcp-options/82") == acc(0));
  for (const char* name :
       {"ipv4-tcp-doff-4", "ipv4-tcp-doff-0", "ipv4-tcp-doff-15-short", "ipv4-tcp-19-bytes",
        "ipv4-frag-last-tcp", "ipv6-frag-nonfirst-tcp", "ipv6-chain5-tcp", "ipv6-chain4-then-hbh",
        "ipv6-ext-len-beyond-frame", "ipv6-frag-then-dstopts-tcp"}) {
    CAPTURE(name);
    CHECK(run("tcp", name) == kReject);
    CHECK(run("port", name) == kReject);
    CHECK(run("tcpflags", name) == kReject);
  }
}

TEST_CASE("udp") {
  for (const char* name :
       {"ipv4-udp-dns-query", "ipv4-udp-empty", "ipv4-frag-first-udp", "ipv6-udp-dns",
        "ipv6-routing-udp", "ipv6-frag-first-udp", "ipv6-chain4-frag-udp", "ipv6-ah-len-0-udp",
        "qinq-88a8-200-8100-300-ipv4-udp", "vlan-ipv6-udp"}) {
    CAPTURE(name);
    CHECK(run("udp", name) == acc(0));
    CHECK(run("tcp", name) == kReject);
  }
  for (const char* name : {"ipv4-udp-7-bytes", "ipv4-frag-nonfirst-udp", "ipv6-frag-nonfirst-udp",
                           "trunc/ipv6-frag-first-udp/69"}) {
    CAPTURE(name);
    CHECK(run("udp", name) == kReject);
    CHECK(run("port", name) == kReject);
  }
  CHECK(run("udp", "trunc/ipv6-frag-first-udp/70") == acc(0));
}

TEST_CASE("icmp: ICMP on IPv4, ICMPv6 on IPv6 only") {
  CHECK(run("icmp", "ipv4-icmp-echo") == acc(0));
  CHECK(run("icmp", "ipv4-options-icmp") == acc(0));
  CHECK(run("icmp", "ipv6-icmpv6-echo") == acc(0));
  CHECK(run("icmp", "ipv4-proto-58-not-icmp") == kReject);
  CHECK(run("icmp", "ipv6-proto-1-not-icmp") == kReject);
  CHECK(run("icmp", "ipv4-icmp-3-bytes") == kReject);
  CHECK(run("icmp", "ipv4-frag-nonfirst-icmp") == kReject);
  CHECK(run("icmp", "ipv4-tcp-syn") == kReject);
  CHECK(run("port", "ipv4-icmp-echo") == kReject);
}

TEST_CASE("port: dst, src and any (the lower port)") {
  CHECK(run("port", "ipv4-tcp-syn") == acc(22));  // which=any by default
  CHECK(run("port", "ipv4-tcp-syn", {{"which", std::string("any")}}) == acc(22));
  CHECK(run("port", "ipv4-tcp-syn", {{"which", std::string("src")}}) == acc(40000));
  CHECK(run("port", "ipv4-tcp-syn", {{"which", std::string("dst")}}) == acc(22));
  CHECK(run("port", "ipv4-tcp-synack") == acc(22));
  CHECK(run("port", "ipv4-tcp-synack", {{"which", std::string("dst")}}) == acc(40000));
  CHECK(run("port", "ipv4-udp-dns-query", {{"which", std::string("dst")}}) == acc(53));
  CHECK(run("port", "ipv4-udp-dns-reply", {{"which", std::string("src")}}) == acc(53));
  CHECK(run("port", "ipv4-tcp-no-flags") == acc(0));
  CHECK(run("port", "ipv4-tcp-no-flags", {{"which", std::string("src")}}) == acc(65535));
  CHECK(run("port", "ipv6-chain4-tcp") == acc(22));
  CHECK(run("port", "ipv6-frag-first-udp") == acc(5353));
  CHECK(run("port", "ipv6-frag-nonfirst-udp") == kReject);
  CHECK(run("port", "ipv4-frag-nonfirst-udp") == kReject);
}

TEST_CASE("tcpflags: the flag byte") {
  CHECK(run("tcpflags", "ipv4-tcp-syn") == acc(2));
  CHECK(run("tcpflags", "ipv4-tcp-synack") == acc(18));
  CHECK(run("tcpflags", "ipv4-tcp-psh-ack-http") == acc(24));
  CHECK(run("tcpflags", "ipv4-tcp-fin-ack") == acc(17));
  CHECK(run("tcpflags", "ipv4-tcp-rst") == acc(4));
  CHECK(run("tcpflags", "ipv4-tcp-all-flags") == acc(255));
  CHECK(run("tcpflags", "ipv4-tcp-no-flags") == acc(0));
  CHECK(run("tcpflags", "ipv6-ah-tcp") == acc(2));
  CHECK(run("tcpflags", "ipv4-udp-dns-query") == kReject);
}

TEST_CASE("addr: prefix, family and which") {
  auto addr = [](const char* frame_name, const char* net, const char* which) {
    return run("addr", frame_name, {{"net", std::string(net)}, {"which", std::string(which)}});
  };
  // ipv4-tcp-syn: 192.0.2.1 -> 198.51.100.7.
  CHECK(addr("ipv4-tcp-syn", "192.0.2.0/24", "src") == acc(0));
  CHECK(addr("ipv4-tcp-syn", "192.0.2.0/24", "dst") == kReject);
  CHECK(addr("ipv4-tcp-syn", "192.0.2.0/24", "any") == acc(0));
  CHECK(addr("ipv4-tcp-syn", "198.51.100.7/32", "dst") == acc(0));
  CHECK(addr("ipv4-tcp-syn", "198.51.100.0/29", "dst") == acc(0));   // .0 - .7
  CHECK(addr("ipv4-tcp-syn", "198.51.100.0/30", "dst") == kReject);  // .0 - .3
  CHECK(addr("ipv4-tcp-syn", "198.51.100.0/30", "any") == kReject);
  CHECK(addr("ipv4-tcp-syn", "0.0.0.0/0", "src") == acc(0));
  CHECK(addr("ipv4-tcp-syn", "128.0.0.0/1", "src") == acc(0));
  CHECK(addr("ipv4-tcp-syn", "10.0.0.0/8", "any") == kReject);
  // The prefix's family must be the packet's.
  CHECK(addr("ipv4-tcp-syn", "::/0", "any") == kReject);
  CHECK(addr("ipv6-tcp-syn", "0.0.0.0/0", "any") == kReject);
  CHECK(addr("ipv6-tcp-syn", "::/0", "any") == acc(0));
  CHECK(addr("ipv6-tcp-syn", "2001:db8::/32", "src") == acc(0));
  CHECK(addr("ipv6-tcp-syn", "2001:db8::/64", "src") == acc(0));
  CHECK(addr("ipv6-tcp-syn", "2001:db8::/64", "dst") == kReject);
  CHECK(addr("ipv6-tcp-syn", "2001:db8:0:1::2/128", "dst") == acc(0));
  CHECK(addr("ipv6-tcp-syn", "2001:db8:0:1::/63", "any") == acc(0));
  CHECK(addr("ipv6-tcp-syn", "2001:db8:0:2::/63", "any") == kReject);
  // Any IP packet, fragment or not, L4 known or not.
  CHECK(addr("ipv6-chain5-tcp", "2001:db8::1/128", "src") == acc(0));
  CHECK(addr("arp-request", "0.0.0.0/0", "any") == kReject);
  // The option is required and must be a prefix.
  CHECK_THROWS_AS(filters::make_reference_filter("addr", {}), std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("addr", {{"net", std::string("nonsense")}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("addr", {{"net", std::string("10.0.0.0/33")}}),
                  std::invalid_argument);
}

TEST_CASE("len: min <= frame length <= max") {
  const Bytes& f = frame("ipv4-tcp-syn");  // 74 bytes
  auto len = [&](std::int64_t lo, std::int64_t hi) {
    return run("len", f, {{"min", lo}, {"max", hi}});
  };
  CHECK(len(74, 74) == acc(0));
  CHECK(len(0, 74) == acc(0));
  CHECK(len(75, 100) == kReject);
  CHECK(len(0, 73) == kReject);
  CHECK(len(80, 70) == kReject);
  CHECK(run("len", f) == acc(0));  // defaults 0 and 65535
  CHECK(run("len", Bytes{}) == acc(0));
  CHECK(run("len", Bytes{}, {{"min", std::int64_t{1}}}) == kReject);
}

TEST_CASE("hash: FNV-1a test vectors") {
  CHECK(filters::hash_fnv1a({}) == 0x811C9DC5u);
  const std::uint8_t a[] = {'a'};
  CHECK(filters::hash_fnv1a(a) == 0xE40C292Cu);
  const std::uint8_t foobar[] = {'f', 'o', 'o', 'b', 'a', 'r'};
  CHECK(filters::hash_fnv1a(foobar) == 0xBF9CF968u);
  // Continuing from a state equals hashing the concatenation.
  const std::uint8_t foo[] = {'f', 'o', 'o'}, bar[] = {'b', 'a', 'r'};
  CHECK(filters::hash_fnv1a(bar, filters::hash_fnv1a(foo)) == 0xBF9CF968u);
}

TEST_CASE("hash: hand-computed values for one frame") {
  // ipv4-tcp-syn: 192.0.2.1:40000 -> 198.51.100.7:22. (saddr, sport) is the
  // lower endpoint, so the flow bytes are
  // c0 00 02 01  c6 33 64 07  06  9c 40  00 16.
  const auto p = filters::parse_packet(frame("ipv4-tcp-syn"));
  CHECK(filters::flow_hash(p, filters::HashFields::flow) == 2568353314u);
  CHECK(filters::flow_hash(p, filters::HashFields::addrs) == 1983933234u);
  CHECK(filters::flow_hash(p, filters::HashFields::src) == 1969986452u);
  CHECK(filters::flow_hash(p, filters::HashFields::dst) == 553163531u);
  CHECK(run("hash", "ipv4-tcp-syn") == acc(2568353314u % 16));
  CHECK(run("hash", "ipv4-tcp-syn", {{"buckets", std::int64_t{1000}}}) == acc(314));
  CHECK(run("hash", "ipv4-tcp-syn", {{"buckets", std::int64_t{65536}}}) ==
        acc(static_cast<std::uint16_t>(2568353314u % 65536)));
  CHECK(run("hash", "ipv4-tcp-syn", {{"buckets", std::int64_t{1}}}) == acc(0));
  CHECK(run("hash", "ipv4-tcp-syn",
            {{"buckets", std::int64_t{65536}}, {"fields", std::string("src")}}) ==
        acc(static_cast<std::uint16_t>(1969986452u % 65536)));
}

TEST_CASE("hash: both directions of a flow land in one bucket") {
  const std::vector<std::pair<Bytes, Bytes>> flows = {
      {ethernet(0x0800) + ipv4(6, kA4, kB4, tcp(40000, 22, 2)),
       ethernet(0x0800) + ipv4(6, kB4, kA4, tcp(22, 40000, 18))},
      {ethernet(0x0800) + ipv4(17, kA4, kB4, udp(53000, 53)),
       ethernet(0x0800, {{.vid = 5}}) + ipv4(17, kB4, kA4, udp(53, 53000))},
      {ethernet(0x86DD) + ipv6(6, kA6, kB6, tcp(1, 65535, 2)),
       ethernet(0x86DD) + ipv6(0, kB6, kA6, ipv6_ext(6) + tcp(65535, 1, 18))},
      // Same address both ways: the ports decide the order.
      {ethernet(0x0800) + ipv4(6, kA4, kA4, tcp(5000, 4000, 2)),
       ethernet(0x0800) + ipv4(6, kA4, kA4, tcp(4000, 5000, 18))},
  };
  for (const auto& [fwd, rev] : flows) {
    const auto pf = filters::parse_packet(fwd), pr = filters::parse_packet(rev);
    CHECK(filters::flow_hash(pf, filters::HashFields::flow) ==
          filters::flow_hash(pr, filters::HashFields::flow));
    CHECK(filters::flow_hash(pf, filters::HashFields::addrs) ==
          filters::flow_hash(pr, filters::HashFields::addrs));
    CHECK(filters::flow_hash(pf, filters::HashFields::src) ==
          filters::flow_hash(pr, filters::HashFields::dst));
    for (std::int64_t buckets : {1, 7, 16, 65536})
      CHECK(run("hash", fwd, {{"buckets", buckets}}) == run("hash", rev, {{"buckets", buckets}}));
  }
  // Different ports, different flow hash (for this pair).
  const auto p1 = filters::parse_packet(ethernet(0x0800) + ipv4(6, kA4, kB4, tcp(40000, 22, 2)));
  const auto p2 = filters::parse_packet(ethernet(0x0800) + ipv4(6, kA4, kB4, tcp(40001, 22, 2)));
  CHECK(filters::flow_hash(p1, filters::HashFields::flow) !=
        filters::flow_hash(p2, filters::HashFields::flow));
  CHECK(filters::flow_hash(p1, filters::HashFields::addrs) ==
        filters::flow_hash(p2, filters::HashFields::addrs));
}

TEST_CASE("hash: ports are 0 without a TCP/UDP header, protocol 255 when unknown") {
  // Non-first fragment of UDP: addr, addr, 17, 0 0, 0 0.
  const auto frag = filters::parse_packet(frame("ipv4-frag-nonfirst-udp"));
  std::vector<std::uint8_t> bytes = {192, 0, 2, 1, 198, 51, 100, 7, 17, 0, 0, 0, 0};
  CHECK(filters::flow_hash(frag, filters::HashFields::flow) == filters::hash_fnv1a(bytes));
  const auto chain5 = filters::parse_packet(frame("ipv6-chain5-tcp"));
  bytes.assign(kA6.begin(), kA6.end());
  bytes.insert(bytes.end(), kB6.begin(), kB6.end());
  bytes.insert(bytes.end(), {255, 0, 0, 0, 0});
  CHECK(filters::flow_hash(chain5, filters::HashFields::flow) == filters::hash_fnv1a(bytes));
  CHECK(run("hash", "ipv6-chain5-tcp").accept);
  CHECK(run("hash", "arp-request") == kReject);
}

TEST_CASE("bpf: classic BPF from libpcap on the frame") {
  const ClassicBpf dns = compile_cbpf("udp port 53");
  auto with = [&](const ClassicBpf& prog, const std::string& name) {
    return filters::make_reference_filter("bpf", {{"expr", std::string("udp port 53")}}, &prog)
        ->process(frame(name));
  };
  CHECK(with(dns, "ipv4-udp-dns-query") == acc(0));
  CHECK(with(dns, "ipv4-udp-dns-reply") == acc(0));
  CHECK(with(dns, "ipv6-udp-dns") == acc(0));
  CHECK(with(dns, "ipv4-tcp-syn") == kReject);
  CHECK(with(dns, "ipv4-udp-same-ports") == kReject);
  CHECK(with(dns, "arp-request") == kReject);
  CHECK(with(dns, "trunc/arp-request/0") == kReject);
  // libpcap's filter does not look behind VLAN tags unless asked to.
  CHECK(with(dns, "qinq-88a8-200-8100-300-ipv4-udp") == kReject);
  // Without a translation, the filter compiles `expr` itself.
  CHECK(run("bpf", "ipv4-udp-dns-query", {{"expr", std::string("udp port 53")}}) == acc(0));
  CHECK(run("bpf", "ipv4-tcp-syn", {{"expr", std::string("udp port 53")}}) == kReject);
  CHECK(run("bpf", "ipv4-tcp-syn", {{"expr", std::string("tcp[tcpflags] & tcp-syn != 0")}}) ==
        acc(0));
  CHECK(run("bpf", "qinq-88a8-200-8100-300-ipv4-udp",
            {{"expr", std::string("vlan and vlan and udp port 53")}}) == acc(0));
  CHECK_THROWS_AS(filters::make_reference_filter("bpf", {{"expr", std::string("udp port")}}),
                  std::invalid_argument);
  const ClassicBpf jump_out = {{0x05, 0, 0, 100}};  // ja +100: past the end
  CHECK_THROWS_AS(filters::make_reference_filter("bpf", {{"expr", std::string("x")}}, &jump_out),
                  std::invalid_argument);
  const ClassicBpf empty;
  CHECK_THROWS_AS(filters::make_reference_filter("bpf", {{"expr", std::string("x")}}, &empty),
                  std::invalid_argument);
}

TEST_CASE("count, drop, pass, tx accept everything with class 0") {
  for (const char* f : {"count", "drop", "pass"}) {
    CAPTURE(f);
    CHECK(run(f, Bytes{}) == acc(0));
    CHECK(run(f, "ipv4-tcp-syn") == acc(0));
  }
  CHECK(run("tx", "ipv4-tcp-syn", {{"dev", std::string("eth1")}}) == acc(0));
}

TEST_CASE("sample: the 1st, (n+1)th, (2n+1)th ... block") {
  auto f = filters::make_reference_filter("sample", {{"n", std::int64_t{3}}});
  const Bytes& b = frame("ipv4-tcp-syn");
  std::vector<int> taken;
  for (int i = 1; i <= 10; ++i)
    if (f->process(b).accept) taken.push_back(i);
  CHECK(taken == std::vector<int>{1, 4, 7, 10});
  auto one = filters::make_reference_filter("sample", {{"n", std::int64_t{1}}});
  for (int i = 0; i < 5; ++i)
    CHECK(one->process(b).accept);
  auto huge = filters::make_reference_filter("sample", {{"n", std::int64_t{4'294'967'295}}});
  CHECK(huge->process(b).accept);
  for (int i = 0; i < 100; ++i)
    CHECK(!huge->process(b).accept);
  CHECK_THROWS_AS(filters::make_reference_filter("sample", {}), std::invalid_argument);
}

TEST_CASE("rate: packet token bucket with a fake clock") {
  auto f = filters::make_reference_filter("rate", {{"pps", std::int64_t{2}}});
  const Bytes& b = frame("ipv4-tcp-syn");
  constexpr std::uint64_t s = 1'000'000'000;
  const std::uint64_t t0 = 5 * s;
  // Burst: one second's worth, available at once.
  CHECK(f->process(b, t0).accept);
  CHECK(f->process(b, t0).accept);
  CHECK(!f->process(b, t0).accept);
  // Half a second refills one token.
  CHECK(!f->process(b, t0 + s / 2 - 1).accept);
  CHECK(f->process(b, t0 + s / 2).accept);
  CHECK(!f->process(b, t0 + s / 2).accept);
  // A long pause refills the burst only.
  CHECK(f->process(b, t0 + 100 * s).accept);
  CHECK(f->process(b, t0 + 100 * s).accept);
  CHECK(!f->process(b, t0 + 100 * s).accept);
  // A clock stepping back refills nothing.
  CHECK(!f->process(b, t0).accept);
}

TEST_CASE("rate: bit token bucket, and both together") {
  constexpr std::uint64_t ms = 1'000'000;
  const Bytes& b = frame("ipv4-tcp-syn");  // 74 bytes = 592 bits
  auto bits = filters::make_reference_filter("rate", {{"bps", std::int64_t{1000}}});
  CHECK(bits->process(b, 0).accept);          // 1000 - 592 = 408 left
  CHECK(!bits->process(b, 0).accept);         // rejected blocks take nothing
  CHECK(!bits->process(b, 183 * ms).accept);  // 408 + 183 = 591
  CHECK(bits->process(b, 184 * ms).accept);   // 592
  CHECK(!bits->process(b, 184 * ms).accept);
  // A block larger than the burst never passes.
  auto tiny = filters::make_reference_filter("rate", {{"bps", std::int64_t{500}}});
  CHECK(!tiny->process(b, 0).accept);
  CHECK(tiny->process(Bytes(62, 0), 0).accept);  // 496 bits
  // Both: each block needs a packet token and its bits.
  auto both = filters::make_reference_filter(
      "rate", {{"pps", std::int64_t{10}}, {"bps", std::int64_t{1200}}});
  CHECK(both->process(b, 0).accept);              // 608 bits left
  CHECK(!both->process(Bytes(77, 0), 0).accept);  // 616 bits
  CHECK(both->process(Bytes(76, 0), 0).accept);   // 608 bits exactly
  for (int i = 0; i < 8; ++i)                     // empty blocks need no bits, but a packet token
    CHECK(both->process(Bytes{}, 0).accept);
  CHECK(!both->process(Bytes{}, 0).accept);
  // Large rates do not overflow.
  auto big = filters::make_reference_filter(
      "rate", {{"pps", std::int64_t{1'000'000'000'000}}, {"bps", std::int64_t{1'000'000'000'000}}});
  for (std::uint64_t t = 0; t < 1000; ++t)
    CHECK(big->process(b, t * std::uint64_t{1'000'000'000'000}).accept);
  CHECK_THROWS_AS(filters::make_reference_filter("rate", {}), std::invalid_argument);
}

TEST_CASE("factory: filters without a reference implementation") {
  for (const char* name : {"http", "ssh", "rtsp", "dns", "tls", "tcpstream", "match", "pcap",
                           "print", "file", "fifo", "union", "intersect", "rx", "pcapin"}) {
    CAPTURE(name);
    CHECK(!filters::has_reference_filter(name));
    const filters::FilterSpec* spec = filters::Catalog::builtin().find(name);
    REQUIRE(spec != nullptr);
    CHECK_THROWS_AS(filters::make_reference_filter(*spec, {}), std::invalid_argument);
  }
  CHECK_THROWS_AS(filters::make_reference_filter("nonesuch", {}), std::invalid_argument);
  try {
    filters::make_reference_filter("http", {});
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("'http'") != std::string::npos);
  }
  // Ill-typed options.
  CHECK_THROWS_AS(filters::make_reference_filter("port", {{"which", std::int64_t{1}}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("port", {{"which", std::string("both")}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("hash", {{"fields", std::string("ports")}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("hash", {{"buckets", std::int64_t{0}}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(filters::make_reference_filter("len", {{"mtu", std::int64_t{0}}}),
                  std::invalid_argument);
}

// --- The standard corpus ----------------------------------------------------

namespace {

struct Instance {
  std::string label;
  std::string filter;
  Options options;
};

// Every reference filter, with each option that changes the code path.
std::vector<Instance> all_instances() {
  std::vector<Instance> out;
  for (const char* f : {"eth", "vlan", "arp", "ip", "ipv4", "ipv6", "icmp", "tcp", "udp", "proto",
                        "tcpflags", "count", "drop", "pass"})
    out.push_back({f, f, {}});
  out.push_back({"tx", "tx", {{"dev", std::string("eth0")}}});
  for (const char* w : {"src", "dst", "any"}) {
    out.push_back({std::string("port/") + w, "port", {{"which", std::string(w)}}});
    out.push_back({std::string("addr4/") + w,
                   "addr",
                   {{"net", std::string("192.0.2.0/24")}, {"which", std::string(w)}}});
    out.push_back({std::string("addr6/") + w,
                   "addr",
                   {{"net", std::string("2001:db8::/33")}, {"which", std::string(w)}}});
  }
  for (const char* fields : {"flow", "addrs", "src", "dst"})
    out.push_back({std::string("hash/") + fields,
                   "hash",
                   {{"fields", std::string(fields)}, {"buckets", std::int64_t{65536}}}});
  out.push_back({"len", "len", {{"min", std::int64_t{60}}, {"max", std::int64_t{100}}}});
  for (const char* expr : {"udp port 53", "tcp[tcpflags] & tcp-syn != 0", "ip6 and tcp",
                           "vlan and ip", "ether[100:4] = 0", "ip[0] & 0xf > 5"})
    out.push_back({std::string("bpf/") + expr, "bpf", {{"expr", std::string(expr)}}});
  out.push_back({"sample", "sample", {{"n", std::int64_t{3}}}});
  out.push_back({"rate", "rate", {{"pps", std::int64_t{100}}, {"bps", std::int64_t{100'000}}}});
  return out;
}

}  // namespace

TEST_CASE("corpus: deterministic, uniquely named, covering every case") {
  const auto a = standard_corpus(), b = standard_corpus();
  REQUIRE(a.size() == b.size());
  std::set<std::string> names;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].bytes == b[i].bytes);
    names.insert(a[i].name);
  }
  CHECK(names.size() == a.size());
  CHECK(a.size() > 500);
  for (const std::string len : {"0", "1", "13", "14"})
    CHECK(names.count("trunc/arp-request/" + len) == 1);
}

TEST_CASE("corpus: every filter on every frame, read within the frame only") {
  // Each frame is copied into an allocation of exactly its size, so that
  // AddressSanitizer catches any read past its end.
  const auto corpus = standard_corpus();
  const auto instances = all_instances();
  std::map<std::string, std::size_t> accepted;
  std::set<std::pair<std::string, std::uint16_t>> classes;
  for (const auto& inst : instances) {
    CAPTURE(inst.label);
    auto f = filters::make_reference_filter(inst.filter, inst.options);
    std::uint64_t now = 0;
    for (const auto& tf : corpus) {
      CAPTURE(tf.name);
      const std::size_t n = tf.bytes.size();
      auto exact = std::make_unique<std::uint8_t[]>(n);
      std::copy(tf.bytes.begin(), tf.bytes.end(), exact.get());
      const std::span<const std::uint8_t> bytes(exact.get(), n);
      const filters::ParsedPacket p = filters::parse_packet(bytes);
      const Verdict v = f->process(p, bytes, now += 1'000'000);
      if (v.accept) {
        ++accepted[inst.label];
        classes.insert({inst.label, v.cls});
      } else {
        CHECK(v.cls == 0);
      }
    }
    // Every instance both accepts and rejects something in the corpus
    // (except those that accept everything).
    const bool accepts_all = inst.filter == "count" || inst.filter == "drop" ||
                             inst.filter == "pass" || inst.filter == "tx";
    CHECK(accepted[inst.label] > 0);
    if (!accepts_all) CHECK(accepted[inst.label] < corpus.size());
  }
  // Classifiers produce more than one class across the corpus.
  for (const char* label : {"vlan", "proto", "tcpflags", "port/any", "hash/flow"}) {
    std::size_t distinct = 0;
    for (const auto& [l, c] : classes)
      distinct += l == label ? 1u : 0u;
    CAPTURE(label);
    CHECK(distinct > 3);
  }
}

TEST_CASE("corpus: the filters agree with each other") {
  for (const auto& tf : standard_corpus()) {
    CAPTURE(tf.name);
    const filters::ParsedPacket p = filters::parse_packet(tf.bytes);
    auto v = [&](const char* f, const Options& o = {}) { return run(f, tf.bytes, o); };
    const bool ip = v("ip").accept, tcp = v("tcp").accept, udp = v("udp").accept;
    CHECK(ip == (v("ipv4").accept || v("ipv6").accept));
    CHECK(!(v("ipv4").accept && v("ipv6").accept));
    CHECK(v("eth").accept == (tf.bytes.size() >= 14));
    if (tcp || udp || v("icmp").accept || v("proto").accept) CHECK(ip);
    if (tcp) CHECK(v("proto") == acc(6));
    if (udp) CHECK(v("proto") == acc(17));
    CHECK(v("port").accept == (tcp || udp));
    CHECK(v("tcpflags").accept == tcp);
    CHECK(v("hash").accept == ip);
    CHECK(v("addr", {{"net", std::string("0.0.0.0/0")}}).accept == (p.l3 == filters::L3Kind::ipv4));
    CHECK(v("addr", {{"net", std::string("::/0")}}).accept == (p.l3 == filters::L3Kind::ipv6));
    if (v("arp").accept) CHECK(!ip);
    const Verdict vlan = v("vlan");
    CHECK(vlan.cls <= 4095);
    CHECK(vlan.accept == (p.vlan_count > 0));
    if (p.non_first_fragment) CHECK((!tcp && !udp && !v("icmp").accept));
    if (tcp || udp) {
      const std::uint16_t lo = std::min(p.sport, p.dport);
      CHECK(v("port").cls == lo);
    }
    CHECK(p.l4_offset <= 14 + 8 + 60 + 4 * 2048 + 8);
    if (p.l4 != filters::L4Kind::none) CHECK(p.l4_offset < p.len);
  }
}

// --- Whole requests ----------------------------------------------------------

namespace {

compiler::RequestDag compile_dag(std::string_view text) {
  auto r = compiler::compile(text);
  REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  return std::move(*r.dag);
}

struct Evaluated {
  reference::DagResult result;
  const reference::ReferenceDag* ref;
  const reference::NodeResult& node(std::string_view id) const {
    return result.nodes.at(ref->index_of(id).value());
  }
};

}  // namespace

TEST_CASE("dag: (tcp) > (port) 22> (count)") {
  const auto dag = compile_dag("(tcp) > (port) 22> (count)");
  reference::ReferenceDag ref(dag);  // n0 rx, n1 tcp, n2 port, n3 count
  REQUIRE(ref.node_count() == 4);
  Evaluated ssh{ref.run(frame("ipv4-tcp-syn")), &ref};
  CHECK(ssh.node("n0") == reference::NodeResult{true, true, 0});
  CHECK(ssh.node("n1") == reference::NodeResult{true, true, 0});
  CHECK(ssh.node("n2") == reference::NodeResult{true, true, 22});
  CHECK(ssh.node("n3") == reference::NodeResult{true, true, 0, 22});  // came with the port
  CHECK(ssh.result.verdict.action == reference::HookAction::none);
  Evaluated web{ref.run(frame("ipv4-tcp-psh-ack-http")), &ref};
  CHECK(web.node("n2") == reference::NodeResult{true, true, 80});
  CHECK(!web.node("n3").reached);
  Evaluated dns{ref.run(frame("ipv4-udp-dns-query")), &ref};
  CHECK(dns.node("n1") == reference::NodeResult{true, false, 0});
  CHECK(!dns.node("n2").reached);
  CHECK(!dns.node("n3").reached);
  Evaluated empty{ref.run({}), &ref};
  CHECK(empty.node("n0").accepted);
  CHECK(!empty.node("n2").reached);
}

TEST_CASE("dag: not (tcp) > (drop) drops everything but TCP") {
  const auto dag = compile_dag("not (tcp) > (drop)");
  reference::ReferenceDag ref(dag);
  CHECK(ref.run(frame("ipv4-udp-dns-query")).verdict.action == reference::HookAction::drop);
  CHECK(ref.run(frame("arp-request")).verdict.action == reference::HookAction::drop);
  CHECK(ref.run({}).verdict.action == reference::HookAction::drop);
  CHECK(ref.run(frame("ipv4-tcp-syn")).verdict.action == reference::HookAction::none);
  CHECK(ref.run(frame("ipv6-chain4-tcp")).verdict.action == reference::HookAction::none);
  CHECK(ref.run(frame("ipv6-chain5-tcp")).verdict.action == reference::HookAction::drop);
}

TEST_CASE("dag: (tcp) or (udp) > (count)") {
  const auto dag = compile_dag("(tcp) or (udp) > (count)");
  reference::ReferenceDag ref(dag);  // n1 tcp, n2 udp, n3 union, n4 count
  for (const char* name : {"ipv4-tcp-syn", "ipv4-udp-dns-query", "ipv6-frag-first-udp"}) {
    CAPTURE(name);
    Evaluated e{ref.run(frame(name)), &ref};
    CHECK(e.node("n3") == reference::NodeResult{true, true, 0});
    CHECK(e.node("n4").accepted);
  }
  Evaluated icmp{ref.run(frame("ipv4-icmp-echo")), &ref};
  CHECK(!icmp.node("n3").reached);
  CHECK(!icmp.node("n4").reached);
}

TEST_CASE("dag: union takes the class of the first input that delivered") {
  const auto dag = compile_dag("(port, which=src) or (vlan) > (count)");
  reference::ReferenceDag ref(dag);  // n1 port, n2 vlan, n3 union
  Evaluated both{ref.run(frame("vlan100-ipv4-tcp-options")), &ref};
  CHECK(both.node("n3") == reference::NodeResult{true, true, 40000, 40000});
  Evaluated vlan_only{ref.run(frame("arp-vlan10")), &ref};
  CHECK(vlan_only.node("n3") == reference::NodeResult{true, true, 10, 10});
  // A block that came through `!>` has class 0.
  const auto dag2 = compile_dag("(tcp) or not (vlan) > (count)");
  reference::ReferenceDag ref2(dag2);  // n1 tcp, n2 vlan, n3 union
  Evaluated untagged{ref2.run(frame("ipv4-udp-dns-query")), &ref2};
  CHECK(untagged.node("n3") == reference::NodeResult{true, true, 0});
  Evaluated tagged_udp{ref2.run(frame("qinq-88a8-200-8100-300-ipv4-udp")), &ref2};
  CHECK(!tagged_udp.node("n3").reached);
}

TEST_CASE("dag: (tcp) and (port) 22> (count)") {
  // The intersection's class is that of its first input that classifies:
  // port's, whichever side of `and` it stands on.
  const auto dag = compile_dag("(tcp) and (port) 22> (count)");
  reference::ReferenceDag ref(dag);  // n1 tcp, n2 port, n3 intersect, n4 count
  Evaluated ssh{ref.run(frame("ipv4-tcp-syn")), &ref};
  CHECK(ssh.node("n3") == reference::NodeResult{true, true, 22});
  CHECK(ssh.node("n4") == reference::NodeResult{true, true, 0, 22});
  const auto dag2 = compile_dag("(port) and (tcp) 22> (count)");
  reference::ReferenceDag ref2(dag2);  // n1 port, n2 tcp, n3 intersect, n4 count
  Evaluated ssh2{ref2.run(frame("ipv4-tcp-syn")), &ref2};
  CHECK(ssh2.node("n3") == reference::NodeResult{true, true, 22, 22});
  CHECK(ssh2.node("n4") == reference::NodeResult{true, true, 0, 22});
  Evaluated dns{ref2.run(frame("ipv4-udp-dns-query")), &ref2};
  CHECK(dns.node("n1") == reference::NodeResult{true, true, 53});
  // Reached (with the port's class, its first input), not by all inputs.
  CHECK(dns.node("n3") == reference::NodeResult{true, false, 0, 53});
  CHECK(!dns.node("n4").reached);
  Evaluated arp{ref2.run(frame("arp-request")), &ref2};
  CHECK(!arp.node("n3").reached);
}

TEST_CASE("dag: selectors, inverted and rejected") {
  const auto dag = compile_dag("(port) !22> (count); (tcpflags) 2,18> (drop)");
  reference::ReferenceDag ref(dag);
  const auto count = ref.index_of("n2").value(), drop = ref.index_of("n4").value();
  auto r = ref.run(frame("ipv4-tcp-syn"));  // port 22, flags 2
  CHECK(!r.nodes[count].reached);
  CHECK(r.nodes[drop].reached);
  CHECK(r.verdict.action == reference::HookAction::drop);
  r = ref.run(frame("ipv4-tcp-psh-ack-http"));  // port 80, flags 24
  CHECK(r.nodes[count].reached);
  CHECK(!r.nodes[drop].reached);
  CHECK(r.verdict.action == reference::HookAction::none);
  r = ref.run(frame("ipv4-tcp-synack"));  // port 22, flags 18
  CHECK(r.verdict.action == reference::HookAction::drop);
}

TEST_CASE("dag: the strongest verdict wins: drop > tx > pass > none") {
  const auto dag = compile_dag("(tcp) > (drop); (udp) > (tx, dev=eth1); (ip) > (pass); (count)");
  reference::ReferenceDag ref(dag);
  CHECK(ref.run(frame("ipv4-tcp-syn")).verdict ==
        reference::HookVerdict{reference::HookAction::drop, ""});
  CHECK(ref.run(frame("ipv6-udp-dns")).verdict ==
        reference::HookVerdict{reference::HookAction::tx, "eth1"});
  CHECK(ref.run(frame("ipv4-icmp-echo")).verdict ==
        reference::HookVerdict{reference::HookAction::pass, ""});
  CHECK(ref.run(frame("arp-request")).verdict ==
        reference::HookVerdict{reference::HookAction::none, ""});
  // Two tx reached: the first in node order.
  const auto two = compile_dag("(tx, dev=a); (udp) > (tx, dev=b); (pass)");
  CHECK(reference::evaluate_dag(two, frame("ipv4-udp-dns-query")).verdict ==
        reference::HookVerdict{reference::HookAction::tx, "a"});
  CHECK(to_string(reference::HookAction::drop) == "drop");
}

TEST_CASE("dag: bpf translation, stateful filters keep state across blocks") {
  const auto dag = compile_dag("(bpf, expr=\"udp port 53\") > (sample, n=2) > (drop)");
  reference::ReferenceDag ref(dag);
  std::vector<bool> dropped;
  for (const char* name : {"ipv4-udp-dns-query", "ipv4-tcp-syn", "ipv4-udp-dns-reply",
                           "ipv6-udp-dns", "ipv4-udp-dns-query"})
    dropped.push_back(ref.run(frame(name)).verdict.action == reference::HookAction::drop);
  // Only DNS reaches the sampler; it takes the 1st and 3rd of those.
  CHECK(dropped == std::vector<bool>{true, false, false, true, false});

  const auto limited = compile_dag("(rate, pps=1) !> (drop)");
  reference::ReferenceDag rl(limited);
  CHECK(rl.run(frame("ipv4-tcp-syn"), 0).verdict.action == reference::HookAction::none);
  CHECK(rl.run(frame("ipv4-tcp-syn"), 1).verdict.action == reference::HookAction::drop);
  CHECK(rl.run(frame("ipv4-tcp-syn"), 1'000'000'001).verdict.action == reference::HookAction::none);
}

TEST_CASE("dag: every node of a larger request on the whole corpus") {
  const auto dag = compile_dag(
      "(rx, dev=eth0) > (vlan) 100:200> (ipv4) > ((tcp) > (port, which=dst) 22,80> (count) | "
      "(udp) > (hash, buckets=4) 0,1> (drop)); "
      "(ipv6) > (addr, net=2001:db8::/32, which=src) > (tcpflags) !2> (tx, dev=eth2)");
  reference::ReferenceDag ref(dag);
  std::size_t verdicts[4] = {};
  for (const auto& tf : standard_corpus()) {
    const auto r = ref.run(tf.bytes);
    ++verdicts[static_cast<std::size_t>(r.verdict.action)];
    for (std::size_t v = 0; v < r.nodes.size(); ++v)
      if (!r.nodes[v].reached) CHECK(!r.nodes[v].accepted);
  }
  CHECK(verdicts[static_cast<std::size_t>(reference::HookAction::none)] > 0);
  CHECK(verdicts[static_cast<std::size_t>(reference::HookAction::tx)] > 0);
  CHECK(verdicts[static_cast<std::size_t>(reference::HookAction::pass)] == 0);
}

TEST_CASE("dag: requests with filters that have no reference implementation") {
  const auto dag = compile_dag("(tcp) > (http) > (print)");
  CHECK_THROWS_AS(reference::ReferenceDag{dag}, std::invalid_argument);
}
