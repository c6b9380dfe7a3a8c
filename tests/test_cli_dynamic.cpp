// `qslim dynamic` end to end: a short LeNet training run, INT8 and INT16 weight-only quantization
// (result lines, file sizes, --json, the test model), `qslim eval` on the written files, and errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"

using qslim::testing::run_cli;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_cli_dynamic_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The percentage after `label` at the start of a line, e.g. "FP32 top-1 81.25%".
double percent_after(const std::string& out, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("(^|\\n)" + label + " (-?[0-9]+\\.[0-9]{2})%"))) {
    ADD_FAILURE() << "no line '" << label << " xx.xx%' in:\n" << out;
    return -1;
  }
  return std::stod(m[2].str());
}

nlohmann::json json_line(const std::string& out) {
  for (size_t b = 0, e; b < out.size(); b = e + 1) {
    e = out.find('\n', b);
    if (e == std::string::npos) e = out.size();
    if (out.compare(b, 2, "{\"") == 0) return nlohmann::json::parse(out.substr(b, e - b));
  }
  ADD_FAILURE() << "no JSON line in:\n" << out;
  return {};
}

// "test top-1 xx.xx%" of a `qslim eval` run.
double eval_top1(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("test top-1 ([0-9]+\\.[0-9]{2})%"))) {
    ADD_FAILURE() << "no test top-1 in:\n" << out;
    return -1;
  }
  return std::stod(m[1].str());
}

}  // namespace

TEST(CliDynamic, BadArgumentsAreNamed) {
  const fs::path d = temp_dir("bad");
  auto r = run_cli("dynamic --from " + (d / "none.safetensors").string() + " --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find((d / "none.safetensors").string() + " does not exist"), std::string::npos) << r.output;
  r = run_cli("dynamic --from " + (d / "none.safetensors").string() + " --weight-bits 4 --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("weight_bits must be 8 or 16"), std::string::npos) << r.output;
  r = run_cli("dynamic --from x --quantizable-op-type relu --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("'relu' (ReLU) has no weight to quantize"), std::string::npos) << r.output;
  r = run_cli("dynamic --from x --weight-quantize-type hist --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("allowed: channel_wise_abs_max, abs_max"), std::string::npos) << r.output;
  fs::remove_all(d);
}

// One process for the slow part (a training run, then INT8 and INT16 runs on its checkpoint).
TEST(CliDynamic, TrainThenQuantizeInt8AndInt16) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  const fs::path fp32_dir = temp_dir("fp32"), out = temp_dir("out");
  const fs::path fp32 = fp32_dir / "model.safetensors";
  auto t =
      run_cli("train --model lenet --epochs 1 --limit 2048 --batch-size 32 --threads 2 --out " + fp32_dir.string());
  ASSERT_EQ(t.status, 0) << t.output;
  double top1[2] = {0, 0}, fp32_top1[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    const int bits = k == 0 ? 8 : 16;
    const std::string label = "INT" + std::to_string(bits);
    SCOPED_TRACE(label);
    auto r = run_cli("dynamic --from " + fp32.string() + " --weight-bits " + std::to_string(bits) +
                     " --limit 2048 --threads 2 --json --generate-test-model --out " + out.string());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("quantizing conv1, conv2, fc1, fc2, fc3\n"), std::string::npos) << r.output;
    fp32_top1[k] = percent_after(r.output, "FP32 top-1");
    top1[k] = percent_after(r.output, label + " top-1");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m,
                                  std::regex(label + " top-1 [0-9.]+%  \\(diff vs FP32 ([-+][0-9]+\\.[0-9]{2})\\)")))
        << r.output;
    EXPECT_NEAR(std::stod(m[1].str()), top1[k] - fp32_top1[k], 0.0101);
    // FP32 is the training run's final accuracy (same weights, same 2048 test images).
    const auto pos = t.output.find("final: lenet test top-1 ");
    ASSERT_NE(pos, std::string::npos) << t.output;
    EXPECT_NEAR(std::stod(t.output.substr(pos + 24)), fp32_top1[k], 0.005);

    const fs::path q = out / ("model_int" + std::to_string(bits) + ".safetensors");
    ASSERT_TRUE(fs::exists(q));
    const auto q_size = fs::file_size(q), f_size = fs::file_size(fp32);
    EXPECT_NE(r.output.find("size: FP32 " + std::to_string(f_size) + " bytes -> " + label + " " +
                            std::to_string(q_size) + " bytes"),
              std::string::npos)
        << r.output;
    const double ratio = static_cast<double>(q_size) / static_cast<double>(f_size);
    EXPECT_GT(ratio, bits == 8 ? 0.25 : 0.50);
    EXPECT_LT(ratio, bits == 8 ? 0.28 : 0.53);
    const auto loaded = qslim::nn::load_tensors(q.string());
    EXPECT_EQ(loaded.metadata.at("format"), "qslim-int8");
    for (const auto& [name, tensor] : loaded.tensors) {
      if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
        EXPECT_EQ(tensor.dtype(), bits == 8 ? qslim::DType::I8 : qslim::DType::I16) << name;
      }
    }

    const nlohmann::json j = json_line(r.output);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.at("weight_bits").get<int>(), bits);
    EXPECT_NEAR(j.at("quant_top1").get<double>(), top1[k], 0.005);
    EXPECT_EQ(j.at("quant_bytes").get<int64_t>(), static_cast<int64_t>(q_size));
    EXPECT_EQ(j.at("test_samples").get<int64_t>(), 2048);

    // qslim eval runs the quantized file and the test model; both compute what was reported.
    auto e = run_cli("eval --checkpoint " + q.string() + " --limit 2048 --threads 2");
    ASSERT_EQ(e.status, 0) << e.output;
    EXPECT_NEAR(eval_top1(e.output), top1[k], 0.005) << e.output;
    auto et =
        run_cli("eval --checkpoint " + (out / "model_test_fp32.safetensors").string() + " --limit 2048 --threads 2");
    ASSERT_EQ(et.status, 0) << et.output;
    EXPECT_NEAR(eval_top1(et.output), top1[k], 0.005) << et.output;
    EXPECT_NEAR(percent_after(r.output, "test model \\(dequantized FP32 weights\\) top-1"), top1[k], 0.005);
  }
  EXPECT_GT(fp32_top1[0], 50.0);
  // 1 point = 20 of the 2048 images; weight-only INT8 keeps LeNet within a few decisions of FP32,
  // INT16 within one or two.
  EXPECT_NEAR(top1[0], fp32_top1[0], 1.0);
  EXPECT_NEAR(top1[1], fp32_top1[1], 0.1);
  // A quantized file is not an FP32 checkpoint.
  auto again = run_cli("dynamic --from " + (out / "model_int8.safetensors").string() + " --out " + out.string());
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("is a 'qslim-int8' file"), std::string::npos) << again.output;
  fs::remove_all(fp32_dir);
  fs::remove_all(out);
}

// --fp32-from-checkpoint quotes the figures qslim train recorded, but only for the test split they
// describe; otherwise (and without the flag) the FP32 model is evaluated. The recorded figures here
// are deliberately not the model's, so quoting and evaluating are told apart.
TEST(CliDynamic, Fp32FiguresFromTheCheckpointOnlyForTheSameTestSplit) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  const fs::path d = temp_dir("fp32_recorded");
  auto checkpoint = [&](const std::string& samples, const std::string& top1 = "98.760000") {
    qslim::manual_seed(4);
    auto model = qslim::models::create_model("lenet");
    const fs::path p = d / ("model_" + samples + "_" + top1 + ".safetensors");
    qslim::nn::save_module(p.string(), *model,
                           {{"format", "qslim-fp32"}, {"model", "lenet"}, {"dataset", "fashion-mnist"},
                            {"test_top1", top1}, {"test_top5", "99.990000"}, {"test_loss", "0.05"},
                            {"test_samples", samples}});
    return p.string();
  };
  const std::string garbled = checkpoint("10000", "high");
  auto bad = run_cli("dynamic --from " + garbled + " --fp32-from-checkpoint --threads 2 --out " + (d / "q").string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find(garbled + ": metadata test figures 'high'"), std::string::npos) << bad.output;
  const std::string full = checkpoint("10000"), other = checkpoint("9999");
  struct Case {
    std::string from, flags, source;
  };
  const Case cases[] = {{full, "--fp32-from-checkpoint", "checkpoint"},
                        {full, "", "evaluated"},
                        {other, "--fp32-from-checkpoint", "evaluated"},
                        {full, "--fp32-from-checkpoint --limit 1000", "evaluated"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.from + " " + c.flags);
    auto r = run_cli("dynamic --from " + c.from + " " + c.flags + " --threads 2 --json --out " + (d / "q").string());
    ASSERT_EQ(r.status, 0) << r.output;
    const nlohmann::json j = json_line(r.output);
    EXPECT_EQ(j.value("fp32_source", ""), c.source);
    const bool quoted = c.source == "checkpoint";
    EXPECT_EQ(r.output.find("recorded in the checkpoint by qslim train (10000 images)") != std::string::npos, quoted)
        << r.output;
    // An untrained LeNet is near chance, far from the 98.76 % written into the metadata.
    if (quoted) {
      EXPECT_DOUBLE_EQ(j.at("fp32_top1").get<double>(), 98.76);
      EXPECT_DOUBLE_EQ(j.at("fp32_top5").get<double>(), 99.99);
    } else {
      EXPECT_LT(j.at("fp32_top1").get<double>(), 50.0);
    }
    EXPECT_LT(j.at("quant_top1").get<double>(), 50.0);
  }
  fs::remove_all(d);
}
