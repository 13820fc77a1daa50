// Crash safety and a full disk, with real processes:
//  - a forked writer publishes, removes and collects garbage in a loop and is
//    SIGKILLed at a random moment, many times; after each kill the store is
//    reopened and the catalog checked against the files;
//  - a writer whose file size is limited (RLIMIT_FSIZE, SIGXFSZ ignored, so
//    write() fails with EFBIG as on a full disk) must fail the publish with
//    ResourceExhausted, leave nothing half-visible and keep serving reads.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "store/block_files.h"
#include "store_test_util.h"

namespace kvmart::store {
namespace {

using namespace testing;
using kvmart::testing::TempDir;
namespace fs = std::filesystem;

struct Doc {
  std::vector<uint32_t> tokens;
  Artifact artifact;
};

// Documents that share prefixes (so publishes share and refcount blocks), with
// both codecs.
std::vector<Doc> MakeDocs(const Profile& p) {
  std::vector<Doc> docs;
  auto base = Tokens(64);
  for (uint32_t k = 0; k < 10; ++k) {
    auto t = base;
    t.resize(16 + 5 * k);
    t.push_back(9000 + k);
    Artifact a = MakeArtifact(p, t, k % 2 == 0 ? Codec::kRaw : Codec::kLossless);
    docs.push_back({std::move(t), std::move(a)});
  }
  return docs;
}

// The writer: never returns.
[[noreturn]] void WriterLoop(const std::string& dir, const std::vector<Doc>& docs, uint64_t seed) {
  StoreOptions o = Options(dir);
  o.decode_threads = 1;
  auto store = Store::Open(o);
  if (!store.ok()) ::_exit(3);
  std::mt19937_64 rng(seed);
  for (;;) {
    const Doc& d = docs[rng() % docs.size()];
    switch (rng() % 6) {
      case 0:
        (void)(*store)->Remove(d.artifact.manifest.artifact_id);
        break;
      case 1:
        (void)(*store)->Gc();
        break;
      case 2:
        (void)(*store)->Pin(d.artifact.manifest.artifact_id, rng() % 2 == 0);
        break;
      default:
        if (Status st = (*store)->Put(d.artifact); !st.ok()) ::_exit(4);
    }
  }
}

// What a restart must find: every listed artifact loads with the right bytes,
// every block file belongs to the catalog, no temporary files.
// Returns the number of temporary files found before the restart cleaned them.
size_t CountTempFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : fs::recursive_directory_iterator(dir + "/blocks", ec))
    n += e.path().filename().string().rfind(".tmp-", 0) == 0;
  return n;
}

void CheckConsistent(const std::string& dir, const std::vector<Doc>& docs, const Profile& p, int round) {
  auto opened = Store::Open(Options(dir));
  ASSERT_TRUE(opened.ok()) << "round " << round << ": " << opened.status().ToString();
  Store& store = **opened;
  for (const ArtifactInfo& info : store.List()) {
    const Doc* doc = nullptr;
    for (const Doc& d : docs)
      if (d.artifact.manifest.artifact_id == info.artifact_id) doc = &d;
    ASSERT_NE(doc, nullptr) << "round " << round << ": unknown artifact " << info.artifact_id;
    size_t n = 0;
    Status st = store.Load(info.artifact_id, {}, [&](const LoadedBlock& b) {
      if (*b.payload != PayloadFor(p, doc->tokens, b.index)) return Status::Internal("wrong bytes");
      ++n;
      return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << "round " << round << ": " << st.ToString();
    EXPECT_EQ(n, doc->artifact.manifest.blocks.size());
  }
  auto v = store.Verify("");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->blocks_bad, 0u) << "round " << round << ": " << (v->problems.empty() ? "" : v->problems[0]);
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(dir + "/blocks")) {
    if (!e.is_regular_file()) continue;
    ++files;
    EXPECT_TRUE(BlockFiles::ParseFileName(e.path().filename().string()).has_value())
        << "round " << round << ": leftover " << e.path();
  }
  EXPECT_EQ(files, store.Metrics().blocks) << "round " << round << ": orphan block files";
  EXPECT_EQ(v->blocks_checked, store.Metrics().blocks);
}

TEST(StoreCrash, SigkillAtRandomPointsLeavesAllOrNothing) {
  TempDir tmp;
  const Profile p = SmallProfile(8);
  const std::vector<Doc> docs = MakeDocs(p);
  std::mt19937_64 rng(20250102);
  // At least kRounds; more (up to kMaxRounds) until some kill has landed
  // inside a block write (about one round in six does), so that the all-or-
  // nothing check has certainly seen a torn write.
  constexpr int kRounds = 40, kMaxRounds = 400;
  int killed_mid_run = 0, rounds = 0;
  size_t temp_files_seen = 0;  // evidence that kills landed inside a block write
  for (int round = 0; round < kRounds || (temp_files_seen == 0 && round < kMaxRounds); ++round) {
    ++rounds;
    const auto delay = std::chrono::microseconds(200 + rng() % 30000);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) WriterLoop(tmp.path(), docs, rng());
    std::this_thread::sleep_for(delay);
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++killed_mid_run;
    } else {
      ADD_FAILURE() << "round " << round << ": writer exited on its own with " << WEXITSTATUS(status);
    }
    temp_files_seen += CountTempFiles(tmp.path());
    CheckConsistent(tmp.path(), docs, p, round);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_EQ(killed_mid_run, rounds);
  EXPECT_GT(temp_files_seen, 0u) << "no kill landed inside a block write in " << rounds << " rounds";
  std::printf("crash rounds: %d, temporary files left by killed writers: %zu\n", rounds, temp_files_seen);
  // The writer made progress across the rounds.
  auto store = Store::Open(Options(tmp.path()));
  ASSERT_TRUE(store.ok());
  EXPECT_GT((*store)->List().size(), 0u);
}

TEST(StoreDiskFull, PublishFailsCleanlyAndReadsKeepWorking) {
  TempDir tmp;
  const Profile small = SmallProfile();
  auto small_tokens = Tokens(12);
  Artifact a = MakeArtifact(small, small_tokens);
  {
    auto store = Store::Open(Options(tmp.path()));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(a).ok());
  }
  // 64 tokens × 4096 bytes per token = 256 KiB per block, over the 128 KiB limit.
  const Profile big = artifact::testing::TestProfile({4, 4, 64, artifact::KvDtype::kBf16}, 64);
  auto big_tokens = Tokens(200, 1);
  Artifact b = MakeArtifact(big, big_tokens, Codec::kRaw);

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {128 << 10, 128 << 10};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    auto store = Store::Open(Options(tmp.path()));
    if (!store.ok()) ::_exit(11);
    Status st = (*store)->Put(b);
    if (st.code() != Status::Code::kResourceExhausted || !st.IsDiskFull()) ::_exit(12);
    if ((*store)->List().size() != 1) ::_exit(13);
    if ((*store)->Lookup(artifact::ProfileDigest(big), big_tokens).matched_tokens != 0) ::_exit(14);
    auto loaded = LoadAll(**store, a.manifest.artifact_id);
    if (!loaded.ok() || loaded->size() != 3 || (*loaded)[2] != PayloadFor(small, small_tokens, 2)) ::_exit(15);
    if ((*store)->Metrics().blocks != 3) ::_exit(16);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child check failed (see the exit code in crash_test.cc)";

  // Nothing of b on disk or in the catalog; a intact; and with room, b goes in.
  auto store = Store::Open(Options(tmp.path()));
  ASSERT_TRUE(store.ok());
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(tmp.path() + "/blocks")) files += e.is_regular_file();
  EXPECT_EQ(files, 3u);
  EXPECT_EQ((*store)->List().size(), 1u);
  EXPECT_TRUE((*store)->Put(b).ok());
  auto loaded = LoadAll(**store, b.manifest.artifact_id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->size(), 4u);
}

}  // namespace
}  // namespace kvmart::store
