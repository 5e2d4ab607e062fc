#include "physgrad/optim/comparison.hpp"

#include <cstdio>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/io/plot.hpp"

namespace physgrad {
namespace {

void writeHistory(const std::string& path, const Summary& s) {
  CsvWriter csv(path, {"iteration", "loss", "grad_norm", "x_rel_l2_error", "step", "forward_solves",
                       "adjoint_solves", "tangent_solves", "inverse_solves", "wall_s", "note"});
  for (const auto& r : s.history) {
    csv.row(std::vector<std::string>{
        std::to_string(r.iteration), CsvWriter::format(r.loss), CsvWriter::format(r.grad_norm),
        CsvWriter::format(r.x_error), CsvWriter::format(r.step),
        CsvWriter::format(r.solves.forward), CsvWriter::format(r.solves.adjoint),
        CsvWriter::format(r.solves.tangent), CsvWriter::format(r.solves.inverse),
        CsvWriter::format(r.wall), r.note});
  }
  csv.close();
}

void writeTable(const std::string& path, const std::vector<Summary>& runs) {
  CsvWriter csv(path, {"optimizer", "termination", "iterations", "initial_loss", "final_loss",
                       "x_rel_l2_error", "x_mean_abs_error", "x_sum_abs_error", "forward_solves",
                       "adjoint_solves", "tangent_solves", "inverse_solves", "fallbacks_ig",
                       "fallbacks_gd", "wall_s"});
  for (const auto& s : runs) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    csv.row(std::vector<std::string>{
        s.optimizer, toString(s.termination), std::to_string(s.iterations),
        CsvWriter::format(s.initial_loss), CsvWriter::format(s.final_loss),
        CsvWriter::format(s.has_truth ? s.x_error.relative_l2 : nan),
        CsvWriter::format(s.has_truth ? s.x_error.mean_abs : nan),
        CsvWriter::format(s.has_truth ? s.x_error.sum_abs : nan),
        CsvWriter::format(s.solves.forward), CsvWriter::format(s.solves.adjoint),
        CsvWriter::format(s.solves.tangent), CsvWriter::format(s.solves.inverse),
        std::to_string(s.fallbacks_ig), std::to_string(s.fallbacks_gd), CsvWriter::format(s.wall)});
  }
  csv.close();
}

// Rank 0 writes; a failure is reported on every rank.
void writeText(const std::string& path, const std::string& text) {
  int ok = 1;
  if (isRoot()) {
    FILE* f = std::fopen(path.c_str(), "w");
    ok = f && std::fputs(text.c_str(), f) >= 0;
    if (f && std::fclose(f) != 0) ok = 0;
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, PETSC_COMM_WORLD);
  if (!ok) throw InputError("cannot write " + path);
}

std::vector<PlotPanel> convergencePanels(const std::vector<Summary>& runs, bool truth) {
  std::vector<PlotPanel> panels;
  for (int by_time = 0; by_time < 2; ++by_time) {
    for (int error = 0; error < (truth ? 2 : 1); ++error) {
      PlotPanel p;
      p.title = std::string(error ? "reconstruction error" : "loss") +
                (by_time ? " against wall time" : " against iterations");
      p.x_label = by_time ? "wall time [s]" : "iteration";
      p.y_label = error ? "||x - x*|| / ||x*||" : "loss";
      p.log_y = true;
      p.log_x = by_time == 1;  // wall times span decades between the rules
      for (const auto& s : runs) {
        PlotSeries series;
        series.label = s.optimizer;
        for (const auto& r : s.history) {
          series.x.push_back(by_time ? r.wall : r.iteration);
          series.y.push_back(error ? r.x_error : r.loss);
        }
        p.series.push_back(std::move(series));
      }
      panels.push_back(std::move(p));
    }
  }
  return panels;
}

}  // namespace

Comparison compareOptimizers(InverseProblem& problem, Vec x0, const OptimizerOptions& options,
                             const ComparisonOptions& c, const IterationCallback& callback) {
  options.validate();
  Comparison result;
  for (const auto& type : options.types) {
    OwnedVec x = problem.createField();
    PG_CALL(VecCopy(x0, x));
    result.runs.push_back(runOptimizer(type, problem, x, options, callback));
    result.solutions.push_back(std::move(x));
  }
  if (c.output_dir.empty()) return result;
  ensureDirectory(c.output_dir);
  for (const auto& s : result.runs)
    writeHistory(c.output_dir + "/history_" + s.optimizer + ".csv", s);
  writeTable(c.output_dir + "/comparison.csv", result.runs);
  writeText(c.output_dir + "/comparison.md",
            (c.title.empty() ? "" : "## " + c.title + "\n\n") + comparisonTable(result.runs));
  if (c.write_figure) {
    PlotLayout layout;
    layout.title = c.title;
    writeSvg(c.output_dir + "/convergence.svg", convergencePanels(result.runs, problem.hasTruth()),
             layout);
  }
  return result;
}

}  // namespace physgrad
