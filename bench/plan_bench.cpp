// plan_bench: how long placement takes (DAG size x number of spaces), and how
// much the program's plans improve on the two baselines for realistic
// requests. See bench/results/plan.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "random_instance.h"
#include "srl/compiler/compiler.h"
#include "srl/optimizer/optimizer.h"

namespace {

using namespace srl;
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

bool g_parallel = true;

void timing(const std::vector<std::size_t>& sizes, const std::vector<std::size_t>& spaces,
            int runs) {
  std::printf(
      "| filters | spaces | columns | rows | solve median ms | solve max ms | plan+explain median "
      "ms | status |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (std::size_t n : sizes)
    for (std::size_t s : spaces) {
      std::vector<double> solve, full;
      optimizer::SolveInfo info;
      int rejected = 0;
      for (int r = 0; r < runs; ++r) {
        std::mt19937 rng(static_cast<unsigned>(1000 * n + 10 * s + static_cast<std::size_t>(r) +
                                               100000 * static_cast<std::size_t>(rejected)));
        const auto model = testing::random_model(s, rng);
        const auto dag = testing::random_dag(n, rng);
        optimizer::PlanOptions po;
        po.input_rate_pps = 1e5;  // random sinks (print) must fit on one core
        po.parallel = g_parallel;
        const std::vector<optimizer::RequestInput> in = {{&dag, "", nullptr}};
        auto t0 = Clock::now();
        optimizer::Problem p;
        try {
          p = optimizer::build_problem(in, model, po);
        } catch (const optimizer::PlanError& e) {
          // A random DAG the rules refuse (a pass below a userspace drop):
          // draw another one for this run.
          if (++rejected > 100) {
            std::fprintf(stderr, "%zu x %zu: 100 random DAGs refused; last: %s\n", n, s, e.what());
            std::exit(1);
          }
          --r;
          continue;
        }
        const auto a = optimizer::solve_milp(p, &info);
        auto t1 = Clock::now();
        if (!a) {
          std::fprintf(stderr, "no solution for %zu x %zu run %d: %s after %.0f ms\n", n, s, r,
                       info.status.c_str(), info.time_ms);
          std::exit(1);
        }
        solve.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        if (std::getenv("PLAN_BENCH_VERBOSE"))
          std::fprintf(stderr, "%zu x %zu run %d: %.2f ms, %d columns, lp_integral %d\n", n, s, r,
                       solve.back(), info.columns, info.lp_integral ? 1 : 0);
        if (r < 3) {
          t0 = Clock::now();
          (void)optimizer::plan(in, model, po);
          t1 = Clock::now();
          full.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
      }
      std::printf("| %zu | %zu | %d | %d | %.2f | %.2f | %.2f | %s |\n", n, s, info.columns,
                  info.rows, median(solve), *std::max_element(solve.begin(), solve.end()),
                  median(full), info.status.c_str());
      std::fflush(stdout);
    }
}

void improvements() {
  const char* requests[] = {
      "(ipv4) > (udp) > (port, which=dst) 53> (count)",
      "(tcp) > (http) > (print)",
      "(tcp) > (port) 22> (ssh) > (count)",
      "(udp) > (port) 53> (dns) > (count)",
      "(tcp) > (port) 443> (tls) > (print)",
      "(ip) > (addr, net=10.0.0.0/8) > (tcp) > (tcpstream) > (match, pattern=\"evil\") > (print)",
      "(tcp) > ((http) | (ssh) | (rtsp)) > (count)",
      "(len, min=1000) > (sample, n=100) > (pcap, file=\"big.pcap\")",
      "(bpf, expr=\"ip and udp port 53\") > (pcap, file=\"dns.pcap\")",
      "(vlan) > (hash, buckets=4) 0> (count)",
      "(tcp) > (tcpflags) 2> (rate, pps=1000) > (print)",
      "(udp) > (port) !1:1023> (drop)",
  };
  optimizer::SystemModel model;
  model.origin = "eth0 (native XDP, AF_XDP copy mode) + tc + 4 cores";
  for (const char* k : {"xdp", "tc"}) {
    optimizer::Space s;
    s.id = std::string(k) + ":eth0";
    s.kind = *optimizer::kind_from_string(k);
    s.device = "eth0";
    s.ebpf_insn_limit = 1'000'000;
    s.capacity_ns_per_s = 4e9;
    model.spaces.push_back(s);
  }
  for (std::uint32_t c = 0; c < 4; ++c) {
    optimizer::Space s;
    s.id = "user:" + std::to_string(c);
    s.kind = optimizer::Kind::user;
    s.cpu = c;
    model.spaces.push_back(s);
  }
  optimizer::add_default_channels(model);
  std::printf(
      "\n| request | plan (%% CPU) | push-down | all-user | vs push-down | vs all-user |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  double sum_pd = 0, sum_au = 0;
  int n_pd = 0, n_au = 0;
  for (const char* r : requests) {
    compiler::CompileOptions co;
    co.default_devices = {"eth0"};
    auto res = compiler::compile(r, co);
    if (!res.ok()) {
      std::fprintf(stderr, "%s: %s\n", r, res.diagnostics.render(*res.source).c_str());
      std::exit(1);
    }
    optimizer::PlanOptions po;
    const auto plan = optimizer::plan({{&*res.dag, "", res.source.get()}}, model, po);
    auto cell = [&](const optimizer::BaselinePlan& b, double& sum, int& cnt) {
      if (!b.placed) return std::string("n/a");
      const double imp = 100 * (1 - plan.objective_value / b.objective);
      sum += imp;
      ++cnt;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1f %%", imp);
      return std::string(buf);
    };
    auto val = [](const optimizer::BaselinePlan& b) {
      if (!b.placed) return std::string("n/a");
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1f", b.objective / 1e7);
      return std::string(buf);
    };
    const std::string vpd = val(plan.baselines[0]), vau = val(plan.baselines[1]);
    const std::string ipd = cell(plan.baselines[0], sum_pd, n_pd),
                      iau = cell(plan.baselines[1], sum_au, n_au);
    std::string text = r;
    for (std::size_t i = 0; (i = text.find('|', i)) != std::string::npos; i += 2)
      text.replace(i, 1, "\\|");
    std::printf("| `%s` | %.1f | %s | %s | %s | %s |\n", text.c_str(), plan.objective_value / 1e7,
                vpd.c_str(), vau.c_str(), ipd.c_str(), iau.c_str());
  }
  std::printf("| **mean** | | | | %.1f %% | %.1f %% |\n", n_pd ? sum_pd / n_pd : 0.0,
              n_au ? sum_au / n_au : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes = {10, 50, 200, 1000}, spaces = {2, 4, 8};
  int runs = 7;
  bool only_timing = false, only_improvement = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--runs=", 0) == 0)
      runs = std::max(1, std::atoi(a.c_str() + 7));
    else if (a.rfind("--sizes=", 0) == 0) {
      sizes.clear();
      for (const char* p = a.c_str() + 8; *p;) {
        sizes.push_back(std::strtoul(p, const_cast<char**>(&p), 10));
        if (*p == ',') ++p;
      }
    } else if (a == "--no-parallel")
      g_parallel = false;
    else if (a == "--timing")
      only_timing = true;
    else if (a == "--improvement")
      only_improvement = true;
    else {
      std::fprintf(stderr,
                   "usage: plan_bench [--runs=N] [--sizes=10,50,...] [--no-parallel] "
                   "[--timing|--improvement]\n");
      return 2;
    }
  }
  if (!only_improvement) timing(sizes, spaces, runs);
  if (!only_timing) improvements();
  return 0;
}
