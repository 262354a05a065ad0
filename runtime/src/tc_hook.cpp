// Attaching generated programs to the TC ingress hook.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "srl/runtime/kernel.h"

namespace srl::runtime::kernel {
namespace {

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

// libbpf checks that the bytes past the fields it knows are zero, padding
// included, which `{}` alone does not promise: hence the memsets.
bpf_tc_hook ingress(int ifindex) {
  bpf_tc_hook hook;
  std::memset(&hook, 0, sizeof hook);
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

bpf_tc_opts srl_filter(int prog_fd = 0, std::uint32_t flags = 0) {
  bpf_tc_opts opts;
  std::memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.handle = TcHook::kHandle;
  opts.priority = TcHook::kPriority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
}

// The program (how a later run recognises an abandoned filter) and its
// counters, pinned under `dir`, replacing older pins.
void pin_program(const KernelProgram& program, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, fd] :
       {std::pair{"tc-program", program.fd()}, std::pair{"counters", program.counters_fd()}}) {
    const auto path = dir / name;
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (bpf_obj_pin(fd, path.c_str()) != 0)
      throw KernelError("cannot pin " + path.string() + ": " + errno_text(errno));
  }
}

// Removes the clsact qdisc: both attach points name the qdisc itself, one
// alone would only flush its filters.
void remove_qdisc(int ifindex) {
  bpf_tc_hook h = ingress(ifindex);
  h.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  bpf_tc_hook_destroy(&h);
}

std::string device_name(int ifindex) {
  char name[IF_NAMESIZE] = "?";
  if_indextoname(static_cast<unsigned>(ifindex), name);
  return name;
}

}  // namespace

std::unique_ptr<TcHook> TcHook::attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                       const std::filesystem::path& pin_dir) {
  std::unique_ptr<TcHook> hook(new TcHook());
  hook->program_ = std::move(program);
  hook->ifindex_ = ifindex;
  bpf_tc_hook h = ingress(ifindex);
  const int created = bpf_tc_hook_create(&h);
  if (created != 0 && created != -EEXIST)
    throw KernelError("cannot add a clsact qdisc to " + device_name(ifindex) + ": " +
                      errno_text(created));
  hook->created_qdisc_ = created == 0;
  bpf_tc_opts opts = srl_filter(hook->program_->fd());
  if (const int err = bpf_tc_attach(&h, &opts); err != 0) {
    if (hook->created_qdisc_) remove_qdisc(ifindex);
    hook->created_qdisc_ = false;
    throw KernelError("cannot attach to TC ingress of " + device_name(ifindex) + ": " +
                      errno_text(err) +
                      (err == -EEXIST ? " (another srl program is attached there)" : ""));
  }
  if (!pin_dir.empty()) {
    hook->pin_dir_ = pin_dir;
    pin_program(*hook->program_, pin_dir);
  }
  return hook;
}

std::unique_ptr<KernelProgram> TcHook::replace(std::unique_ptr<KernelProgram> program) {
  bpf_tc_hook h = ingress(ifindex_);
  bpf_tc_opts opts = srl_filter(program->fd(), BPF_TC_F_REPLACE);
  if (const int err = bpf_tc_attach(&h, &opts); err != 0)
    throw KernelError("cannot replace the TC program on " + device_name(ifindex_) + ": " +
                      errno_text(err));
  std::swap(program_, program);
  // The swap is done and stays done even if re-pinning fails: the caller
  // gets the old program back either way.
  if (!pin_dir_.empty()) {
    try {
      pin_program(*program_, pin_dir_);
    } catch (const KernelError&) {
    }
  }
  return program;
}

std::unique_ptr<TcHook> TcHook::adopt(const std::filesystem::path& pin_dir, int ifindex) {
  const auto pinned = pin_dir / "tc-program";
  const int prog_fd = bpf_obj_get(pinned.c_str());
  const int counters_fd = bpf_obj_get((pin_dir / "counters").c_str());
  if (prog_fd < 0 || counters_fd < 0) {
    if (prog_fd >= 0) close(prog_fd);
    if (counters_fd >= 0) close(counters_fd);
    throw KernelError("cannot open the program or the counters pinned at " + pin_dir.string());
  }
  std::unique_ptr<TcHook> hook(new TcHook());
  hook->program_ = KernelProgram::adopt(prog_fd, counters_fd);
  hook->ifindex_ = ifindex;
  bpf_tc_hook h = ingress(ifindex);
  bpf_tc_opts query = srl_filter();
  if (bpf_tc_query(&h, &query) != 0 || query.prog_id != hook->program_->id()) {
    hook->released_ = true;  // nothing of ours runs there: touch nothing
    throw KernelError("the TC ingress of " + device_name(ifindex) +
                      " does not run the program pinned at " + pinned.string());
  }
  // Whether the clsact qdisc was made for srl is not known any more: it
  // stays (it holds no filter of srl's once this hook goes).
  hook->pin_dir_ = pin_dir;
  return hook;
}

TcHook::~TcHook() {
  if (released_) return;  // attached and pinned: the datapath outlives us
  bpf_tc_hook h = ingress(ifindex_);
  bpf_tc_opts opts = srl_filter();
  bpf_tc_detach(&h, &opts);
  if (created_qdisc_) remove_qdisc(ifindex_);
  if (!pin_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove(pin_dir_ / "tc-program", ec);
    std::filesystem::remove(pin_dir_ / "counters", ec);
    std::filesystem::remove(pin_dir_, ec);
  }
}

bool TcHook::remove_abandoned(int ifindex, const std::filesystem::path& pinned_program) {
  const int fd = bpf_obj_get(pinned_program.c_str());
  if (fd < 0) return false;
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  const int got = bpf_obj_get_info_by_fd(fd, &info, &len);
  close(fd);
  if (got != 0) return false;
  bpf_tc_hook h = ingress(ifindex);
  bpf_tc_opts query = srl_filter();
  if (bpf_tc_query(&h, &query) != 0 || query.prog_id != info.id) return false;
  bpf_tc_opts opts = srl_filter();
  return bpf_tc_detach(&h, &opts) == 0;
}

}  // namespace srl::runtime::kernel
