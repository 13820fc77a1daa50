// Random ordinary-text token ids for measurements and exactness checks: drawn
// below Qwen3's special/added-token range (151643+), so the KV they produce is
// that of a plausible document. The same (n, seed, vocab) give the same ids.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace kvmart {

inline std::vector<int32_t> RandomTextTokens(size_t n, uint64_t seed, uint32_t vocab) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(std::min<uint32_t>(vocab, 151643) - 1));
  std::vector<int32_t> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

}  // namespace kvmart
