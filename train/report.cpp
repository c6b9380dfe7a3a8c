#include "train/report.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qslim::train {

namespace {
using json = nlohmann::json;

json to_json(const EpochReport& r) {
  return {{"epoch", r.epoch},        {"loss", r.train_loss},    {"train_top1", r.train_top1},
          {"train_top5", r.train_top5}, {"test_loss", r.test.loss}, {"top1", r.test.top1},
          {"top5", r.test.top5},     {"test_samples", r.test.samples}, {"lr", r.lr},
          {"img_s", r.images_per_s}, {"seconds", r.seconds}, {"cpu_s", r.cpu_seconds}};
}

double number(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  QSLIM_CHECK(it != j.end(), where, ": epoch record has no '", key, "'");
  QSLIM_CHECK(it->is_number(), where, ": epoch record key '", key, "' must be a number, got ", it->dump());
  return it->get<double>();
}

EpochReport from_json(const json& j, const std::string& where) {
  QSLIM_CHECK(j.is_object(), where, ": epoch record must be a JSON object, got ", j.dump());
  EpochReport r;
  r.epoch = static_cast<int>(number(j, "epoch", where));
  r.train_loss = number(j, "loss", where);
  r.train_top1 = number(j, "train_top1", where);
  r.train_top5 = number(j, "train_top5", where);
  r.test.loss = number(j, "test_loss", where);
  r.test.top1 = number(j, "top1", where);
  r.test.top5 = number(j, "top5", where);
  r.test.samples = static_cast<int64_t>(number(j, "test_samples", where));
  r.lr = number(j, "lr", where);
  r.images_per_s = number(j, "img_s", where);
  r.seconds = number(j, "seconds", where);
  r.cpu_seconds = number(j, "cpu_s", where);
  return r;
}

json parse(const std::string& text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    QSLIM_FAIL(where, ": not valid JSON: ", e.what());
  }
}
}  // namespace

std::string to_json_line(const EpochReport& r) { return to_json(r).dump(); }

EpochReport epoch_report_from_json(const std::string& line, const std::string& where) {
  return from_json(parse(line, where), where);
}

std::string history_to_json(const std::vector<EpochReport>& history) {
  json a = json::array();
  for (const EpochReport& r : history) a.push_back(to_json(r));
  return a.dump();
}

std::vector<EpochReport> history_from_json(const std::string& text, const std::string& where) {
  json a = parse(text, where);
  QSLIM_CHECK(a.is_array(), where, ": history must be a JSON array, got ", a.type_name());
  std::vector<EpochReport> out;
  for (const json& j : a) out.push_back(from_json(j, where));
  return out;
}

}  // namespace qslim::train
