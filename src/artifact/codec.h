// Block codecs: `raw` and `lossless` (exponent/mantissa byte planes + entropy coding).
//
// A block payload is a sequence of 16-bit little-endian KV values (bf16 or f16).
// Stored bytes of the lossless codec (docs/ARTIFACT.md §5):
//   32-byte header: u8 version=1, u8 dtype (1 bf16, 2 f16), u8 E-plane method,
//                   u8 M-plane method, u32 reserved=0, u64 value count,
//                   u64 E-section length, u64 M-section length   (all LE)
//   E section, M section.
// The E plane holds one byte per value carrying the exponent (plus, for f16, sign
// and 2 mantissa bits); the M plane the remaining 8 bits. Real KV exponents are
// concentrated, so E compresses well while M is close to random and is usually
// stored as is. Methods: 0 stored, 1 zstd, 2 rANS (order-0, hand-written),
// 3 nibble (4-bit codes for the 15 most frequent symbols + exceptions).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "artifact/profile.h"
#include "base/status.h"

namespace kvmart::artifact {

enum class Codec : uint8_t { kRaw = 0, kLossless = 1 };

std::string_view CodecName(Codec c);  // "raw" / "lossless"
StatusOr<Codec> ParseCodec(std::string_view name);

enum class PlaneMethod : uint8_t { kStored = 0, kZstd = 1, kRans = 2, kNibble = 3 };

struct EncodeOptions {
  int zstd_level = 3;
  // Which coders the encoder may try for the E plane. It keeps the smallest of
  // the fast-decoding ones (stored, nibble) unless a slower one (zstd, rANS)
  // shrinks the whole block by more than slow_min_gain (docs/ARTIFACT.md §5).
  bool try_zstd = true;
  bool try_rans = true;
  bool try_nibble = true;
  double slow_min_gain = 0.10;
  // Forces the E plane method (benchmarks). Overrides try_*.
  std::optional<PlaneMethod> force_exponent_method;
};

StatusOr<std::vector<uint8_t>> EncodeBlock(Codec codec, KvDtype dtype, std::span<const uint8_t> raw,
                                           const EncodeOptions& opts = {});

// Decodes into `out`, whose size is the expected raw size (from the manifest).
// Any inconsistency between header, sections and out.size() is Corruption; the
// decoder never reads outside `stored` nor writes outside `out`.
Status DecodeBlock(Codec codec, KvDtype dtype, std::span<const uint8_t> stored, std::span<uint8_t> out);

// Splits/joins 16-bit values into the E and M byte planes (exposed for the
// benchmark's entropy figure and tests).
void SplitPlanes(KvDtype dtype, std::span<const uint8_t> raw, uint8_t* e_plane, uint8_t* m_plane);
void JoinPlanes(KvDtype dtype, const uint8_t* e_plane, const uint8_t* m_plane, std::span<uint8_t> raw);

// Order-0 Shannon entropy in bits per symbol of a byte sequence.
double ByteEntropyBits(std::span<const uint8_t> bytes);

// Order-0 rANS over bytes (12-bit frequencies, four interleaved 32-bit states,
// 16-bit renormalisation).
std::vector<uint8_t> RansEncode(std::span<const uint8_t> symbols);
Status RansDecode(std::span<const uint8_t> encoded, std::span<uint8_t> out);

}  // namespace kvmart::artifact
