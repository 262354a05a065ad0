// How a command names controld: the socket (--socket, else $SRL_SOCKET,
// else /run/srl/controld.sock) or a daemon's TCP address (HOST:PORT, with
// TLS both ways: --tls-ca, --tls-cert, --tls-key). Only options: talking to
// the daemon is daemon_client.h, in the daemon-commands module.
#pragma once

#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

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
};

}  // namespace srl::cli
