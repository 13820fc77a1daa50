#include "kernels/kernels.h"

#include <string>

#include "kernels/bf16.h"
#include "kernels/portable_ops.h"

namespace kvmart {

const char* KernelPathName(KernelPath path) { return path == KernelPath::kAvx2 ? "avx2" : "portable"; }

bool CpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

StatusOr<KernelPath> ParseKernelPath(std::string_view name) {
  if (name == "portable") return KernelPath::kPortable;
  if (name == "avx2" || name == "auto") {
    if (CpuHasAvx2Fma()) return KernelPath::kAvx2;
    if (name == "auto") return KernelPath::kPortable;
    return Status::FailedPrecondition("--kernels avx2: this CPU lacks AVX2 or FMA");
  }
  return Status::InvalidArgument("unknown kernel path '" + std::string(name) + "' (portable|avx2|auto)");
}

const KernelOps& GetKernelOps(KernelPath path) {
  static const KernelOps kPortable = {KernelPath::kPortable, portable::MatMulPanels, portable::RmsNorm,
                                      portable::SiluMul, portable::Attend,
                                      portable::AttendGroup};
  static const KernelOps kAvx2 = {KernelPath::kAvx2, avx2::MatMulPanels, avx2::RmsNorm, avx2::SiluMul,
                                  avx2::Attend, avx2::AttendGroup};
  return path == KernelPath::kAvx2 ? kAvx2 : kPortable;
}

void MatMul(const KernelOps& ops, ThreadPool& pool, const float* x, size_t m, size_t ldx,
            const PackedMatrix& w, float* y, size_t ldy) {
  // Grain of 4 panels keeps the small-batch micro-kernel's 4-panel groups whole.
  pool.ParallelFor(w.num_panels(), 4, [&](size_t p0, size_t p1) {
    ops.matmul_panels(x, m, ldx, w, p0, p1, y, ldy);
  });
}

void RoundToBf16(const float* x, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = F32ToBf16(x[i]);
}

void ApplyRope(float* x, size_t head_dim, const float* cos_row, const float* sin_row) {
  const size_t h = head_dim / 2;
  for (size_t i = 0; i < h; ++i) {
    const float a = x[i], b = x[i + h];
    x[i] = a * cos_row[i] - b * sin_row[i];
    x[i + h] = b * cos_row[i] + a * sin_row[i];
  }
}

}  // namespace kvmart
