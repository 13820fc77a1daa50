// Reader for the safetensors format and Hugging Face checkpoint directories
// (single `model.safetensors`, or shards listed by `model.safetensors.index.json`).
//
// Every size and offset in a header is checked against the real file before use:
// a truncated file, a bad header, or a tensor whose bytes fall outside the file is
// a Corruption error naming the file and tensor, never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/packed_matrix.h"
#include "model/mapped_file.h"

namespace kvmart {

struct TensorView {
  std::string name;
  std::string dtype;  // "BF16", "F16", "F32", ... as in the file
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::string file;  // file name within the checkpoint directory

  uint64_t numel() const;
  // The kernel dtype, or an error naming the tensor when it is not bf16/f16/f32.
  StatusOr<WeightDtype> weight_dtype() const;
};

class Checkpoint {
 public:
  // Opens a checkpoint directory and validates every safetensors header.
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // Tensors sorted by name.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // The tensor, checked for shape; errors name the tensor and both shapes.
  StatusOr<const TensorView*> Get(const std::string& name, const std::vector<uint64_t>& shape) const;
  // Safetensors files of the checkpoint, sorted (for digests and caching).
  std::vector<std::string> files() const;

 private:
  Status AddFile(const std::string& file_name);

  std::string dir_;
  std::vector<MappedFile> maps_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace kvmart
