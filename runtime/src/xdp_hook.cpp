// Compiling and loading the generated eBPF programs (XDP attach: xdp_attach.cpp).
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

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdarg>
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
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// libbpf prints to stderr by default; keep its messages for our errors.
thread_local std::string* libbpf_log = nullptr;
__attribute__((format(printf, 2, 0))) int libbpf_print(enum libbpf_print_level level,
                                                       const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG || libbpf_log == nullptr) return 0;
  // Whole: a verifier's refusal is one message of many kilobytes, its
  // reason at the end.
  va_list again;
  va_copy(again, args);
  char buf[1024];
  const int n = vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0 && static_cast<std::size_t>(n) < sizeof buf) {
    libbpf_log->append(buf, static_cast<std::size_t>(n));
  } else if (n > 0) {
    std::string big(static_cast<std::size_t>(n) + 1, '\0');
    vsnprintf(big.data(), big.size(), fmt, again);
    big.pop_back();
    libbpf_log->append(big);
  }
  va_end(again);
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
  std::error_code ec;
  if (std::filesystem::exists(object)) {
    // Used: the newest again, last to be pruned.
    std::filesystem::last_write_time(object, std::filesystem::file_time_type::clock::now(), ec);
    return object;
  }

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
  prune_bpf_cache(cache_dir, kBpfCacheEntries, object);
  return object;
}

void prune_bpf_cache(const std::filesystem::path& cache_dir, std::size_t keep,
                     const std::filesystem::path& spare) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::pair<fs::file_time_type, fs::path>> objects;
  for (const auto& e : fs::directory_iterator(cache_dir, ec))
    if (e.path().extension() == ".o" && e.path() != spare)
      objects.emplace_back(e.last_write_time(ec), e.path());
  if (objects.size() + 1 <= keep) return;
  std::sort(objects.begin(), objects.end());  // oldest first
  const std::size_t drop = objects.size() + 1 - keep;
  for (std::size_t i = 0; i < drop && i < objects.size(); ++i) {
    // A program loaded from an object no longer needs it: the kernel holds
    // its own copy. The source and a verifier log go with it.
    auto p = objects[i].second;
    fs::remove(p, ec);
    fs::remove(p.replace_extension(".c"), ec);
    fs::remove(p.replace_extension(".verifier.log"), ec);
  }
}

std::uint32_t KernelProgram::verified_insns() const {
  bpf_prog_info info;
  std::memset(&info, 0, sizeof info);
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd_, &info, &len) != 0) return 0;
  return info.verified_insns;
}

std::unique_ptr<KernelProgram> KernelProgram::load(const std::filesystem::path& object,
                                                   std::size_t node_count) {
  LogCapture log;
  std::unique_ptr<KernelProgram> p(new KernelProgram());
  p->node_count_ = node_count;
  p->obj_ = bpf_object__open_file(object.c_str(), nullptr);
  if (p->obj_ == nullptr)
    throw KernelError("cannot open " + object.string() + ": " + errno_text(errno));
  if (const int err = bpf_object__load(p->obj_); err != 0) {
    // The whole verifier log beside the object, the reason in the message.
    auto log_file = object;
    log_file.replace_extension(".verifier.log");
    std::ofstream(log_file, std::ios::trunc) << log.text;
    throw KernelError("the kernel refused the generated program (" + errno_text(err) +
                      "; the whole log: " + log_file.string() + "):" + log.tail());
  }
  bpf_program* prog = bpf_object__find_program_by_name(p->obj_, "srl_xdp");
  if (prog == nullptr) prog = bpf_object__find_program_by_name(p->obj_, "srl_tc");
  bpf_map* counters = bpf_object__find_map_by_name(p->obj_, "srl_counters");
  if (prog == nullptr || counters == nullptr)
    throw KernelError(object.string() + " is not a generated srl program");
  p->prog_fd_ = bpf_program__fd(prog);
  p->counters_fd_ = bpf_map__fd(counters);
  if (bpf_map* classes = bpf_object__find_map_by_name(p->obj_, "srl_classes"))
    p->classes_fd_ = bpf_map__fd(classes);
  // One slot per node, then the copy channel's.
  if (bpf_map__value_size(counters) != (node_count + 1) * sizeof(Counter))
    throw KernelError(object.string() + ": counter map does not match the node count");
  return p;
}

std::unique_ptr<KernelProgram> KernelProgram::adopt(int prog_fd, int counters_fd, int classes_fd) {
  std::unique_ptr<KernelProgram> p(new KernelProgram());
  p->prog_fd_ = prog_fd;
  p->counters_fd_ = counters_fd;
  p->classes_fd_ = classes_fd;
  bpf_map_info info{};
  std::uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(counters_fd, &info, &len) == 0 && info.value_size >= sizeof(Counter))
    p->node_count_ = info.value_size / sizeof(Counter) - 1;
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
  if (classes_fd_ >= 0) close(classes_fd_);
}

std::vector<KernelProgram::ClassTally> KernelProgram::class_tallies() const {
  std::vector<ClassTally> out;
  if (classes_fd_ < 0) return out;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw KernelError("cannot count CPUs: " + errno_text(cpus));
  struct Key {
    std::uint32_t node, cls;
  };
  struct Tally {
    std::uint64_t blocks, bytes;
  };
  std::vector<Tally> per_cpu(static_cast<std::size_t>(cpus));
  Key key{}, next{};
  const Key* at = nullptr;  // the first key first
  while (bpf_map_get_next_key(classes_fd_, at, &next) == 0) {
    key = next;
    at = &key;
    // A key removed meanwhile (none are: the program only adds) is skipped.
    if (bpf_map_lookup_elem(classes_fd_, &key, per_cpu.data()) != 0) continue;
    ClassTally t{key.node, key.cls, 0, 0};
    for (const auto& c : per_cpu) {
      t.blocks += c.blocks;
      t.bytes += c.bytes;
    }
    out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](const ClassTally& a, const ClassTally& b) {
    return a.node != b.node ? a.node < b.node : a.cls < b.cls;
  });
  return out;
}

int KernelProgram::xsks_fd() const {
  return map_fd("srl_xsks");
}

int KernelProgram::map_fd(const std::string& name) const {
  if (obj_ == nullptr) return -1;
  bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
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

std::uint32_t copy_cpus() {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw KernelError("cannot count CPUs: " + errno_text(cpus));
  return static_cast<std::uint32_t>(cpus);
}

std::uint32_t default_copy_area_bytes() {
  const std::uint32_t share = (std::uint32_t{32} << 20) / std::max<std::uint32_t>(copy_cpus(), 1);
  return std::bit_floor(std::clamp(share, std::uint32_t{2} << 20, std::uint32_t{8} << 20));
}

std::vector<Counter> KernelProgram::all_counters() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw KernelError("cannot count CPUs: " + errno_text(cpus));
  const std::size_t slots = node_count_ + 1;
  std::vector<Counter> per_cpu(static_cast<std::size_t>(cpus) * slots);
  std::uint32_t key = 0;
  if (bpf_map_lookup_elem(counters_fd_, &key, per_cpu.data()) != 0)
    throw KernelError("cannot read counters: " + errno_text(errno));
  std::vector<Counter> sum(slots);
  for (std::size_t cpu = 0; cpu < static_cast<std::size_t>(cpus); ++cpu) {
    for (std::size_t i = 0; i < slots; ++i) {
      const Counter& c = per_cpu[cpu * slots + i];
      sum[i].packets += c.packets;
      sum[i].bytes += c.bytes;
      sum[i].accepted += c.accepted;
    }
  }
  return sum;
}

std::vector<Counter> KernelProgram::counters() const {
  auto all = all_counters();
  all.pop_back();
  return all;
}

CopyCounters KernelProgram::copy_counters() const {
  const auto all = all_counters();
  return {all.back().packets, all.back().bytes, all.back().accepted};
}

void ensure_bpffs(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  struct statfs st {};
  if (statfs(dir.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC)
    return;
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0)
    throw KernelError("cannot mount a bpffs at " + dir.string() + ": " + errno_text(errno));
}

BpffsProbe machine_bpffs_probe() {
  BpffsProbe p;
  p.is_bpffs = [](const std::filesystem::path& dir) {
    struct statfs st {};
    return statfs(dir.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
  };
  auto ns = [](const char* link) -> std::optional<std::string> {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(link, ec);
    if (ec) return std::nullopt;
    return target.string();
  };
  p.own_mount_ns = ns("/proc/self/ns/mnt");
  p.initial_mount_ns = ns("/proc/1/ns/mnt");
  return p;
}

BpffsChoice choose_bpffs(const std::filesystem::path& wanted, const BpffsProbe& probe) {
  if (probe.is_bpffs(wanted)) return {wanted, {}};
  const bool known = probe.own_mount_ns && probe.initial_mount_ns;
  const bool private_ns = known && *probe.own_mount_ns != *probe.initial_mount_ns;
  if (private_ns && wanted.is_absolute()) {
    const auto initial = probe.initial_root / wanted.relative_path();
    if (probe.is_bpffs(initial)) return {initial, {}};
  }
  if (known && !private_ns) return {wanted, {}};  // mounted later, in the initial namespace
  return {wanted,
          "no bpffs at " + wanted.string() +
              (private_ns ? " in this private mount namespace (ip netns exec makes one)"
                          : " (whether this mount namespace is the initial one is unknown)") +
              ", nor at the same path in the initial namespace: the one mounted here lasts only "
              "as long as this namespace, and with it every pin: hooks, drops and counters "
              "vanish when the daemon stops. Mount a bpffs at " +
              wanted.string() + " in the initial namespace (mount -t bpf bpf " + wanted.string() +
              "), or pass --bpffs a directory on one"};
}

}  // namespace srl::runtime::kernel
