// match: Hyperscan over packet payloads (block mode) and stream chunks
// (streaming mode, so matches across chunk boundaries count), its flags,
// its error messages, its bound on open streams and the standard corpus.
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
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

// match decides; it never emits.
struct Recorder final : RecordingEmitter {
  Recorder() : RecordingEmitter(false) {}
};

UserFilterConfig config(std::string pattern, std::optional<std::string> flags = {}) {
  std::map<std::string, OptionValue> options{{"pattern", std::move(pattern)}};
  if (flags) options["flags"] = *flags;
  return filter_config("match", std::move(options));
}

std::unique_ptr<UserFilter> make(std::string pattern, std::optional<std::string> flags = {}) {
  return filters::make_user_filter(config(std::move(pattern), std::move(flags)));
}

std::string error_of(const UserFilterConfig& c) {
  return config_error_of(c);
}

std::uint64_t stat(const UserFilter& f, std::string_view name) {
  return stat_of(f.stats(), name);
}

Bytes udp_frame(const Bytes& payload) {
  return ethernet(0x0800) +
         ipv4(17, ip4("192.0.2.1"), ip4("198.51.100.2"), udp(4000, 5000, payload));
}

Verdict feed(UserFilter& f, const Bytes& frame) {
  const auto parsed = filters::parse_packet(frame);
  Block b;
  b.data = frame;
  b.wire_len = static_cast<std::uint32_t>(frame.size());
  b.parsed = &parsed;
  Recorder r;
  f.process(b, r);
  return r.accepted;
}

Verdict payload(UserFilter& f, std::string_view s) {
  return feed(f, udp_frame(text(s)));
}

FlowInfo flow_info(std::uint64_t id) {
  FlowInfo fi;
  fi.id = id;
  fi.family = filters::L3Kind::ipv4;
  return fi;
}

Verdict chunk(UserFilter& f, const FlowInfo& flow, std::uint8_t direction, std::uint64_t offset,
              std::string_view data, bool end = false, std::uint64_t ts = 0) {
  const Bytes bytes = text(data);
  Block b;
  b.kind = filters::BlockKind::stream;
  b.data = bytes;
  b.flow = &flow;
  b.direction = direction;
  b.stream_offset = offset;
  b.stream_end = end;
  b.ts_ns = ts;
  Recorder r;
  f.process(b, r);
  return r.accepted;
}

}  // namespace

TEST_CASE("match: block mode over the L4 payload, class 1") {
  auto f = make("GET /secret");
  CHECK(payload(*f, "xx GET /secret yy") == Verdict(1));
  CHECK_FALSE(payload(*f, "GET /public"));
  CHECK_FALSE(payload(*f, "get /secret"));
  // The pattern is not looked for in headers: ARP, a bare TCP segment.
  auto arp = make("\\x08\\x06");
  CHECK_FALSE(feed(*arp, ethernet(0x0806) + arp_request(ip4("192.0.2.1"), ip4("192.0.2.2"))));
  auto port = make("\\x00\\x50");  // port 80 in the TCP header
  CHECK_FALSE(feed(*port, ethernet(0x0800) + ipv4(6, ip4("192.0.2.1"), ip4("192.0.2.2"),
                                                  tcp(80, 80, tcpflag::ack))));
  CHECK(feed(*port, ethernet(0x0800) + ipv4(6, ip4("192.0.2.1"), ip4("192.0.2.2"),
                                            tcp(1, 2, tcpflag::ack, {}, Bytes{0, 0x50}))) ==
        Verdict(1));
  CHECK(stat(*f, "matched") == 1);
  CHECK(stat(*f, "scanned_bytes") == 17 + 11 + 11);
  CHECK(stat(*f, "open_streams") == 0);
}

TEST_CASE("match: flags i, s, m and u") {
  auto plain = make("secret");
  auto caseless = make("secret", "i");
  CHECK_FALSE(payload(*plain, "SeCrEt"));
  CHECK(payload(*caseless, "SeCrEt") == Verdict(1));

  auto dot = make("a.b");
  auto dotall = make("a.b", "s");
  CHECK_FALSE(payload(*dot, "a\nb"));
  CHECK(payload(*dotall, "a\nb") == Verdict(1));

  auto anchored = make("^foo");
  auto multiline = make("^foo", "m");
  CHECK_FALSE(payload(*anchored, "x\nfoo"));
  CHECK(payload(*multiline, "x\nfoo") == Verdict(1));

  // One UTF-8 character between x and y: two bytes without u.
  auto bytes = make("^x.y$");
  auto utf8 = make("^x.y$", "u");
  CHECK_FALSE(payload(*bytes, "x\xC3\xA9y"));
  CHECK(payload(*utf8, "x\xC3\xA9y") == Verdict(1));

  auto all = make("^A.B$", "ismu");
  CHECK(payload(*all, "zz\na\nb") == Verdict(1));
}

TEST_CASE("match: errors name the node, the filter, what is wrong and what was expected") {
  const std::string paren = error_of(config("a("));
  CHECK(paren.starts_with("node n7 (match): option 'pattern': Hyperscan cannot compile \"a(\": "));
  CHECK(paren.find("Missing close parenthesis") != std::string::npos);
  CHECK(paren.find("expected a regular expression") != std::string::npos);
  // Hyperscan's own limits come through too.
  CHECK(error_of(config("a*")).find("empty") != std::string::npos);
  CHECK(error_of(config("(a)\\1")).find("Hyperscan cannot compile") != std::string::npos);
  const std::string flag = error_of(config("abc", "ix"));
  CHECK(flag.starts_with("node n7 (match): option 'flags': unknown flag 'x' (expected letters"));
  CHECK(error_of(config("abc", "I")).find("unknown flag 'I'") != std::string::npos);
  CHECK(error_of(config(std::string("a\0b", 3))).find("NUL") != std::string::npos);
  CHECK(error_of(config("abc", "")) == "(no error)");
}

TEST_CASE("match: streaming mode finds a match across chunk boundaries") {
  const std::string data = "....needle in a haystack....";
  const std::string_view pat = "needle in a haystack";
  const std::size_t start = data.find(pat), end = start + pat.size();
  for (std::size_t cut = 1; cut < data.size(); ++cut) {
    CAPTURE(cut);
    auto f = make("needle in a haystack");
    const FlowInfo fi = flow_info(1);
    const Verdict a = chunk(*f, fi, 0, 0, std::string_view(data).substr(0, cut));
    const Verdict b = chunk(*f, fi, 0, cut, std::string_view(data).substr(cut));
    CHECK(a.has_value() == (cut >= end));
    CHECK(b.has_value() == (cut < end));
    CHECK(stat(*f, "open_streams") == 1);
    CHECK(stat(*f, "scanned_bytes") == data.size());
  }
  // Three chunks; each direction on its own.
  auto f = make("abcdef");
  const FlowInfo fi = flow_info(7);
  CHECK_FALSE(chunk(*f, fi, 0, 0, "xab"));
  CHECK_FALSE(chunk(*f, fi, 1, 0, "cdef"));  // the other direction: no match
  CHECK_FALSE(chunk(*f, fi, 0, 3, "cd"));
  CHECK(chunk(*f, fi, 0, 5, "efx") == Verdict(1));
  CHECK(stat(*f, "open_streams") == 2);
  CHECK_FALSE(chunk(*f, fi, 0, 8, "", true));
  CHECK(stat(*f, "open_streams") == 1);
  CHECK_FALSE(chunk(*f, fi, 1, 4, "abcde", true));
  CHECK(stat(*f, "open_streams") == 0);
  CHECK(stat(*f, "matched") == 1);
}

TEST_CASE("match: end anchors at stream end, gaps restart the stream") {
  auto f = make("done$");
  const FlowInfo fi = flow_info(1);
  CHECK_FALSE(chunk(*f, fi, 0, 0, "work done"));
  CHECK(chunk(*f, fi, 0, 9, "", true) == Verdict(1));
  const FlowInfo two = flow_info(2);
  CHECK_FALSE(chunk(*f, two, 0, 0, "all done but more"));
  CHECK_FALSE(chunk(*f, two, 0, 17, " here", true));

  auto g = make("hello");
  const FlowInfo three = flow_info(3);
  CHECK_FALSE(chunk(*g, three, 0, 0, "hel"));
  CHECK_FALSE(chunk(*g, three, 0, 10, "lo"));  // bytes 3-9 are missing
  CHECK(stat(*g, "restarted") == 1);
  CHECK(chunk(*g, three, 0, 12, "hello") == Verdict(1));
  // A stream first seen past its start is scanned from there.
  const FlowInfo four = flow_info(4);
  CHECK(chunk(*g, four, 0, 1000, "say hello") == Verdict(1));
  // ^ anchors at the start of the stream, not of each chunk.
  auto h = make("^GET ");
  const FlowInfo five = flow_info(5);
  CHECK(chunk(*h, five, 0, 0, "GET /") == Verdict(1));
  CHECK_FALSE(chunk(*h, five, 0, 5, "GET /"));
}

TEST_CASE("match: open streams are bounded, idle ones closed, finish closes all") {
  auto f = make("zzz");
  std::vector<FlowInfo> flows;
  for (std::uint64_t i = 0; i < 16384 + 5; ++i)
    flows.push_back(flow_info(i + 1));
  for (std::size_t i = 0; i < flows.size(); ++i)
    chunk(*f, flows[i], 0, 0, "zz", false, i);
  CHECK(stat(*f, "open_streams") == 16384);
  CHECK(stat(*f, "evicted") == 5);
  // The oldest stream was closed: its bytes are forgotten.
  constexpr std::uint64_t later = 350'000'000'000;
  CHECK_FALSE(chunk(*f, flows[0], 0, 2, "z", false, later));
  CHECK(chunk(*f, flows.back(), 0, 2, "z", false, later) == Verdict(1));
  Recorder r;
  f->tick(400'000'000'000, r);
  CHECK(stat(*f, "open_streams") == 2);
  CHECK(stat(*f, "expired") == 16382);
  f->finish(r);
  CHECK(stat(*f, "open_streams") == 0);
}

TEST_CASE("match: every frame of the standard corpus, as packets and as chunks") {
  auto f = make("\\x00\\x00", "s");
  std::size_t accepted = 0;
  std::uint64_t id = 0;
  for (const auto& frame : standard_corpus()) {
    accepted += feed(*f, frame.bytes).has_value();
    const FlowInfo fi = flow_info(++id % 7);
    Block b;
    b.kind = filters::BlockKind::stream;
    b.data = frame.bytes;
    b.flow = &fi;
    b.direction = static_cast<std::uint8_t>(id % 2);
    b.stream_offset = 0;
    b.stream_end = id % 3 == 0;
    Recorder r;
    f->process(b, r);
  }
  CHECK(accepted > 0);
  Recorder r;
  f->finish(r);
  CHECK(stat(*f, "open_streams") == 0);
}
