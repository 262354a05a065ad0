// The daemon's state and write-ahead journal, in SQLite (WAL mode): the
// requests it keeps, and for every transaction (apply, remove, replace) each
// step it is about to take, recorded before it is taken, so that after a
// crash the daemon knows exactly which steps ran and can finish or undo the
// transaction (docs/architecture.md §5).
//
// A step goes pending -> done (taken) or pending -> failed; undoing a done
// step records it as undone. A transaction ends committed or rolled back;
// one that did not end is open, and recovery finds it with its steps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace srl::controld {

struct StoredRequest {
  std::string name;
  std::uint32_t owner_uid = 0;
  std::string text;
  std::string state;                 // "applying", "active", "removing", "failed"
  std::string updated_at;            // UTC, ISO 8601
  std::string file_name;             // the name diagnostics use
  std::vector<std::string> devices;  // of the implicit rx (srlc --dev)
};

enum class StepState { pending, done, failed, undone };
std::string_view to_string(StepState s);

struct Step {
  std::int64_t id = 0;
  std::int64_t transaction = 0;
  std::uint32_t index = 0;  // order within the transaction
  std::string kind;         // "instantiate", "connect", "activate", ...
  std::string target;       // what it acts on: "xdp:eth0", "user:n3", ...
  std::string undo;         // what undoes it (a pin path, a link id, ...)
  StepState state = StepState::pending;
};

// What the datapaths of a request node counted before the ones running now.
struct StoredCounters {
  std::uint64_t blocks = 0, bytes = 0, accepted = 0, drops = 0;
};

struct Transaction {
  std::int64_t id = 0;
  std::string request;  // request name
  std::string kind;     // "apply", "remove", "replace"
  std::string state;    // "open", "committed", "rolled_back"
  std::vector<Step> steps;
};

// The state database cannot be trusted: SQLite's integrity check failed, it
// is not a database, or a newer controld made it. what() says which, and how
// to restore the last good copy (backup_path()).
class JournalDamaged : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kJournalSchemaVersion = 1;

// What a transaction's commit does to the stored requests, recorded with
// the commit itself: the request as it now runs, or the one it removed.
struct RequestChange {
  std::optional<StoredRequest> put;
  std::string remove;
};

// Ended transactions the journal keeps (with their steps): the newest ones.
inline constexpr std::size_t kKeepTransactions = 1000;

class Journal {
 public:
  // Opens (creating if needed) the database at `path` in WAL mode with
  // synchronous=FULL: a step recorded is on disk before it is taken. An
  // existing database is checked first (PRAGMA integrity_check, schema
  // version): JournalDamaged when it fails, before anything else reads it.
  // Throws std::runtime_error naming the file and SQLite's message.
  explicit Journal(const std::filesystem::path& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Requests.
  void put_request(const StoredRequest& r);  // insert or replace by name
  std::optional<StoredRequest> request(const std::string& name) const;
  std::vector<StoredRequest> requests() const;  // by name
  void set_request_state(const std::string& name, const std::string& state);
  void delete_request(const std::string& name);

  // Transactions and their steps.
  std::int64_t begin(const std::string& request, const std::string& kind);
  std::int64_t step(std::int64_t transaction, const std::string& kind, const std::string& target,
                    const std::string& undo);  // recorded pending
  void mark(std::int64_t step, StepState state);
  // Ends the transaction; when it committed, `on_commit` is applied in the
  // same database transaction. Prunes ended transactions beyond the newest
  // keep_transactions().
  void end(std::int64_t transaction, bool committed, const RequestChange& on_commit = {});
  // Transactions that did not end (a crash cut them), with their steps.
  std::vector<Transaction> open_transactions() const;
  std::optional<Transaction> transaction(std::int64_t id) const;
  // The newest transaction for `request`, ended or not.
  std::optional<Transaction> last_transaction(const std::string& request) const;
  std::size_t transaction_count() const;  // kept, open or ended
  void keep_transactions(std::size_t n) { keep_ = n; }

  // Counters that outlive the daemon: per request node ("web/n3"), what
  // earlier datapaths counted; per device, which request nodes each counter
  // slot of the running program stands for (space-separated), so that a
  // program adopted after a restart is read into the right nodes.
  void save_counters(const std::map<std::string, StoredCounters>& counters);
  std::map<std::string, StoredCounters> counters() const;
  void save_slots(const std::map<std::string, std::vector<std::string>>& slots);
  std::map<std::string, std::vector<std::string>> slots() const;

  // A consistent copy of the database at backup_path() (written beside it,
  // then renamed over the last one): the state to restore when the
  // database is damaged. Throws std::runtime_error.
  void backup() const;
  static std::filesystem::path backup_path(const std::filesystem::path& path) {
    return std::filesystem::path(path.string() + ".good");
  }

  // Test hook: from the n-th write on (counted from this call; 0: never),
  // every write fails as on a full disk.
  void fail_writes_from(std::uint64_t n);

 private:
  void exec(const char* sql) const;
  void write_request(const StoredRequest& r);
  void check() const;           // throws JournalDamaged
  void about_to_write() const;  // the fail_writes_from() hook
  mutable std::uint64_t writes_ = 0;
  std::uint64_t fail_from_ = 0;
  std::size_t keep_ = kKeepTransactions;
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace srl::controld
