#include "server/resident_kv.h"

namespace kvmart::server {

std::shared_ptr<const KvPrefix> ResidentKv::Find(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.prefix;
}

void ResidentKv::Insert(const std::string& artifact_id, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > budget_ || map_.count(artifact_id)) return;
  while (stats_.bytes + bytes > budget_ && !lru_.empty()) {
    auto victim = map_.find(lru_.back());
    stats_.bytes -= victim->second.bytes;
    map_.erase(victim);
    lru_.pop_back();
    stats_.evictions += 1;
  }
  lru_.push_front(artifact_id);
  map_.emplace(artifact_id, Entry{std::move(prefix), bytes, lru_.begin()});
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lru_.empty()) return false;
    auto it = map_.find(lru_.back());
    victim = std::move(it->second.prefix);
    stats_.bytes -= it->second.bytes;
    map_.erase(it);
    lru_.pop_back();
    stats_.evictions += 1;
    stats_.artifacts = map_.size();
  }
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
