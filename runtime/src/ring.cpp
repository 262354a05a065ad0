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
//  I7  Wake-ups (Dekker: the waker stores its index then loads *_waiters,
//      the waiter increments *_waiters then loads the index; one of them
//      must see the other's store). A waiter does fetch_add(+1) on
//      *_waiters, then a heavy barrier, loads the wait word, re-checks its
//      condition, then FUTEX_WAITs on the word's value (with a bounded
//      timeout). A waker stores its index, then a light barrier, loads
//      *_waiters, and only if it read non-zero increments the wait word and
//      FUTEX_WAKEs. Asymmetric (every process that maps the ring registered
//      for MEMBARRIER_CMD_GLOBAL_EXPEDITED): the light barrier is a compiler
//      barrier and the heavy one membarrier(GLOBAL_EXPEDITED), which runs a
//      full fence on every CPU that runs a registered process: a waker's
//      store before that point is visible to the waiter's load after it, and
//      a waker's load after that point sees the waiter's increment. So the
//      per-record fast path has no fence (a full fence there waits for the
//      index's cache line to come back from the other core); only a waiter
//      about to sleep pays a system call. Symmetric (a process could not
//      register; it marks the ring, and every process then uses this mode):
//      the light barrier is a full fence and the heavy one the waiter's
//      fetch_add itself. A wake-up missed while a process switches modes
//      costs at most one bounded futex timeout.
//  I8  oob_records: the committing writer (I4) writes the header entries of
//      its records (entry number = seq, at seq mod entries), first storing
//      next_seq past them, then `records` (release), then write_idx. Readers
//      take `records` (acquire) as their write index. Every record spans at
//      least 64 data bytes and entries = capacity / 64, so while a reader
//      holds the data of entry k (I3) no writer can reach entry k + entries:
//      header space never needs its own wait. A fast_reader validates an
//      entry like I6, with next_seq in place of reserve.
//  I9  Pins (and Splicer) take part in I3 for tail_drop and medium_reader:
//      the writer loads the reader indices, then the pins. A pin is set
//      before the reader that pinned releases the record (release store), so
//      a writer that sees the release also sees the pin.
//  I10 single_writer: one handle writes (one thread at a time), so the
//      reservation is a plain store and the commit turn of I4 is always the
//      writer's own: no locked instruction per record (it would wait for
//      the last record's cache lines to reach the reader). The handle claims
//      the role with one CAS on `writer` at its first write and gives it back
//      when destroyed; another handle's write is refused. I6 still holds: the
//      data and pad words are stored (release) after the reserve store, so a
//      reader that sees one of them sees the reservation.

#include "srl/runtime/ring.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
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
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace srl::runtime {

namespace {

constexpr std::uint64_t kMagic = 0x3330667562642d6cULL;  // "l-dbuf03"
constexpr std::size_t kHeaderPage = 4096;
constexpr std::uint32_t kKindData = 1;
constexpr std::uint32_t kKindPad = 2;
constexpr std::uint32_t kKindRef = 3;
constexpr std::size_t kSlotHeader = 8;  // fixed_slots: u32 length | u32 kind
constexpr std::uint64_t kOobUnit = 64;  // oob_records: data alignment and minimum
constexpr std::size_t kRefBytes = 24;   // reference payload: ring id, index, length
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
  std::uint32_t layout;
  std::uint32_t slot_size;
  std::uint64_t entries;  // oob_records: header entries
  std::uint64_t id;
  // I7: non-zero once a process that maps the ring could not register for
  // (or issue) expedited membarriers: wake-ups then use symmetric fences.
  // Read by every waker: it sits with the never-written fields above.
  std::uint32_t symmetric_wakeups;
  std::uint32_t single_writer;          // RingOptions::single_writer (I10)
  std::uint64_t writer;                 // single_writer: the writing handle's token, 0 free
  alignas(64) std::uint64_t reserve;    // writers' reservation end
  alignas(64) std::uint64_t write_idx;  // committed end
  std::uint64_t next_seq;  // seq of the next record; stored by the committing writer (I4, I8)
  std::uint64_t records;   // records committed (stats)
  std::uint32_t closed;
  alignas(64) std::uint32_t data_seq;  // futex word: readers wait for data
  std::uint32_t data_waiters;
  alignas(64) std::uint32_t space_seq;  // futex word: writers wait for space
  std::uint32_t space_waiters;
  alignas(64) std::uint64_t claim;  // medium_reader: next record to hand out
  alignas(64) std::uint64_t done;   // medium_reader: released up to here
  ReaderSlot slots[DBuf::kMaxReaders];
  alignas(64) std::uint64_t pins[DBuf::kMaxPins];  // pinned index + 1; 0 free
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

// Whether this process takes part in the asymmetric protocol of I7: it
// registered for expedited global memory barriers (once per process; a
// forked child inherits the registration, exec clears it and the statics).
bool registered_for_membarrier() {
  static const bool registered =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
  return registered;
}

// I7, waker side.
void notify(std::uint32_t& symmetric, std::uint32_t& word, std::uint32_t& waiters) {
  std::uint32_t n = 0;
  if (at(symmetric).load(std::memory_order_relaxed) != 0) {
    n = at(waiters).fetch_add(0, std::memory_order_acq_rel);
  } else {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    n = at(waiters).load(std::memory_order_relaxed);
  }
  if (n != 0) {
    at(word).fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(word);
  }
}

// I7, waiter side: waits until ready() or the deadline (or a bounded time).
template <class Ready>
void wait_on(std::uint32_t& symmetric, std::uint32_t& word, std::uint32_t& waiters, Ready ready,
             std::chrono::steady_clock::time_point deadline) {
  at(waiters).fetch_add(1, std::memory_order_seq_cst);
  if (at(symmetric).load(std::memory_order_relaxed) == 0 &&
      syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) {
    at(symmetric).store(1, std::memory_order_seq_cst);  // wakers fence from now on
  }
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

namespace {

std::uint64_t align_oob(std::uint64_t n) {
  return std::max(kOobUnit, (n + kOobUnit - 1) & ~(kOobUnit - 1));
}

std::uint64_t oob_entries(std::size_t capacity) {
  return capacity / kOobUnit;
}

std::size_t map_size(std::size_t capacity, RingLayout layout) {
  std::size_t size = kHeaderPage + capacity;
  if (layout == RingLayout::oob_records) size += oob_entries(capacity) * 32;
  return size;
}

std::uint64_t fresh_id() {
  std::random_device rd;
  std::uint64_t id = 0;
  while (id == 0)
    id = (std::uint64_t{rd()} << 32) ^ rd();
  return id;
}

// A reference record's payload: ring id, index, length (u64 each).
void encode_ref(std::byte* out, const RecordRef& ref) {
  const std::uint64_t len = ref.length;
  std::memcpy(out, &ref.ring, 8);
  std::memcpy(out + 8, &ref.index, 8);
  std::memcpy(out + 16, &len, 8);
}

RecordRef decode_ref(const std::byte* in) {
  RecordRef ref;
  std::uint64_t len = 0;
  std::memcpy(&ref.ring, in, 8);
  std::memcpy(&ref.index, in + 8, 8);
  std::memcpy(&len, in + 16, 8);
  ref.length = static_cast<std::uint32_t>(len);
  return ref;
}

}  // namespace

// ---------------------------------------------------------------- DBuf

DBuf::DBuf(int fd, void* base, std::size_t capacity)
    : fd_(fd),
      base_(base),
      capacity_(capacity),
      hdr_(static_cast<RingHeader*>(base)),
      data_(static_cast<std::byte*>(base) + kHeaderPage) {
  layout_ = static_cast<RingLayout>(hdr_->layout);
  single_writer_ = hdr_->single_writer != 0;
  if (!registered_for_membarrier()) {
    at(hdr_->symmetric_wakeups).store(1, std::memory_order_seq_cst);  // I7
  }
  if (layout_ == RingLayout::fixed_slots) {
    slot_ = hdr_->slot_size;
    slot_shift_ = static_cast<std::uint32_t>(std::countr_zero(slot_));
  }
  if (layout_ == RingLayout::oob_records) {
    entries_ = hdr_->entries;
    ent_ = reinterpret_cast<std::uint64_t*>(data_ + capacity_);
  }
}

DBuf DBuf::create(const RingOptions& options) {
  if (options.capacity < 4096 || !std::has_single_bit(options.capacity)) {
    throw std::invalid_argument("ring capacity must be a power of two >= 4096");
  }
  if (options.max_readers == 0 || options.max_readers > kMaxReaders) {
    throw std::invalid_argument("ring max_readers must be 1..32");
  }
  switch (options.layout) {
    case RingLayout::records:
    case RingLayout::oob_records:
      break;
    case RingLayout::fixed_slots:
      if (options.slot_size < 16 || options.slot_size > options.capacity / 2 ||
          !std::has_single_bit(options.slot_size)) {
        throw std::invalid_argument("ring slot_size must be a power of two, 16 to capacity / 2");
      }
      break;
    case RingLayout::byte_stream:
      if (options.policy != ReaderPolicy::tail_drop) {
        throw std::invalid_argument(
            "a byte_stream ring needs tail_drop: without record boundaries an "
            "overtaken (fast_reader) or shared (medium_reader) reader cannot resume");
      }
      break;
    default:
      throw std::invalid_argument("unknown ring layout");
  }
  const int fd = memfd_create("srl-dbuf", MFD_CLOEXEC);
  if (fd < 0) throw sys_error("memfd_create");
  const std::size_t size = map_size(options.capacity, options.layout);
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
  hdr->layout = static_cast<std::uint32_t>(options.layout);
  hdr->slot_size =
      options.layout == RingLayout::fixed_slots ? static_cast<std::uint32_t>(options.slot_size) : 0;
  hdr->entries = options.layout == RingLayout::oob_records ? oob_entries(options.capacity) : 0;
  hdr->id = fresh_id();
  hdr->single_writer = options.single_writer ? 1 : 0;
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
  const bool ok =
      at(hdr->magic).load(std::memory_order_acquire) == kMagic &&
      hdr->layout <= static_cast<std::uint32_t>(RingLayout::oob_records) && hdr->capacity <= size &&
      map_size(static_cast<std::size_t>(hdr->capacity), static_cast<RingLayout>(hdr->layout)) ==
          size &&
      (hdr->layout != static_cast<std::uint32_t>(RingLayout::fixed_slots) ||
       (hdr->slot_size >= 16 && std::has_single_bit(hdr->slot_size)));
  if (!ok) {
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
      limit_cache_(other.limit_cache_),
      layout_(other.layout_),
      slot_(other.slot_),
      slot_shift_(other.slot_shift_),
      entries_(other.entries_),
      ent_(std::exchange(other.ent_, nullptr)),
      single_writer_(other.single_writer_),
      writer_token_(std::exchange(other.writer_token_, 0)),
      next_seq_(other.next_seq_) {}

DBuf& DBuf::operator=(DBuf&& other) noexcept {
  if (this != &other) {
    this->~DBuf();
    new (this) DBuf(std::move(other));
  }
  return *this;
}

DBuf::~DBuf() {
  if (writer_token_ != 0 && hdr_ != nullptr) {  // I10: give the writer role back
    std::uint64_t mine = writer_token_;
    at(hdr_->writer).compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
  }
  if (base_ != nullptr) munmap(base_, map_size(capacity_, layout_));
  if (fd_ >= 0) ::close(fd_);
}

ReaderPolicy DBuf::policy() const {
  return static_cast<ReaderPolicy>(hdr_->policy);
}

std::uint64_t DBuf::id() const {
  return hdr_->id;
}

std::size_t DBuf::max_payload() const {
  switch (layout_) {
    case RingLayout::fixed_slots:
      return slot_ - kSlotHeader;
    case RingLayout::byte_stream:
      return capacity_;
    case RingLayout::oob_records:
      return capacity_ / 2;
    case RingLayout::records:
      break;
  }
  return capacity_ / 2 - kRecordHeader;
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

std::uint64_t DBuf::released_index() const {
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
  return limit;
}

std::uint64_t DBuf::space_limit() const {
  std::uint64_t limit = released_index();
  if (policy() != ReaderPolicy::fast_reader) {
    for (std::uint64_t& p : hdr_->pins) {  // I9: after the reader indices
      const std::uint64_t v = at(p).load(std::memory_order_acquire);
      if (v != 0) limit = std::min(limit, v - 1);
    }
  }
  return limit + capacity_;
}

// The end of a record of `len` payload bytes reserved from `s`, and the
// bytes skipped before it (the tail of the area, when it does not fit).
std::uint64_t DBuf::place(std::uint64_t s, std::size_t len, std::uint64_t& pad) const {
  pad = 0;
  std::uint64_t rec = 0;
  switch (layout_) {
    case RingLayout::byte_stream:
      return s + len;
    case RingLayout::fixed_slots:
      return s + slot_;
    case RingLayout::records:
      rec = align_record(kRecordHeader + len);
      break;
    case RingLayout::oob_records:
      rec = align_oob(len);
      break;
  }
  const std::uint64_t off = s & (capacity_ - 1);
  if (off + rec > capacity_) pad = capacity_ - off;
  return s + pad + rec;
}

bool DBuf::try_write(std::span<const std::byte> payload) {
  return write_impl(payload, false, {});
}

void DBuf::write(std::span<const std::byte> payload) {
  write_impl(payload, true, std::chrono::steady_clock::time_point::max());
}

bool DBuf::write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
  // Like the readers' waiting calls: the clock only when there is no room.
  if (write_impl(payload, false, {})) return true;
  return write_impl(payload, true, std::chrono::steady_clock::now() + timeout);
}

bool DBuf::try_write(std::span<const std::byte> payload, const RecordMeta& meta) {
  return write_many(&payload, 1, &meta, kKindData, false, {}) == 1;
}

void DBuf::write(std::span<const std::byte> payload, const RecordMeta& meta) {
  write_many(&payload, 1, &meta, kKindData, true, std::chrono::steady_clock::time_point::max());
}

bool DBuf::write_impl(std::span<const std::byte> payload, bool wait,
                      std::chrono::steady_clock::time_point deadline) {
  return write_many(&payload, 1, nullptr, kKindData, wait, deadline) == 1;
}

std::size_t DBuf::try_write_batch(Payloads records, std::span<const RecordMeta> metas) {
  if (!metas.empty() && metas.size() != records.size()) {
    throw std::invalid_argument("ring: one RecordMeta per record");
  }
  return write_many(records.data(), records.size(), metas.empty() ? nullptr : metas.data(),
                    kKindData, false, {});
}

void DBuf::write_batch(Payloads records, std::span<const RecordMeta> metas) {
  write_batch(records, metas, std::chrono::nanoseconds::max());
}

std::size_t DBuf::write_batch(Payloads records, std::span<const RecordMeta> metas,
                              std::chrono::nanoseconds timeout) {
  if (!metas.empty() && metas.size() != records.size()) {
    throw std::invalid_argument("ring: one RecordMeta per record");
  }
  const auto deadline = timeout == std::chrono::nanoseconds::max()
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() + timeout;
  std::size_t done = 0;
  while (done < records.size()) {
    const std::size_t k =
        write_many(records.data() + done, records.size() - done,
                   metas.empty() ? nullptr : metas.data() + done, kKindData, true, deadline);
    if (k == 0) break;
    done += k;
  }
  return done;
}

void DBuf::claim_writer() {
  const std::uint64_t token = fresh_id();
  std::uint64_t free = 0;
  if (!at(hdr_->writer).compare_exchange_strong(free, token, std::memory_order_acq_rel)) {
    throw std::logic_error("ring: a single_writer ring already has a writer (another handle)");
  }
  writer_token_ = token;
  // The sole writer keeps the seq; take it over from the one before.
  next_seq_ = at(hdr_->next_seq).load(std::memory_order_acquire);
}

std::size_t DBuf::write_many(const std::span<const std::byte>* recs, std::size_t n,
                             const RecordMeta* metas, std::uint32_t kind, bool wait,
                             std::chrono::steady_clock::time_point deadline, std::uint64_t* end) {
  if (n == 0) return 0;
  const std::size_t maxp = max_payload();
  for (std::size_t i = 0; i < n; ++i) {
    if (recs[i].size() > maxp) throw std::length_error("record larger than max_payload()");
  }
  if (single_writer_ && writer_token_ == 0) claim_writer();
  const std::uint64_t mask = capacity_ - 1;
  const bool fast = policy() == ReaderPolicy::fast_reader;
  std::uint64_t s = 0;
  std::uint64_t e = 0;
  std::size_t count = 0;
  int spins = 0;
  std::chrono::steady_clock::time_point spin_start{};
  for (;;) {
    s = at(hdr_->reserve).load(std::memory_order_relaxed);
    std::uint64_t pad = 0;
    e = place(s, recs[0].size(), pad);
    const std::uint64_t rec = e - s - pad;
    // Once the ring was full, wait for an eighth of it to be free (when the
    // record is small enough for that to be reachable) instead of polling the
    // readers' lines for every record: fewer cache-line transfers.
    const std::uint64_t need = e + (spins > 0 && rec <= capacity_ / 4 ? capacity_ / 8 : 0);
    // I3. The limit only grows, so a value computed earlier (by any thread
    // of this process) is a safe lower bound: recompute only when needed.
    // Acquire/release on the cache carries I5's happens-before from the
    // thread that loaded the read indices to the one that uses the value.
    std::uint64_t limit = at(limit_cache_).load(std::memory_order_acquire);
    auto refresh = [&] {
      const std::uint64_t fresh = space_limit();
      std::uint64_t old = limit;
      while (old < fresh && !at(limit_cache_)
                                 .compare_exchange_weak(old, fresh, std::memory_order_acq_rel,
                                                        std::memory_order_acquire)) {
      }
      limit = std::max(old, fresh);
    };
    bool fresh = false;
    if (need > limit) {
      refresh();
      fresh = true;
    }
    if (need > limit) {
      if (!wait && !fast) return 0;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return 0;
      if (spins++ == 0) spin_start = now;
      // fast: only waits for other writers' commits
      if (fast || now - spin_start < kSpinTime) {
        if (spins % 64 == 0) std::this_thread::yield();
        // A growing pause, as the readers' (wait_for_data): every look at
        // the readers' indices pulls their lines over while they release.
        for (int i = 0, k = 16 << std::min(spins / 8, 4); i < k; ++i)
          cpu_relax();
      } else {
        wait_on(
            hdr_->symmetric_wakeups, hdr_->space_seq, hdr_->space_waiters,
            [&] { return need <= space_limit(); }, deadline);
      }
      continue;
    }
    // The rest of the batch, as far as it fits (under a fresh limit when the
    // cached one cuts it short: one look at the readers' lines per batch).
    count = 1;
    while (count < n) {
      const std::uint64_t next = place(e, recs[count].size(), pad);
      if (next > limit) {
        if (fresh) break;
        refresh();
        fresh = true;
        if (next > limit) break;
      }
      e = next;
      ++count;
    }
    if (single_writer_) {  // I10
      at(hdr_->reserve).store(e, std::memory_order_relaxed);
      break;
    }
    if (at(hdr_->reserve)
            .compare_exchange_weak(s, e, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      break;
    }
  }

  // Payloads (and what does not depend on the seq) before the commit turn.
  std::uint64_t p = s;
  for (std::size_t i = 0; i < count; ++i) {
    const auto payload = recs[i];
    std::uint64_t pad = 0;
    const std::uint64_t next = place(p, payload.size(), pad);
    const std::uint64_t r = p + pad;
    std::uint64_t* rw = word_at(data_, mask, r);
    switch (layout_) {
      case RingLayout::records:
        if (pad != 0) {
          at(*word_at(data_, mask, p))
              .store(header_word(static_cast<std::uint32_t>(pad), kKindPad),
                     std::memory_order_release);
        }
        if (policy() != ReaderPolicy::tail_drop) {
          // fast_reader: I6. medium_reader: a reader may still load a stale
          // header word here (its claim CAS then fails), so these stores must
          // be atomic too.
          store_words(rw + 2, payload);
        } else if (!payload.empty()) {
          std::memcpy(rw + 2, payload.data(), payload.size());
        }
        break;
      case RingLayout::fixed_slots:
        if (policy() != ReaderPolicy::tail_drop) {
          store_words(rw + 1, payload);
        } else if (!payload.empty()) {
          std::memcpy(rw + 1, payload.data(), payload.size());
        }
        // The seq is the slot number: the header is complete already.
        at(rw[0]).store(header_word(static_cast<std::uint32_t>(payload.size()), kind),
                        std::memory_order_release);
        break;
      case RingLayout::oob_records:
        // Readers find payloads through the header entries only, and do not
        // look before the claim (medium_reader): only fast_reader needs I6.
        if (fast) {
          store_words(rw, payload);
        } else if (!payload.empty()) {
          std::memcpy(rw, payload.data(), payload.size());
        }
        break;
      case RingLayout::byte_stream: {
        // Wraps at the end of the area (tail_drop only: plain copies).
        const std::size_t off = static_cast<std::size_t>(p & mask);
        const std::size_t first = std::min(payload.size(), capacity_ - off);
        if (first != 0) std::memcpy(data_ + off, payload.data(), first);
        if (first < payload.size()) {
          std::memcpy(data_, payload.data() + first, payload.size() - first);
        }
        break;
      }
    }
    p = next;
  }

  // I4: commit in reservation order (I10: a sole writer's turn is always now,
  // and it keeps the seq itself).
  std::uint64_t seq0 = next_seq_;
  if (!single_writer_) {
    spins = 0;
    while (at(hdr_->write_idx).load(std::memory_order_acquire) != s) {
      if (++spins % 64 == 0) std::this_thread::yield();
      cpu_relax();
    }
    seq0 = at(hdr_->next_seq).load(std::memory_order_relaxed);
  }
  const std::uint64_t seq_end = seq0 + count;
  if (layout_ == RingLayout::records) {
    p = s;
    for (std::size_t i = 0; i < count; ++i) {
      std::uint64_t pad = 0;
      const std::uint64_t next = place(p, recs[i].size(), pad);
      std::uint64_t* rw = word_at(data_, mask, p + pad);
      at(rw[1]).store(seq0 + i, std::memory_order_release);  // I6
      at(rw[0]).store(header_word(static_cast<std::uint32_t>(recs[i].size()), kind),
                      std::memory_order_release);
      p = next;
    }
  }
  at(hdr_->next_seq).store(seq_end, std::memory_order_relaxed);
  if (single_writer_) next_seq_ = seq_end;
  if (layout_ == RingLayout::oob_records) {
    // I8: next_seq first (fast_reader validation), then the entries.
    p = s;
    for (std::size_t i = 0; i < count; ++i) {
      std::uint64_t pad = 0;
      const std::uint64_t next = place(p, recs[i].size(), pad);
      std::uint64_t* en = ent_ + ((seq0 + i) & (entries_ - 1)) * 4;
      const RecordMeta meta = metas != nullptr ? metas[i] : RecordMeta{};
      at(en[0]).store(p, std::memory_order_release);
      at(en[1]).store(header_word(static_cast<std::uint32_t>(recs[i].size()), kind),
                      std::memory_order_release);
      at(en[2]).store(meta.timestamp, std::memory_order_release);
      at(en[3]).store(header_word(meta.cls, meta.flow), std::memory_order_release);
      p = next;
    }
    at(hdr_->records).store(seq_end, std::memory_order_release);
  } else {
    at(hdr_->records).store(seq_end, std::memory_order_relaxed);
  }
  at(hdr_->write_idx).store(e, std::memory_order_release);
  notify(hdr_->symmetric_wakeups, hdr_->data_seq, hdr_->data_waiters);
  if (end != nullptr) *end = e;
  return count;
}

bool DBuf::try_splice(const DBuf& source, const RecordView& view) {
  return splice(source, view, std::chrono::nanoseconds::zero());
}

bool DBuf::splice(const DBuf& source, const RecordView& view, std::chrono::nanoseconds timeout) {
  if (layout_ == RingLayout::byte_stream || source.layout() == RingLayout::byte_stream ||
      policy() == ReaderPolicy::fast_reader) {
    throw std::invalid_argument(
        "ring splice: no byte_stream ring, and the destination must not be fast_reader");
  }
  if (max_payload() < kRefBytes) throw std::invalid_argument("ring splice: slots too small");
  std::byte buf[kRefBytes];
  encode_ref(buf, {source.id(), view.index, static_cast<std::uint32_t>(view.data.size())});
  const std::span<const std::byte> payload(buf, kRefBytes);
  const bool wait = timeout > std::chrono::nanoseconds::zero();
  const auto deadline =
      wait ? std::chrono::steady_clock::now() + timeout : std::chrono::steady_clock::time_point{};
  return write_many(&payload, 1, nullptr, kKindRef, wait, deadline) == 1;
}

DBuf::Reader DBuf::open_reader() {
  for (std::uint32_t i = 0; i < hdr_->max_readers; ++i) {
    ReaderSlot& s = hdr_->slots[i];
    std::uint32_t expected = 0;
    if (!at(s.active).compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    const std::uint64_t w = at(hdr_->write_idx).load(std::memory_order_acquire);
    // oob_records: `records` is stored before write_idx (I8), so the entries
    // from here on have their data at or after w.
    const std::uint64_t pos =
        layout_ == RingLayout::oob_records ? at(hdr_->records).load(std::memory_order_acquire) : w;
    at(s.read_idx).store(w, std::memory_order_release);
    at(s.active).store(2, std::memory_order_release);
    return Reader(this, i, pos, std::numeric_limits<std::uint64_t>::max());
  }
  throw std::runtime_error("ring: every reader slot is taken");
}

RecordView DBuf::resolve(std::uint64_t index, std::uint32_t length) const {
  if (length > max_payload()) throw std::length_error("ring: bad record length");
  const std::uint64_t mask = capacity_ - 1;
  std::uint64_t pad = 0;
  const std::uint64_t end = place(index, length, pad);
  std::uint64_t at_index = index;
  switch (layout_) {
    case RingLayout::records:
      at_index = index + kRecordHeader;
      break;
    case RingLayout::fixed_slots:
      at_index = index + kSlotHeader;
      break;
    case RingLayout::oob_records:
      at_index = index + pad;
      break;
    case RingLayout::byte_stream:
      if ((index & mask) + length > capacity_) {
        throw std::invalid_argument("ring: byte range wraps around the area");
      }
      break;
  }
  const std::byte* p = data_ + (at_index & mask);
  // A records index is the header's, after any pad: no pad to add.
  const std::uint64_t rec_end =
      layout_ == RingLayout::records ? index + align_record(kRecordHeader + length) : end;
  return RecordView{index, rec_end, 0, {p, length}};
}

// ---------------------------------------------------------------- Pin

DBuf::Pin DBuf::pin(std::uint64_t index) {
  if (policy() == ReaderPolicy::fast_reader) {
    throw std::invalid_argument("ring pin: a fast_reader ring's writer never waits");
  }
  for (std::uint32_t i = 0; i < kMaxPins; ++i) {
    std::uint64_t expected = 0;
    if (at(hdr_->pins[i]).compare_exchange_strong(expected, index + 1, std::memory_order_acq_rel)) {
      return Pin(this, i, index);
    }
  }
  throw std::runtime_error("ring: every pin is taken");
}

DBuf::Pin::Pin(Pin&& other) noexcept
    : ring_(std::exchange(other.ring_, nullptr)), slot_(other.slot_), index_(other.index_) {}

DBuf::Pin& DBuf::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    release();
    ring_ = std::exchange(other.ring_, nullptr);
    slot_ = other.slot_;
    index_ = other.index_;
  }
  return *this;
}

void DBuf::Pin::advance(std::uint64_t index) {
  if (ring_ == nullptr || index <= index_) return;
  index_ = index;
  RingHeader* h = ring_->hdr_;
  at(h->pins[slot_]).store(index + 1, std::memory_order_release);
  notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
}

void DBuf::Pin::release() {
  if (ring_ == nullptr) return;
  RingHeader* h = ring_->hdr_;
  at(h->pins[slot_]).store(0, std::memory_order_release);
  notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
  ring_ = nullptr;
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
      seen_w_(other.seen_w_),
      batch_from_(other.batch_from_),
      batch_end_(other.batch_end_),
      sources_(std::move(other.sources_)) {}

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
  // A writer may wait for this reader.
  notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
}

void DBuf::Reader::add_source(const DBuf& source) {
  sources_.push_back(&source);
}

void DBuf::Reader::account(std::uint64_t seq) {
  if (next_seq_ != std::numeric_limits<std::uint64_t>::max()) {
    if (seq < next_seq_) return;  // peeked before
    lost_ += seq - next_seq_;
  }
  next_seq_ = seq + 1;
}

void DBuf::Reader::skip_forward() {
  RingHeader* h = ring_->hdr_;
  pos_ = at(ring_->layout_ == RingLayout::oob_records ? h->records : h->write_idx)
             .load(std::memory_order_acquire);
}

// A reference record: point the view at the source's bytes if known.
void DBuf::Reader::finish(RecordView& v, std::uint32_t kind) const {
  if (kind != kKindRef || v.data.size() < kRefBytes) return;
  v.ref = decode_ref(v.data.data());
  v.data = {};
  for (const DBuf* src : sources_) {
    if (src->id() == v.ref.ring) {
      v.data = src->resolve(v.ref).data;
      break;
    }
  }
}

// records / fixed_slots: the record at p. Returns false for a pad (next is
// past it). Header words are loaded with `order`; the bounds of a garbage
// header (fast_reader, medium_reader) are the caller's check.
bool DBuf::Reader::decode(std::uint64_t p, RecordView& v, std::uint64_t& next,
                          std::memory_order order, std::uint32_t& kind) {
  const DBuf& r = *ring_;
  std::uint64_t* rw = word_at(r.data_, r.capacity_ - 1, p);
  const std::uint64_t w0 = at(rw[0]).load(order);
  const auto len = static_cast<std::uint32_t>(w0);
  kind = static_cast<std::uint32_t>(w0 >> 32);
  if (r.layout_ == RingLayout::fixed_slots) {
    next = p + r.slot_;
    const auto n = std::min<std::size_t>(len, r.slot_ - kSlotHeader);
    v = RecordView{p, next, p >> r.slot_shift_, {reinterpret_cast<const std::byte*>(rw + 1), n}};
    return true;
  }
  if (kind == kKindPad) {
    next = p + len;
    return false;
  }
  const std::uint64_t seq = at(rw[1]).load(order);
  next = p + align_record(kRecordHeader + len);
  v = RecordView{p, next, seq, {reinterpret_cast<const std::byte*>(rw + 2), len}};
  return true;
}

// oob_records: the record of header entry n.
std::uint32_t DBuf::Reader::decode_entry(std::uint64_t n, RecordView& v, std::memory_order order) {
  const DBuf& r = *ring_;
  std::uint64_t* en = r.ent_ + (n & (r.entries_ - 1)) * 4;
  const std::uint64_t start = at(en[0]).load(order);
  const std::uint64_t w1 = at(en[1]).load(order);
  const std::uint64_t ts = at(en[2]).load(order);
  const std::uint64_t w3 = at(en[3]).load(order);
  const auto len = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(static_cast<std::uint32_t>(w1), r.capacity_ / 2));
  std::uint64_t pad = 0;
  const std::uint64_t end = r.place(start, len, pad);
  const std::byte* p = r.data_ + ((start + pad) & (r.capacity_ - 1));
  v = RecordView{start, end, n, {p, len}};
  v.meta = {static_cast<std::uint32_t>(w3), static_cast<std::uint32_t>(w3 >> 32), ts};
  return static_cast<std::uint32_t>(w1 >> 32);
}

std::optional<RecordView> DBuf::Reader::try_peek() {
  RecordView v;
  if (try_peek_batch(std::span(&v, 1)) == 0) return std::nullopt;
  return v;
}

std::optional<RecordView> DBuf::Reader::peek_own() {
  RecordView v;
  if (batch_own(&v, 1) == 0) return std::nullopt;
  return v;
}

std::optional<RecordView> DBuf::Reader::peek_fast() {
  RecordView v;
  if (batch_fast(&v, 1) == 0) return std::nullopt;
  return v;
}

std::optional<RecordView> DBuf::Reader::peek_shared() {
  RecordView v;
  if (batch_shared(&v, 1) == 0) return std::nullopt;
  return v;
}

std::size_t DBuf::Reader::try_peek_batch(std::span<RecordView> out) {
  if (out.empty()) return 0;
  switch (ring_->policy()) {
    case ReaderPolicy::fast_reader:
      return batch_fast(out.data(), out.size());
    case ReaderPolicy::medium_reader:
      return batch_shared(out.data(), out.size());
    case ReaderPolicy::tail_drop:
      break;
  }
  return batch_own(out.data(), out.size());
}

std::size_t DBuf::Reader::batch_own(RecordView* out, std::size_t max) {
  RingHeader* h = ring_->hdr_;
  const DBuf& r = *ring_;
  const std::uint64_t mask = r.capacity_ - 1;
  switch (r.layout_) {
    case RingLayout::byte_stream: {
      if (pos_ == seen_w_) seen_w_ = at(h->write_idx).load(std::memory_order_acquire);  // I4
      if (pos_ == seen_w_) return 0;
      const std::uint64_t off = pos_ & mask;
      const std::uint64_t n = std::min(seen_w_ - pos_, r.capacity_ - off);
      out[0] = RecordView{pos_, pos_ + n, pos_, {r.data_ + off, static_cast<std::size_t>(n)}};
      return 1;
    }
    case RingLayout::oob_records: {
      if (pos_ + max > seen_w_) seen_w_ = at(h->records).load(std::memory_order_acquire);  // I8
      std::size_t k = 0;
      for (std::uint64_t n = pos_; n != seen_w_ && k < max; ++n, ++k) {
        finish(out[k], decode_entry(n, out[k], std::memory_order_relaxed));
      }
      return k;
    }
    case RingLayout::records:
    case RingLayout::fixed_slots:
      break;
  }
  std::uint64_t p = pos_;
  std::size_t k = 0;
  while (k < max) {
    if (p == seen_w_) {
      if (k != 0) break;  // a batch is what was there at the first load
      seen_w_ = at(h->write_idx).load(std::memory_order_acquire);  // I4
      if (p == seen_w_) break;
    }
    std::uint64_t next = 0;
    std::uint32_t kind = 0;
    if (!decode(p, out[k], next, std::memory_order_relaxed, kind)) {
      p = next;
      if (k == 0) {  // a pad ahead of everything: release it at once
        pos_ = p;
        at(h->slots[slot_].read_idx).store(pos_, std::memory_order_release);  // I5
      }
      continue;
    }
    finish(out[k], kind);
    p = next;
    ++k;
  }
  return k;
}

std::size_t DBuf::Reader::batch_fast(RecordView* out, std::size_t max) {
  RingHeader* h = ring_->hdr_;
  const DBuf& r = *ring_;
  const std::uint64_t cap = r.capacity_;
  if (r.layout_ == RingLayout::oob_records) {
    for (;;) {
      const std::uint64_t w = at(h->records).load(std::memory_order_acquire);  // I8
      std::size_t k = 0;
      for (std::uint64_t n = pos_; n != w && k < max; ++n) {
        decode_entry(n, out[k], std::memory_order_acquire);
        if (at(h->next_seq).load(std::memory_order_acquire) > n + r.entries_) break;
        if (at(h->reserve).load(std::memory_order_acquire) > out[k].index + cap) break;
        account(n);
        ++k;
      }
      if (k != 0 || pos_ == w) return k;
      skip_forward();  // overtaken: the entry may be garbage
    }
  }
  for (;;) {
    const std::uint64_t w = at(h->write_idx).load(std::memory_order_acquire);
    std::uint64_t p = pos_;
    std::size_t k = 0;
    bool overtaken = false;
    while (p != w && k < max) {
      std::uint64_t next = 0;
      std::uint32_t kind = 0;
      const bool data = decode(p, out[k], next, std::memory_order_acquire, kind);  // I6
      if (at(h->reserve).load(std::memory_order_acquire) > p + cap) {
        overtaken = true;  // the header may be garbage
        break;
      }
      if (!data) {
        if (k == 0) pos_ = next;
        p = next;
        continue;
      }
      account(out[k].seq);
      p = next;
      ++k;
    }
    if (k != 0) return k;
    if (!overtaken) return 0;
    skip_forward();
  }
}

std::size_t DBuf::Reader::batch_shared(RecordView* out, std::size_t max) {
  RingHeader* h = ring_->hdr_;
  const DBuf& r = *ring_;
  const bool oob = r.layout_ == RingLayout::oob_records;
  std::uint32_t kinds[64];
  max = std::min<std::size_t>(max, 64);
  for (;;) {
    std::uint64_t c = at(h->claim).load(std::memory_order_acquire);
    const std::uint64_t w = at(oob ? h->records : h->write_idx).load(std::memory_order_acquire);
    if (c == w) return 0;
    // Headers may be stale if another reader takes c first (then the CAS
    // fails); atomic loads keep that harmless.
    std::size_t k = 0;
    std::uint64_t p = c;
    std::uint64_t pad_end = 0;  // a pad alone at c
    while (p != w && k < max) {
      if (oob) {
        kinds[k] = decode_entry(p, out[k], std::memory_order_relaxed);
        ++p;
        ++k;
        continue;
      }
      std::uint64_t next = 0;
      if (!decode(p, out[k], next, std::memory_order_relaxed, kinds[k])) {
        // A pad: claimed alone when first (and released at once), else
        // inside the batch when a record follows it.
        if (k == 0) {
          pad_end = next;
          p = next;
          break;
        }
        if (next == w || next - c > r.capacity_) break;
        p = next;
        continue;
      }
      if (next - c > r.capacity_) break;  // stale garbage: the CAS will fail
      p = next;
      ++k;
    }
    if (k == 0 && pad_end == 0) continue;
    if (!at(h->claim).compare_exchange_weak(c, p, std::memory_order_acq_rel,
                                            std::memory_order_relaxed)) {
      continue;
    }
    if (pad_end != 0) {
      // Release in index order (I5), then look again.
      complete(RecordView{c, pad_end, 0, {}});
      continue;
    }
    batch_from_ = oob ? out[0].index : c;
    batch_end_ = oob ? out[k - 1].end : p;
    for (std::size_t i = 0; i < k; ++i)
      finish(out[i], kinds[i]);
    return k;
  }
}

bool DBuf::Reader::valid(const RecordView& view) const {
  if (ring_->policy() != ReaderPolicy::fast_reader) return true;
  load_fence();  // I6: the caller's plain loads of the view come first
  return at(ring_->hdr_->reserve).load(std::memory_order_acquire) <= view.index + ring_->capacity_;
}

void DBuf::Reader::complete(const RecordView& view) {
  RingHeader* h = ring_->hdr_;
  const bool oob = ring_->layout_ == RingLayout::oob_records;
  switch (ring_->policy()) {
    case ReaderPolicy::tail_drop:
      pos_ = oob ? view.seq + 1 : view.end;
      at(h->slots[slot_].read_idx).store(view.end, std::memory_order_release);  // I5
      notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
      break;
    case ReaderPolicy::fast_reader:
      if (oob ? view.seq >= pos_ : view.index >= pos_) {
        pos_ = oob ? view.seq + 1 : view.end;
        account(view.seq);
        at(h->slots[slot_].read_idx).store(view.end, std::memory_order_relaxed);
      }
      break;
    case ReaderPolicy::medium_reader: {
      // Within the own claim (a batch), release from its first unreleased
      // record: pads inside it go with the record after them.
      std::uint64_t from = view.index;
      if (batch_end_ != 0 && view.index >= batch_from_ && view.end <= batch_end_) {
        from = batch_from_;
        batch_from_ = view.end;
      }
      // Release in index order (I5): wait for the readers of earlier records.
      int spins = 0;
      while (at(h->done).load(std::memory_order_acquire) != from) {
        if (++spins % 64 == 0) std::this_thread::yield();
        cpu_relax();
      }
      at(h->done).store(view.end, std::memory_order_release);
      notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
      break;
    }
  }
}

std::optional<std::size_t> DBuf::Reader::read_stream(std::span<std::byte> out) {
  RingHeader* h = ring_->hdr_;
  const DBuf& r = *ring_;
  if (pos_ == seen_w_) seen_w_ = at(h->write_idx).load(std::memory_order_acquire);  // I4
  if (pos_ == seen_w_ || out.empty()) return std::nullopt;
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(seen_w_ - pos_, out.size()));
  const std::size_t off = static_cast<std::size_t>(pos_ & (r.capacity_ - 1));
  const std::size_t first = std::min(n, r.capacity_ - off);
  std::memcpy(out.data(), r.data_ + off, first);
  if (first < n) std::memcpy(out.data() + first, r.data_, n - first);
  pos_ += n;
  at(h->slots[slot_].read_idx).store(pos_, std::memory_order_release);  // I5
  notify(h->symmetric_wakeups, h->space_seq, h->space_waiters);
  return n;
}

std::optional<std::size_t> DBuf::Reader::try_read(std::span<std::byte> out) {
  if (ring_->layout_ == RingLayout::byte_stream) return read_stream(out);
  if (ring_->policy() != ReaderPolicy::fast_reader) {
    auto v = try_peek();
    if (!v) return std::nullopt;
    if (v->ref.ring != 0 && v->data.empty() && v->ref.length != 0) {
      complete(*v);
      throw std::runtime_error("ring: reference to a ring not added with add_source()");
    }
    if (out.size() < v->data.size()) throw std::length_error("ring: read buffer too small");
    if (!v->data.empty()) std::memcpy(out.data(), v->data.data(), v->data.size());
    complete(*v);
    return v->data.size();
  }
  for (;;) {
    const std::uint64_t expected = next_seq_;
    auto v = peek_fast();
    if (!v) return std::nullopt;
    if (out.size() < v->data.size()) throw std::length_error("ring: read buffer too small");
    // The view's pointer is into the ring: copy with atomic word loads (I6).
    auto* src = const_cast<std::uint64_t*>(reinterpret_cast<const std::uint64_t*>(v->data.data()));
    load_words(out.first(v->data.size()), src);
    if (!valid(*v)) {
      // Lost after all: count it with the next record taken.
      if (expected != std::numeric_limits<std::uint64_t>::max() && v->seq >= expected) {
        lost_ -= v->seq - expected;
      }
      next_seq_ = expected == std::numeric_limits<std::uint64_t>::max() ? v->seq : expected;
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
  const bool oob = ring_->layout_ == RingLayout::oob_records;
  auto ready = [&] {
    const std::uint64_t w = at(oob ? h->records : h->write_idx).load(std::memory_order_acquire);
    const std::uint64_t r = shared ? at(h->claim).load(std::memory_order_acquire) : pos_;
    return w != r || at(h->closed).load(std::memory_order_acquire) != 0;
  };
  // Spin with a growing pause between looks (up to 64 pauses, ~2-3 µs):
  // every look pulls the writer's index line over, and a reader that looks
  // as fast as it can makes each of the writer's commits wait for the line.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (ready()) return true;
    for (int k = 0, n = 1 << std::min(i, 6); k < n; ++k)
      cpu_relax();
    if (i % 16 == 15 && std::chrono::steady_clock::now() - start > kSpinTime) break;
  }
  wait_on(h->symmetric_wakeups, h->data_seq, h->data_waiters, ready, deadline);
  return ready();
}

// The waiting calls try once before they read the clock: a reader that
// keeps up finds a record at once, and the clock would cost it as much as
// the record.
std::optional<RecordView> DBuf::Reader::peek(std::chrono::nanoseconds timeout) {
  if (auto v = try_peek()) return v;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool was_closed = ring_->closed();
    if (auto v = try_peek()) return v;
    if (was_closed || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    wait_for_data(deadline);
  }
}

std::size_t DBuf::Reader::peek_batch(std::span<RecordView> out, std::chrono::nanoseconds timeout) {
  if (const std::size_t k = try_peek_batch(out); k != 0) return k;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool was_closed = ring_->closed();
    if (const std::size_t k = try_peek_batch(out); k != 0) return k;
    if (was_closed || std::chrono::steady_clock::now() >= deadline) return 0;
    wait_for_data(deadline);
  }
}

std::optional<std::size_t> DBuf::Reader::read(std::span<std::byte> out,
                                              std::chrono::nanoseconds timeout) {
  if (auto n = try_read(out)) return n;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool was_closed = ring_->closed();
    if (auto n = try_read(out)) return n;
    if (was_closed || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    wait_for_data(deadline);
  }
}

// ---------------------------------------------------------------- Splicer

Splicer::Splicer(DBuf& source, DBuf& dest) : source_(&source), dest_(&dest) {
  if (source.layout() == RingLayout::byte_stream || dest.layout() == RingLayout::byte_stream ||
      source.policy() == ReaderPolicy::fast_reader || dest.policy() == ReaderPolicy::fast_reader) {
    throw std::invalid_argument(
        "ring splicer: no byte_stream ring and no fast_reader ring on either side");
  }
}

void Splicer::reclaim() {
  if (head_ == refs_.size()) return;
  const std::uint64_t released = dest_->released_index();
  while (head_ < refs_.size() && refs_[head_].dest_end <= released)
    ++head_;
  if (head_ == refs_.size()) {
    refs_.clear();
    head_ = 0;
    if (pin_) pin_->release();
    pin_.reset();
    return;
  }
  if (head_ > 1024 && head_ * 2 > refs_.size()) {
    refs_.erase(refs_.begin(), refs_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  pin_->advance(refs_[head_].source_index);
}

bool Splicer::try_splice(const RecordView& view) {
  return splice(view, std::chrono::nanoseconds::zero());
}

bool Splicer::splice(const RecordView& view, std::chrono::nanoseconds timeout) {
  reclaim();
  // Pin first (the view is still held by the caller's reader, so the record
  // is intact and the pin is below every limit a writer may have cached).
  if (!pin_) pin_.emplace(source_->pin(view.index));
  std::byte buf[kRefBytes];
  encode_ref(buf, {source_->id(), view.index, static_cast<std::uint32_t>(view.data.size())});
  const std::span<const std::byte> payload(buf, kRefBytes);
  const bool wait = timeout > std::chrono::nanoseconds::zero();
  const auto deadline = wait ? (timeout == std::chrono::nanoseconds::max()
                                    ? std::chrono::steady_clock::time_point::max()
                                    : std::chrono::steady_clock::now() + timeout)
                             : std::chrono::steady_clock::time_point{};
  std::uint64_t end = 0;
  if (dest_->write_many(&payload, 1, nullptr, kKindRef, wait, deadline, &end) != 1) {
    reclaim();
    return false;
  }
  refs_.push_back({end, view.index});
  return true;
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
