// qslim models: list the zoo with parameter counts and MFLOPs (2 x MACs) for one 28x28 image.
#include <cstdio>

#include "models/flops.h"
#include "models/registry.h"
#include "tools/commands.h"

namespace qslim::tools {

void add_models_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("models", "List the model zoo with parameters and MFLOPs at 1x28x28");
  cmd->callback([] {
    std::printf("%-20s %12s %10s  %s\n", "model", "parameters", "MFLOPs", "description");
    for (const auto& info : models::model_registry()) {
      auto m = models::create_model(info.name);
      const double mflops = 2.0 * static_cast<double>(models::count_macs(*m, {1, 1, 28, 28})) / 1e6;
      std::printf("%-20s %12lld %10.2f  %s\n", info.name.c_str(), static_cast<long long>(m->num_parameters()), mflops,
                  info.description.c_str());
    }
  });
}

}  // namespace qslim::tools
