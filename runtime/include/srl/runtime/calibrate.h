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

// What a hook costs each frame the device receives, against no hook: a
// veth pair in a network namespace of its own (gone when the measurement
// ends), frames sent through it from an AF_PACKET socket to a MAC that is
// not the receiver's (the stack drops them right after the hooks), a
// two-instruction program on the receiving end. Keys "tc", "xdp-native",
// "xdp-generic"; and "packet": `rx` in userspace, the runtime's AF_PACKET
// socket on the receiving end, read by the measuring thread. On a veth, XDP copies every frame it
// sees into a page of its own; this is what the optimizer weighs against TC. Needs CAP_SYS_ADMIN,
// CAP_NET_ADMIN and CAP_BPF.
struct HookCalibration {
  std::size_t frames = 100'000;  // per run
  int rounds = 5;                // runs of each hook, alternating; the median counts
};
struct HookCost {
  double ns_per_block = 0, ns_per_byte = 0;
  double ns_64 = 0, ns_1500 = 0;  // the two measurements they come from
};
std::map<std::string, HookCost> calibrate_veth_hooks(
    const HookCalibration& options, const std::function<void(const std::string&)>& log = {});

}  // namespace srl::runtime::kernel
