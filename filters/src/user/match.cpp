// match: a regular expression over block payloads, with Hyperscan.
//
// Packets are scanned in block mode over their L4 payload (a frame without
// one, such as ARP or a bare ACK, is rejected: header bytes are for the
// header filters). Stream chunks are scanned in streaming mode, one
// Hyperscan stream per (flow, direction), so that a match spanning chunks is
// found; the chunk in which a match ends is accepted. A chunk that does not
// follow on from the previous one (a gap, or a stream first seen past its
// start) begins a new Hyperscan stream. Open streams are bounded: the least
// recently used is closed first; idle ones are closed by tick().
#include <hs/hs.h>

#include <algorithm>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "factories.h"

namespace srl::filters::user {
namespace {

constexpr std::size_t kMaxStreams = 16384;
constexpr std::uint64_t kIdleNs = 300'000'000'000;  // 5 minutes without a chunk

struct DatabaseDeleter {
  void operator()(hs_database_t* db) const { hs_free_database(db); }
};
struct ScratchDeleter {
  void operator()(hs_scratch_t* s) const { hs_free_scratch(s); }
};
using Database = std::unique_ptr<hs_database_t, DatabaseDeleter>;
using Scratch = std::unique_ptr<hs_scratch_t, ScratchDeleter>;

unsigned parse_flags(const UserFilterConfig& config, const std::string& letters) {
  unsigned flags = 0;
  for (char c : letters) {
    switch (c) {
      case 'i':
        flags |= HS_FLAG_CASELESS;
        break;
      case 's':
        flags |= HS_FLAG_DOTALL;
        break;
      case 'm':
        flags |= HS_FLAG_MULTILINE;
        break;
      case 'u':
        flags |= HS_FLAG_UTF8;
        break;
      default:
        config_error(config, "option 'flags': unknown flag '" + std::string(1, c) +
                                 "' (expected letters among i caseless, s dot matches newline, "
                                 "m multi-line, u UTF-8)");
    }
  }
  return flags;
}

Database compile(const UserFilterConfig& config, const std::string& pattern, unsigned flags,
                 unsigned mode) {
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  if (hs_compile(pattern.c_str(), flags, mode, nullptr, &db, &err) != HS_SUCCESS) {
    std::string why = err != nullptr && err->message != nullptr ? err->message : "unknown error";
    hs_free_compile_error(err);
    config_error(config, "option 'pattern': Hyperscan cannot compile \"" + pattern + "\": " + why +
                             " (expected a regular expression in PCRE syntax that Hyperscan "
                             "supports)");
  }
  return Database(db);
}

int on_match(unsigned, unsigned long long, unsigned long long, unsigned, void* context) {
  *static_cast<bool*>(context) = true;
  return 0;
}

// Block mode only needs the first match.
int on_first_match(unsigned, unsigned long long, unsigned long long, unsigned, void* context) {
  *static_cast<bool*>(context) = true;
  return 1;
}

struct StreamKey {
  std::uint64_t flow = 0;
  std::uint8_t direction = 0;
  bool operator==(const StreamKey&) const = default;
};
struct StreamKeyHash {
  std::size_t operator()(const StreamKey& k) const {
    return std::hash<std::uint64_t>()(k.flow * 0x9E3779B97F4A7C15ull ^ k.direction);
  }
};

class MatchFilter final : public UserFilter {
 public:
  MatchFilter(Database block_db, Database stream_db, Scratch scratch)
      : block_db_(std::move(block_db)),
        stream_db_(std::move(stream_db)),
        scratch_(std::move(scratch)) {}

  ~MatchFilter() override { close_all(); }

  void process(const Block& block, Emitter& out) override {
    const auto payload = payload_of(block);
    bool hit = false;
    if (block.kind == BlockKind::stream && block.flow != nullptr) {
      hit = scan_stream(block, payload);
    } else {
      if (payload.empty() || payload.size() > kMaxScan) return;
      scanned_ += payload.size();
      hs_scan(block_db_.get(), reinterpret_cast<const char*>(payload.data()),
              static_cast<unsigned>(payload.size()), 0, scratch_.get(), on_first_match, &hit);
    }
    if (!hit) return;
    ++matched_;
    out.accept(1);
  }

  void tick(std::uint64_t now_ns, Emitter&) override {
    while (!lru_.empty() && now_ns > lru_.back().last_ns &&
           now_ns - lru_.back().last_ns > kIdleNs) {
      close(std::prev(lru_.end()), nullptr);
      ++expired_;
    }
  }

  void finish(Emitter&) override { close_all(); }

  FilterStats stats() const override {
    return {{"matched", matched_},   {"scanned_bytes", scanned_}, {"open_streams", lru_.size()},
            {"evicted", evicted_},   {"expired", expired_},       {"restarted", restarted_},
            {"scan_errors", errors_}};
  }

 private:
  static constexpr std::size_t kMaxScan = 0xFFFFFFFFu;

  struct Stream {
    StreamKey key;
    hs_stream_t* hs = nullptr;
    std::uint64_t next = 0;  // the stream offset the next chunk should start at
    std::uint64_t last_ns = 0;
  };
  using List = std::list<Stream>;

  bool scan_stream(const Block& block, std::span<const std::uint8_t> data) {
    const StreamKey key{block.flow->id, block.direction};
    auto it = lru_.end();
    if (auto found = index_.find(key); found != index_.end()) {
      it = found->second;
      lru_.splice(lru_.begin(), lru_, it);
      if (it->next != block.stream_offset) {
        close(it, nullptr);
        ++restarted_;
        it = lru_.end();
      }
    }
    if (it == lru_.end()) {
      if (block.stream_end && data.empty()) return false;
      if (lru_.size() >= kMaxStreams) {
        close(std::prev(lru_.end()), nullptr);
        ++evicted_;
      }
      hs_stream_t* hs = nullptr;
      if (hs_open_stream(stream_db_.get(), 0, &hs) != HS_SUCCESS) {
        ++errors_;
        return false;
      }
      lru_.push_front(Stream{key, hs, block.stream_offset, 0});
      index_.emplace(key, lru_.begin());
      it = lru_.begin();
    }
    it->last_ns = std::max(it->last_ns, block.ts_ns);
    bool hit = false;
    // Chunks over 4 GiB would not fit one call; streaming mode lets us cut.
    for (std::size_t at = 0; at < data.size(); at += kMaxScan) {
      const std::size_t n = std::min(kMaxScan, data.size() - at);
      if (hs_scan_stream(it->hs, reinterpret_cast<const char*>(data.data() + at),
                         static_cast<unsigned>(n), 0, scratch_.get(), on_match, &hit) != HS_SUCCESS)
        ++errors_;
    }
    scanned_ += data.size();
    it->next += data.size();
    // Closing with scratch reports matches anchored at the end ($).
    if (block.stream_end) close(it, &hit);
    return hit;
  }

  // Closes a stream; with `hit`, end-of-data matches are reported into it.
  void close(List::iterator it, bool* hit) {
    hs_close_stream(it->hs, hit != nullptr ? scratch_.get() : nullptr,
                    hit != nullptr ? on_match : nullptr, hit);
    index_.erase(it->key);
    lru_.erase(it);
  }

  void close_all() {
    while (!lru_.empty())
      close(lru_.begin(), nullptr);
  }

  Database block_db_, stream_db_;
  Scratch scratch_;  // one for both databases: filters run on one thread
  List lru_;         // most recently used first
  std::unordered_map<StreamKey, List::iterator, StreamKeyHash> index_;
  std::uint64_t matched_ = 0, scanned_ = 0, evicted_ = 0, expired_ = 0, restarted_ = 0, errors_ = 0;
};

}  // namespace

std::unique_ptr<UserFilter> make_match(const UserFilterConfig& config) {
  const auto pattern = string_option(config, "pattern");
  if (!pattern) config_error(config, "option 'pattern' is required");
  if (pattern->find('\0') != std::string::npos)
    config_error(config, "option 'pattern' contains a NUL byte (write it as \\x00)");
  const unsigned flags = parse_flags(config, string_option(config, "flags").value_or(""));
  Database block_db = compile(config, *pattern, flags | HS_FLAG_SINGLEMATCH, HS_MODE_BLOCK);
  Database stream_db = compile(config, *pattern, flags, HS_MODE_STREAM);
  // One scratch grown to suit both databases.
  hs_scratch_t* raw = nullptr;
  const bool ok = hs_alloc_scratch(block_db.get(), &raw) == HS_SUCCESS &&
                  hs_alloc_scratch(stream_db.get(), &raw) == HS_SUCCESS;
  Scratch scratch(raw);
  if (!ok) config_error(config, "cannot allocate Hyperscan scratch memory");
  return std::make_unique<MatchFilter>(std::move(block_db), std::move(stream_db),
                                       std::move(scratch));
}

}  // namespace srl::filters::user
