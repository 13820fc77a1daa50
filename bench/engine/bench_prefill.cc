// kvmart-bench-prefill: prefill and decode tokens/s of the engine on a model of
// the Qwen3-0.6B shape (synthetic weights: speed does not depend on values),
// with the FLOP rate each implies as a fraction of the machine's f32 FMA peak
// measured in the same run.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/usage.h"
#include "common/machine_peak.h"
#include "engine/engine.h"
#include "model/synth.h"

using namespace kvmart;
using Clock = std::chrono::steady_clock;

namespace {
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, shape = "qwen3-0.6b", kernels = "auto";
  std::vector<size_t> lengths = {256, 1024, 3774};
  size_t threads = 2, decode = 32, chunk = 512;
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-prefill [--model DIR | --shape S] [--lengths a,b] [--threads N] [--decode N] [--chunk N]\n"
      "                            [--kernels portable|avx2|avx512|auto]\n"
      "Prefill and decode tokens/s against the machine's FMA peak. Without --model, writes a synthetic\n"
      "checkpoint of --shape (default qwen3-0.6b) under bench-models/.\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a != "--model" && a != "--shape" && a != "--threads" && a != "--decode" && a != "--chunk" &&
        a != "--kernels" && a != "--lengths") {
      usage.Fail("unknown option " + a);
    }
    const std::string v = usage.Value(argc, argv, &i);
    if (a == "--model") model_dir = v;
    else if (a == "--shape") shape = v;
    else if (a == "--threads") threads = std::stoul(v);
    else if (a == "--decode") decode = std::stoul(v);
    else if (a == "--chunk") chunk = std::stoul(v);
    else if (a == "--kernels") kernels = v;
    else if (a == "--lengths") {
      lengths.clear();
      std::stringstream ss(v);
      std::string x;
      while (std::getline(ss, x, ',')) lengths.push_back(std::stoul(x));
    }
  }
  if (model_dir.empty()) {
    model_dir = "bench-models/" + shape;
    if (!std::filesystem::exists(model_dir + "/config.json")) {
      std::printf("synthesizing %s into %s ...\n", shape.c_str(), model_dir.c_str());
      SynthOptions o;
      o.shape = shape;
      o.out_dir = model_dir;
      o.tokenizer_dir = KVMART_DATA_DIR;
      Status st = WriteSyntheticCheckpoint(o);
      if (!st.ok()) {
        std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
        return 1;
      }
    }
  }
  auto t0 = Clock::now();
  auto model = Model::Load(model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
    return 1;
  }
  std::printf("model %s loaded and packed in %.1f s\n", model_dir.c_str(), Since(t0));
  EngineOptions eo;
  eo.kernels = ParseKernelPath(kernels).value();
  eo.threads = threads;
  auto engine = Engine::Create(std::shared_ptr<const Model>(std::move(model).value()), eo).value();
  const double peak = bench::MeasureFmaPeak(threads, eo.kernels == KernelPath::kAvx512);
  std::printf("kernels %s, %zu threads, prefill chunk %zu; measured f32 FMA peak %.1f GFLOP/s\n\n",
              KernelPathName(eo.kernels), threads, chunk, peak / 1e9);
  std::printf("%8s | %12s %10s %8s | %12s %10s\n", "tokens", "prefill tok/s", "GFLOP/s", "%peak", "decode tok/s",
              "GFLOP/s");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(0, 151642);
  std::vector<size_t> all = lengths;
  all.insert(all.begin(), 1);  // decode at an (almost) empty context
  struct KvMove {
    size_t tokens;
    double bytes, export_s, import_s, memcpy_s;
  };
  std::vector<KvMove> moves;
  for (size_t len : all) {
    std::vector<int32_t> tokens(len);
    for (auto& t : tokens) t = tok(rng);
    auto s = engine->NewSession();
    auto tp = Clock::now();
    Status st = s->Prefill(tokens, chunk);
    const double prefill_s = Since(tp);
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
      return 1;
    }
    if (len > 1) {
      // KV export (cache -> exchange layout) and import into a fresh session
      // (exchange layout -> cache), next to a memcpy of the same bytes into
      // freshly allocated memory: what a load costs the engine beyond the store.
      auto te = Clock::now();
      auto kv = s->ExportKv(0, len);
      const double export_s = Since(te);
      if (!kv.ok()) return 1;
      auto fresh = engine->NewSession();
      auto ti = Clock::now();
      if (!fresh->ImportKv(*kv).ok()) return 1;
      const double import_s = Since(ti);
      const double bytes = 2.0 * kv->data.size();
      auto tm = Clock::now();
      std::vector<uint16_t> copy(kv->data.size());
      std::memcpy(copy.data(), kv->data.data(), copy.size() * 2);
      const double memcpy_s = Since(tm);
      moves.push_back({len, bytes, export_s, import_s, memcpy_s});
    }
    // One untimed step first: the first decode after a prefill faults in the
    // decode-sized scratch and may grow the KV cache (a one-off copy).
    const double prefill_flops = s->stats().matmul_flops + s->stats().attention_flops;
    if (!s->DecodeStep().ok()) return 1;
    const double warm_flops = s->stats().matmul_flops + s->stats().attention_flops;
    auto td = Clock::now();
    for (size_t i = 0; i < decode; ++i) {
      if (!s->DecodeStep().ok()) return 1;
    }
    const double decode_s = Since(td);
    const double decode_flops = s->stats().matmul_flops + s->stats().attention_flops - warm_flops;
    if (len == 1) {
      std::printf("%8s | %12s %10s %8s | %12.1f %10.1f\n", "empty", "-", "-", "-", decode / decode_s,
                  decode_flops / decode_s / 1e9);
    } else {
      std::printf("%8zu | %12.1f %10.1f %7.0f%% | %12.1f %10.1f\n", len, len / prefill_s, prefill_flops / prefill_s / 1e9,
                  100 * prefill_flops / prefill_s / peak, decode / decode_s, decode_flops / decode_s / 1e9);
    }
    std::fflush(stdout);
  }
  std::printf("\nFLOPs: 2 per weight per token (all projections; lm_head for the last position only)\n"
              "+ 4·head_dim per (query, key, head, layer) for attention, counted by the engine.\n");
  std::printf("\nKV export/import (all layers, %zu threads) vs memcpy of the same bytes into new memory:\n", threads);
  std::printf("%8s | %9s | %9s %9s %9s | %8s %8s\n", "tokens", "MB", "export s", "import s", "memcpy s",
              "exp/cpy", "imp/cpy");
  for (const auto& m : moves) {
    std::printf("%8zu | %9.1f | %9.4f %9.4f %9.4f | %7.2fx %7.2fx\n", m.tokens, m.bytes / 1e6, m.export_s, m.import_s,
                m.memcpy_s, m.export_s / m.memcpy_s, m.import_s / m.memcpy_s);
  }
  return 0;
}
