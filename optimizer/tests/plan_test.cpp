// Placement behaviour on a fixed model: eth0 with xdp and tc, two cores
// (and an emulated offload device where asked).
#include <doctest/doctest.h>

#include <iterator>
#include <sstream>

#include <thread>

#include <nlohmann/json.hpp>

#include "compile_eth0.h"
#include "srl/compiler/compiler.h"
#include "srl/optimizer/optimizer.h"
#include "tcpdump_expressions.h"

using namespace srl;
using namespace srl::optimizer;

namespace {

SystemModel host(bool offload = false, std::uint32_t insn_limit = 1'000'000) {
  SystemModel m;
  m.origin = "test";
  if (offload)
    m.spaces.push_back({.id = "offload:eth0",
                        .kind = Kind::offload,
                        .device = "eth0",
                        .emulated = true,
                        .capacity_ns_per_s = 4e9,
                        .ebpf_insn_limit = 2048});
  m.spaces.push_back({.id = "xdp:eth0",
                      .kind = Kind::xdp,
                      .device = "eth0",
                      .mode = "native",
                      .ebpf_insn_limit = insn_limit});
  m.spaces.push_back(
      {.id = "tc:eth0", .kind = Kind::tc, .device = "eth0", .ebpf_insn_limit = insn_limit});
  m.spaces.push_back({.id = "user:0", .kind = Kind::user, .cpu = 0u});
  m.spaces.push_back({.id = "user:1", .kind = Kind::user, .cpu = 1u});
  add_default_channels(m);
  return m;
}

struct Planned {
  compiler::CompileResult r;
  Plan plan;
  const NodePlan& node(std::string_view filter) const {
    for (const auto& n : plan.nodes)
      if (n.filter == filter) return n;
    FAIL("no node " << filter);
    return plan.nodes.front();
  }
};

using optimizer_tests::compile;

Planned run(const std::string& text, const SystemModel& m = host(), PlanOptions o = {}) {
  Planned p{compile(text), {}};
  p.plan = plan({{&*p.r.dag, "", p.r.source.get()}}, m, o);
  return p;
}

}  // namespace

TEST_CASE("a pure L2-L4 request runs entirely in XDP") {
  const auto p = run("(eth) > (ipv4) > (udp) > (port, which=dst) 53> (count)");
  for (const auto& n : p.plan.nodes)
    CHECK_MESSAGE(n.space == "xdp:eth0", n.id << " " << n.filter);
  CHECK(p.plan.solver.status == "optimal");
  // Cheaper than doing it all in userspace; push-down finds the same here.
  CHECK(p.plan.baselines[1].name == "all-user");
  CHECK(p.plan.objective_value < p.plan.baselines[1].objective);
  CHECK(p.plan.objective_value == doctest::Approx(p.plan.baselines[0].objective));
}

TEST_CASE("(tcp) > (http) > (print): tcp in the kernel, the rest in userspace on copies") {
  const auto p = run("(tcp) > (http) > (print)");
  CHECK(p.node("tcp").space == "xdp:eth0");
  CHECK(p.node("http").space.rfind("user:", 0) == 0);
  CHECK(p.node("print").space == p.node("http").space);
  CHECK(p.node("http").channel_in == "ringbuf");
  CHECK(p.node("print").channel_in == "call");
  // Nothing consumes the block in userspace: it is copied, and the plan says so.
  const auto& up = p.plan.edges[1];
  CHECK(up.to_space.rfind("user:", 0) == 0);
  CHECK(up.delivery == "copy");
  CHECK(up.delivery_why.find("only observes") != std::string::npos);
  CHECK(p.plan.edges[2].delivery.empty());  // user to user
  // http has no kernel implementation, and the explanation says so.
  bool said = false;
  for (const auto& a : p.node("http").alternatives)
    if (a.space == "xdp:eth0")
      said = a.verdict == "no-implementation" && a.detail.find("no kernel") != std::string::npos;
  CHECK(said);
  // The chosen node's alternatives in userspace lost on cost (a delta is given).
  for (const auto& a : p.node("tcp").alternatives)
    if (a.space == "user:0") {
      CHECK(a.verdict == "cost");
      CHECK(a.delta.value() > 0);
    }
}

TEST_CASE("copy or take: a userspace drop or forward takes, everything else copies") {
  // dns runs in userspace only; the drop below it consumes the block there.
  const auto take = run("(udp) > (dns) > (drop)");
  const EdgePlan* up = nullptr;
  for (const auto& e : take.plan.edges)
    if (e.to_space.rfind("user:", 0) == 0 && e.from_space.rfind("user:", 0) != 0) up = &e;
  REQUIRE(up != nullptr);
  CHECK(up->delivery == "take");
  CHECK(up->delivery_why.find("consumed in userspace by n3 (drop)") != std::string::npos);
  CHECK(up->channel == "afxdp");  // AF_XDP is the cheapest channel that takes from XDP
  // A mirror observes: copied; a forward consumes: taken.
  const auto mirror = run("(udp) > (dns) > (tx, dev=eth0)");
  const auto forward = run("(udp) > (dns) > (tx, dev=eth0, mode=forward)");
  for (const auto* p : {&mirror, &forward})
    for (const auto& e : p->plan.edges)
      if (e.to_space.rfind("user:", 0) == 0 && e.from_space.rfind("user:", 0) != 0)
        CHECK(e.delivery == (p == &mirror ? "copy" : "take"));
  // A drop the kernel can run stays there: nothing goes up at all.
  const auto kernel = run("(udp) > (port) 53> (drop)");
  for (const auto& e : kernel.plan.edges)
    CHECK(e.delivery.empty());
}

TEST_CASE("copy or take: what no datapath can do is refused before deploying") {
  // A pass after a take cannot hand the block back to the stack.
  auto r = compile("(udp) > (dns) > ((drop) | (pass))");
  CHECK_THROWS_WITH_AS(plan({{&*r.dag, "", r.source.get()}}, host()),
                       doctest::Contains("a userspace pass cannot hand them back"), PlanError);
  // An rx in userspace (AF_PACKET) only gets copies: nothing below can take.
  auto u = compile("(rx, dev=eth0, space=user) > (udp) > (drop)");
  try {
    plan({{&*u.dag, "", u.source.get()}}, host());
    FAIL("planned a userspace rx with a drop below it");
  } catch (const PlanError& e) {
    CHECK(e.reason() == "delivery");
    CHECK(std::string(e.what()).find("its socket only gets copies") != std::string::npos);
  }
  // Copies are fine with a pass below.
  CHECK_NOTHROW(run("(udp) > (dns) > (pass)"));
}

TEST_CASE("tx runs in the kernel at TC only; at XDP it is excluded with the reason") {
  const auto p = run("(tcp) > (tx, dev=eth0, mode=forward)");
  CHECK(p.node("tx").space == "tc:eth0");
  bool said = false;
  for (const auto& a : p.node("tx").alternatives)
    if (a.space == "xdp:eth0")
      said = a.verdict == "capability" && a.detail.find("at TC only") != std::string::npos;
  CHECK(said);
}

TEST_CASE("space= pins are honoured, and data never flows down") {
  const auto p = run("(tcp, space=user) > (count)");
  CHECK(p.node("tcp").space.rfind("user:", 0) == 0);
  CHECK(p.node("tcp").why.rfind("pinned with space=user", 0) == 0);
  CHECK(p.node("count").space.rfind("user:", 0) == 0);  // count cannot go back down
  bool listed = false;
  for (const auto& b : p.plan.binding)
    listed = listed || b.find("pin space=user on n1 (tcp)") != std::string::npos;
  CHECK(listed);

  const auto q = run("(tcp, space=tc) > (count)");
  CHECK(q.node("tcp").space == "tc:eth0");
}

TEST_CASE("infeasible requests name the filter and the reason") {
  auto r = compile("(http) > (count, space=xdp)");
  // http runs only in userspace; its output is pinned below it.
  try {
    (void)plan({{&*r.dag, "", r.source.get()}}, host());
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.node() == "n1");
    CHECK(e.reason() == "unreachable");
    CHECK(std::string(e.what()).find("cannot place n1 (http) at <expr>:1:1") == 0);
    CHECK(std::string(e.what()).find("its output n2 (count, space=xdp) can run only in xdp:eth0") !=
          std::string::npos);
    CHECK(std::string(e.what()).find("data moves only up") != std::string::npos);
  }

  SystemModel kernel_only = host();
  std::erase_if(kernel_only.spaces, [](const Space& s) { return s.kind == Kind::user; });
  std::erase_if(kernel_only.channels,
                [&](const Channel& c) { return !kernel_only.find_space(c.to); });
  auto t = compile("(tcp) > (tcpstream) > (count)");
  try {
    (void)plan({{&*t.dag, "", t.source.get()}}, kernel_only);
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.node() == "n2");
    CHECK(e.reason() == "no-implementation");
    CHECK(std::string(e.what()).find("tcpstream has no kernel implementation") !=
          std::string::npos);
  }

  // 10 Mpps of print lines do not fit on a core.
  PlanOptions fast;
  fast.input_rate_pps = 1e7;
  auto u = compile("(tcp) > (print)");
  try {
    (void)plan({{&*u.dag, "", u.source.get()}}, host(), fast);
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.reason() == "capacity");
    CHECK(std::string(e.what()).find("n2 (print)") != std::string::npos);
  }

  auto w = compile("(rx, dev=eth9) > (count)");
  CHECK_THROWS_WITH_AS(plan({{&*w.dag, "", w.source.get()}}, host()),
                       doctest::Contains("device eth9 is not in the system model"), PlanError);
}

TEST_CASE("the eBPF instruction limit of a kernel space is respected") {
  // 8 + 14 + 14 instructions do not fit in 30: something moves up.
  const auto p = run("(ipv4) > (tcp) > (port) 22> (count)", host(false, 30));
  for (const auto& s : p.plan.spaces)
    if (s.ebpf_insn_limit > 0) CHECK(s.ebpf_insns <= 30);
  const auto q = run("(ipv4) > (tcp) > (port) 22> (count)", host(false, 1'000'000));
  CHECK(q.plan.objective_value < p.plan.objective_value);
}

TEST_CASE("the verifier's budget of a hook's program is a capacity: what does not fit moves up") {
  // The hash alone takes the verifier ~900 instructions (its bound 1,800
  // once and 780 for the node): under a limit just above what the program
  // takes whatever it holds, it runs in userspace, and the plan says why.
  auto on = [](std::uint32_t limit) {
    auto m = host();
    for (auto& s : m.spaces)
      if (s.kind == Kind::xdp || s.kind == Kind::tc) s.verifier_limit = limit;
    return m;
  };
  const std::string request = "(udp) > (hash, buckets=8) 3> (count)";
  const auto roomy = run(request, on(1'000'000));
  CHECK(roomy.node("hash").space.rfind("user", 0) != 0);
  const auto tight = run(request, on(12'000));
  CHECK(tight.node("udp").space.rfind("user", 0) != 0);
  CHECK(tight.node("hash").space.rfind("user", 0) == 0);
  bool said = false;
  for (const auto& s : tight.plan.spaces)
    if (s.verifier_limit > 0) {
      CHECK(s.verifier_limit == 12'000);
      CHECK(s.verifier_insns <= 12'000);
      CHECK(s.verifier_insns > 9'000);  // the parse and the exits at least
    }
  for (const auto& b : tight.plan.binding)
    said = said || b.find("verifier budget") != std::string::npos;
  CHECK(said);
  // Below what the program takes whatever it holds, nothing fits.
  CHECK_THROWS_WITH_AS(run(request, on(5'000)), doctest::Contains("of the verifier's instructions"),
                       PlanError);
}

TEST_CASE("the userspace part runs on one core or a replica set, never pipelined over two") {
  // At 12 Mpps a userspace rx on one core and the rest on the other looked
  // cheapest; the engine runs every userspace node on the same workers, so
  // one core must carry what cannot be replicated (rx, count), and cannot.
  PlanOptions o;
  o.input_rate_pps = 1.2e7;
  o.max_replicas = 2;
  const std::string request = "(ip, space=user) > (count) | (tcp) > (port, space=user) 22> (count)";
  CHECK_THROWS_WITH_AS(run(request, host(), o), doctest::Contains("breaks capacity"), PlanError);
  // At 10 Mpps one core carries it all.
  o.input_rate_pps = 1e7;
  const auto p = run(request, host(), o);
  std::set<std::string> cores;
  for (const auto& n : p.plan.nodes)
    if (n.space.starts_with("user:")) cores.insert(n.space);
  CHECK(cores.size() == 1);
  // A placement on two cores is no plan: evaluate says why.
  const auto r = compile("(ip, space=user) > (count, space=user)");
  const Problem problem = build_problem({{&*r.dag, "", r.source.get()}}, host(), PlanOptions{});
  Assignment two(problem.nodes.size(), 0);
  for (std::size_t v = 0; v < problem.nodes.size(); ++v)
    for (std::size_t s = 0; s < problem.spaces.size(); ++s)
      if (problem.spaces[s].id == (v == 0 ? "xdp:eth0" : v == 1 ? "user:0" : "user:1")) two[v] = s;
  const Evaluation ev = evaluate(problem, two);
  CHECK_FALSE(ev.feasible);
  CHECK(ev.violation.find("userspace nodes on user:0 and user:1") != std::string::npos);
}

TEST_CASE("an offload space takes header filters first") {
  const auto p = run("(ipv4) > (udp) > (len, min=100) > (count)", host(true));
  CHECK(p.node("ipv4").space == "offload:eth0");
  CHECK(p.node("udp").space == "offload:eth0");
  CHECK(p.node("ipv4").implementation.find("emulator") != std::string::npos);
}

TEST_CASE("identical stateless prefixes of several requests are one node") {
  auto a = compile("(tcp) > (port) 22> (count)");
  auto b = compile("(tcp) > (port) 80> (count)");
  const Plan p = plan({{&*a.dag, "a", a.source.get()}, {&*b.dag, "b", b.source.get()}}, host());
  REQUIRE(p.nodes.size() == 5);  // rx, tcp, port shared; two counters
  CHECK(p.nodes[0].members == std::vector<std::string>{"a/n0", "b/n0"});
  CHECK(p.nodes[1].members == std::vector<std::string>{"a/n1", "b/n1"});
  CHECK(p.nodes[2].members == std::vector<std::string>{"a/n2", "b/n2"});
  CHECK(p.nodes[3].members.size() == 1);  // count is stateful: never shared
  CHECK(p.edges.size() == 4);
  // Planning them separately costs more.
  const Plan pa = plan({{&*a.dag, "", a.source.get()}}, host());
  const Plan pb = plan({{&*b.dag, "", b.source.get()}}, host());
  CHECK(p.total_cost_ns_per_s < pa.total_cost_ns_per_s + pb.total_cost_ns_per_s);
}

TEST_CASE("the plan is of the merged requests: node v is merged vertex v") {
  compiler::CompileOptions co;  // no default device: rx binds to the model's
  co.file_name = "b.srl";
  auto a = compile("(udp) > (port, which=dst) 53> (count)");
  auto b = compiler::compile("(rx) > (ipv4) > (count)", co);
  REQUIRE(b.ok());
  const std::vector<RequestInput> in = {{&*a.dag, "r1", a.source.get()},
                                        {&*b.dag, "r2", b.source.get()}};
  const MergedInputs merged = merge_inputs(in);
  const Plan p = plan(merged.merged, merged.sources, host());
  REQUIRE(p.nodes.size() == merged.merged.dag.node_count());
  for (std::size_t v = 0; v < p.nodes.size(); ++v)
    CHECK(p.nodes[v].members == merged.merged.members[v]);
  // r2's rx names no device: another vertex than r1's (rx dev=eth0), bound
  // to the model's only device.
  CHECK(p.nodes[4].members == std::vector<std::string>{"r2/n0"});
  CHECK(p.nodes[4].space != "");
  // With two devices it cannot be bound; the error names the node where it
  // is written.
  SystemModel two = host();
  two.spaces.push_back({.id = "xdp:eth1", .kind = Kind::xdp, .device = "eth1"});
  two.channels.clear();
  add_default_channels(two);
  CHECK_THROWS_WITH_AS(plan(merged.merged, merged.sources, two),
                       "cannot place r2/n0 (rx) at b.srl:1:1: it names no device and the system "
                       "model has 2 (eth0, eth1); give one with --dev or rx dev=",
                       PlanError);
}

TEST_CASE("captures sharing a prefix: the kernel hands each block up once for all of them") {
  // N captures of the same selection: the program copies a block once,
  // whatever the number of exits it takes, so the shared prefix stays in
  // the kernel and each capture adds only its own pcap.
  std::vector<compiler::CompileResult> reqs;
  for (int i = 0; i < 16; ++i)
    reqs.push_back(
        compile("(udp) > (port, which=dst) 53> (pcap, file=\"c" + std::to_string(i) + ".pcap\")"));
  auto plan_n = [&](std::size_t n) {
    std::vector<RequestInput> in;
    for (std::size_t i = 0; i < n; ++i)
      in.push_back({&*reqs[i].dag, "r" + std::to_string(i), reqs[i].source.get()});
    return plan(in, host());
  };
  const Plan one = plan_n(1), many = plan_n(16);
  auto space_of = [](const Plan& p, std::string_view filter) {
    for (const auto& n : p.nodes)
      if (n.filter == filter) return n.space;
    return std::string();
  };
  CHECK(space_of(many, "port") == "xdp:eth0");
  std::size_t paying = 0, riding = 0;
  std::string payer;
  double crossing = 0;
  for (const auto& e : many.edges) {
    if (e.from_space != "xdp:eth0" || e.to_space.rfind("user:", 0) != 0) continue;
    CHECK(e.delivery == "copy");
    if (e.crosses_with.empty()) {
      ++paying;
      payer = e.from + " " + e.select + " " + e.to;
      crossing = e.cost_ns_per_s;
    } else {
      ++riding;
      CHECK(e.cost_ns_per_s == 0);
    }
  }
  CHECK(paying == 1);
  CHECK(riding == 15);
  CHECK(crossing > 0);
  for (const auto& e : many.edges)
    if (!e.crosses_with.empty()) CHECK(e.crosses_with == payer);
  // Fifteen more captures cost fifteen pcaps, no crossing.
  double pcap = 0;
  for (const auto& n : one.nodes)
    if (n.filter == "pcap") pcap = n.cost_ns_per_s;
  CHECK(many.total_cost_ns_per_s == doctest::Approx(one.total_cost_ns_per_s + 15 * pcap));
  // The text says which crossing the others ride on.
  CHECK(to_text(many).find("one crossing with " + payer) != std::string::npos);
}

TEST_CASE("throughput spreads heavy userspace filters over the cores") {
  const std::string req = "(tcp) > ((match, pattern=\"a\") | (match, pattern=\"b\")) > (count)";
  PlanOptions o;
  o.input_rate_pps = 5e5;
  const auto cost = run(req, host(), o);
  o.objective = Objective::throughput;
  const auto thr = run(req, host(), o);
  CHECK(thr.plan.max_utilisation < cost.plan.max_utilisation);
  // The two matches run on both cores: replicated, or one on each.
  std::set<std::string> match_spaces;
  for (const auto& n : thr.plan.nodes)
    if (n.filter == "match") match_spaces.insert(n.space);
  CHECK((match_spaces == std::set<std::string>{"user:0-1"} ||
         match_spaces == std::set<std::string>{"user:0", "user:1"}));
  CHECK(thr.plan.sustainable_rate_pps > cost.plan.sustainable_rate_pps);
  bool bottleneck = false;
  for (const auto& b : thr.plan.binding)
    bottleneck = bottleneck || b.rfind("bottleneck", 0) == 0;
  CHECK(bottleneck);
  o.objective = Objective::mix;
  o.mix_weight = 0.5;
  const auto mix = run(req, host(), o);
  CHECK(mix.plan.max_utilisation <= cost.plan.max_utilisation + 1e-9);
  CHECK(mix.plan.total_cost_ns_per_s <= thr.plan.total_cost_ns_per_s + 1e-6);
}

TEST_CASE("plan outputs: JSON fields, text table, DOT clusters") {
  const auto p = run("(tcp) > (http) > (print)");
  const auto j = to_json(p.plan);
  CHECK(j["srl_plan_version"] == 1);
  CHECK(j["objective"]["kind"] == "cost");
  CHECK(j["nodes"].size() == 4);
  CHECK(j["nodes"][1]["space"] == "xdp:eth0");
  CHECK(j["edges"][1]["channel"] == "ringbuf");
  CHECK(j["edges"][1]["delivery"] == "copy");
  CHECK_FALSE(j["edges"][2].contains("delivery"));
  CHECK(j["baselines"][0]["name"] == "push-down");
  CHECK(j["solver"].contains("time_ms"));
  CHECK_FALSE(to_json(p.plan, false)["solver"].contains("time_ms"));
  const std::string text = to_text(p.plan);
  CHECK(text.rfind("node  name ", 0) == 0);
  {
    std::istringstream header(text.substr(0, text.find('\n')));
    std::vector<std::string> words{std::istream_iterator<std::string>(header), {}};
    CHECK(words ==
          std::vector<std::string>{"node", "name", "filter", "space", "channel", "cost", "why"});
  }
  CHECK(text.find("baseline all-user") != std::string::npos);
  CHECK(text.find("    copy: the userspace part only observes") != std::string::npos);
  const std::string dot = to_dot(p.plan);
  CHECK(dot.find("subgraph cluster_0") != std::string::npos);
  CHECK(dot.find("label=\"ringbuf\"") != std::string::npos);
}

TEST_CASE("data parallelism: replicas behind a flow-hash split when one core is not enough") {
  PlanOptions o;
  o.input_rate_pps = 2e6;  // http + print need about 1.4 CPUs
  const auto p = run("(tcp) > (http) > (print)", host(), o);
  CHECK(p.node("tcp").space == "xdp:eth0");
  CHECK(p.node("http").space == "user:0-1");
  CHECK(p.node("print").space == "user:0-1");
  CHECK(p.node("http").implementation == "native, 2 replicas behind a flow-hash split");
  CHECK(p.node("print").channel_in == "call");  // each replica feeds its own print
  for (const auto& s : p.plan.spaces)
    if (s.kind == "user" && s.replicas.empty()) CHECK(s.utilisation <= 1.0 + 1e-9);
  const auto j = to_json(p.plan);
  bool listed = false;
  for (const auto& s : j["spaces"])
    if (s["id"] == "user:0-1")
      listed = s["replicas"].get<std::vector<std::string>>() ==
               std::vector<std::string>{"user:0", "user:1"};
  CHECK(listed);

  // http alone needs more than a core at 3 Mpps: replicas, or no plan.
  o.input_rate_pps = 3e6;
  const auto q = run("(tcp) > (http) > (count)", host(), o);
  CHECK(q.node("http").space == "user:0-1");
  CHECK(q.node("count").space.rfind("user:", 0) == 0);
  // Global state is never replicated.
  for (const auto& a : q.node("count").alternatives)
    if (a.space == "user:0-1") {
      CHECK(a.verdict == "parallel");
      CHECK(a.detail == "count keeps global state; it runs on one core");
    }
  o.parallel = false;
  auto r = compile("(tcp) > (http) > (count)");
  CHECK_THROWS_WITH_AS(plan({{&*r.dag, "", r.source.get()}}, host(), o),
                       doctest::Contains("would need 110% of a CPU, it has "
                                         "100% of a CPU; its largest user is n2 (http)"),
                       PlanError);
}

TEST_CASE("an instruction limit no placement can meet is an error naming the largest user") {
  SystemModel m;
  m.spaces.push_back({.id = "xdp:eth0",
                      .kind = Kind::xdp,
                      .device = "eth0",
                      .mode = "native",
                      .ebpf_insn_limit = 20});
  auto r = compile("(ipv4) > (tcp) > (drop)");  // 8 + 14 + 2 instructions
  try {
    (void)plan({{&*r.dag, "", r.source.get()}}, m);
    FAIL("expected a PlanError");
  } catch (const PlanError& e) {
    CHECK(e.reason() == "limit");
    CHECK(e.node() == "n2");
    CHECK(std::string(e.what()) ==
          "cannot place the request: no placement satisfies every constraint; the cheapest "
          "placement breaks limit: xdp:eth0 would need 24 eBPF instructions, its limit is 20; its "
          "largest user is n2 (tcp) at <expr>:1:10 with 14 instructions");
  }
}

TEST_CASE("plans may be computed from several threads at once") {
  auto r = compile("(tcp) > ((match, pattern=\"a\") | (http)) > (count)");
  const std::string expected = to_json(plan({{&*r.dag, "", r.source.get()}}, host()), false).dump();
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (std::size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i)
        same[t] += to_json(plan({{&*r.dag, "", r.source.get()}}, host()), false).dump() == expected;
    });
  for (auto& t : threads)
    t.join();
  CHECK(same == std::vector<int>(4, 10));
}

TEST_CASE("a hook's own cost moves the device's rx, and what follows it, to the cheaper hook") {
  // As `srl calibrate` measures a veth: XDP copies each frame it sees.
  SystemModel m = host();
  for (auto& s : m.spaces) {
    if (s.kind == Kind::xdp) s.hook_ns_per_block = 250;
    if (s.kind == Kind::tc) s.hook_ns_per_block = 60;
  }
  const char* watch = "(udp) > (port, which=dst) 53> (pcap, file=\"/tmp/x.pcap\")";
  const Planned cheap_tc = run(watch, m);
  CHECK(cheap_tc.node("rx").space == "tc:eth0");
  CHECK(cheap_tc.node("udp").space == "tc:eth0");
  CHECK(cheap_tc.node("port").space == "tc:eth0");
  CHECK(cheap_tc.node("pcap").space.rfind("user:", 0) == 0);
  // Without the hook costs the tie goes to the lower space, XDP.
  CHECK(run(watch).node("rx").space == "xdp:eth0");
  // The other way round (a NIC whose driver runs XDP before any socket
  // buffer exists), XDP wins.
  for (auto& s : m.spaces)
    if (s.kind == Kind::xdp) s.hook_ns_per_block = 5;
  CHECK(run(watch, m).node("rx").space == "xdp:eth0");
  // A space= pin still wins over the hook's cost.
  for (auto& s : m.spaces)
    if (s.kind == Kind::xdp) s.hook_ns_per_block = 250;
  CHECK(run("(udp, space=xdp) > (count)", m).node("udp").space == "xdp:eth0");
}

TEST_CASE("classic BPF that jumps back (protochain's loop) is placed in userspace, and says why") {
  const auto p = run("(bpf, expr=\"ip6 protochain 6\") > (count)");
  const auto& bpf = p.node("bpf");
  CHECK(bpf.space.starts_with("user"));
  bool refused = false;
  for (const auto& a : bpf.alternatives)
    if (a.space == "xdp:eth0" || a.space == "tc:eth0") {
      CHECK(a.verdict == "capability");
      CHECK(a.detail.find("jumps back (instruction 18") != std::string::npos);
      refused = true;
    }
  CHECK(refused);
  // Without the loop, the same filter is the kernel's.
  CHECK_FALSE(run("(bpf, expr=\"ip6 and tcp\") > (count)").node("bpf").space.starts_with("user"));
}

TEST_CASE("requests planned together share a node only where its input and selector are the same") {
  // "11>": vertex 1's class 1, or vertex 11's every block.
  const auto a = compile("(hash, buckets=4) 1> (eth) > (count)");
  const auto b = compile(
      "(udp) > (tcp) > (icmp) > (arp) > (ip) > (ipv6) > (proto) > (len, min=60) > (eth) > (count)");
  const auto p = plan({{&*a.dag, "r1", a.source.get()}, {&*b.dag, "r2", b.source.get()}}, host());
  std::size_t eths = 0;
  for (const auto& n : p.nodes)
    if (n.filter == "eth") {
      ++eths;
      CHECK(n.members.size() == 1);
    }
  CHECK(eths == 2);
}

TEST_CASE("a search that finds nothing better stops, and the plan says it is not proven optimal") {
  // 100 tcpdump expressions on one hook at 1 Mpps need a little more than
  // the hook's CPU: which of them go up to userspace (the crossing paid once
  // for all of them) is a search the relaxation bounds weakly. It found its
  // last improvement early and ran on to the time limit; now it stops once
  // it finds nothing better for a while, and says so with the gap.
  std::vector<compiler::CompileResult> compiled;
  std::vector<RequestInput> inputs;
  for (const auto& e : srl::testing::tcpdump_expressions(100))
    compiled.push_back(compile("(bpf, expr=\"" + e + "\") > (count)"));
  for (std::size_t i = 0; i < compiled.size(); ++i)
    inputs.push_back({&*compiled[i].dag, "r" + std::to_string(i + 1), compiled[i].source.get()});
  const auto p = plan(inputs, host(), {.time_limit_s = 60});
  INFO(p.solver.status);
  CHECK(p.solver.status.find("search stopped after 300 ms without a better solution") !=
        std::string::npos);
  CHECK(p.solver.status.find("above the optimum") != std::string::npos);
  CHECK(p.solver.status.find("time limit") == std::string::npos);
  // Most of the expressions stay in the kernel; what moves is counted there.
  std::size_t in_kernel = 0;
  for (const auto& n : p.nodes)
    if (n.filter == "bpf" && n.space.rfind("user", 0) != 0) ++in_kernel;
  CHECK(in_kernel > 80);
  CHECK(in_kernel < 100);
}

TEST_CASE("the XDP mode is the cheaper one the profile measured, unless the caller fixed it") {
  // A veth as `srl calibrate` measures it: generic XDP ~130 ns per frame,
  // native ~220 (its own page per frame), TC dearer still here so that the
  // device's requests run at XDP.
  SystemModel m = host();
  for (auto& s : m.spaces)
    if (s.kind == Kind::xdp || s.kind == Kind::tc) {
      s.driver = "veth";
      if (s.kind == Kind::xdp) s.capabilities = {"prog:xdp", "xdp:native", "xdp:xsk_zerocopy"};
    }
  m.channels.clear();
  add_default_channels(m);  // AF_XDP zero-copy from xdp:eth0, as its driver has it
  Profile profile;
  profile.hooks["veth"] = {
      {"tc", {400, 0}}, {"xdp-native", {220, 0.04}}, {"xdp-generic", {130, 0}}};
  profile.filters["rx"][filters::SpaceKind::user] = {2000, 0};  // a packet socket, dearer still
  const char* watch = "(udp) > (port, which=dst) 53> (count)";
  auto mode_of = [](const Plan& p) {
    for (const auto& s : p.spaces)
      if (s.kind == "xdp") return s.mode;
    return std::string("none");
  };
  auto noted = [](const Plan& p) {
    for (const auto& n : p.notes)
      if (n.find("eth0: XDP in generic mode: the profile measured 130 ns") != std::string::npos)
        return true;
    return false;
  };
  const Planned generic = run(watch, m, {.profile = &profile});
  CHECK(generic.node("rx").space == "xdp:eth0");
  CHECK(mode_of(generic.plan) == "generic");
  CHECK(noted(generic.plan));
  CHECK(to_json(generic.plan)["spaces"][0]["mode"] == "generic");
  // Generic XDP has no AF_XDP zero-copy: the model no longer offers it to
  // a userspace drop (which takes its blocks).
  const char* take = "(udp) > (dns) > (drop)";
  auto taken_zero_copy = [](const Plan& p) {
    for (const auto& e : p.edges)
      if (e.from_space == "xdp:eth0" && e.to_space.rfind("user", 0) == 0)
        return std::optional<bool>(e.zero_copy);
    return std::optional<bool>();
  };
  CHECK(taken_zero_copy(run(take, m, {.profile = &profile}).plan) == false);
  // Fixed by the caller (srl run --xdp-mode native): native stays.
  for (auto& s : m.spaces)
    if (s.kind == Kind::xdp) s.mode_fixed = true;
  const Planned fixed = run(watch, m, {.profile = &profile});
  CHECK(mode_of(fixed.plan) == "native");
  CHECK_FALSE(noted(fixed.plan));
  CHECK(taken_zero_copy(run(take, m, {.profile = &profile}).plan) == true);
  // Where native is the cheaper one (a NIC's driver), native stays.
  for (auto& s : m.spaces)
    if (s.kind == Kind::xdp) s.mode_fixed = false;
  profile.hooks["veth"]["xdp-native"] = {20, 0};
  CHECK(mode_of(run(watch, m, {.profile = &profile}).plan) == "native");
  // Without a profile, discovery's mode.
  CHECK(mode_of(run(watch, m).plan) == "native");
}
