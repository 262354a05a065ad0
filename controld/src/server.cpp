// The srl.v1.Control service (server.h): the read-only methods, over the
// compiler, the optimizer and the catalog.
#include "srl/controld/server.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "srl/compiler/compiler.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/optimizer/profile.h"
#include "srl/v1/srl.grpc.pb.h"

namespace srl::controld {
namespace {

namespace v1 = ::srl::v1;

void fill_diagnostics(const compiler::CompileResult& r,
                      google::protobuf::RepeatedPtrField<v1::Diagnostic>* out) {
  for (const auto& d : r.diagnostics.all()) {
    auto* pd = out->Add();
    pd->set_severity(d.severity == compiler::Severity::error     ? v1::Diagnostic::ERROR
                     : d.severity == compiler::Severity::warning ? v1::Diagnostic::WARNING
                                                                 : v1::Diagnostic::NOTE);
    pd->set_file(r.source ? r.source->name() : "");
    pd->set_line(d.loc.line);
    pd->set_column(d.loc.col);
    pd->set_message(d.message);
    if (r.source) pd->set_rendered(compiler::render(d, *r.source));
  }
}

compiler::CompileResult compile(const v1::Source& s) {
  compiler::CompileOptions o;
  o.file_name = s.file_name().empty() ? "<expr>" : s.file_name();
  o.default_devices.assign(s.devices().begin(), s.devices().end());
  return compiler::compile(s.text(), o);
}

std::optional<optimizer::Profile> default_profile() {
  const auto p = optimizer::default_profile_path();
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return std::nullopt;
  return optimizer::load_profile(p);
}

std::string role_name(filters::Role r) {
  return std::string(filters::to_string(r));
}

std::string option_text(const filters::OptionValue& v) {
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  return std::get<std::string>(v);
}

}  // namespace

struct Server::Service final : v1::Control::Service {
  ServerOptions options;

  grpc::Status Compile(grpc::ServerContext*, const v1::CompileRequest* req,
                       v1::CompileReply* reply) override {
    const auto r = compile(req->source());
    reply->set_ok(r.ok());
    fill_diagnostics(r, reply->mutable_diagnostics());
    if (r.ok() && r.dag) {
      reply->set_dag_json(compiler::to_json(*r.dag, r.source.get()).dump());
      reply->set_nodes(static_cast<std::uint32_t>(r.dag->node_count()));
      reply->set_edges(static_cast<std::uint32_t>(r.dag->edge_count()));
    }
    return grpc::Status::OK;
  }

  grpc::Status Plan(grpc::ServerContext*, const v1::PlanRequest* req,
                    v1::PlanReply* reply) override {
    if (req->sources().empty())
      return {grpc::StatusCode::INVALID_ARGUMENT, "Plan: no source given; expected at least one"};
    std::vector<compiler::CompileResult> compiled;
    bool ok = true;
    for (const auto& s : req->sources()) {
      compiled.push_back(compile(s));
      fill_diagnostics(compiled.back(), reply->mutable_diagnostics());
      ok = ok && compiled.back().ok();
    }
    reply->set_ok(ok);
    if (!ok) return grpc::Status::OK;
    try {
      optimizer::SystemModel model;
      if (!req->model_json().empty()) {
        model = optimizer::model_from_json(nlohmann::json::parse(req->model_json()));
      } else {
        optimizer::DiscoveryOptions d;
        d.devices = options.devices;
        for (const auto& s : req->sources())
          for (const auto& dev : s.devices())
            if (std::find(d.devices.begin(), d.devices.end(), dev) == d.devices.end())
              d.devices.push_back(dev);
        model = optimizer::discover(d);
      }
      std::optional<optimizer::Profile> profile;
      if (!req->no_profile()) profile = default_profile();
      if (profile) optimizer::apply(*profile, model);
      optimizer::PlanOptions po;
      po.profile = profile ? &*profile : nullptr;
      std::vector<optimizer::RequestInput> inputs;
      for (std::size_t i = 0; i < compiled.size(); ++i)
        inputs.push_back({&*compiled[i].dag,
                          compiled.size() > 1 ? "r" + std::to_string(i + 1) : std::string(),
                          compiled[i].source.get()});
      const auto plan = optimizer::plan(inputs, model, po);
      for (const auto& n : plan.nodes) {
        auto* pn = reply->add_nodes();
        pn->set_id(n.id);
        pn->set_filter(n.filter);
        pn->set_space(n.space);
        pn->set_why(n.why);
      }
      reply->set_cost_ns_per_s(plan.total_cost_ns_per_s);
      reply->set_input_rate_pps(plan.input_rate_pps);
      reply->set_plan_json(optimizer::to_json(plan).dump());
      reply->set_text(optimizer::to_text(plan));
    } catch (const nlohmann::json::exception& e) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              std::string("Plan: model_json is not valid JSON: ") + e.what()};
    } catch (const std::exception& e) {
      return {grpc::StatusCode::FAILED_PRECONDITION, std::string("Plan: ") + e.what()};
    }
    return grpc::Status::OK;
  }

  grpc::Status Spaces(grpc::ServerContext*, const v1::SpacesRequest* req,
                      v1::SpacesReply* reply) override {
    try {
      optimizer::DiscoveryOptions d;
      d.devices.assign(req->devices().begin(), req->devices().end());
      if (d.devices.empty()) d.devices = options.devices;
      const auto model = optimizer::discover(d);
      for (const auto& s : model.spaces) {
        auto* ps = reply->add_spaces();
        ps->set_id(s.id);
        ps->set_kind(std::string(optimizer::to_string(s.kind)));
        ps->set_device(s.device);
        ps->set_mode(s.mode);
        ps->set_emulated(s.emulated);
      }
      for (const auto& c : model.channels) {
        auto* pc = reply->add_channels();
        pc->set_from(c.from);
        pc->set_to(c.to);
        pc->set_kind(std::string(optimizer::to_string(c.kind)));
      }
      reply->set_model_json(optimizer::to_json(model).dump());
    } catch (const std::exception& e) {
      return {grpc::StatusCode::FAILED_PRECONDITION, std::string("Spaces: ") + e.what()};
    }
    return grpc::Status::OK;
  }

  grpc::Status Filters(grpc::ServerContext*, const v1::FiltersRequest*,
                       v1::FiltersReply* reply) override {
    for (const auto& f : filters::Catalog::builtin().all()) {
      auto* pf = reply->add_filters();
      pf->set_name(std::string(f.name));
      pf->set_summary(std::string(f.summary));
      pf->set_role(role_name(f.role));
      for (std::size_t k = 0; k < filters::kSpaceKinds; ++k)
        if (f.cost[k]) pf->add_spaces(std::string(to_string(static_cast<filters::SpaceKind>(k))));
      for (const auto& o : f.options) {
        auto* po = pf->add_options();
        po->set_name(std::string(o.name));
        po->set_type(std::string(filters::to_string(o.type)));
        po->set_required(o.required);
        if (o.default_value) po->set_default_value(option_text(*o.default_value));
        po->set_help(std::string(o.help));
      }
      pf->set_class_meaning(std::string(f.class_meaning));
      pf->set_state(std::string(filters::to_string(f.state)));
    }
    return grpc::Status::OK;
  }
};

namespace {

// True when something accepts connections on the Unix socket `path`.
bool socket_answers(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path) {
    ::close(fd);
    return false;
  }
  std::copy(p.begin(), p.end(), addr.sun_path);
  const bool up = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return up;
}

}  // namespace

std::unique_ptr<Server> Server::start(const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server());
  const auto& path = options.socket;
  if (path.string().size() >= sizeof(sockaddr_un{}.sun_path))
    throw std::runtime_error("socket path " + path.string() + " is too long for a Unix socket");
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (std::filesystem::exists(path, ec)) {
    if (socket_answers(path))
      throw std::runtime_error("another daemon answers on " + path.string());
    std::filesystem::remove(path, ec);  // left by a daemon that died
  }
  s->service_ = std::make_unique<Service>();
  s->service_->options = options;
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path.string(), grpc::InsecureServerCredentials());
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_) throw std::runtime_error("cannot listen on " + path.string());
  s->socket_ = path;  // ours from here: removed at shutdown
  // Only root and the srl group may connect.
  const group* g = getgrnam(options.group.c_str());
  if (g != nullptr && ::chown(path.c_str(), 0, g->gr_gid) == 0)
    ::chmod(path.c_str(), 0660);
  else
    ::chmod(path.c_str(), 0600);
  return s;
}

Server::~Server() {
  if (server_) server_->Shutdown();
  std::error_code ec;
  if (!socket_.empty()) std::filesystem::remove(socket_, ec);
}

void Server::wait() {
  server_->Wait();
}

void Server::shutdown() {
  server_->Shutdown();
}

}  // namespace srl::controld
