// docs/filter-semantics.md, "Edges", "Synthetic nodes" and "Terminal
// filters", over a compiled Request DAG.
#include "reference_dag.h"

#include <queue>
#include <stdexcept>
#include <utility>

namespace srl::reference {

using namespace srl::filters;

std::string_view to_string(HookAction a) {
  switch (a) {
    case HookAction::none:
      return "none";
    case HookAction::pass:
      return "pass";
    case HookAction::tx:
      return "tx";
    case HookAction::drop:
      return "drop";
  }
  return "?";
}

ReferenceDag::ReferenceDag(const compiler::RequestDag& dag) {
  const auto& g = dag.graph;
  const std::size_t n = boost::num_vertices(g);
  nodes_.resize(n);
  for (std::size_t v = 0; v < n; ++v) {
    const compiler::DagNode& dn = g[v];
    Node& node = nodes_[v];
    node.id = dn.id;
    if (dn.filter == nullptr) throw std::invalid_argument("node " + dn.id + " has no filter");
    const FilterSpec& spec = *dn.filter;
    if (spec.role == Role::source) {
      node.kind = Kind::source;
    } else if (spec.role == Role::synthetic && spec.name == "union") {
      node.kind = Kind::union_node;
    } else if (spec.role == Role::synthetic && spec.name == "intersect") {
      node.kind = Kind::intersect_node;
    } else {
      node.filter = make_reference_filter(spec, dn.options,
                                          dn.translation ? &dn.translation->insns : nullptr);
      if (spec.name == "drop") node.terminal = HookAction::drop;
      if (spec.name == "pass") node.terminal = HookAction::pass;
      if (spec.name == "tx") {
        node.terminal = HookAction::tx;
        if (auto it = dn.options.find("dev"); it != dn.options.end())
          if (const auto* dev = std::get_if<std::string>(&it->second)) node.tx_dev = *dev;
      }
    }
  }
  // Inputs in the order of the DAG's JSON edge list: by source vertex, then
  // that vertex's out-edge order.
  std::vector<std::size_t> indegree(n, 0);
  for (std::size_t v = 0; v < n; ++v) {
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it) {
      const std::size_t to = boost::target(*it, g);
      nodes_[to].inputs.push_back({v, g[*it].select, g[v].filter->max_class > 0});
      ++indegree[to];
    }
  }
  // Kahn's algorithm, lowest index first, so evaluation order is stable.
  std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
  for (std::size_t v = 0; v < n; ++v)
    if (indegree[v] == 0) ready.push(v);
  while (!ready.empty()) {
    const std::size_t v = ready.top();
    ready.pop();
    order_.push_back(v);
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      if (--indegree[boost::target(*it, g)] == 0) ready.push(boost::target(*it, g));
  }
  if (order_.size() != n) throw std::invalid_argument("the request graph has a cycle");
}

ReferenceDag::~ReferenceDag() = default;
ReferenceDag::ReferenceDag(ReferenceDag&&) noexcept = default;
ReferenceDag& ReferenceDag::operator=(ReferenceDag&&) noexcept = default;

std::optional<std::size_t> ReferenceDag::index_of(std::string_view id) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].id == id) return i;
  return std::nullopt;
}

DagResult ReferenceDag::run(std::span<const std::uint8_t> frame, std::uint64_t now_ns) {
  const ParsedPacket packet = parse_packet(frame);
  DagResult out;
  out.nodes.resize(nodes_.size());
  for (std::size_t v : order_) {
    Node& node = nodes_[v];
    NodeResult& r = out.nodes[v];
    if (node.kind == Kind::source) {
      r = {true, true, 0, 0};
      continue;
    }
    bool any = false, all = !node.inputs.empty();
    std::uint16_t first_delivered_cls = 0;
    std::optional<std::uint16_t> first_classifying_cls;
    for (const Input& in : node.inputs) {
      const NodeResult& u = out.nodes[in.from];
      const bool delivered =
          u.reached && (in.select.rejected ? !u.accepted : u.accepted && in.select.selects(u.cls));
      // A block that came through `!>` was rejected upstream and has no
      // class; it carries 0.
      if (delivered && !any) first_delivered_cls = u.accepted ? u.cls : 0;
      if (delivered && !first_classifying_cls && in.classifies && !in.select.rejected)
        first_classifying_cls = u.cls;
      any = any || delivered;
      all = all && delivered;
    }
    r.reached = any;
    if (!any) continue;
    r.in_cls = first_delivered_cls;
    switch (node.kind) {
      case Kind::union_node:
        r.accepted = true;
        r.cls = first_delivered_cls;
        break;
      case Kind::intersect_node: {
        // The class of the first input that classifies: in (tcp) and
        // (port) 22> ..., the port.
        r.accepted = all;
        r.cls = all ? first_classifying_cls.value_or(0) : 0;
        break;
      }
      case Kind::filter: {
        const Verdict verdict = node.filter->process(packet, frame, now_ns);
        r.accepted = verdict.accept;
        r.cls = verdict.accept ? verdict.cls : 0;
        break;
      }
      case Kind::source:
        break;
    }
    if (r.accepted && node.terminal > out.verdict.action) {
      out.verdict.action = node.terminal;
      out.verdict.dev = node.terminal == HookAction::tx ? node.tx_dev : std::string();
    }
  }
  return out;
}

DagResult evaluate_dag(const compiler::RequestDag& dag, std::span<const std::uint8_t> frame,
                       std::uint64_t now_ns) {
  ReferenceDag ref(dag);
  return ref.run(frame, now_ns);
}

}  // namespace srl::reference
