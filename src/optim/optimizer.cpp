// The optimiser loop: monitor, status tests, summaries and the dispatch to update rules.

#include "physgrad/optim/optimizer.hpp"

#include <cstdio>

#include "loop.hpp"

namespace physgrad {

const char* toString(Termination t) {
  switch (t) {
    case Termination::MaxIterations:
      return "iteration cap";
    case Termination::LossTolerance:
      return "loss tolerance";
    case Termination::ResidualTolerance:
      return "residual at round-off";
    case Termination::GradientTolerance:
      return "gradient tolerance";
    case Termination::TargetError:
      return "target x-error";
    case Termination::TimeBudget:
      return "time budget";
    case Termination::NonFinite:
      return "non-finite loss";
    case Termination::LineSearchFailed:
      return "line search failed";
    case Termination::LibraryConverged:
      return "TAO converged";
    case Termination::LibraryDiverged:
      return "TAO diverged";
  }
  return "unknown";
}

void printIteration(const std::string& optimizer, const IterationRecord& r) {
  char gnorm[32], xerr[32];
  if (std::isnan(r.grad_norm))
    std::snprintf(gnorm, sizeof gnorm, "%9s", "-");
  else
    std::snprintf(gnorm, sizeof gnorm, "%9.3e", r.grad_norm);
  if (std::isnan(r.x_error))
    std::snprintf(xerr, sizeof xerr, "%9s", "-");
  else
    std::snprintf(xerr, sizeof xerr, "%9.3e", r.x_error);
  rootPrintf(
      "%-10s it %4d  loss %11.5e  |g| %s  x-err %s  step %9.3e  F/A/T/I %5.0f/%5.0f/%5.0f/%5.0f"
      "  t %8.3f s%s%s\n",
      optimizer.c_str(), r.iteration, r.loss, gnorm, xerr, r.step, r.solves.forward,
      r.solves.adjoint, r.solves.tangent, r.solves.inverse, r.wall, r.note.empty() ? "" : "  ",
      r.note.c_str());
}

namespace optim_detail {

RunRecorder::RunRecorder(const std::string& name, InverseProblem& problem,
                         const OptimizerOptions& options, const IterationCallback& callback)
    : problem_(problem), options_(options), callback_(callback), start_(wallTime()) {
  summary_.optimizer = name;
  summary_.has_truth = problem.hasTruth();
  problem_.clearCache();  // runs compared side by side each pay for their first solve
  problem_.resetCounts();
}

bool RunRecorder::record(int it, Vec x, double loss, double grad_norm, double step,
                         std::string note) {
  IterationRecord r;
  r.iteration = it;
  r.loss = loss;
  r.grad_norm = grad_norm;
  r.step = step;
  r.note = std::move(note);
  r.solves = problem_.counts();
  r.wall = wallTime() - start_;
  if (problem_.hasTruth()) r.x_error = problem_.xError(x).relative_l2;
  summary_.history.push_back(r);
  if (it == 0) summary_.initial_loss = loss;
  summary_.iterations = it;
  if (options_.monitor) printIteration(summary_.optimizer, r);
  if (callback_) callback_(summary_.optimizer, r, x);
  return statusSaysStop(r);
}

void RunRecorder::finish(Vec x, double loss) {
  summary_.final_loss = loss;
  if (problem_.hasTruth()) summary_.x_error = problem_.xError(x);
  summary_.solves = problem_.counts();
  summary_.wall = wallTime() - start_;
}

bool RunRecorder::statusSaysStop(const IterationRecord& r) {
  if (!std::isfinite(r.loss)) {
    if (summary_.detail.empty()) summary_.detail = problem_.lastRejection();
    return stop(Termination::NonFinite);
  }
  if (options_.loss_tol > 0.0 && r.loss <= options_.loss_tol)
    return stop(Termination::LossTolerance);
  if (options_.residual_rtol > 0.0 && r.iteration > 0 &&
      r.loss <= options_.residual_rtol * options_.residual_rtol * summary_.initial_loss)
    return stop(Termination::ResidualTolerance);
  if (!std::isnan(r.grad_norm) && std::isnan(first_grad_norm_)) first_grad_norm_ = r.grad_norm;
  if (options_.grad_rtol > 0.0 && !std::isnan(r.grad_norm) && r.iteration > 0 &&
      r.grad_norm <= options_.grad_rtol * first_grad_norm_)
    return stop(Termination::GradientTolerance);
  if (options_.target_error > 0.0 && !std::isnan(r.x_error) && r.x_error <= options_.target_error)
    return stop(Termination::TargetError);
  if (options_.time_budget > 0.0 && r.wall >= options_.time_budget)
    return stop(Termination::TimeBudget);
  if (r.iteration >= options_.max_it) return stop(Termination::MaxIterations);
  return false;
}

bool RunRecorder::stop(Termination t) {
  summary_.termination = t;
  return true;
}

double armijoStep(InverseProblem& problem, Vec x, double& loss, Vec g, double g2, double first_step,
                  const OptimizerOptions& o, Workspace& w) {
  PG_CALL(VecScale(g, -1.0));
  const double step = armijoAlong(problem, x, loss, g, -g2, first_step, o, w);
  PG_CALL(VecScale(g, -1.0));
  return step;
}

double gradientFallback(InverseProblem& problem, Vec x, double& loss, const OptimizerOptions& o,
                        Workspace& w, double* grad_norm) {
  loss = problem.valueAndGradient(x, w.g);
  const double gnorm = norm2(w.g);
  if (grad_norm) *grad_norm = gnorm;
  const double step = armijoStep(problem, x, loss, w.g, gnorm * gnorm, o.gd_step, o, w);
  problem.evaluate(x, w.yx);
  return step;
}

double armijoAlong(InverseProblem& problem, Vec x, double& loss, Vec d, double slope,
                   double first_step, const OptimizerOptions& o, Workspace& w) {
  if (!(slope < 0.0)) return 0.0;  // not a descent direction
  double alpha = first_step;
  for (PetscInt k = 0; k < o.armijo_max_backtracks; ++k) {
    PG_CALL(VecWAXPY(w.trial, alpha, d, x));
    const double trial_loss = problem.evaluate(w.trial, w.y);
    if (std::isfinite(trial_loss) && trial_loss <= loss + o.armijo_c1 * alpha * slope) {
      PG_CALL(VecCopy(w.trial, x));
      loss = trial_loss;
      return alpha;
    }
    alpha *= o.armijo_shrink;
  }
  return 0.0;
}

double backtrackAlong(InverseProblem& problem, Vec x, double& loss, Vec dx, double eta,
                      const OptimizerOptions& o, Workspace& w, int* shrinks) {
  for (int k = 0; k <= o.pg_max_shrinks; ++k, eta *= o.pg_shrink) {
    PG_CALL(VecWAXPY(w.trial, eta, dx, x));
    const double trial_loss = problem.evaluate(w.trial, w.y);
    if (std::isfinite(trial_loss) && trial_loss < loss) {
      PG_CALL(VecCopy(w.trial, x));
      loss = trial_loss;
      if (shrinks) *shrinks = k;
      return eta;
    }
  }
  if (shrinks) *shrinks = static_cast<int>(o.pg_max_shrinks) + 1;
  return 0.0;
}

}  // namespace optim_detail

Summary runOptimizer(const std::string& type, InverseProblem& problem, Vec x,
                     const OptimizerOptions& options, const IterationCallback& callback) {
  using namespace optim_detail;
  options.validate();
  if (type == "gd") return runGradientDescent("gd", false, problem, x, options, callback);
  if (type == "gd_armijo")
    return runGradientDescent("gd_armijo", true, problem, x, options, callback);
  if (type == "pg") return runPhysicalGradient(problem, x, options, callback);
  if (type == "ig") return runInverseGradient(problem, x, options, callback);
  if (type == "hig") return runHalfInverseGradient(problem, x, options, callback);
  if (type == "gn") return runGaussNewtonKrylov(problem, x, options, callback);
  if (type == "newton") return runNewton(problem, x, options, callback);
  if (type == "lbfgs" || type == "bqnls" || type == "bncg" || type == "lbfgs_inv")
    return runTao(type, problem, x, options, callback);
  throw InputError("unknown optimiser '" + type + "'");
}

}  // namespace physgrad
