#include "artifact/container.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "artifact/chain_hash.h"
#include "artifact/integrity.h"
#include "artifact/parallel.h"

namespace kvmart::artifact {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 'K', 'V', 'A', '\r', '\n', 0x1a, '\n'};
constexpr uint8_t kTrailerMagic[8] = {'K', 'V', 'A', 'E', 'N', 'D', 0, 0};
constexpr size_t kHeaderBytes = 40;
constexpr size_t kManifestSumBytes = 16;
constexpr size_t kTrailerBytes = 16;
constexpr size_t kFixedBytes = kHeaderBytes + kManifestSumBytes + kTrailerBytes;

void PutLE(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Status Bad(const std::string& what) { return Status::Corruption("kva container: " + what); }

}  // namespace

// ------------------------------------------------------------------ writer ---

StatusOr<ArtifactWriter> ArtifactWriter::Create(Profile profile, std::vector<uint32_t> tokens, Codec codec,
                                                EncodeOptions encode) {
  KVMART_RETURN_IF_ERROR(profile.Validate());
  if (tokens.empty()) return Status::InvalidArgument("artifact needs at least one token");
  if (profile.shape.BytesPerToken() * profile.block_size > kMaxBlockRawBytes)
    return Status::InvalidArgument("block of " + std::to_string(profile.block_size) + " tokens exceeds " +
                                   std::to_string(kMaxBlockRawBytes) + " bytes; use a smaller block size");
  ArtifactWriter w;
  w.num_blocks_ = (tokens.size() + profile.block_size - 1) / profile.block_size;
  w.chain_ = ChainHashes(ProfileDigest(profile), tokens, profile.block_size);
  w.profile_ = std::move(profile);
  w.tokens_ = std::move(tokens);
  w.codec_ = codec;
  w.encode_ = encode;
  return w;
}

uint64_t ArtifactWriter::BlockTokenBegin(size_t i) const { return uint64_t{i} * profile_.block_size; }
uint64_t ArtifactWriter::BlockTokenEnd(size_t i) const {
  return std::min<uint64_t>(BlockTokenBegin(i) + profile_.block_size, tokens_.size());
}
uint64_t ArtifactWriter::BlockRawBytes(size_t i) const {
  return (BlockTokenEnd(i) - BlockTokenBegin(i)) * profile_.shape.BytesPerToken();
}

StatusOr<BlockInfo> ArtifactWriter::Encode(size_t i, std::span<const uint8_t> payload,
                                           std::vector<uint8_t>* stored) const {
  if (i >= num_blocks_) return Status::FailedPrecondition("all blocks already added");
  if (payload.size() != BlockRawBytes(i))
    return Status::InvalidArgument("block " + std::to_string(i) + ": payload is " + std::to_string(payload.size()) +
                                   " bytes, expected " + std::to_string(BlockRawBytes(i)));
  KVMART_ASSIGN_OR_RETURN(*stored, EncodeBlock(codec_, profile_.shape.dtype, payload, encode_));
  BlockInfo b;
  b.index = static_cast<uint32_t>(i);
  b.token_begin = BlockTokenBegin(i);
  b.token_end = BlockTokenEnd(i);
  b.chain_hash = chain_[i];
  b.codec = codec_;
  b.raw_bytes = payload.size();
  b.stored_bytes = stored->size();
  b.payload_sha256 = Sha256Of(payload.data(), payload.size());
  b.xxh3_128 = Xxh3_128(*stored);
  return b;
}

Status ArtifactWriter::AddBlock(std::span<const uint8_t> payload) {
  std::vector<uint8_t> stored;
  KVMART_ASSIGN_OR_RETURN(BlockInfo b, Encode(stored_.size(), payload, &stored));
  infos_.push_back(b);
  stored_.push_back(std::move(stored));
  return Status::Ok();
}

Status ArtifactWriter::AddBlocks(std::span<const std::span<const uint8_t>> payloads, unsigned threads) {
  const size_t base = stored_.size();
  if (base + payloads.size() > num_blocks_) return Status::FailedPrecondition("more blocks than the tokens need");
  std::vector<BlockInfo> infos(payloads.size());
  std::vector<std::vector<uint8_t>> stored(payloads.size());
  KVMART_RETURN_IF_ERROR(ParallelFor(payloads.size(), threads, [&](size_t k) -> Status {
    KVMART_ASSIGN_OR_RETURN(infos[k], Encode(base + k, payloads[k], &stored[k]));
    return Status::Ok();
  }));
  for (size_t k = 0; k < payloads.size(); ++k) {
    infos_.push_back(infos[k]);
    stored_.push_back(std::move(stored[k]));
  }
  return Status::Ok();
}

StatusOr<Artifact> ArtifactWriter::Finish(const Digest256& probe, const ArtifactMetadata& meta,
                                          const SigningKey& key) && {
  if (stored_.size() != num_blocks_)
    return Status::FailedPrecondition("artifact has " + std::to_string(stored_.size()) + " of " +
                                      std::to_string(num_blocks_) + " blocks");
  Artifact a;
  Manifest& m = a.manifest;
  m.version = kCurrentFormat;
  m.artifact_id = ArtifactIdFromChain(chain_.back());
  m.profile = std::move(profile_);
  m.tokens = std::move(tokens_);
  m.blocks = std::move(infos_);
  m.probe_logits_sha256 = probe;
  m.created_at = meta.created_at.empty() ? NowRfc3339() : meta.created_at;
  m.title = meta.title;
  m.source_sha256 = meta.source_sha256;
  KVMART_RETURN_IF_ERROR(ValidateManifest(m).WithContext("building artifact"));
  KVMART_RETURN_IF_ERROR(SignManifest(&m, key));
  a.stored_blocks = std::move(stored_);
  return a;
}

StatusOr<std::vector<uint8_t>> SerializeContainer(const Artifact& a) {
  KVMART_ASSIGN_OR_RETURN(std::string text, SerializeManifest(a.manifest, /*with_signature=*/true));
  if (a.stored_blocks.size() != a.manifest.blocks.size())
    return Status::InvalidArgument("artifact: block count differs from the manifest");
  uint64_t blocks_len = 0;
  for (size_t i = 0; i < a.stored_blocks.size(); ++i) {
    if (a.stored_blocks[i].size() != a.manifest.blocks[i].stored_bytes)
      return Status::InvalidArgument("artifact: block " + std::to_string(i) + " size differs from the manifest");
    blocks_len += a.stored_blocks[i].size();
  }
  std::vector<uint8_t> out(kFixedBytes + text.size() + blocks_len);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 8);
  PutLE(p + 8, a.manifest.version.major, 2);
  PutLE(p + 10, a.manifest.version.minor, 2);
  PutLE(p + 12, 0, 4);
  PutLE(p + 16, text.size(), 8);
  PutLE(p + 24, blocks_len, 8);
  PutLE(p + 32, XXH3_64bits(p, 32), 8);
  p += kHeaderBytes;
  std::memcpy(p, text.data(), text.size());
  auto sum = Xxh3_128({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  std::memcpy(p + text.size(), sum.data(), sum.size());
  p += text.size() + kManifestSumBytes;
  for (const auto& b : a.stored_blocks) {
    if (!b.empty()) std::memcpy(p, b.data(), b.size());
    p += b.size();
  }
  std::memcpy(p, kTrailerMagic, 8);
  PutLE(p + 8, out.size(), 8);
  return out;
}

Status WriteContainerFile(const std::string& path, const Artifact& a) {
  KVMART_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, SerializeContainer(a));
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(tmp + ": " + std::strerror(errno));
  size_t off = 0;
  Status st;
  while (off < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      st = Status::IOError(tmp + ": write: " + std::strerror(errno));
      break;
    }
    off += static_cast<size_t>(w);
  }
  if (st.ok() && ::fsync(fd) != 0) st = Status::IOError(tmp + ": fsync: " + std::strerror(errno));
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Status::IOError(path + ": rename: " + std::strerror(errno));
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

// ------------------------------------------------------------------ reader ---

StatusOr<ArtifactReader> ArtifactReader::OpenFile(const std::string& path, const ReaderOptions& opts) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IOError(path + ": not a regular file");
  }
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t r = ::read(fd, data.data() + off, data.size() - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    off += static_cast<size_t>(r);
  }
  ::close(fd);
  data.resize(off);  // a file that shrank underneath us reads as truncated
  auto r = OpenOwned(std::move(data), opts);
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

StatusOr<ArtifactReader> ArtifactReader::OpenBytes(std::span<const uint8_t> bytes, const ReaderOptions& opts) {
  return OpenOwned(std::vector<uint8_t>(bytes.begin(), bytes.end()), opts);
}

StatusOr<ArtifactReader> ArtifactReader::OpenOwned(std::vector<uint8_t> bytes, const ReaderOptions& opts) {
  ArtifactReader r;
  r.data_ = std::move(bytes);
  KVMART_RETURN_IF_ERROR(r.Parse(opts));
  return r;
}

Status ArtifactReader::Parse(const ReaderOptions& opts) {
  const uint64_t size = data_.size();
  const uint8_t* d = data_.data();
  if (size < 8 || std::memcmp(d, kMagic, 8) != 0) return Bad("not a .kva file (bad magic)");
  if (size < kFixedBytes) return Bad("truncated (" + std::to_string(size) + " bytes)");
  const uint64_t major = GetLE(d + 8, 2), minor = GetLE(d + 10, 2);
  if (GetLE(d + 32, 8) != XXH3_64bits(d, 32)) return Bad("header checksum mismatch");
  // Version after the header checksum, so a flipped version bit reads as
  // corruption, not as "from the future".
  if (major != kCurrentFormat.major)
    return Status::Unimplemented("kva container version " + std::to_string(major) + "." + std::to_string(minor) +
                                 " is not supported (this reader reads " + std::to_string(kCurrentFormat.major) +
                                 ".x)");
  container_version_ = {static_cast<uint32_t>(major), static_cast<uint32_t>(minor)};
  if (GetLE(d + 12, 4) != 0) return Bad("unknown header flags");
  const uint64_t manifest_len = GetLE(d + 16, 8), blocks_len = GetLE(d + 24, 8);
  // Each length is compared with what is actually there before it is used.
  const uint64_t room = size - kFixedBytes;
  if (manifest_len > room) return Bad("manifest length " + std::to_string(manifest_len) + " exceeds the file");
  if (blocks_len != room - manifest_len)
    return Bad("blocks length " + std::to_string(blocks_len) + " does not match the file size (truncated or padded)");
  const uint8_t* t = d + size - kTrailerBytes;
  if (std::memcmp(t, kTrailerMagic, 8) != 0) return Bad("bad trailer (truncated?)");
  if (GetLE(t + 8, 8) != size) return Bad("trailer length does not match the file size");
  std::span<const uint8_t> mbytes(d + kHeaderBytes, manifest_len);
  Xxh3Digest want;
  std::memcpy(want.data(), d + kHeaderBytes + manifest_len, want.size());
  if (Xxh3_128(mbytes) != want) return Bad("manifest checksum mismatch");
  manifest_text_.assign(reinterpret_cast<const char*>(mbytes.data()), mbytes.size());
  KVMART_ASSIGN_OR_RETURN(manifest_, ParseManifest(manifest_text_));
  if (manifest_.version.major != container_version_.major) return Bad("manifest and container versions differ");
  signature_status_ = VerifyManifestSignature(manifest_);
  if (opts.require_signature && !signature_status_.ok()) return signature_status_;
  if (opts.expected_profile) KVMART_RETURN_IF_ERROR(CheckProfile(*opts.expected_profile));
  uint64_t off = kHeaderBytes + manifest_len + kManifestSumBytes, total = 0;
  block_offsets_.reserve(manifest_.blocks.size());
  for (const auto& b : manifest_.blocks) {
    if (b.raw_bytes > opts.max_block_raw_bytes)
      return Bad("block " + std::to_string(b.index) + " decodes to " + std::to_string(b.raw_bytes) +
                 " bytes, above the limit " + std::to_string(opts.max_block_raw_bytes));
    if (b.stored_bytes > blocks_len - total) return Bad("block sizes exceed the blocks section");
    block_offsets_.push_back(off);
    off += b.stored_bytes;
    total += b.stored_bytes;
  }
  if (total != blocks_len) return Bad("blocks section has " + std::to_string(blocks_len - total) + " extra bytes");
  return Status::Ok();
}

std::span<const uint8_t> ArtifactReader::StoredBlock(size_t i) const {
  if (i >= block_offsets_.size()) return {};
  return {data_.data() + block_offsets_[i], manifest_.blocks[i].stored_bytes};
}

StatusOr<std::vector<uint8_t>> ArtifactReader::ReadBlock(size_t i) const {
  if (i >= manifest_.blocks.size()) return Status::OutOfRange("no block " + std::to_string(i));
  return DecodeVerifiedBlock(manifest_.blocks[i], manifest_.profile.shape.dtype, StoredBlock(i), true);
}

StatusOr<std::vector<std::vector<uint8_t>>> ArtifactReader::ReadAllBlocks(unsigned threads) const {
  std::vector<std::vector<uint8_t>> out(manifest_.blocks.size());
  KVMART_RETURN_IF_ERROR(ParallelFor(out.size(), threads, [&](size_t i) -> Status {
    KVMART_ASSIGN_OR_RETURN(out[i], ReadBlock(i));
    return Status::Ok();
  }));
  return out;
}

Artifact ArtifactReader::ToArtifact() const {
  Artifact a;
  a.manifest = manifest_;
  for (size_t i = 0; i < manifest_.blocks.size(); ++i) {
    auto s = StoredBlock(i);
    a.stored_blocks.emplace_back(s.begin(), s.end());
  }
  return a;
}

}  // namespace kvmart::artifact
