// srl: the command line of the SRL control plane.
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"srl: run SRL requests on this machine's packet processing spaces", "srl"};
  app.require_subcommand(1);
  app.footer("Run 'srl COMMAND --help' for the options of a command.");
  int result = srl::cli::kExitOk;
  srl::cli::add_run_command(app, result);
  srl::cli::add_plan_command(app, result);
  srl::cli::add_spaces_command(app, result);
  srl::cli::add_calibrate_command(app, result);
  srl::cli::add_filters_command(app, result);
  srl::cli::add_apply_command(app, result);
  srl::cli::add_ls_command(app, result);
  srl::cli::add_show_command(app, result);
  srl::cli::add_rm_command(app, result);
  srl::cli::add_stats_command(app, result);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? srl::cli::kExitOk : srl::cli::kExitUsage;
  }
  return result;
}
