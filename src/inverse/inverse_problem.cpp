#include "physgrad/inverse/inverse_problem.hpp"

#include "physgrad/core/error.hpp"

namespace physgrad {

InverseProblem::InverseProblem(Simulator& sim, Loss& loss, Vec truth)
    : sim_(&sim),
      loss_(&loss),
      y_work_(sim.grid().createGlobal()),
      gy_work_(sim.grid().createGlobal()),
      diff_(sim.grid().createGlobal()) {
  if (truth) {
    truth_ = sim.grid().createGlobal();
    PG_CALL(VecCopy(truth, truth_));
  }
}

double InverseProblem::evaluate(Vec x, Vec y) {
  sim_->forward(x, y);
  ++counts_.forward;
  return loss_->value(y);
}

double InverseProblem::valueAndGradient(Vec x, Vec g) {
  const double value = evaluate(x, y_work_);
  loss_->gradient(y_work_, gy_work_);
  sim_->vjp(x, gy_work_, g);
  ++counts_.adjoint;
  return value;
}

void InverseProblem::inverse(Vec x0, Vec y, Vec x) {
  sim_->inverse(x0, y, x);
  ++counts_.inverse;
}

XError InverseProblem::xError(Vec x) const {
  if (!truth_) throw InputError("the reconstruction error needs the true x");
  PG_CALL(VecWAXPY(diff_, -1.0, truth_, x));
  PetscReal d2 = 0.0, d1 = 0.0, t2 = 0.0;
  PG_CALL(VecNorm(diff_, NORM_2, &d2));
  PG_CALL(VecNorm(diff_, NORM_1, &d1));
  PG_CALL(VecNorm(truth_, NORM_2, &t2));
  XError e;
  e.relative_l2 = t2 > 0.0 ? d2 / t2 : d2;
  e.sum_abs = d1;
  e.mean_abs = d1 / static_cast<double>(grid().size());
  return e;
}

}  // namespace physgrad
