// The generated XDP programs, run in the kernel with BPF_PROG_TEST_RUN:
// verdicts and per-node counters for known frames. Needs root (CAP_BPF).
#include <doctest/doctest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <poll.h>
#include <sched.h>
#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/optimizer/optimizer.h"
#include "srl/runtime/calibrate.h"
#include "srl/runtime/copy_ring.h"
#include "srl/runtime/datapath.h"
#include "srl/runtime/kernel.h"

using namespace srl;
using runtime::kernel::KernelProgram;

namespace {

std::vector<std::uint8_t> ipv4_frame(std::uint8_t proto, std::uint16_t sport, std::uint16_t dport,
                                     std::uint8_t tcp_flags = 0x02) {
  std::vector<std::uint8_t> f(14 + 20 + (proto == 6 ? 20 : 8), 0);
  f[12] = 0x08;  // IPv4
  f[14] = 0x45;
  f[14 + 9] = proto;
  const std::uint8_t src[] = {10, 0, 0, 1}, dst[] = {10, 0, 0, 2};
  std::copy(src, src + 4, f.begin() + 26);
  std::copy(dst, dst + 4, f.begin() + 30);
  f[34] = static_cast<std::uint8_t>(sport >> 8);
  f[35] = static_cast<std::uint8_t>(sport);
  f[36] = static_cast<std::uint8_t>(dport >> 8);
  f[37] = static_cast<std::uint8_t>(dport);
  if (proto == 6) {
    f[34 + 12] = 0x50;
    f[34 + 13] = tcp_flags;
  }
  return f;
}

std::unique_ptr<KernelProgram> build(const std::string& request) {
  const auto r = compiler::compile(request);
  REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  const auto gen = runtime::kernel::generate_xdp(*r.dag, 1);
  const auto dir = std::filesystem::temp_directory_path() / "srl-kernel-test-cache";
  const auto obj = runtime::kernel::compile_bpf(gen.source, dir);
  return KernelProgram::load(obj, gen.nodes.size());
}

}  // namespace

TEST_CASE("kernel: count SSH to port 22, pass everything") {
  auto prog = build("(ipv4) > (tcp) > (port, which=dst) 22> (count)");
  CHECK(prog->test_run(ipv4_frame(6, 40000, 22)) == XDP_PASS);
  CHECK(prog->test_run(ipv4_frame(6, 40000, 80)) == XDP_PASS);
  CHECK(prog->test_run(ipv4_frame(17, 40000, 22)) == XDP_PASS);
  const auto c = prog->counters();
  REQUIRE(c.size() == 5);  // rx ipv4 tcp port count
  CHECK(c[1].packets == 3);
  CHECK(c[2].accepted == 2);
  CHECK(c[4].packets == 1);
  CHECK(c[4].bytes == 54);
}

TEST_CASE("kernel: verdicts, strongest wins") {
  auto prog = build("(udp) > (drop) | (tcp) > (pass)");
  CHECK(prog->test_run(ipv4_frame(17, 1, 53)) == XDP_DROP);
  CHECK(prog->test_run(ipv4_frame(6, 1, 80)) == XDP_PASS);
  auto both = build("(ip) > (pass) | (port) 53> (drop)");
  CHECK(both->test_run(ipv4_frame(17, 5000, 53)) == XDP_DROP);
  CHECK(both->test_run(ipv4_frame(17, 5000, 54)) == XDP_PASS);
}

TEST_CASE("kernel: not, or, and, classes") {
  auto prog = build("not (tcp) > (drop)");
  CHECK(prog->test_run(ipv4_frame(17, 1, 2)) == XDP_DROP);
  CHECK(prog->test_run(ipv4_frame(6, 1, 2)) == XDP_PASS);
  auto either = build("(port, which=dst) 53> (count, name=a) | ((tcp) or (udp)) > (count, name=b)");
  either->test_run(ipv4_frame(17, 1, 53));
  either->test_run(ipv4_frame(6, 1, 80));
  auto c = either->counters();
  // ids: rx port tcp udp count(a) union count(b)
  std::uint64_t union_in = 0;
  for (const auto& x : c)
    union_in = std::max(union_in, x.packets);
  CHECK(union_in == 2);
  auto flags = build("(tcpflags) 2> (drop)");
  CHECK(flags->test_run(ipv4_frame(6, 1, 2, 0x02)) == XDP_DROP);
  CHECK(flags->test_run(ipv4_frame(6, 1, 2, 0x12)) == XDP_PASS);
}

TEST_CASE("kernel: bpf expressions run as translated classic BPF") {
  auto prog = build("(bpf, expr=\"udp dst port 53\") > (drop)");
  CHECK(prog->test_run(ipv4_frame(17, 1000, 53)) == XDP_DROP);
  CHECK(prog->test_run(ipv4_frame(17, 53, 1000)) == XDP_PASS);
  CHECK(prog->test_run(ipv4_frame(6, 1000, 53)) == XDP_PASS);
  // Truncated frames never fault and never match.
  auto f = ipv4_frame(17, 1000, 53);
  f.resize(30);
  CHECK(prog->test_run(f) == XDP_PASS);
}

TEST_CASE("kernel: a filter without a kernel implementation is named") {
  const auto r = compiler::compile("(tcp) > (http) > (print)");
  REQUIRE(r.ok());
  CHECK_THROWS_WITH_AS(runtime::kernel::generate_xdp(*r.dag, 1),
                       doctest::Contains("'http' (n2) has no kernel implementation"),
                       runtime::kernel::KernelError);
}

TEST_CASE("kernel: rate passes a burst of one second's worth, then rejects") {
  // 3 packets per second: a full bucket holds 3; refilling during the test
  // adds far less than one more.
  auto prog = build("(rate, pps=3) > (count) | (rate, pps=3, name=r) !> (drop)");
  int passed = 0;
  for (int i = 0; i < 10; ++i)
    if (prog->test_run(ipv4_frame(17, 1, 2)) == XDP_PASS) ++passed;
  CHECK(passed == 3);
  auto bits = build("(rate, bps=1000) !> (drop)");          // 125 bytes per second
  CHECK(bits->test_run(ipv4_frame(17, 1, 2)) == XDP_PASS);  // 42 bytes: 336 bits
  CHECK(bits->test_run(ipv4_frame(17, 1, 2)) == XDP_PASS);  // 672
  CHECK(bits->test_run(ipv4_frame(17, 1, 2)) == XDP_DROP);  // 1008 > 1000
}

TEST_CASE("kernel: several requests on one hook share their common prefix") {
  compiler::CompileOptions o;
  auto a = compiler::compile("(ipv4) > (udp) > (port, which=dst) 53> (count)", o);
  auto b = compiler::compile("(ipv4) > (udp) > (port, which=dst) 123> (count) | (tcp) > (drop)", o);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const compiler::RequestDag* both[] = {&*a.dag, &*b.dag};
  const std::string labels[] = {"dns", "ntp"};
  const auto merged = compiler::merge_requests(both, labels);
  const auto gen = runtime::kernel::generate_xdp(merged.dag, 1);
  auto prog = KernelProgram::load(
      runtime::kernel::compile_bpf(
          gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      gen.nodes.size());
  CHECK(prog->test_run(ipv4_frame(17, 1000, 53)) == XDP_PASS);
  CHECK(prog->test_run(ipv4_frame(17, 1000, 123)) == XDP_PASS);
  CHECK(prog->test_run(ipv4_frame(6, 1000, 80)) == XDP_DROP);
  const auto c = prog->counters();
  // The shared udp node ran once per packet for both requests.
  const auto udp = merged.dag.find("n2");
  REQUIRE(udp);
  CHECK(merged.dag.graph[*udp].filter_name() == "udp");
  CHECK(merged.members[*udp].size() == 2);
  CHECK(c[*udp].packets == 3);
  CHECK(c[*udp].accepted == 2);
  std::uint64_t counted = 0;
  for (std::size_t i = 0; i < gen.nodes.size(); ++i)
    if (gen.nodes[i].filter == "count") counted += c[i].packets;
  CHECK(counted == 2);  // one DNS, one NTP
}

TEST_CASE("kernel: the TC ingress program gives TC actions for the same request") {
  const auto r = compiler::compile("(udp) > (drop) | (tcp) > (pass)");
  REQUIRE(r.ok());
  const auto gen = runtime::kernel::generate_tc(*r.dag, 1);
  CHECK(gen.source.find("SEC(\"tc\")") != std::string::npos);
  CHECK(gen.source.find("TC_ACT_SHOT") != std::string::npos);
  // Loads as a classifier; the verifier accepts the same filters there.
  auto prog = KernelProgram::load(
      runtime::kernel::compile_bpf(
          gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      gen.nodes.size());
  CHECK(prog->id() != 0);
}

namespace {

struct Split {
  runtime::kernel::GeneratedProgram gen;
  std::unique_ptr<KernelProgram> program;
};

// `request` with its first `kernel_nodes` nodes in the kernel, the rest in
// userspace, on the XDP or the TC hook.
Split split(const std::string& request, std::size_t kernel_nodes, bool tc = false,
            runtime::kernel::CopyChannelOptions copy = {}) {
  const auto r = compiler::compile(request);
  REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  std::vector<bool> in_kernel(r.dag->node_count(), false);
  for (std::size_t v = 0; v < kernel_nodes; ++v)
    in_kernel[v] = true;
  Split s;
  s.gen = tc ? runtime::kernel::generate_tc(*r.dag, 1, "", &in_kernel, copy)
             : runtime::kernel::generate_xdp(*r.dag, 1, "", &in_kernel, copy);
  s.program = KernelProgram::load(
      runtime::kernel::compile_bpf(
          s.gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      s.gen.nodes.size());
  return s;
}

std::vector<std::uint8_t> with_payload(std::vector<std::uint8_t> f, std::size_t bytes) {
  f.resize(f.size() + bytes, 0x5a);
  return f;
}

}  // namespace

TEST_CASE("kernel: an observing userspace part gets copies; the block goes on to the stack") {
  // rx udp in the kernel; dns and print in userspace: nothing consumes.
  auto s = split("(udp) > (dns) > (print)", 2);
  REQUIRE(s.gen.exits.size() == 1);
  CHECK(s.gen.exits[0].delivery == filters::Delivery::copy);
  CHECK(s.gen.exits[0].snaplen == filters::kFullSnap);  // dns reads the payload
  CHECK_FALSE(s.gen.afxdp);
  REQUIRE(s.gen.copy_rings == 1);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto udp = with_payload(ipv4_frame(17, 40000, 53), 300);
  CHECK(s.program->test_run(udp) == XDP_PASS);
  CHECK(s.program->test_run(ipv4_frame(6, 40000, 53)) == XDP_PASS);  // not up: not UDP
  std::vector<filters::Block> blocks(8);
  std::vector<std::uint32_t> exits(8);
  REQUIRE(ring->receive(blocks, exits, 0) == 1);
  CHECK(exits[0] == 1u);
  CHECK(blocks[0].wire_len == udp.size());
  REQUIRE(blocks[0].data.size() == udp.size());
  CHECK(std::equal(udp.begin(), udp.end(), blocks[0].data.begin()));
  CHECK(blocks[0].parsed == nullptr);  // parsed by the engine, for a filter that reads headers
  CHECK(blocks[0].ts_ns > 1'600'000'000'000'000'000ull);  // wall clock
  CHECK(ring->receive(blocks, exits, 0) == 0);
  const auto c = s.program->copy_counters();
  CHECK(c.records == 1);
  CHECK(c.bytes == udp.size());
  CHECK(c.lost == 0);
}

TEST_CASE("kernel: a copy keeps only the bytes the userspace part needs") {
  // count needs the headers; pcap its snaplen.
  auto headers = split("(udp) > (count)", 2);
  REQUIRE(headers.gen.exits.size() == 1);
  CHECK(headers.gen.exits[0].snaplen == filters::kHeaderSnap);
  auto capture = split("(udp) > (pcap, file=\"/dev/null\", snaplen=96)", 2);
  REQUIRE(capture.gen.exits.size() == 1);
  CHECK(capture.gen.exits[0].snaplen == 96);
  auto ring = runtime::CopyRing::open(capture.program->map_fd("srl_ring0"),
                                      capture.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto big = with_payload(ipv4_frame(17, 1, 2), 1400);
  CHECK(capture.program->test_run(big) == XDP_PASS);
  std::vector<filters::Block> blocks(4);
  std::vector<std::uint32_t> exits(4);
  REQUIRE(ring->receive(blocks, exits, 0) == 1);
  CHECK(blocks[0].data.size() == 96);
  CHECK(blocks[0].wire_len == big.size());  // the length on the wire travels along
  CHECK(ring->stats().truncated == 1);
}

TEST_CASE("kernel: exits that fire together are tested once and copy the block once") {
  // Three userspace parts below one kernel node and selector: one test,
  // one record with all three bits, cut to the largest snap length.
  auto s = split(
      "(udp) > (port, which=dst) 53> ((pcap, file=\"/dev/null\", snaplen=96) | "
      "(pcap, file=\"/dev/null\", snaplen=200) | (pcap, file=\"/dev/null\", snaplen=64))",
      3);
  REQUIRE(s.gen.exits.size() == 3);
  std::size_t tests = 0;
  for (std::size_t at = 0; (at = s.gen.source.find("|= 7u;", at)) != std::string::npos; ++at)
    ++tests;
  CHECK(tests == 1);
  CHECK(s.gen.source.find("|= 1u;") == std::string::npos);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto dns = with_payload(ipv4_frame(17, 40000, 53), 400);
  CHECK(s.program->test_run(dns) == XDP_PASS);
  CHECK(s.program->test_run(with_payload(ipv4_frame(17, 40000, 54), 400)) == XDP_PASS);
  std::vector<filters::Block> blocks(4);
  std::vector<std::uint32_t> exits(4);
  REQUIRE(ring->receive(blocks, exits, 0) == 1);
  CHECK(exits[0] == 7u);
  CHECK(blocks[0].data.size() == 200);
  CHECK(blocks[0].wire_len == dns.size());
  CHECK(ring->receive(blocks, exits, 0) == 0);
  CHECK(s.program->copy_counters().records == 1);
}

TEST_CASE("kernel: a userspace drop takes the block; without AF_XDP socket it goes by ring") {
  auto s = split("(udp) > (dns) > (drop)", 2);
  REQUIRE(s.gen.exits.size() == 1);
  CHECK(s.gen.exits[0].delivery == filters::Delivery::take);
  CHECK(s.gen.exits[0].consumer == "n3");
  CHECK(s.gen.afxdp);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  // No socket in srl_xsks under BPF_PROG_TEST_RUN: taken through the ring.
  CHECK(s.program->test_run(with_payload(ipv4_frame(17, 1, 53), 40)) == XDP_DROP);
  CHECK(s.program->test_run(ipv4_frame(6, 1, 53)) == XDP_PASS);
  std::vector<filters::Block> blocks(4);
  std::vector<std::uint32_t> exits(4);
  CHECK(ring->receive(blocks, exits, 0) == 1);
}

TEST_CASE("kernel: TC hands blocks to userspace through the copy ring") {
  auto copy = split("(udp) > (dns) > (print)", 2, true);
  auto ring = runtime::CopyRing::open(copy.program->map_fd("srl_ring0"),
                                      copy.program->map_fd("srl_wake0"), "ringbuf:test:0");
  // TC test runs want a frame of at least an Ethernet header.
  CHECK(copy.program->test_run(with_payload(ipv4_frame(17, 1, 53), 20)) ==
        static_cast<std::uint32_t>(TC_ACT_UNSPEC));  // on to the rest of the hook
  std::vector<filters::Block> blocks(4);
  std::vector<std::uint32_t> exits(4);
  CHECK(ring->receive(blocks, exits, 0) == 1);
  auto take = split("(udp) > (dns) > (drop)", 2, true);
  CHECK(take.program->test_run(with_payload(ipv4_frame(17, 1, 53), 20)) == TC_ACT_SHOT);
}

// Moves this thread to `cpu`; false when the machine does not let it.
bool run_on(std::size_t cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// This thread on one CPU for a scope, so that every BPF_PROG_TEST_RUN
// writes into the same CPU's copy area; the affinity it had comes back.
struct OnOneCpu {
  cpu_set_t before;
  explicit OnOneCpu(std::size_t cpu) {
    REQUIRE(sched_getaffinity(0, sizeof before, &before) == 0);
    REQUIRE(run_on(cpu));
  }
  ~OnOneCpu() { sched_setaffinity(0, sizeof before, &before); }
  OnOneCpu(const OnOneCpu&) = delete;
  OnOneCpu& operator=(const OnOneCpu&) = delete;
};

TEST_CASE("kernel: copies made on several CPUs come out oldest first; rings split the CPUs") {
  cpu_set_t before;
  REQUIRE(sched_getaffinity(0, sizeof before, &before) == 0);
  if (runtime::kernel::copy_cpus() < 2 || !run_on(1) || !run_on(0)) {
    MESSAGE("skipped: needs CPUs 0 and 1");
    return;
  }
  std::vector<filters::Block> blocks(8);
  std::vector<std::uint32_t> exits(8);
  {
    // One ring: CPU 1, CPU 0, CPU 1 again; the payload sizes tell them apart.
    auto s = split("(udp) > (pcap, file=\"/dev/null\")", 2);
    auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                        s.program->map_fd("srl_wake0"), "ringbuf:test:0");
    const std::size_t payloads[] = {10, 20, 30};
    const std::size_t cpus[] = {1, 0, 1};
    for (std::size_t i = 0; i < 3; ++i) {
      REQUIRE(run_on(cpus[i]));
      CHECK(s.program->test_run(with_payload(ipv4_frame(17, 1, 2), payloads[i])) == XDP_PASS);
    }
    REQUIRE(ring->receive(blocks, exits, 0) == 3);
    const std::size_t base = ipv4_frame(17, 1, 2).size();
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(blocks[i].wire_len == base + payloads[i]);
    CHECK(blocks[0].ts_ns <= blocks[1].ts_ns);
    CHECK(blocks[1].ts_ns <= blocks[2].ts_ns);
  }
  {
    // Two rings: CPU c writes into ring c % 2.
    runtime::kernel::CopyChannelOptions two;
    two.rings = 2;
    auto s = split("(udp) > (pcap, file=\"/dev/null\")", 2, false, two);
    REQUIRE(s.gen.copy_rings == 2);
    auto ring0 = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                         s.program->map_fd("srl_wake0"), "ringbuf:test:0");
    auto ring1 = runtime::CopyRing::open(s.program->map_fd("srl_ring1"),
                                         s.program->map_fd("srl_wake1"), "ringbuf:test:1");
    REQUIRE(run_on(1));
    CHECK(s.program->test_run(with_payload(ipv4_frame(17, 1, 2), 11)) == XDP_PASS);
    CHECK(ring0->receive(blocks, exits, 0) == 0);
    REQUIRE(ring1->receive(blocks, exits, 0) == 1);
    CHECK(blocks[0].wire_len == ipv4_frame(17, 1, 2).size() + 11);
    REQUIRE(run_on(0));
    CHECK(s.program->test_run(with_payload(ipv4_frame(17, 1, 2), 12)) == XDP_PASS);
    CHECK(ring1->receive(blocks, exits, 0) == 0);
    CHECK(ring0->receive(blocks, exits, 0) == 1);
  }
  sched_setaffinity(0, sizeof before, &before);
}

TEST_CASE("kernel: a full copy ring loses copies, counts them, and never the block") {
  runtime::kernel::CopyChannelOptions small;
  small.ring_bytes = 4096;
  auto s = split("(udp) > (pcap, file=\"/dev/null\")", 2, false, small);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto frame = with_payload(ipv4_frame(17, 1, 2), 900);
  // A record is its header and the frame, padded to 8: 4 fit in 4096 bytes
  // of one CPU's area.
  const std::size_t record = (sizeof(runtime::kernel::CopyRecord) + frame.size() + 7) / 8 * 8;
  REQUIRE(4096 / record == 4);
  const OnOneCpu one_area(0);
  for (int i = 0; i < 10; ++i)
    CHECK(s.program->test_run(frame) == XDP_PASS);
  const auto c = s.program->copy_counters();
  CHECK(c.records == 4);
  CHECK(c.lost == 6);
  std::vector<filters::Block> blocks(16);
  std::vector<std::uint32_t> exits(16);
  CHECK(ring->receive(blocks, exits, 0) == 4);
  // Released at the next receive: the ring takes copies again.
  CHECK(ring->receive(blocks, exits, 0) == 0);
  CHECK(s.program->test_run(frame) == XDP_PASS);
  CHECK(ring->receive(blocks, exits, 0) == 1);
  CHECK(s.program->copy_counters().records == 5);
}

TEST_CASE("kernel: a reader is woken each time an area's waiting bytes pass the mark") {
  runtime::kernel::CopyChannelOptions small;
  small.ring_bytes = 4096;  // the mark: a quarter of the area, 1024 bytes
  auto s = split("(udp) > (pcap, file=\"/dev/null\")", 2, false, small);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto frame = with_payload(ipv4_frame(17, 1, 2), 100 - ipv4_frame(17, 1, 2).size());
  const std::size_t record = (sizeof(runtime::kernel::CopyRecord) + frame.size() + 7) / 8 * 8;
  REQUIRE(record == 136);  // 7 records wait below the mark, the 8th passes it
  const auto readable = [&] {
    pollfd p{ring->wait_fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  };
  std::vector<filters::Block> blocks(16);
  std::vector<std::uint32_t> exits(16);
  // One CPU, one area: the mark counts per area.
  const OnOneCpu one_area(0);
  for (int lap = 0; lap < 3; ++lap) {
    CAPTURE(lap);
    for (int i = 0; i < 7; ++i)
      REQUIRE(s.program->test_run(frame) == XDP_PASS);
    CHECK_FALSE(readable());
    REQUIRE(s.program->test_run(frame) == XDP_PASS);
    CHECK(readable());
    CHECK(ring->receive(blocks, exits, 0) == 8);
    // The next receive releases the batch; the mark counts from there again.
    CHECK(ring->receive(blocks, exits, 0) == 0);
    CHECK_FALSE(readable());
  }
  CHECK(s.program->copy_counters().lost == 0);
}

TEST_CASE("kernel: a CPU whose reader keeps up writes only its area's window") {
  runtime::kernel::CopyChannelOptions o;
  o.ring_bytes = 65536;  // the mark: a quarter of the area, 16 KiB, beyond the window
  o.window_bytes = 4096;
  o.window_lap_ns = 0;  // every lap counts as slow
  auto s = split("(udp) > (pcap, file=\"/dev/null\")", 2, false, o);
  auto ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"),
                                      s.program->map_fd("srl_wake0"), "ringbuf:test:0");
  const auto frame = [](std::uint16_t sport) {
    return with_payload(ipv4_frame(17, sport, 2), 100 - ipv4_frame(17, 1, 2).size());
  };
  const std::size_t record = (sizeof(runtime::kernel::CopyRecord) + frame(1).size() + 7) / 8 * 8;
  REQUIRE(record == 136);  // 31 records start below the window (30 * 136 < 4096 <= 31 * 136)
  const auto sport = [](const filters::Block& b) { return b.data[34] << 8 | b.data[35]; };
  std::vector<filters::Block> blocks(512);
  std::vector<std::uint32_t> exits(512);
  const OnOneCpu one_area(0);
  const std::uint8_t* start = nullptr;  // the first record's bytes: the start of the area
  std::uint16_t sent = 0;
  // One copy, read at once: where in the area it was written.
  const auto copy_and_read = [&] {
    REQUIRE(s.program->test_run(frame(++sent)) == XDP_PASS);
    REQUIRE(ring->receive(blocks, exits, 0) == 1);
    CHECK(sport(blocks[0]) == sent);
    if (start == nullptr) start = blocks[0].data.data();
    return static_cast<std::size_t>(blocks[0].data.data() - start);
  };

  SUBCASE("read as it comes: back to the start after the window, in order, nothing lost") {
    // Beyond the mark too: the CPU reads the tail again where a gap it saw
    // the reader before makes the area look full.
    for (std::size_t n = 0; n < 300; ++n) {
      CAPTURE(n);
      // 31 records follow one another; the next starts the area again.
      CHECK(copy_and_read() == n % 31 * record);
    }
    CHECK(ring->stats().bad_records == 0);
    CHECK(s.program->copy_counters().lost == 0);
  }

  SUBCASE("copies faster than a window per lap time stream through the whole area") {
    o.window_lap_ns = 10'000'000'000;
    s = split("(udp) > (pcap, file=\"/dev/null\")", 2, false, o);
    ring = runtime::CopyRing::open(s.program->map_fd("srl_ring0"), s.program->map_fd("srl_wake0"),
                                   "ringbuf:test:0");
    for (std::size_t n = 0; n < 100; ++n) {
      CAPTURE(n);
      CHECK(copy_and_read() == n * record);  // 100 * 136 < 65536
    }
  }

  SUBCASE("read late: the whole area takes the burst, then the window again") {
    // 481 records fill 65536 bytes (481 * 136 = 65416); the 482nd is lost.
    for (int i = 0; i < 482; ++i)
      REQUIRE(s.program->test_run(frame(++sent)) == XDP_PASS);
    CHECK(s.program->copy_counters().lost == 1);
    REQUIRE(ring->receive(blocks, exits, 0) == 481);
    start = blocks[0].data.data();
    for (std::size_t i = 0; i < 481; ++i) {
      CAPTURE(i);
      CHECK(sport(blocks[i]) == i + 1);
    }
    CHECK(ring->receive(blocks, exits, 0) == 0);  // released
    // The reader left nothing: the next record goes back to the start.
    REQUIRE(s.program->test_run(frame(++sent)) == XDP_PASS);
    REQUIRE(ring->receive(blocks, exits, 0) == 1);
    CHECK(sport(blocks[0]) == sent);
    CHECK(blocks[0].data.data() == start);
    CHECK(ring->stats().bad_records == 0);
  }
}

TEST_CASE("kernel: a pass counts only blocks that reached the stack") {
  // The drop of another branch wins over pass: pass reached, not carried out.
  auto prog = build("(udp) > (pass) | (udp) > (port) 53> (drop)");
  CHECK(prog->test_run(ipv4_frame(17, 40000, 53)) == XDP_DROP);
  CHECK(prog->test_run(ipv4_frame(17, 40000, 54)) == XDP_PASS);
  const auto c = prog->counters();
  // n0 rx, n1 udp, n2 pass, n3 udp, n4 port, n5 drop (ids in order of appearance)
  CHECK(c[2].packets == 2);
  CHECK(c[2].accepted == 1);
}

TEST_CASE("kernel: every kernel filter is calibrated in a generated program") {
  runtime::kernel::FilterCalibration o;
  o.repeat = 2000;
  o.rounds = 3;
  o.cache = std::filesystem::temp_directory_path() / "srl-kernel-test-cache";
  const auto costs = runtime::kernel::calibrate_filters(o);
  for (const char* f : {"eth", "vlan", "ipv4", "tcp", "udp", "port", "addr", "hash", "bpf",
                        "sample", "rate", "count", "drop", "pass", "len", "tcpflags", "proto"}) {
    CAPTURE(f);
    REQUIRE(costs.contains(f));
    CHECK(costs.at(f) >= 0.1);
    CHECK(costs.at(f) < 10'000);
  }
  CHECK_FALSE(costs.contains("rx"));
  CHECK_FALSE(costs.contains("http"));
}

TEST_CASE("kernel: the program cache keeps the objects used last, with their sources") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("srl-cache-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto t0 = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (int i = 0; i < 6; ++i) {
    const auto o = dir / ("obj" + std::to_string(i) + ".o");
    std::ofstream(o) << "o";
    std::ofstream(dir / ("obj" + std::to_string(i) + ".c")) << "c";
    fs::last_write_time(o, t0 + std::chrono::minutes(i));
  }
  std::ofstream(dir / "obj0.verifier.log") << "log";
  std::ofstream(dir / "new.o") << "o";  // just written: the oldest stamp, yet kept
  fs::last_write_time(dir / "new.o", t0 - std::chrono::hours(1));
  srl::runtime::kernel::prune_bpf_cache(dir, 4, dir / "new.o");
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(dir))
    left.insert(e.path().filename().string());
  CHECK(left ==
        std::set<std::string>{"new.o", "obj3.o", "obj3.c", "obj4.o", "obj4.c", "obj5.o", "obj5.c"});
  fs::remove_all(dir);
}

TEST_CASE("kernel: pins go on a bpffs that outlives the process, or a warning says why not") {
  using srl::runtime::kernel::BpffsProbe;
  using srl::runtime::kernel::choose_bpffs;
  std::set<std::string> bpffs;
  BpffsProbe probe;
  probe.is_bpffs = [&](const std::filesystem::path& p) { return bpffs.contains(p.string()); };
  probe.initial_root = "/proc/1/root";
  // The initial mount namespace: what is asked for, mounted later if need be.
  probe.own_mount_ns = probe.initial_mount_ns = "mnt:[1]";
  auto c = choose_bpffs("/sys/fs/bpf", probe);
  CHECK(c.dir == "/sys/fs/bpf");
  CHECK(c.warning.empty());
  // A private one (ip netns exec) without a bpffs: the initial namespace's.
  probe.own_mount_ns = "mnt:[2]";
  bpffs = {"/proc/1/root/sys/fs/bpf"};
  c = choose_bpffs("/sys/fs/bpf", probe);
  CHECK(c.dir == "/proc/1/root/sys/fs/bpf");
  CHECK(c.warning.empty());
  // A bpffs where asked (one the operator mounted): used as it is.
  bpffs = {"/sys/fs/bpf"};
  c = choose_bpffs("/sys/fs/bpf", probe);
  CHECK(c.dir == "/sys/fs/bpf");
  // None anywhere: asked for, with a warning that names the remedy.
  bpffs.clear();
  c = choose_bpffs("/sys/fs/bpf", probe);
  CHECK(c.dir == "/sys/fs/bpf");
  CHECK(c.warning.find("private mount namespace") != std::string::npos);
  CHECK(c.warning.find("mount -t bpf bpf /sys/fs/bpf") != std::string::npos);
  // The initial namespace cannot be looked at: said so.
  probe.initial_mount_ns.reset();
  c = choose_bpffs("/sys/fs/bpf", probe);
  CHECK(c.warning.find("is unknown") != std::string::npos);
}

TEST_CASE("kernel: many tcpdump expressions on one hook load, and each counts its own") {
  // Each expression's classic BPF is a function the verifier checks once,
  // not once per path that reaches it.
  constexpr int kRequests = 60;
  std::vector<compiler::CompileResult> compiled;
  for (int i = 0; i < kRequests; ++i) {
    compiled.push_back(compiler::compile("(bpf, expr=\"(tcp or udp) and dst port " +
                                         std::to_string(2000 + i) +
                                         " and not src net 192.0.2.0/24\") > (count)"));
    REQUIRE_MESSAGE(compiled.back().ok(),
                    compiled.back().diagnostics.render(*compiled.back().source));
  }
  std::vector<const compiler::RequestDag*> dags;
  std::vector<std::string> labels;
  for (int i = 0; i < kRequests; ++i) {
    dags.push_back(&*compiled[static_cast<std::size_t>(i)].dag);
    labels.push_back("r" + std::to_string(i));
  }
  const auto merged = compiler::merge_requests(dags, labels);
  for (const bool tc : {false, true}) {
    CAPTURE(tc);
    auto load = [&](const compiler::RequestDag& dag, std::size_t* nodes = nullptr) {
      const auto gen =
          tc ? runtime::kernel::generate_tc(dag, 1) : runtime::kernel::generate_xdp(dag, 1);
      if (nodes != nullptr) *nodes = gen.nodes.size();
      return KernelProgram::load(
          runtime::kernel::compile_bpf(
              gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
          gen.nodes.size());
    };
    const std::uint32_t one = load(*compiled.front().dag)->verified_insns();
    const auto gen = tc ? runtime::kernel::generate_tc(merged.dag, 1)
                        : runtime::kernel::generate_xdp(merged.dag, 1);
    auto prog = load(merged.dag);
    // Expressions verified once each, the verifier's work linear in them:
    // 10-200 instructions processed per expression beyond the first (about
    // 1,000 when they were inlined), on top of the parse and the counters.
    MESSAGE("verifier: " << prog->verified_insns() << " instructions processed, " << one
                         << " with one expression");
    CHECK(prog->verified_insns() - one < (kRequests - 1) * 300);
    for (int i = 0; i < kRequests; i += 7)
      prog->test_run(ipv4_frame(i % 2 == 0 ? 6 : 17, 1000, static_cast<std::uint16_t>(2000 + i)));
    const auto c = prog->counters();
    for (std::size_t v = 0; v < gen.nodes.size(); ++v) {
      if (gen.nodes[v].filter != "count") continue;
      const auto& members = merged.members[v];
      REQUIRE(members.size() == 1);
      const int i = std::stoi(members.front().substr(1, members.front().find('/') - 1));
      CHECK_MESSAGE(c[v].packets == (i % 7 == 0 ? 1u : 0u), members.front());
    }
  }
}

namespace {

// `requests` merged on one hook as an XDP program, loaded.
std::unique_ptr<KernelProgram> load_merged(
    const std::vector<std::string>& requests,
    runtime::kernel::ProgramForm form = runtime::kernel::ProgramForm::automatic, bool tc = false,
    std::uint64_t* bound = nullptr) {
  std::vector<compiler::CompileResult> compiled;
  std::vector<const compiler::RequestDag*> dags;
  std::vector<std::string> labels;
  for (const auto& text : requests) {
    compiled.push_back(compiler::compile(text));
    REQUIRE_MESSAGE(compiled.back().ok(),
                    compiled.back().diagnostics.render(*compiled.back().source));
  }
  for (std::size_t i = 0; i < compiled.size(); ++i) {
    dags.push_back(&*compiled[i].dag);
    labels.push_back("r" + std::to_string(i));
  }
  const auto merged = compiler::merge_requests(dags, labels);
  // Every node that has a kernel implementation, and whose inputs are
  // all in the kernel, in the kernel (srl run's placement without a plan).
  const auto in_kernel =
      runtime::fixed_placement(merged.dag, {},
                               {tc ? runtime::HookKind::tc : runtime::HookKind::xdp, {}})
          .in_kernel;
  if (bound) {  // the optimizer's bound of the program's verifier work
    *bound = optimizer::program_verified(merged.dag, in_kernel);
  }
  const auto gen = tc ? runtime::kernel::generate_tc(merged.dag, 1, "", &in_kernel, {}, form)
                      : runtime::kernel::generate_xdp(merged.dag, 1, "", &in_kernel, {}, form);
  const auto obj = runtime::kernel::compile_bpf(
      gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache");
  return KernelProgram::load(obj, gen.nodes.size());
}

// `k` address prefixes joined by `op` (" or ", " and ").
std::string prefixes(int k, const char* op) {
  std::string t;
  for (int j = 0; j < k; ++j)
    t += (j ? op : "") + ("(addr, net=10." + std::to_string(j % 250) + "." +
                          std::to_string(j / 250) + ".0/24, which=src)");
  return t;
}

}  // namespace

TEST_CASE(
    "kernel: the verifier's work grows with a union's and an intersect's inputs, not with their "
    "product") {
  // Held in variables, an intersect of 10 prefixes took ~48,000 verifier
  // instructions and one of 20 more than the whole budget (1,000,000). The
  // map form's growth, from the map form of one (which alone would be in
  // the register form), for every size.
  const std::uint32_t one =
      load_merged({prefixes(1, "") + " > (count)"}, runtime::kernel::ProgramForm::map)
          ->verified_insns();
  for (const std::string op : {" and ", " or "}) {
    CAPTURE(op);
    for (int k : {10, 40, 160}) {
      const std::uint32_t cost =
          load_merged({prefixes(k, op.c_str()) + " > (count)"}, runtime::kernel::ProgramForm::map)
              ->verified_insns();
      MESSAGE(k << " prefixes joined by '" << op << "': " << cost
                << " verifier instructions (one: " << one << ")");
      CHECK(cost > one);
      CHECK(cost - one < static_cast<std::uint32_t>(k) * 100);
    }
  }
}

TEST_CASE("kernel: a subset of a hook's requests never costs the verifier more than the whole") {
  // What makes a removal always fit: controld admits additions up to half
  // the verifier's budget. Requests of many shapes, then subsets of them.
  std::vector<std::string> all;
  for (int i = 0; i < 6; ++i) {
    all.push_back(prefixes(8 + i, " and ") + " > (count)");
    all.push_back(prefixes(30 + i, " or ") + " > (drop)");
    all.push_back("(bpf, expr=\"(tcp or udp) and dst port " + std::to_string(2000 + i) +
                  " and not src net 192.0.2.0/24\") > (count)");
    all.push_back("(vlan, name=tag) " + std::to_string(100 + i) +
                  "> (count, name=a) | (tag) 200> (ip) > (tcpflags) > (count, name=b) | (tag) !> "
                  "(hash, buckets=8) 3> (count, name=c)");
    all.push_back("(tcp) > (port, name=svc) 1:" + std::to_string(1000 + i) +
                  "> (count, name=a) | (svc) 1024:49151> (count, name=b) | (svc) 49152:65535> "
                  "(sample, n=10) > (count, name=c)");
  }
  const std::uint32_t whole = load_merged(all)->verified_insns();
  MESSAGE(all.size() << " requests: " << whole << " verifier instructions");
  REQUIRE(whole > 0);
  std::uint64_t seed = 12345;  // a fixed sequence: the same subsets every run
  double most = 0;
  for (int t = 0; t < 8; ++t) {
    std::vector<std::string> part;
    for (const auto& r : all) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      if ((seed >> 33) % 3 != 0) part.push_back(r);
    }
    const std::uint32_t cost = load_merged(part)->verified_insns();
    CAPTURE(part.size());
    CHECK(cost <= whole);
    most = std::max(most, static_cast<double>(cost) / whole);
  }
  MESSAGE("the costliest subset took " << most << " of the whole's");
}

TEST_CASE("kernel: the register form stays far below the verifier's budget, whatever it holds") {
  // A small program keeps its parse and outcomes on the stack, where the
  // verifier's work multiplies the parse's paths by the nodes'. The
  // costliest programs of kRegisterFormNodes nodes, of every filter it
  // takes, and random ones from a fixed sequence: each in that form, each
  // under kRegisterFormVerified, at XDP and TC.
  using runtime::kernel::kRegisterFormNodes;
  using runtime::kernel::kRegisterFormVerified;
  std::vector<std::string> requests = {
      // 15 filters after rx, one chain, each testing what the parse found.
      "(eth) > (vlan) !> (ip) > (ipv4) > (proto) 17> (udp) > (port, which=dst) 1:1023> "
      "(addr, net=10.0.0.0/8) > (len, min=60, max=1400) > (sample, n=3) > (rate, pps=1000) > "
      "(port, which=src) 53> (addr, net=10.1.0.0/16, which=dst) > (len, min=64) > (count)",
      // One classifier and fourteen branches.
      "(port, which=dst, name=p) 1> (count) | (p) 2> (count) | (p) 3> (count) | (p) 4> (count) | "
      "(p) 5> (count) | (p) 6> (count) | (p) 7> (count) | (p) 8:9> (count) | (p) 10> (drop) | "
      "(p) 11> (pass) | (p) 12> (count) | (p) 13> (count) | (p) 14> (count) | (p) !> (count)",
      // Unions and intersects of filters on every layer, counted by class.
      "(tcp) or (udp) or (icmp) or (arp) or (vlan) 100> (count, by=class) | "
      "(ipv6) and (addr, net=2001:db8::/32, which=src) and (tcpflags) 2> (count, by=class)",
      // Outcomes read beyond the next node, samples and rates between them.
      "(proto, name=pr) 6> (sample, n=2) > (count) | (pr) 17> (rate, pps=10) > (count) | "
      "(pr) 1,58> (tcpflags) > (count, by=class) | (pr) !> (vlan) > (count, by=class) | "
      "(pr) 6,17> (len, min=100) > (drop)",
  };
  // The costliest shapes two at a time on one program (each of at most
  // 16 nodes, rx shared), and one chain of as many filters as the form takes.
  const std::size_t shapes = requests.size();
  for (std::size_t i = 0; i < shapes; ++i)
    for (std::size_t j = i + 1; j < shapes; ++j)
      requests.push_back(requests[i] + "; " + requests[j]);
  std::string longest;
  const char* const layers[] = {"(eth)",
                                "(vlan) !",
                                "(ip)",
                                "(proto) 17",
                                "(udp)",
                                "(port, which=dst) 1:1023",
                                "(addr, net=10.0.0.0/8)",
                                "(len, min=60, max=1400)"};
  for (std::size_t i = 0; i + 2 < kRegisterFormNodes; ++i)
    longest += std::string(layers[i % std::size(layers)]) + "> ";
  requests.push_back(longest + "(count)");
  const char* const filters[] = {"(eth)",
                                 "(vlan) 100",
                                 "(vlan) !",
                                 "(arp)",
                                 "(ip)",
                                 "(ipv4)",
                                 "(ipv6)",
                                 "(proto) 6",
                                 "(proto) 17,58",
                                 "(proto) !",
                                 "(tcp)",
                                 "(udp)",
                                 "(icmp)",
                                 "(tcpflags) 2",
                                 "(tcpflags) !2",
                                 "(port) 53",
                                 "(port, which=src) 1:1023",
                                 "(port, which=dst) !22",
                                 "(addr, net=10.0.0.0/8)",
                                 "(addr, net=2001:db8::/32, which=dst)",
                                 "(len, min=60, max=100)",
                                 "(sample, n=4)",
                                 "(rate, pps=100)"};
  const char* const ends[] = {"(count)", "(drop)", "(pass)", "(count, by=class)"};
  std::uint64_t seed = 7;  // a fixed sequence: the same requests every run
  auto next = [&](std::size_t n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::size_t>((seed >> 33) % n);
  };
  for (int t = 0; t < 12; ++t) {
    // Chains from rx, up to the node limit (rx is one of them).
    std::string text;
    std::size_t nodes = 1;
    while (nodes + 2 <= kRegisterFormNodes) {
      const std::size_t k = 1 + next(std::min<std::size_t>(5, kRegisterFormNodes - nodes - 1));
      std::string chain;
      for (std::size_t j = 0; j < k; ++j) {
        std::string f = filters[next(std::size(filters))];
        // "(vlan) !" is "(vlan) !>": the selector stays, the '>' follows.
        chain += f + "> ";
      }
      chain += ends[next(std::size(ends))];
      text += (text.empty() ? "" : "; ") + chain;
      nodes += k + 1;
      if (next(3) == 0) break;
    }
    requests.push_back(text);
  }
  const auto cache = std::filesystem::temp_directory_path() / "srl-kernel-test-cache";
  std::uint32_t most = 0;
  for (const auto& request : requests) {
    CAPTURE(request);
    const auto r = compiler::compile(request);
    REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
    REQUIRE(r.dag->node_count() <= kRegisterFormNodes);
    for (const bool tc : {false, true}) {
      CAPTURE(tc);
      const auto gen =
          tc ? runtime::kernel::generate_tc(*r.dag, 1) : runtime::kernel::generate_xdp(*r.dag, 1);
      CHECK(gen.register_form);
      const auto prog =
          KernelProgram::load(runtime::kernel::compile_bpf(gen.source, cache), gen.nodes.size());
      CHECK(prog->verified_insns() < kRegisterFormVerified);
      most = std::max(most, prog->verified_insns());
    }
  }
  MESSAGE("register form: at most " << most << " verifier instructions (bound "
                                    << kRegisterFormVerified << ")");
  // One node more, or a tcpdump expression, and the map form takes over.
  std::string big = "(eth)";
  for (std::size_t i = 1; i < kRegisterFormNodes; ++i)
    big += " > (ip)";
  const auto r = compiler::compile(big);
  REQUIRE(r.ok());
  REQUIRE(r.dag->node_count() == kRegisterFormNodes + 1);
  CHECK_FALSE(runtime::kernel::generate_xdp(*r.dag, 1).register_form);
  const auto e = compiler::compile("(bpf, expr=\"udp\") > (count)");
  REQUIRE(e.ok());
  CHECK_FALSE(runtime::kernel::generate_xdp(*e.dag, 1).register_form);
}

TEST_CASE("kernel: the verifier's work stays under the optimizer's bound") {
  // The optimizer plans a hook's verifier budget with an upper bound of
  // each program's work (optimizer::kernel_verified): a plan within the
  // budget must load, and a subset of it too. Requests of every filter the
  // kernel runs, in chains, fan-outs, unions, intersects, with tcpdump
  // expressions and exits to userspace, one at a time and many on a hook,
  // in the map form and where it is small enough in the register form, at
  // XDP and TC: each program's work under the bound.
  std::vector<std::vector<std::string>> sets = {
      {"(count)"},
      {"(udp) > (port, which=dst) 9000> (pcap, file=\"/tmp/srl-bound.pcap\")"},
      {"(udp) > (dns) > (count)"},
      {prefixes(20, " or ") + " > (count)"},
      {prefixes(20, " and ") + " > (drop)"},
      {"(hash, buckets=8) 3> (count, by=class)", "(vlan) 100> (ipv6) > (count)"},
      {"(bpf, expr=\"tcp port 80 or udp port 53 or icmp\") > (count)",
       "(bpf, expr=\"net 10.0.0.0/8 and (tcp[tcpflags] & tcp-syn != 0)\") > (drop)"},
      // tx runs at TC only (below).
      {"(udp) > (tx, dev=lo, mode=mirror) | (tcp) > (tx, dev=lo, mode=forward) | "
       "(icmp) > (tx, dev=lo, mode=mirror)"},
      {"(port, which=dst, name=p) 1> (count) | (p) 2> (count) | (p) 3,5,7:9> (count) | "
       "(p) 10> (drop) | (p) 11> (pass) | (p) !> (count)"},
      {"(tcp) or (udp) or (icmp) or (arp) or (vlan) 100> (count, by=class)",
       "(ipv6) and (addr, net=2001:db8::/32, which=src) and (tcpflags) 2> (count, by=class)",
       "(proto, name=pr) 6> (sample, n=2) > (count) | (pr) 17> (rate, pps=10) > (count) | "
       "(pr) 1,58> (tcpflags) > (count, by=class) | (pr) 6,17> (len, min=100) > (drop)"},
  };
  {  // Many requests on one hook, as controld merges them.
    std::vector<std::string> many;
    for (int i = 0; i < 6; ++i) {
      many.push_back(prefixes(8 + i, " and ") + " > (count)");
      many.push_back("(bpf, expr=\"(tcp or udp) and dst port " + std::to_string(2000 + i) +
                     "\") > (count)");
      many.push_back("(tcp) > (port, name=svc) 1:" + std::to_string(1000 + i) +
                     "> (count, name=a) | (svc) 1024:49151> (sample, n=10) > (count, name=b)");
      many.push_back("(udp) > (port, which=dst) " + std::to_string(5000 + i) +
                     "> (pcap, file=\"/tmp/srl-bound" + std::to_string(i) + ".pcap\")");
    }
    sets.push_back(many);
  }
  {  // Random requests from a fixed sequence, chains of every filter.
    const char* const filters[] = {"(eth)",
                                   "(vlan) 100",
                                   "(vlan) !",
                                   "(arp)",
                                   "(ip)",
                                   "(ipv6)",
                                   "(proto) 6",
                                   "(proto) 17,58",
                                   "(tcp)",
                                   "(udp)",
                                   "(icmp)",
                                   "(tcpflags) 2",
                                   "(port) 53",
                                   "(port, which=src) 1:1023",
                                   "(port, which=dst) !22",
                                   "(addr, net=10.0.0.0/8)",
                                   "(addr, net=2001:db8::/32, which=dst)",
                                   "(len, min=60)",
                                   "(sample, n=4)",
                                   "(rate, pps=100)",
                                   "(hash, buckets=4) 1",
                                   "(bpf, expr=\"tcp[13] & 2 != 0\")"};
    const char* const ends[] = {"(count)", "(drop)", "(pass)", "(count, by=class)",
                                "(pcap, file=\"/tmp/srl-bound.pcap\")"};
    std::uint64_t seed = 99;
    auto next = [&](std::size_t n) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<std::size_t>((seed >> 33) % n);
    };
    for (int t = 0; t < 6; ++t) {
      std::vector<std::string> requests;
      for (std::size_t r = 0, count = 2 + next(12); r < count; ++r) {
        std::string text;
        for (std::size_t j = 0, k = 1 + next(6); j < k; ++j)
          text += std::string(filters[next(std::size(filters))]) + "> ";
        requests.push_back(text + ends[next(std::size(ends))]);
      }
      sets.push_back(requests);
    }
  }
  double most = 0;
  for (const auto& requests : sets) {
    CAPTURE(requests.front());
    for (const auto form :
         {runtime::kernel::ProgramForm::map, runtime::kernel::ProgramForm::automatic})
      for (const bool tc : {false, true}) {
        CAPTURE(tc);
        if (!tc && requests.front().find("(tx") != std::string::npos) continue;
        std::uint64_t bound = 0;
        const auto prog = load_merged(requests, form, tc, &bound);
        CHECK(prog->verified_insns() <= bound);
        most = std::max(most,
                        static_cast<double>(prog->verified_insns()) / static_cast<double>(bound));
      }
  }
  MESSAGE("the costliest program took " << most << " of its bound");
}
