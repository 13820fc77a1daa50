// An independent, naive Qwen3 forward pass for tests: plain loops over the
// checkpoint's tensors, double accumulation, std::exp — no engine kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "model/safetensors.h"
#include "model/config.h"

namespace kvmart::testing {

// Logits after the last of `tokens` (K/V rounded to bf16 as the model defines).
std::vector<double> ReferenceLogits(const Checkpoint& ck, const ModelConfig& c, const std::vector<int32_t>& tokens);

}  // namespace kvmart::testing
