#include "physgrad/io/plot.hpp"

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "physgrad/core/error.hpp"
#include "root_error.hpp"

namespace physgrad {
namespace {

// U+FFFD, written in place of bytes that are not valid UTF-8 or not allowed in XML 1.0: one
// bad byte in a label must not make the whole document unreadable.
constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

// Text metrics. No font is embedded, so widths are estimates from an average glyph width of a
// sans-serif font; they only decide margins and where labels would collide.
constexpr double kFontSize = 11.0;
constexpr double kTitleFontSize = 13.0;
constexpr double kSupFontSize = 8.0;
constexpr double kCharWidth = 0.6;  // em

// Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), without the
// yellow, which is too faint on white. Dash patterns cycle with a different period, so series
// differ in dashes as well as in colour, which also survives grey-scale printing.
constexpr const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                    "#E69F00", "#56B4E9", "#000000"};
constexpr const char* kDashes[] = {"", "7 3", "2 2.5", "9 3 2 3", "4 2 1 2 1 2"};

using io_detail::raiseRootError;
using io_detail::rankOf;

// ---------------------------------------------------------------------------------------
// Text

// Escapes the five XML specials and replaces what XML 1.0 cannot carry (control characters,
// malformed or overlong UTF-8, surrogates, U+FFFE/U+FFFF).
std::string xmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&apos;";
          break;
        default:
          if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            out += kReplacementChar;
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned long code = 0, smallest = 0;
    if ((c & 0xE0) == 0xC0) {
      length = 2, code = c & 0x1F, smallest = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, code = c & 0x0F, smallest = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, code = c & 0x07, smallest = 0x10000;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (size_t j = 1; valid && j < length; ++j) {
      const auto d = static_cast<unsigned char>(text[i + j]);
      valid = (d & 0xC0) == 0x80;
      code = (code << 6) | (d & 0x3F);
    }
    valid = valid && code >= smallest && code <= 0x10FFFF && !(code >= 0xD800 && code <= 0xDFFF) &&
            code != 0xFFFE && code != 0xFFFF;
    if (valid) {
      out.append(text, i, length);
      i += length;
    } else {
      // Skip one byte only: the next one may start a valid character.
      out += kReplacementChar;
      ++i;
    }
  }
  return out;
}

// Characters, not bytes: UTF-8 continuation bytes do not count.
double textWidth(const std::string& text, double font_size) {
  size_t characters = 0;
  for (char c : text) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return kCharWidth * font_size * static_cast<double>(characters);
}

// Pixel coordinates: two decimals are far below what a screen shows and keep files small.
std::string px(double v) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  return buffer;
}

// ---------------------------------------------------------------------------------------
// Numbers and ticks

double powerOfTen(int k) {
  // Exact up to 1e22; dividing an integer by an exact power rounds once, so 1e-6 computed
  // here is the same double as the literal and tick values compare equal to written ones.
  static constexpr double kExact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (k >= 0 && k <= 22) return kExact[k];
  return std::pow(10.0, k);
}

// m x 10^k for an integer m.
double scaled(double m, int k) {
  if (k < 0 && k >= -22) return m / powerOfTen(-k);
  return m * powerOfTen(k);
}

// The k with 10^k <= v < 10^(k+1), for v > 0; log10 alone can land on the wrong side of a
// power of ten.
int decadeOf(double v) {
  v = std::min(v, DBL_MAX);  // callers nudge values upwards, which can overflow
  int k = static_cast<int>(std::floor(std::log10(v)));
  if (scaled(1, k) > v) {
    --k;
  } else if (scaled(1, k + 1) <= v) {
    ++k;
  }
  return k;
}

int floorDiv(int a, int b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }
int ceilDiv(int a, int b) { return -floorDiv(-a, b); }

std::string printed(const char* format, double v, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, digits, v);
  return buffer;
}

// "2.5e-7": mantissa digits down to 10^resolution, exponent without '+' or leading zeros.
std::string scientific(double v, int resolution) {
  if (v == 0) return "0";
  // The factor keeps a value a rounding below a power of ten in the right decade.
  const int e = decadeOf(std::fabs(v) * (1 + 1e-12));
  // 10^e underflows to 0 below about 1e-323; scale the value up first there.
  const double mantissa = e < -280 ? (v * 1e40) / scaled(1, e + 40) : v / scaled(1, e);
  return printed("%.*f", mantissa, std::max(0, e - resolution)) + "e" + std::to_string(e);
}

// %.4g without the zero padding of the exponent, for the plain end labels of a fixed range.
std::string general(double v) {
  std::string text = printed("%.*g", v, 4);
  const size_t e = text.find('e');
  if (e == std::string::npos) return text;
  std::string exponent = text.substr(e + 1);
  const bool negative = exponent[0] == '-';
  exponent.erase(0, exponent.find_first_not_of("+-0"));
  return text.substr(0, e + 1) + (negative ? "-" : "") + (exponent.empty() ? "0" : exponent);
}

enum class TickKind { Linear, LogMantissa, LogDecades };

struct TickSet {
  TickKind kind = TickKind::Linear;
  std::vector<double> values;
  int exponent = 0;  ///< Linear: the step is m x 10^exponent
  int stride = 1;    ///< LogDecades: decades between ticks
};

TickSet linearTicks(double lo, double hi) {
  // A span too small against the values themselves counts as a single value: otherwise the
  // tick indices (value / step) would run past the integers a double holds exactly. So does
  // one near the underflow limit, where steps lose their digits or become zero.
  constexpr double kTinySpan = 1e-280;
  const double scale = std::max(std::fabs(lo), std::fabs(hi));
  if (hi - lo <= std::max(1e-12 * scale, kTinySpan)) {
    const double mid = lo / 2 + hi / 2;
    const double pad = mid == 0 ? 1.0 : std::max(0.1 * std::fabs(mid), kTinySpan);
    lo = std::max(mid - pad, -DBL_MAX);
    hi = std::min(mid + pad, DBL_MAX);
  }
  // Halves and fifths before subtracting: hi - lo may overflow where each is finite.
  const double raw = hi / 5 - lo / 5;  // step for about five intervals
  int k = decadeOf(raw);
  double m = 1;
  for (double candidate : {1.0, 2.0, 5.0, 10.0}) {
    m = candidate;
    if (scaled(m, k) >= raw) break;
  }
  if (m == 10) m = 1, ++k;
  const double step = scaled(m, k);
  auto tick = [m, k](double i) { return scaled(i * m, k); };
  // floor/ceil give the indices up to rounding; the loops settle them on the computed values.
  double first = std::floor(lo / step), last = std::ceil(hi / step);
  while (tick(first) > lo) first -= 1;
  while (tick(first + 1) <= lo) first += 1;
  while (tick(last) < hi) last += 1;
  while (tick(last - 1) >= hi) last -= 1;
  TickSet set;
  set.kind = TickKind::Linear;
  set.exponent = k;
  for (double i = first; i <= last; i += 1) {
    const double v = tick(i);
    set.values.push_back(v == 0 ? 0.0 : v);  // no "-0" label
  }
  return set;
}

int decadeStride(int decades) {
  // 1, 2, 3, 5 x 10^n decades: at most 7 intervals for any span a double can have.
  for (int stride : {1, 2, 3, 5, 10, 20, 30, 50, 100, 200}) {
    if (ceilDiv(decades, stride) <= 7) return stride;
  }
  return 1000;
}

TickSet logTicks(double lo, double hi) {
  if (hi / lo - 1 <= 1e-12) {
    lo = std::max(lo / 2, std::numeric_limits<double>::denorm_min());
    hi = std::min(hi * 2, DBL_MAX);
  }
  const int e0 = decadeOf(lo);
  int e1 = decadeOf(hi);
  if (scaled(1, e1) < hi) ++e1;
  TickSet set;
  // Within a couple of decades powers of ten alone would give two or three labels and leave
  // the data in a corner; 1, 2, 5 in each decade give more without crowding.
  if (e1 - e0 <= 3) {
    std::vector<double> fine;
    for (int e = e0; e < e1; ++e) {
      for (double m : {1.0, 2.0, 5.0}) fine.push_back(scaled(m, e));
    }
    fine.push_back(scaled(1, e1));
    size_t a = 0, b = fine.size() - 1;
    while (a + 1 < fine.size() && fine[a + 1] <= lo) ++a;
    while (b > 0 && fine[b - 1] >= hi) --b;
    if (b - a + 1 <= 6) {
      set.kind = TickKind::LogMantissa;
      set.values.assign(fine.begin() + static_cast<long>(a),
                        fine.begin() + static_cast<long>(b) + 1);
      return set;
    }
  }
  set.kind = TickKind::LogDecades;
  set.stride = decadeStride(e1 - e0);
  const int f0 = floorDiv(e0, set.stride) * set.stride;
  const int f1 = ceilDiv(e1, set.stride) * set.stride;
  for (int e = f0; e <= f1; e += set.stride) set.values.push_back(scaled(1, e));
  return set;
}

TickSet makeTicks(double lo, double hi, bool log) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) {
    throw InputError("niceTicks: need finite lo <= hi, got [" + general(lo) + ", " + general(hi) +
                     "]");
  }
  if (log && lo <= 0) {
    throw InputError("niceTicks: a log axis needs lo > 0, got " + general(lo));
  }
  TickSet set = log ? logTicks(lo, hi) : linearTicks(lo, hi);
  // At the ends of the double range a tick can overflow to inf or underflow to 0; the bound
  // itself then takes its place, so the ticks still enclose [lo, hi].
  for (double& v : set.values) {
    if (!std::isfinite(v) || (log && v <= 0)) v = v > 0 ? hi : lo;
  }
  return set;
}

// ---------------------------------------------------------------------------------------
// Axes

/// A tick label: ASCII text, then an optional superscript (the exponent of 10^k).
struct Label {
  std::string text, sup;
  double width() const { return textWidth(text, kFontSize) + textWidth(sup, kSupFontSize); }
  std::string svg() const {
    if (sup.empty()) return text;
    return text + "<tspan dy=\"-5\" font-size=\"" + px(kSupFontSize) + "\">" + sup + "</tspan>";
  }
};

std::vector<Label> tickLabels(const TickSet& set) {
  std::vector<Label> labels;
  if (set.kind == TickKind::LogDecades) {
    for (double v : set.values) labels.push_back({"10", std::to_string(decadeOf(v * (1 + 1e-12)))});
    return labels;
  }
  double largest = 0, smallest = DBL_MAX;
  for (double v : set.values) {
    largest = std::max(largest, std::fabs(v));
    if (v != 0) smallest = std::min(smallest, std::fabs(v));
  }
  // One style per axis: plain decimals where they stay short, else scientific for every tick.
  if (set.kind == TickKind::Linear) {
    const bool plain = largest < 1e5 && set.exponent >= -4;
    for (double v : set.values) {
      labels.push_back(
          {plain ? printed("%.*f", v, std::max(0, -set.exponent)) : scientific(v, set.exponent),
           ""});
    }
    return labels;
  }
  const bool plain = largest < 1e5 && smallest >= 1e-4;
  for (double v : set.values) {
    const int e = decadeOf(v * (1 + 1e-12));
    labels.push_back({plain ? printed("%.*f", v, std::max(0, -e)) : scientific(v, e), ""});
  }
  return labels;
}

struct Axis {
  bool log = false;
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  std::vector<Label> labels;
  std::vector<double> minor;  ///< unlabelled ticks of a log axis

  /// Where v lies from lo (0) to hi (1); bounded so that far-off values stay finite pixels.
  double fraction(double v) const {
    const double f = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v / 2 - lo / 2) / (hi / 2 - lo / 2);
    if (std::isnan(f)) return 0;  // limits so close that their difference underflowed
    return std::clamp(f, -1e6, 1e6);
  }
};

bool isSet(double limit) { return std::isfinite(limit); }

void checkLimits(const char* axis, bool log, double min_limit, double max_limit) {
  const std::string name(axis);
  if (log && isSet(min_limit) && min_limit <= 0) {
    throw InputError("plot: " + name + "_min = " + general(min_limit) + " on a log axis");
  }
  if (log && isSet(max_limit) && max_limit <= 0) {
    throw InputError("plot: " + name + "_max = " + general(max_limit) + " on a log axis");
  }
  if (isSet(min_limit) && isSet(max_limit) && !(min_limit < max_limit)) {
    throw InputError("plot: " + name + "_min = " + general(min_limit) + " is not below " + name +
                     "_max = " + general(max_limit));
  }
}

// The axis for data in [data_lo, data_hi] (drawable values only) and the panel's limits.
Axis makeAxis(bool log, double data_lo, double data_hi, double min_limit, double max_limit) {
  const bool has_min = isSet(min_limit), has_max = isSet(max_limit);
  double lo = has_min ? std::max(data_lo, min_limit) : data_lo;
  double hi = has_max ? std::min(data_hi, max_limit) : data_hi;
  if (lo > hi) {
    // All data beyond a limit: the axis runs from that limit towards the data.
    lo = hi = (has_max && data_lo > max_limit) ? max_limit : min_limit;
  }
  const TickSet set =
      (has_min && has_max) ? makeTicks(min_limit, max_limit, log) : makeTicks(lo, hi, log);
  Axis axis;
  axis.log = log;
  axis.lo = has_min ? min_limit : set.values.front();
  axis.hi = has_max ? max_limit : set.values.back();
  const std::vector<Label> labels = tickLabels(set);
  for (size_t i = 0; i < set.values.size(); ++i) {
    const double f = axis.fraction(set.values[i]);
    if (f >= -1e-9 && f <= 1 + 1e-9) {
      axis.ticks.push_back(set.values[i]);
      axis.labels.push_back(labels[i]);
    }
  }
  if (axis.ticks.size() < 2) {
    // A fixed range narrower than one tick step: label its ends instead.
    axis.ticks = {axis.lo, axis.hi};
    axis.labels = {{general(axis.lo), ""}, {general(axis.hi), ""}};
  }
  if (log) {
    // 2..9 x 10^k while the decades are wide enough to show them, else powers of ten only.
    const int a = decadeOf(axis.lo), b = decadeOf(axis.hi) + 1;
    const int last_mantissa = b - a <= 12 ? 9 : 1;
    if (b - a <= 100) {
      for (int e = a; e <= b; ++e) {
        for (int m = 1; m <= last_mantissa; ++m) {
          const double v = scaled(m, e);
          const double f = axis.fraction(v);
          if (f < 0 || f > 1) continue;
          bool labelled = false;
          for (double t : axis.ticks) labelled = labelled || std::fabs(t - v) <= 1e-9 * v;
          if (!labelled) axis.minor.push_back(v);
        }
      }
    }
  }
  return axis;
}

// ---------------------------------------------------------------------------------------
// Geometry

struct Point {
  double x, y;
};

struct Rect {
  double left, top, right, bottom;
  bool contains(Point p) const {
    return p.x >= left && p.x <= right && p.y >= top && p.y <= bottom;
  }
};

// Liang-Barsky: the part of segment a-b inside r as parameters t0 <= t1 along it.
bool clipSegment(Point a, Point b, const Rect& r, double* t0, double* t1) {
  *t0 = 0, *t1 = 1;
  const double dx = b.x - a.x, dy = b.y - a.y;
  // Keeps the part where p * t <= q.
  auto keep = [t0, t1](double p, double q) {
    if (p == 0) return q >= 0;
    const double t = q / p;
    if (p < 0) {
      if (t > *t1) return false;
      *t0 = std::max(*t0, t);
    } else {
      if (t < *t0) return false;
      *t1 = std::min(*t1, t);
    }
    return true;
  };
  return keep(-dx, a.x - r.left) && keep(dx, r.right - a.x) && keep(-dy, a.y - r.top) &&
         keep(dy, r.bottom - a.y);
}

// How many line samples fall in each 8 px cell of the plot area; the legend goes where the
// fewest are.
class Occupancy {
 public:
  explicit Occupancy(const Rect& r)
      : r_(r),
        columns_(std::max(1, static_cast<int>((r.right - r.left) / kCell) + 1)),
        rows_(std::max(1, static_cast<int>((r.bottom - r.top) / kCell) + 1)),
        counts_(static_cast<size_t>(columns_ * rows_), 0) {}

  void mark(Point p) { ++counts_[index(p)]; }
  void markSegment(Point a, Point b) {
    const int steps = static_cast<int>(std::hypot(b.x - a.x, b.y - a.y) / (kCell / 2)) + 1;
    for (int s = 0; s <= steps; ++s) {
      const double t = static_cast<double>(s) / steps;
      mark({a.x + t * (b.x - a.x), a.y + t * (b.y - a.y)});
    }
  }
  long count(const Rect& box) const {
    long total = 0;
    for (int j = row(box.top); j <= row(box.bottom); ++j) {
      for (int i = column(box.left); i <= column(box.right); ++i) {
        total += counts_[static_cast<size_t>(j * columns_ + i)];
      }
    }
    return total;
  }

 private:
  static constexpr double kCell = 8.0;
  int column(double x) const {
    return std::clamp(static_cast<int>((x - r_.left) / kCell), 0, columns_ - 1);
  }
  int row(double y) const {
    return std::clamp(static_cast<int>((y - r_.top) / kCell), 0, rows_ - 1);
  }
  size_t index(Point p) const { return static_cast<size_t>(row(p.y) * columns_ + column(p.x)); }

  Rect r_;
  int columns_, rows_;
  std::vector<long> counts_;
};

struct SeriesShape {
  std::string path;         ///< SVG path data, one subpath per unbroken visible run
  std::vector<Point> dots;  ///< drawable points with no drawable neighbour
  bool drawable = false;    ///< any point that passes the finiteness and log filters
};

// The pixel shape of one series: runs of drawable points joined, clipped to the frame.
SeriesShape traceSeries(const PlotSeries& series, const std::vector<char>& drawable,
                        const Axis& x_axis, const Axis& y_axis, const Rect& frame,
                        Occupancy* occupancy) {
  SeriesShape shape;
  auto toPixel = [&](size_t i) {
    return Point{frame.left + x_axis.fraction(series.x[i]) * (frame.right - frame.left),
                 frame.bottom - y_axis.fraction(series.y[i]) * (frame.bottom - frame.top)};
  };
  const size_t n = drawable.size();
  bool open = false;  // the current subpath ends at the previous point, unclipped
  Point previous{0, 0};
  for (size_t i = 0; i < n; ++i) {
    if (!drawable[i]) {
      open = false;
      continue;
    }
    shape.drawable = true;
    const Point p = toPixel(i);
    const bool has_previous = i > 0 && drawable[i - 1];
    const bool has_next = i + 1 < n && drawable[i + 1];
    if (!has_previous) {
      if (!has_next && frame.contains(p)) {
        shape.dots.push_back(p);
        occupancy->mark(p);
      }
      previous = p;
      continue;
    }
    double t0 = 0, t1 = 1;
    if (clipSegment(previous, p, frame, &t0, &t1)) {
      const double dx = p.x - previous.x, dy = p.y - previous.y;
      const Point a{previous.x + t0 * dx, previous.y + t0 * dy};
      const Point b{previous.x + t1 * dx, previous.y + t1 * dy};
      if (!open || t0 > 0) {
        shape.path += "M" + px(a.x) + " " + px(a.y) + "L";
      } else {
        shape.path += " ";  // implicit lineto after L
      }
      shape.path += px(b.x) + " " + px(b.y);
      occupancy->markSegment(a, b);
      open = t1 == 1;
    } else {
      open = false;
    }
    previous = p;
  }
  return shape;
}

// ---------------------------------------------------------------------------------------
// Panels

std::string strokeStyle(size_t index) {
  std::string style = std::string("stroke=\"") + kColours[index % std::size(kColours)] + "\"";
  const char* dash = kDashes[index % std::size(kDashes)];
  if (*dash) style += std::string(" stroke-dasharray=\"") + dash + "\"";
  return style;
}

// Indices of the ticks whose labels are drawn: every k-th, the smallest k for which
// neighbouring labels (centres `gap` apart, widths from `extent`) do not touch.
template <typename Extent>
size_t labelEvery(const std::vector<Label>& labels, double gap, Extent extent) {
  for (size_t every = 1; every < labels.size(); ++every) {
    bool fits = true;
    for (size_t i = every; i < labels.size() && fits; i += every) {
      fits = static_cast<double>(every) * gap >=
             0.5 * (extent(labels[i - every]) + extent(labels[i])) + 6;
    }
    if (fits) return every;
  }
  return std::max<size_t>(labels.size(), 1);
}

void renderPanel(std::ostringstream& os, const PlotPanel& panel, double width, double height) {
  checkLimits("x", panel.log_x, panel.x_min, panel.x_max);
  checkLimits("y", panel.log_y, panel.y_min, panel.y_max);
  // Which points can be drawn, and the range they span.
  std::vector<std::vector<char>> drawable(panel.series.size());
  size_t points = 0, finite = 0, usable = 0;
  double x_lo = DBL_MAX, x_hi = -DBL_MAX, y_lo = DBL_MAX, y_hi = -DBL_MAX;
  for (size_t s = 0; s < panel.series.size(); ++s) {
    const PlotSeries& series = panel.series[s];
    if (series.x.size() != series.y.size()) {
      throw InputError("plot: series '" + series.label + "' of panel '" + panel.title + "' has " +
                       std::to_string(series.x.size()) + " x values and " +
                       std::to_string(series.y.size()) + " y values");
    }
    drawable[s].assign(series.x.size(), 0);
    for (size_t i = 0; i < series.x.size(); ++i) {
      const double x = series.x[i], y = series.y[i];
      ++points;
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      ++finite;
      if ((panel.log_x && x <= 0) || (panel.log_y && y <= 0)) continue;
      ++usable;
      drawable[s][i] = 1;
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
    }
  }
  const bool has_data = usable > 0;
  Axis x_axis, y_axis;
  if (has_data) {
    x_axis = makeAxis(panel.log_x, x_lo, x_hi, panel.x_min, panel.x_max);
    y_axis = makeAxis(panel.log_y, y_lo, y_hi, panel.y_min, panel.y_max);
  }

  // Margins from what is written in them.
  double y_label_width = 0;
  for (const Label& label : y_axis.labels) y_label_width = std::max(y_label_width, label.width());
  const double right_label = x_axis.labels.empty() ? 0 : 0.5 * x_axis.labels.back().width();
  const Rect frame{(panel.y_label.empty() ? 10.0 : 28.0) + y_label_width + 8,
                   panel.title.empty() ? 14.0 : 34.0, width - std::max(16.0, right_label + 6),
                   height - (panel.x_label.empty() ? 26.0 : 44.0)};
  const double frame_width = frame.right - frame.left, frame_height = frame.bottom - frame.top;
  auto xPixel = [&](double v) { return frame.left + x_axis.fraction(v) * frame_width; };
  auto yPixel = [&](double v) { return frame.bottom - y_axis.fraction(v) * frame_height; };

  if (!panel.title.empty()) {
    os << "<text x=\"" << px(width / 2) << "\" y=\"22\" text-anchor=\"middle\" font-size=\""
       << px(kTitleFontSize) << "\" font-weight=\"bold\">" << xmlEscape(panel.title) << "</text>\n";
  }

  Occupancy occupancy(frame);
  std::vector<SeriesShape> shapes;
  if (has_data) {
    // Grid lines under the data, tick marks outside the frame.
    std::string grid, marks, minor;
    for (double t : x_axis.ticks) {
      grid += "M" + px(xPixel(t)) + " " + px(frame.top) + "V" + px(frame.bottom);
      marks += "M" + px(xPixel(t)) + " " + px(frame.bottom) + "v5";
    }
    for (double t : y_axis.ticks) {
      grid += "M" + px(frame.left) + " " + px(yPixel(t)) + "H" + px(frame.right);
      marks += "M" + px(frame.left) + " " + px(yPixel(t)) + "h-5";
    }
    for (double t : x_axis.minor) minor += "M" + px(xPixel(t)) + " " + px(frame.bottom) + "v3";
    for (double t : y_axis.minor) minor += "M" + px(frame.left) + " " + px(yPixel(t)) + "h-3";
    os << "<path class=\"grid\" d=\"" << grid << "\" stroke=\"#e4e4e4\" fill=\"none\"/>\n";
    os << "<path class=\"ticks\" d=\"" << marks << minor << "\" stroke=\"#333\" fill=\"none\"/>\n";

    for (size_t s = 0; s < panel.series.size(); ++s) {
      shapes.push_back(
          traceSeries(panel.series[s], drawable[s], x_axis, y_axis, frame, &occupancy));
      const SeriesShape& shape = shapes.back();
      if (shape.path.empty() && shape.dots.empty()) continue;
      os << "<g class=\"series\">\n<title>" << xmlEscape(panel.series[s].label) << "</title>\n";
      if (!shape.path.empty()) {
        os << "<path class=\"line\" d=\"" << shape.path << "\" fill=\"none\" " << strokeStyle(s)
           << " stroke-width=\"1.8\" stroke-linejoin=\"round\"/>\n";
      }
      for (const Point& p : shape.dots) {
        os << "<circle class=\"dot\" cx=\"" << px(p.x) << "\" cy=\"" << px(p.y)
           << "\" r=\"2.5\" fill=\"" << kColours[s % std::size(kColours)] << "\"/>\n";
      }
      os << "</g>\n";
    }
  }
  os << "<rect class=\"frame\" x=\"" << px(frame.left) << "\" y=\"" << px(frame.top)
     << "\" width=\"" << px(frame_width) << "\" height=\"" << px(frame_height)
     << "\" fill=\"none\" stroke=\"#333\"/>\n";

  if (has_data) {
    const double x_gap = x_axis.ticks.size() > 1
                             ? std::fabs(xPixel(x_axis.ticks[1]) - xPixel(x_axis.ticks[0]))
                             : frame_width;
    const double y_gap = y_axis.ticks.size() > 1
                             ? std::fabs(yPixel(y_axis.ticks[1]) - yPixel(y_axis.ticks[0]))
                             : frame_height;
    const size_t x_every =
        labelEvery(x_axis.labels, x_gap, [](const Label& l) { return l.width(); });
    const size_t y_every = labelEvery(y_axis.labels, y_gap, [](const Label&) { return kFontSize; });
    for (size_t i = 0; i < x_axis.ticks.size(); i += x_every) {
      os << "<text class=\"tick\" x=\"" << px(xPixel(x_axis.ticks[i])) << "\" y=\""
         << px(frame.bottom + 17) << "\" text-anchor=\"middle\">" << x_axis.labels[i].svg()
         << "</text>\n";
    }
    for (size_t i = 0; i < y_axis.ticks.size(); i += y_every) {
      os << "<text class=\"tick\" x=\"" << px(frame.left - 8) << "\" y=\""
         << px(yPixel(y_axis.ticks[i]) + 4) << "\" text-anchor=\"end\">" << y_axis.labels[i].svg()
         << "</text>\n";
    }
  } else {
    const char* note = points == 0   ? "no data"
                       : finite == 0 ? "no finite data"
                                     : "no positive data for the log axis";
    os << "<text class=\"note\" x=\"" << px(frame.left + frame_width / 2) << "\" y=\""
       << px(frame.top + frame_height / 2) << "\" text-anchor=\"middle\" fill=\"#777\""
       << " font-style=\"italic\">" << note << "</text>\n";
  }
  if (!panel.x_label.empty()) {
    os << "<text x=\"" << px(frame.left + frame_width / 2) << "\" y=\"" << px(height - 10)
       << "\" text-anchor=\"middle\">" << xmlEscape(panel.x_label) << "</text>\n";
  }
  if (!panel.y_label.empty()) {
    // Rotated about the origin, so x runs upwards (negated) and y is the distance from the
    // left edge.
    os << "<text transform=\"rotate(-90)\" x=\"" << px(-(frame.top + frame_height / 2))
       << "\" y=\"16\" text-anchor=\"middle\">" << xmlEscape(panel.y_label) << "</text>\n";
  }

  // Legend: every series, in the frame corner that covers the fewest line samples (the
  // upper right first, which convergence curves usually leave empty).
  if (panel.series.empty()) return;
  constexpr double kRowHeight = 16, kSample = 26, kInset = 8;
  std::vector<std::string> entries;
  double text_width = 0;
  for (size_t s = 0; s < panel.series.size(); ++s) {
    const bool shown = has_data && shapes[s].drawable;
    const std::string entry = panel.series[s].label + (shown ? "" : " (no data)");
    text_width = std::max(text_width, textWidth(entry, kFontSize));
    entries.push_back(xmlEscape(entry));
  }
  const double box_width = 8 + kSample + 6 + text_width + 8;
  const double box_height = 6 + kRowHeight * static_cast<double>(entries.size());
  const Point corners[] = {{frame.right - kInset - box_width, frame.top + kInset},
                           {frame.left + kInset, frame.bottom - kInset - box_height},
                           {frame.left + kInset, frame.top + kInset},
                           {frame.right - kInset - box_width, frame.bottom - kInset - box_height}};
  Point corner = corners[0];
  long best = -1;
  for (const Point& c : corners) {
    const long covered = occupancy.count({c.x, c.y, c.x + box_width, c.y + box_height});
    if (best < 0 || covered < best) best = covered, corner = c;
  }
  os << "<g class=\"legend\">\n<rect x=\"" << px(corner.x) << "\" y=\"" << px(corner.y)
     << "\" width=\"" << px(box_width) << "\" height=\"" << px(box_height)
     << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n";
  for (size_t s = 0; s < entries.size(); ++s) {
    const double y = corner.y + 3 + kRowHeight * (static_cast<double>(s) + 0.5);
    os << "<path d=\"M" << px(corner.x + 8) << " " << px(y) << "h" << px(kSample) << "\" "
       << strokeStyle(s) << " stroke-width=\"1.8\" fill=\"none\"/>\n"
       << "<text x=\"" << px(corner.x + 8 + kSample + 6) << "\" y=\"" << px(y + 4) << "\">"
       << entries[s] << "</text>\n";
  }
  os << "</g>\n";
}

}  // namespace

std::vector<double> niceTicks(double lo, double hi, bool log) {
  return makeTicks(lo, hi, log).values;
}

std::string renderSvg(const std::vector<PlotPanel>& panels, const PlotLayout& layout) {
  if (layout.columns < 1 || layout.panel_width < 200 || layout.panel_height < 150 ||
      layout.panel_width > 100000 || layout.panel_height > 100000) {
    throw InputError(
        "plot: layout needs columns >= 1 and panels of 200 x 150 to 100000 x 100000 "
        "pixels, got " +
        std::to_string(layout.columns) + " columns of " + std::to_string(layout.panel_width) +
        " x " + std::to_string(layout.panel_height));
  }
  const std::vector<PlotPanel> placeholder(1);
  const std::vector<PlotPanel>& shown = panels.empty() ? placeholder : panels;
  const size_t count = shown.size();
  const size_t columns = std::min(count, static_cast<size_t>(layout.columns));
  const size_t rows = (count + columns - 1) / columns;
  const double title_band = layout.title.empty() ? 0 : 30;
  const double panel_width = layout.panel_width, panel_height = layout.panel_height;
  const double width = panel_width * static_cast<double>(columns);
  const double height = title_band + panel_height * static_cast<double>(rows);

  std::ostringstream os;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
     << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << px(width)
     << "\" height=\"" << px(height) << "\" viewBox=\"0 0 " << px(width) << " " << px(height)
     << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"" << px(kFontSize)
     << "\">\n";
  if (!layout.title.empty()) os << "<title>" << xmlEscape(layout.title) << "</title>\n";
  os << "<rect width=\"" << px(width) << "\" height=\"" << px(height) << "\" fill=\"white\"/>\n";
  if (!layout.title.empty()) {
    os << "<text x=\"" << px(width / 2) << "\" y=\"21\" text-anchor=\"middle\" font-size=\"15.00\""
       << " font-weight=\"bold\">" << xmlEscape(layout.title) << "</text>\n";
  }
  for (size_t p = 0; p < count; ++p) {
    const double x = panel_width * static_cast<double>(p % columns);
    const double y = title_band + panel_height * static_cast<double>(p / columns);
    os << "<g class=\"panel\" transform=\"translate(" << px(x) << "," << px(y) << ")\">\n";
    renderPanel(os, shown[p], panel_width, panel_height);
    os << "</g>\n";
  }
  os << "</svg>\n";
  return os.str();
}

void writeSvg(const std::string& path, const std::vector<PlotPanel>& panels,
              const PlotLayout& layout, MPI_Comm comm) {
  std::string error;
  if (rankOf(comm) == 0) {
    // Rendering errors are caught too: they happen on rank 0 alone and must reach every rank.
    try {
      const std::string svg = renderSvg(panels, layout);
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      if (!out) {
        error = "cannot open SVG file '" + path + "': " + std::strerror(errno);
      } else {
        out << svg;
        out.close();
        if (!out) error = "error while writing SVG file '" + path + "'";
      }
    } catch (const std::exception& e) {
      error = "cannot write SVG file '" + path + "': " + e.what();
    }
  }
  raiseRootError(comm, error);
}

}  // namespace physgrad
