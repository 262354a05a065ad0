// Merging random request sets: what merge.h and dag.h promise holds for any
// requests, not only for the ones written out in merge_test.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <tuple>

#include <nlohmann/json.hpp>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"

using namespace srl;

namespace {

// One statement: an optional device and layer 3, a layer 4 (or two of them
// in an `or`), maybe ports, then a sink. Few choices, so that requests
// often share prefixes.
std::string random_statement(std::mt19937& rng) {
  auto pick = [&](std::initializer_list<const char*> xs) {
    return std::string(*(xs.begin() + rng() % xs.size()));
  };
  auto chance = [&](unsigned percent) { return rng() % 100 < percent; };
  std::string s;
  if (chance(20)) s += "(rx, dev=eth1) > ";
  if (chance(50)) s += pick({"(ipv4)", "(ip)"}) + " > ";
  const auto l4 = [&] {
    return pick({"(udp)", "(tcp)", "(bpf, expr=\"udp port 53\")", "(bpf, expr=\"tcp port 80\")"});
  };
  s += chance(20) ? "(" + l4() + " or " + l4() + ")" : l4();
  if (chance(50))
    s += pick({" > ", " !> "}) + "(port, which=dst) " + pick({"53> ", "80> ", "22,80> ", "> "});
  else
    s += pick({" > ", " > ", " !> "});
  return s + pick({"(count)", "(count, by=class)", "(drop)"});
}

std::string random_request(std::mt19937& rng) {
  std::string text;
  for (std::size_t i = 0, n = 1 + rng() % 3; i < n; ++i)
    text += (i == 0 ? "" : "; ") + random_statement(rng);
  return text;
}

compiler::RequestDag compile(const std::string& text) {
  compiler::CompileOptions o;
  o.default_devices = {"eth0"};
  auto r = compiler::compile(text, o);
  REQUIRE_MESSAGE(r.ok(), text, "\n", r.diagnostics.render(*r.source));
  return std::move(*r.dag);
}

bool shareable(const compiler::DagNode& n) {
  const auto& f = *n.filter;
  return (f.role == filters::Role::source || f.role == filters::Role::filter) &&
         f.state == filters::State::none && !f.emits_new_blocks;
}

// What a node does, apart from where its input comes from.
std::string what(const compiler::DagNode& n) {
  nlohmann::json j = {{"f", n.filter_name()}, {"o", nlohmann::json::object()}};
  for (const auto& [k, v] : n.options)
    j["o"][k] = filters::to_json(v);
  j["s"] = n.space.value_or("");
  j["t"] = n.translation ? n.translation->source : "";
  return j.dump();
}

using Group = std::set<std::string>;  // the request nodes of a merged vertex

// The merge as groups of request nodes and edges between groups: what does
// not depend on the order the requests come in.
std::pair<std::set<Group>, std::set<std::tuple<Group, Group, std::string>>> shape(
    const compiler::MergedRequests& m) {
  std::vector<Group> groups;
  for (const auto& members : m.members)
    groups.emplace_back(members.begin(), members.end());
  std::set<std::tuple<Group, Group, std::string>> edges;
  const auto& g = m.dag.graph;
  for (auto [it, end] = boost::edges(g); it != end; ++it)
    edges.emplace(groups[boost::source(*it, g)], groups[boost::target(*it, g)],
                  g[*it].select.to_srl());
  return {{groups.begin(), groups.end()}, edges};
}

void check_merge(const std::vector<const compiler::RequestDag*>& dags,
                 const std::vector<std::string>& labels, const compiler::MergedRequests& m) {
  const auto& g = m.dag.graph;
  const std::size_t n = m.dag.node_count();
  // The numbering dag.h states.
  CHECK(m.dag.numbered());
  REQUIRE(m.members.size() == n);
  REQUIRE(m.member_names.size() == n);
  REQUIRE(m.member_nodes.size() == n);
  REQUIRE(m.files.size() == dags.size());

  // A vertex comes where the first request to hold it puts it.
  for (compiler::Vertex v = 1; v < n; ++v)
    CHECK(m.member_nodes[v - 1].front() < m.member_nodes[v].front());

  // Every request node is in exactly one merged vertex, under its label,
  // id and name.
  std::map<compiler::RequestNode, compiler::Vertex> vertex_of;
  for (compiler::Vertex v = 0; v < n; ++v) {
    REQUIRE(!m.member_nodes[v].empty());
    REQUIRE(m.members[v].size() == m.member_nodes[v].size());
    REQUIRE(m.member_names[v].size() == m.member_nodes[v].size());
    for (std::size_t i = 0; i < m.member_nodes[v].size(); ++i) {
      const auto rn = m.member_nodes[v][i];
      REQUIRE(rn.request < dags.size());
      REQUIRE(rn.vertex < dags[rn.request]->node_count());
      CHECK(vertex_of.emplace(rn, v).second);
      const auto& node = dags[rn.request]->graph[rn.vertex];
      CHECK(m.members[v][i] == labels[rn.request] + "/" + node.id);
      CHECK(m.member_names[v][i] == compiler::node_names(*dags[rn.request])[rn.vertex]);
      // A merged vertex does what each of its members does; state and
      // sinks are never shared.
      CHECK(what(g[v]) == what(node));
      if (!shareable(node)) CHECK(m.member_nodes[v].size() == 1);
    }
  }
  std::size_t request_nodes = 0;
  for (const auto* d : dags)
    request_nodes += d->node_count();
  CHECK(vertex_of.size() == request_nodes);

  // Every request edge is a merged edge, and every merged edge is one.
  std::set<std::tuple<compiler::Vertex, compiler::Vertex, std::string>> from_requests, merged;
  for (std::size_t r = 0; r < dags.size(); ++r) {
    const auto& rg = dags[r]->graph;
    for (auto [it, end] = boost::edges(rg); it != end; ++it)
      from_requests.emplace(vertex_of.at({r, boost::source(*it, rg)}),
                            vertex_of.at({r, boost::target(*it, rg)}), rg[*it].select.to_srl());
  }
  for (auto [it, end] = boost::edges(g); it != end; ++it)
    CHECK(merged.emplace(boost::source(*it, g), boost::target(*it, g), g[*it].select.to_srl())
              .second);
  CHECK(merged == from_requests);

  // Shared as far as it goes: no two shareable vertices do the same on the
  // same inputs.
  std::set<std::pair<std::string, std::set<std::pair<compiler::Vertex, std::string>>>> seen;
  for (compiler::Vertex v = 0; v < n; ++v) {
    if (!shareable(g[v])) continue;
    std::set<std::pair<compiler::Vertex, std::string>> inputs;
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it)
      inputs.emplace(boost::source(*it, g), g[*it].select.to_srl());
    CHECK_MESSAGE(seen.emplace(what(g[v]), inputs).second, "vertex ", v, " is there twice");
  }
}

}  // namespace

TEST_CASE("merge: random request sets keep the merge's invariants, in any order") {
  std::mt19937 rng(20261207);
  std::size_t shared = 0, repeats = 0;
  for (int round = 0; round < 150; ++round) {
    const std::size_t count = 1 + rng() % 4;
    std::vector<std::string> texts;
    std::vector<compiler::RequestDag> requests;
    for (std::size_t i = 0; i < count; ++i) {
      texts.push_back(random_request(rng));
      requests.push_back(compile(texts.back()));
    }
    std::string all;
    for (const auto& t : texts)
      all += t + "\n";
    CAPTURE(all);
    std::vector<std::string> labels;
    std::vector<const compiler::RequestDag*> dags;
    for (std::size_t i = 0; i < count; ++i) {
      CHECK(requests[i].numbered());
      labels.push_back("r" + std::to_string(i + 1));
      dags.push_back(&requests[i]);
    }
    const auto m = compiler::merge_requests(dags, labels);
    check_merge(dags, labels, m);
    std::size_t request_nodes = 0;
    for (const auto* d : dags)
      request_nodes += d->node_count();
    if (m.dag.node_count() < request_nodes) ++shared;

    // The same requests in another order: the same groups and edges, and
    // the same DAG when merged again in the first order.
    std::vector<std::size_t> order(count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::string> labels2;
    std::vector<const compiler::RequestDag*> dags2;
    for (std::size_t i : order) {
      labels2.push_back(labels[i]);
      dags2.push_back(dags[i]);
    }
    const auto m2 = compiler::merge_requests(dags2, labels2);
    check_merge(dags2, labels2, m2);
    CHECK(shape(m2) == shape(m));
    CHECK(compiler::to_json(compiler::merge_requests(dags, labels).dag, nullptr) ==
          compiler::to_json(m.dag, nullptr));

    // One request merged alone is that request, less the repeats of its
    // own prefixes.
    const auto one =
        compiler::merge_requests(std::span(dags).first<1>(), std::span(labels).first<1>());
    if (one.dag.node_count() == requests[0].node_count())
      CHECK(compiler::to_json(one.dag, nullptr) == compiler::to_json(requests[0], nullptr));
    else
      ++repeats;
  }
  // The generator shares prefixes most of the time, within a request too.
  CHECK(shared > 100);
  CHECK(repeats > 0);
}

TEST_CASE("merge: a request not in the DAG's numbering is refused") {
  auto dag = compile("(udp) > (count)");
  dag.graph[1].id = "n7";
  const compiler::RequestDag* all[] = {&dag};
  const std::string labels[] = {"r1"};
  CHECK_THROWS_AS(compiler::merge_requests(all, labels), std::invalid_argument);
}
