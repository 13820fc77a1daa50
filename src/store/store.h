// The artifact store (docs/DESIGN.md §2, §6): where published KV lives, provider-side,
// close to the compute.
//
// This header is the contract between the store and its users (the server, the
// CLI, the economics benchmark). The embedded default needs no service:
//   <data_dir>/catalog.sqlite     manifests, block rows, refcounts, pins, TTLs,
//                                 publisher quotas (SQLite, WAL, versioned schema)
//   <data_dir>/blocks/ab/cd/<hex> one file per stored block, addressed by chain
//                                 hash (written to a temporary name, fsync'd,
//                                 renamed, directory fsync'd)
// and a memory tier above the disk tier: an LRU over a byte budget holding
// decoded (raw bf16) payloads ready for import. A disk hit promotes.
//
// Blocks are addressed by their chain hash, which depends on the profile and the
// whole token prefix up to the block's end, so two artifacts that share a prefix
// share its full blocks: stored once, refcounted.
//
// Exactness: the store never changes a byte. Put (a trust boundary) checks the
// signature and every block's XXH3-128, decode and payload SHA-256 against the
// signed manifest; every load from the disk tier checks XXH3-128 of the stored
// bytes again before decoding (docs/DESIGN.md §4; decoding is deterministic, so that
// stands for the SHA-256 checked at Put). A block that fails is reported as
// Status::DataLoss (code Corruption, subcode DataLoss; IsDataLoss() is true)
// — counted in StoreMetrics, dropped from the tiers, and a
// miss from then on (Lookup stops before it) until a Put of an artifact that
// contains it rewrites the file.
//
// Thread-safety: every method may be called from any thread. Readers of a hit
// never wait on each other (shared locks / per-shard locks only); a publish that
// shares blocks with an artifact being read is safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "artifact/container.h"
#include "artifact/manifest.h"
#include "artifact/profile.h"
#include "base/sha256.h"
#include "base/status.h"

namespace kvmart {
class FileSystem;  // base/file_system.h
}  // namespace kvmart

namespace kvmart::store {

class SharedBlockTier;  // store/shared_tier.h

struct StoreOptions {
  std::string data_dir;                       // created if absent
  // Where the catalog lives: empty = <data_dir>/catalog.sqlite; a
  // postgresql:// URL = a catalog shared by every node that names it (the
  // market's database). A shared catalog is re-read when another node changed
  // it, checked at most once per catalog_refresh.
  std::string catalog;
  std::chrono::milliseconds catalog_refresh{200};
  // A block tier shared by the nodes (store/redis_tier.h), below the memory
  // and disk tiers; null = none. Publish writes every block there before the
  // catalog row; a load whose block is not on this node's disk reads it from
  // there, checks it (XXH3-128 and SHA-256) and keeps it on disk.
  std::shared_ptr<SharedBlockTier> shared_blocks;
  uint64_t memory_budget_bytes = 4ull << 30;  // decoded payloads kept in memory
  unsigned decode_threads = 0;                // 0 = hardware concurrency
  // fsync files and directories on publish. Only tests of non-crash behaviour
  // may turn it off; crash safety depends on it.
  bool durable = true;
  // Disk reads reuse up to this many bytes of freed read/payload buffers (a
  // fresh 38 MB buffer costs page faults comparable to the read itself).
  uint64_t read_buffer_pool_bytes = 512ull << 20;
  // Every file the disk store makes, reads, syncs, renames or removes under
  // data_dir goes through this (the LOCK file, the block files and their
  // directories; the SQLite catalog has SQLite's own I/O). null = POSIX. Tests
  // put one here that loses unsynced writes or fails a chosen write or fsync
  // (tests/testing/fault_file_system.h).
  std::shared_ptr<FileSystem> file_system;
  // A SQLite catalog's I/O: the name of a registered sqlite3_vfs; empty =
  // SQLite's default (tests use tests/testing/fault_vfs.h).
  std::string catalog_sqlite_vfs;
};

enum class Tier { kMemory, kDisk };
const char* TierName(Tier t);

// One catalog row.
struct ArtifactInfo {
  std::string artifact_id;
  std::string publisher_hex;        // Ed25519 public key, lower-case hex
  std::string profile_digest_hex;   // SHA-256 of the canonical profile JSON
  uint64_t token_count = 0;
  uint32_t num_blocks = 0;
  uint64_t raw_bytes = 0;           // decoded KV bytes
  uint64_t stored_bytes = 0;        // encoded bytes of this artifact's blocks
  std::string codec;                // codec of the blocks ("raw", "lossless", ...)
  std::optional<std::string> title;
  std::string created_at;           // RFC 3339 UTC
  bool pinned = false;
  std::optional<int64_t> expires_at_unix;  // TTL; absent = never
};

// Result of Lookup: the longest published prefix of the request's tokens.
struct PrefixMatch {
  // Number of leading request tokens whose KV the store can supply
  // (a multiple of the block size, or the full length of an exactly matching
  // artifact whose last block is partial). 0 = nothing reusable.
  uint64_t matched_tokens = 0;
  // Chain hashes of the matched blocks, in order.
  std::vector<Digest256> block_hashes;
  // A published artifact whose tokens are an exact prefix of the request
  // (the longest such), or empty. The market sells loads of this artifact.
  std::string artifact_id;
  uint64_t artifact_tokens = 0;
  // An artifact that contains all the matched blocks (for their manifest
  // entries): artifact_id when it covers them, else some artifact whose chain
  // passes through the last matched block.
  std::string source_artifact_id;
};

// A verified, decoded block payload (layout of docs/DESIGN.md §4: per layer K then V,
// [tokens][kv_heads][head_dim] bf16 LE). Shared: the memory tier may hold it too.
struct LoadedBlock {
  uint32_t index = 0;
  uint64_t token_begin = 0;
  uint64_t token_end = 0;
  Tier tier = Tier::kDisk;  // where it came from
  // The payload; null when LoadOptions::destination placed it (see `placed`).
  std::shared_ptr<const std::vector<uint8_t>> payload;
  // The payload bytes wherever they are: *payload, or the destination span.
  std::span<const uint8_t> bytes;
};

struct LoadOptions {
  // Load only blocks [0, num_blocks); 0 = all.
  uint32_t num_blocks = 0;
  // Decode block i+1 while the consumer imports block i.
  bool prefetch = true;
  // Optional: where block i's payload must end up (a span of exactly its raw
  // size, e.g. its place in an engine-sized KV buffer). The store then reads,
  // checks and decodes straight into it on its prefetch threads — one copy
  // fewer than payload + consumer memcpy — and calls the consumer with
  // payload == null once the bytes are in place. On an error the span's
  // contents are unspecified. Disk hits still promote (by a copy) when the
  // memory tier has room.
  std::function<std::span<uint8_t>(uint32_t index, uint64_t raw_bytes)> destination;
  // Keep blocks read from disk in the memory tier. A caller that keeps the
  // decoded KV itself (the server's resident engine pages) says false, so a
  // hot artifact is held once in memory, not twice. Memory-tier hits are used
  // either way.
  bool promote = true;
};

struct StoreMetrics {
  uint64_t hits_memory = 0;        // blocks served from the memory tier
  uint64_t hits_disk = 0;          // blocks served from the disk tier (promoted)
  uint64_t misses = 0;             // lookups that matched nothing
  uint64_t checksum_failures = 0;  // blocks that failed XXH3 / SHA-256 / decode
  uint64_t bytes_loaded = 0;       // decoded bytes handed to consumers
  uint64_t memory_bytes = 0;       // current memory-tier size
  uint64_t disk_bytes = 0;         // current stored bytes on disk
  uint64_t evictions = 0;          // memory-tier evictions
  uint64_t artifacts = 0;
  uint64_t blocks = 0;
  // Many nodes (zero without a shared catalog / block tier).
  uint64_t catalog_refreshes = 0;  // index re-read after another node's change
  uint64_t catalog_errors = 0;     // generation checks or re-reads that failed
  uint64_t hits_shared = 0;        // blocks fetched from the shared tier (then kept on disk)
  uint64_t shared_misses = 0;      // blocks the shared tier did not hold
  uint64_t shared_rejected = 0;    // blocks from the shared tier that failed a check
  uint64_t shared_errors = 0;      // shared-tier operations that failed
  uint64_t shared_commands = 0;    // commands sent to the shared tier
  uint64_t shared_retries = 0;     // of them retried (failover, lost connection)
  uint64_t shared_redirects = 0;   // cluster redirects followed
  uint64_t shared_command_micros = 0;
};

struct GcReport {
  uint64_t expired_artifacts = 0;  // TTL passed, not pinned: removed
  uint64_t blocks_removed = 0;     // unreferenced block files deleted
  uint64_t bytes_freed = 0;
  uint64_t leftovers_removed = 0;  // temporary files of interrupted publishes
};

struct VerifyReport {
  uint64_t blocks_checked = 0;
  uint64_t blocks_bad = 0;
  std::vector<std::string> problems;  // one line per bad block / missing file
};

class Store {
 public:
  // Opens (creating if needed) the store under options.data_dir, migrates the
  // schema, and cleans leftovers of interrupted publishes (temporary files,
  // block files no catalog row references).
  static StatusOr<std::unique_ptr<Store>> Open(const StoreOptions& options);
  virtual ~Store() = default;

  // Publishes a signed artifact (signature and manifest verified first). Blocks
  // already present are shared. Atomic: after a crash at any point, either the
  // whole artifact is visible or none of it. Publishing the same artifact again
  // is a no-op returning Ok. ResourceExhausted when the publisher's quota or the
  // disk is full (nothing half-written becomes visible).
  virtual Status Put(const artifact::Artifact& artifact) = 0;
  // Reads a .kva file and Puts it.
  virtual Status PutFile(const std::string& kva_path) = 0;

  // Longest published prefix of `tokens` under `profile_digest`, in O(blocks)
  // hash probes. Never touches block bytes. `eligible` (empty: every artifact)
  // says which artifacts the match may name — the server passes the ones the
  // caller may see, so another tenant's private document is never offered. It
  // runs under the store's index lock: it must be cheap and must not call the
  // store.
  using ArtifactFilter = std::function<bool(std::string_view artifact_id)>;
  virtual PrefixMatch Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                             const ArtifactFilter& eligible) = 0;
  PrefixMatch Lookup(const Digest256& profile_digest, std::span<const uint32_t> tokens) {
    return Lookup(profile_digest, tokens, ArtifactFilter());
  }

  virtual StatusOr<artifact::Manifest> GetManifest(const std::string& artifact_id) = 0;
  virtual StatusOr<ArtifactInfo> Stat(const std::string& artifact_id) = 0;
  virtual std::vector<ArtifactInfo> List() = 0;

  // Streams verified, decoded blocks of an artifact in order to `consume`
  // (called on the caller's thread), prefetching the next block while the
  // consumer works. Stops at the first error (consumer's or the store's). A
  // damaged block yields DataLoss naming the artifact and block, is counted,
  // and is removed from the tiers.
  using BlockConsumer = std::function<Status(const LoadedBlock&)>;
  virtual Status Load(const std::string& artifact_id, const LoadOptions& options,
                      const BlockConsumer& consume) = 0;
  // The same for the blocks of a PrefixMatch (blocks shared by several artifacts).
  virtual Status LoadPrefix(const PrefixMatch& match, const BlockConsumer& consume) = 0;

  // The whole artifact as a .kva-ready Artifact (stored bytes, verified).
  virtual StatusOr<artifact::Artifact> Export(const std::string& artifact_id) = 0;

  virtual Status Pin(const std::string& artifact_id, bool pinned) = 0;
  // ttl = nullopt clears the TTL.
  virtual Status SetTtl(const std::string& artifact_id, std::optional<std::chrono::seconds> ttl) = 0;
  // Removes the catalog row; blocks go when no artifact references them.
  virtual Status Remove(const std::string& artifact_id) = 0;
  // Stored-byte quota per publisher (hex public key); 0 = unlimited.
  virtual Status SetPublisherQuota(const std::string& publisher_hex, uint64_t bytes) = 0;

  // Removes expired unpinned artifacts, unreferenced block files and leftovers.
  virtual StatusOr<GcReport> Gc() = 0;
  // Re-reads every block (or one artifact's) from disk and checks it.
  virtual StatusOr<VerifyReport> Verify(const std::string& artifact_id = "") = 0;

  virtual StoreMetrics Metrics() const = 0;
  // For /readyz: ok when the store's back ends answer (a shared catalog, a
  // shared block tier); the message names the first that does not.
  virtual Status CheckHealth() = 0;
  // "disk (catalog …, shared blocks …)" for /readyz and messages.
  virtual std::string Backend() const = 0;
  // Drops the memory tier (benchmarks, tests).
  virtual void DropMemoryTier() = 0;
};

}  // namespace kvmart::store
