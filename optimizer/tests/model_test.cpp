// System model: JSON round trip and validation, discovery over a fabricated
// sysfs tree, profiles.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "srl/optimizer/discovery.h"
#include "srl/optimizer/profile.h"

using namespace srl::optimizer;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text << "\n";
}

// A sysfs/procfs tree with one device (eth7, 2 rx queues) and 4 CPUs.
fs::path fake_root() {
  const fs::path root = fs::temp_directory_path() / ("srl-sysfs-" + std::to_string(::getpid()));
  fs::remove_all(root);
  put(root / "sys/class/net/eth7/type", "1");
  put(root / "sys/class/net/eth7/operstate", "up");
  put(root / "sys/class/net/eth7/queues/rx-0/x", "");
  put(root / "sys/class/net/eth7/queues/rx-1/x", "");
  put(root / "sys/class/net/lo/type", "772");
  put(root / "sys/class/net/lo/operstate", "unknown");
  put(root / "sys/devices/system/cpu/online", "0-3");
  for (int c = 0; c < 4; ++c) {
    const fs::path cache = root / "sys/devices/system/cpu" / ("cpu" + std::to_string(c)) / "cache";
    put(cache / "index0/level", "1");
    put(cache / "index0/type", "Data");
    put(cache / "index0/size", "48K");
    put(cache / "index2/level", "2");
    put(cache / "index2/type", "Unified");
    put(cache / "index2/size", "2048K");
    put(cache / "index3/level", "3");
    put(cache / "index3/type", "Unified");
    put(cache / "index3/size", "32M");
  }
  put(root / "proc/meminfo", "MemTotal:       16384 kB\nMemFree: 1 kB");
  put(root / "proc/cpuinfo", "processor\t: 0\nmodel name\t: Test CPU 3000");
  return root;
}

}  // namespace

TEST_CASE("discovery reads devices, CPUs, caches and memory from sysfs") {
  const fs::path root = fake_root();
  DiscoveryOptions o;
  o.sysfs = (root / "sys").string();
  o.procfs = (root / "proc").string();
  o.probe_bpf = false;
  const SystemModel m = discover(o);
  CHECK(m.host.cpus == 4);
  CHECK(m.host.memory_bytes == 16384ull << 10);
  CHECK(m.host.cpu_model == "Test CPU 3000");
  CHECK(m.host.caches.l1d == 48 << 10);
  CHECK(m.host.caches.l2 == 2048 << 10);
  CHECK(m.host.caches.l3 == 32u << 20);
  REQUIRE(m.spaces.size() == 6);  // xdp, tc on eth7 (lo is not Ethernet), 4 cores
  CHECK(m.spaces[0].id == "xdp:eth7");
  CHECK(m.spaces[1].id == "tc:eth7");
  CHECK(m.spaces[2].id == "user:0");
  CHECK(m.spaces[0].capacity_ns_per_s == doctest::Approx(2e9));  // 2 rx queues
  CHECK(m.find_space("xdp:eth7")->has("prog:xdp"));
  // What srl's program for a hook holds (runtime/include/srl/runtime/kernel.h).
  for (const auto* id : {"xdp:eth7", "tc:eth7"}) {
    CHECK(m.find_space(id)->ebpf_function_limit == 255);
    CHECK(m.find_space(id)->ebpf_exit_limit == 32);
  }
  CHECK(m.find_space("user:0")->ebpf_function_limit == 0);
  // Without probes the capabilities are assumed, and the model says so.
  bool said = false;
  for (const auto& n : m.notes)
    said = said || n.find("ASSUMED") != std::string::npos;
  CHECK(said);
  // Channels go up only; user cores talk through shm.
  CHECK(validate(m).empty());
  // Up from XDP: a copy ring is the cheapest way up; AF_XDP is there for
  // blocks that are taken.
  CHECK(m.best_channel("xdp:eth7", "user:1", 512)->kind == ChannelKind::ringbuf);
  CHECK(m.best_channel("xdp:eth7", "user:1", 512, Carries::copy)->kind == ChannelKind::ringbuf);
  CHECK(m.best_channel("xdp:eth7", "user:1", 512, Carries::take)->kind == ChannelKind::afxdp);
  CHECK(m.best_channel("tc:eth7", "user:1", 512, Carries::take)->kind == ChannelKind::ringbuf);
  bool afxdp = false;
  for (const auto& c : m.channels)
    if (c.from == "xdp:eth7" && c.to == "user:1" && c.kind == ChannelKind::afxdp) {
      afxdp = true;
      CHECK_FALSE(c.copies());
    }
  CHECK(afxdp);
  CHECK(m.best_channel("user:0", "user:1", 512)->kind == ChannelKind::shm);
  CHECK(m.best_channel("user:0", "xdp:eth7", 512) == nullptr);
  CHECK(m.best_channel("tc:eth7", "xdp:eth7", 512) == nullptr);

  o.devices = {"nosuch0"};
  CHECK_THROWS_WITH_AS(discover(o), doctest::Contains("device 'nosuch0' does not exist here"),
                       std::runtime_error);
  fs::remove_all(root);
}

TEST_CASE("system model JSON round trip and validation with JSON paths") {
  SystemModel m;
  m.host.hostname = "h";
  m.host.cpus = 2;
  Space x{.id = "xdp:eth0", .kind = Kind::xdp, .device = "eth0", .mode = "native"};
  x.capabilities = {"prog:xdp"};
  x.ebpf_insn_limit = 100;
  Space u{.id = "user:0", .kind = Kind::user, .cpu = 0u};
  m.spaces = {x, u};
  add_default_channels(m);
  const auto j = to_json(m);
  const SystemModel back = model_from_json(nlohmann::json::parse(j.dump()));
  CHECK(to_json(back).dump() == j.dump());
  CHECK(j["spaces"][0]["ebpf_function_limit"] == 0);  // none, and said so
  CHECK_FALSE(j["spaces"][1].contains("ebpf_exit_limit"));

  // A model without the program limits (older, or written by hand) gets
  // the runtime's for xdp and tc; an explicit 0 stays none.
  auto old = nlohmann::json::parse(j.dump());
  old["spaces"][0].erase("ebpf_function_limit");
  old["spaces"][0].erase("ebpf_exit_limit");
  const SystemModel read = model_from_json(old);
  CHECK(read.spaces[0].ebpf_function_limit == kKernelFunctionLimit);
  CHECK(read.spaces[0].ebpf_exit_limit == kKernelExitLimit);
  CHECK(read.spaces[1].ebpf_function_limit == 0);
  CHECK(back.spaces[0].ebpf_function_limit == 0);
  CHECK(to_text(read).find("100         255/32") != std::string::npos);
  CHECK(to_text(back).find("100         -/-") != std::string::npos);

  auto bad = nlohmann::json::parse(j.dump());
  bad["spaces"][0]["kind"] = "gpu";
  CHECK_THROWS_WITH(model_from_json(bad),
                    "$.spaces[0].kind: unknown kind \"gpu\", expected offload, xdp, tc or user");
  bad = nlohmann::json::parse(j.dump());
  bad["channels"].push_back({{"from", "user:0"}, {"to", "xdp:eth0"}, {"kind", "shm"}});
  CHECK_THROWS_WITH(model_from_json(bad), doctest::Contains("goes down"));
  bad = nlohmann::json::parse(j.dump());
  bad["spaces"][0].erase("id");
  CHECK_THROWS_WITH(model_from_json(bad), "$.spaces[0]: missing \"id\"");
  bad = nlohmann::json::parse(j.dump());
  bad["srl_model_version"] = 7;
  CHECK_THROWS_WITH(model_from_json(bad), doctest::Contains("unsupported version 7"));
  bad = nlohmann::json::parse(j.dump());
  bad["spaces"][0]["attachment"] = nlohmann::json::object();
  CHECK_THROWS_WITH(model_from_json(bad), doctest::Contains("needs attachment.device"));
}

TEST_CASE("profiles: round trip, and applying them replaces channel costs") {
  Profile p;
  p.host = "h";
  p.created = "2026-01-01T00:00:00Z";
  p.measurements["memcpy_dram_ns_per_byte"] = 0.1;
  p.memory_bandwidth_bytes_per_s = 20e9;
  p.channels[ChannelKind::shm] = {12, 0.01};
  p.filters["tcp"][srl::filters::SpaceKind::kernel] = {4.5, 0};
  const Profile back = profile_from_json(nlohmann::json::parse(to_json(p).dump()));
  CHECK(to_json(back).dump() == to_json(p).dump());
  REQUIRE(back.filter_cost("tcp", srl::filters::SpaceKind::kernel) != nullptr);
  CHECK(back.filter_cost("tcp", srl::filters::SpaceKind::kernel)->ns_per_block == 4.5);
  CHECK(back.filter_cost("tcp", srl::filters::SpaceKind::user) == nullptr);

  SystemModel m;
  m.spaces = {Space{.id = "user:0", .kind = Kind::user}, Space{.id = "user:1", .kind = Kind::user}};
  add_default_channels(m);
  apply(p, m);
  CHECK(m.best_channel("user:0", "user:1", 100)->ns_per_block == 12);
  CHECK(m.host.memory_bandwidth_bytes_per_s == 20e9);

  auto bad = to_json(p);
  bad["channels"]["warp"] = {{"ns_per_block", 1}, {"ns_per_byte", 0}};
  CHECK_THROWS_WITH(profile_from_json(nlohmann::json::parse(bad.dump())),
                    doctest::Contains("$.channels.warp: unknown channel kind"));
}

TEST_CASE("profiles: hook costs by driver reach the kernel spaces of that driver") {
  Profile p;
  p.hooks["veth"]["xdp-native"] = {250, 0.03};
  p.hooks["veth"]["tc"] = {60, 0};
  const Profile back = profile_from_json(nlohmann::json::parse(to_json(p).dump()));
  CHECK(to_json(back).dump() == to_json(p).dump());

  SystemModel m;
  m.spaces = {
      Space{.id = "xdp:v0", .kind = Kind::xdp, .device = "v0", .mode = "native", .driver = "veth"},
      Space{.id = "tc:v0", .kind = Kind::tc, .device = "v0", .driver = "veth"},
      Space{.id = "xdp:e0", .kind = Kind::xdp, .device = "e0", .mode = "native", .driver = "ice"},
      Space{.id = "user:0", .kind = Kind::user}};
  add_default_channels(m);
  apply(back, m);
  CHECK(m.spaces[0].hook_ns_per_block == 250);
  CHECK(m.spaces[0].hook_ns_per_byte == 0.03);
  CHECK(m.spaces[1].hook_ns_per_block == 60);
  CHECK(m.spaces[2].hook_ns_per_block == 0);  // another driver: not measured
  // The model keeps them (JSON "hook") and shows them.
  const auto j = to_json(m);
  CHECK(j["spaces"][0]["hook"]["ns_per_block"] == 250);
  CHECK(j["spaces"][0]["driver"] == "veth");
  CHECK(to_json(model_from_json(nlohmann::json::parse(j.dump()))).dump() == j.dump());
  CHECK(to_text(m).find("hook 250 ns + 0.03 ns/B") != std::string::npos);

  auto bad = to_json(p);
  bad["hooks"]["veth"]["xdp-offload"] = {{"ns_per_block", 1}, {"ns_per_byte", 0}};
  CHECK_THROWS_WITH(profile_from_json(nlohmann::json::parse(bad.dump())),
                    doctest::Contains("$.hooks.veth.xdp-offload: unknown hook"));
  auto neg = nlohmann::json::parse(j.dump());
  neg["spaces"][1]["hook"]["ns_per_block"] = -1;
  CHECK_THROWS_WITH(model_from_json(neg), doctest::Contains("negative hook cost"));
}

TEST_CASE("calibration measures copies and channels on this machine") {
  CalibrateOptions o;
  o.seconds_per_test = 0.02;
  o.bpf = ::geteuid() == 0;
  std::vector<std::string> log;
  const Profile p = calibrate(o, [&](const std::string& l) { log.push_back(l); });
  CHECK(p.measurements.at("memcpy_cached_ns_per_byte") > 0);
  CHECK(p.memory_bandwidth_bytes_per_s.value() > 1e8);
  REQUIRE(p.channels.contains(ChannelKind::pipe));
  REQUIRE(p.channels.contains(ChannelKind::shm));
  // Both channels were measured, and their costs reached the profile. Which
  // is cheaper is a timing, measured in bench/ (ring_bench), not asserted here.
  CHECK(p.measurements.at("pipe_64B_ns") > 0);
  CHECK(p.measurements.at("shm_64B_ns") > 0);
  for (const auto kind : {ChannelKind::pipe, ChannelKind::shm}) {
    const auto& c = p.channels.at(kind);
    CHECK(c.ns_per_block + 64 * c.ns_per_byte > 0);
  }
  CHECK(log.size() >= 3);
  if (o.bpf && p.measurements.contains("ebpf_ns_per_insn")) {
    CHECK(p.measurements.at("xdp_test_run_ns_per_packet") > 0);
    CHECK(p.filter_cost("tcp", srl::filters::SpaceKind::kernel) != nullptr);
  }
}
