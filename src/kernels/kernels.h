// Batch-invariant CPU kernels, numerics profile `cpu-fma-seq-v1` (docs/DESIGN.md §3).
//
// The contract every implementation honours, and the reason each rule exists:
//  * Every dot product is ONE sequential fused-multiply-add chain in increasing
//    index order starting from 0.0f. Vectorisation runs across outputs, never
//    across the reduction, so a token's result cannot depend on how many tokens
//    share the call, on the thread count or on the SIMD width.
//  * Transcendentals use KvExp (kernels/exp.h): the same operation sequence in
//    the scalar and vector paths, hence the same bits.
//  * Softmax: max, exp(s - max), a sequential sum in key order, then a
//    sequential e·V chain per output, divided by the sum.
// The portable path (plain C++, std::fma), the AVX2+FMA path and the AVX-512
// path (AVX2 plus a 512-bit matmul) produce identical bits for every input;
// tests check it. An artifact made on one path loads on any other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kernels/packed_matrix.h"
#include "kernels/thread_pool.h"

namespace kvmart {

enum class KernelPath { kPortable, kAvx2, kAvx512 };

const char* KernelPathName(KernelPath path);
// "portable", "avx2", "avx512" or "auto" (the fastest this CPU runs). A named
// path the CPU cannot run is FailedPrecondition.
StatusOr<KernelPath> ParseKernelPath(std::string_view name);
bool CpuHasAvx2Fma();
bool CpuHasAvx512();  // AVX-512F as well as AVX2+FMA
bool CpuSupports(KernelPath path);
// Every path this CPU runs, portable first.
std::vector<KernelPath> SupportedKernelPaths();

// Keys are cached in tiles of 8 tokens, each tile stored [head_dim][8], so that
// the score kernel reads 8 keys' d-th element with one load.
inline constexpr size_t kKeyTile = 8;

// Keys and values live in pages of `page_tokens` consecutive positions (the
// engine's KV page pool); a query walks its pages in position order. Pages are
// a whole number of value blocks (64 keys) and of 16-key vectors, so no vector
// load and no e·V block ever straddles two pages, and the walk changes no
// chain: paged and contiguous attention give identical bits.
inline constexpr size_t kAttentionPageQuantum = 64;

// One query head attending to keys [0, n_keys) of one kv head.
struct AttentionQuery {
  const float* q;                  // [head_dim]
  const uint16_t* const* k_pages;  // per page: its first key tile of this kv head, [head_dim][kKeyTile] bf16
  size_t k_tile_stride;            // elements between consecutive tiles within a page
  const uint16_t* const* v_pages;  // per page: its first token's values of this kv head, [head_dim] bf16
  size_t v_stride;                 // elements between consecutive tokens within a page
  size_t page_tokens;              // positions per page, a multiple of kAttentionPageQuantum
  size_t n_keys;
  size_t head_dim;                 // multiple of 8
  float scale;                     // multiplies each completed dot product
  float* scores;                   // scratch of at least RoundUp(n_keys, 8) floats
  float* out;                      // [head_dim]
};

// Key tile `tile` (keys [8·tile, 8·tile + 8)) and the value row of key j.
inline const uint16_t* KeyTileOf(const AttentionQuery& a, size_t tile) {
  const size_t pos = tile * kKeyTile;
  return a.k_pages[pos / a.page_tokens] + (pos % a.page_tokens) / kKeyTile * a.k_tile_stride;
}
inline const uint16_t* ValueRowOf(const AttentionQuery& a, size_t j) {
  return a.v_pages[j / a.page_tokens] + (j % a.page_tokens) * a.v_stride;
}

// The most queries one attend_group call takes.
inline constexpr size_t kMaxAttendGroup = 4;
// The most queries one attend_shared call takes.
inline constexpr size_t kMaxAttendShared = 64;

// One path's kernels. Each call is single-threaded; see the helpers below for
// the multi-threaded drivers.
struct KernelOps {
  KernelPath path;
  // y[i*ldy + n] = Σ_k x[i*ldx + k] · W[n][k] for i < m and rows n of panels [p0, p1).
  void (*matmul_panels)(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0,
                        size_t p1, float* y, size_t ldy);
  // y[i] = weight[i] * (x[i] * (1 / sqrt(Σ x² / n + eps))), Σ a sequential FMA chain.
  void (*rms_norm)(const float* x, const float* weight, size_t n, float eps, float* y);
  // out[i] = (g[i] / (1 + KvExp(-g[i]))) * u[i]
  void (*silu_mul)(const float* g, const float* u, size_t n, float* out);
  void (*attend)(const AttentionQuery& query);
  // `count` (1..kMaxAttendGroup) queries against the same kv head: they share
  // k_pages, k_tile_stride, v_pages, v_stride, page_tokens, head_dim and scale; each has its own q,
  // n_keys, scores and out, and every scores scratch holds RoundUp(max n_keys, 8)
  // floats. Each query's output is bit-identical to attend(query): the grouping
  // only shares the loads and widening of K and V between queries (GQA heads of
  // one kv head, neighbouring tokens), never reorders a query's chains.
  void (*attend_group)(const AttentionQuery* queries, size_t count);
  // `count` (1..kMaxAttendShared) queries against the same kv head whose block
  // tables point at the same pages for keys [0, shared_keys) (a multiple of
  // kAttentionPageQuantum, at most every query's n_keys): the shared prefix
  // of sessions continuing from one resident artifact, or the keys before a
  // prefill chunk for that chunk's tokens. Each key block of that range is
  // read from memory once for all of them instead of once per query group;
  // beyond it each query reads its own pages (queries in a row with the same
  // k_pages are grouped). Same fields as attend_group otherwise, and each
  // query's output is bit-identical to attend(query).
  void (*attend_shared)(const AttentionQuery* queries, size_t count, size_t shared_keys);
};

const KernelOps& GetKernelOps(KernelPath path);

// Multi-threaded matmul: threads split the output panels.
void MatMul(const KernelOps& ops, ThreadPool& pool, const float* x, size_t m, size_t ldx,
            const PackedMatrix& w, float* y, size_t ldy);

// Round-to-nearest-even f32 -> bf16 (identical for both paths).
void RoundToBf16(const float* x, size_t n, uint16_t* out);

// NeoX ("rotate half") rotary embedding of one head in place:
// x[i] <- x[i]·c[i] - x[i+h]·s[i]; x[i+h] <- x[i+h]·c[i] + x[i]·s[i], h = head_dim/2.
void ApplyRope(float* x, size_t head_dim, const float* cos_row, const float* sin_row);

}  // namespace kvmart
