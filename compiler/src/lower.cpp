// Pass "lower": syntax tree -> Request DAG.
//
// Every construct lowers to a fragment: the vertices that receive its input
// (entries) and the vertices whose output leaves it (exits). A pipeline
// joins each exit of one element to each entry of the next; a group or a
// parallel composition concatenates its branches' entries and exits (fan-out
// on the right of '>', fan-in on the left). `or` and `and` feed their
// operands the same input and join them in a synthetic union or intersect
// vertex; `not` inverts the exits, so their edges carry rejected blocks.
#include <algorithm>
#include <set>
#include <tuple>

#include "context.h"

namespace srl::compiler {
namespace {

struct Exit {
  Vertex v;
  bool inverted = false;  // from `not`: edges out of here take rejected blocks
  Loc not_loc;            // of the `not` that inverted it
};

struct Fragment {
  std::vector<Vertex> entries;
  std::vector<Exit> exits;
};

constexpr std::uint64_t kMaxClass = 65535;

class Lowering {
 public:
  explicit Lowering(CompileContext& cx) : cx_(cx) {}

  void run() {
    for (const auto& stmt : cx_.ast->root->children) {
      const Fragment f = lower(*stmt);
      if (too_big_) return;
      // Inversion acts on outgoing edges; at the end of a statement there
      // are none, so the `not` changes nothing.
      for (const Exit& e : f.exits)
        if (e.inverted)
          cx_.diags.warning(e.not_loc,
                            "'not' has no effect here: nothing follows it; expected "
                            "'not (a) > (b)' or '(a) or not (b)'");
    }
  }

 private:
  Fragment lower(const ast::Node& n) {
    switch (n.kind) {
      case ast::Kind::filter: {
        const Vertex v = vertex_for(n);
        return {{v}, {{v, false}}};
      }
      case ast::Kind::group:
        return lower(*n.children.front());
      case ast::Kind::request:
      case ast::Kind::par: {
        Fragment out;
        for (const auto& c : n.children) {
          Fragment f = lower(*c);
          out.entries.insert(out.entries.end(), f.entries.begin(), f.entries.end());
          out.exits.insert(out.exits.end(), f.exits.begin(), f.exits.end());
        }
        return out;
      }
      case ast::Kind::seq: {
        Fragment first = lower(*n.children.front());
        std::vector<Exit> exits = std::move(first.exits);
        for (std::size_t i = 1; i < n.children.size(); ++i) {
          Fragment next = lower(*n.children[i]);
          const ast::Selector& written = n.edges[i - 1];
          if (names_classes(written)) {
            // Names mean what the filter each block leaves gives them.
            for (const Exit& e : exits)
              if (const auto select = selector(written, e.v))
                connect({e}, next.entries, *select, written);
          } else if (const auto select = selector(written)) {
            connect(exits, next.entries, *select, written);
          }
          exits = std::move(next.exits);
        }
        return {std::move(first.entries), std::move(exits)};
      }
      case ast::Kind::or_:
      case ast::Kind::and_: {
        const bool is_or = n.kind == ast::Kind::or_;
        const Vertex join = synthetic(is_or ? "union" : "intersect", n.operator_locs.front());
        Fragment out;
        ast::Selector plain;
        plain.loc = n.operator_locs.front();
        for (const auto& c : n.children) {
          Fragment f = lower(*c);
          out.entries.insert(out.entries.end(), f.entries.begin(), f.entries.end());
          connect(f.exits, {join}, EdgeSelector{}, plain);
        }
        out.exits.push_back({join, false});
        return out;
      }
      case ast::Kind::not_: {
        Fragment f = lower(*n.children.front());
        if (n.not_count % 2 == 1) {
          for (auto& e : f.exits) {
            e.inverted = !e.inverted;
            e.not_loc = n.loc;
          }
        }
        return f;
      }
    }
    return {};
  }

  Vertex vertex_for(const ast::Node& atom) {
    const ast::Node* def = cx_.definition_of.at(&atom);
    if (auto it = cx_.vertex_of.find(def); it != cx_.vertex_of.end()) return it->second;
    DagNode node;
    node.filter = cx_.catalog.find(def->ident);
    node.loc = def->loc;
    node.origin = def;
    for (const auto& o : def->options)
      if (o.name == "name") node.name = o.value.text;
    const Vertex v = add(std::move(node));
    cx_.vertex_of.emplace(def, v);
    return v;
  }

  Vertex synthetic(std::string_view filter, Loc loc) {
    DagNode node;
    node.filter = cx_.catalog.find(filter);
    node.synthetic = true;
    node.loc = loc;
    return add(std::move(node));
  }

  Vertex add(DagNode node) {
    node.creation_order = cx_.next_order++;
    node.id = "n" + std::to_string(node.creation_order);
    if (boost::num_vertices(cx_.dag->graph) == cx_.options.limits.max_nodes && !too_big_) {
      too_big_ = true;
      cx_.diags.error(node.loc, "request has more than " +
                                    std::to_string(cx_.options.limits.max_nodes) +
                                    " filter instances; expected a smaller request");
    }
    return boost::add_vertex(std::move(node), cx_.dag->graph);
  }

  static bool names_classes(const ast::Selector& s) {
    return std::any_of(s.ranges.begin(), s.ranges.end(), [](const ast::Range& r) {
      return !r.lo_name.empty() || !r.hi_name.empty();
    });
  }

  // The number of a class bound written as a name, by the filter of `from`.
  std::optional<std::uint64_t> class_number(const std::string& name, std::uint64_t number, Loc loc,
                                            std::optional<Vertex> from) {
    if (name.empty()) return number;
    const filters::FilterSpec* f = from ? cx_.dag->graph[*from].filter : nullptr;
    if (f == nullptr) return std::nullopt;  // an unknown filter: said where it is written
    if (const auto v = f->class_named(name)) return *v;
    if (f->class_names.empty()) {
      cx_.diags.error(loc, "'" + name + "' is not a class of " + cx_.describe(*from) + ", which " +
                               "names none; expected a class number (" +
                               std::string(f->class_meaning) + ")");
    } else {
      std::string known;
      for (const auto& c : f->class_names)
        known += (known.empty() ? "" : ", ") + std::string(c.name);
      cx_.diags.error(loc, "'" + name + "' is not a class name of " + std::string(f->name) +
                               "; expected a number or one of " + known);
    }
    return std::nullopt;
  }

  // Validates and normalises a selector: names resolved by the filter the
  // edge leaves (`from`), ranges in bounds, sorted, merged.
  std::optional<EdgeSelector> selector(const ast::Selector& written,
                                       std::optional<Vertex> from = std::nullopt) {
    ast::Selector s = written;
    for (auto& r : s.ranges) {
      const auto lo = class_number(r.lo_name, r.lo, r.lo_loc, from);
      // One class (no `:`): its one bound, said once.
      const bool single = r.hi_name == r.lo_name && r.hi == r.lo && r.hi_loc == r.lo_loc;
      const auto hi = single ? lo : class_number(r.hi_name, r.hi, r.hi_loc, from);
      if (!lo || !hi) return std::nullopt;
      r.lo = *lo;
      r.hi = *hi;
    }
    EdgeSelector out;
    out.rejected = s.kind == ast::Selector::Kind::rejected;
    out.invert = s.invert;
    bool ok = true;
    for (const auto& r : s.ranges) {
      if (r.lo > kMaxClass || r.hi > kMaxClass) {
        const bool lo_bad = r.lo > kMaxClass;
        const std::uint64_t bad = lo_bad ? r.lo : r.hi;
        cx_.diags.error(lo_bad ? r.lo_loc : r.hi_loc,
                        (bad == UINT64_MAX ? std::string("class number too large")
                                           : "class " + std::to_string(bad) + " is out of range") +
                            "; expected 0 to 65535");
        ok = false;
      } else if (r.lo > r.hi) {
        cx_.diags.error(r.loc, "empty class range " + std::to_string(r.lo) + ":" +
                                   std::to_string(r.hi) + "; expected lo <= hi");
        ok = false;
      } else {
        out.ranges.push_back({static_cast<std::uint16_t>(r.lo), static_cast<std::uint16_t>(r.hi)});
      }
    }
    if (!ok) return std::nullopt;
    std::sort(out.ranges.begin(), out.ranges.end());
    std::vector<ClassRange> merged;
    for (const auto& r : out.ranges) {
      if (!merged.empty() && static_cast<std::uint32_t>(merged.back().hi) + 1 >= r.lo)
        merged.back().hi = std::max(merged.back().hi, r.hi);
      else
        merged.push_back(r);
    }
    out.ranges = std::move(merged);
    return out;
  }

  void connect(const std::vector<Exit>& exits, const std::vector<Vertex>& entries,
               const EdgeSelector& select, const ast::Selector& written) {
    for (const Exit& e : exits) {
      EdgeSelector s = select;
      if (e.inverted) {
        if (!s.ranges.empty()) {
          cx_.diags.error(written.loc,
                          "class selector after 'not': blocks a filter rejects carry no class; "
                          "expected a plain '>' or '!>'");
          return;
        }
        s.rejected = !s.rejected;  // not A > B == A !> B; not A !> B == A > B
      }
      for (const Vertex to : entries)
        add_edge(e.v, to, s, written.loc);
    }
  }

  void add_edge(Vertex from, Vertex to, const EdgeSelector& s, Loc loc) {
    if (!edges_.emplace(from, to, s).second) {
      cx_.diags.warning(loc, "duplicate edge from " + cx_.describe(from) + " to " +
                                 cx_.describe(to) + " merged; each block passes it once");
      return;
    }
    boost::add_edge(from, to, DagEdge{s, loc}, cx_.dag->graph);
  }

  CompileContext& cx_;
  std::set<std::tuple<Vertex, Vertex, EdgeSelector>> edges_;  // for duplicates
  bool too_big_ = false;
};

}  // namespace

void lower(CompileContext& cx) {
  Lowering(cx).run();
}

}  // namespace srl::compiler
