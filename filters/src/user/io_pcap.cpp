// The pcap sink: packets to a nanosecond pcap file, buffered, written out
// when the buffer fills, at a tick once the oldest buffered packet has
// waited kFlushAge, and at the end. Stream chunks have no Ethernet framing
// and are not written.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "as_user.h"
#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

// How much a sink buffers before it writes: as much as 256 KiB, so that
// the write(2) per flush is noise for a fast capture (an offline job wrote
// 0.145 s with 256 KiB against 0.170 s with 32 KiB), but all the sinks of a
// process together within half the CPU's L2 cache, so that a buffer's lines
// are still there when the next flush reuses them: sixteen captures at
// once with 256 KiB each missed the L2 at every record (~40 ns a record in
// the copy alone, half of their cost).
constexpr std::size_t kFlushMost = 1 << 18;
constexpr std::size_t kFlushLeast = 1 << 14;
std::atomic<std::size_t> live_sinks{0};

std::size_t flush_threshold() {
  static const std::size_t cache_budget = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? static_cast<std::size_t>(l2) / 2 : std::size_t{512} << 10;
  }();
  const std::size_t sinks = std::max<std::size_t>(live_sinks.load(std::memory_order_relaxed), 1);
  return std::clamp(cache_budget / sinks, kFlushLeast, kFlushMost);
}

// A slow capture still reaches its file within about a second (libpcap's
// buffer timeout), without a write(2) per sink at every engine tick: with
// many captures on a host those writes were most of their cost.
constexpr std::uint64_t kFlushAge = 1'000'000'000;

class PcapSink final : public UserFilter {
 public:
  PcapSink(const UserFilterConfig& config, std::string path, std::uint32_t snaplen)
      : path_(std::move(path)), snaplen_(snaplen) {
    std::string error;
    fd_ = open_as(config.file_owner, path_, O_WRONLY | O_CREAT | O_TRUNC, error);
    if (fd_ < 0)
      config_error(config, "cannot open '" + path_ + "' for writing" +
                               owner_text(config.file_owner) + ": " + error);
    // A record past the most it buffers, never reallocated.
    buffer_.reserve(kFlushMost + 16 + kMaxSnaplen);
    append_pcap_header(buffer_, snaplen_);
    live_sinks.fetch_add(1, std::memory_order_relaxed);  // last: a throw above leaves no count
    flush_at_ = flush_threshold();
  }

  ~PcapSink() override {
    close_file();
    live_sinks.fetch_sub(1, std::memory_order_relaxed);
  }

  bool reads_headers() const override { return false; }
  std::uint64_t tick_every_ns() const override { return kFlushAge; }

  void process(const Block& block, Emitter&) override {
    if (block.kind != BlockKind::packet) {
      ++skipped_streams_;
      return;
    }
    if (fd_ < 0) return;
    if (!waiting_) {
      waiting_ = true;
      oldest_ns_ = block.ts_ns;
    }
    bytes_ += append_pcap_record(buffer_, block, snaplen_);
    ++written_;
    ++buffered_;
    if (buffer_.size() >= flush_at_) flush();
  }

  void tick(std::uint64_t now_ns, Emitter&) override {
    // A clock behind the packets' stamps (a stepped clock) flushes too.
    if (waiting_ && (now_ns - oldest_ns_ >= kFlushAge || now_ns < oldest_ns_)) flush();
  }

  void finish(Emitter&) override { close_file(); }

  FilterStats stats() const override {
    FilterStats s{{"written", written_ - unwritten_},
                  {"bytes", bytes_},
                  {"skipped_streams", skipped_streams_}};
    if (write_errors_ != 0) {
      s.emplace_back("write_errors", write_errors_);
      s.emplace_back("dropped_unwritten", unwritten_);  // a node's drops: lost by srl
    }
    return s;
  }

  std::string failure() const override { return failure_; }

 private:
  void flush() {
    std::size_t done = 0;
    while (fd_ >= 0 && done < buffer_.size()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // A full disk or a failing device: what is buffered is lost (said
        // and counted), later packets are tried again.
        if (failure_.empty())
          failure_ = "writing '" + path_ + "': " + std::strerror(n < 0 ? errno : ENOSPC);
        ++write_errors_;
        unwritten_ += buffered_;
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    buffered_ = 0;
    buffer_.clear();
    waiting_ = false;
    flush_at_ = flush_threshold();  // sinks come and go
  }

  void close_file() {
    if (fd_ < 0) return;
    flush();
    // Some file systems say only at close that the data did not fit.
    if (::close(fd_) != 0 && failure_.empty())
      failure_ = "closing '" + path_ + "': " + std::strerror(errno);
    fd_ = -1;
  }

  std::string path_;
  std::uint32_t snaplen_;
  int fd_ = -1;
  std::vector<std::uint8_t> buffer_;
  std::size_t flush_at_ = kFlushMost;
  bool waiting_ = false;         // packets wait in the buffer
  std::uint64_t oldest_ns_ = 0;  // the first one's time
  std::uint64_t written_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t skipped_streams_ = 0;
  std::uint64_t write_errors_ = 0;
  std::uint64_t buffered_ = 0;   // records in buffer_
  std::uint64_t unwritten_ = 0;  // records a failed write lost
  std::string failure_;          // the first failure, for failure()
};

}  // namespace

std::unique_ptr<UserFilter> make_pcap_sink(const UserFilterConfig& config) {
  const auto path = string_option(config, "file");
  if (!path || path->empty()) config_error(config, "option 'file' is required");
  const auto snaplen = int_option(config, "snaplen").value_or(kMaxSnaplen);
  if (snaplen < 1 || snaplen > kMaxSnaplen)
    config_error(config, "option 'snaplen' must be between 1 and " + std::to_string(kMaxSnaplen));
  return std::make_unique<PcapSink>(config, *path, static_cast<std::uint32_t>(snaplen));
}

}  // namespace srl::filters::user
