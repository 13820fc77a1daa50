#include "model/config.h"

#include <nlohmann/json.hpp>

namespace kvmart {
namespace {

using nlohmann::json;

template <typename T>
Status ReadField(const json& j, const char* key, T* out, std::string_view source, bool required = true) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (!required) return Status::Ok();
    return Status::InvalidArgument(std::string(source) + ": missing field '" + key + "'");
  }
  try {
    *out = it->get<T>();
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string(source) + ": field '" + key + "' has the wrong type");
  }
  return Status::Ok();
}

}  // namespace

uint64_t ModelConfig::matmul_params_per_token() const {
  const uint64_t h = hidden_size;
  const uint64_t per_layer = h * q_dim() + 2 * h * kv_dim() + uint64_t{q_dim()} * h + 3 * h * intermediate_size;
  return per_layer * num_hidden_layers + h * vocab_size;
}

std::string ModelConfig::CanonicalJson() const {
  json j = {{"architecture", "qwen3"},
            {"head_dim", head_dim},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_attention_heads", num_attention_heads},
            {"num_hidden_layers", num_hidden_layers},
            {"num_key_value_heads", num_key_value_heads},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"vocab_size", vocab_size}};
  return j.dump();  // nlohmann::json objects keep keys sorted
}

std::string ModelConfig::ToHfJson() const {
  json j = {{"architectures", {"Qwen3ForCausalLM"}},
            {"attention_bias", false},
            {"attention_dropout", 0.0},
            {"bos_token_id", bos_token_id},
            {"eos_token_id", eos_token_id},
            {"head_dim", head_dim},
            {"hidden_act", "silu"},
            {"hidden_size", hidden_size},
            {"initializer_range", 0.02},
            {"intermediate_size", intermediate_size},
            {"max_position_embeddings", max_position_embeddings},
            {"max_window_layers", num_hidden_layers},
            {"model_type", "qwen3"},
            {"num_attention_heads", num_attention_heads},
            {"num_hidden_layers", num_hidden_layers},
            {"num_key_value_heads", num_key_value_heads},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_scaling", nullptr},
            {"rope_theta", rope_theta},
            {"sliding_window", nullptr},
            {"tie_word_embeddings", tie_word_embeddings},
            {"torch_dtype", torch_dtype},
            {"transformers_version", "4.51.0"},
            {"use_cache", true},
            {"use_sliding_window", false},
            {"vocab_size", vocab_size}};
  return j.dump(2) + "\n";
}

StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(std::string(source) + ": not a JSON object");
  }
  ModelConfig c;
  std::string model_type;
  KVMART_RETURN_IF_ERROR(ReadField(j, "model_type", &model_type, source, false));
  if (!model_type.empty() && model_type != "qwen3") {
    return Status::Unimplemented(std::string(source) + ": model_type '" + model_type +
                                 "' is not supported (only dense qwen3)");
  }
  KVMART_RETURN_IF_ERROR(ReadField(j, "hidden_size", &c.hidden_size, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "intermediate_size", &c.intermediate_size, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "num_hidden_layers", &c.num_hidden_layers, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "num_attention_heads", &c.num_attention_heads, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "num_key_value_heads", &c.num_key_value_heads, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "vocab_size", &c.vocab_size, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "rms_norm_eps", &c.rms_norm_eps, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "rope_theta", &c.rope_theta, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "max_position_embeddings", &c.max_position_embeddings, source));
  KVMART_RETURN_IF_ERROR(ReadField(j, "tie_word_embeddings", &c.tie_word_embeddings, source, false));
  KVMART_RETURN_IF_ERROR(ReadField(j, "torch_dtype", &c.torch_dtype, source, false));
  KVMART_RETURN_IF_ERROR(ReadField(j, "bos_token_id", &c.bos_token_id, source, false));
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer()) c.eos_token_id = j["eos_token_id"];
  if (c.num_attention_heads == 0) return Status::InvalidArgument(std::string(source) + ": num_attention_heads is 0");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  KVMART_RETURN_IF_ERROR(ReadField(j, "head_dim", &c.head_dim, source, false));

  bool bias = false, sliding = false;
  KVMART_RETURN_IF_ERROR(ReadField(j, "attention_bias", &bias, source, false));
  KVMART_RETURN_IF_ERROR(ReadField(j, "use_sliding_window", &sliding, source, false));
  if (bias) return Status::Unimplemented(std::string(source) + ": attention_bias=true is not supported");
  if (sliding) return Status::Unimplemented(std::string(source) + ": use_sliding_window=true is not supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    return Status::Unimplemented(std::string(source) + ": rope_scaling is not supported");
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return Status::Unimplemented(std::string(source) + ": hidden_act must be silu");
  }
  auto bad = [&](const std::string& why) { return Status::InvalidArgument(std::string(source) + ": " + why); };
  if (c.hidden_size == 0 || c.intermediate_size == 0 || c.num_hidden_layers == 0 || c.vocab_size == 0 ||
      c.num_key_value_heads == 0 || c.head_dim == 0 || c.max_position_embeddings == 0) {
    return bad("sizes must be positive");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return bad("num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (c.head_dim % 16 != 0) return bad("head_dim must be a multiple of 16");
  if (c.hidden_size % 16 != 0 || c.intermediate_size % 16 != 0 || c.vocab_size % 16 != 0) {
    return bad("hidden_size, intermediate_size and vocab_size must be multiples of 16");
  }
  if (c.hidden_size > (1u << 16) || c.intermediate_size > (1u << 18) || c.num_hidden_layers > 1024 ||
      c.vocab_size > (1u << 24) || c.num_attention_heads > 1024) {
    return bad("implausibly large dimensions");
  }
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) return bad("rms_norm_eps and rope_theta must be positive");
  return c;
}

StatusOr<ModelConfig> ShapeByName(std::string_view name) {
  ModelConfig c;
  c.vocab_size = 151936;
  c.max_position_embeddings = 40960;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = true;
  c.bos_token_id = 151643;
  c.eos_token_id = 151645;
  auto set = [&](uint32_t h, uint32_t i, uint32_t l, uint32_t nh, uint32_t nkv, uint32_t hd) {
    c.hidden_size = h;
    c.intermediate_size = i;
    c.num_hidden_layers = l;
    c.num_attention_heads = nh;
    c.num_key_value_heads = nkv;
    c.head_dim = hd;
  };
  if (name == "tiny") {
    set(64, 192, 2, 4, 2, 32);
  } else if (name == "small") {
    set(256, 768, 4, 8, 2, 64);
  } else if (name == "qwen3-0.6b") {
    set(1024, 3072, 28, 16, 8, 128);
  } else if (name == "qwen3-4b") {
    set(2560, 9728, 36, 32, 8, 128);
  } else {
    return Status::InvalidArgument("unknown shape '" + std::string(name) +
                                   "' (tiny|small|qwen3-0.6b|qwen3-4b)");
  }
  return c;
}

}  // namespace kvmart
