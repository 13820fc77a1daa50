// The `.kva` single-file container and the writer/reader the engine wires to.
//
// Layout (docs/ARTIFACT.md §3), all integers little-endian:
//   header   40 B: magic "\x89KVA\r\n\x1a\n", u16 major, u16 minor, u32 flags=0,
//                  u64 manifest_len, u64 blocks_len, u64 XXH3-64 of bytes [0,32)
//   manifest manifest_len B of canonical JSON, then its XXH3-128 (16 B)
//   blocks   blocks_len B: stored bytes of block 0, 1, ... (sizes from the manifest)
//   trailer  16 B: "KVAEND\0\0", u64 total file length
// The reader checks every length against the real input size before it allocates
// anything, and never trusts a block before its checksum.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "artifact/codec.h"
#include "artifact/manifest.h"
#include "artifact/profile.h"
#include "artifact/signing.h"
#include "base/status.h"

namespace kvmart::artifact {

// A manifest and its encoded blocks: what the store keeps (as separate pieces)
// and what a `.kva` file holds (as one).
struct Artifact {
  Manifest manifest;
  std::vector<std::vector<uint8_t>> stored_blocks;
};

struct ArtifactMetadata {
  std::optional<std::string> title;
  std::optional<Digest256> source_sha256;  // SHA-256 of the source document
  std::string created_at;                  // empty → now (UTC)
};

// Builds a signed artifact block by block, so the engine can export one block of
// KV at a time and memory holds only the encoded blocks.
class ArtifactWriter {
 public:
  // Validates profile and tokens (non-empty); fixes the block layout.
  static StatusOr<ArtifactWriter> Create(Profile profile, std::vector<uint32_t> tokens, Codec codec,
                                         EncodeOptions encode = {});

  size_t num_blocks() const { return num_blocks_; }
  size_t blocks_added() const { return stored_.size(); }
  // Token range [begin, end) and exact payload size of block i.
  uint64_t BlockTokenBegin(size_t i) const;
  uint64_t BlockTokenEnd(size_t i) const;
  uint64_t BlockRawBytes(size_t i) const;

  // Adds the next block's payload: per layer, K then V, each
  // [tokens][kv_heads][head_dim] of 16-bit LE values. Size must be BlockRawBytes.
  Status AddBlock(std::span<const uint8_t> payload);
  // Adds the next payloads.size() blocks, encoding in parallel.
  Status AddBlocks(std::span<const std::span<const uint8_t>> payloads, unsigned threads = 0);

  // All blocks added: fills and signs the manifest. The probe is the SHA-256 of
  // the next-token logits after the last token (as the engine defines them).
  StatusOr<Artifact> Finish(const Digest256& probe_logits_sha256, const ArtifactMetadata& meta,
                            const SigningKey& key) &&;

 private:
  ArtifactWriter() = default;
  StatusOr<BlockInfo> Encode(size_t i, std::span<const uint8_t> payload, std::vector<uint8_t>* stored) const;
  Profile profile_;
  std::vector<uint32_t> tokens_;
  Codec codec_ = Codec::kRaw;
  EncodeOptions encode_;
  size_t num_blocks_ = 0;
  std::vector<Digest256> chain_;
  std::vector<BlockInfo> infos_;
  std::vector<std::vector<uint8_t>> stored_;
};

// Container bytes of a finished artifact (requires a signed manifest).
StatusOr<std::vector<uint8_t>> SerializeContainer(const Artifact& a);
// Writes atomically (temporary file in the same directory, fsync, rename).
Status WriteContainerFile(const std::string& path, const Artifact& a);

struct ReaderOptions {
  // When false, Open succeeds on a bad or missing signature and reports it in
  // signature_status() (for `kvmart inspect`); everything else is still checked.
  bool require_signature = true;
  // Blocks larger than this are refused at Open (fuzzing uses a small value).
  uint64_t max_block_raw_bytes = kMaxBlockRawBytes;
  // When set, Open fails unless the artifact's profile equals it.
  std::optional<Profile> expected_profile;
};

class ArtifactReader {
 public:
  // Reads the whole file (size from fstat, so the buffer is the real size).
  static StatusOr<ArtifactReader> OpenFile(const std::string& path, const ReaderOptions& opts = {});
  // Copies the bytes.
  static StatusOr<ArtifactReader> OpenBytes(std::span<const uint8_t> bytes, const ReaderOptions& opts = {});
  static StatusOr<ArtifactReader> OpenOwned(std::vector<uint8_t> bytes, const ReaderOptions& opts = {});

  const Manifest& manifest() const { return manifest_; }
  const std::string& manifest_text() const { return manifest_text_; }
  // Ok, or Unauthenticated with the reason.
  const Status& signature_status() const { return signature_status_; }
  FormatVersion container_version() const { return container_version_; }
  uint64_t file_bytes() const { return data_.size(); }

  // Stored (encoded) bytes of block i, unverified.
  std::span<const uint8_t> StoredBlock(size_t i) const;
  // Verified payload of block i: XXH3-128, decode, payload SHA-256.
  StatusOr<std::vector<uint8_t>> ReadBlock(size_t i) const;
  // All payloads, decoded in parallel over blocks.
  StatusOr<std::vector<std::vector<uint8_t>>> ReadAllBlocks(unsigned threads = 0) const;
  // The artifact as separate pieces (for the store).
  Artifact ToArtifact() const;

  // FailedPrecondition naming the first differing field.
  Status CheckProfile(const Profile& expected) const { return CheckProfileMatches(expected, manifest_.profile); }

 private:
  ArtifactReader() = default;
  Status Parse(const ReaderOptions& opts);
  std::vector<uint8_t> data_;
  std::string manifest_text_;
  Manifest manifest_;
  FormatVersion container_version_;
  Status signature_status_;
  std::vector<uint64_t> block_offsets_;
};

}  // namespace kvmart::artifact
