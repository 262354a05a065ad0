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

constexpr std::uint32_t kBusy = 1u << 31;     // BPF_RINGBUF_BUSY_BIT
constexpr std::uint32_t kDiscard = 1u << 30;  // BPF_RINGBUF_DISCARD_BIT
constexpr std::size_t kHeader = 8;            // BPF_RINGBUF_HDR_SZ

std::uint64_t load_acquire(const void* p) {
  return std::atomic_ref<const std::uint64_t>(*static_cast<const std::uint64_t*>(p))
      .load(std::memory_order_acquire);
}

}  // namespace

std::unique_ptr<CopyRing> CopyRing::open(int map_fd, std::string name) {
  std::unique_ptr<CopyRing> r(new CopyRing());
  r->name_ = std::move(name);
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(map_fd, &info, &len) != 0)
    fail(r->name_ + ": cannot read the ring's map info");
  if (info.type != BPF_MAP_TYPE_RINGBUF) {
    errno = EINVAL;
    fail(r->name_ + ": map " + std::to_string(info.id) + " is not a ring buffer");
  }
  r->map_fd_ = fcntl(map_fd, F_DUPFD_CLOEXEC, 0);
  if (r->map_fd_ < 0) fail(r->name_ + ": cannot duplicate the ring's descriptor");
  r->size_ = info.max_entries;
  r->page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  r->consumer_page_ = mmap(nullptr, r->page_, PROT_READ | PROT_WRITE, MAP_SHARED, r->map_fd_, 0);
  if (r->consumer_page_ == MAP_FAILED) {
    r->consumer_page_ = nullptr;
    fail(r->name_ + ": cannot map the consumer page");
  }
  r->producer_area_ = mmap(nullptr, r->page_ + 2 * r->size_, PROT_READ, MAP_SHARED, r->map_fd_,
                           static_cast<off_t>(r->page_));
  if (r->producer_area_ == MAP_FAILED) {
    r->producer_area_ = nullptr;
    fail(r->name_ + ": cannot map the producer page and data");
  }
  r->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (r->epoll_fd_ < 0) fail(r->name_ + ": epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (epoll_ctl(r->epoll_fd_, EPOLL_CTL_ADD, r->map_fd_, &ev) != 0)
    fail(r->name_ + ": cannot poll the ring");
  r->released_ = r->read_ = load_acquire(r->consumer_page_);
  r->refresh_clock();
  return r;
}

CopyRing::~CopyRing() {
  if (producer_area_ != nullptr) munmap(producer_area_, page_ + 2 * size_);
  if (consumer_page_ != nullptr) munmap(consumer_page_, page_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (map_fd_ >= 0) close(map_fd_);
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
  return static_cast<std::size_t>(load_acquire(producer_area_) - released_);
}

std::size_t CopyRing::take(std::span<filters::Block> out, std::span<std::uint32_t> exits) {
  const auto* data = static_cast<const std::uint8_t*>(producer_area_) + page_;
  const std::uint64_t producer = load_acquire(producer_area_);  // R1
  std::size_t got = 0;
  const std::size_t want = std::min(out.size(), exits.size());
  if (parsed_.size() < want) parsed_.resize(want);
  while (got < want && read_ < producer) {
    const std::uint8_t* rec = data + (read_ & (size_ - 1));
    const auto hdr_len =
        std::atomic_ref<const std::uint32_t>(*reinterpret_cast<const std::uint32_t*>(rec))
            .load(std::memory_order_acquire);
    if (hdr_len & kBusy) break;  // still being written: later
    const std::uint32_t len = hdr_len & ~(kBusy | kDiscard);
    read_ += (len + kHeader + 7) & ~std::uint64_t{7};  // R2
    if (hdr_len & kDiscard) continue;
    const std::uint8_t* body = rec + kHeader;  // R4: contiguous even across the end
    kernel::CopyRecord h;
    if (len < sizeof h) {
      ++stats_.bad_records;
      continue;
    }
    std::memcpy(&h, body, sizeof h);
    const std::uint32_t cap =
        std::min<std::uint32_t>(h.cap_len, len - static_cast<std::uint32_t>(sizeof h));
    filters::Block& b = out[got];
    b = filters::Block{};
    b.data = std::span<const std::uint8_t>(body + sizeof h, cap);
    b.ts_ns = h.ts_ns + static_cast<std::uint64_t>(mono_to_real_ns_);
    b.wire_len = std::max(h.wire_len, cap);
    parsed_[got] = filters::parse_packet(b.data);
    b.parsed = &parsed_[got];
    exits[got] = h.exits;
    ++stats_.received;
    stats_.bytes += cap;
    stats_.wire_bytes += b.wire_len;
    if (cap < b.wire_len) ++stats_.truncated;
    ++got;
  }
  return got;
}

std::size_t CopyRing::receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                              int timeout_ms) {
  // Release the last batch: the kernel may now reuse its space (R3).
  if (read_ != released_) {
    std::atomic_ref<std::uint64_t>(*static_cast<std::uint64_t*>(consumer_page_))
        .store(read_, std::memory_order_release);
    released_ = read_;
  }
  if (clock_ns(CLOCK_MONOTONIC) - clock_checked_ns_ > 1'000'000'000u) refresh_clock();
  std::size_t got = take(out, exits);
  if (got > 0 || timeout_ms == 0) return got;
  epoll_event ev{};
  const int n = epoll_wait(epoll_fd_, &ev, 1, timeout_ms);
  if (n > 0) ++stats_.wakeups;
  return take(out, exits);
}

}  // namespace srl::runtime
