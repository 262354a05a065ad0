// verifier_bench: what the verifier does with one hook's program as the
// requests on the hook grow. For N requests with a tcpdump expression each
// (tests/support/tcpdump_expressions.h, "(bpf, expr=E) > (count)"), merged
// as controld merges a device's requests, at XDP and TC: the time to
// generate the C source, to compile it (clang, cache empty), to load it
// (the kernel's verification is nearly all of it), the instructions the
// verifier processed, and the optimizer's upper bound of them.
//
//   verifier_bench [--sizes 1,10,50,100] [--runs 3] [--csv]
//
// Needs root (CAP_BPF). Exit status 1 when a program fails to load.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/optimizer/optimizer.h"
#include "srl/runtime/kernel.h"
#include "tcpdump_expressions.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Row {
  std::size_t requests = 0;
  bool tc = false;
  double generate_ms = 0, compile_ms = 0, load_ms = 0;
  std::uint32_t verified = 0, bound = 0, bpf_insns = 0;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace srl;
  std::vector<std::size_t> sizes = {1, 10, 50, 100};
  int runs = 3;
  bool csv = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      std::stringstream ss(argv[++i]);
      for (std::string x; std::getline(ss, x, ',');)
        sizes.push_back(std::stoul(x));
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::stoi(argv[++i]));
    } else if (a == "--csv") {
      csv = true;
    } else {
      std::cerr << "usage: verifier_bench [--sizes 1,10,50,100] [--runs 3] [--csv]\n";
      return 2;
    }
  }
  const auto scratch = std::filesystem::temp_directory_path() / "srl-verifier-bench";
  std::vector<Row> rows;
  for (const std::size_t n : sizes) {
    std::vector<compiler::CompileResult> compiled;
    std::vector<const compiler::RequestDag*> dags;
    std::vector<std::string> labels;
    for (const auto& e : testing::tcpdump_expressions(n)) {
      compiled.push_back(compiler::compile("(bpf, expr=\"" + e + "\") > (count)"));
      if (!compiled.back().ok()) {
        std::cerr << compiled.back().diagnostics.render(*compiled.back().source);
        return 1;
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      dags.push_back(&*compiled[i].dag);
      labels.push_back("r" + std::to_string(i + 1));
    }
    const auto merged = compiler::merge_requests(dags, labels);
    // The optimizer's bound of the program's work, every node in the kernel.
    const std::uint32_t bound = optimizer::program_verified(merged.dag);
    for (const bool tc : {false, true}) {
      std::vector<double> gen_ms, cc_ms, load_ms;
      Row row{n, tc};
      row.bound = bound;
      for (int r = 0; r < runs; ++r) {
        std::filesystem::remove_all(scratch);  // clang compiles every run
        auto t0 = Clock::now();
        const auto gen = tc ? runtime::kernel::generate_tc(merged.dag, 1)
                            : runtime::kernel::generate_xdp(merged.dag, 1);
        gen_ms.push_back(ms_since(t0));
        t0 = Clock::now();
        const auto object = runtime::kernel::compile_bpf(gen.source, scratch);
        cc_ms.push_back(ms_since(t0));
        try {
          t0 = Clock::now();
          const auto program = runtime::kernel::KernelProgram::load(object, gen.nodes.size());
          load_ms.push_back(ms_since(t0));
          row.verified = program->verified_insns();
        } catch (const std::exception& e) {
          std::cerr << n << " requests, " << (tc ? "TC" : "XDP") << ": " << e.what() << "\n";
          return 1;
        }
      }
      row.generate_ms = median(gen_ms), row.compile_ms = median(cc_ms),
      row.load_ms = median(load_ms);
      rows.push_back(row);
    }
  }
  std::filesystem::remove_all(scratch);
  if (csv) {
    std::printf("requests,hook,generate_ms,compile_ms,load_ms,verified_insns,bound_insns\n");
    for (const auto& r : rows)
      std::printf("%zu,%s,%.2f,%.1f,%.2f,%u,%u\n", r.requests, r.tc ? "tc" : "xdp", r.generate_ms,
                  r.compile_ms, r.load_ms, r.verified, r.bound);
    return 0;
  }
  std::printf("%8s %4s %12s %11s %11s %12s %12s %14s\n", "requests", "hook", "generate ms",
              "clang ms", "load ms", "verified", "bound", "verified/req");
  for (const auto& r : rows)
    std::printf("%8zu %4s %12.2f %11.1f %11.2f %12u %12u %14.0f\n", r.requests, r.tc ? "tc" : "xdp",
                r.generate_ms, r.compile_ms, r.load_ms, r.verified, r.bound,
                static_cast<double>(r.verified) / static_cast<double>(r.requests));
  return 0;
}
