#include "srl/compiler/merge.h"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include <nlohmann/json.hpp>

namespace srl::compiler {
namespace {

bool shareable(const DagNode& n) {
  const auto& f = *n.filter;
  return (f.role == filters::Role::source || f.role == filters::Role::filter) &&
         f.state == filters::State::none && !f.emits_new_blocks;
}

// Identity of a node for merging: what it does and where its input comes
// from, in merged ids.
std::string signature(const DagNode& n, std::vector<std::string> inputs) {
  std::sort(inputs.begin(), inputs.end());
  nlohmann::json j = {{"f", n.filter_name()}, {"o", nlohmann::json::object()}};
  for (const auto& [k, v] : n.options)
    j["o"][k] = filters::to_json(v);
  j["s"] = n.space.value_or("");
  j["t"] = n.translation ? n.translation->source : "";
  j["i"] = inputs;
  return j.dump();
}

}  // namespace

MergedRequests merge_requests(std::span<const RequestDag* const> requests,
                              std::span<const std::string> labels) {
  if (requests.size() != labels.size())
    throw std::invalid_argument("merge_requests: one label per request");
  MergedRequests out;
  auto& g = out.dag.graph;
  std::map<std::string, Vertex> by_signature;
  std::set<std::tuple<Vertex, Vertex, EdgeSelector>> edges;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    if (!requests[r]->numbered())
      throw std::invalid_argument("merge_requests: request " + std::to_string(r) +
                                  " is not numbered topologically");
    const DagGraph& in = requests[r]->graph;
    const auto names = node_names(*requests[r]);
    out.files.push_back(requests[r]->file);
    // In the DAG's numbering a node's inputs are merged before it.
    std::vector<Vertex> index(boost::num_vertices(in));
    for (Vertex v = 0; v < index.size(); ++v) {
      const DagNode& node = in[v];
      std::vector<std::string> inputs;
      for (auto [it, end] = boost::in_edges(v, in); it != end; ++it)
        // "11>" would be vertex 1's class 1 and vertex 11's every block.
        inputs.push_back(std::to_string(index[boost::source(*it, in)]) + " " +
                         in[*it].select.to_srl());
      const std::string sig = shareable(node) ? signature(node, inputs) : std::string();
      const std::string member = labels[r].empty() ? node.id : labels[r] + "/" + node.id;
      if (!sig.empty()) {
        if (auto found = by_signature.find(sig); found != by_signature.end()) {
          index[v] = found->second;
          out.members[found->second].push_back(member);
          out.member_names[found->second].push_back(names[v]);
          out.member_nodes[found->second].push_back({r, v});
          continue;
        }
      }
      DagNode copy = node;
      copy.origin = nullptr;
      copy.id = "n" + std::to_string(boost::num_vertices(g));
      copy.creation_order = static_cast<std::uint32_t>(boost::num_vertices(g));
      index[v] = boost::add_vertex(std::move(copy), g);
      out.members.push_back({member});
      out.member_names.push_back({names[v]});
      out.member_nodes.push_back({{r, v}});
      if (!sig.empty()) by_signature.emplace(sig, index[v]);
    }
    for (auto [it, end] = boost::edges(in); it != end; ++it) {
      const Vertex a = index[boost::source(*it, in)], b = index[boost::target(*it, in)];
      if (edges.emplace(a, b, in[*it].select).second) boost::add_edge(a, b, in[*it], g);
    }
  }
  out.dag.file = requests.empty() ? std::string() : requests.front()->file;
  return out;
}

}  // namespace srl::compiler
