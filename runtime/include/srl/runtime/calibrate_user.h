// Measured cost of each userspace filter on this machine: a request of the
// filter alone, `(F)`, run by the engine on typical blocks, against the same
// engine running an empty request. The optimizer's profile takes these in
// place of the catalog's defaults (srl calibrate).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>

namespace srl::runtime {

struct UserCalibration {
  std::size_t blocks = 200'000;  // blocks per measurement
  int rounds = 5;                // measurements; the median counts
  std::size_t batch = 32;
};

struct UserFilterCost {
  double ns_per_block = 0;
  double ns_per_byte = 0;  // from a second run on larger blocks (payload readers)
};

// Every catalog filter with a userspace implementation that runs alone on
// packets: sources and sinks (files) are left out, as are filters whose
// options cannot take a neutral value.
std::map<std::string, UserFilterCost> calibrate_user_filters(
    const UserCalibration& options, const std::function<void(const std::string&)>& log = {});

}  // namespace srl::runtime
