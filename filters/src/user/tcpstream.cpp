// tcpstream: TCP reassembly. Packet blocks in, stream blocks out.
//
// What it promises:
// - A flow is a bidirectional 5-tuple (IPv4 or IPv6). Its client is the
//   sender of the SYN when one is seen (also when the SYN/ACK comes first),
//   else the sender of the first segment. Ids count from 1 and are never
//   reused; every emitted block has class id & 0xffff.
// - Each direction starts at the SYN's sequence number + 1, or where the
//   SYN/ACK's acknowledgment says, or at the first sequence number seen
//   (pickup mid-stream: bytes before it are never delivered). Offsets are
//   64-bit; sequence numbers compare modulo 2^32, so wraparound is seamless.
// - Bytes are delivered once, in order, each block as soon as it is in order
//   (a segment filling a gap comes out with everything held behind it).
//   Overlaps: the first bytes received for a position win, whether they were
//   already delivered or are still held out of order; later copies are
//   counted (retransmitted_bytes, overlaps) and dropped.
// - Every flow ends each of its two directions exactly once with a block
//   that has stream_end set: on the data block that reaches the FIN, or an
//   empty block at the direction's end offset (RST, idle timeout, eviction,
//   finish, or a FIN without data). The first FIN decides where a direction
//   ends; bytes after it are ignored.
// - RST ends both directions at once: held out-of-order bytes are dropped
//   (dropped_bytes). Timeout, eviction and finish() deliver what is held
//   instead, skipping the gaps (lost_bytes).
// - Bounds: out-of-order bytes per flow and in total (each held piece is
//   charged a fixed overhead too). A segment that does not fit makes the
//   reassembler give up on the oldest gap: of its own flow for the per-flow
//   bound, of the flow holding data longest for the global one. What follows
//   the gap is delivered with stream_offset jumping, and the gap counts as
//   lost_bytes. At most max_flows flows; the least recently active open flow
//   is evicted (its streams ended) to admit a new one.
// - Block::flow points at a copy of the FlowInfo in the emitter's scratch
//   memory, next to the data, so it stays valid for the whole batch whatever
//   happens to the flow afterwards. Key per-flow state on flow->id.
#include "tcpstream.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <random>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "factories.h"

namespace srl::filters::user {
namespace {

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
// Segments (and RSTs) further than this from the next expected byte are not
// believed: no TCP window is larger, so the numbers are corrupt or foreign.
constexpr std::int64_t kMaxDistance = std::int64_t{1} << 30;

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 |
         std::uint32_t{p[3]};
}

struct Segment {
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint8_t flags = 0;
  std::span<const std::uint8_t> payload;
};

// The TCP header fields and payload, or false when the header does not fit
// the captured frame or the IP datagram.
bool read_segment(const ParsedPacket& p, std::span<const std::uint8_t> frame, Segment& s) {
  if (p.l4 != L4Kind::tcp || p.non_first_fragment) return false;
  const std::size_t l4 = p.l4_offset;
  if (l4 + 20 > frame.size()) return false;
  // The payload ends with the IP datagram, not with Ethernet padding.
  std::size_t end = frame.size();
  if (p.l3 == L3Kind::ipv4 && p.l3_offset + 4 <= frame.size())
    end = std::min(end, p.l3_offset + std::size_t{be16(&frame[p.l3_offset + 2])});
  else if (p.l3 == L3Kind::ipv6 && p.l3_offset + 6 <= frame.size())
    end = std::min(end, p.l3_offset + 40 + std::size_t{be16(&frame[p.l3_offset + 4])});
  const std::size_t header = std::size_t{frame[l4 + 12]} >> 4 << 2;
  if (header < 20 || l4 + header > end) return false;
  s.seq = be32(&frame[l4 + 4]);
  s.ack = be32(&frame[l4 + 8]);
  s.flags = frame[l4 + 13];
  s.payload = frame.subspan(l4 + header, end - l4 - header);
  return true;
}

using Addr = std::array<std::uint8_t, 16>;

// Both endpoints in a fixed order, so that both directions find the flow.
struct FlowKey {
  Addr a{};
  Addr b{};
  std::uint16_t pa = 0;
  std::uint16_t pb = 0;
  L3Kind family = L3Kind::none;
  bool operator==(const FlowKey&) const = default;
};

FlowKey make_key(L3Kind family, const Addr& x, std::uint16_t px, const Addr& y, std::uint16_t py) {
  FlowKey k;
  k.family = family;
  if (std::tie(x, px) <= std::tie(y, py)) {
    k.a = x, k.pa = px, k.b = y, k.pb = py;
  } else {
    k.a = y, k.pa = py, k.b = x, k.pb = px;
  }
  return k;
}

// Seeded per instance so that crafted tuples cannot aim at one bucket.
struct FlowKeyHash {
  std::uint64_t seed = 0;
  std::size_t operator()(const FlowKey& k) const {
    std::array<std::uint64_t, 4> w{};
    std::memcpy(w.data(), k.a.data(), 16);
    std::memcpy(w.data() + 2, k.b.data(), 16);
    std::uint64_t h = seed ^ (std::uint64_t{k.pa} << 24 | std::uint64_t{k.pb} << 8 |
                              static_cast<std::uint64_t>(k.family));
    for (const std::uint64_t x : w) {
      h = (h ^ x) * 0x9E3779B97F4A7C15ull;
      h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<std::size_t>(h ^ (h >> 32));
  }
};

struct Direction {
  bool based = false;  // `base` is known
  bool ended = false;  // the stream_end block went out
  bool fin_seen = false;
  std::uint32_t base = 0;  // the sequence number of stream offset 0
  std::uint64_t next = 0;  // the next offset to deliver
  std::uint64_t fin_offset = 0;
  // Out-of-order bytes by offset: pieces never overlap and all lie after
  // `next` (and before the FIN), so the first bytes received keep their place.
  std::map<std::uint64_t, std::vector<std::uint8_t>> held;
};

struct Flow;
struct Link {
  Flow* prev = nullptr;
  Flow* next = nullptr;
};

struct Flow {
  FlowInfo info;
  std::array<Direction, 2> dir;
  std::uint64_t last_ns = 0;  // last segment; once closed, the close
  std::size_t held = 0;       // what its held pieces are charged
  bool closed = false;
  Link activity;  // in `open_` (least recently active first) or `closed_`
  Link holding;   // in `holding_` while held > 0
};

// Intrusive, so that moving a flow to the back or out is O(1) and free.
class FlowList {
 public:
  explicit FlowList(Link Flow::*link) : link_(link) {}
  Flow* head() const { return head_; }
  Flow* tail() const { return tail_; }
  void push_back(Flow& f) {
    Link& l = f.*link_;
    l.prev = tail_;
    l.next = nullptr;
    if (tail_ != nullptr)
      (tail_->*link_).next = &f;
    else
      head_ = &f;
    tail_ = &f;
  }
  void remove(Flow& f) {
    Link& l = f.*link_;
    if (l.prev != nullptr)
      (l.prev->*link_).next = l.next;
    else
      head_ = l.next;
    if (l.next != nullptr)
      (l.next->*link_).prev = l.prev;
    else
      tail_ = l.prev;
    l = {};
  }

 private:
  Link Flow::*link_;
  Flow* head_ = nullptr;
  Flow* tail_ = nullptr;
};

// Sequence number -> offset in the direction's stream, relative to the next
// expected byte so that it works across 2^32 wraps (negative: before the
// start of the stream).
std::int64_t offset_of(const Direction& d, std::uint32_t seq) {
  const std::uint32_t expected = d.base + static_cast<std::uint32_t>(d.next);
  return static_cast<std::int64_t>(d.next) + static_cast<std::int32_t>(seq - expected);
}

bool expired(std::uint64_t last_ns, std::uint64_t now_ns, std::uint64_t timeout_ns) {
  return now_ns >= last_ns && now_ns - last_ns >= timeout_ns;
}

class TcpStream final : public UserFilter {
 public:
  explicit TcpStream(const TcpStreamLimits& limits)
      : limits_(limits), flows_(64, FlowKeyHash{std::random_device{}()}) {
    limits_.max_flows = std::max<std::size_t>(limits_.max_flows, 1);
  }

  ~TcpStream() override = default;

  void process(const Block& block, Emitter& out) override {
    if (block.kind != BlockKind::packet) return;
    ParsedPacket local;
    const ParsedPacket* p = &headers_of(block, local);
    if (p->l4 != L4Kind::tcp) return;
    Segment s;
    if (!read_segment(*p, block.data, s)) {
      ++malformed_;
      return;
    }
    ++segments_;
    const std::uint64_t ts = block.ts_ns;
    const FlowKey key = make_key(p->l3, p->saddr, p->sport, p->daddr, p->dport);
    auto it = flows_.find(key);
    Flow* f = it == flows_.end() ? nullptr : &it->second;
    if (f != nullptr && f->closed && starts_anew(*f, *p, s)) {
      free_flow(*f);
      f = nullptr;
    }
    if (f == nullptr) {
      // Nothing to reassemble from a bare ACK, FIN or RST of an unknown flow
      // (typically the last ACK of a flow already freed).
      if ((s.flags & kRst) != 0 || ((s.flags & kSyn) == 0 && s.payload.empty())) return;
      f = &open_flow(key, *p, s, ts, out);
    }
    const int di = direction_of(*f, *p);
    if (f->closed) {
      after_end(f->dir[static_cast<std::size_t>(di)], s.seq + ((s.flags & kSyn) ? 1u : 0u),
                s.payload.size());
      return;
    }
    touch(*f, ts);
    on_segment(*f, di, s, ts, out);
  }

  void tick(std::uint64_t now_ns, Emitter& out) override {
    // Both lists are in order of activity, so expiry stops at the first
    // flow still alive (timestamps going backwards only delay it).
    while (open_.head() != nullptr &&
           expired(open_.head()->last_ns, now_ns, limits_.idle_timeout_ns)) {
      Flow& f = *open_.head();
      end_flow(f, now_ns, out);
      ++timed_out_;
      free_flow(f);
    }
    while (closed_.head() != nullptr &&
           expired(closed_.head()->last_ns, now_ns, limits_.closed_linger_ns))
      free_flow(*closed_.head());
  }

  void finish(Emitter& out) override {
    while (open_.head() != nullptr) {
      Flow& f = *open_.head();
      end_flow(f, f.last_ns, out);
      free_flow(f);
    }
    while (closed_.head() != nullptr)
      free_flow(*closed_.head());
  }

  FilterStats stats() const override {
    return {{"flows", flows_opened_},
            {"active_flows", flows_.size() - closed_count_},
            {"segments", segments_},
            {"bytes_emitted", bytes_emitted_},
            {"out_of_order", out_of_order_},
            {"retransmitted_bytes", retransmitted_bytes_},
            {"overlaps", overlaps_},
            {"lost_bytes", lost_bytes_},
            {"dropped_bytes", dropped_bytes_},
            {"ignored_bytes", ignored_bytes_},
            {"ignored_rsts", ignored_rsts_},
            {"held_bytes", held_total_},  // as charged: bytes + per-piece overhead
            {"evicted", evicted_},
            {"timed_out", timed_out_},
            {"malformed", malformed_}};
  }

 private:
  // --- Flow table ---------------------------------------------------------

  Flow& open_flow(const FlowKey& key, const ParsedPacket& p, const Segment& s, std::uint64_t ts,
                  Emitter& out) {
    make_room(ts, out);
    Flow& f = flows_.try_emplace(key).first->second;
    f.info.id = next_id_++;
    f.info.family = p.l3;
    // A SYN/ACK's receiver sent the SYN; otherwise the sender speaks first.
    const bool sender_is_client = !((s.flags & kSyn) != 0 && (s.flags & kAck) != 0);
    f.info.client_addr = sender_is_client ? p.saddr : p.daddr;
    f.info.server_addr = sender_is_client ? p.daddr : p.saddr;
    f.info.client_port = sender_is_client ? p.sport : p.dport;
    f.info.server_port = sender_is_client ? p.dport : p.sport;
    f.last_ns = ts;
    open_.push_back(f);
    ++flows_opened_;
    return f;
  }

  void make_room(std::uint64_t ts, Emitter& out) {
    while (flows_.size() >= limits_.max_flows) {
      if (closed_.head() != nullptr) {
        free_flow(*closed_.head());
      } else if (open_.head() != nullptr) {
        Flow& victim = *open_.head();
        end_flow(victim, ts, out);
        ++evicted_;
        free_flow(victim);
      } else {
        return;
      }
    }
  }

  void free_flow(Flow& f) {
    if (f.closed) {
      closed_.remove(f);
      --closed_count_;
    } else {
      open_.remove(f);
    }
    if (f.held > 0) {
      holding_.remove(f);
      held_total_ -= f.held;
    }
    flows_.erase(make_key(f.info.family, f.info.client_addr, f.info.client_port, f.info.server_addr,
                          f.info.server_port));
  }

  // Both directions have ended: the flow lingers to absorb late segments.
  void close(Flow& f, std::uint64_t ts) {
    open_.remove(f);
    f.closed = true;
    f.last_ns = ts;
    closed_.push_back(f);
    ++closed_count_;
  }

  void touch(Flow& f, std::uint64_t ts) {
    f.last_ns = std::max(f.last_ns, ts);
    if (open_.tail() != &f) {
      open_.remove(f);
      open_.push_back(f);
    }
  }

  // A SYN on a closed flow's tuple that is not a retransmission of the old
  // SYN: the port was reused for a new connection.
  static bool starts_anew(const Flow& f, const ParsedPacket& p, const Segment& s) {
    if ((s.flags & (kSyn | kAck | kRst)) != kSyn) return false;
    const Direction& d = f.dir[static_cast<std::size_t>(direction_of(f, p))];
    return !(d.based && d.base == s.seq + 1);
  }

  static int direction_of(const Flow& f, const ParsedPacket& p) {
    return p.saddr == f.info.client_addr && p.sport == f.info.client_port ? 0 : 1;
  }

  // --- One segment --------------------------------------------------------

  void on_segment(Flow& f, int di, const Segment& s, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    Direction& other = f.dir[static_cast<std::size_t>(1 - di)];
    const bool syn = (s.flags & kSyn) != 0;
    const std::uint32_t data_seq = s.seq + (syn ? 1u : 0u);
    // A SYN sets the start unless bytes were already taken from a guess.
    const bool untouched = d.next == 0 && d.held.empty() && !d.fin_seen && !d.ended;
    if (!d.based || (syn && untouched)) {
      d.base = data_seq;
      d.based = true;
    }
    // A SYN/ACK says where the peer's stream starts when its SYN was missed.
    if (syn && (s.flags & kAck) != 0 && !other.based) {
      other.base = s.ack;
      other.based = true;
    }

    if ((s.flags & kRst) != 0) {
      const std::int64_t distance = offset_of(d, s.seq) - static_cast<std::int64_t>(d.next);
      if (distance > kMaxDistance || distance < -kMaxDistance) {
        ++ignored_rsts_;
        return;
      }
      reset(f, ts, out);
      return;
    }
    if (d.ended) {
      after_end(d, data_seq, s.payload.size());
      return;
    }
    const std::int64_t off = offset_of(d, data_seq);
    if (off - static_cast<std::int64_t>(d.next) > kMaxDistance) {
      ignored_bytes_ += s.payload.size();
      return;
    }
    if ((s.flags & kFin) != 0) note_fin(f, di, off + static_cast<std::int64_t>(s.payload.size()));
    if (!s.payload.empty()) place(f, di, off, s.payload, ts, out);
    if (!d.ended && d.fin_seen && d.next >= d.fin_offset) flush(f, di, {}, ts, out);
  }

  // Bytes for a direction that has ended: resent ones, or ones past its end.
  void after_end(const Direction& d, std::uint32_t seq, std::size_t n) {
    if (n == 0) return;
    if (!d.based) {
      ignored_bytes_ += n;
      return;
    }
    const std::int64_t before = std::clamp<std::int64_t>(
        static_cast<std::int64_t>(d.next) - offset_of(d, seq), 0, static_cast<std::int64_t>(n));
    retransmitted_bytes_ += static_cast<std::uint64_t>(before);
    ignored_bytes_ += n - static_cast<std::size_t>(before);
  }

  void note_fin(Flow& f, int di, std::int64_t at) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    if (d.fin_seen) return;  // the first FIN decides
    d.fin_seen = true;
    d.fin_offset = std::max(d.next, static_cast<std::uint64_t>(std::max<std::int64_t>(at, 0)));
    // Held bytes past the end are not part of the stream.
    while (!d.held.empty()) {
      auto last = std::prev(d.held.end());
      const std::uint64_t end = last->first + last->second.size();
      if (end <= d.fin_offset) break;
      if (last->first >= d.fin_offset) {
        ignored_bytes_ += last->second.size();
        release(f, last->second.size(), 1);
        d.held.erase(last);
      } else {
        const std::size_t cut = static_cast<std::size_t>(end - d.fin_offset);
        ignored_bytes_ += cut;
        release(f, cut, 0);
        last->second.resize(last->second.size() - cut);
      }
    }
  }

  // Delivers `data` (at `off`) or holds it, within the bounds.
  void place(Flow& f, int di, std::int64_t off, std::span<const std::uint8_t> data,
             std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    // Each pass returns or first gives up held data (or a gap), so it ends.
    for (;;) {
      if (d.ended) {
        ignored_bytes_ += data.size();
        return;
      }
      const auto next = static_cast<std::int64_t>(d.next);
      const std::int64_t end = off + static_cast<std::int64_t>(data.size());
      if (end <= next) {
        retransmitted_bytes_ += data.size();
        return;
      }
      if (off < next) {
        const auto cut = static_cast<std::size_t>(next - off);
        retransmitted_bytes_ += cut;
        ++overlaps_;
        data = data.subspan(cut);
        off = next;
      }
      if (d.fin_seen) {
        const auto fin = static_cast<std::int64_t>(d.fin_offset);
        if (off >= fin) {
          ignored_bytes_ += data.size();
          return;
        }
        if (off + static_cast<std::int64_t>(data.size()) > fin) {
          const auto keep = static_cast<std::size_t>(fin - off);
          ignored_bytes_ += data.size() - keep;
          data = data.first(keep);
        }
      }
      if (off == next) {
        flush(f, di, data, ts, out);
        return;
      }

      // Ahead of a gap: hold what no earlier segment brought.
      const auto start = static_cast<std::uint64_t>(off);
      const std::size_t fresh = uncovered(d, start, data.size());
      if (fresh == 0) {
        retransmitted_bytes_ += data.size();
        return;
      }
      const std::size_t charge = fresh + pieces_.size() * kHeldPieceOverhead;
      if (charge > limits_.flow_buffer || charge > limits_.total_buffer) {
        skip_to(f, di, start, ts, out);
        continue;
      }
      if (f.held + charge > limits_.flow_buffer) {
        skip_gap(f, d.held.empty() ? 1 - di : di, ts, out);
        continue;
      }
      if (held_total_ + charge > limits_.total_buffer) {
        Flow* victim = holding_.head();
        if (victim == nullptr) {
          skip_to(f, di, start, ts, out);
        } else {
          skip_gap(*victim, victim->dir[0].held.empty() ? 1 : 0, ts, out);
        }
        continue;
      }
      hold(f, d, start, data, charge);
      ++out_of_order_;
      if (fresh < data.size()) {
        retransmitted_bytes_ += data.size() - fresh;
        ++overlaps_;
      }
      return;
    }
  }

  // The parts of [start, start + n) no held piece covers, into pieces_;
  // returns their total length.
  std::size_t uncovered(const Direction& d, std::uint64_t start, std::size_t n) {
    pieces_.clear();
    const std::uint64_t end = start + n;
    std::uint64_t cur = start;
    auto it = d.held.upper_bound(start);
    if (it != d.held.begin()) {
      const auto& [at, bytes] = *std::prev(it);
      cur = std::max(cur, at + bytes.size());
    }
    while (cur < end) {
      if (it == d.held.end() || it->first >= end) {
        pieces_.emplace_back(cur, end);
        break;
      }
      if (it->first > cur) pieces_.emplace_back(cur, it->first);
      cur = std::max(cur, it->first + it->second.size());
      ++it;
    }
    std::size_t total = 0;
    for (const auto& [from, to] : pieces_)
      total += static_cast<std::size_t>(to - from);
    return total;
  }

  void hold(Flow& f, Direction& d, std::uint64_t start, std::span<const std::uint8_t> data,
            std::size_t charge) {
    for (const auto& [from, to] : pieces_) {
      const auto* first = data.data() + (from - start);
      d.held.emplace(from, std::vector<std::uint8_t>(first, first + (to - from)));
    }
    if (f.held == 0) holding_.push_back(f);
    f.held += charge;
    held_total_ += charge;
  }

  void release(Flow& f, std::size_t bytes, std::size_t pieces) {
    const std::size_t charge = bytes + pieces * kHeldPieceOverhead;
    f.held -= charge;
    held_total_ -= charge;
    if (f.held == 0) holding_.remove(f);
  }

  // Delivers from `next`: `head` (which starts there) and every held piece
  // that joins it, in one block; ends the direction when the FIN is reached.
  void flush(Flow& f, int di, std::span<const std::uint8_t> head, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    const std::uint64_t start = d.next;
    const std::uint64_t head_end = start + head.size();
    std::uint64_t end = head_end;
    auto joined = d.held.begin();
    while (joined != d.held.end() && joined->first <= end) {
      end = std::max(end, joined->first + joined->second.size());
      ++joined;
    }
    const bool fin = d.fin_seen && end >= d.fin_offset;
    const std::uint64_t stop = fin ? d.fin_offset : end;
    if (stop == start && !fin) return;

    const auto n = static_cast<std::size_t>(stop - start);
    std::uint8_t* bytes = nullptr;
    const Block b = chunk(f, di, start, n, fin, ts, out, bytes);
    // place() and note_fin() keep everything before the FIN; clip anyway.
    if (!head.empty()) std::memcpy(bytes, head.data(), std::min(head.size(), n));
    bool overlapped = false;
    for (auto it = d.held.begin(); it != joined;) {
      const std::uint64_t at = it->first;
      const std::uint64_t to = at + it->second.size();
      // Held bytes came first: they overwrite what `head` brought again.
      if (at < head_end) {
        retransmitted_bytes_ += std::min(to, head_end) - at;
        overlapped = true;
      }
      if (at < stop)
        std::memcpy(bytes + (at - start), it->second.data(),
                    static_cast<std::size_t>(std::min(to, stop) - at));
      release(f, it->second.size(), 1);
      it = d.held.erase(it);
    }
    if (overlapped) ++overlaps_;
    d.next = stop;
    if (fin) {
      d.ended = true;
      for (const auto& [at, rest] : d.held) {
        ignored_bytes_ += rest.size();
        release(f, rest.size(), 1);
      }
      d.held.clear();
    }
    bytes_emitted_ += n;
    out.emit(b, class_of(f));
    if (fin && f.dir[static_cast<std::size_t>(1 - di)].ended) close(f, ts);
  }

  // Gives up the first gap of a direction: delivers what follows it.
  void skip_gap(Flow& f, int di, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    if (d.ended || d.held.empty()) return;
    const std::uint64_t first = d.held.begin()->first;
    lost_bytes_ += first - d.next;
    d.next = first;
    flush(f, di, {}, ts, out);
  }

  // Gives up everything before `target`: held pieces before it are
  // delivered, the gaps between them counted lost.
  void skip_to(Flow& f, int di, std::uint64_t target, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    while (!d.ended && !d.held.empty() && d.held.begin()->first < target)
      skip_gap(f, di, ts, out);
    if (!d.ended && d.next < target) {
      lost_bytes_ += target - d.next;
      d.next = target;
    }
  }

  // Ends a direction that saw no RST: what is held goes out past its gaps.
  void drain(Flow& f, int di, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    while (!d.ended && !d.held.empty())
      skip_gap(f, di, ts, out);
    if (d.ended) return;
    if (d.fin_seen && d.next < d.fin_offset) {
      lost_bytes_ += d.fin_offset - d.next;
      d.next = d.fin_offset;
    }
    end_direction(f, di, ts, out);
  }

  void end_flow(Flow& f, std::uint64_t ts, Emitter& out) {
    drain(f, 0, ts, out);
    drain(f, 1, ts, out);
  }

  void reset(Flow& f, std::uint64_t ts, Emitter& out) {
    for (int di = 0; di < 2; ++di) {
      Direction& d = f.dir[static_cast<std::size_t>(di)];
      if (d.ended) continue;
      for (const auto& [at, bytes] : d.held) {
        dropped_bytes_ += bytes.size();
        release(f, bytes.size(), 1);
      }
      d.held.clear();
      end_direction(f, di, ts, out);
    }
    close(f, ts);
  }

  // The empty stream_end block at the direction's current end.
  void end_direction(Flow& f, int di, std::uint64_t ts, Emitter& out) {
    Direction& d = f.dir[static_cast<std::size_t>(di)];
    d.ended = true;
    std::uint8_t* bytes = nullptr;
    out.emit(chunk(f, di, d.next, 0, true, ts, out, bytes), class_of(f));
  }

  static std::uint16_t class_of(const Flow& f) { return static_cast<std::uint16_t>(f.info.id); }

  // A stream block whose n bytes (to be filled through `bytes`) and FlowInfo
  // copy live in the emitter's scratch memory until the batch is done.
  static Block chunk(const Flow& f, int di, std::uint64_t offset, std::size_t n, bool end,
                     std::uint64_t ts, Emitter& out, std::uint8_t*& bytes) {
    const std::span<std::uint8_t> raw = out.allocate(sizeof(FlowInfo) + alignof(FlowInfo) - 1 + n);
    void* at = raw.data();
    std::size_t space = raw.size();
    if (std::align(alignof(FlowInfo), sizeof(FlowInfo), at, space) == nullptr ||
        space < sizeof(FlowInfo) + n)
      throw std::bad_alloc();
    const FlowInfo* info = new (at) FlowInfo(f.info);
    bytes = static_cast<std::uint8_t*>(at) + sizeof(FlowInfo);
    Block b;
    b.data = {bytes, n};
    b.ts_ns = ts;
    b.wire_len = static_cast<std::uint32_t>(
        std::min<std::size_t>(n, std::numeric_limits<std::uint32_t>::max()));
    b.kind = BlockKind::stream;
    b.flow = info;
    b.direction = static_cast<std::uint8_t>(di);
    b.stream_offset = offset;
    b.stream_end = end;
    return b;
  }

  TcpStreamLimits limits_;
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;
  FlowList open_{&Flow::activity};
  FlowList closed_{&Flow::activity};
  FlowList holding_{&Flow::holding};
  std::size_t closed_count_ = 0;
  std::size_t held_total_ = 0;
  std::uint64_t next_id_ = 1;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> pieces_;  // scratch for uncovered()

  std::uint64_t flows_opened_ = 0;
  std::uint64_t segments_ = 0;
  std::uint64_t bytes_emitted_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::uint64_t retransmitted_bytes_ = 0;
  std::uint64_t overlaps_ = 0;
  std::uint64_t lost_bytes_ = 0;
  std::uint64_t dropped_bytes_ = 0;
  std::uint64_t ignored_bytes_ = 0;
  std::uint64_t ignored_rsts_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t timed_out_ = 0;
  std::uint64_t malformed_ = 0;
};

}  // namespace

std::unique_ptr<UserFilter> make_tcpstream(const TcpStreamLimits& limits) {
  return std::make_unique<TcpStream>(limits);
}

std::unique_ptr<UserFilter> make_tcpstream(const UserFilterConfig& config) {
  (void)config;  // the catalog gives tcpstream no options
  return make_tcpstream(TcpStreamLimits{});
}

}  // namespace srl::filters::user
