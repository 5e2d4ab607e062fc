#pragma once
// Line charts as standalone SVG 1.1 files, for convergence histories (loss and reconstruction
// error against iteration or wall time) on machines without a plotting package. The output
// needs no fonts, scripts or style sheets beyond what every browser has, so a run directory
// can be looked at in any browser or image viewer.

#include <petscsys.h>

#include <limits>
#include <string>
#include <vector>

namespace physgrad {

/// One line of a panel: the points (x[i], y[i]) joined in the order given. A point with a
/// non-finite coordinate, or a coordinate <= 0 on a log axis, is left out and the line is
/// broken there (nothing is drawn to zero or to the edge); a point with no drawable
/// neighbour is drawn as a dot. x and y must have the same length.
struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
};

/// One chart. Axis ranges come from the drawable points, widened to the enclosing ticks
/// (see niceTicks); a finite limit fixes that end of the axis instead, and what lies beyond
/// it is clipped at the frame.
struct PlotPanel {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = true;
  double x_min = std::numeric_limits<double>::quiet_NaN();  ///< NaN: from the data
  double x_max = std::numeric_limits<double>::quiet_NaN();
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
  std::vector<PlotSeries> series;
};

/// How panels are arranged in one figure: row by row, `columns` to a row.
struct PlotLayout {
  int columns = 2;         ///< >= 1; fewer panels than this make a narrower figure
  int panel_width = 480;   ///< pixels, >= 200
  int panel_height = 360;  ///< pixels, >= 150
  std::string title;       ///< over the whole figure; none when empty
};

/// Tick values that enclose [lo, hi]: ascending, at least two, the first <= lo and the last
/// >= hi. Linear axes: multiples of one step 1, 2 or 5 x 10^k, about five intervals. Log axes
/// (lo > 0): values 1, 2 or 5 x 10^k when that takes at most six ticks, else powers of ten,
/// every one or every 2, 3, 5, 10, ... decades so that at most about eight are labelled.
/// lo == hi is widened (by 10% of |lo|, or to [-1, 1] around zero; by a factor of 2 on a
/// log axis). Throws InputError for non-finite bounds, lo > hi, or lo <= 0 on a log axis.
std::vector<double> niceTicks(double lo, double hi, bool log);

/// The whole SVG document (UTF-8) with the panels in a grid. Every text is XML-escaped and
/// invalid UTF-8 is replaced, so labels may hold any bytes. A panel without drawable points
/// is an empty frame with a note; an empty panel list gives one such frame. Throws
/// InputError for a series whose x and y differ in length, a bad layout, or invalid limits
/// (not min < max, or <= 0 on a log axis).
std::string renderSvg(const std::vector<PlotPanel>& panels, const PlotLayout& layout = {});

/// Renders `panels` on rank 0 of `comm` and writes them to `path` (truncated); the other
/// ranks' panels are not looked at and may be empty. Collective: any error (unwritable
/// path, invalid input) is thrown as InputError on every rank, naming the path.
void writeSvg(const std::string& path, const std::vector<PlotPanel>& panels,
              const PlotLayout& layout = {}, MPI_Comm comm = PETSC_COMM_WORLD);

}  // namespace physgrad
