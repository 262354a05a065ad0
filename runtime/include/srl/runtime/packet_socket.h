// `rx` placed in userspace: an AF_PACKET socket on one device with a
// TPACKET_V3 ring mapped into the process, read without copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "srl/filters/packet.h"
#include "srl/filters/user.h"

namespace srl::runtime {

struct PacketSocketOptions {
  std::string dev;
  std::uint32_t block_size = 1u << 20;  // bytes; a multiple of the page size
  std::uint32_t block_count = 8;
  // The kernel hands a block over when it is full or after this long.
  std::uint32_t block_timeout_ms = 4;
  // Frames the host itself sends on the device are not received.
  bool ignore_outgoing = true;
};

class PacketSocketSource : public filters::UserSource {
 public:
  struct Stats {
    std::uint64_t packets = 0;   // frames handed out
    std::uint64_t bytes = 0;     // their wire lengths
    std::uint64_t outgoing = 0;  // outgoing frames seen in the ring and skipped
    // PACKET_STATISTICS, summed over reads (the kernel resets them on each).
    std::uint64_t drops = 0;
    std::uint64_t freeze_q_cnt = 0;
  };

  // Opens and binds the socket. Throws std::system_error naming the device
  // and the cause: no such device, no privilege (CAP_NET_RAW), ring setup.
  // std::invalid_argument for bad options.
  explicit PacketSocketSource(const PacketSocketOptions& options);
  ~PacketSocketSource() override;

  // Returns the blocks of the ring that the last poll() emptied to the
  // kernel, then takes up to out.size() frames that have arrived, without
  // waiting. `now_ns` is not used: frames are due when they arrive.
  std::size_t poll(std::span<filters::Block> out, std::uint64_t now_ns) override;
  bool done() const override { return false; }
  filters::FilterStats stats() const override;

  // Sleeps until a frame may be there or `timeout_ms` passed (< 0: no
  // limit). True when poll() may have something to take.
  bool wait(int timeout_ms);

  int fd() const { return fd_; }
  int ifindex() const { return ifindex_; }
  Stats counters() const;

 private:
  void close_all();
  std::uint8_t* block(std::uint32_t i) const;
  bool ready(std::uint32_t i) const;
  bool next_ready() const;
  void release(std::uint32_t i);

  PacketSocketOptions options_;
  int fd_ = -1;
  int ifindex_ = 0;
  std::uint8_t* ring_ = nullptr;
  std::size_t ring_size_ = 0;

  std::uint32_t current_ = 0;        // the block read next
  bool open_ = false;                // current_ is being read
  std::uint32_t left_ = 0;           // frames of current_ not yet taken
  std::uint32_t offset_ = 0;         // of its next frame in the block
  std::vector<std::uint32_t> done_;  // emptied blocks, returned on the next poll()
  std::vector<filters::ParsedPacket> parsed_;
  // Frames whose VLAN tag had to be put back out of place, per slot.
  std::vector<std::vector<std::uint8_t>> scratch_;
  Stats counts_;
  mutable std::uint64_t drops_ = 0;
  mutable std::uint64_t freeze_ = 0;
};

}  // namespace srl::runtime
