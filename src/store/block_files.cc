#include "store/block_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "base/fd.h"

namespace kvmart::store {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSuffix = ".blk";
constexpr std::string_view kTempPrefix = ".tmp-";

Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  // EFBIG is what a file size limit (RLIMIT_FSIZE) gives; treat it like a full disk.
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return Status::DiskFull("disk full: " + msg);
  if (err == ENOENT) return Status::NotFound(msg);
  return Status::IOError(msg);
}

Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open directory " + dir);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync directory " + dir);
  return Status::Ok();
}

// Unique across threads and processes: pid plus 64 random bits.
std::string TempName() {
  std::random_device rd;
  uint64_t r = (uint64_t{rd()} << 32) | rd();
  return std::string(kTempPrefix) + std::to_string(::getpid()) + "-" + ToHex(&r, sizeof(r));
}

}  // namespace

Status BlockFiles::Init() const {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return Status::IOError("create " + root_ + ": " + ec.message());
  return Status::Ok();
}

std::string BlockFiles::FileName(const BlockKey& key) {
  return ToHex(key.chain) + "-" + ToHex(key.xxh3.data(), key.xxh3.size()) + std::string(kSuffix);
}

std::optional<BlockKey> BlockFiles::ParseFileName(std::string_view name) {
  // 64 hex, '-', 32 hex, ".blk"
  if (name.size() != 64 + 1 + 32 + kSuffix.size() || name[64] != '-' || name.substr(97) != kSuffix) return std::nullopt;
  std::string a, b;
  if (!FromHex(name.substr(0, 64), &a) || !FromHex(name.substr(65, 32), &b)) return std::nullopt;
  BlockKey k;
  std::memcpy(k.chain.data(), a.data(), 32);
  std::memcpy(k.xxh3.data(), b.data(), 16);
  // Only the canonical lower-case spelling is ours.
  if (FileName(k) != name) return std::nullopt;
  return k;
}

std::string BlockFiles::PathFor(const BlockKey& key) const {
  std::string hex = ToHex(key.chain);
  return root_ + "/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + FileName(key);
}

Status BlockFiles::EnsureDir(const std::string& dir) const {
  // Two levels below the root; each newly created directory's entry must itself
  // be durable before a file inside it can be.
  std::string parent = dir.substr(0, dir.rfind('/'));
  for (const std::string& d : {parent, dir}) {
    if (::mkdir(d.c_str(), 0755) == 0) {
      if (durable_) KVMART_RETURN_IF_ERROR(FsyncDir(d.substr(0, d.rfind('/'))));
    } else if (errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir " + d);
    }
  }
  return Status::Ok();
}

Status BlockFiles::Write(const BlockKey& key, std::span<const uint8_t> bytes) const {
  const std::string path = PathFor(key);
  const std::string dir = path.substr(0, path.rfind('/'));
  KVMART_RETURN_IF_ERROR(EnsureDir(dir));
  const std::string tmp = dir + "/" + TempName();
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoStatus(errno, "create " + tmp);
  auto fail = [&](int err, const std::string& what) {
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, what + " " + tmp);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write");
    }
    done += static_cast<size_t>(n);
  }
  if (durable_ && ::fsync(fd.get()) != 0) return fail(errno, "fsync");
  if (fd.Close() != 0) return fail(errno, "close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(errno, "rename");
  if (durable_) KVMART_RETURN_IF_ERROR(FsyncDir(dir));
  return Status::Ok();
}

Status BlockFiles::Read(const BlockKey& key, uint64_t size, std::vector<uint8_t>* out) const {
  if (out->size() != size) out->resize(size);
  return ReadInto(key, *out);
}

Status BlockFiles::ReadInto(const BlockKey& key, std::span<uint8_t> out) const {
  const std::string path = PathFor(key);
  const uint64_t size = out.size();
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat " + path);
  if (static_cast<uint64_t>(st.st_size) != size)
    return Status::Corruption(path + ": " + std::to_string(st.st_size) + " bytes on disk, catalog says " +
                              std::to_string(size));
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd.get(), out.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read " + path);
    }
    if (n == 0) return Status::Corruption(path + ": file shrank while reading");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

bool BlockFiles::Exists(const BlockKey& key, uint64_t size) const {
  struct stat st;
  return ::stat(PathFor(key).c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == size;
}

Status BlockFiles::Remove(const BlockKey& key) const {
  const std::string path = PathFor(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "unlink " + path);
  return Status::Ok();
}

Status BlockFiles::Scan(
    const std::function<void(const std::string& path, const std::optional<BlockKey>& key)>& fn) const {
  std::error_code ec;
  fs::recursive_directory_iterator it(root_, ec), end;
  if (ec) return Status::IOError("scan " + root_ + ": " + ec.message());
  std::vector<std::pair<std::string, std::optional<BlockKey>>> found;
  for (; it != end; it.increment(ec)) {
    if (ec) return Status::IOError("scan " + root_ + ": " + ec.message());
    if (!it->is_regular_file(ec)) continue;
    std::string name = it->path().filename().string();
    std::optional<BlockKey> key = ParseFileName(name);
    // A block file must also sit in the directory its name implies.
    if (key && it->path().string() != PathFor(*key)) key.reset();
    found.emplace_back(it->path().string(), key);
  }
  // Callbacks may delete files; run them after the iteration.
  for (const auto& [path, key] : found) fn(path, key);
  return Status::Ok();
}

void BlockFiles::PruneEmptyDirs() const {
  std::error_code ec;
  std::vector<fs::path> dirs;
  for (fs::recursive_directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) dirs.push_back(it->path());
  }
  // Deepest first, so a parent is empty by the time it is tried.
  for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) fs::remove(*d, ec);  // fails (harmlessly) if not empty
}

}  // namespace kvmart::store
