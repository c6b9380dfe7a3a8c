// `qslim qat` end to end: a short LeNet training run, QAT fine-tuning with the default recipe, the
// converted INT8 file (size, accuracy, reload) and the errors for bad recipes and wrong files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "core/random.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "quant/qat.h"
#include "quant/quantized_io.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"

using qslim::testing::run_cli;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_cli_qat_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// <source>/recipes: CTest sets QSLIM_TEST_DATA to <source>/tests/data; a test binary run by hand from
// a build directory inside the source tree finds it by walking up.
fs::path recipes_dir() {
  if (const char* env = std::getenv("QSLIM_TEST_DATA"); env && *env) {
    fs::path data = fs::path(env).lexically_normal();
    if (!data.has_filename()) data = data.parent_path();
    return data.parent_path().parent_path() / "recipes";
  }
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "recipes" / "qat_default.json")) return p / "recipes";
    if (p == p.parent_path()) break;
  }
  return {};
}

fs::path recipe(const std::string& name) {
  fs::path dir = recipes_dir();
  EXPECT_FALSE(dir.empty()) << "recipes/ not found: set QSLIM_TEST_DATA=<source>/tests/data";
  return dir / name;
}

fs::path write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

// The percentage after `label` on its own output line, e.g. "FP32 top-1 81.25%".
double percent_after(const std::string& out, const std::string& label) {
  std::smatch m;
  std::regex re("(^|\\n)" + label + " (-?[0-9]+\\.[0-9]{2})%");
  if (!std::regex_search(out, m, re)) {
    ADD_FAILURE() << "no line '" << label << " xx.xx%' in:\n" << out;
    return -1;
  }
  return std::stod(m[2].str());
}

}  // namespace

TEST(CliQat, EveryQatRecipeIsValid) {
  // A valid recipe is read before the checkpoint, so the run stops at the missing checkpoint.
  const fs::path dir = recipes_dir();
  ASSERT_FALSE(dir.empty());
  int seen = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("qat_", 0) != 0 || e.path().extension() != ".json") continue;
    ++seen;
    auto r = run_cli("qat --from /nonexistent/fp32.safetensors --config " + e.path().string() + " --out /tmp/unused");
    EXPECT_EQ(r.status, 1) << name;
    EXPECT_NE(r.output.find("/nonexistent/fp32.safetensors"), std::string::npos) << name << ":\n" << r.output;
    EXPECT_EQ(r.output.find(name), std::string::npos) << "recipe " << name << " rejected:\n" << r.output;
  }
  EXPECT_GE(seen, 6);
}

TEST(CliQat, UnknownRecipeKeysAreNamed) {
  fs::path d = temp_dir("keys");
  struct Case {
    std::string text, key;
  };
  const std::vector<Case> cases = {
      {R"({"quant": {}, "epochs": 1})", "'epochs'"},                         // top level
      {R"({"quant": {}, "train": {"epochs": 1, "lrate": 0.1}})", "'lrate'"},  // train
      {R"({"quant": {}, "train": {"model": "resnet20"}})", "'model'"},        // fixed by the checkpoint
      {R"({"quant": {"weight_bitz": 8}})", "weight_bitz"},                    // quant
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    fs::path f = write_file(d / ("bad" + std::to_string(i) + ".json"), cases[i].text);
    auto r = run_cli("qat --from /nonexistent/fp32.safetensors --config " + f.string() + " --out " + d.string());
    EXPECT_EQ(r.status, 1) << cases[i].text;
    EXPECT_NE(r.output.find(cases[i].key), std::string::npos) << cases[i].text << ":\n" << r.output;
    EXPECT_NE(r.output.find(f.string()), std::string::npos) << cases[i].text << ":\n" << r.output;
  }
  auto r = run_cli("qat --from /nonexistent/fp32.safetensors --config " + (d / "missing.json").string() +
                   " --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find((d / "missing.json").string()), std::string::npos) << r.output;
  fs::remove_all(d);
}

TEST(CliQat, MissingCheckpointNamesTheFile) {
  fs::path d = temp_dir("missing");
  auto r = run_cli("qat --from " + (d / "none.safetensors").string() + " --config " +
                   recipe("qat_default.json").string() + " --out " + d.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find((d / "none.safetensors").string()), std::string::npos) << r.output;
  fs::remove_all(d);
}

// Checks of one `qslim qat` run on the checkpoint of one `qslim train` run.
struct QatRun {
  fs::path fp32, int8, recipe;
  std::string train_out, out;
};

void check_result_lines(const QatRun& r) {
  const double fp32_top1 = percent_after(r.out, "FP32 top-1");
  const double qat_top1 = percent_after(r.out, "QAT \\(simulated\\) top-1");
  const double int8_top1 = percent_after(r.out, "INT8 \\(converted\\) top-1");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.out, m, std::regex("\\nINT8 \\(converted\\) top-1 [0-9.]+%  \\(diff vs FP32 ([-+][0-9]+\\.[0-9]{2})\\)\\n")))
      << r.out;
  EXPECT_NEAR(std::stod(m[1].str()), int8_top1 - fp32_top1, 0.0101);
  // FP32 is the training run's final accuracy: same weights, same 2048 test images.
  auto pos = r.train_out.find("final: lenet test top-1 ");
  ASSERT_NE(pos, std::string::npos) << r.train_out;
  EXPECT_NEAR(std::stod(r.train_out.substr(pos + 24)), fp32_top1, 0.005) << r.train_out << r.out;
  EXPECT_NE(r.out.find("quantizing conv1, conv2, fc1, fc2, fc3\n"), std::string::npos) << r.out;

  EXPECT_GT(fp32_top1, 50.0);
  // One epoch at lr 0.005 only refines the network (it may even gain: the FP32 model is undertrained),
  // and the reloaded INT8 file computes what the simulation did up to a few flipped decisions
  // (1 point = 20 of the 2048 test images).
  EXPECT_GT(qat_top1, fp32_top1 - 5.0);
  EXPECT_NEAR(int8_top1, qat_top1, 1.0);
  EXPECT_GT(int8_top1, fp32_top1 - 5.0);
}

void check_int8_file(const QatRun& r) {
  ASSERT_TRUE(fs::exists(r.int8));
  auto q = qslim::nn::load_tensors(r.int8.string());
  auto f = qslim::nn::load_tensors(r.fp32.string());
  EXPECT_EQ(q.metadata.at("format"), "qslim-int8");
  EXPECT_EQ(q.metadata.at("model"), "lenet");
  size_t q_bytes = 0, f_bytes = 0;
  int weights = 0;
  for (const auto& [name, t] : q.tensors) {
    q_bytes += t.nbytes();
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      ++weights;
      EXPECT_EQ(t.dtype(), qslim::DType::I8) << name;
    }
  }
  EXPECT_EQ(weights, 5);
  for (const auto& [name, t] : f.tensors) f_bytes += t.nbytes();
  // LeNet-5 holds 61,470 weights and 236 biases: 246,824 bytes in f32. Converted: 61,470 int8
  // weights, 236 f32 biases, 236 f32 per-channel steps and a step and zero point per layer input =
  // 63,398 bytes, 0.257x. A weight kept in 16 or 32 bits would add >= 0.04x.
  const double payload_ratio = static_cast<double>(q_bytes) / static_cast<double>(f_bytes);
  EXPECT_LT(payload_ratio, 0.26) << q_bytes << " vs " << f_bytes;
  EXPECT_GT(payload_ratio, 0.25) << q_bytes << " vs " << f_bytes;
  // The whole file adds the header, whose metadata holds every step s, zero point z and threshold T
  // as JSON text (QUANT_SPEC §8): ~30 bytes per channel, 236 channels, ~7 KiB, which is 0.03x only
  // because LeNet is tiny (measured 0.298x; negligible for larger networks).
  const auto int8_size = fs::file_size(r.int8), fp32_size = fs::file_size(r.fp32);
  EXPECT_LT(static_cast<double>(int8_size) / static_cast<double>(fp32_size), 0.32) << int8_size << " vs " << fp32_size;
  EXPECT_NE(r.out.find("size: FP32 " + std::to_string(fp32_size) + " bytes -> INT8 " + std::to_string(int8_size) +
                       " bytes"),
            std::string::npos)
      << r.out;
}

void check_json_line(const QatRun& r) {
  nlohmann::json j;
  for (size_t b = 0, e; b < r.out.size(); b = e + 1) {
    e = r.out.find('\n', b);
    if (e == std::string::npos) e = r.out.size();
    if (r.out.compare(b, 2, "{\"") == 0) j = nlohmann::json::parse(r.out.substr(b, e - b));
  }
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_NEAR(j.at("fp32_top1").get<double>(), percent_after(r.out, "FP32 top-1"), 0.005);
  EXPECT_NEAR(j.at("qat_top1").get<double>(), percent_after(r.out, "QAT \\(simulated\\) top-1"), 0.005);
  EXPECT_NEAR(j.at("int8_top1").get<double>(), percent_after(r.out, "INT8 \\(converted\\) top-1"), 0.005);
  EXPECT_EQ(j.at("int8_bytes").get<int64_t>(), static_cast<int64_t>(fs::file_size(r.int8)));
  EXPECT_EQ(j.at("fp32_bytes").get<int64_t>(), static_cast<int64_t>(fs::file_size(r.fp32)));
  EXPECT_EQ(j.at("test_samples").get<int64_t>(), 2048);
  EXPECT_EQ(j.at("epochs").get<int>(), 1);
  EXPECT_EQ(j.at("batch_size").get<int>(), 32);
  EXPECT_EQ(j.at("quant").at("weight_quantize_type"), "channel_wise_abs_max");
  EXPECT_EQ(j.at("int8_model").get<std::string>(), r.int8.string());
}

void check_qat_refuses_converted(const QatRun& r) {
  auto again = run_cli("qat --from " + r.int8.string() + " --config " + r.recipe.string() + " --out " +
                       r.int8.parent_path().string());
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find(r.int8.string() + " is a 'qslim-int8' file"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("FP32 model checkpoint"), std::string::npos) << again.output;
}

// One process for the slow part (a training run and a QAT run); ctest runs each TEST in its own.
TEST(CliQat, TrainQatConvertReload) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path fp32_dir = temp_dir("fp32"), int8_dir = temp_dir("int8");
  QatRun r{fp32_dir / "model.safetensors", int8_dir / "model_int8.safetensors", recipe("qat_default.json"), "", ""};
  // Batch 32: 64 steps reach ~65% on this slice, where 32 steps of 64 leave LeNet near 40%.
  auto t = run_cli("train --model lenet --epochs 1 --limit 2048 --batch-size 32 --threads 2 --out " +
                   fp32_dir.string());
  ASSERT_EQ(t.status, 0) << t.output;
  r.train_out = t.output;
  auto q = run_cli("qat --from " + r.fp32.string() + " --config " + r.recipe.string() +
                   " --epochs 1 --limit 2048 --batch-size 32 --threads 2 --json --out " + int8_dir.string());
  ASSERT_EQ(q.status, 0) << q.output;
  r.out = q.output;
  {
    SCOPED_TRACE("result lines");
    check_result_lines(r);
  }
  {
    SCOPED_TRACE("INT8 file");
    check_int8_file(r);
  }
  {
    SCOPED_TRACE("--json");
    check_json_line(r);
  }
  {
    SCOPED_TRACE("qat --from a converted file");
    check_qat_refuses_converted(r);
  }
  fs::remove_all(fp32_dir);
  fs::remove_all(int8_dir);
}

// The float evaluator must say the file is a converted INT8 model rather than list mismatching
// tensors (quantized_io.h: "a float loader must refuse such a file"). The file is made in-process:
// a LeNet with one calibrating forward, converted and saved.
TEST(CliQat, EvalRunsAConvertedFileOnTheSimulatedPath) {
  fs::path d = temp_dir("eval");
  const fs::path file = d / "model_int8.safetensors";
  {
    qslim::manual_seed(3);
    auto model = qslim::models::create_model("lenet");
    qslim::quant::QuantConfig config;
    qslim::quant::quant_aware(*model, config);
    model->train();
    {
      qslim::NoGradGuard no_grad;
      (*model)(qslim::randn({4, 1, 28, 28}));
    }
    qslim::quant::convert(*model);
    qslim::quant::save_converted(file.string(), *model, config, "lenet");
  }
  auto r = run_cli("eval --checkpoint " + file.string() + " --limit 256");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("INT8 converted, simulated path"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("on 256 images"), std::string::npos) << r.output;
  // The file says which network it holds; another spec cannot reinterpret its integer tensors.
  auto wrong = run_cli("eval --checkpoint " + file.string() + " --model resnet20 --limit 16");
  EXPECT_EQ(wrong.status, 1) << wrong.output;
  EXPECT_NE(wrong.output.find(file.string()), std::string::npos) << wrong.output;
  EXPECT_NE(wrong.output.find("qslim-int8"), std::string::npos) << wrong.output;
  fs::remove_all(d);
}
