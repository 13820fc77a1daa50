#include "model/model.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/sha256.h"
#include "kernels/bf16.h"

namespace kvmart {
namespace {

namespace fs = std::filesystem;

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read error");
  return ss.str();
}

void HashLengthPrefixed(Sha256& h, const void* data, uint64_t n) {
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  h.Update(len, 8);
  h.Update(data, n);
}

float WidenOne(const TensorView& t, uint64_t i) {
  uint16_t h;
  if (t.dtype == "F32") {
    float f;
    std::memcpy(&f, t.data + 4 * i, 4);
    return f;
  }
  std::memcpy(&h, t.data + 2 * i, 2);
  return t.dtype == "BF16" ? Bf16ToF32(h) : F16ToF32(h);
}

StatusOr<std::vector<float>> LoadVector(const Checkpoint& ck, const std::string& name, uint64_t n) {
  KVMART_ASSIGN_OR_RETURN(const TensorView* t, ck.Get(name, {n}));
  KVMART_RETURN_IF_ERROR(t->weight_dtype().status());
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = WidenOne(*t, i);
  return v;
}

StatusOr<PackedMatrix> LoadMatrix(const Checkpoint& ck, const std::string& name, uint64_t rows, uint64_t cols) {
  KVMART_ASSIGN_OR_RETURN(const TensorView* t, ck.Get(name, {rows, cols}));
  KVMART_ASSIGN_OR_RETURN(WeightDtype dt, t->weight_dtype());
  auto m = PackedMatrix::Pack(t->data, dt, rows, cols);
  if (!m.ok()) return m.status().WithContext(t->file + ": tensor " + name);
  return m;
}

}  // namespace

StatusOr<std::string> ComputeWeightsDigest(const Checkpoint& ck, bool use_cache) {
  using nlohmann::json;
  json key = json::array();
  for (const auto& f : ck.files()) {
    struct stat st;
    const std::string p = (fs::path(ck.dir()) / f).string();
    if (::stat(p.c_str(), &st) != 0) return Status::IOError(p + ": stat failed");
    key.push_back({{"file", f},
                   {"size", static_cast<uint64_t>(st.st_size)},
                   {"mtime_ns", static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + st.st_mtim.tv_nsec}});
  }
  const std::string cache_path = (fs::path(ck.dir()) / ".kvmart-digest.json").string();
  if (use_cache) {
    auto text = ReadFile(cache_path);
    if (text.ok()) {
      json j = json::parse(*text, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.value("version", 0) == 1 && j.contains("files") &&
          j["files"] == key && j.contains("weights_sha256") && j["weights_sha256"].is_string()) {
        return j["weights_sha256"].get<std::string>();
      }
    }
  }
  Sha256 h;
  for (const auto& [name, t] : ck.tensors()) {
    HashLengthPrefixed(h, name.data(), name.size());
    HashLengthPrefixed(h, t.dtype.data(), t.dtype.size());
    std::string shape;
    for (uint64_t d : t.shape) {
      for (int i = 0; i < 8; ++i) shape.push_back(static_cast<char>(d >> (8 * i)));
    }
    HashLengthPrefixed(h, shape.data(), shape.size());
    HashLengthPrefixed(h, t.data, t.nbytes);
  }
  const std::string digest = ToHex(h.Finish());
  if (use_cache) {
    // Best effort: a read-only checkpoint directory just means no cache.
    json j = {{"version", 1}, {"files", key}, {"weights_sha256", digest}};
    const std::string tmp = cache_path + ".tmp";
    std::ofstream out(tmp, std::ios::trunc);
    if (out << j.dump(2) << "\n" && (out.close(), true) && out) {
      std::error_code ec;
      fs::rename(tmp, cache_path, ec);
    } else {
      std::error_code ec;
      fs::remove(tmp, ec);
    }
  }
  return digest;
}

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir, const ModelLoadOptions& options) {
  auto model = std::unique_ptr<Model>(new Model());
  model->dir_ = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  KVMART_ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_path));
  KVMART_ASSIGN_OR_RETURN(model->config_, ParseModelConfig(config_text, config_path));
  KVMART_ASSIGN_OR_RETURN(model->checkpoint_, Checkpoint::Open(dir));
  KVMART_RETURN_IF_ERROR(model->LoadWeights(options.threads));
  KVMART_ASSIGN_OR_RETURN(model->weights_digest_, ComputeWeightsDigest(*model->checkpoint_, options.use_digest_cache));
  model->config_digest_ = ToHex(Sha256Of(model->config_.CanonicalJson()));
  const std::string tok = (fs::path(dir) / "tokenizer.json").string();
  std::error_code ec;
  if (fs::exists(tok, ec)) {
    KVMART_ASSIGN_OR_RETURN(std::string tok_text, ReadFile(tok));
    model->tokenizer_digest_ = ToHex(Sha256Of(tok_text));
  }
  return model;
}

Status Model::LoadWeights(size_t threads) {
  const ModelConfig& c = config_;
  const Checkpoint& ck = *checkpoint_;
  const uint64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size, hd = c.head_dim;
  KVMART_ASSIGN_OR_RETURN(embed_, ck.Get("model.embed_tokens.weight", {c.vocab_size, h}));
  KVMART_RETURN_IF_ERROR(embed_->weight_dtype().status());
  KVMART_ASSIGN_OR_RETURN(final_norm_, LoadVector(ck, "model.norm.weight", h));
  layers_.resize(c.num_hidden_layers);

  // Packing is a one-time layout change; layers are independent, so spread them.
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Status> results(c.num_hidden_layers);
  auto load_layer = [&](size_t i) -> Status {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& L = layers_[i];
    KVMART_ASSIGN_OR_RETURN(L.input_norm, LoadVector(ck, p + "input_layernorm.weight", h));
    KVMART_ASSIGN_OR_RETURN(L.post_attention_norm, LoadVector(ck, p + "post_attention_layernorm.weight", h));
    KVMART_ASSIGN_OR_RETURN(L.q_norm, LoadVector(ck, p + "self_attn.q_norm.weight", hd));
    KVMART_ASSIGN_OR_RETURN(L.k_norm, LoadVector(ck, p + "self_attn.k_norm.weight", hd));
    KVMART_ASSIGN_OR_RETURN(L.q_proj, LoadMatrix(ck, p + "self_attn.q_proj.weight", q, h));
    KVMART_ASSIGN_OR_RETURN(L.k_proj, LoadMatrix(ck, p + "self_attn.k_proj.weight", kv, h));
    KVMART_ASSIGN_OR_RETURN(L.v_proj, LoadMatrix(ck, p + "self_attn.v_proj.weight", kv, h));
    KVMART_ASSIGN_OR_RETURN(L.o_proj, LoadMatrix(ck, p + "self_attn.o_proj.weight", h, q));
    KVMART_ASSIGN_OR_RETURN(L.gate_proj, LoadMatrix(ck, p + "mlp.gate_proj.weight", inter, h));
    KVMART_ASSIGN_OR_RETURN(L.up_proj, LoadMatrix(ck, p + "mlp.up_proj.weight", inter, h));
    KVMART_ASSIGN_OR_RETURN(L.down_proj, LoadMatrix(ck, p + "mlp.down_proj.weight", h, inter));
    return Status::Ok();
  };
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; i < layers_.size(); i += threads) results[i] = load_layer(i);
    });
  }
  for (auto& w : workers) w.join();
  for (const auto& s : results) KVMART_RETURN_IF_ERROR(s);

  if (c.tie_word_embeddings) {  // as in transformers: a stored lm_head is ignored when tied
    KVMART_ASSIGN_OR_RETURN(lm_head_, LoadMatrix(ck, "model.embed_tokens.weight", c.vocab_size, h));
  } else {
    KVMART_ASSIGN_OR_RETURN(lm_head_, LoadMatrix(ck, "lm_head.weight", c.vocab_size, h));
  }
  return Status::Ok();
}

void Model::EmbedRow(int32_t token, float* out) const {
  const uint64_t h = config_.hidden_size;
  for (uint64_t i = 0; i < h; ++i) out[i] = WidenOne(*embed_, static_cast<uint64_t>(token) * h + i);
}

}  // namespace kvmart
