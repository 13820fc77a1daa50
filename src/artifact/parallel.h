// A small parallel-for over independent work items (block decode/encode).
//
// No global pool: each call starts at most `threads` std::threads and joins them
// before returning, so nothing outlives the call and there is no shared state.
#pragma once

#include <cstddef>
#include <functional>

#include "base/status.h"

namespace kvmart::artifact {

// Runs fn(i) for every i in [0, n) on up to `threads` threads (0 = hardware
// concurrency). Returns the error of the lowest-index failing item, if any;
// items after a failure may be skipped.
Status ParallelFor(size_t n, unsigned threads, const std::function<Status(size_t)>& fn);

}  // namespace kvmart::artifact
