// Quasi-Newton and nonlinear CG through PETSc TAO, reporting through our monitor and
// status tests; and L-BFGS (TAO bqnls) whose initial inverse Hessian is J^{-1} J^{-T}.

#include <petsctao.h>

#include "loop.hpp"

namespace physgrad::optim_detail {
namespace {

struct TaoContext {
  InverseProblem* problem;
  RunRecorder* recorder;
  Vec last_good;  // the most recent iterate with a finite loss
  Vec start;      // x0, recorded as iteration 0 before TaoSolve
  double last_loss = 0.0;
  int records = 0;  // iterations recorded after x0
};

PetscErrorCode taoObjectiveAndGradient(Tao, Vec x, PetscReal* f, Vec g, void* ctx) {
  PG_CALLBACK_BEGIN
  auto* c = static_cast<TaoContext*>(ctx);
  *f = c->problem->valueAndGradient(x, g);
  PG_CALLBACK_END("TAO objective")
}

PetscErrorCode taoMonitor(Tao tao, void* ctx) {
  PG_CALLBACK_BEGIN
  auto* c = static_cast<TaoContext*>(ctx);
  PetscInt its = 0;
  PetscReal f = 0, gnorm = 0, cnorm = 0, xdiff = 0;
  TaoConvergedReason reason;
  PG_CALL(TaoGetSolutionStatus(tao, &its, &f, &gnorm, &cnorm, &xdiff, &reason));
  Vec x = nullptr;
  PG_CALL(TaoGetSolution(tao, &x));
  TaoLineSearch ls = nullptr;
  PG_CALL(TaoGetLineSearch(tao, &ls));
  PetscReal step = 0.0;
  if (ls) PG_CALL(TaoLineSearchGetStepLength(ls, &step));
  if (std::isfinite(f)) {
    c->last_loss = f;
    PG_CALL(VecCopy(x, c->last_good));
  }
  // Iteration 0 (x0) is recorded before TaoSolve.  Some TAO solvers (lmvm) report x0 again
  // as their iteration 0, others (bncg) report their first step under that number; our
  // own count keeps the history's iterations honest for both.
  PetscBool at_start = PETSC_FALSE;
  if (its == 0) PG_CALL(VecEqual(x, c->start, &at_start));
  if (at_start) return 0;
  if (c->recorder->record(++c->records, x, f, gnorm, step, "")) {
    // Our status tests apply to TAO too; TAO's own reason is kept if it stopped first.
    PG_CALL(TaoSetConvergedReason(tao, TAO_CONVERGED_USER));
  }
  PG_CALLBACK_END("TAO monitor")
}

// The initial inverse Hessian of L-BFGS as J^{-1} J^{-T} at the current iterate: the
// inverse of the Gauss-Newton Hessian J^T J.  J^T u = g is solved by the step inverses in
// forward order when every step is linear and self-adjoint, else by GMRES on the vjp;
// J z = u by the inverse simulator when P is linear, else by GMRES on the jvp.
struct InverseGaussNewtonPc {
  InverseProblem* problem;
  Tao tao;
  OwnedVec u, zero;
  OwnedKSP ksp;
  double rtol;
  PetscInt max_it;
  long applications = 0;

  static PetscErrorCode apply(PC pc, Vec g, Vec z) {
    PG_CALLBACK_BEGIN
    void* ctx = nullptr;
    PG_CALL(PCShellGetContext(pc, &ctx));
    auto* self = static_cast<InverseGaussNewtonPc*>(ctx);
    self->applyTo(g, z);
    PG_CALLBACK_END("inverse-preconditioned L-BFGS J0")
  }

  void applyTo(Vec g, Vec z) {
    Vec x = nullptr;
    PG_CALL(TaoGetSolution(tao, &x));
    JacobianOperator& J = problem->jacobian(x);
    if (!ksp) {
      PG_CALL(KSPCreate(problem->grid().comm(), ksp.out()));
      PG_CALL(KSPSetOptionsPrefix(ksp, "opt_lbfgs_inv_"));
      PG_CALL(KSPSetType(ksp, KSPGMRES));
      PC inner = nullptr;
      PG_CALL(KSPGetPC(ksp, &inner));
      PG_CALL(PCSetType(inner, PCNONE));
      PG_CALL(KSPSetTolerances(ksp, rtol, 0.0, PETSC_DEFAULT, max_it));
      PG_CALL(KSPSetFromOptions(ksp));
    }
    Simulator& sim = problem->simulator();
    if (sim.hasSelfAdjointSteps()) {
      sim.inverseTranspose(g, u);  // exact and cheap: step inverses in forward order
    } else {
      PG_CALL(KSPSetOperators(ksp, J.mat(), J.mat()));
      PG_CALL(KSPSolveTranspose(ksp, g, u));  // J^T u = g by GMRES on the vjp
    }
    if (sim.isLinear()) {
      problem->inverse(zero, u, z);  // P^{-1} = J^{-1} for a linear P
    } else {
      PG_CALL(KSPSolve(ksp, u, z));
    }
    ++applications;
  }
};

}  // namespace

Summary runTao(const std::string& type, InverseProblem& problem, Vec x, const OptimizerOptions& o,
               const IterationCallback& cb) {
  RunRecorder rec(type, problem, o, cb);
  OwnedVec last_good = problem.createField(), start = problem.createField();
  PG_CALL(VecCopy(x, start));
  TaoContext ctx{&problem, &rec, last_good, start};
  OwnedTao tao;
  PG_CALL(TaoCreate(problem.grid().comm(), tao.out()));
  const bool inverse_j0 = type == "lbfgs_inv";
  if (type == "lbfgs") {
    PG_CALL(TaoSetType(tao, TAOLMVM));
  } else if (type == "bqnls" || inverse_j0) {
    // lbfgs_inv: TAO's bounded quasi-Newton line search (L-BFGS matrix, no bounds set)
    // is the solver that exposes its LMVM matrix, whose J0 we replace.
    PG_CALL(TaoSetType(tao, TAOBQNLS));
  } else {
    PG_CALL(TaoSetType(tao, TAOBNCG));
  }
  PG_CALL(TaoSetOptionsPrefix(tao, ("opt_" + type + "_").c_str()));
  PG_CALL(TaoSetSolution(tao, x));
  PG_CALL(TaoSetObjectiveAndGradient(tao, nullptr, taoObjectiveAndGradient, &ctx));
  PG_CALL(TaoSetMonitor(tao, taoMonitor, &ctx, nullptr));
  // Our status tests decide; TAO's gradient tolerances are off unless set on the command
  // line (-opt_<type>_tao_gatol ...).  TAO's cap is ours plus one so that the monitor, not
  // TAO, records the final iteration.
  PG_CALL(TaoSetTolerances(tao, 0.0, 0.0, 0.0));
  PG_CALL(TaoSetMaximumIterations(tao, o.max_it + 1));
  PG_CALL(TaoSetMaximumFunctionEvaluations(tao, PETSC_MAX_INT));

  InverseGaussNewtonPc j0{&problem,  tao,        problem.createField(), problem.createField(), {},
                          o.ig_rtol, o.ig_max_it};
  OwnedVec scratch;
  if (inverse_j0) {
    Mat B = nullptr;
    PG_CALL(TaoGetLMVMMatrix(tao, &B));
    PC pc = nullptr;
    PG_CALL(PCCreate(problem.grid().comm(), &pc));
    PG_CALL(PCSetType(pc, PCSHELL));
    PG_CALL(PCShellSetContext(pc, &j0));
    PG_CALL(PCShellSetApply(pc, InverseGaussNewtonPc::apply));
    PG_CALL(PCShellSetName(pc, "J^{-1} J^{-T}"));
    // PCApply checks sizes against the PC's operator: the Jacobian shell has the right ones.
    Mat J = problem.jacobian(x).mat();
    PG_CALL(PCSetOperators(pc, J, J));
    PG_CALL(MatLMVMSetJ0PC(B, pc));
    PG_CALL(PCDestroy(&pc));  // the LMVM matrix holds its own reference
  }
  PG_CALL(TaoSetFromOptions(tao));
  {
    OwnedVec g = problem.createField();
    ctx.last_loss = problem.valueAndGradient(x, g);
    PG_CALL(VecCopy(x, last_good));
    if (rec.record(0, x, ctx.last_loss, norm2(g), 0.0, "")) {
      rec.finish(x, ctx.last_loss);  // a status test holds at x0 already
      return rec.summary();
    }
  }
  PG_CALL(TaoSolve(tao));
  TaoConvergedReason reason;
  PG_CALL(TaoGetConvergedReason(tao, &reason));
  Summary& s = rec.summary();
  if (reason != TAO_CONVERGED_USER) {
    s.termination = reason > 0 ? Termination::LibraryConverged : Termination::LibraryDiverged;
    s.detail = TaoConvergedReasons[reason];
    if (reason == TAO_DIVERGED_LS_FAILURE) s.termination = Termination::LineSearchFailed;
  }
  if (s.termination == Termination::NonFinite) {
    PG_CALL(VecCopy(last_good, x));
    s.detail = "restored the last iterate with a finite loss";
  }
  if (inverse_j0) {
    s.detail += (s.detail.empty() ? "" : "; ") + std::to_string(j0.applications) +
                " applications of J^{-1} J^{-T}";
  }
  rec.finish(x, ctx.last_loss);
  return s;
}

}  // namespace physgrad::optim_detail
