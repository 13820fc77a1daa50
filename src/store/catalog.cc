#include "store/catalog.h"

#include <cstring>

#include "base/postgres_db.h"
#include "base/sqlite_db.h"

namespace kvmart::store {
namespace {

// Migration i takes the schema from version i to i+1, one list per back end
// (only the DDL differs). Append only: a released migration is never edited,
// so every existing catalog reaches the same schema.
constexpr const char* kSqliteMigrations[] = {
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
    // 1 → 2: the generation number other nodes watch.
    R"sql(
CREATE TABLE catalog_generation(g INTEGER NOT NULL);
INSERT INTO catalog_generation(g) VALUES(0);
)sql",
};

constexpr const char* kPostgresMigrations[] = {
    // 0 → 1: the initial schema (the SQLite one in PostgreSQL's types).
    R"sql(
CREATE TABLE artifacts(
  artifact_id    TEXT PRIMARY KEY,
  profile_digest TEXT NOT NULL,
  publisher      TEXT NOT NULL,
  token_count    BIGINT NOT NULL,
  num_blocks     BIGINT NOT NULL,
  raw_bytes      BIGINT NOT NULL,
  stored_bytes   BIGINT NOT NULL,
  codec          TEXT NOT NULL,
  title          TEXT,
  created_at     TEXT NOT NULL,
  published_at   BIGINT NOT NULL,
  pinned         BIGINT NOT NULL DEFAULT 0,
  expires_at     BIGINT,
  manifest       TEXT NOT NULL);
CREATE INDEX artifacts_publisher ON artifacts(publisher);
CREATE TABLE blocks(
  chain_hash     BYTEA NOT NULL,
  xxh3           BYTEA NOT NULL,
  codec          TEXT NOT NULL,
  raw_bytes      BIGINT NOT NULL,
  stored_bytes   BIGINT NOT NULL,
  payload_sha256 BYTEA NOT NULL,
  refcount       BIGINT NOT NULL CHECK (refcount > 0),
  PRIMARY KEY (chain_hash, xxh3));
CREATE TABLE artifact_blocks(
  artifact_id TEXT NOT NULL REFERENCES artifacts(artifact_id) ON DELETE CASCADE,
  idx         BIGINT NOT NULL,
  chain_hash  BYTEA NOT NULL,
  xxh3        BYTEA NOT NULL,
  PRIMARY KEY (artifact_id, idx));
CREATE TABLE quotas(
  publisher TEXT PRIMARY KEY,
  bytes     BIGINT NOT NULL);
)sql",
    // 1 → 2
    R"sql(
CREATE TABLE catalog_generation(g BIGINT NOT NULL);
INSERT INTO catalog_generation(g) VALUES(0);
)sql",
};
static_assert(std::size(kSqliteMigrations) == kCatalogSchemaVersion);
static_assert(std::size(kPostgresMigrations) == kCatalogSchemaVersion);

template <size_t N>
void CopyBlob(const std::string& blob, std::array<uint8_t, N>* out) {
  out->fill(0);
  std::memcpy(out->data(), blob.data(), std::min(blob.size(), N));
}

}  // namespace

Catalog::~Catalog() = default;

Status Catalog::BumpGeneration(sql::Connection* db) {
  KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("UPDATE catalog_generation SET g = g + 1 RETURNING g"));
  KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return Status::Corruption("catalog " + Describe() + ": no generation row");
  pending_generation_ = st->Int(0);
  return Status::Ok();
}

Status Catalog::CommitChange(sql::WriteTxn* txn) {
  KVMART_RETURN_IF_ERROR(txn->Commit());
  last_generation_ = pending_generation_;
  return Status::Ok();
}

StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& location, bool durable,
                                                 const std::string& sqlite_vfs) {
  std::unique_ptr<Catalog> c(new Catalog(location, durable, sqlite_vfs));  // private constructor
  KVMART_RETURN_IF_ERROR(c->Conn().status());
  KVMART_RETURN_IF_ERROR(c->Migrate().WithContext("catalog " + c->Describe()));
  return c;
}

bool Catalog::shared() const { return postgres::IsPostgresUrl(location_); }

std::string Catalog::Describe() const { return postgres::RedactUrl(location_); }

StatusOr<sql::Connection*> Catalog::Conn() {
  if (conn_ != nullptr && conn_->healthy()) return conn_.get();
  conn_.reset();
  if (shared()) {
    auto pg = postgres::Connection::Open(location_);
    if (!pg.ok()) return pg.status().WithContext("catalog " + Describe());
    conn_ = std::move(pg).value();
  } else {
    KVMART_ASSIGN_OR_RETURN(conn_, sqlite::Connection::Open(location_, durable_, /*busy_timeout_ms=*/5000, sqlite_vfs_));
  }
  return conn_.get();
}

Status Catalog::Migrate() {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  const bool pg = db->dialect() == sql::Dialect::kPostgres;
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  int64_t version = 0;
  if (pg) {
    // The market shares the database; its schema_version is its own.
    KVMART_RETURN_IF_ERROR(db->Exec("CREATE TABLE IF NOT EXISTS catalog_version(version BIGINT NOT NULL)"));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT version FROM catalog_version"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) version = st->Int(0);
  } else {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("PRAGMA user_version"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) version = st->Int(0);
  }
  if (version > kCatalogSchemaVersion)
    return Status::FailedPrecondition("catalog schema version " + std::to_string(version) +
                                      " is newer than this kvmart (" + std::to_string(kCatalogSchemaVersion) + ")");
  if (version == kCatalogSchemaVersion) return Status::Ok();
  for (int64_t v = version; v < kCatalogSchemaVersion; ++v)
    KVMART_RETURN_IF_ERROR(db->Exec(pg ? kPostgresMigrations[v] : kSqliteMigrations[v]));
  if (pg) {
    KVMART_RETURN_IF_ERROR(db->Exec("DELETE FROM catalog_version"));
    KVMART_RETURN_IF_ERROR(
        db->Exec("INSERT INTO catalog_version(version) VALUES(" + std::to_string(kCatalogSchemaVersion) + ")"));
  } else {
    KVMART_RETURN_IF_ERROR(db->Exec("PRAGMA user_version=" + std::to_string(kCatalogSchemaVersion)));
  }
  return txn.Commit();
}

StatusOr<int64_t> Catalog::Generation() {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT g FROM catalog_generation"));
  KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return Status::Corruption("catalog " + Describe() + ": no generation row");
  return st->Int(0);
}

StatusOr<Catalog::Contents> Catalog::Snapshot() {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  sql::ReadTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  Contents out;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT g FROM catalog_generation"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return Status::Corruption("catalog " + Describe() + ": no generation row");
    out.generation = st->Int(0);
  }
  auto& all = out.artifacts;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
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
    // ORDER BY on both sides must agree byte-wise: COLLATE "C" on PostgreSQL
    // (its default collation may not sort like SQLite's memcmp).
    const bool pg = db->dialect() == sql::Dialect::kPostgres;
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        pg ? "SELECT artifact_id, idx, chain_hash, xxh3 FROM artifact_blocks ORDER BY artifact_id COLLATE \"C\", idx"
           : "SELECT artifact_id, idx, chain_hash, xxh3 FROM artifact_blocks ORDER BY artifact_id, idx"));
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
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
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
      out.blocks.push_back(std::move(b));
    }
  }
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT publisher, bytes FROM quotas"));
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      out.quotas.emplace_back(st->Text(0), static_cast<uint64_t>(st->Int(1)));
    }
  }
  return out;
}

Status Catalog::InsertArtifact(const CatalogArtifact& a, const std::vector<CatalogBlock>& blocks) {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT 1 FROM artifacts WHERE artifact_id = ?"));
    st->Bind(1, a.artifact_id);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    // Another node published it first (the caller's index had not seen it yet).
    if (row) return Status::AlreadyExists("artifact " + a.artifact_id + " is already in the catalog");
  }
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "INSERT INTO artifacts(artifact_id, profile_digest, publisher, token_count, num_blocks, raw_bytes, "
        "stored_bytes, codec, title, created_at, published_at, pinned, expires_at, manifest) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
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
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "INSERT INTO blocks(chain_hash, xxh3, codec, raw_bytes, stored_bytes, payload_sha256, refcount) "
          "VALUES(?,?,?,?,?,?,1) "
          "ON CONFLICT(chain_hash, xxh3) DO UPDATE SET refcount = blocks.refcount + 1"));
      st->BindBlob(1, b.key.chain.data(), 32).BindBlob(2, b.key.xxh3.data(), 16);
      st->Bind(3, artifact::CodecName(b.codec));
      st->Bind(4, static_cast<int64_t>(b.raw_bytes)).Bind(5, static_cast<int64_t>(b.stored_bytes));
      st->BindBlob(6, b.payload_sha256.data(), 32);
      KVMART_RETURN_IF_ERROR(st->Run());
    }
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "INSERT INTO artifact_blocks(artifact_id, idx, chain_hash, xxh3) VALUES(?,?,?,?)"));
    st->Bind(1, a.artifact_id).Bind(2, static_cast<int64_t>(i));
    st->BindBlob(3, b.key.chain.data(), 32).BindBlob(4, b.key.xxh3.data(), 16);
    KVMART_RETURN_IF_ERROR(st->Run());
  }
  KVMART_RETURN_IF_ERROR(BumpGeneration(db));
  return CommitChange(&txn);
}

StatusOr<std::vector<BlockKey>> Catalog::RemoveArtifact(const std::string& artifact_id) {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  std::vector<BlockKey> keys;
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT chain_hash, xxh3 FROM artifact_blocks WHERE artifact_id = ? ORDER BY idx"));
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
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("DELETE FROM artifacts WHERE artifact_id = ?"));
    st->Bind(1, artifact_id);
    KVMART_RETURN_IF_ERROR(st->Run());
    if (st->Changes() == 0) return Status::NotFound("artifact " + artifact_id + " is not in the store");
  }
  // artifact_blocks rows went with the artifact (ON DELETE CASCADE).
  std::vector<BlockKey> freed;
  for (const BlockKey& k : keys) {
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "UPDATE blocks SET refcount = refcount - 1 WHERE chain_hash = ? AND xxh3 = ? AND refcount > 1"));
      st->BindBlob(1, k.chain.data(), 32).BindBlob(2, k.xxh3.data(), 16);
      KVMART_RETURN_IF_ERROR(st->Run());
      if (st->Changes() > 0) continue;
    }
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("DELETE FROM blocks WHERE chain_hash = ? AND xxh3 = ?"));
    st->BindBlob(1, k.chain.data(), 32).BindBlob(2, k.xxh3.data(), 16);
    KVMART_RETURN_IF_ERROR(st->Run());
    if (st->Changes() > 0) freed.push_back(k);
  }
  KVMART_RETURN_IF_ERROR(BumpGeneration(db));
  KVMART_RETURN_IF_ERROR(CommitChange(&txn));
  return freed;
}

Status Catalog::UpdateOne(const char* sql, const std::string& artifact_id,
                          const std::function<void(sql::Statement&)>& bind) {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  {
    // The value first, the artifact id last: the statements below end in
    // "WHERE artifact_id = ?".
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(sql));
    bind(*st);
    st->Bind(2, artifact_id);
    KVMART_RETURN_IF_ERROR(st->Run());
    if (st->Changes() == 0) return Status::NotFound("artifact " + artifact_id + " is not in the store");
  }
  KVMART_RETURN_IF_ERROR(BumpGeneration(db));
  return CommitChange(&txn);
}

Status Catalog::SetPinned(const std::string& artifact_id, bool pinned) {
  return UpdateOne("UPDATE artifacts SET pinned = ? WHERE artifact_id = ?", artifact_id,
                   [&](sql::Statement& st) { st.Bind(1, int64_t{pinned ? 1 : 0}); });
}

Status Catalog::SetExpiry(const std::string& artifact_id, std::optional<int64_t> expires_at_unix) {
  return UpdateOne("UPDATE artifacts SET expires_at = ? WHERE artifact_id = ?", artifact_id,
                   [&](sql::Statement& st) { st.Bind(1, expires_at_unix); });
}

Status Catalog::SetQuota(const std::string& publisher_hex, uint64_t bytes) {
  KVMART_ASSIGN_OR_RETURN(sql::Connection * db, Conn());
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "INSERT INTO quotas(publisher, bytes) VALUES(?, ?) ON CONFLICT(publisher) DO UPDATE SET bytes = excluded.bytes"));
    st->Bind(1, publisher_hex).Bind(2, static_cast<int64_t>(bytes));
    KVMART_RETURN_IF_ERROR(st->Run());
  }
  KVMART_RETURN_IF_ERROR(BumpGeneration(db));
  return CommitChange(&txn);
}

}  // namespace kvmart::store
