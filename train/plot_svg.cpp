#include "train/plot_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace qslim::train {

namespace {

struct Series {
  std::string name, color;
  bool dashed = false;
  std::vector<double> x, y;  // epoch, value
};

struct Panel {
  std::string title, ylabel;
  std::vector<Series> series;
  bool y_from_zero = false;
  double y_cap = HUGE_VAL;  // ticks never go above this (100 for accuracies)
  bool legend_bottom = false;  // rising curves end top right, so their legend goes bottom right
};

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v, double step) {
  int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), std::abs(v) < step * 1e-9 ? 0.0 : v);
  return buf;
}

// One panel of size w x h at (x0, y0).
void draw_panel(std::ostringstream& o, const Panel& p, int epochs, double x0, double y0, double w, double h) {
  const double ml = 62, mr = 14, mt = 30, mb = 46;
  const double px = x0 + ml, py = y0 + mt, pw = w - ml - mr, ph = h - mt - mb;

  std::vector<double> xt = nice_ticks(1, std::max(epochs, 2), 8, true);
  double xlo = 1, xhi = std::max<double>(xt.back(), 2);
  double ylo = HUGE_VAL, yhi = -HUGE_VAL;
  for (const Series& s : p.series)
    for (double v : s.y)
      if (std::isfinite(v)) ylo = std::min(ylo, v), yhi = std::max(yhi, v);
  if (!(ylo <= yhi)) ylo = 0, yhi = 1;
  if (p.y_from_zero) ylo = std::min(0.0, ylo);
  if (yhi - ylo < 1e-9) yhi = ylo + 1;
  std::vector<double> yt = nice_ticks(ylo, std::min(yhi, p.y_cap), 6);
  while (yt.size() > 2 && yt.back() > p.y_cap) yt.pop_back();
  ylo = yt.front();
  yhi = std::max(yt.back(), yhi);
  const double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;

  auto sx = [&](double e) { return px + (e - xlo) / (xhi - xlo) * pw; };
  auto sy = [&](double v) { return py + ph - (v - ylo) / (yhi - ylo) * ph; };

  o << "<g font-family=\"sans-serif\" font-size=\"11\">\n";
  o << "<text x=\"" << num(px + pw / 2) << "\" y=\"" << num(y0 + 18) << "\" text-anchor=\"middle\" font-size=\"13\" "
    << "font-weight=\"bold\">" << escape(p.title) << "</text>\n";
  // Grid and ticks.
  for (double t : yt) {
    o << "<line x1=\"" << num(px) << "\" y1=\"" << num(sy(t)) << "\" x2=\"" << num(px + pw) << "\" y2=\"" << num(sy(t))
      << "\" stroke=\"#e4e4e4\"/>\n";
    o << "<line x1=\"" << num(px - 4) << "\" y1=\"" << num(sy(t)) << "\" x2=\"" << num(px) << "\" y2=\"" << num(sy(t))
      << "\" stroke=\"#333\"/>\n";
    o << "<text x=\"" << num(px - 7) << "\" y=\"" << num(sy(t) + 4) << "\" text-anchor=\"end\">" << tick_label(t, ystep)
      << "</text>\n";
  }
  for (double t : xt) {
    if (t < xlo - 1e-9 || t > xhi + 1e-9) continue;
    o << "<line x1=\"" << num(sx(t)) << "\" y1=\"" << num(py) << "\" x2=\"" << num(sx(t)) << "\" y2=\"" << num(py + ph)
      << "\" stroke=\"#f0f0f0\"/>\n";
    o << "<line x1=\"" << num(sx(t)) << "\" y1=\"" << num(py + ph) << "\" x2=\"" << num(sx(t)) << "\" y2=\""
      << num(py + ph + 4) << "\" stroke=\"#333\"/>\n";
    o << "<text x=\"" << num(sx(t)) << "\" y=\"" << num(py + ph + 17) << "\" text-anchor=\"middle\">"
      << tick_label(t, 1) << "</text>\n";
  }
  // Axes and their labels.
  o << "<polyline class=\"axis\" points=\"" << num(px) << "," << num(py) << " " << num(px) << "," << num(py + ph) << " "
    << num(px + pw) << "," << num(py + ph) << "\" fill=\"none\" stroke=\"#333\"/>\n";
  o << "<text x=\"" << num(px + pw / 2) << "\" y=\"" << num(py + ph + 36) << "\" text-anchor=\"middle\">epoch</text>\n";
  o << "<text transform=\"translate(" << num(x0 + 16) << "," << num(py + ph / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(p.ylabel) << "</text>\n";
  // Curves with a marker per epoch.
  for (const Series& s : p.series) {
    o << "<polyline class=\"series\" data-name=\"" << escape(s.name) << "\" points=\"";
    for (size_t i = 0; i < s.y.size(); ++i)
      o << (i ? " " : "") << num(sx(s.x[i])) << "," << num(sy(s.y[i]));
    o << "\" fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\""
      << (s.dashed ? " stroke-dasharray=\"6,3\"" : "") << "/>\n";
    for (size_t i = 0; i < s.y.size(); ++i)
      o << "<circle cx=\"" << num(sx(s.x[i])) << "\" cy=\"" << num(sy(s.y[i]))
        << "\" r=\"2.5\" fill=\"" << s.color << "\"/>\n";
  }
  // Legend in a right-hand corner of the plot area.
  const double lw = 118, lh = 8 + 16.0 * p.series.size();
  const double lx = px + pw - lw - 6, ly = p.legend_bottom ? py + ph - lh - 6 : py + 6;
  o << "<rect x=\"" << num(lx) << "\" y=\"" << num(ly) << "\" width=\"" << num(lw) << "\" height=\"" << num(lh)
    << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n";
  for (size_t i = 0; i < p.series.size(); ++i) {
    const Series& s = p.series[i];
    const double yy = ly + 14 + 16.0 * i;
    o << "<line x1=\"" << num(lx + 8) << "\" y1=\"" << num(yy - 4) << "\" x2=\"" << num(lx + 32) << "\" y2=\""
      << num(yy - 4) << "\" stroke=\"" << s.color << "\" stroke-width=\"2\""
      << (s.dashed ? " stroke-dasharray=\"6,3\"" : "") << "/>\n";
    o << "<text x=\"" << num(lx + 38) << "\" y=\"" << num(yy) << "\">" << escape(s.name) << "</text>\n";
  }
  o << "</g>\n";
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int max_ticks, bool integer_steps) {
  QSLIM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && max_ticks >= 2, "nice_ticks: need finite lo <= hi ",
              "and max_ticks >= 2, got [", lo, ", ", hi, "] with ", max_ticks);
  if (hi - lo < 1e-12) hi = lo + (integer_steps ? 1 : std::max(std::abs(lo) * 0.1, 1e-6));
  double step = 0;
  for (double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / (max_ticks - 1)))); step == 0; mag *= 10)
    for (double m : {1.0, 2.0, 5.0}) {
      double s = m * mag;
      if (integer_steps && s < 1) continue;
      if (std::floor(lo / s) * s + s * (max_ticks - 1) >= hi - 1e-12 * std::abs(hi)) {
        step = s;
        break;
      }
    }
  std::vector<double> t;
  const double first = std::floor(lo / step + 1e-9) * step;
  for (int i = 0; i < max_ticks; ++i) {
    t.push_back(first + i * step);
    if (t.back() >= hi - 1e-9 * step) break;
  }
  return t;
}

std::string training_curves_svg(const std::vector<EpochReport>& history, const std::string& title) {
  Panel loss{"Loss", "cross-entropy loss", {}, true, HUGE_VAL, false};
  Panel acc{"Top-1 accuracy", "top-1 (%)", {}, false, 100.0, true};
  Series tl{"train loss", "#1f77b4", false, {}, {}}, vl{"test loss", "#d62728", true, {}, {}};
  Series ta{"train top-1", "#1f77b4", false, {}, {}}, va{"test top-1", "#d62728", true, {}, {}};
  for (const EpochReport& r : history) {
    for (Series* s : {&tl, &vl, &ta, &va}) s->x.push_back(r.epoch);
    tl.y.push_back(r.train_loss);
    vl.y.push_back(r.test.loss);
    ta.y.push_back(r.train_top1);
    va.y.push_back(r.test.top1);
  }
  loss.series = {tl, vl};
  acc.series = {ta, va};
  const double W = 960, H = 400, head = 30;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::string heading = title;
  if (!history.empty()) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " - epoch %d, test top-1 %.2f%%", history.back().epoch, history.back().test.top1);
    heading += buf;
  }
  o << "<text x=\"" << W / 2 << "\" y=\"20\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"15\">"
    << escape(heading) << "</text>\n";
  const int epochs = history.empty() ? 1 : history.back().epoch;
  draw_panel(o, loss, epochs, 0, head, W / 2, H - head);
  draw_panel(o, acc, epochs, W / 2, head, W / 2, H - head);
  o << "</svg>\n";
  return o.str();
}

void write_training_curves_svg(const std::string& path, const std::vector<EpochReport>& history,
                               const std::string& title) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    QSLIM_CHECK(out.good(), "training curves: cannot write ", tmp);
    out << training_curves_svg(history, title);
    out.flush();
    QSLIM_CHECK(out.good(), "training curves: writing ", tmp, " failed");
  }
  QSLIM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "training curves: cannot rename ", tmp, " to ", path);
}

}  // namespace qslim::train
