#include "physgrad/physics/step.hpp"

#include <sstream>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/jacobian.hpp"

namespace physgrad {

void Step::inverse(Vec x0, Vec y, Vec x) {
  // The generic local inverse: Newton-Krylov on S(x) = y from the linearisation point.
  PG_CALL(VecCopy(x0, x));
  const SolveReport report = newtonKrylovInverse(*this, y, x);
  if (!report.converged) {
    std::ostringstream os;
    os << "generic Newton-Krylov inverse of step '" << name()
       << "' did not converge: " << report.reason << " after " << report.newton_iterations
       << " Newton steps, relative residual " << report.relative_residual;
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  }
}

}  // namespace physgrad
