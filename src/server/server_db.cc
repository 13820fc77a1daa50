#include "server/server_db.h"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

namespace kvmart::server {
namespace {

struct StmtCloser {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtCloser>;

StatusOr<Stmt> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
    return Status::Internal(std::string("server.db: ") + sqlite3_errmsg(db));
  }
  return Stmt(s);
}

void Bind(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

std::string Column(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

}  // namespace

StatusOr<std::unique_ptr<ServerDb>> ServerDb::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close(raw);
    return Status::IOError(path + ": " + msg);
  }
  auto db = std::make_unique<ServerDb>(raw, Private{});
  KVMART_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000;"));
  KVMART_RETURN_IF_ERROR(db->Exec(
      "CREATE TABLE IF NOT EXISTS receipts(id TEXT PRIMARY KEY, account INTEGER NOT NULL, json TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS publish_sources(artifact_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
      " messages_json TEXT NOT NULL);"));
  return db;
}

ServerDb::~ServerDb() { sqlite3_close(db_); }

Status ServerDb::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::Internal("server.db: " + msg);
  }
  return Status::Ok();
}

Status ServerDb::AddReceipt(const std::string& signed_json) {
  nlohmann::json j = nlohmann::json::parse(signed_json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("receipt_id") || !j["receipt_id"].is_string()) {
    return Status::InvalidArgument("not a receipt");
  }
  const int64_t account = j.value("account", int64_t{0});
  std::lock_guard<std::mutex> lock(mu_);
  KVMART_ASSIGN_OR_RETURN(Stmt s, Prepare(db_, "INSERT OR IGNORE INTO receipts(id, account, json) VALUES(?, ?, ?)"));
  Bind(s.get(), 1, j["receipt_id"].get<std::string>());
  sqlite3_bind_int64(s.get(), 2, account);
  Bind(s.get(), 3, signed_json);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return Status::Internal(std::string("server.db: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

std::optional<StoredReceipt> ServerDb::GetReceipt(const std::string& receipt_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(db_, "SELECT account, json FROM receipts WHERE id = ?");
  if (!s.ok()) return std::nullopt;
  Bind(s->get(), 1, receipt_id);
  if (sqlite3_step(s->get()) != SQLITE_ROW) return std::nullopt;
  return StoredReceipt{sqlite3_column_int64(s->get(), 0), Column(s->get(), 1)};
}

Status ServerDb::SetPublishSource(const std::string& artifact_id, const PublishSource& src) {
  std::lock_guard<std::mutex> lock(mu_);
  KVMART_ASSIGN_OR_RETURN(
      Stmt s, Prepare(db_, "INSERT OR IGNORE INTO publish_sources(artifact_id, kind, messages_json) VALUES(?, ?, ?)"));
  Bind(s.get(), 1, artifact_id);
  Bind(s.get(), 2, src.kind);
  Bind(s.get(), 3, src.messages_json);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return Status::Internal(std::string("server.db: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

std::optional<PublishSource> ServerDb::GetPublishSource(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = Prepare(db_, "SELECT kind, messages_json FROM publish_sources WHERE artifact_id = ?");
  if (!s.ok()) return std::nullopt;
  Bind(s->get(), 1, artifact_id);
  if (sqlite3_step(s->get()) != SQLITE_ROW) return std::nullopt;
  return PublishSource{Column(s->get(), 0), Column(s->get(), 1)};
}

}  // namespace kvmart::server
