#include "base/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "base/fd.h"

namespace kvmart {
namespace {

Status Errno(const std::string& what) { return Status::IOError(what + ": " + std::strerror(errno)); }


std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status WriteAll(int fd, std::string_view text, const std::string& what) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno(what + ": write");
    }
    off += static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status WriteTemp(const std::string& tmp, std::string_view text) {
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) return Errno(tmp + ": create");
  // O_CREAT's mode is already 0600 less the umask; a umask cannot add bits.
  KVMART_RETURN_IF_ERROR(WriteAll(fd.get(), text, tmp));
  if (::fsync(fd.get()) != 0) return Errno(tmp + ": fsync");
  return fd.Close() == 0 ? Status::Ok() : Errno(tmp + ": close");
}

}  // namespace

Status WriteSecretFile(const std::string& path, std::string_view text, SecretWrite mode) {
  std::random_device rd;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  Status st = WriteTemp(tmp, text);
  if (st.ok()) {
    if (mode == SecretWrite::kCreateOnly) {
      // link() fails with EEXIST instead of replacing: two processes creating
      // the same key cannot both believe theirs is the one on disk.
      if (::link(tmp.c_str(), path.c_str()) != 0) {
        st = errno == EEXIST ? Status::AlreadyExists(path + " already exists") : Errno(path + ": link");
      }
      ::unlink(tmp.c_str());
    } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
      st = Errno(path + ": rename");
    }
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  const std::string dir = DirOf(path);
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() < 0) return Errno(dir + ": open");
  if (::fsync(d.get()) != 0) return Errno(dir + ": fsync");
  return Status::Ok();
}

StatusOr<std::string> ReadSecretFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " does not exist");
    return Errno(path + ": open");
  }
  struct stat sb {};
  if (::fstat(fd.get(), &sb) != 0) return Errno(path + ": stat");
  if ((sb.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(sb.st_mode & 0777));
    return Status::PermissionDenied(path + " is readable by group or other (mode " + mode + "); chmod 600 it");
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(path + ": read");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace kvmart
