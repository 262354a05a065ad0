#pragma once

#include <optional>

#include "srl/compiler/ast.h"
#include "srl/compiler/compiler.h"

namespace srl::compiler {

// Pass "parse". Reports every lexical error, or the first syntax error.
std::optional<ast::Request> parse(const SourceFile& src, const Limits& limits, Diagnostics& diags);

}  // namespace srl::compiler
