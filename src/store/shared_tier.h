// A block tier shared by every node of a deployment, below each node's memory
// and disk tiers (docs/STORE.md, "Many nodes"): a block published on node A is
// read on node B from here, checked, and kept on B's disk from then on.
//
// Nothing stored here is trusted. The tier may lose writes (Redis Cluster
// replicates asynchronously and drops acknowledged writes on failover), keep
// half of a block, or hand back bytes that are not what was stored. So:
// - blocks are immutable and content-addressed: a key names the chain hash
//   and the XXH3-128 of the stored bytes, and writes never replace a value;
// - every read is checked by the store against the catalog — XXH3-128 of the
//   stored bytes and SHA-256 of the decoded payload, since the bytes come from
//   another machine — and a block that fails is deleted here and reported: a
//   miss, never wrong KV;
// - entitlements and money never live here.
//
// Publish writes blocks here before the catalog row; a node killed in between
// leaves blocks that no row names. They are written with an expiry and made
// permanent only after the row commits (Commit), so such orphans expire by
// themselves.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/block_files.h"

namespace kvmart::store {

struct SharedTierStats {
  uint64_t hits = 0;          // blocks read and handed to the store
  uint64_t misses = 0;        // blocks absent or incomplete
  uint64_t rejected = 0;      // blocks whose bytes failed a check (deleted)
  uint64_t writes = 0;        // blocks written
  uint64_t errors = 0;        // operations that failed (tier unreachable)
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  // The back end's own counters (a Redis Cluster: redis::ClusterStats).
  uint64_t commands = 0;
  uint64_t retries = 0;      // after lost connections, TRYAGAIN, CLUSTERDOWN
  uint64_t redirects = 0;    // MOVED and ASK followed
  uint64_t command_micros = 0;
};

class SharedBlockTier {
 public:
  virtual ~SharedBlockTier() = default;

  // Stores the bytes of `key` unless present (never replaces), expiring after
  // the tier's orphan lifetime until Commit. Unavailable when the tier cannot
  // be reached.
  virtual Status Put(const BlockKey& key, std::span<const uint8_t> bytes) = 0;
  // Makes the blocks of a committed publish permanent.
  virtual Status Commit(const BlockKey& key, uint64_t size) = 0;
  // The stored bytes of `key` (exactly `size` of them), or nullopt when the
  // tier does not hold all of them. Unavailable when it cannot be reached.
  virtual StatusOr<std::optional<std::vector<uint8_t>>> Get(const BlockKey& key, uint64_t size) = 0;
  // Deletes the block (absent is fine).
  virtual Status Remove(const BlockKey& key, uint64_t size) = 0;
  // Counts a block the store rejected after Get (it also calls Remove).
  virtual void CountRejected() = 0;

  // For /readyz: ok when the tier answers.
  virtual Status CheckHealth() = 0;
  // "redis-cluster 127.0.0.1:7000,…" for messages.
  virtual std::string Describe() const = 0;
  virtual SharedTierStats Stats() const = 0;
};

}  // namespace kvmart::store
