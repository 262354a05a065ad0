// The daemon's Unix socket, owned by the daemon rather than by gRPC, so that
// each caller's credentials (SO_PEERCRED) are known: gRPC does not report
// them for Unix sockets. Each accepted connection is handed to a gRPC server
// built without listening ports, and the caller of a call is found again by
// the peer name gRPC reports for it (ServerContext::peer()).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace grpc {
class Server;
}

namespace srl::controld {

// Who connected, as the kernel saw the process when it connected.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;           // the user's name, or the uid as a number when it has none
  std::vector<gid_t> groups;  // primary and supplementary, from the group database
};

// A local user as credentials: the name (or the uid as a number when it has
// none) and the groups the group database gives `uid` with primary group
// `gid`; pid 0.
PeerCredentials local_user(uid_t uid, gid_t gid);

// True when `group_name` exists and is among the caller's groups. Being root
// is not membership: callers decide whether uid 0 may do everything.
bool member_of(const PeerCredentials& c, const std::string& group_name);

class UnixListener {
 public:
  // Binds and listens on `path`, creating its directory. A socket left
  // there by a daemon that died is replaced; one that something answers on
  // is not (throws "another daemon answers on PATH"). The socket is mode
  // 0660 with group `group` when that group exists, else 0600. Throws
  // std::runtime_error naming the path and the cause.
  static std::unique_ptr<UnixListener> open(const std::filesystem::path& path,
                                            const std::string& group);
  ~UnixListener();  // stop()
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Starts accepting on a thread of its own: each connection's credentials
  // are recorded, then the connection is added to `server` (started, with
  // no listening ports; it must outlive stop()). Call once.
  void serve(grpc::Server* server);

  // The credentials of the caller of a call; `peer` is its
  // ServerContext::peer(). None for a peer this listener did not accept.
  std::optional<PeerCredentials> credentials(const std::string& peer) const;

  // Stops accepting, removes the socket file (if it is still the one bound
  // here) and closes the socket; connections already handed to gRPC stay
  // with it. Returns promptly; idempotent. Call it before shutting the gRPC
  // server down.
  void stop();

  const std::filesystem::path& path() const { return path_; }

  // The peer name gRPC gives a connection added by its file descriptor.
  static std::string peer_name(int fd);

 private:
  UnixListener() = default;
  void accept_loop(grpc::Server* server);
  void accept_one(grpc::Server* server);
  bool wait_for_stop(int timeout_ms) const;

  std::filesystem::path path_;
  bool bound_ = false;  // path_ is a socket this listener created
  dev_t dev_ = 0;       // identity of that socket file, so a replacement is left alone
  ino_t ino_ = 0;
  int fd_ = -1;    // listening socket
  int wake_ = -1;  // eventfd signalled by stop()
  std::mutex stop_mutex_;
  bool serving_ = false;
  bool stopped_ = false;
  std::thread thread_;

  // Keyed by peer name, that is by file descriptor number: when a closed
  // connection's number is reused by a new one, the new entry replaces the
  // old, so the map holds at most one entry per descriptor number.
  mutable std::mutex peers_mutex_;
  std::unordered_map<std::string, PeerCredentials> peers_;
};

}  // namespace srl::controld
