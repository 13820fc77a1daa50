// The resident map's eviction order: least recently used first, but an
// artifact pinned in the store only once no unpinned one is left.
#include <gtest/gtest.h>

#include "server/resident_kv.h"

namespace kvmart::server {
namespace {

std::shared_ptr<const KvPrefix> Empty() { return std::make_shared<KvPrefix>(); }

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

}  // namespace
}  // namespace kvmart::server
