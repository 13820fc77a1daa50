#include "engine/kv_file.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "base/sha256.h"

namespace kvmart {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'M', 'R', 'A', 'W', 'K', 'V'};
constexpr size_t kHeaderBytes = 8 + 4 * 4 + 8 * 2;

void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

}  // namespace

Status WriteKvFile(const std::string& path, const KvExport& kv) {
  std::string out(kMagic, 8);
  PutU32(out, 1);
  PutU32(out, kv.num_layers);
  PutU32(out, kv.num_kv_heads);
  PutU32(out, kv.head_dim);
  PutU64(out, kv.begin);
  PutU64(out, kv.token_ids.size());
  for (int32_t t : kv.token_ids) PutU32(out, static_cast<uint32_t>(t));
  for (uint16_t v : kv.data) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
  }
  const Digest256 d = Sha256Of(out);
  out.append(reinterpret_cast<const char*>(d.data()), d.size());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    f.close();
    if (!f) return Status::IOError(tmp + ": write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::IOError(path + ": rename failed");
  return Status::Ok();
}

StatusOr<KvExport> ReadKvFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IOError(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  if (s.size() < kHeaderBytes + 32 || std::memcmp(p, kMagic, 8) != 0) {
    return Status::Corruption(path + ": not a kvmart raw KV file (bad magic or truncated)");
  }
  if (GetLE(p + 8, 4) != 1) return Status::Corruption(path + ": unsupported raw KV version " + std::to_string(GetLE(p + 8, 4)));
  KvExport kv;
  kv.num_layers = static_cast<uint32_t>(GetLE(p + 12, 4));
  kv.num_kv_heads = static_cast<uint32_t>(GetLE(p + 16, 4));
  kv.head_dim = static_cast<uint32_t>(GetLE(p + 20, 4));
  kv.begin = GetLE(p + 24, 8);
  const uint64_t n = GetLE(p + 32, 8);
  // Check the claimed sizes against the actual file before allocating.
  const unsigned __int128 per_token = (unsigned __int128)4 + (unsigned __int128)kv.num_layers * 2 * kv.num_kv_heads *
                                                                 kv.head_dim * 2;
  const unsigned __int128 need = (unsigned __int128)kHeaderBytes + per_token * n + 32;
  if (need != s.size()) {
    return Status::Corruption(path + ": header claims " + std::to_string(n) + " tokens, which does not match the " +
                              std::to_string(s.size()) + "-byte file (truncated?)");
  }
  const Digest256 d = Sha256Of(s.data(), s.size() - 32);
  if (std::memcmp(d.data(), p + s.size() - 32, 32) != 0) return Status::Corruption(path + ": checksum mismatch");
  kv.token_ids.resize(n);
  const uint8_t* q = p + kHeaderBytes;
  for (uint64_t i = 0; i < n; ++i, q += 4) kv.token_ids[i] = static_cast<int32_t>(GetLE(q, 4));
  kv.data.resize((s.size() - 32 - kHeaderBytes - 4 * n) / 2);
  for (size_t i = 0; i < kv.data.size(); ++i, q += 2) kv.data[i] = static_cast<uint16_t>(q[0] | q[1] << 8);
  return kv;
}

}  // namespace kvmart
