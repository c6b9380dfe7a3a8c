// Subcommands of the qslim CLI; each file tools/cmd_<name>.cpp registers one.
#pragma once
#include <CLI/CLI.hpp>

namespace qslim::tools {

void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_models_command(CLI::App& app);
void add_qat_command(CLI::App& app);
void add_ptq_command(CLI::App& app);
void add_dynamic_command(CLI::App& app);
void add_table_command(CLI::App& app);

}  // namespace qslim::tools
