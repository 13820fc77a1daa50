#include "store/memory_tier.h"

namespace kvmart::store {

MemoryTier::MemoryTier(uint64_t budget_bytes, size_t num_shards)
    : budget_(budget_bytes), shards_(num_shards == 0 ? 1 : num_shards) {}

MemoryTier::Payload MemoryTier::Get(const Digest256& key) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return nullptr;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  return it->second->second;
}

void MemoryTier::Put(const Digest256& key, Payload payload) {
  if (payload == nullptr || payload->size() > budget_) return;
  const uint64_t size = payload->size();
  Shard& s = ShardFor(key);
  {
    std::lock_guard lock(s.mu);
    auto it = s.map.find(key);
    if (it != s.map.end()) {
      bytes_.fetch_sub(it->second->second->size(), std::memory_order_relaxed);
      s.lru.erase(it->second);
      s.map.erase(it);
    }
    s.lru.emplace_front(key, std::move(payload));
    s.map.emplace(key, s.lru.begin());
    bytes_.fetch_add(size, std::memory_order_relaxed);
  }
  if (bytes() > budget_) EvictToBudget(static_cast<size_t>(&s - shards_.data()));
}

void MemoryTier::EvictToBudget(size_t first) {
  // The payload is released outside the lock: freeing tens of MB is not free.
  for (size_t n = 0; n < shards_.size() && bytes() > budget_; ++n) {
    Shard& s = shards_[(first + 1 + n) % shards_.size()];  // the inserting shard last
    std::vector<Payload> dropped;
    {
      std::lock_guard lock(s.mu);
      while (bytes() > budget_ && !s.lru.empty()) {
        auto& victim = s.lru.back();
        bytes_.fetch_sub(victim.second->size(), std::memory_order_relaxed);
        evictions_.fetch_add(1, std::memory_order_relaxed);
        s.map.erase(victim.first);
        dropped.push_back(std::move(victim.second));
        s.lru.pop_back();
      }
    }
  }
}

void MemoryTier::Erase(const Digest256& key) {
  Shard& s = ShardFor(key);
  Payload dropped;
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return;
  bytes_.fetch_sub(it->second->second->size(), std::memory_order_relaxed);
  dropped = std::move(it->second->second);
  s.lru.erase(it->second);
  s.map.erase(it);
}

void MemoryTier::Clear() {
  for (Shard& s : shards_) {
    std::list<std::pair<Digest256, Payload>> dropped;
    {
      std::lock_guard lock(s.mu);
      for (auto& [k, p] : s.lru) bytes_.fetch_sub(p->size(), std::memory_order_relaxed);
      dropped.swap(s.lru);
      s.map.clear();
    }
  }
}

}  // namespace kvmart::store
