// The qslim CLI end to end: bad input gives a one-line error and a non-zero exit; a short training
// run writes a checkpoint that `qslim eval` reads back.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"

using qslim::testing::run_cli;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(Cli, UnknownFlagIsRejected) {
  auto r = run_cli("train --no-such-flag");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--no-such-flag"), std::string::npos) << r.output;
}

TEST(Cli, UnknownModelNamesTheAvailableOnes) {
  auto r = run_cli("train --model nosuchnet --epochs 1 --limit 10");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("unknown model 'nosuchnet'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lenet"), std::string::npos) << r.output;
}

TEST(Cli, UnknownModelArgumentIsRejected) {
  auto r = run_cli("train --model lenet:widht=2 --epochs 1 --limit 10");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("unknown argument 'widht'"), std::string::npos) << r.output;
}

TEST(Cli, MissingDatasetNamesTheFile) {
  auto r = run_cli("train --epochs 1 --data-dir /nonexistent/fmnist");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/nonexistent/fmnist"), std::string::npos) << r.output;
}

TEST(Cli, UnknownOptimizerListsAllowedValues) {
  auto r = run_cli("train --optimizer rmsprop --epochs 1 --limit 10");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("allowed: sgd, adam, adamw"), std::string::npos) << r.output;
}

TEST(Cli, DamagedCheckpointNamesTheFile) {
  fs::path d = temp_dir("damaged");
  fs::path f = d / "bad.safetensors";
  std::ofstream(f) << "not a checkpoint";
  auto r = run_cli("eval --checkpoint " + f.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find(f.string()), std::string::npos) << r.output;
  fs::remove_all(d);
}

TEST(Cli, TrainWritesCheckpointThatEvalReads) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path d = temp_dir("train");
  auto r = run_cli("train --model lenet --epochs 1 --limit 1024 --batch-size 64 --threads 2 --out " + d.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("test top-1"), std::string::npos) << r.output;
  ASSERT_TRUE(fs::exists(d / "model.safetensors"));
  ASSERT_TRUE(fs::exists(d / "metrics.jsonl"));
  auto e = run_cli("eval --checkpoint " + (d / "model.safetensors").string() + " --limit 1024");
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_NE(e.output.find("on 1024 images"), std::string::npos) << e.output;
  // Evaluating the same weights as the last training epoch gives the same accuracy it reported.
  auto pos = r.output.find("final: lenet test top-1 ");
  ASSERT_NE(pos, std::string::npos);
  std::string acc = r.output.substr(pos + 24, r.output.find('%', pos) - pos - 24);
  EXPECT_NE(e.output.find("test top-1 " + acc + "%"), std::string::npos) << r.output << "\n" << e.output;
  auto wrong = run_cli("eval --checkpoint " + (d / "model.safetensors").string() + " --model lenet:num_classes=7");
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.output.find("fc3"), std::string::npos) << wrong.output;
  fs::remove_all(d);
}
