// A deployed datapath: the kernel part of a (merged) request DAG as one
// program per device hook, the userspace part in an engine, joined by copy
// rings (blocks the userspace part observes) and AF_XDP sockets (blocks it
// takes: filters/delivery.h), built as ONE transaction.
//
// The life cycle follows docs/architecture.md §4, with one driver per space
// (a hook driver per device, XDP or TC, and the engine's;
// runtime/src/space_driver.h) taking its part of each phase: every node is
// instantiated (programs compiled and loaded, the engine's filters built),
// then every channel is connected (AF_PACKET sockets, copy rings mapped,
// AF_XDP sockets into the programs' XSKMAPs), then the datapath is activated
// from the outputs back to the inputs (the engine starts before any hook
// sends it blocks). Each step is announced to a StepObserver before it is
// taken, so that a journal can record it first, and has an exact inverse: a
// failure undoes the steps taken, in reverse, and leaves the machine as it
// was.
//
// Replacing a running datapath is make-before-break: on a device both use,
// activation swaps the program in the running hook in one atomic update
// (bpf_link_update for XDP, a netlink replace for TC), so the hook is never
// empty; the old datapath keeps the program it ran, to be read one last time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "srl/compiler/dag.h"
#include "srl/compiler/merge.h"
#include "srl/filters/user.h"
#include "srl/runtime/counter_report.h"
#include "srl/runtime/kernel.h"

namespace srl::runtime {

// A device's kernel hook.
enum class HookKind : std::uint8_t { xdp, tc };
std::string_view to_string(HookKind k);  // "xdp", "tc"

// The hook a device's kernel part runs on, as planned.
struct DeviceHook {
  HookKind kind = HookKind::xdp;
  // xdp: the mode the plan chose; none: native where the driver has it.
  std::optional<kernel::XdpMode> xdp_mode;
  bool operator==(const DeviceHook&) const = default;
};

// The channel an edge from the kernel up to the engine rides.
enum class UpChannelKind : std::uint8_t {
  afxdp,  // an AF_XDP socket: blocks an XDP hook takes
  ring,   // srl's copy ring: copies, and the blocks a TC hook takes
};
std::string_view to_string(UpChannelKind k);  // "afxdp", "ringbuf" (the plan's words)

// An edge from a kernel node up to a userspace node, as planned: whether
// its blocks are copied or taken (filters/delivery.h) and over what.
struct UpChannel {
  std::size_t from = 0, to = 0;  // vertices: the kernel node, the userspace node
  filters::Delivery delivery = filters::Delivery::copy;
  UpChannelKind kind = UpChannelKind::ring;
  bool operator==(const UpChannel&) const = default;
};

// Where each node of a DAG runs (the control plane makes it from a plan:
// control/pipeline.h).
struct Placement {
  std::vector<bool> in_kernel;              // per vertex
  std::map<std::string, DeviceHook> hooks;  // per device; absent: XDP, native where it can
  // The engine's workers (threads, blocks split between them by flow): the
  // largest replica set the plan runs userspace nodes on, 1 for none.
  std::size_t workers = 1;
  // Every edge from the kernel up to the engine, as planned: the datapath
  // deploys exactly these or nothing. Empty: as the datapath's own rule
  // makes them (fixed_placement).
  std::vector<UpChannel> up;
};

// Where vertex `v` runs: "user", or the hooks of the devices whose blocks
// reach it ("xdp:eth0", "xdp:eth0,tc:eth1"). An rx that names no device (a
// request planned on a model's devices) stands for every device hooked.
std::string space_of(const compiler::RequestDag& dag, const Placement& place, std::size_t v);

// The devices the DAG's rx sources read, in order of first use. Throws
// std::invalid_argument when an rx has no device.
std::vector<std::string> rx_devices(const compiler::RequestDag& dag);

// Vertices at or below a source that is not rx (pcapin): they cannot run in
// the kernel, since data only moves up.
std::vector<bool> below_user_sources(const compiler::RequestDag& dag);

// The fixed rule (a hook forced): a node runs in the kernel when it has a
// kernel implementation and all its inputs run there. Throws
// std::invalid_argument for a DAG not numbered as dag.h says.
Placement fixed_placement(const compiler::RequestDag& dag, const std::vector<std::string>& devices,
                          DeviceHook hook);

struct DatapathOptions {
  std::filesystem::path bpffs = "/sys/fs/bpf";
  // Hooks are pinned at pin_root/DEV (XDP: link and counters; TC: program
  // and counters), so that a crash leaves them findable. Empty: no pins.
  std::filesystem::path pin_root;
  std::filesystem::path cache = "/var/cache/srl/bpf";
  std::size_t batch = 32;
  // The rings that carry copies (and takes from TC) up to the engine.
  kernel::CopyChannelOptions copy;
  // Called once every node is instantiated, just before the first channel
  // is connected: where a caller frees what the channels need (AF_XDP
  // queues an older datapath holds) as late as possible.
  std::function<void()> before_connect;
  // Passed on to the engine: see EngineOptions::file_owner_of.
  std::function<std::optional<filters::FileOwner>(std::string_view node_id)> file_owner_of;
  // A change that adds to a hook is admitted only while its program takes
  // at most this many of the verifier's instructions (0: whatever the
  // kernel accepts). The plan keeps within it by an upper bound of the
  // program's work (docs/optimizer.md, "The verifier's budget"); this is
  // the check of what the kernel reports. A change that only removes is
  // planned within the kernel's budget: a subset's bound is smaller, and a
  // register-form program stays under kernel::kRegisterFormVerified.
  std::uint32_t verifier_admission = 0;
  // The register form where a hook's program is small (kernel.h); the map
  // form always where an admission limit below kRegisterFormVerified could
  // refuse a small program that the map form would have fitted.
  kernel::ProgramForm program_form = kernel::ProgramForm::automatic;
};

enum class Phase { instantiate, connect, activate, deactivate };
std::string_view to_string(Phase p);

// One step of a transaction: `key` identifies it ("load:eth0",
// "afxdp:eth0:0", "attach:eth0"), `what` says it in words.
struct Step {
  Phase phase = Phase::instantiate;
  std::string key;
  std::string what;
};

class StepObserver {
 public:
  virtual ~StepObserver() = default;
  // Before a step is taken. Throwing here fails the step (the journal could
  // not record it, or a test injects a failure): it is not taken, and the
  // steps before it are undone.
  virtual void before(const Step&) {}
  // Throwing here after a step is taken fails the transaction: that step
  // and the ones before it are undone. Except while removing, which rolls
  // forward whatever the observer says.
  virtual void taken(const Step&) {}
  // May throw: the step stays undone, and the others are undone too (an
  // exception never leaves a rollback).
  virtual void undone(const Step&) {}
};

// A transaction failed at `step` for `reason`; everything it did is undone.
class StepError : public std::runtime_error {
 public:
  StepError(Step step, std::string reason, bool capacity = false);
  const Step& step() const { return step_; }
  const std::string& reason() const { return reason_; }
  // The step found that the change does not fit (kernel::CapacityError).
  bool capacity() const { return capacity_; }

 private:
  Step step_;
  std::string reason_;
  bool capacity_ = false;
};

// Counters of one vertex of the datapath's DAG.
struct VertexCounters {
  std::string id;
  std::string space;  // "xdp:eth0", "tc:eth0" or "user"
  std::uint64_t blocks = 0, bytes = 0, accepted = 0, drops = 0;
  std::string failure;  // a userspace filter's (UserFilter::failure), if any
  // A `count, by=class`: its counts per input class, by class, kOtherClass
  // (what did not fit in its keys) last.
  bool by_class = false;
  std::vector<ClassCount> classes;
};

// Adds `from`'s class counts into `to` (both sorted by class).
void add_classes(std::vector<ClassCount>& to, const std::vector<ClassCount>& from);
// A count by class as reported: at most `keys` classes (the largest) on
// their own, the rest and whatever the node counted without a tally in
// one "other" (kOtherClass, last).
void fold_classes(VertexCounters& counters, std::size_t keys);

// The row of one request node (counter_report.h) from the counters of the
// merged node that stands for it.
NodeReport node_report(const std::string& request, const std::string& node, const std::string& name,
                       const compiler::DagGraph& g, compiler::Vertex v,
                       const VertexCounters& counters);

// Counters of one channel into the engine (an AF_XDP socket, an AF_PACKET
// socket, a capture file).
struct ChannelCounters {
  std::string name;  // "afxdp:eth0:0", "packet:eth0", ...
  std::string kind;  // the part before the first ':'
  std::uint64_t blocks = 0, bytes = 0, drops = 0;
};

class Datapath {
 public:
  // Builds and activates `dag` placed as `placement`. With `previous`, the
  // new datapath replaces it: hooks on devices both use move over (their
  // programs swapped atomically); `previous` keeps the rest and everything
  // of its engine, to be removed by its owner once this one runs. Throws
  // StepError after undoing every step taken (`previous` then runs on as
  // before); std::invalid_argument for a DAG it cannot deploy.
  static std::unique_ptr<Datapath> build(const compiler::RequestDag& dag,
                                         const Placement& placement, const DatapathOptions& options,
                                         StepObserver* observer = nullptr,
                                         Datapath* previous = nullptr);

  // The hooks an earlier process left pinned under `pin_root` (a directory
  // per device), taken over as they run: a new datapath built with this one
  // as `previous` swaps its programs in (make-before-break across a daemon
  // restart); removing it detaches whatever nobody took. Pins that cannot be
  // taken over are removed, each said in `problems`.
  static std::unique_ptr<Datapath> adopt(const std::filesystem::path& pin_root,
                                         std::vector<std::string>* problems = nullptr);

  // Leaves the kernel part attached and pinned when this object goes, for
  // adopt() to find. A userspace part cannot outlive its process: it stops;
  // meanwhile copies are lost when the ring fills (counted; the blocks go on
  // to the stack as always), and blocks that were taken are taken through
  // the ring until it is full, then go to the stack. True when a hook was
  // left running.
  bool release();

  // Deactivates from the inputs to the outputs (hooks detached, then the
  // engine drains and stops: open streams end, files are flushed), each step
  // announced to `observer`. Removal rolls forward: every step is taken even
  // when the observer objects to one. Idempotent.
  void remove(StepObserver* observer = nullptr);
  ~Datapath();  // remove()

  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  const compiler::RequestDag& dag() const { return dag_; }
  const Placement& placement() const { return placement_; }

  // Stops the userspace part alone (its sockets closed, its files
  // flushed), announced as a deactivate step; the hooks run on. For a new
  // datapath that must bind the same AF_XDP queues. Rolls forward.
  void stop_engine(StepObserver* observer = nullptr);
  // Per vertex: the kernel counters (of the program the hook runs, or ran
  // last if it moved to a newer datapath) plus the engine's.
  std::vector<VertexCounters> counters() const;
  // Per hook (attached, or swapped out to a newer datapath): the device, the
  // DAG node each counter slot of its program stands for (empty for an
  // adopted program: its nodes are not known here), and the counters.
  struct HookCounters {
    std::string dev;
    std::vector<std::string> nodes;
    std::vector<kernel::Counter> counters;
    std::vector<kernel::KernelProgram::ClassTally> classes;  // by slot, then class
  };
  std::vector<HookCounters> hook_counters() const;

  // Per channel into the userspace part.
  std::vector<ChannelCounters> channels() const;
  // The devices with a hook of this datapath, and the one-line descriptions
  // of what was set up ("eth0: XDP native, program id 7, link id 3").
  std::vector<std::string> hooked_devices() const;
  const std::vector<std::string>& report() const { return report_; }
  // A userspace-only datapath (pcapin) whose inputs are all done.
  bool ended() const;
  bool has_engine() const;
  // Devices whose blocks reach this datapath's engine over AF_XDP: a new
  // datapath cannot bind those queues while this one holds them.
  const std::vector<std::string>& afxdp_devices() const { return afxdp_devices_; }

  struct Hook;
  struct Impl;

 private:
  Datapath();
  compiler::RequestDag dag_;
  Placement placement_;
  std::unique_ptr<Impl> impl_;
  std::vector<std::string> report_;
  std::vector<std::string> afxdp_devices_;
};

}  // namespace srl::runtime
