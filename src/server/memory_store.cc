#include "server/memory_store.h"

#include <algorithm>

#include "artifact/integrity.h"
#include "artifact/manifest.h"

namespace kvmart::server {

std::shared_ptr<const artifact::Artifact> MemoryStore::Find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second.artifact;
}

Status MemoryStore::Put(const artifact::Artifact& a) {
  KVMART_RETURN_IF_ERROR(artifact::ValidateManifest(a.manifest));
  KVMART_RETURN_IF_ERROR(artifact::VerifyManifestSignature(a.manifest));
  if (a.stored_blocks.size() != a.manifest.blocks.size()) return Status::InvalidArgument("block count mismatch");
  for (size_t i = 0; i < a.stored_blocks.size(); ++i) {
    KVMART_RETURN_IF_ERROR(artifact::VerifyStoredChecksum(a.manifest.blocks[i], a.stored_blocks[i]));
  }
  store::ArtifactInfo info;
  const auto& m = a.manifest;
  info.artifact_id = m.artifact_id;
  info.publisher_hex = ToHex(m.publisher.data(), m.publisher.size());
  info.profile_digest_hex = ToHex(artifact::ProfileDigest(m.profile));
  info.token_count = m.tokens.size();
  info.num_blocks = static_cast<uint32_t>(m.blocks.size());
  info.raw_bytes = m.TotalRawBytes();
  info.stored_bytes = m.TotalStoredBytes();
  info.codec = m.blocks.empty() ? "raw" : std::string(artifact::CodecName(m.blocks[0].codec));
  info.title = m.title;
  info.created_at = m.created_at;
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.count(m.artifact_id)) return Status::Ok();
  entries_[m.artifact_id] = Entry{std::make_shared<const artifact::Artifact>(a), info};
  ++metrics_.artifacts;
  metrics_.blocks += info.num_blocks;
  metrics_.memory_bytes += info.stored_bytes;
  return Status::Ok();
}

Status MemoryStore::PutFile(const std::string& kva_path) {
  KVMART_ASSIGN_OR_RETURN(auto reader, artifact::ArtifactReader::OpenFile(kva_path));
  return Put(reader.ToArtifact());
}

store::PrefixMatch MemoryStore::Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens) {
  store::PrefixMatch best;
  const std::string want = ToHex(profile_digest);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, e] : entries_) {
    const auto& t = e.artifact->manifest.tokens;
    if (e.info.profile_digest_hex != want || t.size() > tokens.size() || t.size() <= best.matched_tokens) continue;
    if (!std::equal(t.begin(), t.end(), tokens.begin())) continue;
    best.matched_tokens = t.size();
    best.artifact_id = best.source_artifact_id = id;
    best.artifact_tokens = t.size();
    best.block_hashes.clear();
    for (const auto& b : e.artifact->manifest.blocks) best.block_hashes.push_back(b.chain_hash);
  }
  if (best.matched_tokens == 0) ++metrics_.misses;
  return best;
}

StatusOr<artifact::Manifest> MemoryStore::GetManifest(const std::string& id) {
  auto a = Find(id);
  if (!a) return Status::NotFound("artifact " + id + " is not in the store");
  return a->manifest;
}

StatusOr<store::ArtifactInfo> MemoryStore::Stat(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status::NotFound("artifact " + id + " is not in the store");
  return it->second.info;
}

std::vector<store::ArtifactInfo> MemoryStore::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<store::ArtifactInfo> out;
  for (const auto& [id, e] : entries_) out.push_back(e.info);
  return out;
}

Status MemoryStore::Load(const std::string& id, const store::LoadOptions& options, const BlockConsumer& consume) {
  auto a = Find(id);
  if (!a) return Status::NotFound("artifact " + id + " is not in the store");
  const auto& m = a->manifest;
  const size_t n = options.num_blocks == 0 ? m.blocks.size() : std::min<size_t>(options.num_blocks, m.blocks.size());
  for (size_t i = 0; i < n; ++i) {
    const auto& b = m.blocks[i];
    auto raw = artifact::DecodeVerifiedBlock(b, m.profile.shape.dtype, a->stored_blocks[i]);
    if (!raw.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++metrics_.checksum_failures;
      return Status::Corruption("artifact " + id + " block " + std::to_string(i) + ": " + raw.status().message());
    }
    store::LoadedBlock lb;
    lb.index = static_cast<uint32_t>(i);
    lb.token_begin = b.token_begin;
    lb.token_end = b.token_end;
    lb.tier = store::Tier::kMemory;
    lb.payload = std::make_shared<const std::vector<uint8_t>>(std::move(raw).value());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++metrics_.hits_memory;
      metrics_.bytes_loaded += lb.payload->size();
    }
    KVMART_RETURN_IF_ERROR(consume(lb));
  }
  return Status::Ok();
}

Status MemoryStore::LoadPrefix(const store::PrefixMatch& match, const BlockConsumer& consume) {
  store::LoadOptions o;
  o.num_blocks = static_cast<uint32_t>(match.block_hashes.size());
  return Load(match.source_artifact_id, o, consume);
}

StatusOr<artifact::Artifact> MemoryStore::Export(const std::string& id) {
  auto a = Find(id);
  if (!a) return Status::NotFound("artifact " + id + " is not in the store");
  return *a;
}

Status MemoryStore::Pin(const std::string& id, bool pinned) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status::NotFound("artifact " + id + " is not in the store");
  it->second.info.pinned = pinned;
  return Status::Ok();
}

Status MemoryStore::SetTtl(const std::string& id, std::optional<std::chrono::seconds>) {
  return Stat(id).status();
}

Status MemoryStore::Remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status::NotFound("artifact " + id + " is not in the store");
  --metrics_.artifacts;
  metrics_.blocks -= it->second.info.num_blocks;
  metrics_.memory_bytes -= it->second.info.stored_bytes;
  entries_.erase(it);
  return Status::Ok();
}

Status MemoryStore::SetPublisherQuota(const std::string&, uint64_t) {
  return Status::Unimplemented("the memory store has no quotas");
}

StatusOr<store::GcReport> MemoryStore::Gc() { return store::GcReport{}; }

StatusOr<store::VerifyReport> MemoryStore::Verify(const std::string& artifact_id) {
  store::VerifyReport r;
  for (const auto& info : List()) {
    if (!artifact_id.empty() && info.artifact_id != artifact_id) continue;
    auto a = Find(info.artifact_id);
    if (!a) continue;
    for (size_t i = 0; i < a->stored_blocks.size(); ++i) {
      ++r.blocks_checked;
      auto raw = artifact::DecodeVerifiedBlock(a->manifest.blocks[i], a->manifest.profile.shape.dtype,
                                               a->stored_blocks[i]);
      if (!raw.ok()) {
        ++r.blocks_bad;
        r.problems.push_back(info.artifact_id + " block " + std::to_string(i) + ": " + raw.status().message());
      }
    }
  }
  return r;
}

store::StoreMetrics MemoryStore::Metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

}  // namespace kvmart::server
