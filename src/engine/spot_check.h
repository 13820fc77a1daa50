// Proving a third party's artifact by recomputation, without paying for a
// whole prefill (docs/SECURITY.md, "Spot checks").
//
// The engine's kernels are batch- and chunk-invariant: the KV of block b is a
// function of the tokens and of the KV of blocks [0, b) alone, whatever
// schedule computed them. So block b can be checked by importing the
// artifact's own blocks [0, b) and prefilling only block b's tokens: the
// result must equal the artifact's block b bit for bit. One differing bit
// proves the artifact false — no tolerance, no false alarm.
//
// A forger who changes block j and recomputes every later block from the
// changed KV passes every check except that of block j, so what is caught
// is a checked block that is inconsistent with its prefix. With f such blocks
// among n and k checked uniformly at random, the chance of missing all of
// them is C(n-f, k) / C(n, k). The last block is always checked as well: its
// prefill yields the next-token logits, compared with the manifest's probe.
//
// The choice must be unpredictable to whoever made the artifact: callers draw
// it from a cryptographic generator after the artifact is fixed.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "artifact/manifest.h"
#include "base/status.h"
#include "engine/engine.h"

namespace kvmart {

// k distinct block indices out of [0, n - 1) (every block but the last), in
// increasing order; uniform(u) must return a uniform integer in [0, u).
std::vector<uint32_t> ChooseSpotCheckBlocks(uint32_t n, uint32_t k, const std::function<uint32_t(uint32_t)>& uniform);

struct SpotCheckReport {
  std::vector<uint32_t> checked;       // block indices recomputed (the last block included)
  bool kv_identical = true;            // every checked block equal bit for bit
  std::vector<uint32_t> differing;     // checked blocks whose KV differs
  bool probe_identical = true;         // the next-token logits probe
  uint64_t tokens_prefilled = 0;       // the checks' own prefill work
  uint64_t tokens_total = 0;           // the artifact's tokens (a full recomputation's work)
  double seconds = 0;
  bool ok() const { return kv_identical && probe_identical; }
};

// Checks `checked` (increasing, each < number of blocks; the last block is
// added) of a verified artifact: `payloads[i]` is block i's decoded payload.
// The session must be empty; it holds the artifact's KV afterwards.
StatusOr<SpotCheckReport> SpotCheck(Session& session, const artifact::Manifest& manifest,
                                    std::span<const std::vector<uint8_t>> payloads, std::vector<uint32_t> checked,
                                    size_t chunk_size = 512);

// The chance that k blocks chosen uniformly out of n - 1 (besides the last,
// always checked) include at least one of f inconsistent blocks placed
// uniformly among all n.
double SpotCheckDetection(uint32_t n, uint32_t k, uint32_t f);

}  // namespace kvmart
