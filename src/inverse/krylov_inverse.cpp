#include "physgrad/inverse/krylov_inverse.hpp"

#include <cmath>
#include <sstream>

#include "physgrad/core/error.hpp"

namespace physgrad {

InverseJacobianMethod parseInverseJacobianMethod(const std::string& text,
                                                 const std::string& option) {
  if (text == "gmres") return InverseJacobianMethod::Gmres;
  if (text == "lsqr") return InverseJacobianMethod::Lsqr;
  if (text == "cgls") return InverseJacobianMethod::Cgls;
  if (text == "normal_cg") return InverseJacobianMethod::NormalCg;
  throw InputError("option " + option + ": unknown method '" + text +
                   "' (allowed: gmres, lsqr, cgls, normal_cg)");
}

void InverseJacobianOptions::validate() const {
  if (!(rtol >= 0.0) || !(atol >= 0.0)) throw InputError("Krylov tolerances must be >= 0");
  if (max_it < 1) throw InputError("the Krylov iteration cap must be >= 1");
  if (!(damping >= 0.0) || !std::isfinite(damping))
    throw InputError("the Tikhonov damping must be non-negative and finite");
  if (residual_target > 0.0 && method != InverseJacobianMethod::Lsqr)
    throw InputError("a residual target (discrepancy stop) needs the lsqr method");
  if (damping > 0.0 && method != InverseJacobianMethod::NormalCg) {
    throw InputError(
        "Tikhonov damping needs the normal_cg method (gmres, lsqr and cgls solve "
        "the undamped problem)");
  }
}

namespace {

// (J^T J + mu I) v as a MatShell.
struct NormalOperator {
  JacobianOperator* jacobian;
  double mu;
  OwnedVec work;
  static PetscErrorCode mult(Mat A, Vec x, Vec y) {
    PG_CALLBACK_BEGIN
    void* ctx = nullptr;
    PG_CALL(MatShellGetContext(A, &ctx));
    auto* self = static_cast<NormalOperator*>(ctx);
    PG_CALL(MatMult(self->jacobian->mat(), x, self->work));
    PG_CALL(MatMultTranspose(self->jacobian->mat(), self->work, y));
    if (self->mu != 0.0) PG_CALL(VecAXPY(y, self->mu, x));
    PG_CALLBACK_END("normal-equations operator")
  }
};

double norm(Vec v) {
  PetscReal n = 0.0;
  PG_CALL(VecNorm(v, NORM_2, &n));
  return n;
}

// ||J dx - dy||
double residualNorm(JacobianOperator& J, Vec dx, Vec dy, Vec work) {
  PG_CALL(MatMult(J.mat(), dx, work));
  PG_CALL(VecAXPY(work, -1.0, dy));
  return norm(work);
}

OwnedKSP makeKsp(MPI_Comm comm, Mat A, KSPType type, const std::string& prefix, double rtol,
                 double atol, PetscInt max_it) {
  OwnedKSP ksp;
  PG_CALL(KSPCreate(comm, ksp.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp, prefix.c_str()));
  PG_CALL(KSPSetType(ksp, type));
  PG_CALL(KSPSetOperators(ksp, A, A));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp, &pc));
  PG_CALL(PCSetType(pc, PCNONE));
  PG_CALL(KSPSetTolerances(ksp, rtol, atol, PETSC_DEFAULT, max_it));
  PG_CALL(KSPSetFromOptions(ksp));
  return ksp;
}

// Stops when LSQR's residual estimate ||dy - J dx|| reaches the target; KSP itself ends
// the solve with KSP_DIVERGED_ITS at the iteration cap.
PetscErrorCode residualTargetTest(KSP, PetscInt, PetscReal rnorm, KSPConvergedReason* reason,
                                  void* ctx) {
  const double target = *static_cast<const double*>(ctx);
  *reason = rnorm <= target ? KSP_CONVERGED_ATOL : KSP_CONVERGED_ITERATING;
  return 0;
}

void fillReport(KSP ksp, SolveReport& r) {
  KSPConvergedReason reason;
  PG_CALL(KSPGetConvergedReason(ksp, &reason));
  PG_CALL(KSPGetIterationNumber(ksp, &r.iterations));
  r.converged = reason > 0;
  r.reason = KSPConvergedReasons[reason];
}

}  // namespace

SolveReport solveInverseJacobian(JacobianOperator& J, Vec dy, Vec dx,
                                 const InverseJacobianOptions& o) {
  o.validate();
  const Grid& g = J.step().grid();
  SolveReport report;
  PG_CALL(VecSet(dx, 0.0));
  if (o.method == InverseJacobianMethod::NormalCg) {
    NormalOperator op{&J, o.damping, g.createGlobal()};
    OwnedMat shell;
    const PetscInt nl = g.owned().count() * g.dof(), ng = g.size() * g.dof();
    PG_CALL(MatCreateShell(g.comm(), nl, nl, ng, ng, &op, shell.out()));
    PG_CALL(MatShellSetOperation(shell, MATOP_MULT,
                                 reinterpret_cast<void (*)(void)>(NormalOperator::mult)));
    PG_CALL(MatSetOption(shell, MAT_SPD, PETSC_TRUE));
    OwnedVec rhs = g.createGlobal();
    PG_CALL(MatMultTranspose(J.mat(), dy, rhs));
    OwnedKSP ksp = makeKsp(g.comm(), shell, KSPCG, o.prefix, o.rtol, o.atol, o.max_it);
    PG_CALL(KSPSolve(ksp, rhs, dx));
    fillReport(ksp, report);
  } else {
    const KSPType type = o.method == InverseJacobianMethod::Gmres  ? KSPGMRES
                         : o.method == InverseJacobianMethod::Lsqr ? KSPLSQR
                                                                   : KSPCGLS;
    OwnedKSP ksp = makeKsp(g.comm(), J.mat(), type, o.prefix, o.rtol, o.atol, o.max_it);
    double target = o.residual_target;
    if (target > 0.0) PG_CALL(KSPSetConvergenceTest(ksp, residualTargetTest, &target, nullptr));
    PG_CALL(KSPSolve(ksp, dy, dx));
    fillReport(ksp, report);
  }
  OwnedVec work = g.createGlobal();
  report.residual = residualNorm(J, dx, dy, work);
  const double dynorm = norm(dy);
  report.relative_residual = dynorm > 0.0 ? report.residual / dynorm : report.residual;
  return report;
}

void RegularizedInverseOptions::validate() const {
  if (!(noise_sigma >= 0.0) || !std::isfinite(noise_sigma))
    throw InputError("the noise level sigma must be non-negative and finite");
  if (!(tau >= 1.0)) throw InputError("the discrepancy factor tau must be >= 1");
  if (max_it < 1) throw InputError("the Krylov iteration cap must be >= 1");
  if (!(rtol > 0.0)) throw InputError("the inner tolerance must be positive");
  if (std::isnan(alpha)) throw InputError("the Tikhonov parameter alpha is NaN");
}

RegularizedReport regularizedInverse(Step& step, Vec x0, Vec y, Vec x,
                                     const RegularizedInverseOptions& o) {
  o.validate();
  const Grid& g = step.grid();
  OwnedVec r0 = g.createGlobal(), d = g.createGlobal(), work = g.createGlobal();
  step.forward(x0, r0);
  PG_CALL(VecAYPX(r0, -1.0, y));  // r0 = y - S(x0)
  JacobianOperator J(step, x0);
  RegularizedReport report;
  report.target_residual =
      o.tau * o.noise_sigma * std::sqrt(static_cast<double>(g.size() * g.dof()));

  if (o.kind == RegularizedInverseOptions::Kind::EarlyStopping) {
    // LSQR tracks ||r0 - J d|| itself, so the discrepancy principle is a stop on that
    // estimate; with sigma = 0 LSQR's own tests (rtol) apply.
    InverseJacobianOptions io;
    io.method = InverseJacobianMethod::Lsqr;
    io.rtol = o.rtol;
    io.residual_target = report.target_residual;
    io.max_it = o.max_it;
    io.prefix = "regularized_inverse_";
    const SolveReport s = solveInverseJacobian(J, r0, d, io);
    report.iterations = s.iterations;
    report.residual = s.residual;
    report.reason = "early-stopped LSQR: " + s.reason;
  } else {
    auto solve = [&](double alpha) {
      InverseJacobianOptions io;
      io.method = InverseJacobianMethod::NormalCg;
      io.damping = alpha;
      io.rtol = o.rtol;
      io.max_it = o.max_it;
      io.prefix = "regularized_inverse_";
      const SolveReport s = solveInverseJacobian(J, r0, d, io);
      report.iterations = s.iterations;
      report.residual = s.residual;
      report.alpha = alpha;
      report.reason = "Tikhonov CG: " + s.reason;
      return s.residual;
    };
    if (o.alpha >= 0.0) {
      solve(o.alpha);
    } else if (o.noise_sigma == 0.0) {
      solve(0.0);  // no noise: the unregularised least-squares solution
    } else {
      // The residual grows monotonically with alpha: bisection in log alpha until it is
      // within 2 % of the discrepancy target.
      double lo = -14.0, hi = 4.0;  // log10 alpha, relative to ||J||^2 ~ 1 for our steps
      double mid = 0.5 * (lo + hi);
      for (int it = 0; it < 40; ++it) {
        mid = 0.5 * (lo + hi);
        const double res = solve(std::pow(10.0, mid));
        if (std::abs(res - report.target_residual) <= 0.02 * report.target_residual) break;
        (res > report.target_residual ? hi : lo) = mid;
      }
      std::ostringstream os;
      os << "; alpha = " << report.alpha << " by the discrepancy principle";
      report.reason += os.str();
    }
  }
  PG_CALL(VecWAXPY(x, 1.0, x0, d));
  return report;
}

RegularizedInverseStep::RegularizedInverseStep(std::shared_ptr<Step> inner,
                                               RegularizedInverseOptions options)
    : Step(inner->grid()), inner_(std::move(inner)), options_(options) {
  options_.validate();
}

void RegularizedInverseStep::inverse(Vec x0, Vec y, Vec x) {
  last_ = regularizedInverse(*inner_, x0, y, x, options_);
}

}  // namespace physgrad
