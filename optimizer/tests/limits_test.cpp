// The limits of one generated kernel program (tcpdump expressions, exits to
// userspace, nodes) are in the model: a plan stays within them, and what
// cannot fit is placed in userspace or refused before anything deploys.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "compile_eth0.h"
#include "srl/compiler/compiler.h"
#include "srl/optimizer/optimizer.h"
#include "srl/runtime/kernel.h"

using namespace srl;
using namespace srl::optimizer;

// The runtime enforces the same numbers when it generates the program.
static_assert(kKernelFunctionLimit == runtime::kernel::kMaxExpressions);
static_assert(kKernelExitLimit == runtime::kernel::kMaxExits);
static_assert(kKernelNodeLimit == runtime::kernel::kMaxNodes);

namespace {

// xdp and tc on each device with the limits discovery gives them, and
// `cores` cores (one keeps the program small: no replica sets).
SystemModel host(const std::vector<std::string>& devices = {"eth0"}, std::uint32_t cores = 2,
                 std::uint32_t exit_limit = kKernelExitLimit) {
  SystemModel m;
  m.origin = "test";
  for (const auto& d : devices)
    for (Kind k : {Kind::xdp, Kind::tc}) {
      Space s{.id = std::string(to_string(k)) + ":" + d, .kind = k, .device = d};
      s.ebpf_insn_limit = 1'000'000;
      s.ebpf_function_limit = kKernelFunctionLimit;
      s.ebpf_exit_limit = exit_limit;
      m.spaces.push_back(s);
    }
  for (std::uint32_t c = 0; c < cores; ++c)
    m.spaces.push_back({.id = "user:" + std::to_string(c), .kind = Kind::user, .cpu = c});
  add_default_channels(m);
  return m;
}

using optimizer_tests::compile;

// Compiled requests and the planner's view of them (labels r0, r1, ...).
struct Requests {
  std::vector<compiler::CompileResult> compiled;
  std::vector<RequestInput> inputs() const {
    std::vector<RequestInput> in;
    for (std::size_t i = 0; i < compiled.size(); ++i)
      in.push_back({&*compiled[i].dag, "r" + std::to_string(i), compiled[i].source.get()});
    return in;
  }
};

// `n` requests (bpf, expr="udp port P") > (count), distinct ports, on `dev`.
void add_expressions(Requests& r, std::size_t n, const std::string& dev, int first_port) {
  for (std::size_t i = 0; i < n; ++i)
    r.compiled.push_back(compile("(rx, dev=" + dev + ") > (bpf, expr=\"udp port " +
                                 std::to_string(first_port + static_cast<int>(i)) +
                                 "\") > (count)"));
}

bool kernel(const std::string& space) {
  return space.starts_with("xdp:") || space.starts_with("tc:");
}

std::size_t placed(const Plan& p, std::string_view filter, bool in_kernel) {
  return static_cast<std::size_t>(std::count_if(p.nodes.begin(), p.nodes.end(), [&](const auto& n) {
    return n.filter == filter && kernel(n.space) == in_kernel;
  }));
}

bool has(const std::vector<std::string>& lines, const std::string& text) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(text) != std::string::npos; });
}

PlanOptions slow() {
  PlanOptions o;
  o.input_rate_pps = 1e3;  // far from any capacity: only the limits bind
  return o;
}

}  // namespace

TEST_CASE("256 tcpdump expressions on one hook: 255 in the kernel program, one in userspace") {
  Requests r;
  add_expressions(r, 256, "eth0", 1000);
  const Plan p = plan(r.inputs(), host({"eth0"}, 1), slow());
  CHECK(placed(p, "bpf", true) == 255);
  CHECK(placed(p, "bpf", false) == 1);
  std::uint32_t in_kernel = 0;
  for (const auto& s : p.spaces)
    if (kernel(s.id)) {
      CHECK(s.ebpf_functions <= kKernelFunctionLimit);
      CHECK(s.ebpf_function_limit == kKernelFunctionLimit);
      in_kernel += s.ebpf_functions;
    }
  CHECK(in_kernel == 255);
  CHECK(has(p.binding, "BPF function limit of xdp:eth0: 255 of 255 tcpdump expressions"));
  // The expression left in userspace says why it is not in the kernel.
  const auto user = std::find_if(p.nodes.begin(), p.nodes.end(), [](const NodePlan& n) {
    return n.filter == "bpf" && !kernel(n.space);
  });
  REQUIRE(user != p.nodes.end());
  bool said = false;
  for (const auto& a : user->alternatives)
    if (a.space == "xdp:eth0")
      said = a.verdict == "limit" && a.detail.find(
                                         "would hold 256 tcpdump expressions; a kernel "
                                         "program holds at most 255") != std::string::npos;
  CHECK(said);
  // Push-down puts all 256 in XDP: evaluated, not crashed, and infeasible.
  REQUIRE(p.baselines.size() == 2);
  CHECK(p.baselines[0].name == "push-down");
  CHECK(p.baselines[0].placed);
  CHECK_FALSE(p.baselines[0].feasible);
  CHECK(p.baselines[0].reason ==
        "limit: xdp:eth0 would hold 256 tcpdump expressions; a kernel program holds at most 255 "
        "(each is a BPF function)");
  CHECK(p.baselines[1].feasible);  // all-user has no kernel program

  // Without userspace they cannot be placed, and the error says why.
  try {
    (void)plan(r.inputs(), host({"eth0"}, 0), slow());
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.reason() == "limit");
    CHECK(std::string(e.what()) ==
          "cannot place the request: no placement satisfies every constraint; the cheapest "
          "placement breaks limit: xdp:eth0 would hold 256 tcpdump expressions; a kernel program "
          "holds at most 255 (each is a BPF function); plan fewer requests together");
  }

  // 255 fit: all in the kernel, and the row that could not bind is left
  // out (the program is the one without the limit).
  r.compiled.pop_back();
  const Problem q = build_problem(r.inputs(), host({"eth0"}, 1), slow());
  SolveInfo info, unlimited;
  const auto a = solve_milp(q, &info);
  REQUIRE(a.has_value());
  const Evaluation ev = evaluate(q, *a);
  CHECK(ev.feasible);
  CHECK(ev.functions[0] + ev.functions[1] == 255);
  Problem q0 = q;
  for (auto& s : q0.spaces)
    s.ebpf_function_limit = 0;
  REQUIRE(solve_milp(q0, &unlimited).has_value());
  CHECK(info.rows == unlimited.rows);
}

TEST_CASE("the devices' hooks share one program: their expressions count together") {
  // The runtime generates each hooked device's program from every kernel
  // node of the plan, so 130 + 130 expressions do not fit beside each other.
  Requests r;
  add_expressions(r, 130, "eth0", 1000);
  add_expressions(r, 130, "eth1", 2000);
  const Plan p = plan(r.inputs(), host({"eth0", "eth1"}, 1), slow());
  CHECK(placed(p, "bpf", true) == 255);
  CHECK(placed(p, "bpf", false) == 5);
  CHECK(
      has(p.binding, "BPF function limit of the kernel program on xdp:eth0, xdp:eth1: 255 of 255"));
  CHECK_FALSE(p.baselines[0].feasible);
  CHECK(p.baselines[0].reason.starts_with(
      "limit: xdp:eth0 and xdp:eth1 (one program on every hook: 130 + 130) would hold 260 tcpdump "
      "expressions"));
}

TEST_CASE("33 requests each with a kernel part and a userspace part: at most 32 exits") {
  // Each request's expression runs best in XDP, and its print runs only in
  // userspace: one edge up per request, unless udp itself goes up.
  Requests r;
  for (int port = 1; port <= 33; ++port)
    r.compiled.push_back(
        compile("(udp) > (bpf, expr=\"dst port " + std::to_string(port) + "\") > (print)"));
  PlanOptions o;
  o.input_rate_pps = 1e5;
  auto exits = [](const Plan& p) {
    std::size_t n = 0;
    for (const auto& e : p.edges)
      if (kernel(e.from_space) && !kernel(e.to_space)) ++n;
    return n;
  };
  auto space_of = [](const Plan& p, std::string_view filter) {
    for (const auto& n : p.nodes)
      if (n.filter == filter) return n.space;
    return std::string();
  };
  // Without the limit: every expression in XDP, 33 edges leave it.
  const Plan free = plan(r.inputs(), host({"eth0"}, 2, 0), o);
  CHECK(placed(free, "bpf", true) == 33);
  CHECK(exits(free) == 33);
  // With it: udp goes up with everything below it, one edge leaves XDP.
  const Plan p = plan(r.inputs(), host(), o);
  CHECK(space_of(p, "rx") == "xdp:eth0");
  CHECK(space_of(p, "udp").starts_with("user:"));
  CHECK(placed(p, "bpf", true) == 0);
  CHECK(exits(p) == 1);
  for (const auto& s : p.spaces)
    if (kernel(s.id)) {
      CHECK(s.ebpf_exits <= kKernelExitLimit);
      CHECK(s.ebpf_exit_limit == kKernelExitLimit);
    }
  // Push-down keeps every expression in XDP: infeasible, and it says why.
  CHECK(p.baselines[0].placed);
  CHECK_FALSE(p.baselines[0].feasible);
  CHECK(p.baselines[0].reason ==
        "limit: xdp:eth0 would send 33 edges up to userspace; a kernel program has at most 32 "
        "exits");
}

TEST_CASE("more than 1000 filters planned together fit no hook's program") {
  const auto one = compile("(count)");  // rx shared by all, a counter each
  std::vector<RequestInput> in;
  for (int i = 0; i < 999; ++i)
    in.push_back({&*one.dag, "r" + std::to_string(i), one.source.get()});
  CHECK(build_problem(in, host(), slow()).nodes.size() == 1000);
  in.push_back({&*one.dag, "r999", one.source.get()});
  try {
    (void)build_problem(in, host(), slow());
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.reason() == "limit");
    CHECK(std::string(e.what()).starts_with(
        "cannot place the requests: limit: the requests hold 1001 filters (shared prefixes "
        "counted once); one hook's program holds at most 1000"));
  }
  CHECK_THROWS_WITH_AS(plan(in, host(), slow()), doctest::Contains("hold 1001 filters"), PlanError);
}
