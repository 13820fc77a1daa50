#include "model/config.h"

#include <gtest/gtest.h>

namespace kvmart {
namespace {

TEST(ConfigTest, RoundTripsThroughHfJson) {
  for (const char* shape : {"tiny", "small", "qwen3-0.6b", "qwen3-4b"}) {
    auto c = ShapeByName(shape);
    ASSERT_TRUE(c.ok());
    auto parsed = ParseModelConfig(c->ToHfJson(), "config.json");
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->CanonicalJson(), c->CanonicalJson()) << shape;
  }
  auto c = ShapeByName("qwen3-0.6b");
  EXPECT_EQ(c->kv_bytes_per_token(), 114688u);  // 112 KiB: 28 layers x 2 x 8 x 128 x 2 bytes
  EXPECT_EQ(ShapeByName("qwen3-4b")->kv_bytes_per_token(), 147456u);  // docs/DESIGN.md: 147,456 bytes per token
}

struct BadConfig {
  const char* json;
  const char* expect;
};

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, RejectedWithClearError) {
  auto r = ParseModelConfig(GetParam().json, "cfg.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(GetParam().expect), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("cfg.json"), std::string::npos);
}

#define BASE "\"hidden_size\":64,\"intermediate_size\":192,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
#define REST "\"vocab_size\":256,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,\"max_position_embeddings\":128"
INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigTest,
    ::testing::Values(BadConfig{"not json", "not a JSON object"},
                      BadConfig{"{" BASE REST "}", "num_key_value_heads"},
                      BadConfig{"{" BASE "\"num_key_value_heads\":3," REST "}", "multiple of num_key_value_heads"},
                      BadConfig{"{" BASE "\"num_key_value_heads\":\"2\"," REST "}", "wrong type"},
                      BadConfig{"{\"model_type\":\"llama\"," BASE "\"num_key_value_heads\":2," REST "}", "llama"},
                      BadConfig{"{\"rope_scaling\":{\"type\":\"yarn\"}," BASE "\"num_key_value_heads\":2," REST "}",
                                "rope_scaling"},
                      BadConfig{"{\"attention_bias\":true," BASE "\"num_key_value_heads\":2," REST "}",
                                "attention_bias"}));

}  // namespace
}  // namespace kvmart
