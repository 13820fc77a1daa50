#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace kvmart {

int32_t Argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;  // strict: ties keep the lowest id
  }
  return static_cast<int32_t>(best);
}

double SamplingUniform(uint64_t seed, uint64_t position) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + position + 0x632be59bd9b4e019ull;
  for (int round = 0; round < 2; ++round) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
  }
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int32_t SampleToken(std::span<const float> logits, const SamplingParams& p, uint64_t position) {
  if (p.temperature <= 0.0f || logits.empty()) return Argmax(logits);
  // Candidates by descending logit, ties by ascending id: a total order.
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = ids.size();
  if (p.top_k > 0 && p.top_k < keep) {
    keep = p.top_k;
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), better);
  } else {
    std::sort(ids.begin(), ids.end(), better);
  }
  const double max_logit = logits[ids[0]];
  std::vector<double> w(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += (w[i] = std::exp((logits[ids[i]] - max_logit) / p.temperature));
  if (p.top_p > 0.0f && p.top_p < 1.0f) {
    double mass = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      mass += w[i] / total;
      if (mass >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    total = 0;
    for (size_t i = 0; i < keep; ++i) total += w[i];
  }
  const double target = SamplingUniform(p.seed, position) * total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += w[i];
    if (target < acc) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace kvmart
