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

// The copy channel (kernel.h, copy_ring.h), in ns per block at a frame
// size: the kernel's side (a program whose udp node copies every block up,
// against the same program counting it in the kernel, under
// BPF_PROG_TEST_RUN) plus the reader's (taking the record in place from the
// ring and parsing its headers).
struct CopyChannelCost {
  double kernel_ns = 0;
  double reader_ns = 0;
  double total() const { return kernel_ns + reader_ns; }
};
CopyChannelCost calibrate_copy_channel(const FilterCalibration& options, std::size_t frame_bytes);

}  // namespace srl::runtime::kernel
