// The cost model of docs/ECONOMICS.md: what a prefill, a reuse, a publish, a
// month of storage and one shipped artifact cost, from measured times and a
// price list.
//
// Units: every amount here is an ESTIMATE in US dollars held in a double. These
// numbers are derived from measured seconds and list prices, span twelve orders
// of magnitude (a 30 ms load at $0.085/h is $7e-7; 80 million agents cost
// thousands of dollars) and never touch a balance, so integer micros would only
// round the small ones to zero. Ledger money stays in market::Money.
//
// "Never" (no break-even, no crossing) is +infinity / std::nullopt, never a
// sentinel number.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kvmart::economics {

struct Prices {
  double machine_usd_per_hour = 0.085;     // a 2-vCPU x86 VM, on demand
  double storage_usd_per_gb_month = 0.08;  // block storage (SSD) next to the compute
  double egress_usd_per_gb = 0.09;         // internet egress
  double input_usd_per_mtok = 3.0;         // the API's input price per million tokens (market default)
  double cache_read_multiplier = 0.1;      // cached input tokens cost this fraction
  double provider_fee = 0.10;              // provider's share of a load price (market fee_bps 1000)
  double storage_months = 1.0;             // period the publisher pays storage for (break-even)
  uint64_t hot_tokens = 3774;              // hot-document scenario: document length
  double hot_agents = 80e6;                // ... and number of agents reading it
};

// Parses a JSON object with any subset of the field names above; unknown keys,
// negative values and a fee or multiplier above 1 are InvalidArgument.
StatusOr<Prices> ParsePricesJson(std::string_view text);

// The model's compute per token, for the FLOP-based extrapolation.
struct ModelShape {
  std::string name;
  double matmul_params_per_token = 0;  // transformer blocks + lm_head (one lm_head per request)
  double lm_head_params = 0;           // hidden × vocab
  uint32_t num_layers = 0, num_attention_heads = 0, head_dim = 0;
  uint64_t max_context = 0;
  uint64_t kv_bytes_per_token = 0;     // raw bf16
};

// Prefill FLOPs of n tokens from an empty context, as the engine counts them:
// 2·(params without lm_head)·n + 4·head_dim·heads·layers·n(n+1)/2 + 2·lm_head.
double PrefillFlops(const ModelShape& m, double n);
// Share of PrefillFlops spent in attention.
double AttentionShare(const ModelShape& m, double n);

// Measured medians for one document length (from reuse.json).
struct LengthFigures {
  uint64_t doc_tokens = 0;
  uint64_t question_tokens = 0;
  bool exact = false;               // reuse reproduced the tokens and logits bit for bit
  double scratch_s = 0;             // prefill of doc + question from scratch
  double publish_s = 0;             // prefill of doc + building the artifact
  // Attach to the artifact's pages resident in the engine + prefill of the
  // question: what the server does for a hot artifact. Absent in a reuse.json
  // written before that path was measured.
  std::optional<double> reuse_resident_s;
  double reuse_memory_s = 0;        // load from the memory tier + prefill of the question
  double reuse_disk_raw_s = 0;      // load from the disk tier, raw codec + question
  double reuse_disk_lossless_s = 0; // load from the disk tier, lossless codec + question
  uint64_t raw_bytes = 0;           // artifact payload bytes, raw codec
  uint64_t lossless_bytes = 0;      // stored bytes, lossless codec
  double scratch_flops = 0;         // engine-counted FLOPs of the scratch prefill
};

// The reuse time a read of a published document costs the provider: a hit on
// the resident pages when that was measured, else a load from the memory tier.
double HitReuseSeconds(const LengthFigures& f);

struct LengthCosts {
  uint64_t doc_tokens = 0;
  bool exact = false;
  bool hit_resident = false;  // reuse_hit_usd is the resident path (else the memory tier)
  double prefill_usd = 0, reuse_memory_usd = 0, reuse_disk_raw_usd = 0, reuse_disk_lossless_usd = 0;
  std::optional<double> reuse_resident_usd;  // when measured
  double reuse_hit_usd = 0;                  // C(HitReuseSeconds)
  // scratch time / reuse time (price-independent); 0 when the run was not exact:
  // a non-exact reuse is a failure, never a saving. The resident ratio is also
  // 0 when that path was not measured; the hit ratio is the one of reuse_hit_usd.
  double saving_ratio_resident = 0, saving_ratio_memory = 0, saving_ratio_disk_raw = 0,
         saving_ratio_disk_lossless = 0, saving_ratio_hit = 0;
  double per_read_saving_usd = 0;  // prefill − reuse_hit (0 when not exact)
  double publish_usd = 0;          // publish prefill + build
  double storage_usd = 0;          // lossless bytes for Prices::storage_months
  double breakeven_reads = 0;      // N* (+inf: never)
  double egress_raw_usd = 0, egress_lossless_usd = 0;
  double egress_over_prefill_raw = 0, egress_over_prefill_lossless = 0;  // +inf when prefill is free
  // Tariff for the document tokens of one load (the question is billed the same
  // on both paths and left out).
  double full_price_usd = 0;        // L tokens at the input price (no cache)
  double agent_pays_usd = 0;        // L tokens at the cache-read price
  double publisher_gets_usd = 0;    // agent_pays × (1 − fee)
  double provider_keeps_usd = 0;    // agent_pays × fee
  double provider_cost_usd = 0;     // compute of a hit (reuse_hit_usd)
  double provider_margin_usd = 0;   // provider_keeps − provider_cost
  // Input price at which the provider's fee just covers its reuse compute:
  // provider_cost / (L · cache_read_multiplier · provider_fee) per million tokens.
  double provider_breakeven_input_usd_per_mtok = 0;
};

struct ShippingBreakEven {
  // Smallest length from which egress of the artifact costs no more than the
  // prefill it replaces (FLOP model); nullopt: never.
  std::optional<double> tokens;
  bool within_context = false;
};

struct HotDocument {
  uint64_t doc_tokens = 0;
  double agents = 0;
  bool measured = false;           // length measured (else modelled from the fits)
  double prefill_usd = 0, reuse_usd = 0, publish_usd = 0, storage_usd = 0;  // reuse: a hit
  double without_kvmart_usd = 0;   // agents × prefill
  double with_kvmart_usd = 0;      // publish + storage + agents × reuse
  double agents_pay_full_usd = 0;  // tariff: agents × L × input price
  double agents_pay_cached_usd = 0;
  double saving_usd = 0;
};

struct CostReport {
  Prices prices;
  ModelShape shape;
  double flops_per_second = 0;  // measured prefill throughput (Σ FLOPs / Σ seconds)
  std::vector<LengthCosts> lengths;
  ShippingBreakEven ship_raw, ship_lossless;
  HotDocument hot;
};

double ComputeUsd(const Prices& p, double seconds);
double EgressUsd(const Prices& p, double bytes);
double StorageUsd(const Prices& p, double bytes, double months);
// N* = ceil((publish + storage) / saving); 0 when publishing is free; +inf when
// the saving is not positive.
double BreakEvenReads(double publish_usd, double storage_usd, double per_read_saving_usd);
// Largest root of prefill(L) − egress(L) = 0 under the FLOP model at
// `flops_per_second`; see docs/ECONOMICS.md §3.
ShippingBreakEven ShippingBreakEvenLength(const Prices& p, const ModelShape& m, double flops_per_second,
                                          double bytes_per_token);

LengthCosts CostsForLength(const Prices& p, const LengthFigures& f);
StatusOr<CostReport> BuildCostReport(const Prices& p, const ModelShape& shape,
                                     const std::vector<LengthFigures>& figures);

// Reads the model shape and per-length medians from a reuse.json.
struct ReuseSummary {
  ModelShape shape;
  std::vector<LengthFigures> lengths;
};
StatusOr<ReuseSummary> ParseReuseJson(std::string_view text);

// JSON and a text table of a report.
std::string CostReportJson(const CostReport& r);
std::string CostReportTable(const CostReport& r);
// CSV of modelled cost per request vs L (prefill, reuse, egress raw/lossless)
// from 16 tokens to 4× the model's context, for the cost-curve plot.
std::string CostCurveCsv(const CostReport& r);
// CSV of the measured per-length costs.
std::string CostCsv(const CostReport& r);

}  // namespace kvmart::economics
