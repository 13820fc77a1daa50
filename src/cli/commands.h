// Subcommand registration for the `kvmart` command.
//
// Each module's commands live in their own file and add themselves to the CLI11
// app. A callback stores its process exit status in *exit_code (0 = success) and
// prints errors as "error: <Status>" on stderr.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace kvmart::cli {

void RegisterEngineCommands(CLI::App& app, int* exit_code);     // synth export-gguf generate exactness demo
void RegisterTokenizerCommands(CLI::App& app, int* exit_code);  // tokenize detokenize
void RegisterArtifactCommands(CLI::App& app, int* exit_code);   // keygen inspect
void RegisterMarketCommands(CLI::App& app, int* exit_code);     // market ..., admin migrate
void RegisterPublishCommands(CLI::App& app, int* exit_code);    // publish verify ask
void RegisterStoreCommands(CLI::App& app, int* exit_code);      // store put|ls|stat|pin|gc|verify
void RegisterServerCommands(CLI::App& app, int* exit_code);     // serve
void RegisterEconomicsCommands(CLI::App& app, int* exit_code);  // bench reuse, economics

// Directory of the files shipped with kvmart (tokenizer.json,
// tokenizer_config.json): $KVMART_DATA_DIR if set, else `data/` next to the
// executable, else the build's data folder. Not the data directory of
// cli/data_dir.h, which holds what the user creates.
std::string BundledDataDir();

}  // namespace kvmart::cli
