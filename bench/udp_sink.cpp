// UDP receiver for capture_bench.sh: the application on the receiving host,
// so that the host's stack really delivers every datagram to a socket and
// the benchmark can check that none was lost while a capture watched.
// Binds one socket per port (a large receive buffer), reads them with
// recvmmsg(2) until SIGINT/SIGTERM or `--max-seconds` (always bounded), then
// prints one line of key=value figures: datagrams received in all and per
// port, bytes, and the process's own user and system CPU time
// (getrusage(2)).
//
// With `--poll-us=N` it does not wait on the sockets: it empties them, then
// sleeps N microseconds, and again. Nobody waits on a socket then, so the
// sender's path never wakes the sink, and the sink's cost per datagram does
// not depend on how its wake-ups happen to fall (which varies from run to
// run, and with whatever else runs on its CPU). 0 (the default) waits in
// epoll_wait(2).
//
//   udp_sink --ports=P[,Q...] [--addr=0.0.0.0] [--rcvbuf=33554432]
//            [--batch=64] [--max-seconds=120] [--poll-us=0]
//
// It prints "ready" on stderr once every socket is bound.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "rusage_seconds.h"

namespace {

volatile std::sig_atomic_t stop = 0;
void on_signal(int) {
  stop = 1;
}

struct Options {
  std::vector<unsigned> ports;
  std::string addr = "0.0.0.0";
  int rcvbuf = 32 << 20;
  unsigned batch = 64;
  double max_seconds = 120;
  long poll_us = 0;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view key) -> const char* {
      return a.substr(0, key.size()) == key ? argv[i] + key.size() : nullptr;
    };
    if (const char* p = value("--ports=")) {
      for (const char* c = p; *c != '\0';) {
        char* end = nullptr;
        const unsigned long port = std::strtoul(c, &end, 10);
        if (end == c || port == 0 || port > 65535) return false;
        o.ports.push_back(static_cast<unsigned>(port));
        c = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') return false;
      }
    } else if (const char* d = value("--addr=")) {
      o.addr = d;
    } else if (const char* r = value("--rcvbuf=")) {
      o.rcvbuf = static_cast<int>(std::strtol(r, nullptr, 10));
    } else if (const char* b = value("--batch=")) {
      o.batch = static_cast<unsigned>(std::strtoul(b, nullptr, 10));
    } else if (const char* m = value("--max-seconds=")) {
      o.max_seconds = std::strtod(m, nullptr);
    } else if (const char* u = value("--poll-us=")) {
      o.poll_us = std::strtol(u, nullptr, 10);
    } else {
      return false;
    }
  }
  return !o.ports.empty() && o.ports.size() <= 64 && o.rcvbuf > 0 && o.batch > 0 &&
         o.batch <= 1024 && o.max_seconds > 0 && o.poll_us >= 0 && o.poll_us <= 1000000;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: udp_sink --ports=P[,Q...] [--addr=IP] [--rcvbuf=BYTES] [--batch=N] "
                 "[--max-seconds=S] [--poll-us=N]\n");
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const int ep = epoll_create1(0);
  std::vector<int> fds;
  for (std::size_t i = 0; i < o.ports.size(); ++i) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(o.ports[i]));
    if (inet_pton(AF_INET, o.addr.c_str(), &a.sin_addr) != 1) {
      std::fprintf(stderr, "udp_sink: bad address %s\n", o.addr.c_str());
      return 2;
    }
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    // SO_RCVBUFFORCE passes rmem_max (as root); SO_RCVBUF is the fallback.
    if (fd < 0 ||
        (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &o.rcvbuf, sizeof o.rcvbuf) != 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof o.rcvbuf) != 0) ||
        bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::fprintf(stderr, "udp_sink: port %u: %s\n", o.ports[i], std::strerror(errno));
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      std::fprintf(stderr, "udp_sink: epoll: %s\n", std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  std::fprintf(stderr, "ready\n");

  std::vector<char> buffers(static_cast<std::size_t>(o.batch) * 2048);
  std::vector<iovec> iov(o.batch);
  std::vector<mmsghdr> msgs(o.batch);
  for (unsigned i = 0; i < o.batch; ++i) {
    iov[i] = {buffers.data() + static_cast<std::size_t>(i) * 2048, 2048};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<unsigned long long> received(o.ports.size(), 0);
  unsigned long long bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // Reads socket i until it is empty or 1024 batches (bounded).
  auto drain = [&](std::size_t i) {
    for (int round = 0; round < 1024; ++round) {
      const int got = recvmmsg(fds[i], msgs.data(), o.batch, MSG_DONTWAIT, nullptr);
      if (got <= 0) return;
      received[i] += static_cast<unsigned>(got);
      for (std::size_t k = 0; k < static_cast<std::size_t>(got); ++k)
        bytes += msgs[k].msg_len;
    }
  };
  std::vector<epoll_event> events(o.ports.size());
  while (o.poll_us > 0 && stop == 0 && elapsed() < o.max_seconds) {
    for (std::size_t i = 0; i < fds.size(); ++i)
      drain(i);
    const timespec t{o.poll_us / 1000000, (o.poll_us % 1000000) * 1000};
    nanosleep(&t, nullptr);
  }
  while (o.poll_us == 0 && stop == 0 && elapsed() < o.max_seconds) {
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0 && errno != EINTR) {
      std::fprintf(stderr, "udp_sink: epoll_wait: %s\n", std::strerror(errno));
      return 1;
    }
    for (std::size_t e = 0; e < static_cast<std::size_t>(std::max(n, 0)); ++e)
      drain(static_cast<std::size_t>(events[e].data.u64));
  }
  // Whatever is still queued when told to stop was delivered too.
  for (std::size_t i = 0; i < fds.size(); ++i)
    drain(i);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  unsigned long long total = 0;
  for (const auto r : received)
    total += r;
  std::printf("received=%llu", total);
  for (std::size_t i = 0; i < o.ports.size(); ++i)
    std::printf(" port_%u=%llu", o.ports[i], received[i]);
  std::printf(" bytes=%llu seconds=%.6f user_s=%.6f sys_s=%.6f\n", bytes, elapsed(),
              srl::bench::seconds(ru.ru_utime), srl::bench::seconds(ru.ru_stime));
  for (const int fd : fds)
    close(fd);
  close(ep);
  return 0;
}
