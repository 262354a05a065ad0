// The daemon's own Unix socket in front of a gRPC server without ports: a
// call's handler finds its caller's credentials (as root, and as nobody from
// another process); the socket is exclusive, a stale one replaced, and
// stop() is prompt and leaves alone what is not the listener's.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../src/unix_listener.h"
#include "srl/v1/srl.grpc.pb.h"
#include "temp_dir.h"

extern char** environ;

namespace fs = std::filesystem;
namespace v1 = srl::v1;

namespace {

using srl::controld::PeerCredentials;
using srl::controld::UnixListener;
using srl::testing::TempDir;

// Set in the environment of a child that is to act as the client (see the
// helper test case at the end): "UID:GID:SOCKET".
constexpr const char* kClientEnv = "SRL_UNIX_LISTENER_TEST_CLIENT";
constexpr const char* kHelperName = "unix listener: client helper";
constexpr int kResultFd = 3;  // where the helper writes its answer

// Filters names its caller: name = uid, summary = user name, role = peer.
struct WhoAmI final : v1::Control::Service {
  const UnixListener* listener = nullptr;
  grpc::Status Filters(grpc::ServerContext* ctx, const v1::FiltersRequest*,
                       v1::FiltersReply* reply) override {
    const auto c = listener->credentials(ctx->peer());
    if (!c) return {grpc::StatusCode::PERMISSION_DENIED, "unknown peer " + ctx->peer()};
    auto* f = reply->add_filters();
    f->set_name(std::to_string(c->uid));
    f->set_summary(c->user);
    f->set_role(ctx->peer());
    return grpc::Status::OK;
  }
};

struct Daemon {
  TempDir dir{"srl-listener"};
  fs::path socket = dir.path / "run" / "controld.sock";
  WhoAmI service;
  std::unique_ptr<UnixListener> listener;
  std::unique_ptr<grpc::Server> server;
  explicit Daemon(const std::string& group) {
    listener = UnixListener::open(socket, group);
    service.listener = listener.get();
    grpc::ServerBuilder builder;  // no listening port: connections come from the listener
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    REQUIRE(server);
    listener->serve(server.get());
  }
  ~Daemon() {
    if (listener) listener->stop();
    server->Shutdown();
  }
};

// "UID USER PEER" of a Filters call on `socket`, or "error: CODE MESSAGE".
std::string who_am_i(const std::string& socket) {
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::FiltersReply reply;
  const auto status = stub->Filters(&ctx, v1::FiltersRequest(), &reply);
  if (!status.ok())
    return "error: " + std::to_string(status.error_code()) + " " + status.error_message();
  if (reply.filters_size() != 1) return "error: " + std::to_string(reply.filters_size());
  const auto& f = reply.filters(0);
  return f.name() + " " + f.summary() + " " + f.role();
}

// Runs this test binary again, as the helper test case, which calls as
// uid:gid. A fresh process, rather than a fork of this one, so that gRPC
// starts clean in it. Returns the helper's answer and its pid.
std::pair<std::string, pid_t> who_am_i_as(uid_t uid, gid_t gid, const std::string& socket) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    env.emplace_back(*e);
  env.push_back(std::string(kClientEnv) + "=" + std::to_string(uid) + ":" + std::to_string(gid) +
                ":" + socket);
  std::vector<char*> envp;
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string filter = std::string("--test-case=") + kHelperName;
  std::vector<char*> argv = {self.data(), filter.data(), nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], kResultFd);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, self.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  if (err != 0) {
    ::close(p[0]);
    FAIL("posix_spawn: " << std::strerror(err));
  }
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return {out, pid};
}

// The peer name at the end of a who_am_i() answer.
std::string peer_of(const std::string& answer) {
  const auto sp = answer.rfind(' ');
  return sp == std::string::npos ? std::string() : answer.substr(sp + 1);
}

// A socket file at `path` with nothing listening: what a daemon that died
// leaves.
void make_stale_socket(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}

bool connects(const fs::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

TEST_CASE("unix listener: the caller's credentials reach the call, as root and as nobody") {
  REQUIRE_MESSAGE(::geteuid() == 0, "this test changes user: run it as root");
  const passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  const uid_t nobody_uid = nobody->pw_uid;
  const gid_t nobody_gid = nobody->pw_gid;

  // nobody's primary group owns the socket, so nobody may connect.
  const group* g = ::getgrgid(nobody_gid);
  REQUIRE(g != nullptr);
  Daemon d(g->gr_name);
  struct stat st {};
  REQUIRE(::stat(d.socket.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0660);
  CHECK(st.st_gid == nobody_gid);
  // nobody must reach the socket through the test's private directory.
  fs::permissions(d.dir.path,
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::permissions(d.socket.parent_path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);

  SUBCASE("root") {
    const auto answer = who_am_i(d.socket.string());
    CHECK(answer.starts_with("0 root fd:"));
    const auto c = d.listener->credentials(peer_of(answer));
    REQUIRE(c);
    CHECK(c->uid == 0);
    CHECK(c->gid == 0);
    CHECK(c->pid == ::getpid());
    CHECK(c->user == "root");
    CHECK(srl::controld::member_of(*c, "root"));
    CHECK_FALSE(srl::controld::member_of(*c, g->gr_name));
    // Another connection, the first one closed: found again (its number
    // may well be the first's, reused).
    CHECK(who_am_i(d.socket.string()).starts_with("0 root fd:"));
  }
  SUBCASE("nobody, from another process") {
    const auto [answer, pid] = who_am_i_as(nobody_uid, nobody_gid, d.socket.string());
    CHECK(answer.starts_with(std::to_string(nobody_uid) + " nobody fd:"));
    const auto c = d.listener->credentials(peer_of(answer));
    REQUIRE(c);
    CHECK(c->uid == nobody_uid);
    CHECK(c->gid == nobody_gid);
    CHECK(c->pid == pid);
    CHECK(srl::controld::member_of(*c, g->gr_name));
    CHECK_FALSE(srl::controld::member_of(*c, "root"));
  }
  CHECK_FALSE(d.listener->credentials("unix:/elsewhere"));
}

TEST_CASE("unix listener: many connections at once, numbers reused, each call finds its caller") {
  Daemon d("srl-no-such-group");
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&] {
      for (int i = 0; i < 5; ++i)
        if (who_am_i(d.socket.string()).starts_with("0 root fd:")) ++good;
    });
  for (auto& c : clients)
    c.join();
  CHECK(good == 40);
}

TEST_CASE("unix listener: member_of is a group check; root implies nothing") {
  PeerCredentials root_in_nogroup{
      .pid = 1, .uid = 0, .gid = 65534, .user = "root", .groups = {65534}};
  CHECK_FALSE(srl::controld::member_of(root_in_nogroup, "root"));
  PeerCredentials root{.pid = 1, .uid = 0, .gid = 0, .user = "root", .groups = {0}};
  CHECK(srl::controld::member_of(root, "root"));
  CHECK_FALSE(srl::controld::member_of(root, "srl-no-such-group"));
}

TEST_CASE("unix listener: private without the group, exclusive, a stale socket replaced") {
  TempDir dir("srl-listener");
  const auto path = dir.path / "a" / "b.sock";
  {
    auto l = UnixListener::open(path, "srl-no-such-group");
    CHECK(l->path() == path);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(connects(path));  // listening already, before serve()

    CHECK_THROWS_WITH_AS(UnixListener::open(path, "srl-no-such-group"),
                         ("another daemon answers on " + path.string()).c_str(),
                         std::runtime_error);
    struct stat again {};
    REQUIRE(::stat(path.c_str(), &again) == 0);
    CHECK(again.st_ino == st.st_ino);  // the refused one did not touch it
    CHECK(connects(path));
  }
  CHECK_FALSE(fs::exists(path));

  make_stale_socket(path);
  REQUIRE(fs::exists(path));
  CHECK_FALSE(connects(path));
  {
    auto l = UnixListener::open(path, "srl-no-such-group");
    CHECK(connects(path));
  }
  CHECK_FALSE(fs::exists(path));

  // Not a socket: left alone.
  std::ofstream(path) << "data\n";
  CHECK_THROWS_WITH_AS(UnixListener::open(path, "srl-no-such-group"),
                       (path.string() + " exists and is not a socket").c_str(), std::runtime_error);
  CHECK(fs::is_regular_file(path));

  const std::string too_long = (dir.path / std::string(120, 'x')).string();
  CHECK_THROWS_AS(UnixListener::open(too_long, "srl-no-such-group"), std::runtime_error);
}

TEST_CASE("unix listener: stop() is prompt and idempotent; it leaves others' sockets alone") {
  Daemon d("srl-no-such-group");
  REQUIRE(who_am_i(d.socket.string()).starts_with("0 root fd:"));
  const auto other = d.dir.path / "other.sock";
  make_stale_socket(other);

  const auto t0 = std::chrono::steady_clock::now();
  d.listener->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < std::chrono::seconds(1));
  CHECK_FALSE(fs::exists(d.socket));
  CHECK(fs::exists(other));

  // Another daemon takes the path: neither a second stop() nor the
  // destructor removes its socket.
  make_stale_socket(d.socket);
  d.listener->stop();
  d.listener.reset();
  CHECK(fs::exists(d.socket));
  CHECK(fs::exists(other));
}

TEST_CASE("unix listener: stop() before serve() and without a server") {
  TempDir dir("srl-listener");
  auto l = UnixListener::open(dir.path / "s.sock", "srl-no-such-group");
  l->stop();
  CHECK_THROWS_AS(l->serve(nullptr), std::logic_error);
  l.reset();
  CHECK_FALSE(fs::exists(dir.path / "s.sock"));
}

// Not a test on its own: who_am_i_as() runs the binary again with only this
// case selected and kClientEnv set; without it, it does nothing.
TEST_CASE("unix listener: client helper") {
  const char* spec = std::getenv(kClientEnv);
  if (spec == nullptr) return;
  std::string answer;
  const std::string s = spec;
  const auto c1 = s.find(':');
  const auto c2 = s.find(':', c1 + 1);
  const auto uid = static_cast<uid_t>(std::stoul(s.substr(0, c1)));
  const auto gid = static_cast<gid_t>(std::stoul(s.substr(c1 + 1, c2 - c1 - 1)));
  // Groups first, the uid last: after it, nothing else may be changed.
  if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)
    answer = std::string("error: cannot become ") + spec + ": " + std::strerror(errno);
  else if (::getuid() != uid || ::geteuid() != uid)
    answer = "error: still uid " + std::to_string(::geteuid());
  else
    answer = who_am_i(s.substr(c2 + 1));
  const auto n = ::write(kResultFd, answer.data(), answer.size());
  CHECK(n == static_cast<ssize_t>(answer.size()));
}
