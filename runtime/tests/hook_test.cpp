// XdpHook on a real device: a veth pair in a network namespace of the
// test's own. Attach, replace under a running link (the hook is never
// empty), detach; nothing left behind. Needs root.
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

}  // namespace

TEST_CASE("hook: attach, replace atomically, detach") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  REQUIRE(ifindex > 0);
  const auto pins =
      std::filesystem::temp_directory_path() / ("srl-hook-test-bpffs-" + std::to_string(getpid()));
  kernel::ensure_bpffs(pins);

  {
    auto hook =
        kernel::XdpHook::attach(build("(udp) > (count)"), ifindex, std::nullopt, pins / "hb");
    CHECK(hook->mode() == kernel::XdpMode::native);  // veth has native XDP
    const std::uint32_t first = hook->program().id();
    CHECK(attached_program(ifindex) == first);
    CHECK(std::filesystem::exists(pins / "hb" / "link"));
    const std::uint32_t link = hook->link_id();

    hook->replace(build("(tcp) > (drop)"));
    const std::uint32_t second = hook->program().id();
    CHECK(second != first);
    CHECK(hook->link_id() == link);  // the same link: the hook never emptied
    CHECK(attached_program(ifindex) == second);
    CHECK(hook->program().counters().size() == 3);
  }
  CHECK(attached_program(ifindex) == 0);
  CHECK_FALSE(std::filesystem::exists(pins / "hb"));

  // Generic mode when asked.
  {
    auto hook =
        kernel::XdpHook::attach(build("(udp) > (count)"), ifindex, kernel::XdpMode::generic);
    CHECK(hook->mode() == kernel::XdpMode::generic);
    CHECK(attached_program(ifindex) == hook->program().id());
  }
  CHECK(attached_program(ifindex) == 0);
  umount2(pins.c_str(), MNT_DETACH);
  std::filesystem::remove(pins);
}

TEST_CASE("hook: a device that does not exist is refused with its name") {
  auto program = build("(udp) > (count)");
  CHECK_THROWS_WITH_AS(kernel::XdpHook::attach(std::move(program), 999999),
                       doctest::Contains("cannot attach XDP"), kernel::KernelError);
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

}  // namespace

TEST_CASE("hook: blocks for userspace leave through AF_XDP with their exit tag") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  const auto r = compiler::compile("(udp) > (port, which=dst) 53> (dns) > (print)");
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

TEST_CASE("hook: TC ingress attach, replace in place, detach removes the qdisc it added") {
  TestNamespace ns;
  const int ifindex = ns.ifindex("hb");
  auto tc_program = [](const char* request) {
    const auto r = compiler::compile(request);
    REQUIRE(r.ok());
    const auto gen = kernel::generate_tc(*r.dag, 1);
    return kernel::KernelProgram::load(
        kernel::compile_bpf(gen.source,
                            std::filesystem::temp_directory_path() / "srl-kernel-test-cache"),
        gen.nodes.size());
  };
  auto filter_program = [&] {
    bpf_tc_hook h{};
    h.sz = sizeof h;
    h.ifindex = ifindex;
    h.attach_point = BPF_TC_INGRESS;
    bpf_tc_opts q{};
    q.sz = sizeof q;
    q.handle = kernel::TcHook::kHandle;
    q.priority = kernel::TcHook::kPriority;
    return bpf_tc_query(&h, &q) == 0 ? q.prog_id : 0u;
  };
  {
    auto hook = kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex);
    CHECK(filter_program() == hook->program().id());
    hook->replace(tc_program("(tcp) > (drop)"));
    CHECK(filter_program() == hook->program().id());
    // A second srl filter on the same hook is refused, not stacked.
    CHECK_THROWS_WITH_AS(kernel::TcHook::attach(tc_program("(udp) > (count)"), ifindex),
                         doctest::Contains("another srl program"), kernel::KernelError);
  }
  CHECK(filter_program() == 0);
  CHECK(std::system("tc qdisc show dev hb | grep -q clsact") != 0);
}
