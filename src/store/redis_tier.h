// The shared block tier (shared_tier.h) on a Redis Cluster
// (`--blocks redis://host:port[,host:port…]`, base/redis_cluster.h).
//
// Layout: a block of S stored bytes is ceil(S / kRedisChunkBytes) values
//   kvb1:{<chain hex>.<xxh3 hex>}:<i>
// each at most kRedisChunkBytes (1 MiB) long. Why chunks: one 29 MB value
// would hold a Redis thread for its whole copy and needs the server's
// proto-max-bulk-len raised; bounded values keep each command short. The hash
// tag puts every chunk of a block in one slot, so a read is one MGET and a
// removal one DEL on one master.
//
// Writes are SET … NX EX <orphan lifetime>: a value is never replaced (a
// content address has one right answer), and a publish that dies before its
// catalog row leaves chunks that expire. Commit runs PERSIST on each chunk.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "base/redis_cluster.h"
#include "store/shared_tier.h"

namespace kvmart::store {

inline constexpr uint64_t kRedisChunkBytes = 1ull << 20;

struct RedisTierOptions {
  redis::ClusterOptions cluster;
  // How long an uncommitted block lives (a publish takes seconds).
  std::chrono::seconds orphan_lifetime{3600};
};

class RedisBlockTier final : public SharedBlockTier {
 public:
  static StatusOr<std::unique_ptr<RedisBlockTier>> Open(const std::string& url, const RedisTierOptions& options = {});

  Status Put(const BlockKey& key, std::span<const uint8_t> bytes) override;
  Status Commit(const BlockKey& key, uint64_t size) override;
  StatusOr<std::optional<std::vector<uint8_t>>> Get(const BlockKey& key, uint64_t size) override;
  Status Remove(const BlockKey& key, uint64_t size) override;
  void CountRejected() override { rejected_.fetch_add(1, std::memory_order_relaxed); }
  Status CheckHealth() override;
  std::string Describe() const override { return "redis-cluster " + seeds_; }
  SharedTierStats Stats() const override;

  // The key of chunk i of a block (tests).
  static std::string ChunkKey(const BlockKey& key, uint64_t i);

 private:
  RedisBlockTier(std::unique_ptr<redis::ClusterClient> c, std::string seeds, RedisTierOptions o)
      : cluster_(std::move(c)), seeds_(std::move(seeds)), options_(o) {}
  Status Failed(const Status& s);

  std::unique_ptr<redis::ClusterClient> cluster_;
  std::string seeds_;
  RedisTierOptions options_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, rejected_{0}, writes_{0}, errors_{0}, bytes_read_{0}, bytes_written_{0};
};

}  // namespace kvmart::store
