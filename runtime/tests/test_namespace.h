// Shared by the runtime tests that need a real device: a network namespace
// of the test's own with a veth pair ha/hb, entered by the calling thread.
#pragma once

#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "srl/runtime/kernel.h"

namespace srl::testing {

// A namespace with a veth pair, entered by this thread for the test's
// lifetime; removed on destruction, also when a check fails.
class TestNamespace {
 public:
  TestNamespace() : name_("srl-runtime-test-" + std::to_string(getpid())) {
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

// The id of the program that runs on a device's XDP hook, 0 if none: the
// srl program in srl's slot when srl's stub is there (alone or in libxdp's
// dispatcher), else the program attached.
inline std::uint32_t attached_program(int ifindex) {
  if (const std::uint32_t srl = runtime::kernel::XdpHook::running_program(ifindex)) return srl;
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (bpf_xdp_query(ifindex, 0, &q) != 0) return 0;
  return q.prog_id;
}

}  // namespace srl::testing
