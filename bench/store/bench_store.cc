// kvmart-bench-store: time to make a published artifact's KV ready in an
// engine-KV-sized destination buffer, from the store's memory tier and from its
// disk tier with a warm page cache, for the raw and lossless codecs — next to a
// plain memcpy and a plain read() of the same bytes, measured in the same run.
//
//   kvmart-bench-store [--quick] [--tokens N] [--shape L,H,D] [--block-tokens B]
//                      [--repeat R] [--threads T] [--dir DIR]
//                      [--db postgresql://… --blocks redis://…]
//
// With --db and --blocks, also a cross-node load: node A (catalog on that
// PostgreSQL, blocks in that Redis Cluster) publishes the raw artifact; each
// run opens a node B with an empty disk, which loads it from the shared tier
// (MGET of 1 MiB values, XXH3-128 and SHA-256 checked, written to B's disk),
// beside B loading it again from its own disk tier.
//
// Default: 3774 tokens of the Qwen3-4B KV shape (36 layers, 8 KV heads,
// head_dim 128, bf16: 147,456 bytes per token, ~556 MB). The KV is SYNTHETIC
// (per-channel Gaussian bf16 with log-normal channel scales and outlier K
// channels, the generator the codec tests use), so the lossless codec sees
// realistic exponent statistics; the output says so.
//
// "Ready" = every block verified (XXH3-128 of the stored bytes for disk loads),
// decoded, and copied into its place in the destination, which is allocated and
// faulted in once, as an engine's KV cache is. Figures are the best of R runs.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <functional>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/usage.h"
#include "artifact/chain_hash.h"
#include "artifact/container.h"
#include "artifact/parallel.h"
#include "store/block_files.h"
#include "store/redis_tier.h"
#include "store/store.h"
#include "synthetic_kv.h"

using namespace kvmart;
using namespace kvmart::artifact;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

struct Args {
  uint64_t tokens = 3774;
  KvShape shape{36, 8, 128, KvDtype::kBf16};  // Qwen3-4B
  uint32_t block_tokens = 256;
  int repeat = 3;
  unsigned threads = 0;
  std::string dir;
  std::string db, blocks;
};

const kvmart::bench::Usage& UsageText() {
  static const kvmart::bench::Usage usage(
      "usage: kvmart-bench-store [--quick] [--tokens N] [--shape L,H,D] [--block-tokens B]\n"
      "                          [--repeat R] [--threads T] [--dir DIR]\n"
      "                          [--db postgresql://... --blocks redis://host:port,...]\n"
      "Store load throughput, memory and disk tiers, against memcpy and read();\n"
      "with --db and --blocks also a cross-node load from the shared block tier.\n");
  return usage;
}

[[noreturn]] void Usage(const char* msg) { UsageText().Fail(msg); }

Args Parse(int argc, char** argv) {
  UsageText().HandleHelp(argc, argv);
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--quick") {
      a.tokens = 600;
      a.shape = {8, 8, 128, KvDtype::kBf16};
      a.repeat = 2;
    } else if (k == "--tokens") a.tokens = std::stoull(val());
    else if (k == "--shape") {
      unsigned l, h, d;
      if (std::sscanf(val().c_str(), "%u,%u,%u", &l, &h, &d) != 3) Usage("--shape wants L,H,D");
      a.shape.num_layers = l, a.shape.num_kv_heads = h, a.shape.head_dim = d;
    } else if (k == "--block-tokens") a.block_tokens = static_cast<uint32_t>(std::stoul(val()));
    else if (k == "--repeat") a.repeat = std::stoi(val());
    else if (k == "--threads") a.threads = static_cast<unsigned>(std::stoul(val()));
    else if (k == "--dir") a.dir = val();
    else if (k == "--db") a.db = val();
    else if (k == "--blocks") a.blocks = val();
    else Usage(("unknown option " + k).c_str());
  }
  if (!a.shape.Validate().ok() || a.block_tokens == 0 || a.repeat < 1 || a.tokens == 0) Usage("bad arguments");
  if (a.db.empty() != a.blocks.empty()) Usage("--db and --blocks go together");
  return a;
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

double BestOf(int repeat, const std::function<void()>& run) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = Clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  const uint64_t bpt = a.shape.BytesPerToken();
  const uint64_t total = a.tokens * bpt;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = a.threads != 0 ? a.threads : hw;
  std::printf("kvmart-bench-store: %llu tokens, shape %u layers x %u kv heads x %u head_dim bf16 "
              "(%llu bytes/token, %.1f MB), blocks of %u tokens\n",
              static_cast<unsigned long long>(a.tokens), a.shape.num_layers, a.shape.num_kv_heads, a.shape.head_dim,
              static_cast<unsigned long long>(bpt), total / 1e6, a.block_tokens);
  std::printf("data: SYNTHETIC KV-like bf16 (per-channel Gaussian, log-normal channel scales, outlier K channels)\n");
  std::printf("machine: %u hardware threads; store decode/prefetch threads: %u; best of %d runs\n\n", hw, threads,
              a.repeat);

  Profile profile;
  profile.weights_digest = std::string(64, 'a');
  profile.config_digest = std::string(64, 'b');
  profile.tokenizer_digest = std::string(64, 'c');
  profile.block_size = a.block_tokens;
  profile.shape = a.shape;
  std::vector<uint32_t> tokens(a.tokens);
  for (uint64_t i = 0; i < a.tokens; ++i) tokens[i] = static_cast<uint32_t>((i * 7919 + 11) % 151936);

  // Synthetic payloads, block by block (generated in parallel).
  const size_t nblocks = (a.tokens + a.block_tokens - 1) / a.block_tokens;
  std::vector<std::vector<uint8_t>> payloads(nblocks);
  auto t_gen = Clock::now();
  Check(ParallelFor(nblocks, threads,
                    [&](size_t i) {
                      const uint64_t begin = i * a.block_tokens;
                      const uint64_t end = std::min<uint64_t>(a.tokens, begin + a.block_tokens);
                      payloads[i] = testing::SyntheticKv(a.shape, end - begin, 42, begin);
                      return Status::Ok();
                    }),
        "generate");
  std::printf("generated %.1f MB of synthetic KV in %.1f s\n", total / 1e6,
              std::chrono::duration<double>(Clock::now() - t_gen).count());

  std::array<uint8_t, 32> seed{};
  seed.fill(7);
  auto key = SigningKey::FromSeed(seed);
  Check(key.status(), "key");

  // The destination: one engine-KV-sized buffer, faulted in once.
  std::vector<uint8_t> dest(total);
  std::memset(dest.data(), 1, dest.size());
  std::vector<uint64_t> offset(nblocks);
  for (size_t i = 0; i < nblocks; ++i) offset[i] = i * a.block_tokens * bpt;

  // Baseline 1: memcpy of the same bytes into the destination.
  const double t_memcpy = BestOf(a.repeat, [&] {
    for (size_t i = 0; i < nblocks; ++i) std::memcpy(dest.data() + offset[i], payloads[i].data(), payloads[i].size());
  });

  std::string root = a.dir;
  bool remove_root = false;
  if (root.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "kvmart-bench-store-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) Check(Status::IOError("mkdtemp"), "temp dir");
    root = tmpl;
    remove_root = true;
  }

  struct Row {
    std::string codec;
    double stored_mb, put_s, memory_s, disk_s, read_s, memory_into_s, disk_into_s;
  };
  std::vector<Row> rows;
  double shared_s = 0, shared_local_s = 0;  // cross-node: from the shared tier, then B's own disk
  for (Codec codec : {Codec::kRaw, Codec::kLossless}) {
    const std::string dir = root + "/" + std::string(CodecName(codec));
    auto writer = ArtifactWriter::Create(profile, tokens, codec);
    Check(writer.status(), "writer");
    std::vector<std::span<const uint8_t>> spans(payloads.begin(), payloads.end());
    Check(writer->AddBlocks(spans, threads), "encode");
    ArtifactMetadata meta;
    meta.title = "bench (synthetic KV)";
    auto art = std::move(*writer).Finish(Sha256Of("probe"), meta, *key);
    Check(art.status(), "finish");
    const std::string id = art->manifest.artifact_id;
    Row row;
    row.codec = std::string(CodecName(codec));
    row.stored_mb = art->manifest.TotalStoredBytes() / 1e6;

    // Two ways to get the bytes into place: the consumer copies each shared
    // payload (what a consumer that needs its own layout does), or the store
    // writes each block straight into the destination (LoadOptions::destination).
    auto consume = [&](const store::LoadedBlock& b) {
      std::memcpy(dest.data() + offset[b.index], b.payload->data(), b.payload->size());
      return Status::Ok();
    };
    auto placed = [](const store::LoadedBlock&) { return Status::Ok(); };
    store::LoadOptions into;
    into.destination = [&](uint32_t i, uint64_t raw) { return std::span<uint8_t>(dest.data() + offset[i], raw); };
    {
      store::StoreOptions o;
      o.data_dir = dir;
      o.memory_budget_bytes = total + (64 << 20);
      o.decode_threads = threads;
      auto st = store::Store::Open(o);
      Check(st.status(), "open");
      auto t0 = Clock::now();
      Check((*st)->Put(*art), "put");
      row.put_s = std::chrono::duration<double>(Clock::now() - t0).count();
      Check((*st)->Load(id, {}, consume), "warm-up load");  // disk → memory (promotes)
      row.memory_s = BestOf(a.repeat, [&] { Check((*st)->Load(id, {}, consume), "memory load"); });
      row.memory_into_s = BestOf(a.repeat, [&] { Check((*st)->Load(id, into, placed), "memory load"); });
      auto m = (*st)->Metrics();
      if (m.hits_memory != 2 * a.repeat * nblocks) Check(Status::Internal("memory runs were not all memory hits"), "tiers");
    }
    {
      // The disk tier alone: a store without a memory tier, so each run reads,
      // checks and decodes every block (page cache warm from the runs above).
      store::StoreOptions o;
      o.data_dir = dir;
      o.memory_budget_bytes = 0;
      o.decode_threads = threads;
      auto st = store::Store::Open(o);
      Check(st.status(), "reopen");
      Check((*st)->Load(id, {}, consume), "warm page cache");
      row.disk_s = BestOf(a.repeat, [&] { Check((*st)->Load(id, {}, consume), "disk load"); });
      row.disk_into_s = BestOf(a.repeat, [&] { Check((*st)->Load(id, into, placed), "disk load"); });
      if ((*st)->Metrics().hits_memory != 0) Check(Status::Internal("disk runs hit memory"), "tiers");
    }
    if (codec == Codec::kRaw && !a.db.empty()) {
      auto tier = store::RedisBlockTier::Open(a.blocks);
      Check(tier.status(), "shared block tier");
      std::shared_ptr<store::SharedBlockTier> shared = std::move(tier).value();
      store::StoreOptions o;
      o.data_dir = dir + "-node-a";
      o.memory_budget_bytes = 0;
      o.decode_threads = threads;
      o.catalog = a.db;
      o.shared_blocks = shared;
      {
        auto node_a = store::Store::Open(o);
        Check(node_a.status(), "open node a");
        Check((*node_a)->Put(*art), "publish on node a");
      }
      shared_s = shared_local_s = 1e30;
      for (int r = 0; r < a.repeat; ++r) {
        store::StoreOptions ob = o;
        ob.data_dir = dir + "-node-b" + std::to_string(r);
        auto node_b = store::Store::Open(ob);
        Check(node_b.status(), "open node b");
        auto t0 = Clock::now();
        Check((*node_b)->Load(id, into, placed), "cross-node load");
        shared_s = std::min(shared_s, std::chrono::duration<double>(Clock::now() - t0).count());
        if ((*node_b)->Metrics().hits_shared != nblocks) Check(Status::Internal("not every block came from the shared tier"), "tiers");
        t0 = Clock::now();
        Check((*node_b)->Load(id, into, placed), "node b disk load");
        shared_local_s = std::min(shared_local_s, std::chrono::duration<double>(Clock::now() - t0).count());
        std::error_code ec;
        fs::remove_all(ob.data_dir, ec);
      }
      Check((*store::Store::Open(o))->Remove(id), "remove from the shared tier");
    }
    // Baseline 2: plain read() of the same block files (the raw codec's files
    // are exactly the payload bytes) into the destination, one thread.
    if (codec == Codec::kRaw) {
      store::BlockFiles files(PosixFileSystem(), dir + "/blocks", false);
      std::vector<std::string> paths;
      for (const auto& b : art->manifest.blocks) paths.push_back(files.PathFor({b.chain_hash, b.xxh3_128}));
      row.read_s = BestOf(a.repeat, [&] {
        for (size_t i = 0; i < nblocks; ++i) {
          int fd = ::open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) Check(Status::IOError(paths[i]), "open");
          size_t done = 0, want = payloads[i].size();
          while (done < want) {
            ssize_t n = ::read(fd, dest.data() + offset[i] + done, want - done);
            if (n <= 0) Check(Status::IOError(paths[i]), "read");
            done += static_cast<size_t>(n);
          }
          ::close(fd);
        }
      });
    } else {
      row.read_s = rows.front().read_s;
    }
    rows.push_back(row);
  }
  if (remove_root) {
    std::error_code ec;
    fs::remove_all(root, ec);
  }

  const double gbs = total / 1e9;
  std::printf("\nbaselines (same bytes, same run): memcpy %.3f s (%.2f GB/s); read() warm %.3f s (%.2f GB/s)\n\n",
              t_memcpy, gbs / t_memcpy, rows[0].read_s, gbs / rows[0].read_s);
  std::printf("%-9s %-13s %9s | %-29s | %-29s\n", "codec", "placement", "stored MB", "memory tier: s  GB/s  /memcpy",
              "disk tier warm: s  GB/s  /read()");
  for (const Row& r : rows) {
    for (int mode = 0; mode < 2; ++mode) {
      const double ms = mode == 0 ? r.memory_s : r.memory_into_s, ds = mode == 0 ? r.disk_s : r.disk_into_s;
      std::printf("%-9s %-13s %9.1f | %6.3f %6.2f %6.2fx          | %6.3f %6.2f %6.2fx\n", r.codec.c_str(),
                  mode == 0 ? "payload+copy" : "destination", r.stored_mb, ms, gbs / ms, t_memcpy / ms, ds, gbs / ds,
                  r.read_s / ds);
    }
  }
  for (const Row& r : rows) std::printf("put (verify + write + fsync) %s: %.2f s\n", r.codec.c_str(), r.put_s);
  if (!a.db.empty()) {
    std::printf("\ncross-node (raw, destination placement): node b, empty disk, from the shared tier %.3f s (%.2f GB/s); "
                "then from its own disk %.3f s (%.2f GB/s); shared / local disk = %.2fx the time\n",
                shared_s, gbs / shared_s, shared_local_s, gbs / shared_local_s, shared_s / shared_local_s);
  }
  std::printf("\ntargets: memory tier >= 0.5x memcpy; disk tier (warm) >= 0.6x read(), checksums included\n");
  bool ok = true;
  for (const Row& r : rows) ok = ok && t_memcpy / r.memory_into_s >= 0.5 && r.read_s / r.disk_into_s >= 0.6;
  std::printf("result (destination placement): %s\n", ok ? "targets met" : "TARGETS MISSED");
  return 0;
}
