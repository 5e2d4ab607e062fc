// The optimiser loop and its update rules: GD (fixed / Armijo), PG, and L-BFGS via TAO.

#include "physgrad/optim/optimizer.hpp"

#include <petsctao.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"

namespace physgrad {

const char* toString(Termination t) {
  switch (t) {
    case Termination::MaxIterations:
      return "iteration cap";
    case Termination::LossTolerance:
      return "loss tolerance";
    case Termination::ResidualTolerance:
      return "residual at round-off";
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
  rootPrintf("%-10s it %4d  loss %11.5e  |g| %s  x-err %s  step %9.3e  solves %6.1f  t %8.3f s%s%s\n",
             optimizer.c_str(), r.iteration, r.loss, gnorm, xerr, r.step, r.solves.total(), r.wall,
             r.note.empty() ? "" : "  ", r.note.c_str());
}

namespace {

double norm2(Vec v) {
  PetscReal n = 0.0;
  PG_CALL(VecNorm(v, NORM_2, &n));
  return n;
}

// Shared bookkeeping of a run: records, monitor output, status tests.
class RunRecorder {
 public:
  RunRecorder(const std::string& name, InverseProblem& problem, const OptimizerOptions& options,
              const IterationCallback& callback)
      : problem_(problem), options_(options), callback_(callback), start_(wallTime()) {
    summary_.optimizer = name;
    summary_.has_truth = problem.hasTruth();
    problem_.resetCounts();
  }

  /// Records iteration `it` at iterate x; returns true when a status test says stop.
  bool record(int it, Vec x, double loss, double grad_norm, double step, std::string note) {
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
    if (callback_) callback_(summary_.optimizer, r);
    return statusSaysStop(r);
  }

  void finish(Vec x, double loss) {
    summary_.final_loss = loss;
    if (problem_.hasTruth()) summary_.x_error = problem_.xError(x);
    summary_.solves = problem_.counts();
    summary_.wall = wallTime() - start_;
  }

  Summary& summary() { return summary_; }

 private:
  bool statusSaysStop(const IterationRecord& r) {
    if (!std::isfinite(r.loss)) return stop(Termination::NonFinite);
    if (options_.loss_tol > 0.0 && r.loss <= options_.loss_tol)
      return stop(Termination::LossTolerance);
    if (options_.residual_rtol > 0.0 && r.iteration > 0 &&
        r.loss <= options_.residual_rtol * options_.residual_rtol * summary_.initial_loss)
      return stop(Termination::ResidualTolerance);
    if (options_.target_error > 0.0 && !std::isnan(r.x_error) &&
        r.x_error <= options_.target_error)
      return stop(Termination::TargetError);
    if (options_.time_budget > 0.0 && r.wall >= options_.time_budget)
      return stop(Termination::TimeBudget);
    if (r.iteration >= options_.max_it) return stop(Termination::MaxIterations);
    return false;
  }
  bool stop(Termination t) {
    summary_.termination = t;
    return true;
  }

  InverseProblem& problem_;
  const OptimizerOptions& options_;
  const IterationCallback& callback_;
  double start_;
  Summary summary_;
};

// Work vectors of our own loops.
struct Workspace {
  explicit Workspace(InverseProblem& p)
      : y(p.createField()), g(p.createField()), trial(p.createField()), dy(p.createField()) {}
  OwnedVec y, g, trial, dy;
};

// One Armijo backtracking GD step from (x, loss, g, |g|^2).  On success x and loss are
// updated and the accepted step returned; on failure x is unchanged and 0 returned.
double armijoStep(InverseProblem& problem, Vec x, double& loss, Vec g, double g2,
                  double first_step, const OptimizerOptions& o, Workspace& w) {
  double alpha = first_step;
  for (PetscInt k = 0; k < o.armijo_max_backtracks; ++k) {
    PG_CALL(VecWAXPY(w.trial, -alpha, g, x));
    const double trial_loss = problem.evaluate(w.trial, w.y);
    if (std::isfinite(trial_loss) && trial_loss <= loss - o.armijo_c1 * alpha * g2) {
      PG_CALL(VecCopy(w.trial, x));
      loss = trial_loss;
      return alpha;
    }
    alpha *= o.armijo_shrink;
  }
  return 0.0;
}

// Gradient descent: fixed step, or Armijo backtracking whose first trial is twice the
// previously accepted step (capped by -opt_gd_step), so the step adapts both ways.
Summary runGradientDescent(const std::string& name, bool armijo, InverseProblem& problem, Vec x,
                           const OptimizerOptions& o, const IterationCallback& cb) {
  RunRecorder rec(name, problem, o, cb);
  Workspace w(problem);
  OwnedVec last_good = problem.createField();
  double loss = problem.valueAndGradient(x, w.g);
  double gnorm = norm2(w.g);
  double last_step = o.gd_step;
  bool stop = rec.record(0, x, loss, gnorm, 0.0, "");
  for (int it = 1; !stop; ++it) {
    PG_CALL(VecCopy(x, last_good));
    const double good_loss = loss;
    double step = o.gd_step;
    if (armijo) {
      step = armijoStep(problem, x, loss, w.g, gnorm * gnorm, std::min(2.0 * last_step, o.gd_step),
                        o, w);
      if (step == 0.0) {
        rec.summary().termination = Termination::LineSearchFailed;
        rec.summary().detail = "no sufficient decrease after " +
                               std::to_string(o.armijo_max_backtracks) + " backtracks";
        break;
      }
      last_step = step;
    } else {
      PG_CALL(VecAXPY(x, -step, w.g));
    }
    loss = problem.valueAndGradient(x, w.g);
    gnorm = norm2(w.g);
    stop = rec.record(it, x, loss, gnorm, step, "");
    if (!std::isfinite(loss)) {  // keep the last good iterate
      PG_CALL(VecCopy(last_good, x));
      loss = good_loss;
      rec.summary().detail = "restored the iterate of iteration " + std::to_string(it - 1);
    }
  }
  rec.finish(x, loss);
  return rec.summary();
}

// Physical gradient: dy = eta * (Newton step of L in y), x <- P^{-1}(y + dy) by inverse
// time stepping.  If the loss does not decrease, eta is shrunk up to pg_max_shrinks
// times; then the iteration falls back to an Armijo GD step and says so.
Summary runPhysicalGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                            const IterationCallback& cb) {
  RunRecorder rec("pg", problem, o, cb);
  Workspace w(problem);
  double loss = problem.evaluate(x, w.y);
  bool stop = rec.record(0, x, loss, std::numeric_limits<double>::quiet_NaN(), 0.0, "");
  for (int it = 1; !stop; ++it) {
    double eta = o.pg_eta;
    bool accepted = false;
    int shrinks = 0;
    problem.loss().newtonStep(w.y, w.dy);  // w.y holds P(x)
    for (; shrinks <= o.pg_max_shrinks; ++shrinks, eta *= o.pg_shrink) {
      PG_CALL(VecWAXPY(w.g, eta, w.dy, w.y));  // target in y-space
      if (!problem.inverse(x, w.g, w.trial)) continue;  // Inf/NaN: a rejected trial
      PG_CALL(VecCopy(w.y, w.g));  // keep P(x) in case the trial is rejected
      const double trial_loss = problem.evaluate(w.trial, w.y);
      if (std::isfinite(trial_loss) && trial_loss < loss) {
        PG_CALL(VecCopy(w.trial, x));
        loss = trial_loss;
        accepted = true;
        break;
      }
      PG_CALL(VecCopy(w.g, w.y));
    }
    std::string note;
    double step = eta;
    if (!accepted) {
      // "In the worst case, we can fall back to the regular gradient."
      ++rec.summary().fallbacks;
      loss = problem.valueAndGradient(x, w.g);
      const double gnorm = norm2(w.g);
      step = armijoStep(problem, x, loss, w.g, gnorm * gnorm, o.gd_step, o, w);
      note = "fallback: GD (eta shrunk " + std::to_string(shrinks) + "x without decrease)";
      if (step == 0.0) {
        rec.record(it, x, loss, gnorm, 0.0, note + ", no decrease");
        rec.summary().termination = Termination::LineSearchFailed;
        rec.summary().detail = "neither PG nor the GD fallback decreased the loss";
        break;
      }
      problem.evaluate(x, w.y);
    } else if (shrinks > 0) {
      note = "eta shrunk " + std::to_string(shrinks) + "x";
    }
    stop = rec.record(it, x, loss, std::numeric_limits<double>::quiet_NaN(), step, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

// ---- L-BFGS through TAO --------------------------------------------------------------

struct TaoContext {
  InverseProblem* problem;
  RunRecorder* recorder;
  Vec last_good;  // the most recent iterate with a finite loss
  double last_loss = 0.0;
};

PetscErrorCode taoObjectiveAndGradient(Tao, Vec x, PetscReal* f, Vec g, void* ctx) {
  PG_CALLBACK_BEGIN
  auto* c = static_cast<TaoContext*>(ctx);
  *f = c->problem->valueAndGradient(x, g);
  PG_CALLBACK_END("L-BFGS objective")
}

PetscErrorCode taoMonitor(Tao tao, void* ctx) {
  PG_CALLBACK_BEGIN
  auto* c = static_cast<TaoContext*>(ctx);
  PetscInt its = 0;
  PetscReal f = 0, gnorm = 0, cnorm = 0, xdiff = 0;
  TaoConvergedReason reason;
  PG_CALL(TaoGetSolutionStatus(tao, &its, &f, &gnorm, &cnorm, &xdiff, &reason));
  Vec x = nullptr;
  PG_CALL(TaoGetSolution(tao, &x));
  TaoLineSearch ls = nullptr;
  PG_CALL(TaoGetLineSearch(tao, &ls));
  PetscReal step = 0.0;
  if (its > 0) PG_CALL(TaoLineSearchGetStepLength(ls, &step));
  if (std::isfinite(f)) {
    c->last_loss = f;
    PG_CALL(VecCopy(x, c->last_good));
  }
  if (c->recorder->record(static_cast<int>(its), x, f, gnorm, step, "")) {
    // Our status tests apply to TAO too; TAO's own reason is kept if it stopped first.
    PG_CALL(TaoSetConvergedReason(tao, TAO_CONVERGED_USER));
  }
  PG_CALLBACK_END("L-BFGS monitor")
}

Summary runLbfgs(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                 const IterationCallback& cb) {
  RunRecorder rec("lbfgs", problem, o, cb);
  OwnedVec last_good = problem.createField();
  TaoContext ctx{&problem, &rec, last_good};
  OwnedTao tao;
  PG_CALL(TaoCreate(problem.grid().comm(), tao.out()));
  PG_CALL(TaoSetType(tao, TAOLMVM));
  PG_CALL(TaoSetOptionsPrefix(tao, "opt_lbfgs_"));
  PG_CALL(TaoSetSolution(tao, x));
  PG_CALL(TaoSetObjectiveAndGradient(tao, nullptr, taoObjectiveAndGradient, &ctx));
  PG_CALL(TaoSetMonitor(tao, taoMonitor, &ctx, nullptr));
  // Our status tests decide; TAO's gradient tolerances are off unless set on the
  // command line (-opt_lbfgs_tao_gatol ...).  The iteration cap is ours plus one so that
  // the monitor, not TAO, records the final iteration.
  PG_CALL(TaoSetTolerances(tao, 0.0, 0.0, 0.0));
  PG_CALL(TaoSetMaximumIterations(tao, o.max_it + 1));
  PG_CALL(TaoSetMaximumFunctionEvaluations(tao, PETSC_MAX_INT));
  PG_CALL(TaoSetFromOptions(tao));
  PG_CALL(TaoSolve(tao));
  TaoConvergedReason reason;
  PG_CALL(TaoGetConvergedReason(tao, &reason));
  Summary& s = rec.summary();
  if (reason != TAO_CONVERGED_USER) {
    s.termination = reason > 0 ? Termination::LibraryConverged : Termination::LibraryDiverged;
    s.detail = TaoConvergedReasons[reason];
    if (reason == TAO_DIVERGED_LS_FAILURE) s.termination = Termination::LineSearchFailed;
  }
  if (s.termination == Termination::NonFinite) {
    PG_CALL(VecCopy(last_good, x));
    s.detail = "restored the last iterate with a finite loss";
  }
  rec.finish(x, ctx.last_loss);
  return s;
}

}  // namespace

Summary runOptimizer(const std::string& type, InverseProblem& problem, Vec x,
                     const OptimizerOptions& options, const IterationCallback& callback) {
  options.validate();
  if (type == "gd") return runGradientDescent("gd", false, problem, x, options, callback);
  if (type == "gd_armijo") return runGradientDescent("gd_armijo", true, problem, x, options, callback);
  if (type == "pg") return runPhysicalGradient(problem, x, options, callback);
  if (type == "lbfgs") return runLbfgs(problem, x, options, callback);
  throw InputError("unknown optimiser '" + type + "'");
}

}  // namespace physgrad
