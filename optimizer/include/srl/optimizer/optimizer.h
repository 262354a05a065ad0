// Placement of Request DAGs onto the spaces of a system model (ARCHITECTURE.md
// §3): a mixed-integer linear program solved with GLPK, two baselines kept for
// comparison, and an explanation of every choice. docs/optimizer.md describes
// the model and the JSON form of a plan.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "srl/compiler/dag.h"
#include "srl/compiler/merge.h"
#include "srl/optimizer/profile.h"
#include "srl/optimizer/system_model.h"

namespace srl::optimizer {

enum class Objective : std::uint8_t {
  cost,        // least total CPU time (ns per second), within every capacity
  throughput,  // least utilisation of the most loaded space (highest sustainable rate)
  mix,         // weighted: mix_weight * cost share + (1 - mix_weight) * max utilisation
};
std::string_view to_string(Objective o);
std::optional<Objective> objective_from_string(std::string_view s);

struct PlanOptions {
  Objective objective = Objective::cost;
  double mix_weight = 0.5;
  double input_rate_pps = 1e6;  // blocks per second entering each source
  double block_bytes = 512;     // mean block size
  const Profile* profile = nullptr;
  double time_limit_s = 10;  // GLPK branch and bound
  // Explanations re-solve the program with each alternative forced when the
  // problem has at most this many (node, space) candidates; above, an
  // alternative is judged by moving the node alone.
  std::size_t exact_alternatives_limit = 100;
  // Data parallelism: a stateless or per-flow userspace filter may run as
  // k replicas (k = 2, 4, 8 up to the number of interchangeable cores)
  // behind a flow-hash split; the program chooses k.
  bool parallel = true;
  std::uint32_t max_replicas = 8;
};

// One request given to the planner; `label` prefixes its node ids when
// several requests are planned together ("" for a single request).
struct RequestInput {
  const compiler::RequestDag* dag = nullptr;
  std::string label;
  const compiler::SourceFile* source = nullptr;  // for positions in messages (optional)
};

// Requests merged once (compiler::merge_requests, by their labels), with
// per request the source its positions are in, as the planner takes them.
struct MergedInputs {
  compiler::MergedRequests merged;
  std::vector<const compiler::SourceFile*> sources;
};
MergedInputs merge_inputs(const std::vector<RequestInput>& requests);

// ---- The flattened problem the solvers work on ----------------------------

inline constexpr double kNotAllowed = std::numeric_limits<double>::infinity();

// Nodes of the requests planned together that a generated kernel program
// can hold (counters and scratch slots for every node, kernel or not);
// runtime/include/srl/runtime/kernel.h (kMaxNodes) says the same.
inline constexpr std::size_t kKernelNodeLimit = 1000;

struct ProblemNode {
  std::string id;                    // plan id ("n3", or "r1/n3" with several requests)
  std::string name;                  // its name in its request (compiler::node_names)
  std::vector<std::string> members;  // the DAG nodes merged into this one (shared prefixes)
  const filters::FilterSpec* spec = nullptr;
  std::string where;  // "req.srl:1:7" when known
  std::optional<std::string> pin;
  double rate = 0;   // blocks per second in
  double bytes = 0;  // mean bytes per block
  std::uint32_t insns = 0;
  std::uint32_t functions = 0;  // BPF functions in a kernel program: 1 for a translated `bpf`
  std::uint32_t verified = 0;  // the verifier's work in a kernel program, bounded (kernel_verified)
  bool consumes = false;       // ends a block's life in userspace (filters/delivery.h)
  std::vector<double> cost;    // per space: ns per second, kNotAllowed where it cannot run
  std::vector<double> per_block;  // per space: ns per block (for the explanation)
  // Per space: empty if allowed, else why not ("no-implementation: ...").
  std::vector<std::string> excluded;
};

struct ProblemEdge {
  std::size_t from = 0, to = 0;  // node indexes
  double rate = 0;
  double bytes = 0;
  std::string select;  // ">", "22>", "!>"
  // Where the edge crosses from the kernel to userspace, its blocks are
  // taken (not copied) when a node below its head consumes them
  // (filters/delivery.h): `consumer` is that node's index.
  bool take = false;
  std::size_t consumer = SIZE_MAX;
  // Edges with the same bundle carry the same blocks (one tail, one
  // selector, copy or take alike). A kernel program hands a block up once
  // for all its exits, so out of a kernel or offload space a bundle crosses
  // to a space once, whatever the number of its edges.
  std::size_t bundle = 0;
};

struct PairChannel {
  bool allowed = false;
  ChannelKind kind = ChannelKind::call;
  double ns_per_block = 0, ns_per_byte = 0, mem_bytes_per_byte = 0, capacity = 0;
  bool zero_copy = true;
  std::vector<std::string> via;
};

struct Problem {
  // The model's spaces, then one replica set per replica count: a space of
  // kind user whose load is spread evenly over its member cores.
  std::vector<Space> spaces;
  std::vector<std::vector<std::size_t>> members;  // per space: member cores (replica sets only)
  std::vector<ProblemNode> nodes;                 // nodes[v]: merged vertex v
  std::vector<ProblemEdge> edges;
  std::vector<PairChannel> pairs;       // [s * S + t], for copies; s == t: fused call, cost 0
  std::vector<PairChannel> take_pairs;  // the same, for edges that take their blocks
  double memory_bandwidth = 0;          // bytes per second
  Objective objective = Objective::cost;
  double mix_weight = 0.5;
  double input_rate = 0;
  std::vector<std::string> notes;
  // The generated kernel programs, each with the spaces whose nodes it
  // holds. Today that is one: the runtime generates the program of every
  // hooked device from all kernel nodes of the plan (another device's are
  // there, unreached), so its limits bind the sum over the xdp and tc
  // spaces. Offload spaces are not in it.
  std::vector<std::vector<std::size_t>> programs;
  // Per program: the verifier's work it takes whatever it holds, bounded
  // (program_verified_fixed), to which its kernel nodes' `verified` add.
  std::vector<std::uint32_t> program_verified;

  std::size_t S() const { return spaces.size(); }
  // The least limit (0: none) of a program's spaces, e.g. program_limit(k,
  // &Space::ebpf_function_limit).
  std::uint32_t program_limit(std::size_t k, std::uint32_t Space::*limit) const;
  const PairChannel& pair(std::size_t s, std::size_t t) const { return pairs[s * S() + t]; }
  // The channel edge `e` uses between s and t: a copy or a take.
  const PairChannel& pair(const ProblemEdge& e, std::size_t s, std::size_t t) const {
    return (e.take ? take_pairs : pairs)[s * S() + t];
  }
  double edge_cost(const ProblemEdge& e, std::size_t s, std::size_t t) const;
  // Whether crossings s -> t are paid once per bundle (out of a kernel or
  // offload space into another space) rather than once per edge.
  bool bundled(std::size_t s, std::size_t t) const {
    return s != t && spaces[s].kind != Kind::user;
  }
  // Per edge under `a`: the edge whose crossing it rides on, the first of
  // its bundle to cross to the same space (itself when it pays, or when it
  // does not cross or is not bundled).
  std::vector<std::size_t> crossing_payers(const std::vector<std::size_t>& a) const;
  double total_capacity() const;  // of the real spaces
  bool replica_set(std::size_t s) const { return !members[s].empty(); }
};

using Assignment = std::vector<std::size_t>;  // node index -> space index

struct Evaluation {
  bool feasible = true;
  std::string violation;  // the first constraint broken
  std::size_t violating_node = SIZE_MAX;
  double total_cost = 0;       // ns per second
  double max_utilisation = 0;  // of the most loaded space
  double objective = 0;
  double memory_traffic = 0;  // bytes per second moved by copies
  std::vector<double> load;   // per space, ns per second
  std::vector<std::uint32_t> insns;
  std::vector<std::uint32_t> functions;  // per space: BPF functions (tcpdump expressions)
  std::vector<std::uint32_t> exits;      // per space: edges from it to a userspace node
  std::vector<std::uint32_t> verified;   // per program: the verifier's work, bounded
};

// Everything the program would say about this assignment (the objective is
// the one of p.objective). Capacity counts for cost and mix, not throughput.
Evaluation evaluate(const Problem& p, const Assignment& a);

// The eBPF instructions node `n` adds to a kernel program, as the model
// counts them: the filter's own estimate, and two per classic BPF
// instruction of a translated tcpdump expression.
std::uint32_t kernel_insns(const compiler::DagNode& n);

// The verifier's work (instructions processed) node `n` adds to a kernel
// program, from above: its filter's `verifier.each` (filters/catalog.h),
// its input edges' selectors, a translated tcpdump expression's paths. A
// program takes at most program_verified_fixed() plus its kernel nodes'
// sum; runtime's kernel_test holds generated programs, at XDP and TC, under
// that bound.
std::uint32_t kernel_verified(const compiler::RequestDag& dag, std::size_t node);
// What a program takes before any node: the parse, the exits, and the
// `verifier.first` of every filter in `filters` (those that may run in it).
std::uint32_t program_verified_fixed(const std::set<const filters::FilterSpec*>& filters);
// The bound of one program holding the vertices of `dag` that `in_kernel`
// marks (every vertex when it is empty): program_verified_fixed() of their
// filters plus each one's kernel_verified().
std::uint32_t program_verified(const compiler::RequestDag& dag,
                               const std::vector<bool>& in_kernel = {});

// The error for a request that cannot be placed: names the node and why.
class PlanError : public std::runtime_error {
 public:
  PlanError(std::string node, std::string reason, const std::string& message)
      : std::runtime_error(message), node_(std::move(node)), reason_(std::move(reason)) {}
  const std::string& node() const { return node_; }
  // "no-implementation", "unreachable", "capacity", "limit", "memory", "solver"
  const std::string& reason() const { return reason_; }

 private:
  std::string node_, reason_;
};

// One problem node per vertex of the merged requests, in their numbering;
// `sources[r]` gives request r's positions in messages (null or missing:
// its DAG's file name). Throws PlanError when some node has no space left
// (with the reason).
Problem build_problem(const compiler::MergedRequests& merged,
                      std::span<const compiler::SourceFile* const> sources,
                      const SystemModel& model, const PlanOptions& options);
// The same for requests not merged yet: merge_inputs(), then the above.
Problem build_problem(const std::vector<RequestInput>& requests, const SystemModel& model,
                      const PlanOptions& options);

struct SolveInfo {
  std::string status;  // "optimal", "feasible (time limit)", "infeasible"
  double time_ms = 0;
  int columns = 0, rows = 0;
  bool lp_integral = false;  // the LP relaxation's optimum was already integral
};

// The MILP. `force` pins node -> space in addition (for explanations).
std::optional<Assignment> solve_milp(const Problem& p, SolveInfo* info = nullptr,
                                     std::optional<std::pair<std::size_t, std::size_t>> force = {},
                                     double time_limit_s = 10);
// Every assignment, for tests (small problems only).
std::optional<Assignment> solve_exhaustive(const Problem& p);
// "push processing down": each node in the lowest space that implements it
// and is reachable from its inputs. "all in userspace": every node in the
// first user space. Either may be infeasible (see evaluate()).
std::optional<Assignment> baseline_push_down(const Problem& p, std::string* why_not = nullptr);
std::optional<Assignment> baseline_all_user(const Problem& p, std::string* why_not = nullptr);

// ---- The plan --------------------------------------------------------------

struct Alternative {
  std::string space;
  // "chosen", "cost", "no-implementation", "pinned", "device", "capability",
  // "unreachable", "capacity", "limit", "memory"
  std::string verdict;
  std::string detail;
  std::optional<double> delta;  // objective change if the node ran there
};

struct NodePlan {
  std::string id;
  std::string name;  // of the first member: given, or derived (docs/counters.md)
  std::vector<std::string> members;
  std::string filter;
  std::string where;
  std::string space;
  std::string implementation;
  double rate_pps = 0;
  double cost_ns_per_s = 0;
  double ns_per_block = 0;
  std::string channel_in;  // channel kinds of the incoming edges ("" for sources)
  std::string why;
  std::vector<Alternative> alternatives;
};

struct EdgePlan {
  std::string from, to, select;
  std::string from_space, to_space;
  std::string channel;  // "call" when both ends share a space
  bool zero_copy = true;
  // Kernel to userspace: "copy" (the block also goes on to the stack) or
  // "take" (it leaves the stack), and why; empty elsewhere.
  std::string delivery;
  std::string delivery_why;
  std::vector<std::string> via;
  double rate_pps = 0;
  double cost_ns_per_s = 0;
  // Another edge of the same bundle that crosses to the same space and
  // carries the cost ("n2 53> n4"): these blocks ride on its copy.
  std::string crosses_with;
};

struct SpacePlan {
  std::string id;
  std::string kind;
  std::string device;  // xdp, tc, offload
  std::string mode;    // xdp: "native" or "generic", as the datapath attaches it
  double load_ns_per_s = 0;
  double capacity_ns_per_s = 0;
  double utilisation = 0;
  std::uint32_t ebpf_insns = 0;
  std::uint32_t ebpf_insn_limit = 0;
  // Kernel spaces: tcpdump expressions (BPF functions) and exits to
  // userspace, and the limits of the program that holds them (0: none).
  std::uint32_t ebpf_functions = 0;
  std::uint32_t ebpf_function_limit = 0;
  std::uint32_t ebpf_exits = 0;
  std::uint32_t ebpf_exit_limit = 0;
  // Kernel hooks: the verifier's work the program holding this space's
  // nodes takes at most (Problem::program_verified and its kernel nodes'),
  // and what it may take (0: no limit).
  std::uint32_t verifier_insns = 0;
  std::uint32_t verifier_limit = 0;
  std::size_t nodes = 0;
  // A replica set: its cores (its load is counted on them).
  std::vector<std::string> replicas;
};

struct BaselinePlan {
  std::string name;
  bool placed = false;    // the heuristic produced a placement
  bool feasible = false;  // ... that respects every constraint
  std::string reason;     // why not
  double objective = 0;
  double total_cost = 0;
  double max_utilisation = 0;
  std::vector<std::string> spaces;  // per node, like Plan::nodes
};

struct Plan {
  Objective objective = Objective::cost;
  double mix_weight = 0.5;
  double objective_value = 0;
  double total_cost_ns_per_s = 0;
  double max_utilisation = 0;
  double sustainable_rate_pps = 0;  // input rate / max utilisation
  double input_rate_pps = 0;
  double block_bytes = 0;
  double memory_traffic = 0;
  std::vector<NodePlan> nodes;  // nodes[v]: merged vertex v
  std::vector<EdgePlan> edges;
  std::vector<SpacePlan> spaces;
  std::vector<std::string> binding;
  std::vector<BaselinePlan> baselines;  // push-down, all-user
  std::vector<std::string> notes;
  SolveInfo solver;
  std::string model_origin;
  std::string profile;  // "catalog defaults" or the profile's host and date
};

// Compiles nothing: plans DAGs the compiler produced, merged once
// (build_problem). Throws PlanError.
Plan plan(const compiler::MergedRequests& merged,
          std::span<const compiler::SourceFile* const> sources, const SystemModel& model,
          const PlanOptions& options = {});
Plan plan(const std::vector<RequestInput>& requests, const SystemModel& model,
          const PlanOptions& options = {});

inline constexpr int kPlanJsonVersion = 1;
// `with_timing = false` leaves out the solver's time (for golden files).
nlohmann::ordered_json to_json(const Plan& p, bool with_timing = true);
std::string to_text(const Plan& p);
std::string to_dot(const Plan& p);

}  // namespace srl::optimizer
