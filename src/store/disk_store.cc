#include "store/disk_store.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "artifact/canonical_json.h"
#include "artifact/chain_hash.h"
#include "artifact/integrity.h"
#include "artifact/parallel.h"
#include "base/file_system.h"
#include "store/block_files.h"
#include "store/buffer_pool.h"
#include "store/catalog.h"
#include "store/memory_tier.h"
#include "store/prefix_walk.h"
#include "store/shared_tier.h"

namespace kvmart::store {

const char* TierName(Tier t) { return t == Tier::kMemory ? "memory" : "disk"; }

StatusOr<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) { return OpenDiskStore(options); }

namespace {

// What the index shows of an artifact: its catalog row, less the manifest and
// the block keys.
ArtifactInfo InfoFromRow(const CatalogArtifact& row) {
  ArtifactInfo info;
  info.artifact_id = row.artifact_id;
  info.publisher_hex = row.publisher_hex;
  info.profile_digest_hex = row.profile_digest_hex;
  info.token_count = row.token_count;
  info.num_blocks = row.num_blocks;
  info.raw_bytes = row.raw_bytes;
  info.stored_bytes = row.stored_bytes;
  info.codec = row.codec;
  info.title = row.title;
  info.created_at = row.created_at;
  info.pinned = row.pinned;
  info.expires_at_unix = row.expires_at_unix;
  return info;
}

using artifact::BlockInfo;
using artifact::Codec;
using artifact::KvDtype;
using artifact::Manifest;

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

Status DataLoss(const std::string& what, const Status& cause) {
  return Status::DataLoss("data loss: " + what + ": " + cause.message());
}

// One stored encoding of a block (store.h: blocks are shared by chain hash).
struct Variant {
  BlockKey key;
  Codec codec = Codec::kRaw;
  KvDtype dtype = KvDtype::kBf16;
  uint32_t index = 0;
  uint64_t token_begin = 0, token_end = 0;
  uint64_t raw_bytes = 0, stored_bytes = 0;
  Digest256 payload_sha256{};
  std::vector<std::string> owners;  // artifacts referencing it (the refcount)

  BlockInfo Info() const {
    BlockInfo b;
    b.index = index;
    b.token_begin = token_begin;
    b.token_end = token_end;
    b.chain_hash = key.chain;
    b.codec = codec;
    b.raw_bytes = raw_bytes;
    b.stored_bytes = stored_bytes;
    b.payload_sha256 = payload_sha256;
    b.xxh3_128 = key.xxh3;
    return b;
  }
};

struct ArtifactEntry {
  ArtifactInfo info;
  std::shared_ptr<const Manifest> manifest;
  std::vector<BlockKey> keys;
  Digest256 profile_digest{};
  Digest256 last_hash{};
  bool expired(int64_t now) const { return info.expires_at_unix && *info.expires_at_unix <= now && !info.pinned; }
};

// What a loader needs of one block, copied out of the index so no lock is held
// during I/O.
struct BlockRef {
  Variant v;  // owners left empty
};

std::string CodecSummary(const Manifest& m) {
  std::string c(artifact::CodecName(m.blocks.front().codec));
  for (const auto& b : m.blocks)
    if (artifact::CodecName(b.codec) != c) return "mixed";
  return c;
}

// The stored form of a manifest: the signed text plus the signature, so fields
// of a newer minor version (which Manifest does not model) survive the catalog.
StatusOr<std::string> StoredManifestText(const Manifest& m) {
  if (!m.signature) return Status::Unauthenticated("manifest is not signed");
  KVMART_ASSIGN_OR_RETURN(auto j, artifact::ParseCanonicalJson(m.signed_text));
  j["signature"] = ToHex(m.signature->data(), m.signature->size());
  return artifact::CanonicalJson(j);
}

class DiskStore final : public Store {
 public:
  explicit DiskStore(const StoreOptions& o)
      : options_(o),
        fs_(o.file_system != nullptr ? o.file_system : PosixFileSystem()),
        files_(fs_, o.data_dir + "/blocks", o.durable),
        memory_(o.memory_budget_bytes),
        pool_(std::make_shared<BufferPool>(o.read_buffer_pool_bytes)),
        threads_(o.decode_threads != 0 ? o.decode_threads : std::max(1u, std::thread::hardware_concurrency())) {}

  Status Init();

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
  StatusOr<VerifyReport> Verify(const std::string& artifact_id) override;
  StoreMetrics Metrics() const override;
  Status CheckHealth() override;
  std::string Backend() const override;
  void DropMemoryTier() override { memory_.Clear(); }

 private:
  // ---- index (guarded by index_mu_; writers also hold write_mu_) ----
  void IndexArtifact(std::shared_ptr<const ArtifactEntry> e);
  void UnindexArtifact(const ArtifactEntry& e);
  const Variant* FindVariant(const BlockKey& key) const;
  // A non-damaged variant of the chain hash, or nullptr.
  const Variant* Available(const Digest256& chain) const;
  // Syncs a shared catalog first.
  std::shared_ptr<const ArtifactEntry> FindArtifact(const std::string& id);

  // ---- a catalog shared with other nodes ----
  // Re-reads the index when another node changed the catalog; checked at most
  // once per catalog_refresh unless `force`. Errors keep the index as it is
  // (counted; CheckHealth reports the catalog).
  void Sync(bool force);
  void SyncLocked(bool force);  // write_mu_ held
  // Builds the index from a snapshot (write_mu_ held; takes index_mu_).
  Status IndexContents(Catalog::Contents contents);
  // Notes the generation a write of ours produced.
  void NoteOwnWrite();

  // ---- writes (write_mu_ held) ----
  Status RemoveLocked(const std::string& id, GcReport* report);
  Status UpdateEntryLocked(const std::string& id, const std::function<void(ArtifactInfo*)>& change);
  void CleanFilesLocked(GcReport* report);

  // ---- reads ----
  using Destination = std::function<std::span<uint8_t>(uint32_t, uint64_t)>;
  StatusOr<LoadedBlock> Fetch(const BlockRef& ref, const std::string& what, const LoadOptions& options);
  Status ReadStored(const BlockRef& ref, const std::string& what, std::vector<uint8_t>* stored);
  Status ReportDamage(const BlockKey& key, const std::string& what, const Status& cause);
  // A block this node's disk lacks (or holds damaged), fetched from the shared
  // tier, checked against the catalog and written to disk; its stored bytes.
  // NotFound when the tier has no usable copy.
  StatusOr<std::vector<uint8_t>> FillFromSharedTier(const BlockRef& ref, const std::string& what);
  // Reads the local file (into `stored`, or into `dest` when it is non-empty),
  // falling back once to the shared tier when the file is missing or bad.
  Status ReadLocal(const BlockRef& ref, const std::string& what, std::vector<uint8_t>* stored,
                   std::span<uint8_t> dest);
  Status RunLoad(const std::vector<BlockRef>& refs, const LoadOptions& options, const std::string& what,
                 const BlockConsumer& consume);

  StoreOptions options_;
  std::shared_ptr<FileSystem> fs_;
  // The advisory whole-store lock, released by the kernel when the process
  // dies (so a SIGKILLed writer never leaves the store locked).
  std::unique_ptr<FileLock> lock_;
  BlockFiles files_;
  MemoryTier memory_;
  std::shared_ptr<BufferPool> pool_;
  unsigned threads_;

  std::mutex write_mu_;
  std::unique_ptr<Catalog> catalog_;  // write_mu_ (and Init)

  mutable std::shared_mutex index_mu_;
  std::unordered_map<std::string, std::shared_ptr<const ArtifactEntry>> artifacts_;
  std::unordered_map<Digest256, std::vector<Variant>, DigestHash> blocks_;  // by chain hash
  std::unordered_map<Digest256, std::string, DigestHash> by_last_;          // last chain hash → artifact
  // Parent chain hash (the seed for a one-block artifact) → artifacts whose last
  // block is partial, with its token count: how Lookup finds an exact-prefix
  // artifact that does not end on a block boundary.
  std::unordered_map<Digest256, std::vector<std::pair<std::string, uint32_t>>, DigestHash> partial_;
  std::unordered_map<Digest256, std::pair<uint32_t, uint64_t>, DigestHash> profiles_;  // → (block size, artifacts)
  std::unordered_map<std::string, uint64_t> publisher_bytes_;
  std::unordered_map<std::string, uint64_t> quotas_;
  std::unordered_set<BlockKey, BlockKeyHash> damaged_;
  uint64_t disk_bytes_ = 0;
  uint64_t num_variants_ = 0;

  std::atomic<uint64_t> hits_memory_{0}, hits_disk_{0}, misses_{0}, checksum_failures_{0}, bytes_loaded_{0};
  std::atomic<uint64_t> hits_shared_{0}, catalog_refreshes_{0}, catalog_errors_{0};

  // The catalog generation the index reflects (write_mu_), and when it is
  // next checked (steady clock ns; readers skip Sync before it).
  int64_t generation_ = 0;
  std::atomic<int64_t> next_check_ns_{0};
  // Whether the shared catalog answered at the last check (for CheckHealth
  // while a writer holds the catalog).
  std::atomic<bool> catalog_ok_{true};
};

// ---------------------------------------------------------------------------
// Open

Status DiskStore::Init() {
  if (options_.data_dir.empty()) return Status::InvalidArgument("store: empty data directory");
  KVMART_RETURN_IF_ERROR(CreateDirs(*fs_, options_.data_dir, options_.durable));
  {
    auto lock = fs_->LockFile(options_.data_dir + "/LOCK");
    if (lock.status().code() == Status::Code::kFailedPrecondition)
      return Status::FailedPrecondition("store " + options_.data_dir + " is in use by another process (" +
                                        lock.status().message() + ")");
    KVMART_RETURN_IF_ERROR(lock.status());
    lock_ = std::move(lock).value();
  }
  KVMART_RETURN_IF_ERROR(files_.Init());
  KVMART_ASSIGN_OR_RETURN(catalog_, Catalog::Open(options_.catalog.empty() ? options_.data_dir + "/catalog.sqlite"
                                                                         : options_.catalog,
                                                  options_.durable, options_.catalog_sqlite_vfs));
  KVMART_ASSIGN_OR_RETURN(auto contents, catalog_->Snapshot());
  {
    std::lock_guard wlock(write_mu_);
    KVMART_RETURN_IF_ERROR(IndexContents(std::move(contents)));
  }

  // Leftovers of interrupted publishes and removals: temporary files, and
  // complete files that no committed row names.
  std::lock_guard wlock(write_mu_);
  GcReport ignored;
  CleanFilesLocked(&ignored);
  return Status::Ok();
}

Status DiskStore::IndexContents(Catalog::Contents contents) {
  std::unordered_map<BlockKey, CatalogBlock, BlockKeyHash> rows;
  for (CatalogBlock& b : contents.blocks) rows.emplace(b.key, std::move(b));
  std::vector<std::shared_ptr<ArtifactEntry>> entries;
  entries.reserve(contents.artifacts.size());
  for (CatalogArtifact& a : contents.artifacts) {
    const std::string where = "catalog: artifact " + a.artifact_id;
    KVMART_ASSIGN_OR_RETURN(Manifest m, artifact::ParseManifest(a.manifest_json));
    if (m.artifact_id != a.artifact_id || m.blocks.size() != a.blocks.size())
      return Status::Corruption(where + ": row does not match its manifest");
    for (size_t i = 0; i < m.blocks.size(); ++i) {
      auto it = rows.find(a.blocks[i]);
      if (it == rows.end() || a.blocks[i].chain != m.blocks[i].chain_hash ||
          a.blocks[i].xxh3 != m.blocks[i].xxh3_128 || it->second.payload_sha256 != m.blocks[i].payload_sha256)
        return Status::Corruption(where + ": block " + std::to_string(i) + " row missing or inconsistent");
    }
    auto e = std::make_shared<ArtifactEntry>();
    e->info = InfoFromRow(a);
    e->keys = std::move(a.blocks);
    e->profile_digest = artifact::ProfileDigest(m.profile);
    e->last_hash = m.blocks.back().chain_hash;
    e->manifest = std::make_shared<const Manifest>(std::move(m));
    entries.push_back(std::move(e));
  }
  // Parsed and checked; now the swap, all at once for readers.
  std::unique_lock lock(index_mu_);
  std::unordered_set<BlockKey, BlockKeyHash> damaged = std::move(damaged_);
  artifacts_.clear();
  blocks_.clear();
  by_last_.clear();
  partial_.clear();
  profiles_.clear();
  publisher_bytes_.clear();
  quotas_.clear();
  damaged_.clear();
  disk_bytes_ = 0;
  num_variants_ = 0;
  for (auto& e : entries) IndexArtifact(std::move(e));
  for (const BlockKey& k : damaged)
    if (FindVariant(k) != nullptr) damaged_.insert(k);  // still damaged on this node's disk
  for (auto& [pub, bytes] : contents.quotas) quotas_[pub] = bytes;
  generation_ = contents.generation;
  return Status::Ok();
}

void DiskStore::NoteOwnWrite() {
  // One bump past what the index reflects: only our own change came in
  // between, and the index already has it. Anything else: re-read next time.
  if (catalog_->last_generation() == generation_ + 1) generation_ = catalog_->last_generation();
}

void DiskStore::Sync(bool force) {
  if (!catalog_->shared()) return;
  const int64_t now_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  if (!force && now_ns < next_check_ns_.load(std::memory_order_relaxed)) return;
  // A reader never waits for a publish in progress: it skips this check (the
  // next one comes within catalog_refresh).
  std::unique_lock wlock(write_mu_, std::defer_lock);
  if (force) {
    wlock.lock();
  } else if (!wlock.try_lock()) {
    return;
  }
  SyncLocked(force);
}

void DiskStore::SyncLocked(bool force) {
  if (!catalog_->shared()) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now.time_since_epoch().count() < next_check_ns_.load(std::memory_order_relaxed)) return;
  next_check_ns_.store((now + options_.catalog_refresh).time_since_epoch().count(), std::memory_order_relaxed);
  auto g = catalog_->Generation();
  catalog_ok_.store(g.ok(), std::memory_order_relaxed);
  if (!g.ok()) {
    catalog_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (*g == generation_) return;
  auto contents = catalog_->Snapshot();
  Status st = contents.ok() ? IndexContents(std::move(contents).value()) : contents.status();
  if (!st.ok()) {
    catalog_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  catalog_refreshes_.fetch_add(1, std::memory_order_relaxed);
}

Status DiskStore::CheckHealth() {
  if (catalog_->shared()) {
    // Asked now unless a writer is using the catalog (a publish can take
    // seconds; /readyz must not wait): then its last answer stands.
    std::unique_lock wlock(write_mu_, std::try_to_lock);
    if (wlock.owns_lock()) {
      auto g = catalog_->Generation();
      catalog_ok_.store(g.ok(), std::memory_order_relaxed);
      if (!g.ok()) return g.status().WithContext("store catalog " + catalog_->Describe());
    } else if (!catalog_ok_.load(std::memory_order_relaxed)) {
      return Status::Unavailable("store catalog " + catalog_->Describe() + " did not answer at the last check");
    }
  }
  if (options_.shared_blocks != nullptr) KVMART_RETURN_IF_ERROR(options_.shared_blocks->CheckHealth());
  return Status::Ok();
}

std::string DiskStore::Backend() const {
  std::string out = "disk (catalog " + catalog_->Describe();
  if (options_.shared_blocks != nullptr) out += ", shared blocks " + options_.shared_blocks->Describe();
  return out + ")";
}

// ---------------------------------------------------------------------------
// Index

void DiskStore::IndexArtifact(std::shared_ptr<const ArtifactEntry> e) {
  const Manifest& m = *e->manifest;
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    const BlockInfo& b = m.blocks[i];
    auto& variants = blocks_[b.chain_hash];
    auto it = std::find_if(variants.begin(), variants.end(), [&](const Variant& v) { return v.key == e->keys[i]; });
    if (it == variants.end()) {
      Variant v;
      v.key = e->keys[i];
      v.codec = b.codec;
      v.dtype = m.profile.shape.dtype;
      v.index = b.index;
      v.token_begin = b.token_begin;
      v.token_end = b.token_end;
      v.raw_bytes = b.raw_bytes;
      v.stored_bytes = b.stored_bytes;
      v.payload_sha256 = b.payload_sha256;
      variants.push_back(std::move(v));
      it = variants.end() - 1;
      disk_bytes_ += b.stored_bytes;
      ++num_variants_;
    }
    it->owners.push_back(e->info.artifact_id);
  }
  by_last_[e->last_hash] = e->info.artifact_id;
  const uint32_t bs = m.profile.block_size;
  if (m.tokens.size() % bs != 0) {
    Digest256 parent = m.blocks.size() >= 2 ? m.blocks[m.blocks.size() - 2].chain_hash
                                            : artifact::ChainSeed(e->profile_digest);
    partial_[parent].emplace_back(e->info.artifact_id, static_cast<uint32_t>(m.tokens.size() % bs));
  }
  auto& p = profiles_[e->profile_digest];
  p.first = bs;
  ++p.second;
  publisher_bytes_[e->info.publisher_hex] += e->info.stored_bytes;
  artifacts_[e->info.artifact_id] = std::move(e);
}

void DiskStore::UnindexArtifact(const ArtifactEntry& e) {
  const Manifest& m = *e.manifest;
  const std::string& id = e.info.artifact_id;
  for (size_t i = 0; i < e.keys.size(); ++i) {
    auto bit = blocks_.find(e.keys[i].chain);
    if (bit == blocks_.end()) continue;
    auto& variants = bit->second;
    for (auto v = variants.begin(); v != variants.end(); ++v) {
      if (!(v->key == e.keys[i])) continue;
      auto o = std::find(v->owners.begin(), v->owners.end(), id);
      if (o != v->owners.end()) v->owners.erase(o);
      if (v->owners.empty()) {
        disk_bytes_ -= v->stored_bytes;
        --num_variants_;
        damaged_.erase(v->key);
        variants.erase(v);
      }
      break;
    }
    if (variants.empty()) {
      blocks_.erase(bit);
      memory_.Erase(e.keys[i].chain);
    }
  }
  by_last_.erase(e.last_hash);
  const uint32_t bs = m.profile.block_size;
  if (m.tokens.size() % bs != 0) {
    Digest256 parent = m.blocks.size() >= 2 ? m.blocks[m.blocks.size() - 2].chain_hash
                                            : artifact::ChainSeed(e.profile_digest);
    auto pit = partial_.find(parent);
    if (pit != partial_.end()) {
      std::erase_if(pit->second, [&](const auto& p) { return p.first == id; });
      if (pit->second.empty()) partial_.erase(pit);
    }
  }
  auto pr = profiles_.find(e.profile_digest);
  if (pr != profiles_.end() && --pr->second.second == 0) profiles_.erase(pr);
  publisher_bytes_[e.info.publisher_hex] -= e.info.stored_bytes;
  artifacts_.erase(id);
}

const Variant* DiskStore::FindVariant(const BlockKey& key) const {
  auto it = blocks_.find(key.chain);
  if (it == blocks_.end()) return nullptr;
  for (const Variant& v : it->second)
    if (v.key == key) return &v;
  return nullptr;
}

const Variant* DiskStore::Available(const Digest256& chain) const {
  auto it = blocks_.find(chain);
  if (it == blocks_.end()) return nullptr;
  for (const Variant& v : it->second)
    if (!damaged_.contains(v.key)) return &v;
  return nullptr;
}

std::shared_ptr<const ArtifactEntry> DiskStore::FindArtifact(const std::string& id) {
  Sync(false);
  std::shared_lock lock(index_mu_);
  auto it = artifacts_.find(id);
  return it == artifacts_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------
// Put

Status DiskStore::PutFile(const std::string& kva_path) {
  KVMART_ASSIGN_OR_RETURN(auto reader, artifact::ArtifactReader::OpenFile(kva_path));
  return Put(reader.ToArtifact()).WithContext(kva_path);
}

Status DiskStore::Put(const artifact::Artifact& a) {
  const Manifest& m = a.manifest;
  // An upload is a trust boundary (docs/DESIGN.md §4): manifest, signature, and every
  // block's checksum, decode and payload SHA-256, before anything is written.
  KVMART_RETURN_IF_ERROR(artifact::ValidateManifest(m));
  KVMART_RETURN_IF_ERROR(artifact::VerifyManifestSignature(m));
  if (a.stored_blocks.size() != m.blocks.size())
    return Status::InvalidArgument("artifact " + m.artifact_id + ": " + std::to_string(a.stored_blocks.size()) +
                                   " stored blocks for " + std::to_string(m.blocks.size()) + " manifest entries");
  KVMART_RETURN_IF_ERROR(artifact::ParallelFor(m.blocks.size(), threads_, [&](size_t i) {
    return artifact::DecodeVerifiedBlock(m.blocks[i], m.profile.shape.dtype, a.stored_blocks[i], true)
        .status()
        .WithContext("artifact " + m.artifact_id);
  }));
  KVMART_ASSIGN_OR_RETURN(std::string manifest_text, StoredManifestText(m));
  const std::string publisher = ToHex(m.publisher.data(), m.publisher.size());

  std::vector<BlockKey> keys(m.blocks.size());
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = {m.blocks[i].chain_hash, m.blocks[i].xxh3_128};

  std::lock_guard wlock(write_mu_);
  // Another node may have published it (or blocks it shares) a moment ago.
  SyncLocked(/*force=*/true);
  // Only writers change the index, and every writer holds write_mu_, so it can
  // be read here without index_mu_.
  if (auto it = artifacts_.find(m.artifact_id); it != artifacts_.end()) {
    const ArtifactEntry& e = *it->second;
    if (e.manifest->signed_text != m.signed_text || e.manifest->signature != m.signature)
      return Status::AlreadyExists("artifact " + m.artifact_id + " is already published (by " +
                                   e.info.publisher_hex + ") with a different manifest");
    // The same artifact again: a no-op, except that it repairs block files that
    // were found damaged or have gone missing.
    std::vector<BlockKey> repaired;
    for (size_t i = 0; i < keys.size(); ++i) {
      // The shared tier may have lost blocks (a failover): put back any it lacks.
      if (options_.shared_blocks != nullptr) {
        KVMART_RETURN_IF_ERROR(options_.shared_blocks->Put(keys[i], a.stored_blocks[i]));
        KVMART_RETURN_IF_ERROR(options_.shared_blocks->Commit(keys[i], a.stored_blocks[i].size()));
      }
      if (!damaged_.contains(keys[i]) && files_.Exists(keys[i], m.blocks[i].stored_bytes)) continue;
      KVMART_RETURN_IF_ERROR(files_.Write(keys[i], a.stored_blocks[i]));
      repaired.push_back(keys[i]);
    }
    std::unique_lock lock(index_mu_);
    for (const auto& k : repaired) damaged_.erase(k);
    return Status::Ok();
  }
  // One payload per chain hash: a block whose KV differs from a stored block of
  // the same tokens and profile proves one of the publishers wrong. Keep the
  // first; bit-exactness leaves no room for two answers.
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = blocks_.find(keys[i].chain);
    if (it != blocks_.end() && !it->second.empty() && it->second.front().payload_sha256 != m.blocks[i].payload_sha256)
      return Status::FailedPrecondition("artifact " + m.artifact_id + " block " + std::to_string(i) +
                                        ": payload differs from the stored block with the same chain hash");
  }
  const uint64_t stored_total = m.TotalStoredBytes();
  if (auto q = quotas_.find(publisher); q != quotas_.end() && q->second != 0) {
    const uint64_t used = publisher_bytes_.contains(publisher) ? publisher_bytes_.at(publisher) : 0;
    if (used + stored_total > q->second)
      return Status::ResourceExhausted("publisher " + publisher + " quota exceeded: " + std::to_string(used) +
                                       " + " + std::to_string(stored_total) + " > " + std::to_string(q->second) +
                                       " bytes");
  }

  // 1. Block files, durable before any row names them.
  std::vector<BlockKey> created;  // files that no committed row names yet
  std::vector<BlockKey> rewritten;
  auto undo = [&](const Status& st) {
    for (const auto& k : created) (void)files_.Remove(k);
    return st.WithContext("publish " + m.artifact_id);
  };
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool in_catalog = FindVariant(keys[i]) != nullptr;
    if (in_catalog && !damaged_.contains(keys[i]) && files_.Exists(keys[i], m.blocks[i].stored_bytes)) continue;
    Status st = files_.Write(keys[i], a.stored_blocks[i]);
    if (!st.ok()) {
      // A write that failed after its rename (the directory sync) may have
      // left the file under its final name; no row names it, so it goes.
      if (!in_catalog) (void)files_.Remove(keys[i]);
      return undo(st);
    }
    (in_catalog ? rewritten : created).push_back(keys[i]);
  }
  // 1b. The shared tier, before the row: another node that sees the row must
  // find the blocks. They expire unless committed below, so a publish killed
  // here leaves nothing behind there either.
  if (options_.shared_blocks != nullptr) {
    for (size_t i = 0; i < keys.size(); ++i)
      if (Status st = options_.shared_blocks->Put(keys[i], a.stored_blocks[i]); !st.ok()) return undo(st);
  }
  // 2. One transaction makes the artifact visible, all of it at once.
  CatalogArtifact row;
  row.artifact_id = m.artifact_id;
  const Digest256 pd = artifact::ProfileDigest(m.profile);
  row.profile_digest_hex = ToHex(pd);
  row.publisher_hex = publisher;
  row.token_count = m.tokens.size();
  row.num_blocks = static_cast<uint32_t>(m.blocks.size());
  row.raw_bytes = m.TotalRawBytes();
  row.stored_bytes = stored_total;
  row.codec = CodecSummary(m);
  row.title = m.title;
  row.created_at = m.created_at;
  row.published_at_unix = NowUnix();
  row.manifest_json = manifest_text;
  row.blocks = keys;
  std::vector<CatalogBlock> brows(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    brows[i].key = keys[i];
    brows[i].codec = m.blocks[i].codec;
    brows[i].raw_bytes = m.blocks[i].raw_bytes;
    brows[i].stored_bytes = m.blocks[i].stored_bytes;
    brows[i].payload_sha256 = m.blocks[i].payload_sha256;
  }
  if (Status st = catalog_->InsertArtifact(row, brows); !st.ok()) {
    (void)undo(st);
    if (st.code() != Status::Code::kAlreadyExists) return st.WithContext("publish " + m.artifact_id);
    // Another node committed it between our sync and our insert: the same
    // artifact is a no-op, another manifest under its id is refused.
    SyncLocked(/*force=*/true);
    auto it = artifacts_.find(m.artifact_id);
    if (it != artifacts_.end() && it->second->manifest->signed_text == m.signed_text &&
        it->second->manifest->signature == m.signature)
      return Status::Ok();
    return st.WithContext("publish " + m.artifact_id);
  }
  NoteOwnWrite();
  if (options_.shared_blocks != nullptr) {
    // Permanent now that the row names them. A crash before this leaves
    // blocks that expire while the row stands: other nodes then miss (and say
    // so) until a republish puts them back; never wrong bytes.
    for (size_t i = 0; i < keys.size(); ++i) (void)options_.shared_blocks->Commit(keys[i], a.stored_blocks[i].size());
  }

  // 3. Visible to readers.
  auto e = std::make_shared<ArtifactEntry>();
  e->info = InfoFromRow(row);
  e->keys = keys;
  e->profile_digest = pd;
  e->last_hash = m.blocks.back().chain_hash;
  e->manifest = std::make_shared<const Manifest>(m);
  std::unique_lock lock(index_mu_);
  for (const auto& k : rewritten) damaged_.erase(k);
  IndexArtifact(std::move(e));
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Lookup

PrefixMatch DiskStore::Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                            const ArtifactFilter& eligible) {
  Sync(false);
  const int64_t now = NowUnix();
  std::shared_lock lock(index_mu_);
  auto prof = profiles_.find(profile_digest);
  if (prof == profiles_.end() || tokens.empty()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  // The index as the shared walk sees it (prefix_walk.h).
  struct Index {
    const DiskStore& s;
    int64_t now;
    std::optional<LiveArtifact> ArtifactEndingAt(const Digest256& h) const {
      auto it = s.by_last_.find(h);
      if (it == s.by_last_.end()) return std::nullopt;
      const ArtifactEntry& e = *s.artifacts_.at(it->second);
      if (e.expired(now)) return std::nullopt;
      for (const BlockKey& k : e.keys)
        if (s.damaged_.contains(k)) return std::nullopt;
      return LiveArtifact{e.info.artifact_id, e.info.token_count};
    }
    const std::vector<std::pair<std::string, uint32_t>>* PartialsAfter(const Digest256& h) const {
      auto it = s.partial_.find(h);
      return it == s.partial_.end() ? nullptr : &it->second;
    }
    bool BlockAvailable(const Digest256& h) const { return s.Available(h) != nullptr; }
    std::string OwnerOf(const Digest256& h) const {
      const Variant* v = s.Available(h);
      return v != nullptr && !v->owners.empty() ? v->owners.front() : std::string();
    }
  };
  PrefixMatch match = LongestPrefix(Index{*this, now}, profile_digest, prof->second.first, tokens, eligible);
  if (match.matched_tokens == 0) misses_.fetch_add(1, std::memory_order_relaxed);
  return match;
}

// ---------------------------------------------------------------------------
// Catalog reads

StatusOr<artifact::Manifest> DiskStore::GetManifest(const std::string& id) {
  auto e = FindArtifact(id);
  if (e == nullptr) return Status::NotFound("artifact " + id + " is not in the store");
  return *e->manifest;
}

StatusOr<ArtifactInfo> DiskStore::Stat(const std::string& id) {
  auto e = FindArtifact(id);
  if (e == nullptr) return Status::NotFound("artifact " + id + " is not in the store");
  return e->info;
}

std::vector<ArtifactInfo> DiskStore::List() {
  Sync(false);
  std::vector<ArtifactInfo> out;
  {
    std::shared_lock lock(index_mu_);
    out.reserve(artifacts_.size());
    for (const auto& [id, e] : artifacts_) out.push_back(e->info);
  }
  std::sort(out.begin(), out.end(), [](const ArtifactInfo& a, const ArtifactInfo& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at : a.artifact_id < b.artifact_id;
  });
  return out;
}

StoreMetrics DiskStore::Metrics() const {
  StoreMetrics m;
  m.hits_memory = hits_memory_.load();
  m.hits_disk = hits_disk_.load();
  m.misses = misses_.load();
  m.checksum_failures = checksum_failures_.load();
  m.bytes_loaded = bytes_loaded_.load();
  m.memory_bytes = memory_.bytes();
  m.evictions = memory_.evictions();
  m.catalog_refreshes = catalog_refreshes_.load();
  m.catalog_errors = catalog_errors_.load();
  m.hits_shared = hits_shared_.load();
  if (options_.shared_blocks != nullptr) {
    const SharedTierStats t = options_.shared_blocks->Stats();
    m.shared_misses = t.misses;
    m.shared_rejected = t.rejected;
    m.shared_errors = t.errors;
    m.shared_commands = t.commands;
    m.shared_retries = t.retries;
    m.shared_redirects = t.redirects;
    m.shared_command_micros = t.command_micros;
  }
  std::shared_lock lock(index_mu_);
  m.disk_bytes = disk_bytes_;
  m.artifacts = artifacts_.size();
  m.blocks = num_variants_;
  return m;
}

// ---------------------------------------------------------------------------
// Loads

Status DiskStore::ReportDamage(const BlockKey& key, const std::string& what, const Status& cause) {
  {
    std::unique_lock lock(index_mu_);
    // A file that vanished because its artifact was just removed is not damage.
    if (FindVariant(key) == nullptr && cause.code() == Status::Code::kNotFound)
      return Status::NotFound(what + ": removed from the store");
    damaged_.insert(key);
  }
  checksum_failures_.fetch_add(1, std::memory_order_relaxed);
  memory_.Erase(key.chain);
  return DataLoss(what, cause);
}

StatusOr<std::vector<uint8_t>> DiskStore::FillFromSharedTier(const BlockRef& ref, const std::string& what) {
  SharedBlockTier& tier = *options_.shared_blocks;
  auto got = tier.Get(ref.v.key, ref.v.stored_bytes);
  if (!got.ok()) return got.status().WithContext(what);
  if (!got->has_value()) return Status::NotFound(what + ": not in the shared tier " + tier.Describe());
  std::vector<uint8_t> bytes = std::move(**got);
  // Bytes from another machine: both checks, as at publish (store.h).
  Status st = artifact::VerifyStoredChecksum(ref.v.Info(), bytes);
  if (st.ok()) st = artifact::DecodeVerifiedBlock(ref.v.Info(), ref.v.dtype, bytes, /*verify_sha256=*/true).status();
  if (!st.ok()) {
    tier.CountRejected();
    (void)tier.Remove(ref.v.key, ref.v.stored_bytes);
    return Status::NotFound(what + ": the shared tier's copy failed its check and was deleted: " + st.message());
  }
  KVMART_RETURN_IF_ERROR(files_.Write(ref.v.key, bytes).WithContext(what));
  hits_shared_.fetch_add(1, std::memory_order_relaxed);
  return bytes;
}

Status DiskStore::ReadLocal(const BlockRef& ref, const std::string& what, std::vector<uint8_t>* stored,
                              std::span<uint8_t> dest) {
  auto read = [&] {
    Status st = dest.empty() ? files_.Read(ref.v.key, ref.v.stored_bytes, stored) : files_.ReadInto(ref.v.key, dest);
    if (st.ok()) st = artifact::VerifyStoredChecksum(ref.v.Info(), dest.empty() ? std::span<const uint8_t>(*stored)
                                                                                  : std::span<const uint8_t>(dest));
    return st;
  };
  Status st = read();
  if (st.ok() || st.code() == Status::Code::kIOError) return st.ok() ? st : st.WithContext(what);
  if (options_.shared_blocks != nullptr) {
    // Missing here (published on another node) or damaged: the shared copy,
    // checked, replaces the file and is the answer.
    auto filled = FillFromSharedTier(ref, what);
    if (filled.ok()) {
      if (dest.empty()) {
        *stored = std::move(filled).value();
      } else {
        if (filled->size() != dest.size()) return Status::Internal(what + ": shared copy of another size");
        std::memcpy(dest.data(), filled->data(), dest.size());
      }
      return Status::Ok();
    }
    const Status& why = filled.status();
    if (why.code() == Status::Code::kUnavailable || why.code() == Status::Code::kIOError) {
      return why;  // the tier is down: not the data's fault either
    }
    st = Status::Corruption(st.message() + "; " + why.message());
  }
  return ReportDamage(ref.v.key, what, st);
}

Status DiskStore::ReadStored(const BlockRef& ref, const std::string& what, std::vector<uint8_t>* stored) {
  return ReadLocal(ref, what, stored, {});
}

StatusOr<LoadedBlock> DiskStore::Fetch(const BlockRef& ref, const std::string& what, const LoadOptions& options) {
  const Destination& dest_fn = options.destination;
  LoadedBlock out;
  out.index = ref.v.index;
  out.token_begin = ref.v.token_begin;
  out.token_end = ref.v.token_end;
  std::span<uint8_t> dest;
  if (dest_fn) {
    dest = dest_fn(ref.v.index, ref.v.raw_bytes);
    if (dest.size() != ref.v.raw_bytes)
      return Status::InvalidArgument(what + ": destination of " + std::to_string(dest.size()) + " bytes for " +
                                     std::to_string(ref.v.raw_bytes));
  }
  if (auto p = memory_.Get(ref.v.key.chain)) {
    out.tier = Tier::kMemory;
    if (dest_fn) {
      std::memcpy(dest.data(), p->data(), p->size());
      out.bytes = dest;
    } else {
      out.payload = std::move(p);
      out.bytes = *out.payload;
    }
    hits_memory_.fetch_add(1, std::memory_order_relaxed);
  } else {
    // XXH3 of the stored bytes stands for the payload SHA-256 checked at
    // publish: decoding is deterministic (docs/DESIGN.md §4: SHA-256 at trust
    // boundaries, the fast checksum on every load from our own tiers).
    if (dest_fn && ref.v.codec == Codec::kRaw) {
      // Straight into place: the only copy is the kernel's.
      KVMART_RETURN_IF_ERROR(ReadLocal(ref, what, nullptr, dest));
    } else {
      BufferPool::Buffer stored = pool_->Take(ref.v.stored_bytes);
      KVMART_RETURN_IF_ERROR(ReadStored(ref, what, stored.get()));
      if (ref.v.codec == Codec::kRaw) {
        out.payload = pool_->Share(std::move(stored));
      } else {
        BufferPool::Buffer raw;
        std::span<uint8_t> target = dest;
        if (!dest_fn) {
          raw = pool_->Take(ref.v.raw_bytes);
          target = *raw;
        }
        Status st = artifact::DecodeBlock(ref.v.codec, ref.v.dtype, *stored, target);
        pool_->Give(std::move(stored));
        if (!st.ok()) return ReportDamage(ref.v.key, what, st);
        if (!dest_fn) out.payload = pool_->Share(std::move(raw));
      }
    }
    out.tier = Tier::kDisk;
    if (!dest_fn) {
      out.bytes = *out.payload;
      if (options.promote) memory_.Put(ref.v.key.chain, out.payload);
    } else {
      out.bytes = dest;
      if (options.promote && memory_.budget() >= ref.v.raw_bytes) {  // promote by a copy
        BufferPool::Buffer copy = pool_->Take(ref.v.raw_bytes);
        std::memcpy(copy->data(), dest.data(), dest.size());
        memory_.Put(ref.v.key.chain, pool_->Share(std::move(copy)));
      }
    }
    hits_disk_.fetch_add(1, std::memory_order_relaxed);
  }
  bytes_loaded_.fetch_add(out.bytes.size(), std::memory_order_relaxed);
  return out;
}

Status DiskStore::RunLoad(const std::vector<BlockRef>& refs, const LoadOptions& options, const std::string& what,
                            const BlockConsumer& consume) {
  const bool prefetch = options.prefetch;
  auto name = [&](size_t i) { return what + " block " + std::to_string(refs[i].v.index); };
  const size_t n = refs.size();
  const size_t workers = prefetch ? std::min<size_t>(threads_, n > 0 ? n - 1 : 0) : 0;
  if (workers == 0) {
    for (size_t i = 0; i < n; ++i) {
      KVMART_ASSIGN_OR_RETURN(LoadedBlock b, Fetch(refs[i], name(i), options));
      KVMART_RETURN_IF_ERROR(consume(b));
    }
    return Status::Ok();
  }
  // Workers fetch blocks in index order up to `window` ahead of the consumer,
  // which takes them in order on this thread: the consumer imports block i
  // while blocks i+1.. are read and decoded, and memory stays bounded.
  const size_t window = workers + 1;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<StatusOr<LoadedBlock>>> slots(n);
  size_t next = 0, consumed = 0;
  bool stop = false;
  auto work = [&] {
    for (;;) {
      size_t i;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stop || next >= n || next < consumed + window; });
        if (stop || next >= n) return;
        i = next++;
      }
      StatusOr<LoadedBlock> r = Fetch(refs[i], name(i), options);
      std::lock_guard lock(mu);
      slots[i] = std::move(r);
      cv.notify_all();
    }
  };
  Status result;
  {
    std::vector<std::jthread> pool;
    // Stops and joins the workers on every exit path (jthread joins on destruction).
    struct Stopper {
      std::mutex& mu;
      std::condition_variable& cv;
      bool& stop;
      ~Stopper() {
        std::lock_guard lock(mu);
        stop = true;
        cv.notify_all();
      }
    };
    for (size_t w = 0; w < workers; ++w) pool.emplace_back(work);
    Stopper stopper{mu, cv, stop};
    for (size_t i = 0; i < n; ++i) {
      std::optional<StatusOr<LoadedBlock>> got;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return slots[i].has_value(); });
        got = std::move(slots[i]);
        slots[i].reset();
        consumed = i + 1;
        cv.notify_all();
      }
      if (!got->ok()) {
        result = got->status();
        break;
      }
      result = consume(got->value());
      if (!result.ok()) break;
    }
    // stopper, then pool: the workers see stop and are joined.
  }
  return result;
}

Status DiskStore::Load(const std::string& id, const LoadOptions& options, const BlockConsumer& consume) {
  Sync(false);
  std::vector<BlockRef> refs;
  {
    std::shared_lock lock(index_mu_);
    auto it = artifacts_.find(id);
    if (it == artifacts_.end()) return Status::NotFound("artifact " + id + " is not in the store");
    const ArtifactEntry& e = *it->second;
    size_t n = e.keys.size();
    if (options.num_blocks != 0) n = std::min<size_t>(n, options.num_blocks);
    refs.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (damaged_.contains(e.keys[i]))
        return Status::DataLoss("data loss: artifact " + id + " block " + std::to_string(i) +
                                  ": failed verification earlier (republish to repair)");
      const Variant* v = FindVariant(e.keys[i]);
      if (v == nullptr) return Status::Internal("artifact " + id + ": block missing from the index");
      BlockRef r;
      r.v = *v;
      r.v.owners.clear();
      refs.push_back(std::move(r));
    }
  }
  return RunLoad(refs, options, "artifact " + id, consume);
}

Status DiskStore::LoadPrefix(const PrefixMatch& match, const BlockConsumer& consume) {
  std::vector<BlockRef> refs;
  {
    std::shared_lock lock(index_mu_);
    for (size_t i = 0; i < match.block_hashes.size(); ++i) {
      const Variant* v = Available(match.block_hashes[i]);
      if (v == nullptr || v->index != i)
        return Status::NotFound("prefix block " + std::to_string(i) + " is no longer in the store");
      BlockRef r;
      r.v = *v;
      r.v.owners.clear();
      refs.push_back(std::move(r));
    }
  }
  std::string what = "prefix of " + (match.source_artifact_id.empty() ? std::string("?") : match.source_artifact_id);
  return RunLoad(refs, LoadOptions{}, what, consume);
}

StatusOr<artifact::Artifact> DiskStore::Export(const std::string& id) {
  auto e = FindArtifact(id);
  if (e == nullptr) return Status::NotFound("artifact " + id + " is not in the store");
  artifact::Artifact out;
  out.manifest = *e->manifest;
  out.stored_blocks.resize(e->keys.size());
  for (size_t i = 0; i < e->keys.size(); ++i) {
    BlockRef r;
    {
      std::shared_lock lock(index_mu_);
      const Variant* v = FindVariant(e->keys[i]);
      if (v == nullptr) return Status::NotFound("artifact " + id + " was removed during export");
      r.v = *v;
      r.v.owners.clear();
    }
    KVMART_RETURN_IF_ERROR(ReadStored(r, "artifact " + id + " block " + std::to_string(i), &out.stored_blocks[i]));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writes: pin, TTL, quota, remove, GC

Status DiskStore::UpdateEntryLocked(const std::string& id, const std::function<void(ArtifactInfo*)>& change) {
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return Status::NotFound("artifact " + id + " is not in the store");
  auto copy = std::make_shared<ArtifactEntry>(*it->second);
  change(&copy->info);
  std::unique_lock lock(index_mu_);
  it->second = std::move(copy);
  return Status::Ok();
}

Status DiskStore::Pin(const std::string& id, bool pinned) {
  std::lock_guard wlock(write_mu_);
  SyncLocked(/*force=*/true);
  if (!artifacts_.contains(id)) return Status::NotFound("artifact " + id + " is not in the store");
  KVMART_RETURN_IF_ERROR(catalog_->SetPinned(id, pinned));
  NoteOwnWrite();
  return UpdateEntryLocked(id, [&](ArtifactInfo* i) { i->pinned = pinned; });
}

Status DiskStore::SetTtl(const std::string& id, std::optional<std::chrono::seconds> ttl) {
  std::optional<int64_t> at;
  if (ttl) at = NowUnix() + ttl->count();
  std::lock_guard wlock(write_mu_);
  SyncLocked(/*force=*/true);
  if (!artifacts_.contains(id)) return Status::NotFound("artifact " + id + " is not in the store");
  KVMART_RETURN_IF_ERROR(catalog_->SetExpiry(id, at));
  NoteOwnWrite();
  return UpdateEntryLocked(id, [&](ArtifactInfo* i) { i->expires_at_unix = at; });
}

Status DiskStore::SetPublisherQuota(const std::string& publisher_hex, uint64_t bytes) {
  std::string dummy;
  if (publisher_hex.size() != 64 || !FromHex(publisher_hex, &dummy))
    return Status::InvalidArgument("publisher must be 64 hex digits");
  std::lock_guard wlock(write_mu_);
  SyncLocked(/*force=*/true);
  KVMART_RETURN_IF_ERROR(catalog_->SetQuota(publisher_hex, bytes));
  NoteOwnWrite();
  std::unique_lock lock(index_mu_);
  quotas_[publisher_hex] = bytes;
  return Status::Ok();
}

Status DiskStore::RemoveLocked(const std::string& id, GcReport* report) {
  auto it = artifacts_.find(id);
  if (it == artifacts_.end()) return Status::NotFound("artifact " + id + " is not in the store");
  std::shared_ptr<const ArtifactEntry> e = it->second;
  // Commit first, unlink after: a crash in between leaves only unreferenced
  // files, which the next Open or Gc removes.
  KVMART_ASSIGN_OR_RETURN(std::vector<BlockKey> freed, catalog_->RemoveArtifact(id));
  NoteOwnWrite();
  {
    std::unique_lock lock(index_mu_);
    UnindexArtifact(*e);
  }
  for (const BlockKey& k : freed) {
    (void)files_.Remove(k);  // a failure leaves an orphan for Gc
    if (options_.shared_blocks != nullptr) {
      // Other nodes' copies on their disks go at their next Gc or Open.
      for (const auto& b : e->manifest->blocks)
        if (b.chain_hash == k.chain && b.xxh3_128 == k.xxh3) {
          (void)options_.shared_blocks->Remove(k, b.stored_bytes);
          break;
        }
    }
    if (report != nullptr) {
      ++report->blocks_removed;
      for (const auto& b : e->manifest->blocks)
        if (b.chain_hash == k.chain && b.xxh3_128 == k.xxh3) report->bytes_freed += b.stored_bytes;
    }
  }
  return Status::Ok();
}

Status DiskStore::Remove(const std::string& id) {
  std::lock_guard wlock(write_mu_);
  SyncLocked(/*force=*/true);
  return RemoveLocked(id, nullptr);
}

void DiskStore::CleanFilesLocked(GcReport* report) {
  (void)files_.Scan([&](const std::string& path, const std::optional<BlockKey>& key, uint64_t size) {
    if (key && FindVariant(*key) != nullptr) return;
    if (!files_.RemovePath(path).ok()) return;
    if (key) {
      ++report->blocks_removed;
      report->bytes_freed += size;
    } else {
      ++report->leftovers_removed;
    }
  });
  files_.PruneEmptyDirs();
}

StatusOr<GcReport> DiskStore::Gc() {
  GcReport report;
  const int64_t now = NowUnix();
  std::lock_guard wlock(write_mu_);
  SyncLocked(/*force=*/true);
  std::vector<std::string> expired;
  for (const auto& [id, e] : artifacts_)
    if (e->expired(now)) expired.push_back(id);
  for (const auto& id : expired) {
    KVMART_RETURN_IF_ERROR(RemoveLocked(id, &report));
    ++report.expired_artifacts;
  }
  CleanFilesLocked(&report);
  return report;
}

StatusOr<VerifyReport> DiskStore::Verify(const std::string& id) {
  Sync(/*force=*/true);
  std::vector<BlockRef> refs;
  {
    std::shared_lock lock(index_mu_);
    if (id.empty()) {
      for (const auto& [chain, variants] : blocks_)
        for (const Variant& v : variants) refs.push_back({v});
    } else {
      auto it = artifacts_.find(id);
      if (it == artifacts_.end()) return Status::NotFound("artifact " + id + " is not in the store");
      for (const BlockKey& k : it->second->keys)
        if (const Variant* v = FindVariant(k)) refs.push_back({*v});
    }
  }
  VerifyReport report;
  std::mutex mu;
  (void)artifact::ParallelFor(refs.size(), threads_, [&](size_t i) {
    BlockRef& r = refs[i];
    const std::string owner = r.v.owners.empty() ? std::string("?") : r.v.owners.front();
    const std::string what = "artifact " + owner + " block " + std::to_string(r.v.index) + " (" +
                             files_.PathFor(r.v.key) + ")";
    r.v.owners.clear();
    std::vector<uint8_t> stored;
    Status st = files_.Read(r.v.key, r.v.stored_bytes, &stored);
    if (st.code() == Status::Code::kNotFound && options_.shared_blocks != nullptr) {
      // Published on another node: this node's copy comes from the shared tier.
      auto filled = FillFromSharedTier(r, what);
      st = filled.status();
      if (filled.ok()) stored = std::move(filled).value();
    }
    if (st.ok()) st = artifact::DecodeVerifiedBlock(r.v.Info(), r.v.dtype, stored, /*verify_sha256=*/true).status();
    if (st.ok()) {
      // A block repaired by a republish outside Put's view is good again.
      std::unique_lock lock(index_mu_);
      damaged_.erase(r.v.key);
    } else {
      st = ReportDamage(r.v.key, what, st);
    }
    std::lock_guard lock(mu);
    ++report.blocks_checked;
    if (!st.ok()) {
      ++report.blocks_bad;
      report.problems.push_back(st.message());
    }
    return Status::Ok();
  });
  std::sort(report.problems.begin(), report.problems.end());
  return report;
}

}  // namespace

StatusOr<std::unique_ptr<Store>> OpenDiskStore(const StoreOptions& options) {
  auto s = std::make_unique<DiskStore>(options);
  KVMART_RETURN_IF_ERROR(s->Init().WithContext("open store " + options.data_dir));
  return std::unique_ptr<Store>(std::move(s));
}

}  // namespace kvmart::store
