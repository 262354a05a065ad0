// The catalog's claims hold: a walk over every filter it lists checks that
// each implementation it claims exists. A kernel implementation generates,
// compiles and passes the verifier at the hook it runs at, and is held to a
// reference (differential_test); a userspace one has its factory (or is the
// engine's own: AF_PACKET for rx, the synthetic nodes). Offload costs are
// the model's estimate for a device that runs its own code: no driver of
// this machine deploys them (docs/optimizer.md, "Offload spaces"). Needs
// root (the verifier).
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/filters/catalog.h"
#include "srl/filters/reference.h"
#include "srl/filters/user.h"
#include "srl/runtime/datapath.h"
#include "srl/runtime/kernel.h"

using namespace srl;

namespace {

// The filter's required options, with values it takes.
std::string required_options(const filters::FilterSpec& spec) {
  std::string out;
  for (const auto& o : spec.options) {
    if (!o.required) continue;
    std::string value;
    if (o.name == "net") value = "10.0.0.0/8";
    if (o.name == "expr") value = "\"udp\"";
    if (o.name == "n") value = "3";
    if (o.name == "dev") value = "lo";
    if (o.name == "file" || o.name == "path") value = "\"/dev/null\"";
    if (o.name == "pattern") value = "\"x\"";
    REQUIRE_MESSAGE(!value.empty(),
                    spec.name << " requires option " << o.name << ": give it a value here");
    out += ", " + std::string(o.name) + "=" + value;
  }
  // One of two options, which the catalog cannot say.
  if (spec.name == "rate") out += ", pps=100";
  return out;
}

// A request on `lo` that holds the filter, its node below nodes that run
// where it does.
std::string request_holding(const filters::FilterSpec& spec) {
  const std::string name(spec.name);
  switch (spec.role) {
    case filters::Role::source:
      return "(count)";  // rx is every request's source
    case filters::Role::synthetic:
      return name == "union" ? "(tcp) or (udp) > (count)" : "(tcp) and (port) 22> (count)";
    case filters::Role::sink:
      return "(udp) > (" + name + required_options(spec) + ")";
    case filters::Role::filter:
      break;
  }
  return "(" + name + required_options(spec) + ") > (count)";
}

}  // namespace

TEST_CASE("every kernel implementation the catalog claims generates and verifies") {
  const auto cache = std::filesystem::temp_directory_path() / "srl-kernel-test-cache";
  std::size_t verified = 0;
  for (const auto& spec : filters::Catalog::builtin().all()) {
    if (!spec.implemented_in(filters::SpaceKind::kernel)) continue;
    const std::string name(spec.name);
    CAPTURE(name);
    if (spec.role != filters::Role::source && spec.role != filters::Role::synthetic &&
        spec.role != filters::Role::sink)
      CHECK_MESSAGE(filters::has_reference_filter(name),
                    "a kernel implementation is held to a reference filter");
    compiler::CompileOptions co;
    co.default_devices = {"lo"};
    const auto r = compiler::compile(request_holding(spec), co);
    REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
    const auto& dag = *r.dag;
    const auto hook = spec.kernel_tc_only ? runtime::HookKind::tc : runtime::HookKind::xdp;
    const auto place = runtime::fixed_placement(dag, {"lo"}, {hook, {}});
    bool held = false;
    for (std::size_t v = 0; v < dag.node_count(); ++v)
      held = held || (dag.graph[v].filter_name() == name && place.in_kernel[v]);
    REQUIRE_MESSAGE(held, "the fixed rule puts the filter in the kernel");
    const auto gen = hook == runtime::HookKind::tc
                         ? runtime::kernel::generate_tc(dag, 1, "lo", &place.in_kernel)
                         : runtime::kernel::generate_xdp(dag, 1, "lo", &place.in_kernel);
    const auto program = runtime::kernel::KernelProgram::load(
        runtime::kernel::compile_bpf(gen.source, cache), gen.nodes.size());
    CHECK(program->verified_insns() > 0);
    ++verified;
  }
  CHECK(verified >= 20);
}

TEST_CASE("every userspace implementation the catalog claims has its factory") {
  for (const auto& spec : filters::Catalog::builtin().all()) {
    if (!spec.implemented_in(filters::SpaceKind::user)) continue;
    const std::string name(spec.name);
    CAPTURE(name);
    if (spec.role == filters::Role::synthetic) continue;  // the engine's own nodes
    if (spec.role == filters::Role::source)
      // rx: an AF_PACKET socket the engine reads (runtime/packet_socket.h).
      CHECK((name == "rx" || filters::has_user_source(name)));
    else
      CHECK(filters::has_user_filter(name));
  }
}
