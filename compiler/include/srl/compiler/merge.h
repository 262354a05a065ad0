// Several requests on the same sources as one DAG: identical stateless
// prefixes become one node (same filter, options, pin and translation, fed
// by the same merged inputs through the same selectors), so a kernel hook
// parses and classifies once for all requests. Stateful nodes (counters,
// samplers, policers) and sinks stay per request.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "srl/compiler/dag.h"

namespace srl::compiler {

// A node of request `request` (its index among the requests merged).
struct RequestNode {
  std::size_t request = 0;
  Vertex vertex = 0;
  friend auto operator<=>(const RequestNode&, const RequestNode&) = default;
};

struct MergedRequests {
  // Numbered as every RequestDag (dag.h): vertices in the order of their
  // first members (by request, then vertex).
  RequestDag dag;
  // For each merged node, the request nodes it stands for, as
  // "LABEL/ID" (e.g. "r2/n3"); each request node is in one merged node.
  std::vector<std::vector<std::string>> members;
  // Their names (node_names of their requests), in the same order.
  std::vector<std::vector<std::string>> member_names;
  // The same request nodes, typed, in the same order.
  std::vector<std::vector<RequestNode>> member_nodes;
  // Per request, its DAG's file: where its members' positions are.
  std::vector<std::string> files;
};

// `labels[i]` names request i in `members` (an empty label: the bare id).
// Throws std::invalid_argument for a request not numbered as dag.h says.
MergedRequests merge_requests(std::span<const RequestDag* const> requests,
                              std::span<const std::string> labels);

}  // namespace srl::compiler
