// The optimiser loop on a small heat-equation inverse problem: every update rule
// decreases the loss, PG with an exact inverse converges in a few iterations, the PG
// fallback engages when the y-space step is useless, and bad options are refused.

#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <memory>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/data/synthetic.hpp"
#include "physgrad/inverse/inverse_problem.hpp"
#include "physgrad/optim/optimizer.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/simulator.hpp"

namespace pg = physgrad;

namespace {

pg::GridSpec smallGrid(PetscInt n) {
  pg::GridSpec s;
  s.dim = 2;
  s.n = {n, n, 1};
  s.length = {static_cast<double>(n), static_cast<double>(n), 1.0};
  return s;
}

// A heat problem with noise-free data from soft boxes.
struct HeatFixture {
  HeatFixture(pg::DiffusionScheme scheme, double t_end, PetscInt steps, PetscInt n = 32)
      : grid(PETSC_COMM_WORLD, smallGrid(n)),
        sim(pg::makeDiffusionSimulator(grid, scheme, 1.0, t_end, steps)),
        truth(grid.createGlobal()),
        observed(grid.createGlobal()) {
    pg::SoftBoxesOptions boxes;
    boxes.seed = 7;
    pg::fillSoftBoxes(grid, truth, boxes);
    sim->forward(truth, observed);
  }
  pg::Grid grid;
  std::unique_ptr<pg::Simulator> sim;
  pg::OwnedVec truth, observed;
};

pg::OptimizerOptions quietOptions(PetscInt max_it) {
  pg::OptimizerOptions o;
  o.max_it = max_it;
  o.monitor = false;
  return o;
}

}  // namespace

// The Hessian of 1/2 |P x - y*|^2 for a linear P: J^T J.
pg::InverseProblem::HessianAction gaussNewtonHessian(pg::Simulator& sim) {
  auto work = std::make_shared<pg::OwnedVec>(sim.grid().createGlobal());
  return [&sim, work](Vec x, Vec v, Vec hv) {
    sim.jvp(x, v, *work);
    sim.vjp(x, *work, hv);
  };
}

TEST(Optimizers, EveryRuleConvergesOnAWellPosedProblem) {
  // One backward-Euler step with kappa dt / h^2 = 1/4: the singular values of J lie in
  // [1/3, 1], so even plain gradient descent (error factor 8/9 per iteration) must reach
  // the tolerance within the cap.  (Stiffer problems are where the rules differ; that is
  // what the benchmarks measure.)
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 0.25, 1);
  pg::SquaredLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  problem.setHessianAction(gaussNewtonHessian(*f.sim));
  for (const auto& type : pg::OptimizerOptions::knownTypes()) {
    SCOPED_TRACE(type);
    pg::OwnedVec x = f.grid.createGlobal();
    pg::OptimizerOptions o = quietOptions(200);
    o.residual_rtol = 1e-3;
    const pg::Summary s = pg::runOptimizer(type, problem, x, o);
    ASSERT_GE(s.history.size(), 2u);
    EXPECT_LE(s.final_loss, 1e-6 * s.initial_loss) << pg::toString(s.termination);
    EXPECT_EQ(s.termination, pg::Termination::ResidualTolerance);
    EXPECT_LE(s.x_error.relative_l2, 3e-3);
    // Our own rules never accept an increase (TAO's line searches may, within tolerance).
    const bool own = type != "lbfgs" && type != "bqnls" && type != "bncg" && type != "lbfgs_inv";
    for (size_t i = 1; own && i < s.history.size(); ++i) {
      EXPECT_LE(s.history[i].loss, s.history[i - 1].loss) << "iteration " << i;
    }
    // The final loss is the loss of the returned iterate, not a stale number.
    pg::OwnedVec y = f.grid.createGlobal();
    EXPECT_NEAR(problem.evaluate(x, y), s.final_loss, 1e-12 * s.initial_loss);
    EXPECT_GT(s.solves.total(), 0.0);
  }
}

TEST(Optimizers, PhysicalGradientIsExactOnMildDiffusion) {
  for (auto scheme : {pg::DiffusionScheme::BackwardEuler, pg::DiffusionScheme::Explicit,
                      pg::DiffusionScheme::CrankNicolson}) {
    SCOPED_TRACE(pg::toString(scheme));
    // kappa T / h^2 = 1 over 10 steps (kappa dt / h^2 = 0.1): mildly diffusive.  At 0.25
    // the explicit and Crank-Nicolson steps would annihilate the (N/4, N/4) mode and
    // have no inverse.
    HeatFixture f(scheme, 1.0, 10);
    pg::SquaredLoss loss(f.observed);
    pg::InverseProblem problem(*f.sim, loss, f.truth);
    pg::OwnedVec x = f.grid.createGlobal();
    pg::OptimizerOptions o = quietOptions(5);
    o.target_error = 1e-6;
    o.residual_rtol = 0.0;  // let the x-error decide when to stop
    const pg::Summary s = pg::runOptimizer("pg", problem, x, o);
    EXPECT_LE(s.x_error.relative_l2, 1e-6);
    EXPECT_LE(s.iterations, 5);
    EXPECT_EQ(s.termination, pg::Termination::TargetError);
    EXPECT_EQ(s.fallbacks, 0);
  }
}

namespace {
// A loss whose "Newton step" points uphill: PG cannot decrease with it, so the loop has
// to shrink eta and then fall back to a gradient step.
class UphillLoss final : public pg::Loss {
 public:
  explicit UphillLoss(Vec target) : inner_(target) {}
  double value(Vec y) override { return inner_.value(y); }
  void gradient(Vec y, Vec g) override { inner_.gradient(y, g); }
  void newtonStep(Vec y, Vec dy) override {
    inner_.newtonStep(y, dy);
    PG_CALL(VecScale(dy, -1.0));
  }

 private:
  pg::SquaredLoss inner_;
};
}  // namespace

TEST(Optimizers, PhysicalGradientFallsBackToGradientDescent) {
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 2.0, 2, 16);
  UphillLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  pg::OwnedVec x = f.grid.createGlobal();
  const pg::Summary s = pg::runOptimizer("pg", problem, x, quietOptions(3));
  EXPECT_EQ(s.fallbacks, 3);
  EXPECT_LT(s.final_loss, s.initial_loss);
  ASSERT_EQ(s.history.size(), 4u);
  EXPECT_NE(s.history[1].note.find("fallback"), std::string::npos);
}

TEST(Optimizers, MatrixFreeHigEqualsTheDenseSvdFormula) {
  // 8 x 8 grid: J is 64 x 64, small enough to form densely from jvp columns.
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 2.0, 2, 8);
  pg::SquaredLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  const pg::Grid& grid = f.grid;
  const PetscInt n = grid.size();
  pg::OwnedVec x = grid.createGlobal(), e = grid.createGlobal(), col = grid.createGlobal(),
               y = grid.createGlobal(), gy = grid.createGlobal(), dx = grid.createGlobal();
  PG_CALL(VecCopy(f.truth, x));
  PG_CALL(VecScale(x, 0.5));  // away from the solution, so dL/dy != 0
  Eigen::MatrixXd J(n, n);
  std::vector<double> unit(n, 0.0);
  for (PetscInt j = 0; j < n; ++j) {
    unit.assign(n, 0.0);
    unit[j] = 1.0;
    grid.scatterNatural(unit, e);
    f.sim->jvp(x, e, col);
    const std::vector<double> c = grid.gatherNatural(col);
    for (PetscInt i = 0; i < n; ++i) J(i, j) = c[i];
  }
  problem.evaluate(x, y);
  loss.gradient(y, gy);
  const std::vector<double> g = grid.gatherNatural(gy);
  const Eigen::VectorXd gvec = Eigen::Map<const Eigen::VectorXd>(g.data(), n);
  for (double rcond : {1e-2, 1e-6}) {
    SCOPED_TRACE(rcond);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(J, Eigen::ComputeFullU | Eigen::ComputeFullV);
    const Eigen::VectorXd& s = svd.singularValues();
    Eigen::VectorXd scale = Eigen::VectorXd::Zero(n);
    for (PetscInt i = 0; i < n; ++i)
      if (s(i) > rcond * s(0)) scale(i) = 1.0 / std::sqrt(s(i));
    const Eigen::VectorXd dense =
        -(svd.matrixV() * scale.asDiagonal() * svd.matrixU().transpose() * gvec);
    pg::OptimizerOptions o;
    o.hig_rcond = rcond;
    o.hig_lanczos = n;  // the full Krylov space: exact up to round-off
    pg::halfInverseGradientDirection(problem, x, o, dx);
    const std::vector<double> mf = grid.gatherNatural(dx);
    const Eigen::VectorXd mfvec = Eigen::Map<const Eigen::VectorXd>(mf.data(), n);
    EXPECT_LE((mfvec - dense).norm() / dense.norm(), 1e-8);
  }
}

TEST(Optimizers, UnknownOptimizerIsRefusedWithTheAllowedNames) {
  pg::OptimizerOptions o;
  o.types = {"gd", "newton-raphson"};
  try {
    o.validate();
    FAIL() << "validate() accepted an unknown optimiser";
  } catch (const pg::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("-opt_type"), std::string::npos) << msg;
    EXPECT_NE(msg.find("newton-raphson"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lbfgs"), std::string::npos) << msg;
  }
  pg::OptimizerOptions bad_step;
  bad_step.gd_step = -1.0;
  EXPECT_THROW(bad_step.validate(), pg::InputError);
  pg::OptimizerOptions bad_shrink;
  bad_shrink.pg_shrink = 1.5;
  EXPECT_THROW(bad_shrink.validate(), pg::InputError);
}

TEST(Optimizers, NonFiniteLossStopsWithTheLastGoodIterate) {
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 2.0, 2, 16);
  pg::SquaredLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  pg::OwnedVec x = f.grid.createGlobal();
  // A fixed GD step far beyond 2/L makes the iteration blow up to Inf/NaN.
  pg::OptimizerOptions o = quietOptions(2000);
  o.gd_step = 1e3;
  const pg::Summary s = pg::runOptimizer("gd", problem, x, o);
  EXPECT_EQ(s.termination, pg::Termination::NonFinite);
  EXPECT_TRUE(std::isfinite(s.final_loss));
  PetscReal xnorm = 0.0;
  PG_CALL(VecNorm(x, NORM_2, &xnorm));
  EXPECT_TRUE(std::isfinite(xnorm));
}

TEST(Optimizers, RelativeGradientToleranceStopsTheRun) {
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 0.25, 1, 16);
  pg::SquaredLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  pg::OwnedVec x = f.grid.createGlobal();
  pg::OptimizerOptions o = quietOptions(500);
  o.residual_rtol = 0.0;
  o.grad_rtol = 1e-3;
  const pg::Summary s = pg::runOptimizer("gd", problem, x, o);
  EXPECT_EQ(s.termination, pg::Termination::GradientTolerance);
  ASSERT_GE(s.history.size(), 2u);
  EXPECT_LE(s.history.back().grad_norm, 1e-3 * s.history.front().grad_norm);
  EXPECT_GT(s.history[s.history.size() - 2].grad_norm, 1e-3 * s.history.front().grad_norm);
}
