#include "artifact/integrity.h"

#include <xxhash.h>

#include <cstring>

namespace kvmart::artifact {

Xxh3Digest Xxh3_128(std::span<const uint8_t> bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  Xxh3Digest out;
  std::memcpy(out.data(), c.digest, out.size());
  return out;
}

Status VerifyStoredChecksum(const BlockInfo& block, std::span<const uint8_t> stored) {
  if (stored.size() != block.stored_bytes)
    return Status::Corruption("block " + std::to_string(block.index) + ": stored size " +
                              std::to_string(stored.size()) + ", manifest says " + std::to_string(block.stored_bytes));
  if (Xxh3_128(stored) != block.xxh3_128)
    return Status::Corruption("block " + std::to_string(block.index) + ": XXH3-128 checksum mismatch");
  return Status::Ok();
}

Status VerifyPayloadSha256(const BlockInfo& block, std::span<const uint8_t> raw) {
  if (raw.size() != block.raw_bytes)
    return Status::Corruption("block " + std::to_string(block.index) + ": payload size mismatch");
  if (Sha256Of(raw.data(), raw.size()) != block.payload_sha256)
    return Status::Corruption("block " + std::to_string(block.index) + ": payload SHA-256 mismatch");
  return Status::Ok();
}

StatusOr<std::vector<uint8_t>> DecodeVerifiedBlock(const BlockInfo& block, KvDtype dtype,
                                                   std::span<const uint8_t> stored, bool verify_sha256) {
  KVMART_RETURN_IF_ERROR(VerifyStoredChecksum(block, stored));
  if (block.raw_bytes > kMaxBlockRawBytes) return Status::Corruption("block raw size above the reader's limit");
  std::vector<uint8_t> raw(block.raw_bytes);
  KVMART_RETURN_IF_ERROR(DecodeBlock(block.codec, dtype, stored, raw)
                             .WithContext("block " + std::to_string(block.index)));
  if (verify_sha256) KVMART_RETURN_IF_ERROR(VerifyPayloadSha256(block, raw));
  return raw;
}

}  // namespace kvmart::artifact
