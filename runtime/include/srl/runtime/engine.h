// The userspace execution space: a run-to-completion engine per core.
//
// The engine runs the userspace-placed part of a Request DAG. A batch of
// blocks is taken from an input (a pcapin or rx source of the DAG, or a
// channel from the kernel such as AF_XDP) and pushed through the co-located
// filters by direct calls, node by node in topological order: a node takes
// its whole inbox of the batch, then hands what it accepted (or emitted) to
// the inboxes of the children whose edge selects the class. Queues appear
// only between cores: with several workers, an input loop splits blocks by a
// symmetric flow hash into one shared-memory ring (DBuf) per worker, so
// per-flow state (reassembly, detection) stays on one core.
//
// Semantics are docs/filter-semantics.md ("Edges", "Synthetic nodes") per
// block, plus, for transforms (filters that emit new blocks, like
// tcpstream): the input block is consumed (it goes down neither accepting
// nor `!>` edges) and each emitted block goes on as accepted with its class.
//
// Batch size adapts: an input is asked for as many blocks as the current
// batch size; a full batch doubles it (up to max_batch), a batch under a
// quarter full halves it, so a quiet link is served one block at a time
// with no added latency and a busy one in large batches. Filters get tick()
// (file flushes, idle timeouts) every flush_interval while blocks arrive (or
// less often, up to a second, where every filter asks for that:
// UserFilter::tick_every_ns) and every idle_tick_interval while none do: an idle engine wakes a few
// times a second, not a hundred (each wake-up costs CPU on a shared host). An idle loop sleeps on
// all its inputs' wait_fd()s at once, and stop() wakes it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "srl/compiler/dag.h"
#include "srl/filters/user.h"

namespace srl::runtime {

// Where blocks enter the engine: a block entering at entry i is delivered to
// node `to` as if by its input edge from node `from`. Entries made for the
// kernel's exits (kernel::KernelExit) keep the exit's bit as their index.
struct EngineEntry {
  std::string from;  // kernel node id (the edge's tail)
  std::string to;    // userspace node id
};

// A channel into the engine (AF_XDP from the kernel, a source, a ring).
class BlockInput {
 public:
  BlockInput() = default;
  virtual ~BlockInput() = default;
  BlockInput(const BlockInput&) = delete;
  BlockInput& operator=(const BlockInput&) = delete;

  // Up to out.size() blocks, each with the mask of entries it enters at
  // (bit i = entry i); waits up to `timeout_ms` when none is ready. The
  // blocks stay valid until the next receive().
  virtual std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> entries,
                              int timeout_ms) = 0;
  virtual bool done() const = 0;
  virtual std::string name() const = 0;
  virtual filters::FilterStats stats() const { return {}; }
  // A descriptor that polls readable when blocks may be ready (a socket, a
  // ring's epoll instance); -1 when there is none, and then the engine
  // waits in receive() instead (a timed replay).
  virtual int wait_fd() const { return -1; }
};

struct EngineOptions {
  std::size_t workers = 1;     // cores, each its own loop
  std::size_t max_batch = 32;  // blocks; 1 turns batching off
  bool adaptive_batch = true;  // else every batch asks for max_batch
  std::chrono::microseconds flush_interval{10'000};
  // The tick period after a period without any block (>= flush_interval).
  std::chrono::microseconds idle_tick_interval{100'000};
  std::size_t worker_ring_bytes = std::size_t{8} << 20;  // per worker, with workers > 1
  // The user whose files a node's filter creates or reads (see
  // filters::UserFilterConfig::file_owner); unset, or none for a node: the
  // process's own.
  std::function<std::optional<filters::FileOwner>(std::string_view node_id)> file_owner_of;
};

// Counters of one node, summed over the workers.
struct EngineNodeStats {
  std::string id;
  std::string filter;
  std::uint64_t blocks = 0;    // blocks that reached the node
  std::uint64_t bytes = 0;     // their bytes
  std::uint64_t accepted = 0;  // accepted (or, for transforms, emitted) blocks
  filters::FilterStats extra;  // the filter's own counters
  std::string failure;         // UserFilter::failure() of an instance, if any
  bool by_class = false;       // a count by class (shared: one instance)
  std::vector<filters::ClassTally> classes;
};

struct EngineStats {
  std::vector<EngineNodeStats> nodes;  // the userspace nodes, in DAG order
  std::uint64_t batches = 0;
  std::uint64_t blocks_in = 0;  // blocks taken from inputs
  std::uint64_t ring_lost = 0;  // blocks the worker rings could not take
  std::vector<std::pair<std::string, filters::FilterStats>> inputs;
};

class Engine {
 public:
  // Builds one implementation per userspace node (`in_user[v]`; empty: every
  // node) of `dag`: pcapin and rx sources of that part become inputs of their
  // own (rx needs the device: see add_input), and `entries` say where blocks
  // of other inputs enter. Throws std::invalid_argument naming the node when
  // one has no userspace implementation or bad options, or when a userspace
  // node feeds a node outside the userspace part.
  Engine(const compiler::RequestDag& dag, const std::vector<bool>& in_user,
         std::vector<EngineEntry> entries, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The entry index of the edge from->to; throws when there is none.
  std::uint32_t entry(std::string_view from, std::string_view to) const;
  // The entry a source node of the DAG (e.g. an rx placed in userspace)
  // feeds: blocks entering there go to its children as if it accepted them.
  std::uint32_t source_entry(std::string_view source_id) const;
  // The userspace `rx` nodes, which need an input from the caller.
  std::vector<std::string> rx_nodes() const;

  // Adds a channel (before start()).
  void add_input(std::unique_ptr<BlockInput> input);

  // Runs until every input is done (then finishes every filter: open
  // streams end, files close) or stop() is called. run() blocks in the
  // calling thread; start() runs in threads of its own and wait() joins.
  void run();
  void start();
  void stop();  // async-signal-unsafe; callable from any thread
  void wait();  // after start(): until done or stopped
  bool running() const;

  // Safe to call while running (counters are read with relaxed atomics).
  EngineStats stats() const;
  // How often filters get tick() while blocks come (see above).
  std::chrono::nanoseconds tick_interval() const;

  // One batch pushed through by hand (tests and benchmarks): blocks enter at
  // the entries in `entries`; returns the number of blocks processed.
  std::size_t push(std::span<const filters::Block> blocks, std::span<const std::uint32_t> entries,
                   std::uint64_t now_ns);
  void tick(std::uint64_t now_ns);
  void finish();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// A BlockInput over a filters::UserSource (pcapin, rx) entering at `entry`.
std::unique_ptr<BlockInput> source_input(std::unique_ptr<filters::UserSource> source,
                                         std::uint32_t entry, std::string name);

}  // namespace srl::runtime
