// `kvmart bench reuse`: measures, per document length L, a prefill from scratch
// against a reuse (the L-token KV from a tier + prefill only the question),
// runs the same greedy decode on both and requires bit-identical tokens and
// logits. A run that is not bit-exact is reported as a failure, never as a
// saving. Reuse paths: `resident` (the provider's hit: the artifact's KV pages
// already in the engine, attached with Session::Attach as the server does for
// a hot artifact), `memory`, `disk_raw` and `disk_lossless` (the artifact
// loaded from a store tier into a fresh session).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "economics/cost_model.h"
#include "engine/engine.h"
#include "peer/llamacpp_peer.h"

namespace kvmart::economics {

struct ReuseBenchOptions {
  std::vector<uint64_t> lengths = {255, 512, 1024, 2048, 3774, 8192};
  uint32_t question_tokens = 32;
  uint32_t decode_tokens = 24;
  uint32_t repeat = 1;
  size_t chunk = 512;  // prefill chunk (any value gives the same bits)
  // Measure the scratch prefill as prefill(doc) then prefill(question) in the
  // publishing session (the same arithmetic as one call with a chunk boundary
  // at L) instead of a separate one-shot prefill: one prefill of L per repeat
  // instead of two, for large models on small machines.
  bool split_scratch = false;
  uint64_t seed = 1;
  std::string work_dir;  // artifacts (.kva) and the store go here
  std::string tiers = "auto";  // auto | store | file (economics/tiers.h)
  std::string model_name;
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

// Median, min and max of a repeated measurement.
struct Stat3 {
  double median = 0, min = 0, max = 0;
  static Stat3 Of(std::vector<double> v);
};

struct ReusePath {
  Stat3 load_s;      // artifact → session (tier read, verify, decode, import; resident: Attach)
  Stat3 question_s;  // prefill of the question on top of the loaded KV
  Stat3 total_s;     // load + question: time to the first token's logits
  Stat3 cpu_s;       // process CPU time of load + question
  Stat3 decode_s;    // K greedy tokens
  bool tokens_identical = true, logits_identical = true;
};

struct LengthResult {
  uint64_t doc_tokens = 0, question_tokens = 0, decode_tokens = 0;
  bool exact = false;  // every reuse path (resident included) matched the scratch tokens and logits
  Stat3 scratch_wall_s, scratch_cpu_s, scratch_decode_s;
  double scratch_matmul_flops = 0, scratch_attention_flops = 0;
  double reuse_matmul_flops = 0, reuse_attention_flops = 0;  // question prefill only
  Stat3 publish_prefill_s, publish_total_s;  // prefill of the doc; + building the raw artifact
  // resident: a prefix frozen once per length (untimed, like publishing), then
  // Attach per repeat; the others: a load from the tier per repeat.
  ReusePath resident, memory, disk_raw, disk_lossless;
  uint64_t raw_bytes = 0, lossless_bytes = 0;  // stored block bytes
  uint64_t raw_file_bytes = 0, lossless_file_bytes = 0;
  std::vector<int32_t> greedy_tokens;
  // llama.cpp on the same weights and tokens (when run with a peer): prefill
  // of document + question from an empty context, and its saved sequence
  // state loaded into a fresh context + the question (medians).
  bool has_peer = false;
  Stat3 peer_scratch_s, peer_reuse_s, peer_load_s;
  uint64_t peer_state_bytes = 0;
};

struct ReuseBenchResult {
  ReuseBenchOptions options;
  ModelShape shape;
  std::string kernels;
  size_t threads = 0;
  std::string tier_source;  // what "memory" and "disk" mean in this build
  std::string machine;      // CPU model, cores, SIMD
  std::string load_average; // /proc/loadavg at start
  std::string started_at;
  std::vector<LengthResult> lengths;
  bool all_exact() const;
};

ModelShape ShapeOf(const Model& model, const std::string& name);

// With `peer`, every length is also measured on llama.cpp (same token ids).
StatusOr<ReuseBenchResult> RunReuseBench(Engine& engine, const ReuseBenchOptions& options,
                                         LlamaCppPeer* peer = nullptr);

// reuse.json (the input of `kvmart economics`), reuse.csv and the text table.
std::string ReuseJson(const ReuseBenchResult& r);
std::string ReuseCsv(const ReuseBenchResult& r);
std::string ReuseTable(const ReuseBenchResult& r);

// Converts a result into the cost model's inputs.
std::vector<LengthFigures> FiguresOf(const ReuseBenchResult& r);

// Writes reuse.json, reuse.csv, reuse.txt, costs.csv, cost_curve.csv,
// plots.gp and runs gnuplot for time_vs_length, ratio_vs_length and
// cost_vs_length (PNG and SVG) in `out_dir`.
Status WriteReuseReport(const ReuseBenchResult& r, const Prices& prices, const std::string& out_dir);
// The cost-curve part alone (for `kvmart economics --out`).
Status WriteCostPlots(const CostReport& report, const std::string& out_dir);

}  // namespace kvmart::economics
