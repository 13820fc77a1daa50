#include "server/prefix_cache.h"

#include <algorithm>
#include <functional>
#include <string_view>

namespace kvmart::server {

PrefixCache::PrefixCache(uint64_t budget_bytes, size_t max_entries, size_t min_tokens)
    : budget_(budget_bytes), max_entries_(std::max<size_t>(1, max_entries)), min_tokens_(std::max<size_t>(1, min_tokens)) {}

bool PrefixCache::StartsWith(std::span<const int32_t> prompt, const std::vector<int32_t>& prefix) {
  return prefix.size() <= prompt.size() && std::equal(prefix.begin(), prefix.end(), prompt.begin());
}

uint64_t PrefixCache::HeadKey(int64_t account, std::span<const int32_t> tokens) const {
  const std::string_view head(reinterpret_cast<const char*>(tokens.data()), min_tokens_ * sizeof(int32_t));
  return std::hash<std::string_view>{}(head) ^ (static_cast<uint64_t>(account) * 0x9E3779B97F4A7C15ull);
}

std::shared_ptr<const KvPrefix> PrefixCache::Longest(int64_t account, std::span<const int32_t> prompt) {
  std::lock_guard lock(mu_);
  auto best = entries_.end();
  // Every entry holds at least min_tokens_ tokens and must leave one to prefill.
  if (prompt.size() > min_tokens_) {
    const auto [first, last] = by_head_.equal_range(HeadKey(account, prompt));
    for (auto c = first; c != last; ++c) {
      const auto it = c->second;
      const auto& toks = it->prefix->tokens;
      if (it->account != account || toks.size() >= prompt.size()) continue;
      if (best != entries_.end() && toks.size() <= best->prefix->tokens.size()) continue;
      if (StartsWith(prompt, toks)) best = it;
    }
  }
  if (best == entries_.end()) {
    stats_.misses += 1;
    return nullptr;
  }
  entries_.splice(entries_.begin(), entries_, best);
  stats_.hits += 1;
  stats_.tokens_reused += best->prefix->tokens.size();
  return best->prefix;
}

bool PrefixCache::Contains(int64_t account, std::span<const int32_t> tokens) const {
  std::lock_guard lock(mu_);
  if (tokens.size() < min_tokens_) return false;  // never kept
  const auto [first, last] = by_head_.equal_range(HeadKey(account, tokens));
  return std::any_of(first, last, [&](const auto& c) {
    const Entry& e = *c.second;
    return e.account == account && e.prefix->tokens.size() == tokens.size() && StartsWith(tokens, e.prefix->tokens);
  });
}

std::shared_ptr<const KvPrefix> PrefixCache::PopOldestLocked() {
  const auto oldest = std::prev(entries_.end());
  const auto [first, last] = by_head_.equal_range(HeadKey(oldest->account, oldest->prefix->tokens));
  for (auto c = first; c != last; ++c) {
    if (c->second == oldest) {
      by_head_.erase(c);
      break;
    }
  }
  std::shared_ptr<const KvPrefix> victim = std::move(oldest->prefix);
  stats_.bytes -= oldest->bytes;
  entries_.pop_back();
  stats_.evictions += 1;
  return victim;
}

void PrefixCache::Insert(int64_t account, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes) {
  std::vector<std::shared_ptr<const KvPrefix>> victims;  // freed after the lock: that returns their pages
  std::lock_guard lock(mu_);
  if (!enabled() || bytes > budget_ || prefix->tokens.size() < min_tokens_) return;
  while (!entries_.empty() && (stats_.bytes + bytes > budget_ || entries_.size() >= max_entries_)) {
    victims.push_back(PopOldestLocked());
  }
  const uint64_t key = HeadKey(account, prefix->tokens);
  entries_.push_front(Entry{account, std::move(prefix), bytes});
  by_head_.emplace(key, entries_.begin());
  stats_.bytes += bytes;
}

bool PrefixCache::EvictOldest() {
  std::shared_ptr<const KvPrefix> victim;
  std::lock_guard lock(mu_);
  if (entries_.empty()) return false;
  victim = PopOldestLocked();
  return true;
}

PrefixCache::Stats PrefixCache::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.entries = entries_.size();
  return s;
}

}  // namespace kvmart::server
