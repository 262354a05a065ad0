// State shared by the passes of one compilation.
#pragma once

#include <unordered_map>

#include "srl/compiler/compiler.h"

namespace srl::compiler {

struct CompileContext {
  const SourceFile& src;
  const filters::Catalog& catalog;
  const CompileOptions& options;
  Diagnostics& diags;
  ast::Request* ast = nullptr;
  RequestDag* dag = nullptr;

  // resolve-names: each filter atom -> the atom that defines its instance
  // (itself, unless it is a reference to a name).
  std::unordered_map<const ast::Node*, const ast::Node*> definition_of;
  // lower: each defining atom -> its vertex.
  std::unordered_map<const ast::Node*, Vertex> vertex_of;
  std::uint32_t next_order = 0;

  // "tcp 'web' at req.srl:1:1", for messages that name a node.
  std::string describe(Vertex v) const;
};

// The passes (compiler.cpp runs them in order).
void resolve_names(CompileContext& cx);
void lower(CompileContext& cx);
void check_options(CompileContext& cx);
void add_implicit_sources(CompileContext& cx);
void check_structure(CompileContext& cx);
void check_acyclic(CompileContext& cx);
void translate(CompileContext& cx);
void canonicalize(CompileContext& cx);

}  // namespace srl::compiler
