// The userspace end of the copy channel (kernel.h, CopyRecord): one BPF
// ring buffer of a generated program, mapped into this process and read in
// place. A batch handed out by receive() stays in the ring, and valid,
// until the next receive() releases it, so the engine parses and filters
// the kernel's copy without copying it again.
//
// Invariants (the kernel's ring buffer protocol):
//  R1 the producer position only grows; records between the consumer and
//     producer positions are ours to read once their busy bit is clear;
//  R2 a record is 8 bytes of header (length with the busy and discard
//     bits, page offset), then its bytes, padded to 8;
//  R3 the kernel writes no byte before the consumer position we publish,
//     so a handed-out batch is stable until we publish past it;
//  R4 the data area is mapped twice back to back, so a record that wraps
//     is contiguous in our mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "srl/filters/packet.h"
#include "srl/filters/user.h"

namespace srl::runtime {

class CopyRing {
 public:
  struct Stats {
    std::uint64_t received = 0;     // records handed out
    std::uint64_t bytes = 0;        // bytes captured (cap_len)
    std::uint64_t wire_bytes = 0;   // their length on the wire
    std::uint64_t truncated = 0;    // records shorter than the block (snap length)
    std::uint64_t bad_records = 0;  // records too short for a header, skipped
    std::uint64_t wakeups = 0;      // waits that ended with data
  };

  // Maps the ring buffer map `map_fd` (duplicated: the caller keeps its
  // own). `name` is the channel's name in counters ("ringbuf:eth0:0").
  // Throws std::system_error naming the step that failed.
  static std::unique_ptr<CopyRing> open(int map_fd, std::string name);
  ~CopyRing();
  CopyRing(const CopyRing&) = delete;
  CopyRing& operator=(const CopyRing&) = delete;

  // Releases the previous batch, then hands out up to out.size() records
  // (out[i] the block as copied, exits[i] its exit mask), waiting up to
  // `timeout_ms` (0: not at all, < 0: until one comes) when none is ready.
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                      int timeout_ms);
  // Polls readable while records wait (an epoll instance over the ring
  // map, level-triggered); the producer wakes it only now and then (see
  // kernel.md, "Copy channel"), so a waiter also needs a timeout.
  int wait_fd() const { return epoll_fd_; }
  // Bytes written and not yet released.
  std::size_t pending() const;

  const std::string& name() const { return name_; }
  Stats stats() const { return stats_; }

 private:
  CopyRing() = default;
  std::size_t take(std::span<filters::Block> out, std::span<std::uint32_t> exits);
  void refresh_clock();

  std::string name_;
  int map_fd_ = -1;
  int epoll_fd_ = -1;
  std::size_t size_ = 0;  // data area, a power of two
  std::size_t page_ = 0;
  void* consumer_page_ = nullptr;
  void* producer_area_ = nullptr;  // producer page + data mapped twice
  std::uint64_t released_ = 0;     // consumer position published
  std::uint64_t read_ = 0;         // end of the batch handed out
  std::int64_t mono_to_real_ns_ = 0;
  std::uint64_t clock_checked_ns_ = 0;
  std::vector<filters::ParsedPacket> parsed_;
  Stats stats_;
};

}  // namespace srl::runtime
