// The control daemon's gRPC server: the srl.v1.Control service of
// proto/srl.proto on a Unix socket (and, later, TCP with TLS).
//
// The daemon owns its socket and learns each caller's credentials
// (SO_PEERCRED; over TCP, the common name of the client's verified TLS
// certificate names a local user): root may do anything; members of the socket's group may
// apply requests whose kernel part uses only filters root allows them, and
// see, watch and remove only their own requests; anyone else is refused.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "srl/controld/requests.h"

namespace grpc {
class Server;
}

namespace srl::controld {

class UnixListener;
class MetricsServer;

struct ServerOptions {
  std::filesystem::path socket = "/run/srl/controld.sock";
  // Group that may connect (the socket is made mode 0660, owned by it);
  // when the group does not exist the socket is 0600 (root only).
  std::string group = "srl";
  // Devices discovery models for Plan and Spaces when a request names none.
  std::vector<std::string> devices;
  // Orchestration tools over TCP ("0.0.0.0:7477"; empty: none), with TLS
  // both ways: the daemon's certificate and key, and the CA that signs the
  // clients' certificates. A client acts as the local user its
  // certificate's common name names (root, a member of the group, or
  // refused like anyone else).
  std::string tcp;
  std::filesystem::path tls_cert, tls_key, tls_client_ca;
  // Where to serve the counters in the Prometheus text format over HTTP
  // ("127.0.0.1:9477", "[::1]:9477", ":9477"); empty: not served.
  std::string metrics;
  // Whose requests the metrics show (user names; "*": everyone's): whoever
  // reaches the port reads them, so by default only root's.
  std::vector<std::string> metrics_users = {"root"};
  // What one user other than root may hold: requests stored, Watch streams
  // open at once, and the shortest interval between a stream's reports.
  std::size_t member_requests = 32;
  std::uint64_t member_kernel_insns = 20'000;
  std::size_t member_watches = 4;
  std::uint32_t member_watch_interval_ms = 100;
  // The requests and their state (database, pins, test hooks).
  ManagerOptions requests;
  // Filters the group's members may place in the kernel: by default those
  // that only look at traffic, never drop, redirect or change it.
  std::vector<std::string> member_kernel_filters = {
      "rx",   "eth", "arp",   "vlan",   "ip",   "ipv4",  "ipv6",      "icmp",
      "tcp",  "udp", "proto", "port",   "addr", "net",   "tcpflags",  "len",
      "hash", "bpf", "count", "sample", "rate", "union", "intersect", "pass"};
};

class Server {
 public:
  // Binds the socket (replacing a stale one left by a daemon that died;
  // refusing when another daemon answers on it) and starts serving.
  // Throws std::runtime_error naming the socket and the cause.
  static std::unique_ptr<Server> start(const ServerOptions& options);
  ~Server();  // stops serving, removes the socket
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Blocks until shutdown() (from another thread or a signal handler's
  // helper thread).
  void wait();
  void shutdown();
  const std::filesystem::path& socket() const { return socket_; }
  // The TCP port bound (with ServerOptions::tcp; port 0 picks one).
  int tcp_port() const { return tcp_port_; }
  // Stored requests that did not come up again at start, with why.
  const std::vector<std::string>& start_errors() const;

 private:
  Server() = default;
  struct Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<UnixListener> listener_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<grpc::Server> server_;
  std::filesystem::path socket_;
  int tcp_port_ = 0;
};

}  // namespace srl::controld
