// Export of a Hugging Face Qwen3 checkpoint to GGUF, so that llama.cpp runs the
// very weights kvmart runs: the peer benchmark compares the two engines on
// identical bytes and token ids.
//
// What is written, and why that way:
//  - 2-D weights keep their dtype and bytes (bf16 stays bf16); ggml lists
//    dimensions innermost first, so an HF [out][in] matrix is [in, out].
//  - 1-D norm weights are widened to f32, which is exact (llama.cpp's own
//    converter stores them as f32 too).
//  - tensor names and metadata follow llama.cpp's `qwen3` architecture; the
//    tokenizer is tokenizer.json in GGUF's "gpt2" form (byte-level spellings,
//    merges as "a b", one entry per embedding row, rows without a token named
//    [PADn] as llama.cpp's converter does).
#pragma once

#include <functional>
#include <string>

#include "base/status.h"

namespace kvmart {

struct GgufExportOptions {
  std::string model_dir;  // config.json + safetensors + tokenizer.json
  std::string out_path;
  std::function<void(const std::string& what)> progress;
};

Status ExportGguf(const GgufExportOptions& options);

// DIR.gguf beside the checkpoint directory, (re)written when missing or older
// than any file of the checkpoint; returns its path.
StatusOr<std::string> ExportGgufBeside(const std::string& model_dir,
                                       const std::function<void(const std::string&)>& progress = nullptr);

}  // namespace kvmart
