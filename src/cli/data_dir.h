// The data directory every `kvmart` command shares, and the secrets in it.
//
//   DIR = --data if given, else $KVMART_HOME, else ~/.local/share/kvmart
//   DIR/market.db      the market (SQLite), unless --db or $KVMART_DB names
//                      another: a SQLite path or a postgresql:// URL shared
//                      by many nodes
//   DIR/provider.key   the provider's receipt-signing key (hex, mode 0600)
//   DIR/admin.key      the bootstrap admin API key (mode 0600), written by
//                      whichever of `market init` and `serve` initialises
//   DIR/artifact.key   signs manifests of artifacts the server builds
//   DIR/server.db      receipts handed out, publish sources
//   DIR/store/         the artifact store (catalog.sqlite, blocks/)
//
// `serve`, `market`, `store` and `ask --data` all resolve DIR here, so one
// --data (or one $KVMART_HOME) names the same market and the same store.
#pragma once

#include <string>

#include "base/status.h"
#include "market/market.h"
#include "market/receipts.h"

namespace kvmart::cli {

struct DataDir {
  std::string root;
  std::string MarketDb() const { return root + "/market.db"; }
  // Where the market lives: db_flag if given, else $KVMART_DB, else MarketDb().
  std::string MarketLocation(const std::string& db_flag) const;
  // The shared block tier: blocks_flag if given, else $KVMART_BLOCKS, else none ("").
  static std::string SharedBlocksLocation(const std::string& blocks_flag);
  std::string ProviderKey() const { return root + "/provider.key"; }
  std::string AdminKey() const { return root + "/admin.key"; }
  std::string ArtifactKey() const { return root + "/artifact.key"; }
  std::string ServerDb() const { return root + "/server.db"; }
  std::string Store() const { return root + "/store"; }
};

// The rule above with the environment passed in (null = unset).
DataDir ResolveDataDir(const std::string& flag, const char* kvmart_home, const char* home);
// The rule above with this process's environment.
DataDir ResolveDataDir(const std::string& flag);

// Creates DIR (and parents) if absent.
Status EnsureDataDir(const DataDir& dir);

// DIR/provider.key; with `create`, a new key is generated and written (once,
// atomically, 0600) when the file is absent. A concurrent creator's key wins.
StatusOr<market::ProviderKey> LoadOrCreateProviderKey(const DataDir& dir, bool create);

// Initialises the market, keeping the admin key in DIR/admin.key before the
// market commits (Market::Initialize's keep), so the key cannot be lost.
StatusOr<market::Bootstrap> InitializeMarket(market::Market& m, market::Currency currency, const DataDir& dir);

}  // namespace kvmart::cli
