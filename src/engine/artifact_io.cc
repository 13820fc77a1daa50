#include "engine/artifact_io.h"

#include <cstring>

namespace kvmart {

artifact::Profile ArtifactProfile(const Model& model, uint32_t block_size) {
  const ModelConfig& c = model.config();
  artifact::Profile p;
  p.weights_digest = model.weights_digest();
  p.config_digest = model.config_digest();
  p.tokenizer_digest = model.tokenizer_digest().empty() ? ToHex(Sha256Of("")) : model.tokenizer_digest();
  p.numerics = std::string(artifact::kNumericsCpuFmaSeqV1);
  p.block_size = block_size;
  p.shape.num_layers = c.num_hidden_layers;
  p.shape.num_kv_heads = c.num_key_value_heads;
  p.shape.head_dim = c.head_dim;
  p.shape.dtype = artifact::KvDtype::kBf16;
  return p;
}

Digest256 LogitsProbe(std::span<const float> logits) {
  static_assert(std::endian::native == std::endian::little, "probe bytes are little-endian f32");
  return Sha256Of(logits.data(), logits.size_bytes());
}

StatusOr<artifact::Artifact> BuildArtifact(Session& session, std::span<const int32_t> tokens,
                                           const artifact::ArtifactMetadata& meta, const artifact::SigningKey& key,
                                           const BuildOptions& o) {
  if (session.size() != 0) return Status::FailedPrecondition("BuildArtifact needs an empty session");
  KVMART_RETURN_IF_ERROR(session.Prefill(tokens, o.chunk_size, o.progress));
  KVMART_ASSIGN_OR_RETURN(auto logits, session.logits());
  const Digest256 probe = LogitsProbe(logits);
  std::vector<uint32_t> ids(tokens.begin(), tokens.end());
  KVMART_ASSIGN_OR_RETURN(
      auto writer, artifact::ArtifactWriter::Create(ArtifactProfile(session.engine().model(), o.block_size),
                                                    std::move(ids), o.codec));
  for (size_t b = 0; b < writer.num_blocks(); ++b) {
    KVMART_ASSIGN_OR_RETURN(KvExport kv, session.ExportKv(writer.BlockTokenBegin(b), writer.BlockTokenEnd(b)));
    std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(kv.data.data()), kv.data.size() * 2);
    KVMART_RETURN_IF_ERROR(writer.AddBlock(payload));
  }
  return std::move(writer).Finish(probe, meta, key);
}

Status ImportBlockPayload(Session& session, uint64_t token_begin, std::span<const uint32_t> tokens,
                          std::span<const uint8_t> payload) {
  const ModelConfig& c = session.engine().model().config();
  KvExport kv;
  kv.num_layers = c.num_hidden_layers;
  kv.num_kv_heads = c.num_key_value_heads;
  kv.head_dim = c.head_dim;
  kv.begin = token_begin;
  kv.token_ids.assign(tokens.begin(), tokens.end());
  if (payload.size() != kv.bytes_per_token() * tokens.size()) {
    return Status::Corruption("block payload of " + std::to_string(payload.size()) + " bytes for " +
                              std::to_string(tokens.size()) + " tokens, expected " +
                              std::to_string(kv.bytes_per_token() * tokens.size()));
  }
  kv.data.resize(payload.size() / 2);
  std::memcpy(kv.data.data(), payload.data(), payload.size());
  return session.ImportKv(kv);
}

Status ImportArtifact(Session& session, const artifact::ArtifactReader& reader) {
  if (session.size() != 0) return Status::FailedPrecondition("ImportArtifact needs an empty session");
  const artifact::Manifest& m = reader.manifest();
  KVMART_RETURN_IF_ERROR(
      reader.CheckProfile(ArtifactProfile(session.engine().model(), m.profile.block_size)));
  for (size_t b = 0; b < m.blocks.size(); ++b) {
    KVMART_ASSIGN_OR_RETURN(std::vector<uint8_t> payload, reader.ReadBlock(b));
    const auto& info = m.blocks[b];
    std::span<const uint32_t> toks(m.tokens.data() + info.token_begin, info.token_end - info.token_begin);
    KVMART_RETURN_IF_ERROR(ImportBlockPayload(session, info.token_begin, toks, payload));
  }
  return Status::Ok();
}

}  // namespace kvmart
