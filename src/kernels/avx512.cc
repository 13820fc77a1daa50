// The AVX-512 path: the matmul only, on 512-bit vectors (16 output rows per
// vector, 32 registers for accumulators). Every output element is still one
// sequential FMA chain over the reduction index, in the same order and with the
// same reduction blocking as the other paths, so the bits are identical — the
// wider vectors only compute more chains at once. Norms, SiLU and attention are
// the AVX2 path's (they are a small share of the time).
#include <immintrin.h>

#include <algorithm>

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

}  // namespace

void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1, float* y,
                  size_t ldy) {
  if (w.format() == PackedMatrix::Format::kBf16) {
    MatMulImpl<true>(x, m, ldx, w, p0, p1, y, ldy);
  } else {
    MatMulImpl<false>(x, m, ldx, w, p0, p1, y, ldy);
  }
}

}  // namespace kvmart::avx512
