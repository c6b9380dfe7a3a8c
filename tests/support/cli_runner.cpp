#include "tests/support/cli_runner.h"

#include <sys/wait.h>

#include <cstdio>

namespace qslim::testing {

CliResult run_cli(const std::string& args) {
  std::string cmd = std::string(QSLIM_CLI_PATH) + " " + args + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace qslim::testing
