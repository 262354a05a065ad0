// XdpHook on a real device: a veth pair in a network namespace of the
// test's own. Attach, replace in srl's slot (the hook is never empty),
// detach; pins and adoption; a hook held outright is named; beside
// xdp-filter in libxdp's dispatcher where the kernel can build one. Nothing
// is left behind. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <xdp/xsk.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "srl/compiler/compiler.h"
#include "srl/runtime/kernel.h"
#include "test_namespace.h"

using namespace srl;
using srl::testing::attached_program;
using srl::testing::TestNamespace;
namespace kernel = srl::runtime::kernel;

namespace {

std::unique_ptr<kernel::KernelProgram> build(const std::string& request) {
  const auto r = compiler::compile(request);
  REQUIRE(r.ok());
  const auto gen = kernel::generate_xdp(*r.dag, 1);
  const auto obj = kernel::compile_bpf(
      gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache");
  return kernel::KernelProgram::load(obj, gen.nodes.size());
}

// The program attached to the device itself (libxdp's dispatcher, srl's
// stub or another program), 0 if none.
std::uint32_t hook_program(int ifindex) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (bpf_xdp_query(ifindex, 0, &q) != 0) return 0;
  return q.prog_id;
}

std::string program_name(std::uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {};
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  const bool ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0;
  close(fd);
  return ok ? std::string(info.name) : std::string();
}

// One bpffs for libxdp (and xdp-filter) for the whole process: libxdp
// keeps the first bpffs it uses. Unmounted at exit.
struct LibxdpBpffs {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("srl-hook-test-libxdp-" + std::to_string(getpid()));
  LibxdpBpffs() {
    kernel::ensure_bpffs(dir);
    setenv("LIBXDP_BPFFS", dir.c_str(), 1);
  }
  ~LibxdpBpffs() {
    umount2(dir.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};
const std::filesystem::path& libxdp_bpffs() {
  static LibxdpBpffs b;
  return b.dir;
}

// A bpffs of the test's own for srl's pins, unmounted when it goes.
struct PinFs {
  std::filesystem::path dir;
  explicit PinFs(const std::string& name)
      : dir(std::filesystem::temp_directory_path() /
            ("srl-hook-test-" + name + "-" + std::to_string(getpid()))) {
    kernel::ensure_bpffs(dir);
  }
  ~PinFs() {
    umount2(dir.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// A UDP/IPv4 frame to the broadcast address, so the receiving side takes it.
std::vector<std::uint8_t> udp_frame(std::uint16_t dport) {
  std::vector<std::uint8_t> f(14 + 20 + 8 + 6, 0);
  std::fill(f.begin(), f.begin() + 6, 0xFF);
  f[6] = 0x02;
  f[12] = 0x08;
  f[14] = 0x45;
  f[14 + 8] = 64;
  f[14 + 9] = 17;
  f[16] = 0;
  f[17] = static_cast<std::uint8_t>(f.size() - 14);
  f[36] = static_cast<std::uint8_t>(dport >> 8);
  f[37] = static_cast<std::uint8_t>(dport);
  return f;
}

// Sends `count` frames to UDP port `dport` from `from` (they arrive on its
// peer).
void send_udp(int from, std::uint16_t dport, int count) {
  const int tx = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  REQUIRE(tx >= 0);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = from;
  to.sll_halen = 6;
  const auto f = udp_frame(dport);
  for (int i = 0; i < count; ++i)
    CHECK(sendto(tx, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
          static_cast<ssize_t>(f.size()));
  close(tx);
}

// The TC program of one request, loaded.
std::unique_ptr<kernel::KernelProgram> tc_program(const char* request) {
  const auto r = compiler::compile(request);
  REQUIRE(r.ok());
  const auto gen = kernel::generate_tc(*r.dag, 1);
  return kernel::KernelProgram::load(
      kernel::compile_bpf(gen.source,
                          std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      gen.nodes.size());
}

// Blocks the count node of "(udp) > (count)" saw, once they stop changing.
std::uint64_t counted(const kernel::KernelProgram& p, std::uint64_t want) {
  std::uint64_t n = 0;
  for (int i = 0; i < 40; ++i) {
    n = p.counters()[2].packets;
    if (n >= want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return n;
}

}  // namespace

TEST_CASE("hook: attach, replace atomically, detach") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  REQUIRE(ifindex > 0);
  libxdp_bpffs();
  PinFs pins("bpffs");

  {
    auto hook =
        kernel::XdpHook::attach(build("(udp) > (count)"), ifindex, std::nullopt, pins.dir / "hb");
    CHECK(hook->mode() == kernel::XdpMode::native);  // veth has native XDP
    const std::uint32_t first = hook->program().id();
    CHECK(attached_program(ifindex) == first);
    CHECK(kernel::XdpHook::pinned_at(pins.dir / "hb"));
    CHECK(std::filesystem::exists(pins.dir / "hb" / (hook->shared() ? "stub" : "link")));
    CHECK(hook->priority() == kernel::XdpHook::kDefaultPriority);
    const std::uint32_t on_device = hook_program(ifindex), stub = hook->stub_id();
    CHECK(on_device != 0);
    CHECK(stub != 0);
    CHECK(program_name(stub) == "srl_hook");
    MESSAGE("srl's hook: " << hook->describe());

    send_udp(ns.ifindex("ha"), 53, 3);
    CHECK(counted(hook->program(), 3) == 3);

    const auto old = hook->replace(build("(tcp) > (drop)"));
    const std::uint32_t second = hook->program().id();
    CHECK(second != first);
    CHECK(old->id() == first);
    // One slot update: the same program on the device, the same stub.
    CHECK(hook_program(ifindex) == on_device);
    CHECK(hook->stub_id() == stub);
    CHECK(attached_program(ifindex) == second);
    CHECK(hook->program().counters().size() == 3);
  }
  CHECK(attached_program(ifindex) == 0);
  CHECK(hook_program(ifindex) == 0);
  CHECK_FALSE(std::filesystem::exists(pins.dir / "hb"));

  // Generic mode when asked.
  {
    auto hook =
        kernel::XdpHook::attach(build("(udp) > (count)"), ifindex, kernel::XdpMode::generic);
    CHECK(hook->mode() == kernel::XdpMode::generic);
    CHECK(attached_program(ifindex) == hook->program().id());
    send_udp(ns.ifindex("ha"), 53, 2);
    CHECK(counted(hook->program(), 2) == 2);
  }
  CHECK(hook_program(ifindex) == 0);
}

TEST_CASE("hook: a device that does not exist is refused with its name") {
  auto program = build("(udp) > (count)");
  CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(std::move(program), 999999),
                       doctest::Contains("cannot attach XDP"), kernel::KernelError);
}

TEST_CASE("hook: released hooks are adopted from their pins; the adopter detaches") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  libxdp_bpffs();
  PinFs pins("adopt");
  const auto dir = pins.dir / "hb";
  std::uint32_t running = 0;
  {
    auto hook = kernel::XdpHook::attach(build("(udp) > (count)"), ifindex, std::nullopt, dir);
    running = hook->program().id();
    hook->release();
  }
  // The process's descriptors are gone; the pins keep the hook running.
  CHECK(attached_program(ifindex) == running);
  send_udp(ns.ifindex("ha"), 53, 4);
  {
    auto hook = kernel::XdpHook::adopt(dir);
    CHECK(hook->ifindex() == ifindex);
    CHECK(hook->mode() == kernel::XdpMode::native);
    CHECK(hook->program().id() == running);
    CHECK(counted(hook->program(), 4) == 4);  // counted while nobody held it
    hook->replace(build("(tcp) > (count)"));
    CHECK(attached_program(ifindex) == hook->program().id());
  }
  CHECK(hook_program(ifindex) == 0);
  CHECK_FALSE(kernel::XdpHook::pinned_at(dir));
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK_THROWS_AS(kernel::XdpHook::adopt(dir), kernel::KernelError);
}

TEST_CASE("hook: a program that holds the hook outright is named, and left alone") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  libxdp_bpffs();
  CHECK_FALSE(kernel::xdp_hook_holder(ifindex).has_value());
  // A plain program, as `ip link set dev hb xdp obj ...` attaches one.
  bpf_insn pass[2] = {};
  pass[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  pass[0].dst_reg = BPF_REG_0;
  pass[0].imm = XDP_PASS;
  pass[1].code = BPF_JMP | BPF_EXIT;
  const int plain = bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_prog_simple", "GPL", pass, 2, nullptr);
  REQUIRE(plain >= 0);
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  REQUIRE(bpf_obj_get_info_by_fd(plain, &info, &len) == 0);
  const std::string id = std::to_string(info.id);

  SUBCASE("attached with netlink, native mode") {
    REQUIRE(bpf_xdp_attach(ifindex, plain, XDP_FLAGS_DRV_MODE, nullptr) == 0);
    const std::string want = "hb's XDP hook is held by program " + id +
                             " 'xdp_prog_simple' (native mode, not a libxdp "
                             "dispatcher)";
    CHECK(kernel::xdp_hook_holder(ifindex).value_or("") == want);
    CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(build("(udp) > (count)"), ifindex), want.c_str(),
                         kernel::KernelError);
    CHECK(hook_program(ifindex) == info.id);  // untouched
    CHECK(bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr) == 0);
  }
  SUBCASE("attached through a bpf_link, generic mode") {
    bpf_link_create_opts opts{};
    opts.sz = sizeof opts;
    opts.flags = XDP_FLAGS_SKB_MODE;
    const int link = bpf_link_create(plain, ifindex, BPF_XDP, &opts);
    REQUIRE(link >= 0);
    const std::string want = "hb's XDP hook is held by program " + id +
                             " 'xdp_prog_simple' (generic mode, not a libxdp dispatcher)";
    CHECK(kernel::xdp_hook_holder(ifindex).value_or("") == want);
    CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(build("(udp) > (count)"), ifindex), want.c_str(),
                         kernel::KernelError);
    CHECK(hook_program(ifindex) == info.id);
    close(link);
  }
  close(plain);
  CHECK(hook_program(ifindex) == 0);
  CHECK_FALSE(kernel::xdp_hook_holder(ifindex).has_value());
}

TEST_CASE("hook: a dispatcher srl cannot join is named with the reason") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  libxdp_bpffs();
  // Named like libxdp's dispatcher, but no dispatcher libxdp built: srl
  // cannot join it (no pins of its components; or, on a kernel without
  // extension programs, no dispatcher can be joined at all).
  bpf_insn pass[2] = {};
  pass[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  pass[0].dst_reg = BPF_REG_0;
  pass[0].imm = XDP_PASS;
  pass[1].code = BPF_JMP | BPF_EXIT;
  const int fake = bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_dispatcher", "GPL", pass, 2, nullptr);
  REQUIRE(fake >= 0);
  REQUIRE(bpf_xdp_attach(ifindex, fake, XDP_FLAGS_SKB_MODE, nullptr) == 0);
  const std::string named = "hb's XDP hook holds libxdp's dispatcher (program " +
                            std::to_string(hook_program(ifindex)) +
                            " 'xdp_dispatcher', generic mode)";
  const auto why = kernel::xdp_hook_holder(ifindex);
  REQUIRE(why.has_value());
  CHECK(why->starts_with(named));
  MESSAGE(*why);
  CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(build("(udp) > (count)"), ifindex),
                       doctest::Contains(named.c_str()), kernel::KernelError);
  CHECK(bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, nullptr) == 0);
  close(fake);
}

namespace {

// An AF_XDP socket in copy mode on queue 0 of a device, registered in a
// program's XSKMAP: the receiving end of the afxdp channel, as small as a
// test needs.
class AfxdpSocket {
 public:
  AfxdpSocket(const char* dev, int xsks_map) {
    constexpr std::size_t kFrames = 64;
    size_ = kFrames * XSK_UMEM__DEFAULT_FRAME_SIZE;
    buffer_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(buffer_ != MAP_FAILED);
    REQUIRE(xsk_umem__create(&umem_, buffer_, size_, &fill_, &comp_, nullptr) == 0);
    xsk_socket_config cfg{};
    cfg.rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS;
    cfg.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS;
    cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // our program, not libxdp's
    cfg.bind_flags = XDP_COPY;
    // A socket closed just before releases its queue asynchronously.
    int rc = -EBUSY;
    for (int i = 0; i < 40 && rc == -EBUSY; ++i) {
      rc = xsk_socket__create(&xsk_, dev, 0, umem_, &rx_, &tx_, &cfg);
      if (rc == -EBUSY) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(rc == 0);
    REQUIRE(xsk_socket__update_xskmap(xsk_, xsks_map) == 0);
    std::uint32_t idx = 0;
    REQUIRE(xsk_ring_prod__reserve(&fill_, kFrames, &idx) == kFrames);
    for (std::size_t i = 0; i < kFrames; ++i)
      *xsk_ring_prod__fill_addr(&fill_, idx++) = i * XSK_UMEM__DEFAULT_FRAME_SIZE;
    xsk_ring_prod__submit(&fill_, kFrames);
  }
  ~AfxdpSocket() {
    if (xsk_ != nullptr) xsk_socket__delete(xsk_);
    if (umem_ != nullptr) xsk_umem__delete(umem_);
    if (buffer_ != MAP_FAILED) munmap(buffer_, size_);
  }
  AfxdpSocket(const AfxdpSocket&) = delete;
  AfxdpSocket& operator=(const AfxdpSocket&) = delete;

  // Frames received within `wait` (bounded polling).
  std::vector<std::vector<std::uint8_t>> receive(std::chrono::milliseconds wait) {
    std::vector<std::vector<std::uint8_t>> out;
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{xsk_socket__fd(xsk_), POLLIN, 0};
      poll(&p, 1, 50);
      std::uint32_t idx = 0;
      const std::uint32_t n = xsk_ring_cons__peek(&rx_, 16, &idx);
      for (std::uint32_t i = 0; i < n; ++i) {
        const xdp_desc* d = xsk_ring_cons__rx_desc(&rx_, idx + i);
        const auto* data = static_cast<const std::uint8_t*>(xsk_umem__get_data(buffer_, d->addr));
        out.emplace_back(data, data + d->len);
      }
      if (n > 0) xsk_ring_cons__release(&rx_, n);
    }
    return out;
  }

 private:
  void* buffer_ = MAP_FAILED;
  std::size_t size_ = 0;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  xsk_ring_prod fill_{}, tx_{};
  xsk_ring_cons comp_{}, rx_{};
};

}  // namespace

TEST_CASE("hook: blocks for userspace leave through AF_XDP with their exit tag") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  // `drop` in userspace takes the block from the stack, so it goes up
  // through AF_XDP (filters/delivery.h), from srl's slot behind the stub.
  const auto r = compiler::compile("(udp) > (port, which=dst) 53> (dns) > (drop)");
  REQUIRE(r.ok());
  // rx udp port in the kernel; dns and print in userspace.
  const std::vector<bool> in_kernel = {true, true, true, false, false};
  const auto gen = kernel::generate_xdp(*r.dag, ifindex, "", &in_kernel);
  REQUIRE(gen.exits.size() == 1);
  CHECK(gen.exits[0].from == "n2");
  CHECK(gen.exits[0].to == "n3");
  auto program = kernel::KernelProgram::load(
      kernel::compile_bpf(gen.source,
                          std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
      gen.nodes.size());
  for (const auto mode : {kernel::XdpMode::native, kernel::XdpMode::generic}) {
    CAPTURE(kernel::to_string(mode));
    const int xsks = program->xsks_fd();
    REQUIRE(xsks >= 0);
    auto hook = kernel::XdpHook::attach(std::move(program), ifindex, mode);
    AfxdpSocket xsk("hb", xsks);

    // From the peer: one datagram for port 53 (leaves for userspace), one
    // for 54 (stays in the kernel).
    const int tx = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    REQUIRE(tx >= 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ns.ifindex("ha");
    to.sll_halen = 6;
    for (const std::uint16_t port : {std::uint16_t{53}, std::uint16_t{54}}) {
      const auto f = udp_frame(port);
      CHECK(sendto(tx, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(f.size()));
    }
    close(tx);

    const auto frames = xsk.receive(std::chrono::milliseconds(2000));
    REQUIRE(frames.size() == 1);
    const auto& got = frames[0];
    const auto want = udp_frame(53);
    REQUIRE(got.size() == want.size() + sizeof(kernel::AfxdpTag));
    kernel::AfxdpTag tag{};
    std::memcpy(&tag, got.data(), sizeof tag);
    CHECK(ntohs(tag.magic) == kernel::kAfxdpTagMagic);
    CHECK(tag.version == 1);
    CHECK(tag.length == sizeof(kernel::AfxdpTag));
    CHECK(tag.exits == 1u);
    CHECK(std::equal(want.begin(), want.end(), got.begin() + sizeof tag));
    const auto c = hook->program().counters();
    CHECK(c[2].packets == 2);  // port saw both
    CHECK(c[2].accepted == 2);
    // Reuse the program for the next mode.
    hook.reset();
    program = kernel::KernelProgram::load(
        kernel::compile_bpf(gen.source,
                            std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
        gen.nodes.size());
  }
}

TEST_CASE("hook: TC ingress is a tcx link: attach, replace in place, stack, detach") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  // The programs at the tcx ingress hook, first to last.
  auto tcx_programs = [&] {
    std::uint32_t ids[8] = {}, count = 8, flags = 0;
    if (bpf_prog_query(ifindex, static_cast<bpf_attach_type>(46), 0, &flags, ids, &count) != 0)
      return std::vector<std::uint32_t>{};
    return std::vector<std::uint32_t>(ids, ids + count);
  };
  PinFs pins("tcx");
  const auto dir = pins.dir / "hb";
  {
    auto hook = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex, dir);
    REQUIRE(hook->tcx());  // this kernel has tcx (6.6+)
    CHECK(tcx_programs() == std::vector<std::uint32_t>{hook->program().id()});
    CHECK(std::filesystem::exists(dir / "tc-link"));
    hook->replace(tc_program("(tcp) > (drop)"));
    CHECK(tcx_programs() == std::vector<std::uint32_t>{hook->program().id()});
    // A second program stacks behind the first (srl runs beside others);
    // each goes with its own hook. What the first only watches goes on to
    // the second (TCX_NEXT, not TCX_PASS, which would end the hook there).
    hook->replace(tc_program("(udp) > (count)"));
    {
      auto second = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex);
      CHECK(tcx_programs() ==
            std::vector<std::uint32_t>{hook->program().id(), second->program().id()});
      send_udp(ns.ifindex("ha"), 9, 5);
      CHECK(counted(hook->program(), 5) == 5);
      CHECK(counted(second->program(), 5) == 5);
    }
    CHECK(tcx_programs() == std::vector<std::uint32_t>{hook->program().id()});
    // Released, the pinned link keeps it running; adopted, it is ours again.
    const auto id = hook->program().id();
    hook->release();
    hook.reset();
    CHECK(tcx_programs() == std::vector<std::uint32_t>{id});
    auto adopted = kernel::TcHook::adopt(dir, ifindex);
    CHECK(adopted->tcx());
    CHECK(adopted->program().id() == id);
    // Abandoned (its process gone): found by the pinned program, removed.
    adopted->release();
    adopted.reset();
    CHECK(kernel::TcHook::remove_abandoned(ifindex, dir / "tc-program"));
    CHECK(tcx_programs().empty());
    CHECK_FALSE(std::filesystem::exists(dir / "tc-link"));
  }
  {
    auto hook = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex, dir);
    CHECK(tcx_programs().size() == 1);
  }
  CHECK(tcx_programs().empty());
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK(std::system("tc qdisc show dev hb | grep -q clsact") != 0);  // no qdisc needed
}

TEST_CASE("hook: TC ingress without tcx is a cls_bpf filter on clsact: the same life cycle") {
  // How kernels before 6.6 (Debian 12's own) attach; forced here, where
  // the kernel has tcx, through SRL_TC_ATTACH.
  struct ForceClsact {
    ForceClsact() { setenv("SRL_TC_ATTACH", "clsact", 1); }
    ~ForceClsact() { unsetenv("SRL_TC_ATTACH"); }
  } force;
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  auto clsact = [] { return std::system("tc qdisc show dev hb | grep -q clsact") == 0; };
  PinFs pins("clsact");
  const auto dir = pins.dir / "hb";
  {
    auto hook = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex, dir);
    CHECK_FALSE(hook->tcx());
    CHECK(clsact());
    CHECK_FALSE(std::filesystem::exists(dir / "tc-link"));
    send_udp(ns.ifindex("ha"), 9, 5);
    CHECK(counted(hook->program(), 5) == 5);
    // Replaced in one netlink request: the new program counts what follows.
    const auto old = hook->replace(tc_program("(udp) > (count)"));
    send_udp(ns.ifindex("ha"), 9, 3);
    CHECK(counted(hook->program(), 3) == 3);
    CHECK(counted(*old, 5) == 5);
    // A second srl program shares the hook at srl's next priority, as
    // through tcx: both see every datagram; the second's going leaves the
    // first running and the qdisc in place (it did not make it).
    {
      const auto second_dir = pins.dir / "hb-second";
      auto second = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex, second_dir);
      CHECK_FALSE(second->tcx());
      CHECK(std::system(("tc filter show dev hb ingress | grep -q 'pref " +
                         std::to_string(kernel::TcHook::kPriority + 1) + " bpf'")
                            .c_str()) == 0);
      send_udp(ns.ifindex("ha"), 9, 4);
      CHECK(counted(hook->program(), 7) == 7);
      CHECK(counted(second->program(), 4) == 4);
      // Adopted by its pins, it is the second's filter that is found.
      const auto id = second->program().id();
      second->release();
      second.reset();
      second = kernel::TcHook::adopt(second_dir, ifindex);
      CHECK(second->program().id() == id);
    }
    CHECK(clsact());
    send_udp(ns.ifindex("ha"), 9, 2);
    CHECK(counted(hook->program(), 9) == 9);
    // Released, the filter keeps running from its pin; adopted, it is ours.
    const auto id = hook->program().id();
    hook->release();
    hook.reset();
    auto adopted = kernel::TcHook::adopt(dir, ifindex);
    CHECK_FALSE(adopted->tcx());
    CHECK(adopted->program().id() == id);
    adopted->release();
    adopted.reset();
    CHECK(kernel::TcHook::remove_abandoned(ifindex, dir / "tc-program"));
    CHECK_FALSE(kernel::TcHook::remove_abandoned(ifindex, dir / "tc-program"));
  }
  // A qdisc that was there before stays; the filter goes.
  CHECK(clsact());
  CHECK(std::system("tc qdisc del dev hb clsact") == 0);
  {
    auto hook = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex, dir);
    CHECK(clsact());
  }
  CHECK_FALSE(clsact());  // made for the hook, gone with it
  CHECK_FALSE(std::filesystem::exists(dir));
  // The one that made the qdisc goes first: the other keeps it and runs on.
  {
    auto first = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex);
    auto second = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex);
    first.reset();
    CHECK(clsact());
    send_udp(ns.ifindex("ha"), 9, 3);
    CHECK(counted(second->program(), 3) == 3);
  }
  // It does not know who made the qdisc: it stays, empty.
  CHECK(clsact());
  CHECK(std::system("tc filter show dev hb ingress | grep -q bpf") != 0);
  CHECK(std::system("tc qdisc del dev hb clsact") == 0);
}

namespace {

// Runs a command (in this thread's network namespace); its exit status.
int shell(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str());
}

std::string shell_output(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[512];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;)
    out.append(buf, n);
  pclose(p);
  return out;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("hook: beside xdp-filter in libxdp's dispatcher") {
  if (shell("command -v xdp-filter && command -v xdp-loader") != 0) {
    MESSAGE("skipped: xdp-filter (xdp-tools) is not installed");
    return;
  }
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb"), ha = ns.ifindex("ha");
  const auto bpffs = libxdp_bpffs();  // xdp-filter inherits LIBXDP_BPFFS
  REQUIRE(shell("xdp-filter load hb") == 0);
  REQUIRE(shell("xdp-filter port 9999") == 0);
  const std::uint32_t filter_hook = hook_program(ifindex);
  REQUIRE(filter_hook != 0);
  if (program_name(filter_hook) != "xdp_dispatcher") {
    // libxdp could not build a dispatcher (the kernel refuses extension
    // programs): xdp-filter holds the hook outright, and srl names it.
    MESSAGE("libxdp attached xdp-filter without a dispatcher ("
            << program_name(filter_hook) << "): only the refusal is checked");
    const std::string named = "program " + std::to_string(filter_hook) + " 'xdpfilt_";
    CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(build("(udp) > (count)"), ifindex),
                         doctest::Contains(named.c_str()), kernel::KernelError);
    CHECK(hook_program(ifindex) == filter_hook);
    CHECK(shell("xdp-filter unload hb") == 0);
    CHECK(hook_program(ifindex) == 0);
    return;
  }

  auto hook = kernel::XdpHook::attach(build("(udp) > (count)"), ifindex);
  CHECK(hook->shared());
  const std::uint32_t dispatcher = hook_program(ifindex);
  CHECK(program_name(dispatcher) == "xdp_dispatcher");
  std::string status = shell_output("xdp-loader status hb");
  MESSAGE(status);
  // Both run, xdp-filter (priority 10) before srl (100).
  REQUIRE(has(status, "srl_hook"));
  REQUIRE(has(status, "xdpfilt_"));
  CHECK(status.find("xdpfilt_") < status.find("srl_hook"));

  // xdp-filter drops the datagrams to 9999 before srl's turn; srl counts
  // the ones xdp-filter passed on.
  send_udp(ha, 9999, 5);
  send_udp(ha, 53, 7);
  CHECK(counted(hook->program(), 7) == 7);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(hook->program().counters()[2].packets == 7);

  // A replace is one update of srl's slot: the same dispatcher, xdp-filter
  // untouched.
  const std::uint32_t first = hook->program().id();
  hook->replace(build("(udp) > (count)"));
  CHECK(hook->program().id() != first);
  CHECK(hook_program(ifindex) == dispatcher);
  CHECK(attached_program(ifindex) == hook->program().id());
  CHECK(has(shell_output("xdp-loader status hb"), "xdpfilt_"));

  // xdp-filter goes: srl keeps running (libxdp rebuilds the dispatcher).
  CHECK(shell("xdp-filter unload hb") == 0);
  CHECK(attached_program(ifindex) == hook->program().id());
  send_udp(ha, 9999, 2);
  CHECK(counted(hook->program(), 2) == 2);

  // xdp-filter joins srl's dispatcher; then srl goes, and xdp-filter stays.
  REQUIRE(shell("xdp-filter load hb") == 0);
  CHECK(has(shell_output("xdp-loader status hb"), "srl_hook"));
  hook.reset();
  status = shell_output("xdp-loader status hb");
  CHECK(has(status, "xdpfilt_"));
  CHECK_FALSE(has(status, "srl_hook"));
  CHECK(kernel::XdpHook::running_program(ifindex) == 0);
  CHECK(shell("xdp-filter unload hb") == 0);
  CHECK(hook_program(ifindex) == 0);
  // libxdp removed its pins with the last dispatcher.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(bpffs / "xdp", ec))
    CHECK_FALSE(e.path().filename().string().starts_with("dispatch-"));
}
