// Reference (userspace) implementations of the L2-L4 filters, exactly as
// docs/filter-semantics.md defines them. They are the oracle the kernel and
// offload code generators are tested against, so they favour plainness over
// speed. Each filter instance is an element in the spirit of Click: built once
// from its typed options, then handed one block at a time; stateful filters
// (sample, rate, count) keep their state in the object.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "srl/filters/catalog.h"
#include "srl/filters/packet.h"

namespace srl::filters {

// What a filter does with one block: reject it, or accept it with a class.
struct Verdict {
  bool accept = false;
  std::uint16_t cls = 0;
  friend bool operator==(const Verdict&, const Verdict&) = default;
};

inline constexpr Verdict kReject{false, 0};
inline constexpr Verdict accept_with(std::uint16_t cls) {
  return {true, cls};
}

class ReferenceFilter {
 public:
  virtual ~ReferenceFilter() = default;
  ReferenceFilter(const ReferenceFilter&) = delete;
  ReferenceFilter& operator=(const ReferenceFilter&) = delete;

  // `packet` is parse_packet(frame); `now_ns` is the clock of time-based
  // filters (rate), any monotonic nanosecond count.
  virtual Verdict process(const ParsedPacket& packet, std::span<const std::uint8_t> frame,
                          std::uint64_t now_ns) = 0;

  // Parses the frame itself; for callers running a single filter.
  Verdict process(std::span<const std::uint8_t> frame, std::uint64_t now_ns = 0) {
    return process(parse_packet(frame), frame, now_ns);
  }

  std::string_view name() const { return spec_.name; }
  const FilterSpec& spec() const { return spec_; }

 protected:
  explicit ReferenceFilter(const FilterSpec& spec) : spec_(spec) {}

 private:
  const FilterSpec& spec_;
};

using ClassicBpf = std::vector<std::array<std::uint32_t, 4>>;  // code, jt, jf, k

// A reference filter for `spec` (which must outlive it, as catalog entries
// do) with `options` (typed as the compiler stores
// them; options left out take the catalog's default). `cbpf` is the `bpf`
// filter's program as the compiler translated it; without it the filter
// compiles its `expr` with libpcap the way the compiler does. Throws
// std::invalid_argument for filters with no reference implementation
// (sources, synthetic nodes, userspace sinks, L7 filters), for missing or
// ill-typed options and for invalid BPF programs.
std::unique_ptr<ReferenceFilter> make_reference_filter(
    const FilterSpec& spec, const std::map<std::string, OptionValue>& options,
    const ClassicBpf* cbpf = nullptr);

// The same, looking the filter up in the builtin catalog by name.
std::unique_ptr<ReferenceFilter> make_reference_filter(
    std::string_view filter_name, const std::map<std::string, OptionValue>& options = {},
    const ClassicBpf* cbpf = nullptr);

// Whether make_reference_filter supports this filter.
bool has_reference_filter(std::string_view filter_name);

// 32-bit FNV-1a (offset basis 2166136261, prime 16777619), continued from
// `state` so that several byte ranges can be hashed in sequence.
inline constexpr std::uint32_t kFnv1aBasis = 2166136261u;
inline constexpr std::uint32_t kFnv1aPrime = 16777619u;
constexpr std::uint32_t hash_fnv1a(std::span<const std::uint8_t> bytes,
                                   std::uint32_t state = kFnv1aBasis) {
  for (std::uint8_t b : bytes) {
    state ^= b;
    state *= kFnv1aPrime;
  }
  return state;
}

enum class HashFields : std::uint8_t { flow, addrs, src, dst };

// The `hash` filter's H before `mod buckets`, for an IP packet (0 otherwise);
// exposed so the kernel code generator can share test vectors.
std::uint32_t flow_hash(const ParsedPacket& packet, HashFields fields);

}  // namespace srl::filters
