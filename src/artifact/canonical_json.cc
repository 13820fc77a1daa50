#include "artifact/canonical_json.h"

#include <vector>

namespace kvmart::artifact {
namespace {

using json = nlohmann::json;

Status CheckTypes(const json& root) {
  // Iterative walk: a hostile document must not be able to exhaust the stack.
  std::vector<const json*> todo{&root};
  while (!todo.empty()) {
    const json* j = todo.back();
    todo.pop_back();
    switch (j->type()) {
      case json::value_t::object:
        for (const auto& [k, v] : j->items()) todo.push_back(&v);
        break;
      case json::value_t::array:
        for (const auto& v : *j) todo.push_back(&v);
        break;
      case json::value_t::string:
      case json::value_t::number_unsigned:
        break;
      case json::value_t::number_integer:
        if (j->get<int64_t>() < 0) return Status::InvalidArgument("canonical JSON: negative integer");
        break;
      default:
        return Status::InvalidArgument(std::string("canonical JSON: disallowed value type ") +
                                       j->type_name());
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> CanonicalJson(const json& j) {
  KVMART_RETURN_IF_ERROR(CheckTypes(j));
  try {
    return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("canonical JSON: ") + e.what());
  }
}

StatusOr<json> ParseCanonicalJson(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth) return Status::Corruption("JSON nested deeper than " + std::to_string(max_depth));
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption("malformed JSON");
  auto canon = CanonicalJson(j);
  if (!canon.ok()) return Status::Corruption(canon.status().message());
  if (*canon != text) return Status::Corruption("JSON is not in canonical form (sorted keys, no whitespace)");
  return j;
}

}  // namespace kvmart::artifact
