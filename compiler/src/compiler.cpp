// The pass manager: runs the passes in order, stops after the first pass
// that reports an error (later passes would only repeat its consequences),
// and lets callers look at the IR after every pass.
#include "srl/compiler/compiler.h"

#include "context.h"
#include "parse.h"

namespace srl::compiler {
namespace {

struct DagPass {
  PassInfo info;
  void (*run)(CompileContext&);
};

const std::vector<DagPass>& dag_passes() {
  static const std::vector<DagPass> list = {
      {{"resolve-names", "decide which atoms are instances and which are references to names"},
       resolve_names},
      {{"lower", "syntax tree to DAG: pipelines, groups, selectors, and/or/not"}, lower},
      {{"check-options", "type options against the catalog, fill in defaults"}, check_options},
      {{"implicit-sources", "feed input-less pipelines from rx on the default devices"},
       add_implicit_sources},
      {{"check-structure", "sources without input, sinks without output, dead selectors"},
       check_structure},
      {{"check-acyclic", "reject cycles, naming the nodes on them"}, check_acyclic},
      {{"translate", "compile bpf expressions to classic BPF with libpcap"}, translate},
      {{"canonicalize", "stable node ids in topological order, ordered edges"}, canonicalize},
  };
  return list;
}

}  // namespace

const std::vector<PassInfo>& passes() {
  static const std::vector<PassInfo> list = [] {
    std::vector<PassInfo> l{
        {"parse", "request text to syntax tree, with limits on size and depth"}};
    for (const auto& p : dag_passes())
      l.push_back(p.info);
    return l;
  }();
  return list;
}

CompileResult compile(std::string_view text, const CompileOptions& options) {
  CompileResult result;
  result.source = std::make_unique<SourceFile>(options.file_name, std::string(text));
  const filters::Catalog& catalog =
      options.catalog != nullptr ? *options.catalog : filters::Catalog::builtin();

  result.last_pass = "parse";
  result.ast = parse(*result.source, options.limits, result.diagnostics);
  if (!result.ast) return result;
  if (options.after_pass) options.after_pass("parse", *result.ast, nullptr);
  if (options.stop_after == "parse") return result;

  RequestDag dag;
  dag.file = options.file_name;
  CompileContext cx{*result.source, catalog, options, result.diagnostics, &*result.ast, &dag};
  for (const auto& pass : dag_passes()) {
    result.last_pass = pass.info.name;
    pass.run(cx);
    if (result.diagnostics.has_errors()) return result;
    if (options.after_pass) options.after_pass(pass.info.name, *result.ast, &dag);
    if (options.stop_after == pass.info.name) break;
  }
  // The syntax tree stays with the result; the DAG no longer points into it.
  for (auto [it, end] = boost::vertices(dag.graph); it != end; ++it)
    dag.graph[*it].origin = nullptr;
  result.dag = std::move(dag);
  return result;
}

}  // namespace srl::compiler
