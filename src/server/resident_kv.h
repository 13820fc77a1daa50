// Hot artifacts resident in the engine's KV pages, once: the first load of an
// artifact imports its blocks from the store into a session, whose whole pages
// are then frozen as a shared prefix; every later load of that artifact
// attaches those pages to the new session's block table (no KV bytes copied)
// and copies only the rows of the last, partial page. Prefixes beyond the byte
// budget, or asked back under page pressure, are dropped from the map; their
// pages go back to the pool when the last session using them finishes.
//
// Which one is dropped: the least recently used of the first non-empty tier
//   1. unpinned and not entitled,
//   2. unpinned but entitled (some buyer holds a live entitlement: loads left
//      and not expired, so it is likely to be loaded again, and paid for),
//   3. pinned in the store by the operator.
//
// Entitlement is told, never asked: ResidentKv does not know the market. The
// server marks an artifact entitled from what the load path already has (the
// reservation says what it left of the buyer's entitlement; a purchase says
// what it bought), re-reads the market for an artifact whose last known load
// was just spent, and refreshes every resident artifact on the market
// scheduler's interval (server/kv_plan.h). So an eviction — which runs under
// this mutex, inside the engine's page allocation — costs no database round
// trip; the price is that the flag may be stale by up to one interval
// (another node's loads, a voided load giving one back), which only orders
// evictions and never decides who may load. Expiry is exact: an entry keeps
// when its entitlements lapse and is compared with the clock at eviction.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"

namespace kvmart::server {

class ResidentKv {
 public:
  using Clock = std::function<int64_t()>;  // unix seconds; empty = the system clock
  explicit ResidentKv(uint64_t budget_bytes, Clock clock = nullptr);

  std::shared_ptr<const KvPrefix> Find(const std::string& artifact_id);
  // A new entry is not entitled until it is marked so.
  void Insert(const std::string& artifact_id, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes,
              bool pinned = false);
  void Erase(const std::string& artifact_id);
  // Drops one prefix, in the order above (its pages free once no session
  // holds them); false when the map is empty.
  bool EvictOldest();

  // Someone holds a live entitlement to `artifact_id` that lasts until
  // `expires_at` (unix seconds, 0 = never): it is entitled at least until
  // then. A no-op when the artifact is not resident.
  void MarkEntitled(const std::string& artifact_id, int64_t expires_at);
  // What the market says of `asked` (market::Market::EntitledArtifacts): each
  // id in `until` is entitled until then (0 = never), every other asked id is
  // not. Ids not resident are ignored.
  void SetEntitlements(std::span<const std::string> asked, const std::unordered_map<std::string, int64_t>& until);
  // The resident artifacts' ids (what a refresh asks the market about).
  std::vector<std::string> Ids() const;

  struct Stats {
    uint64_t artifacts = 0, entitled = 0, bytes = 0, attaches = 0, evictions = 0;
    double attach_seconds = 0;  // total time spent attaching
  };
  Stats stats() const;
  void CountAttach(double seconds);

 private:
  static constexpr int64_t kNever = INT64_MAX;  // entitled_until of an entitlement that does not expire
  struct Entry {
    std::shared_ptr<const KvPrefix> prefix;
    uint64_t bytes;
    bool pinned;
    int64_t entitled_until = 0;  // unix seconds; 0 = not entitled, kNever = until used up
    std::list<std::string>::iterator lru;
  };
  bool EntitledLocked(const Entry& e, int64_t now) const { return e.entitled_until > now; }
  // The next to drop; map_ must not be empty. Returns the prefix (freed by the
  // caller after the lock: that returns its pages).
  std::shared_ptr<const KvPrefix> DropVictimLocked();
  const uint64_t budget_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: most recent
  Stats stats_;
};

}  // namespace kvmart::server
