#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>

#include "kernels/bf16.h"

namespace kvmart {

Engine::Engine(std::shared_ptr<const Model> model, const KernelOps& ops, size_t threads, size_t max_context,
               size_t kv_cache_bytes, size_t kv_limit_bytes)
    : model_(std::move(model)), ops_(ops), pool_(std::make_unique<ThreadPool>(threads)), max_context_(max_context) {
  const ModelConfig& mc = model_->config();
  if (kv_cache_bytes == 0) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    kv_cache_bytes = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 4 : size_t{1} << 30;
  }
  kv_pages_ = std::make_unique<KvPagePool>(
      KvCache::PageElements(mc.num_hidden_layers, mc.num_key_value_heads, mc.head_dim), kv_cache_bytes, kv_limit_bytes);
  // RoPE tables, once, deterministically: angle = pos · theta^(-2i/d) in double,
  // rounded to float. Each entry depends only on (pos, i).
  const ModelConfig& c = model_->config();
  const size_t half = c.head_dim / 2;
  rope_cos_.resize(max_context_ * half);
  rope_sin_.resize(max_context_ * half);
  for (size_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(c.rope_theta, -2.0 * double(i) / double(c.head_dim));
    for (size_t pos = 0; pos < max_context_; ++pos) {
      const double angle = double(pos) * inv_freq;
      rope_cos_[pos * half + i] = static_cast<float>(std::cos(angle));
      rope_sin_[pos * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const Model> model, const EngineOptions& o) {
  if (model == nullptr) return Status::InvalidArgument("no model");
  if (!CpuSupports(o.kernels)) {
    return Status::FailedPrecondition(std::string("the ") + KernelPathName(o.kernels) +
                                      " kernel path needs a CPU with " +
                                      (o.kernels == KernelPath::kAvx2 ? "AVX2 and FMA" : "AVX-512F"));
  }
  const ModelConfig& mc = model->config();
  if (mc.num_attention_heads / mc.num_key_value_heads > kMaxAttendShared) {
    return Status::InvalidArgument("more than " + std::to_string(kMaxAttendShared) +
                                   " query heads per kv head are not supported");
  }
  size_t max_ctx = mc.max_position_embeddings;
  if (o.max_context > 0) max_ctx = std::min(max_ctx, o.max_context);
  auto engine = std::unique_ptr<Engine>(
      new Engine(std::move(model), GetKernelOps(o.kernels), o.threads, max_ctx, o.kv_cache_bytes, o.kv_limit_bytes));
  engine->max_batch_tokens_ = std::max<size_t>(1, o.max_batch_tokens);
  if (o.kv_prefault_bytes != 0) engine->kv_pages_->Prefault(o.kv_prefault_bytes);
  return engine;
}

std::unique_ptr<Session> Engine::NewSession() { return std::unique_ptr<Session>(new Session(this)); }

Session::Session(Engine* engine)
    : engine_(engine),
      cache_(engine->model().config().num_hidden_layers, engine->model().config().num_key_value_heads,
             engine->model().config().head_dim, engine->max_context(), engine->kv_pages_.get()) {}

Status Session::Prefill(std::span<const int32_t> tokens, size_t chunk_size, const Progress& progress) {
  if (tokens.empty()) return Status::InvalidArgument("prefill of zero tokens");
  const uint32_t vocab = engine_->model().config().vocab_size;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= vocab) {
      return Status::InvalidArgument("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                     " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
  KVMART_RETURN_IF_ERROR(cache_.Reserve(tokens_.size() + tokens.size()));
  if (chunk_size == 0) chunk_size = tokens.size();
  has_logits_ = false;
  for (size_t b = 0; b < tokens.size(); b += chunk_size) {
    const size_t e = std::min(tokens.size(), b + chunk_size);
    KVMART_RETURN_IF_ERROR(Forward(tokens.subspan(b, e - b), e == tokens.size()));
    if (progress) progress(e, tokens.size());
  }
  return Status::Ok();
}

StatusOr<int32_t> Session::Sample(const SamplingParams& params) const {
  KVMART_ASSIGN_OR_RETURN(auto l, logits());
  return SampleToken(l, params, tokens_.size());
}

StatusOr<int32_t> Session::DecodeStep(const SamplingParams& params) {
  KVMART_ASSIGN_OR_RETURN(const int32_t next, Sample(params));
  KVMART_RETURN_IF_ERROR(Prefill(std::span<const int32_t>(&next, 1)));
  return next;
}

StatusOr<std::span<const float>> Session::logits() const {
  if (!has_logits_) return Status::FailedPrecondition("no logits: prefill at least one token after the last import");
  return std::span<const float>(logits_);
}

Status Session::Forward(std::span<const int32_t> tokens, bool want_logits) {
  Engine::ForwardRequest r{this, tokens, want_logits};
  return engine_->Submit(r);
}

// Flat combining: the first caller to find no pass running becomes the leader
// and runs one forward pass over every pending request (up to the token
// budget), its own among them if it fits; the others wait for their request
// to be marked done. No scheduler thread, and a lone caller pays one lock.
Status Engine::Submit(ForwardRequest& r) {
  std::unique_lock<std::mutex> lock(queue_mu_);
  pending_.push_back(&r);
  while (!r.done) {
    if (running_) {
      queue_cv_.wait(lock);
      continue;
    }
    running_ = true;
    std::vector<ForwardRequest*> batch;
    size_t tokens = 0;
    // FIFO; the first request always goes (a long prefill is never split here:
    // callers chunk it), later ones while the budget lasts.
    while (!pending_.empty() && (batch.empty() || tokens + pending_.front()->tokens.size() <= max_batch_tokens_)) {
      tokens += pending_.front()->tokens.size();
      batch.push_back(pending_.front());
      pending_.pop_front();
    }
    lock.unlock();
    const size_t shared_prefix_sequences = ForwardBatch(batch);
    lock.lock();
    batch_stats_.shared_prefix_sequences += shared_prefix_sequences;
    batch_stats_.passes += 1;
    batch_stats_.sequences += batch.size();
    batch_stats_.tokens += tokens;
    size_t bucket = 0;
    while (bucket + 1 < BatchStats::kBuckets && (size_t{1} << bucket) < batch.size()) ++bucket;
    batch_stats_.sequences_histogram[bucket] += 1;
    for (ForwardRequest* b : batch) b->done = true;
    running_ = false;
    queue_cv_.notify_all();
  }
  return r.result;
}

Engine::BatchStats Engine::batch_stats() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return batch_stats_;
}

// One forward pass over the new tokens of several sessions. Rows of all
// requests are stacked: every matmul runs once over all of them (the weights
// stream from memory once per pass), and each row's result is the same as
// alone because every output's FMA chain is its own (kernels.h). Attention is
// per session over its own pages, except that sessions continuing from the
// same resident prefix read its pages together (attend_shared).
size_t Engine::ForwardBatch(std::span<ForwardRequest* const> batch) {
  std::lock_guard<std::mutex> lock(compute_mu_);
  const Model& model = *model_;
  const ModelConfig& c = model.config();
  const KernelOps& ops = ops_;
  ThreadPool& pool = *pool_;
  const size_t H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  const size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads, group = nh / nkv;
  const size_t half = hd / 2;
  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // Row r belongs to request row_req[r] at position row_pos[r].
  std::vector<size_t> first_row(batch.size() + 1, 0);
  for (size_t i = 0; i < batch.size(); ++i) first_row[i + 1] = first_row[i] + batch[i]->tokens.size();
  const size_t T = first_row.back();
  std::vector<size_t> row_req(T), row_pos(T);
  for (size_t i = 0; i < batch.size(); ++i) {
    const size_t p0 = batch[i]->session->tokens_.size();
    for (size_t r = first_row[i]; r < first_row[i + 1]; ++r) {
      row_req[r] = i;
      row_pos[r] = p0 + (r - first_row[i]);
    }
  }

  std::vector<float> x(T * H), xn(T * H), q(T * Q), k(T * KV), v(T * KV), attn(T * Q), proj(T * H);
  std::vector<float> gate(T * I), up(T * I);
  for (size_t r = 0; r < T; ++r) model.EmbedRow(batch[row_req[r]]->tokens[r - first_row[row_req[r]]], x.data() + r * H);

  // Attention items: up to kQueriesPerItem queries of one kv head — the GQA
  // query heads of consecutive tokens of one request, then of the next request
  // continuing from the same shared pages (a resident artifact) — so that the
  // kernel reads each page of the common prefix once for all of them
  // (attend_shared) instead of once per request and block of tokens.
  constexpr size_t kQueriesPerItem = 32;
  struct Segment {
    size_t req, t0, t1;  // rows [t0, t1) of the request, relative
  };
  struct Item {
    size_t g, seg0, seg1;  // segments [seg0, seg1)
    size_t shared;         // keys every query's table reads from the same pages
  };
  std::vector<Segment> segments;
  std::vector<Item> items;
  size_t shared_prefix_sequences = 0;
  const size_t tokens_per_item = std::max<size_t>(1, kQueriesPerItem / group);
  {
    std::vector<std::vector<size_t>> sets;
    std::unordered_map<const KvSharedPages*, size_t> set_of;
    for (size_t i = 0; i < batch.size(); ++i) {
      const KvSharedPages* sp = batch[i]->session->cache_.shared_prefix();
      if (sp == nullptr) {
        sets.push_back({i});
        continue;
      }
      auto [it, inserted] = set_of.emplace(sp, sets.size());
      if (inserted) sets.emplace_back();
      sets[it->second].push_back(i);
    }
    for (const std::vector<size_t>& set : sets) {
      if (set.size() > 1) shared_prefix_sequences += set.size();
      const size_t set_shared = batch[set[0]]->session->cache_.shared_tokens();
      for (size_t g = 0; g < nkv; ++g) {
        Item item{g, segments.size(), segments.size(), 0};
        size_t rows = 0;
        auto close = [&] {
          if (item.seg1 == item.seg0) return;
          if (item.seg1 - item.seg0 == 1) {
            // One request: its table is the same for every query; share the
            // keys before the segment's first token, in whole pages.
            const Segment& sg = segments[item.seg0];
            const size_t first_keys = batch[sg.req]->session->tokens_.size() + sg.t0 + 1;
            item.shared = std::max(set_shared, first_keys / kAttentionPageQuantum * kAttentionPageQuantum);
          } else {
            item.shared = set_shared;
          }
          items.push_back(item);
          item = Item{g, segments.size(), segments.size(), 0};
          rows = 0;
        };
        for (size_t i : set) {
          const size_t n = batch[i]->tokens.size();
          for (size_t t0 = 0; t0 < n;) {
            if (rows == tokens_per_item) close();
            const size_t t1 = std::min(n, t0 + (tokens_per_item - rows));
            segments.push_back({i, t0, t1});
            item.seg1 = segments.size();
            rows += t1 - t0;
            t0 = t1;
          }
        }
        close();
      }
    }
  }
  size_t longest = 0;
  for (size_t r = 0; r < T; ++r) longest = std::max(longest, row_pos[r] + 1);
  const size_t score_stride = (longest + 7) / 8 * 8;

  for (size_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = model.layers()[l];
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) ops.rms_norm(x.data() + t * H, L.input_norm.data(), H, eps, xn.data() + t * H);
    });
    MatMul(ops, pool, xn.data(), T, H, L.q_proj, q.data(), Q);
    MatMul(ops, pool, xn.data(), T, H, L.k_proj, k.data(), KV);
    MatMul(ops, pool, xn.data(), T, H, L.v_proj, v.data(), KV);
    // Per-head q/k norm and RoPE; K and V rounded to bf16 into each session's
    // cache before any attention reads them (docs/DESIGN.md §3 rule 5).
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      std::vector<uint16_t> row(hd);
      for (size_t t = b; t < e; ++t) {
        const size_t pos = row_pos[t];
        KvCache& cache = batch[row_req[t]]->session->cache_;
        const float* cs = rope_cos_.data() + pos * half;
        const float* sn = rope_sin_.data() + pos * half;
        for (size_t h = 0; h < nh; ++h) {
          float* qh = q.data() + t * Q + h * hd;
          ops.rms_norm(qh, L.q_norm.data(), hd, eps, qh);
          ApplyRope(qh, hd, cs, sn);
        }
        for (size_t g = 0; g < nkv; ++g) {
          float* kh = k.data() + t * KV + g * hd;
          ops.rms_norm(kh, L.k_norm.data(), hd, eps, kh);
          ApplyRope(kh, hd, cs, sn);
          RoundToBf16(kh, hd, row.data());
          cache.PutKey(l, pos, g, row.data());
          RoundToBf16(v.data() + t * KV + g * hd, hd, row.data());
          cache.PutValue(l, pos, g, row.data());
        }
      }
    });
    // Every query's chains are its own, so the bits do not depend on the
    // items, on T or on the other sessions of the pass.
    pool.ParallelFor(items.size(), 1, [&](size_t b, size_t e) {
      std::vector<float> scores(tokens_per_item * group * score_stride);
      std::vector<AttentionQuery> queries;
      for (size_t i = b; i < e; ++i) {
        const Item& it = items[i];
        queries.clear();
        for (size_t sg = it.seg0; sg < it.seg1; ++sg) {
          const Segment& seg = segments[sg];
          const KvCache& cache = batch[seg.req]->session->cache_;
          for (size_t t = seg.t0; t < seg.t1; ++t) {
            const size_t r = first_row[seg.req] + t;
            for (size_t h = it.g * group; h < (it.g + 1) * group; ++h) {
              queries.push_back({q.data() + r * Q + h * hd, cache.key_pages(l, it.g), cache.key_tile_stride(),
                                 cache.value_pages(l, it.g), cache.value_stride(), kKvPageTokens, row_pos[r] + 1, hd,
                                 scale, scores.data() + queries.size() * score_stride, attn.data() + r * Q + h * hd});
            }
          }
        }
        ops.attend_shared(queries.data(), queries.size(), it.shared);
      }
    });
    MatMul(ops, pool, attn.data(), T, Q, L.o_proj, proj.data(), H);
    for (size_t i = 0; i < T * H; ++i) x[i] = x[i] + proj[i];
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) {
        ops.rms_norm(x.data() + t * H, L.post_attention_norm.data(), H, eps, xn.data() + t * H);
      }
    });
    MatMul(ops, pool, xn.data(), T, H, L.gate_proj, gate.data(), I);
    MatMul(ops, pool, xn.data(), T, H, L.up_proj, up.data(), I);
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      ops.silu_mul(gate.data() + b * I, up.data() + b * I, (e - b) * I, gate.data() + b * I);
    });
    MatMul(ops, pool, gate.data(), T, I, L.down_proj, proj.data(), H);
    for (size_t i = 0; i < T * H; ++i) x[i] = x[i] + proj[i];
  }

  // Logits of the last row of each request that wants them, in one matmul.
  std::vector<size_t> wants;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i]->want_logits) wants.push_back(i);
  }
  std::vector<float> lg(wants.size() * c.vocab_size);
  if (!wants.empty()) {
    for (size_t w = 0; w < wants.size(); ++w) {
      ops.rms_norm(x.data() + (first_row[wants[w] + 1] - 1) * H, model.final_norm().data(), H, eps, xn.data() + w * H);
    }
    MatMul(ops, pool, xn.data(), wants.size(), H, model.lm_head(), lg.data(), c.vocab_size);
  }
  const double layer_params = double(c.matmul_params_per_token()) - double(H) * c.vocab_size;
  for (size_t i = 0, w = 0; i < batch.size(); ++i) {
    Session& s = *batch[i]->session;
    const size_t n = batch[i]->tokens.size(), p0 = s.tokens_.size();
    s.cache_.set_size(p0 + n);
    s.tokens_.insert(s.tokens_.end(), batch[i]->tokens.begin(), batch[i]->tokens.end());
    s.stats_.tokens_prefilled += n;
    s.stats_.matmul_flops += 2.0 * layer_params * n;
    // Σ over the chunk's tokens of keys attended: (p0+1) + … + (p0+n).
    const double keys = double(n) * double(p0) + double(n) * double(n + 1) / 2.0;
    s.stats_.attention_flops += 4.0 * double(hd) * double(nh) * keys * c.num_hidden_layers;
    if (batch[i]->want_logits) {
      s.logits_.assign(lg.begin() + w * c.vocab_size, lg.begin() + (w + 1) * c.vocab_size);
      s.stats_.matmul_flops += 2.0 * double(H) * c.vocab_size;
      s.has_logits_ = true;
      ++w;
    }
    batch[i]->result = Status::Ok();
  }
  return shared_prefix_sequences;
}

StatusOr<KvExport> Session::ExportKv(size_t begin, size_t end) const {
  if (begin > end || end > tokens_.size()) {
    return Status::OutOfRange("export range [" + std::to_string(begin) + ", " + std::to_string(end) +
                              ") outside the session's " + std::to_string(tokens_.size()) + " tokens");
  }
  const ModelConfig& c = engine_->model().config();
  KvExport kv;
  kv.num_layers = c.num_hidden_layers;
  kv.num_kv_heads = c.num_key_value_heads;
  kv.head_dim = c.head_dim;
  kv.begin = begin;
  kv.token_ids.assign(tokens_.begin() + begin, tokens_.begin() + end);
  const size_t rows = (end - begin) * c.kv_dim();
  kv.data.resize(2 * rows * c.num_hidden_layers);
  // Layers are independent: split them over the engine's threads.
  std::lock_guard<std::mutex> lock(engine_->compute_mu_);
  engine_->pool_->ParallelFor(c.num_hidden_layers, 1, [&](size_t l0, size_t l1) {
    for (size_t l = l0; l < l1; ++l) {
      cache_.GetKeys(l, begin, end, kv.data.data() + 2 * l * rows);
      cache_.GetValues(l, begin, end, kv.data.data() + (2 * l + 1) * rows);
    }
  });
  return kv;
}

Status Session::ImportKv(const KvExport& kv) {
  const ModelConfig& c = engine_->model().config();
  if (kv.num_layers != c.num_hidden_layers || kv.num_kv_heads != c.num_key_value_heads || kv.head_dim != c.head_dim) {
    return Status::InvalidArgument("KV shape " + std::to_string(kv.num_layers) + "x" + std::to_string(kv.num_kv_heads) +
                                   "x" + std::to_string(kv.head_dim) + " does not match the model (" +
                                   std::to_string(c.num_hidden_layers) + "x" + std::to_string(c.num_key_value_heads) +
                                   "x" + std::to_string(c.head_dim) + ")");
  }
  if (kv.begin != tokens_.size()) {
    return Status::FailedPrecondition("KV rows start at position " + std::to_string(kv.begin) + " but the session has " +
                                      std::to_string(tokens_.size()) + " tokens");
  }
  const size_t n = kv.token_ids.size();
  const size_t rows = n * c.kv_dim();
  if (kv.data.size() != 2 * rows * c.num_hidden_layers) {
    return Status::InvalidArgument("KV data holds " + std::to_string(kv.data.size()) + " values, expected " +
                                   std::to_string(2 * rows * c.num_hidden_layers));
  }
  for (int32_t t : kv.token_ids) {
    if (t < 0 || static_cast<uint32_t>(t) >= c.vocab_size) {
      return Status::InvalidArgument("imported token id " + std::to_string(t) + " is outside the vocabulary");
    }
  }
  KVMART_RETURN_IF_ERROR(cache_.Reserve(tokens_.size() + n));
  const size_t begin = tokens_.size();
  {
    // Layers are independent: split them over the engine's threads.
    std::lock_guard<std::mutex> lock(engine_->compute_mu_);
    engine_->pool_->ParallelFor(c.num_hidden_layers, 1, [&](size_t l0, size_t l1) {
      for (size_t l = l0; l < l1; ++l) {
        cache_.PutKeys(l, begin, begin + n, kv.data.data() + 2 * l * rows);
        cache_.PutValues(l, begin, begin + n, kv.data.data() + (2 * l + 1) * rows);
      }
    });
  }
  cache_.set_size(begin + n);
  tokens_.insert(tokens_.end(), kv.token_ids.begin(), kv.token_ids.end());
  stats_.tokens_imported += n;
  has_logits_ = false;
  return Status::Ok();
}

StatusOr<std::shared_ptr<const KvPrefix>> Session::ShareAsPrefix() {
  if (tokens_.empty()) return Status::FailedPrecondition("an empty session has no KV to share");
  KVMART_ASSIGN_OR_RETURN(auto pages, cache_.ShareLeadingPages());
  auto prefix = std::make_shared<KvPrefix>();
  prefix->pages = std::move(pages);
  prefix->tokens = tokens_;
  KVMART_ASSIGN_OR_RETURN(prefix->tail, ExportKv(prefix->pages->tokens(), tokens_.size()));
  return std::shared_ptr<const KvPrefix>(std::move(prefix));
}

Status Session::Attach(const KvPrefix& prefix) {
  if (!tokens_.empty()) return Status::FailedPrecondition("Attach needs an empty session");
  if (!prefix.pages || prefix.tokens.size() < prefix.pages->tokens() ||
      prefix.tail.begin != prefix.pages->tokens() ||
      prefix.tail.token_ids.size() != prefix.tokens.size() - prefix.pages->tokens()) {
    return Status::InvalidArgument("inconsistent KV prefix");
  }
  KVMART_RETURN_IF_ERROR(cache_.AttachShared(prefix.pages));
  tokens_.assign(prefix.tokens.begin(), prefix.tokens.begin() + prefix.pages->tokens());
  stats_.tokens_attached += tokens_.size();
  has_logits_ = false;
  if (!prefix.tail.token_ids.empty()) KVMART_RETURN_IF_ERROR(ImportKv(prefix.tail));
  return Status::Ok();
}

}  // namespace kvmart
