// controld_load: load and latency of the control daemon over its socket.
//
//   controld_load plan   --socket S [--calls 500] [--concurrency 500] --dev IF [--json]
//   controld_load cycles --socket S [--cycles 100] --dev IF [--replace] [--name N] [--json]
//   controld_load fill   --socket S [--requests 100] --dev IF [--json]
//
// `plan` keeps up to --concurrency Plan calls in flight (async, one channel)
// until --calls have completed. `cycles` applies and removes a request
// --cycles times (names load-1, load-2, ... unless --name), timing each call;
// with --replace it applies once, then replaces the request --cycles times
// alternating two texts, then removes it. `fill` applies --requests
// requests with a tcpdump expression each (fill-1, fill-2, ...), one after
// the other, so that the k-th apply deploys a program of k requests never
// compiled before (new); removes them newest first (each program left was
// deployed on the way up: cached); applies them again (cached) and removes
// them again; it reports each call's time at k = 1, 10, 50, 100. Exit status: 0 when every call
// succeeded, 1 when any failed, 2 on bad arguments.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "srl/v1/srl.grpc.pb.h"
#include "tcpdump_expressions.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode, socket, dev, name;
  int calls = 500, concurrency = 500, cycles = 100, requests = 100;
  bool replace = false, json = false;
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Nearest-rank percentile of a sorted sample.
double pct(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  auto i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  return v[std::clamp<size_t>(i, 1, v.size()) - 1];
}

struct Series {
  std::string label;
  std::vector<double> ms;  // successful calls only
  int failed = 0;
  std::string first_error;

  void fail(const grpc::Status& s) {
    if (failed++ == 0) first_error = s.error_message();
  }
  void print(bool json, bool& first) const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    double max = v.empty() ? 0 : v.back();
    if (json) {
      std::printf(
          "%s\"%s\":{\"ok\":%zu,\"failed\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
          "\"max_ms\":%.3f}",
          first ? "" : ",", label.c_str(), v.size(), failed, pct(v, 50), pct(v, 99), max);
      first = false;
      return;
    }
    std::printf("%s: ok %zu failed %d p50 %.3f ms p99 %.3f ms max %.3f ms\n", label.c_str(),
                v.size(), failed, pct(v, 50), pct(v, 99), max);
    if (failed) std::printf("%s: first error: %s\n", label.c_str(), first_error.c_str());
  }
};

std::shared_ptr<grpc::Channel> connect(const std::string& socket) {
  auto ch = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  // Connection setup is not part of any measured call.
  if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "controld_load: cannot connect to " << socket << "\n";
    std::exit(1);
  }
  return ch;
}

// Every call has a deadline so that a stuck daemon ends the run.
void set_deadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
}

int run_plan(const Options& o) {
  auto stub = srl::v1::Control::NewStub(connect(o.socket));
  grpc::CompletionQueue cq;
  struct Call {
    grpc::ClientContext ctx;
    srl::v1::PlanReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<srl::v1::PlanReply>> rpc;
    Clock::time_point t0;
  };
  srl::v1::PlanRequest req;
  auto* src = req.add_sources();
  src->set_text("(udp) > (port) 53> (count)");
  src->add_devices(o.dev);

  Series s{"plan", {}, 0, {}};
  int started = 0, done = 0, in_flight = 0;
  auto start = [&] {
    auto* c = new Call;
    set_deadline(c->ctx);
    c->t0 = Clock::now();
    c->rpc = stub->PrepareAsyncPlan(&c->ctx, req, &cq);
    c->rpc->StartCall();
    c->rpc->Finish(&c->reply, &c->status, c);
    ++started;
    ++in_flight;
  };
  auto t0 = Clock::now();
  while (started < o.calls && in_flight < o.concurrency)
    start();
  void* tag = nullptr;
  bool ok = false;
  while (done < o.calls && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> c(static_cast<Call*>(tag));
    double ms = ms_since(c->t0);
    --in_flight;
    ++done;
    if (c->status.ok() && c->reply.ok())
      s.ms.push_back(ms);
    else if (!c->status.ok())
      s.fail(c->status);
    else
      s.fail(grpc::Status(grpc::StatusCode::UNKNOWN, c->reply.diagnostics_size()
                                                         ? c->reply.diagnostics(0).message()
                                                         : "plan not ok"));
    if (started < o.calls) start();
  }
  double wall = ms_since(t0);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  bool first = true;
  if (o.json) {
    std::printf("{\"mode\":\"plan\",\"calls\":%d,\"concurrency\":%d,\"wall_ms\":%.3f,", o.calls,
                std::min(o.calls, o.concurrency), wall);
    s.print(true, first);
    std::printf("}\n");
  } else {
    std::printf("plan: %d calls, %d in flight, wall %.3f ms\n", o.calls,
                std::min(o.calls, o.concurrency), wall);
    s.print(false, first);
  }
  return s.failed ? 1 : 0;
}

int run_cycles(const Options& o) {
  auto stub = srl::v1::Control::NewStub(connect(o.socket));
  const std::string texts[2] = {"(udp) > (port) 53> (count)", "(udp) > (port) 1053> (count)"};
  auto apply = [&](Series& s, const std::string& name, const std::string& text, bool replace) {
    srl::v1::ApplyRequest req;
    req.set_name(name);
    req.set_replace(replace);
    req.mutable_source()->set_text(text);
    req.mutable_source()->add_devices(o.dev);
    srl::v1::ApplyReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx);
    auto t0 = Clock::now();
    auto st = stub->Apply(&ctx, req, &reply);
    if (st.ok())
      s.ms.push_back(ms_since(t0));
    else
      s.fail(st);
    return st.ok();
  };
  auto remove = [&](Series& s, const std::string& name) {
    srl::v1::RemoveRequest req;
    req.set_name(name);
    srl::v1::RemoveReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx);
    auto t0 = Clock::now();
    auto st = stub->Remove(&ctx, req, &reply);
    if (st.ok())
      s.ms.push_back(ms_since(t0));
    else
      s.fail(st);
  };

  // The first apply is apart: it may compile the program (cold cache).
  Series first{"apply_first", {}, 0, {}};
  Series applies{o.replace ? "replace" : "apply", {}, 0, {}};
  Series removes{"remove", {}, 0, {}};
  auto t0 = Clock::now();
  if (o.replace) {
    std::string name = o.name.empty() ? "load" : o.name;
    if (apply(first, name, texts[0], false)) {
      for (int i = 1; i <= o.cycles; ++i)
        apply(applies, name, texts[i % 2], true);
      remove(removes, name);
    }
  } else {
    for (int i = 1; i <= o.cycles; ++i) {
      std::string name = o.name.empty() ? "load-" + std::to_string(i) : o.name;
      if (apply(i == 1 ? first : applies, name, texts[0], false)) remove(removes, name);
    }
  }
  double wall = ms_since(t0);
  bool f = true;
  if (o.json) {
    std::printf("{\"mode\":\"%s\",\"cycles\":%d,\"wall_ms\":%.3f,",
                o.replace ? "replace" : "cycles", o.cycles, wall);
    first.print(true, f);
    applies.print(true, f);
    removes.print(true, f);
    std::printf("}\n");
  } else {
    std::printf("%s: %d cycles, wall %.3f ms\n", o.replace ? "replace" : "cycles", o.cycles, wall);
    first.print(false, f);
    applies.print(false, f);
    removes.print(false, f);
  }
  return first.failed + applies.failed + removes.failed ? 1 : 0;
}

int run_fill(const Options& o) {
  auto stub = srl::v1::Control::NewStub(connect(o.socket));
  const auto n = static_cast<std::size_t>(o.requests);
  const auto expressions = srl::testing::tcpdump_expressions(n);
  int failed = 0;
  std::string first_error;
  auto note = [&](const grpc::Status& st) {
    if (!st.ok() && failed++ == 0) first_error = st.error_message();
    return st.ok();
  };
  auto apply = [&](std::size_t k) {  // request k (1-based); its time in ms, < 0 on failure
    srl::v1::ApplyRequest req;
    req.set_name("fill-" + std::to_string(k));
    req.mutable_source()->set_text("(bpf, expr=\"" + expressions[k - 1] + "\") > (count)");
    req.mutable_source()->add_devices(o.dev);
    srl::v1::ApplyReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx);
    const auto t0 = Clock::now();
    return note(stub->Apply(&ctx, req, &reply)) ? ms_since(t0) : -1.0;
  };
  auto remove = [&](std::size_t k) {
    srl::v1::RemoveRequest req;
    req.set_name("fill-" + std::to_string(k));
    srl::v1::RemoveReply reply;
    grpc::ClientContext ctx;
    set_deadline(ctx);
    const auto t0 = Clock::now();
    return note(stub->Remove(&ctx, req, &reply)) ? ms_since(t0) : -1.0;
  };
  // Per k: apply new, remove (to k - 1 requests), apply cached, remove again.
  std::vector<double> fresh(n + 1), gone(n + 1), cached(n + 1), gone_again(n + 1);
  for (std::size_t k = 1; k <= n && !failed; ++k)
    fresh[k] = apply(k);
  for (std::size_t k = n; k >= 1 && !failed; --k)
    gone[k] = remove(k);
  for (std::size_t k = 1; k <= n && !failed; ++k)
    cached[k] = apply(k);
  for (std::size_t k = n; k >= 1 && !failed; --k)
    gone_again[k] = remove(k);
  if (failed) {
    std::fprintf(stderr, "controld_load fill: %d call(s) failed, first: %s\n", failed,
                 first_error.c_str());
    return 1;
  }
  std::vector<std::size_t> ks;
  for (std::size_t k : {std::size_t{1}, std::size_t{10}, std::size_t{50}, std::size_t{100}})
    if (k <= n) ks.push_back(k);
  if (ks.empty() || ks.back() != n) ks.push_back(n);
  if (o.json) {
    std::printf("{\"mode\":\"fill\",\"requests\":%zu,\"rows\":[", n);
    for (std::size_t i = 0; i < ks.size(); ++i) {
      const auto k = ks[i];
      std::printf(
          "%s{\"k\":%zu,\"apply_new_ms\":%.2f,\"apply_cached_ms\":%.2f,"
          "\"remove_ms\":%.2f,\"remove_again_ms\":%.2f}",
          i ? "," : "", k, fresh[k], cached[k], gone[k], gone_again[k]);
    }
    std::printf("],\"apply_new_ms_by_k\":[");
    for (std::size_t k = 1; k <= n; ++k)
      std::printf("%s%.1f", k > 1 ? "," : "", fresh[k]);
    std::printf("],\"apply_cached_ms_by_k\":[");
    for (std::size_t k = 1; k <= n; ++k)
      std::printf("%s%.1f", k > 1 ? "," : "", cached[k]);
    std::printf("]}\n");
  } else {
    std::printf("%6s %14s %17s %11s %17s\n", "k", "apply new ms", "apply cached ms", "remove ms",
                "remove again ms");
    for (const auto k : ks)
      std::printf("%6zu %14.1f %17.1f %11.1f %17.1f\n", k, fresh[k], cached[k], gone[k],
                  gone_again[k]);
  }
  return 0;
}

int usage() {
  std::cerr << "usage: controld_load plan --socket S [--calls N] [--concurrency N] --dev IF "
               "[--json]\n"
               "       controld_load cycles --socket S [--cycles N] --dev IF [--replace] "
               "[--name N] [--json]\n"
               "       controld_load fill --socket S [--requests N] --dev IF [--json]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) return usage();
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "controld_load: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&] {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 1000000) {
        std::cerr << "controld_load: bad number for " << a << ": " << v << "\n";
        std::exit(2);
      }
      return static_cast<int>(n);
    };
    if (a == "--socket")
      o.socket = value();
    else if (a == "--dev")
      o.dev = value();
    else if (a == "--name")
      o.name = value();
    else if (a == "--calls")
      o.calls = number();
    else if (a == "--concurrency")
      o.concurrency = number();
    else if (a == "--cycles")
      o.cycles = number();
    else if (a == "--requests")
      o.requests = number();
    else if (a == "--replace")
      o.replace = true;
    else if (a == "--json")
      o.json = true;
    else
      return usage();
  }
  if (o.socket.empty() || o.dev.empty()) return usage();
  if (o.mode == "plan") return run_plan(o);
  if (o.mode == "cycles") return run_cycles(o);
  if (o.mode == "fill") return run_fill(o);
  return usage();
}
