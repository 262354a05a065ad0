#include "libpcap_selects.h"

#include <pcap/pcap.h>

#include <memory>
#include <stdexcept>

namespace srl::testing {

std::vector<bool> libpcap_selects(const std::string& expression,
                                  const std::vector<std::vector<std::uint8_t>>& frames) {
  std::unique_ptr<pcap_t, void (*)(pcap_t*)> dead(pcap_open_dead(DLT_EN10MB, 262144), pcap_close);
  if (!dead) throw std::runtime_error("pcap_open_dead failed");
  bpf_program code{};
  if (pcap_compile(dead.get(), &code, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
    throw std::invalid_argument(expression + ": " + pcap_geterr(dead.get()));
  std::vector<bool> out;
  for (const auto& f : frames) {
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
    out.push_back(pcap_offline_filter(&code, &h, f.data()) != 0);
  }
  pcap_freecode(&code);
  return out;
}

}  // namespace srl::testing
