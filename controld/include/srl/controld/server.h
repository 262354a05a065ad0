// The control daemon's gRPC server: the srl.v1.Control service of
// proto/srl.proto on a Unix socket (and, later, TCP with TLS).
//
// So far the read-only part of the API is served: Compile, Plan (a dry run
// on this machine or a given system model), Spaces and Filters. The methods
// that change state (Apply, Remove) and those that read it (List, Get,
// Stats, Watch) answer UNIMPLEMENTED until the daemon keeps requests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Server;
}

namespace srl::controld {

struct ServerOptions {
  std::filesystem::path socket = "/run/srl/controld.sock";
  // Group that may connect (the socket is made mode 0660, owned by it);
  // when the group does not exist the socket is 0600 (root only).
  std::string group = "srl";
  // Devices discovery models for Plan and Spaces when a request names none.
  std::vector<std::string> devices;
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

 private:
  Server() = default;
  struct Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::filesystem::path socket_;
};

}  // namespace srl::controld
