// The userspace end of the kernel-to-user channel (`afxdp`): an AF_XDP
// socket on one receive queue of a device, registered in the XSKMAP of
// srl's generated XDP program (kernel.h). The program tags every block it
// redirects (AfxdpTag); the channel strips the tag and hands the block on
// with the exits it takes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "srl/filters/packet.h"
#include "srl/filters/user.h"

struct xsk_umem;
struct xsk_socket;

namespace srl::runtime {

struct AfxdpOptions {
  std::string dev;
  std::uint32_t queue = 0;
  std::uint32_t frames = 4096;  // UMEM frames of XSK_UMEM__DEFAULT_FRAME_SIZE bytes
  bool try_zero_copy = true;    // else copy mode straight away
  bool need_wakeup = true;      // XDP_USE_NEED_WAKEUP: no syscalls while the kernel is busy
};

// The exit mask of a tagged frame, or nullopt when `frame` does not start
// with a valid tag (magic in network byte order, version 1, length 8, at
// least one exit bit: the program only tags blocks that take an exit).
std::optional<std::uint32_t> parse_afxdp_tag(std::span<const std::uint8_t> frame);

class AfxdpChannel {
 public:
  struct Stats {
    std::uint64_t received = 0;  // blocks handed out
    std::uint64_t bytes = 0;     // their bytes, without the tag
    std::uint64_t bad_tag = 0;   // frames without a valid tag, recycled
    // The kernel's XDP_STATISTICS for the socket.
    std::uint64_t rx_dropped = 0;
    std::uint64_t rx_invalid_descs = 0;
    std::uint64_t rx_ring_full = 0;
    std::uint64_t rx_fill_ring_empty_descs = 0;
  };

  // Creates the UMEM and the socket, binds it to (dev, queue) in zero-copy
  // mode if asked and the driver can, else in copy mode, fills the fill
  // ring and inserts the socket into `xsks_map_fd` at key `queue`. The map
  // fd is duplicated: the caller keeps its own. Throws std::system_error
  // naming the device and the failed step, std::invalid_argument for bad
  // options.
  static std::unique_ptr<AfxdpChannel> open(const AfxdpOptions& options, int xsks_map_fd);
  ~AfxdpChannel();
  AfxdpChannel(const AfxdpChannel&) = delete;
  AfxdpChannel& operator=(const AfxdpChannel&) = delete;

  // Returns the frames of the previous call to the fill ring, then takes up
  // to min(out.size(), exits.size()) tagged frames, waiting up to
  // `timeout_ms` (0: not at all, < 0: until one comes) when none is there.
  // out[i] is the frame after its tag, exits[i] its exit mask. The blocks
  // stay valid until the next receive().
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                      int timeout_ms);

  int fd() const;
  bool zero_copy() const { return zero_copy_; }
  std::uint32_t queue() const { return options_.queue; }
  const std::string& device() const { return options_.dev; }
  Stats stats() const;

 private:
  AfxdpChannel() = default;
  void bind_socket();
  void recycle();
  void refill();
  std::size_t take(std::span<filters::Block> out, std::span<std::uint32_t> exits);
  void wake_if_needed();

  AfxdpOptions options_;
  void* area_ = nullptr;  // the UMEM, mmap'ed
  std::size_t area_size_ = 0;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  int map_fd_ = -1;  // our duplicate of the XSKMAP
  bool in_map_ = false;
  bool zero_copy_ = false;
  // Rings, opaque here: libxdp's xsk_ring_prod/xsk_ring_cons.
  struct Rings;
  std::unique_ptr<Rings> rings_;
  std::vector<std::uint64_t> free_;  // frame addresses owned by us, not in any ring
  std::vector<std::uint64_t> held_;  // frames handed out by the last receive()
  std::vector<filters::ParsedPacket> parsed_;
  Stats counts_;
};

}  // namespace srl::runtime
