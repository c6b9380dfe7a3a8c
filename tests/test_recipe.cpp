// Recipes and --dataset specs: parsing, type and unknown-key errors naming the file and key, the
// precedence defaults < recipe < flags, the shipped recipes, and the CLI's --recipe handling.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "core/error.h"
#include "core/factory.h"
#include "data/dataset.h"
#include "models/registry.h"
#include "nn/checkpoint.h"
#include "tests/support/cli_runner.h"
#include "tests/support/test_support.h"
#include "train/dataset_spec.h"
#include "train/recipe.h"

using namespace qslim;
using namespace qslim::train;
namespace fs = std::filesystem;

using qslim::testing::error_of;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("qslim_recipe_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

fs::path write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p;
}

fs::path source_dir() { return fs::path(__FILE__).parent_path().parent_path(); }

}  // namespace

TEST(Recipe, SetsEveryKindOfValue) {
  TrainConfig c;
  std::string notes;
  auto keys = apply_recipe_json(R"({"model": "lenet:num_classes=10", "epochs": 12, "batch_size": 64,
      "optimizer": "sgd", "lr": 0.1, "momentum": 0.85, "nesterov": true, "weight_decay": 1e-4,
      "schedule": "step", "warmup_epochs": 0.5, "step_size_epochs": 4, "gamma": 0.2, "label_smoothing": 0.1,
      "augment": true, "crop_padding": 4, "flip": false, "seed": 18446744073709551615, "mean": [0.5, 0.25, 0.125],
      "std": [1, 2, 4], "dataset": "cifar10:/data/c10", "notes": "about 3 min"})",
                                "r.json", c, &notes);
  EXPECT_EQ(keys.size(), 20u);
  EXPECT_EQ(notes, "about 3 min");
  EXPECT_EQ(c.model, "lenet:num_classes=10");
  EXPECT_EQ(c.epochs, 12);
  EXPECT_EQ(c.batch_size, 64);
  EXPECT_EQ(c.lr, 0.1);
  EXPECT_EQ(c.momentum, 0.85);
  EXPECT_TRUE(c.nesterov);
  EXPECT_EQ(c.weight_decay, 1e-4);
  EXPECT_EQ(c.schedule, "step");
  EXPECT_EQ(c.warmup_epochs, 0.5);
  EXPECT_EQ(c.step_size_epochs, 4);
  EXPECT_EQ(c.gamma, 0.2);
  EXPECT_EQ(c.label_smoothing, 0.1);
  EXPECT_TRUE(c.augment);
  EXPECT_EQ(c.crop_padding, 4);
  EXPECT_FALSE(c.flip);
  EXPECT_EQ(c.seed, UINT64_MAX);
  EXPECT_EQ(c.mean, (std::vector<float>{0.5f, 0.25f, 0.125f}));
  EXPECT_EQ(c.std, (std::vector<float>{1, 2, 4}));
  EXPECT_EQ(c.dataset, "cifar10:/data/c10");
}

TEST(Recipe, UnknownKeyNamesFileKeyAndAllowedKeys) {
  fs::path d = temp_dir("unknown");
  fs::path f = write_file(d / "typo.json", R"({"epochs": 3, "learning_rate": 0.1})");
  TrainConfig c;
  std::string e = error_of([&] { apply_recipe_file(f.string(), c); });
  EXPECT_NE(e.find(f.string()), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'learning_rate'"), std::string::npos) << e;
  EXPECT_NE(e.find("allowed: model, dataset, epochs, epoch_fraction, batch_size, optimizer, lr,"), std::string::npos) << e;
  EXPECT_NE(e.find("notes"), std::string::npos) << e;
  EXPECT_EQ(c.epochs, TrainConfig{}.epochs);  // a failed recipe changes nothing
  fs::remove_all(d);
}

TEST(Recipe, TypeAndValueErrorsNameFileAndKey) {
  TrainConfig c;
  std::string e = error_of([&] { apply_recipe_json(R"({"lr": "fast"})", "a.json", c); });
  EXPECT_NE(e.find("a.json: key 'lr' must be a number, got \"fast\""), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"epochs": 2.5})", "a.json", c); });
  EXPECT_NE(e.find("key 'epochs' must be an integer"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"nesterov": 1})", "a.json", c); });
  EXPECT_NE(e.find("key 'nesterov' must be true or false"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"seed": -1})", "a.json", c); });
  EXPECT_NE(e.find("key 'seed' must be a non-negative integer"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"mean": []})", "a.json", c); });
  EXPECT_NE(e.find("key 'mean' must be a non-empty array of numbers"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"optimizer": "rmsprop"})", "b.json", c); });
  EXPECT_NE(e.find("b.json: unknown optimizer 'rmsprop' (allowed: sgd, adam, adamw)"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"epochs": 0})", "b.json", c); });
  EXPECT_NE(e.find("b.json: epochs must be >= 1"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"mean": [0.5, 0.5], "std": [0.2]})", "b.json", c); });
  EXPECT_NE(e.find("b.json: normalisation mean has 2 values and std has 1"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"([1, 2])", "c.json", c); });
  EXPECT_NE(e.find("c.json: a recipe must be a JSON object"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_json(R"({"epochs": 3,})", "d.json", c); });
  EXPECT_NE(e.find("d.json: not valid JSON"), std::string::npos) << e;
  e = error_of([&] { apply_recipe_file("/nonexistent/r.json", c); });
  EXPECT_NE(e.find("/nonexistent/r.json: cannot open"), std::string::npos) << e;
}

TEST(Recipe, FlagsOverrideRecipeWhichOverridesDefaults) {
  fs::path d = temp_dir("precedence");
  fs::path f = write_file(d / "r.json", R"({"epochs": 7, "lr": 0.2, "nesterov": true, "notes": "n"})");
  TrainConfig defaults;
  ResolvedConfig r = resolve_config(defaults, f.string(), {{"lr", "0.01"}, {"nesterov", "false"}, {"seed", "9"}});
  EXPECT_EQ(r.config.epochs, 7);             // recipe over default
  EXPECT_EQ(r.config.lr, 0.01);              // flag over recipe
  EXPECT_FALSE(r.config.nesterov);           // flag over recipe
  EXPECT_EQ(r.config.seed, 9u);              // flag over default
  EXPECT_EQ(r.config.batch_size, defaults.batch_size);  // untouched default
  EXPECT_EQ(r.set_keys, (std::set<std::string>{"epochs", "lr", "nesterov", "seed"}));
  EXPECT_EQ(r.notes, "n");
  // The last of several overrides of one key wins.
  EXPECT_EQ(resolve_config(defaults, "", {{"epochs", "3"}, {"epochs", "4"}}).config.epochs, 4);
  // A bad flag value names the flag.
  std::string e = error_of([&] { resolve_config(defaults, f.string(), {{"batch_size", "big"}}); });
  EXPECT_NE(e.find("--batch-size: 'big' for batch_size is not an integer"), std::string::npos) << e;
  e = error_of([&] { resolve_config(defaults, "", {{"warmup_epochs", "20"}}); });
  EXPECT_NE(e.find("warmup epochs must be in [0, epochs = 10)"), std::string::npos) << e;
  fs::remove_all(d);
}

TEST(Recipe, SettingsFromText) {
  TrainConfig c;
  for (const char* t : {"true", "1", "yes", "on"}) {
    c.augment = false;
    apply_setting("augment", t, "--augment", c);
    EXPECT_TRUE(c.augment) << t;
  }
  apply_setting("augment", "off", "--augment", c);
  EXPECT_FALSE(c.augment);
  apply_setting("mean", "0.4914,0.4822,0.4465", "--mean", c);
  EXPECT_EQ(c.mean, (std::vector<float>{0.4914f, 0.4822f, 0.4465f}));
  apply_setting("seed", "18446744073709551615", "--seed", c);
  EXPECT_EQ(c.seed, UINT64_MAX);
  EXPECT_NE(error_of([&] { apply_setting("seed", "-3", "--seed", c); }).find("is not a non-negative integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_setting("lr", "0.1x", "--lr", c); }).find("--lr: '0.1x' for lr is not a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_setting("augment", "maybe", "--augment", c); }).find("is not true or false"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_setting("mean", "0.1,,0.2", "--mean", c); }).find("is not a non-empty array"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_setting("epochs", "99999999999", "--epochs", c); }).find("out of range"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_setting("colour", "red", "--colour", c); }).find("unknown key 'colour'"),
            std::string::npos);
}

TEST(Recipe, ConfigJsonRoundTripsExactly) {
  TrainConfig c;
  c.model = "resnet20:width=8";
  c.dataset = "folder:/x:size=32,gray";
  c.epochs = 3;
  c.lr = 0.1 / 3;  // not exactly representable in short decimal
  c.weight_decay = 5e-4;
  c.nesterov = true;
  c.seed = 1234567890123ull;
  c.mean = {0.1234567f};
  c.std = {0.7654321f};
  c.out_dir = "/not/recorded";
  TrainConfig back;
  apply_recipe_json(config_to_json(c), "round trip", back);
  EXPECT_EQ(config_to_json(back), config_to_json(c));
  EXPECT_EQ(back.lr, c.lr);
  EXPECT_EQ(back.mean, c.mean);
  EXPECT_EQ(back.seed, c.seed);
  EXPECT_EQ(back.out_dir, "");  // run settings are not part of the configuration
  auto keys = nlohmann::json::parse(config_to_json(c));
  EXPECT_EQ(keys.size() + 1, recipe_keys().size());  // every key but "notes"
}

TEST(DatasetSpec, ParsesEveryForm) {
  EXPECT_EQ(DatasetSpec::parse("fashion-mnist"), (DatasetSpec{"fashion-mnist", "", 0, false}));
  EXPECT_EQ(DatasetSpec::parse("fashion-mnist:/d/fm"), (DatasetSpec{"fashion-mnist", "/d/fm", 0, false}));
  EXPECT_EQ(DatasetSpec::parse("cifar10:/d/c10"), (DatasetSpec{"cifar10", "/d/c10", 0, false}));
  EXPECT_EQ(DatasetSpec::parse("cifar100:rel/c100"), (DatasetSpec{"cifar100", "rel/c100", 0, false}));
  EXPECT_EQ(DatasetSpec::parse("folder:/d/f"), (DatasetSpec{"folder", "/d/f", 0, false}));
  EXPECT_EQ(DatasetSpec::parse("folder:/d/f:size=32"), (DatasetSpec{"folder", "/d/f", 32, false}));
  EXPECT_EQ(DatasetSpec::parse("folder:/d/f:gray"), (DatasetSpec{"folder", "/d/f", 0, true}));
  EXPECT_EQ(DatasetSpec::parse("folder:/d/f:size=64,gray"), (DatasetSpec{"folder", "/d/f", 64, true}));
  for (const char* t : {"fashion-mnist", "fashion-mnist:/a", "cifar10:/a", "folder:/a", "folder:/a:size=32",
                        "folder:/a:gray", "folder:/a:size=28,gray"})
    EXPECT_EQ(DatasetSpec::parse(DatasetSpec::parse(t).str()), DatasetSpec::parse(t)) << t;
}

TEST(DatasetSpec, ErrorsListTheAllowedForms) {
  const std::string allowed = "allowed: fashion-mnist, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, folder:DIR";
  for (const char* bad : {"mnist", "cifar10", "cifar100:", "folder", "folder::size=3", "", "imagenet:/d"}) {
    std::string e = error_of([&] { DatasetSpec::parse(bad); });
    EXPECT_NE(e.find(std::string("dataset '") + bad + "'"), std::string::npos) << e;
    EXPECT_NE(e.find(allowed), std::string::npos) << e;
  }
  EXPECT_NE(error_of([] { DatasetSpec::parse("mnist"); }).find("unknown dataset 'mnist'"), std::string::npos);
  EXPECT_NE(error_of([] { DatasetSpec::parse("folder:/d:size=0"); }).find("size must be an integer in [1, 4096]"),
            std::string::npos);
  EXPECT_NE(error_of([] { DatasetSpec::parse("folder:/d:size=32,grey"); }).find("unknown folder option 'grey'"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_dataset(DatasetSpec::parse("cifar10:/nonexistent/c10")); }).find("/nonexistent/c10"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_dataset(DatasetSpec::parse("folder:/nonexistent/f")); }).find("/nonexistent/f"),
            std::string::npos);
}

TEST(DatasetSpec, ModelSpecGetsTheDataShape) {
  LoadedData fm;
  fm.channels = 1, fm.height = fm.width = 28, fm.num_classes = 10;
  EXPECT_EQ(model_spec_for("lenet", fm), "lenet");
  LoadedData c100;
  c100.channels = 3, c100.height = c100.width = 32, c100.num_classes = 100;
  EXPECT_EQ(model_spec_for("resnet20", c100), "resnet20:in_channels=3,num_classes=100,image_size=32");
  EXPECT_EQ(model_spec_for("resnet20:", c100), "resnet20:in_channels=3,num_classes=100,image_size=32");
  EXPECT_EQ(model_spec_for("resnet20:width=8", c100), "resnet20:width=8,in_channels=3,num_classes=100,image_size=32");
  EXPECT_EQ(model_spec_for("lenet:num_classes=100,in_channels=3,image_size=32", c100),
            "lenet:num_classes=100,in_channels=3,image_size=32");
  LoadedData wide = c100;
  wide.width = 48;
  EXPECT_NE(error_of([&] { model_spec_for("lenet", wide); }).find("32 x 48"), std::string::npos);
}

TEST(DatasetSpec, ChannelStatisticsMatchADirectComputation) {
  // Two images of 2 channels, 2x2 pixels: values chosen so the answer is known exactly.
  std::vector<uint8_t> px = {0, 255, 0, 255, 10, 10, 10, 10,  //
                             255, 0, 255, 0, 20, 20, 20, 20};
  Tensor images = from_vector(px, {2, 2, 2, 2});
  Tensor labels = from_vector(std::vector<int64_t>{0, 1}, {2});
  data::TensorDataset ds(images, labels);
  std::vector<float> mean, std;
  channel_mean_std(ds, mean, std);
  ASSERT_EQ(mean.size(), 2u);
  EXPECT_NEAR(mean[0], 0.5, 1e-6);
  EXPECT_NEAR(std[0], 0.5, 1e-6);
  EXPECT_NEAR(mean[1], 15.0 / 255, 1e-6);
  EXPECT_NEAR(std[1], 5.0 / 255, 1e-6);
}

TEST(Recipe, EveryZooModelHasARecipeThatParses) {
  // One training recipe per zoo model (recipes/ also holds quantization recipes of another format).
  const fs::path dir = source_dir() / "recipes";
  ASSERT_GE(models::model_registry().size(), 19u);
  for (const models::ModelInfo& info : models::model_registry()) {
    const std::string& name = info.name;
    const fs::path path = dir / (name + ".json");
    ASSERT_TRUE(fs::is_regular_file(path)) << path;
    TrainConfig c;
    std::string notes;
    ASSERT_NO_THROW(apply_recipe_file(path.string(), c, &notes)) << path;
    EXPECT_NE(notes.find("min"), std::string::npos) << path << ": notes should estimate the minutes";
    EXPECT_EQ(DatasetSpec::parse(c.dataset).kind, "fashion-mnist") << path;
    EXPECT_EQ(models::ModelArgs::parse(c.model).name(), name) << path << " is named after its model";
    EXPECT_NO_THROW(models::create_model(c.model)) << path;
  }
}

TEST(RecipeCli, UnknownKeyIsAOneLineError) {
  fs::path d = temp_dir("cli_unknown");
  fs::path f = write_file(d / "bad.json", R"({"model": "lenet", "epocs": 2})");
  auto r = qslim::testing::run_cli("train --recipe " + f.string() + " --limit 64");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find(f.string() + ": unknown key 'epocs' (allowed: "), std::string::npos) << r.output;
  fs::remove_all(d);
}

TEST(RecipeCli, FlagsOverrideTheRecipe) {
  ASSERT_FALSE(qslim::testing::fashion_mnist_dir().empty()) << "Fashion-MNIST not installed";
  fs::path d = temp_dir("cli_override");
  fs::path f = write_file(d / "r.json", R"({"model": "lenet", "epochs": 5, "batch_size": 32, "lr": 0.02,
      "augment": true, "notes": "a test recipe"})");
  auto r = qslim::testing::run_cli("train --recipe " + f.string() + " --epochs 1 --batch-size 64 --no-augment " +
                                   "--limit 256 --threads 2 --json --out " + (d / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("a test recipe"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 epochs, batch 64, sgd lr 0.02"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("after 1 epochs"), std::string::npos) << r.output;
  // The configuration recorded in the training state is the merged one.
  std::ifstream log(d / "run" / "metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) ++lines;
  EXPECT_EQ(lines, 1);
  auto json_line = r.output.substr(r.output.find("{\"checkpoint\""));
  auto j = nlohmann::json::parse(json_line.substr(0, json_line.find('\n')));
  EXPECT_EQ(j["epochs"], 1);
  EXPECT_EQ(j["model"], "lenet");
  fs::remove_all(d);
}

namespace {
// A tiny CIFAR-10 binary distribution: `per_file` records per file; image i of a file has label
// i % 10 and constant planes R = 10 * label, G = 100, B = 200 * (i % 2).
void write_cifar10(const fs::path& dir, int per_file) {
  fs::create_directories(dir);
  auto write = [&](const std::string& name) {
    std::ofstream f(dir / name, std::ios::binary);
    for (int i = 0; i < per_file; ++i) {
      const uint8_t label = static_cast<uint8_t>(i % 10);
      f.put(static_cast<char>(label));
      for (uint8_t v : {static_cast<uint8_t>(10 * label), uint8_t{100}, static_cast<uint8_t>(200 * (i % 2))})
        for (int p = 0; p < 1024; ++p) f.put(static_cast<char>(v));
    }
  };
  for (int b = 1; b <= 5; ++b) write("data_batch_" + std::to_string(b) + ".bin");
  write("test_batch.bin");
}
}  // namespace

TEST(DatasetCli, Cifar10FeedsModelSpecAndNormalisation) {
  fs::path d = temp_dir("cifar");
  write_cifar10(d / "c10", 20);
  auto r = qslim::testing::run_cli("train --dataset cifar10:" + (d / "c10").string() +
                                   " --model lenet --epochs 1 --batch-size 20 --threads 2 --out " + (d / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("training lenet:in_channels=3,image_size=32 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CIFAR-10"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("100 train / 20 test images"), std::string::npos) << r.output;
  auto file = nn::load_tensors((d / "run" / "model.safetensors").string());
  EXPECT_EQ(file.metadata.at("model"), "lenet:in_channels=3,image_size=32");
  EXPECT_EQ(file.metadata.at("dataset"), "cifar10:" + (d / "c10").string());
  // Per channel over the 100 training images: R = 10 * label with labels 0..9 equally often, G = 100,
  // B alternating 0 / 200.
  auto mean = nlohmann::json::parse(file.metadata.at("mean")).get<std::vector<double>>();
  auto sd = nlohmann::json::parse(file.metadata.at("std")).get<std::vector<double>>();
  ASSERT_EQ(mean.size(), 3u);
  ASSERT_EQ(sd.size(), 3u);
  EXPECT_NEAR(mean[0], 45.0 / 255, 1e-6);
  EXPECT_NEAR(sd[0], std::sqrt(825.0) / 255, 1e-6);  // variance of 10 * {0..9} is 100 * 8.25
  EXPECT_NEAR(mean[1], 100.0 / 255, 1e-6);
  EXPECT_NEAR(sd[1], 1.0, 1e-6);  // a constant channel is left unscaled
  EXPECT_NEAR(mean[2], 100.0 / 255, 1e-6);
  EXPECT_NEAR(sd[2], 100.0 / 255, 1e-6);
  // eval finds the dataset and statistics in the checkpoint.
  auto e = qslim::testing::run_cli("eval --checkpoint " + (d / "run" / "model.safetensors").string() + " --json");
  ASSERT_EQ(e.status, 0) << e.output;
  auto j = nlohmann::json::parse(e.output.substr(e.output.find('{')));
  EXPECT_EQ(j["samples"], 20);
  EXPECT_EQ(j["dataset"], "cifar10:" + (d / "c10").string());
  // A model without image_size is given only what it takes.
  EXPECT_EQ(resolve_model_spec("resnet8", load_dataset(DatasetSpec::parse("cifar10:" + (d / "c10").string()), 10)),
            "resnet8:in_channels=3");
  fs::remove_all(d);
}

TEST(DatasetCli, ImageFolderResizedToGray) {
  fs::path d = temp_dir("folder");
  // 2 classes of 8x6 RGB images: "dark" pixels (10, 20, 30), "light" pixels (200, 210, 220).
  for (const char* split : {"train", "test"})
    for (const auto& [cls, v] : {std::pair<const char*, int>{"dark", 10}, {"light", 200}}) {
      fs::create_directories(d / "f" / split / cls);
      std::vector<uint8_t> px;
      for (int i = 0; i < 8 * 6; ++i)
        for (int c = 0; c < 3; ++c) px.push_back(static_cast<uint8_t>(v + 10 * c));
      for (int k = 0; k < 4; ++k) {
        const std::string path = (d / "f" / split / cls / ("im" + std::to_string(k) + ".png")).string();
        ASSERT_TRUE(stbi_write_png(path.c_str(), 8, 6, 3, px.data(), 8 * 3)) << path;
      }
    }
  const std::string spec = "folder:" + (d / "f").string() + ":size=12,gray";
  auto r = qslim::testing::run_cli("train --dataset " + spec + " --model lenet --epochs 1 --batch-size 4 --threads 2 " +
                                   "--out " + (d / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("training lenet:num_classes=2,image_size=12 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("8 train / 8 test images"), std::string::npos) << r.output;
  auto file = nn::load_tensors((d / "run" / "model.safetensors").string());
  auto mean = nlohmann::json::parse(file.metadata.at("mean")).get<std::vector<double>>();
  ASSERT_EQ(mean.size(), 1u);  // one gray channel
  // BT.601 luma of the two colours, equally often: (18 + 208) / 2 after rounding.
  EXPECT_NEAR(mean[0] * 255, (18.0 + 208.0) / 2, 1.01);
  auto e = qslim::testing::run_cli("eval --checkpoint " + (d / "run" / "model.safetensors").string());
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_NE(e.output.find("on 8 images"), std::string::npos) << e.output;
  fs::remove_all(d);
}
