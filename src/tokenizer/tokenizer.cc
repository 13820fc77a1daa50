#include "tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/nfc.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace kvmart::tokenizer {
namespace {

using json = nlohmann::json;

// The GPT-2 pre-tokenizer pattern, used by a ByteLevel pre-tokenizer with
// use_regex = true.
constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

bool IsNullOr(const json& j, const char* key) { return !j.is_object() || !j.contains(key) || j[key].is_null(); }

// Typed reads of tokenizer.json fields. nlohmann's value()/get() throw on a
// field of the wrong type; a mistyped file must instead be a Corruption that
// names the field ("added_tokens[3].content must be a string").
std::string FieldName(std::string_view where, const char* key) {
  return where.empty() ? std::string(key) : std::string(where) + "." + key;
}

Status ExpectObject(const json& j, std::string_view where) {
  if (!j.is_object()) return Status::Corruption(std::string(where) + " must be an object");
  return Status::Ok();
}

StatusOr<std::string> StrField(const json& j, std::string_view where, const char* key, std::string fallback) {
  KVMART_RETURN_IF_ERROR(ExpectObject(j, where));
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) return Status::Corruption(FieldName(where, key) + " must be a string");
  return it->get<std::string>();
}

StatusOr<bool> BoolField(const json& j, std::string_view where, const char* key, bool fallback) {
  KVMART_RETURN_IF_ERROR(ExpectObject(j, where));
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Status::Corruption(FieldName(where, key) + " must be true or false");
  return it->get<bool>();
}

StatusOr<TokenId> IdField(const json& j, std::string_view where, const char* key) {
  KVMART_RETURN_IF_ERROR(ExpectObject(j, where));
  auto it = j.find(key);
  if (it == j.end()) return Status::Corruption(FieldName(where, key) + " is missing");
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 24)) {
    return Status::Corruption(FieldName(where, key) + " must be an integer token id in [0, 2^24]");
  }
  return static_cast<TokenId>(it->get<int64_t>());
}

Status CheckByteLevel(const json& j, const char* where, bool* use_regex) {
  KVMART_ASSIGN_OR_RETURN(bool prefix_space, BoolField(j, where, "add_prefix_space", false));
  if (prefix_space) {
    return Status::Unimplemented(std::string(where) + ": ByteLevel add_prefix_space=true is not supported");
  }
  if (use_regex != nullptr) {
    KVMART_ASSIGN_OR_RETURN(*use_regex, BoolField(j, where, "use_regex", true));
  }
  return Status::Ok();
}

}  // namespace

struct Tokenizer::Impl {
  std::string digest;
  std::vector<std::string> id_to_bytes;  // raw bytes per id ("" = no such id)
  std::vector<uint8_t> id_kind;          // 0 none, 1 vocab, 2 added, 3 added+special
  std::unordered_map<std::string, TokenId> vocab_by_bytes;
  std::unordered_map<std::string, TokenId> added_by_content;
  AddedTokenMatcher added;
  std::unique_ptr<RegexSplitter> splitter;
  std::unique_ptr<BpeModel> bpe;
  bool nfc = false;
  bool ignore_merges = false;

  Status EncodeSection(std::string_view section, std::vector<TokenId>* out) const {
    std::string normalized;
    if (nfc) {
      KVMART_ASSIGN_OR_RETURN(normalized, NormalizeNfc(section));
      section = normalized;
    }
    std::vector<std::pair<size_t, size_t>> spans;
    KVMART_RETURN_IF_ERROR(splitter->SplitSpans(section, &spans));
    for (auto [b, n] : spans) {
      std::string_view word = section.substr(b, n);
      if (ignore_merges) {
        auto it = vocab_by_bytes.find(std::string(word));
        if (it != vocab_by_bytes.end()) {
          out->push_back(it->second);
          continue;
        }
      }
      bpe->Encode(word, out);
    }
    return Status::Ok();
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open tokenizer file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return Status::IOError("cannot read " + path);
  auto tok = FromJson(ss.str());
  if (!tok.ok()) return tok.status().WithContext(path);
  return tok;
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("tokenizer.json is not a JSON object");
  auto impl = std::make_unique<Impl>();
  impl->digest = ToHex(Sha256Of(json_text));

  // ---- model
  if (!j.contains("model") || !j["model"].is_object()) return Status::Corruption("no \"model\" object");
  const json& model = j["model"];
  KVMART_ASSIGN_OR_RETURN(std::string model_type, StrField(model, "model", "type", "BPE"));
  if (model_type != "BPE") return Status::Unimplemented("model type " + model_type + " (only BPE)");
  if (!IsNullOr(model, "dropout")) return Status::Unimplemented("BPE dropout is not supported");
  KVMART_ASSIGN_OR_RETURN(bool byte_fallback, BoolField(model, "model", "byte_fallback", false));
  if (byte_fallback) {
    return Status::Unimplemented("BPE byte_fallback=true is not supported (byte-level models never need it)");
  }
  KVMART_ASSIGN_OR_RETURN(std::string subword_prefix, StrField(model, "model", "continuing_subword_prefix", ""));
  KVMART_ASSIGN_OR_RETURN(std::string word_suffix, StrField(model, "model", "end_of_word_suffix", ""));
  if (!subword_prefix.empty() || !word_suffix.empty()) {
    return Status::Unimplemented("continuing_subword_prefix / end_of_word_suffix are not supported");
  }
  KVMART_ASSIGN_OR_RETURN(impl->ignore_merges, BoolField(model, "model", "ignore_merges", false));
  if (!model.contains("vocab") || !model["vocab"].is_object()) return Status::Corruption("model.vocab missing");

  auto set_id = [&](TokenId id, std::string bytes, uint8_t kind) -> Status {
    if (id < 0 || id > (1 << 24)) return Status::Corruption("token id out of range: " + std::to_string(id));
    if (static_cast<size_t>(id) >= impl->id_to_bytes.size()) {
      impl->id_to_bytes.resize(id + 1);
      impl->id_kind.resize(id + 1, 0);
    }
    impl->id_to_bytes[id] = std::move(bytes);
    impl->id_kind[id] = kind;
    return Status::Ok();
  };

  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > (1 << 24)) {
      return Status::Corruption("model.vocab[" + it.key() + "] must be an integer token id in [0, 2^24]");
    }
    auto bytes = ByteLevelToBytes(it.key());
    if (!bytes) return Status::Corruption("vocab entry is not in the byte-level alphabet: " + it.key());
    const TokenId id = static_cast<TokenId>(it.value().get<int64_t>());
    KVMART_RETURN_IF_ERROR(set_id(id, *bytes, 1));
    impl->vocab_by_bytes.emplace(std::move(*bytes), id);
  }
  TokenId byte_ids[256];
  for (int b = 0; b < 256; ++b) {
    auto it = impl->vocab_by_bytes.find(std::string(1, static_cast<char>(b)));
    if (it == impl->vocab_by_bytes.end()) {
      return Status::Corruption("vocab lacks the single-byte token for byte " + std::to_string(b));
    }
    byte_ids[b] = it->second;
  }

  // Merges: "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
  std::vector<BpeModel::Merge> merges;
  if (model.contains("merges")) {
    const json& m = model["merges"];
    if (!m.is_array()) return Status::Corruption("model.merges must be an array");
    merges.reserve(m.size());
    for (size_t r = 0; r < m.size(); ++r) {
      std::string a, b;
      if (m[r].is_string()) {
        const std::string& s = m[r].get_ref<const std::string&>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return Status::Corruption("merge " + std::to_string(r) + " is not \"a b\": " + s);
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m[r].is_array() && m[r].size() == 2 && m[r][0].is_string() && m[r][1].is_string()) {
        a = m[r][0].get<std::string>();
        b = m[r][1].get<std::string>();
      } else {
        return Status::Corruption("merge " + std::to_string(r) + " is neither \"a b\" nor [a, b]");
      }
      auto ab = ByteLevelToBytes(a), bb = ByteLevelToBytes(b);
      if (!ab || !bb) return Status::Corruption("merge " + std::to_string(r) + " is not byte-level");
      auto ia = impl->vocab_by_bytes.find(*ab), ib = impl->vocab_by_bytes.find(*bb);
      auto im = impl->vocab_by_bytes.find(*ab + *bb);
      if (ia == impl->vocab_by_bytes.end() || ib == impl->vocab_by_bytes.end() ||
          im == impl->vocab_by_bytes.end()) {
        return Status::Corruption("merge " + std::to_string(r) + " (" + a + " " + b + ") uses a token not in vocab");
      }
      merges.push_back({ia->second, ib->second, im->second});
    }
  }
  impl->bpe = std::make_unique<BpeModel>(byte_ids, merges);

  // ---- added tokens
  if (!IsNullOr(j, "added_tokens")) {
    if (!j["added_tokens"].is_array()) return Status::Corruption("added_tokens must be an array");
    size_t index = 0;
    for (const json& t : j["added_tokens"]) {
      const std::string where = "added_tokens[" + std::to_string(index++) + "]";
      KVMART_RETURN_IF_ERROR(ExpectObject(t, where));
      if (!t.contains("content")) return Status::Corruption(where + ".content is missing");
      KVMART_ASSIGN_OR_RETURN(std::string content, StrField(t, where, "content", ""));
      KVMART_ASSIGN_OR_RETURN(TokenId id, IdField(t, where, "id"));
      KVMART_ASSIGN_OR_RETURN(bool lstrip, BoolField(t, where, "lstrip", false));
      KVMART_ASSIGN_OR_RETURN(bool rstrip, BoolField(t, where, "rstrip", false));
      KVMART_ASSIGN_OR_RETURN(bool single_word, BoolField(t, where, "single_word", false));
      KVMART_ASSIGN_OR_RETURN(bool normalized, BoolField(t, where, "normalized", false));
      KVMART_ASSIGN_OR_RETURN(bool special, BoolField(t, where, "special", false));
      if (lstrip || rstrip || single_word) {
        return Status::Unimplemented("added token " + content + ": lstrip/rstrip/single_word are not supported");
      }
      if (normalized && !special) {
        return Status::Unimplemented("added token " + content + ": normalized=true is not supported");
      }
      KVMART_RETURN_IF_ERROR(ValidateUtf8(content));
      KVMART_RETURN_IF_ERROR(set_id(id, content, special ? 3 : 2));
      impl->added.Add(content, id);
      impl->added_by_content[content] = id;
    }
  }

  // ---- normalizer
  if (!IsNullOr(j, "normalizer")) {
    const json& n = j["normalizer"];
    KVMART_ASSIGN_OR_RETURN(std::string type, StrField(n, "normalizer", "type", ""));
    if (type == "NFC") {
      impl->nfc = true;
    } else if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array() &&
               n["normalizers"].empty()) {
    } else {
      return Status::Unimplemented("normalizer " + n.dump() + " (only NFC or none)");
    }
  }

  // ---- pre-tokenizer: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)]
  // or ByteLevel(use_regex=true) with the GPT-2 pattern.
  if (IsNullOr(j, "pre_tokenizer")) return Status::Unimplemented("no pre_tokenizer (byte-level one required)");
  {
    const json& p = j["pre_tokenizer"];
    std::string pattern;
    std::vector<std::pair<std::string, json>> steps;  // (field name, step)
    KVMART_ASSIGN_OR_RETURN(std::string top_type, StrField(p, "pre_tokenizer", "type", ""));
    if (top_type == "Sequence") {
      if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) {
        return Status::Corruption("pre_tokenizer.pretokenizers must be an array");
      }
      for (const json& s : p["pretokenizers"]) {
        steps.emplace_back("pre_tokenizer.pretokenizers[" + std::to_string(steps.size()) + "]", s);
      }
    } else {
      steps.emplace_back("pre_tokenizer", p);
    }
    bool byte_level = false;
    for (const auto& [where, s] : steps) {
      KVMART_ASSIGN_OR_RETURN(std::string type, StrField(s, where, "type", ""));
      if (type == "Split" && pattern.empty() && !byte_level) {
        if (!s.contains("pattern") || !s["pattern"].is_object() || !s["pattern"].contains("Regex")) {
          return Status::Unimplemented("Split pre-tokenizer without a Regex pattern");
        }
        KVMART_ASSIGN_OR_RETURN(std::string behavior, StrField(s, where, "behavior", ""));
        KVMART_ASSIGN_OR_RETURN(bool invert, BoolField(s, where, "invert", false));
        if (behavior != "Isolated" || invert) {
          return Status::Unimplemented("Split pre-tokenizer: only behavior Isolated, invert false");
        }
        KVMART_ASSIGN_OR_RETURN(pattern, StrField(s["pattern"], where + ".pattern", "Regex", ""));
      } else if (type == "ByteLevel" && !byte_level) {
        bool use_regex = true;
        KVMART_RETURN_IF_ERROR(CheckByteLevel(s, where.c_str(), &use_regex));
        if (use_regex) {
          if (!pattern.empty()) return Status::Unimplemented("Split followed by ByteLevel(use_regex=true)");
          pattern = std::string(kGpt2Pattern);
        }
        byte_level = true;
      } else {
        return Status::Unimplemented("pre_tokenizer step " + s.dump().substr(0, 200));
      }
    }
    if (!byte_level || pattern.empty()) {
      return Status::Unimplemented("pre_tokenizer must be byte-level with a split regex");
    }
    KVMART_ASSIGN_OR_RETURN(impl->splitter, RegexSplitter::Create(pattern));
  }

  // ---- post-processor and decoder: only the byte-level no-ops are exact here.
  for (const char* key : {"post_processor", "decoder"}) {
    if (IsNullOr(j, key)) continue;
    KVMART_ASSIGN_OR_RETURN(std::string type, StrField(j[key], key, "type", ""));
    if (type != "ByteLevel") {
      return Status::Unimplemented(std::string(key) + " " + j[key].dump().substr(0, 200) + " (only ByteLevel)");
    }
    KVMART_RETURN_IF_ERROR(CheckByteLevel(j[key], key, nullptr));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::vector<TokenId>> Tokenizer::Encode(std::string_view text, bool /*add_special_tokens*/) const {
  // add_special_tokens: the only post-processor accepted (ByteLevel) adds none.
  KVMART_RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  size_t pos = 0;
  while (pos < text.size()) {
    AddedTokenMatcher::Match m = impl_->added.FindNext(text, pos);
    size_t section_end = m.id >= 0 ? m.begin : text.size();
    if (section_end > pos) KVMART_RETURN_IF_ERROR(impl_->EncodeSection(text.substr(pos, section_end - pos), &ids));
    if (m.id < 0) break;
    ids.push_back(m.id);
    pos = m.begin + m.length;
  }
  return ids;
}

StatusOr<std::string> Tokenizer::Decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (TokenId id : ids) {
    KVMART_ASSIGN_OR_RETURN(std::string_view b, TextBytes(id));
    if (skip_special_tokens && IsSpecial(id)) continue;
    bytes.append(b);
  }
  std::string out;
  out.reserve(bytes.size());
  AppendUtf8Lossy(bytes, &out);
  return out;
}

StatusOr<std::string_view> Tokenizer::TokenBytes(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_kind.size() || impl_->id_kind[id] == 0) {
    return Status::InvalidArgument("unknown token id " + std::to_string(id));
  }
  return std::string_view(impl_->id_to_bytes[id]);
}

StatusOr<std::string_view> Tokenizer::TextBytes(TokenId id) const {
  if (id < 0) return Status::InvalidArgument("negative token id " + std::to_string(id));
  if (static_cast<size_t>(id) >= impl_->id_kind.size() || impl_->id_kind[id] == 0) return std::string_view();
  return std::string_view(impl_->id_to_bytes[id]);
}

std::optional<TokenId> Tokenizer::TokenToId(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(std::string(token)); it != impl_->added_by_content.end()) {
    return it->second;
  }
  auto bytes = ByteLevelToBytes(token);
  if (!bytes) return std::nullopt;
  if (auto it = impl_->vocab_by_bytes.find(*bytes); it != impl_->vocab_by_bytes.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_kind.size() && impl_->id_kind[id] == 3;
}
bool Tokenizer::IsAddedToken(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_kind.size() && impl_->id_kind[id] >= 2;
}
size_t Tokenizer::vocab_size() const { return impl_->id_kind.size(); }
const std::string& Tokenizer::digest() const { return impl_->digest; }

}  // namespace kvmart::tokenizer
