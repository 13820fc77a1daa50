// Tells whether the client of an HTTP request has gone away, so a request that
// is queued, prefilling or generating can stop and free its engine session.
//
// cpp-httplib 0.11 gives a handler no access to its socket, and a write to a
// dead connection only fails on the second write after the peer's RST. So the
// watch finds the connection's descriptor by its address 4-tuple (unique while
// the connection lives) and polls it for POLLRDHUP/POLLHUP/POLLERR. The tuple is
// re-checked on every poll, so a descriptor number reused by another connection
// is never mistaken for ours.
#pragma once

#include <string>

namespace httplib {
struct Request;
}

namespace kvmart::server {

class ConnectionWatch {
 public:
  explicit ConnectionWatch(const httplib::Request& req);
  // True once the peer has closed or reset the connection.
  bool PeerClosed() const;
  bool found() const { return fd_ >= 0; }

 private:
  bool Matches(int fd) const;
  std::string remote_addr_;
  int remote_port_ = -1, local_port_ = -1;
  int fd_ = -1;
};

}  // namespace kvmart::server
