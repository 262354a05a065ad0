// The Request DAG: filter instances with typed options, edges with
// selectors, synthetic union/intersect nodes, implicit sources and
// translations. Hardware-independent; its JSON form is SRL.md §5.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <nlohmann/json_fwd.hpp>

#include "srl/compiler/diagnostics.h"
#include "srl/filters/catalog.h"

namespace srl::compiler {

namespace ast {
struct Node;
}

// A filter expression turned into an executable form before placement.
struct Translation {
  std::string kind;                                 // "cbpf": classic BPF from libpcap's compiler
  std::string linktype;                             // "EN10MB"
  std::string source;                               // the expression as written
  std::vector<std::array<std::uint32_t, 4>> insns;  // code, jt, jf, k

  // The first instruction that jumps back (a `ja` whose offset wraps, as
  // libpcap emits for `protochain`'s loop over extension headers), if any:
  // such a program runs in userspace only (libpcap's interpreter takes it;
  // a kernel program here does not).
  std::optional<std::size_t> backward_jump() const;
};

struct DagNode {
  std::string id;  // "n<vertex index>" (see RequestDag), stable for the same input
  const filters::FilterSpec* filter = nullptr;
  std::map<std::string, filters::OptionValue> options;  // typed, defaults filled
  std::optional<std::string> name;                      // from name=
  std::optional<std::string> space;                     // pin from space=
  bool synthetic = false;                               // union/intersect
  bool implicit = false;                                // added source
  Loc loc;
  std::optional<Translation> translation;
  const ast::Node* origin = nullptr;  // the defining atom, while compiling
  std::uint32_t creation_order = 0;   // tie-break for stable ids

  std::string_view filter_name() const { return filter ? filter->name : std::string_view("?"); }
};

struct ClassRange {
  std::uint16_t lo = 0;
  std::uint16_t hi = 0;
  friend auto operator<=>(const ClassRange&, const ClassRange&) = default;
};

struct EdgeSelector {
  bool rejected = false;           // `!>`: blocks the upstream rejected
  bool invert = false;             // accepted blocks whose class is NOT in ranges
  std::vector<ClassRange> ranges;  // sorted, disjoint, not adjacent; empty = all
  friend auto operator<=>(const EdgeSelector&, const EdgeSelector&) = default;

  bool plain() const { return !rejected && !invert && ranges.empty(); }
  bool selects(std::uint32_t cls) const;  // for accepted blocks of class cls
  std::string to_srl() const;             // "22,80:90>", "!>", ">"
};

struct DagEdge {
  EdgeSelector select;
  Loc loc;  // of the edge operator in the request
};

using DagGraph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, DagNode, DagEdge>;
using Vertex = DagGraph::vertex_descriptor;
using Edge = DagGraph::edge_descriptor;

// The DAG's one topological order is its numbering: every edge goes from a
// lower vertex index to a higher one, and vertex i's id is "n<i>". compile()
// numbers its DAG so (ties in the order of the text) and merge_requests()
// keeps it, so whatever needs a node's inputs before the node walks the
// vertices 0, 1, 2, ... and derives no order of its own.
struct RequestDag {
  DagGraph graph;
  std::string file;  // display name of the request's source

  std::vector<Vertex> sources() const;  // nodes with role source
  std::vector<Vertex> sinks() const;    // nodes with no outgoing edge
  std::size_t node_count() const { return boost::num_vertices(graph); }
  std::size_t edge_count() const { return boost::num_edges(graph); }
  // The vertex with this id, if any.
  std::optional<Vertex> find(std::string_view id) const;
  // Whether the numbering above holds (a DAG built by other means may
  // break it).
  bool numbered() const;
};

// Every node's name, by vertex: the one given with name=, else one derived
// from the filters and selectors on the way to it from its source
// ("udp>port[53]>count"), so that it stays the same when other branches
// of the request change; equal derived names take "#2", "#3", ... in
// the order of the DAG's ids. docs/counters.md.
std::vector<std::string> node_names(const RequestDag& dag);

inline constexpr int kDagJsonVersion = 1;

// SRL.md §5. `with_locs = false` leaves positions out (for comparing DAGs
// compiled from differently formatted text).
nlohmann::ordered_json to_json(const RequestDag& dag, const SourceFile* src, bool with_locs = true);
std::string to_dot(const RequestDag& dag);
// A readable listing: one line per node, then one per edge.
std::string to_text(const RequestDag& dag, const SourceFile* src);

}  // namespace srl::compiler
