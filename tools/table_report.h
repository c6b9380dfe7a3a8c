// The outputs of `qslim table`: markdown tables shaped like PaddleSlim's (model, FP32 top-1/top-5,
// INT8 top-1/top-5, diff) per method family, the figures as JSON rows, and an SVG bar chart of the
// top-1 change per model and method.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qslim::tools {

struct TableRow {
  std::string model, method, family, label;
  double fp32_top1 = 0, fp32_top5 = 0, int8_top1 = 0, int8_top5 = 0;
  double size_ratio = 0;  // INT8 file / FP32 file; 0 when unknown
  double seconds = 0;
  std::string command = {};
};

// Rows of every successful method job in `results` ({"jobs": {...}} as TableRunner writes), in the
// order of `models` x `methods`. Throws naming the job when its figures lack a key.
std::vector<TableRow> table_rows(const nlohmann::json& results, const std::vector<std::string>& models,
                                 const std::vector<std::string>& methods);

// One section per family with rows, FP32 training figures first; two decimals throughout.
std::string table_markdown(const std::vector<TableRow>& rows, const nlohmann::json& results,
                           const std::vector<std::string>& models);
std::string table_chart_svg(const std::vector<TableRow>& rows, const std::vector<std::string>& models,
                            const std::string& title);

// Writes text to path + ".tmp", then renames it over path.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace qslim::tools
