// The kernel contract: portable == AVX2 bit for bit, and a row's result does not
// depend on how many rows share the call or on the thread count.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/exp.h"

namespace kvmart {
namespace {

std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed, float scale = 0.05f) {
  auto f = RandomFloats(n, seed, scale);
  std::vector<uint16_t> out(n);
  RoundToBf16(f.data(), n, out.data());
  return out;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class PathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CpuHasAvx2Fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  }
  const KernelOps& portable_ = GetKernelOps(KernelPath::kPortable);
  const KernelOps& avx2_ = GetKernelOps(KernelPath::kAvx2);
};

struct MatMulCase {
  size_t m, n, k;
  WeightDtype dtype;
};

class MatMulTest : public PathTest, public ::testing::WithParamInterface<MatMulCase> {
 protected:
  // The case's activations and packed weights.
  void MakeInputs() {
    const auto c = GetParam();
    x_ = RandomFloats(c.m * c.k, 1);
    std::vector<uint16_t> wb;
    std::vector<float> wf;
    const void* src;
    if (c.dtype == WeightDtype::kF32) {
      wf = RandomFloats(c.n * c.k, 2, 0.05f);
      src = wf.data();
    } else {
      wb = RandomBf16(c.n * c.k, 2);
      src = wb.data();
    }
    auto w = PackedMatrix::Pack(src, c.dtype, c.n, c.k);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    w_.emplace(std::move(w).value());
  }
  std::vector<float> x_;
  std::optional<PackedMatrix> w_;
};

TEST_P(MatMulTest, PathsAgreeAndRowsAreBatchInvariant) {
  const auto c = GetParam();
  ASSERT_NO_FATAL_FAILURE(MakeInputs());
  const auto& x = x_;
  const auto& w = w_;
  ThreadPool one(1), two(2);
  std::vector<float> yp(c.m * c.n), ya(c.m * c.n), ya2(c.m * c.n);
  MatMul(portable_, one, x.data(), c.m, c.k, *w, yp.data(), c.n);
  MatMul(avx2_, one, x.data(), c.m, c.k, *w, ya.data(), c.n);
  MatMul(avx2_, two, x.data(), c.m, c.k, *w, ya2.data(), c.n);
  EXPECT_TRUE(BitEqual(yp, ya));
  EXPECT_TRUE(BitEqual(ya, ya2));
  // Each row alone gives the same bits as inside the batch.
  for (size_t i = 0; i < c.m; i += std::max<size_t>(1, c.m / 5)) {
    std::vector<float> row(c.n);
    MatMul(avx2_, two, x.data() + i * c.k, 1, c.k, *w, row.data(), c.n);
    EXPECT_EQ(0, std::memcmp(row.data(), ya.data() + i * c.n, c.n * sizeof(float))) << "row " << i;
  }
  // And agrees with a double-precision reference to float accuracy.
  for (size_t i = 0; i < c.m; i += 3) {
    for (size_t n = 0; n < c.n; n += 7) {
      double ref = 0;
      for (size_t k = 0; k < c.k; ++k) ref += double(x[i * c.k + k]) * w->At(n, k);
      EXPECT_NEAR(ya[i * c.n + n], ref, 1e-4 * (1 + std::fabs(ref)));
    }
  }
}

// A test of its own, so that a CPU without AVX-512 reports it as skipped
// rather than passing without having checked it.
TEST_P(MatMulTest, Avx512AgreesAndRowsAreBatchInvariant) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const auto c = GetParam();
  ASSERT_NO_FATAL_FAILURE(MakeInputs());
  const auto& x = x_;
  const auto& w = w_;
  ThreadPool one(1), two(2);
  std::vector<float> yp(c.m * c.n);
  MatMul(portable_, one, x.data(), c.m, c.k, *w, yp.data(), c.n);
  // 512-bit vectors and 12-row blocks: more chains at once, the same chains.
  const KernelOps& avx512 = GetKernelOps(KernelPath::kAvx512);
  std::vector<float> yz(c.m * c.n), yz2(c.m * c.n);
  MatMul(avx512, one, x.data(), c.m, c.k, *w, yz.data(), c.n);
  MatMul(avx512, two, x.data(), c.m, c.k, *w, yz2.data(), c.n);
  EXPECT_TRUE(BitEqual(yp, yz)) << "avx512";
  EXPECT_TRUE(BitEqual(yz, yz2)) << "avx512, 2 threads";
  for (size_t i = 0; i < c.m; i += std::max<size_t>(1, c.m / 5)) {
    std::vector<float> row(c.n);
    MatMul(avx512, two, x.data() + i * c.k, 1, c.k, *w, row.data(), c.n);
    EXPECT_EQ(0, std::memcmp(row.data(), yz.data() + i * c.n, c.n * sizeof(float))) << "avx512 row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MatMulTest,
                         ::testing::Values(MatMulCase{1, 64, 64, WeightDtype::kBf16},
                                           MatMulCase{2, 96, 300, WeightDtype::kBf16},
                                           MatMulCase{3, 128, 513, WeightDtype::kBf16},
                                           MatMulCase{7, 48, 257, WeightDtype::kBf16},
                                           MatMulCase{37, 160, 600, WeightDtype::kBf16},
                                           MatMulCase{13, 80, 100, WeightDtype::kF32},
                                           MatMulCase{1, 256, 33, WeightDtype::kF32},
                                           // every row-block size of the 512-bit path (12, 11..7, 6..1)
                                           // with ragged panel counts and K over one reduction block
                                           MatMulCase{25, 272, 300, WeightDtype::kBf16},
                                           MatMulCase{11, 208, 257, WeightDtype::kBf16},
                                           MatMulCase{10, 144, 64, WeightDtype::kBf16},
                                           MatMulCase{6, 176, 270, WeightDtype::kBf16},
                                           MatMulCase{5, 112, 40, WeightDtype::kBf16},
                                           MatMulCase{4, 80, 300, WeightDtype::kBf16},
                                           MatMulCase{2, 208, 33, WeightDtype::kBf16},
                                           MatMulCase{9, 144, 260, WeightDtype::kF32},
                                           MatMulCase{8, 48, 17, WeightDtype::kF32}));

TEST(PackedMatrixTest, RejectsRowsNotMultipleOf16) {
  std::vector<uint16_t> w(15 * 4);
  auto m = PackedMatrix::Pack(w.data(), WeightDtype::kBf16, 15, 4);
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Status::Code::kInvalidArgument);
}

TEST(PackedMatrixTest, F16WidensExactly) {
  // 1.0, -2.0, smallest subnormal, 65504 (max), +inf
  const uint16_t h[] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00};
  EXPECT_EQ(F16ToF32(h[0]), 1.0f);
  EXPECT_EQ(F16ToF32(h[1]), -2.0f);
  EXPECT_EQ(F16ToF32(h[2]), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(h[3]), 65504.0f);
  EXPECT_TRUE(std::isinf(F16ToF32(h[4])));
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::nanf("")))));
}

// The narrowing the f16 checkpoint writer uses; checked once against GCC's
// _Float16 conversion over every non-NaN f32 (no mismatch), here on the cases
// that decide it: ties to even, the subnormal range and the edge of overflow.
TEST(F16Test, NarrowsToNearestEven) {
  auto bits = [](uint32_t u) { return F32ToF16(std::bit_cast<float>(u)); };
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00u);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000u);
  EXPECT_EQ(F32ToF16(0.0f), 0x0000u);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000u);
  EXPECT_EQ(bits(0x3f801000u), 0x3c00u);  // 1 + 2^-11: a tie, to the even 1.0
  EXPECT_EQ(bits(0x3f803000u), 0x3c02u);  // 1 + 3*2^-11: a tie, to the even 1 + 2^-9
  EXPECT_EQ(bits(0x3f801001u), 0x3c01u);  // just above the tie: up
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bffu);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bffu);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00u);  // the tie above the largest half: Inf
  EXPECT_EQ(F32ToF16(-1e9f), 0xfc00u);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400u);   // the smallest normal half
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001u);   // the smallest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000u);   // half of it: a tie, to zero
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001u);   // above the tie: up
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002u);   // 1.5 units: a tie, to the even 2
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400u);  // the largest subnormal's tie carries to normal
  const uint16_t nan = F32ToF16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00u, 0x7c00u);
  EXPECT_NE(nan & 0x3ffu, 0u);
  for (uint16_t h = 0; h < 0x7c00u; ++h) EXPECT_EQ(F32ToF16(F16ToF32(h)), h) << h;  // every finite half round-trips
}

TEST(ExpTest, AccurateOverRange) {
  for (float x = -80.0f; x < 80.0f; x += 0.0173f) {
    const double ref = std::exp(double(x));
    EXPECT_NEAR(KvExp(x), ref, ref * 4e-7) << x;
  }
  EXPECT_EQ(KvExp(0.0f), 1.0f);
}

TEST_F(PathTest, ElementwiseKernelsAgree) {
  const size_t n = 1029;
  auto x = RandomFloats(n, 5, 3.0f), w = RandomFloats(n, 6), u = RandomFloats(n, 7);
  std::vector<float> a(n), b(n);
  portable_.rms_norm(x.data(), w.data(), n, 1e-6f, a.data());
  avx2_.rms_norm(x.data(), w.data(), n, 1e-6f, b.data());
  EXPECT_TRUE(BitEqual(a, b));
  x[3] = 120.0f;
  x[4] = -120.0f;  // exp clamps on both paths alike
  portable_.silu_mul(x.data(), u.data(), n, a.data());
  avx2_.silu_mul(x.data(), u.data(), n, b.data());
  EXPECT_TRUE(BitEqual(a, b));
  for (size_t i = 0; i < n; i += 11) {
    double g = x[i], ref = g / (1 + std::exp(-g)) * u[i];
    EXPECT_NEAR(a[i], ref, 1e-5 * (1 + std::fabs(ref)));
  }
}

// One attention query over n_keys bf16 keys (in key tiles) and values.
struct AttentionCase {
  static constexpr size_t hd = 128, tile_stride = hd * kKeyTile;
  explicit AttentionCase(size_t n) : n_keys(n), tiles((n + 7) / 8) {
    auto kf = RandomFloats(tiles * tile_stride, 11 + n_keys), vf = RandomFloats(n_keys * hd, 12);
    k.resize(kf.size());
    v.resize(vf.size());
    RoundToBf16(kf.data(), kf.size(), k.data());
    RoundToBf16(vf.data(), vf.size(), v.data());
    q = RandomFloats(hd, 13);
    scores.resize(tiles * 8);
  }
  // The output of `ops` for this query.
  std::vector<float> Attend(const KernelOps& ops) {
    std::vector<float> out(hd);
    const uint16_t* kp[] = {k.data()};
    const uint16_t* vp[] = {v.data()};
    const size_t one_page = (n_keys + kAttentionPageQuantum - 1) / kAttentionPageQuantum * kAttentionPageQuantum;
    AttentionQuery a{q.data(), kp, tile_stride, vp, hd, one_page, n_keys, hd, 0.0883883f, scores.data(), out.data()};
    ops.attend(a);
    return out;
  }
  size_t n_keys, tiles;
  std::vector<uint16_t> k, v;
  std::vector<float> q, scores;
};

constexpr size_t kKeyCounts[] = {1, 5, 8, 17, 64, 301};

TEST_F(PathTest, AttentionAvx512AgreesWithPortable) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (size_t n_keys : kKeyCounts) {
    AttentionCase c(n_keys);
    EXPECT_TRUE(BitEqual(c.Attend(portable_), c.Attend(GetKernelOps(KernelPath::kAvx512)))) << "n_keys " << n_keys;
  }
}

TEST_F(PathTest, AttentionAgreesAcrossPathsAndMatchesReference) {
  const size_t hd = AttentionCase::hd, tile_stride = AttentionCase::tile_stride;
  for (size_t n_keys : kKeyCounts) {
    AttentionCase c(n_keys);
    const auto& q = c.q;
    const auto& k = c.k;
    const auto& v = c.v;
    const std::vector<float> outa = c.Attend(avx2_);
    EXPECT_TRUE(BitEqual(c.Attend(portable_), outa)) << n_keys;
    // Reference softmax attention in double.
    std::vector<double> s(n_keys);
    double mx = -1e300, sum = 0;
    for (size_t j = 0; j < n_keys; ++j) {
      double acc = 0;
      for (size_t d = 0; d < hd; ++d) acc += q[d] * double(Bf16ToF32(k[(j / 8) * tile_stride + d * 8 + j % 8]));
      s[j] = acc * 0.0883883;
      mx = std::max(mx, s[j]);
    }
    for (auto& e : s) sum += (e = std::exp(e - mx));
    for (size_t d = 0; d < hd; d += 9) {
      double ref = 0;
      for (size_t j = 0; j < n_keys; ++j) ref += s[j] * Bf16ToF32(v[j * hd + d]);
      EXPECT_NEAR(outa[d], ref / sum, 1e-4);
    }
  }
}

// Grouped attention shares K/V loads between queries; each query's bits must
// still be attend()'s, whatever the group size and however its n_keys differ
// (neighbouring tokens of one causal block).
TEST_F(PathTest, AttendGroupIsBitIdenticalToAttendPerQuery) {
  const size_t max_keys = 77, tiles = (max_keys + 7) / 8;
  const std::vector<std::vector<size_t>> cases = {
      {1}, {8, 8}, {33, 34}, {5, 6, 7}, {70, 70, 71, 71}, {1, 2, 3, 4}, {64, 77, 9, 40}, {17, 17, 17, 17}};
  // head_dim 24 leaves 8 dims after the 16-lane passes of the avx512 path.
  for (size_t hd : {size_t{128}, size_t{24}}) {
    const size_t tile_stride = hd * kKeyTile;
    auto kf = RandomFloats(tiles * tile_stride, 21), vf = RandomFloats(max_keys * hd, 22);
    std::vector<uint16_t> k(kf.size()), v(vf.size());
    RoundToBf16(kf.data(), kf.size(), k.data());
    RoundToBf16(vf.data(), vf.size(), v.data());
    auto qf = RandomFloats(kMaxAttendGroup * hd, 23, 2.0f);
    const uint16_t* kp[] = {k.data()};
    const uint16_t* vp[] = {v.data()};
    const size_t one_page = (max_keys + kAttentionPageQuantum - 1) / kAttentionPageQuantum * kAttentionPageQuantum;
    for (KernelPath path : SupportedKernelPaths()) {
      const KernelOps& ops = GetKernelOps(path);
      for (const auto& n_keys : cases) {
        const size_t count = n_keys.size();
        std::vector<float> scores(kMaxAttendGroup * tiles * 8), out(count * hd), one(hd), one_scores(tiles * 8);
        std::vector<AttentionQuery> group;
        for (size_t c = 0; c < count; ++c) {
          group.push_back({qf.data() + c * hd, kp, tile_stride, vp, hd, one_page, n_keys[c], hd, 0.0883883f,
                           scores.data() + c * tiles * 8, out.data() + c * hd});
        }
        ops.attend_group(group.data(), count);
        for (size_t c = 0; c < count; ++c) {
          AttentionQuery a = group[c];
          a.scores = one_scores.data();
          a.out = one.data();
          portable_.attend(a);
          std::vector<float> got(out.begin() + c * hd, out.begin() + (c + 1) * hd);
          EXPECT_TRUE(BitEqual(got, one)) << KernelPathName(path) << " head_dim " << hd << " count " << count
                                          << " query " << c << " n_keys " << n_keys[c];
        }
      }
    }
  }
}

// Paged attention: keys and values cut into pages of 64 positions, each page
// its own allocation, walked in position order. Every path gives the bits of
// the same keys in one contiguous run, for every n_keys (page boundaries
// inside score vectors' groups, inside e·V tails, exactly at page ends).
TEST_F(PathTest, PagedAttentionIsBitIdenticalToContiguous) {
  constexpr size_t kPage = kAttentionPageQuantum;
  for (size_t hd : {size_t{128}, size_t{24}}) {
    const size_t max_keys = 3 * kPage + 37, pages = (max_keys + kPage - 1) / kPage;
    const size_t tile_stride = hd * kKeyTile, tiles = pages * kPage / kKeyTile;
    auto kf = RandomFloats(tiles * tile_stride, 31), vf = RandomFloats(pages * kPage * hd, 32);
    std::vector<uint16_t> k(kf.size()), v(vf.size());
    RoundToBf16(kf.data(), kf.size(), k.data());
    RoundToBf16(vf.data(), vf.size(), v.data());
    // Pages copied out in reverse allocation order, so they are not adjacent.
    std::vector<std::vector<uint16_t>> kpages(pages), vpages(pages);
    std::vector<const uint16_t*> kp(pages), vp(pages);
    for (size_t p = pages; p-- > 0;) {
      kpages[p].assign(k.begin() + p * (kPage / kKeyTile) * tile_stride, k.begin() + (p + 1) * (kPage / kKeyTile) * tile_stride);
      vpages[p].assign(v.begin() + p * kPage * hd, v.begin() + (p + 1) * kPage * hd);
      kp[p] = kpages[p].data();
      vp[p] = vpages[p].data();
    }
    const uint16_t* kc[] = {k.data()};
    const uint16_t* vc[] = {v.data()};
    auto qf = RandomFloats(kMaxAttendGroup * hd, 33, 2.0f);
    const std::vector<std::vector<size_t>> cases = {{1},  {63}, {64}, {65}, {127, 128, 129, 130}, {200, 201},
                                                    {60, 61, 62, 63}, {64, 65, 66, 67}, {max_keys}, {150, 229, 17, 64}};
    for (KernelPath path : SupportedKernelPaths()) {
      const KernelOps& ops = GetKernelOps(path);
      for (const auto& n_keys : cases) {
        const size_t count = n_keys.size();
        std::vector<float> scores(kMaxAttendGroup * tiles * 8), paged(count * hd), flat(count * hd);
        std::vector<AttentionQuery> group;
        for (size_t c = 0; c < count; ++c) {
          group.push_back({qf.data() + c * hd, kp.data(), tile_stride, vp.data(), hd, kPage, n_keys[c], hd, 0.0883883f,
                           scores.data() + c * tiles * 8, paged.data() + c * hd});
        }
        ops.attend_group(group.data(), count);
        for (size_t c = 0; c < count; ++c) {
          group[c].k_pages = kc;
          group[c].v_pages = vc;
          group[c].page_tokens = pages * kPage;
          group[c].out = flat.data() + c * hd;
        }
        ops.attend_group(group.data(), count);
        EXPECT_TRUE(BitEqual(paged, flat)) << KernelPathName(path) << " head_dim " << hd << " first n_keys " << n_keys[0];
        // A single query through attend() too.
        AttentionQuery one = group[0];
        std::vector<float> single(hd);
        one.k_pages = kp.data();
        one.v_pages = vp.data();
        one.page_tokens = kPage;
        one.out = single.data();
        ops.attend(one);
        EXPECT_TRUE(BitEqual(single, std::vector<float>(flat.begin(), flat.begin() + hd))) << KernelPathName(path);
      }
    }
  }
}

// Attention over a shared prefix: queries of several sessions whose tables
// point at the same pages for their first `shared` keys (a resident artifact)
// and at their own pages after; each page of the prefix is read once for all of
// them. Every query's bits must be attend()'s on its own table, whatever the
// number of sessions, of queries per session (GQA heads × neighbouring tokens,
// n_keys differing), the prefix length (one chunk or several) and head_dim.
TEST_F(PathTest, AttendSharedIsBitIdenticalToAttendPerQuery) {
  constexpr size_t kPage = kAttentionPageQuantum;
  struct Case {
    size_t sessions, shared_pages, queries_per_session;
  };
  const Case cases[] = {{1, 0, 1}, {1, 2, 6}, {2, 1, 2}, {5, 5, 3}, {16, 5, 2}, {16, 0, 4}, {3, 4, 5}, {21, 1, 3}};
  for (size_t hd : {size_t{128}, size_t{24}}) {
    const size_t tile_stride = hd * kKeyTile, page_k = kPage / kKeyTile * tile_stride, page_v = kPage * hd;
    for (const Case& cs : cases) {
      // Shared pages, then per session 2 private pages of its own keys.
      const size_t own_pages = 2, pages = cs.shared_pages + own_pages;
      auto make_page = [&](size_t elements, uint64_t seed) {
        auto f = RandomFloats(elements, seed);
        std::vector<uint16_t> b(f.size());
        RoundToBf16(f.data(), f.size(), b.data());
        return b;
      };
      std::vector<std::vector<uint16_t>> shared_k, shared_v;
      for (size_t p = 0; p < cs.shared_pages; ++p) {
        shared_k.push_back(make_page(page_k, 100 + p));
        shared_v.push_back(make_page(page_v, 200 + p));
      }
      std::vector<std::vector<std::vector<uint16_t>>> own_k(cs.sessions), own_v(cs.sessions);
      std::vector<std::vector<const uint16_t*>> kp(cs.sessions), vp(cs.sessions);
      for (size_t s = 0; s < cs.sessions; ++s) {
        for (size_t p = 0; p < cs.shared_pages; ++p) {
          kp[s].push_back(shared_k[p].data());
          vp[s].push_back(shared_v[p].data());
        }
        for (size_t p = 0; p < own_pages; ++p) {
          own_k[s].push_back(make_page(page_k, 300 + 10 * s + p));
          own_v[s].push_back(make_page(page_v, 600 + 10 * s + p));
        }
        for (size_t p = 0; p < own_pages; ++p) {
          kp[s].push_back(own_k[s][p].data());
          vp[s].push_back(own_v[s][p].data());
        }
      }
      const size_t count = cs.sessions * cs.queries_per_session, max_keys = pages * kPage;
      ASSERT_LE(count, kMaxAttendShared);
      auto qf = RandomFloats(count * hd, 41, 2.0f);
      std::vector<float> scores(count * max_keys), out(count * hd), one(hd), one_scores(max_keys);
      std::vector<AttentionQuery> queries;
      for (size_t s = 0; s < cs.sessions; ++s) {
        for (size_t i = 0; i < cs.queries_per_session; ++i) {
          // Sessions at different depths; neighbouring tokens see a key more.
          const size_t n = cs.shared_pages * kPage + 1 + (s * 37) % (own_pages * kPage - 8) + i / 2;
          const size_t c = queries.size();
          queries.push_back({qf.data() + c * hd, kp[s].data(), tile_stride, vp[s].data(), hd, kPage, n, hd, 0.0883883f,
                             scores.data() + c * max_keys, out.data() + c * hd});
        }
      }
      for (KernelPath path : SupportedKernelPaths()) {
        const KernelOps& ops = GetKernelOps(path);
        std::fill(out.begin(), out.end(), 0.0f);
        ops.attend_shared(queries.data(), count, cs.shared_pages * kPage);
        for (size_t c = 0; c < count; ++c) {
          AttentionQuery a = queries[c];
          a.scores = one_scores.data();
          a.out = one.data();
          portable_.attend(a);
          std::vector<float> got(out.begin() + c * hd, out.begin() + (c + 1) * hd);
          EXPECT_TRUE(BitEqual(got, one)) << KernelPathName(path) << " head_dim " << hd << " sessions " << cs.sessions
                                          << " shared pages " << cs.shared_pages << " query " << c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvmart
