// kvmart-bench-peer: kvmart beside llama.cpp in one run, on one machine, on
// the same weights (the checkpoint exported to GGUF by ExportGguf) and the same
// token ids. Each row is measured on kvmart and then on the peer, alternately,
// and printed as a ratio (> 1: kvmart better), so no figure is ever compared
// with one taken on another machine.
//
// Rows: prefill (tokens/s, n = tokens), decode at depth (tokens/s, n = depth),
// reuse = load a saved KV state into a fresh context + continue by one token
// (seconds, n = document tokens; kvmart: ImportKv into a new session), batched
// decode of sequences sharing a prefix (aggregate tokens/s, n = sequences;
// kvmart runs a thread per sequence and batches their steps).
//
// Agreement: kvmart decodes greedily after a few prompts; the peer is given
// the same prompt and kvmart's tokens (teacher forcing) and returns its logits
// at every one of those positions. Not bitwise (another engine: llama.cpp
// rounds activations to bf16 before each bf16 matmul and keeps KV in f16), but
// an independent check of kvmart's forward pass on real-format weights. The
// run fails (exit 1) when an argmax differs where kvmart's top-2 margin is
// larger than twice the largest logit difference seen, or when that
// difference exceeds the bound (see --bound).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <map>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "model/gguf_export.h"
#include "model/synth.h"
#include "peer/llamacpp_peer.h"

using namespace kvmart;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<size_t> ParseList(const std::string& v) {
  std::vector<size_t> out;
  std::stringstream ss(v);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(std::stoul(x));
  return out;
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

struct Args {
  std::string model_dir, shape = "qwen3-0.6b", kernels = "auto", peer_binary;
  std::vector<size_t> lengths = {256, 1024, 3774}, batch = {1, 4, 16};
  size_t threads = 2, decode = 32, batch_prefix = 1024, batch_steps = 16, chunk = 512;
  bool json = false, agreement_only = false;
  std::string rows = "prefill,reuse,batch";  // which row groups (prefill includes decode at depth)
  double bound = 0.05;  // max |Δlogit| as a fraction of max |logit|
};

constexpr const char* kUsage =
    "usage: kvmart-bench-peer [--model DIR | --shape S] [--lengths a,b,c] [--batch 1,4,16]\n"
    "                         [--batch-prefix N] [--decode N] [--threads N] [--kernels auto|avx2|avx512|portable]\n"
    "                         [--rows prefill,reuse,batch] [--agreement-only] [--bound F] [--peer PATH] [--json]\n"
    "kvmart beside llama.cpp (the npm package node-llama-cpp) on the same weights and tokens, in one run.\n"
    "  --shape S          synthesize S (tiny|small|qwen3-0.6b|qwen3-4b) into bench-models/S (default qwen3-0.6b)\n"
    "  --model DIR        a Hugging Face Qwen3 checkpoint instead\n"
    "  --lengths          prefill lengths, decode depths and reuse document lengths (default 256,1024,3774)\n"
    "  --batch            sequences for batched decode (default 1,4,16) over --batch-prefix tokens (1024)\n"
    "  --decode N         timed decode steps per depth (32); batched decode runs 16 steps\n"
    "  --rows LIST        row groups to run: prefill (with decode at depth), reuse, batch (default all)\n"
    "  --agreement-only   only the agreement check (greedy tokens, logit differences)\n"
    "  --bound F          largest allowed max|Δlogit| / max|logit| (default 0.05)\n"
    "  --json             {\"machine\": {...}, \"rows\": [...], \"agreement\": {...}} on stdout\n";

int Usage(int code) {
  std::fputs(kUsage, code == 0 ? stdout : stderr);
  return code;
}

struct Row {
  std::string what;
  size_t n;
  double kvmart, llamacpp;
  std::string unit;
  bool higher_is_better;
  double ratio() const { return higher_is_better ? kvmart / llamacpp : llamacpp / kvmart; }
};

int Fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") return Usage(0);
    if (k == "--json") { a.json = true; continue; }
    if (k == "--agreement-only") { a.agreement_only = true; continue; }
    if (i + 1 >= argc) return Usage(2);
    const std::string v = argv[++i];
    try {
      if (k == "--model") a.model_dir = v;
      else if (k == "--shape") a.shape = v;
      else if (k == "--kernels") a.kernels = v;
      else if (k == "--peer") a.peer_binary = v;
      else if (k == "--rows") a.rows = v;
      else if (k == "--lengths") a.lengths = ParseList(v);
      else if (k == "--batch") a.batch = ParseList(v);
      else if (k == "--batch-prefix") a.batch_prefix = std::stoul(v);
      else if (k == "--decode") a.decode = std::stoul(v);
      else if (k == "--threads") a.threads = std::stoul(v);
      else if (k == "--bound") a.bound = std::stod(v);
      else return Usage(2);
    } catch (const std::exception&) {
      std::fprintf(stderr, "error: %s: '%s' is not a number list\n", k.c_str(), v.c_str());
      return 2;
    }
  }
  // Progress goes to stderr so that --json's stdout stays one document.
  auto say = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };

  if (a.model_dir.empty()) {
    a.model_dir = "bench-models/" + a.shape;
    if (!std::filesystem::exists(a.model_dir + "/config.json")) {
      say("synthesizing " + a.shape + " into " + a.model_dir + " ...");
      SynthOptions o;
      o.shape = a.shape;
      o.out_dir = a.model_dir;
      o.tokenizer_dir = KVMART_DATA_DIR;
      if (Status st = WriteSyntheticCheckpoint(o); !st.ok()) return Fail(st);
    }
  }
  auto gguf_or = ExportGgufBeside(a.model_dir, say);
  if (!gguf_or.ok()) return Fail(gguf_or.status());
  const std::string gguf = *gguf_or;

  auto loaded = Model::Load(a.model_dir);
  if (!loaded.ok()) return Fail(loaded.status());
  std::shared_ptr<const Model> model = std::move(loaded).value();
  const ModelConfig& cfg = model->config();
  EngineOptions eo;
  auto path = ParseKernelPath(a.kernels);
  if (!path.ok()) return Fail(path.status());
  eo.kernels = *path;
  eo.threads = a.threads;
  auto engine_or = Engine::Create(model, eo);
  if (!engine_or.ok()) return Fail(engine_or.status());
  auto engine = std::move(engine_or).value();

  size_t max_len = std::max<size_t>(a.batch_prefix + 64, 512);
  for (size_t n : a.lengths) max_len = std::max(max_len, n + a.decode + 64);
  LlamaCppPeerOptions po;
  po.gguf_path = gguf;
  po.binary = a.peer_binary;
  po.threads = static_cast<int>(a.threads);
  po.context = static_cast<int>((max_len + 255) / 256 * 256);
  po.sequences = static_cast<int>(std::max<size_t>(1, *std::max_element(a.batch.begin(), a.batch.end())));
  auto peer_or = LlamaCppPeer::Start(po);
  if (!peer_or.ok()) return Fail(peer_or.status());
  auto peer = std::move(peer_or).value();

  json machine = {{"cpu", CpuModel()},
                  {"logical_cores", std::thread::hardware_concurrency()},
                  {"threads", a.threads},
                  {"kvmart_kernels", KernelPathName(eo.kernels)},
                  {"llamacpp", peer->system_info()},
                  {"llamacpp_settings", "f16 KV, flash attention auto, n_batch 2048, n_ubatch 512, unified KV"},
                  {"model", a.model_dir},
                  {"layers", cfg.num_hidden_layers},
                  {"hidden", cfg.hidden_size}};
  say("machine: " + machine["cpu"].get<std::string>() + ", " + std::to_string(a.threads) + " threads; kvmart " +
      KernelPathName(eo.kernels) + "; llama.cpp " + peer->system_info());

  std::vector<Row> rows;
  auto add = [&](Row r) {
    say("  " + r.what + " n=" + std::to_string(r.n) + ": kvmart " + std::to_string(r.kvmart) + " " + r.unit +
        ", llama.cpp " + std::to_string(r.llamacpp) + " -> " + std::to_string(r.ratio()) + "x");
    rows.push_back(std::move(r));
  };

  if (!a.agreement_only) {
    auto wanted = [&](const char* group) { return ("," + a.rows + ",").find(std::string(",") + group + ",") != std::string::npos; };
    // Prefill, then decode at that depth, on identical ids. The prefill times
    // (kvmart, llama.cpp) are kept per length for the hit speed-ups below.
    std::map<size_t, std::pair<double, double>> prefill_s;
    for (size_t n : wanted("prefill") ? a.lengths : std::vector<size_t>{}) {
      const auto tokens = RandomTextTokens(n, 1000 + n, cfg.vocab_size);
      auto s = engine->NewSession();
      auto t0 = Clock::now();
      if (Status st = s->Prefill(tokens, a.chunk); !st.ok()) return Fail(st);
      const double kv_prefill = Since(t0);
      if (auto t = s->DecodeStep(); !t.ok()) return Fail(t.status());  // untimed, as on the peer's side
      auto td = Clock::now();
      for (size_t i = 0; i < a.decode; ++i) {
        if (auto t = s->DecodeStep(); !t.ok()) return Fail(t.status());
      }
      const double kv_decode = Since(td);
      auto p = peer->PrefillAndDecode(tokens, static_cast<int>(a.decode));
      if (!p.ok()) return Fail(p.status());
      add({"prefill", n, n / kv_prefill, n / p->prefill_s, "tok/s", true});
      prefill_s[n] = {kv_prefill, p->prefill_s};
      add({"decode", n, a.decode / kv_decode, a.decode / p->decode_s, "tok/s", true});
    }
    // Reuse: a saved state loaded into a fresh context, then one token.
    for (size_t n : wanted("reuse") ? a.lengths : std::vector<size_t>{}) {
      const auto doc = RandomTextTokens(n, 2000 + n, cfg.vocab_size);
      const std::vector<int32_t> next = RandomTextTokens(1, 3000 + n, cfg.vocab_size);
      auto s = engine->NewSession();
      if (Status st = s->Prefill(doc, a.chunk); !st.ok()) return Fail(st);
      auto kv = s->ExportKv(0, n);
      if (!kv.ok()) return Fail(kv.status());
      s.reset();
      auto fresh = engine->NewSession();
      auto t0 = Clock::now();
      if (Status st = fresh->ImportKv(*kv); !st.ok()) return Fail(st);
      if (Status st = fresh->Prefill(next); !st.ok()) return Fail(st);
      const double kv_reuse = Since(t0);
      // The provider's hit: the state resident once (frozen, untimed, as the
      // server's first load is), then attached to a new session + one token.
      auto frozen = engine->NewSession();
      if (Status st = frozen->ImportKv(*kv); !st.ok()) return Fail(st);
      auto prefix = frozen->ShareAsPrefix();
      if (!prefix.ok()) return Fail(prefix.status());
      frozen.reset();
      auto hit = engine->NewSession();
      auto ta = Clock::now();
      if (Status st = hit->Attach(**prefix); !st.ok()) return Fail(st);
      if (Status st = hit->Prefill(next); !st.ok()) return Fail(st);
      const double kv_attach = Since(ta);
      auto p = peer->LoadAndContinue(doc, next);
      if (!p.ok()) return Fail(p.status());
      add({"reuse", n, kv_reuse, p->total_s, "s", false});
      add({"reuse, resident (kvmart attaches)", n, kv_attach, p->total_s, "s", false});
      if (auto it = prefill_s.find(n); it != prefill_s.end()) {
        // Each engine's own cold ÷ hit: the speed-up a hit gives over its prefill.
        add({"hit speed-up over own prefill (resident)", n, it->second.first / kv_attach,
             it->second.second / p->total_s, "x", true});
      }
    }
    // Batched decode of B sequences sharing a prefix: one thread per
    // sequence, as a server runs them; the engine stacks their concurrent
    // steps into shared forward passes (continuous batching).
    const auto prefix = RandomTextTokens(a.batch_prefix, 4000, cfg.vocab_size);
    if (wanted("batch")) {
      auto base = engine->NewSession();
      if (Status st = base->Prefill(prefix, a.chunk); !st.ok()) return Fail(st);
      auto shared = base->ExportKv(0, prefix.size());
      if (!shared.ok()) return Fail(shared.status());
      // The prefix resident once, as the server holds a hot artifact.
      auto resident = base->ShareAsPrefix();
      if (!resident.ok()) return Fail(resident.status());
      base.reset();
      // kvmart's aggregate decode tokens/s of b sequences that start from the
      // prefix imported (each its own copy) or attached (its pages shared,
      // read once per pass for every sequence).
      auto decode_b = [&](size_t b, bool attach) -> StatusOr<double> {
        std::vector<std::unique_ptr<Session>> seqs;
        for (size_t i = 0; i < b; ++i) {
          seqs.push_back(engine->NewSession());
          Status st = attach ? seqs.back()->Attach(**resident) : seqs.back()->ImportKv(*shared);
          if (!st.ok()) return st;
          const int32_t first = static_cast<int32_t>((prefix.back() + 1 + i) % 151643);
          if (st = seqs.back()->Prefill(std::vector<int32_t>{first}); !st.ok()) return st;
        }
        const auto before = engine->batch_stats();
        std::vector<Status> results(b);
        auto t0 = Clock::now();
        {
          std::vector<std::thread> threads;
          for (size_t i = 0; i < b; ++i) {
            threads.emplace_back([&, i] {
              for (size_t step = 0; step < a.batch_steps; ++step) {
                if (auto t = seqs[i]->DecodeStep(); !t.ok()) {
                  results[i] = t.status();
                  return;
                }
              }
            });
          }
          for (auto& t : threads) t.join();
        }
        const double kv_s = Since(t0);
        for (const Status& st : results) {
          if (!st.ok()) return st;
        }
        const auto after = engine->batch_stats();
        say(std::string("  kvmart (") + (attach ? "attached" : "imported") + "): " +
            std::to_string(after.passes - before.passes) + " passes for " +
            std::to_string(after.sequences - before.sequences) + " sequence steps, " +
            std::to_string(after.shared_prefix_sequences - before.shared_prefix_sequences) +
            " of them reading the shared prefix together");
        return b * a.batch_steps / kv_s;
      };
      for (size_t b : a.batch) {
        auto imported = decode_b(b, false);
        if (!imported.ok()) return Fail(imported.status());
        auto attached = decode_b(b, true);
        if (!attached.ok()) return Fail(attached.status());
        auto p = peer->BatchedDecode(prefix, static_cast<int>(b), static_cast<int>(a.batch_steps));
        if (!p.ok()) return Fail(p.status());
        add({"batched decode, prefix imported", b, *imported, b * a.batch_steps / *p, "tok/s", true});
        add({"batched decode, prefix attached", b, *attached, b * a.batch_steps / *p, "tok/s", true});
      }
    }
  }

  // Agreement on fixed prompts under teacher forcing.
  const size_t vocab = cfg.vocab_size;
  const std::vector<size_t> prompt_lengths = {16, 64, 200};
  const size_t steps = 16;
  size_t positions = 0, equal = 0, clear_disagreements = 0, greedy_prefix_total = 0;
  double max_diff = 0, max_logit = 0;
  struct Pos {
    int32_t kv_arg, peer_arg;
    double margin;
  };
  std::vector<Pos> all;
  for (size_t pl : prompt_lengths) {
    auto prompt = RandomTextTokens(pl, 5000 + pl, cfg.vocab_size);
    auto s = engine->NewSession();
    if (Status st = s->Prefill(prompt); !st.ok()) return Fail(st);
    std::vector<std::vector<float>> kv_logits;
    std::vector<int32_t> forced = prompt;
    for (size_t i = 0; i < steps; ++i) {
      auto l = s->logits();
      if (!l.ok()) return Fail(l.status());
      kv_logits.emplace_back(l->begin(), l->end());
      auto t = s->DecodeStep();  // greedy
      if (!t.ok()) return Fail(t.status());
      if (i + 1 < steps) forced.push_back(*t);
    }
    auto pl_or = peer->Logits(forced, static_cast<int>(steps), vocab);
    if (!pl_or.ok()) return Fail(pl_or.status());
    const std::vector<float>& pv = *pl_or;
    bool prefix_ok = true;
    for (size_t i = 0; i < steps; ++i) {
      const float* k = kv_logits[i].data();
      const float* p = pv.data() + i * vocab;
      int32_t ka = 0, pa = 0;
      for (size_t v = 0; v < vocab; ++v) {
        if (k[v] > k[ka]) ka = static_cast<int32_t>(v);
        if (p[v] > p[pa]) pa = static_cast<int32_t>(v);
        max_diff = std::max(max_diff, std::fabs(double{k[v]} - double{p[v]}));
        max_logit = std::max(max_logit, std::fabs(double{k[v]}));
      }
      float second = -INFINITY;
      for (size_t v = 0; v < vocab; ++v) {
        if (static_cast<int32_t>(v) != ka) second = std::max(second, k[v]);
      }
      all.push_back({ka, pa, double{k[ka]} - double{second}});
      ++positions;
      if (ka == pa) ++equal;
      prefix_ok = prefix_ok && ka == pa;
      if (prefix_ok) ++greedy_prefix_total;
    }
  }
  for (const auto& p : all) {
    if (p.kv_arg != p.peer_arg && p.margin > 2 * max_diff) ++clear_disagreements;
  }
  const double rel = max_logit > 0 ? max_diff / max_logit : 0;
  const bool agree = clear_disagreements == 0 && rel <= a.bound;
  json agreement = {{"prompts", prompt_lengths.size()},
                    {"positions", positions},
                    {"argmax_equal", equal},
                    {"greedy_prefix_equal", greedy_prefix_total},
                    {"clear_margin_disagreements", clear_disagreements},
                    {"max_abs_logit_diff", max_diff},
                    {"max_abs_logit", max_logit},
                    {"relative_diff", rel},
                    {"bound", a.bound},
                    {"ok", agree}};

  if (a.json) {
    json jr = json::array();
    for (const auto& r : rows) {
      jr.push_back({{"what", r.what}, {"n", r.n}, {"kvmart", r.kvmart}, {"llamacpp", r.llamacpp}, {"unit", r.unit},
                    {"ratio", r.ratio()}});
    }
    std::cout << json{{"machine", machine}, {"rows", jr}, {"agreement", agreement}}.dump(2) << "\n";
  } else {
    std::printf("kvmart vs llama.cpp on %s, %zu threads (%s); ratio > 1: kvmart better\n",
                machine["cpu"].get<std::string>().c_str(), a.threads, a.model_dir.c_str());
    std::printf("%-15s %6s %12s %12s %6s %8s\n", "what", "n", "kvmart", "llama.cpp", "unit", "ratio");
    for (const auto& r : rows) {
      std::printf("%-15s %6zu %12.4g %12.4g %6s %7.2fx\n", r.what.c_str(), r.n, r.kvmart, r.llamacpp, r.unit.c_str(),
                  r.ratio());
    }
    std::printf("\nagreement (teacher-forced, %zu prompts x %zu steps): argmax equal at %zu/%zu positions, "
                "greedy prefixes %zu/%zu, clear-margin disagreements %zu;\n"
                "max |logit diff| %.4g of max |logit| %.4g (%.2f%%, bound %.2f%%): %s\n",
                prompt_lengths.size(), steps, equal, positions, greedy_prefix_total, positions, clear_disagreements,
                max_diff, max_logit, 100 * rel, 100 * a.bound, agree ? "ok" : "FAILED");
  }
  return agree ? 0 : 1;
}
