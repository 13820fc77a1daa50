#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace kvmart::tokenizer {

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char b) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{-1}));
  return (it != ch.end() && it->first == b) ? it->second : -1;
}

void AddedTokenMatcher::Add(std::string_view content, TokenId id) {
  if (content.empty()) return;
  first_byte_[static_cast<unsigned char>(content[0])] = true;
  int32_t node = 0;
  for (unsigned char b : content) {
    int32_t next = Child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{});
      auto& ch = nodes_[node].children;
      ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{-1})),
                std::make_pair(b, next));
    }
    node = next;
  }
  nodes_[node].id = id;
}

AddedTokenMatcher::Match AddedTokenMatcher::FindNext(std::string_view text, size_t from) const {
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    int32_t node = 0;
    Match best;
    for (size_t j = i; j < text.size(); ++j) {
      node = Child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      if (nodes_[node].id >= 0) best = Match{i, j + 1 - i, nodes_[node].id};
    }
    if (best.id >= 0) return best;
  }
  return Match{};
}

}  // namespace kvmart::tokenizer
