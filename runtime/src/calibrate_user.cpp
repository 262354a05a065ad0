// Userspace filter calibration (calibrate_user.h).
#include "srl/runtime/calibrate_user.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/runtime/engine.h"

namespace srl::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// A TCP/IPv4 frame to port 80 carrying an HTTP request padded to `payload`
// bytes: every header filter accepts it, the protocol filters parse it.
std::vector<std::uint8_t> http_frame(std::uint16_t sport, std::size_t payload) {
  std::string body = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n";
  while (body.size() + 2 < payload)
    body += "X";
  body += "\r\n";
  std::vector<std::uint8_t> f(54 + body.size(), 0);
  f[12] = 0x08;
  f[14] = 0x45;
  const auto total = static_cast<std::uint16_t>(40 + body.size());
  f[16] = static_cast<std::uint8_t>(total >> 8);
  f[17] = static_cast<std::uint8_t>(total);
  f[22] = 64;
  f[23] = 6;
  const std::uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {10, 0, 0, 2};
  std::memcpy(&f[26], src, 4);
  std::memcpy(&f[30], dst, 4);
  f[34] = static_cast<std::uint8_t>(sport >> 8);
  f[35] = static_cast<std::uint8_t>(sport);
  f[37] = 80;
  f[46] = 0x50;
  f[47] = 0x18;
  std::memcpy(&f[54], body.data(), body.size());
  return f;
}

// The request measuring each filter, with neutral options.
const std::pair<const char*, const char*> kRequests[] = {
    {"eth", "(eth)"},
    {"vlan", "(vlan)"},
    {"ip", "(ip)"},
    {"ipv4", "(ipv4)"},
    {"ipv6", "(ipv6)"},
    {"tcp", "(tcp)"},
    {"udp", "(udp)"},
    {"icmp", "(icmp)"},
    {"arp", "(arp)"},
    {"proto", "(proto)"},
    {"port", "(port, which=dst)"},
    {"addr", "(addr, net=10.0.0.0/8)"},
    {"tcpflags", "(tcpflags)"},
    {"len", "(len, min=1)"},
    {"hash", "(hash, buckets=16)"},
    {"bpf", "(bpf, expr=\"tcp dst port 80\")"},
    {"count", "(count)"},
    {"sample", "(sample, n=2)"},
    {"rate", "(rate, pps=1000000000)"},
    {"tcpstream", "(tcpstream)"},
    {"http", "(http)"},
    {"ssh", "(ssh)"},
    {"rtsp", "(rtsp)"},
    {"dns", "(dns)"},
    {"tls", "(tls)"},
    {"match", "(match, pattern=\"example\\\\.com\")"},
};

struct Blocks {
  std::vector<std::vector<std::uint8_t>> frames;
  std::vector<filters::ParsedPacket> parsed;
  std::vector<filters::Block> blocks;
  Blocks(std::size_t payload) {
    // 256 flows, so per-flow tables see several flows.
    for (std::uint16_t i = 0; i < 256; ++i)
      frames.push_back(http_frame(static_cast<std::uint16_t>(1024 + i), payload));
    for (const auto& f : frames)
      parsed.push_back(filters::parse_packet(f));
    for (std::size_t i = 0; i < frames.size(); ++i) {
      filters::Block b;
      b.data = frames[i];
      b.wire_len = static_cast<std::uint32_t>(frames[i].size());
      b.parsed = &parsed[i];
      blocks.push_back(b);
    }
  }
};

// Median ns per block of the engine running `text` on `blocks`.
double measure(const std::string& text, const Blocks& blocks, const UserCalibration& o) {
  auto compiled = compiler::compile(text);
  if (!compiled.ok()) throw std::invalid_argument("cannot compile " + text);
  EngineOptions eo;
  eo.max_batch = o.batch;
  Engine engine(*compiled.dag, {}, {}, eo);
  const std::uint32_t bit = std::uint32_t{1} << engine.source_entry(engine.rx_nodes().at(0));
  const std::vector<std::uint32_t> mask(o.batch, bit);
  std::vector<double> runs;
  std::uint64_t ts = 1'700'000'000'000'000'000u;
  std::vector<filters::Block> batch(o.batch);
  for (int r = 0; r < std::max(1, o.rounds); ++r) {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < o.blocks; i += o.batch) {
      for (std::size_t k = 0; k < o.batch; ++k) {
        batch[k] = blocks.blocks[(i + k) % blocks.blocks.size()];
        batch[k].ts_ns = ts += 1000;
      }
      engine.push(batch, mask, ts);
    }
    runs.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
                   static_cast<double>(o.blocks));
  }
  engine.finish();
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace

std::map<std::string, UserFilterCost> calibrate_user_filters(
    const UserCalibration& options, const std::function<void(const std::string&)>& log) {
  UserCalibration o = options;
  o.batch = std::max<std::size_t>(1, o.batch);
  const Blocks small(64), large(1400);
  const double base_small = measure("(rx, dev=cal0)", small, o);
  const double base_large = measure("(rx, dev=cal0)", large, o);
  const double extra_bytes =
      static_cast<double>(large.frames[0].size()) - static_cast<double>(small.frames[0].size());
  std::map<std::string, UserFilterCost> out;
  for (const auto& [name, request] : kRequests) {
    const std::string text = std::string("(rx, dev=cal0) > ") + request;
    try {
      const double s = std::max(0.0, measure(text, small, o) - base_small);
      const double l = std::max(0.0, measure(text, large, o) - base_large);
      UserFilterCost c;
      c.ns_per_block = s;
      c.ns_per_byte = std::max(0.0, (l - s) / extra_bytes);
      out[name] = c;
      if (log) {
        std::ostringstream line;
        line.precision(3);
        line << "user filter " << name << ": " << c.ns_per_block << " ns/block, " << c.ns_per_byte
             << " ns/byte";
        log(line.str());
      }
    } catch (const std::exception& e) {
      if (log) log(std::string("user filter ") + name + ": not measured: " + e.what());
    }
  }
  return out;
}

}  // namespace srl::runtime
