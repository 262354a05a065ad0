// The 6-filter chain of xdp_bench,
//   (eth) > (ipv4) > (udp) > (port, which=dst) 53> (len, min=64, max=1500) > (count)
// plus its implicit rx, built the non-fused way: one XDP program per node,
// joined by bpf_tail_call through a BPF_MAP_TYPE_PROG_ARRAY. The first
// program (rx) parses the headers once, with the same parser as the
// programs srl generates (runtime/src/xdp_prelude.h: Ethernet, up to two
// VLAN tags, IPv4, IPv6 with extension headers, TCP/UDP/ICMP), and leaves
// the result in a per-CPU scratch map; every program then looks up the
// scratch and its own counter slot (packets, bytes, accepted: the same
// counters as srl's), and tail-calls the next program when it accepts.
// xdp_bench fills the PROG_ARRAY: slot i holds the program of node i.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define NODES 7

struct counter {
  u64 packets;
  u64 bytes;
  u64 accepted;
};

struct pkt {
  u32 len;
  u8 eth_ok;
  u8 vlans;
  u16 vlan_id;
  u16 ethertype;
  u8 l3;       /* 0 none, 4, 6 */
  u8 l4_proto; /* 255: unknown */
  u8 nonfirst_frag;
  u8 l4; /* 0 none, 6 tcp, 17 udp, 1 icmp */
  u8 tcp_flags;
  u16 sport;
  u16 dport;
  u8 saddr[16];
  u8 daddr[16];
};

struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, NODES);
  __type(key, u32);
  __type(value, u32);
} tc_jmp SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NODES);
  __type(key, u32);
  __type(value, struct counter);
} tc_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct pkt);
} tc_scratch SEC(".maps");

#define BE16(p) ((u16)(((u16)(p)[0] << 8) | (p)[1]))

static __always_inline void parse(u8 *data, u8 *end, struct pkt *p) {
  __builtin_memset(p, 0, sizeof(*p));
  p->len = (u32)(end - data);
  p->l4_proto = 255;
  if (data + 14 > end) return;
  p->eth_ok = 1;
  u16 et = BE16(data + 12);
  u8 *l3 = data + 14;
#pragma unroll
  for (int i = 0; i < 2; i++) {
    if (et != 0x8100 && et != 0x88A8) break;
    if (l3 + 4 > end) break;
    if (p->vlans == 0) p->vlan_id = BE16(l3) & 0x0FFF;
    p->vlans++;
    et = BE16(l3 + 2);
    l3 += 4;
  }
  p->ethertype = et;
  u8 *l4;
  if (et == 0x0800) {
    if (l3 + 20 > end) return;
    if ((l3[0] >> 4) != 4) return;
    u32 ihl = (u32)(l3[0] & 0x0F) * 4;
    if (ihl < 20) return;
    if (l3 + ihl > end) return;
    p->l3 = 4;
    __builtin_memcpy(p->saddr, l3 + 12, 4);
    __builtin_memcpy(p->daddr, l3 + 16, 4);
    p->l4_proto = l3[9];
    if (BE16(l3 + 6) & 0x1FFF) {
      p->nonfirst_frag = 1;
      return;
    }
    l4 = l3 + ihl;
  } else if (et == 0x86DD) {
    if (l3 + 40 > end) return;
    if ((l3[0] >> 4) != 6) return;
    p->l3 = 6;
    __builtin_memcpy(p->saddr, l3 + 8, 16);
    __builtin_memcpy(p->daddr, l3 + 24, 16);
    u8 next = l3[6];
    u8 *h = l3 + 40;
#pragma unroll
    for (int i = 0; i < 5; i++) {
      if (next == 0 || next == 43 || next == 60 || next == 51) {
        if (i == 4 || h + 8 > end) {
          next = 255;
          break;
        }
        u32 hl = next == 51 ? ((u32)h[1] + 2) * 4 : ((u32)h[1] + 1) * 8;
        next = h[0];
        h += hl;
        continue;
      }
      if (next == 44) {
        if (h + 8 > end) {
          next = 255;
          break;
        }
        next = h[0];
        if (BE16(h + 2) >> 3) {
          p->l4_proto = next;
          p->nonfirst_frag = 1;
          return;
        }
        h += 8;
      }
      break;
    }
    p->l4_proto = next;
    if (next == 255) return;
    l4 = h;
  } else {
    return;
  }
  if (p->l4_proto == 6) {
    if (l4 + 20 > end) return;
    u32 doff = (u32)(l4[12] >> 4) * 4;
    if (doff < 20 || l4 + doff > end) return;
    p->l4 = 6;
    p->sport = BE16(l4);
    p->dport = BE16(l4 + 2);
    p->tcp_flags = l4[13];
  } else if (p->l4_proto == 17) {
    if (l4 + 8 > end) return;
    p->l4 = 17;
    p->sport = BE16(l4);
    p->dport = BE16(l4 + 2);
  } else if ((p->l4_proto == 1 && p->l3 == 4) || (p->l4_proto == 58 && p->l3 == 6)) {
    if (l4 + 4 > end) return;
    p->l4 = 1;
  }
}

/* Counts the block at node `slot`; tail-calls node `slot + 1` if `deliver`.
 * The lookup key is a copy, so that the tail-call index stays a constant:
 * the JIT then patches a direct jump instead of an indirect one. */
static __always_inline int step(struct xdp_md *ctx, const struct pkt *p, const u32 slot,
                                int accept, int deliver) {
  u32 key = slot;
  struct counter *c = bpf_map_lookup_elem(&tc_counters, &key);
  if (c) {
    c->packets++;
    c->bytes += p->len;
    if (accept) c->accepted++;
  }
  if (deliver) bpf_tail_call(ctx, &tc_jmp, slot + 1);
  return XDP_PASS;
}

static __always_inline struct pkt *scratch(void) {
  u32 zero = 0;
  return bpf_map_lookup_elem(&tc_scratch, &zero);
}

SEC("xdp")
int tc_rx(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  parse((u8 *)(long)ctx->data, (u8 *)(long)ctx->data_end, p);
  return step(ctx, p, 0, 1, 1);
}

SEC("xdp")
int tc_eth(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  int a = p->eth_ok;
  return step(ctx, p, 1, a, a);
}

SEC("xdp")
int tc_ipv4(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  int a = p->l3 == 4;
  return step(ctx, p, 2, a, a);
}

SEC("xdp")
int tc_udp(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  int a = p->l4 == 17;
  return step(ctx, p, 3, a, a);
}

SEC("xdp")
int tc_port(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  int a = p->l4 == 6 || p->l4 == 17; /* class: dport; the edge selects 53 */
  return step(ctx, p, 4, a, a && p->dport == 53);
}

SEC("xdp")
int tc_len(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  int a = p->len >= 64 && p->len <= 1500;
  return step(ctx, p, 5, a, a);
}

SEC("xdp")
int tc_count(struct xdp_md *ctx) {
  struct pkt *p = scratch();
  if (!p) return XDP_PASS;
  return step(ctx, p, 6, 1, 0);
}

char LICENSE[] SEC("license") = "GPL";
