// The KV cache of one session: bf16 keys and values for every layer, grown on
// demand up to the context limit.
//
// Layout: one contiguous array per (layer, kv head), so the attention of a kv
// head streams one dense block (with heads interleaved, rows of one head sit
// kv_heads·head_dim apart and alias to few cache sets: that cost a quarter of
// the long-context prefill time).
//   keys   [tile = pos / 8][head_dim][pos % 8]  (tiles of kKeyTile tokens, so the
//          score kernel reads 8 keys' d-th element in one load)
//   values [pos][head_dim]
// The exchange layout (KvExport) is token-major: [pos][kv_head][head_dim].
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/status.h"

namespace kvmart {

class KvCache {
 public:
  KvCache(size_t num_layers, size_t kv_heads, size_t head_dim, size_t max_tokens);

  size_t size() const { return size_; }
  size_t max_tokens() const { return max_tokens_; }
  size_t kv_heads() const { return kv_heads_; }
  size_t head_dim() const { return head_dim_; }
  size_t num_layers() const { return num_layers_; }

  // Makes room for `tokens` positions; ResourceExhausted beyond max_tokens.
  Status Reserve(size_t tokens);
  // Sets the number of valid positions (≤ reserved capacity).
  void set_size(size_t n) { size_ = n; }

  // Element strides for AttentionQuery.
  size_t key_tile_stride() const { return head_dim_ * 8; }
  size_t value_stride() const { return head_dim_; }
  const uint16_t* key_tiles(size_t layer, size_t kv_head) const { return keys_[layer * kv_heads_ + kv_head].data(); }
  const uint16_t* values(size_t layer, size_t kv_head) const { return values_[layer * kv_heads_ + kv_head].data(); }

  // Stores one head's key / value row (already bf16) at position pos.
  void PutKey(size_t layer, size_t pos, size_t kv_head, const uint16_t* row);
  void PutValue(size_t layer, size_t pos, size_t kv_head, const uint16_t* row);
  // Token-major rows [pos][kv_head][head_dim] for positions [begin, end).
  void GetKeys(size_t layer, size_t begin, size_t end, uint16_t* out) const;
  void GetValues(size_t layer, size_t begin, size_t end, uint16_t* out) const;
  void PutKeys(size_t layer, size_t begin, size_t end, const uint16_t* rows);
  void PutValues(size_t layer, size_t begin, size_t end, const uint16_t* rows);

 private:
  size_t num_layers_, kv_heads_, head_dim_, max_tokens_;
  size_t capacity_ = 0, size_ = 0;
  std::vector<std::vector<uint16_t>> keys_, values_;  // [layer · kv_heads + kv_head]
};

}  // namespace kvmart
