#include "store/redis_tier.h"

#include <cstring>

#include "base/sha256.h"

namespace kvmart::store {
namespace {

uint64_t ChunkCount(uint64_t size) { return size == 0 ? 1 : (size + kRedisChunkBytes - 1) / kRedisChunkBytes; }

}  // namespace

std::string RedisBlockTier::ChunkKey(const BlockKey& key, uint64_t i) {
  return "kvb1:{" + ToHex(key.chain) + "." + ToHex(key.xxh3.data(), key.xxh3.size()) + "}:" + std::to_string(i);
}

StatusOr<std::unique_ptr<RedisBlockTier>> RedisBlockTier::Open(const std::string& url,
                                                               const RedisTierOptions& options) {
  KVMART_ASSIGN_OR_RETURN(auto seeds, redis::ParseClusterUrl(url));
  std::string names;
  for (const auto& e : seeds) names += (names.empty() ? "" : ",") + e.ToString();
  auto c = redis::ClusterClient::Open(seeds, options.cluster);
  if (!c.ok()) return c.status().WithContext("shared block tier redis-cluster " + names);
  return std::unique_ptr<RedisBlockTier>(new RedisBlockTier(std::move(c).value(), names, options));
}

Status RedisBlockTier::Failed(const Status& s) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  return s.WithContext("shared block tier " + Describe());
}

Status RedisBlockTier::Put(const BlockKey& key, std::span<const uint8_t> bytes) {
  const uint64_t n = ChunkCount(bytes.size());
  const std::string ttl = std::to_string(options_.orphan_lifetime.count());
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t begin = i * kRedisChunkBytes;
    const uint64_t len = std::min<uint64_t>(kRedisChunkBytes, bytes.size() - begin);
    const std::string k = ChunkKey(key, i);
    auto r = cluster_->Command({"SET", k,
                                std::string_view(reinterpret_cast<const char*>(bytes.data()) + begin, len), "NX",
                                "EX", ttl});
    if (!r.ok()) return Failed(r.status());
    // nil: the chunk is already there (the same content address), kept as is.
    if (r->type == redis::Reply::Type::kError) return Failed(Status::Unavailable("SET " + k + ": " + r->str));
  }
  writes_.fetch_add(1, std::memory_order_relaxed);
  bytes_written_.fetch_add(bytes.size(), std::memory_order_relaxed);
  return Status::Ok();
}

Status RedisBlockTier::Commit(const BlockKey& key, uint64_t size) {
  const uint64_t n = ChunkCount(size);
  for (uint64_t i = 0; i < n; ++i) {
    const std::string k = ChunkKey(key, i);
    auto r = cluster_->Command({"PERSIST", k});
    if (!r.ok()) return Failed(r.status());
    if (r->type == redis::Reply::Type::kError) return Failed(Status::Unavailable("PERSIST " + k + ": " + r->str));
  }
  return Status::Ok();
}

StatusOr<std::optional<std::vector<uint8_t>>> RedisBlockTier::Get(const BlockKey& key, uint64_t size) {
  const uint64_t n = ChunkCount(size);
  std::vector<std::string> keys;
  keys.reserve(n);
  for (uint64_t i = 0; i < n; ++i) keys.push_back(ChunkKey(key, i));
  std::vector<std::string_view> argv{"MGET"};
  for (const auto& k : keys) argv.push_back(k);
  auto r = cluster_->Command(argv);
  if (!r.ok()) return Failed(r.status());
  if (r->type != redis::Reply::Type::kArray || r->elements.size() != n)
    return Failed(Status::Unavailable("MGET " + keys[0] + ": unexpected reply" +
                                      (r->type == redis::Reply::Type::kError ? ": " + r->str : std::string())));
  std::vector<uint8_t> out;
  out.reserve(size);
  for (uint64_t i = 0; i < n; ++i) {
    const redis::Reply& e = r->elements[i];
    const uint64_t want = std::min<uint64_t>(kRedisChunkBytes, size - i * kRedisChunkBytes);
    // A missing or mis-sized chunk (a write lost on failover, a stray value):
    // the block is not here. What is left of it goes.
    if (e.type != redis::Reply::Type::kString || e.str.size() != want) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      (void)Remove(key, size);
      return std::optional<std::vector<uint8_t>>();
    }
    out.insert(out.end(), e.str.begin(), e.str.end());
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  bytes_read_.fetch_add(out.size(), std::memory_order_relaxed);
  return std::optional<std::vector<uint8_t>>(std::move(out));
}

Status RedisBlockTier::Remove(const BlockKey& key, uint64_t size) {
  const uint64_t n = ChunkCount(size);
  std::vector<std::string> keys;
  for (uint64_t i = 0; i < n; ++i) keys.push_back(ChunkKey(key, i));
  std::vector<std::string_view> argv{"DEL"};
  for (const auto& k : keys) argv.push_back(k);
  auto r = cluster_->Command(argv);
  if (!r.ok()) return Failed(r.status());
  if (r->type == redis::Reply::Type::kError) return Failed(Status::Unavailable("DEL " + keys[0] + ": " + r->str));
  return Status::Ok();
}

Status RedisBlockTier::CheckHealth() {
  Status s = cluster_->CheckHealth();
  return s.ok() ? s : s.WithContext("shared block tier " + Describe());
}

SharedTierStats RedisBlockTier::Stats() const {
  SharedTierStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.rejected = rejected_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  const redis::ClusterStats c = cluster_->Stats();
  s.commands = c.commands;
  s.retries = c.retries;
  s.redirects = c.moved + c.asked;
  s.command_micros = c.command_micros;
  return s;
}

}  // namespace kvmart::store
