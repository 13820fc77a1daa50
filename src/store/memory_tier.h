// The memory tier: decoded block payloads, ready for import, in an LRU over a
// byte budget.
//
// Payloads are shared_ptr<const vector>: a hit hands out a reference, never a
// copy, and eviction only drops the tier's reference, so a reader still
// importing an evicted block keeps it alive. The map is split into shards, each
// with its own mutex, so concurrent readers of different blocks do not contend;
// a hit holds its shard's lock only for a hash probe and a list splice.
//
// Keyed by chain hash: the store guarantees one payload per chain hash (a
// publish whose payload SHA-256 disagrees with a stored block is refused).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/sha256.h"
#include "store/block_files.h"

namespace kvmart::store {

class MemoryTier {
 public:
  using Payload = std::shared_ptr<const std::vector<uint8_t>>;

  explicit MemoryTier(uint64_t budget_bytes, size_t num_shards = 16);
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  // nullptr on a miss; a hit becomes the most recently used.
  Payload Get(const Digest256& key);
  // Inserts (or refreshes) and evicts least recently used payloads until the
  // tier is within budget. A payload larger than the whole budget is not kept.
  void Put(const Digest256& key, Payload payload);
  void Erase(const Digest256& key);
  void Clear();

  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t budget() const { return budget_; }

 private:
  struct Shard {
    std::mutex mu;
    std::list<std::pair<Digest256, Payload>> lru;  // front = most recent
    std::unordered_map<Digest256, std::list<std::pair<Digest256, Payload>>::iterator, DigestHash> map;
  };
  Shard& ShardFor(const Digest256& key) { return shards_[key[1] % shards_.size()]; }
  // Evicts from shards in turn, starting at `first`, one lock at a time.
  void EvictToBudget(size_t first);

  const uint64_t budget_;
  std::vector<Shard> shards_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> evictions_{0};
};

}  // namespace kvmart::store
