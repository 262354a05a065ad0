// The userspace engine against the reference DAG evaluator: per-node
// counters equal, block by block, for whole requests (selectors, `!>`,
// union, intersect), at every batch size and with several workers; entries
// from a kernel part; the errors of a part that cannot run; and the file
// owner each node's filter is given.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "packet_corpus.h"
#include "reference_dag.h"
#include "srl/compiler/compiler.h"
#include "srl/runtime/engine.h"
#include "temp_dir.h"

using namespace srl;
using filters::Block;
using testing::Bytes;

namespace {

compiler::RequestDag compile(const std::string& text) {
  auto r = compiler::compile(text);
  if (!r.ok()) FAIL(r.diagnostics.render(*r.source));
  return std::move(*r.dag);
}

struct Corpus {
  std::vector<testing::TestFrame> frames = testing::standard_corpus();
  std::vector<filters::ParsedPacket> parsed;
  std::vector<Block> blocks;
  // `parse`: the blocks come with their headers (AF_XDP, packet sockets,
  // pcapin) or without (a copy ring's: the engine parses on demand).
  explicit Corpus(bool parse = true) {
    parsed.reserve(frames.size());
    for (const auto& f : frames) {
      parsed.push_back(filters::parse_packet(f.bytes));
      Block b;
      b.data = f.bytes;
      b.wire_len = static_cast<std::uint32_t>(f.bytes.size());
      if (parse) b.parsed = &parsed.back();
      blocks.push_back(b);
    }
  }
};

struct Expected {
  std::uint64_t blocks = 0, accepted = 0;
};

// What the reference evaluator says each node sees over the corpus.
std::map<std::string, Expected> reference_counts(const compiler::RequestDag& dag,
                                                 const Corpus& corpus, std::size_t passes = 1) {
  reference::ReferenceDag ref(dag);
  std::map<std::string, Expected> out;
  for (std::size_t i = 0; i < passes * corpus.frames.size(); ++i) {
    const auto& f = corpus.frames[i % corpus.frames.size()];
    const auto r = ref.run(f.bytes);
    for (std::size_t v = 0; v < r.nodes.size(); ++v) {
      auto& e = out[dag.graph[v].id];
      e.blocks += r.nodes[v].reached;
      e.accepted += r.nodes[v].reached && r.nodes[v].accepted;
    }
  }
  return out;
}

void check_counts(const runtime::EngineStats& s, const std::map<std::string, Expected>& want) {
  for (const auto& n : s.nodes) {
    CAPTURE(n.id);
    CAPTURE(n.filter);
    const auto& e = want.at(n.id);
    CHECK(n.blocks == e.blocks);
    // Sinks and terminals accept nothing further; the others as the reference.
    if (n.filter != "drop" && n.filter != "pass") CHECK(n.accepted == e.accepted);
  }
}

const char* const kRequests[] = {
    "(tcp) > (port, which=dst) 22,80> (count)",
    "(ipv4) > (udp) > (port, which=dst) 53> (count)",
    "(eth) > (vlan) 10:20> (count)",
    "(tcp) !> (udp) > (count)",
    "(tcp) or (udp) > (count)",
    "(tcp) and (port) 22> (count)",
    "(ip) > (proto) 6> (hash, buckets=4) 0,2> (len, min=60) > (count)",
    "(bpf, expr=\"tcp[13] & 2 != 0\") > (count)",
    "(addr, net=192.0.2.0/24) > (sample, n=2) > (drop)",
};

}  // namespace

TEST_CASE("engine: per-node counters equal the reference DAG, at batch sizes 1 to 64") {
  for (const bool parse : {true, false})
    for (const char* text : kRequests) {
      const Corpus corpus(parse);
      CAPTURE(parse);
      CAPTURE(text);
      const auto dag = compile(text);
      const auto want = reference_counts(dag, corpus);
      for (std::size_t batch : {std::size_t{1}, std::size_t{7}, std::size_t{32}, std::size_t{64}}) {
        CAPTURE(batch);
        runtime::EngineOptions o;
        o.max_batch = batch;
        runtime::Engine engine(dag, {}, {}, o);
        const auto rx = engine.rx_nodes();
        REQUIRE(rx.size() == 1);
        const std::uint32_t bit = std::uint32_t{1} << engine.source_entry(rx[0]);
        for (std::size_t at = 0; at < corpus.blocks.size(); at += batch) {
          const std::size_t n = std::min(batch, corpus.blocks.size() - at);
          const std::vector<std::uint32_t> mask(n, bit);
          engine.push(std::span(corpus.blocks).subspan(at, n), mask, 0);
        }
        check_counts(engine.stats(), want);
      }
    }
}

namespace {

// A bounded input over the corpus, handed out in batches.
class CorpusInput final : public runtime::BlockInput {
 public:
  CorpusInput(const Corpus& c, std::uint32_t entry, std::size_t passes)
      : c_(c), bit_(std::uint32_t{1} << entry), left_(passes * c.blocks.size()) {}
  std::size_t receive(std::span<Block> out, std::span<std::uint32_t> entries, int) override {
    std::size_t n = 0;
    while (n < out.size() && left_ > 0) {
      out[n] = c_.blocks[pos_];
      entries[n++] = bit_;
      pos_ = (pos_ + 1) % c_.blocks.size();
      --left_;
    }
    return n;
  }
  bool done() const override { return left_ == 0; }
  std::string name() const override { return "corpus"; }

 private:
  const Corpus& c_;
  std::uint32_t bit_;
  std::size_t left_;
  std::size_t pos_ = 0;
};

}  // namespace

TEST_CASE("engine: several workers split by flow hash count what one worker counts") {
  const Corpus corpus;
  for (const char* text : kRequests) {
    CAPTURE(text);
    const auto dag = compile(text);
    const auto want = reference_counts(dag, corpus, 3);
    for (std::size_t workers : {std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
      CAPTURE(workers);
      runtime::EngineOptions o;
      o.workers = workers;
      o.worker_ring_bytes = 1 << 18;
      runtime::Engine engine(dag, {}, {}, o);
      engine.add_input(
          std::make_unique<CorpusInput>(corpus, engine.source_entry(engine.rx_nodes()[0]), 3));
      engine.run();
      const auto s = engine.stats();
      CHECK(s.blocks_in == 3 * corpus.blocks.size());
      CHECK(s.ring_lost == 0);
      // sample keeps global state: shared, so even its counts are exact.
      check_counts(s, want);
    }
  }
}

TEST_CASE("engine: blocks from a kernel part enter at the exits' edges") {
  const Corpus corpus;
  // n0 rx, n1 tcp in the kernel; n2 port, n3 count in userspace.
  const auto dag = compile("(tcp) > (port, which=dst) 80> (count)");
  const auto want = reference_counts(dag, corpus);
  std::vector<bool> in_user(dag.node_count(), false);
  in_user[*dag.find("n2")] = in_user[*dag.find("n3")] = true;
  runtime::Engine engine(dag, in_user, {{"n1", "n2"}}, {});
  CHECK(engine.entry("n1", "n2") == 0);
  CHECK_THROWS_WITH(engine.entry("n0", "n2"), "no entry n0 -> n2");
  // The kernel sends up what tcp accepted: the reference says which.
  reference::ReferenceDag ref(dag);
  std::vector<Block> up;
  for (std::size_t i = 0; i < corpus.frames.size(); ++i)
    if (ref.run(corpus.frames[i].bytes).nodes[*dag.find("n1")].accepted)
      up.push_back(corpus.blocks[i]);
  REQUIRE(!up.empty());
  const std::vector<std::uint32_t> mask(up.size(), 1);
  engine.push(up, mask, 0);
  const auto s = engine.stats();
  REQUIRE(s.nodes.size() == 2);
  CHECK(s.nodes[0].id == "n2");
  CHECK(s.nodes[0].blocks == want.at("n2").blocks);
  CHECK(s.nodes[0].accepted == want.at("n2").accepted);
  CHECK(s.nodes[1].blocks == want.at("n3").blocks);
}

TEST_CASE("engine: ticks as often as its most demanding filter asks, at most once a second") {
  using std::chrono::milliseconds;
  testing::TempDir dir;
  const auto user_part = [&](const std::string& text, std::size_t kernel_nodes,
                             runtime::EngineOptions o = {}) {
    const auto dag = compile(text);
    std::vector<bool> in_user(dag.node_count(), true);
    for (std::size_t i = 0; i < kernel_nodes; ++i)
      in_user[*dag.find("n" + std::to_string(i))] = false;
    const std::string last = "n" + std::to_string(kernel_nodes - 1);
    const std::string first = "n" + std::to_string(kernel_nodes);
    return std::make_unique<runtime::Engine>(dag, in_user,
                                             std::vector<runtime::EngineEntry>{{last, first}}, o);
  };
  const std::string pcap = "(pcap, file=\"" + (dir / "a.pcap") + "\")";
  // Captures only: their files are written out within a second anyway.
  CHECK(user_part("(udp) > " + pcap, 2)->tick_interval() == milliseconds(1000));
  // A filter that keeps the default needs the flush interval.
  CHECK(user_part("(udp) > (port) 53> " + pcap, 2)->tick_interval() == milliseconds(10));
  runtime::EngineOptions slow;
  slow.flush_interval = std::chrono::microseconds(50'000);
  CHECK(user_part("(udp) > (port) 53> " + pcap, 2, slow)->tick_interval() == milliseconds(50));
}

TEST_CASE("engine: a part that cannot run is refused with the node named") {
  const auto dag = compile("(tcp) > (port, which=dst) 80> (count)");
  std::vector<bool> in_user(dag.node_count(), true);
  in_user[*dag.find("n3")] = false;  // userspace port feeding a kernel count
  CHECK_THROWS_WITH(runtime::Engine(dag, in_user, {}, {}),
                    "node n2 (port) runs in userspace but feeds node n3 (count), which does not: "
                    "blocks only move up");
  std::vector<bool> upper(dag.node_count(), false);
  upper[*dag.find("n2")] = upper[*dag.find("n3")] = true;
  CHECK_THROWS_WITH(runtime::Engine(dag, upper, {}, {}),
                    "the edge n1 -> n2 into userspace has no entry (no channel carries it)");
  CHECK_THROWS_WITH(runtime::Engine(dag, upper, {{"n0", "n2"}}, {}),
                    "entry n0 -> n2: no such edge");
}

namespace {

// One HTTP connection, client 10.0.0.1:40000 -> server 10.0.0.2:80: the
// request in two segments delivered out of order, then the response, FINs.
std::vector<Bytes> http_connection() {
  using namespace srl::testing;
  const auto c = ip4("10.0.0.1"), s = ip4("10.0.0.2");
  auto to_server = [&](std::uint32_t seq, std::uint8_t flags, const Bytes& data) {
    return ethernet(0x0800) + ipv4(6, c, s, tcp_segment(40000, 80, seq, 5001, flags, data));
  };
  auto to_client = [&](std::uint32_t seq, std::uint8_t flags, const Bytes& data) {
    return ethernet(0x0800) + ipv4(6, s, c, tcp_segment(80, 40000, seq, 1001, flags, data));
  };
  const Bytes req1 = text("GET /index.html HT"), req2 = text("TP/1.1\r\nHost: a\r\n\r\n");
  const Bytes resp = text("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  namespace f = tcpflag;
  return {
      to_server(1000, f::syn, {}),
      to_client(5000, f::syn | f::ack, {}),
      to_server(1001, f::ack, {}),
      to_server(1001 + static_cast<std::uint32_t>(req1.size()), f::ack | f::psh, req2),
      to_server(1001, f::ack | f::psh, req1),
      to_client(5001, f::ack | f::psh, resp),
      to_server(1001 + static_cast<std::uint32_t>(req1.size() + req2.size()), f::ack | f::fin, {}),
      to_client(5001 + static_cast<std::uint32_t>(resp.size()), f::ack | f::fin, {}),
  };
}

}  // namespace

TEST_CASE("engine: a transform's chunks go on, its packets do not; protocols see streams") {
  const auto dag = compile(
      "(tcp) > (tcpstream, name=s) > (http) 1> (count, name=gets);"
      "(s) > (match, pattern=\"Host: a\") > (count, name=host);"
      "(s) !> (count, name=never)");
  runtime::Engine engine(dag, {}, {}, {});
  const auto frames = http_connection();
  std::vector<filters::ParsedPacket> parsed;
  parsed.reserve(frames.size());
  std::vector<Block> blocks;
  for (const auto& f : frames) {
    parsed.push_back(filters::parse_packet(f));
    Block b;
    b.data = f;
    b.wire_len = static_cast<std::uint32_t>(f.size());
    b.parsed = &parsed.back();
    blocks.push_back(b);
  }
  const std::vector<std::uint32_t> mask(blocks.size(), 1u << engine.source_entry("n0"));
  // One packet per batch, as a quiet link delivers them.
  for (std::size_t i = 0; i < blocks.size(); ++i)
    engine.push(std::span(blocks).subspan(i, 1), std::span(mask).subspan(i, 1), 0);
  engine.finish();
  const auto count_of = [&](std::string_view name) {
    for (const auto& n : engine.stats().nodes)
      if (dag.graph[*dag.find(n.id)].name == std::optional<std::string>(name)) return n.blocks;
    return std::uint64_t{999};
  };
  const auto s = engine.stats();
  std::uint64_t emitted = 0;
  for (const auto& n : s.nodes)
    if (n.filter == "tcpstream") {
      CHECK(n.blocks == frames.size());
      emitted = n.accepted;
    }
  // Four chunks: the request (one chunk once its gap filled), the response
  // and an empty end mark per direction (the bare FINs).
  CHECK(emitted == 4);
  // Class GET: the request, and the end marks, which carry the flow's last
  // method; the response starts with a status line: class 0.
  CHECK(count_of("gets") == 3);
  CHECK(count_of("host") == 1);   // "Host: a" spans the two segments: found once reassembled
  CHECK(count_of("never") == 0);  // a transform's input goes nowhere
}

TEST_CASE("engine: file_owner_of gives each node's filter its file owner") {
  if (::geteuid() != 0) {
    MESSAGE("not root: file ownership test skipped");
    return;
  }
  testing::TempDir dir;
  REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
  const std::string mine = dir / "nobody";
  REQUIRE(::mkdir(mine.c_str(), 0755) == 0);
  REQUIRE(::chown(mine.c_str(), 65534, 65534) == 0);

  const auto build = [&](const std::string& file) {
    const auto dag = compile("(tcp) > (pcap, file=\"" + file + "\")");
    std::vector<std::string> asked;
    runtime::EngineOptions o;
    o.file_owner_of = [&](std::string_view id) -> std::optional<filters::FileOwner> {
      asked.emplace_back(id);
      if (id == "n2") return filters::FileOwner{65534, 65534, {65534}};
      return std::nullopt;
    };
    runtime::Engine engine(dag, {}, {}, o);
    CHECK(asked == std::vector<std::string>{"n0", "n1", "n2"});
  };
  const std::string out = mine + "/out.pcap";
  build(out);
  struct stat st {};
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK(st.st_uid == 65534);
  const std::string denied = dir / "out.pcap";  // the directory is root's
  CHECK_THROWS_WITH(build(denied), ("node n2 (pcap): cannot open '" + denied +
                                    "' for writing as uid 65534: Permission denied")
                                       .c_str());
}

TEST_CASE("engine: a count by class tallies its input's classes as the reference does") {
  // Through one input, through a union (the class of the first input that
  // delivered), after `!>` (0), and with fewer keys than classes.
  const char* const requests[] = {
      "(ip) > (proto) > (count, by=class)",
      "(port, which=src) or (port, which=dst) 53> (count, by=class)",
      "(tcp) !> (count, by=class)",
      "(port, which=dst) > (count, by=class, keys=3)",
  };
  for (const char* text : requests) {
    CAPTURE(text);
    const Corpus corpus;
    const auto dag = compile(text);
    // The reference: per class the count node came with, and keys.
    reference::ReferenceDag ref(dag);
    std::size_t count_v = 0;
    for (std::size_t v = 0; v < dag.node_count(); ++v)
      if (dag.graph[v].filter_name() == "count") count_v = v;
    const auto keys =
        static_cast<std::size_t>(std::get<std::int64_t>(dag.graph[count_v].options.at("keys")));
    std::map<std::uint32_t, std::uint64_t> want;  // first `keys` classes seen, then other
    std::uint64_t reached = 0;
    for (const auto& f : corpus.frames) {
      const auto r = ref.run(f.bytes);
      if (!r.nodes[count_v].reached) continue;
      ++reached;
      std::uint32_t cls = r.nodes[count_v].in_cls;
      if (!want.contains(cls) && want.size() - want.count(filters::kOtherClasses) >= keys)
        cls = filters::kOtherClasses;
      ++want[cls];
    }
    REQUIRE(reached > 0);
    runtime::Engine engine(dag, {}, {}, {});
    const std::uint32_t bit = std::uint32_t{1} << engine.source_entry(engine.rx_nodes()[0]);
    const std::vector<std::uint32_t> mask(corpus.blocks.size(), bit);
    engine.push(corpus.blocks, mask, 0);
    const auto stats = engine.stats();
    const auto& n = stats.nodes[count_v];
    CHECK(n.by_class);
    std::map<std::uint32_t, std::uint64_t> got;
    for (const auto& t : n.classes)
      got[t.cls] = t.blocks;
    CHECK(got == want);
    if (std::string_view(text).find("keys=3") != std::string_view::npos)
      CHECK(got.contains(filters::kOtherClasses));
  }
}
