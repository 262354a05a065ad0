// Application-protocol filters: http, ssh, rtsp and tls detect a protocol
// from the first bytes of each direction of a flow and then accept every
// block of the flow; dns checks each block on its own.
//
// Flows: a stream block belongs to its tcpstream flow (FlowInfo::id); a
// packet to its bidirectional TCP 5-tuple. Packets are taken in arrival order
// (no sequence tracking: put tcpstream upstream for reordering and
// retransmissions). A direction's first payload bytes are buffered (up to a
// per-protocol limit) until the protocol says yes or no. The flow is detected
// as soon as one direction says yes and rejected once both say no; blocks
// seen before the decision are rejected. Packet flows live in a bounded
// table (least recently used evicted, idle ones expired by tick()); a SYN
// without ACK starts the flow afresh. Stream flows are dropped once both
// directions have ended.
#include <algorithm>
#include <array>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "factories.h"

namespace srl::filters::user {
namespace {

using Bytes = std::span<const std::uint8_t>;

enum class Scan : std::uint8_t { more, yes, no };

constexpr std::size_t kMaxFlows = 65536;
constexpr std::uint64_t kIdleNs = 300'000'000'000;  // 5 minutes without a block
// All flows' detection buffers together; past it, a direction that still
// needs bytes is decided "no" rather than growing memory without bound.
constexpr std::size_t kBufferBudget = std::size_t{32} << 20;
constexpr std::uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

std::uint16_t be16(Bytes b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// How the start of `b` at `at` compares with `pat`, where '#' stands for a
// digit and '%' for a digit 1-5: a mismatch, a proper prefix of it (more
// bytes needed) or all of it.
enum class Prefix : std::uint8_t { mismatch, partial, full };
Prefix match_at(Bytes b, std::size_t at, std::string_view pat) {
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (at + i >= b.size()) return Prefix::partial;
    const auto c = b[at + i];
    const bool ok = pat[i] == '#'   ? c >= '0' && c <= '9'
                    : pat[i] == '%' ? c >= '1' && c <= '5'
                                    : c == static_cast<std::uint8_t>(pat[i]);
    if (!ok) return Prefix::mismatch;
  }
  return Prefix::full;
}

// ---------------------------------------------------------------------------
// The flow table and the detection driver shared by http, ssh, rtsp and tls.

struct FlowKey {
  std::array<std::uint8_t, 16> a{}, b{};
  std::uint64_t id = 0;  // stream flows
  std::uint16_t pa = 0, pb = 0;
  std::uint8_t family = 0;
  bool stream = false;
  bool operator==(const FlowKey&) const = default;
};

struct FlowKeyHash {
  std::size_t operator()(const FlowKey& k) const {
    std::uint64_t h = 0xCBF29CE484222325ull;
    auto mix = [&h](std::uint64_t v) {
      h ^= v;
      h *= 0x100000001B3ull;
      h ^= h >> 29;
    };
    for (std::size_t i = 0; i < 16; i += 4) {
      mix(std::uint64_t{k.a[i]} << 24 | std::uint64_t{k.a[i + 1]} << 16 |
          std::uint64_t{k.a[i + 2]} << 8 | k.a[i + 3]);
      mix(std::uint64_t{k.b[i]} << 24 | std::uint64_t{k.b[i + 1]} << 16 |
          std::uint64_t{k.b[i + 2]} << 8 | k.b[i + 3]);
    }
    mix(k.id);
    mix(std::uint64_t{k.pa} << 32 | std::uint64_t{k.pb} << 16 | std::uint64_t{k.family} << 1 |
        (k.stream ? 1u : 0u));
    return static_cast<std::size_t>(h);
  }
};

// The key of a packet's flow, and which side of it the packet comes from
// (the lower address/port pair is side 0).
std::pair<FlowKey, std::uint8_t> packet_key(const ParsedPacket& p) {
  FlowKey k;
  k.family = static_cast<std::uint8_t>(p.l3);
  const bool swap = std::tie(p.saddr, p.sport) > std::tie(p.daddr, p.dport);
  k.a = swap ? p.daddr : p.saddr;
  k.b = swap ? p.saddr : p.daddr;
  k.pa = swap ? p.dport : p.sport;
  k.pb = swap ? p.sport : p.dport;
  return {k, swap ? std::uint8_t{1} : std::uint8_t{0}};
}

// What a protocol says about a direction's first bytes.
struct Detection {
  Scan scan = Scan::more;
  std::uint16_t cls = 0;  // the class of the block that completes detection
  bool request = false;   // http: detected from a request (its method is cls)
};

struct Direction {
  Scan verdict = Scan::more;
  bool started = false;  // payload seen
  bool ended = false;    // stream: stream_end seen
  std::uint64_t next = 0;
  std::vector<std::uint8_t> buf;  // the first bytes, while undecided
};

struct Flow {
  FlowKey key;
  std::uint64_t last_ns = 0;
  Scan decision = Scan::more;
  std::uint16_t cls = 0;  // http: the method of the last request seen
  std::array<Direction, 2> dir;
};

// Protocol: Detection detect(Bytes first_bytes, bool complete) where
// `complete` says no more bytes will come (the direction ended or the buffer
// is full), so `more` is not an answer then; std::uint16_t classify(Bytes
// payload, std::uint16_t& flow_cls) for blocks of a detected flow;
// on_detected(const Detection&); buffer_limit(); add_stats(FilterStats&).
template <class Protocol>
class DetectFilter final : public UserFilter {
 public:
  explicit DetectFilter(Protocol proto) : proto_(std::move(proto)) {}

  void process(const Block& block, Emitter& out) override {
    FlowKey key;
    std::uint8_t side = 0;
    Bytes payload;
    bool end = false;
    const bool stream = block.kind == BlockKind::stream;
    std::uint64_t offset = 0;
    bool fresh = false;
    if (stream) {
      if (block.flow == nullptr || block.direction > 1) return;
      key.stream = true;
      key.id = block.flow->id;
      side = block.direction;
      payload = block.data;
      end = block.stream_end;
      offset = block.stream_offset;
    } else {
      ParsedPacket local;
      const ParsedPacket* p = &headers_of(block, local);
      if (p->l4 != L4Kind::tcp) return;
      payload = l4_payload(*p, block.data);
      std::tie(key, side) = packet_key(*p);
      fresh = (p->tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
      end = (p->tcp_flags & (kTcpFin | kTcpRst)) != 0;
    }

    auto it = lookup(key);
    if (fresh && it != lru_.end()) {
      drop(it);
      it = lru_.end();
    }
    if (it == lru_.end()) {
      // Packets without payload start nothing; a stream's end is kept so
      // that the flow is dropped once both directions have ended.
      if (payload.empty() && !(stream && end)) return;
      it = create(key);
    }
    Flow& f = *it;
    f.last_ns = std::max(f.last_ns, block.ts_ns);

    std::optional<std::uint16_t> cls;
    if (f.decision == Scan::yes) {
      cls = proto_.classify(payload, f.cls);
    } else if (f.decision == Scan::more) {
      cls = feed(f, side, payload, stream, offset, end);
    }
    if (stream && end) {
      f.dir[side].ended = true;
      if (f.dir[0].ended && f.dir[1].ended) drop(it);
    }
    if (cls) out.accept(*cls);
  }

  void tick(std::uint64_t now_ns, Emitter&) override {
    while (!lru_.empty() && now_ns > lru_.back().last_ns &&
           now_ns - lru_.back().last_ns > kIdleNs) {
      drop(std::prev(lru_.end()));
      ++expired_;
    }
  }

  FilterStats stats() const override {
    FilterStats s{{"flows", lru_.size()},       {"detected", detected_},
                  {"not_detected", rejected_},  {"evicted", evicted_},
                  {"expired", expired_},        {"buffered_bytes", buffered_},
                  {"buffer_full", buffer_full_}};
    proto_.add_stats(s);
    return s;
  }

 private:
  using List = std::list<Flow>;

  List::iterator lookup(const FlowKey& key) {
    auto found = index_.find(key);
    if (found == index_.end()) return lru_.end();
    lru_.splice(lru_.begin(), lru_, found->second);
    return found->second;
  }

  List::iterator create(const FlowKey& key) {
    if (index_.size() >= kMaxFlows) {
      drop(std::prev(lru_.end()));
      ++evicted_;
    }
    lru_.emplace_front();
    lru_.front().key = key;
    index_.emplace(key, lru_.begin());
    return lru_.begin();
  }

  void release(Direction& d) {
    buffered_ -= d.buf.size();
    std::vector<std::uint8_t>().swap(d.buf);
  }

  void drop(List::iterator it) {
    release(it->dir[0]);
    release(it->dir[1]);
    index_.erase(it->key);
    lru_.erase(it);
  }

  // Adds a block's bytes to its direction's start and decides when it can;
  // returns the class when this block completes a detection.
  std::optional<std::uint16_t> feed(Flow& f, std::uint8_t side, Bytes payload, bool stream,
                                    std::uint64_t offset, bool end) {
    Direction& d = f.dir[side];
    if (d.verdict != Scan::more) return std::nullopt;
    Bytes add = payload;
    if (!d.started) {
      if (payload.empty()) {
        if (end) settle(f, d, Scan::no);
        return std::nullopt;
      }
      d.started = true;
      // A stream joined after its start: its first bytes are gone.
      if (stream && offset != 0) {
        settle(f, d, Scan::no);
        return std::nullopt;
      }
      d.next = offset;
    } else if (stream) {
      if (offset > d.next) {  // a gap: the start is not contiguous
        settle(f, d, Scan::no);
        return std::nullopt;
      }
      const std::uint64_t behind = d.next - offset;
      add = behind >= payload.size() ? Bytes{} : payload.subspan(behind);
    }
    if (add.empty() && !end) return std::nullopt;

    const std::size_t limit = proto_.buffer_limit();
    Bytes view;
    if (d.buf.empty()) {
      view = add.first(std::min(add.size(), limit));
    } else {
      const std::size_t take = std::min(add.size(), limit - d.buf.size());
      if (buffered_ + take > kBufferBudget) {
        ++buffer_full_;
        settle(f, d, Scan::no);
        return std::nullopt;
      }
      d.buf.insert(d.buf.end(), add.begin(), add.begin() + static_cast<std::ptrdiff_t>(take));
      buffered_ += take;
      view = d.buf;
    }
    d.next += add.size();
    const bool complete = end || view.size() >= limit;
    Detection det = proto_.detect(view, complete);
    if (det.scan == Scan::more && complete) det.scan = Scan::no;
    if (det.scan == Scan::more && d.buf.empty()) {
      if (buffered_ + view.size() > kBufferBudget) {
        ++buffer_full_;
        det.scan = Scan::no;
      } else {
        d.buf.assign(view.begin(), view.end());
        buffered_ += view.size();
      }
    }
    if (det.scan == Scan::more) return std::nullopt;
    settle(f, d, det.scan);
    if (det.scan == Scan::no) return std::nullopt;
    if (det.request) f.cls = det.cls;
    proto_.on_detected(det);
    return det.cls;
  }

  // A direction's verdict, and the flow's once it follows.
  void settle(Flow& f, Direction& d, Scan verdict) {
    d.verdict = verdict;
    release(d);
    if (verdict == Scan::yes) {
      f.decision = Scan::yes;
      release(f.dir[0]);
      release(f.dir[1]);
      ++detected_;
    } else if (f.dir[0].verdict == Scan::no && f.dir[1].verdict == Scan::no) {
      f.decision = Scan::no;
      ++rejected_;
    }
  }

  Protocol proto_;
  List lru_;  // most recently used first
  std::unordered_map<FlowKey, List::iterator, FlowKeyHash> index_;
  std::size_t buffered_ = 0;
  std::uint64_t detected_ = 0, rejected_ = 0, evicted_ = 0, expired_ = 0, buffer_full_ = 0;
};

// ---------------------------------------------------------------------------
// Request and status lines: HTTP/1.x and RTSP/1.0.

struct Method {
  std::string_view name;
  std::uint16_t cls;
};

constexpr std::array kHttpMethods{
    Method{"GET", 1},     Method{"HEAD", 2},   Method{"POST", 3},
    Method{"PUT", 4},     Method{"DELETE", 5}, Method{"CONNECT", 6},
    Method{"OPTIONS", 7}, Method{"TRACE", 8},  Method{"PATCH", 9},
};
constexpr std::array kRtspMethods{
    Method{"OPTIONS", 0},       Method{"DESCRIBE", 0}, Method{"SETUP", 0},
    Method{"PLAY", 0},          Method{"PAUSE", 0},    Method{"TEARDOWN", 0},
    Method{"ANNOUNCE", 0},      Method{"RECORD", 0},   Method{"GET_PARAMETER", 0},
    Method{"SET_PARAMETER", 0}, Method{"REDIRECT", 0},
};

struct LineSyntax {
  std::span<const Method> methods;
  std::string_view version;  // after the target: " HTTP/1.#"
  std::string_view status;   // a status line's start: "HTTP/1.# %##"
};

constexpr LineSyntax kHttpLine{kHttpMethods, " HTTP/1.#", "HTTP/1.# %##"};
constexpr LineSyntax kRtspLine{kRtspMethods, " RTSP/1.0", "RTSP/1.0 %##"};

struct LineScan {
  Scan scan = Scan::no;
  const Method* method = nullptr;  // set once "METHOD SP" is there
  bool in_target = false;          // `more` while reading the request target
};

// METHOD SP target SP version CRLF (a bare LF is taken too). The target is
// visible characters: no controls, no spaces.
LineScan scan_request(Bytes b, const LineSyntax& syn) {
  LineScan r;
  bool partial = false;
  for (const Method& m : syn.methods) {
    const Prefix p = match_at(b, 0, m.name);
    if (p == Prefix::partial) partial = true;
    if (p != Prefix::full) continue;
    if (b.size() == m.name.size()) {
      partial = true;
      continue;
    }
    if (b[m.name.size()] == ' ') {
      r.method = &m;
      break;
    }
  }
  if (r.method == nullptr) {
    r.scan = partial ? Scan::more : Scan::no;
    return r;
  }
  const std::size_t start = r.method->name.size() + 1;
  std::size_t i = start;
  while (i < b.size() && b[i] > 0x20 && b[i] != 0x7F)
    ++i;
  if (i == b.size()) {
    r.scan = Scan::more;
    r.in_target = true;
    return r;
  }
  if (i == start || b[i] != ' ') return r;
  switch (match_at(b, i, syn.version)) {
    case Prefix::mismatch:
      return r;
    case Prefix::partial:
      r.scan = Scan::more;
      return r;
    case Prefix::full:
      break;
  }
  const std::size_t j = i + syn.version.size();
  if (j == b.size() || (b[j] == '\r' && j + 1 == b.size())) {
    r.scan = Scan::more;
  } else if (b[j] == '\n' || (b[j] == '\r' && b[j + 1] == '\n')) {
    r.scan = Scan::yes;
  }
  return r;
}

// VERSION SP 3DIGIT, then SP or the end of the line.
Scan scan_status(Bytes b, const LineSyntax& syn) {
  switch (match_at(b, 0, syn.status)) {
    case Prefix::mismatch:
      return Scan::no;
    case Prefix::partial:
      return Scan::more;
    case Prefix::full:
      break;
  }
  if (b.size() == syn.status.size()) return Scan::more;
  const auto c = b[syn.status.size()];
  return c == ' ' || c == '\r' || c == '\n' ? Scan::yes : Scan::no;
}

class LineProtocol {
 public:
  explicit LineProtocol(const LineSyntax& syn) : syn_(&syn) {}

  static constexpr std::size_t buffer_limit() { return 4096; }

  Detection detect(Bytes b, bool complete) const {
    const LineScan req = scan_request(b, *syn_);
    if (req.scan == Scan::yes) return {Scan::yes, req.method->cls, true};
    // A request target longer than the whole buffer: still a request line.
    if (req.scan == Scan::more && req.in_target && b.size() >= buffer_limit())
      return {Scan::yes, req.method->cls, true};
    const Scan status = scan_status(b, *syn_);
    if (status == Scan::yes) return {Scan::yes, 0, false};
    if (req.scan == Scan::more || status == Scan::more)
      return {complete ? Scan::no : Scan::more, 0, false};
    return {Scan::no, 0, false};
  }

  // A block of a detected flow: one that starts a request carries its
  // method, one that starts a response 0, any other the flow's last method.
  std::uint16_t classify(Bytes b, std::uint16_t& flow_cls) {
    if (b.empty()) return flow_cls;
    const LineScan req = scan_request(b, *syn_);
    if (req.method != nullptr && req.scan != Scan::no) {
      ++requests_;
      flow_cls = req.method->cls;
      return flow_cls;
    }
    if (scan_status(b, *syn_) == Scan::yes) {
      ++responses_;
      return 0;
    }
    return flow_cls;
  }

  void on_detected(const Detection& d) { ++(d.request ? requests_ : responses_); }

  void add_stats(FilterStats& s) const {
    s.emplace_back("requests", requests_);
    s.emplace_back("responses", responses_);
  }

 private:
  const LineSyntax* syn_;
  std::uint64_t requests_ = 0, responses_ = 0;
};

// ---------------------------------------------------------------------------
// SSH: the identification string of protocol 2 (or 1.99, compatible).

class SshProtocol {
 public:
  static constexpr std::size_t buffer_limit() { return 256; }

  static Detection detect(Bytes b, bool complete) {
    Scan s = Scan::no;
    for (std::string_view id : {std::string_view("SSH-2.0-"), std::string_view("SSH-1.99-")}) {
      const Prefix p = match_at(b, 0, id);
      if (p == Prefix::full) return {Scan::yes, 0, false};
      if (p == Prefix::partial) s = complete ? Scan::no : Scan::more;
    }
    return {s, 0, false};
  }

  static std::uint16_t classify(Bytes, std::uint16_t&) { return 0; }
  static void on_detected(const Detection&) {}
  static void add_stats(FilterStats&) {}
};

// ---------------------------------------------------------------------------
// TLS: a ClientHello in handshake records, and its server name.

constexpr std::size_t kMaxHello = 16384;               // handshake message, header included
constexpr std::size_t kTlsBuffer = kMaxHello + 4 * 5;  // room for a few record headers

// Reads a handshake body of `limit` bytes of which `b` are there yet: a
// length that goes past `limit` is a lie (no); past `b`, more is needed.
class Cursor {
 public:
  Cursor(Bytes b, std::size_t limit) : b_(b), limit_(limit) {}
  bool need(std::size_t n) {
    if (pos_ + n > limit_) {
      fail_ = Scan::no;
      return false;
    }
    if (pos_ + n > b_.size()) {
      fail_ = Scan::more;
      return false;
    }
    return true;
  }
  std::uint8_t u8() { return b_[pos_++]; }
  std::uint16_t u16() {
    pos_ += 2;
    return be16(b_, pos_ - 2);
  }
  Bytes take(std::size_t n) {
    pos_ += n;
    return b_.subspan(pos_ - n, n);
  }
  std::size_t pos() const { return pos_; }
  Scan fail() const { return fail_; }

 private:
  Bytes b_;
  std::size_t limit_;
  std::size_t pos_ = 0;
  Scan fail_ = Scan::no;
};

// server_name extension data: ServerNameList <1..2^16-1> of {type, name}.
bool parse_server_name(Bytes ext, std::optional<std::string>& sni) {
  if (ext.size() < 2 || std::size_t{be16(ext, 0)} + 2 != ext.size()) return false;
  std::size_t at = 2;
  if (at == ext.size()) return false;
  while (at < ext.size()) {
    if (ext.size() - at < 3) return false;
    const std::uint8_t type = ext[at];
    const std::size_t len = be16(ext, at + 1);
    at += 3;
    if (len > ext.size() - at) return false;
    if (type == 0 && !sni) {
      if (len == 0) return false;
      sni.emplace(ext.begin() + static_cast<std::ptrdiff_t>(at),
                  ext.begin() + static_cast<std::ptrdiff_t>(at + len));
    }
    at += len;
  }
  return true;
}

// The ClientHello body (after the 4-byte handshake header).
Scan parse_client_hello(Bytes body, std::size_t limit, std::optional<std::string>& sni) {
  Cursor c(body, limit);
  if (!c.need(2 + 32 + 1)) return c.fail();
  if (c.u8() != 3) return Scan::no;  // legacy_version 3.x
  c.take(1 + 32);
  const std::size_t session = c.u8();
  if (session > 32) return Scan::no;
  if (!c.need(session)) return c.fail();
  c.take(session);
  if (!c.need(2)) return c.fail();
  const std::size_t suites = c.u16();
  if (suites < 2 || suites % 2 != 0) return Scan::no;
  if (!c.need(suites)) return c.fail();
  c.take(suites);
  if (!c.need(1)) return c.fail();
  const std::size_t compressions = c.u8();
  if (compressions < 1) return Scan::no;
  if (!c.need(compressions)) return c.fail();
  c.take(compressions);
  if (c.pos() == limit) return Scan::yes;  // no extensions
  if (!c.need(2)) return c.fail();
  const std::size_t total = c.u16();
  if (c.pos() + total != limit) return Scan::no;
  while (c.pos() < limit) {
    if (!c.need(4)) return c.fail();
    const std::uint16_t type = c.u16();
    const std::size_t len = c.u16();
    if (!c.need(len)) return c.fail();
    const Bytes data = c.take(len);
    if (type == 0 && !parse_server_name(data, sni)) return Scan::no;
  }
  return Scan::yes;
}

// Case-insensitive glob: '*' any run of characters, '?' any one.
bool glob_match(std::string_view pat, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && pat[p] != '*' && (pat[p] == '?' || lower(pat[p]) == lower(s[i]))) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*')
    ++p;
  return p == pat.size();
}

class TlsProtocol {
 public:
  explicit TlsProtocol(std::optional<std::string> sni) : sni_(std::move(sni)) {}

  static constexpr std::size_t buffer_limit() { return kTlsBuffer; }

  Detection detect(Bytes raw, bool complete) {
    const Scan s = scan(raw);
    if (s == Scan::more) return {complete ? Scan::no : Scan::more, 0, false};
    return {s, 0, false};
  }

  static std::uint16_t classify(Bytes, std::uint16_t&) { return 0; }
  static void on_detected(const Detection&) {}
  void add_stats(FilterStats& s) const {
    s.emplace_back("client_hellos", hellos_);
    s.emplace_back("sni_mismatch", mismatches_);
  }

 private:
  // Gathers the handshake bytes of the records at the start of `raw` and
  // parses the ClientHello in them.
  Scan scan(Bytes raw) {
    hs_.clear();
    std::size_t at = 0, want = 0;  // want: the whole handshake message, once known
    std::size_t claimed = 0;       // handshake bytes the records say they hold
    while (want == 0 || hs_.size() < want) {
      const std::size_t left = raw.size() - at;
      if (left == 0) break;
      if (raw[at] != 22) return Scan::no;  // handshake
      if (left >= 2 && raw[at + 1] != 3) return Scan::no;
      if (left >= 3 && raw[at + 2] > 4) return Scan::no;
      if (left < 5) break;
      const std::size_t len = be16(raw, at + 3);
      if (len == 0 || len > 16384) return Scan::no;
      claimed += len;
      const std::size_t avail = std::min(len, left - 5);
      hs_.insert(hs_.end(), raw.begin() + static_cast<std::ptrdiff_t>(at + 5),
                 raw.begin() + static_cast<std::ptrdiff_t>(at + 5 + avail));
      at += 5 + avail;
      if (!hs_.empty() && hs_[0] != 1) return Scan::no;  // ClientHello
      if (want == 0 && hs_.size() >= 4) {
        const std::size_t body = std::size_t{hs_[1]} << 16 | std::size_t{hs_[2]} << 8 | hs_[3];
        if (4 + body > kMaxHello) return Scan::no;
        want = 4 + body;
      }
      // Nothing may follow a client's first handshake message in its records.
      if (want != 0 && claimed > want) return Scan::no;
      if (avail < len) break;
    }
    if (want == 0) return Scan::more;
    std::optional<std::string> name;
    const Bytes body = Bytes(hs_).subspan(4, std::min(hs_.size(), want) - 4);
    const Scan s = parse_client_hello(body, want - 4, name);
    if (s != Scan::yes) return s;
    ++hellos_;
    if (!sni_) return s;
    if (name && glob_match(*sni_, *name)) return Scan::yes;
    ++mismatches_;
    return Scan::no;
  }

  std::optional<std::string> sni_;
  std::vector<std::uint8_t> hs_;  // reused across calls
  std::uint64_t hellos_ = 0, mismatches_ = 0;
};

// ---------------------------------------------------------------------------
// DNS: one message per block, checked on its own.

// The QTYPE of a message's first question, when the header and that
// question are well formed.
std::optional<std::uint16_t> dns_qtype(Bytes m) {
  if (m.size() < 12 + 1 + 4) return std::nullopt;
  const unsigned opcode = (m[2] >> 3) & 0x0Fu;
  if (opcode == 3 || opcode > 6) return std::nullopt;
  if (be16(m, 4) == 0) return std::nullopt;  // qdcount
  std::size_t pos = 12, segment = 12, wire = 0, after = 0;
  while (true) {
    if (pos >= m.size()) return std::nullopt;
    const std::uint8_t len = m[pos];
    if ((len & 0xC0) == 0xC0) {
      // Each pointer must go back before the run of labels it ends, which
      // rules out loops; the header is no target.
      if (pos + 1 >= m.size()) return std::nullopt;
      const std::size_t target = std::size_t{len & 0x3Fu} << 8 | m[pos + 1];
      if (target < 12 || target >= segment) return std::nullopt;
      if (after == 0) after = pos + 2;
      pos = segment = target;
      continue;
    }
    if ((len & 0xC0) != 0) return std::nullopt;  // extended label types
    wire += std::size_t{len} + 1;
    if (wire > 255) return std::nullopt;
    if (len == 0) {
      if (after == 0) after = pos + 1;
      break;
    }
    if (pos + 1 + len > m.size()) return std::nullopt;
    pos += 1 + std::size_t{len};
  }
  if (after + 4 > m.size()) return std::nullopt;
  // QCLASS: IN, CH, HS, NONE or ANY (the top bit is mDNS's unicast bit).
  const unsigned qclass = be16(m, after + 2) & 0x7FFFu;
  if (qclass != 1 && qclass != 3 && qclass != 4 && qclass != 254 && qclass != 255)
    return std::nullopt;
  return be16(m, after);
}

class DnsFilter final : public UserFilter {
 public:
  void process(const Block& block, Emitter& out) override {
    Bytes payload;
    bool length_prefix = true;
    if (block.kind == BlockKind::stream) {
      payload = block.data;
    } else {
      ParsedPacket local;
      const ParsedPacket* p = &headers_of(block, local);
      if (p->l4 != L4Kind::tcp && p->l4 != L4Kind::udp) return;
      length_prefix = p->l4 == L4Kind::tcp;
      payload = l4_payload(*p, block.data);
    }
    if (length_prefix) {
      if (payload.size() < 2) return;
      const std::size_t len = be16(payload, 0);
      payload = payload.subspan(2, std::min(len, payload.size() - 2));
    }
    const auto qtype = dns_qtype(payload);
    if (!qtype) return;
    ++((payload[2] & 0x80) != 0 ? responses_ : queries_);
    out.accept(*qtype);
  }

  FilterStats stats() const override { return {{"queries", queries_}, {"responses", responses_}}; }

 private:
  std::uint64_t queries_ = 0, responses_ = 0;
};

}  // namespace

std::unique_ptr<UserFilter> make_http(const UserFilterConfig&) {
  return std::make_unique<DetectFilter<LineProtocol>>(LineProtocol(kHttpLine));
}

std::unique_ptr<UserFilter> make_ssh(const UserFilterConfig&) {
  return std::make_unique<DetectFilter<SshProtocol>>(SshProtocol());
}

std::unique_ptr<UserFilter> make_rtsp(const UserFilterConfig&) {
  return std::make_unique<DetectFilter<LineProtocol>>(LineProtocol(kRtspLine));
}

std::unique_ptr<UserFilter> make_dns(const UserFilterConfig&) {
  return std::make_unique<DnsFilter>();
}

std::unique_ptr<UserFilter> make_tls(const UserFilterConfig& config) {
  auto sni = string_option(config, "sni");
  if (sni && sni->empty())
    config_error(config,
                 "option 'sni' is empty (expected a server-name glob such as "
                 "\"*.example.com\")");
  return std::make_unique<DetectFilter<TlsProtocol>>(TlsProtocol(std::move(sni)));
}

}  // namespace srl::filters::user
