// qslim: train, evaluate and benchmark models from the command line.
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qslim: C++ training and quantization of deep networks"};
  app.require_subcommand(1);
  qslim::tools::add_train_command(app);
  qslim::tools::add_eval_command(app);
  qslim::tools::add_qat_command(app);
  qslim::tools::add_ptq_command(app);
  qslim::tools::add_dynamic_command(app);
  qslim::tools::add_table_command(app);
  qslim::tools::add_bench_command(app);
  qslim::tools::add_models_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qslim::Error& e) {
    std::fprintf(stderr, "qslim: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qslim: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
