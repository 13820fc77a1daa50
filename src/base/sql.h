// The SQL contract the market is written against, so that one body of ledger
// logic runs on every back end: SQLite for the embedded default (one file, one
// machine) and PostgreSQL for many nodes (base/postgres_db.h).
//
// The statements are written once, in the SQL both engines accept: `?`
// placeholders (the PostgreSQL driver numbers them), `INSERT … RETURNING id`
// instead of a last-insert-id call, `ON CONFLICT … DO …` for upserts, 64-bit
// integers everywhere. Only DDL differs between back ends, so each back end's
// schema is its own text.
//
// Errors: a transaction the engine could not serialise (SQLite busy, PostgreSQL
// SQLSTATE 40001 / 40P01) is Status::Aborted and IsRetryable(); the caller runs
// the whole transaction again. A lost server connection is Status::Unavailable
// and the connection reports !healthy(), so a pool drops it and dials again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart::sql {

enum class Dialect { kSqlite, kPostgres };

// The prefix of the message of a retryable Aborted status.
inline constexpr std::string_view kRetryMessage = "transaction conflict";
// A status built by a back end for a busy database or a serialisation failure.
Status Conflict(std::string_view detail);
bool IsRetryable(const Status& s);

// A borrowed prepared statement. Parameters are numbered from 1, columns from 0.
// Destroying it releases its result and readies the cached statement for reuse.
class Statement {
 public:
  virtual ~Statement() = default;

  virtual Statement& Bind(int i, int64_t v) = 0;
  virtual Statement& Bind(int i, std::string_view v) = 0;
  virtual Statement& BindBlob(int i, const void* p, size_t n) = 0;
  virtual Statement& BindNull(int i) = 0;
  Statement& Bind(int i, const std::optional<int64_t>& v) { return v ? Bind(i, *v) : BindNull(i); }
  // Without these a string literal would pick the bool-convertible overload.
  Statement& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Statement& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }

  // true: a row is ready; false: done.
  virtual StatusOr<bool> Step() = 0;
  // Runs to completion, ignoring rows.
  Status Run();
  // Rows inserted, updated or deleted by the last completed execution.
  virtual int64_t Changes() const = 0;

  virtual int64_t Int(int col) const = 0;
  virtual bool IsNull(int col) const = 0;
  std::optional<int64_t> OptInt(int col) const { return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col)); }
  virtual std::string Text(int col) const = 0;
  virtual std::string Blob(int col) const = 0;
};

class Connection {
 public:
  virtual ~Connection() = default;

  virtual Dialect dialect() const = 0;
  // Runs one or more statements without parameters (DDL, BEGIN/COMMIT).
  virtual Status Exec(std::string_view sql) = 0;
  // Prepared once per connection and cached, keyed by the SQL text.
  virtual StatusOr<std::unique_ptr<Statement>> Prepare(const char* sql) = 0;
  // A write transaction that cannot lose an update: SQLite takes the write
  // lock up front (BEGIN IMMEDIATE), PostgreSQL takes the ledger's writer lock.
  virtual Status BeginWrite() = 0;
  // A consistent snapshot for multi-statement reads.
  virtual Status BeginRead() = 0;
  // false once the link to the server is lost: the connection must not be reused.
  virtual bool healthy() const = 0;
};

// Rolls back unless committed.
class WriteTxn {
 public:
  explicit WriteTxn(Connection* c) : c_(c) {}
  ~WriteTxn();
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;
  Status Begin();
  Status Commit();

 private:
  Connection* c_;
  bool open_ = false;
};

// Ends the snapshot when it goes out of scope.
class ReadTxn {
 public:
  explicit ReadTxn(Connection* c) : c_(c) {}
  ~ReadTxn();
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  Status Begin();

 private:
  Connection* c_;
  bool open_ = false;
};

}  // namespace kvmart::sql
