// controld: the srl control daemon. Serves srl.v1.Control (proto/srl.proto)
// on a Unix socket until SIGINT or SIGTERM.
#include <grp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "log.h"
#include "srl/controld/server.h"
#include "srl/runtime/kernel.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SRL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(SRL_ASAN)
// Under AddressSanitizer, an allocation refused (the translation budget's
// memory limit in the child that compiles a tcpdump expression) returns null
// as in a plain build, instead of ending that process with a report.
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1";
}
#endif

int main(int argc, char** argv) {
  CLI::App app("controld: the srl control daemon (gRPC service srl.v1.Control)");
  app.set_version_flag("--version", std::string("controld ") + SRL_VERSION);
  srl::controld::ServerOptions o;
  std::string socket = o.socket.string();
  app.add_option("--socket", socket, "Unix socket to listen on");
  app.add_option("--group", o.group, "group allowed to connect (socket mode 0660)");
  app.add_option("--dev", o.devices, "devices to model when a request names none (repeatable)")
      ->allow_extra_args(false);
  std::string state = o.requests.state.string(), bpffs = o.requests.bpffs.string(),
              cache = o.requests.cache.string();
  app.add_option("--state", state, "the state database (SQLite)");
  std::vector<std::string> user_dirs;
  app.add_option("--user-dir", user_dirs,
                 "a directory under which requests of users other than root may name files, "
                 "opened as that user (repeatable; default: none)")
      ->allow_extra_args(false);
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "log lines on standard error as key=value text or JSON objects")
      ->check(CLI::IsMember({"text", "json"}));
  std::string tls_cert, tls_key, tls_ca;
  app.add_option("--tcp", o.tcp,
                 "also listen on TCP for orchestration tools, with TLS both ways (ADDR:PORT)");
  app.add_option("--tls-cert", tls_cert, "the daemon's certificate (PEM), with --tcp");
  app.add_option("--tls-key", tls_key, "the daemon's private key (PEM), with --tcp");
  app.add_option("--tls-client-ca", tls_ca,
                 "the CA that signs clients' certificates (PEM), with --tcp; a client acts as "
                 "the local user its certificate's common name names");
  app.add_option("--metrics", o.metrics,
                 "serve counters in the Prometheus text format at http://ADDR/metrics "
                 "(127.0.0.1:9477, [::1]:9477 or :9477); default: not served");
  app.add_option("--metrics-users", o.metrics_users,
                 "users whose requests the metrics show (repeatable; '*': everyone's; "
                 "default: root): whoever reaches the port reads them")
      ->allow_extra_args(false);
  app.add_option("--bpffs", bpffs, "bpffs mount for pins, under srl/controld (mounted if missing)");
  app.add_option("--cache", cache, "directory for compiled programs");
  app.add_option("--member-kernel-filters", o.member_kernel_filters,
                 "filters members of the group may place in the kernel (repeatable; replaces the "
                 "default list of filters that only look at traffic)")
      ->allow_extra_args(false);
  app.add_option("--member-requests", o.member_requests,
                 "requests one user other than root may keep (default 32)");
  app.add_option("--member-kernel-insns", o.member_kernel_insns,
                 "eBPF instructions one user other than root may place in the kernel over all "
                 "their requests, as the plan counts them (default 20000)");
  app.add_option("--member-watches", o.member_watches,
                 "Watch streams (srl stats -w) one user other than root may have open at once "
                 "(default 4)");
  app.add_option("--member-watch-interval", o.member_watch_interval_ms,
                 "the shortest interval of their Watch streams, in ms (default 100; shorter "
                 "asks are raised to it)");
  app.add_option("--verifier-admission", o.requests.verifier_admission,
                 "applying or replacing a request is refused when a hook's program would take "
                 "more than this many of the verifier's 1,000,000 instructions (default "
                 "500000; the rest is kept so that removing requests always fits; below 200000 "
                 "every hook's program is in the map form, docs/kernel.md)")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--copy-rings", o.requests.copy_rings,
                 "copy rings per hook program, chosen by CPU (blocks copied up to userspace; "
                 "default 1)")
      ->check(CLI::Range(1u, 64u));
  app.add_option("--copy-area-kib", o.requests.copy_area_kib,
                 "each CPU's copy area in KiB, a power of two (default: 32 MiB shared by the "
                 "CPUs, 2 to 8 MiB each); kernel memory per hook program: CPUs x area; a full "
                 "area loses copies, never the block")
      ->check(CLI::Validator(
          [](std::string& kib) {
            std::uint64_t v = 0;
            const auto [end, ec] = std::from_chars(kib.data(), kib.data() + kib.size(), v);
            const bool ok = ec == std::errc() && end == kib.data() + kib.size() && v < (1ull << 40);
            return ok && srl::runtime::kernel::valid_copy_area(v << 10)
                       ? std::string()
                       : "a power of two from 4 to " +
                             std::to_string(srl::runtime::kernel::kCopyAreaMax >> 10);
          },
          "KIB"));
  app.set_config("--config", "/etc/srl/controld.conf",
                 "configuration file (TOML or INI: the options above as key = value)");
  // A key the daemon does not know (a typo) stops the start, naming it.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.footer(
      "Test hooks: SRL_FAIL_AT=STEP makes the transaction step with that key (load:eth0, or\n"
      "load) or 1-based index fail; SRL_CRASH_AT=STEP kills the daemon right after journaling\n"
      "it; SRL_JOURNAL_FAIL_FROM=N makes every write to the state database from the N-th\n"
      "after start fail as on a full disk. Exit status: 0 after SIGINT or SIGTERM, 1 when it\n"
      "cannot start, 2 for a bad option or configuration file.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (109 for an unknown option, ...) would differ from
    // every other srl command's: 2 for a usage error, as they say.
    return app.exit(e) == 0 ? 0 : 2;
  }
  o.socket = socket;
  srl::controld::log::set_format(log_format == "json" ? srl::controld::log::Format::json
                                                      : srl::controld::log::Format::text);
  o.requests.state = state;
  o.requests.bpffs = bpffs;
  o.requests.cache = cache;
  o.requests.user_dirs.assign(user_dirs.begin(), user_dirs.end());
  o.tls_cert = tls_cert;
  o.tls_key = tls_key;
  o.tls_client_ca = tls_ca;
  if (const char* v = std::getenv("SRL_FAIL_AT")) o.requests.fail_at = v;
  if (const char* v = std::getenv("SRL_CRASH_AT")) o.requests.crash_at = v;
  if (const char* v = std::getenv("SRL_JOURNAL_FAIL_FROM"))
    o.requests.journal_fail_from = std::strtoull(v, nullptr, 10);

  // Signals are taken by a thread of their own, which shuts the server down
  // (gRPC's shutdown is not async-signal-safe).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  try {
    auto server = srl::controld::Server::start(o);
    for (const auto& e : server->start_errors())
      srl::controld::log::event("error", "start", {{"problem", e}});
    if (::getgrnam(o.group.c_str()) == nullptr)
      srl::controld::log::event(
          "warning", "no-group",
          {{"group", o.group},
           {"socket_mode", "0600"},
           {"fix", "only root can use the socket; for other users: groupadd --system " + o.group +
                       ", usermod -aG " + o.group + " USER, and restart controld"}});
    srl::controld::log::event("info", "listening", {{"socket", server->socket().string()}});
    if (!o.tcp.empty())
      srl::controld::log::event(
          "info", "listening",
          {{"tcp_port", std::to_string(server->tcp_port())}, {"tls", "both ways"}});
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&set, &sig);
      srl::controld::log::event("info", "stopping", {{"signal", std::to_string(sig)}});
      server->shutdown();
    });
    server->wait();
    waiter.join();
  } catch (const std::exception& e) {
    std::cerr << "controld: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
