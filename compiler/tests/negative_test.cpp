// Negative tests: each compiler/tests/negative/NAME.srl must fail to compile
// with exactly the diagnostics in NAME.err (message, position, quoted line
// and caret), and never crash.
#include <doctest/doctest.h>

#include "testdata.h"

using namespace srl;

TEST_CASE("every negative case fails with its expected diagnostics") {
  const auto cases = testing::inputs(testing::testdata("negative"));
  CHECK(cases.size() >= 40);
  for (const auto& input : cases) {
    CAPTURE(input.filename().string());
    const std::string text = testing::read_file(input);
    const auto result = compiler::compile(text, testing::options_for(input, text));
    CHECK_FALSE(result.ok());
    CHECK(result.diagnostics.error_count() >= 1);
    // The first line of every diagnostic names FILE:LINE:COL.
    const std::string rendered = result.diagnostics.render(*result.source);
    CHECK(rendered.rfind(input.filename().string() + ":", 0) == 0);
    auto golden = input;
    golden.replace_extension(".err");
    const std::string diff = testing::check_golden(golden, rendered);
    CHECK_MESSAGE(diff.empty(), diff);
  }
}
