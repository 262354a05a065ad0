#include <doctest/doctest.h>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"

#include <map>
#include <set>

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

namespace {

// Node names of `text`, by node id.
std::map<std::string, std::string> names_of(const char* text) {
  const auto dag = compile(text);
  const auto names = compiler::node_names(dag);
  std::map<std::string, std::string> out;
  for (std::size_t v = 0; v < names.size(); ++v)
    out[dag.graph[v].id] = names[v];
  return out;
}

std::set<std::string> values(const std::map<std::string, std::string>& m) {
  std::set<std::string> out;
  for (const auto& [k, v] : m)
    out.insert(v);
  return out;
}

}  // namespace

TEST_CASE("node names: derived from the path, stable when another branch changes") {
  const auto one = names_of("(udp) > (port, which=dst) 53> (count); (tcp) > (count)");
  CHECK(values(one) ==
        std::set<std::string>{"rx", "udp", "udp>port", "udp>port[53]>count", "tcp", "tcp>count"});
  // A branch added in front renumbers the ids, not the names of the others.
  const auto two =
      names_of("(ipv6) > (count); (udp) > (port, which=dst) 53> (count); (tcp) > (count)");
  CHECK(one.at("n3") == "udp>port[53]>count");
  CHECK(two.at("n3") != one.at("n3"));
  for (const auto& name : values(one))
    CHECK(values(two).contains(name));
  // Given names win and start the path of what follows them; equal paths
  // are told apart in the order of the text; rejected and inverted edges.
  const auto named = names_of(
      "(ip) > (sample, n=10, name=s) > (count); (udp) > (count); (udp) > (count); "
      "(tcp) !> (count); (port, which=dst) !53> (count)");
  CHECK(values(named).contains("s>count"));
  CHECK(values(named).contains("s"));
  CHECK(values(named).contains("udp>count"));
  CHECK(values(named).contains("udp#2>count"));
  CHECK(values(named).contains("tcp!>count"));
  CHECK(values(named).contains("port[!53]>count"));
}

TEST_CASE("merge: each member keeps its own request's name") {
  const auto a = compile("(udp) > (count, name=u)");
  const auto b = compile("(udp) > (port) 53> (count)");
  const compiler::RequestDag* all[] = {&a, &b};
  const std::string labels[] = {"a", "b"};
  const auto m = compiler::merge_requests(all, labels);
  REQUIRE(m.member_names.size() == m.members.size());
  for (std::size_t v = 0; v < m.members.size(); ++v)
    REQUIRE(m.member_names[v].size() == m.members[v].size());
  CHECK(m.member_names[1] == std::vector<std::string>{"udp", "udp"});  // shared
  std::set<std::string> all_names;
  for (const auto& names : m.member_names)
    all_names.insert(names.begin(), names.end());
  CHECK(all_names.contains("u"));
  CHECK(all_names.contains("udp>port[53]>count"));
}

TEST_CASE("merge: an input's node and its selector do not run together in the identity") {
  // a's eth takes class 1 of vertex 1 ("1" "1>"); b's eth every block of
  // vertex 11 ("11" ">"): written side by side, both read "11>".
  const auto a = compile("(hash, buckets=4) 1> (eth) > (count)");
  const auto b = compile(
      "(udp) > (tcp) > (icmp) > (arp) > (ip) > (ipv6) > (proto) > (len, min=60) > (eth) > (count)");
  const compiler::RequestDag* all[] = {&a, &b};
  const std::string labels[] = {"r1", "r2"};
  const auto m = compiler::merge_requests(all, labels);
  std::size_t eths = 0;
  for (std::size_t v = 0; v < m.dag.node_count(); ++v)
    if (m.dag.graph[v].filter_name() == "eth") {
      ++eths;
      CHECK(m.members[v].size() == 1);
    }
  CHECK(eths == 2);
  for (auto [it, end] = boost::edges(m.dag.graph); it != end; ++it)
    CHECK(boost::source(*it, m.dag.graph) < boost::target(*it, m.dag.graph));
}
