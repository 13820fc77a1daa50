// A FileSystem (base/file_system.h) for tests that models what a power loss
// does to the store's files, and fails chosen calls the way a sick disk does
// (after LevelDB's and RocksDB's fault-injection environments):
//
//  - It keeps, per file written through it, how many bytes were synced, and
//    per directory, the entries made, renamed or removed in it since it was
//    last synced. Crash() undoes everything not durable under the contract:
//    unsynced bytes are cut off (or, with tear_unsynced, a random prefix of
//    them kept: a torn write), and unsynced directory operations are rolled
//    back newest first (a file created is gone, a rename is undone, a removed
//    file comes back, a directory made disappears with its contents).
//  - CrashAtSync(n): the n-th sync (Sync or SyncDir, counted from 1) never
//    takes effect; from it on every call fails, as if the machine had stopped
//    there. The test then drops the store and calls Crash() before reopening.
//  - FailWrite(n, errno) / FailSync(n, errno): the n-th Append / sync alone
//    fails with that errno (EIO, ENOSPC, ...) and changes nothing; the calls
//    after it work again (a transient fault, or space freed).
//
// Files live on the real disk below whatever paths the caller names, so SQLite
// and the test can look at them; the real fsync is skipped unless real_sync
// (the real disk does not lose power under a test). Removed files and files
// replaced by a rename are kept in `scratch_dir` (same file system: they move
// by rename) until their directory is synced, so a crash can bring them back.
// Thread-safe; a crash must not race with open files (drop the store first).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/file_system.h"

namespace kvmart::testing {

class FaultFileSystem final : public FileSystem {
 public:
  struct Options {
    // At a crash, keep a random prefix of each file's unsynced bytes (seeded).
    bool tear_unsynced = false;
    uint64_t seed = 1;
    // Directory operations are durable at once (a file system that journals
    // metadata in order); only file data waits for Sync.
    bool directory_ops_durable = false;
    // Also call the real fsync.
    bool real_sync = false;
  };

  explicit FaultFileSystem(std::string scratch_dir) : FaultFileSystem(std::move(scratch_dir), Options{}) {}
  FaultFileSystem(std::string scratch_dir, Options options, std::shared_ptr<FileSystem> base = PosixFileSystem());

  // The fault plan (n counts from 1 over the file system's life).
  void CrashAtSync(uint64_t n);
  void FailWrite(uint64_t n, int err);
  void FailSync(uint64_t n, int err);

  // The machine stops now (another layer crashed first): every later call fails.
  void Stop();
  // Power loss: undoes what was not durable, then works again (a reboot).
  Status Crash();

  bool crashed() const;
  uint64_t writes() const;  // Append calls so far
  uint64_t syncs() const;   // Sync and SyncDir calls so far
  // Bytes a crash now would cut, and directory operations it would undo.
  uint64_t unsynced_bytes() const;
  size_t pending_directory_ops() const;

  // FileSystem
  StatusOr<std::unique_ptr<WritableFile>> CreateFile(const std::string& path) override;
  StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(const std::string& path) override;
  StatusOr<FileInfo> Stat(const std::string& path) override;
  StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) override;
  Status CreateDir(const std::string& path, bool* created) override;
  Status RemoveFile(const std::string& path) override;
  Status RemoveDir(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& path) override;
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;

  // What a file written through here has: appended bytes, of them synced.
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
  };

 private:
  friend class FaultWritableFile;
  enum class OpKind { kCreateFile, kMakeDir, kRename, kRemoveFile, kRemoveDir };
  // A directory operation not yet durable.
  struct DirOp {
    OpKind kind;
    std::string path;   // the entry made or removed; the rename's target
    std::string from;   // kRename: the source
    std::string trash;  // kRemoveFile, kRename over a file: where the old file waits
    std::set<std::string> unsynced_dirs;  // durable once all of these are synced
  };

  // Called with mu_ held. Ok, or the injected / crashed failure of this call.
  Status CheckAlive(const std::string& what) const;
  Status CountWrite(const std::string& path);
  Status CountSync(const std::string& what);
  std::string TrashPath();
  void Record(DirOp op);

  const std::string scratch_dir_;
  const Options options_;
  const std::shared_ptr<FileSystem> base_;

  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  bool crashed_ = false;
  uint64_t writes_ = 0, syncs_ = 0, trash_count_ = 0;
  uint64_t crash_at_sync_ = 0;
  uint64_t fail_write_ = 0, fail_sync_ = 0;
  int fail_write_errno_ = 0, fail_sync_errno_ = 0;
  // By the file's current path (a rename or removal moves the entry).
  std::map<std::string, std::shared_ptr<FileState>> files_;
  std::vector<DirOp> pending_;
};

}  // namespace kvmart::testing
