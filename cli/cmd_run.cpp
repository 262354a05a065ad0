// srl run: compile a request, deploy it, show its counters until stopped,
// and remove everything it created. The control plane runs embedded in this
// process (no daemon). Nodes go where the optimizer's plan puts them: the
// kernel part as one program per device hook, the userspace part in the
// engine of this process, joined by AF_XDP sockets; a request reading a
// capture file (pcapin) runs in userspace only.
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
#include "srl/runtime/engine.h"
#include "srl/runtime/inputs.h"
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
  std::size_t workers = 1, batch = 32;
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

// One row of the counters report: a node of the merged DAG.
struct Row {
  std::string id;  // the request nodes it stands for
  std::string filter;
  std::optional<std::string> name;
  std::string space;  // "kernel" or "user"
  std::uint64_t blocks = 0, bytes = 0, accepted = 0;
};

std::string format_table(const std::vector<Row>& rows, double seconds) {
  std::ostringstream out;
  char line[256];
  std::size_t width = 4;
  for (const auto& r : rows)
    width = std::max(width, r.id.size());
  const int w = static_cast<int>(width);
  std::snprintf(line, sizeof line, "%-*s %-10s %-14s %-6s %14s %16s %14s\n", w, "node", "filter",
                "name", "space", "blocks", "bytes", "accepted");
  out << "after " << std::fixed << std::setprecision(1) << seconds << " s\n" << line;
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "%-*s %-10s %-14s %-6s %14llu %16llu %14llu\n", w,
                  r.id.c_str(), r.filter.c_str(), r.name.value_or("-").c_str(), r.space.c_str(),
                  static_cast<unsigned long long>(r.blocks),
                  static_cast<unsigned long long>(r.bytes),
                  static_cast<unsigned long long>(r.accepted));
    out << line;
  }
  return out.str();
}

nlohmann::ordered_json counters_json(const std::vector<Row>& rows, double seconds, bool final) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& r : rows)
    list.push_back({{"id", r.id},
                    {"filter", r.filter},
                    {"name", r.name ? nlohmann::ordered_json(*r.name) : nullptr},
                    {"space", r.space},
                    {"blocks", r.blocks},
                    {"bytes", r.bytes},
                    {"accepted", r.accepted}});
  return {{"seconds", seconds}, {"final", final}, {"nodes", std::move(list)}};
}

// The rows of every node: kernel counters summed over the hooks (a node on
// several devices' hooks counts the blocks of all of them), userspace ones
// from the engine.
std::vector<Row> collect_rows(const compiler::MergedRequests& merged,
                              const std::vector<bool>& in_kernel,
                              const std::vector<Deployed>& hooks) {
  const auto& g = merged.dag.graph;
  std::vector<Row> rows(merged.dag.node_count());
  std::map<std::string, std::size_t> row_of;
  for (std::size_t v = 0; v < rows.size(); ++v) {
    for (const auto& m : merged.members[v])
      rows[v].id += (rows[v].id.empty() ? "" : ",") + m;
    rows[v].filter = std::string(g[v].filter_name());
    rows[v].name = g[v].name;
    rows[v].space = in_kernel[v] ? "kernel" : "user";
    row_of[g[v].id] = v;
  }
  for (const auto& d : hooks) {
    const auto c = d.program().counters();
    for (std::size_t i = 0; i < d.nodes.size() && i < c.size(); ++i) {
      Row& r = rows[row_of.at(d.nodes[i].id)];
      r.blocks += c[i].packets;
      r.bytes += c[i].bytes;
      r.accepted += c[i].accepted;
    }
  }
  return rows;
}

// Adds the engine's counters to the rows of the userspace nodes.
void add_engine_rows(const compiler::MergedRequests& merged, const runtime::Engine& engine,
                     std::vector<Row>& rows) {
  for (const auto& n : engine.stats().nodes) {
    const auto v = merged.dag.find(n.id);
    if (!v) continue;
    Row& r = rows[*v];
    r.blocks += n.blocks;
    r.bytes += n.bytes;
    r.accepted += n.accepted;
  }
}

// Where each node of the merged DAG runs in this process.
struct Placement {
  std::vector<bool> in_kernel;                        // per vertex
  std::map<std::string, std::string> hook_of_device;  // dev -> "xdp" | "tc"
};

// Nodes downstream of a pcapin source cannot be in the kernel: data only
// moves up.
std::vector<bool> below_user_sources(const compiler::RequestDag& dag) {
  const auto& g = dag.graph;
  std::vector<bool> user(dag.node_count(), false);
  std::vector<compiler::Vertex> stack;
  for (auto v : dag.sources())
    if (g[v].filter_name() != "rx") stack.push_back(v);
  while (!stack.empty()) {
    const auto v = stack.back();
    stack.pop_back();
    if (user[v]) continue;
    user[v] = true;
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      stack.push_back(boost::target(*it, g));
  }
  return user;
}

// With --hook forced: the fixed rule. A node runs in the kernel when it has
// a kernel implementation and all its inputs run there; the rest goes up.
Placement fixed_placement(const compiler::RequestDag& dag, const std::vector<std::string>& devices,
                          const std::string& hook) {
  const auto& g = dag.graph;
  const auto user = below_user_sources(dag);
  Placement p;
  p.in_kernel.assign(dag.node_count(), false);
  // Vertices in topological order: a vertex's inputs are decided first.
  std::vector<std::size_t> indegree(dag.node_count(), 0), order;
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      ++indegree[boost::target(*it, g)];
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    if (indegree[v] == 0) order.push_back(v);
  for (std::size_t i = 0; i < order.size(); ++i)
    for (auto [it, end] = boost::out_edges(order[i], g); it != end; ++it)
      if (--indegree[boost::target(*it, g)] == 0) order.push_back(boost::target(*it, g));
  for (std::size_t v : order) {
    if (user[v]) continue;
    bool k = g[v].filter != nullptr && g[v].filter->implemented_in(filters::SpaceKind::kernel);
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it)
      k = k && p.in_kernel[boost::source(*it, g)];
    p.in_kernel[v] = k;
  }
  for (const auto& dev : devices)
    p.hook_of_device[dev] = hook;
  return p;
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
  const auto& g = dag.graph;

  // The devices blocks enter at: the rx nodes'.
  std::vector<std::string> devices;
  for (auto v : dag.sources()) {
    const auto& node = g[v];
    if (node.filter_name() != "rx") continue;
    const auto dev = node.options.find("dev");
    if (dev == node.options.end()) {
      std::cerr << "srl run: no device to receive from; give --dev IF or (rx, dev=IF)\n";
      return kExitUsage;
    }
    const auto& name = std::get<std::string>(dev->second);
    if (std::find(devices.begin(), devices.end(), name) == devices.end()) devices.push_back(name);
  }

  // Where each node runs: the optimizer's plan for this machine, unless a
  // hook is forced (then the fixed rule: the kernel as far as it can go).
  Placement place;
  if (devices.empty()) {
    place.in_kernel.assign(dag.node_count(), false);
  } else if (o.hook != "auto") {
    place = fixed_placement(dag, devices, o.hook);
  } else {
    try {
      optimizer::DiscoveryOptions discovery;
      discovery.devices = devices;
      const auto model = optimizer::discover(discovery);
      std::vector<optimizer::RequestInput> inputs;
      for (std::size_t i = 0; i < compiled.size(); ++i)
        inputs.push_back({&*compiled[i].dag, labels[i], compiled[i].source.get()});
      const auto plan = optimizer::plan(inputs, model);
      std::map<std::string, const optimizer::NodePlan*> plan_of;  // request node -> its plan
      for (const auto& node : plan.nodes)
        for (const auto& m : node.members.empty() ? std::vector{node.id} : node.members)
          plan_of[m] = &node;
      place.in_kernel.assign(dag.node_count(), false);
      const auto user = below_user_sources(dag);
      for (std::size_t v = 0; v < dag.node_count(); ++v) {
        const auto it = plan_of.find(merged.members[v].front());
        if (it == plan_of.end() || user[v]) continue;
        const auto& node = *it->second;
        const auto colon = node.space.find(':');
        const std::string kind = node.space.substr(0, colon);
        const std::string dev = colon == std::string::npos ? "" : node.space.substr(colon + 1);
        if (kind == "user") continue;
        if (kind != "xdp" && kind != "tc") {
          std::cerr << "srl run: the plan places " << node.id << " (" << node.filter << ") in "
                    << node.space << ", which srl run does not deploy; see 'srl plan', or pin "
                    << "with space=xdp or space=user\n";
          return kExitFailure;
        }
        place.in_kernel[v] = true;
        auto [h, fresh] = place.hook_of_device.emplace(dev, kind);
        if (!fresh && h->second != kind) {
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
  std::vector<bool> in_user(dag.node_count());
  bool any_user = false;
  for (std::size_t v = 0; v < dag.node_count(); ++v) {
    in_user[v] = !place.in_kernel[v];
    any_user = any_user || in_user[v];
  }
  // Devices whose rx runs in the kernel get a hook; the others an AF_PACKET
  // socket in the engine.
  std::vector<std::string> hooked;
  for (auto v : dag.sources())
    if (g[v].filter_name() == "rx" && place.in_kernel[v]) {
      const auto& dev = std::get<std::string>(g[v].options.at("dev"));
      if (std::find(hooked.begin(), hooked.end(), dev) == hooked.end()) hooked.push_back(dev);
      if (!place.hook_of_device.contains(dev)) place.hook_of_device[dev] = "xdp";
    }

  std::optional<kernel::XdpMode> mode;
  if (o.mode == "native") mode = kernel::XdpMode::native;
  if (o.mode == "generic") mode = kernel::XdpMode::generic;

  const fs::path runs = fs::path(o.bpffs) / "srl" / "run";
  const fs::path mine = runs / std::to_string(getpid());
  std::vector<Deployed> hooks;
  std::unique_ptr<runtime::Engine> engine;
  // Everything created is owned by `engine`, `hooks` and `mine`: on any
  // failure below, the hooks detach as they are destroyed (before the
  // engine's sockets go), and the pin directory goes.
  auto remove_all = [&] {
    hooks.clear();
    if (engine) {
      engine->stop();
      engine->wait();
      engine.reset();
    }
    std::error_code ec;
    fs::remove_all(mine, ec);
  };
  try {
    // Generate first: the exits of the kernel part are the entries of the
    // userspace part.
    std::vector<std::pair<std::string, kernel::GeneratedProgram>> programs;
    for (const auto& dev : hooked) {
      const unsigned ifindex = if_nametoindex(dev.c_str());
      if (ifindex == 0) throw kernel::KernelError("no network device '" + dev + "'");
      maybe_fail("generate");
      const bool tc = place.hook_of_device[dev] == "tc";
      if (tc && any_user)
        throw kernel::KernelError("the TC hook of " + dev +
                                  " cannot hand blocks to userspace (AF_XDP takes them from "
                                  "XDP): use --hook xdp or auto");
      programs.emplace_back(
          dev, tc ? kernel::generate_tc(dag, static_cast<int>(ifindex), dev)
                  : kernel::generate_xdp(dag, static_cast<int>(ifindex), dev, &place.in_kernel));
    }
    std::vector<kernel::KernelExit> exits;
    if (!programs.empty()) exits = programs.front().second.exits;
    for (const auto& [dev, gen] : programs)
      if (gen.exits.size() != exits.size())
        throw kernel::KernelError(
            "the programs of the devices leave the kernel at different "
            "edges; run one device per srl run");
    if (any_user) {
      std::vector<runtime::EngineEntry> entries(exits.size());
      for (const auto& e : exits)
        entries.at(e.bit) = {e.from, e.to};
      runtime::EngineOptions eo;
      eo.workers = o.workers;
      eo.max_batch = o.batch;
      engine = std::make_unique<runtime::Engine>(dag, in_user, std::move(entries), eo);
      for (const auto& id : engine->rx_nodes()) {
        const auto& dev = std::get<std::string>(g[*dag.find(id)].options.at("dev"));
        runtime::PacketSocketOptions po;
        po.dev = dev;
        engine->add_input(runtime::packet_socket_input(
            std::make_unique<runtime::PacketSocketSource>(po), engine->source_entry(id)));
        std::cerr << "srl: " << dev << ": rx in userspace (AF_PACKET)\n";
      }
    }
    if (!hooked.empty()) {
      kernel::ensure_bpffs(o.bpffs);
      remove_stale_runs(runs);
    }
    for (auto& [dev, gen] : programs) {
      const unsigned ifindex = if_nametoindex(dev.c_str());
      const bool tc = place.hook_of_device[dev] == "tc";
      maybe_fail("compile");
      const auto object = kernel::compile_bpf(gen.source, o.cache);
      maybe_fail("load");
      auto program = kernel::KernelProgram::load(object, gen.nodes.size());
      // The sockets go into the program's XSKMAP before it is attached, so
      // that no block leaves for a queue nobody reads.
      if (!gen.exits.empty()) {
        const std::uint32_t queues = runtime::rx_queue_count(dev);
        bool zero_copy = true;
        for (std::uint32_t q = 0; q < queues; ++q) {
          runtime::AfxdpOptions ao;
          ao.dev = dev;
          ao.queue = q;
          auto channel = runtime::AfxdpChannel::open(ao, program->xsks_fd());
          zero_copy = zero_copy && channel->zero_copy();
          engine->add_input(runtime::afxdp_input(std::move(channel)));
        }
        std::cerr << "srl: " << dev << ": " << gen.exits.size() << " exit(s) to userspace over "
                  << queues << " AF_XDP socket(s), " << (zero_copy ? "zero-copy" : "copy mode")
                  << "\n";
      }
      maybe_fail("attach");
      Deployed d{dev, nullptr, nullptr, gen.nodes};
      if (engine && !engine->running()) engine->start();  // outputs before inputs
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
    if (engine && !engine->running()) engine->start();
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
  auto print = [&](const std::vector<Row>& rows, bool final) {
    if (o.json)
      std::cout << counters_json(rows, elapsed(), final).dump() << std::endl;
    else
      std::cout << format_table(rows, elapsed()) << (final ? "" : "\n") << std::flush;
  };
  double next_report = o.interval;
  int rc = kExitOk;
  try {
    // A userspace-only request (pcapin) ends when its input does.
    const bool ends = hooks.empty() && engine && engine->rx_nodes().empty();
    while (g_stop == 0 && (o.duration <= 0 || elapsed() < o.duration) &&
           !(ends && !engine->running())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (elapsed() < next_report || (o.duration > 0 && elapsed() >= o.duration)) continue;
      next_report += o.interval;
      auto rows = collect_rows(merged, place.in_kernel, hooks);
      if (engine) add_engine_rows(merged, *engine, rows);
      print(rows, false);
    }
    // Inputs first: the kernel counters are read one last time and the hooks
    // detached, then the engine finishes what it holds (open streams end,
    // files are flushed) before the final report.
    auto rows = collect_rows(merged, place.in_kernel, hooks);
    hooks.clear();
    if (engine) {
      engine->stop();
      engine->wait();
      add_engine_rows(merged, *engine, rows);
    }
    print(rows, true);
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
  cmd->add_option("--workers", o->workers,
                  "userspace worker threads; blocks are split between them by flow")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--batch", o->batch, "largest batch of blocks the userspace engine takes")
      ->check(CLI::Range(1, 4096));
  cmd->footer(
      "Nodes run where the optimizer places them (srl plan shows where and why): the kernel\n"
      "part as one program per device hook, the userspace part in this process, joined by\n"
      "AF_XDP sockets. With --hook forced, the kernel takes every node it can implement whose\n"
      "inputs it runs. A request reading a capture (pcapin) runs in userspace and ends with\n"
      "its input. Exit status: 0 ok, 1 compile, plan or deploy error, 2 usage.");
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
