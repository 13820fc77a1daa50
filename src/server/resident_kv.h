// Hot artifacts resident in the engine's KV pages, once: the first load of an
// artifact imports its blocks from the store into a session, whose whole pages
// are then frozen as a shared prefix; every later load of that artifact
// attaches those pages to the new session's block table (no KV bytes copied)
// and copies only the rows of the last, partial page. Least recently used
// prefixes beyond the byte budget are dropped from the map; their pages go
// back to the pool when the last session using them finishes. Artifacts the
// operator pinned in the store go last: an unpinned one is always dropped
// first, whatever its age.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/engine.h"

namespace kvmart::server {

class ResidentKv {
 public:
  explicit ResidentKv(uint64_t budget_bytes) : budget_(budget_bytes) {}

  std::shared_ptr<const KvPrefix> Find(const std::string& artifact_id);
  void Insert(const std::string& artifact_id, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes,
              bool pinned = false);
  void Erase(const std::string& artifact_id);
  // Drops the least recently used unpinned prefix, else the least recently
  // used pinned one (its pages free once no session holds them); false when
  // the map is empty.
  bool EvictOldest();

  struct Stats {
    uint64_t artifacts = 0, bytes = 0, attaches = 0, evictions = 0;
    double attach_seconds = 0;  // total time spent attaching
  };
  Stats stats() const;
  void CountAttach(double seconds);

 private:
  struct Entry {
    std::shared_ptr<const KvPrefix> prefix;
    uint64_t bytes;
    bool pinned;
    std::list<std::string>::iterator lru;
  };
  // The next to drop; map_ must not be empty. Returns the prefix (freed by the
  // caller after the lock: that returns its pages).
  std::shared_ptr<const KvPrefix> DropVictimLocked();
  const uint64_t budget_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: most recent
  Stats stats_;
};

}  // namespace kvmart::server
