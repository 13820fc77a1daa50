// The resident map's eviction order: least recently used first within each
// tier — unentitled unpinned, then entitled unpinned, then pinned in the store.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <memory>

#include "server/resident_kv.h"

namespace kvmart::server {
namespace {

std::shared_ptr<const KvPrefix> Empty() { return std::make_shared<KvPrefix>(); }

bool Has(const ResidentKv& map, const std::string& id) {
  const auto ids = map.Ids();
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

TEST(ResidentKvEviction, UnpinnedGoFirstWhateverTheirAgeThenPinnedByAge) {
  ResidentKv map(300);
  map.Insert("pinned-old", Empty(), 100, /*pinned=*/true);
  map.Insert("a", Empty(), 100);
  map.Insert("b", Empty(), 100);
  ASSERT_NE(map.Find("a"), nullptr);        // a is now the most recent
  map.Insert("c", Empty(), 100);            // over budget: b (oldest unpinned) goes
  EXPECT_EQ(map.Find("b"), nullptr);
  EXPECT_NE(map.Find("pinned-old"), nullptr);
  EXPECT_TRUE(map.EvictOldest());  // a (c and a unpinned; a older now)
  EXPECT_EQ(map.Find("a"), nullptr);
  EXPECT_TRUE(map.EvictOldest());  // c
  EXPECT_EQ(map.Find("c"), nullptr);
  EXPECT_NE(map.Find("pinned-old"), nullptr);
  EXPECT_TRUE(map.EvictOldest());  // only the pinned one is left: it goes too
  EXPECT_FALSE(map.EvictOldest());
  EXPECT_EQ(map.stats().evictions, 4u);
  EXPECT_EQ(map.stats().bytes, 0u);
}

// A settable clock for entitlement expiry (unix seconds).
struct TestClock {
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(1'700'000'000);
  ResidentKv::Clock fn() const {
    return [n = now] { return n->load(); };
  }
};

TEST(ResidentKvEviction, UnentitledGoFirstThenEntitledThenPinnedEachByAge) {
  TestClock clock;
  ResidentKv map(1000, clock.fn());
  map.Insert("pinned-old", Empty(), 100, /*pinned=*/true);
  map.Insert("ent-old", Empty(), 100);
  map.Insert("free-old", Empty(), 100);
  map.Insert("ent-new", Empty(), 100);
  map.Insert("pinned-ent", Empty(), 100, /*pinned=*/true);
  map.Insert("free-new", Empty(), 100);
  map.MarkEntitled("ent-old", 0);  // never expires
  map.MarkEntitled("ent-new", *clock.now + 3600);
  map.MarkEntitled("pinned-ent", 0);  // pinned wins: it goes with the pinned ones
  map.MarkEntitled("gone", 0);        // not resident: nothing happens
  EXPECT_EQ(map.stats().entitled, 3u);
  // The entitled ones are the least recently used of all, and stay.
  ASSERT_NE(map.Find("free-old"), nullptr);  // now more recent than free-new
  const char* order[] = {"free-new", "free-old", "ent-old", "ent-new", "pinned-old", "pinned-ent"};
  for (size_t i = 0; i < std::size(order); ++i) {
    ASSERT_TRUE(map.EvictOldest());
    // Checked without Find, which would make the checked ones the most recent.
    EXPECT_FALSE(Has(map, order[i])) << order[i] << " should have been the one to go";
    for (size_t j = i + 1; j < std::size(order); ++j) EXPECT_TRUE(Has(map, order[j])) << order[j];
  }
  EXPECT_FALSE(map.EvictOldest());
  EXPECT_EQ(map.stats().evictions, 6u);
  EXPECT_EQ(map.stats().entitled, 0u);
  EXPECT_EQ(map.stats().bytes, 0u);
}

TEST(ResidentKvEviction, EachEvictionTakesTheOldestOfTheFirstNonEmptyTier) {
  TestClock clock;
  ResidentKv map(1000, clock.fn());
  for (const char* id : {"e1", "u1", "e2", "u2", "p1"}) map.Insert(id, Empty(), 100, id[0] == 'p');
  map.MarkEntitled("e1", 0);
  map.MarkEntitled("e2", 0);
  ASSERT_TRUE(map.EvictOldest());  // u1: the oldest unentitled, although e1 is older
  EXPECT_EQ(map.Find("u1"), nullptr);
  for (const char* id : {"e1", "e2", "u2", "p1"}) EXPECT_NE(map.Find(id), nullptr) << id;
  // Find made the order e1 e2 u2 p1 (oldest first): u2 still goes before e1.
  ASSERT_TRUE(map.EvictOldest());
  EXPECT_EQ(map.Find("u2"), nullptr);
  ASSERT_NE(map.Find("e1"), nullptr);  // e1 now newer than e2
  ASSERT_TRUE(map.EvictOldest());
  EXPECT_EQ(map.Find("e2"), nullptr);
  EXPECT_NE(map.Find("e1"), nullptr);
  EXPECT_NE(map.Find("p1"), nullptr);
}

// The byte budget drops entries in the same order as page pressure does.
TEST(ResidentKvEviction, OverBudgetInsertKeepsTheEntitled) {
  ResidentKv map(300);
  map.Insert("entitled", Empty(), 100);
  map.Insert("a", Empty(), 100);
  map.Insert("b", Empty(), 100);
  map.MarkEntitled("entitled", 0);
  map.Insert("c", Empty(), 100);  // over budget: a, the oldest unentitled, goes
  EXPECT_EQ(map.Find("a"), nullptr);
  EXPECT_NE(map.Find("entitled"), nullptr);
  map.Insert("d", Empty(), 200);  // two more: b and c
  EXPECT_EQ(map.Find("b"), nullptr);
  EXPECT_EQ(map.Find("c"), nullptr);
  EXPECT_NE(map.Find("entitled"), nullptr);
  EXPECT_NE(map.Find("d"), nullptr);
  EXPECT_EQ(map.stats().bytes, 300u);
}

// An entitlement that expires stops protecting its artifact at that second,
// with no refresh; marking keeps the later of two expiries.
TEST(ResidentKvEviction, EntitlementLapsesAtItsExpiry) {
  TestClock clock;
  const int64_t t = *clock.now;
  ResidentKv map(1000, clock.fn());
  map.Insert("lapsing", Empty(), 100);
  map.Insert("other", Empty(), 100);
  map.MarkEntitled("lapsing", t + 100);
  map.MarkEntitled("lapsing", t + 10);  // an earlier expiry does not shorten it
  clock.now->store(t + 99);
  EXPECT_EQ(map.stats().entitled, 1u);
  clock.now->store(t + 100);
  EXPECT_EQ(map.stats().entitled, 0u);
  ASSERT_TRUE(map.EvictOldest());  // plain LRU again: lapsing is the older
  EXPECT_EQ(map.Find("lapsing"), nullptr);
  EXPECT_NE(map.Find("other"), nullptr);
}

// A refresh sets exactly the ids it asked about: entitled ones (0 = never
// expires) and the others cleared; ids it did not ask about keep their flag.
TEST(ResidentKvEviction, RefreshSetsOnlyTheAskedIds) {
  TestClock clock;
  const int64_t t = *clock.now;
  ResidentKv map(1000, clock.fn());
  for (const char* id : {"a", "b", "c", "d"}) map.Insert(id, Empty(), 100);
  map.MarkEntitled("a", 0);
  map.MarkEntitled("b", 0);
  map.MarkEntitled("d", 0);
  const std::vector<std::string> asked = {"a", "b", "c", "not-resident"};
  map.SetEntitlements(asked, {{"b", t + 50}, {"c", 0}, {"not-resident", 0}});
  // a: cleared (used up); b: until t+50; c: never expires; d: not asked, kept.
  EXPECT_EQ(map.stats().entitled, 3u);
  EXPECT_EQ(map.Ids().size(), 4u);
  ASSERT_TRUE(map.EvictOldest());
  EXPECT_EQ(map.Find("a"), nullptr);
  clock.now->store(t + 50);  // b's lapses
  EXPECT_EQ(map.stats().entitled, 2u);
  ASSERT_TRUE(map.EvictOldest());
  EXPECT_EQ(map.Find("b"), nullptr);
  ASSERT_TRUE(map.EvictOldest());  // c and d entitled: the older, c
  EXPECT_EQ(map.Find("c"), nullptr);
  EXPECT_NE(map.Find("d"), nullptr);
}

}  // namespace
}  // namespace kvmart::server
