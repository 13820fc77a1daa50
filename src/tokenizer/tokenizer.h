// kvmart tokenizer: text <-> token ids for byte-level BPE models described by a
// Hugging Face tokenizer.json (Qwen2/Qwen3 and the GPT-2 family).
//
// A KV cache is reusable only if the same text always becomes the same ids, so
// this is an exact re-implementation of the reference pipeline, checked id for
// id against it (tests/tokenizer/oracle_test.cc):
//
//   text --(added tokens matched first, never split)--> sections
//   section --NFC--> --Split regex--> pre-tokens --bytes--> BPE --> ids
//
// Invalid UTF-8 input is rejected with InvalidArgument (the reference takes
// only Unicode strings, so there is no replacement policy to copy).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kvmart::tokenizer {

using TokenId = int32_t;

class Tokenizer {
 public:
  // Loads tokenizer.json. Anything the loader cannot honour exactly (another
  // model type, byte_fallback, dropout, lstrip/rstrip added tokens, an
  // unknown normalizer or pre-tokenizer...) is rejected with Unimplemented.
  static StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& tokenizer_json_path);
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text` (UTF-8). Added/special tokens written in the text are
  // recognised (as in the reference). `add_special_tokens` applies the
  // post-processor's template; for Qwen3 (ByteLevel post-processor, no BOS) it
  // adds nothing. Thread-safe.
  StatusOr<std::vector<TokenId>> Encode(std::string_view text, bool add_special_tokens = false) const;

  // Text of `ids`; byte sequences that are not valid UTF-8 (a token sequence
  // cut inside a character) become U+FFFD per maximal ill-formed subpart.
  //
  // Ids without text: a model's embedding usually has more rows than the
  // tokenizer has entries (Qwen3: 151,936 rows, 151,669 entries; the rest are
  // padding), and sampling may pick any row. Such an id — non-negative, with no
  // vocabulary or added-token entry — stands for no text: it contributes
  // nothing here and in StreamDecoder, as in the reference decoder, and stays
  // in the token ids a caller reports. Only a negative id is InvalidArgument.
  // Whether an id is a valid *input* is the model's question (its vocab size),
  // checked where prompts are accepted.
  StatusOr<std::string> Decode(std::span<const TokenId> ids, bool skip_special_tokens = false) const;

  // Raw bytes a token stands for (added tokens: their content); InvalidArgument
  // for an id the tokenizer has no entry for.
  StatusOr<std::string_view> TokenBytes(TokenId id) const;
  // The same, but an id without an entry has empty text (see Decode).
  StatusOr<std::string_view> TextBytes(TokenId id) const;
  // Id of an added token by content ("<|im_end|>") or of a vocabulary entry by
  // its byte-level spelling ("Ġthe").
  std::optional<TokenId> TokenToId(std::string_view token) const;
  bool IsSpecial(TokenId id) const;
  bool IsAddedToken(TokenId id) const;

  // One more than the largest id (base vocabulary plus added tokens).
  size_t vocab_size() const;
  // Lower-case hex SHA-256 of the tokenizer.json bytes: part of the artifact
  // profile, since different tokenizers give different ids.
  const std::string& digest() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Token-by-token decoding for streamed output: Push returns only text that is
// final, holding back the bytes of a character still incomplete, so the
// concatenation of all Push results and Finish equals Decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  StatusOr<std::string> Push(TokenId id);
  // Flushes held-back bytes (an incomplete character becomes U+FFFD).
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace kvmart::tokenizer
