// The front end bounds its work: no input can make it crash, recurse without
// limit, or take long. These check the refusals, not timings (benchmarks
// live in bench/).
#include <doctest/doctest.h>

#include "testdata.h"

using namespace srl;

TEST_CASE("limits: 1 MB of '(' is refused by the nesting limit") {
  const std::string text(1'000'000, '(');
  const auto r = compiler::compile(text);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.diagnostics.all().size() == 1);
  const auto& d = r.diagnostics.all().front();
  CHECK(d.loc.line == 1);
  CHECK(d.loc.col == 65);  // the first parenthesis past the limit
  CHECK(d.message.find("nested more than 64 deep") != std::string::npos);
}

TEST_CASE("limits: input larger than the limit is refused before parsing") {
  compiler::CompileOptions o;
  o.limits.max_input_bytes = 1000;
  std::string text;
  while (text.size() <= 1000)
    text += "(tcp) > ";
  const auto r = compiler::compile(text, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.last_pass == "parse");
  CHECK(r.diagnostics.all().front().message.find("expected at most 1000 bytes") !=
        std::string::npos);
}

TEST_CASE("limits: nesting exactly at the limit is accepted") {
  std::string text(64, '(');
  text.insert(63, "");
  // 63 groups around one filter atom: 64 parentheses deep.
  std::string g = "(tcp)";
  for (int i = 0; i < 63; ++i)
    g = "(" + g + ")";
  const auto r = compiler::compile(g + " > (count)");
  CHECK_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  const auto deeper = compiler::compile("(" + g + ") > (count)");
  CHECK_FALSE(deeper.ok());
}

TEST_CASE("limits: parentheses in strings and comments do not count") {
  const std::string parens(100, '(');
  const auto r = compiler::compile("# " + parens + "\n(match, pattern=\"\\\\(\") > (print)");
  CHECK_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
}

TEST_CASE("limits: the node limit is enforced") {
  compiler::CompileOptions o;
  o.limits.max_nodes = 10;
  std::string text = "(tcp)";
  for (int i = 0; i < 20; ++i)
    text += " > (count)";
  const auto r = compiler::compile(text, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.diagnostics.all().front().message.find("more than 10 filter instances") !=
        std::string::npos);
}

TEST_CASE("limits: a long chain of not does not recurse") {
  std::string text;
  for (int i = 0; i < 100'000; ++i)
    text += "not ";
  text += "(tcp) > (count)";
  const auto r = compiler::compile(text);
  CHECK(r.ok());  // an even number of nots
}

TEST_CASE("limits: long requests compile (chains and fan-out)") {
  std::string chain = "(tcp)";
  for (int i = 0; i < 20'000; ++i)
    chain += " > (count)";
  CHECK(compiler::compile(chain).ok());
  std::string fan = "(tcp) > (";
  for (int i = 0; i < 5'000; ++i)
    fan += (i ? " | (count)" : "(count)");
  fan += ")";
  const auto r = compiler::compile(fan);
  REQUIRE(r.ok());
  CHECK(r.dag->node_count() == 5'002);
}

TEST_CASE("limits: invalid UTF-8 and control characters are errors, not crashes") {
  for (std::string text : {std::string("(tcp) > (\xff)"), std::string("(tcp\0)", 6),
                           std::string("(tcp) \xc3"), std::string("\xed\xa0\x80")}) {
    const auto r = compiler::compile(text);
    CHECK_FALSE(r.ok());
    CHECK(r.diagnostics.error_count() >= 1);
    CHECK_FALSE(r.diagnostics.render(*r.source).empty());
  }
}
