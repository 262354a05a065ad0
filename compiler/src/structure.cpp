// Passes on the shape of the DAG: "implicit-sources", "check-structure",
// "check-acyclic" and "canonicalize".
#include <algorithm>
#include <queue>
#include <set>

#include "context.h"

namespace srl::compiler {

std::string CompileContext::describe(Vertex v) const {
  const DagNode& n = dag->graph[v];
  const std::string at = n.loc.valid()
                             ? std::to_string(n.loc.line) + ":" + std::to_string(n.loc.col)
                             : std::string("implicit");
  if (n.name) return "'" + *n.name + "' (" + std::string(n.filter_name()) + ", " + at + ")";
  return "'" + std::string(n.filter_name()) + "' (" + at + ")";
}

// Every node that receives no input and is not a source reads from the
// request's default devices.
void add_implicit_sources(CompileContext& cx) {
  auto& g = cx.dag->graph;
  std::vector<Vertex> orphans;
  for (auto [it, end] = boost::vertices(g); it != end; ++it)
    if (boost::in_degree(*it, g) == 0 && g[*it].filter->role != filters::Role::source)
      orphans.push_back(*it);
  if (orphans.empty()) return;

  std::vector<std::optional<std::string>> devices;
  for (const auto& d : cx.options.default_devices)
    devices.emplace_back(d);
  if (devices.empty()) devices.emplace_back(std::nullopt);
  for (const auto& dev : devices) {
    DagNode rx;
    rx.filter = cx.catalog.find("rx");
    rx.implicit = true;
    rx.creation_order = cx.next_order++;
    rx.id = "n" + std::to_string(rx.creation_order);
    if (dev) rx.options["dev"] = *dev;
    const Vertex v = boost::add_vertex(std::move(rx), g);
    for (Vertex o : orphans)
      boost::add_edge(v, o, DagEdge{}, g);
  }
}

void check_structure(CompileContext& cx) {
  auto& g = cx.dag->graph;
  // One error per sink and written '>', however many targets fan out.
  std::set<std::pair<Vertex, std::pair<std::uint32_t, std::uint32_t>>> reported;
  for (auto [it, end] = boost::edges(g); it != end && !cx.diags.too_many(); ++it) {
    const Vertex from = boost::source(*it, g), to = boost::target(*it, g);
    const DagNode& a = g[from];
    const DagNode& b = g[to];
    const DagEdge& e = g[*it];
    if (b.filter->role == filters::Role::source) {
      cx.diags.error(e.loc, cx.describe(to) +
                                " is a source and takes no input; expected a "
                                "filter or sink after '>'");
      continue;
    }
    if (a.filter->role == filters::Role::sink) {
      if (!reported.insert({from, {e.loc.line, e.loc.col}}).second) continue;
      if (b.synthetic)
        cx.diags.error(e.loc, cx.describe(from) +
                                  " is a terminal sink and cannot be an operand "
                                  "of '" +
                                  (b.filter->name == "union" ? "or" : "and") +
                                  "': it passes no blocks on; expected a filter");
      else
        cx.diags.error(e.loc, cx.describe(from) +
                                  " is a terminal sink and nothing may follow "
                                  "it; expected the end of the pipeline");
      continue;
    }
    // A class selector that can never match is legal but almost surely a
    // mistake: say so.
    if (e.select.rejected || e.select.ranges.empty()) continue;
    std::uint32_t max_class = a.filter->max_class;
    if (a.filter->name == "hash") {
      if (auto b_it = a.options.find("buckets"); b_it != a.options.end())
        max_class = static_cast<std::uint32_t>(std::get<std::int64_t>(b_it->second) - 1);
    }
    bool any = false;
    for (std::uint32_t c = 0; c <= max_class && !any; ++c)
      any = e.select.selects(c);
    if (!any) {
      std::string why = max_class == 0 ? cx.describe(from) + " accepts blocks with class 0 only"
                                       : cx.describe(from) + " emits classes 0 to " +
                                             std::to_string(max_class) + " only";
      cx.diags.warning(e.loc, "selector '" + e.select.to_srl() + "' never matches: " + why);
    }
  }
}

// Finds a cycle with an iterative depth-first search (requests can be long
// chains) and reports the nodes on it.
void check_acyclic(CompileContext& cx) {
  auto& g = cx.dag->graph;
  const std::size_t n = boost::num_vertices(g);
  enum : std::uint8_t { white, grey, black };
  std::vector<std::uint8_t> colour(n, white);
  std::vector<Vertex> parent(n);
  struct Frame {
    Vertex v;
    DagGraph::out_edge_iterator next, end;
  };
  for (Vertex root = 0; root < n; ++root) {
    if (colour[root] != white) continue;
    std::vector<Frame> stack;
    auto [b, e] = boost::out_edges(root, g);
    stack.push_back({root, b, e});
    colour[root] = grey;
    while (!stack.empty()) {
      Frame& f = stack.back();
      if (f.next == f.end) {
        colour[f.v] = black;
        stack.pop_back();
        continue;
      }
      const Edge edge = *f.next++;
      const Vertex to = boost::target(edge, g);
      if (colour[to] == white) {
        colour[to] = grey;
        parent[to] = f.v;
        auto [nb, ne] = boost::out_edges(to, g);
        stack.push_back({to, nb, ne});
      } else if (colour[to] == grey) {
        std::vector<Vertex> cycle{to};
        for (Vertex v = f.v; v != to; v = parent[v])
          cycle.push_back(v);
        std::reverse(cycle.begin() + 1, cycle.end());
        std::string path;
        for (Vertex v : cycle)
          path += cx.describe(v) + " > ";
        path += cx.describe(to);
        cx.diags.error(g[edge].loc, "cycle: " + path +
                                        "; expected an acyclic request (loops are not in SRL "
                                        "version 1)");
        return;
      }
    }
  }
}

// Gives the DAG its numbering (RequestDag in dag.h): topological, ties by
// order of appearance in the text; and orders each node's edges, so that
// the same request always gives the same ids and the same JSON, and
// reformatted text gives the same DAG. The one place the order is derived.
void canonicalize(CompileContext& cx) {
  const DagGraph& g = cx.dag->graph;
  const std::size_t n = boost::num_vertices(g);
  std::vector<std::size_t> indegree(n);
  for (Vertex v = 0; v < n; ++v)
    indegree[v] = boost::in_degree(v, g);
  auto later = [&](Vertex a, Vertex b) { return g[a].creation_order > g[b].creation_order; };
  std::priority_queue<Vertex, std::vector<Vertex>, decltype(later)> ready(later);
  for (Vertex v = 0; v < n; ++v)
    if (indegree[v] == 0) ready.push(v);
  std::vector<Vertex> order;
  order.reserve(n);
  while (!ready.empty()) {
    const Vertex v = ready.top();
    ready.pop();
    order.push_back(v);
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      if (--indegree[boost::target(*it, g)] == 0) ready.push(boost::target(*it, g));
  }
  if (order.size() != n) return;  // cycles were reported by check-acyclic

  std::vector<Vertex> new_index(n);
  DagGraph out;
  for (std::size_t i = 0; i < n; ++i) {
    DagNode node = g[order[i]];
    node.id = "n" + std::to_string(i);
    node.creation_order = static_cast<std::uint32_t>(i);
    new_index[order[i]] = boost::add_vertex(std::move(node), out);
  }
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::pair<Vertex, DagEdge>> edges;
    for (auto [it, end] = boost::out_edges(order[i], g); it != end; ++it)
      edges.emplace_back(new_index[boost::target(*it, g)], g[*it]);
    std::stable_sort(edges.begin(), edges.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first, a.second.select) < std::tie(b.first, b.second.select);
    });
    for (auto& [to, e] : edges)
      boost::add_edge(new_index[order[i]], to, std::move(e), out);
  }
  cx.dag->graph = std::move(out);
}

}  // namespace srl::compiler
