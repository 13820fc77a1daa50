#include "cli/commands.h"

namespace kvmart::cli {

void RegisterEngineCommands(CLI::App& /*app*/, int* /*exit_code*/) {}

}  // namespace kvmart::cli
