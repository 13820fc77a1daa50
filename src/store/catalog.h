// The catalog: the durable record of what the store holds, on either back end
// of base/sql.h — one SQLite file (WAL) for the embedded default, or a
// PostgreSQL database shared by many nodes (`--db postgresql://…`, the same
// database as the market). The statements are one text for both; only the DDL
// differs. The disk tier's files are only data; a file is part of the store
// exactly when a `blocks` row names it. Publishing commits one transaction
// after the block files are durable (and, with a shared block tier, stored
// there too), so an artifact row never points at bytes a crash lost
// (docs/STORE.md, "Crash safety").
//
// Many nodes, one catalog: every change bumps a generation number in the
// same transaction, so a node learns with one cheap query whether its
// in-memory index is stale (Generation) and re-reads it only then (Snapshot).
//
// Not thread-safe: the store serialises all catalog access behind its writer
// mutex, and serves reads from its in-memory index. A PostgreSQL connection
// the server hung up on is dialled again on the next call.
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
#include "base/sql.h"

namespace kvmart::store {

// The schema version this code writes (PRAGMA user_version on SQLite, the
// catalog_version table on PostgreSQL).
inline constexpr int kCatalogSchemaVersion = 2;

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
  // Opens or creates the catalog at `location` (a file path, or a
  // postgresql:// URL), applies pending migrations in one transaction.
  // durable = synchronous=FULL on SQLite (a commit survives power loss, not
  // only a crash); PostgreSQL keeps its own settings. sqlite_vfs: the
  // registered SQLite VFS for a file catalog; empty = SQLite's default.
  static StatusOr<std::unique_ptr<Catalog>> Open(const std::string& location, bool durable,
                                                 const std::string& sqlite_vfs = "");
  ~Catalog();

  // True when the catalog can be shared by several nodes (PostgreSQL).
  bool shared() const;
  // Where it is, with any password masked.
  std::string Describe() const;

  // Everything, read in one consistent snapshot.
  struct Contents {
    int64_t generation = 0;
    std::vector<CatalogArtifact> artifacts;  // by artifact id, blocks in order
    std::vector<CatalogBlock> blocks;
    std::vector<std::pair<std::string, uint64_t>> quotas;
  };
  StatusOr<Contents> Snapshot();
  // Bumped by every change below, in the change's own transaction.
  StatusOr<int64_t> Generation();
  // The generation the last committed change of this Catalog produced.
  int64_t last_generation() const { return last_generation_; }

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

 private:
  Catalog(std::string location, bool durable, std::string sqlite_vfs)
      : location_(std::move(location)), durable_(durable), sqlite_vfs_(std::move(sqlite_vfs)) {}
  // The connection, dialled again when the server hung up.
  StatusOr<sql::Connection*> Conn();
  Status Migrate();
  Status BumpGeneration(sql::Connection* db);
  Status CommitChange(sql::WriteTxn* txn);
  Status UpdateOne(const char* sql, const std::string& artifact_id,
                   const std::function<void(sql::Statement&)>& bind);
  std::string location_;
  bool durable_;
  std::string sqlite_vfs_;
  std::unique_ptr<sql::Connection> conn_;
  int64_t pending_generation_ = 0, last_generation_ = 0;
};

}  // namespace kvmart::store
