// srl spaces: the system model of this machine (or of a model file): spaces,
// channels, capabilities, and what discovery had to assume.
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "daemon_module.h"
#include "model_options.h"

namespace srl::cli {

void add_spaces_command(CLI::App& app, int& result) {
  struct Opts {
    ModelOptions model;
    bool json = false;
    std::string save;
    DaemonOptions daemon;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("spaces", "show the execution spaces and channels of this machine");
  cmd->footer(
      "Examples:\n"
      "  srl spaces                       # discover and print a table\n"
      "  srl spaces -j --dev eth0         # JSON for one device\n"
      "  srl spaces --save host.json      # keep the model to plan for this machine elsewhere\n"
      "  srl spaces --socket PATH         # the spaces the daemon at PATH (or HOST:PORT) sees");
  o->model.add(*cmd);
  cmd->add_flag("-j,--json", o->json, "print the model as JSON (the format --model reads)");
  cmd->add_option("--save", o->save, "also write the model as JSON to this file");
  o->daemon.add(*cmd);
  cmd->callback([o, &result] {
    // With --socket, the daemon's view (the machine it runs on).
    if (!o->daemon.socket.empty()) {
      std::string model_json, error;
      try {
        if (!daemon_module().spaces(o->daemon, o->model.devices, model_json, error)) {
          std::cerr << "srl spaces: " << error << "\n";
          result = kExitFailure;
          return;
        }
      } catch (const std::exception& e) {
        std::cerr << "srl spaces: " << e.what() << "\n";
        result = kExitFailure;
        return;
      }
      try {
        const auto m = optimizer::model_from_json(nlohmann::json::parse(model_json));
        if (!o->save.empty()) optimizer::save_model(m, o->save);
        std::cout << (o->json ? optimizer::to_json(m).dump(2) + "\n" : optimizer::to_text(m));
        result = kExitOk;
      } catch (const std::exception& e) {
        std::cerr << "srl spaces: the daemon's model: " << e.what() << "\n";
        result = kExitFailure;
      }
      return;
    }
    try {
      optimizer::SystemModel m = o->model.model();
      const auto cost = o->model.cost();
      if (const auto& p = cost.profile) {
        optimizer::apply(*p, m);
        m.notes.push_back("channel costs from the profile measured on " + p->host + " at " +
                          p->created);
      }
      if (!cost.note.empty()) m.notes.push_back(cost.note);
      if (!o->save.empty()) optimizer::save_model(m, o->save);
      std::cout << (o->json ? optimizer::to_json(m).dump(2) + "\n" : optimizer::to_text(m));
      result = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "srl spaces: " << e.what() << "\n";
      result = kExitFailure;
    }
  });
}

}  // namespace srl::cli
