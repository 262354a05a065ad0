// The syntax tree of a request: syntax only, with source positions. Single
// children collapse (a `par` of one `seq` is that seq), so every node that
// remains is a construct the user wrote.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "srl/compiler/diagnostics.h"

namespace srl::compiler::ast {

struct Value {
  enum class Kind : std::uint8_t { ident, integer, string, cidr };
  Kind kind = Kind::ident;
  std::string text;  // strings: unescaped contents; others: as written
  Loc loc;
};

struct Option {
  std::string name;
  Loc name_loc;
  Value value;
};

struct Range {
  std::uint64_t lo = 0;  // wide on purpose: range checks report values
  std::uint64_t hi = 0;  // the user wrote, however large
  // A bound written as a name (`AAAA`): resolved against the filter the
  // edge leaves when the DAG is built; its number is then 0 here.
  std::string lo_name, hi_name;
  Loc loc;  // the whole range
  Loc lo_loc, hi_loc;
};

// What an edge passes on: accepted blocks (optionally only some classes), or
// rejected blocks (`!>`).
struct Selector {
  enum class Kind : std::uint8_t { accepted, rejected };
  Kind kind = Kind::accepted;
  bool invert = false;        // `!22>`: all accepted classes except these
  std::vector<Range> ranges;  // empty: every class
  Loc loc;                    // of the whole edge, through the '>'
};

enum class Kind : std::uint8_t { request, par, seq, or_, and_, not_, filter, group };
std::string_view to_string(Kind k);

struct Node {
  Kind kind;
  Loc loc;
  std::vector<std::unique_ptr<Node>> children;
  // seq: edges[i] joins children[i] and children[i + 1].
  std::vector<Selector> edges;
  // or/and: position of each operator keyword, for synthetic nodes.
  std::vector<Loc> operator_locs;
  // not: how many `not` keywords precede the operand.
  std::uint32_t not_count = 0;
  // filter: `(IDENT, options...)`; loc covers the whole atom, ident_loc
  // the IDENT.
  std::string ident;
  Loc ident_loc;
  std::vector<Option> options;

  explicit Node(Kind k, Loc l = {}) : kind(k), loc(l) {}
};

// A request: the root node (kind request, one child per statement).
struct Request {
  std::unique_ptr<Node> root;
};

nlohmann::ordered_json to_json(const Node& n);
nlohmann::ordered_json to_json(const Request& r);

// Canonical SRL text for a syntax tree: one statement per line, single
// spaces around operators, strings re-escaped, selectors normalised,
// comments dropped. Compiling the result gives the same DAG.
std::string print(const Request& r);

}  // namespace srl::compiler::ast
