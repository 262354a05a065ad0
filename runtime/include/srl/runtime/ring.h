// Buffer plane: shared-memory rings with absolute indices.
//
// A DBuf is a data ring of variable records with an in-band length, in a
// memfd mapped with MAP_SHARED: one process creates it, others attach it
// from the fd (inherited over fork or passed over a Unix socket). The
// mapping is a header page (indices, reader slots, wait words) followed by a
// data area of a power-of-two capacity. Every index is an absolute,
// monotonically increasing u64 byte offset; its position in the data area is
// `index & (capacity - 1)`. Records are 16-byte aligned and never wrap: when a
// record does not fit before the end of the area, the writer puts a pad
// record there and starts the record at the beginning.
//
// Record layout (16-byte aligned):  u32 length | u32 kind | u64 seq | payload
// A pad record is a header (length = bytes to the end, kind = pad) with no
// payload; seq numbers data records 0, 1, 2, ... in index order.
//
// Reader policies (fixed at creation):
//  - tail_drop: lossless, pipe semantics. Each registered reader has its own
//    read index; the writer waits (bounded spin, then futex) until the
//    slowest registered reader has released the space it needs (once the
//    ring was full: an eighth of the ring, so it does not poll per record).
//    With no registered reader the writer does not wait.
//  - fast_reader: the writer never waits (except for other writers' commits).
//    A reader overtaken by the writer notices it from the absolute indices,
//    skips forward to the write index (the end of what is committed: it drops
//    whatever the ring still held) and counts the records it lost from the
//    seq of the next record it takes. peek() hands out a view
//    into the ring; valid(view) says, after the data was used, whether it was
//    overwritten meanwhile (a cheap index comparison, seqlock style).
//  - medium_reader: the registered readers share one read index; every record
//    goes to exactly one of them (work sharing). Completion is in index
//    order, so a reader holding a view delays the release of later records.
//
// Several writers (threads or processes) may write concurrently: each
// reserves its span with a CAS, copies, then commits in reservation order.
//
// IBuf is a private (not shared) ring of (DBuf index, length, class) entries:
// forwarding a block to the next filter passes an entry, not a copy, and
// splice() turns a view of a record that already lies in a DBuf into such an
// entry.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace srl::runtime {

enum class ReaderPolicy : std::uint32_t { tail_drop = 1, fast_reader = 2, medium_reader = 3 };

struct RingOptions {
  std::size_t capacity = std::size_t{1} << 20;  // data bytes; a power of two, >= 4096
  ReaderPolicy policy = ReaderPolicy::tail_drop;
  std::uint32_t max_readers = 8;  // reader slots, at most DBuf::kMaxReaders
};

// A record in the ring: its absolute index (of the record header), its
// sequence number, and its payload, which points into the shared mapping.
struct RecordView {
  std::uint64_t index = 0;  // absolute index of the record header
  std::uint64_t end = 0;    // absolute index just past the record
  std::uint64_t seq = 0;    // record number
  std::span<const std::byte> data;
};

struct RingHeader;  // in the shared mapping, defined in ring.cpp

class DBuf {
 public:
  static constexpr std::uint32_t kMaxReaders = 32;
  static constexpr std::size_t kRecordHeader = 16;

  // Creates a new ring in a fresh memfd. Throws std::system_error or
  // std::invalid_argument.
  static DBuf create(const RingOptions& options);
  // Maps the ring behind `fd` (which the DBuf dup()s; the caller keeps its
  // own fd). Checks the header's magic and sizes.
  static DBuf attach(int fd);
  // Sends the ring's fd over a connected Unix socket (SCM_RIGHTS), and the
  // other side: receives such an fd and attaches the ring (closing the
  // received fd once mapped). Throw std::system_error.
  void send_fd(int unix_socket) const;
  static DBuf receive(int unix_socket);

  DBuf(DBuf&& other) noexcept;
  DBuf& operator=(DBuf&& other) noexcept;
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  ~DBuf();

  int fd() const { return fd_; }
  std::size_t capacity() const { return capacity_; }
  ReaderPolicy policy() const;
  // Largest payload one record may carry (capacity / 2 minus the header).
  std::size_t max_payload() const { return capacity_ / 2 - kRecordHeader; }

  // Appends one record. try_write returns false instead of waiting when a
  // tail_drop ring has no room (and, with medium_reader, when the readers
  // have not released the space). write() waits; with a timeout it returns
  // false when the time ran out. Both throw std::length_error when the
  // payload exceeds max_payload().
  bool try_write(std::span<const std::byte> payload);
  void write(std::span<const std::byte> payload);
  bool write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout);

  // Marks the stream ended: blocked readers wake up and read() returns
  // nullopt once the ring is empty. Shared by all writers.
  void close();
  bool closed() const;

  std::uint64_t write_index() const;  // committed end (absolute)
  std::uint64_t records_written() const;

  class Reader;
  // Registers a reader in a free slot; it starts at the current write index.
  // Throws std::runtime_error when every slot is taken.
  Reader open_reader();

  // A view of the record at `index` (as kept in an IBuf entry); no checks
  // beyond bounds: the caller must still hold the record (not completed it).
  RecordView resolve(std::uint64_t index, std::uint32_t length) const;

 private:
  DBuf(int fd, void* base, std::size_t capacity);
  bool write_impl(std::span<const std::byte> payload, bool wait,
                  std::chrono::steady_clock::time_point deadline);
  std::uint64_t space_limit() const;  // the writer may reserve up to here

  int fd_ = -1;
  void* base_ = nullptr;
  std::size_t capacity_ = 0;
  RingHeader* hdr_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t limit_cache_ = 0;  // last space_limit() seen (atomic_ref)
};

class DBuf::Reader {
 public:
  Reader(Reader&& other) noexcept;
  Reader& operator=(Reader&& other) noexcept;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  ~Reader();  // releases the slot (and, for tail_drop, no longer holds the writer)

  // Zero-copy: the next record, or nullopt when the ring is empty. The view
  // stays usable until complete(view); with fast_reader check valid(view)
  // after using the data. With medium_reader the record is taken from the
  // other readers and must be completed.
  std::optional<RecordView> try_peek();
  // Waits up to `timeout` for a record; nullopt on timeout or when the ring
  // is closed and empty.
  std::optional<RecordView> peek(std::chrono::nanoseconds timeout);
  // fast_reader: true if the view's bytes were not overwritten (so far).
  // Other policies: always true.
  bool valid(const RecordView& view) const;
  // Releases the record (and everything before it, for this reader).
  void complete(const RecordView& view);

  // Copying: the next record's payload into `out` (which must hold
  // max_payload() bytes, or at least the record); returns its length.
  // fast_reader copies with atomic word loads and retries when the record was
  // overwritten during the copy.
  std::optional<std::size_t> try_read(std::span<std::byte> out);
  std::optional<std::size_t> read(std::span<std::byte> out, std::chrono::nanoseconds timeout);

  std::uint64_t lost() const { return lost_; }  // fast_reader: records skipped
  std::uint64_t position() const { return pos_; }
  std::uint32_t slot() const { return slot_; }

 private:
  friend class DBuf;
  Reader(DBuf* ring, std::uint32_t slot, std::uint64_t pos, std::uint64_t seq);
  bool wait_for_data(std::chrono::steady_clock::time_point deadline);
  std::optional<RecordView> peek_fast();
  std::optional<RecordView> peek_own();
  std::optional<RecordView> peek_shared();
  void skip_forward();
  void account(std::uint64_t seq);

  DBuf* ring_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint64_t pos_ = 0;       // next index to read (own index)
  std::uint64_t next_seq_ = 0;  // fast_reader: expected seq, for loss counting
  std::uint64_t lost_ = 0;
  std::uint64_t seen_w_ = 0;  // tail_drop: last write index loaded
};

// A private ring of references to records in a DBuf.
struct IBufEntry {
  std::uint64_t index = 0;   // absolute DBuf index of the record
  std::uint32_t length = 0;  // payload length
  std::uint32_t cls = 0;     // class (output port) chosen by the filter
};

class IBuf {
 public:
  explicit IBuf(std::size_t capacity);  // entries, rounded up to a power of two

  bool push(const IBufEntry& entry);  // false when full
  // Write splicing: an entry for a record that already lies in a DBuf.
  bool splice(const RecordView& view, std::uint32_t cls = 0) {
    return push({view.index, static_cast<std::uint32_t>(view.data.size()), cls});
  }
  std::optional<IBufEntry> pop();
  const IBufEntry* front() const;
  std::size_t size() const { return static_cast<std::size_t>(tail_ - head_); }
  std::size_t capacity() const { return entries_.size(); }
  bool empty() const { return tail_ == head_; }
  std::uint64_t head() const { return head_; }  // absolute index of the oldest entry
  std::uint64_t tail() const { return tail_; }  // absolute index of the next entry

 private:
  std::vector<IBufEntry> entries_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;
};

}  // namespace srl::runtime
