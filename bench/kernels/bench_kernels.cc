// kvmart-bench-kernels: matmul GFLOP/s on the Qwen3-0.6B and 4B projection
// shapes, ours (batch-invariant) vs OpenBLAS cblas_sgemm on the same f32 data in
// the same run, plus the bf16-weight kernel, and M = 1 against the machine's
// measured streaming-read bandwidth.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/usage.h"
#include "common/machine_peak.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"
#if KVMART_HAVE_OPENBLAS
#include <cblas.h>
#include <unistd.h>
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
#endif

using namespace kvmart;

namespace {

template <typename F>
double TimeBest(F&& f, double min_seconds = 0.3) {
  double best = 1e30, total = 0;
  int reps = 0;
  while (total < min_seconds || reps < 3) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
    ++reps;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
#if KVMART_HAVE_OPENBLAS
  // OpenBLAS picks its kernels from the CPU model at load time. Debian 12's
  // 0.3.21 does not know recent (or virtualised) Xeons and falls back to its
  // SSE3 "Prescott" kernels, a baseline 3-6x too weak. Unless the caller chose
  // a core type, run again with the best kernels OpenBLAS has for this ISA:
  // SkylakeX (AVX-512) or Haswell (AVX2).
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && CpuHasAvx2Fma()) {
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    setenv("OPENBLAS_CORETYPE", avx512 ? "SkylakeX" : "Haswell", 1);
    execv("/proc/self/exe", argv);
    std::perror("re-exec with OPENBLAS_CORETYPE");  // fall through with the default
  }
#endif
  size_t threads = 2;
  bool quick = false;
  std::string kernels = "auto";
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-kernels [--threads N] [--kernels avx2|avx512|auto] [--quick]\n"
      "Batch-invariant matmul against OpenBLAS (its kernels for this CPU's ISA) and memory bandwidth.\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--threads") threads = std::stoul(usage.Value(argc, argv, &i));
    else if (std::string(argv[i]) == "--kernels") kernels = usage.Value(argc, argv, &i);
    else if (std::string(argv[i]) == "--quick") quick = true;
    else usage.Fail(std::string("unknown option ") + argv[i]);
  }
  auto path = ParseKernelPath(kernels);
  if (!path.ok() || *path == KernelPath::kPortable) {
    std::printf("this benchmark measures a SIMD path; %s\n",
                path.ok() ? "this CPU has neither AVX2+FMA nor AVX-512" : path.status().ToString().c_str());
    return 1;
  }
  const KernelOps& ops = GetKernelOps(*path);
  const bool wide = *path == KernelPath::kAvx512;
  ThreadPool pool(threads);
  const double peak = bench::MeasureFmaPeak(threads, wide);
  const double bw = bench::MeasureReadBandwidth(size_t{512} << 20, threads);
  std::printf("threads: %zu, kernels: %s\nmeasured f32 FMA peak: %.1f GFLOP/s (%s, %zu threads)\n", threads,
              KernelPathName(*path), peak / 1e9, wide ? "AVX-512" : "AVX2", threads);
  std::printf("measured streaming read bandwidth: %.1f GB/s\n\n", bw / 1e9);
#if KVMART_HAVE_OPENBLAS
  openblas_set_num_threads(static_cast<int>(threads));
  std::printf("OpenBLAS kernels: %s (OPENBLAS_CORETYPE to choose)\n\n", openblas_get_corename());
#endif
  struct Shape {
    const char* name;
    size_t n, k;
  };
  std::vector<Shape> shapes = {{"0.6B q_proj", 2048, 1024}, {"0.6B gate/up", 3072, 1024}, {"0.6B down", 1024, 3072},
                               {"4B q_proj", 4096, 2560},   {"4B gate/up", 9728, 2560},   {"4B down", 2560, 9728}};
  if (quick) shapes.resize(3);
  std::printf("%-14s %5s | %9s %9s %7s | %9s %7s | %s\n", "shape (NxK)", "M", "ours f32", "OpenBLAS", "ratio",
              "ours bf16", "%peak", "M=1 (cold weights): bf16 bytes/s vs read bw");
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  for (const auto& s : shapes) {
    std::vector<uint16_t> wb(s.n * s.k);
    std::vector<float> wf(s.n * s.k);
    for (size_t i = 0; i < wf.size(); ++i) {
      wb[i] = F32ToBf16(dist(rng));
      wf[i] = Bf16ToF32(wb[i]);
    }
    auto pb = PackedMatrix::Pack(wb.data(), WeightDtype::kBf16, s.n, s.k).value();
    auto pf = PackedMatrix::Pack(wf.data(), WeightDtype::kF32, s.n, s.k).value();
    for (size_t m : {size_t{1}, size_t{16}, size_t{256}}) {
      std::vector<float> x(m * s.k), y(m * s.n), yb(m * s.n);
      for (auto& v : x) v = dist(rng);
      const double flops = 2.0 * m * s.n * s.k;
      const double t_ours = TimeBest([&] { MatMul(ops, pool, x.data(), m, s.k, pf, y.data(), s.n); });
      double t_bf16 = TimeBest([&] { MatMul(ops, pool, x.data(), m, s.k, pb, yb.data(), s.n); });
      if (m == 1) {
        // Decode streams every weight from memory once per token: time M = 1
        // over enough copies of the matrix to defeat the caches.
        const size_t copies = std::max<size_t>(2, (size_t{768} << 20) / (2 * s.n * s.k));
        std::vector<PackedMatrix> cold;
        for (size_t c = 0; c < copies; ++c) cold.push_back(PackedMatrix::Pack(wb.data(), WeightDtype::kBf16, s.n, s.k).value());
        t_bf16 = TimeBest([&] {
          for (const auto& w : cold) MatMul(ops, pool, x.data(), 1, s.k, w, yb.data(), s.n);
        }) / double(copies);
      }
      double t_blas = 0;
#if KVMART_HAVE_OPENBLAS
      t_blas = TimeBest([&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(s.n),
                    static_cast<int>(s.k), 1.0f, x.data(), static_cast<int>(s.k), wf.data(), static_cast<int>(s.k),
                    0.0f, y.data(), static_cast<int>(s.n));
      });
#endif
      std::printf("%-14s %5zu | %9.1f %9.1f %7.2f | %9.1f %6.0f%% |", s.name, m, flops / t_ours / 1e9,
                  t_blas > 0 ? flops / t_blas / 1e9 : 0.0, t_blas > 0 ? t_blas / t_ours : 0.0,
                  flops / t_bf16 / 1e9, 100.0 * flops / t_bf16 / peak);
      if (m == 1) {
        const double bytes = 2.0 * s.n * s.k;
        std::printf(" %.1f GB/s = %.2f of read bw", bytes / t_bf16 / 1e9, bytes / t_bf16 / bw);
      }
      std::printf("\n");
    }
  }
  std::printf("\nGFLOP/s columns; ratio = OpenBLAS time / ours (>1: ours faster). ours f32 and OpenBLAS use\n"
              "the same f32 weights; ours bf16 reads bf16 weights (half the bytes) with identical results.\n");
  return 0;
}
