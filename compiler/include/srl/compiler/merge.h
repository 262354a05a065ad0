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

struct MergedRequests {
  RequestDag dag;  // ids in topological order, as compiled DAGs have
  // For each merged node, the request nodes it stands for, as
  // "LABEL/ID" (e.g. "r2/n3").
  std::vector<std::vector<std::string>> members;
  // Their names (node_names of their requests), in the same order.
  std::vector<std::vector<std::string>> member_names;
};

// `labels[i]` names request i in `members` (an empty label: the bare id).
MergedRequests merge_requests(std::span<const RequestDag* const> requests,
                              std::span<const std::string> labels);

}  // namespace srl::compiler
