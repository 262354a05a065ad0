// The daemon's client, for the commands in the daemon-commands module
// (daemon_module.h): the stub for the socket or address DaemonOptions name,
// and the message for a daemon that cannot be reached.
#pragma once

#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "daemon_options.h"
#include "srl/v1/srl.grpc.pb.h"

namespace srl::cli {

struct DaemonClient : DaemonOptions {
  DaemonClient() = default;
  explicit DaemonClient(const DaemonOptions& o) : DaemonOptions(o) {}

  std::unique_ptr<srl::v1::Control::Stub> stub() const {
    if (!tcp())
      return srl::v1::Control::NewStub(
          grpc::CreateChannel("unix:" + path(), grpc::InsecureChannelCredentials()));
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = read_file(tls_ca);
    o.pem_cert_chain = read_file(tls_cert);
    o.pem_private_key = read_file(tls_key);
    return srl::v1::Control::NewStub(grpc::CreateChannel(path(), grpc::SslCredentials(o)));
  }
  // The whole file, or empty when it cannot be read (the TLS handshake then
  // says what is missing).
  static std::string read_file(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    if (in) ss << in.rdbuf();
    return ss.str();
  }
  // A context that gives up after `seconds` (so a dead socket is an error,
  // not a hang).
  static void deadline(grpc::ClientContext& c, int seconds = 10) {
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }
  // Why the socket cannot be used, where the file says so: not there, or
  // not this user's to use; empty otherwise.
  std::string socket_problem() const {
    if (tcp()) return {};
    struct stat st {};
    if (::stat(path().c_str(), &st) != 0)
      return errno == ENOENT
                 ? "no controld socket at " + path() +
                       " (is controld running? start it with `controld`)"
                 : "cannot use controld's socket " + path() + ": " + std::strerror(errno);
    if (::access(path().c_str(), R_OK | W_OK) == 0 || errno != EACCES) return {};
    const std::string denied =
        "cannot use controld's socket " + path() + ": " + std::strerror(EACCES) + " (";
    if ((st.st_mode & 0060) == 0)
      return denied +
             "it is root's alone, mode 0600: the daemon found no group for its users when it "
             "started, its log says which; create it (groupadd --system srl), add yourself "
             "(usermod -aG srl $USER, then log in again) and restart controld)";
    const group* g = ::getgrgid(st.st_gid);
    const std::string name = g != nullptr ? g->gr_name : std::to_string(st.st_gid);
    return denied + "it is for root and the group " + name +
           ", which you are not in: usermod -aG " + name + " $USER, then log in again)";
  }
  // "cannot reach controld at PATH: ..." (nothing answers there, or the
  // socket is not this user's), "did not answer in time" (it is there, but
  // busy), or the daemon's own message.
  std::string describe(const grpc::Status& s) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      if (auto problem = socket_problem(); !problem.empty()) return problem;
      return "cannot reach controld at " + path() + ": " + s.error_message() +
             " (is it running? start it with `controld`)";
    }
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      return "controld at " + path() + " did not answer in time (" + s.error_message() +
             "): it is busy with another change, or stuck; try again, and see its log";
    return s.error_message();
  }
};

}  // namespace srl::cli
