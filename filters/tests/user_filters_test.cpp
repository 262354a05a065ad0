// The userspace registry and the L2-L4 filters behind the UserFilter
// interface: errors name the node, the filter and the option; every header
// filter decides exactly as its reference implementation on the whole
// standard corpus; l4_payload finds the bytes above L4.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "packet_corpus.h"
#include "srl/filters/reference.h"
#include "srl/filters/user.h"
#include "user_fixtures.h"

using namespace srl;
using namespace srl::testing;
using filters::Block;
using filters::OptionValue;
using filters::UserFilterConfig;

namespace {

using Recorder = RecordingEmitter;

UserFilterConfig config(std::string_view name, std::map<std::string, OptionValue> options = {}) {
  return filter_config(name, std::move(options));
}

std::string error_of(const UserFilterConfig& c) {
  return config_error_of(c);
}

Block packet_block(const Bytes& frame, const filters::ParsedPacket& parsed) {
  Block b;
  b.data = frame;
  b.wire_len = static_cast<std::uint32_t>(frame.size());
  b.parsed = &parsed;
  return b;
}

}  // namespace

TEST_CASE("registry: errors name the node, the filter and what is wrong") {
  CHECK(error_of(config("port", {{"colour", std::string("red")}})) ==
        "node n7 (port): has no option 'colour'");
  CHECK(error_of(config("addr")) == "node n7 (addr): option 'net' is required");
  CHECK(error_of(config("sample", {{"n", std::int64_t{0}}})) ==
        "node n7 (sample): filter 'sample': option 'n' must be at least 1");
  CHECK(error_of(config("rx")) == "node n7 (rx): is a source, not a filter");
  CHECK(error_of(config("union")) == "node n7 (union): has no userspace implementation");
  CHECK(filters::has_user_filter("tcp"));
  CHECK(filters::has_user_filter("tcpstream"));
  CHECK(filters::has_user_filter("pcap"));
  CHECK(filters::has_user_filter("tx"));
  CHECK(error_of(config("tx", {{"dev", std::string("nosuchdev0")}})) ==
        "node n7 (tx): no network device 'nosuchdev0'");
  CHECK_FALSE(filters::has_user_filter("pcapin"));
  CHECK(filters::has_user_source("pcapin"));
  CHECK_FALSE(filters::has_user_filter("nonesuch"));
}

TEST_CASE("header filters decide as the reference filters, block by block") {
  const std::vector<std::pair<std::string, std::map<std::string, OptionValue>>> cases = {
      {"eth", {}},
      {"vlan", {}},
      {"ipv6", {}},
      {"tcp", {}},
      {"udp", {}},
      {"proto", {}},
      {"port", {{"which", std::string("dst")}}},
      {"addr", {{"net", std::string("192.0.2.0/24")}}},
      {"tcpflags", {}},
      {"len", {{"min", std::int64_t{60}}, {"max", std::int64_t{200}}}},
      {"hash", {{"buckets", std::int64_t{7}}}},
      {"bpf", {{"expr", std::string("tcp[13] & 2 != 0 or udp")}}},
      {"sample", {{"n", std::int64_t{3}}}},
  };
  const auto corpus = standard_corpus();
  for (const auto& c : cases) {
    const std::string& name = c.first;
    const auto& options = c.second;
    CAPTURE(name);
    auto user = filters::make_user_filter(config(name, options));
    auto ref = filters::make_reference_filter(name, options);
    std::size_t accepted = 0;
    for (const auto& f : corpus) {
      const auto parsed = filters::parse_packet(f.bytes);
      Recorder r;
      user->process(packet_block(f.bytes, parsed), r);
      const auto want = ref->process(parsed, f.bytes, 0);
      CAPTURE(f.name);
      CHECK(r.accepted.has_value() == want.accept);
      if (want.accept && r.accepted) CHECK(*r.accepted == want.cls);
      CHECK(r.emitted.empty());
      accepted += want.accept;
    }
    // The cases must tell something apart on this corpus.
    if (name != "sample") CHECK(accepted > 0);
    CHECK(accepted < corpus.size());
  }
}

TEST_CASE("on stream chunks only whole-block filters decide; header filters reject") {
  const Bytes bytes(100, 0x41);
  Block chunk;
  chunk.kind = filters::BlockKind::stream;
  chunk.data = bytes;
  Recorder tcp, len, count;
  filters::make_user_filter(config("tcp"))->process(chunk, tcp);
  filters::make_user_filter(config("len", {{"min", std::int64_t{100}}}))->process(chunk, len);
  filters::make_user_filter(config("count"))->process(chunk, count);
  CHECK_FALSE(tcp.accepted);
  CHECK(len.accepted == std::optional<std::uint16_t>(0));
  CHECK(count.accepted == std::optional<std::uint16_t>(0));
}

TEST_CASE("l4_payload: the bytes above TCP, UDP and ICMP, without Ethernet padding") {
  const Bytes data{'G', 'E', 'T', ' '};
  const auto a = ip4("192.0.2.1"), b = ip4("198.51.100.2");
  auto payload_of = [](const Bytes& frame) {
    const auto p = filters::parse_packet(frame);
    const auto s = filters::l4_payload(p, frame);
    return Bytes(s.begin(), s.end());
  };
  // TCP with 20 bytes of options: the data offset says where data starts.
  CHECK(payload_of(ethernet(0x0800) + ipv4(6, a, b, tcp(1, 80, 0x18, tcp_syn_options(), data))) ==
        data);
  CHECK(payload_of(ethernet(0x0800) + ipv4(17, a, b, udp(1, 53, data))) == data);
  CHECK(payload_of(ethernet(0x86DD) +
                   ipv6(17, ip6("2001:db8::1"), ip6("2001:db8::2"), udp(1, 53, data))) == data);
  // Padding to the 60-byte Ethernet minimum is not payload.
  CHECK(payload_of(ethernet(0x0800) + ipv4(17, a, b, udp(1, 53, {'x'})) + Bytes(20, 0)) ==
        Bytes{'x'});
  // No payload: bare SYN, ARP, a data offset pointing past the frame.
  CHECK(payload_of(ethernet(0x0800) + ipv4(6, a, b, tcp(1, 80, 0x02))).empty());
  CHECK(payload_of(ethernet(0x0806) + arp_request(a, b)).empty());
  CHECK(payload_of(ethernet(0x0800) + ipv4(6, a, b, tcp(1, 80, 0x18, {}, data, 15))).empty());
  for (const auto& f : standard_corpus()) {
    const auto p = filters::parse_packet(f.bytes);
    const auto s = filters::l4_payload(p, f.bytes);
    if (!s.empty()) {
      CHECK(s.data() >= f.bytes.data());
      CHECK(s.data() + s.size() <= f.bytes.data() + f.bytes.size());
    }
  }
}

TEST_CASE("tx: packets go out on the device, byte for byte; chunks do not") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root (a network namespace of its own)");
    return;
  }
  // In a network namespace of this thread's own, on its loopback device,
  // where a packet socket sees what is sent.
  std::size_t seen = 0;
  std::uint64_t sent = 0, skipped = 0;
  std::string failure;
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      failure = std::string("unshare: ") + std::strerror(errno);
      return;
    }
    const int ctl = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "lo");
    ::ioctl(ctl, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ::ioctl(ctl, SIOCSIFFLAGS, &ifr);
    ::close(ctl);
    const int rx = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
    ::bind(rx, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    timeval tv{0, 200'000};
    ::setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    auto tx = filters::make_user_filter(config("tx", {{"dev", std::string("lo")}}));
    const Bytes frame = ethernet(0x88B5) + text("srl tx test frame");  // local experimental type
    Block b;
    b.data = frame;
    b.wire_len = static_cast<std::uint32_t>(frame.size());
    Recorder r;
    for (int i = 0; i < 5; ++i)
      tx->process(b, r);
    Block chunk;
    chunk.kind = filters::BlockKind::stream;
    chunk.data = frame;
    tx->process(chunk, r);
    sent = stat_of(tx->stats(), "sent");
    skipped = stat_of(tx->stats(), "skipped_streams");
    // Loopback shows each frame going out; count those with our bytes.
    std::uint8_t buf[2048];
    for (int i = 0; i < 20; ++i) {
      sockaddr_ll from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(rx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) break;
      if (from.sll_pkttype == PACKET_OUTGOING && static_cast<std::size_t>(n) == frame.size() &&
          std::memcmp(buf, frame.data(), frame.size()) == 0)
        ++seen;
    }
    ::close(rx);
  }).join();
  REQUIRE_MESSAGE(failure.empty(), failure);
  CHECK(sent == 5);
  CHECK(skipped == 1);
  CHECK(seen == 5);
}
