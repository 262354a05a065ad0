// How a block reaches userspace from the kernel: copied or taken
// (ARCHITECTURE.md §2.3, docs/language.md "Watching and taking").
//
// A request observes unless it says otherwise. A block that the kernel part
// sends up to userspace is a COPY: the original goes on with the kernel
// part's verdict (to the host's stack unless a kernel `drop` or `tx` ends
// it). It is TAKEN (it leaves the stack) only where the request's own
// semantics consume it in userspace: a `drop`, or a `tx` with
// `mode=forward`, reachable in userspace below the edge. The rule is a pure
// function of the request, so the plan and the deployed datapath apply the
// very same one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "srl/filters/catalog.h"

namespace srl::filters {

enum class Delivery : std::uint8_t { copy, take };
std::string_view to_string(Delivery d);

using Options = std::map<std::string, OptionValue>;

// A node that ends a block's life in userspace (so a block sent up to it
// must be taken from the stack): `drop`, and `tx` with mode=forward.
bool consumes_block(const FilterSpec& spec, const Options& options);
// Whether every block the filter accepts is dropped (its counters' "dropped").
bool drops_accepted(const FilterSpec& spec);

// Bytes of each block a node needs to see when it runs in userspace behind
// a copy channel (the channel's snap length): the `pcap` sink its snaplen,
// filters and sinks that read or write the payload every byte
// (kFullSnap), header filters and counters kHeaderSnap. The length on the
// wire always travels with the block.
inline constexpr std::uint32_t kFullSnap = 65535;
inline constexpr std::uint32_t kHeaderSnap = 256;
std::uint32_t bytes_needed(const FilterSpec& spec, const Options& options);

// For every vertex of a DAG given by its children: the first vertex at or
// below it (breadth first) for which `consumes` holds, or kNone. An edge
// into a userspace vertex v takes its blocks exactly when consumer[v] is
// not kNone: everything below a userspace vertex runs in userspace, since
// data only moves up.
inline constexpr std::size_t kNone = static_cast<std::size_t>(-1);
std::vector<std::size_t> consumers_below(const std::vector<std::vector<std::size_t>>& children,
                                         const std::vector<bool>& consumes);

}  // namespace srl::filters
