// The inference engine: a loaded model, a kernel path, a thread pool, and
// sessions that each own a KV cache.
//
// Exactness (docs/DESIGN.md §3): a session's logits depend only on its token sequence —
// not on prefill chunking, thread count, kernel path, the other sessions batched
// into the same forward pass, or whether earlier KV rows were computed here or
// imported. ExportKv/ImportKv move those rows bit-exactly.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/status.h"
#include "engine/kv_cache.h"
#include "engine/sampling.h"
#include "kernels/kernels.h"
#include "model/model.h"

namespace kvmart {

struct EngineOptions {
  KernelPath kernels = KernelPath::kPortable;
  size_t threads = 0;       // 0 = all cores
  size_t max_context = 0;   // 0 = the model's max_position_embeddings
  // KV pages kept (faulted in) between sessions, in bytes; 0 = a quarter of
  // the machine's memory.
  size_t kv_cache_bytes = 0;
  // Bytes of pages to allocate and fault in at start-up (a server sets this so
  // its first requests pay no page faults); 0 = none.
  size_t kv_prefault_bytes = 0;
  // Most bytes of KV pages in use at once (0: no limit). At the limit, a
  // session that needs a page gets ResourceExhausted (KvPagesExhausted) once
  // the reclaimer (SetKvReclaimer) has nothing left to free.
  size_t kv_limit_bytes = 0;
  // Concurrent sessions' forward requests are batched into one pass of at
  // most this many new tokens (a single larger request still runs, alone).
  size_t max_batch_tokens = 512;
};

// KV rows of positions [begin, begin + token_ids.size()), in the exchange layout
// of docs/DESIGN.md §4: for each layer, K then V, each [tokens][kv_heads][head_dim] bf16.
struct KvExport {
  uint32_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  uint64_t begin = 0;
  std::vector<int32_t> token_ids;
  std::vector<uint16_t> data;
  uint64_t bytes_per_token() const { return uint64_t{num_layers} * 2 * num_kv_heads * head_dim * 2; }
};

// A session's KV frozen for sharing: its leading whole pages, resident once
// and attached by reference (no KV bytes copied), plus the rows of its last,
// partial page, copied into the attaching session's own page.
struct KvPrefix {
  std::shared_ptr<const KvSharedPages> pages;
  std::vector<int32_t> tokens;  // every token of the prefix
  KvExport tail;                // rows past the shared pages (fewer than a page)
  uint64_t shared_bytes(const ModelConfig& c) const { return uint64_t{pages->tokens()} * c.kv_bytes_per_token(); }
};

// Counters for cost accounting (economics, metrics).
struct SessionStats {
  uint64_t tokens_prefilled = 0;  // tokens run through the model
  uint64_t tokens_imported = 0;
  uint64_t tokens_attached = 0;   // shared pages referenced, not copied
  double matmul_flops = 0;        // 2 · params touched
  double attention_flops = 0;     // 4 · head_dim · keys · heads per token and layer
};

class Session;

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const Model> model, const EngineOptions& options);

  const Model& model() const { return *model_; }
  const KernelOps& ops() const { return ops_; }
  size_t max_context() const { return max_context_; }
  size_t threads() const { return pool_->num_threads(); }
  std::unique_ptr<Session> NewSession();

  // Continuous batching: forward requests of sessions running on different
  // threads at the same time are stacked into one pass (bit-identical to
  // running each alone). Counters since start:
  struct BatchStats {
    static constexpr size_t kBuckets = 6;  // sequences per pass: 1, 2, ≤4, ≤8, ≤16, more
    uint64_t passes = 0, sequences = 0, tokens = 0;
    // Sequences whose attention read a resident prefix together with other
    // sessions of the pass (each shared page read once for all of them).
    uint64_t shared_prefix_sequences = 0;
    std::array<uint64_t, kBuckets> sequences_histogram{};
  };
  BatchStats batch_stats() const;
  const KvPagePool& kv_pages() const { return *kv_pages_; }
  // Called when the page limit is reached; returns false when it freed nothing.
  void SetKvReclaimer(std::function<bool()> reclaim) { kv_pages_->SetReclaimer(std::move(reclaim)); }

 private:
  friend class Session;
  struct ForwardRequest {
    Session* session;
    std::span<const int32_t> tokens;
    bool want_logits;
    Status result = Status::Ok();
    bool done = false;
  };
  Status Submit(ForwardRequest& request);
  // Returns how many of the batch's sequences read a shared prefix together.
  size_t ForwardBatch(std::span<ForwardRequest* const> batch);

  Engine(std::shared_ptr<const Model> model, const KernelOps& ops, size_t threads, size_t max_context,
         size_t kv_cache_bytes, size_t kv_limit_bytes);

  std::shared_ptr<const Model> model_;
  const KernelOps& ops_;
  std::unique_ptr<ThreadPool> pool_;
  std::mutex compute_mu_;  // one pass (or KV move) at a time on the shared pool
  std::unique_ptr<KvPagePool> kv_pages_;
  size_t max_batch_tokens_ = 512;
  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<ForwardRequest*> pending_;
  bool running_ = false;
  BatchStats batch_stats_;
  size_t max_context_;
  std::vector<float> rope_cos_, rope_sin_;  // [max_context][head_dim / 2]
};

class Session {
 public:
  using Progress = std::function<void(size_t done, size_t total)>;

  // Appends tokens and computes the logits after the last one. chunk_size 0
  // runs all tokens in one batch; any chunk size gives identical results.
  Status Prefill(std::span<const int32_t> tokens, size_t chunk_size = 0, const Progress& progress = nullptr);
  // Picks the next token from the current logits, appends it, and computes the
  // logits after it. Returns the token.
  StatusOr<int32_t> DecodeStep(const SamplingParams& params = {});
  // The token DecodeStep would choose now, without running it: the last token
  // of an answer needs no forward pass (its logits would go unused).
  StatusOr<int32_t> Sample(const SamplingParams& params = {}) const;
  // Logits after the last token; FailedPrecondition when none are computed
  // (empty session, or right after ImportKv).
  StatusOr<std::span<const float>> logits() const;

  StatusOr<KvExport> ExportKv(size_t begin, size_t end) const;
  // Appends imported rows; kv.begin must equal the current length.
  Status ImportKv(const KvExport& kv);

  // Freezes this session's KV as a shareable prefix: its whole pages become
  // shared (the session keeps using them) and the partial tail is exported.
  // FailedPrecondition if the session itself started from a shared prefix.
  StatusOr<std::shared_ptr<const KvPrefix>> ShareAsPrefix();
  // An empty session continues from `prefix`: its shared pages are attached
  // (O(pages), nothing copied), its tail rows imported. Bit-identical to
  // having prefilled or imported the prefix's tokens.
  Status Attach(const KvPrefix& prefix);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  size_t size() const { return tokens_.size(); }
  const SessionStats& stats() const { return stats_; }
  const Engine& engine() const { return *engine_; }

 private:
  friend class Engine;
  explicit Session(Engine* engine);
  Status Forward(std::span<const int32_t> tokens, bool want_logits);

  Engine* engine_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  bool has_logits_ = false;
  SessionStats stats_;
};

}  // namespace kvmart
