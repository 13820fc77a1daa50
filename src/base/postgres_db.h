// The PostgreSQL back end of base/sql.h, on libpq: one server connection with a
// cache of named prepared statements. The market runs on it when a deployment
// of many nodes shares one ledger (`--db postgresql://…`).
//
// Why these choices:
// - Write transactions queue on one lock (a transaction-scoped advisory lock,
//   taken in the statement after BEGIN) and run READ COMMITTED: one writer at
//   a time across every node, which is what SQLite gives one machine. Every
//   metered load writes the provider's fee account and the publisher's
//   balance, so ledger writers conflict on those rows whatever the engine
//   does; SERIALIZABLE without the lock aborted most of them under 4 clients
//   (40001 on those rows) and they spent their time retrying. With the lock
//   they wait instead, and each statement, taken after the lock, sees every
//   earlier writer's commit. A lock that is never granted (the server died)
//   ends with the session. SQLSTATE 40001 / 40P01 still map to a retryable
//   sql::Conflict.
// - Read transactions are REPEATABLE READ READ ONLY: one snapshot, never a
//   serialisation failure, never waiting for the writer lock.
// - Parameters go as text (integers, strings) or binary (blobs) and results
//   come back as text, so no client-side type table is needed; SUM() of a
//   BIGINT (a NUMERIC in PostgreSQL) reads like any integer.
// - A lost connection (server restart, network) is Status::Unavailable and
//   marks the connection unhealthy; the pool that lent it dials a new one, so
//   the process recovers by itself once the server is back.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/sql.h"

namespace kvmart::postgres {

// "postgresql://…" or "postgres://…" (libpq's URI forms).
bool IsPostgresUrl(std::string_view s);
// The location for messages and /readyz: a URL's password (in the authority
// or as a password= parameter) replaced by ***; anything else unchanged.
std::string RedactUrl(const std::string& location);

// The statement text with each `?` outside quotes replaced by $1, $2, …; also
// returns how many there were.
std::string NumberPlaceholders(std::string_view sql, int* count);

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

class Connection final : public sql::Connection {
 public:
  // `url` is a libpq connection URI; connect_timeout_s bounds the dial.
  static StatusOr<std::unique_ptr<Connection>> Open(const std::string& url, int connect_timeout_s = 5);
  explicit Connection(std::unique_ptr<PGconn, PgConnDeleter> conn) : conn_(std::move(conn)) {}

  sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }
  Status Exec(std::string_view sql) override;
  StatusOr<std::unique_ptr<sql::Statement>> Prepare(const char* sql) override;
  // The writer lock is pg_advisory_xact_lock(kWriterLockClass, hash of the
  // schema): one per ledger, so markets in different schemas of one database
  // do not queue behind each other.
  static constexpr int kWriterLockClass = 731740;
  Status BeginWrite() override {
    return Exec("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(" +
                std::to_string(kWriterLockClass) + ", hashtext(current_schema()))");
  }
  Status BeginRead() override { return Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); }
  bool healthy() const override;

  // The error status of a failed result (or of the connection when res is null).
  Status Error(const PGresult* res, std::string_view what);
  PGconn* raw() const { return conn_.get(); }

 private:
  struct Prepared {
    std::string name;
    int params = 0;
  };
  std::unique_ptr<PGconn, PgConnDeleter> conn_;
  std::unordered_map<std::string, Prepared> cache_;
  mutable bool broken_ = false;  // healthy() notices a hang-up while idle
};

}  // namespace kvmart::postgres
