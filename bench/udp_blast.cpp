// Traffic generator for xdp_veth_bench.sh and capture_bench.sh: sends UDP
// datagrams with sendmmsg(2) from one socket, as fast as the socket takes
// them or at `--rate` datagrams per second, until `--count` datagrams are
// sent or `--max-seconds` have passed (always bounded). With `--every=K`,
// datagram i (from 0) goes to `--port` when i % K == 0 and to
// `--other-port` otherwise (1 in K to the port); the socket is then not
// connected and each datagram names its destination. Prints one line of key=value figures:
// datagrams sent, seconds, datagrams per second, send errors (ENOBUFS and the like, retried), and
// the process's own user and system CPU time from getrusage(2) (on a veth the receive side's
// softirq often runs in the sender's context and is charged to it as system time).
//
//   udp_blast --dst=IP [--port=53] [--sport=40000] [--count=1000000]
//             [--payload=58] [--batch=64] [--max-seconds=60] [--rate=PPS]
//             [--every=K --other-port=PORT]
//
// The default payload makes 100-byte Ethernet frames (14 + 20 + 8 + 58).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "rusage_seconds.h"

namespace {

struct Options {
  std::string dst;
  unsigned port = 53, sport = 40000, other_port = 0;
  unsigned long long count = 1000000, every = 1;
  double rate = 0;  // datagrams per second; 0: as fast as the socket takes them
  std::size_t payload = 58;
  unsigned batch = 64;
  double max_seconds = 60;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view key) -> const char* {
      return a.substr(0, key.size()) == key ? argv[i] + key.size() : nullptr;
    };
    if (const char* d = value("--dst="))
      o.dst = d;
    else if (const char* p = value("--port="))
      o.port = static_cast<unsigned>(std::strtoul(p, nullptr, 10));
    else if (const char* s = value("--sport="))
      o.sport = static_cast<unsigned>(std::strtoul(s, nullptr, 10));
    else if (const char* c = value("--count="))
      o.count = std::strtoull(c, nullptr, 10);
    else if (const char* l = value("--payload="))
      o.payload = std::strtoul(l, nullptr, 10);
    else if (const char* b = value("--batch="))
      o.batch = static_cast<unsigned>(std::strtoul(b, nullptr, 10));
    else if (const char* m = value("--max-seconds="))
      o.max_seconds = std::strtod(m, nullptr);
    else if (const char* r = value("--rate="))
      o.rate = std::strtod(r, nullptr);
    else if (const char* e = value("--every="))
      o.every = std::strtoull(e, nullptr, 10);
    else if (const char* q = value("--other-port="))
      o.other_port = static_cast<unsigned>(std::strtoul(q, nullptr, 10));
    else
      return false;
  }
  return !o.dst.empty() && o.port > 0 && o.port < 65536 && o.sport < 65536 && o.batch > 0 &&
         o.batch <= 1024 && o.payload <= 65000 && o.max_seconds > 0 && o.rate >= 0 &&
         o.every >= 1 && (o.every == 1 || (o.other_port > 0 && o.other_port < 65536));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: udp_blast --dst=IP [--port=53] [--sport=40000] [--count=N] "
                 "[--payload=BYTES] [--batch=N] [--max-seconds=S] [--rate=PPS] "
                 "[--every=K --other-port=PORT]\n");
    return 2;
  }
  sockaddr_in dst{}, src{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<std::uint16_t>(o.port));
  if (inet_pton(AF_INET, o.dst.c_str(), &dst.sin_addr) != 1) {
    std::fprintf(stderr, "udp_blast: bad address %s\n", o.dst.c_str());
    return 2;
  }
  sockaddr_in other = dst;
  other.sin_port = htons(static_cast<std::uint16_t>(o.other_port));
  src.sin_family = AF_INET;
  src.sin_port = htons(static_cast<std::uint16_t>(o.sport));
  const bool mixed = o.every > 1;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      (!mixed && connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0)) {
    std::fprintf(stderr, "udp_blast: socket: %s\n", std::strerror(errno));
    return 1;
  }

  std::vector<char> payload(o.payload, 'q');
  std::vector<iovec> iov(o.batch);
  std::vector<mmsghdr> msgs(o.batch);
  for (unsigned i = 0; i < o.batch; ++i) {
    iov[i] = {payload.data(), payload.size()};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  unsigned long long sent = 0, errors = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  timespec start_ts{};
  clock_gettime(CLOCK_MONOTONIC, &start_ts);
  const long long start_ns = start_ts.tv_sec * 1000000000LL + start_ts.tv_nsec;
  while (sent < o.count) {
    // Unpaced, the clock is read once per 64 batches: bounded without
    // slowing the loop. Paced, each batch waits for its time (absolute, so
    // late wake-ups do not add up) and the bound is checked every batch.
    if (o.rate > 0) {
      const long long due =
          start_ns + static_cast<long long>(static_cast<double>(sent) * 1e9 / o.rate);
      const timespec t{static_cast<time_t>(due / 1000000000LL),
                       static_cast<long>(due % 1000000000LL)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nullptr) == EINTR) {
      }
      if (elapsed() >= o.max_seconds) break;
    } else if ((sent / o.batch) % 64 == 0 && elapsed() >= o.max_seconds) {
      break;
    }
    const auto want = static_cast<unsigned>(std::min<unsigned long long>(o.batch, o.count - sent));
    if (mixed)
      for (unsigned i = 0; i < want; ++i) {
        msgs[i].msg_hdr.msg_name = (sent + i) % o.every == 0 ? &dst : &other;
        msgs[i].msg_hdr.msg_namelen = sizeof dst;
      }
    const int n = sendmmsg(fd, msgs.data(), want, 0);
    if (n < 0) {
      if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) {
        std::fprintf(stderr, "udp_blast: sendmmsg: %s\n", std::strerror(errno));
        return 1;
      }
      ++errors;
      if (elapsed() >= o.max_seconds) break;
      continue;
    }
    sent += static_cast<unsigned>(n);
  }
  const double secs = elapsed();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("sent=%llu seconds=%.6f pps=%.0f errors=%llu user_s=%.6f sys_s=%.6f\n", sent, secs,
              static_cast<double>(sent) / secs, errors, srl::bench::seconds(ru.ru_utime),
              srl::bench::seconds(ru.ru_stime));
  close(fd);
  return sent == o.count ? 0 : 3;
}
