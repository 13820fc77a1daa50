// Deterministic KV-like test data (shared by tests and kvmart-bench-codec).
//
// Real KV values are roughly Gaussian per channel with channel scales that vary by
// orders of magnitude (a few K channels are large outliers) — so exponents are
// concentrated but not constant. The generator reproduces that, with its own PRNG
// and Box–Muller so the bytes are identical on every platform and library.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "artifact/profile.h"

namespace kvmart::artifact::testing {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }  // [0,1)
  double Normal() {
    double u1 = Uniform(), u2 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t s_;
};

inline uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even (inputs are finite)
  return static_cast<uint16_t>(u >> 16);
}

inline uint16_t F32ToF16(float f) {
  // Truncating conversion; good enough for test data (exact rounding is irrelevant here).
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  uint32_t mant = u & 0x7fffff;
  if (exp >= 31) return sign | 0x7bff;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    return static_cast<uint16_t>(sign | (mant >> (14 - exp)));
  }
  return static_cast<uint16_t>(sign | (exp << 10) | (mant >> 13));
}

// Payload for `tokens` tokens in the block layout: per layer, K then V, each
// [tokens][kv_heads][head_dim], 16-bit little-endian values of shape.dtype.
// `seed` picks the model (channel scales); `token_offset` the position, so that
// consecutive blocks of one document come from the same "model".
inline std::vector<uint8_t> SyntheticKv(const KvShape& shape, uint64_t tokens, uint64_t seed,
                                        uint64_t token_offset = 0) {
  const uint64_t channels = uint64_t{shape.num_kv_heads} * shape.head_dim;
  std::vector<uint8_t> out(tokens * shape.BytesPerToken());
  uint8_t* p = out.data();
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      SplitMix64 model(seed * 1000003 + l * 2 + kv);
      std::vector<float> scale(channels), mean(channels);
      for (uint64_t c = 0; c < channels; ++c) {
        double log2s = kv == 0 ? model.Normal() * 1.2 : model.Normal() * 0.6 - 1.0;
        if (kv == 0 && model.Uniform() < 0.03) log2s += 4.0;  // outlier K channels
        scale[c] = static_cast<float>(std::exp2(log2s));
        mean[c] = kv == 0 ? static_cast<float>(model.Normal() * 0.5 * scale[c]) : 0.0f;
      }
      SplitMix64 rng(seed ^ (0x5bd1e995ull * (l * 2 + kv + 1)) ^ (token_offset * 0x9e3779b97f4a7c15ull));
      for (uint64_t t = 0; t < tokens; ++t) {
        for (uint64_t c = 0; c < channels; ++c) {
          float v = static_cast<float>(mean[c] + rng.Normal() * scale[c]);
          uint16_t h = shape.dtype == KvDtype::kBf16 ? F32ToBf16(v) : F32ToF16(v);
          *p++ = static_cast<uint8_t>(h);
          *p++ = static_cast<uint8_t>(h >> 8);
        }
      }
    }
  }
  return out;
}

// A valid profile with deterministic digests.
inline Profile TestProfile(KvShape shape = {2, 2, 16, KvDtype::kBf16}, uint32_t block_size = 4) {
  Profile p;
  p.weights_digest = std::string(64, 'a');
  p.config_digest = std::string(64, 'b');
  p.tokenizer_digest = std::string(64, 'c');
  p.block_size = block_size;
  p.shape = shape;
  return p;
}

}  // namespace kvmart::artifact::testing
