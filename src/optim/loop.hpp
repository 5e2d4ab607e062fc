#pragma once
// Internal to src/optim: the shared loop machinery of the update rules.

#include <cmath>
#include <limits>
#include <string>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/optim/optimizer.hpp"

namespace physgrad::optim_detail {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

inline double norm2(Vec v) {
  PetscReal n = 0.0;
  PG_CALL(VecNorm(v, NORM_2, &n));
  return n;
}

/// Records iterations, prints the monitor line, applies the status tests.
class RunRecorder {
 public:
  RunRecorder(const std::string& name, InverseProblem& problem, const OptimizerOptions& options,
              const IterationCallback& callback);
  /// Records iteration `it` at iterate x; returns true when a status test says stop.
  bool record(int it, Vec x, double loss, double grad_norm, double step, std::string note);
  void finish(Vec x, double loss);
  Summary& summary() { return summary_; }

 private:
  bool statusSaysStop(const IterationRecord& r);
  bool stop(Termination t);

  InverseProblem& problem_;
  const OptimizerOptions& options_;
  const IterationCallback& callback_;
  double start_;
  double first_grad_norm_ = kNaN;  // |g| of the first record that has one
  Summary summary_;
};

/// Work vectors of our own loops.
struct Workspace {
  explicit Workspace(InverseProblem& p)
      : y(p.createField()),
        g(p.createField()),
        gy(p.createField()),
        trial(p.createField()),
        dy(p.createField()),
        dx(p.createField()),
        yx(p.createField()) {}
  OwnedVec y, g, gy, trial, dy, dx;
  OwnedVec yx;  ///< P(x) of the current iterate
};

/// Armijo backtracking along the descent direction d (slope = <g, d> < 0) from (x, loss),
/// first trial step `first_step`.  On success x and loss are updated and the accepted
/// step returned; on failure x is unchanged and 0 returned.
double armijoAlong(InverseProblem& problem, Vec x, double& loss, Vec d, double slope,
                   double first_step, const OptimizerOptions& o, Workspace& w);
/// The same along -g (slope -|g|^2 = -g2).
double armijoStep(InverseProblem& problem, Vec x, double& loss, Vec g, double g2, double first_step,
                  const OptimizerOptions& o, Workspace& w);

/// Tries x + eta_k dx for eta_k = eta, eta * shrink, ... (pg_max_shrinks shrinks) and
/// accepts the first that decreases the loss.  Returns the accepted factor or 0.
double backtrackAlong(InverseProblem& problem, Vec x, double& loss, Vec dx, double eta,
                      const OptimizerOptions& o, Workspace& w, int* shrinks);

/// The IG direction: dx solving J(x) dx = eta * (Newton step of L at w.yx = P(x)).
/// Returns false when the Krylov solve failed (the reason goes to `why`).
bool inverseGradientDirection(InverseProblem& problem, Vec x, double eta, const OptimizerOptions& o,
                              Workspace& w, Vec dx, std::string* why);

/// A fallback step: Armijo GD from x (computes the gradient).  Returns the step or 0;
/// on success w.yx = P(x_new).
double gradientFallback(InverseProblem& problem, Vec x, double& loss, const OptimizerOptions& o,
                        Workspace& w, double* grad_norm);

Summary runGradientDescent(const std::string& name, bool armijo, InverseProblem& problem, Vec x,
                           const OptimizerOptions& o, const IterationCallback& cb);
Summary runPhysicalGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                            const IterationCallback& cb);
Summary runInverseGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                           const IterationCallback& cb);
Summary runHalfInverseGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                               const IterationCallback& cb);
Summary runGaussNewtonKrylov(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                             const IterationCallback& cb);
Summary runNewton(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                  const IterationCallback& cb);
/// TAO solvers: "lbfgs" (lmvm), "bqnls", "bncg", "lbfgs_inv" (lmvm whose initial inverse
/// Hessian applies J^{-1} J^{-T}).
Summary runTao(const std::string& type, InverseProblem& problem, Vec x, const OptimizerOptions& o,
               const IterationCallback& cb);

}  // namespace physgrad::optim_detail
