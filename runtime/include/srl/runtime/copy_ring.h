// The userspace end of the copy channel (kernel.h, CopyAreaHeader and
// CopyRecord): one ring of a generated program, that is the copy areas of
// its CPUs, mapped into this process and read in place. A batch handed out
// by receive() stays in the areas, and valid, until the next receive()
// releases it, so the engine filters the kernel's copy without copying it
// again (and parses it only for a filter that reads headers).
//
// Invariants (the area protocol, written by the program's srl_copy()):
//  A1 an area's head only grows and only its CPU writes it, after the
//     record's bytes (a release: x86's ordered stores, an exchange
//     elsewhere); records between our tail and the head we load with
//     acquire are complete;
//  A2 a record is a CopyRecord, cap_len bytes, padded to 8, at the head
//     modulo the area's size, and contiguous (it may end in the slack);
//  A3 the CPU writes only where head - tail + record <= size, so no byte
//     of a handed-out batch changes until we publish a tail past it;
//  A4 an area's records are in time order; a batch takes the oldest first
//     record of all areas each time, so that blocks leave in time order;
//  A5 a record flagged kCopySkip carries no block: the next record starts
//     at the next multiple of the area's size, and a record follows it in
//     the same publication (the CPU went back to the start of its area
//     past its window, kernel.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "srl/filters/packet.h"
#include "srl/filters/user.h"
#include "srl/runtime/kernel.h"

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

  // Maps the areas of ring i (`area_fd`, "srl_ring<i>") and its wake-up
  // ring buffer (`wake_fd`, "srl_wake<i>"); both descriptors are
  // duplicated, the caller keeps its own. `name` is the channel's name in
  // counters ("ringbuf:eth0:0"). Throws std::system_error naming the step
  // that failed.
  static std::unique_ptr<CopyRing> open(int area_fd, int wake_fd, std::string name);
  ~CopyRing();
  CopyRing(const CopyRing&) = delete;
  CopyRing& operator=(const CopyRing&) = delete;

  // Releases the previous batch, then hands out up to out.size() records
  // (out[i] the block as copied, exits[i] its exit mask), waiting up to
  // `timeout_ms` (0: not at all, < 0: until one comes) when none is ready.
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                      int timeout_ms);
  // Polls readable after a CPU's waiting bytes passed the wake-up mark (an
  // epoll instance over the wake-up ring); below it nothing wakes a waiter
  // (see kernel.md, "Copy channel"), so a waiter also needs a timeout.
  int wait_fd() const { return epoll_fd_; }
  // Bytes written and not yet released.
  std::size_t pending() const;

  const std::string& name() const { return name_; }
  Stats stats() const { return stats_; }

 private:
  CopyRing() = default;
  std::size_t take(std::span<filters::Block> out, std::span<std::uint32_t> exits);
  void refresh_clock();

  struct Area {
    kernel::CopyAreaHeader* header = nullptr;
    const std::uint8_t* data = nullptr;
    std::uint64_t head = 0;      // as loaded for this batch
    std::uint64_t released = 0;  // tail published
    std::uint64_t read = 0;      // end of the batch handed out
  };
  void release();
  void drain_wakeups();

  std::string name_;
  int area_fd_ = -1, wake_fd_ = -1;
  int epoll_fd_ = -1;
  std::size_t size_ = 0;  // each area's data, a power of two
  std::size_t page_ = 0;
  void* areas_map_ = nullptr;  // the array map's values, mapped
  std::size_t areas_len_ = 0;
  void* wake_consumer_ = nullptr;
  void* wake_producer_ = nullptr;  // its producer page
  std::vector<Area> areas_;
  std::int64_t mono_to_real_ns_ = 0;
  std::uint64_t clock_checked_ns_ = 0;
  Stats stats_;
};

}  // namespace srl::runtime
