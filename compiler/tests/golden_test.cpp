// Golden tests: each compiler/tests/golden/NAME.srl compiles without error,
// and its syntax tree and DAG equal NAME.ast.json and NAME.dag.json, and its
// nodes' names (node_names: "ID NAME" per line) NAME.names. Any warnings
// must equal NAME.warn (absent when there are none).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "testdata.h"

using namespace srl;

TEST_CASE("golden: syntax tree and DAG of every construct") {
  const auto cases = testing::inputs(testing::testdata("golden"));
  CHECK(cases.size() >= 20);
  for (const auto& input : cases) {
    CAPTURE(input.filename().string());
    const std::string text = testing::read_file(input);
    const auto result = compiler::compile(text, testing::options_for(input, text));
    const std::string diags = result.diagnostics.render(*result.source);
    REQUIRE_MESSAGE(result.ok(), diags);
    auto beside = [&](const char* ext) {
      return input.parent_path() / (input.stem().string() + ext);
    };
    const std::string ast_diff = testing::check_golden(
        beside(".ast.json"), compiler::ast::to_json(*result.ast).dump(2) + "\n");
    CHECK_MESSAGE(ast_diff.empty(), ast_diff);
    const std::string dag = compiler::to_json(*result.dag, result.source.get()).dump(2) + "\n";
    const std::string diff = testing::check_golden(beside(".dag.json"), dag);
    CHECK_MESSAGE(diff.empty(), diff);
    std::string names;
    const auto derived = compiler::node_names(*result.dag);
    for (std::size_t v = 0; v < derived.size(); ++v)
      names += result.dag->graph[v].id + " " + derived[v] + "\n";
    const std::string ndiff = testing::check_golden(beside(".names"), names);
    CHECK_MESSAGE(ndiff.empty(), ndiff);
    if (!diags.empty() || std::filesystem::exists(beside(".warn"))) {
      const std::string wdiff = testing::check_golden(beside(".warn"), diags);
      CHECK_MESSAGE(wdiff.empty(), wdiff);
    }
  }
}

TEST_CASE("golden: the examples of SRL.md section 1 all compile") {
  // Kept verbatim from the language reference; their DAGs are goldens above.
  const char* examples[] = {
      "(tcp) > (http) > (file)",
      "(tcp) > ((http) | (ssh) | (rtsp))",
      "(tcp) > ((rtsp,name=tag) | (ssh)) > (print) | (udp) > (tag)",
      "(port) 22> (count)",
      "(port) !80> (match, pattern=\"evil\")",
      "(port) 22:23> (count)",
      "(port) !1:1023> (count)",
      "(port) 22,80,443> (count)",
      "(tcp) and (rtsp)",
      "(tcp) or (rtsp)",
      "not (tcp) > (count)",
      "(bpf, expr=\"ip and udp port 53\") > (pcap, file=\"dns.pcap\")",
      "(rx, dev=veth0) > (ipv4) > (udp) > (port, which=dst) 53> (count)",
  };
  for (const char* e : examples) {
    CAPTURE(e);
    const auto result = compiler::compile(e);
    CHECK_MESSAGE(result.ok(), result.diagnostics.render(*result.source));
  }
}

TEST_CASE("golden: every file in examples/ compiles without warnings") {
  std::size_t n = 0;
  for (const auto& input : testing::inputs(SRL_EXAMPLES_DIR)) {
    CAPTURE(input.filename().string());
    const std::string text = testing::read_file(input);
    auto options = testing::options_for(input, text);
    options.default_devices = {"veth0"};
    const auto result = compiler::compile(text, options);
    CHECK_MESSAGE(result.ok(), result.diagnostics.render(*result.source));
    CHECK_MESSAGE(result.diagnostics.warning_count() == 0,
                  result.diagnostics.render(*result.source));
    ++n;
  }
  CHECK(n >= 10);
}
