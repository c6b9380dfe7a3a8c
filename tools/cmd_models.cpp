// qslim models: list the zoo with parameter counts.
#include <cstdio>

#include "models/registry.h"
#include "tools/commands.h"

namespace qslim::tools {

void add_models_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("models", "List the model zoo");
  cmd->callback([] {
    std::printf("%-22s %12s  %s\n", "model", "parameters", "description");
    for (const auto& info : models::model_registry()) {
      auto m = models::create_model(info.name);
      std::printf("%-22s %12lld  %s\n", info.name.c_str(), static_cast<long long>(m->num_parameters()),
                  info.description.c_str());
    }
  });
}

}  // namespace qslim::tools
