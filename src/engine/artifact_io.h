// The bridge between sessions and KV artifacts: the profile that binds an
// artifact to this exact model, building a signed artifact from a prefill, and
// importing verified block payloads back into a session.
#pragma once

#include <cstdint>
#include <span>

#include "artifact/container.h"
#include "artifact/profile.h"
#include "base/sha256.h"
#include "base/status.h"
#include "engine/engine.h"

namespace kvmart {

// Weights, config and tokenizer digests of `model`, its KV shape (bf16),
// numerics profile cpu-fma-seq-v1, and the block size. A model directory
// without tokenizer.json gets the digest of the empty string.
artifact::Profile ArtifactProfile(const Model& model, uint32_t block_size = artifact::kDefaultBlockSize);

// The probe: SHA-256 of the next-token logits as little-endian f32 bytes.
Digest256 LogitsProbe(std::span<const float> logits);

struct BuildOptions {
  artifact::Codec codec = artifact::Codec::kRaw;
  uint32_t block_size = artifact::kDefaultBlockSize;
  size_t chunk_size = 0;  // prefill chunking (any value gives the same KV)
  Session::Progress progress;
};

// Prefills `tokens` into `session` (which must be empty) and builds a signed
// artifact of them, exporting one block of KV at a time.
StatusOr<artifact::Artifact> BuildArtifact(Session& session, std::span<const int32_t> tokens,
                                           const artifact::ArtifactMetadata& meta, const artifact::SigningKey& key,
                                           const BuildOptions& options = {});

// Appends one verified block payload (layout of docs/DESIGN.md §4) for tokens
// [token_begin, token_begin + tokens.size()) to the session.
Status ImportBlockPayload(Session& session, uint64_t token_begin, std::span<const uint32_t> tokens,
                          std::span<const uint8_t> payload);

// Imports every block of a verified artifact into an empty session, after
// checking that the artifact's profile is this engine's.
Status ImportArtifact(Session& session, const artifact::ArtifactReader& reader);

}  // namespace kvmart
