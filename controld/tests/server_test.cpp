// The daemon's gRPC service through a real server on a real Unix socket and
// a real client channel: Compile, Plan, Spaces and Filters answer as the
// command-line tools do; the socket is exclusive and a stale one replaced.
#include <doctest/doctest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "srl/controld/journal.h"
#include "srl/controld/server.h"
#include "srl/v1/srl.grpc.pb.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
namespace v1 = srl::v1;

namespace {

using srl::testing::TempDir;

// A daemon of its own in `dir`: socket, state, pins; no group.
srl::controld::ServerOptions options_in(const TempDir& dir) {
  srl::controld::ServerOptions o;
  o.socket = dir.path / "controld.sock";
  o.group = "srl-no-such-group";
  o.requests.state = dir.path / "state.db";
  o.requests.bpffs = dir.path / "bpffs";
  return o;
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<srl::controld::Server> server;
  std::unique_ptr<v1::Control::Stub> stub;
  Fixture() {
    const auto o = options_in(dir);
    server = srl::controld::Server::start(o);
    stub = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
  }
};

v1::Source source(const std::string& text) {
  v1::Source s;
  s.set_text(text);
  s.add_devices("eth9");
  return s;
}

}  // namespace

TEST_CASE("Compile: the DAG of a good request, the diagnostics of a bad one") {
  Fixture f;
  grpc::ClientContext c1;
  v1::CompileRequest req;
  *req.mutable_source() = source("(tcp) > (port, which=dst) 22> (count)");
  v1::CompileReply reply;
  REQUIRE(f.stub->Compile(&c1, req, &reply).ok());
  CHECK(reply.ok());
  CHECK(reply.nodes() == 4);  // rx, tcp, port, count
  CHECK(reply.edges() == 3);
  const auto dag = nlohmann::json::parse(reply.dag_json());
  CHECK(dag["nodes"].size() == 4);
  CHECK(dag["nodes"][3]["filter"] == "count");

  grpc::ClientContext c2;
  req.mutable_source()->set_text("(tcp) > (prot) 22> (count)");
  req.mutable_source()->set_file_name("bad.srl");
  v1::CompileReply bad;
  REQUIRE(f.stub->Compile(&c2, req, &bad).ok());
  CHECK_FALSE(bad.ok());
  REQUIRE(bad.diagnostics_size() >= 1);
  const auto& d = bad.diagnostics(0);
  CHECK(d.severity() == v1::Diagnostic::ERROR);
  CHECK(d.file() == "bad.srl");
  CHECK(d.line() == 1);
  CHECK(d.column() == 10);
  CHECK(d.message().find("prot") != std::string::npos);
  CHECK(d.rendered().find("bad.srl:1:10") != std::string::npos);
  CHECK(d.rendered().find('^') != std::string::npos);
  CHECK(bad.dag_json().empty());
}

TEST_CASE("Health: the standard health service answers SERVING") {
  Fixture f;
  // grpc.health.v1.Health/Check with an empty request (the whole server):
  // the reply's field 1, the status, is SERVING (1). Spelled as bytes, as a
  // probe without the health proto would send it.
  auto channel = grpc::CreateChannel("unix:" + (f.dir.path / "controld.sock").string(),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::ClientContext c;
  grpc::ByteBuffer request, reply;
  grpc::Slice empty("", 0);
  request = grpc::ByteBuffer(&empty, 1);
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&c, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                    [&](grpc::Status s) {
                      std::lock_guard lock(m);
                      status = std::move(s);
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock lock(m);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  std::vector<grpc::Slice> slices;
  REQUIRE(reply.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  CHECK(bytes == std::string("\x08\x01", 2));
}

TEST_CASE("Filters: the catalog, with spaces and options") {
  Fixture f;
  grpc::ClientContext c;
  v1::FiltersReply reply;
  REQUIRE(f.stub->Filters(&c, v1::FiltersRequest(), &reply).ok());
  bool port = false, tcpstream = false;
  for (const auto& filter : reply.filters()) {
    if (filter.name() == "port") {
      port = true;
      CHECK(filter.role() == "filter");
      REQUIRE(filter.options_size() == 1);
      CHECK(filter.options(0).name() == "which");
      CHECK(filter.options(0).default_value() == "any");
    }
    if (filter.name() == "tcpstream") {
      tcpstream = true;
      REQUIRE(filter.spaces_size() == 1);
      CHECK(filter.spaces(0) == "user");
    }
  }
  CHECK(port);
  CHECK(tcpstream);
}

TEST_CASE("Spaces and Plan: a dry run on the model Spaces returns") {
  Fixture f;
  grpc::ClientContext c1;
  v1::SpacesRequest sreq;
  sreq.add_devices("lo");
  v1::SpacesReply spaces;
  const auto st = f.stub->Spaces(&c1, sreq, &spaces);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  // Whatever the machine has, userspace cores are spaces, and the model is
  // the JSON `srl spaces -j` prints.
  bool user = false;
  for (const auto& s : spaces.spaces())
    user = user || s.kind() == "user";
  CHECK(user);
  const auto model = nlohmann::json::parse(spaces.model_json());
  CHECK(model.contains("spaces"));

  grpc::ClientContext c2;
  v1::PlanRequest preq;
  v1::Source s;
  s.set_text("(pcapin, file=\"in.pcap\") > (tcpstream) > (http) 1> (count)");
  *preq.add_sources() = s;
  preq.set_model_json(spaces.model_json());
  preq.set_no_profile(true);
  v1::PlanReply plan;
  const auto pst = f.stub->Plan(&c2, preq, &plan);
  REQUIRE_MESSAGE(pst.ok(), pst.error_message());
  CHECK(plan.ok());
  REQUIRE(plan.nodes_size() == 4);
  for (const auto& n : plan.nodes())
    CHECK(n.space().rfind("user:", 0) == 0);  // pcapin feeds userspace only
  CHECK(plan.cost_ns_per_s() > 0);
  CHECK(nlohmann::json::parse(plan.plan_json()).contains("nodes"));
  CHECK(plan.text().find("tcpstream") != std::string::npos);

  grpc::ClientContext c3;
  preq.set_model_json("{not json");
  v1::PlanReply bad;
  const auto bst = f.stub->Plan(&c3, preq, &bad);
  CHECK(bst.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bst.error_message().find("model_json is not valid JSON") != std::string::npos);

  grpc::ClientContext c4;
  v1::PlanReply none;
  CHECK(f.stub->Plan(&c4, v1::PlanRequest(), &none).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
}

namespace {

// A classic pcap of `tcp` TCP and `udp` UDP frames (Ethernet, IPv4).
void write_pcap(const fs::path& path, int tcp, int udp) {
  std::ofstream out(path, std::ios::binary);
  auto u32 = [&](std::uint32_t v) { out.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](std::uint16_t v) { out.write(reinterpret_cast<const char*>(&v), 2); };
  u32(0xa1b2c3d4);
  u16(2);
  u16(4);
  u32(0);
  u32(0);
  u32(65535);
  u32(1);  // Ethernet
  for (int i = 0; i < tcp + udp; ++i) {
    std::vector<std::uint8_t> f(14 + 20 + 20, 0);
    f[12] = 0x08;  // IPv4
    f[14] = 0x45;
    f[16] = 0;
    f[17] = 40;
    f[22] = 64;
    f[23] = i < tcp ? 6 : 17;
    for (std::size_t b = 0; b < 4; ++b) {
      f[26 + b] = static_cast<std::uint8_t>(10 + b);
      f[30 + b] = static_cast<std::uint8_t>(20 + b);
    }
    f[34] = 0x30;  // source port 12345
    f[35] = 0x39;
    f[37] = 80;
    f[46] = 0x50;  // TCP data offset
    u32(static_cast<std::uint32_t>(1700000000 + i));
    u32(0);
    u32(static_cast<std::uint32_t>(f.size()));
    u32(static_cast<std::uint32_t>(f.size()));
    out.write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  }
}

v1::ApplyRequest apply_request(const std::string& name, const std::string& text) {
  v1::ApplyRequest req;
  req.set_name(name);
  req.mutable_source()->set_text(text);
  return req;
}

// The counter of node `id` of request `name`, once its input is done
// (bounded wait).
std::optional<v1::NodeCounters> final_counters(v1::Control::Stub& stub, const std::string& name,
                                               const std::string& filter) {
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext c;
    v1::GetRequest g;
    g.set_name(name);
    v1::RequestInfo info;
    if (stub.Get(&c, g, &info).ok() && info.state() == v1::REQUEST_STATE_ENDED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  grpc::ClientContext c;
  v1::StatsRequest sreq;
  sreq.set_name(name);
  v1::StatsReply reply;
  if (!stub.Stats(&c, sreq, &reply).ok()) return std::nullopt;
  for (const auto& n : reply.nodes())
    if (n.filter() == filter) return n;
  return std::nullopt;
}

}  // namespace

TEST_CASE("Apply, List, Get, Stats, Remove: a userspace request over a capture") {
  Fixture f;
  const auto capture = f.dir.path / "in.pcap";
  write_pcap(capture, 7, 3);
  const std::string text = "(pcapin, file=\"" + capture.string() + "\") > (tcp) > (count)";

  grpc::ClientContext c1;
  v1::ApplyReply applied;
  const auto st = f.stub->Apply(&c1, apply_request("replay", text), &applied);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(applied.request().name() == "replay");
  CHECK(applied.request().owner_uid() == ::getuid());
  CHECK(applied.request().state() == v1::REQUEST_STATE_ACTIVE);
  // Applied now, to the second (a typed timestamp).
  CHECK(std::abs(applied.request().applied_at().seconds() - std::time(nullptr)) < 60);
  REQUIRE(applied.request().nodes_size() == 3);
  for (const auto& n : applied.request().nodes())
    CHECK(n.space() == "user");

  const auto count = final_counters(*f.stub, "replay", "count");
  REQUIRE(count.has_value());
  CHECK(count->blocks() == 7);
  CHECK(count->request() == "replay");

  grpc::ClientContext c2;
  v1::ApplyReply again;
  const auto dup = f.stub->Apply(&c2, apply_request("replay", text), &again);
  CHECK(dup.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(dup.error_message().find("a request named replay exists") != std::string::npos);

  grpc::ClientContext c3;
  v1::ListReply list;
  REQUIRE(f.stub->List(&c3, v1::ListRequest(), &list).ok());
  REQUIRE(list.requests_size() == 1);
  CHECK(list.requests(0).name() == "replay");
  CHECK(list.requests(0).state() == v1::REQUEST_STATE_ENDED);
  CHECK(list.requests(0).text() == text);

  grpc::ClientContext c4;
  v1::RemoveRequest rm;
  rm.set_name("replay");
  v1::RemoveReply removed;
  REQUIRE(f.stub->Remove(&c4, rm, &removed).ok());
  grpc::ClientContext c5;
  v1::GetRequest get;
  get.set_name("replay");
  v1::RequestInfo info;
  const auto gone = f.stub->Get(&c5, get, &info);
  CHECK(gone.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(gone.error_message() == "no request named replay");
  grpc::ClientContext c6;
  CHECK(f.stub->Remove(&c6, rm, &removed).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("Apply refuses bad names and bad requests, saying where and what") {
  Fixture f;
  grpc::ClientContext c1;
  v1::ApplyReply reply;
  const auto bad_name = f.stub->Apply(&c1, apply_request("../x", "(count)"), &reply);
  CHECK(bad_name.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad_name.error_message().find("bad request name '../x'") != std::string::npos);

  grpc::ClientContext c2;
  auto req = apply_request("web", "(tcp) > (prot) 80> (count)");
  req.mutable_source()->set_file_name("web.srl");
  req.mutable_source()->add_devices("lo");
  const auto bad = f.stub->Apply(&c2, req, &reply);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad.error_message().find("web.srl:1:") != std::string::npos);
  CHECK(bad.error_message().find("prot") != std::string::npos);

  grpc::ClientContext c3;
  const auto no_dev = f.stub->Apply(&c3, apply_request("web", "(tcp) > (count)"), &reply);
  CHECK(no_dev.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext c4;
  v1::ListReply list;
  REQUIRE(f.stub->List(&c4, v1::ListRequest(), &list).ok());
  CHECK(list.requests_size() == 0);
}

TEST_CASE("a request without a name gets one from its source") {
  CHECK(srl::controld::derived_request_name("examples/dns-capture.srl", "x", 0) == "dns-capture");
  CHECK(srl::controld::derived_request_name("/tmp/my web (1).srl", "x", 0) == "my-web--1-");
  CHECK(srl::controld::derived_request_name("/tmp/.hidden.srl", "x", 0) == "hidden");
  // Text alone: a name from its hash, the same for the same text.
  const auto a = srl::controld::derived_request_name("<expr>", "(udp) > (count)", 0);
  CHECK(a.starts_with("r-"));
  CHECK(a.size() == 10);
  CHECK(srl::controld::valid_request_name(a));
  CHECK(a == srl::controld::derived_request_name("<stdin>", "(udp) > (count)", 0));
  CHECK(a != srl::controld::derived_request_name("<expr>", "(tcp) > (count)", 0));
  CHECK(srl::controld::derived_request_name("", "(udp) > (count)", 0) == a);
  // Another user's same text: another name.
  CHECK(a != srl::controld::derived_request_name("<expr>", "(udp) > (count)", 65534));
}

TEST_CASE("a failing step is undone, named to the client, and journaled") {
  TempDir dir;
  auto o = options_in(dir);
  o.requests.fail_at = "start";
  const auto capture = dir.path / "in.pcap";
  write_pcap(capture, 2, 0);
  {
    auto server = srl::controld::Server::start(o);
    auto stub = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    v1::ApplyReply reply;
    const auto st = stub->Apply(
        &c, apply_request("r", "(pcapin, file=\"" + capture.string() + "\") > (count)"), &reply);
    CHECK(st.error_code() == grpc::StatusCode::ABORTED);
    CHECK(st.error_message().find("step 'start:engine'") != std::string::npos);
    CHECK(st.error_message().find("injected failure") != std::string::npos);
    CHECK(st.error_message().find("every step taken is undone") != std::string::npos);
    grpc::ClientContext c2;
    v1::ListReply list;
    REQUIRE(stub->List(&c2, v1::ListRequest(), &list).ok());
    CHECK(list.requests_size() == 0);
  }
  srl::controld::Journal journal(o.requests.state);
  CHECK(journal.open_transactions().empty());
  const auto t = journal.transaction(1);
  REQUIRE(t.has_value());
  CHECK(t->state == "rolled_back");
  REQUIRE(t->steps.size() == 2);  // engine, start:engine
  CHECK(t->steps[0].target == "engine");
  CHECK(t->steps[0].state == srl::controld::StepState::undone);
  CHECK(t->steps[1].target == "start:engine");
  CHECK(t->steps[1].state == srl::controld::StepState::failed);
}

TEST_CASE("requests outlive the daemon: stored; a replay that ended is not replayed again") {
  TempDir dir;
  auto o = options_in(dir);
  const auto capture = dir.path / "in.pcap";
  write_pcap(capture, 4, 1);
  const std::string text = "(pcapin, file=\"" + capture.string() + "\") > (udp) > (count)";
  {
    auto server = srl::controld::Server::start(o);
    auto stub = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    v1::ApplyReply reply;
    REQUIRE(stub->Apply(&c, apply_request("udp-replay", text), &reply).ok());
    const auto count = final_counters(*stub, "udp-replay", "count");
    REQUIRE(count.has_value());
    CHECK(count->blocks() == 1);
  }
  auto server = srl::controld::Server::start(o);
  CHECK(server->start_errors().empty());
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c;
  v1::GetRequest get;
  get.set_name("udp-replay");
  v1::RequestInfo info;
  REQUIRE(stub->Get(&c, get, &info).ok());
  CHECK(info.state() == v1::REQUEST_STATE_ENDED);
  CHECK(info.text() == text);
}

TEST_CASE("the socket: private without the group, exclusive, a stale one replaced") {
  TempDir dir;
  srl::controld::ServerOptions o;
  o.socket = dir.path / "sub" / "controld.sock";
  o.group = "srl-no-such-group";
  o.requests.state = dir.path / "state.db";
  o.requests.bpffs = dir.path / "bpffs";
  {
    auto server = srl::controld::Server::start(o);
    struct stat st {};
    REQUIRE(::stat(o.socket.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    CHECK_THROWS_WITH(srl::controld::Server::start(o),
                      ("another daemon answers on " + o.socket.string()).c_str());
    // The refused one left the running daemon's socket alone.
    auto stub = v1::Control::NewStub(
        grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    v1::FiltersReply reply;
    CHECK(stub->Filters(&c, v1::FiltersRequest(), &reply).ok());
  }
  CHECK_FALSE(fs::exists(o.socket));  // removed on shutdown
  // A socket file nobody answers on (a daemon that died) is replaced.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, o.socket.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);
  }
  auto server = srl::controld::Server::start(o);
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c;
  v1::FiltersReply reply;
  CHECK(stub->Filters(&c, v1::FiltersRequest(), &reply).ok());
}
