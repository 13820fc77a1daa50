// The file-system calls the store makes, behind one small interface (in the
// manner of LevelDB's Env), so that tests can put a file system that loses
// unsynced writes, tears them, or fails a chosen write or fsync in its place
// (tests/testing/fault_file_system.h; docs/STORE.md, "Storage faults").
//
// The contract is the POSIX one the store's crash-safety argument relies on:
//  - bytes appended to a file are durable only after Sync() returned Ok;
//  - a directory entry (a file created, renamed or removed in it, a
//    subdirectory made) is durable only after SyncDir() of that directory;
//  - Rename replaces the target atomically.
// Nothing else is promised: a crash may lose anything not synced, and may keep
// any prefix of bytes appended since the last Sync.
//
// Errors are Status values: ENOSPC, EDQUOT and EFBIG (a file size limit) are
// DiskFull (ResourceExhausted), ENOENT is NotFound, the rest IOError.
//
// Every method may be called from any thread; a file object from one thread
// at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace kvmart {

// errno of a failed call → Status, with `what` naming the call and the path.
Status ErrnoStatus(int err, const std::string& what);

// A new file being written front to back.
class WritableFile {
 public:
  virtual ~WritableFile() = default;  // closes if Close was not called (errors lost)
  virtual Status Append(std::span<const uint8_t> data) = 0;
  // fsync: the bytes appended so far are durable when this returns Ok. After a
  // failure nothing about the unsynced bytes is known (Linux may have dropped
  // them): the caller must not retry and trust the file.
  virtual Status Sync() = 0;
  // close() can report a deferred write error, so it is a call of its own.
  virtual Status Close() = 0;
};

// A file opened for reading at offsets; reads go straight into caller memory.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  virtual StatusOr<uint64_t> Size() = 0;
  // Up to out.size() bytes at `offset` into `out`; the count read, 0 at the end.
  virtual StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) = 0;
};

// Held while the object lives (an advisory whole-file lock, released by the
// kernel when the process dies).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

struct FileInfo {
  bool is_regular = false;
  bool is_directory = false;
  uint64_t size = 0;
};

struct DirEntry {
  std::string name;
  bool is_regular = false;
  bool is_directory = false;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates `path`, which must not exist (O_CREAT | O_EXCL).
  virtual StatusOr<std::unique_ptr<WritableFile>> CreateFile(const std::string& path) = 0;
  virtual StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(const std::string& path) = 0;
  // NotFound when nothing is there.
  virtual StatusOr<FileInfo> Stat(const std::string& path) = 0;
  // The entries of a directory, without "." and "..", in no particular order.
  virtual StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) = 0;
  // One level. *created tells whether it was made now (false: it existed).
  virtual Status CreateDir(const std::string& path, bool* created) = 0;
  // NotFound when missing.
  virtual Status RemoveFile(const std::string& path) = 0;
  // An empty directory only.
  virtual Status RemoveDir(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // fsync of a directory: the entries made or removed in it are durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // An exclusive lock on `path` (created if needed); FailedPrecondition when
  // another process holds it.
  virtual StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
};

// The real one (open/pwrite/pread/fsync/rename/...). Stateless; shared.
std::shared_ptr<FileSystem> PosixFileSystem();

// Creates `path` and any missing parents, one level at a time; with `durable`,
// each directory made is synced into its parent before the next is made, so
// a crash cannot lose a directory whose contents were synced.
Status CreateDirs(FileSystem& fs, const std::string& path, bool durable);

}  // namespace kvmart
