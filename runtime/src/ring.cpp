// Shared-memory rings: see ring.h for the layout and the policies.
//
// Invariants (all indices absolute u64 byte offsets into an unbounded
// stream; the data area holds the window [x - capacity, x)):
//
//  I1  done/read <= write_idx <= reserve, for every reader index. reserve
//      only grows (CAS by writers), write_idx only grows (store by the
//      committing writer), read indices only grow (their reader), done and
//      claim only grow (medium_reader).
//  I2  write_idx, every read index, claim and done lie on record boundaries
//      (a pad record counts as a record).
//  I3  A writer owns [s, e) once its CAS moved reserve from s to e; it may
//      overwrite the bytes of [s - capacity, e - capacity). For tail_drop it
//      reserves only if e <= min(active read indices) + capacity, for
//      medium_reader only if e <= done + capacity, and for all policies only
//      if e <= write_idx + capacity (a writer never laps an uncommitted one).
//  I4  Writers commit in reservation order: the writer of [s, e) waits until
//      write_idx == s, stamps the seq, then stores write_idx = e (release).
//      A reader that loads write_idx (acquire) sees every record below it.
//  I5  tail_drop/medium_reader: a reader stores its read index / done
//      (release) only after its last access to the released bytes; the
//      writer loads them (acquire) before the CAS that reserves those bytes,
//      so the reader's loads happen before the writer's stores.
//  I6  fast_reader (seqlock without fences): writers store data, header and
//      pad words with release stores after their reserving CAS; readers load
//      them with acquire loads, then load reserve. If a reader's load saw a
//      word of a writer that reserved up to e, that CAS happens before the
//      reader's reserve load, which then sees reserve >= e. So the bytes of
//      [i, j) read by a reader are intact iff reserve <= i + capacity after
//      the reads. Word-wise atomics keep concurrent overwrites from being data
//      races (on x86 they are plain moves). A view handed out by peek() is
//      read by the caller with plain loads: under fast_reader that read can
//      race with a writer, and its result counts only if valid(view) says so
//      afterwards (valid() issues an acquire fence before loading reserve).
//  I7  Wake-ups: a waiter does fetch_add(+1) on *_waiters, loads the wait
//      word, re-checks its condition, then FUTEX_WAITs on the word's value
//      (with a bounded timeout). A waker stores its index, then does
//      fetch_add(0) on *_waiters, and only if it read non-zero increments the
//      wait word and FUTEX_WAKEs. The two RMWs on *_waiters are ordered:
//      either the waker's comes first, so the waiter's (acquire) synchronizes
//      with it and sees the new index, or the waker reads the waiter's count
//      and wakes it (the word changed, so the futex returns at once).
#include "srl/runtime/ring.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace srl::runtime {

namespace {

constexpr std::uint64_t kMagic = 0x3130667562642d6cULL;  // "l-dbuf01"
constexpr std::size_t kHeaderPage = 4096;
constexpr std::uint32_t kKindData = 1;
constexpr std::uint32_t kKindPad = 2;
constexpr auto kSpinTime = std::chrono::microseconds(50);  // before a futex wait
constexpr auto kMaxFutexWait = std::chrono::milliseconds(20);

}  // namespace

struct alignas(64) ReaderSlot {
  std::uint32_t active;  // 0 free, 1 registering, 2 active
  std::uint32_t unused;
  std::uint64_t read_idx;  // tail_drop: released up to here; fast: position (stats)
  std::uint64_t pad[6];
};

struct RingHeader {
  std::uint64_t magic;
  std::uint64_t capacity;
  std::uint32_t policy;
  std::uint32_t max_readers;
  alignas(64) std::uint64_t reserve;    // writers' reservation end
  alignas(64) std::uint64_t write_idx;  // committed end
  std::uint64_t next_seq;               // seq of the next record; only the committing writer (I4)
  std::uint64_t records;                // records committed (stats)
  std::uint32_t closed;
  alignas(64) std::uint32_t data_seq;  // futex word: readers wait for data
  std::uint32_t data_waiters;
  alignas(64) std::uint32_t space_seq;  // futex word: writers wait for space
  std::uint32_t space_waiters;
  alignas(64) std::uint64_t claim;  // medium_reader: next record to hand out
  alignas(64) std::uint64_t done;   // medium_reader: released up to here
  ReaderSlot slots[DBuf::kMaxReaders];
};
static_assert(sizeof(RingHeader) <= kHeaderPage);

namespace {

template <class T>
std::atomic_ref<T> at(T& x) {
  return std::atomic_ref<T>(x);
}

// Records start on 16-byte boundaries, the size of a record header: then
// the space left before the end of the area is always a whole header, so a
// pad record's two words, like every header, lie inside the area.
std::uint64_t align_record(std::uint64_t n) {
  return (n + 15) & ~std::uint64_t{15};
}

void cpu_relax() {
  __builtin_ia32_pause();
}

// Orders earlier loads before later ones. ThreadSanitizer does not support
// standalone fences (gcc rejects them); there a compiler barrier stands in,
// which on x86 (loads are not reordered with loads) is equivalent.
void load_fence() {
#if defined(__SANITIZE_THREAD__)
  asm volatile("" ::: "memory");
#else
  std::atomic_thread_fence(std::memory_order_acquire);
#endif
}

void futex_wait(std::uint32_t& word, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) {
  auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::nanoseconds::zero()) return;
  left = std::min<std::chrono::steady_clock::duration>(left, kMaxFutexWait);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  // Not FUTEX_PRIVATE: the word may be shared with other processes.
  syscall(SYS_futex, &word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::uint32_t& word) {
  syscall(SYS_futex, &word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// I7, waker side.
void notify(std::uint32_t& word, std::uint32_t& waiters) {
  if (at(waiters).fetch_add(0, std::memory_order_acq_rel) != 0) {
    at(word).fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(word);
  }
}

// I7, waiter side: waits until ready() or the deadline (or a bounded time).
template <class Ready>
void wait_on(std::uint32_t& word, std::uint32_t& waiters, Ready ready,
             std::chrono::steady_clock::time_point deadline) {
  at(waiters).fetch_add(1, std::memory_order_acq_rel);
  const std::uint32_t v = at(word).load(std::memory_order_seq_cst);
  if (!ready()) futex_wait(word, v, deadline);
  at(waiters).fetch_sub(1, std::memory_order_seq_cst);
}

std::uint64_t* word_at(std::byte* data, std::uint64_t mask, std::uint64_t index) {
  return reinterpret_cast<std::uint64_t*>(data + (index & mask));
}

std::uint64_t header_word(std::uint32_t length, std::uint32_t kind) {
  return std::uint64_t{length} | (std::uint64_t{kind} << 32);
}

// Word-wise copies with relaxed atomics (fast_reader, I6). `dst`/`src` in the
// ring are 8-byte aligned; the private side may be any address.
void store_words(std::uint64_t* dst, std::span<const std::byte> src) {
  std::size_t i = 0;
  const std::size_t full = src.size() / 8;
  for (; i < full; ++i) {
    std::uint64_t w;
    std::memcpy(&w, src.data() + i * 8, 8);
    at(dst[i]).store(w, std::memory_order_release);
  }
  if (const std::size_t rest = src.size() % 8; rest != 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, src.data() + i * 8, rest);
    at(dst[i]).store(w, std::memory_order_release);
  }
}

void load_words(std::span<std::byte> dst, std::uint64_t* src) {
  std::size_t i = 0;
  const std::size_t full = dst.size() / 8;
  for (; i < full; ++i) {
    const std::uint64_t w = at(src[i]).load(std::memory_order_acquire);
    std::memcpy(dst.data() + i * 8, &w, 8);
  }
  if (const std::size_t rest = dst.size() % 8; rest != 0) {
    const std::uint64_t w = at(src[i]).load(std::memory_order_acquire);
    std::memcpy(dst.data() + i * 8, &w, rest);
  }
}

std::system_error sys_error(const char* what) {
  return std::system_error(errno, std::generic_category(), what);
}

}  // namespace

// ---------------------------------------------------------------- DBuf

DBuf::DBuf(int fd, void* base, std::size_t capacity)
    : fd_(fd),
      base_(base),
      capacity_(capacity),
      hdr_(static_cast<RingHeader*>(base)),
      data_(static_cast<std::byte*>(base) + kHeaderPage) {}

DBuf DBuf::create(const RingOptions& options) {
  if (options.capacity < 4096 || !std::has_single_bit(options.capacity)) {
    throw std::invalid_argument("ring capacity must be a power of two >= 4096");
  }
  if (options.max_readers == 0 || options.max_readers > kMaxReaders) {
    throw std::invalid_argument("ring max_readers must be 1..32");
  }
  const int fd = memfd_create("srl-dbuf", MFD_CLOEXEC);
  if (fd < 0) throw sys_error("memfd_create");
  const std::size_t size = kHeaderPage + options.capacity;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const auto err = sys_error("ftruncate");
    ::close(fd);
    throw err;
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const auto err = sys_error("mmap");
    ::close(fd);
    throw err;
  }
  // The fresh memfd reads as zeros; start the header's lifetime, then set it.
  auto* hdr = new (base) RingHeader{};
  hdr->capacity = options.capacity;
  hdr->policy = static_cast<std::uint32_t>(options.policy);
  hdr->max_readers = options.max_readers;
  at(hdr->magic).store(kMagic, std::memory_order_release);
  return DBuf(fd, base, options.capacity);
}

DBuf DBuf::attach(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) throw sys_error("fstat");
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size < kHeaderPage + 4096) throw std::invalid_argument("not a ring (too small)");
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) throw sys_error("dup");
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
  if (base == MAP_FAILED) {
    const auto err = sys_error("mmap");
    ::close(own);
    throw err;
  }
  auto* hdr = static_cast<RingHeader*>(base);
  if (at(hdr->magic).load(std::memory_order_acquire) != kMagic ||
      hdr->capacity + kHeaderPage != size) {
    munmap(base, size);
    ::close(own);
    throw std::invalid_argument("not a ring (bad header)");
  }
  return DBuf(own, base, static_cast<std::size_t>(hdr->capacity));
}

void DBuf::send_fd(int unix_socket) const {
  char byte = 'r';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd_, sizeof(int));
  if (sendmsg(unix_socket, &msg, MSG_NOSIGNAL) != 1) throw sys_error("sendmsg");
}

DBuf DBuf::receive(int unix_socket) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  if (recvmsg(unix_socket, &msg, MSG_CMSG_CLOEXEC) != 1) throw sys_error("recvmsg");
  const cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
    throw std::system_error(EPROTO, std::generic_category(), "recvmsg: no fd");
  }
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  try {
    DBuf ring = attach(fd);
    ::close(fd);
    return ring;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

DBuf::DBuf(DBuf&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      capacity_(other.capacity_),
      hdr_(std::exchange(other.hdr_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      limit_cache_(other.limit_cache_) {}

DBuf& DBuf::operator=(DBuf&& other) noexcept {
  if (this != &other) {
    this->~DBuf();
    new (this) DBuf(std::move(other));
  }
  return *this;
}

DBuf::~DBuf() {
  if (base_ != nullptr) munmap(base_, kHeaderPage + capacity_);
  if (fd_ >= 0) ::close(fd_);
}

ReaderPolicy DBuf::policy() const {
  return static_cast<ReaderPolicy>(hdr_->policy);
}

std::uint64_t DBuf::write_index() const {
  return at(hdr_->write_idx).load(std::memory_order_acquire);
}

std::uint64_t DBuf::records_written() const {
  return at(hdr_->records).load(std::memory_order_relaxed);
}

bool DBuf::closed() const {
  return at(hdr_->closed).load(std::memory_order_acquire) != 0;
}

void DBuf::close() {
  at(hdr_->closed).store(1, std::memory_order_release);
  at(hdr_->data_seq).fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(hdr_->data_seq);
}

std::uint64_t DBuf::space_limit() const {
  const std::uint64_t w = at(hdr_->write_idx).load(std::memory_order_acquire);
  std::uint64_t limit = w;
  switch (policy()) {
    case ReaderPolicy::tail_drop:
      for (std::uint32_t i = 0; i < hdr_->max_readers; ++i) {
        ReaderSlot& s = hdr_->slots[i];
        if (at(s.active).load(std::memory_order_acquire) != 2) continue;
        limit = std::min(limit, at(s.read_idx).load(std::memory_order_acquire));
      }
      break;
    case ReaderPolicy::medium_reader:
      limit = std::min(limit, at(hdr_->done).load(std::memory_order_acquire));
      break;
    case ReaderPolicy::fast_reader:
      break;
  }
  return limit + capacity_;
}

bool DBuf::try_write(std::span<const std::byte> payload) {
  return write_impl(payload, false, {});
}

void DBuf::write(std::span<const std::byte> payload) {
  write_impl(payload, true, std::chrono::steady_clock::time_point::max());
}

bool DBuf::write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
  return write_impl(payload, true, std::chrono::steady_clock::now() + timeout);
}

bool DBuf::write_impl(std::span<const std::byte> payload, bool wait,
                      std::chrono::steady_clock::time_point deadline) {
  if (payload.size() > max_payload()) throw std::length_error("record larger than max_payload()");
  const std::uint64_t mask = capacity_ - 1;
  const std::uint64_t rec = align_record(kRecordHeader + payload.size());
  const bool fast = policy() == ReaderPolicy::fast_reader;
  std::uint64_t s = 0;
  std::uint64_t pad = 0;
  std::uint64_t e = 0;
  int spins = 0;
  std::chrono::steady_clock::time_point spin_start{};
  for (;;) {
    s = at(hdr_->reserve).load(std::memory_order_relaxed);
    const std::uint64_t off = s & mask;
    pad = off + rec > capacity_ ? capacity_ - off : 0;
    e = s + pad + rec;
    // Once the ring was full, wait for an eighth of it to be free (when the
    // record is small enough for that to be reachable) instead of polling the
    // readers' lines for every record: fewer cache-line transfers.
    const std::uint64_t need = e + (spins > 0 && rec <= capacity_ / 4 ? capacity_ / 8 : 0);
    // I3. The limit only grows, so a value computed earlier (by any thread
    // of this process) is a safe lower bound: recompute only when needed.
    // Acquire/release on the cache carries I5's happens-before from the
    // thread that loaded the read indices to the one that uses the value.
    if (need > at(limit_cache_).load(std::memory_order_acquire)) {
      const std::uint64_t limit = space_limit();
      std::uint64_t old = at(limit_cache_).load(std::memory_order_acquire);
      while (old < limit && !at(limit_cache_)
                                 .compare_exchange_weak(old, limit, std::memory_order_acq_rel,
                                                        std::memory_order_acquire)) {
      }
    }
    if (need > at(limit_cache_).load(std::memory_order_acquire)) {
      if (!wait && !fast) return false;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      if (spins++ == 0) spin_start = now;
      // fast: only waits for other writers' commits
      if (fast || now - spin_start < kSpinTime) {
        if (spins % 64 == 0) std::this_thread::yield();
        for (int i = 0; i < 16; ++i)
          cpu_relax();
      } else {
        wait_on(
            hdr_->space_seq, hdr_->space_waiters, [&] { return need <= space_limit(); }, deadline);
      }
      continue;
    }
    if (at(hdr_->reserve)
            .compare_exchange_weak(s, e, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      break;
    }
  }

  const std::uint32_t len = static_cast<std::uint32_t>(payload.size());
  if (pad != 0) {
    at(*word_at(data_, mask, s))
        .store(header_word(static_cast<std::uint32_t>(pad), kKindPad), std::memory_order_release);
  }
  const std::uint64_t r = s + pad;
  std::uint64_t* rw = word_at(data_, mask, r);
  if (policy() != ReaderPolicy::tail_drop) {
    // fast_reader: I6. medium_reader: a reader may still load a stale header
    // word here (its claim CAS then fails), so these stores must be atomic too.
    store_words(rw + 2, payload);
  } else if (!payload.empty()) {
    std::memcpy(rw + 2, payload.data(), payload.size());
  }

  // I4: commit in reservation order.
  spins = 0;
  while (at(hdr_->write_idx).load(std::memory_order_acquire) != s) {
    if (++spins % 64 == 0) std::this_thread::yield();
    cpu_relax();
  }
  const std::uint64_t seq = hdr_->next_seq;
  hdr_->next_seq = seq + 1;
  at(rw[1]).store(seq, std::memory_order_release);  // I6
  at(rw[0]).store(header_word(len, kKindData), std::memory_order_release);
  at(hdr_->records).store(seq + 1, std::memory_order_relaxed);
  at(hdr_->write_idx).store(e, std::memory_order_release);
  notify(hdr_->data_seq, hdr_->data_waiters);
  return true;
}

DBuf::Reader DBuf::open_reader() {
  for (std::uint32_t i = 0; i < hdr_->max_readers; ++i) {
    ReaderSlot& s = hdr_->slots[i];
    std::uint32_t expected = 0;
    if (!at(s.active).compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    const std::uint64_t w = at(hdr_->write_idx).load(std::memory_order_acquire);
    at(s.read_idx).store(w, std::memory_order_release);
    at(s.active).store(2, std::memory_order_release);
    return Reader(this, i, w, std::numeric_limits<std::uint64_t>::max());
  }
  throw std::runtime_error("ring: every reader slot is taken");
}

RecordView DBuf::resolve(std::uint64_t index, std::uint32_t length) const {
  if (length > max_payload()) throw std::length_error("ring: bad record length");
  const std::uint64_t mask = capacity_ - 1;
  const std::byte* p = data_ + ((index + kRecordHeader) & mask);
  return RecordView{index, index + align_record(kRecordHeader + length), 0, {p, length}};
}

// ---------------------------------------------------------------- Reader

DBuf::Reader::Reader(DBuf* ring, std::uint32_t slot, std::uint64_t pos, std::uint64_t seq)
    : ring_(ring), slot_(slot), pos_(pos), next_seq_(seq), seen_w_(pos) {}

DBuf::Reader::Reader(Reader&& other) noexcept
    : ring_(std::exchange(other.ring_, nullptr)),
      slot_(other.slot_),
      pos_(other.pos_),
      next_seq_(other.next_seq_),
      lost_(other.lost_),
      seen_w_(other.seen_w_) {}

DBuf::Reader& DBuf::Reader::operator=(Reader&& other) noexcept {
  if (this != &other) {
    this->~Reader();
    new (this) Reader(std::move(other));
  }
  return *this;
}

DBuf::Reader::~Reader() {
  if (ring_ == nullptr) return;
  RingHeader* h = ring_->hdr_;
  at(h->slots[slot_].active).store(0, std::memory_order_release);
  notify(h->space_seq, h->space_waiters);  // a writer may wait for this reader
}

void DBuf::Reader::account(std::uint64_t seq) {
  if (next_seq_ != std::numeric_limits<std::uint64_t>::max() && seq > next_seq_) {
    lost_ += seq - next_seq_;
  }
  next_seq_ = seq + 1;
}

void DBuf::Reader::skip_forward() {
  pos_ = at(ring_->hdr_->write_idx).load(std::memory_order_acquire);
}

std::optional<RecordView> DBuf::Reader::try_peek() {
  switch (ring_->policy()) {
    case ReaderPolicy::fast_reader:
      return peek_fast();
    case ReaderPolicy::medium_reader:
      return peek_shared();
    case ReaderPolicy::tail_drop:
      break;
  }
  return peek_own();
}

std::optional<RecordView> DBuf::Reader::peek_own() {
  RingHeader* h = ring_->hdr_;
  const std::uint64_t mask = ring_->capacity_ - 1;
  if (pos_ == seen_w_) seen_w_ = at(h->write_idx).load(std::memory_order_acquire);  // I4
  while (pos_ != seen_w_) {
    std::uint64_t* rw = word_at(ring_->data_, mask, pos_);
    const std::uint64_t w0 = at(rw[0]).load(std::memory_order_relaxed);
    const auto len = static_cast<std::uint32_t>(w0);
    if (static_cast<std::uint32_t>(w0 >> 32) == kKindPad) {
      pos_ += len;
      at(h->slots[slot_].read_idx).store(pos_, std::memory_order_release);  // I5
      continue;
    }
    const std::uint64_t seq = at(rw[1]).load(std::memory_order_relaxed);
    const auto* p = reinterpret_cast<const std::byte*>(rw + 2);
    return RecordView{pos_, pos_ + align_record(kRecordHeader + len), seq, {p, len}};
  }
  return std::nullopt;
}

std::optional<RecordView> DBuf::Reader::peek_fast() {
  RingHeader* h = ring_->hdr_;
  const std::uint64_t cap = ring_->capacity_;
  const std::uint64_t mask = cap - 1;
  for (;;) {
    const std::uint64_t w = at(h->write_idx).load(std::memory_order_acquire);
    if (pos_ == w) return std::nullopt;
    std::uint64_t* rw = word_at(ring_->data_, mask, pos_);
    const std::uint64_t w0 = at(rw[0]).load(std::memory_order_acquire);  // I6
    const std::uint64_t seq = at(rw[1]).load(std::memory_order_acquire);
    if (at(h->reserve).load(std::memory_order_acquire) > pos_ + cap) {
      skip_forward();  // overtaken: the header may be garbage
      continue;
    }
    const auto len = static_cast<std::uint32_t>(w0);
    if (static_cast<std::uint32_t>(w0 >> 32) == kKindPad) {
      pos_ += len;
      continue;
    }
    const auto* p = reinterpret_cast<const std::byte*>(rw + 2);
    return RecordView{pos_, pos_ + align_record(kRecordHeader + len), seq, {p, len}};
  }
}

std::optional<RecordView> DBuf::Reader::peek_shared() {
  RingHeader* h = ring_->hdr_;
  const std::uint64_t mask = ring_->capacity_ - 1;
  for (;;) {
    std::uint64_t c = at(h->claim).load(std::memory_order_acquire);
    const std::uint64_t w = at(h->write_idx).load(std::memory_order_acquire);
    if (c == w) return std::nullopt;
    // The header may be stale if another reader takes c first (then the CAS
    // fails); atomic loads keep that harmless.
    std::uint64_t* rw = word_at(ring_->data_, mask, c);
    const std::uint64_t w0 = at(rw[0]).load(std::memory_order_relaxed);
    const std::uint64_t seq = at(rw[1]).load(std::memory_order_relaxed);
    const auto len = static_cast<std::uint32_t>(w0);
    const bool is_pad = static_cast<std::uint32_t>(w0 >> 32) == kKindPad;
    const std::uint64_t end = is_pad ? c + len : c + align_record(kRecordHeader + len);
    if (!at(h->claim).compare_exchange_weak(c, end, std::memory_order_acq_rel,
                                            std::memory_order_relaxed)) {
      continue;
    }
    const auto* p = reinterpret_cast<const std::byte*>(rw + 2);
    RecordView v{c, end, seq, {p, is_pad ? 0 : len}};
    if (is_pad) {
      complete(v);
      continue;
    }
    return v;
  }
}

bool DBuf::Reader::valid(const RecordView& view) const {
  if (ring_->policy() != ReaderPolicy::fast_reader) return true;
  load_fence();  // I6: the caller's plain loads of the view come first
  return at(ring_->hdr_->reserve).load(std::memory_order_acquire) <= view.index + ring_->capacity_;
}

void DBuf::Reader::complete(const RecordView& view) {
  RingHeader* h = ring_->hdr_;
  switch (ring_->policy()) {
    case ReaderPolicy::tail_drop:
      pos_ = view.end;
      at(h->slots[slot_].read_idx).store(pos_, std::memory_order_release);  // I5
      notify(h->space_seq, h->space_waiters);
      break;
    case ReaderPolicy::fast_reader:
      if (view.index >= pos_) {
        pos_ = view.end;
        account(view.seq);
        at(h->slots[slot_].read_idx).store(pos_, std::memory_order_relaxed);
      }
      break;
    case ReaderPolicy::medium_reader: {
      // Release in index order (I5): wait for the readers of earlier records.
      int spins = 0;
      while (at(h->done).load(std::memory_order_acquire) != view.index) {
        if (++spins % 64 == 0) std::this_thread::yield();
        cpu_relax();
      }
      at(h->done).store(view.end, std::memory_order_release);
      notify(h->space_seq, h->space_waiters);
      break;
    }
  }
}

std::optional<std::size_t> DBuf::Reader::try_read(std::span<std::byte> out) {
  if (ring_->policy() != ReaderPolicy::fast_reader) {
    auto v = try_peek();
    if (!v) return std::nullopt;
    if (out.size() < v->data.size()) throw std::length_error("ring: read buffer too small");
    if (!v->data.empty()) std::memcpy(out.data(), v->data.data(), v->data.size());
    complete(*v);
    return v->data.size();
  }
  for (;;) {
    auto v = peek_fast();
    if (!v) return std::nullopt;
    if (out.size() < v->data.size()) throw std::length_error("ring: read buffer too small");
    // The view's pointer is into the ring: copy with atomic word loads (I6).
    auto* src = const_cast<std::uint64_t*>(reinterpret_cast<const std::uint64_t*>(v->data.data()));
    load_words(out.first(v->data.size()), src);
    if (!valid(*v)) {
      skip_forward();
      continue;
    }
    complete(*v);
    return v->data.size();
  }
}

bool DBuf::Reader::wait_for_data(std::chrono::steady_clock::time_point deadline) {
  RingHeader* h = ring_->hdr_;
  const bool shared = ring_->policy() == ReaderPolicy::medium_reader;
  auto ready = [&] {
    const std::uint64_t w = at(h->write_idx).load(std::memory_order_acquire);
    const std::uint64_t r = shared ? at(h->claim).load(std::memory_order_acquire) : pos_;
    return w != r || at(h->closed).load(std::memory_order_acquire) != 0;
  };
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if (i % 16 == 15 && std::chrono::steady_clock::now() - start > kSpinTime) break;
  }
  wait_on(h->data_seq, h->data_waiters, ready, deadline);
  return ready();
}

std::optional<RecordView> DBuf::Reader::peek(std::chrono::nanoseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool was_closed = ring_->closed();
    if (auto v = try_peek()) return v;
    if (was_closed || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    wait_for_data(deadline);
  }
}

std::optional<std::size_t> DBuf::Reader::read(std::span<std::byte> out,
                                              std::chrono::nanoseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool was_closed = ring_->closed();
    if (auto n = try_read(out)) return n;
    if (was_closed || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    wait_for_data(deadline);
  }
}

// ---------------------------------------------------------------- IBuf

IBuf::IBuf(std::size_t capacity) : entries_(std::bit_ceil(std::max<std::size_t>(capacity, 1))) {}

bool IBuf::push(const IBufEntry& entry) {
  if (size() == entries_.size()) return false;
  entries_[static_cast<std::size_t>(tail_) & (entries_.size() - 1)] = entry;
  ++tail_;
  return true;
}

const IBufEntry* IBuf::front() const {
  if (empty()) return nullptr;
  return &entries_[static_cast<std::size_t>(head_) & (entries_.size() - 1)];
}

std::optional<IBufEntry> IBuf::pop() {
  if (empty()) return std::nullopt;
  IBufEntry e = entries_[static_cast<std::size_t>(head_) & (entries_.size() - 1)];
  ++head_;
  return e;
}

}  // namespace srl::runtime
