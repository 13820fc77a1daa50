// libFuzzer target for the tokenizer: tokenizer.json loading, encoding and
// decoding arbitrary bytes with the real Qwen3 tokenizer, and the chat
// template renderer on arbitrary messages. The first input byte picks the
// path. The real tokenizer.json is read once from $KVMART_FUZZ_TOKENIZER.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

const kvmart::tokenizer::Tokenizer& Qwen3() {
  static const std::unique_ptr<kvmart::tokenizer::Tokenizer> tok = [] {
    const char* path = std::getenv("KVMART_FUZZ_TOKENIZER");
    if (path == nullptr) {
      std::fprintf(stderr, "fatal: set KVMART_FUZZ_TOKENIZER to the Qwen3 tokenizer.json (make fuzz does)\n");
      std::abort();
    }
    auto t = kvmart::tokenizer::Tokenizer::Load(path);
    if (!t.ok()) {
      std::fprintf(stderr, "fatal: %s\n", t.status().ToString().c_str());
      std::abort();
    }
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace kvmart::tokenizer;
  switch (data[0] % 4) {
    case 0:  // a tokenizer.json of any content
      (void)Tokenizer::FromJson(rest);
      break;
    case 1: {  // arbitrary bytes through encode, then decode of what came out
      auto ids = Qwen3().Encode(rest, (data[0] & 4) != 0);
      if (ids.ok()) (void)Qwen3().Decode(*ids);
      break;
    }
    case 2: {  // arbitrary ids (4 bytes each, any value) through decode
      std::vector<TokenId> ids;
      for (size_t i = 0; i + 4 <= rest.size(); i += 4) {
        uint32_t v = 0;
        for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(static_cast<uint8_t>(rest[i + b])) << (8 * b);
        ids.push_back(static_cast<TokenId>(v));
      }
      (void)Qwen3().Decode(ids, (data[0] & 4) != 0);
      break;
    }
    default: {  // messages JSON through the chat template
      auto msgs = ChatMessagesFromJson(rest);
      if (msgs.ok()) (void)EncodeChatPrefix(Qwen3(), *msgs, {});
      break;
    }
  }
  return 0;
}
