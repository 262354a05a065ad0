#include "srl/optimizer/system_model.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace srl::optimizer {

namespace {
constexpr std::array<std::string_view, kKinds> kKindNames = {"offload", "xdp", "tc", "user"};
constexpr std::array<std::string_view, 8> kChannelNames = {"call",    "tailcall", "meta", "afxdp",
                                                           "ringbuf", "shm",      "pipe", "pcie"};

std::string fmt_bytes(std::uint64_t b) {
  if (b == 0) return "?";
  if (b >= (1u << 20) && b % (1u << 20) == 0) return std::to_string(b >> 20) + "M";
  if (b >= 1024 && b % 1024 == 0) return std::to_string(b >> 10) + "K";
  return std::to_string(b);
}

std::string fmt_num(double v) {
  std::ostringstream o;
  o.precision(v >= 100 || v == 0 ? 0 : 3);
  if (v >= 100 || v == 0) o << std::fixed;
  o << v;
  return o.str();
}

nlohmann::ordered_json caches_json(const Caches& c) {
  return {{"l1d", c.l1d}, {"l2", c.l2}, {"l3", c.l3}};
}

// Reads with the JSON path of what is missing or mistyped in the message.
struct Reader {
  std::string path;
  const nlohmann::json& j;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path + ": " + what);
  }
  Reader at(const std::string& key) const {
    if (!j.is_object()) fail("expected an object");
    auto it = j.find(key);
    if (it == j.end()) fail("missing \"" + key + "\"");
    return {path + "." + key, *it};
  }
  bool has(const std::string& key) const { return j.is_object() && j.contains(key); }
  std::string str() const {
    if (!j.is_string()) fail("expected a string");
    return j.get<std::string>();
  }
  double num() const {
    if (!j.is_number()) fail("expected a number");
    return j.get<double>();
  }
  std::uint64_t uint() const {
    if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<std::int64_t>() >= 0))
      fail("expected a non-negative integer");
    return j.get<std::uint64_t>();
  }
  bool boolean() const {
    if (!j.is_boolean()) fail("expected true or false");
    return j.get<bool>();
  }
  std::string str_or(const std::string& key, std::string d) const {
    return has(key) ? at(key).str() : d;
  }
  double num_or(const std::string& key, double d) const { return has(key) ? at(key).num() : d; }
  std::uint64_t uint_or(const std::string& key, std::uint64_t d) const {
    return has(key) ? at(key).uint() : d;
  }
  bool bool_or(const std::string& key, bool d) const { return has(key) ? at(key).boolean() : d; }
  std::vector<Reader> items() const {
    if (!j.is_array()) fail("expected an array");
    std::vector<Reader> out;
    for (std::size_t i = 0; i < j.size(); ++i)
      out.push_back({path + "[" + std::to_string(i) + "]", j[i]});
    return out;
  }
};

Caches caches_from(const Reader& r) {
  Caches c;
  if (!r.has("caches")) return c;
  Reader cr = r.at("caches");
  c.l1d = cr.uint_or("l1d", 0);
  c.l2 = cr.uint_or("l2", 0);
  c.l3 = cr.uint_or("l3", 0);
  return c;
}

std::uint32_t u32(const Reader& r) {
  const std::uint64_t v = r.uint();
  if (v > 0xffffffffu) r.fail("expected a 32-bit value");
  return static_cast<std::uint32_t>(v);
}

}  // namespace

std::string_view to_string(Kind k) {
  return kKindNames[static_cast<std::size_t>(k)];
}

std::optional<Kind> kind_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kKinds; ++i)
    if (kKindNames[i] == s) return static_cast<Kind>(i);
  return std::nullopt;
}

filters::SpaceKind impl_kind(Kind k) {
  switch (k) {
    case Kind::offload:
      return filters::SpaceKind::offload;
    case Kind::xdp:
    case Kind::tc:
      return filters::SpaceKind::kernel;
    case Kind::user:
      break;
  }
  return filters::SpaceKind::user;
}

std::string_view to_string(ChannelKind k) {
  return kChannelNames[static_cast<std::size_t>(k)];
}

std::optional<ChannelKind> channel_kind_from_string(std::string_view s) {
  for (std::size_t i = 0; i < kChannelNames.size(); ++i)
    if (kChannelNames[i] == s) return static_cast<ChannelKind>(i);
  return std::nullopt;
}

const Space* SystemModel::find_space(std::string_view id) const {
  for (const auto& s : spaces)
    if (s.id == id) return &s;
  return nullptr;
}

std::vector<std::string> SystemModel::devices() const {
  std::set<std::string> d;
  for (const auto& s : spaces)
    if (s.kind != Kind::user && !s.device.empty()) d.insert(s.device);
  return {d.begin(), d.end()};
}

std::string_view to_string(Carries c) {
  return c == Carries::copy ? "copy" : c == Carries::take ? "take" : "any";
}

const Channel* SystemModel::best_channel(std::string_view from, std::string_view to, double bytes,
                                         std::optional<Carries> delivery) const {
  const Channel* best = nullptr;
  double best_cost = 0;
  for (const auto& c : channels) {
    if (c.from != from || c.to != to) continue;
    if (delivery == Carries::copy && !c.copies()) continue;
    if (delivery == Carries::take && !c.takes()) continue;
    const double cost = c.ns_per_block + c.ns_per_byte * bytes;
    if (!best || cost < best_cost) best = &c, best_cost = cost;
  }
  return best;
}

nlohmann::ordered_json to_json(const SystemModel& m) {
  nlohmann::ordered_json j;
  j["srl_model_version"] = kModelJsonVersion;
  j["host"] = {{"hostname", m.host.hostname},
               {"kernel", m.host.kernel},
               {"cpu_model", m.host.cpu_model},
               {"cpus", m.host.cpus},
               {"memory_bytes", m.host.memory_bytes},
               {"memory_bandwidth_bytes_per_s", m.host.memory_bandwidth_bytes_per_s},
               {"caches", caches_json(m.host.caches)}};
  auto& spaces = j["spaces"] = nlohmann::ordered_json::array();
  for (const auto& s : m.spaces) {
    nlohmann::ordered_json o;
    o["id"] = s.id;
    o["kind"] = to_string(s.kind);
    nlohmann::ordered_json at = nlohmann::ordered_json::object();
    if (!s.device.empty()) at["device"] = s.device;
    if (s.queue) at["queue"] = *s.queue;
    if (s.cpu) at["cpu"] = *s.cpu;
    o["attachment"] = at;
    if (!s.mode.empty()) o["mode"] = s.mode;
    if (s.mode_fixed) o["mode_fixed"] = true;
    if (!s.driver.empty()) o["driver"] = s.driver;
    o["emulated"] = s.emulated;
    o["capabilities"] = s.capabilities;
    o["capacity_ns_per_s"] = s.capacity_ns_per_s;
    if (s.kind != Kind::user) {
      o["ebpf_insn_limit"] = s.ebpf_insn_limit;
      o["ebpf_function_limit"] = s.ebpf_function_limit;
      o["ebpf_exit_limit"] = s.ebpf_exit_limit;
      if (s.kind == Kind::xdp || s.kind == Kind::tc) o["verifier_limit"] = s.verifier_limit;
    }
    if (s.hook_ns_per_block != 0 || s.hook_ns_per_byte != 0)
      o["hook"] = {{"ns_per_block", s.hook_ns_per_block}, {"ns_per_byte", s.hook_ns_per_byte}};
    o["caches"] = caches_json(s.caches);
    spaces.push_back(o);
  }
  auto& chans = j["channels"] = nlohmann::ordered_json::array();
  for (const auto& c : m.channels) {
    nlohmann::ordered_json o;
    o["from"] = c.from;
    o["to"] = c.to;
    o["kind"] = to_string(c.kind);
    o["ns_per_block"] = c.ns_per_block;
    o["ns_per_byte"] = c.ns_per_byte;
    o["mem_bytes_per_byte"] = c.mem_bytes_per_byte;
    o["capacity_blocks_per_s"] = c.capacity_blocks_per_s;
    o["zero_copy"] = c.zero_copy;
    if (c.carries != Carries::any) o["carries"] = to_string(c.carries);
    if (!c.via.empty()) o["via"] = c.via;
    chans.push_back(o);
  }
  j["notes"] = m.notes;
  return j;
}

SystemModel model_from_json(const nlohmann::json& root) {
  Reader r{"$", root};
  SystemModel m;
  const std::uint64_t version = r.at("srl_model_version").uint();
  if (version != kModelJsonVersion)
    r.at("srl_model_version")
        .fail("unsupported version " + std::to_string(version) + ", expected " +
              std::to_string(kModelJsonVersion));
  if (r.has("host")) {
    Reader h = r.at("host");
    m.host.hostname = h.str_or("hostname", "");
    m.host.kernel = h.str_or("kernel", "");
    m.host.cpu_model = h.str_or("cpu_model", "");
    m.host.cpus = static_cast<std::uint32_t>(h.uint_or("cpus", 0));
    m.host.memory_bytes = h.uint_or("memory_bytes", 0);
    m.host.memory_bandwidth_bytes_per_s = h.num_or("memory_bandwidth_bytes_per_s", 10e9);
    m.host.caches = caches_from(h);
  }
  for (const Reader& sr : r.at("spaces").items()) {
    Space s;
    s.id = sr.at("id").str();
    const std::string kind = sr.at("kind").str();
    auto k = kind_from_string(kind);
    if (!k) sr.at("kind").fail("unknown kind \"" + kind + "\", expected offload, xdp, tc or user");
    s.kind = *k;
    if (sr.has("attachment")) {
      Reader a = sr.at("attachment");
      s.device = a.str_or("device", "");
      if (a.has("queue")) s.queue = u32(a.at("queue"));
      if (a.has("cpu")) s.cpu = u32(a.at("cpu"));
    }
    s.mode = sr.str_or("mode", "");
    s.mode_fixed = sr.bool_or("mode_fixed", false);
    s.driver = sr.str_or("driver", "");
    s.emulated = sr.bool_or("emulated", false);
    if (sr.has("capabilities"))
      for (const Reader& c : sr.at("capabilities").items())
        s.capabilities.insert(c.str());
    s.capacity_ns_per_s = sr.num_or("capacity_ns_per_s", 1e9);
    s.ebpf_insn_limit = static_cast<std::uint32_t>(sr.uint_or("ebpf_insn_limit", 0));
    // Absent (a model from before these limits, or written by hand): the
    // limits of the program srl generates for an xdp or tc hook, which do
    // not depend on the machine, so that a plan from the file deploys; 0
    // given explicitly means none.
    const bool hook = s.kind == Kind::xdp || s.kind == Kind::tc;
    s.ebpf_function_limit = static_cast<std::uint32_t>(
        sr.uint_or("ebpf_function_limit", hook ? kKernelFunctionLimit : 0));
    s.ebpf_exit_limit =
        static_cast<std::uint32_t>(sr.uint_or("ebpf_exit_limit", hook ? kKernelExitLimit : 0));
    // Absent: the kernel's budget (what `srl run` may load).
    s.verifier_limit =
        static_cast<std::uint32_t>(sr.uint_or("verifier_limit", hook ? kVerifierBudget : 0));
    if (sr.has("hook")) {
      Reader hk = sr.at("hook");
      s.hook_ns_per_block = hk.num_or("ns_per_block", 0);
      s.hook_ns_per_byte = hk.num_or("ns_per_byte", 0);
    }
    s.caches = caches_from(sr);
    m.spaces.push_back(std::move(s));
  }
  if (r.has("channels"))
    for (const Reader& cr : r.at("channels").items()) {
      Channel c;
      c.from = cr.at("from").str();
      c.to = cr.at("to").str();
      const std::string kind = cr.at("kind").str();
      auto k = channel_kind_from_string(kind);
      if (!k)
        cr.at("kind").fail("unknown channel kind \"" + kind +
                           "\", expected call, tailcall, meta, afxdp, ringbuf, shm, pipe or pcie");
      c.kind = *k;
      c.ns_per_block = cr.num_or("ns_per_block", 0);
      c.ns_per_byte = cr.num_or("ns_per_byte", 0);
      c.mem_bytes_per_byte = cr.num_or("mem_bytes_per_byte", 0);
      c.capacity_blocks_per_s = cr.num_or("capacity_blocks_per_s", 0);
      c.zero_copy = cr.bool_or("zero_copy", false);
      const std::string carries =
          cr.str_or("carries", c.kind == ChannelKind::afxdp ? "take" : "any");
      if (carries == "copy")
        c.carries = Carries::copy;
      else if (carries == "take")
        c.carries = Carries::take;
      else if (carries != "any")
        cr.at("carries").fail("unknown delivery \"" + carries + "\", expected copy, take or any");
      if (cr.has("via"))
        for (const Reader& v : cr.at("via").items())
          c.via.push_back(v.str());
      m.channels.push_back(std::move(c));
    }
  if (r.has("notes"))
    for (const Reader& n : r.at("notes").items())
      m.notes.push_back(n.str());
  auto problems = validate(m);
  if (!problems.empty()) throw std::runtime_error(problems.front());
  return m;
}

std::vector<std::string> validate(const SystemModel& m) {
  std::vector<std::string> out;
  std::map<std::string, const Space*> ids;
  for (std::size_t i = 0; i < m.spaces.size(); ++i) {
    const Space& s = m.spaces[i];
    const std::string where = "$.spaces[" + std::to_string(i) + "]";
    if (s.id.empty()) out.push_back(where + ": empty id");
    if (!ids.emplace(s.id, &s).second)
      out.push_back(where + ": duplicate space id \"" + s.id + "\"");
    if (s.kind != Kind::user && s.device.empty())
      out.push_back(where + " (" + s.id + "): a " + std::string(to_string(s.kind)) +
                    " space needs attachment.device");
    if (!(s.capacity_ns_per_s > 0))
      out.push_back(where + " (" + s.id + "): capacity_ns_per_s must be positive");
    if (s.hook_ns_per_block < 0 || s.hook_ns_per_byte < 0)
      out.push_back(where + " (" + s.id + "): negative hook cost");
    if (s.kind == Kind::user && (s.hook_ns_per_block != 0 || s.hook_ns_per_byte != 0))
      out.push_back(where + " (" + s.id + "): a user space has no hook cost");
  }
  for (std::size_t i = 0; i < m.channels.size(); ++i) {
    const Channel& c = m.channels[i];
    const std::string where = "$.channels[" + std::to_string(i) + "]";
    auto f = ids.find(c.from), t = ids.find(c.to);
    if (f == ids.end()) {
      out.push_back(where + ": unknown from-space \"" + c.from + "\"");
      continue;
    }
    if (t == ids.end()) {
      out.push_back(where + ": unknown to-space \"" + c.to + "\"");
      continue;
    }
    if (f->second->kind > t->second->kind)
      out.push_back(where + ": channel " + c.from + " -> " + c.to +
                    " goes down (data moves offload -> xdp -> tc -> user only)");
    if (c.from == c.to) out.push_back(where + ": channel from a space to itself");
    if (c.ns_per_block < 0 || c.ns_per_byte < 0 || c.mem_bytes_per_byte < 0)
      out.push_back(where + ": negative cost");
  }
  return out;
}

SystemModel load_model(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(file.string() + ": not JSON: " + e.what());
  }
  try {
    SystemModel m = model_from_json(j);
    m.origin = file.string();
    return m;
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
}

void save_model(const SystemModel& m, const std::filesystem::path& file) {
  std::ofstream out(file, std::ios::trunc);
  out << to_json(m).dump(2) << "\n";
  if (!out) throw std::runtime_error(file.string() + ": cannot write");
}

std::string to_text(const SystemModel& m) {
  std::ostringstream o;
  o << "host " << (m.host.hostname.empty() ? "?" : m.host.hostname) << ": kernel "
    << (m.host.kernel.empty() ? "?" : m.host.kernel) << ", " << m.host.cpus << " CPUs ("
    << (m.host.cpu_model.empty() ? "?" : m.host.cpu_model) << "), " << (m.host.memory_bytes >> 20)
    << " MiB, caches L1d " << fmt_bytes(m.host.caches.l1d) << " L2 " << fmt_bytes(m.host.caches.l2)
    << " L3 " << fmt_bytes(m.host.caches.l3) << ", copy bandwidth "
    << fmt_num(m.host.memory_bandwidth_bytes_per_s / 1e9) << " GB/s\n";
  if (!m.origin.empty()) o << "model: " << m.origin << "\n";
  // Both tables are sized to their contents, the way `ip` and bpftool print.
  using Row = std::vector<std::string>;
  auto print_table = [&o](const std::vector<Row>& rows) {
    std::vector<std::size_t> w;
    for (const auto& r : rows)
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (w.size() <= i) w.push_back(0);
        w[i] = std::max(w[i], r[i].size());
      }
    for (const auto& r : rows) {
      std::string line = " ";
      for (std::size_t i = 0; i < r.size(); ++i) {
        line += " " + r[i];
        if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 1, ' ');
      }
      while (!line.empty() && line.back() == ' ')
        line.pop_back();
      o << line << "\n";
    }
  };
  auto limit = [](std::uint32_t v) { return v == 0 ? std::string("-") : std::to_string(v); };
  std::vector<Row> spaces{
      {"id", "kind", "attachment", "capacity", "insn limit", "expr/exits", "capabilities"}};
  for (const auto& s : m.spaces) {
    std::string at;
    if (!s.device.empty()) at = "dev " + s.device;
    if (s.queue) at += " q" + std::to_string(*s.queue);
    if (s.cpu) at += (at.empty() ? "" : " ") + std::string("cpu ") + std::to_string(*s.cpu);
    if (!s.mode.empty()) at += " (" + s.mode + ")";
    std::string caps;
    if (s.hook_ns_per_block != 0 || s.hook_ns_per_byte != 0)
      caps =
          "hook " + fmt_num(s.hook_ns_per_block) + " ns + " + fmt_num(s.hook_ns_per_byte) + " ns/B";
    if (s.emulated) caps += std::string(caps.empty() ? "" : " ") + "EMULATED";
    for (const auto& c : s.capabilities)
      caps += (caps.empty() ? "" : " ") + c;
    bool user = s.kind == Kind::user;
    spaces.push_back(
        {s.id, std::string(to_string(s.kind)), at, fmt_num(s.capacity_ns_per_s / 1e9) + " CPU",
         user ? "-" : std::to_string(s.ebpf_insn_limit),
         user ? "-" : limit(s.ebpf_function_limit) + "/" + limit(s.ebpf_exit_limit), caps});
  }
  o << "\nspaces:\n";
  print_table(spaces);
  std::vector<Row> channels{{"from", "to", "kind", "per block", "per byte", "memory", "notes"}};
  for (const auto& c : m.channels) {
    std::string notes = c.zero_copy ? "zero-copy" : "copy";
    if (c.capacity_blocks_per_s > 0)
      notes += ", max " + fmt_num(c.capacity_blocks_per_s) + " blocks/s";
    if (!c.via.empty()) {
      notes += ", via";
      for (const auto& v : c.via)
        notes += " " + v;
    }
    channels.push_back({c.from, c.to, std::string(to_string(c.kind)),
                        fmt_num(c.ns_per_block) + " ns", fmt_num(c.ns_per_byte) + " ns/B",
                        fmt_num(c.mem_bytes_per_byte) + " B/B", notes});
  }
  o << "\nchannels (memory: bytes moved through memory per byte carried):\n";
  print_table(channels);
  if (!m.notes.empty()) {
    o << "\nnotes:\n";
    for (const auto& n : m.notes)
      o << "  - " << n << "\n";
  }
  return o.str();
}

void add_default_channels(SystemModel& m) {
  // Default costs before calibration, in ns for a CPU of a few GHz. A copy
  // moves every byte twice through memory (read and write).
  auto add = [&](const Space& a, const Space& b, ChannelKind k, double blk, double byte, double mem,
                 bool zc, std::vector<std::string> via = {}, Carries carries = Carries::any) {
    m.channels.push_back({.from = a.id,
                          .to = b.id,
                          .kind = k,
                          .ns_per_block = blk,
                          .ns_per_byte = byte,
                          .mem_bytes_per_byte = mem,
                          .zero_copy = zc,
                          .via = std::move(via),
                          .carries = k == ChannelKind::afxdp ? Carries::take : carries});
  };
  std::vector<const Space*> user;
  for (const auto& s : m.spaces)
    if (s.kind == Kind::user) user.push_back(&s);
  for (const std::string& dev : m.devices()) {
    const Space *off = nullptr, *xdp = nullptr, *tc = nullptr;
    for (const auto& s : m.spaces) {
      if (s.device != dev) continue;
      if (s.kind == Kind::offload) off = &s;
      if (s.kind == Kind::xdp) xdp = &s;
      if (s.kind == Kind::tc) tc = &s;
    }
    // AF_XDP copies unless the driver does zero-copy; its per-block cost is
    // what a userspace rx pays (the catalog's rx user cost).
    const bool zc = xdp && xdp->has("xdp:xsk_zerocopy");
    const double ax_blk = zc ? 30 : 40, ax_byte = zc ? 0 : 0.05, ax_mem = zc ? 0 : 2;
    // XDP_PASS to tc builds an skb: a fixed cost, no copy of the payload.
    const double meta_blk = 100;
    if (off) {
      // The device's result reaches the host in the packet's metadata; the
      // DMA happens anyway, so the host pays a few ns per block.
      if (xdp) add(*off, *xdp, ChannelKind::pcie, 5, 0, 0, true);
      if (tc)
        add(*off, *tc, ChannelKind::pcie, 5 + meta_blk, 0, 0, true,
            xdp ? std::vector{xdp->id} : std::vector<std::string>{});
      if (xdp)
        for (const Space* u : user)
          add(*off, *u, ChannelKind::pcie, 5 + ax_blk, ax_byte, ax_mem, zc, {xdp->id},
              Carries::take);
    }
    // No xdp -> tc channel: a device's kernel part runs on one hook, as
    // one program (no driver passes a block's state from XDP to TC).
    // Up to userspace: from XDP, AF_XDP takes the block itself and a BPF
    // ring buffer carries copies; from TC the ring buffer carries both (a
    // take drops the original after the copy), reading through the skb,
    // made linear first.
    if (xdp)
      for (const Space* u : user) {
        add(*xdp, *u, ChannelKind::afxdp, ax_blk, ax_byte, ax_mem, zc);
        add(*xdp, *u, ChannelKind::ringbuf, 30, 0.05, 2, false, {}, Carries::copy);
      }
    if (tc)
      for (const Space* u : user)
        add(*tc, *u, ChannelKind::ringbuf, 40, 0.05, 2, false);
  }
  // Between cores: a shared-memory ring passes an index; the reader pulls
  // the cache lines from the writer's cache.
  for (const Space* a : user)
    for (const Space* b : user)
      if (a != b) {
        add(*a, *b, ChannelKind::shm, 25, 0.02, 0, true);
        add(*a, *b, ChannelKind::pipe, 800, 0.1, 2, false);
      }
}

}  // namespace srl::optimizer
