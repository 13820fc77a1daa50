#include "server/prefix_cache.h"

#include <algorithm>

namespace kvmart::server {

PrefixCache::PrefixCache(uint64_t budget_bytes, size_t max_entries, size_t min_tokens)
    : budget_(budget_bytes), max_entries_(std::max<size_t>(1, max_entries)), min_tokens_(std::max<size_t>(1, min_tokens)) {}

bool PrefixCache::StartsWith(std::span<const int32_t> prompt, const std::vector<int32_t>& prefix) {
  return prefix.size() <= prompt.size() && std::equal(prefix.begin(), prefix.end(), prompt.begin());
}

std::shared_ptr<const KvPrefix> PrefixCache::Longest(int64_t account, std::span<const int32_t> prompt) {
  std::lock_guard lock(mu_);
  auto best = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const auto& toks = it->prefix->tokens;
    if (it->account != account || toks.size() >= prompt.size()) continue;
    if (best != entries_.end() && toks.size() <= best->prefix->tokens.size()) continue;
    if (StartsWith(prompt, toks)) best = it;
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
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) {
    return e.account == account && e.prefix->tokens.size() == tokens.size() && StartsWith(tokens, e.prefix->tokens);
  });
}

std::shared_ptr<const KvPrefix> PrefixCache::PopOldestLocked() {
  std::shared_ptr<const KvPrefix> victim = std::move(entries_.back().prefix);
  stats_.bytes -= entries_.back().bytes;
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
  entries_.push_front(Entry{account, std::move(prefix), bytes});
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
