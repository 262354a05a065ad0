#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "srl/filters/catalog.h"

using namespace srl::filters;

TEST_CASE("catalog: every filter of SRL.md section 6 is present") {
  const auto& c = Catalog::builtin();
  for (const char* name :
       {"rx",        "pcapin", "eth",   "arp",    "vlan",     "ip",   "ipv4",     "ipv6",
        "icmp",      "tcp",    "udp",   "proto",  "port",     "addr", "tcpflags", "len",
        "hash",      "bpf",    "count", "sample", "rate",     "drop", "pass",     "tx",
        "tcpstream", "http",   "ssh",   "rtsp",   "dns",      "tls",  "match",    "pcap",
        "print",     "file",   "fifo",  "union",  "intersect"}) {
    CAPTURE(name);
    CHECK(c.find(name) != nullptr);
  }
  CHECK(c.find("nosuch") == nullptr);
}

TEST_CASE("catalog: spaces follow SRL.md section 6") {
  const auto& c = Catalog::builtin();
  auto spaces = [&](const char* n) {
    std::string s;
    for (std::size_t i = 0; i < kSpaceKinds; ++i)
      s += c.find(n)->cost[i] ? "KUO"[i] : '-';
    return s;
  };
  CHECK(spaces("tcp") == "KUO");
  CHECK(spaces("tcpflags") == "KU-");
  CHECK(spaces("bpf") == "KU-");
  CHECK(spaces("http") == "-U-");
  CHECK(spaces("pcapin") == "-U-");
  CHECK(spaces("rx") == "KU-");
  CHECK(spaces("union") == "KU-");
}

TEST_CASE("catalog: entries are consistent") {
  for (const auto& f : Catalog::builtin().all()) {
    CAPTURE(f.name);
    CHECK_FALSE(f.summary.empty());
    CHECK(f.selectivity > 0.0);
    CHECK(f.selectivity <= 1.0);
    CHECK(f.max_class <= 65535);
    bool any_space = false;
    for (const auto& cost : f.cost)
      any_space = any_space || cost.has_value();
    CHECK(any_space);
    for (const auto& o : f.options) {
      CAPTURE(o.name);
      CHECK(o.name != "name");  // meta-options are the compiler's
      CHECK(o.name != "space");
      CHECK_FALSE(o.help.empty());
      CHECK_FALSE((o.required && o.default_value.has_value()));
      if (o.type == OptionType::integer) {
        CHECK(o.min <= o.max);
        if (o.default_value) {
          const auto v = std::get<std::int64_t>(*o.default_value);
          CHECK(v >= o.min);
          CHECK(v <= o.max);
        }
      }
      if (o.type == OptionType::choice) {
        CHECK_FALSE(o.choices.empty());
        if (o.default_value) {
          const auto& v = std::get<std::string>(*o.default_value);
          CHECK(std::find(o.choices.begin(), o.choices.end(), v) != o.choices.end());
        }
      }
    }
    // Sinks end a pipeline: they cannot classify.
    if (f.role == Role::sink) CHECK(f.max_class == 0);
  }
}

TEST_CASE("catalog: a duplicate entry is refused") {
  std::vector<FilterSpec> two(2);
  two[0].name = two[1].name = "x";
  CHECK_THROWS_AS(Catalog{two}, std::invalid_argument);
}

TEST_CASE("catalog: suggestions") {
  const auto& c = Catalog::builtin();
  CHECK(c.nearest("tpc") == "tcp");
  CHECK(c.nearest("ipv5") == "ipv4");
  CHECK(c.nearest("pcpa") == "pcap");
  CHECK(c.nearest("unoin") == std::nullopt);  // synthetic filters are not suggested
  CHECK(c.nearest("zzzzzzzz") == std::nullopt);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("ab", "ba") == 1);
  CHECK(edit_distance("", "abc") == 3);
}

TEST_CASE("catalog: JSON form") {
  const auto j = Catalog::builtin().to_json();
  CHECK(j["srl_catalog_version"] == 1);
  bool found = false;
  for (const auto& f : j["filters"]) {
    if (f["name"] != "port") continue;
    found = true;
    CHECK(f["class"] == "port number");
    CHECK(f["options"][0]["name"] == "which");
    CHECK(f["options"][0]["default"] == "any");
    CHECK(f["spaces"].contains("kernel"));
  }
  CHECK(found);
}
