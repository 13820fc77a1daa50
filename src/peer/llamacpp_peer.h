// The llama.cpp peer: a child process (kvmart-llamacpp-peer, built against the
// prebuilt llama.cpp of the npm package node-llama-cpp) that runs llama.cpp on
// the same GGUF weights and token ids kvmart runs, so every engine figure can
// be a ratio measured on one machine in one run. This is its client: it starts
// the process, sends one JSON request per line and reads one answer per line.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"

namespace kvmart {

struct LlamaCppPeerOptions {
  std::string gguf_path;
  std::string binary;   // "" = kvmart-llamacpp-peer beside this executable
  int threads = 2;
  int context = 4096 + 256;
  int sequences = 16;   // most sequences one context holds (batched decode)
};

class LlamaCppPeer {
 public:
  // FailedPrecondition (with how to get it) when the peer binary is absent.
  static StatusOr<std::unique_ptr<LlamaCppPeer>> Start(const LlamaCppPeerOptions& options);
  ~LlamaCppPeer();
  LlamaCppPeer(const LlamaCppPeer&) = delete;
  LlamaCppPeer& operator=(const LlamaCppPeer&) = delete;

  // One request; an answer with "ok": false becomes an Internal error with its text.
  StatusOr<nlohmann::json> Call(const nlohmann::json& request);

  // Convenience forms of the requests (seconds measured inside the peer).
  struct Prefill {
    double prefill_s = 0, decode_s = 0;
  };
  StatusOr<Prefill> PrefillAndDecode(const std::vector<int32_t>& tokens, int decode_steps);
  struct Reuse {
    double total_s = 0, load_s = 0, context_s = 0;
    uint64_t state_bytes = 0;
  };
  StatusOr<Reuse> LoadAndContinue(const std::vector<int32_t>& doc, const std::vector<int32_t>& continuation);
  StatusOr<double> BatchedDecode(const std::vector<int32_t>& prefix, int sequences, int steps);
  // Logits of the last `last` positions of `tokens`, [last][vocab].
  StatusOr<std::vector<float>> Logits(const std::vector<int32_t>& tokens, int last, size_t vocab);

  const std::string& system_info() const { return system_info_; }

 private:
  struct Key {
    explicit Key() = default;
  };

 public:
  explicit LlamaCppPeer(Key) {}

 private:
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string pending_;  // bytes read past the last answer line
  std::string system_info_;
  std::string scratch_dir_;
};

// The default peer binary: kvmart-llamacpp-peer beside /proc/self/exe.
std::string DefaultLlamaCppPeerBinary();

}  // namespace kvmart
