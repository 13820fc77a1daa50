// Helpers shared by the commands that run the engine.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"

namespace kvmart::store {
class Store;
}

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

// Opens the artifact store of the data directory named by a --data flag
// (empty: the default, cli/data_dir.h), i.e. DIR/store. In store_commands.cc.
StatusOr<std::unique_ptr<store::Store>> OpenStore(const std::string& data_flag);

}  // namespace kvmart::cli
