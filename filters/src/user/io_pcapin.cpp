// pcapin: replays a pcap or pcapng capture through libpcap, as fast as
// possible or at a multiple of the recorded timing, once, N times or
// forever.
//
// One record is always read ahead (the "head"), so that done() and
// next_due_ns() are exact. A classic pcap file is mapped into memory and
// read in place: blocks point into the mapping, so a record is never copied
// (reading it through stdio costs two copies, and they are most of what a
// capture-to-capture job does). pcapng, and anything the mapped reader does
// not take, goes through libpcap, whose record data is valid only until the
// next pcap_next_ex(): those blocks are copied into a buffer reused per poll.
//
// Every pass reopens the file and replays the recorded timestamps as they
// are; with a replay speed, a pass starts when the previous one's last
// block was due.
#include <fcntl.h>
#include <pcap/pcap.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

// Opens `path` for reading with nanosecond timestamps; on failure returns
// null and sets `error`.
PcapHandle open_capture(const std::string& path, std::string& error) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle p(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!p) {
    error = "cannot read '" + path + "': " + errbuf;
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

// A classic pcap file (either byte order, µs or ns), mapped read-only.
class MappedPcap {
 public:
  // Null when the file is not a classic Ethernet pcap that can be mapped:
  // the caller falls back to libpcap, which also words the errors.
  static std::unique_ptr<MappedPcap> open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    struct stat st {};
    void* base = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= 24)
      base = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) return nullptr;
    std::unique_ptr<MappedPcap> m(new MappedPcap(static_cast<const std::uint8_t*>(base),
                                                 static_cast<std::size_t>(st.st_size)));
    std::uint32_t magic = 0;
    std::memcpy(&magic, m->base_, 4);
    switch (magic) {
      case 0xa1b2c3d4:
        break;
      case 0xa1b23c4d:
        m->nano_ = true;
        break;
      case 0xd4c3b2a1:
        m->swapped_ = true;
        break;
      case 0x4d3cb2a1:
        m->swapped_ = m->nano_ = true;
        break;
      default:
        return nullptr;  // pcapng or not a capture
    }
    if (m->u32(20) != DLT_EN10MB) return nullptr;
    madvise(const_cast<std::uint8_t*>(m->base_), m->size_, MADV_SEQUENTIAL);
    m->rewind();
    return m;
  }
  ~MappedPcap() { munmap(const_cast<std::uint8_t*>(base_), size_); }
  MappedPcap(const MappedPcap&) = delete;
  MappedPcap& operator=(const MappedPcap&) = delete;

  void rewind() { at_ = 24; }

  // The next record, valid while this object lives; false at the end and,
  // with `truncated` set, when a record is cut short.
  bool next(const std::uint8_t*& data, std::uint32_t& caplen, std::uint32_t& len,
            std::uint64_t& ts_ns, bool& truncated) {
    truncated = false;
    if (at_ == size_) return false;
    if (size_ - at_ < 16) {
      truncated = true;
      return false;
    }
    const std::uint64_t sec = u32(at_), frac = u32(at_ + 4);
    caplen = u32(at_ + 8);
    len = u32(at_ + 12);
    if (caplen > size_ - at_ - 16 || caplen > 0x40000) {
      truncated = true;
      return false;
    }
    data = base_ + at_ + 16;
    ts_ns = sec * 1'000'000'000 + (nano_ ? frac : frac * 1000);
    at_ += 16 + caplen;
    return true;
  }

 private:
  MappedPcap(const std::uint8_t* base, std::size_t size) : base_(base), size_(size) {}
  std::uint32_t u32(std::size_t at) const {
    std::uint32_t v = 0;
    std::memcpy(&v, base_ + at, 4);
    return swapped_ ? __builtin_bswap32(v) : v;
  }

  const std::uint8_t* base_;
  std::size_t size_;
  std::size_t at_ = 24;
  bool swapped_ = false;
  bool nano_ = false;
};

class PcapIn final : public UserSource {
 public:
  PcapIn(const UserFilterConfig& config, std::string path, std::uint64_t loop, std::uint64_t speed)
      : path_(std::move(path)), loop_(loop), speed_(speed) {
    std::string error;
    // libpcap checks and words what is wrong with the file; a classic pcap
    // is then read through a mapping instead.
    pcap_ = open_capture(path_, error);
    if (!pcap_) config_error(config, error);
    mapped_ = MappedPcap::open(path_);
    if (mapped_) pcap_.reset();
    buffer_.resize(64 * 2048);
    read_head();
  }

  std::size_t poll(std::span<Block> out, std::uint64_t now_ns) override {
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
      if (mapped_) {
        b.data = {head_data_, caplen};  // in the mapping: no copy
      } else {
        if (buffer_.size() - used < caplen)
          buffer_.resize(std::max(buffer_.size() * 2, used + caplen));
        std::copy_n(head_data_, caplen, buffer_.begin() + static_cast<std::ptrdiff_t>(used));
        offsets_[n] = used;
        used += caplen;
      }
      parsed_[n] = parse_packet({head_data_, caplen});
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
      if (!mapped_) out[i].data = {buffer_.data() + offsets_[i], parsed_[i].len};
      out[i].parsed = &parsed_[i];
    }
    return n;
  }

  bool done() const override { return head_data_ == nullptr; }

  std::uint64_t next_due_ns() const override {
    if (speed_ == 0 || head_data_ == nullptr || !anchored_) return 0;
    return head_due_ns();
  }

  FilterStats stats() const override {
    FilterStats s{{"packets", packets_}, {"bytes", bytes_}, {"passes", passes_}};
    if (read_errors_ != 0) s.emplace_back("read_errors", read_errors_);
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
    while (mapped_ && !mapped_done_) {
      const std::uint8_t* data = nullptr;
      std::uint32_t caplen = 0, len = 0;
      std::uint64_t ts = 0;
      bool truncated = false;
      if (mapped_->next(data, caplen, len, ts, truncated)) {
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
      if (truncated) ++read_errors_;
      ++passes_;
      if ((loop_ != 0 && passes_ >= loop_) || pass_records_ == 0) {
        // The mapping stays: the blocks of the last poll point into it.
        mapped_done_ = true;
        return;
      }
      mapped_->rewind();
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
      pcap_ = open_capture(path_, error);
      if (!pcap_) ++read_errors_;
      pass_records_ = 0;
    }
  }

  std::string path_;
  std::uint64_t loop_;
  std::uint64_t speed_;
  PcapHandle pcap_;
  std::unique_ptr<MappedPcap> mapped_;  // instead of pcap_ for classic pcap
  bool mapped_done_ = false;

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
