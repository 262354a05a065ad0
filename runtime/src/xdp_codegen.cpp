// Generation of one XDP program for all kernel-placed nodes of a hook.
//
// Nodes are emitted in topological order (DAG ids are topological). Each node
// gets three locals: r (the block reached it), a (it accepted), c (its
// class). An edge is an expression over its source's locals; a node is
// reached when one of its input edges delivers. Filters are inlined as
// expressions over the header fields parsed once per block (srl_parse), so the
// whole request costs one pass over the headers and one map lookup for the
// counters of all nodes.
#include <arpa/inet.h>
#include <net/if.h>

#include <algorithm>
#include <array>
#include <bit>
#include <map>
#include <optional>
#include <sstream>

#include "srl/runtime/kernel.h"
#include "xdp_prelude.h"

namespace srl::runtime::kernel {
namespace {

using compiler::DagGraph;
using compiler::Vertex;

std::string var(Vertex v, const char* what) {
  return "n" + std::to_string(v) + "_" + what;
}

const std::string& str_option(const compiler::DagNode& n, const char* key) {
  return std::get<std::string>(n.options.at(key));
}

std::int64_t int_option(const compiler::DagNode& n, const char* key) {
  return std::get<std::int64_t>(n.options.at(key));
}

// The condition under which edge (u -> v) delivers a block to v.
std::string edge_condition(const DagGraph& g, compiler::Edge e) {
  const Vertex u = boost::source(e, g);
  const auto& s = g[e].select;
  if (s.rejected) return "(" + var(u, "r") + " && !" + var(u, "a") + ")";
  std::string cond = "(" + var(u, "a");
  if (!s.ranges.empty()) {
    std::string in;
    for (const auto& r : s.ranges) {
      if (!in.empty()) in += " || ";
      if (r.lo == r.hi)
        in += var(u, "c") + " == " + std::to_string(r.lo);
      else
        in += "(" + var(u, "c") + " >= " + std::to_string(r.lo) + " && " + var(u, "c") +
              " <= " + std::to_string(r.hi) + ")";
    }
    cond += std::string(" && ") + (s.invert ? "!" : "") + "(" + in + ")";
  }
  return cond + ")";
}

// `addr`: the prefix test on one address array, as 32-bit words.
std::string prefix_test(const std::string& addr_field, const std::string& cidr) {
  const auto slash = cidr.find('/');
  const std::string addr = cidr.substr(0, slash);
  const int len = std::stoi(cidr.substr(slash + 1));
  const bool v6 = addr.find(':') != std::string::npos;
  unsigned char bytes[16] = {};
  inet_pton(v6 ? AF_INET6 : AF_INET, addr.c_str(), bytes);
  std::string test = "1";
  for (int i = 0; i < (v6 ? 16 : 4) && i * 8 < len; ++i) {
    const int bits = std::min(8, len - i * 8);
    const unsigned mask = (0xFFu << (8 - bits)) & 0xFFu;
    test += " && (p." + addr_field + "[" + std::to_string(i) + "] & " + std::to_string(mask) +
            ") == " + std::to_string(bytes[i] & mask);
  }
  return std::string("(p.l3 == ") + (v6 ? "6" : "4") + " && " + test + ")";
}

// A block that takes an exit into AF_XDP: the tag goes in front of the
// frame and the frame into the socket of its receive queue. Without a
// socket there (no reader yet, or none any more), the block goes on to the
// copy ring below.
constexpr const char* kToAfxdp = R"(  if (to_take && verdict != 2) {
    u32 queue = ctx->rx_queue_index;
    if (bpf_map_lookup_elem(&srl_xsks, &queue) &&
        bpf_xdp_adjust_head(ctx, -(int)sizeof(struct srl_tag)) == 0) {
      struct srl_tag *tag = (struct srl_tag *)(long)ctx->data;
      if ((u8 *)(tag + 1) > (u8 *)(long)ctx->data_end) return XDP_DROP;
      tag->magic = __builtin_bswap16(0x5352);
      tag->version = 1;
      tag->length = sizeof(struct srl_tag);
      tag->exits = to_take | to_copy;
      return bpf_redirect_map(&srl_xsks, queue, 0);
    }
  }
)";

// At TC, Linux has already taken a frame's outer VLAN tag (802.1Q or
// 802.1ad) off its bytes and into the skb's metadata; XDP, the reference
// and the capture file see it where it came. The hook puts the tag back
// for the program (every filter, expression, length and copy then sees the
// frame as it came on the wire) and takes it off again before the block
// goes on, so the stack gets the skb as it was. A push while a tag is in
// the metadata moves that tag into the bytes and leaves its copy in the
// metadata; the pop drops the copy and moves the tag back.
constexpr const char* kTcRetag = R"(
SEC("tc")
int srl_tc(struct __sk_buff *ctx) {
  int retag = ctx->vlan_present &&
              bpf_skb_vlan_push(ctx, ctx->vlan_proto, ctx->vlan_tci) == 0;
  int verdict = srl_tc_run(ctx, retag);
  if (retag && verdict != TC_ACT_SHOT) bpf_skb_vlan_pop(ctx);
  return verdict;
}
)";

// The copy channel: every CPU writes its copies into an area of its own, a
// single-producer ring in an mmap-able array map ("srl_ring<i>", one entry
// per CPU of ring i), and publishes them by moving the area's head; the
// reader publishes its tail. No lock, no atomic and no shared line per
// record (the BPF ring buffer takes a spin lock and hands one record header
// to the reader's CPU per copy: about half the program's time at 64 B).
// Readers are woken through a small ring buffer ("srl_wake<i>"), once when
// an area's waiting bytes pass the mark; below it they find the records
// when they next look. The layout is kernel.h's CopyArea and CopyRecord.
std::string copy_channel_source(const CopyChannelOptions& o, std::uint32_t cpus) {
  const std::uint32_t per_ring = (cpus + o.rings - 1) / o.rings;
  const std::uint32_t window = std::min(std::max(o.window_bytes, 4096u), o.ring_bytes);
  const std::uint32_t wake = std::min(o.wake_bytes, o.ring_bytes / 4);
  std::ostringstream c;
  c << "\n#define SRL_RINGS " << o.rings << "\n#define SRL_AREA " << o.ring_bytes
    << "\n#define SRL_WINDOW " << window << "\n#define SRL_LAP_NS " << o.window_lap_ns
    << "ull\n#define SRL_WAKE_BYTES " << wake << "\n";
  // Publishing the head must order the record's bytes before it. x86 keeps
  // stores in program order (TSO; the perf ring buffer relies on the same),
  // so a compiler barrier and a plain store do; elsewhere an exchange, a
  // full barrier on every JIT. The exchange would wait for the record's
  // stores, to lines not in cache, at every copy.
#if defined(__x86_64__)
  c << "#define SRL_PUBLISH(p, v) do { asm volatile(\"\" ::: \"memory\"); "
       "*(volatile u64 *)(p) = (v); } while (0)\n";
#else
  c << "#define SRL_PUBLISH(p, v) __sync_lock_test_and_set((p), (v))\n";
#endif
  c << R"(
struct srl_rec {
  u64 ts_ns;
  u32 exits;
  u32 wire_len;
  u32 cap_len;
  u32 ifindex;
  u32 queue;
  u32 flags;
};

/* head: bytes published by the CPU (only it writes); tail: bytes the
   reader has released (only it writes). The third line only this CPU
   touches, so plain accesses in program order do: busy, set while the CPU
   writes (a nested run on the same CPU counts a loss instead of writing
   over it); next, the head as the CPU knows it; tail_seen, the tail as it
   last read it, read again only when the area looks fuller than the
   wake-up mark, so that a copy does not load the reader's line. A record
   that starts before SRL_AREA ends in the slack behind it, so it is
   contiguous; the next starts at its end modulo SRL_AREA, or at the start
   of the area after a restart: past SRL_WINDOW, on a lap slower than
   SRL_LAP_NS (lap_head, lap_ts: where and when it began), where the reader has left at most
   half of what lies before the head, a skip record and the head moved to
   the next multiple of SRL_AREA (gap_end; gap, the bytes skipped, which
   the reader has yet to pass while its tail is below gap_end). */
struct srl_area {
  u64 head;
  u64 pad0[7];
  u64 tail;
  u64 pad1[7];
  u64 busy;
  u64 next;
  u64 tail_seen;
  u64 gap_end;
  u64 gap;
  u64 retry;
  u64 lap_ts;
  u64 lap_head;
  u8 data[SRL_AREA + )"
    << kCopyAreaSlack << R"(];
};
)";
  for (std::uint32_t i = 0; i < o.rings; ++i)
    c << "struct {\n  __uint(type, BPF_MAP_TYPE_ARRAY);\n  __uint(map_flags, BPF_F_MMAPABLE);\n"
      << "  __uint(max_entries, " << per_ring << ");\n  __type(key, u32);\n"
      << "  __type(value, struct srl_area);\n} srl_ring" << i << " SEC(\".maps\");\n"
      << "struct {\n  __uint(type, BPF_MAP_TYPE_RINGBUF);\n  __uint(max_entries, 4096);\n} srl_wake"
      << i << " SEC(\".maps\");\n";
  c << R"(
static __always_inline struct srl_area *srl_area_of(u32 cpu) {
  u32 ring = cpu % SRL_RINGS, slot = cpu / SRL_RINGS;
  switch (ring) {
)";
  for (std::uint32_t i = 0; i < o.rings; ++i)
    c << "  case " << i << ": return bpf_map_lookup_elem(&srl_ring" << i << ", &slot);\n";
  c << R"(  }
  return 0;
}

static __always_inline void srl_wake(u32 cpu) {
  u64 token = cpu;
  switch (cpu % SRL_RINGS) {
)";
  for (std::uint32_t i = 0; i < o.rings; ++i)
    c << "  case " << i << ": bpf_ringbuf_output(&srl_wake" << i
      << ", &token, sizeof token, BPF_RB_FORCE_WAKEUP); break;\n";
  c << R"(  }
}

/* Copies the first `snap` bytes of the block into this CPU's copy area.
   Returns 1 when the record is published, 0 when it was lost (area full,
   or the area busy), counted. A global function, which the verifier checks
   once, apart: inlined, its paths multiplied with the states the nodes
   left (a hook with an exit, hashes and a tcpdump expression took ~2,500
   instructions more than its parts). */
__attribute__((noinline)) int srl_copy(SRL_CTX *ctx, struct srl_counters *cnt, u32 exits,
                                       u32 snap, u32 flags) {
  if (!cnt) return 0;
  u32 wire = SRL_BLOCK_LEN(ctx), ifindex = ctx->ingress_ifindex, queue = SRL_QUEUE(ctx);
  u32 cpu = bpf_get_smp_processor_id();
  struct srl_area *a = srl_area_of(cpu);
  if (!a) goto lost;
  if (*(volatile u64 *)&a->busy) goto lost;
  *(volatile u64 *)&a->busy = 1;
  u64 head = *(volatile u64 *)&a->next, tail = *(volatile u64 *)&a->tail_seen;
  u64 gap_end = *(volatile u64 *)&a->gap_end, gap = *(volatile u64 *)&a->gap;
  u32 cap = wire < snap ? wire : snap;
  if (cap == 0) cap = 1;
  if (cap > 65535) cap = 65535;
  u64 need = (sizeof(struct srl_rec) + cap + 7) & ~7ull;
  /* Bytes the reader has yet to read (a gap it has not passed is no
     record). The tail seen only lags the reader's: at most this many. */
  u64 waiting = head - tail - (tail < gap_end ? gap : 0);
  if (waiting + need > SRL_WAKE_BYTES) {
    tail = *(volatile u64 *)&a->tail;
    *(volatile u64 *)&a->tail_seen = tail;
    waiting = head - tail - (tail < gap_end ? gap : 0);
  }
  u32 at = head & (SRL_AREA - 1);
  u64 ts = bpf_ktime_get_ns();
  int wake = 0;
#if SRL_WINDOW < SRL_AREA
  /* The lap: since lap_head (at lap_ts), restarted at most every window
     bytes while it is fast. Past the window on a slow lap (fast traffic
     streams through the whole area at no such cost): back to the start
     where the reader has left at most half of what lies before the head,
     so that half of it stays free behind. The reader is woken either way,
     to pass the skip record or to catch up, and its tail read again at
     most every eighth of a window. */
  if (head == 0) *(volatile u64 *)&a->lap_ts = ts;
  if (at >= SRL_WINDOW) {
    if (ts - *(volatile u64 *)&a->lap_ts >= SRL_LAP_NS) {
      if (head - tail + need > at / 2 && head >= *(volatile u64 *)&a->retry) {
        tail = *(volatile u64 *)&a->tail;
        *(volatile u64 *)&a->tail_seen = tail;
        *(volatile u64 *)&a->retry = head + SRL_WINDOW / 8;
        wake = 1;
      }
      if (head - tail + need <= at / 2) {
        struct srl_rec *skip = (void *)&a->data[at];
        skip->ts_ns = ts;
        skip->exits = 0;
        skip->wire_len = 0;
        skip->cap_len = 0;
        skip->flags = )"
    << kCopySkip << R"(;
        head += SRL_AREA - at;
        *(volatile u64 *)&a->gap = SRL_AREA - at;
        *(volatile u64 *)&a->gap_end = head;
        *(volatile u64 *)&a->lap_head = head;
        *(volatile u64 *)&a->lap_ts = ts;
        at = 0;
        wake = 1;
      }
      waiting = head - tail - (tail < *(volatile u64 *)&a->gap_end ? *(volatile u64 *)&a->gap : 0);
    } else if (head - *(volatile u64 *)&a->lap_head >= SRL_WINDOW) {
      *(volatile u64 *)&a->lap_head = head;
      *(volatile u64 *)&a->lap_ts = ts;
    }
  }
#endif
  /* The bytes from tail to head, a gap among them, are the reader's; the
     tail seen may be from before the reader passed a gap. */
  if (head - tail + need > SRL_AREA) {
    tail = *(volatile u64 *)&a->tail;
    *(volatile u64 *)&a->tail_seen = tail;
    if (head - tail + need > SRL_AREA) goto busy_lost;
    waiting = head - tail - (tail < *(volatile u64 *)&a->gap_end ? *(volatile u64 *)&a->gap : 0);
  }
  struct srl_rec *r = (void *)&a->data[at];
  r->ts_ns = ts;
  r->exits = exits;
  r->wire_len = wire;
  r->cap_len = cap;
  r->ifindex = ifindex;
  r->queue = queue;
  r->flags = flags;
  /* Hide what clang knows of cap: the verifier bounds the load by it. */
  asm volatile("" : "+r"(cap));
  if (cap < 1 || cap > 65535) goto busy_lost;
  if (SRL_LOAD_BYTES(ctx, 0, &a->data[at + sizeof(struct srl_rec)], cap) != 0) goto busy_lost;
  /* The record is visible before the head that covers it (the reader
     loads the head with acquire). */
  *(volatile u64 *)&a->next = head + need;
  SRL_PUBLISH(&a->head, head + need);
  *(volatile u64 *)&a->busy = 0;
  if (wake || (waiting < SRL_WAKE_BYTES && waiting + need >= SRL_WAKE_BYTES)) srl_wake(cpu);
  cnt->c[SRL_NODES].packets++;
  cnt->c[SRL_NODES].bytes += cap;
  return 1;
busy_lost:
  *(volatile u64 *)&a->busy = 0;
lost:
  cnt->c[SRL_NODES].accepted++;
  return 0;
}
)";
  return c.str();
}

// How far into the frame a classic BPF program can read: its absolute
// loads, and its indexed loads with the largest X that any instruction
// sets (an immediate, or 4 * a nibble from `ldxms`); nullopt where X may
// come from A, M[] or the length, which nothing bounds.
std::optional<std::uint32_t> cbpf_reach(const compiler::Translation& t) {
  std::uint64_t x_max = 0, reach = 0;
  for (const auto& [code, jt, jf, k] : t.insns) {
    if ((code & 0x07) != 0x01) continue;  // LDX
    const unsigned mode = code & 0xE0;
    if (mode == 0x00)
      x_max = std::max<std::uint64_t>(x_max, k);
    else if (mode == 0xA0)
      x_max = std::max<std::uint64_t>(x_max, 60);
    else
      return std::nullopt;
  }
  for (const auto& [code, jt, jf, k] : t.insns) {
    if ((code & 0x07) != 0x00 && !((code & 0x07) == 0x01 && (code & 0xE0) == 0xA0)) continue;
    const unsigned mode = code & 0xE0, size = code & 0x18;
    const std::uint64_t bytes = (code & 0x07) == 0x01 ? 1 : size == 0x00 ? 4 : size == 0x08 ? 2 : 1;
    if (mode == 0x20 || mode == 0xA0)
      reach = std::max(reach, std::uint64_t{k} + bytes);
    else if (mode == 0x40)
      reach = std::max(reach, x_max + k + bytes);
  }
  if (reach > UINT32_MAX) return std::nullopt;
  return static_cast<std::uint32_t>(reach);
}

// A load of `size` bytes (4, 2 or 1) at `offset` into A, in network order.
// One pointer for the bounds check and the reads, so that the verifier sees
// the check on the pointer it reads through.
std::string cbpf_load(const std::string& offset, int size) {
  std::ostringstream l;
  l << "  if ((u64)(" << offset << ") + " << size << " > len) return 0;\n"
    << "  q = data + ((" << offset << ") & 0xFFFF);\n"
    << "  if (q + " << size << " > end) return 0;\n";
  if (size == 4)
    l << "  A = ((u32)q[0] << 24) | ((u32)q[1] << 16) | ((u32)q[2] << 8) | q[3];\n";
  else if (size == 2)
    l << "  A = ((u32)q[0] << 8) | q[1];\n";
  else
    l << "  A = q[0];\n";
  return l.str();
}

// A classic BPF constant as a C literal.
std::string cbpf_constant(std::uint32_t k) {
  return std::to_string(k) + "u";
}

// LD: A from an immediate, the length, M[] or the frame (at an absolute
// offset, or X past it).
std::string cbpf_ld(std::uint32_t code, std::uint32_t k) {
  const unsigned size = code & 0x18, mode = code & 0xE0;
  const std::string K = cbpf_constant(k);
  if (mode == 0x00) return "  A = " + K + ";\n";  // imm
  if (mode == 0x80) return "  A = len;\n";
  if (mode == 0x60) return "  A = M[" + std::to_string(k & 15) + "];\n";
  const int bytes = size == 0x00 ? 4 : size == 0x08 ? 2 : 1;
  return cbpf_load(mode == 0x20 ? K : "X + " + K, bytes);  // abs : ind
}

// LDX: X from an immediate, the length, M[] or 4 * the low nibble of a
// frame byte (msh: an IPv4 header's length).
std::string cbpf_ldx(std::uint32_t code, std::uint32_t k) {
  const unsigned mode = code & 0xE0;
  const std::string K = cbpf_constant(k);
  if (mode == 0x00) return "  X = " + K + ";\n";
  if (mode == 0x80) return "  X = len;\n";
  if (mode == 0x60) return "  X = M[" + std::to_string(k & 15) + "];\n";
  if (mode == 0xA0)
    return "  if ((u64)" + K + " + 1 > len) return 0;\n  q = data + (" + K +
           " & 0xFFFF);\n  if (q + 1 > end) return 0;\n  X = (u32)(q[0] & 0xF) << 2;\n";
  return "";
}

// The classic BPF ALU operations that are C's binary operators.
constexpr std::pair<unsigned, const char*> kCbpfAluOperators[] = {
    {0x00, "+"}, {0x10, "-"}, {0x20, "*"}, {0x30, "/"},  {0x90, "%"},
    {0x40, "|"}, {0x50, "&"}, {0xA0, "^"}, {0x60, "<<"}, {0x70, ">>"}};

// ALU: A op= X or K, or A = -A. A division by zero ends the filter with 0,
// as in the kernel; a shift by 32 or more, undefined in C, gives 0.
std::string cbpf_alu(unsigned op, const std::string& operand) {
  if (op == 0x80) return "  A = -A;\n";
  const auto found =
      std::ranges::find(kCbpfAluOperators, op, [](const auto& o) { return o.first; });
  if (found == std::end(kCbpfAluOperators))
    throw KernelError("bpf: unsupported classic BPF ALU operation");
  const std::string c_op = found->second;
  if (op == 0x30 || op == 0x90)
    return "  if (" + operand + " == 0) return 0;\n  A " + c_op + "= " + operand + ";\n";
  if (op == 0x60 || op == 0x70)
    return "  A = (" + operand + ") < 32 ? A " + c_op + " (" + operand + ") : 0;\n";
  return "  A " + c_op + "= " + operand + ";\n";
}

// JMP at instruction i: a goto to the target's label (forward only, as
// cbpf_function checks).
std::string cbpf_jump(std::size_t i, unsigned op, std::uint32_t jt, std::uint32_t jf,
                      std::uint32_t k, const std::string& operand) {
  if (op == 0x00) return "  goto L" + std::to_string(i + 1 + k) + ";\n";
  const std::string targets = ") goto L" + std::to_string(i + 1 + jt) + "; else goto L" +
                              std::to_string(i + 1 + jf) + ";\n";
  if (op == 0x40) return "  if (A & " + operand + targets;
  const char* rel = op == 0x10 ? " == " : op == 0x20 ? " > " : op == 0x30 ? " >= " : nullptr;
  if (rel == nullptr) throw KernelError("bpf: unsupported classic BPF jump");
  return "  if (A" + std::string(rel) + operand + targets;
}

// Instruction i, after its label (every instruction has one: the jumps'
// targets).
std::string cbpf_instruction(std::size_t i, const std::array<std::uint32_t, 4>& insn) {
  const auto [code, jt, jf, k] = insn;
  const std::string label = "L" + std::to_string(i) + ":;\n";
  const std::string operand = (code & 0x08) ? "X" : cbpf_constant(k);  // X or K
  switch (code & 0x07) {
    case 0x00:
      return label + cbpf_ld(code, k);
    case 0x01:
      return label + cbpf_ldx(code, k);
    case 0x02:  // ST
      return label + "  M[" + std::to_string(k & 15) + "] = A;\n";
    case 0x03:  // STX
      return label + "  M[" + std::to_string(k & 15) + "] = X;\n";
    case 0x04:
      return label + cbpf_alu(code & 0xF0, operand);
    case 0x05:
      return label + cbpf_jump(i, code & 0xF0, jt, jf, k, operand);
    case 0x06:  // RET
      return label + "  return " + ((code & 0x18) == 0x10 ? std::string("A") : cbpf_constant(k)) +
             ";\n";
    default:  // MISC: tax, txa
      return label + ((code & 0xF8) == 0x00 ? "  X = A;\n" : "  A = X;\n");
  }
}

// Classic BPF from libpcap, translated into a C function: registers A and
// X, scratch M[], forward jumps as gotos. `len` is the length on the wire,
// as in the kernel's classic BPF. The caller has made the frame readable
// directly as far as the program can read (cbpf_reach); a load outside
// the frame ends the filter with 0, as in the kernel. A global function (not
// static, not inlined): the verifier checks it once, on its own, instead of
// once per path that reaches it, so many expressions on one hook add up
// rather than multiply.
std::string cbpf_function(const std::string& name, const compiler::Translation& t) {
  if (const auto back = t.backward_jump())
    throw KernelError("bpf: the classic BPF jumps back at instruction " + std::to_string(*back) +
                      " (a loop): it runs in userspace only");
  std::ostringstream o;
  o << "__attribute__((noinline)) u32 " << name << "(SRL_CTX *ctx) {\n"
    << "  u8 *data = (u8 *)(long)ctx->data, *end = (u8 *)(long)ctx->data_end;\n"
    // As whole pointers from here on: a spill of the 32-bit context field
    // would be one the verifier refuses.
    << "  __asm__ __volatile__(\"\" : \"+r\"(data), \"+r\"(end));\n"
    << "  u32 A = 0, X = 0, M[16] = {};\n  u32 len = SRL_WIRE_LEN(ctx);\n  u8 *q;\n"
    << "  (void)M; (void)len; (void)q; (void)X;\n";
  for (std::size_t i = 0; i < t.insns.size(); ++i)
    o << cbpf_instruction(i, t.insns[i]);
  o << "L" << t.insns.size() << ":;\n  return 0;\n}\n";
  return o.str();
}

enum class Hook { xdp, tc };

// At TC a block srl lets through goes on to whatever else is on the hook
// (TC_ACT_UNSPEC: tcx's TCX_NEXT, cls_bpf's next filter), which may still
// decide; TC_ACT_OK would end the hook there for everyone.
const char* pass_verdict(Hook hook) {
  return hook == Hook::xdp ? "XDP_PASS" : "TC_ACT_UNSPEC";
}
const char* drop_verdict(Hook hook) {
  return hook == Hook::xdp ? "XDP_DROP" : "TC_ACT_SHOT";
}

// The nodes the program runs: those `in_kernel` flags (null: every node).
struct KernelNodes {
  const std::vector<bool>* in_kernel = nullptr;
  bool contains(Vertex v) const { return in_kernel == nullptr || (*in_kernel)[v]; }
};

// What outlives the node that decides it lives in a per-CPU scratch map,
// read at each use: the parsed headers, an outcome (reached, accepted,
// class) read beyond the next node, what gathers the inputs of a union or
// an intersect, the exits taken, the verdict, the passes. The verifier
// does not track what a map holds, so paths that differ only in those
// values meet in one state after each node: its work is the sum of the
// nodes', whatever else is on the hook, and a subset of requests never
// costs more than the whole. (Held in variables, an intersect of 10
// prefixes took ~48,000 instructions, of 20 more than the verifier's
// budget of 1,000,000, and removing requests could double the work.)
//
// Slots are numbered as they are added; the program sets those with an
// initial value on entry, in that order.
class Slots {
 public:
  std::uint32_t add(std::uint32_t value) {
    initial_.emplace_back(count_, value);
    return count_++;
  }
  // `n` slots in a row that are written before they are read.
  std::uint32_t add_unset(std::uint32_t n) {
    const std::uint32_t first = count_;
    count_ += n;
    return first;
  }
  std::uint32_t count() const { return count_; }
  const std::vector<std::pair<std::uint32_t, std::uint32_t>>& initial() const { return initial_; }

 private:
  std::uint32_t count_ = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> initial_;  // slot, value
};

// Slot i in the program: a word of the scratch.
std::string w(std::uint32_t i) {
  return "w[" + std::to_string(i) + "]";
}

// Per node of several inputs: whether any input delivered, whether all
// did (intersect), and the class it carries with the input it came by
// (`first`: the index of that input).
struct Gather {
  std::uint32_t any = 0, all = 0, first = 0, cls = 0;
  bool intersect = false;
};

// The gathers of the kernel nodes, with their slots.
std::map<Vertex, Gather> gather_slots(const DagGraph& g, KernelNodes kernel, Slots& slots) {
  std::map<Vertex, Gather> gathers;
  for (Vertex v = 0; v < boost::num_vertices(g); ++v) {
    // Every union and intersect, also one whose inputs the compiler made
    // one (`(eth) or (eth)`); any other node with several inputs.
    const bool combines = g[v].filter_name() == "union" || g[v].filter_name() == "intersect";
    if (!kernel.contains(v) || (boost::in_degree(v, g) < 2 && !combines)) continue;
    Gather gv;
    gv.intersect = g[v].filter_name() == "intersect";
    gv.any = slots.add(0);
    gv.all = slots.add(1);
    gv.first = slots.add(0xFFFF);
    gv.cls = slots.add(0);
    gathers[v] = gv;
  }
  return gathers;
}

// A node read only by the node right after it (or by what gathers its
// outcome, updated right after it) keeps its outcome in variables; any
// other's outcome goes to three slots (reached, accepted, class).
std::map<Vertex, std::uint32_t> outcome_slots(const DagGraph& g,
                                              const std::map<Vertex, Gather>& gathers,
                                              Slots& slots) {
  std::map<Vertex, std::uint32_t> outcomes;
  for (Vertex v = 0; v < boost::num_vertices(g); ++v) {
    bool near = true;
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it) {
      const Vertex t = boost::target(*it, g);
      near = near && (t == v + 1 || gathers.contains(t));
    }
    if (!near) outcomes[v] = slots.add_unset(3);
  }
  return outcomes;
}

// The program's slots: the verdict (0 none, 1 pass, 2 tx, 3 drop: the
// strongest wins) with the device and node of a tx, the exits taken and
// copied (masks) with the bytes to copy, the gathers, the outcomes; a
// `pass` node's slot is added as the node is emitted.
struct ScratchLayout {
  Slots slots;
  std::uint32_t verdict = 0, tx_if = 0, tx_node = 0, take = 0, copy = 0, snap = 0;
  std::map<Vertex, Gather> gathers;
  std::map<Vertex, std::uint32_t> outcomes;
};

ScratchLayout lay_out_scratch(const DagGraph& g, KernelNodes kernel) {
  ScratchLayout s;
  s.verdict = s.slots.add(0);
  s.tx_if = s.slots.add(0);
  s.tx_node = s.slots.add(0);
  s.take = s.slots.add(0);
  s.copy = s.slots.add(0);
  s.snap = s.slots.add(0);
  s.gathers = gather_slots(g, kernel, s.slots);
  s.outcomes = outcome_slots(g, s.gathers, s.slots);
  return s;
}

// Exits that fire together (one kernel tail, one selector, copy or take
// alike) are tested once, where the first of them is: sixteen captures of
// the same selection cost one test per block, not sixteen. Bits in exit
// order; per group its mask and the largest snap length below it.
struct ExitGroup {
  Vertex first = 0;
  std::uint32_t mask = 0, snaplen = 0;
};

// The edges from kernel nodes into userspace: copy or take, per exit
// (filters/delivery.h), the bytes the userspace part below each exit needs
// (the copy's snap length), and the groups they are tested in.
class ExitPlan {
 public:
  ExitPlan(const DagGraph& g, KernelNodes kernel);
  // The exit that edge `e` into userspace makes, as exit number `bit`.
  KernelExit exit_at(compiler::Edge e, std::uint32_t bit) const;
  // The group of the exits under `condition` that take (or copy).
  const ExitGroup& group_of(const std::string& condition, bool take) const {
    return groups_.at({condition, take});
  }

 private:
  bool takes(Vertex v) const { return consumer_[v] != filters::kNone; }
  std::uint32_t snap_below(Vertex top) const;

  const DagGraph& g_;
  std::vector<std::vector<std::size_t>> children_;
  std::vector<std::size_t> consumer_;  // per node: the one below that consumes its blocks
  std::map<std::pair<std::string, bool>, ExitGroup> groups_;  // by condition and take
};

ExitPlan::ExitPlan(const DagGraph& g, KernelNodes kernel)
    : g_(g), children_(boost::num_vertices(g)) {
  const std::size_t n = boost::num_vertices(g);
  std::vector<bool> consumes(n, false);
  for (Vertex v = 0; v < n; ++v) {
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
      children_[v].push_back(boost::target(*it, g));
    consumes[v] = !kernel.contains(v) && filters::consumes_block(*g[v].filter, g[v].options);
  }
  consumer_ = filters::consumers_below(children_, consumes);
  std::uint32_t bit = 0;
  for (Vertex v = 0; v < n; ++v) {
    if (kernel.contains(v)) continue;
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it) {
      if (!kernel.contains(boost::source(*it, g))) continue;
      auto& group =
          groups_.try_emplace({edge_condition(g, *it), takes(v)}, ExitGroup{v}).first->second;
      if (bit < kMaxExits) group.mask |= 1u << bit;
      group.snaplen = std::max(group.snaplen, snap_below(v));
      ++bit;
    }
  }
}

KernelExit ExitPlan::exit_at(compiler::Edge e, std::uint32_t bit) const {
  const Vertex v = boost::target(e, g_);
  KernelExit x;
  x.bit = bit;
  x.from = g_[boost::source(e, g_)].id;
  x.to = g_[v].id;
  if (takes(v)) {
    x.delivery = filters::Delivery::take;
    x.consumer = g_[consumer_[v]].id;
  }
  x.snaplen = snap_below(v);
  return x;
}

std::uint32_t ExitPlan::snap_below(Vertex top) const {
  std::uint32_t snap = 0;
  std::vector<bool> seen(boost::num_vertices(g_), false);
  std::vector<Vertex> stack{top};
  while (!stack.empty()) {
    const Vertex u = stack.back();
    stack.pop_back();
    if (seen[u]) continue;
    seen[u] = true;
    snap = std::max(snap, filters::bytes_needed(*g_[u].filter, g_[u].options));
    for (auto c : children_[u])
      stack.push_back(c);
  }
  return snap;
}

// What the rest of the program needs to know of its kernel nodes.
struct KernelNeeds {
  std::size_t nodes = 0;        // in the kernel
  std::size_t expressions = 0;  // tcpdump expressions, a BPF function each
  std::string functions;        // theirs
  // How far the tcpdump expressions read into a frame (nullopt: maybe
  // anywhere), made readable before the first of them at TC.
  std::optional<std::uint32_t> expressions_reach = 0;
  bool reads_addresses = false;  // an `addr` or a `hash` in the kernel
  bool hashes = false;           // a `hash` in the kernel (loops over addresses)
  std::uint32_t state = 0;       // sample's counters (srl_state)
  std::uint32_t buckets = 0;     // rate's token buckets (srl_buckets)
  // Keys of the count nodes by class: the size of their one shared table.
  std::uint32_t class_keys = 0;
};

// What a kernel node makes of a block that reached it: whether it accepts
// it (a C condition) and the class it carries on.
struct NodeTest {
  std::string accept = "1", cls = "0";
};

// The filters over the headers srl_parse found (p); nullopt for others.
std::optional<NodeTest> header_test(const compiler::DagNode& node, KernelNeeds& needs) {
  const std::string f(node.filter_name());
  if (f == "eth") return NodeTest{"p.eth_ok", "0"};
  if (f == "vlan") return NodeTest{"p.vlans != 0", "p.vlan_id"};
  if (f == "arp") return NodeTest{"(p.eth_ok && p.ethertype == 0x0806)", "0"};
  if (f == "ipv4") return NodeTest{"p.l3 == 4", "0"};
  if (f == "ipv6") return NodeTest{"p.l3 == 6", "0"};
  if (f == "ip") return NodeTest{"p.l3 != 0", "0"};
  if (f == "proto") return NodeTest{"(p.l3 != 0 && p.l4_proto != 255)", "p.l4_proto"};
  if (f == "tcp") return NodeTest{"p.l4 == 6", "0"};
  if (f == "udp") return NodeTest{"p.l4 == 17", "0"};
  if (f == "icmp") return NodeTest{"p.l4 == 1", "0"};
  if (f == "tcpflags") return NodeTest{"p.l4 == 6", "p.tcp_flags"};
  if (f == "port") {
    const auto& which = str_option(node, "which");
    const char* port = which == "src"   ? "p.sport"
                       : which == "dst" ? "p.dport"
                                        : "(p.sport < p.dport ? p.sport : p.dport)";
    return NodeTest{"(p.l4 == 6 || p.l4 == 17)", port};
  }
  if (f == "addr") {
    needs.reads_addresses = true;
    const auto& which = str_option(node, "which");
    const auto& net = str_option(node, "net");
    const std::string s = prefix_test("saddr", net), d = prefix_test("daddr", net);
    return NodeTest{which == "src" ? s : which == "dst" ? d : "(" + s + " || " + d + ")", "0"};
  }
  if (f == "len")
    return NodeTest{"(p.len >= " + std::to_string(int_option(node, "min")) +
                        " && p.len <= " + std::to_string(int_option(node, "max")) + ")",
                    "0"};
  if (f == "hash") {
    needs.reads_addresses = true;
    needs.hashes = true;
    const auto& fields = str_option(node, "fields");
    const int code = fields == "flow" ? 0 : fields == "addrs" ? 1 : fields == "src" ? 2 : 3;
    return NodeTest{"p.l3 != 0", "(u16)(srl_hash(pk, " + std::to_string(code) + ") % " +
                                     std::to_string(int_option(node, "buckets")) + "u)"};
  }
  return std::nullopt;
}

// bpf: the tcpdump expression's classic BPF as a function of its own.
NodeTest expression_test(const compiler::DagNode& node, KernelNeeds& needs) {
  if (!node.translation) throw KernelError("bpf node " + node.id + " has no translation");
  if (++needs.expressions > kMaxExpressions)
    throw CapacityError("more than " + std::to_string(kMaxExpressions) +
                        " tcpdump expressions at one hook (each is a BPF function)");
  const std::string fn = "srl_cbpf_" + node.id;
  needs.functions += cbpf_function(fn, *node.translation);
  const auto reach = cbpf_reach(*node.translation);
  needs.expressions_reach = reach && needs.expressions_reach
                                ? std::max(*reach, *needs.expressions_reach)
                                : std::optional<std::uint32_t>();
  return {"(" + fn + "(ctx) != 0)", "0"};
}

// rate: token bucket `bucket`, in billionths of a packet and of a bit, so
// that refills are exact integers; that bounds the rates kept in 64 bits.
NodeTest rate_test(const compiler::DagNode& node, std::uint32_t bucket) {
  constexpr std::int64_t kMaxKernelRate = 18'000'000'000;
  auto limit = [&](const char* key) -> std::int64_t {
    const auto it = node.options.find(key);
    if (it == node.options.end()) return 0;
    const auto value = std::get<std::int64_t>(it->second);
    if (value > kMaxKernelRate)
      throw KernelError("rate (" + node.id + "): " + key + "=" + std::to_string(value) +
                        " is above what the kernel implementation keeps exact (" +
                        std::to_string(kMaxKernelRate) + ")");
    return value;
  };
  return {"srl_rate(" + std::to_string(bucket) + ", " + std::to_string(limit("pps")) + "ull, " +
              std::to_string(limit("bps")) + "ull, p.len)",
          "0"};
}

// The test of a kernel node; `gathered`: the gather of its inputs, if any.
NodeTest node_test(const compiler::DagNode& node, const Gather* gathered, KernelNeeds& needs) {
  const std::string f(node.filter_name());
  if (f == "rx" || f == "count" || f == "drop" || f == "pass" || f == "tx") return {};
  if (auto test = header_test(node, needs)) return *test;
  if (f == "bpf") return expression_test(node, needs);
  if (f == "sample") {
    const std::uint32_t counter = needs.state++;
    return {"srl_sample(" + std::to_string(counter) + ", " + std::to_string(int_option(node, "n")) +
                "ull)",
            "0"};
  }
  if (f == "rate") return rate_test(node, needs.buckets++);
  if (f == "union" || f == "intersect") {
    // Gathered from the inputs as they were decided (gather_inputs). A
    // union carries the class of the first input that delivered (edge
    // order); an intersect accepts when every input delivered and carries
    // the class of the first input that classifies (in (tcp) and (port)
    // 22> ..., the port's).
    return {gathered->intersect ? w(gathered->all) : "1", w(gathered->cls)};
  }
  throw KernelError("filter '" + f + "' (" + node.id + ") has no kernel implementation yet");
}

// Reached: sources always (an `rx` of another device than the hook's
// never), other nodes when any input delivers.
std::string reached_condition(const DagGraph& g, Vertex v, const Gather* gathered,
                              const std::string& dev) {
  std::string source = "1";
  if (g[v].filter_name() == "rx" && !dev.empty()) {
    const auto it = g[v].options.find("dev");
    source = it != g[v].options.end() && std::get<std::string>(it->second) == dev ? "1" : "0";
  }
  if (gathered != nullptr) return w(gathered->any);
  if (boost::in_degree(v, g) == 0) return source;
  return edge_condition(g, *boost::in_edges(v, g).first);
}

// The class a count by class tallies a block under: the one it came with
// from its input (a source's: 0).
std::string tallied_class(const DagGraph& g, Vertex v, const Gather* gathered) {
  if (gathered != nullptr) return w(gathered->cls);
  if (boost::in_degree(v, g) == 1) {
    const auto e = *boost::in_edges(v, g).first;
    if (!g[e].select.rejected) return var(boost::source(e, g), "c");
  }
  return "0";
}

// tx: forward sets the verdict (the strongest wins: a drop over it); a
// mirror sends a clone now and the original goes on.
std::string tx_action(const compiler::DagNode& node, Vertex v, bool forward,
                      const ScratchLayout& layout) {
  const auto& tx_dev = str_option(node, "dev");
  const unsigned idx = if_nametoindex(tx_dev.c_str());
  if (idx == 0) throw KernelError("tx (" + node.id + "): no device '" + tx_dev + "'");
  std::ostringstream s;
  if (forward) {
    s << "    if (" << w(layout.verdict) << " < 2) { " << w(layout.verdict) << " = 2; "
      << w(layout.tx_if) << " = " << idx << "; " << w(layout.tx_node) << " = " << v << "; }\n";
  } else {
    // The clone leaves as the frame came: the outer tag back in the metadata.
    s << "    if (retag) bpf_skb_vlan_pop(ctx);\n"
      << "    if (bpf_clone_redirect(ctx, " << idx << ", 0) == 0) cnt->c[" << v << "].accepted++;\n"
      << "    if (retag) bpf_skb_vlan_push(ctx, ctx->vlan_proto, ctx->vlan_tci);\n";
  }
  return s.str();
}

// Kernel node v's part in the nodes of several inputs it feeds, right
// after it: whether it delivered to them, and the class it brings.
std::string gather_inputs(const DagGraph& g, Vertex v, const std::map<Vertex, Gather>& gathers) {
  std::ostringstream body;
  const std::string c = var(v, "c");
  for (auto [it, end] = boost::out_edges(v, g); it != end; ++it) {
    const auto to = gathers.find(boost::target(*it, g));
    if (to == gathers.end()) continue;
    const Gather& gv = to->second;
    // This edge's index among the gather's inputs, and that of the first
    // input that classifies (at most this one's).
    std::size_t index = 0, classifying = SIZE_MAX;
    for (auto [jt, jend] = boost::in_edges(to->first, g); jt != jend; ++jt, ++index) {
      if (classifying == SIZE_MAX && !g[*jt].select.rejected &&
          g[boost::source(*jt, g)].filter->max_class > 0)
        classifying = index;
      if (*jt == *it) break;
    }
    const bool classifies = !g[*it].select.rejected && g[v].filter->max_class > 0;
    const std::string in_cls = g[*it].select.rejected ? "0" : c;
    body << "  if (" << edge_condition(g, *it) << ") {\n    " << w(gv.any) << " = 1;\n";
    if (!gv.intersect)
      body << "    if (" << w(gv.first) << " > " << index << ") { " << w(gv.first) << " = " << index
           << "; " << w(gv.cls) << " = " << in_cls << "; }\n";
    body << "  }" << (gv.intersect ? " else " + w(gv.all) + " = 0;" : "") << "\n";
    if (gv.intersect && classifies && classifying == index)
      body << "  " << w(gv.cls) << " = " << c << ";\n";
  }
  return body.str();
}

// The nodes' part of the program, and what the rest needs to know of it.
struct NodesCode {
  std::string body;
  KernelNeeds needs;
  std::vector<NodeSlot> nodes;  // counter slot i is nodes[i]
  std::vector<KernelExit> exits;
  std::vector<std::pair<Vertex, std::uint32_t>> passes;  // `pass` nodes and their slots
};

// Emits every node in topological order (DAG ids are): a kernel node runs
// its test and actions, a userspace node takes the exits into it.
class NodesWriter {
 public:
  NodesWriter(Hook hook, const DagGraph& g, const std::string& dev, KernelNodes kernel,
              const ExitPlan& exit_plan, ScratchLayout& layout)
      : hook_(hook), g_(g), dev_(dev), kernel_(kernel), exit_plan_(exit_plan), layout_(layout) {}
  NodesCode run();

 private:
  void kernel_node(Vertex v);
  void actions(Vertex v, const Gather* gathered);
  void userspace_node(Vertex v);
  void exits_into(Vertex v);
  // The locals of a node's outcome, or its slots where they outlive it.
  std::string outcome_start(Vertex v, const std::string& reached) const;

  Hook hook_;
  const DagGraph& g_;
  const std::string& dev_;
  KernelNodes kernel_;
  const ExitPlan& exit_plan_;
  ScratchLayout& layout_;
  std::ostringstream body_;
  NodesCode code_;
};

NodesCode NodesWriter::run() {
  for (Vertex v = 0; v < boost::num_vertices(g_); ++v) {
    if (kernel_.contains(v))
      kernel_node(v);
    else
      userspace_node(v);
  }
  code_.body = body_.str();
  return std::move(code_);
}

std::string NodesWriter::outcome_start(Vertex v, const std::string& reached) const {
  const std::string u8 = layout_.outcomes.contains(v) ? "" : "u8 ";
  const std::string u16 = layout_.outcomes.contains(v) ? "" : "u16 ";
  return "  " + u8 + var(v, "r") + " = " + reached + ";\n  " + u8 + var(v, "a") + " = 0;\n  " +
         u16 + var(v, "c") + " = 0;\n";
}

// A kernel node: whether the block reached it, its test, its counters and
// actions, then its part in the gathers it feeds.
void NodesWriter::kernel_node(Vertex v) {
  const auto& node = g_[v];
  const std::string f(node.filter_name());
  code_.nodes.push_back({node.id, f, node.name});
  ++code_.needs.nodes;
  if (!node.filter->implemented_in(filters::SpaceKind::kernel))
    throw KernelError("filter '" + f + "' (" + node.id +
                      ") has no kernel implementation; it "
                      "runs in userspace only");
  if (hook_ == Hook::xdp && node.filter->kernel_tc_only)
    throw KernelError("filter '" + f + "' (" + node.id +
                      ") runs in the kernel at the TC hook only; at XDP it runs in userspace");
  const auto found = layout_.gathers.find(v);
  const Gather* gathered = found == layout_.gathers.end() ? nullptr : &found->second;
  const std::string reached = reached_condition(g_, v, gathered, dev_);
  const NodeTest test = node_test(node, gathered, code_.needs);
  const std::string r = var(v, "r");
  body_ << "  /* " << node.id << " " << f << (node.name ? " " + *node.name : "") << " */\n"
        << outcome_start(v, reached) << "  if (" << r << ") {\n"
        << "    " << var(v, "a") << " = " << test.accept << ";\n"
        << "    " << var(v, "c") << " = " << test.cls << ";\n"
        << "    cnt->c[" << v << "].packets++;\n    cnt->c[" << v << "].bytes += len;\n";
  actions(v, gathered);
  body_ << "  }\n";
  if (f == "pass") {
    const std::uint32_t passed = layout_.slots.add(0);
    code_.passes.emplace_back(v, passed);
    body_ << "  " << w(passed) << " = " << r << ";\n";
  }
  body_ << gather_inputs(g_, v, layout_.gathers);
}

// What a node does with a block that reached it: counts it as accepted
// (terminals only what was carried out: a `pass` whose block a `drop` or a
// take ended did not pass; counted at the end), tallies it by class, and
// sets a terminal's verdict.
void NodesWriter::actions(Vertex v, const Gather* gathered) {
  const auto& node = g_[v];
  const std::string f(node.filter_name());
  const bool verdict_node = f == "pass" || (f == "tx" && str_option(node, "mode") == "forward");
  if (!verdict_node && f != "tx")
    body_ << "    if (" << var(v, "a") << ") cnt->c[" << v << "].accepted++;\n";
  if (f == "count" && str_option(node, "by") == "class") {
    const std::string in_cls = tallied_class(g_, v, gathered);
    code_.needs.class_keys += static_cast<std::uint32_t>(int_option(node, "keys"));
    body_ << "    srl_class_count(" << v << ", " << in_cls << ", len);\n";
  }
  const std::string verdict = w(layout_.verdict);
  if (f == "drop") body_ << "    " << verdict << " = 3;\n";
  if (f == "tx") body_ << tx_action(node, v, verdict_node, layout_);
  if (f == "pass") body_ << "    if (" << verdict << " < 1) " << verdict << " = 1;\n";
}

// A userspace node: the exits into it; in the kernel, nothing reaches it.
void NodesWriter::userspace_node(Vertex v) {
  const auto& node = g_[v];
  exits_into(v);
  for (auto [it, end] = boost::out_edges(v, g_); it != end; ++it)
    if (kernel_.contains(boost::target(*it, g_)))
      throw KernelError("node " + node.id + " runs in userspace but feeds kernel node " +
                        g_[boost::target(*it, g_)].id + "; blocks only move up from the kernel");
  const std::string f(node.filter_name());
  code_.nodes.push_back({node.id, f, node.name});
  body_ << "  /* " << node.id << " " << f << ": userspace */\n" << outcome_start(v, "0");
}

// The exits from kernel nodes into userspace node v, numbered in order;
// each group of them is tested where its first exit is.
void NodesWriter::exits_into(Vertex v) {
  for (auto [it, end] = boost::in_edges(v, g_); it != end; ++it) {
    if (!kernel_.contains(boost::source(*it, g_))) continue;
    if (code_.exits.size() == kMaxExits)
      throw CapacityError("more than " + std::to_string(kMaxExits) +
                          " edges leave the kernel for userspace at one hook");
    KernelExit x = exit_plan_.exit_at(*it, static_cast<std::uint32_t>(code_.exits.size()));
    const bool take = x.delivery == filters::Delivery::take;
    const std::string cond = edge_condition(g_, *it);
    const ExitGroup& group = exit_plan_.group_of(cond, take);
    if (group.first == v)
      body_ << "  if (" << cond << ") {\n    " << w(take ? layout_.take : layout_.copy)
            << " |= " << group.mask << "u; /* " << x.from << " > " << x.to
            << (std::popcount(group.mask) > 1 ? " and the exits with it" : "") << " */\n"
            << "    if (" << w(layout_.snap) << " < " << group.snaplen << ") " << w(layout_.snap)
            << " = " << group.snaplen << ";\n  }\n";
    code_.exits.push_back(std::move(x));
  }
}

// The scratch (headers and slots) on the stack: at most 256 of its 512
// bytes, and for a program small enough (kRegisterFormNodes).
bool fits_register_form(ProgramForm form, const KernelNeeds& needs, std::uint32_t slots) {
  constexpr std::uint32_t kRegisterFormSlots = (256 - 80) / 4;
  return form == ProgramForm::automatic && needs.nodes <= kRegisterFormNodes &&
         needs.expressions == 0 && !needs.hashes && slots <= kRegisterFormSlots;
}

void check_copy_channel(const CopyChannelOptions& copy) {
  if (copy.rings == 0 || copy.rings > 64 || !valid_copy_area(copy.ring_bytes))
    throw KernelError(
        "copy channel: rings must be 1 to 64, and each CPU's area a power of two "
        "from 4 KiB to " +
        std::to_string(kCopyAreaMax >> 20) + " MiB");
}

// The hook's context, and how the program reads its length, its bytes
// and its queue.
const char* hook_macros(Hook hook) {
  return hook == Hook::xdp
             ? "\n#define SRL_CTX struct xdp_md"
               "\n#define SRL_WIRE_LEN(ctx) ((u32)((long)(ctx)->data_end - (long)(ctx)->data))"
               "\n#define SRL_LOAD_BYTES bpf_xdp_load_bytes"
               "\n#define SRL_BLOCK_LEN(ctx) bpf_xdp_get_buff_len(ctx) /* with any fragments */"
               "\n#define SRL_QUEUE(ctx) ((ctx)->rx_queue_index)"
             : "\n#define SRL_CTX struct __sk_buff\n#define SRL_WIRE_LEN(ctx) ((ctx)->len)"
               "\n#define SRL_LOAD_BYTES bpf_skb_load_bytes"
               "\n#define SRL_BLOCK_LEN(ctx) ((ctx)->len)\n#define SRL_QUEUE(ctx) 0";
}

// What every program has after the prelude: the general parse, the maps
// (counters, scratch, AF_XDP sockets, sample's state, rate's buckets) and
// the helpers of sample and rate.
constexpr const char* kMapsAndHelpers = R"(
/* The general parse, out of line: for the frames that are not untagged
   IPv4, and at TC again after the block was made linear. A function of its
   own, which the verifier checks once, apart, rather than along every path
   of the program (inlined, the parse of every layer doubled its work at TC;
   out of line, the program is a hundred instructions shorter). */
__attribute__((noinline)) int srl_parse_general(SRL_CTX *ctx, struct srl_pkt *p) {
  if (!p) return 0;
  u8 *data = (u8 *)(long)ctx->data, *end = (u8 *)(long)ctx->data_end;
  __asm__ __volatile__("" : "+r"(data), "+r"(end));
  srl_parse(data, end, SRL_WIRE_LEN(ctx), p);
  return 0;
}


struct srl_counters { struct srl_counter c[SRL_NODES + 1]; }; /* + the copy channel */

/* What outlives the nodes that decide it, for one block (the code generator's Slots). */
struct srl_scratch { struct srl_pkt pkt; u32 w[SRL_SLOTS]; };
#ifndef SRL_REGISTER_FORM
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct srl_scratch);
} srl_scratch SEC(".maps");
#endif

/* AF_XDP sockets by receive queue, for blocks that continue in userspace. */
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 256);
  __type(key, u32);
  __type(value, u32);
} srl_xsks SEC(".maps");

struct srl_tag {
  u16 magic;
  u8 version;
  u8 length;
  u32 exits;
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct srl_counters);
} srl_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SRL_STATE);
  __type(key, u32);
  __type(value, u64);
} srl_state SEC(".maps");

/* rate: token buckets shared by all CPUs (docs/filter-semantics.md). */
struct srl_bucket {
  struct bpf_spin_lock lock;
  u64 last_ns;
  u64 packets; /* in 1e-9 packet */
  u64 bits;    /* in 1e-9 bit */
  u64 started;
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SRL_BUCKETS);
  __type(key, u32);
  __type(value, struct srl_bucket);
} srl_buckets SEC(".maps");

static __always_inline u8 srl_rate(u32 slot, u64 pps, u64 bps, u32 len) {
  const u64 G = 1000000000ull;
  struct srl_bucket *b = bpf_map_lookup_elem(&srl_buckets, &slot);
  if (!b) return 0;
  u64 now = bpf_ktime_get_ns();
  u64 pcost = G, bcost = (u64)len * 8 * G;
  u8 ok = 0;
  bpf_spin_lock(&b->lock);
  if (!b->started) { /* a bucket starts full: one second's worth */
    b->started = 1;
    b->last_ns = now;
    b->packets = pps * G;
    b->bits = bps * G;
  }
  u64 elapsed = now - b->last_ns;
  if (elapsed > G) elapsed = G; /* a full second refills it all */
  b->last_ns = now;
  u64 t = b->packets + elapsed * pps;
  b->packets = t > pps * G ? pps * G : t;
  t = b->bits + elapsed * bps;
  b->bits = t > bps * G ? bps * G : t;
  if ((!pps || b->packets >= pcost) && (!bps || b->bits >= bcost)) {
    ok = 1;
    if (pps) b->packets -= pcost;
    if (bps) b->bits -= bcost;
  }
  bpf_spin_unlock(&b->lock);
  return ok;
}

/* sample: the 1st, (n+1)th, ... block, counted per CPU. */
static __always_inline u8 srl_sample(u32 slot, u64 n) {
  u64 *seen = bpf_map_lookup_elem(&srl_state, &slot);
  if (!seen) return 0;
  u64 k = (*seen)++;
  return k % n == 0;
}
)";

// count, by=class: one table for the hook's count nodes by class, as many
// keys as they have together. A class that finds it full is not tallied
// on its own: the reader counts it in "other" (the node's blocks less its
// tallies; docs/counters.md).
std::string class_table(std::uint32_t class_keys) {
  return "\n#define SRL_CLASS_KEYS " + std::to_string(class_keys) + R"(
struct srl_class_key { u32 node; u32 cls; };
struct srl_class_tally { u64 blocks; u64 bytes; };
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, SRL_CLASS_KEYS);
  __type(key, struct srl_class_key);
  __type(value, struct srl_class_tally);
} srl_classes SEC(".maps");

static __always_inline void srl_class_count(u32 node, u32 cls, u32 len) {
  struct srl_class_key k = {node, cls};
  struct srl_class_tally *t = bpf_map_lookup_elem(&srl_classes, &k);
  if (!t) {
    struct srl_class_tally first = {1, len};
    /* Made here, or by another CPU meanwhile (then tallied below). */
    if (bpf_map_update_elem(&srl_classes, &k, &first, BPF_NOEXIST) == 0) return;
    t = bpf_map_lookup_elem(&srl_classes, &k);
    if (!t) return; /* full */
  }
  t->blocks++;
  t->bytes += len;
}
)";
}

// Everything before the program's function: the prelude with the hook's
// and the program's sizes, the maps and helpers, the expressions'
// functions and the class table.
std::string program_prelude(Hook hook, std::size_t nodes, const KernelNeeds& needs,
                            std::uint32_t slots, bool register_form) {
  std::ostringstream src;
  if (!needs.reads_addresses) src << "#define SRL_NO_ADDRS\n";
  if (register_form) src << "#define SRL_REGISTER_FORM\n";
  src << kXdpPrelude << hook_macros(hook) << "\n#define SRL_NODES " << nodes
      << "\n#define SRL_STATE " << std::max<std::uint32_t>(needs.state, 1)
      << "\n#define SRL_BUCKETS " << std::max<std::uint32_t>(needs.buckets, 1)
      << "\n#define SRL_SLOTS " << slots << "\n"
      << kMapsAndHelpers << needs.functions;
  if (needs.class_keys > 0) src << class_table(needs.class_keys);
  return src.str();
}

// The program's function up to the parse: the counters and the scratch.
std::string program_entry(Hook hook, bool register_form) {
  std::ostringstream src;
  if (hook == Hook::xdp) {
    src << "\nSEC(\"xdp\")\nint srl_xdp(struct xdp_md *ctx) {\n"
        << "  u8 *data = (u8 *)(long)ctx->data;\n  u8 *end = (u8 *)(long)ctx->data_end;\n";
  } else {
    // Direct access reaches the skb's linear part, which holds the
    // headers of nearly every block; the parse reads there and says when a
    // header went on past it (header_parse). Nothing is pulled up front:
    // making a 1500-byte skb linear copies its payload, for every block.
    // The program proper; srl_tc runs it on the frame as it came on the
    // wire (`retag`: see kTcRetag).
    src << "\nstatic __always_inline int srl_tc_run(struct __sk_buff *ctx, int retag) {\n"
        << "  (void)retag;\n"
        << "  u8 *data = (u8 *)(long)ctx->data;\n  u8 *end = (u8 *)(long)ctx->data_end;\n";
  }
  // Whole pointers from here on: across the calls to the expressions'
  // functions they are spilled, and a spill of the 32-bit context field
  // would be one the verifier refuses.
  src << "  __asm__ __volatile__(\"\" : \"+r\"(data), \"+r\"(end));\n";
  src << "  u32 zero = 0;\n  struct srl_counters *cnt = bpf_map_lookup_elem(&srl_counters, "
         "&zero);\n"
      << "  if (!cnt) return " << pass_verdict(hook) << ";\n";
  if (register_form)
    // The scratch on the stack: the compiler keeps what it can in
    // registers and drops the parse's stores that no node reads.
    src << "  struct srl_scratch scratch = {};\n  u32 *w = scratch.w;\n"
        << "  struct srl_pkt *pk = &scratch.pkt;\n";
  else
    // The headers parsed into the scratch map and read from there at each
    // use: what the parse found is a value the verifier does not track,
    // so the parse's paths do not multiply the nodes' (and no node reuses
    // another's refined copy of a field).
    src << "  struct srl_scratch *scratch = bpf_map_lookup_elem(&srl_scratch, &zero);\n"
        << "  if (!scratch) return " << pass_verdict(hook) << ";\n"
        << "  volatile u32 *w = scratch->w;\n"
        << "  struct srl_pkt *pk = &scratch->pkt;\n";
  return src.str();
}

// The headers parsed once per block; at TC, the block made linear where
// they or the tcpdump expressions read past the linear part.
std::string header_parse(Hook hook, bool register_form, const KernelNeeds& needs) {
  const bool tc = hook == Hook::tc;
  std::ostringstream src;
  src << "  u32 wire = SRL_WIRE_LEN(ctx);\n";
  // The general parse writes the register form's headers into a copy: the
  // scratch's address never leaves the function, so its fields stay in
  // registers and the stores that no node reads go.
  const std::string parse_general =
      register_form ? "    struct srl_pkt general = {};\n    srl_parse_general(ctx, &general);\n"
                      "    *pk = general;\n"
                    : "    srl_parse_general(ctx, pk);\n";
  src << "  if (__builtin_expect(SRL_UNTAGGED_IPV4(data, end), 1)) {\n"
      << "    srl_parse_untagged_ipv4(data, end, wire, pk);\n  } else {\n"
      << parse_general << "  }\n";
  if (tc)
    // Headers beyond the linear part (a long IPv6 extension chain, an skb
    // built from pages): the whole block linear, then parsed again.
    src << "  if (pk->cut && (long)end - (long)data < (long)wire) {\n"
        << "    bpf_skb_pull_data(ctx, wire);\n"
        << parse_general << "  }\n";
  if (tc && needs.expressions > 0) {
    // The tcpdump expressions read the frame directly (a load beyond the
    // linear part through a helper made the verifier's work several times
    // larger): as far as they can read linear first.
    const auto& reach = needs.expressions_reach;
    src << "  {\n    u32 need = "
        << (reach
                ? "wire < " + std::to_string(*reach) + "u ? wire : " + std::to_string(*reach) + "u"
                : std::string("wire"))
        << ";\n    if ((long)ctx->data_end - (long)ctx->data < (long)need) "
           "bpf_skb_pull_data(ctx, need);\n  }\n";
  }
  src << "  u32 len = pk->len; /* counted, never tested: a variable */\n";
  return src.str();
}

// The nodes, over `p` (the parsed headers, read from the scratch map at
// each use in the map form), with the outcomes kept in slots named as
// their variables would be, and the slots' initial values set first.
std::string nodes_section(const std::string& body, const ScratchLayout& layout,
                          bool register_form) {
  std::ostringstream src;
  src << (register_form ? "#define p (*pk)\n" : "#define p (*(volatile struct srl_pkt *)pk)\n");
  for (const auto& [v, i] : layout.outcomes)
    src << "#define " << var(v, "r") << " " << w(i) << "\n#define " << var(v, "a") << " "
        << w(i + 1) << "\n#define " << var(v, "c") << " " << w(i + 2) << "\n";
  for (const auto& [i, value] : layout.slots.initial())
    src << "  " << w(i) << " = " << value << ";\n";
  src << body << "#undef p\n";
  return src.str();
}

// What the nodes decided, out of the scratch.
std::string verdict_locals(const ScratchLayout& layout) {
  return "  int verdict = " + w(layout.verdict) +
         "; /* 0 none, 1 pass, 2 tx, 3 drop: the strongest wins */\n  u32 tx_if = " +
         w(layout.tx_if) + ", tx_node = " + w(layout.tx_node) +
         ";\n  (void)tx_node; (void)tx_if;\n";
}

// Exits: a block that takes one goes up; copies leave the original to
// the verdict, a take ends it (AF_XDP from XDP, else the ring and a drop).
std::string exit_delivery(const ScratchLayout& layout, bool any_exit, bool afxdp) {
  std::ostringstream src;
  src << "  int taken = 0;\n";
  if (!any_exit) return src.str();
  src << "  u32 to_take = " << w(layout.take) << ", to_copy = " << w(layout.copy)
      << ", snap = " << w(layout.snap) << ";\n";
  if (afxdp) src << kToAfxdp;
  src << "  if (to_take | to_copy) {\n"
      << "    u32 take = to_take && verdict != 2;\n"
      << "    if (srl_copy(ctx, cnt, to_take | to_copy, snap, take ? " << kCopyTaken
      << " : 0) && take)\n"
      << "      taken = 1;\n  }\n";
  return src.str();
}

// The verdict carried out, and the passes counted as accepted now that
// they happened; at TC, the function that runs the program on the frame as
// it came.
std::string verdict_epilogue(Hook hook,
                             const std::vector<std::pair<Vertex, std::uint32_t>>& passes) {
  const bool tc = hook == Hook::tc;
  std::ostringstream src;
  src << "  if (verdict == 3) return " << drop_verdict(hook) << ";\n";
  if (tc)
    src << "  if (verdict == 2) {\n    if (tx_node < SRL_NODES) cnt->c[tx_node].accepted++;\n"
        << "    return bpf_redirect(tx_if, 0);\n  }\n";
  src << "  if (taken) return " << drop_verdict(hook) << ";\n";
  for (const auto& [v, i] : passes)
    src << "  if (" << w(i) << ") cnt->c[" << v << "].accepted++;\n";
  src << "  return " << pass_verdict(hook) << ";\n}\n";
  if (tc) src << kTcRetag;
  src << "\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n";
  return src.str();
}

// The program of one hook: the nodes laid out in the scratch, emitted in
// topological order, between the prelude and the verdict.
GeneratedProgram generate(Hook hook, const compiler::RequestDag& dag, int /*ifindex*/,
                          const std::string& dev, const std::vector<bool>* in_kernel,
                          const CopyChannelOptions& copy, ProgramForm form) {
  const DagGraph& g = dag.graph;
  const std::size_t n = boost::num_vertices(g);
  if (n > kMaxNodes)
    throw CapacityError("the requests hold " + std::to_string(n) + " nodes; one hook's program " +
                        "holds at most " + std::to_string(kMaxNodes));
  const KernelNodes kernel{in_kernel};
  ScratchLayout layout = lay_out_scratch(g, kernel);
  const ExitPlan exit_plan(g, kernel);
  NodesCode code = NodesWriter(hook, g, dev, kernel, exit_plan, layout).run();
  check_copy_channel(copy);

  GeneratedProgram out;
  out.nodes = std::move(code.nodes);
  out.exits = std::move(code.exits);
  const bool any_exit = !out.exits.empty();
  out.register_form = fits_register_form(form, code.needs, layout.slots.count());
  out.afxdp = hook == Hook::xdp && std::ranges::any_of(out.exits, [](const KernelExit& x) {
                return x.delivery == filters::Delivery::take;
              });
  out.copy_rings = any_exit ? copy.rings : 0;
  std::string& src = out.source;
  src = program_prelude(hook, n, code.needs, layout.slots.count(), out.register_form);
  if (any_exit) src += copy_channel_source(copy, copy_cpus());
  src += program_entry(hook, out.register_form);
  src += header_parse(hook, out.register_form, code.needs);
  src += nodes_section(code.body, layout, out.register_form);
  src += verdict_locals(layout);
  src += exit_delivery(layout, any_exit, out.afxdp);
  src += verdict_epilogue(hook, code.passes);
  return out;
}

}  // namespace

GeneratedProgram generate_xdp(const compiler::RequestDag& dag, int ifindex, const std::string& dev,
                              const std::vector<bool>* in_kernel, const CopyChannelOptions& copy,
                              ProgramForm form) {
  return generate(Hook::xdp, dag, ifindex, dev, in_kernel, copy, form);
}

GeneratedProgram generate_tc(const compiler::RequestDag& dag, int ifindex, const std::string& dev,
                             const std::vector<bool>* in_kernel, const CopyChannelOptions& copy,
                             ProgramForm form) {
  return generate(Hook::tc, dag, ifindex, dev, in_kernel, copy, form);
}

}  // namespace srl::runtime::kernel
