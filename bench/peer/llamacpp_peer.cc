// kvmart-llamacpp-peer: llama.cpp, driven the way its own tools drive it, as
// the peer that kvmart-bench-peer measures kvmart against on the same machine,
// the same weights (a GGUF written by `kvmart export-gguf`) and the same token
// ids. Built against the headers and prebuilt CPU libraries of the npm package
// node-llama-cpp (see scripts/setup.sh); llama.cpp itself is never built here.
//
// Protocol: one JSON request per line on stdin, one JSON answer per line on
// stdout (llama.cpp's own log goes to stderr, errors only). Requests:
//   {"op":"info"}                                   -> system info, vocab size
//   {"op":"prefill","tokens":[...],"steps":N}       -> seconds for all tokens, then (if N > 0)
//        one untimed greedy step and decode_seconds for N more at that depth
//   {"op":"reuse","tokens":[...],"continue":[...]}  -> save the sequence state, make a fresh
//        context, time loading the state and decoding the continuation
//   {"op":"batch","tokens":[...],"sequences":B,"steps":N} -> B sequences share the prefix
//        (llama_memory_seq_cp in a unified KV cache), N batched steps of B tokens
//   {"op":"logits","tokens":[...],"last":D,"out":PATH} -> raw f32 logits of the last D
//        positions written to PATH ([D][vocab])
// Every answer carries "ok"; a failure is {"ok":false,"error":"..."}.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct ModelFree {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextFree {
  void operator()(llama_context* c) const { llama_free(c); }
};
using ModelPtr = std::unique_ptr<llama_model, ModelFree>;
using ContextPtr = std::unique_ptr<llama_context, ContextFree>;

// A llama_batch owned for its lifetime.
class Batch {
 public:
  explicit Batch(int32_t capacity) : b_(llama_batch_init(capacity, 0, 1)), capacity_(capacity) {}
  ~Batch() { llama_batch_free(b_); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  void Clear() { b_.n_tokens = 0; }
  void Add(llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
    const int32_t i = b_.n_tokens++;
    b_.token[i] = t;
    b_.pos[i] = pos;
    b_.n_seq_id[i] = 1;
    b_.seq_id[i][0] = seq;
    b_.logits[i] = logits;
  }
  int32_t size() const { return b_.n_tokens; }
  int32_t capacity() const { return capacity_; }
  llama_batch& get() { return b_; }

 private:
  llama_batch b_;
  int32_t capacity_;
};

class Peer {
 public:
  Peer(std::string gguf, int threads, int n_ctx, int n_seq)
      : gguf_(std::move(gguf)), threads_(threads), n_ctx_(n_ctx), n_seq_(n_seq) {}

  std::string Load() {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model_.reset(llama_model_load_from_file(gguf_.c_str(), mp));
    if (!model_) return "llama.cpp could not load " + gguf_;
    vocab_ = llama_vocab_n_tokens(llama_model_get_vocab(model_.get()));
    return "";
  }

  // A fresh context with llama.cpp's usual CPU settings: f16 KV, flash
  // attention auto, n_batch 2048 / n_ubatch 512, one unified KV buffer.
  ContextPtr NewContext() const {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx_;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = n_seq_;
    cp.n_threads = threads_;
    cp.n_threads_batch = threads_;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.kv_unified = true;
    cp.no_perf = true;
    return ContextPtr(llama_init_from_model(model_.get(), cp));
  }

  json Handle(const json& req) {
    const std::string op = req.value("op", "");
    if (op == "info") {
      return {{"ok", true}, {"vocab", vocab_}, {"system", llama_print_system_info()}, {"n_ctx", n_ctx_}};
    }
    std::vector<llama_token> tokens = req.value("tokens", std::vector<llama_token>{});
    if (tokens.empty()) return Error("request has no tokens");
    if (static_cast<int>(tokens.size()) + 64 > n_ctx_) return Error("tokens exceed the context of " + std::to_string(n_ctx_));
    if (op == "prefill") return Prefill(tokens, req.value("steps", 0));
    if (op == "reuse") return Reuse(tokens, req.value("continue", std::vector<llama_token>{}));
    if (op == "batch") return BatchDecode(tokens, req.value("sequences", 1), req.value("steps", 16));
    if (op == "logits") return Logits(tokens, req.value("last", 1), req.value("out", ""));
    return Error("unknown op '" + op + "'");
  }

 private:
  static json Error(const std::string& e) { return {{"ok", false}, {"error", e}}; }

  // Feeds tokens [from, to) of seq 0 at positions from.., logits for the last
  // `want_last` of them.
  bool Feed(llama_context* ctx, const std::vector<llama_token>& t, size_t from, size_t to, size_t want_last,
            llama_seq_id seq = 0) {
    Batch b(2048);
    for (size_t i = from; i < to;) {
      b.Clear();
      for (; i < to && b.size() < b.capacity(); ++i) b.Add(t[i], static_cast<llama_pos>(i), seq, i + want_last >= to);
      if (llama_decode(ctx, b.get()) != 0) return false;
    }
    return true;
  }

  llama_token Argmax(llama_context* ctx, int32_t i) const {
    const float* l = llama_get_logits_ith(ctx, i);
    int32_t best = 0;
    for (int32_t v = 1; v < vocab_; ++v) {
      if (l[v] > l[best]) best = v;
    }
    return best;
  }

  json Prefill(std::vector<llama_token> t, int steps) {
    auto ctx = NewContext();
    if (!ctx) return Error("llama_init_from_model failed");
    auto t0 = Clock::now();
    if (!Feed(ctx.get(), t, 0, t.size(), 1)) return Error("llama_decode failed");
    llama_synchronize(ctx.get());
    const double prefill_s = Since(t0);
    if (steps <= 0) return {{"ok", true}, {"seconds", prefill_s}};
    Batch b(1);
    auto step = [&]() {
      const llama_token next = Argmax(ctx.get(), -1);
      b.Clear();
      b.Add(next, static_cast<llama_pos>(t.size()), 0, true);
      t.push_back(next);
      return llama_decode(ctx.get(), b.get()) == 0;
    };
    if (!step()) return Error("llama_decode failed");  // untimed, as on kvmart's side
    auto td = Clock::now();
    for (int i = 0; i < steps; ++i) {
      if (!step()) return Error("llama_decode failed");
    }
    return {{"ok", true}, {"seconds", prefill_s}, {"decode_seconds", Since(td)}, {"steps", steps}};
  }

  json Reuse(const std::vector<llama_token>& doc, const std::vector<llama_token>& cont) {
    if (cont.empty()) return Error("reuse needs a continuation");
    std::vector<uint8_t> state;
    {
      auto ctx = NewContext();
      if (!ctx) return Error("llama_init_from_model failed");
      if (!Feed(ctx.get(), doc, 0, doc.size(), 1)) return Error("llama_decode failed");
      state.resize(llama_state_seq_get_size(ctx.get(), 0));
      if (llama_state_seq_get_data(ctx.get(), state.data(), state.size(), 0) != state.size()) {
        return Error("llama_state_seq_get_data failed");
      }
    }
    auto tc = Clock::now();
    auto ctx = NewContext();
    if (!ctx) return Error("llama_init_from_model failed");
    const double context_s = Since(tc);
    auto t0 = Clock::now();
    if (llama_state_seq_set_data(ctx.get(), state.data(), state.size(), 0) == 0) return Error("llama_state_seq_set_data failed");
    const double load_s = Since(t0);
    std::vector<llama_token> all = doc;
    all.insert(all.end(), cont.begin(), cont.end());
    if (!Feed(ctx.get(), all, doc.size(), all.size(), 1)) return Error("llama_decode failed");
    llama_synchronize(ctx.get());
    return {{"ok", true}, {"seconds", Since(t0)}, {"load_seconds", load_s}, {"context_seconds", context_s},
            {"state_bytes", state.size()}};
  }

  json BatchDecode(const std::vector<llama_token>& prefix, int sequences, int steps) {
    if (sequences < 1 || sequences > n_seq_) return Error("sequences must be 1.." + std::to_string(n_seq_));
    auto ctx = NewContext();
    if (!ctx) return Error("llama_init_from_model failed");
    if (!Feed(ctx.get(), prefix, 0, prefix.size(), 1)) return Error("llama_decode failed");
    llama_memory_t mem = llama_get_memory(ctx.get());
    for (int s = 1; s < sequences; ++s) llama_memory_seq_cp(mem, 0, s, -1, -1);
    // Each sequence starts from its own token (so they diverge), then decodes greedily.
    std::vector<llama_token> next(sequences);
    for (int s = 0; s < sequences; ++s) next[s] = (prefix.back() + 1 + s) % 151643;
    Batch b(sequences);
    llama_pos pos = static_cast<llama_pos>(prefix.size());
    auto step = [&]() {
      b.Clear();
      for (int s = 0; s < sequences; ++s) b.Add(next[s], pos, s, true);
      if (llama_decode(ctx.get(), b.get()) != 0) return false;
      for (int s = 0; s < sequences; ++s) next[s] = Argmax(ctx.get(), s);
      ++pos;
      return true;
    };
    if (!step()) return Error("llama_decode failed");  // untimed
    auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) {
      if (!step()) return Error("llama_decode failed");
    }
    return {{"ok", true}, {"seconds", Since(t0)}, {"tokens", sequences * steps}};
  }

  json Logits(const std::vector<llama_token>& t, int last, const std::string& out) {
    if (last < 1 || static_cast<size_t>(last) > t.size()) return Error("last must be 1..len(tokens)");
    if (out.empty()) return Error("logits needs \"out\"");
    auto ctx = NewContext();
    if (!ctx) return Error("llama_init_from_model failed");
    if (!Feed(ctx.get(), t, 0, t.size(), static_cast<size_t>(last))) return Error("llama_decode failed");
    // Outputs are numbered in batch order; only the final llama_decode call's
    // outputs are readable, so the last `last` positions must share one call
    // (Feed's 2048-token batches guarantee it for last <= 2048 when they do).
    std::ofstream f(out, std::ios::binary);
    const size_t in_final = (t.size() - 1) % 2048 + 1;
    if (static_cast<size_t>(last) > in_final) return Error("the last positions span two batches");
    for (int i = 0; i < last; ++i) {
      const float* l = llama_get_logits_ith(ctx.get(), static_cast<int32_t>(in_final - last + i));
      if (l == nullptr) return Error("llama_get_logits_ith returned nothing");
      f.write(reinterpret_cast<const char*>(l), static_cast<std::streamsize>(sizeof(float) * vocab_));
    }
    if (!f) return Error("cannot write " + out);
    return {{"ok", true}, {"vocab", vocab_}};
  }

  std::string gguf_;
  int threads_, n_ctx_, n_seq_;
  int32_t vocab_ = 0;
  ModelPtr model_;
};

void QuietLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char** argv) {
  std::string gguf, lib_dir = KVMART_LLAMA_LIB_DIR;
  int threads = 2, n_ctx = 4096 + 256, n_seq = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--gguf") gguf = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--ctx") n_ctx = std::stoi(next());
    else if (a == "--seqs") n_seq = std::stoi(next());
    else if (a == "--lib-dir") lib_dir = next();
    else {
      std::fprintf(stderr,
                   "usage: kvmart-llamacpp-peer --gguf FILE [--threads N] [--ctx N] [--seqs N] [--lib-dir DIR]\n"
                   "Reads JSON requests on stdin, one per line (see the comment at the top of llamacpp_peer.cc).\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (gguf.empty()) {
    std::fprintf(stderr, "kvmart-llamacpp-peer: --gguf is required\n");
    return 2;
  }
  llama_log_set(QuietLog, nullptr);
  // The CPU back end is one of several libraries (one per CPU family); ggml
  // scores them against this CPU and loads the best.
  ggml_backend_load_all_from_path(lib_dir.c_str());
  llama_backend_init();
  Peer peer(gguf, threads, n_ctx, n_seq);
  if (std::string e = peer.Load(); !e.empty()) {
    std::cout << json{{"ok", false}, {"error", e}}.dump() << std::endl;
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    json req = json::parse(line, nullptr, false);
    json ans = req.is_discarded() || !req.is_object() ? json{{"ok", false}, {"error", "request is not a JSON object"}}
                                                      : peer.Handle(req);
    std::cout << ans.dump() << std::endl;
  }
  llama_backend_free();
  return 0;
}
