// RequestManager (requests.h): units of requests, their transactions and
// the journal, recovery at start.
#include "srl/controld/requests.h"
#include "srl/filters/delivery.h"

#include <grp.h>
#include <net/if.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <set>
#include <sstream>

#include "log.h"
#include "srl/compiler/compiler.h"
#include "srl/compiler/merge.h"
#include "srl/control/pipeline.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/optimizer.h"
#include "srl/optimizer/profile.h"
#include "srl/runtime/datapath.h"
#include "srl/runtime/kernel.h"
#include "unix_listener.h"

namespace srl::controld {

namespace fs = std::filesystem;
using optimizer::now_utc;

namespace {
bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}
}  // namespace

bool valid_request_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  return std::all_of(name.begin(), name.end(), name_char);
}

std::string derived_request_name(const std::string& file_name, const std::string& text,
                                 std::uint32_t owner_uid) {
  std::string name;
  if (!file_name.empty() && file_name.front() != '<') {
    name = fs::path(file_name).stem().string();
    for (char& c : name)
      if (!name_char(c)) c = '-';
    name.erase(0, name.find_first_not_of(".-"));
    if (name.size() > 64) name.resize(64);
  }
  if (valid_request_name(name)) return name;
  // FNV-1a over the caller and the text: the same text from the same user,
  // the same name; another user's same text does not meet theirs.
  std::uint64_t h = 14695981039346656037ull;
  for (const char c : std::to_string(owner_uid) + '\n' + text)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  char hex[16];
  std::snprintf(hex, sizeof hex, "r-%08x", static_cast<unsigned>(h ^ (h >> 32)));
  return hex;
}

// Requests that share a device, deployed as one datapath.
struct RequestManager::Unit {
  std::vector<ApplySpec> specs;
  // Per spec, the DAGs the merge refers to (shared with the compile cache).
  std::vector<std::shared_ptr<const compiler::CompileResult>> compiled;
  compiler::MergedRequests merged;
  std::unique_ptr<runtime::Datapath> datapath;
  std::map<std::string, RequestInfo> info;  // by name
  // What earlier datapaths of this unit counted, per "request/node".
  std::map<std::string, runtime::VertexCounters> carried;
  std::set<std::string> devices;

  bool has(const std::string& name) const {
    return std::any_of(specs.begin(), specs.end(), [&](const auto& s) { return s.name == name; });
  }
};

namespace {

using Kind = RequestError::Kind;

}  // namespace

// Requests compiled, by what compiling depends on (text, file name,
// devices): a change to one request of a unit compiles that one only, and
// the first compile of a request happens before the manager's lock is
// taken. Every tcpdump expression is translated within a budget (a child
// process with a time and memory limit), so no caller's request can stall
// the daemon. Thread-safe; compiles outside its own lock.
class RequestManager::CompileCache {
 public:
  using Ptr = std::shared_ptr<const compiler::CompileResult>;
  static constexpr std::size_t kEntries = 1024;

  // Throws RequestError (invalid) with the diagnostics.
  Ptr get(const ApplySpec& spec) {
    std::string key = spec.text + '\0' + spec.file_name;
    for (const auto& d : spec.devices)
      key += '\0' + d;
    {
      std::lock_guard lock(mutex_);
      if (const auto it = entries_.find(key); it != entries_.end()) return it->second;
    }
    compiler::CompileOptions o;
    o.file_name = spec.file_name.empty() ? "<expr>" : spec.file_name;
    o.default_devices = spec.devices;
    o.translate_budget = compiler::TranslateBudget{};
    auto r = std::make_shared<compiler::CompileResult>(compiler::compile(spec.text, o));
    if (!r->ok()) {
      std::string msg = "request " + spec.name + " does not compile:\n";
      if (r->source) msg += r->diagnostics.render(*r->source);
      throw RequestError(RequestError::Kind::invalid, msg);
    }
    std::lock_guard lock(mutex_);
    // Bounded: what no unit holds goes first.
    if (entries_.size() >= kEntries)
      std::erase_if(entries_, [](const auto& kv) { return kv.second.use_count() == 1; });
    return entries_.try_emplace(key, std::move(r)).first->second;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, Ptr> entries_;
};

namespace {

using runtime::split_member;  // "web/n3" -> {"web", "n3"}

void add(runtime::VertexCounters& to, const runtime::VertexCounters& c) {
  to.blocks += c.blocks;
  to.bytes += c.bytes;
  to.accepted += c.accepted;
  to.drops += c.drops;
  runtime::add_classes(to.classes, c.classes);
}

// Journals every step of a transaction before it is taken, and holds the
// test hooks that fail a step or kill the daemon at one.
class JournalObserver : public runtime::StepObserver {
 public:
  // `hooks`: whether the test hooks apply (not to the transactions of
  // recovery, so that a hook aims at one transaction a client asked for).
  JournalObserver(Journal& journal, std::int64_t txn, const ManagerOptions& options, bool hooks)
      : journal_(journal), txn_(txn), options_(options), hooks_(hooks) {}

  // Failures are said by the transaction's end; taken and undone steps here.
  static void say(const runtime::Step& step, std::int64_t txn, const char* state) {
    log::event("info", "step",
               {{"transaction", std::to_string(txn)},
                {"phase", std::string(runtime::to_string(step.phase))},
                {"step", step.key},
                {"state", state}});
  }

  void before(const runtime::Step& step) override {
    ++index_;
    const auto id =
        journal_.step(txn_, std::string(runtime::to_string(step.phase)), step.key, step.what);
    ids_[step.key] = id;
    if (hooks_ && matches(options_.crash_at, step)) ::_exit(86);  // a crash, for recovery tests
    if (hooks_ && matches(options_.fail_at, step)) {
      journal_.mark(id, StepState::failed);
      throw std::runtime_error("injected failure at step " + std::to_string(index_) + " '" +
                               step.key + "'");
    }
  }
  void taken(const runtime::Step& step) override {
    mark(step, StepState::done);
    say(step, txn_, "done");
  }
  void undone(const runtime::Step& step) override {
    mark(step, StepState::undone);
    say(step, txn_, "undone");
  }
  void failed(const runtime::Step& step) { mark(step, StepState::failed); }

 private:
  bool matches(const std::string& want, const runtime::Step& step) const {
    if (want.empty()) return false;
    if (std::all_of(want.begin(), want.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::stoul(want) == index_;
    return step.key == want || step.key.starts_with(want + ":");
  }
  void mark(const runtime::Step& step, StepState s) {
    const auto it = ids_.find(step.key);
    if (it != ids_.end()) journal_.mark(it->second, s);
  }

  Journal& journal_;
  std::int64_t txn_;
  const ManagerOptions& options_;
  bool hooks_;
  std::size_t index_ = 0;
  std::map<std::string, std::int64_t> ids_;
};

// A unit's requests compiled, merged (shared prefixes) and placed by the
// optimizer for this machine. Throws std::runtime_error saying what failed.
struct PlacedUnit {
  std::unique_ptr<RequestManager::Unit> unit;
  runtime::Placement place;
  std::map<std::string, std::string> why;  // request node -> the plan's reason
  std::vector<std::string> notes;          // the plan's (a hook held, a profile not used)
};

// verifier_limit: the verifier's instructions a hook's program may take,
// which the plan keeps within (optimizer::kernel_verified bounds it).
PlacedUnit place_unit(const std::vector<ApplySpec>& specs, RequestManager::CompileCache& cache,
                      std::uint32_t verifier_limit) {
  PlacedUnit placed;
  placed.unit = std::make_unique<RequestManager::Unit>();
  auto& fresh = placed.unit;
  std::vector<std::string> names;
  for (const auto& s : specs) {
    fresh->compiled.push_back(cache.get(s));
    names.push_back(s.name);
  }
  auto requests = control::merge(fresh->compiled, names);
  const auto devices = control::rx_devices(requests);
  fresh->devices.insert(devices.begin(), devices.end());
  for (const auto& d : devices)
    if (if_nametoindex(d.c_str()) == 0) throw std::runtime_error("no network device '" + d + "'");
  if (devices.empty()) {
    placed.place.in_kernel.assign(requests.merged.dag.node_count(), false);
  } else {
    try {
      optimizer::DiscoveryOptions discovery;
      discovery.verifier_limit = verifier_limit;
      const auto model = control::discover(requests, discovery);
      const auto plan = control::plan(requests, model, control::cost_profile(true));
      placed.place = control::placement(requests, plan);
      placed.why = control::reasons(plan);
      placed.notes = plan.notes;
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("plan: ") + e.what());
    }
  }
  fresh->merged = std::move(requests.merged);
  return placed;
}

// The options that name files, by filter: what a caller other than root may
// only point inside the allowed directories.
std::optional<std::string> path_option(std::string_view filter) {
  if (filter == "pcap" || filter == "pcapin") return "file";
  if (filter == "file") return "dir";
  if (filter == "fifo") return "path";
  return std::nullopt;
}

// `path` inside one of `dirs`, after resolving what exists of it (so that
// neither ".." nor a symbolic link leads out).
bool inside(const fs::path& path, const std::vector<fs::path>& dirs) {
  std::error_code ec;
  const auto real = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) return false;
  for (const auto& d : dirs) {
    const auto base = fs::weakly_canonical(d, ec);
    if (ec) continue;
    const auto rel = real.lexically_relative(base);
    if (!rel.empty() && *rel.begin() != "..") return true;
  }
  return false;
}

// How the file sinks of `uid`'s requests open files: as that user, created
// 0600 (captures hold other people's traffic), and for anyone but root only
// beneath the user directories, which the kernel enforces at every open
// (openat2 RESOLVE_BENEATH: no link planted later leads out).
filters::FileOwner file_owner(std::uint32_t uid, const std::vector<fs::path>& user_dirs) {
  filters::FileOwner owner;
  owner.create_mode = 0600;
  if (uid == 0) return owner;
  const passwd* pw = getpwuid(uid);
  const auto c = local_user(uid, pw != nullptr ? pw->pw_gid : static_cast<gid_t>(uid));
  owner.uid = c.uid;
  owner.gid = c.gid;
  owner.groups = c.groups;
  owner.beneath = user_dirs;  // none: the check before any step refuses every file
  return owner;
}

}  // namespace

namespace {

// The options with the bpffs that pins outlive the daemon on (see
// runtime::kernel::choose_bpffs); a warning logged when there is none.
ManagerOptions with_lasting_bpffs(ManagerOptions o) {
  const auto choice = runtime::kernel::choose_bpffs(o.bpffs);
  if (choice.dir != o.bpffs)
    log::event("info", "bpffs",
               {{"asked", o.bpffs.string()},
                {"pins", choice.dir.string()},
                {"why", "this mount namespace is private; the initial one has a bpffs there"}});
  if (!choice.warning.empty()) log::event("warning", "bpffs", {{"why", choice.warning}});
  o.bpffs = choice.dir;
  return o;
}

}  // namespace

RequestManager::RequestManager(const ManagerOptions& options)
    : options_(with_lasting_bpffs(options)),
      pin_root_(options_.bpffs / "srl" / "controld"),
      compiled_(std::make_unique<CompileCache>()) {
  std::error_code ec;
  fs::create_directories(options.state.parent_path(), ec);
  journal_ = std::make_unique<Journal>(options.state);
  try {
    recover();
  } catch (...) {
    // The database failed under recovery: what runs stays running (it is
    // the kernel's truth, the database is not), pinned for the next start.
    for (auto& u : units_)
      if (u->datapath) u->datapath->release();
    units_.clear();
    if (adopted_) adopted_->release();
    adopted_.reset();
    throw;
  }
  keep_backup();
  journal_->fail_writes_from(options.journal_fail_from);
}

void RequestManager::keep_backup() const {
  try {
    journal_->backup();
  } catch (const std::exception& e) {
    log::event("warning", "backup",
               {{"file", Journal::backup_path(options_.state).string()}, {"why", e.what()}});
  }
}

RequestManager::~RequestManager() {
  std::lock_guard lock(mutex_);
  // Kernel parts keep forwarding while no daemon runs; the next one adopts
  // them. Userspace parts live in this process and stop with it; blocks the
  // kernel sent up go to the stack until the next daemon binds new sockets.
  // What the userspace parts counted is kept for the next daemon; the kernel
  // programs keep counting, and are read when adopted.
  for (auto& u : units_) {
    if (!u->datapath) continue;
    // A capture replayed to its end stays ended; one cut short is replayed
    // from its start by the next daemon, counting afresh.
    if (u->devices.empty()) {
      if (u->datapath->ended())
        for (const auto& s : u->specs)
          journal_->set_request_state(s.name, "ended");
      u->datapath->remove();
      u->carried.clear();
      continue;
    }
    u->datapath->release();
    const auto counters = u->datapath->counters();
    for (std::size_t v = 0; v < counters.size(); ++v)
      if (counters[v].space == "user")
        for (const auto& m : u->merged.members[v])
          add(u->carried[m], counters[v]);
  }
  persist();
  units_.clear();
}

namespace {

// A stored request that compiles, with the devices it receives from.
struct StoredSpec {
  ApplySpec spec;
  std::vector<std::string> devices;
};

// Every stored request to bring up, compiled: one that no longer compiles is
// kept, marked failed with its reason (added to `errors`), and does not hold
// up the others. What an older controld left half stored is settled first.
std::vector<StoredSpec> compile_stored(Journal& journal, RequestManager::CompileCache& cache,
                                       std::vector<std::string>& errors) {
  std::vector<StoredSpec> stored;
  for (const auto& r : journal.requests()) {
    if (r.state == "removing") {  // left by a controld that marked removals first
      journal.delete_request(r.name);
      continue;
    }
    if (r.state == "applying") {
      // Left by a controld that stored new requests before their commit: one
      // whose apply committed runs; any other never did.
      const auto t = journal.last_transaction(r.name);
      if (!t || t->state != "committed") {
        journal.delete_request(r.name);
        log::event(
            "warning", "recovery",
            {{"request", r.name}, {"result", "dropped"}, {"why", "its apply never committed"}});
        continue;
      }
      journal.set_request_state(r.name, "active");
    } else if (r.state != "active") {
      continue;
    }
    ApplySpec spec{r.name, r.text, r.file_name, r.devices, false, r.owner_uid};
    try {
      auto compiled = cache.get(spec);
      stored.push_back({std::move(spec), runtime::rx_devices(*compiled->dag)});
    } catch (const std::exception& e) {
      journal.set_request_state(r.name, "failed");
      errors.push_back(r.name + ": " + e.what());
    }
  }
  return stored;
}

// The units the stored requests formed: requests sharing a device, joined
// (the components of the device-sharing graph), each in stored order.
std::vector<std::vector<ApplySpec>> join_by_devices(const std::vector<StoredSpec>& stored) {
  std::vector<std::size_t> group(stored.size());
  for (std::size_t i = 0; i < stored.size(); ++i)
    group[i] = i;
  auto root = [&](std::size_t i) {
    while (group[i] != i)
      i = group[i] = group[group[i]];
    return i;
  };
  for (std::size_t i = 0; i < stored.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (std::any_of(stored[i].devices.begin(), stored[i].devices.end(), [&](const auto& d) {
            return std::find(stored[j].devices.begin(), stored[j].devices.end(), d) !=
                   stored[j].devices.end();
          }))
        group[root(i)] = root(j);
  std::map<std::size_t, std::vector<ApplySpec>> by_root;
  for (std::size_t i = 0; i < stored.size(); ++i)
    by_root[root(i)].push_back(stored[i].spec);
  std::vector<std::vector<ApplySpec>> joined;
  for (auto& [first, specs] : by_root)
    joined.push_back(std::move(specs));
  return joined;
}

}  // namespace

void RequestManager::recover() {
  roll_back_cut_transactions();
  // Hooks the last daemon left running (stopped, or died mid-transaction):
  // taken over, so that the requests below swap their programs in without a
  // gap; whatever no stored request takes is removed at the end.
  for (const auto& [m, c] : journal_->counters())
    pending_carried_[m] = {m, "", c.blocks, c.bytes, c.accepted, c.drops};
  const auto saved_slots = journal_->slots();
  adopt_pinned_hooks();
  recovering_ = true;
  // Every stored request is compiled first, then the units come up as they
  // were, each built once and swapped into its adopted hooks in one update.
  // Until then the hooks keep the programs the last daemon left, so a device
  // is never without its drops.
  const auto stored = compile_stored(*journal_, *compiled_, start_errors_);
  for (const auto& specs : join_by_devices(stored))
    recover_unit(specs);
  recovering_ = false;
  carry_adopted_counters(saved_slots);
  pending_carried_.clear();
  adopted_.reset();  // orphans: detached, unpinned
  persist();
}

void RequestManager::roll_back_cut_transactions() {
  // Transactions a crash cut: their datapath died with the daemon, so they
  // are rolled back; the requests they were for come up below as stored.
  for (const auto& t : journal_->open_transactions()) {
    for (const auto& s : t.steps)
      if (s.state == StepState::done || s.state == StepState::pending)
        journal_->mark(s.id, StepState::undone);
    journal_->end(t.id, false);
    log::event("warning", "recovery",
               {{"transaction", std::to_string(t.id)},
                {"request", t.request},
                {"kind", t.kind},
                {"result", "rolled_back"},
                {"why", "a crash cut it"}});
    if (t.kind == "apply") {
      const auto r = journal_->request(t.request);
      if (r && r->state == "applying") journal_->delete_request(t.request);
    }
  }
}

void RequestManager::adopt_pinned_hooks() {
  std::vector<std::string> problems;
  adopted_ = runtime::Datapath::adopt(pin_root_, &problems);
  for (const auto& p : problems)
    start_errors_.push_back("pinned hook " + p);
  log::event("info", "recovery",
             {{"adopted_hooks", std::to_string(adopted_->hooked_devices().size())},
              {"pins", pin_root_.string()}});
}

void RequestManager::recover_unit(const std::vector<ApplySpec>& specs) {
  const std::string label = specs.front().name;
  const std::size_t count = specs.size();
  try {
    rebuild(nullptr, specs, label, "recover", {});
    log::event("info", "recovery", {{"unit", label}, {"requests", std::to_string(count)}});
    return;
  } catch (const std::exception& e) {
    log::event("warning", "recovery",
               {{"unit", label},
                {"requests", std::to_string(count)},
                {"why", e.what()},
                {"then", "one request at a time"}});
  }
  // Together they do not come up (a verifier that now refuses the merged
  // program, a device gone): one at a time, so that each failure is that
  // request's own.
  for (const auto& spec : specs) {
    try {
      apply_locked(spec, false);
    } catch (const std::exception& e) {
      journal_->set_request_state(spec.name, "failed");
      start_errors_.push_back(spec.name + ": " + e.what());
    }
  }
}

void RequestManager::carry_adopted_counters(
    const std::map<std::string, std::vector<std::string>>& saved_slots) {
  // What the adopted programs counted (also while no daemon ran), read into
  // the request nodes their slots stood for.
  for (const auto& hc : adopted_->hook_counters()) {
    const auto it = saved_slots.find(hc.dev);
    if (it == saved_slots.end()) continue;
    for (std::size_t i = 0; i < hc.counters.size() && i < it->second.size(); ++i) {
      runtime::VertexCounters slot{
          "", "", hc.counters[i].packets, hc.counters[i].bytes, hc.counters[i].accepted, 0};
      for (const auto& t : hc.classes)  // a count by class's tallies
        if (t.node == i) slot.classes.push_back({t.cls, {}, t.blocks, t.bytes, {}, {}});
      std::istringstream members(it->second[i]);
      for (std::string m; members >> m;)
        if (Unit* u = unit_of(split_member(m).first)) {
          slot.id = m;
          add(u->carried[m], slot);
        }
    }
  }
}

RequestManager::Unit* RequestManager::unit_of(const std::string& name) const {
  for (const auto& u : units_)
    if (u->has(name)) return u.get();
  return nullptr;
}

RequestInfo RequestManager::apply(const ApplySpec& spec) {
  if (!valid_request_name(spec.name))
    throw RequestError(Kind::invalid, "bad request name '" + spec.name +
                                          "': expected 1 to 64 of A-Z a-z 0-9 _ . - , not "
                                          "starting with . or -");
  compiled_->get(spec);  // before the lock: the slow part, bounded, blocks no other caller
  std::lock_guard lock(mutex_);
  const bool stored = journal_->request(spec.name) || unit_of(spec.name) != nullptr;
  if (stored && !spec.replace)
    throw RequestError(Kind::exists, "a request named " + spec.name +
                                         " exists; remove it, or replace it (srl apply --replace)");
  if (!stored && spec.replace)
    throw RequestError(Kind::not_found, "no request named " + spec.name + " to replace");
  if (!stored && spec.max_owned != 0) {
    std::set<std::string> owned;
    for (const auto& r : journal_->requests())
      if (r.owner_uid == spec.owner_uid) owned.insert(r.name);
    for (const auto& u : units_)
      for (const auto& s : u->specs)
        if (s.owner_uid == spec.owner_uid) owned.insert(s.name);
    if (owned.size() >= spec.max_owned)
      throw RequestError(Kind::exhausted, "apply " + spec.name + ": its owner keeps " +
                                              std::to_string(owned.size()) +
                                              " requests, the most a user other than root may "
                                              "(controld --member-requests); remove one first");
  }
  return apply_locked(spec, true);
}

namespace {

// The devices a request receives from. Throws RequestError (invalid) for an
// rx that names none, as apply and its dry run say it.
std::vector<std::string> request_devices(const ApplySpec& spec,
                                         const compiler::CompileResult& compiled) {
  try {
    return runtime::rx_devices(*compiled.dag);
  } catch (const std::invalid_argument& e) {
    throw RequestError(Kind::invalid,
                       "request " + spec.name + ": " + e.what() + " (or apply with a device)");
  }
}

}  // namespace

RequestInfo RequestManager::apply_locked(const ApplySpec& spec, bool store) {
  const auto compiled = compiled_->get(spec);
  const auto devices = request_devices(spec, *compiled);
  // The unit it joins: every unit sharing a device with it, and its own.
  Unit* target = unit_of(spec.name);
  std::vector<std::unique_ptr<Unit>> absorbed;
  for (auto it = units_.begin(); it != units_.end();) {
    Unit* u = it->get();
    const bool shares = std::any_of(devices.begin(), devices.end(),
                                    [&](const auto& d) { return u->devices.contains(d); });
    if (u != target && shares) {
      if (target == nullptr) {
        target = u;
        ++it;
      } else {
        absorbed.push_back(std::move(*it));
        it = units_.erase(it);
      }
    } else {
      ++it;
    }
  }
  std::vector<ApplySpec> specs;
  if (target != nullptr)
    for (const auto& s : target->specs)
      if (s.name != spec.name) specs.push_back(s);
  for (const auto& u : absorbed)
    for (const auto& s : u->specs)
      specs.push_back(s);
  specs.push_back(spec);
  const bool replacing = target != nullptr && target->has(spec.name);
  // The request is stored with the commit of its transaction, in the same
  // database transaction: a crash or a full disk before it leaves the state
  // before (a new request absent, a replaced one as it was), never between.
  RequestChange on_commit;
  if (store)
    on_commit.put = StoredRequest{spec.name, spec.owner_uid, spec.text,   "active",
                                  "",        spec.file_name, spec.devices};
  rebuild(target, specs, spec.name, replacing ? "replace" : "apply", std::move(absorbed),
          on_commit);
  return unit_of(spec.name)->info.at(spec.name);
}

namespace {

// What adds to a hook (an apply, a replace) is held to the admission limit;
// a removal, or recovery of what was admitted before, is not.
bool adds_to_hooks(const std::string& txn_kind) {
  return txn_kind == "apply" || txn_kind == "replace";
}

// The unit `specs` make, placed within `verifier_limit`. Throws RequestError
// (failed) naming the change ("apply web") and what failed.
PlacedUnit place_change(const std::vector<ApplySpec>& specs, RequestManager::CompileCache& cache,
                        std::uint32_t verifier_limit, const std::string& change) {
  try {
    return place_unit(specs, cache, verifier_limit);
  } catch (const std::exception& e) {
    throw RequestError(Kind::failed, change + ": " + e.what());
  }
}

// The request named `name` among `specs`, if any.
const ApplySpec* find_spec(const std::vector<ApplySpec>& specs, const std::string& name) {
  const auto it =
      std::find_if(specs.begin(), specs.end(), [&](const auto& s) { return s.name == name; });
  return it != specs.end() ? &*it : nullptr;
}

// The first of a merged node's members that is a node of `request`, if any.
const std::string* own_member(const std::vector<std::string>& members, const std::string& request) {
  const auto it = std::find_if(members.begin(), members.end(),
                               [&](const auto& m) { return split_member(m).first == request; });
  return it != members.end() ? &*it : nullptr;
}

// A caller restricted to some kernel filters gets the kernel only for those.
// Throws RequestError (denied) naming the first of its nodes that breaks this.
void check_kernel_filters(const ApplySpec& s, const PlacedUnit& placed, const std::string& change) {
  if (!s.kernel_filters) return;
  const auto& allowed = *s.kernel_filters;
  const auto& merged = placed.unit->merged;
  const auto& dag = merged.dag;
  const auto& place = placed.place;
  for (std::size_t v = 0; v < dag.node_count(); ++v) {
    const std::string filter(dag.graph[v].filter_name());
    // Nor may it take blocks from the host's stack in userspace.
    if (!place.in_kernel[v] && filters::consumes_block(*dag.graph[v].filter, dag.graph[v].options))
      if (const auto* m = own_member(merged.members[v], s.name))
        throw RequestError(Kind::denied,
                           change + ": node " + split_member(*m).second + " (" + filter +
                               ") would take blocks from the host's stack in userspace, "
                               "which this caller may not do; ask root");
    if (!place.in_kernel[v] || std::find(allowed.begin(), allowed.end(), filter) != allowed.end())
      continue;
    if (const auto* m = own_member(merged.members[v], s.name)) {
      std::string list;
      for (const auto& f : allowed)
        list += (list.empty() ? "" : " ") + f;
      throw RequestError(
          Kind::denied, change + ": node " + split_member(*m).second + " (" + filter +
                            ") would run in the kernel, where this caller may place only: " + list +
                            "; pin it with space=user, or ask root");
    }
  }
}

// The eBPF instructions the requests of `owner` in a unit (`unit_specs`,
// merged and placed so) place in the kernel; a node they share counts once.
std::uint64_t owned_kernel_insns(std::uint32_t owner, const compiler::MergedRequests& merged,
                                 const std::vector<bool>& in_kernel,
                                 const std::vector<ApplySpec>& unit_specs) {
  std::set<std::string> mine;
  for (const auto& u : unit_specs)
    if (u.owner_uid == owner) mine.insert(u.name);
  std::uint64_t sum = 0;
  for (std::size_t v = 0; v < merged.dag.node_count() && v < in_kernel.size(); ++v)
    if (in_kernel[v] &&
        std::any_of(merged.members[v].begin(), merged.members[v].end(),
                    [&](const auto& m) { return mine.contains(split_member(m).first); }))
      sum += optimizer::kernel_insns(merged.dag.graph[v]);
  return sum;
}

// The caller's share of the kernel: the instructions their requests place
// there, on this unit as planned (`specs`) and on the others (`units` but
// `replaced`) as they run. Throws RequestError (exhausted) past the quota.
void check_kernel_share(const ApplySpec& s, const PlacedUnit& placed,
                        const std::vector<ApplySpec>& specs,
                        const std::vector<std::unique_ptr<RequestManager::Unit>>& units,
                        const RequestManager::Unit* replaced, const std::string& change) {
  if (s.max_kernel_insns == 0) return;
  std::uint64_t used =
      owned_kernel_insns(s.owner_uid, placed.unit->merged, placed.place.in_kernel, specs);
  for (const auto& u : units)
    if (u.get() != replaced && u->datapath)
      used +=
          owned_kernel_insns(s.owner_uid, u->merged, u->datapath->placement().in_kernel, u->specs);
  if (used > s.max_kernel_insns)
    throw RequestError(Kind::exhausted,
                       change + ": its owner's requests would place " + std::to_string(used) +
                           " eBPF instructions in the kernel, the most a user other than root "
                           "may is " +
                           std::to_string(s.max_kernel_insns) +
                           " (controld --member-kernel-insns); remove a request, or pin "
                           "nodes in userspace (space=user)");
}

// Files the request names: absolute (the daemon's working directory is
// no caller's), and for a caller other than root inside the allowed
// directories. Only the caller's own nodes are looked at: a node shared
// with another request is checked as that request's too. Throws
// RequestError (invalid, denied) naming the first file refused.
void check_file_paths(const ApplySpec& s, const PlacedUnit& placed,
                      const std::vector<fs::path>& user_dirs, const std::string& change) {
  const auto& merged = placed.unit->merged;
  for (std::size_t v = 0; v < merged.dag.node_count(); ++v) {
    const auto& node = merged.dag.graph[v];
    const auto option = path_option(node.filter_name());
    if (!option) continue;
    const auto it = node.options.find(*option);
    if (it == node.options.end()) continue;
    const auto* own = own_member(merged.members[v], s.name);
    if (own == nullptr) continue;
    const auto& path = std::get<std::string>(it->second);
    if (!fs::path(path).is_absolute())
      throw RequestError(Kind::invalid,
                         change + ": node " + split_member(*own).second + " (" +
                             std::string(node.filter_name()) + ") " + *option + "=" + path +
                             " is a relative path; controld resolves no caller's working "
                             "directory: expected an absolute path");
    if (!s.kernel_filters || inside(path, user_dirs)) continue;
    std::string dirs;
    for (const auto& d : user_dirs)
      dirs += (dirs.empty() ? "" : " ") + d.string();
    throw RequestError(
        Kind::denied, change + ": " + std::string(node.filter_name()) + " " + *option + "=" + path +
                          " is outside the directories where this caller may name files (" +
                          (dirs.empty() ? "none are configured: --user-dir" : dirs) + ")");
  }
}

// What `from`'s datapath counted, added into `to` per request node.
void add_counted(const RequestManager::Unit& from,
                 std::map<std::string, runtime::VertexCounters>& to) {
  const auto counters = from.datapath->counters();
  for (std::size_t v = 0; v < counters.size(); ++v)
    for (const auto& m : from.merged.members[v])
      add(to[m], counters[v]);
}

// A unit `fresh` absorbs: its datapath goes, and what it counted carries over.
void absorb(RequestManager::Unit& absorbed, RequestManager::Unit& fresh,
            runtime::StepObserver& observer) {
  absorbed.datapath->remove(&observer);
  for (const auto& c : absorbed.carried)
    fresh.carried.insert(c);
  add_counted(absorbed, fresh.carried);
}

// Whether a userspace node reads from a kernel node: then it reads the
// device over AF_XDP where its blocks are taken.
bool reads_afxdp(const compiler::RequestDag& dag, const std::vector<bool>& in_kernel) {
  bool reads = false;
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    if (!in_kernel[v])
      for (auto [it, end] = boost::in_edges(v, dag.graph); it != end; ++it)
        reads = reads || in_kernel[boost::source(*it, dag.graph)];
  return reads;
}

// The new datapath runs: the old one (`old`'s) gives up what it still holds
// (hooks of devices no longer used, its engine), and what it counted
// carries over to `fresh`.
void retire(RequestManager::Unit& old, RequestManager::Unit& fresh, runtime::StepObserver& observer,
            const std::string& txn_kind, const std::string& txn_request) {
  if (old.datapath) {
    old.datapath->remove(&observer);
    add_counted(old, old.carried);
  }
  for (auto& [m, c] : old.carried)
    fresh.carried[m] = c;
  // A replaced request starts counting afresh: its nodes are new.
  if (txn_kind == "replace")
    std::erase_if(fresh.carried,
                  [&](const auto& kv) { return split_member(kv.first).first == txn_request; });
}

// What each request of the new unit looks like now: as before for those the
// change leaves (from `old` or an absorbed unit), applied now for the one it
// is for (`txn_request`) and the new.
std::map<std::string, RequestInfo> describe_requests(
    const PlacedUnit& placed, const std::vector<ApplySpec>& specs, const RequestManager::Unit* old,
    const std::vector<std::unique_ptr<RequestManager::Unit>>& absorbed,
    const std::string& txn_request) {
  std::map<std::string, RequestInfo> described;
  const auto now = now_utc();
  const auto& merged = placed.unit->merged;
  const auto& dag = merged.dag;
  const auto& g = dag.graph;
  for (const auto& s : specs) {
    RequestInfo info;
    if (old != nullptr && old->info.contains(s.name) && s.name != txn_request)
      info = old->info.at(s.name);
    for (const auto& u : absorbed)
      if (u->info.contains(s.name)) info = u->info.at(s.name);
    info.name = s.name;
    info.owner_uid = s.owner_uid;
    info.text = s.text;
    info.file_name = s.file_name;
    info.devices = s.devices;
    info.state = "active";
    if (info.applied_at.empty() || s.name == txn_request) info.applied_at = now;
    info.nodes.clear();
    for (std::size_t v = 0; v < dag.node_count(); ++v)
      for (std::size_t i = 0; i < merged.members[v].size(); ++i) {
        const auto& m = merged.members[v][i];
        const auto [req, id] = split_member(m);
        if (req != s.name) continue;
        info.nodes.push_back(
            {id, std::string(g[v].filter_name()), runtime::space_of(dag, placed.place, v),
             placed.why.contains(m) ? placed.why.at(m) : std::string(), merged.member_names[v][i]});
      }
    described[s.name] = std::move(info);
  }
  return described;
}

// Coming up again: what the last daemon's datapaths counted (`pending`)
// carries over to the request nodes of `fresh` that carry nothing yet.
void carry_pending(const std::map<std::string, runtime::VertexCounters>& pending,
                   RequestManager::Unit& fresh) {
  for (const auto& members : fresh.merged.members)
    for (const auto& m : members)
      if (const auto it = pending.find(m); it != pending.end() && !fresh.carried.contains(m))
        fresh.carried[m] = it->second;
}

}  // namespace

void RequestManager::rebuild(Unit* unit, std::vector<ApplySpec> specs,
                             const std::string& txn_request, const std::string& txn_kind,
                             std::vector<std::unique_ptr<Unit>> absorbed,
                             const RequestChange& on_commit) {
  const std::int64_t txn = journal_->begin(txn_request, txn_kind);
  JournalObserver observer(*journal_, txn, options_, !recovering_);
  if (specs.empty()) {  // the last request of the unit goes
    if (unit != nullptr && unit->datapath) unit->datapath->remove(&observer);
    std::erase_if(units_, [&](const auto& u) { return u.get() == unit; });
    end_transaction(txn, true, on_commit);
    persist();
    return;
  }
  const std::string change = txn_kind + " " + txn_request;  // as messages name it

  // Planned and admitted before any step; a refusal rolls the transaction back.
  PlacedUnit placed;
  try {
    // What adds to a hook is planned within the admission limit; a
    // removal, or recovery of what was admitted, within the kernel's budget.
    placed = place_change(
        specs, *compiled_,
        adds_to_hooks(txn_kind) ? admission_limit() : runtime::kernel::kVerifierBudget, change);
    for (const auto& note : placed.notes)
      log::event("info", "plan", {{"request", txn_request}, {"note", note}});
    if (const auto* asked = find_spec(specs, txn_request)) {
      check_kernel_filters(*asked, placed, change);
      check_kernel_share(*asked, placed, specs, units_, unit, change);
      check_file_paths(*asked, placed, options_.user_dirs, change);
    }
  } catch (const RequestError&) {
    end_transaction(txn, false);
    throw;
  }
  Unit& fresh = *placed.unit;

  // Units this one absorbs (a request now joins two devices' units): their
  // datapaths go first, as they hold hooks the new one needs.
  for (auto& u : absorbed)
    absorb(*u, fresh, observer);

  auto dopts = options_for_change(fresh.merged, specs, txn_kind);
  try {
    fresh.datapath = build_datapath(unit, fresh, placed.place, std::move(dopts), observer, change);
  } catch (const RequestError&) {
    end_transaction(txn, false);
    throw;
  }

  if (unit != nullptr) retire(*unit, fresh, observer, txn_kind, txn_request);
  fresh.info = describe_requests(placed, specs, unit, absorbed, txn_request);
  if (recovering_) carry_pending(pending_carried_, fresh);
  fresh.specs = std::move(specs);
  // What runs is installed before the commit is recorded: a record that
  // fails (a full disk) must not take the running datapath down with it.
  if (unit != nullptr) {
    for (auto& u : units_)
      if (u.get() == unit) u = std::move(placed.unit);
  } else {
    units_.push_back(std::move(placed.unit));
  }
  end_transaction(txn, true, on_commit);
  if (!recovering_) persist();
}

runtime::DatapathOptions RequestManager::options_for_change(const compiler::MergedRequests& merged,
                                                            const std::vector<ApplySpec>& specs,
                                                            const std::string& txn_kind) const {
  auto dopts = options_for(merged, specs);
  // Only what adds to a hook is held to the admission limit: a removal, or
  // recovery of what was admitted before, is not.
  if (adds_to_hooks(txn_kind)) dopts.verifier_admission = options_.verifier_admission;
  // One form for every change under this configuration: the register form
  // unless the admission limit could refuse one (a test's small limit).
  if (options_.verifier_admission != 0 &&
      options_.verifier_admission < runtime::kernel::kRegisterFormVerified)
    dopts.program_form = runtime::kernel::ProgramForm::map;
  return dopts;
}

std::unique_ptr<runtime::Datapath> RequestManager::build_datapath(Unit* unit, const Unit& fresh,
                                                                  const runtime::Placement& place,
                                                                  runtime::DatapathOptions dopts,
                                                                  runtime::StepObserver& observer,
                                                                  const std::string& change) {
  runtime::Datapath* previous = unit != nullptr ? unit->datapath.get() : adopted_.get();
  // AF_XDP queues are bound by one socket at a time: when the old datapath
  // holds the queues of a device the new one reads from userspace too, the
  // old userspace part stops first. Its hooks run on (the kernel part never
  // misses a block); blocks sent up meanwhile find no socket.
  bool old_engine_stopped = false;
  if (previous != nullptr && reads_afxdp(fresh.merged.dag, place.in_kernel) &&
      !previous->afxdp_devices().empty())
    // As late as possible: programs compiled and loaded, filters built.
    dopts.before_connect = [&] {
      previous->stop_engine(&observer);
      old_engine_stopped = true;
    };

  try {
    if (!fresh.devices.empty()) runtime::kernel::ensure_bpffs(options_.bpffs);
    return runtime::Datapath::build(fresh.merged.dag, place, dopts, &observer, previous);
  } catch (const std::exception& e) {
    // A stopped userspace part cannot start again: the old unit is built
    // anew, swapping into the hooks it still holds (the state before).
    if (old_engine_stopped && unit != nullptr) {
      try {
        auto again = runtime::Datapath::build(unit->datapath->dag(), unit->datapath->placement(),
                                              options_for(unit->merged, unit->specs), nullptr,
                                              unit->datapath.get());
        unit->datapath->remove();
        unit->datapath = std::move(again);
      } catch (const std::exception& again) {
        log::event("error", "rebuild",
                   {{"requests", std::to_string(unit->specs.size())}, {"why", again.what()}});
      }
    }
    const auto* step = dynamic_cast<const runtime::StepError*>(&e);
    const bool does_not_fit = (step != nullptr && step->capacity()) ||
                              dynamic_cast<const runtime::kernel::CapacityError*>(&e) != nullptr;
    if (does_not_fit)  // said as such (RESOURCE_EXHAUSTED), not as a failure
      throw RequestError(Kind::exhausted,
                         change + ": " +
                             (step != nullptr ? step->reason() : std::string(e.what())) +
                             "; nothing was changed");
    throw RequestError(Kind::failed, change + ": " + e.what() +
                                         (step != nullptr ? "; every step taken is undone" : ""));
  }
}

void RequestManager::persist() {
  try {
    persist_counters();
  } catch (const std::exception& e) {
    // Counters are carried best-effort: the next start counts from what
    // was saved last.
    log::event("warning", "journal", {{"saving", "counters"}, {"why", e.what()}});
  }
}

void RequestManager::persist_counters() {
  std::map<std::string, StoredCounters> counters;
  std::map<std::string, std::vector<std::string>> slots;
  for (const auto& u : units_) {
    for (const auto& [m, c] : u->carried)
      counters[m] = {c.blocks, c.bytes, c.accepted, c.drops};
    if (!u->datapath) continue;
    for (const auto& hc : u->datapath->hook_counters()) {
      auto& out = slots[hc.dev];
      for (const auto& id : hc.nodes) {
        std::string members;
        if (const auto v = u->merged.dag.find(id))
          for (const auto& m : u->merged.members[*v])
            members += (members.empty() ? "" : " ") + m;
        out.push_back(members);
      }
    }
  }
  try {
    journal_->save_counters(counters);
    journal_->save_slots(slots);
  } catch (const std::exception& e) {
    log::event("error", "counters", {{"why", e.what()}});
  }
}

runtime::DatapathOptions RequestManager::options_for(const compiler::MergedRequests& merged,
                                                     const std::vector<ApplySpec>& specs) const {
  runtime::DatapathOptions dopts;
  dopts.bpffs = options_.bpffs;
  dopts.pin_root = pin_root_;
  dopts.cache = options_.cache;
  dopts.copy.rings = options_.copy_rings;
  if (options_.copy_area_kib != 0) dopts.copy.ring_bytes = options_.copy_area_kib << 10;
  // Each sink opens its files as the user whose request it belongs to.
  std::map<std::string, std::uint32_t> owner_of_request;
  for (const auto& s : specs)
    owner_of_request[s.name] = s.owner_uid;
  std::map<std::string, std::optional<filters::FileOwner>> owner_of_node;
  for (std::size_t v = 0; v < merged.dag.node_count(); ++v) {
    std::uint32_t uid = 0;
    for (const auto& m : merged.members[v])
      uid = std::max(uid, owner_of_request[split_member(m).first]);
    owner_of_node[merged.dag.graph[v].id] = file_owner(uid, options_.user_dirs);
  }
  dopts.file_owner_of = [owner_of_node](std::string_view id) -> std::optional<filters::FileOwner> {
    const auto it = owner_of_node.find(std::string(id));
    return it != owner_of_node.end() ? it->second : std::nullopt;
  };
  return dopts;
}

void RequestManager::end_transaction(std::int64_t txn, bool committed,
                                     const RequestChange& on_commit) {
  try {
    journal_->end(txn, committed, on_commit);
  } catch (const std::exception& e) {
    // A rollback is complete in memory; its record stays open, and the next
    // start rolls it back again (the same state). A commit the database
    // cannot record is the client's failure to hear about.
    log::event("error", "journal", {{"transaction", std::to_string(txn)}, {"why", e.what()}});
    if (committed)
      throw RequestError(Kind::failed,
                         "the change runs, but the state database could not record it (" +
                             std::string(e.what()) +
                             "); the next start goes back to the state before it");
    ++rolled_back_;
    return;
  }
  ++(committed ? committed_ : rolled_back_);
  // The last good state, for a database that gets damaged later.
  if (committed && !recovering_) keep_backup();
  const auto t = journal_->transaction(txn);
  log::event(committed ? "info" : "warning", "transaction",
             {{"transaction", std::to_string(txn)},
              {"request", t ? t->request : std::string()},
              {"kind", t ? t->kind : std::string()},
              {"result", committed ? "committed" : "rolled_back"}});
}

std::vector<ChannelInfo> RequestManager::channels() const {
  std::lock_guard lock(mutex_);
  std::vector<ChannelInfo> out;
  for (const auto& u : units_) {
    if (!u->datapath) continue;
    std::vector<std::string> names;
    for (const auto& s : u->specs)
      names.push_back(s.name);
    for (auto& c : u->datapath->channels())
      out.push_back({names, c.name, c.kind, c.blocks, c.bytes, c.drops});
  }
  return out;
}

std::uint32_t RequestManager::admission_limit() const {
  return options_.verifier_admission != 0 ? options_.verifier_admission
                                          : runtime::kernel::kVerifierBudget;
}

RequestManager::Totals RequestManager::totals() const {
  std::lock_guard lock(mutex_);
  return {journal_->requests().size(), committed_, rolled_back_};
}

namespace {

using Visible = std::function<bool(const ApplySpec&)>;

// The running units a request would join, as apply() gathers them: every
// unit sharing one of its `devices`, and its own.
std::vector<const RequestManager::Unit*> units_joined(
    const std::vector<std::unique_ptr<RequestManager::Unit>>& units,
    const std::vector<std::string>& devices, const std::string& name) {
  std::vector<const RequestManager::Unit*> affected;
  for (const auto& u : units) {
    const bool shares = std::any_of(devices.begin(), devices.end(),
                                    [&](const auto& d) { return u->devices.contains(d); });
    if (shares || u->has(name)) affected.push_back(u.get());
  }
  return affected;
}

// The lines of request `s`, node by node, against what runs now ("= " lines
// left out); `replaced`: all of its nodes are new.
void add_node_changes(std::vector<std::string>& changes, const ApplySpec& s,
                      const std::vector<const RequestManager::Unit*>& affected,
                      const PlacedUnit& placed, bool replaced) {
  const auto& dag = placed.unit->merged.dag;
  std::map<std::string, NodeInfo> before, after;
  for (const auto* u : affected)
    if (const auto it = u->info.find(s.name); it != u->info.end())
      for (const auto& n : it->second.nodes)
        before[n.id] = n;
  for (std::size_t v = 0; v < dag.node_count(); ++v)
    for (const auto& m : placed.unit->merged.members[v]) {
      const auto [req, id] = split_member(m);
      if (req == s.name)
        after[id] = {id, std::string(dag.graph[v].filter_name()),
                     runtime::space_of(dag, placed.place, v), ""};
    }
  for (const auto& [id, n] : before) {
    const auto it = after.find(id);
    if (replaced || it == after.end() || it->second.filter != n.filter)
      changes.push_back("- " + s.name + "/" + id + " " + n.filter + " " + n.space);
  }
  for (const auto& [id, n] : after) {
    const auto it = before.find(id);
    if (replaced || it == before.end() || it->second.filter != n.filter)
      changes.push_back("+ " + s.name + "/" + id + " " + n.filter + " " + n.space);
    else if (it->second.space != n.space)
      changes.push_back("~ " + s.name + "/" + id + " " + n.filter + " " + it->second.space +
                        " -> " + n.space);
  }
}

// The other requests of the planned unit that receive from `dev`, as the
// viewer may learn of them ("web, 2 other users' requests"); empty: none.
std::string sharing_device(const std::string& dev, const std::string& asked,
                           const std::vector<ApplySpec>& specs, const PlacedUnit& placed,
                           const Visible& visible) {
  const auto& dag = placed.unit->merged.dag;
  const auto& g = dag.graph;
  std::string others;
  std::size_t hidden = 0;
  for (const auto& s : specs) {
    if (s.name == asked) continue;
    bool on_dev = false;
    for (std::size_t v = 0; v < dag.node_count() && !on_dev; ++v)
      if (g[v].filter_name() == "rx" && std::get<std::string>(g[v].options.at("dev")) == dev)
        for (const auto& m : placed.unit->merged.members[v])
          on_dev = on_dev || split_member(m).first == s.name;
    if (!on_dev) continue;
    if (visible(s))
      others += (others.empty() ? "" : ", ") + s.name;
    else
      ++hidden;
  }
  if (hidden > 0)
    others += (others.empty() ? "" : ", ") + std::to_string(hidden) + " other user" +
              (hidden == 1 ? "'s request" : "s' requests");
  return others;
}

// The lines of the hooks, device by device: a program attached, swapped (and
// with whom the hook is shared) or detached.
void add_hook_changes(std::vector<std::string>& changes, const std::string& asked,
                      const std::vector<ApplySpec>& specs,
                      const std::vector<const RequestManager::Unit*>& affected,
                      const PlacedUnit& placed, const Visible& visible) {
  std::set<std::string> old_devices;
  for (const auto* u : affected)
    old_devices.insert(u->devices.begin(), u->devices.end());
  for (const auto& dev : placed.unit->devices) {
    const std::string hook(runtime::to_string(placed.place.hooks.contains(dev)
                                                  ? placed.place.hooks.at(dev).kind
                                                  : runtime::HookKind::xdp));
    const std::string others = sharing_device(dev, asked, specs, placed, visible);
    if (old_devices.contains(dev))
      changes.push_back("swap the program on the " + hook + " hook of " + dev + " in one update" +
                        (others.empty() ? "" : " (shared with " + others + ")"));
    else
      changes.push_back("attach a program to the " + hook + " hook of " + dev);
  }
  for (const auto& dev : old_devices)
    if (!placed.unit->devices.contains(dev)) changes.push_back("detach the program of " + dev);
}

}  // namespace

std::vector<std::string> RequestManager::diff(const ApplySpec& spec,
                                              std::optional<std::uint32_t> viewer) const {
  const auto compiled = compiled_->get(spec);  // before the lock, as apply() does
  std::lock_guard lock(mutex_);
  const auto devices = request_devices(spec, *compiled);
  const auto affected = units_joined(units_, devices, spec.name);
  std::vector<ApplySpec> specs;
  for (const auto* u : affected)
    for (const auto& s : u->specs)
      if (s.name != spec.name) specs.push_back(s);
  specs.push_back(spec);
  const bool running = std::any_of(affected.begin(), affected.end(),
                                   [&](const Unit* u) { return u->has(spec.name); });
  const std::string change = (running ? "replace " : "apply ") + spec.name;
  // Planned as the change itself would be, and failing with the same words.
  const PlacedUnit placed = place_change(specs, *compiled_, admission_limit(), change);

  std::vector<std::string> changes;
  changes.push_back(change);
  // Another user's requests are not the viewer's to learn of by name.
  const Visible visible = [&](const ApplySpec& s) {
    return !viewer || s.name == spec.name || s.owner_uid == *viewer;
  };
  for (const auto& s : specs)
    if (visible(s)) add_node_changes(changes, s, affected, placed, s.name == spec.name && running);
  add_hook_changes(changes, spec.name, specs, affected, placed, visible);
  if (reads_afxdp(placed.unit->merged.dag, placed.place.in_kernel))
    for (const auto* u : affected)
      if (u->datapath)
        for (const auto& dev : u->datapath->afxdp_devices())
          changes.push_back("rebind the AF_XDP sockets of " + dev +
                            ": the running userspace part stops first (break before make); "
                            "blocks sent up meanwhile go to the stack, unseen by it");
  if (affected.size() > 1)
    changes.push_back(
        "join " + std::to_string(affected.size()) +
        " groups of requests into one datapath: they are removed first (break before make)");
  return changes;
}

void RequestManager::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  Unit* unit = unit_of(name);
  if (unit == nullptr) {  // stored but not running (it failed to come up)
    if (!journal_->request(name)) throw RequestError(Kind::not_found, "no request named " + name);
    journal_->delete_request(name);
    return;
  }
  // The request stays stored, active, until its removal has committed: a
  // removal that fails, or that a crash cuts, leaves it running now and
  // after the next start (the state before), never half removed.
  std::vector<ApplySpec> specs;
  for (const auto& s : unit->specs)
    if (s.name != name) specs.push_back(s);
  RequestChange on_commit;
  on_commit.remove = name;
  rebuild(unit, specs, name, "remove", {}, on_commit);
  // The remaining requests' counters of the removed one are gone with it.
  if (Unit* u = specs.empty() ? nullptr : unit_of(specs.front().name))
    std::erase_if(u->carried, [&](const auto& kv) { return split_member(kv.first).first == name; });
  persist();
}

std::vector<RequestInfo> RequestManager::list() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, RequestInfo> out;
  for (const auto& r : journal_->requests()) {
    if (const Unit* u = unit_of(r.name); u != nullptr && u->info.contains(r.name)) {
      auto info = u->info.at(r.name);
      if (u->datapath && u->datapath->ended()) info.state = "ended";
      out[r.name] = std::move(info);
    } else {
      RequestInfo info;
      info.name = r.name;
      info.owner_uid = r.owner_uid;
      info.text = r.text;
      info.file_name = r.file_name;
      info.devices = r.devices;
      // Stored as active yet not running: its removal ran, but its record
      // could not be written.
      info.state = r.state == "active" ? "not running" : r.state;
      info.applied_at = r.updated_at;
      out[r.name] = std::move(info);
    }
  }
  // Running, but the commit that stored them could not be written: gone at
  // the next start unless applied again.
  for (const auto& u : units_)
    for (const auto& [name, info] : u->info)
      if (!out.contains(name)) {
        out[name] = info;
        out[name].state = "unrecorded";
      }
  std::vector<RequestInfo> list;
  for (auto& [name, info] : out)
    list.push_back(std::move(info));
  return list;
}

RequestInfo RequestManager::get(const std::string& name) const {
  for (auto& r : list())
    if (r.name == name) return r;
  throw RequestError(Kind::not_found, "no request named " + name);
}

std::vector<NodeCounters> RequestManager::stats(const std::string& name) const {
  std::lock_guard lock(mutex_);
  if (!name.empty() && !journal_->request(name) && unit_of(name) == nullptr)
    throw RequestError(Kind::not_found, "no request named " + name);
  std::vector<NodeCounters> out;
  for (const auto& u : units_) {
    if (!u->datapath) continue;
    const auto counters = u->datapath->counters();
    const auto& g = u->merged.dag.graph;
    for (const auto& s : u->specs) {
      if (!name.empty() && s.name != name) continue;
      for (std::size_t v = 0; v < counters.size(); ++v)
        for (std::size_t i = 0; i < u->merged.members[v].size(); ++i) {
          const auto& m = u->merged.members[v][i];
          const auto [req, id] = split_member(m);
          if (req != s.name) continue;
          runtime::VertexCounters c = counters[v];
          if (const auto it = u->carried.find(m); it != u->carried.end()) {
            add(c, it->second);
            // What was carried without its classes (counters stored by an
            // earlier daemon) goes to "other", so that the classes add up.
            if (c.by_class)
              runtime::fold_classes(
                  c, static_cast<std::size_t>(std::get<std::int64_t>(g[v].options.at("keys"))));
          }
          out.push_back(runtime::node_report(req, id, u->merged.member_names[v][i], g, v, c));
        }
    }
  }
  return out;
}

}  // namespace srl::controld
