// Measured machine limits for benchmark ratios: the f32 FMA peak (independent
// FMA chains on every thread) and streaming read bandwidth.
#pragma once

#include <cstddef>

namespace kvmart::bench {

// FLOP/s of AVX2 (or, with `avx512`, AVX-512) FMAs, 2 FLOP per lane, with
// `threads` threads, measured.
double MeasureFmaPeak(size_t threads, bool avx512 = false);
// Bytes/s reading a buffer of `bytes` (larger than the caches) with `threads` threads.
double MeasureReadBandwidth(size_t bytes, size_t threads);

}  // namespace kvmart::bench
