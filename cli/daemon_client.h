// What the commands that talk to controld share: the socket (--socket, else
// $SRL_SOCKET, else /run/srl/controld.sock) or a daemon's TCP address
// (HOST:PORT, with TLS both ways: --tls-ca, --tls-cert, --tls-key), the stub,
// and the message for a daemon that cannot be reached.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "srl/v1/srl.grpc.pb.h"

namespace srl::cli {

inline constexpr const char* kDefaultSocket = "/run/srl/controld.sock";

struct DaemonOptions {
  std::string socket;
  std::string tls_ca, tls_cert, tls_key;

  void add(CLI::App& cmd) {
    cmd.add_option("--socket", socket,
                   std::string("controld's socket, or HOST:PORT over TCP with TLS (default: "
                               "$SRL_SOCKET, else ") +
                       kDefaultSocket + ")");
    cmd.add_option("--tls-ca", tls_ca, "with HOST:PORT: the CA that signed the daemon's cert");
    cmd.add_option("--tls-cert", tls_cert,
                   "with HOST:PORT: this client's certificate; its common name is the user "
                   "the daemon acts for");
    cmd.add_option("--tls-key", tls_key, "with HOST:PORT: this client's private key");
  }
  // A path names a Unix socket; HOST:PORT (no '/') a daemon over TCP.
  bool tcp() const {
    const auto p = path();
    return p.find('/') == std::string::npos && p.find(':') != std::string::npos;
  }
  std::string path() const {
    if (!socket.empty()) return socket;
    if (const char* env = std::getenv("SRL_SOCKET"); env != nullptr && *env != '\0') return env;
    return kDefaultSocket;
  }
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
  // "cannot reach controld at PATH: ..." or the daemon's own message.
  std::string describe(const grpc::Status& s) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      return "cannot reach controld at " + path() + ": " + s.error_message() +
             " (is it running? start it with `controld`)";
    return s.error_message();
  }
};

}  // namespace srl::cli
