// Token selection from logits. Greedy is argmax with ties to the lowest id.
// Sampling draws from a counter-based generator keyed by (seed, position), so a
// continuation is reproducible no matter how it was batched or resumed.
#pragma once

#include <cstdint>
#include <span>

namespace kvmart {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  uint32_t top_k = 0;        // 0: no limit
  float top_p = 1.0f;        // nucleus mass, (0, 1]
  uint64_t seed = 0;
};

int32_t Argmax(std::span<const float> logits);
// The uniform draw in [0, 1) used at `position`.
double SamplingUniform(uint64_t seed, uint64_t position);
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, uint64_t position);

}  // namespace kvmart
