// Automatic prefix caching for plain inference, one tenant at a time: the KV
// of a finished prefill is kept as a shared prefix (engine pages, nothing
// copied), and a later request of the SAME account whose prompt starts with
// those tokens attaches it and prefills only the rest. Bit-identical to a cold
// prefill (the engine's chunking invariance), and isolated by account like
// vLLM's cache_salt: a prefix is only ever offered to the account whose
// request computed it, so one tenant's prompts can neither be read nor timed
// by another. Published artifacts are shared across tenants only through the
// market (ResidentKv), never here.
//
// Bounded by bytes and entries; least recently used prefixes go first, and
// under engine page pressure these go before paid-for resident artifacts.
// Entries are indexed by account and their first min_tokens tokens, so a
// lookup compares only the prefixes that could match, however many tenants
// share the cache. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>

#include "engine/engine.h"

namespace kvmart::server {

class PrefixCache {
 public:
  // budget_bytes 0 = off. Prompts shorter than min_tokens are not kept (they
  // are cheap to prefill and would crowd the cache).
  PrefixCache(uint64_t budget_bytes, size_t max_entries = 1024, size_t min_tokens = 64);

  bool enabled() const { return budget_ > 0; }
  size_t min_tokens() const { return min_tokens_; }

  // The longest prefix kept for `account` that `prompt` starts with and that
  // leaves at least one token of it to prefill (so the request still gets
  // logits of its own); nullptr when none.
  std::shared_ptr<const KvPrefix> Longest(int64_t account, std::span<const int32_t> prompt);
  // Whether exactly these tokens are kept for `account` (no second copy).
  bool Contains(int64_t account, std::span<const int32_t> tokens) const;
  void Insert(int64_t account, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes);
  // Drops the least recently used prefix; false when there is none.
  bool EvictOldest();

  struct Stats {
    uint64_t entries = 0, bytes = 0, hits = 0, misses = 0, tokens_reused = 0, evictions = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    int64_t account;
    std::shared_ptr<const KvPrefix> prefix;
    uint64_t bytes;
  };
  using Entries = std::list<Entry>;
  static bool StartsWith(std::span<const int32_t> prompt, const std::vector<int32_t>& prefix);
  // The index key of `account` and the first min_tokens_ of `tokens` (which
  // has at least that many); equal keys are candidates, checked in full.
  uint64_t HeadKey(int64_t account, std::span<const int32_t> tokens) const;
  std::shared_ptr<const KvPrefix> PopOldestLocked();

  const uint64_t budget_;
  const size_t max_entries_, min_tokens_;
  mutable std::mutex mu_;
  Entries entries_;  // front: most recently used
  std::unordered_multimap<uint64_t, Entries::iterator> by_head_;  // list iterators survive splices
  Stats stats_;
};

}  // namespace kvmart::server
