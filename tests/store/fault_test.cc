// Storage faults under the disk store (docs/STORE.md, "Storage faults"), on a
// file system that loses what was not synced (testing/fault_file_system.h):
//  - a 100-block publish workload is crashed at every one of its sync points;
//    after the restart every acknowledged artifact loads bit-exactly, the one
//    in flight is wholly there or absent, and nothing else is on disk;
//  - the N-th write and the N-th fsync fail with EIO and with ENOSPC, for
//    every N: that publish fails with the matching code, is never
//    acknowledged, and the store stays consistent and usable;
//  - a store that did not fsync is caught: its loads fail with DataLoss,
//    never with other bytes.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "testing/fault_points.h"
#include "store/block_files.h"
#include "store_test_util.h"
#include "testing/fault_file_system.h"
#include "testing/fault_vfs.h"

namespace kvmart::store {
namespace {

using namespace testing;
using kvmart::testing::FaultFileSystem;
using kvmart::testing::FaultVfs;
using kvmart::testing::TempDir;
namespace fs = std::filesystem;

// tmpfs where there is one: SQLite's own fsyncs (the catalog) are then cheap,
// and the run stays in seconds.
fs::path FastTempBase() {
  std::error_code ec;
  return fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
}

std::string ReadAll(const std::string& path) {
  std::string s;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "<missing>";
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

void WriteFile(FileSystem& f, const std::string& path, std::string_view text, bool sync) {
  auto file = f.CreateFile(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_TRUE((*file)->Append({reinterpret_cast<const uint8_t*>(text.data()), text.size()}).ok());
  if (sync) {
    ASSERT_TRUE((*file)->Sync().ok());
  }
  ASSERT_TRUE((*file)->Close().ok());
}

// ---------------------------------------------------------------------------
// The model itself.

TEST(FaultFileSystem, CrashKeepsExactlyWhatWasSynced) {
  TempDir tmp(FastTempBase());
  FaultFileSystem ffs(tmp.Sub("scratch"));
  const std::string d = tmp.Sub("d");
  fs::create_directory(d);
  WriteFile(ffs, d + "/synced", "durable", true);
  WriteFile(ffs, d + "/unsynced", "lost", false);
  ASSERT_TRUE(ffs.SyncDir(d).ok());  // both entries durable; one file's bytes are not
  WriteFile(ffs, d + "/entry-unsynced", "data synced, entry not", true);
  EXPECT_EQ(ffs.unsynced_bytes(), 4u);
  EXPECT_EQ(ffs.pending_directory_ops(), 1u);
  ASSERT_TRUE(ffs.Crash().ok());
  EXPECT_EQ(ReadAll(d + "/synced"), "durable");
  EXPECT_EQ(ReadAll(d + "/unsynced"), "");
  EXPECT_FALSE(fs::exists(d + "/entry-unsynced"));
}

TEST(FaultFileSystem, UnsyncedRemoveAndReplacingRenameAreUndone) {
  TempDir tmp(FastTempBase());
  FaultFileSystem ffs(tmp.Sub("scratch"));
  const std::string d = tmp.Sub("d");
  fs::create_directory(d);
  WriteFile(ffs, d + "/a", "old a", true);
  WriteFile(ffs, d + "/b", "old b", true);
  ASSERT_TRUE(ffs.SyncDir(d).ok());
  ASSERT_TRUE(ffs.RemoveFile(d + "/a").ok());
  WriteFile(ffs, d + "/b.tmp", "new b", true);
  ASSERT_TRUE(ffs.Rename(d + "/b.tmp", d + "/b").ok());
  EXPECT_FALSE(fs::exists(d + "/a"));
  EXPECT_EQ(ReadAll(d + "/b"), "new b");
  ASSERT_TRUE(ffs.Crash().ok());
  EXPECT_EQ(ReadAll(d + "/a"), "old a");
  EXPECT_EQ(ReadAll(d + "/b"), "old b");
  EXPECT_FALSE(fs::exists(d + "/b.tmp"));
  // Made durable, they stay.
  ASSERT_TRUE(ffs.RemoveFile(d + "/a").ok());
  ASSERT_TRUE(ffs.SyncDir(d).ok());
  ASSERT_TRUE(ffs.Crash().ok());
  EXPECT_FALSE(fs::exists(d + "/a"));
}

TEST(FaultFileSystem, TornWriteKeepsAPrefixAndNewDirectoriesVanish) {
  TempDir tmp(FastTempBase());
  FaultFileSystem::Options o;
  o.tear_unsynced = true;
  o.seed = 7;
  FaultFileSystem ffs(tmp.Sub("scratch"), o);
  const std::string d = tmp.Sub("d");
  fs::create_directory(d);
  const std::string text(1000, 'x');
  bool created = false;
  ASSERT_TRUE(ffs.CreateDir(d + "/sub", &created).ok());
  ASSERT_TRUE(created);
  ASSERT_TRUE(ffs.SyncDir(d).ok());
  ASSERT_TRUE(ffs.CreateDir(d + "/sub/deeper", &created).ok());
  WriteFile(ffs, d + "/sub/deeper/f", "x", true);
  ASSERT_TRUE(ffs.SyncDir(d + "/sub/deeper").ok());  // deeper's own entry is not synced
  auto f = ffs.CreateFile(d + "/big");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append({reinterpret_cast<const uint8_t*>(text.data()), 8}).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Append({reinterpret_cast<const uint8_t*>(text.data()), text.size()}).ok());
  ASSERT_TRUE((*f)->Close().ok());
  ASSERT_TRUE(ffs.SyncDir(d).ok());
  ASSERT_TRUE(ffs.Crash().ok());
  const uint64_t kept = fs::file_size(d + "/big");
  EXPECT_GE(kept, 8u);
  EXPECT_LE(kept, 1008u);
  EXPECT_EQ(ReadAll(d + "/big"), std::string(kept, 'x'));
  EXPECT_TRUE(fs::is_directory(d + "/sub"));
  EXPECT_FALSE(fs::exists(d + "/sub/deeper"));
}

TEST(FaultFileSystem, CrashAtSyncStopsEverythingFromThere) {
  TempDir tmp(FastTempBase());
  FaultFileSystem ffs(tmp.Sub("scratch"));
  const std::string d = tmp.Sub("d");
  fs::create_directory(d);
  ffs.CrashAtSync(2);
  WriteFile(ffs, d + "/one", "1", true);  // sync 1
  auto f = ffs.CreateFile(d + "/two");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append({reinterpret_cast<const uint8_t*>("2"), 1}).ok());
  const Status st = (*f)->Sync();  // sync 2: the machine stops
  EXPECT_EQ(st.code(), Status::Code::kIOError);
  EXPECT_TRUE(ffs.crashed());
  EXPECT_FALSE(ffs.SyncDir(d).ok());
  EXPECT_FALSE(ffs.CreateFile(d + "/three").ok());
  f->reset();
  ASSERT_TRUE(ffs.Crash().ok());
  EXPECT_FALSE(ffs.crashed());
  EXPECT_FALSE(fs::exists(d + "/one"));  // its directory entry was never synced
  EXPECT_FALSE(fs::exists(d + "/two"));
}

TEST(FaultFileSystem, FailsTheNthWriteAndSyncOnly) {
  TempDir tmp(FastTempBase());
  FaultFileSystem ffs(tmp.Sub("scratch"));
  const std::string d = tmp.Sub("d");
  fs::create_directory(d);
  ffs.FailWrite(2, ENOSPC);
  ffs.FailSync(3, EIO);
  auto f = ffs.CreateFile(d + "/f");
  ASSERT_TRUE(f.ok());
  const uint8_t byte = 1;
  EXPECT_TRUE((*f)->Append({&byte, 1}).ok());
  const Status full = (*f)->Append({&byte, 1});
  EXPECT_TRUE(full.IsDiskFull()) << full.ToString();
  EXPECT_EQ(full.code(), Status::Code::kResourceExhausted);
  EXPECT_TRUE((*f)->Append({&byte, 1}).ok());
  EXPECT_TRUE((*f)->Sync().ok());
  EXPECT_TRUE(ffs.SyncDir(d).ok());
  const Status eio = (*f)->Sync();
  EXPECT_EQ(eio.code(), Status::Code::kIOError) << eio.ToString();
  EXPECT_TRUE((*f)->Sync().ok());
  EXPECT_EQ(ffs.writes(), 3u);
  EXPECT_EQ(ffs.syncs(), 4u);
  EXPECT_EQ(fs::file_size(d + "/f"), 2u);
}

// ---------------------------------------------------------------------------
// The store on it.

struct Doc {
  std::vector<uint32_t> tokens;
  Artifact artifact;
  std::vector<std::vector<uint8_t>> payloads;  // what every load must return
  const std::string& id() const { return artifact.manifest.artifact_id; }
};

// 12 documents in pairs that share their first 4 blocks: 120 distinct blocks
// of 1 KiB, both codecs.
struct Corpus {
  Profile profile = SmallProfile(4);
  std::vector<Doc> docs;
  size_t distinct_blocks = 0;

  Corpus() {
    std::set<Digest256> chains;
    for (uint32_t pair = 0; pair < 6; ++pair) {
      const Codec codec = pair % 2 == 0 ? Codec::kRaw : Codec::kLossless;
      std::vector<uint32_t> first = Tokens(48, pair + 1);
      std::vector<uint32_t> second(first.begin(), first.begin() + 16);
      for (uint32_t t : Tokens(32, pair + 100)) second.push_back(t);
      for (auto& t : {first, second}) {
        Doc d{t, MakeArtifact(profile, t, codec), Payloads(profile, t)};
        for (const auto& b : d.artifact.manifest.blocks) chains.insert(b.chain_hash);
        docs.push_back(std::move(d));
      }
    }
    distinct_blocks = chains.size();
  }
};

const Corpus& TheCorpus() {
  static const Corpus corpus;  // built once: signing 12 artifacts is the slow part
  return corpus;
}

// The workload: publish all 12, remove one and publish it again half way
// (unlinks, then rewrites of the same files), collect garbage at the end.
struct Op {
  enum Kind { kPut, kRemove, kGc } kind;
  size_t doc = 0;
};

std::vector<Op> Workload() {
  std::vector<Op> ops;
  for (size_t i = 0; i < 12; ++i) {
    ops.push_back({Op::kPut, i});
    if (i == 5) ops.push_back({Op::kRemove, 3});
    if (i == 8) ops.push_back({Op::kPut, 3});
  }
  ops.push_back({Op::kGc, 0});
  return ops;
}

Status Apply(Store& s, const Op& op) {
  const Corpus& c = TheCorpus();
  switch (op.kind) {
    case Op::kPut: return s.Put(c.docs[op.doc].artifact);
    case Op::kRemove: return s.Remove(c.docs[op.doc].id());
    case Op::kGc: return s.Gc().status();
  }
  return Status::Internal("unknown op");
}

// What the store acknowledged: the documents present after the acknowledged
// ops, and the op that failed (its effect may or may not have happened).
struct Acked {
  std::set<size_t> present;
  std::optional<Op> in_flight;
  Status failure;
  size_t next_op = 0;  // the op to run next (the failed one, for a retry)
};

void Note(Acked* a, const Op& op) {
  if (op.kind == Op::kPut) a->present.insert(op.doc);
  if (op.kind == Op::kRemove) a->present.erase(op.doc);
}

// Runs ops from a->next_op until one fails (at most `limit` of them).
void RunUntilFailure(Store& s, const std::vector<Op>& ops, Acked* a, size_t limit = SIZE_MAX) {
  a->in_flight.reset();
  a->failure = Status::Ok();
  for (const size_t end = std::min(ops.size(), a->next_op + std::min(limit, ops.size())); a->next_op < end;
       ++a->next_op) {
    const Op& op = ops[a->next_op];
    Status st = Apply(s, op);
    if (!st.ok()) {
      a->in_flight = op;
      a->failure = st;
      return;
    }
    Note(a, op);
  }
}

StoreOptions FaultOptions(const std::string& dir, std::shared_ptr<FileSystem> f) {
  StoreOptions o = Options(dir);
  o.decode_threads = 1;
  o.file_system = std::move(f);
  return o;
}

// Block files on the real disk, and whether any other file is there.
struct DiskListing {
  size_t block_files = 0;
  std::vector<std::string> others;
};
DiskListing ListBlocks(const std::string& dir) {
  DiskListing l;
  std::error_code ec;
  for (auto& e : fs::recursive_directory_iterator(dir + "/blocks", ec)) {
    if (!e.is_regular_file()) continue;
    if (BlockFiles::ParseFileName(e.path().filename().string()))
      ++l.block_files;
    else
      l.others.push_back(e.path().string());
  }
  return l;
}

// Everything a reader may rely on: the acknowledged documents load bit-exactly
// and are found by Lookup; the one in flight is all there or absent; nothing
// else is listed; every block checks; files are exactly the catalog's blocks.
void CheckStore(Store& s, const std::string& dir, const Acked& a, const std::string& where) {
  const Corpus& c = TheCorpus();
  std::set<std::string> listed;
  for (const ArtifactInfo& info : s.List()) listed.insert(info.artifact_id);
  for (size_t i = 0; i < c.docs.size(); ++i) {
    const Doc& d = c.docs[i];
    const bool acked = a.present.contains(i);
    const bool maybe = a.in_flight && a.in_flight->kind != Op::kGc && a.in_flight->doc == i;
    const bool there = listed.contains(d.id());
    if (!maybe) {
      EXPECT_EQ(there, acked) << where << ": doc " << i << (acked ? " acknowledged but lost" : " present, never acknowledged");
    }
    if (!there) {
      EXPECT_NE(s.Lookup(artifact::ProfileDigest(c.profile), d.tokens).artifact_id, d.id()) << where << ": doc " << i;
      continue;
    }
    // Present (acknowledged or in flight): whole and exact.
    auto loaded = LoadAll(s, d.id());
    ASSERT_TRUE(loaded.ok()) << where << ": doc " << i << ": " << loaded.status().ToString();
    EXPECT_EQ(*loaded, d.payloads) << where << ": doc " << i << " loads other bytes";
    const PrefixMatch m = s.Lookup(artifact::ProfileDigest(c.profile), d.tokens);
    EXPECT_EQ(m.artifact_id, d.id()) << where << ": doc " << i;
    EXPECT_EQ(m.matched_tokens, d.tokens.size()) << where << ": doc " << i;
  }
  for (const std::string& id : listed) {
    bool known = false;
    for (const Doc& d : c.docs) known |= d.id() == id;
    EXPECT_TRUE(known) << where << ": unknown artifact " << id;
  }
  auto v = s.Verify("");
  ASSERT_TRUE(v.ok()) << where << ": " << v.status().ToString();
  EXPECT_EQ(v->blocks_bad, 0u) << where << ": " << (v->problems.empty() ? "" : v->problems[0]);
  const DiskListing disk = ListBlocks(dir);
  EXPECT_EQ(disk.block_files, s.Metrics().blocks) << where << ": block files that no row names, or rows without files";
  EXPECT_TRUE(disk.others.empty()) << where << ": leftover " << disk.others.front();
}

// After a crash: the store reopens on what survived, holds every acknowledged
// artifact (CheckStore), and goes on — the failed op again and the next one
// (each crash point's run stays short; the points cover the whole workload).
void ReopenCheckAndGoOn(const StoreOptions& o, const std::string& dir, const std::vector<Op>& ops, const Acked& a,
                        const std::string& where) {
  auto s = Store::Open(o);
  ASSERT_TRUE(s.ok()) << where << ": reopen: " << s.status().ToString();
  CheckStore(**s, dir, a, where);
  if (::testing::Test::HasFailure()) return;
  Acked rest = a;
  RunUntilFailure(**s, ops, &rest, 2);
  ASSERT_TRUE(rest.failure.ok()) << where << ": after the restart: " << rest.failure.ToString();
  CheckStore(**s, dir, rest, where + ", then two more ops");
}

TEST(StoreFaults, WorkloadHasAHundredBlocksAndItsSyncPoints) {
  const Corpus& c = TheCorpus();
  EXPECT_GE(c.distinct_blocks, 100u);
  TempDir tmp(FastTempBase());
  auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"));
  auto s = Store::Open(FaultOptions(tmp.Sub("store"), ffs));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Acked a;
  RunUntilFailure(**s, Workload(), &a);
  ASSERT_TRUE(a.failure.ok()) << a.failure.ToString();
  // Every block file is one write and at least two syncs (file, directory).
  EXPECT_GE(ffs->writes(), c.distinct_blocks);
  EXPECT_GE(ffs->syncs(), 2 * c.distinct_blocks);
  EXPECT_EQ(ffs->unsynced_bytes(), 0u);
  CheckStore(**s, tmp.Sub("store"), a, "no faults");
  // The store never left anything it relies on unsynced: a crash now loses nothing.
  s->reset();
  ASSERT_TRUE(ffs->Crash().ok());
  auto reopened = Store::Open(FaultOptions(tmp.Sub("store"), ffs));
  ASSERT_TRUE(reopened.ok());
  CheckStore(**reopened, tmp.Sub("store"), a, "crash after the workload");
  std::printf("workload: %zu blocks, %llu writes, %llu sync points\n", c.distinct_blocks,
              static_cast<unsigned long long>(ffs->writes()), static_cast<unsigned long long>(ffs->syncs()));
}

// Sync points of one clean run of the workload (Open included).
uint64_t CountSyncPoints(uint64_t* writes) {
  TempDir tmp(FastTempBase());
  auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"));
  auto s = Store::Open(FaultOptions(tmp.Sub("store"), ffs));
  EXPECT_TRUE(s.ok());
  Acked a;
  RunUntilFailure(**s, Workload(), &a);
  EXPECT_TRUE(a.failure.ok()) << a.failure.ToString();
  if (writes != nullptr) *writes = ffs->writes();
  return ffs->syncs();
}

TEST(StoreFaults, CrashAtEverySyncPointLosesNothingAcknowledged) {
  uint64_t writes = 0;
  const uint64_t points = CountSyncPoints(&writes);
  ASSERT_GT(points, 200u);
  const std::vector<Op> ops = Workload();
  uint64_t crashed_in_put = 0, torn = 0, visited = 0;
  // One past the last point: the crash comes after the final commit.
  for (uint64_t k = 1; k <= points + 1; k = ::kvmart::testing::NextFaultPoint(k, points + 1)) {
    ++visited;
    const std::string where = "crash at sync " + std::to_string(k);
    TempDir tmp(FastTempBase());
    FaultFileSystem::Options fo;
    fo.tear_unsynced = true;  // a torn temporary file must not matter either
    fo.seed = k;
    auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"), fo);
    ffs->CrashAtSync(k);
    const std::string dir = tmp.Sub("store");
    Acked a;
    {
      auto s = Store::Open(FaultOptions(dir, ffs));
      if (s.ok()) RunUntilFailure(**s, ops, &a);
      if (k <= points) {
        ASSERT_TRUE(ffs->crashed()) << where;
        // The op that met the crash failed; it was not acknowledged.
        ASSERT_TRUE(!s.ok() || !a.failure.ok()) << where << ": the crash was acknowledged as success";
      }
      crashed_in_put += a.in_flight && a.in_flight->kind == Op::kPut;
      torn += ffs->unsynced_bytes() > 0;
    }
    ASSERT_TRUE(ffs->Crash().ok()) << where;
    ReopenCheckAndGoOn(FaultOptions(dir, ffs), dir, ops, a, where);
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(crashed_in_put, visited / 2);
  EXPECT_GT(torn, 0u) << "no crash found unsynced bytes to tear";
  std::printf("crash points: %llu of %llu (%llu inside a publish, %llu with unsynced bytes)\n",
              static_cast<unsigned long long>(visited), static_cast<unsigned long long>(points + 1),
              static_cast<unsigned long long>(crashed_in_put), static_cast<unsigned long long>(torn));
}

// The catalog's side: the store's SQLite catalog on the fault VFS too, and a
// crash at each of its syncs (each commit's WAL sync). The file system stops
// with it, and both lose what they had not synced.
TEST(StoreFaults, CrashAtEveryCatalogSyncLosesNothingAcknowledged) {
  const std::vector<Op> ops = Workload();
  uint64_t points = 0;
  {
    TempDir tmp(FastTempBase());
    FaultVfs vfs("kvmart-store-catalog-count");
    auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"));
    StoreOptions o = FaultOptions(tmp.Sub("store"), ffs);
    o.catalog_sqlite_vfs = vfs.name();
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    Acked a;
    RunUntilFailure(**s, ops, &a);
    ASSERT_TRUE(a.failure.ok()) << a.failure.ToString();
    points = vfs.syncs();
  }
  ASSERT_GT(points, ops.size());  // the migration's and every change's commit
  uint64_t lost_commits = 0;
  for (uint64_t k = 1; k <= points; ++k) {
    const std::string where = "crash at catalog sync " + std::to_string(k);
    TempDir tmp(FastTempBase());
    FaultVfs vfs("kvmart-store-catalog-crash");
    auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"));
    vfs.CrashAtSync(k);
    vfs.OnCrash([&ffs] { ffs->Stop(); });  // one machine: both stop at once
    const std::string dir = tmp.Sub("store");
    StoreOptions o = FaultOptions(dir, ffs);
    o.catalog_sqlite_vfs = vfs.name();
    Acked a;
    {
      auto s = Store::Open(o);
      if (s.ok()) RunUntilFailure(**s, ops, &a);
      ASSERT_TRUE(vfs.crashed()) << where;
      ASSERT_TRUE(!s.ok() || !a.failure.ok()) << where << ": the crash was acknowledged as success";
      EXPECT_TRUE(ffs->crashed()) << where;
      lost_commits += vfs.unsynced_writes() > 0;
    }
    ASSERT_TRUE(vfs.Crash().ok()) << where;
    ASSERT_TRUE(ffs->Crash().ok()) << where;
    ReopenCheckAndGoOn(o, dir, ops, a, where);
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(lost_commits, 0u) << "no crash lost an unsynced commit";
  std::printf("catalog crash points: %llu (%llu lost an unsynced commit)\n", static_cast<unsigned long long>(points),
              static_cast<unsigned long long>(lost_commits));
}

// The N-th write or sync fails with `err`, for every N of the workload.
void FailEveryN(bool sync, int err) {
  uint64_t writes = 0;
  const uint64_t syncs = CountSyncPoints(&writes);
  const uint64_t total = sync ? syncs : writes;
  ASSERT_GT(total, 100u);
  const std::vector<Op> ops = Workload();
  for (uint64_t n = 1; n <= total; n = ::kvmart::testing::NextFaultPoint(n, total)) {
    const std::string where = std::string(sync ? "fsync " : "write ") + std::to_string(n) + " fails with " +
                              (err == ENOSPC ? "ENOSPC" : "EIO");
    TempDir tmp(FastTempBase());
    auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"));
    if (sync)
      ffs->FailSync(n, err);
    else
      ffs->FailWrite(n, err);
    const std::string dir = tmp.Sub("store");
    auto s = Store::Open(FaultOptions(dir, ffs));
    Acked a;
    Status failed;
    if (!s.ok()) {
      failed = s.status();  // a sync of Open's own directories
      s = Store::Open(FaultOptions(dir, ffs));
      ASSERT_TRUE(s.ok()) << where << ": reopen after a failed open: " << s.status().ToString();
    } else {
      RunUntilFailure(**s, ops, &a);
      failed = a.failure;
      ASSERT_TRUE(a.in_flight.has_value()) << where << ": the fault was acknowledged as success";
      EXPECT_EQ(a.in_flight->kind, Op::kPut) << where;
    }
    if (err == ENOSPC) {
      EXPECT_TRUE(failed.IsDiskFull()) << where << ": " << failed.ToString();
      EXPECT_EQ(failed.code(), Status::Code::kResourceExhausted) << where;
    } else {
      EXPECT_EQ(failed.code(), Status::Code::kIOError) << where << ": " << failed.ToString();
    }
    // Never acknowledged, nothing of it visible, nothing of it left on disk.
    a.in_flight.reset();
    CheckStore(**s, dir, a, where);
    if (::testing::Test::HasFailure()) return;
    // Usable: the failed publish again, and the next op. What they
    // acknowledged is durable too: a crash now loses none of it (a directory
    // whose sync failed must not be taken for synced by the retry).
    RunUntilFailure(**s, ops, &a, 2);
    ASSERT_TRUE(a.failure.ok()) << where << ": after the fault: " << a.failure.ToString();
    s->reset();
    ASSERT_TRUE(ffs->Crash().ok());
    s = Store::Open(FaultOptions(dir, ffs));
    ASSERT_TRUE(s.ok()) << where << ": reopen after a crash: " << s.status().ToString();
    CheckStore(**s, dir, a, where + ", then two more ops, then a crash");
    if (::testing::Test::HasFailure()) return;
  }
  std::printf("%s: %llu fault points, each failed its publish cleanly\n", sync ? "fsync" : "write",
              static_cast<unsigned long long>(total));
}

TEST(StoreFaults, EveryFailedWriteWithEioIsRefusedAndTheStoreGoesOn) { FailEveryN(false, EIO); }
TEST(StoreFaults, EveryFailedWriteWithEnospcIsDiskFull) { FailEveryN(false, ENOSPC); }
TEST(StoreFaults, EveryFailedFsyncWithEioIsNeverAcknowledged) { FailEveryN(true, EIO); }
TEST(StoreFaults, EveryFailedFsyncWithEnospcIsDiskFull) { FailEveryN(true, ENOSPC); }

// The harness bites: a store that skips fsync (durable = false) loses block
// bytes at a crash while its catalog keeps the rows. Torn and missing files
// must then fail their loads with DataLoss; no load returns other bytes.
TEST(StoreFaults, WithoutFsyncACrashTearsBlocksAndLoadsSayDataLoss) {
  const Corpus& c = TheCorpus();
  TempDir tmp(FastTempBase());
  FaultFileSystem::Options fo;
  fo.tear_unsynced = true;
  fo.seed = 3;
  fo.directory_ops_durable = true;  // the names survive, the bytes need not
  auto ffs = std::make_shared<FaultFileSystem>(tmp.Sub("scratch"), fo);
  const std::string dir = tmp.Sub("store");
  {
    StoreOptions o = FaultOptions(dir, ffs);
    o.durable = false;
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok());
    Acked a;
    RunUntilFailure(**s, Workload(), &a);
    ASSERT_TRUE(a.failure.ok()) << a.failure.ToString();
    EXPECT_EQ(ffs->syncs(), 0u);
    EXPECT_GT(ffs->unsynced_bytes(), 0u);
  }
  ASSERT_TRUE(ffs->Crash().ok());
  auto s = Store::Open(FaultOptions(dir, ffs));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  size_t exact = 0, data_loss = 0;
  for (const Doc& d : c.docs) {
    auto loaded = LoadAll(**s, d.id());
    if (loaded.ok()) {
      EXPECT_EQ(*loaded, d.payloads) << "doc " << d.id() << " loaded other bytes";
      ++exact;
    } else {
      EXPECT_TRUE(loaded.status().IsDataLoss()) << loaded.status().ToString();
      EXPECT_NE(loaded.status().message().find("data loss: artifact " + d.id()), std::string::npos)
          << loaded.status().ToString();
      ++data_loss;
    }
  }
  EXPECT_GT(data_loss, 0u) << "a crash without fsync lost nothing: the fault file system does not bite";
  auto v = (*s)->Verify("");
  ASSERT_TRUE(v.ok());
  EXPECT_GT(v->blocks_bad, 0u);
  std::printf("without fsync: %zu documents exact, %zu DataLoss, %llu of %llu blocks bad\n", exact, data_loss,
              static_cast<unsigned long long>(v->blocks_bad), static_cast<unsigned long long>(v->blocks_checked));
}

}  // namespace
}  // namespace kvmart::store
