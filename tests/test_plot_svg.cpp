// Training curves SVG: well-formed XML (checked by a small independent parser), one polyline per
// curve with a point per epoch, ticks covering the data, escaped text.
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/plot_svg.h"

using namespace qslim;
using namespace qslim::train;

namespace {

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
};

// A strict little XML reader: balanced tags, quoted attributes, no duplicate attributes, only the
// five predefined entities. Fills `elements` in document order; returns "" or what is wrong.
std::string parse_xml(const std::string& s, std::vector<Element>& elements) {
  std::vector<std::string> stack;
  size_t i = 0;
  auto check_text = [&](size_t from, size_t to) -> std::string {
    for (size_t k = from; k < to; ++k)
      if (s[k] == '&') {
        size_t semi = s.find(';', k);
        if (semi == std::string::npos || semi > to) return "unterminated entity";
        std::string e = s.substr(k, semi - k + 1);
        if (e != "&amp;" && e != "&lt;" && e != "&gt;" && e != "&quot;" && e != "&apos;") return "bad entity " + e;
      } else if (s[k] == '<' || s[k] == '>') {
        return "stray angle bracket in text";
      }
    return "";
  };
  while (i < s.size()) {
    size_t lt = s.find('<', i);
    if (lt == std::string::npos) {
      if (auto e = check_text(i, s.size()); !e.empty()) return e;
      break;
    }
    if (auto e = check_text(i, lt); !e.empty()) return e;
    if (stack.empty() && s.substr(i, lt - i).find_first_not_of(" \n\t\r") != std::string::npos && !elements.empty())
      return "text outside the root element";
    size_t gt = s.find('>', lt);
    if (gt == std::string::npos) return "unterminated tag";
    std::string tag = s.substr(lt + 1, gt - lt - 1);
    if (!tag.empty() && tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
      stack.pop_back();
    } else {
      bool self_closing = !tag.empty() && tag.back() == '/';
      if (self_closing) tag.pop_back();
      Element el;
      size_t k = 0;
      while (k < tag.size() && !std::isspace(static_cast<unsigned char>(tag[k]))) el.name += tag[k++];
      if (el.name.empty()) return "empty tag name";
      if (stack.empty() && !elements.empty()) return "second root element <" + el.name + ">";
      while (true) {
        while (k < tag.size() && std::isspace(static_cast<unsigned char>(tag[k]))) ++k;
        if (k >= tag.size()) break;
        size_t eq = tag.find('=', k);
        if (eq == std::string::npos || eq + 1 >= tag.size() || tag[eq + 1] != '"') return "unquoted attribute in <" + el.name;
        std::string key = tag.substr(k, eq - k);
        size_t close = tag.find('"', eq + 2);
        if (close == std::string::npos) return "unterminated attribute " + key;
        std::string value = tag.substr(eq + 2, close - eq - 2);
        if (auto e = check_text(lt + 1 + eq + 2, lt + 1 + close); !e.empty()) return e + " in attribute " + key;
        if (!el.attrs.emplace(key, value).second) return "duplicate attribute " + key;
        k = close + 1;
      }
      elements.push_back(el);
      if (!self_closing) stack.push_back(el.name);
    }
    i = gt + 1;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (elements.empty()) return "no element";
  return "";
}

std::vector<EpochReport> history(int n) {
  std::vector<EpochReport> h;
  for (int e = 1; e <= n; ++e) {
    EpochReport r;
    r.epoch = e;
    r.train_loss = 2.0 / e;
    r.test.loss = 1.5 / e + 0.1;
    r.train_top1 = 60 + 3 * e;
    r.test.top1 = 65 + 2.5 * e;
    h.push_back(r);
  }
  return h;
}

int count_points(const std::string& points) {
  std::istringstream in(points);
  std::string p;
  int n = 0;
  while (in >> p) {
    EXPECT_NE(p.find(','), std::string::npos) << p;
    ++n;
  }
  return n;
}

}  // namespace

TEST(PlotSvg, ParserRejectsBrokenXml) {
  std::vector<Element> els;
  EXPECT_EQ(parse_xml("<svg><g></g></svg>", els), "");
  els.clear();
  EXPECT_NE(parse_xml("<svg><g></svg>", els), "");
  els.clear();
  EXPECT_NE(parse_xml("<svg a=1></svg>", els), "");
  els.clear();
  EXPECT_NE(parse_xml("<svg>a & b</svg>", els), "");
  els.clear();
  EXPECT_NE(parse_xml("<svg></svg><svg></svg>", els), "");
  els.clear();
  EXPECT_NE(parse_xml("<svg a=\"x &bad; y\"></svg>", els), "");
}

TEST(PlotSvg, WellFormedWithOnePolylinePerCurve) {
  const int n = 7;
  std::string svg = training_curves_svg(history(n), "resnet20 <fast> & \"small\"");
  ASSERT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 80);
  std::vector<Element> els;
  ASSERT_EQ(parse_xml(svg, els), "") << svg;
  EXPECT_EQ(els[0].name, "svg");
  EXPECT_EQ(els[0].attrs["xmlns"], "http://www.w3.org/2000/svg");
  std::map<std::string, int> series;
  int circles = 0;
  for (const Element& e : els) {
    if (e.name == "circle") ++circles;
    if (e.name != "polyline") continue;
    auto cls = e.attrs.find("class");
    ASSERT_NE(cls, e.attrs.end());
    if (cls->second == "series") series[e.attrs.at("data-name")] = count_points(e.attrs.at("points"));
  }
  EXPECT_EQ(series, (std::map<std::string, int>{{"train loss", n}, {"test loss", n}, {"train top-1", n}, {"test top-1", n}}));
  EXPECT_EQ(circles, 4 * n);
  EXPECT_NE(svg.find("resnet20 &lt;fast&gt; &amp; &quot;small&quot;"), std::string::npos);
  EXPECT_NE(svg.find(">epoch</text>"), std::string::npos);
  EXPECT_NE(svg.find(">top-1 (%)</text>"), std::string::npos);
  EXPECT_NE(svg.find(">test top-1</text>"), std::string::npos);  // legend entry
}

TEST(PlotSvg, CurvesStayInsideTheirPanels) {
  std::string svg = training_curves_svg(history(12), "m");
  std::vector<Element> els;
  ASSERT_EQ(parse_xml(svg, els), "");
  for (const Element& e : els) {
    if (e.name != "polyline" || e.attrs.at("class") != "series") continue;
    std::istringstream in(e.attrs.at("points"));
    std::string p;
    bool loss = e.attrs.at("data-name").find("loss") != std::string::npos;
    double prev_x = -1;
    while (in >> p) {
      double x = std::stod(p.substr(0, p.find(','))), y = std::stod(p.substr(p.find(',') + 1));
      EXPECT_GT(x, prev_x);  // epochs left to right
      prev_x = x;
      EXPECT_TRUE(loss ? (x >= 0 && x <= 480) : (x >= 480 && x <= 960)) << x;
      EXPECT_TRUE(y >= 30 && y <= 400) << y;
    }
  }
}

TEST(PlotSvg, SingleEpochAndEmptyHistoryAreStillWellFormed) {
  for (int n : {0, 1}) {
    std::vector<Element> els;
    EXPECT_EQ(parse_xml(training_curves_svg(history(n), "x"), els), "") << n;
  }
}

TEST(PlotSvg, NiceTicks) {
  auto unit = nice_ticks(0, 1, 6);
  ASSERT_EQ(unit.size(), 6u);
  for (size_t i = 0; i < unit.size(); ++i) EXPECT_NEAR(unit[i], 0.2 * i, 1e-12);
  auto t = nice_ticks(63.2, 91.7, 6);
  ASSERT_GE(t.size(), 2u);
  EXPECT_LE(t.front(), 63.2);
  EXPECT_GE(t.back(), 91.7);
  EXPECT_LE(t.size(), 6u);
  EXPECT_DOUBLE_EQ(t[1] - t[0], 10.0);
  auto e = nice_ticks(1, 3, 8, true);  // integer epochs: step 1, not 0.5
  EXPECT_EQ(e, (std::vector<double>{1, 2, 3}));
  auto big = nice_ticks(1, 200, 8, true);
  EXPECT_DOUBLE_EQ(big[1] - big[0], 50.0);
  EXPECT_GE(big.back(), 200);
  EXPECT_THROW(nice_ticks(2, 1), Error);
}
