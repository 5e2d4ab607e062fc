#include "physgrad/inverse/loss.hpp"

#include <cmath>

#include "physgrad/core/error.hpp"

namespace physgrad {

SquaredLoss::SquaredLoss(Vec target, double weight) : weight_(weight) {
  if (!(weight > 0.0) || !std::isfinite(weight))
    throw InputError("the loss weight must be positive and finite");
  PG_CALL(VecDuplicate(target, target_.out()));
  PG_CALL(VecCopy(target, target_));
  PG_CALL(VecDuplicate(target, residual_.out()));
}

double SquaredLoss::value(Vec y) {
  PG_CALL(VecWAXPY(residual_, -1.0, target_, y));
  PetscReal norm = 0.0;
  PG_CALL(VecNorm(residual_, NORM_2, &norm));
  return 0.5 * weight_ * norm * norm;
}

void SquaredLoss::gradient(Vec y, Vec g) {
  PG_CALL(VecWAXPY(g, -1.0, target_, y));
  if (weight_ != 1.0) PG_CALL(VecScale(g, weight_));
}

void SquaredLoss::newtonStep(Vec y, Vec dy) { PG_CALL(VecWAXPY(dy, -1.0, y, target_)); }

}  // namespace physgrad
