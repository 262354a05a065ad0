// The SRL version 1 filter catalog (SRL.md §6) as data. To add a filter, add
// one entry here; the compiler, `srlc --filters` and the docs table read it.
//
// Costs are defaults in nanoseconds before calibration on the machine: a
// header-only filter costs a few ns per block inlined in eBPF, somewhat more
// in a userspace run-to-completion loop, and least on an offload device.
// Selectivities are the share of blocks a filter accepts on typical mixed
// traffic (about 85% of IP traffic is TCP, 12% UDP).
#include "srl/filters/catalog.h"

namespace srl::filters {
namespace {

using T = OptionType;
constexpr std::int64_t kU16 = 65535;

Cost k(double block, double byte = 0) {
  return {block, byte};
}

OptionSpec which_option(std::string_view dflt, std::string_view help) {
  return {.name = "which",
          .type = T::choice,
          .default_value = std::string(dflt),
          .choices = {"src", "dst", "any"},
          .help = help};
}

// A plain header filter: K U O, no options, stateless, constant class 0.
FilterSpec header_filter(std::string_view name, std::string_view summary, double selectivity,
                         std::uint32_t insns, FilterSpec::VerifierWork verifier) {
  return {.name = name,
          .summary = summary,
          .class_meaning = "0",
          .max_class = 0,
          .cost = {k(3), k(8), k(1)},
          .selectivity = selectivity,
          .ebpf_insns = insns,
          .verifier = verifier};
}

std::vector<FilterSpec> make_builtin() {
  std::vector<FilterSpec> f;

  // Sources.
  f.push_back({.name = "rx",
               .summary = "receive packets from a network device",
               .role = Role::source,
               .options = {{.name = "dev",
                            .type = T::device,
                            .help = "interface name; default: the request's default devices"},
                           {.name = "queue",
                            .type = T::integer,
                            .min = 0,
                            .max = 65535,
                            .help = "receive queue; default: all queues"}},
               .class_meaning = "0",
               .cost = {k(0), k(40, 0.05), std::nullopt},
               .ebpf_insns = 0,
               .verifier = {0, 0}});
  f.push_back(
      {.name = "pcapin",
       .summary = "replay packets from a pcap or pcapng file",
       .role = Role::source,
       .options =
           {{.name = "file", .type = T::path, .required = true, .help = "capture file to read"},
            {.name = "loop",
             .type = T::integer,
             .default_value = std::int64_t{1},
             .min = 0,
             .max = 1'000'000'000,
             .help = "passes over the file; 0 repeats forever"},
            {.name = "speed",
             .type = T::integer,
             .default_value = std::int64_t{0},
             .min = 0,
             .max = 1'000'000,
             .help = "replay speed as a multiple of the recorded timing; 0 is "
                     "as fast as possible"}},
       .class_meaning = "0",
       .cost = {std::nullopt, k(60, 0.2), std::nullopt}});

  // Layer 2 to 4 header filters.
  f.push_back(header_filter("eth", "accept Ethernet frames", 1.0, 6, {60, 60}));
  f.push_back(header_filter("arp", "accept ARP packets", 0.01, 8, {100, 150}));
  {
    FilterSpec vlan = header_filter("vlan", "accept 802.1Q-tagged frames", 0.05, 10, {100, 150});
    vlan.class_meaning = "VLAN id (0-4095)";
    vlan.max_class = 4095;
    f.push_back(vlan);
  }
  f.push_back(header_filter("ip", "accept IPv4 and IPv6 packets", 0.98, 10, {60, 60}));
  f.push_back(header_filter("ipv4", "accept IPv4 packets", 0.9, 8, {60, 60}));
  f.push_back(header_filter("ipv6", "accept IPv6 packets", 0.08, 8, {60, 60}));
  f.push_back(header_filter("icmp", "accept ICMP and ICMPv6 packets", 0.01, 14, {60, 60}));
  f.push_back(header_filter("tcp", "accept TCP segments", 0.85, 14, {60, 60}));
  f.push_back(header_filter("udp", "accept UDP datagrams", 0.12, 14, {60, 60}));
  {
    FilterSpec proto =
        header_filter("proto", "classify IP packets by protocol number", 0.98, 14, {120, 120});
    proto.class_meaning = "IP protocol number (IPv6: upper-layer header)";
    proto.max_class = 255;
    proto.class_names = {{"icmp", 1},  {"igmp", 2},   {"tcp", 6},      {"udp", 17},
                         {"gre", 47},  {"esp", 50},   {"ah", 51},      {"icmpv6", 58},
                         {"ospf", 89}, {"sctp", 132}, {"udplite", 136}};
    f.push_back(proto);
  }
  f.push_back({.name = "port",
               .summary = "classify TCP and UDP packets by port",
               .options = {which_option("any",
                                        "which port is the class: dst, src, or any (the lower "
                                        "of the two, the service side by convention)")},
               .class_meaning = "port number",
               .max_class = kU16,
               .cost = {k(4), k(10), k(1)},
               .selectivity = 0.97,
               .ebpf_insns = 24,
               .verifier = {300, 150}});
  f.push_back({.name = "addr",
               .summary = "accept IP packets whose address lies in a prefix",
               .options = {{.name = "net",
                            .type = T::cidr,
                            .required = true,
                            .help = "IPv4 or IPv6 prefix, e.g. 10.0.0.0/8 or 2001:db8::/32"},
                           which_option("any", "which address must match: src, dst or any")},
               .class_meaning = "0",
               .cost = {k(5), k(12), k(1)},
               .selectivity = 0.5,
               .ebpf_insns = 30,
               .verifier = {700, 150}});
  f.push_back({.name = "tcpflags",
               .summary = "classify TCP segments by their flag byte",
               .class_meaning = "TCP flag byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 "
                                "CWR=128); a name is that flag alone (syn: SYN and no other)",
               .max_class = 255,
               .class_names = {{"fin", 1},
                               {"syn", 2},
                               {"rst", 4},
                               {"psh", 8},
                               {"ack", 16},
                               {"urg", 32},
                               {"ece", 64},
                               {"cwr", 128},
                               {"syn-ack", 18},
                               {"fin-ack", 17},
                               {"rst-ack", 20},
                               {"psh-ack", 24}},
               .cost = {k(4), k(10), std::nullopt},
               .selectivity = 0.85,
               .ebpf_insns = 20,
               .verifier = {60, 60}});
  f.push_back({.name = "len",
               .summary = "accept blocks whose length lies in [min, max] bytes",
               .options = {{.name = "min",
                            .type = T::integer,
                            .default_value = std::int64_t{0},
                            .min = 0,
                            .max = kU16,
                            .help = "smallest accepted length in bytes"},
                           {.name = "max",
                            .type = T::integer,
                            .default_value = std::int64_t{kU16},
                            .min = 0,
                            .max = kU16,
                            .help = "largest accepted length in bytes"}},
               .class_meaning = "0",
               .cost = {k(2), k(5), k(1)},
               .selectivity = 0.5,
               .ebpf_insns = 6,
               .verifier = {120, 120}});
  f.push_back({.name = "hash",
               .summary = "classify packets into buckets by a hash of their flow",
               .options = {{.name = "buckets",
                            .type = T::integer,
                            .default_value = std::int64_t{16},
                            .min = 1,
                            .max = 65536,
                            .help = "number of buckets; the class is 0 to buckets-1"},
                           {.name = "fields",
                            .type = T::choice,
                            .default_value = std::string("flow"),
                            .choices = {"flow", "addrs", "src", "dst"},
                            .help = "what is hashed: flow (5-tuple, both directions alike), "
                                    "addrs (both addresses), src or dst address"}},
               .class_meaning = "bucket number",
               .max_class = kU16,
               .cost = {k(8), k(20), k(2)},
               .selectivity = 1.0,
               .ebpf_insns = 60,
               .verifier = {1800, 700}});
  f.push_back({.name = "bpf",
               .summary = "accept packets matching a tcpdump filter expression",
               .options = {{.name = "expr",
                            .type = T::bpf_expr,
                            .required = true,
                            .help = "pcap-filter(7) expression, e.g. \"udp port 53\""}},
               .class_meaning = "0",
               .cost = {k(10), k(25), std::nullopt},
               .selectivity = 0.3,
               .ebpf_insns = 200,
               .verifier = {600, 250}});

  // Counting, sampling, policing.
  f.push_back({.name = "count",
               .summary = "count blocks and bytes (with by=class: per class of its input too); "
                          "passes every block",
               .options = {{.name = "by",
                            .type = T::choice,
                            .default_value = std::string("none"),
                            .choices = {"none", "class"},
                            .help = "class: also count per class of the input (the class the "
                                    "filter before it gave the block)"},
                           {.name = "keys",
                            .type = T::integer,
                            .default_value = std::int64_t{256},
                            .min = 1,
                            .max = 4096,
                            .help = "with by=class: the most classes kept; blocks of further "
                                    "classes are counted as \"other\""}},
               .class_meaning = "0 (passes all)",
               .cost = {k(3), k(5), k(1)},
               .state = State::global,
               .ebpf_insns = 12,
               .verifier = {100, 160}});
  f.push_back({.name = "sample",
               .summary = "accept one block in n",
               .options = {{.name = "n",
                            .type = T::integer,
                            .required = true,
                            .min = 1,
                            .max = 4'294'967'295,
                            .help = "sampling interval"}},
               .class_meaning = "0",
               .cost = {k(4), k(6), std::nullopt},
               .state = State::global,
               .selectivity = 0.01,
               .ebpf_insns = 16,
               .verifier = {150, 120}});
  f.push_back({.name = "rate",
               .summary = "accept blocks up to a rate (token bucket), reject the excess",
               .options = {{.name = "pps",
                            .type = T::integer,
                            .min = 1,
                            .max = 1'000'000'000'000,
                            .help = "packets per second"},
                           {.name = "bps",
                            .type = T::integer,
                            .min = 1,
                            .max = 1'000'000'000'000,
                            .help = "bits per second"}},
               .class_meaning = "0",
               .cost = {k(8), k(12), std::nullopt},
               .state = State::global,
               .selectivity = 0.9,
               .ebpf_insns = 40,
               .verifier = {200, 400}});

  // Verdicts.
  f.push_back({.name = "drop",
               .summary = "discard the block",
               .role = Role::sink,
               .class_meaning = "terminal",
               .cost = {k(1), k(2), k(1)},
               .ebpf_insns = 2,
               .verifier = {150, 100}});
  f.push_back({.name = "pass",
               .summary = "hand the block to the host's network stack",
               .role = Role::sink,
               .class_meaning = "terminal",
               .cost = {k(1), k(200, 0.1), k(1)},
               .ebpf_insns = 2,
               .verifier = {150, 100}});
  f.push_back({.name = "tx",
               .summary = "transmit the block on a network device",
               .role = Role::sink,
               .options = {{.name = "dev",
                            .type = T::device,
                            .required = true,
                            .help = "interface to transmit on"},
                           {.name = "mode",
                            .type = T::choice,
                            .default_value = std::string("mirror"),
                            .choices = {"mirror", "forward"},
                            .help = "mirror: a copy goes out and the original continues; "
                                    "forward: the block goes out instead"}},
               .class_meaning = "terminal",
               .cost = {k(20), k(300, 0.1), std::nullopt},
               .ebpf_insns = 8,
               .verifier = {300, 200},
               .kernel_tc_only = true});

  // Userspace: reassembly and application protocols.
  f.push_back({.name = "tcpstream",
               .summary = "reassemble TCP byte streams; emits one stream per flow",
               .class_meaning = "flow id",
               .max_class = kU16,
               .cost = {std::nullopt, k(150, 0.3), std::nullopt},
               .state = State::per_flow,
               .reads_payload = true,
               .emits_new_blocks = true});
  f.push_back({.name = "http",
               .summary = "detect and parse HTTP/1.x",
               .class_meaning = "method id (GET=1 HEAD=2 POST=3 PUT=4 DELETE=5 CONNECT=6 "
                                "OPTIONS=7 TRACE=8 PATCH=9; 0 for responses)",
               .max_class = 9,
               .class_names = {{"response", 0},
                               {"GET", 1},
                               {"HEAD", 2},
                               {"POST", 3},
                               {"PUT", 4},
                               {"DELETE", 5},
                               {"CONNECT", 6},
                               {"OPTIONS", 7},
                               {"TRACE", 8},
                               {"PATCH", 9}},
               .cost = {std::nullopt, k(120, 0.5), std::nullopt},
               .state = State::per_flow,
               .reads_payload = true,
               .selectivity = 0.3});
  f.push_back({.name = "ssh",
               .summary = "detect SSH sessions",
               .class_meaning = "0",
               .cost = {std::nullopt, k(60, 0.1), std::nullopt},
               .state = State::per_flow,
               .reads_payload = true,
               .selectivity = 0.05});
  f.push_back({.name = "rtsp",
               .summary = "detect RTSP sessions",
               .class_meaning = "0",
               .cost = {std::nullopt, k(60, 0.1), std::nullopt},
               .state = State::per_flow,
               .reads_payload = true,
               .selectivity = 0.01});
  f.push_back(
      {.name = "dns",
       .summary = "parse DNS messages",
       .class_meaning = "query type (A=1 NS=2 CNAME=5 MX=15 TXT=16 AAAA=28 ANY=255 ...)",
       .max_class = kU16,
       .class_names = {{"A", 1},      {"NS", 2},     {"CNAME", 5},  {"SOA", 6},   {"PTR", 12},
                       {"HINFO", 13}, {"MX", 15},    {"TXT", 16},   {"AAAA", 28}, {"SRV", 33},
                       {"NAPTR", 35}, {"DS", 43},    {"RRSIG", 46}, {"NSEC", 47}, {"DNSKEY", 48},
                       {"SVCB", 64},  {"HTTPS", 65}, {"AXFR", 252}, {"ANY", 255}, {"CAA", 257}},
       .cost = {std::nullopt, k(80, 0.2), std::nullopt},
       .reads_payload = true,
       .selectivity = 0.1});
  f.push_back({.name = "tls",
               .summary = "parse the TLS ClientHello",
               .options = {{.name = "sni",
                            .type = T::string,
                            .help = "accept only handshakes whose server name matches this "
                                    "glob; default: every handshake"}},
               .class_meaning = "0",
               .cost = {std::nullopt, k(100, 0.2), std::nullopt},
               .state = State::per_flow,
               .reads_payload = true,
               .selectivity = 0.2});
  f.push_back({.name = "match",
               .summary = "accept blocks whose payload matches a regular expression",
               .options = {{.name = "pattern",
                            .type = T::regex,
                            .required = true,
                            .help = "regular expression (PCRE syntax, as Hyperscan takes it)"},
                           {.name = "flags",
                            .type = T::string,
                            .default_value = std::string(),
                            .help = "letters: i caseless, s dot matches newline, m multi-line, "
                                    "u UTF-8"}},
               .class_meaning = "pattern id (1 for the single pattern)",
               .max_class = 1,
               .cost = {std::nullopt, k(50, 1.0), std::nullopt},
               .reads_payload = true,
               .selectivity = 0.01});

  // Sinks.
  f.push_back(
      {.name = "pcap",
       .summary = "write blocks to a pcap file",
       .role = Role::sink,
       .options = {{.name = "file", .type = T::path, .required = true, .help = "output file"},
                   {.name = "snaplen",
                    .type = T::integer,
                    .default_value = std::int64_t{262144},
                    .min = 1,
                    .max = 262144,
                    .help = "bytes kept of each packet"}},
       .class_meaning = "terminal",
       .cost = {std::nullopt, k(200, 1.0), std::nullopt}});
  f.push_back({.name = "print",
               .summary = "print one tcpdump-like line per block",
               .role = Role::sink,
               .class_meaning = "terminal",
               .cost = {std::nullopt, k(1500), std::nullopt}});
  f.push_back({.name = "file",
               .summary = "write each stream to a file of its own",
               .role = Role::sink,
               .options = {{.name = "dir",
                            .type = T::path,
                            .default_value = std::string("."),
                            .help = "directory for the files"}},
               .class_meaning = "terminal",
               .cost = {std::nullopt, k(300, 1.0), std::nullopt},
               .state = State::per_flow});
  f.push_back({.name = "fifo",
               .summary = "write blocks to a named pipe, as a pcap stream by default",
               .role = Role::sink,
               .options = {{.name = "path",
                            .type = T::path,
                            .required = true,
                            .help = "named pipe to create and write"},
                           {.name = "format",
                            .type = T::choice,
                            .default_value = std::string("pcap"),
                            .choices = {"pcap", "raw"},
                            .help = "pcap (readable live by tcpdump -r) or raw records"}},
               .class_meaning = "terminal",
               .cost = {std::nullopt, k(250, 1.0), std::nullopt}});

  // Synthetic nodes made by the compiler for `or` and `and`.
  f.push_back({.name = "union",
               .summary = "pass the first occurrence of a block from any input (from `or`)",
               .role = Role::synthetic,
               .class_meaning = "input class",
               .max_class = kU16,
               .cost = {k(4), k(10), std::nullopt},
               .state = State::window,
               .ebpf_insns = 10,
               .verifier = {200, 150}});
  f.push_back({.name = "intersect",
               .summary = "pass a block once every input accepted it (from `and`)",
               .role = Role::synthetic,
               .class_meaning = "input class",
               .max_class = kU16,
               .cost = {k(4), k(10), std::nullopt},
               .state = State::window,
               .selectivity = 0.5,
               .ebpf_insns = 10,
               .verifier = {200, 150}});
  return f;
}

}  // namespace

const Catalog& Catalog::builtin() {
  static const Catalog catalog(make_builtin());
  return catalog;
}

}  // namespace srl::filters
