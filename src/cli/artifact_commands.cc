#include "cli/commands.h"

namespace kvmart::cli {

// The artifact module's commands are added here as the module lands.
void RegisterArtifactCommands(CLI::App& /*app*/, int* /*exit_code*/) {}

}  // namespace kvmart::cli
