// The physical-gradient chapter's toy problem: y = (x0, x1^2), L = |y|^2, from x = (3, 3).
// Runs GD (eta 0.01), Newton (eta 1/3), IG and PG (eta 0.3 in y) for 10 iterations, prints
// the trajectories and draws them (book_toy_out/trajectories.svg).

#include <cstdio>
#include <string>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/core/main.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/io/plot.hpp"
#include "physgrad/optim/optimizer.hpp"
#include "physgrad/physics/simulator.hpp"
#include "physgrad/physics/toy.hpp"

namespace pg = physgrad;

static const char kHelp[] =
    "book_toy: the toy comparison of the physical-gradient chapter.  y(x) = (x0, x1^2),\n"
    "L = |y|^2, start (3, 3).  The book's step sizes are the defaults: -opt_gd_step 0.01,\n"
    "-opt_newton_eta 1/3, -opt_pg_eta 0.3 (PG and IG).  Writes trajectories.csv and\n"
    "trajectories.svg to -output_dir.  The problem has two unknowns: every rank solves it\n"
    "alone and rank 0 reports.\n\n";

namespace {

int run() {
  pg::OptimizerOptions defaults;
  defaults.types = {"gd", "newton", "ig", "pg"};
  defaults.max_it = 10;
  defaults.gd_step = 0.01;
  defaults.newton_eta = 1.0 / 3.0;
  defaults.pg_eta = 0.3;
  defaults.residual_rtol = 0.0;
  defaults.ig_rtol = 1e-14;
  defaults.monitor = false;
  pg::OptimizerOptions o =
      pg::OptimizerOptions::fromCommandLine(PETSC_COMM_WORLD, "opt_", defaults);
  char out[PETSC_MAX_PATH_LEN] = "book_toy_out";
  PetscReal start[2] = {3.0, 3.0};
  PetscInt nstart = 2;
  PetscBool start_set = PETSC_FALSE;
  PetscOptionsBegin(PETSC_COMM_WORLD, nullptr, "Book toy problem", nullptr);
  PG_CALL(PetscOptionsString("-output_dir", "Directory for trajectories.csv/.svg", nullptr, out,
                             out, sizeof out, nullptr));
  PG_CALL(PetscOptionsRealArray("-start", "Starting point x0,x1 (x1 != 0)", nullptr, start, &nstart,
                                nullptr));
  PetscOptionsEnd();
  if (pg::helpRequested()) return 0;
  if (start_set && nstart != 2) throw pg::InputError("option -start needs two values: x0,x1");
  if (start[1] == 0.0) throw pg::InputError("option -start: x1 must be non-zero (J is singular)");

  pg::Grid grid(PETSC_COMM_SELF, pg::toyGridSpec());
  auto step = std::make_shared<pg::BookToyStep>(grid);
  pg::Simulator sim(grid, {step});
  pg::OwnedVec zero = grid.createGlobal(), x = grid.createGlobal();
  pg::SquaredLoss loss(zero, 2.0);  // L = |y|^2
  pg::InverseProblem problem(sim, loss);
  problem.setHessianAction(pg::bookToyHessian());

  const std::string dir = out;
  pg::ensureDirectory(dir);
  pg::CsvWriter csv(dir + "/trajectories.csv", {"optimizer", "iteration", "x0", "x1", "loss"});
  pg::PlotPanel path, losses;
  path.title = "trajectories in x";
  path.x_label = "x0";
  path.y_label = "x1";
  path.log_y = false;
  losses.title = "loss against iterations";
  losses.x_label = "iteration";
  losses.y_label = "L = |y|^2";
  for (const auto& type : o.types) {
    PG_CALL(VecSetValue(x, 0, start[0], INSERT_VALUES));
    PG_CALL(VecSetValue(x, 1, start[1], INSERT_VALUES));
    PG_CALL(VecAssemblyBegin(x));
    PG_CALL(VecAssemblyEnd(x));
    pg::PlotSeries xs{type, {}, {}}, ls{type, {}, {}};
    pg::rootPrintf("%s\n  it          x0           x1         loss\n", type.c_str());
    const pg::Summary s = pg::runOptimizer(
        type, problem, x, o, [&](const std::string&, const pg::IterationRecord& r, Vec xi) {
          const PetscScalar* a = nullptr;
          PG_CALL(VecGetArrayRead(xi, &a));
          pg::rootPrintf("  %2d  %11.6f  %11.6f  %11.4e\n", r.iteration, a[0], a[1], r.loss);
          csv.row(std::vector<std::string>{type, std::to_string(r.iteration),
                                           pg::CsvWriter::format(a[0]), pg::CsvWriter::format(a[1]),
                                           pg::CsvWriter::format(r.loss)});
          xs.x.push_back(a[0]);
          xs.y.push_back(a[1]);
          ls.x.push_back(r.iteration);
          ls.y.push_back(r.loss);
          PG_CALL(VecRestoreArrayRead(xi, &a));
        });
    pg::rootPrintf("  -> %s\n\n", s.briefReport().c_str());
    path.series.push_back(std::move(xs));
    losses.series.push_back(std::move(ls));
  }
  csv.close();
  pg::PlotLayout layout;
  layout.title = "book toy: y = (x0, x1^2), L = |y|^2";
  pg::writeSvg(dir + "/trajectories.svg", {path, losses}, layout);
  pg::rootPrintf("trajectories written to %s/trajectories.{csv,svg}\n", dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pg::runMain(argc, argv, kHelp, run); }
