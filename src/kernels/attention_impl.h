// Internal: grouped attention written once over a vector type, instantiated by
// the avx2 path (8 lanes) and the avx512 path (16 lanes). Not part of the
// module's contract. Vector width never touches a chain: lanes are keys (one
// key tile = 8 lanes) in the scores and output dims in e·V, and every
// (query, key) dot product and every (query, dim) e·V sum is one sequential
// FMA chain in index order from 0.0f — so both instantiations, and the
// portable path, give identical bits.
//
// V provides: vec; kLanes (8 or 16); Zero(); Set1(f); Broadcast(const float*);
// Fma(a, b, c) = a·b + c; Mul; Div; Loadu/Storeu(float*); StoreScores(p, v,
// lanes) (lanes = 8 or kLanes); LoadBf16(p) (kLanes consecutive bf16 -> f32);
// LoadKeys<kTail>(tile, stride) (the d-th row of `tiles` consecutive key tiles,
// kLanes/8 of them; with kTail only the first is real); ExpShifted(scores, n).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/bf16.h"
#include "kernels/kernels.h"

namespace kvmart::attention_impl {

// Scores of NQ queries for NG groups of key tiles starting at tile t (a group:
// kLanes/8 tiles; with kTail, the last tile alone).
template <class V, int NQ, int NG, bool kTail>
inline void ScoreTiles(const AttentionQuery* qs, size_t t, typename V::vec scale) {
  constexpr size_t kTilesPerVec = V::kLanes / kKeyTile;
  const AttentionQuery& a = qs[0];
  const uint16_t* kt[NG];
  typename V::vec acc[NQ][NG];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < NG; ++i) {
    kt[i] = KeyTileOf(a, t + i * kTilesPerVec);  // its kLanes/8 tiles share a page
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) acc[q][i] = V::Zero();
  }
  constexpr size_t kLanesStored = kTail ? kKeyTile : V::kLanes;
  for (size_t d = 0; d < a.head_dim; ++d) {
    typename V::vec kv[NG];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NG; ++i) kv[i] = V::template LoadKeys<kTail>(kt[i] + d * kKeyTile, a.k_tile_stride);
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) {
      const typename V::vec qd = V::Broadcast(qs[q].q + d);
      _Pragma("GCC unroll 8")
      for (int i = 0; i < NG; ++i) acc[q][i] = V::Fma(qd, kv[i], acc[q][i]);
    }
  }
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    _Pragma("GCC unroll 8")
    for (int i = 0; i < NG; ++i) {
      V::StoreScores(qs[q].scores + (t + i * kTilesPerVec) * kKeyTile, V::Mul(acc[q][i], scale), kLanesStored);
    }
  }
}

// out_q[d0, d0 + kLanes·NV) += Σ_{j in [j0, j1)} e_qj · V_j for NQ queries, keys
// in order; the accumulators live in `out` between key blocks. When `sums`,
// also sums[q] += e_qj in the same order.
template <class V, int NQ, int NV>
inline void ValuePass(const AttentionQuery* qs, size_t j0, size_t j1, size_t d0, float* sums) {
  const AttentionQuery& a = qs[0];
  typename V::vec acc[NQ][NV];
  float s[NQ];
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    s[q] = sums != nullptr ? sums[q] : 0.0f;
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) acc[q][v] = V::Loadu(qs[q].out + d0 + V::kLanes * v);
  }
  const uint16_t* vrow = ValueRowOf(a, j0) + d0;  // [j0, j1) lies in one page
  for (size_t j = j0; j < j1; ++j, vrow += a.v_stride) {
    typename V::vec vv[NV];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) vv[v] = V::LoadBf16(vrow + V::kLanes * v);
    _Pragma("GCC unroll 8")
    for (int q = 0; q < NQ; ++q) {
      const typename V::vec e = V::Broadcast(qs[q].scores + j);
      _Pragma("GCC unroll 8")
      for (int v = 0; v < NV; ++v) acc[q][v] = V::Fma(e, vv[v], acc[q][v]);
      if (sums != nullptr) s[q] = s[q] + qs[q].scores[j];
    }
  }
  _Pragma("GCC unroll 8")
  for (int q = 0; q < NQ; ++q) {
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; ++v) V::Storeu(qs[q].out + d0 + V::kLanes * v, acc[q][v]);
    if (sums != nullptr) sums[q] = s[q];
  }
}

// Dims [d0, d1) of nq queries over keys [j0, j1), one scalar FMA chain each:
// the same chains as the vector passes.
inline void ValuePassScalar(const AttentionQuery* qs, int nq, size_t j0, size_t j1, size_t d0, size_t d1, float* sums) {
  for (int q = 0; q < nq; ++q) {
    for (size_t j = j0; j < j1; ++j) {
      const float e = qs[q].scores[j];
      const uint16_t* row = ValueRowOf(qs[q], j);
      for (size_t d = d0; d < d1; ++d) qs[q].out[d] = std::fma(e, Bf16ToF32(row[d]), qs[q].out[d]);
      if (sums != nullptr) sums[q] = sums[q] + e;
    }
  }
}

// All dims [0, head_dim) of NQ queries over keys [j0, j1), NV vectors a pass
// while they fit, then one vector a pass.
template <class V, int NQ, int NV>
inline void ValueBlock(const AttentionQuery* qs, size_t j0, size_t j1, float* sums) {
  // Callers pass ranges inside one kValueBlock-aligned block, hence one page.
  const size_t hd = qs[0].head_dim;
  size_t d0 = 0;
  for (; d0 + V::kLanes * NV <= hd; d0 += V::kLanes * NV) ValuePass<V, NQ, NV>(qs, j0, j1, d0, d0 == 0 ? sums : nullptr);
  for (; d0 + V::kLanes <= hd; d0 += V::kLanes) ValuePass<V, NQ, 1>(qs, j0, j1, d0, d0 == 0 ? sums : nullptr);
  // head_dim is a multiple of 8; a 16-lane path may have 8 dims left.
  if (d0 < hd) ValuePassScalar(qs, NQ, j0, j1, d0, hd, d0 == 0 ? sums : nullptr);
}

// Keys per value block: the block's V rows (64 · 2·head_dim bytes) stay in L1
// while every pass over the dims reads them.
inline constexpr size_t kValueBlock = 64;
static_assert(kAttentionPageQuantum % kValueBlock == 0 && kAttentionPageQuantum % 16 == 0,
              "a page must hold whole value blocks and whole 16-key vectors");

// Register budget: NQ·NG score accumulators + NG keys + a broadcast, and
// NQ·NV value accumulators + NV values + a broadcast, within V::kRegisters.
template <class V, int NQ>
struct Blocking {
  static constexpr int kGroups = V::kRegisters == 32 ? (NQ <= 2 ? 8 : 4) : (NQ <= 2 ? 4 : 2);
  static constexpr int kValues = V::kRegisters == 32 ? (NQ == 1 ? 8 : 4) : (NQ == 1 ? 8 : NQ == 2 ? 4 : 2);
};

// Scores of NQ queries for key tiles [t0, t1), all read through qs[0]'s pages.
// Lanes past a query's own n_keys get scores too; nothing reads them.
template <class V, int NQ>
inline void ScoreRange(const AttentionQuery* qs, size_t t0, size_t t1) {
  constexpr int kGroups = Blocking<V, NQ>::kGroups;
  constexpr size_t kTilesPerVec = V::kLanes / kKeyTile;
  const typename V::vec scale = V::Set1(qs[0].scale);
  size_t t = t0;
  for (; t + kGroups * kTilesPerVec <= t1; t += kGroups * kTilesPerVec) ScoreTiles<V, NQ, kGroups, false>(qs, t, scale);
  for (; t + kTilesPerVec <= t1; t += kTilesPerVec) ScoreTiles<V, NQ, 1, false>(qs, t, scale);
  for (; t < t1; ++t) ScoreTiles<V, NQ, 1, true>(qs, t, scale);
}

// e·V of NQ queries over keys [j0, j1), which all of them attend to, read
// through qs[0]'s pages, one value block at a time.
template <class V, int NQ>
inline void ValueRange(const AttentionQuery* qs, size_t j0, size_t j1, float* sums) {
  while (j0 < j1) {
    const size_t block_end = (j0 / kValueBlock + 1) * kValueBlock;
    const size_t end = block_end < j1 ? block_end : j1;
    ValueBlock<V, NQ, Blocking<V, NQ>::kValues>(qs, j0, end, sums);
    j0 = end;
  }
}

// Attention of NQ queries with one block table over the keys from `from` (a
// multiple of kAttentionPageQuantum) to each one's n_keys, continuing chains
// that keys [0, from) began: scores of [0, from) are already in each query's
// scratch, and `out`/`sums` hold the e·V accumulators of those keys (unless
// `scores_only`, when the value phase is not run yet). Keys [from, min n_keys)
// are shared by the NQ queries block by block, then each query goes alone over
// its own remaining keys (neighbouring tokens of a causal block see a few
// more). Every chain runs over its keys in order.
template <class V, int NQ>
inline void ScoreTail(const AttentionQuery* qs, size_t from) {
  size_t max_n = 0;
  for (int q = 0; q < NQ; ++q) max_n = qs[q].n_keys > max_n ? qs[q].n_keys : max_n;
  ScoreRange<V, NQ>(qs, from / kKeyTile, (max_n + kKeyTile - 1) / kKeyTile);
}

template <class V, int NQ>
inline void ValueTail(const AttentionQuery* qs, size_t from, float* sums) {
  size_t min_n = qs[0].n_keys;
  for (int q = 0; q < NQ; ++q) min_n = qs[q].n_keys < min_n ? qs[q].n_keys : min_n;
  ValueRange<V, NQ>(qs, from, min_n, sums);
  for (int q = 0; q < NQ; ++q) ValueRange<V, 1>(qs + q, min_n, qs[q].n_keys, sums + q);
}

inline void StartValues(const AttentionQuery* qs, size_t count, float* sums) {
  for (size_t q = 0; q < count; ++q) {
    sums[q] = 0.0f;
    for (size_t d = 0; d < qs[q].head_dim; ++d) qs[q].out[d] = 0.0f;
  }
}

inline void FinishValues(const AttentionQuery* qs, size_t count, const float* sums) {
  for (size_t q = 0; q < count; ++q) {
    for (size_t d = 0; d < qs[q].head_dim; ++d) qs[q].out[d] = qs[q].out[d] / sums[q];
  }
}

template <class V, int NQ>
void AttendGroupOf(const AttentionQuery* qs) {
  ScoreTail<V, NQ>(qs, 0);
  for (int q = 0; q < NQ; ++q) V::ExpShifted(qs[q].scores, qs[q].n_keys);
  float sums[NQ];
  StartValues(qs, NQ, sums);
  ValueTail<V, NQ>(qs, 0, sums);
  FinishValues(qs, NQ, sums);
}

// Runtime count (1..kMaxAttendGroup) to the template.
template <class V, class F>
inline void WithCount(size_t count, F&& f) {
  switch (count) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
  }
}

template <class V>
void AttendGroup(const AttentionQuery* queries, size_t count) {
  WithCount<V>(count, [&](auto nq) { AttendGroupOf<V, decltype(nq)::value>(queries); });
}

// Keys per chunk of the shared range: its K (chunk · head_dim · 2 bytes, 64 KiB
// at head_dim 128) stays in L2 while every group of queries scores against it.
inline constexpr size_t kSharedChunk = 256;
static_assert(kSharedChunk % kAttentionPageQuantum == 0, "a chunk is whole pages");

// Queries of several sessions (or many tokens of one) against one kv head,
// whose block tables agree on keys [0, shared): each key chunk of that range is
// read from memory once and scored, then weighted, by every group of
// kMaxAttendGroup queries while it is in cache; the rest of each query's keys
// go through its own table with its neighbours of the same table. Only loads
// are shared: every (query, key) dot product is its own chain from 0.0f, the
// softmax of each query runs over all its scores at once, and every e·V chain
// runs over the query's keys in order, carried through `out` and `sums`
// across chunks — so each query's bits are those of attend(query).
template <class V>
void AttendShared(const AttentionQuery* qs, size_t count, size_t shared) {
  float sums[kMaxAttendShared];
  for (size_t c0 = 0; c0 < shared; c0 += kSharedChunk) {
    const size_t c1 = c0 + kSharedChunk < shared ? c0 + kSharedChunk : shared;
    for (size_t g = 0; g < count; g += kMaxAttendGroup) {
      const size_t n = count - g < kMaxAttendGroup ? count - g : kMaxAttendGroup;
      WithCount<V>(n, [&](auto nq) { ScoreRange<V, decltype(nq)::value>(qs + g, c0 / kKeyTile, c1 / kKeyTile); });
    }
  }
  // Runs of consecutive queries on one table, in groups of up to kMaxAttendGroup.
  auto for_each_run = [&](auto&& f) {
    for (size_t r0 = 0; r0 < count;) {
      size_t r1 = r0 + 1;
      while (r1 < count && r1 - r0 < kMaxAttendGroup && qs[r1].k_pages == qs[r0].k_pages) ++r1;
      f(r0, r1 - r0);
      r0 = r1;
    }
  };
  for_each_run([&](size_t r0, size_t n) {
    WithCount<V>(n, [&](auto nq) { ScoreTail<V, decltype(nq)::value>(qs + r0, shared); });
  });
  for (size_t q = 0; q < count; ++q) V::ExpShifted(qs[q].scores, qs[q].n_keys);
  StartValues(qs, count, sums);
  for (size_t c0 = 0; c0 < shared; c0 += kSharedChunk) {
    const size_t c1 = c0 + kSharedChunk < shared ? c0 + kSharedChunk : shared;
    for (size_t g = 0; g < count; g += kMaxAttendGroup) {
      const size_t n = count - g < kMaxAttendGroup ? count - g : kMaxAttendGroup;
      WithCount<V>(n, [&](auto nq) { ValueRange<V, decltype(nq)::value>(qs + g, c0, c1, sums + g); });
    }
  }
  for_each_run([&](size_t r0, size_t n) {
    WithCount<V>(n, [&](auto nq) { ValueTail<V, decltype(nq)::value>(qs + r0, shared, sums + r0); });
  });
  FinishValues(qs, count, sums);
}

}  // namespace kvmart::attention_impl
