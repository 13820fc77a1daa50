#include "tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <random>

namespace kvmart::tokenizer {
namespace {

constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> Pieces(const RegexSplitter& s, std::string_view text, bool pcre) {
  std::vector<std::pair<size_t, size_t>> spans;
  Status st = pcre ? s.SplitSpansPcre2(text, &spans) : s.SplitSpans(text, &spans);
  EXPECT_TRUE(st.ok()) << st.ToString();
  std::vector<std::string> out;
  for (auto [b, n] : spans) out.emplace_back(text.substr(b, n));
  return out;
}

TEST(PreTokenizerTest, SplitsLikeTheReference) {
  auto s = RegexSplitter::Create(kQwen2);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  using V = std::vector<std::string>;
  EXPECT_EQ(Pieces(**s, "Hello world's  end\n\n  x", false),
            (V{"Hello", " world", "'s", " ", " end", "\n\n", " ", " x"}));
  EXPECT_EQ(Pieces(**s, "a 123 ...!\r\nb", false), (V{"a", " ", "1", "2", "3", " ...!\r\n", "b"}));
}

// The ASCII fast path must agree with PCRE2 on every input; random strings over
// an alphabet dense in the characters the pattern distinguishes.
TEST(PreTokenizerTest, AsciiFastPathEqualsPcre2) {
  auto s = RegexSplitter::Create(kQwen2);
  ASSERT_TRUE(s.ok());
  const std::string alphabet = "aZk's'T'rE'vellD  \t\n\r\x0b\x0c.,!-_'\"09()\x01\x7f";
  std::mt19937_64 rng(42);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string t;
    for (size_t i = 0, n = rng() % 24; i < n; ++i) t += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(Pieces(**s, t, false), Pieces(**s, t, true)) << "input: " << t;
  }
}

TEST(PreTokenizerTest, TranslatesWhitespaceToEcmaScript) {
  std::string p = TranslatePattern(R"(\s+(?!\S)|[^\s\p{L}])");
  EXPECT_EQ(p.find("\\s"), std::string::npos);
  EXPECT_EQ(p.find("\\S"), std::string::npos);
  EXPECT_NE(p.find("\\x{FEFF}"), std::string::npos);
  EXPECT_EQ(TranslatePattern("(?i:'s|'t|'re|'ve|'m|'ll|'d)"),
            "(?:'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
}

}  // namespace
}  // namespace kvmart::tokenizer
