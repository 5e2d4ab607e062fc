#pragma once
// One optimiser loop, several update rules, one monitor and one summary format.
//
// Update rules of our own (GD with a fixed step or Armijo backtracking, Gauss-Newton-
// Krylov, Newton with a user Hessian action, IG, PG, HIG) share one loop with its status
// tests; L-BFGS, bounded quasi-Newton and nonlinear CG run inside PETSc TAO and report
// through the same monitor, so every optimiser prints and records the same rows.

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
  double loss_tol = 0.0;  ///< stop when L <= loss_tol (0: off)
  /// Stop when sqrt(L / L0) <= residual_rtol, i.e. the misfit has dropped to round-off
  /// relative to the start (for the squared loss: ||y - y*|| / ||y0 - y*||).
  double residual_rtol = 1e-12;
  /// Stop when |g| <= grad_rtol |g_0| (rules that compute the gradient; 0: off).
  double grad_rtol = 0.0;
  double target_error = 0.0;   ///< stop when the relative L2 x-error <= this (0: off)
  double time_budget = 0.0;    ///< seconds per optimiser (0: off)
  double gd_step = 1.0;        ///< fixed GD step; also the first trial step of Armijo GD
  double armijo_c1 = 1e-4;     ///< sufficient-decrease constant
  double armijo_shrink = 0.5;  ///< backtracking factor
  PetscInt armijo_max_backtracks = 40;
  double pg_eta = 1.0;     ///< PG/IG step in y: dy = eta * (Newton step of L in y)
  double pg_shrink = 0.5;  ///< factor on eta when PG/IG/HIG do not decrease the loss
  PetscInt pg_max_shrinks = 3;
  std::string ig_method = "gmres";  ///< gmres | lsqr | cgls | normal_cg
  double ig_rtol = 1e-8;            ///< Krylov tolerance of the IG solve J dx = dy
  PetscInt ig_max_it = 200;
  double ig_damping = 0.0;     ///< Tikhonov mu of the IG solve (normal_cg only)
  double gn_damping = 0.0;     ///< mu in (J^T J + mu I) p = -J^T r
  PetscInt gn_max_cg = 100;    ///< CG cap per Gauss-Newton step
  double newton_eta = 1.0;     ///< fixed Newton step factor
  double newton_rtol = 1e-10;  ///< CG tolerance of the Newton system
  double hig_eta = 1.0;        ///< HIG step factor
  double hig_rcond = 1e-6;     ///< singular values below rcond * sigma_max are dropped
  PetscInt hig_lanczos = 30;   ///< Lanczos steps on J^T J per HIG update
  bool monitor = true;         ///< print one line per iteration on rank 0

  /// Names accepted by -opt_type.
  static const std::vector<std::string>& knownTypes();
  /// Throws InputError naming the option and the allowed values.
  void validate() const;
  /// Defaults overridden by the options database; every option appears in -help.
  static OptimizerOptions fromCommandLine(MPI_Comm comm, const std::string& prefix = "opt_");
  /// The same starting from a program's own defaults (which -help then shows).
  static OptimizerOptions fromCommandLine(MPI_Comm comm, const std::string& prefix,
                                          OptimizerOptions defaults);
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
  GradientTolerance,
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
  int fallbacks = 0;     ///< iterations whose update fell back to another rule
  int fallbacks_ig = 0;  ///< ... to IG (PG only)
  int fallbacks_gd = 0;  ///< ... to Armijo GD
  double wall = 0.0;
  std::vector<IterationRecord> history;

  std::string briefReport() const;
  std::string fullReport() const;
};

/// Called after each iteration with the record and the iterate x (read-only).
using IterationCallback =
    std::function<void(const std::string& optimizer, const IterationRecord&, Vec x)>;

/// Runs optimiser `type` from the x given (overwritten with the result).
Summary runOptimizer(const std::string& type, InverseProblem& problem, Vec x,
                     const OptimizerOptions& options, const IterationCallback& callback = {});

/// The HIG direction at x: dx = -eta (J^T J)^{-3/4} J^T dL/dy, by Lanczos on J^T J
/// (o.hig_lanczos steps, full reorthogonalisation) with eigenvalues of J^T J below
/// rcond^2 lambda_max (singular values below rcond sigma_max) dropped, the small
/// tridiagonal eigenproblem solved with Eigen.  Returns the Lanczos steps taken.
int halfInverseGradientDirection(InverseProblem& problem, Vec x, const OptimizerOptions& o, Vec dx);

/// The standard monitor line on rank 0.
void printIteration(const std::string& optimizer, const IterationRecord& r);

/// Markdown table comparing several runs (iterations, final loss, errors, solves, time).
std::string comparisonTable(const std::vector<Summary>& runs);

}  // namespace physgrad
