// Golden plans: each scenarios/NAME.srl names a system model (scenarios/
// models/) and options in its first comment lines; the plan is compared with
// NAME.plan.json, or the error with NAME.err. Nothing touches the machine.
// SRL_UPDATE_GOLDEN=1 rewrites the golden files (review the diff).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "golden.h"
#include "srl/compiler/compiler.h"
#include "srl/optimizer/optimizer.h"

using namespace srl;
namespace fs = std::filesystem;

namespace {

using testing::check_golden;
using testing::read_file;

struct Scenario {
  std::string model;
  std::vector<std::string> devices;
  optimizer::PlanOptions options;
};

Scenario header(const std::string& text) {
  Scenario s;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line) && line.rfind("# ", 0) == 0;) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(2, colon - 2);
    std::istringstream value(line.substr(colon + 1));
    std::string v;
    if (key == "model") value >> s.model;
    if (key == "dev")
      while (value >> v)
        s.devices.push_back(v);
    if (key == "objective" && value >> v)
      s.options.objective = *optimizer::objective_from_string(v);
    if (key == "rate") value >> s.options.input_rate_pps;
    if (key == "bytes") value >> s.options.block_bytes;
  }
  return s;
}

}  // namespace

TEST_CASE("scenario golden plans") {
  const fs::path dir(SRL_SCENARIO_DIR);
  std::vector<fs::path> inputs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".srl") inputs.push_back(e.path());
  std::sort(inputs.begin(), inputs.end());
  REQUIRE(inputs.size() >= 10);
  std::size_t plans = 0, errors = 0;
  for (const auto& input : inputs) {
    CAPTURE(input.filename().string());
    const std::string text = read_file(input);
    const Scenario sc = header(text);
    REQUIRE_MESSAGE(!sc.model.empty(), "first lines must name a model: # model: FILE.json");
    const optimizer::SystemModel model = optimizer::load_model(dir / "models" / sc.model);
    compiler::CompileOptions co;
    co.file_name = input.filename().string();
    co.default_devices = sc.devices;
    auto r = compiler::compile(text, co);
    REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
    const fs::path plan_file = fs::path(input).replace_extension(".plan.json");
    const fs::path err_file = fs::path(input).replace_extension(".err");
    try {
      const auto plan = optimizer::plan({{&*r.dag, "", r.source.get()}}, model, sc.options);
      ++plans;
      auto j = optimizer::to_json(plan, false);
      j["inputs"]["model"] = sc.model;  // not the absolute path of this checkout
      const std::string diff = check_golden(plan_file, j.dump(2) + "\n");
      CHECK_MESSAGE(diff.empty(), diff);
      CHECK_MESSAGE(!fs::exists(err_file), "stale " << err_file);
      // The plan is never worse than a feasible baseline.
      for (const auto& b : plan.baselines)
        if (b.feasible) CHECK(plan.objective_value <= b.objective * (1 + 1e-9));
    } catch (const optimizer::PlanError& e) {
      ++errors;
      const std::string diff = check_golden(err_file, std::string(e.what()) + "\n");
      CHECK_MESSAGE(diff.empty(), diff);
      CHECK_MESSAGE(!fs::exists(plan_file), "stale " << plan_file);
    }
  }
  CHECK(plans >= 8);
  CHECK(errors >= 3);
}
