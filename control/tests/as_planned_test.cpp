// Every plan runs as planned: random request sets are planned on this
// machine's model of a veth (its XDP hook or its TC hook, and two cores),
// deployed as the control plane deploys them, and fed the packet corpus from
// the veth's peer. Then every merged node runs in the space the plan put it
// in, counts what the reference evaluator says it must, the edges into
// userspace copy or take as planned, and the engine runs the plan's workers.
// Needs root (a network namespace, XDP, TC, AF_XDP).
#include <doctest/doctest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "frame_sender.h"
#include "packet_corpus.h"
#include "reference_dag.h"
#include "srl/control/pipeline.h"
#include "test_namespace.h"

using namespace srl;

namespace {

namespace fs = std::filesystem;

// A node of a random request and the selectors its out-edge may have.
struct Step {
  const char* node;
  std::vector<const char*> selectors;
};

// Filters with a kernel and a userspace implementation and a reference, so
// that any split between the spaces is possible and checkable. No `sample`:
// its count is per CPU in the kernel and per worker order in userspace.
const std::vector<Step> kSteps = {
    {"(eth)", {">"}},
    {"(ip)", {">", "!>"}},
    {"(ipv4)", {">"}},
    {"(ipv6)", {">"}},
    {"(arp)", {">"}},
    {"(tcp)", {">", "!>"}},
    {"(udp)", {">"}},
    {"(icmp)", {">"}},
    {"(vlan)", {">", "100>", "!>"}},
    {"(proto)", {"6>", "17>", "6,17>", "!6>"}},
    {"(port)", {"53>", "22>", "0:1023>", ">"}},
    {"(port, which=dst)", {"53>", "80>"}},
    {"(tcpflags)", {"2>", ">"}},
    {"(addr, net=10.0.0.0/8)", {">"}},
    {"(addr, net=2001:db8::/32, which=src)", {">"}},
    {"(len, min=60, max=200)", {">"}},
    {"(hash, buckets=4)", {"0>", "1:2>"}},
    {"(bpf, expr=\"udp port 53\")", {">"}},
    {"(bpf, expr=\"tcp[tcpflags] & tcp-syn != 0\")", {">"}},
};
const std::vector<const char*> kTerminals = {"(count)", "(count, by=class)", "(drop)"};

// Random requests from a fixed sequence: one to three branches from the
// device, each a chain of one to three steps and a terminal; about one node
// in four pinned to userspace, so that plans split at every depth.
class RequestGenerator {
 public:
  explicit RequestGenerator(std::uint32_t seed) : rng_(seed) {}

  std::string request() {
    std::string out;
    const int branches = pick(1, 3);
    for (int b = 0; b < branches; ++b) {
      if (b > 0) out += " | ";
      const int steps = pick(1, 3);
      for (int s = 0; s < steps; ++s) {
        const Step& step = kSteps[static_cast<std::size_t>(pick(0, int(kSteps.size()) - 1))];
        out += pinned(step.node) + " " +
               step.selectors[static_cast<std::size_t>(pick(0, int(step.selectors.size()) - 1))] +
               " ";
      }
      out += pinned(kTerminals[static_cast<std::size_t>(pick(0, int(kTerminals.size()) - 1))]);
    }
    return out;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::string pinned(const std::string& node) {
    if (pick(0, 3) != 0) return node;
    return node.substr(0, node.size() - 1) + ", space=user)";
  }
  std::mt19937 rng_;
};

// This machine's model of `dev` with one of its hooks: the other hook's
// space and every channel through it removed.
optimizer::SystemModel with_hook(optimizer::SystemModel m, optimizer::Kind keep) {
  const auto other = keep == optimizer::Kind::xdp ? optimizer::Kind::tc : optimizer::Kind::xdp;
  std::vector<std::string> gone;
  std::erase_if(m.spaces, [&](const optimizer::Space& s) {
    if (s.kind != other) return false;
    gone.push_back(s.id);
    return true;
  });
  const auto is_gone = [&](const std::string& id) {
    return std::find(gone.begin(), gone.end(), id) != gone.end();
  };
  std::erase_if(m.channels, [&](const optimizer::Channel& c) {
    return is_gone(c.from) || is_gone(c.to) || std::any_of(c.via.begin(), c.via.end(), is_gone);
  });
  return m;
}

// This process's threads whose name starts with `prefix`.
std::size_t threads_named(const std::string& prefix) {
  std::size_t n = 0;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    if (name.starts_with(prefix)) ++n;
  }
  return n;
}

// A sysfs of the test's namespace, for discovery: the process's /sys shows
// the namespace it was mounted in (`ip netns exec` remounts it the same way).
class NamespaceSysfs {
 public:
  NamespaceSysfs()
      : path_(fs::temp_directory_path() / ("srl-as-planned-sys-" + std::to_string(getpid()))) {
    fs::create_directories(path_);
    REQUIRE(mount("sysfs", path_.c_str(), "sysfs", 0, nullptr) == 0);
  }
  ~NamespaceSysfs() {
    umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  NamespaceSysfs(const NamespaceSysfs&) = delete;
  NamespaceSysfs& operator=(const NamespaceSysfs&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Whether a frame sent on a veth reaches its peer's hook. XDP gets every
// frame as long as an Ethernet header. Before the TC hook Linux takes the
// outer VLAN tag into the skb's metadata, and drops a frame too short for
// it and the EtherType after it (20 bytes).
bool reaches(optimizer::Kind hook, const std::vector<std::uint8_t>& frame) {
  if (frame.size() < 14) return false;
  if (hook == optimizer::Kind::xdp) return true;
  const unsigned ethertype = unsigned(frame[12]) << 8 | frame[13];
  return !((ethertype == 0x8100 || ethertype == 0x88A8) && frame.size() < 20);
}

// What one merged node must count.
struct Expected {
  std::uint64_t blocks = 0, accepted = 0, bytes = 0;
  bool operator==(const Expected&) const = default;
};

doctest::String describe(const Expected& e) {
  return (std::to_string(e.blocks) + " blocks, " + std::to_string(e.accepted) + " accepted, " +
          std::to_string(e.bytes) + " bytes")
      .c_str();
}

// The plan's space of a merged vertex as the datapath's counters name it:
// "xdp:ha", "tc:ha" or "user" (a core or a replica set).
std::string deployed_name(const std::string& plan_space) {
  return plan_space.starts_with("user:") ? "user" : plan_space;
}

}  // namespace

TEST_CASE(
    "every plan runs as planned: random requests on XDP (native, generic) or TC and two cores") {
  // One CPU sends, so the hooks see the frames in order on one CPU.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  testing::TestNamespace ns;
  const NamespaceSysfs sysfs;
  // The corpus and nothing else: no IPv6 of the namespace's own (router
  // solicitations, multicast listener reports) on the pair.
  for (const char* dev : {"all", "default", "ha", "hb"})
    std::ofstream("/proc/sys/net/ipv6/conf/" + std::string(dev) + "/disable_ipv6") << "1\n";
  const auto corpus = testing::standard_corpus();

  RequestGenerator generate(20261207);
  std::size_t deployed = 0, split = 0, copies = 0, takes = 0;
  // The device's hooks as models: XDP in the mode its driver has (native on
  // a veth), XDP fixed in generic mode, TC.
  struct Hook {
    optimizer::Kind kind;
    const char* xdp_mode;
  };
  for (const auto [hook, xdp_mode] :
       {Hook{optimizer::Kind::xdp, ""}, Hook{optimizer::Kind::xdp, "generic"},
        Hook{optimizer::Kind::tc, ""}})
    for (int instance = 0; instance < 15; ++instance) {
      std::vector<std::string> texts = {generate.request(), generate.request()};
      const std::string requests_text = texts[0] + " ;; " + texts[1];
      CAPTURE(requests_text);
      const std::string hook_model = std::string(optimizer::to_string(hook)) + " " + xdp_mode;
      CAPTURE(hook_model);
      std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
      for (const auto& text : texts) {
        compiler::CompileOptions co;
        co.default_devices = {"ha"};
        auto r = std::make_shared<compiler::CompileResult>(compiler::compile(text, co));
        REQUIRE_MESSAGE(r->ok(), r->diagnostics.render(*r->source));
        compiled.push_back(std::move(r));
      }
      const auto requests = control::merge(compiled, control::numbered_labels(compiled.size()));
      const auto& dag = requests.merged.dag;

      optimizer::DiscoveryOptions discovery;
      discovery.devices = {"ha"};
      discovery.max_user_cpus = 2;
      discovery.sysfs = sysfs.path().string();
      discovery.xdp_mode = xdp_mode;
      const auto model = with_hook(control::discover(requests, discovery), hook);
      optimizer::PlanOptions options;
      // Rates where the kernel's part and its channels up are cheapest,
      // and where a plan copies rather than counts in the kernel.
      options.input_rate_pps = instance % 2 == 0 ? 1e5 : 4e6;
      options.max_replicas = 2;
      const auto plan = control::plan(requests, model, control::CostProfile{}, options);
      const auto place = control::placement(requests, plan);

      runtime::DatapathOptions dopts;
      dopts.cache = fs::temp_directory_path() / "srl-kernel-test-cache";
      auto datapath = runtime::Datapath::build(dag, place, dopts);
      ++deployed;

      // Where every merged node runs: as planned (plan node v is merged
      // vertex v).
      REQUIRE(plan.nodes.size() == dag.node_count());
      const auto before = datapath->counters();
      REQUIRE(before.size() == dag.node_count());
      bool any_user = false, any_kernel = false;
      for (std::size_t v = 0; v < dag.node_count(); ++v) {
        CAPTURE(before[v].id);
        REQUIRE(plan.nodes[v].members == requests.merged.members[v]);
        const std::string want = deployed_name(plan.nodes[v].space);
        CHECK(before[v].space == want);
        any_user = any_user || want == "user";
        any_kernel = any_kernel || want != "user";
      }
      if (any_user && any_kernel) ++split;
      // The XDP hook runs in the mode the plan chose.
      for (const auto& sp : plan.spaces) {
        if (sp.nodes == 0 || !sp.id.starts_with("xdp:")) continue;
        const std::string attached = "XDP " + sp.mode + ",";
        CHECK_MESSAGE(std::any_of(datapath->report().begin(), datapath->report().end(),
                                  [&](const std::string& line) {
                                    return line.find(attached) != std::string::npos;
                                  }),
                      "the report names no hook attached as " << attached);
      }

      // The engine runs the plan's workers: the largest replica set in use
      // (header filters fill no core at these rates: srl_run_live runs a
      // plan with several).
      std::size_t workers = any_user ? 1 : 0;
      for (const auto& sp : plan.spaces)
        if (sp.nodes > 0 && !sp.replicas.empty()) workers = std::max(workers, sp.replicas.size());
      CHECK(threads_named("srl-worker") == workers);

      // The edges into userspace copy or take as planned: a take from XDP
      // rides an AF_XDP socket (and the ring where a queue has none); every
      // copy, and a take from TC, a ring.
      bool planned_afxdp = false, planned_ring = false;
      for (const auto& e : plan.edges) {
        if (e.delivery == "copy") ++copies;
        if (e.delivery == "take") ++takes;
        if (e.delivery.empty()) continue;
        planned_ring = true;
        if (e.delivery == "take" && e.from_space.starts_with("xdp:")) planned_afxdp = true;
      }
      bool has_afxdp = false, has_ring = false;
      for (const auto& c : datapath->channels()) {
        has_afxdp = has_afxdp || c.kind == "afxdp";
        has_ring = has_ring || c.kind == "ringbuf";
      }
      CHECK(has_afxdp == planned_afxdp);
      CHECK(has_ring == planned_ring);

      // The corpus through the hook and through the reference.
      reference::ReferenceDag reference(dag);
      std::vector<Expected> want(dag.node_count());
      testing::FrameSender sender("hb");
      for (const auto& frame : corpus) {
        if (!reaches(hook, frame.bytes)) continue;
        sender.send(frame.bytes);
        const auto r = reference.run(frame.bytes);
        for (std::size_t v = 0; v < dag.node_count(); ++v) {
          if (!r.nodes[v].reached) continue;
          ++want[v].blocks;
          want[v].bytes += frame.bytes.size();
          // A terminal's accepted blocks are the verdicts carried out.
          bool accepted = r.nodes[v].accepted;
          const auto filter = dag.graph[v].filter_name();
          if (filter == "pass")
            accepted = accepted && r.verdict.action == reference::HookAction::pass;
          if (accepted) ++want[v].accepted;
        }
      }
      // The userspace part counts behind the kernel's: wait (bounded) until
      // every node has what it must, then compare.
      std::vector<Expected> got(dag.node_count());
      for (int wait = 0; wait < 100; ++wait) {
        const auto now = datapath->counters();
        for (std::size_t v = 0; v < dag.node_count(); ++v)
          got[v] = {now[v].blocks - before[v].blocks, now[v].accepted - before[v].accepted,
                    now[v].bytes - before[v].bytes};
        if (got == want) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (std::size_t v = 0; v < dag.node_count(); ++v) {
        CAPTURE(before[v].id);
        CAPTURE(before[v].space);
        CAPTURE(std::string(dag.graph[v].filter_name()));
        CHECK_MESSAGE(got[v] == want[v],
                      "counted " << describe(got[v]) << ", the reference " << describe(want[v]));
      }
      datapath->remove();
      CHECK(threads_named("srl-worker") == 0);
    }
  // The sequence exercises what it is for.
  CHECK(deployed == 45);
  CHECK(split >= 15);
  CHECK(copies > 0);
  CHECK(takes > 0);
  MESSAGE(deployed << " plans deployed, " << split << " split between kernel and userspace; "
                   << copies << " copy and " << takes << " take edges");
}
