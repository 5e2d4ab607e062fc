// Updates that replace the gradient by an inverse: PG (the inverse simulator), IG (a
// Krylov solve with the Jacobian) and HIG (the half-inverse (J^T J)^{-3/4} J^T).

#include <Eigen/Dense>
#include <sstream>
#include <vector>

#include "loop.hpp"
#include "physgrad/inverse/krylov_inverse.hpp"

namespace physgrad {
namespace optim_detail {

bool inverseGradientDirection(InverseProblem& problem, Vec x, double eta, const OptimizerOptions& o,
                              Workspace& w, Vec dx, std::string* why) {
  problem.loss().newtonStep(w.yx, w.dy);
  PG_CALL(VecScale(w.dy, eta));
  InverseJacobianOptions io;
  io.method = parseInverseJacobianMethod(o.ig_method, "-opt_ig_method");
  io.rtol = o.ig_rtol;
  io.max_it = o.ig_max_it;
  io.damping = o.ig_damping;
  io.prefix = "opt_ig_";
  const SolveReport r = solveInverseJacobian(problem.jacobian(x), w.dy, dx, io);
  // An unconverged Krylov solve still gives a usable direction when it has reduced the
  // residual substantially; the line search decides.  A useless one is a failure.
  if (r.converged || r.relative_residual < 0.5) return true;
  if (why) {
    std::ostringstream os;
    os << "IG solve: " << r.reason << ", relative residual " << r.relative_residual;
    *why = os.str();
  }
  return false;
}

// PG: dy = eta * (Newton step of L in y), x <- P^{-1}(P(x) + dy) by inverse time stepping.
// If the loss does not decrease, eta is shrunk up to pg_max_shrinks times; then IG is
// tried, then an Armijo GD step ("In the worst case, we can fall back to the regular
// gradient."), each fallback counted and named in the monitor.
Summary runPhysicalGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                            const IterationCallback& cb) {
  RunRecorder rec("pg", problem, o, cb);
  Workspace w(problem);
  double loss = problem.evaluate(x, w.yx);
  bool stop = rec.record(0, x, loss, kNaN, 0.0, "");
  for (int it = 1; !stop; ++it) {
    double eta = o.pg_eta;
    bool accepted = false;
    int shrinks = 0;
    problem.loss().newtonStep(w.yx, w.dy);
    int failed_inverses = 0;
    for (; shrinks <= o.pg_max_shrinks; ++shrinks, eta *= o.pg_shrink) {
      PG_CALL(VecWAXPY(w.g, eta, w.dy, w.yx));  // target in y-space
      if (!problem.inverse(x, w.g, w.trial)) {  // no inverse for this target: rejected
        ++failed_inverses;
        continue;
      }
      const double trial_loss = problem.evaluate(w.trial, w.y);
      if (std::isfinite(trial_loss) && trial_loss < loss) {
        PG_CALL(VecCopy(w.trial, x));
        PG_CALL(VecCopy(w.y, w.yx));
        loss = trial_loss;
        accepted = true;
        break;
      }
    }
    std::string note = accepted && shrinks > 0 ? "eta shrunk " + std::to_string(shrinks) + "x" : "";
    double step = eta;
    double gnorm = kNaN;
    if (!accepted) {
      ++rec.summary().fallbacks;
      note = "PG: no decrease after " + std::to_string(shrinks) + " eta shrinks";
      if (failed_inverses > 0) {
        note += " (" + std::to_string(failed_inverses) +
                " inverses failed: " + problem.lastRejection().substr(0, 60) + "...)";
      }
      note += "; fallback ";
      std::string why;
      int ig_shrinks = 0;
      if (inverseGradientDirection(problem, x, o.pg_eta, o, w, w.dx, &why) &&
          (step = backtrackAlong(problem, x, loss, w.dx, 1.0, o, w, &ig_shrinks)) > 0.0) {
        ++rec.summary().fallbacks_ig;
        PG_CALL(VecCopy(w.y, w.yx));
        note += "IG";
      } else {
        ++rec.summary().fallbacks_gd;
        step = gradientFallback(problem, x, loss, o, w, &gnorm);
        note += "GD" + (why.empty() ? "" : " (" + why + ")");
        if (step == 0.0) {
          rec.record(it, x, loss, gnorm, 0.0, note + ": no decrease either");
          rec.summary().termination = Termination::LineSearchFailed;
          rec.summary().detail = "neither PG, IG nor the GD fallback decreased the loss";
          break;
        }
      }
    }
    stop = rec.record(it, x, loss, gnorm, step, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

// IG: dx solves J dx = eta * (Newton step of L in y); backtracking on eta scales dx (no
// new Krylov solve), then an Armijo GD fallback.
Summary runInverseGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                           const IterationCallback& cb) {
  RunRecorder rec("ig", problem, o, cb);
  Workspace w(problem);
  double loss = problem.evaluate(x, w.yx);
  bool stop = rec.record(0, x, loss, kNaN, 0.0, "");
  for (int it = 1; !stop; ++it) {
    std::string why, note;
    int shrinks = 0;
    double step = 0.0, gnorm = kNaN;
    if (inverseGradientDirection(problem, x, o.pg_eta, o, w, w.dx, &why)) {
      step = backtrackAlong(problem, x, loss, w.dx, 1.0, o, w, &shrinks);
      if (step > 0.0) PG_CALL(VecCopy(w.y, w.yx));
      if (shrinks > 0 && step > 0.0) note = "eta shrunk " + std::to_string(shrinks) + "x";
    }
    if (step == 0.0) {
      ++rec.summary().fallbacks;
      ++rec.summary().fallbacks_gd;
      step = gradientFallback(problem, x, loss, o, w, &gnorm);
      note = "IG: no decrease; fallback GD" + (why.empty() ? "" : " (" + why + ")");
      if (step == 0.0) {
        rec.record(it, x, loss, gnorm, 0.0, note + ": no decrease either");
        rec.summary().termination = Termination::LineSearchFailed;
        rec.summary().detail = "neither IG nor the GD fallback decreased the loss";
        break;
      }
    }
    stop = rec.record(it, x, loss, gnorm, step, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

}  // namespace optim_detail

int halfInverseGradientDirection(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                                 Vec dx) {
  using optim_detail::norm2;
  OwnedVec y = problem.createField(), gy = problem.createField(), b = problem.createField(),
           t = problem.createField(), r = problem.createField();
  problem.evaluate(x, y);
  problem.loss().gradient(y, gy);
  JacobianOperator& J = problem.jacobian(x);
  PG_CALL(MatMultTranspose(J.mat(), gy, b));  // b = J^T dL/dy = dL/dx
  const double bnorm = norm2(b);
  PG_CALL(VecSet(dx, 0.0));
  if (bnorm == 0.0) return 0;
  const PetscInt n = problem.grid().size() * problem.grid().dof();
  const int kmax = static_cast<int>(std::min<PetscInt>(o.hig_lanczos, n));

  // Lanczos on A = J^T J from b / |b|, with full reorthogonalisation: the basis is small
  // and f(A) with f(lambda) = lambda^{-3/4} weights the smallest Ritz values most, which
  // lose accuracy first without it.
  std::vector<OwnedVec> basis;
  std::vector<double> alpha, beta;
  basis.push_back(problem.createField());
  PG_CALL(VecCopy(b, basis[0]));
  PG_CALL(VecScale(basis[0], 1.0 / bnorm));
  double anorm = 0.0;
  for (int j = 0; j < kmax; ++j) {
    PG_CALL(MatMult(J.mat(), basis[j], t));
    PG_CALL(MatMultTranspose(J.mat(), t, r));  // r = A v_j
    PetscScalar a = 0.0;
    PG_CALL(VecDot(r, basis[j], &a));
    alpha.push_back(a);
    for (int pass = 0; pass < 2; ++pass) {  // twice is enough (Kahan-Parlett)
      for (int i = 0; i <= j; ++i) {
        PetscScalar c = 0.0;
        PG_CALL(VecDot(r, basis[i], &c));
        PG_CALL(VecAXPY(r, -c, basis[i]));
      }
    }
    const double bj = norm2(r);
    anorm = std::max(anorm, std::abs(a) + bj);
    if (j + 1 == kmax || bj <= 1e-13 * anorm) break;  // cap, or an invariant subspace
    beta.push_back(bj);
    basis.push_back(problem.createField());
    PG_CALL(VecCopy(r, basis[j + 1]));
    PG_CALL(VecScale(basis[j + 1], 1.0 / bj));
  }
  const int m = static_cast<int>(alpha.size());
  Eigen::MatrixXd T = Eigen::MatrixXd::Zero(m, m);
  for (int i = 0; i < m; ++i) {
    T(i, i) = alpha[i];
    if (i + 1 < m) T(i, i + 1) = T(i + 1, i) = beta[i];
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(T);
  const Eigen::VectorXd& lambda = eig.eigenvalues();
  const Eigen::MatrixXd& Q = eig.eigenvectors();
  const double lmax = lambda.maxCoeff();
  const double cutoff = o.hig_rcond * o.hig_rcond * lmax;  // on sigma^2 = lambda
  Eigen::VectorXd f = Eigen::VectorXd::Zero(m);
  for (int i = 0; i < m; ++i) f(i) = lambda(i) > cutoff ? std::pow(lambda(i), -0.75) : 0.0;
  // f(T) e_1 |b| = Q f(Lambda) Q^T e_1 |b|
  const Eigen::VectorXd coeff = Q * f.asDiagonal() * Q.row(0).transpose() * bnorm;
  for (int i = 0; i < m; ++i) PG_CALL(VecAXPY(dx, -o.hig_eta * coeff(i), basis[i]));
  return m;
}

namespace optim_detail {

Summary runHalfInverseGradient(InverseProblem& problem, Vec x, const OptimizerOptions& o,
                               const IterationCallback& cb) {
  RunRecorder rec("hig", problem, o, cb);
  Workspace w(problem);
  double loss = problem.evaluate(x, w.yx);
  bool stop = rec.record(0, x, loss, kNaN, 0.0, "");
  for (int it = 1; !stop; ++it) {
    const int steps = halfInverseGradientDirection(problem, x, o, w.dx);
    int shrinks = 0;
    double gnorm = kNaN;
    double step = backtrackAlong(problem, x, loss, w.dx, 1.0, o, w, &shrinks);
    std::string note = std::to_string(steps) + " Lanczos steps";
    if (step > 0.0 && shrinks > 0) note += ", eta shrunk " + std::to_string(shrinks) + "x";
    if (step == 0.0) {
      ++rec.summary().fallbacks;
      ++rec.summary().fallbacks_gd;
      step = gradientFallback(problem, x, loss, o, w, &gnorm);
      note += "; HIG: no decrease, fallback GD";
      if (step == 0.0) {
        rec.record(it, x, loss, gnorm, 0.0, note + ": no decrease either");
        rec.summary().termination = Termination::LineSearchFailed;
        rec.summary().detail = "neither HIG nor the GD fallback decreased the loss";
        break;
      }
    }
    stop = rec.record(it, x, loss, gnorm, step * o.hig_eta, note);
  }
  rec.finish(x, loss);
  return rec.summary();
}

}  // namespace optim_detail
}  // namespace physgrad
