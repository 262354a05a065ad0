// Prometheus text exposition (metrics.h) and the HTTP server that serves it.
#include "metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>

namespace srl::controld {
namespace {

// ---- exposition -----------------------------------------------------------

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

std::string label_set(std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  std::string s = "{";
  for (const auto& [name, value] : labels) {
    if (s.size() > 1) s += ',';
    s.append(name).append("=\"").append(escape_label_value(value)).append("\"");
  }
  s += '}';
  return s;
}

void sample(std::string& out, std::string_view name, std::string_view labels,
            std::string_view value) {
  out.append(name).append(labels).append(" ").append(value).append("\n");
}

// Go's float syntax as Prometheus parses it; finite values in the shortest
// form that reads back exactly.
std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

struct NodeSums {
  std::uint64_t blocks = 0, bytes = 0, accepted = 0, dropped = 0, lost = 0;
};
struct ChannelSums {
  std::uint64_t blocks = 0, bytes = 0, lost = 0;
};

struct NodeFamily {
  std::string_view name, help;
  std::uint64_t NodeSums::*value;
};
constexpr NodeFamily kNodeFamilies[] = {
    {"srl_node_blocks_total", "Blocks that reached a request's node.", &NodeSums::blocks},
    {"srl_node_bytes_total", "Bytes of the blocks that reached a request's node.",
     &NodeSums::bytes},
    {"srl_node_accepted_total", "Blocks a request's node accepted.", &NodeSums::accepted},
    {"srl_node_dropped_total", "Blocks a request's node dropped (a drop node's accepted ones).",
     &NodeSums::dropped},
    {"srl_node_lost_total", "Blocks srl lost at a request's node (a full ring, a failed write).",
     &NodeSums::lost},
};

struct ChannelFamily {
  std::string_view name, help;
  std::uint64_t ChannelSums::*value;
};
// Per class: blocks and bytes, as a channel's sums hold them.
using ClassFamily = ChannelFamily;
constexpr ClassFamily kClassFamilies[] = {
    {"srl_node_class_blocks_total", "Blocks a count by class counted, per class of its input.",
     &ChannelSums::blocks},
    {"srl_node_class_bytes_total", "Bytes a count by class counted, per class of its input.",
     &ChannelSums::bytes},
};

constexpr ChannelFamily kChannelFamilies[] = {
    {"srl_channel_blocks_total", "Blocks a datapath channel received.", &ChannelSums::blocks},
    {"srl_channel_bytes_total", "Bytes of the blocks a datapath channel received.",
     &ChannelSums::bytes},
    {"srl_channel_lost_total", "Blocks lost before a datapath channel could take them.",
     &ChannelSums::lost},
};

// ---- HTTP -----------------------------------------------------------------

using Clock = std::chrono::steady_clock;

std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left until `deadline` for poll(), rounded up so that a
// nearly spent budget still waits rather than spins.
int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

enum class Wait { ready, stopped, timeout };

// Waits until `fd` has `events`, stop() is called, or `deadline` passes.
Wait wait_for(int fd, short events, int wake, Clock::time_point deadline) {
  for (;;) {
    const int left = ms_left(deadline);
    if (left == 0) return Wait::timeout;
    pollfd p[2] = {{fd, events, 0}, {wake, POLLIN, 0}};
    const int n = ::poll(p, 2, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Wait::stopped;  // not expected; give the connection up
    if (p[1].revents != 0) return Wait::stopped;
    if (p[0].revents != 0) return Wait::ready;
  }
}

bool send_all(int fd, std::string_view data, int wake, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_for(fd, POLLOUT, wake, deadline) != Wait::ready) return false;
      continue;
    }
    return false;
  }
  return true;
}

struct Response {
  int status;
  std::string_view reason;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  bool head = false;  // headers only
  bool allow = false;
};

std::string serialize(const Response& r) {
  std::string s = "HTTP/1.1 " + std::to_string(r.status) + " ";
  s.append(r.reason).append("\r\n");
  s.append("Content-Type: ").append(r.content_type).append("\r\n");
  s.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  if (r.allow) s.append("Allow: GET, HEAD\r\n");
  s.append("Connection: close\r\n\r\n");
  if (!r.head) s.append(r.body);
  return s;
}

Response error(int status, std::string_view reason) {
  Response r{status, reason};
  r.body = std::string(reason) + "\n";
  return r;
}

// Where the request head ends, or npos. A bare LF ends lines too, as
// recipients may accept.
std::size_t head_end(const std::string& s) {
  const std::size_t crlf = s.find("\r\n\r\n");
  const std::size_t lf = s.find("\n\n");
  if (crlf == std::string::npos) return lf == std::string::npos ? lf : lf + 2;
  if (lf == std::string::npos || crlf < lf) return crlf + 4;
  return lf + 2;
}

Response route(const std::string& head, const std::function<std::string()>& render) {
  std::string line = head.substr(0, head.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos)
    return error(400, "Bad Request");
  const std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string version = line.substr(sp2 + 1);
  if (method.empty() || target.empty() || version.rfind("HTTP/", 0) != 0)
    return error(400, "Bad Request");
  if (version != "HTTP/1.0" && version != "HTTP/1.1")
    return error(505, "HTTP Version Not Supported");
  // Scrapers may add query parameters; this endpoint has none to honour.
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") return error(404, "Not Found");
  if (method != "GET" && method != "HEAD") {
    Response r = error(405, "Method Not Allowed");
    r.allow = true;
    return r;
  }
  Response r{200, "OK"};
  try {
    r.body = render();
  } catch (const std::exception& e) {
    r = error(500, "Internal Server Error");
    r.body = std::string("cannot render metrics: ") + e.what() + "\n";
  }
  if (r.status == 200) r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.head = method == "HEAD";
  return r;
}

// A parsed listening address.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool any = false;  // ":PORT": every interface
};

Endpoint parse_address(const std::string& address) {
  const auto bad = [&](const std::string& why) {
    return std::runtime_error("invalid metrics address \"" + address + "\": " + why);
  };
  // IPv6 hosts contain colons themselves, hence the brackets.
  const std::size_t colon = address.rfind(':');
  const bool bracketed = !address.empty() && address.front() == '[';
  if (colon == std::string::npos || (bracketed && (colon == 0 || address[colon - 1] != ']')))
    throw bad("expected HOST:PORT, [IPV6]:PORT or :PORT");
  const std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535)
    throw bad("the port must be a number from 0 to 65535");

  Endpoint e;
  if (host.empty()) {
    e.any = true;
    auto* a = reinterpret_cast<sockaddr_in6*>(&e.addr);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    a->sin6_port = htons(static_cast<std::uint16_t>(port));
    e.len = sizeof *a;
  } else if (bracketed) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&e.addr);
    a->sin6_family = AF_INET6;
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1)
      throw bad("\"" + host + "\" is not a numeric IPv6 address");
    a->sin6_port = htons(static_cast<std::uint16_t>(port));
    e.len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&e.addr);
    a->sin_family = AF_INET;
    if (::inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1)
      throw bad("\"" + host + "\" is not a numeric IPv4 address (IPv6 goes in brackets)");
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    e.len = sizeof *a;
  }
  return e;
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string s;
  s.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        s += "\\\\";
        break;
      case '"':
        s += "\\\"";
        break;
      case '\n':
        s += "\\n";
        break;
      default:
        s += c;
    }
  }
  return s;
}

std::string render_metrics(const std::vector<NodeCounters>& nodes,
                           const std::vector<ChannelCounters>& channels,
                           const DaemonGauges& gauges) {
  // Keyed by the label values, in label order: the map sorts the series
  // and merges repeats.
  std::map<std::array<std::string, 4>, NodeSums> by_node;
  for (const auto& n : nodes) {
    // The node's name, not its id: a series stays the same series when
    // another branch of the request is edited.
    auto& s = by_node[{n.request, n.name, n.filter, n.space}];
    s.blocks += n.blocks;
    s.bytes += n.bytes;
    s.accepted += n.accepted;
    s.dropped += n.dropped;
    s.lost += n.lost;
  }
  std::map<std::array<std::string, 2>, ChannelSums> by_channel;
  for (const auto& c : channels) {
    auto& s = by_channel[{c.channel, c.kind}];
    s.blocks += c.blocks;
    s.bytes += c.bytes;
    s.lost += c.drops;
  }

  // A count by class: a series per class (its name where the input's
  // filter has one, else its number; "other" for what its keys left out).
  std::map<std::array<std::string, 5>, ChannelSums> by_class;
  for (const auto& n : nodes)
    for (const auto& c : n.classes) {
      const std::string cls = c.cls == runtime::kOtherClass ? "other"
                              : c.name.empty()              ? std::to_string(c.cls)
                                                            : c.name;
      auto& s = by_class[{n.request, n.name, n.filter, n.space, cls}];
      s.blocks += c.blocks;
      s.bytes += c.bytes;
    }

  std::string out;
  std::vector<std::string> labels;
  labels.reserve(by_node.size());
  for (const auto& [k, sums] : by_node)
    labels.push_back(
        label_set({{"request", k[0]}, {"node", k[1]}, {"filter", k[2]}, {"space", k[3]}}));
  for (const auto& f : kNodeFamilies) {
    family(out, f.name, "counter", f.help);
    std::size_t i = 0;
    for (const auto& [k, sums] : by_node)
      sample(out, f.name, labels[i++], std::to_string(sums.*f.value));
  }

  labels.clear();
  for (const auto& [k, sums] : by_class)
    labels.push_back(label_set(
        {{"request", k[0]}, {"node", k[1]}, {"filter", k[2]}, {"space", k[3]}, {"class", k[4]}}));
  for (const auto& f : kClassFamilies) {
    family(out, f.name, "counter", f.help);
    std::size_t i = 0;
    for (const auto& [k, sums] : by_class)
      sample(out, f.name, labels[i++], std::to_string(sums.*f.value));
  }

  labels.clear();
  for (const auto& [k, sums] : by_channel)
    labels.push_back(label_set({{"channel", k[0]}, {"kind", k[1]}}));
  for (const auto& f : kChannelFamilies) {
    family(out, f.name, "counter", f.help);
    std::size_t i = 0;
    for (const auto& [k, sums] : by_channel)
      sample(out, f.name, labels[i++], std::to_string(sums.*f.value));
  }

  family(out, "srl_requests", "gauge", "Requests the daemon runs.");
  sample(out, "srl_requests", "", std::to_string(gauges.requests));
  family(out, "srl_uptime_seconds", "gauge", "Seconds since the daemon started.");
  sample(out, "srl_uptime_seconds", "", format_double(gauges.uptime_seconds));
  family(out, "srl_transactions_total", "counter",
         "Transactions on requests since the daemon started, by how they ended.");
  sample(out, "srl_transactions_total", label_set({{"result", "committed"}}),
         std::to_string(gauges.transactions_committed));
  sample(out, "srl_transactions_total", label_set({{"result", "rolled_back"}}),
         std::to_string(gauges.transactions_rolled_back));
  return out;
}

std::unique_ptr<MetricsServer> MetricsServer::start(const std::string& address,
                                                    std::function<std::string()> render) {
  Endpoint e = parse_address(address);
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->address_ = address;
  s->render_ = std::move(render);
  const std::string where = "metrics address " + address;

  s->fd_ = ::socket(e.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->fd_ < 0 && e.any && errno == EAFNOSUPPORT) {
    // No IPv6 on this host: every interface is every IPv4 interface.
    auto* a = reinterpret_cast<sockaddr_in*>(&e.addr);
    const std::uint16_t port = reinterpret_cast<const sockaddr_in6*>(&e.addr)->sin6_port;
    e.addr = {};
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    a->sin_port = port;
    e.len = sizeof *a;
    s->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  if (s->fd_ < 0) throw sys_error("cannot create a socket for " + where, errno);
  const int on = 1, off = 0;
  // So that a restarted daemon binds while old connections sit in TIME_WAIT.
  if (::setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
    throw sys_error("cannot set SO_REUSEADDR for " + where, errno);
  if (e.any && e.addr.ss_family == AF_INET6 &&
      ::setsockopt(s->fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0)
    throw sys_error("cannot accept IPv4 as well on " + where, errno);
  if (::bind(s->fd_, reinterpret_cast<const sockaddr*>(&e.addr), e.len) != 0)
    throw sys_error("cannot bind " + where, errno);
  if (::listen(s->fd_, 16) != 0) throw sys_error("cannot listen on " + where, errno);

  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(s->fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0)
    throw sys_error("cannot read the port bound for " + where, errno);
  s->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);

  s->wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->wake_ < 0) throw sys_error("cannot create an eventfd for " + where, errno);
  s->thread_ = std::thread([p = s.get()] { p->serve(); });
  return s;
}

MetricsServer::~MetricsServer() {
  stop();
}

void MetricsServer::stop() {
  std::lock_guard lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (wake_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  if (wake_ >= 0) ::close(wake_);
  fd_ = wake_ = -1;
}

// True when stop() was called; waits up to `timeout_ms` for it.
bool MetricsServer::wait_for_stop(int timeout_ms) const {
  pollfd p{wake_, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

void MetricsServer::serve() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      if (wait_for_stop(100)) return;  // not expected; do not spin
      continue;
    }
    if (p[1].revents != 0) return;
    if (p[0].revents == 0) continue;
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory: the connection waits in the backlog;
      // pause rather than spin on it.
      if (wait_for_stop(100)) return;
      continue;
    }
    try {
      handle(fd);
    } catch (...) {
      // Out of memory while answering: drop this connection, keep serving.
    }
  }
}

void MetricsServer::handle(int raw_fd) {
  const Fd fd(raw_fd);
  // One budget for the whole head, so a client trickling bytes cannot
  // extend it.
  const auto read_deadline = Clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
  std::string head;
  std::size_t end = std::string::npos;
  std::optional<Response> early;
  std::array<char, 2048> buf{};
  while ((end = head_end(head)) == std::string::npos) {
    if (head.size() >= kMaxRequestBytes) {
      early = error(431, "Request Header Fields Too Large");
      break;
    }
    const Wait w = wait_for(fd.get(), POLLIN, wake_, read_deadline);
    if (w == Wait::stopped) return;
    if (w == Wait::timeout) {
      early = error(408, "Request Timeout");
      break;
    }
    const std::size_t room = std::min(buf.size(), kMaxRequestBytes - head.size());
    const ssize_t n = ::recv(fd.get(), buf.data(), room, 0);
    if (n == 0) return;  // the client gave up
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;
    }
    head.append(buf.data(), static_cast<std::size_t>(n));
  }
  const Response r = early ? *early : route(head.substr(0, end), render_);
  const bool timed_out = early && early->status == 408;

  const auto write_deadline = Clock::now() + std::chrono::milliseconds(kWriteTimeoutMs);
  if (!send_all(fd.get(), serialize(r), wake_, write_deadline) || timed_out) return;
  // Closing with unread input would reset the connection and could discard
  // the reply before the client reads it: end the reply, then take what the
  // client still sends, briefly, until it closes.
  ::shutdown(fd.get(), SHUT_WR);
  const auto drain_deadline = Clock::now() + std::chrono::milliseconds(500);
  for (std::size_t drained = 0; drained < 65536;) {
    if (wait_for(fd.get(), POLLIN, wake_, drain_deadline) != Wait::ready) return;
    const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;
    }
    drained += static_cast<std::size_t>(n);
  }
}

}  // namespace srl::controld
