// The daemon's counters in the Prometheus text exposition format (0.0.4),
// and a minimal HTTP server that answers scrapes of them. Scrapes are rare
// and small, so the server takes one connection at a time on one thread,
// with bounds that keep a slow or hostile client from holding it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "srl/controld/requests.h"

namespace srl::controld {

// What one datapath channel (an AF_XDP queue, a packet socket) moved.
struct ChannelCounters {
  std::string request_unit;  // the unit's devices, joined
  std::string channel;       // e.g. "afxdp:eth0:0"
  std::string kind;          // "afxdp", "packet"
  std::uint64_t blocks = 0, bytes = 0, drops = 0;
};

struct DaemonGauges {
  std::size_t requests = 0;
  std::size_t transactions_committed = 0, transactions_rolled_back = 0;
  double uptime_seconds = 0;
};

// The exposition text: every family with # HELP and # TYPE (also when it
// has no samples), series sorted by their labels. Entries with identical
// labels are added together, since a series may appear only once per scrape.
std::string render_metrics(const std::vector<NodeCounters>& nodes,
                           const std::vector<ChannelCounters>& channels,
                           const DaemonGauges& gauges);

// A label value escaped as the format requires: backslash, double quote
// and line feed.
std::string escape_label_value(std::string_view value);

class MetricsServer {
 public:
  // Listens on `address`: "HOST:PORT" with a numeric IPv4 host,
  // "[IPV6]:PORT", or ":PORT" for every interface (IPv6 and IPv4 when the
  // host has IPv6). Port 0 takes a free port (see port()). Serves on a
  // thread of its own: GET (and HEAD) /metrics answer with `render()`,
  // which runs on that thread and so must be safe to call from it; a
  // render that throws gives 500. Throws std::runtime_error naming the
  // address and the cause.
  static std::unique_ptr<MetricsServer> start(const std::string& address,
                                              std::function<std::string()> render);
  ~MetricsServer();  // stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Stops serving (a connection in progress is dropped) and closes the
  // socket. Returns promptly; idempotent. Not to be called from render().
  void stop();

  std::uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }

  // Bounds per connection: the request head must arrive whole within
  // kReadTimeoutMs and fit kMaxRequestBytes; the reply must be taken
  // within kWriteTimeoutMs.
  static constexpr std::size_t kMaxRequestBytes = 8192;
  static constexpr int kReadTimeoutMs = 2000;
  static constexpr int kWriteTimeoutMs = 5000;

 private:
  MetricsServer() = default;
  void serve();
  void handle(int fd);
  bool wait_for_stop(int timeout_ms) const;

  std::string address_;
  std::uint16_t port_ = 0;
  std::function<std::string()> render_;
  int fd_ = -1;    // listening socket
  int wake_ = -1;  // eventfd signalled by stop()
  std::mutex stop_mutex_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace srl::controld
