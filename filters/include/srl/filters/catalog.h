// The filter catalog: every filter SRL knows, with what the compiler needs to
// check a request (option schema, role, class meaning) and what the optimizer
// needs to place it (spaces, state, selectivity, default costs, limits).
// The entries themselves are data, in catalog_data.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace srl::filters {

// Kinds of execution space a filter can be implemented in (SRL.md §6: K, U, O).
enum class SpaceKind : std::uint8_t { kernel = 0, user = 1, offload = 2 };
inline constexpr std::size_t kSpaceKinds = 3;
std::string_view to_string(SpaceKind k);

enum class Role : std::uint8_t {
  source,     // produces blocks; never has an input (rx, pcapin)
  filter,     // consumes a block, rejects it or accepts it with a class
  sink,       // terminal: nothing may follow it
  synthetic,  // made by the compiler only (union, intersect)
};
std::string_view to_string(Role r);

enum class State : std::uint8_t { none, per_flow, global, window };
std::string_view to_string(State s);

enum class OptionType : std::uint8_t {
  string,    // IDENT or STRING
  integer,   // INT within [min, max]
  boolean,   // true/false, yes/no, on/off, 1/0
  choice,    // one of `choices`, written as IDENT or STRING
  cidr,      // IPv4 or IPv6 prefix; a bare address means a host prefix
  regex,     // Hyperscan/PCRE syntax, checked at compile time
  device,    // network interface name (at most 15 characters)
  path,      // file-system path, written as IDENT or STRING
  bpf_expr,  // tcpdump filter syntax, translated by the compiler
};
std::string_view to_string(OptionType t);

// A typed option value as the DAG stores it. CIDRs, choices and paths are
// canonical strings.
using OptionValue = std::variant<bool, std::int64_t, std::string>;
nlohmann::ordered_json to_json(const OptionValue& v);

struct OptionSpec {
  std::string_view name;
  OptionType type = OptionType::string;
  bool required = false;
  std::optional<OptionValue> default_value;  // filled in when not written
  std::int64_t min = 0;                      // integer bounds, inclusive
  std::int64_t max = 0;
  std::vector<std::string_view> choices;  // for OptionType::choice
  std::string_view help;
};

// Default cost of a filter in one kind of space, before calibration.
struct Cost {
  double ns_per_block = 0;
  double ns_per_byte = 0;
};

// A class a filter gives a well-known name (`(dns) AAAA>`).
struct ClassName {
  std::string_view name;
  std::uint16_t value = 0;
};

struct FilterSpec {
  std::string_view name;
  std::string_view summary;
  Role role = Role::filter;
  std::vector<OptionSpec> options;
  // What the 16-bit class of an accepted block means, for documentation.
  std::string_view class_meaning;
  // Largest class the filter can emit: 0 for filters that always accept with
  // class 0, so that a selector asking for any other class never matches.
  std::uint32_t max_class = 0;
  // Names a selector may use for classes, as the protocol spells them.
  std::vector<ClassName> class_names;
  // Implementation per space kind; absent where the kind has none.
  std::optional<Cost> cost[kSpaceKinds];
  State state = State::none;
  bool reads_payload = false;     // else headers only
  bool emits_new_blocks = false;  // transforms: reassembly emits streams
  double selectivity = 1.0;       // expected share of input accepted
  std::uint32_t ebpf_insns = 0;   // estimated instructions when inlined in eBPF
  // What the kernel implementation adds to the verifier's work on a hook's
  // program (instructions processed, in the map form; docs/kernel.md), an
  // upper bound that the optimizer plans the verifier's budget with:
  // `first` once for a program that holds the filter at all, `each` for
  // every node of it. runtime's kernel_test holds generated programs under
  // the bound.
  struct VerifierWork {
    std::uint32_t first = 0;
    std::uint32_t each = 0;
  } verifier;
  // The kernel implementation runs at the TC hook only (tx: an XDP program
  // cannot clone a frame for a mirror, and a native XDP redirect reaches
  // only devices that take XDP frames).
  bool kernel_tc_only = false;

  bool implemented_in(SpaceKind k) const { return cost[static_cast<std::size_t>(k)].has_value(); }
  const OptionSpec* option(std::string_view option_name) const;
  // The class a name stands for (any letter case), if the filter has it.
  std::optional<std::uint16_t> class_named(std::string_view class_name) const;
  bool is_terminal() const { return role == Role::sink; }
};

nlohmann::ordered_json to_json(const FilterSpec& f);

class Catalog {
 public:
  explicit Catalog(std::vector<FilterSpec> filters);

  // The catalog of SRL version 1.
  static const Catalog& builtin();

  const FilterSpec* find(std::string_view name) const;
  std::span<const FilterSpec> all() const { return filters_; }

  // Catalog names closest to `name` (edit distance), for "did you mean".
  std::optional<std::string_view> nearest(std::string_view name) const;

  nlohmann::ordered_json to_json() const;

 private:
  std::vector<FilterSpec> filters_;  // sorted by name
};

// The closest candidate to `word` within a distance that makes a typo likely
// (about a third of the word), or nothing.
std::optional<std::string_view> nearest_name(std::string_view word,
                                             std::span<const std::string_view> candidates);
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace srl::filters
