// The optimiser loop on a small heat-equation inverse problem: every update rule
// decreases the loss, PG with an exact inverse converges in a few iterations, the PG
// fallback engages when the y-space step is useless, and bad options are refused.

#include <gtest/gtest.h>

#include <cmath>

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

TEST(Optimizers, EveryRuleDecreasesTheLossMonotonically) {
  HeatFixture f(pg::DiffusionScheme::BackwardEuler, 4.0, 4);
  pg::SquaredLoss loss(f.observed);
  pg::InverseProblem problem(*f.sim, loss, f.truth);
  for (const auto& type : pg::OptimizerOptions::knownTypes()) {
    SCOPED_TRACE(type);
    pg::OwnedVec x = f.grid.createGlobal();
    const pg::Summary s = pg::runOptimizer(type, problem, x, quietOptions(8));
    ASSERT_GE(s.history.size(), 2u);
    EXPECT_LT(s.final_loss, 0.5 * s.initial_loss);
    for (size_t i = 1; i < s.history.size(); ++i) {
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
