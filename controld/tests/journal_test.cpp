// The daemon's SQLite state and journal: requests kept, steps recorded in
// order with their states, and a transaction a crash cut found again, also
// when the process died without closing the database.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <sqlite3.h>

#include <cstdio>

#include "srl/controld/journal.h"
#include "temp_dir.h"

using srl::controld::Journal;
using srl::controld::StepState;
using srl::controld::StoredRequest;
using srl::testing::TempDir;

TEST_CASE("journal: requests are kept by name, in WAL mode") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  {
    Journal j(db);
    j.put_request({"web", 1000, "(tcp) > (port) 80> (count)", "active", ""});
    j.put_request({"dns", 0, "(udp) > (port) 53> (count)", "applying", ""});
    CHECK(std::filesystem::exists(dir.path / "state.db-wal"));
    const auto all = j.requests();
    REQUIRE(all.size() == 2);
    CHECK(all[0].name == "dns");
    CHECK(all[1].name == "web");
    CHECK(all[1].owner_uid == 1000);
    CHECK(all[1].updated_at.size() == 20);  // 2026-11-25T12:00:00Z
    j.set_request_state("dns", "active");
    j.put_request({"web", 1000, "(tcp) > (port) 443> (count)", "active", ""});
    j.delete_request("nosuch");
  }
  Journal j(db);  // reopened: everything is still there
  CHECK(j.request("dns")->state == "active");
  CHECK(j.request("web")->text == "(tcp) > (port) 443> (count)");
  j.delete_request("dns");
  CHECK_FALSE(j.request("dns").has_value());
  CHECK(j.requests().size() == 1);
}

TEST_CASE("journal: steps in order, their states, and transactions that ended") {
  TempDir dir("srl-journal");
  Journal j(dir.path / "state.db");
  const auto t = j.begin("web", "apply");
  const auto s0 = j.step(t, "instantiate", "xdp:eth0", "pin /sys/fs/bpf/srl/web/eth0");
  const auto s1 = j.step(t, "connect", "afxdp:eth0/0", "");
  const auto s2 = j.step(t, "activate", "xdp:eth0", "link 42");
  j.mark(s0, StepState::done);
  j.mark(s1, StepState::done);
  j.mark(s2, StepState::failed);
  j.mark(s1, StepState::undone);
  j.mark(s0, StepState::undone);
  const auto tx = j.transaction(t);
  REQUIRE(tx.has_value());
  CHECK(tx->request == "web");
  CHECK(tx->state == "open");
  REQUIRE(tx->steps.size() == 3);
  CHECK(tx->steps[0].index == 0);
  CHECK(tx->steps[2].index == 2);
  CHECK(tx->steps[0].undo == "pin /sys/fs/bpf/srl/web/eth0");
  CHECK(tx->steps[0].state == StepState::undone);
  CHECK(tx->steps[2].state == StepState::failed);
  CHECK(j.open_transactions().size() == 1);
  j.end(t, false);
  CHECK(j.transaction(t)->state == "rolled_back");
  CHECK(j.open_transactions().empty());
  const auto t2 = j.begin("web", "apply");
  j.end(t2, true);
  CHECK(j.transaction(t2)->state == "committed");
  CHECK(j.transaction(t2)->steps.empty());
}

TEST_CASE("journal: a transaction a crash cut is found with every step it recorded") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  // A process that records two steps, takes the first, and dies at once:
  // no close, no checkpoint.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    Journal j(db);
    const auto t = j.begin("web", "apply");
    j.mark(j.step(t, "instantiate", "xdp:eth0", "pin a"), StepState::done);
    j.step(t, "connect", "afxdp:eth0/0", "");
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  Journal j(db);
  const auto open = j.open_transactions();
  REQUIRE(open.size() == 1);
  CHECK(open[0].kind == "apply");
  REQUIRE(open[0].steps.size() == 2);
  CHECK(open[0].steps[0].state == StepState::done);
  CHECK(open[0].steps[0].undo == "pin a");
  CHECK(open[0].steps[1].state == StepState::pending);
}

TEST_CASE("journal: a database that cannot be opened is named") {
  CHECK_THROWS_WITH(Journal("/nonexistent-dir/state.db"),
                    doctest::Contains("journal /nonexistent-dir/state.db: "));
}

TEST_CASE("journal: a damaged database is refused before anything reads it; the backup restores") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  const auto good = Journal::backup_path(db);
  {
    Journal j(db);
    for (int i = 0; i < 200; ++i)
      j.put_request({"r" + std::to_string(i), 0, std::string(300, 'x'), "active", ""});
    j.backup();
  }
  REQUIRE(std::filesystem::exists(good));
  CHECK(Journal(good).requests().size() == 200);
  const auto size = std::filesystem::file_size(db);
  REQUIRE(size >= 8 * 4096);
  auto overwrite = [&](std::uintmax_t at, const std::string& bytes) {
    std::filesystem::copy_file(good, db, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(dir.path / "state.db-wal");
    std::filesystem::remove(dir.path / "state.db-shm");
    FILE* f = std::fopen(db.c_str(), "r+b");
    REQUIRE(f != nullptr);
    std::fseek(f, static_cast<long>(at), SEEK_SET);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  };
  overwrite(0, "not a database, not at all.....");
  CHECK_THROWS_AS(Journal{db}, srl::controld::JournalDamaged);
  const std::string restore = "cp " + good.string() + " " + db.string();
  CHECK_THROWS_WITH(Journal{db}, doctest::Contains(restore.c_str()));
  overwrite(4096 * 3, std::string(4096, '\x5a'));
  CHECK_THROWS_WITH(Journal{db}, doctest::Contains(" is damaged ("));
  std::filesystem::copy_file(good, db, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(db, size / 2);
  CHECK_THROWS_AS(Journal{db}, srl::controld::JournalDamaged);
  // The restore the message names.
  std::filesystem::copy_file(good, db, std::filesystem::copy_options::overwrite_existing);
  CHECK(Journal(db).requests().size() == 200);
}

TEST_CASE("journal: a database of a newer schema is refused") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  {
    Journal j(db);
    j.put_request({"web", 0, "(tcp)", "active", ""});
  }
  {
    // What a newer controld would leave.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  CHECK_THROWS_WITH(Journal{db}, doctest::Contains("schema version 99, made by a newer controld"));
}

TEST_CASE("journal: counters and counter slots outlive the process, each saved whole") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  {
    Journal j(db);
    j.save_counters({{"web/n3", {150, 9300, 150, 0}}, {"all/n1", {50, 3100, 50, 2}}});
    j.save_slots({{"vb", {"web/n0 all/n0", "web/n1 all/n1", "web/n2"}}});
    // Saved whole: what is not saved again is gone.
    j.save_counters({{"web/n3", {160, 9920, 160, 0}}});
  }
  Journal j(db);
  const auto counters = j.counters();
  REQUIRE(counters.size() == 1);
  CHECK(counters.at("web/n3").blocks == 160);
  CHECK(counters.at("web/n3").bytes == 9920);
  const auto slots = j.slots();
  REQUIRE(slots.contains("vb"));
  CHECK(slots.at("vb") == std::vector<std::string>{"web/n0 all/n0", "web/n1 all/n1", "web/n2"});
}

TEST_CASE("journal: a commit stores or deletes its request in the same database transaction") {
  TempDir dir("srl-journal");
  Journal j(dir.path / "state.db");
  srl::controld::RequestChange put;
  put.put = StoredRequest{"web", 0, "(tcp) > (count)", "active", ""};
  const auto t1 = j.begin("web", "apply");
  CHECK_FALSE(j.request("web"));  // nothing stored while the transaction is open
  j.end(t1, true, put);
  REQUIRE(j.request("web"));
  CHECK(j.request("web")->state == "active");

  // A rolled-back transaction changes no request.
  srl::controld::RequestChange remove;
  remove.remove = "web";
  const auto t2 = j.begin("web", "remove");
  j.end(t2, false, remove);
  CHECK(j.request("web"));

  // A commit whose record fails leaves the request as it was, and the
  // transaction open (the next start rolls it back).
  const auto t3 = j.begin("web", "remove");
  j.fail_writes_from(1);
  CHECK_THROWS(j.end(t3, true, remove));
  j.fail_writes_from(0);
  CHECK(j.request("web"));
  REQUIRE(j.last_transaction("web"));
  CHECK(j.last_transaction("web")->id == t3);
  CHECK(j.last_transaction("web")->state == "open");
  j.end(t3, true, remove);
  CHECK_FALSE(j.request("web"));
  CHECK(j.last_transaction("web")->state == "committed");
  CHECK_FALSE(j.last_transaction("nosuch"));
}

TEST_CASE("journal: ended transactions beyond the newest ones are pruned, with their steps") {
  TempDir dir("srl-journal");
  const auto db = dir.path / "state.db";
  Journal j(db);
  j.keep_transactions(3);
  const auto open = j.begin("cut", "apply");  // open: never pruned
  j.step(open, "load", "xdp:eth0", "pin");
  for (int i = 0; i < 10; ++i) {
    const auto t = j.begin("r" + std::to_string(i), "apply");
    j.mark(j.step(t, "load", "xdp:eth0", "pin"), StepState::done);
    j.end(t, i % 2 == 0);
  }
  CHECK(j.transaction_count() == 4);  // the open one and the newest three
  CHECK(j.open_transactions().size() == 1);
  CHECK(j.transaction(open));
  CHECK(j.last_transaction("r9"));
  CHECK_FALSE(j.last_transaction("r6"));
  // No step outlives its transaction.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM steps", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == 4);
  sqlite3_finalize(st);
  sqlite3_close(raw);
}
