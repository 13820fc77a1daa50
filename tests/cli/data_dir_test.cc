#include "cli/data_dir.h"

#include <sodium.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "base/secret_file.h"
#include "market/sql_market.h"
#include "testing/temp_dir.h"

namespace kvmart::cli {
namespace {

TEST(DataDirTest, FlagThenKvmartHomeThenHome) {
  EXPECT_EQ(ResolveDataDir("/d", "/k", "/h").root, "/d");
  EXPECT_EQ(ResolveDataDir("", "/k", "/h").root, "/k");
  EXPECT_EQ(ResolveDataDir("", "", "/h").root, "/h/.local/share/kvmart");
  EXPECT_EQ(ResolveDataDir("", nullptr, "/h").root, "/h/.local/share/kvmart");
  const DataDir d{"/d"};
  EXPECT_EQ(d.Store(), "/d/store");  // the store of `serve`, `store` and `ask --data` alike
  EXPECT_EQ(d.MarketDb(), "/d/market.db");
}

TEST(DataDirTest, ProviderKeyIsCreatedOnceAndReadBack) {
  ASSERT_GE(sodium_init(), 0);
  testing::TempDir tmp;
  const DataDir d{tmp.Sub("data")};
  EXPECT_EQ(LoadOrCreateProviderKey(d, /*create=*/false).status().code(), Status::Code::kNotFound);
  auto made = LoadOrCreateProviderKey(d, /*create=*/true);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto again = LoadOrCreateProviderKey(d, /*create=*/true);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->PublicKeyHex(), made->PublicKeyHex());
  struct stat sb {};
  ASSERT_EQ(::stat(d.ProviderKey().c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST(DataDirTest, InitializeMarketKeepsTheAdminKeyOrInitialisesNothing) {
  ASSERT_GE(sodium_init(), 0);
  testing::TempDir tmp;
  const DataDir d{tmp.path()};
  market::MarketOptions opt;
  opt.provider_key = *LoadOrCreateProviderKey(d, true);
  opt.synchronous_full = false;
  auto m = market::SqlMarket::Open(d.MarketDb(), opt);
  ASSERT_TRUE(m.ok()) << m.status().ToString();

  // admin.key cannot be written (a directory stands in its place): the
  // market must not commit a key nobody holds.
  std::filesystem::create_directory(d.AdminKey());
  auto failed = InitializeMarket(**m, market::Currency(), d);
  EXPECT_FALSE(failed.ok());
  std::filesystem::remove(d.AdminKey());

  auto boot = InitializeMarket(**m, market::Currency(), d);
  ASSERT_TRUE(boot.ok()) << boot.status().ToString();
  auto kept = ReadSecretFile(d.AdminKey());
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(*kept, boot->admin_key + "\n");
  EXPECT_TRUE((*m)->GetAccount(boot->admin_key, boot->provider_account).ok());
}

}  // namespace
}  // namespace kvmart::cli
