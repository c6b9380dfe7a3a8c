// CLI tests of the INT8 engine: qslim eval --int8 on a tiny converted file, qslim bench --int8.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/qat.h"
#include "quant/quantized_io.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"

namespace qslim {
namespace {

using testing::run_cli;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("qslim_cli_int8_" + name)).string();
}

// A LeNet converted after a few calibration batches (untrained: the CLI plumbing is under test).
std::string tiny_converted_file() {
  manual_seed(11);
  auto model = models::create_model("lenet");
  const quant::QuantConfig config;
  quant::quant_aware(*model, config);
  {
    NoGradGuard no_grad;
    model->train();
    for (int i = 0; i < 3; ++i) (*model)(randn({16, 1, 28, 28}));
  }
  quant::convert(*model);
  const std::string path = temp_path("lenet.safetensors");
  quant::save_converted(path, *model, config, "lenet");
  return path;
}

TEST(CliInt8, EvalRunsTheEngineAndComparesWithTheSimulatedPath) {
  ASSERT_FALSE(testing::fashion_mnist_dir().empty());
  const std::string path = tiny_converted_file();
  auto r = run_cli("eval " + path + " --int8 --compare --limit 300 --data-dir " + testing::fashion_mnist_dir());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("INT8 engine): test top-1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("on 300 images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("simulated path): test top-1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("agree on the top-1 of"), std::string::npos) << r.output;

  r = run_cli("eval --checkpoint " + path + " --int8 --compare --json --limit 200 --data-dir " +
              testing::fashion_mnist_dir());
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j.at("engine"), "int8");
  EXPECT_EQ(j.at("samples"), 200);
  EXPECT_GE(j.at("top1_agreement").get<double>(), 99.0);
  EXPECT_NEAR(j.at("top1").get<double>(), j.at("simulated_top1").get<double>(), 1.0);
  std::remove(path.c_str());
}

TEST(CliInt8, EvalRefusesInt8OnFloatCheckpointsAndCompareWithoutInt8) {
  const std::string fp32 = temp_path("fp32.safetensors");
  auto model = models::create_model("lenet");
  nn::save_module(fp32, *model, {{"model", "lenet"}});
  auto r = run_cli("eval " + fp32 + " --int8 --limit 10 --data-dir " + testing::fashion_mnist_dir());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--int8 runs converted INT8 files"), std::string::npos) << r.output;
  r = run_cli("eval " + fp32 + " --compare --limit 10 --data-dir " + testing::fashion_mnist_dir());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--compare needs --int8"), std::string::npos) << r.output;
  std::remove(fp32.c_str());
}

TEST(CliInt8, BenchPrintsFp32AndInt8Figures) {
  auto r = run_cli("bench --int8 --models lenet --no-torch --json --threads 1");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto& m = j.at("models").at(0);
  EXPECT_EQ(m.at("model"), "lenet");
  EXPECT_GT(m.at("int8_img_s_bs256").get<double>(), 0);
  EXPECT_GT(m.at("fp32_img_s_bs256").get<double>(), 0);
  EXPECT_GT(m.at("int8_latency_ms_bs1").get<double>(), 0);
  EXPECT_LT(m.at("file_ratio").get<double>(), 0.3);
  EXPECT_GE(m.at("top1_agreement").get<double>(), 99.0);
}

}  // namespace
}  // namespace qslim
