#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace kvmart::tokenizer {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

StatusOr<std::string> StreamDecoder::Push(TokenId id) {
  KVMART_ASSIGN_OR_RETURN(std::string_view bytes, tokenizer_.TextBytes(id));
  if (!(skip_special_tokens_ && tokenizer_.IsSpecial(id))) pending_.append(bytes);
  const size_t stable = StableUtf8PrefixLength(pending_);
  std::string out;
  AppendUtf8Lossy(std::string_view(pending_).substr(0, stable), &out);
  pending_.erase(0, stable);
  return out;
}

std::string StreamDecoder::Finish() {
  std::string out;
  AppendUtf8Lossy(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace kvmart::tokenizer
