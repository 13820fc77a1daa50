#include "artifact/codec.h"

#include <zstd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>

namespace kvmart::artifact {
namespace {

constexpr size_t kHeaderBytes = 32;
constexpr uint8_t kLosslessVersion = 1;

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
// One 32-bit little-endian store (a plain store on little-endian hosts).
inline void StoreLE32(uint8_t* p, uint32_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---------------------------------------------------------------- rANS -------
// Order-0 rANS with 32-bit states and 16-bit renormalisation (after Fabian
// Giesen's rans_word): a state lives in [L, L·2^16) with L = 2^16, so a decode
// step reads at most one 16-bit word and the refill is a branch-free select.
// Four interleaved states let the CPU overlap the dependency chains.
constexpr uint32_t kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kRansL = 1u << 16;
constexpr int kWays = 4;

// Quantises counts to frequencies summing to kProbScale, every present symbol ≥ 1.
void NormaliseFreqs(const uint64_t counts[256], uint64_t total, uint32_t freq[256]) {
  int64_t sum = 0;
  int largest = 0;
  for (int s = 0; s < 256; ++s) {
    freq[s] = 0;
    if (counts[s] == 0) continue;
    uint64_t f = counts[s] * kProbScale / total;
    freq[s] = static_cast<uint32_t>(std::max<uint64_t>(1, f));
    sum += freq[s];
    if (counts[s] > counts[largest]) largest = s;
  }
  int64_t diff = static_cast<int64_t>(kProbScale) - sum;
  if (diff >= 0) {
    freq[largest] += static_cast<uint32_t>(diff);
    return;
  }
  // Too many symbols were rounded up to 1: take back from the biggest ones.
  while (diff < 0) {
    int best = -1;
    for (int s = 0; s < 256; ++s)
      if (freq[s] > 1 && (best < 0 || freq[s] > freq[best])) best = s;
    uint32_t take = static_cast<uint32_t>(std::min<int64_t>(-diff, std::max<uint32_t>(1, (freq[best] - 1) / 2)));
    freq[best] -= take;
    diff += take;
  }
}

}  // namespace

std::vector<uint8_t> RansEncode(std::span<const uint8_t> in) {
  const size_t n = in.size();
  uint64_t counts[256] = {};
  for (uint8_t b : in) ++counts[b];
  uint32_t freq[256] = {}, cum[257];
  if (n > 0) NormaliseFreqs(counts, n, freq);
  cum[0] = 0;
  for (int s = 0; s < 256; ++s) cum[s + 1] = cum[s] + freq[s];

  // Table: u16 number of present symbols, then (u8 symbol, u16 freq) each.
  std::vector<uint8_t> out;
  uint32_t present = 0;
  for (int s = 0; s < 256; ++s) present += freq[s] != 0;
  out.push_back(static_cast<uint8_t>(present));
  out.push_back(static_cast<uint8_t>(present >> 8));
  for (int s = 0; s < 256; ++s) {
    if (freq[s] == 0) continue;
    out.push_back(static_cast<uint8_t>(s));
    out.push_back(static_cast<uint8_t>(freq[s]));
    out.push_back(static_cast<uint8_t>(freq[s] >> 8));
  }
  // Each symbol emits at most one 16-bit word; plus 4 flushed 32-bit states.
  std::vector<uint8_t> stream(2 * n + 4 * kWays);
  uint8_t* const end = stream.data() + stream.size();
  uint8_t* p = end;
  uint32_t x[kWays] = {kRansL, kRansL, kRansL, kRansL};
  for (size_t i = n; i-- > 0;) {
    const uint8_t s = in[i];
    uint32_t& xs = x[i % kWays];
    const uint32_t f = freq[s];
    const uint64_t xmax = uint64_t{(kRansL >> kProbBits) << 16} * f;  // 2^32 when f = 4096
    if (xs >= xmax) {
      p -= 2;
      p[0] = static_cast<uint8_t>(xs);
      p[1] = static_cast<uint8_t>(xs >> 8);
      xs >>= 16;
    }
    xs = ((xs / f) << kProbBits) + (xs % f) + cum[s];
  }
  for (int k = kWays - 1; k >= 0; --k) {
    p -= 4;
    PutU32(p, x[k]);
  }
  out.insert(out.end(), p, end);
  return out;
}

Status RansDecode(std::span<const uint8_t> enc, std::span<uint8_t> out) {
  auto bad = [](const char* why) { return Status::Corruption(std::string("rANS stream: ") + why); };
  if (enc.size() < 2) return bad("truncated table");
  uint32_t present = enc[0] | (enc[1] << 8);
  if (present == 0 || present > 256) return bad("bad symbol count");
  if (enc.size() < 2 + 3 * size_t{present} + 4 * kWays) return bad("truncated");
  // Slot table: symbol | (freq-1) << 8 | start << 20, one load per decode step.
  std::unique_ptr<uint32_t[]> slots = std::make_unique_for_overwrite<uint32_t[]>(kProbScale);
  uint32_t total = 0;
  const uint8_t* q = enc.data() + 2;
  int prev = -1;
  for (uint32_t k = 0; k < present; ++k, q += 3) {
    int s = q[0];
    uint32_t f = q[1] | (q[2] << 8);
    if (s <= prev) return bad("symbols not increasing");
    if (f == 0 || f > kProbScale - total) return bad("frequencies do not sum to 4096");
    prev = s;
    const uint32_t entry = static_cast<uint32_t>(s) | ((f - 1) << 8) | (total << 20);
    std::fill(slots.get() + total, slots.get() + total + f, entry);
    total += f;
  }
  if (total != kProbScale) return bad("frequencies do not sum to 4096");
  const uint8_t* p = q;
  const uint8_t* const end = enc.data() + enc.size();
  if ((end - p) % 2 != 0) return bad("odd stream length");
  uint32_t x[kWays];
  for (int k = 0; k < kWays; ++k, p += 4) {
    x[k] = GetU32(p);
    if (x[k] < kRansL) return bad("bad initial state");
  }
  const uint32_t* const tab = slots.get();
  uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
  const size_t n = out.size();
  uint8_t* const o = out.data();
  size_t i = 0;
  // Hot loop, kept in plain locals so the four states stay in registers. The
  // refill is a branch-free select (conditional move); its two-byte load is
  // always in bounds because the loop condition leaves ≥ 8 bytes.
#define KVMART_RANS_STEP(xs, k)                                                                   \
  {                                                                                              \
    const uint32_t e = tab[xs & (kProbScale - 1)];                                               \
    o[i + k] = static_cast<uint8_t>(e);                                                          \
    xs = (((e >> 8) & 0xfff) + 1) * (xs >> kProbBits) + (xs & (kProbScale - 1)) - (e >> 20);    \
  }
#define KVMART_RANS_REFILL(xs)                                                                    \
  {                                                                                              \
    const uint32_t need = xs < kRansL;                                                           \
    const uint32_t word = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);      \
    const uint32_t mask = 0u - need; /* all ones when a refill is due: no branch */              \
    xs = (xs & ~mask) | (((xs << 16) | word) & mask);                                            \
    p += 2 * need;                                                                               \
  }
  for (; i + kWays <= n && end - p >= 2 * kWays; i += kWays) {
    KVMART_RANS_STEP(x0, 0)
    KVMART_RANS_STEP(x1, 1)
    KVMART_RANS_STEP(x2, 2)
    KVMART_RANS_STEP(x3, 3)
    KVMART_RANS_REFILL(x0)
    KVMART_RANS_REFILL(x1)
    KVMART_RANS_REFILL(x2)
    KVMART_RANS_REFILL(x3)
  }
#undef KVMART_RANS_STEP
#undef KVMART_RANS_REFILL
  x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
  for (; i < n; ++i) {
    uint32_t& xs = x[i % kWays];
    const uint32_t e = tab[xs & (kProbScale - 1)];
    o[i] = static_cast<uint8_t>(e);
    xs = (((e >> 8) & 0xfff) + 1) * (xs >> kProbBits) + (xs & (kProbScale - 1)) - (e >> 20);
    if (xs < kRansL) {
      if (end - p < 2) return bad("truncated");
      xs = (xs << 16) | static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
      p += 2;
    }
  }
  // The encoder started every state at L: ending anywhere else, or with bytes
  // left over, means the stream was damaged.
  for (int k = 0; k < kWays; ++k)
    if (x[k] != kRansL) return bad("does not end cleanly");
  if (p != end) return bad("trailing bytes");
  return Status::Ok();
}

// --------------------------------------------------------------- nibble ------
// "Rank-4" coding of a byte plane: the 15 most frequent symbols get 4-bit codes
// 0..14, code 15 escapes to the next byte of an exception list. Not an entropy
// coder, but it decodes two symbols per table load (one byte in, two out, no
// bit-level state) at several GB/s, and KV exponents rarely leave their top 15.
// Section: u8 t (≤ 15), t symbol bytes, u64 LE exception count x,
//          ceil(n/2) packed bytes (value 2j in the low nibble of byte j),
//          x exception bytes (in order).
std::vector<uint8_t> NibbleEncode(std::span<const uint8_t> in) {
  const size_t n = in.size();
  uint64_t counts[256] = {};
  for (uint8_t b : in) ++counts[b];
  std::vector<int> order;
  for (int s = 0; s < 256; ++s)
    if (counts[s]) order.push_back(s);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return counts[a] > counts[b]; });
  if (order.size() > 15) order.resize(15);
  uint8_t code[256];
  std::memset(code, 15, sizeof(code));
  for (size_t k = 0; k < order.size(); ++k) code[order[k]] = static_cast<uint8_t>(k);
  std::vector<uint8_t> out(1 + order.size() + 8 + (n + 1) / 2);
  out[0] = static_cast<uint8_t>(order.size());
  for (size_t k = 0; k < order.size(); ++k) out[1 + k] = static_cast<uint8_t>(order[k]);
  const size_t packed_at = 1 + order.size() + 8;
  std::vector<uint8_t> exceptions;
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = code[in[i]];
    if (c == 15) exceptions.push_back(in[i]);
    out[packed_at + i / 2] |= static_cast<uint8_t>(c << (4 * (i & 1)));
  }
  if (n % 2) out[packed_at + n / 2] |= 0xf0;  // padding nibble: an escape with no exception, never decoded
  PutU64(&out[1 + order.size()], exceptions.size());
  out.insert(out.end(), exceptions.begin(), exceptions.end());
  return out;
}

// Parsed nibble section; every size already checked against the section.
struct NibbleView {
  size_t t = 0;
  uint8_t sym[16] = {};
  const uint8_t* pk = nullptr;  // ceil(n/2) packed bytes
  const uint8_t* ex = nullptr;  // exceptions
  const uint8_t* ex_end = nullptr;
  uint8_t flags[256];           // bit 0: holds an escape, bit 1: holds a code without a symbol
};

Status ParseNibble(std::span<const uint8_t> sec, size_t n, NibbleView* v) {
  auto bad = [](const char* why) { return Status::Corruption(std::string("nibble plane: ") + why); };
  if (sec.empty()) return bad("truncated");
  v->t = sec[0];
  if (v->t > 15 || sec.size() < 1 + v->t + 8) return bad("bad table");
  const uint64_t x = GetU64(sec.data() + 1 + v->t);
  const size_t packed = (n + 1) / 2;
  if (x > n || sec.size() - (1 + v->t + 8) != packed + x) return bad("section size does not match");
  for (size_t k = 0; k < v->t; ++k) v->sym[k] = sec[1 + k];
  v->pk = sec.data() + 1 + v->t + 8;
  v->ex = v->pk + packed;
  v->ex_end = v->ex + x;
  for (int b = 0; b < 256; ++b) {
    v->flags[b] = 0;
    for (int c : {b & 15, b >> 4}) {
      if (c == 15) v->flags[b] |= 1;
      else if (static_cast<size_t>(c) >= v->t) v->flags[b] |= 2;
    }
  }
  return Status::Ok();
}

// Shared decode loop. put2(j, packed byte) writes values 2j and 2j+1 from the
// table (escapes as if symbol 0); put1(i, symbol) writes one value exactly.
// Escape checks run once per chunk, since exceptions are rare.
template <typename Put2, typename Put1>
Status NibbleLoop(NibbleView& v, size_t n, Put2 put2, Put1 put1, size_t j_start = 0) {
  auto bad = [](const char* why) { return Status::Corruption(std::string("nibble plane: ") + why); };
  constexpr size_t kChunk = 32;
  for (size_t j0 = j_start; j0 < n / 2; j0 += kChunk) {
    const size_t j1 = std::min(n / 2, j0 + kChunk);
    uint32_t acc = 0;
    for (size_t j = j0; j < j1; ++j) {
      const uint8_t b = v.pk[j];
      put2(j, b);
      acc |= v.flags[b];
    }
    if (acc & 2) return bad("code without a symbol");
    if (acc & 1) {
      for (size_t j = j0; j < j1; ++j) {
        const uint8_t b = v.pk[j];
        if (!(v.flags[b] & 1)) continue;
        for (int h = 0; h < 2; ++h) {
          if (((b >> (4 * h)) & 15) != 15) continue;
          if (v.ex == v.ex_end) return bad("too few exceptions");
          put1(2 * j + h, *v.ex++);
        }
      }
    }
  }
  if (n % 2) {
    const uint8_t c = v.pk[n / 2] & 15;
    if (c == 15) {
      if (v.ex == v.ex_end) return bad("too few exceptions");
      put1(n - 1, *v.ex++);
    } else if (c < v.t) {
      put1(n - 1, v.sym[c]);
    } else {
      return bad("code without a symbol");
    }
  }
  if (v.ex != v.ex_end) return bad("unused exceptions");
  return Status::Ok();
}

Status NibbleDecode(std::span<const uint8_t> sec, std::span<uint8_t> out) {
  NibbleView v;
  KVMART_RETURN_IF_ERROR(ParseNibble(sec, out.size(), &v));
  uint16_t pair[256];
  for (int b = 0; b < 256; ++b) pair[b] = static_cast<uint16_t>(v.sym[b & 15] | (v.sym[b >> 4] << 8));
  uint8_t* o = out.data();
  return NibbleLoop(
      v, out.size(),
      [&](size_t j, uint8_t b) {
        o[2 * j] = static_cast<uint8_t>(pair[b]);
        o[2 * j + 1] = static_cast<uint8_t>(pair[b] >> 8);
      },
      [&](size_t i, uint8_t e) { o[i] = e; });
}


#if defined(__x86_64__)
// SSSE3 body of NibbleDecodeJoin: 16 packed bytes (32 values) per step, codes
// looked up with pshufb, planes joined with byte-lane masks, escapes patched in
// order from the movemask. Returns the number of packed bytes done; the scalar
// loop finishes the rest, so both paths run on every block.
__attribute__((target("ssse3"))) size_t NibbleJoinSsse3(NibbleView& v, bool bf16, const uint8_t* m, uint8_t* o,
                                                        size_t pairs, Status* err) {
  alignas(16) uint8_t tab[16] = {};
  for (size_t k = 0; k < v.t; ++k) tab[k] = v.sym[k];
  const __m128i table = _mm_load_si128(reinterpret_cast<const __m128i*>(tab));
  const __m128i low4 = _mm_set1_epi8(0x0f), fifteen = _mm_set1_epi8(15);
  const __m128i tmax = _mm_set1_epi8(static_cast<char>(static_cast<int>(v.t) - 1));
  const __m128i b80 = _mm_set1_epi8(static_cast<char>(0x80)), b7f = _mm_set1_epi8(0x7f);
  size_t j = 0;
  for (; j + 16 <= pairs; j += 16) {
    const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v.pk + j));
    const __m128i lo = _mm_and_si128(p, low4), hi = _mm_and_si128(_mm_srli_epi16(p, 4), low4);
    const __m128i c[2] = {_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi)};
    uint32_t esc = 0, bad = 0;
    for (int h = 0; h < 2; ++h) {
      const __m128i is_esc = _mm_cmpeq_epi8(c[h], fifteen);
      esc |= static_cast<uint32_t>(_mm_movemask_epi8(is_esc)) << (16 * h);
      bad |= static_cast<uint32_t>(_mm_movemask_epi8(_mm_andnot_si128(is_esc, _mm_cmpgt_epi8(c[h], tmax))));
      const __m128i e = _mm_shuffle_epi8(table, c[h]);
      const __m128i mm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m + 2 * j + 16 * h));
      __m128i lo_b, hi_b;
      if (bf16) {
        lo_b = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(e, 7), b80), _mm_and_si128(mm, b7f));
        hi_b = _mm_or_si128(_mm_and_si128(mm, b80), _mm_and_si128(_mm_srli_epi16(e, 1), b7f));
      } else {
        lo_b = mm;
        hi_b = e;
      }
      uint8_t* dst = o + 4 * j + 32 * h;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi8(lo_b, hi_b));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), _mm_unpackhi_epi8(lo_b, hi_b));
    }
    if (bad) {
      *err = Status::Corruption("nibble plane: code without a symbol");
      return j;
    }
    while (esc) {
      const size_t i = 2 * j + static_cast<size_t>(__builtin_ctz(esc));
      esc &= esc - 1;
      if (v.ex == v.ex_end) {
        *err = Status::Corruption("nibble plane: too few exceptions");
        return j;
      }
      const uint8_t e = *v.ex++;
      if (bf16) {
        o[2 * i] = static_cast<uint8_t>((e << 7) | (m[i] & 0x7f));
        o[2 * i + 1] = static_cast<uint8_t>((m[i] & 0x80) | (e >> 1));
      } else {
        o[2 * i + 1] = e;
      }
    }
  }
  return j;
}
#endif

// The common load path fused: decodes the nibble E plane and joins it with M
// straight into the payload, one table load per two values, no E buffer.
Status NibbleDecodeJoin(std::span<const uint8_t> sec, KvDtype dtype, const uint8_t* m, std::span<uint8_t> out) {
  const size_t n = out.size() / 2;
  NibbleView v;
  KVMART_RETURN_IF_ERROR(ParseNibble(sec, n, &v));
  const bool bf16 = dtype == KvDtype::kBf16;
  const int shift = bf16 ? 7 : 8;
  // Two output values' exponent bits per packed byte.
  uint32_t quad[256];
  for (int b = 0; b < 256; ++b)
    quad[b] = (static_cast<uint32_t>(v.sym[b & 15]) << shift) | (static_cast<uint32_t>(v.sym[b >> 4]) << (shift + 16));
  uint8_t* o = out.data();
  auto mbits = [bf16](uint8_t mb) -> uint32_t { return bf16 ? ((mb & 0x80u) << 8) | (mb & 0x7fu) : mb; };
  size_t j_start = 0;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("ssse3")) {
    Status err;
    j_start = NibbleJoinSsse3(v, bf16, m, o, n / 2, &err);
    if (!err.ok()) return err;
  }
#endif
  return NibbleLoop(
      v, n,
      [&](size_t j, uint8_t b) {
        const uint32_t w = quad[b] | mbits(m[2 * j]) | (mbits(m[2 * j + 1]) << 16);
        StoreLE32(o + 4 * j, w);
      },
      [&](size_t i, uint8_t e) {
        const uint32_t w = (static_cast<uint32_t>(e) << shift) | mbits(m[i]);
        o[2 * i] = static_cast<uint8_t>(w);
        o[2 * i + 1] = static_cast<uint8_t>(w >> 8);
      },
      j_start);
}

std::string_view CodecName(Codec c) { return c == Codec::kLossless ? "lossless" : "raw"; }

StatusOr<Codec> ParseCodec(std::string_view name) {
  if (name == "raw") return Codec::kRaw;
  if (name == "lossless") return Codec::kLossless;
  return Status::InvalidArgument("unknown codec '" + std::string(name) + "' (want raw or lossless)");
}

void SplitPlanes(KvDtype dtype, std::span<const uint8_t> raw, uint8_t* e, uint8_t* m) {
  const size_t n = raw.size() / 2;
  const uint8_t* r = raw.data();
  if (dtype == KvDtype::kBf16) {
    // bf16 = s eeeeeeee mmmmmmm: E = exponent byte, M = sign ‖ 7 mantissa bits.
    for (size_t i = 0; i < n; ++i) {
      uint8_t lo = r[2 * i], hi = r[2 * i + 1];
      e[i] = static_cast<uint8_t>((hi << 1) | (lo >> 7));
      m[i] = static_cast<uint8_t>((hi & 0x80) | (lo & 0x7f));
    }
  } else {
    // f16 = s eeeee mm mmmmmmmm: E = high byte (sign, exponent, 2 mantissa bits),
    // M = low 8 mantissa bits.
    for (size_t i = 0; i < n; ++i) {
      e[i] = r[2 * i + 1];
      m[i] = r[2 * i];
    }
  }
}

void JoinPlanes(KvDtype dtype, const uint8_t* e, const uint8_t* m, std::span<uint8_t> raw) {
  const size_t n = raw.size() / 2;
  uint8_t* r = raw.data();
  if constexpr (std::endian::native == std::endian::little) {
    // Whole 16-bit values let the compiler vectorise the join (the hot loop of
    // every decode); the byte order written is the same little-endian as below.
    uint16_t tmp[1024];
    for (size_t base = 0; base < n; base += 1024) {
      const size_t k = std::min<size_t>(1024, n - base);
      const uint8_t* eb = e + base;
      const uint8_t* mb = m + base;
      if (dtype == KvDtype::kBf16) {
        for (size_t i = 0; i < k; ++i)
          tmp[i] = static_cast<uint16_t>(((mb[i] & 0x80u) << 8) | (eb[i] << 7) | (mb[i] & 0x7fu));
      } else {
        for (size_t i = 0; i < k; ++i) tmp[i] = static_cast<uint16_t>((eb[i] << 8) | mb[i]);
      }
      std::memcpy(r + 2 * base, tmp, 2 * k);
    }
    return;
  }
  if (dtype == KvDtype::kBf16) {
    for (size_t i = 0; i < n; ++i) {
      r[2 * i] = static_cast<uint8_t>((e[i] << 7) | (m[i] & 0x7f));
      r[2 * i + 1] = static_cast<uint8_t>((m[i] & 0x80) | (e[i] >> 1));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      r[2 * i] = m[i];
      r[2 * i + 1] = e[i];
    }
  }
}

double ByteEntropyBits(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return 0;
  uint64_t counts[256] = {};
  for (uint8_t b : bytes) ++counts[b];
  double h = 0, n = static_cast<double>(bytes.size());
  for (uint64_t c : counts)
    if (c) h -= (c / n) * std::log2(c / n);
  return h;
}

namespace {

std::vector<uint8_t> ZstdCompress(std::span<const uint8_t> in, int level) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  size_t r = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  if (ZSTD_isError(r)) return {};
  out.resize(r);
  return out;
}

Status ZstdDecompressExact(std::span<const uint8_t> in, std::span<uint8_t> out, const char* plane) {
  // The frame must say exactly how much it decodes to, and that must be what the
  // header promised; zstd itself bounds writes to out.size().
  unsigned long long fcs = ZSTD_getFrameContentSize(in.data(), in.size());
  if (fcs != out.size()) return Status::Corruption(std::string("lossless: ") + plane + " zstd frame has wrong size");
  size_t r = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(r) || r != out.size())
    return Status::Corruption(std::string("lossless: ") + plane + " plane: " +
                              (ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output"));
  return Status::Ok();
}

struct Section {
  PlaneMethod method = PlaneMethod::kStored;
  std::vector<uint8_t> bytes;  // empty when stored (the plane itself is used)
};

Status DecodePlane(PlaneMethod method, std::span<const uint8_t> section, std::span<uint8_t> out, const char* plane) {
  switch (method) {
    case PlaneMethod::kStored:
      if (section.size() != out.size()) return Status::Corruption(std::string("lossless: ") + plane + " plane size");
      std::memcpy(out.data(), section.data(), out.size());
      return Status::Ok();
    case PlaneMethod::kZstd:
      return ZstdDecompressExact(section, out, plane);
    case PlaneMethod::kRans:
      return RansDecode(section, out).WithContext(std::string("lossless: ") + plane + " plane");
    case PlaneMethod::kNibble:
      return NibbleDecode(section, out).WithContext(std::string("lossless: ") + plane + " plane");
  }
  return Status::Corruption("lossless: unknown plane method");
}

}  // namespace

StatusOr<std::vector<uint8_t>> EncodeBlock(Codec codec, KvDtype dtype, std::span<const uint8_t> raw,
                                           const EncodeOptions& opts) {
  if (codec == Codec::kRaw) return std::vector<uint8_t>(raw.begin(), raw.end());
  if (codec != Codec::kLossless) return Status::InvalidArgument("unknown codec");
  if (raw.size() % 2 != 0) return Status::InvalidArgument("lossless codec: payload is not a whole number of 16-bit values");
  const size_t n = raw.size() / 2;
  std::vector<uint8_t> e(n), m(n);
  SplitPlanes(dtype, raw, e.data(), m.data());

  Section es, ms;
  auto consider = [](Section* best, PlaneMethod method, std::vector<uint8_t> bytes, size_t current, double margin) {
    if (!bytes.empty() && bytes.size() < current * margin) {
      best->method = method;
      best->bytes = std::move(bytes);
    }
  };
  if (opts.force_exponent_method) {
    // Still never larger than stored: the size bound (stored ≤ raw + 32) holds
    // for every mode, and the manifest validator relies on it.
    switch (*opts.force_exponent_method) {
      case PlaneMethod::kStored: break;
      case PlaneMethod::kZstd: consider(&es, PlaneMethod::kZstd, ZstdCompress(e, opts.zstd_level), n, 1.0); break;
      case PlaneMethod::kRans:
        if (n > 0) consider(&es, PlaneMethod::kRans, RansEncode(e), n, 1.0);
        break;
      case PlaneMethod::kNibble:
        if (n > 0) consider(&es, PlaneMethod::kNibble, NibbleEncode(e), n, 1.0);
        break;
    }
  } else {
    // Fast decoders (stored, nibble) first; a slower one (zstd, rANS) must save
    // more than slow_min_gain of the whole block to be worth its decode time.
    // All-zero or highly repetitive planes clear that bar through zstd easily.
    if (opts.try_nibble && n > 0) consider(&es, PlaneMethod::kNibble, NibbleEncode(e), n, 1.0);
    const size_t fast = es.method == PlaneMethod::kStored ? n : es.bytes.size();
    const double bar = static_cast<double>(fast) - opts.slow_min_gain * static_cast<double>(fast + n + kHeaderBytes);
    Section slow;
    if (opts.try_zstd) consider(&slow, PlaneMethod::kZstd, ZstdCompress(e, opts.zstd_level), n, 1.0);
    if (opts.try_rans && n > 0) {
      size_t cur = slow.method == PlaneMethod::kStored ? n : slow.bytes.size();
      consider(&slow, PlaneMethod::kRans, RansEncode(e), cur, 1.0);
    }
    if (slow.method != PlaneMethod::kStored && static_cast<double>(slow.bytes.size()) < bar) es = std::move(slow);
  }
  // M is near-random in real KV; zstd is kept only where it clearly pays (zeros,
  // synthetic patterns), because a stored plane decodes at memcpy speed.
  consider(&ms, PlaneMethod::kZstd, ZstdCompress(m, opts.zstd_level), n, 0.97);

  std::span<const uint8_t> esec = es.method == PlaneMethod::kStored ? std::span<const uint8_t>(e) : es.bytes;
  std::span<const uint8_t> msec = ms.method == PlaneMethod::kStored ? std::span<const uint8_t>(m) : ms.bytes;
  std::vector<uint8_t> out(kHeaderBytes + esec.size() + msec.size());
  out[0] = kLosslessVersion;
  out[1] = static_cast<uint8_t>(dtype);
  out[2] = static_cast<uint8_t>(es.method);
  out[3] = static_cast<uint8_t>(ms.method);
  PutU32(&out[4], 0);
  PutU64(&out[8], n);
  PutU64(&out[16], esec.size());
  PutU64(&out[24], msec.size());
  if (!esec.empty()) std::memcpy(&out[kHeaderBytes], esec.data(), esec.size());
  if (!msec.empty()) std::memcpy(&out[kHeaderBytes + esec.size()], msec.data(), msec.size());
  return out;
}

Status DecodeBlock(Codec codec, KvDtype dtype, std::span<const uint8_t> stored, std::span<uint8_t> out) {
  if (codec == Codec::kRaw) {
    if (stored.size() != out.size()) return Status::Corruption("raw block: stored size differs from raw size");
    if (!out.empty()) std::memcpy(out.data(), stored.data(), out.size());
    return Status::Ok();
  }
  if (codec != Codec::kLossless) return Status::Corruption("unknown codec");
  if (stored.size() < kHeaderBytes) return Status::Corruption("lossless: truncated header");
  const uint8_t* h = stored.data();
  if (h[0] != kLosslessVersion) return Status::Corruption("lossless: unknown codec version " + std::to_string(h[0]));
  if (h[1] != static_cast<uint8_t>(dtype)) return Status::Corruption("lossless: dtype differs from the profile");
  if (h[2] > 3 || h[3] > 3) return Status::Corruption("lossless: unknown plane method");
  if (GetU32(h + 4) != 0) return Status::Corruption("lossless: reserved bits set");
  const uint64_t n = GetU64(h + 8), elen = GetU64(h + 16), mlen = GetU64(h + 24);
  if (out.size() % 2 != 0 || n != out.size() / 2) return Status::Corruption("lossless: value count differs from raw size");
  const uint64_t body = stored.size() - kHeaderBytes;
  if (elen > body || mlen != body - elen) return Status::Corruption("lossless: section lengths do not add up");
  // Sizes are now consistent with the stored bytes and the caller's buffer;
  // scratch planes are bounded by out.size().
  std::span<const uint8_t> esec = stored.subspan(kHeaderBytes, elen);
  std::span<const uint8_t> msec = stored.subspan(kHeaderBytes + elen, mlen);
  const auto em = static_cast<PlaneMethod>(h[2]), mm = static_cast<PlaneMethod>(h[3]);
  std::unique_ptr<uint8_t[]> e_buf, m_buf;
  const uint8_t* e = esec.data();
  const uint8_t* m = msec.data();
  if (mm != PlaneMethod::kStored || msec.size() != n) {
    m_buf = std::make_unique_for_overwrite<uint8_t[]>(n);
    KVMART_RETURN_IF_ERROR(DecodePlane(mm, msec, {m_buf.get(), n}, "M"));
    m = m_buf.get();
  }
  if (em == PlaneMethod::kNibble)
    return NibbleDecodeJoin(esec, dtype, m, out).WithContext("lossless: E plane");
  if (em != PlaneMethod::kStored || esec.size() != n) {
    e_buf = std::make_unique_for_overwrite<uint8_t[]>(n);
    KVMART_RETURN_IF_ERROR(DecodePlane(em, esec, {e_buf.get(), n}, "E"));
    e = e_buf.get();
  }
  JoinPlanes(dtype, e, m, out);
  return Status::Ok();
}

}  // namespace kvmart::artifact
