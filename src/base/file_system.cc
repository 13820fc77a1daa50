#include "base/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"

namespace kvmart {

Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  // EFBIG is what a file size limit (RLIMIT_FSIZE) gives; treat it like a full disk.
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return Status::DiskFull("disk full: " + msg);
  if (err == ENOENT) return Status::NotFound(msg);
  return Status::IOError(msg);
}

namespace {

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  Status Append(std::span<const uint8_t> data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd_.get(), data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "write " + path_);
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (::fsync(fd_.get()) != 0) return ErrnoStatus(errno, "fsync " + path_);
    return Status::Ok();
  }
  Status Close() override {
    if (fd_.get() >= 0 && fd_.Close() != 0) return ErrnoStatus(errno, "close " + path_);
    return Status::Ok();
  }

 private:
  Fd fd_;
  std::string path_;
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  StatusOr<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus(errno, "stat " + path_);
    return static_cast<uint64_t>(st.st_size);
  }
  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) override {
    for (;;) {
      ssize_t n = ::pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(offset));
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return ErrnoStatus(errno, "read " + path_);
    }
  }

 private:
  Fd fd_;
  std::string path_;
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}

 private:
  Fd fd_;  // closing the descriptor releases the flock
};

class Posix final : public FileSystem {
 public:
  StatusOr<std::unique_ptr<WritableFile>> CreateFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "create " + path);
    return std::unique_ptr<WritableFile>(std::make_unique<PosixWritableFile>(fd, path));
  }
  StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open " + path);
    return std::unique_ptr<ReadableFile>(std::make_unique<PosixReadableFile>(fd, path));
  }
  StatusOr<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + path);
    FileInfo info;
    info.is_regular = S_ISREG(st.st_mode);
    info.is_directory = S_ISDIR(st.st_mode);
    info.size = static_cast<uint64_t>(st.st_size);
    return info;
  }
  StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) override {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (dir == nullptr) return ErrnoStatus(errno, "list " + path);
    std::vector<DirEntry> out;
    for (;;) {
      errno = 0;
      const struct dirent* e = ::readdir(dir.get());
      if (e == nullptr) {
        if (errno != 0) return ErrnoStatus(errno, "list " + path);
        break;
      }
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      DirEntry d;
      d.name = name;
      if (e->d_type == DT_REG || e->d_type == DT_DIR) {
        d.is_regular = e->d_type == DT_REG;
        d.is_directory = e->d_type == DT_DIR;
      } else if (e->d_type == DT_UNKNOWN) {  // some file systems do not say
        struct stat st;
        if (::lstat((path + "/" + name).c_str(), &st) == 0) {
          d.is_regular = S_ISREG(st.st_mode);
          d.is_directory = S_ISDIR(st.st_mode);
        }
      }
      out.push_back(std::move(d));
    }
    return out;
  }
  Status CreateDir(const std::string& path, bool* created) override {
    if (::mkdir(path.c_str(), 0755) == 0) {
      *created = true;
      return Status::Ok();
    }
    if (errno != EEXIST) return ErrnoStatus(errno, "mkdir " + path);
    *created = false;
    return Status::Ok();
  }
  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus(errno, "unlink " + path);
    return Status::Ok();
  }
  Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) != 0) return ErrnoStatus(errno, "rmdir " + path);
    return Status::Ok();
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus(errno, "rename " + from + " to " + to);
    return Status::Ok();
  }
  Status SyncDir(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoStatus(errno, "open directory " + path);
    if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync directory " + path);
    return Status::Ok();
  }
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "open " + path);
    auto lock = std::make_unique<PosixFileLock>(fd);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0)
      return Status::FailedPrecondition(path + " is locked by another process (" + std::strerror(errno) + ")");
    return std::unique_ptr<FileLock>(std::move(lock));
  }
};

}  // namespace

std::shared_ptr<FileSystem> PosixFileSystem() {
  // Stateless, so one instance serves every caller.
  static const std::shared_ptr<FileSystem> posix = std::make_shared<Posix>();
  return posix;
}

Status CreateDirs(FileSystem& fs, const std::string& path, bool durable) {
  if (path.empty()) return Status::InvalidArgument("create directory: empty path");
  // Each prefix ending before a '/', then the path itself.
  std::vector<std::string> levels;
  for (size_t i = 1; i < path.size(); ++i)
    if (path[i] == '/' && path[i - 1] != '/') levels.push_back(path.substr(0, i));
  if (path.back() != '/') levels.push_back(path);
  for (const std::string& dir : levels) {
    // Existing levels are left alone (mkdir on a read-only mount above the
    // data can fail with EROFS rather than EEXIST).
    if (auto info = fs.Stat(dir); info.ok() && info->is_directory) continue;
    bool created = false;
    KVMART_RETURN_IF_ERROR(fs.CreateDir(dir, &created));
    if (created && durable) {
      const size_t slash = dir.rfind('/');
      if (Status st = fs.SyncDir(slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash)); !st.ok()) {
        // A retry would find the directory and not sync it again: remove it.
        (void)fs.RemoveDir(dir);
        return st;
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvmart
