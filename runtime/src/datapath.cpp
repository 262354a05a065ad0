// Datapath (datapath.h): placement, and the transaction that builds a
// datapath step by step with an inverse for each step.
#include "srl/runtime/datapath.h"

#include <net/if.h>

#include <algorithm>
#include <functional>
#include <set>

#include "srl/filters/delivery.h"
#include "srl/runtime/engine.h"
#include "srl/runtime/inputs.h"

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
  // Vertices in topological order: a vertex's inputs are decided first.
  std::vector<std::size_t> indegree(dag.node_count(), 0), order;
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      ++indegree[boost::target(*it, g)];
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    if (indegree[v] == 0) order.push_back(v);
  for (std::size_t i = 0; i < order.size(); ++i)
    for (auto [it, end] = boost::out_edges(order[i], g); it != end; ++it)
      if (--indegree[boost::target(*it, g)] == 0) order.push_back(boost::target(*it, g));
  for (std::size_t v : order) {
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

// The hook of one device: attached by this datapath, or taken over from the
// datapath it replaced. `ran` is the program a newer datapath swapped out.
struct Datapath::Hook {
  std::string dev;
  std::unique_ptr<kernel::XdpHook> xdp;  // one of these two while attached
  std::unique_ptr<kernel::TcHook> tc;
  std::unique_ptr<kernel::KernelProgram> ran;
  std::vector<kernel::NodeSlot> nodes;
  std::string kind;                   // "xdp" | "tc"
  std::vector<kernel::Counter> last;  // read just before the hook was detached
  std::vector<kernel::KernelProgram::ClassTally> last_classes;  // likewise
  kernel::CopyCounters last_copy;                               // the copy channel's, likewise

  const kernel::KernelProgram* program() const {
    if (xdp) return &xdp->program();
    if (tc) return &tc->program();
    return ran.get();
  }
  bool attached() const { return xdp || tc; }
};

struct Datapath::Impl {
  std::vector<Hook> hooks;
  std::unique_ptr<Engine> engine;
  std::optional<EngineStats> last_engine;  // of an engine stopped alone
  bool removed = false;
};

Datapath::Datapath() : impl_(std::make_unique<Impl>()) {}

Datapath::~Datapath() {
  try {
    remove(nullptr);
  } catch (...) {
  }
}

namespace {

// The steps taken so far and their inverses; undone in reverse on failure.
class Transaction {
 public:
  explicit Transaction(StepObserver* observer) : observer_(observer) {}
  // Whatever leaves before commit() (an exception between steps) is undone.
  ~Transaction() { rollback(); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // Takes `step` (announcing it first); `inverse` undoes it exactly.
  void take(Step step, const std::function<void()>& action, std::function<void()> inverse) {
    try {
      if (observer_ != nullptr) observer_->before(step);
      action();
    } catch (const kernel::CapacityError& e) {
      rollback();
      throw StepError(std::move(step), e.what(), true);
    } catch (const std::exception& e) {
      rollback();
      throw StepError(std::move(step), e.what());
    }
    taken_.emplace_back(step, std::move(inverse));
    if (observer_ != nullptr) observer_->taken(taken_.back().first);
  }

  void rollback() {
    while (!taken_.empty()) {
      auto [step, inverse] = std::move(taken_.back());
      taken_.pop_back();
      try {
        if (inverse) inverse();
      } catch (...) {
        // An inverse that fails leaves nothing better to do than to go on
        // undoing the others; what it held is released by its destructor.
      }
      // Undoing runs from a destructor too: an observer that cannot record
      // it (a journal on a full disk) must not stop the others being undone,
      // nor end the process. The step is undone in memory all the same; the
      // record left "done" is undone by the next start's recovery.
      if (observer_ != nullptr) {
        try {
          observer_->undone(step);
        } catch (...) {
        }
      }
    }
  }

  void commit() { taken_.clear(); }

 private:
  StepObserver* observer_;
  std::vector<std::pair<Step, std::function<void()>>> taken_;
};

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

unsigned ifindex_of(const std::string& dev) {
  const unsigned i = if_nametoindex(dev.c_str());
  if (i == 0) throw kernel::KernelError("no network device '" + dev + "'");
  return i;
}

}  // namespace

std::unique_ptr<Datapath> Datapath::build(const compiler::RequestDag& dag,
                                          const Placement& placement,
                                          const DatapathOptions& options, StepObserver* observer,
                                          Datapath* previous) {
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->dag_ = dag;
  dp->placement_ = placement;
  Impl& m = *dp->impl_;
  const auto& g = dp->dag_.graph;
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
  // Devices whose rx runs in the kernel get a hook; the others an AF_PACKET
  // socket in the engine.
  std::vector<std::string> hooked;
  std::map<std::string, DeviceHook> hook_of = placement.hooks;
  for (auto v : dp->dag_.sources())
    if (g[v].filter_name() == "rx" && placement.in_kernel[v]) {
      const auto& dev = std::get<std::string>(g[v].options.at("dev"));
      if (std::find(hooked.begin(), hooked.end(), dev) == hooked.end()) hooked.push_back(dev);
      hook_of.emplace(dev, DeviceHook{});
    }

  // Generating is pure (nothing to undo): done before the transaction, so
  // that a DAG that cannot be deployed fails without a step taken.
  struct Part {
    std::string dev;
    bool tc = false;
    std::optional<kernel::XdpMode> mode;  // xdp: the plan's
    kernel::GeneratedProgram gen;
    fs::path object;
    std::unique_ptr<kernel::KernelProgram> program;
    std::vector<std::unique_ptr<AfxdpChannel>> channels;
    std::vector<std::unique_ptr<CopyRing>> rings;
  };
  std::vector<Part> parts;
  for (const auto& dev : hooked) {
    const int ifindex = static_cast<int>(ifindex_of(dev));
    Part p;
    p.dev = dev;
    p.tc = hook_of[dev].kind == HookKind::tc;
    p.mode = hook_of[dev].xdp_mode;
    // A swap keeps the running hook's mode: a plan that changes it cannot
    // run as planned on that hook.
    if (previous != nullptr && !p.tc && p.mode)
      for (const auto& h : previous->impl_->hooks)
        if (h.dev == dev && h.attached() && h.xdp && h.xdp->mode() != *p.mode)
          throw std::invalid_argument(
              dev + "'s XDP hook runs in " + std::string(kernel::to_string(h.xdp->mode())) +
              " mode and the plan has it in " + std::string(kernel::to_string(*p.mode)) +
              " mode: a hook's mode changes only when it is attached anew (remove the device's "
              "requests first, or fix the mode)");
    p.gen = p.tc ? kernel::generate_tc(dp->dag_, ifindex, dev, &placement.in_kernel, options.copy,
                                       options.program_form)
                 : kernel::generate_xdp(dp->dag_, ifindex, dev, &placement.in_kernel, options.copy,
                                        options.program_form);
    parts.push_back(std::move(p));
  }
  std::vector<kernel::KernelExit> exits;
  if (!parts.empty()) exits = parts.front().gen.exits;
  for (const auto& p : parts)
    if (p.gen.exits.size() != exits.size())
      throw std::invalid_argument(
          "the programs of the devices leave the kernel at different edges; deploy one device "
          "at a time");

  std::vector<std::unique_ptr<BlockInput>> inputs;  // connected, not yet in the engine
  Transaction tx(observer);

  // Instantiate: programs compiled and loaded, the engine's filters built.
  for (auto& p : parts) {
    tx.take(
        {Phase::instantiate, "compile:" + p.dev, "compile the eBPF program of " + p.dev},
        [&] { p.object = kernel::compile_bpf(p.gen.source, options.cache); }, nullptr);
    tx.take(
        {Phase::instantiate, "load:" + p.dev, "load the program of " + p.dev},
        [&] {
          auto program = kernel::KernelProgram::load(p.object, p.gen.nodes.size());
          const std::uint32_t used = program->verified_insns();
          if (options.verifier_admission != 0 && used > options.verifier_admission)
            throw kernel::CapacityError(
                "the program of " + p.dev + " would take " + std::to_string(used) +
                " of the verifier's " + std::to_string(kernel::kVerifierBudget) +
                " instructions; changes that add to a hook are admitted up to " +
                std::to_string(options.verifier_admission) +
                " (the rest is kept so that removing requests always fits): remove "
                "requests from " +
                p.dev + ", or place this one in userspace (space=user)");
          p.program = std::move(program);
          dp->report_.push_back(p.dev + ": program verified in " + std::to_string(used) +
                                " of the verifier's " + std::to_string(kernel::kVerifierBudget) +
                                " instructions");
        },
        [&] { p.program.reset(); });
  }
  if (any_user) {
    tx.take(
        {Phase::instantiate, "engine", "build the userspace filters"},
        [&] {
          std::vector<EngineEntry> entries(exits.size());
          for (const auto& e : exits)
            entries.at(e.bit) = {e.from, e.to};
          EngineOptions eo;
          eo.workers = std::max<std::size_t>(placement.workers, 1);
          eo.max_batch = options.batch;
          eo.file_owner_of = options.file_owner_of;
          m.engine = std::make_unique<Engine>(dp->dag_, in_user, std::move(entries), eo);
          dp->report_.push_back("userspace engine: " + std::to_string(eo.workers) + " worker" +
                                (eo.workers == 1 ? "" : "s"));
        },
        [&] { m.engine.reset(); });
  }

  if (options.before_connect) {
    try {
      options.before_connect();
    } catch (const std::exception& e) {
      tx.rollback();
      throw StepError({Phase::connect, "prepare", "free what the channels need"}, e.what());
    }
  }

  // Connect: AF_PACKET sockets of rx nodes in userspace, AF_XDP sockets into
  // the programs' XSKMAPs (before any program is attached, so that no block
  // leaves for a queue nobody reads).
  if (m.engine) {
    for (const auto& id : m.engine->rx_nodes()) {
      const auto& dev = std::get<std::string>(g[*dp->dag_.find(id)].options.at("dev"));
      tx.take(
          {Phase::connect, "packet-socket:" + dev, "open an AF_PACKET socket on " + dev},
          [&] {
            PacketSocketOptions po;
            po.dev = dev;
            inputs.push_back(packet_socket_input(std::make_unique<PacketSocketSource>(po),
                                                 m.engine->source_entry(id)));
            dp->report_.push_back(dev + ": rx in userspace (AF_PACKET)");
          },
          [&] { inputs.pop_back(); });
    }
  }
  for (auto& p : parts) {
    if (p.gen.exits.empty()) continue;
    for (std::uint32_t i = 0; i < p.gen.copy_rings; ++i) {
      const std::string name = "ringbuf:" + p.dev + ":" + std::to_string(i);
      tx.take(
          {Phase::connect, name, "map copy ring " + std::to_string(i) + " of " + p.dev},
          [&] {
            p.rings.push_back(CopyRing::open(p.program->map_fd("srl_ring" + std::to_string(i)),
                                             p.program->map_fd("srl_wake" + std::to_string(i)),
                                             name));
          },
          [&] { p.rings.pop_back(); });
    }
    std::size_t copied = 0, taken = 0;
    std::uint32_t snap = 0;
    for (const auto& x : p.gen.exits) {
      (x.delivery == filters::Delivery::take ? taken : copied) += 1;
      snap = std::max(snap, x.snaplen);
    }
    dp->report_.push_back(p.dev + ": " + std::to_string(p.gen.exits.size()) +
                          " exit(s) to userspace (" + std::to_string(copied) + " copy, " +
                          std::to_string(taken) + " take), " + std::to_string(p.gen.copy_rings) +
                          " copy ring(s), " + std::to_string(options.copy.ring_bytes >> 10) +
                          " KiB per CPU, snap length up to " + std::to_string(snap));
    if (!p.gen.afxdp) continue;
    const std::uint32_t queues = rx_queue_count(p.dev);
    for (std::uint32_t q = 0; q < queues; ++q)
      tx.take(
          {Phase::connect, "afxdp:" + p.dev + ":" + std::to_string(q),
           "bind an AF_XDP socket to " + p.dev + " queue " + std::to_string(q)},
          [&] {
            AfxdpOptions ao;
            ao.dev = p.dev;
            ao.queue = q;
            p.channels.push_back(AfxdpChannel::open(ao, p.program->xsks_fd()));
          },
          [&] { p.channels.pop_back(); });
    bool zero_copy = true;
    for (const auto& c : p.channels)
      zero_copy = zero_copy && c->zero_copy();
    dp->report_.push_back(p.dev + ": " + std::to_string(taken) + " exit(s) take blocks over " +
                          std::to_string(queues) + " AF_XDP socket(s), " +
                          (zero_copy ? "zero-copy" : "copy mode"));
    dp->afxdp_devices_.push_back(p.dev);
  }

  // Activate, outputs first: the engine runs before any hook sends it blocks.
  if (m.engine) {
    tx.take(
        {Phase::activate, "start:engine", "start the userspace engine"},
        [&] {
          for (auto& p : parts) {
            for (auto& c : p.channels)
              inputs.push_back(afxdp_input(std::move(c)));
            for (auto& r : p.rings)
              inputs.push_back(copy_ring_input(std::move(r)));
          }
          for (auto& in : inputs)
            m.engine->add_input(std::move(in));
          inputs.clear();
          m.engine->start();
        },
        [&] {
          m.engine->stop();
          m.engine->wait();
        });
  }
  for (auto& p : parts) {
    const fs::path pin = options.pin_root.empty() ? fs::path() : options.pin_root / p.dev;
    // A hook of the datapath being replaced, of the same kind, on this device.
    Hook* old = nullptr;
    if (previous != nullptr)
      for (auto& h : previous->impl_->hooks)
        if (h.dev == p.dev && h.attached() && h.kind == (p.tc ? "tc" : "xdp")) old = &h;
    if (old != nullptr) {
      tx.take(
          {Phase::activate, "swap:" + p.dev,
           "swap the program on the " + std::string(p.tc ? "TC" : "XDP") + " hook of " + p.dev},
          [&] {
            Hook h;
            h.dev = p.dev;
            h.kind = old->kind;
            h.nodes = p.gen.nodes;
            // One atomic update; the old datapath keeps the program it ran.
            if (p.tc) {
              old->ran = old->tc->replace(std::move(p.program));
              h.tc = std::move(old->tc);
            } else {
              old->ran = old->xdp->replace(std::move(p.program));
              h.xdp = std::move(old->xdp);
            }
            m.hooks.push_back(std::move(h));
          },
          [&m, old] {
            Hook& h = m.hooks.back();
            if (h.tc) {
              h.tc->replace(std::move(old->ran)).reset();
              old->tc = std::move(h.tc);
            } else {
              h.xdp->replace(std::move(old->ran)).reset();
              old->xdp = std::move(h.xdp);
            }
            m.hooks.pop_back();
          });
    } else {
      tx.take(
          {Phase::activate, "attach:" + p.dev,
           "attach the program to the " + std::string(p.tc ? "TC ingress" : "XDP") + " hook of " +
               p.dev},
          [&] {
            if (previous != nullptr)
              for (auto& other : previous->impl_->hooks)
                if (other.dev == p.dev && other.attached())
                  throw kernel::KernelError("the running datapath holds the " + other.kind +
                                            " hook of " + p.dev + ", and a device has one hook");
            const int ifindex = static_cast<int>(ifindex_of(p.dev));
            Hook h;
            h.dev = p.dev;
            h.kind = p.tc ? "tc" : "xdp";
            h.nodes = p.gen.nodes;
            if (p.tc)
              h.tc = kernel::TcHook::attach(std::move(p.program), ifindex, pin);
            else
              h.xdp = kernel::XdpHook::attach(std::move(p.program), ifindex, p.mode, pin);
            m.hooks.push_back(std::move(h));
          },
          [&m] { m.hooks.pop_back(); });
    }
    const Hook& h = m.hooks.back();
    if (h.tc)
      dp->report_.push_back(p.dev + ": TC ingress (" +
                            (h.tc->tcx() ? "tcx link" : "cls_bpf filter on clsact") +
                            "), program id " + std::to_string(h.tc->program().id()) +
                            (pin.empty() ? "" : ", pinned at " + pin.string()));
    else
      dp->report_.push_back(p.dev + ": XDP " + std::string(kernel::to_string(h.xdp->mode())) +
                            ", program id " + std::to_string(h.xdp->program().id()) + ", " +
                            h.xdp->describe() + (pin.empty() ? "" : ", pinned at " + pin.string()));
  }
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
        h.kind = "xdp";
        h.xdp = kernel::XdpHook::adopt(dir);
      } else if (fs::exists(dir / "tc-program", ec)) {
        if (ifindex == 0) throw kernel::KernelError("no network device '" + dev + "'");
        h.kind = "tc";
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

std::vector<VertexCounters> Datapath::counters() const {
  const auto& g = dag_.graph;
  std::vector<VertexCounters> out(dag_.node_count());
  for (std::size_t v = 0; v < out.size(); ++v) {
    out[v].id = g[v].id;
    out[v].space = placement_.in_kernel[v] ? "kernel" : "user";
  }
  for (const auto& h : impl_->hooks) {
    const auto* program = h.program();
    const auto c = program != nullptr ? program->counters() : h.last;
    for (std::size_t i = 0; i < h.nodes.size() && i < c.size(); ++i) {
      const auto v = dag_.find(h.nodes[i].id);
      if (!v) continue;
      auto& r = out[*v];
      // The program has a slot for every node; only kernel nodes run there.
      if (placement_.in_kernel.empty() || placement_.in_kernel[*v]) r.space = h.kind + ":" + h.dev;
      r.blocks += c[i].packets;
      r.bytes += c[i].bytes;
      r.accepted += c[i].accepted;
    }
    // Counts by class: node slots are the hook's vertex order, as above.
    std::vector<ClassCount> classes;
    std::uint32_t node = UINT32_MAX;
    auto flush = [&] {
      if (node == UINT32_MAX || node >= h.nodes.size()) return;
      if (const auto v = dag_.find(h.nodes[node].id)) add_classes(out[*v].classes, classes);
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
  std::optional<EngineStats> engine;
  if (impl_->engine)
    engine = impl_->engine->stats();
  else
    engine = impl_->last_engine;
  if (engine)
    for (const auto& n : engine->nodes) {
      const auto v = dag_.find(n.id);
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
  // Every count by class: "other" is what its tallies leave out of its
  // blocks (classes that found the kernel's table full), and at most its
  // keys classes stand alone (the largest), the rest in "other".
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
