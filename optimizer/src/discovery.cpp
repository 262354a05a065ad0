#include "srl/optimizer/discovery.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace srl::optimizer {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

// "0-3,5,7-8" -> {0,1,2,3,5,7,8}
std::vector<std::uint32_t> parse_cpu_list(const std::string& s) {
  std::vector<std::uint32_t> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    if (part.empty()) continue;
    const auto dash = part.find('-');
    try {
      const unsigned long lo = std::stoul(part.substr(0, dash));
      const unsigned long hi = dash == std::string::npos ? lo : std::stoul(part.substr(dash + 1));
      for (unsigned long c = lo; c <= hi && c < 65536; ++c)
        out.push_back(static_cast<std::uint32_t>(c));
    } catch (const std::exception&) {
    }
  }
  return out;
}

// "32K", "1024K", "8M" -> bytes
std::uint64_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  std::uint64_t v = 0;
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9')
    v = v * 10 + static_cast<std::uint64_t>(s[i++] - '0');
  if (i < s.size() && (s[i] == 'K' || s[i] == 'k')) v <<= 10;
  if (i < s.size() && s[i] == 'M') v <<= 20;
  if (i < s.size() && s[i] == 'G') v <<= 30;
  return v;
}

Caches read_caches(const fs::path& cpu_dir) {
  Caches c;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cpu_dir / "cache", ec)) {
    if (e.path().filename().string().rfind("index", 0) != 0) continue;
    const std::string level = slurp(e.path() / "level"), type = slurp(e.path() / "type");
    const std::uint64_t size = parse_size(slurp(e.path() / "size"));
    if (level == "1" && type == "Data") c.l1d = size;
    if (level == "2") c.l2 = size;
    if (level == "3") c.l3 = size;
  }
  return c;
}

std::string driver_of(const std::string& dev, const fs::path& netdir) {
  std::error_code ec;
  const fs::path link = fs::read_symlink(netdir / "device" / "driver", ec);
  if (!ec) return link.filename().string();
  // Virtual devices (veth) have no device link; ethtool knows their driver.
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return {};
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&info);  // NOLINT
  std::string out;
  if (ioctl(fd, SIOCETHTOOL, &ifr) == 0) out = info.driver;
  close(fd);
  return out;
}

// XDP feature bits of the netdev netlink family (uapi linux/netdev.h).
enum : std::uint64_t {
  kXdpBasic = 1,
  kXdpRedirect = 2,
  kXdpNdoXmit = 4,
  kXdpXskZerocopy = 8,
  kXdpHwOffload = 16,
};

// The netlink macros mix int and size_t; these are the same sizes, typed.
constexpr std::size_t align4(std::size_t n) {
  return (n + 3) & ~std::size_t{3};
}
constexpr std::size_t kNlHdr = align4(sizeof(nlmsghdr));
constexpr std::size_t kGenlHdr = align4(sizeof(genlmsghdr));
constexpr std::size_t kAttrHdr = align4(sizeof(nlattr));

class Netlink {
 public:
  Netlink() {
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd_ >= 0) {
      timeval tv{1, 0};  // a kernel that does not answer must not hang discovery
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
  }
  ~Netlink() {
    if (fd_ >= 0) close(fd_);
  }
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  // The id of the "netdev" generic netlink family; 0 if the kernel lacks it.
  std::uint16_t family() {
    std::vector<char> msg = request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY);
    put_attr(msg, CTRL_ATTR_FAMILY_NAME, "netdev", 7);
    std::uint16_t id = 0;
    exchange(msg, [&](std::uint16_t type, const char* data, std::size_t len) {
      if (type == CTRL_ATTR_FAMILY_ID && len >= 2) std::memcpy(&id, data, 2);
    });
    return id;
  }

  // XDP feature bits of a device, if the kernel reports them.
  std::optional<std::uint64_t> xdp_features(std::uint16_t fam, std::uint32_t ifindex) {
    constexpr std::uint8_t kDevGet = 1;
    constexpr std::uint16_t kIfindex = 1, kFeatures = 3;
    std::vector<char> msg = request(fam, kDevGet);
    put_attr(msg, kIfindex, &ifindex, 4);
    std::optional<std::uint64_t> out;
    exchange(msg, [&](std::uint16_t type, const char* data, std::size_t len) {
      if (type == kFeatures && len >= 8) {
        std::uint64_t v = 0;
        std::memcpy(&v, data, 8);
        out = v;
      }
    });
    return out;
  }

  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::uint32_t seq_ = 1;

  std::vector<char> request(std::uint16_t type, std::uint8_t cmd) {
    std::vector<char> msg(kNlHdr + kGenlHdr, 0);
    nlmsghdr nh{};
    nh.nlmsg_type = type;
    nh.nlmsg_flags = NLM_F_REQUEST;
    nh.nlmsg_seq = seq_++;
    std::memcpy(msg.data(), &nh, sizeof nh);
    genlmsghdr gh{};
    gh.cmd = cmd;
    gh.version = 1;
    std::memcpy(msg.data() + kNlHdr, &gh, sizeof gh);
    return msg;
  }

  static void put_attr(std::vector<char>& msg, std::uint16_t type, const void* data,
                       std::size_t len) {
    nlattr a{};
    a.nla_len = static_cast<std::uint16_t>(kAttrHdr + len);
    a.nla_type = type;
    const std::size_t off = msg.size();
    msg.resize(off + align4(kAttrHdr + len), 0);
    std::memcpy(msg.data() + off, &a, sizeof a);
    std::memcpy(msg.data() + off + kAttrHdr, data, len);
  }

  template <typename F>
  void exchange(std::vector<char>& msg, F&& on_attr) {
    if (fd_ < 0) return;
    const auto len = static_cast<std::uint32_t>(msg.size());
    std::memcpy(msg.data(), &len, 4);  // nlmsg_len is the first field
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (sendto(fd_, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
      return;
    char buf[8192];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return;
    std::size_t off = 0;
    const auto total = static_cast<std::size_t>(n);
    while (off + kNlHdr <= total) {
      nlmsghdr nh{};
      std::memcpy(&nh, buf + off, sizeof nh);
      if (nh.nlmsg_len < kNlHdr || off + nh.nlmsg_len > total) return;
      if (nh.nlmsg_type == NLMSG_ERROR || nh.nlmsg_type == NLMSG_DONE) return;
      std::size_t p = off + kNlHdr + kGenlHdr;
      const std::size_t end = off + nh.nlmsg_len;
      while (p + kAttrHdr <= end) {
        nlattr a{};
        std::memcpy(&a, buf + p, sizeof a);
        if (a.nla_len < kAttrHdr || p + a.nla_len > end) break;
        on_attr(static_cast<std::uint16_t>(a.nla_type & NLA_TYPE_MASK), buf + p + kAttrHdr,
                a.nla_len - kAttrHdr);
        p += align4(a.nla_len);
      }
      off += align4(nh.nlmsg_len);
    }
  }
};

// Drivers known to run XDP in the driver (native) and to do AF_XDP
// zero-copy, for kernels older than the netdev netlink family (6.3).
bool native_xdp_driver(const std::string& d) {
  static const std::set<std::string> k = {
      "veth",    "virtio_net", "mlx5_core", "mlx4_en", "i40e", "ice", "ixgbe",  "igb",       "igc",
      "bnxt_en", "nfp",        "ena",       "tun",     "qede", "sfc", "stmmac", "hv_netvsc", "gve"};
  return k.contains(d);
}
bool zerocopy_driver(const std::string& d) {
  static const std::set<std::string> k = {"mlx5_core", "i40e",   "ice", "ixgbe",
                                          "igc",       "stmmac", "gve"};
  return k.contains(d);
}

struct BpfFeatures {
  std::set<std::string> xdp, tc;
  bool probed = false;
  std::string error;
};

BpfFeatures probe_bpf() {
  BpfFeatures f;
  libbpf_set_print(nullptr);  // probes fail on purpose; keep libbpf quiet
  const int xdp = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_XDP, nullptr);
  if (xdp < 0) {
    f.error = std::string("BPF feature probes failed (") + std::strerror(-xdp) +
              "); they need CAP_BPF and CAP_NET_ADMIN";
    return f;
  }
  f.probed = true;
  std::set<std::string> common;
  const std::pair<bpf_map_type, const char*> maps[] = {{BPF_MAP_TYPE_PERCPU_ARRAY, "percpu_array"},
                                                       {BPF_MAP_TYPE_LRU_HASH, "lru_hash"},
                                                       {BPF_MAP_TYPE_RINGBUF, "ringbuf"},
                                                       {BPF_MAP_TYPE_XSKMAP, "xskmap"},
                                                       {BPF_MAP_TYPE_DEVMAP, "devmap"},
                                                       {BPF_MAP_TYPE_PROG_ARRAY, "prog_array"}};
  for (const auto& [t, name] : maps)
    if (libbpf_probe_bpf_map_type(t, nullptr) == 1) common.insert(std::string("map:") + name);
  const std::pair<bpf_func_id, const char*> helpers[] = {
      {BPF_FUNC_redirect_map, "redirect_map"},     {BPF_FUNC_xdp_adjust_meta, "xdp_adjust_meta"},
      {BPF_FUNC_ktime_get_ns, "ktime_get_ns"},     {BPF_FUNC_get_prandom_u32, "get_prandom_u32"},
      {BPF_FUNC_tail_call, "tail_call"},           {BPF_FUNC_ringbuf_output, "ringbuf_output"},
      {BPF_FUNC_skb_load_bytes, "skb_load_bytes"}, {BPF_FUNC_redirect, "redirect"}};
  auto probe_prog = [&](bpf_prog_type type, const char* name, std::set<std::string>& out) {
    if (libbpf_probe_bpf_prog_type(type, nullptr) != 1) return;
    out = common;
    out.insert(std::string("prog:") + name);
    for (const auto& [h, hname] : helpers)
      if (libbpf_probe_bpf_helper(type, h, nullptr) == 1)
        out.insert(std::string("helper:") + hname);
  };
  probe_prog(BPF_PROG_TYPE_XDP, "xdp", f.xdp);
  probe_prog(BPF_PROG_TYPE_SCHED_CLS, "sched_cls", f.tc);
  const int xsk = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (xsk >= 0) {
    f.xdp.insert("afxdp");
    close(xsk);
  }
  return f;
}

// What runs on the XDP hook of `dev`. `held`: who holds it outright, so
// that srl cannot run there (not libxdp's multi-program dispatcher, which
// srl joins, nor an srl program). `shared`: the mode of the dispatcher or
// srl program that runs there, which srl's program has to take (it joins
// the dispatcher, or swaps in the running hook). Neither when the hook is
// empty or its holder cannot be inspected (the runtime says so at attach).
// Only the program's name is needed here; runtime/src/xdp_attach.cpp
// (kernel::xdp_hook_holder) also checks with libxdp that the dispatcher
// can be joined.
struct XdpHookState {
  std::optional<std::string> held;
  std::optional<std::string> shared;  // "native" | "generic"
  std::string who;                    // of `shared`: "libxdp's dispatcher" or "srl's program"
};
XdpHookState xdp_hook_state(const std::string& dev) {
  const int ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (ifindex == 0 || bpf_xdp_query(ifindex, 0, &q) != 0) return {};
  const std::uint32_t id = q.drv_prog_id != 0 ? q.drv_prog_id : q.skb_prog_id;
  if (id == 0) return {};
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {};
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  const bool ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0;
  close(fd);
  if (!ok) return {};
  const std::string name(info.name, strnlen(info.name, sizeof info.name));
  const std::string mode = q.drv_prog_id != 0 ? "native" : "generic";
  if (name == "xdp_dispatcher") return {{}, mode, "libxdp's dispatcher"};
  if (name.starts_with("srl_")) return {{}, mode, "srl's program"};
  return {dev + "'s XDP hook is held by program " + std::to_string(id) + " '" + name + "' (" +
              mode + " mode, not a libxdp dispatcher)",
          {},
          {}};
}

}  // namespace

std::vector<std::string> up_ethernet_devices(const std::string& sysfs) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(sysfs) / "class/net", ec)) {
    if (slurp(e.path() / "type") != "1") continue;  // Ethernet only (not loopback, tunnels)
    const std::string state = slurp(e.path() / "operstate");
    if (state == "up" || state == "unknown") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

SystemModel discover(const DiscoveryOptions& opt) {
  SystemModel m;
  m.origin = "discovered";
  const fs::path sys(opt.sysfs), proc(opt.procfs);
  utsname u{};
  if (uname(&u) == 0) {
    m.host.hostname = u.nodename;
    m.host.kernel = u.release;
  }
  {
    std::ifstream in(proc / "cpuinfo");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
        m.host.cpu_model = line.substr(line.find(':') + 2);
        break;
      }
    std::ifstream mi(proc / "meminfo");
    for (std::string line; std::getline(mi, line);)
      if (line.rfind("MemTotal:", 0) == 0) {
        const auto digits = line.find_first_of("0123456789");
        if (digits != std::string::npos)
          m.host.memory_bytes = parse_size(line.substr(digits)) << 10;
      }
  }
  const auto cpus = parse_cpu_list(slurp(sys / "devices/system/cpu/online"));
  m.host.cpus = static_cast<std::uint32_t>(cpus.size());
  if (!cpus.empty())
    m.host.caches =
        read_caches(sys / "devices/system/cpu" / ("cpu" + std::to_string(cpus.front())));

  // Devices.
  std::map<std::string, fs::path> all;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(sys / "class/net", ec))
    all[e.path().filename().string()] = e.path();
  std::vector<std::string> devices = opt.devices;
  if (devices.empty()) devices = up_ethernet_devices(opt.sysfs);
  for (const auto& d : devices)
    if (!all.contains(d)) {
      std::string known;
      for (const auto& [name, p] : all)
        known += (known.empty() ? "" : ", ") + name;
      throw std::runtime_error("device '" + d + "' does not exist here (devices: " + known + ")");
    }

  BpfFeatures bpf;
  if (opt.probe_bpf) bpf = probe_bpf();
  if (!bpf.probed) {
    // Without probes assume what every kernel since 5.10 has, and say so.
    const std::set<std::string> base = {"map:percpu_array",
                                        "map:lru_hash",
                                        "map:ringbuf",
                                        "map:xskmap",
                                        "map:devmap",
                                        "map:prog_array",
                                        "helper:redirect_map",
                                        "helper:xdp_adjust_meta",
                                        "helper:ktime_get_ns",
                                        "helper:get_prandom_u32",
                                        "helper:tail_call",
                                        "helper:ringbuf_output",
                                        "afxdp"};
    bpf.xdp = bpf.tc = base;
    bpf.xdp.insert("prog:xdp");
    bpf.tc.insert("prog:sched_cls");
    bpf.tc.erase("afxdp");
    m.notes.push_back((bpf.error.empty() ? std::string("BPF probes skipped") : bpf.error) +
                      "; kernel capabilities are ASSUMED (those of Linux 5.10)");
  }
  Netlink nl;
  const std::uint16_t netdev_family = opt.probe_bpf && nl.ok() ? nl.family() : 0;
  if (opt.probe_bpf && netdev_family == 0)
    m.notes.push_back(
        "the kernel has no netdev netlink family (Linux < 6.3): native XDP and "
        "zero-copy are guessed from the driver name");

  for (const auto& dev : devices) {
    const fs::path p = all[dev];
    const std::string driver = driver_of(dev, p);
    std::uint32_t rxq = 0;
    for (const auto& e : fs::directory_iterator(p / "queues", ec))
      if (e.path().filename().string().rfind("rx-", 0) == 0) ++rxq;
    rxq = std::max<std::uint32_t>(rxq, 1);
    bool native = native_xdp_driver(driver), zc = zerocopy_driver(driver), redirect = native,
         hw = false;
    std::string how = "driver " + (driver.empty() ? std::string("?") : driver);
    if (netdev_family != 0) {
      const unsigned ifindex = if_nametoindex(dev.c_str());
      if (auto f = nl.xdp_features(netdev_family, ifindex)) {
        native = (*f & kXdpBasic) != 0;
        redirect = (*f & kXdpRedirect) != 0;
        zc = (*f & kXdpXskZerocopy) != 0;
        hw = (*f & kXdpHwOffload) != 0;
        how = "netdev xdp-features";
      }
    }
    const double capacity =
        1e9 * std::min<double>(rxq, std::max<double>(1, static_cast<double>(cpus.size())));
    Space x;
    x.id = "xdp:" + dev;
    x.kind = Kind::xdp;
    x.device = dev;
    x.mode = native ? "native" : "generic";
    if (opt.xdp_mode == "native" && !native)
      throw std::runtime_error("XDP native mode: " + dev + " (driver " +
                               (driver.empty() ? std::string("?") : driver) +
                               ") has no native XDP (" + how + "); generic mode runs anywhere");
    if (!opt.xdp_mode.empty()) x.mode = opt.xdp_mode, x.mode_fixed = true;
    const XdpHookState hook = opt.probe_bpf ? xdp_hook_state(dev) : XdpHookState{};
    if (hook.shared) {
      // srl's program joins the running dispatcher, or swaps in the running
      // hook, in the mode it runs in: the mode changes only when the hook
      // is attached anew.
      if (!opt.xdp_mode.empty() && opt.xdp_mode != *hook.shared)
        throw std::runtime_error("XDP " + opt.xdp_mode + " mode: " + dev + "'s XDP hook runs " +
                                 hook.who + " in " + *hook.shared +
                                 " mode, which srl's program joins in that mode");
      if (x.mode != *hook.shared)
        m.notes.push_back(dev + ": XDP in " + *hook.shared + " mode: its hook runs " + hook.who +
                          " in that mode");
      x.mode = *hook.shared, x.mode_fixed = true;
    }
    if (x.mode == "generic") zc = false;  // AF_XDP zero-copy needs the driver's XDP
    x.driver = driver;
    x.capabilities = bpf.xdp;
    x.capabilities.insert(x.mode == "native" ? "xdp:native" : "xdp:generic");
    if (redirect) x.capabilities.insert("xdp:redirect");
    if (zc) x.capabilities.insert("xdp:xsk_zerocopy");
    x.capacity_ns_per_s = capacity;
    // The verifier's limit since Linux 5.2 for privileged loaders.
    x.ebpf_insn_limit = 1'000'000;
    // What the program srl generates for a hook holds: tcpdump expressions
    // (BPF functions) and exits to userspace. The runtime enforces the same
    // numbers (runtime/include/srl/runtime/kernel.h, kMaxExpressions and
    // kMaxExits) when it generates the program.
    x.ebpf_function_limit = kKernelFunctionLimit;
    x.ebpf_exit_limit = kKernelExitLimit;
    x.verifier_limit = opt.verifier_limit;
    x.caches = m.host.caches;
    // A hook another program holds outright is no space of srl's: the
    // device's requests run from its TC hook.
    if (hook.held)
      m.notes.push_back(*hook.held + ": no xdp space on " + dev + "; its kernel part runs at TC");
    else
      m.spaces.push_back(x);
    Space t;
    t.id = "tc:" + dev;
    t.kind = Kind::tc;
    t.device = dev;
    t.driver = driver;
    t.capabilities = bpf.tc;
    t.capacity_ns_per_s = capacity;
    t.ebpf_insn_limit = 1'000'000;
    t.ebpf_function_limit = kKernelFunctionLimit;  // as for xdp above
    t.ebpf_exit_limit = kKernelExitLimit;
    t.verifier_limit = opt.verifier_limit;
    t.caches = m.host.caches;
    m.spaces.push_back(t);
    m.notes.push_back(dev + ": XDP " + x.mode + (zc ? ", AF_XDP zero-copy" : ", AF_XDP copy mode") +
                      ", " + std::to_string(rxq) + " rx queue(s) (" + how + ")" +
                      (hw ? "; the device reports XDP hardware offload" : ""));
  }
  std::uint32_t n_user = static_cast<std::uint32_t>(cpus.size());
  if (opt.max_user_cpus != 0) n_user = std::min(n_user, opt.max_user_cpus);
  for (std::uint32_t i = 0; i < n_user; ++i) {
    Space s;
    s.id = "user:" + std::to_string(cpus[i]);
    s.kind = Kind::user;
    s.cpu = cpus[i];
    s.capabilities = {"process"};
    s.capacity_ns_per_s = 1e9;
    s.caches = read_caches(sys / "devices/system/cpu" / ("cpu" + std::to_string(cpus[i])));
    m.spaces.push_back(std::move(s));
  }
  // Per device xdp, then tc, then user: the order data flows.
  std::stable_sort(m.spaces.begin(), m.spaces.end(), [](const Space& a, const Space& b) {
    if (a.kind == Kind::user || b.kind == Kind::user) return a.kind < b.kind;
    if (a.device != b.device) return a.device < b.device;
    return a.kind < b.kind;
  });
  add_default_channels(m);
  // AF_XDP needs the socket family and the XSKMAP; without them xdp reaches
  // userspace only through tc.
  std::erase_if(m.channels, [&](const Channel& c) {
    const Space* from = m.find_space(c.from);
    const Space* x = c.kind == ChannelKind::afxdp ? from : nullptr;
    if (c.kind == ChannelKind::pcie && !c.via.empty() && m.find_space(c.to)->kind == Kind::user)
      x = m.find_space(c.via.front());
    if (x && !(x->has("afxdp") && x->has("map:xskmap"))) return true;
    return c.kind == ChannelKind::ringbuf && !from->has("map:ringbuf");
  });
  return m;
}

}  // namespace srl::optimizer
