// What a hook costs every frame a veth receives (calibrate.h,
// calibrate_veth_hooks): frames sent through a veth pair in a network
// namespace of a thread of its own, with no program, a minimal TC program
// and a minimal XDP program (native and generic) on the receiving end.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <dirent.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <system_error>
#include <thread>
#include <vector>

#include "owned_fd.h"
#include "srl/runtime/calibrate.h"
#include "srl/runtime/kernel.h"
#include "srl/runtime/packet_socket.h"

namespace srl::runtime::kernel {
namespace {

[[noreturn]] void fail(const std::string& what, int err = errno) {
  throw KernelError("hook calibration: " + what + ": " + std::strerror(err));
}

using Fd = OwnedFd;

// Netlink attributes appended to a request buffer; nest() returns the
// offset whose length end() fills in.
class NlRequest {
 public:
  NlRequest(std::uint16_t type, std::uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    h.nlmsg_seq = 1;
    put(&h, sizeof h);
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    buf_.resize((buf_.size() + 3) & ~std::size_t{3}, std::uint8_t{0});
  }
  void attr(std::uint16_t type, const void* p, std::size_t n) {
    nlattr a{};
    a.nla_type = type;
    a.nla_len = static_cast<std::uint16_t>(sizeof(nlattr) + n);
    put(&a, sizeof a);  // 4 bytes: the payload starts aligned
    put(p, n);
  }
  void attr(std::uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
  std::size_t nest(std::uint16_t type) {
    const std::size_t at = buf_.size();
    nlattr a{};
    a.nla_type = type;
    put(&a, sizeof a);
    return at;
  }
  void end(std::size_t at) {
    const auto len = static_cast<std::uint16_t>(buf_.size() - at);
    std::memcpy(buf_.data() + at, &len, sizeof len);
  }
  // Sends the request and waits for its acknowledgement.
  void run(int fd, const std::string& what) {
    const auto len = static_cast<std::uint32_t>(buf_.size());
    std::memcpy(buf_.data(), &len, sizeof len);
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (sendto(fd, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
      fail(what);
    alignas(nlmsghdr) char reply[4096];
    const ssize_t n = recv(fd, reply, sizeof reply, 0);
    if (n < static_cast<ssize_t>(NLMSG_HDRLEN + sizeof(nlmsgerr))) fail(what + " (no answer)");
    nlmsghdr h{};
    std::memcpy(&h, reply, sizeof h);
    if (h.nlmsg_type != NLMSG_ERROR) fail(what + " (unexpected answer)", EPROTO);
    nlmsgerr e{};
    std::memcpy(&e, reply + NLMSG_HDRLEN, sizeof e);
    if (e.error != 0) fail(what, -e.error);
  }

 private:
  std::vector<std::uint8_t> buf_;
};

void add_veth_pair(int nl, const std::string& a, const std::string& b) {
  NlRequest r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  r.put(&ifi, sizeof ifi);
  r.attr(IFLA_IFNAME, a);
  const auto info = r.nest(IFLA_LINKINFO);
  r.attr(IFLA_INFO_KIND, std::string("veth"));
  const auto data = r.nest(IFLA_INFO_DATA);
  const auto peer = r.nest(VETH_INFO_PEER);
  r.put(&ifi, sizeof ifi);
  r.attr(IFLA_IFNAME, b);
  r.end(peer);
  r.end(data);
  r.end(info);
  r.run(nl, "creating veth pair " + a + "/" + b);
}

void set_up(int nl, int ifindex, const std::string& name) {
  NlRequest r(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  r.put(&ifi, sizeof ifi);
  r.run(nl, "setting " + name + " up");
}

// A program of two instructions: r0 = verdict; exit.
int load_minimal(bpf_prog_type type, int verdict, const char* name) {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, verdict},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  const int fd = bpf_prog_load(type, name, "GPL", insns, 2, nullptr);
  if (fd < 0) fail(std::string("loading ") + name);
  return fd;
}

std::uint64_t ns_of(const timespec& t) {
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(t.tv_nsec);
}

// CPU time of the calling thread plus that of every ksoftirqd: on a veth
// the receive path runs in the sender's softirq, or in ksoftirqd when it
// falls behind.
class CpuClock {
 public:
  CpuClock() {
    if (DIR* d = opendir("/proc")) {
      while (dirent* e = readdir(d)) {
        const std::string pid = e->d_name;
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream comm("/proc/" + pid + "/comm");
        std::string name;
        if (std::getline(comm, name) && name.starts_with("ksoftirqd/"))
          schedstats_.push_back("/proc/" + pid + "/schedstat");
      }
      closedir(d);
    }
  }
  std::uint64_t now() const {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    std::uint64_t ns = ns_of(t);
    for (const auto& path : schedstats_) {
      std::ifstream in(path);
      std::uint64_t run = 0;
      if (in >> run) ns += run;
    }
    return ns;
  }

 private:
  std::vector<std::string> schedstats_;
};

struct Frames {
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<iovec> iov;
  std::vector<mmsghdr> msgs;
};

// `count` copies of one UDP/IPv4 frame of `bytes` to a MAC that is not the
// receiver's: the stack drops it right after the hooks (PACKET_OTHERHOST),
// so what differs between the runs is the hook.
Frames make_frames(std::size_t bytes, std::size_t count) {
  Frames f;
  std::vector<std::uint8_t> frame(std::max<std::size_t>(bytes, 60), 0);
  const std::uint8_t dst[6] = {0x02, 0x5e, 0x00, 0x00, 0x00, 0x02};
  const std::uint8_t src[6] = {0x02, 0x5e, 0x00, 0x00, 0x00, 0x01};
  std::memcpy(frame.data(), dst, 6);
  std::memcpy(frame.data() + 6, src, 6);
  frame[12] = 0x08;
  frame[14] = 0x45;
  const auto ip_len = static_cast<std::uint16_t>(frame.size() - 14);
  frame[16] = static_cast<std::uint8_t>(ip_len >> 8);
  frame[17] = static_cast<std::uint8_t>(ip_len & 0xFF);
  frame[22] = 64;
  frame[23] = 17;
  frame[26] = 10, frame[27] = 255, frame[29] = 1;
  frame[30] = 10, frame[31] = 255, frame[33] = 2;
  frame[34] = 0x23, frame[35] = 0x28;  // 9000
  frame[36] = 0x23, frame[37] = 0x28;
  const auto udp_len = static_cast<std::uint16_t>(ip_len - 20);
  frame[38] = static_cast<std::uint8_t>(udp_len >> 8);
  frame[39] = static_cast<std::uint8_t>(udp_len & 0xFF);
  f.data.assign(count, frame);
  f.iov.resize(count);
  f.msgs.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    f.iov[i] = {f.data[i].data(), f.data[i].size()};
    f.msgs[i] = {};
    f.msgs[i].msg_hdr.msg_iov = &f.iov[i];
    f.msgs[i].msg_hdr.msg_iovlen = 1;
  }
  return f;
}

enum class Hook { none, tc, xdp_native, xdp_generic, packet };

class Attached {
 public:
  Attached(Hook hook, int ifindex, int xdp_fd, int tc_fd) : hook_(hook), ifindex_(ifindex) {
    if (hook == Hook::xdp_native || hook == Hook::xdp_generic) {
      flags_ = XDP_FLAGS_UPDATE_IF_NOEXIST |
               (hook == Hook::xdp_native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
      if (bpf_xdp_attach(ifindex, xdp_fd, flags_, nullptr) != 0)
        fail(std::string("attaching XDP (") + (hook == Hook::xdp_native ? "native" : "generic") +
             ")");
    } else if (hook == Hook::tc) {
      tc_ = kernel::attach_tc_ingress(tc_fd, ifindex);  // as TcHook attaches
    }
  }
  ~Attached() {
    if (hook_ == Hook::xdp_native || hook_ == Hook::xdp_generic)
      bpf_xdp_detach(ifindex_, flags_ & ~XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
    else if (hook_ == Hook::tc)
      kernel::detach_tc_ingress(tc_, ifindex_);
  }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;

 private:
  Hook hook_;
  int ifindex_;
  std::uint32_t flags_ = 0;
  kernel::TcIngress tc_;
};

std::map<std::string, HookCost> measure_in_own_netns(
    const HookCalibration& o, const std::function<void(const std::string&)>& log) {
  // The namespace is this thread's alone: it and its veth pair vanish when
  // the thread ends, whatever happens in between.
  if (unshare(CLONE_NEWNET) != 0) fail("unshare(CLONE_NEWNET) (needs CAP_SYS_ADMIN)");
  const Fd nl(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (nl.get() < 0) fail("netlink socket");
  const std::string tx_name = "srlcal0", rx_name = "srlcal1";
  add_veth_pair(nl.get(), tx_name, rx_name);
  const int tx = static_cast<int>(if_nametoindex(tx_name.c_str()));
  const int rx = static_cast<int>(if_nametoindex(rx_name.c_str()));
  if (tx == 0 || rx == 0) fail("veth pair not found after creating it");
  set_up(nl.get(), rx, rx_name);
  set_up(nl.get(), tx, tx_name);

  const Fd sock(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) fail("AF_PACKET socket");
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_ifindex = tx;
  ll.sll_protocol = 0;  // send only
  if (bind(sock.get(), reinterpret_cast<sockaddr*>(&ll), sizeof ll) != 0) fail("bind to srlcal0");

  const Fd xdp(load_minimal(BPF_PROG_TYPE_XDP, XDP_PASS, "srl_cal_xdp"));
  const Fd tc(load_minimal(BPF_PROG_TYPE_SCHED_CLS, TC_ACT_OK, "srl_cal_tc"));
  const CpuClock clock;
  constexpr std::size_t kBatch = 64;

  std::vector<filters::Block> blocks(256);
  auto run = [&](Hook hook, Frames& f) {
    const Attached attached(hook, rx, xdp.get(), tc.get());
    // `rx` in userspace: the runtime's own AF_PACKET socket, read by this
    // thread as the engine would, so that both sides are counted.
    std::unique_ptr<PacketSocketSource> packets;
    if (hook == Hook::packet)
      packets = std::make_unique<PacketSocketSource>(PacketSocketOptions{.dev = rx_name});
    std::size_t read = 0;
    auto drain = [&] {
      for (std::size_t n; packets && (n = packets->poll(blocks, 0)) > 0;)
        read += n;
    };
    const std::uint64_t start = clock.now();
    std::size_t sent = 0;
    while (sent < o.frames) {
      const auto want = static_cast<unsigned>(std::min(kBatch, o.frames - sent));
      const int n = sendmmsg(sock.get(), f.msgs.data(), want, 0);
      if (n < 0) {
        if (errno == EINTR || errno == ENOBUFS) continue;
        fail("sending through the veth pair");
      }
      sent += static_cast<std::size_t>(n);
      drain();
    }
    // The ring's last block comes with its timeout: its wait is no work.
    for (int i = 0; packets && read < sent && i < 50; ++i)
      if (packets->wait(20)) drain();
    const std::uint64_t used = clock.now() - start;
    if (packets && read < sent)
      throw KernelError("hook calibration: the AF_PACKET socket got " + std::to_string(read) +
                        " of " + std::to_string(sent) + " frames");
    return static_cast<double>(used) / static_cast<double>(o.frames);
  };

  const std::pair<Hook, const char*> hooks[] = {{Hook::tc, "tc"},
                                                {Hook::xdp_native, "xdp-native"},
                                                {Hook::xdp_generic, "xdp-generic"},
                                                {Hook::packet, "packet"}};
  std::map<std::string, HookCost> out;
  for (const std::size_t bytes : {std::size_t{64}, std::size_t{1500}}) {
    Frames f = make_frames(bytes, kBatch);
    run(Hook::none, f);  // warm up the path once
    std::map<std::string, std::vector<double>> extra;
    for (int round = 0; round < o.rounds; ++round) {
      const double base = run(Hook::none, f);
      for (const auto& [hook, name] : hooks)
        extra[name].push_back(run(hook, f) - base);
    }
    for (auto& [name, v] : extra) {
      std::sort(v.begin(), v.end());
      const double ns = std::max(0.0, v[v.size() / 2]);
      (bytes == 64 ? out[name].ns_64 : out[name].ns_1500) = ns;
    }
  }
  for (auto& [name, c] : out) {
    c.ns_per_byte = std::max(0.0, (c.ns_1500 - c.ns_64) / (1500 - 64));
    c.ns_per_block = std::max(0.0, c.ns_64 - 64 * c.ns_per_byte);
    if (log) {
      char line[160];
      std::snprintf(line, sizeof line,
                    "veth %s: %.1f ns/block + %.3f ns/B (64 B: %.1f ns, 1500 B: %.1f ns)",
                    name.c_str(), c.ns_per_block, c.ns_per_byte, c.ns_64, c.ns_1500);
      log(line);
    }
  }
  return out;
}

}  // namespace

std::map<std::string, HookCost> calibrate_veth_hooks(
    const HookCalibration& options, const std::function<void(const std::string&)>& log) {
  std::packaged_task<std::map<std::string, HookCost>()> task(
      [&] { return measure_in_own_netns(options, log); });
  auto result = task.get_future();
  std::thread(std::move(task)).join();
  return result.get();
}

}  // namespace srl::runtime::kernel
