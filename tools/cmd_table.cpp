// qslim table: FP32 vs INT8 accuracy tables for the zoo, shaped like PaddleSlim's, end to end —
// train each model from its recipe (or reuse the checkpoint of the same recipe and seed), run every
// chosen quantization method through the CLI command a user would type, and write
// OUT/table.md, OUT/table.json (every figure with its command, the commit, seed and wall times)
// and OUT/table.svg (top-1 change per model and method). Interrupted tables resume.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "git_commit.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/table_plan.h"
#include "tools/table_report.h"
#include "tools/table_runner.h"

namespace qslim::tools {

namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

struct TableArgs {
  std::string models, methods, preset = "quick", out, recipes, data_dir;
  int threads = 0, epochs = 0, qat_epochs = 0, batch_nums = 0;
  int64_t limit = -1;
  uint64_t seed = 1;
  bool report_only = false, plan = false;
  std::vector<std::string> checkpoints;  // MODEL=PATH
  std::vector<std::string> raw_args;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return b;
}

std::string default_recipes_dir() {
  const fs::path src = fs::path(QSLIM_SOURCE_DIR) / "recipes";
  return fs::exists(src) ? src.string() : "recipes";
}

void run_table(const TableArgs& a) {
  const TablePreset preset = table_preset(a.preset);
  TableOptions o;
  o.preset = preset.name;
  o.out_dir = a.out.empty() ? "runs/table-" + preset.name : a.out;
  o.recipes_dir = a.recipes.empty() ? default_recipes_dir() : a.recipes;
  QSLIM_CHECK(fs::is_directory(o.recipes_dir), "table: recipes directory ", o.recipes_dir, " does not exist");
  o.data_dir = a.data_dir;
  o.threads = a.threads;
  o.limit = a.limit;
  o.epochs = a.epochs;
  o.qat_epochs = a.qat_epochs;
  o.batch_nums = a.batch_nums;
  o.method_args = preset.method_args;
  o.seed = a.seed;

  std::vector<TableModel> models;
  if (a.models.empty()) {
    models = preset.models;
  } else {
    for (const std::string& name : split(a.models)) models.push_back(table_model(preset, name, o.recipes_dir));
  }
  QSLIM_CHECK(!models.empty(), "table: no models given");
  for (const std::string& c : a.checkpoints) {
    const size_t eq = c.find('=');
    QSLIM_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < c.size(), "table: --checkpoint takes MODEL=PATH, got '",
                c, "'");
    const std::string name = c.substr(0, eq), path = c.substr(eq + 1);
    QSLIM_CHECK(fs::exists(path), "table: --checkpoint ", name, "=", path, ": no such file");
    bool found = false;
    for (TableModel& m : models)
      if (m.name == name) m.checkpoint = path, found = true;
    QSLIM_CHECK(found, "table: --checkpoint names model '", name, "', which is not in the table");
  }
  const std::vector<std::string> methods = expand_methods(a.methods.empty() ? preset.methods : a.methods);
  std::vector<std::string> model_names;
  for (const TableModel& m : models) model_names.push_back(m.name);

  o.commit = QSLIM_GIT_COMMIT;
  TableRunner runner(o, models, methods);
  if (a.plan) {
    const std::vector<TableJob> jobs = runner.jobs();
    std::printf("table: %zu jobs, preset %s, output %s\n", jobs.size(), preset.name.c_str(), o.out_dir.c_str());
    for (const TableJob& j : jobs) std::printf("%s: %s\n", j.id.c_str(), command_line(j.argv).c_str());
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0;
  if (!a.report_only) {
    std::printf("table: %zu models x %zu methods (+ FP32 %s), preset %s, output %s\n", models.size(), methods.size(),
                a.checkpoints.empty() ? "training" : "checkpoints", preset.name.c_str(), o.out_dir.c_str());
    failed = runner.run();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const json& results = runner.results();
  const std::vector<TableRow> rows = table_rows(results, model_names, methods);
  std::string cmdline = "qslim table";
  for (size_t i = 0; i < a.raw_args.size(); ++i) {
    if (a.raw_args[i] == "--report-only") {
      if (i + 1 < a.raw_args.size() && (a.raw_args[i + 1] == "true" || a.raw_args[i + 1] == "false")) ++i;
      continue;
    }
    cmdline += " " + a.raw_args[i];
  }
  // The commits of the binaries that ran the jobs behind these rows (a resumed run may span several).
  std::map<std::string, int> job_commits;
  for (const auto& [id, rec] : results.at("jobs").items()) {
    const std::string model = rec.value("model", ""), method = rec.value("method", "");
    const bool shown = std::find(model_names.begin(), model_names.end(), model) != model_names.end() &&
                       (method == "fp32" || std::find(methods.begin(), methods.end(), method) != methods.end());
    if (shown && rec.value("status", -1) == 0) ++job_commits[rec.value("commit", "unrecorded")];
  }
  std::string commits_text;
  for (const auto& [c, n] : job_commits)
    commits_text += (commits_text.empty() ? "" : ", ") + c + " (" + std::to_string(n) + (n == 1 ? " job)" : " jobs)");
  const std::string machine = cpu_name() + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " cores";
  double job_seconds = 0;
  for (const auto& [id, rec] : results.at("jobs").items()) job_seconds += rec.value("seconds", 0.0);

  json out = {{"command", cmdline},
              {"commit", QSLIM_GIT_COMMIT},
              {"job_commits", job_commits},
              {"date", utc_now()},
              {"machine", machine},
              {"preset", preset.name},
              {"seed", a.seed},
              {"models", model_names},
              {"methods", methods},
              {"wall_seconds_this_run", seconds},
              {"job_seconds_total", job_seconds},
              {"rows", json::array()},
              {"jobs", results.at("jobs")}};
  for (const TableRow& r : rows)
    out["rows"].push_back({{"model", r.model},
                           {"method", r.method},
                           {"family", r.family},
                           {"label", r.label},
                           {"fp32_top1", r.fp32_top1},
                           {"fp32_top5", r.fp32_top5},
                           {"int8_top1", r.int8_top1},
                           {"int8_top5", r.int8_top5},
                           {"diff_top1", r.int8_top1 - r.fp32_top1},
                           {"size_ratio", r.size_ratio},
                           {"seconds", r.seconds},
                           {"command", r.command}});
  const std::string md = "## qslim table (" + preset.name + " preset)\n\n`" + cmdline + "`, jobs run at commit " +
                         (commits_text.empty() ? std::string("-") : commits_text) + ", seed " + std::to_string(a.seed) +
                         ", rendered " + utc_now() + " at commit " + QSLIM_GIT_COMMIT + ", " + machine +
                         "; jobs took " + format_duration(job_seconds) +
                         " in all. Fashion-MNIST test set (10,000 images) unless --limit was given.\n\n" +
                         table_markdown(rows, results, model_names);
  write_text_atomic((fs::path(o.out_dir) / "table.json").string(), out.dump(2) + "\n");
  write_text_atomic((fs::path(o.out_dir) / "table.md").string(), md);
  write_text_atomic((fs::path(o.out_dir) / "table.svg").string(),
                    table_chart_svg(rows, model_names, "qslim: INT8 - FP32 top-1 on Fashion-MNIST"));
  std::printf("\n%s\n", md.c_str());
  std::printf("wrote %s/table.md, table.json and table.svg\n", o.out_dir.c_str());
  QSLIM_CHECK(failed == 0, "table: ", failed, " job(s) failed; their logs are under ", o.out_dir,
              "/logs (rerun the same command to retry them)");
}

}  // namespace

void add_table_command(CLI::App& app) {
  auto a = std::make_shared<TableArgs>();
  CLI::App* cmd = app.add_subcommand("table", "FP32 vs INT8 accuracy tables for the zoo, PaddleSlim style");
  cmd->add_option("--models", a->models, "Comma-separated zoo models (default: the preset's)");
  cmd->add_option("--methods", a->methods,
                  "Comma-separated method ids or families: all, ptq_w8a8, ptq_low, qat, dynamic, "
                  "ptq_hist_w8a8, qat_lsq_w4a8, ... (default: the preset's)");
  cmd->add_option("--preset", a->preset, "quick (lenet, resnet20, mobilenet_v2_small) | full (the zoo)");
  cmd->add_option("--out", a->out, "Output directory (default runs/table-PRESET); rerun to resume");
  cmd->add_option("--recipes", a->recipes, "Directory of the training and QAT recipes");
  cmd->add_option("--data-dir", a->data_dir, "Fashion-MNIST directory");
  cmd->add_option("--threads", a->threads, "Threads for every job");
  cmd->add_option("--limit", a->limit, "Use only the first N training and test images (tests)");
  cmd->add_option("--epochs", a->epochs, "Override every model's training epochs");
  cmd->add_option("--qat-epochs", a->qat_epochs, "Override every QAT recipe's epochs");
  cmd->add_option("--batch-nums", a->batch_nums, "PTQ calibration batches");
  cmd->add_option("--seed", a->seed, "Seed of training and fine-tuning");
  cmd->add_option("--checkpoint", a->checkpoints,
                  "MODEL=PATH: use this FP32 checkpoint instead of training MODEL (repeatable)");
  cmd->add_flag("--report-only", a->report_only, "Only render the tables from OUT/results.json");
  cmd->add_flag("--plan", a->plan, "Print every job's command line and run nothing");
  cmd->callback([a, cmd] {
    a->raw_args.clear();
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->count() == 0 || opt->get_name() == "--help") continue;
      a->raw_args.push_back(opt->get_name());
      if (opt->get_type_size() != 0)
        for (const std::string& r : opt->results()) a->raw_args.push_back(r);
    }
    run_table(*a);
  });
}

}  // namespace qslim::tools
