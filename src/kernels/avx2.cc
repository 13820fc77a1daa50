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

// scores[j] <- exp(scores[j] - max over [0, n)).
inline void ExpShifted(float* scores, size_t n) {
  float mx = scores[0];
  for (size_t j = 1; j < n; ++j) mx = scores[j] > mx ? scores[j] : mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(scores + j, ExpVec(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx)));
  for (; j < n; ++j) scores[j] = KvExp(scores[j] - mx);
}

// Scores of NQ queries for NT consecutive key tiles starting at tile t. Lanes
// are 8 keys; each (query, key) chain runs over d in order, whatever NQ and NT.
// NT tiles give NT·NQ independent chains (one alone would wait on FMA latency),
// and each widened K vector feeds NQ FMAs.
template <int NQ, int NT>
inline void ScoreTiles(const AttentionQuery* qs, size_t t, __m256 scale) {
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

// out_q[d0, d0 + 8·NV) += Σ_{j in [j0, j1)} e_qj · V_j for NQ queries, keys in
// order; the accumulators live in `out` between key blocks. Lanes are 8 output
// dims; each widened V vector feeds NQ FMAs. When `sums`, also sums[q] += e_qj
// in the same order.
template <int NQ, int NV>
inline void ValuePass(const AttentionQuery* qs, size_t j0, size_t j1, size_t d0, float* sums) {
  const AttentionQuery& a = qs[0];
  __m256 acc[NQ][NV];
  float s[NQ];
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    s[q] = sums != nullptr ? sums[q] : 0.0f;
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_loadu_ps(qs[q].out + d0 + 8 * v);
  }
  const uint16_t* vrow = a.v + j0 * a.v_stride + d0;
  for (size_t j = j0; j < j1; ++j, vrow += a.v_stride) {
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
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(qs[q].out + d0 + 8 * v, acc[q][v]);
    if (sums != nullptr) sums[q] = s[q];
  }
}

// All dims of NQ queries over keys [j0, j1).
template <int NQ>
inline void ValueBlock(const AttentionQuery* qs, size_t j0, size_t j1, float* sums) {
  // Register budget (16 ymm): NQ·NV accumulators + NV widened values + one broadcast.
  constexpr int kValues = NQ == 1 ? 8 : NQ == 2 ? 4 : 2;
  const size_t hd = qs[0].head_dim;
  size_t d0 = 0;
  for (; d0 + 8 * kValues <= hd; d0 += 8 * kValues) ValuePass<NQ, kValues>(qs, j0, j1, d0, d0 == 0 ? sums : nullptr);
  for (; d0 < hd; d0 += 8) ValuePass<NQ, 1>(qs, j0, j1, d0, d0 == 0 ? sums : nullptr);
}

// Keys per value block: the block's V rows (64 · 2·head_dim bytes) stay in L1
// while every pass over the dims reads them; V rows of one kv head are
// kv_heads·head_dim apart in the cache, so without blocking each pass would
// stream the whole V of the head again from L2 or beyond.
constexpr size_t kValueBlock = 64;

template <int NQ>
void AttendGroupOf(const AttentionQuery* qs) {
  constexpr int kTiles = NQ == 1 ? 4 : NQ == 2 ? 4 : 2;
  size_t max_n = 0, min_n = qs[0].n_keys;
  for (int q = 0; q < NQ; ++q) {
    max_n = qs[q].n_keys > max_n ? qs[q].n_keys : max_n;
    min_n = qs[q].n_keys < min_n ? qs[q].n_keys : min_n;
  }
  const size_t hd = qs[0].head_dim, tiles = (max_n + kKeyTile - 1) / kKeyTile;
  const __m256 scale = _mm256_set1_ps(qs[0].scale);
  // Lanes past a query's own n_keys get scores too; nothing reads them.
  size_t t = 0;
  for (; t + kTiles <= tiles; t += kTiles) ScoreTiles<NQ, kTiles>(qs, t, scale);
  for (; t < tiles; ++t) ScoreTiles<NQ, 1>(qs, t, scale);
  for (int q = 0; q < NQ; ++q) ExpShifted(qs[q].scores, qs[q].n_keys);
  // e·V: keys [0, min_n) shared by all queries, block by block, then each
  // query alone over its own remaining keys (neighbouring tokens of a causal
  // block see a few more). Every chain runs over its keys in order, from 0.0f.
  float sums[NQ];
  for (int q = 0; q < NQ; ++q) {
    sums[q] = 0.0f;
    for (size_t d = 0; d < hd; d += 8) _mm256_storeu_ps(qs[q].out + d, _mm256_setzero_ps());
  }
  for (size_t j0 = 0; j0 < min_n; j0 += kValueBlock) {
    ValueBlock<NQ>(qs, j0, j0 + kValueBlock < min_n ? j0 + kValueBlock : min_n, sums);
  }
  for (int q = 0; q < NQ; ++q) {
    if (qs[q].n_keys > min_n) ValueBlock<1>(qs + q, min_n, qs[q].n_keys, sums + q);
    const __m256 vsum = _mm256_set1_ps(sums[q]);
    for (size_t d = 0; d < hd; d += 8) {
      _mm256_storeu_ps(qs[q].out + d, _mm256_div_ps(_mm256_loadu_ps(qs[q].out + d), vsum));
    }
  }
}

}  // namespace

void Attend(const AttentionQuery& a) { AttendGroupOf<1>(&a); }

void AttendGroup(const AttentionQuery* queries, size_t count) {
  switch (count) {
    case 1: AttendGroupOf<1>(queries); break;
    case 2: AttendGroupOf<2>(queries); break;
    case 3: AttendGroupOf<3>(queries); break;
    default: AttendGroupOf<4>(queries); break;
  }
}

}  // namespace kvmart::avx2
