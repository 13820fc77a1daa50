#include "engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace kvmart {

KvCache::KvCache(size_t num_layers, size_t kv_heads, size_t head_dim, size_t max_tokens)
    : num_layers_(num_layers),
      kv_heads_(kv_heads),
      head_dim_(head_dim),
      max_tokens_(max_tokens),
      keys_(num_layers * kv_heads),
      values_(num_layers * kv_heads) {}

Status KvCache::Reserve(size_t tokens) {
  if (tokens > max_tokens_) {
    return Status::ResourceExhausted("context of " + std::to_string(tokens) + " tokens exceeds the limit of " +
                                     std::to_string(max_tokens_));
  }
  if (tokens <= capacity_) return Status::Ok();
  // Grow geometrically (in whole tiles) so appending token by token stays linear.
  size_t cap = std::max<size_t>({tokens, capacity_ * 2, 64});
  cap = std::min(max_tokens_ + 7, (cap + 7) / 8 * 8);
  const size_t tiles = (cap + 7) / 8;
  for (auto& k : keys_) k.resize(tiles * key_tile_stride());
  for (auto& v : values_) v.resize(tiles * 8 * value_stride());
  capacity_ = tiles * 8;
  return Status::Ok();
}

void KvCache::PutKey(size_t layer, size_t pos, size_t kv_head, const uint16_t* row) {
  uint16_t* tile = keys_[layer * kv_heads_ + kv_head].data() + (pos / 8) * key_tile_stride() + pos % 8;
  for (size_t d = 0; d < head_dim_; ++d) tile[d * 8] = row[d];
}

void KvCache::PutValue(size_t layer, size_t pos, size_t kv_head, const uint16_t* row) {
  std::memcpy(values_[layer * kv_heads_ + kv_head].data() + pos * head_dim_, row, head_dim_ * 2);
}

void KvCache::GetKeys(size_t layer, size_t begin, size_t end, uint16_t* out) const {
  // Tile by tile, so each tile's [head_dim][8] block is read contiguously.
  for (size_t g = 0; g < kv_heads_; ++g) {
    const uint16_t* keys = keys_[layer * kv_heads_ + g].data();
    for (size_t pos = begin; pos < end;) {
      const size_t tile_end = std::min(end, (pos / 8 + 1) * 8);
      const uint16_t* tile = keys + (pos / 8) * key_tile_stride();
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
      std::memcpy(out + ((pos - begin) * kv_heads_ + g) * head_dim_, values(layer, g) + pos * head_dim_, head_dim_ * 2);
    }
  }
}

void KvCache::PutKeys(size_t layer, size_t begin, size_t end, const uint16_t* rows) {
  // Tile by tile, so each tile's [head_dim][8] block is written contiguously
  // (row by row, every write would land 16 bytes from the last).
  for (size_t g = 0; g < kv_heads_; ++g) {
    uint16_t* keys = keys_[layer * kv_heads_ + g].data();
    for (size_t pos = begin; pos < end;) {
      const size_t tile_end = std::min(end, (pos / 8 + 1) * 8);
      uint16_t* tile = keys + (pos / 8) * key_tile_stride();
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
