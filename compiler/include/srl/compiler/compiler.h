// The SRL front end: request text -> syntax tree -> Request DAG, through a
// fixed sequence of named passes (see passes()), each one testable and
// dumpable on its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "srl/compiler/ast.h"
#include "srl/compiler/dag.h"
#include "srl/compiler/diagnostics.h"

namespace srl::compiler {

struct Limits {
  std::size_t max_input_bytes = 1 << 20;  // 1 MiB
  std::uint32_t max_nesting = 64;         // parentheses
  std::size_t max_nodes = 100'000;        // filter instances
};

// Bounds on turning one `bpf expr=` into classic BPF. libpcap's compile time
// and memory grow faster than linearly with the alternatives of an
// expression (hundreds of `or`-ed terms take seconds and hundreds of MiB), so
// a process that compiles requests for others sets these: each expression is
// then compiled in a child process, which is killed past them.
struct TranslateBudget {
  std::chrono::milliseconds time{5000};   // wall clock, per expression
  std::size_t memory_bytes = 512u << 20;  // address space the compile may add
};

struct CompileOptions {
  std::string file_name = "<expr>";
  // Devices of the implicit `rx` source; none: one rx bound at deploy time.
  std::vector<std::string> default_devices;
  Limits limits;
  // Stop after this pass (empty: run them all).
  std::string stop_after;
  // Called after each pass that completed without errors, with its name and
  // the IR it produced: the syntax tree after "parse", the DAG after the rest.
  std::function<void(std::string_view pass, const ast::Request& ast, const RequestDag* dag)>
      after_pass;
  const filters::Catalog* catalog = nullptr;  // default: the builtin catalog
  // None (the default): libpcap compiles in this process, without bounds, as
  // a command line tool compiling its own user's request may.
  std::optional<TranslateBudget> translate_budget;
};

struct CompileResult {
  std::unique_ptr<SourceFile> source;
  std::optional<ast::Request> ast;
  std::optional<RequestDag> dag;
  Diagnostics diagnostics;
  std::string last_pass;  // the last pass that ran

  bool ok() const { return !diagnostics.has_errors(); }
};

struct PassInfo {
  std::string_view name;
  std::string_view summary;
};
// The passes, in the order they run.
const std::vector<PassInfo>& passes();

CompileResult compile(std::string_view text, const CompileOptions& options = {});

}  // namespace srl::compiler
