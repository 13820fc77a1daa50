#include "store/memory_store.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>

#include "artifact/chain_hash.h"
#include "artifact/integrity.h"
#include "store/prefix_walk.h"

namespace kvmart::store {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

Status NotStored(const std::string& id) { return Status::NotFound("artifact " + id + " is not in the store"); }

// Where a partial last block hangs in the chain: after the previous block, or
// after the seed for a one-block artifact.
Digest256 PartialParent(const artifact::Manifest& m, const Digest256& profile_digest) {
  return m.blocks.size() >= 2 ? m.blocks[m.blocks.size() - 2].chain_hash : artifact::ChainSeed(profile_digest);
}

}  // namespace

// The index as the shared prefix walk sees it (prefix_walk.h).
struct MemoryStoreIndex {
  const MemoryStore& s;
  int64_t now;
  std::optional<LiveArtifact> ArtifactEndingAt(const Digest256& h) const {
    auto it = s.by_last_.find(h);
    if (it == s.by_last_.end()) return std::nullopt;
    const MemoryStore::Entry& e = s.artifacts_.at(it->second);
    if (e.expired(now)) return std::nullopt;
    for (const std::string& k : e.block_keys)
      if (s.blocks_.at(k).damaged) return std::nullopt;
    return LiveArtifact{e.info.artifact_id, e.info.token_count};
  }
  const std::vector<std::pair<std::string, uint32_t>>* PartialsAfter(const Digest256& h) const {
    auto it = s.partial_.find(h);
    return it == s.partial_.end() ? nullptr : &it->second;
  }
  bool BlockAvailable(const Digest256& h) const { return s.Available(h) != nullptr; }
  std::string OwnerOf(const Digest256& h) const {
    const MemoryStore::Block* b = s.Available(h);
    return b != nullptr && !b->owners.empty() ? b->owners.front() : std::string();
  }
};

std::string MemoryStore::KeyOf(const artifact::BlockInfo& b) {
  std::string k(reinterpret_cast<const char*>(b.chain_hash.data()), b.chain_hash.size());
  k.append(reinterpret_cast<const char*>(b.xxh3_128.data()), b.xxh3_128.size());
  return k;
}

const MemoryStore::Block* MemoryStore::Available(const Digest256& chain) const {
  auto it = by_chain_.find(chain);
  if (it == by_chain_.end()) return nullptr;
  for (const std::string& k : it->second) {
    const Block& b = blocks_.at(k);
    if (!b.damaged) return &b;
  }
  return nullptr;
}

Status MemoryStore::Put(const artifact::Artifact& a) {
  const artifact::Manifest& m = a.manifest;
  // A trust boundary, as for the disk store: everything is checked before any
  // of it becomes visible.
  KVMART_RETURN_IF_ERROR(artifact::ValidateManifest(m));
  KVMART_RETURN_IF_ERROR(artifact::VerifyManifestSignature(m));
  if (a.stored_blocks.size() != m.blocks.size()) return Status::InvalidArgument("block count mismatch");
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    auto raw = artifact::DecodeVerifiedBlock(m.blocks[i], m.profile.shape.dtype, a.stored_blocks[i]);
    if (!raw.ok()) return raw.status().WithContext("artifact " + m.artifact_id + " block " + std::to_string(i));
  }
  const std::string publisher = ToHex(m.publisher.data(), m.publisher.size());
  const Digest256 profile_digest = artifact::ProfileDigest(m.profile);

  std::unique_lock lock(mu_);
  if (auto it = artifacts_.find(m.artifact_id); it != artifacts_.end()) {
    const artifact::Manifest& have = *it->second.manifest;
    if (have.signed_text != m.signed_text || have.signature != m.signature) {
      return Status::AlreadyExists("artifact " + m.artifact_id + " is already published (by " +
                                   it->second.info.publisher_hex + ") with a different manifest");
    }
    // The same artifact again: a no-op that repairs blocks found damaged.
    for (size_t i = 0; i < m.blocks.size(); ++i) {
      Block& b = blocks_.at(it->second.block_keys[i]);
      if (b.damaged) {
        b.stored = std::make_shared<const std::vector<uint8_t>>(a.stored_blocks[i]);
        b.damaged = false;
      }
    }
    return Status::Ok();
  }
  // One payload per chain hash (bit-exactness leaves no room for two answers).
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    auto it = by_chain_.find(m.blocks[i].chain_hash);
    if (it != by_chain_.end() && blocks_.at(it->second.front()).info.payload_sha256 != m.blocks[i].payload_sha256) {
      return Status::FailedPrecondition("artifact " + m.artifact_id + " block " + std::to_string(i) +
                                        ": payload differs from the stored block with the same chain hash");
    }
  }
  const uint64_t stored_total = m.TotalStoredBytes();
  if (auto q = quotas_.find(publisher); q != quotas_.end() && q->second != 0) {
    const uint64_t used = publisher_bytes_.contains(publisher) ? publisher_bytes_.at(publisher) : 0;
    if (used + stored_total > q->second) {
      return Status::ResourceExhausted("publisher " + publisher + " quota exceeded: " + std::to_string(used) + " + " +
                                       std::to_string(stored_total) + " > " + std::to_string(q->second) + " bytes");
    }
  }

  Entry e;
  e.manifest = std::make_shared<const artifact::Manifest>(m);
  e.profile_digest = profile_digest;
  e.info.artifact_id = m.artifact_id;
  e.info.publisher_hex = publisher;
  e.info.profile_digest_hex = ToHex(profile_digest);
  e.info.token_count = m.tokens.size();
  e.info.num_blocks = static_cast<uint32_t>(m.blocks.size());
  e.info.raw_bytes = m.TotalRawBytes();
  e.info.stored_bytes = stored_total;
  e.info.codec = m.blocks.empty() ? "raw" : std::string(artifact::CodecName(m.blocks[0].codec));
  e.info.title = m.title;
  e.info.created_at = m.created_at;
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    const std::string key = KeyOf(m.blocks[i]);
    auto [it, inserted] = blocks_.try_emplace(key);
    Block& b = it->second;
    if (inserted) {
      b.info = m.blocks[i];
      b.dtype = m.profile.shape.dtype;
      b.stored = std::make_shared<const std::vector<uint8_t>>(a.stored_blocks[i]);
      by_chain_[m.blocks[i].chain_hash].push_back(key);
      stored_bytes_ += b.stored->size();
    }
    b.owners.push_back(m.artifact_id);
    e.block_keys.push_back(key);
  }
  if (!m.blocks.empty()) {
    by_last_[m.blocks.back().chain_hash] = m.artifact_id;
    const uint32_t bs = m.profile.block_size;
    if (m.tokens.size() % bs != 0) {
      partial_[PartialParent(m, profile_digest)].emplace_back(m.artifact_id,
                                                              static_cast<uint32_t>(m.tokens.size() % bs));
    }
  }
  auto& prof = profiles_[profile_digest];
  prof.first = m.profile.block_size;
  ++prof.second;
  publisher_bytes_[publisher] += stored_total;
  artifacts_.emplace(m.artifact_id, std::move(e));
  return Status::Ok();
}

Status MemoryStore::PutFile(const std::string& kva_path) {
  KVMART_ASSIGN_OR_RETURN(auto reader, artifact::ArtifactReader::OpenFile(kva_path));
  return Put(reader.ToArtifact());
}

PrefixMatch MemoryStore::Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                            const ArtifactFilter& eligible) {
  std::shared_lock lock(mu_);
  auto prof = profiles_.find(profile_digest);
  PrefixMatch match;
  if (prof != profiles_.end()) {
    match = LongestPrefix(MemoryStoreIndex{*this, NowUnix()}, profile_digest, prof->second.first, tokens, eligible);
  }
  if (match.matched_tokens == 0) misses_.fetch_add(1, std::memory_order_relaxed);
  return match;
}

StatusOr<artifact::Manifest> MemoryStore::GetManifest(const std::string& id) {
  std::shared_lock lock(mu_);
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return NotStored(id);
  return *it->second.manifest;
}

StatusOr<ArtifactInfo> MemoryStore::Stat(const std::string& id) {
  std::shared_lock lock(mu_);
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return NotStored(id);
  return it->second.info;
}

std::vector<ArtifactInfo> MemoryStore::List() {
  std::shared_lock lock(mu_);
  std::vector<ArtifactInfo> out;
  out.reserve(artifacts_.size());
  for (const auto& [id, e] : artifacts_) out.push_back(e.info);
  return out;
}

Status MemoryStore::LoadRefs(const std::string& what, const std::vector<Ref>& refs, const LoadOptions& options,
                             const BlockConsumer& consume) {
  for (const Ref& r : refs) {
    auto raw = artifact::DecodeVerifiedBlock(r.info, r.dtype, *r.stored);
    if (!raw.ok()) {
      checksum_failures_.fetch_add(1, std::memory_order_relaxed);
      {
        std::unique_lock lock(mu_);
        if (auto it = blocks_.find(r.key); it != blocks_.end()) it->second.damaged = true;
      }
      return Status::DataLoss("data loss: " + what + " block " + std::to_string(r.index) + ": " +
                              raw.status().message());
    }
    LoadedBlock lb;
    lb.index = r.index;
    lb.token_begin = r.info.token_begin;
    lb.token_end = r.info.token_end;
    lb.tier = Tier::kMemory;
    std::span<uint8_t> dest = options.destination ? options.destination(r.index, raw->size()) : std::span<uint8_t>();
    if (options.destination) {
      if (dest.size() != raw->size()) {
        return Status::InvalidArgument(what + " block " + std::to_string(r.index) + ": destination holds " +
                                       std::to_string(dest.size()) + " bytes, the block " +
                                       std::to_string(raw->size()));
      }
      std::memcpy(dest.data(), raw->data(), raw->size());
      lb.bytes = dest;
    } else {
      lb.payload = std::make_shared<const std::vector<uint8_t>>(std::move(raw).value());
      lb.bytes = std::span<const uint8_t>(*lb.payload);
    }
    hits_.fetch_add(1, std::memory_order_relaxed);
    bytes_loaded_.fetch_add(lb.bytes.size(), std::memory_order_relaxed);
    KVMART_RETURN_IF_ERROR(consume(lb));
  }
  return Status::Ok();
}

Status MemoryStore::Load(const std::string& id, const LoadOptions& options, const BlockConsumer& consume) {
  std::vector<Ref> refs;
  {
    std::shared_lock lock(mu_);
    auto it = artifacts_.find(id);
    if (it == artifacts_.end()) return NotStored(id);
    const Entry& e = it->second;
    size_t n = e.block_keys.size();
    if (options.num_blocks != 0) n = std::min<size_t>(n, options.num_blocks);
    for (size_t i = 0; i < n; ++i) {
      const Block& b = blocks_.at(e.block_keys[i]);
      if (b.damaged) {
        return Status::DataLoss("data loss: artifact " + id + " block " + std::to_string(i) +
                                ": failed verification earlier (republish to repair)");
      }
      // The block's placement is this artifact's (the same for every owner).
      artifact::BlockInfo info = e.manifest->blocks[i];
      refs.push_back({static_cast<uint32_t>(i), info, b.dtype, b.stored, e.block_keys[i]});
    }
  }
  return LoadRefs("artifact " + id, refs, options, consume);
}

Status MemoryStore::LoadPrefix(const PrefixMatch& match, const BlockConsumer& consume) {
  std::vector<Ref> refs;
  {
    std::shared_lock lock(mu_);
    auto it = artifacts_.find(match.source_artifact_id);
    if (it == artifacts_.end()) return NotStored(match.source_artifact_id);
    const Entry& e = it->second;
    if (match.block_hashes.size() > e.block_keys.size()) {
      return Status::InvalidArgument("match has more blocks than artifact " + match.source_artifact_id);
    }
    for (size_t i = 0; i < match.block_hashes.size(); ++i) {
      const artifact::BlockInfo& info = e.manifest->blocks[i];
      if (info.chain_hash != match.block_hashes[i]) {
        return Status::InvalidArgument("match does not follow artifact " + match.source_artifact_id + " at block " +
                                       std::to_string(i));
      }
      const Block& b = blocks_.at(e.block_keys[i]);
      if (b.damaged) {
        return Status::DataLoss("data loss: artifact " + match.source_artifact_id + " block " + std::to_string(i) +
                                ": failed verification earlier (republish to repair)");
      }
      refs.push_back({static_cast<uint32_t>(i), info, b.dtype, b.stored, e.block_keys[i]});
    }
  }
  return LoadRefs("artifact " + match.source_artifact_id, refs, {}, consume);
}

StatusOr<artifact::Artifact> MemoryStore::Export(const std::string& id) {
  std::shared_lock lock(mu_);
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return NotStored(id);
  artifact::Artifact a;
  a.manifest = *it->second.manifest;
  for (size_t i = 0; i < it->second.block_keys.size(); ++i) {
    const Block& b = blocks_.at(it->second.block_keys[i]);
    if (b.damaged) return Status::DataLoss("data loss: artifact " + id + " block " + std::to_string(i));
    a.stored_blocks.push_back(*b.stored);
  }
  return a;
}

Status MemoryStore::Pin(const std::string& id, bool pinned) {
  std::unique_lock lock(mu_);
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return NotStored(id);
  it->second.info.pinned = pinned;
  return Status::Ok();
}

Status MemoryStore::SetTtl(const std::string& id, std::optional<std::chrono::seconds> ttl) {
  std::unique_lock lock(mu_);
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return NotStored(id);
  if (ttl) {
    it->second.info.expires_at_unix = NowUnix() + ttl->count();
  } else {
    it->second.info.expires_at_unix.reset();
  }
  return Status::Ok();
}

void MemoryStore::RemoveLocked(const std::string& id, GcReport* report) {
  auto it = artifacts_.find(id);
  const Entry& e = it->second;
  const artifact::Manifest& m = *e.manifest;
  for (const std::string& key : e.block_keys) {
    auto b = blocks_.find(key);
    std::erase(b->second.owners, id);
    if (!b->second.owners.empty()) continue;
    const uint64_t size = b->second.stored->size();
    stored_bytes_ -= size;
    if (report != nullptr) {
      ++report->blocks_removed;
      report->bytes_freed += size;
    }
    auto c = by_chain_.find(b->second.info.chain_hash);
    std::erase(c->second, key);
    if (c->second.empty()) by_chain_.erase(c);
    blocks_.erase(b);
  }
  if (!m.blocks.empty()) {
    by_last_.erase(m.blocks.back().chain_hash);
    if (m.tokens.size() % m.profile.block_size != 0) {
      auto p = partial_.find(PartialParent(m, e.profile_digest));
      if (p != partial_.end()) {
        std::erase_if(p->second, [&](const auto& x) { return x.first == id; });
        if (p->second.empty()) partial_.erase(p);
      }
    }
  }
  if (auto pr = profiles_.find(e.profile_digest); pr != profiles_.end() && --pr->second.second == 0) profiles_.erase(pr);
  publisher_bytes_[e.info.publisher_hex] -= e.info.stored_bytes;
  artifacts_.erase(it);
}

Status MemoryStore::Remove(const std::string& id) {
  std::unique_lock lock(mu_);
  if (!artifacts_.contains(id)) return NotStored(id);
  RemoveLocked(id, nullptr);
  return Status::Ok();
}

Status MemoryStore::SetPublisherQuota(const std::string& publisher_hex, uint64_t bytes) {
  std::string raw;
  if (publisher_hex.size() != 64 || !FromHex(publisher_hex, &raw)) {
    return Status::InvalidArgument("publisher must be 64 hex digits");
  }
  std::unique_lock lock(mu_);
  quotas_[publisher_hex] = bytes;
  return Status::Ok();
}

StatusOr<GcReport> MemoryStore::Gc() {
  GcReport report;
  const int64_t now = NowUnix();
  std::unique_lock lock(mu_);
  std::vector<std::string> expired;
  for (const auto& [id, e] : artifacts_)
    if (e.expired(now)) expired.push_back(id);
  for (const auto& id : expired) {
    RemoveLocked(id, &report);
    ++report.expired_artifacts;
  }
  return report;
}

StatusOr<VerifyReport> MemoryStore::Verify(const std::string& id) {
  VerifyReport report;
  std::unique_lock lock(mu_);
  if (!id.empty() && !artifacts_.contains(id)) return NotStored(id);
  for (auto& [key, b] : blocks_) {
    if (!id.empty() && std::find(b.owners.begin(), b.owners.end(), id) == b.owners.end()) continue;
    ++report.blocks_checked;
    auto raw = artifact::DecodeVerifiedBlock(b.info, b.dtype, *b.stored);
    if (!raw.ok()) {
      ++report.blocks_bad;
      b.damaged = true;
      report.problems.push_back((b.owners.empty() ? std::string("?") : b.owners.front()) + " block " +
                                std::to_string(b.info.index) + ": " + raw.status().message());
    }
  }
  return report;
}

StoreMetrics MemoryStore::Metrics() const {
  StoreMetrics m;
  m.hits_memory = hits_.load(std::memory_order_relaxed);
  m.misses = misses_.load(std::memory_order_relaxed);
  m.checksum_failures = checksum_failures_.load(std::memory_order_relaxed);
  m.bytes_loaded = bytes_loaded_.load(std::memory_order_relaxed);
  std::shared_lock lock(mu_);
  m.memory_bytes = stored_bytes_;
  m.artifacts = artifacts_.size();
  m.blocks = blocks_.size();
  return m;
}

}  // namespace kvmart::store
