// Derivative checks of the diffusion steps and of simulators built from them: the Taylor
// test of 1/2 ||S(x) - y*||^2 with its gradient from vjp (observed order 2), adjoint
// consistency to round-off, inverse consistency, and independence of the number of ranks
// (a distributed run against a serial copy on every rank).
//
// Besides K = 4 equal steps of each scheme (the library's makeDiffusionSimulator), a mixed
// simulator interleaves diffusion with a pointwise scaling and a pointwise cubic map.
// Diffusion steps are all functions of the same Laplacian and therefore commute, so only
// such a mix can reveal a simulator that runs its reverse or inverse sweep in the wrong
// order; the cubic map makes it nonlinear, so the recorded trajectory matters too.

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "derivative_checks.hpp"
#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/simulator.hpp"
#include "test_steps.hpp"

namespace physgrad {
namespace {

using testutil::adjointMismatch;
using testutil::fieldFromNatural;
using testutil::inverseMismatch;
using testutil::maxRelativeDifference;
using testutil::PointwiseCubicStep;
using testutil::PointwiseScaleStep;
using testutil::roughRandomNatural;
using testutil::smoothRandomNatural;
using testutil::TaylorTable;
using testutil::taylorTable;

// ---------------------------------------------------------------------------------------
// Test-only steps that do not commute with diffusion.

/// Wraps a step and perturbs its vjp by a relative 1e-2: the checks must notice.
class WrongAdjointStep final : public Step {
 public:
  explicit WrongAdjointStep(std::shared_ptr<Step> inner)
      : Step(inner->grid()), inner_(std::move(inner)) {}
  std::string name() const override { return "wrong-adjoint"; }
  bool isLinear() const override { return inner_->isLinear(); }
  void forward(Vec x, Vec y) override { inner_->forward(x, y); }
  void jvp(Vec x, Vec dx, Vec dy) override { inner_->jvp(x, dx, dy); }
  void vjp(Vec x, Vec w, Vec wx) override {
    inner_->vjp(x, w, wx);
    PG_CALL(VecScale(wx, 1.01));
  }

 private:
  std::shared_ptr<Step> inner_;
};

// ---------------------------------------------------------------------------------------
// The operators under test.

enum class Kind { Explicit, BackwardEuler, CrankNicolson, Mixed };

struct OperatorCase {
  std::string label;
  Kind kind;
  int dim;
  Boundary boundary;
  /// 1: the bare step; K > 1: a Simulator of K equal steps (ignored for Mixed).
  int steps;
};

std::ostream& operator<<(std::ostream& os, const OperatorCase& c) { return os << c.label; }

GridSpec specFor(const OperatorCase& c) {
  GridSpec s;
  s.dim = c.dim;
  s.boundary = c.boundary;
  // Unequal lengths give unequal spacings, so each axis's 1/h^2 is exercised separately.
  const PetscInt n = c.dim == 1 ? 64 : (c.dim == 2 ? 32 : 16);
  const PetscInt nd = c.boundary == Boundary::Periodic ? n : n - 1;
  s.n = {nd, nd, nd};
  s.length = {1.0, c.dim == 2 ? 2.0 : 1.0, 1.5};
  return s;
}

constexpr double kKappa = 0.7;

/// dt with kappa dt sum_d 1/h_d^2 = rho.  The chosen rho keep every inverse well conditioned:
/// explicit rho = 0.2 (the stable limit is 0.5; the inverse amplifies by at most 1/(1-4 rho)
/// = 5), backward Euler rho = 2 (kappa dt / h^2 about 1 in 2D), Crank-Nicolson rho = 0.4
/// (its inverse solves with I + dt kappa/2 Delta_h, which must stay positive definite:
/// rho < 1/2).
double dtFor(const Grid& grid, Kind kind) {
  double inv_h2 = 0.0;
  for (int a = 0; a < grid.dim(); ++a) inv_h2 += 1.0 / (grid.h(a) * grid.h(a));
  const double rho = kind == Kind::Explicit ? 0.2 : (kind == Kind::CrankNicolson ? 0.4 : 2.0);
  return rho / (kKappa * inv_h2);
}

std::shared_ptr<Step> buildOperator(const Grid& grid, const OperatorCase& c) {
  if (c.kind == Kind::Mixed) {
    std::vector<std::shared_ptr<Step>> steps = {
        std::make_shared<ImplicitDiffusionStep>(
            grid, DiffusionParams{kKappa, dtFor(grid, Kind::BackwardEuler)}, 1.0),
        std::make_shared<PointwiseScaleStep>(grid),
        std::make_shared<ExplicitDiffusionStep>(
            grid, DiffusionParams{kKappa, dtFor(grid, Kind::Explicit)}),
        std::make_shared<PointwiseCubicStep>(grid, 0.2),
        std::make_shared<ImplicitDiffusionStep>(
            grid, DiffusionParams{kKappa, dtFor(grid, Kind::CrankNicolson)}, 0.5),
    };
    return std::make_shared<Simulator>(grid, std::move(steps));
  }
  const DiffusionParams p{kKappa, dtFor(grid, c.kind)};
  if (c.steps > 1) {
    const DiffusionScheme scheme = c.kind == Kind::Explicit        ? DiffusionScheme::Explicit
                                   : c.kind == Kind::BackwardEuler ? DiffusionScheme::BackwardEuler
                                                                   : DiffusionScheme::CrankNicolson;
    return makeDiffusionSimulator(grid, scheme, kKappa, c.steps * p.dt, c.steps);
  }
  switch (c.kind) {
    case Kind::Explicit:
      return std::make_shared<ExplicitDiffusionStep>(grid, p);
    case Kind::BackwardEuler:
      return std::make_shared<ImplicitDiffusionStep>(grid, p, 1.0);
    default:
      return std::make_shared<ImplicitDiffusionStep>(grid, p, 0.5);
  }
}

std::vector<OperatorCase> allCases() {
  struct Geometry {
    const char* name;
    int dim;
    Boundary boundary;
  };
  const Geometry geometries[] = {{"Periodic1D", 1, Boundary::Periodic},
                                 {"Periodic2D", 2, Boundary::Periodic},
                                 {"Periodic3D", 3, Boundary::Periodic},
                                 {"Dirichlet2D", 2, Boundary::ZeroDirichlet}};
  struct Scheme {
    const char* name;
    Kind kind;
  };
  const Scheme schemes[] = {{"Explicit", Kind::Explicit},
                            {"BackwardEuler", Kind::BackwardEuler},
                            {"CrankNicolson", Kind::CrankNicolson}};
  std::vector<OperatorCase> out;
  for (const Geometry& g : geometries) {
    for (const Scheme& s : schemes) {
      for (int steps : {1, 4}) {
        out.push_back({std::string(s.name) + (steps == 1 ? "Step" : "Simulator4") + g.name, s.kind,
                       g.dim, g.boundary, steps});
      }
    }
    // The mixed simulator in 3D would only repeat the 2D check at a higher cost.
    if (g.dim < 3) {
      out.push_back({std::string("MixedSimulator") + g.name, Kind::Mixed, g.dim, g.boundary, 5});
    }
  }
  return out;
}

class OperatorDerivatives : public ::testing::TestWithParam<OperatorCase> {
 protected:
  void SetUp() override {
    grid_ = std::make_unique<Grid>(Environment::comm(), specFor(GetParam()));
    op_ = buildOperator(*grid_, GetParam());
    x_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 1));
    v_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 2));
    w_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 3));
    target_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 4));
  }
  // Declared in dependency order, so the operator's PETSc objects die before the grid's DM.
  std::unique_ptr<Grid> grid_;
  std::shared_ptr<Step> op_;
  OwnedVec x_, v_, w_, target_;
};

void expectSecondOrder(const TaylorTable& table, const std::string& label) {
  const std::vector<double> orders = table.orders();
  for (size_t i = 0; i < orders.size(); ++i) {
    rootPrintf("  %-36s eps=%.3e remainder=%.3e order=%.4f\n", label.c_str(), table.eps[i + 1],
               table.remainder[i + 1], orders[i]);
    EXPECT_GT(orders[i], 1.8) << "eps " << table.eps[i + 1];
    EXPECT_LT(orders[i], 2.2) << "eps " << table.eps[i + 1];
  }
  // The table must sit far above round-off in f, or the orders would mean nothing.
  EXPECT_GT(table.smallestRemainder(), 1e-8 * table.f0);
}

TEST_P(OperatorDerivatives, TaylorTestOfMisfitHasOrderTwo) {
  const TaylorTable table = taylorTable(*op_, x_, v_, target_, 1e-2, 5);
  expectSecondOrder(table, GetParam().label);
}

TEST_P(OperatorDerivatives, AdjointIsConsistentToRoundOff) {
  const double smooth = adjointMismatch(*op_, x_, v_, w_);
  OwnedVec rough_v = fieldFromNatural(*grid_, roughRandomNatural(*grid_, 5));
  OwnedVec rough_w = fieldFromNatural(*grid_, roughRandomNatural(*grid_, 6));
  const double rough = adjointMismatch(*op_, x_, rough_v, rough_w);
  rootPrintf("  %-36s adjoint mismatch: smooth %.2e, rough %.2e\n", GetParam().label.c_str(),
             smooth, rough);
  EXPECT_LE(smooth, 1e-12);
  EXPECT_LE(rough, 1e-12);
}

TEST_P(OperatorDerivatives, InverseUndoesForward) {
  const double mismatch = inverseMismatch(*op_, x_);
  rootPrintf("  %-36s inverse mismatch %.2e\n", GetParam().label.c_str(), mismatch);
  EXPECT_LE(mismatch, 1e-10);
}

TEST_P(OperatorDerivatives, ResultsDoNotDependOnTheNumberOfRanks) {
  // Every rank builds a serial copy of the same problem; the distributed results,
  // gathered in natural order, must agree with it to round-off.
  const Grid serial_grid(PETSC_COMM_SELF, specFor(GetParam()));
  std::shared_ptr<Step> serial_op = buildOperator(serial_grid, GetParam());

  struct Run {
    const Grid& grid;
    Step& op;
    std::vector<double> forward, jvp, vjp, inverse;
  };
  auto run = [](Run& r) {
    const Grid& g = r.grid;
    OwnedVec x = fieldFromNatural(g, smoothRandomNatural(g, 1));
    OwnedVec v = fieldFromNatural(g, smoothRandomNatural(g, 2));
    OwnedVec w = fieldFromNatural(g, roughRandomNatural(g, 3));
    OwnedVec out = g.createGlobal();
    r.op.forward(x, out);
    r.forward = g.gatherNatural(out);
    r.op.jvp(x, v, out);
    r.jvp = g.gatherNatural(out);
    r.op.vjp(x, w, out);
    r.vjp = g.gatherNatural(out);
    r.op.inverse(x, v, out);
    r.inverse = g.gatherNatural(out);
  };
  Run distributed{*grid_, *op_, {}, {}, {}, {}};
  Run serial{serial_grid, *serial_op, {}, {}, {}, {}};
  run(distributed);
  run(serial);

  testutil::expectSameAcrossRanks(GetParam().label, distributed, serial);
}

INSTANTIATE_TEST_SUITE_P(Diffusion, OperatorDerivatives, ::testing::ValuesIn(allCases()),
                         [](const ::testing::TestParamInfo<OperatorCase>& param_info) {
                           return param_info.param.label;
                         });

// ---------------------------------------------------------------------------------------
// The checks themselves must have teeth: a 1% error in the adjoint fails both.

TEST(DerivativeChecks, DetectAWrongAdjoint) {
  const OperatorCase c{"BackwardEulerStepPeriodic2D", Kind::BackwardEuler, 2, Boundary::Periodic,
                       1};
  Grid grid(Environment::comm(), specFor(c));
  WrongAdjointStep wrong(buildOperator(grid, c));
  OwnedVec x = fieldFromNatural(grid, smoothRandomNatural(grid, 1));
  OwnedVec v = fieldFromNatural(grid, smoothRandomNatural(grid, 2));
  OwnedVec w = fieldFromNatural(grid, smoothRandomNatural(grid, 3));
  OwnedVec target = fieldFromNatural(grid, smoothRandomNatural(grid, 4));

  const std::vector<double> orders = taylorTable(wrong, x, v, target, 1e-2, 5).orders();
  const double mismatch = adjointMismatch(wrong, x, v, w);
  rootPrintf("  wrong adjoint: Taylor orders %.3f ... %.3f, adjoint mismatch %.2e\n",
             orders.front(), orders.back(), mismatch);
  // The O(eps) error of the slope takes over as eps shrinks: the order drops towards 1.
  EXPECT_LT(orders.back(), 1.5);
  EXPECT_GT(mismatch, 1e-4);
}

// ---------------------------------------------------------------------------------------
// Simulator bookkeeping.

TEST(Simulator, ForwardComposesTheStepsInOrder) {
  const OperatorCase c{"MixedSimulatorPeriodic2D", Kind::Mixed, 2, Boundary::Periodic, 5};
  Grid grid(Environment::comm(), specFor(c));
  auto op = buildOperator(grid, c);
  auto& sim = dynamic_cast<Simulator&>(*op);
  ASSERT_EQ(sim.numSteps(), 5u);

  OwnedVec x = fieldFromNatural(grid, smoothRandomNatural(grid, 1));
  OwnedVec y = grid.createGlobal(), a = grid.createGlobal(), b = grid.createGlobal();
  sim.forward(x, y);
  PG_CALL(VecCopy(x, a));
  for (size_t k = 0; k < sim.numSteps(); ++k) {
    sim.step(k).forward(a, b);
    std::swap(a, b);
  }
  // Same operations in the same order: identical up to the Krylov solves, which start
  // from zero each time and are therefore repeated exactly.
  PG_CALL(VecAXPY(a, -1.0, y));
  PetscReal diff = 0.0, norm = 0.0;
  PG_CALL(VecNorm(a, NORM_2, &diff));
  PG_CALL(VecNorm(y, NORM_2, &norm));
  EXPECT_LE(diff, 1e-15 * norm);
  EXPECT_EQ(sim.counts().forward, 5);
}

TEST(Simulator, RejectsInvalidStepLists) {
  GridSpec spec;
  spec.n = {16, 16, 1};
  Grid grid(Environment::comm(), spec);
  Grid other(Environment::comm(), spec);
  const DiffusionParams p{1.0, 1e-4};
  EXPECT_THROW(Simulator(grid, {}), InputError);
  EXPECT_THROW(Simulator(grid, {std::make_shared<ExplicitDiffusionStep>(grid, p), nullptr}),
               InputError);
  // A step on another grid (even an identical one) would read Vecs of the wrong DM.
  EXPECT_THROW(Simulator(grid, {std::make_shared<ExplicitDiffusionStep>(other, p)}), InputError);
}

}  // namespace
}  // namespace physgrad
