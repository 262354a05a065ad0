// Per-pass golden tests, as p4c keeps per-pass outputs: for each input in
// compiler/tests/passes/, the IR after every pass is checked against
// NAME.PASS.json (the syntax tree after "parse", the DAG after the others).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "testdata.h"

using namespace srl;

TEST_CASE("passes: the IR after each pass equals its golden file") {
  const auto cases = testing::inputs(testing::testdata("passes"));
  CHECK(cases.size() >= 2);
  for (const auto& input : cases) {
    CAPTURE(input.filename().string());
    const std::string text = testing::read_file(input);
    auto options = testing::options_for(input, text);
    const compiler::SourceFile names(options.file_name, "");
    std::vector<std::string> seen;
    options.after_pass = [&](std::string_view pass, const compiler::ast::Request& ast,
                             const compiler::RequestDag* dag) {
      seen.emplace_back(pass);
      const std::string ir =
          (dag ? compiler::to_json(*dag, &names) : compiler::ast::to_json(ast)).dump(2) + "\n";
      const auto golden =
          input.parent_path() / (input.stem().string() + "." + std::string(pass) + ".json");
      const std::string diff = testing::check_golden(golden, ir);
      CHECK_MESSAGE(diff.empty(), diff);
    };
    const auto result = compiler::compile(text, options);
    REQUIRE_MESSAGE(result.ok(), result.diagnostics.render(*result.source));
    // Every pass ran, in the documented order.
    std::vector<std::string> expected;
    for (const auto& p : compiler::passes())
      expected.emplace_back(p.name);
    CHECK(seen == expected);
  }
}

TEST_CASE("passes: stop_after ends the pipeline after that pass") {
  compiler::CompileOptions options;
  options.stop_after = "lower";
  const auto result = compiler::compile("(tcp) > (count)", options);
  REQUIRE(result.ok());
  CHECK(result.last_pass == "lower");
  // No implicit source yet: it is added by a later pass.
  CHECK(result.dag->node_count() == 2);
}

TEST_CASE("passes: a pass with errors stops the pipeline") {
  const auto result = compiler::compile("(tcp) > (tpc) > (pcap)");
  CHECK_FALSE(result.ok());
  CHECK(result.last_pass == "resolve-names");
  // Only the first failing pass reports: no "missing file" for pcap.
  CHECK(result.diagnostics.error_count() == 1);
}

TEST_CASE("passes: ids are topological and stable") {
  const char* text = "(x) > (count); (udp) > (tcp, name=x)";
  const auto a = compiler::compile(text);
  const auto b = compiler::compile(text);
  REQUIRE(a.ok());
  CHECK(compiler::to_json(*a.dag, a.source.get()) == compiler::to_json(*b.dag, b.source.get()));
  const auto& g = a.dag->graph;
  for (auto [it, end] = boost::edges(g); it != end; ++it) {
    const auto from = std::stoi(g[boost::source(*it, g)].id.substr(1));
    const auto to = std::stoi(g[boost::target(*it, g)].id.substr(1));
    CHECK(from < to);
  }
}

TEST_CASE("passes: semantics of not, or, and") {
  SUBCASE("not A > B is A !> B") {
    const auto r = compiler::compile("not (tcp) > (count)");
    REQUIRE(r.ok());
    const auto& g = r.dag->graph;
    const auto tcp = *r.dag->find("n1");
    auto [it, end] = boost::out_edges(tcp, g);
    REQUIRE(it != end);
    CHECK(g[*it].select.rejected);
  }
  SUBCASE("a three-way or is one union with three inputs") {
    const auto r = compiler::compile("(tcp) or (udp) or (icmp) > (count)");
    REQUIRE(r.ok());
    std::size_t unions = 0;
    const auto& g = r.dag->graph;
    for (auto [it, end] = boost::vertices(g); it != end; ++it) {
      if (g[*it].filter_name() == "union") {
        ++unions;
        CHECK(boost::in_degree(*it, g) == 3);
        CHECK(g[*it].synthetic);
      }
    }
    CHECK(unions == 1);
  }
  SUBCASE("and feeds both operands the same input") {
    const auto r = compiler::compile("(eth) > ((tcp) and (udp)) > (count)");
    REQUIRE(r.ok());
    const auto& g = r.dag->graph;
    const auto eth = *r.dag->find("n1");
    CHECK(g[eth].filter_name() == "eth");
    CHECK(boost::out_degree(eth, g) == 2);
  }
}
