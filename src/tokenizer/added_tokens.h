// Added tokens (special and not) are found in raw text before normalization
// and BPE and are never split: leftmost, then longest match wins, the rule of
// Hugging Face tokenizers and of the reference.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace kvmart::tokenizer {

class AddedTokenMatcher {
 public:
  struct Match {
    size_t begin = 0, length = 0;
    TokenId id = -1;
  };

  void Add(std::string_view content, TokenId id);

  // First match at or after `from` (leftmost, then longest), or a Match with
  // id -1 when there is none.
  Match FindNext(std::string_view text, size_t from) const;

  bool empty() const { return nodes_.size() <= 1; }

 private:
  // Byte trie; children kept as a sorted small vector (a few dozen tokens).
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    TokenId id = -1;
  };
  int32_t Child(int32_t node, unsigned char b) const;

  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace kvmart::tokenizer
