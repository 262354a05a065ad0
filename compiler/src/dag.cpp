#include "srl/compiler/dag.h"

#include <map>
#include <optional>

#include <nlohmann/json.hpp>

namespace srl::compiler {

std::optional<std::size_t> Translation::backward_jump() const {
  for (std::size_t i = 0; i < insns.size(); ++i) {
    const auto& [code, jt, jf, k] = insns[i];
    // BPF_JMP | BPF_JA: the target is i + 1 + k modulo 2^32; jt and jf are
    // 8-bit and only go forward.
    if (code == 0x05 && ((i + 1 + k) & 0xFFFFFFFFu) <= i) return i;
  }
  return std::nullopt;
}

bool EdgeSelector::selects(std::uint32_t cls) const {
  if (rejected) return false;
  if (ranges.empty()) return true;
  bool in = false;
  for (const auto& r : ranges)
    in = in || (cls >= r.lo && cls <= r.hi);
  return in != invert;
}

std::string EdgeSelector::to_srl() const {
  if (rejected) return "!>";
  std::string s = invert ? "!" : "";
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(ranges[i].lo);
    if (ranges[i].hi != ranges[i].lo) s += ":" + std::to_string(ranges[i].hi);
  }
  return s + ">";
}

std::vector<std::string> node_names(const RequestDag& dag) {
  const auto& g = dag.graph;
  const std::size_t n = boost::num_vertices(g);
  // In the DAG's numbering (RequestDag) a node's inputs have their names
  // before it.
  std::vector<std::string> names(n);
  std::map<std::string, int> seen;
  for (Vertex v = 0; v < n; ++v) {
    const DagNode& node = g[v];
    if (node.name) {
      names[v] = *node.name;
      continue;
    }
    // Of several inputs, the one whose name sorts first: what numbers the
    // vertices does not enter into it.
    std::optional<std::string> via;
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it) {
      const Vertex u = boost::source(*it, g);
      const auto& sel = g[*it].select;
      // A source starts the path: "udp", not "rx>udp".
      std::string path =
          g[u].filter->role == filters::Role::source && !g[u].name ? std::string() : names[u];
      if (sel.rejected) {
        path += "!>";
      } else {
        if (!sel.ranges.empty()) {
          const std::string ranges = sel.to_srl();
          path += "[" + ranges.substr(0, ranges.size() - 1) + "]";
        }
        if (!path.empty()) path += ">";
      }
      if (!via || path < *via) via = std::move(path);
    }
    const std::string base = via.value_or("") + std::string(node.filter_name());
    const int k = ++seen[base];
    names[v] = k == 1 ? base : base + "#" + std::to_string(k);
  }
  return names;
}

std::vector<Vertex> RequestDag::sources() const {
  std::vector<Vertex> out;
  for (auto [it, end] = boost::vertices(graph); it != end; ++it)
    if (graph[*it].filter->role == filters::Role::source) out.push_back(*it);
  return out;
}

std::vector<Vertex> RequestDag::sinks() const {
  std::vector<Vertex> out;
  for (auto [it, end] = boost::vertices(graph); it != end; ++it)
    if (boost::out_degree(*it, graph) == 0) out.push_back(*it);
  return out;
}

std::optional<Vertex> RequestDag::find(std::string_view id) const {
  for (auto [it, end] = boost::vertices(graph); it != end; ++it)
    if (graph[*it].id == id) return *it;
  return std::nullopt;
}

bool RequestDag::numbered() const {
  for (auto [it, end] = boost::vertices(graph); it != end; ++it)
    if (graph[*it].id != "n" + std::to_string(*it)) return false;
  for (auto [it, end] = boost::edges(graph); it != end; ++it)
    if (boost::source(*it, graph) >= boost::target(*it, graph)) return false;
  return true;
}

namespace {

nlohmann::ordered_json selector_json(const EdgeSelector& s) {
  nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
  for (const auto& r : s.ranges)
    ranges.push_back({r.lo, r.hi});
  return {{"rejected", s.rejected}, {"invert", s.invert}, {"ranges", std::move(ranges)}};
}

std::string options_text(const DagNode& n) {
  std::string s;
  for (const auto& [k, v] : n.options) {
    if (!s.empty()) s += ", ";
    s += k + "=";
    if (const auto* str = std::get_if<std::string>(&v))
      s += nlohmann::ordered_json(*str).dump();
    else
      s += filters::to_json(v).dump();
  }
  return s;
}

}  // namespace

nlohmann::ordered_json to_json(const RequestDag& dag, const SourceFile* src, bool with_locs) {
  const auto& g = dag.graph;
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (auto [it, end] = boost::vertices(g); it != end; ++it) {
    const DagNode& n = g[*it];
    nlohmann::ordered_json options = nlohmann::ordered_json::object();
    for (const auto& [k, v] : n.options)
      options[k] = filters::to_json(v);
    nlohmann::ordered_json j = {
        {"id", n.id},
        {"filter", n.filter_name()},
        {"options", std::move(options)},
        {"name", n.name ? nlohmann::ordered_json(*n.name) : nlohmann::ordered_json(nullptr)},
        {"space", n.space ? nlohmann::ordered_json(*n.space) : nlohmann::ordered_json(nullptr)},
        {"synthetic", n.synthetic},
        {"implicit", n.implicit}};
    if (with_locs)
      j["loc"] = n.loc.valid() && src ? nlohmann::ordered_json(src->where(n.loc))
                                      : nlohmann::ordered_json(nullptr);
    if (n.translation) {
      nlohmann::ordered_json insns = nlohmann::ordered_json::array();
      for (const auto& in : n.translation->insns)
        insns.push_back(in);
      j["translation"] = {{"kind", n.translation->kind},
                          {"linktype", n.translation->linktype},
                          {"source", n.translation->source},
                          {"insns", std::move(insns)}};
    }
    nodes.push_back(std::move(j));
  }
  nlohmann::ordered_json edges = nlohmann::ordered_json::array();
  for (auto [vi, vend] = boost::vertices(g); vi != vend; ++vi) {
    for (auto [it, end] = boost::out_edges(*vi, g); it != end; ++it) {
      edges.push_back({{"from", g[*vi].id},
                       {"to", g[boost::target(*it, g)].id},
                       {"select", selector_json(g[*it].select)}});
    }
  }
  nlohmann::ordered_json sources = nlohmann::ordered_json::array(),
                         sinks = nlohmann::ordered_json::array();
  for (Vertex v : dag.sources())
    sources.push_back(g[v].id);
  for (Vertex v : dag.sinks())
    sinks.push_back(g[v].id);
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  out["srl_dag_version"] = kDagJsonVersion;
  out["nodes"] = std::move(nodes);
  out["edges"] = std::move(edges);
  out["sources"] = std::move(sources);
  out["sinks"] = std::move(sinks);
  return out;
}

std::string to_text(const RequestDag& dag, const SourceFile* src) {
  const auto& g = dag.graph;
  std::size_t id_w = 2, filter_w = 6, name_w = 4, opt_w = 7;
  for (auto [it, end] = boost::vertices(g); it != end; ++it) {
    id_w = std::max(id_w, g[*it].id.size());
    filter_w = std::max(filter_w, g[*it].filter_name().size());
    name_w = std::max(name_w, g[*it].name.value_or("-").size());
    opt_w = std::max(opt_w, options_text(g[*it]).size());
  }
  auto pad = [](std::string s, std::size_t w) {
    s.resize(std::max(s.size(), w), ' ');
    return s;
  };
  std::string out = pad("id", id_w) + "  " + pad("filter", filter_w) + "  " + pad("name", name_w) +
                    "  " + pad("options", opt_w) + "  where\n";
  for (auto [it, end] = boost::vertices(g); it != end; ++it) {
    const DagNode& n = g[*it];
    std::string where = n.implicit ? "(implicit source)" : !src ? "" : src->where(n.loc);
    if (n.synthetic) where += " (synthetic)";
    if (n.space) where += " [space=" + *n.space + "]";
    out += pad(n.id, id_w) + "  " + pad(std::string(n.filter_name()), filter_w) + "  " +
           pad(n.name.value_or("-"), name_w) + "  " + pad(options_text(n), opt_w) + "  " + where;
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    out += "\n";
  }
  out += "\n";
  for (auto [vi, vend] = boost::vertices(g); vi != vend; ++vi)
    for (auto [it, end] = boost::out_edges(*vi, g); it != end; ++it)
      out += g[*vi].id + " " + g[*it].select.to_srl() + " " + g[boost::target(*it, g)].id + "\n";
  return out;
}

std::string to_dot(const RequestDag& dag) {
  const auto& g = dag.graph;
  auto quote = [](const std::string& s) { return nlohmann::ordered_json(s).dump(); };
  std::string out =
      "digraph request {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n";
  for (auto [it, end] = boost::vertices(g); it != end; ++it) {
    const DagNode& n = g[*it];
    std::string label = std::string(n.filter_name());
    if (n.name) label += " " + *n.name;
    if (const std::string o = options_text(n); !o.empty()) label += "\n" + o;
    out += "  " + n.id + " [label=" + quote(label);
    if (n.synthetic) out += ", style=dashed, shape=ellipse";
    if (n.implicit) out += ", style=dotted";
    out += "];\n";
  }
  for (auto [vi, vend] = boost::vertices(g); vi != vend; ++vi) {
    for (auto [it, end] = boost::out_edges(*vi, g); it != end; ++it) {
      const EdgeSelector& s = g[*it].select;
      out += "  " + g[*vi].id + " -> " + g[boost::target(*it, g)].id;
      if (!s.plain()) {
        std::string label = s.to_srl();
        label.pop_back();  // the '>'
        out += " [label=" + quote(label) + (s.rejected ? ", style=dashed" : "") + "]";
      }
      out += ";\n";
    }
  }
  return out + "}\n";
}

}  // namespace srl::compiler
