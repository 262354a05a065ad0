// The userspace engine (engine.h): node-by-node batch processing, the
// worker loops and the flow-hash split between cores.
#include "srl/runtime/engine.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "srl/runtime/ring.h"

namespace srl::runtime {
namespace {

using filters::Block;
using filters::BlockKind;

constexpr std::uint32_t kNoNode = ~std::uint32_t{0};
constexpr std::size_t kMaxEntries = 32;  // the entry mask is 32 bits

std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

enum class Kind : std::uint8_t { filter, transform, sink, union_node, intersect_node, source };

struct Child {
  std::uint32_t node;   // engine index
  std::uint16_t input;  // the edge's index among the child's inputs
  bool plain;           // `>`: every accepted block
  bool rejected;        // `!>`: every rejected block
  compiler::EdgeSelector select;
  // The common `N>` and `N:M>`: one range, checked inline.
  bool one_range = false;
  std::uint32_t lo = 0, hi = 0;

  bool takes(bool accepted, std::uint16_t cls) const {
    if (!accepted) return rejected;
    if (plain) return true;
    if (one_range) return cls >= lo && cls <= hi;
    return select.selects(cls);
  }
};

struct NodeSpec {
  std::string id;
  std::string filter;
  Kind kind = Kind::filter;
  std::vector<Child> children;
  std::vector<bool> input_classifies;  // per input edge, in edge order
  filters::UserFilterConfig config;
  bool shared = false;           // one instance for all workers, behind a lock
  bool classifying = false;      // can accept with a class other than 0
  bool dedupe = false;           // several inputs: a block may arrive more than once
  bool one_plain_child = false;  // the common chain link: `A > B`
  // The only child, when it has no other input and runs by direct call
  // right after this node, block by block (Click-style push), with no inbox
  // in between: a chain of single-input filters costs a call per link.
  std::uint32_t fused_child = kNoNode;
};

struct EntrySpec {
  std::uint32_t node = kNoNode;  // the node the block enters
  std::uint16_t input = 0;       // through this input edge
  bool source = false;           // enters as if the source node accepted it
};

// What reached a node in the current batch.
struct Item {
  std::uint32_t block;
  std::uint16_t input;
  std::uint16_t cls;  // the upstream class (0 through `!>`)
  bool classifying;   // delivered through an accepting edge of a classifying filter
};

// A node's inbox for the current batch: pushes are the engine's most
// frequent operation (one per block per edge), so the fast path is an
// inline store; it grows only when transforms emit beyond the batch size.
class Inbox {
 public:
  void push(const Item& item) {
    if (count_ == items_.size()) [[unlikely]]
      items_.resize(std::max<std::size_t>(64, 2 * items_.size()));
    items_[count_++] = item;
  }
  void reserve(std::size_t n) {
    if (items_.size() < n) items_.resize(n);
  }
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  void clear() { count_ = 0; }
  const Item& operator[](std::size_t i) const { return items_[i]; }
  const Item* begin() const { return items_.data(); }
  const Item* end() const { return items_.data() + count_; }

 private:
  std::vector<Item> items_;
  std::size_t count_ = 0;
};

struct Counter {
  std::atomic<std::uint64_t> blocks{0}, bytes{0}, accepted{0};
  // Written by one thread only: a relaxed load and store is enough, and
  // costs a plain move on x86.
  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// Bump allocator for bytes that live as long as the batch, 16-byte aligned.
class Arena {
 public:
  std::span<std::uint8_t> allocate(std::size_t n) {
    while (current_ < chunks_.size() && used_ + n > chunks_[current_].size()) {
      ++current_;
      used_ = 0;
    }
    if (current_ == chunks_.size()) {
      chunks_.emplace_back(std::max(n, kChunk));
      used_ = 0;
    }
    auto s = std::span<std::uint8_t>(chunks_[current_]).subspan(used_, n);
    used_ += (n + 15) & ~std::size_t{15};
    return s;
  }
  void reset() {
    if (chunks_.size() > 4) chunks_.resize(4);  // large bursts give their memory back
    current_ = 0;
    used_ = 0;
  }

 private:
  static constexpr std::size_t kChunk = 256 * 1024;
  std::vector<std::vector<std::uint8_t>> chunks_;
  std::size_t current_ = 0;
  std::size_t used_ = 0;
};

}  // namespace

struct Engine::Impl {
  struct SharedFilter {
    std::unique_ptr<filters::UserFilter> filter;
    std::mutex lock;
  };

  struct Worker;

  // The emitter a filter talks to while the worker runs one node.
  class NodeEmitter final : public filters::Emitter {
   public:
    explicit NodeEmitter(Worker& w) : w_(w) {}
    void begin(std::uint32_t node) {
      node_ = node;
      accepted_ = false;
      emitted_ = false;
    }
    void accept(std::uint16_t cls) override {
      accepted_ = true;
      cls_ = cls;
    }
    void emit(const Block& block, std::uint16_t cls) override;
    std::span<std::uint8_t> allocate(std::size_t bytes) override {
      return w_.arena.allocate(bytes);
    }
    std::uint16_t input_class() const override { return in_cls_; }

    std::uint32_t node_ = 0;
    bool accepted_ = false, emitted_ = false;
    std::uint16_t cls_ = 0;
    std::uint16_t in_cls_ = 0;  // the class of the block being processed

    // A fused child of a node that emits runs inside that node's process():
    // emit() keeps the node's state across.
    struct State {
      std::uint32_t node;
      bool accepted, emitted;
      std::uint16_t cls, in_cls;
    };
    State save() const { return {node_, accepted_, emitted_, cls_, in_cls_}; }
    void restore(const State& st) {
      node_ = st.node;
      accepted_ = st.accepted;
      emitted_ = st.emitted;
      cls_ = st.cls;
      in_cls_ = st.in_cls;
    }

   private:
    Worker& w_;
  };

  struct Worker {
    Impl* engine = nullptr;
    std::vector<filters::UserFilter*> filters;  // per node; null for synthetic and sources
    std::vector<std::unique_ptr<filters::UserFilter>> owned;
    std::vector<Inbox> inbox;
    std::unique_ptr<Counter[]> counters;
    // The batch's blocks: those from the input, then those filters emitted.
    // Emitted ones go in a deque so that a filter emitting while it holds a
    // reference to its input block keeps a valid reference.
    std::vector<Block> input_blocks;
    std::deque<Block> emitted;
    Block& block(std::uint32_t id) {
      return id < input_blocks.size() ? input_blocks[id] : emitted[id - input_blocks.size()];
    }
    const Block& block(std::uint32_t id) const { return const_cast<Worker*>(this)->block(id); }
    std::size_t block_count() const { return input_blocks.size() + emitted.size(); }
    std::vector<std::uint32_t> mark, stamp, best, best_classifying, count;
    Arena arena;
    NodeEmitter emitter{*this};
    std::mutex batch_lock;  // held while a batch runs, so stats() reads filters safely
    std::uint64_t batches = 0;
    // The engine's clock follows the blocks: a capture replayed from the
    // past must not look idle to timeouts. Time is the newest block's
    // timestamp plus the wall time since it came.
    std::uint64_t last_ts = 0, last_wall = 0;
    std::uint64_t now(std::uint64_t wall) const {
      return last_ts == 0 ? wall : last_ts + (wall - std::min(wall, last_wall));
    }

    void size_marks(std::size_t n) {
      if (mark.size() >= n) return;
      const std::size_t size = std::max<std::size_t>(n, 2 * mark.size());
      for (auto* v : {&mark, &stamp, &best, &best_classifying, &count})
        v->resize(size, 0);
    }
    // Input blocks of a batch: copied in one go, marks cleared.
    void set_input(std::span<const Block> in) {
      input_blocks.assign(in.begin(), in.end());
      size_marks(in.size());
      std::fill_n(mark.begin(), in.size(), 0);
      std::fill_n(stamp.begin(), in.size(), 0);
    }
    // Per node: whether its filter reads headers (UserFilter::reads_headers).
    std::vector<bool> needs_headers;
    // Block `id`, its headers parsed once, on the first filter that needs
    // them, into the batch's arena.
    const Block& with_headers(std::uint32_t id) {
      static_assert(std::is_trivially_destructible_v<filters::ParsedPacket> &&
                    alignof(filters::ParsedPacket) <= 16);
      Block& b = block(id);
      if (b.kind == BlockKind::packet && b.parsed == nullptr)
        b.parsed = ::new (arena.allocate(sizeof(filters::ParsedPacket)).data())
            filters::ParsedPacket(filters::parse_packet(b.data, b.wire_len));
      return b;
    }
    std::uint32_t add_emitted(const Block& b) {
      emitted.push_back(b);
      const auto id = static_cast<std::uint32_t>(block_count() - 1);
      size_marks(block_count());
      mark[id] = 0;
      stamp[id] = 0;
      return id;
    }
  };

  std::vector<NodeSpec> nodes;  // userspace nodes, topological order
  std::vector<EntrySpec> entries;
  std::vector<EngineEntry> entry_names;
  std::vector<std::string> source_ids;                // per entry, when it is a source's
  std::vector<std::unique_ptr<SharedFilter>> shared;  // per node (null: per worker)
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<BlockInput>> inputs;
  EngineOptions options;

  std::atomic<bool> stop_flag{false};
  int stop_event = -1;  // eventfd: stop() wakes an input loop asleep in Waiter::wait
  Impl() : stop_event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~Impl() {
    if (stop_event >= 0) ::close(stop_event);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  void clear_stop_event() const {
    if (stop_event < 0) return;
    std::uint64_t v = 0;
    [[maybe_unused]] const auto n = ::read(stop_event, &v, sizeof v);
  }
  std::atomic<bool> is_running{false};
  std::atomic<std::uint64_t> blocks_in{0}, ring_lost{0};
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<DBuf>> rings;  // workers > 1: one per worker

  // Construction, in the constructor's order: the userspace nodes and how
  // blocks move between them, where blocks enter, then the filters.
  void add_nodes(const compiler::RequestDag& dag, const std::vector<std::size_t>& order);
  void link_children(const compiler::RequestDag& dag, const std::vector<std::size_t>& order,
                     const std::vector<std::uint32_t>& index, const std::vector<bool>& user);
  void fuse_chains(const std::vector<bool>& entered);
  void add_entries(const compiler::RequestDag& dag, const std::vector<std::size_t>& order,
                   const std::vector<std::uint32_t>& index, const std::vector<bool>& user,
                   std::vector<EngineEntry> given);
  void make_filters();
  void add_source_inputs();

  inline void deliver(Worker& w, std::uint32_t node, std::uint32_t block, bool accepted,
                      std::uint16_t cls) {
    const NodeSpec& spec = nodes[node];
    if (spec.fused_child != kNoNode) {
      if (spec.children[0].takes(accepted, cls))
        run_block(w, spec.fused_child, block, accepted ? cls : std::uint16_t{0});
      return;
    }
    if (spec.one_plain_child) {
      if (accepted)
        w.inbox[spec.children[0].node].push({block, spec.children[0].input, cls, spec.classifying});
      return;
    }
    const bool classifying = accepted && spec.classifying;
    for (const Child& c : spec.children)
      if (c.takes(accepted, cls))
        w.inbox[c.node].push(
            {block, c.input, accepted ? cls : std::uint16_t{0}, classifying && !c.rejected});
  }

  // One block through filter node `n` (not synthetic), then on to its
  // children.
  void run_block(Worker& w, std::uint32_t n, std::uint32_t b, std::uint16_t in_cls) {
    const NodeSpec& spec = nodes[n];
    filters::UserFilter* f = shared[n] ? shared[n]->filter.get() : w.filters[n];
    Counter& ctr = w.counters[n];
    const Block& block = w.needs_headers[n] ? w.with_headers(b) : w.block(b);
    Counter::add(ctr.blocks, 1);
    // Bytes on the wire, as the kernel's counters and `count` have them.
    Counter::add(ctr.bytes, block.wire());
    w.emitter.begin(n);
    w.emitter.in_cls_ = in_cls;
    f->process(block, w.emitter);
    const bool accepted = w.emitter.accepted_, emitted = w.emitter.emitted_;
    const std::uint16_t cls = w.emitter.cls_;
    if (accepted) {
      Counter::add(ctr.accepted, 1);
      deliver(w, n, b, true, cls);
    } else if (!emitted && spec.kind == Kind::filter) {
      deliver(w, n, b, false, 0);
    }
  }

  enum class Phase : std::uint8_t { blocks, tick, finish };

  // Runs the worker's current blocks (already in its blocks and the entry
  // inboxes) through every node; `phase` adds the filters' tick or finish.
  void run_nodes(Worker& w, Phase phase, std::uint64_t now_ns) {
    for (std::uint32_t n = 0; n < nodes.size(); ++n) {
      const NodeSpec& spec = nodes[n];
      auto& inbox = w.inbox[n];
      Counter& ctr = w.counters[n];
      const std::uint32_t me = n + 1;
      // Shared filters get their tick and finish from the first worker only.
      const bool hooks = phase != Phase::blocks && (!shared[n] || &w == workers[0].get());
      if (inbox.empty() && !hooks) continue;
      switch (spec.kind) {
        case Kind::source:
          break;
        case Kind::filter:
        case Kind::transform:
        case Kind::sink: {
          filters::UserFilter* f = w.filters[n];
          std::unique_lock<std::mutex> guard;
          if (shared[n]) {
            f = shared[n]->filter.get();
            // One worker: nobody else calls it, except stats(), which the
            // batch lock keeps out.
            if (workers.size() > 1) guard = std::unique_lock(shared[n]->lock);
          }
          const bool dedupe = spec.dedupe;
          for (std::size_t i = 0; i < inbox.size(); ++i) {
            const std::uint32_t b = inbox[i].block;
            if (dedupe) {
              if (w.mark[b] == me) continue;  // reached through several edges: once
              w.mark[b] = me;
            }
            run_block(w, n, b, inbox[i].cls);
          }
          if (hooks) {
            w.emitter.begin(n);
            if (phase == Phase::tick)
              f->tick(now_ns, w.emitter);
            else
              f->finish(w.emitter);
          }
          break;
        }
        case Kind::union_node:
        case Kind::intersect_node: {
          // Pass 1: per block, the first input (edge order) that delivered,
          // the first classifying one, and how many delivered.
          for (std::size_t i = 0; i < inbox.size(); ++i) {
            const Item& it = inbox[i];
            const std::uint32_t b = it.block;
            if (w.stamp[b] != me) {
              w.stamp[b] = me;
              w.best[b] = static_cast<std::uint32_t>(i);
              w.best_classifying[b] = kNoNode;
              w.count[b] = 0;
            }
            ++w.count[b];
            if (it.input < inbox[w.best[b]].input) w.best[b] = static_cast<std::uint32_t>(i);
            if (it.classifying &&
                (w.best_classifying[b] == kNoNode || it.input < inbox[w.best_classifying[b]].input))
              w.best_classifying[b] = static_cast<std::uint32_t>(i);
          }
          std::uint64_t blocks = 0, bytes = 0, accepted = 0;
          const auto n_inputs = static_cast<std::uint32_t>(spec.input_classifies.size());
          for (const Item& it : inbox) {
            const std::uint32_t b = it.block;
            if (w.mark[b] == me) continue;
            w.mark[b] = me;
            ++blocks;
            bytes += w.block(b).wire();
            if (spec.kind == Kind::union_node) {
              ++accepted;
              deliver(w, n, b, true, inbox[w.best[b]].cls);
            } else if (w.count[b] >= n_inputs) {
              ++accepted;
              const std::uint32_t c = w.best_classifying[b];
              deliver(w, n, b, true, c == kNoNode ? std::uint16_t{0} : inbox[c].cls);
            } else {
              deliver(w, n, b, false, 0);
            }
          }
          Counter::add(ctr.blocks, blocks);
          Counter::add(ctr.bytes, bytes);
          Counter::add(ctr.accepted, accepted);
          break;
        }
      }
      inbox.clear();
    }
  }

  // One batch from an input, on worker `w`.
  std::size_t run_batch(Worker& w, std::span<const Block> in, std::span<const std::uint32_t> mask,
                        std::uint64_t now_ns) {
    std::lock_guard guard(w.batch_lock);
    begin_batch(w);
    w.set_input(in);
    std::uint64_t newest = 0;
    for (const Block& b : in)
      newest = std::max(newest, b.ts_ns);
    if (newest > w.last_ts) {
      w.last_ts = newest;
      w.last_wall = realtime_ns();
    }
    for (std::size_t i = 0; i < in.size(); ++i) {
      const auto b = static_cast<std::uint32_t>(i);
      for (std::uint32_t bits = mask[i]; bits != 0; bits &= bits - 1) {
        const auto e = static_cast<std::uint32_t>(__builtin_ctz(bits));
        if (e >= entries.size()) continue;
        const EntrySpec& entry = entries[e];
        if (entry.source) {
          Counter& ctr = w.counters[entry.node];
          Counter::add(ctr.blocks, 1);
          Counter::add(ctr.bytes, in[i].wire());
          Counter::add(ctr.accepted, 1);
          deliver(w, entry.node, b, true, 0);
        } else {
          w.inbox[entry.node].push({b, entry.input, 0, false});
        }
      }
    }
    run_nodes(w, Phase::blocks, now_ns);
    ++w.batches;
    return in.size();
  }

  void begin_batch(Worker& w) {
    w.input_blocks.clear();
    w.emitted.clear();
    w.arena.reset();
  }

  // `clock_ns`: the time filters are given (see Worker::now).
  void run_phase(Worker& w, Phase phase, std::uint64_t clock_ns) {
    std::lock_guard guard(w.batch_lock);
    begin_batch(w);
    run_nodes(w, phase, clock_ns);
  }

  // Shared filters tick and finish once, on worker 0.
  // From the loops: each worker at its own clock.
  void tick_all_wall(std::uint64_t wall_ns) {
    for (auto& w : workers)
      run_phase(*w, Phase::tick, w->now(wall_ns));
  }

  // Sleeps on every open input's wait_fd() and the stop event at once.
  // Without an fd for some input (a timed replay) it cannot: ready() is
  // false and the loops wait in that input's receive() instead.
  class Waiter {
   public:
    Waiter(const std::vector<std::unique_ptr<BlockInput>>& inputs, int stop_event) {
      for (const auto& in : inputs)
        if (!in->done() && in->wait_fd() < 0) return;
      epoll_ = epoll_create1(EPOLL_CLOEXEC);
      if (epoll_ < 0) return;
      auto add = [&](int fd) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        return epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) == 0;
      };
      bool ok = stop_event < 0 || add(stop_event);
      for (const auto& in : inputs)
        ok = ok && (in->done() || add(in->wait_fd()));
      if (!ok) {
        ::close(epoll_);
        epoll_ = -1;
      }
    }
    ~Waiter() {
      if (epoll_ >= 0) ::close(epoll_);
    }
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    bool ready() const { return epoll_ >= 0; }
    void wait(int timeout_ms) const {
      epoll_event ev[4];
      epoll_wait(epoll_, ev, 4, timeout_ms);  // EINTR: the loop looks again
    }

   private:
    int epoll_ = -1;
  };

  // When the filters' next tick is due: soon while blocks come, less often
  // while none do (EngineOptions::idle_tick_interval).
  struct TickClock {
    std::uint64_t flush_ns, idle_ns, next;
    bool active = false;
    TickClock(std::uint64_t flush, std::uint64_t idle, std::uint64_t now)
        : flush_ns(flush), idle_ns(std::max(flush, idle)), next(now + flush) {}
    void saw_blocks(std::uint64_t now) {
      active = true;
      next = std::min(next, now + flush_ns);
    }
    bool due(std::uint64_t now) const { return now >= next; }
    void ticked(std::uint64_t now) {
      next = now + (active ? flush_ns : idle_ns);
      active = false;
    }
    int wait_ms(std::uint64_t now) const {
      return static_cast<int>(
          std::clamp<std::uint64_t>((next - std::min(next, now) + 999'999) / 1'000'000, 1, 1000));
    }
  };

  std::uint64_t idle_ns() const {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.idle_tick_interval).count());
  }

  // The single-worker loop: inputs polled in turn, run to completion.
  void loop_single() {
    Worker& w = *workers[0];
    std::vector<Block> batch(options.max_batch);
    std::vector<std::uint32_t> mask(options.max_batch);
    std::size_t want = options.adaptive_batch ? 1 : options.max_batch;
    const Waiter waiter(inputs, stop_event);
    TickClock tick(flush_ns(), idle_ns(), realtime_ns());
    auto take = [&](std::size_t got) {
      blocks_in.fetch_add(got, std::memory_order_relaxed);
      const std::uint64_t now = realtime_ns();
      tick.saw_blocks(now);
      run_batch(w, std::span(batch).first(got), std::span(mask).first(got), now);
      want = adapt(want, got);
    };
    while (!stop_flag.load(std::memory_order_relaxed)) {
      bool any_open = false, got_any = false;
      for (auto& input : inputs) {
        if (input->done()) continue;
        any_open = true;
        const std::size_t got =
            input->receive(std::span(batch).first(want), std::span(mask).first(want), 0);
        if (got == 0) continue;
        got_any = true;
        take(got);
      }
      if (!any_open) break;
      const std::uint64_t now = realtime_ns();
      if (tick.due(now)) {
        tick_all_wall(now);
        tick.ticked(now);
      }
      if (got_any) continue;
      // Nothing ready: sleep until an input or stop() wakes us, or the tick.
      if (waiter.ready()) {
        waiter.wait(tick.wait_ms(now));
        continue;
      }
      for (auto& input : inputs) {
        if (input->done()) continue;
        const std::size_t got =
            input->receive(std::span(batch).first(want), std::span(mask).first(want),
                           std::min(tick.wait_ms(now), 100));
        if (got > 0) take(got);
        break;
      }
    }
  }

  // The tick period while blocks come: the flush interval, or longer where
  // every filter asks for its ticks less often (UserFilter::tick_every_ns):
  // an engine that only writes captures then wakes once a second, not a
  // hundred times, unless a copy ring passes its wake-up mark.
  std::uint64_t flush_ns() const {
    const auto flush = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.flush_interval).count());
    return std::max(flush, filters_tick_ns);
  }
  std::uint64_t filters_tick_ns = 0;  // set once the filters are built

  std::size_t adapt(std::size_t want, std::size_t got) const {
    if (!options.adaptive_batch) return want;
    if (got == want) return std::min(options.max_batch, want * 2);
    if (got < want / 4) return std::max<std::size_t>(1, want / 2);
    return want;
  }

  // Workers > 1: the input loop hashes each block's flow to a worker ring.
  // Record: u64 ts_ns | u32 wire_len | u32 entry mask | frame bytes.
  static constexpr std::size_t kRecordHeader = 16;

  void loop_dispatch() {
    std::vector<Block> batch(options.max_batch);
    std::vector<std::uint32_t> mask(options.max_batch);
    std::vector<std::byte> record(kRecordHeader + 65536);
    const Waiter waiter(inputs, stop_event);
    while (!stop_flag.load(std::memory_order_relaxed)) {
      bool any_open = false;
      std::size_t total = 0;
      for (auto& input : inputs) {
        if (input->done()) continue;
        any_open = true;
        const std::size_t got = input->receive(batch, mask, total == 0 && !waiter.ready() ? 10 : 0);
        total += got;
        blocks_in.fetch_add(got, std::memory_order_relaxed);
        for (std::size_t i = 0; i < got; ++i) {
          const Block& b = batch[i];
          const filters::ParsedPacket p = b.parsed ? *b.parsed : filters::parse_packet(b.data);
          const std::size_t worker =
              filters::flow_hash(p, filters::HashFields::flow) % workers.size();
          const std::size_t len = std::min(b.data.size(), record.size() - kRecordHeader);
          std::memcpy(record.data(), &b.ts_ns, 8);
          std::memcpy(record.data() + 8, &b.wire_len, 4);
          std::memcpy(record.data() + 12, &mask[i], 4);
          if (len > 0) std::memcpy(record.data() + kRecordHeader, b.data.data(), len);
          const auto payload = std::span<const std::byte>(record).first(kRecordHeader + len);
          // Lossless while the engine runs: wait for the worker, but
          // never past a stop.
          while (!rings[worker]->write(payload, std::chrono::milliseconds(50)))
            if (stop_flag.load(std::memory_order_relaxed)) {
              ring_lost.fetch_add(1, std::memory_order_relaxed);
              break;
            }
        }
      }
      if (!any_open) break;
      // The workers tick on their own; this loop only waits for blocks.
      if (total == 0 && waiter.ready()) waiter.wait(static_cast<int>(idle_ns() / 1'000'000));
    }
    for (auto& r : rings)
      r->close();
  }

  void loop_worker(std::size_t index, DBuf::Reader reader) {
    Worker& w = *workers[index];
    std::vector<Block> batch(options.max_batch);
    std::vector<std::uint32_t> mask(options.max_batch);
    std::vector<RecordView> views(options.max_batch);
    TickClock tick(flush_ns(), idle_ns(), realtime_ns());
    for (;;) {
      // A batch of records in place: the blocks point into the ring until
      // complete() releases them all.
      const std::size_t got =
          reader.peek_batch(views, std::chrono::milliseconds(tick.wait_ms(realtime_ns())));
      if (got > 0) {
        tick.saw_blocks(realtime_ns());
        for (std::size_t i = 0; i < got; ++i) {
          const auto& d = views[i].data;
          Block& b = batch[i];
          b = Block{};
          std::memcpy(&b.ts_ns, d.data(), 8);
          std::memcpy(&b.wire_len, d.data() + 8, 4);
          std::memcpy(&mask[i], d.data() + 12, 4);
          b.data = std::span(reinterpret_cast<const std::uint8_t*>(d.data()) + kRecordHeader,
                             d.size() - kRecordHeader);
        }
        run_batch(w, std::span(batch).first(got), std::span(mask).first(got), realtime_ns());
        reader.complete(views[got - 1]);
      } else if (rings[index]->closed() && reader.try_peek_batch(views) == 0) {
        break;  // closed after its last record: a peek again returns the same records
      }
      const std::uint64_t now = realtime_ns();
      if (tick.due(now)) {
        run_phase(w, Phase::tick, w.now(now));
        tick.ticked(now);
      }
    }
  }

  void finish_all() {
    for (auto& w : workers)
      run_phase(*w, Phase::finish, w->now(realtime_ns()));
  }

  void run_blocking() {
    if (workers.size() == 1) {
      loop_single();
      finish_all();
      return;
    }
    rings.clear();
    std::vector<std::thread> pool;
    for (std::size_t i = 0; i < workers.size(); ++i) {
      RingOptions ro;
      ro.capacity = std::bit_ceil(std::max<std::size_t>(options.worker_ring_bytes, 1 << 18));
      ro.single_writer = true;  // the dispatching input loop
      rings.push_back(std::make_unique<DBuf>(DBuf::create(ro)));
    }
    for (std::size_t i = 0; i < workers.size(); ++i)
      pool.emplace_back([this, i, reader = rings[i]->open_reader()]() mutable {
        // Named, so that top -H and the tests tell the workers apart.
        pthread_setname_np(pthread_self(),
                           ("srl-worker-" + std::to_string(i)).substr(0, 15).c_str());
        loop_worker(i, std::move(reader));
      });
    loop_dispatch();
    for (auto& t : pool)
      t.join();
    finish_all();
  }
};

void Engine::Impl::NodeEmitter::emit(const Block& block, std::uint16_t cls) {
  emitted_ = true;
  const std::uint32_t b = w_.add_emitted(block);
  Counter::add(w_.counters[node_].accepted, 1);
  // A fused child runs now, inside the emitting filter's process(), and
  // takes the emitter over: the emitting node's state comes back after.
  const State saved = save();
  w_.engine->deliver(w_, node_, b, true, cls);
  restore(saved);
}

namespace {

std::string describe(const compiler::DagGraph& g, std::size_t v) {
  return "node " + g[v].id + " (" + std::string(g[v].filter_name()) + ")";
}

// The input edge index of (from, to) among to's in-edges.
std::optional<std::uint16_t> input_index(const compiler::DagGraph& g, std::size_t from,
                                         std::size_t to) {
  std::uint16_t k = 0;
  for (auto [it, end] = boost::in_edges(to, g); it != end; ++it, ++k)
    if (boost::source(*it, g) == from) return k;
  return std::nullopt;
}

bool runs_filter(const NodeSpec& s) {
  return s.kind == Kind::filter || s.kind == Kind::transform || s.kind == Kind::sink;
}

}  // namespace

Engine::Engine(const compiler::RequestDag& dag, const std::vector<bool>& in_user,
               std::vector<EngineEntry> entries, const EngineOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  m.options.max_batch = std::max<std::size_t>(1, options.max_batch);
  m.options.workers = std::max<std::size_t>(1, options.workers);
  // The userspace nodes in the DAG's numbering (dag.h): inputs first.
  if (!dag.numbered())
    throw std::invalid_argument("the DAG is not numbered in topological order (dag.h)");
  const std::size_t n = dag.node_count();
  std::vector<bool> user(n);
  std::vector<std::uint32_t> index(n, kNoNode);
  std::vector<std::size_t> order;
  for (std::size_t v = 0; v < n; ++v) {
    user[v] = in_user.empty() || (v < in_user.size() && in_user[v]);
    if (!user[v]) continue;
    index[v] = static_cast<std::uint32_t>(order.size());
    order.push_back(v);
  }
  m.add_nodes(dag, order);
  m.link_children(dag, order, index, user);
  std::vector<bool> entered(m.nodes.size(), false);
  for (const auto& e : entries) {
    const auto to = dag.find(e.to);
    if (to && index[*to] != kNoNode) entered[index[*to]] = true;
  }
  m.fuse_chains(entered);
  m.add_entries(dag, order, index, user, std::move(entries));
  m.make_filters();
  m.add_source_inputs();
}

void Engine::Impl::add_nodes(const compiler::RequestDag& dag,
                             const std::vector<std::size_t>& order) {
  const auto& g = dag.graph;
  for (std::size_t v : order) {
    const compiler::DagNode& dn = g[v];
    if (dn.filter == nullptr) throw std::invalid_argument(describe(g, v) + ": no filter");
    NodeSpec spec;
    spec.id = dn.id;
    spec.filter = std::string(dn.filter->name);
    const filters::FilterSpec& fs = *dn.filter;
    spec.config.spec = dn.filter;
    spec.config.options = dn.options;
    spec.config.node_id = dn.id;
    if (options.file_owner_of) spec.config.file_owner = options.file_owner_of(dn.id);
    // The bpf filter's program, from the DAG, while the filters are built
    // (they copy it; the DAG need not outlive the engine).
    if (dn.translation) spec.config.cbpf = &dn.translation->insns;
    if (fs.role == filters::Role::source)
      spec.kind = Kind::source;
    else if (fs.name == "union")
      spec.kind = Kind::union_node;
    else if (fs.name == "intersect")
      spec.kind = Kind::intersect_node;
    else if (fs.role == filters::Role::sink)
      spec.kind = Kind::sink;
    else
      spec.kind = fs.emits_new_blocks ? Kind::transform : Kind::filter;
    spec.shared = spec.kind == Kind::sink || fs.state == filters::State::global;
    spec.classifying = spec.kind != Kind::source && fs.max_class > 0;
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it) {
      const std::size_t from = boost::source(*it, g);
      spec.input_classifies.push_back(g[from].filter != nullptr && g[from].filter->max_class > 0);
    }
    spec.dedupe = spec.input_classifies.size() > 1;
    nodes.push_back(std::move(spec));
  }
}

void Engine::Impl::link_children(const compiler::RequestDag& dag,
                                 const std::vector<std::size_t>& order,
                                 const std::vector<std::uint32_t>& index,
                                 const std::vector<bool>& user) {
  const auto& g = dag.graph;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t v = order[i];
    for (auto [it, end] = boost::out_edges(v, g); it != end; ++it) {
      const std::size_t to = boost::target(*it, g);
      if (!user[to])
        throw std::invalid_argument(describe(g, v) + " runs in userspace but feeds " +
                                    describe(g, to) + ", which does not: blocks only move up");
      const auto& sel = g[*it].select;
      Child c{index[to], *input_index(g, v, to), sel.plain(), sel.rejected, sel};
      if (!sel.rejected && !sel.invert && sel.ranges.size() == 1) {
        c.one_range = true;
        c.lo = sel.ranges[0].lo;
        c.hi = sel.ranges[0].hi;
      }
      nodes[i].children.push_back(std::move(c));
    }
  }
}

// Chain links to fuse: the only child of a node, with no other input and
// no entry, that runs a filter; shared filters only with one worker (with
// more, their calls take a lock once per batch instead).
void Engine::Impl::fuse_chains(const std::vector<bool>& entered) {
  for (auto& node : nodes) {
    node.one_plain_child = node.children.size() == 1 && node.children[0].plain;
    if (node.children.size() != 1) continue;
    const std::uint32_t c = node.children[0].node;
    const NodeSpec& child = nodes[c];
    const bool lockless = !child.shared || options.workers == 1;
    if (runs_filter(child) && lockless && child.input_classifies.size() == 1 && !entered[c])
      node.fused_child = c;
  }
}

// Entries: the caller's (kernel exits), then one per userspace source; every
// edge from outside into the userspace part needs one.
void Engine::Impl::add_entries(const compiler::RequestDag& dag,
                               const std::vector<std::size_t>& order,
                               const std::vector<std::uint32_t>& index,
                               const std::vector<bool>& user, std::vector<EngineEntry> given) {
  const auto& g = dag.graph;
  for (const auto& e : given) {
    const auto from = dag.find(e.from), to = dag.find(e.to);
    if (!from || !to || !user[*to] || user[*from])
      throw std::invalid_argument("entry " + e.from + " -> " + e.to +
                                  ": not an edge from outside the userspace part into it");
    const auto in = input_index(g, *from, *to);
    if (!in) throw std::invalid_argument("entry " + e.from + " -> " + e.to + ": no such edge");
    entries.push_back({index[*to], *in, false});
    source_ids.emplace_back();
  }
  entry_names = std::move(given);
  for (std::size_t i = 0; i < order.size(); ++i)
    if (nodes[i].kind == Kind::source) {
      entries.push_back({static_cast<std::uint32_t>(i), 0, true});
      source_ids.push_back(nodes[i].id);
      entry_names.push_back({nodes[i].id, nodes[i].id});
    }
  if (entries.size() > kMaxEntries)
    throw std::invalid_argument("the userspace part has " + std::to_string(entries.size()) +
                                " entries; at most 32 are supported");
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t v = order[i];
    for (auto [it, end] = boost::in_edges(v, g); it != end; ++it) {
      const std::size_t from = boost::source(*it, g);
      if (user[from]) continue;
      const bool covered = std::any_of(
          entry_names.begin(), entry_names.end(),
          [&](const EngineEntry& e) { return e.from == g[from].id && e.to == g[v].id; });
      if (!covered)
        throw std::invalid_argument("the edge " + g[from].id + " -> " + g[v].id +
                                    " into userspace has no entry (no channel carries it)");
    }
  }
}

// Implementations: shared ones once, the others once per worker; then the
// longest tick period all of them accept (0: any filter wants the engine's
// own).
void Engine::Impl::make_filters() {
  shared.resize(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (runs_filter(nodes[i]) && nodes[i].shared) {
      shared[i] = std::make_unique<SharedFilter>();
      shared[i]->filter = filters::make_user_filter(nodes[i].config);
    }
  for (std::size_t k = 0; k < options.workers; ++k) {
    auto w = std::make_unique<Worker>();
    w->engine = this;
    w->filters.assign(nodes.size(), nullptr);
    w->inbox.resize(nodes.size());
    for (auto& inbox : w->inbox)
      inbox.reserve(options.max_batch * 2);
    w->counters = std::make_unique<Counter[]>(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (runs_filter(nodes[i]) && !nodes[i].shared) {
        w->owned.push_back(filters::make_user_filter(nodes[i].config));
        w->filters[i] = w->owned.back().get();
      }
      const filters::UserFilter* f = shared[i] ? shared[i]->filter.get() : w->filters[i];
      w->needs_headers.push_back(f == nullptr || f->reads_headers());
    }
    workers.push_back(std::move(w));
  }
  std::uint64_t every = UINT64_MAX;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const filters::UserFilter* f = shared[i] ? shared[i]->filter.get() : workers[0]->filters[i];
    if (f != nullptr) every = std::min(every, f->tick_every_ns());
  }
  filters_tick_ns = every == UINT64_MAX ? 0 : std::min<std::uint64_t>(every, 1'000'000'000);
  for (auto& node : nodes)
    node.config.cbpf = nullptr;
}

// pcapin sources read their files themselves.
void Engine::Impl::add_source_inputs() {
  for (std::size_t e = 0; e < entries.size(); ++e) {
    if (!entries[e].source) continue;
    const NodeSpec& s = nodes[entries[e].node];
    if (filters::has_user_source(s.filter))
      inputs.push_back(source_input(filters::make_user_source(s.config),
                                    static_cast<std::uint32_t>(e), s.id + " (" + s.filter + ")"));
  }
}

Engine::~Engine() {
  if (impl_) {
    stop();
    wait();
  }
}

std::uint32_t Engine::entry(std::string_view from, std::string_view to) const {
  for (std::size_t i = 0; i < impl_->entry_names.size(); ++i)
    if (impl_->entry_names[i].from == from && impl_->entry_names[i].to == to &&
        !impl_->entries[i].source)
      return static_cast<std::uint32_t>(i);
  throw std::invalid_argument("no entry " + std::string(from) + " -> " + std::string(to));
}

std::uint32_t Engine::source_entry(std::string_view source_id) const {
  for (std::size_t i = 0; i < impl_->source_ids.size(); ++i)
    if (impl_->source_ids[i] == source_id) return static_cast<std::uint32_t>(i);
  throw std::invalid_argument("no userspace source " + std::string(source_id));
}

std::vector<std::string> Engine::rx_nodes() const {
  std::vector<std::string> out;
  for (const auto& n : impl_->nodes)
    if (n.kind == Kind::source && n.filter == "rx") out.push_back(n.id);
  return out;
}

void Engine::add_input(std::unique_ptr<BlockInput> input) {
  if (impl_->is_running) throw std::logic_error("add_input after start");
  impl_->inputs.push_back(std::move(input));
}

void Engine::run() {
  impl_->stop_flag = false;
  impl_->clear_stop_event();
  impl_->is_running = true;
  impl_->run_blocking();
  impl_->is_running = false;
}

void Engine::start() {
  impl_->stop_flag = false;
  impl_->clear_stop_event();
  impl_->is_running = true;
  impl_->threads.emplace_back([this] {
    // Named as the threads it starts are: one worker runs here; with
    // several, this thread dispatches blocks to them.
    pthread_setname_np(pthread_self(),
                       impl_->workers.size() == 1 ? "srl-worker-0" : "srl-dispatch");
    impl_->run_blocking();
    impl_->is_running = false;
  });
}

void Engine::stop() {
  impl_->stop_flag = true;
  if (impl_->stop_event >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(impl_->stop_event, &one, sizeof one);
  }
}

void Engine::wait() {
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->threads.clear();
}

bool Engine::running() const {
  return impl_->is_running;
}

std::chrono::nanoseconds Engine::tick_interval() const {
  return std::chrono::nanoseconds(impl_->flush_ns());
}

EngineStats Engine::stats() const {
  const Impl& m = *impl_;
  EngineStats s;
  for (std::size_t i = 0; i < m.nodes.size(); ++i) {
    EngineNodeStats ns{m.nodes[i].id, m.nodes[i].filter, 0, 0, 0, {}, {}, false, {}};
    for (const auto& w : m.workers) {
      ns.blocks += w->counters[i].blocks.load(std::memory_order_relaxed);
      ns.bytes += w->counters[i].bytes.load(std::memory_order_relaxed);
      ns.accepted += w->counters[i].accepted.load(std::memory_order_relaxed);
    }
    // Filter counters: summed by name over the instances.
    auto add_extra = [&](const filters::FilterStats& fs) {
      for (const auto& counter : fs) {
        auto it = std::find_if(ns.extra.begin(), ns.extra.end(),
                               [&](const auto& p) { return p.first == counter.first; });
        if (it == ns.extra.end())
          ns.extra.push_back(counter);
        else
          it->second += counter.second;
      }
    };
    if (m.shared[i]) {
      // The workers' order: their batch lock, then the shared filter's.
      std::lock_guard batch(m.workers[0]->batch_lock);
      std::lock_guard guard(m.shared[i]->lock);
      add_extra(m.shared[i]->filter->stats());
      ns.failure = m.shared[i]->filter->failure();
      ns.by_class = m.shared[i]->filter->counts_by_class();
      ns.classes = m.shared[i]->filter->class_tallies();
    } else {
      for (const auto& w : m.workers)
        if (w->filters[i] != nullptr) {
          std::lock_guard guard(w->batch_lock);
          add_extra(w->filters[i]->stats());
          if (ns.failure.empty()) ns.failure = w->filters[i]->failure();
        }
    }
    s.nodes.push_back(std::move(ns));
  }
  for (const auto& w : m.workers) {
    std::lock_guard guard(w->batch_lock);
    s.batches += w->batches;
  }
  s.blocks_in = m.blocks_in.load(std::memory_order_relaxed);
  s.ring_lost = m.ring_lost.load(std::memory_order_relaxed);
  for (const auto& in : m.inputs)
    s.inputs.emplace_back(in->name(), in->stats());
  return s;
}

std::size_t Engine::push(std::span<const filters::Block> blocks,
                         std::span<const std::uint32_t> entries, std::uint64_t now_ns) {
  return impl_->run_batch(*impl_->workers[0], blocks, entries, now_ns);
}

void Engine::tick(std::uint64_t now_ns) {
  for (auto& w : impl_->workers)
    impl_->run_phase(*w, Impl::Phase::tick, now_ns);
}

void Engine::finish() {
  impl_->finish_all();
}

namespace {

class SourceInput final : public BlockInput {
 public:
  SourceInput(std::unique_ptr<filters::UserSource> source, std::uint32_t entry, std::string name)
      : source_(std::move(source)), entry_(entry), name_(std::move(name)) {}

  std::size_t receive(std::span<Block> out, std::span<std::uint32_t> entries,
                      int timeout_ms) override {
    std::uint64_t now = realtime_ns();
    std::size_t got = source_->poll(out, now);
    if (got == 0 && timeout_ms > 0 && !source_->done()) {
      // Sleep until the next block is due, at most the timeout.
      const std::uint64_t due = source_->next_due_ns();
      const std::uint64_t limit = now + static_cast<std::uint64_t>(timeout_ms) * 1'000'000u;
      const std::uint64_t until = due > now ? std::min(due, limit) : limit;
      std::this_thread::sleep_for(std::chrono::nanoseconds(until - now));
      got = source_->poll(out, realtime_ns());
    }
    const std::uint32_t bit = std::uint32_t{1} << entry_;
    std::fill_n(entries.begin(), got, bit);
    return got;
  }
  bool done() const override { return source_->done(); }
  std::string name() const override { return name_; }
  filters::FilterStats stats() const override { return source_->stats(); }

 private:
  std::unique_ptr<filters::UserSource> source_;
  std::uint32_t entry_;
  std::string name_;
};

}  // namespace

std::unique_ptr<BlockInput> source_input(std::unique_ptr<filters::UserSource> source,
                                         std::uint32_t entry, std::string name) {
  return std::make_unique<SourceInput>(std::move(source), entry, std::move(name));
}

}  // namespace srl::runtime
