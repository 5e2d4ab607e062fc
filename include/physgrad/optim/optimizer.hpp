#pragma once
// One optimiser loop, several update rules, one monitor and one summary format.
//
// Update rules of our own (GD with a fixed step, GD with Armijo backtracking, the
// physical gradient PG) run in runOwnLoop(); L-BFGS runs inside PETSc TAO (lmvm) and
// reports through the same monitor, so every optimiser prints and records the same rows.

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "physgrad/inverse/inverse_problem.hpp"

namespace physgrad {

/// Options of every optimiser, read from the PETSc options database under a prefix
/// (default "opt_", i.e. -opt_type, -opt_max_it, ...).
struct OptimizerOptions {
  std::vector<std::string> types = {"gd", "gd_armijo", "lbfgs", "pg"};
  PetscInt max_it = 50;
  double loss_tol = 0.0;      ///< stop when L <= loss_tol (0: off)
  /// Stop when sqrt(L / L0) <= residual_rtol, i.e. the misfit has dropped to round-off
  /// relative to the start (for the squared loss: ||y - y*|| / ||y0 - y*||).
  double residual_rtol = 1e-12;
  double target_error = 0.0;  ///< stop when the relative L2 x-error <= this (0: off)
  double time_budget = 0.0;   ///< seconds per optimiser (0: off)
  double gd_step = 1.0;       ///< fixed GD step; also the first trial step of Armijo GD
  double armijo_c1 = 1e-4;    ///< sufficient-decrease constant
  double armijo_shrink = 0.5; ///< backtracking factor
  PetscInt armijo_max_backtracks = 40;
  double pg_eta = 1.0;        ///< PG step in y: dy = eta * (Newton step of L in y)
  double pg_shrink = 0.5;     ///< factor on eta when PG does not decrease the loss
  PetscInt pg_max_shrinks = 3;
  bool monitor = true;        ///< print one line per iteration on rank 0

  /// Names accepted by -opt_type.
  static const std::vector<std::string>& knownTypes();
  /// Throws InputError naming the option and the allowed values.
  void validate() const;
  /// Defaults overridden by the options database; every option appears in -help.
  static OptimizerOptions fromCommandLine(MPI_Comm comm, const std::string& prefix = "opt_");
};

/// One row of the monitor and of the history CSV.
struct IterationRecord {
  int iteration = 0;
  double loss = 0.0;
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  ///< NaN when not computed
  double x_error = std::numeric_limits<double>::quiet_NaN();    ///< relative L2, NaN if no truth
  double step = 0.0;  ///< step length actually taken (GD: alpha, PG: eta, L-BFGS: line search)
  SolveCounts solves;
  double wall = 0.0;  ///< seconds since the optimiser started
  std::string note;   ///< e.g. a PG fallback
};

enum class Termination {
  MaxIterations,
  LossTolerance,
  ResidualTolerance,
  TargetError,
  TimeBudget,
  NonFinite,
  LineSearchFailed,
  LibraryConverged,  ///< TAO stopped on its own criteria (see Summary::detail)
  LibraryDiverged,
};
const char* toString(Termination t);

struct Summary {
  std::string optimizer;
  Termination termination = Termination::MaxIterations;
  std::string detail;  ///< extra words on the termination (e.g. TAO's reason)
  int iterations = 0;
  double initial_loss = 0.0, final_loss = 0.0;
  XError x_error;  ///< of the final iterate; zeros when no truth is known
  bool has_truth = false;
  SolveCounts solves;
  int fallbacks = 0;  ///< PG iterations that fell back to a gradient step
  double wall = 0.0;
  std::vector<IterationRecord> history;

  std::string briefReport() const;
  std::string fullReport() const;
};

/// Called after each iteration; returning false stops the run (Termination::...User is
/// not needed here: the driver decides by target error / budget in the options).
using IterationCallback = std::function<void(const std::string& optimizer, const IterationRecord&)>;

/// Runs optimiser `type` from the x given (overwritten with the result).
Summary runOptimizer(const std::string& type, InverseProblem& problem, Vec x,
                     const OptimizerOptions& options, const IterationCallback& callback = {});

/// The standard monitor line on rank 0.
void printIteration(const std::string& optimizer, const IterationRecord& r);

/// Markdown table comparing several runs (iterations, final loss, errors, solves, time).
std::string comparisonTable(const std::vector<Summary>& runs);

}  // namespace physgrad
