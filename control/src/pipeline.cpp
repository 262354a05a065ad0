// The control plane's one pipeline (pipeline.h).
#include "srl/control/pipeline.h"

#include <algorithm>

namespace srl::control {

std::string_view to_string(Stage s) {
  switch (s) {
    case Stage::input:
      return "input";
    case Stage::compile:
      return "compile";
    case Stage::discovery:
      return "discovery";
    case Stage::plan:
      return "plan";
  }
  return "?";
}

int exit_code(Stage stage) {
  return stage == Stage::input ? 2 : 1;
}

std::vector<std::string> numbered_labels(std::size_t n) {
  std::vector<std::string> labels(n);
  if (n > 1)
    for (std::size_t i = 0; i < n; ++i)
      labels[i] = "r" + std::to_string(i + 1);
  return labels;
}

CostProfile cost_profile(bool use, const std::filesystem::path& file) {
  CostProfile c;
  if (!use) return c;
  if (!file.empty()) {
    try {
      c.profile = optimizer::load_profile(file);
    } catch (const std::exception& e) {
      throw PipelineError(Stage::input, std::string("profile: ") + e.what());
    }
    return c;
  }
  try {
    c.profile = optimizer::load_default_profile();
  } catch (const std::exception& e) {
    // Not named by the caller: planning goes on with the catalog's costs,
    // and says so (a daemon restoring its requests must not stop here).
    c.note = "the cost profile " + optimizer::default_profile_path().string() +
             " is not used: " + e.what() +
             " (the catalog's costs instead; `srl calibrate` "
             "writes a new one)";
  }
  return c;
}

Requests merge(std::vector<std::shared_ptr<const compiler::CompileResult>> compiled,
               std::vector<std::string> labels) {
  if (labels.size() != compiled.size())
    throw std::invalid_argument("control::merge: one label per request");
  Requests r;
  std::vector<const compiler::RequestDag*> dags;
  for (const auto& c : compiled) {
    if (c == nullptr || !c->ok() || !c->dag)
      throw PipelineError(Stage::compile, "a request that does not compile cannot be planned");
    dags.push_back(&*c->dag);
  }
  r.merged = compiler::merge_requests(dags, labels);
  r.compiled = std::move(compiled);
  r.labels = std::move(labels);
  return r;
}

std::vector<std::string> rx_devices(const Requests& requests) {
  try {
    return runtime::rx_devices(requests.merged.dag);
  } catch (const std::invalid_argument& e) {
    throw PipelineError(Stage::input, e.what());
  }
}

optimizer::SystemModel discover(const Requests& requests, optimizer::DiscoveryOptions options) {
  for (const auto& d : rx_devices(requests))
    if (std::find(options.devices.begin(), options.devices.end(), d) == options.devices.end())
      options.devices.push_back(d);
  try {
    return optimizer::discover(options);
  } catch (const std::exception& e) {
    throw PipelineError(Stage::discovery, e.what());
  }
}

optimizer::Plan plan(const Requests& requests, const optimizer::SystemModel& model,
                     const CostProfile& profile, optimizer::PlanOptions options) {
  std::vector<const compiler::SourceFile*> sources;
  for (const auto& c : requests.compiled)
    sources.push_back(c->source.get());
  options.profile = profile.profile ? &*profile.profile : nullptr;
  optimizer::Plan p;
  try {
    p = optimizer::plan(requests.merged, sources, model, options);
  } catch (const std::exception& e) {
    throw PipelineError(Stage::plan, e.what());
  }
  if (!profile.note.empty()) p.notes.push_back(profile.note);
  return p;
}

nlohmann::ordered_json to_json(const Requests& requests, const runtime::Placement& place) {
  using J = nlohmann::ordered_json;
  const auto& dag = requests.merged.dag;
  J hooks = J::object();
  for (const auto& [dev, h] : place.hooks) {
    J o = {{"hook", std::string(runtime::to_string(h.kind))}};
    if (h.kind == runtime::HookKind::xdp)
      o["mode"] = h.xdp_mode ? std::string(runtime::kernel::to_string(*h.xdp_mode)) : "auto";
    hooks[dev] = o;
  }
  // A kernel vertex is shown on the hooks of the devices whose rx it is
  // below (runtime::space_of).
  J nodes = J::array();
  for (std::size_t v = 0; v < dag.node_count(); ++v) {
    nodes.push_back({{"vertex", v},
                     {"members", requests.merged.members[v]},
                     {"filter", std::string(dag.graph[v].filter_name())},
                     {"space", runtime::space_of(dag, place, v)}});
  }
  J up = J::array();
  for (const auto& c : place.up)
    up.push_back({{"from", c.from},
                  {"to", c.to},
                  {"delivery", std::string(filters::to_string(c.delivery))},
                  {"channel", std::string(runtime::to_string(c.kind))}});
  return {{"srl_placement_version", kPlacementJsonVersion},
          {"hooks", hooks},
          {"workers", place.workers},
          {"nodes", nodes},
          {"up", up}};
}

std::map<std::string, std::string> reasons(const optimizer::Plan& plan) {
  std::map<std::string, std::string> why;
  for (const auto& n : plan.nodes)
    for (const auto& m : n.members.empty() ? std::vector{n.id} : n.members)
      why[m] = n.why;
  return why;
}

runtime::Placement placement(const Requests& requests, const optimizer::Plan& plan) {
  const auto& dag = requests.merged.dag;
  // The plan's node v is merged vertex v (optimizer::plan on the merged DAG).
  if (plan.nodes.size() != dag.node_count())
    throw std::invalid_argument("control::placement: the plan is not of these requests");
  runtime::Placement place;
  place.in_kernel.assign(dag.node_count(), false);
  for (const auto& sp : plan.spaces)  // a replica set in use: as many workers
    if (sp.nodes > 0 && !sp.replicas.empty())
      place.workers = std::max(place.workers, sp.replicas.size());
  const auto user = runtime::below_user_sources(dag);
  for (std::size_t v = 0; v < dag.node_count(); ++v) {
    if (user[v]) continue;
    const auto& node = plan.nodes[v];
    const auto colon = node.space.find(':');
    const std::string kind = node.space.substr(0, colon);
    const std::string dev = colon == std::string::npos ? "" : node.space.substr(colon + 1);
    if (kind == "user") continue;
    if (kind != "xdp" && kind != "tc")
      throw PipelineError(Stage::plan, "the plan places " + node.id + " (" + node.filter + ") in " +
                                           node.space +
                                           ", which is not deployed here; pin it with "
                                           "space=xdp or space=user");
    place.in_kernel[v] = true;
    runtime::DeviceHook hook{kind == "tc" ? runtime::HookKind::tc : runtime::HookKind::xdp, {}};
    // Native is the runtime's own rule (native where the driver has it),
    // which discovery followed; generic is the plan's choice (a profile
    // measured it cheaper, or the caller fixed it).
    if (hook.kind == runtime::HookKind::xdp)
      for (const auto& s : plan.spaces)
        if (s.id == node.space && s.mode == "generic")
          hook.xdp_mode = runtime::kernel::XdpMode::generic;
    auto [h, fresh] = place.hooks.emplace(dev, hook);
    if (!fresh && h->second.kind != hook.kind)
      throw PipelineError(Stage::plan,
                          "the plan uses both the XDP and the TC hook of " + dev +
                              ", and one hook per device is deployed so far; force one hook");
  }
  // The edges up, copied or taken over the channel the plan chose.
  std::map<std::string, std::size_t> vertex;
  for (std::size_t v = 0; v < plan.nodes.size(); ++v)
    vertex[plan.nodes[v].id] = v;
  for (const auto& e : plan.edges) {
    if (e.delivery.empty()) continue;
    runtime::UpChannel c{.from = vertex.at(e.from), .to = vertex.at(e.to)};
    c.delivery = e.delivery == "take" ? filters::Delivery::take : filters::Delivery::copy;
    if (e.channel == "afxdp")
      c.kind = runtime::UpChannelKind::afxdp;
    else if (e.channel == "ringbuf")
      c.kind = runtime::UpChannelKind::ring;
    else
      throw PipelineError(Stage::plan, "the plan sends " + e.from + " > " + e.to + " up over " +
                                           e.channel + ", which no driver deploys");
    place.up.push_back(c);
  }
  return place;
}

}  // namespace srl::control
