// The counters' one shape (counter_report.h, docs/counters.md).
#include "srl/runtime/counter_report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

namespace srl::runtime {

std::int64_t wall_clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string utc_time(std::int64_t time_ns) {
  const std::time_t s = static_cast<std::time_t>(time_ns / 1000000000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(time_ns % 1000000000 / 1000000));
  return out;
}

std::pair<std::string, std::string> split_member(const std::string& member) {
  const auto slash = member.rfind('/');
  if (slash == std::string::npos) return {"", member};
  return {member.substr(0, slash), member.substr(slash + 1)};
}

namespace {

// Per second over `seconds`, unless the counter went back (a restart
// that lost what it had counted): no rate then rather than a wrong one.
std::optional<double> rate(std::uint64_t now, std::uint64_t before, double seconds) {
  if (seconds <= 0 || now < before) return std::nullopt;
  return static_cast<double>(now - before) / seconds;
}

nlohmann::ordered_json optional_number(const std::optional<double>& v) {
  if (!v) return nullptr;
  // Three decimals: enough for a rate, and the same text for the same value.
  return std::round(*v * 1000.0) / 1000.0;
}

}  // namespace

void add_rates(CounterReport& now, const CounterReport& before) {
  const double seconds = static_cast<double>(now.time_ns - before.time_ns) / 1e9;
  if (seconds <= 0) return;
  now.interval_s = seconds;
  std::map<std::pair<std::string, std::string>, const NodeReport*> nodes;
  for (const auto& n : before.nodes)
    nodes[{n.request, n.node}] = &n;
  for (auto& n : now.nodes) {
    const auto it = nodes.find({n.request, n.node});
    if (it == nodes.end()) continue;
    n.blocks_per_s = rate(n.blocks, it->second->blocks, seconds);
    n.bytes_per_s = rate(n.bytes, it->second->bytes, seconds);
    for (auto& c : n.classes)
      for (const auto& b : it->second->classes)
        if (b.cls == c.cls) {
          c.blocks_per_s = rate(c.blocks, b.blocks, seconds);
          c.bytes_per_s = rate(c.bytes, b.bytes, seconds);
        }
  }
  std::map<std::string, const ChannelReport*> channels;
  for (const auto& c : before.channels)
    channels[c.name] = &c;
  for (auto& c : now.channels) {
    const auto it = channels.find(c.name);
    if (it == channels.end()) continue;
    c.blocks_per_s = rate(c.blocks, it->second->blocks, seconds);
    c.bytes_per_s = rate(c.bytes, it->second->bytes, seconds);
  }
}

nlohmann::ordered_json to_json(const CounterReport& r) {
  using Json = nlohmann::ordered_json;
  Json nodes = Json::array();
  for (const auto& n : r.nodes) {
    nodes.push_back({{"request", n.request},
                     {"node", n.node},
                     {"name", n.name},
                     {"filter", n.filter},
                     {"space", n.space},
                     {"blocks", n.blocks},
                     {"bytes", n.bytes},
                     {"accepted", n.accepted},
                     {"dropped", n.dropped},
                     {"lost", n.lost},
                     {"blocks_per_s", optional_number(n.blocks_per_s)},
                     {"bytes_per_s", optional_number(n.bytes_per_s)},
                     {"failure", n.failure.empty() ? Json(nullptr) : Json(n.failure)}});
    if (!n.by_class) continue;
    Json classes = Json::array();
    for (const auto& c : n.classes)
      classes.push_back({{"class", c.cls == kOtherClass ? Json(nullptr) : Json(c.cls)},
                         {"name", c.cls == kOtherClass ? Json("other")
                                  : c.name.empty()     ? Json(nullptr)
                                                       : Json(c.name)},
                         {"blocks", c.blocks},
                         {"bytes", c.bytes},
                         {"blocks_per_s", optional_number(c.blocks_per_s)},
                         {"bytes_per_s", optional_number(c.bytes_per_s)}});
    nodes.back()["classes"] = std::move(classes);
  }
  Json channels = Json::array();
  for (const auto& c : r.channels)
    channels.push_back({{"name", c.name},
                        {"kind", c.kind},
                        {"requests", c.requests},
                        {"blocks", c.blocks},
                        {"bytes", c.bytes},
                        {"lost", c.lost},
                        {"blocks_per_s", optional_number(c.blocks_per_s)},
                        {"bytes_per_s", optional_number(c.bytes_per_s)}});
  return {{"srl_counters_version", kCountersVersion},
          {"time", utc_time(r.time_ns)},
          {"interval_s", optional_number(r.interval_s)},
          {"final", r.final},
          {"nodes", std::move(nodes)},
          {"channels", std::move(channels)}};
}

namespace {

// "28 AAAA", "28", "other".
std::string class_label(const ClassCount& c) {
  if (c.cls == kOtherClass) return "other";
  return std::to_string(c.cls) + (c.name.empty() ? "" : " " + c.name);
}

std::string rate_text(const std::optional<double>& v) {
  if (!v) return "-";
  char out[32];
  std::snprintf(out, sizeof out, "%.0f", *v);
  return out;
}

}  // namespace

std::string to_table(const CounterReport& r, const std::string& heading) {
  std::ostringstream out;
  if (!heading.empty()) out << heading << "\n";
  // Requests in the order their first node comes.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const NodeReport*>> by_request;
  for (const auto& n : r.nodes) {
    auto& rows = by_request[n.request];
    if (rows.empty()) order.push_back(n.request);
    rows.push_back(&n);
  }
  char line[1024];
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto& rows = by_request[order[i]];
    int wn = 4, wname = 4, wf = 6, ws = 5;
    for (const auto* n : rows) {
      wn = std::max(wn, static_cast<int>(n->node.size()));
      wname = std::max(wname, static_cast<int>(n->name.size()));
      for (const auto& c : n->classes)
        wname = std::max(wname, static_cast<int>(class_label(c).size()) + 2);
      wf = std::max(wf, static_cast<int>(n->filter.size()));
      ws = std::max(ws, static_cast<int>(n->space.size()));
    }
    out << (i == 0 ? "" : "\n") << "request " << order[i] << "\n";
    std::snprintf(line, sizeof line, "%-*s %-*s %-*s %-*s %12s %14s %12s %10s %8s %10s\n", wn,
                  "node", wname, "name", wf, "filter", ws, "space", "blocks", "bytes", "accepted",
                  "dropped", "lost", "blocks/s");
    out << line;
    for (const auto* n : rows) {
      std::snprintf(
          line, sizeof line, "%-*s %-*s %-*s %-*s %12llu %14llu %12llu %10llu %8llu %10s\n", wn,
          n->node.c_str(), wname, n->name.c_str(), wf, n->filter.c_str(), ws, n->space.c_str(),
          static_cast<unsigned long long>(n->blocks), static_cast<unsigned long long>(n->bytes),
          static_cast<unsigned long long>(n->accepted), static_cast<unsigned long long>(n->dropped),
          static_cast<unsigned long long>(n->lost), rate_text(n->blocks_per_s).c_str());
      out << line;
      // A count by class: one line per class under it.
      for (const auto& c : n->classes) {
        const std::string label = "  " + class_label(c);
        std::snprintf(line, sizeof line, "%-*s %-*s %-*s %-*s %12llu %14llu %12s %10s %8s %10s\n",
                      wn, "", wname, label.c_str(), wf, "", ws, "",
                      static_cast<unsigned long long>(c.blocks),
                      static_cast<unsigned long long>(c.bytes), "", "", "",
                      rate_text(c.blocks_per_s).c_str());
        out << line;
      }
    }
    // Why a node loses blocks, under the table that counts them.
    for (const auto* n : rows)
      if (!n->failure.empty()) out << n->node << " " << n->name << ": " << n->failure << "\n";
  }
  if (!r.channels.empty()) {
    int wn = 7, wr = 8;
    std::vector<std::string> requests;
    for (const auto& c : r.channels) {
      std::string names;
      for (const auto& q : c.requests)
        names += (names.empty() ? "" : ",") + q;
      requests.push_back(names.empty() ? "-" : names);
      wn = std::max(wn, static_cast<int>(c.name.size()));
      wr = std::max(wr, static_cast<int>(requests.back().size()));
    }
    out << (r.nodes.empty() ? "" : "\n");
    std::snprintf(line, sizeof line, "%-*s %-*s %12s %14s %8s %10s\n", wn, "channel", wr,
                  "requests", "blocks", "bytes", "lost", "blocks/s");
    out << line;
    for (std::size_t i = 0; i < r.channels.size(); ++i) {
      const auto& c = r.channels[i];
      std::snprintf(line, sizeof line, "%-*s %-*s %12llu %14llu %8llu %10s\n", wn, c.name.c_str(),
                    wr, requests[i].c_str(), static_cast<unsigned long long>(c.blocks),
                    static_cast<unsigned long long>(c.bytes),
                    static_cast<unsigned long long>(c.lost), rate_text(c.blocks_per_s).c_str());
      out << line;
    }
  }
  return out.str();
}

}  // namespace srl::runtime
