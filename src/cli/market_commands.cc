#include "cli/commands.h"

namespace kvmart::cli {

// The market module's commands are added here as the module lands.
void RegisterMarketCommands(CLI::App& /*app*/, int* /*exit_code*/) {}

}  // namespace kvmart::cli
