// Measured economics: `kvmart bench reuse` and `kvmart economics` (issue 8,
// docs/ECONOMICS.md).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "economics/cost_model.h"
#include "economics/reuse_bench.h"
#include "model/gguf_export.h"
#include "peer/llamacpp_peer.h"

namespace kvmart::cli {
namespace {

namespace fs = std::filesystem;

StatusOr<std::string> Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IOError(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

StatusOr<economics::Prices> LoadPrices(const std::string& path) {
  if (path.empty()) return economics::Prices{};
  KVMART_ASSIGN_OR_RETURN(std::string text, Slurp(path));
  auto p = economics::ParsePricesJson(text);
  if (!p.ok()) return p.status().WithContext(path);
  return p;
}

StatusOr<std::vector<uint64_t>> ParseLengths(const std::string& text) {
  KVMART_ASSIGN_OR_RETURN(auto ids, ParseTokenList(text));
  std::vector<uint64_t> out;
  for (int32_t v : ids) {
    if (v <= 0) return Status::InvalidArgument("lengths must be positive");
    out.push_back(uint64_t(v));
  }
  return out;
}

struct BenchArgs {
  EngineFlags engine;
  std::string lengths = "255,512,1024,2048,3774,8192";
  uint32_t question = 32, decode = 24, repeat = 1;
  size_t chunk = 512;
  bool split_scratch = false, no_plots = false, quiet = false, peer = false;
  uint64_t seed = 1;
  std::string out = "bench-reuse", prices, name, tiers = "store";
};

int RunBenchReuse(const BenchArgs& a) {
  auto lengths = ParseLengths(a.lengths);
  if (!lengths.ok()) return Fail(lengths.status());
  auto prices = LoadPrices(a.prices);
  if (!prices.ok()) return Fail(prices.status());
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, a.engine.kernels, a.engine.threads);
  if (!engine.ok()) return Fail(engine.status());
  economics::ReuseBenchOptions o;
  o.lengths = *lengths;
  o.question_tokens = a.question;
  o.decode_tokens = a.decode;
  o.repeat = a.repeat;
  o.chunk = a.chunk;
  o.split_scratch = a.split_scratch;
  o.seed = a.seed;
  o.tiers = a.tiers;
  o.work_dir = (fs::path(a.out) / "work").string();
  o.model_name = a.name.empty() ? fs::path(a.engine.model_dir).lexically_normal().filename().string() : a.name;
  if (o.model_name.empty()) o.model_name = fs::path(a.engine.model_dir).parent_path().filename().string();
  if (!a.quiet) o.log = [](const std::string& line) { std::cerr << line << std::endl; };
  std::unique_ptr<LlamaCppPeer> peer;
  if (a.peer) {
    auto gguf = ExportGgufBeside(a.engine.model_dir, [](const std::string& s) { std::cerr << s << std::endl; });
    if (!gguf.ok()) return Fail(gguf.status());
    LlamaCppPeerOptions po;
    po.gguf_path = *gguf;
    po.threads = static_cast<int>((*engine)->threads());
    uint64_t longest = 0;
    for (uint64_t L : o.lengths) longest = std::max(longest, L);
    po.context = static_cast<int>((longest + a.question + 64 + 255) / 256 * 256);
    po.sequences = 1;
    auto started = LlamaCppPeer::Start(po);
    if (!started.ok()) return Fail(started.status());
    peer = std::move(started).value();
  }
  auto result = economics::RunReuseBench(**engine, o, peer.get());
  std::error_code ec;
  fs::remove_all(o.work_dir, ec);
  if (!result.ok()) return Fail(result.status());
  std::cout << economics::ReuseTable(*result);
  Status st = economics::WriteReuseReport(*result, *prices, a.out);
  if (!st.ok() && !(a.no_plots && st.code() == Status::Code::kFailedPrecondition)) return Fail(st);
  std::cerr << "wrote " << a.out << "/{reuse.json,reuse.csv,reuse.txt,economics.txt,"
            << "time_vs_length,ratio_vs_length,cost_vs_length}.{png,svg}\n";
  return result->all_exact() ? 0 : 2;
}

struct EconomicsArgs {
  std::string from, prices, out;
  bool json = false;
};

int RunEconomics(const EconomicsArgs& a) {
  auto text = Slurp(a.from);
  if (!text.ok()) return Fail(text.status());
  auto summary = economics::ParseReuseJson(*text);
  if (!summary.ok()) return Fail(summary.status().WithContext(a.from));
  auto prices = LoadPrices(a.prices);
  if (!prices.ok()) return Fail(prices.status());
  auto report = economics::BuildCostReport(*prices, summary->shape, summary->lengths);
  if (!report.ok()) return Fail(report.status());
  if (a.json) {
    std::cout << economics::CostReportJson(*report) << "\n";
  } else {
    std::cout << economics::CostReportTable(*report);
  }
  if (!a.out.empty()) {
    if (Status s = economics::WriteCostPlots(*report, a.out); !s.ok()) return Fail(s);
  }
  return 0;
}

}  // namespace

void RegisterEconomicsCommands(CLI::App& app, int* exit_code) {
  auto* bench = app.add_subcommand("bench", "measurements");
  bench->require_subcommand(1);
  auto b = std::make_shared<BenchArgs>();
  auto* reuse = bench->add_subcommand(
      "reuse",
      "prefill from scratch vs reuse + question prefill per document length; reuse paths: resident (Attach to the "
      "artifact's KV pages in the engine, the provider's hit), memory, disk raw, disk lossless (load from the "
      "store); bit-exact check, costs, plots");
  b->engine.Add(reuse);
  reuse->add_option("--lengths", b->lengths, "document lengths in tokens, comma-separated");
  reuse->add_option("--question", b->question, "question tokens prefilled on every path");
  reuse->add_option("--decode", b->decode, "greedy tokens decoded and compared on every path");
  reuse->add_option("--repeat", b->repeat, "repeats per length (the table shows median, min–max)");
  reuse->add_option("--chunk", b->chunk, "prefill chunk size");
  reuse->add_option("--out", b->out, "output directory");
  reuse->add_option("--prices", b->prices, "price file (JSON) for the cost curves");
  reuse->add_option("--name", b->name, "model name in the report (default: the directory name)");
  reuse->add_option("--seed", b->seed, "token generator seed");
  reuse->add_option("--tiers", b->tiers, "store (its memory and disk tiers) or file (artifact files, no store)")
      ->capture_default_str();
  reuse->add_flag("--split-scratch", b->split_scratch,
                  "scratch = prefill(doc) + prefill(question) in the publishing session (saves one prefill per length)");
  reuse->add_flag("--no-plots", b->no_plots, "do not fail when gnuplot is missing");
  reuse->add_flag("--quiet", b->quiet, "no progress lines");
  reuse->add_flag("--peer", b->peer,
                  "also run llama.cpp (kvmart-llamacpp-peer) on the same weights (exported to DIR.gguf) and tokens: "
                  "its prefill and its saved state loaded into a fresh context + the question");
  reuse->callback([b, exit_code] { *exit_code = RunBenchReuse(*b); });

  auto e = std::make_shared<EconomicsArgs>();
  auto* econ = app.add_subcommand("economics", "cost model over a reuse.json: savings, break-even, shipping vs hosting");
  econ->add_option("--from", e->from, "reuse.json written by `kvmart bench reuse`")->required();
  econ->add_option("--prices", e->prices, "price file (JSON; see docs/ECONOMICS.md)");
  econ->add_option("--out", e->out, "also write economics.json, costs.csv and the cost plot here");
  econ->add_flag("--json", e->json, "print the report as JSON");
  econ->callback([e, exit_code] { *exit_code = RunEconomics(*e); });
}

}  // namespace kvmart::cli
