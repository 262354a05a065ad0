// Datapath (datapath.h): placement; the build, one transaction composed of
// the drivers of the datapath's spaces (space_driver.h); removal; counters.
#include "srl/runtime/datapath.h"

#include <net/if.h>

#include <algorithm>
#include <functional>
#include <set>

#include "space_driver.h"
#include "srl/filters/delivery.h"

namespace srl::runtime {

namespace fs = std::filesystem;

std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::instantiate:
      return "instantiate";
    case Phase::connect:
      return "connect";
    case Phase::activate:
      return "activate";
    case Phase::deactivate:
      return "deactivate";
  }
  return "?";
}

StepError::StepError(Step step, std::string reason, bool capacity)
    : std::runtime_error(std::string(to_string(step.phase)) + " step '" + step.key + "' (" +
                         step.what + ") failed: " + reason),
      step_(std::move(step)),
      reason_(std::move(reason)),
      capacity_(capacity) {}

std::vector<std::string> rx_devices(const compiler::RequestDag& dag) {
  const auto& g = dag.graph;
  std::vector<std::string> devices;
  for (auto v : dag.sources()) {
    if (g[v].filter_name() != "rx") continue;
    const auto dev = g[v].options.find("dev");
    if (dev == g[v].options.end())
      throw std::invalid_argument("node " + g[v].id +
                                  " (rx) has no device to receive from; give dev=IF");
    const auto& name = std::get<std::string>(dev->second);
    if (std::find(devices.begin(), devices.end(), name) == devices.end()) devices.push_back(name);
  }
  return devices;
}

std::vector<bool> below_user_sources(const compiler::RequestDag& dag) {
  const auto& g = dag.graph;
  std::vector<bool> user(dag.node_count(), false);
  std::vector<compiler::Vertex> stack;
  for (auto v : dag.sources())
    if (g[v].filter_name() != "rx") stack.push_back(v);
  while (!stack.empty()) {
    const auto v = stack.back();
    stack.pop_back();
    if (user[v]) continue;
    user[v] = true;
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      stack.push_back(boost::target(*it, g));
  }
  return user;
}

std::string_view to_string(UpChannelKind k) {
  return k == UpChannelKind::afxdp ? "afxdp" : "ringbuf";
}

std::string_view to_string(HookKind k) {
  return k == HookKind::tc ? "tc" : "xdp";
}

std::string space_of(const compiler::RequestDag& dag, const Placement& place, std::size_t v) {
  if (v >= place.in_kernel.size() || !place.in_kernel[v]) return "user";
  const auto& g = dag.graph;
  std::set<std::string> devices;
  std::vector<std::size_t> stack{v};
  std::set<std::size_t> seen;
  while (!stack.empty()) {
    const auto u = stack.back();
    stack.pop_back();
    if (!seen.insert(u).second) continue;
    const auto dev = g[u].options.find("dev");
    if (g[u].filter_name() == "rx" && dev != g[u].options.end())
      devices.insert(std::get<std::string>(dev->second));
    for (auto [it, end] = boost::in_edges(u, g); it != end; ++it)
      stack.push_back(boost::source(*it, g));
  }
  if (devices.empty())
    for (const auto& [dev, hook] : place.hooks)
      devices.insert(dev);
  std::string out;
  for (const auto& dev : devices) {
    const auto hook = place.hooks.find(dev);
    out += (out.empty() ? "" : ",") +
           std::string(to_string(hook != place.hooks.end() ? hook->second.kind : HookKind::xdp)) +
           ":" + dev;
  }
  return out;
}

Placement fixed_placement(const compiler::RequestDag& dag, const std::vector<std::string>& devices,
                          DeviceHook hook) {
  const auto& g = dag.graph;
  const auto user = below_user_sources(dag);
  Placement p;
  p.in_kernel.assign(dag.node_count(), false);
  // In the DAG's numbering (dag.h) a vertex's inputs are decided first.
  if (!dag.numbered())
    throw std::invalid_argument("fixed_placement: the DAG is not numbered in topological order");
  for (std::size_t v = 0; v < dag.node_count(); ++v) {
    if (user[v]) continue;
    bool k = g[v].filter != nullptr && g[v].filter->implemented_in(filters::SpaceKind::kernel) &&
             !(hook.kind == HookKind::xdp && g[v].filter->kernel_tc_only) &&
             !(g[v].translation && g[v].translation->backward_jump());
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it)
      k = k && p.in_kernel[boost::source(*it, g)];
    p.in_kernel[v] = k;
  }
  for (const auto& dev : devices)
    p.hooks[dev] = hook;
  return p;
}

Datapath::Datapath() : impl_(std::make_unique<Impl>()) {}

Datapath::~Datapath() {
  try {
    remove(nullptr);
  } catch (...) {
  }
}

namespace {

// Deactivation rolls forward: once it starts, every step is taken even if
// the observer objects (a journal that cannot write, an injected failure),
// as stopping half way would leave a datapath nobody owns.
void roll_forward(StepObserver* observer, const Step& step, const std::function<void()>& act) {
  if (observer != nullptr) {
    try {
      observer->before(step);
    } catch (const std::exception&) {
    }
  }
  act();
  if (observer != nullptr) {
    try {
      observer->taken(step);
    } catch (const std::exception&) {
    }
  }
}

// Devices whose rx runs in the kernel get a hook (as planned; XDP where the
// plan names none), in order of first use; the others an AF_PACKET socket in
// the engine.
// A hook's exits against the channels up that the placement has: the same
// edges, each copied or taken as planned and over the channel planned (a
// take leaves XDP over AF_XDP, everything else rides the copy ring). Throws
// std::invalid_argument naming the first difference.
void check_up_channels(const compiler::RequestDag& dag, const Placement& place,
                       const HookDriver& hook) {
  const auto& g = dag.graph;
  const auto edge = [&](std::size_t from, std::size_t to) {
    return g[from].id + " (" + std::string(g[from].filter_name()) + ") > " + g[to].id + " (" +
           std::string(g[to].filter_name()) + ")";
  };
  std::vector<bool> planned_seen(place.up.size(), false);
  for (const auto& x : hook.exits()) {
    const auto from = dag.find(x.from), to = dag.find(x.to);
    if (!from || !to)
      throw std::invalid_argument("an exit of " + hook.device() + "'s program names no node");
    const UpChannelKind kind = hook.kind() == HookKind::xdp && x.delivery == filters::Delivery::take
                                   ? UpChannelKind::afxdp
                                   : UpChannelKind::ring;
    const auto it = std::find_if(place.up.begin(), place.up.end(), [&](const UpChannel& c) {
      return c.from == *from && c.to == *to;
    });
    if (it == place.up.end())
      throw std::invalid_argument("the plan has no channel up for " + edge(*from, *to) +
                                  ", which leaves " + hook.device() + "'s kernel part");
    if (it->delivery != x.delivery || it->kind != kind)
      throw std::invalid_argument("the plan has " + edge(*from, *to) + " " +
                                  std::string(filters::to_string(it->delivery)) +
                                  " its blocks over " + std::string(to_string(it->kind)) + "; on " +
                                  hook.device() + "'s " + std::string(to_string(hook.kind())) +
                                  " hook it would " + std::string(filters::to_string(x.delivery)) +
                                  " them over " + std::string(to_string(kind)));
    planned_seen[static_cast<std::size_t>(it - place.up.begin())] = true;
  }
  for (std::size_t i = 0; i < place.up.size(); ++i)
    if (!planned_seen[i])
      throw std::invalid_argument("the plan has a channel up for " +
                                  edge(place.up[i].from, place.up[i].to) + " that " +
                                  hook.device() + "'s program does not leave by");
}

std::vector<std::pair<std::string, DeviceHook>> devices_to_hook(const compiler::RequestDag& dag,
                                                                const Placement& placement) {
  const auto& g = dag.graph;
  std::vector<std::pair<std::string, DeviceHook>> out;
  for (auto v : dag.sources()) {
    if (g[v].filter_name() != "rx" || !placement.in_kernel[v]) continue;
    const auto& dev = std::get<std::string>(g[v].options.at("dev"));
    if (std::find_if(out.begin(), out.end(), [&](const auto& d) { return d.first == dev; }) !=
        out.end())
      continue;
    const auto planned = placement.hooks.find(dev);
    out.emplace_back(dev, planned != placement.hooks.end() ? planned->second : DeviceHook{});
  }
  return out;
}

}  // namespace

std::unique_ptr<Datapath> Datapath::build(const compiler::RequestDag& dag,
                                          const Placement& placement,
                                          const DatapathOptions& options, StepObserver* observer,
                                          Datapath* previous) {
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->dag_ = dag;
  dp->placement_ = placement;
  const std::size_t n = dp->dag_.node_count();
  if (placement.in_kernel.size() != n)
    throw std::invalid_argument("placement has " + std::to_string(placement.in_kernel.size()) +
                                " vertices, the DAG " + std::to_string(n));
  std::vector<bool> in_user(n);
  bool any_user = false;
  for (std::size_t v = 0; v < n; ++v) {
    in_user[v] = !placement.in_kernel[v];
    any_user = any_user || in_user[v];
  }

  DatapathBuild b{dp->dag_,
                  dp->placement_,
                  options,
                  *dp->impl_,
                  previous != nullptr ? previous->impl_.get() : nullptr,
                  dp->report_,
                  dp->afxdp_devices_};
  // The hook drivers generate their programs when made: generating is pure
  // (nothing to undo), so a DAG that cannot be deployed fails before the
  // transaction, without a step taken.
  std::vector<std::unique_ptr<HookDriver>> hooks;
  for (const auto& [dev, hook] : devices_to_hook(dp->dag_, placement))
    hooks.push_back(hook_driver(b, dev, hook));
  std::vector<kernel::KernelExit> exits;
  if (!hooks.empty()) exits = hooks.front()->exits();
  for (const auto& h : hooks)
    if (h->exits().size() != exits.size())
      throw std::invalid_argument(
          "the programs of the devices leave the kernel at different edges; deploy one device "
          "at a time");
  // The channels up deploy as planned, or nothing does.
  if (!placement.up.empty())
    for (const auto& h : hooks)
      check_up_channels(dp->dag_, placement, *h);
  std::vector<SpaceDriver*> from_inputs;  // the hooks, then the engine
  for (const auto& h : hooks)
    from_inputs.push_back(h.get());
  std::unique_ptr<SpaceDriver> engine;
  if (any_user) engine = engine_driver(b, std::move(in_user), exits, from_inputs);
  std::vector<SpaceDriver*> from_outputs = from_inputs;  // the engine, then the hooks
  if (engine) {
    from_inputs.push_back(engine.get());
    from_outputs.insert(from_outputs.begin(), engine.get());
  }

  // Every node instantiated, from the inputs (a program the verifier refuses
  // costs no engine); then every channel connected and the datapath
  // activated from the outputs back to the inputs: the engine runs before
  // any hook sends it blocks.
  Transaction tx(observer);
  for (auto* d : from_inputs)
    d->instantiate(tx);
  if (options.before_connect) {
    try {
      options.before_connect();
    } catch (const std::exception& e) {
      tx.rollback();
      throw StepError({Phase::connect, "prepare", "free what the channels need"}, e.what());
    }
  }
  for (auto* d : from_outputs)
    d->connect(tx);
  for (auto* d : from_outputs)
    d->activate(tx);
  tx.commit();
  return dp;
}

void Datapath::remove(StepObserver* observer) {
  Impl& m = *impl_;
  if (m.removed) return;
  m.removed = true;
  // Inputs first: hooks detach (their pins go with them), then the engine
  // finishes what it holds.
  for (auto& h : m.hooks) {
    if (!h.attached()) continue;
    roll_forward(observer, {Phase::deactivate, "detach:" + h.dev, "detach the program of " + h.dev},
                 [&] {
                   h.last = h.program()->counters();
                   h.last_classes = h.program()->class_tallies();
                   h.last_copy = h.program()->copy_counters();
                   h.xdp.reset();
                   h.tc.reset();
                 });
  }
  stop_engine(observer);
}

std::unique_ptr<Datapath> Datapath::adopt(const fs::path& pin_root,
                                          std::vector<std::string>* problems) {
  std::unique_ptr<Datapath> dp(new Datapath());
  std::error_code ec;
  if (!fs::is_directory(pin_root, ec)) return dp;
  auto problem = [&](const std::string& what) {
    if (problems != nullptr) problems->push_back(what);
  };
  for (const auto& entry : fs::directory_iterator(pin_root, ec)) {
    const auto dir = entry.path();
    const std::string dev = dir.filename().string();
    const unsigned ifindex = if_nametoindex(dev.c_str());
    Hook h;
    h.dev = dev;
    try {
      if (kernel::XdpHook::pinned_at(dir)) {
        h.kind = HookKind::xdp;
        h.xdp = kernel::XdpHook::adopt(dir);
      } else if (fs::exists(dir / "tc-program", ec)) {
        if (ifindex == 0) throw kernel::KernelError("no network device '" + dev + "'");
        h.kind = HookKind::tc;
        h.tc = kernel::TcHook::adopt(dir, static_cast<int>(ifindex));
      } else {
        fs::remove_all(dir, ec);
        continue;
      }
      dp->impl_->hooks.push_back(std::move(h));
    } catch (const std::exception& e) {
      // Unpinning is what detaches an XDP link nobody holds.
      problem(dev + ": " + e.what() + "; its pins are removed");
      fs::remove_all(dir, ec);
    }
  }
  return dp;
}

void Datapath::stop_engine(StepObserver* observer) {
  Impl& m = *impl_;
  if (!m.engine) return;
  roll_forward(observer, {Phase::deactivate, "stop:engine", "drain and stop the userspace engine"},
               [&] {
                 m.engine->stop();
                 m.engine->wait();
                 // Its counters stay readable; the engine goes, and with it
                 // the sockets.
                 m.last_engine = m.engine->stats();
                 m.engine.reset();
                 afxdp_devices_.clear();
               });
}

bool Datapath::release() {
  Impl& m = *impl_;
  if (m.removed) return false;
  // The userspace part lives in this process: it stops, its sockets close
  // (the kernel takes them out of the programs' XSKMAPs), and the programs
  // then hand the blocks that went up to the stack instead.
  stop_engine();
  for (auto& h : m.hooks) {
    if (h.xdp) h.xdp->release();
    if (h.tc) h.tc->release();
  }
  m.removed = true;
  return !m.hooks.empty();
}

namespace {

// A hook's counters (of the program it runs, or ran last), by the node each
// slot stands for.
void add_hook_counters(const compiler::RequestDag& dag, const Placement& placement,
                       const Datapath::Hook& h, std::vector<VertexCounters>& out) {
  const auto* program = h.program();
  const auto c = program != nullptr ? program->counters() : h.last;
  for (std::size_t i = 0; i < h.nodes.size() && i < c.size(); ++i) {
    const auto v = dag.find(h.nodes[i].id);
    if (!v) continue;
    auto& r = out[*v];
    // The program has a slot for every node; only kernel nodes run there.
    if (placement.in_kernel.empty() || placement.in_kernel[*v])
      r.space = std::string(to_string(h.kind)) + ":" + h.dev;
    r.blocks += c[i].packets;
    r.bytes += c[i].bytes;
    r.accepted += c[i].accepted;
  }
  // Counts by class: node slots are the hook's vertex order, as above.
  std::vector<ClassCount> classes;
  std::uint32_t node = UINT32_MAX;
  auto flush = [&] {
    if (node == UINT32_MAX || node >= h.nodes.size()) return;
    if (const auto v = dag.find(h.nodes[node].id)) add_classes(out[*v].classes, classes);
  };
  for (const auto& t : program != nullptr ? program->class_tallies() : h.last_classes) {
    if (t.node != node) {
      flush();
      classes.clear();
      node = t.node;
    }
    classes.push_back({t.cls, {}, t.blocks, t.bytes, {}, {}});
  }
  flush();
}

void add_engine_counters(const compiler::RequestDag& dag, const EngineStats& stats,
                         std::vector<VertexCounters>& out) {
  for (const auto& n : stats.nodes) {
    const auto v = dag.find(n.id);
    if (!v) continue;
    auto& r = out[*v];
    r.blocks += n.blocks;
    r.bytes += n.bytes;
    r.accepted += n.accepted;
    if (r.failure.empty()) r.failure = n.failure;
    if (n.by_class) {
      r.by_class = true;
      std::vector<ClassCount> classes;
      for (const auto& t : n.classes)
        classes.push_back({t.cls, {}, t.blocks, t.bytes, {}, {}});
      add_classes(r.classes, classes);
    }
    // Blocks a filter had to let go (a full buffer, no reader), by the
    // filters' own counters named dropped*.
    for (const auto& [name, value] : n.extra)
      if (name.starts_with("dropped") && !name.ends_with("_bytes")) r.drops += value;
  }
}

// Every count by class: "other" is what its tallies leave out of its blocks
// (classes that found the kernel's table full), and at most its keys classes
// stand alone (the largest), the rest in "other".
void fold_counts_by_class(const compiler::RequestDag& dag, std::vector<VertexCounters>& out) {
  const auto& g = dag.graph;
  for (std::size_t v = 0; v < out.size(); ++v) {
    const auto by = g[v].options.find("by");
    if (g[v].filter_name() != "count" || by == g[v].options.end() ||
        std::get<std::string>(by->second) != "class")
      continue;
    auto& r = out[v];
    r.by_class = true;
    const auto keys_it = g[v].options.find("keys");
    const std::size_t keys = keys_it != g[v].options.end()
                                 ? static_cast<std::size_t>(std::get<std::int64_t>(keys_it->second))
                                 : 256;
    fold_classes(r, keys);
  }
}

}  // namespace

std::vector<VertexCounters> Datapath::counters() const {
  const auto& g = dag_.graph;
  std::vector<VertexCounters> out(dag_.node_count());
  for (std::size_t v = 0; v < out.size(); ++v) {
    out[v].id = g[v].id;
    out[v].space = placement_.in_kernel[v] ? "kernel" : "user";
  }
  for (const auto& h : impl_->hooks)
    add_hook_counters(dag_, placement_, h, out);
  if (impl_->engine)
    add_engine_counters(dag_, impl_->engine->stats(), out);
  else if (impl_->last_engine)
    add_engine_counters(dag_, *impl_->last_engine, out);
  fold_counts_by_class(dag_, out);
  return out;
}

std::vector<Datapath::HookCounters> Datapath::hook_counters() const {
  std::vector<HookCounters> out;
  for (const auto& h : impl_->hooks) {
    HookCounters c;
    c.dev = h.dev;
    for (const auto& n : h.nodes)
      c.nodes.push_back(n.id);
    const auto* program = h.program();
    c.counters = program != nullptr ? program->counters() : h.last;
    c.classes = program != nullptr ? program->class_tallies() : h.last_classes;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<ChannelCounters> Datapath::channels() const {
  std::vector<ChannelCounters> out;
  // The running engine's inputs, or those of the engine that stopped.
  const auto inputs = impl_->engine        ? impl_->engine->stats().inputs
                      : impl_->last_engine ? impl_->last_engine->inputs
                                           : decltype(impl_->engine->stats().inputs){};
  for (const auto& [name, stats] : inputs) {
    ChannelCounters c;
    c.name = name;
    c.kind = name.substr(0, name.find(':'));
    // Each input names its counters its own way: blocks taken, their bytes,
    // and everything the kernel or the ring could not deliver.
    for (const auto& [key, value] : stats) {
      if (key == "received" || key == "packets" || key == "blocks") c.blocks += value;
      if (key == "bytes") c.bytes += value;
      if (key == "drops" || key == "rx_dropped" || key == "rx_ring_full") c.drops += value;
    }
    out.push_back(std::move(c));
  }
  // Blocks a copy ring could not take (it was full): counted by the
  // kernel program, shown on the device's first ring.
  for (const auto& h : impl_->hooks) {
    const auto* program = h.program();
    const auto lost = program != nullptr ? program->copy_counters().lost : h.last_copy.lost;
    if (lost == 0) continue;
    const std::string prefix = "ringbuf:" + h.dev + ":";
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const ChannelCounters& c) { return c.name.starts_with(prefix); });
    if (it == out.end()) {
      out.push_back({prefix + "0", "ringbuf", 0, 0, 0});
      it = out.end() - 1;
    }
    it->drops += lost;
  }
  return out;
}

std::vector<std::string> Datapath::hooked_devices() const {
  std::vector<std::string> out;
  for (const auto& h : impl_->hooks)
    if (h.attached()) out.push_back(h.dev);
  return out;
}

bool Datapath::ended() const {
  const auto& m = *impl_;
  return m.hooks.empty() && m.engine && m.engine->rx_nodes().empty() && !m.engine->running();
}

bool Datapath::has_engine() const {
  return impl_->engine != nullptr;
}

void fold_classes(VertexCounters& r, std::size_t keys) {
  ClassCount other{kOtherClass, {}, 0, 0, {}, {}};
  std::vector<ClassCount> kept;
  for (const auto& c : r.classes)
    if (c.cls == kOtherClass) {
      other.blocks += c.blocks;
      other.bytes += c.bytes;
    } else {
      kept.push_back(c);
    }
  if (kept.size() > keys) {
    std::stable_sort(kept.begin(), kept.end(),
                     [](const ClassCount& a, const ClassCount& b) { return a.blocks > b.blocks; });
    for (std::size_t i = keys; i < kept.size(); ++i) {
      other.blocks += kept[i].blocks;
      other.bytes += kept[i].bytes;
    }
    kept.resize(keys);
    std::sort(kept.begin(), kept.end(),
              [](const ClassCount& a, const ClassCount& b) { return a.cls < b.cls; });
  }
  // What no tally holds: the node's blocks less its tallies (never below 0:
  // the two tables are read one after the other).
  std::uint64_t blocks = other.blocks, bytes = other.bytes;
  for (const auto& c : kept) {
    blocks += c.blocks;
    bytes += c.bytes;
  }
  if (r.blocks > blocks) other.blocks += r.blocks - blocks;
  if (r.bytes > bytes) other.bytes += r.bytes - bytes;
  r.classes = std::move(kept);
  if (other.blocks > 0) r.classes.push_back(other);
}

void add_classes(std::vector<ClassCount>& to, const std::vector<ClassCount>& from) {
  for (const auto& c : from) {
    auto it = std::lower_bound(to.begin(), to.end(), c.cls,
                               [](const ClassCount& x, std::uint32_t cls) { return x.cls < cls; });
    if (it == to.end() || it->cls != c.cls) it = to.insert(it, ClassCount{c.cls, {}, 0, 0, {}, {}});
    it->blocks += c.blocks;
    it->bytes += c.bytes;
  }
}

NodeReport node_report(const std::string& request, const std::string& node, const std::string& name,
                       const compiler::DagGraph& g, compiler::Vertex v, const VertexCounters& c) {
  NodeReport r;
  r.request = request;
  r.node = node;
  r.name = name;
  r.filter = std::string(g[v].filter_name());
  r.space = c.space;
  r.blocks = c.blocks;
  r.bytes = c.bytes;
  r.accepted = c.accepted;
  r.dropped = filters::drops_accepted(*g[v].filter) ? c.accepted : 0;
  r.lost = c.drops;
  r.failure = c.failure;
  r.by_class = c.by_class;
  r.classes = c.classes;
  // Classes by the names the filter before it gives them (`(dns) >
  // (count, by=class)`: AAAA), where it has one input.
  if (boost::in_degree(v, g) == 1) {
    const auto& from = *g[boost::source(*boost::in_edges(v, g).first, g)].filter;
    for (auto& k : r.classes)
      for (const auto& name_of : from.class_names)
        if (k.cls == name_of.value) k.name = std::string(name_of.name);
  }
  return r;
}

}  // namespace srl::runtime
