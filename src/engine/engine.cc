#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/bf16.h"

namespace kvmart {

Engine::Engine(std::shared_ptr<const Model> model, const KernelOps& ops, size_t threads, size_t max_context)
    : model_(std::move(model)), ops_(ops), pool_(std::make_unique<ThreadPool>(threads)), max_context_(max_context) {
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
  size_t max_ctx = model->config().max_position_embeddings;
  if (o.max_context > 0) max_ctx = std::min(max_ctx, o.max_context);
  return std::unique_ptr<Engine>(new Engine(std::move(model), GetKernelOps(o.kernels), o.threads, max_ctx));
}

std::unique_ptr<Session> Engine::NewSession() { return std::unique_ptr<Session>(new Session(this)); }

Session::Session(Engine* engine)
    : engine_(engine),
      cache_(engine->model().config().num_hidden_layers, engine->model().config().num_key_value_heads,
             engine->model().config().head_dim, engine->max_context()) {}

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

StatusOr<int32_t> Session::DecodeStep(const SamplingParams& params) {
  KVMART_ASSIGN_OR_RETURN(auto l, logits());
  const int32_t next = SampleToken(l, params, tokens_.size());
  KVMART_RETURN_IF_ERROR(Prefill(std::span<const int32_t>(&next, 1)));
  return next;
}

StatusOr<std::span<const float>> Session::logits() const {
  if (!has_logits_) return Status::FailedPrecondition("no logits: prefill at least one token after the last import");
  return std::span<const float>(logits_);
}

Status Session::Forward(std::span<const int32_t> tokens, bool want_logits) {
  std::lock_guard<std::mutex> lock(engine_->compute_mu_);
  const Model& model = engine_->model();
  const ModelConfig& c = model.config();
  const KernelOps& ops = engine_->ops();
  ThreadPool& pool = *engine_->pool_;
  const size_t T = tokens.size(), H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  const size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads, group = nh / nkv;
  const size_t p0 = tokens_.size(), half = hd / 2;
  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  std::vector<float> x(T * H), xn(T * H), q(T * Q), k(T * KV), v(T * KV), attn(T * Q), proj(T * H);
  std::vector<float> gate(T * I), up(T * I);
  for (size_t t = 0; t < T; ++t) model.EmbedRow(tokens[t], x.data() + t * H);

  for (size_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = model.layers()[l];
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      for (size_t t = b; t < e; ++t) ops.rms_norm(x.data() + t * H, L.input_norm.data(), H, eps, xn.data() + t * H);
    });
    MatMul(ops, pool, xn.data(), T, H, L.q_proj, q.data(), Q);
    MatMul(ops, pool, xn.data(), T, H, L.k_proj, k.data(), KV);
    MatMul(ops, pool, xn.data(), T, H, L.v_proj, v.data(), KV);
    // Per-head q/k norm and RoPE; K and V rounded to bf16 into the cache
    // before any attention reads them (docs/DESIGN.md §3 rule 5).
    pool.ParallelFor(T, 1, [&](size_t b, size_t e) {
      std::vector<uint16_t> row(hd);
      for (size_t t = b; t < e; ++t) {
        const size_t pos = p0 + t;
        const float* cs = engine_->rope_cos_.data() + pos * half;
        const float* sn = engine_->rope_sin_.data() + pos * half;
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
          cache_.PutKey(l, pos, g, row.data());
          RoundToBf16(v.data() + t * KV + g * hd, hd, row.data());
          cache_.PutValue(l, pos, g, row.data());
        }
      }
    });
    // Attention, split over (kv head, token block) items, head-major so each
    // thread keeps one kv head's keys and values hot in cache. An item's queries
    // (the kv head's GQA query heads × a block of neighbouring tokens) go to the
    // kernel in groups that share each widened K and V vector; every query's
    // chains are its own, so the bits do not depend on the grouping or on T.
    const size_t block = std::max<size_t>(1, kMaxAttendGroup / std::min(group, kMaxAttendGroup));
    const size_t blocks = (T + block - 1) / block;
    pool.ParallelFor(nkv * blocks, 1, [&](size_t b, size_t e) {
      const size_t stride = (p0 + T + 7) / 8 * 8;
      std::vector<float> scores(kMaxAttendGroup * stride);
      std::vector<AttentionQuery> queries;
      for (size_t i = b; i < e; ++i) {
        const size_t g = i / blocks, t0 = (i % blocks) * block, t1 = std::min(T, t0 + block);
        queries.clear();
        for (size_t t = t0; t < t1; ++t) {
          for (size_t h = g * group; h < (g + 1) * group; ++h) {
            queries.push_back({q.data() + t * Q + h * hd, cache_.key_tiles(l, g), cache_.key_tile_stride(),
                               cache_.values(l, g), cache_.value_stride(), p0 + t + 1, hd, scale, nullptr,
                               attn.data() + t * Q + h * hd});
          }
        }
        for (size_t k = 0; k < queries.size(); k += kMaxAttendGroup) {
          const size_t count = std::min(kMaxAttendGroup, queries.size() - k);
          for (size_t c = 0; c < count; ++c) queries[k + c].scores = scores.data() + c * stride;
          ops.attend_group(queries.data() + k, count);
        }
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
  cache_.set_size(p0 + T);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  stats_.tokens_prefilled += T;
  const double layer_params = double(c.matmul_params_per_token()) - double(H) * c.vocab_size;
  stats_.matmul_flops += 2.0 * layer_params * T;
  // Σ over the chunk's tokens of keys attended: (p0+1) + … + (p0+T).
  const double keys = double(T) * double(p0) + double(T) * double(T + 1) / 2.0;
  stats_.attention_flops += 4.0 * double(hd) * double(nh) * keys * c.num_hidden_layers;

  if (want_logits) {
    logits_.resize(c.vocab_size);
    ops.rms_norm(x.data() + (T - 1) * H, model.final_norm().data(), H, eps, xn.data());
    MatMul(ops, pool, xn.data(), 1, H, model.lm_head(), logits_.data(), c.vocab_size);
    stats_.matmul_flops += 2.0 * double(H) * c.vocab_size;
    has_logits_ = true;
  }
  return Status::Ok();
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

}  // namespace kvmart
