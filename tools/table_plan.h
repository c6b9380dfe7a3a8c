// What `qslim table` runs: the zoo models of a preset, the quantization methods, and the CLI
// command line of every job (FP32 training per model, then one job per model and method).
#pragma once
#include <map>
#include <string>
#include <vector>

namespace qslim::tools {

struct TableModel {
  std::string name;                      // zoo spec, e.g. "resnet20" or "mobilenet_v2:width=0.5"
  std::string recipe;                    // training recipe file name under recipes/
  std::vector<std::string> train_flags;  // preset overrides, e.g. {"--epochs", "3"}
  std::string checkpoint = {};  // an existing FP32 checkpoint to use instead of training (evaluated once)
};

struct TableMethod {
  std::string id;       // "ptq_hist_w8a8", "qat_default", "dynamic_int8", ...
  std::string family;   // the table it belongs to: "ptq_w8a8", "ptq_low", "qat", "dynamic"
  std::string label;    // shown in the table: "PTQ hist W8A8 + BC"
  std::string command;  // qslim subcommand: "ptq", "qat" or "dynamic"
  std::vector<std::string> args;  // after --from CKPT (the runner adds --out, --json, --threads, ...)
  double cost = 1;  // relative duration, for the ETA before anything was measured
};

// Every method, grouped by family in table order.
const std::vector<TableMethod>& table_methods();
// The families in table order, with their section titles.
const std::vector<std::pair<std::string, std::string>>& table_families();
// A comma-separated list of method ids, family names or "all" -> method ids (in catalogue order,
// each once). Throws naming the unknown entry and listing the families and ids.
std::vector<std::string> expand_methods(const std::string& list);
const TableMethod& table_method(const std::string& id);

struct TablePreset {
  std::string name;
  std::vector<TableModel> models;
  std::string methods;  // for expand_methods
  // Extra arguments of a method's jobs in this preset (fine-tuning cut to fit the time budget),
  // e.g. {"qat_default", {"--epoch-fraction", "0.5"}}.
  std::map<std::string, std::vector<std::string>> method_args = {};
};
// "quick" or "full"; throws listing both.
TablePreset table_preset(const std::string& name);
// A model of the preset by name, or one built from recipes/<name>.json (throws when there is none).
TableModel table_model(const TablePreset& preset, const std::string& name, const std::string& recipes_dir);

// Directory-safe form of a model spec ("mobilenet_v2:width=0.5" -> "mobilenet_v2_width_0.5").
std::string safe_name(const std::string& spec);

}  // namespace qslim::tools
