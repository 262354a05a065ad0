// The commands that talk to controld live in a module of their own,
// srl-daemon-cli.so, which the CLI opens only when one of them runs: the
// module links gRPC, and loading gRPC's ~60 shared objects would cost every
// other command (srl run, plan, spaces, calibrate) ~10 ms of CPU at start.
//
// The module exports one C function, srl_daemon_module(), which returns the
// table below. Both sides are built from this header in one build, so the
// table is checked by its version only.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "daemon_options.h"

namespace srl::cli {

inline constexpr int kDaemonModuleVersion = 2;
inline constexpr const char* kDaemonModuleFile = "srl-daemon-cli.so";
inline constexpr const char* kDaemonModuleSymbol = "srl_daemon_module";

// `srl plan -n NAME`: the dry run of applying one request through the daemon.
struct DaemonPlan {
  DaemonOptions daemon;
  std::string name;
  std::string text, file_name;  // the request (file_name empty for -e)
  std::vector<std::string> devices;
  bool json = false;
};

struct DaemonModule {
  int version = kDaemonModuleVersion;
  // Registers filters, apply, ls, show, rm and stats on `app`; each sets
  // `result` to its exit code when it runs.
  void (*add_commands)(CLI::App& app, int& result) = nullptr;
  // Prints the plan and the changes; returns the exit code.
  int (*plan)(const DaemonPlan& plan) = nullptr;
  // `srl spaces --socket`: the daemon's model (JSON) into `model_json`, or
  // false with the message in `error`.
  bool (*spaces)(const DaemonOptions& daemon, const std::vector<std::string>& devices,
                 std::string& model_json, std::string& error) = nullptr;
  // Ends gRPC before the process exits: its last shutdown, which would
  // otherwise run on a thread of its own while the process exits.
  void (*finish)() = nullptr;
};

// The module, opened on first use: next to the srl binary (the build tree),
// else in srl's library directory of the installation. Throws
// std::runtime_error saying where it looked and why it failed.
const DaemonModule& daemon_module();
// Calls the module's finish() if it was opened; srl's main() calls it last.
void finish_daemon_module();

}  // namespace srl::cli
