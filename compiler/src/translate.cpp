// Pass "translate": filters that carry an expression get it turned into an
// executable form before placement. `bpf expr=` goes through libpcap's own
// compiler, so it accepts exactly what tcpdump accepts, into classic BPF for
// Ethernet frames; the kernel space later turns that into eBPF.
#include <pcap/pcap.h>

#include <memory>

#include "context.h"

namespace srl::compiler {

void translate(CompileContext& cx) {
  auto& g = cx.dag->graph;
  for (auto [it, end] = boost::vertices(g); it != end && !cx.diags.too_many(); ++it) {
    DagNode& node = g[*it];
    if (node.filter->name != "bpf") continue;
    const auto& expr = std::get<std::string>(node.options.at("expr"));
    Loc loc = node.loc;
    for (const auto& o : node.origin->options)
      if (o.name == "expr") loc = o.value.loc;

    constexpr int kSnaplen = 262144;
    std::unique_ptr<pcap_t, decltype(&pcap_close)> handle(pcap_open_dead(DLT_EN10MB, kSnaplen),
                                                          &pcap_close);
    if (!handle) {
      cx.diags.error(loc,
                     "cannot translate the bpf expression: libpcap could not open a "
                     "handle");
      continue;
    }
    bpf_program prog{};
    if (pcap_compile(handle.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      cx.diags.error(loc, "invalid bpf expression \"" + expr +
                              "\": " + std::string(pcap_geterr(handle.get())) +
                              "; expected a pcap-filter(7) expression such as \"udp port 53\"");
      continue;
    }
    Translation t;
    t.kind = "cbpf";
    t.linktype = "EN10MB";
    t.source = expr;
    for (unsigned i = 0; i < prog.bf_len; ++i) {
      const bpf_insn& in = prog.bf_insns[i];
      t.insns.push_back({in.code, in.jt, in.jf, in.k});
    }
    pcap_freecode(&prog);
    node.translation = std::move(t);
  }
}

}  // namespace srl::compiler
