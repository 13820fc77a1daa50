// A SQLite VFS for tests that loses what was not synced, and fails a chosen
// write or sync (after SQLite's own crash-test VFS, test6.c). It is a shim
// registered under its own name that hands every call to the default VFS
// ("unix"), and in passing:
//  - keeps, per file, an undo record of every xWrite and xTruncate since the
//    file's last xSync (the bytes and the size they replaced);
//  - CrashAtSync(n): the n-th xSync (counted from 1) never takes effect, and
//    from it on every read, write and sync fails with SQLITE_IOERR (the
//    machine stopped). Crash() then undoes, newest first, every write not
//    covered by a later sync of its file, as a power loss would;
//  - FailWrite(n, rc) / FailSync(n, rc): the n-th xWrite / xSync alone fails
//    with rc (SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, SQLITE_FULL) and changes
//    nothing; later calls work.
// File creation and deletion are taken as durable at once (SQLite syncs the
// directory itself where it matters). The -shm file is shared memory, not
// data: SQLite rebuilds it from the WAL when the first connection opens.
// A crash must not race with open connections: close them first.
//
// Open a database on it with sqlite3_open_v2(..., name()) — for the market,
// MarketOptions::sqlite_vfs = name().
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"

namespace kvmart::testing {

class FaultVfs {
 public:
  // Registers the shim as `name` (not the default VFS); unregistered when
  // this object dies.
  explicit FaultVfs(std::string name);
  ~FaultVfs();
  FaultVfs(const FaultVfs&) = delete;
  FaultVfs& operator=(const FaultVfs&) = delete;

  const std::string& name() const { return name_; }

  void CrashAtSync(uint64_t n);
  // Called when the crash comes (to stop another layer at the same moment).
  void OnCrash(std::function<void()> fn);
  void FailWrite(uint64_t n, int rc);
  void FailSync(uint64_t n, int rc);
  // The machine stops now: every later read, write and sync fails, so closing
  // the connections (which would checkpoint) makes nothing more durable.
  void Stop();
  // Power loss: every unsynced write undone; then the VFS works again.
  Status Crash();

  bool crashed() const;
  uint64_t writes() const;
  uint64_t syncs() const;
  uint64_t unsynced_writes() const;

  // The shim's entry points (sqlite3_vfs / sqlite3_io_methods callbacks).
  struct Undo {
    int64_t offset = 0;
    std::string old_bytes;  // what the write or truncation replaced
    int64_t old_size = 0;   // the file's size before it
  };
  struct FileRecord {
    std::vector<Undo> unsynced;
  };
  int BeforeWrite(FileRecord* rec, sqlite3_file* real, int64_t offset, int amount);
  int BeforeTruncate(FileRecord* rec, sqlite3_file* real, int64_t size);
  int BeforeSync(FileRecord* rec);
  void AfterSync(FileRecord* rec);
  int BeforeRead() const;
  FileRecord* Track(const char* path);
  void Forget(const char* path);
  sqlite3_vfs* real() const { return real_; }

 private:
  std::string name_;
  sqlite3_vfs* real_;
  sqlite3_vfs vfs_{};

  mutable std::mutex mu_;
  bool crashed_ = false;
  uint64_t writes_ = 0, syncs_ = 0;
  uint64_t crash_at_sync_ = 0, fail_write_ = 0, fail_sync_ = 0;
  int fail_write_rc_ = 0, fail_sync_rc_ = 0;
  std::function<void()> on_crash_;
  std::map<std::string, FileRecord> files_;  // by path; node addresses are stable
};

}  // namespace kvmart::testing
