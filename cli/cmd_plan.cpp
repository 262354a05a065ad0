// srl plan: the dry run. Compiles one or more requests, places them on the
// spaces of this machine (or of a model file) and prints the plan with the
// reason for every choice; nothing is deployed.
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "daemon_module.h"
#include "model_options.h"
#include "srl/compiler/compiler.h"
#include "srl/control/pipeline.h"
#include "srl/optimizer/optimizer.h"

namespace srl::cli {

namespace {

// The dry run of applying one request by name, through the daemon: the plan
// for the requests it would share devices with, and the changes.
template <typename Opts>
int plan_with_daemon(const Opts& o) {
  if (o.files.size() + o.exprs.size() != 1) {
    std::cerr << "srl plan: with -n NAME give exactly one FILE or -e EXPR\n";
    return kExitUsage;
  }
  DaemonPlan p;
  p.daemon = o.daemon;
  p.name = o.name;
  p.devices = o.model.devices;
  p.json = o.json;
  if (!o.files.empty()) {
    std::ifstream in(o.files.front(), std::ios::binary);
    if (!in) {
      std::cerr << "srl plan: cannot read " << o.files.front() << "\n";
      return kExitUsage;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    p.text = ss.str();
    p.file_name = o.files.front();
  } else {
    p.text = o.exprs.front();
  }
  try {
    return daemon_module().plan(p);
  } catch (const std::exception& e) {
    std::cerr << "srl plan: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace

void add_plan_command(CLI::App& app, int& result) {
  struct Opts {
    ModelOptions model;
    std::vector<std::string> files, exprs;
    std::string objective = "cost";
    double mix_weight = 0.5, rate = 1e6, bytes = 512, time_limit = 10;
    bool json = false, dot = false, no_parallel = false, placement = false;
    std::uint32_t max_replicas = 8;
    std::string name;
    DaemonOptions daemon;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("plan", "place requests on this machine's spaces and explain (dry run)");
  cmd->footer(
      "Several requests are planned together: identical stateless prefixes fed from the same\n"
      "source are shared. Exit status: 0 planned, 1 compile error, discovery failure or no\n"
      "placement, 2 usage (or a file, model or profile that cannot be read).\n"
      "Examples:\n"
      "  srl plan --dev eth0 -e '(tcp) > (http) > (print)'\n"
      "  srl plan --model other-host.json -j req.srl\n"
      "  srl plan --dot -e '(udp) > (port) 53> (dns) > (count)' | dot -Tsvg > plan.svg\n"
      "  srl plan -n web --dev eth0 web.srl   (through controld: what applying would change)");
  cmd->add_option("file", o->files, "request files (several are planned together)");
  cmd->add_option("-e,--expr", o->exprs, "request text (repeatable)")->allow_extra_args(false);
  o->model.add(*cmd);
  cmd->add_option("--objective", o->objective,
                  "cost (least CPU, default), throughput (least peak utilisation), or mix")
      ->check(CLI::IsMember({"cost", "throughput", "mix"}));
  cmd->add_option("--mix-weight", o->mix_weight,
                  "weight of cost in the mix objective (0..1, default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--rate", o->rate, "blocks per second entering each source (default 1e6)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--bytes", o->bytes, "mean block size in bytes (default 512)")
      ->check(CLI::Range(1.0, 65536.0));
  cmd->add_option("--time-limit", o->time_limit, "seconds the solver may take (default 10)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-parallel", o->no_parallel,
                "never replicate a userspace filter over several cores");
  cmd->add_option(
         "--max-replicas", o->max_replicas,
         "most replicas of a userspace filter behind a flow-hash split (2, 4 or 8; default 8)")
      ->check(CLI::Range(2, 64));
  cmd->add_flag("-j,--json", o->json, "print the plan as JSON");
  cmd->add_flag("--dot", o->dot, "print the plan as Graphviz, spaces as clusters");
  cmd->add_flag("--placement", o->placement,
                "print what deploys (JSON): each merged node's space, each device's hook and "
                "XDP mode, the engine's workers");
  cmd->add_option("-n,--name", o->name,
                  "plan through controld as applying the request NAME, and show what would "
                  "change against what runs now (one FILE or -e EXPR)");
  o->daemon.add(*cmd);
  cmd->callback([o, &result] {
    if (o->files.empty() && o->exprs.empty()) {
      std::cerr << "srl plan: give a request FILE or -e EXPR\n";
      result = kExitUsage;
      return;
    }
    if (!o->name.empty()) {
      result = plan_with_daemon(*o);
      return;
    }
    std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
    auto compile_one = [&](const std::string& text, const std::string& name) {
      compiler::CompileOptions co;
      co.file_name = name;
      co.default_devices = o->model.devices;
      auto r = std::make_shared<compiler::CompileResult>(compiler::compile(text, co));
      std::cerr << r->diagnostics.render(*r->source);
      if (!r->ok()) return false;
      compiled.push_back(std::move(r));
      return true;
    };
    for (const auto& file : o->files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        std::cerr << "srl plan: cannot read " << file << "\n";
        result = kExitUsage;
        return;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      if (!compile_one(ss.str(), file)) {
        result = kExitFailure;
        return;
      }
    }
    for (const auto& e : o->exprs)
      if (!compile_one(e, "<expr>")) {
        result = kExitFailure;
        return;
      }
    try {
      const auto requests = control::merge(compiled, control::numbered_labels(compiled.size()));
      optimizer::SystemModel model;
      try {
        model = o->model.model();
      } catch (const std::exception& e) {
        // A model file the caller named, or this machine's discovery.
        throw control::PipelineError(
            o->model.model_file.empty() ? control::Stage::discovery : control::Stage::input,
            e.what());
      }
      optimizer::PlanOptions po;
      po.objective = *optimizer::objective_from_string(o->objective);
      po.mix_weight = o->mix_weight;
      po.input_rate_pps = o->rate;
      po.block_bytes = o->bytes;
      po.time_limit_s = o->time_limit;
      po.parallel = !o->no_parallel;
      po.max_replicas = o->max_replicas;
      const optimizer::Plan plan = control::plan(requests, model, o->model.cost(), po);
      if (o->placement)
        std::cout << control::to_json(requests, control::placement(requests, plan)).dump(2) << "\n";
      else if (o->json)
        std::cout << optimizer::to_json(plan).dump(2) << "\n";
      else if (o->dot)
        std::cout << optimizer::to_dot(plan);
      else
        std::cout << optimizer::to_text(plan);
      result = kExitOk;
    } catch (const control::PipelineError& e) {
      std::cerr << "srl plan: " << e.what() << "\n";
      result = control::exit_code(e.stage());
    } catch (const std::exception& e) {
      std::cerr << "srl plan: " << e.what() << "\n";
      result = kExitFailure;
    }
  });
}

}  // namespace srl::cli
