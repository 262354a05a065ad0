// Compiling, loading, attaching and replacing the generated XDP programs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "srl/runtime/kernel.h"

namespace srl::runtime::kernel {
namespace {

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

std::uint64_t fnv64(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Runs a command without a shell; returns its exit status and output.
int run(const std::vector<std::string>& argv, std::string& output) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) throw KernelError("pipe: " + errno_text(errno));
  const pid_t pid = fork();
  if (pid < 0) throw KernelError("fork: " + errno_text(errno));
  if (pid == 0) {
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  char buf[4096];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;)
    output.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// libbpf prints to stderr by default; keep its messages for our errors.
thread_local std::string* libbpf_log = nullptr;
__attribute__((format(printf, 2, 0))) int libbpf_print(enum libbpf_print_level level,
                                                       const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG || libbpf_log == nullptr) return 0;
  char buf[1024];
  const int n = vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0)
    libbpf_log->append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
  return 0;
}

struct LogCapture {
  std::string text;
  LogCapture() {
    libbpf_set_print(libbpf_print);
    libbpf_log = &text;
  }
  ~LogCapture() { libbpf_log = nullptr; }
  // The last lines, where the verifier says why it refused.
  std::string tail() const {
    std::size_t pos = text.size();
    for (int lines = 0; lines < 12 && pos > 0; ++lines)
      pos = text.rfind('\n', pos - 1);
    return text.substr(pos == std::string::npos ? 0 : pos);
  }
};

}  // namespace

std::string_view to_string(XdpMode m) {
  return m == XdpMode::native ? "native" : "generic";
}

std::filesystem::path compile_bpf(const std::string& source,
                                  const std::filesystem::path& cache_dir) {
  static const std::string clang_version = [] {
    std::string out;
    run({"clang", "--version"}, out);
    return out.substr(0, out.find('\n'));
  }();
  char name[32];
  std::snprintf(name, sizeof name, "%016llx",
                static_cast<unsigned long long>(fnv64(clang_version + "\n" + source)));
  std::filesystem::create_directories(cache_dir);
  const auto object = cache_dir / (std::string(name) + ".o");
  if (std::filesystem::exists(object)) return object;

  const auto c_file = cache_dir / (std::string(name) + ".c");
  {
    std::ofstream out(c_file, std::ios::trunc);
    out << source;
    if (!out) throw KernelError("cannot write " + c_file.string());
  }
  const auto tmp_object = cache_dir / (std::string(name) + ".o.tmp");
  std::string output;
  const int rc =
      run({"clang", "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Wno-unused-variable",
           "-I/usr/include/x86_64-linux-gnu", "-c", c_file.string(), "-o", tmp_object.string()},
          output);
  if (rc != 0)
    throw KernelError("clang could not compile the generated program " + c_file.string() + ":\n" +
                      output);
  std::filesystem::rename(tmp_object, object);  // atomic: the cache never holds half an object
  return object;
}

std::unique_ptr<KernelProgram> KernelProgram::load(const std::filesystem::path& object,
                                                   std::size_t node_count) {
  LogCapture log;
  std::unique_ptr<KernelProgram> p(new KernelProgram());
  p->node_count_ = node_count;
  p->obj_ = bpf_object__open_file(object.c_str(), nullptr);
  if (p->obj_ == nullptr)
    throw KernelError("cannot open " + object.string() + ": " + errno_text(errno));
  if (const int err = bpf_object__load(p->obj_); err != 0)
    throw KernelError("the kernel refused the generated program (" + errno_text(err) +
                      "):" + log.tail());
  bpf_program* prog = bpf_object__find_program_by_name(p->obj_, "srl_xdp");
  if (prog == nullptr) prog = bpf_object__find_program_by_name(p->obj_, "srl_tc");
  bpf_map* counters = bpf_object__find_map_by_name(p->obj_, "srl_counters");
  if (prog == nullptr || counters == nullptr)
    throw KernelError(object.string() + " is not a generated srl program");
  p->prog_fd_ = bpf_program__fd(prog);
  p->counters_fd_ = bpf_map__fd(counters);
  if (bpf_map__value_size(counters) != node_count * sizeof(Counter))
    throw KernelError(object.string() + ": counter map does not match the node count");
  return p;
}

std::unique_ptr<KernelProgram> KernelProgram::adopt(int prog_fd, int counters_fd) {
  std::unique_ptr<KernelProgram> p(new KernelProgram());
  p->prog_fd_ = prog_fd;
  p->counters_fd_ = counters_fd;
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(counters_fd, &info, &len) == 0)
    p->node_count_ = info.value_size / sizeof(Counter);
  return p;
}

KernelProgram::~KernelProgram() {
  if (obj_ != nullptr) {
    bpf_object__close(obj_);
    return;
  }
  // An adopted program owns its descriptors itself.
  if (prog_fd_ >= 0) close(prog_fd_);
  if (counters_fd_ >= 0) close(counters_fd_);
}

int KernelProgram::xsks_fd() const {
  if (obj_ == nullptr) return -1;
  bpf_map* m = bpf_object__find_map_by_name(obj_, "srl_xsks");
  return m != nullptr ? bpf_map__fd(m) : -1;
}

std::uint32_t KernelProgram::id() const {
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  bpf_obj_get_info_by_fd(prog_fd_, &info, &len);
  return info.id;
}

std::uint32_t KernelProgram::test_run(const std::vector<std::uint8_t>& frame, std::uint32_t repeat,
                                      std::uint32_t* duration_ns) const {
  // The kernel wants room for the frame; an empty frame is still a test.
  std::vector<std::uint8_t> in(frame), out(frame.size() + 256);
  // Plain initialisation: LIBBPF_OPTS is a GNU statement expression.
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = in.data();
  opts.data_out = out.data();
  opts.data_size_in = static_cast<std::uint32_t>(in.size());
  opts.data_size_out = static_cast<std::uint32_t>(out.size());
  opts.repeat = static_cast<int>(repeat);
  if (bpf_prog_test_run_opts(prog_fd_, &opts) != 0)
    throw KernelError("BPF_PROG_TEST_RUN failed: " + errno_text(errno));
  if (duration_ns != nullptr) *duration_ns = opts.duration;
  return opts.retval;
}

std::unique_ptr<XdpHook> XdpHook::attach(std::unique_ptr<KernelProgram> program, int ifindex,
                                         std::optional<XdpMode> mode,
                                         const std::filesystem::path& pin_dir) {
  std::unique_ptr<XdpHook> hook(new XdpHook());
  hook->program_ = std::move(program);
  hook->ifindex_ = ifindex;
  std::string errors;
  for (XdpMode m : {XdpMode::native, XdpMode::generic}) {
    if (mode && *mode != m) continue;
    bpf_link_create_opts opts{};
    opts.sz = sizeof opts;
    opts.flags = m == XdpMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    const int fd = bpf_link_create(hook->program_->fd(), ifindex, BPF_XDP, &opts);
    if (fd >= 0) {
      hook->link_fd_ = fd;
      hook->mode_ = m;
      break;
    }
    errors += std::string(errors.empty() ? "" : "; ") + std::string(to_string(m)) + ": " +
              errno_text(errno);
  }
  if (hook->link_fd_ < 0) {
    char name[IF_NAMESIZE] = "?";
    if_indextoname(static_cast<unsigned>(ifindex), name);
    throw KernelError(std::string("cannot attach XDP to ") + name + " (" + errors + ")");
  }
  if (!pin_dir.empty()) {
    hook->pin_dir_ = pin_dir;
    hook->pin();
  }
  return hook;
}

std::unique_ptr<XdpHook> XdpHook::adopt(const std::filesystem::path& pin_dir) {
  const auto link = pin_dir / "link", counters = pin_dir / "counters";
  std::unique_ptr<XdpHook> hook(new XdpHook());
  hook->link_fd_ = bpf_obj_get(link.c_str());
  if (hook->link_fd_ < 0)
    throw KernelError("cannot open the pinned link " + link.string() + ": " + errno_text(errno));
  bpf_link_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(hook->link_fd_, &info, &len) != 0 || info.type != BPF_LINK_TYPE_XDP)
    throw KernelError(link.string() + " is not an XDP link");
  hook->ifindex_ = static_cast<int>(info.xdp.ifindex);
  const int prog_fd = bpf_prog_get_fd_by_id(info.prog_id);
  const int counters_fd = bpf_obj_get(counters.c_str());
  if (prog_fd < 0 || counters_fd < 0) {
    if (prog_fd >= 0) close(prog_fd);
    if (counters_fd >= 0) close(counters_fd);
    throw KernelError("cannot open the program or the counters pinned at " + pin_dir.string());
  }
  hook->program_ = KernelProgram::adopt(prog_fd, counters_fd);
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (bpf_xdp_query(hook->ifindex_, 0, &q) == 0)
    hook->mode_ = q.attach_mode == XDP_ATTACHED_DRV ? XdpMode::native : XdpMode::generic;
  hook->pin_dir_ = pin_dir;
  return hook;
}

void XdpHook::pin() {
  std::filesystem::create_directories(pin_dir_);
  const auto link = pin_dir_ / "link", counters = pin_dir_ / "counters";
  std::filesystem::remove(link);
  std::filesystem::remove(counters);
  if (bpf_obj_pin(link_fd_, link.c_str()) != 0)
    throw KernelError("cannot pin " + link.string() + ": " + errno_text(errno));
  if (bpf_obj_pin(program_->counters_fd(), counters.c_str()) != 0)
    throw KernelError("cannot pin " + counters.string() + ": " + errno_text(errno));
}

void XdpHook::unpin() {
  if (pin_dir_.empty()) return;
  std::error_code ec;
  std::filesystem::remove(pin_dir_ / "link", ec);
  std::filesystem::remove(pin_dir_ / "counters", ec);
  std::filesystem::remove(pin_dir_, ec);
}

std::unique_ptr<KernelProgram> XdpHook::replace(std::unique_ptr<KernelProgram> program) {
  if (bpf_link_update(link_fd_, program->fd(), nullptr) != 0)
    throw KernelError("cannot replace the program on the XDP link: " + errno_text(errno));
  std::swap(program_, program);
  // The pinned counters follow the running program; the swap itself is done
  // and stays done even if re-pinning fails (the pin is informative).
  if (!pin_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove(pin_dir_ / "counters", ec);
    bpf_obj_pin(program_->counters_fd(), (pin_dir_ / "counters").c_str());
  }
  return program;
}

XdpHook::~XdpHook() {
  if (released_) {
    if (link_fd_ >= 0) close(link_fd_);  // the pin keeps the link
    return;
  }
  unpin();
  if (link_fd_ >= 0) {
    bpf_link_detach(link_fd_);
    close(link_fd_);
  }
}

std::uint32_t XdpHook::link_id() const {
  bpf_link_info info{};
  std::uint32_t len = sizeof info;
  bpf_obj_get_info_by_fd(link_fd_, &info, &len);
  return info.id;
}

std::vector<Counter> KernelProgram::counters() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw KernelError("cannot count CPUs: " + errno_text(cpus));
  std::vector<Counter> per_cpu(static_cast<std::size_t>(cpus) * node_count_);
  std::uint32_t key = 0;
  if (bpf_map_lookup_elem(counters_fd_, &key, per_cpu.data()) != 0)
    throw KernelError("cannot read counters: " + errno_text(errno));
  std::vector<Counter> sum(node_count_);
  for (std::size_t cpu = 0; cpu < static_cast<std::size_t>(cpus); ++cpu) {
    for (std::size_t i = 0; i < node_count_; ++i) {
      const Counter& c = per_cpu[cpu * node_count_ + i];
      sum[i].packets += c.packets;
      sum[i].bytes += c.bytes;
      sum[i].accepted += c.accepted;
    }
  }
  return sum;
}

void ensure_bpffs(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  struct statfs st {};
  if (statfs(dir.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC)
    return;
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0)
    throw KernelError("cannot mount a bpffs at " + dir.string() + ": " + errno_text(errno));
}

}  // namespace srl::runtime::kernel
