// XdpHook: srl's part of a device's XDP hook (kernel.h). A fixed stub
// program tail-calls the generated program in slot 0 of its own program
// array; the stub joins libxdp's multi-program dispatcher where the kernel
// loads extension programs, and holds the hook alone through a bpf_link
// elsewhere. The generated program is the one KernelProgram::load loaded,
// unchanged; replacing it is one update of the slot.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <utility>

#include "owned_fd.h"
#include "srl/runtime/kernel.h"

namespace srl::runtime::kernel {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStubName = "srl_hook";              // as the kernel and libxdp list it
constexpr const char* kDispatcherName = "xdp_dispatcher";  // libxdp's
constexpr const char* kNoExtension =
    "this kernel refuses BPF extension programs (freplace), which libxdp's dispatcher needs";

// The stub. Compiled once per process with compile_bpf; libxdp loads it as
// an extension of one of the dispatcher's slots, or libbpf as a plain XDP
// program.
constexpr const char* kStubSource =
    R"(/* srl's stub on an XDP hook: runs the generated program in slot 0 of
 * srl_slot, and passes the block on while the slot is empty. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, 1);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, sizeof(__u32));
} srl_slot SEC(".maps");

SEC("xdp")
int srl_hook(struct xdp_md *ctx) {
  bpf_tail_call(ctx, &srl_slot, 0);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
)";

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

std::string device_name(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (ifindex > 0 && if_indextoname(static_cast<unsigned>(ifindex), name) != nullptr) return name;
  return "ifindex " + std::to_string(ifindex);
}

using Fd = OwnedFd;

// libbpf and libxdp print warnings to stderr; while a Capture lives on this
// thread, they are kept for the error messages instead.
thread_local std::string* t_log = nullptr;
libxdp_print_fn_t g_libxdp_print = nullptr;  // libxdp's own, for the rest of the process

__attribute__((format(printf, 1, 0))) void append(const char* fmt, va_list args) {
  char buf[1024];
  const int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0) t_log->append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

__attribute__((format(printf, 2, 0))) int keep_libbpf(enum libbpf_print_level level,
                                                      const char* fmt, va_list args) {
  if (level != LIBBPF_DEBUG && t_log != nullptr) append(fmt, args);
  return 0;
}

__attribute__((format(printf, 2, 0))) int keep_libxdp(enum libxdp_print_level level,
                                                      const char* fmt, va_list args) {
  if (t_log == nullptr) return g_libxdp_print != nullptr ? g_libxdp_print(level, fmt, args) : 0;
  if (level != LIBXDP_DEBUG) append(fmt, args);
  return 0;
}

class Capture {
 public:
  Capture() : saved_(t_log), libbpf_(libbpf_set_print(keep_libbpf)) {
    static std::once_flag once;
    std::call_once(once, [] { g_libxdp_print = libxdp_set_print(keep_libxdp); });
    t_log = &text_;
  }
  ~Capture() {
    t_log = saved_;
    libbpf_set_print(libbpf_);
  }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  // What the libraries said, on one line each, after ": "; empty if nothing.
  std::string said() const {
    std::string out;
    std::size_t start = 0;
    for (int lines = 0; start < text_.size() && lines < 12; ++lines) {
      std::size_t end = text_.find('\n', start);
      if (end == std::string::npos) end = text_.size();
      std::string line = text_.substr(start, end - start);
      line.erase(0, line.find_first_not_of(' '));
      if (line.rfind("libxdp: ", 0) == 0) line.erase(0, 8);
      if (line.rfind("libbpf: ", 0) == 0) line.erase(0, 8);
      if (!line.empty()) out += "\n  " + line;
      start = end + 1;
    }
    return out;
  }

 private:
  std::string text_;
  std::string* saved_;
  libbpf_print_fn_t libbpf_;
};

struct ProgInfo {
  std::uint32_t id = 0;
  std::string name;
  std::vector<std::uint32_t> map_ids;
};

std::optional<ProgInfo> prog_info(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return std::nullopt;
  ProgInfo r;
  r.id = info.id;
  r.name.assign(info.name, strnlen(info.name, sizeof info.name));
  if (info.nr_map_ids > 0) {
    r.map_ids.resize(info.nr_map_ids);
    bpf_prog_info again{};
    again.nr_map_ids = info.nr_map_ids;
    again.map_ids = reinterpret_cast<std::uintptr_t>(r.map_ids.data());
    len = sizeof again;
    if (bpf_obj_get_info_by_fd(fd, &again, &len) != 0) again.nr_map_ids = 0;
    r.map_ids.resize(std::min<std::size_t>(again.nr_map_ids, r.map_ids.size()));
  }
  return r;
}

std::string prog_name(std::uint32_t id) {
  Fd fd(bpf_prog_get_fd_by_id(id));
  const auto info = fd ? prog_info(fd.get()) : std::nullopt;
  return info ? info->name : std::string();
}

// The program in slot 0 of a program array; 0 if the slot is empty.
std::uint32_t slot_program(int slot_fd) {
  std::uint32_t key = 0, id = 0;
  return bpf_map_lookup_elem(slot_fd, &key, &id) == 0 ? id : 0;
}

// The program in the slot of the stub `stub_fd`; 0 if the slot is empty.
// (Opening the array by id takes a user reference and gives it back: an
// array that had none was emptied when it lost its last one, and still is.)
std::uint32_t stub_slot_program(int stub_fd) {
  const auto info = prog_info(stub_fd);
  if (!info) return 0;
  for (const std::uint32_t map_id : info->map_ids) {
    Fd map(bpf_map_get_fd_by_id(map_id));
    if (!map) continue;
    bpf_map_info mi{};
    std::uint32_t len = sizeof mi;
    if (bpf_obj_get_info_by_fd(map.get(), &mi, &len) == 0 && mi.type == BPF_MAP_TYPE_PROG_ARRAY)
      return slot_program(map.get());
  }
  return 0;
}

void put_in_slot(int slot_fd, const KernelProgram& program, const std::string& dev) {
  std::uint32_t key = 0;
  const int fd = program.fd();
  if (bpf_map_update_elem(slot_fd, &key, &fd, BPF_ANY) != 0)
    throw KernelError("cannot put the program into srl's slot on " + dev + ": " +
                      errno_text(errno));
}

// What is attached to a device's XDP hook in the driver or in generic mode
// (a program offloaded to the NIC does not take the hook).
struct Attached {
  std::uint32_t id = 0;
  XdpMode mode = XdpMode::generic;
};

Attached attached(int ifindex) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (const int err = bpf_xdp_query(ifindex, 0, &q); err != 0)
    throw KernelError("cannot query the XDP hook of " + device_name(ifindex) + ": " +
                      errno_text(err));
  Attached a;
  if (q.drv_prog_id != 0) {
    a.id = q.drv_prog_id;
    a.mode = XdpMode::native;
  } else if (q.skb_prog_id != 0) {
    a.id = q.skb_prog_id;
  }
  return a;
}

// Every extension (freplace) link there is: program and target.
std::vector<bpf_link_info> tracing_links() {
  std::vector<bpf_link_info> out;
  for (std::uint32_t id = 0; bpf_link_get_next_id(id, &id) == 0;) {
    Fd fd(bpf_link_get_fd_by_id(id));
    if (!fd) continue;
    bpf_link_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 && info.type == BPF_LINK_TYPE_TRACING)
      out.push_back(info);
  }
  return out;
}

// Programs attached as extensions (freplace) of the dispatcher `id`.
std::vector<std::uint32_t> components(std::uint32_t dispatcher_id) {
  std::vector<std::uint32_t> out;
  for (const auto& info : tracing_links())
    if (info.tracing.target_obj_id == dispatcher_id) out.push_back(info.prog_id);
  return out;
}

// The dispatcher whose component `stub_id` is, and the device it is
// attached to (in this network namespace).
std::optional<std::pair<int, Attached>> dispatcher_of(std::uint32_t stub_id) {
  std::vector<std::uint32_t> targets;
  for (const auto& info : tracing_links())
    if (info.prog_id == stub_id) targets.push_back(info.tracing.target_obj_id);
  if (targets.empty()) return std::nullopt;
  struct if_nameindex* names = if_nameindex();
  if (names == nullptr) return std::nullopt;
  std::optional<std::pair<int, Attached>> found;
  for (const struct if_nameindex* n = names; n->if_index != 0 && !found; ++n) {
    const int ifindex = static_cast<int>(n->if_index);
    try {
      const Attached a = attached(ifindex);
      if (a.id != 0 && std::find(targets.begin(), targets.end(), a.id) != targets.end())
        found.emplace(ifindex, a);
    } catch (const KernelError&) {
    }
  }
  if_freenameindex(names);
  return found;
}

bool is_bpffs(const fs::path& p) {
  struct statfs st {};
  return statfs(p.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

// The root of the bpffs mount that holds `p` (or will, once made).
std::optional<fs::path> bpffs_root(fs::path p) {
  std::error_code ec;
  p = fs::absolute(p, ec).lexically_normal();
  while (!fs::exists(p, ec) && p != p.parent_path())
    p = p.parent_path();
  struct stat st {};
  if (!is_bpffs(p) || stat(p.c_str(), &st) != 0) return std::nullopt;
  for (struct stat up{}; p != p.parent_path(); p = p.parent_path())
    if (stat(p.parent_path().c_str(), &up) != 0 || up.st_dev != st.st_dev) break;
  return p;
}

// The bpffs libxdp keeps its dispatchers' pins in (under xdp/): where
// LIBXDP_BPFFS says, else the one holding srl's pins, else /sys/fs/bpf
// (mounted if missing, as `srl run` does). libxdp reads LIBXDP_BPFFS once
// it first needs a bpffs and keeps that one for the life of the process;
// other libxdp users (xdp-loader, xdp-filter) see srl's component only if
// they use the same bpffs.
fs::path libxdp_bpffs(const fs::path& pin_dir) {
  static std::mutex m;
  std::lock_guard lock(m);
  if (const char* env = std::getenv("LIBXDP_BPFFS"); env != nullptr && *env != '\0') {
    if (!is_bpffs(env))
      throw KernelError(std::string("LIBXDP_BPFFS=") + env +
                        " is not a mounted bpffs (libxdp keeps its dispatchers' pins there)");
    return env;
  }
  fs::path root = "/sys/fs/bpf";
  if (!pin_dir.empty())
    if (auto r = bpffs_root(pin_dir)) root = *r;
  ensure_bpffs(root);
  setenv("LIBXDP_BPFFS", root.c_str(), 1);
  return root;
}

bool kernel_loads_extension_programs() {
  static const bool yes = [] {
    const libbpf_print_fn_t old = libbpf_set_print(nullptr);  // the probe fails on purpose
    const bool r = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_EXT, nullptr) == 1;
    libbpf_set_print(old);
    return r;
  }();
  return yes;
}

// Whether the program `prog_fd` can be tail-called from a program array
// that a program loaded with `expected` as its expected attach type uses:
// the kernel compares the program type, JIT, frags and (Linux 6.18, and
// stable kernels since late 2025) the expected attach type. An extension
// program has none (0), so it can tail-call only programs loaded with none.
bool tail_callable_from(int prog_fd, bpf_attach_type expected) {
  bpf_insn pass[2] = {};
  pass[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  pass[0].dst_reg = BPF_REG_0;
  pass[0].imm = XDP_PASS;
  pass[1].code = BPF_JMP | BPF_EXIT;
  bpf_prog_load_opts o{};
  o.sz = sizeof o;
  o.expected_attach_type = expected;
  Fd owner(bpf_prog_load(BPF_PROG_TYPE_XDP, "srl_probe", "GPL", pass, 2, &o));
  Fd slot(bpf_map_create(BPF_MAP_TYPE_PROG_ARRAY, "srl_probe", 4, 4, 1, nullptr));
  if (!owner || !slot) return false;
  std::uint32_t key = 0;
  int fd = owner.get();
  if (bpf_map_update_elem(slot.get(), &key, &fd, BPF_ANY) != 0) return false;
  fd = prog_fd;
  return bpf_map_update_elem(slot.get(), &key, &fd, BPF_ANY) == 0;
}

constexpr auto kNoAttachType = static_cast<bpf_attach_type>(0);

// Why srl's stub cannot join a libxdp dispatcher with `program` in its
// slot; nullopt if it can.
std::optional<std::string> cannot_share(const KernelProgram& program) {
  if (!kernel_loads_extension_programs()) return std::string(kNoExtension);
  if (!tail_callable_from(program.fd(), kNoAttachType))
    return std::string(
        "the generated program was loaded with an expected attach type, and this kernel lets an "
        "extension program tail-call only programs loaded without one");
  return std::nullopt;
}

// Who holds the hook so that srl cannot run there; nullopt if srl can join.
std::optional<std::string> holder(int ifindex, const std::optional<std::string>& no_sharing) {
  const std::string dev = device_name(ifindex);
  const Attached a = attached(ifindex);
  if (a.id == 0) return std::nullopt;
  const std::string id = std::to_string(a.id), mode = std::string(to_string(a.mode)) + " mode";
  Fd fd(bpf_prog_get_fd_by_id(a.id));
  if (!fd)
    return dev + "'s XDP hook is held by program " + id + " (" + mode +
           "; cannot inspect it: " + errno_text(errno) + ")";
  const auto info = prog_info(fd.get());
  const std::string name = info ? info->name : std::string("?");
  const std::string who = "program " + id + " '" + name + "'";
  if (name != kDispatcherName)
    return dev + "'s XDP hook is held by " + who + " (" + mode + ", " +
           (name == kStubName ? "srl's hook of another process" : "not a libxdp dispatcher") + ")";
  if (no_sharing)
    return dev + "'s XDP hook holds libxdp's dispatcher (" + who + ", " + mode +
           "), which srl cannot join: " + *no_sharing;
  fs::path bpffs;
  try {
    bpffs = libxdp_bpffs({});
  } catch (const KernelError& e) {
    return dev + "'s XDP hook holds libxdp's dispatcher (" + who + ", " + mode + "): " + e.what();
  }
  // libxdp finds a dispatcher's components through its pins.
  Capture log;
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex);
  if (mp == nullptr || libxdp_get_error(mp) != 0)
    return dev + "'s XDP hook holds libxdp's dispatcher (" + who + ", " + mode +
           "), which libxdp cannot read: " +
           errno_text(mp == nullptr ? errno : static_cast<int>(libxdp_get_error(mp))) + log.said();
  const bool legacy = xdp_multiprog__is_legacy(mp);
  xdp_multiprog__close(mp);
  if (legacy)
    return dev + "'s XDP hook holds libxdp's dispatcher (" + who + ", " + mode +
           ") whose pins are not under " + (bpffs / "xdp").string() +
           " (LIBXDP_BPFFS must name the bpffs of the libxdp user that loaded it)";
  return std::nullopt;
}

// The stub, opened (not loaded), its program array bound to `slot_fd`.
struct Stub {
  bpf_object* obj = nullptr;
  bpf_program* prog = nullptr;
  Stub() = default;
  Stub(const Stub&) = delete;
  Stub& operator=(const Stub&) = delete;
  ~Stub() {
    if (obj != nullptr) bpf_object__close(obj);
  }
};

const std::string& stub_object() {
  static std::mutex m;
  static std::string bytes;
  std::lock_guard lock(m);
  if (!bytes.empty()) return bytes;
  // A private directory: an object in a shared cache could be anyone's.
  std::string dir = (fs::temp_directory_path() / "srl-stub-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr)
    throw KernelError("cannot make a directory to compile srl's XDP stub: " + errno_text(errno));
  std::error_code ec;
  try {
    std::ifstream in(compile_bpf(kStubSource, dir), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (...) {
    fs::remove_all(dir, ec);
    throw;
  }
  fs::remove_all(dir, ec);
  if (bytes.empty()) throw KernelError("cannot read srl's compiled XDP stub");
  return bytes;
}

std::unique_ptr<Stub> open_stub(int slot_fd) {
  const std::string& bytes = stub_object();
  auto s = std::make_unique<Stub>();
  bpf_object_open_opts o{};
  o.sz = sizeof o;
  o.object_name = "srl_stub";
  s->obj = bpf_object__open_mem(bytes.data(), bytes.size(), &o);
  if (s->obj == nullptr) throw KernelError("cannot open srl's XDP stub: " + errno_text(errno));
  s->prog = bpf_object__find_program_by_name(s->obj, kStubName);
  bpf_map* slot = bpf_object__find_map_by_name(s->obj, "srl_slot");
  if (s->prog == nullptr || slot == nullptr) throw KernelError("srl's XDP stub is incomplete");
  if (const int err = bpf_map__reuse_fd(slot, slot_fd); err != 0)
    throw KernelError("cannot give srl's XDP stub its slot: " + errno_text(err));
  return s;
}

struct Attachment {
  Fd stub;
  Fd link;  // alone
  XdpMode mode = XdpMode::generic;
};

int dup_fd(int fd) {
  const int out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (out < 0) throw KernelError("cannot duplicate a descriptor: " + errno_text(errno));
  return out;
}

// The stub as a plain XDP program on the hook, through a bpf_link.
Attachment attach_alone(int ifindex, const std::string& dev, int slot_fd, int prog_fd,
                        std::optional<XdpMode> mode) {
  // The stub must be loaded as the program in its slot was, or the kernel
  // refuses the tail call.
  std::optional<bpf_attach_type> type;
  for (const bpf_attach_type t : {BPF_XDP, kNoAttachType})
    if (!type && tail_callable_from(prog_fd, t)) type = t;
  if (!type)
    throw KernelError(
        "srl's XDP stub cannot tail-call the generated program (the kernel refuses "
        "it in a program array of XDP programs)");
  Capture log;
  auto stub = open_stub(slot_fd);
  bpf_program__set_type(stub->prog, BPF_PROG_TYPE_XDP);
  bpf_program__set_expected_attach_type(stub->prog, *type);
  if (const int err = bpf_object__load(stub->obj); err != 0)
    throw KernelError("the kernel refused srl's XDP stub (" + errno_text(err) + "):" + log.said());
  Attachment a;
  a.stub = Fd(dup_fd(bpf_program__fd(stub->prog)));
  std::string errors;
  for (const XdpMode m : {XdpMode::native, XdpMode::generic}) {
    if (mode && *mode != m) continue;
    bpf_link_create_opts opts{};
    opts.sz = sizeof opts;
    opts.flags = m == XdpMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    const int fd = bpf_link_create(a.stub.get(), ifindex, BPF_XDP, &opts);
    if (fd >= 0) {
      a.link = Fd(fd);
      a.mode = m;
      return a;
    }
    errors += std::string(errors.empty() ? "" : "; ") + std::string(to_string(m)) + ": " +
              errno_text(errno);
  }
  throw KernelError("cannot attach XDP to " + dev + " (" + errors + ")");
}

xdp_attach_mode libxdp_mode(XdpMode m) {
  return m == XdpMode::native ? XDP_MODE_NATIVE : XDP_MODE_SKB;
}

// Whether `stub_id` is a component of the dispatcher on `ifindex`.
bool in_dispatcher(int ifindex, std::uint32_t stub_id) {
  const Attached a = attached(ifindex);
  if (a.id == 0 || prog_name(a.id) != kDispatcherName) return false;
  const auto c = components(a.id);
  return std::find(c.begin(), c.end(), stub_id) != c.end();
}

// Removes srl stubs from the dispatcher on `ifindex` whose slot is empty:
// left by a process that died after its pins were removed (they pass every
// block on, and nobody can fill their slot again).
void remove_orphans(int ifindex) {
  const Attached a = attached(ifindex);
  if (a.id == 0 || prog_name(a.id) != kDispatcherName) return;
  for (const std::uint32_t id : components(a.id)) {
    Fd fd(bpf_prog_get_fd_by_id(id));
    const auto info = fd ? prog_info(fd.get()) : std::nullopt;
    if (!info || info->name != kStubName || stub_slot_program(fd.get()) != 0) continue;
    xdp_program* p = xdp_program__from_id(id);
    if (p == nullptr || libxdp_get_error(p) != 0) continue;
    xdp_program__detach(p, ifindex, XDP_MODE_UNSPEC, 0);
    xdp_program__close(p);
  }
}

// The stub as a component of libxdp's dispatcher (made if the hook is
// empty, else rebuilt by libxdp with the stub added and swapped in).
Attachment attach_shared(int ifindex, const std::string& dev, int slot_fd,
                         std::optional<XdpMode> mode, unsigned priority) {
  Capture log;
  remove_orphans(ifindex);
  std::vector<XdpMode> modes;
  if (const Attached now = attached(ifindex); now.id != 0) {
    if (mode && *mode != now.mode)
      throw KernelError(dev + "'s libxdp dispatcher runs in " + std::string(to_string(now.mode)) +
                        " mode; srl was asked for " + std::string(to_string(*mode)));
    modes = {now.mode};
  } else if (mode) {
    modes = {*mode};
  } else {
    modes = {XdpMode::native, XdpMode::generic};
  }
  auto stub = open_stub(slot_fd);
  xdp_program_opts o{};
  o.sz = sizeof o;
  o.obj = stub->obj;
  o.prog_name = kStubName;
  xdp_program* xp = xdp_program__create(&o);
  if (xp == nullptr || libxdp_get_error(xp) != 0)
    throw KernelError("libxdp cannot take srl's XDP stub: " + errno_text(errno) + log.said());
  // Closed before the object it came from.
  const std::unique_ptr<xdp_program, void (*)(xdp_program*)> guard(xp, xdp_program__close);
  // XDP_PASS goes on to the next program: a block srl passes is the
  // stack's, and the programs after srl must see it as if srl were not
  // there. Drop, tx and redirect end the chain: srl took the block.
  xdp_program__set_run_prio(xp, priority);
  for (const xdp_action act : {XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT})
    xdp_program__set_chain_call_enabled(xp, act, act == XDP_PASS);
  std::string errors;
  for (const XdpMode m : modes) {
    const int err = xdp_program__attach(xp, ifindex, libxdp_mode(m), 0);
    if (err != 0) {
      errors += std::string(errors.empty() ? "" : "; ") + std::string(to_string(m)) + ": " +
                errno_text(err);
      continue;
    }
    Attachment a;
    a.stub = Fd(dup_fd(xdp_program__fd(xp)));
    a.mode = m;
    // libxdp falls back to attaching a lone program when it cannot build a
    // dispatcher; srl holds a hook alone only through its own bpf_link.
    if (!in_dispatcher(ifindex, xdp_program__id(xp))) {
      xdp_program__detach(xp, ifindex, XDP_MODE_UNSPEC, 0);
      throw KernelError("libxdp attached srl's stub to " + dev + " without a dispatcher" +
                        log.said());
    }
    return a;
  }
  throw KernelError("cannot attach XDP to " + dev + " through libxdp's dispatcher (" + errors +
                    ")" + log.said());
}

constexpr const char* kPins[] = {"prog-array", "counters", "classes", "stub", "link"};

// The running program's tables: its counters, and its counts by class
// when it has any (none: an older pin of them goes).
void pin_tables(const KernelProgram& program, const fs::path& dir) {
  std::error_code ec;
  fs::remove(dir / "counters", ec);
  if (bpf_obj_pin(program.counters_fd(), (dir / "counters").c_str()) != 0)
    throw KernelError("cannot pin " + (dir / "counters").string() + ": " + errno_text(errno));
  fs::remove(dir / "classes", ec);
  if (program.classes_fd() >= 0 &&
      bpf_obj_pin(program.classes_fd(), (dir / "classes").c_str()) != 0)
    throw KernelError("cannot pin " + (dir / "classes").string() + ": " + errno_text(errno));
}

}  // namespace

std::unique_ptr<XdpHook> XdpHook::attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                         std::optional<XdpMode> mode,
                                         const std::filesystem::path& pin_dir, unsigned priority) {
  char name[IF_NAMESIZE] = {};
  if (ifindex <= 0 || if_indextoname(static_cast<unsigned>(ifindex), name) == nullptr)
    throw KernelError("cannot attach XDP to ifindex " + std::to_string(ifindex) +
                      ": no such device");
  const std::string dev = name;
  std::unique_ptr<XdpHook> hook(new XdpHook());
  hook->ifindex_ = ifindex;
  hook->priority_ = priority;
  hook->program_ = std::move(program);
  const auto no_sharing = cannot_share(*hook->program_);
  if (!no_sharing) libxdp_bpffs(pin_dir);
  if (auto h = holder(ifindex, no_sharing)) throw KernelError(*h);
  // The slot is filled before anything runs the stub.
  hook->slot_fd_ = bpf_map_create(BPF_MAP_TYPE_PROG_ARRAY, "srl_slot", 4, 4, 1, nullptr);
  if (hook->slot_fd_ < 0)
    throw KernelError("cannot make srl's program slot for " + dev + ": " + errno_text(errno));
  put_in_slot(hook->slot_fd_, *hook->program_, dev);
  Attachment a = no_sharing ? attach_alone(ifindex, dev, hook->slot_fd_, hook->program_->fd(), mode)
                            : attach_shared(ifindex, dev, hook->slot_fd_, mode, priority);
  hook->stub_fd_ = a.stub.release();
  hook->link_fd_ = a.link.release();
  hook->mode_ = a.mode;
  hook->shared_ = !no_sharing;
  hook->alone_why_ = no_sharing.value_or("");
  if (!pin_dir.empty()) {
    hook->pin_dir_ = pin_dir;
    hook->pin();
  }
  return hook;
}

std::unique_ptr<XdpHook> XdpHook::adopt(const std::filesystem::path& pin_dir) {
  const auto slot = pin_dir / "prog-array", counters = pin_dir / "counters",
             link = pin_dir / "link", stub = pin_dir / "stub";
  // A hook that cannot be taken over is removed: its destructor detaches
  // what was found and unpins.
  std::unique_ptr<XdpHook> hook(new XdpHook());
  hook->pin_dir_ = pin_dir;
  hook->slot_fd_ = bpf_obj_get(slot.c_str());
  if (hook->slot_fd_ < 0)
    throw KernelError("cannot open the pinned slot " + slot.string() + ": " + errno_text(errno));
  std::error_code ec;
  if (fs::exists(link, ec)) {
    hook->link_fd_ = bpf_obj_get(link.c_str());
    if (hook->link_fd_ < 0)
      throw KernelError("cannot open the pinned link " + link.string() + ": " + errno_text(errno));
    bpf_link_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(hook->link_fd_, &info, &len) != 0 || info.type != BPF_LINK_TYPE_XDP)
      throw KernelError(link.string() + " is not an XDP link");
    hook->ifindex_ = static_cast<int>(info.xdp.ifindex);
    hook->stub_fd_ = bpf_prog_get_fd_by_id(info.prog_id);
    if (const Attached a = attached(hook->ifindex_); a.id == info.prog_id) hook->mode_ = a.mode;
  } else {
    hook->shared_ = true;
    hook->stub_fd_ = bpf_obj_get(stub.c_str());
    if (hook->stub_fd_ < 0)
      throw KernelError("cannot open the pinned stub " + stub.string() + ": " + errno_text(errno));
    libxdp_bpffs(pin_dir);
    const std::uint32_t id = hook->stub_id();
    const auto where = dispatcher_of(id);
    if (!where)
      throw KernelError("srl's stub (program " + std::to_string(id) + ") pinned at " +
                        pin_dir.string() + " is in no libxdp dispatcher on this host's devices");
    hook->ifindex_ = where->first;
    hook->mode_ = where->second.mode;
    if (xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(hook->ifindex_);
        mp != nullptr && libxdp_get_error(mp) == 0) {
      for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p != nullptr;
           p = xdp_multiprog__next_prog(p, mp))
        if (xdp_program__id(p) == id) hook->priority_ = xdp_program__run_prio(p);
      xdp_multiprog__close(mp);
    }
  }
  const std::uint32_t running = slot_program(hook->slot_fd_);
  if (running == 0) throw KernelError("srl's slot pinned at " + slot.string() + " is empty");
  const int prog_fd = bpf_prog_get_fd_by_id(running);
  const int counters_fd = bpf_obj_get(counters.c_str());
  if (prog_fd < 0 || counters_fd < 0) {
    if (prog_fd >= 0) close(prog_fd);
    if (counters_fd >= 0) close(counters_fd);
    throw KernelError("cannot open the program or the counters pinned at " + pin_dir.string());
  }
  // Counts by class where the program has them (an older pin has none).
  const int classes_fd = bpf_obj_get((pin_dir / "classes").c_str());
  hook->program_ = KernelProgram::adopt(prog_fd, counters_fd, classes_fd);
  if (!hook->shared_) hook->alone_why_ = cannot_share(*hook->program_).value_or("");
  return hook;
}

bool XdpHook::pinned_at(const std::filesystem::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "prog-array", ec);
}

std::uint32_t XdpHook::running_program(int ifindex) {
  Attached a;
  try {
    a = attached(ifindex);
  } catch (const KernelError&) {
    return 0;
  }
  if (a.id == 0) return 0;
  std::vector<std::uint32_t> stubs = {a.id};
  if (prog_name(a.id) == kDispatcherName) stubs = components(a.id);
  for (const std::uint32_t id : stubs) {
    Fd fd(bpf_prog_get_fd_by_id(id));
    const auto info = fd ? prog_info(fd.get()) : std::nullopt;
    if (!info || info->name != kStubName) continue;
    if (const std::uint32_t running = stub_slot_program(fd.get()); running != 0) return running;
  }
  return 0;
}

void XdpHook::pin() {
  fs::create_directories(pin_dir_);
  auto pin_one = [&](int fd, const char* name) {
    const auto path = pin_dir_ / name;
    std::error_code ec;
    fs::remove(path, ec);
    if (bpf_obj_pin(fd, path.c_str()) != 0)
      throw KernelError("cannot pin " + path.string() + ": " + errno_text(errno));
  };
  pin_one(slot_fd_, "prog-array");
  pin_tables(*program_, pin_dir_);
  if (shared_)
    pin_one(stub_fd_, "stub");
  else
    pin_one(link_fd_, "link");
}

void XdpHook::unpin() {
  if (pin_dir_.empty()) return;
  std::error_code ec;
  for (const char* name : kPins)
    fs::remove(pin_dir_ / name, ec);
  fs::remove(pin_dir_, ec);
}

void XdpHook::detach() {
  if (link_fd_ >= 0) {
    bpf_link_detach(link_fd_);
    return;
  }
  if (!shared_ || stub_fd_ < 0 || ifindex_ <= 0) return;
  Capture log;  // a destructor has nobody to tell
  xdp_program* p = xdp_program__from_fd(stub_fd_);
  if (p == nullptr || libxdp_get_error(p) != 0) return;
  xdp_program__detach(p, ifindex_, XDP_MODE_UNSPEC, 0);
  xdp_program__close(p);
}

std::unique_ptr<KernelProgram> XdpHook::replace(std::unique_ptr<KernelProgram> program) {
  put_in_slot(slot_fd_, *program, device_name(ifindex_));
  std::swap(program_, program);
  // The pinned counters follow the running program; the swap itself is done
  // and stays done even if re-pinning fails (the pin is informative).
  if (!pin_dir_.empty()) {
    try {
      pin_tables(*program_, pin_dir_);
    } catch (const KernelError&) {
    }
  }
  return program;
}

XdpHook::~XdpHook() {
  if (!released_) {
    // The stub goes first, so it never runs with an empty slot; unpinning
    // then drops the last reference to the slot.
    detach();
    unpin();
  }
  for (const int fd : {link_fd_, stub_fd_, slot_fd_})
    if (fd >= 0) close(fd);
}

std::uint32_t XdpHook::stub_id() const {
  const auto info = stub_fd_ >= 0 ? prog_info(stub_fd_) : std::nullopt;
  return info ? info->id : 0;
}

std::string XdpHook::describe() const {
  if (shared_) return "in libxdp dispatcher (priority " + std::to_string(priority_) + ")";
  bpf_link_info info{};
  std::uint32_t len = sizeof info;
  if (link_fd_ < 0 || bpf_obj_get_info_by_fd(link_fd_, &info, &len) != 0) info.id = 0;
  return "alone through bpf_link " + std::to_string(info.id) +
         (alone_why_.empty() ? "" : " (no libxdp dispatcher: " + alone_why_ + ")");
}

std::optional<std::string> xdp_hook_holder(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (ifindex <= 0 || if_indextoname(static_cast<unsigned>(ifindex), name) == nullptr)
    return "there is no network device with ifindex " + std::to_string(ifindex);
  std::optional<std::string> no_sharing;
  if (!kernel_loads_extension_programs()) no_sharing = kNoExtension;
  return holder(ifindex, no_sharing);
}

}  // namespace srl::runtime::kernel
