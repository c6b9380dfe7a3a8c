#include "train/train_state.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "nn/checkpoint.h"

namespace qslim::train {

namespace {
using json = nlohmann::json;

constexpr const char* kOptimPrefix = "optim.";
constexpr const char* kSchedPrefix = "sched.";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

const std::string& meta(const std::map<std::string, std::string>& m, const std::string& path, const char* key) {
  auto it = m.find(key);
  QSLIM_CHECK(it != m.end(), "training state ", path, ": metadata has no '", key, "'");
  return it->second;
}

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& path, const char* key) {
  const std::string& s = meta(m, path, key);
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &pos);
  } catch (...) {
    pos = 0;
  }
  QSLIM_CHECK(pos == s.size() && pos > 0, "training state ", path, ": metadata '", key, "' = '", s,
              "' is not an integer");
  return v;
}

std::string float_list(const std::vector<float>& v) { return json(v).dump(); }
}  // namespace

std::string resolve_resume_path(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(dir_or_file, ec)) {
    std::string p = (fs::path(dir_or_file) / kTrainStateFile).string();
    QSLIM_CHECK(fs::is_regular_file(p, ec), "resume: ", dir_or_file, " holds no ", kTrainStateFile,
                " (it is written after each epoch of a run with --out)");
    return p;
  }
  QSLIM_CHECK(fs::is_regular_file(dir_or_file, ec), "resume: ", dir_or_file, ": no such file or directory");
  return dir_or_file;
}

void save_train_state(const std::string& path, const TrainState& s) {
  nn::NamedTensors tensors = s.model;
  for (const auto& [k, t] : s.optimizer) tensors.emplace_back(kOptimPrefix + k, t);
  for (const auto& [k, t] : s.scheduler) tensors.emplace_back(kSchedPrefix + k, t);
  json cfg = json::parse(s.config_json);
  std::map<std::string, std::string> m = {
      {"format", kTrainStateFormat},
      {"model", cfg.at("model").get<std::string>()},
      {"dataset", cfg.at("dataset").get<std::string>()},
      {"mean", cfg.at("mean").dump()},
      {"std", cfg.at("std").dump()},
      {"epoch", std::to_string(s.epoch)},
      {"config", s.config_json},
      {"generator", s.generator_state},
      {"threads", std::to_string(s.threads)},
      {"limit", std::to_string(s.limit)},
      {"train_examples", std::to_string(s.train_examples)},
      {"history", history_to_json(s.history)},
  };
  nn::save_tensors(path, tensors, m);
}

TrainState load_train_state(const std::string& path) {
  nn::LoadedTensors f = nn::load_tensors(path);
  auto fmt = f.metadata.find("format");
  QSLIM_CHECK(fmt != f.metadata.end() && fmt->second == kTrainStateFormat, "training state ", path,
              ": not a training-state checkpoint (format '",
              fmt == f.metadata.end() ? std::string("none") : fmt->second, "', expected '", kTrainStateFormat,
              "'); resume from the ", kTrainStateFile, " written beside ", kModelFile);
  TrainState s;
  s.epoch = static_cast<int>(meta_int(f.metadata, path, "epoch"));
  QSLIM_CHECK(s.epoch >= 1, "training state ", path, ": epoch ", s.epoch, " must be >= 1");
  s.config_json = meta(f.metadata, path, "config");
  s.generator_state = meta(f.metadata, path, "generator");
  s.threads = static_cast<int>(meta_int(f.metadata, path, "threads"));
  s.limit = meta_int(f.metadata, path, "limit");
  s.train_examples = meta_int(f.metadata, path, "train_examples");
  s.history = history_from_json(meta(f.metadata, path, "history"), "training state " + path + " history");
  QSLIM_CHECK(static_cast<int>(s.history.size()) == s.epoch, "training state ", path, ": history has ",
              s.history.size(), " epochs but the state is after epoch ", s.epoch);
  for (auto& [k, t] : f.tensors) {
    if (starts_with(k, kOptimPrefix))
      s.optimizer.emplace_back(k.substr(std::string(kOptimPrefix).size()), t);
    else if (starts_with(k, kSchedPrefix))
      s.scheduler.emplace_back(k.substr(std::string(kSchedPrefix).size()), t);
    else
      s.model.emplace_back(k, t);
  }
  return s;
}

std::map<std::string, std::string> model_metadata(const TrainConfig& c, int epoch, const EvalResult& test) {
  return {{"model", c.model},
          {"dataset", c.dataset},
          {"mean", float_list(c.mean)},
          {"std", float_list(c.std)},
          {"epoch", std::to_string(epoch)},
          {"test_top1", std::to_string(test.top1)},
          {"test_top5", std::to_string(test.top5)},
          {"test_loss", json(test.loss).dump()},
          {"test_samples", std::to_string(test.samples)},
          {"format", kModelFormat}};
}

std::vector<float> parse_float_list(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    QSLIM_FAIL(where, ": '", text, "' is not a JSON array of numbers");
  }
  QSLIM_CHECK(j.is_array() && !j.empty(), where, ": '", text, "' is not a non-empty JSON array of numbers");
  std::vector<float> v;
  for (const json& x : j) {
    QSLIM_CHECK(x.is_number(), where, ": '", text, "' holds a non-number ", x.dump());
    v.push_back(x.get<float>());
  }
  return v;
}

}  // namespace qslim::train
