// srl apply, ls, show, rm, stats: the requests the daemon keeps running.
// Every command is one call (or, for stats -w, one stream) to controld; the
// daemon does the work and names the step that failed, and these print what
// it answers. With -j, the messages print as JSON with the proto's field
// names.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "daemon_client.h"
#include "srl/compiler/utf8.h"
#include "srl/runtime/counter_report.h"

namespace srl::cli {
namespace {

using Json = nlohmann::ordered_json;

// Compiling the kernel part takes up to a minute; the margin keeps a slow
// but working apply from being reported as a failure.
constexpr int kApplySeconds = 120;

Json placement_json(const v1::NodePlacement& n) {
  return {{"id", n.id()},
          {"name", n.name()},
          {"filter", n.filter()},
          {"space", n.space()},
          {"why", n.why()}};
}

std::int64_t timestamp_ns(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000000000 + t.nanos();
}

// The state as the daemon's messages and the tables say it.
std::string state_text(v1::RequestState s) {
  switch (s) {
    case v1::REQUEST_STATE_ACTIVE:
      return "active";
    case v1::REQUEST_STATE_ENDED:
      return "ended";
    case v1::REQUEST_STATE_FAILED:
      return "failed";
    case v1::REQUEST_STATE_UNRECORDED:
      return "unrecorded";
    case v1::REQUEST_STATE_NOT_RUNNING:
      return "not running";
    default:
      return "unknown";
  }
}

// "2026-12-06T12:30:01Z": to the second, as it is stored.
std::string applied_text(const v1::RequestInfo& r) {
  if (!r.has_applied_at()) return "-";
  const std::string ms = runtime::utc_time(timestamp_ns(r.applied_at()));
  return ms.substr(0, ms.find('.')) + "Z";
}

Json request_json(const v1::RequestInfo& r) {
  Json nodes = Json::array();
  for (const auto& n : r.nodes())
    nodes.push_back(placement_json(n));
  return {{"name", r.name()},
          {"owner", r.owner()},
          {"owner_uid", r.owner_uid()},
          {"text", r.text()},
          {"state", state_text(r.state())},
          {"applied_at", applied_text(r)},
          {"nodes", std::move(nodes)}};
}

// The proto's counters in their one shape (docs/counters.md).
runtime::CounterReport counter_report(const v1::StatsReply& s) {
  runtime::CounterReport r;
  r.time_ns = timestamp_ns(s.time());
  if (s.has_interval_s()) r.interval_s = s.interval_s();
  for (const auto& n : s.nodes()) {
    runtime::NodeReport x;
    x.request = n.request();
    x.node = n.node();
    x.name = n.name();
    x.filter = n.filter();
    x.space = n.space();
    x.blocks = n.blocks();
    x.bytes = n.bytes();
    x.accepted = n.accepted();
    x.dropped = n.dropped();
    x.lost = n.lost();
    if (n.has_blocks_per_s()) x.blocks_per_s = n.blocks_per_s();
    if (n.has_bytes_per_s()) x.bytes_per_s = n.bytes_per_s();
    x.failure = n.failure();
    x.by_class = n.by_class();
    for (const auto& c : n.classes()) {
      runtime::ClassCount k{c.other() ? runtime::kOtherClass : c.class_value(),
                            c.name(),
                            c.blocks(),
                            c.bytes(),
                            {},
                            {}};
      if (c.has_blocks_per_s()) k.blocks_per_s = c.blocks_per_s();
      if (c.has_bytes_per_s()) k.bytes_per_s = c.bytes_per_s();
      x.classes.push_back(std::move(k));
    }
    r.nodes.push_back(std::move(x));
  }
  for (const auto& c : s.channels()) {
    runtime::ChannelReport x{c.name(),   c.kind(),  {c.requests().begin(), c.requests().end()},
                             c.blocks(), c.bytes(), c.lost(),
                             {},         {}};
    if (c.has_blocks_per_s()) x.blocks_per_s = c.blocks_per_s();
    if (c.has_bytes_per_s()) x.bytes_per_s = c.bytes_per_s();
    r.channels.push_back(std::move(x));
  }
  return r;
}

Json counters_json(const v1::StatsReply& s) {
  return runtime::to_json(counter_report(s));
}

// Column width: the widest cell, at least the header.
template <typename Range, typename Field>
int width_of(const Range& rows, const char* header, Field field) {
  std::size_t w = std::string(header).size();
  for (const auto& r : rows)
    w = std::max(w, std::string(field(r)).size());
  return static_cast<int>(w);
}

// The placement table of apply and show; `why` only where the daemon gave
// reasons.
std::string placement_table(const v1::RequestInfo& r, bool with_why) {
  const auto& nodes = r.nodes();
  const int wi = width_of(nodes, "node", [](const auto& n) { return n.id(); });
  const int wn = width_of(nodes, "name", [](const auto& n) { return n.name(); });
  const int wf = width_of(nodes, "filter", [](const auto& n) { return n.filter(); });
  const int ws = width_of(nodes, "space", [](const auto& n) { return n.space(); });
  std::ostringstream out;
  char line[1024];
  auto row = [&](const std::string& id, const std::string& name, const std::string& filter,
                 const std::string& space, const std::string& why) {
    std::snprintf(line, sizeof line, "%-*s %-*s %-*s %-*s", wi, id.c_str(), wn, name.c_str(), wf,
                  filter.c_str(), ws, space.c_str());
    std::string text = line;
    if (with_why) text += " " + why;
    while (!text.empty() && text.back() == ' ')
      text.pop_back();
    out << text << "\n";
  };
  row("node", "name", "filter", "space", "why");
  for (const auto& n : nodes)
    row(n.id(), n.name(), n.filter(), n.space(), n.why());
  return out.str();
}

// "3 nodes: 2 kernel, 1 user" (offload and any other space only when used).
std::string node_summary(const v1::RequestInfo& r) {
  int kernel = 0, user = 0, offload = 0, other = 0;
  for (const auto& n : r.nodes()) {
    const std::string kind = n.space().substr(0, n.space().find(':'));
    if (kind == "xdp" || kind == "tc" || kind == "kernel")
      ++kernel;
    else if (kind == "user")
      ++user;
    else if (kind == "offload")
      ++offload;
    else
      ++other;
  }
  std::string s = std::to_string(r.nodes_size()) + (r.nodes_size() == 1 ? " node: " : " nodes: ") +
                  std::to_string(kernel) + " kernel, " + std::to_string(user) + " user";
  if (offload > 0) s += ", " + std::to_string(offload) + " offload";
  if (other > 0) s += ", " + std::to_string(other) + " elsewhere";
  return s;
}

// The counters of each request, one table per request in the order the
// daemon lists them; the tables of srl run's report.
std::string counters_tables(const v1::StatsReply& s) {
  return runtime::to_table(counter_report(s));
}

const char* code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "an unknown status";
  }
}

// The daemon's message; a bare status (a method the daemon does not
// serve answers UNIMPLEMENTED with no text) is named, not printed empty.
std::string why(const DaemonClient& d, const char* rpc, const grpc::Status& s) {
  std::string text = d.describe(s);
  if (text.empty()) {
    text = "controld answered " + std::string(code_name(s.error_code())) + " to " + rpc;
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) text += " (it does not serve it yet)";
  }
  return text;
}

// What a failed call prints: the daemon's message after the command's name.
void report(const char* command, const char* rpc, const DaemonClient& d, const grpc::Status& s) {
  std::cerr << "srl " << command << ": " << why(d, rpc, s) << "\n";
}

// SIGINT and SIGTERM, waited for by a thread of their own (a handler cannot
// call into gRPC): stops `context`'s stream. Blocked before any gRPC thread
// starts, so that every thread inherits the mask.
class StopOnSignal {
 public:
  StopOnSignal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  void watch(grpc::ClientContext& context) {
    waiter_ = std::thread([this, &context] {
      const timespec tick{0, 100'000'000};
      while (!done_) {
        if (sigtimedwait(&set_, nullptr, &tick) > 0) {
          stopped_ = true;
          context.TryCancel();
          return;
        }
      }
    });
  }
  bool stopped() const { return stopped_; }
  ~StopOnSignal() {
    done_ = true;
    if (waiter_.joinable()) waiter_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t set_{}, old_{};
  std::thread waiter_;
  std::atomic<bool> done_{false}, stopped_{false};
};

int stats_once(const DaemonClient& daemon, const std::string& name, bool json) {
  grpc::ClientContext c;
  DaemonClient::deadline(c);
  v1::StatsRequest request;
  request.set_name(name);
  v1::StatsReply reply;
  const auto status = daemon.stub()->Stats(&c, request, &reply);
  if (!status.ok()) {
    report("stats", "Stats", daemon, status);
    return kExitFailure;
  }
  if (json)
    std::cout << counters_json(reply).dump(2) << "\n";
  else if (reply.nodes().empty())
    std::cerr << "no requests\n";
  else
    std::cout << counters_tables(reply);
  return kExitOk;
}

int stats_watch(const DaemonClient& daemon, const std::string& name, double interval, bool json) {
  StopOnSignal stop;
  grpc::ClientContext c;
  v1::WatchRequest request;
  request.set_name(name);
  request.set_interval_ms(static_cast<std::uint32_t>(interval * 1000 + 0.5));
  auto stub = daemon.stub();
  auto stream = stub->Watch(&c, request);
  stop.watch(c);
  // On a terminal each report redraws the screen (like top, bpftop);
  // piped, reports follow one another.
  const bool redraw = !json && ::isatty(STDOUT_FILENO) == 1;
  std::string events;  // what happened since the last redraw, shown above it
  v1::Event event;
  while (stream->Read(&event)) {
    const std::string at = runtime::utc_time(timestamp_ns(event.time()));
    if (json) {
      Json line = {{"time", at}};
      switch (event.what_case()) {
        case v1::Event::kCounters:
          line["counters"] = counters_json(event.counters());
          break;
        case v1::Event::kApplied:
          line["applied"] = event.applied();
          break;
        case v1::Event::kRemoved:
          line["removed"] = event.removed();
          break;
        case v1::Event::kFailed:
          line["failed"] = event.failed();
          break;
        case v1::Event::WHAT_NOT_SET:
          break;
      }
      std::cout << line.dump() << std::endl;
      continue;
    }
    switch (event.what_case()) {
      case v1::Event::kCounters: {
        const std::string tables = event.counters().nodes().empty()
                                       ? std::string("no requests\n")
                                       : counters_tables(event.counters());
        if (redraw)
          std::cout << "\x1b[H\x1b[2J"
                    << "srl stats -w, every " << interval << " s, at " << at << " (Ctrl-C ends)\n"
                    << events << "\n"
                    << tables;
        else
          std::cout << "at " << at << "\n" << tables << "\n";
        events.clear();
        break;
      }
      case v1::Event::kApplied:
        if (redraw)
          events += at + " applied " + event.applied() + "\n";
        else
          std::cout << at << " applied " << event.applied() << "\n\n";
        break;
      case v1::Event::kRemoved:
        if (redraw)
          events += at + " removed " + event.removed() + "\n";
        else
          std::cout << at << " removed " << event.removed() << "\n\n";
        break;
      case v1::Event::kFailed:
        if (redraw)
          events += at + " failed " + event.failed() + "\n";
        else
          std::cout << at << " failed " << event.failed() << "\n\n";
        break;
      case v1::Event::WHAT_NOT_SET:
        break;
    }
    std::cout << std::flush;
  }
  const auto status = stream->Finish();
  if (stop.stopped() || status.ok()) return kExitOk;
  report("stats", "Watch", daemon, status);
  return kExitFailure;
}

}  // namespace

void add_apply_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    std::string file, expr, name;
    std::vector<std::string> devices;
    bool replace = false, json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      app.add_subcommand("apply", "apply a request on controld: compile, place, deploy, activate");
  cmd->add_option("file", o->file, "request file ('-': standard input)");
  cmd->add_option("-e,--expr", o->expr, "request text")->allow_extra_args(false);
  cmd->add_option("-n,--name", o->name, "the request's name (default: derived from the source)");
  cmd->add_option("--dev", o->devices, "device to receive from (the implicit rx; repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--replace", o->replace,
                "replace the running request of that name (the new one starts before the old "
                "one stops)");
  cmd->add_flag("-j,--json", o->json, "print the applied request as JSON");
  o->daemon.add(*cmd);
  cmd->footer(
      "The daemon applies the request as one transaction: all of it runs, or nothing does.\n"
      "Compile errors print as srlc prints them. Exit status: 0 applied, 1 compile error or\n"
      "the daemon refused (its message names the failing step) or cannot be reached, 2 usage\n"
      "or unreadable FILE.\n"
      "Examples:\n"
      "  srl apply -n dns --dev eth0 examples/dns-capture.srl\n"
      "  srl apply --dev eth0 -e '(udp) > (port) 53> (count)'");
  cmd->callback([o, &result] {
    if (o->file.empty() == o->expr.empty()) {
      std::cerr << "srl apply: give a request FILE or -e EXPR (one of them)\n";
      result = kExitUsage;
      return;
    }
    v1::ApplyRequest request;
    request.set_name(o->name);
    request.set_replace(o->replace);
    auto* source = request.mutable_source();
    for (const auto& d : o->devices)
      source->add_devices(d);
    if (!o->expr.empty()) {
      source->set_text(o->expr);
      source->set_file_name("<expr>");
    } else {
      std::stringstream text;
      if (o->file == "-") {
        text << std::cin.rdbuf();
        source->set_file_name("<stdin>");
      } else {
        std::ifstream in(o->file, std::ios::binary);
        std::error_code ec;
        // A directory opens, but reads nothing.
        if (!in.is_open() || std::filesystem::is_directory(o->file, ec)) {
          std::cerr << "srl apply: cannot read " << o->file << "\n";
          result = kExitUsage;
          return;
        }
        text << in.rdbuf();  // sets failbit on an empty file, which is fine
        source->set_file_name(o->file);
      }
      source->set_text(text.str());
    }
    // Request text travels as a protobuf string, which must be UTF-8: say
    // where it is not, as the compiler would, instead of failing the call.
    if (const auto bad = compiler::utf8::first_invalid(source->text())) {
      const std::string_view t = source->text();
      std::size_t line = 1, line_start = 0;
      for (std::size_t i = 0; i < *bad; ++i)
        if (t[i] == '\n') {
          ++line;
          line_start = i + 1;
        }
      const std::size_t col = 1 + compiler::utf8::length(t.substr(line_start, *bad - line_start));
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(t[*bad]));
      std::cerr << source->file_name() << ":" << line << ":" << col
                << ": error: invalid UTF-8 byte " << hex << "; expected a request in UTF-8 text\n";
      result = kExitFailure;
      return;
    }
    grpc::ClientContext c;
    DaemonClient::deadline(c, kApplySeconds);
    v1::ApplyReply reply;
    const auto status = o->daemon.stub()->Apply(&c, request, &reply);
    if (!status.ok()) {
      result = kExitFailure;
      if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        // The rendered diagnostics, as they are.
        std::cerr << status.error_message();
        if (!status.error_message().empty() && status.error_message().back() != '\n')
          std::cerr << "\n";
      } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        std::cerr << "srl apply: controld at " << o->daemon.path() << " did not answer within "
                  << kApplySeconds << " s; the request may still be applying (see 'srl ls')\n";
      } else {
        report("apply", "Apply", o->daemon, status);
      }
      return;
    }
    const auto& r = reply.request();
    if (o->json) {
      std::cout << request_json(r).dump(2) << "\n";
    } else {
      std::cout << "applied " << r.name() << " (" << node_summary(r) << ")\n"
                << "state " << state_text(r.state()) << ", owner " << r.owner() << "\n"
                << placement_table(r, false);
    }
    result = kExitOk;
  });
}

void add_ls_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    bool quiet = false, json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("ls", "list the requests controld runs");
  cmd->add_flag("-q,--quiet", o->quiet,
                "names only, one a line; a failure shows only in the exit status");
  cmd->add_flag("-j,--json", o->json, "print the requests as a JSON array");
  o->daemon.add(*cmd);
  cmd->footer(
      "Lists the requests the caller may see. Exit status: 0 ok, 1 the daemon refused or\n"
      "cannot be reached, 2 usage.");
  cmd->callback([o, &result] {
    grpc::ClientContext c;
    DaemonClient::deadline(c);
    v1::ListReply reply;
    const auto status = o->daemon.stub()->List(&c, v1::ListRequest(), &reply);
    if (!status.ok()) {
      // Completion calls `srl ls -q` and must stay quiet on failure.
      if (!o->quiet) report("ls", "List", o->daemon, status);
      result = kExitFailure;
      return;
    }
    const auto& requests = reply.requests();
    if (o->json) {
      Json list = Json::array();
      for (const auto& r : requests)
        list.push_back(request_json(r));
      std::cout << list.dump(2) << "\n";
    } else if (o->quiet) {
      for (const auto& r : requests)
        std::cout << r.name() << "\n";
    } else if (requests.empty()) {
      std::cerr << "no requests\n";
    } else {
      const int wn = width_of(requests, "NAME", [](const auto& r) { return r.name(); });
      const int wo = width_of(requests, "OWNER", [](const auto& r) { return r.owner(); });
      const int ws =
          width_of(requests, "STATE", [](const auto& r) { return state_text(r.state()); });
      const int wa = width_of(requests, "APPLIED", [](const auto& r) { return applied_text(r); });
      char line[512];
      std::snprintf(line, sizeof line, "%-*s %-*s %-*s %-*s %s\n", wn, "NAME", wo, "OWNER", ws,
                    "STATE", wa, "APPLIED", "NODES");
      std::cout << line;
      for (const auto& r : requests) {
        std::snprintf(line, sizeof line, "%-*s %-*s %-*s %-*s %d\n", wn, r.name().c_str(), wo,
                      r.owner().c_str(), ws, state_text(r.state()).c_str(), wa,
                      applied_text(r).c_str(), r.nodes_size());
        std::cout << line;
      }
    }
    result = kExitOk;
  });
}

void add_show_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    std::string name;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      app.add_subcommand("show", "show a request controld runs: text, state, placement");
  cmd->add_option("name", o->name, "the request's name (see 'srl ls')")->required();
  cmd->add_flag("-j,--json", o->json, "print the request as JSON");
  o->daemon.add(*cmd);
  cmd->footer(
      "Exit status: 0 ok, 1 no such request, the daemon refused or cannot be reached, 2 usage.");
  cmd->callback([o, &result] {
    grpc::ClientContext c;
    DaemonClient::deadline(c);
    v1::GetRequest request;
    request.set_name(o->name);
    v1::RequestInfo r;
    const auto status = o->daemon.stub()->Get(&c, request, &r);
    if (!status.ok()) {
      report("show", "Get", o->daemon, status);
      result = kExitFailure;
      return;
    }
    if (o->json) {
      std::cout << request_json(r).dump(2) << "\n";
    } else {
      std::cout << "name:    " << r.name() << "\n"
                << "owner:   " << r.owner() << " (uid " << r.owner_uid() << ")\n"
                << "state:   " << state_text(r.state()) << "\n"
                << "applied: " << applied_text(r) << "\n"
                << "placed:  " << node_summary(r) << "\n"
                << "text:\n";
      // Indented, so that the request stands apart from the fields.
      std::istringstream text(r.text());
      for (std::string line; std::getline(text, line);)
        std::cout << "  " << line << "\n";
      std::cout << "\n" << placement_table(r, true);
    }
    result = kExitOk;
  });
}

void add_rm_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    std::vector<std::string> names;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("rm", "remove requests from controld");
  cmd->add_option("name", o->names, "the requests' names (see 'srl ls')")->required();
  cmd->add_flag("-j,--json", o->json,
                "print an array of {name, removed, error} instead of the lines");
  o->daemon.add(*cmd);
  cmd->footer(
      "Each request is removed as one transaction; a failure does not stop the removal of\n"
      "the next. Exit status: 0 all removed, 1 any not removed (no such request, refused, or\n"
      "the daemon cannot be reached), 2 usage.");
  cmd->callback([o, &result] {
    auto stub = o->daemon.stub();
    Json list = Json::array();
    result = kExitOk;
    // Once the daemon cannot be reached, the rest would fail the same way:
    // they are reported without another wait.
    std::string unreachable;
    for (const auto& name : o->names) {
      grpc::Status status;
      if (unreachable.empty()) {
        grpc::ClientContext c;
        DaemonClient::deadline(c, kApplySeconds);
        v1::RemoveRequest request;
        request.set_name(name);
        v1::RemoveReply reply;
        status = stub->Remove(&c, request, &reply);
      }
      if (unreachable.empty() && status.ok()) {
        if (o->json)
          list.push_back({{"name", name}, {"removed", true}, {"error", nullptr}});
        else
          std::cout << "removed " << name << std::endl;
        continue;
      }
      result = kExitFailure;
      const std::string error =
          unreachable.empty() ? why(o->daemon, "Remove", status) : unreachable;
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) unreachable = error;
      if (o->json)
        list.push_back({{"name", name}, {"removed", false}, {"error", error}});
      else
        std::cerr << "srl rm: " << name << ": " << error << "\n";
    }
    if (o->json) std::cout << list.dump(2) << "\n";
  });
}

void add_stats_command(CLI::App& app, int& result) {
  struct Options {
    DaemonClient daemon;
    std::string name;
    bool watch = false, json = false;
    double interval = 1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("stats", "show the counters of the requests controld runs");
  cmd->add_option("name", o->name, "only this request (default: every one the caller may see)");
  CLI::Option* watch =
      cmd->add_flag("-w,--watch", o->watch, "keep printing counters and events until Ctrl-C");
  cmd->add_option("--interval", o->interval, "seconds between counter reports with -w (default 1)")
      ->check(CLI::Range(0.001, 86400.0))
      ->needs(watch);
  cmd->add_flag("-j,--json", o->json,
                "print JSON: the counters once, or with -w one object per line per event");
  o->daemon.add(*cmd);
  cmd->footer(
      "One table per request, a row per node by id and name: blocks and bytes it took in,\n"
      "blocks it accepted, dropped (a drop node's) and lost (srl could not keep them), and\n"
      "blocks per second. With -w, a report every interval (redrawn in place on a terminal)\n"
      "and the requests applied, removed or failed. The JSON and the columns:\n"
      "docs/counters.md. Exit status: 0 ok (also when -w is stopped with Ctrl-C),\n"
      "1 no such request, the daemon refused or cannot be reached, 2 usage.");
  cmd->callback([o, &result] {
    result = o->watch ? stats_watch(o->daemon, o->name, o->interval, o->json)
                      : stats_once(o->daemon, o->name, o->json);
  });
}

}  // namespace srl::cli
