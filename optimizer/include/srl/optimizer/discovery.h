// Discovery: builds the system model of this machine from sysfs, the kernel's
// netdev netlink family (XDP features per device) and libbpf feature probes.
// It offers only spaces a datapath driver deploys: no offload space (a model
// file may describe one, to plan for another machine).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "srl/optimizer/system_model.h"

namespace srl::optimizer {

struct DiscoveryOptions {
  // Devices to model; empty: every device that is up, not loopback.
  std::vector<std::string> devices;
  // User spaces: at most this many CPUs (0: all online CPUs).
  std::uint32_t max_user_cpus = 0;
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
