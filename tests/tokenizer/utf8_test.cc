#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

#include "tokenizer/byte_level.h"

namespace kvmart::tokenizer {
namespace {

TEST(Utf8Test, ValidatesWellFormedText) {
  EXPECT_TRUE(ValidateUtf8("plain ascii").ok());
  EXPECT_TRUE(ValidateUtf8("\xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x98\x80").ok());
}

TEST(Utf8Test, RejectsIllFormedText) {
  for (std::string bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xBD", "ab\xFF"}) {
    Status s = ValidateUtf8(bad);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad;
  }
  EXPECT_NE(ValidateUtf8("ab\xFF").message().find("offset 2"), std::string::npos);
}

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  std::string out;
  // "\xE4\xBD" is one truncated sequence -> one U+FFFD; "\xC0" and "\xAF" two.
  AppendUtf8Lossy("a\xE4\xBD" "b\xC0\xAF", &out);
  EXPECT_EQ(out, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Utf8Test, StablePrefixHoldsBackCompletableTail) {
  EXPECT_EQ(StableUtf8PrefixLength("ab\xE4\xBD"), 2u);
  EXPECT_EQ(StableUtf8PrefixLength("ab\xE4\xBD\xA0"), 5u);
  EXPECT_EQ(StableUtf8PrefixLength("ab\xF0"), 2u);
  EXPECT_EQ(StableUtf8PrefixLength("ab\xC0"), 3u);  // can never complete
  EXPECT_EQ(StableUtf8PrefixLength("ab\x80\x80\x80"), 5u);
}

TEST(ByteLevelTest, RoundTripsAllBytes) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string bl = BytesToByteLevel(all);
  auto back = ByteLevelToBytes(bl);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
  EXPECT_EQ(BytesToByteLevel(" "), "\xC4\xA0");  // 'Ġ'
  EXPECT_EQ(BytesToByteLevel("\n"), "\xC4\x8A");  // 'Ċ'
  EXPECT_FALSE(ByteLevelToBytes("\xE4\xBD\xA0").has_value());
}

}  // namespace
}  // namespace kvmart::tokenizer
