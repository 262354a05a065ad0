// The control plane's one pipeline, from compiled requests to a placement
// the datapath deploys: merge the requests once (shared prefixes), plan them
// on a system model with one cost profile, and turn the plan into the
// datapath's placement. `srl run`, `srl plan`, controld's Apply and its Plan
// RPC all go through it, so that they label requests, choose the profile
// and fail the same way, and "srl plan explains it" explains what runs.
//
// Dependencies point down: control uses the optimizer and the runtime; the
// runtime knows nothing of the optimizer (it deploys a Placement).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/optimizer/profile.h"
#include "srl/runtime/datapath.h"

namespace srl::control {

// Where the pipeline failed, which decides the CLI's exit status and
// controld's gRPC status the same way for every entry point.
enum class Stage {
  input,      // what the caller gave cannot be used (a file, a model, a profile named)
  compile,    // a request does not compile
  discovery,  // this machine's spaces cannot be found
  plan,       // no placement, or one no driver deploys
};
std::string_view to_string(Stage s);

class PipelineError : public std::runtime_error {
 public:
  PipelineError(Stage stage, const std::string& what) : std::runtime_error(what), stage_(stage) {}
  Stage stage() const { return stage_; }

 private:
  Stage stage_;
};

// The CLI's exit status for a failure at `stage`: 2 for what the caller gave
// (as for a bad flag), 1 for the rest.
int exit_code(Stage stage);

// Labels of requests given together on one command line: none for one
// request, "r1".."rN" for several (controld labels requests by their names).
std::vector<std::string> numbered_labels(std::size_t n);

// The cost profile a plan is made with: `file` when given (unreadable: an
// input error), else the default profile when there is one. A default
// profile that cannot be read is not used; `note` says why.
struct CostProfile {
  std::optional<optimizer::Profile> profile;
  std::string note;  // non-empty when the default profile was unreadable
};
CostProfile cost_profile(bool use, const std::filesystem::path& file = {});

// Requests compiled (every one ok) and merged once.
struct Requests {
  std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
  std::vector<std::string> labels;  // one per request, unique where several
  compiler::MergedRequests merged;
};
Requests merge(std::vector<std::shared_ptr<const compiler::CompileResult>> compiled,
               std::vector<std::string> labels);

// The devices the merged requests receive from (their rx nodes'), in order.
// Throws PipelineError(input) when an rx names no device.
std::vector<std::string> rx_devices(const Requests& requests);

// This machine's spaces for `options` plus the requests' devices. Throws
// PipelineError(discovery).
optimizer::SystemModel discover(const Requests& requests, optimizer::DiscoveryOptions options);

// Plans the merged `requests` on `model` with `profile`, one plan node per
// merged vertex (nodes[v] is vertex v); the plan's notes say what
// discovery found on the way and a default profile not used. Throws
// PipelineError(plan).
optimizer::Plan plan(const Requests& requests, const optimizer::SystemModel& model,
                     const CostProfile& profile, optimizer::PlanOptions options = {});

// The plan as the datapath's placement: which merged vertices run in the
// kernel and on which hook of each device, in which XDP mode, and how many
// workers the engine runs (the largest replica set the plan uses). Throws
// PipelineError(plan) where the plan uses what no driver deploys (an
// offload space, both hooks of a device), std::invalid_argument for a plan
// of other requests.
runtime::Placement placement(const Requests& requests, const optimizer::Plan& plan);

// The placement as JSON, what deploys (srl plan --placement): per merged
// vertex the request nodes it stands for, its filter and where it runs
// ("xdp:eth0", "tc:eth0", "user"); per device its hook and XDP mode; the
// engine's workers. Strings only here; "srl_placement_version" says the
// form (kPlacementJsonVersion).
inline constexpr int kPlacementJsonVersion = 1;
nlohmann::ordered_json to_json(const Requests& requests, const runtime::Placement& place);

// The plan's reason for each request node ("web/n3" -> why).
std::map<std::string, std::string> reasons(const optimizer::Plan& plan);

}  // namespace srl::control
