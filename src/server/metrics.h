// Prometheus text-format metrics for the server (GET /metrics).
//
// Counters and histograms are owned by one Metrics object per server (no
// globals). Label sets are small and fixed by the code (route patterns, status
// codes, tiers), so a mutex-protected map is cheap enough; the hot per-token
// path only touches atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kvmart::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Appends the _bucket/_sum/_count lines of `name` with `labels` ("" or `k="v",...`).
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // one per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One finished HTTP request: `route` is the matched pattern, not the raw path,
  // so ids never become label values.
  void Request(const std::string& route, int status, double seconds);
  void Ttft(double seconds, bool reused);
  void QueueWait(double seconds) { queue_wait_.Observe(seconds); }   // admission wait of a request
  void InterToken(double seconds) { inter_token_.Observe(seconds); }  // between generated tokens
  void Ledger(const std::string& kind);  // purchase | load | refund | deposit | egress

  std::atomic<uint64_t> tokens_prefilled{0};
  std::atomic<uint64_t> tokens_reused{0};
  std::atomic<uint64_t> tokens_generated{0};
  std::atomic<uint64_t> kv_loads{0};          // requests that continued from an artifact
  std::atomic<uint64_t> kv_load_failures{0};  // loads refunded (damaged block, wrong model)
  std::atomic<uint64_t> auto_misses{0};       // kv.auto requests that found nothing to buy
  std::atomic<uint64_t> publishes{0};
  std::atomic<uint64_t> uploads_accepted{0}, uploads_rejected{0};
  std::atomic<uint64_t> disconnects{0};       // generations stopped because the client left
  std::atomic<uint64_t> rejected_429{0};
  std::atomic<uint64_t> rate_limited{0};  // 429 for a caller over its rate
  std::atomic<int64_t> queue_depth{0};
  std::atomic<int64_t> active_sessions{0};

  // The text exposition; `extra` is appended (store gauges read at scrape time).
  std::string Render(const std::string& extra) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> ledger_;
  Histogram ttft_cold_, ttft_reused_;
  Histogram queue_wait_, inter_token_;
};

}  // namespace kvmart::server
