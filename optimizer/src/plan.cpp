// plan(): solve, compare with the baselines, explain; and the plan's JSON,
// text and DOT forms.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "srl/optimizer/optimizer.h"

namespace srl::optimizer {
namespace {

std::string fmt(double v, int prec = 3) {
  std::ostringstream o;
  if (v != 0 && std::fabs(v) < 1e-3) {
    o.precision(2);
    o << v;
    return o.str();
  }
  if (std::fabs(v) >= 1000 || v == std::floor(v)) {
    o.precision(0);
    o << std::fixed << v;
  } else {
    o.precision(prec);
    o << v;
  }
  return o.str();
}

// ns of CPU per second as a share of one CPU.
std::string cpu(double ns_per_s) {
  return fmt(ns_per_s / 1e7) + "% CPU";
}

std::string rate(double pps) {
  if (pps >= 1e6) return fmt(pps / 1e6) + " Mpps";
  if (pps >= 1e3) return fmt(pps / 1e3) + " kpps";
  return fmt(pps) + " pps";
}

std::string delta_text(const Problem& p, double d) {
  const std::string sign = d >= 0 ? "+" : "-";
  switch (p.objective) {
    case Objective::cost:
      return sign + cpu(std::fabs(d));
    case Objective::throughput:
      return sign + fmt(std::fabs(d) * 100) + " points of peak utilisation";
    case Objective::mix:
      break;
  }
  return sign + fmt(std::fabs(d), 4) + " in the mixed objective";
}

std::string implementation(const Space& s) {
  switch (s.kind) {
    case Kind::xdp:
      return "ebpf, inlined in the XDP program on " + s.device + " (" +
             (s.mode.empty() ? "native" : s.mode) + ")";
    case Kind::tc:
      return "ebpf, inlined in the tc ingress program on " + s.device;
    case Kind::offload:
      return std::string(s.emulated ? "offload emulator" : "offload program") + " on " + s.device;
    case Kind::user:
      if (!s.mode.empty()) return "native, " + s.mode + " behind a flow-hash split";
      break;
  }
  return "native, run-to-completion loop" +
         (s.cpu ? " on CPU " + std::to_string(*s.cpu) : std::string());
}

std::string verdict_of(const std::string& reason) {
  const auto colon = reason.find(':');
  return colon == std::string::npos ? reason : reason.substr(0, colon);
}
std::string detail_of(const std::string& reason) {
  const auto colon = reason.find(':');
  return colon == std::string::npos ? reason : reason.substr(colon + 2);
}

// The verdict for a local move that breaks a constraint.
std::pair<std::string, std::string> classify(const std::string& violation) {
  if (violation.rfind("no channel", 0) == 0)
    return {"unreachable", violation + " (with its neighbours where they are)"};
  for (const char* k : {"capacity", "limit", "memory"})
    if (violation.rfind(k, 0) == 0) return {k, detail_of(violation)};
  if (violation.find(" cannot run in ") != std::string::npos) return {"unreachable", violation};
  return {"infeasible", violation};
}

}  // namespace

std::string_view to_string(Objective o) {
  switch (o) {
    case Objective::cost:
      return "cost";
    case Objective::throughput:
      return "throughput";
    case Objective::mix:
      break;
  }
  return "mix";
}

std::optional<Objective> objective_from_string(std::string_view s) {
  if (s == "cost") return Objective::cost;
  if (s == "throughput") return Objective::throughput;
  if (s == "mix") return Objective::mix;
  return std::nullopt;
}

Plan plan(const std::vector<RequestInput>& requests, const SystemModel& model,
          const PlanOptions& options) {
  const MergedInputs in = merge_inputs(requests);
  return plan(in.merged, in.sources, model, options);
}

namespace {

// The plan's objective and where its inputs come from, before anything is placed.
Plan plan_inputs(const SystemModel& m, const PlanOptions& opt) {
  Plan out;
  out.objective = opt.objective;
  out.mix_weight = opt.mix_weight;
  out.input_rate_pps = opt.input_rate_pps;
  out.block_bytes = opt.block_bytes;
  out.model_origin = m.origin;
  out.profile = opt.profile ? "profile of " + opt.profile->host + " (" + opt.profile->created + ")"
                            : "catalog defaults";
  out.notes = m.notes;
  return out;
}

// The heaviest node `r` puts in the space a broken constraint names (by
// instructions for a limit, else by cost): its id, and what the explanation
// adds about it. Both empty when the violation names no space that holds one.
struct LargestUser {
  std::string node, text;
};
LargestUser largest_user(const Problem& p, const Assignment& r, const std::string& violation,
                         bool limit) {
  LargestUser out;
  for (std::size_t s = 0; s < p.S(); ++s) {
    if (violation.find(" " + p.spaces[s].id + " ") == std::string::npos) continue;
    double heaviest = -1;
    std::optional<std::size_t> heaviest_v;
    for (std::size_t v = 0; v < p.nodes.size(); ++v)
      if (r[v] == s) {
        const double w = limit ? p.nodes[v].insns : p.nodes[v].cost[s];
        if (w > heaviest) heaviest = w, heaviest_v = v;
      }
    if (heaviest_v) {
      const auto& hn = p.nodes[*heaviest_v];
      out.node = hn.id;
      out.text = "; its largest user is " + hn.id + " (" + std::string(hn.spec->name) + ")" +
                 (hn.where.empty() ? "" : " at " + hn.where) + " with " +
                 (limit ? std::to_string(hn.insns) + " instructions" : cpu(hn.cost[s]));
    }
    break;
  }
  return out;
}

// The solver found no placement: find which constraint makes it
// infeasible (solve without limits and see what the cheapest placement
// breaks), and say so.
[[noreturn]] void throw_infeasible(const Problem& p, const std::string& solver_status,
                                   double time_limit_s) {
  Problem relaxed = p;
  relaxed.objective = Objective::cost;
  relaxed.memory_bandwidth = 0;
  for (auto& s : relaxed.spaces) {
    s.capacity_ns_per_s = 1e30, s.ebpf_insn_limit = 0;
    s.ebpf_function_limit = s.ebpf_exit_limit = s.verifier_limit = 0;
  }
  for (auto& c : relaxed.pairs)
    c.capacity = 0;
  std::string why = "the solver found no placement (" + solver_status + ")";
  std::string kind = "solver";
  std::string node;
  if (auto r = solve_milp(relaxed, nullptr, {}, time_limit_s)) {
    const Evaluation ev = evaluate(p, *r);
    if (!ev.feasible) {
      kind = verdict_of(ev.violation);
      why =
          "no placement satisfies every constraint; the cheapest placement breaks " + ev.violation;
      // A kernel program's expressions and exits count one each: no node
      // is heavier than another, but userspace may take some.
      const bool counted =
          kind == "limit" && ev.violation.find(" eBPF instructions") == std::string::npos;
      const bool user = std::any_of(p.spaces.begin(), p.spaces.end(),
                                    [](const Space& s) { return s.kind == Kind::user; });
      if (counted)
        why += user ? "; let userspace run some of them (space=user), or plan fewer requests "
                      "together"
                    : "; plan fewer requests together";
      // Name the heaviest node of the overloaded space.
      if (!counted) {
        const LargestUser largest = largest_user(p, *r, ev.violation, kind == "limit");
        node = largest.node;
        why += largest.text;
      }
      if (kind == "capacity" && p.objective != Objective::throughput)
        why += "; lower the input rate (--rate) or plan for throughput (--objective throughput)";
    }
  }
  throw PlanError(node, kind, "cannot place the request: " + why);
}

// Ties: move a node to a lower space of the model's order (offload, xdp,
// tc, cores by number) when that changes nothing, so that equal-cost plans
// push work down and read the same every time. Bounded to requests where a
// full evaluation per move stays cheap.
// A node moves together with what it feeds in the same space.
void push_ties_down(const Problem& p, Assignment& a) {
  const std::size_t S = p.S(), N = p.nodes.size();
  if (N * S > 4000) return;
  std::vector<std::vector<std::size_t>> outs(N);
  for (const auto& e : p.edges)
    outs[e.from].push_back(e.to);
  Evaluation cur = evaluate(p, a);
  for (int pass = 0; pass < 4; ++pass) {
    bool any = false;
    for (std::size_t v = 0; v < N; ++v) {
      bool moved = false;
      for (std::size_t t = 0; t < a[v] && !moved; ++t) {
        std::vector<std::size_t> group = {v};
        for (std::size_t i = 0; i < group.size(); ++i)
          for (std::size_t w : outs[group[i]])
            if (a[w] == a[v] && std::find(group.begin(), group.end(), w) == group.end())
              group.push_back(w);
        // The node alone first, then with what it feeds there.
        for (std::size_t size : {std::size_t{1}, group.size()}) {
          if (moved || size == 0) break;
          if (std::any_of(group.begin(), group.begin() + static_cast<std::ptrdiff_t>(size),
                          [&](std::size_t w) { return p.nodes[w].cost[t] == kNotAllowed; }))
            continue;
          Assignment b = a;
          for (std::size_t i = 0; i < size; ++i)
            b[group[i]] = t;
          const Evaluation e = evaluate(p, b);
          if (e.feasible && e.objective <= cur.objective + 1e-12 * std::fabs(cur.objective)) {
            a = std::move(b);
            cur = e;
            moved = any = true;
          }
        }
      }
    }
    if (!any) break;
  }
}

// Channel kinds of node v's incoming edges: "call" from its own space.
std::string channels_in(const Problem& p, const Assignment& a, std::size_t v,
                        const std::vector<std::size_t>& in_edges) {
  std::set<std::string> kinds;
  for (std::size_t e : in_edges) {
    const std::size_t from = a[p.edges[e].from];
    kinds.insert(from == a[v] ? "call"
                              : std::string(to_string(p.pair(p.edges[e], from, a[v]).kind)));
  }
  std::string out;
  for (const auto& k : kinds)
    out += (out.empty() ? "" : ",") + k;
  return out;
}

// What running node v in space t instead does to the plan: the objective's
// change (`exact`: the best plan with it there; else moving it alone), or
// the constraint that move breaks.
struct Move {
  std::optional<double> delta;
  std::string violation;
};
Move move_to(const Problem& p, const Assignment& a, const Evaluation& ev, std::size_t v,
             std::size_t t, bool exact, double time_limit_s) {
  Move out;
  if (exact) {
    if (auto forced = solve_milp(p, nullptr, std::pair{v, t}, time_limit_s)) {
      const Evaluation fe = evaluate(p, *forced);
      if (fe.feasible) out.delta = fe.objective - ev.objective;
    }
  }
  Assignment moved = a;
  moved[v] = t;
  const Evaluation me = evaluate(p, moved);
  if (!out.delta && me.feasible) out.delta = me.objective - ev.objective;
  out.violation = me.violation;
  return out;
}

// The cheapest other space a node could run in, and by how much it is worse.
using RunnerUp = std::optional<std::pair<std::string, double>>;

// Why a node runs where it does: its pin, the next best space, or what
// rules out every other one.
std::string why_here(const Problem& p, const ProblemNode& n, const RunnerUp& runner_up,
                     const std::set<std::string>& other_reasons) {
  if (n.pin) {
    std::string why = "pinned with space=" + *n.pin;
    if (runner_up)
      why += "; next best " + runner_up->first + " (" + delta_text(p, runner_up->second) + ")";
    return why;
  }
  if (runner_up) {
    if (runner_up->second <= 1e-12) return "tied with " + runner_up->first + " (same objective)";
    return "cheapest; next best " + runner_up->first + " " + delta_text(p, runner_up->second);
  }
  std::string why = "only space possible";
  std::set<std::string> shown;
  for (const auto& r : other_reasons) {
    const std::string d = detail_of(r);
    if (shown.size() < 2 && shown.insert(d).second) why += (shown.size() == 1 ? ": " : "; ") + d;
  }
  return why;
}

// Node v where `a` puts it, with every other space and why it was not chosen.
NodePlan node_plan(const Problem& p, const Assignment& a, const Evaluation& ev, std::size_t v,
                   const std::vector<std::size_t>& in_edges, bool exact, double time_limit_s) {
  const auto& n = p.nodes[v];
  const std::size_t s = a[v];
  NodePlan np;
  np.id = n.id;
  np.name = n.name;
  np.members = n.members;
  np.filter = std::string(n.spec->name);
  np.where = n.where;
  np.space = p.spaces[s].id;
  np.implementation = implementation(p.spaces[s]);
  np.rate_pps = n.rate;
  np.cost_ns_per_s = n.cost[s];
  np.ns_per_block = n.per_block[s];
  np.channel_in = channels_in(p, a, v, in_edges);
  RunnerUp runner_up;
  std::set<std::string> other_reasons;
  for (std::size_t t = 0; t < p.S(); ++t) {
    Alternative alt;
    alt.space = p.spaces[t].id;
    if (t == s) {
      alt.verdict = "chosen";
      alt.detail = cpu(n.cost[s]) + " (" + fmt(n.per_block[s]) + " ns per block)";
    } else if (n.cost[t] == kNotAllowed) {
      alt.verdict = verdict_of(n.excluded[t]);
      alt.detail = detail_of(n.excluded[t]);
      other_reasons.insert(n.excluded[t]);
    } else if (const Move m = move_to(p, a, ev, v, t, exact, time_limit_s); m.delta) {
      alt.verdict = "cost";
      alt.delta = std::max(0.0, *m.delta);
      alt.detail = delta_text(p, *alt.delta) +
                   (exact ? " for the best plan with it here" : " if moved alone") + "; here " +
                   cpu(n.cost[t]) + " (" + fmt(n.per_block[t]) + " ns per block)";
      if (!runner_up || *alt.delta < runner_up->second) runner_up = {alt.space, *alt.delta};
    } else {
      auto [verdict, detail] = classify(m.violation);
      alt.verdict = verdict;
      alt.detail = detail;
      other_reasons.insert(verdict + ": " + detail);
    }
    np.alternatives.push_back(alt);
  }
  np.why = why_here(p, n, runner_up, other_reasons);
  return np;
}

// Every node's plan. Alternatives: exact (re-solve with the node forced) on
// small problems.
std::vector<NodePlan> node_plans(const Problem& p, const Assignment& a, const Evaluation& ev,
                                 const PlanOptions& opt) {
  std::size_t candidates = 0;
  for (const auto& n : p.nodes)
    for (double c : n.cost)
      candidates += c != kNotAllowed ? 1 : 0;
  const bool exact = candidates <= opt.exact_alternatives_limit;

  std::vector<std::vector<std::size_t>> in_edges(p.nodes.size());
  for (std::size_t e = 0; e < p.edges.size(); ++e)
    in_edges[p.edges[e].to].push_back(e);

  std::vector<NodePlan> nodes;
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    nodes.push_back(node_plan(p, a, ev, v, in_edges[v], exact, opt.time_limit_s));
  return nodes;
}

// Edge i with the channel between its ends' spaces; `payer`: the edge whose
// crossing it shares (Problem::crossing_payers).
EdgePlan edge_plan(const Problem& p, const Assignment& a, const std::vector<std::size_t>& payer,
                   std::size_t i) {
  const auto& e = p.edges[i];
  EdgePlan ep;
  ep.from = p.nodes[e.from].id;
  ep.to = p.nodes[e.to].id;
  ep.select = e.select;
  const std::size_t s = a[e.from], t = a[e.to];
  ep.from_space = p.spaces[s].id;
  ep.to_space = p.spaces[t].id;
  const PairChannel& c = p.pair(e, s, t);
  ep.channel = s == t ? "call" : std::string(to_string(c.kind));
  ep.zero_copy = s == t || c.zero_copy;
  if (s != t) ep.via = c.via;
  if (p.spaces[s].kind != Kind::user && p.spaces[t].kind == Kind::user) {
    if (e.take) {
      const auto& consumer = p.nodes[e.consumer];
      ep.delivery = "take";
      ep.delivery_why = "consumed in userspace by " + consumer.id + " (" +
                        std::string(consumer.spec->name) +
                        "): every block on this edge leaves the host's stack";
    } else {
      ep.delivery = "copy";
      ep.delivery_why =
          "the userspace part only observes: the block goes on to the stack with the "
          "kernel part's verdict";
    }
  }
  ep.rate_pps = e.rate;
  ep.cost_ns_per_s = p.edge_cost(e, s, t);
  if (const auto& paying = p.edges[payer[i]]; payer[i] != i) {
    ep.crosses_with = p.nodes[paying.from].id + " " + paying.select + " " + p.nodes[paying.to].id;
    ep.cost_ns_per_s = 0;
  }
  return ep;
}

std::vector<EdgePlan> edge_plans(const Problem& p, const Assignment& a) {
  const auto payer = p.crossing_payers(a);
  std::vector<EdgePlan> edges;
  for (std::size_t i = 0; i < p.edges.size(); ++i)
    edges.push_back(edge_plan(p, a, payer, i));
  return edges;
}

// Every space's load and limits, and what its kernel program holds.
std::vector<SpacePlan> space_plans(const Problem& p, const Assignment& a, const Evaluation& ev) {
  std::vector<SpacePlan> spaces;
  for (std::size_t s = 0; s < p.S(); ++s) {
    SpacePlan sp;
    sp.id = p.spaces[s].id;
    sp.kind = std::string(to_string(p.spaces[s].kind));
    sp.device = p.spaces[s].device;
    if (p.spaces[s].kind == Kind::xdp)
      sp.mode = p.spaces[s].mode.empty() ? "native" : p.spaces[s].mode;
    sp.load_ns_per_s = ev.load[s];
    sp.capacity_ns_per_s = p.spaces[s].capacity_ns_per_s;
    sp.utilisation = ev.load[s] / sp.capacity_ns_per_s;
    sp.ebpf_insns = ev.insns[s];
    sp.ebpf_insn_limit = p.spaces[s].kind == Kind::user ? 0 : p.spaces[s].ebpf_insn_limit;
    sp.ebpf_functions = ev.functions[s];
    sp.ebpf_exits = ev.exits[s];
    for (std::size_t k = 0; k < p.programs.size(); ++k)
      if (std::find(p.programs[k].begin(), p.programs[k].end(), s) != p.programs[k].end()) {
        sp.ebpf_function_limit = p.program_limit(k, &Space::ebpf_function_limit);
        sp.ebpf_exit_limit = p.program_limit(k, &Space::ebpf_exit_limit);
        sp.verifier_insns = ev.verified[k];
        sp.verifier_limit = p.program_limit(k, &Space::verifier_limit);
      }
    sp.nodes = static_cast<std::size_t>(std::count(a.begin(), a.end(), s));
    for (std::size_t c : p.members[s])
      sp.replicas.push_back(p.spaces[c].id);
    if (p.replica_set(s)) sp.capacity_ns_per_s = sp.utilisation = 0;
    spaces.push_back(sp);
  }
  return spaces;
}

// A kernel program's tcpdump expressions and exits, summed over the
// spaces it holds (Problem::programs), near their limits; and the
// verifier's work near its budget.
void add_program_bindings(const Problem& p, const Evaluation& ev, std::size_t k,
                          std::vector<std::string>& binding) {
  std::uint32_t functions = 0, exits = 0;
  std::string where;
  for (std::size_t s : p.programs[k]) {
    functions += ev.functions[s], exits += ev.exits[s];
    if (ev.functions[s] > 0 || ev.exits[s] > 0)
      where += (where.empty() ? "" : ", ") + p.spaces[s].id;
  }
  if (where.find(',') != std::string::npos) where = "the kernel program on " + where;
  const auto fl = p.program_limit(k, &Space::ebpf_function_limit);
  if (fl > 0 && functions >= 0.99 * fl)
    binding.push_back("BPF function limit of " + where + ": " + std::to_string(functions) + " of " +
                      std::to_string(fl) + " tcpdump expressions");
  const auto xl = p.program_limit(k, &Space::ebpf_exit_limit);
  if (xl > 0 && exits >= 0.99 * xl)
    binding.push_back("exit limit of " + where + ": " + std::to_string(exits) + " of " +
                      std::to_string(xl) + " edges up to userspace");
  const auto vl = p.program_limit(k, &Space::verifier_limit);
  if (vl > 0 && ev.verified[k] >= 0.9 * vl) {
    std::string hooks;
    for (std::size_t s : p.programs[k])
      hooks += (hooks.empty() ? "" : ", ") + p.spaces[s].id;
    binding.push_back("verifier budget of the kernel program on " + hooks + ": up to " +
                      std::to_string(ev.verified[k]) + " of " + std::to_string(vl) +
                      " instructions");
  }
}

// The constraints the placed plan meets or nearly meets: what holds it
// where it is.
std::vector<std::string> binding_constraints(const Problem& p, const Evaluation& ev,
                                             const Plan& out) {
  std::vector<std::string> binding;
  for (const auto& sp : out.spaces) {
    if (out.objective != Objective::throughput && sp.utilisation >= 0.99)
      binding.push_back("capacity of " + sp.id + ": " + fmt(sp.utilisation * 100) + "% used");
    if (sp.ebpf_insn_limit > 0 && sp.ebpf_insns >= 0.99 * sp.ebpf_insn_limit)
      binding.push_back("eBPF instruction limit of " + sp.id + ": " +
                        std::to_string(sp.ebpf_insns) + " of " +
                        std::to_string(sp.ebpf_insn_limit));
  }
  for (std::size_t k = 0; k < p.programs.size(); ++k)
    add_program_bindings(p, ev, k, binding);
  std::size_t bottleneck = 0;
  for (std::size_t s = 1; s < out.spaces.size(); ++s)
    if (out.spaces[s].utilisation > out.spaces[bottleneck].utilisation) bottleneck = s;
  if (out.objective != Objective::cost && !out.spaces.empty() &&
      out.spaces[bottleneck].load_ns_per_s > 0)
    binding.push_back("bottleneck " + out.spaces[bottleneck].id + " at " +
                      fmt(out.spaces[bottleneck].utilisation * 100) + "%: sustainable input rate " +
                      rate(out.sustainable_rate_pps) + " per source");
  if (p.memory_bandwidth > 0 && ev.memory_traffic >= 0.99 * p.memory_bandwidth)
    binding.push_back("memory bandwidth: copies move " + fmt(ev.memory_traffic / 1e9) + " of " +
                      fmt(p.memory_bandwidth / 1e9) + " GB/s");
  for (const auto& n : p.nodes) {
    if (!n.pin) continue;
    std::string held;
    for (std::size_t t = 0; t < p.S(); ++t)
      if (n.excluded[t].rfind("pinned", 0) == 0)
        held += (held.empty() ? "" : ", ") + p.spaces[t].id;
    if (!held.empty())
      binding.push_back("pin space=" + *n.pin + " on " + n.id + " (" + std::string(n.spec->name) +
                        ") excludes " + held);
  }
  return binding;
}

// A baseline heuristic's placement `ba` as counted by the model, or why it
// placed nothing.
BaselinePlan baseline(const Problem& p, const char* name, const std::optional<Assignment>& ba,
                      const std::string& why_not) {
  BaselinePlan b;
  b.name = name;
  if (!ba) {
    b.reason = why_not;
    return b;
  }
  const Evaluation be = evaluate(p, *ba);
  b.placed = true;
  b.feasible = be.feasible;
  b.reason = be.violation;
  b.objective = be.objective;
  b.total_cost = be.total_cost;
  b.max_utilisation = be.max_utilisation;
  for (std::size_t s : *ba)
    b.spaces.push_back(p.spaces[s].id);
  return b;
}

std::size_t member_count(const compiler::MergedRequests& merged) {
  std::size_t total = 0;
  for (const auto& members : merged.members)
    total += members.size();
  return total;
}

}  // namespace

Plan plan(const compiler::MergedRequests& merged,
          std::span<const compiler::SourceFile* const> sources, const SystemModel& model,
          const PlanOptions& opt) {
  SystemModel m = model;
  if (opt.profile) apply(*opt.profile, m);
  const Problem p = build_problem(merged, sources, m, opt);
  Plan out = plan_inputs(m, opt);

  auto sol = solve_milp(p, &out.solver, {}, opt.time_limit_s);
  if (!sol) throw_infeasible(p, out.solver.status, opt.time_limit_s);
  push_ties_down(p, *sol);
  const Assignment& a = *sol;
  const Evaluation ev = evaluate(p, a);
  out.objective_value = ev.objective;
  out.total_cost_ns_per_s = ev.total_cost;
  out.max_utilisation = ev.max_utilisation;
  out.sustainable_rate_pps = ev.max_utilisation > 0 ? opt.input_rate_pps / ev.max_utilisation : 0;
  out.memory_traffic = ev.memory_traffic;

  out.nodes = node_plans(p, a, ev, opt);
  out.edges = edge_plans(p, a);
  out.spaces = space_plans(p, a, ev);
  out.binding = binding_constraints(p, ev, out);

  std::string why_pd, why_au;
  const auto pd = baseline_push_down(p, &why_pd);
  out.baselines.push_back(baseline(p, "push-down", pd, why_pd));
  const auto au = baseline_all_user(p, &why_au);
  out.baselines.push_back(baseline(p, "all-user", au, why_au));
  if (p.nodes.size() != out.nodes.size()) out.notes.push_back("internal: node count mismatch");
  if (p.nodes.size() < member_count(merged))
    out.notes.push_back(
        "shared prefixes: identical stateless nodes of several requests are merged (see members)");
  return out;
}

nlohmann::ordered_json to_json(const Plan& p, bool with_timing) {
  using J = nlohmann::ordered_json;
  J j;
  j["srl_plan_version"] = kPlanJsonVersion;
  j["objective"] = {{"kind", to_string(p.objective)},
                    {"value", p.objective_value},
                    {"total_cost_ns_per_s", p.total_cost_ns_per_s},
                    {"max_utilisation", p.max_utilisation},
                    {"sustainable_rate_pps", p.sustainable_rate_pps},
                    {"memory_traffic_bytes_per_s", p.memory_traffic}};
  if (p.objective == Objective::mix) j["objective"]["mix_weight"] = p.mix_weight;
  j["inputs"] = {{"rate_pps", p.input_rate_pps},
                 {"block_bytes", p.block_bytes},
                 {"model", p.model_origin},
                 {"costs", p.profile}};
  J nodes = J::array();
  for (const auto& n : p.nodes) {
    J alts = J::array();
    for (const auto& a : n.alternatives) {
      J o = {{"space", a.space}, {"verdict", a.verdict}, {"detail", a.detail}};
      if (a.delta) o["delta"] = *a.delta;
      alts.push_back(o);
    }
    J o = {{"id", n.id}, {"name", n.name}, {"filter", n.filter}};
    if (n.members.size() > 1) o["members"] = n.members;
    if (!n.where.empty()) o["loc"] = n.where;
    o["space"] = n.space;
    o["implementation"] = n.implementation;
    o["channel_in"] = n.channel_in;
    o["rate_pps"] = n.rate_pps;
    o["ns_per_block"] = n.ns_per_block;
    o["cost_ns_per_s"] = n.cost_ns_per_s;
    o["why"] = n.why;
    o["alternatives"] = alts;
    nodes.push_back(o);
  }
  j["nodes"] = nodes;
  J edges = J::array();
  for (const auto& e : p.edges) {
    J o = {{"from", e.from},          {"to", e.to},
           {"select", e.select},      {"from_space", e.from_space},
           {"to_space", e.to_space},  {"channel", e.channel},
           {"zero_copy", e.zero_copy}};
    if (!e.via.empty()) o["via"] = e.via;
    if (!e.delivery.empty()) {
      o["delivery"] = e.delivery;
      o["delivery_why"] = e.delivery_why;
    }
    o["rate_pps"] = e.rate_pps;
    o["cost_ns_per_s"] = e.cost_ns_per_s;
    if (!e.crosses_with.empty()) o["crosses_with"] = e.crosses_with;
    edges.push_back(o);
  }
  j["edges"] = edges;
  J spaces = J::array();
  for (const auto& s : p.spaces) {
    if (!s.replicas.empty() && s.nodes == 0) continue;  // an unused replica set
    J o = {{"id", s.id}, {"kind", s.kind}};
    if (!s.mode.empty()) o["mode"] = s.mode;
    o["nodes"] = s.nodes;
    o["load_ns_per_s"] = s.load_ns_per_s;
    o["capacity_ns_per_s"] = s.capacity_ns_per_s;
    o["utilisation"] = s.utilisation;
    if (s.ebpf_insn_limit > 0)
      o["ebpf_insns"] = s.ebpf_insns, o["ebpf_insn_limit"] = s.ebpf_insn_limit;
    if (s.ebpf_function_limit > 0)
      o["ebpf_functions"] = s.ebpf_functions, o["ebpf_function_limit"] = s.ebpf_function_limit;
    if (s.ebpf_exit_limit > 0)
      o["ebpf_exits"] = s.ebpf_exits, o["ebpf_exit_limit"] = s.ebpf_exit_limit;
    if (s.verifier_limit > 0)
      o["verifier_insns"] = s.verifier_insns, o["verifier_limit"] = s.verifier_limit;
    if (!s.replicas.empty()) o["replicas"] = s.replicas;
    spaces.push_back(o);
  }
  j["spaces"] = spaces;
  j["binding"] = p.binding;
  J bl = J::array();
  for (const auto& b : p.baselines) {
    J o = {{"name", b.name}, {"placed", b.placed}, {"feasible", b.feasible}};
    if (!b.reason.empty()) o["reason"] = b.reason;
    if (b.placed) {
      o["objective"] = b.objective;
      o["total_cost_ns_per_s"] = b.total_cost;
      o["max_utilisation"] = b.max_utilisation;
      if (b.feasible) o["improvement"] = b.objective > 0 ? 1 - p.objective_value / b.objective : 0;
      o["spaces"] = b.spaces;
    }
    bl.push_back(o);
  }
  j["baselines"] = bl;
  J solver = {{"status", p.solver.status}, {"columns", p.solver.columns}, {"rows", p.solver.rows}};
  if (with_timing) solver["time_ms"] = p.solver.time_ms;
  j["solver"] = solver;
  j["notes"] = p.notes;
  return j;
}

std::string to_text(const Plan& p) {
  std::ostringstream o;
  auto pad = [](std::string s, std::size_t w) {
    if (s.size() < w) s.resize(w, ' ');
    return s;
  };
  std::size_t wid = 4, wn = 4, wf = 6, ws = 5, wc = 7;
  for (const auto& n : p.nodes) {
    wid = std::max(wid, n.id.size());
    wn = std::max(wn, n.name.size());
    wf = std::max(wf, n.filter.size());
    ws = std::max(ws, n.space.size());
    wc = std::max(wc, n.channel_in.size());
  }
  o << pad("node", wid) << "  " << pad("name", wn) << "  " << pad("filter", wf) << "  "
    << pad("space", ws) << "  " << pad("channel", wc) << "  " << pad("cost", 14) << "  why\n";
  for (const auto& n : p.nodes) {
    o << pad(n.id, wid) << "  " << pad(n.name, wn) << "  " << pad(n.filter, wf) << "  "
      << pad(n.space, ws) << "  " << pad(n.channel_in.empty() ? "-" : n.channel_in, wc) << "  "
      << pad(cpu(n.cost_ns_per_s), 14) << "  " << n.why << "\n";
    if (n.members.size() > 1) {
      o << std::string(wid + 2, ' ') << "shared by";
      for (const auto& m : n.members)
        o << " " << m;
      o << "\n";
    }
    for (const auto& a : n.alternatives)
      if (a.verdict != "chosen")
        o << std::string(wid + 2, ' ') << "- " << pad(a.space, ws) << "  " << a.verdict << ": "
          << a.detail << "\n";
  }
  o << "\nchannels:\n";
  for (const auto& e : p.edges)
    if (e.channel != "call")
      o << "  " << e.from << " " << e.select << " " << e.to << "  " << e.from_space << " -> "
        << e.to_space << " " << e.channel << (e.zero_copy ? " (zero-copy)" : " (bytes copied)")
        << ", " << rate(e.rate_pps) << ", " << cpu(e.cost_ns_per_s) << "\n"
        << (e.delivery.empty() ? std::string() : "    " + e.delivery + ": " + e.delivery_why + "\n")
        << (e.crosses_with.empty() ? std::string()
                                   : "    one crossing with " + e.crosses_with +
                                         ": the program hands each block up once for all its "
                                         "exits\n");
  o << "\nspaces:\n";
  for (const auto& s : p.spaces) {
    if (s.nodes == 0 && s.load_ns_per_s == 0) continue;
    if (!s.replicas.empty()) {
      o << "  " << pad(s.id, ws) << "  " << s.nodes << " node(s) in " << s.replicas.size()
        << " replicas, load counted on";
      for (const auto& r : s.replicas)
        o << " " << r;
      o << "\n";
      continue;
    }
    o << "  " << pad(s.id, ws) << "  " << (s.mode.empty() ? "" : s.mode + " mode, ") << s.nodes
      << " node(s), " << cpu(s.load_ns_per_s) << " of " << cpu(s.capacity_ns_per_s) << " ("
      << fmt(s.utilisation * 100) << "%)";
    if (s.ebpf_insn_limit > 0)
      o << ", " << s.ebpf_insns << " of " << s.ebpf_insn_limit << " eBPF insns";
    if (s.ebpf_functions > 0)
      o << ", " << s.ebpf_functions << " tcpdump expression(s)"
        << (s.ebpf_function_limit > 0
                ? " (program limit " + std::to_string(s.ebpf_function_limit) + ")"
                : "");
    if (s.ebpf_exits > 0)
      o << ", " << s.ebpf_exits << " exit(s) to userspace"
        << (s.ebpf_exit_limit > 0 ? " (program limit " + std::to_string(s.ebpf_exit_limit) + ")"
                                  : "");
    if (s.verifier_limit > 0 && s.nodes > 0)
      o << ", verifier at most " << s.verifier_insns << " of " << s.verifier_limit;
    o << "\n";
  }
  o << "\nbinding constraints:" << (p.binding.empty() ? " none\n" : "\n");
  for (const auto& b : p.binding)
    o << "  - " << b << "\n";
  o << "\nobjective (" << to_string(p.objective) << ", at " << rate(p.input_rate_pps)
    << " per source, " << fmt(p.block_bytes) << " B blocks): ";
  auto value = [&](double v) { return p.objective == Objective::cost ? cpu(v) : fmt(v, 4); };
  o << value(p.objective_value) << "; total " << cpu(p.total_cost_ns_per_s) << ", peak utilisation "
    << fmt(p.max_utilisation * 100) << "%\n";
  for (const auto& b : p.baselines) {
    o << "  baseline " << pad(b.name, 10) << "  ";
    if (!b.placed) {
      o << "n/a: " << b.reason << "\n";
      continue;
    }
    o << value(b.objective);
    if (!b.feasible)
      o << "; infeasible: " << b.reason;
    else if (b.objective > 0)
      o << " (plan is " << fmt((1 - p.objective_value / b.objective) * 100) << "% better)";
    o << "\n";
  }
  o << "solver: GLPK " << p.solver.status << ", " << p.solver.columns << " columns, "
    << p.solver.rows << " rows, " << fmt(p.solver.time_ms) << " ms; costs: " << p.profile << "\n";
  for (const auto& n : p.notes)
    o << "note: " << n << "\n";
  return o.str();
}

std::string to_dot(const Plan& p) {
  auto q = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  };
  std::ostringstream o;
  o << "digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n";
  std::size_t i = 0;
  for (const auto& s : p.spaces) {
    if (s.nodes == 0) continue;
    o << "  subgraph cluster_" << i++
      << " {\n    label=" << q(s.id + " (" + fmt(s.utilisation * 100) + "%)")
      << ";\n    style=rounded;\n";
    for (const auto& n : p.nodes)
      if (n.space == s.id) {
        // DOT's own line break: a backslash and n inside the quoted label.
        std::string label = q(n.id + "|" + n.filter);
        label.replace(label.find('|'), 1, "\\n");
        o << "    " << q(n.id) << " [label=" << label << "];\n";
      }
    o << "  }\n";
  }
  for (const auto& e : p.edges) {
    std::string label = e.select == ">" ? "" : e.select;
    if (e.channel != "call") label += (label.empty() ? "" : " ") + e.channel;
    o << "  " << q(e.from) << " -> " << q(e.to);
    if (!label.empty())
      o << " [label=" << q(label) << (e.channel != "call" ? ", style=bold" : "") << "]";
    o << ";\n";
  }
  o << "}\n";
  return o.str();
}

}  // namespace srl::optimizer
