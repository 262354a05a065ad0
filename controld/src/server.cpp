// The srl.v1.Control service (server.h): the read-only methods over the
// compiler, the optimizer and the catalog; the request methods over the
// RequestManager, each checked against the caller's credentials.
#include "srl/controld/server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <google/protobuf/util/time_util.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "log.h"
#include "metrics.h"
#include "srl/compiler/compiler.h"
#include "srl/control/pipeline.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/optimizer/profile.h"
#include "srl/runtime/datapath.h"
#include "srl/v1/srl.grpc.pb.h"
#include "unix_listener.h"

namespace srl::controld {
namespace {

namespace v1 = ::srl::v1;
using optimizer::now_utc;

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

std::string role_name(filters::Role r) {
  return std::string(filters::to_string(r));
}

std::string option_text(const filters::OptionValue& v) {
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  return std::get<std::string>(v);
}

grpc::Status status_of(const RequestError& e) {
  using K = RequestError::Kind;
  switch (e.kind()) {
    case K::invalid:
      return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
    case K::not_found:
      return {grpc::StatusCode::NOT_FOUND, e.what()};
    case K::exists:
      return {grpc::StatusCode::ALREADY_EXISTS, e.what()};
    case K::denied:
      return {grpc::StatusCode::PERMISSION_DENIED, e.what()};
    case K::failed:
      return {grpc::StatusCode::ABORTED, e.what()};
    case K::exhausted:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()};
  }
  return {grpc::StatusCode::INTERNAL, e.what()};
}

std::string user_name(std::uint32_t uid) {
  if (const passwd* pw = getpwuid(uid); pw != nullptr) return pw->pw_name;
  return std::to_string(uid);
}

void fill_info(const RequestInfo& r, v1::RequestInfo* out) {
  out->set_name(r.name);
  out->set_owner(user_name(r.owner_uid));
  out->set_owner_uid(r.owner_uid);
  out->set_text(r.text);
  out->set_state(r.state == "active"        ? v1::REQUEST_STATE_ACTIVE
                 : r.state == "ended"       ? v1::REQUEST_STATE_ENDED
                 : r.state == "failed"      ? v1::REQUEST_STATE_FAILED
                 : r.state == "unrecorded"  ? v1::REQUEST_STATE_UNRECORDED
                 : r.state == "not running" ? v1::REQUEST_STATE_NOT_RUNNING
                                            : v1::REQUEST_STATE_UNSPECIFIED);
  // Stored as "2026-12-06T12:30:01Z"; an unreadable one stays unset.
  if (google::protobuf::Timestamp at;
      google::protobuf::util::TimeUtil::FromString(r.applied_at, &at))
    *out->mutable_applied_at() = at;
  for (const auto& n : r.nodes) {
    auto* pn = out->add_nodes();
    pn->set_id(n.id);
    pn->set_filter(n.filter);
    pn->set_space(n.space);
    pn->set_why(n.why);
    pn->set_name(n.name);
  }
}

void set_timestamp(std::int64_t ns, google::protobuf::Timestamp* out) {
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<std::int32_t>(ns % 1000000000));
}

// The counters' one shape (docs/counters.md) as the proto carries it.
void fill_stats(const runtime::CounterReport& r, v1::StatsReply* out) {
  out->set_counters_version(runtime::kCountersVersion);
  set_timestamp(r.time_ns, out->mutable_time());
  if (r.interval_s) out->set_interval_s(*r.interval_s);
  for (const auto& n : r.nodes) {
    auto* pn = out->add_nodes();
    pn->set_request(n.request);
    pn->set_node(n.node);
    pn->set_name(n.name);
    pn->set_filter(n.filter);
    pn->set_space(n.space);
    pn->set_blocks(n.blocks);
    pn->set_bytes(n.bytes);
    pn->set_accepted(n.accepted);
    pn->set_dropped(n.dropped);
    pn->set_lost(n.lost);
    if (n.blocks_per_s) pn->set_blocks_per_s(*n.blocks_per_s);
    if (n.bytes_per_s) pn->set_bytes_per_s(*n.bytes_per_s);
    pn->set_failure(n.failure);
    pn->set_by_class(n.by_class);
    for (const auto& c : n.classes) {
      auto* pc = pn->add_classes();
      pc->set_other(c.cls == runtime::kOtherClass);
      pc->set_class_value(c.cls == runtime::kOtherClass ? 0 : c.cls);
      pc->set_name(c.name);
      pc->set_blocks(c.blocks);
      pc->set_bytes(c.bytes);
      if (c.blocks_per_s) pc->set_blocks_per_s(*c.blocks_per_s);
      if (c.bytes_per_s) pc->set_bytes_per_s(*c.bytes_per_s);
    }
  }
  for (const auto& c : r.channels) {
    auto* pc = out->add_channels();
    for (const auto& q : c.requests)
      pc->add_requests(q);
    pc->set_name(c.name);
    pc->set_kind(c.kind);
    pc->set_blocks(c.blocks);
    pc->set_bytes(c.bytes);
    pc->set_lost(c.lost);
    if (c.blocks_per_s) pc->set_blocks_per_s(*c.blocks_per_s);
    if (c.bytes_per_s) pc->set_bytes_per_s(*c.bytes_per_s);
  }
}

// What a caller may do.
struct Caller {
  std::uint32_t uid = 0;
  std::string user;
  bool root = false;
  bool member = false;  // of the socket's group

  bool may_see(std::uint32_t owner) const { return root || owner == uid; }
};

}  // namespace

struct Server::Service final : v1::Control::Service {
  ServerOptions options;
  UnixListener* listener = nullptr;
  std::unique_ptr<RequestManager> requests;
  // Watch streams open, per user other than root (member_watches).
  std::mutex watches_mutex;
  std::map<std::uint32_t, std::size_t> watches;

  // The caller of a call, or the status that refuses it: anyone neither
  // root nor in the group gets only the catalog and the compiler.
  std::variant<Caller, grpc::Status> caller(grpc::ServerContext* ctx, const char* method) const {
    const auto cred = credentials_of(ctx);
    if (!cred) {
      const bool tcp = ctx->peer().starts_with("ipv");
      return grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          std::string(method) + ": the caller's credentials are unknown" +
              (tcp ? " (the client certificate's common name is no local user)" : ""));
    }
    Caller c{cred->uid, cred->user, cred->uid == 0, member_of(*cred, options.group)};
    if (!c.root && !c.member) {
      log::event("warning", "refused",
                 {{"method", method}, {"user", c.user}, {"uid", std::to_string(c.uid)}});
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          std::string(method) + ": user " + c.user + " (uid " +
                              std::to_string(c.uid) + ") is neither root nor in group " +
                              options.group);
    }
    return c;
  }

  // Unix socket: the kernel's SO_PEERCRED. TCP: the user the verified
  // client certificate's common name names.
  std::optional<PeerCredentials> credentials_of(grpc::ServerContext* ctx) const {
    const std::string peer = ctx->peer();
    if (!peer.starts_with("ipv4:") && !peer.starts_with("ipv6:"))
      return listener != nullptr ? listener->credentials(peer) : std::nullopt;
    const auto auth = ctx->auth_context();
    if (!auth || !auth->IsPeerAuthenticated()) return std::nullopt;
    const auto names = auth->FindPropertyValues("x509_common_name");
    if (names.empty()) return std::nullopt;
    const std::string name(names.front().data(), names.front().size());
    const passwd* pw = getpwnam(name.c_str());
    if (pw == nullptr) return std::nullopt;
    return local_user(pw->pw_uid, pw->pw_gid);
  }

  // The request `name` if the caller may see it (others' requests are
  // reported as not found to members: their names are not theirs to learn).
  std::variant<RequestInfo, grpc::Status> visible(const Caller& c, const std::string& name,
                                                  const char* method) const {
    try {
      auto r = requests->get(name);
      if (!c.may_see(r.owner_uid))
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            std::string(method) + ": no request named " + name + " of " + c.user);
      return r;
    } catch (const RequestError& e) {
      return status_of(e);
    }
  }

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

  grpc::Status Plan(grpc::ServerContext* ctx, const v1::PlanRequest* req,
                    v1::PlanReply* reply) override {
    auto who = caller(ctx, "Plan");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    const auto& c = std::get<Caller>(who);
    if (req->sources().empty())
      return {grpc::StatusCode::INVALID_ARGUMENT, "Plan: no source given; expected at least one"};
    std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
    bool ok = true;
    for (const auto& s : req->sources()) {
      auto r = std::make_shared<compiler::CompileResult>(compile(s));
      fill_diagnostics(*r, reply->mutable_diagnostics());
      ok = ok && r->ok();
      compiled.push_back(std::move(r));
    }
    reply->set_ok(ok);
    if (!ok) return grpc::Status::OK;
    try {
      const auto planned = control::merge(compiled, control::numbered_labels(compiled.size()));
      optimizer::SystemModel model;
      if (!req->model_json().empty()) {
        try {
          model = optimizer::model_from_json(nlohmann::json::parse(req->model_json()));
        } catch (const nlohmann::json::exception& e) {
          throw control::PipelineError(control::Stage::input,
                                       std::string("model_json is not valid JSON: ") + e.what());
        } catch (const std::exception& e) {
          throw control::PipelineError(control::Stage::input,
                                       std::string("model_json: ") + e.what());
        }
      } else {
        optimizer::DiscoveryOptions d;
        d.devices = options.devices;
        // What Apply would plan the request within (its hooks' admission).
        if (options.requests.verifier_admission != 0)
          d.verifier_limit = options.requests.verifier_admission;
        for (const auto& s : req->sources())
          for (const auto& dev : s.devices())
            if (std::find(d.devices.begin(), d.devices.end(), dev) == d.devices.end())
              d.devices.push_back(dev);
        model = control::discover(planned, d);
      }
      const auto plan = control::plan(planned, model, control::cost_profile(!req->no_profile()));
      for (const auto& n : plan.nodes) {
        auto* pn = reply->add_nodes();
        pn->set_id(n.id);
        pn->set_filter(n.filter);
        pn->set_space(n.space);
        pn->set_why(n.why);
        pn->set_name(n.name);
      }
      reply->set_cost_ns_per_s(plan.total_cost_ns_per_s);
      reply->set_input_rate_pps(plan.input_rate_pps);
      reply->set_plan_json(optimizer::to_json(plan).dump());
      reply->set_text(optimizer::to_text(plan));
      if (!req->name().empty()) {
        if (req->sources_size() != 1)
          return {grpc::StatusCode::INVALID_ARGUMENT,
                  "Plan: a name goes with exactly one source, the request it would apply"};
        ApplySpec spec;
        spec.name = req->name();
        spec.text = req->sources(0).text();
        spec.file_name = req->sources(0).file_name();
        spec.devices.assign(req->sources(0).devices().begin(), req->sources(0).devices().end());
        spec.owner_uid = c.uid;
        for (const auto& line :
             requests->diff(spec, c.root ? std::nullopt : std::optional<std::uint32_t>(c.uid)))
          reply->add_changes(line);
      }
    } catch (const RequestError& e) {
      return status_of(e);
    } catch (const control::PipelineError& e) {
      return {e.stage() == control::Stage::input ? grpc::StatusCode::INVALID_ARGUMENT
                                                 : grpc::StatusCode::FAILED_PRECONDITION,
              std::string("Plan: ") + e.what()};
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
      for (const auto& c : f.class_names) {
        auto* pc = pf->add_class_names();
        pc->set_name(std::string(c.name));
        pc->set_value(c.value);
      }
      pf->set_state(std::string(filters::to_string(f.state)));
    }
    return grpc::Status::OK;
  }

  grpc::Status Apply(grpc::ServerContext* ctx, const v1::ApplyRequest* req,
                     v1::ApplyReply* reply) override {
    auto who = caller(ctx, "Apply");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    const auto& c = std::get<Caller>(who);
    ApplySpec spec;
    spec.name = req->name();
    spec.text = req->source().text();
    spec.file_name = req->source().file_name().empty() ? "<expr>" : req->source().file_name();
    spec.devices.assign(req->source().devices().begin(), req->source().devices().end());
    spec.replace = req->replace();
    spec.owner_uid = c.uid;
    if (spec.name.empty())
      spec.name = derived_request_name(req->source().file_name(), spec.text, c.uid);
    if (!c.root) spec.kernel_filters = options.member_kernel_filters;
    if (spec.replace) {
      auto r = visible(c, spec.name, "Apply");
      if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
    }
    if (!c.root) {
      spec.max_owned = options.member_requests;
      spec.max_kernel_insns = options.member_kernel_insns;
    }
    try {
      fill_info(requests->apply(spec), reply->mutable_request());
    } catch (const RequestError& e) {
      return status_of(e);
    } catch (const std::exception& e) {
      return {grpc::StatusCode::INTERNAL, "Apply " + spec.name + ": " + e.what()};
    }
    return grpc::Status::OK;
  }

  grpc::Status Remove(grpc::ServerContext* ctx, const v1::RemoveRequest* req,
                      v1::RemoveReply*) override {
    auto who = caller(ctx, "Remove");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    auto r = visible(std::get<Caller>(who), req->name(), "Remove");
    if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
    try {
      requests->remove(req->name());
    } catch (const RequestError& e) {
      return status_of(e);
    } catch (const std::exception& e) {
      return {grpc::StatusCode::INTERNAL, "Remove " + req->name() + ": " + e.what()};
    }
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest*,
                    v1::ListReply* reply) override {
    auto who = caller(ctx, "List");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    const auto& c = std::get<Caller>(who);
    for (const auto& r : requests->list())
      if (c.may_see(r.owner_uid)) fill_info(r, reply->add_requests());
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                   v1::RequestInfo* reply) override {
    auto who = caller(ctx, "Get");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    auto r = visible(std::get<Caller>(who), req->name(), "Get");
    if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
    fill_info(std::get<RequestInfo>(r), reply);
    return grpc::Status::OK;
  }

  // The counters of `name` (empty: every request the caller may see).
  std::variant<std::vector<NodeCounters>, grpc::Status> counters(const Caller& c,
                                                                 const std::string& name,
                                                                 const char* method) const {
    if (!name.empty()) {
      auto r = visible(c, name, method);
      if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
    }
    try {
      auto all = requests->stats(name);
      if (!c.root) {
        std::set<std::string> mine;
        for (const auto& r : requests->list())
          if (c.may_see(r.owner_uid)) mine.insert(r.name);
        std::erase_if(all, [&](const auto& n) { return !mine.contains(n.request); });
      }
      return all;
    } catch (const RequestError& e) {
      return status_of(e);
    }
  }

  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* req,
                     v1::StatsReply* reply) override {
    auto who = caller(ctx, "Stats");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    auto r = report(std::get<Caller>(who), req->name(), "Stats");
    if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
    fill_stats(std::get<runtime::CounterReport>(r), reply);
    return grpc::Status::OK;
  }

  // The channels of the units that hold a request the caller may see (and,
  // with a name, that request).
  std::vector<runtime::ChannelReport> channels(const Caller& c, const std::string& name) const {
    std::set<std::string> mine;
    for (const auto& r : requests->list())
      if (c.may_see(r.owner_uid)) mine.insert(r.name);
    std::vector<runtime::ChannelReport> out;
    for (const auto& ch : requests->channels()) {
      if (std::none_of(ch.requests.begin(), ch.requests.end(), [&](const auto& r) {
            return mine.contains(r) && (name.empty() || r == name);
          }))
        continue;
      runtime::ChannelReport pc{ch.name, ch.kind, {}, ch.blocks, ch.bytes, ch.drops, {}, {}};
      for (const auto& r : ch.requests)  // other users' requests stay unnamed
        if (mine.contains(r)) pc.requests.push_back(r);
      out.push_back(std::move(pc));
    }
    return out;
  }

  // What Stats answers and Watch sends: the counters read now.
  std::variant<runtime::CounterReport, grpc::Status> report(const Caller& c,
                                                            const std::string& name,
                                                            const char* method) const {
    runtime::CounterReport r;
    r.time_ns = runtime::wall_clock_ns();
    auto n = counters(c, name, method);
    if (auto* st = std::get_if<grpc::Status>(&n)) return *st;
    r.nodes = std::move(std::get<std::vector<NodeCounters>>(n));
    r.channels = channels(c, name);
    return r;
  }

  // Counters every interval; applied and removed events as the set of
  // visible requests changes between two looks.
  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::Event>* writer) override {
    auto who = caller(ctx, "Watch");
    if (auto* st = std::get_if<grpc::Status>(&who)) return *st;
    const auto& c = std::get<Caller>(who);
    const auto interval = std::chrono::milliseconds(
        req->interval_ms() == 0
            ? 1000
            : std::max(req->interval_ms(), c.root ? 10u : options.member_watch_interval_ms));
    // A stream counts against its user's watches while it is open.
    struct Held {
      Service* s;
      std::uint32_t uid;
      ~Held() {
        if (s == nullptr) return;
        std::lock_guard lock(s->watches_mutex);
        if (--s->watches[uid] == 0) s->watches.erase(uid);
      }
    } held{nullptr, c.uid};
    if (!c.root) {
      std::lock_guard lock(watches_mutex);
      auto& open = watches[c.uid];
      if (open >= options.member_watches) {
        if (open == 0) watches.erase(c.uid);
        return {grpc::StatusCode::RESOURCE_EXHAUSTED,
                "Watch: " + c.user + " has " + std::to_string(open) +
                    " watches open, the most a user other than root may (--member-watches)"};
      }
      ++open;
      held.s = this;
    }
    std::map<std::string, std::string> known;  // name -> applied_at
    std::optional<runtime::CounterReport> before;
    bool first = true;
    while (!ctx->IsCancelled()) {
      std::map<std::string, std::string> now;
      for (const auto& r : requests->list())
        if (c.may_see(r.owner_uid) && (req->name().empty() || r.name == req->name()))
          now[r.name] = r.state == "failed" ? "failed" : r.applied_at;
      if (!first) {
        for (const auto& [name, at] : now) {
          const auto it = known.find(name);
          if (it != known.end() && it->second == at) continue;
          v1::Event e;
          set_timestamp(runtime::wall_clock_ns(), e.mutable_time());
          if (at == "failed")
            e.set_failed(name);
          else
            e.set_applied(name);
          if (!writer->Write(e)) return grpc::Status::OK;
        }
        for (const auto& [name, at] : known)
          if (!now.contains(name)) {
            v1::Event e;
            set_timestamp(runtime::wall_clock_ns(), e.mutable_time());
            e.set_removed(name);
            if (!writer->Write(e)) return grpc::Status::OK;
          }
      }
      known = std::move(now);
      first = false;
      auto r = report(c, req->name(), "Watch");
      if (auto* st = std::get_if<grpc::Status>(&r)) return *st;
      auto& counters_now = std::get<runtime::CounterReport>(r);
      // Rates over the interval since this watch's last counters.
      if (before) runtime::add_rates(counters_now, *before);
      v1::Event e;
      set_timestamp(counters_now.time_ns, e.mutable_time());
      fill_stats(counters_now, e.mutable_counters());
      before = std::move(counters_now);
      if (!writer->Write(e)) return grpc::Status::OK;
      // Sleep in short steps so that a cancelled watch ends promptly.
      const auto until = std::chrono::steady_clock::now() + interval;
      while (!ctx->IsCancelled() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return grpc::Status::OK;
  }
};

std::unique_ptr<Server> Server::start(const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server());
  // The socket first: a second daemon must not touch the first one's state.
  s->listener_ = UnixListener::open(options.socket, options.group);
  s->service_ = std::make_unique<Service>();
  s->service_->options = options;
  s->service_->listener = s->listener_.get();
  s->service_->requests = std::make_unique<RequestManager>(options.requests);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // The standard health service (grpc.health.v1.Health): SERVING while the
  // daemon takes calls, for orchestration's probes.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.RegisterService(s->service_.get());
  if (!options.tcp.empty()) {
    auto read = [](const std::filesystem::path& p, const char* what) {
      std::ifstream in(p, std::ios::binary);
      if (p.empty() || !in)
        throw std::runtime_error(std::string("TCP needs ") + what + ": cannot read '" + p.string() +
                                 "'");
      std::stringstream ss;
      ss << in.rdbuf();
      return ss.str();
    };
    grpc::SslServerCredentialsOptions tls(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = read(options.tls_client_ca, "--tls-client-ca");
    tls.pem_key_cert_pairs.push_back(
        {read(options.tls_key, "--tls-key"), read(options.tls_cert, "--tls-cert")});
    builder.AddListeningPort(options.tcp, grpc::SslServerCredentials(tls), &s->tcp_port_);
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_) throw std::runtime_error("cannot start the gRPC server");
  if (!options.tcp.empty() && s->tcp_port_ == 0)
    throw std::runtime_error("cannot listen on " + options.tcp);
  s->socket_ = options.socket;
  s->listener_->serve(s->server_.get());
  if (!options.metrics.empty()) {
    const auto started = std::chrono::steady_clock::now();
    RequestManager* requests = s->service_->requests.get();
    // Whose requests the metrics show: nullopt, everyone's.
    std::optional<std::set<std::uint32_t>> shown;
    if (std::find(options.metrics_users.begin(), options.metrics_users.end(), "*") ==
        options.metrics_users.end()) {
      shown.emplace();
      for (const auto& name : options.metrics_users) {
        const passwd* pw = getpwnam(name.c_str());
        if (pw == nullptr)
          throw std::runtime_error("--metrics-users: no user named '" + name +
                                   "'; expected a user name or '*'");
        shown->insert(pw->pw_uid);
      }
    }
    s->metrics_ = MetricsServer::start(options.metrics, [requests, started, shown] {
      std::set<std::string> visible;
      for (const auto& r : requests->list())
        if (!shown || shown->contains(r.owner_uid)) visible.insert(r.name);
      std::vector<ChannelCounters> channels;
      for (const auto& c : requests->channels()) {
        std::string unit;
        for (const auto& r : c.requests)
          if (visible.contains(r)) unit += (unit.empty() ? "" : ",") + r;
        if (!unit.empty()) channels.push_back({unit, c.name, c.kind, c.blocks, c.bytes, c.drops});
      }
      auto nodes = requests->stats();
      std::erase_if(nodes, [&](const auto& n) { return !visible.contains(n.request); });
      const auto totals = requests->totals();
      DaemonGauges gauges;
      gauges.requests = totals.requests;
      gauges.transactions_committed = static_cast<std::size_t>(totals.committed);
      gauges.transactions_rolled_back = static_cast<std::size_t>(totals.rolled_back);
      gauges.uptime_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      return render_metrics(nodes, channels, gauges);
    });
  }
  return s;
}

const std::vector<std::string>& Server::start_errors() const {
  return service_->requests->start_errors();
}

Server::~Server() {
  // No new callers, then no calls, then the datapaths go.
  if (metrics_) metrics_->stop();
  if (listener_) listener_->stop();
  if (server_) server_->Shutdown();
  server_.reset();
  service_.reset();
}

void Server::wait() {
  server_->Wait();
}

void Server::shutdown() {
  listener_->stop();
  // Watch streams end when their calls are cancelled; give calls a bound.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace srl::controld
