// Per-packet cost of the kernel space, measured with BPF_PROG_TEST_RUN.
//
// One 6-filter chain,
//   (eth) > (ipv4) > (udp) > (port, which=dst) 53> (len, min=64, max=1500) > (count)
// (7 nodes with the implicit rx), as three XDP programs:
//   fused     the one program srl generates for it (generate_xdp, compile_bpf);
//   tailcall  one program per node joined by bpf_tail_call through a PROG_ARRAY,
//             headers parsed once by the first into a per-CPU scratch map, a
//             counter slot per node (bench/bpf/tailcall_chain.c);
//   hand      written by hand for this job, one per-CPU counter
//             (bench/bpf/handwritten.c);
// plus `empty` (return XDP_PASS: the cost of the test-run loop itself). Each
// runs on a 100-byte UDP frame to port 53 (matches) and a 100-byte TCP frame
// to port 53 (rejected by udp). Every timed test run is checked: the same XDP
// action for all variants and, for each, the count node's counter grew by
// `repeat` (UDP) or not at all (TCP); the fused and tail-call programs must
// end with identical per-node counters. Any difference aborts.
//
//   xdp_bench [--repeat=1000000] [--runs=7] [--bpf-dir=DIR] [--cache=DIR]
//             [--dump-xlated=DIR] [--print-source] [--ablations]
//
// --ablations adds two variants of the generated program with some of its
// counter updates removed (all counters of the count node only; packet
// counters only), to show what the per-node counters cost.
//
// Needs root (CAP_BPF, CAP_SYS_ADMIN for BPF_PROG_TEST_RUN). See bench/README.md.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/runtime/kernel.h"

#ifndef SRL_BENCH_BPF_DIR
#define SRL_BENCH_BPF_DIR "bench/bpf"
#endif

namespace {

namespace fs = std::filesystem;
namespace kernel = srl::runtime::kernel;

constexpr const char* kRequest =
    "(eth) > (ipv4) > (udp) > (port, which=dst) 53> (len, min=64, max=1500) > (count)";
constexpr std::array<const char*, 7> kChain = {"rx", "eth", "ipv4", "udp", "port", "len", "count"};
constexpr std::array<const char*, 7> kTailPrograms = {"tc_rx",   "tc_eth", "tc_ipv4", "tc_udp",
                                                      "tc_port", "tc_len", "tc_count"};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "xdp_bench: %s\n", msg.c_str());
  std::abort();
}

struct Options {
  std::uint32_t repeat = 1000000;
  int runs = 7;
  fs::path bpf_dir = SRL_BENCH_BPF_DIR;
  fs::path cache = fs::temp_directory_path() / "srl-xdp-bench-cache";
  fs::path dump_xlated;
  bool print_source = false;
  bool ablations = false;
};

// A frame of `size` bytes: Ethernet, IPv4 10.0.0.1 -> 10.0.0.2, then UDP or
// TCP (no options) 40000 -> `dport`, zero payload.
std::vector<std::uint8_t> frame(std::uint8_t proto, std::uint16_t dport, std::size_t size) {
  std::vector<std::uint8_t> f(size, 0);
  const std::uint8_t dst_mac[] = {0x02, 0, 0, 0, 0, 2}, src_mac[] = {0x02, 0, 0, 0, 0, 1};
  std::copy(std::begin(dst_mac), std::end(dst_mac), f.begin());
  std::copy(std::begin(src_mac), std::end(src_mac), f.begin() + 6);
  f[12] = 0x08;
  const std::size_t ip = 14, l4 = 34;
  const auto ip_len = static_cast<std::uint16_t>(size - ip);
  f[ip] = 0x45;
  f[ip + 2] = static_cast<std::uint8_t>(ip_len >> 8);
  f[ip + 3] = static_cast<std::uint8_t>(ip_len);
  f[ip + 8] = 64;
  f[ip + 9] = proto;
  const std::uint8_t src[] = {10, 0, 0, 1}, dst[] = {10, 0, 0, 2};
  std::copy(std::begin(src), std::end(src), f.begin() + ip + 12);
  std::copy(std::begin(dst), std::end(dst), f.begin() + ip + 16);
  f[l4] = 40000 >> 8;
  f[l4 + 1] = 40000 & 0xFF;
  f[l4 + 2] = static_cast<std::uint8_t>(dport >> 8);
  f[l4 + 3] = static_cast<std::uint8_t>(dport);
  if (proto == 17) {
    const auto udp_len = static_cast<std::uint16_t>(size - l4);
    f[l4 + 4] = static_cast<std::uint8_t>(udp_len >> 8);
    f[l4 + 5] = static_cast<std::uint8_t>(udp_len);
  } else {
    f[l4 + 12] = 0x50;  // data offset 5
    f[l4 + 13] = 0x18;  // PSH ACK
  }
  return f;
}

struct Packet {
  std::string name;
  std::vector<std::uint8_t> bytes;
  bool matches = false;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) die("cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sums `words` u64 of per-CPU array `map_fd` at `key` over the possible CPUs.
std::vector<std::uint64_t> percpu_sum(int map_fd, std::uint32_t key, std::size_t words) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) die("libbpf_num_possible_cpus failed");
  std::vector<std::uint64_t> all(static_cast<std::size_t>(cpus) * words), sum(words, 0);
  if (bpf_map_lookup_elem(map_fd, &key, all.data()) != 0)
    die("cannot read a counter map: " + std::string(std::strerror(errno)));
  for (std::size_t c = 0; c < static_cast<std::size_t>(cpus); ++c)
    for (std::size_t w = 0; w < words; ++w)
      sum[w] += all[c * words + w];
  return sum;
}

struct ProgInfo {
  std::uint32_t id = 0;
  std::uint32_t xlated_insns = 0;
  std::uint32_t jited_bytes = 0;
};

ProgInfo prog_info(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    die("bpf_obj_get_info_by_fd: " + std::string(std::strerror(errno)));
  return {info.id, info.xlated_prog_len / 8, info.jited_prog_len};
}

// One way of running the chain: the entry program, the programs it may run,
// and how to read the count node's counter.
struct Variant {
  std::string name;
  int fd = -1;
  std::vector<std::pair<std::string, int>> programs;  // name, fd
  std::function<std::uint64_t()> count;
  bool checked = true;                            // counts and returns XDP_PASS
  std::map<std::string, std::vector<double>> ns;  // per packet name: ns per run
  std::map<std::string, std::size_t> ran;         // per packet name: programs run
};

// A libbpf object compiled from a C file of bench/bpf/ (with the same clang
// command and cache as the generated programs) and loaded.
bpf_object* load_object(const fs::path& c_file, const fs::path& cache) {
  const auto object = kernel::compile_bpf(read_text(c_file), cache);
  bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
  if (obj == nullptr) die("cannot open " + object.string());
  if (bpf_object__load(obj) != 0)
    die("cannot load " + c_file.string() + ": " + std::strerror(errno));
  return obj;
}

int program_fd(bpf_object* obj, const char* name) {
  bpf_program* p = bpf_object__find_program_by_name(obj, name);
  if (p == nullptr) die(std::string("no program ") + name);
  return bpf_program__fd(p);
}

int map_fd(bpf_object* obj, const char* name) {
  const int fd = bpf_object__find_map_fd_by_name(obj, name);
  if (fd < 0) die(std::string("no map ") + name);
  return fd;
}

struct RunResult {
  std::uint32_t action = 0;
  double ns = 0;  // BPF_PROG_TEST_RUN's duration: mean ns per run (whole ns, truncated)
};

RunResult test_run(int fd, const std::vector<std::uint8_t>& bytes, std::uint32_t repeat) {
  std::vector<std::uint8_t> in(bytes), out(bytes.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = out.data(),
              .data_size_in = static_cast<std::uint32_t>(in.size()),
              .data_size_out = static_cast<std::uint32_t>(out.size()),
              .repeat = static_cast<int>(repeat));
  if (bpf_prog_test_run_opts(fd, &opts) != 0)
    die("BPF_PROG_TEST_RUN: " + std::string(std::strerror(errno)));
  return {opts.retval, static_cast<double>(opts.duration)};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 != 0 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fixed(double x, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  return buf;
}

double minimum(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

double maximum(const std::vector<double>& v) {
  return *std::max_element(v.begin(), v.end());
}

// The generated source without some of its counter updates, for the
// ablation rows: `keep_node` keeps all counters of that node slot (-1: none),
// `keep_packets` keeps every node's packet counter.
std::string without_counters(std::string source, std::size_t nodes, long keep_node,
                             bool keep_packets) {
  for (std::size_t v = 0; v < nodes; ++v) {
    if (static_cast<long>(v) == keep_node) continue;
    const std::string c = "cnt->c[" + std::to_string(v) + "].";
    std::vector<std::string> lines = {
        "    " + c + "bytes += p.len;\n",
        "    if (n" + std::to_string(v) + "_a) " + c + "accepted++;\n"};
    if (!keep_packets) lines.push_back("    " + c + "packets++;\n");
    for (const auto& line : lines) {
      const auto at = source.find(line);
      if (at == std::string::npos) die("ablation: no line '" + line + "' in the generated source");
      source.erase(at, line.size());
    }
  }
  return source;
}

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view key) -> const char* {
      return a.substr(0, key.size()) == key ? argv[i] + key.size() : nullptr;
    };
    if (const char* v = value("--repeat="))
      o.repeat = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (const char* r = value("--runs="))
      o.runs = std::atoi(r);
    else if (const char* d = value("--bpf-dir="))
      o.bpf_dir = d;
    else if (const char* c = value("--cache="))
      o.cache = c;
    else if (const char* x = value("--dump-xlated="))
      o.dump_xlated = x;
    else if (a == "--print-source")
      o.print_source = true;
    else if (a == "--ablations")
      o.ablations = true;
    else {
      std::fprintf(stderr,
                   "usage: xdp_bench [--repeat=N] [--runs=N] [--bpf-dir=DIR] [--cache=DIR]\n"
                   "                 [--dump-xlated=DIR] [--print-source] [--ablations]\n");
      return false;
    }
  }
  if (o.repeat == 0 || o.runs <= 0) {
    std::fprintf(stderr, "xdp_bench: --repeat and --runs must be positive\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_options(argc, argv, o)) return 2;

  // (a) fused: the program srl generates.
  const auto compiled = srl::compiler::compile(kRequest);
  if (!compiled.ok())
    die("the request does not compile:\n" + compiled.diagnostics.render(*compiled.source));
  const auto gen = kernel::generate_xdp(*compiled.dag, 1);
  if (o.print_source) {
    std::fputs(gen.source.c_str(), stdout);
    return 0;
  }
  if (gen.nodes.size() != kChain.size()) die("expected 7 nodes");
  for (std::size_t i = 0; i < kChain.size(); ++i)
    if (gen.nodes[i].filter != kChain[i])
      die("node " + std::to_string(i) + " is " + gen.nodes[i].filter + ", expected " + kChain[i]);
  const std::size_t count_slot = kChain.size() - 1;
  std::vector<std::unique_ptr<kernel::KernelProgram>> fused;
  fused.push_back(
      kernel::KernelProgram::load(kernel::compile_bpf(gen.source, o.cache), gen.nodes.size()));

  // (b) tail calls, (c) hand-written, and the empty program.
  bpf_object* tail_obj = load_object(o.bpf_dir / "tailcall_chain.c", o.cache);
  bpf_object* hand_obj = load_object(o.bpf_dir / "handwritten.c", o.cache);
  bpf_object* empty_obj = load_object(o.bpf_dir / "empty.c", o.cache);
  const int jmp = map_fd(tail_obj, "tc_jmp");
  const int tail_counters = map_fd(tail_obj, "tc_counters");
  const int hand_count = map_fd(hand_obj, "hand_count");

  std::vector<Variant> variants;
  auto add_fused = [&](const std::string& name, kernel::KernelProgram* prog) {
    Variant v;
    v.name = name;
    v.fd = prog->fd();
    v.programs = {{"srl_xdp", prog->fd()}};
    v.count = [prog, count_slot] { return prog->counters()[count_slot].packets; };
    variants.push_back(std::move(v));
  };
  add_fused("fused (srl)", fused[0].get());
  Variant tail;
  tail.name = "tail calls";
  for (std::uint32_t i = 0; i < kTailPrograms.size(); ++i) {
    int fd = program_fd(tail_obj, kTailPrograms[i]);
    if (bpf_map_update_elem(jmp, &i, &fd, BPF_ANY) != 0)
      die("cannot fill the PROG_ARRAY: " + std::string(std::strerror(errno)));
    tail.programs.emplace_back(kTailPrograms[i], fd);
  }
  tail.fd = tail.programs[0].second;
  tail.count = [&] {
    return percpu_sum(tail_counters, static_cast<std::uint32_t>(count_slot), 3)[0];
  };
  variants.push_back(std::move(tail));
  Variant hand;
  hand.name = "hand-written";
  hand.fd = program_fd(hand_obj, "hand_xdp");
  hand.programs = {{"hand_xdp", hand.fd}};
  hand.count = [&] { return percpu_sum(hand_count, 0, 1)[0]; };
  variants.push_back(std::move(hand));
  Variant empty;
  empty.name = "empty";
  empty.fd = program_fd(empty_obj, "empty_xdp");
  empty.programs = {{"empty_xdp", empty.fd}};
  empty.count = [] { return std::uint64_t{0}; };
  empty.checked = false;
  variants.push_back(std::move(empty));
  const std::size_t kFused = 0, kTail = 1, kHand = 2, kEmpty = 3;
  if (o.ablations) {
    const auto load = [&](const std::string& source) {
      fused.push_back(
          kernel::KernelProgram::load(kernel::compile_bpf(source, o.cache), gen.nodes.size()));
      return fused.back().get();
    };
    add_fused(
        "fused, count node's counters only",
        load(without_counters(gen.source, kChain.size(), static_cast<long>(count_slot), false)));
    add_fused("fused, packet counters only",
              load(without_counters(gen.source, kChain.size(), -1, true)));
  }

  const std::vector<Packet> packets = {{"UDP dst 53", frame(17, 53, 100), true},
                                       {"TCP dst 53", frame(6, 53, 100), false}};

  // One test run of every variant on `p`, checked: the same action and the
  // count node's counter grown by `repeat` on a match, else unchanged.
  auto run_all = [&](const Packet& p, std::uint32_t repeat, std::size_t rotate, bool record) {
    std::optional<std::uint32_t> action;
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + rotate) % variants.size()];
      const std::uint64_t before = v.count();
      const RunResult r = test_run(v.fd, p.bytes, repeat);
      const std::uint64_t grew = v.count() - before;
      if (v.checked) {
        if (r.action != XDP_PASS)
          die(v.name + " returned action " + std::to_string(r.action) + " on " + p.name);
        if (action && *action != r.action) die("the variants return different actions");
        action = r.action;
        if (grew != (p.matches ? repeat : 0))
          die(v.name + " counted " + std::to_string(grew) + " of " + std::to_string(repeat) +
              " runs on " + p.name);
      }
      if (record) v.ns[p.name].push_back(r.ns);
    }
  };

  // Correctness first, one run each; how many tail-call programs ran (the
  // node slots whose packet counter grew).
  for (const auto& p : packets) {
    std::vector<std::uint64_t> before;
    for (std::uint32_t i = 0; i < kChain.size(); ++i)
      before.push_back(percpu_sum(tail_counters, i, 3)[0]);
    run_all(p, 1, 0, false);
    for (auto& v : variants)
      v.ran[p.name] = v.programs.size();
    variants[kTail].ran[p.name] = 0;
    for (std::uint32_t i = 0; i < kChain.size(); ++i)
      if (percpu_sum(tail_counters, i, 3)[0] != before[i]) ++variants[kTail].ran[p.name];
  }
  for (const auto& p : packets)
    run_all(p, std::min<std::uint32_t>(o.repeat, 100000), 0, false);  // warm-up
  for (int r = 0; r < o.runs; ++r)
    for (const auto& p : packets)
      run_all(p, o.repeat, static_cast<std::size_t>(r), true);

  // The fused and tail-call programs keep the same per-node counters and saw
  // the same runs: they must agree on every node.
  const auto fc = fused[0]->counters();
  for (std::uint32_t i = 0; i < kChain.size(); ++i) {
    const auto t = percpu_sum(tail_counters, i, 3);
    if (fc[i].packets != t[0] || fc[i].bytes != t[1] || fc[i].accepted != t[2])
      die("per-node counters differ at node " + std::to_string(i) + " (" + kChain[i] + ")");
  }

  // Program sizes; the xlated listings if asked.
  std::vector<std::uint32_t> insns(variants.size(), 0);
  for (std::size_t k = 0; k < variants.size(); ++k) {
    for (const auto& [name, fd] : variants[k].programs) {
      const ProgInfo info = prog_info(fd);
      insns[k] += info.xlated_insns;
      if (!o.dump_xlated.empty() && k <= kEmpty) {
        fs::create_directories(o.dump_xlated);
        const std::string cmd = "bpftool prog dump xlated id " + std::to_string(info.id) + " > '" +
                                (o.dump_xlated / (name + ".txt")).string() + "'";
        if (std::system(cmd.c_str()) != 0)
          std::fprintf(stderr, "xdp_bench: %s failed\n", cmd.c_str());
      }
    }
  }

  std::printf(
      "request: %s\n100-byte frames; BPF_PROG_TEST_RUN repeat %u, %d runs per row.\n"
      "ns/pkt: the kernel's duration (mean ns per repetition, whole ns): median [min-max] over "
      "the runs.\nEvery run checked: all variants return XDP_PASS and count alike.\n\n",
      kRequest, o.repeat, o.runs);
  std::printf(
      "| packet | variant | programs run | xlated insns | ns/pkt | net ns/pkt | vs hand |\n"
      "|---|---|---:|---:|---:|---:|---:|\n");
  for (const auto& p : packets) {
    const double hand_ns = median(variants[kHand].ns.at(p.name));
    const double floor_ns = median(variants[kEmpty].ns.at(p.name));
    for (std::size_t k = 0; k < variants.size(); ++k) {
      const auto& ns = variants[k].ns.at(p.name);
      std::printf("| %s | %s | %zu | %u | %.0f [%.0f-%.0f] | %s | %.2fx |\n", p.name.c_str(),
                  variants[k].name.c_str(), variants[k].ran.at(p.name), insns[k], median(ns),
                  minimum(ns), maximum(ns),
                  k == kEmpty ? "-" : fixed(median(ns) - floor_ns, 0).c_str(),
                  median(ns) / hand_ns);
    }
  }
  std::printf(
      "\nnet: minus the empty program (the cost of the test-run loop itself), +-1 ns.\n"
      "Goal: fused within 1.3x of hand-written, clearly ahead of tail calls.\n");
  for (const auto& p : packets) {
    auto ns = [&](std::size_t k) { return median(variants[k].ns.at(p.name)); };
    const double e = ns(kEmpty), f = ns(kFused), t = ns(kTail), h = ns(kHand);
    std::printf(
        "%s: fused/hand %.2fx (net %.0f vs %.0f ns); tail calls/fused %.2fx (net %.0f vs %.0f "
        "ns)\n",
        p.name.c_str(), f / h, f - e, h - e, t / f, t - e, f - e);
  }
  bpf_object__close(tail_obj);
  bpf_object__close(hand_obj);
  bpf_object__close(empty_obj);
  return 0;
}
