// Continuous batching: sessions running on different threads share forward
// passes (their rows stacked into every matmul), and each session's tokens and
// the raw bits of its logits at every step equal the same work run alone on an
// idle engine — whatever else is in the pass: cache hits (imported KV), cold
// prompts, chunked prefills, greedy and sampled decodes.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "../testing/synthetic_model.h"

namespace kvmart {
namespace {

testing::SyntheticModels& Models() {
  static testing::SyntheticModels models;
  return models;
}

std::unique_ptr<Engine> MakeEngine(const std::string& shape, size_t max_batch_tokens) {
  EngineOptions o;
  o.kernels = SupportedKernelPaths().back();
  o.threads = 2;
  o.max_batch_tokens = max_batch_tokens;
  auto e = Engine::Create(Models().Load(shape), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

// How a session starts: cold, from the document's KV imported (copied into
// its own pages), or from the document's resident pages attached (shared by
// reference with every other attaching session, whose queries then read each
// shared page once per pass for all of them).
enum class Start { kCold, kImport, kAttach };

// What one session does: maybe start from a shared document (a cache hit),
// prefill its own prompt in chunks, then decode.
struct Work {
  Start start;
  std::vector<int32_t> prompt;
  size_t chunk;
  size_t steps;
  SamplingParams sampling;
};

// Per step: the token and the logits' raw bytes before it was chosen.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::string> logits;
  std::string error;
};

// The document, as rows to import and as a resident prefix of one engine.
struct Doc {
  KvExport rows;
  std::shared_ptr<const KvPrefix> prefix;
};

// The rows made resident in `engine`'s pages, as the server's first load of an
// artifact leaves them; nullptr (and a test failure) if that fails.
std::shared_ptr<const KvPrefix> Resident(Engine& engine, const KvExport& rows) {
  auto frozen = engine.NewSession();
  if (Status st = frozen->ImportKv(rows); !st.ok()) {
    ADD_FAILURE() << st.ToString();
    return nullptr;
  }
  auto prefix = frozen->ShareAsPrefix();
  if (!prefix.ok()) {
    ADD_FAILURE() << prefix.status().ToString();
    return nullptr;
  }
  return *prefix;
}

Trace RunWork(Engine& engine, const Work& w, const Doc& doc) {
  Trace t;
  auto s = engine.NewSession();
  if (w.start == Start::kImport) {
    if (Status st = s->ImportKv(doc.rows); !st.ok()) return {{}, {}, st.ToString()};
  } else if (w.start == Start::kAttach) {
    if (Status st = s->Attach(*doc.prefix); !st.ok()) return {{}, {}, st.ToString()};
  }
  if (Status st = s->Prefill(w.prompt, w.chunk); !st.ok()) return {{}, {}, st.ToString()};
  for (size_t i = 0; i < w.steps; ++i) {
    auto l = s->logits();
    if (!l.ok()) return {{}, {}, l.status().ToString()};
    t.logits.emplace_back(reinterpret_cast<const char*>(l->data()), l->size() * sizeof(float));
    auto tok = s->DecodeStep(w.sampling);
    if (!tok.ok()) return {{}, {}, tok.status().ToString()};
    t.tokens.push_back(*tok);
  }
  return t;
}

std::vector<Work> MakeWorks(size_t n) {
  std::vector<Work> works;
  for (size_t i = 0; i < n; ++i) {
    Work w;
    w.start = std::vector<Start>{Start::kAttach, Start::kCold, Start::kImport, Start::kAttach}[i % 4];
    w.prompt = RandomTextTokens(3 + (37 * i) % 90, 100 + i, 151936);
    w.chunk = std::vector<size_t>{0, 1, 7, 32}[i % 4];
    w.steps = 6 + i % 5;
    if (i % 3 == 1) {
      w.sampling.temperature = 0.8f;
      w.sampling.top_k = 40;
      w.sampling.seed = 7 + i;
    }
    works.push_back(std::move(w));
  }
  return works;
}

class BatchingTest : public ::testing::TestWithParam<size_t> {};

TEST_P(BatchingTest, ConcurrentSessionsMatchTheSameWorkAlone) {
  const size_t n = GetParam();
  const auto works = MakeWorks(n);
  // The shared document (cache hit) and the references, on an idle engine.
  // 330 tokens: 5 whole pages shared (more than one of the kernel's chunks of
  // the shared range) and a partial page copied on attach.
  auto idle = MakeEngine("small", 512);
  auto pub = idle->NewSession();
  ASSERT_TRUE(pub->Prefill(RandomTextTokens(330, 9, 151936), 64).ok());
  auto rows = pub->ExportKv(0, pub->size());
  ASSERT_TRUE(rows.ok());
  // Alone, an attaching session reads the same pages through its own table.
  const Doc idle_doc{*rows, Resident(*idle, *rows)};
  ASSERT_NE(idle_doc.prefix, nullptr);
  std::vector<Trace> alone;
  for (const auto& w : works) {
    alone.push_back(RunWork(*idle, w, idle_doc));
    ASSERT_EQ(alone.back().error, "");
  }

  // A small token budget makes passes mix decodes with prefill chunks and
  // leave some requests for the next pass.
  auto engine = MakeEngine("small", 24);
  const Doc doc{*rows, Resident(*engine, *rows)};
  ASSERT_NE(doc.prefix, nullptr);
  std::vector<Trace> together(n);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { together[i] = RunWork(*engine, works[i], doc); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(together[i].error, "") << "session " << i;
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "session " << i;
    ASSERT_EQ(together[i].logits.size(), alone[i].logits.size());
    for (size_t s = 0; s < alone[i].logits.size(); ++s) {
      EXPECT_TRUE(together[i].logits[s] == alone[i].logits[s]) << "session " << i << " step " << s << ": logits differ";
    }
  }
  const Engine::BatchStats st = engine->batch_stats();
  EXPECT_GT(st.passes, 0u);
  if (n >= 5) {
    // The positive control: passes really carried several sessions (with five
    // or more threads each making a dozen requests, some always overlap).
    EXPECT_GT(st.sequences, st.passes) << "no pass batched two sessions";
    // And some passes read the resident document's pages once for several
    // attaching sessions.
    EXPECT_GT(st.shared_prefix_sequences, 0u) << "no pass shared the attached prefix";
  }
}

INSTANTIATE_TEST_SUITE_P(Sessions, BatchingTest, ::testing::Values(1, 2, 5, 16));

}  // namespace
}  // namespace kvmart
