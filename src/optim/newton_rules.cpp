// Second-order updates: Gauss-Newton-Krylov (inexact, Eisenstat-Walker forcing, Armijo
// line search, as in hIPPYlib's Newton-CG) and Newton with a user-supplied Hessian action.

#include <algorithm>

#include "loop.hpp"
#include "physgrad/inverse/krylov_inverse.hpp"

namespace physgrad::optim_detail {

// p solves (J^T J + mu I) p = J^T dy with dy the loss's Newton step in y (for the squared
// loss, -r), by CG to the forcing tolerance min(0.5, sqrt(|g_k| / |g_0|)).
Summary runGaussNewtonKrylov(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                             const IterationCallback& cb) {
  RunRecorder rec("gn", problem, o, cb);
  Workspace w(problem);
  double loss = problem.valueAndGradient(x, w.g);
  double gnorm = norm2(w.g);
  const double g0 = gnorm;
  bool stop = rec.record(0, x, loss, gnorm, 0.0, "");
  for (int it = 1; !stop; ++it) {
    problem.evaluate(x, w.yx);
    problem.loss().newtonStep(w.yx, w.dy);
    InverseJacobianOptions io;
    io.method = InverseJacobianMethod::NormalCg;
    io.damping = o.gn_damping;
    io.rtol = g0 > 0.0 ? std::min(0.5, std::sqrt(gnorm / g0)) : 0.5;
    io.max_it = o.gn_max_cg;
    io.prefix = "opt_gn_";
    const SolveReport r = solveInverseJacobian(problem.jacobian(x), w.dy, w.dx, io);
    PetscScalar slope = 0.0;
    PG_CALL(VecDot(w.g, w.dx, &slope));
    double step = armijoAlong(problem, x, loss, w.dx, slope, 1.0, o, w);
    std::string note = std::to_string(r.iterations) + " CG";
    if (step == 0.0) {
      ++rec.summary().fallbacks;
      ++rec.summary().fallbacks_gd;
      step = gradientFallback(problem, x, loss, o, w, nullptr);
      note += "; GN: no decrease, fallback GD";
      if (step == 0.0) {
        rec.summary().termination = Termination::LineSearchFailed;
        rec.summary().detail = "neither Gauss-Newton nor the GD fallback decreased the loss";
        rec.record(it, x, loss, gnorm, 0.0, note + ": no decrease either");
        break;
      }
    }
    loss = problem.valueAndGradient(x, w.g);
    gnorm = norm2(w.g);
    stop = rec.record(it, x, loss, gnorm, step, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

namespace {
struct HessianShell {
  const InverseProblem::HessianAction* action;
  Vec point;
  static PetscErrorCode mult(Mat A, Vec v, Vec hv) {
    PG_CALLBACK_BEGIN
    void* ctx = nullptr;
    PG_CALL(MatShellGetContext(A, &ctx));
    auto* self = static_cast<HessianShell*>(ctx);
    (*self->action)(self->point, v, hv);
    PG_CALLBACK_END("Newton Hessian action")
  }
};
}  // namespace

// p solves H p = -g by CG (H from the problem's Hessian action); x <- x + newton_eta p, a
// fixed step as in the textbook comparison.  A failed CG solve (H not positive definite)
// falls back to an Armijo GD step.
Summary runNewton(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                  const IterationCallback& cb) {
  if (!problem.hessianAction()) {
    throw InputError(
        "optimiser 'newton' needs a Hessian action, which this problem does not "
        "provide (use gn for the Gauss-Newton approximation)");
  }
  RunRecorder rec("newton", problem, o, cb);
  Workspace w(problem);
  const Grid& g = problem.grid();
  HessianShell shell_ctx{&problem.hessianAction(), x};
  OwnedMat H;
  const PetscInt nl = g.owned().count() * g.dof(), ng = g.size() * g.dof();
  PG_CALL(MatCreateShell(g.comm(), nl, nl, ng, ng, &shell_ctx, H.out()));
  PG_CALL(
      MatShellSetOperation(H, MATOP_MULT, reinterpret_cast<void (*)(void)>(HessianShell::mult)));
  OwnedKSP ksp;
  PG_CALL(KSPCreate(g.comm(), ksp.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp, "opt_newton_"));
  PG_CALL(KSPSetType(ksp, KSPCG));
  PG_CALL(KSPSetOperators(ksp, H, H));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp, &pc));
  PG_CALL(PCSetType(pc, PCNONE));
  PG_CALL(KSPSetTolerances(ksp, o.newton_rtol, 0.0, PETSC_DEFAULT, 10 * ng));
  PG_CALL(KSPSetFromOptions(ksp));

  double loss = problem.valueAndGradient(x, w.g);
  double gnorm = norm2(w.g);
  bool stop = rec.record(0, x, loss, gnorm, 0.0, "");
  for (int it = 1; !stop; ++it) {
    PG_CALL(VecScale(w.g, -1.0));
    PG_CALL(KSPSolve(ksp, w.g, w.dx));  // H p = -g
    PG_CALL(VecScale(w.g, -1.0));
    KSPConvergedReason reason;
    PG_CALL(KSPGetConvergedReason(ksp, &reason));
    std::string note;
    double step = o.newton_eta;
    if (reason > 0) {
      PG_CALL(VecAXPY(x, o.newton_eta, w.dx));
    } else {
      ++rec.summary().fallbacks;
      ++rec.summary().fallbacks_gd;
      step = gradientFallback(problem, x, loss, o, w, nullptr);
      note = std::string("Newton CG failed (") + KSPConvergedReasons[reason] + "); fallback GD";
    }
    loss = problem.valueAndGradient(x, w.g);
    gnorm = norm2(w.g);
    stop = rec.record(it, x, loss, gnorm, step, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

}  // namespace physgrad::optim_detail
