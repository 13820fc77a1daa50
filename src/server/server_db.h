// The server's own small SQLite file (DATA/server.db): the receipts it has
// handed out, so GET /v1/receipts/{id} can return them, and how each artifact
// published through the API was built (its chat prefix turns), so a request
// that continues from it can apply the prefix contract (docs/PREFIX_CONTRACT.md).
//
// The market keeps the ledger; this file holds only copies of signed receipts
// (verifiable offline) and publishing metadata, so losing it loses no money.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/status.h"

namespace kvmart::sqlite {
class Db;
}

namespace kvmart::server {

struct StoredReceipt {
  int64_t account = 0;
  std::string json;  // the signed receipt, as the market produced it
};

struct PublishSource {
  std::string kind;           // "text", "tokens" or "chat"
  std::string messages_json;  // chat: the prefix turns as an OpenAI messages array
};

class ServerDb {
 public:
  // ":memory:" for a database that lives as long as the object.
  static StatusOr<std::unique_ptr<ServerDb>> Open(const std::string& path);
  ~ServerDb();
  ServerDb(const ServerDb&) = delete;
  ServerDb& operator=(const ServerDb&) = delete;

  // Records a signed receipt under its receipt_id (replays are no-ops).
  Status AddReceipt(const std::string& signed_json);
  std::optional<StoredReceipt> GetReceipt(const std::string& receipt_id);

  Status SetPublishSource(const std::string& artifact_id, const PublishSource& src);
  std::optional<PublishSource> GetPublishSource(const std::string& artifact_id);

 private:
  struct Private {};  // lets Open use make_unique while the constructor stays internal

 public:
  ServerDb(std::unique_ptr<sqlite::Db> db, Private);

 private:
  std::mutex mu_;  // one connection, serialised: the writes are tiny
  std::unique_ptr<sqlite::Db> db_;
};

}  // namespace kvmart::server
