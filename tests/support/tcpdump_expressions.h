// tcpdump expressions of the kinds operators write, varied in their
// numbers, for tests and benchmarks that put many requests with an
// expression each on one hook (kernel: the verifier's work as requests
// grow; differential: each counts what libpcap selects). Deterministic:
// expression i is the same in every build. None jumps back (protochain),
// so every one can run in the kernel.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace srl::testing {

inline std::string tcpdump_expression(std::size_t i) {
  const auto n = [&](std::size_t base, std::size_t step = 1) {
    return std::to_string(base + (i / 25) * step);
  };
  switch (i % 25) {
    case 0:
      return "tcp port " + n(22, 1000);
    case 1:
      return "udp dst port " + n(53, 100);
    case 2:
      return "tcp src portrange " + n(1000, 500) + "-" + n(1400, 500);
    case 3:
      return "host 10.0." + n(0) + ".1";
    case 4:
      return "src net 10." + n(0) + ".0.0/16 and not dst port " + n(443);
    case 5:
      return "icmp[icmptype] = " + n(0, 3) + " or icmp6";
    case 6:
      return "arp and arp[7] = " + n(1);
    case 7:
      return "vlan " + n(100) + " and ip";
    case 8:
      return "ip6 and udp port " + n(5353);
    case 9:
      return "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and port " + n(80, 8000);
    case 10:
      return "greater " + n(100, 400);
    case 11:
      return "less " + n(64, 8);
    case 12:
      return "ip[8] < " + n(32, 16);
    case 13:
      return "ether broadcast or ether multicast and not ip6 and len > " + n(60, 10);
    case 14:
      return "ether host 02:00:00:00:00:0" + n(1);
    case 15:
      return "ip proto " + n(47) + " or ip6 proto " + n(17);
    case 16:
      return "(tcp or udp) and not port " + n(22);
    case 17:
      return "ip and (ip[6:2] & 0x1fff != 0 or ip[6] & 0x20 != 0 or ip[1] = " + n(0, 4) + ")";
    case 18:
      return "udp and udp[4:2] > " + n(100, 200);
    case 19:
      return "ip6 dst net 2001:db8::/" + n(32, 16);
    case 20:
      return "tcp dst port " + n(443) + " and ip[2:2] > 60";
    case 21:
      return "dst host 192.0.2." + n(1) + " or src host 198.51.100." + n(1);
    case 22:
      return "vlan and tcp port " + n(22) + " or mpls " + n(16);
    case 23:
      return "ip6[6] = " + n(6) + " or ip6[40] = 135";
    default:
      return "not ip and not ip6 and not arp or ether proto " + n(0x88cc);
  }
}

// `n` distinct expressions: 0 .. n-1 above.
inline std::vector<std::string> tcpdump_expressions(std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(tcpdump_expression(i));
  return out;
}

}  // namespace srl::testing
