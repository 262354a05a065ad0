#include <doctest/doctest.h>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"

using namespace srl;

namespace {

compiler::RequestDag compile(const char* text) {
  compiler::CompileOptions o;
  o.default_devices = {"eth0"};
  auto r = compiler::compile(text, o);
  REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  return std::move(*r.dag);
}

}  // namespace

TEST_CASE("merge: identical stateless prefixes become one node") {
  const auto a = compile("(ipv4) > (udp) > (port, which=dst) 53> (count)");
  const auto b = compile("(ipv4) > (udp) > (port, which=dst) 123> (count)");
  const auto c = compile("(ipv4) > (tcp) > (count)");
  const compiler::RequestDag* all[] = {&a, &b, &c};
  const std::string labels[] = {"r1", "r2", "r3"};
  const auto m = compiler::merge_requests(all, labels);
  // rx ipv4 udp port shared by r1 and r2 (rx and ipv4 by r3 too); one count
  // each; r3's tcp.
  CHECK(m.dag.node_count() == 8);
  CHECK(m.members[0] == std::vector<std::string>{"r1/n0", "r2/n0", "r3/n0"});
  CHECK(m.members[1] == std::vector<std::string>{"r1/n1", "r2/n1", "r3/n1"});
  CHECK(m.members[3] == std::vector<std::string>{"r1/n3", "r2/n3"});
  // Counters are state: never shared, even when identical.
  std::size_t counts = 0;
  for (std::size_t v = 0; v < m.dag.node_count(); ++v)
    if (m.dag.graph[v].filter_name() == "count") {
      ++counts;
      CHECK(m.members[v].size() == 1);
    }
  CHECK(counts == 3);
  // Ids stay topological: every edge goes from a lower to a higher id.
  for (auto [it, end] = boost::edges(m.dag.graph); it != end; ++it)
    CHECK(boost::source(*it, m.dag.graph) < boost::target(*it, m.dag.graph));
}

TEST_CASE("merge: different options, devices or inputs are not merged") {
  const auto a = compile("(port, which=src) > (drop)");
  const auto b = compile("(port, which=dst) > (drop)");
  compiler::CompileOptions o;
  o.default_devices = {"eth1"};
  const auto c = *compiler::compile("(port, which=src) > (drop)", o).dag;
  const compiler::RequestDag* all[] = {&a, &b, &c};
  const std::string labels[] = {"a", "b", "c"};
  const auto m = compiler::merge_requests(all, labels);
  // rx(eth0) shared by a and b; rx(eth1) separate; three ports; drops are
  // sinks and stay per request.
  CHECK(m.dag.node_count() == 2 + 3 + 3);
}
