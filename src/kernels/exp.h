// KvExp: the project's own exp, defined as an exact sequence of IEEE operations
// so that the scalar form here and the AVX2 form in avx2.cc give identical bits.
//
//   x  <- clamp(x, kExpLo, kExpHi)            (keeps 2^n a normal number)
//   n  <- nearbyint(x · log2(e))              (ties to even)
//   r  <- fma(n, -ln2_hi, x); r <- fma(n, -ln2_lo, r)   (Cody–Waite reduction)
//   p  <- Horner with fma: c6 … c0 (c1 = c0 = 1)
//   exp(x) = p · 2^n                           (2^n built from exponent bits)
// Max relative error ≈ 2 ulp over the clamped range.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace kvmart {

namespace exp_constants {
inline constexpr float kExpLo = -87.33654f;   // 2^-126 territory: n >= -126
inline constexpr float kExpHi = 88.37626f;    // n <= 127
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693145751953125f;
inline constexpr float kLn2Lo = 1.428606765330187045e-06f;
inline constexpr float kC6 = 1.3981999507e-3f;
inline constexpr float kC5 = 8.3334519073e-3f;
inline constexpr float kC4 = 4.1665795894e-2f;
inline constexpr float kC3 = 1.6666665459e-1f;
inline constexpr float kC2 = 5.0000001201e-1f;
}  // namespace exp_constants

inline float KvExp(float x) {
  using namespace exp_constants;
  x = x > kExpLo ? x : kExpLo;  // same operand order as _mm256_max_ps(x, lo)
  x = x < kExpHi ? x : kExpHi;  // same as _mm256_min_ps(x, hi)
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kC6;
  p = std::fma(p, r, kC5);
  p = std::fma(p, r, kC4);
  p = std::fma(p, r, kC3);
  p = std::fma(p, r, kC2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

}  // namespace kvmart
