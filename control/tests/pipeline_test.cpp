#include "srl/control/pipeline.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "golden.h"

using namespace srl;

namespace {

std::shared_ptr<const compiler::CompileResult> compile(const std::string& text) {
  compiler::CompileOptions co;
  co.default_devices = {"eth0"};
  auto r = std::make_shared<compiler::CompileResult>(compiler::compile(text, co));
  REQUIRE_MESSAGE(r->ok(), r->diagnostics.render(*r->source));
  return r;
}

// eth0's hooks, an emulated offload space in front of them, two cores.
optimizer::SystemModel host(bool offload = false) {
  optimizer::SystemModel m;
  m.origin = "test";
  if (offload)
    m.spaces.push_back({.id = "offload:eth0",
                        .kind = optimizer::Kind::offload,
                        .device = "eth0",
                        .emulated = true,
                        .capacity_ns_per_s = 4e9,
                        .ebpf_insn_limit = 2048});
  m.spaces.push_back(
      {.id = "xdp:eth0", .kind = optimizer::Kind::xdp, .device = "eth0", .mode = "native"});
  m.spaces.push_back({.id = "tc:eth0", .kind = optimizer::Kind::tc, .device = "eth0"});
  m.spaces.push_back({.id = "user:0", .kind = optimizer::Kind::user, .cpu = 0u});
  m.spaces.push_back({.id = "user:1", .kind = optimizer::Kind::user, .cpu = 1u});
  optimizer::add_default_channels(m);
  return m;
}

// A default profile for the test's duration (SRL_PROFILE), restored after.
struct DefaultProfile {
  std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("srl-pipeline-test-" + std::to_string(getpid()));
  std::string before;
  bool had = false;
  explicit DefaultProfile(const std::string& content) {
    if (const char* p = std::getenv("SRL_PROFILE")) had = true, before = p;
    std::ofstream(file) << content;
    setenv("SRL_PROFILE", file.c_str(), 1);
  }
  ~DefaultProfile() {
    std::filesystem::remove(file);
    if (had)
      setenv("SRL_PROFILE", before.c_str(), 1);
    else
      unsetenv("SRL_PROFILE");
  }
};

}  // namespace

TEST_CASE("requests given together are r1..rN; one alone has no label") {
  CHECK(control::numbered_labels(1) == std::vector<std::string>{""});
  CHECK(control::numbered_labels(3) == std::vector<std::string>{"r1", "r2", "r3"});
}

TEST_CASE("a failure's stage decides the exit status: what the caller gave 2, the rest 1") {
  CHECK(control::exit_code(control::Stage::input) == 2);
  CHECK(control::exit_code(control::Stage::compile) == 1);
  CHECK(control::exit_code(control::Stage::discovery) == 1);
  CHECK(control::exit_code(control::Stage::plan) == 1);
}

TEST_CASE("merged once, planned, placed: kernel nodes on the hook the plan chose") {
  const auto requests = control::merge({compile("(udp) > (port, which=dst) 53> (count)"),
                                        compile("(udp) > (port, which=dst) 53> (dns) > (print)")},
                                       control::numbered_labels(2));
  // The shared prefix is one vertex with both requests' nodes as members.
  const auto& merged = requests.merged;
  REQUIRE(merged.dag.node_count() == 6);  // rx, udp, port, count, dns, print
  CHECK(merged.members[1] == std::vector<std::string>{"r1/n1", "r2/n1"});
  CHECK(control::rx_devices(requests) == std::vector<std::string>{"eth0"});

  const auto plan = control::plan(requests, host(), {});
  // Planned as merged: the plan's node v is vertex v.
  REQUIRE(plan.nodes.size() == merged.dag.node_count());
  for (std::size_t v = 0; v < merged.dag.node_count(); ++v)
    CHECK(plan.nodes[v].members == merged.members[v]);
  const auto place = control::placement(requests, plan);
  const auto why = control::reasons(plan);
  REQUIRE(place.in_kernel.size() == merged.dag.node_count());
  for (std::size_t v = 0; v < merged.dag.node_count(); ++v) {
    const std::string filter(merged.dag.graph[v].filter_name());
    CAPTURE(filter);
    // dns and print have no kernel implementation; the rest is cheapest there.
    CHECK(place.in_kernel[v] == (filter != "dns" && filter != "print"));
    for (const auto& m : merged.members[v])
      CHECK(why.contains(m));
  }
  REQUIRE(place.hooks.size() == 1);
  const auto& hook = place.hooks.at("eth0");
  CHECK((hook.kind == runtime::HookKind::xdp || hook.kind == runtime::HookKind::tc));
}

TEST_CASE("a plan of other requests is not placed") {
  const auto one = control::merge({compile("(udp) > (count)")}, control::numbered_labels(1));
  const auto two = control::merge({compile("(udp) > (count)"), compile("(tcp) > (count)")},
                                  control::numbered_labels(2));
  CHECK_THROWS_AS(control::placement(two, control::plan(one, host(), {})), std::invalid_argument);
}

TEST_CASE("a plan that uses what no driver deploys is refused before anything deploys") {
  const auto requests =
      control::merge({compile("(udp, space=offload) > (count)")}, control::numbered_labels(1));
  const auto plan = control::plan(requests, host(true), {});
  try {
    control::placement(requests, plan);
    FAIL("an offload placement was accepted");
  } catch (const control::PipelineError& e) {
    CHECK(e.stage() == control::Stage::plan);
    CHECK(std::string(e.what()).find("offload:eth0, which is not deployed here") !=
          std::string::npos);
  }
}

TEST_CASE("no placement is a plan failure, naming the request node") {
  // A model with no userspace: print has nowhere to run.
  auto m = host();
  std::erase_if(m.spaces, [](const auto& s) { return s.kind == optimizer::Kind::user; });
  m.channels.clear();
  optimizer::add_default_channels(m);
  const auto requests = control::merge({compile("(udp) > (print)")}, control::numbered_labels(1));
  try {
    control::plan(requests, m, {});
    FAIL("planned without a space for print");
  } catch (const control::PipelineError& e) {
    CHECK(e.stage() == control::Stage::plan);
    CHECK(std::string(e.what()).find("print") != std::string::npos);
  }
}

TEST_CASE("the cost profile: a named one must be read, a default one that cannot is noted") {
  SUBCASE("none asked for") {
    const auto c = control::cost_profile(false, "/nonexistent/profile.json");
    CHECK_FALSE(c.profile);
    CHECK(c.note.empty());
  }
  SUBCASE("named and missing: the caller's input") {
    try {
      control::cost_profile(true, "/nonexistent/profile.json");
      FAIL("a missing profile was taken");
    } catch (const control::PipelineError& e) {
      CHECK(e.stage() == control::Stage::input);
      CHECK(std::string(e.what()).find("/nonexistent/profile.json") != std::string::npos);
    }
  }
  SUBCASE("the default, broken: planned with the catalog's costs, and the plan says so") {
    const DefaultProfile broken("{ not json");
    const auto c = control::cost_profile(true);
    CHECK_FALSE(c.profile);
    CHECK(c.note.find(broken.file.string()) != std::string::npos);
    const auto requests = control::merge({compile("(udp) > (count)")}, {""});
    const auto plan = control::plan(requests, host(), c);
    CHECK(plan.profile == "catalog defaults");
    REQUIRE_FALSE(plan.notes.empty());
    CHECK(plan.notes.back() == c.note);
  }
}

TEST_CASE("a request that did not compile is not planned") {
  compiler::CompileOptions co;
  co.default_devices = {"eth0"};
  auto bad = std::make_shared<compiler::CompileResult>(compiler::compile("(udp) > (", co));
  REQUIRE_FALSE(bad->ok());
  try {
    control::merge({bad}, {""});
    FAIL("merged a request that does not compile");
  } catch (const control::PipelineError& e) {
    CHECK(e.stage() == control::Stage::compile);
  }
}

TEST_CASE("the placement attaches XDP in the mode the plan chose") {
  const auto requests = control::merge({compile("(udp) > (port, which=dst) 53> (count)")},
                                       control::numbered_labels(1));
  auto model = host();
  for (auto& s : model.spaces)
    s.driver = "veth";
  control::CostProfile costs;
  costs.profile.emplace();
  costs.profile->hooks["veth"] = {
      {"tc", {400, 0}}, {"xdp-native", {220, 0.04}}, {"xdp-generic", {130, 0}}};
  costs.profile->filters["rx"][filters::SpaceKind::user] = {2000, 0};
  auto hook_of = [&](const optimizer::SystemModel& m) {
    const auto pl = control::plan(requests, m, costs);
    const auto place = control::placement(requests, pl);
    REQUIRE(place.hooks.contains("eth0"));
    return place.hooks.at("eth0");
  };
  // The profile measured generic XDP cheaper on a veth: the plan says
  // generic, the datapath is told so.
  const auto generic = hook_of(model);
  CHECK(generic.kind == runtime::HookKind::xdp);
  CHECK(generic.xdp_mode == runtime::kernel::XdpMode::generic);
  // Native: the runtime's own rule (native where the driver has it).
  costs.profile->hooks["veth"]["xdp-native"] = {20, 0};
  const auto native = hook_of(model);
  CHECK(native.kind == runtime::HookKind::xdp);
  CHECK_FALSE(native.xdp_mode.has_value());
}

TEST_CASE("the engine runs as many workers as the plan's largest replica set") {
  // http at 3 Mpps needs more than one core (docs/optimizer.md, "Data
  // parallelism"): the plan runs it as user:0-1, and the engine with two
  // workers.
  const auto requests =
      control::merge({compile("(tcp) > (http) > (count)")}, control::numbered_labels(1));
  optimizer::PlanOptions options;
  options.input_rate_pps = 3e6;
  const auto parallel = control::plan(requests, host(), {}, options);
  bool replicated = false;
  for (const auto& n : parallel.nodes)
    replicated = replicated || n.space == "user:0-1";
  REQUIRE(replicated);
  CHECK(control::placement(requests, parallel).workers == 2);
  options.input_rate_pps = 1e5;  // one core is enough: no replica set
  CHECK(control::placement(requests, control::plan(requests, host(), {}, options)).workers == 1);
}

TEST_CASE("the placement's JSON form, versioned (golden files)") {
  // SRL_UPDATE_GOLDEN=1 rewrites them; review the diff.
  struct Case {
    std::string name;
    std::vector<std::string> requests;
    double rate = 1e6;
    bool generic = false;
  };
  const std::vector<Case> cases = {
      {"shared-prefix",
       {"(udp) > (port, which=dst) 53> (count)", "(udp) > (port, which=dst) 53> (dns) > (print)"}},
      {"xdp-generic", {"(udp) > (port, which=dst) 53> (count)"}, 1e6, true},
      {"replicas", {"(tcp) > (http) > (count)"}, 3e6},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
    for (const auto& r : c.requests)
      compiled.push_back(compile(r));
    const auto requests = control::merge(compiled, control::numbered_labels(compiled.size()));
    auto model = host();
    control::CostProfile costs;
    if (c.generic) {
      for (auto& s : model.spaces)
        s.driver = "veth";
      costs.profile.emplace();
      costs.profile->hooks["veth"] = {
          {"tc", {400, 0}}, {"xdp-native", {220, 0.04}}, {"xdp-generic", {130, 0}}};
      costs.profile->filters["rx"][filters::SpaceKind::user] = {2000, 0};
    }
    optimizer::PlanOptions options;
    options.input_rate_pps = c.rate;
    const auto place = control::placement(requests, control::plan(requests, model, costs, options));
    const auto j = control::to_json(requests, place);
    CHECK(j["srl_placement_version"] == control::kPlacementJsonVersion);
    const std::string diff = srl::testing::check_golden(
        std::filesystem::path(SRL_CONTROL_GOLDEN_DIR) / ("placement-" + c.name + ".json"),
        j.dump(2) + "\n");
    CHECK_MESSAGE(diff.empty(), diff);
  }
}
