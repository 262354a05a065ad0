// tcpstream internals: the bounds of the reassembler, so that tests can build
// one with small limits. The catalog gives tcpstream no options; the
// registry builds it with the defaults below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "srl/filters/user.h"

namespace srl::filters::user {

struct TcpStreamLimits {
  // Out-of-order bytes one flow may hold (both directions together), and all
  // flows together. Each held piece is charged kHeldPieceOverhead on top of
  // its bytes, so that many tiny segments cannot hide behind a byte count.
  std::size_t flow_buffer = std::size_t{1} << 20;
  std::size_t total_buffer = std::size_t{64} << 20;
  // Flows in the table, open or lingering after their close; the least
  // recently active open flow is evicted to make room.
  std::size_t max_flows = 1'000'000;
  // An open flow with no segment for this long is ended by tick().
  std::uint64_t idle_timeout_ns = 120'000'000'000ull;
  // A flow closed by FIN/FIN or RST stays this long to absorb its last ACKs
  // and retransmissions instead of opening a new flow for them.
  std::uint64_t closed_linger_ns = 5'000'000'000ull;
};

inline constexpr std::size_t kHeldPieceOverhead = 64;

std::unique_ptr<UserFilter> make_tcpstream(const TcpStreamLimits& limits);

}  // namespace srl::filters::user
