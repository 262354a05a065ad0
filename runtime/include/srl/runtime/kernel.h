// The kernel space: the kernel-placed part of a request runs as ONE
// generated eBPF program per hook (filters inlined, headers parsed once,
// per-node counters in one per-CPU map), compiled with clang, loaded with
// libbpf and attached through a bpf_link that a new program can replace
// atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct bpf_object;

#include "srl/compiler/dag.h"

namespace srl::runtime::kernel {

// Failure of a kernel-space step, with what failed and why.
class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One node of the program: where its counters are and what it is.
struct NodeSlot {
  std::string id;      // DAG node id
  std::string filter;  // catalog name
  std::optional<std::string> name;
};

// An edge that leaves the kernel for userspace (channel afxdp).
struct KernelExit {
  std::uint32_t bit;  // bit in the tag's exit mask
  std::string from;   // kernel node id
  std::string to;     // userspace node id where the block continues
};

// The tag in front of every frame the program redirects to AF_XDP: the
// userspace side learns where each block continues. Prepended with
// bpf_xdp_adjust_head, so it works in native and generic mode alike
// (frame metadata does not exist in generic mode).
struct AfxdpTag {
  std::uint16_t magic;   // kAfxdpTagMagic, network byte order
  std::uint8_t version;  // 1
  std::uint8_t length;   // sizeof(AfxdpTag)
  std::uint32_t exits;   // host byte order: bit i set = continue at exits[i].to
};
inline constexpr std::uint16_t kAfxdpTagMagic = 0x5352;  // "SR"

struct GeneratedProgram {
  std::string source;           // eBPF C
  std::vector<NodeSlot> nodes;  // counter slot i is nodes[i]
  std::vector<KernelExit> exits;
};

// Generates the XDP program for every node of `dag` on the hook of device
// `dev` (`ifindex`): blocks enter at the `rx` nodes of that device; `rx`
// nodes of other devices are not reached here. An empty `dev` enters at
// every `rx` (tests). Throws KernelError naming the first filter with no
// kernel implementation.
//
// `in_kernel` (one flag per vertex; null: every node) says which nodes the
// program runs. Edges from a kernel node to a userspace node become exits:
// a block that takes one is tagged (AfxdpTag) and redirected into the
// XSKMAP `srl_xsks` at its receive queue. Nodes placed in userspace may
// not feed kernel nodes: data only moves up.
GeneratedProgram generate_xdp(const compiler::RequestDag& dag, int ifindex,
                              const std::string& dev = {},
                              const std::vector<bool>* in_kernel = nullptr);

// The same for the TC ingress hook of a device: verdicts become TC actions,
// `tx` a redirect. No exits to userspace (AF_XDP takes blocks from XDP).
GeneratedProgram generate_tc(const compiler::RequestDag& dag, int ifindex,
                             const std::string& dev = {});

// Compiles eBPF C to an object file with clang, caching objects by a hash
// of the source and the compiler, so unchanged requests load at once.
std::filesystem::path compile_bpf(const std::string& source,
                                  const std::filesystem::path& cache_dir);

enum class XdpMode { native, generic };
std::string_view to_string(XdpMode m);

struct Counter {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t accepted = 0;
};

// A generated program (XDP or TC) loaded into the kernel, not attached.
class KernelProgram {
 public:
  static std::unique_ptr<KernelProgram> load(const std::filesystem::path& object,
                                             std::size_t node_count);
  // A program found running (pinned by an earlier process): owns the two
  // descriptors. It has no AF_XDP socket map to fill.
  static std::unique_ptr<KernelProgram> adopt(int prog_fd, int counters_fd);
  ~KernelProgram();
  KernelProgram(const KernelProgram&) = delete;
  KernelProgram& operator=(const KernelProgram&) = delete;

  int fd() const { return prog_fd_; }
  int counters_fd() const { return counters_fd_; }
  // The AF_XDP socket map of the exits to userspace (srl_xsks).
  int xsks_fd() const;
  std::size_t node_count() const { return node_count_; }
  std::uint32_t id() const;
  // Counters per node slot, summed over CPUs.
  std::vector<Counter> counters() const;
  // Runs the program once on `frame` (BPF_PROG_TEST_RUN); returns the XDP
  // action (XDP_DROP, XDP_PASS, ...).
  std::uint32_t test_run(const std::vector<std::uint8_t>& frame, std::uint32_t repeat = 1,
                         std::uint32_t* duration_ns = nullptr) const;

 private:
  KernelProgram() = default;
  struct bpf_object* obj_ = nullptr;
  int prog_fd_ = -1;
  int counters_fd_ = -1;
  std::size_t node_count_ = 0;
};

// A program attached to a device's XDP hook through a bpf_link. Destroying
// it detaches the program and removes its pins.
class XdpHook {
 public:
  // Attaches `program` to `ifindex`: native mode if the driver supports it,
  // else generic (or exactly `mode` if given). Pins the link and the counter
  // map under `pin_dir` when it is not empty.
  static std::unique_ptr<XdpHook> attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                         std::optional<XdpMode> mode = std::nullopt,
                                         const std::filesystem::path& pin_dir = {});
  // The hook pinned at `pin_dir` by an earlier process (a daemon that
  // stopped or died), taken over as it runs. Throws KernelError.
  static std::unique_ptr<XdpHook> adopt(const std::filesystem::path& pin_dir);
  ~XdpHook();
  // Leaves the program attached and pinned when this object goes (the
  // datapath outlives the process; adopt() finds it again).
  void release() { released_ = true; }
  XdpHook(const XdpHook&) = delete;
  XdpHook& operator=(const XdpHook&) = delete;

  // Replaces the running program in one link update: the hook is never
  // empty. Returns the program it ran (its counters stay readable).
  std::unique_ptr<KernelProgram> replace(std::unique_ptr<KernelProgram> program);

  XdpMode mode() const { return mode_; }
  int ifindex() const { return ifindex_; }
  const KernelProgram& program() const { return *program_; }
  std::uint32_t link_id() const;

 private:
  XdpHook() = default;
  void pin();
  void unpin();

  std::unique_ptr<KernelProgram> program_;
  int link_fd_ = -1;
  int ifindex_ = 0;
  bool released_ = false;
  XdpMode mode_ = XdpMode::generic;
  std::filesystem::path pin_dir_;
};

// A program attached to a device's TC ingress hook (a cls_bpf filter in
// direct-action mode on the clsact qdisc, at srl's own handle and priority).
// TC filters are not bpf_links: the program is pinned, so that a later run
// can tell an abandoned srl filter (same program id) from anything else.
// Destroying it detaches the filter, removes a clsact qdisc it created, and
// unpins.
class TcHook {
 public:
  static constexpr std::uint32_t kHandle = 0x5352;  // "SR"
  static constexpr std::uint32_t kPriority = 0x5352;

  static std::unique_ptr<TcHook> attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                        const std::filesystem::path& pin_dir = {});
  // The srl filter on `ifindex` that runs the program pinned at
  // pin_dir/tc-program, taken over as it runs. Throws KernelError.
  static std::unique_ptr<TcHook> adopt(const std::filesystem::path& pin_dir, int ifindex);
  ~TcHook();
  void release() { released_ = true; }  // see XdpHook::release
  TcHook(const TcHook&) = delete;
  TcHook& operator=(const TcHook&) = delete;

  // Replaces the filter's program in one netlink request (the filter is
  // never absent). Returns the program it ran.
  std::unique_ptr<KernelProgram> replace(std::unique_ptr<KernelProgram> program);
  const KernelProgram& program() const { return *program_; }
  int ifindex() const { return ifindex_; }

  // Detaches the srl filter on `ifindex` if it runs the program pinned at
  // `pinned_program` (left by a run that was killed). True if it did.
  static bool remove_abandoned(int ifindex, const std::filesystem::path& pinned_program);

 private:
  TcHook() = default;
  std::unique_ptr<KernelProgram> program_;
  int ifindex_ = 0;
  bool created_qdisc_ = false;
  bool released_ = false;
  std::filesystem::path pin_dir_;
};

// Makes sure a bpffs is mounted at `dir` (mounting one if not): `ip netns
// exec` remounts /sys, so the usual /sys/fs/bpf may be missing.
void ensure_bpffs(const std::filesystem::path& dir);

}  // namespace srl::runtime::kernel
