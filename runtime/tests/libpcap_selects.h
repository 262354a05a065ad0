// What libpcap's own filter machine selects (pcap_offline_filter on the
// whole frame, as tcpdump -r does), kept apart from the tests that include
// <linux/bpf.h>: the two headers define struct bpf_insn differently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace srl::testing {

// Per frame, whether tcpdump's `expression` (Ethernet) selects it. Throws
// std::invalid_argument when libpcap cannot compile it.
std::vector<bool> libpcap_selects(const std::string& expression,
                                  const std::vector<std::vector<std::uint8_t>>& frames);

}  // namespace srl::testing
