// The cost model: known inputs → known outputs, and its edge cases.
#include "economics/cost_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "../testing/synthetic_model.h"
#include "economics/reuse_bench.h"
#include "engine/engine.h"

namespace kvmart::economics {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Machine at $3.60/h = $0.001/s, so seconds map to round dollars.
Prices RoundPrices() {
  Prices p;
  p.machine_usd_per_hour = 3.6;
  p.storage_usd_per_gb_month = 0.08;
  p.egress_usd_per_gb = 0.09;
  p.input_usd_per_mtok = 0.2;
  p.cache_read_multiplier = 0.1;
  p.provider_fee = 0.1;
  p.storage_months = 1;
  return p;
}

LengthFigures Figures() {
  LengthFigures f;
  f.doc_tokens = 1000;
  f.question_tokens = 32;
  f.exact = true;
  f.scratch_s = 10;
  f.publish_s = 9;
  f.reuse_memory_s = 0.5;
  f.reuse_disk_raw_s = 1;
  f.reuse_disk_lossless_s = 2;
  f.raw_bytes = 2'000'000'000;
  f.lossless_bytes = 1'000'000'000;
  f.scratch_flops = 1e12;
  return f;
}

TEST(CostModel, UnitConversions) {
  const Prices p = RoundPrices();
  EXPECT_DOUBLE_EQ(ComputeUsd(p, 10), 0.01);
  EXPECT_DOUBLE_EQ(EgressUsd(p, 1e9), 0.09);
  EXPECT_DOUBLE_EQ(StorageUsd(p, 2e9, 3), 0.48);
}

TEST(CostModel, BreakEvenReads) {
  EXPECT_EQ(BreakEvenReads(1.0, 0.5, 0.1), 15);
  EXPECT_EQ(BreakEvenReads(1.0, 0.0, 0.3), 4);  // 3.33 rounds up: a partial read saves nothing
  EXPECT_EQ(BreakEvenReads(0, 0, 0), 0);        // free to publish
  EXPECT_EQ(BreakEvenReads(1, 0, 0), kInf);     // no saving: never
  EXPECT_EQ(BreakEvenReads(1, 0, -1), kInf);
}

TEST(CostModel, KnownLength) {
  const LengthCosts c = CostsForLength(RoundPrices(), Figures());
  EXPECT_DOUBLE_EQ(c.prefill_usd, 0.01);
  EXPECT_DOUBLE_EQ(c.reuse_memory_usd, 0.0005);
  EXPECT_DOUBLE_EQ(c.reuse_disk_raw_usd, 0.001);
  EXPECT_DOUBLE_EQ(c.saving_ratio_memory, 20);
  EXPECT_DOUBLE_EQ(c.saving_ratio_disk_raw, 10);
  EXPECT_DOUBLE_EQ(c.saving_ratio_disk_lossless, 5);
  EXPECT_DOUBLE_EQ(c.per_read_saving_usd, 0.0095);
  EXPECT_DOUBLE_EQ(c.publish_usd, 0.009);
  EXPECT_DOUBLE_EQ(c.storage_usd, 0.08);
  EXPECT_EQ(c.breakeven_reads, 10);  // ceil(0.089 / 0.0095) = ceil(9.37)
  EXPECT_DOUBLE_EQ(c.egress_raw_usd, 0.18);
  EXPECT_DOUBLE_EQ(c.egress_lossless_usd, 0.09);
  EXPECT_DOUBLE_EQ(c.egress_over_prefill_raw, 18);
  EXPECT_DOUBLE_EQ(c.egress_over_prefill_lossless, 9);
  EXPECT_DOUBLE_EQ(c.full_price_usd, 0.0002);
  EXPECT_DOUBLE_EQ(c.agent_pays_usd, 0.00002);
  EXPECT_DOUBLE_EQ(c.provider_keeps_usd, 0.000002);
  EXPECT_DOUBLE_EQ(c.publisher_gets_usd, 0.000018);
  EXPECT_DOUBLE_EQ(c.provider_cost_usd, 0.0005);
  EXPECT_DOUBLE_EQ(c.provider_margin_usd, 0.000002 - 0.0005);
  // 0.0005 / (1000 · 0.1 · 0.1) per token = $50 per million tokens.
  EXPECT_DOUBLE_EQ(c.provider_breakeven_input_usd_per_mtok, 50);
}

// Figures() has no resident measurement (a reuse.json from before that path):
// a read is priced as a memory-tier load, as KnownLength checks.
TEST(CostModel, ReadIsPricedAsAResidentHitWhenMeasured) {
  LengthFigures f = Figures();
  EXPECT_EQ(HitReuseSeconds(f), 0.5);
  EXPECT_FALSE(CostsForLength(RoundPrices(), f).hit_resident);
  f.reuse_resident_s = 0.25;
  EXPECT_EQ(HitReuseSeconds(f), 0.25);
  const LengthCosts c = CostsForLength(RoundPrices(), f);
  EXPECT_TRUE(c.hit_resident);
  ASSERT_TRUE(c.reuse_resident_usd.has_value());
  EXPECT_DOUBLE_EQ(*c.reuse_resident_usd, 0.00025);
  EXPECT_DOUBLE_EQ(c.reuse_hit_usd, 0.00025);
  EXPECT_DOUBLE_EQ(c.reuse_memory_usd, 0.0005);  // still reported
  EXPECT_DOUBLE_EQ(c.saving_ratio_resident, 40);
  EXPECT_DOUBLE_EQ(c.saving_ratio_hit, 40);
  EXPECT_DOUBLE_EQ(c.saving_ratio_memory, 20);
  EXPECT_DOUBLE_EQ(c.per_read_saving_usd, 0.00975);
  EXPECT_EQ(c.breakeven_reads, 10);  // ceil(0.089 / 0.00975) = ceil(9.13)
  EXPECT_DOUBLE_EQ(c.provider_cost_usd, 0.00025);
  EXPECT_DOUBLE_EQ(c.provider_breakeven_input_usd_per_mtok, 25);
  // The hot document, measured, and the fit over lengths use the hit too.
  Prices p = RoundPrices();
  p.hot_tokens = 1000;
  ModelShape m;
  m.matmul_params_per_token = 1000;
  m.num_layers = m.num_attention_heads = m.head_dim = 1;
  m.max_context = 40960;
  m.kv_bytes_per_token = 1000;
  auto r = BuildCostReport(p, m, {f});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->hot.measured);
  EXPECT_DOUBLE_EQ(r->hot.reuse_usd, 0.00025);
  EXPECT_NE(CostReportTable(*r).find("reuse(res)"), std::string::npos);
  // Not exact: no saving on any path, the resident one included.
  f.exact = false;
  const LengthCosts d = CostsForLength(RoundPrices(), f);
  EXPECT_EQ(d.saving_ratio_resident, 0);
  EXPECT_EQ(d.saving_ratio_hit, 0);
  EXPECT_EQ(d.per_read_saving_usd, 0);
}

TEST(CostModel, NotExactIsNeverASaving) {
  LengthFigures f = Figures();
  f.exact = false;
  const LengthCosts c = CostsForLength(RoundPrices(), f);
  EXPECT_EQ(c.saving_ratio_memory, 0);
  EXPECT_EQ(c.per_read_saving_usd, 0);
  EXPECT_EQ(c.breakeven_reads, kInf);
}

TEST(CostModel, ZeroPrices) {
  Prices p;
  p.machine_usd_per_hour = p.storage_usd_per_gb_month = p.egress_usd_per_gb = p.input_usd_per_mtok = 0;
  const LengthCosts c = CostsForLength(p, Figures());
  EXPECT_EQ(c.prefill_usd, 0);
  EXPECT_EQ(c.reuse_memory_usd, 0);
  EXPECT_DOUBLE_EQ(c.saving_ratio_memory, 20);  // a time ratio: the price cancels
  EXPECT_EQ(c.breakeven_reads, 0);              // nothing to recover
  EXPECT_EQ(c.egress_over_prefill_raw, 0);      // 0 / 0
  EXPECT_EQ(c.provider_margin_usd, 0);
  // Free compute but paid egress: shipping can never beat a free prefill.
  p.egress_usd_per_gb = 0.09;
  const LengthCosts d = CostsForLength(p, Figures());
  EXPECT_EQ(d.egress_over_prefill_raw, kInf);
  ModelShape m;
  m.matmul_params_per_token = 1000;
  m.num_layers = m.num_attention_heads = m.head_dim = 1;
  m.max_context = 1 << 20;
  EXPECT_FALSE(ShippingBreakEvenLength(p, m, 1e9, 1e4).tokens.has_value());
}

TEST(CostModel, ShippingBreakEvenLength) {
  // $1/s, 1 GFLOP/s → $1e-9 per FLOP. Per token: 2·1000 matmul FLOPs; attention
  // 4·1·1·1·L(L+1)/2 = 2L(L+1); egress $1/GB × 1e4 B = $1e-5.
  // prefill − egress = 2e-9·L² + (2.002e-6 − 1e-5)·L → zero at L = 3999.
  Prices p;
  p.machine_usd_per_hour = 3600;
  p.egress_usd_per_gb = 1;
  ModelShape m;
  m.matmul_params_per_token = 1000;
  m.num_layers = m.num_attention_heads = m.head_dim = 1;
  m.max_context = 40960;
  const ShippingBreakEven s = ShippingBreakEvenLength(p, m, 1e9, 1e4);
  ASSERT_TRUE(s.tokens.has_value());
  EXPECT_NEAR(*s.tokens, 3999, 1);
  EXPECT_TRUE(s.within_context);
  const double L = *s.tokens;
  EXPECT_GE(ComputeUsd(p, PrefillFlops(m, L) / 1e9), EgressUsd(p, 1e4 * L));
  EXPECT_LT(ComputeUsd(p, PrefillFlops(m, L - 2) / 1e9), EgressUsd(p, 1e4 * (L - 2)));
  m.max_context = 2048;
  EXPECT_FALSE(ShippingBreakEvenLength(p, m, 1e9, 1e4).within_context);
  // Free egress: shipping breaks even at once.
  p.egress_usd_per_gb = 0;
  EXPECT_EQ(ShippingBreakEvenLength(p, m, 1e9, 1e4).tokens.value_or(-1), 1);
}

TEST(CostModel, OneTokenDocument) {
  ModelShape m;
  m.matmul_params_per_token = 1100;
  m.lm_head_params = 100;
  m.num_layers = 2;
  m.num_attention_heads = 3;
  m.head_dim = 4;
  // 2·1000 + 4·4·3·2·1 + 2·100
  EXPECT_DOUBLE_EQ(PrefillFlops(m, 1), 2000 + 96 + 200);
  EXPECT_DOUBLE_EQ(AttentionShare(m, 1), 96.0 / 2296.0);
  LengthFigures f = Figures();
  f.doc_tokens = 1;
  f.raw_bytes = f.lossless_bytes = 100;
  const LengthCosts c = CostsForLength(RoundPrices(), f);
  EXPECT_DOUBLE_EQ(c.full_price_usd, 2e-7);
  EXPECT_DOUBLE_EQ(c.egress_raw_usd, 9e-9);
}

TEST(CostModel, HotDocumentMeasuredAndHugeM) {
  Prices p = RoundPrices();
  p.hot_tokens = 1000;
  p.hot_agents = 1e15;
  ModelShape m;
  m.matmul_params_per_token = 1000;
  m.num_layers = m.num_attention_heads = m.head_dim = 1;
  m.max_context = 40960;
  m.kv_bytes_per_token = 2'000'000;
  auto r = BuildCostReport(p, m, {Figures()});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const HotDocument& h = r->hot;
  EXPECT_TRUE(h.measured);
  EXPECT_DOUBLE_EQ(h.without_kvmart_usd, 1e15 * 0.01);
  EXPECT_DOUBLE_EQ(h.with_kvmart_usd, 0.009 + 0.08 + 1e15 * 0.0005);
  EXPECT_TRUE(std::isfinite(h.saving_usd));
  EXPECT_GT(h.saving_usd, 0);
  EXPECT_DOUBLE_EQ(h.agents_pay_full_usd, 1e15 * 0.0002);
  EXPECT_DOUBLE_EQ(h.agents_pay_cached_usd, 1e15 * 0.00002);
  EXPECT_DOUBLE_EQ(r->flops_per_second, 1e11);
}

TEST(CostModel, HotDocumentModelledWhenNotMeasured) {
  Prices p = RoundPrices();
  p.hot_tokens = 4000;
  p.hot_agents = 10;
  ModelShape m;
  m.matmul_params_per_token = 1000;
  m.num_layers = m.num_attention_heads = m.head_dim = 1;
  m.max_context = 40960;
  m.kv_bytes_per_token = 1000;
  LengthFigures a = Figures(), b = Figures();
  b.doc_tokens = 2000;
  b.reuse_memory_s = 0.9;  // reuse fit: 0.1 + 0.0004·L
  b.scratch_s = 20;
  b.scratch_flops = 2e12;
  auto r = BuildCostReport(p, m, {a, b});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->hot.measured);
  EXPECT_NEAR(r->hot.reuse_usd, ComputeUsd(p, 0.1 + 0.0004 * 4000), 1e-12);
  EXPECT_NEAR(r->hot.prefill_usd, ComputeUsd(p, PrefillFlops(m, 4032) / 1e11), 1e-12);
}

TEST(CostModel, NoLengthsIsAnError) { EXPECT_FALSE(BuildCostReport(Prices{}, ModelShape{}, {}).ok()); }

TEST(CostModel, ParsePrices) {
  auto p = ParsePricesJson(R"({"machine_usd_per_hour": 1.5, "egress_usd_per_gb": 0.05, "hot_tokens": 100})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->machine_usd_per_hour, 1.5);
  EXPECT_EQ(p->egress_usd_per_gb, 0.05);
  EXPECT_EQ(p->hot_tokens, 100u);
  EXPECT_EQ(p->cache_read_multiplier, 0.1);  // default kept
  EXPECT_EQ(ParsePricesJson("{}")->egress_usd_per_gb, 0.09);
  EXPECT_FALSE(ParsePricesJson(R"({"machine_usd_per_hr": 1})").ok());
  EXPECT_FALSE(ParsePricesJson(R"({"egress_usd_per_gb": -1})").ok());
  EXPECT_FALSE(ParsePricesJson(R"({"cache_read_multiplier": 2})").ok());
  EXPECT_FALSE(ParsePricesJson(R"({"hot_tokens": 0})").ok());
  EXPECT_FALSE(ParsePricesJson("[1]").ok());
  EXPECT_FALSE(ParsePricesJson("not json").ok());
}

TEST(CostModel, ReuseJsonRoundTrip) {
  ReuseBenchResult r;
  r.shape.name = "unit";
  r.shape.matmul_params_per_token = 5000;
  r.shape.lm_head_params = 100;
  r.shape.num_layers = 2;
  r.shape.num_attention_heads = 4;
  r.shape.head_dim = 8;
  r.shape.max_context = 4096;
  r.shape.kv_bytes_per_token = 128;
  LengthResult l;
  l.doc_tokens = 300;
  l.question_tokens = 7;
  l.exact = true;
  l.scratch_wall_s = Stat3::Of({3, 1, 2});
  l.publish_total_s = Stat3::Of({1.5});
  l.resident.total_s = Stat3::Of({0.04, 0.08, 0.05});
  l.memory.total_s = Stat3::Of({0.1, 0.3});
  l.disk_raw.total_s = Stat3::Of({0.4});
  l.disk_lossless.total_s = Stat3::Of({0.5});
  l.raw_bytes = 38400;
  l.lossless_bytes = 30000;
  l.scratch_matmul_flops = 1e6;
  l.scratch_attention_flops = 2e5;
  r.lengths.push_back(l);
  auto s = ParseReuseJson(ReuseJson(r));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->shape.name, "unit");
  EXPECT_EQ(s->shape.kv_bytes_per_token, 128u);
  ASSERT_EQ(s->lengths.size(), 1u);
  const LengthFigures& f = s->lengths[0];
  EXPECT_EQ(f.doc_tokens, 300u);
  EXPECT_EQ(f.question_tokens, 7u);
  EXPECT_TRUE(f.exact);
  EXPECT_EQ(f.scratch_s, 2);  // median
  ASSERT_TRUE(f.reuse_resident_s.has_value());
  EXPECT_DOUBLE_EQ(*f.reuse_resident_s, 0.05);
  EXPECT_DOUBLE_EQ(f.reuse_memory_s, 0.2);
  EXPECT_EQ(f.publish_s, 1.5);
  EXPECT_EQ(f.lossless_bytes, 30000u);
  EXPECT_DOUBLE_EQ(f.scratch_flops, 1.2e6);
  EXPECT_FALSE(ParseReuseJson(R"({"model": {}})").ok());

  // A reuse.json written before the resident path: still read, no resident figure.
  auto j = nlohmann::json::parse(ReuseJson(r));
  j["lengths"][0]["reuse"].erase("resident");
  auto old = ParseReuseJson(j.dump());
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_FALSE(old->lengths[0].reuse_resident_s.has_value());
  EXPECT_DOUBLE_EQ(HitReuseSeconds(old->lengths[0]), 0.2);
}

TEST(CostModel, Stat3) {
  const Stat3 s = Stat3::Of({5, 1, 3, 2});
  EXPECT_EQ(s.median, 2.5);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 5);
}

// The FLOP model is the engine's own count, so extrapolations use the same arithmetic.
TEST(CostModel, PrefillFlopsMatchesTheEngine) {
  static kvmart::testing::SyntheticModels models;
  auto model = models.Load("tiny");
  ASSERT_NE(model, nullptr);
  EngineOptions o;
  o.threads = 1;
  auto engine = Engine::Create(model, o);
  ASSERT_TRUE(engine.ok());
  auto s = (*engine)->NewSession();
  std::vector<int32_t> toks(37);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = int32_t(100 + i);
  ASSERT_TRUE(s->Prefill(toks, 5).ok());
  const ModelShape m = ShapeOf(*model, "tiny");
  EXPECT_NEAR(PrefillFlops(m, 37), s->stats().matmul_flops + s->stats().attention_flops,
              1e-9 * PrefillFlops(m, 37));
}

}  // namespace
}  // namespace kvmart::economics
