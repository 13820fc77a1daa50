// The store contract (store.h) kept entirely in process memory: what
// `kvmart serve --store memory` runs on (an ephemeral provider that leaves
// nothing on disk), and a second implementation that the contract tests
// (tests/store/store_contract_test.cc) hold to the same answers as the disk
// store.
//
// Same rules as the disk store: Put verifies signature, checksums, decode and
// payload SHA-256; blocks are stored once per (chain hash, stored bytes) and
// shared between artifacts; Lookup is the shared block-prefix walk
// (prefix_walk.h); TTLs, pins, quotas and Gc behave alike; every Load checks
// XXH3-128 and decodes again (there is no decoded cache, so every hit is a
// decode), and a block that fails is DataLoss and a miss from then on.
// Nothing survives the process.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store/store.h"

namespace kvmart::store {

class MemoryStore final : public Store {
 public:
  MemoryStore() = default;

  Status Put(const artifact::Artifact& artifact) override;
  Status PutFile(const std::string& kva_path) override;
  using Store::Lookup;
  PrefixMatch Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                     const ArtifactFilter& eligible) override;
  StatusOr<artifact::Manifest> GetManifest(const std::string& artifact_id) override;
  StatusOr<ArtifactInfo> Stat(const std::string& artifact_id) override;
  std::vector<ArtifactInfo> List() override;
  Status Load(const std::string& artifact_id, const LoadOptions& options, const BlockConsumer& consume) override;
  Status LoadPrefix(const PrefixMatch& match, const BlockConsumer& consume) override;
  StatusOr<artifact::Artifact> Export(const std::string& artifact_id) override;
  Status Pin(const std::string& artifact_id, bool pinned) override;
  Status SetTtl(const std::string& artifact_id, std::optional<std::chrono::seconds> ttl) override;
  Status Remove(const std::string& artifact_id) override;
  Status SetPublisherQuota(const std::string& publisher_hex, uint64_t bytes) override;
  StatusOr<GcReport> Gc() override;
  StatusOr<VerifyReport> Verify(const std::string& artifact_id = "") override;
  StoreMetrics Metrics() const override;
  Status CheckHealth() override { return Status::Ok(); }  // nothing outside the process
  std::string Backend() const override { return "memory"; }
  // There is no decoded tier to drop: every load decodes.
  void DropMemoryTier() override {}

 private:
  // One stored block: the encoded bytes and which artifacts use them.
  struct Block {
    artifact::BlockInfo info;  // of the first artifact that stored it
    artifact::KvDtype dtype = artifact::KvDtype::kBf16;
    std::shared_ptr<const std::vector<uint8_t>> stored;
    std::vector<std::string> owners;
    bool damaged = false;
  };
  struct Entry {
    ArtifactInfo info;
    std::shared_ptr<const artifact::Manifest> manifest;
    Digest256 profile_digest{};
    std::vector<std::string> block_keys;  // into blocks_, in order
    bool expired(int64_t now) const { return info.expires_at_unix && *info.expires_at_unix <= now && !info.pinned; }
  };
  // A block to load, copied out under the lock.
  struct Ref {
    uint32_t index;
    artifact::BlockInfo info;
    artifact::KvDtype dtype;
    std::shared_ptr<const std::vector<uint8_t>> stored;
    std::string key;
  };

  friend struct MemoryStoreIndex;
  static std::string KeyOf(const artifact::BlockInfo& b);  // chain hash ‖ XXH3-128
  const Block* Available(const Digest256& chain) const;
  Status LoadRefs(const std::string& what, const std::vector<Ref>& refs, const LoadOptions& options,
                  const BlockConsumer& consume);
  void RemoveLocked(const std::string& id, GcReport* report);

  mutable std::shared_mutex mu_;
  std::map<std::string, Entry> artifacts_;
  std::unordered_map<std::string, Block> blocks_;                      // KeyOf → block
  std::map<Digest256, std::vector<std::string>> by_chain_;             // chain hash → KeyOf of its variants
  std::map<Digest256, std::string> by_last_;                           // last chain hash → artifact
  std::map<Digest256, std::vector<std::pair<std::string, uint32_t>>> partial_;  // see prefix_walk.h
  std::map<Digest256, std::pair<uint32_t, uint64_t>> profiles_;        // → (block size, artifacts)
  std::unordered_map<std::string, uint64_t> publisher_bytes_, quotas_;
  uint64_t stored_bytes_ = 0;

  std::atomic<uint64_t> hits_{0}, misses_{0}, checksum_failures_{0}, bytes_loaded_{0};
};

}  // namespace kvmart::store
