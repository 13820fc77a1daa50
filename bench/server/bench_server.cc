// The server end to end over loopback HTTP, in one run:
//   1. time to first token for a question after a 3774-token document, cold
//      prefill vs continuing from a purchased artifact (the ratio is the point);
//   2. requests/s of cache-hit chat completions with 16 concurrent clients;
//   3. the timing of refusals: an unauthenticated or unentitled caller must get
//      the same answer in the same time whether the artifact exists or not.
// Default shape qwen3-0.6b (synthetic weights: speed does not depend on the
// values); --quick uses the `small` shape and fewer repetitions.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/usage.h"
#include "engine/engine.h"
#include "market/sql_market.h"
#include "model/synth.h"
#include "store/store.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

using namespace kvmart;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  std::string shape = "qwen3-0.6b", model_dir, kernels = "auto", data_dir;
  size_t doc_tokens = 3774, threads = 2, clients = 16, hit_requests = 48, hit_max_tokens = 8, ttft_reps = 3;
  size_t probe_reps = 200;
  bool quick = false;
};

struct Http {
  int port;
  json Call(const std::string& method, const std::string& path, const json& body, const std::string& key,
            int* status = nullptr, httplib::Headers h = {}) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(600);
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    auto r = method == "GET" ? c.Get(path.c_str(), h) : c.Post(path.c_str(), h, body.dump(), "application/json");
    if (!r) {
      if (status) *status = 0;
      return nullptr;
    }
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
  }
};

// VmRSS of this process, kB (0 when /proc is unreadable).
size_t ResidentKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

std::vector<int32_t> DocumentTokens(const tokenizer::Tokenizer& tok, size_t n) {
  // Real prose: the project's own documentation, repeated if needed, cut at n tokens.
  std::string text;
  for (const char* f : {"docs/DESIGN.md", "docs/MARKET.md", "docs/ARTIFACT.md", "docs/ENGINE.md", "docs/API.md"}) {
    std::ifstream in(std::string(KVMART_SOURCE_DIR) + "/" + f);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
  }
  std::vector<int32_t> out;
  while (out.size() < n) {
    auto ids = tok.Encode(text).value();
    out.insert(out.end(), ids.begin(), ids.end());
  }
  out.resize(n);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress is visible when piped to a file
  Args a;
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-server [--quick] [--shape S | --model DIR] [--doc-tokens N] [--threads N]\n"
      "                           [--clients N] [--hit-requests N] [--reps N] [--kernels portable|avx2|auto]\n"
      "Time to first token over loopback HTTP: cache hit against cold prefill, alone and under load.\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&] { return usage.Value(argc, argv, &i); };
    if (k == "--quick") a.quick = true;
    else if (k == "--shape") a.shape = val();
    else if (k == "--model") a.model_dir = val();
    else if (k == "--doc-tokens") a.doc_tokens = std::stoul(val());
    else if (k == "--threads") a.threads = std::stoul(val());
    else if (k == "--clients") a.clients = std::stoul(val());
    else if (k == "--hit-requests") a.hit_requests = std::stoul(val());
    else if (k == "--kernels") a.kernels = val();
    else if (k == "--reps") a.ttft_reps = std::stoul(val());
    else usage.Fail("unknown option " + k);
  }
  if (a.quick) {
    if (a.model_dir.empty() && a.shape == "qwen3-0.6b") a.shape = "small";
    a.ttft_reps = std::min<size_t>(a.ttft_reps, 2);
    a.hit_requests = 32;
    a.probe_reps = 100;
  }
  if (a.model_dir.empty()) {
    a.model_dir = "bench-models/" + a.shape;
    if (!std::filesystem::exists(a.model_dir + "/config.json")) {
      std::printf("synthesizing %s into %s ...\n", a.shape.c_str(), a.model_dir.c_str());
      SynthOptions o;
      o.shape = a.shape;
      o.out_dir = a.model_dir;
      o.tokenizer_dir = KVMART_DATA_DIR;
      if (Status st = WriteSyntheticCheckpoint(o); !st.ok()) {
        std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
        return 1;
      }
    }
  }
  auto t0 = Clock::now();
  auto model = Model::Load(a.model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<const Model> shared(std::move(model).value());
  EngineOptions eo;
  eo.kernels = ParseKernelPath(a.kernels).value();
  eo.threads = a.threads;
  server::ServerParts parts;
  parts.engine = Engine::Create(shared, eo).value();
  const Engine* engine = parts.engine.get();  // the server owns it; read for the KV page figures
  parts.tokenizer = tokenizer::Tokenizer::Load(a.model_dir + "/tokenizer.json").value();
  const auto doc = DocumentTokens(*parts.tokenizer, a.doc_tokens);
  const auto question = parts.tokenizer->Encode("\n\nQuestion: what does one metered load cost, and who is paid?\nAnswer:").value();
  char tmpl[] = "/tmp/kvmart-bench-server-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto market = market::SqlMarket::Open(dir + "/market.db", {}).value();
  const std::string admin = market->Initialize(market::Currency()).value().admin_key;
  parts.market = std::move(market);
  store::StoreOptions so;
  so.data_dir = dir + "/store";
  parts.store = store::Store::Open(so).value();
  const char* store_kind = "disk store + memory tier";
  parts.db = server::ServerDb::Open(dir + "/server.db").value();
  parts.signing_key = std::make_unique<artifact::SigningKey>(artifact::SigningKey::Generate().value());
  server::ServerOptions so2;
  so2.port = 0;
  so2.log_requests = false;
  so2.max_queue = 64;
  // Cold means cold: the per-account prefix cache would let a repeated plain
  // prompt attach the last one's pages.
  so2.prefix_cache_bytes = 0;
  auto srv = server::Server::Create(so2, std::move(parts)).value();
  if (!srv->Bind().ok()) return 1;
  std::thread run([&] { (void)srv->Run(); });
  Http http{srv->port()};
  const auto& cfg = shared->config();
  std::printf("model %s (%u layers, hidden %u, kv %llu B/token), loaded in %.1f s; %zu engine threads, kernels %s\n"
              "store: %s; document %zu tokens, question %zu tokens\n\n",
              a.model_dir.c_str(), cfg.num_hidden_layers, cfg.hidden_size,
              static_cast<unsigned long long>(cfg.kv_bytes_per_token()), Since(t0), a.threads,
              KernelPathName(eo.kernels), store_kind, doc.size(), question.size());

  auto account = [&](const std::string& name, const std::string& scopes, const char* deposit) {
    json r = http.Call("POST", "/v1/accounts", {{"name", name}, {"scopes", scopes}}, admin);
    if (deposit) {
      http.Call("POST", "/v1/accounts/" + std::to_string(r["account_id"].get<int64_t>()) + "/deposits",
                {{"amount", deposit}}, admin);
    }
    return r["api_key"].get<std::string>();
  };
  const std::string pub = account("publisher", "publish", nullptr);
  const std::string buyer = account("buyer", "buy", "1000");
  const std::string stranger = account("stranger", "buy", "1");

  auto tp = Clock::now();
  int st = 0;
  json published = http.Call("POST", "/v1/artifacts", {{"tokens", doc}}, pub, &st);
  if (st != 201) {
    std::fprintf(stderr, "publish failed: %d %s\n", st, published.dump().c_str());
    return 1;
  }
  const std::string id = published["artifact_id"];
  std::printf("publish (provider prefills %zu tokens, builds and stores the artifact): %.2f s, %llu stored bytes\n",
              doc.size(), Since(tp), static_cast<unsigned long long>(published["stored_bytes"].get<uint64_t>()));
  http.Call("POST", "/v1/artifacts/" + id + "/purchase", {{"quantity", 100000}}, buyer);

  // 1. TTFT: non-streamed max_tokens=1; the server's own TTFT (prefill + first
  // token) and the client's wall time (adds the load, HTTP and JSON).
  std::vector<int32_t> full = doc;
  full.insert(full.end(), question.begin(), question.end());
  std::vector<double> cold_srv, cold_wall, hit_srv, hit_wall;
  for (size_t r = 0; r < a.ttft_reps; ++r) {
    auto t = Clock::now();
    json c = http.Call("POST", "/v1/completions",
                       {{"prompt", full}, {"max_tokens", 1}, {"temperature", 0}, {"kvmart_debug", true}}, buyer, &st);
    cold_wall.push_back(Since(t));
    cold_srv.push_back(c["kvmart_debug"]["ttft_seconds"]);
    t = Clock::now();
    json h = http.Call("POST", "/v1/completions",
                       {{"prompt", question}, {"max_tokens", 1}, {"temperature", 0}, {"kvmart_debug", true},
                        {"kv", {{"artifact", id}}}},
                       buyer, &st);
    hit_wall.push_back(Since(t));
    hit_srv.push_back(h["kvmart_debug"]["ttft_seconds"]);
    if (h["kvmart_debug"]["completion_token_ids"] != c["kvmart_debug"]["completion_token_ids"] ||
        h["kvmart_debug"]["logits_sha256"] != c["kvmart_debug"]["logits_sha256"]) {
      std::fprintf(stderr, "MISMATCH between hit and cold answers\n");
      return 1;
    }
  }
  const double cw = Percentile(cold_wall, 0.5), hw = Percentile(hit_wall, 0.5);
  std::printf("\nTTFT after the %zu-token document (median of %zu, identical tokens and logits checked):\n",
              doc.size(), a.ttft_reps);
  std::printf("  cold prefill          %8.3f s wall   (server prefill+first token %.3f s)\n", cw,
              Percentile(cold_srv, 0.5));
  std::printf("  artifact hit          %8.3f s wall   (server prefill of %zu tokens+first token %.3f s)\n", hw,
              question.size(), Percentile(hit_srv, 0.5));
  std::printf("  ratio cold/hit        %8.1fx\n", cw / hw);

  // 1b. Resident hits: after its first load the artifact's KV stays in the
  // engine's shared pages, so later loads attach them (no KV copied). With the
  // question, and with a 1-token continuation against a cold prefill of the
  // same doc + 1 token.
  std::vector<double> res_srv, res_wall, res1_wall, res1_srv, cold1_wall;
  const std::vector<int32_t> one = {question.front()};
  std::vector<int32_t> full1 = doc;
  full1.push_back(one.front());
  for (size_t r = 0; r < a.ttft_reps; ++r) {
    auto t = Clock::now();
    json h = http.Call("POST", "/v1/completions",
                       {{"prompt", question}, {"max_tokens", 1}, {"temperature", 0}, {"kvmart_debug", true},
                        {"kv", {{"artifact", id}}}},
                       buyer, &st);
    res_wall.push_back(Since(t));
    res_srv.push_back(h["kvmart_debug"]["ttft_seconds"]);
    t = Clock::now();
    json h1 = http.Call("POST", "/v1/completions",
                        {{"prompt", one}, {"max_tokens", 1}, {"temperature", 0}, {"kvmart_debug", true},
                         {"kv", {{"artifact", id}}}},
                        buyer, &st);
    res1_wall.push_back(Since(t));
    res1_srv.push_back(h1["kvmart_debug"]["ttft_seconds"]);
    t = Clock::now();
    json c1 = http.Call("POST", "/v1/completions",
                        {{"prompt", full1}, {"max_tokens", 1}, {"temperature", 0}, {"kvmart_debug", true}}, buyer, &st);
    cold1_wall.push_back(Since(t));
    if (h1["kvmart_debug"]["logits_sha256"] != c1["kvmart_debug"]["logits_sha256"]) {
      std::fprintf(stderr, "MISMATCH between resident hit and cold answers (1-token continuation)\n");
      return 1;
    }
  }
  const double rw = Percentile(res_wall, 0.5), r1 = Percentile(res1_wall, 0.5), c1 = Percentile(cold1_wall, 0.5);
  std::printf("  resident hit          %8.3f s wall   (server prefill of %zu tokens+first token %.3f s)\n", rw,
              question.size(), Percentile(res_srv, 0.5));
  std::printf("  ratio cold/resident   %8.1fx\n", cw / rw);
  std::printf("  1-token continuation: cold %.3f s, resident hit %.3f s wall (server's forward of the token + "
              "first token %.3f s), ratio %.1fx\n",
              c1, r1, Percentile(res1_srv, 0.5), c1 / r1);

  // 2. Hit throughput with concurrent clients. A sampler records the peak of
  // KV pages in use and of the process's resident memory meanwhile.
  std::atomic<size_t> next{0}, ok{0}, max_prompt{0};
  std::atomic<bool> sampling{true};
  size_t peak_pages = 0, peak_rss_kb = 0;
  std::thread sampler([&] {
    while (sampling.load()) {
      peak_pages = std::max(peak_pages, engine->kv_pages().pages_in_use());
      peak_rss_kb = std::max(peak_rss_kb, ResidentKb());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  const size_t rss_before_kb = ResidentKb(), pages_before = engine->kv_pages().pages_in_use();
  std::vector<double> lat(a.hit_requests);
  auto th0 = Clock::now();
  std::vector<std::thread> clients;
  for (size_t c = 0; c < a.clients; ++c) {
    clients.emplace_back([&] {
      for (size_t i = next++; i < a.hit_requests; i = next++) {
        auto t = Clock::now();
        int s = 0;
        json r = http.Call("POST", "/v1/chat/completions",
                           {{"messages", {{{"role", "user"}, {"content", "Question " + std::to_string(i)}}}},
                            {"max_tokens", a.hit_max_tokens}, {"temperature", 0}, {"kv", {{"artifact", id}}}},
                           buyer, &s);
        lat[i] = Since(t);
        if (s == 200 && r["usage"]["prompt_tokens_details"]["cached_tokens"] == doc.size()) {
          ++ok;
          const size_t pt = r["usage"]["prompt_tokens"];
          for (size_t m = max_prompt.load(); pt > m && !max_prompt.compare_exchange_weak(m, pt);) {
          }
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  const double secs = Since(th0);
  sampling = false;
  sampler.join();
  std::printf("\ncache-hit chat completions, %zu clients, %zu requests (%zu generated tokens each, %zu engine sessions):\n"
              "  %zu/%zu ok in %.2f s = %.2f req/s; latency p50 %.3f s, p90 %.3f s\n",
              a.clients, a.hit_requests, a.hit_max_tokens, so2.max_sessions, ok.load(), a.hit_requests, secs,
              a.hit_requests / secs, Percentile(lat, 0.5), Percentile(lat, 0.9));
  // The memory bound: one copy of the artifact's KV (its whole pages resident
  // once) plus each concurrent session's private pages (the copied partial
  // page, its own prompt and generated tokens), + 10 %.
  {
    const size_t page_bytes = engine->kv_pages().page_bytes(), page_tokens = kKvPageTokens;
    const size_t shared_pages = doc.size() / page_tokens;
    const size_t own_tokens = max_prompt.load() + a.hit_max_tokens - shared_pages * page_tokens;
    const size_t private_pages = (own_tokens + page_tokens - 1) / page_tokens;
    const size_t concurrent = std::min(a.clients, so2.max_sessions == 0 ? a.clients : so2.max_sessions);
    const double bound = 1.10 * double(shared_pages + concurrent * private_pages) * page_bytes;
    const double copy = double(doc.size()) * shared->config().kv_bytes_per_token();
    std::printf("  KV pages in use: peak %.1f MB (before the clients %.1f MB); one copy of the artifact's KV %.1f MB; "
                "bound (one copy + %zu sessions x %zu private pages, +10%%) %.1f MB: %s\n",
                peak_pages * double(page_bytes) / 1e6, pages_before * double(page_bytes) / 1e6, copy / 1e6, concurrent,
                private_pages, bound / 1e6, peak_pages * double(page_bytes) <= bound ? "within" : "EXCEEDED");
    std::printf("  process RSS: peak %.1f MB during the clients, %.1f MB before (weights, tokenizer, server included); "
                "%zu copies of the KV would be %.1f MB\n",
                peak_rss_kb / 1e3, rss_before_kb / 1e3, a.clients, a.clients * copy / 1e6);
  }

  // 3. Refusal timing: the artifact held (and warm) vs an id that does not exist.
  const std::string unknown = "kv1-" + std::string(64, '7');
  auto probe = [&](const std::string& key, const std::string& art, int* status) {
    std::vector<double> v;
    for (size_t r = 0; r < a.probe_reps; ++r) {
      auto t = Clock::now();
      http.Call("POST", "/v1/chat/completions",
                {{"messages", {{{"role", "user"}, {"content", "q"}}}}, {"kv", {{"artifact", art}}}}, key, status);
      v.push_back(Since(t) * 1e6);
    }
    return v;
  };
  std::printf("\nrefusal timing, %zu requests each (microseconds, client wall):\n", a.probe_reps);
  for (const auto& [who, key] : {std::pair<std::string, std::string>{"unauthenticated", "kvm_" + std::string(64, '0')},
                                 {"unentitled", stranger}}) {
    int s1 = 0, s2 = 0;
    auto held = probe(key, id, &s1);
    auto none = probe(key, unknown, &s2);
    std::printf("  %-16s held: HTTP %d p50 %6.0f p90 %6.0f | unknown: HTTP %d p50 %6.0f p90 %6.0f\n", who.c_str(), s1,
                Percentile(held, 0.5), Percentile(held, 0.9), s2, Percentile(none, 0.5), Percentile(none, 0.9));
  }
  srv->Stop();
  run.join();
  srv.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
