// The fixed part of every generated XDP program: types, maps and the header
// parser, which runs once per block before any filter (docs/filter-semantics.md).
#pragma once

namespace srl::runtime::kernel {

inline constexpr const char* kXdpPrelude = R"PRELUDE(
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct srl_counter {
  u64 packets;  /* blocks that reached the node */
  u64 bytes;
  u64 accepted; /* of those, blocks the node accepted */
};

struct srl_pkt {
  u32 len;
  u8 eth_ok;
  u8 vlans;
  u16 vlan_id;
  u16 ethertype;
  u8 l3;        /* 0 none, 4, 6 */
  u8 l4_proto;  /* 255: unknown */
  u8 nonfirst_frag;
  u8 l4;        /* 0 none, 6 tcp, 17 udp, 1 icmp */
  u8 tcp_flags;
  u8 cut;       /* the headers went on past the bytes the parse could read */
  u16 sport;
  u16 dport;
  u8 saddr[16];
  u8 daddr[16];
};

#define SRL_BE16(p) ((u16)(((u16)(p)[0] << 8) | (p)[1]))

/* A program with no filter that reads addresses (SRL_NO_ADDRS) neither
   copies nor clears them: the parse writes into map memory, where no store
   is dropped for being unread. */
#ifdef SRL_NO_ADDRS
#define SRL_ADDRS(copy)
#define SRL_PKT_CLEARED __builtin_offsetof(struct srl_pkt, saddr)
#else
#define SRL_ADDRS(copy) copy
#define SRL_PKT_CLEARED sizeof(struct srl_pkt)
#endif

/* wire: the block's length on the wire; data..end: the bytes the program
   reads directly, at TC maybe only the skb's linear part. A header that
   goes on past end stops the parse with `cut` set, so that the caller can
   make more of the block readable and parse again. The parse is made of
   one piece per layer, so that the untagged IPv4 frame's parse (inlined
   where the program starts) and the general one share them. */
#define SRL_NEED(ptr)  \
  if ((ptr) > end) {   \
    p->cut = 1;        \
    return 0;          \
  }

/* The Ethernet header: 0 where the block is shorter than one. */
static __always_inline int srl_parse_eth(u8 *data, u8 *end, u32 wire, struct srl_pkt *p) {
  __builtin_memset(p, 0, SRL_PKT_CLEARED);
  p->len = wire;
  p->l4_proto = 255;
  SRL_NEED(data + 14);
  p->eth_ok = 1;
  return 1;
}

/* IPv4 at l3: where its payload starts, 0 where no L4 header follows. */
static __always_inline u8 *srl_parse_ipv4(u8 *l3, u8 *end, struct srl_pkt *p) {
  SRL_NEED(l3 + 20);
  if ((l3[0] >> 4) != 4) return 0;
  u32 ihl = (u32)(l3[0] & 0x0F) * 4;
  if (ihl < 20) return 0;
  SRL_NEED(l3 + ihl);
  p->l3 = 4;
  SRL_ADDRS(__builtin_memcpy(p->saddr, l3 + 12, 4));
  SRL_ADDRS(__builtin_memcpy(p->daddr, l3 + 16, 4));
  p->l4_proto = l3[9];
  if (SRL_BE16(l3 + 6) & 0x1FFF) {
    p->nonfirst_frag = 1;
    return 0;
  }
  return l3 + ihl;
}

/* IPv6 at l3 and up to four extension headers: where the L4 header
   starts, 0 where none follows. */
static __always_inline u8 *srl_parse_ipv6(u8 *l3, u8 *end, struct srl_pkt *p) {
  SRL_NEED(l3 + 40);
  if ((l3[0] >> 4) != 6) return 0;
  p->l3 = 6;
  SRL_ADDRS(__builtin_memcpy(p->saddr, l3 + 8, 16));
  SRL_ADDRS(__builtin_memcpy(p->daddr, l3 + 24, 16));
  u8 next = l3[6];
  u8 *h = l3 + 40;
#pragma unroll
  for (int i = 0; i < 5; i++) {
    if (next == 0 || next == 43 || next == 60 || next == 51) {
      if (i == 4 || h + 8 > end) {
        p->cut = i < 4;
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
        p->cut = 1;
        next = 255;
        break;
      }
      next = h[0];
      if (SRL_BE16(h + 2) >> 3) {
        p->l4_proto = next;
        p->nonfirst_frag = 1;
        return 0;
      }
      h += 8;
    }
    break;
  }
  p->l4_proto = next;
  if (next == 255) return 0;
  return h;
}

static __always_inline int srl_parse_l4(u8 *l4, u8 *end, struct srl_pkt *p) {
  if (p->l4_proto == 6) {
    SRL_NEED(l4 + 20);
    u32 doff = (u32)(l4[12] >> 4) * 4;
    if (doff < 20) return 0;
    SRL_NEED(l4 + doff);
    p->l4 = 6;
    p->sport = SRL_BE16(l4);
    p->dport = SRL_BE16(l4 + 2);
    p->tcp_flags = l4[13];
  } else if (p->l4_proto == 17) {
    SRL_NEED(l4 + 8);
    p->l4 = 17;
    p->sport = SRL_BE16(l4);
    p->dport = SRL_BE16(l4 + 2);
  } else if ((p->l4_proto == 1 && p->l3 == 4) || (p->l4_proto == 58 && p->l3 == 6)) {
    SRL_NEED(l4 + 4);
    p->l4 = 1;
  }
  return 1;
}

/* Any frame: up to two VLAN tags (802.1Q, 802.1ad), IPv4 or IPv6. */
static __always_inline void srl_parse(u8 *data, u8 *end, u32 wire, struct srl_pkt *p) {
  if (!srl_parse_eth(data, end, wire, p)) return;
  u16 et = SRL_BE16(data + 12);
  u8 *l3 = data + 14;
#pragma unroll
  for (int i = 0; i < 2; i++) {
    if (et != 0x8100 && et != 0x88A8) break;
    if (l3 + 4 > end) {
      p->cut = 1;
      break;
    }
    if (p->vlans == 0) p->vlan_id = SRL_BE16(l3) & 0x0FFF;
    p->vlans++;
    et = SRL_BE16(l3 + 2);
    l3 += 4;
  }
  p->ethertype = et;
  u8 *l4 = et == 0x0800 ? srl_parse_ipv4(l3, end, p)
           : et == 0x86DD ? srl_parse_ipv6(l3, end, p)
                          : 0;
  if (l4) srl_parse_l4(l4, end, p);
}

/* SRL_UNTAGGED_IPV4: the frame is long enough for its Ethernet header and
   its EtherType is IPv4. Most frames on most links are; the program parses
   them inline and calls the general parse, out of line, for the others. */
#define SRL_UNTAGGED_IPV4(data, end) \
  ((data) + 14 <= (end) && (data)[12] == 0x08 && (data)[13] == 0x00)
static __always_inline void srl_parse_untagged_ipv4(u8 *data, u8 *end, u32 wire,
                                                    struct srl_pkt *p) {
  if (!srl_parse_eth(data, end, wire, p)) return;
  p->ethertype = 0x0800;
  u8 *l4 = srl_parse_ipv4(data + 14, end, p);
  if (l4) srl_parse_l4(l4, end, p);
}

/* 32-bit FNV-1a, as the reference filters compute it. */
static __always_inline u32 srl_fnv(u32 h, const u8 *b, u32 n) {
#pragma unroll
  for (u32 i = 0; i < 16; i++) {
    if (i < n) {
      h ^= b[i];
      h *= 16777619u;
    }
  }
  return h;
}

static __always_inline int srl_addr_cmp(const struct srl_pkt *p) {
  u32 n = p->l3 == 4 ? 4 : 16;
#pragma unroll
  for (u32 i = 0; i < 16; i++) {
    if (i < n && p->saddr[i] != p->daddr[i]) return p->saddr[i] < p->daddr[i] ? -1 : 1;
  }
  return 0;
}

static __always_inline u32 srl_hash(const struct srl_pkt *p, int fields) {
  u32 n = p->l3 == 4 ? 4 : 16;
  u32 h = 2166136261u;
  int cmp = srl_addr_cmp(p);
  if (fields == 2) return srl_fnv(h, p->saddr, n); /* src */
  if (fields == 3) return srl_fnv(h, p->daddr, n); /* dst */
  u16 sp = p->l4 == 6 || p->l4 == 17 ? p->sport : 0;
  u16 dp = p->l4 == 6 || p->l4 == 17 ? p->dport : 0;
  int swap = cmp > 0 || (fields == 0 && cmp == 0 && sp > dp);
  const u8 *a = swap ? p->daddr : p->saddr;
  const u8 *b = swap ? p->saddr : p->daddr;
  h = srl_fnv(h, a, n);
  h = srl_fnv(h, b, n);
  if (fields == 1) return h; /* addrs */
  u8 tail[5];
  u16 pa = swap ? dp : sp, pb = swap ? sp : dp;
  tail[0] = p->l4_proto;
  tail[1] = (u8)(pa >> 8);
  tail[2] = (u8)pa;
  tail[3] = (u8)(pb >> 8);
  tail[4] = (u8)pb;
  return srl_fnv(h, tail, 5);
}
)PRELUDE";

}  // namespace srl::runtime::kernel
