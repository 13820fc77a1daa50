#include "store/catalog.h"

#include <cstring>

namespace kvmart::store {
namespace {

// Migration i takes the schema from version i to i+1. Append only: a released
// migration is never edited, so every existing catalog reaches the same schema.
constexpr const char* kMigrations[] = {
    // 0 → 1: the initial schema.
    R"sql(
CREATE TABLE artifacts(
  artifact_id    TEXT PRIMARY KEY,
  profile_digest TEXT NOT NULL,
  publisher      TEXT NOT NULL,
  token_count    INTEGER NOT NULL,
  num_blocks     INTEGER NOT NULL,
  raw_bytes      INTEGER NOT NULL,
  stored_bytes   INTEGER NOT NULL,
  codec          TEXT NOT NULL,
  title          TEXT,
  created_at     TEXT NOT NULL,
  published_at   INTEGER NOT NULL,
  pinned         INTEGER NOT NULL DEFAULT 0,
  expires_at     INTEGER,
  manifest       TEXT NOT NULL);
CREATE INDEX artifacts_publisher ON artifacts(publisher);
CREATE TABLE blocks(
  chain_hash     BLOB NOT NULL,
  xxh3           BLOB NOT NULL,
  codec          TEXT NOT NULL,
  raw_bytes      INTEGER NOT NULL,
  stored_bytes   INTEGER NOT NULL,
  payload_sha256 BLOB NOT NULL,
  refcount       INTEGER NOT NULL CHECK (refcount > 0),
  PRIMARY KEY (chain_hash, xxh3)) WITHOUT ROWID;
CREATE TABLE artifact_blocks(
  artifact_id TEXT NOT NULL REFERENCES artifacts(artifact_id) ON DELETE CASCADE,
  idx         INTEGER NOT NULL,
  chain_hash  BLOB NOT NULL,
  xxh3        BLOB NOT NULL,
  PRIMARY KEY (artifact_id, idx)) WITHOUT ROWID;
CREATE TABLE quotas(
  publisher TEXT PRIMARY KEY,
  bytes     INTEGER NOT NULL);
)sql",
};
static_assert(std::size(kMigrations) == kCatalogSchemaVersion);

template <size_t N>
void CopyBlob(const std::string& blob, std::array<uint8_t, N>* out) {
  out->fill(0);
  std::memcpy(out->data(), blob.data(), std::min(blob.size(), N));
}

}  // namespace

StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path, bool durable) {
  KVMART_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(path, durable, /*busy_timeout_ms=*/5000));
  std::unique_ptr<Catalog> c(new Catalog(std::move(db)));  // private constructor
  KVMART_RETURN_IF_ERROR(c->Migrate());
  return c;
}

Status Catalog::Migrate() {
  sqlite::WriteTxn txn(db_.get());
  KVMART_RETURN_IF_ERROR(txn.Begin());
  int64_t version = 0;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare("PRAGMA user_version"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) version = st->Int(0);
  }
  if (version > kCatalogSchemaVersion)
    return Status::FailedPrecondition("catalog schema version " + std::to_string(version) +
                                      " is newer than this kvmart (" + std::to_string(kCatalogSchemaVersion) + ")");
  if (version == kCatalogSchemaVersion) return Status::Ok();
  for (int64_t v = version; v < kCatalogSchemaVersion; ++v) KVMART_RETURN_IF_ERROR(db_->Exec(kMigrations[v]));
  KVMART_RETURN_IF_ERROR(db_->Exec(("PRAGMA user_version=" + std::to_string(kCatalogSchemaVersion)).c_str()));
  return txn.Commit();
}

Status Catalog::ForEachArtifact(const std::function<Status(CatalogArtifact)>& fn) {
  sqlite::ReadTxn txn(db_.get());
  KVMART_RETURN_IF_ERROR(txn.Begin());
  std::vector<CatalogArtifact> all;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
        "SELECT artifact_id, profile_digest, publisher, token_count, num_blocks, raw_bytes, stored_bytes, codec, "
        "title, created_at, published_at, pinned, expires_at, manifest FROM artifacts ORDER BY artifact_id"));
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      CatalogArtifact a;
      a.artifact_id = st->Text(0);
      a.profile_digest_hex = st->Text(1);
      a.publisher_hex = st->Text(2);
      a.token_count = static_cast<uint64_t>(st->Int(3));
      a.num_blocks = static_cast<uint32_t>(st->Int(4));
      a.raw_bytes = static_cast<uint64_t>(st->Int(5));
      a.stored_bytes = static_cast<uint64_t>(st->Int(6));
      a.codec = st->Text(7);
      if (!st->IsNull(8)) a.title = st->Text(8);
      a.created_at = st->Text(9);
      a.published_at_unix = st->Int(10);
      a.pinned = st->Int(11) != 0;
      a.expires_at_unix = st->OptInt(12);
      a.manifest_json = st->Text(13);
      all.push_back(std::move(a));
    }
  }
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
        "SELECT artifact_id, idx, chain_hash, xxh3 FROM artifact_blocks ORDER BY artifact_id, idx"));
    size_t ai = 0;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      std::string id = st->Text(0);
      while (ai < all.size() && all[ai].artifact_id < id) ++ai;
      if (ai == all.size() || all[ai].artifact_id != id)
        return Status::Corruption("catalog: artifact_blocks row for unknown artifact " + id);
      if (static_cast<int64_t>(all[ai].blocks.size()) != st->Int(1))
        return Status::Corruption("catalog: artifact " + id + " has a gap in its block list");
      BlockKey k;
      CopyBlob(st->Blob(2), &k.chain);
      CopyBlob(st->Blob(3), &k.xxh3);
      all[ai].blocks.push_back(k);
    }
  }
  for (auto& a : all) KVMART_RETURN_IF_ERROR(fn(std::move(a)));
  return Status::Ok();
}

Status Catalog::ForEachBlock(const std::function<Status(CatalogBlock)>& fn) {
  KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
      "SELECT chain_hash, xxh3, codec, raw_bytes, stored_bytes, payload_sha256, refcount FROM blocks"));
  for (;;) {
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    CatalogBlock b;
    CopyBlob(st->Blob(0), &b.key.chain);
    CopyBlob(st->Blob(1), &b.key.xxh3);
    auto codec = artifact::ParseCodec(st->Text(2));
    if (!codec.ok()) return codec.status().WithContext("catalog block row");
    b.codec = *codec;
    b.raw_bytes = static_cast<uint64_t>(st->Int(3));
    b.stored_bytes = static_cast<uint64_t>(st->Int(4));
    CopyBlob(st->Blob(5), &b.payload_sha256);
    b.refcount = st->Int(6);
    KVMART_RETURN_IF_ERROR(fn(std::move(b)));
  }
  return Status::Ok();
}

Status Catalog::InsertArtifact(const CatalogArtifact& a, const std::vector<CatalogBlock>& blocks) {
  sqlite::WriteTxn txn(db_.get());
  KVMART_RETURN_IF_ERROR(txn.Begin());
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
        "INSERT INTO artifacts(artifact_id, profile_digest, publisher, token_count, num_blocks, raw_bytes, "
        "stored_bytes, codec, title, created_at, published_at, pinned, expires_at, manifest) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"));
    st->Bind(1, a.artifact_id).Bind(2, a.profile_digest_hex).Bind(3, a.publisher_hex);
    st->Bind(4, static_cast<int64_t>(a.token_count)).Bind(5, static_cast<int64_t>(a.num_blocks));
    st->Bind(6, static_cast<int64_t>(a.raw_bytes)).Bind(7, static_cast<int64_t>(a.stored_bytes));
    st->Bind(8, a.codec);
    if (a.title) st->Bind(9, *a.title); else st->BindNull(9);
    st->Bind(10, a.created_at).Bind(11, a.published_at_unix).Bind(12, int64_t{a.pinned ? 1 : 0});
    st->Bind(13, a.expires_at_unix).Bind(14, a.manifest_json);
    KVMART_RETURN_IF_ERROR(st->Run());
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    const CatalogBlock& b = blocks[i];
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
          "INSERT INTO blocks(chain_hash, xxh3, codec, raw_bytes, stored_bytes, payload_sha256, refcount) "
          "VALUES(?1,?2,?3,?4,?5,?6,1) "
          "ON CONFLICT(chain_hash, xxh3) DO UPDATE SET refcount = refcount + 1"));
      st->BindBlob(1, b.key.chain.data(), 32).BindBlob(2, b.key.xxh3.data(), 16);
      st->Bind(3, artifact::CodecName(b.codec));
      st->Bind(4, static_cast<int64_t>(b.raw_bytes)).Bind(5, static_cast<int64_t>(b.stored_bytes));
      st->BindBlob(6, b.payload_sha256.data(), 32);
      KVMART_RETURN_IF_ERROR(st->Run());
    }
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
        "INSERT INTO artifact_blocks(artifact_id, idx, chain_hash, xxh3) VALUES(?1,?2,?3,?4)"));
    st->Bind(1, a.artifact_id).Bind(2, static_cast<int64_t>(i));
    st->BindBlob(3, b.key.chain.data(), 32).BindBlob(4, b.key.xxh3.data(), 16);
    KVMART_RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

StatusOr<std::vector<BlockKey>> Catalog::RemoveArtifact(const std::string& artifact_id) {
  sqlite::WriteTxn txn(db_.get());
  KVMART_RETURN_IF_ERROR(txn.Begin());
  std::vector<BlockKey> keys;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
        "SELECT chain_hash, xxh3 FROM artifact_blocks WHERE artifact_id = ?1 ORDER BY idx"));
    st->Bind(1, artifact_id);
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      BlockKey k;
      CopyBlob(st->Blob(0), &k.chain);
      CopyBlob(st->Blob(1), &k.xxh3);
      keys.push_back(k);
    }
  }
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare("DELETE FROM artifacts WHERE artifact_id = ?1"));
    st->Bind(1, artifact_id);
    KVMART_RETURN_IF_ERROR(st->Run());
    if (sqlite3_changes(db_->raw()) == 0) return Status::NotFound("artifact " + artifact_id + " is not in the store");
  }
  // artifact_blocks rows went with the artifact (ON DELETE CASCADE).
  std::vector<BlockKey> freed;
  for (const BlockKey& k : keys) {
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
          "UPDATE blocks SET refcount = refcount - 1 WHERE chain_hash = ?1 AND xxh3 = ?2 AND refcount > 1"));
      st->BindBlob(1, k.chain.data(), 32).BindBlob(2, k.xxh3.data(), 16);
      KVMART_RETURN_IF_ERROR(st->Run());
      if (sqlite3_changes(db_->raw()) > 0) continue;
    }
    KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare("DELETE FROM blocks WHERE chain_hash = ?1 AND xxh3 = ?2"));
    st->BindBlob(1, k.chain.data(), 32).BindBlob(2, k.xxh3.data(), 16);
    KVMART_RETURN_IF_ERROR(st->Run());
    if (sqlite3_changes(db_->raw()) > 0) freed.push_back(k);
  }
  KVMART_RETURN_IF_ERROR(txn.Commit());
  return freed;
}

Status Catalog::UpdateOne(const char* sql, const std::string& artifact_id,
                          const std::function<void(sqlite::Stmt&)>& bind) {
  KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(sql));
  st->Bind(1, artifact_id);
  bind(*st);
  KVMART_RETURN_IF_ERROR(st->Run());
  if (sqlite3_changes(db_->raw()) == 0) return Status::NotFound("artifact " + artifact_id + " is not in the store");
  return Status::Ok();
}

Status Catalog::SetPinned(const std::string& artifact_id, bool pinned) {
  return UpdateOne("UPDATE artifacts SET pinned = ?2 WHERE artifact_id = ?1", artifact_id,
                   [&](sqlite::Stmt& st) { st.Bind(2, int64_t{pinned ? 1 : 0}); });
}

Status Catalog::SetExpiry(const std::string& artifact_id, std::optional<int64_t> expires_at_unix) {
  return UpdateOne("UPDATE artifacts SET expires_at = ?2 WHERE artifact_id = ?1", artifact_id,
                   [&](sqlite::Stmt& st) { st.Bind(2, expires_at_unix); });
}

Status Catalog::SetQuota(const std::string& publisher_hex, uint64_t bytes) {
  KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(
      "INSERT INTO quotas(publisher, bytes) VALUES(?1, ?2) ON CONFLICT(publisher) DO UPDATE SET bytes = ?2"));
  st->Bind(1, publisher_hex).Bind(2, static_cast<int64_t>(bytes));
  return st->Run();
}

StatusOr<std::vector<std::pair<std::string, uint64_t>>> Catalog::Quotas() {
  KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT publisher, bytes FROM quotas"));
  std::vector<std::pair<std::string, uint64_t>> out;
  for (;;) {
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.emplace_back(st->Text(0), static_cast<uint64_t>(st->Int(1)));
  }
  return out;
}

}  // namespace kvmart::store
