// The counters of running requests in one shape, version 1: what `srl run
// -j`, `srl stats -j`, controld's Watch events and its metrics all show
// (docs/counters.md). One row per request node (a node shared by several
// requests appears in each), named the way node_names() names it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace srl::runtime {

inline constexpr int kCountersVersion = 1;

// A `count, by=class` node's counters of one class of its input; the
// classes beyond its `keys` are added up as one, "other".
inline constexpr std::uint32_t kOtherClass = 65536;
struct ClassCount {
  std::uint32_t cls = 0;  // 0 to 65535, or kOtherClass
  std::string name;       // the name the input's filter gives it ("AAAA"), if any
  std::uint64_t blocks = 0, bytes = 0;
  std::optional<double> blocks_per_s, bytes_per_s;
};

struct NodeReport {
  std::string request;  // the request's name
  std::string node;     // its id in the request ("n3"): a position, renumbered by edits
  std::string name;     // given with name=, or derived (compiler::node_names): stable
  std::string filter;
  std::string space;  // "xdp:eth0", "tc:eth0", "user"
  std::uint64_t blocks = 0, bytes = 0, accepted = 0;
  std::uint64_t dropped = 0;  // blocks the request dropped here (a drop node's accepted ones)
  std::uint64_t lost = 0;     // blocks srl lost here (a full ring, a failed write)
  std::optional<double> blocks_per_s, bytes_per_s;  // since the report before
  std::string failure;                              // why it loses them, if it does
  bool by_class = false;            // a `count, by=class`: `classes` holds its counts
  std::vector<ClassCount> classes;  // by class, "other" last
};

struct ChannelReport {
  std::string name;  // "ringbuf:eth0:0", "afxdp:eth0:0", "packet:eth0"
  std::string kind;
  std::vector<std::string> requests;  // the requests it feeds
  std::uint64_t blocks = 0, bytes = 0;
  std::uint64_t lost = 0;  // blocks that did not fit (a full ring)
  std::optional<double> blocks_per_s, bytes_per_s;
};

struct CounterReport {
  std::int64_t time_ns = 0;          // wall clock, ns since the epoch
  std::optional<double> interval_s;  // since the report the rates are over
  bool final = false;                // the last of a stream (srl run at its end)
  std::vector<NodeReport> nodes;
  std::vector<ChannelReport> channels;
};

// The wall clock now, for CounterReport::time_ns.
std::int64_t wall_clock_ns();
// "2026-12-06T12:30:01.123Z".
std::string utc_time(std::int64_t time_ns);

// "LABEL/ID" (merge_requests' member) as {LABEL, ID}; a bare id as {"", ID}.
std::pair<std::string, std::string> split_member(const std::string& member);

// Rates of `now` against `before` (same request and node, same channel),
// where both have them and the counters did not go back.
void add_rates(CounterReport& now, const CounterReport& before);

nlohmann::ordered_json to_json(const CounterReport& r);
// Tables: per request its nodes, then the channels. `heading` goes first
// ("after 2.0 s") when not empty.
std::string to_table(const CounterReport& r, const std::string& heading = "");

}  // namespace srl::runtime
