// Burgers: the semi-Lagrangian self-advection step and operator-split simulators.
//   - derivative checks of the (nonlinear) self-advection step in 1D/2D/3D, periodic and
//     zero-Dirichlet, linear and cubic, and of viscous-Burgers simulators: Taylor order 2
//     (where a wrong linearisation shows), adjoint to round-off, inverse consistency,
//     independence of the number of ranks;
//   - the approximate (backwards) inverse and the Newton-Krylov inverse (quadratic
//     convergence);
//   - accuracy: inviscid Burgers against the implicit exact solution before the shock,
//     viscous Burgers against the Cole-Hopf solution, the O(dt) effect of the split order;
//   - checkpointed gradients, component-wise diffusion, bad input.
//
// Every assertion is on a globally reduced number, so all ranks take the same branches.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "derivative_checks.hpp"
#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/burgers.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/simulator.hpp"
#include "physgrad/physics/splitting.hpp"
#include "physgrad/physics/velocity.hpp"

namespace physgrad {
namespace {

using testutil::adjointMismatch;
using testutil::fieldFromNatural;
using testutil::kPi;
using testutil::maxRelativeDifference;
using testutil::roughRandomNatural;
using testutil::smoothRandomNatural;
using testutil::TaylorTable;
using testutil::taylorTable;

// ---------------------------------------------------------------------------------------
// Fields with one component per dimension (interleaved), in natural ordering.

/// f(pos, value) at every node; `value` receives grid.dof() components.
std::vector<double> sampleNatural(const Grid& grid,
                                  const std::function<void(const double*, double*)>& f) {
  const PetscInt dof = grid.dof();
  std::vector<double> out(static_cast<size_t>(grid.size() * dof));
  for (PetscInt k = 0; k < grid.n(2); ++k)
    for (PetscInt j = 0; j < grid.n(1); ++j)
      for (PetscInt i = 0; i < grid.n(0); ++i) {
        const PetscInt idx[3] = {i, j, k};
        double pos[3] = {0.0, 0.0, 0.0};
        for (int a = 0; a < grid.dim(); ++a) pos[a] = grid.coordinate(a, idx[a]);
        f(pos, &out[static_cast<size_t>(grid.naturalIndex(i, j, k) * dof)]);
      }
  return out;
}

/// Interleaves dof scalar fields made by `component(c)`.
std::vector<double> interleave(const Grid& grid,
                               const std::function<std::vector<double>(PetscInt)>& component) {
  const PetscInt dof = grid.dof();
  std::vector<double> out(static_cast<size_t>(grid.size() * dof));
  for (PetscInt c = 0; c < dof; ++c) {
    const std::vector<double> f = component(c);
    for (size_t p = 0; p < f.size(); ++p) out[p * static_cast<size_t>(dof) + c] = f[p];
  }
  return out;
}

/// A smooth random velocity field: per component a few separable modes of wavenumber at most
/// 2 (sines on Dirichlet grids, shifted cosines on periodic ones, from a fixed-seed stream),
/// scaled so that a step of length dt moves the fastest point `cells` cells along some axis.
/// Low wavenumbers keep dt |grad u| well below 1 on the coarse test grids, so characteristics
/// do not cross within a step and the step stays invertible.  A faint generic term keeps u
/// off exact zeros: there (sine nodes at rational coordinates) the departure point sits on a
/// grid node, where the interpolant's gradient jumps and S has only one-sided derivatives.
std::vector<double> smoothVelocityNatural(const Grid& grid, unsigned seed, double dt,
                                          double cells) {
  const PetscInt dof = grid.dof();
  const bool periodic = grid.boundary() == Boundary::Periodic;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> amplitude(-1.0, 1.0), phase(0.0, 2.0 * kPi);
  std::uniform_int_distribution<int> wave(periodic ? 0 : 1, 2);
  struct Mode {
    double a;
    std::array<int, 3> m;
    std::array<double, 3> phi;
  };
  std::vector<std::vector<Mode>> modes(static_cast<size_t>(dof));
  for (auto& component : modes) {
    for (int t = 0; t < 3; ++t) {
      Mode mode{amplitude(gen), {}, {}};
      for (int d = 0; d < 3; ++d) {
        mode.m[d] = wave(gen);
        mode.phi[d] = phase(gen);
      }
      component.push_back(mode);
    }
  }
  std::vector<double> u = sampleNatural(grid, [&](const double* pos, double* value) {
    for (PetscInt c = 0; c < dof; ++c) {
      double sum = 0.0;
      for (const Mode& mode : modes[static_cast<size_t>(c)]) {
        double f = mode.a;
        for (int d = 0; d < grid.dim(); ++d) {
          const double kx = testutil::wavenumber(grid, d, mode.m[d]) * pos[d];
          f *= periodic ? std::cos(kx + mode.phi[d]) : std::sin(kx);
        }
        sum += f;
      }
      value[c] = sum + 1e-3 * std::cos(1.7 * pos[0] + 2.3 * pos[1] + 0.9 * pos[2] + c + seed);
    }
  });
  double largest = 0.0;
  for (size_t e = 0; e < u.size(); ++e) {
    largest = std::max(largest, std::abs(u[e]) * dt / grid.h(static_cast<int>(e % dof)));
  }
  for (double& v : u) v *= cells / largest;
  return u;
}

std::vector<double> roughVectorNatural(const Grid& grid, unsigned seed) {
  return interleave(grid, [&](PetscInt c) { return roughRandomNatural(grid, seed + 101 * c); });
}

/// ||a - b|| / ||b|| of two global Vecs (collective).
double relativeError(Vec a, Vec b) {
  OwnedVec diff;
  PG_CALL(VecDuplicate(a, diff.out()));
  PG_CALL(VecWAXPY(diff, -1.0, b, a));
  PetscReal d = 0.0, n = 0.0;
  PG_CALL(VecNorm(diff, NORM_2, &d));
  PG_CALL(VecNorm(b, NORM_2, &n));
  return d / n;
}

std::vector<double> ordersOf(const std::vector<double>& errors) {
  std::vector<double> out;
  for (size_t i = 0; i + 1 < errors.size(); ++i) {
    out.push_back(std::log(errors[i] / errors[i + 1]) / std::log(2.0));
  }
  return out;
}

void printSeries(const std::string& label, const std::vector<double>& errors) {
  std::string line = "  " + label + ": errors";
  char buf[64];
  for (double e : errors) {
    std::snprintf(buf, sizeof buf, " %.3e", e);
    line += buf;
  }
  line += "  orders";
  for (double o : ordersOf(errors)) {
    std::snprintf(buf, sizeof buf, " %.2f", o);
    line += buf;
  }
  rootPrintf("%s\n", line.c_str());
}

GridSpec velocityGrid(int dim, PetscInt n, Boundary boundary = Boundary::Periodic) {
  GridSpec s;
  s.dim = dim;
  s.n = {n, n, n};
  s.boundary = boundary;
  s.dof = dim;
  s.stencil_width = 2;  // cubic stencils of departures below one cell reach 2 nodes
  return s;
}

// ---------------------------------------------------------------------------------------
// Derivative checks.

enum class Kind { Step, ViscousSimulator };

struct BurgersCase {
  std::string label;
  Kind kind;
  int dim;
  Boundary boundary;
  Interpolation interpolation;
  SplitOrder order;
};

std::ostream& operator<<(std::ostream& os, const BurgersCase& c) { return os << c.label; }

constexpr double kDt = 0.02;  // of one self-advection step
// Largest departure distance of the initial state, in cells.  Below half a cell: at a
// fractional offset of 1/2, linear and cubic interpolation annihilate the grid-scale mode,
// and the inverse of the step amplifies round-off there without bound.
constexpr double kCells = 0.35;
// Viscosity of the simulators: nu dt / h^2 <= 0.8.  The inverse of a backward-Euler step
// amplifies the grid-scale mode by 1 + 4 nu dt / h^2 per axis; with nu = 0.05 (4.1 in 1D)
// three of them turned round-off into distributed-vs-serial differences of 2e-12.
constexpr double kNu = 0.01;
constexpr PetscInt kSteps = 3;  // time steps of the simulators

GridSpec specFor(const BurgersCase& c) {
  const PetscInt n = c.dim == 1 ? 64 : (c.dim == 2 ? 32 : 16);
  GridSpec s = velocityGrid(c.dim, c.boundary == Boundary::Periodic ? n : n - 1, c.boundary);
  // Unequal counts and lengths: unequal spacings.
  if (c.dim == 2) s.n[1] = s.n[0] - 8;
  if (c.dim == 3) s.n = {s.n[0], s.n[0] - 2, s.n[0] - 3};
  s.length = {1.0, c.dim == 2 ? 2.0 : 1.0, 1.5};
  return s;
}

std::shared_ptr<Step> buildOperator(const Grid& grid, const BurgersCase& c) {
  if (c.kind == Kind::Step) return std::make_shared<SelfAdvectionStep>(grid, kDt, c.interpolation);
  return makeViscousBurgersSimulator(grid, kNu, kSteps * kDt, kSteps, c.interpolation, c.order);
}

std::vector<BurgersCase> allCases() {
  struct Geometry {
    const char* name;
    int dim;
    Boundary boundary;
  };
  const Geometry geometries[] = {
      {"Periodic1D", 1, Boundary::Periodic},       {"Periodic2D", 2, Boundary::Periodic},
      {"Periodic3D", 3, Boundary::Periodic},       {"Dirichlet1D", 1, Boundary::ZeroDirichlet},
      {"Dirichlet2D", 2, Boundary::ZeroDirichlet}, {"Dirichlet3D", 3, Boundary::ZeroDirichlet}};
  std::vector<BurgersCase> out;
  for (const Geometry& g : geometries) {
    for (Interpolation kind : {Interpolation::Linear, Interpolation::Cubic}) {
      const std::string interp = kind == Interpolation::Linear ? "Linear" : "Cubic";
      out.push_back({"Step" + interp + g.name, Kind::Step, g.dim, g.boundary, kind,
                     SplitOrder::AdvectionFirst});
    }
  }
  // Simulators in 3D would only repeat the 2D checks at a higher cost.
  out.push_back({"ViscousAdvectionFirstCubicPeriodic1D", Kind::ViscousSimulator, 1,
                 Boundary::Periodic, Interpolation::Cubic, SplitOrder::AdvectionFirst});
  out.push_back({"ViscousDiffusionFirstLinearPeriodic2D", Kind::ViscousSimulator, 2,
                 Boundary::Periodic, Interpolation::Linear, SplitOrder::DiffusionFirst});
  out.push_back({"ViscousStrangCubicDirichlet2D", Kind::ViscousSimulator, 2,
                 Boundary::ZeroDirichlet, Interpolation::Cubic, SplitOrder::Strang});
  return out;
}

class BurgersDerivatives : public ::testing::TestWithParam<BurgersCase> {
 protected:
  void SetUp() override {
    grid_ = std::make_unique<Grid>(Environment::comm(), specFor(GetParam()));
    op_ = buildOperator(*grid_, GetParam());
    x_ = fieldFromNatural(*grid_, smoothVelocityNatural(*grid_, 1, kDt, kCells));
    v_ = fieldFromNatural(*grid_, smoothVelocityNatural(*grid_, 2, kDt, kCells));
    w_ = fieldFromNatural(*grid_, smoothVelocityNatural(*grid_, 3, kDt, kCells));
    target_ = fieldFromNatural(*grid_, smoothVelocityNatural(*grid_, 4, kDt, kCells));
  }
  bool isStep() const { return GetParam().kind == Kind::Step; }

  std::unique_ptr<Grid> grid_;
  std::shared_ptr<Step> op_;
  OwnedVec x_, v_, w_, target_;
};

TEST_P(BurgersDerivatives, TaylorTestOfMisfitHasOrderTwo) {
  // The remainder of 1/2 ||S(x + eps v) - y*||^2 is O(eps^2) only if vjp is the gradient of
  // the discrete map, including the -dt grad u term of the moving departure points (without
  // it the order drops to 1).  The interpolant's gradient jumps across cell faces, so S is
  // only piecewise smooth: a departure point that crosses a face between x and x + eps v adds
  // a kink term.  Such crossings get rarer as eps shrinks, so eps starts small: 1e-4 (about
  // 1e-5 cells of displacement), and 2e-5 for linear interpolation, whose gradient jumps are
  // O(1) rather than the O(h^3) of cubic interpolation (measured: the first linear 2D
  // simulator order was 1.79 from eps = 1e-4, 2.00 +- 0.01 from 2e-5).  The remainders stay far
  // above the round-off of f.
  const double eps0 = GetParam().interpolation == Interpolation::Linear ? 2e-5 : 1e-4;
  const TaylorTable table = taylorTable(*op_, x_, v_, target_, eps0, 5);
  const std::vector<double> orders = table.orders();
  for (size_t i = 0; i < orders.size(); ++i) {
    rootPrintf("  %-40s eps=%.3e remainder/f0=%.3e order=%.4f\n", GetParam().label.c_str(),
               table.eps[i + 1], table.remainder[i + 1] / table.f0, orders[i]);
    EXPECT_GT(orders[i], 1.8) << "eps " << table.eps[i + 1];
    EXPECT_LT(orders[i], 2.2) << "eps " << table.eps[i + 1];
  }
  EXPECT_GT(table.smallestRemainder(), 1e-13 * table.f0);
}

TEST_P(BurgersDerivatives, AdjointIsConsistentToRoundOff) {
  const double smooth = adjointMismatch(*op_, x_, v_, w_);
  OwnedVec rough_v = fieldFromNatural(*grid_, roughVectorNatural(*grid_, 5));
  OwnedVec rough_w = fieldFromNatural(*grid_, roughVectorNatural(*grid_, 6));
  const double rough = adjointMismatch(*op_, x_, rough_v, rough_w);
  rootPrintf("  %-40s adjoint mismatch: smooth %.2e, rough %.2e\n", GetParam().label.c_str(),
             smooth, rough);
  EXPECT_LE(smooth, 1e-12);
  EXPECT_LE(rough, 1e-12);
}

/// y' = S(x) + 1e-3 ||S(x)|| times a smooth unit perturbation: a target the local inverse
/// around x must actually solve for.
void perturbedImage(Step& op, Vec x, Vec y) {
  const Grid& g = op.grid();
  op.forward(x, y);
  OwnedVec p = fieldFromNatural(g, smoothVelocityNatural(g, 9, kDt, kCells));
  PetscReal ny = 0.0, np = 0.0;
  PG_CALL(VecNorm(y, NORM_2, &ny));
  PG_CALL(VecNorm(p, NORM_2, &np));
  PG_CALL(VecAXPY(y, 1e-3 * ny / np, p));
}

TEST_P(BurgersDerivatives, OnePassAdjointEqualsTheTableAdjoint) {
  // vjp at a state the step is not linearised at builds and uses each stencil in one pass,
  // leaving its scatter array zero for the next one; after jvp(x) it uses the tables the
  // jvp built.  All must give the same numbers, whatever the step did before.
  if (!isStep()) GTEST_SKIP() << "a property of the single step";
  OwnedVec one_pass = grid_->createGlobal(), tables = grid_->createGlobal(),
           again = grid_->createGlobal(), after_jvp = grid_->createGlobal(),
           scratch = grid_->createGlobal();
  OwnedVec rough_w = fieldFromNatural(*grid_, roughVectorNatural(*grid_, 7));
  auto fresh = buildOperator(*grid_, GetParam());
  fresh->vjp(x_, rough_w, one_pass);
  // One-pass again, after a one-pass adjoint at another state.
  auto reused = buildOperator(*grid_, GetParam());
  reused->vjp(w_, v_, scratch);
  reused->vjp(x_, rough_w, again);
  // The tables of a jvp at x; then, after a jvp at another state (the tables are no longer
  // at x, and that jvp used the step's work array), one-pass at x again.
  op_->jvp(x_, v_, scratch);
  op_->vjp(x_, rough_w, tables);
  op_->jvp(w_, v_, scratch);
  op_->vjp(x_, rough_w, after_jvp);
  const std::vector<double> reference = grid_->gatherNatural(one_pass);
  const MPI_Comm comm = grid_->comm();
  EXPECT_LE(maxRelativeDifference(grid_->gatherNatural(tables), reference, comm), 1e-15)
      << GetParam().label << ": tables";
  EXPECT_LE(maxRelativeDifference(grid_->gatherNatural(again), reference, comm), 1e-15)
      << GetParam().label << ": one-pass after one-pass";
  EXPECT_LE(maxRelativeDifference(grid_->gatherNatural(after_jvp), reference, comm), 1e-15)
      << GetParam().label << ": one-pass after jvp";
}

/// A record no self-advection step made.
struct ForeignRecord final : LinearisationRecord {
  size_t bytes() const override { return 0; }
};

TEST_P(BurgersDerivatives, RecordedAdjointEqualsTheOnePassAdjoint) {
  // forwardAndRecord gives forward's y and the Jacobian terms of x; a vjp at the Vec the
  // record was restored for reads them instead of interpolating the state's gradient, with
  // the same numbers.  The record applies to that Vec only, and only while it is unchanged.
  if (!isStep()) GTEST_SKIP() << "a property of the single step";
  const MPI_Comm comm = grid_->comm();
  OwnedVec y_plain = grid_->createGlobal(), y_recorded = grid_->createGlobal(),
           plain = grid_->createGlobal(), recorded = grid_->createGlobal(),
           elsewhere = grid_->createGlobal(), elsewhere_plain = grid_->createGlobal(),
           changed = grid_->createGlobal(), changed_plain = grid_->createGlobal(),
           x_copy = grid_->createGlobal();
  OwnedVec rough_w = fieldFromNatural(*grid_, roughVectorNatural(*grid_, 7));
  auto fresh = buildOperator(*grid_, GetParam());
  fresh->forward(x_, y_plain);
  fresh->vjp(x_, rough_w, plain);
  fresh->vjp(w_, rough_w, elsewhere_plain);

  std::shared_ptr<const LinearisationRecord> record = op_->forwardAndRecord(x_, y_recorded);
  ASSERT_TRUE(record);
  const size_t entries = static_cast<size_t>(grid_->owned().count() * grid_->dim() * grid_->dim());
  EXPECT_GE(record->bytes(), entries * sizeof(double));
  op_->restoreLinearisation(record, x_);
  op_->vjp(x_, rough_w, recorded);
  op_->vjp(w_, rough_w, elsewhere);  // another Vec: the record does not apply
  // Equal in 1D and 2D; in 3D the two kernels' multiply-adds may fuse differently (measured:
  // 7e-17 relative).
  EXPECT_LE(
      maxRelativeDifference(grid_->gatherNatural(y_recorded), grid_->gatherNatural(y_plain), comm),
      GetParam().dim == 3 ? 1e-15 : 0.0)
      << GetParam().label << ": forwardAndRecord's y";
  EXPECT_LE(
      maxRelativeDifference(grid_->gatherNatural(recorded), grid_->gatherNatural(plain), comm),
      1e-15)
      << GetParam().label << ": vjp with the record";
  EXPECT_LE(maxRelativeDifference(grid_->gatherNatural(elsewhere),
                                  grid_->gatherNatural(elsewhere_plain), comm),
            1e-15)
      << GetParam().label << ": vjp at another Vec";

  // Restored for a copy of x that then changes: the vjp must linearise at the new values.
  PG_CALL(VecCopy(x_, x_copy));
  op_->restoreLinearisation(record, x_copy);
  PG_CALL(VecScale(x_copy, 0.5));
  op_->vjp(x_copy, rough_w, changed);
  fresh->vjp(x_copy, rough_w, changed_plain);
  EXPECT_LE(maxRelativeDifference(grid_->gatherNatural(changed),
                                  grid_->gatherNatural(changed_plain), comm),
            1e-15)
      << GetParam().label << ": vjp at a Vec changed since the restore";

  EXPECT_THROW(op_->restoreLinearisation(std::make_shared<ForeignRecord>(), x_), std::logic_error);
  // A record may outlive its step (its buffer goes back to the step's pool, kept alive by
  // the record).
  {
    auto short_lived = buildOperator(*grid_, GetParam());
    record = short_lived->forwardAndRecord(x_, y_recorded);
  }
  record.reset();
}

TEST_P(BurgersDerivatives, InverseIsConsistent) {
  OwnedVec y = grid_->createGlobal(), back = grid_->createGlobal(), check = grid_->createGlobal();
  double from_scratch = 0.0;
  if (isStep()) {
    // Without x0 the Newton solve starts from the backwards step and must find x itself.
    op_->forward(x_, y);
    op_->inverse(nullptr, y, back);
    from_scratch = relativeError(back, x_);
  }
  // Around x, for a target off the image of x: S(S^{-1}(y')) = y'.
  perturbedImage(*op_, x_, y);
  op_->inverse(x_, y, back);
  op_->forward(back, check);
  const double residual = relativeError(check, y);
  rootPrintf(
      "  %-40s inverse: ||S^-1(S(x)) - x|| / ||x|| %.2e, ||S(S^-1(y')) - y'|| / ||y'|| "
      "%.2e\n",
      GetParam().label.c_str(), from_scratch, residual);
  EXPECT_LE(from_scratch, 1e-10);
  EXPECT_LE(residual, 1e-10);
}

TEST_P(BurgersDerivatives, ResultsDoNotDependOnTheNumberOfRanks) {
  const Grid serial_grid(PETSC_COMM_SELF, specFor(GetParam()));
  std::shared_ptr<Step> serial_op = buildOperator(serial_grid, GetParam());
  const bool step = isStep();
  struct Run {
    const Grid& grid;
    Step& op;
    std::vector<double> forward, jvp, vjp, inverse;
  };
  auto run_all = [step](Run& r) {
    const Grid& g = r.grid;
    OwnedVec x = fieldFromNatural(g, smoothVelocityNatural(g, 1, kDt, kCells));
    OwnedVec v = fieldFromNatural(g, smoothVelocityNatural(g, 2, kDt, kCells));
    OwnedVec w = fieldFromNatural(g, roughVectorNatural(g, 3));
    OwnedVec out = g.createGlobal(), y = g.createGlobal();
    r.op.forward(x, out);
    r.forward = g.gatherNatural(out);
    r.op.jvp(x, v, out);
    r.jvp = g.gatherNatural(out);
    r.op.vjp(x, w, out);
    r.vjp = g.gatherNatural(out);
    perturbedImage(r.op, x, y);
    r.op.inverse(step ? nullptr : x.get(), y, out);
    r.inverse = g.gatherNatural(out);
  };
  Run distributed{*grid_, *op_, {}, {}, {}, {}};
  Run serial{serial_grid, *serial_op, {}, {}, {}, {}};
  run_all(distributed);
  run_all(serial);
  testutil::expectSameAcrossRanks(GetParam().label, distributed, serial);
}

INSTANTIATE_TEST_SUITE_P(Burgers, BurgersDerivatives, ::testing::ValuesIn(allCases()),
                         [](const ::testing::TestParamInfo<BurgersCase>& param_info) {
                           return param_info.param.label;
                         });

// ---------------------------------------------------------------------------------------
// Inverses.

/// A smooth periodic velocity with a mean drift (so that departures cross cell faces in
/// every direction) on the unit line / square.
void driftingWave(int dim, const double* p, double* u) {
  if (dim == 1) {
    u[0] = 0.5 + 0.25 * std::sin(2.0 * kPi * p[0]);
    return;
  }
  u[0] = 0.3 + 0.2 * std::sin(2.0 * kPi * p[0]) * std::cos(2.0 * kPi * p[1]);
  u[1] = -0.2 + 0.15 * std::cos(2.0 * kPi * p[0]) * std::sin(2.0 * kPi * p[1]);
}

/// ||T(S(x)) - x|| / ||x|| of the backwards step T, on refinement at a fixed Courant number.
std::vector<double> roundTripErrors(int dim, Interpolation kind) {
  std::vector<double> errors;
  for (PetscInt n : {32, 64, 128, 256}) {
    if (dim == 2 && n > 128) break;
    Grid grid(Environment::comm(), velocityGrid(dim, n));
    const double max_speed = dim == 1 ? 0.75 : 0.5;
    SelfAdvectionStep step(grid, 0.4 * grid.h(0) / max_speed, kind);
    OwnedVec x = fieldFromNatural(
        grid, sampleNatural(grid, [dim](const double* p, double* u) { driftingWave(dim, p, u); }));
    OwnedVec y = grid.createGlobal(), back = grid.createGlobal();
    step.forward(x, y);
    step.approximateInverse(y, back);
    errors.push_back(relativeError(back, x));
  }
  return errors;
}

TEST(SelfAdvectionInverse, BackwardsStepIsAnInverseToSecondOrder) {
  // The backwards step takes the departure from y(x) instead of the unknown u(x) at the
  // foot of the characteristic: T(S(u)) = u - 2 dt^2 u (u')^2 + ... in 1D, O(h^2) at a fixed
  // Courant number, for linear and cubic interpolation alike (linear interpolation adds
  // its own O(h^2) per application).  Measured (finest pair): 2.00 for linear and cubic, in 1D
  // and 2D.
  for (int dim : {1, 2}) {
    for (Interpolation kind : {Interpolation::Linear, Interpolation::Cubic}) {
      const std::vector<double> errors = roundTripErrors(dim, kind);
      printSeries(
          std::string("backwards round trip ") + toString(kind) + " " + std::to_string(dim) + "D",
          errors);
      const double order = ordersOf(errors).back();
      EXPECT_GT(order, 1.85) << toString(kind) << " " << dim << "D";
      EXPECT_LT(order, 2.15) << toString(kind) << " " << dim << "D";
    }
  }
}

TEST(SelfAdvectionInverse, NewtonConvergesQuadraticallyNearTheSolution) {
  // Newton from x0 + a 1e-2 perturbation, with inner GMRES solves tight enough that the
  // Newton error, not the Krylov error, decides: r_{k+1} ~ C r_k^2 until round-off.
  // Measured relative residuals: linear 8.3e-3, 3.2e-6, 2.4e-11, 4.5e-16 (log ratios 2.64,
  // 1.93: linear interpolation's O(1) gradient jumps at cell faces make S only piecewise
  // smooth, which costs a little); cubic 8.3e-3, 2.9e-6, 4.5e-13, 4.7e-16 (2.62, 2.23).
  for (Interpolation kind : {Interpolation::Linear, Interpolation::Cubic}) {
    Grid grid(Environment::comm(), velocityGrid(2, 48));
    SelfAdvectionStep step(grid, 0.02, kind);
    OwnedVec x0 = fieldFromNatural(grid, smoothVelocityNatural(grid, 11, 0.02, 0.35));
    OwnedVec p = fieldFromNatural(grid, smoothVelocityNatural(grid, 12, 0.02, 0.35));
    OwnedVec y = grid.createGlobal(), x = grid.createGlobal();
    step.forward(x0, y);
    PG_CALL(VecWAXPY(x, 1e-2, p, x0));
    NewtonKrylovOptions o = defaultSelfAdvectionInverseOptions();
    o.rtol = 1e-15;
    o.krylov_rtol = 1e-13;
    o.max_newton = 6;
    const SolveReport report = step.solveInverse(y, x, o);
    PetscReal ynorm = 0.0;
    PG_CALL(VecNorm(y, NORM_2, &ynorm));
    std::string line;
    char buf[48];
    std::vector<double> rel;
    for (double r : report.residual_history) {
      rel.push_back(r / ynorm);
      std::snprintf(buf, sizeof buf, " %.2e", r / ynorm);
      line += buf;
    }
    rootPrintf("  Newton %s: %d Newton / %d GMRES iterations, relative residuals%s; error %.2e\n",
               toString(kind), static_cast<int>(report.newton_iterations),
               static_cast<int>(report.iterations), line.c_str(), relativeError(x, x0));
    ASSERT_GE(rel.size(), 3u);
    EXPECT_LE(rel.back(), 1e-14);
    EXPECT_LE(relativeError(x, x0), 1e-12);
    // Quadratic: log r_{k+1} / log r_k >= 1.8 while r_{k+1} is above round-off.
    int pairs = 0;
    for (size_t k = 0; k + 1 < rel.size(); ++k) {
      if (rel[k + 1] < 1e-14) break;
      ++pairs;
      EXPECT_GT(std::log(rel[k + 1]) / std::log(rel[k]), 1.8) << "iteration " << k;
    }
    EXPECT_GE(pairs, 1);
  }
}

// ---------------------------------------------------------------------------------------
// Accuracy.

/// Inviscid Burgers in 1D from u0 = 0.5 + 0.25 sin(2 pi x) to t = 0.3 (the shock forms at
/// t = 1 / max(-u0') = 0.64), against the exact u = u0(x - u t) solved by Newton per point.
std::vector<double> inviscidErrors(Interpolation kind) {
  const double t_end = 0.3;
  auto u0 = [](double x) { return 0.5 + 0.25 * std::sin(2.0 * kPi * x); };
  auto du0 = [](double x) { return 0.5 * kPi * std::cos(2.0 * kPi * x); };
  std::vector<double> errors;
  for (PetscInt n : {32, 64, 128, 256}) {
    Grid grid(Environment::comm(), velocityGrid(1, n));
    const PetscInt steps = static_cast<PetscInt>(std::ceil(t_end / (0.5 * grid.h(0) / 0.75)));
    auto sim = makeViscousBurgersSimulator(grid, 0.0, t_end, steps, kind);
    OwnedVec x = fieldFromNatural(
        grid, sampleNatural(grid, [&](const double* p, double* u) { u[0] = u0(p[0]); }));
    OwnedVec exact = fieldFromNatural(grid, sampleNatural(grid, [&](const double* p, double* u) {
                                        double v = u0(p[0]);
                                        for (int it = 0; it < 50; ++it) {
                                          const double xi = p[0] - v * t_end;
                                          const double step =
                                              (v - u0(xi)) / (1.0 + du0(xi) * t_end);
                                          v -= step;
                                          if (std::abs(step) < 1e-15) break;
                                        }
                                        u[0] = v;
                                      }));
    OwnedVec y = grid.createGlobal();
    sim->forward(x, y);
    errors.push_back(relativeError(y, exact));
  }
  return errors;
}

TEST(BurgersAccuracy, InviscidStepConvergesToTheExactSolutionBeforeTheShock) {
  // The single-stage departure point errs by O(dt^2) per step, so at a fixed Courant number
  // the step converges at order 1 whatever the interpolation (linear interpolation's
  // numerical diffusion is O(h) too).  Measured (finest pair): linear 0.98, cubic 0.99.
  for (Interpolation kind : {Interpolation::Linear, Interpolation::Cubic}) {
    const std::vector<double> errors = inviscidErrors(kind);
    printSeries(std::string("inviscid Burgers ") + toString(kind), errors);
    const std::vector<double> orders = ordersOf(errors);
    for (size_t i = 0; i + 1 < errors.size(); ++i) EXPECT_LT(errors[i + 1], errors[i]);
    EXPECT_GT(orders.back(), 0.9) << toString(kind);
    EXPECT_LT(orders.back(), 1.15) << toString(kind);
  }
}

/// Viscous Burgers in 1D against the Cole-Hopf solution u = c + U(x - c t, t),
/// U = 2 nu k e sin(k x) / (a + e cos(k x)), e = exp(-nu k^2 t): a drifting, decaying,
/// steepened wave.
std::vector<double> viscousErrors(SplitOrder order) {
  const double nu = 0.05, a = 1.5, c = 0.3, k = 2.0 * kPi, t_end = 0.25;
  auto exact_at = [&](double x, double t) {
    const double e = std::exp(-nu * k * k * t), s = x - c * t;
    return c + 2.0 * nu * k * e * std::sin(k * s) / (a + e * std::cos(k * s));
  };
  std::vector<double> errors;
  for (PetscInt n : {32, 64, 128, 256}) {
    Grid grid(Environment::comm(), velocityGrid(1, n));
    const PetscInt steps = static_cast<PetscInt>(std::ceil(t_end / (0.5 * grid.h(0) / 0.9)));
    auto sim = makeViscousBurgersSimulator(grid, nu, t_end, steps, Interpolation::Cubic, order);
    OwnedVec x = fieldFromNatural(
        grid, sampleNatural(grid, [&](const double* p, double* u) { u[0] = exact_at(p[0], 0.0); }));
    OwnedVec exact = fieldFromNatural(grid, sampleNatural(grid, [&](const double* p, double* u) {
                                        u[0] = exact_at(p[0], t_end);
                                      }));
    OwnedVec y = grid.createGlobal();
    sim->forward(x, y);
    errors.push_back(relativeError(y, exact));
  }
  return errors;
}

TEST(BurgersAccuracy, ViscousBurgersConvergesToTheColeHopfSolution) {
  // First order in time (Lie splitting, single-stage departure) at a fixed Courant number.
  // Measured (finest pair): advection-first 1.01, Strang 1.02.
  for (SplitOrder order : {SplitOrder::AdvectionFirst, SplitOrder::Strang}) {
    const std::vector<double> errors = viscousErrors(order);
    printSeries(std::string("viscous Burgers ") + toString(order), errors);
    for (size_t i = 0; i + 1 < errors.size(); ++i) EXPECT_LT(errors[i + 1], errors[i]);
    const double order_observed = ordersOf(errors).back();
    EXPECT_GT(order_observed, 0.85) << toString(order);
    EXPECT_LT(order_observed, 1.3) << toString(order);
  }
}

/// ||P_advection-first(x) - P_diffusion-first(x)|| / ||P_advection-first(x)|| for K steps.
double splitOrderDifference(
    const std::function<std::unique_ptr<Simulator>(SplitOrder, PetscInt)>& make, const Grid& grid,
    Vec x, PetscInt steps) {
  auto first = make(SplitOrder::AdvectionFirst, steps);
  auto second = make(SplitOrder::DiffusionFirst, steps);
  OwnedVec a = grid.createGlobal(), b = grid.createGlobal();
  first->forward(x, a);
  second->forward(x, b);
  return relativeError(b, a);
}

TEST(Splitting, TheSplitOrderMattersOnlyAtFirstOrderInDt) {
  // (D A)^K and (A D)^K differ by the commutator [A, D] = O(dt^2) per step, O(dt) in all:
  // halving dt halves the difference.  The grid is fixed, so only the splitting changes.
  {
    Grid grid(Environment::comm(), velocityGrid(1, 64));
    OwnedVec x = fieldFromNatural(
        grid, sampleNatural(grid, [](const double* p, double* u) { driftingWave(1, p, u); }));
    std::vector<double> diffs;
    for (PetscInt steps : {20, 40, 80}) {
      diffs.push_back(splitOrderDifference(
          [&](SplitOrder order, PetscInt k) {
            return makeViscousBurgersSimulator(grid, 0.02, 0.2, k, Interpolation::Cubic, order);
          },
          grid, x, steps));
    }
    printSeries("viscous Burgers split-order difference, dt halved", diffs);
    for (double o : ordersOf(diffs)) {
      EXPECT_GT(o, 0.9);
      EXPECT_LT(o, 1.1);
    }
  }
  {
    GridSpec spec;
    spec.dim = 2;
    spec.n = {32, 32, 1};
    spec.stencil_width = 2;
    Grid grid(Environment::comm(), spec);
    const TaylorGreenVortex vortex = TaylorGreenVortex::onDomainOf(grid, 1.0);
    OwnedVec x = fieldFromNatural(grid, smoothRandomNatural(grid, 5));
    std::vector<double> diffs;
    for (PetscInt steps : {10, 20, 40}) {
      diffs.push_back(splitOrderDifference(
          [&](SplitOrder order, PetscInt k) {
            return makeAdvectionDiffusionSimulator(
                grid, vortex, AdvectionScheme::SemiLagrangianCubic, 0.01, 0.2, k, order);
          },
          grid, x, steps));
    }
    printSeries("advection-diffusion split-order difference, dt halved", diffs);
    for (double o : ordersOf(diffs)) {
      EXPECT_GT(o, 0.9);
      EXPECT_LT(o, 1.1);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Checkpointing and component-wise diffusion.

TEST(ViscousBurgersSimulator, CheckpointedGradientEqualsStoreAll) {
  Grid grid(Environment::comm(), velocityGrid(2, 24));
  const PetscInt steps = 6;  // 12 split steps
  auto store_all = makeViscousBurgersSimulator(grid, kNu, steps * kDt, steps);
  CheckpointOptions three;
  three.checkpoints = 3;
  auto checkpointed = makeViscousBurgersSimulator(
      grid, kNu, steps * kDt, steps, Interpolation::Cubic, SplitOrder::AdvectionFirst, three);
  OwnedVec x = fieldFromNatural(grid, smoothVelocityNatural(grid, 1, kDt, kCells));
  OwnedVec w = fieldFromNatural(grid, roughVectorNatural(grid, 2));
  OwnedVec y = grid.createGlobal(), g_all = grid.createGlobal(), g_ckp = grid.createGlobal();
  store_all->forward(x, y);
  store_all->vjp(x, w, g_all);
  checkpointed->forward(x, y);
  checkpointed->vjp(x, w, g_ckp);
  const double first = relativeError(g_ckp, g_all);
  const long recomputed = checkpointed->lastRecomputed();
  const PetscInt peak = checkpointed->lastPeakStored();
  // A second gradient at the same x: the sweep spent the recording, which must be redone.
  checkpointed->vjp(x, w, g_ckp);
  const double second = relativeError(g_ckp, g_all);
  rootPrintf(
      "  checkpointed vs store-all gradient: %.2e, again %.2e (%ld steps recomputed, "
      "peak %d stored)\n",
      first, second, recomputed, static_cast<int>(peak));
  EXPECT_LE(first, 1e-14);
  EXPECT_LE(second, 1e-14);
  EXPECT_GT(recomputed, 0);
  EXPECT_LE(peak, 3);
}

TEST(SelfAdvectionSimulator, RecordedSweepsEqualTheStepByStepGradient) {
  // A simulator of self-advection steps keeps each step's Jacobian terms (store-all: all of
  // them; checkpointed: those of the steps the sweep visits next) and its vjp reads them.
  // The reference applies the vjps of a fresh step at the states one by one, no records.
  // The simulators share one step object, so every visit must use its own step's record.
  for (int dim = 1; dim <= 3; ++dim) {
    Grid grid(Environment::comm(), velocityGrid(dim, dim == 1 ? 48 : (dim == 2 ? 20 : 10)));
    const size_t K = 6;
    auto step = std::make_shared<SelfAdvectionStep>(grid, kDt, Interpolation::Cubic);
    const std::vector<std::shared_ptr<Step>> steps(K, step);
    CheckpointOptions two;
    two.checkpoints = 2;
    CheckpointOptions no_records;
    no_records.records = false;
    Simulator store_all(grid, steps), checkpointed(grid, steps, two),
        unrecorded_store_all(grid, steps, no_records);
    OwnedVec x = fieldFromNatural(grid, smoothVelocityNatural(grid, 1, kDt, kCells));
    OwnedVec w = fieldFromNatural(grid, roughVectorNatural(grid, 2));
    OwnedVec y = grid.createGlobal(), g_all = grid.createGlobal(), g_ckp = grid.createGlobal(),
             g_plain = grid.createGlobal();
    store_all.forward(x, y);
    store_all.vjp(x, w, g_all);
    checkpointed.forward(x, y);
    checkpointed.vjp(x, w, g_ckp);
    unrecorded_store_all.forward(x, y);
    unrecorded_store_all.vjp(x, w, g_plain);
    const long unrecorded = checkpointed.lastUnrecordedVisits();
    // Record memory: dim^2 doubles per owned point and record.
    const size_t per_record =
        static_cast<size_t>(grid.owned().count() * dim * dim) * sizeof(double);
    EXPECT_GE(store_all.lastPeakRecordBytes(), K * per_record) << dim << "D store-all";
    EXPECT_GT(checkpointed.lastPeakRecordBytes(), 0u) << dim << "D checkpointed";
    EXPECT_LE(checkpointed.lastPeakRecordBytes(), 2 * 2 * per_record) << dim << "D checkpointed";
    EXPECT_EQ(unrecorded_store_all.lastPeakRecordBytes(), 0u) << dim << "D without records";

    SelfAdvectionStep reference_step(grid, kDt, Interpolation::Cubic);
    std::vector<OwnedVec> states;
    states.push_back(grid.createGlobal());
    PG_CALL(VecCopy(x, states[0]));
    for (size_t k = 0; k < K; ++k) {
      states.push_back(grid.createGlobal());
      reference_step.forward(states[k], states[k + 1]);
    }
    OwnedVec g = grid.createGlobal(), next = grid.createGlobal();
    PG_CALL(VecCopy(w, g));
    for (size_t k = K; k-- > 0;) {
      reference_step.vjp(states[k], g, next);
      PG_CALL(VecCopy(next, g));
    }
    const double d_all = relativeError(g_all, g), d_ckp = relativeError(g_ckp, g),
                 d_plain = relativeError(g_plain, g);
    rootPrintf(
        "  %dD: store-all vs step by step %.2e, 2 checkpoints %.2e (%ld of %zu visits "
        "without a record), store-all without records %.2e\n",
        dim, d_all, d_ckp, unrecorded, K, d_plain);
    EXPECT_LE(d_all, 1e-15) << dim << "D store-all";
    EXPECT_LE(d_plain, 1e-15) << dim << "D store-all without records";
    EXPECT_LE(d_ckp, 1e-15) << dim << "D checkpointed";
    EXPECT_LT(unrecorded, static_cast<long>(K)) << dim << "D: the checkpointed sweep used records";
  }
}

TEST(SelfAdvectionStep, WindowedScatterEqualsThePointByPointAdjoint) {
  // The cubic vjp, with a record or without, sums the scatter-add of 8 points at a time in
  // a register window where their stencils line up,
  // and point by point elsewhere.  Here every velocity component changes sign twice along
  // every grid line, so rows hold windowed blocks, runs of them that break, blocks done
  // point by point (2D) and, in 3D, blocks whose stencils start one node apart along x, y
  // or z (a wider window).  The reference is the vjp from the tables a jvp at x builds,
  // point by point everywhere.  3D also on a Dirichlet grid, whose boundary stencils are
  // not runs of nodes.
  struct Case {
    int dim;
    Boundary boundary;
  };
  for (const Case c : {Case{2, Boundary::Periodic}, Case{3, Boundary::Periodic},
                       Case{3, Boundary::ZeroDirichlet}}) {
    GridSpec spec = velocityGrid(c.dim, 96, c.boundary);
    spec.n = c.dim == 2 ? std::array<PetscInt, 3>{96, 40, 1} : std::array<PetscInt, 3>{48, 18, 14};
    Grid grid(Environment::comm(), spec);
    std::vector<double> natural;
    const double tau = 2.0 * kPi;
    const auto at = [&](PetscInt i, int axis) {
      return (static_cast<double>(i) + 0.5) / static_cast<double>(spec.n[axis]);
    };
    for (PetscInt k = 0; k < spec.n[2]; ++k) {
      for (PetscInt j = 0; j < spec.n[1]; ++j) {
        for (PetscInt i = 0; i < spec.n[0]; ++i) {
          const double x = at(i, 0), y = at(j, 1), z = at(k, 2);
          natural.push_back(std::sin(tau * x) + 0.2 * std::cos(tau * y));
          natural.push_back(0.8 * std::cos(tau * y) + 0.1 * std::sin(tau * x) +
                            (c.dim == 3 ? 0.3 * std::cos(tau * x) : 0.0));
          if (c.dim == 3)
            natural.push_back(0.7 * std::sin(tau * z) + 0.3 * std::cos(tau * (x + 0.1)));
        }
      }
    }
    const double dt = 0.35 * grid.h(1) / 1.3;  // at most 0.35 cells
    SelfAdvectionStep step(grid, dt, Interpolation::Cubic);
    OwnedVec x = fieldFromNatural(grid, natural);
    OwnedVec w = fieldFromNatural(grid, roughVectorNatural(grid, 5));
    OwnedVec y = grid.createGlobal(), plain = grid.createGlobal(), windowed = grid.createGlobal(),
             one_pass = grid.createGlobal();
    step.jvp(x, w, y);  // builds the tables at x
    step.vjp(x, w, plain);
    SelfAdvectionStep fresh(grid, dt, Interpolation::Cubic);
    fresh.vjp(x, w, one_pass);
    step.restoreLinearisation(step.forwardAndRecord(x, y), x);
    step.vjp(x, w, windowed);
    const std::array<PetscInt, 3> blocks = step.lastWindowedBlocks();
    PetscInt total[3] = {0, 0, 0};
    MPI_Allreduce(blocks.data(), total, 3, MPIU_INT, MPI_SUM, grid.comm());
    rootPrintf("  %dD %s: %d of %d blocks of 8 points summed in a register window, %d wider\n",
               c.dim, c.boundary == Boundary::Periodic ? "periodic" : "Dirichlet",
               static_cast<int>(total[0]), static_cast<int>(total[2]), static_cast<int>(total[1]));
    const std::string where = std::to_string(c.dim) + "D";
    EXPECT_LE(relativeError(windowed, plain), 1e-15) << where << " with a record";
    EXPECT_LE(relativeError(one_pass, plain), 1e-15) << where << " without a record";
#if defined(__AVX512F__)
    if (c.dim == 2) {
      EXPECT_GT(total[0], total[2] / 2) << where << ": most blocks fit a window";
    } else {
      // At 4 ranks a rank's grid lines may be 12 points long: every other block is short.
      EXPECT_GT(total[0], total[2] / 5) << where << ": many blocks fit a window";
    }
    if (c.dim == 2 || c.boundary != Boundary::Periodic) {
      EXPECT_LT(total[0], total[2]) << where << ": some blocks do not";
    }
    if (c.dim == 3) {
      EXPECT_GT(total[1], 0) << where << ": some windows are wider";
      EXPECT_LT(total[1], total[0]) << where << ": not all";
    }
#else
    EXPECT_EQ(total[0], 0) << "no window without AVX-512";
#endif
  }
}

TEST(ViscousBurgersSimulator, DiffusionActsOnEveryComponentSeparately) {
  // Backward Euler on a dof = 2 grid must equal the scalar step on each component.
  GridSpec scalar_spec;
  scalar_spec.dim = 2;
  scalar_spec.n = {24, 20, 1};
  scalar_spec.boundary = Boundary::ZeroDirichlet;
  GridSpec vector_spec = scalar_spec;
  vector_spec.dof = 2;
  Grid scalar_grid(Environment::comm(), scalar_spec), vector_grid(Environment::comm(), vector_spec);
  const DiffusionParams p{0.3, 0.01};
  ImplicitDiffusionStep scalar_step(scalar_grid, p), vector_step(vector_grid, p);
  const std::vector<double> f = smoothRandomNatural(scalar_grid, 1),
                            g = roughRandomNatural(scalar_grid, 2);
  std::vector<double> fg(2 * f.size());
  for (size_t q = 0; q < f.size(); ++q) {
    fg[2 * q] = f[q];
    fg[2 * q + 1] = g[q];
  }
  OwnedVec xf = fieldFromNatural(scalar_grid, f), xg = fieldFromNatural(scalar_grid, g);
  OwnedVec x = fieldFromNatural(vector_grid, fg);
  OwnedVec yf = scalar_grid.createGlobal(), yg = scalar_grid.createGlobal(),
           y = vector_grid.createGlobal();
  double worst = 0.0;
  for (int map = 0; map < 3; ++map) {
    auto apply = [map](Step& s, Vec in, Vec out) {
      if (map == 0) s.forward(in, out);
      if (map == 1) s.vjp(in, in, out);
      if (map == 2) s.inverse(in, in, out);
    };
    apply(scalar_step, xf, yf);
    apply(scalar_step, xg, yg);
    apply(vector_step, x, y);
    const std::vector<double> both = vector_grid.gatherNatural(y),
                              ff = scalar_grid.gatherNatural(yf),
                              gg = scalar_grid.gatherNatural(yg);
    double scale = 0.0, diff = 0.0;
    for (size_t q = 0; q < ff.size(); ++q) {
      scale = std::max({scale, std::abs(ff[q]), std::abs(gg[q])});
      diff = std::max({diff, std::abs(both[2 * q] - ff[q]), std::abs(both[2 * q + 1] - gg[q])});
    }
    worst = std::max(worst, diff / scale);
  }
  double global = 0.0;
  MPI_Allreduce(&worst, &global, 1, MPI_DOUBLE, MPI_MAX, Environment::comm());
  rootPrintf("  component-wise diffusion: largest difference %.2e\n", global);
  // The vector solve's CG iterates on both components at once, so it stops at a different
  // iteration than the scalar solves: agreement to the solver tolerance, not bitwise.
  EXPECT_LE(global, 1e-11);
}

// ---------------------------------------------------------------------------------------
// Bad input.

/// Expects `f` to throw an E whose message contains every one of `needles`.
template <typename E>
void expectError(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "nothing thrown";
  } catch (const E& e) {
    const std::string what = e.what();
    for (const std::string& n : needles) {
      EXPECT_NE(what.find(n), std::string::npos) << "'" << n << "' missing from: " << what;
    }
  }
}

TEST(SelfAdvectionStep, RejectsBadInputWithHelpfulMessages) {
  GridSpec scalar;
  scalar.dim = 2;
  scalar.n = {32, 32, 1};
  Grid scalar_grid(Environment::comm(), scalar);
  expectError<InputError>([&] { SelfAdvectionStep(scalar_grid, 0.01); },
                          {"one velocity component per dimension", "GridSpec::dof = 2"});

  GridSpec spec = velocityGrid(2, 32);
  spec.stencil_width = 1;
  Grid grid(Environment::comm(), spec);
  for (double dt : {0.0, -1e-3, std::nan(""), HUGE_VAL}) {
    expectError<InputError>([&] { SelfAdvectionStep(grid, dt); }, {"self-advection", "dt"});
  }

  // Cubic stencils reach 2 nodes: a width-1 grid fails at the first forward.
  const double dt = 0.01;
  OwnedVec slow = fieldFromNatural(grid, smoothVelocityNatural(grid, 1, dt, 0.4));
  OwnedVec fast = fieldFromNatural(grid, smoothVelocityNatural(grid, 1, dt, 1.5));
  OwnedVec y = grid.createGlobal();
  SelfAdvectionStep cubic(grid, dt, Interpolation::Cubic);
  expectError<CflError>(
      [&] { cubic.forward(slow, y); },
      {"self-advection-cubic", "CFL = ", "stencil_width = 1", "stencil_width >= 2"});
  // Linear stencils fit one layer up to one cell; the check runs at every forward, because
  // the velocity is the state.
  SelfAdvectionStep linear(grid, dt, Interpolation::Linear);
  EXPECT_NO_THROW(linear.forward(slow, y));
  EXPECT_EQ(linear.lastRequiredWidth(), 1);  // below one cell, the nodes home - 1, home or home + 1
  {
    // The reported CFL number and departure distance are the maxima over the points (rows of
    // 13: blocks of 8 points end part-full).
    const Grid odd(Environment::comm(), velocityGrid(2, 13));
    SelfAdvectionStep step(odd, dt, Interpolation::Linear);
    OwnedVec x = fieldFromNatural(odd, smoothVelocityNatural(odd, 1, dt, 0.4));
    OwnedVec out = odd.createGlobal();
    step.forward(x, out);
    const std::vector<double> u = odd.gatherNatural(x);
    double speed2 = 0.0, cells = 0.0;
    for (size_t p = 0; p + 1 < u.size(); p += 2) {
      speed2 = std::max(speed2, u[p] * u[p] + u[p + 1] * u[p + 1]);
      cells = std::max({cells, std::abs(dt * u[p] / odd.h(0)), std::abs(dt * u[p + 1] / odd.h(1))});
    }
    const double cfl = std::sqrt(speed2) * dt * (1.0 / odd.h(0) + 1.0 / odd.h(1));
    EXPECT_NEAR(step.lastCfl(), cfl, 1e-14 * cfl);
    EXPECT_NEAR(step.lastDepartureCells(), cells, 1e-14 * cells);
  }
  try {
    linear.forward(fast, y);
    ADD_FAILURE() << "no CflError";
  } catch (const CflError& e) {
    EXPECT_EQ(e.ghostWidth(), 1);
    EXPECT_EQ(e.requiredWidth(), 2);
    EXPECT_GT(e.cfl(), 1.5);
  }
  // Through a simulator, and caught as the InputError it is.
  auto sim = makeViscousBurgersSimulator(grid, 0.01, 3 * dt, 3, Interpolation::Linear);
  EXPECT_THROW(sim->forward(fast, y), InputError);
  EXPECT_NO_THROW(sim->forward(slow, y));
  // A forward pass that throws part-way has overwritten part of the recording of `slow`:
  // a vjp at `slow` must record it again (a stale recording would hold `fast`'s first
  // state, and fail on it or give its gradient).
  EXPECT_THROW(sim->forward(fast, y), CflError);
  OwnedVec w = fieldFromNatural(grid, smoothVelocityNatural(grid, 2, dt, 0.3));
  OwnedVec g = grid.createGlobal(), g_fresh = grid.createGlobal();
  EXPECT_NO_THROW(sim->vjp(slow, w, g));
  auto fresh = makeViscousBurgersSimulator(grid, 0.01, 3 * dt, 3, Interpolation::Linear);
  fresh->vjp(slow, w, g_fresh);
  EXPECT_LE(maxRelativeDifference(grid.gatherNatural(g), grid.gatherNatural(g_fresh), grid.comm()),
            1e-15);

  // A non-finite state.
  std::vector<double> broken = smoothVelocityNatural(grid, 1, dt, 0.4);
  broken[7] = std::nan("");
  OwnedVec nan_state = fieldFromNatural(grid, broken);
  expectError<NonFiniteError>([&] { linear.forward(nan_state, y); }, {"not finite"});
  for (double infinite : {HUGE_VAL, -HUGE_VAL}) {
    broken[7] = infinite;
    OwnedVec infinite_state = fieldFromNatural(grid, broken);
    expectError<NonFiniteError>([&] { linear.forward(infinite_state, y); }, {"not finite"});
  }

  // Simulator builders and options.
  expectError<InputError>([&] { parseSplitOrder("lie", "-split_order"); },
                          {"-split_order", "lie", "advection-first", "diffusion-first", "strang"});
  for (SplitOrder o : {SplitOrder::AdvectionFirst, SplitOrder::DiffusionFirst, SplitOrder::Strang})
    EXPECT_EQ(parseSplitOrder(toString(o), "x"), o);
  expectError<InputError>([&] { makeViscousBurgersSimulator(grid, -1.0, 1.0, 4); }, {"nu"});
  expectError<InputError>([&] { makeViscousBurgersSimulator(grid, 0.1, 1.0, 0); }, {"steps"});
  expectError<InputError>(
      [&] {
        makeAdvectionDiffusionSimulator(scalar_grid, ConstantVelocity({1.0, 0.0, 0.0}),
                                        AdvectionScheme::Upwind, 0.1, -1.0, 4, SplitOrder::Strang);
      },
      {"end time"});
}

}  // namespace
}  // namespace physgrad
