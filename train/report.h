// Per-epoch results of a training run and their JSON form (one line of metrics.jsonl each; the
// whole history also travels in the training-state checkpoint so a resumed run keeps its curves).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qslim::train {

struct EvalResult {
  double top1 = 0, top5 = 0, loss = 0;
  int64_t samples = 0;
};

struct EpochReport {
  int epoch = 0;  // 1-based
  double train_loss = 0, train_top1 = 0, train_top5 = 0;
  EvalResult test;
  double lr = 0;
  double images_per_s = 0;
  double seconds = 0;      // wall time of the training pass (evaluation excluded)
  double cpu_seconds = 0;  // process CPU time of the training pass, all threads (shows a shared machine)
};

// {"epoch":1,"loss":..,"train_top1":..,"train_top5":..,"test_loss":..,"top1":..,"top5":..,
//  "test_samples":..,"lr":..,"img_s":..,"seconds":..,"cpu_s":..} on one line, without the newline.
std::string to_json_line(const EpochReport& r);
// Inverse of to_json_line; errors name `where` and the missing or mistyped key.
EpochReport epoch_report_from_json(const std::string& line, const std::string& where);

// The whole history as one JSON array, and back.
std::string history_to_json(const std::vector<EpochReport>& history);
std::vector<EpochReport> history_from_json(const std::string& text, const std::string& where);

}  // namespace qslim::train
