// Pass "resolve-names": decides for every `(IDENT ...)` whether it is a new
// filter instance or a reference to a named one. Names share one name space
// across all statements and may be used before they are defined.
#include <map>

#include <cctype>

#include "context.h"
#include "srl/compiler/utf8.h"

namespace srl::compiler {
namespace {

template <typename F>
void for_each_filter_atom(const ast::Node& n, F&& f) {
  // Iterative: the syntax tree is shallow by construction (nesting is
  // bounded), but statements and sequences can be very long.
  std::vector<const ast::Node*> stack{&n};
  while (!stack.empty()) {
    const ast::Node* cur = stack.back();
    stack.pop_back();
    if (cur->kind == ast::Kind::filter) f(*cur);
    for (auto it = cur->children.rbegin(); it != cur->children.rend(); ++it)
      stack.push_back(it->get());
  }
}

const ast::Option* find_option(const ast::Node& atom, std::string_view name) {
  for (const auto& o : atom.options)
    if (o.name == name) return &o;
  return nullptr;
}

}  // namespace

void resolve_names(CompileContext& cx) {
  std::map<std::string, const ast::Node*, std::less<>> defined;

  for_each_filter_atom(*cx.ast->root, [&](const ast::Node& atom) {
    const ast::Option* name = find_option(atom, "name");
    if (name == nullptr) return;
    if (name->value.kind != ast::Value::Kind::ident) {
      cx.diags.error(name->value.loc,
                     name->value.kind == ast::Value::Kind::string
                         ? "a name is an identifier, not a string; expected name=" +
                               (name->value.text.empty() ? std::string("web")
                                                         : utf8::printable(name->value.text))
                         : "invalid name; expected an identifier such as name=web");
      return;
    }
    const std::string& n = name->value.text;
    if (cx.catalog.find(n) != nullptr) {
      cx.diags.error(name->value.loc, "name '" + n +
                                          "' is the name of a filter; expected a name that "
                                          "no filter has");
      return;
    }
    auto [it, fresh] = defined.emplace(n, &atom);
    if (!fresh) {
      auto& d = cx.diags.error(name->value.loc,
                               "duplicate name '" + n + "'; expected each name to be defined once");
      cx.diags.note(d, find_option(*it->second, "name")->value.loc,
                    "'" + n + "' is first defined here");
    }
  });

  std::vector<std::string_view> known;
  for (const auto& f : cx.catalog.all())
    if (f.role != filters::Role::synthetic) known.push_back(f.name);
  for (const auto& [n, atom] : defined)
    known.push_back(n);

  for_each_filter_atom(*cx.ast->root, [&](const ast::Node& atom) {
    if (cx.diags.too_many()) return;
    if (const auto* spec = cx.catalog.find(atom.ident)) {
      if (spec->role == filters::Role::synthetic) {
        cx.diags.error(atom.ident_loc,
                       "'" + atom.ident + "' is made by the compiler only; write " +
                           (spec->name == "union" ? "'(a) or (b)'" : "'(a) and (b)'") + " instead");
        return;
      }
      cx.definition_of[&atom] = &atom;
      return;
    }
    if (auto it = defined.find(atom.ident); it != defined.end()) {
      if (!atom.options.empty()) {
        auto& d = cx.diags.error(atom.options.front().name_loc,
                                 "'" + atom.ident +
                                     "' refers to a named filter and takes no options; "
                                     "expected ')'");
        cx.diags.note(d, it->second->ident_loc, "options of '" + atom.ident + "' belong here");
        return;
      }
      cx.definition_of[&atom] = it->second;
      return;
    }
    std::string msg = "unknown filter '" + atom.ident + "'";
    std::string lower = atom.ident;
    for (auto& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower != atom.ident && (cx.catalog.find(lower) != nullptr || defined.contains(lower)))
      msg += "; did you mean '" + lower + "'? (names are case-sensitive)";
    else if (auto near = filters::nearest_name(atom.ident, known))
      msg += "; did you mean '" + std::string(*near) + "'?";
    else
      msg += "; expected a filter of the catalog (srlc --filters) or a name defined with name=";
    cx.diags.error(atom.ident_loc, msg);
  });
}

}  // namespace srl::compiler
