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

#include <cstdlib>
#include <filesystem>
#include <string>

#include "srl/compiler/compiler.h"
#include "srl/runtime/kernel.h"

using namespace srl;
namespace kernel = srl::runtime::kernel;

namespace {

// A namespace with a veth pair, entered by this thread for the test's
// lifetime; removed on destruction, also when a check fails.
class TestNamespace {
 public:
  TestNamespace() : name_("srl-hook-test-" + std::to_string(getpid())) {
    const std::string cmd = "ip netns add " + name_ + " && ip -n " + name_ +
                            " link add ha type veth peer name hb && ip -n " + name_ +
                            " link set ha up && ip -n " + name_ + " link set hb up";
    REQUIRE(std::system(cmd.c_str()) == 0);
    home_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int ns = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(ns >= 0);
    REQUIRE(setns(ns, CLONE_NEWNET) == 0);
    close(ns);
  }
  ~TestNamespace() {
    setns(home_, CLONE_NEWNET);
    close(home_);
    std::system(("ip netns del " + name_).c_str());
  }
  int ifindex(const char* dev) const { return static_cast<int>(if_nametoindex(dev)); }

 private:
  std::string name_;
  int home_ = -1;
};

std::unique_ptr<kernel::XdpProgram> build(const std::string& request) {
  const auto r = compiler::compile(request);
  REQUIRE(r.ok());
  const auto gen = kernel::generate_xdp(*r.dag, 1);
  const auto obj = kernel::compile_bpf(
      gen.source, std::filesystem::temp_directory_path() / "srl-kernel-test-cache");
  return kernel::XdpProgram::load(obj, gen.nodes.size());
}

// The id of the XDP program attached to a device, 0 if none.
std::uint32_t attached_program(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (bpf_xdp_query(ifindex, 0, &q) != 0) return 0;
  return q.prog_id;
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
