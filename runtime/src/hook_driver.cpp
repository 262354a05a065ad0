// The kernel hooks' drivers (space_driver.h): what XDP and TC share in
// HookDriver, what differs in one driver per kind.
#include <net/if.h>

#include <algorithm>

#include "space_driver.h"
#include "srl/filters/delivery.h"

namespace srl::runtime {

namespace fs = std::filesystem;

namespace {

unsigned ifindex_of(const std::string& dev) {
  const unsigned i = if_nametoindex(dev.c_str());
  if (i == 0) throw kernel::KernelError("no network device '" + dev + "'");
  return i;
}

std::string pinned_at(const fs::path& pin) {
  return pin.empty() ? "" : ", pinned at " + pin.string();
}

}  // namespace

HookDriver::HookDriver(DatapathBuild& build, std::string dev, HookKind kind,
                       std::string_view hook_name, std::string_view attach_point)
    : build_(build),
      dev_(std::move(dev)),
      kind_(kind),
      hook_name_(hook_name),
      attach_point_(attach_point),
      ifindex_(static_cast<int>(ifindex_of(dev_))) {}

void HookDriver::generate(Generator generator) {
  gen_ = generator(build_.dag, ifindex_, dev_, &build_.placement.in_kernel, build_.options.copy,
                   build_.options.program_form);
}

void HookDriver::instantiate(Transaction& tx) {
  const auto& options = build_.options;
  tx.take(
      {Phase::instantiate, "compile:" + dev_, "compile the eBPF program of " + dev_},
      [&] { object_ = kernel::compile_bpf(gen_.source, options.cache); }, nullptr);
  tx.take(
      {Phase::instantiate, "load:" + dev_, "load the program of " + dev_},
      [&] {
        auto program = kernel::KernelProgram::load(object_, gen_.nodes.size());
        const std::uint32_t used = program->verified_insns();
        if (options.verifier_admission != 0 && used > options.verifier_admission)
          throw kernel::CapacityError(
              "the program of " + dev_ + " would take " + std::to_string(used) +
              " of the verifier's " + std::to_string(kernel::kVerifierBudget) +
              " instructions; changes that add to a hook are admitted up to " +
              std::to_string(options.verifier_admission) +
              " (the rest is kept so that removing requests always fits): remove "
              "requests from " +
              dev_ + ", or place this one in userspace (space=user)");
        program_ = std::move(program);
        build_.report.push_back(dev_ + ": program verified in " + std::to_string(used) +
                                " of the verifier's " + std::to_string(kernel::kVerifierBudget) +
                                " instructions");
      },
      [this] { program_.reset(); });
}

// Copy rings, then AF_XDP sockets into the program's XSKMAP: all before any
// program is attached, so that no block leaves for a queue nobody reads.
void HookDriver::connect(Transaction& tx) {
  if (gen_.exits.empty()) return;
  connect_copy_rings(tx);
  std::size_t copied = 0, taken = 0;
  std::uint32_t snap = 0;
  for (const auto& x : gen_.exits) {
    (x.delivery == filters::Delivery::take ? taken : copied) += 1;
    snap = std::max(snap, x.snaplen);
  }
  build_.report.push_back(dev_ + ": " + std::to_string(gen_.exits.size()) +
                          " exit(s) to userspace (" + std::to_string(copied) + " copy, " +
                          std::to_string(taken) + " take), " + std::to_string(gen_.copy_rings) +
                          " copy ring(s), " + std::to_string(build_.options.copy.ring_bytes >> 10) +
                          " KiB per CPU, snap length up to " + std::to_string(snap));
  if (gen_.afxdp) connect_afxdp(tx, taken);
}

void HookDriver::connect_copy_rings(Transaction& tx) {
  for (std::uint32_t i = 0; i < gen_.copy_rings; ++i) {
    const std::string name = "ringbuf:" + dev_ + ":" + std::to_string(i);
    tx.take(
        {Phase::connect, name, "map copy ring " + std::to_string(i) + " of " + dev_},
        [&] {
          rings_.push_back(CopyRing::open(program_->map_fd("srl_ring" + std::to_string(i)),
                                          program_->map_fd("srl_wake" + std::to_string(i)), name));
        },
        [this] { rings_.pop_back(); });
  }
}

void HookDriver::connect_afxdp(Transaction& tx, std::size_t taken) {
  const std::uint32_t queues = rx_queue_count(dev_);
  for (std::uint32_t q = 0; q < queues; ++q)
    tx.take(
        {Phase::connect, "afxdp:" + dev_ + ":" + std::to_string(q),
         "bind an AF_XDP socket to " + dev_ + " queue " + std::to_string(q)},
        [&] {
          AfxdpOptions ao;
          ao.dev = dev_;
          ao.queue = q;
          channels_.push_back(AfxdpChannel::open(ao, program_->xsks_fd()));
        },
        [this] { channels_.pop_back(); });
  bool zero_copy = true;
  for (const auto& c : channels_)
    zero_copy = zero_copy && c->zero_copy();
  build_.report.push_back(dev_ + ": " + std::to_string(taken) + " exit(s) take blocks over " +
                          std::to_string(queues) + " AF_XDP socket(s), " +
                          (zero_copy ? "zero-copy" : "copy mode"));
  build_.afxdp_devices.push_back(dev_);
}

// The slots stay, emptied, for the inverses of the steps that filled them.
std::vector<std::unique_ptr<BlockInput>> HookDriver::take_channels() {
  std::vector<std::unique_ptr<BlockInput>> inputs;
  for (auto& c : channels_)
    inputs.push_back(afxdp_input(std::move(c)));
  for (auto& r : rings_)
    inputs.push_back(copy_ring_input(std::move(r)));
  return inputs;
}

Datapath::Hook* HookDriver::running_hook() const {
  Datapath::Hook* old = nullptr;
  if (build_.previous != nullptr)
    for (auto& h : build_.previous->hooks)
      if (h.dev == dev_ && h.attached() && h.kind == kind_) old = &h;
  return old;
}

void HookDriver::activate(Transaction& tx) {
  const fs::path pin =
      build_.options.pin_root.empty() ? fs::path() : build_.options.pin_root / dev_;
  if (Datapath::Hook* old = running_hook())
    swap(tx, *old);
  else
    attach(tx, pin);
  build_.report.push_back(dev_ + ": " + build_.impl.hooks.back().describe() + pinned_at(pin));
}

void HookDriver::swap(Transaction& tx, Datapath::Hook& old) {
  auto* hooks = &build_.impl.hooks;
  auto* from = &old;
  tx.take(
      {Phase::activate, "swap:" + dev_,
       "swap the program on the " + std::string(hook_name_) + " hook of " + dev_},
      [&] {
        Datapath::Hook h;
        h.dev = dev_;
        h.kind = old.kind;
        h.nodes = gen_.nodes;
        // One atomic update; the old datapath keeps the program it ran.
        old.ran = old.replace(std::move(program_));
        old.hand_over(h);
        hooks->push_back(std::move(h));
      },
      [hooks, from] {
        Datapath::Hook& h = hooks->back();
        h.replace(std::move(from->ran)).reset();
        h.hand_over(*from);
        hooks->pop_back();
      });
}

void HookDriver::attach(Transaction& tx, const fs::path& pin) {
  auto* hooks = &build_.impl.hooks;
  tx.take(
      {Phase::activate, "attach:" + dev_,
       "attach the program to the " + std::string(attach_point_) + " hook of " + dev_},
      [&] {
        if (build_.previous != nullptr)
          for (auto& other : build_.previous->hooks)
            if (other.dev == dev_ && other.attached())
              throw kernel::KernelError("the running datapath holds the " +
                                        std::string(to_string(other.kind)) + " hook of " + dev_ +
                                        ", and a device has one hook");
        const int ifindex = static_cast<int>(ifindex_of(dev_));
        Datapath::Hook h;
        h.dev = dev_;
        h.kind = kind_;
        h.nodes = gen_.nodes;
        attach_hook(h, std::move(program_), ifindex, pin);
        hooks->push_back(std::move(h));
      },
      [hooks] { hooks->pop_back(); });
}

namespace {

class XdpHookDriver final : public HookDriver {
 public:
  XdpHookDriver(DatapathBuild& build, const std::string& dev, std::optional<kernel::XdpMode> mode)
      : HookDriver(build, dev, HookKind::xdp, "XDP", "XDP"), mode_(mode) {
    // A swap keeps the running hook's mode: a plan that changes it cannot
    // run as planned on that hook.
    if (build_.previous != nullptr && mode_)
      for (const auto& h : build_.previous->hooks)
        if (h.dev == dev_ && h.attached() && h.xdp && h.xdp->mode() != *mode_)
          throw std::invalid_argument(
              dev_ + "'s XDP hook runs in " + std::string(kernel::to_string(h.xdp->mode())) +
              " mode and the plan has it in " + std::string(kernel::to_string(*mode_)) +
              " mode: a hook's mode changes only when it is attached anew (remove the device's "
              "requests first, or fix the mode)");
    generate(kernel::generate_xdp);
  }

 private:
  void attach_hook(Datapath::Hook& h, std::unique_ptr<kernel::KernelProgram> program, int ifindex,
                   const fs::path& pin) const override {
    h.xdp = kernel::XdpHook::attach(std::move(program), ifindex, mode_, pin);
  }

  std::optional<kernel::XdpMode> mode_;  // the plan's; none: native where the driver has it
};

class TcHookDriver final : public HookDriver {
 public:
  TcHookDriver(DatapathBuild& build, const std::string& dev)
      : HookDriver(build, dev, HookKind::tc, "TC", "TC ingress") {
    generate(kernel::generate_tc);
  }

 private:
  void attach_hook(Datapath::Hook& h, std::unique_ptr<kernel::KernelProgram> program, int ifindex,
                   const fs::path& pin) const override {
    h.tc = kernel::TcHook::attach(std::move(program), ifindex, pin);
  }
};

}  // namespace

std::unique_ptr<HookDriver> hook_driver(DatapathBuild& build, const std::string& dev,
                                        const DeviceHook& hook) {
  switch (hook.kind) {
    case HookKind::xdp:
      return std::make_unique<XdpHookDriver>(build, dev, hook.xdp_mode);
    case HookKind::tc:
      return std::make_unique<TcHookDriver>(build, dev);
  }
  throw std::invalid_argument("unknown hook kind");
}

}  // namespace srl::runtime
