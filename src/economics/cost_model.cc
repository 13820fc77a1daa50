#include "economics/cost_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvmart::economics {
namespace {

using json = nlohmann::json;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kBytesPerGb = 1e9;  // decimal GB, as clouds bill

// x / y with the conventions of the report: y = 0 gives +inf (or 0 for 0 / 0).
double Ratio(double x, double y) {
  if (y > 0) return x / y;
  return x > 0 ? kInf : 0.0;
}

// Least-squares line y = a + b·x (b ≥ 0, a ≥ 0), used to model the reuse time
// at lengths that were not measured. One point: through the origin.
struct Line {
  double a = 0, b = 0;
  double operator()(double x) const { return a + b * x; }
};
Line FitLine(const std::vector<std::pair<double, double>>& pts) {
  Line l;
  if (pts.empty()) return l;
  if (pts.size() == 1) {
    l.b = pts[0].first > 0 ? pts[0].second / pts[0].first : 0;
    return l;
  }
  double sx = 0, sy = 0, sxx = 0, sxy = 0, n = double(pts.size());
  for (auto [x, y] : pts) sx += x, sy += y, sxx += x * x, sxy += x * y;
  const double den = n * sxx - sx * sx;
  if (den <= 0) return l;
  l.b = std::max(0.0, (n * sxy - sx * sy) / den);
  l.a = std::max(0.0, (sy - l.b * sx) / n);
  return l;
}

json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string Usd(double v) {
  if (!std::isfinite(v)) return "never";
  if (v == 0) return "$0";
  if (std::fabs(v) >= 1000) return Fmt("$%.0f", v);
  if (std::fabs(v) >= 0.01) return Fmt("$%.4f", v);
  return Fmt("$%.3g", v);
}
std::string Times(double v) { return std::isfinite(v) ? Fmt("%.1fx", v) : "inf"; }

}  // namespace

StatusOr<Prices> ParsePricesJson(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("prices: not a JSON object");
  Prices p;
  struct Field {
    const char* name;
    double* value;
    double max;
  };
  const Field fields[] = {{"machine_usd_per_hour", &p.machine_usd_per_hour, kInf},
                          {"storage_usd_per_gb_month", &p.storage_usd_per_gb_month, kInf},
                          {"egress_usd_per_gb", &p.egress_usd_per_gb, kInf},
                          {"input_usd_per_mtok", &p.input_usd_per_mtok, kInf},
                          {"cache_read_multiplier", &p.cache_read_multiplier, 1.0},
                          {"provider_fee", &p.provider_fee, 1.0},
                          {"storage_months", &p.storage_months, kInf},
                          {"hot_agents", &p.hot_agents, kInf}};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "hot_tokens") {
      if (!it->is_number_unsigned() || it->get<uint64_t>() == 0) {
        return Status::InvalidArgument("prices: hot_tokens must be a positive integer");
      }
      p.hot_tokens = it->get<uint64_t>();
      continue;
    }
    const Field* f = nullptr;
    for (const auto& cand : fields) {
      if (it.key() == cand.name) f = &cand;
    }
    if (f == nullptr) return Status::InvalidArgument("prices: unknown field '" + it.key() + "'");
    if (!it->is_number()) return Status::InvalidArgument("prices: " + it.key() + " must be a number");
    const double v = it->get<double>();
    if (!std::isfinite(v) || v < 0 || v > f->max) {
      return Status::InvalidArgument("prices: " + it.key() + " out of range");
    }
    *f->value = v;
  }
  return p;
}

double PrefillFlops(const ModelShape& m, double n) {
  const double blocks = m.matmul_params_per_token - m.lm_head_params;
  return 2.0 * blocks * n + 4.0 * m.head_dim * m.num_attention_heads * m.num_layers * n * (n + 1) / 2.0 +
         2.0 * m.lm_head_params;
}

double AttentionShare(const ModelShape& m, double n) {
  const double total = PrefillFlops(m, n);
  return total > 0 ? 4.0 * m.head_dim * m.num_attention_heads * m.num_layers * n * (n + 1) / 2.0 / total : 0.0;
}

double ComputeUsd(const Prices& p, double seconds) { return p.machine_usd_per_hour * seconds / 3600.0; }
double EgressUsd(const Prices& p, double bytes) { return p.egress_usd_per_gb * bytes / kBytesPerGb; }
double StorageUsd(const Prices& p, double bytes, double months) {
  return p.storage_usd_per_gb_month * bytes / kBytesPerGb * months;
}

double BreakEvenReads(double publish_usd, double storage_usd, double saving) {
  const double cost = publish_usd + storage_usd;
  if (cost <= 0) return 0;
  if (!(saving > 0)) return kInf;
  return std::ceil(cost / saving);
}

ShippingBreakEven ShippingBreakEvenLength(const Prices& p, const ModelShape& m, double fps, double bpt) {
  // g(L) = prefill(L) − egress(L) = c2·L² + c1·L + c0; shipping breaks even where g ≥ 0.
  ShippingBreakEven r;
  if (!(fps > 0)) return r;
  const double usd_per_flop = p.machine_usd_per_hour / 3600.0 / fps;
  const double attn = 2.0 * m.head_dim * m.num_attention_heads * m.num_layers;  // 4·hd·h·layers·L(L+1)/2
  const double c2 = usd_per_flop * attn;
  const double c1 = usd_per_flop * (2.0 * (m.matmul_params_per_token - m.lm_head_params) + attn) -
                    p.egress_usd_per_gb * bpt / kBytesPerGb;
  const double c0 = usd_per_flop * 2.0 * m.lm_head_params;
  auto g = [&](double L) { return (c2 * L + c1) * L + c0; };
  if (g(1) >= 0 && c1 >= 0) {
    r.tokens = 1;  // egress never exceeds the prefill
  } else if (c2 <= 0) {
    return r;  // free compute (or no attention): prefill never catches up with egress
  } else {
    const double disc = c1 * c1 - 4 * c2 * c0;
    if (disc < 0) {
      r.tokens = 1;
    } else {
      r.tokens = std::max(1.0, std::ceil((-c1 + std::sqrt(disc)) / (2 * c2)));
    }
  }
  r.within_context = r.tokens && *r.tokens <= double(m.max_context);
  return r;
}

double HitReuseSeconds(const LengthFigures& f) { return f.reuse_resident_s.value_or(f.reuse_memory_s); }

LengthCosts CostsForLength(const Prices& p, const LengthFigures& f) {
  LengthCosts c;
  c.doc_tokens = f.doc_tokens;
  c.exact = f.exact;
  c.hit_resident = f.reuse_resident_s.has_value();
  c.prefill_usd = ComputeUsd(p, f.scratch_s);
  if (f.reuse_resident_s) c.reuse_resident_usd = ComputeUsd(p, *f.reuse_resident_s);
  c.reuse_memory_usd = ComputeUsd(p, f.reuse_memory_s);
  c.reuse_disk_raw_usd = ComputeUsd(p, f.reuse_disk_raw_s);
  c.reuse_disk_lossless_usd = ComputeUsd(p, f.reuse_disk_lossless_s);
  c.reuse_hit_usd = ComputeUsd(p, HitReuseSeconds(f));
  if (f.exact) {
    if (f.reuse_resident_s) c.saving_ratio_resident = Ratio(f.scratch_s, *f.reuse_resident_s);
    c.saving_ratio_memory = Ratio(f.scratch_s, f.reuse_memory_s);
    c.saving_ratio_disk_raw = Ratio(f.scratch_s, f.reuse_disk_raw_s);
    c.saving_ratio_disk_lossless = Ratio(f.scratch_s, f.reuse_disk_lossless_s);
    c.saving_ratio_hit = Ratio(f.scratch_s, HitReuseSeconds(f));
    c.per_read_saving_usd = c.prefill_usd - c.reuse_hit_usd;
  }
  c.publish_usd = ComputeUsd(p, f.publish_s);
  c.storage_usd = StorageUsd(p, double(f.lossless_bytes), p.storage_months);
  c.breakeven_reads = BreakEvenReads(c.publish_usd, c.storage_usd, c.per_read_saving_usd);
  c.egress_raw_usd = EgressUsd(p, double(f.raw_bytes));
  c.egress_lossless_usd = EgressUsd(p, double(f.lossless_bytes));
  c.egress_over_prefill_raw = Ratio(c.egress_raw_usd, c.prefill_usd);
  c.egress_over_prefill_lossless = Ratio(c.egress_lossless_usd, c.prefill_usd);
  c.full_price_usd = double(f.doc_tokens) * p.input_usd_per_mtok / 1e6;
  c.agent_pays_usd = c.full_price_usd * p.cache_read_multiplier;
  c.provider_keeps_usd = c.agent_pays_usd * p.provider_fee;
  c.publisher_gets_usd = c.agent_pays_usd - c.provider_keeps_usd;
  c.provider_cost_usd = c.reuse_hit_usd;
  c.provider_margin_usd = c.provider_keeps_usd - c.provider_cost_usd;
  c.provider_breakeven_input_usd_per_mtok =
      Ratio(c.provider_cost_usd * 1e6, double(f.doc_tokens) * p.cache_read_multiplier * p.provider_fee);
  return c;
}

StatusOr<CostReport> BuildCostReport(const Prices& p, const ModelShape& shape,
                                     const std::vector<LengthFigures>& figures) {
  if (figures.empty()) return Status::InvalidArgument("no measured lengths");
  CostReport r;
  r.prices = p;
  r.shape = shape;
  double flops = 0, secs = 0;
  std::vector<std::pair<double, double>> reuse_pts;
  uint64_t question = 0;
  for (const auto& f : figures) {
    r.lengths.push_back(CostsForLength(p, f));
    question = f.question_tokens;
    if (!f.exact) continue;
    flops += f.scratch_flops;
    secs += f.scratch_s;
    reuse_pts.emplace_back(double(f.doc_tokens), HitReuseSeconds(f));
  }
  r.flops_per_second = secs > 0 ? flops / secs : 0;
  const uint64_t bpt_raw = shape.kv_bytes_per_token;
  double lossless_ratio = 1.0;  // lossless / raw, from the longest exact length
  for (const auto& f : figures) {
    if (f.raw_bytes > 0) lossless_ratio = double(f.lossless_bytes) / double(f.raw_bytes);
  }
  r.ship_raw = ShippingBreakEvenLength(p, shape, r.flops_per_second, double(bpt_raw));
  r.ship_lossless = ShippingBreakEvenLength(p, shape, r.flops_per_second, double(bpt_raw) * lossless_ratio);

  // Hot document: the measured row when the length was measured, else the fits.
  HotDocument& h = r.hot;
  h.doc_tokens = p.hot_tokens;
  h.agents = p.hot_agents;
  const LengthFigures* hit = nullptr;
  for (const auto& f : figures) {
    if (f.doc_tokens == p.hot_tokens && f.exact) hit = &f;
  }
  double lossless_bytes;
  if (hit != nullptr) {
    h.measured = true;
    h.prefill_usd = ComputeUsd(p, hit->scratch_s);
    h.reuse_usd = ComputeUsd(p, HitReuseSeconds(*hit));
    h.publish_usd = ComputeUsd(p, hit->publish_s);
    lossless_bytes = double(hit->lossless_bytes);
  } else {
    const double L = double(p.hot_tokens);
    h.prefill_usd = r.flops_per_second > 0
                        ? ComputeUsd(p, PrefillFlops(shape, L + double(question)) / r.flops_per_second)
                        : 0;
    h.reuse_usd = ComputeUsd(p, FitLine(reuse_pts)(L));
    // Publishing is a prefill of the document (building the artifact is a few
    // percent more and is folded into the measured rows only).
    h.publish_usd = r.flops_per_second > 0 ? ComputeUsd(p, PrefillFlops(shape, L) / r.flops_per_second) : 0;
    lossless_bytes = double(bpt_raw) * lossless_ratio * L;
  }
  h.storage_usd = StorageUsd(p, lossless_bytes, p.storage_months);
  h.without_kvmart_usd = h.agents * h.prefill_usd;
  h.with_kvmart_usd = h.publish_usd + h.storage_usd + h.agents * h.reuse_usd;
  h.agents_pay_full_usd = h.agents * double(h.doc_tokens) * p.input_usd_per_mtok / 1e6;
  h.agents_pay_cached_usd = h.agents_pay_full_usd * p.cache_read_multiplier;
  h.saving_usd = h.without_kvmart_usd - h.with_kvmart_usd;
  return r;
}

StatusOr<ReuseSummary> ParseReuseJson(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("reuse.json: not a JSON object");
  try {
    ReuseSummary s;
    const json& m = j.at("model");
    s.shape.name = m.value("name", "");
    s.shape.matmul_params_per_token = m.at("matmul_params_per_token").get<double>();
    s.shape.lm_head_params = m.at("lm_head_params").get<double>();
    s.shape.num_layers = m.at("num_layers").get<uint32_t>();
    s.shape.num_attention_heads = m.at("num_attention_heads").get<uint32_t>();
    s.shape.head_dim = m.at("head_dim").get<uint32_t>();
    s.shape.max_context = m.at("max_context").get<uint64_t>();
    s.shape.kv_bytes_per_token = m.at("kv_bytes_per_token").get<uint64_t>();
    for (const json& l : j.at("lengths")) {
      LengthFigures f;
      f.doc_tokens = l.at("doc_tokens").get<uint64_t>();
      f.question_tokens = l.at("question_tokens").get<uint64_t>();
      f.exact = l.at("exact").get<bool>();
      f.scratch_s = l.at("scratch").at("wall_s").at("median").get<double>();
      f.scratch_flops = l.at("scratch").at("flops").get<double>();
      f.publish_s = l.at("publish").at("total_s").at("median").get<double>();
      const json& reuse = l.at("reuse");
      if (reuse.contains("resident")) {
        f.reuse_resident_s = reuse.at("resident").at("total_s").at("median").get<double>();
      }
      f.reuse_memory_s = reuse.at("memory").at("total_s").at("median").get<double>();
      f.reuse_disk_raw_s = reuse.at("disk_raw").at("total_s").at("median").get<double>();
      f.reuse_disk_lossless_s = reuse.at("disk_lossless").at("total_s").at("median").get<double>();
      f.raw_bytes = l.at("sizes").at("raw_bytes").get<uint64_t>();
      f.lossless_bytes = l.at("sizes").at("lossless_bytes").get<uint64_t>();
      s.lengths.push_back(f);
    }
    return s;
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("reuse.json: ") + e.what());
  }
}

std::string CostReportJson(const CostReport& r) {
  const Prices& p = r.prices;
  json j;
  j["units"] = "USD, estimates (doubles); null = never";
  j["prices"] = {{"machine_usd_per_hour", p.machine_usd_per_hour},
                 {"storage_usd_per_gb_month", p.storage_usd_per_gb_month},
                 {"egress_usd_per_gb", p.egress_usd_per_gb},
                 {"input_usd_per_mtok", p.input_usd_per_mtok},
                 {"cache_read_multiplier", p.cache_read_multiplier},
                 {"provider_fee", p.provider_fee},
                 {"storage_months", p.storage_months},
                 {"hot_tokens", p.hot_tokens},
                 {"hot_agents", p.hot_agents}};
  j["model"] = r.shape.name;
  j["prefill_flops_per_second"] = r.flops_per_second;
  json rows = json::array();
  for (const auto& c : r.lengths) {
    rows.push_back({{"doc_tokens", c.doc_tokens},
                    {"exact", c.exact},
                    {"attention_share", AttentionShare(r.shape, double(c.doc_tokens))},
                    {"prefill_usd", c.prefill_usd},
                    {"hit_path", c.hit_resident ? "resident" : "memory"},
                    {"reuse_hit_usd", c.reuse_hit_usd},
                    {"reuse_resident_usd", c.reuse_resident_usd ? json(*c.reuse_resident_usd) : json(nullptr)},
                    {"reuse_memory_usd", c.reuse_memory_usd},
                    {"reuse_disk_raw_usd", c.reuse_disk_raw_usd},
                    {"reuse_disk_lossless_usd", c.reuse_disk_lossless_usd},
                    {"saving_ratio_hit", Num(c.saving_ratio_hit)},
                    {"saving_ratio_resident", Num(c.saving_ratio_resident)},
                    {"saving_ratio_memory", Num(c.saving_ratio_memory)},
                    {"saving_ratio_disk_raw", Num(c.saving_ratio_disk_raw)},
                    {"saving_ratio_disk_lossless", Num(c.saving_ratio_disk_lossless)},
                    {"per_read_saving_usd", c.per_read_saving_usd},
                    {"publish_usd", c.publish_usd},
                    {"storage_usd", c.storage_usd},
                    {"breakeven_reads", Num(c.breakeven_reads)},
                    {"egress_raw_usd", c.egress_raw_usd},
                    {"egress_lossless_usd", c.egress_lossless_usd},
                    {"egress_over_prefill_raw", Num(c.egress_over_prefill_raw)},
                    {"egress_over_prefill_lossless", Num(c.egress_over_prefill_lossless)},
                    {"tariff",
                     {{"full_price_usd", c.full_price_usd},
                      {"agent_pays_usd", c.agent_pays_usd},
                      {"publisher_gets_usd", c.publisher_gets_usd},
                      {"provider_keeps_usd", c.provider_keeps_usd},
                      {"provider_cost_usd", c.provider_cost_usd},
                      {"provider_margin_usd", c.provider_margin_usd},
                      {"provider_breakeven_input_usd_per_mtok", Num(c.provider_breakeven_input_usd_per_mtok)}}}});
  }
  j["lengths"] = rows;
  auto ship = [](const ShippingBreakEven& s) {
    return json{{"tokens", s.tokens ? json(*s.tokens) : json(nullptr)}, {"within_context", s.within_context}};
  };
  j["shipping_breakeven"] = {{"raw", ship(r.ship_raw)}, {"lossless", ship(r.ship_lossless)}};
  const HotDocument& h = r.hot;
  j["hot_document"] = {{"doc_tokens", h.doc_tokens},         {"agents", h.agents},
                       {"measured", h.measured},             {"prefill_usd", h.prefill_usd},
                       {"reuse_usd", h.reuse_usd},           {"publish_usd", h.publish_usd},
                       {"storage_usd", h.storage_usd},       {"without_kvmart_usd", h.without_kvmart_usd},
                       {"with_kvmart_usd", h.with_kvmart_usd}, {"agents_pay_full_usd", h.agents_pay_full_usd},
                       {"agents_pay_cached_usd", h.agents_pay_cached_usd}, {"saving_usd", h.saving_usd}};
  return j.dump(2);
}

std::string CostReportTable(const CostReport& r) {
  std::ostringstream o;
  const Prices& p = r.prices;
  o << "model " << r.shape.name << "; machine $" << p.machine_usd_per_hour << "/h, storage $"
    << p.storage_usd_per_gb_month << "/GB-month, egress $" << p.egress_usd_per_gb << "/GB, input $"
    << p.input_usd_per_mtok << "/Mtok, cache-read x" << p.cache_read_multiplier << ", provider fee "
    << p.provider_fee * 100 << "%\n";
  o << "measured prefill throughput " << Fmt("%.3g", r.flops_per_second / 1e9) << " GFLOP/s\n\n";
  char line[512];
  std::snprintf(line, sizeof line, "%8s %6s %11s %11s %11s %11s %8s %9s %11s %8s %11s %8s %6s\n", "L", "attn%",
                "prefill", "reuse(res)", "reuse(mem)", "publish", "saving", "N*", "egress raw", "eg/pf", "egress lsl",
                "eg/pf", "exact");
  o << line;
  bool any_memory_hit = false;
  for (const auto& c : r.lengths) {
    any_memory_hit = any_memory_hit || !c.hit_resident;
    std::snprintf(line, sizeof line, "%8llu %5.1f%% %11s %11s %11s %11s %8s %9s %11s %8s %11s %8s %6s\n",
                  static_cast<unsigned long long>(c.doc_tokens), 100 * AttentionShare(r.shape, double(c.doc_tokens)),
                  Usd(c.prefill_usd).c_str(), c.reuse_resident_usd ? Usd(*c.reuse_resident_usd).c_str() : "-",
                  Usd(c.reuse_memory_usd).c_str(), Usd(c.publish_usd).c_str(),
                  c.exact ? Times(c.saving_ratio_hit).c_str() : "FAIL",
                  std::isfinite(c.breakeven_reads) ? Fmt("%.0f", c.breakeven_reads).c_str() : "never",
                  Usd(c.egress_raw_usd).c_str(), Times(c.egress_over_prefill_raw).c_str(),
                  Usd(c.egress_lossless_usd).c_str(), Times(c.egress_over_prefill_lossless).c_str(),
                  c.exact ? "yes" : "NO");
    o << line;
  }
  o << "\nsaving, N*, the provider's cost and the hot document price a read as a hit on the resident pages "
       "(reuse(res))"
    << (any_memory_hit ? "; rows without a resident measurement (-) as a memory-tier load" : "") << "\n";
  o << "N* = reads to recover publish + " << p.storage_months
    << " month(s) of storage (lossless); eg/pf = egress of the artifact / the prefill it replaces\n\n";
  o << "tariff per load (document tokens at the cache-read price):\n";
  std::snprintf(line, sizeof line, "%8s %11s %11s %11s %11s %11s %12s %16s\n", "L", "full price", "agent pays",
                "publisher", "provider", "prov. cost", "prov. margin", "fee covers cost");
  o << line;
  for (const auto& c : r.lengths) {
    std::snprintf(line, sizeof line, "%8llu %11s %11s %11s %11s %11s %12s %16s\n",
                  static_cast<unsigned long long>(c.doc_tokens), Usd(c.full_price_usd).c_str(),
                  Usd(c.agent_pays_usd).c_str(), Usd(c.publisher_gets_usd).c_str(),
                  Usd(c.provider_keeps_usd).c_str(), Usd(c.provider_cost_usd).c_str(),
                  Usd(c.provider_margin_usd).c_str(),
                  std::isfinite(c.provider_breakeven_input_usd_per_mtok)
                      ? (">= " + Fmt("$%.3g", c.provider_breakeven_input_usd_per_mtok) + "/M").c_str()
                      : "never");
    o << line;
  }
  auto ship = [&](const char* name, const ShippingBreakEven& s) {
    o << "shipping the " << name << " artifact breaks even with its prefill ";
    if (!s.tokens) {
      o << "at no length\n";
    } else if (*s.tokens <= 1) {
      o << "at every length (its egress never exceeds the prefill it replaces)\n";
    } else {
      o << "from L = " << Fmt("%.0f", *s.tokens) << " tokens"
        << (s.within_context ? "" : " (beyond the model's context of " + std::to_string(r.shape.max_context) + ")")
        << "\n";
    }
  };
  o << "\n";
  ship("raw", r.ship_raw);
  ship("lossless", r.ship_lossless);
  const HotDocument& h = r.hot;
  o << "\nhot document: " << h.doc_tokens << " tokens read by " << Fmt("%.3g", h.agents) << " agents ("
    << (h.measured ? "measured" : "modelled") << ")\n"
    << "  compute without kvmart " << Usd(h.without_kvmart_usd) << ", with kvmart " << Usd(h.with_kvmart_usd)
    << " (publish " << Usd(h.publish_usd) << ", storage " << Usd(h.storage_usd) << "), saving "
    << Usd(h.saving_usd) << "\n"
    << "  agents pay " << Usd(h.agents_pay_full_usd) << " at the input price, " << Usd(h.agents_pay_cached_usd)
    << " at the cache-read price\n";
  return o.str();
}

std::string CostCsv(const CostReport& r) {
  std::ostringstream o;
  o << "doc_tokens,exact,prefill_usd,reuse_hit_usd,reuse_resident_usd,reuse_memory_usd,reuse_disk_raw_usd,"
       "reuse_disk_lossless_usd,egress_raw_usd,egress_lossless_usd,breakeven_reads,agent_pays_usd,"
       "provider_margin_usd\n";
  for (const auto& c : r.lengths) {
    o << c.doc_tokens << "," << (c.exact ? 1 : 0) << "," << c.prefill_usd << "," << c.reuse_hit_usd << ",";
    if (c.reuse_resident_usd) o << *c.reuse_resident_usd;  // empty when not measured
    o << "," << c.reuse_memory_usd << "," << c.reuse_disk_raw_usd << "," << c.reuse_disk_lossless_usd << ","
      << c.egress_raw_usd << ","
      << c.egress_lossless_usd << "," << (std::isfinite(c.breakeven_reads) ? std::to_string(c.breakeven_reads) : "")
      << "," << c.agent_pays_usd << "," << c.provider_margin_usd << "\n";
  }
  return o.str();
}

std::string CostCurveCsv(const CostReport& r) {
  std::ostringstream o;
  o << "doc_tokens,prefill_usd,reuse_usd,egress_raw_usd,egress_lossless_usd\n";
  std::vector<std::pair<double, double>> reuse_pts;
  double lossless_ratio = 1.0;
  for (const auto& c : r.lengths) {
    if (c.exact) reuse_pts.emplace_back(double(c.doc_tokens), c.reuse_hit_usd);
  }
  if (!r.lengths.empty()) {
    const auto& last = r.lengths.back();
    if (last.egress_raw_usd > 0) lossless_ratio = last.egress_lossless_usd / last.egress_raw_usd;
  }
  const Line reuse = FitLine(reuse_pts);
  const double top = std::max(4.0 * double(r.shape.max_context), 1024.0);
  for (double L = 16; L <= top * 1.0001; L *= std::pow(2.0, 0.25)) {
    const double prefill = r.flops_per_second > 0 ? ComputeUsd(r.prices, PrefillFlops(r.shape, L) / r.flops_per_second) : 0;
    const double egress_raw = EgressUsd(r.prices, double(r.shape.kv_bytes_per_token) * L);
    o << L << "," << prefill << "," << reuse(L) << "," << egress_raw << "," << egress_raw * lossless_ratio << "\n";
  }
  return o.str();
}

}  // namespace kvmart::economics
