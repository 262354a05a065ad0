// The daemon's gRPC service through a real server on a real Unix socket and
// a real client channel: Compile, Plan, Spaces and Filters answer as the
// command-line tools do; the socket is exclusive and a stale one replaced.
#include <doctest/doctest.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "srl/controld/server.h"
#include "srl/v1/srl.grpc.pb.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
namespace v1 = srl::v1;

namespace {

using srl::testing::TempDir;

struct Fixture {
  TempDir dir;
  std::unique_ptr<srl::controld::Server> server;
  std::unique_ptr<v1::Control::Stub> stub;
  Fixture() {
    srl::controld::ServerOptions o;
    o.socket = dir.path / "controld.sock";
    o.group = "srl-no-such-group";
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

TEST_CASE("methods that need the daemon's state answer UNIMPLEMENTED") {
  Fixture f;
  grpc::ClientContext c;
  v1::ApplyReply reply;
  CHECK(f.stub->Apply(&c, v1::ApplyRequest(), &reply).error_code() ==
        grpc::StatusCode::UNIMPLEMENTED);
}

TEST_CASE("the socket: private without the group, exclusive, a stale one replaced") {
  TempDir dir;
  srl::controld::ServerOptions o;
  o.socket = dir.path / "sub" / "controld.sock";
  o.group = "srl-no-such-group";
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
  std::ofstream(o.socket).put('x');
  auto server = srl::controld::Server::start(o);
  auto stub = v1::Control::NewStub(
      grpc::CreateChannel("unix:" + o.socket.string(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c;
  v1::FiltersReply reply;
  CHECK(stub->Filters(&c, v1::FiltersRequest(), &reply).ok());
}
