// Measured machine limits for benchmark ratios: the f32 FMA peak (independent
// AVX2 FMA chains on every thread) and streaming read bandwidth.
#pragma once

#include <cstddef>

namespace kvmart::bench {

// FLOP/s of AVX2 FMAs (2 FLOP per lane) with `threads` threads, measured.
double MeasureFmaPeak(size_t threads);
// Bytes/s reading a buffer of `bytes` (larger than the caches) with `threads` threads.
double MeasureReadBandwidth(size_t bytes, size_t threads);

}  // namespace kvmart::bench
