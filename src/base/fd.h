// A POSIX file descriptor closed when the owner goes out of scope.
#pragma once

#include <unistd.h>

namespace kvmart {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and returns close()'s result: after a write, close can report a
  // deferred error that must not be lost in a destructor.
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

}  // namespace kvmart
