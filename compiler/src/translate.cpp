// Pass "translate": filters that carry an expression get it turned into an
// executable form before placement. `bpf expr=` goes through libpcap's own
// compiler, so it accepts exactly what tcpdump accepts, into classic BPF for
// Ethernet frames; the kernel space later turns that into eBPF.
//
// libpcap's compile time and memory grow faster than linearly with the
// alternatives of an expression. With a TranslateBudget, each expression is
// compiled in a child process under an address-space limit and a CPU-time
// backstop, which the parent waits for against the wall-clock budget and kills
// past it; without one it is compiled here, as a command line tool may.
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "context.h"

namespace srl::compiler {
namespace {

constexpr int kSnaplen = 262144;

// What became of one expression: its translation, or the diagnostic's text.
struct Outcome {
  std::optional<Translation> translation;
  std::string error;
};

Outcome failure(std::string message) {
  return {std::nullopt, std::move(message)};
}

// The one conversion from libpcap's program to the DAG's form, whichever
// process compiled it.
Translation translation_of(const std::string& expr, const bpf_program& prog) {
  Translation t;
  t.kind = "cbpf";
  t.linktype = "EN10MB";
  t.source = expr;
  t.insns.reserve(prog.bf_len);
  for (unsigned i = 0; i < prog.bf_len; ++i) {
    const bpf_insn& in = prog.bf_insns[i];
    t.insns.push_back({in.code, in.jt, in.jf, in.k});
  }
  return t;
}

// libpcap refused the expression: its own words, the same in both modes.
std::string invalid_expression(const std::string& expr, std::string_view pcap_error) {
  return "invalid bpf expression \"" + expr + "\": " + std::string(pcap_error) +
         "; expected a pcap-filter(7) expression such as \"udp port 53\"";
}

Outcome compile_here(pcap_t* handle, const std::string& expr) {
  bpf_program prog{};
  if (pcap_compile(handle, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
    return failure(invalid_expression(expr, pcap_geterr(handle)));
  Outcome out{translation_of(expr, prog), {}};
  pcap_freecode(&prog);
  return out;
}

// ---- Compiling in a child process ----------------------------------------

std::string describe_time(std::chrono::milliseconds t) {
  if (t.count() % 1000 == 0) return std::to_string(t.count() / 1000) + " s";
  return std::to_string(t.count()) + " ms";
}

std::string describe_bytes(std::size_t b) {
  if (b != 0 && b % (std::size_t{1} << 30) == 0) return std::to_string(b >> 30) + " GiB";
  if (b != 0 && b % (1u << 20) == 0) return std::to_string(b >> 20) + " MiB";
  if (b != 0 && b % (1u << 10) == 0) return std::to_string(b >> 10) + " KiB";
  return std::to_string(b) + " bytes";
}

constexpr std::string_view kShorter =
    " grows quickly with alternatives); expected a shorter expression: split it over several "
    "bpf nodes or requests";

std::string over_time(const TranslateBudget& b) {
  return "the bpf expression's translation exceeded its time budget of " + describe_time(b.time) +
         " (libpcap's compile time" + std::string(kShorter);
}

std::string over_memory(const TranslateBudget& b) {
  return "the bpf expression's translation exceeded its memory budget of " +
         describe_bytes(b.memory_bytes) + " (libpcap's compile memory" + std::string(kShorter);
}

// The process to compile the expression could not be started.
std::string cannot_start(const std::string& why) {
  return "cannot translate the bpf expression: no process to compile it in (" + why +
         "); expected the system to allow one more process and two descriptors: try again later";
}

// The process compiling the expression ended without an answer.
std::string cannot_translate(const std::string& what) {
  return "cannot translate the bpf expression: the process that compiles it " + what +
         "; expected libpcap to finish compiling it (a shorter expression may)";
}

std::string system_error(const char* call, int err) {
  return std::string(call) + ": " + std::strerror(err);
}

std::string signal_name(int sig) {
  if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

// The child's answer: this header, then `count` instructions (compiled) or
// `count` bytes of libpcap's error text.
enum class AnswerKind : std::uint32_t { compiled = 1, invalid = 2, out_of_memory = 3 };
struct AnswerHeader {
  AnswerKind kind;
  std::uint32_t count;
};

std::size_t payload_bytes(const AnswerHeader& h) {
  return h.kind == AnswerKind::compiled ? std::size_t{h.count} * sizeof(bpf_insn)
                                        : std::size_t{h.count};
}

// The header, once `data` holds a whole answer.
std::optional<AnswerHeader> whole_answer(const std::string& data) {
  if (data.size() < sizeof(AnswerHeader)) return std::nullopt;
  AnswerHeader h{};
  std::memcpy(&h, data.data(), sizeof h);
  if (data.size() < sizeof h + payload_bytes(h)) return std::nullopt;
  return h;
}

// A descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// --- In the child. Only async-signal-safe calls besides pcap_compile (the
// parent may be multi-threaded), and never a return into the caller.

bool write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// The address space mapped now, from /proc/self/statm; 0 when unknown (the
// budget then bounds the whole address space).
rlim_t mapped_bytes(long page_size) {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[32];
  const ssize_t n = ::read(fd, text, sizeof text);
  ::close(fd);
  rlim_t pages = 0;
  for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9'; ++i)
    pages = pages * 10 + static_cast<rlim_t>(text[i] - '0');
  return pages * static_cast<rlim_t>(page_size);
}

// Lowers the soft limit of `resource` to `soft` and its hard one to `hard`,
// never above what they are.
void lower_limit(int resource, rlim_t soft, rlim_t hard) {
  rlimit old{};
  if (::getrlimit(resource, &old) != 0) return;
  rlimit r{};
  r.rlim_max = hard < old.rlim_max ? hard : old.rlim_max;
  r.rlim_cur = soft < r.rlim_max ? soft : r.rlim_max;
  ::setrlimit(resource, &r);
}

rlim_t cpu_backstop_seconds(const TranslateBudget& b) {
  const auto ms = b.time.count() > 0 ? static_cast<rlim_t>(b.time.count()) : 0;
  return (ms + 999) / 1000 + 1;
}

// Registered last in the child, so that it runs first if libpcap calls
// exit() (its scanner does when it cannot allocate): it leaves at once, before
// the parent's atexit handlers and static destructors could run in the child,
// answering a failed allocation as one.
void leave_on_exit(int status, void* out) {
  if (errno == ENOMEM) {
    AnswerHeader h{};
    h.kind = AnswerKind::out_of_memory;
    write_all(static_cast<int>(reinterpret_cast<std::intptr_t>(out)), &h, sizeof h);
  }
  ::_exit(status);
}

[[noreturn]] void run_child(pcap_t* handle, const char* expr, int out, const TranslateBudget& b,
                            long page_size, pid_t parent) {
  // Killed if the parent dies; if it is already gone, nobody listens.
  ::prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL));
  if (::getppid() != parent) ::_exit(1);

  // Memory: the address space may grow by the budget over what the parent
  // had mapped (a daemon's own mappings do not count against it).
  const rlim_t mapped = mapped_bytes(page_size);
  const rlim_t budget = static_cast<rlim_t>(b.memory_bytes);
  const rlim_t as = mapped > RLIM_INFINITY - budget ? RLIM_INFINITY : mapped + budget;
  lower_limit(RLIMIT_AS, as, RLIM_INFINITY);
  // Time: the parent kills at the wall-clock budget; CPU time a little above
  // it stops the child even if the parent cannot (SIGXCPU, then SIGKILL).
  const rlim_t cpu = cpu_backstop_seconds(b);
  lower_limit(RLIMIT_CPU, cpu, cpu + 1);
  lower_limit(RLIMIT_CORE, 0, RLIM_INFINITY);
  // on_exit takes a lock another thread may have held at the fork, as
  // pcap_compile's allocations do malloc's; a child stuck there is stopped
  // like any other at the time budget.
  ::on_exit(leave_on_exit, reinterpret_cast<void*>(static_cast<std::intptr_t>(out)));

  bpf_program prog{};
  errno = 0;
  const int rc = pcap_compile(handle, &prog, expr, 1, PCAP_NETMASK_UNKNOWN);
  const int err = errno;
  AnswerHeader h{};
  bool sent = false;
  if (rc == 0) {
    h.kind = AnswerKind::compiled;
    h.count = prog.bf_len;
    sent = write_all(out, &h, sizeof h) && write_all(out, prog.bf_insns, payload_bytes(h));
  } else {
    // libpcap reports a failed allocation in words of its own ("malloc",
    // "out of memory"); errno tells it from a refused expression.
    const char* text = pcap_geterr(handle);
    h.kind = err == ENOMEM ? AnswerKind::out_of_memory : AnswerKind::invalid;
    h.count = static_cast<std::uint32_t>(std::strlen(text));
    sent = write_all(out, &h, sizeof h) && write_all(out, text, h.count);
  }
  ::_exit(sent ? 0 : 1);
}

// --- In the parent.

// Reads what is there; false at end of file.
bool drain(int fd, std::string& data) {
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      data.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n != 0;  // EAGAIN (or an error: the child's status will tell)
  }
}

// A child process: stopped and reaped when this goes out of scope, unless
// reaped before, so that no path (an exception included) leaves a zombie.
class Child {
 public:
  // The pidfd becomes readable when the child ends: another thread's fork
  // may hold a copy of the pipe's write end, so end of file alone is no sure
  // sign. Without one (kernels before 5.3), end of file or the deadline tell.
  explicit Child(pid_t pid) : pid_(pid), fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {}
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (reaped_) return;
    kill();
    int status = 0;
    rusage usage{};
    reap(status, usage);
  }

  int pidfd() const { return fd_.get(); }

  // Through the pidfd, the signal cannot reach another process that took
  // over the pid of a child reaped elsewhere (SIGCHLD ignored).
  void kill() const {
    if (fd_.get() >= 0)
      ::syscall(SYS_pidfd_send_signal, fd_.get(), SIGKILL, nullptr, 0);
    else
      ::kill(pid_, SIGKILL);
  }

  // Waits for the child to end; false if it was reaped elsewhere.
  bool reap(int& status, rusage& usage) {
    pid_t r = -1;
    do
      r = ::wait4(pid_, &status, 0, &usage);
    while (r < 0 && errno == EINTR);
    reaped_ = true;
    return r == pid_;
  }

 private:
  pid_t pid_;
  Fd fd_;
  bool reaped_ = false;
};

Outcome compile_in_child(pcap_t* handle, const std::string& expr, const TranslateBudget& b) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return failure(cannot_start(system_error("pipe2", errno)));
  Fd rd(ends[0]);
  Fd wr(ends[1]);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  const pid_t self = ::getpid();
  const auto deadline = std::chrono::steady_clock::now() + b.time;

  const pid_t pid = ::fork();
  if (pid < 0) return failure(cannot_start(system_error("fork", errno)));
  if (pid == 0) run_child(handle, expr.c_str(), wr.get(), b, page_size, self);
  Child child(pid);
  wr.reset();
  ::fcntl(rd.get(), F_SETFL, ::fcntl(rd.get(), F_GETFL) | O_NONBLOCK);

  std::string data;
  bool eof = false;
  bool exited = false;  // known from the pidfd
  bool timed_out = false;
  int poll_error = 0;
  while (!eof && !exited && !whole_answer(data)) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{rd.get(), POLLIN, 0}, {child.pidfd(), POLLIN, 0}};
    const int n = ::poll(
        fds, 2, static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), INT_MAX)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      poll_error = errno;
      break;
    }
    if (fds[0].revents != 0 && !drain(rd.get(), data)) eof = true;
    if (fds[1].revents != 0) {
      drain(rd.get(), data);
      exited = true;
    }
  }

  // The child has answered, ended, or is over its time: stop it unless it is
  // known to have exited (killing a child that is only leaving changes
  // nothing), and reap it.
  if (!exited) child.kill();
  int status = 0;
  rusage usage{};
  const bool have_status = child.reap(status, usage);
  // An answer completed just before the kill counts.
  drain(rd.get(), data);

  if (const auto h = whole_answer(data)) {
    const char* payload = data.data() + sizeof *h;
    switch (h->kind) {
      case AnswerKind::compiled: {
        std::vector<bpf_insn> insns(h->count);
        if (h->count != 0) std::memcpy(insns.data(), payload, payload_bytes(*h));
        bpf_program prog{};
        prog.bf_len = h->count;
        prog.bf_insns = insns.data();
        return {translation_of(expr, prog), {}};
      }
      case AnswerKind::invalid:
        return failure(invalid_expression(expr, std::string_view(payload, h->count)));
      case AnswerKind::out_of_memory:
        return failure(over_memory(b));
    }
  }
  if (poll_error != 0)
    return failure(
        cannot_translate("could not be watched (" + system_error("poll", poll_error) + ")"));
  if (!have_status) {
    // Reaped elsewhere (SIGCHLD ignored, or another waiter): no status.
    if (timed_out) return failure(over_time(b));
    return failure(cannot_translate("ended without an answer"));
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGXCPU) return failure(over_time(b));
    if (sig == SIGKILL) {
      if (timed_out) return failure(over_time(b));
      const auto cpu = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec;
      if (static_cast<rlim_t>(cpu) + 1 >= cpu_backstop_seconds(b)) return failure(over_time(b));
      return failure(
          cannot_translate("was killed by SIGKILL from outside (the system's out-of-memory "
                           "killer, most likely)"));
    }
    return failure(cannot_translate("was killed by " + signal_name(sig)));
  }
  return failure(cannot_translate("exited with status " + std::to_string(WEXITSTATUS(status)) +
                                  " without an answer"));
}

}  // namespace

void translate(CompileContext& cx) {
  auto& g = cx.dag->graph;
  for (auto [it, end] = boost::vertices(g); it != end && !cx.diags.too_many(); ++it) {
    DagNode& node = g[*it];
    if (node.filter->name != "bpf") continue;
    const auto& expr = std::get<std::string>(node.options.at("expr"));
    Loc loc = node.loc;
    for (const auto& o : node.origin->options)
      if (o.name == "expr") loc = o.value.loc;

    std::unique_ptr<pcap_t, decltype(&pcap_close)> handle(pcap_open_dead(DLT_EN10MB, kSnaplen),
                                                          &pcap_close);
    if (!handle) {
      cx.diags.error(loc,
                     "cannot translate the bpf expression: libpcap could not open a "
                     "handle");
      continue;
    }
    Outcome out = cx.options.translate_budget
                      ? compile_in_child(handle.get(), expr, *cx.options.translate_budget)
                      : compile_here(handle.get(), expr);
    if (out.translation)
      node.translation = std::move(out.translation);
    else
      cx.diags.error(loc, std::move(out.error));
  }
}

}  // namespace srl::compiler
