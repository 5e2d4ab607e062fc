// The spectral (exact heat kernel) diffusion step and the Poisson step.
//
// Spectral diffusion: single Fourier modes decay by exactly exp(-kappa |k|^2 dt) in 1D/2D/3D
// with odd and even sizes and unequal axis lengths (an axis mix-up in the frequency layout
// would change |k|^2); a periodised Gaussian follows the analytic heat kernel; Parseval over
// the half spectrum checks that every frequency is held exactly once across the ranks; the
// capped inverse recovers the modes below the cap and attenuates those above as documented.
// Poisson: the manufactured solution sin(pi x) sin(pi y) converges with order 2 in h.
// Both: Taylor test, adjoint consistency, inverse consistency and rank invariance (a
// distributed run against a serial copy on every rank), and the input checks.

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <complex>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "derivative_checks.hpp"
#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/poisson.hpp"
#include "physgrad/physics/spectral_diffusion.hpp"

namespace physgrad {
namespace {

using testutil::adjointMismatch;
using testutil::continuousEigenvalue;
using testutil::fieldFromNatural;
using testutil::fourierModeNatural;
using testutil::inverseMismatch;
using testutil::kPi;
using testutil::maxRelativeDifference;
using testutil::roughRandomNatural;
using testutil::smoothRandomNatural;
using testutil::TaylorTable;
using testutil::taylorTable;

/// ||a - b|| / ||b|| of two global Vecs (globally reduced).
double relativeDifference(Vec a, Vec b) {
  OwnedVec d;
  PG_CALL(VecDuplicate(a, d.out()));
  PG_CALL(VecWAXPY(d, -1.0, b, a));
  PetscReal diff = 0.0, norm = 0.0;
  PG_CALL(VecNorm(d, NORM_2, &diff));
  PG_CALL(VecNorm(b, NORM_2, &norm));
  return diff / norm;
}

GridSpec periodicSpec(int dim, std::array<PetscInt, 3> n, std::array<double, 3> length) {
  GridSpec s;
  s.dim = dim;
  s.n = n;
  s.length = length;
  s.boundary = Boundary::Periodic;
  return s;
}

/// The largest |k|^2 of the grid's DFT: the corner of the spectrum.
double largestK2(const Grid& grid) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) {
    const double k = 2.0 * kPi * static_cast<double>(grid.n(a) / 2) / grid.spec().length[a];
    s += k * k;
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// Spectral diffusion: accuracy.

struct ModeCase {
  const char* label;
  int dim;
  std::array<PetscInt, 3> n;
  std::array<double, 3> length;
  std::array<int, 3> mode;
};

std::ostream& operator<<(std::ostream& os, const ModeCase& c) { return os << c.label; }

class SpectralModeDecay : public ::testing::TestWithParam<ModeCase> {};

TEST_P(SpectralModeDecay, DecaysByTheExactHeatKernelFactor) {
  const ModeCase& c = GetParam();
  Grid grid(Environment::comm(), periodicSpec(c.dim, c.n, c.length));
  const double kappa = 0.3;
  // kappa |k|^2 dt = 1.5: the mode loses most of its amplitude, so a wrong factor shows.
  const double k2 = continuousEigenvalue(grid, c.mode);
  const double dt = 1.5 / (kappa * k2);
  SpectralDiffusionStep step(grid, kappa, dt);

  OwnedVec x = fieldFromNatural(grid, fourierModeNatural(grid, c.mode));
  OwnedVec y = grid.createGlobal(), expected = grid.createGlobal();
  step.forward(x, y);
  PG_CALL(VecAXPBY(expected, std::exp(-kappa * k2 * dt), 0.0, x));
  const double err = relativeDifference(y, expected);
  rootPrintf("  %-28s mode (%d,%d,%d): |y - exp(-kappa k^2 dt) x| / |.| = %.2e\n", c.label,
             c.mode[0], c.mode[1], c.mode[2], err);
  EXPECT_LE(err, 5e-14);
}

// Odd and even sizes, unequal lengths (so |k|^2 tells the axes apart), modes from the
// lowest to the last one below Nyquist.
const ModeCase kModeCases[] = {
    {"Even1D", 1, {64, 1, 1}, {1.0, 1.0, 1.0}, {3, 0, 0}},
    {"Even1DHigh", 1, {64, 1, 1}, {2.0, 1.0, 1.0}, {31, 0, 0}},
    {"Odd1D", 1, {45, 1, 1}, {1.5, 1.0, 1.0}, {22, 0, 0}},
    {"Even2D", 2, {32, 24, 1}, {1.0, 2.0, 1.0}, {3, 2, 0}},
    {"Odd2D", 2, {27, 33, 1}, {1.5, 1.0, 1.0}, {13, 5, 0}},
    {"Mixed2DHigh", 2, {20, 15, 1}, {1.0, 0.7, 1.0}, {9, 7, 0}},
    {"Even3D", 3, {16, 12, 10}, {1.0, 2.0, 1.5}, {2, 1, 3}},
    {"Odd3D", 3, {15, 9, 11}, {1.0, 0.8, 1.3}, {7, 4, 5}},
    {"Mixed3D", 3, {9, 14, 7}, {2.0, 1.0, 0.5}, {1, 6, 2}},
};

INSTANTIATE_TEST_SUITE_P(Spectral, SpectralModeDecay, ::testing::ValuesIn(kModeCases),
                         [](const ::testing::TestParamInfo<ModeCase>& param_info) {
                           return std::string(param_info.param.label);
                         });

/// The periodised Gaussian exp(-|x - c|^2 / (2 s^2)) (s^2_0 / s^2)^{d/2} sampled at the cell
/// centres, with the images of the two neighbouring periods on each side: the solution of the
/// heat equation from the s_0 Gaussian after a time with s^2 = s^2_0 + 2 kappa t.
std::vector<double> periodicGaussian(const Grid& grid, double s0, double s) {
  std::vector<double> out(static_cast<size_t>(grid.size()));
  const double amplitude = std::pow(s0 * s0 / (s * s), 0.5 * grid.dim());
  auto factor = [&](int axis, PetscInt i) {
    if (axis >= grid.dim()) return 1.0;
    const double length = grid.spec().length[axis];
    const double d = grid.coordinate(axis, i) - 0.5 * length;
    double sum = 0.0;
    for (int p = -2; p <= 2; ++p) {
      const double e = d - p * length;
      sum += std::exp(-e * e / (2.0 * s * s));
    }
    return sum;
  };
  for (PetscInt k = 0; k < grid.n(2); ++k)
    for (PetscInt j = 0; j < grid.n(1); ++j)
      for (PetscInt i = 0; i < grid.n(0); ++i)
        out[grid.naturalIndex(i, j, k)] = amplitude * factor(0, i) * factor(1, j) * factor(2, k);
  return out;
}

TEST(SpectralDiffusion, MatchesTheAnalyticGaussianHeatKernel) {
  struct GaussianCase {
    const char* label;
    int dim;
    std::array<PetscInt, 3> n;
    std::array<double, 3> length;
    double s0, s;
  };
  // s0 times the Nyquist wavenumber is >= 9, so the sampled Gaussian is band-limited to
  // ~1e-17 and the only difference left is round-off.
  const GaussianCase cases[] = {
      {"1D", 1, {128, 1, 1}, {1.0, 1.0, 1.0}, 0.04, 0.07},
      {"2D", 2, {96, 128, 1}, {1.0, 1.5, 1.0}, 0.04, 0.06},
      {"3D", 3, {40, 36, 48}, {1.0, 0.9, 1.2}, 0.075, 0.09},
  };
  const double kappa = 0.25;
  for (const GaussianCase& c : cases) {
    Grid grid(Environment::comm(), periodicSpec(c.dim, c.n, c.length));
    const double t = (c.s * c.s - c.s0 * c.s0) / (2.0 * kappa);
    SpectralDiffusionStep step(grid, kappa, t);
    OwnedVec x = fieldFromNatural(grid, periodicGaussian(grid, c.s0, c.s0));
    OwnedVec expected = fieldFromNatural(grid, periodicGaussian(grid, c.s0, c.s));
    OwnedVec y = grid.createGlobal();
    step.forward(x, y);
    const double err = relativeDifference(y, expected);
    PetscReal max_err = 0.0;
    PG_CALL(VecAXPY(y, -1.0, expected));
    PG_CALL(VecNorm(y, NORM_INFINITY, &max_err));
    rootPrintf("  Gaussian %s: relative L2 error %.2e, max error %.2e (peak %.3f)\n", c.label, err,
               max_err, std::pow(c.s0 / c.s, c.dim));
    EXPECT_LE(err, 1e-13) << c.label;
  }
}

TEST(SpectralDiffusion, HalfSpectrumHoldsEveryFrequencyOnceAcrossRanks) {
  // Parseval: sum over the full spectrum of |c_m|^2 = N ||x||^2.  Over the half spectrum
  // each entry counts with its multiplicity; a frequency held twice or by no rank breaks it.
  for (int dim = 1; dim <= 3; ++dim) {
    for (PetscInt n : {PetscInt(10), PetscInt(11)}) {
      Grid grid(Environment::comm(), periodicSpec(dim, {n, n + 3, n - 2}, {1.0, 1.3, 0.8}));
      SpectralTransform fft(grid);
      OwnedVec x = fieldFromNatural(grid, roughRandomNatural(grid, 17));
      OwnedVec y = grid.createGlobal();
      double local_energy = 0.0;
      fft.applyCoefficientMultiplier(x, y, [&](const Frequency& f, std::complex<double> c) {
        local_energy += f.multiplicity * std::norm(c);
        return 1.0;
      });
      double energy = 0.0;
      MPI_Allreduce(&local_energy, &energy, 1, MPI_DOUBLE, MPI_SUM, grid.comm());
      PetscReal norm = 0.0;
      PG_CALL(VecNorm(x, NORM_2, &norm));
      const double parseval = std::abs(energy / (grid.size() * norm * norm) - 1.0);
      // The multiplier 1 is the identity: the transform round trip.
      const double round_trip = relativeDifference(y, x);
      rootPrintf("  Parseval %dD n=%d: |sum/(N |x|^2) - 1| = %.2e, round trip %.2e\n", dim,
                 static_cast<int>(n), parseval, round_trip);
      EXPECT_LE(parseval, 1e-13) << dim << "D n=" << n;
      EXPECT_LE(round_trip, 1e-14) << dim << "D n=" << n;
    }
  }
}

TEST(SpectralDiffusion, MultiplierOfOneFrequencyExtractsThatMode) {
  // A field of two modes; the indicator multiplier of one of them returns exactly that mode,
  // which ties each stored entry to its signed frequency index on every axis.
  Grid grid(Environment::comm(), periodicSpec(3, {12, 9, 10}, {1.0, 2.0, 1.5}));
  SpectralTransform fft(grid);
  const std::array<int, 3> kept = {2, 3, 1}, dropped = {5, 1, 4};
  std::vector<double> a = fourierModeNatural(grid, kept), b = fourierModeNatural(grid, dropped);
  for (size_t t = 0; t < a.size(); ++t) b[t] += a[t];
  OwnedVec x = fieldFromNatural(grid, b);
  OwnedVec expected = fieldFromNatural(grid, a);
  OwnedVec y = grid.createGlobal();
  fft.applyMultiplier(x, y, [&](const Frequency& f) {
    bool match = true;
    for (int d = 0; d < 3; ++d) match = match && std::abs(f.m[d]) == kept[d];
    return match ? 1.0 : 0.0;
  });
  const double err = relativeDifference(y, expected);
  rootPrintf("  indicator multiplier: error %.2e\n", err);
  EXPECT_LE(err, 1e-14);
}

TEST(SpectralDiffusion, CappedInverseRecoversModesBelowTheCapAndAttenuatesThoseAbove) {
  Grid grid(Environment::comm(), periodicSpec(2, {32, 24, 1}, {1.0, 2.0, 1.0}));
  const double kappa = 0.5, cap = 100.0;
  const std::array<int, 3> low = {2, 1, 0}, high = {3, 3, 0};
  // exp(kappa |k_low|^2 dt) = 10 < cap < exp(kappa |k_high|^2 dt) = 10^(11.25/4.25) ~ 443:
  // the high mode must come back attenuated by cap / 443 ~ 0.23, a factor the test can see.
  const double dt = std::log(10.0) / (kappa * continuousEigenvalue(grid, low));
  const double gain_high = std::exp(kappa * continuousEigenvalue(grid, high) * dt);
  ASSERT_GT(gain_high, 2.0 * cap);
  ASSERT_LT(gain_high, 10.0 * cap);
  SpectralDiffusionStep step(grid, kappa, dt, cap);
  EXPECT_EQ(step.inverseAmplificationCap(), cap);

  const std::vector<double> mode_low = fourierModeNatural(grid, low);
  const std::vector<double> mode_high = fourierModeNatural(grid, high);
  std::vector<double> both(mode_low), expected(mode_low);
  const double attenuation = cap / gain_high;  // what S^{-1} S does to the high mode
  for (size_t t = 0; t < both.size(); ++t) {
    both[t] += mode_high[t];
    expected[t] += attenuation * mode_high[t];
  }
  OwnedVec x = fieldFromNatural(grid, both), want = fieldFromNatural(grid, expected);
  OwnedVec y = grid.createGlobal(), back = grid.createGlobal();
  step.forward(x, y);
  step.inverse(x, y, back);
  const double err = relativeDifference(back, want);
  // The low mode alone comes back exactly.
  OwnedVec x_low = fieldFromNatural(grid, mode_low);
  step.forward(x_low, y);
  step.inverse(x_low, y, back);
  const double err_low = relativeDifference(back, x_low);
  rootPrintf(
      "  capped inverse: high mode attenuated by %.3e as documented (error %.2e); low "
      "mode recovered to %.2e\n",
      attenuation, err, err_low);
  EXPECT_LE(err, 1e-12);
  EXPECT_LE(err_low, 1e-12);
}

TEST(SpectralDiffusion, ExactInverseThatOverflowsThrows) {
  // kappa |k_max|^2 dt ~ 2e4: exp overflows for the highest modes.
  Grid grid(Environment::comm(), periodicSpec(2, {32, 32, 1}, {1.0, 1.0, 1.0}));
  SpectralDiffusionStep step(grid, 1.0, 1.0);
  OwnedVec x = grid.createGlobal(), y = grid.createGlobal();
  EXPECT_THROW(step.inverse(x, x, y), NonFiniteError);
  // With a cap the same step inverts (approximately, by the cap's definition).
  SpectralDiffusionStep capped(grid, 1.0, 1.0, 1e6);
  EXPECT_NO_THROW(capped.inverse(x, x, y));
}

TEST(SpectralDiffusion, TransformsSurviveTheDestructionOfOthers) {
  // Destroying a MATFFTW resets FFTW-MPI's planner; steps built before and after must keep
  // working (their plans are made at construction).
  Grid grid(Environment::comm(), periodicSpec(2, {16, 20, 1}, {1.0, 1.0, 1.0}));
  const std::array<int, 3> mode = {2, 3, 0};
  const double decay = std::exp(-0.1 * continuousEigenvalue(grid, mode) * 0.01);
  OwnedVec x = fieldFromNatural(grid, fourierModeNatural(grid, mode));
  OwnedVec y = grid.createGlobal(), expected = grid.createGlobal();
  PG_CALL(VecAXPBY(expected, decay, 0.0, x));
  auto first = std::make_unique<SpectralDiffusionStep>(grid, 0.1, 0.01);
  {
    SpectralDiffusionStep short_lived(grid, 0.1, 0.01);
    short_lived.forward(x, y);
    Grid serial(PETSC_COMM_SELF, periodicSpec(2, {16, 20, 1}, {1.0, 1.0, 1.0}));
    SpectralDiffusionStep serial_step(serial, 0.1, 0.01);
  }
  first->forward(x, y);
  EXPECT_LE(relativeDifference(y, expected), 1e-14);
  SpectralDiffusionStep later(grid, 0.1, 0.01);
  first.reset();
  later.forward(x, y);
  EXPECT_LE(relativeDifference(y, expected), 1e-14);
}

// ---------------------------------------------------------------------------------------
// Poisson: accuracy.

TEST(Poisson, ManufacturedSolutionConvergesWithOrderTwo) {
  // u = sin(pi x) sin(pi y) on the unit square, Delta u = -2 pi^2 u.
  std::vector<double> h, err;
  for (PetscInt n : {PetscInt(15), PetscInt(31), PetscInt(63), PetscInt(127)}) {
    GridSpec s;
    s.dim = 2;
    s.n = {n, n, 1};
    s.boundary = Boundary::ZeroDirichlet;
    Grid grid(Environment::comm(), s);
    std::vector<double> u = fourierModeNatural(grid, {1, 1, 0});
    std::vector<double> f(u);
    for (double& v : f) v *= -2.0 * kPi * kPi;
    OwnedVec exact = fieldFromNatural(grid, u), rhs = fieldFromNatural(grid, f);
    OwnedVec y = grid.createGlobal();
    PoissonStep step(grid);
    step.forward(rhs, y);
    h.push_back(grid.h(0));
    err.push_back(relativeDifference(y, exact));
    rootPrintf("  Poisson N=%3d h=%.5f: |y - u| / |u| = %.3e (%d CG iterations)\n",
               static_cast<int>(n), grid.h(0), err.back(),
               static_cast<int>(step.lastSolveIterations()));
    // Multigrid, not plain CG (which needs O(N) iterations at rtol 1e-13).
    EXPECT_LE(step.lastSolveIterations(), 40) << "N=" << n;
  }
  for (size_t l = 0; l + 1 < h.size(); ++l) {
    const double order = std::log(err[l] / err[l + 1]) / std::log(h[l] / h[l + 1]);
    rootPrintf("  Poisson observed order in h: %.4f\n", order);
    EXPECT_GT(order, 1.9);
    EXPECT_LT(order, 2.1);
  }
}

// ---------------------------------------------------------------------------------------
// Both steps: derivative checks and rank invariance.

enum class Kind { Spectral, SpectralCapped, Poisson };

struct OperatorCase {
  std::string label;
  Kind kind;
  int dim;
  std::array<PetscInt, 3> n;
  std::array<double, 3> length;
};

std::ostream& operator<<(std::ostream& os, const OperatorCase& c) { return os << c.label; }

GridSpec specFor(const OperatorCase& c) {
  GridSpec s;
  s.dim = c.dim;
  s.n = c.n;
  s.length = c.length;
  s.boundary = c.kind == Kind::Poisson ? Boundary::ZeroDirichlet : Boundary::Periodic;
  return s;
}

std::unique_ptr<Step> buildOperator(const Grid& grid, const OperatorCase& c) {
  if (c.kind == Kind::Poisson) return std::make_unique<PoissonStep>(grid);
  // Mildly diffusive: the highest mode decays by exp(-4), so the exact inverse amplifies
  // round-off by at most e^4.  The capped variant caps at e^2, below the highest modes.
  const double kappa = 0.2;
  const double dt = 4.0 / (kappa * largestK2(grid));
  const double cap =
      c.kind == Kind::SpectralCapped ? std::exp(2.0) : std::numeric_limits<double>::infinity();
  return std::make_unique<SpectralDiffusionStep>(grid, kappa, dt, cap);
}

class OperatorDerivatives : public ::testing::TestWithParam<OperatorCase> {
 protected:
  void SetUp() override {
    grid_ = std::make_unique<Grid>(Environment::comm(), specFor(GetParam()));
    op_ = buildOperator(*grid_, GetParam());
    x_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 1));
    v_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 2));
    w_ = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 3));
    // y* = S(x*) for another smooth x*: the misfit and its Taylor remainders are on the
    // scale of S's output (for Poisson far below that of its input).
    OwnedVec source = fieldFromNatural(*grid_, smoothRandomNatural(*grid_, 4));
    target_ = grid_->createGlobal();
    op_->forward(source, target_);
  }
  // Declared in dependency order, so the operator's PETSc objects die before the grid's DM.
  std::unique_ptr<Grid> grid_;
  std::unique_ptr<Step> op_;
  OwnedVec x_, v_, w_, target_;
};

TEST_P(OperatorDerivatives, TaylorTestOfMisfitHasOrderTwo) {
  const TaylorTable table = taylorTable(*op_, x_, v_, target_, 1e-1, 5);
  const std::vector<double> orders = table.orders();
  for (size_t i = 0; i < orders.size(); ++i) {
    rootPrintf("  %-24s eps=%.3e remainder=%.3e order=%.4f\n", GetParam().label.c_str(),
               table.eps[i + 1], table.remainder[i + 1], orders[i]);
    EXPECT_GT(orders[i], 1.9) << "eps " << table.eps[i + 1];
    EXPECT_LT(orders[i], 2.1) << "eps " << table.eps[i + 1];
  }
  EXPECT_GT(table.smallestRemainder(), 1e-8 * table.f0);
}

TEST_P(OperatorDerivatives, AdjointIsConsistentToRoundOff) {
  const double smooth = adjointMismatch(*op_, x_, v_, w_);
  OwnedVec rough_v = fieldFromNatural(*grid_, roughRandomNatural(*grid_, 5));
  OwnedVec rough_w = fieldFromNatural(*grid_, roughRandomNatural(*grid_, 6));
  const double rough = adjointMismatch(*op_, x_, rough_v, rough_w);
  rootPrintf("  %-24s adjoint mismatch: smooth %.2e, rough %.2e\n", GetParam().label.c_str(),
             smooth, rough);
  EXPECT_LE(smooth, 1e-12);
  EXPECT_LE(rough, 1e-12);
}

TEST_P(OperatorDerivatives, InverseUndoesForward) {
  if (GetParam().kind == Kind::SpectralCapped) {
    GTEST_SKIP() << "covered by CappedInverseRecoversModesBelowTheCapAndAttenuatesThoseAbove";
  }
  // S^{-1}(S(x)) = x and S(S^{-1}(y)) = y, on smooth and on rough fields.
  OwnedVec rough = fieldFromNatural(*grid_, roughRandomNatural(*grid_, 7));
  const double smooth_back = inverseMismatch(*op_, x_);
  const double rough_back = inverseMismatch(*op_, rough);
  OwnedVec x = grid_->createGlobal(), y = grid_->createGlobal();
  op_->inverse(x_, v_, x);
  op_->forward(x, y);
  const double forward_of_inverse = relativeDifference(y, v_);
  rootPrintf("  %-24s |S^-1 S x - x|/|x|: smooth %.2e rough %.2e; |S S^-1 y - y|/|y| %.2e\n",
             GetParam().label.c_str(), smooth_back, rough_back, forward_of_inverse);
  EXPECT_LE(smooth_back, 1e-10);
  EXPECT_LE(rough_back, 1e-10);
  EXPECT_LE(forward_of_inverse, 1e-10);
}

TEST_P(OperatorDerivatives, ResultsDoNotDependOnTheNumberOfRanks) {
  const Grid serial_grid(PETSC_COMM_SELF, specFor(GetParam()));
  std::unique_ptr<Step> serial_op = buildOperator(serial_grid, GetParam());
  struct Run {
    const Grid& grid;
    Step& op;
    std::vector<double> forward, jvp, vjp, inverse;
  };
  auto run = [](Run& r) {
    const Grid& g = r.grid;
    OwnedVec x = fieldFromNatural(g, smoothRandomNatural(g, 1));
    OwnedVec v = fieldFromNatural(g, roughRandomNatural(g, 2));
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

const OperatorCase kOperatorCases[] = {
    {"Spectral1D", Kind::Spectral, 1, {64, 1, 1}, {1.0, 1.0, 1.0}},
    {"Spectral2D", Kind::Spectral, 2, {32, 23, 1}, {1.0, 2.0, 1.0}},
    {"Spectral3D", Kind::Spectral, 3, {16, 12, 9}, {1.0, 2.0, 1.5}},
    {"SpectralCapped2D", Kind::SpectralCapped, 2, {24, 32, 1}, {1.5, 1.0, 1.0}},
    {"Poisson1D", Kind::Poisson, 1, {63, 1, 1}, {1.0, 1.0, 1.0}},
    {"Poisson2D", Kind::Poisson, 2, {31, 23, 1}, {1.0, 2.0, 1.0}},
    {"Poisson3D", Kind::Poisson, 3, {15, 11, 13}, {1.0, 2.0, 1.5}},
};

INSTANTIATE_TEST_SUITE_P(SpectralPoisson, OperatorDerivatives, ::testing::ValuesIn(kOperatorCases),
                         [](const ::testing::TestParamInfo<OperatorCase>& param_info) {
                           return param_info.param.label;
                         });

// ---------------------------------------------------------------------------------------
// Input checks.  Validation is deterministic and precedes every collective creation, so all
// ranks throw alike.

TEST(SpectralPoissonInput, PoissonRefusesAPeriodicGrid) {
  Grid grid(Environment::comm(), periodicSpec(2, {16, 16, 1}, {1.0, 1.0, 1.0}));
  EXPECT_THROW(PoissonStep step(grid), InputError);
}

TEST(SpectralPoissonInput, SpectralDiffusionRefusesBadGridsAndParameters) {
  GridSpec dirichlet;
  dirichlet.n = {15, 15, 1};
  dirichlet.boundary = Boundary::ZeroDirichlet;
  Grid dirichlet_grid(Environment::comm(), dirichlet);
  EXPECT_THROW(SpectralDiffusionStep(dirichlet_grid, 1.0, 1e-3), InputError);
  EXPECT_THROW(SpectralTransform fft(dirichlet_grid), InputError);

  GridSpec vector_field = periodicSpec(2, {16, 16, 1}, {1.0, 1.0, 1.0});
  vector_field.dof = 2;
  Grid vector_grid(Environment::comm(), vector_field);
  EXPECT_THROW(SpectralDiffusionStep(vector_grid, 1.0, 1e-3), InputError);

  Grid grid(Environment::comm(), periodicSpec(2, {16, 16, 1}, {1.0, 1.0, 1.0}));
  for (double cap : {1.0, 0.5, 0.0, -2.0, std::nan("")}) {
    EXPECT_THROW(SpectralDiffusionStep(grid, 1.0, 1e-3, cap), InputError) << cap;
  }
  for (double kappa : {-1.0, -1e-300, std::nan(""), HUGE_VAL}) {
    EXPECT_THROW(SpectralDiffusionStep(grid, kappa, 1e-3), InputError) << kappa;
  }
  for (double dt : {0.0, -1e-3, std::nan(""), HUGE_VAL}) {
    EXPECT_THROW(SpectralDiffusionStep(grid, 1.0, dt), InputError) << dt;
  }
  // The boundary of the valid range is accepted.
  EXPECT_NO_THROW(SpectralDiffusionStep(grid, 0.0, 1e-3, 1.0 + 1e-12));
}

}  // namespace
}  // namespace physgrad
