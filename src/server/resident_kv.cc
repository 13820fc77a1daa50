#include "server/resident_kv.h"

#include <iterator>
#include <vector>

namespace kvmart::server {

std::shared_ptr<const KvPrefix> ResidentKv::Find(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.prefix;
}

std::shared_ptr<const KvPrefix> ResidentKv::DropVictimLocked() {
  auto victim = std::prev(lru_.end());
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    if (!map_.at(*it).pinned) {
      victim = std::prev(it.base());
      break;
    }
  }
  auto entry = map_.find(*victim);
  std::shared_ptr<const KvPrefix> prefix = std::move(entry->second.prefix);
  stats_.bytes -= entry->second.bytes;
  map_.erase(entry);
  lru_.erase(victim);
  stats_.evictions += 1;
  stats_.artifacts = map_.size();
  return prefix;
}

void ResidentKv::Insert(const std::string& artifact_id, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes,
                        bool pinned) {
  std::vector<std::shared_ptr<const KvPrefix>> dropped;  // freed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > budget_ || map_.count(artifact_id)) return;
  while (stats_.bytes + bytes > budget_ && !lru_.empty()) dropped.push_back(DropVictimLocked());
  lru_.push_front(artifact_id);
  map_.emplace(artifact_id, Entry{std::move(prefix), bytes, pinned, lru_.begin()});
  stats_.bytes += bytes;
  stats_.artifacts = map_.size();
}

void ResidentKv::Erase(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return;
  stats_.bytes -= it->second.bytes;
  lru_.erase(it->second.lru);
  map_.erase(it);
  stats_.artifacts = map_.size();
}

bool ResidentKv::EvictOldest() {
  std::shared_ptr<const KvPrefix> victim;  // released after the lock: that frees its pages
  std::lock_guard<std::mutex> lock(mu_);
  if (lru_.empty()) return false;
  victim = DropVictimLocked();
  return true;
}

ResidentKv::Stats ResidentKv::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.artifacts = map_.size();
  return s;
}

void ResidentKv::CountAttach(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.attaches += 1;
  stats_.attach_seconds += seconds;
}

}  // namespace kvmart::server
