// pcapin: replays a pcap or pcapng capture through libpcap, as fast as
// possible or at a multiple of the recorded timing, once, N times or
// forever.
//
// One record is always read ahead (the "head"), so that done() and
// next_due_ns() are exact. A classic pcap file is read in 512 KiB chunks and
// used in place: blocks point into the chunk, which is refilled only at the
// start of a poll (when the previous poll's blocks are dead), so a record is
// never copied in userspace. pcapng, and anything that reader does not take,
// goes through libpcap, whose record data is valid only until the next
// pcap_next_ex(): those blocks are copied into a buffer reused per poll.
//
// Every pass reopens the file and replays the recorded timestamps as they
// are; with a replay speed, a pass starts when the previous one's last
// block was due.
#include <fcntl.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "as_user.h"
#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

// Opens `path` for reading with nanosecond timestamps, as `owner` when
// there is one; on failure returns null and sets `error`. The file is opened
// here (open_as) and handed to libpcap, which never resolves the path itself.
PcapHandle open_capture(const std::string& path, const std::optional<FileOwner>& owner,
                        std::string& error) {
  std::string why;
  const int fd = open_as(owner, path, O_RDONLY, why);
  if (fd < 0) {
    error = "cannot read '" + path + "'" + owner_text(owner) + ": " + why;
    return nullptr;
  }
  FILE* file = ::fdopen(fd, "rb");
  if (file == nullptr) {
    const int err = errno;
    ::close(fd);
    error = "cannot read '" + path + "'" + owner_text(owner) + ": " + std::strerror(err);
    return nullptr;
  }
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle p(pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!p) {
    ::fclose(file);  // libpcap takes the file only when it succeeds
    error = "cannot read '" + path + "'" + owner_text(owner) + ": " + errbuf;
    return nullptr;
  }
  const int dlt = pcap_datalink(p.get());
  if (dlt != DLT_EN10MB) {
    const char* name = pcap_datalink_val_to_name(dlt);
    error = "'" + path + "' has link type " + (name ? name : "unknown") + " (" +
            std::to_string(dlt) + "); only Ethernet (EN10MB) is supported";
    return nullptr;
  }
  return p;
}

// A classic pcap file (either byte order, µs or ns), read in large chunks
// (two, alternating) that records are then used from in place. The chunk is
// sized to stay in cache, next to a sink's buffer (the pcap sink's 1 MiB
// buffer beside them cost ~10% more CPU than 256 KiB on a 2 MiB L2), and to
// hold the largest record: the kernel's copy streams the file, and the
// records are hot when the filters look at them (reading them from a
// mapping instead stalls on every record header: the next record's place
// depends on the previous one's length).
class BufferedPcap {
 public:
  enum class Next : std::uint8_t { record, need_more, end, truncated };

  // Null when the file is not a classic Ethernet pcap: the caller falls back
  // to libpcap, which also words the errors.
  static std::unique_ptr<BufferedPcap> open(const std::string& path,
                                            const std::optional<FileOwner>& owner) {
    std::string error;  // libpcap's open has reported it already
    const int fd = open_as(owner, path, O_RDONLY, error);
    if (fd < 0) return nullptr;
    std::unique_ptr<BufferedPcap> r(new BufferedPcap(fd));
    std::uint8_t header[24];
    if (pread(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) return nullptr;
    std::uint32_t magic = 0;
    std::memcpy(&magic, header, 4);
    switch (magic) {
      case 0xa1b2c3d4:
        break;
      case 0xa1b23c4d:
        r->nano_ = true;
        break;
      case 0xd4c3b2a1:
        r->swapped_ = true;
        break;
      case 0x4d3cb2a1:
        r->swapped_ = r->nano_ = true;
        break;
      default:
        return nullptr;  // pcapng or not a capture
    }
    if (r->u32(header + 20) != DLT_EN10MB) return nullptr;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->rewind();
    return r;
  }
  ~BufferedPcap() { ::close(fd_); }
  BufferedPcap(const BufferedPcap&) = delete;
  BufferedPcap& operator=(const BufferedPcap&) = delete;

  void rewind() {
    if (whole_) {
      // The whole file is in the current chunk: replay it from there.
      begin_ = 0;
      end_ = whole_end_;
      return;
    }
    file_at_ = 24;
    begin_ = end_ = 0;
    eof_ = false;
  }

  // Moves the unread tail into the other chunk and reads on there: records
  // handed out from the current chunk stay valid until the refill after
  // this one.
  void refill() {
    const std::vector<std::uint8_t>& from = chunks_[current_];
    std::vector<std::uint8_t>& to = chunks_[1 - current_];
    if (end_ > begin_) std::memcpy(to.data(), from.data() + begin_, end_ - begin_);
    current_ = 1 - current_;
    end_ -= begin_;
    begin_ = 0;
    const bool from_start = file_at_ == 24 && end_ == 0;
    while (!eof_ && end_ < to.size()) {
      const ssize_t got =
          pread(fd_, to.data() + end_, to.size() - end_, static_cast<off_t>(file_at_));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        eof_ = true;
        errors_ += got < 0;
        break;
      }
      end_ += static_cast<std::size_t>(got);
      file_at_ += static_cast<std::size_t>(got);
    }
    if (from_start && eof_ && errors_ == 0) {
      whole_ = true;
      whole_end_ = end_;
    }
  }

  // The next record, valid until refill() or rewind().
  Next next(const std::uint8_t*& data, std::uint32_t& caplen, std::uint32_t& len,
            std::uint64_t& ts_ns) {
    const std::size_t left = end_ - begin_;
    if (left < 16) return eof_ ? (left == 0 ? Next::end : Next::truncated) : Next::need_more;
    const std::uint8_t* h = chunks_[current_].data() + begin_;
    caplen = u32(h + 8);
    if (caplen > kMaxRecord) return Next::truncated;
    if (left - 16 < caplen) return eof_ ? Next::truncated : Next::need_more;
    const std::uint64_t sec = u32(h), frac = u32(h + 4);
    len = u32(h + 12);
    data = h + 16;
    ts_ns = sec * 1'000'000'000 + (nano_ ? frac : frac * 1000);
    begin_ += 16 + caplen;
    return Next::record;
  }

  std::uint64_t errors() const { return errors_; }

 private:
  static constexpr std::size_t kMaxRecord = 0x40000;  // libpcap's largest snaplen
  static constexpr std::size_t kChunk = std::size_t{1} << 19;
  static_assert(kChunk >= 16 + kMaxRecord, "a chunk holds the largest record");
  explicit BufferedPcap(int fd)
      : fd_(fd), chunks_{std::vector<std::uint8_t>(kChunk), std::vector<std::uint8_t>(kChunk)} {}
  std::uint32_t u32(const std::uint8_t* at) const {
    std::uint32_t v = 0;
    std::memcpy(&v, at, 4);
    return swapped_ ? __builtin_bswap32(v) : v;
  }

  int fd_;
  std::vector<std::uint8_t> chunks_[2];
  std::size_t current_ = 0;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of the current chunk
  std::size_t file_at_ = 24;         // file offset of the current chunk's end_
  bool eof_ = false;
  bool whole_ = false;  // the file fits in one chunk, which holds it all
  std::size_t whole_end_ = 0;
  bool swapped_ = false;
  bool nano_ = false;
  std::uint64_t errors_ = 0;
};

class PcapIn final : public UserSource {
 public:
  PcapIn(const UserFilterConfig& config, std::string path, std::uint64_t loop, std::uint64_t speed)
      : path_(std::move(path)), owner_(config.file_owner), loop_(loop), speed_(speed) {
    std::string error;
    // libpcap checks and words what is wrong with the file; a classic pcap
    // is then read through a mapping instead.
    pcap_ = open_capture(path_, owner_, error);
    if (!pcap_) config_error(config, error);
    chunked_ = BufferedPcap::open(path_, owner_);
    if (chunked_) pcap_.reset();
    buffer_.resize(64 * 2048);
    read_head();
  }

  std::size_t poll(std::span<Block> out, std::uint64_t now_ns) override {
    // One refill per poll: a second would overwrite the chunk that this
    // poll's first blocks point into.
    refills_left_ = 1;
    if (need_more_) read_head();
    if (out.empty() || head_data_ == nullptr) return 0;
    if (!anchored_) {
      anchor_ns_ = now_ns;
      anchored_ = true;
    }
    if (parsed_.size() < out.size()) parsed_.resize(out.size());
    if (offsets_.size() < out.size()) offsets_.resize(out.size());
    std::size_t used = 0;
    std::size_t n = 0;
    while (n < out.size() && head_data_ != nullptr) {
      std::uint64_t due = 0;
      if (speed_ != 0) {
        due = head_due_ns();
        if (due > now_ns) break;
        last_due_ns_ = std::max(last_due_ns_, due);
      }
      const std::size_t caplen = head_caplen_;
      Block& b = out[n];
      b = Block{};
      if (chunked_) {
        b.data = {head_data_, caplen};  // in the chunk: no copy
      } else {
        if (buffer_.size() - used < caplen)
          buffer_.resize(std::max(buffer_.size() * 2, used + caplen));
        std::copy_n(head_data_, caplen, buffer_.begin() + static_cast<std::ptrdiff_t>(used));
        offsets_[n] = used;
        used += caplen;
      }
      // Built in place: assigning the returned value would read it back in
      // wide loads from the narrower stores that wrote it, a store-forwarding
      // stall per packet.
      static_assert(std::is_trivially_destructible_v<ParsedPacket>);
      ::new (static_cast<void*>(&parsed_[n]))
          ParsedPacket(parse_packet({head_data_, caplen}, head_wire_len_));
      b.ts_ns = head_ts_ns_;
      b.wire_len = std::max<std::uint32_t>(head_wire_len_, static_cast<std::uint32_t>(caplen));
      b.kind = BlockKind::packet;
      ++packets_;
      bytes_ += caplen;
      ++n;
      read_head();
    }
    // The buffer no longer moves: point the blocks into it.
    for (std::size_t i = 0; i < n; ++i) {
      if (!chunked_) out[i].data = {buffer_.data() + offsets_[i], parsed_[i].len};
      out[i].parsed = &parsed_[i];
    }
    return n;
  }

  bool done() const override { return head_data_ == nullptr && !need_more_; }

  std::uint64_t next_due_ns() const override {
    if (speed_ == 0 || head_data_ == nullptr || !anchored_) return 0;  // also: chunk to refill
    return head_due_ns();
  }

  FilterStats stats() const override {
    FilterStats s{{"packets", packets_}, {"bytes", bytes_}, {"passes", passes_}};
    const std::uint64_t errors = read_errors_ + (chunked_ ? chunked_->errors() : 0);
    if (errors != 0) s.emplace_back("read_errors", errors);
    return s;
  }

 private:
  std::uint64_t head_due_ns() const {
    const std::uint64_t rel = head_ts_ns_ > pass_first_ts_ns_ ? head_ts_ns_ - pass_first_ts_ns_ : 0;
    return anchor_ns_ + rel / speed_;
  }

  // Reads the next record into the head, going on to the next pass at the
  // end of the file; leaves the head empty when there is none.
  void read_head() {
    head_data_ = nullptr;
    need_more_ = false;
    while (chunked_ && !chunked_done_) {
      const std::uint8_t* data = nullptr;
      std::uint32_t caplen = 0, len = 0;
      std::uint64_t ts = 0;
      const auto next = chunked_->next(data, caplen, len, ts);
      if (next == BufferedPcap::Next::record) {
        head_data_ = data;
        head_caplen_ = caplen;
        head_wire_len_ = len;
        head_ts_ns_ = ts;
        if (pass_records_++ == 0) {
          pass_first_ts_ns_ = head_ts_ns_;
          if (passes_ != 0) anchor_ns_ = last_due_ns_;
        }
        return;
      }
      if (next == BufferedPcap::Next::need_more) {
        if (refills_left_ > 0) {
          --refills_left_;
          chunked_->refill();
          continue;
        }
        need_more_ = true;  // at the next poll
        return;
      }
      if (next == BufferedPcap::Next::truncated) ++read_errors_;
      ++passes_;
      if ((loop_ != 0 && passes_ >= loop_) || pass_records_ == 0) {
        chunked_done_ = true;
        return;
      }
      chunked_->rewind();
      pass_records_ = 0;
    }
    while (pcap_) {
      pcap_pkthdr* hdr = nullptr;
      const u_char* data = nullptr;
      const int rc = pcap_next_ex(pcap_.get(), &hdr, &data);
      if (rc == 1) {
        head_data_ = data;
        head_caplen_ = hdr->caplen;
        head_wire_len_ = hdr->len;
        // Nanosecond precision was asked for: tv_usec holds nanoseconds.
        head_ts_ns_ = static_cast<std::uint64_t>(hdr->ts.tv_sec) * 1'000'000'000 +
                      static_cast<std::uint64_t>(hdr->ts.tv_usec);
        if (pass_records_++ == 0) {
          pass_first_ts_ns_ = head_ts_ns_;
          if (passes_ != 0) anchor_ns_ = last_due_ns_;
        }
        return;
      }
      // End of file, or an error such as a record cut short: the pass ends.
      if (rc != PCAP_ERROR_BREAK) ++read_errors_;
      ++passes_;
      const bool last = (loop_ != 0 && passes_ >= loop_) || pass_records_ == 0;
      pcap_.reset();
      if (last) return;
      std::string error;
      pcap_ = open_capture(path_, owner_, error);
      if (!pcap_) ++read_errors_;
      pass_records_ = 0;
    }
  }

  std::string path_;
  std::optional<FileOwner> owner_;
  std::uint64_t loop_;
  std::uint64_t speed_;
  PcapHandle pcap_;
  std::unique_ptr<BufferedPcap> chunked_;  // instead of pcap_ for classic pcap
  bool chunked_done_ = false;
  bool need_more_ = false;  // the head is in the part of the file not read yet
  int refills_left_ = 1;

  // The record read ahead; head_data_ points into libpcap's buffer.
  const u_char* head_data_ = nullptr;
  std::size_t head_caplen_ = 0;
  std::uint32_t head_wire_len_ = 0;
  std::uint64_t head_ts_ns_ = 0;

  // Replay timing: a record is due at anchor + (ts - first ts of its pass) / speed.
  bool anchored_ = false;
  std::uint64_t anchor_ns_ = 0;
  std::uint64_t pass_first_ts_ns_ = 0;
  std::uint64_t last_due_ns_ = 0;
  std::uint64_t pass_records_ = 0;

  // What the last poll returned.
  std::vector<std::uint8_t> buffer_;
  std::vector<std::size_t> offsets_;
  std::vector<ParsedPacket> parsed_;

  std::uint64_t packets_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t passes_ = 0;
  std::uint64_t read_errors_ = 0;
};

}  // namespace

std::unique_ptr<UserSource> make_pcapin(const UserFilterConfig& config) {
  const auto path = string_option(config, "file");
  if (!path || path->empty()) config_error(config, "option 'file' is required");
  const auto loop = int_option(config, "loop").value_or(1);
  const auto speed = int_option(config, "speed").value_or(0);
  if (loop < 0) config_error(config, "option 'loop' must be at least 0");
  if (speed < 0) config_error(config, "option 'speed' must be at least 0");
  return std::make_unique<PcapIn>(config, *path, static_cast<std::uint64_t>(loop),
                                  static_cast<std::uint64_t>(speed));
}

}  // namespace srl::filters::user
