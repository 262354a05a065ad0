#include "srl/optimizer/profile.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace srl::optimizer {
namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ns(Clock::time_point a, Clock::time_point b) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

filters::SpaceKind impl_from(std::string_view s) {
  if (s == "kernel") return filters::SpaceKind::kernel;
  if (s == "user") return filters::SpaceKind::user;
  if (s == "offload") return filters::SpaceKind::offload;
  throw std::runtime_error("unknown implementation kind \"" + std::string(s) +
                           "\", expected kernel, user or offload");
}

void pin_to(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Touches the result so that the copies are not optimised away.
volatile std::uint64_t g_sink = 0;

// ns per byte of memcpy for a working set of `ws` bytes in blocks of `block`.
double memcpy_ns_per_byte(std::size_t ws, std::size_t block, double seconds) {
  std::vector<char> src(ws, 1), dst(ws, 0);
  std::size_t bytes = 0;
  const auto t0 = Clock::now();
  auto t1 = t0;
  while (elapsed_ns(t0, t1) < seconds * 1e9) {
    for (std::size_t off = 0; off + block <= ws; off += block)
      std::memcpy(&dst[off], &src[off], block);
    bytes += ws - ws % block;
    g_sink = g_sink + static_cast<unsigned char>(dst[ws / 2]);
    t1 = Clock::now();
  }
  return elapsed_ns(t0, t1) / static_cast<double>(bytes);
}

// ns per message through a pipe between two threads, messages of `size`.
double pipe_ns(std::size_t size, double seconds) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe() failed");
  const unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> received{0};
  std::thread reader([&] {
    pin_to(1 % ncpu);
    std::vector<char> buf(size);
    for (;;) {
      std::size_t got = 0;
      while (got < size) {
        const ssize_t n = read(fds[0], buf.data() + got, size - got);
        if (n <= 0) return;
        got += static_cast<std::size_t>(n);
      }
      received.fetch_add(1, std::memory_order_relaxed);
    }
  });
  pin_to(0);
  std::vector<char> msg(size, 'x');
  std::uint64_t sent = 0;
  const auto t0 = Clock::now();
  auto t1 = t0;
  while (elapsed_ns(t0, t1) < seconds * 1e9) {
    for (int i = 0; i < 64; ++i, ++sent)
      if (write(fds[1], msg.data(), size) != static_cast<ssize_t>(size)) break;
    t1 = Clock::now();
  }
  close(fds[1]);
  reader.join();
  t1 = Clock::now();
  close(fds[0]);
  stop = true;
  return elapsed_ns(t0, t1) / static_cast<double>(std::max<std::uint64_t>(1, received.load()));
}

// ns per block through a single-producer single-consumer ring in shared
// memory: the writer fills a slot and publishes its index, the reader reads
// every byte of it (as a filter on another core would).
double ring_ns(std::size_t size, double seconds) {
  constexpr std::size_t kSlots = 1024;
  const std::size_t slot = (size + 63) / 64 * 64;
  std::vector<char> data(kSlots * slot);
  alignas(64) std::atomic<std::uint64_t> head{0};
  alignas(64) std::atomic<std::uint64_t> tail{0};
  std::atomic<bool> stop{false};
  const unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
  std::thread reader([&] {
    pin_to(1 % ncpu);
    std::uint64_t sum = 0;
    for (;;) {
      const std::uint64_t t = tail.load(std::memory_order_relaxed);
      const std::uint64_t h = head.load(std::memory_order_acquire);
      if (t == h) {
        if (stop.load(std::memory_order_acquire) && head.load() == t) break;
        if (ncpu == 1) std::this_thread::yield();
        continue;
      }
      const char* p = &data[(t % kSlots) * slot];
      for (std::size_t i = 0; i < size; i += 8)
        sum += static_cast<unsigned char>(p[i]);
      tail.store(t + 1, std::memory_order_release);
    }
    g_sink = g_sink + sum;
  });
  pin_to(0);
  std::uint64_t h = 0;
  const auto t0 = Clock::now();
  auto t1 = t0;
  while (elapsed_ns(t0, t1) < seconds * 1e9) {
    for (int i = 0; i < 256; ++i) {
      while (h - tail.load(std::memory_order_acquire) >= kSlots)
        if (ncpu == 1) std::this_thread::yield();
      std::memset(&data[(h % kSlots) * slot], static_cast<int>(h & 0x7f), size);
      head.store(++h, std::memory_order_release);
    }
    t1 = Clock::now();
  }
  stop.store(true, std::memory_order_release);
  reader.join();
  t1 = Clock::now();
  return elapsed_ns(t0, t1) / static_cast<double>(h);
}

// ns per run of an XDP program of `alu` additions through BPF_PROG_TEST_RUN,
// or a negative errno.
double xdp_test_run_ns(int alu, std::string& error) {
  std::vector<bpf_insn> insns;
  auto ins = [&](std::uint8_t code, std::uint8_t dst, std::int32_t imm) {
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.imm = imm;
    insns.push_back(i);
  };
  ins(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0);
  for (int i = 0; i < alu; ++i)
    ins(BPF_ALU64 | BPF_ADD | BPF_K, 0, 1);
  ins(BPF_ALU64 | BPF_MOV | BPF_K, 0, XDP_PASS);
  ins(BPF_JMP | BPF_EXIT, 0, 0);
  libbpf_set_print(nullptr);
  const int fd =
      bpf_prog_load(BPF_PROG_TYPE_XDP, "srl_calibrate", "GPL", insns.data(), insns.size(), nullptr);
  if (fd < 0) {
    error = std::string("loading an XDP program failed: ") + std::strerror(-fd);
    return -1;
  }
  unsigned char pkt[64] = {};
  pkt[12] = 0x08;  // an IPv4 Ethernet frame
  double best = -1;
  for (int round = 0; round < 5; ++round) {
    bpf_test_run_opts o{};  // LIBBPF_OPTS is a GNU statement expression
    o.sz = sizeof o;
    o.data_in = pkt;
    o.data_size_in = sizeof pkt;
    o.repeat = 100000;
    const int rc = bpf_prog_test_run_opts(fd, &o);
    if (rc != 0) {
      error = std::string("BPF_PROG_TEST_RUN failed: ") + std::strerror(errno);
      close(fd);
      return -1;
    }
    const double d = static_cast<double>(o.duration);  // ns per run, averaged by the kernel
    if (best < 0 || d < best) best = d;
  }
  close(fd);
  return best;
}

}  // namespace

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const filters::Cost* Profile::filter_cost(std::string_view filter, filters::SpaceKind k) const {
  auto it = filters.find(std::string(filter));
  if (it == filters.end()) return nullptr;
  auto c = it->second.find(k);
  return c == it->second.end() ? nullptr : &c->second;
}

nlohmann::ordered_json to_json(const Profile& p) {
  nlohmann::ordered_json j;
  j["srl_profile_version"] = kProfileJsonVersion;
  j["host"] = p.host;
  j["kernel"] = p.kernel;
  j["created"] = p.created;
  j["measurements"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : p.measurements)
    j["measurements"][k] = v;
  if (p.memory_bandwidth_bytes_per_s)
    j["memory_bandwidth_bytes_per_s"] = *p.memory_bandwidth_bytes_per_s;
  j["channels"] = nlohmann::ordered_json::object();
  for (const auto& [k, c] : p.channels)
    j["channels"][std::string(to_string(k))] = {{"ns_per_block", c.ns_per_block},
                                                {"ns_per_byte", c.ns_per_byte}};
  j["filters"] = nlohmann::ordered_json::object();
  for (const auto& [f, costs] : p.filters)
    for (const auto& [k, c] : costs)
      j["filters"][f][std::string(filters::to_string(k))] = {{"ns_per_block", c.ns_per_block},
                                                             {"ns_per_byte", c.ns_per_byte}};
  if (!p.hooks.empty()) {
    j["hooks"] = nlohmann::ordered_json::object();
    for (const auto& [driver, hooks] : p.hooks)
      for (const auto& [hook, c] : hooks)
        j["hooks"][driver][hook] = {{"ns_per_block", c.ns_per_block},
                                    {"ns_per_byte", c.ns_per_byte}};
  }
  return j;
}

Profile profile_from_json(const nlohmann::json& j) {
  auto num = [](const nlohmann::json& o, const char* key, const std::string& where) {
    if (!o.contains(key) || !o[key].is_number())
      throw std::runtime_error(where + ": expected a number \"" + key + "\"");
    const double v = o[key].get<double>();
    if (v < 0) throw std::runtime_error(where + "." + key + ": negative cost");
    return v;
  };
  if (!j.is_object() || !j.contains("srl_profile_version") ||
      j["srl_profile_version"] != kProfileJsonVersion)
    throw std::runtime_error("$.srl_profile_version: expected " +
                             std::to_string(kProfileJsonVersion));
  Profile p;
  p.host = j.value("host", "");
  p.kernel = j.value("kernel", "");
  p.created = j.value("created", "");
  if (j.contains("measurements"))
    for (const auto& [k, v] : j["measurements"].items())
      if (v.is_number()) p.measurements[k] = v.get<double>();
  if (j.contains("memory_bandwidth_bytes_per_s"))
    p.memory_bandwidth_bytes_per_s = num(j, "memory_bandwidth_bytes_per_s", "$");
  if (j.contains("channels"))
    for (const auto& [k, v] : j["channels"].items()) {
      auto kind = channel_kind_from_string(k);
      if (!kind) throw std::runtime_error("$.channels." + k + ": unknown channel kind");
      p.channels[*kind] = {num(v, "ns_per_block", "$.channels." + k),
                           num(v, "ns_per_byte", "$.channels." + k)};
    }
  if (j.contains("filters"))
    for (const auto& [f, kinds] : j["filters"].items())
      for (const auto& [k, v] : kinds.items()) {
        const std::string where = "$.filters." + f + "." + k;
        p.filters[f][impl_from(k)] = {num(v, "ns_per_block", where), num(v, "ns_per_byte", where)};
      }
  if (j.contains("hooks"))
    for (const auto& [driver, hooks] : j["hooks"].items())
      for (const auto& [hook, v] : hooks.items()) {
        const std::string where = "$.hooks." + driver + "." + hook;
        if (hook != "tc" && hook != "xdp-native" && hook != "xdp-generic")
          throw std::runtime_error(where +
                                   ": unknown hook (expected tc, xdp-native or xdp-generic)");
        p.hooks[driver][hook] = {num(v, "ns_per_block", where), num(v, "ns_per_byte", where)};
      }
  return p;
}

Profile load_profile(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  try {
    return profile_from_json(nlohmann::json::parse(in));
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
}

void save_profile(const Profile& p, const std::filesystem::path& file) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::trunc);
  out << to_json(p).dump(2) << "\n";
  if (!out) throw std::runtime_error(file.string() + ": cannot write");
}

std::optional<Profile> load_default_profile() {
  const auto p = default_profile_path();
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return std::nullopt;
  return load_profile(p);
}

std::filesystem::path default_profile_path() {
  if (const char* p = std::getenv("SRL_PROFILE"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    return std::filesystem::path(x) / "srl" / "profile.json";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : ".") / ".config" / "srl" / "profile.json";
}

namespace {

// An xdp space in native mode goes generic where the profile measured
// generic cheaper for its driver, at the planner's mean block (512 B).
void choose_xdp_mode(const std::map<std::string, filters::Cost>& hooks, Space& s, SystemModel& m) {
  const auto native = hooks.find("xdp-native"), generic = hooks.find("xdp-generic");
  if (native == hooks.end() || generic == hooks.end()) return;
  const auto at = [](const filters::Cost& c) { return c.ns_per_block + 512 * c.ns_per_byte; };
  if (at(generic->second) >= at(native->second)) return;
  s.mode = "generic";
  if (!s.capabilities.empty()) {  // empty: not probed, everything assumed
    s.capabilities.erase("xdp:native");
    s.capabilities.erase("xdp:xsk_zerocopy");
    s.capabilities.insert("xdp:generic");
  }
  for (auto& c : m.channels)
    if (c.from == s.id && c.kind == ChannelKind::afxdp && c.zero_copy)
      c.zero_copy = false, c.ns_per_block = 40, c.ns_per_byte = 0.05, c.mem_bytes_per_byte = 2;
  std::ostringstream o;
  o.precision(3);
  o << s.device << ": XDP in generic mode: the profile measured " << at(generic->second)
    << " ns per 512-byte frame for a " << s.driver << "'s generic XDP hook, " << at(native->second)
    << " for its native one";
  m.notes.push_back(o.str());
}

}  // namespace

void apply(const Profile& p, SystemModel& m) {
  for (auto& c : m.channels) {
    auto it = p.channels.find(c.kind);
    if (it == p.channels.end()) continue;
    c.ns_per_block = it->second.ns_per_block;
    c.ns_per_byte = it->second.ns_per_byte;
  }
  if (p.memory_bandwidth_bytes_per_s)
    m.host.memory_bandwidth_bytes_per_s = *p.memory_bandwidth_bytes_per_s;
  for (auto& s : m.spaces) {
    if (s.kind != Kind::xdp && s.kind != Kind::tc) continue;
    auto d = p.hooks.find(s.driver);
    if (d == p.hooks.end()) continue;
    if (s.kind == Kind::xdp && s.mode == "native" && !s.mode_fixed)
      choose_xdp_mode(d->second, s, m);
    const std::string hook = s.kind == Kind::tc ? "tc" : "xdp-" + s.mode;
    auto c = d->second.find(hook);
    if (c == d->second.end()) continue;
    s.hook_ns_per_block = c->second.ns_per_block;
    s.hook_ns_per_byte = c->second.ns_per_byte;
  }
}

Profile calibrate(const CalibrateOptions& opt, const std::function<void(const std::string&)>& log) {
  const filters::Catalog& catalog = opt.catalog ? *opt.catalog : filters::Catalog::builtin();
  auto say = [&](const std::string& s) {
    if (log) log(s);
  };
  auto fmt = [](double v) {
    std::ostringstream o;
    o.precision(3);
    o << v;
    return o.str();
  };
  Profile p;
  utsname u{};
  if (uname(&u) == 0) p.host = u.nodename, p.kernel = u.release;
  p.created = now_utc();
  const double t = opt.seconds_per_test;

  // Copies: a packet-sized copy within the cache, and a large one through memory.
  const double cached = memcpy_ns_per_byte(256 << 10, 1500, t);
  const double dram = memcpy_ns_per_byte(64 << 20, 1 << 20, t);
  p.measurements["memcpy_cached_ns_per_byte"] = cached;
  p.measurements["memcpy_dram_ns_per_byte"] = dram;
  p.memory_bandwidth_bytes_per_s = 2e9 / dram;  // a copy reads and writes every byte
  say("memcpy: " + fmt(cached) + " ns/B in cache, " + fmt(dram) + " ns/B through memory (" +
      fmt(*p.memory_bandwidth_bytes_per_s / 1e9) + " GB/s of memory traffic)");

  // Channels: two sizes give the per-block and the per-byte cost.
  auto fit = [&](const char* name, ChannelKind kind, double (*f)(std::size_t, double)) {
    const double small = f(64, t), large = f(1500, t);
    const double per_byte = std::max(0.0, (large - small) / (1500 - 64));
    const double per_block = std::max(0.0, small - 64 * per_byte);
    p.measurements[std::string(name) + "_64B_ns"] = small;
    p.measurements[std::string(name) + "_1500B_ns"] = large;
    p.channels[kind] = {per_block, per_byte};
    say(std::string(name) + ": " + fmt(per_block) + " ns/block + " + fmt(per_byte) +
        " ns/B (64 B: " + fmt(small) + " ns, 1500 B: " + fmt(large) + " ns)");
  };
  fit("pipe", ChannelKind::pipe, pipe_ns);
  fit("shm", ChannelKind::shm, ring_ns);

  if (opt.bpf) {
    std::string err;
    const double base = xdp_test_run_ns(0, err);
    const double big = base >= 0 ? xdp_test_run_ns(1000, err) : -1;
    if (base >= 0 && big >= 0) {
      const double per_insn = std::max(0.0, (big - base) / 1000);
      p.measurements["xdp_test_run_ns_per_packet"] = base;
      p.measurements["ebpf_ns_per_insn"] = per_insn;
      say("xdp: " + fmt(base) + " ns per packet for an empty program (BPF_PROG_TEST_RUN), " +
          fmt(per_insn) + " ns per instruction");
      // Inlined kernel filters cost their instructions; the hook's own cost is
      // paid by every plan alike.
      for (const auto& f : catalog.all())
        if (f.implemented_in(filters::SpaceKind::kernel) && f.ebpf_insns > 0) {
          const auto& c = *f.cost[static_cast<std::size_t>(filters::SpaceKind::kernel)];
          p.filters[std::string(f.name)][filters::SpaceKind::kernel] = {
              std::max(0.5, f.ebpf_insns * per_insn), c.ns_per_byte};
        }
    } else {
      say("xdp: skipped (" + err + ")");
    }
  }
  return p;
}

}  // namespace srl::optimizer
