// The mixed-integer program (docs/optimizer.md §Program) built for GLPK.
//
// Edge variables use the transportation form: for edge (u, v),
// sum_t y[e,s,t] = x[u,s] and sum_s y[e,s,t] = x[v,t]. It implies the usual
// linearisation y >= x[u,s] + x[v,t] - 1 and is tighter: on tree-shaped
// requests its LP relaxation is integral, so branch and bound rarely
// branches. Pairs of spaces without a channel get no variable at all.
#include <glpk.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

#include "srl/optimizer/optimizer.h"

namespace srl::optimizer {
namespace {

// GLPK keeps per-thread state and prints to the terminal by default; one
// solve at a time keeps it safe whatever TLS support it was built with.
std::mutex g_glpk;

using Clock = std::chrono::steady_clock;

struct Solved {
  std::optional<Assignment> assignment;
  int status = GLP_UNDEF;  // GLP_OPT, GLP_FEAS, GLP_NOFEAS, GLP_UNDEF (nothing in time)
  bool from_lp = false;
  int columns = 0, rows = 0;
  bool shares = false;   // the program had shared crossings (bundles of two or more edges)
  bool stalled = false;  // branch and bound ended: no better solution for kStallBudget
  double gap = 0;        // then: the solution's relative distance from the search's bound
};

// Branch and bound ends once it has a solution and finds no better one for
// this long. On 100 tcpdump expressions for one XDP hook, with its capacity
// binding (which of them go up to userspace, whose crossing is paid once for
// all: a fixed charge the relaxation bounds weakly), the search found its
// last improvement within 0.5 s and ran on to the 10 s limit without
// another: every apply and removal on that device waited 10 s.
constexpr std::chrono::milliseconds kStallBudget{300};

struct Search {
  Clock::time_point last_better{};
  bool has_solution = false, stalled = false;
  double gap = 0;
};

void on_search_event(glp_tree* tree, void* info) {
  auto& s = *static_cast<Search*>(info);
  if (glp_ios_reason(tree) == GLP_IBINGO) {
    s.has_solution = true;
    s.last_better = Clock::now();
    return;
  }
  if (s.has_solution && !s.stalled && Clock::now() - s.last_better > kStallBudget) {
    s.stalled = true;
    s.gap = glp_ios_mip_gap(tree);
    glp_ios_terminate(tree);
  }
}

// Crossing columns. Transportation form: (e, s, t). Among the user
// spaces (cores and replica sets) the channel into a space t is usually
// the same whichever other user space s it comes from ("reader-determined":
// shm into a core, shm plus the flow-hash split into a replica set). An
// edge whose ends can only run in such spaces gets the smaller "reader"
// form: d[e,t] >= x[v,t] - x[u,t], 1 when v runs in t and u elsewhere
// (s = kReader), |spaces| columns instead of |spaces|^2.
constexpr std::size_t kReader = SIZE_MAX;

// The user spaces, and which of them are reader-determined (all of them or none).
struct ReaderGroup {
  std::vector<std::size_t> users;
  std::vector<bool> in_group;
  // Another member of the group than t: the writer a reader-form column stands for.
  std::size_t other(std::size_t t) const { return users[0] != t ? users[0] : users[1]; }
};

ReaderGroup reader_group(const Problem& p) {
  const std::size_t S = p.S();
  ReaderGroup g;
  g.in_group.assign(S, false);
  for (std::size_t s = 0; s < S; ++s)
    if (p.spaces[s].kind == Kind::user) g.users.push_back(s);
  bool uniform = g.users.size() >= 2;
  for (std::size_t t : g.users) {
    if (!uniform) break;
    const PairChannel& ref = p.pair(g.other(t), t);
    for (std::size_t s : g.users) {
      if (s == t) continue;
      const PairChannel& c = p.pair(s, t);
      uniform = uniform && c.allowed && ref.allowed && c.kind == ref.kind &&
                c.ns_per_block == ref.ns_per_block && c.ns_per_byte == ref.ns_per_byte &&
                c.mem_bytes_per_byte == ref.mem_bytes_per_byte && c.capacity <= 0;
    }
  }
  if (uniform)
    for (std::size_t s : g.users)
      g.in_group[s] = true;
  return g;
}

// A crossing column y[e,s,t]: edge e's blocks from space s (or kReader)
// into space t.
struct Y {
  std::size_t e, s, t;
};

struct CrossingColumns {
  std::vector<Y> ys;              // in the order of their edges
  std::vector<bool> reader_form;  // per edge
};

CrossingColumns crossing_columns(const Problem& p, const std::vector<std::vector<int>>& x,
                                 const ReaderGroup& group) {
  const std::size_t S = p.S();
  CrossingColumns out;
  out.reader_form.assign(p.edges.size(), false);
  for (std::size_t e = 0; e < p.edges.size(); ++e) {
    const auto& ed = p.edges[e];
    bool group_only = true;
    std::size_t spaces_used = 0;
    for (std::size_t s = 0; s < S; ++s)
      if (x[ed.from][s] || x[ed.to][s]) {
        ++spaces_used;
        group_only = group_only && group.in_group[s];
      }
    if (group_only && spaces_used >= 2) {
      out.reader_form[e] = true;
      for (std::size_t t = 0; t < S; ++t)
        if (x[ed.to][t]) out.ys.push_back({e, kReader, t});
      continue;
    }
    for (std::size_t s = 0; s < S; ++s) {
      if (!x[ed.from][s]) continue;
      for (std::size_t t = 0; t < S; ++t)
        if (x[ed.to][t] && p.pair(ed, s, t).allowed) out.ys.push_back({e, s, t});
    }
  }
  return out;
}

// A shared crossing column w[b,s,t]: a bundle's blocks from s into t.
struct W {
  std::size_t e;  // the first edge of the bundle: its rate, bytes and channel
  std::size_t s, t;
};

struct SharedColumns {
  std::vector<W> ws;
  std::vector<int> y_w;  // per crossing column: its bundle's column, or 0
};

// Bundled crossings (Problem::bundled): out of a kernel space a block is
// handed up once for all the exits that take it there, so the edges of a
// bundle share one crossing column w[b,s,t] >= y[e,s,t] that carries the
// cost, the load, the memory traffic and the channel's rate. Only bundles
// of two or more edges get one; a lone edge keeps its y. They are numbered
// from `first` + 1.
SharedColumns shared_crossing_columns(const Problem& p, const std::vector<Y>& ys,
                                      bool share_crossings, int first) {
  std::vector<std::size_t> bundle_size;
  for (const auto& e : p.edges) {
    if (e.bundle >= bundle_size.size()) bundle_size.resize(e.bundle + 1, 0);
    ++bundle_size[e.bundle];
  }
  SharedColumns out;
  out.y_w.assign(ys.size(), 0);
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, int> by_key;
  for (std::size_t k = 0; k < ys.size(); ++k) {
    const Y& y = ys[k];
    if (!share_crossings || y.s == kReader || !p.bundled(y.s, y.t) ||
        bundle_size[p.edges[y.e].bundle] < 2)
      continue;
    auto [it, fresh] = by_key.emplace(std::make_tuple(p.edges[y.e].bundle, y.s, y.t),
                                      first + 1 + static_cast<int>(out.ws.size()));
    if (fresh) out.ws.push_back({y.e, y.s, y.t});
    out.y_w[k] = it->second;
  }
  return out;
}

// The engine runs every userspace node of a datapath on the same workers:
// one thread, or as many as the largest replica set in use. So a plan
// uses at most one single core (z[s]: some node runs on core s); blocks
// never pass between two of them, as nothing deploys that pipeline.
// Numbered from `count` + 1, which they advance.
std::vector<int> single_core_columns(const Problem& p, int& count) {
  std::vector<int> z(p.S(), 0);
  const auto single_core = [&](std::size_t s) {
    return p.spaces[s].kind == Kind::user && !p.replica_set(s);
  };
  if (std::count_if(p.spaces.begin(), p.spaces.end(),
                    [](const Space& sp) { return sp.kind == Kind::user; }) >= 2)
    for (std::size_t s = 0; s < p.S(); ++s)
      if (single_core(s)) z[s] = ++count;
  return z;
}

// The program's columns, by GLPK number (1-based; 0: no column):
// placements, crossings, shared crossings, utilisation, single cores.
struct Columns {
  std::vector<std::vector<int>> x;  // x[v][s]: node v runs in space s
  ReaderGroup group;
  CrossingColumns crossings;
  SharedColumns shared;
  int ybase = 0, wbase = 0;
  int ucol = 0;  // peak utilisation (throughput, mix)
  std::vector<int> z;
  int count = 0;

  int ycol(std::size_t k) const { return ybase + 1 + static_cast<int>(k); }
  int wcol(std::size_t k) const { return wbase + 1 + static_cast<int>(k); }
  const std::vector<Y>& ys() const { return crossings.ys; }
  const std::vector<W>& ws() const { return shared.ws; }
  // The channel a crossing column stands for, and its cost.
  const PairChannel& ypair(const Problem& p, const Y& y) const {
    return p.pair(p.edges[y.e], y.s == kReader ? group.other(y.t) : y.s, y.t);
  }
  double ycost(const Problem& p, const Y& y) const {
    return p.edge_cost(p.edges[y.e], y.s == kReader ? group.other(y.t) : y.s, y.t);
  }
  static double bundle_cost(const Problem& p, const W& w) {
    return p.edge_cost(p.edges[w.e], w.s, w.t);
  }
};

Columns program_columns(const Problem& p, bool share_crossings) {
  const std::size_t S = p.S(), N = p.nodes.size();
  Columns c;
  c.x.assign(N, std::vector<int>(S, 0));
  for (std::size_t v = 0; v < N; ++v)
    for (std::size_t s = 0; s < S; ++s)
      if (p.nodes[v].cost[s] != kNotAllowed) c.x[v][s] = ++c.count;
  c.group = reader_group(p);
  c.crossings = crossing_columns(p, c.x, c.group);
  c.ybase = c.count;
  c.count += static_cast<int>(c.ys().size());
  c.shared = shared_crossing_columns(p, c.ys(), share_crossings, c.count);
  c.wbase = c.count;
  c.count += static_cast<int>(c.ws().size());
  c.ucol = p.objective != Objective::cost ? ++c.count : 0;
  c.z = single_core_columns(p, c.count);
  return c;
}

// Kinds, bounds and objective coefficients; `force` fixes one node's space.
void set_columns(glp_prob* lp, const Problem& p, const Columns& c,
                 std::optional<std::pair<std::size_t, std::size_t>> force) {
  const std::size_t S = p.S(), N = p.nodes.size();
  const double total_cap = p.total_capacity();
  // Objective weight of one ns/s of cost.
  double wcost = 1e-6;
  if (p.objective == Objective::throughput) wcost = 1e-6 / total_cap;
  if (p.objective == Objective::mix) wcost = p.mix_weight / total_cap;

  glp_add_cols(lp, c.count);
  for (std::size_t s = 0; s < S; ++s)
    if (c.z[s]) glp_set_col_kind(lp, c.z[s], GLP_BV);
  for (std::size_t v = 0; v < N; ++v)
    for (std::size_t s = 0; s < S; ++s)
      if (int j = c.x[v][s]) {
        glp_set_col_kind(lp, j, GLP_BV);
        glp_set_obj_coef(lp, j, wcost * p.nodes[v].cost[s]);
        if (force && force->first == v)
          glp_set_col_bnds(lp, j, GLP_FX, s == force->second ? 1 : 0, s == force->second ? 1 : 0);
      }
  for (std::size_t k = 0; k < c.ys().size(); ++k) {
    glp_set_col_bnds(lp, c.ycol(k), GLP_DB, 0, 1);
    if (!c.shared.y_w[k]) glp_set_obj_coef(lp, c.ycol(k), wcost * c.ycost(p, c.ys()[k]));
  }
  for (std::size_t k = 0; k < c.ws().size(); ++k) {
    glp_set_col_bnds(lp, c.wcol(k), GLP_DB, 0, 1);
    glp_set_obj_coef(lp, c.wcol(k), wcost * Columns::bundle_cost(p, c.ws()[k]));
  }
  if (c.ucol) {
    glp_set_col_bnds(lp, c.ucol, GLP_LO, 0, 0);
    glp_set_obj_coef(lp, c.ucol, p.objective == Objective::mix ? 1 - p.mix_weight : 1);
  }
}

// The program's rows: their bounds, and the matrix as GLPK's 1-based triplets.
struct Rows {
  struct Bounds {
    int type;
    double lo, hi;
  };
  std::vector<Bounds> bounds;
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};

  int add_row(int type, double lo, double hi) {
    bounds.push_back({type, lo, hi});
    return static_cast<int>(bounds.size());
  }
  void add(int row, int col, double v) {
    ia.push_back(row);
    ja.push_back(col);
    ar.push_back(v);
  }
  int count() const { return static_cast<int>(bounds.size()); }
};

// Every node runs in exactly one space.
void assignment_rows(const Problem& p, const Columns& c, Rows& rows) {
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    const int r = rows.add_row(GLP_FX, 1, 1);
    for (std::size_t s = 0; s < p.S(); ++s)
      if (c.x[v][s]) rows.add(r, c.x[v][s], 1);
  }
}

// Transportation rows: one per (edge, space of an end); reader-form rows.
void transport_rows(const Problem& p, const Columns& c, Rows& rows) {
  const std::size_t S = p.S();
  const auto& x = c.x;
  const auto& ys = c.ys();
  std::vector<int> from_row(S), to_row(S);
  std::size_t k = 0;
  for (std::size_t e = 0; e < p.edges.size(); ++e) {
    const auto& ed = p.edges[e];
    if (c.crossings.reader_form[e]) {
      for (; k < ys.size() && ys[k].e == e; ++k) {
        const int r = rows.add_row(GLP_LO, 0, 0);
        rows.add(r, c.ycol(k), 1);
        rows.add(r, x[ed.to][ys[k].t], -1);
        if (x[ed.from][ys[k].t]) rows.add(r, x[ed.from][ys[k].t], 1);
      }
      continue;
    }
    for (std::size_t s = 0; s < S; ++s) {
      from_row[s] = x[ed.from][s] ? rows.add_row(GLP_FX, 0, 0) : 0;
      if (from_row[s]) rows.add(from_row[s], x[ed.from][s], -1);
    }
    for (std::size_t t = 0; t < S; ++t) {
      to_row[t] = x[ed.to][t] ? rows.add_row(GLP_FX, 0, 0) : 0;
      if (to_row[t]) rows.add(to_row[t], x[ed.to][t], -1);
    }
    for (; k < ys.size() && ys[k].e == e; ++k) {
      rows.add(from_row[ys[k].s], c.ycol(k), 1);
      rows.add(to_row[ys[k].t], c.ycol(k), 1);
    }
  }
}

// Capacity (hard for cost and mix) and utilisation (throughput, mix):
// load_s = node costs + crossings into s, scaled to utilisation so that
// coefficients stay near 1. A replica set spreads its load evenly over
// its cores; it has no row of its own.
void capacity_rows(const Problem& p, const Columns& c, Rows& rows) {
  const std::size_t S = p.S();
  std::vector<int> cap_row(S, 0), hard_row(S, 0);
  for (std::size_t s = 0; s < S; ++s) {
    if (p.replica_set(s)) continue;
    cap_row[s] = c.ucol ? rows.add_row(GLP_UP, 0, 0) : rows.add_row(GLP_UP, 0, 1);
    if (c.ucol) rows.add(cap_row[s], c.ucol, -1);
    if (p.objective == Objective::mix) hard_row[s] = rows.add_row(GLP_UP, 0, 1);
  }
  auto charge = [&](std::size_t s, int col, double ns) {
    if (ns <= 0) return;
    auto one = [&](std::size_t core, double share) {
      const double coef = ns * share / p.spaces[core].capacity_ns_per_s;
      rows.add(cap_row[core], col, coef);
      if (hard_row[core]) rows.add(hard_row[core], col, coef);
    };
    if (!p.replica_set(s)) return one(s, 1);
    for (std::size_t core : p.members[s])
      one(core, 1.0 / static_cast<double>(p.members[s].size()));
  };
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    for (std::size_t s = 0; s < S; ++s)
      if (c.x[v][s]) charge(s, c.x[v][s], p.nodes[v].cost[s]);
  for (std::size_t k = 0; k < c.ys().size(); ++k)
    if (c.ys()[k].t != c.ys()[k].s && !c.shared.y_w[k])
      charge(c.ys()[k].t, c.ycol(k), c.ycost(p, c.ys()[k]));
  for (std::size_t k = 0; k < c.ws().size(); ++k)
    charge(c.ws()[k].t, c.wcol(k), Columns::bundle_cost(p, c.ws()[k]));
}

// One single core at most: sum z <= 1, and a node on core s only where
// z[s] (one row per core: the nodes there, at most N of them).
void single_core_rows(const Problem& p, const Columns& c, Rows& rows) {
  const std::size_t N = p.nodes.size();
  if (std::none_of(c.z.begin(), c.z.end(), [](int j) { return j != 0; })) return;
  const int one = rows.add_row(GLP_UP, 0, 1);
  for (std::size_t s = 0; s < p.S(); ++s) {
    if (!c.z[s]) continue;
    rows.add(one, c.z[s], 1);
    const int r = rows.add_row(GLP_UP, 0, 0);
    rows.add(r, c.z[s], -static_cast<double>(N));
    for (std::size_t v = 0; v < N; ++v)
      if (c.x[v][s]) rows.add(r, c.x[v][s], 1);
  }
}

// A bundle crosses where any of its edges does.
void bundle_rows(const Columns& c, Rows& rows) {
  for (std::size_t k = 0; k < c.ys().size(); ++k)
    if (c.shared.y_w[k]) {
      const int r = rows.add_row(GLP_LO, 0, 0);
      rows.add(r, c.shared.y_w[k], 1);
      rows.add(r, c.ycol(k), -1);
    }
}

// eBPF instructions per kernel or offload space.
void instruction_rows(const Problem& p, const Columns& c, Rows& rows) {
  for (std::size_t s = 0; s < p.S(); ++s) {
    const auto lim = p.spaces[s].ebpf_insn_limit;
    if (p.spaces[s].kind == Kind::user || lim == 0) continue;
    const int r = rows.add_row(GLP_UP, 0, lim);
    for (std::size_t v = 0; v < p.nodes.size(); ++v)
      if (c.x[v][s] && p.nodes[v].insns) rows.add(r, c.x[v][s], p.nodes[v].insns);
  }
}

// A row of Σ weight(v) x[v][s] over kernel program k's spaces, added where
// `fixed` and every node that could be in the program pass `lim`.
template <class Weight>
void program_row(const Problem& p, const Columns& c, std::size_t k, std::uint32_t lim,
                 std::uint64_t fixed, Weight weight, Rows& rows) {
  std::vector<std::pair<int, double>> terms;
  std::uint64_t most = fixed;
  for (std::size_t v = 0; v < p.nodes.size(); ++v) {
    const std::uint32_t w = weight(p.nodes[v]);
    if (w == 0) continue;
    bool any = false;
    for (std::size_t s : p.programs[k])
      if (c.x[v][s]) {
        terms.emplace_back(c.x[v][s], w);
        any = true;
      }
    if (any) most += w;
  }
  if (most <= lim) return;
  // Below what the program takes whatever it holds, nothing fits.
  const int r = rows.add_row(GLP_UP, 0, static_cast<double>(lim) - static_cast<double>(fixed));
  for (const auto& [col, coef] : terms)
    rows.add(r, col, coef);
}

// Kernel program k's exits: the crossings from its spaces to a userspace
// node, counted once per edge.
void exit_row(const Problem& p, const Columns& c, std::size_t k, std::uint32_t lim, Rows& rows) {
  std::vector<bool> here(p.S(), false);
  for (std::size_t s : p.programs[k])
    here[s] = true;
  const auto& ys = c.ys();
  std::vector<int> cols;
  std::vector<bool> edge_up(p.edges.size(), false);
  for (std::size_t j = 0; j < ys.size(); ++j)
    if (ys[j].s != kReader && ys[j].s != ys[j].t && here[ys[j].s] &&
        p.spaces[ys[j].t].kind == Kind::user) {
      cols.push_back(c.ycol(j));
      edge_up[ys[j].e] = true;
    }
  if (static_cast<std::size_t>(std::count(edge_up.begin(), edge_up.end(), true)) > lim) {
    const int r = rows.add_row(GLP_UP, 0, lim);
    for (int col : cols)
      rows.add(r, col, 1);
  }
}

// Per generated kernel program (Problem::programs): the BPF functions of
// its tcpdump expressions, and its exits, the crossings from its spaces
// to a userspace node. A row only where the limit could bind, so that
// ordinary requests solve the program they always did.
void kernel_program_rows(const Problem& p, const Columns& c, Rows& rows) {
  for (std::size_t k = 0; k < p.programs.size(); ++k) {
    if (const auto lim = p.program_limit(k, &Space::ebpf_function_limit))
      program_row(
          p, c, k, lim, 0, [](const ProblemNode& n) { return n.functions; }, rows);
    // The verifier's work, bounded from above (kernel_verified): what the
    // program takes whatever it holds, and its kernel nodes'.
    if (const auto lim = p.program_limit(k, &Space::verifier_limit))
      program_row(
          p, c, k, lim, k < p.program_verified.size() ? p.program_verified[k] : 0,
          [](const ProblemNode& n) { return n.verified; }, rows);
    if (const auto lim = p.program_limit(k, &Space::ebpf_exit_limit)) exit_row(p, c, k, lim, rows);
  }
}

// Memory traffic of copies.
void memory_row(const Problem& p, const Columns& c, Rows& rows) {
  if (p.memory_bandwidth <= 0) return;
  int r = 0;
  auto add = [&](int col, const ProblemEdge& ed, const PairChannel& ch) {
    if (ch.mem_bytes_per_byte <= 0) return;
    if (!r) r = rows.add_row(GLP_UP, 0, 1);
    rows.add(r, col, ed.rate * ed.bytes * ch.mem_bytes_per_byte / p.memory_bandwidth);
  };
  for (std::size_t k = 0; k < c.ys().size(); ++k)
    if (c.ys()[k].s != c.ys()[k].t && !c.shared.y_w[k])
      add(c.ycol(k), p.edges[c.ys()[k].e], c.ypair(p, c.ys()[k]));
  for (std::size_t k = 0; k < c.ws().size(); ++k)
    add(c.wcol(k), p.edges[c.ws()[k].e], p.pair(p.edges[c.ws()[k].e], c.ws()[k].s, c.ws()[k].t));
}

// Channel capacities.
void channel_rows(const Problem& p, const Columns& c, Rows& rows) {
  for (std::size_t s = 0; s < p.S(); ++s)
    for (std::size_t t = 0; t < p.S(); ++t) {
      const auto& ch = p.pair(s, t);
      if (s == t || !ch.allowed || ch.capacity <= 0) continue;
      int r = 0;
      auto add = [&](int col, double rate) {
        if (!r) r = rows.add_row(GLP_UP, 0, 1);
        rows.add(r, col, rate / ch.capacity);
      };
      for (std::size_t k = 0; k < c.ys().size(); ++k)
        if (c.ys()[k].s == s && c.ys()[k].t == t && !c.shared.y_w[k])
          add(c.ycol(k), p.edges[c.ys()[k].e].rate);
      for (std::size_t k = 0; k < c.ws().size(); ++k)
        if (c.ws()[k].s == s && c.ws()[k].t == t) add(c.wcol(k), p.edges[c.ws()[k].e].rate);
    }
}

Rows program_rows(const Problem& p, const Columns& c) {
  Rows rows;
  assignment_rows(p, c, rows);
  transport_rows(p, c, rows);
  capacity_rows(p, c, rows);
  single_core_rows(p, c, rows);
  bundle_rows(c, rows);
  instruction_rows(p, c, rows);
  kernel_program_rows(p, c, rows);
  memory_row(p, c, rows);
  channel_rows(p, c, rows);
  return rows;
}

void load_rows(glp_prob* lp, const Rows& rows) {
  glp_add_rows(lp, rows.count());
  for (int r = 1; r <= rows.count(); ++r) {
    const auto& b = rows.bounds[static_cast<std::size_t>(r - 1)];
    glp_set_row_bnds(lp, r, b.type, b.lo, b.hi);
  }
  glp_load_matrix(lp, static_cast<int>(rows.ia.size() - 1), rows.ia.data(), rows.ja.data(),
                  rows.ar.data());
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<long long>(1, left.count()));
}

// The LP relaxation's optimum as a plan: every placement integral, and
// at most one single core in use.
bool relaxation_deploys(glp_prob* lp, const Columns& c) {
  const std::size_t S = c.z.size(), N = c.x.size();
  bool integral = true;
  for (std::size_t v = 0; v < N && integral; ++v)
    for (std::size_t s = 0; s < S && integral; ++s)
      if (c.x[v][s]) {
        const double val = glp_get_col_prim(lp, c.x[v][s]);
        integral = val < 1e-7 || val > 1 - 1e-7;
      }
  // Integral placements on two single cores leave z fractional: not a
  // plan that deploys, so branch and bound goes on from there.
  std::size_t cores_used = 0;
  for (std::size_t s = 0; s < S && integral; ++s) {
    if (!c.z[s]) continue;
    bool used = false;
    for (std::size_t v = 0; v < N && !used; ++v)
      used = c.x[v][s] && glp_get_col_prim(lp, c.x[v][s]) > 0.5;
    cores_used += used ? 1 : 0;
  }
  return integral && cores_used <= 1;
}

// The LP relaxation (primal simplex): GLP_OPT when its optimum deploys,
// GLP_NOFEAS when there is none, else GLP_UNDEF.
int solve_relaxation(glp_prob* lp, const Columns& c, Clock::time_point deadline) {
  const std::size_t N = c.x.size();
  glp_smcp sp;
  glp_init_smcp(&sp);
  sp.msg_lev = GLP_MSG_OFF;
  // The LP presolver pays off when it can remove much: nodes with a single
  // candidate space (typical with few spaces). With many candidates per node
  // it cost three times what it saved (1000 filters x 8 spaces: 850 ms
  // against 260 ms); the rows are scaled to utilisation already.
  std::size_t fixed = 0;
  for (std::size_t v = 0; v < N; ++v)
    fixed +=
        std::count_if(c.x[v].begin(), c.x[v].end(), [](int j) { return j != 0; }) == 1 ? 1u : 0u;
  sp.presolve = 2 * fixed >= N ? GLP_ON : GLP_OFF;
  sp.tm_lim = ms_left(deadline);
  const int lp_rc = glp_simplex(lp, &sp);
  if (lp_rc == 0 && glp_get_status(lp) == GLP_OPT)
    return relaxation_deploys(lp, c) ? GLP_OPT : GLP_UNDEF;
  if (lp_rc == GLP_ENOPFS || (lp_rc == 0 && glp_get_status(lp) == GLP_NOFEAS)) return GLP_NOFEAS;
  return GLP_UNDEF;
}

// Branch and bound (glp_intopt with its presolver) until `deadline`, or
// until it stalls (which `result` then records): the MIP status.
int branch_and_bound(glp_prob* lp, Clock::time_point deadline, Solved& result) {
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;
  parm.msg_lev = GLP_MSG_OFF;
  // Branch on the most fractional placement: with shared crossings
  // GLPK's default (Driebeck-Tomlin) found no integer solution in 10 s on
  // 256 tcpdump expressions for a hook that holds 255.
  parm.br_tech = GLP_BR_MFV;
  // The feasibility pump finds solutions the branching does not reach
  // soon: on the 100 expressions above, a plan 4% cheaper in some runs
  // (which one the 250 ms of the shared search ends with varies).
  parm.fp_heur = GLP_ON;
  Search search;
  parm.cb_func = on_search_event;
  parm.cb_info = &search;
  parm.tm_lim = ms_left(deadline);
  const int rc = glp_intopt(lp, &parm);
  const bool stopped = rc == GLP_ETMLIM || rc == GLP_ESTOP;
  int status = rc == 0 || stopped ? glp_mip_status(lp) : GLP_NOFEAS;
  if (stopped && status != GLP_FEAS && status != GLP_OPT) status = GLP_UNDEF;
  if (rc == GLP_ESTOP && status == GLP_FEAS) result.stalled = true, result.gap = search.gap;
  return status;
}

// Each node's space: the one its placement columns value most.
Assignment read_assignment(glp_prob* lp, const Columns& c, bool from_lp) {
  auto value = [&](int col) {
    return from_lp ? glp_get_col_prim(lp, col) : glp_mip_col_val(lp, col);
  };
  Assignment a(c.x.size(), 0);
  for (std::size_t v = 0; v < c.x.size(); ++v) {
    double best = -1;
    for (std::size_t s = 0; s < c.x[v].size(); ++s)
      if (c.x[v][s]) {
        const double val = value(c.x[v][s]);
        if (val > best) best = val, a[v] = s;
      }
  }
  return a;
}

// One GLPK program. `share_crossings`: bundled crossings counted once (the exact
// model), else once per edge (an upper bound on it). Branch and bound stops
// at `bb_deadline`.
Solved solve_glpk(const Problem& p, bool share_crossings,
                  std::optional<std::pair<std::size_t, std::size_t>> force,
                  Clock::time_point bb_deadline) {
  std::lock_guard lock(g_glpk);
  glp_term_out(GLP_OFF);
  glp_prob* lp = glp_create_prob();
  glp_set_obj_dir(lp, GLP_MIN);
  const Columns cols = program_columns(p, share_crossings);
  set_columns(lp, p, cols, force);
  const Rows rows = program_rows(p, cols);
  load_rows(lp, rows);

  Solved result;
  result.shares = !cols.ws().empty();
  result.columns = cols.count;
  result.rows = rows.count();
  // The LP relaxation first: on most requests its optimum is already
  // integral, and then it is the MILP's optimum; the MIP presolver alone
  // took seconds on such 1000-filter models. Otherwise branch and bound
  // finishes the job.
  result.status = solve_relaxation(lp, cols, bb_deadline);
  result.from_lp = result.status == GLP_OPT;
  if (result.status == GLP_UNDEF) result.status = branch_and_bound(lp, bb_deadline, result);
  if (result.status == GLP_OPT || result.status == GLP_FEAS)
    result.assignment = read_assignment(lp, cols, result.from_lp);
  glp_delete_prob(lp);
  glp_free_env();
  return result;
}

// Branch and bound on shared crossings gets this long before the plan
// without them (each edge's crossing paid on its own, whose relaxation is
// tight) is solved as well and the cheaper of the two, counted exactly, is
// taken.
constexpr std::chrono::milliseconds kSharedBranchBudget{250};

// Why a search that stopped early is not proven optimal, and how far it
// could be from the optimum at most.
std::string stall_note(const Solved& s) {
  char gap[32];
  std::snprintf(gap, sizeof gap, "%.1f%%", 100 * s.gap);
  return "search stopped after " + std::to_string(kStallBudget.count()) +
         " ms without a better solution, not proven optimal: at most " + gap + " above the optimum";
}

}  // namespace

std::optional<Assignment> solve_milp(const Problem& p, SolveInfo* info,
                                     std::optional<std::pair<std::size_t, std::size_t>> force,
                                     double time_limit_s) {
  const auto t0 = Clock::now();
  if (force && p.nodes[force->first].cost[force->second] == kNotAllowed) return std::nullopt;
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(std::min(time_limit_s, 3600.0)));
  Solved exact = solve_glpk(p, true, force, std::min(deadline, t0 + kSharedBranchBudget));
  std::string status;
  std::optional<Assignment> out = exact.assignment;
  if (exact.status == GLP_OPT) {
    status = "optimal";
  } else if (exact.status == GLP_NOFEAS) {
    status = "infeasible";
  } else if (!exact.shares) {
    // Only the time limit stopped it: no second program to try.
    exact = solve_glpk(p, true, force, deadline);
    out = exact.assignment;
    status = exact.status == GLP_OPT    ? "optimal"
             : exact.stalled            ? "feasible (" + stall_note(exact) + ")"
             : exact.status == GLP_FEAS ? "feasible (time limit reached, not proven optimal)"
                                        : "no solution within the time limit";
  } else {
    const Solved per_edge = solve_glpk(p, false, force, deadline);
    if (per_edge.assignment &&
        (!out || evaluate(p, *per_edge.assignment).objective < evaluate(p, *out).objective))
      out = per_edge.assignment;
    if (!out) {
      exact = solve_glpk(p, true, force, deadline);
      out = exact.assignment;
    }
    status = exact.status == GLP_OPT ? "optimal"
             : out                   ? "feasible (shared crossings not proven optimal within " +
                         std::to_string(kSharedBranchBudget.count()) +
                         " ms; the better of that search and the plan paying every crossing" +
                         (per_edge.stalled ? "; that plan's " + stall_note(per_edge) : "") + ")"
                   : "no solution within the time limit";
  }
  if (info) {
    info->columns = exact.columns;
    info->rows = exact.rows;
    info->status = status;
    info->lp_integral = exact.from_lp;
    info->time_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }
  return out;
}

}  // namespace srl::optimizer
