// Runs the jobs of `qslim table` as child processes of this same executable (so every figure comes
// from the command a user would type, recorded beside it), keeps every result in
// OUT/results.json (rewritten atomically after each job), and skips jobs already recorded there
// with the same command, so an interrupted table resumes where it stopped.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tools/table_plan.h"

namespace qslim::tools {

struct TableOptions {
  std::string out_dir = "runs/table";
  std::string recipes_dir;  // directory of the training and QAT recipes
  std::string data_dir;     // passed on as --data-dir when set
  std::string preset;
  int threads = 0;          // passed on as --threads when > 0
  int64_t limit = -1;       // passed on as --limit (train, qat) when > 0: a data slice, for tests
  int epochs = 0;           // overrides every model's training epochs when > 0
  int qat_epochs = 0;       // overrides every QAT recipe's epochs when > 0
  int batch_nums = 0;       // passed to ptq when > 0
  std::map<std::string, std::vector<std::string>> method_args;  // the preset's, per method id
  uint64_t seed = 1;
  std::string commit = "unknown";  // the source commit of the binary, recorded with every job
};

struct TableJob {
  std::string id;      // "fp32/<model>" or "<model>/<method>"
  std::string model;   // zoo spec
  std::string method;  // method id, or "fp32"
  std::vector<std::string> argv;  // after the executable
};

class TableRunner {
 public:
  TableRunner(TableOptions options, std::vector<TableModel> models, std::vector<std::string> methods);
  // Runs every job not yet recorded; a failed job is recorded with its exit status and the last
  // lines of its output, and the table goes on. Returns the number of failed jobs.
  int run();
  const nlohmann::json& results() const { return results_; }
  std::vector<TableJob> jobs() const;  // in run order (FP32 first for each model)

 private:
  std::string checkpoint_of(const TableModel& m) const;
  TableJob fp32_job(const TableModel& m) const;
  TableJob method_job(const TableModel& m, const std::string& method) const;
  void save() const;

  TableOptions o_;
  std::vector<TableModel> models_;
  std::vector<std::string> methods_;
  nlohmann::json results_;
};

// A job's argv (after the executable) as the shell command a user would type: "qslim ptq --from ...".
std::string command_line(const std::vector<std::string>& argv);

// Runs argv (argv[0] the executable) with stdout+stderr appended to log_path; returns the exit
// status and fills `json_line` with the last output line that parses as a JSON object.
int run_logged(const std::vector<std::string>& argv, const std::string& log_path, std::string& json_line,
               std::string& tail);

}  // namespace qslim::tools
