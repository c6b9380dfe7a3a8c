// Runs the built qslim CLI and captures its exit status and combined output.
#pragma once
#include <string>

namespace qslim::testing {

struct CliResult {
  int status = -1;  // exit code
  std::string output;
};

// `args` is appended to the CLI path and run through the shell (quote as needed).
CliResult run_cli(const std::string& args);

}  // namespace qslim::testing
