// Artifact commands that run the engine: publish, verify, ask.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <sodium.h>

#include "artifact/container.h"
#include "artifact/signing.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "engine/artifact_io.h"
#include "engine/spot_check.h"
#include "store/store.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string DefaultKeyPath() {
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : ".") / ".local/share/kvmart/publisher.key").string();
}

// Loads the publisher key, creating it (mode 0600) on first use of the default path.
StatusOr<artifact::SigningKey> PublisherKey(const std::string& path, bool is_default) {
  std::error_code ec;
  if (is_default && !fs::exists(path, ec)) {
    fs::create_directories(fs::path(path).parent_path(), ec);
    KVMART_ASSIGN_OR_RETURN(auto key, artifact::SigningKey::Generate());
    KVMART_RETURN_IF_ERROR(key.SaveFile(path));
    std::cerr << "created publisher key " << path << "\n";
  }
  return artifact::SigningKey::LoadFile(path);
}

StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IOError(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

StatusOr<std::unique_ptr<tokenizer::Tokenizer>> ModelTokenizer(const std::string& model_dir) {
  return tokenizer::Tokenizer::Load((fs::path(model_dir) / "tokenizer.json").string());
}

struct PublishArgs {
  EngineFlags engine;
  std::string doc, tokens, out, codec = "raw", key, title;
  uint32_t block_size = artifact::kDefaultBlockSize;
  size_t chunk = 512;
};

int RunPublish(const PublishArgs& a) {
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, a.engine.kernels, a.engine.threads);
  if (!engine.ok()) return Fail(engine.status());
  auto codec = artifact::ParseCodec(a.codec);
  if (!codec.ok()) return Fail(codec.status());
  auto key = PublisherKey(a.key.empty() ? DefaultKeyPath() : a.key, a.key.empty());
  if (!key.ok()) return Fail(key.status());
  artifact::ArtifactMetadata meta;
  std::vector<int32_t> tokens;
  if (!a.doc.empty()) {
    auto text = ReadText(a.doc);
    if (!text.ok()) return Fail(text.status());
    auto tok = ModelTokenizer(a.engine.model_dir);
    if (!tok.ok()) return Fail(tok.status());
    auto ids = (*tok)->Encode(*text);
    if (!ids.ok()) return Fail(ids.status().WithContext(a.doc));
    tokens = std::move(ids).value();
    meta.source_sha256 = Sha256Of(*text);
    meta.title = a.title.empty() ? fs::path(a.doc).filename().string() : a.title;
  } else {
    auto ids = ParseTokenList(a.tokens);
    if (!ids.ok()) return Fail(ids.status());
    tokens = std::move(ids).value();
    if (!a.title.empty()) meta.title = a.title;
  }
  if (tokens.empty()) return Fail(Status::InvalidArgument("the document has no tokens"));
  auto session = (*engine)->NewSession();
  ProgressBar bar("prefill", tokens.size());
  BuildOptions bo;
  bo.codec = *codec;
  bo.block_size = a.block_size;
  bo.chunk_size = a.chunk;
  bo.progress = [&](size_t done, size_t) { bar.Update(done); };
  auto t0 = Clock::now();
  auto art = BuildArtifact(*session, tokens, meta, *key, bo);
  bar.Finish();
  if (!art.ok()) return Fail(art.status());
  const double secs = Seconds(t0, Clock::now());
  if (Status s = artifact::WriteContainerFile(a.out, *art); !s.ok()) return Fail(s);
  const auto& m = art->manifest;
  std::cout << m.artifact_id << "\n";
  std::cerr << "published " << tokens.size() << " tokens in " << m.blocks.size() << " blocks (" << a.codec << ", "
            << m.TotalRawBytes() << " raw bytes, " << m.TotalStoredBytes() << " stored) to " << a.out << " in "
            << secs << " s (" << tokens.size() / secs << " tok/s prefill)\n";
  return 0;
}

struct VerifyArgs {
  std::string file;
  EngineFlags engine;
  bool recompute = false, json = false, time_full = false;
  uint32_t spot_check = 0;
};

// `verify --spot-check K`: K random blocks (and the last) recomputed from the
// artifact's own prefix, bit for bit (engine/spot_check.h).
int RunSpotCheck(const VerifyArgs& a, const std::shared_ptr<const Model>& model, const artifact::Manifest& m,
                 const std::vector<std::vector<uint8_t>>& blocks) {
  if (sodium_init() < 0) return Fail(Status::Internal("libsodium failed to initialise"));
  auto engine = OpenEngine(model, a.engine.kernels, a.engine.threads);
  if (!engine.ok()) return Fail(engine.status());
  const uint32_t n = static_cast<uint32_t>(m.blocks.size());
  // Drawn now, after the artifact is fixed, from the system's CSPRNG: its
  // maker cannot know which blocks will be recomputed.
  auto chosen = ChooseSpotCheckBlocks(n, a.spot_check, [](uint32_t u) { return randombytes_uniform(u); });
  auto session = (*engine)->NewSession();
  auto r = SpotCheck(*session, m, blocks, chosen);
  if (!r.ok()) return Fail(r.status());
  double full_seconds = 0;
  if (a.time_full) {
    auto s = (*engine)->NewSession();
    std::vector<int32_t> tokens(m.tokens.begin(), m.tokens.end());
    const auto t0 = Clock::now();
    if (Status st = s->Prefill(tokens, 512); !st.ok()) return Fail(st);
    full_seconds = Seconds(t0, Clock::now());
  }
  const uint32_t k = static_cast<uint32_t>(r->checked.size()) - 1;  // besides the last block
  const double work = r->tokens_total == 0 ? 0 : static_cast<double>(r->tokens_prefilled) / r->tokens_total;
  if (a.json) {
    nlohmann::json j = {{"artifact_id", m.artifact_id},
                        {"signature", "valid"},
                        {"profile", "matches"},
                        {"blocks", n},
                        {"checked_blocks", r->checked},
                        {"kv_identical", r->kv_identical},
                        {"differing_blocks", r->differing},
                        {"probe_identical", r->probe_identical},
                        {"tokens_prefilled", r->tokens_prefilled},
                        {"tokens_total", r->tokens_total},
                        {"work_fraction", work},
                        {"seconds", r->seconds},
                        {"detection_probability", {{"f1", SpotCheckDetection(n, k, 1)},
                                                   {"f2", SpotCheckDetection(n, k, 2)},
                                                   {"f4", SpotCheckDetection(n, k, 4)}}}};
    if (a.time_full) {
      j["full_prefill_seconds"] = full_seconds;
      j["time_fraction"] = full_seconds > 0 ? r->seconds / full_seconds : 0;
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << m.artifact_id << ": signature valid, profile matches the model; spot check of " << r->checked.size()
              << " of " << n << " blocks (";
    for (size_t i = 0; i < r->checked.size(); ++i) std::cout << (i ? "," : "") << r->checked[i];
    std::cout << "): KV " << (r->kv_identical ? "bit-identical" : "DIFFERS") << ", probe "
              << (r->probe_identical ? "identical" : "DIFFERS") << "\n";
    for (uint32_t b : r->differing) std::cout << "block " << b << ": recomputed KV differs\n";
    std::printf("detection probability with f inconsistent blocks: f=1 %.3f, f=2 %.3f, f=4 %.3f\n",
                SpotCheckDetection(n, k, 1), SpotCheckDetection(n, k, 2), SpotCheckDetection(n, k, 4));
    std::printf("cost: %llu of %llu tokens prefilled (%.1f%% of a full recomputation's prefill), %.3f s",
                static_cast<unsigned long long>(r->tokens_prefilled), static_cast<unsigned long long>(r->tokens_total),
                100 * work, r->seconds);
    if (a.time_full) std::printf("; a full prefill took %.3f s (%.1f%%)", full_seconds, 100 * r->seconds / full_seconds);
    std::printf("\n");
  }
  return r->ok() ? 0 : 2;
}

int RunVerify(const VerifyArgs& a) {
  const std::string& path = a.file;
  const EngineFlags& f = a.engine;
  const bool recompute = a.recompute, json = a.json;
  auto model = LoadModel(f.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto reader = artifact::ArtifactReader::OpenFile(path);  // requires a valid signature
  if (!reader.ok()) return Fail(reader.status());
  const auto& m = reader->manifest();
  if (Status s = reader->CheckProfile(ArtifactProfile(**model, m.profile.block_size)); !s.ok()) return Fail(s);
  auto blocks = reader->ReadAllBlocks();  // XXH3-128, decode, payload SHA-256
  if (!blocks.ok()) return Fail(blocks.status());
  if (a.spot_check > 0) {
    if (recompute) return Fail(Status::InvalidArgument("--spot-check and --recompute exclude each other"));
    return RunSpotCheck(a, *model, m, *blocks);
  }
  bool kv_identical = true, probe_identical = true;
  if (recompute) {
    auto engine = OpenEngine(*model, f.kernels, f.threads);
    if (!engine.ok()) return Fail(engine.status());
    auto s = (*engine)->NewSession();
    std::vector<int32_t> tokens(m.tokens.begin(), m.tokens.end());
    ProgressBar bar("recompute", tokens.size());
    if (Status st = s->Prefill(tokens, 512, [&](size_t d, size_t) { bar.Update(d); }); !st.ok()) return Fail(st);
    bar.Finish();
    for (size_t b = 0; b < m.blocks.size(); ++b) {
      auto kv = s->ExportKv(m.blocks[b].token_begin, m.blocks[b].token_end);
      if (!kv.ok()) return Fail(kv.status());
      const auto& payload = (*blocks)[b];
      if (payload.size() != kv->data.size() * 2 || std::memcmp(payload.data(), kv->data.data(), payload.size()) != 0) {
        kv_identical = false;
        std::cerr << "block " << b << ": recomputed KV differs\n";
      }
    }
    auto logits = s->logits();
    if (!logits.ok()) return Fail(logits.status());
    probe_identical = LogitsProbe(*logits) == m.probe_logits_sha256;
  }
  const bool ok = kv_identical && probe_identical;
  if (json) {
    nlohmann::json j = {{"artifact_id", m.artifact_id}, {"signature", "valid"}, {"profile", "matches"},
                        {"blocks_verified", m.blocks.size()}, {"recomputed", recompute}};
    if (recompute) {
      j["kv_identical"] = kv_identical;
      j["probe_identical"] = probe_identical;
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << m.artifact_id << ": signature valid, profile matches the model, " << m.blocks.size()
              << " blocks verified (XXH3-128 + SHA-256)";
    if (recompute) {
      std::cout << "; recomputed KV " << (kv_identical ? "bit-identical" : "DIFFERS") << ", probe "
                << (probe_identical ? "identical" : "DIFFERS");
    }
    std::cout << "\n";
  }
  return ok ? 0 : 2;
}

struct AskArgs {
  EngineFlags engine;
  std::string artifact, data, prompt;
  uint32_t block_size = artifact::kDefaultBlockSize;
  size_t n = 16;
  bool check = false, json = false;
};

// What the reuse path imported into the session.
struct Reused {
  std::string artifact_id;  // the artifact (or the source of the shared blocks)
  std::vector<int32_t> tokens;
  std::string how;          // "artifact file", "artifact", "shared blocks", "nothing cached"
};

// --data: the longest cached prefix of the prompt's tokens, from the store.
StatusOr<Reused> ImportFromStore(const AskArgs& a, Session& s, const std::vector<int32_t>& prompt) {
  KVMART_ASSIGN_OR_RETURN(auto st, OpenStore(a.data));
  const Digest256 pd = artifact::ProfileDigest(ArtifactProfile(s.engine().model(), a.block_size));
  std::vector<uint32_t> ids(prompt.begin(), prompt.end());
  store::PrefixMatch m = st->Lookup(pd, ids);
  Reused r;
  r.how = m.matched_tokens == 0 ? "nothing cached" : m.artifact_id.empty() ? "shared blocks" : "artifact";
  // Logits come only from a prefill, so at least one prompt token must be left
  // to run: a full match gives back its last block.
  if (m.matched_tokens == ids.size() && !m.block_hashes.empty()) {
    m.block_hashes.pop_back();
    m.matched_tokens = m.block_hashes.size() * a.block_size;
    r.how = "shared blocks";
  }
  if (m.matched_tokens == 0) return r;
  r.artifact_id = m.artifact_id.empty() ? m.source_artifact_id : m.artifact_id;
  KVMART_RETURN_IF_ERROR(st->LoadPrefix(m, [&](const store::LoadedBlock& b) {
    return ImportBlockPayload(s, b.token_begin,
                              std::span<const uint32_t>(ids.data() + b.token_begin, b.token_end - b.token_begin),
                              *b.payload);
  }));
  r.tokens.assign(prompt.begin(), prompt.begin() + static_cast<ptrdiff_t>(m.matched_tokens));
  return r;
}

int RunAsk(const AskArgs& a) {
  if (a.artifact.empty() == a.data.empty()) return Fail(Status::InvalidArgument("give either --artifact or --data"));
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, a.engine.kernels, a.engine.threads);
  if (!engine.ok()) return Fail(engine.status());
  auto tok = ModelTokenizer(a.engine.model_dir);
  if (!tok.ok()) return Fail(tok.status());
  auto encoded = (*tok)->Encode(a.prompt);
  if (!encoded.ok()) return Fail(encoded.status());
  if (encoded->empty()) return Fail(Status::InvalidArgument("empty prompt"));

  // Reuse path: import cached KV, prefill only what follows it.
  auto t0 = Clock::now();
  auto s = (*engine)->NewSession();
  Reused reused;
  std::vector<int32_t> question;
  if (!a.artifact.empty()) {
    // The prompt follows the artifact's document.
    auto reader = artifact::ArtifactReader::OpenFile(a.artifact);
    if (!reader.ok()) return Fail(reader.status());
    if (Status st = ImportArtifact(*s, *reader); !st.ok()) return Fail(st);
    reused.artifact_id = reader->manifest().artifact_id;
    reused.tokens.assign(reader->manifest().tokens.begin(), reader->manifest().tokens.end());
    reused.how = "artifact file";
    question = std::move(encoded).value();
  } else {
    // The prompt is the whole text; the store finds how much of it is cached.
    auto r = ImportFromStore(a, *s, *encoded);
    if (!r.ok()) return Fail(r.status());
    reused = std::move(r).value();
    question.assign(encoded->begin() + static_cast<ptrdiff_t>(reused.tokens.size()), encoded->end());
  }
  auto t_loaded = Clock::now();
  if (Status st = s->Prefill(question); !st.ok()) return Fail(st);
  std::vector<int32_t> out;
  std::vector<float> logits;
  for (size_t i = 0; i < a.n; ++i) {
    auto l = s->logits();
    if (!l.ok()) return Fail(l.status());
    if (a.check) logits.insert(logits.end(), l->begin(), l->end());
    auto t = s->DecodeStep();
    if (!t.ok()) return Fail(t.status());
    out.push_back(*t);
  }
  auto t1 = Clock::now();
  const double reuse_s = Seconds(t0, t1), load_s = Seconds(t0, t_loaded);
  nlohmann::json j = {{"artifact_id", reused.artifact_id},
                      {"reused_from", reused.how},
                      {"tokens_reused", reused.tokens.size()},
                      {"tokens_prefilled", question.size()},
                      {"tokens", out},
                      {"text", (*tok)->Decode(out).value_or("")},
                      {"reuse_seconds", reuse_s},
                      {"load_seconds", load_s}};
  bool identical = true;
  if (a.check) {
    // Reference path: prefill document + question from scratch, same decode.
    auto t2 = Clock::now();
    auto r = (*engine)->NewSession();
    std::vector<int32_t> all = reused.tokens;
    all.insert(all.end(), question.begin(), question.end());
    if (Status st = r->Prefill(all, 512); !st.ok()) return Fail(st);
    std::vector<int32_t> ref_out;
    std::vector<float> ref_logits;
    for (size_t i = 0; i < a.n; ++i) {
      auto l = r->logits();
      if (!l.ok()) return Fail(l.status());
      ref_logits.insert(ref_logits.end(), l->begin(), l->end());
      auto t = r->DecodeStep();
      if (!t.ok()) return Fail(t.status());
      ref_out.push_back(*t);
    }
    const double scratch_s = Seconds(t2, Clock::now());
    identical = ref_out == out && ref_logits.size() == logits.size() &&
                std::memcmp(ref_logits.data(), logits.data(), logits.size() * 4) == 0;
    j["check"] = {{"identical_tokens", ref_out == out},
                  {"identical_logits", identical},
                  {"scratch_seconds", scratch_s},
                  {"speedup", scratch_s / reuse_s}};
  }
  if (a.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << j["text"].get<std::string>() << "\n";
    std::cerr << "reused " << reused.tokens.size() << " tokens (" << reused.how
              << (reused.artifact_id.empty() ? "" : " of " + reused.artifact_id) << ", load " << load_s
              << " s), prefilled " << question.size() << ", total " << reuse_s << " s\n";
    if (a.check) {
      std::cerr << "check: from-scratch prefill gives " << (identical ? "IDENTICAL" : "DIFFERENT")
                << " tokens and logits; scratch " << j["check"]["scratch_seconds"].get<double>() << " s, "
                << j["check"]["speedup"].get<double>() << "x slower than reuse\n";
    }
  }
  return identical ? 0 : 2;
}

}  // namespace

void RegisterPublishCommands(CLI::App& app, int* exit_code) {
  auto pub = std::make_shared<PublishArgs>();
  auto* cp = app.add_subcommand("publish", "prefill a document and write a signed KV artifact (.kva)");
  pub->engine.Add(cp);
  auto* doc = cp->add_option("--doc", pub->doc, "document text file (tokenized with the model's tokenizer)");
  auto* toks = cp->add_option("--tokens", pub->tokens, "token ids, comma-separated");
  doc->excludes(toks);
  cp->add_option("--out", pub->out, "output .kva file")->required();
  cp->add_option("--codec", pub->codec, "raw | lossless");
  cp->add_option("--key", pub->key, "publisher key file (default ~/.local/share/kvmart/publisher.key, created)");
  cp->add_option("--title", pub->title, "title recorded in the signed manifest (shown by inspect and the catalog)");
  cp->add_option("--block-size", pub->block_size, "tokens per block");
  cp->add_option("--chunk", pub->chunk, "prefill chunk size");
  cp->callback([pub, exit_code] {
    if (pub->doc.empty() && pub->tokens.empty()) {
      *exit_code = Fail(Status::InvalidArgument("publish needs --doc FILE or --tokens"));
      return;
    }
    *exit_code = RunPublish(*pub);
  });

  auto ver = std::make_shared<VerifyArgs>();
  auto* cv = app.add_subcommand("verify", "check an artifact's signature, checksums and profile against a model");
  cv->add_option("file", ver->file, ".kva file")->required();
  ver->engine.Add(cv);
  cv->add_flag("--recompute", ver->recompute, "prefill the tokens again and require bit-identical KV and probe");
  cv->add_option("--spot-check", ver->spot_check,
                 "recompute K randomly chosen blocks (and the last, for the probe) from the artifact's own prefix "
                 "and require every bit; prints the detection probability and the cost");
  cv->add_flag("--time-full", ver->time_full, "with --spot-check: also time a full prefill, for the cost fraction");
  cv->add_flag("--json", ver->json, "print the verification result as JSON");
  cv->callback([ver, exit_code] { *exit_code = RunVerify(*ver); });

  auto ask = std::make_shared<AskArgs>();
  auto* ca = app.add_subcommand("ask", "continue from an artifact: import its KV, prefill only the prompt, decode");
  ask->engine.Add(ca);
  auto* art = ca->add_option("--artifact", ask->artifact, ".kva file; the prompt is what follows its document");
  auto* data = ca->add_option("--data", ask->data,
                              "data directory (its store, DIR/store): the prompt is the whole text, its longest cached prefix is reused");
  art->excludes(data);
  ca->add_option("--block-size", ask->block_size, "block size of the profile to look up (with --data)");
  ca->add_option("--prompt", ask->prompt, "text (after the artifact's document, or the whole text with --data)")
      ->required();
  ca->add_option("-n", ask->n, "tokens to generate");
  ca->add_flag("--check", ask->check, "also prefill from scratch and compare tokens, logits and time");
  ca->add_flag("--json", ask->json, "print tokens, text, timings (and the --check result) as JSON");
  ca->callback([ask, exit_code] { *exit_code = RunAsk(*ask); });
}

}  // namespace kvmart::cli
