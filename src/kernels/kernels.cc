#include "kernels/kernels.h"

#include <string>

#include "kernels/bf16.h"
#include "kernels/portable_ops.h"

namespace kvmart {

const char* KernelPathName(KernelPath path) {
  switch (path) {
    case KernelPath::kAvx2: return "avx2";
    case KernelPath::kAvx512: return "avx512";
    default: return "portable";
  }
}

bool CpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  return CpuHasAvx2Fma() && __builtin_cpu_supports("avx512f");
}

bool CpuSupports(KernelPath path) {
  switch (path) {
    case KernelPath::kAvx2: return CpuHasAvx2Fma();
    case KernelPath::kAvx512: return CpuHasAvx512();
    default: return true;
  }
}

std::vector<KernelPath> SupportedKernelPaths() {
  std::vector<KernelPath> paths = {KernelPath::kPortable};
  for (KernelPath p : {KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (CpuSupports(p)) paths.push_back(p);
  }
  return paths;
}

StatusOr<KernelPath> ParseKernelPath(std::string_view name) {
  if (name == "auto") return SupportedKernelPaths().back();
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (name != KernelPathName(p)) continue;
    if (!CpuSupports(p)) {
      return Status::FailedPrecondition("--kernels " + std::string(name) + ": this CPU lacks " +
                                        (p == KernelPath::kAvx2 ? "AVX2 or FMA" : "AVX-512F"));
    }
    return p;
  }
  return Status::InvalidArgument("unknown kernel path '" + std::string(name) + "' (portable|avx2|avx512|auto)");
}

const KernelOps& GetKernelOps(KernelPath path) {
  static const KernelOps kPortable = {KernelPath::kPortable, portable::MatMulPanels, portable::RmsNorm,
                                      portable::SiluMul, portable::Attend,
                                      portable::AttendGroup, portable::AttendShared};
  static const KernelOps kAvx2 = {KernelPath::kAvx2, avx2::MatMulPanels, avx2::RmsNorm, avx2::SiluMul,
                                  avx2::Attend, avx2::AttendGroup, avx2::AttendShared};
  static const KernelOps kAvx512 = {KernelPath::kAvx512, avx512::MatMulPanels, avx2::RmsNorm, avx2::SiluMul,
                                    avx512::Attend, avx512::AttendGroup, avx512::AttendShared};
  switch (path) {
    case KernelPath::kAvx2: return kAvx2;
    case KernelPath::kAvx512: return kAvx512;
    default: return kPortable;
  }
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
