// Recipes: JSON objects under recipes/ that fix a training configuration, e.g.
//   {"model": "resnet20", "epochs": 15, "lr": 0.1, "nesterov": true, "augment": true,
//    "notes": "about 14 min on 2 cores"}
// Precedence: TrainConfig defaults < recipe (or a resumed run's saved config) < command-line flags.
// Unknown keys and mistyped values are errors naming the file (or flag) and the key.
#pragma once
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "train/config.h"

namespace qslim::train {

// Every key a recipe may hold, in documentation order ("notes" is free text and changes nothing).
const std::vector<std::string>& recipe_keys();

// Applies the JSON object `text` to `config`; `source` (a file name) prefixes every error, including
// those of validate(). Returns the keys it set; `notes` receives the "notes" value when given.
std::vector<std::string> apply_recipe_json(const std::string& text, const std::string& source, TrainConfig& config,
                                           std::string* notes = nullptr);
std::vector<std::string> apply_recipe_file(const std::string& path, TrainConfig& config, std::string* notes = nullptr);

// Sets one key from text as typed on a command line: integers, numbers, true/false (also 1/0,
// yes/no), strings, and comma-separated numbers for mean/std.
void apply_setting(const std::string& key, const std::string& value, const std::string& source, TrainConfig& config);

// All keys but "notes" as one JSON object; apply_recipe_json reads it back exactly.
std::string config_to_json(const TrainConfig& config);

struct ResolvedConfig {
  TrainConfig config;
  std::set<std::string> set_keys;  // keys the recipe or an override set
  std::string notes;
};

// `base`, then the recipe file (when the path is not empty), then each (key, text value) override
// in order; the result is validated.
ResolvedConfig resolve_config(const TrainConfig& base, const std::string& recipe_path,
                              const std::vector<std::pair<std::string, std::string>>& overrides);

}  // namespace qslim::train
