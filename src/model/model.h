// A loaded Qwen3 dense model: configuration, memory-mapped checkpoint, weights
// repacked for the kernels, and the digests that bind KV caches to these exact
// weights (docs/DESIGN.md §4 profile).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/packed_matrix.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace kvmart {

struct LayerWeights {
  std::vector<float> input_norm, post_attention_norm, q_norm, k_norm;  // widened to f32
  PackedMatrix q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
};

struct ModelLoadOptions {
  size_t threads = 0;             // for packing; 0 = all cores
  bool use_digest_cache = true;   // read/write <dir>/.kvmart-digest.json
};

class Model {
 public:
  // Loads DIR/config.json, the safetensors weights and (if present)
  // DIR/tokenizer.json. Errors name the file and tensor at fault.
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& dir, const ModelLoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const std::vector<float>& final_norm() const { return final_norm_; }
  const PackedMatrix& lm_head() const { return lm_head_; }
  // Writes the embedding row of `token` (widened to f32) to out[hidden_size].
  void EmbedRow(int32_t token, float* out) const;

  // Hex SHA-256 digests: weights (names, dtypes, shapes, bytes in name order),
  // canonical config, tokenizer.json bytes ("" when the directory has none).
  const std::string& weights_digest() const { return weights_digest_; }
  const std::string& config_digest() const { return config_digest_; }
  const std::string& tokenizer_digest() const { return tokenizer_digest_; }

 private:
  Model() = default;
  Status LoadWeights(size_t threads);

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  const TensorView* embed_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
  PackedMatrix lm_head_;
  std::string weights_digest_, config_digest_, tokenizer_digest_;
};

// SHA-256 over every tensor in name order: for each, the name, the dtype, the
// shape and the bytes, each length-prefixed (see docs/ARTIFACT.md). Cached in
// DIR/.kvmart-digest.json keyed by file names, sizes and mtimes.
StatusOr<std::string> ComputeWeightsDigest(const Checkpoint& checkpoint, bool use_cache);

}  // namespace kvmart
