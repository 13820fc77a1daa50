// Checkpoints in the real Hugging Face layout: loading, sharding, digests, and
// clear errors for every kind of damage.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/synth.h"
#include "../testing/files.h"
#include "../testing/temp_dir.h"

namespace kvmart {
namespace {

namespace fs = std::filesystem;

using testing::ReadAll;
using testing::WriteAll;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions o;
    o.shape = "tiny";
    o.out_dir = dir_.Sub("tiny");
    o.tokenizer_dir = KVMART_DATA_DIR;
    ASSERT_TRUE(WriteSyntheticCheckpoint(o).ok());
  }
  std::string model_dir() const { return dir_.Sub("tiny"); }
  std::string st_path() const { return dir_.Sub("tiny/model.safetensors"); }
  testing::TempDir dir_;
};

TEST_F(CheckpointTest, LoadsWithRealTensorNamesAndDigests) {
  auto m = Model::Load(model_dir());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->config().hidden_size, 64u);
  EXPECT_EQ((*m)->layers().size(), 2u);
  EXPECT_EQ((*m)->weights_digest().size(), 64u);
  // tokenizer.json is the official Qwen3 file.
  EXPECT_EQ((*m)->tokenizer_digest(), "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4");
  EXPECT_TRUE(fs::exists(model_dir() + "/.kvmart-digest.json"));
  auto ck = Checkpoint::Open(model_dir());
  ASSERT_TRUE(ck.ok());
  EXPECT_TRUE((*ck)->tensors().count("model.layers.1.self_attn.k_norm.weight"));
  EXPECT_FALSE((*ck)->tensors().count("lm_head.weight"));  // tied, as in the 0.6B release
}

TEST_F(CheckpointTest, SynthIsDeterministicAndSeedMatters) {
  SynthOptions o;
  o.out_dir = dir_.Sub("again");
  ASSERT_TRUE(WriteSyntheticCheckpoint(o).ok());
  EXPECT_EQ(ReadAll(st_path()), ReadAll(dir_.Sub("again/model.safetensors")));
  o.out_dir = dir_.Sub("other");
  o.seed = 2;
  ASSERT_TRUE(WriteSyntheticCheckpoint(o).ok());
  EXPECT_NE(ReadAll(st_path()), ReadAll(dir_.Sub("other/model.safetensors")));
}

TEST_F(CheckpointTest, ShardedCheckpointHasTheSameDigest) {
  SynthOptions o;
  o.out_dir = dir_.Sub("sharded");
  o.max_shard_bytes = 4 << 20;
  ASSERT_TRUE(WriteSyntheticCheckpoint(o).ok());
  EXPECT_TRUE(fs::exists(dir_.Sub("sharded/model.safetensors.index.json")));
  auto a = Model::Load(model_dir());
  auto b = Model::Load(dir_.Sub("sharded"));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_GT(Checkpoint::Open(dir_.Sub("sharded")).value()->files().size(), 1u);
  EXPECT_EQ((*a)->weights_digest(), (*b)->weights_digest());
}

TEST_F(CheckpointTest, DigestCacheIsInvalidatedWhenFilesChange) {
  auto a = Model::Load(model_dir());
  ASSERT_TRUE(a.ok());
  const std::string before = (*a)->weights_digest();
  // Same size, one weight byte changed at the very end: the digest must change.
  std::string bytes = ReadAll(st_path());
  bytes.back() ^= 0x01;
  WriteAll(st_path(), bytes);
  auto b = Model::Load(model_dir());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(before, (*b)->weights_digest());
}

struct Damage {
  const char* name;
  std::function<void(std::string&)> apply;
  const char* expect;  // substring of the error
};

TEST_F(CheckpointTest, DamagedFilesGetClearErrors) {
  const std::string good = ReadAll(st_path());
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = hlen << 8 | static_cast<uint8_t>(good[i]);
  const std::string header = good.substr(8, hlen);
  auto with_header = [&](const std::string& h) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{h.size()} >> (8 * i));
    return out + h + good.substr(8 + hlen);
  };
  auto edit_header = [&](const std::function<void(nlohmann::json&)>& f) {
    auto j = nlohmann::json::parse(header);
    f(j);
    std::string h = j.dump();
    while (h.size() % 8 != 0) h.push_back(' ');  // keep tensor data aligned, as writers do
    return with_header(h);
  };
  const std::vector<Damage> cases = {
      {"empty", [](std::string& s) { s.clear(); }, "truncated"},
      {"truncated data", [](std::string& s) { s.resize(s.size() / 2); }, "outside"},
      {"truncated header", [&](std::string& s) { s.resize(8 + hlen / 2); }, "header length"},
      {"garbage header", [&](std::string& s) { s = with_header(std::string(hlen, 'x')); }, "not a JSON object"},
      {"huge header length", [](std::string& s) { s[7] = 0x7f; }, "header length"},
      {"wrong shape",
       [&](std::string& s) {
         s = edit_header([](nlohmann::json& j) { j["model.norm.weight"]["shape"] = {32}; });
       },
       "model.norm.weight"},
      {"wrong dtype",
       [&](std::string& s) {
         s = edit_header([](nlohmann::json& j) {
           j["model.norm.weight"]["dtype"] = "I16";
         });
       },
       "model.norm.weight"},
      {"missing tensor",
       [&](std::string& s) { s = edit_header([](nlohmann::json& j) { j.erase("model.layers.1.mlp.up_proj.weight"); }); },
       "model.layers.1.mlp.up_proj.weight"},
  };
  for (const auto& c : cases) {
    std::string bytes = good;
    c.apply(bytes);
    WriteAll(st_path(), bytes);
    auto m = Model::Load(model_dir(), {.threads = 1, .use_digest_cache = false});
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_NE(m.status().message().find(c.expect), std::string::npos) << c.name << ": " << m.status().ToString();
    if (std::string(c.name) != "missing tensor" && std::string(c.name) != "wrong shape" &&
        std::string(c.name) != "wrong dtype") {
      EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos) << c.name << ": " << m.status().ToString();
    }
  }
}

TEST_F(CheckpointTest, MissingFilesAreReported) {
  fs::remove(st_path());
  auto m = Model::Load(model_dir());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Status::Code::kNotFound);
  auto n = Model::Load(dir_.Sub("nowhere"));
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("config.json"), std::string::npos);
}

}  // namespace
}  // namespace kvmart
