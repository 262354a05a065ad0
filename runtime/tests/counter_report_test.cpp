// The counters' one shape (counter_report.h): its JSON and tables against
// golden files (runtime/tests/golden/counters.*; SRL_UPDATE_GOLDEN=1
// rewrites them), and the rates between two reports.
#include <doctest/doctest.h>

#include <filesystem>

#include "golden.h"
#include "srl/runtime/counter_report.h"

using namespace srl;

namespace {

std::filesystem::path golden(const char* name) {
  return std::filesystem::path(SRL_RUNTIME_TESTDATA_DIR) / "golden" / name;
}

// Two reads of a request with a drop node, a capture that lost blocks and
// a node shared with a second request, one second apart.
runtime::CounterReport first() {
  runtime::CounterReport r;
  r.time_ns = 1796560201123000000;  // 2026-12-06T12:30:01.123Z
  r.nodes = {
      {.request = "dns",
       .node = "n0",
       .name = "rx",
       .filter = "rx",
       .space = "xdp:eth0",
       .blocks = 1000,
       .bytes = 100000,
       .accepted = 1000},
      {.request = "dns",
       .node = "n1",
       .name = "udp",
       .filter = "udp",
       .space = "xdp:eth0",
       .blocks = 1000,
       .bytes = 100000,
       .accepted = 600},
      {.request = "dns",
       .node = "n2",
       .name = "udp>port[53]>pcap",
       .filter = "pcap",
       .space = "user",
       .blocks = 600,
       .bytes = 60000,
       .accepted = 590,
       .lost = 10,
       .failure = "writing 'dns.pcap': No space left on device"},
      {.request = "flood",
       .node = "n0",
       .name = "rx",
       .filter = "rx",
       .space = "xdp:eth0",
       .blocks = 1000,
       .bytes = 100000,
       .accepted = 1000},
      {.request = "flood",
       .node = "n1",
       .name = "block",
       .filter = "drop",
       .space = "xdp:eth0",
       .blocks = 400,
       .bytes = 40000,
       .accepted = 400,
       .dropped = 400},
      {.request = "dns",
       .node = "n3",
       .name = "udp>dns>count",
       .filter = "count",
       .space = "user",
       .blocks = 600,
       .bytes = 60000,
       .accepted = 600,
       .by_class = true,
       .classes = {{.cls = 1, .name = "A", .blocks = 400, .bytes = 40000},
                   {.cls = 28, .name = "AAAA", .blocks = 150, .bytes = 15000},
                   {.cls = runtime::kOtherClass, .blocks = 50, .bytes = 5000}}},
  };
  r.channels = {{.name = "ringbuf:eth0:0",
                 .kind = "ringbuf",
                 .requests = {"dns"},
                 .blocks = 600,
                 .bytes = 60000,
                 .lost = 0}};
  return r;
}

runtime::CounterReport second() {
  auto r = first();
  r.time_ns += 1'000'000'000;
  for (auto& n : r.nodes) {
    n.blocks += 250;
    n.bytes += 25000;
    for (auto& c : n.classes) {
      c.blocks += 10;
      c.bytes += 1000;
    }
  }
  r.nodes.erase(r.nodes.begin() + 4);  // removed in between: no rate for it, nothing else amiss
  r.channels[0].blocks += 100;
  r.channels[0].bytes += 10000;
  r.final = true;
  return r;
}

}  // namespace

TEST_CASE("counter report: JSON of version 1, against its golden file") {
  auto now = second();
  runtime::add_rates(now, first());
  const std::string json =
      runtime::to_json(first()).dump(2) + "\n" + runtime::to_json(now).dump(2) + "\n";
  const std::string diff = testing::check_golden(golden("counters.json"), json);
  CHECK_MESSAGE(diff.empty(), diff);
}

TEST_CASE("counter report: tables, against their golden file") {
  auto now = second();
  runtime::add_rates(now, first());
  const std::string text =
      runtime::to_table(first(), "after 1.0 s") + "\n" + runtime::to_table(now, "after 2.0 s");
  const std::string diff = testing::check_golden(golden("counters.txt"), text);
  CHECK_MESSAGE(diff.empty(), diff);
}

TEST_CASE("counter report: rates only where both reads have the node and it went forward") {
  auto now = second();
  runtime::add_rates(now, first());
  REQUIRE(now.interval_s);
  CHECK(*now.interval_s == doctest::Approx(1.0));
  CHECK(now.nodes[0].blocks_per_s == 250.0);
  CHECK(now.nodes[0].bytes_per_s == 25000.0);
  CHECK(now.channels[0].blocks_per_s == 100.0);
  CHECK(now.nodes[4].classes[1].blocks_per_s == 10.0);  // AAAA, its own rate
  // A counter that went back (a restart that lost it) gives no rate.
  auto back = second();
  back.nodes[1].blocks = 5;
  runtime::add_rates(back, first());
  CHECK_FALSE(back.nodes[1].blocks_per_s);
  CHECK(back.nodes[0].blocks_per_s);
  // No interval, no rates.
  auto same = first();
  runtime::add_rates(same, first());
  CHECK_FALSE(same.interval_s);
  CHECK_FALSE(same.nodes[0].blocks_per_s);
}

TEST_CASE("counter report: times in UTC with milliseconds; members split at the label") {
  CHECK(runtime::utc_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(runtime::utc_time(1796560201123456789) == "2026-12-06T12:30:01.123Z");
  CHECK(runtime::split_member("web/n3") == std::pair<std::string, std::string>{"web", "n3"});
  CHECK(runtime::split_member("n3") == std::pair<std::string, std::string>{"", "n3"});
}
