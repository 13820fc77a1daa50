// Qwen3 dense model configuration, read from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart {

struct ModelConfig {
  uint32_t hidden_size = 0;
  uint32_t intermediate_size = 0;
  uint32_t num_hidden_layers = 0;
  uint32_t num_attention_heads = 0;
  uint32_t num_key_value_heads = 0;
  uint32_t head_dim = 0;
  uint32_t vocab_size = 0;
  uint32_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 1e6;
  bool tie_word_embeddings = true;
  std::string torch_dtype = "bfloat16";
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  uint32_t q_dim() const { return num_attention_heads * head_dim; }
  uint32_t kv_dim() const { return num_key_value_heads * head_dim; }
  // KV bytes per token in bf16: layers × (K + V) × kv_heads × head_dim × 2.
  uint64_t kv_bytes_per_token() const { return uint64_t{num_hidden_layers} * 2 * kv_dim() * 2; }
  // Weights in the transformer blocks plus lm_head (embedding lookup costs no FLOPs).
  uint64_t matmul_params_per_token() const;

  // Canonical JSON of the fields that determine the computation (sorted keys,
  // no whitespace); its SHA-256 is the config digest.
  std::string CanonicalJson() const;
  // A full config.json in the layout of the Qwen3 releases.
  std::string ToHfJson() const;
};

// Parses and validates config.json text. `source` names the file in errors.
StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Named shapes: "tiny" and "small" (tests), "qwen3-0.6b", "qwen3-4b".
StatusOr<ModelConfig> ShapeByName(std::string_view name);

}  // namespace kvmart
