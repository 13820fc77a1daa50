#include <gtest/gtest.h>

#include "artifact/codec.h"
#include "artifact/parallel.h"
#include "synthetic_kv.h"

namespace kvmart::artifact {
namespace {

using testing::SplitMix64;

void ExpectRoundTrip(KvDtype dtype, const std::vector<uint8_t>& raw, const EncodeOptions& opts = {}) {
  for (Codec c : {Codec::kRaw, Codec::kLossless}) {
    auto enc = EncodeBlock(c, dtype, raw, opts);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    if (c == Codec::kLossless) {
      EXPECT_LE(enc->size(), raw.size() + 32);
    }
    std::vector<uint8_t> out(raw.size(), 0xEE);
    Status s = DecodeBlock(c, dtype, *enc, out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(out, raw) << CodecName(c) << " " << KvDtypeName(dtype) << " size " << raw.size();
  }
}

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  SplitMix64 r(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(r.Next());
  return v;
}

std::vector<EncodeOptions> AllModes() {
  std::vector<EncodeOptions> m(4);
  m[1].force_exponent_method = PlaneMethod::kStored;
  m[2].force_exponent_method = PlaneMethod::kZstd;
  m[3].force_exponent_method = PlaneMethod::kRans;
  m.emplace_back().force_exponent_method = PlaneMethod::kNibble;
  return m;
}

TEST(Codec, RoundTripRandomZeroAndOddSizes) {
  for (KvDtype d : {KvDtype::kBf16, KvDtype::kF16}) {
    for (const auto& opts : AllModes()) {
      for (size_t n : {0u, 2u, 4u, 6u, 34u, 1002u, 65538u}) {
        ExpectRoundTrip(d, RandomBytes(n, n + 1), opts);
        ExpectRoundTrip(d, std::vector<uint8_t>(n, 0), opts);
        ExpectRoundTrip(d, std::vector<uint8_t>(n, 0x80), opts);  // -0.0 / mixed
      }
    }
  }
}

TEST(Codec, RoundTripSpecialValues) {
  // NaN (quiet and signalling payloads), ±Inf, denormals, ±0, max/min normal.
  std::vector<uint16_t> bf16 = {0x7fc0, 0x7f81, 0xffc1, 0x7f80, 0xff80, 0x0001, 0x807f, 0x0000, 0x8000, 0x7f7f, 0x0080};
  std::vector<uint16_t> f16 = {0x7e00, 0x7c01, 0xfe01, 0x7c00, 0xfc00, 0x0001, 0x83ff, 0x0000, 0x8000, 0x7bff, 0x0400};
  for (auto [d, vals] : {std::pair{KvDtype::kBf16, bf16}, std::pair{KvDtype::kF16, f16}}) {
    SplitMix64 r(3);
    std::vector<uint8_t> raw;
    for (int i = 0; i < 5001; ++i) {
      uint16_t v = vals[r.Next() % vals.size()];
      raw.push_back(static_cast<uint8_t>(v));
      raw.push_back(static_cast<uint8_t>(v >> 8));
    }
    for (const auto& opts : AllModes()) ExpectRoundTrip(d, raw, opts);
  }
}

TEST(Codec, CompressesKvLikeData) {
  KvShape shape{2, 4, 64, KvDtype::kBf16};
  auto raw = testing::SyntheticKv(shape, 64, 9);
  ExpectRoundTrip(KvDtype::kBf16, raw);
  auto enc = EncodeBlock(Codec::kLossless, KvDtype::kBf16, raw);
  ASSERT_TRUE(enc.ok());
  EXPECT_LT(enc->size() * 1.3, raw.size()) << "ratio " << double(raw.size()) / enc->size();
  shape.dtype = KvDtype::kF16;
  ExpectRoundTrip(KvDtype::kF16, testing::SyntheticKv(shape, 64, 9));
}

TEST(Codec, NibbleEscapesAtEveryPosition) {
  // ~20 distinct exponent-like bytes with skewed frequencies: the top 15 get
  // codes, the rest go through the exception list, in both the SIMD body and the
  // scalar tail (sizes around the 32-value SIMD step).
  EncodeOptions nib;
  nib.force_exponent_method = PlaneMethod::kNibble;
  for (KvDtype d : {KvDtype::kBf16, KvDtype::kF16}) {
    for (size_t n : {1u, 31u, 32u, 33u, 63u, 64u, 65u, 1000u, 4097u}) {
      SplitMix64 r(n * 31 + static_cast<int>(d));
      std::vector<uint8_t> raw(2 * n);
      for (size_t i = 0; i < n; ++i) {
        uint64_t x = r.Next();
        uint8_t e = static_cast<uint8_t>(120 + (x % 100 < 90 ? x % 8 : x % 20));
        uint8_t m = static_cast<uint8_t>(x >> 32);
        uint16_t v = d == KvDtype::kBf16 ? static_cast<uint16_t>(((m & 0x80) << 8) | (e << 7) | (m & 0x7f))
                                         : static_cast<uint16_t>((e << 8) | m);
        raw[2 * i] = static_cast<uint8_t>(v);
        raw[2 * i + 1] = static_cast<uint8_t>(v >> 8);
      }
      ExpectRoundTrip(d, raw, nib);
      auto enc = EncodeBlock(Codec::kLossless, d, raw, nib);
      ASSERT_TRUE(enc.ok());
      if (n >= 1000) {  // smaller planes are cheaper stored than with a table
        EXPECT_EQ((*enc)[2], static_cast<uint8_t>(PlaneMethod::kNibble)) << n;
      }
    }
  }
}

TEST(Codec, OddPayloadIsRejected) {
  std::vector<uint8_t> raw(7);
  EXPECT_FALSE(EncodeBlock(Codec::kLossless, KvDtype::kBf16, raw).ok());
}

TEST(Codec, DamagedStreamsNeverCrash) {
  KvShape shape{1, 2, 32, KvDtype::kBf16};
  auto raw = testing::SyntheticKv(shape, 16, 5);
  for (const auto& opts : AllModes()) {
    auto enc = EncodeBlock(Codec::kLossless, KvDtype::kBf16, raw, opts);
    ASSERT_TRUE(enc.ok());
    std::vector<uint8_t> out(raw.size());
    for (size_t i = 0; i < enc->size(); ++i) {
      for (int bit : {0, 7}) {
        auto bad = *enc;
        bad[i] ^= static_cast<uint8_t>(1 << bit);
        // Either an error or (for a flip in a stored plane) a wrong payload that
        // the payload SHA-256 catches upstream; never a crash or overrun.
        (void)DecodeBlock(Codec::kLossless, KvDtype::kBf16, bad, out);
      }
    }
    for (size_t n = 0; n < enc->size(); ++n) {
      std::span<const uint8_t> cut(enc->data(), n);
      EXPECT_FALSE(DecodeBlock(Codec::kLossless, KvDtype::kBf16, cut, out).ok()) << n;
    }
    std::vector<uint8_t> wrong(raw.size() + 2);
    EXPECT_FALSE(DecodeBlock(Codec::kLossless, KvDtype::kBf16, *enc, wrong).ok());
    EXPECT_FALSE(DecodeBlock(Codec::kLossless, KvDtype::kF16, *enc, out).ok());
  }
}

TEST(Rans, RoundTripsAndDetectsDamage) {
  for (size_t n : {1u, 2u, 3u, 100u, 4097u}) {
    std::vector<uint8_t> sym(n);
    SplitMix64 r(n);
    for (auto& s : sym) s = static_cast<uint8_t>(120 + (r.Next() % 7) * (r.Next() % 3));
    auto enc = RansEncode(sym);
    std::vector<uint8_t> out(n);
    ASSERT_TRUE(RansDecode(enc, out).ok());
    EXPECT_EQ(out, sym);
    enc.pop_back();
    EXPECT_FALSE(RansDecode(enc, out).ok());
  }
  // All 256 symbols present (forces the frequency-normalisation fix-up).
  std::vector<uint8_t> all(300);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i < 256 ? i : 7);
  std::vector<uint8_t> out(all.size());
  ASSERT_TRUE(RansDecode(RansEncode(all), out).ok());
  EXPECT_EQ(out, all);
}

TEST(Parallel, RunsAllAndReportsLowestError) {
  std::vector<int> hits(100);
  ASSERT_TRUE(ParallelFor(100, 4, [&](size_t i) { hits[i]++; return Status::Ok(); }).ok());
  for (int h : hits) EXPECT_EQ(h, 1);
  Status s = ParallelFor(10, 3, [](size_t i) {
    return i == 4 ? Status::Corruption("four") : Status::Ok();
  });
  EXPECT_EQ(s.message(), "four");
  EXPECT_TRUE(ParallelFor(0, 0, [](size_t) { return Status::Ok(); }).ok());
}

}  // namespace
}  // namespace kvmart::artifact
