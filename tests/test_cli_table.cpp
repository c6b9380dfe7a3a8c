// `qslim table` end to end on a miniature table: one model (LeNet, two epochs on a data slice) and
// two methods; the JSON figures and the markdown must agree, a rerun must resume from the recorded
// jobs, and bad method/preset names must be rejected with the allowed lists.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/cli_runner.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_support.h"

using qslim::testing::run_cli;
using qslim::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string two(double v, bool sign = false) {
  char b[32];
  std::snprintf(b, sizeof b, sign ? "%+.2f" : "%.2f", v);
  return b;
}

// The markdown line of the row whose first two cells are model and label.
std::string row_line(const std::string& md, const std::string& model, const std::string& label) {
  std::istringstream in(md);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("| " + model + " | " + label + " |", 0) == 0) return line;
  return "";
}

}  // namespace

TEST(CliTable, MiniatureTableJsonAndMarkdownAgreeAndRerunResumes) {
  const std::string data = qslim::testing::fashion_mnist_dir();
  ASSERT_FALSE(data.empty()) << "Fashion-MNIST is needed (dataset-fashion-mnist)";
  TempDir dir("cli_table");
  const std::string args = "table --models lenet --methods ptq_hist_w8a8,dynamic_int8 --epochs 2 --limit 3000 "
                           "--batch-nums 2 --threads 2 --data-dir " + data + " --out " + dir.str();
  auto r = run_cli(args);
  ASSERT_EQ(r.status, 0) << r.output;

  const nlohmann::json j = nlohmann::json::parse(read(dir.path() / "table.json"));
  const std::string md = read(dir.path() / "table.md");
  ASSERT_EQ(j["rows"].size(), 2u) << j.dump(2);
  for (const auto& row : j["rows"]) {
    const std::string line = row_line(md, row["model"], row["label"]);
    ASSERT_FALSE(line.empty()) << "no markdown row for " << row.dump() << "\n" << md;
    const double fp32 = row["fp32_top1"], int8 = row["int8_top1"];
    EXPECT_NE(line.find(two(fp32) + " / " + two(row["fp32_top5"].get<double>())), std::string::npos) << line;
    EXPECT_NE(line.find(two(int8) + " / " + two(row["int8_top5"].get<double>())), std::string::npos) << line;
    EXPECT_NE(line.find(two(int8 - fp32, true)), std::string::npos) << line;
    EXPECT_DOUBLE_EQ(row["diff_top1"].get<double>(), int8 - fp32);
    EXPECT_GT(fp32, 50.0) << "two epochs of LeNet on 3000 images should pass 50%";
    EXPECT_NE(row["command"].get<std::string>().find("--json"), std::string::npos);
  }
  EXPECT_EQ(j["jobs"].size(), 3u);  // FP32 training + two methods
  EXPECT_TRUE(j.contains("commit") && j.contains("seed") && j.contains("machine"));
  // Each job records the commit of the binary that ran it; the header counts them.
  const std::string commit = j["commit"];
  for (const auto& [id, job] : j["jobs"].items()) EXPECT_EQ(job.value("commit", ""), commit) << id;
  EXPECT_EQ(j["job_commits"].value(commit, 0), 3);
  EXPECT_NE(md.find("jobs run at commit " + commit + " (3 jobs)"), std::string::npos) << md;
  EXPECT_TRUE(fs::exists(dir.path() / "table.svg"));
  EXPECT_NE(read(dir.path() / "table.svg").find("<svg"), std::string::npos);

  // A rerun finds every job recorded and runs nothing.
  auto again = run_cli(args);
  ASSERT_EQ(again.status, 0) << again.output;
  size_t skipped = 0;
  for (size_t p = 0; (p = again.output.find("recorded earlier, skipped", p)) != std::string::npos; ++p) ++skipped;
  EXPECT_EQ(skipped, 3u) << again.output;
  EXPECT_EQ(read(dir.path() / "table.md").substr(md.find("### FP32")), md.substr(md.find("### FP32")));

  // Rendering again from results.json keeps the run's command in the header, without the flag.
  auto rendered = run_cli(args + " --report-only");
  ASSERT_EQ(rendered.status, 0) << rendered.output;
  const std::string md2 = read(dir.path() / "table.md");
  EXPECT_EQ(md2.find("--report-only"), std::string::npos) << md2;
  EXPECT_NE(md2.find("jobs run at commit " + commit + " (3 jobs)"), std::string::npos) << md2;

  // A new FP32 checkpoint makes the method jobs on the old one stale: retraining reruns them, and so
  // does a checkpoint replaced behind the table's back.
  auto count = [](const std::string& out, const std::string& what) {
    size_t n = 0;
    for (size_t p = 0; (p = out.find(what, p)) != std::string::npos; ++p) ++n;
    return n;
  };
  const std::string args3 = args.substr(0, args.find("--epochs 2")) + "--epochs 3" +
                            args.substr(args.find("--epochs 2") + std::string("--epochs 2").size());
  auto retrained = run_cli(args3);
  ASSERT_EQ(retrained.status, 0) << retrained.output;
  EXPECT_EQ(count(retrained.output, "recorded earlier, skipped"), 0u) << retrained.output;
  EXPECT_EQ(count(retrained.output, "  done in "), 3u) << retrained.output;
  const fs::path ckpt = dir.path() / "fp32" / "lenet" / "model.safetensors";
  ASSERT_TRUE(fs::exists(ckpt));
  fs::last_write_time(ckpt, fs::last_write_time(ckpt) + std::chrono::seconds(5));
  auto replaced = run_cli(args3);
  ASSERT_EQ(replaced.status, 0) << replaced.output;
  EXPECT_EQ(count(replaced.output, "recorded earlier, skipped"), 1u) << replaced.output;  // the FP32 job
  EXPECT_EQ(count(replaced.output, "  done in "), 2u) << replaced.output;
}

TEST(CliTable, RejectsUnknownMethodAndPreset) {
  TempDir dir("cli_table_bad");
  auto r = run_cli("table --models lenet --methods ptq_nope --out " + dir.str());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown method 'ptq_nope'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ptq_hist_w8a8"), std::string::npos) << r.output;
  r = run_cli("table --preset huge --out " + dir.str());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("allowed: quick, full"), std::string::npos) << r.output;
  r = run_cli("table --models no_such_model --methods qat --out " + dir.str());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no_such_model"), std::string::npos) << r.output;
}

// The full preset's plan: every model trained from its recipe with the cut epochs, QAT fine-tuning
// cut as the preset says, every method job quoting the FP32 figures of its training run, and
// --qat-epochs replacing the preset's own epochs.
TEST(CliTable, FullPresetPlanCarriesThePresetsFineTuningCuts) {
  TempDir dir("cli_table_plan");
  auto line_of = [](const std::string& out, const std::string& id) {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(id + ": ", 0) == 0) return line;
    ADD_FAILURE() << "no job " << id << " in:\n" << out;
    return std::string();
  };
  auto r = run_cli("table --preset full --plan --out " + dir.str());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("table: 112 jobs, preset full"), std::string::npos) << r.output;  // 7 x (FP32 + 15)
  EXPECT_NE(line_of(r.output, "fp32/resnet20").find("train --recipe "), std::string::npos);
  EXPECT_NE(line_of(r.output, "fp32/resnet20").find("resnet20.json --epochs 3 --seed 1"), std::string::npos);
  EXPECT_NE(line_of(r.output, "fp32/vgg16").find("vgg16.json --epochs 6 --seed 1"), std::string::npos);
  const std::string qat = line_of(r.output, "mobilenet_v2/qat_default");
  EXPECT_NE(qat.find("--epoch-fraction 0.5"), std::string::npos) << qat;
  EXPECT_NE(qat.find("--fp32-from-checkpoint"), std::string::npos) << qat;
  EXPECT_NE(line_of(r.output, "vgg16/ptq_kl_w8a8").find("--fp32-from-checkpoint"), std::string::npos);
  EXPECT_NE(line_of(r.output, "googlenet/dynamic_int16").find("--fp32-from-checkpoint"), std::string::npos);
  const std::string control = line_of(r.output, "googlenet/fp32_finetune");
  EXPECT_NE(control.find("qslim train --from "), std::string::npos) << control;
  EXPECT_NE(control.find("--epochs 1 --lr 0.005 "), std::string::npos) << control;
  EXPECT_NE(control.find("--epoch-fraction 0.5"), std::string::npos) << control;
  EXPECT_NE(control.find("--fp32-from-checkpoint --seed 1"), std::string::npos) << control;
  const std::string lsq = line_of(r.output, "resnet50/qat_lsq_w4a8");
  EXPECT_NE(lsq.find("--epochs 1"), std::string::npos) << lsq;
  EXPECT_EQ(lsq.find("--epoch-fraction"), std::string::npos) << lsq;
  EXPECT_EQ(r.output.find("ptq_hist_w8a8_bc"), std::string::npos) << "the full preset leaves out W8A8 + BC";
  EXPECT_FALSE(fs::exists(dir.path() / "results.json")) << "a plan runs nothing";

  r = run_cli("table --preset full --plan --qat-epochs 2 --out " + dir.str());
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string lsq2 = line_of(r.output, "resnet50/qat_lsq_w4a8");
  EXPECT_EQ(lsq2.find("--epochs 1"), std::string::npos) << lsq2;
  EXPECT_NE(lsq2.find("--epochs 2"), std::string::npos) << lsq2;
}

// train --from, the table's FP32 fine-tune control: it starts from the checkpoint's weights (a
// vanishing learning rate leaves its accuracy exactly where it was), takes the model, dataset and
// normalisation from it, and reports the starting figures beside the new ones.
TEST(CliTable, TrainFromACheckpointFineTunesItsWeights) {
  const std::string data = qslim::testing::fashion_mnist_dir();
  ASSERT_FALSE(data.empty()) << "Fashion-MNIST is needed (dataset-fashion-mnist)";
  TempDir dir("cli_train_from");
  const std::string common = " --limit 1000 --threads 2 --data-dir " + data + " --json";
  auto first = run_cli("train --model lenet --epochs 1 --batch-size 50 --out " + (dir.path() / "a").string() + common);
  ASSERT_EQ(first.status, 0) << first.output;
  const std::string ckpt = (dir.path() / "a" / "model.safetensors").string();
  auto json_of = [](const std::string& out) {
    const size_t b = out.rfind("\n{\"") + 1;
    return nlohmann::json::parse(out.substr(b, out.find('\n', b) - b));
  };
  const nlohmann::json a = json_of(first.output);
  auto tuned = run_cli("train --from " + ckpt + " --epochs 1 --lr 1e-12 --batch-size 50 --out " +
                       (dir.path() / "b").string() + common);
  ASSERT_EQ(tuned.status, 0) << tuned.output;
  const nlohmann::json b = json_of(tuned.output);
  EXPECT_EQ(b.value("model", ""), "lenet");
  EXPECT_DOUBLE_EQ(b.at("fp32_top1").get<double>(), a.at("top1").get<double>());
  EXPECT_EQ(b.value("fp32_source", ""), "evaluated");  // --limit: the recorded figures are of 1000 images too,
                                                       // but only the full split is quoted
  EXPECT_DOUBLE_EQ(b.at("top1").get<double>(), a.at("top1").get<double>());
  EXPECT_DOUBLE_EQ(b.at("diff_top1").get<double>(), 0.0);
  EXPECT_GT(a.at("top1").get<double>(), 25.0) << "one epoch on 1000 images is well above chance (10 %)";
  EXPECT_NE(tuned.output.find("vs the starting model (evaluated): top-1 +0.00"), std::string::npos) << tuned.output;

  auto both = run_cli("train --from " + ckpt + " --resume " + (dir.path() / "a").string());
  EXPECT_NE(both.status, 0);
  EXPECT_NE(both.output.find("--from and --resume cannot be combined"), std::string::npos) << both.output;
  auto flag = run_cli("train --model lenet --fp32-from-checkpoint --epochs 1" + common);
  EXPECT_NE(flag.status, 0);
  EXPECT_NE(flag.output.find("--fp32-from-checkpoint needs --from"), std::string::npos) << flag.output;
  auto wrong = run_cli("train --from " + ckpt + " --model resnet20 --epochs 1" + common);
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.output.find("does not fit model 'resnet20'"), std::string::npos) << wrong.output;
}
