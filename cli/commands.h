// The subcommands of `srl`. Each lives in cmd_NAME.cpp and registers itself
// on the application with add_NAME_command; srl.cpp only lists them (and
// the daemon-commands module those that talk to controld).
#pragma once

#include <CLI/CLI.hpp>

namespace srl::cli {

// Exit codes shared by all subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // compile error, or a step that failed
inline constexpr int kExitUsage = 2;

// Registers `srl run`; sets `result` to the exit code when it runs.
void add_run_command(CLI::App& app, int& result);
// `srl plan`, `srl spaces`, `srl calibrate` (cmd_plan.cpp, cmd_spaces.cpp, cmd_calibrate.cpp).
void add_plan_command(CLI::App& app, int& result);
void add_spaces_command(CLI::App& app, int& result);
void add_calibrate_command(CLI::App& app, int& result);
// Commands that talk to controld, in the daemon-commands module
// (daemon_module.h): `srl filters` (cmd_filters.cpp), and the requests
// controld runs: `srl apply`, `ls`, `show`, `rm`, `stats` (cmd_requests.cpp).
void add_filters_command(CLI::App& app, int& result);
void add_apply_command(CLI::App& app, int& result);
void add_ls_command(CLI::App& app, int& result);
void add_show_command(CLI::App& app, int& result);
void add_rm_command(CLI::App& app, int& result);
void add_stats_command(CLI::App& app, int& result);

}  // namespace srl::cli
