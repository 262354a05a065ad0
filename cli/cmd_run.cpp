// srl run: compile a request, deploy it, show its counters until stopped,
// and remove everything it created. The control plane runs embedded in this
// process (no daemon). Until the optimizer places nodes, every node goes to
// the kernel space: one XDP program per device.
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/runtime/kernel.h"

namespace srl::cli {
namespace {

namespace fs = std::filesystem;
namespace kernel = runtime::kernel;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct RunOptions {
  std::vector<std::string> files, exprs;
  std::string mode = "auto", hook = "auto", bpffs = "/sys/fs/bpf", cache = "/var/cache/srl/bpf";
  std::vector<std::string> devices;
  double duration = 0, interval = 1;
  bool json = false;
};

// A test hook: SRL_FAIL_AT=STEP makes that deploy step fail, to check that
// a failure at any step leaves nothing behind.
void maybe_fail(const char* step) {
  const char* at = std::getenv("SRL_FAIL_AT");
  if (at != nullptr && std::string(at) == step)
    throw kernel::KernelError(std::string("injected failure at step '") + step + "'");
}

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

struct Deployed {
  std::string dev;
  std::unique_ptr<kernel::XdpHook> xdp;  // one of these two
  std::unique_ptr<kernel::TcHook> tc;
  std::vector<kernel::NodeSlot> nodes;

  const kernel::KernelProgram& program() const { return xdp ? xdp->program() : tc->program(); }
};

std::string format_table(const std::vector<kernel::NodeSlot>& nodes,
                         const std::vector<kernel::Counter>& counters, double seconds) {
  std::ostringstream out;
  char line[256];
  std::size_t width = 4;
  for (const auto& n : nodes)
    width = std::max(width, n.id.size());
  const int w = static_cast<int>(width);
  std::snprintf(line, sizeof line, "%-*s %-10s %-14s %14s %16s %14s\n", w, "node", "filter", "name",
                "blocks", "bytes", "accepted");
  out << "after " << std::fixed << std::setprecision(1) << seconds << " s\n" << line;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    std::snprintf(line, sizeof line, "%-*s %-10s %-14s %14llu %16llu %14llu\n", w,
                  nodes[i].id.c_str(), nodes[i].filter.c_str(), nodes[i].name.value_or("-").c_str(),
                  static_cast<unsigned long long>(counters[i].packets),
                  static_cast<unsigned long long>(counters[i].bytes),
                  static_cast<unsigned long long>(counters[i].accepted));
    out << line;
  }
  return out.str();
}

nlohmann::ordered_json counters_json(const std::vector<kernel::NodeSlot>& nodes,
                                     const std::vector<kernel::Counter>& counters, double seconds,
                                     bool final) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < nodes.size(); ++i)
    list.push_back({{"id", nodes[i].id},
                    {"filter", nodes[i].filter},
                    {"name", nodes[i].name ? nlohmann::ordered_json(*nodes[i].name) : nullptr},
                    {"blocks", counters[i].packets},
                    {"bytes", counters[i].bytes},
                    {"accepted", counters[i].accepted}});
  return {{"seconds", seconds}, {"final", final}, {"nodes", std::move(list)}};
}

// The counters of all hooks, summed per node (a node on several devices'
// hooks counts the blocks of all of them).
std::vector<kernel::Counter> total_counters(const std::vector<Deployed>& hooks) {
  std::vector<kernel::Counter> sum(hooks.front().nodes.size());
  for (const auto& d : hooks) {
    const auto c = d.program().counters();
    for (std::size_t i = 0; i < sum.size(); ++i) {
      sum[i].packets += c[i].packets;
      sum[i].bytes += c[i].bytes;
      sum[i].accepted += c[i].accepted;
    }
  }
  return sum;
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
  std::vector<compiler::CompileResult> compiled;
  bool ok = true;
  for (const auto& [name, text] : sources) {
    compiler::CompileOptions copts;
    copts.default_devices = o.devices;
    copts.file_name = name;
    compiled.push_back(compiler::compile(text, copts));
    std::cerr << compiled.back().diagnostics.render(*compiled.back().source);
    ok = ok && compiled.back().ok();
  }
  if (!ok) return kExitFailure;
  std::vector<const compiler::RequestDag*> dags;
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < compiled.size(); ++i) {
    dags.push_back(&*compiled[i].dag);
    labels.push_back(compiled.size() == 1 ? std::string() : "r" + std::to_string(i + 1));
  }
  const auto merged = compiler::merge_requests(dags, labels);
  const auto& dag = merged.dag;

  // The devices blocks enter at: the rx nodes'.
  std::vector<std::string> devices;
  for (auto v : dag.sources()) {
    const auto& node = dag.graph[v];
    if (node.filter_name() != "rx") {
      std::cerr << "srl run: source '" << node.filter_name() << "' (" << node.id
                << ") needs the userspace space, which srl run does not deploy yet\n";
      return kExitFailure;
    }
    const auto dev = node.options.find("dev");
    if (dev == node.options.end()) {
      std::cerr << "srl run: no device to receive from; give --dev IF or (rx, dev=IF)\n";
      return kExitUsage;
    }
    const auto& name = std::get<std::string>(dev->second);
    if (std::find(devices.begin(), devices.end(), name) == devices.end()) devices.push_back(name);
  }

  // Where each node runs: the optimizer's plan for this machine, unless a
  // hook is forced. Until the userspace space can be deployed, a plan that
  // puts a node anywhere but a kernel hook is refused, naming the node.
  std::map<std::string, std::string> hook_of_device;  // dev -> "xdp" | "tc"
  if (o.hook != "auto") {
    for (const auto& dev : devices)
      hook_of_device[dev] = o.hook;
  } else {
    try {
      optimizer::DiscoveryOptions discovery;
      discovery.devices = devices;
      const auto model = optimizer::discover(discovery);
      std::vector<optimizer::RequestInput> inputs;
      for (std::size_t i = 0; i < compiled.size(); ++i)
        inputs.push_back({&*compiled[i].dag, labels[i], compiled[i].source.get()});
      const auto plan = optimizer::plan(inputs, model);
      for (const auto& node : plan.nodes) {
        const auto colon = node.space.find(':');
        const std::string kind = node.space.substr(0, colon);
        const std::string dev = colon == std::string::npos ? "" : node.space.substr(colon + 1);
        if (kind != "xdp" && kind != "tc") {
          std::cerr << "srl run: the plan places " << node.id << " (" << node.filter << ") in "
                    << node.space << ", and srl run deploys only the kernel hooks so far; see "
                    << "'srl plan' for the placement and its reasons, or pin with space=xdp\n";
          return kExitFailure;
        }
        auto [it, fresh] = hook_of_device.emplace(dev, kind);
        if (!fresh && it->second != kind) {
          std::cerr << "srl run: the plan uses both the XDP and the TC hook of " << dev
                    << ", and srl run deploys one hook per device so far; force one with --hook\n";
          return kExitFailure;
        }
      }
      std::cerr << "srl: plan: " << plan.nodes.size() << " nodes, cost "
                << plan.total_cost_ns_per_s / 1e6 << " ms of CPU per second at "
                << plan.input_rate_pps / 1e6 << " Mpps ('srl plan' explains it)\n";
    } catch (const std::exception& e) {
      std::cerr << "srl run: " << e.what() << "\n";
      return kExitFailure;
    }
  }

  std::optional<kernel::XdpMode> mode;
  if (o.mode == "native") mode = kernel::XdpMode::native;
  if (o.mode == "generic") mode = kernel::XdpMode::generic;

  const fs::path runs = fs::path(o.bpffs) / "srl" / "run";
  const fs::path mine = runs / std::to_string(getpid());
  std::vector<Deployed> hooks;
  // Everything created is owned by `hooks` and `mine`: on any failure below,
  // the hooks detach as they are destroyed, and the pin directory goes.
  auto remove_all = [&] {
    hooks.clear();
    std::error_code ec;
    fs::remove_all(mine, ec);
  };
  try {
    kernel::ensure_bpffs(o.bpffs);
    remove_stale_runs(runs);
    for (const auto& dev : devices) {
      const unsigned ifindex = if_nametoindex(dev.c_str());
      if (ifindex == 0) throw kernel::KernelError("no network device '" + dev + "'");
      maybe_fail("generate");
      const bool tc = hook_of_device[dev] == "tc";
      auto gen = tc ? kernel::generate_tc(dag, static_cast<int>(ifindex), dev)
                    : kernel::generate_xdp(dag, static_cast<int>(ifindex), dev);
      maybe_fail("compile");
      const auto object = kernel::compile_bpf(gen.source, o.cache);
      maybe_fail("load");
      auto program = kernel::KernelProgram::load(object, gen.nodes.size());
      maybe_fail("attach");
      for (std::size_t i = 0; i < gen.nodes.size(); ++i) {
        // Show each node as the request nodes it stands for.
        std::string shown;
        for (const auto& m : merged.members[i])
          shown += (shown.empty() ? "" : ",") + m;
        gen.nodes[i].id = shown;
      }
      Deployed d{dev, nullptr, nullptr, std::move(gen.nodes)};
      if (tc) {
        d.tc = kernel::TcHook::attach(std::move(program), static_cast<int>(ifindex), mine / dev);
        std::cerr << "srl: " << dev << ": TC ingress, program id " << d.tc->program().id()
                  << ", pinned at " << (mine / dev).string() << "\n";
      } else {
        d.xdp = kernel::XdpHook::attach(std::move(program), static_cast<int>(ifindex), mode,
                                        mine / dev);
        std::cerr << "srl: " << dev << ": XDP " << kernel::to_string(d.xdp->mode())
                  << ", program id " << d.xdp->program().id() << ", link id " << d.xdp->link_id()
                  << ", pinned at " << (mine / dev).string() << "\n";
      }
      hooks.push_back(std::move(d));
      maybe_fail("activate");
    }
  } catch (const std::exception& e) {
    remove_all();
    std::cerr << "srl run: " << e.what() << "\n";
    return kExitFailure;
  }

  g_stop = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double next_report = o.interval;
  int rc = kExitOk;
  try {
    while (g_stop == 0 && (o.duration <= 0 || elapsed() < o.duration)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (elapsed() < next_report || (o.duration > 0 && elapsed() >= o.duration)) continue;
      next_report += o.interval;
      const auto c = total_counters(hooks);
      if (o.json)
        std::cout << counters_json(hooks.front().nodes, c, elapsed(), false).dump() << std::endl;
      else
        std::cout << format_table(hooks.front().nodes, c, elapsed()) << std::endl;
    }
    const auto c = total_counters(hooks);
    if (o.json)
      std::cout << counters_json(hooks.front().nodes, c, elapsed(), true).dump() << std::endl;
    else
      std::cout << format_table(hooks.front().nodes, c, elapsed()) << std::flush;
  } catch (const std::exception& e) {
    std::cerr << "srl run: " << e.what() << "\n";
    rc = kExitFailure;
  }
  remove_all();
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
  cmd->add_option("--dev", o->devices, "device to receive from (the implicit rx; repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--duration", o->duration,
                  "stop after this many seconds (default: until Ctrl-C or SIGTERM)");
  cmd->add_option("--interval", o->interval, "seconds between counter reports")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-j,--json", o->json, "one JSON object per report; the last has \"final\": true");
  cmd->add_option("--xdp-mode", o->mode,
                  "auto (native if the driver has it, else generic), native or generic")
      ->check(CLI::IsMember({"auto", "native", "generic"}));
  cmd->add_option("--hook", o->hook,
                  "auto (the optimizer's plan, default), or force xdp or tc (ingress)")
      ->check(CLI::IsMember({"auto", "xdp", "tc"}));
  cmd->add_option("--bpffs", o->bpffs, "bpffs mount for pins (mounted if missing)");
  cmd->add_option("--cache", o->cache, "directory for compiled programs");
  cmd->footer(
      "Nodes run where the optimizer places them (srl plan shows where and why). Only the\n"
      "kernel hooks (XDP, TC ingress) are deployed so far: a plan with a node in userspace is\n"
      "refused, naming the node. Exit status: 0 ok, 1 compile, plan or deploy error, 2 usage.");
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
