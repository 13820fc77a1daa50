// The portable path: plain C++ with std::fma, the reference for the exactness
// contract. Any platform with IEEE binary32 and a correctly rounded fma gives
// these bits; the AVX2 path must match them exactly.
#include <cmath>
#include <cstring>

#include "kernels/bf16.h"
#include "kernels/exp.h"
#include "kernels/kernels.h"
#include "kernels/portable_ops.h"

namespace kvmart::portable {

// std::fma is exactly specified (one rounding), so a clone that inlines the
// hardware instruction gives the same bits as the library call; the clone only
// removes the call overhead on CPUs that have FMA.
// Under ThreadSanitizer there are no clones: the dynamic loader runs a clone's
// ifunc resolver before the sanitizer's runtime is up, and the instrumented
// resolver crashes the program at load.
#if defined(__SANITIZE_THREAD__)
#define KVMART_FMA_CLONES
#else
#define KVMART_FMA_CLONES __attribute__((target_clones("fma", "default")))
#endif

KVMART_FMA_CLONES void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                  float* y, size_t ldy) {
  constexpr size_t R = PackedMatrix::kPanelRows;
  const size_t k_len = w.cols();
  for (size_t i = 0; i < m; ++i) {
    const float* xi = x + i * ldx;
    for (size_t p = p0; p < p1; ++p) {
      float acc[R] = {};
      if (w.format() == PackedMatrix::Format::kBf16) {
        const uint16_t* panel = w.bf16_panel(p);
        for (size_t k = 0; k < k_len; ++k) {
          for (size_t r = 0; r < R; ++r) {
            acc[r] = std::fma(xi[k], Bf16ToF32(panel[k * R + Bf16PanelLane(r)]), acc[r]);
          }
        }
      } else {
        const float* panel = w.f32_panel(p);
        for (size_t k = 0; k < k_len; ++k) {
          for (size_t r = 0; r < R; ++r) acc[r] = std::fma(xi[k], panel[k * R + r], acc[r]);
        }
      }
      std::memcpy(y + i * ldy + p * R, acc, sizeof(acc));
    }
  }
}

void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* y) {
  float ss = 0.0f;
  for (size_t i = 0; i < n; ++i) ss = std::fma(x[i], x[i], ss);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (size_t i = 0; i < n; ++i) y[i] = weight[i] * (x[i] * inv);
}

void SiluMul(const float* g, const float* u, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = (g[i] / (1.0f + KvExp(-g[i]))) * u[i];
}

KVMART_FMA_CLONES void Attend(const AttentionQuery& a) {
  const size_t n = a.n_keys, hd = a.head_dim;
  for (size_t j = 0; j < n; ++j) {
    const uint16_t* tile = KeyTileOf(a, j / kKeyTile);
    const size_t lane = j % kKeyTile;
    float acc = 0.0f;
    for (size_t d = 0; d < hd; ++d) acc = std::fma(a.q[d], Bf16ToF32(tile[d * kKeyTile + lane]), acc);
    a.scores[j] = acc * a.scale;
  }
  float mx = a.scores[0];
  for (size_t j = 1; j < n; ++j) mx = a.scores[j] > mx ? a.scores[j] : mx;
  for (size_t j = 0; j < n; ++j) a.scores[j] = KvExp(a.scores[j] - mx);
  float sum = 0.0f;
  for (size_t j = 0; j < n; ++j) sum = sum + a.scores[j];
  for (size_t d = 0; d < hd; ++d) a.out[d] = 0.0f;
  for (size_t j = 0; j < n; ++j) {
    const uint16_t* vj = ValueRowOf(a, j);
    for (size_t d = 0; d < hd; ++d) a.out[d] = std::fma(a.scores[j], Bf16ToF32(vj[d]), a.out[d]);
  }
  for (size_t d = 0; d < hd; ++d) a.out[d] = a.out[d] / sum;
}

// The portable path has no loads to share: one query after another.
void AttendGroup(const AttentionQuery* queries, size_t count) {
  for (size_t i = 0; i < count; ++i) Attend(queries[i]);
}

// The reference path shares no loads: each query walks its own table, which
// reads the same pages as the others' over the shared keys.
void AttendShared(const AttentionQuery* queries, size_t count, size_t /*shared_keys*/) {
  for (size_t i = 0; i < count; ++i) Attend(queries[i]);
}

}  // namespace kvmart::portable
