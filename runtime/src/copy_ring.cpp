// The copy channel's userspace end (copy_ring.h).
#include "srl/runtime/copy_ring.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>

#include "srl/runtime/kernel.h"

namespace srl::runtime {
namespace {

std::uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::uint64_t load_acquire(const void* p) {
  return std::atomic_ref<const std::uint64_t>(*static_cast<const std::uint64_t*>(p))
      .load(std::memory_order_acquire);
}

void store_release(void* p, std::uint64_t v) {
  std::atomic_ref<std::uint64_t>(*static_cast<std::uint64_t*>(p))
      .store(v, std::memory_order_release);
}

bpf_map_info map_info(int fd, const std::string& what) {
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) fail(what + ": cannot read the map's info");
  return info;
}

}  // namespace

std::unique_ptr<CopyRing> CopyRing::open(int area_fd, int wake_fd, std::string name) {
  std::unique_ptr<CopyRing> r(new CopyRing());
  r->name_ = std::move(name);
  r->page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const bpf_map_info areas = map_info(area_fd, r->name_);
  const bpf_map_info wake = map_info(wake_fd, r->name_);
  constexpr std::size_t header = sizeof(kernel::CopyAreaHeader);
  if (areas.type != BPF_MAP_TYPE_ARRAY || (areas.map_flags & BPF_F_MMAPABLE) == 0 ||
      areas.value_size <= header + kernel::kCopyAreaSlack || areas.max_entries == 0) {
    errno = EINVAL;
    fail(r->name_ + ": map " + std::to_string(areas.id) + " is not an array of copy areas");
  }
  if (wake.type != BPF_MAP_TYPE_RINGBUF) {
    errno = EINVAL;
    fail(r->name_ + ": map " + std::to_string(wake.id) + " is not a ring buffer");
  }
  r->size_ = areas.value_size - header - kernel::kCopyAreaSlack;
  if ((r->size_ & (r->size_ - 1)) != 0) {
    errno = EINVAL;
    fail(r->name_ + ": copy areas of " + std::to_string(r->size_) + " bytes, not a power of two");
  }
  r->area_fd_ = fcntl(area_fd, F_DUPFD_CLOEXEC, 0);
  r->wake_fd_ = fcntl(wake_fd, F_DUPFD_CLOEXEC, 0);
  if (r->area_fd_ < 0 || r->wake_fd_ < 0) fail(r->name_ + ": cannot duplicate the descriptors");
  // The kernel lays the values out back to back, each rounded up to 8.
  const std::size_t stride = (areas.value_size + 7u) & ~std::size_t{7};
  r->areas_len_ = (stride * areas.max_entries + r->page_ - 1) / r->page_ * r->page_;
  r->areas_map_ = mmap(nullptr, r->areas_len_, PROT_READ | PROT_WRITE, MAP_SHARED, r->area_fd_, 0);
  if (r->areas_map_ == MAP_FAILED) {
    r->areas_map_ = nullptr;
    fail(r->name_ + ": cannot map the copy areas");
  }
  for (std::uint32_t i = 0; i < areas.max_entries; ++i) {
    Area a;
    auto* base = static_cast<std::uint8_t*>(r->areas_map_) + i * stride;
    a.header = reinterpret_cast<kernel::CopyAreaHeader*>(base);
    a.data = base + header;
    a.released = a.read = load_acquire(&a.header->tail);
    a.head = a.read;
    r->areas_.push_back(a);
  }
  r->wake_consumer_ = mmap(nullptr, r->page_, PROT_READ | PROT_WRITE, MAP_SHARED, r->wake_fd_, 0);
  if (r->wake_consumer_ == MAP_FAILED) {
    r->wake_consumer_ = nullptr;
    fail(r->name_ + ": cannot map the wake-up ring's consumer page");
  }
  // Only the producer position: the tokens themselves are never read.
  r->wake_producer_ =
      mmap(nullptr, r->page_, PROT_READ, MAP_SHARED, r->wake_fd_, static_cast<off_t>(r->page_));
  if (r->wake_producer_ == MAP_FAILED) {
    r->wake_producer_ = nullptr;
    fail(r->name_ + ": cannot map the wake-up ring's producer page");
  }
  r->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (r->epoll_fd_ < 0) fail(r->name_ + ": epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (epoll_ctl(r->epoll_fd_, EPOLL_CTL_ADD, r->wake_fd_, &ev) != 0)
    fail(r->name_ + ": cannot poll the wake-up ring");
  r->refresh_clock();
  return r;
}

CopyRing::~CopyRing() {
  if (wake_producer_ != nullptr) munmap(wake_producer_, page_);
  if (wake_consumer_ != nullptr) munmap(wake_consumer_, page_);
  if (areas_map_ != nullptr) munmap(areas_map_, areas_len_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (area_fd_ >= 0) close(area_fd_);
}

void CopyRing::refresh_clock() {
  // The kernel stamps records with CLOCK_MONOTONIC; blocks carry the wall
  // clock. The offset follows clock steps once a second.
  const std::uint64_t mono = clock_ns(CLOCK_MONOTONIC);
  const std::uint64_t real = clock_ns(CLOCK_REALTIME);
  mono_to_real_ns_ = static_cast<std::int64_t>(real - mono);
  clock_checked_ns_ = mono;
}

std::size_t CopyRing::pending() const {
  std::size_t n = 0;
  for (const auto& a : areas_)
    n += static_cast<std::size_t>(load_acquire(&a.header->head) - a.released);
  return n;
}

void CopyRing::release() {
  // The CPUs may now reuse the space of the last batch (A3).
  for (auto& a : areas_)
    if (a.read != a.released) {
      store_release(&a.header->tail, a.read);
      a.released = a.read;
    }
}

void CopyRing::drain_wakeups() {
  // The tokens say only "look"; consume them all so that the ring never fills.
  const std::uint64_t produced = load_acquire(wake_producer_);
  if (load_acquire(wake_consumer_) != produced) store_release(wake_consumer_, produced);
}

std::size_t CopyRing::take(std::span<filters::Block> out, std::span<std::uint32_t> exits) {
  for (auto& a : areas_)
    a.head = load_acquire(&a.header->head);  // A1
  const auto first_ts = [this](const Area& a) {
    return reinterpret_cast<const kernel::CopyRecord*>(a.data + (a.read & (size_ - 1)))->ts_ns;
  };
  std::size_t got = 0;
  const std::size_t want = std::min(out.size(), exits.size());
  while (got < want) {
    // The area with the oldest first record (A4), and the oldest first
    // record of the others: it takes from that area until it passes it,
    // so one busy CPU's records go out in a run.
    Area* next = nullptr;
    std::uint64_t oldest = 0, bound = UINT64_MAX;
    for (auto& a : areas_) {
      if (a.read >= a.head) continue;
      const std::uint64_t ts = first_ts(a);
      if (next == nullptr || ts < oldest) {
        if (next != nullptr) bound = std::min(bound, oldest);
        next = &a, oldest = ts;
      } else {
        bound = std::min(bound, ts);
      }
    }
    if (next == nullptr) break;
    do {
      const std::uint8_t* rec = next->data + (next->read & (size_ - 1));  // A2
      kernel::CopyRecord h;
      std::memcpy(&h, rec, sizeof h);
      if ((h.flags & kernel::kCopySkip) != 0) {
        // A restart (A5): the CPU went on at the start of its area.
        const std::uint64_t to = (next->read | (size_ - 1)) + 1;
        if (to >= next->head) {
          ++stats_.bad_records;
          next->read = next->head;
          break;
        }
        next->read = to;
        continue;
      }
      const std::uint64_t len = (sizeof h + std::uint64_t{h.cap_len} + 7) & ~std::uint64_t{7};
      if (h.cap_len == 0 || h.cap_len > 65535 || len > next->head - next->read) {
        // Not a record the program writes: skip what this area holds.
        ++stats_.bad_records;
        next->read = next->head;
        break;
      }
      next->read += len;
      filters::Block& b = out[got];
      b = filters::Block{};
      b.data = std::span<const std::uint8_t>(rec + sizeof h, h.cap_len);
      b.ts_ns = h.ts_ns + static_cast<std::uint64_t>(mono_to_real_ns_);
      b.wire_len = std::max(h.wire_len, h.cap_len);
      exits[got] = h.exits;
      ++stats_.received;
      stats_.bytes += h.cap_len;
      stats_.wire_bytes += b.wire_len;
      if (h.cap_len < b.wire_len) ++stats_.truncated;
      ++got;
    } while (got < want && next->read < next->head && first_ts(*next) <= bound);
  }
  return got;
}

std::size_t CopyRing::receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                              int timeout_ms) {
  release();
  if (clock_ns(CLOCK_MONOTONIC) - clock_checked_ns_ > 1'000'000'000u) refresh_clock();
  // Tokens first, records second: a CPU publishes its record before the
  // token, so no record whose token is gone stays unseen.
  drain_wakeups();
  std::size_t got = take(out, exits);
  if (got > 0 || timeout_ms == 0) return got;
  epoll_event ev{};
  const int n = epoll_wait(epoll_fd_, &ev, 1, timeout_ms);
  if (n > 0) {
    ++stats_.wakeups;
    drain_wakeups();
  }
  return take(out, exits);
}

}  // namespace srl::runtime
