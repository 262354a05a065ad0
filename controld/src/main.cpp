// controld: the srl control daemon. Serves srl.v1.Control (proto/srl.proto)
// on a Unix socket until SIGINT or SIGTERM.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "srl/controld/server.h"

int main(int argc, char** argv) {
  CLI::App app("controld: the srl control daemon (gRPC service srl.v1.Control)");
  srl::controld::ServerOptions o;
  std::string socket = o.socket.string();
  app.add_option("--socket", socket, "Unix socket to listen on");
  app.add_option("--group", o.group, "group allowed to connect (socket mode 0660)");
  app.add_option("--dev", o.devices, "devices to model when a request names none (repeatable)")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);
  o.socket = socket;

  // Signals are taken by a thread of their own, which shuts the server down
  // (gRPC's shutdown is not async-signal-safe).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  try {
    auto server = srl::controld::Server::start(o);
    std::cerr << "controld: listening on " << server->socket().string() << "\n";
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&set, &sig);
      std::cerr << "controld: signal " << sig << ", stopping\n";
      server->shutdown();
    });
    server->wait();
    waiter.join();
  } catch (const std::exception& e) {
    std::cerr << "controld: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
