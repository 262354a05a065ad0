// srl run: compile a request, deploy it, show its counters until stopped,
// and remove everything it created. The control plane runs embedded in this
// process (no daemon). Nodes go where the optimizer's plan puts them: the
// kernel part as one program per device hook, the userspace part in the
// engine of this process, joined by AF_XDP sockets; a request reading a
// capture file (pcapin) runs in userspace only.
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_options.h"
#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/control/pipeline.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/runtime/counter_report.h"
#include "srl/runtime/datapath.h"
#include "srl/runtime/kernel.h"

namespace srl::cli {
namespace {

namespace fs = std::filesystem;
namespace kernel = runtime::kernel;

volatile std::sig_atomic_t g_stop = 0;
int g_wake_write = -1;  // the handler's end of the pipe the report loop sleeps on
void on_signal(int) {
  g_stop = 1;
  if (g_wake_write >= 0) {
    const int saved = errno;
    [[maybe_unused]] const auto n = ::write(g_wake_write, "", 1);
    errno = saved;
  }
}

struct RunOptions {
  std::vector<std::string> files, exprs;
  std::string mode = "auto", hook = "auto", bpffs = "/sys/fs/bpf", cache = "/var/cache/srl/bpf";
  std::vector<std::string> devices;
  double duration = 0, interval = 1, rate = 1e6;
  bool json = false;
  std::size_t workers = 1, batch = 32;
  std::uint32_t copy_rings = 1, copy_ring_kib = 0, copy_window_kib = 0;
  ProfileOptions profile;
};

// A test hook: SRL_FAIL_AT=KEY makes the deploy step with that key fail
// ("load:eth0", or "load" for the first load step), to check that a failure
// at any step leaves nothing behind.
struct InjectedFailure : runtime::StepObserver {
  void before(const runtime::Step& step) override {
    const char* at = std::getenv("SRL_FAIL_AT");
    if (at == nullptr || *at == '\0') return;
    const std::string want = at;
    if (step.key == want || step.key.starts_with(want + ":"))
      throw kernel::KernelError("injected failure at step '" + step.key + "'");
  }
};

bool process_alive(const std::string& pid) {
  try {
    return ::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno == EPERM;
  } catch (...) {
    return false;
  }
}

// Pins of runs whose process is gone (killed with SIGKILL, say) keep their
// programs attached; unpinning them is what detaches them.
void remove_stale_runs(const fs::path& runs) {
  std::error_code ec;
  if (!fs::exists(runs, ec)) return;
  for (const auto& run : fs::directory_iterator(runs, ec)) {
    if (process_alive(run.path().filename().string())) continue;
    // XDP links go with their pins; TC filters are not links and must be
    // detached, if they still run the pinned program.
    for (const auto& dev : fs::directory_iterator(run.path(), ec)) {
      // An XDP hook in libxdp's dispatcher is held by libxdp's pins too:
      // taken over and dropped, it leaves the dispatcher.
      if (kernel::XdpHook::pinned_at(dev.path())) try {
          kernel::XdpHook::adopt(dev.path()).reset();
        } catch (const std::exception&) {
        }
      const auto program = dev.path() / "tc-program";
      const unsigned ifindex = if_nametoindex(dev.path().filename().c_str());
      if (ifindex != 0 && fs::exists(program, ec))
        kernel::TcHook::remove_abandoned(static_cast<int>(ifindex), program);
    }
    fs::remove_all(run.path(), ec);
    std::cerr << "srl: removed the datapath of ended run " << run.path().filename().string()
              << "\n";
  }
}

// The counters report (docs/counters.md): one row per request node, the
// requests named r1, r2, ... in the order given.
runtime::CounterReport collect_report(const compiler::MergedRequests& merged,
                                      const runtime::Datapath& datapath) {
  runtime::CounterReport report;
  report.time_ns = runtime::wall_clock_ns();
  const auto& g = merged.dag.graph;
  const auto counters = datapath.counters();
  std::vector<std::string> requests;
  for (std::size_t v = 0; v < merged.members.size(); ++v)
    for (std::size_t i = 0; i < merged.members[v].size(); ++i) {
      const auto [label, id] = runtime::split_member(merged.members[v][i]);
      const std::string request = label.empty() ? "r1" : label;
      if (std::find(requests.begin(), requests.end(), request) == requests.end())
        requests.push_back(request);
      report.nodes.push_back(
          runtime::node_report(request, id, merged.member_names[v][i], g, v,
                               v < counters.size() ? counters[v] : runtime::VertexCounters{}));
    }
  // Request by request, in the order of their nodes.
  std::stable_sort(report.nodes.begin(), report.nodes.end(), [&](const auto& a, const auto& b) {
    const auto ia = std::find(requests.begin(), requests.end(), a.request);
    const auto ib = std::find(requests.begin(), requests.end(), b.request);
    if (ia != ib) return ia < ib;
    return std::stoul(a.node.substr(1)) < std::stoul(b.node.substr(1));
  });
  for (const auto& c : datapath.channels())
    report.channels.push_back({c.name, c.kind, requests, c.blocks, c.bytes, c.drops, {}, {}});
  return report;
}

int run(const RunOptions& o) {
  // Every request given, compiled on its own, then merged: requests on the
  // same device share one program and their common stateless prefix.
  std::vector<std::pair<std::string, std::string>> sources;  // name, text
  for (const auto& f : o.files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::cerr << "srl run: cannot read " << f << "\n";
      return kExitUsage;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    sources.emplace_back(f, ss.str());
  }
  for (const auto& e : o.exprs)
    sources.emplace_back("<expr>", e);
  // No --dev: the only Ethernet device that is up, as `srl plan` plans
  // (optimizer::up_ethernet_devices); with several, the request must say.
  const auto up = o.devices.empty() ? optimizer::up_ethernet_devices() : std::vector<std::string>{};
  const std::vector<std::string> default_devices = up.size() == 1 ? up : o.devices;
  std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
  bool ok = true;
  for (const auto& [name, text] : sources) {
    compiler::CompileOptions copts;
    copts.default_devices = default_devices;
    copts.file_name = name;
    auto r = std::make_shared<compiler::CompileResult>(compiler::compile(text, copts));
    std::cerr << r->diagnostics.render(*r->source);
    ok = ok && r->ok();
    compiled.push_back(std::move(r));
  }
  if (!ok) return kExitFailure;
  const auto requests = control::merge(compiled, control::numbered_labels(compiled.size()));
  const auto& dag = requests.merged.dag;

  // The devices blocks enter at: the rx nodes'.
  std::vector<std::string> devices;
  try {
    devices = control::rx_devices(requests);
  } catch (const control::PipelineError&) {
    std::string list;
    for (const auto& d : up)
      list += (list.empty() ? "" : ", ") + d;
    std::cerr << "srl run: no device to receive from: "
              << (up.empty()
                      ? std::string("no Ethernet device is up")
                      : std::to_string(up.size()) + " Ethernet devices are up (" + list + ")")
              << "; give --dev IF or (rx, dev=IF)\n";
    return kExitUsage;
  }
  if (o.devices.empty() && up.size() == 1 &&
      std::find(devices.begin(), devices.end(), up.front()) != devices.end())
    std::cerr << "srl: receiving on " << up.front()
              << ", the only Ethernet device that is up (--dev chooses)\n";

  // Where each node runs: the optimizer's plan for this machine, unless a
  // hook is forced (then the fixed rule: the kernel as far as it can go).
  // --xdp-mode fixes the mode (the plan's model has it, a profile does
  // not change it); auto: native where the driver has it, unless the
  // profile measured generic cheaper.
  std::optional<kernel::XdpMode> xdp_mode;
  if (o.mode == "native") xdp_mode = kernel::XdpMode::native;
  if (o.mode == "generic") xdp_mode = kernel::XdpMode::generic;
  // --workers bounds the plan's replica sets; without a plan (no device,
  // a hook forced) the engine runs that many.
  runtime::Placement place;
  if (devices.empty()) {
    place.in_kernel.assign(dag.node_count(), false);
    place.workers = o.workers;
  } else if (o.hook != "auto") {
    place = runtime::fixed_placement(
        dag, devices, {o.hook == "tc" ? runtime::HookKind::tc : runtime::HookKind::xdp, xdp_mode});
    place.workers = o.workers;
  } else {
    try {
      optimizer::DiscoveryOptions discovery;
      if (xdp_mode) discovery.xdp_mode = std::string(kernel::to_string(*xdp_mode));
      const auto model = control::discover(requests, discovery);
      optimizer::PlanOptions options;
      options.input_rate_pps = o.rate;
      options.max_replicas = static_cast<std::uint32_t>(o.workers);
      options.parallel = o.workers > 1;
      const auto plan = control::plan(requests, model, o.profile.cost(), options);
      place = control::placement(requests, plan);
      for (auto& [dev, hook] : place.hooks)
        if (hook.kind == runtime::HookKind::xdp && xdp_mode) hook.xdp_mode = xdp_mode;
      std::cerr << "srl: plan: " << plan.nodes.size() << " nodes, cost "
                << plan.total_cost_ns_per_s / 1e6 << " ms of CPU per second at "
                << plan.input_rate_pps / 1e6 << " Mpps (costs: " << plan.profile
                << "; 'srl plan' explains it)\n";
      // What discovery found on the way (a hook another program holds, and
      // so the plan runs at TC) is said before anything deploys.
      for (const auto& note : plan.notes)
        std::cerr << "srl: note: " << note << "\n";
      if (o.workers > 1)
        std::cerr << "srl: the plan runs the userspace part on " << place.workers << " of at most "
                  << o.workers << " workers (--workers)\n";
    } catch (const control::PipelineError& e) {
      std::cerr << "srl run: " << e.what() << "\n";
      return control::exit_code(e.stage());
    }
  }

  runtime::DatapathOptions dopts;
  dopts.bpffs = o.bpffs;
  dopts.cache = o.cache;
  dopts.batch = o.batch;
  dopts.copy.rings = o.copy_rings;
  if (o.copy_ring_kib != 0) dopts.copy.ring_bytes = o.copy_ring_kib << 10;
  if (o.copy_window_kib != 0) dopts.copy.window_bytes = o.copy_window_kib << 10;
  const fs::path runs = fs::path(o.bpffs) / "srl" / "run";
  dopts.pin_root = runs / std::to_string(getpid());
  std::unique_ptr<runtime::Datapath> datapath;
  // The pin directory goes with the datapath, on failure and at the end.
  auto remove_all = [&] {
    datapath.reset();
    std::error_code ec;
    fs::remove_all(dopts.pin_root, ec);
  };
  try {
    bool any_kernel = false;
    for (bool k : place.in_kernel)
      any_kernel = any_kernel || k;
    if (any_kernel) {
      kernel::ensure_bpffs(o.bpffs);
      remove_stale_runs(runs);
    }
    InjectedFailure inject;
    datapath = runtime::Datapath::build(dag, place, dopts, &inject);
    for (const auto& line : datapath->report())
      std::cerr << "srl: " << line << "\n";
  } catch (const std::exception& e) {
    remove_all();
    std::cerr << "srl run: " << e.what() << "\n";
    return kExitFailure;
  }

  g_stop = 0;
  // The report loop sleeps until the next report is due or a signal comes:
  // an idle `srl run` does not wake every few milliseconds.
  int wake[2] = {-1, -1};
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) == 0) g_wake_write = wake[1];
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::optional<runtime::CounterReport> before;
  auto print = [&](runtime::CounterReport report, bool final) {
    report.final = final;
    if (before) runtime::add_rates(report, *before);
    if (o.json) {
      std::cout << runtime::to_json(report).dump() << std::endl;
    } else {
      std::ostringstream heading;
      heading << "after " << std::fixed << std::setprecision(1) << elapsed() << " s";
      std::cout << runtime::to_table(report, heading.str()) << (final ? "" : "\n") << std::flush;
    }
    before = std::move(report);
  };
  double next_report = o.interval;
  int rc = kExitOk;
  // A filter that lost what it was to keep (a sink that cannot write) is
  // said as soon as a report sees it, and the run ends non-zero.
  std::set<std::string> said;
  auto check_failures = [&](const runtime::CounterReport& report) {
    for (const auto& n : report.nodes) {
      if (n.failure.empty()) continue;
      rc = kExitFailure;
      if (said.insert(n.request + "/" + n.node).second)
        std::cerr << "srl run: " << n.node << " " << n.name << " (" << n.filter
                  << "): " << n.failure << "\n";
    }
  };
  try {
    // A userspace-only request (pcapin) ends when its input does.
    // Only a request without hooks (pcapin) can end by itself: look often then.
    const double end_check = datapath->hooked_devices().empty() ? 0.02 : 1.0;
    while (g_stop == 0 && (o.duration <= 0 || elapsed() < o.duration) && !datapath->ended()) {
      double until = std::min(next_report, o.duration > 0 ? o.duration : next_report);
      until = std::min(until - elapsed(), end_check);
      pollfd p{wake[0], POLLIN, 0};
      if (wake[0] >= 0)
        ::poll(&p, 1, std::max(1, static_cast<int>(until * 1000.0 + 0.999)));
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (elapsed() < next_report || (o.duration > 0 && elapsed() >= o.duration)) continue;
      next_report += o.interval;
      auto report = collect_report(requests.merged, *datapath);
      check_failures(report);
      print(std::move(report), false);
    }
    // Inputs first: the hooks detach (their counters read one last time),
    // then the engine finishes what it holds (open streams end, files are
    // flushed) before the final report.
    datapath->remove();
    auto report = collect_report(requests.merged, *datapath);
    check_failures(report);
    print(std::move(report), true);
  } catch (const std::exception& e) {
    std::cerr << "srl run: " << e.what() << "\n";
    rc = kExitFailure;
  }
  remove_all();
  g_wake_write = -1;
  for (int fd : wake)
    if (fd >= 0) ::close(fd);
  return rc;
}

}  // namespace

void add_run_command(CLI::App& app, int& result) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("run", "compile a request, run it, show its counters; remove it on exit");
  cmd->add_option("file", o->files,
                  "request files (several run together, sharing common prefixes)");
  cmd->add_option("-e,--expr", o->exprs, "request text (repeatable)")->allow_extra_args(false);
  cmd->add_option("--dev", o->devices,
                  "device to receive from (the implicit rx; repeatable); default: the only "
                  "Ethernet device that is up")
      ->allow_extra_args(false);
  cmd->add_option("--duration", o->duration,
                  "stop after this many seconds (default: until Ctrl-C or SIGTERM)");
  cmd->add_option("--interval", o->interval, "seconds between counter reports")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--rate", o->rate,
                  "blocks per second the plan assumes entering each device (default 1e6; as "
                  "srl plan --rate)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-j,--json", o->json, "one JSON object per report; the last has \"final\": true");
  cmd->add_option("--xdp-mode", o->mode,
                  "auto (native if the driver has it, else generic), native or generic")
      ->check(CLI::IsMember({"auto", "native", "generic"}));
  cmd->add_option("--hook", o->hook,
                  "auto (the optimizer's plan, default), or force xdp or tc (ingress)")
      ->check(CLI::IsMember({"auto", "xdp", "tc"}));
  o->profile.add(*cmd);
  cmd->add_option("--bpffs", o->bpffs, "bpffs mount for pins (mounted if missing)");
  cmd->add_option("--cache", o->cache, "directory for compiled programs");
  cmd->add_option("--workers", o->workers,
                  "at most this many userspace worker threads (the plan's replica sets; with a "
                  "hook forced or no device, exactly this many); blocks are split between "
                  "them by flow")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--batch", o->batch, "largest batch of blocks the userspace engine takes")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--copy-rings", o->copy_rings,
                  "copy rings per device hook, chosen by CPU (blocks copied up to userspace)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--copy-ring-kib", o->copy_ring_kib,
                  "each CPU's copy area in KiB, a power of two (default: 32 MiB shared by "
                  "the CPUs, 2 to 8 MiB each); a full area loses copies, never the block")
      ->check(CLI::Validator(
          [](std::string& kib) {
            std::uint64_t v = 0;
            const auto [end, ec] = std::from_chars(kib.data(), kib.data() + kib.size(), v);
            const bool ok = ec == std::errc() && end == kib.data() + kib.size() && v < (1ull << 40);
            return ok && runtime::kernel::valid_copy_area(v << 10)
                       ? std::string()
                       : "a power of two from 4 to " +
                             std::to_string(runtime::kernel::kCopyAreaMax >> 10);
          },
          "KIB"));
  cmd->add_option("--copy-window-kib", o->copy_window_kib,
                  "the part of its area a CPU writes while the reader keeps up, in KiB (default "
                  "512; the whole area when larger): the copies' working set in cache")
      ->check(CLI::Range(4, 65536));
  cmd->footer(
      "Nodes run where the optimizer places them (srl plan shows where and why): the kernel\n"
      "part as one program per device hook, the userspace part in this process. Blocks the\n"
      "userspace part only observes are copied up through ring buffers and go on to the host;\n"
      "blocks a userspace drop or tx mode=forward consumes are taken (AF_XDP from XDP). With\n"
      "--hook forced, the kernel takes every node it can implement whose\n"
      "inputs it runs. A request reading a capture (pcapin) runs in userspace and ends with\n"
      "its input. Counters: docs/counters.md. Exit status: 0 ok, 1 compile, plan or deploy\n"
      "error, or a node that lost blocks it was to keep (a sink that cannot write), 2 usage.");
  cmd->callback([o, &result] {
    if (o->files.empty() && o->exprs.empty()) {
      std::cerr << "srl run: give a request FILE or -e EXPR\n";
      result = kExitUsage;
      return;
    }
    result = run(*o);
  });
}

}  // namespace srl::cli
