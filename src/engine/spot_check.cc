#include "engine/spot_check.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "engine/artifact_io.h"

namespace kvmart {

std::vector<uint32_t> ChooseSpotCheckBlocks(uint32_t n, uint32_t k, const std::function<uint32_t(uint32_t)>& uniform) {
  const uint32_t pool = n == 0 ? 0 : n - 1;
  k = std::min(k, pool);
  // Floyd's algorithm: k distinct values, each subset equally likely.
  std::set<uint32_t> chosen;
  for (uint32_t j = pool - k; j < pool; ++j) {
    const uint32_t t = uniform(j + 1);
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  return {chosen.begin(), chosen.end()};
}

StatusOr<SpotCheckReport> SpotCheck(Session& session, const artifact::Manifest& m,
                                    std::span<const std::vector<uint8_t>> payloads, std::vector<uint32_t> checked,
                                    size_t chunk_size) {
  const auto started = std::chrono::steady_clock::now();
  if (session.size() != 0) return Status::FailedPrecondition("a spot check needs an empty session");
  const uint32_t n = static_cast<uint32_t>(m.blocks.size());
  if (n == 0 || payloads.size() != n) return Status::InvalidArgument("spot check: payloads do not match the manifest");
  checked.push_back(n - 1);
  std::sort(checked.begin(), checked.end());
  checked.erase(std::unique(checked.begin(), checked.end()), checked.end());
  if (checked.back() >= n) return Status::InvalidArgument("spot check: block index out of range");

  SpotCheckReport r;
  r.checked = checked;
  r.tokens_total = m.tokens.size();
  size_t next = 0;
  for (uint32_t b = 0; b < n; ++b) {
    const auto& info = m.blocks[b];
    std::span<const uint32_t> toks(m.tokens.data() + info.token_begin, info.token_end - info.token_begin);
    if (next < checked.size() && checked[next] == b) {
      ++next;
      // Recompute this block from the artifact's own prefix.
      std::vector<int32_t> ids(toks.begin(), toks.end());
      KVMART_RETURN_IF_ERROR(session.Prefill(ids, chunk_size));
      r.tokens_prefilled += ids.size();
      KVMART_ASSIGN_OR_RETURN(KvExport kv, session.ExportKv(info.token_begin, info.token_end));
      const auto& want = payloads[b];
      if (want.size() != kv.data.size() * 2 || std::memcmp(want.data(), kv.data.data(), want.size()) != 0) {
        r.kv_identical = false;
        r.differing.push_back(b);
      }
      if (b == n - 1) {
        KVMART_ASSIGN_OR_RETURN(auto logits, session.logits());
        r.probe_identical = LogitsProbe(logits) == m.probe_logits_sha256;
      }
    } else {
      KVMART_RETURN_IF_ERROR(ImportBlockPayload(session, info.token_begin, toks, payloads[b]));
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

double SpotCheckDetection(uint32_t n, uint32_t k, uint32_t f) {
  if (n == 0 || f == 0) return 0;
  if (f >= n) return 1;
  const uint32_t pool = n - 1;
  k = std::min(k, pool);
  // P(the last block is not among the f) × P(k of the other n-1 miss the f):
  // C(pool - f, k) / C(pool, k) = prod_{i<k} (pool - f - i) / (pool - i).
  double miss_others = 1;
  for (uint32_t i = 0; i < k; ++i) {
    if (pool < f + i + 1) {
      miss_others = 0;
      break;
    }
    miss_others *= static_cast<double>(pool - f - i) / static_cast<double>(pool - i);
  }
  const double last_clean = static_cast<double>(n - f) / n;
  return 1 - last_clean * miss_others;
}

}  // namespace kvmart
