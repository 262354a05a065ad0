// Round trip through the canonical printer: compile -> print -> compile
// gives the same DAG (positions aside), and printing is idempotent.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "testdata.h"

using namespace srl;

namespace {

void check_round_trip(const std::string& text, const compiler::CompileOptions& options) {
  const auto first = compiler::compile(text, options);
  REQUIRE_MESSAGE(first.ok(), first.diagnostics.render(*first.source));
  const std::string printed = compiler::ast::print(*first.ast);
  CAPTURE(printed);
  const auto second = compiler::compile(printed, options);
  REQUIRE_MESSAGE(second.ok(), second.diagnostics.render(*second.source));
  CHECK(compiler::to_json(*first.dag, nullptr, false) ==
        compiler::to_json(*second.dag, nullptr, false));
  CHECK(compiler::ast::print(*second.ast) == printed);
}

}  // namespace

TEST_CASE("round trip: every golden input and every example") {
  std::size_t n = 0;
  for (const char* dir : {"golden", "passes"}) {
    for (const auto& input : testing::inputs(testing::testdata(dir))) {
      CAPTURE(input.filename().string());
      const std::string text = testing::read_file(input);
      check_round_trip(text, testing::options_for(input, text));
      ++n;
    }
  }
  for (const auto& input : testing::inputs(SRL_EXAMPLES_DIR)) {
    CAPTURE(input.filename().string());
    const std::string text = testing::read_file(input);
    check_round_trip(text, testing::options_for(input, text));
    ++n;
  }
  CHECK(n >= 30);
}

TEST_CASE("round trip: the printer's canonical form") {
  const auto r =
      compiler::compile("  (tcp)>(port,which=\"dst\")   443,22 , 80:81>(count) ;(x,name=y)");
  // (x) is unknown: the printer works on any tree that parsed.
  CHECK_FALSE(r.ok());
  const auto ok =
      compiler::compile("(tcp)>(port,which=\"dst\")  443,22,80:81>(count);not not(udp)>(count)");
  REQUIRE(ok.ok());
  CHECK(compiler::ast::print(*ok.ast) ==
        "(tcp) > (port, which=\"dst\") 22,80:81,443> (count);\nnot not (udp) > (count);\n");
}

TEST_CASE("round trip: strings are re-escaped") {
  const auto r = compiler::compile(R"((match, pattern="a\"b\\d") > (print))");
  REQUIRE(r.ok());
  const std::string printed = compiler::ast::print(*r.ast);
  CHECK(printed == "(match, pattern=\"a\\\"b\\\\d\") > (print);\n");
  const auto again = compiler::compile(printed);
  REQUIRE(again.ok());
  const auto& g = again.dag->graph;
  CHECK(std::get<std::string>(g[*again.dag->find("n1")].options.at("pattern")) == "a\"b\\d");
}
