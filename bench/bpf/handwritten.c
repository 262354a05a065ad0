// Programs written by hand, the way one writes a single-purpose program,
// as anchors for srl's generated ones:
//   hand_xdp  the 6-filter chain of xdp_bench: count IPv4/UDP frames to
//             port 53 of 64 to 1500 bytes in one per-CPU counter, pass all;
//   hand_tc   capture_side_by_side.sh -B: count IPv4/UDP to port 9000 at
//             TC (held by tcx_hold), copy nothing, every packet goes on:
//             the least a per-packet hook that selects them costs.
// Header structs from the kernel's UAPI, one bounds check per header, an
// early return at the first mismatch, the counter looked up only for
// matching frames. They do less than srl's semantics
// (docs/filter-semantics.md) in one respect: no VLAN tags and no IPv6,
// which the benchmarks' frames do not have.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} hand_count SEC(".maps");

// Whether data..end is IPv4/UDP (first fragment) to `port`.
static __always_inline int hand_udp_to(void *data, void *end, __u16 port) {
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return 0;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5) return 0;
  if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x1FFF))) return 0;
  struct udphdr *udp = (void *)ip + ip->ihl * 4;
  return (void *)(udp + 1) <= end && udp->dest == bpf_htons(port);
}

static __always_inline void hand_counted(void) {
  __u32 zero = 0;
  __u64 *count = bpf_map_lookup_elem(&hand_count, &zero);
  if (count) *count += 1;
}

SEC("xdp")
int hand_xdp(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  if (!hand_udp_to(data, end, 53)) return XDP_PASS;
  __u64 len = end - data;
  if (len < 64 || len > 1500) return XDP_PASS;
  hand_counted();
  return XDP_PASS;
}

SEC("tc")
int hand_tc(struct __sk_buff *ctx) {
  if (hand_udp_to((void *)(long)ctx->data, (void *)(long)ctx->data_end, 9000)) hand_counted();
  return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
