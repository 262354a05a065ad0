// With a TranslateBudget, bpf expressions are compiled by libpcap in a child
// process that is stopped past its time or memory. These check that the
// bounded translation gives what the unbounded one gives, and that an
// expression over its budget is refused with the budget's diagnostic, leaving
// no child process and no descriptor behind. They check behaviour, not
// timings.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "srl/compiler/compiler.h"

#if defined(__SANITIZE_ADDRESS__)
#define SRL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SRL_TEST_ASAN 1
#endif
#endif
#ifdef SRL_TEST_ASAN
// AddressSanitizer's allocator reports and exits when the address-space
// limit refuses memory; this lets it return null as libc's does, so the
// child's compile meets the refusal the way it does without the sanitizer.
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1";
}
#endif

using namespace srl;
using compiler::TranslateBudget;
using std::chrono::milliseconds;

namespace {

compiler::CompileResult compile_bpf(const std::string& expr,
                                    std::optional<TranslateBudget> budget) {
  compiler::CompileOptions o;
  o.translate_budget = budget;
  return compiler::compile("(bpf, expr=\"" + expr + "\") > (count)", o);
}

const compiler::Translation* translation_of(const compiler::CompileResult& r) {
  if (!r.dag) return nullptr;
  const auto& g = r.dag->graph;
  for (auto [it, end] = boost::vertices(g); it != end; ++it)
    if (g[*it].translation) return &*g[*it].translation;
  return nullptr;
}

// "A or A or ...", `n` alternatives, `term` with its number in place of '#'.
std::string alternatives(int n, const std::string& term) {
  std::string out;
  for (int i = 1; i <= n; ++i) {
    if (i > 1) out += " or ";
    std::string t = term;
    t.replace(t.find('#'), 1, std::to_string(i));
    out += t;
  }
  return out;
}

// No child of this process remains, running or unreaped.
bool no_children() {
  errno = 0;
  return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

// The one error of `r`, at the expression (column 12 of "(bpf, expr=...").
std::string expression_error(const compiler::CompileResult& r) {
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.diagnostics.all().size() == 1);
  const auto& d = r.diagnostics.all().front();
  CHECK(d.loc.line == 1);
  CHECK(d.loc.col == 12);
  return d.message;
}

}  // namespace

TEST_CASE("translate budget: ordinary expressions give the same instructions with and without") {
  const TranslateBudget budget;
  // The last one's instructions (over 8,000) are more than a pipe holds.
  for (const std::string& expr : {std::string("udp port 53"), std::string("ip6 protochain 6"),
                                  std::string("ip and (tcp[tcpflags] & tcp-syn) != 0"),
                                  alternatives(300, "ip6 protochain #")}) {
    CAPTURE(expr.substr(0, 40));
    const auto here = compile_bpf(expr, std::nullopt);
    const auto bounded = compile_bpf(expr, budget);
    REQUIRE_MESSAGE(here.ok(), here.diagnostics.render(*here.source));
    REQUIRE_MESSAGE(bounded.ok(), bounded.diagnostics.render(*bounded.source));
    const auto* a = translation_of(here);
    const auto* b = translation_of(bounded);
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    CHECK_FALSE(a->insns.empty());
    CHECK(a->insns == b->insns);
    CHECK(a->kind == b->kind);
    CHECK(a->linktype == b->linktype);
    CHECK(a->source == b->source);
  }
  CHECK(translation_of(compile_bpf(alternatives(300, "ip6 protochain #"), budget))->insns.size() >
        8192);
  CHECK(no_children());
}

TEST_CASE("translate budget: libpcap's errors read the same with and without") {
  for (const std::string expr : {"udp prot 53", "port 99999", "ether host 1:2:3:4:5:6:7"}) {
    CAPTURE(expr);
    const auto here = compile_bpf(expr, std::nullopt);
    const auto bounded = compile_bpf(expr, TranslateBudget{});
    const std::string message = expression_error(here);
    CHECK(message.rfind("invalid bpf expression \"" + expr + "\": ", 0) == 0);
    CHECK(expression_error(bounded) == message);
    CHECK(bounded.diagnostics.render(*bounded.source) == here.diagnostics.render(*here.source));
  }
  CHECK(no_children());
}

TEST_CASE("translate budget: an expression over its time is stopped, its process reaped") {
  const std::size_t descriptors = open_descriptors();
  TranslateBudget budget;
  budget.time = milliseconds(300);
  // Memory well above what these alternatives take, so time is what runs out
  // (libpcap would take minutes over them).
  budget.memory_bytes = std::size_t{1} << 30;
  const auto r = compile_bpf(alternatives(2000, "tcp dst port #"), budget);
  CHECK(expression_error(r) ==
        "the bpf expression's translation exceeded its time budget of 300 ms (libpcap's compile "
        "time grows quickly with alternatives); expected a shorter expression: split it over "
        "several bpf nodes or requests");
  CHECK(no_children());
  CHECK(open_descriptors() == descriptors);

  budget.time = milliseconds(0);
  const auto at_once = compile_bpf("udp port 53", budget);
  CHECK(expression_error(at_once).find("exceeded its time budget of 0 s") != std::string::npos);
  CHECK(no_children());
  CHECK(open_descriptors() == descriptors);
}

TEST_CASE("translate budget: an expression over its memory is refused") {
  const std::size_t descriptors = open_descriptors();
  TranslateBudget budget;
  budget.memory_bytes = std::size_t{16} << 20;
  // libpcap's optimizer asks for hundreds of MiB at once over these.
  const auto r = compile_bpf(alternatives(1000, "port #"), budget);
  CHECK(expression_error(r) ==
        "the bpf expression's translation exceeded its memory budget of 16 MiB (libpcap's "
        "compile memory grows quickly with alternatives); expected a shorter expression: split "
        "it over several bpf nodes or requests");
  CHECK(no_children());
  CHECK(open_descriptors() == descriptors);
}

namespace {
pid_t test_pid = 0;
int exit_marker_fd = -1;
void mark_exit_in_child() {
  if (getpid() != test_pid) (void)!write(exit_marker_fd, "x", 1);
}
}  // namespace

TEST_CASE(
    "translate budget: libpcap's exit() in the child runs none of the parent's exit handlers") {
  // Without room even for its scanner's buffer, libpcap's scanner calls
  // exit(); that is still the memory budget, and none of this process's exit
  // handlers may run in the child.
  int marker[2];
  REQUIRE(pipe2(marker, O_CLOEXEC) == 0);
  test_pid = getpid();
  exit_marker_fd = marker[1];
  REQUIRE(std::atexit(mark_exit_in_child) == 0);
  TranslateBudget budget;
  budget.memory_bytes = 0;
  std::string expr = "udp port 53";
  while (expr.size() < 300'000)
    expr += " or udp port 53";
  // The scanner says so on stderr; keep it out of the test's output.
  const int saved_stderr = dup(2);
  const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  dup2(null, 2);
  const auto r = compile_bpf(expr, budget);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  close(null);
  CHECK(expression_error(r).find("exceeded its memory budget of 0 bytes") != std::string::npos);
  CHECK(no_children());
  close(marker[1]);
  exit_marker_fd = -1;
  char c = 0;
  CHECK(read(marker[0], &c, 1) == 0);  // end of file: no handler wrote
  close(marker[0]);
}

TEST_CASE("translate budget: each expression has its own, each error its own position") {
  TranslateBudget budget;
  budget.memory_bytes = std::size_t{16} << 20;
  compiler::CompileOptions o;
  o.translate_budget = budget;
  const auto r = compiler::compile("(bpf, expr=\"udp port 53\") > (count);\n(bpf, expr=\"" +
                                       alternatives(1000, "port #") +
                                       "\") > (count);\n(bpf, expr=\"udp prot 53\") > (count)",
                                   o);
  REQUIRE(r.diagnostics.all().size() == 2);
  CHECK(r.diagnostics.all()[0].loc.line == 2);
  CHECK(r.diagnostics.all()[0].message.find("exceeded its memory budget of 16 MiB") !=
        std::string::npos);
  CHECK(r.diagnostics.all()[1].loc.line == 3);
  CHECK(r.diagnostics.all()[1].message.find("can't parse filter expression") != std::string::npos);
  CHECK(no_children());
}
