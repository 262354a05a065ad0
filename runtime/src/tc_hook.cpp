// Attaching generated programs to the TC ingress hook: a tcx link where
// the kernel has tcx, a cls_bpf filter on the clsact qdisc elsewhere.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

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

bpf_tc_opts srl_filter(std::uint32_t priority, int prog_fd = 0, std::uint32_t flags = 0) {
  bpf_tc_opts opts;
  std::memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.handle = TcHook::kHandle;
  opts.priority = priority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
}

// The program id of srl's filter at `priority` on `ifindex`, 0 if none.
std::uint32_t srl_filter_program(int ifindex, std::uint32_t priority) {
  bpf_tc_hook h = ingress(ifindex);
  bpf_tc_opts query = srl_filter(priority);
  return bpf_tc_query(&h, &query) == 0 ? query.prog_id : 0;
}

// The priority of srl's filter on `ifindex` that runs program `prog_id`,
// 0 if none does: a pinned program is found by what runs it, so nothing
// but the program needs pinning (bpffs holds no plain files).
std::uint32_t srl_filter_running(int ifindex, std::uint32_t prog_id) {
  for (std::uint32_t i = 0; i < TcHook::kPriorities; ++i)
    if (srl_filter_program(ifindex, TcHook::kPriority + i) == prog_id) return TcHook::kPriority + i;
  return 0;
}

// The uapi values of Linux 6.6+, which the system's headers may predate.
constexpr int kBpfTcxIngress = 46;      // enum bpf_attach_type BPF_TCX_INGRESS
constexpr std::uint32_t kLinkTcx = 11;  // enum bpf_link_type BPF_LINK_TYPE_TCX

// The program (how a later run recognises an abandoned hook) and its
// counters, pinned under `dir`, replacing older pins.
void pin_program(const KernelProgram& program, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, fd] :
       {std::pair{"tc-program", program.fd()}, std::pair{"counters", program.counters_fd()},
        std::pair{"classes", program.classes_fd()}}) {
    const auto path = dir / name;
    std::error_code ec;
    std::filesystem::remove(path, ec);
    // No counts by class: no pin of them (an older one went above).
    if (fd >= 0 && bpf_obj_pin(fd, path.c_str()) != 0)
      throw KernelError("cannot pin " + path.string() + ": " + errno_text(errno));
  }
}

// The tcx link pinned at `path`, if it runs program `prog_id` on
// `ifindex`: its fd, else -1 (and the fd closed).
int pinned_link(const std::filesystem::path& path, std::uint32_t prog_id, int ifindex) {
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return -1;
  // The tcx member of the info's union (ifindex, attach type) starts where
  // the xdp member's ifindex is.
  bpf_link_info info;
  std::memset(&info, 0, sizeof info);
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != kLinkTcx ||
      info.prog_id != prog_id || info.xdp.ifindex != static_cast<std::uint32_t>(ifindex)) {
    close(fd);
    return -1;
  }
  return fd;
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

int tcx_ingress_link(int prog_fd, int ifindex) {
  // No options: appended after what runs there. libbpf (1.1) passes an
  // attach type it does not know through unchanged.
  const int fd =
      bpf_link_create(prog_fd, ifindex, static_cast<bpf_attach_type>(kBpfTcxIngress), nullptr);
  return fd >= 0 ? fd : -errno;
}

TcIngress attach_tc_ingress(int prog_fd, int ifindex) {
  const char* forced = std::getenv("SRL_TC_ATTACH");
  const bool clsact_only = forced != nullptr && std::string_view(forced) == "clsact";
  if (!clsact_only) {
    if (const int link = tcx_ingress_link(prog_fd, ifindex); link >= 0)
      return {.link_fd = link};
    else if (link != -EINVAL)
      throw KernelError("cannot attach to the tcx ingress hook of " + device_name(ifindex) + ": " +
                        errno_text(link));
  }
  bpf_tc_hook h = ingress(ifindex);
  const int created = bpf_tc_hook_create(&h);
  if (created != 0 && created != -EEXIST)
    throw KernelError("cannot add a clsact qdisc to " + device_name(ifindex) + ": " +
                      errno_text(created));
  // The first of srl's priorities that is free; taken by another srl
  // program meanwhile (EEXIST), the next.
  int err = -EEXIST;
  for (std::uint32_t i = 0; i < TcHook::kPriorities && err == -EEXIST; ++i) {
    bpf_tc_opts opts = srl_filter(TcHook::kPriority + i, prog_fd);
    err = bpf_tc_attach(&h, &opts);
    if (err == 0) return {.created_qdisc = created == 0, .priority = TcHook::kPriority + i};
  }
  if (created == 0) remove_qdisc(ifindex);
  throw KernelError("cannot attach to TC ingress of " + device_name(ifindex) + ": " +
                    (err == -EEXIST ? "all " + std::to_string(TcHook::kPriorities) +
                                          " of srl's filter priorities on its clsact qdisc are "
                                          "taken by other srl programs"
                                    : errno_text(err)));
}

void detach_tc_ingress(const TcIngress& attached, int ifindex) {
  if (attached.link_fd >= 0) {
    bpf_link_detach(attached.link_fd);
    close(attached.link_fd);
    return;
  }
  bpf_tc_hook h = ingress(ifindex);
  bpf_tc_opts opts = srl_filter(attached.priority);
  bpf_tc_detach(&h, &opts);
  if (!attached.created_qdisc) return;
  // Another srl program's filter keeps the qdisc (and whatever else is on it).
  for (std::uint32_t i = 0; i < TcHook::kPriorities; ++i)
    if (srl_filter_program(ifindex, TcHook::kPriority + i) != 0) return;
  remove_qdisc(ifindex);
}

std::unique_ptr<TcHook> TcHook::attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                       const std::filesystem::path& pin_dir) {
  // Attached first: a hook that was never attached must not detach, in its
  // destructor, the srl filter that another hook put there.
  const TcIngress attached = attach_tc_ingress(program->fd(), ifindex);
  std::unique_ptr<TcHook> hook(new TcHook());
  hook->program_ = std::move(program);
  hook->ifindex_ = ifindex;
  // From here the destructor detaches (and, once pin_dir_ is set, unpins).
  hook->link_fd_ = attached.link_fd;
  hook->created_qdisc_ = attached.created_qdisc;
  hook->priority_ = attached.priority;
  if (!pin_dir.empty()) {
    hook->pin_dir_ = pin_dir;
    pin_program(*hook->program_, pin_dir);
    if (hook->link_fd_ >= 0) {
      const auto path = pin_dir / "tc-link";
      std::error_code ec;
      std::filesystem::remove(path, ec);
      if (bpf_obj_pin(hook->link_fd_, path.c_str()) != 0)
        throw KernelError("cannot pin " + path.string() + ": " + errno_text(errno));
    }
  }
  return hook;
}

std::unique_ptr<KernelProgram> TcHook::replace(std::unique_ptr<KernelProgram> program) {
  if (link_fd_ >= 0) {
    if (bpf_link_update(link_fd_, program->fd(), nullptr) != 0)
      throw KernelError("cannot replace the program of the tcx link on " + device_name(ifindex_) +
                        ": " + errno_text(errno));
  } else {
    bpf_tc_hook h = ingress(ifindex_);
    bpf_tc_opts opts = srl_filter(priority_, program->fd(), BPF_TC_F_REPLACE);
    if (const int err = bpf_tc_attach(&h, &opts); err != 0)
      throw KernelError("cannot replace the TC program on " + device_name(ifindex_) + ": " +
                        errno_text(err));
  }
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
  hook->program_ =
      KernelProgram::adopt(prog_fd, counters_fd, bpf_obj_get((pin_dir / "classes").c_str()));
  hook->ifindex_ = ifindex;
  std::error_code ec;
  if (const auto link = pin_dir / "tc-link"; std::filesystem::exists(link, ec)) {
    hook->link_fd_ = pinned_link(link, hook->program_->id(), ifindex);
    if (hook->link_fd_ < 0) {
      hook->released_ = true;  // not ours, or not there: touch nothing
      throw KernelError("the tcx link pinned at " + link.string() + " does not run the program " +
                        "pinned at " + pinned.string() + " on " + device_name(ifindex));
    }
    hook->pin_dir_ = pin_dir;
    return hook;
  }
  hook->priority_ = srl_filter_running(ifindex, hook->program_->id());
  if (hook->priority_ == 0) {
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
  if (released_) {                       // attached and pinned: the datapath outlives us
    if (link_fd_ >= 0) close(link_fd_);  // the pin holds the link
    return;
  }
  detach_tc_ingress({.link_fd = link_fd_, .created_qdisc = created_qdisc_, .priority = priority_},
                    ifindex_);
  if (!pin_dir_.empty()) {
    std::error_code ec;
    for (const char* name : {"tc-link", "tc-program", "counters", "classes"})
      std::filesystem::remove(pin_dir_ / name, ec);
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
  const auto link_pin = pinned_program.parent_path() / "tc-link";
  if (const int link = pinned_link(link_pin, info.id, ifindex); link >= 0) {
    const bool detached = bpf_link_detach(link) == 0;
    close(link);
    std::error_code ec;
    std::filesystem::remove(link_pin, ec);  // the last reference
    return detached;
  }
  const std::uint32_t priority = srl_filter_running(ifindex, info.id);
  if (priority == 0) return false;
  bpf_tc_hook h = ingress(ifindex);
  bpf_tc_opts opts = srl_filter(priority);
  return bpf_tc_detach(&h, &opts) == 0;
}

}  // namespace srl::runtime::kernel
