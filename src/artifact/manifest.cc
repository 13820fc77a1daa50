#include "artifact/manifest.h"

#include <ctime>
#include <cstring>

#include "artifact/canonical_json.h"
#include "artifact/chain_hash.h"

namespace kvmart::artifact {
namespace {

using json = nlohmann::json;

template <size_t N>
std::string Hex(const std::array<uint8_t, N>& a) {
  return ToHex(a.data(), a.size());
}

Status Bad(const std::string& what) { return Status::Corruption("manifest: " + what); }

const json* Field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

StatusOr<uint64_t> GetU64(const json& j, const char* key, const std::string& where) {
  const json* f = Field(j, key);
  if (f == nullptr) return Bad(where + "missing field " + key);
  if (!f->is_number_unsigned()) return Bad(where + key + " is not an unsigned integer");
  return f->get<uint64_t>();
}

StatusOr<std::string> GetStr(const json& j, const char* key, const std::string& where) {
  const json* f = Field(j, key);
  if (f == nullptr) return Bad(where + "missing field " + key);
  if (!f->is_string()) return Bad(where + key + " is not a string");
  return f->get<std::string>();
}

template <size_t N>
StatusOr<std::array<uint8_t, N>> GetHex(const json& j, const char* key, const std::string& where) {
  KVMART_ASSIGN_OR_RETURN(std::string s, GetStr(j, key, where));
  std::string bytes;
  if (s.size() != 2 * N || !FromHex(s, &bytes) || ToHex(bytes.data(), bytes.size()) != s)
    return Bad(where + key + " must be " + std::to_string(2 * N) + " lower-case hex digits");
  std::array<uint8_t, N> out;
  std::memcpy(out.data(), bytes.data(), N);
  return out;
}

bool IsRfc3339Utc(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ
  static constexpr std::string_view kPattern = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != kPattern.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kPattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kPattern[i]) return false;
  }
  return true;
}

json BlockToJson(const BlockInfo& b) {
  return json{{"chain_hash", Hex(b.chain_hash)},         {"codec", std::string(CodecName(b.codec))},
              {"index", b.index},                        {"payload_sha256", Hex(b.payload_sha256)},
              {"raw_bytes", b.raw_bytes},                {"stored_bytes", b.stored_bytes},
              {"token_begin", b.token_begin},            {"token_end", b.token_end},
              {"xxh3_128", Hex(b.xxh3_128)}};
}

}  // namespace

uint64_t Manifest::TotalRawBytes() const {
  uint64_t s = 0;
  for (const auto& b : blocks) s += b.raw_bytes;
  return s;
}

uint64_t Manifest::TotalStoredBytes() const {
  uint64_t s = 0;
  for (const auto& b : blocks) s += b.stored_bytes;
  return s;
}

StatusOr<std::string> SerializeManifest(const Manifest& m, bool with_signature) {
  json blocks = json::array();
  for (const auto& b : m.blocks) blocks.push_back(BlockToJson(b));
  json j{{"artifact_id", m.artifact_id},
         {"blocks", std::move(blocks)},
         {"created_at", m.created_at},
         {"format_version", std::to_string(m.version.major) + "." + std::to_string(m.version.minor)},
         {"probe_logits_sha256", Hex(m.probe_logits_sha256)},
         {"profile", ProfileToJson(m.profile)},
         {"profile_digest", Hex(ProfileDigest(m.profile))},
         {"publisher", Hex(m.publisher)},
         {"token_count", static_cast<uint64_t>(m.tokens.size())},
         {"token_ids", m.tokens}};
  if (m.title) j["title"] = *m.title;
  if (m.source_sha256) j["source_sha256"] = Hex(*m.source_sha256);
  if (with_signature) {
    if (!m.signature) return Status::FailedPrecondition("manifest is not signed");
    j["signature"] = Hex(*m.signature);
  }
  return CanonicalJson(j);
}

Status SignManifest(Manifest* m, const SigningKey& key) {
  m->publisher = key.public_key();
  m->signature.reset();
  KVMART_ASSIGN_OR_RETURN(m->signed_text, SerializeManifest(*m, /*with_signature=*/false));
  m->signature = key.Sign(m->signed_text);
  return Status::Ok();
}

StatusOr<Manifest> ParseManifest(std::string_view text) {
  KVMART_ASSIGN_OR_RETURN(json j, ParseCanonicalJson(text));
  if (!j.is_object()) return Bad("not a JSON object");
  Manifest m;
  // Version first, so that a future major version gets a clear message rather than
  // a complaint about some field it changed.
  KVMART_ASSIGN_OR_RETURN(std::string ver, GetStr(j, "format_version", ""));
  {
    unsigned long long major = 0, minor = 0;
    char tail = 0;
    if (ver.size() > 21 || std::sscanf(ver.c_str(), "%llu.%llu%c", &major, &minor, &tail) != 2 ||
        ver != std::to_string(major) + "." + std::to_string(minor) || major > UINT32_MAX || minor > UINT32_MAX)
      return Bad("format_version '" + ver + "' is not MAJOR.MINOR");
    if (major != kCurrentFormat.major)
      return Status::Unimplemented("artifact format version " + ver + " is not supported (this reader reads " +
                                   std::to_string(kCurrentFormat.major) + ".x)");
    m.version = {static_cast<uint32_t>(major), static_cast<uint32_t>(minor)};
  }
  static const char* kKnown[] = {"artifact_id", "blocks",       "created_at", "format_version", "probe_logits_sha256",
                                 "profile",     "profile_digest", "publisher", "token_count",   "token_ids",
                                 "title",       "source_sha256", "signature"};
  if (m.version.minor <= kCurrentFormat.minor) {
    for (const auto& [k, v] : j.items()) {
      bool known = false;
      for (const char* kk : kKnown) known = known || k == kk;
      if (!known) return Bad("unknown field " + k);
    }
  }
  KVMART_ASSIGN_OR_RETURN(m.artifact_id, GetStr(j, "artifact_id", ""));
  const json* prof = Field(j, "profile");
  if (prof == nullptr) return Bad("missing field profile");
  KVMART_ASSIGN_OR_RETURN(m.profile, ProfileFromJson(*prof));
  KVMART_ASSIGN_OR_RETURN(auto pd, GetHex<32>(j, "profile_digest", ""));
  if (pd != ProfileDigest(m.profile)) return Bad("profile_digest does not match the profile");
  KVMART_ASSIGN_OR_RETURN(m.created_at, GetStr(j, "created_at", ""));
  KVMART_ASSIGN_OR_RETURN(m.probe_logits_sha256, GetHex<32>(j, "probe_logits_sha256", ""));
  KVMART_ASSIGN_OR_RETURN(m.publisher, GetHex<32>(j, "publisher", ""));
  if (Field(j, "title") != nullptr) {
    KVMART_ASSIGN_OR_RETURN(std::string t, GetStr(j, "title", ""));
    m.title = std::move(t);
  }
  if (Field(j, "source_sha256") != nullptr) {
    KVMART_ASSIGN_OR_RETURN(auto s, GetHex<32>(j, "source_sha256", ""));
    m.source_sha256 = s;
  }
  if (Field(j, "signature") != nullptr) {
    KVMART_ASSIGN_OR_RETURN(auto s, GetHex<64>(j, "signature", ""));
    m.signature = s;
  }
  // Token ids: the array's size is bounded by the text we were given, so
  // reserving it is not an allocation driven by a claimed number.
  KVMART_ASSIGN_OR_RETURN(uint64_t token_count, GetU64(j, "token_count", ""));
  const json* ids = Field(j, "token_ids");
  if (ids == nullptr || !ids->is_array()) return Bad("token_ids must be an array");
  if (token_count != ids->size())
    return Bad("token_count " + std::to_string(token_count) + " but token_ids has " + std::to_string(ids->size()));
  m.tokens.reserve(ids->size());
  for (const auto& t : *ids) {
    if (!t.is_number_unsigned() || t.get<uint64_t>() > UINT32_MAX) return Bad("token id is not a u32");
    m.tokens.push_back(static_cast<uint32_t>(t.get<uint64_t>()));
  }
  const json* blocks = Field(j, "blocks");
  if (blocks == nullptr || !blocks->is_array()) return Bad("blocks must be an array");
  m.blocks.reserve(blocks->size());
  for (const auto& bj : *blocks) {
    std::string where = "block " + std::to_string(m.blocks.size()) + ": ";
    if (!bj.is_object()) return Bad(where + "not an object");
    if (m.version.minor <= kCurrentFormat.minor && bj.size() != 9) return Bad(where + "unexpected field set");
    BlockInfo b;
    KVMART_ASSIGN_OR_RETURN(uint64_t index, GetU64(bj, "index", where));
    if (index > UINT32_MAX) return Bad(where + "index out of range");
    b.index = static_cast<uint32_t>(index);
    KVMART_ASSIGN_OR_RETURN(b.token_begin, GetU64(bj, "token_begin", where));
    KVMART_ASSIGN_OR_RETURN(b.token_end, GetU64(bj, "token_end", where));
    KVMART_ASSIGN_OR_RETURN(b.chain_hash, GetHex<32>(bj, "chain_hash", where));
    KVMART_ASSIGN_OR_RETURN(std::string codec, GetStr(bj, "codec", where));
    auto c = ParseCodec(codec);
    if (!c.ok()) return Bad(where + c.status().message());
    b.codec = *c;
    KVMART_ASSIGN_OR_RETURN(b.raw_bytes, GetU64(bj, "raw_bytes", where));
    KVMART_ASSIGN_OR_RETURN(b.stored_bytes, GetU64(bj, "stored_bytes", where));
    KVMART_ASSIGN_OR_RETURN(b.payload_sha256, GetHex<32>(bj, "payload_sha256", where));
    KVMART_ASSIGN_OR_RETURN(b.xxh3_128, GetHex<16>(bj, "xxh3_128", where));
    m.blocks.push_back(b);
  }
  KVMART_RETURN_IF_ERROR(ValidateManifest(m));
  // The signed text is the received object minus "signature", re-serialised
  // canonically: exactly what the publisher signed, unknown newer fields included.
  j.erase("signature");
  KVMART_ASSIGN_OR_RETURN(m.signed_text, CanonicalJson(j));
  return m;
}

Status ValidateManifest(const Manifest& m) {
  Status ps = m.profile.Validate();
  if (!ps.ok()) return Bad(ps.message());
  const uint64_t bpt = m.profile.shape.BytesPerToken();
  if (bpt * m.profile.block_size > kMaxBlockRawBytes)
    return Bad("profile: a block of " + std::to_string(m.profile.block_size) + " tokens would exceed " +
               std::to_string(kMaxBlockRawBytes) + " bytes");
  if (m.tokens.empty()) return Bad("no tokens");
  if (!IsRfc3339Utc(m.created_at)) return Bad("created_at must be YYYY-MM-DDTHH:MM:SSZ");
  if (m.title && m.title->size() > 4096) return Bad("title longer than 4096 bytes");
  const uint64_t bs = m.profile.block_size;
  const uint64_t want_blocks = (m.tokens.size() + bs - 1) / bs;
  if (m.blocks.size() != want_blocks)
    return Bad(std::to_string(m.blocks.size()) + " blocks, but " + std::to_string(m.tokens.size()) + " tokens at " +
               std::to_string(bs) + " per block need " + std::to_string(want_blocks));
  auto chain = ChainHashes(ProfileDigest(m.profile), m.tokens, m.profile.block_size);
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    const BlockInfo& b = m.blocks[i];
    std::string where = "block " + std::to_string(i) + ": ";
    uint64_t begin = i * bs, end = std::min<uint64_t>(begin + bs, m.tokens.size());
    if (b.index != i) return Bad(where + "index is " + std::to_string(b.index));
    if (b.token_begin != begin || b.token_end != end) return Bad(where + "wrong token range");
    if (b.raw_bytes != (end - begin) * bpt)
      return Bad(where + "raw_bytes " + std::to_string(b.raw_bytes) + " does not match the KV shape (" +
                 std::to_string((end - begin) * bpt) + ")");
    if (b.codec == Codec::kRaw && b.stored_bytes != b.raw_bytes) return Bad(where + "raw codec with stored != raw");
    // The lossless codec never expands beyond its header (it falls back to stored
    // planes), which also bounds what a forged size can claim.
    if (b.codec == Codec::kLossless && b.stored_bytes > b.raw_bytes + 64) return Bad(where + "stored_bytes too large");
    if (b.chain_hash != chain[i]) return Bad(where + "chain_hash does not match profile + tokens");
  }
  if (m.artifact_id != ArtifactIdFromChain(chain.back()))
    return Bad("artifact_id does not match profile + tokens (expected " + ArtifactIdFromChain(chain.back()) + ")");
  return Status::Ok();
}

Status VerifyManifestSignature(const Manifest& m) {
  if (!m.signature) return Status::Unauthenticated("manifest is not signed");
  if (m.signed_text.empty()) return Status::Unauthenticated("manifest has no signed text");
  if (!VerifySignature(m.publisher, m.signed_text, *m.signature))
    return Status::Unauthenticated("manifest signature does not verify for publisher " + Hex(m.publisher));
  // For versions we model fully, the fields must still say what was signed (a
  // caller could have edited the struct after parsing).
  if (m.version.minor <= kCurrentFormat.minor) {
    auto now = SerializeManifest(m, /*with_signature=*/false);
    if (!now.ok() || *now != m.signed_text)
      return Status::Unauthenticated("manifest fields differ from the signed text");
  }
  return Status::Ok();
}

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace kvmart::artifact
