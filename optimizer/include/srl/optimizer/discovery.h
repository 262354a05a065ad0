// Discovery: builds the system model of this machine from sysfs, the kernel's
// netdev netlink family (XDP features per device), libbpf feature probes and
// the space drivers (offload devices).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "srl/optimizer/system_model.h"

namespace srl::optimizer {

// A driver that contributes spaces of its own kind (today: offload devices).
class SpaceDriver {
 public:
  virtual ~SpaceDriver() = default;
  virtual std::string name() const = 0;
  // Spaces this driver offers on the given devices; notes for the model.
  virtual std::vector<Space> discover(const std::vector<std::string>& devices,
                                      std::vector<std::string>& notes) const = 0;
};

// An offload device that exists only in software: one space per device,
// marked emulated, running the catalog's offload implementations.
std::unique_ptr<SpaceDriver> make_offload_emulator();

struct DiscoveryOptions {
  // Devices to model; empty: every device that is up, not loopback.
  std::vector<std::string> devices;
  // User spaces: at most this many CPUs (0: all online CPUs).
  std::uint32_t max_user_cpus = 0;
  bool offload_emulator = false;
  // Root of sysfs and procfs, for tests of the parsers.
  std::string sysfs = "/sys";
  std::string procfs = "/proc";
  bool probe_bpf = true;  // libbpf probes and netlink (need privileges)
  // The verifier's instructions a hook's program may take (Space::verifier_limit).
  std::uint32_t verifier_limit = kVerifierBudget;
  // The XDP mode of every xdp space, chosen by the caller ("native" or
  // "generic", Space::mode_fixed); empty: native where the driver has it,
  // and a cost profile may choose generic.
  std::string xdp_mode;
};

// Throws std::runtime_error when a requested device does not exist.
SystemModel discover(const DiscoveryOptions& options = {});

// The Ethernet devices that are up (not loopback, not tunnels), by name:
// what discovery models by default. A request that names no device
// receives from the one of them when there is exactly one (srl run, srl
// plan: the same rule); with several it has to say which.
std::vector<std::string> up_ethernet_devices(const std::string& sysfs = "/sys");

}  // namespace srl::optimizer
