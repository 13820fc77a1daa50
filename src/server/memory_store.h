// A process-local implementation of the store contract (store/store.h): every
// artifact kept whole in memory, blocks verified (XXH3-128, decode, SHA-256)
// on every load exactly as the real store does.
//
// Why it exists: `kvmart serve --store memory` (an ephemeral provider for
// tests and demos that must leave nothing on disk), and a server that builds
// and runs without the disk store. It is deliberately simple: prefix lookup
// scans the catalog (O(artifacts × tokens)), there are no tiers, quotas or TTLs.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "store/store.h"

namespace kvmart::server {

class MemoryStore final : public store::Store {
 public:
  MemoryStore() = default;

  Status Put(const artifact::Artifact& artifact) override;
  Status PutFile(const std::string& kva_path) override;
  store::PrefixMatch Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens) override;
  StatusOr<artifact::Manifest> GetManifest(const std::string& artifact_id) override;
  StatusOr<store::ArtifactInfo> Stat(const std::string& artifact_id) override;
  std::vector<store::ArtifactInfo> List() override;
  Status Load(const std::string& artifact_id, const store::LoadOptions& options,
              const BlockConsumer& consume) override;
  Status LoadPrefix(const store::PrefixMatch& match, const BlockConsumer& consume) override;
  StatusOr<artifact::Artifact> Export(const std::string& artifact_id) override;
  Status Pin(const std::string& artifact_id, bool pinned) override;
  Status SetTtl(const std::string& artifact_id, std::optional<std::chrono::seconds> ttl) override;
  Status Remove(const std::string& artifact_id) override;
  Status SetPublisherQuota(const std::string& publisher_hex, uint64_t bytes) override;
  StatusOr<store::GcReport> Gc() override;
  StatusOr<store::VerifyReport> Verify(const std::string& artifact_id = "") override;
  store::StoreMetrics Metrics() const override;
  void DropMemoryTier() override {}

 private:
  struct Entry {
    std::shared_ptr<const artifact::Artifact> artifact;
    store::ArtifactInfo info;
  };
  std::shared_ptr<const artifact::Artifact> Find(const std::string& id) const;

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  mutable store::StoreMetrics metrics_;
};

}  // namespace kvmart::server
