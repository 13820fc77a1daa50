#include "testing/fault_vfs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "base/fd.h"

namespace kvmart::testing {

namespace {

// Our file object; the default VFS's file follows it in the same allocation.
struct ShimFile {
  sqlite3_file base;  // first: SQLite sees this
  FaultVfs* vfs;
  FaultVfs::FileRecord* rec;  // null for files without a name (temporary)
  sqlite3_file* real;
};

FaultVfs* Owner(sqlite3_vfs* v) { return static_cast<FaultVfs*>(v->pAppData); }
ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }
sqlite3_file* Real(sqlite3_file* f) { return Shim(f)->real; }

int ShimClose(sqlite3_file* f) {
  // The record stays: unsynced writes of a closed file are lost at a crash too.
  return Real(f)->pMethods->xClose(Real(f));
}
int ShimRead(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  if (int rc = Shim(f)->vfs->BeforeRead(); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xRead(Real(f), buf, amount, offset);
}
int ShimWrite(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  if (int rc = Shim(f)->vfs->BeforeWrite(Shim(f)->rec, Real(f), offset, amount); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xWrite(Real(f), buf, amount, offset);
}
int ShimTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = Shim(f)->vfs->BeforeTruncate(Shim(f)->rec, Real(f), size); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int ShimSync(sqlite3_file* f, int flags) {
  if (int rc = Shim(f)->vfs->BeforeSync(Shim(f)->rec); rc != SQLITE_OK) return rc;
  const int rc = Real(f)->pMethods->xSync(Real(f), flags);
  if (rc == SQLITE_OK) Shim(f)->vfs->AfterSync(Shim(f)->rec);
  return rc;
}
int ShimFileSize(sqlite3_file* f, sqlite3_int64* size) { return Real(f)->pMethods->xFileSize(Real(f), size); }
int ShimLock(sqlite3_file* f, int level) { return Real(f)->pMethods->xLock(Real(f), level); }
int ShimUnlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int ShimCheckReservedLock(sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); }
int ShimFileControl(sqlite3_file* f, int op, void* arg) { return Real(f)->pMethods->xFileControl(Real(f), op, arg); }
int ShimSectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int ShimDeviceCharacteristics(sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); }
int ShimShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, out);
}
int ShimShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShimShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShimShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int ShimFetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  return Real(f)->pMethods->xFetch(Real(f), offset, amount, out);
}
int ShimUnfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) { return Real(f)->pMethods->xUnfetch(Real(f), offset, p); }

const sqlite3_io_methods kShimMethods = {
    3,
    ShimClose,
    ShimRead,
    ShimWrite,
    ShimTruncate,
    ShimSync,
    ShimFileSize,
    ShimLock,
    ShimUnlock,
    ShimCheckReservedLock,
    ShimFileControl,
    ShimSectorSize,
    ShimDeviceCharacteristics,
    ShimShmMap,
    ShimShmLock,
    ShimShmBarrier,
    ShimShmUnmap,
    ShimFetch,
    ShimUnfetch,
};

int VfsOpen(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  FaultVfs* owner = Owner(v);
  ShimFile* shim = Shim(f);
  shim->base.pMethods = nullptr;  // SQLite skips xClose when open fails
  shim->vfs = owner;
  shim->real = reinterpret_cast<sqlite3_file*>(shim + 1);
  const int rc = owner->real()->xOpen(owner->real(), name, shim->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  if (shim->real->pMethods == nullptr || shim->real->pMethods->iVersion < 3) return SQLITE_CANTOPEN;
  shim->rec = owner->Track(name);
  shim->base.pMethods = &kShimMethods;
  return SQLITE_OK;
}
int VfsDelete(sqlite3_vfs* v, const char* name, int sync_dir) {
  Owner(v)->Forget(name);
  return Owner(v)->real()->xDelete(Owner(v)->real(), name, sync_dir);
}
int VfsAccess(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return Owner(v)->real()->xAccess(Owner(v)->real(), name, flags, out);
}
int VfsFullPathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return Owner(v)->real()->xFullPathname(Owner(v)->real(), name, n, out);
}
void* VfsDlOpen(sqlite3_vfs* v, const char* name) { return Owner(v)->real()->xDlOpen(Owner(v)->real(), name); }
void VfsDlError(sqlite3_vfs* v, int n, char* out) { Owner(v)->real()->xDlError(Owner(v)->real(), n, out); }
void (*VfsDlSym(sqlite3_vfs* v, void* h, const char* sym))(void) {
  return Owner(v)->real()->xDlSym(Owner(v)->real(), h, sym);
}
void VfsDlClose(sqlite3_vfs* v, void* h) { Owner(v)->real()->xDlClose(Owner(v)->real(), h); }
int VfsRandomness(sqlite3_vfs* v, int n, char* out) { return Owner(v)->real()->xRandomness(Owner(v)->real(), n, out); }
int VfsSleep(sqlite3_vfs* v, int us) { return Owner(v)->real()->xSleep(Owner(v)->real(), us); }
int VfsCurrentTime(sqlite3_vfs* v, double* out) { return Owner(v)->real()->xCurrentTime(Owner(v)->real(), out); }
int VfsGetLastError(sqlite3_vfs* v, int n, char* out) {
  return Owner(v)->real()->xGetLastError(Owner(v)->real(), n, out);
}
int VfsCurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* out) {
  return Owner(v)->real()->xCurrentTimeInt64(Owner(v)->real(), out);
}

}  // namespace

FaultVfs::FaultVfs(std::string name) : name_(std::move(name)), real_(sqlite3_vfs_find(nullptr)) {
  if (real_ == nullptr || real_->iVersion < 2) throw std::runtime_error("no default SQLite VFS of version 2+");
  vfs_.iVersion = 2;
  vfs_.szOsFile = static_cast<int>(sizeof(ShimFile)) + real_->szOsFile;
  vfs_.mxPathname = real_->mxPathname;
  vfs_.zName = name_.c_str();
  vfs_.pAppData = this;
  vfs_.xOpen = VfsOpen;
  vfs_.xDelete = VfsDelete;
  vfs_.xAccess = VfsAccess;
  vfs_.xFullPathname = VfsFullPathname;
  vfs_.xDlOpen = VfsDlOpen;
  vfs_.xDlError = VfsDlError;
  vfs_.xDlSym = VfsDlSym;
  vfs_.xDlClose = VfsDlClose;
  vfs_.xRandomness = VfsRandomness;
  vfs_.xSleep = VfsSleep;
  vfs_.xCurrentTime = VfsCurrentTime;
  vfs_.xGetLastError = VfsGetLastError;
  vfs_.xCurrentTimeInt64 = VfsCurrentTimeInt64;
  if (sqlite3_vfs_register(&vfs_, /*makeDflt=*/0) != SQLITE_OK) throw std::runtime_error("sqlite3_vfs_register");
}

FaultVfs::~FaultVfs() { sqlite3_vfs_unregister(&vfs_); }

void FaultVfs::CrashAtSync(uint64_t n) {
  std::lock_guard lock(mu_);
  crash_at_sync_ = n;
}
void FaultVfs::OnCrash(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  on_crash_ = std::move(fn);
}
void FaultVfs::FailWrite(uint64_t n, int rc) {
  std::lock_guard lock(mu_);
  fail_write_ = n;
  fail_write_rc_ = rc;
}
void FaultVfs::FailSync(uint64_t n, int rc) {
  std::lock_guard lock(mu_);
  fail_sync_ = n;
  fail_sync_rc_ = rc;
}
void FaultVfs::Stop() {
  std::lock_guard lock(mu_);
  crashed_ = true;
}
bool FaultVfs::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}
uint64_t FaultVfs::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}
uint64_t FaultVfs::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}
uint64_t FaultVfs::unsynced_writes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [path, rec] : files_) n += rec.unsynced.size();
  return n;
}

FaultVfs::FileRecord* FaultVfs::Track(const char* path) {
  if (path == nullptr) return nullptr;
  std::lock_guard lock(mu_);
  return &files_[path];
}

void FaultVfs::Forget(const char* path) {
  if (path == nullptr) return;
  std::lock_guard lock(mu_);
  // Deletion is durable at once; the record's node stays (an open file may
  // still point at it), emptied.
  if (auto it = files_.find(path); it != files_.end()) it->second.unsynced.clear();
}

int FaultVfs::BeforeRead() const {
  std::lock_guard lock(mu_);
  return crashed_ ? SQLITE_IOERR_READ : SQLITE_OK;
}

namespace {
// The bytes of [offset, offset + n) that exist in the file now.
int ReadOld(sqlite3_file* real, int64_t offset, int64_t n, int64_t size, std::string* out) {
  const int64_t end = std::min(offset + n, size);
  out->clear();
  if (end <= offset) return SQLITE_OK;
  out->resize(static_cast<size_t>(end - offset));
  return real->pMethods->xRead(real, out->data(), static_cast<int>(out->size()), offset);
}
}  // namespace

int FaultVfs::BeforeWrite(FileRecord* rec, sqlite3_file* real, int64_t offset, int amount) {
  std::lock_guard lock(mu_);
  if (crashed_) return SQLITE_IOERR_WRITE;
  if (++writes_ == fail_write_) return fail_write_rc_;
  if (rec == nullptr) return SQLITE_OK;
  Undo u;
  u.offset = offset;
  sqlite3_int64 size = 0;
  if (int rc = real->pMethods->xFileSize(real, &size); rc != SQLITE_OK) return rc;
  u.old_size = size;
  if (int rc = ReadOld(real, offset, amount, size, &u.old_bytes); rc != SQLITE_OK) return rc;
  rec->unsynced.push_back(std::move(u));
  return SQLITE_OK;
}

int FaultVfs::BeforeTruncate(FileRecord* rec, sqlite3_file* real, int64_t new_size) {
  std::lock_guard lock(mu_);
  if (crashed_) return SQLITE_IOERR_TRUNCATE;
  if (rec == nullptr) return SQLITE_OK;
  sqlite3_int64 size = 0;
  if (int rc = real->pMethods->xFileSize(real, &size); rc != SQLITE_OK) return rc;
  if (new_size >= size) return SQLITE_OK;
  Undo u;
  u.offset = new_size;
  u.old_size = size;
  if (int rc = ReadOld(real, new_size, size - new_size, size, &u.old_bytes); rc != SQLITE_OK) return rc;
  rec->unsynced.push_back(std::move(u));
  return SQLITE_OK;
}

int FaultVfs::BeforeSync(FileRecord*) {
  std::lock_guard lock(mu_);
  if (crashed_) return SQLITE_IOERR_FSYNC;
  ++syncs_;
  if (syncs_ == crash_at_sync_) {
    crashed_ = true;
    if (on_crash_) on_crash_();
    return SQLITE_IOERR_FSYNC;
  }
  if (syncs_ == fail_sync_) return fail_sync_rc_;
  return SQLITE_OK;
}

void FaultVfs::AfterSync(FileRecord* rec) {
  if (rec == nullptr) return;
  std::lock_guard lock(mu_);
  rec->unsynced.clear();
}

Status FaultVfs::Crash() {
  std::lock_guard lock(mu_);
  for (auto& [path, rec] : files_) {
    if (rec.unsynced.empty()) continue;
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      rec.unsynced.clear();  // deleted since: nothing to undo
      continue;
    }
    for (auto u = rec.unsynced.rbegin(); u != rec.unsynced.rend(); ++u) {
      if (!u->old_bytes.empty() &&
          ::pwrite(fd.get(), u->old_bytes.data(), u->old_bytes.size(), u->offset) !=
              static_cast<ssize_t>(u->old_bytes.size()))
        return Status::IOError("crash: restore " + path + ": " + std::strerror(errno));
      if (::ftruncate(fd.get(), u->old_size) != 0)
        return Status::IOError("crash: truncate " + path + ": " + std::strerror(errno));
    }
    rec.unsynced.clear();
  }
  crashed_ = false;
  crash_at_sync_ = fail_write_ = fail_sync_ = 0;
  return Status::Ok();
}

}  // namespace kvmart::testing
