#include "tools/table_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "tools/table_plan.h"
#include "train/plot_svg.h"

namespace qslim::tools {

using json = nlohmann::json;

namespace {

// `key`, or for "int8_*" keys the "quant_*" spelling of the commands whose result is not always
// INT8 (qslim dynamic --weight-bits 16), or the plain one of qslim train (the FP32 fine-tune control).
double number(const json& figures, const std::string& key, const std::string& job) {
  std::string k = key;
  if (!figures.contains(k) && key.rfind("int8_", 0) == 0) k = "quant_" + key.substr(5);
  if (!figures.contains(k) && key.rfind("int8_", 0) == 0) k = key.substr(5);
  QSLIM_CHECK(figures.contains(k) && figures[k].is_number(), "table: the figures of job ", job,
              " have no number '", key, "': ", figures.dump());
  return figures[k].get<double>();
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string seconds_text(double s) {
  return s < 120 ? fmt("%.0f s", s) : fmt("%.1f min", s / 60);
}

std::string xml(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return o;
}

}  // namespace

std::vector<TableRow> table_rows(const json& results, const std::vector<std::string>& models,
                                 const std::vector<std::string>& methods) {
  std::vector<TableRow> rows;
  const json& jobs = results.at("jobs");
  for (const std::string& model : models)
    for (const std::string& method : methods) {
      const std::string id = model + "/" + method;
      if (!jobs.contains(id) || jobs[id].value("status", -1) != 0) continue;
      const json& rec = jobs[id];
      const json& f = rec.at("figures");
      const TableMethod& m = table_method(method);
      TableRow r{model, method, m.family, m.label};
      r.fp32_top1 = number(f, "fp32_top1", id);
      r.fp32_top5 = number(f, "fp32_top5", id);
      r.int8_top1 = number(f, "int8_top1", id);
      r.int8_top5 = number(f, "int8_top5", id);
      if (f.contains("size_ratio") && f["size_ratio"].is_number()) r.size_ratio = f["size_ratio"].get<double>();
      r.seconds = rec.value("seconds", 0.0);
      r.command = rec.value("command", "");
      rows.push_back(r);
    }
  return rows;
}

std::string table_markdown(const std::vector<TableRow>& rows, const json& results,
                           const std::vector<std::string>& models) {
  std::string md;
  const json& jobs = results.at("jobs");
  md += "### FP32 models\n\n| Model | Top-1 | Top-5 | Epochs | Training time |\n|---|---|---|---|---|\n";
  for (const std::string& model : models) {
    const std::string id = "fp32/" + model;
    if (!jobs.contains(id) || jobs[id].value("status", -1) != 0) continue;
    const json& f = jobs[id].at("figures");
    md += "| " + model + " | " + fmt("%.2f", number(f, "top1", id)) + " | " + fmt("%.2f", number(f, "top5", id)) +
          " | " +
          (f.contains("epochs") ? std::to_string(f.value("epochs", 0)) + " | " + seconds_text(jobs[id].value("seconds", 0.0))
                                : "given checkpoint | -") +
          " |\n";
  }
  for (const auto& [family, title] : table_families()) {
    bool any = false;
    for (const TableRow& r : rows) any |= r.family == family;
    if (!any) continue;
    md += "\n### " + title + "\n\n";
    md += "| Model | Method | FP32 Top-1 / Top-5 | INT8 Top-1 / Top-5 | Diff Top-1 | Size | Time |\n";
    md += "|---|---|---|---|---|---|---|\n";
    for (const TableRow& r : rows) {
      if (r.family != family) continue;
      md += "| " + r.model + " | " + r.label + " | " + fmt("%.2f", r.fp32_top1) + " / " + fmt("%.2f", r.fp32_top5) +
            " | " + fmt("%.2f", r.int8_top1) + " / " + fmt("%.2f", r.int8_top5) + " | " +
            fmt("%+.2f", r.int8_top1 - r.fp32_top1) + " | " +
            (r.size_ratio > 0 ? fmt("%.3fx", r.size_ratio) : std::string("-")) + " | " + seconds_text(r.seconds) +
            " |\n";
    }
  }
  return md;
}

std::string table_chart_svg(const std::vector<TableRow>& rows, const std::vector<std::string>& models,
                            const std::string& title) {
  // One group of bars per method (in row order), one bar per model; the bar is the top-1 change.
  std::vector<std::string> methods;
  std::map<std::string, std::string> labels;
  for (const TableRow& r : rows)
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end())
      methods.push_back(r.method), labels[r.method] = r.label;
  double lo = 0, hi = 0;
  for (const TableRow& r : rows) lo = std::min(lo, r.int8_top1 - r.fp32_top1), hi = std::max(hi, r.int8_top1 - r.fp32_top1);
  if (hi - lo < 0.5) lo = std::min(lo, -0.5), hi = std::max(hi, 0.1);
  const std::vector<double> ticks = train::nice_ticks(lo, hi, 6);
  lo = ticks.front(), hi = ticks.back();
  const double bar = 12, gap = 14, left = 70, top = 40, plot_h = 300;
  const double group_w = bar * static_cast<double>(std::max<size_t>(models.size(), 1)) + gap;
  const double plot_w = std::max(200.0, group_w * static_cast<double>(methods.size()));
  const double width = left + plot_w + 180, height = top + plot_h + 190;
  auto y_of = [&](double v) { return top + plot_h * (hi - v) / (hi - lo); };
  static const char* colors[] = {"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"};
  std::string s = fmt("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\"", width) +
                  fmt(" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n", height);
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += fmt("<text x=\"%.0f\" y=\"20\" font-size=\"14\">", left) + xml(title) + "</text>\n";
  for (double t : ticks) {
    s += fmt("<line x1=\"%.1f\"", left) + fmt(" x2=\"%.1f\"", left + plot_w) + fmt(" y1=\"%.1f\"", y_of(t)) +
         fmt(" y2=\"%.1f\" stroke=\"#ddd\"/>\n", y_of(t));
    s += fmt("<text x=\"%.1f\"", left - 6) + fmt(" y=\"%.1f\" text-anchor=\"end\">", y_of(t) + 4) + fmt("%+.2f", t) +
         "</text>\n";
  }
  s += fmt("<line x1=\"%.1f\"", left) + fmt(" x2=\"%.1f\"", left + plot_w) + fmt(" y1=\"%.1f\"", y_of(0)) +
       fmt(" y2=\"%.1f\" stroke=\"black\"/>\n", y_of(0));
  s += fmt("<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 ", top + plot_h / 2) +
       fmt("%.1f)\" text-anchor=\"middle\">INT8 - FP32 top-1 (points)</text>\n", top + plot_h / 2);
  for (size_t mi = 0; mi < methods.size(); ++mi) {
    const double x0 = left + gap / 2 + group_w * static_cast<double>(mi);
    for (const TableRow& r : rows) {
      if (r.method != methods[mi]) continue;
      const size_t k = static_cast<size_t>(std::find(models.begin(), models.end(), r.model) - models.begin());
      const double d = r.int8_top1 - r.fp32_top1, x = x0 + bar * static_cast<double>(k);
      const double y = std::min(y_of(d), y_of(0)), h = std::max(std::fabs(y_of(d) - y_of(0)), 0.5);
      s += fmt("<rect x=\"%.1f\"", x) + fmt(" y=\"%.1f\"", y) + fmt(" width=\"%.1f\"", bar - 1) +
           fmt(" height=\"%.1f\" fill=\"", h) + colors[k % 8] + "\"><title>" + xml(r.model + ", " + r.label) +
           fmt(": %+.2f</title></rect>\n", d);
    }
    const double cx = x0 + group_w / 2 - gap / 2, cy = top + plot_h + 8;
    s += fmt("<text x=\"%.1f\"", cx) + fmt(" y=\"%.1f\" text-anchor=\"end\" ", cy) +
         fmt("transform=\"rotate(-55 %.1f ", cx) + fmt("%.1f)\">", cy) + xml(labels[methods[mi]]) + "</text>\n";
  }
  for (size_t k = 0; k < models.size(); ++k) {
    const double y = top + 14 * static_cast<double>(k);
    s += fmt("<rect x=\"%.1f\"", left + plot_w + 16) + fmt(" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"", y) +
         colors[k % 8] + "\"/>\n";
    s += fmt("<text x=\"%.1f\"", left + plot_w + 30) + fmt(" y=\"%.1f\">", y + 9) + xml(models[k]) + "</text>\n";
  }
  return s + "</svg>\n";
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    QSLIM_CHECK(out.good(), "table: cannot write ", tmp);
    out << text;
    out.flush();
    QSLIM_CHECK(out.good(), "table: writing ", tmp, " failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace qslim::tools
