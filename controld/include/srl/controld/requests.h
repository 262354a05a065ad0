// The requests the daemon keeps running, and the transactions that change
// them (ARCHITECTURE.md §5).
//
// Requests that receive from a common device run as one unit: their DAGs are
// merged (identical stateless prefixes share one instance, counted for each
// request that shares it) into one datapath with one program per device
// hook. Applying, replacing or removing a request rebuilds only its unit, as
// one transaction (runtime::Datapath) whose every step is journaled before it
// is taken; on a device the old and the new datapath both use, the program
// is swapped in the running hook in one atomic update (make-before-break).
// Counters survive a rebuild: what the old datapath counted is carried over.
// Kernel parts outlive the daemon (pinned); the next daemon adopts them and
// swaps the programs of the stored requests in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "srl/controld/journal.h"
#include "srl/runtime/counter_report.h"

namespace srl::runtime {
class Datapath;
struct DatapathOptions;
struct Placement;
class StepObserver;
struct VertexCounters;
}  // namespace srl::runtime
namespace srl::compiler {
struct MergedRequests;
}  // namespace srl::compiler

namespace srl::controld {

struct ManagerOptions {
  std::filesystem::path state = "/var/lib/srl/controld.db";
  std::filesystem::path bpffs = "/sys/fs/bpf";  // pins under bpffs/srl/controld
  std::filesystem::path cache = "/var/cache/srl/bpf";
  // Test hooks: the transaction step whose key (or key prefix before ':',
  // or 1-based index) matches fails (`fail_at`), or the daemon dies with
  // _exit(86) right after journaling it (`crash_at`).
  std::string fail_at;
  std::string crash_at;
  // Test hook: after recovery, every journal write from the n-th on fails
  // as on a full disk (0: never).
  std::uint64_t journal_fail_from = 0;
  // Directories under which requests of callers other than root may name
  // files (capture sinks, stream files, FIFOs, captures to replay); the files
  // are opened as the requesting user. None: such requests name no file.
  std::vector<std::filesystem::path> user_dirs;
  // Applying or replacing a request is refused when a hook's program would
  // take more of the verifier's instructions than this (half its budget:
  // the other half is what removals may need); 0: whatever the kernel takes.
  std::uint32_t verifier_admission = 500'000;
  // The copy channel of each hook program: rings (chosen by CPU) and each
  // CPU's area in KiB (0: the default, 32 MiB shared by the CPUs, 2 to 8
  // MiB each). Kernel memory per hook: CPUs x area.
  std::uint32_t copy_rings = 1;
  std::uint32_t copy_area_kib = 0;
};

// What a request failed on, for the client: the status to answer with
// and a message that names the request, the step and the reason.
class RequestError : public std::runtime_error {
 public:
  enum class Kind { invalid, not_found, exists, denied, failed, exhausted };
  RequestError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct NodeInfo {
  std::string id;  // the request's own node id
  std::string filter;
  std::string space;  // "xdp:eth0", "tc:eth0", "user"
  std::string why;
  std::string name;  // given, or derived (compiler::node_names)
};

struct RequestInfo {
  std::string name;
  std::uint32_t owner_uid = 0;
  std::string text;
  std::string file_name;
  std::vector<std::string> devices;
  // "active", "ended" (its input is done), "failed"; "unrecorded" (runs, but its
  // commit could not be stored), "not running" (stored, its removal not)
  std::string state;
  std::string applied_at;
  std::vector<NodeInfo> nodes;
};

// A request node's counters: the one shape of docs/counters.md.
using NodeCounters = runtime::NodeReport;

struct ChannelInfo {
  std::vector<std::string> requests;  // the unit it feeds
  std::string name;                   // "afxdp:eth0:0", "packet:eth0"
  std::string kind;
  std::uint64_t blocks = 0, bytes = 0, drops = 0;
};

struct ApplySpec {
  std::string name;
  std::string text;
  std::string file_name;
  std::vector<std::string> devices;
  bool replace = false;
  std::uint32_t owner_uid = 0;
  // When set, the only filters this request may place in the kernel (the
  // caller is not root); checked against the plan before any step.
  std::optional<std::vector<std::string>> kernel_filters;
  // The most requests the owner may keep, this one included (0: no limit);
  // checked under the manager's lock.
  std::size_t max_owned = 0;
  // The most eBPF instructions (as the plan counts them: the model's
  // estimate per kernel node) the owner's requests may place in the
  // kernel, this one included (0: no limit). A node shared by several of
  // their requests counts once; one shared with other users counts for each.
  std::uint64_t max_kernel_insns = 0;
};

class RequestManager {
 public:
  // Opens the state database, removes what a crash left (pinned hooks of no
  // running datapath, transactions that did not end: rolled back) and
  // brings every stored request up again.
  explicit RequestManager(const ManagerOptions& options);
  // Removes every datapath (their requests stay stored, and come up again
  // with the next daemon).
  ~RequestManager();
  RequestManager(const RequestManager&) = delete;
  RequestManager& operator=(const RequestManager&) = delete;

  // Throws RequestError.
  RequestInfo apply(const ApplySpec& spec);
  void remove(const std::string& name);
  // What applying `spec` would change against what runs now, one line per
  // change ("+ web/n3 count xdp:eth0", "~ web/n1 udp user -> xdp:eth0",
  // "swap the program on the xdp hook of eth0 in one update"); nothing is
  // changed. Throws RequestError.
  // With `viewer`, other users' requests are not named.
  std::vector<std::string> diff(const ApplySpec& spec,
                                std::optional<std::uint32_t> viewer = std::nullopt) const;
  std::vector<RequestInfo> list() const;
  RequestInfo get(const std::string& name) const;
  // Every node of `name` (empty: of every request), in request order.
  std::vector<NodeCounters> stats(const std::string& name = {}) const;
  // Counters of the channels into the userspace parts, each with the
  // requests of its unit.
  std::vector<ChannelInfo> channels() const;
  struct Totals {
    std::size_t requests = 0;
    std::uint64_t committed = 0, rolled_back = 0;  // transactions since start
  };
  Totals totals() const;
  // Requests that failed to come up again at start, with the reason.
  const std::vector<std::string>& start_errors() const { return start_errors_; }

  struct Unit;
  class CompileCache;

 private:
  RequestInfo apply_locked(const ApplySpec& spec, bool store);
  void rebuild(Unit* unit, std::vector<ApplySpec> specs, const std::string& txn_request,
               const std::string& txn_kind, std::vector<std::unique_ptr<Unit>> absorbed,
               const RequestChange& on_commit = {});
  // Builds the new datapath of `fresh`, placed so, before the old one (of
  // `unit`, or the adopted hooks) breaks. Throws RequestError, the change
  // named as `change` ("apply web").
  std::unique_ptr<runtime::Datapath> build_datapath(Unit* unit, const Unit& fresh,
                                                    const runtime::Placement& place,
                                                    runtime::DatapathOptions dopts,
                                                    runtime::StepObserver& observer,
                                                    const std::string& change);
  Unit* unit_of(const std::string& name) const;
  void recover();
  // The steps of recover(), in order.
  void roll_back_cut_transactions();
  void adopt_pinned_hooks();  // into adopted_; what cannot be adopted to start_errors_
  // A unit of stored requests as one transaction; if it does not come up,
  // each request on its own.
  void recover_unit(const std::vector<ApplySpec>& specs);
  // What the adopted programs counted, by the request nodes `saved_slots`
  // (per device, per counter slot) says each slot stood for.
  void carry_adopted_counters(const std::map<std::string, std::vector<std::string>>& saved_slots);
  // The verifier's instructions a change that adds to a hook may take: the
  // admission limit, or the kernel's budget when there is none.
  std::uint32_t admission_limit() const;

  ManagerOptions options_;
  std::filesystem::path pin_root_;
  std::unique_ptr<CompileCache> compiled_;
  std::unique_ptr<Journal> journal_;
  std::vector<std::unique_ptr<Unit>> units_;
  std::vector<std::string> start_errors_;
  void end_transaction(std::int64_t txn, bool committed, const RequestChange& on_commit = {});
  runtime::DatapathOptions options_for(const compiler::MergedRequests& merged,
                                       const std::vector<ApplySpec>& specs) const;
  // options_for() for a rebuild of kind `txn_kind`: held to the admission
  // limit when it adds to a hook.
  runtime::DatapathOptions options_for_change(const compiler::MergedRequests& merged,
                                              const std::vector<ApplySpec>& specs,
                                              const std::string& txn_kind) const;
  std::uint64_t committed_ = 0, rolled_back_ = 0;
  bool recovering_ = false;
  void persist();            // carried counters and slot maps, for the next daemon
  void keep_backup() const;  // Journal::backup(), a failure logged
  void persist_counters();   // persist() without its guard
  std::map<std::string, runtime::VertexCounters> pending_carried_;  // during recovery
  std::unique_ptr<runtime::Datapath> adopted_;                      // during recovery
  mutable std::mutex mutex_;
};

// A request name: 1 to 64 of [A-Za-z0-9_.-], not starting with '.' or '-'.
bool valid_request_name(const std::string& name);

// The name of a request whose client gave none. From a file, its base
// name without the extension, made valid ("dns-capture" for
// examples/dns-capture.srl); from text alone ("<expr>", "<stdin>"), "r-" and
// 8 hex digits of a hash of the caller's uid and the text, so that the same
// text applied twice by one user is refused as the same request rather than
// run twice, and one user's text never names another user's request.
std::string derived_request_name(const std::string& file_name, const std::string& text,
                                 std::uint32_t owner_uid);

}  // namespace srl::controld
