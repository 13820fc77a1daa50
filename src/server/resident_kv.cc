#include "server/resident_kv.h"

#include <algorithm>
#include <ctime>
#include <iterator>
#include <vector>

namespace kvmart::server {

ResidentKv::ResidentKv(uint64_t budget_bytes, Clock clock)
    : budget_(budget_bytes),
      clock_(clock ? std::move(clock) : Clock([] { return static_cast<int64_t>(std::time(nullptr)); })) {}

std::shared_ptr<const KvPrefix> ResidentKv::Find(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.prefix;
}

std::shared_ptr<const KvPrefix> ResidentKv::DropVictimLocked() {
  // One walk from the oldest: the first unentitled unpinned entry ends it;
  // the oldest entitled unpinned one and the oldest overall (pinned, if it
  // comes to that) are kept in case none is found.
  const int64_t now = clock_();
  auto victim = std::prev(lru_.end());
  bool have_entitled = false;
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    const Entry& e = map_.at(*it);
    if (e.pinned) continue;
    if (!EntitledLocked(e, now)) {
      victim = std::prev(it.base());
      break;
    }
    if (!have_entitled) {
      victim = std::prev(it.base());
      have_entitled = true;
    }
  }
  auto entry = map_.find(*victim);
  std::shared_ptr<const KvPrefix> prefix = std::move(entry->second.prefix);
  stats_.bytes -= entry->second.bytes;
  map_.erase(entry);
  lru_.erase(victim);
  stats_.evictions += 1;
  stats_.artifacts = map_.size();
  return prefix;
}

void ResidentKv::Insert(const std::string& artifact_id, std::shared_ptr<const KvPrefix> prefix, uint64_t bytes,
                        bool pinned) {
  std::vector<std::shared_ptr<const KvPrefix>> dropped;  // freed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > budget_ || map_.count(artifact_id)) return;
  while (stats_.bytes + bytes > budget_ && !lru_.empty()) dropped.push_back(DropVictimLocked());
  lru_.push_front(artifact_id);
  map_.emplace(artifact_id, Entry{std::move(prefix), bytes, pinned, 0, lru_.begin()});
  stats_.bytes += bytes;
  stats_.artifacts = map_.size();
}

void ResidentKv::Erase(const std::string& artifact_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return;
  stats_.bytes -= it->second.bytes;
  lru_.erase(it->second.lru);
  map_.erase(it);
  stats_.artifacts = map_.size();
}

bool ResidentKv::EvictOldest() {
  std::shared_ptr<const KvPrefix> victim;  // released after the lock: that frees its pages
  std::lock_guard<std::mutex> lock(mu_);
  if (lru_.empty()) return false;
  victim = DropVictimLocked();
  return true;
}

void ResidentKv::MarkEntitled(const std::string& artifact_id, int64_t expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(artifact_id);
  if (it == map_.end()) return;
  const int64_t until = expires_at == 0 ? kNever : expires_at;
  it->second.entitled_until = std::max(it->second.entitled_until, until);
}

void ResidentKv::SetEntitlements(std::span<const std::string> asked,
                                 const std::unordered_map<std::string, int64_t>& until) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& id : asked) {
    auto it = map_.find(id);
    if (it == map_.end()) continue;
    auto u = until.find(id);
    it->second.entitled_until = u == until.end() ? 0 : (u->second == 0 ? kNever : u->second);
  }
}

std::vector<std::string> ResidentKv::Ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {lru_.begin(), lru_.end()};
}

ResidentKv::Stats ResidentKv::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.artifacts = map_.size();
  const int64_t now = clock_();
  s.entitled = 0;
  for (const auto& [id, e] : map_) s.entitled += EntitledLocked(e, now) ? 1 : 0;
  return s;
}

void ResidentKv::CountAttach(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.attaches += 1;
  stats_.attach_seconds += seconds;
}

}  // namespace kvmart::server
