// srl: the command line of the SRL control plane.
#include <iostream>
#include <string_view>

#include "commands.h"
#include "daemon_module.h"

namespace {

// Commands that run here alone: they do not need the daemon-commands module
// (daemon_module.h), so it is not opened for them. Everything else (a daemon
// command, --help, a mistyped command) opens it, so that all commands are
// known.
bool local_command(std::string_view name) {
  return name == "run" || name == "plan" || name == "spaces" || name == "calibrate" ||
         name == "--version";
}

}  // namespace

int main(int argc, char** argv) {
  // Last, on every return: gRPC ended before the process exits.
  struct FinishDaemonModule {
    ~FinishDaemonModule() { srl::cli::finish_daemon_module(); }
  } finish;
  CLI::App app{"srl: run SRL requests on this machine's packet processing spaces", "srl"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("srl ") + SRL_VERSION);
  app.footer("Run 'srl COMMAND --help' for the options of a command.");
  int result = srl::cli::kExitOk;
  srl::cli::add_run_command(app, result);
  srl::cli::add_plan_command(app, result);
  srl::cli::add_spaces_command(app, result);
  srl::cli::add_calibrate_command(app, result);
  if (argc < 2 || !local_command(argv[1])) {
    try {
      srl::cli::daemon_module().add_commands(app, result);
    } catch (const std::exception& e) {
      std::cerr << "srl: " << e.what() << "\n";
      return srl::cli::kExitFailure;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? srl::cli::kExitOk : srl::cli::kExitUsage;
  }
  return result;
}
