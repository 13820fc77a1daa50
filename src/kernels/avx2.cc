// The AVX2+FMA path. Compiled with -mavx2 -mfma in this file only and selected
// at run time, so the binary still runs (portable path) on older CPUs.
//
// Every vector lane is an independent output; every reduction is the same
// sequential FMA chain as in portable.cc, so the two paths agree bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

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

namespace {

// Scores of NT consecutive key tiles starting at tile t.
template <int NT>
inline void ScoreTiles(const AttentionQuery& a, size_t t, __m256 scale) {
  const uint16_t* kt[NT];
  __m256 acc[NT];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < NT; ++i) {
    kt[i] = a.k_tiles + (t + i) * a.k_tile_stride;
    acc[i] = _mm256_setzero_ps();
  }
  for (size_t d = 0; d < a.head_dim; ++d) {
    const __m256 qd = _mm256_broadcast_ss(a.q + d);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NT; ++i) acc[i] = _mm256_fmadd_ps(qd, LoadBf16x8(kt[i] + d * kKeyTile), acc[i]);
  }
  _Pragma("GCC unroll 8")
  for (int i = 0; i < NT; ++i) _mm256_storeu_ps(a.scores + (t + i) * kKeyTile, _mm256_mul_ps(acc[i], scale));
}

// out[d0, d0 + 8·NV) = Σ_j e_j · V_j[d0, ...), chains over keys in order. When
// `sum` is set, also Σ_j e_j in the same order.
template <int NV>
inline void ValuePass(const AttentionQuery& a, size_t d0, float* sum) {
  __m256 acc[NV];
  _Pragma("GCC unroll 8")
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  const uint16_t* vrow = a.v + d0;
  float s = 0.0f;
  for (size_t j = 0; j < a.n_keys; ++j, vrow += a.v_stride) {
    const __m256 e = _mm256_broadcast_ss(a.scores + j);
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(e, LoadBf16x8(vrow + 8 * v), acc[v]);
    if (sum != nullptr) s = s + a.scores[j];
  }
  _Pragma("GCC unroll 8")
  for (int v = 0; v < NV; ++v) _mm256_storeu_ps(a.out + d0 + 8 * v, acc[v]);
  if (sum != nullptr) *sum = s;
}

}  // namespace

namespace {

// scores[j] <- exp(scores[j] - max over [0, n)), the same for one query or a group.
inline void ExpShifted(float* scores, size_t n) {
  float mx = scores[0];
  for (size_t j = 1; j < n; ++j) mx = scores[j] > mx ? scores[j] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(scores + j, ExpVec(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx)));
  for (; j < n; ++j) scores[j] = KvExp(scores[j] - mx);
}

inline void DivideBy(float* out, size_t hd, float sum) {
  const __m256 vsum = _mm256_set1_ps(sum);
  for (size_t d = 0; d < hd; d += 8) _mm256_storeu_ps(out + d, _mm256_div_ps(_mm256_loadu_ps(out + d), vsum));
}

// Scores of NQ queries for NT consecutive key tiles starting at tile t: each
// widened K vector feeds NQ FMAs. Per (query, key) the chain over d is the one
// ScoreTiles runs.
template <int NQ, int NT>
inline void GroupScoreTiles(const AttentionQuery* qs, size_t t, __m256 scale) {
  const AttentionQuery& a = qs[0];
  const uint16_t* kt[NT];
  __m256 acc[NQ][NT];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < NT; ++i) {
    kt[i] = a.k_tiles + (t + i) * a.k_tile_stride;
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) acc[q][i] = _mm256_setzero_ps();
  }
  for (size_t d = 0; d < a.head_dim; ++d) {
    __m256 kv[NT];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NT; ++i) kv[i] = LoadBf16x8(kt[i] + d * kKeyTile);
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) {
      const __m256 qd = _mm256_broadcast_ss(qs[q].q + d);
      _Pragma("GCC unroll 8")
      for (int i = 0; i < NT; ++i) acc[q][i] = _mm256_fmadd_ps(qd, kv[i], acc[q][i]);
    }
  }
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NT; ++i) _mm256_storeu_ps(qs[q].scores + (t + i) * kKeyTile, _mm256_mul_ps(acc[q][i], scale));
  }
}

// out_q[d0, d0 + 8·NV) = Σ_j e_qj · V_j for NQ queries: keys [0, common) are
// shared (each widened V vector feeds NQ FMAs), then each query runs on alone
// over its own remaining keys. Per query the chain over keys is in order, as
// in ValuePass. When `sums`, also Σ_j e_qj in the same order.
template <int NQ, int NV>
inline void GroupValuePass(const AttentionQuery* qs, size_t common, size_t d0, float* sums) {
  const AttentionQuery& a = qs[0];
  __m256 acc[NQ][NV];
  float s[NQ];
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    s[q] = 0.0f;
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_setzero_ps();
  }
  const uint16_t* vrow = a.v + d0;
  for (size_t j = 0; j < common; ++j, vrow += a.v_stride) {
    __m256 vv[NV];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) vv[v] = LoadBf16x8(vrow + 8 * v);
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) {
      const __m256 e = _mm256_broadcast_ss(qs[q].scores + j);
      _Pragma("GCC unroll 8")
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_fmadd_ps(e, vv[v], acc[q][v]);
      if (sums != nullptr) s[q] = s[q] + qs[q].scores[j];
    }
  }
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    const uint16_t* row = vrow;
    for (size_t j = common; j < qs[q].n_keys; ++j, row += a.v_stride) {
      const __m256 e = _mm256_broadcast_ss(qs[q].scores + j);
      _Pragma("GCC unroll 8")
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_fmadd_ps(e, LoadBf16x8(row + 8 * v), acc[q][v]);
      if (sums != nullptr) s[q] = s[q] + qs[q].scores[j];
    }
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(qs[q].out + d0 + 8 * v, acc[q][v]);
    if (sums != nullptr) sums[q] = s[q];
  }
}

// Register budget (16 ymm): NQ·NT score accumulators + NT widened keys + one
// broadcast; NQ·NV value accumulators + NV widened values + one broadcast.
template <int NQ>
void AttendGroupOf(const AttentionQuery* qs) {
  constexpr int kTiles = NQ == 2 ? 4 : 2;
  constexpr int kValues = NQ == 2 ? 4 : 2;
  size_t max_n = 0, min_n = qs[0].n_keys;
  for (int q = 0; q < NQ; ++q) {
    max_n = qs[q].n_keys > max_n ? qs[q].n_keys : max_n;
    min_n = qs[q].n_keys < min_n ? qs[q].n_keys : min_n;
  }
  const size_t hd = qs[0].head_dim, tiles = (max_n + kKeyTile - 1) / kKeyTile;
  const __m256 scale = _mm256_set1_ps(qs[0].scale);
  // Lanes past a query's own n_keys get scores too; nothing reads them.
  size_t t = 0;
  for (; t + kTiles <= tiles; t += kTiles) GroupScoreTiles<NQ, kTiles>(qs, t, scale);
  for (; t < tiles; ++t) GroupScoreTiles<NQ, 1>(qs, t, scale);
  for (int q = 0; q < NQ; ++q) ExpShifted(qs[q].scores, qs[q].n_keys);
  float sums[NQ];
  size_t d0 = 0;
  for (; d0 + 8 * kValues <= hd; d0 += 8 * kValues) {
    GroupValuePass<NQ, kValues>(qs, min_n, d0, d0 == 0 ? sums : nullptr);
  }
  for (; d0 < hd; d0 += 8) GroupValuePass<NQ, 1>(qs, min_n, d0, d0 == 0 ? sums : nullptr);
  for (int q = 0; q < NQ; ++q) DivideBy(qs[q].out, hd, sums[q]);
}

}  // namespace

void Attend(const AttentionQuery& a) {
  const size_t n = a.n_keys, hd = a.head_dim;
  const size_t tiles = (n + kKeyTile - 1) / kKeyTile;
  const __m256 scale = _mm256_set1_ps(a.scale);
  // Scores: lanes are 8 keys, the chain runs over d. Four tiles at a time
  // give four independent FMA chains (one chain alone waits on FMA latency);
  // each key's chain is the same whatever the grouping, so the bits are too.
  size_t t = 0;
  for (; t + 4 <= tiles; t += 4) ScoreTiles<4>(a, t, scale);
  for (; t < tiles; ++t) ScoreTiles<1>(a, t, scale);
  ExpShifted(a.scores, n);
  // e·V: lanes are 8 output dims, the chain runs over keys. Passes of up to 64
  // dims keep 8 accumulators in registers; the sequential sum of e rides along
  // with the first pass.
  float sum = 0.0f;
  size_t d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) ValuePass<8>(a, d0, d0 == 0 ? &sum : nullptr);
  for (; d0 < hd; d0 += 8) ValuePass<1>(a, d0, d0 == 0 ? &sum : nullptr);
  DivideBy(a.out, hd, sum);
}

void AttendGroup(const AttentionQuery* queries, size_t count) {
  switch (count) {
    case 1: Attend(queries[0]); break;
    case 2: AttendGroupOf<2>(queries); break;
    case 3: AttendGroupOf<3>(queries); break;
    default: AttendGroupOf<4>(queries); break;
  }
}

}  // namespace kvmart::avx2
