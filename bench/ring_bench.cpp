// ring_bench: shared-memory DBufs against a Linux pipe between two
// processes: a forked child writes N records of a fixed size, the parent
// reads them. Pipe: one write(2) / read(2) per record, or batches (a
// reference). Ring: copying read(), zero-copy peek()/complete(), and
// batches (write_batch() + peek_batch(), complete(last)) per layout; the
// byte_stream layout read like the pipe. The writer is the ring's only one
// (RingOptions::single_writer, like the pipe's one writer here);
// --shared-writer measures the rings that take several writers. See
// bench/README.md.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "srl/runtime/ring.h"

namespace {

using Clock = std::chrono::steady_clock;
using srl::runtime::DBuf;
using srl::runtime::RecordMeta;
using srl::runtime::RecordView;
using srl::runtime::RingLayout;

enum class Mode {
  pipe,
  pipe_batch,
  ring_read,
  ring_peek,
  ring_batch,
  fixed_batch,
  oob_batch,
  stream_read
};
constexpr Mode kModes[] = {Mode::pipe,       Mode::pipe_batch,  Mode::ring_read, Mode::ring_peek,
                           Mode::ring_batch, Mode::fixed_batch, Mode::oob_batch, Mode::stream_read};
constexpr std::size_t kModeCount = sizeof(kModes) / sizeof(kModes[0]);

const char* name(Mode m) {
  switch (m) {
    case Mode::pipe:
      return "pipe";
    case Mode::pipe_batch:
      return "pipe batch";
    case Mode::ring_read:
      return "ring read";
    case Mode::ring_peek:
      return "ring peek";
    case Mode::ring_batch:
      return "ring batch";
    case Mode::fixed_batch:
      return "fixed batch";
    case Mode::oob_batch:
      return "oob batch";
    case Mode::stream_read:
      return "stream read";
  }
  return "?";
}

struct Config {
  std::size_t capacity = std::size_t{1} << 20;
  std::size_t batch = 32;
  bool pin = false;
  bool single_writer = true;
};

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

void fill(std::byte* rec, std::uint64_t n) {
  std::memcpy(rec, &n, 8);
}

std::uint64_t first_word(const std::byte* p) {
  std::uint64_t n;
  std::memcpy(&n, p, 8);
  return n;
}

void pin_to(std::size_t cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) die("sched_setaffinity");
}

int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// A stream of fixed-size records read in arbitrary pieces: checks the
// number in the first word of every record whose first word lies whole in
// one piece (all but the few that straddle two pieces).
struct StreamCheck {
  std::size_t size;
  std::uint64_t offset = 0;  // bytes seen so far
  void piece(const std::byte* p, std::size_t len) {
    std::uint64_t r = (offset + size - 1) / size;  // first record starting here
    for (; r * size + 8 <= offset + len; ++r) {
      if (first_word(p + (r * size - offset)) != r) {
        throw std::runtime_error("stream: record out of order");
      }
    }
    offset += len;
  }
};

void write_all(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = write(fd, p, n);
    if (k <= 0) _exit(2);
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

// Seconds for `count` records of `size` bytes from a child to this process.
double run_pipe(std::size_t size, std::uint64_t count, bool batch, const Config& cfg) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (cfg.pin) pin_to(1);
    close(fds[0]);
    const std::size_t k = batch ? cfg.batch : 1;
    std::vector<std::byte> recs(size * k, std::byte{0x5a});
    for (std::uint64_t n = 0; n < count;) {
      const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>(k, count - n));
      for (std::size_t j = 0; j < m; ++j)
        fill(recs.data() + j * size, n + j);
      write_all(fds[1], recs.data(), m * size);
      n += m;
    }
    _exit(0);
  }
  close(fds[1]);
  if (batch) {
    // Whatever the pipe holds, up to 64 KiB per read(2).
    std::vector<std::byte> buf(65536);
    StreamCheck check{size};
    while (check.offset < count * size) {
      const ssize_t k = read(fds[0], buf.data(), buf.size());
      if (k <= 0) die("pipe read");
      check.piece(buf.data(), static_cast<std::size_t>(k));
    }
  } else {
    std::vector<std::byte> buf(size);
    for (std::uint64_t n = 0; n < count; ++n) {
      std::size_t off = 0;
      while (off < size) {
        const ssize_t k = read(fds[0], buf.data() + off, size - off);
        if (k <= 0) die("pipe read");
        off += static_cast<std::size_t>(k);
      }
      if (first_word(buf.data()) != n) throw std::runtime_error("pipe: record out of order");
    }
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  close(fds[0]);
  if (wait_child(pid) != 0) throw std::runtime_error("pipe writer failed");
  return s;
}

RingLayout layout_of(Mode m) {
  switch (m) {
    case Mode::fixed_batch:
      return RingLayout::fixed_slots;
    case Mode::oob_batch:
      return RingLayout::oob_records;
    case Mode::stream_read:
      return RingLayout::byte_stream;
    default:
      return RingLayout::records;
  }
}

void check_view(const RecordView& v, std::size_t size, std::uint64_t n) {
  // Use the record in place: its first word and last byte.
  if (v.data.size() != size || first_word(v.data.data()) != n ||
      v.data[size - 1] != std::byte{0x5a}) {
    throw std::runtime_error("ring: bad record");
  }
}

double run_ring(Mode mode, std::size_t size, std::uint64_t count, const Config& cfg) {
  const RingLayout layout = layout_of(mode);
  const std::size_t slot = std::bit_ceil(size + 8);
  if (layout == RingLayout::fixed_slots && slot > cfg.capacity / 2) return 0;
  DBuf ring = DBuf::create({.capacity = cfg.capacity,
                            .layout = layout,
                            .slot_size = slot,
                            .single_writer = cfg.single_writer});
  auto reader = ring.open_reader();
  const bool batched =
      mode == Mode::ring_batch || mode == Mode::fixed_batch || mode == Mode::oob_batch;
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (cfg.pin) pin_to(1);
    DBuf w = DBuf::attach(ring.fd());
    const std::size_t k = batched ? cfg.batch : 1;
    std::vector<std::byte> recs(size * k, std::byte{0x5a});
    std::vector<std::span<const std::byte>> spans;
    std::vector<RecordMeta> metas(k);
    for (std::size_t j = 0; j < k; ++j)
      spans.emplace_back(recs.data() + j * size, size);
    for (std::uint64_t n = 0; n < count;) {
      const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>(k, count - n));
      for (std::size_t j = 0; j < m; ++j) {
        fill(recs.data() + j * size, n + j);
        metas[j].timestamp = n + j;
      }
      if (batched) {
        w.write_batch(std::span(spans).first(m), layout == RingLayout::oob_records
                                                     ? std::span(metas).first(m)
                                                     : std::span<const RecordMeta>{});
      } else {
        w.write(spans[0]);
      }
      n += m;
    }
    _exit(0);
  }
  const auto timeout = std::chrono::seconds(30);
  if (mode == Mode::stream_read) {
    std::vector<std::byte> buf(65536);
    StreamCheck check{size};
    while (check.offset < count * size) {
      auto k = reader.read(buf, timeout);
      if (!k) throw std::runtime_error("ring: stream read failed");
      check.piece(buf.data(), *k);
    }
  } else if (batched) {
    std::vector<RecordView> vs(cfg.batch);
    for (std::uint64_t n = 0; n < count;) {
      const std::size_t k = reader.peek_batch(vs, timeout);
      if (k == 0) throw std::runtime_error("ring: peek_batch failed");
      for (std::size_t j = 0; j < k; ++j)
        check_view(vs[j], size, n + j);
      reader.complete(vs[k - 1]);
      n += k;
    }
  } else {
    std::vector<std::byte> buf(size);
    for (std::uint64_t n = 0; n < count; ++n) {
      if (mode == Mode::ring_peek) {
        auto v = reader.peek(timeout);
        if (!v) throw std::runtime_error("ring: peek failed");
        check_view(*v, size, n);
        reader.complete(*v);
      } else {
        auto k = reader.read(buf, timeout);
        if (!k || *k != size || first_word(buf.data()) != n) {
          throw std::runtime_error("ring: read failed");
        }
      }
    }
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (wait_child(pid) != 0) throw std::runtime_error("ring writer failed");
  return s;
}

std::vector<std::size_t> parse_list(std::string_view v) {
  std::vector<std::size_t> out;
  while (!v.empty()) {
    const auto comma = v.find(',');
    out.push_back(std::stoul(std::string(v.substr(0, comma))));
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes{64, 512, 1500, 65536};
  int runs = 5;
  double mbytes = 256;  // data per run (MB), capped by --max-records
  std::uint64_t max_records = 1'000'000;
  Config cfg;
  std::vector<Mode> modes(std::begin(kModes), std::end(kModes));
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto val = [&](std::string_view key) -> std::string_view {
      return a.substr(0, key.size()) == key ? a.substr(key.size()) : std::string_view{};
    };
    if (auto v = val("--sizes="); !v.empty()) {
      sizes = parse_list(v);
    } else if (auto r = val("--runs="); !r.empty()) {
      runs = std::stoi(std::string(r));
    } else if (auto m = val("--mbytes="); !m.empty()) {
      mbytes = std::stod(std::string(m));
    } else if (auto x = val("--max-records="); !x.empty()) {
      max_records = std::stoull(std::string(x));
    } else if (auto c = val("--capacity="); !c.empty()) {
      cfg.capacity = std::stoul(std::string(c));
    } else if (auto b = val("--batch="); !b.empty()) {
      cfg.batch = std::max<std::size_t>(1, std::stoul(std::string(b)));
    } else if (a == "--pin") {
      cfg.pin = true;
    } else if (a == "--shared-writer") {
      cfg.single_writer = false;
    } else if (auto ms = val("--modes="); !ms.empty()) {
      // Indices into the mode list; pipe (0) is always run for the ratio.
      modes = {Mode::pipe};
      for (const std::size_t k : parse_list(ms)) {
        if (k >= kModeCount) throw std::invalid_argument("--modes: 0..7");
        if (k != 0) modes.push_back(kModes[k]);
      }
    } else {
      std::fprintf(stderr,
                   "usage: ring_bench [--sizes=64,512,1500,65536] [--runs=5] [--mbytes=256]\n"
                   "                  [--max-records=1000000] [--capacity=1048576]\n"
                   "                  [--batch=32] [--pin] [--shared-writer]\n"
                   "                  [--modes=0,1,...,7]\n");
      return 2;
    }
  }
  if (cfg.pin) pin_to(0);  // the reader; writers go to CPU 1
  std::printf("%8s %-12s %9s %12s %8s %8s %9s\n", "size", "mode", "records", "Mrec/s", "GB/s",
              "range%", "x pipe");
  for (const std::size_t size : sizes) {
    if (size < 8) throw std::invalid_argument("sizes must be >= 8");
    const auto count = std::max<std::uint64_t>(
        10000, std::min<std::uint64_t>(max_records, static_cast<std::uint64_t>(
                                                        mbytes * 1e6 / static_cast<double>(size))));
    std::vector<std::vector<double>> t(modes.size());
    for (int r = 0; r < runs; ++r) {
      for (std::size_t k = 0; k < modes.size(); ++k) {  // interleaved, rotating the order
        const std::size_t i = (k + static_cast<std::size_t>(r)) % modes.size();
        const Mode m = modes[i];
        const double s = m == Mode::pipe || m == Mode::pipe_batch
                             ? run_pipe(size, count, m == Mode::pipe_batch, cfg)
                             : run_ring(m, size, count, cfg);
        t[i].push_back(s);
      }
    }
    double pipe_rate = 0;
    for (std::size_t k = 0; k < modes.size(); ++k) {
      auto& v = t[k];
      std::sort(v.begin(), v.end());
      const double med = v[v.size() / 2];
      if (med == 0) continue;  // not applicable (fixed slots larger than the ring)
      const double rate = static_cast<double>(count) / med;
      if (k == 0) pipe_rate = rate;
      std::printf("%8zu %-12s %9llu %12.3f %8.3f %8.1f %9.2f\n", size, name(modes[k]),
                  static_cast<unsigned long long>(count), rate / 1e6,
                  rate * static_cast<double>(size) / 1e9, (v.back() - v.front()) / med * 100,
                  rate / pipe_rate);
    }
    std::fflush(stdout);
  }
  return 0;
}
