#include "cli/commands.h"

namespace kvmart::cli {

// The tokenizer module's commands are added here as the module lands.
void RegisterTokenizerCommands(CLI::App& /*app*/, int* /*exit_code*/) {}

}  // namespace kvmart::cli
