#include "srl/compiler/ast.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace srl::compiler::ast {

std::string_view to_string(Kind k) {
  switch (k) {
    case Kind::request:
      return "request";
    case Kind::par:
      return "par";
    case Kind::seq:
      return "seq";
    case Kind::or_:
      return "or";
    case Kind::and_:
      return "and";
    case Kind::not_:
      return "not";
    case Kind::filter:
      return "filter";
    case Kind::group:
      return "group";
  }
  return "?";
}

namespace {

std::string loc_text(const Loc& l) {
  return std::to_string(l.line) + ":" + std::to_string(l.col);
}

std::string_view kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::ident:
      return "ident";
    case Value::Kind::integer:
      return "int";
    case Value::Kind::string:
      return "string";
    case Value::Kind::cidr:
      return "cidr";
  }
  return "?";
}

nlohmann::ordered_json selector_json(const Selector& s) {
  nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
  // A bound written as a name stays one ("AAAA"); numbers stay numbers.
  auto bound = [](std::uint64_t number, const std::string& name) {
    return name.empty() ? nlohmann::ordered_json(number) : nlohmann::ordered_json(name);
  };
  for (const auto& r : s.ranges)
    ranges.push_back({bound(r.lo, r.lo_name), bound(r.hi, r.hi_name)});
  return {{"rejected", s.kind == Selector::Kind::rejected},
          {"invert", s.invert},
          {"ranges", std::move(ranges)},
          {"loc", loc_text(s.loc)}};
}

}  // namespace

nlohmann::ordered_json to_json(const Node& n) {
  nlohmann::ordered_json j = {{"kind", to_string(n.kind)}, {"loc", loc_text(n.loc)}};
  if (n.kind == Kind::filter) {
    j["filter"] = n.ident;
    j["ident_loc"] = loc_text(n.ident_loc);
    nlohmann::ordered_json opts = nlohmann::ordered_json::array();
    for (const auto& o : n.options)
      opts.push_back({{"name", o.name},
                      {"type", kind_name(o.value.kind)},
                      {"value", o.value.text},
                      {"loc", loc_text(o.value.loc)}});
    j["options"] = std::move(opts);
    return j;
  }
  if (n.kind == Kind::not_) j["count"] = n.not_count;
  nlohmann::ordered_json children = nlohmann::ordered_json::array();
  for (const auto& c : n.children)
    children.push_back(to_json(*c));
  j["children"] = std::move(children);
  if (n.kind == Kind::seq) {
    nlohmann::ordered_json edges = nlohmann::ordered_json::array();
    for (const auto& e : n.edges)
      edges.push_back(selector_json(e));
    j["edges"] = std::move(edges);
  }
  return j;
}

nlohmann::ordered_json to_json(const Request& r) {
  return {{"srl_ast_version", 1}, {"root", to_json(*r.root)}};
}

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string print_selector(const Selector& s) {
  if (s.kind == Selector::Kind::rejected) return "!>";
  // Numbers in order; names (resolved later, against the upstream filter)
  // after them, as written.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  std::vector<std::string> named;
  for (const auto& r : s.ranges) {
    if (r.lo_name.empty() && r.hi_name.empty())
      ranges.emplace_back(r.lo, r.hi);
    else
      named.push_back((r.lo_name.empty() ? std::to_string(r.lo) : r.lo_name) +
                      (r.hi_name == r.lo_name && r.hi == r.lo
                           ? ""
                           : ":" + (r.hi_name.empty() ? std::to_string(r.hi) : r.hi_name)));
  }
  std::sort(ranges.begin(), ranges.end());
  std::string out = s.invert ? "!" : "";
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(ranges[i].first);
    if (ranges[i].second != ranges[i].first) out += ":" + std::to_string(ranges[i].second);
  }
  for (const auto& n : named)
    out += (out.empty() || out == "!" ? "" : ",") + n;
  return out + ">";
}

void print_node(const Node& n, std::string& out) {
  switch (n.kind) {
    case Kind::filter:
      out += "(" + n.ident;
      for (const auto& o : n.options) {
        out += ", " + o.name + "=";
        out += o.value.kind == Value::Kind::string ? quote(o.value.text) : o.value.text;
      }
      out += ")";
      return;
    case Kind::group:
      out += "(";
      print_node(*n.children.front(), out);
      out += ")";
      return;
    case Kind::not_:
      for (std::uint32_t i = 0; i < n.not_count; ++i)
        out += "not ";
      print_node(*n.children.front(), out);
      return;
    case Kind::request:
      for (const auto& c : n.children) {
        print_node(*c, out);
        out += ";\n";
      }
      return;
    default:
      break;
  }
  const std::string sep = n.kind == Kind::par ? " | " : n.kind == Kind::or_ ? " or " : " and ";
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    if (i > 0) out += n.kind == Kind::seq ? " " + print_selector(n.edges[i - 1]) + " " : sep;
    print_node(*n.children[i], out);
  }
}

}  // namespace

std::string print(const Request& r) {
  std::string out;
  print_node(*r.root, out);
  return out;
}

}  // namespace srl::compiler::ast
