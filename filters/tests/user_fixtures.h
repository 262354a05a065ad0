// What the tests of the userspace filters share: a filter's configuration
// as the registry takes it, the error it raises, an emitter that records
// what a filter did, and small readers.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "packet_corpus.h"
#include "srl/filters/user.h"

namespace srl::testing {

// Records the class a filter accepted with and the blocks it emitted; with
// `emits_allowed` false an emit fails the test (filters that only decide).
class RecordingEmitter : public filters::Emitter {
 public:
  explicit RecordingEmitter(bool emits_allowed = true) : emits_allowed_(emits_allowed) {}
  std::optional<std::uint16_t> accepted;
  std::vector<std::pair<filters::Block, std::uint16_t>> emitted;
  std::vector<std::vector<std::uint8_t>> arena;

  void accept(std::uint16_t cls) override { accepted = cls; }
  void emit(const filters::Block& b, std::uint16_t cls) override {
    if (!emits_allowed_) FAIL("a filter that only decides emitted a block");
    emitted.emplace_back(b, cls);
  }
  std::span<std::uint8_t> allocate(std::size_t n) override { return arena.emplace_back(n); }

 private:
  bool emits_allowed_;
};

// The configuration of a node "n7" running catalog filter `name`.
inline filters::UserFilterConfig filter_config(
    std::string_view name, std::map<std::string, filters::OptionValue> options = {}) {
  filters::UserFilterConfig c;
  c.spec = filters::Catalog::builtin().find(name);
  REQUIRE(c.spec != nullptr);
  c.options = std::move(options);
  c.node_id = "n7";
  return c;
}

// The message make_user_filter throws for `c`, or "(no error)".
inline std::string config_error_of(const filters::UserFilterConfig& c) {
  try {
    filters::make_user_filter(c);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

// A filter's named counter; fails the test when there is none.
inline std::uint64_t stat_of(const filters::FilterStats& stats, std::string_view name) {
  for (const auto& [k, v] : stats)
    if (k == name) return v;
  FAIL("no stat " << name);
  return 0;
}

}  // namespace srl::testing
