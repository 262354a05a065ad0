// The daemon's own Unix socket (unix_listener.h): accept, SO_PEERCRED, then
// the connection goes to gRPC.
#include "unix_listener.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace srl::controld {
namespace {

std::runtime_error sys_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

std::size_t lookup_buffer_size(int name) {
  const long n = ::sysconf(name);
  return n > 0 ? static_cast<std::size_t>(n) : 1024;
}

std::optional<gid_t> group_id(const std::string& name) {
  std::vector<char> buf(lookup_buffer_size(_SC_GETGR_R_SIZE_MAX));
  group g{};
  group* found = nullptr;
  int err;
  while ((err = ::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found)) == ERANGE)
    buf.resize(buf.size() * 2);
  if (err != 0 || found == nullptr) return std::nullopt;
  return g.gr_gid;
}

std::optional<std::string> user_name(uid_t uid) {
  std::vector<char> buf(lookup_buffer_size(_SC_GETPW_R_SIZE_MAX));
  passwd pw{};
  passwd* found = nullptr;
  int err;
  while ((err = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE)
    buf.resize(buf.size() * 2);
  if (err != 0 || found == nullptr) return std::nullopt;
  return std::string(pw.pw_name);
}

}  // namespace

PeerCredentials local_user(uid_t uid, gid_t gid) {
  PeerCredentials c;
  c.uid = uid;
  c.gid = gid;
  const auto name = user_name(uid);
  c.user = name ? *name : std::to_string(uid);
  c.groups = {gid};
  if (name) {
    int n = 16;
    std::vector<gid_t> groups;
    for (;;) {
      groups.resize(static_cast<std::size_t>(n));
      // Returns -1 with the needed count in n when the buffer is too small.
      if (::getgrouplist(name->c_str(), gid, groups.data(), &n) >= 0) {
        groups.resize(static_cast<std::size_t>(n));
        c.groups = std::move(groups);
        break;
      }
      if (n <= static_cast<int>(groups.size())) break;  // failed for another reason
    }
  }
  return c;
}

namespace {

PeerCredentials resolve(const ucred& cr) {
  PeerCredentials c = local_user(cr.uid, cr.gid);
  c.pid = cr.pid;
  return c;
}

sockaddr_un unix_address(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path)
    throw std::runtime_error("socket path " + p + " is too long for a Unix socket");
  std::copy(p.begin(), p.end(), addr.sun_path);
  return addr;
}

// True when something accepts connections on the Unix socket `path`.
bool socket_answers(const sockaddr_un& addr) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool up = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return up;
}

}  // namespace

bool member_of(const PeerCredentials& c, const std::string& group_name) {
  const auto gid = group_id(group_name);
  return gid && std::find(c.groups.begin(), c.groups.end(), *gid) != c.groups.end();
}

std::string UnixListener::peer_name(int fd) {
  return "fd:" + std::to_string(fd);
}

std::unique_ptr<UnixListener> UnixListener::open(const std::filesystem::path& path,
                                                 const std::string& group) {
  const sockaddr_un addr = unix_address(path);
  const std::string p = path.string();
  std::unique_ptr<UnixListener> l(new UnixListener());
  l->path_ = path;

  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      throw std::runtime_error("cannot create the directory of socket " + p + ": " + ec.message());
  }
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(p + " exists and is not a socket");
    if (socket_answers(addr)) throw std::runtime_error("another daemon answers on " + p);
    // Left by a daemon that died.
    if (::unlink(p.c_str()) != 0) throw sys_error("cannot remove stale socket " + p, errno);
  }

  l->fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->fd_ < 0) throw sys_error("cannot create socket " + p, errno);
  if (::bind(l->fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw sys_error("cannot bind " + p, errno);
  if (::lstat(p.c_str(), &st) != 0) throw sys_error("cannot stat " + p, errno);
  l->bound_ = true;
  l->dev_ = st.st_dev;
  l->ino_ = st.st_ino;

  // Permissions before listen(): until then connecting is refused, so no
  // one gets in through the mode bind() left.
  const auto gid = group_id(group);
  const bool grouped = gid && ::chown(p.c_str(), static_cast<uid_t>(-1), *gid) == 0;
  if (::chmod(p.c_str(), grouped ? 0660 : 0600) != 0)
    throw sys_error("cannot set the mode of " + p, errno);

  if (::listen(l->fd_, SOMAXCONN) != 0) throw sys_error("cannot listen on " + p, errno);
  l->wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->wake_ < 0) throw sys_error("cannot create an eventfd for " + p, errno);
  return l;
}

UnixListener::~UnixListener() {
  stop();
}

void UnixListener::serve(grpc::Server* server) {
  std::lock_guard lock(stop_mutex_);
  if (serving_ || stopped_)
    throw std::logic_error("UnixListener::serve: already serving or stopped (" + path_.string() +
                           ")");
  serving_ = true;
  thread_ = std::thread([this, server] { accept_loop(server); });
}

std::optional<PeerCredentials> UnixListener::credentials(const std::string& peer) const {
  std::lock_guard lock(peers_mutex_);
  const auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

void UnixListener::stop() {
  std::lock_guard lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (wake_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  // Removed while still listening: until then another daemon finds the
  // path answering and leaves it alone, so the file is still the one bound
  // here (unless removed behind this listener's back: hence the identity
  // check, as good as inode numbers, which may be reused).
  if (bound_) {
    struct stat st {};
    const std::string p = path_.string();
    if (::lstat(p.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) ::unlink(p.c_str());
  }
  if (fd_ >= 0) ::close(fd_);
  if (wake_ >= 0) ::close(wake_);
  fd_ = wake_ = -1;
}

// True when stop() was called; waits up to `timeout_ms` (-1: forever) for it.
bool UnixListener::wait_for_stop(int timeout_ms) const {
  pollfd p{wake_, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) > 0;
}

void UnixListener::accept_loop(grpc::Server* server) {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      if (wait_for_stop(100)) return;  // not expected; do not spin
      continue;
    }
    if (p[1].revents != 0) return;
    if (p[0].revents != 0) accept_one(server);
  }
}

void UnixListener::accept_one(grpc::Server* server) {
  // Non-blocking: gRPC reads the connection from its poller threads, and
  // calls on a blocking one stall.
  const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    switch (errno) {
      case EAGAIN:
      case EINTR:
      case ECONNABORTED:
        return;
      default:
        // Out of descriptors or memory: the connection waits in the
        // backlog; pause rather than spin on it.
        wait_for_stop(100);
        return;
    }
  }
  ucred cr{};
  socklen_t len = sizeof cr;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
    ::close(fd);
    return;
  }
  {
    // Recorded before gRPC sees the connection, so every call on it finds it.
    auto c = resolve(cr);
    std::lock_guard lock(peers_mutex_);
    peers_.insert_or_assign(peer_name(fd), std::move(c));
  }
  grpc::AddInsecureChannelFromFd(server, fd);
}

}  // namespace srl::controld
