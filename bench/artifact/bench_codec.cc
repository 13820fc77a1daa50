// kvmart-bench-codec: the lossless KV codec against plain zstd -3 and lz4 on the
// same raw bytes, in the same run, plus the Shannon bound of the exponent plane.
//
//   kvmart-bench-codec [--input FILE --shape L,H,D] [--dtype bf16|f16]
//                      [--tokens N] [--block-tokens 256] [--repeat 3] [--threads T]
//
// FILE holds a whole document's KV in the block layout with one block spanning all
// tokens: per layer, K then V, each [tokens][kv_heads][head_dim] of 16-bit LE
// values. Without --input, deterministic synthetic KV-like data is used (per-channel
// Gaussian with log-normal channel scales and outlier K channels), and the output
// says so. All speeds are single-thread (per core) unless labelled otherwise.
#include <lz4.h>
#include <zstd.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/usage.h"
#include "artifact/codec.h"
#include "artifact/parallel.h"
#include "synthetic_kv.h"

using namespace kvmart::artifact;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string input;
  KvShape shape{28, 8, 128, KvDtype::kBf16};  // Qwen3-0.6B
  uint64_t tokens = 512;
  uint64_t block_tokens = 256;
  int repeat = 3;
  unsigned threads = 0;
};

const kvmart::bench::Usage& UsageText() {
  static const kvmart::bench::Usage usage(
      "usage: kvmart-bench-codec [--input FILE --shape L,H,D] [--dtype bf16|f16] [--tokens N]\n"
      "                          [--block-tokens N] [--repeat R] [--threads T]\n"
      "Codec encode/decode throughput against memcpy.\n");
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
    if (k == "--input") a.input = val();
    else if (k == "--shape") {
      unsigned l, h, d;
      if (std::sscanf(val().c_str(), "%u,%u,%u", &l, &h, &d) != 3) Usage("--shape wants L,H,D");
      a.shape.num_layers = l, a.shape.num_kv_heads = h, a.shape.head_dim = d;
    } else if (k == "--dtype") {
      auto d = ParseKvDtype(val());
      if (!d.ok()) Usage(d.status().message().c_str());
      a.shape.dtype = *d;
    } else if (k == "--tokens") a.tokens = std::stoull(val());
    else if (k == "--block-tokens") a.block_tokens = std::stoull(val());
    else if (k == "--repeat") a.repeat = std::stoi(val());
    else if (k == "--threads") a.threads = static_cast<unsigned>(std::stoul(val()));
    else Usage(("unknown option " + k).c_str());
  }
  if (!a.shape.Validate().ok() || a.block_tokens == 0 || a.repeat < 1) Usage("bad shape, block size or repeat");
  return a;
}

// Slices the whole-document layout into block payloads (same layout per block).
std::vector<std::vector<uint8_t>> SliceBlocks(const std::vector<uint8_t>& doc, const KvShape& s, uint64_t tokens,
                                              uint64_t bs) {
  const uint64_t row = uint64_t{s.num_kv_heads} * s.head_dim * 2;
  std::vector<std::vector<uint8_t>> blocks;
  for (uint64_t b = 0; b < tokens; b += bs) {
    uint64_t n = std::min(bs, tokens - b);
    std::vector<uint8_t> out;
    out.reserve(n * s.BytesPerToken());
    for (uint64_t plane = 0; plane < 2ull * s.num_layers; ++plane) {
      const uint8_t* src = doc.data() + plane * tokens * row + b * row;
      out.insert(out.end(), src, src + n * row);
    }
    blocks.push_back(std::move(out));
  }
  return blocks;
}

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Per-core speed = bytes / CPU seconds of this thread, so that other processes
// on a shared machine do not distort the figure (wall time would).
double ThreadCpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Result {
  std::string name;
  uint64_t raw = 0, stored = 0;
  double enc_s = 0, dec_s = 1e30;
};

using EncodeFn = std::function<std::vector<uint8_t>(const std::vector<uint8_t>&)>;
using DecodeFn = std::function<bool(const std::vector<uint8_t>&, std::vector<uint8_t>&)>;

Result Measure(const std::string& name, const std::vector<std::vector<uint8_t>>& blocks, int repeat,
               const EncodeFn& enc, const DecodeFn& dec) {
  Result r;
  r.name = name;
  std::vector<std::vector<uint8_t>> stored(blocks.size());
  double t0 = ThreadCpuNow();
  for (size_t i = 0; i < blocks.size(); ++i) stored[i] = enc(blocks[i]);
  r.enc_s = ThreadCpuNow() - t0;
  for (size_t i = 0; i < blocks.size(); ++i) r.raw += blocks[i].size(), r.stored += stored[i].size();
  std::vector<std::vector<uint8_t>> out(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) out[i].resize(blocks[i].size());
  for (int rep = 0; rep < repeat; ++rep) {
    double d0 = ThreadCpuNow();
    for (size_t i = 0; i < blocks.size(); ++i)
      if (!dec(stored[i], out[i])) {
        std::fprintf(stderr, "%s: decode failed\n", name.c_str());
        std::exit(1);
      }
    r.dec_s = std::min(r.dec_s, ThreadCpuNow() - d0);
  }
  for (size_t i = 0; i < blocks.size(); ++i)
    if (out[i] != blocks[i]) {
      std::fprintf(stderr, "%s: round trip is NOT bit-exact\n", name.c_str());
      std::exit(1);
    }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  std::vector<uint8_t> doc;
  const char* source;
  if (!a.input.empty()) {
    std::ifstream in(a.input, std::ios::binary);
    if (!in) Usage(("cannot open " + a.input).c_str());
    doc.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (doc.empty() || doc.size() % a.shape.BytesPerToken() != 0)
      Usage("input size is not a whole number of tokens for --shape");
    a.tokens = doc.size() / a.shape.BytesPerToken();
    source = "input file";
  } else {
    // Generate per 256-token slab so the generator's layout matches a document.
    doc.resize(a.tokens * a.shape.BytesPerToken());
    const uint64_t row = uint64_t{a.shape.num_kv_heads} * a.shape.head_dim * 2;
    for (uint64_t b = 0; b < a.tokens; b += 256) {
      uint64_t n = std::min<uint64_t>(256, a.tokens - b);
      auto slab = testing::SyntheticKv(a.shape, n, 1, b);
      for (uint64_t plane = 0; plane < 2ull * a.shape.num_layers; ++plane)
        std::memcpy(doc.data() + plane * a.tokens * row + b * row, slab.data() + plane * n * row, n * row);
    }
    source = "SYNTHETIC KV-like data (no --input given)";
  }
  auto blocks = SliceBlocks(doc, a.shape, a.tokens, a.block_tokens);
  std::printf("data: %s\nshape: %u layers x %u kv heads x %u head_dim, %s; %llu tokens; %zu blocks of <= %llu tokens; "
              "%.1f MB raw\n",
              source, a.shape.num_layers, a.shape.num_kv_heads, a.shape.head_dim,
              std::string(KvDtypeName(a.shape.dtype)).c_str(), static_cast<unsigned long long>(a.tokens),
              blocks.size(), static_cast<unsigned long long>(a.block_tokens), doc.size() / 1e6);

  // Entropy of the planes over the whole input.
  std::vector<uint8_t> e(doc.size() / 2), m(doc.size() / 2);
  SplitPlanes(a.shape.dtype, doc, e.data(), m.data());
  double he = ByteEntropyBits(e), hm = ByteEntropyBits(m);
  std::printf("order-0 entropy: E plane %.3f bits/value, M plane %.3f bits/value\n", he, hm);
  std::printf("Shannon bound, E entropy-coded + M stored: ratio %.3fx (%.3f bits/value); both planes at entropy: "
              "%.3fx\n\n",
              16.0 / (8.0 + he), 8.0 + he, 16.0 / (he + hm));

  const KvDtype dt = a.shape.dtype;
  auto lossless = [&](std::optional<PlaneMethod> force) -> EncodeFn {
    return [dt, force](const std::vector<uint8_t>& raw) {
      EncodeOptions o;
      o.force_exponent_method = force;
      return std::move(EncodeBlock(Codec::kLossless, dt, raw, o)).value();
    };
  };
  DecodeFn lossless_dec = [dt](const std::vector<uint8_t>& s, std::vector<uint8_t>& out) {
    return DecodeBlock(Codec::kLossless, dt, s, out).ok();
  };
  std::vector<Result> results;
  results.push_back(Measure("lossless (default policy)", blocks, a.repeat, lossless(std::nullopt), lossless_dec));
  results.push_back(Measure("lossless, E=zstd-3", blocks, a.repeat, lossless(PlaneMethod::kZstd), lossless_dec));
  results.push_back(Measure("lossless, E=rANS", blocks, a.repeat, lossless(PlaneMethod::kRans), lossless_dec));
  results.push_back(Measure("lossless, E=nibble", blocks, a.repeat, lossless(PlaneMethod::kNibble), lossless_dec));
  results.push_back(Measure(
      "zstd -3 (raw bytes)", blocks, a.repeat,
      [](const std::vector<uint8_t>& raw) {
        std::vector<uint8_t> out(ZSTD_compressBound(raw.size()));
        out.resize(ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 3));
        return out;
      },
      [](const std::vector<uint8_t>& s, std::vector<uint8_t>& out) {
        return ZSTD_decompress(out.data(), out.size(), s.data(), s.size()) == out.size();
      }));
  results.push_back(Measure(
      "lz4 (raw bytes)", blocks, a.repeat,
      [](const std::vector<uint8_t>& raw) {
        std::vector<uint8_t> out(LZ4_compressBound(static_cast<int>(raw.size())));
        out.resize(LZ4_compress_default(reinterpret_cast<const char*>(raw.data()), reinterpret_cast<char*>(out.data()),
                                        static_cast<int>(raw.size()), static_cast<int>(out.size())));
        return out;
      },
      [](const std::vector<uint8_t>& s, std::vector<uint8_t>& out) {
        return LZ4_decompress_safe(reinterpret_cast<const char*>(s.data()), reinterpret_cast<char*>(out.data()),
                                   static_cast<int>(s.size()), static_cast<int>(out.size())) ==
               static_cast<int>(out.size());
      }));
  results.push_back(Measure(
      "raw (memcpy)", blocks, a.repeat, [](const std::vector<uint8_t>& raw) { return raw; },
      [](const std::vector<uint8_t>& s, std::vector<uint8_t>& out) {
        std::memcpy(out.data(), s.data(), out.size());
        return true;
      }));

  std::printf("speeds: GB of raw KV per CPU-second of one thread (per core), best of %d decodes\n", a.repeat);
  std::printf("%-36s %8s %14s %14s\n", "codec (all round trips bit-exact)", "ratio", "encode GB/s", "decode GB/s");
  for (const auto& r : results)
    std::printf("%-36s %7.3fx %14.3f %14.3f\n", r.name.c_str(), double(r.raw) / r.stored, r.raw / r.enc_s / 1e9,
                r.raw / r.dec_s / 1e9);

  // Parallel decode over blocks, as ArtifactReader::ReadAllBlocks does it.
  unsigned threads = a.threads ? a.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<uint8_t>> stored(blocks.size()), out(blocks.size());
  auto enc = lossless(std::nullopt);
  for (size_t i = 0; i < blocks.size(); ++i) stored[i] = enc(blocks[i]), out[i].resize(blocks[i].size());
  double best = 1e30;
  for (int rep = 0; rep < a.repeat; ++rep) {
    auto t0 = Clock::now();
    kvmart::Status s = ParallelFor(blocks.size(), threads, [&](size_t i) { return DecodeBlock(Codec::kLossless, dt, stored[i], out[i]); });
    best = std::min(best, Seconds(t0, Clock::now()));
    if (!s.ok()) return 1;
  }
  std::printf("\nlossless decode, parallel over blocks, %u threads: %.3f GB/s total (wall clock; machine load "
              "affects it)\n",
              threads, doc.size() / best / 1e9);
  return 0;
}
