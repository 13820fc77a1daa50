#include "base/sqlite_db.h"

#include <cerrno>

namespace kvmart::sqlite {

Status Db::Error(int rc, std::string_view what) const {
  int primary = rc & 0xff;
  std::string msg = std::string(what) + ": " + sqlite3_errstr(rc);
  if (db_ != nullptr) msg += std::string(" (") + sqlite3_errmsg(db_.get()) + ")";
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return sql::Conflict("database busy: " + msg);
  if (primary == SQLITE_CONSTRAINT) return Status::FailedPrecondition("constraint violated: " + msg);
  // A full disk (or a file size limit) is a capacity problem, not an I/O fault;
  // the transaction rolled back, so nothing was written or charged.
  if (primary == SQLITE_FULL) return Status::DiskFull("disk full: " + msg);
  // SQLite reports some writes that ran out of space (WAL and shared-memory
  // growth, a COMMIT's journal) as plain I/O errors; the errno tells.
  if (primary == SQLITE_IOERR && db_ != nullptr) {
    const int err = sqlite3_system_errno(db_.get());
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) return Status::DiskFull("disk full: " + msg);
  }
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) return Status::Corruption(msg);
  return Status::IOError(msg);
}

StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path, bool synchronous_full, int busy_timeout_ms,
                                      const std::string& vfs) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           vfs.empty() ? nullptr : vfs.c_str());
  auto db = std::make_unique<Db>();
  db->db_.reset(raw);
  if (rc != SQLITE_OK) return db->Error(rc, "open " + path);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  KVMART_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  KVMART_RETURN_IF_ERROR(db->Exec(synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  KVMART_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  // Fewer, larger checkpoints: each one fsyncs, and a metered load dirties ~10
  // pages, so the default (1000 pages) would checkpoint every ~100 loads.
  KVMART_RETURN_IF_ERROR(db->Exec("PRAGMA wal_autocheckpoint=8000"));
  return db;
}

StatusOr<std::unique_ptr<Db>> Db::OpenReadOnly(const std::string& path, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  auto db = std::make_unique<Db>();
  db->db_.reset(raw);
  if (rc != SQLITE_OK) return db->Error(rc, "open " + path);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Status Db::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
  if (err != nullptr) sqlite3_free(err);
  if (rc != SQLITE_OK) return Error(rc, std::string("exec ") + std::string(sql).substr(0, 60));
  return Status::Ok();
}

StatusOr<std::unique_ptr<Stmt>> Db::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return Error(rc, std::string("prepare ") + std::string(sql).substr(0, 60));
    it = cache_.emplace(sql, std::unique_ptr<sqlite3_stmt, StmtDeleter>(s)).first;
  }
  return std::make_unique<Stmt>(this, it->second.get());
}

Stmt::~Stmt() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, std::string_view v) {
  sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindBlob(int i, const void* p, size_t n) {
  sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}

Status Stmt::Err(int rc) const { return db_->Error(rc, std::string("step ") + std::string(sqlite3_sql(s_)).substr(0, 60)); }

StatusOr<bool> Stmt::Step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Err(rc);
}

Status Stmt::Run() {
  for (;;) {
    KVMART_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}

std::string Stmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

Status WriteTxn::Begin() {
  KVMART_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  open_ = true;
  return Status::Ok();
}

WriteTxn::~WriteTxn() {
  if (open_) (void)db_->Exec("ROLLBACK");
}

Status WriteTxn::Commit() {
  Status s = db_->Exec("COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

Status ReadTxn::Begin() {
  KVMART_RETURN_IF_ERROR(db_->Exec("BEGIN"));
  open_ = true;
  return Status::Ok();
}

ReadTxn::~ReadTxn() {
  if (open_) (void)db_->Exec("COMMIT");
}

namespace {

// sql::Statement over a borrowed Stmt (which resets itself when destroyed).
class Statement final : public sql::Statement {
 public:
  Statement(Db* db, std::unique_ptr<Stmt> st) : db_(db), st_(std::move(st)) {}
  sql::Statement& Bind(int i, int64_t v) override { st_->Bind(i, v); return *this; }
  sql::Statement& Bind(int i, std::string_view v) override { st_->Bind(i, v); return *this; }
  sql::Statement& BindBlob(int i, const void* p, size_t n) override { st_->BindBlob(i, p, n); return *this; }
  sql::Statement& BindNull(int i) override { st_->BindNull(i); return *this; }
  using sql::Statement::Bind;
  StatusOr<bool> Step() override { return st_->Step(); }
  int64_t Changes() const override { return db_->Changes(); }
  int64_t Int(int col) const override { return st_->Int(col); }
  bool IsNull(int col) const override { return st_->IsNull(col); }
  std::string Text(int col) const override { return st_->Text(col); }
  std::string Blob(int col) const override { return st_->Blob(col); }

 private:
  Db* db_;
  std::unique_ptr<Stmt> st_;
};

}  // namespace

StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& path, bool synchronous_full,
                                                       int busy_timeout_ms, const std::string& vfs) {
  KVMART_ASSIGN_OR_RETURN(auto db, Db::Open(path, synchronous_full, busy_timeout_ms, vfs));
  return std::make_unique<Connection>(std::move(db));
}

StatusOr<std::unique_ptr<Connection>> Connection::OpenReadOnly(const std::string& path, int busy_timeout_ms) {
  KVMART_ASSIGN_OR_RETURN(auto db, Db::OpenReadOnly(path, busy_timeout_ms));
  return std::make_unique<Connection>(std::move(db));
}

StatusOr<std::unique_ptr<sql::Statement>> Connection::Prepare(const char* sql) {
  KVMART_ASSIGN_OR_RETURN(auto st, db_->Prepare(sql));
  return std::unique_ptr<sql::Statement>(std::make_unique<Statement>(db_.get(), std::move(st)));
}

}  // namespace kvmart::sqlite
