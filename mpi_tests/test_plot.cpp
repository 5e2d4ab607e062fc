// SVG line charts: tick values, the document (well-formed XML, escaped text, one line per
// series, broken lines at skipped points, clipping, empty panels) and the collective writer.
// Rendering is a pure function, so every rank checks it; files are looked at on rank 0 only,
// and verdicts that involve a file are shared so that all ranks take the same branches.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/io/plot.hpp"

namespace physgrad {
namespace {

namespace fs = std::filesystem;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

MPI_Comm world() { return Environment::comm(); }

bool allTrue(bool local) {
  int in = local ? 1 : 0, out = 0;
  MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, world());
  return out == 1;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t countOf(const std::string& text, const std::string& piece) {
  size_t count = 0;
  for (size_t at = text.find(piece); at != std::string::npos; at = text.find(piece, at + 1)) {
    ++count;
  }
  return count;
}

// ------------------------------------------------------------------------------------------
// A small XML well-formedness check: one root element, properly nested tags, quoted and
// unique attributes, no '<' in attribute values and only the predefined or numeric entities.
// It covers what a writer of this kind can get wrong, not all of XML (no DTDs, no CDATA).

bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':' || c == '-' ||
         c == '.';
}

bool entitiesValid(const std::string& text) {
  for (size_t at = text.find('&'); at != std::string::npos; at = text.find('&', at + 1)) {
    const size_t end = text.find(';', at);
    if (end == std::string::npos) return false;
    const std::string name = text.substr(at + 1, end - at - 1);
    const bool numeric = name.size() > 1 && name[0] == '#';
    if (!numeric && name != "amp" && name != "lt" && name != "gt" && name != "quot" &&
        name != "apos") {
      return false;
    }
  }
  return true;
}

std::string wellFormedError(const std::string& xml) {
  std::vector<std::string> open;
  int roots = 0;
  size_t at = 0;
  while (true) {
    const size_t lt = xml.find('<', at);
    const std::string text = xml.substr(at, lt == std::string::npos ? std::string::npos : lt - at);
    if (!entitiesValid(text)) return "bad entity in text near " + std::to_string(at);
    if (open.empty() && text.find_first_not_of(" \t\r\n") != std::string::npos) {
      return "text outside the root element near " + std::to_string(at);
    }
    if (lt == std::string::npos) break;
    if (xml.compare(lt, 2, "<?") == 0 || xml.compare(lt, 4, "<!--") == 0) {
      const size_t end = xml.find(xml[lt + 1] == '?' ? "?>" : "-->", lt);
      if (end == std::string::npos) return "unterminated declaration or comment";
      at = end + (xml[lt + 1] == '?' ? 2 : 3);
      continue;
    }
    size_t p = lt + 1;
    const bool closing = xml[p] == '/';
    if (closing) ++p;
    const size_t name_start = p;
    while (p < xml.size() && isNameChar(xml[p])) ++p;
    const std::string name = xml.substr(name_start, p - name_start);
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
      return "bad tag name near " + std::to_string(lt);
    }
    if (closing) {
      while (p < xml.size() && std::isspace(static_cast<unsigned char>(xml[p]))) ++p;
      if (p >= xml.size() || xml[p] != '>') return "bad closing tag </" + name;
      if (open.empty() || open.back() != name) return "unbalanced </" + name + ">";
      open.pop_back();
      at = p + 1;
      continue;
    }
    std::set<std::string> attributes;
    bool self_closing = false;
    while (true) {
      const size_t before = p;
      while (p < xml.size() && std::isspace(static_cast<unsigned char>(xml[p]))) ++p;
      if (p >= xml.size()) return "unterminated <" + name;
      if (xml.compare(p, 2, "/>") == 0) {
        self_closing = true;
        p += 2;
        break;
      }
      if (xml[p] == '>') {
        ++p;
        break;
      }
      if (p == before) return "no space before an attribute of <" + name;
      const size_t attribute_start = p;
      while (p < xml.size() && isNameChar(xml[p])) ++p;
      const std::string attribute = xml.substr(attribute_start, p - attribute_start);
      if (attribute.empty() || p >= xml.size() || xml[p] != '=') {
        return "bad attribute in <" + name;
      }
      if (!attributes.insert(attribute).second) return "repeated attribute " + attribute;
      ++p;
      if (p >= xml.size() || (xml[p] != '"' && xml[p] != '\'')) return "unquoted " + attribute;
      const size_t end = xml.find(xml[p], p + 1);
      if (end == std::string::npos) return "unterminated value of " + attribute;
      const std::string value = xml.substr(p + 1, end - p - 1);
      if (value.find('<') != std::string::npos || !entitiesValid(value)) {
        return "bad value of " + attribute + " in <" + name;
      }
      p = end + 1;
    }
    if (open.empty() && ++roots > 1) return "more than one root element";
    if (!self_closing) open.push_back(name);
    at = p;
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

// ------------------------------------------------------------------------------------------
// Reading back what the writer drew

// The opening tags of elements with class="<cls>".
std::vector<std::string> tagsOfClass(const std::string& svg, const std::string& cls) {
  std::vector<std::string> tags;
  const std::string key = "class=\"" + cls + "\"";
  for (size_t at = svg.find(key); at != std::string::npos; at = svg.find(key, at + 1)) {
    const size_t start = svg.rfind('<', at), end = svg.find('>', at);
    tags.push_back(svg.substr(start, end - start + 1));
  }
  return tags;
}

std::string attributeOf(const std::string& tag, const std::string& name) {
  const std::string key = " " + name + "=\"";
  const size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  const size_t start = at + key.size();
  return tag.substr(start, tag.find('"', start) - start);
}

struct PathData {
  int subpaths = 0;
  std::vector<std::pair<double, double>> points;
};

// Path data made of M and L commands with absolute coordinates, as the writer emits them.
PathData parsePath(const std::string& d) {
  PathData data;
  std::vector<double> numbers;
  const char* p = d.c_str();
  while (*p) {
    if (*p == 'M') ++data.subpaths;
    if (std::isalpha(static_cast<unsigned char>(*p)) || *p == ' ' || *p == ',') {
      ++p;
      continue;
    }
    char* end = nullptr;
    numbers.push_back(std::strtod(p, &end));
    if (end == p) break;
    p = end;
  }
  for (size_t i = 0; i + 1 < numbers.size(); i += 2)
    data.points.push_back({numbers[i], numbers[i + 1]});
  return data;
}

struct Box {
  double left, top, right, bottom;
};

Box frameOf(const std::string& svg) {
  const std::vector<std::string> frames = tagsOfClass(svg, "frame");
  if (frames.empty()) return {0, 0, 0, 0};
  const double x = std::stod(attributeOf(frames[0], "x")),
               y = std::stod(attributeOf(frames[0], "y"));
  return {x, y, x + std::stod(attributeOf(frames[0], "width")),
          y + std::stod(attributeOf(frames[0], "height"))};
}

PlotSeries series(const std::string& label, std::vector<double> x, std::vector<double> y) {
  PlotSeries s;
  s.label = label;
  s.x = std::move(x);
  s.y = std::move(y);
  return s;
}

PlotPanel panel(const std::string& title, std::vector<PlotSeries> lines, bool log_y = true) {
  PlotPanel p;
  p.title = title;
  p.x_label = "iteration";
  p.y_label = "loss";
  p.log_y = log_y;
  p.series = std::move(lines);
  return p;
}

// A convergence-like figure: loss and error against iteration and against time.
std::vector<PlotPanel> convergenceFigure() {
  std::vector<double> it, t, loss_a, loss_b, err_a, err_b;
  for (int k = 0; k <= 60; ++k) {
    it.push_back(k);
    t.push_back(0.013 * k + 0.0002 * k * k);
    loss_a.push_back(std::exp(-0.25 * k) + 1e-7);
    loss_b.push_back(1.0 / (1.0 + 0.5 * k * k));
    err_a.push_back(0.9 * std::exp(-0.04 * k) + 0.05);
    err_b.push_back(0.95 - 0.006 * k);
  }
  PlotPanel loss = panel("loss", {series("gd", it, loss_a), series("l-bfgs", it, loss_b)});
  PlotPanel err = panel("error", {series("gd", t, err_a), series("l-bfgs", t, err_b)});
  err.x_label = "wall time [s]";
  err.y_label = "relative error";
  return {loss, err};
}

// ------------------------------------------------------------------------------------------
// Ticks

void expectTicks(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) EXPECT_DOUBLE_EQ(actual[i], expected[i]) << i;
}

TEST(PlotTicks, LinearKnownValues) {
  expectTicks(niceTicks(0.3, 7.2, false), {0, 2, 4, 6, 8});
  expectTicks(niceTicks(0, 1, false), {0, 0.2, 0.4, 0.6, 0.8, 1});
  expectTicks(niceTicks(-3.7, 12.1, false), {-5, 0, 5, 10, 15});
  expectTicks(niceTicks(1000, 1e6, false), {0, 2e5, 4e5, 6e5, 8e5, 1e6});
  expectTicks(niceTicks(0.0012, 0.0049, false), {0.001, 0.002, 0.003, 0.004, 0.005});
  // Ends on tick values are not widened.
  expectTicks(niceTicks(10, 20, false), {10, 12, 14, 16, 18, 20});
}

// Mantissa of a positive value: v / 10^floor(log10 v).
double mantissaOf(double v) {
  const double m = v / std::pow(10.0, std::floor(std::log10(v)));
  return m >= 10 - 1e-9 ? m / 10 : m;
}

bool isOneTwoFive(double m) {
  for (double c : {1.0, 2.0, 5.0, 10.0}) {
    if (std::fabs(m - c) <= 1e-9 * c) return true;
  }
  return false;
}

TEST(PlotTicks, LinearStepsAreOneTwoFiveAndEncloseTheRange) {
  std::mt19937_64 engine(7);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int trial = 0; trial < 2000; ++trial) {
    const double scale = std::pow(10.0, -12 + 24 * unit(engine));
    double lo = scale * (2 * unit(engine) - 1), hi = lo + scale * unit(engine);
    if (trial % 10 == 0) hi = lo + scale * 1e-3 * unit(engine);  // narrow ranges too
    const std::vector<double> t = niceTicks(lo, hi, false);
    ASSERT_GE(t.size(), 3u) << lo << " " << hi;
    ASSERT_LE(t.size(), 8u) << lo << " " << hi;
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    // The differences carry rounding errors of the ticks; compare with the exact step.
    const double difference = t[1] - t[0];
    EXPECT_TRUE(isOneTwoFive(mantissaOf(difference))) << difference;
    const double decade = std::pow(10.0, std::floor(std::log10(difference * (1 + 1e-9))));
    const double step = std::round(difference / decade) * decade;
    const double size = std::max(std::fabs(t.front()), std::fabs(t.back()));
    for (size_t i = 0; i < t.size(); ++i) {
      if (i > 0) {
        EXPECT_NEAR(t[i] - t[i - 1], step, 1e-12 * size);
      }
      // Every tick a whole multiple of the step, so 0 is a tick whenever the range has it.
      const double index = t[i] / step;
      EXPECT_NEAR(index, std::round(index), 1e-12 * std::fabs(index) + 1e-9);
    }
  }
}

TEST(PlotTicks, LogKnownValues) {
  expectTicks(niceTicks(1e-6, 1, true), {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1});
  expectTicks(niceTicks(2.5e-6, 0.7, true), {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1});
  expectTicks(niceTicks(1e-12, 10, true), {1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1, 1e2});
  expectTicks(niceTicks(0.3, 0.8, true), {0.2, 0.5, 1});
  expectTicks(niceTicks(0.03, 0.8, true), {0.02, 0.05, 0.1, 0.2, 0.5, 1});
  expectTicks(niceTicks(1e-300, 1e300, true), {1e-300, 1e-200, 1e-100, 1, 1e100, 1e200, 1e300});
}

TEST(PlotTicks, LogTicksAreDecadesOrOneTwoFiveAndEncloseTheRange) {
  std::mt19937_64 engine(11);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int trial = 0; trial < 2000; ++trial) {
    const double lo = std::pow(10.0, -300 + 590 * unit(engine));
    const double hi = lo * std::pow(10.0, (trial % 2 ? 3 : 18) * unit(engine));
    const std::vector<double> t = niceTicks(lo, hi, true);
    ASSERT_GE(t.size(), 2u);
    ASSERT_LE(t.size(), 9u) << lo << " " << hi;
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    bool decades = true;
    for (size_t i = 0; i < t.size(); ++i) {
      EXPECT_TRUE(isOneTwoFive(mantissaOf(t[i]))) << t[i];
      decades = decades && std::fabs(mantissaOf(t[i]) - 1) < 1e-9;
      if (i > 0) {
        EXPECT_GT(t[i], t[i - 1]);
      }
    }
    if (!decades) {
      EXPECT_LE(t.size(), 6u);
    } else if (t.size() > 2) {
      // Evenly spaced in the exponent.
      const double stride = std::log10(t[1] / t[0]);
      for (size_t i = 2; i < t.size(); ++i) EXPECT_NEAR(std::log10(t[i] / t[i - 1]), stride, 1e-6);
    }
  }
}

TEST(PlotTicks, EqualEndsArePadded) {
  for (double v : {5.0, 0.0, -2.0, 1e-9, 3e8}) {
    const std::vector<double> t = niceTicks(v, v, false);
    EXPECT_LT(t.front(), v);
    EXPECT_GT(t.back(), v);
  }
  for (double v : {1e-3, 3.0, 7e20}) {
    const std::vector<double> t = niceTicks(v, v, true);
    EXPECT_LT(t.front(), v);
    EXPECT_GT(t.back(), v);
  }
}

TEST(PlotTicks, ExtremeRangesStayFinite) {
  const std::vector<std::pair<double, double>> linear = {{-DBL_MAX, DBL_MAX},  {DBL_MAX, DBL_MAX},
                                                         {-DBL_MAX, -DBL_MAX}, {0, DBL_MIN},
                                                         {1, 1 + 1e-15},       {5e-324, 1e-323}};
  for (const auto& [lo, hi] : linear) {
    const std::vector<double> t = niceTicks(lo, hi, false);
    EXPECT_LE(t.size(), 8u);
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    for (double v : t) EXPECT_TRUE(std::isfinite(v)) << lo << " " << hi;
  }
  const double tiny = std::numeric_limits<double>::denorm_min();
  const std::vector<std::pair<double, double>> log = {
      {tiny, DBL_MAX}, {tiny, tiny}, {DBL_MAX, DBL_MAX}, {DBL_MIN, 1}};
  for (const auto& [lo, hi] : log) {
    const std::vector<double> t = niceTicks(lo, hi, true);
    EXPECT_LE(t.size(), 9u);
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    for (double v : t) EXPECT_TRUE(std::isfinite(v) && v > 0) << lo << " " << hi;
  }
}

TEST(PlotTicks, RejectsInvalidRanges) {
  EXPECT_THROW(niceTicks(1, 0, false), InputError);
  EXPECT_THROW(niceTicks(kNaN, 1, false), InputError);
  EXPECT_THROW(niceTicks(0, kInf, false), InputError);
  EXPECT_THROW(niceTicks(0, 1, true), InputError);
  EXPECT_THROW(niceTicks(-1, 1, true), InputError);
}

// ------------------------------------------------------------------------------------------
// The document

TEST(PlotSvg, FigureIsWellFormedSvg) {
  PlotLayout layout;
  layout.title = "convergence";
  const std::string svg = renderSvg(convergenceFigure(), layout);
  EXPECT_EQ(wellFormedError(svg), "");
  EXPECT_EQ(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""),
            std::string::npos);
  // Two panels side by side under a title band.
  EXPECT_NE(svg.find("width=\"960.00\" height=\"390.00\""), std::string::npos);
  EXPECT_EQ(countOf(svg, "class=\"panel\""), 2u);
  for (const char* text : {">convergence<", ">loss<", ">error<", ">iteration<", ">wall time [s]<",
                           ">relative error<", ">gd<", ">l-bfgs<"}) {
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  }
  EXPECT_EQ(countOf(svg, "class=\"legend\""), 2u);
}

TEST(PlotSvg, TextIsEscaped) {
  PlotPanel p = panel("a<b & \"c\"", {series("x<y>'z'", {1, 2}, {1, 2})});
  p.x_label = "t & u";
  // A control character and a byte that is not UTF-8, which XML cannot carry as they are.
  p.y_label = std::string("bad\x01 byte \xff end, \xc3\xa9t\xc3\xa9");
  PlotLayout layout;
  layout.title = "<script>";
  const std::string svg = renderSvg({p}, layout);
  EXPECT_EQ(wellFormedError(svg), "");
  EXPECT_NE(svg.find("a&lt;b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(svg.find("x&lt;y&gt;&apos;z&apos;"), std::string::npos);
  EXPECT_NE(svg.find(">t &amp; u<"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_EQ(svg.find('\x01'), std::string::npos);
  EXPECT_EQ(svg.find('\xff'), std::string::npos);
  EXPECT_NE(svg.find("bad\xEF\xBF\xBD byte \xEF\xBF\xBD end, \xc3\xa9t\xc3\xa9"),
            std::string::npos);
}

TEST(PlotSvg, OneLinePerSeriesWithData) {
  PlotPanel p = panel("three", {series("a", {0, 1, 2}, {1, 0.5, 0.2}), series("empty", {}, {}),
                                series("b", {0, 1, 2}, {2, 1, 0.1})});
  const std::string svg = renderSvg({p});
  EXPECT_EQ(wellFormedError(svg), "");
  const std::vector<std::string> lines = tagsOfClass(svg, "line");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(parsePath(attributeOf(lines[0], "d")).points.size(), 3u);
  // Series differ in colour and dashes.
  EXPECT_NE(attributeOf(lines[0], "stroke"), attributeOf(lines[1], "stroke"));
  EXPECT_NE(attributeOf(lines[0], "stroke-dasharray"), attributeOf(lines[1], "stroke-dasharray"));
  // The legend still lists the empty one.
  EXPECT_NE(svg.find(">empty (no data)<"), std::string::npos);
}

TEST(PlotSvg, LogAxisBreaksLineAtNonPositiveValues) {
  const PlotPanel p =
      panel("log", {series("s", {0, 1, 2, 3, 4, 5, 6}, {1, 0.1, 0, -1, 0.01, 1e-3, 1e-4})});
  const std::string svg = renderSvg({p});
  EXPECT_EQ(wellFormedError(svg), "");
  const std::vector<std::string> lines = tagsOfClass(svg, "line");
  ASSERT_EQ(lines.size(), 1u);
  const PathData path = parsePath(attributeOf(lines[0], "d"));
  EXPECT_EQ(path.subpaths, 2);
  EXPECT_EQ(path.points.size(), 5u);  // 2 + 3: nothing drawn at y <= 0
  // The y range comes from the positive values only: the decade labels run 10^-4 .. 10^0.
  EXPECT_NE(svg.find(">-4</tspan>"), std::string::npos);
  EXPECT_NE(svg.find(">0</tspan>"), std::string::npos);
  EXPECT_EQ(svg.find(">-5</tspan>"), std::string::npos);
}

TEST(PlotSvg, NonFiniteValuesBreakLineAndIsolatedPointsAreDots) {
  const PlotPanel p =
      panel("nan", {series("s", {0, 1, 2, 3, 4, 5, 6, 7}, {1, 2, kNaN, 3, kInf, 4, 5, 6})}, false);
  const std::string svg = renderSvg({p});
  EXPECT_EQ(wellFormedError(svg), "");
  const std::vector<std::string> lines = tagsOfClass(svg, "line");
  ASSERT_EQ(lines.size(), 1u);
  const PathData path = parsePath(attributeOf(lines[0], "d"));
  EXPECT_EQ(path.subpaths, 2);
  EXPECT_EQ(path.points.size(), 5u);              // (0,1)-(1,2) and (5,4)-(6,5)-(7,6)
  EXPECT_EQ(tagsOfClass(svg, "dot").size(), 1u);  // (3,3) has no drawable neighbour
}

TEST(PlotSvg, PanelsWithoutDataShowANote) {
  const std::vector<PlotPanel> panels = {panel("none", {}), panel("empty", {series("e", {}, {})}),
                                         panel("nan", {series("n", {1, 2}, {kNaN, kNaN})}),
                                         panel("negative", {series("neg", {1, 2}, {-1, 0})})};
  const std::string svg = renderSvg(panels);
  EXPECT_EQ(wellFormedError(svg), "");
  EXPECT_TRUE(tagsOfClass(svg, "line").empty());
  EXPECT_EQ(tagsOfClass(svg, "frame").size(), 4u);
  EXPECT_EQ(countOf(svg, ">no data<"), 2u);
  EXPECT_EQ(countOf(svg, ">no finite data<"), 1u);
  EXPECT_EQ(countOf(svg, ">no positive data for the log axis<"), 1u);
  // No panels at all: one empty frame.
  const std::string nothing = renderSvg({});
  EXPECT_EQ(wellFormedError(nothing), "");
  EXPECT_EQ(tagsOfClass(nothing, "frame").size(), 1u);
  EXPECT_EQ(countOf(nothing, ">no data<"), 1u);
}

TEST(PlotSvg, ConstantSeriesSitsInsideAPaddedRange) {
  for (bool log : {false, true}) {
    const std::string svg =
        renderSvg({panel("flat", {series("c", {0, 1, 2, 3}, {2, 2, 2, 2})}, log)});
    EXPECT_EQ(wellFormedError(svg), "");
    const Box frame = frameOf(svg);
    const std::vector<std::string> lines = tagsOfClass(svg, "line");
    ASSERT_EQ(lines.size(), 1u);
    for (const auto& [x, y] : parsePath(attributeOf(lines[0], "d")).points) {
      EXPECT_GT(y, frame.top + 10);
      EXPECT_LT(y, frame.bottom - 10);
      EXPECT_GE(x, frame.left - 0.01);
      EXPECT_LE(x, frame.right + 0.01);
    }
    EXPECT_GE(tagsOfClass(svg, "tick").size(), 4u);  // labels on both axes
  }
}

TEST(PlotSvg, FixedLimitsClipLinesToTheFrame) {
  PlotPanel p = panel("clip", {series("s", {0, 1, 2, 3, 4}, {1, 3, 50, 2, 80})}, false);
  p.y_max = 10;
  p.x_min = 0.5;
  const std::string svg = renderSvg({p});
  EXPECT_EQ(wellFormedError(svg), "");
  const Box frame = frameOf(svg);
  const std::vector<std::string> lines = tagsOfClass(svg, "line");
  ASSERT_EQ(lines.size(), 1u);
  const PathData path = parsePath(attributeOf(lines[0], "d"));
  EXPECT_EQ(path.subpaths, 2);  // leaves through the top twice, comes back once
  for (const auto& [x, y] : path.points) {
    EXPECT_GE(x, frame.left - 0.01);
    EXPECT_LE(x, frame.right + 0.01);
    EXPECT_GE(y, frame.top - 0.01);
    EXPECT_LE(y, frame.bottom + 0.01);
  }
  EXPECT_NEAR(path.points.front().first, frame.left, 0.01);  // cut at x_min
  // The axis stops at the limit: its top label is 10.
  EXPECT_NE(svg.find(">10</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">80</text>"), std::string::npos);
}

TEST(PlotSvg, ExtremeValuesRender) {
  const double tiny = std::numeric_limits<double>::denorm_min();
  const std::vector<PlotPanel> panels = {
      panel("linear", {series("s", {-DBL_MAX, DBL_MAX}, {DBL_MAX, -DBL_MAX})}, false),
      panel("log", {series("s", {0, 1, 2}, {tiny, 1, DBL_MAX})}),
      panel("narrow", {series("s", {0, 1}, {1, 1 + 1e-15})}, false),
      panel("tiny", {series("s", {0, 1}, {tiny, 2 * tiny})}, false)};
  const std::string svg = renderSvg(panels);
  EXPECT_EQ(wellFormedError(svg), "");
  EXPECT_EQ(tagsOfClass(svg, "line").size(), 4u);
  for (const char* bad : {"inf", "nan", "NaN"}) EXPECT_EQ(svg.find(bad), std::string::npos) << bad;
}

TEST(PlotSvg, RandomAwkwardDataRenders) {
  // Mixtures of ordinary, special and extreme values on every kind of axis.
  const double pool[] = {0,    -0.0, 1,     -1,      2,        1e-300, -1e-300, 1e300,
                         kNaN, kInf, -kInf, DBL_MAX, -DBL_MAX, 5e-324, 3.7,     1e-8};
  std::mt19937_64 engine(3);
  for (int trial = 0; trial < 300; ++trial) {
    PlotPanel p;
    p.log_x = engine() % 2 == 0;
    p.log_y = engine() % 2 == 0;
    const int lines = static_cast<int>(engine() % 4);
    for (int s = 0; s < lines; ++s) {
      PlotSeries line;
      const int n = static_cast<int>(engine() % 6);
      for (int i = 0; i < n; ++i) {
        line.x.push_back(pool[engine() % std::size(pool)]);
        line.y.push_back(pool[engine() % std::size(pool)]);
      }
      p.series.push_back(line);
    }
    const std::string svg = renderSvg({p});
    ASSERT_EQ(wellFormedError(svg), "") << trial;
    for (const char* bad : {"inf", "nan", "NaN"}) ASSERT_EQ(svg.find(bad), std::string::npos);
  }
}

TEST(PlotSvg, TickLabels) {
  const std::vector<double> x = {0, 50, 100};
  const std::string linear =
      renderSvg({panel("lin", {series("s", x, {0.001, 0.003, 0.002})}, false)});
  for (const char* label :
       {">0</text>", ">20</text>", ">100</text>", ">0.0010</text>", ">0.0030</text>"}) {
    EXPECT_NE(linear.find(label), std::string::npos) << label;
  }
  const std::string small = renderSvg({panel("sci", {series("s", x, {2e-7, 5e-7, 9e-7})}, false)});
  EXPECT_NE(small.find(">2e-7</text>"), std::string::npos);
  const std::string decades = renderSvg({panel("log", {series("s", x, {1e-6, 1e-3, 1})})});
  EXPECT_NE(decades.find(">10<tspan dy=\"-5\" font-size=\"8.00\">-6</tspan></text>"),
            std::string::npos);
  const std::string mantissas = renderSvg({panel("log", {series("s", x, {0.3, 0.5, 0.8})})});
  for (const char* label : {">0.2</text>", ">0.5</text>", ">1</text>"}) {
    EXPECT_NE(mantissas.find(label), std::string::npos) << label;
  }
}

TEST(PlotSvg, RejectsInvalidInput) {
  try {
    renderSvg({panel("p", {series("uneven", {1, 2, 3}, {1, 2})})});
    ADD_FAILURE() << "no exception";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("uneven"), std::string::npos) << e.what();
  }
  PlotLayout layout;
  layout.columns = 0;
  EXPECT_THROW(renderSvg({}, layout), InputError);
  PlotPanel p = panel("p", {series("s", {1, 2}, {1, 2})});
  p.y_min = 0;  // log axis
  EXPECT_THROW(renderSvg({p}), InputError);
  p.y_min = kNaN;
  p.x_min = 3, p.x_max = 2;
  EXPECT_THROW(renderSvg({p}), InputError);
}

TEST(PlotSvg, PanelsFillRowsOfColumns) {
  const std::vector<PlotPanel> three(3, panel("p", {series("s", {1, 2}, {1, 2})}));
  PlotLayout layout;
  layout.columns = 2;
  layout.panel_width = 300;
  layout.panel_height = 200;
  const std::string svg = renderSvg(three, layout);
  EXPECT_NE(svg.find("width=\"600.00\" height=\"400.00\""), std::string::npos);
  EXPECT_NE(svg.find("translate(0.00,200.00)"), std::string::npos);
  layout.columns = 5;  // more columns than panels: one row, as wide as the panels
  EXPECT_NE(renderSvg(three, layout).find("width=\"900.00\" height=\"200.00\""), std::string::npos);
}

// ------------------------------------------------------------------------------------------
// The collective writer

// A scratch directory whose name rank 0 picks (unique per run) and broadcasts.
class PlotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name;
    if (Environment::rank() == 0) {
      std::random_device rd;
      name = (fs::temp_directory_path() /
              ("physgrad_plot_" + std::to_string(rd()) + "_" + std::to_string(rd())))
                 .string();
    }
    int length = static_cast<int>(name.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, world());
    name.resize(static_cast<size_t>(length));
    MPI_Bcast(name.data(), length, MPI_CHAR, 0, world());
    dir_ = name;
    ensureDirectory(dir_);
  }
  void TearDown() override {
    MPI_Barrier(world());
    if (Environment::rank() == 0) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    MPI_Barrier(world());
  }
  std::string path(const std::string& file) const { return dir_ + "/" + file; }

  // Whether writeSvg threw InputError naming `file` on this rank.
  static bool throwsNaming(const std::string& file, const std::vector<PlotPanel>& panels) {
    try {
      writeSvg(file, panels);
    } catch (const InputError& e) {
      return std::string(e.what()).find(file) != std::string::npos;
    }
    return false;
  }

  std::string dir_;
};

TEST_F(PlotFileTest, RankZeroWritesTheRenderedDocument) {
  // Only rank 0's panels count: the others pass none.
  const std::vector<PlotPanel> figure = convergenceFigure();
  writeSvg(path("convergence.svg"), Environment::rank() == 0 ? figure : std::vector<PlotPanel>{});
  bool ok = true;
  if (Environment::rank() == 0) ok = readFile(path("convergence.svg")) == renderSvg(figure);
  MPI_Bcast(&ok, 1, MPI_C_BOOL, 0, world());
  EXPECT_TRUE(ok);
  // Rewriting truncates.
  writeSvg(path("convergence.svg"), {});
  ok = true;
  if (Environment::rank() == 0) ok = readFile(path("convergence.svg")) == renderSvg({});
  MPI_Bcast(&ok, 1, MPI_C_BOOL, 0, world());
  EXPECT_TRUE(ok);
}

TEST_F(PlotFileTest, UnwritablePathThrowsOnEveryRank) {
  const std::vector<PlotPanel> figure = convergenceFigure();
  EXPECT_TRUE(allTrue(throwsNaming(path("missing/plot.svg"), figure)));
  EXPECT_TRUE(allTrue(throwsNaming(dir_, figure)));  // a directory
}

TEST_F(PlotFileTest, InvalidPanelsOnRankZeroThrowOnEveryRank) {
  std::vector<PlotPanel> figure = convergenceFigure();
  if (Environment::rank() == 0) figure[0].series[0].y.pop_back();
  EXPECT_TRUE(allTrue(throwsNaming(path("bad.svg"), figure)));
}

}  // namespace
}  // namespace physgrad
