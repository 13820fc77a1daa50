#include "server/server_db.h"

#include <nlohmann/json.hpp>

#include "base/sqlite_db.h"

namespace kvmart::server {

StatusOr<std::unique_ptr<ServerDb>> ServerDb::Open(const std::string& path) {
  // synchronous=NORMAL: the file holds copies of signed receipts and publish
  // metadata, never money; losing the last commits to a power cut is harmless.
  KVMART_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(path, /*synchronous_full=*/false, /*busy_timeout_ms=*/10000));
  KVMART_RETURN_IF_ERROR(db->Exec(
      "CREATE TABLE IF NOT EXISTS receipts(id TEXT PRIMARY KEY, account INTEGER NOT NULL, json TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS publish_sources(artifact_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
      " messages_json TEXT NOT NULL);"));
  return std::make_unique<ServerDb>(std::move(db), Private{});
}

ServerDb::ServerDb(std::unique_ptr<sqlite::Db> db, Private) : db_(std::move(db)) {}
ServerDb::~ServerDb() = default;

Status ServerDb::AddReceipt(const std::string& signed_json) {
  nlohmann::json j = nlohmann::json::parse(signed_json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("receipt_id") || !j["receipt_id"].is_string()) {
    return Status::InvalidArgument("not a receipt");
  }
  const int64_t account = j.value("account", int64_t{0});
  std::lock_guard<std::mutex> lock(mu_);
  KVMART_ASSIGN_OR_RETURN(auto s, db_->Prepare("INSERT OR IGNORE INTO receipts(id, account, json) VALUES(?, ?, ?)"));
  s->Bind(1, j["receipt_id"].get<std::string>()).Bind(2, account).Bind(3, signed_json);
  return s->Run().WithContext("server.db");
}

std::optional<StoredReceipt> ServerDb::GetReceipt(const std::string& receipt_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT account, json FROM receipts WHERE id = ?");
  if (!s.ok()) return std::nullopt;
  (*s)->Bind(1, receipt_id);
  auto row = (*s)->Step();
  if (!row.ok() || !*row) return std::nullopt;
  return StoredReceipt{(*s)->Int(0), (*s)->Text(1)};
}

Status ServerDb::SetPublishSource(const std::string& artifact_id, const PublishSource& src) {
  std::lock_guard<std::mutex> lock(mu_);
  KVMART_ASSIGN_OR_RETURN(
      auto s, db_->Prepare("INSERT OR IGNORE INTO publish_sources(artifact_id, kind, messages_json) VALUES(?, ?, ?)"));
  s->Bind(1, artifact_id).Bind(2, src.kind).Bind(3, src.messages_json);
  return s->Run().WithContext("server.db");
}

std::optional<PublishSource> ServerDb::GetPublishSource(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT kind, messages_json FROM publish_sources WHERE artifact_id = ?");
  if (!s.ok()) return std::nullopt;
  (*s)->Bind(1, artifact_id);
  auto row = (*s)->Step();
  if (!row.ok() || !*row) return std::nullopt;
  return PublishSource{(*s)->Text(0), (*s)->Text(1)};
}

}  // namespace kvmart::server
