// Measured cost of each kernel filter on this machine: the generated program
// for `(F)` against the program with no filter, both run with
// BPF_PROG_TEST_RUN on a typical frame. The optimizer's profile takes these
// in place of the catalog's defaults (srl calibrate).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

namespace srl::runtime::kernel {

struct FilterCalibration {
  std::uint32_t repeat = 200'000;  // runs per measurement
  int rounds = 5;                  // measurements; the median counts
  std::filesystem::path cache;     // compiled programs
};

// ns per block for every catalog filter with a kernel implementation that
// can be measured alone (sources and transmit excluded). Needs CAP_BPF.
std::map<std::string, double> calibrate_filters(
    const FilterCalibration& options, const std::function<void(const std::string&)>& log = {});

}  // namespace srl::runtime::kernel
