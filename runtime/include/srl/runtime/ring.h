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
// Writers: several (threads or processes) may write concurrently: each
// reserves its span with a CAS, copies, then commits in reservation order.
// A ring created with single_writer has one writing handle, which reserves
// with a plain store: a locked instruction per record would wait for the
// previous record's cache lines to reach the reader, and one record at a
// time that is most of the cost. Wake-ups need no fence on the writer's or
// the reader's fast path either (asymmetric barriers: membarrier(2) on the
// side that goes to sleep).
//
// IBuf is a private (not shared) ring of (DBuf index, length, class) entries:
// forwarding a block to the next filter passes an entry, not a copy, and
// splice() turns a view of a record that already lies in a DBuf into such an
// entry.
//
// Layouts (fixed at creation, RingOptions::layout):
//  - records: the one above (variable records, in-band 16-byte header).
//  - fixed_slots: every record takes one slot of RingOptions::slot_size
//    bytes (a power of two); an 8-byte slot header holds the length and kind,
//    the seq is the slot number (index / slot_size). No pad records, no
//    length arithmetic: the next record is always index + slot_size.
//  - byte_stream: no record boundaries, like a pipe. write() appends the
//    bytes (one write is contiguous in the stream even with several
//    writers), read() copies up to out.size() available bytes, peek() views
//    the available bytes up to the end of the area. Only with tail_drop:
//    an overtaken fast_reader could not find a boundary to resume at, and a
//    shared medium_reader index would split the stream at random points.
//  - oob_records: payloads in the data area (64-byte aligned, at least 64
//    bytes each, never wrapping) and one 32-byte header per record in a
//    separate array (capacity / 64 entries) after the data area: the record's
//    data index, length, kind and RecordMeta (class, flow, timestamp); the
//    seq is the header's number. Readers walk the headers and do not touch a
//    payload until they use it. RecordView::index is the record's data index
//    including any skipped tail of the area before it, so consecutive
//    records' [index, end) tile the data area as with `records`. Position()
//    counts headers (records), not bytes.
// Every layout works with every policy except byte_stream (tail_drop only);
// create() refuses the others with std::invalid_argument.
//
// Batching: write_batch() reserves and commits several records with one CAS,
// one index store and one wake-up check; peek_batch() hands out several
// views at once, and complete(last) releases them all (one index store, one
// wake-up check). Wake-ups are futex calls only when a waiter counter says
// that somebody sleeps, so the fast path makes no system call.
//
// DBuf-to-DBuf splicing: splice(source, view) writes a reference record
// (source ring id, index, length) instead of the bytes; a reader that knows
// the source ring (Reader::add_source) gets a view of the bytes in the source
// ring, others get RecordView::ref to resolve themselves. The source record
// must stay until the references are consumed: DBuf::Pin holds an index in a
// ring (the writer of a tail_drop or medium_reader ring does not overwrite
// from there on), and Splicer keeps the source pinned until every reader of
// the destination has released the references to it (it looks at each
// splice and at reclaim(): call that when idle). An IBuf that holds
// entries past complete() does the same with a Pin on its oldest entry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace srl::runtime {

enum class ReaderPolicy : std::uint32_t { tail_drop = 1, fast_reader = 2, medium_reader = 3 };

enum class RingLayout : std::uint32_t {
  records = 0,
  fixed_slots = 1,
  byte_stream = 2,
  oob_records = 3
};

struct RingOptions {
  std::size_t capacity = std::size_t{1} << 20;  // data bytes; a power of two, >= 4096
  ReaderPolicy policy = ReaderPolicy::tail_drop;
  std::uint32_t max_readers = 8;  // reader slots, at most DBuf::kMaxReaders
  RingLayout layout = RingLayout::records;
  // fixed_slots: bytes per slot, header included; a power of two, 16 to capacity / 2.
  std::size_t slot_size = 2048;
  // Only one handle writes, from one thread at a time (the first handle to
  // write takes the role; another's write throws std::logic_error until it
  // is destroyed). Spares every record a locked instruction: see "Writers".
  bool single_writer = false;
};

// Per-record metadata kept in the header array of an oob_records ring
// (other layouts accept and ignore it; their views carry zeros).
struct RecordMeta {
  std::uint32_t cls = 0;
  std::uint32_t flow = 0;
  std::uint64_t timestamp = 0;
};

// A reference record written by splice(): the record lies in ring `ring`
// (DBuf::id()) at `index` (its RecordView::index there), `length` bytes.
struct RecordRef {
  std::uint64_t ring = 0;  // 0: not a reference
  std::uint64_t index = 0;
  std::uint32_t length = 0;
};

// A record in the ring: its absolute index (of the record header), its
// sequence number, and its payload, which points into the shared mapping.
struct RecordView {
  std::uint64_t index = 0;  // absolute index of the record header
  std::uint64_t end = 0;    // absolute index just past the record
  std::uint64_t seq = 0;    // record number
  std::span<const std::byte> data;
  RecordMeta meta{};  // oob_records: from the header array
  // A reference record: where the bytes lie. `data` views them when the
  // reader knows the source ring (Reader::add_source), else it is empty.
  RecordRef ref{};
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
  RingLayout layout() const { return layout_; }
  // Random, non-zero; names the ring in reference records.
  std::uint64_t id() const;
  std::size_t slot_size() const { return slot_; }  // fixed_slots; else 0
  // Largest payload one record may carry: records: capacity / 2 minus the
  // header; fixed_slots: slot_size - 8; oob_records: capacity / 2;
  // byte_stream: capacity (the most one write may append).
  std::size_t max_payload() const;

  // Appends one record. try_write returns false instead of waiting when a
  // tail_drop ring has no room (and, with medium_reader, when the readers
  // have not released the space). write() waits; with a timeout it returns
  // false when the time ran out. Both throw std::length_error when the
  // payload exceeds max_payload().
  bool try_write(std::span<const std::byte> payload);
  void write(std::span<const std::byte> payload);
  bool write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout);
  // The same with metadata for the header array (oob_records).
  bool try_write(std::span<const std::byte> payload, const RecordMeta& meta);
  void write(std::span<const std::byte> payload, const RecordMeta& meta);

  // Batches: as many records as fit go in with one reservation and one
  // commit. try_write_batch writes the longest prefix that fits now (it
  // returns its length, maybe 0); write_batch writes them all, waiting as
  // needed (several reservations if they do not fit at once); with a timeout
  // it returns how many it wrote. `metas` is empty or one per record.
  using Payloads = std::span<const std::span<const std::byte>>;
  std::size_t try_write_batch(Payloads records, std::span<const RecordMeta> metas = {});
  void write_batch(Payloads records, std::span<const RecordMeta> metas = {});
  std::size_t write_batch(Payloads records, std::span<const RecordMeta> metas,
                          std::chrono::nanoseconds timeout);

  // Splicing: a reference record to `view`, a record of `source` (another
  // ring mapped in this process), instead of a copy. The caller keeps the
  // source record alive (see Splicer and Pin). Throws std::invalid_argument
  // for a byte_stream ring on either side or a fast_reader destination.
  bool try_splice(const DBuf& source, const RecordView& view);
  bool splice(const DBuf& source, const RecordView& view, std::chrono::nanoseconds timeout);

  // Holds the ring's bytes from an index on: a writer of a tail_drop or
  // medium_reader ring does not reserve past pinned index + capacity. At
  // most kMaxPins at once per ring (shared by all processes); move-only,
  // released by release() or the destructor.
  static constexpr std::uint32_t kMaxPins = 32;
  class Pin;
  Pin pin(std::uint64_t index);

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
  RecordView resolve(const RecordRef& ref) const { return resolve(ref.index, ref.length); }

  // Released by every reader up to here (tail_drop: the slowest registered
  // reader, or the write index without readers; medium_reader: the shared
  // release index; fast_reader: the write index).
  std::uint64_t released_index() const;

 private:
  friend class Splicer;
  DBuf(int fd, void* base, std::size_t capacity);
  bool write_impl(std::span<const std::byte> payload, bool wait,
                  std::chrono::steady_clock::time_point deadline);
  // Writes a prefix of n records (all of them when waiting, unless the
  // deadline passes); returns how many, and the end index of the last in *end.
  std::size_t write_many(const std::span<const std::byte>* recs, std::size_t n,
                         const RecordMeta* metas, std::uint32_t kind, bool wait,
                         std::chrono::steady_clock::time_point deadline,
                         std::uint64_t* end = nullptr);
  std::uint64_t place(std::uint64_t s, std::size_t len, std::uint64_t& pad) const;
  std::uint64_t space_limit() const;  // the writer may reserve up to here
  void claim_writer();                // single_writer: this handle's first write

  int fd_ = -1;
  void* base_ = nullptr;
  std::size_t capacity_ = 0;
  RingHeader* hdr_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t limit_cache_ = 0;  // last space_limit() seen (atomic_ref)
  RingLayout layout_ = RingLayout::records;
  std::size_t slot_ = 0;          // fixed_slots: slot bytes
  std::uint32_t slot_shift_ = 0;  // log2(slot_)
  std::uint64_t entries_ = 0;     // oob_records: header entries (a power of two)
  std::uint64_t* ent_ = nullptr;  // oob_records: the header array, 4 words per entry
  bool single_writer_ = false;
  std::uint64_t writer_token_ = 0;  // single_writer: non-zero once this handle writes
  std::uint64_t next_seq_ = 0;      // single_writer: the seq of the next record
};

class DBuf::Pin {
 public:
  Pin(Pin&& other) noexcept;
  Pin& operator=(Pin&& other) noexcept;
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  ~Pin() { release(); }

  // Moves the pin forward (never back); wakes a writer waiting for space.
  void advance(std::uint64_t index);
  void release();
  bool held() const { return ring_ != nullptr; }
  std::uint64_t index() const { return index_; }

 private:
  friend class DBuf;
  Pin(DBuf* ring, std::uint32_t slot, std::uint64_t index)
      : ring_(ring), slot_(slot), index_(index) {}
  DBuf* ring_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint64_t index_ = 0;
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
  // After peek_batch, complete(last view) releases the whole batch (with
  // medium_reader too: the batch is one contiguous claim).
  void complete(const RecordView& view);

  // Up to out.size() next records, without waiting / waiting up to
  // `timeout` for the first; returns how many views it filled. Peeking again
  // before complete() returns the same records (tail_drop, fast_reader);
  // with medium_reader the records are claimed and must be completed (at
  // most 64 per call; complete a batch, in order or through its last view,
  // before claiming the next: completions are in index order).
  std::size_t try_peek_batch(std::span<RecordView> out);
  std::size_t peek_batch(std::span<RecordView> out, std::chrono::nanoseconds timeout);

  // Reference records that point into `source` resolve to views of its
  // bytes (the ring must outlive this reader).
  void add_source(const DBuf& source);

  // Copying: the next record's payload into `out` (which must hold
  // max_payload() bytes, or at least the record); returns its length.
  // fast_reader copies with atomic word loads and retries when the record was
  // overwritten during the copy. byte_stream: copies min(available,
  // out.size()) bytes (nullopt when none). A reference record copies the
  // source's bytes (std::runtime_error when the source was not added).
  std::optional<std::size_t> try_read(std::span<std::byte> out);
  std::optional<std::size_t> read(std::span<std::byte> out, std::chrono::nanoseconds timeout);

  std::uint64_t lost() const { return lost_; }     // fast_reader: records skipped
  std::uint64_t position() const { return pos_; }  // oob_records: a record number
  std::uint32_t slot() const { return slot_; }

 private:
  friend class DBuf;
  Reader(DBuf* ring, std::uint32_t slot, std::uint64_t pos, std::uint64_t seq);
  bool wait_for_data(std::chrono::steady_clock::time_point deadline);
  std::optional<RecordView> peek_fast();
  std::optional<RecordView> peek_own();
  std::optional<RecordView> peek_shared();
  std::size_t batch_own(RecordView* out, std::size_t max);
  std::size_t batch_fast(RecordView* out, std::size_t max);
  std::size_t batch_shared(RecordView* out, std::size_t max);
  bool decode(std::uint64_t p, RecordView& v, std::uint64_t& next, std::memory_order order,
              std::uint32_t& kind);
  std::uint32_t decode_entry(std::uint64_t n, RecordView& v, std::memory_order order);
  void finish(RecordView& v, std::uint32_t kind) const;
  std::optional<std::size_t> read_stream(std::span<std::byte> out);
  void skip_forward();
  void account(std::uint64_t seq);

  DBuf* ring_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint64_t pos_ = 0;       // next index to read (own index)
  std::uint64_t next_seq_ = 0;  // fast_reader: expected seq, for loss counting
  std::uint64_t lost_ = 0;
  std::uint64_t seen_w_ = 0;      // tail_drop: last write index loaded
  std::uint64_t batch_from_ = 0;  // medium_reader: first unreleased index of the own claim
  std::uint64_t batch_end_ = 0;   // medium_reader: end of the own claim
  std::vector<const DBuf*> sources_;
};

// Splices records of `source` into `dest` as reference records and keeps
// them alive: a Pin holds `source` at the oldest record still referenced
// by an unreleased record of `dest`. Refuses (std::invalid_argument)
// byte_stream rings, a fast_reader source or destination. Destroying it
// releases the pin: wait for pending() == 0 first if readers of `dest` may
// still resolve references into `source`.
class Splicer {
 public:
  Splicer(DBuf& source, DBuf& dest);
  // The view must still be held (not completed) by the caller's reader of
  // `source`; it can be completed once this returned true.
  bool try_splice(const RecordView& view);
  bool splice(const RecordView& view, std::chrono::nanoseconds timeout);
  // Releases the pin as far as `dest`'s readers have released (also done by
  // every splice).
  void reclaim();
  std::size_t pending() const { return refs_.size() - head_; }

 private:
  struct Ref {
    std::uint64_t dest_end;
    std::uint64_t source_index;
  };
  DBuf* source_;
  DBuf* dest_;
  std::optional<DBuf::Pin> pin_;
  std::vector<Ref> refs_;  // a FIFO: refs_[head_..]
  std::size_t head_ = 0;
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
