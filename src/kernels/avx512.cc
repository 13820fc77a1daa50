// The AVX-512 path: the matmul and attention on 512-bit vectors (16 output
// rows, keys or dims per vector; 32 registers for accumulators). Every output
// element is still one sequential FMA chain over its reduction index, in the
// same order and with the same reduction blocking as the other paths, so the
// bits are identical — the wider vectors only compute more chains at once.
// Norms, SiLU and the softmax exponentials are the AVX2 path's (a small share
// of the time).
#include <immintrin.h>

#include <algorithm>

#include "kernels/attention_impl.h"
#include "kernels/portable_ops.h"

namespace kvmart::avx512 {
namespace {

constexpr size_t R = PackedMatrix::kPanelRows;  // 16: one panel column is one zmm
constexpr size_t kKc = 256;                     // same reduction block as avx2

// One bf16 panel column (32 bytes; 32-bit word i holds row i low, row 8+i high)
// -> 16 f32 in row order: the word vector in both halves, lanes 0-7 shifted
// (low halves), lanes 8-15 masked (high halves). No cross-lane shuffle.
inline __m512 WidenPanelColumn(const uint16_t* p) {
  // (maskz with a full mask: the plain intrinsic trips GCC 12's -Wmaybe-uninitialized.)
  const __m512i v = _mm512_maskz_broadcast_i64x4(0xff, _mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i hi = _mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
  return _mm512_castsi512_ps(_mm512_mask_slli_epi32(hi, 0x00ff, v, 16));
}

// MR rows of x times NP panels starting at p, reduction over [k0, k1). When
// `first`, chains start from 0.0f, else they continue from the values in y.
// Loops fully unrolled so the accumulators stay in registers (see avx2.cc).
template <int MR, int NP, bool kBf16>
void MicroKernel(const float* x, size_t ldx, const PackedMatrix& w, size_t p, size_t k0, size_t k1, float* y,
                 size_t ldy, bool first) {
  __m512 acc[MR][NP];
  _Pragma("GCC unroll 16")
  for (int i = 0; i < MR; ++i) {
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) {
      acc[i][q] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + i * ldy + (p + q) * R);
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
    __m512 wv[NP];
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) {
      if constexpr (kBf16) {
        wv[q] = WidenPanelColumn(pb[q] + k * R);
      } else {
        wv[q] = _mm512_load_ps(pf[q] + k * R);
      }
    }
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; ++i) {
      const __m512 xb = _mm512_set1_ps(x[i * ldx + k]);
      _Pragma("GCC unroll 16")
      for (int q = 0; q < NP; ++q) acc[i][q] = _mm512_fmadd_ps(xb, wv[q], acc[i][q]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int i = 0; i < MR; ++i) {
    _Pragma("GCC unroll 16")
    for (int q = 0; q < NP; ++q) _mm512_storeu_ps(y + i * ldy + (p + q) * R, acc[i][q]);
  }
}

// Panels per micro-kernel call for a row count: ≥ 8 independent chains to
// cover FMA latency, MR·NP + NP + 1 ≤ 32 registers.
constexpr int kMaxRows = 12;
int PanelsFor(int mr) { return mr == 1 ? 8 : mr == 2 ? 6 : mr <= 4 ? 4 : mr <= 6 ? 3 : 2; }

template <bool kBf16>
void RunRows(int mr, int np, const float* x, size_t ldx, const PackedMatrix& w, size_t p, size_t k0, size_t k1,
             float* y, size_t ldy, bool first) {
#define KVMART_MK(MR, NP)                                            \
  if (mr == MR && np == NP) {                                        \
    MicroKernel<MR, NP, kBf16>(x, ldx, w, p, k0, k1, y, ldy, first); \
    return;                                                          \
  }
  KVMART_MK(12, 2) KVMART_MK(11, 2) KVMART_MK(10, 2) KVMART_MK(9, 2) KVMART_MK(8, 2) KVMART_MK(7, 2)
  KVMART_MK(6, 3) KVMART_MK(5, 3) KVMART_MK(4, 4) KVMART_MK(3, 4) KVMART_MK(2, 6) KVMART_MK(1, 8)
  KVMART_MK(12, 1) KVMART_MK(11, 1) KVMART_MK(10, 1) KVMART_MK(9, 1) KVMART_MK(8, 1) KVMART_MK(7, 1)
  KVMART_MK(6, 1) KVMART_MK(5, 1) KVMART_MK(4, 1) KVMART_MK(3, 1) KVMART_MK(2, 1) KVMART_MK(1, 1)
#undef KVMART_MK
}

template <bool kBf16>
void MatMulImpl(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1, float* y,
                size_t ldy) {
  const size_t k_len = w.cols();
  // Small batches (decode) stream the weights once with no reduction blocking.
  const size_t kc = m < 6 ? k_len : kKc;
  for (size_t k0 = 0; k0 < k_len; k0 += kc) {
    const size_t k1 = std::min(k_len, k0 + kc);
    const bool first = k0 == 0;
    for (size_t i = 0; i < m; i += kMaxRows) {
      const int mr = static_cast<int>(std::min<size_t>(kMaxRows, m - i));
      const int np = PanelsFor(mr);
      size_t p = p0;
      for (; p + np <= p1; p += np) RunRows<kBf16>(mr, np, x + i * ldx, ldx, w, p, k0, k1, y + i * ldy, ldy, first);
      for (; p < p1; ++p) RunRows<kBf16>(mr, 1, x + i * ldx, ldx, w, p, k0, k1, y + i * ldy, ldy, first);
    }
  }
}

// 16 lanes: two key tiles per vector in the scores, 16 dims in e·V.
struct Avx512Vec {
  using vec = __m512;
  static constexpr size_t kLanes = 16;
  static constexpr int kRegisters = 32;
  static vec Zero() { return _mm512_setzero_ps(); }
  static vec Set1(float f) { return _mm512_set1_ps(f); }
  static vec Broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static vec Fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec Mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec Loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void Storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void StoreScores(float* p, vec v, size_t lanes) {
    if (lanes == kLanes) {
      _mm512_storeu_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, 0x00ff, v);
    }
  }
  // (maskz forms with full masks: the plain intrinsics trip GCC 12's
  // -Wmaybe-uninitialized; the instructions are the same.)
  static vec Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, h), 16));
  }
  static vec LoadBf16(const uint16_t* p) { return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  // The d-th rows of tiles t and t+1 (8 keys each) -> keys 8t .. 8t+15. At the
  // tail tile t+1 may lie past the cache, so tile t is read twice instead
  // (those lanes are never stored).
  template <bool kTail>
  static vec LoadKeys(const uint16_t* p, size_t tile_stride) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hi = kTail ? lo : _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + tile_stride));
    return Widen(_mm256_inserti128_si256(_mm256_zextsi128_si256(lo), hi, 1));
  }
  static void ExpShifted(float* scores, size_t n) { avx2::ExpShiftedScores(scores, n); }
};

}  // namespace

void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1, float* y,
                  size_t ldy) {
  if (w.format() == PackedMatrix::Format::kBf16) {
    MatMulImpl<true>(x, m, ldx, w, p0, p1, y, ldy);
  } else {
    MatMulImpl<false>(x, m, ldx, w, p0, p1, y, ldy);
  }
}

void Attend(const AttentionQuery& a) { attention_impl::AttendGroup<Avx512Vec>(&a, 1); }

void AttendGroup(const AttentionQuery* queries, size_t count) {
  attention_impl::AttendGroup<Avx512Vec>(queries, count);
}

void AttendShared(const AttentionQuery* queries, size_t count, size_t shared_keys) {
  attention_impl::AttendShared<Avx512Vec>(queries, count, shared_keys);
}

}  // namespace kvmart::avx512
