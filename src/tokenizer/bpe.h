// Byte-pair encoding of one pre-token over raw bytes.
//
// Merges are applied lowest rank first, leftmost first among equal ranks (the
// order of Hugging Face tokenizers and of the reference). Short words use a
// flat scan; long words a heap over a linked list, so a 1 MB word costs
// O(n log n), never O(n^2). Results for repeated pre-tokens come from a
// bounded cache.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvmart::tokenizer {

using TokenId = int32_t;

class BpeModel {
 public:
  struct Merge {
    TokenId left, right, merged;
  };

  // byte_ids[b]: the token of the single byte b. merges: in rank order.
  BpeModel(const TokenId (&byte_ids)[256], const std::vector<Merge>& merges);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the tokens of `word` (non-empty raw bytes) to *out. Thread-safe.
  void Encode(std::string_view word, std::vector<TokenId>* out) const;

 private:
  struct Slot {
    uint64_t key;  // (left << 32) | right; kEmpty when unused
    int32_t rank;
    TokenId merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  // Rank and result of merging (left, right), or false when no such merge.
  bool Lookup(TokenId left, TokenId right, int32_t* rank, TokenId* merged) const {
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
                         static_cast<uint32_t>(right);
    size_t i = Hash(key) & mask_;
    for (;;) {
      const Slot& s = table_[i];
      if (s.key == key) {
        *rank = s.rank;
        *merged = s.merged;
        return true;
      }
      if (s.key == kEmpty) return false;
      i = (i + 1) & mask_;
    }
  }
  static size_t Hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }

  void EncodeSmall(std::string_view word, std::vector<TokenId>* out) const;
  void EncodeLarge(std::string_view word, std::vector<TokenId>* out) const;

  TokenId byte_ids_[256];
  std::vector<Slot> table_;
  size_t mask_ = 0;

  // Bounded cache of pre-token -> tokens, an approximate LRU in two
  // generations: when the current one is full it becomes the old one (the
  // previous old one is dropped); hits in the old one are promoted. At most
  // 2 * kCacheCapacity entries of at most kMaxCachedWordBytes each.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Cache = std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>>;
  static constexpr size_t kCacheCapacity = 1 << 15;
  static constexpr size_t kMaxCachedWordBytes = 24;
  void InsertLocked(std::string_view word, std::vector<TokenId> ids) const;
  mutable std::mutex cache_mu_;
  mutable Cache cache_, old_cache_;
};

}  // namespace kvmart::tokenizer
