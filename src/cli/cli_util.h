// Helpers shared by the commands that run the engine.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "store/store.h"


namespace kvmart::cli {

// Prints "error: <status>" on stderr and returns exit status 1.
int Fail(const Status& s);

// --model, --kernels, --threads.
struct EngineFlags {
  std::string model_dir;
  std::string kernels = "auto";
  size_t threads = 0;
  size_t max_batch_tokens = 512;
  double kv_cache_gb = 0;
  void Add(CLI::App* cmd);
};

// "1,2,3" -> ids; InvalidArgument on anything else.
StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text);

StatusOr<std::shared_ptr<const Model>> LoadModel(const std::string& dir);
StatusOr<std::unique_ptr<Engine>> OpenEngine(std::shared_ptr<const Model> model, const std::string& kernels,
                                             size_t threads, size_t max_batch_tokens = 512, double kv_cache_gb = 0);

// Where a node's store lives (store_commands.cc): the disk tier in DIR/store;
// the catalog in DIR/store/catalog.sqlite, or in the market's PostgreSQL
// database when --db / $KVMART_DB names one (so nodes that share the market
// share the catalog); and a shared block tier when --blocks / $KVMART_BLOCKS
// names a redis:// cluster.
StatusOr<store::StoreOptions> NodeStoreOptions(const std::string& data_flag, const std::string& db_flag,
                                               const std::string& blocks_flag);
// Opens that store. In store_commands.cc.
StatusOr<std::unique_ptr<store::Store>> OpenStore(const std::string& data_flag, const std::string& db_flag = "",
                                                  const std::string& blocks_flag = "");

}  // namespace kvmart::cli
