#include "common/machine_peak.h"

#include <immintrin.h>

#include <chrono>
#include <thread>
#include <vector>

#include "kernels/aligned_buffer.h"

namespace kvmart::bench {
namespace {

__attribute__((target("avx2,fma"))) float FmaLoop(size_t iters) {
  __m256 a[10];
  for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(0.001f * i);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (size_t k = 0; k < iters; ++k) {
    for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx2"))) float SumBytes(const float* p, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  return out[0];
}

}  // namespace

double MeasureFmaPeak(size_t threads) {
  const size_t iters = 100'000'000 / 10;
  std::vector<std::thread> ts;
  std::vector<float> sink(threads);
  auto t0 = std::chrono::steady_clock::now();
  for (size_t t = 0; t < threads; ++t) ts.emplace_back([&, t] { sink[t] = FmaLoop(iters); });
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];
  (void)keep;
  return double(threads) * iters * 10 * 8 * 2 / secs;
}

double MeasureReadBandwidth(size_t bytes, size_t threads) {
  AlignedBuffer<float> buf(bytes / 4);
  for (size_t i = 0; i < buf.size(); i += 1024) buf[i] = 1.0f;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<std::thread> ts;
    std::vector<float> sink(threads);
    const size_t per = buf.size() / threads / 32 * 32;
    auto t0 = std::chrono::steady_clock::now();
    for (size_t t = 0; t < threads; ++t) ts.emplace_back([&, t] { sink[t] = SumBytes(buf.data() + t * per, per); });
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(per * threads * 4) / secs);
  }
  return best;
}

}  // namespace kvmart::bench
