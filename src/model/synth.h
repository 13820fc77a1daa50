// Synthetic Qwen3 checkpoints in the exact Hugging Face layout (config.json,
// model.safetensors or shards + index, tokenizer files), with random weights
// scaled so activations stay O(1) through every layer. Model weights are never
// downloaded: tests and benchmarks use these.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "model/config.h"

namespace kvmart {

struct SynthOptions {
  std::string shape = "tiny";      // see ShapeByName
  uint64_t seed = 1;
  std::string dtype = "bf16";      // bf16 | f16 | f32
  std::string out_dir;
  std::string tokenizer_dir;       // copies tokenizer.json / tokenizer_config.json from here if set
  uint64_t max_shard_bytes = 0;    // 0: single file up to 4 GiB, else shards of at most this size
  size_t threads = 0;              // 0 = all cores
  std::function<void(uint64_t done, uint64_t total)> progress;  // bytes written
};

Status WriteSyntheticCheckpoint(const SynthOptions& options);

}  // namespace kvmart
