// tcpstream: segments in any order, duplicated or overlapping, come out as
// each direction's bytes exactly once and in order; bounds, timeouts and
// eviction end streams with stream_end; frames that are not TCP or do not
// parse emit nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "packet_corpus.h"
#include "srl/filters/user.h"
#include "tcpstream.h"

using namespace srl;
using namespace srl::testing;
using filters::Block;
using filters::BlockKind;
using filters::FlowInfo;
using filters::user::TcpStreamLimits;

namespace {

constexpr std::uint8_t kSyn = tcpflag::syn, kAck = tcpflag::ack, kFin = tcpflag::fin,
                       kRst = tcpflag::rst, kPsh = tcpflag::psh;
constexpr std::uint64_t kSecond = 1'000'000'000ull;
constexpr std::size_t kOverhead = filters::user::kHeldPieceOverhead;

std::string str(std::span<const std::uint8_t> b) {
  return std::string(b.begin(), b.end());
}

// splitmix64, for seeded shuffles that are the same everywhere.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

// Keeps every emitted block and the scratch memory behind it, as the engine
// does until its batch is done.
struct Recorder final : filters::Emitter {
  std::vector<std::pair<Block, std::uint16_t>> emitted;
  std::deque<std::vector<std::uint8_t>> arena;
  int accepts = 0;
  void accept(std::uint16_t) override { ++accepts; }
  void emit(const Block& b, std::uint16_t cls) override { emitted.emplace_back(b, cls); }
  std::span<std::uint8_t> allocate(std::size_t n) override { return arena.emplace_back(n); }
};

// One TCP connection's frames, client to server or back.
struct Conn {
  bool v6 = false;
  Ip4 client4 = ip4("192.0.2.1"), server4 = ip4("198.51.100.7");
  Ip6 client6 = ip6("2001:db8::1"), server6 = ip6("2001:db8:0:1::2");
  std::uint16_t client_port = 40000, server_port = 80;

  Bytes frame(bool from_client, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
              const Bytes& payload = {}) const {
    const Bytes seg =
        tcp_segment(from_client ? client_port : server_port,
                    from_client ? server_port : client_port, seq, ack, flags, payload);
    if (v6)
      return ethernet(0x86DD) +
             ipv6(6, from_client ? client6 : server6, from_client ? server6 : client6, seg);
    return ethernet(0x0800) +
           ipv4(6, from_client ? client4 : server4, from_client ? server4 : client4, seg);
  }
  Bytes c(std::uint32_t seq, std::uint8_t flags, const Bytes& payload = {}) const {
    return frame(true, seq, 1, flags, payload);
  }
  Bytes s(std::uint32_t seq, std::uint8_t flags, const Bytes& payload = {}) const {
    return frame(false, seq, 1, flags, payload);
  }
};

struct Harness {
  std::unique_ptr<filters::UserFilter> filter;
  Recorder rec;
  std::uint64_t now = kSecond;

  explicit Harness(const TcpStreamLimits& limits = {})
      : filter(filters::user::make_tcpstream(limits)) {}

  // The frame lives only for the call, so emitted bytes cannot point into it.
  void send(Bytes frame, std::uint64_t ts = 0) {
    const auto parsed = filters::parse_packet(frame);
    Block b;
    b.data = frame;
    b.wire_len = static_cast<std::uint32_t>(frame.size());
    b.ts_ns = ts != 0 ? ts : now;
    b.parsed = &parsed;
    filter->process(b, rec);
    std::fill(frame.begin(), frame.end(), std::uint8_t{0xEE});
  }
  std::uint64_t stat(std::string_view name) const {
    for (const auto& [key, value] : filter->stats())
      if (key == name) return value;
    FAIL("no stat " << name);
    return 0;
  }
  std::size_t blocks() const { return rec.emitted.size(); }
  const Block& block(std::size_t i) const { return rec.emitted.at(i).first; }
};

// Each direction of each flow as a consumer would rebuild it.
struct Stream {
  std::string bytes;          // delivered bytes, gaps left out
  std::uint64_t next = 0;     // end of the last block
  std::uint64_t skipped = 0;  // offsets jumped over
  int ends = 0;
  int blocks = 0;
};
using Streams = std::map<std::pair<std::uint64_t, int>, Stream>;

Streams collect(const Recorder& rec) {
  Streams out;
  for (const auto& [b, cls] : rec.emitted) {
    REQUIRE(b.kind == BlockKind::stream);
    REQUIRE(b.flow != nullptr);
    CHECK(cls == static_cast<std::uint16_t>(b.flow->id & 0xFFFF));
    CHECK(b.direction < 2);
    Stream& s = out[{b.flow->id, b.direction}];
    CHECK(s.ends == 0);  // nothing after the end
    CHECK(b.stream_offset >= s.next);
    if (b.stream_offset > s.next) s.skipped += b.stream_offset - s.next;
    CHECK((!b.data.empty() || b.stream_end));  // no empty block but an end marker
    s.bytes += str(b.data);
    s.next = b.stream_offset + b.data.size();
    s.ends += b.stream_end ? 1 : 0;
    ++s.blocks;
  }
  return out;
}

std::string stream_of(const Recorder& rec, std::uint64_t flow, int dir) {
  const auto streams = collect(rec);
  auto it = streams.find({flow, dir});
  return it == streams.end() ? std::string() : it->second.bytes;
}

}  // namespace

TEST_CASE("handshake, data both ways and FIN/FIN: blocks as they come, ends attached") {
  Harness h;
  const Conn c;
  const std::string req = "GET / HTTP/1.1\r\n\r\n", resp = "HTTP/1.1 200 OK\r\n\r\nhello";
  h.send(c.frame(true, 1000, 0, kSyn), 1);
  h.send(c.frame(false, 5000, 1001, kSyn | kAck), 2);
  h.send(c.frame(true, 1001, 5001, kAck), 3);
  CHECK(h.blocks() == 0);
  h.send(c.frame(true, 1001, 5001, kPsh | kAck, text(req)), 4);
  REQUIRE(h.blocks() == 1);
  {
    const Block& b = h.block(0);
    CHECK(str(b.data) == req);
    CHECK(b.kind == BlockKind::stream);
    CHECK(b.direction == 0);
    CHECK(b.stream_offset == 0);
    CHECK(b.ts_ns == 4);
    CHECK_FALSE(b.stream_end);
    CHECK(b.parsed == nullptr);
    CHECK(h.rec.emitted[0].second == 1);
    REQUIRE(b.flow != nullptr);
    CHECK(b.flow->id == 1);
    CHECK(b.flow->family == filters::L3Kind::ipv4);
    CHECK(std::equal(c.client4.begin(), c.client4.end(), b.flow->client_addr.begin()));
    CHECK(std::equal(c.server4.begin(), c.server4.end(), b.flow->server_addr.begin()));
    CHECK(b.flow->client_port == 40000);
    CHECK(b.flow->server_port == 80);
  }
  h.send(c.frame(false, 5001, 1001 + 18, kPsh | kAck, text(resp)), 5);
  REQUIRE(h.blocks() == 2);
  CHECK(h.block(1).direction == 1);
  CHECK(h.block(1).stream_offset == 0);
  CHECK(str(h.block(1).data) == resp);
  // A bare FIN: an empty end marker at the end offset.
  h.send(c.frame(true, 1001 + 18, 5001 + 24, kFin | kAck), 6);
  REQUIRE(h.blocks() == 3);
  CHECK(h.block(2).data.empty());
  CHECK(h.block(2).stream_end);
  CHECK(h.block(2).direction == 0);
  CHECK(h.block(2).stream_offset == req.size());
  CHECK(h.block(2).ts_ns == 6);
  // FIN with data: the end rides on the data block.
  h.send(c.frame(false, 5001 + 24, 1001 + 19, kFin | kPsh | kAck, text("bye")), 7);
  REQUIRE(h.blocks() == 4);
  CHECK(str(h.block(3).data) == "bye");
  CHECK(h.block(3).stream_end);
  CHECK(h.block(3).stream_offset == resp.size());
  CHECK(h.stat("active_flows") == 0);
  // The last ACK and a retransmitted FIN change nothing and open no flow.
  h.send(c.frame(true, 1001 + 19, 5001 + 28, kAck), 8);
  h.send(c.frame(false, 5001 + 24, 1001 + 19, kFin | kPsh | kAck, text("bye")), 9);
  CHECK(h.blocks() == 4);
  CHECK(h.stat("flows") == 1);
  CHECK(h.stat("segments") == 9);
  CHECK(h.stat("bytes_emitted") == req.size() + resp.size() + 3);
  CHECK(h.stat("retransmitted_bytes") == 3);
  const auto streams = collect(h.rec);
  CHECK(streams.size() == 2);
  for (const auto& [key, s] : streams)
    CHECK(s.ends == 1);
}

TEST_CASE("every order of five segments (FIN on the last) gives the same stream") {
  const std::string data = "abcdefghijklmnopqrstuvwxy";
  const Conn c;
  // The stream crosses the 2^32 wrap of sequence numbers on the way.
  const std::uint32_t isn = 0xFFFFFFF3u;
  std::array<int, 5> order{0, 1, 2, 3, 4};
  int permutations = 0;
  do {
    CAPTURE(order);
    Harness h;
    h.send(c.c(isn, kSyn));
    for (const int i : order) {
      const auto at = static_cast<std::uint32_t>(i * 5);
      const auto flags = static_cast<std::uint8_t>(kAck | (i == 4 ? kFin : 0));
      h.send(c.c(isn + 1 + at, flags, text(data.substr(static_cast<std::size_t>(at), 5))));
    }
    const auto streams = collect(h.rec);
    REQUIRE(streams.size() == 1);
    const Stream& s = streams.begin()->second;
    CHECK(s.bytes == data);
    CHECK(s.skipped == 0);
    CHECK(s.ends == 1);
    CHECK(s.blocks <= 5);
    CHECK(h.stat("held_bytes") == 0);
    CHECK(h.stat("lost_bytes") == 0);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()) && permutations < 200);
  CHECK(permutations == 120);
}

TEST_CASE("a long stream shuffled, with duplicates and overlaps, comes out exactly") {
  for (const std::uint64_t seed : {1ull, 2ull, 3ull}) {
    CAPTURE(seed);
    Rng rng{seed};
    const Conn c;
    struct Dir {
      std::string data;
      std::uint32_t isn;
    };
    std::array<Dir, 2> dirs;
    dirs[0].isn = static_cast<std::uint32_t>(0xFFFF0000u + rng.below(0x10000));  // wraps
    dirs[1].isn = static_cast<std::uint32_t>(rng.next());
    for (auto& d : dirs) {
      d.data.resize(150'000 + rng.below(50'000));
      for (auto& ch : d.data)
        ch = static_cast<char>(rng.next() & 0xFF);
    }
    std::vector<Bytes> frames;
    for (int di = 0; di < 2; ++di) {
      const Dir& d = dirs[static_cast<std::size_t>(di)];
      auto seg = [&](std::size_t at, std::size_t n, std::uint8_t flags) {
        return c.frame(di == 0, d.isn + 1 + static_cast<std::uint32_t>(at), 1, flags,
                       text(std::string_view(d.data).substr(at, n)));
      };
      for (std::size_t at = 0; at < d.data.size();) {
        const std::size_t n = std::min(d.data.size() - at, 1 + rng.below(1460));
        frames.push_back(seg(at, n, kAck));
        if (rng.below(5) == 0) frames.push_back(seg(at, n, kAck));  // duplicate
        at += n;
      }
      for (int i = 0; i < 300; ++i) {  // overlapping re-segmentations
        const std::size_t at = rng.below(d.data.size());
        frames.push_back(seg(at, std::min(d.data.size() - at, 1 + rng.below(3000)), kAck));
      }
      frames.push_back(seg(d.data.size(), 0, kFin | kAck));
    }
    for (std::size_t i = frames.size() - 1; i > 0; --i)
      std::swap(frames[i], frames[rng.below(i + 1)]);
    Harness h;
    h.send(c.frame(true, dirs[0].isn, 0, kSyn));
    h.send(c.frame(false, dirs[1].isn, dirs[0].isn + 1, kSyn | kAck));
    for (auto& f : frames)
      h.send(std::move(f));
    const auto streams = collect(h.rec);
    REQUIRE(streams.size() == 2);
    for (int di = 0; di < 2; ++di) {
      const Stream& s = streams.at({1, di});
      CHECK(s.bytes == dirs[static_cast<std::size_t>(di)].data);
      CHECK(s.skipped == 0);
      CHECK(s.ends == 1);
    }
    CHECK(h.stat("lost_bytes") == 0);
    CHECK(h.stat("bytes_emitted") == dirs[0].data.size() + dirs[1].data.size());
    CHECK(h.stat("out_of_order") > 0);
    CHECK(h.stat("retransmitted_bytes") > 0);
    CHECK(h.stat("overlaps") > 0);
    CHECK(h.stat("held_bytes") == 0);
    CHECK(h.stat("active_flows") == 0);
  }
}

TEST_CASE("retransmitted bytes are never emitted twice") {
  Harness h;
  const Conn c;
  h.send(c.c(100, kSyn));
  h.send(c.c(101, kAck, text("hello ")));
  h.send(c.c(101, kAck, text("hello ")));
  h.send(c.c(107, kAck, text("world")));
  // Ahead of a gap, twice: held once.
  h.send(c.c(118, kAck, text("again")));
  h.send(c.c(118, kAck, text("again")));
  CHECK(h.blocks() == 2);
  h.send(c.c(112, kAck, text(", all")));
  REQUIRE(h.blocks() == 3);
  CHECK(str(h.block(2).data) == ", all");
  CHECK(h.block(2).stream_offset == 11);
  // All of it again: only the one missing byte is new, and what was held
  // joins it.
  h.send(c.c(101, kAck, text("hello world, all again")));
  REQUIRE(h.blocks() == 4);
  CHECK(str(h.block(3).data) == " again");
  CHECK(h.block(3).stream_offset == 16);
  CHECK(stream_of(h.rec, 1, 0) == "hello world, all again");
  CHECK(h.stat("retransmitted_bytes") == 6 + 5 + 16 + 5);
  CHECK(h.stat("out_of_order") == 1);
  CHECK(h.stat("bytes_emitted") == 22);
}

TEST_CASE("overlapping segments with different bytes: the first received win") {
  const Conn c;
  SUBCASE("over bytes already delivered") {
    Harness h;
    h.send(c.c(0, kSyn));
    h.send(c.c(1, kAck, text("AAAAA")));
    h.send(c.c(4, kAck, text("BBBBB")));
    CHECK(stream_of(h.rec, 1, 0) == "AAAAABBB");
    CHECK(h.block(1).stream_offset == 5);
    CHECK(h.stat("overlaps") == 1);
    CHECK(h.stat("retransmitted_bytes") == 2);
  }
  SUBCASE("held bytes over a later in-order segment") {
    Harness h;
    h.send(c.c(0, kSyn));
    h.send(c.c(6, kAck, text("XXXXX")));
    h.send(c.c(1, kAck, text("YYYYYYYYYY")));
    REQUIRE(h.blocks() == 1);
    CHECK(str(h.block(0).data) == "YYYYYXXXXX");
    CHECK(h.stat("retransmitted_bytes") == 5);
    CHECK(h.stat("overlaps") == 1);
  }
  SUBCASE("between held pieces") {
    Harness h;
    h.send(c.c(0, kSyn));
    h.send(c.c(11, kAck, text("PPPP")));      // 10..14
    h.send(c.c(9, kAck, text("QQQQQQQQ")));   // 8..16: only 8..10 and 14..16 are new
    h.send(c.c(10, kAck, text("RRRRRRRR")));  // 9..17: only 16..17 is new
    CHECK(h.blocks() == 0);
    h.send(c.c(1, kAck, text("ZZZZZZZZ")));
    REQUIRE(h.blocks() == 1);
    CHECK(str(h.block(0).data) == "ZZZZZZZZQQPPPPQQR");
    CHECK(h.stat("out_of_order") == 3);
    CHECK(h.stat("retransmitted_bytes") == 4 + 7);
  }
}

TEST_CASE("sequence numbers wrap around 2^32") {
  const Conn c;
  SUBCASE("in order") {
    Harness h;
    h.send(c.c(0xFFFFFFF0u, kSyn));
    h.send(c.frame(false, 0xFFFFFFFFu, 0xFFFFFFF1u, kSyn | kAck));  // server starts at 0
    h.send(c.c(0xFFFFFFF1u, kAck, text("0123456789")));
    h.send(c.c(0xFFFFFFFBu, kAck, text("abcdefghij")));  // crosses the wrap
    h.send(c.c(0x00000005u, kAck, text("KLMNOPQRST")));
    h.send(c.s(0x00000000u, kAck, text("pong")));
    REQUIRE(h.blocks() == 4);
    CHECK(h.block(1).stream_offset == 10);
    CHECK(h.block(2).stream_offset == 20);
    CHECK(h.block(3).stream_offset == 0);
    CHECK(stream_of(h.rec, 1, 0) == "0123456789abcdefghijKLMNOPQRST");
    CHECK(stream_of(h.rec, 1, 1) == "pong");
  }
  SUBCASE("out of order across the wrap") {
    Harness h;
    h.send(c.c(0xFFFFFFF0u, kSyn));
    h.send(c.c(0x00000005u, kAck | kFin, text("KLMNOPQRST")));
    h.send(c.c(0xFFFFFFFBu, kAck, text("abcdefghij")));
    CHECK(h.blocks() == 0);
    h.send(c.c(0xFFFFFFF1u, kAck, text("0123456789")));
    REQUIRE(h.blocks() == 1);
    CHECK(str(h.block(0).data) == "0123456789abcdefghijKLMNOPQRST");
    CHECK(h.block(0).stream_end);
  }
}

TEST_CASE("RST ends both directions at once; held bytes are dropped") {
  Harness h;
  const Conn c;
  h.send(c.c(0, kSyn));
  h.send(c.frame(false, 500, 1, kSyn | kAck));
  h.send(c.c(1, kAck, text("hello")));
  h.send(c.c(11, kAck, text("world")));  // after a gap of 5
  // A RST far outside the window is not believed.
  h.send(c.s(501 + 0x50000000u, kRst));
  CHECK(h.stat("ignored_rsts") == 1);
  CHECK(h.blocks() == 1);
  h.send(c.s(501, kRst), 77);
  REQUIRE(h.blocks() == 3);
  CHECK(h.block(1).stream_end);
  CHECK(h.block(1).direction == 0);
  CHECK(h.block(1).stream_offset == 5);
  CHECK(h.block(1).data.empty());
  CHECK(h.block(1).ts_ns == 77);
  CHECK(h.block(2).stream_end);
  CHECK(h.block(2).direction == 1);
  CHECK(h.block(2).stream_offset == 0);
  CHECK(h.stat("dropped_bytes") == 5);
  CHECK(h.stat("held_bytes") == 0);
  CHECK(h.stat("active_flows") == 0);
  // The gap filling late emits nothing and opens no flow.
  h.send(c.c(6, kAck, text("12345")));
  h.send(c.c(16, kAck, text("later")));
  CHECK(h.blocks() == 3);
  CHECK(h.stat("flows") == 1);
  CHECK(h.stat("ignored_bytes") == 10);
  h.filter->finish(h.rec);
  CHECK(h.blocks() == 3);
}

TEST_CASE("pickup mid-stream: the first sender is the client, its first byte offset 0") {
  Harness h;
  const Conn c;
  h.send(c.s(999, kAck | kPsh, text("server talks first")));
  h.send(c.c(123456, kAck | kPsh, text("abc")));
  h.send(c.c(123450, kAck, text("012345abc")));  // earlier bytes than the first seen
  h.send(c.c(123459, kAck, text("def")));
  REQUIRE(h.blocks() == 3);
  const Block& first = h.block(0);
  CHECK(first.direction == 0);
  CHECK(first.stream_offset == 0);
  CHECK(first.flow->client_port == 80);  // the server's side spoke first
  CHECK(std::equal(c.server4.begin(), c.server4.end(), first.flow->client_addr.begin()));
  CHECK(h.block(1).direction == 1);
  CHECK(h.block(1).stream_offset == 0);
  CHECK(stream_of(h.rec, 1, 1) == "abcdef");
  CHECK(h.stat("retransmitted_bytes") == 9);
  // A bare ACK of an unknown flow opens nothing.
  Conn other = c;
  other.client_port = 40001;
  h.send(other.c(5, kAck));
  CHECK(h.stat("flows") == 1);
}

TEST_CASE("a SYN/ACK seen before the SYN: its receiver is the client") {
  Harness h;
  const Conn c;
  h.send(c.frame(false, 7000, 3001, kSyn | kAck));
  h.send(c.frame(true, 3000, 0, kSyn));
  h.send(c.c(3001 + 4, kAck, text("5678")));  // out of order: the start is known from the ack
  h.send(c.c(3001, kAck, text("1234")));
  h.send(c.s(7001, kAck, text("ok")));
  REQUIRE(h.blocks() == 2);
  CHECK(h.block(0).direction == 0);
  CHECK(h.block(0).flow->client_port == 40000);
  CHECK(str(h.block(0).data) == "12345678");
  CHECK(h.block(1).direction == 1);
  CHECK(str(h.block(1).data) == "ok");
}

TEST_CASE("FIN before the gap fills; bytes after the FIN are not part of the stream") {
  Harness h;
  const Conn c;
  h.send(c.c(0, kSyn));
  h.send(c.c(21, kAck, text("tail-beyond")));  // held, later found to lie past the FIN
  h.send(c.c(6, kAck | kFin, text("world")));  // FIN at 10, before "hello" arrived
  CHECK(h.blocks() == 0);
  CHECK(h.stat("ignored_bytes") == 11);
  h.send(c.c(1, kAck, text("hello")));
  REQUIRE(h.blocks() == 1);
  CHECK(str(h.block(0).data) == "helloworld");
  CHECK(h.block(0).stream_end);
  h.send(c.c(11, kAck, text("more")));
  CHECK(h.blocks() == 1);
  CHECK(h.stat("held_bytes") == 0);
}

TEST_CASE("per-flow bound: a gap that does not fill is skipped and counted lost") {
  TcpStreamLimits limits;
  limits.flow_buffer = 2 * (100 + kOverhead);
  Harness h(limits);
  const Conn c;
  std::string data(600, '\0');
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>('a' + i % 26);
  auto seg = [&](std::size_t at, std::size_t n, std::uint8_t flags = kAck) {
    return c.c(static_cast<std::uint32_t>(1 + at), flags, text(data.substr(at, n)));
  };
  h.send(c.c(0, kSyn));
  h.send(seg(0, 100));
  h.send(seg(200, 100));
  h.send(seg(300, 100));
  CHECK(h.blocks() == 1);
  CHECK(h.stat("held_bytes") == 2 * (100 + kOverhead));
  h.send(seg(400, 100));  // does not fit: 100..200 is given up
  REQUIRE(h.blocks() == 3);
  CHECK(h.block(1).stream_offset == 200);
  CHECK(str(h.block(1).data) == data.substr(200, 200));
  CHECK(h.block(2).stream_offset == 400);
  CHECK(h.stat("lost_bytes") == 100);
  CHECK(h.stat("held_bytes") == 0);
  h.send(seg(100, 100));  // too late
  CHECK(h.blocks() == 3);
  CHECK(h.stat("retransmitted_bytes") == 100);
  // Held behind another gap, then delivered past it at the end of input.
  h.send(c.c(1 + 560, kAck | kFin, text(std::string(40, 'z'))));
  CHECK(h.blocks() == 3);
  const auto streams = collect(h.rec);
  CHECK(streams.at({1, 0}).skipped == 100);
  h.filter->finish(h.rec);
  const auto ended = collect(h.rec);
  CHECK(ended.at({1, 0}).ends == 1);
  CHECK(ended.at({1, 0}).skipped == 100 + 60);
  CHECK(h.stat("lost_bytes") == 160);
}

TEST_CASE("per-flow bound: a segment too big to hold makes the gap before it go") {
  TcpStreamLimits limits;
  limits.flow_buffer = 150;
  Harness h(limits);
  const Conn c;
  h.send(c.c(0, kSyn));
  h.send(c.c(1, kAck, text(std::string(100, 'a'))));
  h.send(c.c(1 + 150, kAck, text(std::string(10, 'c'))));   // held
  h.send(c.c(1 + 300, kAck, text(std::string(200, 'b'))));  // 200 + 64 > 150
  REQUIRE(h.blocks() == 3);
  CHECK(h.block(1).stream_offset == 150);
  CHECK(str(h.block(1).data) == std::string(10, 'c'));
  CHECK(h.block(2).stream_offset == 300);
  CHECK(str(h.block(2).data) == std::string(200, 'b'));
  CHECK(h.stat("lost_bytes") == 50 + 140);
}

TEST_CASE("global bound: the flow holding data longest gives up its gap") {
  TcpStreamLimits limits;
  limits.total_buffer = 3 * (100 + kOverhead);
  Harness h(limits);
  Conn a, b;
  b.client_port = 40001;
  h.send(a.c(0, kSyn));
  h.send(b.c(0, kSyn));
  h.send(a.c(1 + 50, kAck, text(std::string(100, 'A'))));  // a holds 1
  h.send(b.c(1 + 50, kAck, text(std::string(100, 'B'))));  // b holds 2
  h.send(b.c(1 + 200, kAck, text(std::string(100, 'C'))));
  CHECK(h.blocks() == 0);
  CHECK(h.stat("held_bytes") == 3 * (100 + kOverhead));
  h.send(b.c(1 + 350, kAck, text(std::string(100, 'D'))));  // no room: a's gap goes
  REQUIRE(h.blocks() == 1);
  CHECK(h.block(0).flow->id == 1);
  CHECK(h.block(0).stream_offset == 50);
  CHECK(str(h.block(0).data) == std::string(100, 'A'));
  CHECK(h.stat("lost_bytes") == 50);
  CHECK(h.stat("held_bytes") == 3 * (100 + kOverhead));
  // b's gaps fill: all of it comes out.
  h.send(b.c(1, kAck, text(std::string(50, 'x'))));
  h.send(b.c(1 + 150, kAck, text(std::string(50, 'y'))));
  h.send(b.c(1 + 300, kAck, text(std::string(50, 'z'))));
  CHECK(stream_of(h.rec, 2, 0) == std::string(50, 'x') + std::string(100, 'B') +
                                      std::string(50, 'y') + std::string(100, 'C') +
                                      std::string(50, 'z') + std::string(100, 'D'));
  CHECK(h.stat("held_bytes") == 0);
}

TEST_CASE("idle flows end through tick, held bytes delivered past the gap") {
  TcpStreamLimits limits;
  limits.idle_timeout_ns = 120 * kSecond;
  Harness h(limits);
  Conn a, b;
  b.client_port = 40001;
  h.send(a.c(0, kSyn), 1 * kSecond);
  h.send(a.c(1, kAck, text("early")), 2 * kSecond);
  h.send(a.c(11, kAck, text("after-gap")), 3 * kSecond);
  h.send(b.c(0, kSyn), 100 * kSecond);
  h.filter->tick(122 * kSecond, h.rec);
  CHECK(h.blocks() == 1);
  h.filter->tick(123 * kSecond, h.rec);
  REQUIRE(h.blocks() == 4);
  CHECK(str(h.block(1).data) == "after-gap");
  CHECK(h.block(1).stream_offset == 10);
  CHECK(h.block(2).stream_end);
  CHECK(h.block(2).direction == 0);
  CHECK(h.block(2).stream_offset == 19);
  CHECK(h.block(2).ts_ns == 123 * kSecond);
  CHECK(h.block(3).stream_end);
  CHECK(h.block(3).direction == 1);
  CHECK(h.block(3).flow->id == 1);
  CHECK(h.stat("timed_out") == 1);
  CHECK(h.stat("lost_bytes") == 5);
  CHECK(h.stat("active_flows") == 1);
  // The same tuple again: a new flow, picked up mid-stream.
  h.send(a.c(20, kAck, text("x")), 124 * kSecond);
  REQUIRE(h.blocks() == 5);
  CHECK(h.block(4).flow->id == 3);
  CHECK(h.block(4).stream_offset == 0);
  h.filter->tick(300 * kSecond, h.rec);
  CHECK(h.stat("timed_out") == 3);
  CHECK(h.stat("active_flows") == 0);
  for (const auto& [key, s] : collect(h.rec))
    CHECK(s.ends == 1);
}

TEST_CASE("closed flows linger for their last segments; a new SYN starts a new flow") {
  TcpStreamLimits limits;
  limits.closed_linger_ns = 5 * kSecond;
  Harness h(limits);
  const Conn c;
  h.send(c.c(0, kSyn), 1 * kSecond);
  h.send(c.c(1, kAck | kFin, text("q")), 1 * kSecond);
  h.send(c.s(0, kAck | kFin, text("r")), 1 * kSecond);
  CHECK(h.stat("active_flows") == 0);
  h.send(c.c(0, kSyn), 2 * kSecond);  // the old SYN again: absorbed
  h.send(c.c(1, kAck | kFin, text("q")), 2 * kSecond);
  CHECK(h.stat("flows") == 1);
  CHECK(h.blocks() == 2);
  h.filter->tick(10 * kSecond, h.rec);
  h.send(c.c(2, kAck), 11 * kSecond);  // freed by now, and a bare ACK opens nothing
  CHECK(h.stat("flows") == 1);
  h.send(c.c(900, kSyn), 12 * kSecond);
  h.send(c.c(901, kAck, text("new")), 12 * kSecond);
  REQUIRE(h.blocks() == 3);
  CHECK(h.block(2).flow->id == 2);
  // Port reuse while the old flow still lingers.
  h.send(c.c(902 + 2, kAck | kFin), 12 * kSecond);
  h.send(c.s(50, kAck | kFin), 12 * kSecond);
  h.send(c.c(7000, kSyn), 13 * kSecond);
  h.send(c.c(7001, kAck, text("third")), 13 * kSecond);
  CHECK(h.rec.emitted.back().first.flow->id == 3);
  CHECK(str(h.rec.emitted.back().first.data) == "third");
}

TEST_CASE("the least recently active flow is evicted at max_flows; closed ones first") {
  TcpStreamLimits limits;
  limits.max_flows = 2;
  Harness h(limits);
  Conn f1, f2, f3, f4;
  f2.client_port = 2;
  f3.client_port = 3;
  f4.client_port = 4;
  h.send(f1.c(0, kSyn));
  h.send(f2.c(0, kSyn));
  h.send(f2.c(11, kAck, text("held")));
  h.send(f1.c(1, kAck, text("one")));  // f2 is now the least recently active
  h.send(f3.c(0, kSyn));
  REQUIRE(h.blocks() == 4);
  CHECK(h.block(1).flow->id == 2);
  CHECK(str(h.block(1).data) == "held");
  CHECK(h.block(1).stream_offset == 10);
  CHECK(h.block(2).flow->id == 2);
  CHECK(h.block(2).stream_end);
  CHECK(h.block(3).flow->id == 2);
  CHECK(h.block(3).stream_end);
  CHECK(h.stat("evicted") == 1);
  CHECK(h.stat("active_flows") == 2);
  // f1 closes; f4 takes its place without evicting f3.
  h.send(f1.c(4, kAck | kFin));
  h.send(f1.s(0, kAck | kRst));
  const std::size_t before = h.blocks();
  h.send(f4.c(0, kSyn));
  CHECK(h.blocks() == before);
  CHECK(h.stat("evicted") == 1);
  CHECK(h.stat("active_flows") == 2);
  h.filter->finish(h.rec);
  const auto streams = collect(h.rec);
  CHECK(streams.size() == 8);
  for (const auto& [key, s] : streams)
    CHECK(s.ends == 1);
  CHECK(h.stat("active_flows") == 0);
}

TEST_CASE("IPv6 flows") {
  Harness h;
  Conn c;
  c.v6 = true;
  h.send(c.c(41, kSyn));
  h.send(c.frame(false, 77, 42, kSyn | kAck));
  h.send(c.c(42, kAck, text("SSH-2.0-client\r\n")));
  h.send(c.s(78, kAck, text("SSH-2.0-server\r\n")));
  REQUIRE(h.blocks() == 2);
  const FlowInfo& info = *h.block(0).flow;
  CHECK(info.family == filters::L3Kind::ipv6);
  CHECK(info.client_addr == c.client6);
  CHECK(info.server_addr == c.server6);
  CHECK(info.client_port == 40000);
  CHECK(stream_of(h.rec, 1, 0) == "SSH-2.0-client\r\n");
  CHECK(stream_of(h.rec, 1, 1) == "SSH-2.0-server\r\n");
  // The same ports over IPv4 are another flow.
  Conn v4 = c;
  v4.v6 = false;
  h.send(v4.c(5, kAck, text("v4")));
  CHECK(h.rec.emitted.back().first.flow->id == 2);
}

TEST_CASE("blocks that are not TCP packets are rejected") {
  Harness h;
  const auto a = ip4("192.0.2.1"), b = ip4("198.51.100.7");
  h.send(ethernet(0x0800) + ipv4(17, a, b, udp(1, 53, text("query"))));
  h.send(ethernet(0x0800) + ipv4(1, a, b, icmp(8, 0, text("ping"))));
  h.send(ethernet(0x0806) + arp_request(a, b));
  h.send(ethernet(0x0800) +
         ipv4(6, a, b, tcp_segment(1, 2, 0, 0, kAck, text("frag")), {.frag_offset = 4}));
  const Bytes bytes = text("stream bytes");
  Block chunk;
  chunk.kind = BlockKind::stream;
  chunk.data = bytes;
  h.filter->process(chunk, h.rec);
  h.filter->finish(h.rec);
  CHECK(h.blocks() == 0);
  CHECK(h.rec.accepts == 0);
  CHECK(h.stat("segments") == 0);
  CHECK(h.stat("flows") == 0);
}

TEST_CASE("classes are flow ids modulo 2^16, past 65535 flows") {
  TcpStreamLimits limits;
  limits.max_flows = 16;
  Harness h(limits);
  Conn c;
  for (std::uint32_t i = 0; i < 65540; ++i) {
    c.client_port = static_cast<std::uint16_t>(1 + i % 60000);
    c.client4[3] = static_cast<std::uint8_t>(i / 60000);
    h.send(c.c(i, kAck, text("x")));
    if (h.rec.emitted.size() > 4096) {
      for (const auto& [blk, cls] : h.rec.emitted)
        REQUIRE(cls == static_cast<std::uint16_t>(blk.flow->id & 0xFFFF));
      h.rec.emitted.clear();
      h.rec.arena.clear();
    }
  }
  REQUIRE(!h.rec.emitted.empty());
  const auto& [last, cls] = h.rec.emitted.back();
  CHECK(last.flow->id == 65540);
  CHECK(cls == 4);
  CHECK(h.stat("flows") == 65540);
  CHECK(h.stat("evicted") == 65540 - 16);
}

TEST_CASE("the registry builds tcpstream with its defaults") {
  filters::UserFilterConfig config;
  config.spec = filters::Catalog::builtin().find("tcpstream");
  REQUIRE(config.spec != nullptr);
  config.node_id = "n1";
  auto f = filters::make_user_filter(config);
  REQUIRE(f != nullptr);
  Recorder rec;
  const Conn c;
  const Bytes frame = c.c(9, kAck, text("hi"));
  const auto parsed = filters::parse_packet(frame);
  Block b;
  b.data = frame;
  b.parsed = &parsed;
  f->process(b, rec);
  REQUIRE(rec.emitted.size() == 1);
  CHECK(str(rec.emitted[0].first.data) == "hi");
  // Without parsed headers too.
  Block raw;
  raw.data = frame;
  f->process(raw, rec);
  CHECK(rec.emitted.size() == 1);
  const auto names = f->stats();
  for (const char* name :
       {"flows", "active_flows", "segments", "bytes_emitted", "out_of_order", "retransmitted_bytes",
        "overlaps", "lost_bytes", "dropped_bytes", "evicted", "timed_out"})
    CHECK(std::any_of(names.begin(), names.end(), [&](const auto& s) { return s.first == name; }));
}

TEST_CASE("the standard corpus, truncated and garbage frames included: no garbage out") {
  const auto corpus = standard_corpus();
  for (const bool reverse : {false, true}) {
    CAPTURE(reverse);
    Harness h;
    std::size_t payload_total = 0;
    for (std::size_t i = 0; i < corpus.size(); ++i) {
      const auto& f = corpus[reverse ? corpus.size() - 1 - i : i];
      payload_total += f.bytes.size();
      h.send(f.bytes, (i + 1) * 1000);
    }
    h.filter->tick(1000 * kSecond, h.rec);
    h.filter->finish(h.rec);
    const auto streams = collect(h.rec);
    for (const auto& [key, s] : streams)
      CHECK(s.ends == 1);
    CHECK(h.stat("bytes_emitted") <= payload_total);
    CHECK(h.stat("held_bytes") == 0);
    CHECK(h.stat("active_flows") == 0);
    // Every delivered byte run is found in some captured frame.
    for (const auto& emitted : h.rec.emitted) {
      const Block& b = emitted.first;
      if (b.data.empty()) continue;
      const bool found = std::any_of(corpus.begin(), corpus.end(), [&](const TestFrame& f) {
        return std::search(f.bytes.begin(), f.bytes.end(), b.data.begin(), b.data.end()) !=
               f.bytes.end();
      });
      CHECK(found);
    }
  }
}

TEST_CASE("a TCP header the IP datagram cuts short is malformed; padding is not payload") {
  Harness h;
  const Conn c;
  Bytes cut = c.c(1, kAck, text("payload"));
  cut[14 + 2] = 0;
  cut[14 + 3] = 20 + 12;  // the IPv4 total length ends inside the TCP header
  h.send(cut);
  CHECK(h.stat("malformed") == 1);
  CHECK(h.stat("flows") == 0);
  h.send(c.c(1, kAck, text("data")) + Bytes(10, 0));  // Ethernet padding after the datagram
  REQUIRE(h.blocks() == 1);
  CHECK(str(h.block(0).data) == "data");
}

TEST_CASE("scratch memory at odd addresses still holds an aligned FlowInfo") {
  // An arena that hands out memory one byte past an aligned address.
  struct OddArena final : filters::Emitter {
    std::vector<std::pair<Block, std::uint16_t>> emitted;
    std::deque<std::vector<std::uint8_t>> arena;
    void accept(std::uint16_t) override {}
    void emit(const Block& b, std::uint16_t cls) override { emitted.emplace_back(b, cls); }
    std::span<std::uint8_t> allocate(std::size_t n) override {
      return std::span<std::uint8_t>(arena.emplace_back(n + 1)).subspan(1);
    }
  };
  auto f = filters::user::make_tcpstream(TcpStreamLimits{});
  OddArena out;
  const Conn c;
  for (std::uint32_t i = 0; i < 4; ++i) {
    const Bytes frame = c.c(1 + i * 3, kAck, text("abc"));
    const auto parsed = filters::parse_packet(frame);
    Block b;
    b.data = frame;
    b.parsed = &parsed;
    f->process(b, out);
  }
  f->finish(out);
  REQUIRE(out.emitted.size() == 6);
  for (const auto& [b, cls] : out.emitted) {
    CHECK(reinterpret_cast<std::uintptr_t>(b.flow) % alignof(FlowInfo) == 0);
    CHECK(b.flow->id == 1);
  }
  CHECK(str(out.emitted[3].first.data) == "abc");
  CHECK(out.emitted[3].first.stream_offset == 9);
}

TEST_CASE("under tight bounds every delivered byte is the original byte at its offset") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    CAPTURE(seed);
    Rng rng{seed * 7919};
    TcpStreamLimits limits;
    limits.flow_buffer = 2048 + rng.below(4096);
    limits.total_buffer = 4096 + rng.below(4096);
    Harness h(limits);
    std::array<Conn, 3> conns;
    std::array<std::array<std::string, 2>, 3> data;
    std::array<std::array<std::uint32_t, 2>, 3> isn{};
    std::vector<Bytes> frames;
    for (std::size_t ci = 0; ci < conns.size(); ++ci) {
      conns[ci].client_port = static_cast<std::uint16_t>(50000 + ci);
      for (int di = 0; di < 2; ++di) {
        auto& d = data[ci][static_cast<std::size_t>(di)];
        d.resize(5000 + rng.below(20000));
        for (auto& ch : d)
          ch = static_cast<char>(rng.next() & 0xFF);
        const auto base = static_cast<std::uint32_t>(rng.next());
        isn[ci][static_cast<std::size_t>(di)] = base;
        auto seg = [&, di, ci](std::size_t at, std::size_t n, std::uint8_t flags) {
          return conns[ci].frame(di == 0, base + 1 + static_cast<std::uint32_t>(at), 1, flags,
                                 text(std::string_view(d).substr(at, n)));
        };
        for (std::size_t at = 0; at < d.size();) {
          const std::size_t n = std::min(d.size() - at, 1 + rng.below(1000));
          if (rng.below(20) != 0) frames.push_back(seg(at, n, kAck));  // some never come
          if (rng.below(6) == 0) frames.push_back(seg(at, n, kAck));
          at += n;
        }
        frames.push_back(seg(d.size(), 0, kFin | kAck));
      }
    }
    // Local reordering: each frame moves up to 40 places.
    for (std::size_t i = 0; i + 1 < frames.size(); ++i)
      std::swap(frames[i], frames[std::min(frames.size() - 1, i + rng.below(40))]);
    for (std::size_t ci = 0; ci < conns.size(); ++ci) {
      h.send(conns[ci].frame(true, isn[ci][0], 0, kSyn));
      h.send(conns[ci].frame(false, isn[ci][1], isn[ci][0] + 1, kSyn | kAck));
    }
    for (auto& f : frames)
      h.send(std::move(f));
    h.filter->finish(h.rec);
    for (const auto& [b, cls] : h.rec.emitted) {
      const std::size_t ci = b.flow->client_port - 50000u;
      REQUIRE(ci < conns.size());
      const std::string& d = data[ci][b.direction];
      REQUIRE(b.stream_offset + b.data.size() <= d.size());
      CHECK(str(b.data) == d.substr(static_cast<std::size_t>(b.stream_offset), b.data.size()));
    }
    std::uint64_t skipped = 0;
    const auto streams = collect(h.rec);
    CHECK(streams.size() == 6);
    for (const auto& [key, s] : streams) {
      CHECK(s.ends == 1);
      CHECK(s.next == data[key.first - 1][static_cast<std::size_t>(key.second)].size());
      skipped += s.skipped;
    }
    CHECK(skipped == h.stat("lost_bytes"));
    CHECK(h.stat("held_bytes") == 0);
  }
}
