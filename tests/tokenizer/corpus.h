// Deterministic test corpus for the oracle test: thousands of strings of the
// kinds that break tokenizers (prose, code, digit runs, whitespace runs, CJK,
// Arabic, Devanagari, emoji sequences, combining marks, inline special tokens,
// very long words), mixed at random from a fixed seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvmart::tokenizer::testing {

std::vector<std::string> GenerateOracleCorpus(size_t count, uint64_t seed);

}  // namespace kvmart::tokenizer::testing
