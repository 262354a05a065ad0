// Building the flattened problem from merged Request DAGs and a system
// model: one node per merged vertex, rates propagated, candidate spaces
// filtered (with the reason for every space left out), then made consistent
// along edges.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "srl/filters/delivery.h"
#include "srl/optimizer/optimizer.h"

namespace srl::optimizer {
namespace {

using filters::Role;
using filters::State;

std::string fmt(double v) {
  std::ostringstream o;
  if (std::fabs(v) >= 100 || v == std::floor(v)) {
    o.precision(0);
    o << std::fixed << v;
  } else {
    o.precision(3);
    o << v;
  }
  return o.str();
}

std::string cpu(double ns_per_s) {
  return fmt(ns_per_s / 1e9 * 100) + "% of a CPU";
}

std::string option_string(const compiler::DagNode& n, const char* key) {
  auto it = n.options.find(key);
  if (it == n.options.end()) return {};
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}

// Capabilities a filter needs in a kernel or offload space.
std::vector<std::string> required_caps(const filters::FilterSpec& f, Kind k) {
  std::vector<std::string> out;
  if (k == Kind::user) return out;
  out.push_back(k == Kind::xdp ? "prog:xdp" : k == Kind::tc ? "prog:sched_cls" : "prog:offload");
  if (f.state == State::global) out.push_back("map:percpu_array");
  if (f.state == State::window || f.state == State::per_flow) out.push_back("map:lru_hash");
  if (f.name == "sample") out.push_back("helper:get_prandom_u32");
  if (f.name == "rate") out.push_back("helper:ktime_get_ns");
  if (f.name == "tx" && k == Kind::tc) out.push_back("helper:redirect");
  return out;
}

// Share of the upstream's input that an edge carries (docs/optimizer.md §Rates).
double edge_share(const compiler::EdgeSelector& sel, const filters::FilterSpec& up) {
  const double acc = up.role == Role::source ? 1.0 : up.selectivity;
  if (sel.rejected) return 1.0 - acc;
  if (sel.ranges.empty()) return acc;
  double frac = 0;
  if (up.max_class == 0) {
    frac = sel.selects(0) ? 1.0 : 0.0;
    return acc * frac;
  }
  const double space = static_cast<double>(up.max_class) + 1;
  for (const auto& r : sel.ranges) {
    if (r.lo > up.max_class) continue;
    const double width = std::min<double>(r.hi, up.max_class) - r.lo + 1;
    frac += 0.1 + width / space;
  }
  frac = std::min(1.0, frac);
  return acc * (sel.invert ? 1.0 - frac : frac);
}

// The catalog's cost of a filter in a kind of space. One addition: a device
// with an offload space sees every packet before the host, so rx "runs"
// there at no cost (the catalog lists rx for K and U only).
std::optional<filters::Cost> impl_cost(const filters::FilterSpec& f, filters::SpaceKind k) {
  if (f.name == "rx" && k == filters::SpaceKind::offload) return filters::Cost{0, 0};
  return f.cost[static_cast<std::size_t>(k)];
}
bool implemented(const filters::FilterSpec& f, Kind k) {
  return impl_cost(f, impl_kind(k)).has_value();
}

// Load of a space; a replica set spreads it evenly over its cores.
void add_load(const Problem& p, std::vector<double>& load, std::size_t s, double ns) {
  if (p.members[s].empty()) {
    load[s] += ns;
    return;
  }
  for (std::size_t c : p.members[s])
    load[c] += ns / static_cast<double>(p.members[s].size());
}

std::string space_list(const Problem& p, const std::vector<std::size_t>& dom) {
  std::string out;
  for (std::size_t s : dom)
    out += (out.empty() ? "" : ", ") + p.spaces[s].id;
  return out.empty() ? "nowhere" : out;
}

std::string node_name(const ProblemNode& n) {
  return n.id + " (" + std::string(n.spec->name) + (n.pin ? ", space=" + *n.pin : "") + ")";
}

// Where a kernel program's count comes from: "xdp:eth0", or with several
// spaces "xdp:eth0 and xdp:eth1 (one program on every hook: 200 + 100)".
std::string program_where(const Problem& p, const std::vector<std::size_t>& spaces,
                          const std::vector<std::uint32_t>& count) {
  std::vector<std::size_t> used;
  for (std::size_t s : spaces)
    if (count[s] > 0) used.push_back(s);
  if (used.size() == 1) return p.spaces[used[0]].id;
  std::string ids, parts;
  for (std::size_t i = 0; i < used.size(); ++i) {
    ids += (i == 0 ? "" : i + 1 == used.size() ? " and " : ", ") + p.spaces[used[i]].id;
    parts += (i == 0 ? "" : " + ") + std::to_string(count[used[i]]);
  }
  return ids + " (one program on every hook: " + parts + ")";
}

}  // namespace

std::uint32_t Problem::program_limit(std::size_t k, std::uint32_t Space::*limit) const {
  std::uint32_t least = 0;
  for (std::size_t s : programs[k]) {
    const std::uint32_t l = spaces[s].*limit;
    if (l > 0 && (least == 0 || l < least)) least = l;
  }
  return least;
}

double Problem::edge_cost(const ProblemEdge& e, std::size_t s, std::size_t t) const {
  if (s == t) return 0;
  const PairChannel& c = pair(e, s, t);
  if (!c.allowed) return kNotAllowed;
  return e.rate * (c.ns_per_block + c.ns_per_byte * e.bytes);
}

std::vector<std::size_t> Problem::crossing_payers(const std::vector<std::size_t>& a) const {
  std::vector<std::size_t> payer(edges.size());
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::size_t> first;  // bundle, s, t
  for (std::size_t i = 0; i < edges.size(); ++i) {
    const std::size_t s = a[edges[i].from], t = a[edges[i].to];
    payer[i] =
        bundled(s, t) ? first.emplace(std::make_tuple(edges[i].bundle, s, t), i).first->second : i;
  }
  return payer;
}

double Problem::total_capacity() const {
  double c = 0;
  for (const auto& s : spaces)
    c += s.capacity_ns_per_s;
  return c;
}

std::uint32_t kernel_insns(const compiler::DagNode& n) {
  std::uint32_t insns = n.filter->ebpf_insns;
  if (n.translation) insns += static_cast<std::uint32_t>(2 * n.translation->insns.size());
  // count, by=class: a lookup in its table, and an insert where the class
  // is new (runtime/src/xdp_codegen.cpp, srl_class_count).
  if (const auto by = n.options.find("by"); by != n.options.end())
    if (const auto* s = std::get_if<std::string>(&by->second); s != nullptr && *s == "class")
      insns += 30;
  return insns;
}

namespace {

// The verifier's work that is not any filter's, measured on the map form
// (docs/kernel.md) and rounded up: the parse and the counters' lookup
// (6,778 at TC, 6,723 at XDP); the copy channel's function and 32 exits
// (the first ~360, each more ~35); per input edge (its selector's test and
// the outcome slot it may read: ~15 per branch of a fan-out, ~50 per input
// of a union) and per class range of its selector (~5).
constexpr std::uint32_t kVerifiedBase = 7'500;
constexpr std::uint32_t kVerifiedExits = 2'000;
constexpr std::uint32_t kVerifiedPerEdge = 60;
constexpr std::uint32_t kVerifiedPerRange = 20;
// A translated tcpdump expression is a BPF function the verifier walks
// alone: at most every path of its classic BPF, without pruning, each
// classic instruction at most this many eBPF ones.
constexpr std::uint64_t kVerifiedPerClassicInsn = 8;

// Instructions visited over every path from the entry of a classic BPF
// program (forward jumps only: paths[j] is the number of paths reaching j).
std::uint64_t classic_path_insns(const std::vector<std::array<std::uint32_t, 4>>& insns) {
  constexpr std::uint64_t kMost = std::uint64_t{1} << 40;
  std::vector<std::uint64_t> paths(insns.size() + 1, 0);
  if (!insns.empty()) paths[0] = 1;
  std::uint64_t total = 0;
  auto reach = [&](std::size_t j, std::uint64_t n) {
    if (j < paths.size()) paths[j] = std::min(kMost, paths[j] + n);
  };
  for (std::size_t i = 0; i < insns.size(); ++i) {
    const std::uint64_t n = paths[i];
    if (n == 0) continue;
    total = std::min(kMost, total + n);
    const auto [code, jt, jf, k] = insns[i];
    if ((code & 0x07) == 0x06) continue;  // ret
    if ((code & 0x07) == 0x05) {          // jmp
      if ((code & 0xF0) == 0x00) {        // ja
        reach(i + 1 + k, n);
      } else {
        reach(i + 1 + jt, n);
        if (jf != jt) reach(i + 1 + jf, n);
      }
      continue;
    }
    reach(i + 1, n);
  }
  return total;
}

}  // namespace

std::uint32_t kernel_verified(const compiler::RequestDag& dag, std::size_t node) {
  const auto& g = dag.graph;
  const auto& n = g[node];
  std::uint64_t work = n.filter->verifier.each;
  for (auto [e, end] = boost::in_edges(node, g); e != end; ++e)
    work += kVerifiedPerEdge + kVerifiedPerRange * g[*e].select.ranges.size();
  if (n.translation) work += kVerifiedPerClassicInsn * classic_path_insns(n.translation->insns);
  // count, by=class: its table's lookup and insert (srl_class_count).
  if (const auto by = n.options.find("by"); by != n.options.end())
    if (const auto* s = std::get_if<std::string>(&by->second); s != nullptr && *s == "class")
      work += 300;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(work, UINT32_MAX));
}

std::uint32_t program_verified(const compiler::RequestDag& dag,
                               const std::vector<bool>& in_kernel) {
  std::set<const filters::FilterSpec*> filters;
  std::uint32_t nodes = 0;
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    if (in_kernel.empty() || in_kernel[v]) {
      filters.insert(dag.graph[v].filter);
      nodes += kernel_verified(dag, v);
    }
  return program_verified_fixed(filters) + nodes;
}

std::uint32_t program_verified_fixed(const std::set<const filters::FilterSpec*>& filters) {
  std::uint64_t work = kVerifiedBase + kVerifiedExits;
  for (const auto* f : filters)
    work += f->verifier.first;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(work, UINT32_MAX));
}

Evaluation evaluate(const Problem& p, const Assignment& a) {
  Evaluation ev;
  const std::size_t S = p.S();
  ev.load.assign(S, 0);
  ev.insns.assign(S, 0);
  ev.functions.assign(S, 0);
  ev.exits.assign(S, 0);
  ev.verified = p.program_verified;
  ev.verified.resize(p.programs.size(), 0);
  auto fail = [&](std::size_t node, std::string why) {
    if (ev.feasible) {
      ev.feasible = false;
      ev.violation = std::move(why);
      ev.violating_node = node;
    }
  };
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    const auto& n = p.nodes[v];
    const std::size_t s = a[v];
    double cost = n.cost[s];
    if (cost == kNotAllowed) {
      fail(v, node_name(n) + " cannot run in " + p.spaces[s].id + ": " + n.excluded[s]);
      // Still count what it would cost, so that a heuristic's plan has a figure.
      if (!implemented(*n.spec, p.spaces[s].kind)) continue;
      cost = n.rate * n.per_block[s];
    }
    ev.total_cost += cost;
    add_load(p, ev.load, s, cost);
    if (p.spaces[s].kind != Kind::user) {
      ev.insns[s] += n.insns;
      ev.functions[s] += n.functions;
      for (std::size_t k = 0; k < p.programs.size(); ++k)
        if (std::find(p.programs[k].begin(), p.programs[k].end(), s) != p.programs[k].end())
          ev.verified[k] += n.verified;
    }
  }
  // Every userspace node runs on the engine's workers: at most one single
  // core (solve_glpk says why).
  std::size_t first_core = SIZE_MAX;
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    const std::size_t s = a[v];
    if (p.spaces[s].kind != Kind::user || p.replica_set(s)) continue;
    if (first_core == SIZE_MAX) {
      first_core = s;
    } else if (s != first_core) {
      fail(v, "userspace nodes on " + p.spaces[first_core].id + " and " + p.spaces[s].id +
                  ": the engine runs every userspace node on the same workers (one core, or "
                  "a replica set's cores)");
      break;
    }
  }
  std::map<std::pair<std::size_t, std::size_t>, double> chan_rate;
  const auto payer = p.crossing_payers(a);
  for (std::size_t i = 0; i < p.edges.size(); ++i) {
    const auto& e = p.edges[i];
    const std::size_t s = a[e.from], t = a[e.to];
    if (s == t) continue;
    if (p.spaces[s].kind != Kind::user && p.spaces[t].kind == Kind::user) ++ev.exits[s];
    const PairChannel& c = p.pair(e, s, t);
    if (!c.allowed) {
      fail(e.to, "no channel from " + p.spaces[s].id + " (" + p.nodes[e.from].id + ") to " +
                     p.spaces[t].id + " (" + p.nodes[e.to].id + ")" +
                     (p.spaces[s].kind > p.spaces[t].kind ? ": data cannot flow down" : ""));
      continue;
    }
    // The bundle's blocks already cross: the other exits ride on that copy.
    if (payer[i] != i) continue;
    const double cost = p.edge_cost(e, s, t);
    ev.total_cost += cost;
    add_load(p, ev.load, t, cost);  // the reader pays for the crossing
    ev.memory_traffic += e.rate * e.bytes * c.mem_bytes_per_byte;
    chan_rate[{s, t}] += e.rate;
  }
  for (std::size_t s = 0; s < S; ++s)
    ev.max_utilisation = std::max(ev.max_utilisation, ev.load[s] / p.spaces[s].capacity_ns_per_s);
  if (p.objective != Objective::throughput)
    for (std::size_t s = 0; s < S; ++s)
      if (ev.load[s] > p.spaces[s].capacity_ns_per_s * (1 + 1e-9))
        fail(SIZE_MAX, "capacity: " + p.spaces[s].id + " would need " + cpu(ev.load[s]) +
                           ", it has " + cpu(p.spaces[s].capacity_ns_per_s));
  for (std::size_t s = 0; s < S; ++s)
    if (p.spaces[s].kind != Kind::user && p.spaces[s].ebpf_insn_limit > 0 &&
        ev.insns[s] > p.spaces[s].ebpf_insn_limit)
      fail(SIZE_MAX, "limit: " + p.spaces[s].id + " would need " + std::to_string(ev.insns[s]) +
                         " eBPF instructions, its limit is " +
                         std::to_string(p.spaces[s].ebpf_insn_limit));
  for (std::size_t k = 0; k < p.programs.size(); ++k) {
    const auto& spaces = p.programs[k];
    std::uint32_t functions = 0, exits = 0;
    for (std::size_t s : spaces)
      functions += ev.functions[s], exits += ev.exits[s];
    const auto fl = p.program_limit(k, &Space::ebpf_function_limit);
    if (fl > 0 && functions > fl)
      fail(SIZE_MAX, "limit: " + program_where(p, spaces, ev.functions) + " would hold " +
                         std::to_string(functions) +
                         " tcpdump expressions; a kernel program holds at most " +
                         std::to_string(fl) + " (each is a BPF function)");
    const auto xl = p.program_limit(k, &Space::ebpf_exit_limit);
    if (xl > 0 && exits > xl)
      fail(SIZE_MAX, "limit: " + program_where(p, spaces, ev.exits) + " would send " +
                         std::to_string(exits) +
                         " edges up to userspace; a kernel program has at most " +
                         std::to_string(xl) + " exits");
    const auto vl = p.program_limit(k, &Space::verifier_limit);
    if (vl > 0 && ev.verified[k] > vl) {
      std::string hooks;
      for (std::size_t s : spaces)
        hooks += (hooks.empty() ? "" : ", ") + p.spaces[s].id;
      fail(SIZE_MAX, "limit: the kernel program on " + hooks + " could take up to " +
                         std::to_string(ev.verified[k]) +
                         " of the verifier's instructions (a bound: " +
                         std::to_string(k < p.program_verified.size() ? p.program_verified[k] : 0) +
                         " whatever it holds, the rest its kernel filters'); it may take " +
                         std::to_string(vl));
    }
  }
  if (p.memory_bandwidth > 0 && ev.memory_traffic > p.memory_bandwidth * (1 + 1e-9))
    fail(SIZE_MAX, "memory: copies would move " + fmt(ev.memory_traffic / 1e9) +
                       " GB/s, the memory bandwidth is " + fmt(p.memory_bandwidth / 1e9) + " GB/s");
  for (const auto& [st, rate] : chan_rate) {
    const PairChannel& c = p.pair(st.first, st.second);
    if (c.capacity > 0 && rate > c.capacity * (1 + 1e-9))
      fail(SIZE_MAX, "capacity: channel " + p.spaces[st.first].id + " -> " +
                         p.spaces[st.second].id + " would carry " + fmt(rate) +
                         " blocks/s, it takes " + fmt(c.capacity));
  }
  const double share = ev.total_cost / p.total_capacity();
  switch (p.objective) {
    case Objective::cost:
      ev.objective = ev.total_cost;
      break;
    case Objective::throughput:
      ev.objective = ev.max_utilisation + 1e-6 * share;
      break;
    case Objective::mix:
      ev.objective = p.mix_weight * share + (1 - p.mix_weight) * ev.max_utilisation;
      break;
  }
  return ev;
}

MergedInputs merge_inputs(const std::vector<RequestInput>& requests) {
  std::vector<const compiler::RequestDag*> dags;
  std::vector<std::string> labels;
  MergedInputs in;
  for (const auto& r : requests) {
    dags.push_back(r.dag);
    labels.push_back(r.label);
    in.sources.push_back(r.source);
  }
  in.merged = compiler::merge_requests(dags, labels);
  return in;
}

Problem build_problem(const std::vector<RequestInput>& requests, const SystemModel& model,
                      const PlanOptions& options) {
  const MergedInputs in = merge_inputs(requests);
  return build_problem(in.merged, in.sources, model, options);
}

namespace {

// The problem's settings and the model's spaces, before replica sets.
Problem problem_base(const SystemModel& model, const PlanOptions& opt) {
  Problem p;
  p.spaces = model.spaces;
  p.objective = opt.objective;
  p.mix_weight = opt.mix_weight;
  p.input_rate = opt.input_rate_pps;
  p.memory_bandwidth = model.host.memory_bandwidth_bytes_per_s;
  if (p.S() == 0) throw PlanError("", "no-implementation", "the system model has no spaces");
  return p;
}

// Channels between each ordered pair of the model's spaces, [s * S0 + t]:
// the cheapest for the mean block, among those that copy (`copy`) and among
// all (`take`, for edges whose blocks are taken).
struct RealPairs {
  std::vector<PairChannel> copy, take;
};

RealPairs real_pairs(const Problem& p, const SystemModel& model, const PlanOptions& opt) {
  const std::size_t S0 = p.S();
  RealPairs out{std::vector<PairChannel>(S0 * S0), std::vector<PairChannel>(S0 * S0)};
  for (const bool copy : {true, false})
    for (std::size_t s = 0; s < S0; ++s) {
      auto& table = copy ? out.copy : out.take;
      table[s * S0 + s] = PairChannel{.allowed = true};
      for (std::size_t t = 0; t < S0; ++t) {
        if (s == t) continue;
        const Channel* c = model.best_channel(p.spaces[s].id, p.spaces[t].id, opt.block_bytes,
                                              copy ? Carries::copy : Carries::take);
        if (!c) continue;
        table[s * S0 + t] = {.allowed = true,
                             .kind = c->kind,
                             .ns_per_block = c->ns_per_block,
                             .ns_per_byte = c->ns_per_byte,
                             .mem_bytes_per_byte = c->mem_bytes_per_byte,
                             .capacity = c->capacity_blocks_per_s,
                             .zero_copy = c->zero_copy,
                             .via = c->via};
      }
    }
  return out;
}

// Replica sets over interchangeable cores (same capacity, same channels
// to and from everything): the first k cores for k = 2, 4, 8.
void add_replica_sets(Problem& p, const std::vector<PairChannel>& real, const PlanOptions& opt) {
  const std::size_t S0 = p.S();
  p.members.assign(S0, {});
  std::vector<std::size_t> cores;
  for (std::size_t s = 0; s < S0; ++s)
    if (p.spaces[s].kind == Kind::user) cores.push_back(s);
  auto same = [](const PairChannel& a, const PairChannel& b) {
    return a.allowed == b.allowed && a.kind == b.kind && a.ns_per_block == b.ns_per_block &&
           a.ns_per_byte == b.ns_per_byte && a.mem_bytes_per_byte == b.mem_bytes_per_byte &&
           a.capacity == b.capacity && a.zero_copy == b.zero_copy;
  };
  bool interchangeable = opt.parallel && cores.size() >= 2;
  for (std::size_t a = 1; interchangeable && a < cores.size(); ++a) {
    const std::size_t c0 = cores[0], c = cores[a];
    interchangeable =
        p.spaces[c].capacity_ns_per_s == p.spaces[c0].capacity_ns_per_s &&
        same(real[c0 * S0 + cores[1]], real[c * S0 + (c == cores[1] ? c0 : cores[1])]);
    for (std::size_t s = 0; interchangeable && s < S0; ++s)
      if (p.spaces[s].kind != Kind::user)
        interchangeable = same(real[s * S0 + c0], real[s * S0 + c]);
  }
  if (interchangeable)
    for (std::size_t k = 2; k <= std::min<std::size_t>(cores.size(), opt.max_replicas); k *= 2) {
      Space r;
      r.kind = Kind::user;
      r.id = p.spaces[cores[0]].id + "-" + p.spaces[cores[k - 1]].id.substr(5);
      r.mode = std::to_string(k) + " replicas";
      r.capacity_ns_per_s = static_cast<double>(k) * p.spaces[cores[0]].capacity_ns_per_s;
      p.spaces.push_back(r);
      p.members.emplace_back(cores.begin(), cores.begin() + static_cast<std::ptrdiff_t>(k));
    }
}

// One kernel program holds every XDP and TC hook (Problem::programs).
void add_kernel_programs(Problem& p) {
  for (std::size_t s = 0; s < p.S(); ++s)
    if (p.spaces[s].kind == Kind::xdp || p.spaces[s].kind == Kind::tc) {
      if (p.programs.empty()) p.programs.emplace_back();
      p.programs[0].push_back(s);
    }
}

// A flow hash per block where a stream is split over replicas.
constexpr double kSplitNs = 10;

// The channels of every pair of spaces, replica sets included, from those
// of the model's `S0` spaces.
std::vector<PairChannel> with_replica_sets(const Problem& p, std::size_t S0,
                                           const std::vector<PairChannel>& base) {
  const std::size_t S = p.S();
  std::vector<PairChannel> pairs(S * S);
  for (std::size_t s = 0; s < S; ++s) {
    pairs[s * S + s] = PairChannel{.allowed = true};
    for (std::size_t t = 0; t < S; ++t) {
      if (s == t) continue;
      if (s < S0 && t < S0) {
        pairs[s * S + t] = base[s * S0 + t];
        continue;
      }
      // Through a replica set: the channel its first core would use (a core
      // of the set itself stands for another one), plus the split.
      const auto other = [&](std::size_t set, std::size_t not_this) {
        return p.members[set][0] != not_this ? p.members[set][0] : p.members[set][1];
      };
      std::size_t rs = s, rt = t;
      if (s >= S0 && t < S0) rs = other(s, t);
      if (s < S0 && t >= S0) rt = other(t, s);
      if (s >= S0 && t >= S0) rs = p.members[s][0], rt = other(t, rs);
      PairChannel c = base[rs * S0 + rt];
      if (!c.allowed) continue;
      if (t >= S0) c.ns_per_block += kSplitNs;
      pairs[s * S + t] = c;
    }
  }
  return pairs;
}

// An edge of the merged DAG, before its rate is known.
struct PendingEdge {
  std::size_t from, to;
  compiler::EdgeSelector sel;
  bool take = false;
  std::size_t consumer = SIZE_MAX;
};

// The device a merged rx vertex receives from; an rx without one binds to
// the only device.
std::string rx_device(const compiler::DagNode& dn, const std::string& id, const std::string& where,
                      const SystemModel& model) {
  const auto devices = model.devices();
  std::string dev = option_string(dn, "dev");
  if (dev.empty()) {
    if (devices.size() != 1) {
      std::string list;
      for (const auto& d : devices)
        list += (list.empty() ? "" : ", ") + d;
      throw PlanError(
          id, "device",
          "cannot place " + id + " (rx)" + (where.empty() ? "" : " at " + where) +
              ": it names no device and the system model has " +
              (devices.empty() ? "none" : std::to_string(devices.size()) + " (" + list + ")") +
              "; give one with --dev or rx dev=");
    }
    return devices.front();
  }
  if (std::find(devices.begin(), devices.end(), dev) == devices.end())
    throw PlanError(id, "device",
                    "cannot place " + id + " (rx, dev=" + dev + ")" +
                        (where.empty() ? "" : " at " + where) + ": device " + dev +
                        " is not in the system model" +
                        (model.origin.empty() ? "" : " (" + model.origin + ")"));
  return dev;
}

// Why node `pn` (of DAG node `dn`, receiving from `dev` if a source)
// cannot run in space s, or "" if it can as far as the node alone goes.
std::string exclusion(const Problem& p, std::size_t s, const compiler::DagNode& dn,
                      const ProblemNode& pn, const std::string& dev) {
  const filters::FilterSpec& f = *dn.filter;
  const Space& sp = p.spaces[s];
  const auto ik = impl_kind(sp.kind);
  const auto back = dn.translation ? dn.translation->backward_jump() : std::nullopt;
  std::string why;
  if (!implemented(f, sp.kind)) {
    why = "no-implementation: " + std::string(f.name) + " has no " +
          std::string(filters::to_string(ik)) + " implementation";
  } else if (back && sp.kind != Kind::user) {
    why = "capability: the classic BPF of \"" + dn.translation->source +
          "\" jumps back (instruction " + std::to_string(*back) +
          ": a loop, as libpcap emits for protochain), which only "
          "userspace runs";
  } else if (dn.space && *dn.space != to_string(sp.kind)) {
    why = "pinned: space=" + *dn.space;
  } else if (f.kernel_tc_only && sp.kind == Kind::xdp) {
    why = "capability: " + std::string(f.name) +
          " runs in the kernel at TC only (XDP cannot clone a frame for a "
          "mirror, and a native XDP redirect reaches only devices that take "
          "XDP frames)";
  } else if (!dev.empty() && sp.kind != Kind::user && sp.device != dev) {
    why = "device: it receives from " + dev + ", this space is on " + sp.device;
  } else if (!sp.capabilities.empty()) {
    std::string missing;
    for (const auto& c : required_caps(f, sp.kind))
      if (!sp.has(c)) missing += (missing.empty() ? "" : ", ") + c;
    if (!missing.empty()) why = "capability: the space lacks " + missing;
  }
  if (why.empty() && p.replica_set(s)) {
    if (f.role == Role::source)
      why = "parallel: a source is not replicated";
    else if (f.state != State::none && f.state != State::per_flow)
      why = "parallel: " + std::string(f.name) + " keeps " +
            std::string(filters::to_string(f.state)) + " state; it runs on one core";
    else if (f.name == "pcap" || f.name == "fifo")
      why = "parallel: " + std::string(f.name) + " writes one output stream";
  }
  if (why.empty() && sp.kind != Kind::user && sp.ebpf_insn_limit > 0 &&
      pn.insns > sp.ebpf_insn_limit)
    why = "limit: " + std::to_string(pn.insns) +
          " eBPF instructions alone exceed the space's limit of " +
          std::to_string(sp.ebpf_insn_limit);
  return why;
}

// Merged vertex v as a node, with every space it cannot run in and why.
ProblemNode problem_node(const Problem& p, const compiler::MergedRequests& merged,
                         std::span<const compiler::SourceFile* const> sources,
                         const SystemModel& model, const PlanOptions& opt, compiler::Vertex v) {
  const compiler::DagNode& dn = merged.dag.graph[v];
  const filters::FilterSpec& f = *dn.filter;
  // A merged vertex is its first member's node, with that one's position.
  const std::string& id = merged.members[v].front();
  const std::size_t r = merged.member_nodes[v].front().request;
  std::string where;
  if (dn.loc.valid())
    where = (r < sources.size() && sources[r] ? sources[r]->name() : merged.files[r]) + ":" +
            std::to_string(dn.loc.line) + ":" + std::to_string(dn.loc.col);
  // Device of a source.
  const std::string dev = f.name == "rx" ? rx_device(dn, id, where, model) : std::string();
  ProblemNode pn;
  pn.id = id;
  pn.name = merged.member_names[v].front();
  pn.members = merged.members[v];
  pn.spec = &f;
  pn.where = where;
  pn.pin = dn.space;
  pn.insns = kernel_insns(dn);
  pn.verified = kernel_verified(merged.dag, v);
  // A translated tcpdump expression is a BPF function of its own.
  pn.functions = f.name == "bpf" && dn.translation ? 1 : 0;
  pn.bytes = opt.block_bytes;
  pn.excluded.assign(p.S(), {});
  for (std::size_t s = 0; s < p.S(); ++s)
    pn.excluded[s] = exclusion(p, s, dn, pn, dev);
  pn.consumes = filters::consumes_block(f, dn.options);
  return pn;
}

// Every node of the requests has counters in a kernel program, wherever
// it runs: too many fit no hook at all.
void check_kernel_node_limit(const Problem& p) {
  if (p.nodes.size() > kKernelNodeLimit && !p.programs.empty())
    throw PlanError("", "limit",
                    "cannot place the requests: limit: the requests hold " +
                        std::to_string(p.nodes.size()) +
                        " filters (shared prefixes counted once); one hook's program holds at "
                        "most " +
                        std::to_string(kKernelNodeLimit) +
                        ", kernel and userspace filters alike (each has its counters there); "
                        "plan fewer requests together");
}

// The verifier's work each program takes whatever it holds: the
// `first` of every filter that may run in it.
void set_fixed_verifier_work(Problem& p) {
  std::set<const filters::FilterSpec*> kernel_filters;
  for (const auto& pn : p.nodes)
    if (implemented(*pn.spec, Kind::xdp)) kernel_filters.insert(pn.spec);
  p.program_verified.assign(p.programs.size(), program_verified_fixed(kernel_filters));
}

// Copy or take (filters/delivery.h), by the nodes below each edge.
void set_delivery(Problem& p, std::vector<PendingEdge>& pending) {
  const std::size_t S = p.S();
  std::vector<std::vector<std::size_t>> children(p.nodes.size());
  std::vector<bool> consumes(p.nodes.size());
  for (const auto& pe : pending)
    children[pe.from].push_back(pe.to);
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    consumes[v] = p.nodes[v].consumes;
  const auto consumer = filters::consumers_below(children, consumes);
  for (std::size_t i = 0; i < pending.size(); ++i)
    if (consumer[pending[i].to] != filters::kNone) {
      pending[i].take = true;
      pending[i].consumer = consumer[pending[i].to];
    }
  // What no datapath can do is not in the model: a node with a consumer
  // at or below it takes its blocks when it runs in userspace, so it
  // stays in the kernel when a pass below it must hand blocks back to the
  // stack, or when it is the device's rx (a userspace socket gets copies).
  std::vector<bool> is_pass(p.nodes.size());
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    is_pass[v] = p.nodes[v].spec->name == "pass";
  const auto pass = filters::consumers_below(children, is_pass);
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    auto& n = p.nodes[v];
    if (consumer[v] == filters::kNone) continue;
    std::string why;
    const std::string consumer_name =
        p.nodes[consumer[v]].id + " (" + std::string(p.nodes[consumer[v]].spec->name) + ")";
    if (n.spec->role == Role::source)
      why = "delivery: in userspace its socket only gets copies, and " + consumer_name +
            " below it takes blocks from the stack; let rx run in the kernel";
    else if (pass[v] != filters::kNone)
      why = "delivery: in userspace it would take blocks from the stack (" + consumer_name +
            " consumes them below it), and a userspace pass cannot hand them back to " +
            p.nodes[pass[v]].id + " (pass)";
    if (why.empty()) continue;
    for (std::size_t s = 0; s < S; ++s)
      if (p.spaces[s].kind == Kind::user && n.excluded[s].empty()) n.excluded[s] = why;
  }
}

// Node n's cost in every space at its rate, kNotAllowed where it is
// excluded or alone overloads the space.
void set_costs(const Problem& p, ProblemNode& n, const PlanOptions& opt) {
  const std::size_t S = p.S();
  n.cost.assign(S, kNotAllowed);
  n.per_block.assign(S, 0);
  for (std::size_t s = 0; s < S; ++s) {
    const auto ik = impl_kind(p.spaces[s].kind);
    const auto catalog_cost = impl_cost(*n.spec, ik);
    if (!catalog_cost) continue;
    const filters::Cost* c = opt.profile ? opt.profile->filter_cost(n.spec->name, ik) : nullptr;
    if (!c) c = &*catalog_cost;
    n.per_block[s] = c->ns_per_block + c->ns_per_byte * n.bytes;
    // The hook's own cost, for every block the device receives: paid
    // where the device's rx is (one rx for all requests sharing it).
    if (n.spec->name == "rx")
      n.per_block[s] += p.spaces[s].hook_ns_per_block + p.spaces[s].hook_ns_per_byte * n.bytes;
    if (!n.excluded[s].empty()) continue;
    n.cost[s] = n.rate * n.per_block[s];
    if (opt.objective != Objective::throughput && n.cost[s] > p.spaces[s].capacity_ns_per_s) {
      n.excluded[s] = "capacity: alone it needs " + cpu(n.cost[s]) + " at " + fmt(n.rate) +
                      " blocks/s, the space has " + cpu(p.spaces[s].capacity_ns_per_s);
      n.cost[s] = kNotAllowed;
    }
  }
}

// A node no space can run is an error, of the kind of its last reason
// in this order.
void require_some_space(const Problem& p, const ProblemNode& n) {
  std::string reasons;
  bool any = false;
  for (std::size_t s = 0; s < p.S(); ++s) {
    if (n.cost[s] != kNotAllowed)
      any = true;
    else if (reasons.find(n.excluded[s]) == std::string::npos)
      reasons += (reasons.empty() ? "" : "; ") + n.excluded[s];
  }
  if (any) return;
  std::string kind = "no-implementation";
  for (const char* k : {"capacity", "limit", "capability", "pinned", "device", "delivery"})
    if (reasons.find(std::string(k) + ":") != std::string::npos) kind = k;
  throw PlanError(n.id, kind,
                  "cannot place " + node_name(n) + (n.where.empty() ? "" : " at " + n.where) +
                      ": no space of the system model can run it (" + reasons + ")");
}

// Rates, in the DAG's numbering (inputs first): each node's from the edges
// into it, then its costs. The edges, bundled by (from, select, take).
// Returns each node's incoming edges.
std::vector<std::vector<std::size_t>> add_edges_and_costs(Problem& p,
                                                          const std::vector<PendingEdge>& pending,
                                                          const PlanOptions& opt) {
  std::vector<std::vector<std::size_t>> in_edges(p.nodes.size());
  for (std::size_t i = 0; i < pending.size(); ++i)
    in_edges[pending[i].to].push_back(i);
  p.edges.resize(pending.size());
  std::map<std::tuple<std::size_t, std::string, bool>, std::size_t> bundles;
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    auto& n = p.nodes[v];
    if (n.spec->role == Role::source) n.rate = opt.input_rate_pps;
    for (std::size_t ei : in_edges[v]) {
      const auto& pe = pending[ei];
      const double rate = p.nodes[pe.from].rate * edge_share(pe.sel, *p.nodes[pe.from].spec);
      p.edges[ei] = {pe.from, pe.to, rate, opt.block_bytes, pe.sel.to_srl(), pe.take, pe.consumer};
      const auto key = std::make_tuple(pe.from, p.edges[ei].select, pe.take);
      p.edges[ei].bundle = bundles.emplace(key, bundles.size()).first->second;
      n.rate += rate;
    }
    set_costs(p, n, opt);
    require_some_space(p, n);
  }
  return in_edges;
}

// Why space s is no candidate for node v given its neighbours' candidates,
// or "" while every input can reach it and it can reach every output.
std::string unreachable(const Problem& p, const std::vector<std::vector<std::size_t>>& in_edges,
                        const std::vector<std::vector<std::size_t>>& out_edges, std::size_t v,
                        std::size_t s) {
  const std::size_t S = p.S();
  auto dom = [&](std::size_t u) {
    std::vector<std::size_t> d;
    for (std::size_t t = 0; t < S; ++t)
      if (p.nodes[u].cost[t] != kNotAllowed) d.push_back(t);
    return d;
  };
  // Whether a candidate space of node u has a channel into s (`into`) or from s.
  auto linked = [&](std::size_t u, bool into) {
    for (std::size_t t = 0; t < S; ++t)
      if (p.nodes[u].cost[t] != kNotAllowed && (into ? p.pair(t, s) : p.pair(s, t)).allowed)
        return true;
    return false;
  };
  for (std::size_t ei : in_edges[v]) {
    const std::size_t u = p.edges[ei].from;
    if (!linked(u, true))
      return "unreachable: its input " + node_name(p.nodes[u]) + " can run only in " +
             space_list(p, dom(u)) + ", and no channel leads from there to " + p.spaces[s].id;
  }
  for (std::size_t ei : out_edges[v]) {
    const std::size_t w = p.edges[ei].to;
    if (!linked(w, false))
      return "unreachable: its output " + node_name(p.nodes[w]) + " can run only in " +
             space_list(p, dom(w)) + ", and no channel leads there from " + p.spaces[s].id +
             " (data moves only up: offload -> xdp -> tc -> user)";
  }
  return {};
}

// Arc consistency along edges: a space stays a candidate only if every
// input can reach it and it can reach every output.
void make_arc_consistent(Problem& p, const std::vector<std::vector<std::size_t>>& in_edges) {
  const std::size_t S = p.S();
  std::vector<std::vector<std::size_t>> out_edges(p.nodes.size());
  for (std::size_t i = 0; i < p.edges.size(); ++i)
    out_edges[p.edges[i].from].push_back(i);
  bool changed = true;
  for (std::size_t round = 0; changed && round < 4 * p.nodes.size() + 4; ++round) {
    changed = false;
    for (std::size_t v = 0; v < p.nodes.size(); ++v) {
      auto& n = p.nodes[v];
      for (std::size_t s = 0; s < S; ++s) {
        if (n.cost[s] == kNotAllowed) continue;
        const std::string why = unreachable(p, in_edges, out_edges, v, s);
        if (why.empty()) continue;
        n.cost[s] = kNotAllowed;
        n.excluded[s] = why;
        changed = true;
        if (std::none_of(n.cost.begin(), n.cost.end(), [](double c) { return c != kNotAllowed; })) {
          throw PlanError(n.id, "unreachable",
                          "cannot place " + node_name(n) +
                              (n.where.empty() ? "" : " at " + n.where) +
                              ": the last space left for it, " + p.spaces[s].id + ", is " + why);
        }
      }
    }
  }
}

}  // namespace

Problem build_problem(const compiler::MergedRequests& merged,
                      std::span<const compiler::SourceFile* const> sources,
                      const SystemModel& model, const PlanOptions& opt) {
  Problem p = problem_base(model, opt);
  const std::size_t S0 = p.S();
  const RealPairs real = real_pairs(p, model, opt);
  add_replica_sets(p, real.copy, opt);
  add_kernel_programs(p);
  p.pairs = with_replica_sets(p, S0, real.copy);
  p.take_pairs = with_replica_sets(p, S0, real.take);

  // One node per merged vertex, in the DAG's numbering: inputs first.
  std::vector<PendingEdge> pending;
  const auto& g = merged.dag.graph;
  for (compiler::Vertex v = 0; v < merged.dag.node_count(); ++v) {
    p.nodes.push_back(problem_node(p, merged, sources, model, opt, v));
    for (auto [ei, ee] = boost::in_edges(v, g); ei != ee; ++ei)
      pending.push_back({boost::source(*ei, g), v, g[*ei].select, false, SIZE_MAX});
  }
  check_kernel_node_limit(p);
  set_fixed_verifier_work(p);
  set_delivery(p, pending);
  const auto in_edges = add_edges_and_costs(p, pending, opt);
  make_arc_consistent(p, in_edges);
  return p;
}

namespace {

std::optional<std::size_t> first_user(const Problem& p) {
  for (std::size_t s = 0; s < p.S(); ++s)
    if (p.spaces[s].kind == Kind::user) return s;
  return std::nullopt;
}

std::vector<std::vector<std::size_t>> inputs_of(const Problem& p) {
  std::vector<std::vector<std::size_t>> in(p.nodes.size());
  for (const auto& e : p.edges)
    in[e.to].push_back(e.from);
  return in;
}

}  // namespace

std::optional<Assignment> baseline_push_down(const Problem& p, std::string* why_not) {
  const auto in = inputs_of(p);
  Assignment a(p.nodes.size(), 0);
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    const auto& n = p.nodes[v];
    std::optional<std::size_t> best;
    for (std::size_t s = 0; s < p.S(); ++s) {
      if (!n.excluded[s].empty() && n.excluded[s].rfind("unreachable", 0) != 0 &&
          n.excluded[s].rfind("capacity", 0) != 0)
        continue;  // no implementation, pin, device, capability, limit
      if (!implemented(*n.spec, p.spaces[s].kind)) continue;
      bool reachable = true;
      for (std::size_t u : in[v])
        reachable = reachable && p.pair(a[u], s).allowed;
      if (!reachable) continue;
      // Lowest kind first; among equals (cores) stay with an input.
      const bool with_input =
          std::any_of(in[v].begin(), in[v].end(), [&](std::size_t u) { return a[u] == s; });
      if (!best || p.spaces[s].kind < p.spaces[*best].kind ||
          (p.spaces[s].kind == p.spaces[*best].kind && with_input &&
           std::none_of(in[v].begin(), in[v].end(), [&](std::size_t u) { return a[u] == *best; })))
        best = s;
    }
    if (!best) {
      if (why_not) *why_not = "no space above the inputs of " + node_name(n) + " runs it";
      return std::nullopt;
    }
    a[v] = *best;
  }
  return a;
}

std::optional<Assignment> baseline_all_user(const Problem& p, std::string* why_not) {
  auto u = first_user(p);
  if (!u) {
    if (why_not) *why_not = "the system model has no user space";
    return std::nullopt;
  }
  for (const auto& n : p.nodes)
    if (!implemented(*n.spec, Kind::user) || (n.pin && *n.pin != "user")) {
      if (why_not)
        *why_not = node_name(n) + (n.pin && *n.pin != "user" ? " is pinned elsewhere"
                                                             : " has no userspace implementation");
      return std::nullopt;
    }
  return Assignment(p.nodes.size(), *u);
}

std::optional<Assignment> solve_exhaustive(const Problem& p) {
  std::vector<std::vector<std::size_t>> dom(p.nodes.size());
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    for (std::size_t s = 0; s < p.S(); ++s)
      if (p.nodes[v].cost[s] != kNotAllowed) dom[v].push_back(s);
  std::vector<std::size_t> idx(p.nodes.size(), 0);
  Assignment a(p.nodes.size()), best;
  double best_obj = 0;
  for (;;) {
    for (std::size_t v = 0; v < a.size(); ++v)
      a[v] = dom[v][idx[v]];
    const Evaluation ev = evaluate(p, a);
    if (ev.feasible && (best.empty() || ev.objective < best_obj)) best = a, best_obj = ev.objective;
    std::size_t v = 0;
    while (v < idx.size() && ++idx[v] == dom[v].size())
      idx[v++] = 0;
    if (v == idx.size()) break;
  }
  if (best.empty()) return std::nullopt;
  return best;
}

}  // namespace srl::optimizer
