// Metrics: the exposition text exactly, and the scrape server through real
// TCP connections: status codes, headers, the bounds that keep an idle
// client from holding it, a prompt stop(), and errors that name the address.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../src/metrics.h"

namespace {

using srl::controld::ChannelCounters;
using srl::controld::DaemonGauges;
using srl::controld::MetricsServer;
using srl::controld::NodeCounters;
using srl::controld::render_metrics;
using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// A blocking TCP connection to the server, with a receive timeout so that a
// server that never answers fails the test instead of hanging it.
int connect_to(std::uint16_t port, int family = AF_INET) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  int rc;
  if (family == AF_INET6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(port);
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    FAIL("connect: " << std::strerror(err));
  }
  return fd;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// Sends `request` on a new connection and returns everything the server
// sent until it closed.
std::string http_exchange(std::uint16_t port, const std::string& request, int family = AF_INET) {
  const int fd = connect_to(port, family);
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string reply = read_all(fd);
  ::close(fd);
  return reply;
}

int status_of(const std::string& reply) {
  if (reply.rfind("HTTP/1.1 ", 0) != 0 || reply.size() < 12) return -1;
  return std::stoi(reply.substr(9, 3));
}

std::string body_of(const std::string& reply) {
  const auto p = reply.find("\r\n\r\n");
  return p == std::string::npos ? std::string() : reply.substr(p + 4);
}

std::string get(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n";
}

const std::string kBody = "srl_requests 3\n";

struct Served {
  std::atomic<int> renders{0};
  std::unique_ptr<MetricsServer> server = MetricsServer::start("127.0.0.1:0", [this] {
    ++renders;
    return kBody;
  });
};

}  // namespace

TEST_CASE("metrics: exact exposition, sorted and escaped") {
  // The node's name labels its series, not its id (a position).
  std::vector<NodeCounters> nodes = {
      {.request = "web",
       .node = "n2",
       .name = "udp>port",
       .filter = "port",
       .space = "xdp:eth0",
       .blocks = 10,
       .bytes = 1500,
       .accepted = 7},
      {.request = "dns",
       .node = "n7",
       .name = "a\"b\\c\nd",
       .filter = "drop",
       .space = "user",
       .blocks = 1,
       .bytes = 64,
       .accepted = 1,
       .dropped = 1,
       .lost = 2},
  };
  std::vector<ChannelCounters> channels = {
      {"eth0", "afxdp:eth0:0", "afxdp", 5, 700, 1},
  };
  DaemonGauges g;
  g.requests = 2;
  g.transactions_committed = 4;
  g.transactions_rolled_back = 1;
  g.uptime_seconds = 12.5;
  const std::string dns = R"(request="dns",node="a\"b\\c\nd",filter="drop",space="user")";
  const std::string web = R"(request="web",node="udp>port",filter="port",space="xdp:eth0")";
  const std::string ch = R"(channel="afxdp:eth0:0",kind="afxdp")";
  const std::string expected =
      "# HELP srl_node_blocks_total Blocks that reached a request's node.\n"
      "# TYPE srl_node_blocks_total counter\n"
      "srl_node_blocks_total{" +
      dns +
      "} 1\n"
      "srl_node_blocks_total{" +
      web +
      "} 10\n"
      "# HELP srl_node_bytes_total Bytes of the blocks that reached a request's node.\n"
      "# TYPE srl_node_bytes_total counter\n"
      "srl_node_bytes_total{" +
      dns +
      "} 64\n"
      "srl_node_bytes_total{" +
      web +
      "} 1500\n"
      "# HELP srl_node_accepted_total Blocks a request's node accepted.\n"
      "# TYPE srl_node_accepted_total counter\n"
      "srl_node_accepted_total{" +
      dns +
      "} 1\n"
      "srl_node_accepted_total{" +
      web +
      "} 7\n"
      "# HELP srl_node_dropped_total Blocks a request's node dropped (a drop node's accepted "
      "ones).\n"
      "# TYPE srl_node_dropped_total counter\n"
      "srl_node_dropped_total{" +
      dns +
      "} 1\n"
      "srl_node_dropped_total{" +
      web +
      "} 0\n"
      "# HELP srl_node_lost_total Blocks srl lost at a request's node (a full ring, a failed "
      "write).\n"
      "# TYPE srl_node_lost_total counter\n"
      "srl_node_lost_total{" +
      dns +
      "} 2\n"
      "srl_node_lost_total{" +
      web +
      "} 0\n"
      // No count by class among them: the families, without series.
      "# HELP srl_node_class_blocks_total Blocks a count by class counted, per class of its "
      "input.\n"
      "# TYPE srl_node_class_blocks_total counter\n"
      "# HELP srl_node_class_bytes_total Bytes a count by class counted, per class of its "
      "input.\n"
      "# TYPE srl_node_class_bytes_total counter\n"
      "# HELP srl_channel_blocks_total Blocks a datapath channel received.\n"
      "# TYPE srl_channel_blocks_total counter\n"
      "srl_channel_blocks_total{" +
      ch +
      "} 5\n"
      "# HELP srl_channel_bytes_total Bytes of the blocks a datapath channel received.\n"
      "# TYPE srl_channel_bytes_total counter\n"
      "srl_channel_bytes_total{" +
      ch +
      "} 700\n"
      "# HELP srl_channel_lost_total Blocks lost before a datapath channel could take them.\n"
      "# TYPE srl_channel_lost_total counter\n"
      "srl_channel_lost_total{" +
      ch +
      "} 1\n"
      "# HELP srl_requests Requests the daemon runs.\n"
      "# TYPE srl_requests gauge\n"
      "srl_requests 2\n"
      "# HELP srl_uptime_seconds Seconds since the daemon started.\n"
      "# TYPE srl_uptime_seconds gauge\n"
      "srl_uptime_seconds 12.5\n"
      "# HELP srl_transactions_total Transactions on requests since the daemon started, by how "
      "they ended.\n"
      "# TYPE srl_transactions_total counter\n"
      "srl_transactions_total{result=\"committed\"} 4\n"
      "srl_transactions_total{result=\"rolled_back\"} 1\n";
  CHECK(render_metrics(nodes, channels, g) == expected);
  // The same whatever order the caller lists them in.
  std::swap(nodes[0], nodes[1]);
  CHECK(render_metrics(nodes, channels, g) == expected);
}

TEST_CASE("metrics: label escaping, repeated series, empty families, special floats") {
  using srl::controld::escape_label_value;
  CHECK(escape_label_value("plain:eth0") == "plain:eth0");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escape_label_value("one\ntwo") == "one\\ntwo");
  CHECK(escape_label_value("tab\there") == "tab\there");  // only those three

  const std::vector<ChannelCounters> channels = {
      {"eth0", "packet:eth0", "packet", 1, 10, 0},
      {"eth0 eth1", "packet:eth0", "packet", 2, 20, 3},
  };
  const std::string text = render_metrics({}, channels, DaemonGauges{});
  CHECK(text.find("srl_channel_blocks_total{channel=\"packet:eth0\",kind=\"packet\"} 3\n") !=
        std::string::npos);
  CHECK(text.find("srl_channel_lost_total{channel=\"packet:eth0\",kind=\"packet\"} 3\n") !=
        std::string::npos);
  // A count by class: a series per class, by its name, its number, or other.
  const std::vector<NodeCounters> by_class = {
      {.request = "dns",
       .node = "n3",
       .name = "udp>dns>count",
       .filter = "count",
       .space = "user",
       .blocks = 6,
       .bytes = 600,
       .accepted = 6,
       .by_class = true,
       .classes = {{.cls = 28, .name = "AAAA", .blocks = 3, .bytes = 300},
                   {.cls = 99, .blocks = 2, .bytes = 200},
                   {.cls = srl::runtime::kOtherClass, .blocks = 1, .bytes = 100}}}};
  const std::string classes = render_metrics(by_class, {}, DaemonGauges{});
  const std::string labels = R"(request="dns",node="udp>dns>count",filter="count",space="user")";
  CHECK(classes.find("srl_node_class_blocks_total{" + labels + R"(,class="AAAA"} 3)") !=
        std::string::npos);
  CHECK(classes.find("srl_node_class_blocks_total{" + labels + R"(,class="99"} 2)") !=
        std::string::npos);
  CHECK(classes.find("srl_node_class_bytes_total{" + labels + R"(,class="other"} 100)") !=
        std::string::npos);

  // Families without series still say what they are.
  CHECK(text.find("# TYPE srl_node_blocks_total counter\n# HELP srl_node_bytes_total") !=
        std::string::npos);
  CHECK(text.find("srl_uptime_seconds 0\n") != std::string::npos);

  DaemonGauges g;
  g.uptime_seconds = std::numeric_limits<double>::infinity();
  CHECK(render_metrics({}, {}, g).find("srl_uptime_seconds +Inf\n") != std::string::npos);
  g.uptime_seconds = std::nan("");
  CHECK(render_metrics({}, {}, g).find("srl_uptime_seconds NaN\n") != std::string::npos);
  g.uptime_seconds = 0.1;
  CHECK(render_metrics({}, {}, g).find("srl_uptime_seconds 0.1\n") != std::string::npos);
}

TEST_CASE("metrics: GET /metrics answers 200 with the rendered text") {
  Served s;
  REQUIRE(s.server->port() != 0);
  const std::string reply = http_exchange(s.server->port(), get("/metrics"));
  CHECK(status_of(reply) == 200);
  CHECK(reply.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") !=
        std::string::npos);
  CHECK(reply.find("\r\nContent-Length: " + std::to_string(kBody.size()) + "\r\n") !=
        std::string::npos);
  CHECK(reply.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(body_of(reply) == kBody);

  // Query parameters are ignored; HTTP/1.0 and bare LF are accepted; HEAD
  // has the headers only.
  CHECK(body_of(http_exchange(s.server->port(), get("/metrics?x=1"))) == kBody);
  CHECK(body_of(http_exchange(s.server->port(), "GET /metrics HTTP/1.0\n\n")) == kBody);
  const std::string head = http_exchange(s.server->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  CHECK(status_of(head) == 200);
  CHECK(head.find("Content-Length: " + std::to_string(kBody.size())) != std::string::npos);
  CHECK(body_of(head).empty());
  CHECK(s.renders == 4);
}

TEST_CASE("metrics: other paths 404, other methods 405, malformed 400, oversize 431") {
  Served s;
  const auto port = s.server->port();
  CHECK(status_of(http_exchange(port, get("/"))) == 404);
  CHECK(status_of(http_exchange(port, get("/metrics/x"))) == 404);
  const std::string post =
      http_exchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(status_of(post) == 405);
  CHECK(post.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  CHECK(status_of(http_exchange(port, "DELETE /metrics HTTP/1.1\r\n\r\n")) == 405);
  CHECK(status_of(http_exchange(port, "hello\r\n\r\n")) == 400);
  CHECK(status_of(http_exchange(port, "GET /metrics HTTP/2.0\r\n\r\n")) == 505);
  const std::string big =
      "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(MetricsServer::kMaxRequestBytes, 'a') +
      "\r\n\r\n";
  CHECK(status_of(http_exchange(port, big)) == 431);
  CHECK(s.renders == 0);
  // Still serving.
  CHECK(status_of(http_exchange(port, get("/metrics"))) == 200);
}

TEST_CASE("metrics: a failing render answers 500") {
  auto server = MetricsServer::start("127.0.0.1:0",
                                     []() -> std::string { throw std::runtime_error("no stats"); });
  const std::string reply = http_exchange(server->port(), get("/metrics"));
  CHECK(status_of(reply) == 500);
  CHECK(body_of(reply).find("no stats") != std::string::npos);
}

TEST_CASE("metrics: an idle client holds the server no longer than the read timeout") {
  Served s;
  const auto port = s.server->port();
  const int idle = connect_to(port);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // accepted first
  const auto t0 = Clock::now();
  const std::string reply = http_exchange(port, get("/metrics"));
  const auto waited = ms_since(t0);
  CHECK(status_of(reply) == 200);
  CHECK(waited < MetricsServer::kReadTimeoutMs + 1500);
  // The idle one was told and closed.
  CHECK(status_of(read_all(idle)) == 408);
  ::close(idle);

  // Trickling bytes does not extend the budget.
  const int slow = connect_to(port);
  const auto t1 = Clock::now();
  for (int i = 0; i < 30 && ms_since(t1) < MetricsServer::kReadTimeoutMs + 1000; ++i) {
    if (::send(slow, "G", 1, MSG_NOSIGNAL) != 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(status_of(http_exchange(port, get("/metrics"))) == 200);
  CHECK(ms_since(t1) < MetricsServer::kReadTimeoutMs + 2500);
  ::close(slow);
}

TEST_CASE("metrics: stop() is prompt, idempotent, and ends listening") {
  Served s;
  const auto port = s.server->port();
  CHECK(status_of(http_exchange(port, get("/metrics"))) == 200);
  const int idle = connect_to(port);  // the server waits on it when stopped
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t0 = Clock::now();
  s.server->stop();
  CHECK(ms_since(t0) < 500);
  s.server->stop();
  ::close(idle);

  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  CHECK(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0);
  ::close(fd);
  s.server.reset();  // the destructor after stop() is fine
}

TEST_CASE("metrics: addresses: bad ones and bind failures throw naming the address") {
  const auto render = [] { return std::string(); };
  for (const std::string bad :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
        "localhost:9477", "::1:9477", "[::1]", "[::1:9477", "[nope]:9477", "999.0.0.1:9477"}) {
    CAPTURE(bad);
    try {
      MetricsServer::start(bad, render);
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      CHECK(what.find("invalid metrics address \"" + bad + "\"") != std::string::npos);
    }
  }

  Served s;
  const std::string taken = "127.0.0.1:" + std::to_string(s.server->port());
  try {
    MetricsServer::start(taken, render);
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) ==
          "cannot bind metrics address " + taken + ": " + std::strerror(EADDRINUSE));
  }
  try {
    MetricsServer::start("192.0.2.1:0", render);  // not an address of this host
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) ==
          "cannot bind metrics address 192.0.2.1:0: " + std::string(std::strerror(EADDRNOTAVAIL)));
  }
}

TEST_CASE("metrics: IPv6 loopback and every interface") {
  const auto render = [] { return kBody; };
  std::unique_ptr<MetricsServer> v6;
  try {
    v6 = MetricsServer::start("[::1]:0", render);
  } catch (const std::runtime_error& e) {
    MESSAGE("no IPv6 loopback here: " << e.what());
  }
  if (v6) CHECK(body_of(http_exchange(v6->port(), get("/metrics"), AF_INET6)) == kBody);

  const auto any = MetricsServer::start(":0", render);
  CHECK(body_of(http_exchange(any->port(), get("/metrics"))) == kBody);
  if (v6) CHECK(body_of(http_exchange(any->port(), get("/metrics"), AF_INET6)) == kBody);
}
