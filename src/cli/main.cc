// kvmart: the prefill CDN command.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"

namespace kvmart::cli {

std::string BundledDataDir() {
  if (const char* env = std::getenv("KVMART_DATA_DIR"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = exe.parent_path() / "data";
    if (std::filesystem::exists(beside / "tokenizer.json", ec)) return beside.string();
  }
  return KVMART_DATA_DIR;
}

}  // namespace kvmart::cli

int main(int argc, char** argv) {
  CLI::App app{"kvmart — a prefill CDN: compute a document's KV cache once, sell bit-exact loads of it"};
  app.require_subcommand(1);
  int exit_code = 0;
  kvmart::cli::RegisterEngineCommands(app, &exit_code);
  kvmart::cli::RegisterTokenizerCommands(app, &exit_code);
  kvmart::cli::RegisterArtifactCommands(app, &exit_code);
  kvmart::cli::RegisterMarketCommands(app, &exit_code);
  kvmart::cli::RegisterPublishCommands(app, &exit_code);
  kvmart::cli::RegisterStoreCommands(app, &exit_code);
  kvmart::cli::RegisterServerCommands(app, &exit_code);
  kvmart::cli::RegisterEconomicsCommands(app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
