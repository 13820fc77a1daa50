#include "artifact/profile.h"

#include "artifact/canonical_json.h"

namespace kvmart::artifact {
namespace {

using json = nlohmann::json;

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Strict field access for untrusted JSON: present and of the right type.
StatusOr<uint32_t> GetU32(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Corruption(std::string("missing field ") + key);
  if (!it->is_number_unsigned()) return Status::Corruption(std::string("field ") + key + " is not an unsigned integer");
  uint64_t v = it->get<uint64_t>();
  if (v > UINT32_MAX) return Status::Corruption(std::string("field ") + key + " out of range");
  return static_cast<uint32_t>(v);
}

StatusOr<std::string> GetString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Corruption(std::string("missing field ") + key);
  if (!it->is_string()) return Status::Corruption(std::string("field ") + key + " is not a string");
  return it->get<std::string>();
}

Status ExactKeys(const json& j, std::initializer_list<const char*> keys, const char* what) {
  if (!j.is_object()) return Status::Corruption(std::string(what) + " is not an object");
  for (const char* k : keys)
    if (!j.contains(k)) return Status::Corruption(std::string(what) + ": missing field " + k);
  if (j.size() != keys.size()) return Status::Corruption(std::string(what) + ": unknown fields");
  return Status::Ok();
}

}  // namespace

std::string_view KvDtypeName(KvDtype d) { return d == KvDtype::kF16 ? "f16" : "bf16"; }

StatusOr<KvDtype> ParseKvDtype(std::string_view name) {
  if (name == "bf16") return KvDtype::kBf16;
  if (name == "f16") return KvDtype::kF16;
  return Status::InvalidArgument("unknown KV dtype '" + std::string(name) + "' (want bf16 or f16)");
}

uint64_t KvShape::BytesPerToken() const {
  return 2ull * num_layers * num_kv_heads * head_dim * 2ull;
}

Status KvShape::Validate() const {
  if (num_layers == 0 || num_kv_heads == 0 || head_dim == 0)
    return Status::InvalidArgument("KV shape has a zero dimension");
  if (num_layers > 65536 || num_kv_heads > 65536 || head_dim > 65536)
    return Status::InvalidArgument("KV shape dimension above 65536");
  if (BytesPerToken() > (64ull << 20)) return Status::InvalidArgument("KV shape: more than 64 MiB per token");
  if (dtype != KvDtype::kBf16 && dtype != KvDtype::kF16) return Status::InvalidArgument("KV shape: bad dtype");
  return Status::Ok();
}

Status Profile::Validate() const {
  if (!IsLowerHex(weights_digest, 64)) return Status::InvalidArgument("profile: weights_digest must be 64 lower-case hex");
  if (!IsLowerHex(config_digest, 64)) return Status::InvalidArgument("profile: config_digest must be 64 lower-case hex");
  if (!IsLowerHex(tokenizer_digest, 64))
    return Status::InvalidArgument("profile: tokenizer_digest must be 64 lower-case hex");
  if (numerics.empty() || numerics.size() > 64) return Status::InvalidArgument("profile: bad numerics id length");
  for (char c : numerics)
    if (c < 0x21 || c > 0x7e) return Status::InvalidArgument("profile: numerics id must be printable ASCII");
  if (block_size == 0 || block_size > (1u << 20)) return Status::InvalidArgument("profile: block_size out of [1, 2^20]");
  return shape.Validate().WithContext("profile");
}

json ProfileToJson(const Profile& p) {
  json shape = {{"head_dim", p.shape.head_dim},
                {"num_kv_heads", p.shape.num_kv_heads},
                {"num_layers", p.shape.num_layers}};
  return json{{"block_size", p.block_size},
              {"config_digest", p.config_digest},
              {"kv_dtype", std::string(KvDtypeName(p.shape.dtype))},
              {"kv_shape", shape},
              {"numerics", p.numerics},
              {"tokenizer_digest", p.tokenizer_digest},
              {"weights_digest", p.weights_digest}};
}

StatusOr<Profile> ProfileFromJson(const json& j) {
  KVMART_RETURN_IF_ERROR(ExactKeys(j,
                                   {"block_size", "config_digest", "kv_dtype", "kv_shape", "numerics",
                                    "tokenizer_digest", "weights_digest"},
                                   "profile"));
  Profile p;
  KVMART_ASSIGN_OR_RETURN(p.block_size, GetU32(j, "block_size"));
  KVMART_ASSIGN_OR_RETURN(p.config_digest, GetString(j, "config_digest"));
  KVMART_ASSIGN_OR_RETURN(p.tokenizer_digest, GetString(j, "tokenizer_digest"));
  KVMART_ASSIGN_OR_RETURN(p.weights_digest, GetString(j, "weights_digest"));
  KVMART_ASSIGN_OR_RETURN(p.numerics, GetString(j, "numerics"));
  KVMART_ASSIGN_OR_RETURN(std::string dtype, GetString(j, "kv_dtype"));
  auto d = ParseKvDtype(dtype);
  if (!d.ok()) return Status::Corruption("profile: " + d.status().message());
  p.shape.dtype = *d;
  const json& s = j["kv_shape"];
  KVMART_RETURN_IF_ERROR(ExactKeys(s, {"head_dim", "num_kv_heads", "num_layers"}, "profile.kv_shape"));
  KVMART_ASSIGN_OR_RETURN(p.shape.head_dim, GetU32(s, "head_dim"));
  KVMART_ASSIGN_OR_RETURN(p.shape.num_kv_heads, GetU32(s, "num_kv_heads"));
  KVMART_ASSIGN_OR_RETURN(p.shape.num_layers, GetU32(s, "num_layers"));
  Status st = p.Validate();
  if (!st.ok()) return Status::Corruption(st.message());
  return p;
}

std::string CanonicalProfileJson(const Profile& p) {
  // Only strings (validated hex/ASCII) and integers: serialisation cannot fail.
  return ProfileToJson(p).dump();
}

Digest256 ProfileDigest(const Profile& p) { return Sha256Of(CanonicalProfileJson(p)); }

Status CheckProfileMatches(const Profile& expected, const Profile& actual) {
  auto diff = [](const char* field, const std::string& want, const std::string& got) {
    return Status::FailedPrecondition("profile mismatch: " + std::string(field) + ": artifact has " + got +
                                      ", expected " + want);
  };
  if (expected.weights_digest != actual.weights_digest)
    return diff("weights_digest", expected.weights_digest, actual.weights_digest);
  if (expected.config_digest != actual.config_digest)
    return diff("config_digest", expected.config_digest, actual.config_digest);
  if (expected.tokenizer_digest != actual.tokenizer_digest)
    return diff("tokenizer_digest", expected.tokenizer_digest, actual.tokenizer_digest);
  if (expected.shape.dtype != actual.shape.dtype)
    return diff("kv_dtype", std::string(KvDtypeName(expected.shape.dtype)),
                std::string(KvDtypeName(actual.shape.dtype)));
  if (expected.numerics != actual.numerics) return diff("numerics", expected.numerics, actual.numerics);
  if (expected.block_size != actual.block_size)
    return diff("block_size", std::to_string(expected.block_size), std::to_string(actual.block_size));
  if (expected.shape.num_layers != actual.shape.num_layers)
    return diff("kv_shape.num_layers", std::to_string(expected.shape.num_layers),
                std::to_string(actual.shape.num_layers));
  if (expected.shape.num_kv_heads != actual.shape.num_kv_heads)
    return diff("kv_shape.num_kv_heads", std::to_string(expected.shape.num_kv_heads),
                std::to_string(actual.shape.num_kv_heads));
  if (expected.shape.head_dim != actual.shape.head_dim)
    return diff("kv_shape.head_dim", std::to_string(expected.shape.head_dim), std::to_string(actual.shape.head_dim));
  return Status::Ok();
}

}  // namespace kvmart::artifact
