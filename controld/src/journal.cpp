// The SQLite state and journal (journal.h). Statements are prepared per call:
// the journal is written a handful of times per transaction, not per packet.
#include "srl/controld/journal.h"

#include <sqlite3.h>

#include <stdexcept>

#include "srl/optimizer/profile.h"

namespace srl::controld {
namespace {

using optimizer::now_utc;

// One prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // True while there is a row.
  bool next() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  }
  void run() {
    while (next()) {
    }
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

StepState step_state(const std::string& s) {
  if (s == "done") return StepState::done;
  if (s == "failed") return StepState::failed;
  if (s == "undone") return StepState::undone;
  return StepState::pending;
}

// Devices are kept as one space-separated column: device names have no
// spaces.
std::string join_devices(const std::vector<std::string>& devices) {
  std::string out;
  for (const auto& d : devices)
    out += (out.empty() ? "" : " ") + d;
  return out;
}

std::vector<std::string> split_devices(const std::string& text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto j = std::min(text.find(' ', i), text.size());
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

StoredRequest read_request(const Statement& st) {
  return {st.text(0),
          static_cast<std::uint32_t>(st.integer(1)),
          st.text(2),
          st.text(3),
          st.text(4),
          st.text(5),
          split_devices(st.text(6))};
}

}  // namespace

std::string_view to_string(StepState s) {
  switch (s) {
    case StepState::pending:
      return "pending";
    case StepState::done:
      return "done";
    case StepState::failed:
      return "failed";
    case StepState::undone:
      return "undone";
  }
  return "?";
}

Journal::Journal(const std::filesystem::path& path) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("journal " + path.string() + ": " + msg);
  }
  // Nothing reads a database that fails its checks: the caller must not
  // act on its contents (remove "orphan" hooks it no longer lists).
  try {
    check();
  } catch (const JournalDamaged&) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
  try {
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    exec(
        "CREATE TABLE IF NOT EXISTS requests ("
        " name TEXT PRIMARY KEY, owner_uid INTEGER NOT NULL, text TEXT NOT NULL,"
        " state TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " file_name TEXT NOT NULL DEFAULT '<expr>', devices TEXT NOT NULL DEFAULT '')");
    exec(
        "CREATE TABLE IF NOT EXISTS transactions ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, request TEXT NOT NULL, kind TEXT NOT NULL,"
        " state TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT)");
    exec(
        "CREATE TABLE IF NOT EXISTS steps ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " txn INTEGER NOT NULL REFERENCES transactions(id), idx INTEGER NOT NULL,"
        " kind TEXT NOT NULL, target TEXT NOT NULL, undo TEXT NOT NULL, state TEXT NOT NULL)");
    exec(
        "CREATE TABLE IF NOT EXISTS counters ("
        " member TEXT PRIMARY KEY, blocks INTEGER NOT NULL, bytes INTEGER NOT NULL,"
        " accepted INTEGER NOT NULL, drops INTEGER NOT NULL)");
    exec(
        "CREATE TABLE IF NOT EXISTS slots ("
        " dev TEXT NOT NULL, slot INTEGER NOT NULL, members TEXT NOT NULL,"
        " PRIMARY KEY(dev, slot))");
    exec(("PRAGMA user_version=" + std::to_string(kJournalSchemaVersion)).c_str());
  } catch (const std::exception& e) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("journal " + path.string() + ": " + e.what());
  }
}

Journal::~Journal() {
  sqlite3_close(db_);
}

void Journal::check() const {
  const std::string where = "state database " + path_.string();
  auto damaged = [&](const std::string& why) {
    std::string msg = where + " is damaged (" + why +
                      "). controld did not start, and left every running datapath (hooks, pins) "
                      "as it is. ";
    const auto good = backup_path(path_);
    std::error_code ec;
    if (std::filesystem::exists(good, ec))
      msg += "To restore the last good state: cp " + good.string() + " " + path_.string() +
             " (and remove " + path_.string() + "-wal and " + path_.string() +
             "-shm if present), then start controld again. ";
    else
      msg += "There is no backup (" + good.string() + "). ";
    msg += "To start with no stored requests instead, move " + path_.string() +
           " away; the running datapaths are then removed as orphans.";
    return JournalDamaged(msg);
  };
  std::vector<std::string> problems;
  try {
    Statement check(db_, "PRAGMA integrity_check(10)");
    while (check.next())
      problems.push_back(check.text(0));
  } catch (const std::exception&) {
    throw damaged(sqlite3_errmsg(db_));
  }
  if (problems.empty() || problems.front() != "ok") {
    std::string detail = "integrity check:";
    for (const auto& p : problems)
      detail += " " + p + ";";
    throw damaged(detail);
  }
  Statement version(db_, "PRAGMA user_version");
  const std::int64_t v = version.next() ? version.integer(0) : 0;
  if (v > kJournalSchemaVersion)
    throw JournalDamaged(where + " has schema version " + std::to_string(v) +
                         ", made by a newer controld (this one knows " +
                         std::to_string(kJournalSchemaVersion) +
                         "); controld did not start and left every running datapath as it is");
}

void Journal::backup() const {
  about_to_write();
  const auto good = backup_path(path_);
  const auto tmp = std::filesystem::path(good.string() + ".tmp");
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  Statement vacuum(db_, "VACUUM INTO ?");
  vacuum.bind(1, tmp.string());
  vacuum.run();
  std::filesystem::rename(tmp, good);
}

void Journal::fail_writes_from(std::uint64_t n) {
  writes_ = 0;
  fail_from_ = n;
}

void Journal::about_to_write() const {
  ++writes_;
  if (fail_from_ != 0 && writes_ >= fail_from_)
    throw std::runtime_error("journal: database or disk is full (injected at write " +
                             std::to_string(writes_) + ")");
}

void Journal::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "error";
    sqlite3_free(err);
    throw std::runtime_error(msg + " in: " + sql);
  }
}

void Journal::save_counters(const std::map<std::string, StoredCounters>& counters) {
  about_to_write();
  exec("BEGIN");
  try {
    exec("DELETE FROM counters");
    for (const auto& [member, c] : counters)
      Statement(db_,
                "INSERT INTO counters(member, blocks, bytes, accepted, drops) VALUES(?,?,?,?,?)")
          .bind(1, member)
          .bind(2, static_cast<std::int64_t>(c.blocks))
          .bind(3, static_cast<std::int64_t>(c.bytes))
          .bind(4, static_cast<std::int64_t>(c.accepted))
          .bind(5, static_cast<std::int64_t>(c.drops))
          .run();
    exec("COMMIT");
  } catch (...) {
    exec("ROLLBACK");
    throw;
  }
}

std::map<std::string, StoredCounters> Journal::counters() const {
  Statement st(db_, "SELECT member, blocks, bytes, accepted, drops FROM counters");
  std::map<std::string, StoredCounters> out;
  while (st.next())
    out[st.text(0)] = {
        static_cast<std::uint64_t>(st.integer(1)), static_cast<std::uint64_t>(st.integer(2)),
        static_cast<std::uint64_t>(st.integer(3)), static_cast<std::uint64_t>(st.integer(4))};
  return out;
}

void Journal::save_slots(const std::map<std::string, std::vector<std::string>>& slots) {
  about_to_write();
  exec("BEGIN");
  try {
    exec("DELETE FROM slots");
    for (const auto& [dev, members] : slots)
      for (std::size_t i = 0; i < members.size(); ++i)
        Statement(db_, "INSERT INTO slots(dev, slot, members) VALUES(?,?,?)")
            .bind(1, dev)
            .bind(2, static_cast<std::int64_t>(i))
            .bind(3, members[i])
            .run();
    exec("COMMIT");
  } catch (...) {
    exec("ROLLBACK");
    throw;
  }
}

std::map<std::string, std::vector<std::string>> Journal::slots() const {
  Statement st(db_, "SELECT dev, slot, members FROM slots ORDER BY dev, slot");
  std::map<std::string, std::vector<std::string>> out;
  while (st.next()) {
    auto& v = out[st.text(0)];
    const auto slot = static_cast<std::size_t>(st.integer(1));
    if (v.size() <= slot) v.resize(slot + 1);
    v[slot] = st.text(2);
  }
  return out;
}

void Journal::put_request(const StoredRequest& r) {
  about_to_write();
  write_request(r);
}

void Journal::write_request(const StoredRequest& r) {
  Statement(db_,
            "INSERT INTO requests(name, owner_uid, text, state, updated_at, file_name, devices)"
            " VALUES(?,?,?,?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET owner_uid=excluded.owner_uid, text=excluded.text,"
            " state=excluded.state, updated_at=excluded.updated_at,"
            " file_name=excluded.file_name, devices=excluded.devices")
      .bind(1, r.name)
      .bind(2, std::int64_t{r.owner_uid})
      .bind(3, r.text)
      .bind(4, r.state)
      .bind(5, r.updated_at.empty() ? now_utc() : r.updated_at)
      .bind(6, r.file_name.empty() ? std::string("<expr>") : r.file_name)
      .bind(7, join_devices(r.devices))
      .run();
}

std::optional<StoredRequest> Journal::request(const std::string& name) const {
  Statement st(db_,
               "SELECT name, owner_uid, text, state, updated_at, file_name, devices FROM requests "
               "WHERE name = ?");
  st.bind(1, name);
  if (!st.next()) return std::nullopt;
  return read_request(st);
}

std::vector<StoredRequest> Journal::requests() const {
  Statement st(db_,
               "SELECT name, owner_uid, text, state, updated_at, file_name, devices FROM requests "
               "ORDER BY name");
  std::vector<StoredRequest> out;
  while (st.next())
    out.push_back(read_request(st));
  return out;
}

void Journal::set_request_state(const std::string& name, const std::string& state) {
  about_to_write();
  Statement(db_, "UPDATE requests SET state = ?, updated_at = ? WHERE name = ?")
      .bind(1, state)
      .bind(2, now_utc())
      .bind(3, name)
      .run();
}

void Journal::delete_request(const std::string& name) {
  about_to_write();
  Statement(db_, "DELETE FROM requests WHERE name = ?").bind(1, name).run();
}

std::int64_t Journal::begin(const std::string& request, const std::string& kind) {
  about_to_write();
  Statement(db_, "INSERT INTO transactions(request, kind, state, started_at) VALUES(?,?,'open',?)")
      .bind(1, request)
      .bind(2, kind)
      .bind(3, now_utc())
      .run();
  return sqlite3_last_insert_rowid(db_);
}

std::int64_t Journal::step(std::int64_t transaction, const std::string& kind,
                           const std::string& target, const std::string& undo) {
  about_to_write();
  Statement(db_,
            "INSERT INTO steps(txn, idx, kind, target, undo, state)"
            " VALUES(?1, (SELECT COUNT(*) FROM steps WHERE txn = ?1), ?2, ?3, ?4, 'pending')")
      .bind(1, transaction)
      .bind(2, kind)
      .bind(3, target)
      .bind(4, undo)
      .run();
  return sqlite3_last_insert_rowid(db_);
}

void Journal::mark(std::int64_t step, StepState state) {
  about_to_write();
  Statement(db_, "UPDATE steps SET state = ? WHERE id = ?")
      .bind(1, std::string(to_string(state)))
      .bind(2, step)
      .run();
}

void Journal::end(std::int64_t transaction, bool committed, const RequestChange& on_commit) {
  about_to_write();
  // The transaction's end, the request it changes and the pruning of old
  // records: one SQLite transaction, so a crash or a full disk leaves all of
  // them before or all after.
  exec("BEGIN IMMEDIATE");
  try {
    Statement(db_, "UPDATE transactions SET state = ?, ended_at = ? WHERE id = ?")
        .bind(1, std::string(committed ? "committed" : "rolled_back"))
        .bind(2, now_utc())
        .bind(3, transaction)
        .run();
    if (committed && on_commit.put) write_request(*on_commit.put);
    if (committed && !on_commit.remove.empty())
      Statement(db_, "DELETE FROM requests WHERE name = ?").bind(1, on_commit.remove).run();
    // Ended transactions beyond the newest keep_ go, with their steps.
    const auto horizon = static_cast<std::int64_t>(keep_);
    Statement(db_,
              "DELETE FROM steps WHERE txn IN (SELECT id FROM transactions WHERE state != 'open'"
              " ORDER BY id DESC LIMIT -1 OFFSET ?)")
        .bind(1, horizon)
        .run();
    Statement(db_,
              "DELETE FROM transactions WHERE id IN (SELECT id FROM transactions"
              " WHERE state != 'open' ORDER BY id DESC LIMIT -1 OFFSET ?)")
        .bind(1, horizon)
        .run();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::optional<Transaction> Journal::last_transaction(const std::string& request) const {
  Statement t(db_, "SELECT id FROM transactions WHERE request = ? ORDER BY id DESC LIMIT 1");
  t.bind(1, request);
  if (!t.next()) return std::nullopt;
  return transaction(t.integer(0));
}

std::size_t Journal::transaction_count() const {
  Statement t(db_, "SELECT COUNT(*) FROM transactions");
  t.next();
  return static_cast<std::size_t>(t.integer(0));
}

std::optional<Transaction> Journal::transaction(std::int64_t id) const {
  Statement t(db_, "SELECT id, request, kind, state FROM transactions WHERE id = ?");
  t.bind(1, id);
  if (!t.next()) return std::nullopt;
  Transaction out{t.integer(0), t.text(1), t.text(2), t.text(3), {}};
  Statement s(db_,
              "SELECT id, txn, idx, kind, target, undo, state FROM steps WHERE txn = ?"
              " ORDER BY idx");
  s.bind(1, id);
  while (s.next())
    out.steps.push_back({s.integer(0), s.integer(1), static_cast<std::uint32_t>(s.integer(2)),
                         s.text(3), s.text(4), s.text(5), step_state(s.text(6))});
  return out;
}

std::vector<Transaction> Journal::open_transactions() const {
  std::vector<std::int64_t> ids;
  {
    Statement t(db_, "SELECT id FROM transactions WHERE state = 'open' ORDER BY id");
    while (t.next())
      ids.push_back(t.integer(0));
  }
  std::vector<Transaction> out;
  for (const auto id : ids)
    out.push_back(*transaction(id));
  return out;
}

}  // namespace srl::controld
