// fifo: blocks to a named pipe that any program can read, as a live pcap
// stream (`tcpdump -r PATH`) or as raw records (u32 length, u64 ts_ns, both
// little endian, then the bytes; streams included).
//
// The datapath never waits for the reader. The pipe is opened with
// O_NONBLOCK: while nobody reads (open fails with ENXIO) blocks are dropped
// and counted, and every tick tries again. Records go whole into an output
// buffer that is written as far as the pipe takes it; a record is only ever
// dropped whole (buffer full), so a partial write never leaves the reader a
// broken stream. When the reader goes (EPIPE, or POLLERR at a tick) the pipe
// is closed, what is buffered for it is dropped, and the next reader starts
// with a fresh file header. A reader that leaves and another that comes
// between two ticks without a write in between cannot be told apart: the
// new one would continue the old stream.
//
// SIGPIPE: rather than ignoring it for the whole process (which would change
// how other output, such as print to a closed stdout, behaves), it is blocked
// in the writing thread around each write and a SIGPIPE the write raised is
// taken back with sigtimedwait before unblocking.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "as_user.h"
#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

constexpr std::size_t kDefaultBuffer = 4 << 20;
constexpr std::size_t kWriteAt = 64 * 1024;
constexpr int kPipeSize = 1 << 20;
constexpr auto kFinishWait = std::chrono::seconds(2);

// write() without the SIGPIPE a reader-less pipe raises.
ssize_t write_quietly(int fd, const std::uint8_t* data, std::size_t n) {
  sigset_t pipe_only;
  sigset_t old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  const ssize_t r = ::write(fd, data, n);
  const int err = errno;
  if (r < 0 && err == EPIPE && !was_pending) {
    const timespec zero{};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return r;
}

class FifoSink final : public UserFilter {
 public:
  FifoSink(const UserFilterConfig& config, std::string path, bool raw, std::size_t buffer_bytes)
      : path_(std::move(path)), owner_(config.file_owner), raw_(raw), capacity_(buffer_bytes) {
    const std::string as_text = owner_text(owner_);
    std::string error;
    // O_PATH: looks at what is there (following links, as stat would)
    // without opening a FIFO for writing yet.
    const int fd = open_as(owner_, path_, O_PATH, error);
    const int err = errno;
    if (fd >= 0) {
      struct stat st {};
      const bool fifo = ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
      ::close(fd);
      if (!fifo) config_error(config, "'" + path_ + "' exists and is not a FIFO");
    } else if (err == ENOENT) {
      // 0600 whatever create_mode says, as always: the pipe is for a reader
      // its owner starts.
      if (!make_fifo_as(owner_, path_, 0600, error))
        config_error(config, "cannot create FIFO '" + path_ + "'" + as_text + ": " + error);
      created_ = true;
    } else {
      config_error(config, "cannot use '" + path_ + "'" + as_text + ": " + error);
    }
    buffer_.reserve(capacity_);
    try_open();
  }

  ~FifoSink() override {
    if (fd_ >= 0) ::close(fd_);
    if (created_) {
      // Removed as the user who created it; left in place when that
      // identity cannot be taken.
      std::string error;
      unlink_as(owner_, path_, error);
    }
  }

  bool reads_headers() const override { return false; }

  void process(const Block& block, Emitter&) override {
    if (!raw_ && block.kind != BlockKind::packet) {
      ++skipped_streams_;
      return;
    }
    if (fd_ < 0) {
      ++dropped_no_reader_;
      return;
    }
    const std::size_t size =
        raw_ ? 12 + block.data.size() : 16 + std::min<std::size_t>(block.data.size(), kMaxSnaplen);
    if (buffer_.size() + size > capacity_) {
      drain();
      if (fd_ < 0) {
        ++dropped_no_reader_;
        return;
      }
      if (head_ > 0) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
      }
      if (buffer_.size() + size > capacity_) {
        ++dropped_full_;
        return;
      }
    }
    if (raw_) {
      append_le32(buffer_, static_cast<std::uint32_t>(block.data.size()));
      append_le64(buffer_, block.ts_ns);
      buffer_.insert(buffer_.end(), block.data.begin(), block.data.end());
    } else {
      append_pcap_record(buffer_, block, kMaxSnaplen);
    }
    appended_ += size;
    record_ends_.push_back(appended_);
    if (buffer_.size() - head_ >= kWriteAt) drain();
  }

  void tick(std::uint64_t, Emitter&) override {
    if (finished_) return;
    if (fd_ >= 0) {
      drain();
      if (fd_ >= 0 && reader_gone()) close_pipe();
    }
    if (fd_ < 0) try_open();
  }

  void finish(Emitter&) override {
    finished_ = true;
    // Give a reader that is there a bounded time to take the rest.
    const auto deadline = std::chrono::steady_clock::now() + kFinishWait;
    while (fd_ >= 0) {
      drain();
      if (fd_ < 0 || head_ == buffer_.size()) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
    close_pipe();
  }

  std::string failure() const override { return failure_; }

  FilterStats stats() const override {
    FilterStats s{{"written", written_},
                  {"dropped_no_reader", dropped_no_reader_},
                  {"dropped_full", dropped_full_},
                  {"readers", readers_}};
    if (!raw_) s.emplace_back("skipped_streams", skipped_streams_);
    return s;
  }

 private:
  void try_open() {
    std::string error;
    const int fd = open_as(owner_, path_, O_WRONLY | O_NONBLOCK, error);
    if (fd < 0) {
      // ENXIO: no reader yet. Anything else (the FIFO removed, its mode
      // changed) no reader can mend: said once, blocks counted as before.
      if (errno != ENXIO && failure_.empty())
        failure_ = "opening FIFO '" + path_ + "'" + owner_text(owner_) + ": " + error;
      return;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
      // Replaced by something else since: never write into a regular file.
      ::close(fd);
      return;
    }
    // A larger pipe rides out a slow reader longer; the default also works.
    (void)::fcntl(fd, F_SETPIPE_SZ, kPipeSize);
    fd_ = fd;
    ++readers_;
    buffer_.clear();
    head_ = 0;
    record_ends_.clear();
    appended_ = written_bytes_ = 0;
    if (!raw_) {
      append_pcap_header(buffer_, kMaxSnaplen);
      appended_ = buffer_.size();
    }
  }

  bool reader_gone() const {
    pollfd p{fd_, POLLOUT, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
  }

  // Writes what the pipe takes now.
  void drain() {
    while (fd_ >= 0 && head_ < buffer_.size()) {
      const ssize_t n = write_quietly(fd_, buffer_.data() + head_, buffer_.size() - head_);
      if (n > 0) {
        head_ += static_cast<std::size_t>(n);
        written_bytes_ += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      close_pipe();  // EPIPE: the reader went away
      return;
    }
    while (!record_ends_.empty() && record_ends_.front() <= written_bytes_) {
      record_ends_.pop_front();
      ++written_;
    }
    if (head_ == buffer_.size()) {
      buffer_.clear();
      head_ = 0;
    } else if (head_ >= capacity_ / 2) {
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  // Records not yet wholly in the pipe are lost with the reader.
  void close_pipe() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    dropped_no_reader_ += record_ends_.size();
    record_ends_.clear();
    buffer_.clear();
    head_ = 0;
  }

  std::string path_;
  std::optional<FileOwner> owner_;
  bool raw_;
  std::size_t capacity_;
  bool created_ = false;
  bool finished_ = false;
  int fd_ = -1;
  std::string failure_;

  // buffer_[head_, size) is not written yet. appended_ and written_bytes_
  // count bytes for the current reader; record_ends_ holds where each
  // record not yet wholly written ends, on the same scale.
  std::vector<std::uint8_t> buffer_;
  std::size_t head_ = 0;
  std::uint64_t appended_ = 0;
  std::uint64_t written_bytes_ = 0;
  std::deque<std::uint64_t> record_ends_;

  std::uint64_t written_ = 0;
  std::uint64_t dropped_no_reader_ = 0;
  std::uint64_t dropped_full_ = 0;
  std::uint64_t skipped_streams_ = 0;
  std::uint64_t readers_ = 0;
};

}  // namespace

std::unique_ptr<UserFilter> make_fifo_sink(const UserFilterConfig& config,
                                           std::size_t buffer_bytes) {
  const auto path = string_option(config, "path");
  if (!path || path->empty()) config_error(config, "option 'path' is required");
  const std::string format = string_option(config, "format").value_or("pcap");
  if (format != "pcap" && format != "raw")
    config_error(config, "option 'format' must be pcap or raw, not '" + format + "'");
  return std::make_unique<FifoSink>(config, *path, format == "raw", buffer_bytes);
}

std::unique_ptr<UserFilter> make_fifo_sink(const UserFilterConfig& config) {
  return make_fifo_sink(config, kDefaultBuffer);
}

}  // namespace srl::filters::user
