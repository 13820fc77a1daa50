#include "engine/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <cstring>
#include <string>

#include "kernels/kernels.h"

namespace kvmart {

static_assert(kKvPageTokens % kAttentionPageQuantum == 0 && 256 % kKvPageTokens == 0,
              "a page holds whole attention quanta and an artifact block whole pages");

KvPagePool::KvPagePool(size_t page_elements, size_t keep_bytes, size_t limit_bytes)
    : page_elements_(page_elements),
      keep_pages_(keep_bytes / std::max<size_t>(1, page_elements * sizeof(uint16_t))),
      limit_pages_(limit_bytes / std::max<size_t>(1, page_elements * sizeof(uint16_t))) {}

void KvPagePool::SetReclaimer(std::function<bool()> reclaim) {
  std::lock_guard<std::mutex> lock(mu_);
  reclaim_ = std::move(reclaim);
}

KvPagePool::Page KvPagePool::Acquire() {
  for (;;) {
    std::function<bool()> reclaim;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (limit_pages_ == 0 || in_use_ < limit_pages_) {
        ++in_use_;
        if (!idle_.empty()) {
          Page p = std::move(idle_.back());
          idle_.pop_back();
          return p;
        }
        break;
      }
      reclaim = reclaim_;
    }
    // At the limit: free something (outside the lock, since freeing pages
    // comes back through Release), or give up.
    if (!reclaim || !reclaim()) return nullptr;
  }
  // Uninitialised: every position is written before attention reads it.
  // Huge pages only for the whole 2 MB spans inside a page: advising the
  // rounded-up allocation would make a small model's 32 KB page cost a 2 MB
  // huge page of memory (64x), and a 7.3 MB page 8 MB. The rest of a page is
  // ordinary 4 KB pages, and the rounding's tail is never touched.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = page_bytes();
  const size_t align = bytes >= kHuge ? kHuge : 4096;
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  if (bytes >= kHuge) (void)madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);  // a hint; without THP plain memory
  return Page(static_cast<uint16_t*>(p));
}

void KvPagePool::Prefault(size_t bytes) {
  std::vector<Page> pages;
  for (size_t done = 0; done < bytes && pages.size() < keep_pages_; done += page_bytes()) {
    Page p = Acquire();
    if (!p) break;
    pages.push_back(std::move(p));
    std::memset(pages.back().get(), 0, page_bytes());
  }
  while (!pages.empty()) {
    Release(std::move(pages.back()));
    pages.pop_back();
  }
}

void KvPagePool::Release(Page page) {
  std::lock_guard<std::mutex> lock(mu_);
  --in_use_;
  if (idle_.size() < keep_pages_) idle_.push_back(std::move(page));
}

size_t KvPagePool::idle_pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

size_t KvPagePool::pages_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

KvSharedPages::~KvSharedPages() {
  while (!pages_.empty()) {
    pool_->Release(std::move(pages_.back()));
    pages_.pop_back();
  }
}

KvCache::KvCache(size_t num_layers, size_t kv_heads, size_t head_dim, size_t max_tokens, KvPagePool* pool)
    : num_layers_(num_layers),
      kv_heads_(kv_heads),
      head_dim_(head_dim),
      max_tokens_(max_tokens),
      pool_(pool),
      key_ptrs_(num_layers * kv_heads),
      value_ptrs_(num_layers * kv_heads) {}

KvCache::~KvCache() {
  // Last page first: the pool hands out the most recently released page
  // first, so a follow-up session reuses the pages warmest in cache.
  while (!pages_.empty()) {
    pool_->Release(std::move(pages_.back()));
    pages_.pop_back();
  }
}

Status KvCache::Reserve(size_t tokens) {
  if (tokens > max_tokens_) {
    return Status::ResourceExhausted("context of " + std::to_string(tokens) + " tokens exceeds the limit of " +
                                     std::to_string(max_tokens_));
  }
  const size_t block = 2 * kKvPageTokens * head_dim_;  // one (layer, kv head) of a page
  while ((shared_pages() + pages_.size()) * kKvPageTokens < tokens) {
    KvPagePool::Page page = pool_->Acquire();
    if (!page) {
      return Status::KvPagesExhausted("every KV page is in use (" + std::to_string(pool_->pages_in_use()) +
                                      " pages of " + std::to_string(pool_->page_bytes()) + " bytes); retry shortly");
    }
    pages_.push_back(std::move(page));
    uint16_t* base = pages_.back().get();
    for (size_t i = 0; i < num_layers_ * kv_heads_; ++i) {
      key_ptrs_[i].push_back(base + i * block);
      value_ptrs_[i].push_back(base + i * block + kKvPageTokens * head_dim_);
    }
  }
  return Status::Ok();
}

size_t KvCache::shared_pages() const { return shared_ ? shared_->pages() : 0; }

StatusOr<std::shared_ptr<const KvSharedPages>> KvCache::ShareLeadingPages() {
  if (shared_) return Status::FailedPrecondition("the cache already starts with shared pages");
  const size_t whole = std::min(size_ / kKvPageTokens, pages_.size());
  std::vector<KvPagePool::Page> lead(std::make_move_iterator(pages_.begin()),
                                     std::make_move_iterator(pages_.begin() + whole));
  pages_.erase(pages_.begin(), pages_.begin() + whole);
  // The pointer tables stay as they are: the pages did not move.
  shared_ = std::make_shared<const KvSharedPages>(pool_, std::move(lead));
  return shared_;
}

Status KvCache::AttachShared(std::shared_ptr<const KvSharedPages> shared) {
  if (size_ != 0 || !pages_.empty() || shared_) return Status::FailedPrecondition("shared pages attach to an empty cache only");
  if (shared->tokens() > max_tokens_) {
    return Status::ResourceExhausted("shared prefix of " + std::to_string(shared->tokens()) +
                                     " tokens exceeds the context limit of " + std::to_string(max_tokens_));
  }
  const size_t block = 2 * kKvPageTokens * head_dim_;
  for (size_t p = 0; p < shared->pages(); ++p) {
    // Read-only through the const tables handed to attention; positions
    // below shared_tokens() are never written (sessions only append).
    uint16_t* base = const_cast<uint16_t*>(shared->page(p));
    for (size_t i = 0; i < num_layers_ * kv_heads_; ++i) {
      key_ptrs_[i].push_back(base + i * block);
      value_ptrs_[i].push_back(base + i * block + kKvPageTokens * head_dim_);
    }
  }
  shared_ = std::move(shared);
  size_ = shared_->tokens();
  return Status::Ok();
}

uint16_t* KvCache::KeyBlock(size_t layer, size_t kv_head, size_t pos) const {
  return key_ptrs_[layer * kv_heads_ + kv_head][pos / kKvPageTokens];
}

uint16_t* KvCache::ValueBlock(size_t layer, size_t kv_head, size_t pos) const {
  return value_ptrs_[layer * kv_heads_ + kv_head][pos / kKvPageTokens];
}

void KvCache::PutKey(size_t layer, size_t pos, size_t kv_head, const uint16_t* row) {
  const size_t in = pos % kKvPageTokens;
  uint16_t* tile = KeyBlock(layer, kv_head, pos) + (in / 8) * key_tile_stride() + in % 8;
  for (size_t d = 0; d < head_dim_; ++d) tile[d * 8] = row[d];
}

void KvCache::PutValue(size_t layer, size_t pos, size_t kv_head, const uint16_t* row) {
  std::memcpy(ValueBlock(layer, kv_head, pos) + (pos % kKvPageTokens) * head_dim_, row, head_dim_ * 2);
}

void KvCache::GetKeys(size_t layer, size_t begin, size_t end, uint16_t* out) const {
  // Tile by tile, so each tile's [head_dim][8] block is read contiguously.
  for (size_t g = 0; g < kv_heads_; ++g) {
    for (size_t pos = begin; pos < end;) {
      const size_t tile_end = std::min(end, (pos / 8 + 1) * 8);
      const uint16_t* tile = KeyBlock(layer, g, pos) + (pos % kKvPageTokens / 8) * key_tile_stride();
      for (size_t d = 0; d < head_dim_; ++d) {
        for (size_t p = pos; p < tile_end; ++p) out[((p - begin) * kv_heads_ + g) * head_dim_ + d] = tile[d * 8 + p % 8];
      }
      pos = tile_end;
    }
  }
}

void KvCache::GetValues(size_t layer, size_t begin, size_t end, uint16_t* out) const {
  for (size_t pos = begin; pos < end; ++pos) {
    for (size_t g = 0; g < kv_heads_; ++g) {
      std::memcpy(out + ((pos - begin) * kv_heads_ + g) * head_dim_,
                  ValueBlock(layer, g, pos) + (pos % kKvPageTokens) * head_dim_, head_dim_ * 2);
    }
  }
}

void KvCache::PutKeys(size_t layer, size_t begin, size_t end, const uint16_t* rows) {
  // Tile by tile, so each tile's [head_dim][8] block is written contiguously
  // (row by row, every write would land 16 bytes from the last).
  for (size_t g = 0; g < kv_heads_; ++g) {
    for (size_t pos = begin; pos < end;) {
      const size_t tile_end = std::min(end, (pos / 8 + 1) * 8);
      uint16_t* tile = KeyBlock(layer, g, pos) + (pos % kKvPageTokens / 8) * key_tile_stride();
      for (size_t d = 0; d < head_dim_; ++d) {
        for (size_t p = pos; p < tile_end; ++p) tile[d * 8 + p % 8] = rows[((p - begin) * kv_heads_ + g) * head_dim_ + d];
      }
      pos = tile_end;
    }
  }
}

void KvCache::PutValues(size_t layer, size_t begin, size_t end, const uint16_t* rows) {
  for (size_t pos = begin; pos < end; ++pos) {
    for (size_t g = 0; g < kv_heads_; ++g) PutValue(layer, pos, g, rows + ((pos - begin) * kv_heads_ + g) * head_dim_);
  }
}

}  // namespace kvmart
