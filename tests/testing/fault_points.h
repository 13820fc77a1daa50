// Which fault points a fault-injection test visits: every one in a normal
// build; under the sanitizers (about 6x slower) every KVMART_FAULT_STRIDE-th
// and always the last, so those runs do not dominate the unit tests. The
// Release build in CI visits them all.
#pragma once

#include <cstdint>

#ifndef KVMART_FAULT_STRIDE
#define KVMART_FAULT_STRIDE 1
#endif

namespace kvmart::testing {

// The point after k among 1..last (last + 1 ends the loop).
inline uint64_t NextFaultPoint(uint64_t k, uint64_t last) {
  const uint64_t next = k + KVMART_FAULT_STRIDE;
  return k < last && next > last ? last : next;
}

}  // namespace kvmart::testing
