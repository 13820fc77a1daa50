// Thin RAII layer over the SQLite C API: a connection with a cache of prepared
// statements, a statement handle that resets itself, and an IMMEDIATE transaction
// that rolls back unless committed. Shared by the store's catalog and the
// server's database; the market reaches SQLite through Connection below, its
// implementation of the back-end-neutral base/sql.h. Its own library
// (kvmart_sqlite), so modules without a database do not link SQLite.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/sql.h"
#include "base/status.h"

namespace kvmart::sqlite {

// SQLITE_BUSY/LOCKED surface as sql::Conflict (Aborted) so callers can retry.
inline bool IsBusy(const Status& s) { return sql::IsRetryable(s); }

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
struct DbDeleter {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

class Db;

// A borrowed prepared statement; resets and clears bindings when it goes out of
// scope so the cached statement is ready for the next user.
class Stmt {
 public:
  Stmt(Db* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& BindBlob(int i, const void* p, size_t n);
  Stmt& BindNull(int i);
  Stmt& Bind(int i, const std::optional<int64_t>& v) { return v ? Bind(i, *v) : BindNull(i); }

  // true: a row is ready; false: done.
  StatusOr<bool> Step();
  // Runs to completion, expecting no rows.
  Status Run();

  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::optional<int64_t> OptInt(int col) const { return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col)); }
  std::string Text(int col) const;
  std::string Blob(int col) const;

 private:
  Status Err(int rc) const;
  Db* db_;
  sqlite3_stmt* s_;
};

class Db {
 public:
  // Opens (creating) the file, sets WAL, the sync level and busy_timeout.
  // vfs: the name of a registered sqlite3_vfs to do the file I/O; empty =
  // SQLite's default (tests pass a fault-injecting one: tests/testing/fault_vfs.h).
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& path, bool synchronous_full, int busy_timeout_ms,
                                            const std::string& vfs = "");
  // Opens an existing file read-only (audits): nothing is created or changed.
  static StatusOr<std::unique_ptr<Db>> OpenReadOnly(const std::string& path, int busy_timeout_ms);

  Status Exec(const char* sql);
  // Prepared once per connection and cached, keyed by the SQL text.
  StatusOr<std::unique_ptr<Stmt>> Prepare(const char* sql);
  int64_t LastInsertId() const { return sqlite3_last_insert_rowid(db_.get()); }
  int64_t Changes() const { return sqlite3_changes64(db_.get()); }
  sqlite3* raw() const { return db_.get(); }
  Status Error(int rc, std::string_view what) const;

 private:
  std::unique_ptr<sqlite3, DbDeleter> db_;
  std::unordered_map<std::string, std::unique_ptr<sqlite3_stmt, StmtDeleter>> cache_;
};

// BEGIN IMMEDIATE takes the write lock up front: two writers can never both
// read a balance and then both spend it (the classic lost update), and a busy
// database shows up at BEGIN, before any work, where a retry is cheap.
class WriteTxn {
 public:
  explicit WriteTxn(Db* db) : db_(db) {}
  ~WriteTxn();
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;
  Status Begin();
  Status Commit();

 private:
  Db* db_;
  bool open_ = false;
};

// A deferred read transaction: a consistent snapshot for multi-statement reads.
class ReadTxn {
 public:
  explicit ReadTxn(Db* db) : db_(db) {}
  ~ReadTxn();
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  Status Begin();

 private:
  Db* db_;
  bool open_ = false;
};

// sql::Connection over one Db: the market's SQLite back end.
class Connection final : public sql::Connection {
 public:
  static StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, bool synchronous_full, int busy_timeout_ms,
                                                    const std::string& vfs = "");
  static StatusOr<std::unique_ptr<Connection>> OpenReadOnly(const std::string& path, int busy_timeout_ms);
  explicit Connection(std::unique_ptr<Db> db) : db_(std::move(db)) {}

  sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }
  Status Exec(std::string_view sql) override { return db_->Exec(std::string(sql).c_str()); }
  StatusOr<std::unique_ptr<sql::Statement>> Prepare(const char* sql) override;
  Status BeginWrite() override { return db_->Exec("BEGIN IMMEDIATE"); }
  Status BeginRead() override { return db_->Exec("BEGIN"); }
  // A file does not hang up.
  bool healthy() const override { return true; }
  Db* db() const { return db_.get(); }

 private:
  std::unique_ptr<Db> db_;
};

}  // namespace kvmart::sqlite
