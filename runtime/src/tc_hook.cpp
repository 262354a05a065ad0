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

bpf_tc_hook ingress(int ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

bpf_tc_opts srl_filter(int prog_fd = 0, std::uint32_t flags = 0) {
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = TcHook::kHandle;
  opts.priority = TcHook::kPriority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
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
    if (hook->created_qdisc_) {
      h.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      bpf_tc_hook_destroy(&h);
    }
    hook->created_qdisc_ = false;
    throw KernelError("cannot attach to TC ingress of " + device_name(ifindex) + ": " +
                      errno_text(err) +
                      (err == -EEXIST ? " (another srl program is attached there)" : ""));
  }
  if (!pin_dir.empty()) {
    hook->pin_dir_ = pin_dir;
    std::filesystem::create_directories(pin_dir);
    for (const auto& [name, fd] : {std::pair{"tc-program", hook->program_->fd()},
                                   std::pair{"counters", hook->program_->counters_fd()}}) {
      const auto path = pin_dir / name;
      std::filesystem::remove(path);
      if (bpf_obj_pin(fd, path.c_str()) != 0)
        throw KernelError("cannot pin " + path.string() + ": " + errno_text(errno));
    }
  }
  return hook;
}

void TcHook::replace(std::unique_ptr<KernelProgram> program) {
  bpf_tc_hook h = ingress(ifindex_);
  bpf_tc_opts opts = srl_filter(program->fd(), BPF_TC_F_REPLACE);
  if (const int err = bpf_tc_attach(&h, &opts); err != 0)
    throw KernelError("cannot replace the TC program on " + device_name(ifindex_) + ": " +
                      errno_text(err));
  program_ = std::move(program);
  if (!pin_dir_.empty()) {
    std::error_code ec;
    for (const auto& [name, fd] : {std::pair{"tc-program", program_->fd()},
                                   std::pair{"counters", program_->counters_fd()}}) {
      std::filesystem::remove(pin_dir_ / name, ec);
      if (bpf_obj_pin(fd, (pin_dir_ / name).c_str()) != 0)
        throw KernelError("cannot pin the new " + std::string(name) + ": " + errno_text(errno));
    }
  }
}

TcHook::~TcHook() {
  bpf_tc_hook h = ingress(ifindex_);
  bpf_tc_opts opts = srl_filter();
  bpf_tc_detach(&h, &opts);
  if (created_qdisc_) {
    // Both attach points name the qdisc itself; one alone would only
    // flush its filters.
    h.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    bpf_tc_hook_destroy(&h);
  }
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
