// libFuzzer target for the .kva container parser and the lossless block decoder.
//
// Build and run (clang):
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DKVMART_FUZZ=ON
//   cmake --build build-fuzz --target kvmart-fuzz-kva
//   build-fuzz/kvmart-fuzz-kva -max_total_time=60 -rss_limit_mb=2048 tests/fuzz/corpus
// Any crash, sanitizer report, leak or allocation above the RSS limit is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "artifact/codec.h"
#include "artifact/container.h"

using namespace kvmart::artifact;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  ReaderOptions opts;
  opts.require_signature = false;          // reach the block paths with unsigned inputs too
  opts.max_block_raw_bytes = 4u << 20;     // keep each run's memory small
  auto r = ArtifactReader::OpenBytes(in, opts);
  if (r.ok()) {
    (void)r->signature_status();
    for (size_t i = 0; i < r->manifest().blocks.size(); ++i) (void)r->ReadBlock(i);
  }
  // The block decoder on its own (checksums would otherwise shield it from
  // mutated bytes): the first byte picks the dtype, the output size comes from
  // the stream's value-count field when it is small, else a fixed size.
  if (size >= 1) {
    KvDtype dtype = (data[0] & 1) ? KvDtype::kF16 : KvDtype::kBf16;
    std::span<const uint8_t> stream = in.subspan(1);
    size_t out_size = 512;
    if (stream.size() >= 16) {
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | stream[8 + i];
      if (n <= (1u << 16)) out_size = 2 * n;
    }
    std::vector<uint8_t> out(out_size);
    (void)DecodeBlock(Codec::kLossless, dtype, stream, out);
  }
  return 0;
}
