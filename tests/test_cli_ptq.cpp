// `qslim ptq` end to end on a small LeNet checkpoint: result lines, --json, the INT8 file, the
// calibration-cost line, and the errors for bad flags (with no file left behind).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/quantized_io.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"

using qslim::testing::run_cli;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_cli_ptq_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// An FP32 checkpoint as qslim train writes it (untrained weights: the test is about the command).
fs::path lenet_checkpoint(const fs::path& dir) {
  qslim::manual_seed(21);
  auto model = qslim::models::create_model("lenet");
  const fs::path p = dir / "model.safetensors";
  qslim::nn::save_module(p.string(), *model, {{"format", "qslim-fp32"}, {"model", "lenet"}, {"dataset", "fashion-mnist"}});
  return p;
}

double percent_after(const std::string& out, const std::string& label) {
  std::smatch m;
  std::regex re("(^|\\n)" + label + " (-?[0-9]+\\.[0-9]{2})%");
  if (!std::regex_search(out, m, re)) {
    ADD_FAILURE() << "no line '" << label << " xx.xx%' in:\n" << out;
    return -1;
  }
  return std::stod(m[2].str());
}

nlohmann::json json_line(const std::string& out) {
  nlohmann::json j;
  for (size_t b = 0, e; b < out.size(); b = e + 1) {
    e = out.find('\n', b);
    if (e == std::string::npos) e = out.size();
    if (out.compare(b, 2, "{\"") == 0) j = nlohmann::json::parse(out.substr(b, e - b));
  }
  return j;
}

}  // namespace

TEST(CliPtq, QuantizesACheckpointAndReportsFigures) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path d = temp_dir("run");
  const fs::path ckpt = lenet_checkpoint(d);
  const fs::path out = d / "int8";
  auto r = run_cli("ptq --from " + ckpt.string() + " --algo KL --batch-size 16 --batch-nums 2 --limit 256 " +
                   "--threads 2 --measure-overhead --json --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const fs::path int8 = out / "model_int8.safetensors";
  ASSERT_TRUE(fs::exists(int8)) << r.output;
  const double fp32_top1 = percent_after(r.output, "FP32 top-1");
  const double int8_top1 = percent_after(r.output, "INT8 top-1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("\\nINT8 top-1 [0-9.]+%  \\(diff vs FP32 ([-+][0-9]+\\.[0-9]{2})\\)\\n")))
      << r.output;
  EXPECT_NEAR(std::stod(m[1].str()), int8_top1 - fp32_top1, 0.0101);
  const auto int8_size = fs::file_size(int8), fp32_size = fs::file_size(ckpt);
  EXPECT_NE(r.output.find("size: FP32 " + std::to_string(fp32_size) + " bytes -> INT8 " + std::to_string(int8_size) +
                          " bytes"),
            std::string::npos)
      << r.output;
  EXPECT_LT(static_cast<double>(int8_size) / static_cast<double>(fp32_size), 0.32);
  EXPECT_NE(r.output.find("quantized conv1, conv2, fc1, fc2, fc3\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("calibration: 2 batches (32 samples)"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("same forwards without observers [0-9.]+s: [0-9.]+x")))
      << r.output;

  nlohmann::json j = json_line(r.output);
  ASSERT_TRUE(j.is_object()) << r.output;
  EXPECT_NEAR(j.at("fp32_top1").get<double>(), fp32_top1, 0.005);
  EXPECT_NEAR(j.at("int8_top1").get<double>(), int8_top1, 0.005);
  EXPECT_EQ(j.at("test_samples").get<int64_t>(), 256);
  EXPECT_EQ(j.at("batch_nums").get<int64_t>(), 2);
  EXPECT_EQ(j.at("calibration_samples").get<int64_t>(), 32);
  EXPECT_EQ(j.at("algo"), "KL");
  EXPECT_EQ(j.at("int8_bytes").get<int64_t>(), static_cast<int64_t>(int8_size));
  EXPECT_GT(j.at("calibration_overhead").get<double>(), 0.0);
  EXPECT_GT(j.at("stage_seconds").at("calibrate").get<double>(), 0.0);
  EXPECT_GT(j.at("peak_rss_mib").get<double>(), 0.0);

  // The file is an ordinary converted model: qslim eval runs it and agrees with the reported figure.
  auto meta = qslim::quant::converted_metadata(int8.string());
  EXPECT_EQ(meta.at("model"), "lenet");
  auto e = run_cli("eval --checkpoint " + int8.string() + " --limit 256 --json");
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_NEAR(json_line(e.output).at("top1").get<double>(), int8_top1, 0.005) << e.output;
  fs::remove_all(d);
}

TEST(CliPtq, W4A8AndCacheDirectory) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path d = temp_dir("w4a8");
  const fs::path ckpt = lenet_checkpoint(d);
  const std::string args = "ptq --from " + ckpt.string() + " --algo abs_max --weight-bits 4 --activation-bits 8 " +
                           "--batch-size 16 --batch-nums 2 --limit 64 --threads 2 --cache-dir " +
                           (d / "cache").string() + " --out " + (d / "int8").string();
  auto first = run_cli(args);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("(written)"), std::string::npos) << first.output;
  auto second = run_cli(args);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("(reused)"), std::string::npos) << second.output;
  auto layers = nlohmann::json::parse(
      qslim::quant::converted_metadata((d / "int8" / "model_int8.safetensors").string()).at("layers"));
  for (const auto& l : layers) EXPECT_EQ(l["quant"]["weight"]["bits"], 4) << l.dump();
  fs::remove_all(d);
}

TEST(CliPtq, BadFlagsFailClearlyWithoutAFile) {
  fs::path d = temp_dir("bad");
  const fs::path ckpt = lenet_checkpoint(d);
  const fs::path out = d / "int8";
  struct Case {
    std::string flags, message;
  };
  std::ofstream(d / "plain_file") << "x";
  const std::vector<Case> cases = {
      {"--algo minmax", "unknown algo 'minmax'"},
      {"--round-type stochastic", "unknown --round-type 'stochastic'"},
      {"--weight-bits 1", "weight_bits"},
      {"--limit 64 --batch-nums 10", "batch_nums 10 is larger than the calibration data"},
      {"--limit 64 --batch-nums 2 --quantize-op-types Add", "nothing to quantize"},
      {"--limit 64 --batch-nums 2 --cache-dir " + (d / "plain_file" / "c").string(),
       "cache_dir " + (d / "plain_file" / "c").string()},
  };
  for (const Case& c : cases) {
    auto r = run_cli("ptq --from " + ckpt.string() + " --threads 2 " + c.flags + " --out " + out.string());
    EXPECT_EQ(r.status, 1) << c.flags << ":\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.flags << ":\n" << r.output;
    EXPECT_FALSE(fs::exists(out / "model_int8.safetensors")) << c.flags;
  }
  auto missing = run_cli("ptq --from " + (d / "none.safetensors").string() + " --out " + out.string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find((d / "none.safetensors").string() + " does not exist"), std::string::npos)
      << missing.output;
  fs::remove_all(d);
}
