// The KV cache of one session: bf16 keys and values for every layer, held in
// fixed-size pages of kKvPageTokens positions taken from the engine's page pool
// and listed in a block table, grown a page at a time up to the context limit.
//
// Why pages: growing never copies (a contiguous cache doubled and copied
// itself), a finished session's pages go back to the pool already faulted in,
// so the next session — a cache hit importing an artifact's KV — writes into
// warm memory instead of paying first-touch page faults; and pages are the
// unit sessions share: a hot artifact's leading pages are resident once and
// every session continuing from it points at them (KvSharedPages).
//
// Layout of a page: for each (layer, kv head) a block of
//   keys   [tile = pos / 8][head_dim][pos % 8]  (so the score kernel reads 8
//          keys' d-th element in one load)
//   values [pos][head_dim]
// with pos relative to the page. One (layer, kv head) block of a page is
// contiguous, so attention streams dense memory per page. The exchange layout
// (KvExport) is token-major: [pos][kv_head][head_dim].
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "base/status.h"

namespace kvmart {

// Positions per page: a whole number of attention page quanta (64 keys) and
// a divisor of the artifact block size (256), so a block is whole pages.
inline constexpr size_t kKvPageTokens = 64;

// Pages of one shape, recycled: a released page keeps its memory (already
// faulted in) for the next session, up to `keep_bytes` of idle pages. Pages
// are 2 MiB-aligned and advised as huge pages, where the OS gives them, so a
// page costs few TLB entries and few faults.
class KvPagePool {
 public:
  // `limit_bytes` (0: none) bounds the pages in use; at the limit, Acquire
  // first asks the reclaimer (e.g. drop a resident artifact) to free some.
  KvPagePool(size_t page_elements, size_t keep_bytes, size_t limit_bytes = 0);
  KvPagePool(const KvPagePool&) = delete;
  KvPagePool& operator=(const KvPagePool&) = delete;

  struct FreePage {
    void operator()(uint16_t* p) const { std::free(p); }
  };
  using Page = std::unique_ptr<uint16_t[], FreePage>;
  // nullptr when the limit is reached and nothing could be reclaimed.
  Page Acquire();
  void Release(Page page);
  // Called without the pool's lock; returns false when it has nothing left to free.
  void SetReclaimer(std::function<bool()> reclaim);
  // Allocates and faults in `bytes` of pages now (start-up), so that the first
  // requests pay no page faults either.
  void Prefault(size_t bytes);
  size_t page_bytes() const { return page_elements_ * sizeof(uint16_t); }
  size_t idle_pages() const;
  size_t pages_in_use() const;

 private:
  size_t page_elements_, keep_pages_, limit_pages_;
  size_t in_use_ = 0;
  std::function<bool()> reclaim_;
  mutable std::mutex mu_;
  std::vector<Page> idle_;
};

// Immutable pages shared by sessions: the leading whole pages of a hot
// artifact's KV, resident once and referenced by every session continuing from
// it (block tables point at them; nothing is copied). Returned to the pool
// when the last holder lets go.
class KvSharedPages {
 public:
  KvSharedPages(KvPagePool* pool, std::vector<KvPagePool::Page> pages) : pool_(pool), pages_(std::move(pages)) {}
  ~KvSharedPages();
  KvSharedPages(const KvSharedPages&) = delete;
  KvSharedPages& operator=(const KvSharedPages&) = delete;
  size_t pages() const { return pages_.size(); }
  size_t tokens() const { return pages_.size() * kKvPageTokens; }
  const uint16_t* page(size_t i) const { return pages_[i].get(); }

 private:
  KvPagePool* pool_;
  std::vector<KvPagePool::Page> pages_;
};

class KvCache {
 public:
  KvCache(size_t num_layers, size_t kv_heads, size_t head_dim, size_t max_tokens, KvPagePool* pool);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  size_t size() const { return size_; }
  size_t max_tokens() const { return max_tokens_; }
  size_t kv_heads() const { return kv_heads_; }
  size_t head_dim() const { return head_dim_; }
  size_t num_layers() const { return num_layers_; }
  // Elements of one page (all layers and kv heads).
  static size_t PageElements(size_t num_layers, size_t kv_heads, size_t head_dim) {
    return num_layers * kv_heads * 2 * kKvPageTokens * head_dim;
  }

  // Makes room for `tokens` positions; ResourceExhausted beyond max_tokens.
  Status Reserve(size_t tokens);
  // Turns this cache's leading whole pages (all of positions [0, size) that
  // fill a page) into shared pages and returns them; the cache keeps reading
  // them where they are. FailedPrecondition if it already starts shared.
  StatusOr<std::shared_ptr<const KvSharedPages>> ShareLeadingPages();
  // An empty cache starts with `shared` (positions [0, shared->tokens())).
  Status AttachShared(std::shared_ptr<const KvSharedPages> shared);
  size_t shared_tokens() const { return shared_ ? shared_->tokens() : 0; }
  // The shared pages this cache starts with (nullptr: none); caches holding the
  // same object read the same pages for positions [0, shared_tokens()).
  const KvSharedPages* shared_prefix() const { return shared_.get(); }
  // Sets the number of valid positions (≤ reserved capacity).
  void set_size(size_t n) { size_ = n; }

  // For AttentionQuery: per page, the first key tile / first value row of
  // (layer, kv_head); strides within a page.
  const uint16_t* const* key_pages(size_t layer, size_t kv_head) const { return key_ptrs_[layer * kv_heads_ + kv_head].data(); }
  const uint16_t* const* value_pages(size_t layer, size_t kv_head) const {
    return value_ptrs_[layer * kv_heads_ + kv_head].data();
  }
  size_t key_tile_stride() const { return head_dim_ * 8; }
  size_t value_stride() const { return head_dim_; }

  // Stores one head's key / value row (already bf16) at position pos.
  void PutKey(size_t layer, size_t pos, size_t kv_head, const uint16_t* row);
  void PutValue(size_t layer, size_t pos, size_t kv_head, const uint16_t* row);
  // Token-major rows [pos][kv_head][head_dim] for positions [begin, end).
  void GetKeys(size_t layer, size_t begin, size_t end, uint16_t* out) const;
  void GetValues(size_t layer, size_t begin, size_t end, uint16_t* out) const;
  void PutKeys(size_t layer, size_t begin, size_t end, const uint16_t* rows);
  void PutValues(size_t layer, size_t begin, size_t end, const uint16_t* rows);

 private:
  // Start of (layer, kv_head)'s keys / values in the page holding pos.
  uint16_t* KeyBlock(size_t layer, size_t kv_head, size_t pos) const;
  uint16_t* ValueBlock(size_t layer, size_t kv_head, size_t pos) const;
  size_t shared_pages() const;

  size_t num_layers_, kv_heads_, head_dim_, max_tokens_;
  size_t size_ = 0;
  KvPagePool* pool_;
  std::shared_ptr<const KvSharedPages> shared_;                  // leading pages, read-only
  std::vector<KvPagePool::Page> pages_;                         // private pages after them
  std::vector<std::vector<uint16_t*>> key_ptrs_, value_ptrs_;  // [layer · kv_heads + kv_head][page]
};

}  // namespace kvmart
