#include "srl/filters/catalog.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace srl::filters {

std::string_view to_string(SpaceKind k) {
  switch (k) {
    case SpaceKind::kernel:
      return "kernel";
    case SpaceKind::user:
      return "user";
    case SpaceKind::offload:
      return "offload";
  }
  return "?";
}

std::string_view to_string(Role r) {
  switch (r) {
    case Role::source:
      return "source";
    case Role::filter:
      return "filter";
    case Role::sink:
      return "sink";
    case Role::synthetic:
      return "synthetic";
  }
  return "?";
}

std::string_view to_string(State s) {
  switch (s) {
    case State::none:
      return "none";
    case State::per_flow:
      return "per-flow";
    case State::global:
      return "global";
    case State::window:
      return "per-block window";
  }
  return "?";
}

std::string_view to_string(OptionType t) {
  switch (t) {
    case OptionType::string:
      return "string";
    case OptionType::integer:
      return "integer";
    case OptionType::boolean:
      return "boolean";
    case OptionType::choice:
      return "choice";
    case OptionType::cidr:
      return "cidr";
    case OptionType::regex:
      return "regex";
    case OptionType::device:
      return "device";
    case OptionType::path:
      return "path";
    case OptionType::bpf_expr:
      return "bpf-expr";
  }
  return "?";
}

nlohmann::ordered_json to_json(const OptionValue& v) {
  return std::visit([](const auto& x) { return nlohmann::ordered_json(x); }, v);
}

const OptionSpec* FilterSpec::option(std::string_view option_name) const {
  for (const auto& o : options)
    if (o.name == option_name) return &o;
  return nullptr;
}

std::optional<std::uint16_t> FilterSpec::class_named(std::string_view class_name) const {
  auto lower = [](std::string_view x) {
    std::string out(x);
    for (auto& c : out)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string wanted = lower(class_name);
  for (const auto& c : class_names)
    if (lower(c.name) == wanted) return c.value;
  return std::nullopt;
}

nlohmann::ordered_json to_json(const FilterSpec& f) {
  nlohmann::ordered_json options = nlohmann::ordered_json::array();
  for (const auto& o : f.options) {
    nlohmann::ordered_json j = {
        {"name", o.name}, {"type", to_string(o.type)}, {"required", o.required}, {"help", o.help}};
    if (o.default_value) j["default"] = to_json(*o.default_value);
    if (o.type == OptionType::integer) j["range"] = {o.min, o.max};
    if (!o.choices.empty()) j["choices"] = o.choices;
    options.push_back(std::move(j));
  }
  nlohmann::ordered_json spaces = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < kSpaceKinds; ++i) {
    if (!f.cost[i]) continue;
    spaces[std::string(to_string(static_cast<SpaceKind>(i)))] = {
        {"ns_per_block", f.cost[i]->ns_per_block}, {"ns_per_byte", f.cost[i]->ns_per_byte}};
  }
  nlohmann::ordered_json class_names = nlohmann::ordered_json::object();
  for (const auto& c : f.class_names)
    class_names[std::string(c.name)] = c.value;
  return {{"name", f.name},
          {"summary", f.summary},
          {"role", to_string(f.role)},
          {"options", std::move(options)},
          {"class", f.class_meaning},
          {"max_class", f.max_class},
          {"class_names", std::move(class_names)},
          {"spaces", std::move(spaces)},
          {"state", to_string(f.state)},
          {"reads", f.reads_payload ? "payload" : "headers"},
          {"emits_new_blocks", f.emits_new_blocks},
          {"selectivity", f.selectivity},
          {"ebpf_insns", f.ebpf_insns},
          {"verifier", {{"first", f.verifier.first}, {"each", f.verifier.each}}}};
}

Catalog::Catalog(std::vector<FilterSpec> filters) : filters_(std::move(filters)) {
  std::sort(filters_.begin(), filters_.end(),
            [](const FilterSpec& a, const FilterSpec& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < filters_.size(); ++i)
    if (filters_[i - 1].name == filters_[i].name)
      throw std::invalid_argument("filter catalog: duplicate filter '" +
                                  std::string(filters_[i].name) + "'");
}

const FilterSpec* Catalog::find(std::string_view name) const {
  auto it = std::lower_bound(filters_.begin(), filters_.end(), name,
                             [](const FilterSpec& f, std::string_view n) { return f.name < n; });
  return it != filters_.end() && it->name == name ? &*it : nullptr;
}

std::optional<std::string_view> Catalog::nearest(std::string_view name) const {
  std::vector<std::string_view> names;
  names.reserve(filters_.size());
  for (const auto& f : filters_)
    if (f.role != Role::synthetic) names.push_back(f.name);
  return nearest_name(name, names);
}

nlohmann::ordered_json Catalog::to_json() const {
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (const auto& f : filters_)
    all.push_back(filters::to_json(f));
  return {{"srl_catalog_version", 1}, {"filters", std::move(all)}};
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment distance: a transposition of two neighbours
  // ("tpc" for "tcp") counts as one edit, as typos usually are.
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
  for (std::size_t j = 0; j <= m; ++j)
    prev[j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    prev2.swap(prev);
    prev.swap(cur);
  }
  return prev[m];
}

std::optional<std::string_view> nearest_name(std::string_view word,
                                             std::span<const std::string_view> candidates) {
  if (word.empty() || word.size() > 64) return std::nullopt;
  const std::size_t limit = std::max<std::size_t>(1, (word.size() + 1) / 3);
  std::optional<std::string_view> best;
  std::size_t best_distance = limit + 1;
  for (auto c : candidates) {
    const std::size_t d = edit_distance(word, c);
    // A suggestion that shares nothing with the word is no suggestion.
    if (d < best_distance && d < word.size()) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

}  // namespace srl::filters
