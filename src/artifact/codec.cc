#include "artifact/codec.h"

#include <zstd.h>

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
  auto step = [tab](uint32_t& xs, uint8_t* o) {
    const uint32_t e = tab[xs & (kProbScale - 1)];
    *o = static_cast<uint8_t>(e);
    xs = (((e >> 8) & 0xfff) + 1) * (xs >> kProbBits) + (xs & (kProbScale - 1)) - (e >> 20);
  };
  // Branch-free refill: the select compiles to a conditional move.
  auto refill = [](uint32_t& xs, const uint8_t*& pp) {
    const uint32_t need = xs < kRansL;
    const uint32_t word = static_cast<uint32_t>(pp[0]) | (static_cast<uint32_t>(pp[1]) << 8);
    xs = need ? (xs << 16) | word : xs;
    pp += 2 * need;
  };
  const size_t n = out.size();
  uint8_t* o = out.data();
  size_t i = 0;
  // Fast loop while at least one word per state is left.
  for (; i + kWays <= n && end - p >= 2 * kWays; i += kWays) {
    step(x[0], o + i);
    step(x[1], o + i + 1);
    step(x[2], o + i + 2);
    step(x[3], o + i + 3);
    refill(x[0], p);
    refill(x[1], p);
    refill(x[2], p);
    refill(x[3], p);
  }
  for (; i < n; ++i) {
    uint32_t& xs = x[i % kWays];
    step(xs, o + i);
    if (xs < kRansL) {
      if (end - p < 2) return bad("truncated");
      refill(xs, p);
    }
  }
  // The encoder started every state at L: ending anywhere else, or with bytes
  // left over, means the stream was damaged.
  for (int k = 0; k < kWays; ++k)
    if (x[k] != kRansL) return bad("does not end cleanly");
  if (p != end) return bad("trailing bytes");
  return Status::Ok();
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
    }
  } else {
    if (opts.try_zstd) consider(&es, PlaneMethod::kZstd, ZstdCompress(e, opts.zstd_level), n, 1.0);
    if (opts.try_rans && n > 0) {
      size_t cur = es.method == PlaneMethod::kStored ? n : es.bytes.size();
      double margin = es.method == PlaneMethod::kZstd ? 0.99 : 1.0;
      consider(&es, PlaneMethod::kRans, RansEncode(e), cur, margin);
    }
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
  if (h[2] > 2 || h[3] > 2) return Status::Corruption("lossless: unknown plane method");
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
  if (em != PlaneMethod::kStored || esec.size() != n) {
    e_buf = std::make_unique_for_overwrite<uint8_t[]>(n);
    KVMART_RETURN_IF_ERROR(DecodePlane(em, esec, {e_buf.get(), n}, "E"));
    e = e_buf.get();
  }
  if (mm != PlaneMethod::kStored || msec.size() != n) {
    m_buf = std::make_unique_for_overwrite<uint8_t[]>(n);
    KVMART_RETURN_IF_ERROR(DecodePlane(mm, msec, {m_buf.get(), n}, "M"));
    m = m_buf.get();
  }
  JoinPlanes(dtype, e, m, out);
  return Status::Ok();
}

}  // namespace kvmart::artifact
