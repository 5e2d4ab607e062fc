// Inverse machinery: the Jacobian as a MatShell, Krylov inverse-Jacobian solves (IG),
// the generic Newton-Krylov local inverse, PG = IG to first order, and regularised
// inverses for noisy data.

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/data/synthetic.hpp"
#include "physgrad/inverse/krylov_inverse.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/jacobian.hpp"
#include "physgrad/physics/simulator.hpp"
#include "test_steps.hpp"

namespace physgrad {
namespace {

GridSpec grid2d(PetscInt n) {
  GridSpec s;
  s.dim = 2;
  s.n = {n, n, 1};
  s.length = {static_cast<double>(n), static_cast<double>(n), 1.0};
  return s;
}

double norm(Vec v) {
  PetscReal n = 0;
  PG_CALL(VecNorm(v, NORM_2, &n));
  return n;
}

double distance(Vec a, Vec b) {
  OwnedVec d;
  PG_CALL(VecDuplicate(a, d.out()));
  PG_CALL(VecWAXPY(d, -1.0, a, b));
  return norm(d);
}

// K = 4 steps alternating a pointwise cubic and backward-Euler diffusion: nonlinear,
// invertible, well conditioned.
std::unique_ptr<Simulator> nonlinearSimulator(const Grid& grid) {
  auto cubic = std::make_shared<testutil::PointwiseCubicStep>(grid, 0.2);
  auto diffusion = std::make_shared<ImplicitDiffusionStep>(grid, DiffusionParams{1.0, 0.5});
  return std::make_unique<Simulator>(
      grid, std::vector<std::shared_ptr<Step>>{cubic, diffusion, cubic, diffusion});
}

TEST(InverseMachinery, JacobianShellIsJvpAndVjp) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  auto sim = nonlinearSimulator(grid);
  OwnedVec x = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 1));
  OwnedVec v = testutil::fieldFromNatural(grid, testutil::roughRandomNatural(grid, 2));
  OwnedVec w = testutil::fieldFromNatural(grid, testutil::roughRandomNatural(grid, 3));
  JacobianOperator J(*sim, x);
  OwnedVec a = grid.createGlobal(), b = grid.createGlobal();
  PG_CALL(MatMult(J.mat(), v, a));
  sim->jvp(x, v, b);
  EXPECT_EQ(distance(a, b), 0.0);
  PG_CALL(MatMultTranspose(J.mat(), w, b));
  PetscScalar wJv = 0, JTwv = 0;
  PG_CALL(VecDot(w, a, &wJv));
  PG_CALL(VecDot(b, v, &JTwv));
  EXPECT_LE(std::abs(wJv - JTwv) / (norm(w) * norm(a)), 1e-12);
  EXPECT_EQ(J.jvpCount(), 1);
  EXPECT_EQ(J.vjpCount(), 1);
}

TEST(InverseMachinery, EveryKrylovMethodSolvesAWellPosedSystem) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  auto sim = nonlinearSimulator(grid);
  OwnedVec x = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 4));
  OwnedVec truth = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 5));
  JacobianOperator J(*sim, x);
  OwnedVec dy = grid.createGlobal(), dx = grid.createGlobal();
  PG_CALL(MatMult(J.mat(), truth, dy));
  for (auto method : {InverseJacobianMethod::Gmres, InverseJacobianMethod::Lsqr,
                      InverseJacobianMethod::Cgls, InverseJacobianMethod::NormalCg}) {
    SCOPED_TRACE(static_cast<int>(method));
    InverseJacobianOptions o;
    o.method = method;
    o.rtol = 1e-12;
    const SolveReport r = solveInverseJacobian(J, dy, dx, o);
    EXPECT_TRUE(r.converged) << r.reason;
    EXPECT_GT(r.iterations, 0);
    EXPECT_LE(r.relative_residual, 1e-9);
    EXPECT_LE(distance(dx, truth) / norm(truth), 1e-8);
  }
}

TEST(InverseMachinery, DampingShrinksTheSolutionAndIsRefusedWhereUnsupported) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  auto sim = nonlinearSimulator(grid);
  OwnedVec x = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 6));
  OwnedVec dy = testutil::fieldFromNatural(grid, testutil::roughRandomNatural(grid, 7));
  JacobianOperator J(*sim, x);
  OwnedVec dx0 = grid.createGlobal(), dx1 = grid.createGlobal();
  InverseJacobianOptions o;
  o.method = InverseJacobianMethod::NormalCg;
  solveInverseJacobian(J, dy, dx0, o);
  o.damping = 1e-1;
  const SolveReport r = solveInverseJacobian(J, dy, dx1, o);
  EXPECT_TRUE(r.converged);
  EXPECT_LT(norm(dx1), norm(dx0));
  o.method = InverseJacobianMethod::Gmres;
  EXPECT_THROW(solveInverseJacobian(J, dy, dx1, o), InputError);
  EXPECT_THROW(parseInverseJacobianMethod("bicg", "-ig_method"), InputError);
}

TEST(InverseMachinery, NewtonKrylovInverseConvergesQuadratically) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  auto sim = nonlinearSimulator(grid);
  OwnedVec x_true = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 8));
  OwnedVec y = grid.createGlobal(), x = grid.createGlobal(), dx = grid.createGlobal();
  sim->forward(x_true, y);
  // Start near the solution, as a local inverse around x0 does.
  dx = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 9));
  PG_CALL(VecWAXPY(x, 0.05, dx, x_true));
  NewtonKrylovOptions o;
  o.krylov_rtol = 1e-12;
  const SolveReport r = newtonKrylovInverse(*sim, y, x, o);
  ASSERT_TRUE(r.converged) << r.reason;
  EXPECT_LE(distance(x, x_true) / norm(x_true), 1e-10);
  // Quadratic convergence: e_{k+1} <= C e_k^2 while above round-off.
  const auto& h = r.residual_history;
  ASSERT_GE(h.size(), 3u);
  int checked = 0;
  for (size_t k = 1; k + 1 < h.size(); ++k) {
    if (h[k + 1] < 1e-11 * h[0]) break;
    const double c_k = h[k + 1] / (h[k] * h[k]);
    const double c_prev = h[k] / (h[k - 1] * h[k - 1]);
    EXPECT_LE(c_k, 10.0 * c_prev) << "Newton step " << k;
    EXPECT_LT(h[k + 1], 0.1 * h[k]);
    ++checked;
  }
  EXPECT_GE(checked, 1);
  // The generic Step::inverse is this solve.
  testutil::PointwiseCubicStep cubic(grid, 0.2);
  OwnedVec yc = grid.createGlobal(), xc = grid.createGlobal();
  cubic.forward(x_true, yc);
  cubic.Step::inverse(x, yc, xc);
  EXPECT_LE(distance(xc, x_true) / norm(x_true), 1e-10);
}

TEST(InverseMachinery, PhysicalGradientEqualsInverseGradientToFirstOrder) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  auto sim = nonlinearSimulator(grid);
  OwnedVec x0 = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 10));
  OwnedVec dir = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 11));
  OwnedVec y0 = grid.createGlobal(), target = grid.createGlobal(), x_pg = grid.createGlobal(),
           dx_ig = grid.createGlobal(), dy = grid.createGlobal();
  sim->forward(x0, y0);
  JacobianOperator J(*sim, x0);
  InverseJacobianOptions o;
  o.rtol = 1e-13;
  std::vector<double> gaps, sizes;
  for (double scale : {0.2, 0.1, 0.05, 0.025}) {
    PG_CALL(VecCopy(dir, dy));
    PG_CALL(VecScale(dy, scale));
    PG_CALL(VecWAXPY(target, 1.0, y0, dy));
    sim->inverse(x0, target, x_pg);
    PG_CALL(VecAXPY(x_pg, -1.0, x0));  // dx_PG
    solveInverseJacobian(J, dy, dx_ig, o);
    gaps.push_back(distance(x_pg, dx_ig));
    sizes.push_back(norm(dy));
  }
  for (size_t i = 1; i < gaps.size(); ++i) {
    const double order = std::log(gaps[i - 1] / gaps[i]) / std::log(sizes[i - 1] / sizes[i]);
    EXPECT_NEAR(order, 2.0, 0.15) << "halving " << i;
  }
}

TEST(InverseMachinery, RegularizedInversesTameNoise) {
  Grid grid(PETSC_COMM_WORLD, grid2d(24));
  // Strong smoothing: K = 4 backward-Euler steps with kappa dt / h^2 = 2.
  auto sim = makeDiffusionSimulator(grid, DiffusionScheme::BackwardEuler, 1.0, 8.0, 4);
  OwnedVec truth = grid.createGlobal(), y = grid.createGlobal(), x = grid.createGlobal(),
           zero = grid.createGlobal();
  SoftBoxesOptions boxes;
  boxes.seed = 3;
  fillSoftBoxes(grid, truth, boxes);
  sim->forward(truth, y);
  const double sigma = 1e-3;
  addGaussianNoise(grid, y, sigma, 17);

  sim->inverse(zero, y, x);  // exact inverse time stepping: noise amplified
  const double exact_error = distance(x, truth) / norm(truth);

  for (auto kind : {RegularizedInverseOptions::Kind::Tikhonov,
                    RegularizedInverseOptions::Kind::EarlyStopping}) {
    SCOPED_TRACE(static_cast<int>(kind));
    RegularizedInverseOptions o;
    o.kind = kind;
    o.noise_sigma = sigma;
    const RegularizedReport r = regularizedInverse(*sim, zero, y, x, o);
    const double error = distance(x, truth) / norm(truth);
    if (isRoot()) {
      std::printf(
          "kind %d: exact-inverse error %.3e, regularised %.3e, residual/target %.3f, "
          "alpha %.3e, %d its\n",
          static_cast<int>(kind), exact_error, error, r.residual / r.target_residual, r.alpha,
          static_cast<int>(r.iterations));
    }
    EXPECT_LT(error, 0.5 * exact_error) << r.reason;
    EXPECT_LT(error, 0.5);
    // The discrepancy principle: the fit stops at the noise level, not below it.
    EXPECT_NEAR(r.residual / r.target_residual, 1.0,
                kind == RegularizedInverseOptions::Kind::Tikhonov ? 0.03 : 0.3)
        << r.reason;
  }
}

TEST(InverseMachinery, RegularizedInverseWithoutNoiseIsExact) {
  Grid grid(PETSC_COMM_WORLD, grid2d(16));
  // Mild smoothing, so that the unregularised normal equations are well conditioned.
  auto sim = makeDiffusionSimulator(grid, DiffusionScheme::BackwardEuler, 1.0, 1.0, 2);
  OwnedVec truth = testutil::fieldFromNatural(grid, testutil::roughRandomNatural(grid, 12));
  OwnedVec y = grid.createGlobal(), x = grid.createGlobal(), zero = grid.createGlobal();
  sim->forward(truth, y);
  for (auto kind : {RegularizedInverseOptions::Kind::Tikhonov,
                    RegularizedInverseOptions::Kind::EarlyStopping}) {
    RegularizedInverseOptions o;
    o.kind = kind;
    o.noise_sigma = 0.0;
    o.rtol = 1e-13;
    const RegularizedReport r = regularizedInverse(*sim, zero, y, x, o);
    EXPECT_EQ(r.alpha, 0.0);
    EXPECT_LE(distance(x, truth) / norm(truth), 1e-9) << r.reason;
  }
}

}  // namespace
}  // namespace physgrad
