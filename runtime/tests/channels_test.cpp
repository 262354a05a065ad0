// The userspace ends of the channels on real devices: AF_XDP behind a
// generated XDP program, and AF_PACKET for `rx` in userspace. Each test makes
// a veth pair in a network namespace of its own and enters it on this
// thread. Needs root; skipped otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "frame_sender.h"
#include "srl/compiler/compiler.h"
#include "srl/runtime/afxdp.h"
#include "srl/runtime/kernel.h"
#include "srl/runtime/packet_socket.h"

using namespace srl;
namespace kernel = srl::runtime::kernel;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::uint8_t>;
using srl::testing::FrameSender;

#define SKIP_UNLESS_ROOT()                                            \
  do {                                                                \
    if (geteuid() != 0) {                                             \
      MESSAGE("skipped: needs root (namespaces, veth, XDP, AF_XDP)"); \
      return;                                                         \
    }                                                                 \
  } while (false)

namespace {

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

// Mappings of socket memory (packet rings, AF_XDP rings): counted by
// their name, since other mappings come and go with the allocator.
std::size_t socket_mappings() {
  std::ifstream in("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find(" socket:[") != std::string::npos) ++n;
  return n;
}

bool mapped(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream in("/proc/self/maps");
  for (std::string line; std::getline(in, line);) {
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    const auto lo = std::stoull(line.substr(0, dash), nullptr, 16);
    const auto hi = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
    if (at >= lo && at < hi) return true;
  }
  return false;
}

// Deletes a namespace by name; the first member of TestNamespace, so the
// namespace goes even when the rest of the constructor fails.
struct NamespaceName {
  std::string name;
  bool created = false;
  ~NamespaceName() {
    if (created) std::system(("ip netns del " + name + " 2>/dev/null").c_str());
  }
};

// A namespace with a veth pair ca <-> cb (IPv6 off, so the stack sends
// nothing of its own), entered by this thread until destruction.
class TestNamespace {
 public:
  TestNamespace() {
    static int serial = 0;
    ns_.name = "srl-chan-test-" + std::to_string(getpid()) + "-" + std::to_string(++serial);
    REQUIRE(std::system(("ip netns add " + ns_.name).c_str()) == 0);
    ns_.created = true;
    const std::string in = "ip -n " + ns_.name + " ";
    const std::string cmd =
        "ip netns exec " + ns_.name +
        " sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && " +
        in + "link add ca type veth peer name cb && " + in + "link set ca up && " + in +
        "link set cb up";
    REQUIRE(std::system(cmd.c_str()) == 0);
    home_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    REQUIRE(home_ >= 0);
    const int ns = open(("/run/netns/" + ns_.name).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(ns >= 0);
    const int rc = setns(ns, CLONE_NEWNET);
    close(ns);
    REQUIRE(rc == 0);
  }
  ~TestNamespace() {
    if (home_ >= 0) {
      setns(home_, CLONE_NEWNET);
      close(home_);
    }
  }
  TestNamespace(const TestNamespace&) = delete;
  TestNamespace& operator=(const TestNamespace&) = delete;

  static int ifindex(const char* dev) { return static_cast<int>(if_nametoindex(dev)); }

 private:
  NamespaceName ns_;
  int home_ = -1;
};

void put16(Bytes& f, std::size_t at, std::uint16_t v) {
  f[at] = static_cast<std::uint8_t>(v >> 8);
  f[at + 1] = static_cast<std::uint8_t>(v);
}

// Broadcast Ethernet header from 02:00:00:00:00:01.
Bytes ethernet(std::uint16_t ethertype, std::size_t total) {
  Bytes f(total, 0);
  std::fill(f.begin(), f.begin() + ETH_ALEN, 0xFF);
  f[6] = 0x02;
  f[11] = 0x01;
  put16(f, 12, ethertype);
  return f;
}

// A UDP/IPv4 datagram to `dport`; `seq` in the payload tells frames apart.
Bytes udp_frame(std::uint16_t dport, std::uint32_t seq) {
  constexpr std::size_t kPayload = 18;
  Bytes f = ethernet(ETH_P_IP, 14 + 20 + 8 + kPayload);
  f[14] = 0x45;
  put16(f, 16, static_cast<std::uint16_t>(20 + 8 + kPayload));
  f[22] = 64;
  f[23] = IPPROTO_UDP;
  f[26] = 10;  // 10.0.0.1 -> 10.0.0.2
  f[29] = 1;
  f[30] = 10;
  f[33] = 2;
  put16(f, 34, 40000);
  put16(f, 36, dport);
  put16(f, 38, static_cast<std::uint16_t>(8 + kPayload));
  for (std::size_t i = 0; i < 4; ++i)
    f[42 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
  return f;
}

// A frame of a local experimental ethertype marked with `seq`.
Bytes marked_frame(std::uint16_t ethertype, std::uint32_t seq, std::size_t size = 60) {
  Bytes f = ethernet(ethertype, size);
  for (std::size_t i = 0; i < 4; ++i)
    f[14 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
  return f;
}

std::unique_ptr<kernel::KernelProgram> load(const kernel::GeneratedProgram& gen) {
  return kernel::KernelProgram::load(
      kernel::compile_bpf(gen.source,
                          std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      gen.nodes.size());
}

std::uint64_t realtime_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// An XDP program that redirects every frame, untagged, into queue 0 of an
// XSKMAP, attached natively; detached on destruction.
class UntaggedRedirect {
 public:
  UntaggedRedirect(int ifindex, int xsks_map) : ifindex_(ifindex) {
    const bpf_insn insns[] = {
        // r1 = map (two instructions: a 64-bit immediate)
        {BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, xsks_map},
        {0, 0, 0, 0, 0},
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, 0},         // key: queue 0
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, XDP_PASS},  // without a socket
        {BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    prog_ = bpf_prog_load(BPF_PROG_TYPE_XDP, "srl_untagged", "GPL", insns,
                          sizeof insns / sizeof insns[0], nullptr);
    REQUIRE(prog_ >= 0);
    REQUIRE(bpf_xdp_attach(ifindex_, prog_, XDP_FLAGS_DRV_MODE, nullptr) == 0);
    attached_ = true;
  }
  ~UntaggedRedirect() {
    if (attached_) bpf_xdp_detach(ifindex_, XDP_FLAGS_DRV_MODE, nullptr);
    if (prog_ >= 0) close(prog_);
  }
  UntaggedRedirect(const UntaggedRedirect&) = delete;
  UntaggedRedirect& operator=(const UntaggedRedirect&) = delete;

 private:
  int ifindex_;
  int prog_ = -1;
  bool attached_ = false;
};

}  // namespace

TEST_CASE("afxdp: the tag in front of a frame") {
  const auto tagged = [](std::uint8_t m0, std::uint8_t m1, std::uint8_t version,
                         std::uint8_t length, std::uint32_t exits) {
    Bytes f(8 + 14);
    f[0] = m0;
    f[1] = m1;
    f[2] = version;
    f[3] = length;
    std::memcpy(f.data() + 4, &exits, 4);  // host byte order
    return f;
  };
  CHECK(runtime::parse_afxdp_tag(tagged(0x53, 0x52, 1, 8, 5)) == 5u);
  CHECK(runtime::parse_afxdp_tag(tagged(0x53, 0x52, 1, 8, 0x80000000u)) == 0x80000000u);
  CHECK_FALSE(runtime::parse_afxdp_tag(tagged(0x52, 0x53, 1, 8, 1)));  // magic in host order
  CHECK_FALSE(runtime::parse_afxdp_tag(tagged(0x53, 0x52, 2, 8, 1)));
  CHECK_FALSE(runtime::parse_afxdp_tag(tagged(0x53, 0x52, 1, 12, 1)));
  CHECK_FALSE(runtime::parse_afxdp_tag(tagged(0x53, 0x52, 1, 8, 0)));  // no exit
  const Bytes whole = tagged(0x53, 0x52, 1, 8, 1);
  CHECK_FALSE(runtime::parse_afxdp_tag(std::span(whole).first(7)));
  CHECK_FALSE(runtime::parse_afxdp_tag({}));
}

TEST_CASE("afxdp: blocks leave the kernel program with their exits, byte for byte") {
  SKIP_UNLESS_ROOT();
  const std::size_t fds_before = open_fds();
  {
    TestNamespace ns;
    const int ifindex = TestNamespace::ifindex("ca");
    REQUIRE(ifindex > 0);

    // rx, udp and both ports in the kernel; dns, count and the drops in
    // userspace: two exits, both taken (a userspace drop consumes).
    const auto r = compiler::compile(
        "(udp) > ((port, which=dst) 53> (dns) > (drop) | (port, which=dst) 54> (count) > "
        "(drop))");
    REQUIRE(r.ok());
    const auto& g = r.dag->graph;
    std::vector<bool> in_kernel;
    std::string dns_id, count_id;
    for (auto [v, end] = boost::vertices(g); v != end; ++v) {
      const auto name = g[*v].filter_name();
      in_kernel.push_back(name == "rx" || name == "udp" || name == "port");
      if (name == "dns") dns_id = g[*v].id;
      if (name == "count") count_id = g[*v].id;
    }
    const auto gen = kernel::generate_xdp(*r.dag, ifindex, "", &in_kernel);
    REQUIRE(gen.exits.size() == 2);
    std::uint32_t dns_bit = 0, count_bit = 0;
    for (const auto& e : gen.exits) {
      if (e.to == dns_id) dns_bit = 1u << e.bit;
      if (e.to == count_id) count_bit = 1u << e.bit;
    }
    REQUIRE(dns_bit != 0);
    REQUIRE(count_bit != 0);
    REQUIRE(dns_bit != count_bit);

    for (const auto mode : {kernel::XdpMode::native, kernel::XdpMode::generic}) {
      CAPTURE(kernel::to_string(mode));
      // Before the program: the hook may go before the channel below.
      const std::size_t fds_open = open_fds();
      const std::size_t maps_open = socket_mappings();
      const void* umem = nullptr;  // a frame's address, to see the UMEM unmapped
      auto program = load(gen);
      // Our own reference to the XSKMAP: it outlives the hook.
      const int xsks = fcntl(program->xsks_fd(), F_DUPFD_CLOEXEC, 0);
      REQUIRE(xsks >= 0);
      auto hook = kernel::XdpHook::attach(std::move(program), ifindex, mode);
      {
        runtime::AfxdpOptions o;
        o.dev = "ca";
        o.frames = 256;
        auto ch = runtime::AfxdpChannel::open(o, xsks);
        CHECK_FALSE(ch->zero_copy());               // veth has no zero-copy support
        CHECK(socket_mappings() >= maps_open + 4);  // fill, completion, rx, tx
        CHECK(ch->fd() >= 0);

        // 53 and 54 leave for userspace, 55 stays in the kernel.
        std::vector<Bytes> want;
        std::vector<std::uint32_t> want_exits;
        {
          FrameSender tx("cb");
          for (std::uint32_t i = 0; i < 90; ++i) {
            const auto port = static_cast<std::uint16_t>(53 + i % 3);
            const Bytes f = udp_frame(port, i);
            tx.send(f);
            if (port == 55) continue;
            want.push_back(f);
            want_exits.push_back(port == 53 ? dns_bit : count_bit);
          }
        }
        const std::uint64_t sent_ns = realtime_ns();

        std::vector<Bytes> got;
        std::vector<std::uint32_t> got_exits;
        std::array<filters::Block, 16> blocks{};
        std::array<std::uint32_t, 16> exits{};
        const auto until = Clock::now() + std::chrono::seconds(5);
        while (got.size() < want.size() && Clock::now() < until) {
          const std::size_t n = ch->receive(blocks, exits, 100);
          for (std::size_t i = 0; i < n; ++i) {
            const auto& b = blocks[i];
            umem = b.data.data();
            got.emplace_back(b.data.begin(), b.data.end());
            got_exits.push_back(exits[i]);
            CHECK(b.wire_len == b.data.size());
            CHECK(b.kind == filters::BlockKind::packet);
            REQUIRE(b.parsed != nullptr);
            CHECK(b.parsed->l4 == filters::L4Kind::udp);
            CHECK(b.parsed->dport == (exits[i] == dns_bit ? 53 : 54));
            CHECK(b.ts_ns + 5'000'000'000u > sent_ns);
            CHECK(b.ts_ns < sent_ns + 10'000'000'000u);
          }
        }
        // Nothing more: the frames for port 55 went to the stack.
        CHECK(ch->receive(blocks, exits, 50) == 0);
        CHECK(got == want);  // in order, exact bytes, tag stripped
        CHECK(got_exits == want_exits);

        auto s = ch->stats();
        CHECK(s.received == want.size());
        std::uint64_t bytes = 0;
        for (const auto& f : want)
          bytes += f.size();
        CHECK(s.bytes == bytes);
        CHECK(s.bad_tag == 0);
        CHECK(s.rx_dropped == 0);
        CHECK(s.rx_invalid_descs == 0);

        if (mode == kernel::XdpMode::native) {
          // Frames without a tag, from another program on the same map, are
          // counted and recycled, never handed out.
          hook.reset();
          UntaggedRedirect raw(ifindex, xsks);
          {
            FrameSender tx("cb");
            for (std::uint32_t i = 0; i < 5; ++i)
              tx.send(udp_frame(53, i));
          }
          const auto until_bad = Clock::now() + std::chrono::seconds(3);
          std::size_t handed = 0;
          while (ch->stats().bad_tag < 5 && Clock::now() < until_bad)
            handed += ch->receive(blocks, exits, 50);
          CHECK(handed == 0);
          s = ch->stats();
          CHECK(s.bad_tag == 5);
          CHECK(s.received == want.size());
        }
      }
      hook.reset();
      close(xsks);
      CHECK(open_fds() == fds_open);
      CHECK(socket_mappings() == maps_open);
      REQUIRE(umem != nullptr);
      CHECK_FALSE(mapped(umem));
    }
  }
  CHECK(open_fds() == fds_before);
}

TEST_CASE("afxdp: frames are recycled: more traffic than the UMEM holds") {
  SKIP_UNLESS_ROOT();
  TestNamespace ns;
  const int ifindex = TestNamespace::ifindex("ca");
  const auto r = compiler::compile("(udp) > (dns) > (drop)");  // taken: AF_XDP
  REQUIRE(r.ok());
  const std::vector<bool> in_kernel = {true, true, false, false};
  auto program = load(kernel::generate_xdp(*r.dag, ifindex, "", &in_kernel));
  const int xsks = program->xsks_fd();
  auto hook = kernel::XdpHook::attach(std::move(program), ifindex, kernel::XdpMode::native);
  runtime::AfxdpOptions o;
  o.dev = "ca";
  o.frames = 32;  // the traffic below needs each frame about 6 times
  auto ch = runtime::AfxdpChannel::open(o, xsks);
  FrameSender tx("cb");
  std::array<filters::Block, 8> blocks{};
  std::array<std::uint32_t, 8> exits{};
  std::uint32_t received = 0;
  for (std::uint32_t round = 0; round < 10; ++round) {
    // Fewer than the frames in the fill ring: up to 8 are still held.
    for (std::uint32_t i = 0; i < 20; ++i)
      tx.send(udp_frame(53, round * 20 + i));
    const auto until = Clock::now() + std::chrono::seconds(3);
    std::uint32_t in_round = 0;
    while (in_round < 20 && Clock::now() < until) {
      const std::size_t n = ch->receive(blocks, exits, 100);
      for (std::size_t i = 0; i < n; ++i) {
        const auto seq =
            static_cast<std::uint32_t>(blocks[i].data[42] << 24 | blocks[i].data[43] << 16 |
                                       blocks[i].data[44] << 8 | blocks[i].data[45]);
        CHECK(seq == received);
        ++received;
      }
      in_round += static_cast<std::uint32_t>(n);
    }
    REQUIRE(in_round == 20);
  }
  CHECK(ch->stats().received == 200);
  CHECK(ch->stats().rx_dropped == 0);
}

TEST_CASE("afxdp: a device that does not exist is named in the error") {
  SKIP_UNLESS_ROOT();
  const auto r = compiler::compile("(udp) > (dns)");
  REQUIRE(r.ok());
  const std::vector<bool> in_kernel = {true, true, false};
  auto program = load(kernel::generate_xdp(*r.dag, 1, "", &in_kernel));
  const std::size_t fds = open_fds();
  const std::size_t maps = socket_mappings();
  runtime::AfxdpOptions o;
  o.dev = "srl-nodev0";
  CHECK_THROWS_WITH_AS(runtime::AfxdpChannel::open(o, program->xsks_fd()),
                       doctest::Contains("srl-nodev0"), std::system_error);
  CHECK(open_fds() == fds);
  CHECK(socket_mappings() == maps);
  o.frames = 0;
  CHECK_THROWS_AS(runtime::AfxdpChannel::open(o, program->xsks_fd()), std::invalid_argument);
}

namespace {

// Frames of `ethertype` taken from `src` within `wait`, as bytes.
struct Taken {
  std::vector<Bytes> frames;
  std::uint64_t wire_bytes = 0;
  std::size_t others = 0;
};

Taken take(runtime::PacketSocketSource& src, std::uint16_t ethertype, std::size_t want,
           std::chrono::milliseconds wait) {
  Taken t;
  std::array<filters::Block, 32> blocks{};
  const std::uint64_t start_ns = realtime_ns();
  const auto until = Clock::now() + wait;
  while (t.frames.size() < want && Clock::now() < until) {
    src.wait(50);
    const std::size_t n = src.poll(blocks, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& b = blocks[i];
      REQUIRE(b.parsed != nullptr);
      CHECK(b.ts_ns + 5'000'000'000u > start_ns);
      CHECK(b.ts_ns < start_ns + 60'000'000'000u);
      if (b.data.size() >= 14 && b.parsed->ethertype == ethertype) {
        t.frames.emplace_back(b.data.begin(), b.data.end());
        t.wire_bytes += b.wire_len;
      } else {
        ++t.others;
      }
    }
  }
  return t;
}

}  // namespace

TEST_CASE("rx in userspace: AF_PACKET ring on a veth") {
  SKIP_UNLESS_ROOT();
  const std::size_t fds_before = open_fds();
  const std::size_t maps_before = socket_mappings();
  {
    TestNamespace ns;
    runtime::PacketSocketOptions o;
    o.dev = "ca";
    o.block_size = 1u << 16;  // small blocks: several fill up below
    o.block_count = 16;       // room for the whole burst
    runtime::PacketSocketSource src(o);
    CHECK(src.ifindex() == TestNamespace::ifindex("ca"));
    CHECK(socket_mappings() == maps_before + 1);
    CHECK_FALSE(src.done());

    std::array<filters::Block, 4> blocks{};
    CHECK(src.poll(blocks, 0) == 0);  // nothing yet, and no waiting

    // Incoming from the peer, and outgoing from ca itself (not received).
    constexpr std::uint16_t kIn = 0x88B5, kOut = 0x88B6;
    std::vector<Bytes> sent;
    std::uint64_t sent_bytes = 0;
    {
      FrameSender peer("cb");
      FrameSender self("ca");
      for (std::uint32_t i = 0; i < 400; ++i) {
        // Sizes from 60 to 1500 bytes, so frames straddle blocks.
        sent.push_back(marked_frame(kIn, i, 60 + (i * 97) % 1441));
        sent_bytes += sent.back().size();
        peer.send(sent.back());
        if (i % 40 == 0) self.send(marked_frame(kOut, i));
      }
    }
    const Taken t = take(src, kIn, sent.size(), std::chrono::seconds(5));
    CHECK(t.frames == sent);
    CHECK(t.wire_bytes == sent_bytes);
    CHECK(t.others == 0);  // nor the outgoing ones
    const auto s = src.counters();
    CHECK(s.packets == sent.size());
    CHECK(s.bytes == sent_bytes);
    CHECK(s.drops == 0);
    bool named = false;
    for (const auto& [k, v] : src.stats())
      named = named || (k == "packets" && v == sent.size());
    CHECK(named);

    // A VLAN tag the stack moved into metadata is put back in the frame.
    {
      Bytes tagged = marked_frame(0x8100, 0, 64);
      put16(tagged, 14, 0x2064);  // priority 1, VID 100
      put16(tagged, 16, kIn);
      tagged[18] = 0xAB;
      FrameSender peer("cb");
      peer.send(tagged);
      const Taken v = take(src, kIn, 1, std::chrono::seconds(3));
      REQUIRE(v.frames.size() == 1);
      CHECK(v.frames[0] == tagged);
      CHECK(v.wire_bytes == tagged.size());
    }
  }
  CHECK(open_fds() == fds_before);
  CHECK(socket_mappings() == maps_before);
}

TEST_CASE("rx in userspace: outgoing frames are seen only when asked for") {
  SKIP_UNLESS_ROOT();
  TestNamespace ns;
  runtime::PacketSocketOptions o;
  o.dev = "ca";
  o.ignore_outgoing = false;
  runtime::PacketSocketSource src(o);
  {
    FrameSender self("ca");
    for (std::uint32_t i = 0; i < 10; ++i)
      self.send(marked_frame(0x88B6, i));
  }
  const Taken t = take(src, 0x88B6, 10, std::chrono::seconds(3));
  CHECK(t.frames.size() == 10);
  CHECK(src.counters().outgoing == 0);
}

TEST_CASE("rx in userspace: errors name the device and the cause") {
  SKIP_UNLESS_ROOT();
  const std::size_t fds = open_fds();
  runtime::PacketSocketOptions o;
  o.dev = "srl-nodev0";
  CHECK_THROWS_WITH_AS(runtime::PacketSocketSource{o},
                       doctest::Contains("rx on srl-nodev0: no such device"), std::system_error);
  CHECK(open_fds() == fds);
  o.block_size = 1000;
  CHECK_THROWS_AS(runtime::PacketSocketSource{o}, std::invalid_argument);

  // Without privileges (an unprivileged user in a child process).
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 1;
    if (setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
        setresuid(65534, 65534, 65534) == 0) {
      try {
        runtime::PacketSocketOptions lo;
        lo.dev = "lo";
        runtime::PacketSocketSource src(lo);
        code = 2;
      } catch (const std::system_error& e) {
        const std::string what = e.what();
        code = what.find("rx on lo") != std::string::npos &&
                       what.find("CAP_NET_RAW") != std::string::npos && e.code().value() == EPERM
                   ? 0
                   : 3;
      }
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
