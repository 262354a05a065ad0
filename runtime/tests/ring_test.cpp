// Buffer plane rings: semantics per reader policy, concurrency (also run
// under ThreadSanitizer, -DSRL_TSAN=ON) and sharing between processes.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "srl/runtime/ring.h"

using namespace std::chrono_literals;
using srl::runtime::DBuf;
using srl::runtime::IBuf;
using srl::runtime::ReaderPolicy;
using srl::runtime::RecordMeta;
using srl::runtime::RecordView;
using srl::runtime::RingLayout;
using srl::runtime::RingOptions;
using srl::runtime::Splicer;

namespace {

// A record: u32 writer, u32 number, then bytes derived from both.
std::vector<std::byte> make_record(std::uint32_t writer, std::uint32_t n, std::size_t size) {
  std::vector<std::byte> r(std::max<std::size_t>(size, 8));
  std::memcpy(r.data(), &writer, 4);
  std::memcpy(r.data() + 4, &n, 4);
  for (std::size_t i = 8; i < r.size(); ++i) {
    r[i] = static_cast<std::byte>((writer * 31 + n * 7 + i) & 0xff);
  }
  return r;
}

std::size_t size_of(std::uint32_t n) {
  return 8 + (n * 37) % 300;
}

struct Parsed {
  std::uint32_t writer = 0;
  std::uint32_t n = 0;
  bool ok = false;
};

Parsed check_record(std::span<const std::byte> r) {
  Parsed p;
  if (r.size() < 8) return p;
  std::memcpy(&p.writer, r.data(), 4);
  std::memcpy(&p.n, r.data() + 4, 4);
  if (r.size() != size_of(p.n)) return p;
  for (std::size_t i = 8; i < r.size(); ++i) {
    if (r[i] != static_cast<std::byte>((p.writer * 31 + p.n * 7 + i) & 0xff)) return p;
  }
  p.ok = true;
  return p;
}

}  // namespace

TEST_CASE("ring: tail_drop fills, wraps with pad records and reads back in order") {
  DBuf ring = DBuf::create({.capacity = 4096, .policy = ReaderPolicy::tail_drop, .max_readers = 2});
  auto reader = ring.open_reader();
  std::vector<std::byte> out(ring.max_payload());
  std::uint32_t written = 0;
  std::uint32_t read = 0;
  for (int round = 0; round < 50; ++round) {
    // Fill until full, then drain.
    while (ring.try_write(make_record(0, written, size_of(written))))
      ++written;
    // Full means the next record and the pad before it do not fit: less
    // than two of the largest records (16 + 307 bytes, 16-byte aligned) free.
    CHECK(ring.write_index() - reader.position() > 4096 - 2 * 336);
    while (auto n = reader.try_read(out)) {
      const auto p = check_record(std::span(out).first(*n));
      REQUIRE(p.ok);
      CHECK(p.n == read);
      ++read;
    }
  }
  CHECK(read == written);
  CHECK(written > 500);  // several laps, so pads were crossed
  CHECK(ring.write_index() > 50 * 4096 / 2);
}

TEST_CASE("ring: tail_drop writer waits for the slowest reader") {
  DBuf ring = DBuf::create({.capacity = 4096, .policy = ReaderPolicy::tail_drop});
  auto fast = ring.open_reader();
  auto slow = ring.open_reader();
  const auto rec = make_record(0, 0, 1000);
  int n = 0;
  while (ring.try_write(rec))
    ++n;
  CHECK(n == 4);
  std::vector<std::byte> out(ring.max_payload());
  while (fast.try_read(out)) {
  }
  CHECK_FALSE(ring.try_write(rec));  // `slow` still holds everything
  CHECK_FALSE(ring.write(rec, 1ms));
  auto v = slow.try_peek();
  REQUIRE(v);
  CHECK(v->seq == 0);
  slow.complete(*v);
  CHECK(ring.try_write(rec));
  { auto gone = std::move(slow); }  // an unregistered reader holds nothing
  int more = 0;
  while (ring.try_write(rec))
    ++more;
  CHECK(more == 3);  // now only `fast` holds the writer
  CHECK(ring.write_index() - fast.position() > 4096 - 1016);
  CHECK(fast.try_read(out));
  CHECK(ring.try_write(rec));
}

TEST_CASE("ring: peek/complete is zero-copy and views stay until completed") {
  DBuf ring = DBuf::create({.capacity = 8192, .policy = ReaderPolicy::tail_drop});
  auto r = ring.open_reader();
  CHECK_FALSE(r.try_peek());
  ring.write(make_record(1, 5, size_of(5)));
  auto v1 = r.try_peek();
  auto v2 = r.try_peek();
  REQUIRE(v1);
  REQUIRE(v2);
  CHECK(v1->data.data() == v2->data.data());
  CHECK(check_record(v1->data).ok);
  CHECK(ring.resolve(v1->index, static_cast<std::uint32_t>(v1->data.size())).data.data() ==
        v1->data.data());
  r.complete(*v1);
  CHECK_FALSE(r.try_peek());
  CHECK_FALSE(r.peek(1ms));
  ring.close();
  CHECK_FALSE(r.peek(1s));  // closed and empty: returns at once
  CHECK_THROWS_AS(ring.try_write(std::vector<std::byte>(ring.max_payload() + 1)),
                  std::length_error);
}

TEST_CASE("ring: fast_reader is overtaken, skips forward and counts losses") {
  DBuf ring = DBuf::create({.capacity = 4096, .policy = ReaderPolicy::fast_reader});
  auto r = ring.open_reader();
  std::vector<std::byte> out(ring.max_payload());
  const auto rec = make_record(0, 0, 100);
  ring.write(rec);
  REQUIRE(r.try_read(out));  // learns seq 0
  CHECK(r.lost() == 0);
  for (int i = 0; i < 200; ++i)
    CHECK(ring.try_write(rec));  // never waits
  // Overtaken: the reader skips to the newest committed index (the end).
  CHECK_FALSE(r.try_peek());
  ring.write(rec);
  auto v = r.try_peek();
  REQUIRE(v);
  CHECK(v->seq == 201);
  r.complete(*v);
  CHECK(r.lost() == 200);  // seqs 1..200
  CHECK_FALSE(r.try_peek());

  // A view overwritten while held fails the integrity check.
  ring.write(rec);
  auto held = r.try_peek();
  REQUIRE(held);
  CHECK(r.valid(*held));
  for (int i = 0; i < 40; ++i)
    ring.write(rec);
  CHECK_FALSE(r.valid(*held));
}

TEST_CASE("ring: fast_reader reads what it can keep up with, in order") {
  DBuf ring = DBuf::create({.capacity = 4096, .policy = ReaderPolicy::fast_reader});
  auto r = ring.open_reader();
  std::vector<std::byte> out(ring.max_payload());
  std::uint32_t next = 0;
  for (std::uint32_t n = 0; n < 1000; ++n) {
    ring.write(make_record(0, n, size_of(n)));
    if (n % 3 == 0) {  // keeps up: no loss, across pads
      while (auto k = r.try_read(out)) {
        const auto p = check_record(std::span(out).first(*k));
        REQUIRE(p.ok);
        CHECK(p.n == next);
        ++next;
      }
    }
  }
  CHECK(next == 1000);
  CHECK(r.lost() == 0);
}

TEST_CASE("ring: medium_reader hands each record to exactly one reader") {
  DBuf ring = DBuf::create({.capacity = 4096, .policy = ReaderPolicy::medium_reader});
  auto a = ring.open_reader();
  auto b = ring.open_reader();
  std::vector<std::byte> out(ring.max_payload());
  std::set<std::uint32_t> seen;
  std::uint32_t written = 0;
  for (int round = 0; round < 40; ++round) {
    while (ring.try_write(make_record(0, written, size_of(written))))
      ++written;
    bool turn = false;
    for (;;) {
      auto& r = turn ? a : b;
      turn = !turn;
      auto n = r.try_read(out);
      if (!n) break;
      const auto p = check_record(std::span(out).first(*n));
      REQUIRE(p.ok);
      CHECK(seen.insert(p.n).second);
    }
  }
  CHECK(seen.size() == written);
  // Without any completion the writer is held.
  ring.write(make_record(0, 0, 8));
  auto v = a.try_peek();
  REQUIRE(v);
  CHECK_FALSE(b.try_peek());  // taken by a
  while (ring.try_write(make_record(0, 0, 8))) {
  }
  CHECK_FALSE(ring.try_write(make_record(0, 0, 8)));
  a.complete(*v);
  CHECK(ring.try_write(make_record(0, 0, 8)));
}

TEST_CASE("ring: IBuf forwards indices; splice appends a record already in the DBuf") {
  DBuf ring = DBuf::create({.capacity = 8192, .policy = ReaderPolicy::tail_drop});
  auto r = ring.open_reader();
  for (std::uint32_t n = 0; n < 10; ++n)
    ring.write(make_record(2, n, size_of(n)));
  IBuf ib(5);
  CHECK(ib.capacity() == 8);
  std::vector<srl::runtime::RecordView> held;
  // Peek without completing: the records stay, the IBuf references them.
  auto v = r.try_peek();
  for (std::uint32_t n = 0; n < 8; ++n) {
    REQUIRE(v);
    CHECK(ib.splice(*v, n % 3));
    held.push_back(*v);
    // Next record: a tail_drop view can be walked by index before completing.
    if (n + 1 < 8) {
      r.complete(*v);  // nothing is written meanwhile: the entries still resolve
      v = r.try_peek();
    }
  }
  CHECK_FALSE(ib.push({}));
  std::uint32_t n = 0;
  while (auto e = ib.pop()) {
    const auto rv = ring.resolve(e->index, e->length);
    const auto p = check_record(rv.data);
    CHECK(p.ok);
    CHECK(p.n == n);
    CHECK(e->cls == n % 3);
    CHECK(rv.data.data() == held[n].data.data());
    ++n;
  }
  CHECK(n == 8);
  CHECK(ib.empty());
}

namespace {

// How the concurrent tests read: copying, one view at a time, or batches of
// views completed through the last one. Writers write batches in `batch`.
enum class Mode { read, peek, batch };

// W writers, R readers, each writer writes `count` records; every reader
// checks content and per-writer order. Returns per-reader record counts.
struct RunResult {
  std::vector<std::uint64_t> received;
  std::vector<std::uint64_t> lost;
  std::set<std::pair<std::uint32_t, std::uint32_t>> all;  // medium: union, no dups
  bool ok = true;
};

RunResult run_concurrent(RingOptions opts, int writers, int readers, std::uint32_t count, Mode mode,
                         bool batch_writes) {
  DBuf ring = DBuf::create(opts);
  const auto policy = opts.policy;
  const bool oob = opts.layout == RingLayout::oob_records;
  std::vector<DBuf::Reader> rs;
  for (int i = 0; i < readers; ++i)
    rs.push_back(ring.open_reader());
  RunResult res;
  res.received.assign(static_cast<std::size_t>(readers), 0);
  res.lost.assign(static_cast<std::size_t>(readers), 0);
  std::atomic<bool> bad{false};
  std::mutex m;
  std::vector<std::thread> th;
  for (int i = 0; i < readers; ++i) {
    th.emplace_back([&, i] {
      auto& r = rs[static_cast<std::size_t>(i)];
      std::vector<std::byte> out(ring.max_payload());
      std::map<std::uint32_t, std::int64_t> last;
      std::vector<std::pair<std::uint32_t, std::uint32_t>> mine;
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      auto take = [&](const Parsed& p) {
        if (!p.ok) {
          bad = true;
          return;
        }
        auto it = last.find(p.writer);
        if (it != last.end() && static_cast<std::int64_t>(p.n) <= it->second) bad = true;
        last[p.writer] = p.n;
        mine.emplace_back(p.writer, p.n);
        ++res.received[static_cast<std::size_t>(i)];
      };
      auto meta_ok = [&](const srl::runtime::RecordView& v, const Parsed& p) {
        return !oob || (v.meta.cls == p.writer && v.meta.flow == p.n && v.meta.timestamp == p.n);
      };
      while (std::chrono::steady_clock::now() < deadline && !bad) {
        if (mode == Mode::batch) {
          srl::runtime::RecordView vs[16];
          const std::size_t k = r.peek_batch(vs, 100ms);
          if (k == 0) {
            if (ring.closed()) break;
            continue;
          }
          for (std::size_t j = 0; j < k; ++j) {
            const auto p = check_record(vs[j].data);
            if (!meta_ok(vs[j], p)) bad = true;
            take(p);
          }
          r.complete(vs[k - 1]);
        } else if (mode == Mode::peek) {
          auto v = r.peek(100ms);
          if (!v) {
            if (ring.closed()) break;
            continue;
          }
          const auto p = check_record(v->data);
          if (!meta_ok(*v, p)) bad = true;
          r.complete(*v);
          take(p);
        } else {
          auto n = r.read(out, 100ms);
          if (!n) {
            if (ring.closed()) break;
            continue;
          }
          take(check_record(std::span(out).first(*n)));
        }
      }
      res.lost[static_cast<std::size_t>(i)] = r.lost();
      std::lock_guard lock(m);
      for (const auto& x : mine) {
        if (!res.all.insert(x).second && policy == ReaderPolicy::medium_reader) bad = true;
      }
    });
  }
  std::vector<std::thread> wt;
  for (int w = 0; w < writers; ++w) {
    wt.emplace_back([&, w] {
      const auto wid = static_cast<std::uint32_t>(w);
      for (std::uint32_t n = 0; n < count;) {
        if (!batch_writes) {
          const auto rec = make_record(wid, n, size_of(n));
          const bool done = oob ? (ring.write(rec, {wid, n, n}), true) : ring.write(rec, 30s);
          if (!done) {
            bad = true;
            return;
          }
          ++n;
          continue;
        }
        // Batches of 1 to 7 records.
        const std::uint32_t k = std::min<std::uint32_t>(count - n, 1 + n % 7);
        std::vector<std::vector<std::byte>> recs;
        std::vector<std::span<const std::byte>> spans;
        std::vector<RecordMeta> metas;
        for (std::uint32_t j = 0; j < k; ++j) {
          recs.push_back(make_record(wid, n + j, size_of(n + j)));
          metas.push_back({wid, n + j, n + j});
        }
        for (const auto& r : recs)
          spans.emplace_back(r);
        if (ring.write_batch(spans, metas, 30s) != k) {
          bad = true;
          return;
        }
        n += k;
      }
    });
  }
  for (auto& t : wt)
    t.join();
  ring.close();
  for (auto& t : th)
    t.join();
  res.ok = !bad;
  return res;
}

RingOptions opts(RingLayout layout, ReaderPolicy policy, std::size_t capacity = 1 << 14) {
  return {.capacity = capacity, .policy = policy, .layout = layout, .slot_size = 512};
}

const char* layout_name(RingLayout l) {
  switch (l) {
    case RingLayout::records:
      return "records";
    case RingLayout::fixed_slots:
      return "fixed_slots";
    case RingLayout::byte_stream:
      return "byte_stream";
    case RingLayout::oob_records:
      return "oob_records";
  }
  return "?";
}

constexpr RingLayout kRecordLayouts[] = {RingLayout::records, RingLayout::fixed_slots,
                                         RingLayout::oob_records};

}  // namespace

TEST_CASE("ring: concurrent tail_drop is lossless for every reader, every record layout") {
  for (auto layout : kRecordLayouts) {
    for (auto mode : {Mode::read, Mode::peek, Mode::batch}) {
      CAPTURE(layout_name(layout));
      CAPTURE(static_cast<int>(mode));
      const auto res = run_concurrent(opts(layout, ReaderPolicy::tail_drop), 2, 2, 10'000, mode,
                                      mode == Mode::batch);
      CHECK(res.ok);
      for (auto n : res.received)
        CHECK(n == 20'000);
    }
  }
}

TEST_CASE("ring: concurrent medium_reader shares every record exactly once, every record layout") {
  for (auto layout : kRecordLayouts) {
    for (auto mode : {Mode::read, Mode::peek, Mode::batch}) {
      CAPTURE(layout_name(layout));
      CAPTURE(static_cast<int>(mode));
      const auto res = run_concurrent(opts(layout, ReaderPolicy::medium_reader), 2, 3, 10'000, mode,
                                      mode == Mode::batch);
      CHECK(res.ok);
      CHECK(res.all.size() == 20'000);
      CHECK(res.received[0] + res.received[1] + res.received[2] == 20'000);
    }
  }
}

TEST_CASE("ring: concurrent fast_reader never delivers a damaged record, every record layout") {
  // Copying reads only: a view's plain loads may race with an overwrite
  // (that is what valid() is for), which ThreadSanitizer would report.
  for (auto layout : kRecordLayouts) {
    for (bool batch_writes : {false, true}) {
      CAPTURE(layout_name(layout));
      CAPTURE(batch_writes);
      const auto res = run_concurrent(opts(layout, ReaderPolicy::fast_reader), 2, 2, 25'000,
                                      Mode::read, batch_writes);
      CHECK(res.ok);
      for (std::size_t i = 0; i < res.received.size(); ++i) {
        CHECK(res.received[i] > 0);
        CHECK(res.received[i] + res.lost[i] <= 50'000);
      }
    }
  }
}

TEST_CASE("ring: single_writer is lossless and in order under every policy and record layout") {
  for (auto layout : kRecordLayouts) {
    for (auto mode : {Mode::read, Mode::peek, Mode::batch}) {
      CAPTURE(layout_name(layout));
      CAPTURE(static_cast<int>(mode));
      auto o = opts(layout, ReaderPolicy::tail_drop);
      o.single_writer = true;
      auto res = run_concurrent(o, 1, 2, 20'000, mode, mode == Mode::batch);
      CHECK(res.ok);
      for (auto n : res.received)
        CHECK(n == 20'000);
      o.policy = ReaderPolicy::medium_reader;
      res = run_concurrent(o, 1, 2, 20'000, mode, mode == Mode::batch);
      CHECK(res.ok);
      CHECK(res.all.size() == 20'000);
    }
    CAPTURE(layout_name(layout));
    auto o = opts(layout, ReaderPolicy::fast_reader);
    o.single_writer = true;
    const auto res = run_concurrent(o, 1, 2, 25'000, Mode::read, true);
    CHECK(res.ok);
    for (std::size_t i = 0; i < res.received.size(); ++i) {
      CHECK(res.received[i] > 0);
      CHECK(res.received[i] + res.lost[i] <= 25'000);
    }
  }
}

TEST_CASE("ring: single_writer: the first handle to write holds the role until destroyed") {
  DBuf ring = DBuf::create({.capacity = 1 << 14, .single_writer = true});
  auto reader = ring.open_reader();
  const auto one = make_record(0, 0, 40);
  std::optional<DBuf> other = DBuf::attach(ring.fd());
  other->write(one);  // `other` writes first: it is the writer now
  CHECK_THROWS_AS(ring.write(one), std::logic_error);
  CHECK_THROWS_AS(ring.try_write_batch(std::vector<std::span<const std::byte>>{one}),
                  std::logic_error);
  other->write(make_record(0, 1, 40));
  other.reset();  // gives the role back
  ring.write(make_record(0, 2, 40));
  std::vector<std::byte> out(ring.max_payload());
  for (std::uint64_t n = 0; n < 3; ++n) {
    auto v = reader.try_peek();
    REQUIRE(v);
    CHECK(v->seq == n);  // the seq goes on across writers
    CHECK(check_record(v->data).n == n);
    reader.complete(*v);
  }
  CHECK_FALSE(reader.try_peek());
  CHECK(ring.records_written() == 3);
}

TEST_CASE(
    "ring: a reader asleep on an empty ring wakes at the next record, and a writer on a full one") {
  // Past the spin phase both sides sleep in the futex, which times out by
  // itself after 20 ms. A wake-up that works (I7) ends the sleep at once; one
  // that does not would leave every round at ~18 ms. Counted over rounds, so
  // that a slow moment of a loaded machine does not decide.
  using Clock = std::chrono::steady_clock;
  for (bool single : {false, true}) {
    CAPTURE(single);
    DBuf ring = DBuf::create({.capacity = 4096, .single_writer = single});
    auto reader = ring.open_reader();
    int prompt_reads = 0, prompt_writes = 0;
    for (int round = 0; round < 20; ++round) {
      std::atomic<bool> got{false};
      std::thread t([&] {
        auto v = reader.peek(5s);
        if (v) reader.complete(*v);
        got = v.has_value();
      });
      std::this_thread::sleep_for(2ms);  // the reader is asleep by now
      const auto t0 = Clock::now();
      ring.write(make_record(0, static_cast<std::uint32_t>(round), 100));
      t.join();
      CHECK(got);
      prompt_reads += Clock::now() - t0 < 8ms;
    }
    for (int round = 0; round < 20; ++round) {
      while (ring.try_write(make_record(0, 0, 100))) {  // full
      }
      std::atomic<bool> wrote{false};
      std::thread w([&] { wrote = ring.write(make_record(0, 1, 100), 5s); });
      std::this_thread::sleep_for(2ms);  // the writer is asleep by now
      const auto t0 = Clock::now();
      while (auto v = reader.try_peek())
        reader.complete(*v);
      w.join();
      CHECK(wrote);
      prompt_writes += Clock::now() - t0 < 8ms;
      while (auto v = reader.try_peek())
        reader.complete(*v);
    }
    CHECK(prompt_reads >= 15);
    CHECK(prompt_writes >= 15);
  }
}

TEST_CASE("ring: shared between processes through the memfd") {
  for (auto policy : {ReaderPolicy::tail_drop, ReaderPolicy::medium_reader}) {
    DBuf ring = DBuf::create({.capacity = 1 << 14, .policy = policy});
    auto r = ring.open_reader();
    constexpr std::uint32_t kCount = 20'000;
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        DBuf child = DBuf::attach(ring.fd());  // as if the fd came over a socket
        for (std::uint32_t n = 0; n < kCount; ++n) {
          if (!child.write(make_record(7, n, size_of(n)), 30s)) rc = 2;
        }
        child.close();
      } catch (...) {
        rc = 3;
      }
      _exit(rc);
    }
    std::vector<std::byte> out(ring.max_payload());
    std::uint32_t next = 0;
    bool ok = true;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto n = r.read(out, 100ms);
      if (!n) {
        if (ring.closed()) break;
        continue;
      }
      const auto p = check_record(std::span(out).first(*n));
      if (!p.ok || p.writer != 7 || p.n != next) ok = false;
      ++next;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(ok);
    CHECK(next == kCount);
  }
}

TEST_CASE("ring: the fd passed over a Unix socket maps the same ring") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  DBuf ring = DBuf::create({.capacity = 8192, .policy = ReaderPolicy::medium_reader});
  auto r = ring.open_reader();
  ring.send_fd(sv[0]);
  DBuf other = DBuf::receive(sv[1]);
  CHECK(other.capacity() == 8192);
  CHECK(other.policy() == ReaderPolicy::medium_reader);
  CHECK(other.fd() != ring.fd());
  other.write(make_record(3, 9, size_of(9)));
  auto v = r.try_peek();
  REQUIRE(v);
  const auto p = check_record(v->data);
  CHECK(p.ok);
  CHECK(p.writer == 3);
  r.complete(*v);
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("ring: attach rejects what is not a ring") {
  const int fd = memfd_create("not-a-ring", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(ftruncate(fd, 16384) == 0);
  CHECK_THROWS(DBuf::attach(fd));
  close(fd);
  CHECK_THROWS(DBuf::create({.capacity = 5000}));
}

TEST_CASE("ring: layouts refuse what they cannot do") {
  CHECK_THROWS_AS(DBuf::create(opts(RingLayout::byte_stream, ReaderPolicy::fast_reader)),
                  std::invalid_argument);
  CHECK_THROWS_AS(DBuf::create(opts(RingLayout::byte_stream, ReaderPolicy::medium_reader)),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      DBuf::create({.capacity = 4096, .layout = RingLayout::fixed_slots, .slot_size = 48}),
      std::invalid_argument);
  CHECK_THROWS_AS(
      DBuf::create({.capacity = 4096, .layout = RingLayout::fixed_slots, .slot_size = 4096}),
      std::invalid_argument);
  DBuf stream = DBuf::create(opts(RingLayout::byte_stream, ReaderPolicy::tail_drop));
  DBuf rec = DBuf::create(opts(RingLayout::records, ReaderPolicy::tail_drop));
  DBuf fast = DBuf::create(opts(RingLayout::records, ReaderPolicy::fast_reader));
  CHECK_THROWS_AS(Splicer(stream, rec), std::invalid_argument);
  CHECK_THROWS_AS(Splicer(rec, stream), std::invalid_argument);
  CHECK_THROWS_AS(Splicer(fast, rec), std::invalid_argument);
  CHECK_THROWS_AS(Splicer(rec, fast), std::invalid_argument);
  CHECK_THROWS_AS(fast.pin(0), std::invalid_argument);
  CHECK_THROWS_AS(fast.try_splice(rec, RecordView{}), std::invalid_argument);
  CHECK(stream.layout() == RingLayout::byte_stream);
  CHECK(rec.id() != fast.id());
  CHECK(rec.id() != 0);
}

TEST_CASE("ring: every record layout fills, wraps and reads back in order under every policy") {
  for (auto layout : kRecordLayouts) {
    for (auto policy :
         {ReaderPolicy::tail_drop, ReaderPolicy::medium_reader, ReaderPolicy::fast_reader}) {
      CAPTURE(layout_name(layout));
      CAPTURE(static_cast<int>(policy));
      DBuf ring = DBuf::create(opts(layout, policy, 8192));
      auto reader = ring.open_reader();
      std::vector<std::byte> out(ring.max_payload());
      std::uint32_t written = 0;
      std::uint32_t read = 0;
      for (int round = 0; round < 30; ++round) {
        // Fill (fast_reader never refuses: stop at a third of the ring).
        bool refused = false;
        for (int k = 0; k < 200 && !refused; ++k) {
          if (policy == ReaderPolicy::fast_reader && k == 8) break;
          refused =
              !ring.try_write(make_record(0, written, size_of(written)), RecordMeta{1, written, 7});
          if (!refused) ++written;
        }
        CHECK(refused == (policy != ReaderPolicy::fast_reader));
        // Drain, alternating copies, views and batches.
        for (int turn = 0;; ++turn) {
          if (turn % 3 == 2) {
            RecordView vs[5];
            const std::size_t k = reader.try_peek_batch(vs);
            if (k == 0) break;
            for (std::size_t j = 0; j < k; ++j) {
              const auto p = check_record(vs[j].data);
              REQUIRE(p.ok);
              CHECK(p.n == read);
              if (layout == RingLayout::oob_records) {
                CHECK(vs[j].meta.cls == 1);
                CHECK(vs[j].meta.flow == p.n);
                CHECK(vs[j].meta.timestamp == 7);
                CHECK(vs[j].seq == read);
              }
              CHECK(reader.valid(vs[j]));
              ++read;
            }
            reader.complete(vs[k - 1]);
          } else if (turn % 3 == 1) {
            auto v = reader.try_peek();
            if (!v) break;
            const auto p = check_record(v->data);
            REQUIRE(p.ok);
            CHECK(p.n == read);
            ++read;
            reader.complete(*v);
          } else {
            auto n = reader.try_read(out);
            if (!n) break;
            const auto p = check_record(std::span(out).first(*n));
            REQUIRE(p.ok);
            CHECK(p.n == read);
            ++read;
          }
        }
        CHECK(read == written);
      }
      CHECK(ring.write_index() > 2 * 8192);  // wrapped
      CHECK(reader.lost() == 0);
    }
  }
}

TEST_CASE("ring: fixed_slots: one slot per record, seq is the slot number") {
  DBuf ring = DBuf::create({.capacity = 4096, .layout = RingLayout::fixed_slots, .slot_size = 256});
  CHECK(ring.slot_size() == 256);
  CHECK(ring.max_payload() == 248);
  CHECK_THROWS_AS(ring.try_write(std::vector<std::byte>(249)), std::length_error);
  auto r = ring.open_reader();
  int n = 0;
  while (ring.try_write(make_record(0, 0, 8)))
    ++n;
  CHECK(n == 16);
  CHECK(ring.write_index() == 4096);
  RecordView vs[32];
  CHECK(r.try_peek_batch(vs) == 16);
  for (std::size_t i = 0; i < 16; ++i) {
    CHECK(vs[i].seq == i);
    CHECK(vs[i].index == i * 256);
    CHECK(vs[i].data.size() == 8);
    CHECK(ring.resolve(vs[i].index, 8).data.data() == vs[i].data.data());
  }
  r.complete(vs[15]);
  CHECK(ring.try_write(make_record(0, 0, 248)));
  auto v = r.try_peek();
  REQUIRE(v);
  CHECK(v->seq == 16);
  CHECK(v->index == 4096);
}

TEST_CASE("ring: oob_records keeps headers apart: scan, metadata, fast_reader losses") {
  DBuf ring = DBuf::create(opts(RingLayout::oob_records, ReaderPolicy::fast_reader, 4096));
  CHECK(ring.max_payload() == 2048);
  auto r = ring.open_reader();
  ring.write(make_record(0, 0, 100), RecordMeta{3, 4, 5});
  ring.write(make_record(0, 1, 8), RecordMeta{6, 7, 8});
  RecordView vs[4];
  REQUIRE(r.try_peek_batch(vs) == 2);
  CHECK(vs[0].meta.cls == 3);
  CHECK(vs[0].meta.flow == 4);
  CHECK(vs[0].meta.timestamp == 5);
  CHECK(vs[1].meta.cls == 6);
  CHECK(vs[0].index == 0);
  CHECK(vs[0].end == 128);  // 100 bytes take two 64-byte units
  CHECK(vs[1].index == 128);
  CHECK(vs[1].end == 192);
  CHECK(reinterpret_cast<std::uintptr_t>(vs[1].data.data()) % 64 == 0);
  CHECK(ring.resolve(vs[1].index, 8).data.data() == vs[1].data.data());
  r.complete(vs[1]);
  CHECK(r.position() == 2);  // records, not bytes
  // Overtaken: 200 records of 100 bytes lap a 4 KiB ring many times.
  for (std::uint32_t i = 0; i < 200; ++i)
    ring.write(make_record(0, i, 100), RecordMeta{0, i, 0});
  CHECK_FALSE(r.try_peek());
  ring.write(make_record(0, 200, 100));
  auto v = r.try_peek();
  REQUIRE(v);
  CHECK(v->seq == 202);
  r.complete(*v);
  CHECK(r.lost() == 200);
}

TEST_CASE("ring: oob_records wraps with skipped tails and holds the writer (tail_drop)") {
  DBuf ring = DBuf::create(opts(RingLayout::oob_records, ReaderPolicy::tail_drop, 4096));
  auto r = ring.open_reader();
  std::vector<std::byte> out(ring.max_payload());
  const auto big = make_record(0, 0, 1500);  // 1536 bytes: two per lap, then a skipped tail
  CHECK(ring.try_write(big));
  CHECK(ring.try_write(big));
  CHECK_FALSE(ring.try_write(big));
  CHECK(r.try_read(out) == 1500);
  CHECK(ring.try_write(big));  // skips the last 1024 bytes of the area
  CHECK(ring.write_index() == 4096 + 1536);
  CHECK(r.try_read(out) == 1500);
  auto v = r.try_peek();
  REQUIRE(v);
  CHECK(v->index == 3072);  // includes the skipped tail
  CHECK(v->end == 4096 + 1536);
  CHECK(v->data.data() == ring.resolve(3072, 1500).data.data());
  r.complete(*v);
}

TEST_CASE("ring: byte_stream is a pipe: no boundaries, reads up to N, wraps") {
  DBuf ring = DBuf::create(opts(RingLayout::byte_stream, ReaderPolicy::tail_drop, 4096));
  CHECK(ring.max_payload() == 4096);
  auto a = ring.open_reader();
  auto b = ring.open_reader();
  std::vector<std::byte> bytes(10'000);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>(i * 13 + i / 256);
  std::size_t wpos = 0;
  std::vector<std::byte> got_a;
  std::vector<std::byte> got_b;
  std::byte buf[333];
  while (got_a.size() < bytes.size() || got_b.size() < bytes.size()) {
    // Write 700-byte pieces while they fit (lossless: no overwrite).
    while (wpos < bytes.size()) {
      const std::size_t n = std::min<std::size_t>(700, bytes.size() - wpos);
      if (!ring.try_write(std::span(bytes).subspan(wpos, n))) break;
      wpos += n;
    }
    // a copies 333 bytes at a time; b takes views (up to the end of the area).
    while (auto n = a.try_read(buf)) {
      CHECK(*n <= 333);
      got_a.insert(got_a.end(), buf, buf + *n);
    }
    while (auto v = b.try_peek()) {
      CHECK(v->data.size() == v->end - v->index);
      got_b.insert(got_b.end(), v->data.begin(), v->data.end());
      b.complete(*v);
    }
  }
  CHECK(got_a == bytes);
  CHECK(got_b == bytes);
  CHECK_THROWS_AS(ring.try_write(std::vector<std::byte>(4097)), std::length_error);
}

TEST_CASE("ring: concurrent byte_stream: writes stay contiguous, every reader gets all bytes") {
  DBuf ring = DBuf::create(opts(RingLayout::byte_stream, ReaderPolicy::tail_drop, 1 << 13));
  constexpr std::uint32_t kCount = 5'000;
  std::vector<DBuf::Reader> rs;
  rs.push_back(ring.open_reader());
  rs.push_back(ring.open_reader());
  std::atomic<bool> bad{false};
  std::vector<std::thread> th;
  for (int i = 0; i < 2; ++i) {
    th.emplace_back([&, i] {
      auto& r = rs[static_cast<std::size_t>(i)];
      std::vector<std::byte> pending;
      std::map<std::uint32_t, std::uint32_t> next;
      std::uint32_t messages = 0;
      std::byte buf[97];
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      while (std::chrono::steady_clock::now() < deadline) {
        // Reader 0 copies in odd-sized pieces, reader 1 takes views.
        if (i == 0) {
          auto n = r.read(buf, 100ms);
          if (!n) {
            if (ring.closed()) break;
            continue;
          }
          pending.insert(pending.end(), buf, buf + *n);
        } else {
          auto v = r.peek(100ms);
          if (!v) {
            if (ring.closed()) break;
            continue;
          }
          pending.insert(pending.end(), v->data.begin(), v->data.end());
          r.complete(*v);
        }
        // Messages: u32 size, then a record of that size.
        std::size_t off = 0;
        while (pending.size() - off >= 4) {
          std::uint32_t size = 0;
          std::memcpy(&size, pending.data() + off, 4);
          if (pending.size() - off - 4 < size) break;
          const auto p = check_record(std::span(pending).subspan(off + 4, size));
          if (!p.ok || p.n != next[p.writer]) bad = true;
          next[p.writer] = p.n + 1;
          ++messages;
          off += 4 + size;
        }
        pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(off));
      }
      if (messages != 2 * kCount || !pending.empty()) bad = true;
    });
  }
  std::vector<std::thread> wt;
  for (std::uint32_t w = 0; w < 2; ++w) {
    wt.emplace_back([&, w] {
      for (std::uint32_t n = 0; n < kCount; ++n) {
        const auto rec = make_record(w, n, size_of(n));
        std::vector<std::byte> msg(4 + rec.size());
        const auto size = static_cast<std::uint32_t>(rec.size());
        std::memcpy(msg.data(), &size, 4);
        std::memcpy(msg.data() + 4, rec.data(), rec.size());
        if (!ring.write(msg, 30s)) bad = true;
      }
    });
  }
  for (auto& t : wt)
    t.join();
  ring.close();
  for (auto& t : th)
    t.join();
  CHECK_FALSE(bad);
}

TEST_CASE("ring: batches: a prefix that fits, one commit, complete(last) releases all") {
  DBuf ring = DBuf::create(opts(RingLayout::records, ReaderPolicy::tail_drop, 4096));
  auto r = ring.open_reader();
  std::vector<std::vector<std::byte>> recs;
  std::vector<std::span<const std::byte>> spans;
  for (std::uint32_t n = 0; n < 20; ++n)
    recs.push_back(make_record(0, n, 300));  // 320 bytes each: 12 fit
  for (const auto& x : recs)
    spans.emplace_back(x);
  CHECK(ring.try_write_batch(spans) == 12);
  CHECK(ring.records_written() == 12);
  CHECK(ring.try_write_batch(std::span(spans).subspan(12)) == 0);
  RecordView vs[8];
  CHECK(r.try_peek_batch(vs) == 8);
  CHECK(r.try_peek_batch(vs) == 8);  // the same ones again until completed
  CHECK(vs[0].seq == 0);
  CHECK(vs[7].seq == 7);
  r.complete(vs[7]);
  CHECK(ring.try_write_batch(std::span(spans).subspan(12)) == 8);
  std::uint32_t next = 8;
  while (const std::size_t k = r.try_peek_batch(vs)) {
    for (std::size_t j = 0; j < k; ++j)
      CHECK(check_record(vs[j].data).n == next++ % 20);
    r.complete(vs[k - 1]);
  }
  CHECK(next == 20);
  CHECK_THROWS_AS(ring.try_write_batch(spans, std::vector<RecordMeta>(3)), std::invalid_argument);
  // write_batch waits and splits what does not fit at once.
  std::thread reader([&] {
    std::uint32_t got = 0;
    while (got < 40) {
      const std::size_t k = r.peek_batch(vs, 10s);
      REQUIRE(k > 0);
      for (std::size_t j = 0; j < k; ++j)
        CHECK(check_record(vs[j].data).n == got++ % 20);
      r.complete(vs[k - 1]);
    }
  });
  ring.write_batch(spans);
  ring.write_batch(spans);
  reader.join();
}

TEST_CASE("ring: medium_reader batches are one claim, released by the last view") {
  for (auto layout : kRecordLayouts) {
    CAPTURE(layout_name(layout));
    DBuf ring = DBuf::create(opts(layout, ReaderPolicy::medium_reader, 8192));
    auto a = ring.open_reader();
    auto b = ring.open_reader();
    for (std::uint32_t n = 0; n < 10; ++n)
      ring.write(make_record(0, n, size_of(n)));
    RecordView va[4];
    RecordView vb[16];
    CHECK(a.try_peek_batch(va) == 4);
    CHECK(b.try_peek_batch(vb) == 6);  // the rest
    CHECK(check_record(vb[0].data).n == 4);
    std::thread t([&] { b.complete(vb[5]); });  // waits for a's records
    a.complete(va[3]);
    t.join();
    while (ring.try_write(make_record(0, 0, 8))) {
    }
    CHECK(ring.write_index() - ring.released_index() > 8192 - 600);
  }
}

TEST_CASE("ring: splice writes a reference; readers resolve it into the source") {
  for (auto dest_layout : kRecordLayouts) {
    for (auto src_layout : kRecordLayouts) {
      CAPTURE(layout_name(dest_layout));
      CAPTURE(layout_name(src_layout));
      DBuf src = DBuf::create(opts(src_layout, ReaderPolicy::tail_drop, 8192));
      DBuf dst = DBuf::create(opts(dest_layout, ReaderPolicy::tail_drop, 8192));
      auto sr = src.open_reader();
      auto dr = dst.open_reader();
      auto blind = dst.open_reader();  // does not know the source
      dr.add_source(src);
      src.write(make_record(4, 9, size_of(9)));
      auto v = sr.try_peek();
      REQUIRE(v);
      CHECK(dst.try_splice(src, *v));
      auto d = dr.try_peek();
      REQUIRE(d);
      CHECK(d->ref.ring == src.id());
      CHECK(d->ref.index == v->index);
      CHECK(d->ref.length == v->data.size());
      CHECK(d->data.data() == v->data.data());  // no copy
      CHECK(check_record(d->data).n == 9);
      dr.complete(*d);
      auto u = blind.try_peek();
      REQUIRE(u);
      CHECK(u->data.empty());
      CHECK(src.resolve(u->ref).data.data() == v->data.data());
      std::vector<std::byte> out(dst.max_payload());
      CHECK_THROWS_AS(blind.try_read(out), std::runtime_error);
      dst.try_splice(src, *v);
      std::vector<std::byte> big(src.max_payload());
      CHECK(dr.try_read(big) == v->data.size());  // copies the source's bytes
      sr.complete(*v);
    }
  }
}

TEST_CASE("ring: a pin and a Splicer keep source records alive") {
  DBuf src = DBuf::create(opts(RingLayout::records, ReaderPolicy::tail_drop, 4096));
  DBuf dst = DBuf::create(opts(RingLayout::fixed_slots, ReaderPolicy::medium_reader, 4096));
  auto sr = src.open_reader();
  auto dr = dst.open_reader();
  dr.add_source(src);
  const auto rec = make_record(1, 2, 1000);
  {
    // A pin alone: the reader released, the pin still holds.
    src.write(rec);
    auto v = sr.try_peek();
    REQUIRE(v);
    auto pin = src.pin(v->index);
    sr.complete(*v);
    CHECK(src.try_write(rec));
    CHECK(src.try_write(rec));
    CHECK(src.try_write(rec));
    CHECK_FALSE(src.try_write(rec));  // would overwrite the pinned record
    pin.advance(v->end);
    CHECK(src.try_write(rec));
    pin.release();
    std::vector<std::byte> out(src.max_payload());
    while (sr.try_read(out)) {
    }
  }
  Splicer sp(src, dst);
  src.write(rec);
  auto v = sr.try_peek();
  REQUIRE(v);
  CHECK(sp.try_splice(*v));
  sr.complete(*v);  // the source reader moves on; the reference holds the record
  CHECK(sp.pending() == 1);
  int n = 0;
  while (src.try_write(rec))
    ++n;
  CHECK(n == 3);  // pinned: no overwrite of the referenced record
  auto d = dr.try_peek();
  REQUIRE(d);
  CHECK(d->data.data() == v->data.data());
  CHECK(check_record(d->data).n == 2);
  dr.complete(*d);
  sp.reclaim();
  CHECK(sp.pending() == 0);
  CHECK(src.try_write(rec));
}

TEST_CASE("ring: concurrent splicing from one ring to another stays intact") {
  for (auto dest_policy : {ReaderPolicy::tail_drop, ReaderPolicy::medium_reader}) {
    CAPTURE(static_cast<int>(dest_policy));
    DBuf src = DBuf::create(opts(RingLayout::oob_records, ReaderPolicy::tail_drop, 1 << 13));
    DBuf dst = DBuf::create(opts(RingLayout::records, dest_policy, 1 << 12));
    auto sr = src.open_reader();
    std::vector<DBuf::Reader> drs;
    drs.push_back(dst.open_reader());
    drs.push_back(dst.open_reader());
    constexpr std::uint32_t kCount = 10'000;
    std::atomic<bool> bad{false};
    std::atomic<std::uint64_t> received{0};
    std::thread writer([&] {
      for (std::uint32_t n = 0; n < kCount; ++n) {
        if (!src.write(make_record(5, n, size_of(n)), 30s)) bad = true;
      }
      src.close();
    });
    std::thread splicer([&] {
      Splicer sp(src, dst);
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      while (std::chrono::steady_clock::now() < deadline) {
        RecordView vs[8];
        const std::size_t k = sr.peek_batch(vs, 1ms);
        if (k == 0) {
          sp.reclaim();  // idle: let the writer have what was consumed
          if (src.closed() && !sr.try_peek()) break;
          continue;
        }
        for (std::size_t j = 0; j < k; ++j) {
          if (!sp.splice(vs[j], 30s)) bad = true;
        }
        sr.complete(vs[k - 1]);
      }
      dst.close();
      // The destination readers still resolve into src: wait for them.
      while (sp.pending() != 0 && std::chrono::steady_clock::now() < deadline) {
        sp.reclaim();
        std::this_thread::sleep_for(1ms);
      }
    });
    std::vector<std::thread> readers;
    for (std::size_t i = 0; i < drs.size(); ++i) {
      readers.emplace_back([&, i] {
        auto& r = drs[i];
        r.add_source(src);
        std::int64_t last = -1;
        while (true) {
          auto v = r.peek(100ms);
          if (!v) {
            if (dst.closed()) break;
            continue;
          }
          const auto p = check_record(v->data);
          if (!p.ok || v->ref.ring != src.id()) bad = true;
          if (static_cast<std::int64_t>(p.n) <= last) bad = true;
          last = p.n;
          r.complete(*v);
          ++received;
        }
      });
    }
    writer.join();
    splicer.join();
    for (auto& t : readers)
      t.join();
    CHECK_FALSE(bad);
    CHECK(received == (dest_policy == ReaderPolicy::tail_drop ? 2 * kCount : kCount));
  }
}

TEST_CASE("ring: every layout between processes, with batches") {
  for (auto layout : {RingLayout::fixed_slots, RingLayout::oob_records, RingLayout::byte_stream}) {
    CAPTURE(layout_name(layout));
    DBuf ring = DBuf::create(opts(layout, ReaderPolicy::tail_drop));
    auto r = ring.open_reader();
    constexpr std::uint32_t kCount = 20'000;
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        DBuf child = DBuf::attach(ring.fd());
        if (child.layout() != layout) rc = 4;
        for (std::uint32_t n = 0; n < kCount; n += 4) {
          std::vector<std::vector<std::byte>> recs;
          std::vector<std::span<const std::byte>> spans;
          for (std::uint32_t j = 0; j < 4; ++j)
            recs.push_back(make_record(7, n + j, 64));
          for (const auto& x : recs)
            spans.emplace_back(x);
          if (child.write_batch(spans, {}, 30s) != 4) rc = 2;
        }
        child.close();
      } catch (...) {
        rc = 3;
      }
      _exit(rc);
    }
    std::uint32_t next = 0;
    bool ok = true;
    std::vector<std::byte> stream;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      RecordView vs[16];
      const std::size_t k = r.peek_batch(vs, 100ms);
      if (k == 0) {
        if (ring.closed()) break;
        continue;
      }
      for (std::size_t j = 0; j < k; ++j) {
        if (layout == RingLayout::byte_stream) {
          stream.insert(stream.end(), vs[j].data.begin(), vs[j].data.end());
          continue;
        }
        std::uint32_t w = 0;
        std::uint32_t n = 0;
        std::memcpy(&w, vs[j].data.data(), 4);
        std::memcpy(&n, vs[j].data.data() + 4, 4);
        if (w != 7 || n != next || vs[j].data.size() != 64) ok = false;
        ++next;
      }
      r.complete(vs[k - 1]);
    }
    if (layout == RingLayout::byte_stream) {
      CHECK(stream.size() == 64 * kCount);
      for (std::size_t off = 0; off + 64 <= stream.size(); off += 64) {
        std::uint32_t n = 0;
        std::memcpy(&n, stream.data() + off + 4, 4);
        if (n != next) ok = false;
        ++next;
      }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(ok);
    CHECK(next == kCount);
  }
}
