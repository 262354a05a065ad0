// pcapin and the sinks: captures round-trip through pcapin and the pcap
// sink record for record (pcap in µs and ns, pcapng), tcpdump reads what the
// sink writes, replay follows the recorded timing on a synthetic clock,
// print writes tcpdump-like lines, file puts stream bytes at their offsets,
// and fifo feeds a live libpcap reader without ever blocking.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "as_user.h"
#include "io.h"
#include "packet_corpus.h"
#include "srl/filters/user.h"
#include "temp_dir.h"
#include "user_fixtures.h"

using namespace srl;
using namespace srl::testing;
using filters::Block;
using filters::BlockKind;
using filters::OptionValue;
using filters::UserFilterConfig;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kSecond = 1'000'000'000;

struct NullEmitter final : filters::Emitter {
  std::vector<std::vector<std::uint8_t>> arena;
  void accept(std::uint16_t) override {}
  void emit(const Block&, std::uint16_t) override {}
  std::span<std::uint8_t> allocate(std::size_t n) override { return arena.emplace_back(n); }
};

template <typename Make>
std::string error_of(Make make) {
  try {
    make();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

// A capture record as libpcap reports it.
struct Record {
  std::uint64_t ts_ns = 0;
  std::uint32_t len = 0;
  Bytes bytes;
  bool operator==(const Record&) const = default;
};

doctest::String toString(const Record& r) {
  return doctest::String(("{ts " + std::to_string(r.ts_ns) + ", len " + std::to_string(r.len) +
                          ", caplen " + std::to_string(r.bytes.size()) + "}")
                             .c_str());
}

// Writes `records` with libpcap's own dumper.
void write_with_libpcap(const std::string& path, const std::vector<Record>& records,
                        int dlt = DLT_EN10MB, bool nano = true) {
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(
      dlt, 262144, nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  REQUIRE(dumper != nullptr);
  for (const Record& r : records) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(r.ts_ns / kSecond);
    h.ts.tv_usec = static_cast<suseconds_t>(nano ? r.ts_ns % kSecond : r.ts_ns % kSecond / 1000);
    h.caplen = static_cast<bpf_u_int32>(r.bytes.size());
    h.len = r.len;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h, r.bytes.data());
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

std::vector<Record> read_pcap_handle(pcap_t* p) {
  std::vector<Record> out;
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &h, &data) == 1)
    out.push_back({static_cast<std::uint64_t>(h->ts.tv_sec) * kSecond +
                       static_cast<std::uint64_t>(h->ts.tv_usec),
                   h->len, Bytes(data, data + h->caplen)});
  return out;
}

std::vector<Record> read_with_libpcap(const std::string& path, int* dlt = nullptr) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  REQUIRE_MESSAGE(p != nullptr, errbuf);
  if (dlt != nullptr) *dlt = pcap_datalink(p);
  auto out = read_pcap_handle(p);
  pcap_close(p);
  return out;
}

// Frames of the standard corpus with distinct ns timestamps; every third
// one was longer on the wire than captured.
std::vector<Record> corpus_records() {
  std::vector<Record> out;
  std::uint64_t ts = 1'700'000'000 * kSecond + 123;
  for (const TestFrame& f : standard_corpus()) {
    const auto len = static_cast<std::uint32_t>(f.bytes.size() + (out.size() % 3 == 0 ? 100 : 0));
    out.push_back({ts, len, f.bytes});
    ts += 1'234'567 + out.size();
  }
  return out;
}

std::unique_ptr<filters::UserSource> pcapin(const std::string& path, std::int64_t loop = 1,
                                            std::int64_t speed = 0) {
  return filters::make_user_source(
      filter_config("pcapin", {{"file", path}, {"loop", loop}, {"speed", speed}}));
}

// Everything a source gives at a clock that never stops it, in batches of
// `batch`, as records; each block also into `sink` when there is one, which
// gets a tick every `tick_every` polls (0: never).
std::vector<Record> drain(filters::UserSource& src, std::size_t batch = 7,
                          filters::UserFilter* sink = nullptr, int tick_every = 0) {
  NullEmitter em;
  std::vector<Record> out;
  std::vector<Block> blocks(batch);
  for (int i = 0; i < 1'000'000 && !src.done(); ++i) {
    const std::size_t n = src.poll(blocks, UINT64_MAX / 2);
    for (std::size_t k = 0; k < n; ++k) {
      const Block& b = blocks[k];
      REQUIRE(b.kind == BlockKind::packet);
      REQUIRE(b.parsed != nullptr);
      CHECK(b.parsed->len == b.data.size());
      out.push_back({b.ts_ns, b.wire_len, Bytes(b.data.begin(), b.data.end())});
      if (sink != nullptr) sink->process(b, em);
    }
    if (sink != nullptr && tick_every != 0 && i % tick_every == 0) sink->tick(0, em);
  }
  CHECK(src.done());
  return out;
}

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  ::pclose(p);
  return out;
}

Bytes le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}
Bytes le16(std::uint16_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8)};
}

// A pcapng block: type, total length, body padded to 4, total length.
Bytes ng_block(std::uint32_t type, Bytes body) {
  while (body.size() % 4 != 0)
    body.push_back(0);
  const auto total = static_cast<std::uint32_t>(body.size() + 12);
  return le32(type) + le32(total) + body + le32(total);
}

// Section header, one Ethernet interface (nanosecond resolution when
// `nano`, else the default microseconds), then one enhanced packet block per
// record.
Bytes pcapng_file(const std::vector<Record>& records, bool nano) {
  Bytes shb = le32(0x1A2B3C4D) + le16(1) + le16(0) + le32(0xFFFFFFFF) + le32(0xFFFFFFFF);
  Bytes idb = le16(1) + le16(0) + le32(262144);
  if (nano) idb = idb + le16(9) + le16(1) + Bytes{9, 0, 0, 0} + le16(0) + le16(0);
  Bytes file = ng_block(0x0A0D0D0A, shb) + ng_block(1, idb);
  for (const Record& r : records) {
    const std::uint64_t t = nano ? r.ts_ns : r.ts_ns / 1000;
    Bytes epb = le32(0) + le32(static_cast<std::uint32_t>(t >> 32)) +
                le32(static_cast<std::uint32_t>(t)) +
                le32(static_cast<std::uint32_t>(r.bytes.size())) + le32(r.len) + r.bytes;
    file = file + ng_block(6, epb);
  }
  return file;
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Block packet_block(const Record& r, const filters::ParsedPacket& parsed) {
  Block b;
  b.data = r.bytes;
  b.ts_ns = r.ts_ns;
  b.wire_len = r.len;
  b.parsed = &parsed;
  return b;
}

}  // namespace

TEST_CASE("pcapin and the pcap sink round-trip a capture record for record") {
  TempDir dir;
  const auto records = corpus_records();
  REQUIRE(records.size() > 100);
  const std::string in = dir / "in.pcap";
  const std::string out = dir / "out.pcap";
  write_with_libpcap(in, records);

  auto src = pcapin(in);
  auto sink = filters::make_user_filter(filter_config("pcap", {{"file", out}}));
  const auto seen = drain(*src, 7, sink.get(), 5);
  NullEmitter em;
  // A stream chunk has no Ethernet framing: counted, not written.
  filters::FlowInfo flow{.id = 1, .family = filters::L3Kind::ipv4};
  Block chunk;
  chunk.kind = BlockKind::stream;
  const Bytes hello = text("hello");
  chunk.data = hello;
  chunk.flow = &flow;
  sink->process(chunk, em);
  sink->finish(em);

  CHECK(seen == records);
  CHECK(read_with_libpcap(out) == records);
  CHECK(stat_of(src->stats(), "packets") == records.size());
  CHECK(stat_of(src->stats(), "passes") == 1);
  CHECK(stat_of(sink->stats(), "written") == records.size());
  CHECK(stat_of(sink->stats(), "skipped_streams") == 1);

  // The file is nanosecond pcap, Ethernet, snaplen 262144.
  const Bytes head = read_bytes(out);
  REQUIRE(head.size() >= 24);
  CHECK(Bytes(head.begin(), head.begin() + 24) ==
        le32(0xa1b23c4d) + le16(2) + le16(4) + le32(0) + le32(0) + le32(262144) + le32(1));
}

TEST_CASE("pcapin and the pcap sink carry records of the largest size across chunks") {
  // 262144-byte records (libpcap's largest) between small ones: each
  // crosses the reader's chunk and the sink's flush boundaries somewhere.
  TempDir dir;
  const auto small = corpus_records();
  std::vector<Record> records;
  for (std::uint32_t i = 0; i < 12; ++i) {
    Record big = small[i % small.size()];
    big.bytes.resize(262144, static_cast<std::uint8_t>(0x41 + i));
    big.len = 262144;
    big.ts_ns += i;
    records.push_back(big);
    for (std::size_t k = 0; k < 1 + i * 7 % 5; ++k)
      records.push_back(small[(i + k) % small.size()]);
  }
  const std::string in = dir / "in.pcap";
  const std::string out = dir / "out.pcap";
  write_with_libpcap(in, records);
  auto src = pcapin(in);
  auto sink = filters::make_user_filter(filter_config("pcap", {{"file", out}}));
  const auto seen = drain(*src, 3, sink.get());
  NullEmitter em;
  sink->finish(em);
  CHECK(seen == records);
  CHECK(read_with_libpcap(out) == records);
  CHECK(stat_of(src->stats(), "packets") == records.size());  // and no read_errors
  CHECK(src->stats().size() == 3);
}

TEST_CASE("pcapin reads microsecond pcap, parses every block, and keeps nothing stale") {
  TempDir dir;
  auto records = corpus_records();
  for (Record& r : records)
    r.ts_ns -= r.ts_ns % 1000;
  const std::string in = dir / "micro.pcap";
  write_with_libpcap(in, records, DLT_EN10MB, false);
  auto src = pcapin(in);
  std::vector<Block> blocks(64);
  std::size_t at = 0;
  for (int i = 0; i < 10'000 && !src->done(); ++i) {
    const std::size_t n = src->poll(blocks, 0);
    // Every block of a batch is still intact when the batch is complete.
    for (std::size_t k = 0; k < n; ++k, ++at) {
      REQUIRE(at < records.size());
      CHECK(blocks[k].ts_ns == records[at].ts_ns);
      CHECK(Bytes(blocks[k].data.begin(), blocks[k].data.end()) == records[at].bytes);
      const auto expect = filters::parse_packet(records[at].bytes);
      CHECK(blocks[k].parsed->l4_offset == expect.l4_offset);
      CHECK(blocks[k].parsed->sport == expect.sport);
      CHECK(blocks[k].parsed->ethertype == expect.ethertype);
    }
  }
  CHECK(at == records.size());
}

TEST_CASE("pcapin reads pcapng with nanosecond and default resolution") {
  TempDir dir;
  std::vector<Record> records;
  const auto corpus = standard_corpus();
  for (std::size_t i = 0; i < 20; ++i) {
    const Bytes& f = corpus[i * 7 % corpus.size()].bytes;
    const auto len = static_cast<std::uint32_t>(f.size() + (i % 2 ? 31 : 0));
    records.push_back({1'600'000'000 * kSecond + i * 999'999'937 + 1000 * i, len, f});
  }
  write_bytes(dir / "nano.pcapng", pcapng_file(records, true));
  CHECK(drain(*pcapin(dir / "nano.pcapng")) == records);

  for (Record& r : records)
    r.ts_ns -= r.ts_ns % 1000;
  write_bytes(dir / "micro.pcapng", pcapng_file(records, false));
  CHECK(drain(*pcapin(dir / "micro.pcapng")) == records);
}

TEST_CASE("tcpdump reads what the pcap sink writes") {
  if (::access("/usr/bin/tcpdump", X_OK) != 0) {
    MESSAGE("tcpdump is not installed at /usr/bin/tcpdump: check skipped");
    return;
  }
  TempDir dir;
  const std::string in = dir / "in.pcap";
  const std::string out = dir / "out.pcap";
  write_with_libpcap(in, corpus_records());
  {
    auto src = pcapin(in);
    auto sink = filters::make_user_filter(filter_config("pcap", {{"file", out}}));
    NullEmitter em;
    std::vector<Block> blocks(32);
    for (int i = 0; i < 10'000 && !src->done(); ++i) {
      const std::size_t n = src->poll(blocks, 0);
      for (std::size_t k = 0; k < n; ++k)
        sink->process(blocks[k], em);
    }
    sink->finish(em);
  }
  const auto count = [](const std::string& file) {
    return std::stoi(run("/usr/bin/tcpdump -nr " + file + " 'tcp port 80' 2>/dev/null | wc -l"));
  };
  CHECK(count(out) == count(in));
  CHECK(count(out) > 0);
  const auto text = [](const std::string& file) {
    return run("/usr/bin/tcpdump -nn -tt --nano -r " + file + " 2>/dev/null");
  };
  CHECK(text(out) == text(in));
  CHECK(!text(out).empty());
}

TEST_CASE("the pcap sink writes a slow capture out within a second, not at every tick") {
  TempDir dir;
  const std::string out = dir / "slow.pcap";
  auto sink = filters::make_user_filter(filter_config("pcap", {{"file", out}}));
  NullEmitter em;
  const auto records = corpus_records();
  REQUIRE(records.size() >= 2);
  const auto block = [](const Record& r) {
    Block b;
    b.data = r.bytes;
    b.ts_ns = r.ts_ns;
    b.wire_len = r.len;
    return b;
  };
  const auto size = [&] { return std::filesystem::file_size(out); };
  const std::uint64_t t0 = records[0].ts_ns;
  sink->process(block(records[0]), em);
  sink->tick(t0 + kSecond / 100, em);  // the engine's 10 ms tick
  sink->tick(t0 + kSecond / 2, em);
  CHECK(size() == 0);
  sink->process(block(records[1]), em);
  sink->tick(t0 + kSecond, em);  // the first record has waited a second
  CHECK(read_with_libpcap(out).size() == 2);
  const auto written = size();
  sink->tick(t0 + 3 * kSecond, em);  // nothing waits: nothing written
  CHECK(size() == written);
  // A clock behind the packets' stamps (stepped back) does not hold them.
  sink->process(block(records[0]), em);
  sink->tick(t0 - kSecond, em);
  CHECK(read_with_libpcap(out).size() == 3);
  sink->finish(em);
}

TEST_CASE("pcapin at speed 1000 releases blocks as their recorded time comes") {
  TempDir dir;
  const Bytes frame = ethernet(0x0800) + ipv4(17, ip4("10.0.0.1"), ip4("10.0.0.2"), udp(1, 2));
  std::vector<Record> records;
  const std::uint64_t t0 = 1'700'000'000 * kSecond;
  for (std::uint64_t i = 0; i <= 4; ++i)  // 0, 0.5, 1, 1.5, 2 s
    records.push_back({t0 + i * kSecond / 2, static_cast<std::uint32_t>(frame.size()), frame});
  write_with_libpcap(dir / "two-seconds.pcap", records);

  SUBCASE("one pass") {
    auto src = pcapin(dir / "two-seconds.pcap", 1, 1000);
    std::vector<Block> blocks(16);
    const std::uint64_t now = 5'000 * kSecond;
    CHECK_FALSE(src->done());
    CHECK(src->poll(blocks, now) == 1);
    CHECK(blocks[0].ts_ns == t0);
    CHECK(src->next_due_ns() == now + 500'000);
    CHECK(src->poll(blocks, now + 499'999) == 0);
    CHECK(src->poll(blocks, now + 500'000) == 1);
    CHECK(blocks[0].ts_ns == t0 + kSecond / 2);
    CHECK(src->poll(blocks, now + 1'600'000) == 2);
    CHECK(blocks[1].ts_ns == t0 + 3 * kSecond / 2);
    CHECK(src->next_due_ns() == now + 2'000'000);
    CHECK_FALSE(src->done());
    CHECK(src->poll(blocks, now + 1'999'999) == 0);
    CHECK(src->poll(blocks, now + 2'000'000) == 1);
    CHECK(src->done());
    CHECK(src->poll(blocks, now + 10 * kSecond) == 0);
  }
  SUBCASE("a second pass follows the first") {
    auto src = pcapin(dir / "two-seconds.pcap", 2, 1000);
    std::vector<Block> blocks(16);
    const std::uint64_t now = 7 * kSecond;
    CHECK(src->poll(blocks, now) == 1);
    CHECK(src->poll(blocks, now + 1'999'999) == 3);
    CHECK(src->next_due_ns() == now + 2'000'000);
    // Pass 2 starts when pass 1's last block was due: its first block is
    // due together with that one.
    CHECK(src->poll(blocks, now + 2'000'000) == 2);
    CHECK(blocks[0].ts_ns == t0 + 2 * kSecond);
    CHECK(blocks[1].ts_ns == t0);
    CHECK(src->next_due_ns() == now + 2'500'000);
    CHECK(src->poll(blocks, now + 3'999'999) == 3);
    CHECK(src->poll(blocks, now + 4'000'000) == 1);
    CHECK(src->done());
    CHECK(stat_of(src->stats(), "passes") == 2);
  }
}

TEST_CASE("pcapin loops: N passes, or forever with loop 0") {
  TempDir dir;
  auto records = corpus_records();
  records.resize(10);
  write_with_libpcap(dir / "ten.pcap", records);

  auto three = pcapin(dir / "ten.pcap", 3);
  const auto got = drain(*three, 4);
  REQUIRE(got.size() == 30);
  for (std::size_t i = 0; i < got.size(); ++i)
    CHECK(got[i] == records[i % 10]);
  CHECK(stat_of(three->stats(), "passes") == 3);
  CHECK(stat_of(three->stats(), "packets") == 30);

  auto forever = pcapin(dir / "ten.pcap", 0);
  std::vector<Block> blocks(16);
  for (int i = 0; i < 100; ++i)
    CHECK(forever->poll(blocks, 0) == 16);
  CHECK_FALSE(forever->done());
  CHECK(stat_of(forever->stats(), "passes") == 160);

  // An empty capture ends at once, even with loop 0.
  write_with_libpcap(dir / "empty.pcap", {});
  auto empty = pcapin(dir / "empty.pcap", 0);
  CHECK(empty->done());
  CHECK(empty->poll(blocks, 0) == 0);
}

TEST_CASE("pcapin and the sinks report unusable files and paths") {
  TempDir dir;
  const std::string missing = dir / "missing.pcap";
  CHECK(error_of([&] { pcapin(missing); }) ==
        "node n7 (pcapin): cannot read '" + missing + "': No such file or directory");

  const std::string garbage = dir / "garbage.pcap";
  write_bytes(garbage, text("this is not a capture file at all"));
  const std::string corrupt = error_of([&] { pcapin(garbage); });
  CHECK(corrupt.starts_with("node n7 (pcapin): cannot read '" + garbage + "': "));

  const std::string raw = dir / "raw.pcap";
  write_with_libpcap(raw, {{kSecond, 20, Bytes(20, 0x45)}}, DLT_RAW);
  CHECK(error_of([&] { pcapin(raw); }) == "node n7 (pcapin): '" + raw + "' has link type RAW (" +
                                              std::to_string(DLT_RAW) +
                                              "); only Ethernet (EN10MB) is supported");

  const std::string unwritable = dir / "no/such/dir/out.pcap";
  CHECK(error_of([&] {
          filters::make_user_filter(filter_config("pcap", {{"file", unwritable}}));
        }) ==
        "node n7 (pcap): cannot open '" + unwritable + "' for writing: No such file or directory");

  const std::string plain = dir / "plain";
  write_bytes(plain, text("x"));
  CHECK(error_of([&] {
          filters::make_user_filter(filter_config("fifo", {{"path", plain}}));
        }) == "node n7 (fifo): '" + plain + "' exists and is not a FIFO");
  CHECK(error_of([&] {
          filters::make_user_filter(filter_config("fifo", {{"path", unwritable}}));
        }) == "node n7 (fifo): cannot create FIFO '" + unwritable + "': No such file or directory");
  CHECK(error_of([&] {
          filters::make_user_filter(filter_config("file", {{"dir", plain}}));
        }).starts_with("node n7 (file): cannot create directory '" + plain + "': "));
  CHECK(error_of([&] {
          filters::make_user_filter(
              filter_config("pcap", {{"file", dir / "x.pcap"}, {"snaplen", std::int64_t{0}}}));
        }).find("snaplen") != std::string::npos);
}

TEST_CASE("print writes one tcpdump-like line per block") {
  const std::uint64_t ts = (12 * 3600 + 1) * kSecond + 123'456'789;  // 12:00:01.123456789
  const Ip4 a = ip4("10.0.0.1");
  const Ip4 b = ip4("10.0.0.2");
  const auto line = [&](const Bytes& frame, std::uint32_t wire = 0) {
    const auto parsed = filters::parse_packet(frame);
    Record r{ts, wire ? wire : static_cast<std::uint32_t>(frame.size()), frame};
    return filters::user::format_block(packet_block(r, parsed));
  };
  CHECK(line(ethernet(0x0800) +
             ipv4(6, a, b, tcp(1234, 80, tcpflag::psh | tcpflag::ack, {}, Bytes(60, 'x')))) ==
        "12:00:01.123456789 IP 10.0.0.1.1234 > 10.0.0.2.80: tcp 60 [P.]");
  CHECK(line(ethernet(0x0800) + ipv4(6, b, a, tcp(80, 1234, tcpflag::syn | tcpflag::ack))) ==
        "12:00:01.123456789 IP 10.0.0.2.80 > 10.0.0.1.1234: tcp 0 [S.]");
  CHECK(line(ethernet(0x0800) + ipv4(17, a, b, udp(5353, 53, Bytes(12, 0)))) ==
        "12:00:01.123456789 IP 10.0.0.1.5353 > 10.0.0.2.53: udp 12");
  CHECK(line(ethernet(0x0800) + ipv4(1, a, b, icmp(8, 0, Bytes(56, 0)))) ==
        "12:00:01.123456789 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, length 60");
  CHECK(line(ethernet(0x0800) + ipv4(1, a, b, icmp(42, 3, Bytes(4, 0)))) ==
        "12:00:01.123456789 IP 10.0.0.1 > 10.0.0.2: ICMP type 42 code 3, length 8");
  CHECK(line(ethernet(0x0806) + arp_request(a, b) + Bytes(18, 0)) ==
        "12:00:01.123456789 ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 46");
  CHECK(line(ethernet(0x86DD) +
             ipv6(6, ip6("2001:db8::1"), ip6("2001:db8::2"), tcp(443, 5555, tcpflag::syn))) ==
        "12:00:01.123456789 IP6 2001:db8::1.443 > 2001:db8::2.5555: tcp 0 [S]");
  CHECK(line(ethernet(0x86DD) + ipv6(58, ip6("fe80::1"), ip6("ff02::1"), icmp(135, 0))) ==
        "12:00:01.123456789 IP6 fe80::1 > ff02::1: ICMP6 neighbor solicitation, length 4");
  CHECK(line(ethernet(0x0800, {{.vid = 10}}) + ipv4(17, a, b, udp(1000, 2000, Bytes(3, 0)))) ==
        "12:00:01.123456789 vlan 10 IP 10.0.0.1.1000 > 10.0.0.2.2000: udp 3");
  CHECK(line(ethernet(0x0800, {{.vid = 99, .tpid = 0x88A8}, {.vid = 7}}) +
             ipv4(47, a, b, Bytes(24, 0))) ==
        "12:00:01.123456789 vlan 99 vlan 7 IP 10.0.0.1 > 10.0.0.2: ip-proto-47 24");
  CHECK(line(ethernet(0x88cc) + Bytes(46, 0)) == "12:00:01.123456789 ethertype 0x88cc, length 60");
  CHECK(line(Bytes(10, 0)) == "12:00:01.123456789 truncated frame, length 10");
  // A short capture still shows the wire lengths from the IP header.
  const Bytes big = ethernet(0x0800) + ipv4(17, a, b, udp(1, 2, Bytes(1000, 0)));
  CHECK(line(Bytes(big.begin(), big.begin() + 64), static_cast<std::uint32_t>(big.size())) ==
        "12:00:01.123456789 IP 10.0.0.1.1 > 10.0.0.2.2: udp 1000");
  // Every frame of the corpus gives one line, without reading outside it.
  for (const TestFrame& f : standard_corpus()) {
    const std::string l = line(f.bytes);
    CHECK_MESSAGE(l.starts_with("12:00:01.123456789 "), f.name);
    CHECK(l.find('\n') == std::string::npos);
  }

  filters::FlowInfo flow{
      .id = 7, .family = filters::L3Kind::ipv4, .client_port = 1234, .server_port = 80};
  std::copy(a.begin(), a.end(), flow.client_addr.begin());
  std::copy(b.begin(), b.end(), flow.server_addr.begin());
  const Bytes request = text("GET / HTTP/1.1\r\n");
  Block chunk;
  chunk.kind = BlockKind::stream;
  chunk.ts_ns = 12 * 3600 * kSecond + kSecond + 100'000'000;
  chunk.data = request;
  chunk.flow = &flow;
  CHECK(filters::user::format_block(chunk) ==
        "12:00:01.100000000 stream 7 10.0.0.1.1234 > 10.0.0.2.80 offset 0, 16 bytes "
        "\"GET / HTTP/1.1..\"");
  const Bytes long_reply = text(std::string(100, 'z'));
  chunk.data = long_reply;
  chunk.direction = 1;
  chunk.stream_offset = 4096;
  chunk.stream_end = true;
  CHECK(filters::user::format_block(chunk) ==
        "12:00:01.100000000 stream 7 10.0.0.2.80 > 10.0.0.1.1234 offset 4096, 100 bytes, end \"" +
            std::string(32, 'z') + "\"");

  // The sink buffers lines and writes them at tick and finish.
  char* text = nullptr;
  std::size_t size = 0;
  std::FILE* out = ::open_memstream(&text, &size);
  REQUIRE(out != nullptr);
  {
    auto sink = filters::user::make_print_sink(out);
    NullEmitter em;
    const Bytes frame = ethernet(0x0800) + ipv4(17, a, b, udp(5353, 53, Bytes(12, 0)));
    const auto parsed = filters::parse_packet(frame);
    sink->process(packet_block({ts, static_cast<std::uint32_t>(frame.size()), frame}, parsed), em);
    std::fflush(out);
    CHECK(size == 0);
    sink->tick(ts, em);
    CHECK(std::string(text, size) == "12:00:01.123456789 IP 10.0.0.1.5353 > 10.0.0.2.53: udp 12\n");
    sink->process(chunk, em);
    sink->finish(em);
    CHECK(std::count(text, text + size, '\n') == 2);
    CHECK(stat_of(sink->stats(), "lines") == 2);
  }
  std::fclose(out);
  std::free(text);
  CHECK(filters::make_user_filter(filter_config("print")) != nullptr);
}

TEST_CASE("print: lines its output does not take are counted and the reason said") {
  // A reader that went, where SIGPIPE is ignored (as a daemon does): EPIPE.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[0]);
  std::FILE* out = ::fdopen(fds[1], "w");
  REQUIRE(out != nullptr);
  const auto old = std::signal(SIGPIPE, SIG_IGN);
  {
    auto sink = filters::user::make_print_sink(out);
    NullEmitter em;
    const Bytes frame =
        ethernet(0x0800) + ipv4(17, ip4("10.0.0.1"), ip4("10.0.0.2"), udp(5353, 53, Bytes(12, 0)));
    const auto parsed = filters::parse_packet(frame);
    CHECK(sink->failure().empty());
    for (int i = 0; i < 3; ++i)
      sink->process(
          packet_block({kSecond, static_cast<std::uint32_t>(frame.size()), frame}, parsed), em);
    sink->tick(kSecond, em);
    sink->process(packet_block({kSecond, static_cast<std::uint32_t>(frame.size()), frame}, parsed),
                  em);
    sink->finish(em);
    CHECK(sink->failure() == "writing standard output: Broken pipe");
    CHECK(stat_of(sink->stats(), "lines") == 4);
    CHECK(stat_of(sink->stats(), "dropped_unwritten") == 4);
  }
  std::signal(SIGPIPE, old);
  std::fclose(out);
}

TEST_CASE("file writes each stream direction at its offsets, and packets per conversation") {
  TempDir dir;
  const std::string out_dir = dir / "streams/sub";  // created if missing
  auto sink = filters::user::make_file_sink(filter_config("file", {{"dir", out_dir}}), 2);
  NullEmitter em;
  REQUIRE(fs::is_directory(out_dir));

  std::vector<filters::FlowInfo> flows(3);
  for (std::uint64_t i = 0; i < flows.size(); ++i) {
    flows[i].id = 7 + i;
    flows[i].family = filters::L3Kind::ipv4;
    const Ip4 c = ip4("10.0.0.1");
    const Ip4 s = ip4("192.0.2.80");
    std::copy(c.begin(), c.end(), flows[i].client_addr.begin());
    std::copy(s.begin(), s.end(), flows[i].server_addr.begin());
    flows[i].client_port = static_cast<std::uint16_t>(40000 + i);
    flows[i].server_port = 80;
  }
  std::vector<Bytes> keep;
  const auto chunk = [&](std::size_t flow, std::uint8_t direction, std::uint64_t offset,
                         std::string_view text, bool end = false) {
    Block b;
    b.kind = BlockKind::stream;
    b.data = keep.emplace_back(srl::testing::text(text));
    b.flow = &flows[flow];
    b.direction = direction;
    b.stream_offset = offset;
    b.stream_end = end;
    sink->process(b, em);
  };
  // Out of order, with a gap at [10, 20), interleaved over three flows while
  // only two files may be open.
  chunk(0, 0, 20, "!");
  chunk(1, 0, 0, "second");
  chunk(0, 0, 5, "world");
  chunk(2, 1, 3, "def");
  chunk(0, 0, 0, "hello");
  chunk(1, 1, 0, "reply");
  chunk(2, 1, 0, "abc", false);
  chunk(1, 0, 6, " flow", true);
  chunk(2, 1, 6, "", true);
  sink->tick(0, em);
  sink->finish(em);

  const auto file = [&](std::string_view name) {
    return read_bytes(out_dir + "/" + std::string(name));
  };
  Bytes expect = text("helloworld") + Bytes(10, 0) + text("!");
  CHECK(file("flow-7-10.0.0.1.40000-192.0.2.80.80.c2s") == expect);
  CHECK(file("flow-8-10.0.0.1.40001-192.0.2.80.80.c2s") == text("second flow"));
  CHECK(file("flow-8-10.0.0.1.40001-192.0.2.80.80.s2c") == text("reply"));
  CHECK(file("flow-9-10.0.0.1.40002-192.0.2.80.80.s2c") == text("abcdef"));
  CHECK_FALSE(fs::exists(out_dir + "/flow-9-10.0.0.1.40002-192.0.2.80.80.c2s"));
  CHECK(stat_of(sink->stats(), "files") == 4);
  CHECK(stat_of(sink->stats(), "bytes") == 11 + 11 + 5 + 6);

  // Packets: both directions of a conversation in one pcap file.
  auto packets = filters::user::make_file_sink(filter_config("file", {{"dir", out_dir}}), 2);
  const Ip4 a = ip4("10.0.0.1");
  const Ip4 b = ip4("10.0.0.2");
  const std::vector<Bytes> frames = {
      ethernet(0x0800) + ipv4(6, b, a, tcp(80, 1234, tcpflag::syn | tcpflag::ack)),
      ethernet(0x0800) + ipv4(6, a, b, tcp(1234, 80, tcpflag::ack)),
      ethernet(0x0806) + arp_request(a, b),
      ethernet(0x0800) + ipv4(17, a, b, udp(53000, 53, Bytes(5, 1))),
      ethernet(0x0800) + ipv4(1, b, a, icmp(0, 0)),
      ethernet(0x88cc) + Bytes(46, 0),
      ethernet(0x0800) + ipv4(6, a, b, tcp(1234, 80, tcpflag::fin | tcpflag::ack)),
  };
  std::vector<Record> recs;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    recs.push_back({kSecond * (i + 1), static_cast<std::uint32_t>(frames[i].size()), frames[i]});
    const auto parsed = filters::parse_packet(frames[i]);
    packets->process(packet_block(recs.back(), parsed), em);
  }
  packets->finish(em);
  CHECK(read_with_libpcap(out_dir + "/packets-tcp-10.0.0.1.1234-10.0.0.2.80.pcap") ==
        std::vector<Record>{recs[0], recs[1], recs[6]});
  CHECK(read_with_libpcap(out_dir + "/packets-arp.pcap") == std::vector<Record>{recs[2]});
  CHECK(read_with_libpcap(out_dir + "/packets-udp-10.0.0.1.53000-10.0.0.2.53.pcap") ==
        std::vector<Record>{recs[3]});
  CHECK(read_with_libpcap(out_dir + "/packets-icmp-10.0.0.1-10.0.0.2.pcap") ==
        std::vector<Record>{recs[4]});
  CHECK(read_with_libpcap(out_dir + "/packets-ethertype-88cc.pcap") ==
        std::vector<Record>{recs[5]});
  CHECK(stat_of(packets->stats(), "files") == 5);
}

namespace {

// Reads the FIFO at `path` with libpcap until end of file or `max` records.
struct FifoReader {
  std::string error;
  std::vector<Record> records;
  std::atomic<bool> go{true};

  void run(const std::string& path, std::size_t max) {
    const int fd = ::open(path.c_str(), O_RDONLY);  // waits for the writer
    if (fd < 0) {
      error = "open failed";
      return;
    }
    for (int i = 0; i < 10'000 && !go.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    FILE* f = ::fdopen(fd, "rb");
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (p == nullptr) {
      error = errbuf;
      std::fclose(f);
      return;
    }
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    while (records.size() < max && pcap_next_ex(p, &h, &data) == 1)
      records.push_back({static_cast<std::uint64_t>(h->ts.tv_sec) * kSecond +
                             static_cast<std::uint64_t>(h->ts.tv_usec),
                         h->len, Bytes(data, data + h->caplen)});
    pcap_close(p);
  }
};

// Ticks `sink` until it has had `readers` readers (bounded).
bool wait_for_reader(filters::UserFilter& sink, std::uint64_t readers) {
  NullEmitter em;
  for (int i = 0; i < 5000; ++i) {
    sink.tick(0, em);
    if (stat_of(sink.stats(), "readers") >= readers) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Unblocks a reader still waiting in open() by opening the write end once.
void release_reader(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) ::close(fd);
}

// On the way out of a failed test: a reader still waiting in open() is let
// through, the sink goes (so a reader in read() sees the end), then the
// thread is joined.
struct ThreadGuard {
  std::thread& t;
  std::string path;
  std::unique_ptr<filters::UserFilter>& sink;
  ~ThreadGuard() {
    if (!t.joinable()) return;
    release_reader(path);
    sink.reset();
    t.join();
  }
};

std::vector<Record> numbered_records(std::size_t n, std::uint64_t first_ts) {
  const auto corpus = corpus_records();
  std::vector<Record> out;
  for (std::size_t i = 0; i < n; ++i) {
    Record r = corpus[(i * 13 + 40) % corpus.size()];
    r.ts_ns = first_ts + i;
    out.push_back(r);
  }
  return out;
}

void feed(filters::UserFilter& sink, const std::vector<Record>& records) {
  NullEmitter em;
  for (const Record& r : records) {
    const auto parsed = filters::parse_packet(r.bytes);
    sink.process(packet_block(r, parsed), em);
  }
}

}  // namespace

TEST_CASE("fifo: a live libpcap reader gets every record") {
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::make_user_filter(filter_config("fifo", {{"path", path}}));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  FifoReader reader;
  std::thread t([&] { reader.run(path, SIZE_MAX); });
  ThreadGuard guard{t, path, sink};
  REQUIRE(wait_for_reader(*sink, 1));
  const auto records = numbered_records(3000, 5 * kSecond);
  feed(*sink, records);
  NullEmitter em;
  sink->finish(em);
  t.join();
  CHECK(reader.error.empty());
  CHECK(reader.records == records);
  CHECK(stat_of(sink->stats(), "written") == records.size());
  CHECK(stat_of(sink->stats(), "dropped_no_reader") == 0);
  sink.reset();
  CHECK_FALSE(fs::exists(path));  // created here, so removed here
}

TEST_CASE("fifo: tcpdump -r reads the pipe live") {
  if (::access("/usr/bin/tcpdump", X_OK) != 0) {
    MESSAGE("tcpdump is not installed at /usr/bin/tcpdump: check skipped");
    return;
  }
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::make_user_filter(filter_config("fifo", {{"path", path}}));
  const std::string copy = dir / "copy.pcap";
  std::thread t(
      [&] { run("/usr/bin/tcpdump --nano -r " + path + " -w " + copy + " 2>/dev/null"); });
  ThreadGuard guard{t, path, sink};
  REQUIRE(wait_for_reader(*sink, 1));
  const auto records = numbered_records(100, kSecond);
  feed(*sink, records);
  NullEmitter em;
  sink->finish(em);
  t.join();
  CHECK(read_with_libpcap(copy) == records);
}

TEST_CASE("fifo: without a reader records are dropped and nothing blocks") {
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::make_user_filter(filter_config("fifo", {{"path", path}}));
  const auto start = std::chrono::steady_clock::now();
  feed(*sink, numbered_records(1000, kSecond));
  NullEmitter em;
  for (int i = 0; i < 10; ++i)
    sink->tick(0, em);
  sink->finish(em);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  CHECK(stat_of(sink->stats(), "dropped_no_reader") == 1000);
  CHECK(stat_of(sink->stats(), "written") == 0);
  CHECK(stat_of(sink->stats(), "readers") == 0);

  // A FIFO that was there before stays after.
  const std::string mine = dir / "existing";
  REQUIRE(::mkfifo(mine.c_str(), 0600) == 0);
  filters::make_user_filter(filter_config("fifo", {{"path", mine}})).reset();
  CHECK(fs::is_fifo(mine));
}

TEST_CASE("fifo: a reader that leaves is dropped, the next one gets a fresh header") {
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::make_user_filter(filter_config("fifo", {{"path", path}}));
  NullEmitter em;

  FifoReader first;
  std::thread t1([&] { first.run(path, 5); });
  {
    ThreadGuard guard{t1, path, sink};
    REQUIRE(wait_for_reader(*sink, 1));
    feed(*sink, numbered_records(10, kSecond));
    sink->tick(0, em);
    t1.join();
  }
  CHECK(first.error.empty());
  CHECK(first.records == numbered_records(5, kSecond));
  CHECK(stat_of(sink->stats(), "written") == 10);

  // Nobody reads now: these are lost with the pipe, without SIGPIPE.
  feed(*sink, numbered_records(10, 2 * kSecond));
  sink->tick(0, em);
  CHECK(stat_of(sink->stats(), "dropped_no_reader") == 10);

  FifoReader second;
  std::thread t2([&] { second.run(path, SIZE_MAX); });
  ThreadGuard guard{t2, path, sink};
  REQUIRE(wait_for_reader(*sink, 2));
  feed(*sink, numbered_records(7, 3 * kSecond));
  sink->finish(em);
  t2.join();
  CHECK(second.error.empty());
  CHECK(second.records == numbered_records(7, 3 * kSecond));
}

TEST_CASE("fifo: a slow reader loses whole records, never a broken stream") {
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::user::make_fifo_sink(filter_config("fifo", {{"path", path}}), 256 * 1024);
  FifoReader reader;
  reader.go = false;
  std::thread t([&] { reader.run(path, SIZE_MAX); });
  ThreadGuard guard{t, path, sink};
  REQUIRE(wait_for_reader(*sink, 1));
  const auto records = numbered_records(30'000, kSecond);
  const auto start = std::chrono::steady_clock::now();
  feed(*sink, records);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  const auto dropped = stat_of(sink->stats(), "dropped_full");
  CHECK(dropped > 0);
  reader.go = true;
  NullEmitter em;
  sink->finish(em);
  t.join();
  CHECK(reader.error.empty());
  CHECK(reader.records.size() == records.size() - dropped);
  CHECK(stat_of(sink->stats(), "written") == reader.records.size());
  // What arrived is whole records, in order, each the one sent with its ts.
  std::uint64_t last = 0;
  for (const Record& r : reader.records) {
    REQUIRE(r.ts_ns >= kSecond);
    const std::size_t i = r.ts_ns - kSecond;
    REQUIRE(i < records.size());
    CHECK(r == records[i]);
    CHECK(r.ts_ns >= last);
    last = r.ts_ns + 1;
  }
}

TEST_CASE("fifo: raw records carry length, timestamp and bytes, streams included") {
  TempDir dir;
  const std::string path = dir / "pipe";
  auto sink = filters::make_user_filter(filter_config("fifo", {{"path", path}, {"format", "raw"}}));
  Bytes got;
  std::thread t([&] {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    std::uint8_t buf[4096];
    for (int i = 0; i < 100'000; ++i) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      got.insert(got.end(), buf, buf + n);
    }
    ::close(fd);
  });
  ThreadGuard guard{t, path, sink};
  REQUIRE(wait_for_reader(*sink, 1));
  const auto records = numbered_records(3, 9 * kSecond);
  feed(*sink, records);
  filters::FlowInfo flow{.id = 3};
  const Bytes stream_bytes = text("stream bytes");
  Block chunk;
  chunk.kind = BlockKind::stream;
  chunk.ts_ns = 42;
  chunk.data = stream_bytes;
  chunk.flow = &flow;
  NullEmitter em;
  sink->process(chunk, em);
  sink->finish(em);
  t.join();
  Bytes expect;
  const auto add = [&](std::uint64_t ts, const Bytes& bytes) {
    expect = expect + le32(static_cast<std::uint32_t>(bytes.size())) +
             le32(static_cast<std::uint32_t>(ts)) + le32(static_cast<std::uint32_t>(ts >> 32)) +
             bytes;
  };
  for (const Record& r : records)
    add(r.ts_ns, r.bytes);
  add(42, stream_bytes);
  CHECK(got == expect);
  CHECK(stat_of(sink->stats(), "written") == 4);
}

TEST_CASE("pcapin replays a large capture fast") {
  TempDir dir;
  const std::string path = dir / "large.pcap";
  constexpr std::uint64_t kPackets = 500'000;
  {
    // Written directly: the corpus frames over and over, 1 µs apart.
    const auto corpus = standard_corpus();
    pcap_t* dead =
        pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
    pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
    REQUIRE(dumper != nullptr);
    for (std::uint64_t i = 0; i < kPackets; ++i) {
      const Bytes& f = corpus[i % corpus.size()].bytes;
      pcap_pkthdr h{};
      h.ts.tv_sec = static_cast<time_t>(1000 + i / 1'000'000);
      h.ts.tv_usec = static_cast<suseconds_t>(i % 1'000'000 * 1000);
      h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
      pcap_dump(reinterpret_cast<u_char*>(dumper), &h, f.data());
    }
    pcap_dump_close(dumper);
    pcap_close(dead);
  }
  auto src = pcapin(path);
  std::vector<Block> blocks(64);
  std::uint64_t packets = 0;
  std::uint64_t sum = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1'000'000 && !src->done(); ++i) {
    const std::size_t n = src->poll(blocks, 0);
    packets += n;
    for (std::size_t k = 0; k < n; ++k)
      sum += blocks[k].data.size() + blocks[k].parsed->sport;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(packets == kPackets);
  CHECK(sum > 0);
  const double rate = static_cast<double>(packets) / seconds;
  MESSAGE("pcapin replayed " << packets << " packets at " << rate / 1e6 << " M packets/s");
  CHECK(rate > 1e5);
}

namespace {

// The calling thread's filesystem ids: an id that is not valid (-1)
// changes nothing, and the call returns the current one.
uid_t thread_fsuid() {
  return static_cast<uid_t>(::syscall(SYS_setfsuid, static_cast<uid_t>(-1)));
}
gid_t thread_fsgid() {
  return static_cast<gid_t>(::syscall(SYS_setfsgid, static_cast<gid_t>(-1)));
}
std::vector<gid_t> thread_groups() {
  std::vector<gid_t> g(static_cast<std::size_t>(::getgroups(0, nullptr)));
  g.resize(static_cast<std::size_t>(::getgroups(static_cast<int>(g.size()), g.data())));
  return g;
}

// The thread is itself again: root's filesystem ids and groups.
void check_identity_back(const std::vector<gid_t>& groups) {
  CHECK(thread_fsuid() == 0);
  CHECK(thread_fsgid() == 0);
  CHECK(thread_groups() == groups);
}

filters::FileOwner nobody() {
  return {65534, 65534, {65534}};
}

UserFilterConfig as_nobody(UserFilterConfig c) {
  c.file_owner = nobody();
  return c;
}

// Switching identity needs root; elsewhere the tests say so and pass.
bool need_root() {
  if (::geteuid() == 0) return true;
  MESSAGE("not root: file ownership tests skipped");
  return false;
}

// A temporary directory others may traverse, with a subdirectory only root
// may write to and one that belongs to nobody.
struct OwnerDirs {
  TempDir dir;
  std::string root_only = dir / "root-only";
  std::string nobodys = dir / "nobody";
  OwnerDirs() {
    REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
    REQUIRE(::mkdir(root_only.c_str(), 0755) == 0);
    REQUIRE(::mkdir(nobodys.c_str(), 0755) == 0);
    REQUIRE(::chown(nobodys.c_str(), 65534, 65534) == 0);
  }
};

struct stat stat_of_path(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("AsUser switches only the calling thread and always switches back") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  {
    filters::user::AsUser as(filters::FileOwner{65534, 65533, {4242, 4243}});
    REQUIRE(as.ok());
    CHECK(thread_fsuid() == 65534);
    CHECK(thread_fsgid() == 65533);
    CHECK(thread_groups() == std::vector<gid_t>{4242, 4243});
  }
  check_identity_back(groups);

  SUBCASE("another thread keeps its identity meanwhile") {
    // Started before the switch: a new thread starts with its creator's
    // identity.
    std::atomic<int> step{0};
    uid_t other_fsuid = 1;
    std::vector<gid_t> other_groups;
    std::thread other([&] {
      while (step.load() != 1)
        std::this_thread::yield();
      other_fsuid = thread_fsuid();
      other_groups = thread_groups();
      step.store(2);
    });
    {
      filters::user::AsUser as(nobody());
      REQUIRE(as.ok());
      step.store(1);
      while (step.load() != 2)
        std::this_thread::yield();
      CHECK(thread_fsuid() == 65534);
    }
    other.join();
    CHECK(other_fsuid == 0);
    CHECK(other_groups == groups);
    check_identity_back(groups);
  }

  SUBCASE("no owner: nothing changes") {
    filters::user::AsUser as(std::nullopt);
    CHECK(as.ok());
    check_identity_back(groups);
  }
  SUBCASE("a switch that fails is undone at once and reported") {
    filters::FileOwner too_many{65534, 65534, std::vector<gid_t>(70000, 65534)};
    errno = 0;
    filters::user::AsUser as(too_many);
    CHECK_FALSE(as.ok());
    CHECK(as.error() == EINVAL);
    CHECK(errno == 0);
    check_identity_back(groups);
  }
  SUBCASE("errno of what was done as the user survives the switch back") {
    {
      filters::user::AsUser as(nobody());
      REQUIRE(as.ok());
      CHECK(::open("/nonexistent/x", O_RDONLY) < 0);
    }
    CHECK(errno == ENOENT);
    check_identity_back(groups);
  }
}

TEST_CASE("pcap sink with a file owner: the kernel checks as that user, who owns the file") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  OwnerDirs d;

  const std::string denied = d.root_only + "/out.pcap";
  CHECK(error_of([&] {
          filters::make_user_filter(as_nobody(filter_config("pcap", {{"file", denied}})));
        }) ==
        "node n7 (pcap): cannot open '" + denied + "' for writing as uid 65534: Permission denied");
  CHECK_FALSE(fs::exists(denied));
  check_identity_back(groups);

  const std::string out = d.nobodys + "/out.pcap";
  const auto records = corpus_records();
  {
    auto sink = filters::make_user_filter(as_nobody(filter_config("pcap", {{"file", out}})));
    check_identity_back(groups);
    const auto st = stat_of_path(out);
    CHECK(st.st_uid == 65534);
    CHECK(st.st_gid == 65534);
    NullEmitter em;
    const auto parsed = filters::parse_packet(records[0].bytes);
    sink->process(packet_block(records[0], parsed), em);
    sink->finish(em);
  }
  CHECK(read_with_libpcap(out) == std::vector<Record>{records[0]});

  // Supplementary groups count: a directory only group 4242 may write to.
  const std::string group_dir = d.dir / "group";
  REQUIRE(::mkdir(group_dir.c_str(), 0700) == 0);
  REQUIRE(::chown(group_dir.c_str(), 0, 4242) == 0);
  REQUIRE(::chmod(group_dir.c_str(), 0770) == 0);
  auto in_group = as_nobody(filter_config("pcap", {{"file", group_dir + "/g.pcap"}}));
  in_group.file_owner->groups = {65534, 4242};
  CHECK_NOTHROW(filters::make_user_filter(in_group));
  CHECK(stat_of_path(group_dir + "/g.pcap").st_uid == 65534);
  in_group.file_owner->groups = {65534};
  CHECK(error_of([&] {
          filters::make_user_filter(in_group);
        }).ends_with("as uid 65534: Permission denied"));
  check_identity_back(groups);

  // An identity that cannot be taken is a configuration error.
  auto impossible = as_nobody(filter_config("pcap", {{"file", out}}));
  impossible.file_owner->groups.assign(70000, 65534);
  CHECK(error_of([&] { filters::make_user_filter(impossible); }) ==
        "node n7 (pcap): cannot open '" + out +
            "' for writing as uid 65534: cannot take on that user's identity: Invalid argument");
  check_identity_back(groups);
}

TEST_CASE("pcapin with a file owner reads only what that user may read") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  OwnerDirs d;
  const auto records = corpus_records();
  const std::string secret = d.dir / "secret.pcap";
  write_with_libpcap(secret, records);
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  CHECK(error_of([&] {
          filters::make_user_source(as_nobody(filter_config("pcapin", {{"file", secret}})));
        }) == "node n7 (pcapin): cannot read '" + secret + "' as uid 65534: Permission denied");
  check_identity_back(groups);

  REQUIRE(::chmod(secret.c_str(), 0644) == 0);
  auto src = filters::make_user_source(
      as_nobody(filter_config("pcapin", {{"file", secret}, {"loop", std::int64_t{2}}})));
  check_identity_back(groups);
  auto twice = records;
  twice.insert(twice.end(), records.begin(), records.end());
  CHECK(drain(*src) == twice);
  check_identity_back(groups);
}

TEST_CASE("fifo with a file owner: the FIFO belongs to that user") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  OwnerDirs d;
  const std::string denied = d.root_only + "/pipe";
  CHECK(error_of([&] {
          filters::make_user_filter(as_nobody(filter_config("fifo", {{"path", denied}})));
        }) ==
        "node n7 (fifo): cannot create FIFO '" + denied + "' as uid 65534: Permission denied");
  check_identity_back(groups);

  const std::string pipe = d.nobodys + "/pipe";
  {
    auto sink = filters::make_user_filter(as_nobody(filter_config("fifo", {{"path", pipe}})));
    check_identity_back(groups);
    const auto st = stat_of_path(pipe);
    CHECK(S_ISFIFO(st.st_mode));
    CHECK(st.st_uid == 65534);
    CHECK(st.st_gid == 65534);
    NullEmitter em;
    sink->tick(0, em);  // tries to open for a reader, as the user
    check_identity_back(groups);
  }
  CHECK_FALSE(fs::exists(pipe));  // removed, as the user, at the end
  check_identity_back(groups);
}

TEST_CASE("fifo: a FIFO no reader can mend (not the user's to open) is said, blocks counted") {
  if (!need_root()) return;
  OwnerDirs d;
  // root's FIFO, 0600, in nobody's directory: nobody sees it, cannot open it.
  const std::string pipe = d.nobodys + "/roots-pipe";
  REQUIRE(::mkfifo(pipe.c_str(), 0600) == 0);
  auto sink = filters::make_user_filter(as_nobody(filter_config("fifo", {{"path", pipe}})));
  NullEmitter em;
  feed(*sink, numbered_records(5, kSecond));
  sink->tick(0, em);
  sink->finish(em);
  CHECK(sink->failure() == "opening FIFO '" + pipe + "' as uid 65534: Permission denied");
  CHECK(stat_of(sink->stats(), "dropped_no_reader") == 5);
  CHECK(fs::is_fifo(pipe));  // not the sink's: left in place
}

namespace {

filters::FlowInfo test_flow() {
  filters::FlowInfo flow;
  flow.id = 1;
  flow.family = filters::L3Kind::ipv4;
  const Ip4 c = ip4("10.0.0.1");
  const Ip4 s = ip4("192.0.2.80");
  std::copy(c.begin(), c.end(), flow.client_addr.begin());
  std::copy(s.begin(), s.end(), flow.server_addr.begin());
  flow.client_port = 40000;
  flow.server_port = 80;
  return flow;
}

}  // namespace

TEST_CASE("file sink with a file owner: files made while running belong to that user") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  OwnerDirs d;
  CHECK(error_of([&] {
          filters::make_user_filter(
              as_nobody(filter_config("file", {{"dir", d.root_only + "/sub"}})));
        }) == "node n7 (file): cannot create directory '" + d.root_only +
                  "/sub' as uid 65534: Permission denied");
  CHECK(error_of([&] {
          filters::make_user_filter(as_nobody(filter_config("file", {{"dir", d.root_only}})));
        }) == "node n7 (file): cannot write to directory '" + d.root_only +
                  "' as uid 65534: Permission denied");
  check_identity_back(groups);

  const std::string out = d.nobodys + "/streams";  // created by the sink, as nobody
  auto sink = filters::make_user_filter(as_nobody(filter_config("file", {{"dir", out}})));
  check_identity_back(groups);
  CHECK(stat_of_path(out).st_uid == 65534);

  const filters::FlowInfo flow = test_flow();
  const Bytes data = text("hello");
  // As an engine worker would: the files are opened in another thread.
  std::thread([&] {
    const auto worker_groups = thread_groups();
    NullEmitter em;
    for (const std::uint8_t dir : {std::uint8_t{0}, std::uint8_t{1}}) {
      Block b;
      b.kind = BlockKind::stream;
      b.data = data;
      b.flow = &flow;
      b.direction = dir;
      b.stream_end = true;
      sink->process(b, em);
    }
    sink->finish(em);
    check_identity_back(worker_groups);
  }).join();
  check_identity_back(groups);
  CHECK(stat_of(sink->stats(), "files") == 2);
  for (const char* suffix : {".c2s", ".s2c"}) {
    const std::string file = out + "/flow-1-10.0.0.1.40000-192.0.2.80.80" + suffix;
    CAPTURE(file);
    CHECK(stat_of_path(file).st_uid == 65534);
    CHECK(stat_of_path(file).st_gid == 65534);
    CHECK(read_bytes(file) == data);
  }
}

namespace {

// An owner with the test's own identity (root: RESOLVE_BENEATH binds it as
// it binds anyone) whose files are created `mode`, confined to `dirs` when
// there are any.
filters::FileOwner self_owner(std::vector<fs::path> dirs, mode_t mode = 0600) {
  filters::FileOwner o{::geteuid(), ::getegid(), thread_groups()};
  o.beneath = std::move(dirs);
  o.create_mode = mode;
  return o;
}

UserFilterConfig owned_by(UserFilterConfig c, filters::FileOwner owner) {
  c.file_owner = std::move(owner);
  return c;
}

// No umask for the scope: files get exactly the mode they are created with.
struct NoUmask {
  mode_t old = ::umask(0);
  ~NoUmask() { ::umask(old); }
  NoUmask() = default;
  NoUmask(const NoUmask&) = delete;
  NoUmask& operator=(const NoUmask&) = delete;
};

// A temporary directory holding `root`, the only directory the owner may
// use, and `outside`, a directory beside it that is not allowed.
struct Confined {
  TempDir dir;
  std::string root = dir / "root";
  std::string outside = dir / "outside";
  Confined() {
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  }
  filters::FileOwner owner(mode_t mode = 0600) const { return self_owner({root}, mode); }
  std::string in(std::string_view name) const { return root + "/" + std::string(name); }
  std::string out(std::string_view name) const { return outside + "/" + std::string(name); }
};

void symlink_at(const std::string& target, const std::string& link) {
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
}

std::string outside_error(const std::string& root) {
  return "it lies outside the directories this user may use (" + root +
         "); expected a path inside one of them";
}
std::string link_error(const std::string& root) {
  return "a symbolic link on it leads outside the directories this user may use (" + root +
         "); expected a path that stays inside one of them";
}

mode_t mode_of(const std::string& path) {
  return stat_of_path(path).st_mode & 07777;
}

// The error of a pcap sink writing `path` for `owner`, or "(no error)" (the
// sink then writes nothing).
std::string pcap_sink_error(const filters::FileOwner& owner, const std::string& path) {
  return error_of([&] {
    filters::make_user_filter(owned_by(filter_config("pcap", {{"file", path}}), owner));
  });
}

// One record through a pcap sink built from `config`.
void write_one_record(const UserFilterConfig& config, const Record& record) {
  auto sink = filters::make_user_filter(config);
  NullEmitter em;
  const auto parsed = filters::parse_packet(record.bytes);
  sink->process(packet_block(record, parsed), em);
  sink->finish(em);
}

// A stream chunk that ends its direction.
Block ending_chunk(const filters::FlowInfo& flow, const Bytes& data) {
  Block b;
  b.kind = BlockKind::stream;
  b.data = data;
  b.flow = &flow;
  b.stream_end = true;
  return b;
}

constexpr const char* kFlowFile = "flow-1-10.0.0.1.40000-192.0.2.80.80.c2s";

}  // namespace

TEST_CASE("beneath: the pcap sink creates its file inside the owner's directory, in create_mode") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  Confined c;
  NoUmask no_umask;
  const auto records = corpus_records();

  const std::string cap = c.in("cap.pcap");
  write_one_record(owned_by(filter_config("pcap", {{"file", cap}}), c.owner()), records[0]);
  CHECK(mode_of(cap) == 0600);
  CHECK(read_with_libpcap(cap) == std::vector<Record>{records[0]});
  check_identity_back(groups);

  const std::string group_cap = c.in("group.pcap");
  write_one_record(owned_by(filter_config("pcap", {{"file", group_cap}}), c.owner(0640)),
                   records[1]);
  CHECK(mode_of(group_cap) == 0640);

  SUBCASE("a relative symbolic link that stays inside") {
    REQUIRE(::mkdir(c.in("sub").c_str(), 0755) == 0);
    symlink_at("sub/real.pcap", c.in("a"));  // dangling until the sink creates the file
    write_one_record(owned_by(filter_config("pcap", {{"file", c.in("a")}}), c.owner()), records[2]);
    CHECK(mode_of(c.in("sub/real.pcap")) == 0600);
    CHECK(read_with_libpcap(c.in("sub/real.pcap")) == std::vector<Record>{records[2]});
    // Up and down again inside the directory.
    symlink_at("../sub/real.pcap", c.in("sub/again"));
    CHECK(pcap_sink_error(c.owner(), c.in("sub/again")) == "(no error)");
  }
  SUBCASE("'..' that stays inside is taken lexically") {
    CHECK(pcap_sink_error(c.owner(), c.in("nowhere/../direct.pcap")) == "(no error)");
    CHECK(fs::exists(c.in("direct.pcap")));
  }
  SUBCASE("the outermost of nested allowed directories holds the path") {
    REQUIRE(::mkdir(c.in("inner").c_str(), 0755) == 0);
    symlink_at("../beside.pcap", c.in("inner/up"));
    const auto owner = self_owner({c.in("inner"), c.root});
    CHECK(pcap_sink_error(owner, c.in("inner/up")) == "(no error)");
    CHECK(fs::exists(c.in("beside.pcap")));
  }
}

TEST_CASE("beneath: a path or a symbolic link leading outside is refused, nothing made there") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  Confined c;
  const auto as_self = " as uid " + std::to_string(::geteuid());
  const auto refused = [&](const std::string& path, const std::string& why) {
    return "node n7 (pcap): cannot open '" + path + "' for writing" + as_self + ": " + why;
  };

  // A dangling link to a file outside, absolute or relative: the sink would
  // create its target.
  symlink_at(c.out("victim.pcap"), c.in("link"));
  CHECK(pcap_sink_error(c.owner(), c.in("link")) == refused(c.in("link"), link_error(c.root)));
  symlink_at("../outside/victim.pcap", c.in("relative"));
  CHECK(pcap_sink_error(c.owner(), c.in("relative")) ==
        refused(c.in("relative"), link_error(c.root)));
  // A link to a directory outside, on the way.
  symlink_at(c.outside, c.in("outdir"));
  CHECK(pcap_sink_error(c.owner(), c.in("outdir/x.pcap")) ==
        refused(c.in("outdir/x.pcap"), link_error(c.root)));
  CHECK(fs::is_empty(c.outside));
  check_identity_back(groups);

  // Paths outside, through '..' or as they are; a sibling whose name starts
  // like the directory's is outside too.
  const std::string up = c.root + "/../outside.pcap";
  CHECK(pcap_sink_error(c.owner(), up) == refused(up, outside_error(c.root)));
  CHECK_FALSE(fs::exists(c.dir / "outside.pcap"));
  CHECK(pcap_sink_error(c.owner(), c.out("x.pcap")) ==
        refused(c.out("x.pcap"), outside_error(c.root)));
  const std::string sibling = c.root + "2/x.pcap";
  REQUIRE(::mkdir((c.root + "2").c_str(), 0755) == 0);
  CHECK(pcap_sink_error(c.owner(), sibling) == refused(sibling, outside_error(c.root)));
  CHECK(fs::is_empty(c.outside));
  CHECK(fs::is_empty(c.root + "2"));

  // Every allowed directory is named.
  const auto two = self_owner({c.root, c.in("other")});
  CHECK(pcap_sink_error(two, c.out("x.pcap")) ==
        refused(c.out("x.pcap"), "it lies outside the directories this user may use (" + c.root +
                                     ", " + c.in("other") +
                                     "); expected a path inside one of them"));

  // The function itself: errno says EXDEV, nothing is opened.
  std::string error;
  errno = 0;
  CHECK(filters::user::open_as(c.owner(), c.in("link"), O_WRONLY | O_CREAT, error) == -1);
  CHECK(errno == EXDEV);
  CHECK(error == link_error(c.root));
  CHECK(filters::user::open_as(c.owner(), up, O_WRONLY | O_CREAT, error) == -1);
  CHECK(errno == EXDEV);
  CHECK(error == outside_error(c.root));
  CHECK(fs::is_empty(c.outside));
  check_identity_back(groups);
}

TEST_CASE("beneath: the file sink, pcapin and fifo obey the same rule") {
  if (!need_root()) return;
  const auto groups = thread_groups();
  Confined c;
  NoUmask no_umask;
  const auto as_self = " as uid " + std::to_string(::geteuid());
  symlink_at(c.outside, c.in("outdir"));
  const filters::FlowInfo flow = test_flow();
  const Bytes data = text("hello");
  NullEmitter em;

  SUBCASE("file: directories made inside, refused through a link or '..'") {
    const std::string streams = c.in("streams/deep");
    auto sink =
        filters::make_user_filter(owned_by(filter_config("file", {{"dir", streams}}), c.owner()));
    CHECK(mode_of(c.in("streams")) == 0700);
    CHECK(mode_of(streams) == 0700);
    sink->process(ending_chunk(flow, data), em);
    sink->finish(em);
    CHECK(read_bytes(streams + "/" + kFlowFile) == data);
    CHECK(mode_of(streams + "/" + kFlowFile) == 0600);

    const auto file_error = [&](const std::string& dir) {
      return error_of([&] {
        filters::make_user_filter(owned_by(filter_config("file", {{"dir", dir}}), c.owner()));
      });
    };
    const auto refused = [&](const std::string& dir, const std::string& why) {
      return "node n7 (file): cannot create directory '" + dir + "'" + as_self + ": " + why;
    };
    CHECK(file_error(c.in("outdir")) == refused(c.in("outdir"), link_error(c.root)));
    CHECK(file_error(c.in("outdir/sub")) == refused(c.in("outdir/sub"), link_error(c.root)));
    const std::string escape = c.root + "/../escape";
    CHECK(file_error(escape) == refused(escape, outside_error(c.root)));
    CHECK_FALSE(fs::exists(c.dir / "escape"));
    CHECK(fs::is_empty(c.outside));
    check_identity_back(groups);
  }
  SUBCASE("file: a link planted after the checks is refused at the open") {
    const std::string live = c.in("live");
    auto sink =
        filters::make_user_filter(owned_by(filter_config("file", {{"dir", live}}), c.owner()));
    REQUIRE(::rename(live.c_str(), c.in("live-before").c_str()) == 0);
    symlink_at(c.outside, live);
    sink->process(ending_chunk(flow, data), em);
    sink->finish(em);
    CHECK(stat_of(sink->stats(), "errors") == 1);
    CHECK(stat_of(sink->stats(), "files") == 0);
    CHECK(fs::is_empty(c.outside));
    check_identity_back(groups);
  }
  SUBCASE("pcapin: a capture outside is refused even when readable") {
    const auto records = corpus_records();
    write_with_libpcap(c.out("cap.pcap"), records);
    REQUIRE(::chmod(c.out("cap.pcap").c_str(), 0644) == 0);
    const auto pcapin_error = [&](const std::string& path) {
      return error_of([&] {
        filters::make_user_source(owned_by(filter_config("pcapin", {{"file", path}}), c.owner()));
      });
    };
    const auto refused = [&](const std::string& path, const std::string& why) {
      return "node n7 (pcapin): cannot read '" + path + "'" + as_self + ": " + why;
    };
    CHECK(pcapin_error(c.out("cap.pcap")) == refused(c.out("cap.pcap"), outside_error(c.root)));
    symlink_at(c.out("cap.pcap"), c.in("caplink"));
    CHECK(pcapin_error(c.in("caplink")) == refused(c.in("caplink"), link_error(c.root)));
    CHECK(pcapin_error(c.in("outdir/cap.pcap")) ==
          refused(c.in("outdir/cap.pcap"), link_error(c.root)));
    check_identity_back(groups);

    // Inside: classic pcap (read in chunks) and pcapng (through libpcap, the
    // file reopened for every pass), also through a link that stays inside.
    write_with_libpcap(c.in("in.pcap"), records);
    write_bytes(c.in("in.pcapng"), pcapng_file(records, true));
    symlink_at("in.pcapng", c.in("inlink"));
    auto twice = records;
    twice.insert(twice.end(), records.begin(), records.end());
    for (const std::string name : {"in.pcap", "in.pcapng", "inlink"}) {
      CAPTURE(name);
      auto src = filters::make_user_source(owned_by(
          filter_config("pcapin", {{"file", c.in(name)}, {"loop", std::int64_t{2}}}), c.owner()));
      CHECK(drain(*src) == twice);
      CHECK(src->stats().size() == 3);  // no read_errors
    }
    check_identity_back(groups);
  }
  SUBCASE("fifo: created inside, refused through a link") {
    const std::string pipe = c.in("pipe");
    {
      auto sink =
          filters::make_user_filter(owned_by(filter_config("fifo", {{"path", pipe}}), c.owner()));
      const auto st = stat_of_path(pipe);
      CHECK(S_ISFIFO(st.st_mode));
      CHECK((st.st_mode & 07777) == 0600);
      sink->tick(0, em);  // no reader: nothing opened, nothing blocks
    }
    CHECK_FALSE(fs::exists(pipe));  // removed at the end
    const auto fifo_error = [&](const std::string& path) {
      return error_of([&] {
        filters::make_user_filter(owned_by(filter_config("fifo", {{"path", path}}), c.owner()));
      });
    };
    CHECK(fifo_error(c.in("outdir/pipe")) == "node n7 (fifo): cannot use '" + c.in("outdir/pipe") +
                                                 "'" + as_self + ": " + link_error(c.root));
    symlink_at(c.out("pipe"), c.in("dangling"));
    CHECK(fifo_error(c.in("dangling")) == "node n7 (fifo): cannot use '" + c.in("dangling") + "'" +
                                              as_self + ": " + link_error(c.root));
    CHECK(fifo_error(c.out("pipe")) == "node n7 (fifo): cannot use '" + c.out("pipe") + "'" +
                                           as_self + ": " + outside_error(c.root));
    CHECK(fs::is_empty(c.outside));
    check_identity_back(groups);
  }
}

TEST_CASE("without directories to stay beneath, paths resolve as before; files get create_mode") {
  Confined c;
  NoUmask no_umask;
  const auto records = corpus_records();

  // No owner (srl run): a dangling link is followed and its target created,
  // 0644 as always.
  symlink_at(c.out("target.pcap"), c.in("link"));
  write_one_record(filter_config("pcap", {{"file", c.in("link")}}), records[0]);
  CHECK(mode_of(c.out("target.pcap")) == 0644);
  CHECK(read_with_libpcap(c.in("link")) == std::vector<Record>{records[0]});
  const std::string streams = c.root + "/../streams";
  {
    auto sink = filters::make_user_filter(filter_config("file", {{"dir", streams}}));
    NullEmitter em;
    const filters::FlowInfo flow = test_flow();
    const Bytes data = text("hello");
    sink->process(ending_chunk(flow, data), em);
    sink->finish(em);
  }
  CHECK(mode_of(c.dir / "streams") == 0755);
  CHECK(mode_of(c.dir / "streams" + "/" + kFlowFile) == 0644);
  CHECK(filters::user::create_mode_of(std::nullopt) == 0644);

  // An owner without directories: anywhere its permissions allow, in its mode.
  if (!need_root()) return;
  const auto unconfined = self_owner({}, 0600);
  CHECK(pcap_sink_error(unconfined, c.in("link")) == "(no error)");
  CHECK(mode_of(c.out("target.pcap")) == 0644);  // truncated, not created again
  CHECK(pcap_sink_error(unconfined, c.root + "/../up.pcap") == "(no error)");
  CHECK(mode_of(c.dir / "up.pcap") == 0600);
}

TEST_CASE("file sink: a write that fails is said with the path and the reason, and counted") {
  TempDir dir;
  const std::string out_dir = dir / "out";
  auto sink = filters::user::make_file_sink(filter_config("file", {{"dir", out_dir}}), 4);
  NullEmitter em;
  // The stream's file is /dev/full: every write fails with ENOSPC.
  const std::string name = "flow-1-10.0.0.1.40000-192.0.2.80.80.c2s";
  fs::create_symlink("/dev/full", out_dir + "/" + name);
  const filters::FlowInfo flow = test_flow();
  const Bytes data = srl::testing::text("hello");
  Block b;
  b.kind = BlockKind::stream;
  b.data = data;
  b.flow = &flow;
  CHECK(sink->failure().empty());
  sink->process(b, em);
  sink->process(b, em);
  sink->finish(em);
  // Opened through the link (as the file sink follows links beneath its
  // directory) and failing, or refused at the open: either way said.
  const std::string failure = sink->failure();
  CHECK(failure.find("'" + out_dir + "/" + name + "'") != std::string::npos);
  CHECK((failure.starts_with("writing") || failure.starts_with("opening")));
  CHECK(stat_of(sink->stats(), "dropped_unwritten") == 2);
}
