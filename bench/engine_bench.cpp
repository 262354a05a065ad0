// Per-block cost of the userspace engine on a 6-filter chain, by batch size,
// against the same six reference filters called in a plain loop (what a
// hand-written program does: no graph, no counters, no batching).
//
//   engine_bench [--blocks N] [--json]
//
// The chain is (eth) > (ip) > (tcp) > (port, which=dst) 80> (len, min=40)
// > (count), fed 64-byte TCP frames to port 80 that every filter accepts, so
// each block goes the whole way. Blocks enter at the rx node through
// Engine::push(), so the figure is the engine and filters alone, no channel.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/filters/reference.h"
#include "srl/runtime/engine.h"

using namespace srl;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kChain =
    "(eth) > (ip) > (tcp) > (port, which=dst) 80> (len, min=40) > (count)";

std::vector<std::uint8_t> tcp_frame(std::uint16_t sport) {
  std::vector<std::uint8_t> f(64, 0);
  f[12] = 0x08;  // IPv4
  f[14] = 0x45;
  f[16] = 0;
  f[17] = 50;  // total length
  f[22] = 64;
  f[23] = 6;  // TCP
  const std::uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {10, 0, 0, 2};
  std::memcpy(&f[26], src, 4);
  std::memcpy(&f[30], dst, 4);
  f[34] = static_cast<std::uint8_t>(sport >> 8);
  f[35] = static_cast<std::uint8_t>(sport);
  f[36] = 0;
  f[37] = 80;
  f[46] = 0x50;  // data offset 5
  f[47] = 0x18;
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t blocks = 2'000'000;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--blocks" && i + 1 < argc)
      blocks = std::stoul(argv[++i]);
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr, "usage: engine_bench [--blocks N] [--json]\n");
      return 2;
    }
  }
  auto compiled = compiler::compile(kChain);
  if (!compiled.ok()) return 1;
  const auto& dag = *compiled.dag;

  // 256 flows, parsed once (as a channel does when it hands a block over).
  std::vector<std::vector<std::uint8_t>> frames;
  for (std::uint16_t i = 0; i < 256; ++i)
    frames.push_back(tcp_frame(static_cast<std::uint16_t>(1024 + i)));
  std::vector<filters::ParsedPacket> parsed;
  std::vector<filters::Block> pool;
  for (const auto& f : frames)
    parsed.push_back(filters::parse_packet(f));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    filters::Block b;
    b.data = frames[i];
    b.wire_len = 64;
    b.parsed = &parsed[i];
    pool.push_back(b);
  }

  struct Row {
    std::string what;
    double ns_per_block;
  };
  std::vector<Row> rows;

  // The plain loop: the six filters called one after the other.
  {
    const char* names[] = {"eth", "ip", "tcp", "port", "len", "count"};
    std::vector<std::unique_ptr<filters::ReferenceFilter>> chain;
    for (const char* n : names) {
      std::map<std::string, filters::OptionValue> opts;
      if (std::string(n) == "port") opts["which"] = std::string("dst");
      if (std::string(n) == "len") opts["min"] = std::int64_t{40};
      chain.push_back(filters::make_reference_filter(n, opts));
    }
    std::vector<double> runs;
    std::uint64_t passed = 0;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < blocks; ++i) {
        const auto& b = pool[i & 255];
        bool ok = true;
        for (auto& f : chain) {
          const auto v = f->process(*b.parsed, b.data, 0);
          if (!v.accept || (f->name() == "port" && v.cls != 80)) {
            ok = false;
            break;
          }
        }
        passed += ok;
      }
      runs.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
                     static_cast<double>(blocks));
    }
    if (passed != 5 * blocks) return 1;
    rows.push_back({"plain loop, 6 reference filters", median(runs)});
  }

  for (std::size_t batch : {std::size_t{1}, std::size_t{4}, std::size_t{8}, std::size_t{32},
                            std::size_t{64}, std::size_t{256}}) {
    runtime::EngineOptions o;
    o.max_batch = batch;
    runtime::Engine engine(dag, {}, {}, o);
    const std::uint32_t bit = std::uint32_t{1} << engine.source_entry(engine.rx_nodes()[0]);
    const std::vector<std::uint32_t> mask(batch, bit);
    std::vector<double> runs;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < blocks; i += batch) {
        const std::size_t at = i & 255 & ~(batch - 1);
        const std::size_t n = std::min(batch, pool.size() - at);
        engine.push(std::span(pool).subspan(at, n), std::span(mask).first(n), 0);
      }
      runs.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
                     static_cast<double>(blocks));
    }
    // Every block must have reached the count.
    const auto s = engine.stats();
    if (s.nodes.back().blocks < 5 * blocks * 9 / 10) {
      std::fprintf(stderr, "engine_bench: count saw %llu of %zu blocks\n",
                   static_cast<unsigned long long>(s.nodes.back().blocks), 5 * blocks);
      return 1;
    }
    rows.push_back({"engine, batch " + std::to_string(batch), median(runs)});
  }

  if (json) {
    std::printf("[");
    for (std::size_t i = 0; i < rows.size(); ++i)
      std::printf("%s{\"what\": \"%s\", \"ns_per_block\": %.2f}", i ? ", " : "",
                  rows[i].what.c_str(), rows[i].ns_per_block);
    std::printf("]\n");
  } else {
    std::printf("%-34s %12s %10s\n", "run", "ns/block", "Mblocks/s");
    for (const auto& r : rows)
      std::printf("%-34s %12.1f %10.2f\n", r.what.c_str(), r.ns_per_block, 1e3 / r.ns_per_block);
  }
  return 0;
}
