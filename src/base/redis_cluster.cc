#include "base/redis_cluster.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>

namespace kvmart::redis {

namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RawReply = std::unique_ptr<redisReply, ReplyDeleter>;

using Clock = std::chrono::steady_clock;

// The XMODEM table, built at compile time: the hash runs on every command.
constexpr std::array<uint16_t, 256> MakeCrcTable() {
  std::array<uint16_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    t[i] = crc;
  }
  return t;
}
constexpr std::array<uint16_t, 256> kCrcTable = MakeCrcTable();

timeval ToTimeval(std::chrono::milliseconds ms) {
  const auto count = std::max<int64_t>(ms.count(), 1);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(count / 1000);
  tv.tv_usec = static_cast<suseconds_t>((count % 1000) * 1000);
  return tv;
}

// hiredis writes with write(2), so a peer that vanished (a killed master)
// raises SIGPIPE, whose default action ends the process. Changing the
// process's disposition is not a library's business; instead SIGPIPE is
// blocked in this thread for the round trip and a SIGPIPE it raised is
// consumed before the mask is restored. The write then fails with EPIPE,
// which is an ordinary lost connection.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~ScopedSigpipeBlock() {
    if (!blocked_) return;
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

Reply Convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::optional<int> ParsePort(std::string_view s) {
  int port = 0;
  if (s.empty() || s.size() > 5) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  if (ec != std::errc() || p != s.data() + s.size() || port < 1 || port > 65535) return std::nullopt;
  return port;
}

// "host:port" or "[v6]:port" of a redirect or a URL.
StatusOr<Endpoint> ParseHostPort(std::string_view s) {
  Endpoint ep;
  std::string_view port;
  if (StartsWith(s, "[")) {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("'" + std::string(s) + "': no closing ']'");
    ep.host = std::string(s.substr(1, close - 1));
    if (close + 1 >= s.size() || s[close + 1] != ':') {
      return Status::InvalidArgument("'" + std::string(s) + "': no port after ']'");
    }
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return Status::InvalidArgument("'" + std::string(s) + "': no port");
    ep.host = std::string(s.substr(0, colon));
    if (ep.host.find(':') != std::string::npos) {
      return Status::InvalidArgument("'" + std::string(s) + "': an IPv6 address must be in brackets, [::1]:7000");
    }
    port = s.substr(colon + 1);
  }
  if (ep.host.empty()) return Status::InvalidArgument("'" + std::string(s) + "': empty host");
  const auto p = ParsePort(port);
  if (!p) return Status::InvalidArgument("'" + std::string(s) + "': bad port '" + std::string(port) + "'");
  ep.port = *p;
  return ep;
}

// A reply error the client handles itself rather than handing to the caller.
enum class ErrorKind { kOther, kMoved, kAsk, kRetryable };

ErrorKind Classify(std::string_view err) {
  if (StartsWith(err, "MOVED ")) return ErrorKind::kMoved;
  if (StartsWith(err, "ASK ")) return ErrorKind::kAsk;
  // LOADING: a restarted node still reading its data set; the rest are the
  // transient states of a failover or a resharding.
  if (StartsWith(err, "TRYAGAIN") || StartsWith(err, "CLUSTERDOWN") || StartsWith(err, "LOADING")) {
    return ErrorKind::kRetryable;
  }
  return ErrorKind::kOther;
}

// "MOVED 3999 127.0.0.1:6381" → the endpoint (the slot is known already).
std::optional<Endpoint> RedirectTarget(std::string_view err) {
  const size_t last = err.rfind(' ');
  if (last == std::string_view::npos) return std::nullopt;
  auto ep = ParseHostPort(err.substr(last + 1));
  if (!ep.ok()) return std::nullopt;
  return std::move(ep).value();
}

// What the conveniences make of an error reply: the caller asked for a
// value, so an error is a status. OOM (maxmemory reached, a cache full) is
// told apart because callers may simply not cache then.
Status ErrorReplyStatus(std::string_view what, const Reply& r) {
  const std::string msg = "redis " + std::string(what) + ": " + r.str;
  if (StartsWith(r.str, "OOM")) return Status::ResourceExhausted(msg);
  return Status::Internal(msg);
}

class Cluster final : public ClusterClient {
 public:
  Cluster(std::vector<Endpoint> seeds, const ClusterOptions& options) : options_(options) {
    for (auto& s : seeds) seeds_.push_back(GetNode(s));
    slots_.resize(kClusterSlots);
  }

  Status Init() {
    Status st = Refresh(Clock::time_point::max(), ~uint64_t{0});
    if (!st.ok()) return st;
    std::shared_lock lock(map_mu_);
    const int covered = static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const auto& n) { return n != nullptr; }));
    if (covered != kClusterSlots) {
      return Status::Unavailable("redis cluster covers " + std::to_string(covered) + " of " +
                                 std::to_string(kClusterSlots) + " slots (not ready yet?)");
    }
    return Status::Ok();
  }

  StatusOr<Reply> Command(const std::vector<std::string_view>& argv, size_t key_index) override {
    if (argv.empty() || key_index >= argv.size()) {
      return Status::InvalidArgument("redis command: key index " + std::to_string(key_index) + " outside " +
                                     std::to_string(argv.size()) + " arguments");
    }
    const auto start = Clock::now();
    StatusOr<Reply> r = Route(argv, KeySlot(argv[key_index]), start);
    stats_.command_micros.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()),
        std::memory_order_relaxed);
    if (r.ok()) {
      stats_.commands.fetch_add(1, std::memory_order_relaxed);
    } else if (r.status().code() == Status::Code::kUnavailable) {
      stats_.failures.fetch_add(1, std::memory_order_relaxed);
    }
    return r;
  }

  StatusOr<bool> Set(std::string_view key, std::string_view value, bool only_if_absent) override {
    std::vector<std::string_view> argv{"SET", key, value};
    if (only_if_absent) argv.push_back("NX");
    auto r = Command(argv, 1);
    if (!r.ok()) return r.status();
    if (r->type == Reply::Type::kError) return ErrorReplyStatus("SET", *r);
    if (r->is_nil()) return false;  // NX and the key exists
    if (r->type == Reply::Type::kStatus && r->str == "OK") return true;
    return Status::Internal("redis SET: unexpected reply");
  }

  StatusOr<std::optional<std::string>> Get(std::string_view key) override {
    auto r = Command({"GET", key}, 1);
    if (!r.ok()) return r.status();
    if (r->type == Reply::Type::kError) return ErrorReplyStatus("GET", *r);
    if (r->is_nil()) return std::optional<std::string>();
    if (r->type != Reply::Type::kString) return Status::Internal("redis GET: unexpected reply");
    return std::optional<std::string>(std::move(r->str));
  }

  StatusOr<int64_t> Del(std::string_view key) override {
    auto r = Command({"DEL", key}, 1);
    if (!r.ok()) return r.status();
    if (r->type == Reply::Type::kError) return ErrorReplyStatus("DEL", *r);
    if (r->type != Reply::Type::kInteger) return Status::Internal("redis DEL: unexpected reply");
    return r->integer;
  }

  Status CheckHealth() override {
    std::vector<std::shared_ptr<Node>> masters;
    {
      std::shared_lock lock(map_mu_);
      masters = masters_;
    }
    if (masters.empty()) return Status::Unavailable("redis cluster: no master known");
    for (const auto& node : masters) {
      std::string err;
      auto reply = RoundTrip(*node, {"PING"}, /*asking=*/false, &err);
      if (reply == nullptr) return Status::Unavailable("redis master " + node->ep.ToString() + ": " + err);
      if (reply->type != REDIS_REPLY_STATUS || std::string_view(reply->str, reply->len) != "PONG") {
        return Status::Unavailable("redis master " + node->ep.ToString() + ": PING answered '" +
                                   std::string(reply->str == nullptr ? "" : reply->str) + "'");
      }
    }
    return Status::Ok();
  }

  std::vector<std::string> Masters() const override {
    std::shared_lock lock(map_mu_);
    std::vector<std::string> out;
    for (const auto& m : masters_) out.push_back(m->ep.ToString());
    return out;
  }

  std::optional<Endpoint> MasterOf(int slot) const override {
    if (slot < 0 || slot >= kClusterSlots) return std::nullopt;
    std::shared_lock lock(map_mu_);
    if (slots_[slot] == nullptr) return std::nullopt;
    return slots_[slot]->ep;
  }

  ClusterStats Stats() const override {
    ClusterStats s;
    s.commands = stats_.commands.load(std::memory_order_relaxed);
    s.moved = stats_.moved.load(std::memory_order_relaxed);
    s.asked = stats_.asked.load(std::memory_order_relaxed);
    s.retries = stats_.retries.load(std::memory_order_relaxed);
    s.topology_refreshes = stats_.topology_refreshes.load(std::memory_order_relaxed);
    s.failures = stats_.failures.load(std::memory_order_relaxed);
    s.command_micros = stats_.command_micros.load(std::memory_order_relaxed);
    return s;
  }

 private:
  // A server and its idle connections. Nodes are never forgotten (a failed
  // master may come back as a replica); the set is small, one per server.
  struct Node {
    explicit Node(Endpoint e) : ep(std::move(e)) {}
    const Endpoint ep;
    std::mutex mu;
    std::vector<Context> idle;  // guarded by mu
    // The last round trip failed in transport: a refresh asks this node
    // last, so that a dead master (which CLUSTER SLOTS keeps listing until
    // its replica takes over) does not cost a connect timeout each time.
    std::atomic<bool> unreachable{false};
  };

  struct AtomicStats {
    std::atomic<uint64_t> commands{0}, moved{0}, asked{0}, retries{0}, topology_refreshes{0}, failures{0},
        command_micros{0};
  };

  std::shared_ptr<Node> GetNode(const Endpoint& ep) {
    std::lock_guard lock(nodes_mu_);
    auto& slot = nodes_[ep.ToString()];
    if (slot == nullptr) slot = std::make_shared<Node>(ep);
    return slot;
  }

  std::shared_ptr<Node> OwnerOf(int slot) const {
    std::shared_lock lock(map_mu_);
    return slots_[slot];
  }

  // An idle connection, or a new one. `reused` tells the caller that a
  // failure may only mean the server closed it while it sat idle.
  Context Borrow(Node& node, bool* reused, std::string* err) {
    {
      std::lock_guard lock(node.mu);
      if (!node.idle.empty()) {
        Context c = std::move(node.idle.back());
        node.idle.pop_back();
        *reused = true;
        return c;
      }
    }
    *reused = false;
    Context c(redisConnectWithTimeout(node.ep.host.c_str(), node.ep.port, ToTimeval(options_.connect_timeout)));
    if (c == nullptr) {
      *err = "cannot allocate a connection";
      return nullptr;
    }
    if (c->err != 0) {
      *err = std::string("connect: ") + c->errstr;
      return nullptr;
    }
    if (redisSetTimeout(c.get(), ToTimeval(options_.command_timeout)) != REDIS_OK) {
      *err = std::string("setting the command timeout: ") + c->errstr;
      return nullptr;
    }
    // Keepalive finds a peer that vanished without a FIN (a host lost, not a
    // process) while a connection sits in the pool.
    redisEnableKeepAlive(c.get());
    return c;
  }

  void Return(Node& node, Context c) {
    std::lock_guard lock(node.mu);
    if (static_cast<int>(node.idle.size()) < options_.connections_per_node) node.idle.push_back(std::move(c));
  }

  // A server that dropped one connection (killed, restarted) has dropped the
  // idle ones too: they would each fail once more.
  void DropIdle(Node& node) {
    std::vector<Context> dead;
    std::lock_guard lock(node.mu);
    dead.swap(node.idle);
  }

  // One command (after ASKING when asked) on a pooled connection of `node`.
  // nullptr with *err on a transport failure; the connection is then gone.
  RawReply RoundTrip(Node& node, const std::vector<std::string_view>& argv, bool asking, std::string* err,
                     bool* reused_out = nullptr) {
    bool reused = false;
    Context c = Borrow(node, &reused, err);
    if (reused_out != nullptr) *reused_out = reused;
    if (c == nullptr) {
      node.unreachable.store(true, std::memory_order_relaxed);
      return nullptr;
    }
    std::vector<const char*> ptrs(argv.size());
    std::vector<size_t> lens(argv.size());
    for (size_t i = 0; i < argv.size(); ++i) {
      ptrs[i] = argv[i].data();
      lens[i] = argv[i].size();
    }
    RawReply reply;
    {
      ScopedSigpipeBlock no_sigpipe;
      bool sent = true;
      if (asking) sent = redisAppendCommand(c.get(), "ASKING") == REDIS_OK;
      sent = sent && redisAppendCommandArgv(c.get(), static_cast<int>(argv.size()), ptrs.data(), lens.data()) == REDIS_OK;
      if (sent && asking) {
        void* raw = nullptr;
        if (redisGetReply(c.get(), &raw) == REDIS_OK) {
          RawReply ask(static_cast<redisReply*>(raw));
          // ASKING cannot fail on a cluster node; if it did, the command's own
          // reply still follows and says what happened.
        } else {
          sent = false;
        }
      }
      if (sent) {
        void* raw = nullptr;
        if (redisGetReply(c.get(), &raw) == REDIS_OK) reply.reset(static_cast<redisReply*>(raw));
      }
    }
    if (reply == nullptr) {
      *err = c->err != 0 ? std::string(c->errstr) : std::string("no reply");
      if (c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO) DropIdle(node);
      node.unreachable.store(true, std::memory_order_relaxed);
      return nullptr;
    }
    node.unreachable.store(false, std::memory_order_relaxed);
    // A node that answers TRYAGAIN or CLUSTERDOWN is in the middle of a
    // failover or a resharding; its connections are not kept, so that the
    // retry starts from the refreshed map with nothing of the old state.
    const bool retryable =
        reply->type == REDIS_REPLY_ERROR && Classify(std::string_view(reply->str, reply->len)) == ErrorKind::kRetryable;
    if (!retryable) Return(node, std::move(c));
    return reply;
  }

  StatusOr<Reply> Route(const std::vector<std::string_view>& argv, int slot, Clock::time_point start) {
    const auto deadline = start + options_.retry_budget;
    std::shared_ptr<Node> target = OwnerOf(slot);
    bool asking = false;
    int redirects = 0;
    bool fresh_retry_used = false;
    auto backoff = std::chrono::milliseconds(50);
    std::string last_error;
    std::string last_node = "slot " + std::to_string(slot);
    for (;;) {
      bool reused = false;
      bool retry_at_once = false;
      const uint64_t epoch = refresh_epoch_.load(std::memory_order_acquire);
      if (target == nullptr) {
        last_error = "no master owns slot " + std::to_string(slot);
      } else {
        last_node = target->ep.ToString();
        RawReply raw = RoundTrip(*target, argv, asking, &last_error, &reused);
        asking = false;
        if (raw != nullptr) {
          if (raw->type != REDIS_REPLY_ERROR) return Convert(raw.get());
          const std::string_view err(raw->str, raw->len);
          const ErrorKind kind = Classify(err);
          if (kind == ErrorKind::kOther) return Convert(raw.get());
          if (kind == ErrorKind::kMoved || kind == ErrorKind::kAsk) {
            if (++redirects > options_.max_redirects) {
              return Status::Unavailable("redis " + last_node + ": more than " +
                                         std::to_string(options_.max_redirects) + " redirects, last '" +
                                         std::string(err) + "'");
            }
            const auto to = RedirectTarget(err);
            if (!to) return Status::Unavailable("redis " + last_node + ": bad redirect '" + std::string(err) + "'");
            auto next = GetNode(*to);
            if (kind == ErrorKind::kAsk) {
              // Only this key has moved, and only for now: the map stays.
              stats_.asked.fetch_add(1, std::memory_order_relaxed);
              asking = true;
            } else {
              // The slot has a new owner for good, and a resharding rarely
              // moves one slot alone: reread the whole map, then trust the
              // redirect for this slot even if the node asked lags behind.
              stats_.moved.fetch_add(1, std::memory_order_relaxed);
              // A failed refresh keeps the old map; the redirect below is
              // enough for this command.
              (void)Refresh(deadline, epoch);
              std::unique_lock lock(map_mu_);
              slots_[slot] = next;
            }
            target = std::move(next);
            continue;
          }
          last_error = std::string(err);  // TRYAGAIN / CLUSTERDOWN / LOADING
        } else if (reused && !fresh_retry_used) {
          // A pooled connection the server may have closed while it sat idle:
          // one immediate try on a fresh connection before anything else.
          fresh_retry_used = true;
          retry_at_once = true;
        }
      }
      // A lost connection is retried like TRYAGAIN, though the command may
      // have run before the connection died: callers send only commands that
      // may run twice (SET of a content-addressed block, GET, DEL).
      if (!retry_at_once) {
        if (Clock::now() + backoff > deadline) {
          return Status::Unavailable("redis " + last_node + ": " + last_error + " (gave up after " +
                                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        Clock::now() - start).count()) +
                                     " ms)");
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
        // A failed refresh keeps the old map; the next try says what failed.
        (void)Refresh(deadline, epoch);
        target = OwnerOf(slot);
      }
      stats_.retries.fetch_add(1, std::memory_order_relaxed);
    }
  }

  struct Map {
    std::vector<std::shared_ptr<Node>> slots;
    std::vector<std::shared_ptr<Node>> masters;
    std::vector<std::shared_ptr<Node>> replicas;
    int covered = 0;
  };

  // CLUSTER SLOTS: [[start, end, [host, port, id…], [replica…]…]…].
  std::optional<Map> ParseSlots(const redisReply* r, const Endpoint& asked) {
    if (r->type != REDIS_REPLY_ARRAY) return std::nullopt;
    Map m;
    m.slots.resize(kClusterSlots);
    auto endpoint_of = [&](const redisReply* n) -> std::optional<Endpoint> {
      if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 || n->element[0]->type != REDIS_REPLY_STRING ||
          n->element[1]->type != REDIS_REPLY_INTEGER) {
        return std::nullopt;
      }
      Endpoint ep;
      ep.host.assign(n->element[0]->str, n->element[0]->len);
      // An empty or "?" host: the node does not know its own address; it is
      // the one that was asked.
      if (ep.host.empty() || ep.host == "?") ep.host = asked.host;
      ep.port = static_cast<int>(n->element[1]->integer);
      if (ep.port < 1 || ep.port > 65535) return std::nullopt;
      return ep;
    };
    auto add_unique = [](std::vector<std::shared_ptr<Node>>& v, const std::shared_ptr<Node>& n) {
      if (std::find(v.begin(), v.end(), n) == v.end()) v.push_back(n);
    };
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
          e->element[1]->type != REDIS_REPLY_INTEGER) {
        return std::nullopt;
      }
      const long long lo = e->element[0]->integer, hi = e->element[1]->integer;
      if (lo < 0 || hi >= kClusterSlots || lo > hi) return std::nullopt;
      const auto master = endpoint_of(e->element[2]);
      if (!master) return std::nullopt;
      auto node = GetNode(*master);
      add_unique(m.masters, node);
      for (size_t j = 3; j < e->elements; ++j) {
        if (const auto rep = endpoint_of(e->element[j])) add_unique(m.replicas, GetNode(*rep));
      }
      for (long long s = lo; s <= hi; ++s) {
        if (m.slots[s] == nullptr) ++m.covered;
        m.slots[s] = node;
      }
    }
    return m;
  }

  // Rereads the slot map from the first known node that answers: masters,
  // then replicas, then the seeds, so that a client outlives the nodes it
  // started from. Callers pass the epoch they saw before their failure; when
  // another thread has refreshed since, its map is as new and this is a no-op
  // (a failover must not turn into a storm of CLUSTER SLOTS).
  Status Refresh(Clock::time_point deadline, uint64_t seen_epoch) {
    std::lock_guard refresh_lock(refresh_mu_);
    if (seen_epoch != ~uint64_t{0} && refresh_epoch_.load(std::memory_order_acquire) != seen_epoch) {
      return Status::Ok();
    }
    std::vector<std::shared_ptr<Node>> candidates;
    {
      std::shared_lock lock(map_mu_);
      candidates = masters_;
      candidates.insert(candidates.end(), replicas_.begin(), replicas_.end());
    }
    candidates.insert(candidates.end(), seeds_.begin(), seeds_.end());
    std::vector<std::shared_ptr<Node>> unique;
    for (auto& c : candidates) {
      if (std::find(unique.begin(), unique.end(), c) == unique.end()) unique.push_back(c);
    }
    std::stable_partition(unique.begin(), unique.end(),
                          [](const auto& n) { return !n->unreachable.load(std::memory_order_relaxed); });
    std::optional<Map> best;
    std::string errors;
    bool tried = false;
    for (const auto& node : unique) {
      if (tried && Clock::now() >= deadline) break;
      tried = true;
      std::string err;
      RawReply r = RoundTrip(*node, {"CLUSTER", "SLOTS"}, false, &err);
      if (r == nullptr) {
        errors += (errors.empty() ? "" : "; ") + node->ep.ToString() + ": " + err;
        continue;
      }
      auto m = ParseSlots(r.get(), node->ep);
      if (!m) {
        errors += (errors.empty() ? "" : "; ") + node->ep.ToString() + ": " +
                  (r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "unreadable CLUSTER SLOTS");
        continue;
      }
      // A node may be the one that has not heard of a failover yet; a map
      // with holes is kept only if no node has a complete one.
      const bool complete = m->covered == kClusterSlots;
      if (!best || m->covered > best->covered) best = std::move(m);
      if (complete) break;
    }
    if (!best) return Status::Unavailable("redis cluster: no node answered CLUSTER SLOTS (" + errors + ")");
    {
      std::unique_lock lock(map_mu_);
      slots_ = std::move(best->slots);
      masters_ = std::move(best->masters);
      replicas_ = std::move(best->replicas);
    }
    refresh_epoch_.fetch_add(1, std::memory_order_acq_rel);
    stats_.topology_refreshes.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  }

  const ClusterOptions options_;
  std::vector<std::shared_ptr<Node>> seeds_;  // immutable after construction

  std::mutex nodes_mu_;
  std::map<std::string, std::shared_ptr<Node>> nodes_;  // guarded by nodes_mu_

  mutable std::shared_mutex map_mu_;
  std::vector<std::shared_ptr<Node>> slots_;     // kClusterSlots entries; guarded by map_mu_
  std::vector<std::shared_ptr<Node>> masters_;   // guarded by map_mu_
  std::vector<std::shared_ptr<Node>> replicas_;  // guarded by map_mu_

  std::mutex refresh_mu_;  // one refresh at a time; held outside map_mu_
  std::atomic<uint64_t> refresh_epoch_{0};
  AtomicStats stats_;
};

}  // namespace

uint16_t Crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (const unsigned char b : bytes) crc = static_cast<uint16_t>((crc << 8) ^ kCrcTable[((crc >> 8) ^ b) & 0xff]);
  return crc;
}

int KeySlot(std::string_view key) {
  // As Redis's keyHashSlot: the first '{', the first '}' after it, and only
  // when something lies between them.
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return Crc16(key) & (kClusterSlots - 1);
}

std::string Endpoint::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool IsRedisUrl(std::string_view s) { return StartsWith(s, "redis://"); }

StatusOr<std::vector<Endpoint>> ParseClusterUrl(std::string_view url) {
  if (!IsRedisUrl(url)) {
    return Status::InvalidArgument("redis URL '" + std::string(url) + "': must start with redis://");
  }
  std::string_view rest = url.substr(8);
  if (rest.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("redis URL '" + std::string(url) + "': credentials are not supported");
  }
  if (rest.find('/') != std::string_view::npos || rest.find('?') != std::string_view::npos) {
    return Status::InvalidArgument("redis URL '" + std::string(url) +
                                   "': a path or options are not supported (a cluster has one database)");
  }
  if (rest.empty()) return Status::InvalidArgument("redis URL '" + std::string(url) + "': no host:port");
  std::vector<Endpoint> out;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view part = rest.substr(0, comma);
    if (part.empty()) return Status::InvalidArgument("redis URL '" + std::string(url) + "': empty host:port in the list");
    auto ep = ParseHostPort(part);
    if (!ep.ok()) return Status::InvalidArgument("redis URL '" + std::string(url) + "': " + ep.status().message());
    if (std::find(out.begin(), out.end(), *ep) == out.end()) out.push_back(std::move(ep).value());
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Open(const std::vector<Endpoint>& seeds,
                                                             const ClusterOptions& options) {
  if (seeds.empty()) return Status::InvalidArgument("redis cluster: no seed node");
  auto c = std::make_unique<Cluster>(seeds, options);
  KVMART_RETURN_IF_ERROR(c->Init());
  return std::unique_ptr<ClusterClient>(std::move(c));
}

}  // namespace kvmart::redis
