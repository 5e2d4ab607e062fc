// Gradient descent: a fixed step, or Armijo backtracking.

#include "loop.hpp"

namespace physgrad::optim_detail {

// Armijo GD starts each line search at twice the previously accepted step (capped by
// -opt_gd_step), so the step adapts in both directions.
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

}  // namespace physgrad::optim_detail
