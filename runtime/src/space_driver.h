// The drivers a datapath is composed of (datapath.h): one per space kind,
// each with the reversible life cycle of docs/architecture.md §4:
// instantiate, connect, activate, every step taken in a Transaction with its
// exact inverse. Datapath::build composes them; a new space kind is one new
// driver.
//
// A channel into the engine is connected by the driver of the space it
// leaves (a hook's copy rings and AF_XDP sockets are maps of its program, an
// AF_PACKET socket is the engine's own input), not by a driver of its own:
// what a channel binds to is known there, and the engine takes the channels
// over when it starts (SpaceDriver::take_channels).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "srl/runtime/datapath.h"
#include "srl/runtime/engine.h"
#include "srl/runtime/inputs.h"

namespace srl::runtime {

// The hook of one device: attached by this datapath, or taken over from the
// datapath it replaced. `ran` is the program a newer datapath swapped out.
struct Datapath::Hook {
  std::string dev;
  std::unique_ptr<kernel::XdpHook> xdp;  // one of these two while attached
  std::unique_ptr<kernel::TcHook> tc;
  std::unique_ptr<kernel::KernelProgram> ran;
  std::vector<kernel::NodeSlot> nodes;
  HookKind kind = HookKind::xdp;
  std::vector<kernel::Counter> last;  // read just before the hook was detached
  std::vector<kernel::KernelProgram::ClassTally> last_classes;  // likewise
  kernel::CopyCounters last_copy;                               // the copy channel's, likewise

  const kernel::KernelProgram* program() const {
    if (xdp) return &xdp->program();
    if (tc) return &tc->program();
    return ran.get();
  }
  bool attached() const { return xdp || tc; }
  // The attached hook in the report's words ("XDP native, program id 7, ...").
  std::string describe() const {
    if (xdp)
      return "XDP " + std::string(kernel::to_string(xdp->mode())) + ", program id " +
             std::to_string(xdp->program().id()) + ", " + xdp->describe();
    return "TC ingress (" + std::string(tc->tcx() ? "tcx link" : "cls_bpf filter on clsact") +
           "), program id " + std::to_string(tc->program().id());
  }
  // Swaps `program` into the attached hook in one atomic update; returns the
  // program it ran.
  std::unique_ptr<kernel::KernelProgram> replace(std::unique_ptr<kernel::KernelProgram> program) {
    return xdp ? xdp->replace(std::move(program)) : tc->replace(std::move(program));
  }
  // Hands the attached hook over to `to` (a datapath that replaces this one).
  void hand_over(Hook& to) {
    to.xdp = std::move(xdp);
    to.tc = std::move(tc);
  }
};

struct Datapath::Impl {
  std::vector<Hook> hooks;
  std::unique_ptr<Engine> engine;
  std::optional<EngineStats> last_engine;  // of an engine stopped alone
  bool removed = false;
};

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

// What the drivers of one build share: the datapath being built (its DAG,
// placement, parts and report) and the one it replaces.
struct DatapathBuild {
  const compiler::RequestDag& dag;
  const Placement& placement;
  const DatapathOptions& options;
  Datapath::Impl& impl;
  Datapath::Impl* previous;  // of the datapath being replaced; null: none
  std::vector<std::string>& report;
  std::vector<std::string>& afxdp_devices;
};

// One space's part of a datapath. Each step registers its inverse in the
// transaction, which the datapath commits once every driver is active.
class SpaceDriver {
 public:
  virtual ~SpaceDriver() = default;
  // Code compiled and loaded, state allocated; nothing flows yet.
  virtual void instantiate(Transaction& tx) = 0;
  // The channels this space owns.
  virtual void connect(Transaction& tx) = 0;
  // Data may flow.
  virtual void activate(Transaction& tx) = 0;
  // The channels into the engine it connected, handed over (once) when the
  // engine starts.
  virtual std::vector<std::unique_ptr<BlockInput>> take_channels() { return {}; }
};

// A device's kernel hook: what XDP and TC share (the program generated when
// the driver is made, as generating is pure; compiled, loaded, its channels
// connected; attached anew or swapped into the running hook of the same
// kind). The kinds differ in their program and in attaching it.
class HookDriver : public SpaceDriver {
 public:
  // Where its blocks leave the kernel for the engine.
  const std::vector<kernel::KernelExit>& exits() const { return gen_.exits; }
  const std::string& device() const { return dev_; }
  HookKind kind() const { return kind_; }

  void instantiate(Transaction& tx) override;  // compile:DEV, load:DEV
  void connect(Transaction& tx) override;      // ringbuf:DEV:I, afxdp:DEV:QUEUE
  void activate(Transaction& tx) override;     // swap:DEV or attach:DEV
  std::vector<std::unique_ptr<BlockInput>> take_channels() override;

 protected:
  // `hook_name` and `attach_point` are the hook in the words of the swap
  // step and of the attach step ("XDP", "TC"; "XDP", "TC ingress"). Throws
  // kernel::KernelError for a device that does not exist.
  HookDriver(DatapathBuild& build, std::string dev, HookKind kind, std::string_view hook_name,
             std::string_view attach_point);

  // Generates the program with `generator` (kernel.h); the constructor of
  // each kind calls it.
  using Generator = kernel::GeneratedProgram (*)(const compiler::RequestDag&, int,
                                                 const std::string&, const std::vector<bool>*,
                                                 const kernel::CopyChannelOptions&,
                                                 kernel::ProgramForm);
  void generate(Generator generator);
  // Attaches `program` to the device's hook, into `h`.
  virtual void attach_hook(Datapath::Hook& h, std::unique_ptr<kernel::KernelProgram> program,
                           int ifindex, const std::filesystem::path& pin) const = 0;

  DatapathBuild& build_;
  const std::string dev_;
  const HookKind kind_;
  const std::string_view hook_name_, attach_point_;
  const int ifindex_;
  kernel::GeneratedProgram gen_;

 private:
  void connect_copy_rings(Transaction& tx);
  void connect_afxdp(Transaction& tx, std::size_t taken);
  // The hook of this kind on this device that the replaced datapath runs.
  Datapath::Hook* running_hook() const;
  void swap(Transaction& tx, Datapath::Hook& old);
  void attach(Transaction& tx, const std::filesystem::path& pin);

  std::filesystem::path object_;
  std::unique_ptr<kernel::KernelProgram> program_;
  std::vector<std::unique_ptr<AfxdpChannel>> channels_;
  std::vector<std::unique_ptr<CopyRing>> rings_;
};

// The driver of `dev`'s hook as planned, its program generated: the one place
// a build dispatches on a hook's kind.
std::unique_ptr<HookDriver> hook_driver(DatapathBuild& build, const std::string& dev,
                                        const DeviceHook& hook);

// The userspace engine over the vertices `in_user`, entered at `exits` (the
// hooks' exits) and by its own rx nodes; when it starts it takes the
// channels `feeds` connected.
std::unique_ptr<SpaceDriver> engine_driver(DatapathBuild& build, std::vector<bool> in_user,
                                           std::vector<kernel::KernelExit> exits,
                                           std::vector<SpaceDriver*> feeds);

}  // namespace srl::runtime
