// libFuzzer target for the SRL compiler (SRL.md §4: "the compiler never
// crashes or hangs on any input").
//
// Every input is compiled with the default limits. Whatever the outcome, the
// diagnostics are rendered (text and JSON). When the request compiles, every
// printer runs on the result, and the syntax-tree printer must round-trip:
// compiling ast::print(ast) must succeed and give the same DAG once source
// positions are left out. A broken round trip calls abort(), so that libFuzzer
// reports it as a crash and saves the input.
//
// Build: configure with clang and -DSRL_FUZZ=ON (tests/CMakeLists.txt), then
// `ninja fuzz_compile`; run with tests/fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "srl/compiler/ast.h"
#include "srl/compiler/compiler.h"
#include "srl/compiler/dag.h"

namespace {

using namespace srl::compiler;

CompileOptions base_options() {
  CompileOptions o;
  o.file_name = "fuzz.srl";
  o.default_devices = {"veth0"};
  return o;
}

// Reports a broken invariant with enough context to understand it without a
// debugger, then aborts so that libFuzzer keeps the input.
[[noreturn]] void fail(const char* what, std::string_view input, const std::string& printed,
                       const std::string& detail) {
  std::fprintf(stderr,
               "\n==== fuzz_compile: %s ====\n"
               "---- input (%zu bytes) ----\n%.*s\n"
               "---- ast::print ----\n%s\n"
               "---- detail ----\n%s\n",
               what, input.size(), static_cast<int>(input.size()), input.data(), printed.c_str(),
               detail.c_str());
  std::abort();
}

// Uses the result so that the optimiser cannot drop the printers' work.
volatile std::size_t g_sink = 0;
void consume(const std::string& s) {
  g_sink = s.size();
}

void render_diagnostics(const CompileResult& r) {
  consume(r.diagnostics.render(*r.source));
  consume(r.diagnostics.to_json(*r.source).dump());
  for (const auto& d : r.diagnostics.all())
    consume(render(d, *r.source));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const CompileOptions options = base_options();

  CompileResult r = compile(input, options);
  render_diagnostics(r);

  // A request that parsed has a canonical text, and that text parses too,
  // whatever later passes said about it.
  std::string printed;
  if (r.ast) {
    printed = ast::print(*r.ast);
    consume(ast::to_json(*r.ast).dump());
  }
  if (!r.ok()) {
    if (r.ast) {
      CompileOptions po = options;
      po.stop_after = "parse";
      // The canonical text may be longer than the input (spaces, ';').
      if (printed.size() > po.limits.max_input_bytes) po.limits.max_input_bytes = printed.size();
      CompileResult p = compile(printed, po);
      if (!p.ok() || !p.ast)
        fail("ast::print of a parsed request does not parse", input, printed,
             p.diagnostics.render(*p.source));
    }
    return 0;
  }

  if (!r.ast || !r.dag) fail("compile succeeded without an ast and a dag", input, printed, "");
  const RequestDag& dag = *r.dag;

  // Every printer, on everything that compiled.
  consume(to_json(dag, r.source.get()).dump());
  consume(to_json(dag, nullptr).dump());
  consume(to_dot(dag));
  consume(to_text(dag, r.source.get()));
  consume(to_text(dag, nullptr));
  consume(ast::to_json(*r.ast).dump(2));

  // Round trip through the canonical text.
  CompileOptions po = options;
  if (printed.size() > po.limits.max_input_bytes) po.limits.max_input_bytes = printed.size();
  CompileResult again = compile(printed, po);
  if (!again.ok() || !again.dag)
    fail("ast::print of a compiled request does not compile", input, printed,
         again.diagnostics.render(*again.source));
  const std::string want = to_json(dag, nullptr, /*with_locs=*/false).dump(1);
  const std::string got = to_json(*again.dag, nullptr, /*with_locs=*/false).dump(1);
  if (want != got)
    fail("ast::print round trip changed the DAG", input, printed,
         "---- DAG of the input ----\n" + want + "\n---- DAG of ast::print ----\n" + got);
  return 0;
}
