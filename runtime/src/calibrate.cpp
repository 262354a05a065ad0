#include "srl/runtime/calibrate.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/runtime/copy_ring.h"
#include "srl/runtime/kernel.h"

namespace srl::runtime::kernel {
namespace {

// Options that make a filter compile; the values do not change its cost.
std::string request_for(const filters::FilterSpec& f) {
  const std::string name(f.name);
  if (name == "addr") return "(addr, net=10.0.0.0/8)";
  if (name == "sample") return "(sample, n=100)";
  if (name == "rate") return "(rate, pps=1000000)";
  if (name == "bpf") return "(bpf, expr=\"udp port 53\")";
  return "(" + name + ")";
}

// A 512-byte UDP/IPv4 frame to port 53: the mean block size the optimizer
// assumes, through the headers every L2-L4 filter reads.
std::vector<std::uint8_t> typical_frame() {
  std::vector<std::uint8_t> f(512, 0);
  f[12] = 0x08;
  f[14] = 0x45;
  f[16] = static_cast<std::uint8_t>((512 - 14) >> 8);
  f[17] = static_cast<std::uint8_t>((512 - 14) & 0xFF);
  f[22] = 64;
  f[23] = 17;
  f[26] = 10;
  f[29] = 1;
  f[30] = 10;
  f[33] = 2;
  f[34] = 0x9C;
  f[35] = 0x40;
  f[37] = 53;
  return f;
}

double median_ns(const std::string& request, const FilterCalibration& o,
                 const std::vector<std::uint8_t>& frame) {
  const auto compiled = compiler::compile(request);
  if (!compiled.ok()) throw KernelError("calibration request does not compile: " + request);
  // In the map form, which every hook past a few nodes runs: the costs the
  // model takes are a hook's most, never the small register form's.
  const auto gen = generate_xdp(*compiled.dag, 1, "", nullptr, {}, ProgramForm::map);
  auto program = KernelProgram::load(compile_bpf(gen.source, o.cache), gen.nodes.size());
  std::vector<double> runs;
  for (int i = 0; i < o.rounds; ++i) {
    std::uint32_t ns = 0;
    program->test_run(frame, o.repeat, &ns);
    runs.push_back(ns);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace

std::map<std::string, double> calibrate_filters(
    const FilterCalibration& o, const std::function<void(const std::string&)>& log) {
  const auto frame = typical_frame();
  // The program every request has: parse, counters, verdict. A lone pass
  // adds the least to it.
  const double base = median_ns("(pass)", o, frame);
  std::map<std::string, double> out;
  for (const auto& f : filters::Catalog::builtin().all()) {
    if (!f.implemented_in(filters::SpaceKind::kernel) || f.role == filters::Role::source ||
        f.role == filters::Role::synthetic || f.name == "tx")
      continue;
    const std::string request = request_for(f) + (f.role == filters::Role::sink ? "" : " > (pass)");
    // Test-run times are whole nanoseconds per run: costs below one are
    // recorded as a tenth, not as free.
    const double ns = std::max(0.1, median_ns(request, o, frame) - base);
    out[std::string(f.name)] = ns;
    if (log) {
      char line[128];
      std::snprintf(line, sizeof line, "kernel filter %-10s %6.1f ns/block",
                    std::string(f.name).c_str(), ns);
      log(line);
    }
  }
  return out;
}

CopyChannelCost calibrate_copy_channel(const FilterCalibration& o, std::size_t frame_bytes) {
  auto frame = typical_frame();
  frame.resize(std::max<std::size_t>(frame_bytes, 60), 0);
  // The same three nodes; the last one counts in the kernel, or is a
  // capture in userspace that every udp block goes up to.
  const auto counted = compiler::compile("(udp) > (count)");
  const auto captured = compiler::compile("(udp) > (pcap, file=\"/dev/null\")");
  if (!counted.ok() || !captured.ok()) throw KernelError("calibration request does not compile");
  std::vector<bool> split(captured.dag->node_count(), true);
  split.back() = false;
  const auto base_gen = generate_xdp(*counted.dag, 1);
  const auto copy_gen = generate_xdp(*captured.dag, 1, "", &split);
  auto base = KernelProgram::load(compile_bpf(base_gen.source, o.cache), base_gen.nodes.size());
  auto copy = KernelProgram::load(compile_bpf(copy_gen.source, o.cache), copy_gen.nodes.size());
  auto ring = CopyRing::open(copy->map_fd("srl_ring0"), copy->map_fd("srl_wake0"), "calibration");
  // A batch that fits this CPU's area (2 MiB) with room to spare, drained
  // after each run so that no copy is lost.
  const std::uint32_t batch = 1000;
  std::vector<filters::Block> blocks(256);
  std::vector<std::uint32_t> exits(256);
  std::vector<double> kernel, reader;
  const int runs = std::max(3, static_cast<int>(o.repeat / batch / 10));
  // A ring is memory the kernel has not touched yet (in a guest, memory
  // the host may not back yet): the first pass over it costs page faults
  // a running datapath pays once. Go round it once before measuring.
  const std::size_t record = (sizeof(CopyRecord) + frame.size() + 7) & ~std::size_t{7};
  const int warm = static_cast<int>((CopyChannelOptions{}.ring_bytes / record) / batch + 2);
  for (int i = 0; i < runs + warm; ++i) {
    std::uint32_t with = 0, without = 0;
    base->test_run(frame, batch, &without);
    copy->test_run(frame, batch, &with);
    const auto start = std::chrono::steady_clock::now();
    std::size_t got = 0;
    while (got < batch) {
      const std::size_t n = ring->receive(blocks, exits, 0);
      if (n == 0) break;
      got += n;
    }
    ring->receive(std::span(blocks).first(0), std::span(exits).first(0), 0);  // release
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    if (got != batch)
      throw KernelError("copy channel calibration: " + std::to_string(got) + " of " +
                        std::to_string(batch) + " records arrived");
    if (i < warm) continue;
    kernel.push_back(static_cast<double>(with) - static_cast<double>(without));
    reader.push_back(ns / batch);
  }
  if (copy->copy_counters().lost != 0) throw KernelError("copy channel calibration lost copies");
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {std::max(0.1, median(kernel)), std::max(0.1, median(reader))};
}

}  // namespace srl::runtime::kernel
