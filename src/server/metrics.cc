#include "server/metrics.h"

#include <cstdio>

namespace kvmart::server {
namespace {

const std::vector<double>& LatencyBounds() {
  static const std::vector<double> kBounds = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return kBounds;
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string Join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "," + b;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? Num(bounds_[i]) : "+Inf";
    *out += name + "_bucket{" + Join(labels, "le=\"" + le + "\"") + "} " + std::to_string(cumulative) + "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + braces + " " + Num(sum_) + "\n";
  *out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_cold_(LatencyBounds()), ttft_reused_(LatencyBounds()), queue_wait_(LatencyBounds()), inter_token_(LatencyBounds()) {}

void Metrics::Request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) it = latency_.try_emplace(route, LatencyBounds()).first;
  it->second.Observe(seconds);
}

void Metrics::Ttft(double seconds, bool reused) { (reused ? ttft_reused_ : ttft_cold_).Observe(seconds); }

void Metrics::Ledger(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  ++ledger_[kind];
}

std::string Metrics::Render(const std::string& extra) const {
  std::string out;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(v) + "\n";
  };
  auto gauge = [&](const char* name, const char* help, int64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
           std::to_string(v) + "\n";
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    out += "# HELP kvmart_http_requests_total HTTP requests by route and status.\n";
    out += "# TYPE kvmart_http_requests_total counter\n";
    for (const auto& [k, v] : requests_) {
      out += "kvmart_http_requests_total{route=\"" + k.first + "\",code=\"" + std::to_string(k.second) + "\"} " +
             std::to_string(v) + "\n";
    }
    out += "# HELP kvmart_http_request_duration_seconds Request latency by route.\n";
    out += "# TYPE kvmart_http_request_duration_seconds histogram\n";
    for (const auto& [route, h] : latency_) {
      h.Render("kvmart_http_request_duration_seconds", "route=\"" + route + "\"", &out);
    }
    out += "# HELP kvmart_ledger_postings_total Ledger transactions posted by this server, by kind.\n";
    out += "# TYPE kvmart_ledger_postings_total counter\n";
    for (const auto& [kind, v] : ledger_) {
      out += "kvmart_ledger_postings_total{kind=\"" + kind + "\"} " + std::to_string(v) + "\n";
    }
  }
  out += "# HELP kvmart_ttft_seconds Time to first token, cold prefill vs continued from an artifact.\n";
  out += "# TYPE kvmart_ttft_seconds histogram\n";
  ttft_cold_.Render("kvmart_ttft_seconds", "kv=\"cold\"", &out);
  ttft_reused_.Render("kvmart_ttft_seconds", "kv=\"reused\"", &out);
  out += "# HELP kvmart_queue_wait_seconds Time a request waited for an engine session.\n";
  out += "# TYPE kvmart_queue_wait_seconds histogram\n";
  queue_wait_.Render("kvmart_queue_wait_seconds", "", &out);
  out += "# HELP kvmart_inter_token_seconds Time between consecutive generated tokens of a request.\n";
  out += "# TYPE kvmart_inter_token_seconds histogram\n";
  inter_token_.Render("kvmart_inter_token_seconds", "", &out);
  counter("kvmart_tokens_prefilled_total", "Prompt tokens run through the model.", tokens_prefilled);
  counter("kvmart_tokens_reused_total", "Prompt tokens imported from artifacts instead of prefilled.", tokens_reused);
  counter("kvmart_tokens_generated_total", "Completion tokens generated.", tokens_generated);
  counter("kvmart_kv_loads_total", "Requests continued from an artifact.", kv_loads);
  counter("kvmart_kv_load_failures_total", "Artifact loads that failed and were refunded.", kv_load_failures);
  counter("kvmart_kv_auto_misses_total", "kv.auto requests with no affordable published prefix.", auto_misses);
  counter("kvmart_publishes_total", "Artifacts published through the API.", publishes);
  counter("kvmart_uploads_accepted_total", "Uploaded artifacts that passed every check.", uploads_accepted);
  counter("kvmart_uploads_rejected_total", "Uploaded artifacts refused (422).", uploads_rejected);
  counter("kvmart_client_disconnects_total", "Generations stopped because the client went away.", disconnects);
  counter("kvmart_rejected_total", "Requests rejected with 429 (queue full).", rejected_429);
  counter("kvmart_rate_limited_total", "Requests refused with 429 because their API key was over its rate.",
          rate_limited);
  gauge("kvmart_queue_depth", "Requests waiting for an engine session.", queue_depth);
  gauge("kvmart_active_sessions", "Engine sessions in use.", active_sessions);
  out += extra;
  return out;
}

}  // namespace kvmart::server
