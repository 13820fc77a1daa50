// Engine commands: synth, generate, exactness (and its hidden child), demo.
#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "cli/cli_util.h"
#include "cli/data_dir.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "engine/kv_file.h"
#include "model/gguf_export.h"
#include "model/synth.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }


// ---- exactness ---------------------------------------------------------------

struct Trace {
  std::vector<int32_t> tokens;     // greedy tokens
  std::vector<float> logits;       // decode × vocab: the logits each token was chosen from
};

Status Continue(Session& s, size_t decode, Trace* trace) {
  for (size_t i = 0; i < decode; ++i) {
    KVMART_ASSIGN_OR_RETURN(auto l, s.logits());
    trace->logits.insert(trace->logits.end(), l.begin(), l.end());
    KVMART_ASSIGN_OR_RETURN(int32_t tok, s.DecodeStep());
    trace->tokens.push_back(tok);
  }
  return Status::Ok();
}

Status WriteTrace(const std::string& path, const Trace& t) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  uint64_t n = t.tokens.size(), m = t.logits.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(reinterpret_cast<const char*>(t.tokens.data()), static_cast<std::streamsize>(n * 4));
  f.write(reinterpret_cast<const char*>(&m), 8);
  f.write(reinterpret_cast<const char*>(t.logits.data()), static_cast<std::streamsize>(m * 4));
  f.close();
  return f ? Status::Ok() : Status::IOError(path + ": write failed");
}

StatusOr<Trace> ReadTrace(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IOError(path + ": cannot open");
  Trace t;
  uint64_t n = 0, m = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  if (!f || n > (1u << 20)) return Status::Corruption(path + ": bad trace");
  t.tokens.resize(n);
  f.read(reinterpret_cast<char*>(t.tokens.data()), static_cast<std::streamsize>(n * 4));
  f.read(reinterpret_cast<char*>(&m), 8);
  if (!f || m > (1ull << 32)) return Status::Corruption(path + ": bad trace");
  t.logits.resize(m);
  f.read(reinterpret_cast<char*>(t.logits.data()), static_cast<std::streamsize>(m * 4));
  if (!f) return Status::Corruption(path + ": truncated trace");
  return t;
}

struct Comparison {
  bool bit_exact = true;
  double max_abs = 0;
  size_t greedy_match = 0;
};

Comparison Compare(const Trace& ref, const Trace& got) {
  Comparison c;
  if (ref.logits.size() != got.logits.size() || ref.tokens.size() != got.tokens.size()) {
    c.bit_exact = false;
    c.max_abs = INFINITY;
    return c;
  }
  if (std::memcmp(ref.logits.data(), got.logits.data(), ref.logits.size() * 4) != 0) c.bit_exact = false;
  for (size_t i = 0; i < ref.logits.size(); ++i) c.max_abs = std::max(c.max_abs, double(std::fabs(ref.logits[i] - got.logits[i])));
  for (size_t i = 0; i < ref.tokens.size(); ++i) c.greedy_match += ref.tokens[i] == got.tokens[i];
  return c;
}

// Runs `argv` and waits; returns its exit status.
StatusOr<int> RunProcess(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::Internal(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return Status::Internal("waitpid failed");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Join(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

struct ExactnessArgs {
  EngineFlags engine;
  size_t doc_tokens = 300, question_tokens = 20, decode = 24;
  uint64_t seed = 1;
  bool json = false;
  std::vector<size_t> chunks = {1, 7, 64, 0};
  std::vector<size_t> thread_counts = {1, 2};
  std::vector<std::string> paths = {"portable", "avx2", "avx512"};
};

int RunExactness(const ExactnessArgs& a) {
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  const uint32_t vocab = (*model)->config().vocab_size;
  const auto doc = RandomTextTokens(a.doc_tokens, a.seed * 2 + 1, vocab);
  const auto question = RandomTextTokens(a.question_tokens, a.seed * 2 + 2, vocab);
  std::vector<int32_t> all = doc;
  all.insert(all.end(), question.begin(), question.end());
  if (a.doc_tokens == 0 || a.question_tokens == 0) return Fail(Status::InvalidArgument("doc and question need ≥ 1 token"));

  std::vector<std::string> paths;
  for (const auto& p : a.paths) {
    auto path = ParseKernelPath(p);
    if (path.status().code() == Status::Code::kFailedPrecondition) {
      std::cerr << "note: skipping the " << p << " path (" << path.status().message() << ")\n";
      continue;
    }
    if (!path.ok()) return Fail(path.status());
    paths.push_back(p);
  }
  if (paths.empty()) return Fail(Status::InvalidArgument("no kernel path to check on this CPU"));
  // Reference: one-shot prefill of doc+question, whole batch, first path.
  Trace ref;
  {
    auto engine = OpenEngine(*model, paths.front(), 1);
    if (!engine.ok()) return Fail(engine.status());
    auto s = (*engine)->NewSession();
    Status st = s->Prefill(all);
    if (st.ok()) st = Continue(*s, a.decode, &ref);
    if (!st.ok()) return Fail(st);
  }
  char tmpl[] = "/tmp/kvmart-exactness-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return Fail(Status::IOError("mkdtemp failed"));
  const fs::path tmp(tmpl);
  std::string self = fs::read_symlink("/proc/self/exe").string();

  Comparison total;
  total.greedy_match = a.decode;
  size_t configs = 0;
  nlohmann::json details = nlohmann::json::array();
  for (const auto& path : paths) {
    for (size_t threads : a.thread_counts) {
      auto engine = OpenEngine(*model, path, threads);
      if (!engine.ok()) return Fail(engine.status());
      for (size_t chunk : a.chunks) {
        // One-shot in this configuration.
        Trace one;
        {
          auto s = (*engine)->NewSession();
          Status st = s->Prefill(all, chunk);
          if (st.ok()) st = Continue(*s, a.decode, &one);
          if (!st.ok()) return Fail(st);
        }
        // Split: prefill(doc) -> export -> file -> fresh process imports and continues.
        const std::string kv_path = (tmp / "doc.kv").string(), out_path = (tmp / "trace.bin").string();
        {
          auto s = (*engine)->NewSession();
          Status st = s->Prefill(doc, chunk);
          auto kv = s->ExportKv(0, doc.size());
          if (!kv.ok()) st = kv.status();
          if (st.ok()) st = WriteKvFile(kv_path, *kv);
          if (!st.ok()) return Fail(st);
        }
        auto rc = RunProcess({self, "exactness-child", "--model", a.engine.model_dir, "--kv", kv_path, "--question",
                              Join(question), "--decode", std::to_string(a.decode), "--kernels", path, "--threads",
                              std::to_string(threads), "--chunk", std::to_string(chunk), "--out", out_path});
        if (!rc.ok()) return Fail(rc.status());
        if (*rc != 0) return Fail(Status::Internal("child process exited with status " + std::to_string(*rc)));
        auto split = ReadTrace(out_path);
        if (!split.ok()) return Fail(split.status());
        for (const Trace* t : {&one, &split.value()}) {
          Comparison c = Compare(ref, *t);
          total.bit_exact = total.bit_exact && c.bit_exact;
          total.max_abs = std::max(total.max_abs, c.max_abs);
          total.greedy_match = std::min(total.greedy_match, c.greedy_match);
          details.push_back({{"kernels", path},
                             {"threads", threads},
                             {"chunk", chunk},
                             {"mode", t == &one ? "one-shot" : "import-in-fresh-process"},
                             {"bit_exact", c.bit_exact},
                             {"max_abs_logit_diff", c.max_abs}});
          ++configs;
        }
      }
    }
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);
  const std::string greedy = std::to_string(total.greedy_match) + "/" + std::to_string(a.decode);
  if (a.json) {
    nlohmann::json j = {{"bit_exact", total.bit_exact},
                        {"max_abs_logit_diff", total.max_abs},
                        {"greedy_match", greedy},
                        {"configs_checked", configs},
                        {"doc_tokens", a.doc_tokens},
                        {"question_tokens", a.question_tokens},
                        {"decode", a.decode},
                        {"reference", {{"kernels", paths.front()}, {"threads", 1}, {"chunk", 0}, {"mode", "one-shot"}}},
                        {"configs", details}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "exactness: " << configs << " configurations (kernels x threads x chunk sizes, one-shot and "
              << "import in a fresh process) vs one-shot reference\n"
              << "  bit_exact: " << (total.bit_exact ? "true" : "false") << "\n"
              << "  max_abs_logit_diff: " << total.max_abs << "\n"
              << "  greedy_match: " << greedy << "\n";
  }
  return total.bit_exact ? 0 : 2;
}

int RunExactnessChild(const EngineFlags& f, const std::string& kv_path, const std::string& question_text,
                      size_t decode, size_t chunk, const std::string& out) {
  auto model = LoadModel(f.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, f.kernels, f.threads);
  if (!engine.ok()) return Fail(engine.status());
  auto kv = ReadKvFile(kv_path);
  if (!kv.ok()) return Fail(kv.status());
  auto question = ParseTokenList(question_text);
  if (!question.ok()) return Fail(question.status());
  auto s = (*engine)->NewSession();
  Trace t;
  Status st = s->ImportKv(*kv);
  if (st.ok()) st = s->Prefill(*question, chunk);
  if (st.ok()) st = Continue(*s, decode, &t);
  if (st.ok()) st = WriteTrace(out, t);
  return st.ok() ? 0 : Fail(st);
}

// ---- generate ----------------------------------------------------------------

struct GenerateArgs {
  EngineFlags engine;
  std::string tokens;
  std::string prompt;
  size_t n = 16, chunk = 0;
  bool json = false;
  SamplingParams sampling;
};

int RunGenerate(const GenerateArgs& a) {
  auto t0 = Clock::now();
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, a.engine.kernels, a.engine.threads);
  if (!engine.ok()) return Fail(engine.status());
  // Text prompts use the checkpoint's own tokenizer.json.
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (!a.prompt.empty() || a.tokens.empty()) {
    auto t = tokenizer::Tokenizer::Load((fs::path(a.engine.model_dir) / "tokenizer.json").string());
    if (!t.ok()) return Fail(t.status());
    tok = std::move(t).value();
  }
  StatusOr<std::vector<int32_t>> prompt = a.tokens.empty() ? tok->Encode(a.prompt) : ParseTokenList(a.tokens);
  if (!prompt.ok()) return Fail(prompt.status());
  if (prompt->empty()) return Fail(Status::InvalidArgument("empty prompt"));
  auto t1 = Clock::now();
  auto s = (*engine)->NewSession();
  ProgressBar bar("prefill", prompt->size());
  Status st = s->Prefill(*prompt, a.chunk, [&](size_t done, size_t) { bar.Update(done); });
  bar.Finish();
  if (!st.ok()) return Fail(st);
  auto t2 = Clock::now();
  std::vector<int32_t> out;
  std::optional<tokenizer::StreamDecoder> text;
  if (tok) text.emplace(*tok);
  for (size_t i = 0; i < a.n; ++i) {
    auto next = s->DecodeStep(a.sampling);
    if (!next.ok()) return Fail(next.status());
    out.push_back(*next);
    if (a.json) continue;
    if (text) {
      auto piece = text->Push(*next);
      if (!piece.ok()) return Fail(piece.status());
      std::cout << *piece << std::flush;
    } else {
      std::cout << (i ? "," : "") << *next << std::flush;
    }
  }
  if (text && !a.json) std::cout << text->Finish();
  auto t3 = Clock::now();
  const double prefill_tps = prompt->size() / Seconds(t1, t2);
  const double decode_tps = a.n ? a.n / Seconds(t2, t3) : 0;
  if (a.json) {
    std::string out_text;
    if (tok) {
      auto decoded = tok->Decode(out);
      if (!decoded.ok()) return Fail(decoded.status());
      out_text = std::move(decoded).value();
    }
    nlohmann::json j = {{"tokens", out},
                        {"prompt_tokens", prompt->size()},
                        {"text", out_text},
                        {"load_seconds", Seconds(t0, t1)},
                        {"prefill_tokens_per_second", prefill_tps},
                        {"decode_tokens_per_second", decode_tps},
                        {"kernels", KernelPathName((*engine)->ops().path)},
                        {"threads", (*engine)->threads()}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "\nprefill: " << prompt->size() << " tokens, " << prefill_tps << " tok/s; decode: " << a.n
              << " tokens, " << decode_tps << " tok/s (" << KernelPathName((*engine)->ops().path) << ", "
              << (*engine)->threads() << " threads)\n";
  }
  return 0;
}

}  // namespace

// Under the data directory (cli/data_dir.h), like everything kvmart creates.
std::string DefaultDemoModelDir() { return ResolveDataDir("").root + "/models/tiny"; }

void RegisterEngineCommands(CLI::App& app, int* exit_code) {
  // synth
  auto synth = std::make_shared<SynthOptions>();
  auto* cs = app.add_subcommand("synth", "write a synthetic Qwen3 checkpoint in the Hugging Face layout");
  cs->add_option("--shape", synth->shape, "tiny | small | qwen3-0.6b | qwen3-4b");
  cs->add_option("--seed", synth->seed, "random seed");
  cs->add_option("--dtype", synth->dtype, "bf16 | f16 | f32");
  cs->add_option("--out", synth->out_dir, "output directory")->required();
  cs->add_option("--max-shard-bytes", synth->max_shard_bytes, "split into shards of at most this many bytes");
  cs->callback([synth, exit_code] {
    synth->tokenizer_dir = BundledDataDir();
    ProgressBar bar("synth", 0);
    synth->progress = [&](uint64_t done, uint64_t total) { bar.UpdateBytes(done, total); };
    auto t0 = Clock::now();
    Status st = WriteSyntheticCheckpoint(*synth);
    bar.Finish();
    if (!st.ok()) {
      *exit_code = Fail(st);
      return;
    }
    std::cout << "wrote " << synth->shape << " checkpoint to " << synth->out_dir << " in " << Seconds(t0, Clock::now())
              << " s\n";
  });

  // export-gguf
  auto gg = std::make_shared<GgufExportOptions>();
  auto* cx = app.add_subcommand("export-gguf",
                                "write a checkpoint's exact weights and tokenizer as a GGUF file llama.cpp loads "
                                "(qwen3 layout; bf16 stays bf16, norms widen to f32)");
  cx->add_option("--model", gg->model_dir, "checkpoint directory (config.json, safetensors, tokenizer.json)")->required();
  cx->add_option("--out", gg->out_path, "GGUF file to write")->required();
  cx->callback([gg, exit_code] {
    auto t0 = Clock::now();
    gg->progress = [](const std::string& what) { std::cerr << "export-gguf: " << what << "\n"; };
    Status st = ExportGguf(*gg);
    if (!st.ok()) {
      *exit_code = Fail(st);
      return;
    }
    std::cout << "wrote " << gg->out_path << " from " << gg->model_dir << " in " << Seconds(t0, Clock::now()) << " s\n";
  });

  // generate
  auto gen = std::make_shared<GenerateArgs>();
  auto* cg = app.add_subcommand("generate", "prefill a prompt and decode tokens");
  gen->engine.Add(cg);
  auto* tokens_opt = cg->add_option("--tokens", gen->tokens, "prompt token ids, comma-separated");
  auto* prompt_opt = cg->add_option("--prompt", gen->prompt, "prompt text (tokenized with DIR/tokenizer.json)");
  tokens_opt->excludes(prompt_opt);
  cg->add_option("-n", gen->n, "tokens to generate");
  cg->add_option("--chunk", gen->chunk, "prefill chunk size (0 = whole prompt)");
  cg->add_option("--temperature", gen->sampling.temperature, "0 = greedy");
  cg->add_option("--top-k", gen->sampling.top_k, "sample among the k most likely tokens (0 = all)")
      ->capture_default_str();
  cg->add_option("--top-p", gen->sampling.top_p, "sample within the smallest set of cumulative probability p")
      ->capture_default_str();
  cg->add_option("--seed", gen->sampling.seed, "sampling seed (same seed, same tokens)")->capture_default_str();
  cg->add_flag("--json", gen->json, "print tokens, text and speeds as one JSON object");
  cg->callback([gen, exit_code] { *exit_code = RunGenerate(*gen); });

  // exactness
  auto ex = std::make_shared<ExactnessArgs>();
  auto* ce = app.add_subcommand("exactness", "check that KV reuse is bit-exact with prefilling from scratch");
  ce->add_option("--model", ex->engine.model_dir, "checkpoint directory")->required();
  ce->add_option("--doc-tokens", ex->doc_tokens, "length of the exported document")->capture_default_str();
  ce->add_option("--question-tokens", ex->question_tokens, "tokens prefilled after the import")->capture_default_str();
  ce->add_option("--decode", ex->decode, "tokens decoded and compared")->capture_default_str();
  ce->add_option("--seed", ex->seed, "seed of the random document and question")->capture_default_str();
  ce->add_option("--chunks", ex->chunks, "prefill chunk sizes to check (0 = whole)")
      ->delimiter(',')
      ->capture_default_str();
  ce->add_option("--thread-counts", ex->thread_counts, "engine thread counts to check")
      ->delimiter(',')
      ->capture_default_str();
  ce->add_option("--paths", ex->paths, "kernel paths to check (those this CPU lacks are reported as skipped)")
      ->delimiter(',')
      ->capture_default_str();
  ce->add_flag("--json", ex->json, "print the results as JSON");
  ce->callback([ex, exit_code] { *exit_code = RunExactness(*ex); });

  // exactness-child (internal: the fresh process of the exactness check)
  auto child = std::make_shared<std::tuple<EngineFlags, std::string, std::string, size_t, size_t, std::string>>();
  auto* cc = app.add_subcommand("exactness-child", "")->group("");  // hidden
  std::get<0>(*child).Add(cc);
  cc->add_option("--kv", std::get<1>(*child))->required();
  cc->add_option("--question", std::get<2>(*child))->required();
  cc->add_option("--decode", std::get<3>(*child))->required();
  cc->add_option("--chunk", std::get<4>(*child));
  cc->add_option("--out", std::get<5>(*child))->required();
  cc->callback([child, exit_code] {
    auto& [f, kv, q, decode, chunk, out] = *child;
    *exit_code = RunExactnessChild(f, kv, q, decode, chunk, out);
  });

  // demo
  auto demo_dir = std::make_shared<std::string>(DefaultDemoModelDir());
  auto* cd = app.add_subcommand("demo", "synthesize the tiny model if needed and show bit-exact KV reuse");
  cd->add_option("--model", *demo_dir, "model directory (created if absent)");
  cd->callback([demo_dir, exit_code] {
    std::error_code ec;
    if (!fs::exists(fs::path(*demo_dir) / "config.json", ec)) {
      std::cout << "synthesizing the tiny Qwen3-shaped model in " << *demo_dir << " ...\n";
      SynthOptions o;
      o.out_dir = *demo_dir;
      o.tokenizer_dir = BundledDataDir();
      Status st = WriteSyntheticCheckpoint(o);
      if (!st.ok()) {
        *exit_code = Fail(st);
        return;
      }
    }
    std::cout << "prefill(doc) -> export KV -> import in a fresh process -> prefill(question) -> greedy decode,\n"
              << "compared with prefill(doc + question) in one call, across kernel paths, thread counts and\n"
              << "prefill chunk sizes:\n";
    ExactnessArgs a;
    a.engine.model_dir = *demo_dir;
    *exit_code = RunExactness(a);
  });
}

}  // namespace kvmart::cli
