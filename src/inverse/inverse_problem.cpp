#include "physgrad/inverse/inverse_problem.hpp"

#include <cmath>
#include <limits>

#include "physgrad/core/error.hpp"

namespace physgrad {

InverseProblem::InverseProblem(Simulator& sim, Loss& loss, Vec truth)
    : sim_(&sim),
      loss_(&loss),
      y_work_(sim.grid().createGlobal()),
      gy_work_(sim.grid().createGlobal()),
      last_x_(sim.grid().createGlobal()),
      last_y_(sim.grid().createGlobal()),
      diff_(sim.grid().createGlobal()) {
  if (truth) {
    truth_ = sim.grid().createGlobal();
    PG_CALL(VecCopy(truth, truth_));
  }
}

double InverseProblem::evaluate(Vec x, Vec y) {
  PetscBool same = PETSC_FALSE;
  if (have_last_) PG_CALL(VecEqual(x, last_x_, &same));
  if (!same) {
    have_last_ = false;
    try {
      sim_->forward(x, last_y_);
    } catch (const NonFiniteError& e) {
      last_rejection_ = e.what();
      return std::numeric_limits<double>::quiet_NaN();
    } catch (const StateOutOfRange& e) {
      last_rejection_ = e.what();
      // An optimiser's trial point outside the step's range: a rejected trial.
      return std::numeric_limits<double>::quiet_NaN();
    }
    PG_CALL(VecCopy(x, last_x_));
    last_loss_ = loss_->value(last_y_);
    have_last_ = true;
  }
  if (y != last_y_.get()) PG_CALL(VecCopy(last_y_, y));
  return last_loss_;
}

double InverseProblem::valueAndGradient(Vec x, Vec g) {
  const double value = evaluate(x, y_work_);
  if (!std::isfinite(value)) return value;
  loss_->gradient(y_work_, gy_work_);
  try {
    sim_->vjp(x, gy_work_, g);
  } catch (const NonFiniteError&) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return value;
}

bool InverseProblem::inverse(Vec x0, Vec y, Vec x) {
  try {
    sim_->inverse(x0, y, x);
  } catch (const NonFiniteError& e) {
    last_rejection_ = e.what();
    return false;
  } catch (const StateOutOfRange& e) {
    last_rejection_ = e.what();
    return false;
  } catch (const PetscException& e) {
    // A local inverse that did not converge is a stated failure of this trial, which the
    // optimiser answers with its fallbacks; every other PETSc error propagates.
    if (e.code() != PETSC_ERR_NOT_CONVERGED) throw;
    last_rejection_ = e.what();
    return false;
  }
  return true;
}

JacobianOperator& InverseProblem::jacobian(Vec x) {
  if (!jacobian_)
    jacobian_ = std::make_unique<JacobianOperator>(*sim_, x);
  else
    jacobian_->setPoint(x);
  return *jacobian_;
}

SolveCounts InverseProblem::counts() const {
  const StepCounts& now = sim_->counts();
  const double k = static_cast<double>(sim_->numSteps());
  SolveCounts c;
  c.forward = (now.forward - baseline_.forward) / k;
  c.adjoint = (now.vjp - baseline_.vjp) / k;
  c.tangent = (now.jvp - baseline_.jvp) / k;
  c.inverse = (now.inverse - baseline_.inverse) / k;
  return c;
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
  e.mean_abs = d1 / static_cast<double>(grid().size() * grid().dof());
  return e;
}

}  // namespace physgrad
