// srl filters: the filter catalog, as the daemon serves it.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "daemon_client.h"

namespace srl::cli {

void add_filters_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("filters", "list the filter catalog (from controld)");
  o->daemon.add(*cmd);
  cmd->add_flag("-j,--json", o->json, "print the catalog as JSON");
  cmd->footer("Exit status: 0 ok, 1 the daemon cannot be reached or refused, 2 usage.");
  cmd->callback([o, &result] {
    grpc::ClientContext c;
    DaemonClient::deadline(c);
    v1::FiltersReply reply;
    const auto status = o->daemon.stub()->Filters(&c, v1::FiltersRequest(), &reply);
    if (!status.ok()) {
      std::cerr << "srl filters: " << o->daemon.describe(status) << "\n";
      result = kExitFailure;
      return;
    }
    if (o->json) {
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const auto& f : reply.filters()) {
        nlohmann::ordered_json options = nlohmann::ordered_json::array();
        for (const auto& op : f.options())
          options.push_back({{"name", op.name()},
                             {"type", op.type()},
                             {"required", op.required()},
                             {"default", op.default_value()},
                             {"help", op.help()}});
        nlohmann::ordered_json class_names = nlohmann::ordered_json::object();
        for (const auto& named : f.class_names())
          class_names[named.name()] = named.value();
        list.push_back({{"name", f.name()},
                        {"summary", f.summary()},
                        {"role", f.role()},
                        {"spaces", f.spaces()},
                        {"class", f.class_meaning()},
                        {"class_names", class_names},
                        {"state", f.state()},
                        {"options", options}});
      }
      std::cout << list.dump(2) << "\n";
    } else {
      for (const auto& f : reply.filters()) {
        std::string spaces;
        for (const auto& s : f.spaces())
          spaces += (spaces.empty() ? "" : ",") + s;
        std::string opts;
        for (const auto& op : f.options())
          opts += (opts.empty() ? "" : " ") + op.name() + (op.required() ? "!" : "");
        std::printf("%-10s %-9s %-20s %-28s %s\n", f.name().c_str(), f.role().c_str(),
                    spaces.c_str(), opts.c_str(), f.summary().c_str());
      }
    }
    result = kExitOk;
  });
}

}  // namespace srl::cli
