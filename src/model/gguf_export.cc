#include "model/gguf_export.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/bf16.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/safetensors.h"

namespace kvmart {
namespace {

using nlohmann::json;

StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// llama.cpp's token types.
enum TokenType : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

// As llama.cpp's converter decides which added tokens are control tokens.
bool LooksSpecial(const std::string& t) {
  auto wrapped = [&](std::string_view a, std::string_view b) {
    return t.size() >= a.size() + b.size() && t.starts_with(a) && t.ends_with(b);
  };
  return t == "<pad>" || t == "<mask>" || wrapped("<|", "|>") || wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") ||
         wrapped("<unused", ">");
}

// The tokenizer metadata: GGUF's "gpt2" tokenizer model from tokenizer.json.
Status AddTokenizer(const std::string& dir, const ModelConfig& config, gguf::Writer& w) {
  const std::string path = dir + "/tokenizer.json";
  KVMART_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  const json tok = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (tok.is_discarded() || !tok.is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  if (!tok.contains("model") || !tok["model"].is_object()) return Status::InvalidArgument(path + ": no \"model\" object");
  const json& model = tok["model"];
  if (model.value("type", std::string()) != "BPE") {
    return Status::Unimplemented(path + ": model.type is not \"BPE\" (only byte-level BPE exports to GGUF)");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) return Status::InvalidArgument(path + ": model.vocab is not an object");
  if (!model.contains("merges") || !model["merges"].is_array()) return Status::InvalidArgument(path + ": model.merges is not an array");

  const size_t n = config.vocab_size;
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, kUnused);
  std::vector<bool> named(n, false);
  auto place = [&](int64_t id, const std::string& s, int32_t type, const char* field) -> Status {
    if (id < 0 || static_cast<uint64_t>(id) >= n) {
      return Status::InvalidArgument(path + ": " + field + " id " + std::to_string(id) + " (\"" + s +
                                     "\") is outside the model's " + std::to_string(n) + " embedding rows");
    }
    tokens[id] = s;
    types[id] = type;
    named[id] = true;
    return Status::Ok();
  };
  for (const auto& [s, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) return Status::InvalidArgument(path + ": model.vocab[\"" + s + "\"] is not an integer");
    KVMART_RETURN_IF_ERROR(place(id.get<int64_t>(), s, kNormal, "model.vocab"));
  }
  if (tok.contains("added_tokens")) {
    if (!tok["added_tokens"].is_array()) return Status::InvalidArgument(path + ": added_tokens is not an array");
    for (const json& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string()) {
        return Status::InvalidArgument(path + ": an added_tokens entry lacks an integer id or a string content");
      }
      const std::string content = a["content"].get<std::string>();
      const bool special = a.value("special", false) || LooksSpecial(content);
      KVMART_RETURN_IF_ERROR(place(a["id"].get<int64_t>(), content, special ? kControl : kUserDefined, "added_tokens"));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!named[i]) tokens[i] = "[PAD" + std::to_string(i) + "]";
  }
  std::vector<std::string> merges;
  merges.reserve(model["merges"].size());
  for (const json& m : model["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return Status::InvalidArgument(path + ": model.merges[" + std::to_string(merges.size()) +
                                     "] is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  w.AddValue("tokenizer.ggml.model", gguf::Value::Str("gpt2"));
  w.AddValue("tokenizer.ggml.pre", gguf::Value::Str("qwen2"));
  w.AddValue("tokenizer.ggml.tokens", gguf::Value::StrArray(std::move(tokens)));
  w.AddValue("tokenizer.ggml.token_type", gguf::Value::I32Array(types));
  w.AddValue("tokenizer.ggml.merges", gguf::Value::StrArray(std::move(merges)));
  if (config.eos_token_id >= 0) w.AddValue("tokenizer.ggml.eos_token_id", gguf::Value::U32(static_cast<uint32_t>(config.eos_token_id)));
  if (config.bos_token_id >= 0) {
    w.AddValue("tokenizer.ggml.bos_token_id", gguf::Value::U32(static_cast<uint32_t>(config.bos_token_id)));
    w.AddValue("tokenizer.ggml.padding_token_id", gguf::Value::U32(static_cast<uint32_t>(config.bos_token_id)));
  }
  w.AddValue("tokenizer.ggml.add_bos_token", gguf::Value::Bool(false));
  // The chat template travels too, when the checkpoint has one.
  if (auto cfg = ReadText(dir + "/tokenizer_config.json"); cfg.ok()) {
    const json c = json::parse(*cfg, nullptr, false);
    if (!c.is_discarded() && c.is_object() && c.contains("chat_template") && c["chat_template"].is_string()) {
      w.AddValue("tokenizer.chat_template", gguf::Value::Str(c["chat_template"].get<std::string>()));
    }
  }
  return Status::Ok();
}

StatusOr<gguf::TensorType> MatrixType(const TensorView& t) {
  if (t.dtype == "BF16") return gguf::TensorType::kBf16;
  if (t.dtype == "F16") return gguf::TensorType::kF16;
  if (t.dtype == "F32") return gguf::TensorType::kF32;
  return Status::InvalidArgument("tensor " + t.name + " has dtype " + t.dtype + " (GGUF export takes BF16, F16, F32)");
}

// A norm vector widened to f32 (exact for bf16 and f16).
StatusOr<std::vector<uint8_t>> WidenToF32(const TensorView& t) {
  std::vector<uint8_t> out(t.numel() * 4);
  float* f = reinterpret_cast<float*>(out.data());
  for (uint64_t i = 0; i < t.numel(); ++i) {
    uint16_t h;
    if (t.dtype == "F32") {
      std::memcpy(&f[i], t.data + 4 * i, 4);
      continue;
    }
    std::memcpy(&h, t.data + 2 * i, 2);
    if (t.dtype == "BF16") f[i] = Bf16ToF32(h);
    else if (t.dtype == "F16") f[i] = F16ToF32(h);
    else return Status::InvalidArgument("tensor " + t.name + " has dtype " + t.dtype + " (GGUF export takes BF16, F16, F32)");
  }
  return out;
}

}  // namespace

Status ExportGguf(const GgufExportOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  const std::string& dir = o.model_dir;
  KVMART_ASSIGN_OR_RETURN(std::string config_text, ReadText(dir + "/config.json"));
  KVMART_ASSIGN_OR_RETURN(ModelConfig c, ParseModelConfig(config_text, dir + "/config.json"));
  KVMART_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(dir));

  gguf::Writer w;
  const std::string arch = "qwen3";
  w.AddValue("general.architecture", gguf::Value::Str(arch));
  w.AddValue("general.name", gguf::Value::Str(std::filesystem::path(dir).filename().string()));
  w.AddValue("general.alignment", gguf::Value::U32(gguf::Writer::kAlignment));
  w.AddValue(arch + ".block_count", gguf::Value::U32(c.num_hidden_layers));
  w.AddValue(arch + ".context_length", gguf::Value::U32(c.max_position_embeddings));
  w.AddValue(arch + ".embedding_length", gguf::Value::U32(c.hidden_size));
  w.AddValue(arch + ".feed_forward_length", gguf::Value::U32(c.intermediate_size));
  w.AddValue(arch + ".attention.head_count", gguf::Value::U32(c.num_attention_heads));
  w.AddValue(arch + ".attention.head_count_kv", gguf::Value::U32(c.num_key_value_heads));
  w.AddValue(arch + ".attention.key_length", gguf::Value::U32(c.head_dim));
  w.AddValue(arch + ".attention.value_length", gguf::Value::U32(c.head_dim));
  w.AddValue(arch + ".rope.freq_base", gguf::Value::F32(static_cast<float>(c.rope_theta)));
  w.AddValue(arch + ".attention.layer_norm_rms_epsilon", gguf::Value::F32(c.rms_norm_eps));

  // Every checkpoint tensor must have a GGUF name: an unknown one would be
  // silently dropped weights, so it is an error.
  struct Map {
    std::string gguf;
    bool norm;
    std::vector<uint64_t> hf_shape;
  };
  std::map<std::string, Map> want;
  const uint64_t h = c.hidden_size, ff = c.intermediate_size, q = c.q_dim(), kv = c.kv_dim(), hd = c.head_dim;
  want["model.embed_tokens.weight"] = {"token_embd.weight", false, {c.vocab_size, h}};
  want["model.norm.weight"] = {"output_norm.weight", true, {h}};
  if (!c.tie_word_embeddings) want["lm_head.weight"] = {"output.weight", false, {c.vocab_size, h}};
  for (uint32_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".", g = "blk." + std::to_string(i) + ".";
    want[hf + "input_layernorm.weight"] = {g + "attn_norm.weight", true, {h}};
    want[hf + "self_attn.q_proj.weight"] = {g + "attn_q.weight", false, {q, h}};
    want[hf + "self_attn.k_proj.weight"] = {g + "attn_k.weight", false, {kv, h}};
    want[hf + "self_attn.v_proj.weight"] = {g + "attn_v.weight", false, {kv, h}};
    want[hf + "self_attn.o_proj.weight"] = {g + "attn_output.weight", false, {h, q}};
    want[hf + "self_attn.q_norm.weight"] = {g + "attn_q_norm.weight", true, {hd}};
    want[hf + "self_attn.k_norm.weight"] = {g + "attn_k_norm.weight", true, {hd}};
    want[hf + "post_attention_layernorm.weight"] = {g + "ffn_norm.weight", true, {h}};
    want[hf + "mlp.gate_proj.weight"] = {g + "ffn_gate.weight", false, {ff, h}};
    want[hf + "mlp.up_proj.weight"] = {g + "ffn_up.weight", false, {ff, h}};
    want[hf + "mlp.down_proj.weight"] = {g + "ffn_down.weight", false, {h, ff}};
  }
  for (const auto& [name, t] : ckpt->tensors()) {
    if (!want.count(name)) {
      return Status::InvalidArgument(dir + ": tensor " + name + " has no place in llama.cpp's qwen3 layout");
    }
  }
  std::optional<gguf::TensorType> file_type;
  for (const auto& [name, m] : want) {
    auto t = ckpt->Get(name, m.hf_shape);
    if (!t.ok()) return t.status().WithContext(dir + ": ");
    const TensorView& v = **t;
    std::vector<uint64_t> dims(m.hf_shape.rbegin(), m.hf_shape.rend());
    if (m.norm) {
      KVMART_ASSIGN_OR_RETURN(auto bytes, WidenToF32(v));
      KVMART_RETURN_IF_ERROR(w.AddTensor(m.gguf, dims, gguf::TensorType::kF32, std::move(bytes)));
    } else {
      KVMART_ASSIGN_OR_RETURN(gguf::TensorType type, MatrixType(v));
      if (!file_type) file_type = type;
      KVMART_RETURN_IF_ERROR(w.AddTensor(m.gguf, dims, type,
                                         std::string_view(reinterpret_cast<const char*>(v.data), v.nbytes)));
    }
  }
  // llama.cpp's file-type numbering: ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32.
  const uint32_t ftype = *file_type == gguf::TensorType::kBf16 ? 32 : *file_type == gguf::TensorType::kF16 ? 1 : 0;
  w.AddValue("general.file_type", gguf::Value::U32(ftype));
  say("tokenizer");
  KVMART_RETURN_IF_ERROR(AddTokenizer(dir, c, w));
  say("writing " + o.out_path);
  return w.Finish(o.out_path);
}

StatusOr<std::string> ExportGgufBeside(const std::string& model_dir,
                                       const std::function<void(const std::string&)>& progress) {
  namespace fs = std::filesystem;
  const std::string out = fs::path(model_dir).lexically_normal().string();
  const std::string path = (out.ends_with("/") ? out.substr(0, out.size() - 1) : out) + ".gguf";
  std::error_code ec;
  bool fresh = fs::exists(path, ec);
  const auto written = fresh ? fs::last_write_time(path, ec) : fs::file_time_type{};
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    if (fresh && e.is_regular_file() && e.last_write_time() > written) fresh = false;
  }
  if (ec) return Status::IOError(model_dir + ": " + ec.message());
  if (fresh) return path;
  if (progress) progress("exporting " + model_dir + " to " + path);
  GgufExportOptions o;
  o.model_dir = model_dir;
  o.out_path = path;
  o.progress = progress;
  KVMART_RETURN_IF_ERROR(ExportGguf(o));
  return path;
}

}  // namespace kvmart
