#include "physgrad/physics/jacobian.hpp"

#include <cmath>

#include "physgrad/core/error.hpp"

namespace physgrad {

JacobianOperator::JacobianOperator(Step& step, Vec x)
    : step_(&step), point_(step.grid().createGlobal()) {
  PG_CALL(VecCopy(x, point_));
  const Grid& g = step.grid();
  const PetscInt nlocal = g.owned().count() * g.dof();
  const PetscInt nglobal = g.size() * g.dof();
  PG_CALL(MatCreateShell(g.comm(), nlocal, nlocal, nglobal, nglobal, this, shell_.out()));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT, reinterpret_cast<void (*)(void)>(mult)));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT_TRANSPOSE,
                               reinterpret_cast<void (*)(void)>(multTranspose)));
}

void JacobianOperator::setPoint(Vec x) { PG_CALL(VecCopy(x, point_)); }

PetscErrorCode JacobianOperator::mult(Mat A, Vec x, Vec y) {
  PG_CALLBACK_BEGIN
  void* ctx = nullptr;
  PG_CALL(MatShellGetContext(A, &ctx));
  auto* self = static_cast<JacobianOperator*>(ctx);
  self->step_->jvp(self->point_, x, y);
  ++self->jvp_count_;
  PG_CALLBACK_END("JacobianOperator::mult (jvp)")
}

PetscErrorCode JacobianOperator::multTranspose(Mat A, Vec x, Vec y) {
  PG_CALLBACK_BEGIN
  void* ctx = nullptr;
  PG_CALL(MatShellGetContext(A, &ctx));
  auto* self = static_cast<JacobianOperator*>(ctx);
  self->step_->vjp(self->point_, x, y);
  ++self->vjp_count_;
  PG_CALLBACK_END("JacobianOperator::multTranspose (vjp)")
}

SolveReport newtonKrylovInverse(Step& step, Vec y, Vec x, const NewtonKrylovOptions& o) {
  const Grid& g = step.grid();
  OwnedVec residual = g.createGlobal(), correction = g.createGlobal();
  JacobianOperator jac(step, x);
  OwnedKSP ksp;
  PG_CALL(KSPCreate(g.comm(), ksp.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp, o.prefix.c_str()));
  PG_CALL(KSPSetType(ksp, KSPGMRES));
  PG_CALL(KSPSetOperators(ksp, jac.mat(), jac.mat()));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp, &pc));
  PG_CALL(PCSetType(pc, PCNONE));
  PG_CALL(KSPSetTolerances(ksp, o.krylov_rtol, 0.0, PETSC_DEFAULT, o.krylov_max_it));
  PG_CALL(KSPSetFromOptions(ksp));

  PetscReal ynorm = 0.0;
  PG_CALL(VecNorm(y, NORM_2, &ynorm));
  const double tol = o.rtol * ynorm + o.atol;
  SolveReport report;
  for (PetscInt it = 0;; ++it) {
    step.forward(x, residual);
    PG_CALL(VecAXPY(residual, -1.0, y));  // r = S(x) - y
    PetscReal rnorm = 0.0;
    PG_CALL(VecNorm(residual, NORM_2, &rnorm));
    report.residual = rnorm;
    report.residual_history.push_back(rnorm);
    report.relative_residual = ynorm > 0.0 ? rnorm / ynorm : rnorm;
    report.newton_iterations = it;
    if (!std::isfinite(rnorm)) {
      report.reason = "non-finite residual";
      return report;
    }
    if (rnorm <= tol) {
      report.converged = true;
      report.reason = "residual below tolerance";
      return report;
    }
    if (it == o.max_newton) {
      report.reason = "Newton iteration cap reached";
      return report;
    }
    jac.setPoint(x);
    PG_CALL(KSPSolve(ksp, residual, correction));
    KSPConvergedReason reason;
    PG_CALL(KSPGetConvergedReason(ksp, &reason));
    PetscInt its = 0;
    PG_CALL(KSPGetIterationNumber(ksp, &its));
    report.iterations += its;
    if (reason < 0 && reason != KSP_DIVERGED_ITS) {
      report.reason = std::string("inner GMRES failed: ") + KSPConvergedReasons[reason];
      return report;
    }
    PG_CALL(VecAXPY(x, -1.0, correction));
  }
}

}  // namespace physgrad
