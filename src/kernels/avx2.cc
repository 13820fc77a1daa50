// The AVX2+FMA path. Compiled with -mavx2 -mfma in this file only and selected
// at run time, so the binary still runs (portable path) on older CPUs.
//
// Every vector lane is an independent output; every reduction is the same
// sequential FMA chain as in portable.cc, so the two paths agree bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_impl.h"
#include "kernels/exp.h"
#include "kernels/kernels.h"
#include "kernels/portable_ops.h"

namespace kvmart::avx2 {
namespace {

constexpr size_t R = PackedMatrix::kPanelRows;
constexpr size_t kKc = 256;  // reduction block: keeps a 6-row A block and a panel slice in L1/L2

inline __m256 WidenLo(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
inline __m256 WidenHi(__m256i v) {
  return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}
// 8 consecutive bf16 -> 8 f32.
inline __m256 LoadBf16x8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// MR rows of x times NP panels starting at p, reduction over [k0, k1). When
// `first`, chains start from 0.0f, else they continue from the values in y.
// The loops over rows and panels are fully unrolled (pragmas) so the
// accumulators live in registers: GCC otherwise keeps acc[][][] on the stack
// and every FMA waits on store forwarding.
template <int MR, int NP, bool kBf16>
void MicroKernel(const float* x, size_t ldx, const PackedMatrix& w, size_t p, size_t k0, size_t k1,
                 float* y, size_t ldy, bool first) {
  __m256 acc[MR][NP][2];
  _Pragma("GCC unroll 16")
  for (int i = 0; i < MR; ++i) {
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) {
      float* yp = y + i * ldy + (p + q) * R;
      acc[i][q][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(yp);
      acc[i][q][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(yp + 8);
    }
  }
  const uint16_t* pb[NP];
  const float* pf[NP];
  _Pragma("GCC unroll 16")
  for (int q = 0; q < NP; ++q) {
    if constexpr (kBf16) {
      pb[q] = w.bf16_panel(p + q);
    } else {
      pf[q] = w.f32_panel(p + q);
    }
  }
  for (size_t k = k0; k < k1; ++k) {
    __m256 w0[NP], w1[NP];
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) {
      if constexpr (kBf16) {
        __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb[q] + k * R));
        w0[q] = WidenLo(v);
        w1[q] = WidenHi(v);
      } else {
        w0[q] = _mm256_load_ps(pf[q] + k * R);
        w1[q] = _mm256_load_ps(pf[q] + k * R + 8);
      }
    }
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = _mm256_broadcast_ss(x + i * ldx + k);
      _Pragma("GCC unroll 16")
      for (int q = 0; q < NP; ++q) {
        acc[i][q][0] = _mm256_fmadd_ps(xb, w0[q], acc[i][q][0]);
        acc[i][q][1] = _mm256_fmadd_ps(xb, w1[q], acc[i][q][1]);
      }
    }
  }
  _Pragma("GCC unroll 16")
  for (int i = 0; i < MR; ++i) {
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) {
      float* yp = y + i * ldy + (p + q) * R;
      _mm256_storeu_ps(yp, acc[i][q][0]);
      _mm256_storeu_ps(yp + 8, acc[i][q][1]);
    }
  }
}

template <bool kBf16>
void RunRows(int mr, int np, const float* x, size_t ldx, const PackedMatrix& w, size_t p, size_t k0,
             size_t k1, float* y, size_t ldy, bool first) {
#define KVMART_MK(MR, NP)                                                  \
  if (mr == MR && np == NP) {                                              \
    MicroKernel<MR, NP, kBf16>(x, ldx, w, p, k0, k1, y, ldy, first);       \
    return;                                                                \
  }
  KVMART_MK(6, 1) KVMART_MK(5, 1) KVMART_MK(4, 1) KVMART_MK(3, 1) KVMART_MK(2, 1) KVMART_MK(1, 1)
  KVMART_MK(1, 4) KVMART_MK(2, 3) KVMART_MK(3, 2)
#undef KVMART_MK
}

// Panels handled per micro-kernel call for a given row count: enough
// independent chains (≥ 8 accumulators) to hide FMA latency, ≤ 12 registers.
int PanelsFor(int mr) { return mr == 1 ? 4 : mr == 2 ? 3 : mr == 3 ? 2 : 1; }

template <bool kBf16>
void MatMulImpl(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                float* y, size_t ldy) {
  const size_t k_len = w.cols();
  // Small batches (decode) stream the weights once with no reduction blocking.
  const size_t kc = m < 6 ? k_len : kKc;
  for (size_t k0 = 0; k0 < k_len; k0 += kc) {
    const size_t k1 = std::min(k_len, k0 + kc);
    const bool first = k0 == 0;
    for (size_t i = 0; i < m; i += 6) {
      const int mr = static_cast<int>(std::min<size_t>(6, m - i));
      const int np = PanelsFor(mr);
      size_t p = p0;
      for (; p + np <= p1; p += np) {
        RunRows<kBf16>(mr, np, x + i * ldx, ldx, w, p, k0, k1, y + i * ldy, ldy, first);
      }
      for (; p < p1; ++p) RunRows<kBf16>(mr, 1, x + i * ldx, ldx, w, p, k0, k1, y + i * ldy, ldy, first);
    }
  }
}

// Vector KvExp: the operation sequence of exp.h, lane by lane.
inline __m256 ExpVec(__m256 x) {
  using namespace exp_constants;
  x = _mm256_max_ps(x, _mm256_set1_ps(kExpLo));
  x = _mm256_min_ps(x, _mm256_set1_ps(kExpHi));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kC6);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

}  // namespace

void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                  float* y, size_t ldy) {
  if (w.format() == PackedMatrix::Format::kBf16) {
    MatMulImpl<true>(x, m, ldx, w, p0, p1, y, ldy);
  } else {
    MatMulImpl<false>(x, m, ldx, w, p0, p1, y, ldy);
  }
}

void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* y) {
  float ss = 0.0f;
  for (size_t i = 0; i < n; ++i) ss = std::fma(x[i], x[i], ss);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const __m256 vinv = _mm256_set1_ps(inv);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), v));
  }
  for (; i < n; ++i) y[i] = weight[i] * (x[i] * inv);
}

void SiluMul(const float* g, const float* u, size_t n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = ExpVec(_mm256_xor_ps(gv, sign));
    const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = (g[i] / (1.0f + KvExp(-g[i]))) * u[i];
}

void ExpShiftedScores(float* scores, size_t n) {
  float mx = scores[0];
  for (size_t j = 1; j < n; ++j) mx = scores[j] > mx ? scores[j] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(scores + j, ExpVec(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx)));
  for (; j < n; ++j) scores[j] = KvExp(scores[j] - mx);
}

namespace {

// 8 lanes: one key tile per vector in the scores, 8 dims in e·V.
struct Avx2Vec {
  using vec = __m256;
  static constexpr size_t kLanes = 8;
  static constexpr int kRegisters = 16;
  static vec Zero() { return _mm256_setzero_ps(); }
  static vec Set1(float f) { return _mm256_set1_ps(f); }
  static vec Broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static vec Fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec Mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec Loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void Storeu(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static void StoreScores(float* p, vec v, size_t /*lanes: always 8*/) { _mm256_storeu_ps(p, v); }
  static vec LoadBf16(const uint16_t* p) { return LoadBf16x8(p); }
  template <bool kTail>
  static vec LoadKeys(const uint16_t* p, size_t /*tile stride*/) { return LoadBf16x8(p); }
  static void ExpShifted(float* scores, size_t n) { ExpShiftedScores(scores, n); }
};

}  // namespace

void Attend(const AttentionQuery& a) { attention_impl::AttendGroup<Avx2Vec>(&a, 1); }

void AttendGroup(const AttentionQuery* queries, size_t count) {
  attention_impl::AttendGroup<Avx2Vec>(queries, count);
}

void AttendShared(const AttentionQuery* queries, size_t count, size_t shared_keys) {
  attention_impl::AttendShared<Avx2Vec>(queries, count, shared_keys);
}

}  // namespace kvmart::avx2
