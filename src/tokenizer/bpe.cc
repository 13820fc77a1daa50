#include "tokenizer/bpe.h"

#include <algorithm>
#include <queue>

namespace kvmart::tokenizer {
namespace {

// Up to this many bytes the O(n^2) scan beats a heap (no allocation beyond one
// small vector, perfect locality).
constexpr size_t kSmallWord = 48;

}  // namespace

BpeModel::BpeModel(const TokenId (&byte_ids)[256], const std::vector<Merge>& merges) {
  std::copy(std::begin(byte_ids), std::end(byte_ids), byte_ids_);
  size_t cap = 16;
  while (cap < merges.size() + merges.size() / 2) cap <<= 1;  // load <= 2/3: 4 MB for Qwen3
  table_.assign(cap, Slot{kEmpty, 0, 0});
  mask_ = cap - 1;
  for (size_t r = 0; r < merges.size(); ++r) {
    const Merge& m = merges[r];
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(m.left)) << 32) |
                         static_cast<uint32_t>(m.right);
    size_t i = Hash(key) & mask_;
    while (table_[i].key != kEmpty && table_[i].key != key) i = (i + 1) & mask_;
    // A duplicated merge keeps its first (lowest) rank, like the reference's map.
    if (table_[i].key == kEmpty) table_[i] = Slot{key, static_cast<int32_t>(r), m.merged};
  }
}

void BpeModel::Encode(std::string_view word, std::vector<TokenId>* out) const {
  if (word.size() == 1) {
    out->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
    it = old_cache_.find(word);
    if (it != old_cache_.end()) {  // still in use: promote to the current generation
      out->insert(out->end(), it->second.begin(), it->second.end());
      InsertLocked(word, it->second);
      return;
    }
  }
  const size_t start = out->size();
  if (word.size() <= kSmallWord) {
    EncodeSmall(word, out);
  } else {
    EncodeLarge(word, out);
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    InsertLocked(word, std::vector<TokenId>(out->begin() + start, out->end()));
  }
}

void BpeModel::InsertLocked(std::string_view word, std::vector<TokenId> ids) const {
  if (cache_.size() >= kCacheCapacity) {
    old_cache_ = std::move(cache_);
    cache_ = Cache();
  }
  cache_.emplace(std::string(word), std::move(ids));
}

void BpeModel::EncodeSmall(std::string_view word, std::vector<TokenId>* out) const {
  // sym[i] and the rank/result of merging sym[i] with sym[i+1]; after a merge
  // only the two neighbouring pairs are looked up again.
  TokenId sym[kSmallWord];
  int32_t rank[kSmallWord];
  TokenId merged[kSmallWord];
  size_t n = word.size();
  for (size_t i = 0; i < n; ++i) sym[i] = byte_ids_[static_cast<unsigned char>(word[i])];
  auto look = [&](size_t i) {
    if (!Lookup(sym[i], sym[i + 1], &rank[i], &merged[i])) rank[i] = INT32_MAX;
  };
  for (size_t i = 0; i + 1 < n; ++i) look(i);
  while (n > 1) {
    size_t best = 0;
    // Strict '<' keeps the leftmost pair among equal ranks.
    for (size_t i = 1; i + 1 < n; ++i) {
      if (rank[i] < rank[best]) best = i;
    }
    if (rank[best] == INT32_MAX) break;
    sym[best] = merged[best];
    // Close the gap: symbols best+2.. and pairs best+2.. move one left.
    for (size_t i = best + 1; i + 1 < n; ++i) sym[i] = sym[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) {
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) look(best - 1);
    if (best + 1 < n) look(best);
  }
  out->insert(out->end(), sym, sym + n);
}

void BpeModel::EncodeLarge(std::string_view word, std::vector<TokenId>* out) const {
  struct Sym {
    TokenId id;
    int32_t prev, next;
  };
  struct Cand {
    int32_t rank, left;
    TokenId left_id, right_id, merged;
    // Min-heap on (rank, left): lowest rank first, then leftmost.
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<Sym> syms(n);
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = Sym{byte_ids_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::vector<Cand> storage;
  storage.reserve(n);
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>(),
                                                                       std::move(storage));
  auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[left].next;
    if (right < 0) return;
    int32_t rank;
    TokenId merged;
    if (Lookup(syms[left].id, syms[right].id, &rank, &merged)) {
      heap.push(Cand{rank, left, syms[left].id, syms[right].id, merged});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    // Stale candidates: a side has merged since (tokens only grow, so an
    // unchanged id means an unchanged symbol).
    if (l.id != c.left_id || l.next < 0 || syms[l.next].id != c.right_id) continue;
    Sym& r = syms[l.next];
    l.id = c.merged;
    r.id = -1;
    l.next = r.next;
    if (l.next >= 0) syms[l.next].prev = c.left;
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
}

}  // namespace kvmart::tokenizer
