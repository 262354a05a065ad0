// What the commands that talk to controld share: the socket (--socket, else
// $SRL_SOCKET, else /run/srl/controld.sock), the stub, and the message for
// a daemon that cannot be reached.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "srl/v1/srl.grpc.pb.h"

namespace srl::cli {

inline constexpr const char* kDefaultSocket = "/run/srl/controld.sock";

struct DaemonOptions {
  std::string socket;

  void add(CLI::App& cmd) {
    cmd.add_option(
        "--socket", socket,
        std::string("controld's socket (default: $SRL_SOCKET, else ") + kDefaultSocket + ")");
  }
  std::string path() const {
    if (!socket.empty()) return socket;
    if (const char* env = std::getenv("SRL_SOCKET"); env != nullptr && *env != '\0') return env;
    return kDefaultSocket;
  }
  std::unique_ptr<srl::v1::Control::Stub> stub() const {
    return srl::v1::Control::NewStub(
        grpc::CreateChannel("unix:" + path(), grpc::InsecureChannelCredentials()));
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
