// GGUF export: what is written reads back as the checkpoint's exact bytes with
// llama.cpp's names and metadata; damaged input is a clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/bf16.h"
#include "model/gguf.h"
#include "model/gguf_export.h"
#include "model/safetensors.h"
#include "model/synth.h"
#include "../testing/files.h"
#include "../testing/temp_dir.h"

namespace kvmart {
namespace {

using testing::ReadAll;
using testing::WriteAll;

// Rewrites a safetensors file's JSON header with `edit`, keeping its data.
void EditSafetensorsHeader(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::string bytes = ReadAll(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  edit(h);
  std::string header = h.dump();
  header.resize((header.size() + 7) / 8 * 8, ' ');
  uint64_t m = header.size();
  std::string out(reinterpret_cast<const char*>(&m), 8);
  WriteAll(path, out + header + bytes.substr(8 + n));
}

class GgufExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions o;
    o.shape = "tiny";
    o.out_dir = dir_.Sub("tiny");
    o.tokenizer_dir = KVMART_DATA_DIR;
    ASSERT_TRUE(WriteSyntheticCheckpoint(o).ok());
  }
  Status Export() {
    GgufExportOptions o;
    o.model_dir = dir_.Sub("tiny");
    o.out_path = gguf_path();
    return ExportGguf(o);
  }
  std::string gguf_path() const { return dir_.Sub("tiny.gguf"); }
  testing::TempDir dir_;
};

std::string GgufName(const std::string& hf) {
  static const std::vector<std::pair<std::string, std::string>> kParts = {
      {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"}, {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"}, {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},        {"mlp.down_proj", "ffn_down"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  const std::string layers = "model.layers.";
  const size_t dot = hf.find('.', layers.size());
  const std::string index = hf.substr(layers.size(), dot - layers.size());
  const std::string rest = hf.substr(dot + 1);
  for (const auto& [a, b] : kParts) {
    if (rest == a + ".weight") return "blk." + index + "." + b + ".weight";
  }
  return "?";
}

TEST_F(GgufExportTest, TensorsReadBackAsTheCheckpointsBytes) {
  ASSERT_TRUE(Export().ok());
  auto f = gguf::File::Open(gguf_path());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto ck = Checkpoint::Open(dir_.Sub("tiny"));
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(f->tensors().size(), (*ck)->tensors().size());
  for (const auto& [name, t] : (*ck)->tensors()) {
    const gguf::TensorInfo* g = f->FindTensor(GgufName(name));
    ASSERT_NE(g, nullptr) << name << " -> " << GgufName(name);
    // ggml lists dimensions innermost first.
    EXPECT_EQ(g->dims, std::vector<uint64_t>(t.shape.rbegin(), t.shape.rend())) << name;
    const std::string_view got = f->TensorBytes(*g);
    if (t.shape.size() == 1) {
      ASSERT_EQ(g->type, gguf::TensorType::kF32) << name;
      ASSERT_EQ(got.size(), t.numel() * 4);
      for (uint64_t i = 0; i < t.numel(); ++i) {
        uint16_t h;
        float w;
        std::memcpy(&h, t.data + 2 * i, 2);
        std::memcpy(&w, got.data() + 4 * i, 4);
        ASSERT_EQ(std::bit_cast<uint32_t>(w), std::bit_cast<uint32_t>(Bf16ToF32(h))) << name << "[" << i << "]";
      }
    } else {
      ASSERT_EQ(g->type, gguf::TensorType::kBf16) << name;
      ASSERT_EQ(got, std::string_view(reinterpret_cast<const char*>(t.data), t.nbytes)) << name;
    }
  }
}

TEST_F(GgufExportTest, MetadataIsLlamaCppsQwen3Layout) {
  ASSERT_TRUE(Export().ok());
  auto f = gguf::File::Open(gguf_path());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto str = [&](const char* k) { return std::get<std::string>(f->Find(k)->scalar); };
  auto u = [&](const char* k) { return std::get<uint64_t>(f->Find(k)->scalar); };
  for (const char* k : {"general.architecture", "qwen3.block_count", "qwen3.context_length", "qwen3.embedding_length",
                        "qwen3.feed_forward_length", "qwen3.attention.head_count", "qwen3.attention.head_count_kv",
                        "qwen3.attention.key_length", "qwen3.attention.value_length", "qwen3.rope.freq_base",
                        "qwen3.attention.layer_norm_rms_epsilon", "general.file_type", "tokenizer.ggml.model",
                        "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                        "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"}) {
    EXPECT_NE(f->Find(k), nullptr) << k;
  }
  EXPECT_EQ(str("general.architecture"), "qwen3");
  EXPECT_EQ(u("qwen3.block_count"), 2u);
  EXPECT_EQ(u("qwen3.embedding_length"), 64u);
  EXPECT_EQ(u("qwen3.attention.head_count_kv"), 2u);
  EXPECT_EQ(u("general.file_type"), 32u);  // mostly bf16
  EXPECT_EQ(std::get<double>(f->Find("qwen3.rope.freq_base")->scalar), 1e6);
  EXPECT_EQ(str("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(str("tokenizer.ggml.pre"), "qwen2");
  const auto& tokens = f->Find("tokenizer.ggml.tokens")->array;
  const auto& types = f->Find("tokenizer.ggml.token_type")->array;
  ASSERT_EQ(tokens.size(), 151936u);  // one entry per embedding row
  ASSERT_EQ(types.size(), tokens.size());
  EXPECT_EQ(std::get<std::string>(tokens[0]), "!");
  EXPECT_EQ(std::get<std::string>(tokens[151643]), "<|endoftext|>");
  EXPECT_EQ(std::get<int64_t>(types[151643]), 3);  // control
  EXPECT_EQ(std::get<std::string>(tokens[151667]), "<think>");
  EXPECT_EQ(std::get<int64_t>(types[151667]), 4);  // user-defined
  EXPECT_EQ(std::get<std::string>(tokens[151700]), "[PAD151700]");
  EXPECT_EQ(std::get<int64_t>(types[151700]), 5);  // unused
  const auto& merges = f->Find("tokenizer.ggml.merges")->array;
  ASSERT_GT(merges.size(), 100000u);
  EXPECT_EQ(std::get<std::string>(merges[0]), "\xc4\xa0 \xc4\xa0");  // "Ġ Ġ"
}

TEST_F(GgufExportTest, MissingTensorIsAnErrorNamingIt) {
  EditSafetensorsHeader(dir_.Sub("tiny/model.safetensors"),
                        [](nlohmann::json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
  Status st = Export();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(gguf_path()));
}

TEST_F(GgufExportTest, WrongDtypeIsAnErrorNamingIt) {
  EditSafetensorsHeader(dir_.Sub("tiny/model.safetensors"),
                        [](nlohmann::json& h) { h["model.layers.0.self_attn.q_proj.weight"]["dtype"] = "I16"; });
  Status st = Export();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(gguf_path()));
}

TEST_F(GgufExportTest, UnknownTensorIsAnError) {
  EditSafetensorsHeader(dir_.Sub("tiny/model.safetensors"), [](nlohmann::json& h) {
    h["model.layers.0.self_attn.q_proj.bias"] = h["model.norm.weight"];
  });
  Status st = Export();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("q_proj.bias"), std::string::npos) << st.ToString();
}

TEST_F(GgufExportTest, DamagedFilesAreCorruptionNotCrashes) {
  ASSERT_TRUE(Export().ok());
  const std::string bytes = ReadAll(gguf_path());
  const std::string cut = dir_.Sub("cut.gguf");
  // Cuts inside the fixed header, the metadata, the tensor table and the data.
  for (size_t n : {size_t{0}, size_t{3}, size_t{8}, size_t{23}, size_t{1000}, size_t{100000}, size_t{3000000},
                   bytes.size() / 2, bytes.size() - 1}) {
    WriteAll(cut, bytes.substr(0, n));
    auto f = gguf::File::Open(cut);
    ASSERT_FALSE(f.ok()) << "cut at " << n;
    EXPECT_TRUE(f.status().code() == Status::Code::kCorruption || f.status().code() == Status::Code::kIOError)
        << f.status().ToString();
  }
  std::string bad = bytes;
  bad[0] = 'X';
  WriteAll(cut, bad);
  EXPECT_EQ(gguf::File::Open(cut).status().code(), Status::Code::kCorruption);
  // An array declaring more elements than the file could hold.
  bad = bytes;
  const size_t at = bad.find("tokenizer.ggml.tokens");
  ASSERT_NE(at, std::string::npos);
  const uint64_t huge = uint64_t{1} << 60;
  std::memcpy(bad.data() + at + std::strlen("tokenizer.ggml.tokens") + 8, &huge, 8);
  WriteAll(cut, bad);
  EXPECT_EQ(gguf::File::Open(cut).status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace kvmart
