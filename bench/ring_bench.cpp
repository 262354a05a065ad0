// ring_bench: a shared-memory DBuf (tail_drop, lossless) against a Linux
// pipe between two processes: a forked child writes N records of a fixed
// size, the parent reads them, either copying (pipe read(2), ring read()) or
// zero-copy (ring peek() + complete()). See bench/README.md.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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

enum class Mode { pipe, ring_read, ring_peek };

const char* name(Mode m) {
  switch (m) {
    case Mode::pipe:
      return "pipe";
    case Mode::ring_read:
      return "ring read";
    case Mode::ring_peek:
      return "ring peek";
  }
  return "?";
}

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

void fill(std::vector<std::byte>& rec, std::uint64_t n) {
  std::memcpy(rec.data(), &n, 8);
}

std::uint64_t first_word(const std::byte* p) {
  std::uint64_t n;
  std::memcpy(&n, p, 8);
  return n;
}

int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// Seconds for `count` records of `size` bytes from a child to this process.
double run_pipe(std::size_t size, std::uint64_t count) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    std::vector<std::byte> rec(size, std::byte{0x5a});
    for (std::uint64_t n = 0; n < count; ++n) {
      fill(rec, n);
      std::size_t off = 0;
      while (off < size) {
        const ssize_t k = write(fds[1], rec.data() + off, size - off);
        if (k <= 0) _exit(2);
        off += static_cast<std::size_t>(k);
      }
    }
    _exit(0);
  }
  close(fds[1]);
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
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  close(fds[0]);
  if (wait_child(pid) != 0) throw std::runtime_error("pipe writer failed");
  return s;
}

double run_ring(std::size_t size, std::uint64_t count, bool peek, std::size_t capacity) {
  DBuf ring = DBuf::create({.capacity = capacity});
  auto reader = ring.open_reader();
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    DBuf w = DBuf::attach(ring.fd());
    std::vector<std::byte> rec(size, std::byte{0x5a});
    for (std::uint64_t n = 0; n < count; ++n) {
      fill(rec, n);
      w.write(rec);
    }
    _exit(0);
  }
  std::vector<std::byte> buf(size);
  const auto timeout = std::chrono::seconds(30);
  for (std::uint64_t n = 0; n < count; ++n) {
    std::uint64_t got = 0;
    if (peek) {
      auto v = reader.peek(timeout);
      if (!v || v->data.size() != size) throw std::runtime_error("ring: peek failed");
      // Use the record in place: its first and last words.
      got = first_word(v->data.data());
      if (v->data[size - 1] != std::byte{0x5a}) throw std::runtime_error("ring: bad record");
      reader.complete(*v);
    } else {
      auto k = reader.read(buf, timeout);
      if (!k || *k != size) throw std::runtime_error("ring: read failed");
      got = first_word(buf.data());
    }
    if (got != n) throw std::runtime_error("ring: record out of order");
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
  std::size_t capacity = std::size_t{1} << 20;
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
      capacity = std::stoul(std::string(c));
    } else {
      std::fprintf(stderr,
                   "usage: ring_bench [--sizes=64,512,1500,65536] [--runs=5] [--mbytes=256]\n"
                   "                  [--max-records=1000000] [--capacity=1048576]\n");
      return 2;
    }
  }
  std::printf("%8s %-10s %9s %12s %8s %8s %9s\n", "size", "mode", "records", "Mrec/s", "GB/s",
              "range%", "x pipe");
  for (const std::size_t size : sizes) {
    if (size < 8) throw std::invalid_argument("sizes must be >= 8");
    const auto count = std::max<std::uint64_t>(
        1000, std::min<std::uint64_t>(max_records, static_cast<std::uint64_t>(
                                                       mbytes * 1e6 / static_cast<double>(size))));
    const Mode modes[] = {Mode::pipe, Mode::ring_read, Mode::ring_peek};
    std::vector<std::vector<double>> t(3);
    for (int r = 0; r < runs; ++r) {
      for (int k = 0; k < 3; ++k) {  // interleaved, rotating the order
        const Mode m = modes[(k + r) % 3];
        const double s = m == Mode::pipe ? run_pipe(size, count)
                                         : run_ring(size, count, m == Mode::ring_peek, capacity);
        t[static_cast<std::size_t>(m)].push_back(s);
      }
    }
    double pipe_rate = 0;
    for (int k = 0; k < 3; ++k) {
      auto& v = t[static_cast<std::size_t>(k)];
      std::sort(v.begin(), v.end());
      const double med = v[v.size() / 2];
      const double rate = static_cast<double>(count) / med;
      if (k == 0) pipe_rate = rate;
      std::printf("%8zu %-10s %9llu %12.3f %8.3f %8.1f %9.2f\n", size, name(modes[k]),
                  static_cast<unsigned long long>(count), rate / 1e6,
                  rate * static_cast<double>(size) / 1e9, (v.back() - v.front()) / med * 100,
                  rate / pipe_rate);
    }
    std::fflush(stdout);
  }
  return 0;
}
