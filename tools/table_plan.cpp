#include "tools/table_plan.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"

namespace qslim::tools {

namespace {

std::vector<TableMethod> build_methods() {
  std::vector<TableMethod> m;
  const std::vector<std::pair<std::string, std::string>> algos = {{"abs_max", "abs_max"}, {"avg", "avg"},
                                                                  {"hist", "hist"},       {"KL", "KL"},
                                                                  {"mse", "mse"},         {"emd", "emd"}};
  struct Bits {
    const char *tag, *label, *family;
    int w, a;
  };
  const Bits bits[] = {{"w8a8", "W8A8", "ptq_w8a8", 8, 8}, {"w6a6", "W6A6", "ptq_low", 6, 6},
                       {"w4a8", "W4A8", "ptq_low", 4, 8}};
  for (const Bits& b : bits)
    for (bool bc : {false, true})
      for (const auto& [algo, label] : algos) {
        std::string id = "ptq_" + algo + "_" + b.tag + (bc ? "_bc" : "");
        std::transform(id.begin(), id.end(), id.begin(), ::tolower);
        std::vector<std::string> args = {"--algo", algo, "--weight-bits", std::to_string(b.w), "--activation-bits",
                                         std::to_string(b.a)};
        if (bc) args.push_back("--bias-correction");
        m.push_back({id, b.family, "PTQ " + label + " " + b.label + (bc ? " + BC" : ""), "ptq", args, 0.15});
      }
  m.push_back({"ptq_mse_w4a8_adaround_bc", "ptq_low", "PTQ mse W4A8 + AdaRound + BC", "ptq",
               {"--algo", "mse", "--weight-bits", "4", "--activation-bits", "8", "--round-type", "adaround",
                "--bias-correction"},
               1.0});
  const std::pair<const char*, const char*> qat[] = {
      {"qat_default", "qat_default.json"},   {"qat_pact", "qat_pact.json"},
      {"qat_lsq_w8a8", "qat_lsq_w8a8.json"}, {"qat_lsq_w4a8", "qat_lsq_w4a8.json"},
      {"qat_default_w4a4", "qat_default_w4a4.json"}, {"qat_pact_w4a4", "qat_pact_w4a4.json"},
      {"qat_lsq_w4a4", "qat_lsq_w4a4.json"}};
  const std::pair<const char*, const char*> qat_labels[] = {
      {"qat_default", "QAT (PaddleSlim default) W8A8"}, {"qat_pact", "PACT QAT W8A8"},
      {"qat_lsq_w8a8", "LSQ+ W8A8"},                    {"qat_lsq_w4a8", "LSQ+ W4A8"},
      {"qat_default_w4a4", "QAT (default) W4A4"},       {"qat_pact_w4a4", "PACT QAT W4A4"},
      {"qat_lsq_w4a4", "LSQ+ W4A4"}};
  for (size_t i = 0; i < std::size(qat); ++i)
    m.push_back({qat[i].first, "qat", qat_labels[i].second, "qat", {"--config", std::string("@recipes/") + qat[i].second},
                 1.0});
  // The control for QAT: the same fine-tuning (recipes/qat_default.json's schedule) without
  // quantization, which separates what quantization costs from what the extra training gives.
  m.push_back({"fp32_finetune", "qat", "FP32 fine-tune (control: QAT's schedule, no quantization)", "train",
               {"--epochs", "1", "--lr", "0.005", "--momentum", "0.9", "--weight-decay", "0", "--schedule", "cosine",
                "--optimizer", "sgd", "--batch-size", "128", "--warmup-epochs", "0", "--label-smoothing", "0",
                "--no-nesterov", "--no-augment"},
               0.8});
  m.push_back({"dynamic_int8", "dynamic", "Dynamic INT8 (weight-only)", "dynamic", {"--weight-bits", "8"}, 0.1});
  m.push_back({"dynamic_int16", "dynamic", "Dynamic INT16 (weight-only)", "dynamic", {"--weight-bits", "16"}, 0.1});
  return m;
}

std::string allowed() {
  std::string s = "all";
  for (const auto& [f, t] : table_families()) s += ", " + f;
  for (const TableMethod& m : table_methods()) s += ", " + m.id;
  return s;
}

}  // namespace

const std::vector<TableMethod>& table_methods() {
  static const std::vector<TableMethod> m = build_methods();
  return m;
}

const std::vector<std::pair<std::string, std::string>>& table_families() {
  static const std::vector<std::pair<std::string, std::string>> f = {
      {"ptq_w8a8", "Post-training quantization, W8A8 (quant_post_static)"},
      {"ptq_low", "Post-training quantization, low bits (W6A6, W4A8)"},
      {"qat", "Quantization-aware training (quant_aware, PACT, LSQ+)"},
      {"dynamic", "Weight-only dynamic quantization (quant_post_dynamic)"}};
  return f;
}

const TableMethod& table_method(const std::string& id) {
  for (const TableMethod& m : table_methods())
    if (m.id == id) return m;
  QSLIM_FAIL("table: unknown method '", id, "'; allowed: ", allowed());
}

std::vector<std::string> expand_methods(const std::string& list) {
  std::vector<std::string> wanted;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    std::string lower = item;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    bool found = false;
    for (const TableMethod& m : table_methods())
      if (lower == "all" || m.family == lower || m.id == lower) wanted.push_back(m.id), found = true;
    QSLIM_CHECK(found, "table: unknown method '", item, "'; allowed: ", allowed());
  }
  QSLIM_CHECK(!wanted.empty(), "table: no methods given; allowed: ", allowed());
  std::vector<std::string> out;
  for (const TableMethod& m : table_methods())
    if (std::find(wanted.begin(), wanted.end(), m.id) != wanted.end()) out.push_back(m.id);
  return out;
}

TablePreset table_preset(const std::string& name) {
  // Epochs are cut from the recipes' so that the preset fits its time budget on 2 cores; the
  // recipes' own figures are in their notes. vgg16 has no residuals and sits at chance for half an
  // epoch: 3 epochs gave 82.8 %, so it gets 6. The full preset fine-tunes QAT on half an epoch (LSQ+
  // W4A8, which starts furthest from its FP32 model, on one) and leaves out bias correction at W8A8,
  // where it changes nothing measurable: its first run with 2 epochs of LSQ+ and every W8A8 + BC row
  // took 2 h 24 min of job time.
  if (name == "quick")
    return {"quick",
            {{"lenet", "lenet.json", {"--epochs", "5"}},
             {"resnet20", "resnet20.json", {"--epochs", "2"}},
             {"mobilenet_v2_small", "mobilenet_v2_small.json", {"--epochs", "3"}}},
            "ptq_hist_w8a8,ptq_kl_w8a8,ptq_mse_w8a8,ptq_mse_w4a8,ptq_mse_w4a8_bc,qat_default,dynamic_int8"};
  if (name == "full")
    return {"full",
            {{"resnet20", "resnet20.json", {"--epochs", "3"}},
             {"mobilenet_v1", "mobilenet_v1.json", {"--epochs", "3"}},
             {"mobilenet_v2", "mobilenet_v2.json", {"--epochs", "3"}},
             {"mobilenet_v3_large", "mobilenet_v3_large.json", {"--epochs", "3"}},
             {"resnet50", "resnet50.json", {"--epochs", "2"}},
             {"vgg16", "vgg16.json", {"--epochs", "6"}},
             {"googlenet", "googlenet.json", {"--epochs", "2"}}},
            "ptq_abs_max_w8a8,ptq_avg_w8a8,ptq_hist_w8a8,ptq_kl_w8a8,ptq_mse_w8a8,ptq_emd_w8a8,ptq_mse_w4a8,"
            "ptq_mse_w4a8_bc,ptq_mse_w6a6,qat_default,qat_pact,qat_lsq_w4a8,fp32_finetune,dynamic",
            {{"qat_default", {"--epoch-fraction", "0.5"}},
             {"fp32_finetune", {"--epoch-fraction", "0.5"}},
             {"qat_pact", {"--epoch-fraction", "0.5"}},
             {"qat_lsq_w4a8", {"--epochs", "1"}}}};
  QSLIM_FAIL("table: unknown preset '", name, "'; allowed: quick, full");
}

TableModel table_model(const TablePreset& preset, const std::string& name, const std::string& recipes_dir) {
  for (const TableModel& m : preset.models)
    if (m.name == name) return m;
  const std::string base = name.substr(0, name.find(':'));
  const std::string recipe = base + ".json";
  QSLIM_CHECK(std::filesystem::exists(std::filesystem::path(recipes_dir) / recipe), "table: model '", name,
              "' has no recipe ", (std::filesystem::path(recipes_dir) / recipe).string(),
              "; every zoo model in a table is trained from its recipe");
  TableModel m{base, recipe, {}};
  if (name != base) m.train_flags = {"--model", name}, m.name = name;
  return m;
}

std::string safe_name(const std::string& spec) {
  std::string s = spec;
  for (char& c : s)
    if (c == ':' || c == '=' || c == ',' || c == '/' || c == ' ') c = '_';
  return s;
}

}  // namespace qslim::tools
