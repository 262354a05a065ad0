// The daemon-commands module (daemon_module.h): what srl does through
// controld, and the table the CLI finds it by.
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "daemon_client.h"
#include "daemon_module.h"

namespace srl::cli {
namespace {

void add_commands(CLI::App& app, int& result) {
  add_filters_command(app, result);
  add_apply_command(app, result);
  add_ls_command(app, result);
  add_show_command(app, result);
  add_rm_command(app, result);
  add_stats_command(app, result);
}

int plan(const DaemonPlan& p) {
  const DaemonClient daemon(p.daemon);
  srl::v1::PlanRequest req;
  req.set_name(p.name);
  auto* src = req.add_sources();
  src->set_text(p.text);
  if (!p.file_name.empty()) src->set_file_name(p.file_name);
  for (const auto& d : p.devices)
    src->add_devices(d);
  grpc::ClientContext ctx;
  DaemonClient::deadline(ctx, 60);
  srl::v1::PlanReply reply;
  const auto st = daemon.stub()->Plan(&ctx, req, &reply);
  if (!st.ok()) {
    std::cerr << "srl plan: " << daemon.describe(st) << "\n";
    return kExitFailure;
  }
  for (const auto& d : reply.diagnostics())
    std::cerr << d.rendered();
  if (!reply.ok()) return kExitFailure;
  if (p.json) {
    nlohmann::ordered_json out;
    out["plan"] = nlohmann::json::parse(reply.plan_json());
    out["changes"] = nlohmann::json::array();
    for (const auto& c : reply.changes())
      out["changes"].push_back(c);
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << reply.text() << "\nchanges against what runs now:\n";
    for (const auto& c : reply.changes())
      std::cout << "  " << c << "\n";
  }
  return kExitOk;
}

bool spaces(const DaemonOptions& options, const std::vector<std::string>& devices,
            std::string& model_json, std::string& error) {
  const DaemonClient daemon(options);
  grpc::ClientContext ctx;
  DaemonClient::deadline(ctx, 30);
  srl::v1::SpacesRequest req;
  for (const auto& d : devices)
    req.add_devices(d);
  srl::v1::SpacesReply reply;
  const auto st = daemon.stub()->Spaces(&ctx, req, &reply);
  if (!st.ok()) {
    error = daemon.describe(st);
    return false;
  }
  model_json = reply.model_json();
  return true;
}

// gRPC ends here, on the calling thread: the module holds a reference from
// its opening on (srl_daemon_module()), so this is the last one, and its
// shutdown does not run on a thread of its own while the process exits.
void finish() {
  grpc_shutdown_blocking();
}

const DaemonModule kModule{kDaemonModuleVersion, add_commands, plan, spaces, finish};

}  // namespace
}  // namespace srl::cli

extern "C" __attribute__((visibility("default"))) const srl::cli::DaemonModule*
srl_daemon_module() {
  static const bool held = (grpc_init(), true);  // released by finish()
  (void)held;
  return &srl::cli::kModule;
}
