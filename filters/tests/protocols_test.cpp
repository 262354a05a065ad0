// The application-protocol filters http, ssh, rtsp, dns and tls on hand-made
// packets and stream chunks: detection (also split at every byte), the
// per-flow decision for later blocks, truncations and length lies, idle
// expiry and the bound on the flow table, and the standard corpus.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "packet_corpus.h"
#include "srl/filters/user.h"
#include "user_fixtures.h"

using namespace srl;
using namespace srl::testing;
using filters::Block;
using filters::FlowInfo;
using filters::OptionValue;
using filters::UserFilter;
using filters::UserFilterConfig;

namespace {

using Verdict = std::optional<std::uint16_t>;
constexpr std::uint64_t kSecond = 1'000'000'000;

// Protocol filters decide; they never emit.
struct Recorder final : RecordingEmitter {
  Recorder() : RecordingEmitter(false) {}
};

std::unique_ptr<UserFilter> make(std::string_view name,
                                 std::map<std::string, OptionValue> options = {}) {
  return filters::make_user_filter(filter_config(name, std::move(options)));
}

std::string error_of(std::string_view name, std::map<std::string, OptionValue> options) {
  return config_error_of(filter_config(name, std::move(options)));
}

std::uint64_t stat(const UserFilter& f, std::string_view name) {
  return stat_of(f.stats(), name);
}

// Packets --------------------------------------------------------------------

const Ip4 kClient = ip4("192.0.2.1"), kServer = ip4("198.51.100.2");

Bytes tcp4(Ip4 src, Ip4 dst, std::uint16_t sport, std::uint16_t dport, const Bytes& payload,
           std::uint8_t flags = tcpflag::psh | tcpflag::ack) {
  return ethernet(0x0800) + ipv4(6, src, dst, tcp(sport, dport, flags, {}, payload));
}
Bytes to_server(const Bytes& payload, std::uint16_t port = 40000, std::uint16_t dport = 80) {
  return tcp4(kClient, kServer, port, dport, payload);
}
Bytes to_client(const Bytes& payload, std::uint16_t port = 40000, std::uint16_t sport = 80) {
  return tcp4(kServer, kClient, sport, port, payload);
}

Verdict feed(UserFilter& f, const Bytes& frame, std::uint64_t ts = 0) {
  const auto parsed = filters::parse_packet(frame);
  Block b;
  b.data = frame;
  b.wire_len = static_cast<std::uint32_t>(frame.size());
  b.parsed = &parsed;
  b.ts_ns = ts;
  Recorder r;
  f.process(b, r);
  return r.accepted;
}

// Streams --------------------------------------------------------------------

FlowInfo flow_info(std::uint64_t id) {
  FlowInfo fi;
  fi.id = id;
  fi.family = filters::L3Kind::ipv4;
  fi.client_port = 40000;
  fi.server_port = 80;
  return fi;
}

Verdict chunk(UserFilter& f, const FlowInfo& flow, std::uint8_t direction, std::uint64_t offset,
              std::span<const std::uint8_t> data, bool end = false, std::uint64_t ts = 0) {
  Block b;
  b.kind = filters::BlockKind::stream;
  b.data = data;
  b.flow = &flow;
  b.direction = direction;
  b.stream_offset = offset;
  b.stream_end = end;
  b.ts_ns = ts;
  Recorder r;
  f.process(b, r);
  return r.accepted;
}

// Feeds `data` as two chunks cut at `cut`; returns both verdicts.
std::pair<Verdict, Verdict> split(UserFilter& f, const FlowInfo& flow, const Bytes& data,
                                  std::size_t cut) {
  const std::span<const std::uint8_t> all(data);
  const Verdict a = chunk(f, flow, 0, 0, all.first(cut));
  const Verdict b = chunk(f, flow, 0, cut, all.subspan(cut));
  return {a, b};
}

// DNS ------------------------------------------------------------------------

void put16(Bytes& b, unsigned v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8 & 0xFFu));
  b.push_back(static_cast<std::uint8_t>(v & 0xFFu));
}

Bytes dns_name(std::string_view name) {
  if (name == ".") return {0};
  Bytes b;
  while (!name.empty()) {
    const auto dot = name.find('.');
    const auto label = name.substr(0, dot);
    b.push_back(static_cast<std::uint8_t>(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  }
  b.push_back(0);
  return b;
}

Bytes dns_header(bool response = false, unsigned qdcount = 1, unsigned opcode = 0) {
  Bytes b;
  put16(b, 0xBEEF);
  put16(b, (response ? 0x8000u : 0u) | (opcode & 0xFu) << 11 | 0x0100u);
  put16(b, qdcount);
  put16(b, response ? 1 : 0);
  put16(b, 0);
  put16(b, 0);
  return b;
}

Bytes dns_message(std::string_view name, unsigned qtype, bool response = false,
                  unsigned qclass = 1) {
  Bytes b = dns_header(response) + dns_name(name);
  put16(b, qtype);
  put16(b, qclass);
  if (response) {  // one answer, its name a pointer to the question's
    put16(b, 0xC00C);
    put16(b, qtype);
    put16(b, qclass);
    put16(b, 0);
    put16(b, 60);
    put16(b, 4);
    b = b + Bytes{192, 0, 2, 7};
  }
  return b;
}

Bytes with_length(const Bytes& m) {
  Bytes b;
  put16(b, static_cast<unsigned>(m.size()));
  return b + m;
}

Bytes udp4(const Bytes& payload, std::uint16_t sport = 53000, std::uint16_t dport = 53) {
  return ethernet(0x0800) + ipv4(17, kClient, kServer, udp(sport, dport, payload));
}

// TLS ------------------------------------------------------------------------

// Builds bytes and remembers where each length field is, so that tests can
// make them lie.
struct Writer {
  Bytes b;
  std::vector<std::pair<std::size_t, std::size_t>> lengths;  // position, width
  void u8(unsigned v) { b.push_back(static_cast<std::uint8_t>(v)); }
  void u16(unsigned v) { put16(b, v); }
  void raw(const Bytes& x) { b.insert(b.end(), x.begin(), x.end()); }
  // `read`: a length the parser reads (not one inside an extension it skips).
  std::size_t open(std::size_t width, bool read = true) {
    if (read) lengths.emplace_back(b.size(), width);
    b.insert(b.end(), width, 0);
    return b.size();
  }
  void close(std::size_t start, std::size_t width) {
    std::size_t n = b.size() - start;
    for (std::size_t i = 0; i < width; ++i, n >>= 8)
      b[start - 1 - i] = static_cast<std::uint8_t>(n & 0xFFu);
  }
};

// A ClientHello handshake message (type 1, with its 4-byte header).
Writer client_hello(std::optional<std::string> sni, std::size_t padding = 0) {
  Writer w;
  w.u8(1);
  const auto h = w.open(3);
  w.u16(0x0303);
  w.raw(Bytes(32, 0x5A));
  const auto s = w.open(1);
  w.raw(Bytes(32, 0x11));
  w.close(s, 1);
  const auto c = w.open(2);
  w.u16(0x1301);
  w.u16(0x1302);
  w.u16(0xC02F);
  w.close(c, 2);
  const auto m = w.open(1);
  w.u8(0);
  w.close(m, 1);
  const auto e = w.open(2);
  if (sni) {
    w.u16(0);
    const auto x = w.open(2);
    const auto l = w.open(2);
    w.u8(0);
    const auto n = w.open(2);
    w.raw(text(*sni));
    w.close(n, 2);
    w.close(l, 2);
    w.close(x, 2);
  }
  w.u16(10);  // supported_groups
  const auto g = w.open(2);
  const auto gl = w.open(2, false);
  w.u16(29);
  w.u16(23);
  w.close(gl, 2);
  w.close(g, 2);
  if (padding > 0) {
    w.u16(21);
    const auto p = w.open(2);
    w.raw(Bytes(padding, 0));
    w.close(p, 2);
  }
  w.close(e, 2);
  w.close(h, 3);
  return w;
}

// Handshake bytes in records of at most `max` bytes each.
Bytes records(const Bytes& hs, std::size_t max = 16384, std::uint8_t type = 22) {
  Bytes out;
  for (std::size_t at = 0; at < hs.size(); at += max) {
    const std::size_t n = std::min(max, hs.size() - at);
    out = out + Bytes{type, 3, 1};
    put16(out, static_cast<unsigned>(n));
    out.insert(out.end(), hs.begin() + static_cast<std::ptrdiff_t>(at),
               hs.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  return out;
}

Bytes hello_record(std::optional<std::string> sni) {
  return records(client_hello(std::move(sni)).b);
}

const std::string kRequest = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";

}  // namespace

// HTTP -----------------------------------------------------------------------

TEST_CASE("http: request lines give the method's class, status lines 0") {
  const std::vector<std::pair<std::string, std::uint16_t>> good = {
      {"GET / HTTP/1.1\r\n", 1},
      {"HEAD /x HTTP/1.0\r\n", 2},
      {"POST /form HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 3},
      {"PUT /f HTTP/1.1\r\n", 4},
      {"DELETE /f HTTP/1.1\r\n", 5},
      {"CONNECT example.com:443 HTTP/1.1\r\n", 6},
      {"OPTIONS * HTTP/1.1\r\n", 7},
      {"TRACE / HTTP/1.1\r\n", 8},
      {"PATCH /f HTTP/1.1\n", 9},
      {"HTTP/1.1 200 OK\r\n", 0},
      {"HTTP/1.0 404\r\n", 0},
  };
  for (const auto& entry : good) {
    const std::string& line = entry.first;
    const std::uint16_t cls = entry.second;
    CAPTURE(line);
    auto f = make("http");
    CHECK(feed(*f, to_server(text(line))) == Verdict(cls));
  }
  const std::vector<std::string> bad = {
      "GETX / HTTP/1.1\r\n",    "get / HTTP/1.1\r\n",
      "GET / HTTP/2.0\r\n",     "GET /\r\n",
      "GET  HTTP/1.1\r\n",      "GET / HTTP/1.1\rX",
      "GET /a\tb HTTP/1.1\r\n", "PROPFIND / HTTP/1.1\r\n",
      "HTTP/1.1 600 Odd\r\n",   "HTTP/1.1 20x OK\r\n",
      "HTTP/1.1 200OK\r\n",     "HTTP/2 200\r\n",
      " GET / HTTP/1.1\r\n",    "SSH-2.0-x\r\n",
  };
  for (const auto& line : bad) {
    CAPTURE(line);
    auto f = make("http");
    CHECK_FALSE(feed(*f, to_server(text(line))));
    // A direction that said no stays no: a request after it is not taken.
    CHECK_FALSE(feed(*f, to_server(text(kRequest))));
  }
}

TEST_CASE("http: every later block of a detected flow, with the last request's method") {
  auto f = make("http");
  CHECK_FALSE(feed(*f, tcp4(kClient, kServer, 40000, 80, {}, tcpflag::syn)));
  CHECK_FALSE(feed(*f, tcp4(kServer, kClient, 80, 40000, {}, tcpflag::syn | tcpflag::ack)));
  CHECK(feed(*f, to_server(text(kRequest))) == Verdict(1));
  CHECK(feed(*f, to_client({})) == Verdict(1));  // bare ACK
  CHECK(feed(*f, to_client(text("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))) == Verdict(0));
  CHECK(feed(*f, to_client(text("hello"))) == Verdict(1));
  CHECK(feed(*f, to_server(text("POST /upload HTTP/1.1\r\n"))) == Verdict(3));
  CHECK(feed(*f, to_server(text("body bytes"))) == Verdict(3));
  CHECK(feed(*f, to_client(text("HTTP/1.1 201 Created\r\n"))) == Verdict(0));
  CHECK(feed(*f, tcp4(kClient, kServer, 40000, 80, {}, tcpflag::fin | tcpflag::ack)) == Verdict(3));
  CHECK(stat(*f, "requests") == 2);
  CHECK(stat(*f, "responses") == 2);
  CHECK(stat(*f, "detected") == 1);
  // Other flows are on their own.
  CHECK_FALSE(feed(*f, to_server(text("body bytes"), 40001)));
  CHECK_FALSE(feed(*f, to_server(text(kRequest), 40001)));
  CHECK(feed(*f, to_server(text(kRequest), 40002)) == Verdict(1));
  // Not TCP: UDP never carries these protocols here.
  CHECK_FALSE(feed(*f, udp4(text(kRequest), 40003, 80)));
}

TEST_CASE("http: a flow whose first bytes are not HTTP is rejected for good") {
  auto f = make("http");
  CHECK_FALSE(feed(*f, to_server(text("EHLO mail.example.com\r\n"), 40000, 25)));
  CHECK_FALSE(feed(*f, to_client(text("250 hello\r\n"), 40000, 25)));
  CHECK(stat(*f, "not_detected") == 1);
  CHECK_FALSE(feed(*f, to_server(text(kRequest), 40000, 25)));
  CHECK_FALSE(feed(*f, to_client(text("HTTP/1.1 200 OK\r\n"), 40000, 25)));
  // A new connection on the same ports (SYN) is looked at afresh.
  CHECK_FALSE(feed(*f, tcp4(kClient, kServer, 40000, 25, {}, tcpflag::syn)));
  CHECK(feed(*f, to_server(text(kRequest), 40000, 25)) == Verdict(1));
}

TEST_CASE("http: either direction may be seen first, in IPv4 or IPv6") {
  auto f = make("http");
  CHECK(feed(*f, to_client(text("HTTP/1.1 304 Not Modified\r\n\r\n"))) == Verdict(0));
  CHECK(feed(*f, to_server(text("more"))) == Verdict(0));
  const auto a = ip6("2001:db8::1"), b = ip6("2001:db8::2");
  const Bytes req6 = ethernet(0x86DD) + ipv6(6, a, b, tcp(5555, 8080, 0x18, {}, text(kRequest)));
  const Bytes ack6 = ethernet(0x86DD) + ipv6(6, b, a, tcp(8080, 5555, 0x10));
  CHECK(feed(*f, req6) == Verdict(1));
  CHECK(feed(*f, ack6) == Verdict(1));
}

TEST_CASE("http: a request line cut at every byte, in packets and in stream chunks") {
  const Bytes req = text(kRequest);
  const std::size_t line_end = kRequest.find('\n');
  for (std::size_t cut = 1; cut < req.size(); ++cut) {
    CAPTURE(cut);
    const Bytes first(req.begin(), req.begin() + static_cast<std::ptrdiff_t>(cut));
    const Bytes rest(req.begin() + static_cast<std::ptrdiff_t>(cut), req.end());
    const bool whole_line_first = cut > line_end;
    {
      auto f = make("http");
      const Verdict a = feed(*f, to_server(first));
      const Verdict b = feed(*f, to_server(rest));
      CHECK(a == (whole_line_first ? Verdict(1) : std::nullopt));
      CHECK(b == Verdict(1));
      CHECK(feed(*f, to_client(text("HTTP/1.1 200 OK\r\n"))) == Verdict(0));
    }
    {
      auto f = make("http");
      const FlowInfo fi = flow_info(cut);
      const auto [a, b] = split(*f, fi, req, cut);
      CHECK(a == (whole_line_first ? Verdict(1) : std::nullopt));
      CHECK(b == Verdict(1));
      CHECK(chunk(*f, fi, 1, 0, text("HTTP/1.1 200 OK\r\n")) == Verdict(0));
    }
  }
  // One byte per chunk: the chunk with the line's LF decides.
  auto f = make("http");
  const FlowInfo fi = flow_info(1);
  for (std::size_t i = 0; i < req.size(); ++i) {
    const Verdict v = chunk(*f, fi, 0, i, std::span<const std::uint8_t>(req).subspan(i, 1));
    CHECK(v == (i >= line_end ? Verdict(1) : std::nullopt));
  }
}

TEST_CASE("http: streams end, join late or have gaps") {
  auto f = make("http");
  const FlowInfo one = flow_info(1), two = flow_info(2), three = flow_info(3);
  CHECK(chunk(*f, one, 0, 0, text(kRequest)) == Verdict(1));
  CHECK(chunk(*f, one, 1, 0, text("HTTP/1.1 200 OK\r\n\r\n"), true) == Verdict(0));
  CHECK(stat(*f, "flows") == 1);
  CHECK(chunk(*f, one, 0, kRequest.size(), {}, true) == Verdict(1));
  CHECK(stat(*f, "flows") == 0);  // both directions ended: state dropped
  // Joined after its start: the beginning is gone.
  CHECK_FALSE(chunk(*f, two, 0, 100, text(kRequest)));
  // A gap inside the first bytes.
  CHECK_FALSE(chunk(*f, three, 0, 0, text("GET /a")));
  CHECK_FALSE(chunk(*f, three, 0, 10, text(" HTTP/1.1\r\n")));
  // An unfinished request line at the end of its direction.
  const FlowInfo four = flow_info(4);
  CHECK_FALSE(chunk(*f, four, 0, 0, text("GET /index"), true));
  CHECK(chunk(*f, four, 1, 0, text("HTTP/1.1 200 OK\r\n")) == Verdict(0));
  // An overlapping retransmission adds only its new bytes.
  const FlowInfo five = flow_info(5);
  CHECK_FALSE(chunk(*f, five, 0, 0, text("GET /x")));
  CHECK(chunk(*f, five, 0, 4, text("/x HTTP/1.0\r\n")) == Verdict(1));
}

TEST_CASE("http: a request target longer than the buffer is still a request") {
  auto f = make("http");
  const FlowInfo fi = flow_info(1);
  const Bytes start = text("GET /");
  CHECK_FALSE(chunk(*f, fi, 0, 0, start));
  CHECK(chunk(*f, fi, 0, start.size(), Bytes(5000, 'a')) == Verdict(1));
  // Past the buffer without a request line: no.
  auto g = make("http");
  CHECK_FALSE(chunk(*g, fi, 0, 0, text("HTTP/1.")));
  CHECK_FALSE(chunk(*g, fi, 0, 7, Bytes(5000, '1')));
  CHECK(stat(*g, "not_detected") == 0);  // the other direction may still say yes
  CHECK(stat(*g, "flows") == 1);
}

TEST_CASE("http: idle flows expire and the table is bounded") {
  auto f = make("http");
  Recorder r;
  CHECK(feed(*f, to_server(text(kRequest)), 10 * kSecond) == Verdict(1));
  f->tick(200 * kSecond, r);
  CHECK(stat(*f, "flows") == 1);
  CHECK(feed(*f, to_client(text("data")), 200 * kSecond) == Verdict(1));
  f->tick(400 * kSecond, r);
  CHECK(stat(*f, "flows") == 1);
  f->tick(501 * kSecond, r);
  CHECK(stat(*f, "flows") == 0);
  CHECK(stat(*f, "expired") == 1);
  // Forgotten: its later bytes start a flow that is not HTTP.
  CHECK_FALSE(feed(*f, to_client(text("data")), 502 * kSecond));

  auto g = make("http");
  const std::size_t n = 65536 + 10;
  auto flow_frame = [](std::size_t i, const Bytes& payload) {
    const Ip4 src{10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                  static_cast<std::uint8_t>(i)};
    return tcp4(src, kServer, 1234, 80, payload);
  };
  const Bytes req = text("GET / HTTP/1.1\r\n");
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < n; ++i)
    accepted += feed(*g, flow_frame(i, req), i).has_value();
  CHECK(accepted == n);
  CHECK(stat(*g, "flows") == 65536);
  CHECK(stat(*g, "evicted") == 10);
  // The least recently used were evicted; the newest are remembered.
  CHECK_FALSE(feed(*g, flow_frame(0, text("body")), n));
  CHECK(feed(*g, flow_frame(n - 1, text("body")), n) == Verdict(1));
}

// SSH and RTSP ---------------------------------------------------------------

TEST_CASE("ssh: the identification string at the start of either direction") {
  for (std::string_view id : {"SSH-2.0-OpenSSH_9.6\r\n", "SSH-1.99-Cisco-1.25\r\n"}) {
    CAPTURE(id);
    auto f = make("ssh");
    CHECK(feed(*f, to_client(text(id), 40000, 22)) == Verdict(0));
    CHECK(feed(*f, to_server(text("SSH-2.0-PuTTY\r\n"), 40000, 22)) == Verdict(0));
    CHECK(feed(*f, to_server(Bytes(100, 0xAB), 40000, 22)) == Verdict(0));
    CHECK(feed(*f, to_client({}, 40000, 22)) == Verdict(0));
  }
  for (std::string_view bad : {"SSH-3.0-x\r\n", "SSH-1.5-x\r\n", "SSH-2.0x\r\n", "ssh-2.0-x\r\n",
                               " SSH-2.0-x\r\n", "220 SSH-2.0-x\r\n"}) {
    CAPTURE(bad);
    auto f = make("ssh");
    CHECK_FALSE(feed(*f, to_client(text(bad), 40000, 22)));
    CHECK_FALSE(feed(*f, to_client(text("SSH-2.0-x\r\n"), 40000, 22)));
  }
  // The server's banner is not SSH, the client's is: either direction decides yes.
  auto f = make("ssh");
  CHECK_FALSE(feed(*f, to_client(text("hello\r\n"), 40000, 22)));
  CHECK(feed(*f, to_server(text("SSH-2.0-x\r\n"), 40000, 22)) == Verdict(0));
  CHECK(feed(*f, to_client(text("anything"), 40000, 22)) == Verdict(0));
  // Both say no: rejected for good.
  auto g = make("ssh");
  CHECK_FALSE(feed(*g, to_client(text("hello\r\n"), 40000, 22)));
  CHECK_FALSE(feed(*g, to_server(text("hi\r\n"), 40000, 22)));
  CHECK(stat(*g, "not_detected") == 1);
}

TEST_CASE("ssh: cut at every byte across stream chunks; a cut-off banner at the end is no") {
  const Bytes id = text("SSH-2.0-OpenSSH_9.6\r\n");
  for (std::size_t cut = 1; cut < id.size(); ++cut) {
    CAPTURE(cut);
    auto f = make("ssh");
    const FlowInfo fi = flow_info(cut);
    const auto [a, b] = split(*f, fi, id, cut);
    CHECK(a == (cut >= 8 ? Verdict(0) : std::nullopt));
    CHECK(b == Verdict(0));
    CHECK(chunk(*f, fi, 1, 0, text("SSH-2.0-srv\r\n")) == Verdict(0));
  }
  for (std::size_t n = 0; n < 8; ++n) {
    auto f = make("ssh");
    const FlowInfo fi = flow_info(1);
    CHECK_FALSE(chunk(*f, fi, 0, 0, std::span<const std::uint8_t>(id).first(n), true));
    CHECK_FALSE(chunk(*f, fi, 1, 0, text("x"), true));
    CHECK(stat(*f, "flows") == 0);
  }
}

TEST_CASE("rtsp: RTSP/1.0 request and status lines") {
  for (std::string_view m : {"OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN",
                             "ANNOUNCE", "RECORD", "GET_PARAMETER", "SET_PARAMETER", "REDIRECT"}) {
    auto f = make("rtsp");
    const std::string line = std::string(m) + " rtsp://cam.example/stream RTSP/1.0\r\nCSeq: 1\r\n";
    CAPTURE(line);
    CHECK(feed(*f, to_server(text(line), 40000, 554)) == Verdict(0));
    CHECK(feed(*f, to_client(text("RTP data"), 40000, 554)) == Verdict(0));
  }
  auto f = make("rtsp");
  CHECK(feed(*f, to_client(text("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"), 40000, 554)) == Verdict(0));
  for (std::string_view bad :
       {"GET / RTSP/1.0\r\n", "PLAY rtsp://x HTTP/1.1\r\n", "PLAY rtsp://x RTSP/2.0\r\n",
        "RTSP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\n", "play rtsp://x RTSP/1.0\r\n"}) {
    CAPTURE(bad);
    auto g = make("rtsp");
    CHECK_FALSE(feed(*g, to_server(text(bad), 40000, 554)));
  }
  // Cut at every byte in stream chunks.
  const Bytes req = text("SETUP rtsp://cam/track1 RTSP/1.0\r\nCSeq: 3\r\n\r\n");
  for (std::size_t cut = 1; cut < req.size(); ++cut) {
    auto g = make("rtsp");
    const FlowInfo fi = flow_info(cut);
    const auto [a, b] = split(*g, fi, req, cut);
    CHECK((a.has_value() || b == Verdict(0)));
  }
}

// DNS ------------------------------------------------------------------------

TEST_CASE("dns: well-formed messages over UDP, TCP and streams; class = QTYPE") {
  auto f = make("dns");
  CHECK(feed(*f, udp4(dns_message("example.com", 1))) == Verdict(1));
  CHECK(feed(*f, udp4(dns_message("example.com", 28))) == Verdict(28));
  CHECK(feed(*f, udp4(dns_message("example.com", 15, true))) == Verdict(15));
  CHECK(feed(*f, udp4(dns_message(".", 2))) == Verdict(2));  // the root
  CHECK(feed(*f, udp4(dns_message("_svc._tcp.local", 33, false, 0x8001), 5353, 5353)) ==
        Verdict(33));
  CHECK(feed(*f, udp4(dns_message("example.com", 255, false, 255), 1, 2)) == Verdict(255));
  CHECK(stat(*f, "queries") == 5);
  CHECK(stat(*f, "responses") == 1);
  // TCP: the 2-byte length prefix.
  const Bytes m = dns_message("example.org", 16);
  CHECK(feed(*f, to_server(with_length(m), 40000, 53)) == Verdict(16));
  CHECK_FALSE(feed(*f, to_server(m, 40000, 53)));
  CHECK_FALSE(feed(*f, to_server({}, 40000, 53)));
  const FlowInfo fi = flow_info(1);
  CHECK(chunk(*f, fi, 0, 0, with_length(m)) == Verdict(16));
  CHECK_FALSE(chunk(*f, fi, 0, 0, m));
  // Not UDP or TCP.
  CHECK_FALSE(feed(*f, ethernet(0x0800) + ipv4(1, kClient, kServer, icmp(8, 0, m))));
}

TEST_CASE("dns: malformed headers, names and questions are rejected") {
  auto f = make("dns");
  auto reject = [&](const Bytes& payload) {
    CHECK_FALSE(feed(*f, udp4(payload)));
    CHECK_FALSE(feed(*f, to_server(with_length(payload), 40000, 53)));
  };
  auto question = [](Bytes b, const Bytes& name) {
    b = b + name;
    put16(b, 1);
    put16(b, 1);
    return b;
  };
  // Every truncation.
  const Bytes good = dns_message("www.example.com", 1);
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    reject(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
  }
  reject(question(dns_header(false, 0), dns_name("example.com")));     // qdcount 0
  reject(question(dns_header(false, 1, 3), dns_name("example.com")));  // opcode 3
  reject(question(dns_header(false, 1, 15), dns_name("example.com")));
  reject(dns_message("example.com", 1, false, 7));  // no such class
  // A label of 64 bytes; names over 255 bytes.
  reject(question(dns_header(), dns_name(std::string(64, 'a') + ".com")));
  const std::string l63(63, 'b');
  reject(question(dns_header(), dns_name(l63 + "." + l63 + "." + l63 + "." + l63)));
  CHECK(feed(*f, udp4(question(dns_header(), dns_name(l63 + "." + l63 + "." + l63 + ".c")))) ==
        Verdict(1));
  // Label types 01 and 10.
  reject(question(dns_header(), Bytes{0x41, 'a', 0}));
  reject(question(dns_header(), Bytes{0x81, 'a', 0}));
  // Compression: a loop onto itself, forwards, into the header, past the end.
  reject(question(dns_header(), Bytes{0xC0, 12}));
  reject(question(dns_header(), Bytes{1, 'a', 0xC0, 12}));
  reject(question(dns_header(), Bytes{1, 'a', 0xC0, 16, 1, 'b', 0}));
  reject(question(dns_header(), Bytes{0xC0, 2}));
  reject(question(dns_header(), Bytes{0xC3, 0xFF}));
  reject(dns_header() + Bytes{1, 'a', 0xC0});
  // The name runs to the end without its terminating zero.
  reject(dns_header() + Bytes{3, 'c', 'o', 'm', 3, 'n', 'e', 't'});
  // TCP length prefix shorter than the question.
  Bytes shortlen = with_length(good);
  shortlen[1] = static_cast<std::uint8_t>(shortlen[1] - 1);
  CHECK_FALSE(feed(*f, to_server(shortlen, 40000, 53)));
}

// TLS ------------------------------------------------------------------------

TEST_CASE("tls: a ClientHello detects the flow; sni is a case-insensitive glob") {
  auto any = make("tls");
  CHECK(feed(*any, to_server(hello_record("www.example.com"), 40000, 443)) == Verdict(0));
  CHECK(feed(*any, to_client(Bytes{22, 3, 3, 0, 1, 2}, 40000, 443)) == Verdict(0));
  CHECK(feed(*any, to_server(Bytes{23, 3, 3, 0, 1, 9}, 40000, 443)) == Verdict(0));
  CHECK(feed(*any, to_server(hello_record(std::nullopt), 40001, 443)) == Verdict(0));
  CHECK(stat(*any, "client_hellos") == 2);

  const std::vector<std::tuple<std::string, std::optional<std::string>, bool>> cases = {
      {"*.example.com", "www.example.com", true},
      {"*.example.com", "WWW.Example.COM", true},
      {"*.example.com", "a.b.example.com", true},
      {"*.example.com", "example.com", false},
      {"*.example.com", "www.example.org", false},
      {"*.example.com", std::nullopt, false},
      {"example.com", "example.com", true},
      {"example.com", "example.co", false},
      {"ex?mple.*", "exAmple.net", true},
      {"ex?mple.*", "exmple.net", false},
      {"*", "anything", true},
      {"*a*b*c", "xxaxxbxxbxc", true},
      {"*a*b*c", "xxaxxbxxbxcx", false},
  };
  for (const auto& entry : cases) {
    const std::string& glob = std::get<0>(entry);
    const std::optional<std::string>& sni = std::get<1>(entry);
    const bool want = std::get<2>(entry);
    CAPTURE(glob);
    CAPTURE(sni.value_or("(none)"));
    auto f = make("tls", {{"sni", glob}});
    CHECK(feed(*f, to_server(hello_record(sni), 40000, 443)).has_value() == want);
    CHECK(feed(*f, to_client(Bytes{22, 3, 3, 0, 1, 2}, 40000, 443)).has_value() == want);
    CHECK(feed(*f, to_server(Bytes{23, 3, 3, 0, 1, 9}, 40000, 443)).has_value() == want);
  }
  CHECK(error_of("tls", {{"sni", std::string()}}).starts_with("node n7 (tls): option 'sni'"));
}

TEST_CASE("tls: a ClientHello across records and stream chunks, cut at every byte") {
  const Bytes hs = client_hello("video.example.net").b;
  for (std::size_t record : {std::size_t{16384}, std::size_t{40}, std::size_t{1}}) {
    const Bytes raw = records(hs, record);
    CAPTURE(record);
    for (std::size_t cut = 1; cut < raw.size(); ++cut) {
      CAPTURE(cut);
      auto f = make("tls", {{"sni", std::string("*.EXAMPLE.net")}});
      const FlowInfo fi = flow_info(cut);
      const auto [a, b] = split(*f, fi, raw, cut);
      CHECK_FALSE(a);
      CHECK(b == Verdict(0));
      CHECK(chunk(*f, fi, 1, 0, Bytes{22, 3, 3, 0, 1, 2}) == Verdict(0));
      auto g = make("tls", {{"sni", std::string("other.example.net")}});
      const auto [c, d] = split(*g, fi, raw, cut);
      CHECK_FALSE(c);
      CHECK_FALSE(d);
    }
  }
  // In TCP segments too.
  const Bytes raw = records(hs, 100);
  auto f = make("tls");
  REQUIRE(raw.size() > 110);
  CHECK_FALSE(feed(*f, to_server(Bytes(raw.begin(), raw.begin() + 110), 40000, 443)));
  CHECK(feed(*f, to_server(Bytes(raw.begin() + 110, raw.end()), 40000, 443)) == Verdict(0));
}

TEST_CASE("tls: truncations and length lies never pass") {
  const Writer w = client_hello("www.example.com");
  const Bytes raw = records(w.b);
  // Every truncation, with the end of the direction.
  for (std::size_t n = 0; n < raw.size(); ++n) {
    CAPTURE(n);
    auto f = make("tls");
    const FlowInfo fi = flow_info(1);
    CHECK_FALSE(chunk(*f, fi, 0, 0, std::span<const std::uint8_t>(raw).first(n), true));
    CHECK_FALSE(chunk(*f, fi, 1, 0, Bytes{22, 3, 3, 0, 1, 2}));
  }
  // Every length field, off by one either way, zero and all ones.
  std::vector<std::pair<std::size_t, std::size_t>> lengths{{3, 2}};  // the record's
  for (const auto& [pos, width] : w.lengths)
    lengths.emplace_back(pos + 5, width);
  for (const auto& field : lengths) {
    const std::size_t pos = field.first, width = field.second;
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < width; ++i)
      value = value << 8 | raw[pos + i];
    const std::uint32_t all = (1u << (8 * width)) - 1;
    for (std::uint32_t lie : {value + 1, value - 1, 0u, all}) {
      if (lie == value || lie > all) continue;
      CAPTURE(pos);
      CAPTURE(lie);
      Bytes bad = raw;
      for (std::size_t i = 0; i < width; ++i)
        bad[pos + width - 1 - i] = static_cast<std::uint8_t>(lie >> (8 * i) & 0xFFu);
      auto f = make("tls");
      const FlowInfo fi = flow_info(1);
      CHECK_FALSE(chunk(*f, fi, 0, 0, bad, true));
      auto g = make("tls");
      CHECK_FALSE(feed(*g, to_server(bad, 40000, 443)));
    }
  }
  // Not a handshake record; not a ClientHello; SSLv2; record version 2.x.
  auto f = make("tls");
  CHECK_FALSE(feed(*f, to_server(records(w.b, 16384, 23), 1, 443)));
  Bytes server_hello = w.b;
  server_hello[0] = 2;
  CHECK_FALSE(feed(*f, to_server(records(server_hello), 2, 443)));
  CHECK_FALSE(feed(*f, to_server(Bytes{0x80, 0x2E, 0x01, 0x03, 0x01}, 3, 443)));
  Bytes v2 = raw;
  v2[1] = 2;
  CHECK_FALSE(feed(*f, to_server(v2, 4, 443)));
  // A ClientHello larger than the 16 KiB buffer.
  const Bytes huge = records(client_hello("a.example", 17000).b);
  const FlowInfo fi = flow_info(9);
  CHECK_FALSE(chunk(*f, fi, 0, 0, huge));
  const Bytes big = records(client_hello("a.example", 15000).b);
  CHECK(chunk(*f, flow_info(10), 0, 0, big) == Verdict(0));
}

// Everything -----------------------------------------------------------------

TEST_CASE("every protocol filter takes every frame of the standard corpus") {
  const auto corpus = standard_corpus();
  for (std::string_view name : {"http", "ssh", "rtsp", "dns", "tls"}) {
    CAPTURE(name);
    auto f = make(name);
    std::size_t accepted = 0;
    for (const auto& frame : corpus)
      accepted += feed(*f, frame.bytes).has_value();
    // Each frame alone too, on a fresh filter, also as a stream chunk.
    for (const auto& frame : corpus) {
      CAPTURE(frame.name);
      auto g = make(name);
      const Verdict v = feed(*g, frame.bytes);
      const FlowInfo fi = flow_info(1);
      chunk(*g, fi, 0, 0, frame.bytes, true);
      if (frame.name == "ipv4-tcp-psh-ack-http")
        CHECK(v == (name == "http" ? Verdict(1) : Verdict()));
      if (frame.name == "ipv4-udp-dns-query" || frame.name == "ipv6-udp-dns" ||
          frame.name == "ipv4-udp-dns-reply")
        CHECK(v == (name == "dns" ? Verdict(1) : Verdict()));
      if (frame.name.starts_with("trunc/qinq-88a8-200-8100-300-ipv4-udp/")) CHECK_FALSE(v);
    }
    Recorder r;
    f->tick(~std::uint64_t{0}, r);
    f->finish(r);
    if (name != "dns") CHECK(stat(*f, "flows") == 0);
    if (name == "dns") CHECK(accepted >= 4);
  }
}
