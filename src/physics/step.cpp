#include "physgrad/physics/step.hpp"

#include "physgrad/core/error.hpp"
#include "physgrad/physics/jacobian.hpp"

namespace physgrad {

void Step::inverse(Vec x0, Vec y, Vec x) {
  // The generic local inverse: Newton-Krylov on S(x) = y from the linearisation point.
  PG_CALL(VecCopy(x0, x));
  const SolveReport report = newtonKrylovInverse(*this, y, x);
  if (!report.converged) {
    throw PetscException(PETSC_ERR_NOT_CONVERGED,
                         "generic Newton-Krylov inverse of step '" + name() +
                             "' did not converge: " + report.reason + " after " +
                             std::to_string(report.newton_iterations) +
                             " Newton steps, relative residual " +
                             std::to_string(report.relative_residual));
  }
}

}  // namespace physgrad
