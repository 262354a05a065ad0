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
#include <set>
#include <thread>
#include <vector>

#include "srl/runtime/ring.h"

using namespace std::chrono_literals;
using srl::runtime::DBuf;
using srl::runtime::IBuf;
using srl::runtime::ReaderPolicy;
using srl::runtime::RingOptions;

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

// W writers, R readers, each writer writes `count` records; every reader
// checks content and per-writer order. Returns per-reader record counts.
struct RunResult {
  std::vector<std::uint64_t> received;
  std::vector<std::uint64_t> lost;
  std::set<std::pair<std::uint32_t, std::uint32_t>> all;  // medium: union, no dups
  bool ok = true;
};

RunResult run_concurrent(ReaderPolicy policy, int writers, int readers, std::uint32_t count,
                         bool use_peek) {
  DBuf ring = DBuf::create({.capacity = 1 << 14, .policy = policy});
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
      while (std::chrono::steady_clock::now() < deadline) {
        Parsed p;
        if (use_peek) {
          auto v = r.peek(100ms);
          if (!v) {
            if (ring.closed()) break;
            continue;
          }
          p = check_record(v->data);
          r.complete(*v);
        } else {
          auto n = r.read(out, 100ms);
          if (!n) {
            if (ring.closed()) break;
            continue;
          }
          p = check_record(std::span(out).first(*n));
        }
        if (!p.ok) {
          bad = true;
          break;
        }
        auto it = last.find(p.writer);
        if (it != last.end() && static_cast<std::int64_t>(p.n) <= it->second) bad = true;
        last[p.writer] = p.n;
        mine.emplace_back(p.writer, p.n);
        ++res.received[static_cast<std::size_t>(i)];
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
      for (std::uint32_t n = 0; n < count; ++n) {
        if (!ring.write(make_record(static_cast<std::uint32_t>(w), n, size_of(n)), 30s)) {
          bad = true;
          return;
        }
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

}  // namespace

TEST_CASE("ring: concurrent tail_drop is lossless for every reader") {
  for (bool peek : {false, true}) {
    const auto res = run_concurrent(ReaderPolicy::tail_drop, 2, 2, 20'000, peek);
    CHECK(res.ok);
    for (auto n : res.received)
      CHECK(n == 40'000);
  }
}

TEST_CASE("ring: concurrent medium_reader shares every record exactly once") {
  for (bool peek : {false, true}) {
    const auto res = run_concurrent(ReaderPolicy::medium_reader, 2, 3, 20'000, peek);
    CHECK(res.ok);
    CHECK(res.all.size() == 40'000);
    CHECK(res.received[0] + res.received[1] + res.received[2] == 40'000);
  }
}

TEST_CASE("ring: concurrent fast_reader never delivers a damaged record") {
  const auto res = run_concurrent(ReaderPolicy::fast_reader, 2, 2, 50'000, false);
  CHECK(res.ok);
  for (std::size_t i = 0; i < res.received.size(); ++i) {
    CHECK(res.received[i] > 0);
    CHECK(res.received[i] + res.lost[i] <= 100'000);
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
