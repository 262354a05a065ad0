// The kernel space: the kernel-placed part of a request runs as ONE
// generated eBPF program per hook (filters inlined, headers parsed once,
// per-node counters in one per-CPU map), compiled with clang, loaded with
// libbpf and attached through a bpf_link that a new program can replace
// atomically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct bpf_object;

#include "srl/compiler/dag.h"
#include "srl/filters/delivery.h"

namespace srl::runtime::kernel {

// Failure of a kernel-space step, with what failed and why.
class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A program the kernel would take, but more than a hook may hold: the
// change does not fit (the caller is told so, not that something broke).
class CapacityError : public KernelError {
 public:
  using KernelError::KernelError;
};

// The verifier's budget: instructions it may process to accept one program
// (the kernel's BPF_COMPLEXITY_LIMIT_INSNS).
inline constexpr std::uint32_t kVerifierBudget = 1'000'000;
// What one generated program holds (the optimizer's model of a kernel space
// says the same: optimizer/src/discovery.cpp):
// - tcpdump expressions: each is a BPF function, and a program has at most
//   256 (BPF_MAX_SUBPROGS) with its main one;
inline constexpr std::size_t kMaxExpressions = 255;
// - edges that leave it for userspace: one bit each in a 32-bit mask;
inline constexpr std::size_t kMaxExits = 32;
// - nodes (of the whole unit: each has counters and scratch slots), so that
//   its per-CPU maps stay within the kernel's 32 KiB per value.
inline constexpr std::size_t kMaxNodes = 1000;
// A small program keeps what it parsed and decided on its stack, in
// registers where the compiler can (the register form), instead of the
// per-CPU scratch map (the map form, docs/kernel.md): one map lookup and a
// load per use fewer on every block, and the fields no node reads are never
// written. The verifier's work then multiplies the parse's paths by the
// nodes', so it is only for programs of at most this many kernel nodes,
// with no tcpdump expression and no `hash`; kernel_test holds the worst of
// them under kRegisterFormVerified instructions, far below the budget.
inline constexpr std::size_t kRegisterFormNodes = 32;
inline constexpr std::uint32_t kRegisterFormVerified = 200'000;

// One node of the program: where its counters are and what it is.
struct NodeSlot {
  std::string id;      // DAG node id
  std::string filter;  // catalog name
  std::optional<std::string> name;
};

// An edge that leaves the kernel for userspace. A block that takes it is a
// copy (sent up through the copy ring; the original goes on with the
// kernel part's verdict) or is taken (it leaves the host's stack: into an
// AF_XDP socket from XDP, or through the copy ring and then dropped from
// TC), by the rule of filters/delivery.h.
struct KernelExit {
  std::uint32_t bit;  // bit in the exit mask
  std::string from;   // kernel node id
  std::string to;     // userspace node id where the block continues
  filters::Delivery delivery = filters::Delivery::copy;
  std::string consumer;       // take: the userspace node that consumes the block
  std::uint32_t snaplen = 0;  // bytes of the block the userspace part needs
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

// The header of every record in a copy ring (a BPF ring buffer), in front
// of the first cap_len bytes of the block.
struct CopyRecord {
  std::uint64_t ts_ns;     // bpf_ktime_get_ns() (CLOCK_MONOTONIC) when copied
  std::uint32_t exits;     // bit i set = continue at exits[i].to
  std::uint32_t wire_len;  // the block's length on the wire
  std::uint32_t cap_len;   // bytes that follow
  std::uint32_t ifindex;   // device it arrived on
  std::uint32_t queue;     // receive queue (XDP; 0 from TC)
  std::uint32_t flags;     // kCopyTaken: the original left the stack
};
inline constexpr std::uint32_t kCopyTaken = 1;
// Not a block: the CPU went back to the start of its area here; the
// reader goes on at the next multiple of the area's size (a restart).
inline constexpr std::uint32_t kCopySkip = 2;

// One CPU's copy area (the generated program's struct srl_area): a
// single-producer ring in an mmap-able array map. The CPU writes records
// (CopyRecord, its bytes, padded to 8) at head and then moves head; the
// reader releases them by moving tail. A record starting before the end of
// the data ends in the slack behind it, so every record is contiguous.
// Three cache lines: the one the CPU publishes, the one the reader
// publishes, and one only the CPU touches, so that a copy reads no line
// the reader writes until the area looks fuller than the wake-up mark.
// The window: while its reader keeps up and copies come slowly, a CPU
// writes only the first window bytes of its area. Past them it goes back
// to the start where the reader has left at most half of what lies behind:
// a kCopySkip record, and the head moves on to the next multiple of the
// area's size. So the lines a copy writes were written a window ago and
// are still in cache (a whole 8 MiB area swept at 1,000 copies a second
// made every copy of a 1500 B frame wait for memory: 2.5 us), while the
// whole area still takes a burst the reader is late for. Fast traffic
// streams through the whole area, where the writes cost no such wait.
struct CopyAreaHeader {
  std::uint64_t head;  // written by the CPU only
  std::uint64_t pad0[7];
  std::uint64_t tail;  // written by the reader only
  std::uint64_t pad1[7];
  std::uint64_t busy;       // the CPU is writing (a nested run counts a loss)
  std::uint64_t next;       // the head as the CPU knows it
  std::uint64_t tail_seen;  // the tail as the CPU last read it
  std::uint64_t gap_end;    // the head just after the last restart
  std::uint64_t gap;        // bytes that restart skipped (no record there)
  std::uint64_t retry;      // the head from which a restart may read the tail again
  std::uint64_t lap_ts;     // when the lap began (ns): the first record, a restart, or
  std::uint64_t lap_head;   // the head where it began (anew every window bytes while fast)
};
static_assert(sizeof(CopyAreaHeader) == 192);
inline constexpr std::uint32_t kCopyAreaSlack = 65536 + 64;  // the largest record fits
inline constexpr std::uint32_t kCopyAreaMax = std::uint32_t{64} << 20;
// A CPU's copy area: a power of two from 4 KiB to kCopyAreaMax.
inline constexpr bool valid_copy_area(std::uint64_t bytes) {
  return bytes >= 4096 && bytes <= kCopyAreaMax && (bytes & (bytes - 1)) == 0;
}
// CPUs the copy channel has areas for (the kernel's possible CPUs).
std::uint32_t copy_cpus();
// Each CPU's area by default: 32 MiB shared among the CPUs, at least 2 MiB
// and at most 8 MiB each (a power of two). One CPU may carry all of a
// device's traffic (a single queue, a veth): 8 MiB holds ~55 ms of 1500 B
// frames at 100 kpps on a small machine, while a large one does not pay
// 8 MiB for each of its many CPUs.
std::uint32_t default_copy_area_bytes();

// The copy channel of a generated program: rings of CPUs (CPU c writes
// into entry c / rings of ring c % rings), so that several readers can
// share the work; each CPU has an area of ring_bytes of its own.
struct CopyChannelOptions {
  std::uint32_t rings = 1;
  std::uint32_t ring_bytes = default_copy_area_bytes();  // per CPU; a power of two, 4 KiB to 64 MiB
  // The part of each area a CPU writes while its reader keeps up and its
  // copies come slower than a window per window_lap_ns (CopyAreaHeader):
  // the copies' working set. The whole area when larger.
  std::uint32_t window_bytes = std::uint32_t{512} << 10;
  std::uint64_t window_lap_ns = 50'000'000;
  // Readers are woken once this many bytes wait in an area (batched
  // wake-ups; at most a quarter of the area), and at a restart; below it
  // they find the records when they next look (the engine looks at least
  // every 10 ms).
  std::uint32_t wake_bytes = std::uint32_t{2} << 20;
};

struct GeneratedProgram {
  std::string source;           // eBPF C
  std::vector<NodeSlot> nodes;  // counter slot i is nodes[i]
  std::vector<KernelExit> exits;
  // Rings of the copy channel (areas "srl_ring0", ..., wake-ups
  // "srl_wake0", ...); 0 when no exit copies or takes through a ring.
  std::uint32_t copy_rings = 0;
  bool afxdp = false;          // takes blocks into AF_XDP sockets (srl_xsks)
  bool register_form = false;  // see kRegisterFormNodes
  // Counter slot nodes.size() counts the copy channel: packets = records
  // written, bytes = bytes copied, accepted = blocks lost (ring full).
  std::size_t slots() const { return nodes.size() + 1; }
};

// Generates the XDP program for every node of `dag` on the hook of device
// `dev` (`ifindex`): blocks enter at the `rx` nodes of that device; `rx`
// nodes of other devices are not reached here. An empty `dev` enters at
// every `rx` (tests). Throws KernelError naming the first filter with no
// kernel implementation (at this hook).
//
// `in_kernel` (one flag per vertex; null: every node) says which nodes the
// program runs. Edges from a kernel node to a userspace node become exits
// (KernelExit). Nodes placed in userspace may not feed kernel nodes: data
// only moves up.
//
// `form`: the register form where the program is small enough for it
// (kRegisterFormNodes), else the map form; or the map form always (tests
// hold both to the same reference).
enum class ProgramForm { automatic, map };
GeneratedProgram generate_xdp(const compiler::RequestDag& dag, int ifindex,
                              const std::string& dev = {},
                              const std::vector<bool>* in_kernel = nullptr,
                              const CopyChannelOptions& copy = {},
                              ProgramForm form = ProgramForm::automatic);

// The same for the TC ingress hook of a device: verdicts become TC actions,
// `tx` a redirect (forward) or a clone (mirror); exits go up through the
// copy ring (a taken block is then dropped).
GeneratedProgram generate_tc(const compiler::RequestDag& dag, int ifindex,
                             const std::string& dev = {},
                             const std::vector<bool>* in_kernel = nullptr,
                             const CopyChannelOptions& copy = {},
                             ProgramForm form = ProgramForm::automatic);

// Compiles eBPF C to an object file with clang, caching objects by a hash
// of the source and the compiler, so unchanged requests load at once. The
// cache keeps the kBpfCacheEntries objects used last (prune_bpf_cache).
std::filesystem::path compile_bpf(const std::string& source,
                                  const std::filesystem::path& cache_dir);

inline constexpr std::size_t kBpfCacheEntries = 256;
// Removes the least recently used objects of `cache_dir` (with their
// sources and verifier logs) beyond `keep`, never `spare` (counted in).
void prune_bpf_cache(const std::filesystem::path& cache_dir, std::size_t keep,
                     const std::filesystem::path& spare = {});

enum class XdpMode { native, generic };
std::string_view to_string(XdpMode m);

struct Counter {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t accepted = 0;
};

// What a program's copy channel did: records written into its rings, the
// bytes copied, and blocks lost because the ring was full (the original
// still went on to its verdict).
struct CopyCounters {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
  std::uint64_t lost = 0;
};

// A generated program (XDP or TC) loaded into the kernel, not attached.
class KernelProgram {
 public:
  static std::unique_ptr<KernelProgram> load(const std::filesystem::path& object,
                                             std::size_t node_count);
  // A program found running (pinned by an earlier process): owns the
  // descriptors (`classes_fd`: its table of counts by class, -1 if none).
  // It has no AF_XDP socket map to fill.
  static std::unique_ptr<KernelProgram> adopt(int prog_fd, int counters_fd, int classes_fd = -1);
  ~KernelProgram();
  KernelProgram(const KernelProgram&) = delete;
  KernelProgram& operator=(const KernelProgram&) = delete;

  int fd() const { return prog_fd_; }
  // Instructions the verifier processed to accept it (of its 1,000,000):
  // how much of its budget the program took; 0 where the kernel does not say.
  std::uint32_t verified_insns() const;
  int counters_fd() const { return counters_fd_; }
  // The table of the count nodes by class (srl_classes); -1 if it has none.
  int classes_fd() const { return classes_fd_; }
  // What it tallied per node slot and class, summed over CPUs, by node and
  // class (count, by=class).
  struct ClassTally {
    std::uint32_t node = 0, cls = 0;
    std::uint64_t blocks = 0, bytes = 0;
  };
  std::vector<ClassTally> class_tallies() const;
  // The AF_XDP socket map of the exits to userspace (srl_xsks).
  int xsks_fd() const;
  // A map of the loaded object by name ("srl_ring0", ...); -1 if it has none.
  int map_fd(const std::string& name) const;
  std::size_t node_count() const { return node_count_; }
  std::uint32_t id() const;
  // Counters per node slot, summed over CPUs.
  std::vector<Counter> counters() const;
  // The copy channel's counters, summed over CPUs.
  CopyCounters copy_counters() const;
  // Runs the program once on `frame` (BPF_PROG_TEST_RUN); returns the XDP
  // action (XDP_DROP, XDP_PASS, ...).
  std::uint32_t test_run(const std::vector<std::uint8_t>& frame, std::uint32_t repeat = 1,
                         std::uint32_t* duration_ns = nullptr) const;

 private:
  KernelProgram() = default;
  std::vector<Counter> all_counters() const;  // the node slots, then the channel's
  struct bpf_object* obj_ = nullptr;
  int prog_fd_ = -1;
  int counters_fd_ = -1;
  int classes_fd_ = -1;
  std::size_t node_count_ = 0;
};

// srl's part of a device's XDP hook. It is a small fixed program, the
// stub, that tail-calls the generated program in slot 0 of its own program
// array (and passes the block on if the slot is empty), so a replace is one
// update of that slot and the hook never empties.
//
// Where the kernel loads BPF extension programs, the stub is one component
// of libxdp's multi-program dispatcher, beside other libxdp users
// (xdp-filter, xdp-loader), in the order of their run priorities: a block
// srl's program passes (XDP_PASS) goes on to the next component, while
// drop, tx and redirect end the chain (srl took the block). Elsewhere the
// stub holds the hook alone through a bpf_link, as a libxdp program would.
// A hook that another program holds outright is refused, naming it
// (xdp_hook_holder).
//
// Pins under pin_dir: `prog-array` (the slot), `counters`, and `stub` (in
// the dispatcher; libxdp pins its own links under BPFFS/xdp) or `link`
// (alone). Destroying the hook removes srl's component (libxdp removes the
// dispatcher with its last component), then the pins.
class XdpHook {
 public:
  // libxdp run priority (lower runs first). xdp-filter runs at 10 and
  // programs without a run configuration at 50: srl runs after them, so it
  // sees what the host's own XDP filters let in and never takes a block
  // (drop, AF_XDP) from under them.
  static constexpr unsigned kDefaultPriority = 100;

  // Attaches `program` to `ifindex`: native mode if the driver supports it,
  // else generic (or exactly `mode` if given); into an existing dispatcher,
  // in the dispatcher's mode. Pins under `pin_dir` when it is not empty;
  // libxdp keeps its pins in the bpffs that holds `pin_dir` unless
  // LIBXDP_BPFFS says otherwise (without pins: $LIBXDP_BPFFS or
  // /sys/fs/bpf, mounted if missing). libxdp keeps the first bpffs it uses
  // for the life of the process. Throws KernelError.
  static std::unique_ptr<XdpHook> attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                         std::optional<XdpMode> mode = std::nullopt,
                                         const std::filesystem::path& pin_dir = {},
                                         unsigned priority = kDefaultPriority);
  // The hook pinned at `pin_dir` by an earlier process (a daemon that
  // stopped or died), taken over as it runs. Throws KernelError.
  static std::unique_ptr<XdpHook> adopt(const std::filesystem::path& pin_dir);
  // Whether `dir` holds the pins of an XDP hook (for adopt()).
  static bool pinned_at(const std::filesystem::path& dir);
  // The id of the srl program that runs on the XDP hook of `ifindex` (in
  // the slot of an srl stub, alone or in the dispatcher); 0 if none.
  static std::uint32_t running_program(int ifindex);
  ~XdpHook();
  // Leaves the program attached and pinned when this object goes (the
  // datapath outlives the process; adopt() finds it again).
  void release() { released_ = true; }
  XdpHook(const XdpHook&) = delete;
  XdpHook& operator=(const XdpHook&) = delete;

  // Puts `program` into srl's slot in one map update: the hook is never
  // empty and other programs on it are untouched. Returns the program it
  // ran (its counters stay readable).
  std::unique_ptr<KernelProgram> replace(std::unique_ptr<KernelProgram> program);

  XdpMode mode() const { return mode_; }
  int ifindex() const { return ifindex_; }
  const KernelProgram& program() const { return *program_; }
  // In libxdp's dispatcher (else alone through a bpf_link), and at what
  // run priority.
  bool shared() const { return shared_; }
  unsigned priority() const { return priority_; }
  // The stub's program id (what `xdp-loader status` lists as srl_hook).
  std::uint32_t stub_id() const;
  // How srl holds the hook, for reports: "in libxdp dispatcher (priority
  // 100)", or "alone through bpf_link 7 (no libxdp dispatcher: why)".
  std::string describe() const;

 private:
  XdpHook() = default;
  void pin();
  void unpin();
  void detach();

  std::unique_ptr<KernelProgram> program_;
  int slot_fd_ = -1;  // the stub's program array
  int stub_fd_ = -1;
  int link_fd_ = -1;  // alone: the stub's bpf_link
  int ifindex_ = 0;
  unsigned priority_ = kDefaultPriority;
  bool shared_ = false;
  bool released_ = false;
  XdpMode mode_ = XdpMode::generic;
  std::string alone_why_;  // why srl holds the hook alone
  std::filesystem::path pin_dir_;
};

// Who holds the XDP hook of `ifindex` so that srl cannot run there: nullopt
// when the hook is empty or holds a libxdp dispatcher srl can join; else
// the reason, naming the holder ("b0's XDP hook is held by program 42
// 'xdp_prog_simple' (native mode, not a libxdp dispatcher)"). Usable before
// anything is deployed.
std::optional<std::string> xdp_hook_holder(int ifindex);

// A BPF link that runs `prog_fd` at the tcx ingress hook of `ifindex`
// (Linux 6.6+), after the programs already there: its fd, or -errno
// (-EINVAL where the kernel has no tcx).
int tcx_ingress_link(int prog_fd, int ifindex);

// How a program is attached at a device's TC ingress (attach_tc_ingress).
struct TcIngress {
  int link_fd = -1;            // a tcx link, or else
  bool created_qdisc = false;  // a cls_bpf filter; whether clsact was made for it
  std::uint32_t priority = 0;  // and the filter's priority
};
// Attaches `prog_fd` at the TC ingress of `ifindex`: a tcx link after what
// runs there where the kernel has tcx, else a direct-action cls_bpf filter
// at TcHook's handle and the first free priority of srl's
// (TcHook::kPriority to kPriority + kPriorities - 1) on the clsact qdisc
// (added if absent), so that srl programs share the hook there as they do
// through tcx (each hands on what it does not drop or take).
// SRL_TC_ATTACH=clsact in the environment takes the second way on any
// kernel: how kernels before 6.6 (Debian 12's own) attach, testable on
// newer ones. Throws KernelError; on a throw nothing is left attached.
TcIngress attach_tc_ingress(int prog_fd, int ifindex);
// Undoes attach_tc_ingress: detaches the link, or removes the filter and a
// clsact qdisc made for it unless another srl filter is still on it (that
// qdisc then stays when the last of them goes: it does not know who made it).
void detach_tc_ingress(const TcIngress& attached, int ifindex);

// A program attached to a device's TC ingress hook. Where the kernel has
// tcx, a BPF link at the tcx ingress hook: no qdisc, no classifier layer in
// front of the program, and other tcx programs and tc filters run beside
// it (an observing verdict hands the packet on to them). Elsewhere a
// cls_bpf filter in direct-action mode on the clsact qdisc, at srl's own
// handle and a priority of srl's. The program is pinned, and the link with
// it, so
// that a later run can tell an abandoned srl hook (same program id) from
// anything else. Destroying it detaches the link or the filter, removes a
// clsact qdisc it created, and unpins.
class TcHook {
 public:
  static constexpr std::uint32_t kHandle = 0x5352;  // "SR"
  static constexpr std::uint32_t kPriority = 0x5352;
  static constexpr std::uint32_t kPriorities = 64;  // srl programs on one clsact hook

  static std::unique_ptr<TcHook> attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                        const std::filesystem::path& pin_dir = {});
  // The srl filter on `ifindex` that runs the program pinned at
  // pin_dir/tc-program, taken over as it runs. Throws KernelError.
  static std::unique_ptr<TcHook> adopt(const std::filesystem::path& pin_dir, int ifindex);
  ~TcHook();
  void release() { released_ = true; }  // see XdpHook::release
  TcHook(const TcHook&) = delete;
  TcHook& operator=(const TcHook&) = delete;

  // Replaces the program in one step (bpf_link_update, or one netlink
  // request for a filter): the hook never runs without it. Returns the
  // program it ran.
  std::unique_ptr<KernelProgram> replace(std::unique_ptr<KernelProgram> program);
  const KernelProgram& program() const { return *program_; }
  int ifindex() const { return ifindex_; }
  bool tcx() const { return link_fd_ >= 0; }  // a tcx link, not a cls_bpf filter

  // Detaches the srl link or filter on `ifindex` if it runs the program
  // pinned at `pinned_program` (left by a run that was killed). True if it
  // did.
  static bool remove_abandoned(int ifindex, const std::filesystem::path& pinned_program);

 private:
  TcHook() = default;
  std::unique_ptr<KernelProgram> program_;
  int ifindex_ = 0;
  int link_fd_ = -1;
  bool created_qdisc_ = false;
  std::uint32_t priority_ = 0;  // the cls_bpf filter's
  bool released_ = false;
  std::filesystem::path pin_dir_;
};

// Makes sure a bpffs is mounted at `dir` (mounting one if not): `ip netns
// exec` remounts /sys, so the usual /sys/fs/bpf may be missing.
void ensure_bpffs(const std::filesystem::path& dir);

// Where pins that must outlive the process go, given the bpffs directory
// asked for. A bpffs this process mounts itself lasts as long as its mount
// namespace; under `ip netns exec` that is a private one, gone with the
// process, and with it every pin, link and drop. So: the directory asked
// for when it is a bpffs; else, from a private mount namespace, the same
// path in the initial namespace (through /proc/1/root) when that is a
// bpffs; else the directory asked for (mounted later) with a warning.
struct BpffsChoice {
  std::filesystem::path dir;
  std::string warning;  // empty: pins outlive the process
};
struct BpffsProbe {  // what the choice looks at (the machine's by default)
  std::function<bool(const std::filesystem::path&)> is_bpffs;
  std::optional<std::string> own_mount_ns, initial_mount_ns;  // unknown: nullopt
  std::filesystem::path initial_root = "/proc/1/root";
};
BpffsProbe machine_bpffs_probe();
BpffsChoice choose_bpffs(const std::filesystem::path& wanted,
                         const BpffsProbe& probe = machine_bpffs_probe());

}  // namespace srl::runtime::kernel
