// The system model (ARCHITECTURE.md §2.3): the execution spaces of a machine
// and the channels between them, with what the optimizer needs to know about
// each (capabilities, capacity, limits, costs). Produced by discovery, or
// loaded from a JSON file to plan for another machine. JSON schema:
// docs/optimizer.md §System model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "srl/filters/catalog.h"

namespace srl::optimizer {

// Kinds of execution space, ordered from the wire up: data may only move to
// a kind that is not lower (offload -> xdp -> tc -> user).
enum class Kind : std::uint8_t { offload = 0, xdp = 1, tc = 2, user = 3 };
inline constexpr std::size_t kKinds = 4;
std::string_view to_string(Kind k);
std::optional<Kind> kind_from_string(std::string_view s);
// The catalog's implementation kind for a space kind (xdp and tc run kernel code).
filters::SpaceKind impl_kind(Kind k);

enum class ChannelKind : std::uint8_t { call, tailcall, meta, afxdp, ringbuf, shm, pipe, pcie };
std::string_view to_string(ChannelKind k);
std::optional<ChannelKind> channel_kind_from_string(std::string_view s);

struct Caches {
  std::uint64_t l1d = 0;  // bytes; 0: unknown
  std::uint64_t l2 = 0;
  std::uint64_t l3 = 0;
};

struct Space {
  std::string id;  // "xdp:eth0", "tc:eth0", "user:0", "offload:eth0"
  Kind kind = Kind::user;
  // Attachment: the device for xdp/tc/offload, the CPU for user.
  std::string device;
  std::optional<std::uint32_t> queue;
  std::optional<std::uint32_t> cpu;
  std::string mode;  // xdp: "native" or "generic"; offload: the driver name
  // xdp: the caller chose the mode (srl run --xdp-mode); a cost profile
  // does not change it (apply(), profile.h).
  bool mode_fixed = false;
  std::string driver;     // kernel spaces: the device's driver ("veth", "mlx5_core"), if known
  bool emulated = false;  // the space is simulated (the offload emulator)
  // Probed features, e.g. "prog:xdp", "map:lru_hash", "helper:redirect_map".
  std::set<std::string> capabilities;
  double capacity_ns_per_s = 1e9;     // CPU time per second the space may use
  std::uint32_t ebpf_insn_limit = 0;  // kernel spaces: instructions in the fused program
  // Kernel spaces (0: none): tcpdump expressions (`bpf` nodes, each a BPF
  // function) the program may hold, and edges that may leave it for
  // userspace (one bit each of a mask). Discovery sets the runtime's
  // numbers (kKernelFunctionLimit, kKernelExitLimit).
  std::uint32_t ebpf_function_limit = 0;
  std::uint32_t ebpf_exit_limit = 0;
  // Kernel hooks (0: none): the verifier's instructions (processed) the
  // hook's program may take: the kernel's budget for `srl run`, what
  // controld admits (--verifier-admission). The optimizer bounds a
  // program's work from above (kernel_verified) and plans within it.
  std::uint32_t verifier_limit = 0;
  Caches caches;
  // Kernel spaces: what the hook itself costs each block the device
  // receives, against no hook, paid by the request's `rx` placed here (once
  // for all requests sharing it). On a veth, XDP copies every frame into a
  // page of its own and TC does not. From `srl calibrate` (profile "hooks"
  // by driver); 0 when not measured.
  double hook_ns_per_block = 0;
  double hook_ns_per_byte = 0;

  bool has(std::string_view cap) const { return capabilities.contains(std::string(cap)); }
};

// What one program srl generates for a kernel hook holds; the runtime
// states the same numbers in runtime/include/srl/runtime/kernel.h
// (kMaxExpressions, kMaxExits), where they are enforced when it generates
// the program. The optimizer plans within them so that a plan deploys.
inline constexpr std::uint32_t kKernelFunctionLimit = 255;  // BPF_MAX_SUBPROGS 256, less main
inline constexpr std::uint32_t kKernelExitLimit = 32;       // bits of the exit mask
// The verifier's instructions a program may take (BPF_COMPLEXITY_LIMIT_INSNS).
inline constexpr std::uint32_t kVerifierBudget = 1'000'000;

enum class Carries : std::uint8_t { any, copy, take };
std::string_view to_string(Carries c);

struct Channel {
  std::string from;  // space ids
  std::string to;
  ChannelKind kind = ChannelKind::shm;
  double ns_per_block = 0;
  double ns_per_byte = 0;
  // Bytes of memory traffic per payload byte (a copy reads and writes: 2; zero-copy: 0).
  double mem_bytes_per_byte = 0;
  double capacity_blocks_per_s = 0;  // 0: not limited
  bool zero_copy = false;
  std::vector<std::string> via;  // spaces the blocks pass through without a filter

  // What it can carry up from the kernel: a copy (the block also goes on
  // to the stack), a take (it leaves the stack), or either. AF_XDP
  // redirects the block itself: it only takes. JSON "carries", default by
  // kind (afxdp: take; else any).
  Carries carries = Carries::any;
  bool copies() const { return carries != Carries::take; }
  bool takes() const { return carries != Carries::copy; }
};

struct HostInfo {
  std::string hostname;
  std::string kernel;
  std::string cpu_model;
  std::uint32_t cpus = 0;
  std::uint64_t memory_bytes = 0;
  double memory_bandwidth_bytes_per_s = 10e9;  // for copies; calibrated
  Caches caches;
};

struct SystemModel {
  HostInfo host;
  std::vector<Space> spaces;
  std::vector<Channel> channels;
  std::vector<std::string> notes;  // what discovery could not find out, and assumptions
  std::string origin;              // "discovered" or the file it was loaded from

  const Space* find_space(std::string_view id) const;
  std::vector<std::string> devices() const;  // devices with a space, sorted
  // The channel from `from` to `to` (distinct spaces) of least cost for a
  // block of `bytes`, if any; with `delivery`, only channels that carry it.
  const Channel* best_channel(std::string_view from, std::string_view to, double bytes,
                              std::optional<Carries> delivery = std::nullopt) const;
};

inline constexpr int kModelJsonVersion = 1;

nlohmann::ordered_json to_json(const SystemModel& m);
// Throws std::runtime_error naming the JSON path of the first problem.
SystemModel model_from_json(const nlohmann::json& j);
SystemModel load_model(const std::filesystem::path& file);
void save_model(const SystemModel& m, const std::filesystem::path& file);
std::string to_text(const SystemModel& m);

// Checks references and values; returns the problems found (empty: valid).
std::vector<std::string> validate(const SystemModel& m);

// Channels as physics allows them, with default costs: for each device the
// upward chain offload -> xdp -> tc -> user (and skips of it), user <-> user
// between cores. Used by discovery and by tools that build models.
void add_default_channels(SystemModel& m);

}  // namespace srl::optimizer
