// A whole compiled Request DAG run on one frame at a time with the reference
// filters, following docs/filter-semantics.md ("Edges", "Synthetic nodes",
// "Terminal filters"): the oracle for what a kernel hook running the same
// request must do with the same bytes. Test support (srl_reference_dag),
// above the compiler: the filters' library, the ground floor, includes no
// compiler header.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "srl/compiler/dag.h"
#include "srl/filters/reference.h"

namespace srl::reference {

using filters::ReferenceFilter;

// Ordered by strength: the hook's verdict is the strongest terminal reached.
enum class HookAction : std::uint8_t { none = 0, pass = 1, tx = 2, drop = 3 };
std::string_view to_string(HookAction a);

struct HookVerdict {
  HookAction action = HookAction::none;  // none: no terminal reached (the stack gets it)
  std::string dev;                       // for tx: the device of the first tx node reached
  friend bool operator==(const HookVerdict&, const HookVerdict&) = default;
};

struct NodeResult {
  bool reached = false;
  bool accepted = false;
  std::uint16_t cls = 0;     // meaningful when accepted
  std::uint16_t in_cls = 0;  // the class it came with: by the first input that delivered
  friend bool operator==(const NodeResult&, const NodeResult&) = default;
};

struct DagResult {
  std::vector<NodeResult> nodes;  // indexed by the DAG's vertex index
  HookVerdict verdict;
};

class ReferenceDag {
 public:
  // Builds one reference filter per node (stateful ones keep their state
  // across run() calls). Throws std::invalid_argument when a node's filter
  // has no reference implementation, and for a cyclic graph. `dag` need not
  // outlive this object.
  explicit ReferenceDag(const compiler::RequestDag& dag);
  ~ReferenceDag();
  ReferenceDag(ReferenceDag&&) noexcept;
  ReferenceDag& operator=(ReferenceDag&&) noexcept;

  DagResult run(std::span<const std::uint8_t> frame, std::uint64_t now_ns = 0);

  std::size_t node_count() const { return nodes_.size(); }
  // The vertex index of node `id` ("n3"), if any.
  std::optional<std::size_t> index_of(std::string_view id) const;

 private:
  enum class Kind : std::uint8_t { source, filter, union_node, intersect_node };
  struct Input {
    std::size_t from;
    compiler::EdgeSelector select;
    bool classifies = false;  // the source can emit a class other than 0
  };
  struct Node {
    std::string id;
    Kind kind = Kind::filter;
    HookAction terminal = HookAction::none;
    std::string tx_dev;
    std::unique_ptr<ReferenceFilter> filter;
    std::vector<Input> inputs;  // in edge order (source vertex, then edge)
  };
  std::vector<Node> nodes_;
  std::vector<std::size_t> order_;  // topological
};

// One frame through a fresh ReferenceDag (stateful filters start empty).
DagResult evaluate_dag(const compiler::RequestDag& dag, std::span<const std::uint8_t> frame,
                       std::uint64_t now_ns = 0);

}  // namespace srl::reference
