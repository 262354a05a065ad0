// Compile-time benchmark for the SRL front end (srl::compiler::compile).
//
// Generates requests of 100, 1,000 and 10,000 filter instances in four
// shapes, compiles each one repeatedly, checks every result (no errors or
// warnings, the expected number of DAG nodes and edges; abort() otherwise)
// and reports the median and minimum wall time and the time per filter. The
// compiler should be linear in the size of the request, so the time per
// filter should stay flat: the last table gives, per shape, the time per
// filter at the largest size divided by that at the smallest.
//
//   compile_bench [--json] [--sizes=100,1000,10000] [--shapes=chain,fanout,named,bool]
//                 [--min-time=0.5] [--min-runs=5] [--print=SHAPE:SIZE]
//
// See bench/README.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "srl/compiler/compiler.h"
#include "srl/filters/catalog.h"

namespace {

using srl::compiler::CompileOptions;
using srl::compiler::CompileResult;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "compile_bench: %s\n", msg.c_str());
  std::abort();
}

CompileOptions bench_options() {
  CompileOptions o;
  o.file_name = "bench.srl";
  o.default_devices = {"eth0"};  // one implicit rx for every shape
  return o;
}

// Catalog filters that can stand anywhere in a pipeline without options:
// plain filters (not sources, sinks or synthetic nodes) that compile alone
// with neither errors nor warnings. (rate has no required option but needs
// pps= or bps=; the check finds that out by itself.)
std::vector<std::string> plain_filters() {
  std::vector<std::string> out;
  for (const auto& f : srl::filters::Catalog::builtin().all()) {
    if (f.role != srl::filters::Role::filter) continue;
    const std::string name(f.name);
    const CompileResult r = srl::compiler::compile("(" + name + ")", bench_options());
    if (r.ok() && r.diagnostics.all().empty()) out.push_back(name);
  }
  if (out.size() < 4) die("fewer than 4 option-less filters in the catalog");
  return out;
}

struct Request {
  std::string text;
  std::size_t filters = 0;  // instances written in the text
  std::size_t nodes = 0;    // expected DAG nodes (with rx and union/intersect)
  std::size_t edges = 0;    // expected DAG edges
};

// (f0) > (f1) > ... > (fN-1): one long pipeline.
Request chain(std::size_t n, const std::vector<std::string>& fs) {
  Request r;
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) r.text += " > ";
    r.text += "(" + fs[i % fs.size()] + ")";
  }
  r.filters = n;
  r.nodes = n + 1;  // + rx
  r.edges = n;      // rx > f0, then n - 1
  return r;
}

// (tcp) > ((f0) | (f1) | ... ) > (count): fan-out to n - 2 branches and
// fan-in into one counter.
Request fanout(std::size_t n, const std::vector<std::string>& fs) {
  Request r;
  r.text = "(tcp) > (";
  for (std::size_t i = 0; i + 2 < n; ++i) {
    if (i > 0) r.text += " | ";
    r.text += "(" + fs[i % fs.size()] + ")";
  }
  r.text += ") > (count)\n";
  r.filters = n;
  r.nodes = n + 1;
  r.edges = 1 + 2 * (n - 2);
  return r;
}

// n / 4 statements of four instances each; the first instance of each
// statement is named and the statement before refers to it, so every
// statement but the last ends in a forward reference:
//   (f, name=s0) > (f) > (f) > (f) > (s1);
//   (f, name=s1) > (f) > (f) > (f) > (s2);
//   ...
Request named(std::size_t n, const std::vector<std::string>& fs) {
  if (n % 4 != 0) die("shape 'named' needs a multiple of 4 filters");
  const std::size_t stmts = n / 4;
  Request r;
  std::size_t k = 0;
  for (std::size_t s = 0; s < stmts; ++s) {
    r.text += "(" + fs[k++ % fs.size()] + ", name=s" + std::to_string(s) + ")";
    for (int j = 0; j < 3; ++j)
      r.text += " > (" + fs[k++ % fs.size()] + ")";
    if (s + 1 < stmts) r.text += " > (s" + std::to_string(s + 1) + ")";
    r.text += ";\n";
  }
  r.filters = n;
  r.nodes = n + 1;
  r.edges = n;  // 3 per statement, stmts - 1 forward references, rx > s0
  return r;
}

// A pipeline of n / 4 boolean units joined by '>', each a classifier with a
// selector feeding an and/or/not expression of three filters:
//   (port) 22,80:90> (tcp) or (udp) and not (icmp) > (port) !1:1023> not (ssh) and (tcp) or (udp) >
//   ...
// Per unit: 4 instances, 1 union, 1 intersect, 7 edges inside, 1 to the next.
Request boolean(std::size_t n) {
  if (n % 4 != 0) die("shape 'bool' needs a multiple of 4 filters");
  static const char* const kSelectors[] = {"22,80:90>", "!1:1023>", "443>", "!>", "1:1023,8080>"};
  static const char* const kExprs[] = {"(tcp) or (udp) and not (icmp)",
                                       "not (ssh) and (tcp) or (udp)",
                                       "(tcp) and (http) or not (udp)"};
  const std::size_t units = n / 4;
  Request r;
  for (std::size_t u = 0; u < units; ++u) {
    if (u > 0) r.text += u % 8 == 0 ? " >\n" : " > ";
    r.text += "(port) ";
    r.text += kSelectors[u % std::size(kSelectors)];
    r.text += " ";
    r.text += kExprs[u % std::size(kExprs)];
  }
  r.text += "\n";
  r.filters = n;
  r.nodes = 6 * units + 1;
  r.edges = 8 * units;  // 7 per unit, units - 1 between them, rx > first port
  return r;
}

const std::vector<std::string>& shape_names() {
  static const std::vector<std::string> names = {"chain", "fanout", "named", "bool"};
  return names;
}

Request generate(const std::string& shape, std::size_t n, const std::vector<std::string>& fs) {
  if (shape == "chain") return chain(n, fs);
  if (shape == "fanout") return fanout(n, fs);
  if (shape == "named") return named(n, fs);
  if (shape == "bool") return boolean(n);
  die("unknown shape '" + shape + "'; expected chain, fanout, named or bool");
}

// Compiles once and checks the result; returns the wall time in ms.
double compile_checked(const Request& req, const CompileOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const CompileResult r = srl::compiler::compile(req.text, options);
  const auto t1 = std::chrono::steady_clock::now();
  if (!r.ok() || !r.dag) {
    std::string first = r.diagnostics.all().empty() ? std::string("(no diagnostic)")
                                                    : r.diagnostics.all().front().message;
    die("request of " + std::to_string(req.filters) + " filters did not compile: " + first);
  }
  if (!r.diagnostics.all().empty())
    die("request of " + std::to_string(req.filters) +
        " filters compiled with warnings: " + r.diagnostics.all().front().message);
  if (r.dag->node_count() != req.nodes || r.dag->edge_count() != req.edges)
    die("request of " + std::to_string(req.filters) + " filters gave " +
        std::to_string(r.dag->node_count()) + " nodes and " + std::to_string(r.dag->edge_count()) +
        " edges; expected " + std::to_string(req.nodes) + " and " + std::to_string(req.edges));
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

struct Result {
  std::string shape;
  std::size_t filters = 0, nodes = 0, edges = 0, bytes = 0, runs = 0;
  double median_ms = 0, min_ms = 0;
  double us_per_filter() const { return median_ms * 1000.0 / static_cast<double>(filters); }
};

struct Settings {
  bool json = false;
  std::vector<std::size_t> sizes = {100, 1000, 10000};
  std::vector<std::string> shapes = shape_names();
  double min_time_s = 0.5;  // per shape and size
  std::size_t min_runs = 5;
};

Result measure(const std::string& shape, std::size_t n, const std::vector<std::string>& fs,
               const Settings& s) {
  const Request req = generate(shape, n, fs);
  const CompileOptions options = bench_options();
  compile_checked(req, options);  // warm-up: checked, not counted
  // At least min_runs runs and min_time_s seconds of compiling.
  std::vector<double> times;
  double total_ms = 0;
  while (times.size() < s.min_runs || total_ms < s.min_time_s * 1000.0) {
    times.push_back(compile_checked(req, options));
    total_ms += times.back();
  }
  const std::size_t runs = times.size();
  std::sort(times.begin(), times.end());
  const std::size_t mid = times.size() / 2;
  const double median = times.size() % 2 == 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2.0;
  return {shape, req.filters, req.nodes, req.edges, req.text.size(), runs, median, times.front()};
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "compile_bench: %s\n"
               "usage: compile_bench [--json] [--sizes=100,1000,10000]\n"
               "                     [--shapes=chain,fanout,named,bool] [--min-time=SECONDS]\n"
               "                     [--min-runs=N] [--print=SHAPE:SIZE]\n",
               why.c_str());
  std::exit(2);
}

std::size_t parse_size(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v == 0) usage("not a positive number: " + s);
  return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string print;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string_view prefix) { return a.substr(prefix.size()); };
    if (a == "--json") {
      s.json = true;
    } else if (a.starts_with("--sizes=")) {
      s.sizes.clear();
      for (const auto& v : split(value("--sizes=")))
        s.sizes.push_back(parse_size(v));
    } else if (a.starts_with("--shapes=")) {
      s.shapes = split(value("--shapes="));
      for (const auto& sh : s.shapes)
        if (std::find(shape_names().begin(), shape_names().end(), sh) == shape_names().end())
          usage("unknown shape '" + sh + "'");
    } else if (a.starts_with("--min-time=")) {
      s.min_time_s = std::atof(value("--min-time=").c_str());
    } else if (a.starts_with("--min-runs=")) {
      s.min_runs = parse_size(value("--min-runs="));
    } else if (a.starts_with("--print=")) {
      print = value("--print=");
    } else {
      usage("unknown argument '" + a + "'");
    }
  }
  if (s.sizes.empty() || s.shapes.empty()) usage("nothing to measure");

  const std::vector<std::string> fs = plain_filters();

  if (!print.empty()) {  // the generated request, e.g. for srlc or a profiler
    const auto colon = print.find(':');
    if (colon == std::string::npos) usage("--print needs SHAPE:SIZE");
    const std::string shape = print.substr(0, colon);
    if (std::find(shape_names().begin(), shape_names().end(), shape) == shape_names().end())
      usage("unknown shape '" + shape + "'");
    std::cout << generate(shape, parse_size(print.substr(colon + 1)), fs).text;
    return 0;
  }

  std::vector<Result> results;
  if (!s.json) {
    std::printf("SRL compile benchmark: median and min wall time of srl::compiler::compile\n");
    std::printf(
        "(at least %zu runs and %.2f s per row; nodes include the implicit rx and\n"
        "union/intersect nodes)\n\n",
        s.min_runs, s.min_time_s);
    std::printf("%-7s %8s %8s %8s %9s %6s %11s %11s %10s\n", "shape", "filters", "nodes", "edges",
                "bytes", "runs", "median ms", "min ms", "us/filter");
    std::fflush(stdout);
  }
  for (const auto& shape : s.shapes) {
    for (std::size_t n : s.sizes) {
      const Result r = measure(shape, n, fs, s);
      results.push_back(r);
      if (!s.json) {
        std::printf("%-7s %8zu %8zu %8zu %9zu %6zu %11.3f %11.3f %10.3f\n", r.shape.c_str(),
                    r.filters, r.nodes, r.edges, r.bytes, r.runs, r.median_ms, r.min_ms,
                    r.us_per_filter());
        std::fflush(stdout);
      }
    }
  }

  // Growth: time per filter at the largest size over that at the smallest.
  const std::size_t lo = *std::min_element(s.sizes.begin(), s.sizes.end());
  const std::size_t hi = *std::max_element(s.sizes.begin(), s.sizes.end());
  nlohmann::ordered_json growth = nlohmann::ordered_json::array();
  if (!s.json && lo != hi)
    std::printf(
        "\ngrowth: us/filter at %zu filters / us/filter at %zu (1.0 = linear; > 2 is "
        "not linear)\n",
        hi, lo);
  for (const auto& shape : s.shapes) {
    const Result* a = nullptr;
    const Result* b = nullptr;
    for (const auto& r : results) {
      if (r.shape == shape && r.filters == lo) a = &r;
      if (r.shape == shape && r.filters == hi) b = &r;
    }
    if (a == nullptr || b == nullptr || lo == hi) continue;
    const double ratio = b->us_per_filter() / a->us_per_filter();
    growth.push_back({{"shape", shape},
                      {"from_filters", lo},
                      {"to_filters", hi},
                      {"ratio", ratio},
                      {"linear", ratio <= 2.0}});
    if (!s.json)
      std::printf("%-7s %6.2f  %s\n", shape.c_str(), ratio, ratio <= 2.0 ? "linear" : "NOT LINEAR");
  }

  if (s.json) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& r : results)
      rows.push_back({{"shape", r.shape},
                      {"filters", r.filters},
                      {"nodes", r.nodes},
                      {"edges", r.edges},
                      {"bytes", r.bytes},
                      {"runs", r.runs},
                      {"median_ms", r.median_ms},
                      {"min_ms", r.min_ms},
                      {"us_per_filter", r.us_per_filter()}});
    nlohmann::ordered_json out = {{"benchmark", "srl_compile"},
                                  {"min_time_s", s.min_time_s},
                                  {"min_runs", s.min_runs},
                                  {"results", std::move(rows)},
                                  {"growth", std::move(growth)}};
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}
