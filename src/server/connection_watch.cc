#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <memory>

#include <httplib.h>

namespace kvmart::server {
namespace {

bool AddrPort(const sockaddr_storage& ss, std::string* addr, int* port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    *port = ntohs(a->sin6_port);
  } else {
    return false;
  }
  *addr = buf;
  return true;
}

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

}  // namespace

ConnectionWatch::ConnectionWatch(const httplib::Request& req)
    : remote_addr_(req.remote_addr), remote_port_(req.remote_port), local_port_(req.local_port) {
  std::unique_ptr<DIR, DirCloser> dir(opendir("/proc/self/fd"));
  if (!dir) return;
  while (dirent* e = readdir(dir.get())) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    if (Matches(static_cast<int>(fd))) {
      fd_ = static_cast<int>(fd);
      return;
    }
  }
}

bool ConnectionWatch::Matches(int fd) const {
  sockaddr_storage peer{}, local{};
  socklen_t pl = sizeof peer, ll = sizeof local;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) return false;
  std::string paddr, laddr;
  int pport = -1, lport = -1;
  if (!AddrPort(peer, &paddr, &pport) || !AddrPort(local, &laddr, &lport)) return false;
  return pport == remote_port_ && lport == local_port_ && paddr == remote_addr_;
}

bool ConnectionWatch::PeerClosed() const {
  if (fd_ < 0) return false;  // unknown: never cancel on a guess
  if (!Matches(fd_)) return true;
  pollfd p{fd_, static_cast<short>(POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace kvmart::server
