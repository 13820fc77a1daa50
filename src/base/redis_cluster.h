// A Redis Cluster client on hiredis (Debian's libhiredis, which speaks to one
// server and knows nothing of clusters): the slot map, redirects and failover
// are handled here. The store's shared block tier runs on it (store/redis_tier.h).
//
// Why by hand: a cluster is 16384 hash slots spread over masters. A key's slot
// is CRC16-XMODEM of the key — or of its hash tag, the text between the first
// `{` and the next `}` when that is not empty — modulo 16384, so keys that
// share a tag share a slot (and a node). The client keeps the slot → master
// map from CLUSTER SLOTS and sends each command to the owner of its key's slot.
// - `-MOVED slot host:port`: the slot has a new owner for good. The map is
//   refreshed (from any reachable node) and the command sent again.
// - `-ASK slot host:port`: the slot is being migrated and this one key already
//   lives at the target. The command goes once to the target, preceded by
//   ASKING; the map is not changed.
// - `-TRYAGAIN` / `-CLUSTERDOWN` and lost connections (a master killed, a
//   failover under way): the connection is dropped, the map refreshed, and the
//   command retried with a bounded backoff until `retry_budget` runs out; then
//   Status::Unavailable naming the node and the last error.
// Nothing here is trusted for correctness: Redis Cluster replicates
// asynchronously and can lose acknowledged writes on failover, so callers
// store only data they can verify (content-addressed, checksummed).
//
// Thread-safety: every method may be called from any thread. Each node has a
// small pool of connections; a command borrows one for its round trip.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kvmart::redis {

inline constexpr int kClusterSlots = 16384;

// CRC16-XMODEM (polynomial 0x1021, init 0), the cluster's key hash.
uint16_t Crc16(std::string_view bytes);
// The slot of a key, honouring a non-empty {hash tag}.
int KeySlot(std::string_view key);

struct Endpoint {
  std::string host;  // an IP literal or a name (tests use 127.0.0.1 / ::1)
  int port = 0;
  bool operator==(const Endpoint&) const = default;
  std::string ToString() const;  // "host:port", [v6]:port
};

// "redis://host:port[,host:port…]": the seed nodes (any of the cluster's nodes;
// the rest are learned from CLUSTER SLOTS). InvalidArgument names the bad part.
StatusOr<std::vector<Endpoint>> ParseClusterUrl(std::string_view url);
bool IsRedisUrl(std::string_view s);

struct ClusterOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{2000};
  // Total time a command may spend retrying lost connections, TRYAGAIN and
  // CLUSTERDOWN (a failover takes about the cluster's node timeout).
  std::chrono::milliseconds retry_budget{5000};
  int max_redirects = 16;           // MOVED/ASK hops per command
  int connections_per_node = 4;     // idle connections kept per node
};

// One reply, flattened to what the callers need.
struct Reply {
  enum class Type { kNil, kString, kInteger, kStatus, kArray, kError };
  Type type = Type::kNil;
  std::string str;       // kString / kStatus / kError text
  int64_t integer = 0;   // kInteger
  std::vector<Reply> elements;  // kArray
  bool is_nil() const { return type == Type::kNil; }
};

struct ClusterStats {
  uint64_t commands = 0;          // commands completed (any reply, errors included)
  uint64_t moved = 0;             // MOVED redirects followed
  uint64_t asked = 0;             // ASK redirects followed
  uint64_t retries = 0;           // retries after lost connections / TRYAGAIN / CLUSTERDOWN
  uint64_t topology_refreshes = 0;
  uint64_t failures = 0;          // commands that ended Unavailable
  uint64_t command_micros = 0;    // wall time spent in commands, retries included
};

class ClusterClient {
 public:
  // Connects to a seed, reads the slot map. Unavailable when no seed answers or
  // the cluster does not cover all slots yet.
  static StatusOr<std::unique_ptr<ClusterClient>> Open(const std::vector<Endpoint>& seeds,
                                                       const ClusterOptions& options = {});
  virtual ~ClusterClient() = default;

  // A command whose key (routing) is argv[key_index]. Server error replies come
  // back as Reply::Type::kError with ok status (except redirects and the
  // retryable errors above, which are handled); transport failure after the
  // retry budget is Unavailable.
  virtual StatusOr<Reply> Command(const std::vector<std::string_view>& argv, size_t key_index = 1) = 0;

  // Conveniences over Command.
  // SET key value [NX]: true when written, false when NX found the key present.
  virtual StatusOr<bool> Set(std::string_view key, std::string_view value, bool only_if_absent) = 0;
  // GET: nullopt when absent.
  virtual StatusOr<std::optional<std::string>> Get(std::string_view key) = 0;
  // DEL: how many keys were removed (0 or 1).
  virtual StatusOr<int64_t> Del(std::string_view key) = 0;

  // PING every master; ok when all answer (for /readyz). The message names the
  // first that does not.
  virtual Status CheckHealth() = 0;
  // The masters of the current map, "host:port" each.
  virtual std::vector<std::string> Masters() const = 0;
  // The master that owns `slot` now.
  virtual std::optional<Endpoint> MasterOf(int slot) const = 0;
  virtual ClusterStats Stats() const = 0;
};

}  // namespace kvmart::redis
