#include "cli/cli_util.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace kvmart::cli {

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return 1;
}

void EngineFlags::Add(CLI::App* cmd) {
  cmd->add_option("--model", model_dir, "checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--kernels", kernels, "kernel path: portable | avx2 | avx512 | auto (the fastest this CPU runs)");
  cmd->add_option("--threads", threads, "worker threads (0 = all cores)");
}

StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text) {
  std::vector<int32_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX) return Status::InvalidArgument("bad token id '" + item + "'");
    out.push_back(static_cast<int32_t>(v));
  }
  if (out.empty()) return Status::InvalidArgument("no token ids given");
  return out;
}

StatusOr<std::shared_ptr<const Model>> LoadModel(const std::string& dir) {
  auto m = Model::Load(dir);
  if (!m.ok()) return m.status();
  return std::shared_ptr<const Model>(std::move(m).value());
}

StatusOr<std::unique_ptr<Engine>> OpenEngine(std::shared_ptr<const Model> model, const std::string& kernels,
                                             size_t threads, size_t max_batch_tokens, double kv_cache_gb) {
  KVMART_ASSIGN_OR_RETURN(KernelPath path, ParseKernelPath(kernels));
  if (kv_cache_gb < 0) return Status::InvalidArgument("--kv-cache-gb must not be negative");
  EngineOptions o;
  o.kernels = path;
  o.threads = threads;
  o.max_batch_tokens = max_batch_tokens;
  o.kv_cache_bytes = static_cast<size_t>(kv_cache_gb * 1e9);
  // An explicit size is the pool: faulted in at start-up, and the limit.
  o.kv_prefault_bytes = o.kv_cache_bytes;
  o.kv_limit_bytes = o.kv_cache_bytes;
  return Engine::Create(std::move(model), o);
}

}  // namespace kvmart::cli
