// Internal: the kernel paths' entry points, gathered into KernelOps tables by
// kernels.cc. Not part of the module's public contract.
#pragma once

#include "kernels/kernels.h"

namespace kvmart::portable {
void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                  float* y, size_t ldy);
void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* y);
void SiluMul(const float* g, const float* u, size_t n, float* out);
void Attend(const AttentionQuery& a);
void AttendGroup(const AttentionQuery* queries, size_t count);
void AttendShared(const AttentionQuery* queries, size_t count, size_t shared_keys);
}  // namespace kvmart::portable

namespace kvmart::avx2 {
void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                  float* y, size_t ldy);
void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* y);
void SiluMul(const float* g, const float* u, size_t n, float* out);
void Attend(const AttentionQuery& a);
void AttendGroup(const AttentionQuery* queries, size_t count);
void AttendShared(const AttentionQuery* queries, size_t count, size_t shared_keys);
// scores[j] <- KvExp(scores[j] - max) over [0, n), vectorised (shared by avx512).
void ExpShiftedScores(float* scores, size_t n);
}  // namespace kvmart::avx2

namespace kvmart::avx512 {
void MatMulPanels(const float* x, size_t m, size_t ldx, const PackedMatrix& w, size_t p0, size_t p1,
                  float* y, size_t ldy);
void Attend(const AttentionQuery& a);
void AttendGroup(const AttentionQuery* queries, size_t count);
void AttendShared(const AttentionQuery* queries, size_t count, size_t shared_keys);
}  // namespace kvmart::avx512
