// The catalog: the durable record of what the store holds (SQLite, WAL, one
// file, versioned schema). The disk tier's files are only data; a file is part
// of the store exactly when a `blocks` row names it. Publishing commits one
// transaction after the block files are durable, so an artifact row never
// points at a missing file because of a crash (docs/STORE.md, "Crash safety").
//
// Not thread-safe: the store serialises all catalog access behind its writer
// mutex, and serves reads from its in-memory index.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "artifact/codec.h"
#include "base/status.h"
#include "store/block_files.h"
#include "base/sqlite_db.h"

namespace kvmart::store {

// The schema version this code writes (PRAGMA user_version).
inline constexpr int kCatalogSchemaVersion = 1;

struct CatalogArtifact {
  std::string artifact_id;
  std::string profile_digest_hex;
  std::string publisher_hex;
  uint64_t token_count = 0;
  uint32_t num_blocks = 0;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  std::string codec;
  std::optional<std::string> title;
  std::string created_at;
  int64_t published_at_unix = 0;
  bool pinned = false;
  std::optional<int64_t> expires_at_unix;
  std::string manifest_json;    // canonical manifest, signature included
  std::vector<BlockKey> blocks;  // in block order
};

struct CatalogBlock {
  BlockKey key;
  artifact::Codec codec = artifact::Codec::kRaw;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  Digest256 payload_sha256{};
  int64_t refcount = 0;
};

class Catalog {
 public:
  // Opens or creates <path>, applies pending migrations in one transaction.
  // durable = synchronous=FULL (a commit survives power loss, not only a crash).
  static StatusOr<std::unique_ptr<Catalog>> Open(const std::string& path, bool durable);

  Status ForEachArtifact(const std::function<Status(CatalogArtifact)>& fn);
  Status ForEachBlock(const std::function<Status(CatalogBlock)>& fn);

  // One transaction: the artifact row, its block list, and a reference on each
  // block (rows created with refcount 1 when new). `blocks[i]` describes block i.
  Status InsertArtifact(const CatalogArtifact& a, const std::vector<CatalogBlock>& blocks);
  // One transaction: removes the artifact and its references; returns the keys
  // of blocks no artifact references any more (their rows are gone too; the
  // caller unlinks the files after the commit).
  StatusOr<std::vector<BlockKey>> RemoveArtifact(const std::string& artifact_id);

  Status SetPinned(const std::string& artifact_id, bool pinned);
  Status SetExpiry(const std::string& artifact_id, std::optional<int64_t> expires_at_unix);
  Status SetQuota(const std::string& publisher_hex, uint64_t bytes);
  StatusOr<std::vector<std::pair<std::string, uint64_t>>> Quotas();

 private:
  explicit Catalog(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}
  Status Migrate();
  Status UpdateOne(const char* sql, const std::string& artifact_id, const std::function<void(sqlite::Stmt&)>& bind);
  std::unique_ptr<sqlite::Db> db_;
};

}  // namespace kvmart::store
