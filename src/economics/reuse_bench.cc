#include "economics/reuse_bench.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "artifact/container.h"
#include "artifact/signing.h"
#include "economics/tiers.h"
#include "engine/artifact_io.h"
#include "engine/random_tokens.h"

namespace kvmart::economics {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Process CPU time (all threads): with a shared machine, wall time includes
// waiting for the cores; CPU time shows the work done.
double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}


// Greedy tokens and the logits before each of them.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
};

Status Decode(Session& s, uint32_t k, Trace* out) {
  for (uint32_t i = 0; i < k; ++i) {
    KVMART_ASSIGN_OR_RETURN(auto l, s.logits());
    out->logits.insert(out->logits.end(), l.begin(), l.end());
    KVMART_ASSIGN_OR_RETURN(int32_t t, s.DecodeStep());
    out->tokens.push_back(t);
  }
  return Status::Ok();
}

bool SameLogits(const Trace& a, const Trace& b) {
  return a.logits.size() == b.logits.size() &&
         std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)) == 0;
}

// A signed artifact of the first doc.size() tokens of an already prefilled session.
StatusOr<artifact::Artifact> BuildFromSession(const Session& s, std::span<const int32_t> doc, artifact::Codec codec,
                                              const artifact::SigningKey& key) {
  KVMART_ASSIGN_OR_RETURN(auto logits, s.logits());
  std::vector<uint32_t> ids(doc.begin(), doc.end());
  KVMART_ASSIGN_OR_RETURN(auto writer,
                          artifact::ArtifactWriter::Create(ArtifactProfile(s.engine().model()), std::move(ids), codec));
  for (size_t b = 0; b < writer.num_blocks(); ++b) {
    KVMART_ASSIGN_OR_RETURN(KvExport kv, s.ExportKv(writer.BlockTokenBegin(b), writer.BlockTokenEnd(b)));
    std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(kv.data.data()), kv.data.size() * 2);
    KVMART_RETURN_IF_ERROR(writer.AddBlock(payload));
  }
  artifact::ArtifactMetadata meta;
  meta.title = "kvmart bench reuse";
  return std::move(writer).Finish(LogitsProbe(logits), meta, key);
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

std::string MachineDescription() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model, flags;
  while (std::getline(f, line)) {
    if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = line + " ";
  }
  std::string simd = flags.find(" avx512f ") != std::string::npos ? "AVX-512"
                     : flags.find(" avx2 ") != std::string::npos ? "AVX2"
                                                                  : "no AVX2";
  return (model.empty() ? "unknown CPU" : model) + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " logical cores, " + simd;
}

std::string NowUtc() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json StatJson(const Stat3& s) { return {{"median", s.median}, {"min", s.min}, {"max", s.max}}; }

json PathJson(const ReusePath& p) {
  return {{"load_s", StatJson(p.load_s)},         {"question_s", StatJson(p.question_s)},
          {"total_s", StatJson(p.total_s)},       {"cpu_s", StatJson(p.cpu_s)},
          {"decode_s", StatJson(p.decode_s)},     {"tokens_identical", p.tokens_identical},
          {"logits_identical", p.logits_identical}};
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

struct PathRun {
  double load = 0, question = 0, cpu = 0, decode = 0;
};

}  // namespace

Stat3 Stat3::Of(std::vector<double> v) {
  Stat3 s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

bool ReuseBenchResult::all_exact() const {
  return !lengths.empty() && std::all_of(lengths.begin(), lengths.end(), [](const auto& l) { return l.exact; });
}

ModelShape ShapeOf(const Model& model, const std::string& name) {
  const ModelConfig& c = model.config();
  ModelShape m;
  m.name = name;
  m.matmul_params_per_token = double(c.matmul_params_per_token());
  m.lm_head_params = double(c.hidden_size) * double(c.vocab_size);
  m.num_layers = c.num_hidden_layers;
  m.num_attention_heads = c.num_attention_heads;
  m.head_dim = c.head_dim;
  m.max_context = c.max_position_embeddings;
  m.kv_bytes_per_token = c.kv_bytes_per_token();
  return m;
}

StatusOr<ReuseBenchResult> RunReuseBench(Engine& engine, const ReuseBenchOptions& o, LlamaCppPeer* peer) {
  if (o.lengths.empty()) return Status::InvalidArgument("no lengths");
  if (o.question_tokens == 0) return Status::InvalidArgument("the question needs at least one token");
  if (o.repeat == 0) return Status::InvalidArgument("repeat must be at least 1");
  const ModelConfig& c = engine.model().config();
  for (uint64_t L : o.lengths) {
    if (L == 0 || L + o.question_tokens + o.decode_tokens > engine.max_context()) {
      return Status::InvalidArgument("length " + std::to_string(L) + " (+ question + decode) does not fit the context of " +
                                     std::to_string(engine.max_context()));
    }
  }
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  if (ec) return Status::IOError(o.work_dir + ": " + ec.message());
  KVMART_ASSIGN_OR_RETURN(auto key, artifact::SigningKey::Generate());

  ReuseBenchResult r;
  r.options = o;
  r.shape = ShapeOf(engine.model(), o.model_name);
  r.kernels = KernelPathName(engine.ops().path);
  r.threads = engine.threads();
  r.machine = MachineDescription();
  r.load_average = ReadFirstLine("/proc/loadavg");
  r.started_at = NowUtc();
  KVMART_ASSIGN_OR_RETURN(auto tiers, OpenTiers(o.tiers, o.work_dir));
  r.tier_source = tiers->Description();

  const auto question = RandomTextTokens(o.question_tokens, o.seed * 2 + 2, c.vocab_size);
  for (uint64_t L : o.lengths) {
    LengthResult lr;
    lr.doc_tokens = L;
    lr.question_tokens = o.question_tokens;
    lr.decode_tokens = o.decode_tokens;
    const auto doc = RandomTextTokens(L, o.seed * 2 + 1, c.vocab_size);
    std::vector<int32_t> all = doc;
    all.insert(all.end(), question.begin(), question.end());

    std::vector<double> pub_prefill, pub_total, sc_wall, sc_cpu, sc_decode, peer_sc, peer_reuse, peer_load;
    double build_s = 0;
    Trace ref;
    bool exact = true;
    // Path 0 is the resident hit; 1..3 the tiers, in TierKind order.
    constexpr int kPaths = 4;
    std::vector<PathRun> runs[kPaths];
    ReusePath* paths[kPaths] = {&lr.resident, &lr.memory, &lr.disk_raw, &lr.disk_lossless};
    // The resident copy, made once per length like the server's first load of
    // an artifact: loaded from the memory tier, then frozen as a shared prefix.
    std::shared_ptr<const KvPrefix> resident;
    for (uint32_t rep = 0; rep < o.repeat; ++rep) {
      // Publish: prefill the document (and, once, build and store the artifacts).
      std::unique_ptr<Session> pub;
      double doc_wall = 0, doc_cpu = 0;
      if (rep == 0 || o.split_scratch) {
        pub = engine.NewSession();
        log("L=" + std::to_string(L) + " rep " + std::to_string(rep + 1) + ": publish prefill");
        const double cpu0 = CpuSeconds();
        const auto t0 = Clock::now();
        KVMART_RETURN_IF_ERROR(pub->Prefill(doc, o.chunk));
        const auto t1 = Clock::now();
        doc_wall = Seconds(t0, t1);
        doc_cpu = CpuSeconds() - cpu0;
        pub_prefill.push_back(doc_wall);
        if (rep == 0) {
          const auto b0 = Clock::now();
          KVMART_ASSIGN_OR_RETURN(auto raw, BuildFromSession(*pub, doc, artifact::Codec::kRaw, key));
          build_s = Seconds(b0, Clock::now());
          KVMART_ASSIGN_OR_RETURN(auto lossless, BuildFromSession(*pub, doc, artifact::Codec::kLossless, key));
          lr.raw_bytes = raw.manifest.TotalStoredBytes();
          lr.lossless_bytes = lossless.manifest.TotalStoredBytes();
          KVMART_RETURN_IF_ERROR(tiers->Publish(raw, lossless, &lr.raw_file_bytes, &lr.lossless_file_bytes));
          KVMART_RETURN_IF_ERROR(tiers->Prepare(TierKind::kMemory));
          auto first = engine.NewSession();
          KVMART_RETURN_IF_ERROR(tiers->Load(TierKind::kMemory, *first));
          KVMART_ASSIGN_OR_RETURN(resident, first->ShareAsPrefix());
          // `first` goes away here, as the first buyer's session does when its
          // request ends; the prefix keeps the shared pages.
        }
        pub_total.push_back(doc_wall + build_s);
      }
      // Scratch: the document and the question from an empty context.
      {
        log("L=" + std::to_string(L) + " rep " + std::to_string(rep + 1) + ": scratch prefill");
        std::unique_ptr<Session> s;
        double wall = 0, cpu = 0;
        if (o.split_scratch) {
          s = std::move(pub);
          const double cpu0 = CpuSeconds();
          const auto t0 = Clock::now();
          KVMART_RETURN_IF_ERROR(s->Prefill(question, o.chunk));
          wall = doc_wall + Seconds(t0, Clock::now());
          cpu = doc_cpu + CpuSeconds() - cpu0;
        } else {
          pub.reset();
          s = engine.NewSession();
          const double cpu0 = CpuSeconds();
          const auto t0 = Clock::now();
          KVMART_RETURN_IF_ERROR(s->Prefill(all, o.chunk));
          wall = Seconds(t0, Clock::now());
          cpu = CpuSeconds() - cpu0;
        }
        sc_wall.push_back(wall);
        sc_cpu.push_back(cpu);
        lr.scratch_matmul_flops = s->stats().matmul_flops;
        lr.scratch_attention_flops = s->stats().attention_flops;
        Trace t;
        const auto d0 = Clock::now();
        KVMART_RETURN_IF_ERROR(Decode(*s, o.decode_tokens, &t));
        sc_decode.push_back(Seconds(d0, Clock::now()));
        if (rep == 0) {
          ref = std::move(t);
        } else if (t.tokens != ref.tokens || !SameLogits(t, ref)) {
          exact = false;  // the scratch path itself is not deterministic
        }
      }
      // llama.cpp on the same ids: scratch, then its saved state reloaded.
      if (peer != nullptr) {
        log("L=" + std::to_string(L) + " rep " + std::to_string(rep + 1) + ": llama.cpp scratch and reuse");
        KVMART_ASSIGN_OR_RETURN(auto ps, peer->PrefillAndDecode(all, 0));
        KVMART_ASSIGN_OR_RETURN(auto pr, peer->LoadAndContinue(doc, question));
        peer_sc.push_back(ps.prefill_s);
        peer_reuse.push_back(pr.total_s);
        peer_load.push_back(pr.load_s);
        lr.peer_state_bytes = pr.state_bytes;
        lr.has_peer = true;
      }
      // Reuse: the resident hit, then each tier.
      for (int p = 0; p < kPaths; ++p) {
        const bool hit = p == 0;
        const TierKind kind = hit ? TierKind::kMemory : static_cast<TierKind>(p - 1);  // read only when !hit
        log("L=" + std::to_string(L) + " rep " + std::to_string(rep + 1) + ": reuse from " +
            (hit ? "resident pages" : TierKindName(kind)));
        if (!hit) KVMART_RETURN_IF_ERROR(tiers->Prepare(kind));
        auto s = engine.NewSession();
        PathRun run;
        const double cpu0 = CpuSeconds();
        const auto t0 = Clock::now();
        KVMART_RETURN_IF_ERROR(hit ? s->Attach(*resident) : tiers->Load(kind, *s));
        const auto t1 = Clock::now();
        KVMART_RETURN_IF_ERROR(s->Prefill(question, o.chunk));
        const auto t2 = Clock::now();
        run.cpu = CpuSeconds() - cpu0;
        run.load = Seconds(t0, t1);
        run.question = Seconds(t1, t2);
        lr.reuse_matmul_flops = s->stats().matmul_flops;
        lr.reuse_attention_flops = s->stats().attention_flops;
        Trace t;
        KVMART_RETURN_IF_ERROR(Decode(*s, o.decode_tokens, &t));
        run.decode = Seconds(t2, Clock::now());
        if (t.tokens != ref.tokens) paths[p]->tokens_identical = false;
        if (!SameLogits(t, ref)) paths[p]->logits_identical = false;
        runs[p].push_back(run);
      }
    }
    resident.reset();  // its pages go back to the pool
    for (int p = 0; p < kPaths; ++p) {
      std::vector<double> load, q, total, cpu, dec;
      for (const auto& run : runs[p]) {
        load.push_back(run.load);
        q.push_back(run.question);
        total.push_back(run.load + run.question);
        cpu.push_back(run.cpu);
        dec.push_back(run.decode);
      }
      paths[p]->load_s = Stat3::Of(load);
      paths[p]->question_s = Stat3::Of(q);
      paths[p]->total_s = Stat3::Of(total);
      paths[p]->cpu_s = Stat3::Of(cpu);
      paths[p]->decode_s = Stat3::Of(dec);
      exact = exact && paths[p]->tokens_identical && paths[p]->logits_identical;
    }
    lr.exact = exact;
    lr.scratch_wall_s = Stat3::Of(sc_wall);
    lr.scratch_cpu_s = Stat3::Of(sc_cpu);
    lr.scratch_decode_s = Stat3::Of(sc_decode);
    lr.publish_prefill_s = Stat3::Of(pub_prefill);
    lr.publish_total_s = Stat3::Of(pub_total);
    lr.greedy_tokens = ref.tokens;
    lr.peer_scratch_s = Stat3::Of(peer_sc);
    lr.peer_reuse_s = Stat3::Of(peer_reuse);
    lr.peer_load_s = Stat3::Of(peer_load);
    tiers->Forget();
    log("L=" + std::to_string(L) + ": scratch " + std::to_string(lr.scratch_wall_s.median) + " s, reuse (resident) " +
        std::to_string(lr.resident.total_s.median) + " s, (memory) " + std::to_string(lr.memory.total_s.median) +
        " s, " + (lr.exact ? "bit-exact" : "NOT BIT-EXACT"));
    r.lengths.push_back(std::move(lr));
  }
  return r;
}

std::vector<LengthFigures> FiguresOf(const ReuseBenchResult& r) {
  std::vector<LengthFigures> out;
  for (const auto& l : r.lengths) {
    LengthFigures f;
    f.doc_tokens = l.doc_tokens;
    f.question_tokens = l.question_tokens;
    f.exact = l.exact;
    f.scratch_s = l.scratch_wall_s.median;
    f.publish_s = l.publish_total_s.median;
    f.reuse_resident_s = l.resident.total_s.median;
    f.reuse_memory_s = l.memory.total_s.median;
    f.reuse_disk_raw_s = l.disk_raw.total_s.median;
    f.reuse_disk_lossless_s = l.disk_lossless.total_s.median;
    f.raw_bytes = l.raw_bytes;
    f.lossless_bytes = l.lossless_bytes;
    f.scratch_flops = l.scratch_matmul_flops + l.scratch_attention_flops;
    out.push_back(f);
  }
  return out;
}

std::string ReuseJson(const ReuseBenchResult& r) {
  const auto& o = r.options;
  const auto& m = r.shape;
  json j;
  j["kvmart_bench"] = "reuse";
  j["version"] = 1;
  j["started_at"] = r.started_at;
  j["machine"] = {{"cpu", r.machine}, {"load_average_at_start", r.load_average}, {"kernels", r.kernels},
                  {"threads", r.threads}};
  j["tiers"] = r.tier_source;
  j["model"] = {{"name", m.name},
                {"matmul_params_per_token", m.matmul_params_per_token},
                {"lm_head_params", m.lm_head_params},
                {"num_layers", m.num_layers},
                {"num_attention_heads", m.num_attention_heads},
                {"head_dim", m.head_dim},
                {"max_context", m.max_context},
                {"kv_bytes_per_token", m.kv_bytes_per_token}};
  j["settings"] = {{"lengths", o.lengths},         {"question_tokens", o.question_tokens},
                   {"decode_tokens", o.decode_tokens}, {"repeat", o.repeat},
                   {"chunk", o.chunk}, {"tiers", o.tiers},             {"split_scratch", o.split_scratch},
                   {"seed", o.seed}};
  j["all_exact"] = r.all_exact();
  json rows = json::array();
  for (const auto& l : r.lengths) {
    const double flops = l.scratch_matmul_flops + l.scratch_attention_flops;
    const double sc = l.scratch_wall_s.median;
    rows.push_back(
        {{"doc_tokens", l.doc_tokens},
         {"question_tokens", l.question_tokens},
         {"decode_tokens", l.decode_tokens},
         {"exact", l.exact},
         {"scratch",
          {{"wall_s", StatJson(l.scratch_wall_s)},
           {"cpu_s", StatJson(l.scratch_cpu_s)},
           {"decode_s", StatJson(l.scratch_decode_s)},
           {"flops", flops},
           {"matmul_flops", l.scratch_matmul_flops},
           {"attention_flops", l.scratch_attention_flops},
           {"attention_share", flops > 0 ? l.scratch_attention_flops / flops : 0},
           {"gflops_per_s", sc > 0 ? flops / sc / 1e9 : 0}}},
         {"publish", {{"prefill_s", StatJson(l.publish_prefill_s)}, {"total_s", StatJson(l.publish_total_s)}}},
         {"reuse",
          {{"resident", PathJson(l.resident)},
           {"memory", PathJson(l.memory)},
           {"disk_raw", PathJson(l.disk_raw)},
           {"disk_lossless", PathJson(l.disk_lossless)},
           {"flops", l.reuse_matmul_flops + l.reuse_attention_flops}}},
         {"ratio",
          {{"resident", Ratio(sc, l.resident.total_s.median)},
           {"memory", Ratio(sc, l.memory.total_s.median)},
           {"disk_raw", Ratio(sc, l.disk_raw.total_s.median)},
           {"disk_lossless", Ratio(sc, l.disk_lossless.total_s.median)},
           {"flops", Ratio(flops, l.reuse_matmul_flops + l.reuse_attention_flops)}}},
         {"sizes",
          {{"raw_bytes", l.raw_bytes},
           {"lossless_bytes", l.lossless_bytes},
           {"raw_file_bytes", l.raw_file_bytes},
           {"lossless_file_bytes", l.lossless_file_bytes},
           {"raw_bytes_per_token", double(l.raw_bytes) / double(l.doc_tokens)},
           {"lossless_bytes_per_token", double(l.lossless_bytes) / double(l.doc_tokens)}}},
         {"greedy_tokens", l.greedy_tokens}});
    if (l.has_peer) {
      rows.back()["llamacpp"] = {{"scratch_s", StatJson(l.peer_scratch_s)},
                                 {"reuse_s", StatJson(l.peer_reuse_s)},
                                 {"load_s", StatJson(l.peer_load_s)},
                                 {"state_bytes", l.peer_state_bytes},
                                 {"ratio", Ratio(l.peer_scratch_s.median, l.peer_reuse_s.median)}};
    }
  }
  j["lengths"] = rows;
  return j.dump(2);
}

std::string ReuseCsv(const ReuseBenchResult& r) {
  std::ostringstream o;
  o.precision(9);
  o << "doc_tokens,question_tokens,decode_tokens,exact,scratch_s,scratch_min,scratch_max,scratch_cpu_s,"
       "resident_s,resident_min,resident_max,memory_s,memory_min,memory_max,disk_raw_s,disk_raw_min,disk_raw_max,"
       "disk_lossless_s,disk_lossless_min,disk_lossless_max,load_resident_s,load_memory_s,load_disk_raw_s,"
       "load_disk_lossless_s,question_s,ratio_resident,ratio_memory,ratio_disk_raw,ratio_disk_lossless,"
       "decode_scratch_s,decode_reuse_s,publish_s,raw_bytes,lossless_bytes,"
       "raw_bytes_per_token,lossless_bytes_per_token,scratch_gflop,attention_share,llamacpp_scratch_s,"
       "llamacpp_reuse_s,ratio_llamacpp\n";
  for (const auto& l : r.lengths) {
    const double flops = l.scratch_matmul_flops + l.scratch_attention_flops;
    const double sc = l.scratch_wall_s.median;
    auto s3 = [&](const Stat3& s) {
      o << s.median << "," << s.min << "," << s.max << ",";
    };
    o << l.doc_tokens << "," << l.question_tokens << "," << l.decode_tokens << "," << (l.exact ? 1 : 0) << ",";
    s3(l.scratch_wall_s);
    o << l.scratch_cpu_s.median << ",";
    s3(l.resident.total_s);
    s3(l.memory.total_s);
    s3(l.disk_raw.total_s);
    s3(l.disk_lossless.total_s);
    o << l.resident.load_s.median << "," << l.memory.load_s.median << "," << l.disk_raw.load_s.median << ","
      << l.disk_lossless.load_s.median << "," << l.memory.question_s.median << ","
      << Ratio(sc, l.resident.total_s.median) << "," << Ratio(sc, l.memory.total_s.median) << ","
      << Ratio(sc, l.disk_raw.total_s.median) << "," << Ratio(sc, l.disk_lossless.total_s.median) << ","
      << l.scratch_decode_s.median << "," << l.memory.decode_s.median << "," << l.publish_total_s.median << ","
      << l.raw_bytes << "," << l.lossless_bytes << "," << double(l.raw_bytes) / double(l.doc_tokens) << ","
      << double(l.lossless_bytes) / double(l.doc_tokens) << "," << flops / 1e9 << ","
      << (flops > 0 ? l.scratch_attention_flops / flops : 0) << ",";
    if (l.has_peer) {
      o << l.peer_scratch_s.median << "," << l.peer_reuse_s.median << ","
        << Ratio(l.peer_scratch_s.median, l.peer_reuse_s.median) << "\n";
    } else {
      o << "NaN,NaN,NaN\n";  // gnuplot skips NaN points
    }
  }
  return o.str();
}

std::string ReuseTable(const ReuseBenchResult& r) {
  std::ostringstream o;
  const auto& opt = r.options;
  o << "kvmart bench reuse — model " << r.shape.name << ", " << r.kernels << " kernels, " << r.threads
    << " threads\nmachine: " << r.machine << " (load average at start " << r.load_average << ")\n"
    << "tiers: " << r.tier_source << "\nquestion " << opt.question_tokens << " tokens, decode "
    << opt.decode_tokens << " greedy tokens, median of " << opt.repeat << " (min–max)"
    << (opt.split_scratch ? ", scratch = prefill(doc) + prefill(question) in one session" : "") << "\n\n";
  auto t = [](const Stat3& s) {
    char b[64];
    if (s.min == s.max) {
      std::snprintf(b, sizeof b, "%.3g", s.median);
    } else {
      std::snprintf(b, sizeof b, "%.3g (%.3g–%.3g)", s.median, s.min, s.max);
    }
    return std::string(b);
  };
  char line[768];
  std::snprintf(line, sizeof line,
                "%6s | %-26s | %-26s | %-26s | %-26s | %-26s | %7s %7s %7s %7s | %5s | %9s %9s | %8s %8s\n", "L",
                "scratch s", "reuse resident s", "reuse memory s", "reuse disk raw s", "reuse disk lossless s",
                "x res", "x mem", "x raw", "x lsl", "exact", "raw MB", "lsl MB", "raw B/t", "lsl B/t");
  o << line;
  for (const auto& l : r.lengths) {
    const double sc = l.scratch_wall_s.median;
    std::snprintf(line, sizeof line,
                  "%6llu | %-26s | %-26s | %-26s | %-26s | %-26s | %6.1fx %6.1fx %6.1fx %6.1fx | %5s | %9.2f %9.2f | "
                  "%8.0f %8.0f\n",
                  static_cast<unsigned long long>(l.doc_tokens), t(l.scratch_wall_s).c_str(),
                  t(l.resident.total_s).c_str(), t(l.memory.total_s).c_str(), t(l.disk_raw.total_s).c_str(),
                  t(l.disk_lossless.total_s).c_str(), Ratio(sc, l.resident.total_s.median),
                  Ratio(sc, l.memory.total_s.median), Ratio(sc, l.disk_raw.total_s.median),
                  Ratio(sc, l.disk_lossless.total_s.median), l.exact ? "true" : "FALSE", l.raw_bytes / 1e6,
                  l.lossless_bytes / 1e6, double(l.raw_bytes) / double(l.doc_tokens),
                  double(l.lossless_bytes) / double(l.doc_tokens));
    o << line;
  }
  o << "\nreuse = the L-token KV into a new session + prefill of the question; resident = Attach to the artifact's "
       "pages already in the engine (the provider's hit), the others = load of the artifact from that tier; "
       "x = scratch / reuse (wall).\n";
  bool peer = false;
  for (const auto& l : r.lengths) peer = peer || l.has_peer;
  if (peer) {
    o << "\nllama.cpp on the same weights and token ids (its saved sequence state loaded into a fresh context + the "
         "question):\n";
    std::snprintf(line, sizeof line, "%6s | %-26s | %-26s | %-12s | %7s | %12s %12s\n", "L", "llama.cpp scratch s",
                  "llama.cpp reuse s", "of it load s", "x", "kvmart x res", "kvmart x mem");
    o << line;
    for (const auto& l : r.lengths) {
      if (!l.has_peer) continue;
      std::snprintf(line, sizeof line, "%6llu | %-26s | %-26s | %-12s | %6.1fx | %11.1fx %11.1fx\n",
                    static_cast<unsigned long long>(l.doc_tokens), t(l.peer_scratch_s).c_str(),
                    t(l.peer_reuse_s).c_str(), t(l.peer_load_s).c_str(),
                    Ratio(l.peer_scratch_s.median, l.peer_reuse_s.median),
                    Ratio(l.scratch_wall_s.median, l.resident.total_s.median),
                    Ratio(l.scratch_wall_s.median, l.memory.total_s.median));
      o << line;
    }
  }
  if (!r.all_exact()) o << "FAILURE: a reuse path was not bit-exact; its figures are not savings.\n";
  return o.str();
}

}  // namespace kvmart::economics
