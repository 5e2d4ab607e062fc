// Accuracy of the diffusion steps on single Fourier modes, which are eigenvectors of the
// discrete Laplacian on both periodic and zero-Dirichlet grids.  Two references:
//  - the continuous decay exp(-kappa |k|^2 t): the error must fall like h^2 when dt is
//    refined like h^2 (all three schemes are then second order in h);
//  - the exact discrete decay g(mu)^K of the scheme's amplification factor, mu = kappa dt
//    lambda_h: a much sharper check that the stencil, the spacing and the time stepping
//    are exactly what the scheme says, to near round-off.
// Plus the input checks of the steps and the grid.

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/shifted_laplacian.hpp"

namespace physgrad {
namespace {

using testutil::continuousEigenvalue;
using testutil::discreteEigenvalue;
using testutil::fieldFromNatural;
using testutil::fourierModeNatural;

enum class Scheme { Explicit, BackwardEuler, CrankNicolson };

const char* schemeName(Scheme s) {
  switch (s) {
    case Scheme::Explicit:
      return "Explicit";
    case Scheme::BackwardEuler:
      return "BackwardEuler";
    case Scheme::CrankNicolson:
      return "CrankNicolson";
  }
  return "Unknown";
}

std::unique_ptr<Step> makeStep(const Grid& grid, Scheme s, DiffusionParams p) {
  switch (s) {
    case Scheme::Explicit:
      return std::make_unique<ExplicitDiffusionStep>(grid, p);
    case Scheme::BackwardEuler:
      return std::make_unique<ImplicitDiffusionStep>(grid, p, 1.0);
    case Scheme::CrankNicolson:
      return std::make_unique<ImplicitDiffusionStep>(grid, p, 0.5);
  }
  return nullptr;
}

/// The scheme's amplification factor on a mode with mu = kappa dt lambda_h.
double amplification(Scheme s, double mu) {
  switch (s) {
    case Scheme::Explicit:
      return 1.0 - mu;
    case Scheme::BackwardEuler:
      return 1.0 / (1.0 + mu);
    case Scheme::CrankNicolson:
      return (1.0 - 0.5 * mu) / (1.0 + 0.5 * mu);
  }
  return 0.0;
}

struct ConvergenceCase {
  const char* label;
  Scheme scheme;
  int dim;
  Boundary boundary;
  std::array<double, 3> length;
  std::array<int, 3> mode;
  double kappa;
  /// kappa dt / h_x^2, held fixed under refinement so that dt ~ h^2.
  double ratio;
  /// Nodes per axis at each resolution.  Dirichlet grids use N = 2^j - 1 so that
  /// h = L / (N + 1) halves exactly.
  std::vector<PetscInt> n;
  /// Steps at the coarsest resolution; 4x more at each refinement (dt / 4).
  int coarse_steps;
};

std::ostream& operator<<(std::ostream& os, const ConvergenceCase& c) { return os << c.label; }

struct ModeErrors {
  double h = 0.0, t_end = 0.0;
  double vs_continuous = 0.0;  ///< ||u_K - exp(-kappa |k|^2 T) u_0|| / ||exact||
  double vs_discrete = 0.0;    ///< ||u_K - g^K u_0|| / ||g^K u_0||
};

ModeErrors runMode(const ConvergenceCase& c, size_t level) {
  GridSpec spec;
  spec.dim = c.dim;
  spec.boundary = c.boundary;
  spec.length = c.length;
  for (int a = 0; a < c.dim; ++a) spec.n[a] = c.n[level];
  Grid grid(Environment::comm(), spec);

  const double h = grid.h(0);
  const double dt = c.ratio * h * h / c.kappa;
  const int steps = c.coarse_steps << (2 * level);
  auto step = makeStep(grid, c.scheme, {c.kappa, dt});

  const std::vector<double> mode = fourierModeNatural(grid, c.mode);
  OwnedVec u0 = fieldFromNatural(grid, mode);
  OwnedVec u = grid.createGlobal(), next = grid.createGlobal();
  PG_CALL(VecCopy(u0, u));
  for (int k = 0; k < steps; ++k) {
    step->forward(u, next);
    std::swap(u, next);
  }

  ModeErrors e;
  e.h = h;
  e.t_end = steps * dt;
  auto relativeError = [&](double factor) {
    OwnedVec ref = grid.createGlobal();
    PG_CALL(VecAXPBY(ref, factor, 0.0, u0));
    PetscReal ref_norm = 0.0, err = 0.0;
    PG_CALL(VecNorm(ref, NORM_2, &ref_norm));
    PG_CALL(VecAXPY(ref, -1.0, u));
    PG_CALL(VecNorm(ref, NORM_2, &err));
    return err / ref_norm;
  };
  e.vs_continuous =
      relativeError(std::exp(-c.kappa * continuousEigenvalue(grid, c.mode) * e.t_end));
  const double mu = c.kappa * dt * discreteEigenvalue(grid, c.mode);
  e.vs_discrete = relativeError(std::pow(amplification(c.scheme, mu), steps));
  return e;
}

class ModeDecay : public ::testing::TestWithParam<ConvergenceCase> {};

TEST_P(ModeDecay, SecondOrderInHAndExactDiscreteFactor) {
  const ConvergenceCase& c = GetParam();
  std::vector<ModeErrors> errors;
  for (size_t level = 0; level < c.n.size(); ++level) errors.push_back(runMode(c, level));

  for (size_t level = 0; level < errors.size(); ++level) {
    const ModeErrors& e = errors[level];
    rootPrintf("  %-26s N=%3d h=%.4g T=%.4g  err(continuous)=%.3e  err(discrete)=%.3e\n", c.label,
               static_cast<int>(c.n[level]), e.h, e.t_end, e.vs_continuous, e.vs_discrete);
    // The mode is an exact eigenvector, so only round-off (explicit) or the 1e-13 Krylov
    // tolerance of each implicit solve separates u_K from g^K u_0.
    EXPECT_LT(e.vs_discrete, 1e-11) << "level " << level;
  }
  for (size_t level = 0; level + 1 < errors.size(); ++level) {
    const double order = std::log(errors[level].vs_continuous / errors[level + 1].vs_continuous) /
                         std::log(errors[level].h / errors[level + 1].h);
    rootPrintf("  %-26s observed order in h (N=%d -> %d): %.4f\n", c.label,
               static_cast<int>(c.n[level]), static_cast<int>(c.n[level + 1]), order);
    EXPECT_GT(order, 1.8) << "levels " << level << "," << level + 1;
    EXPECT_LT(order, 2.2) << "levels " << level << "," << level + 1;
  }
}

// The parameters keep every case in the asymptotic range (checked beforehand against the
// closed-form factors).  The implicit cases lower kappa dt / h^2 from 1 (1D) to 0.5 (2D) and
// 0.25 (3D): with larger |k|^2 the higher-order dt terms (for Crank-Nicolson of opposite sign
// to the O(h^2) error) would still show at these coarse h and blur the observed order.
// 3D stops at 32^3 to keep the suite fast.
const ConvergenceCase kCases[] = {
    {"ExplicitPeriodic1D",
     Scheme::Explicit,
     1,
     Boundary::Periodic,
     {1.0, 1.0, 1.0},
     {1, 0, 0},
     0.5,
     0.4,
     {16, 32, 64},
     8},
    {"ExplicitPeriodic2D",
     Scheme::Explicit,
     2,
     Boundary::Periodic,
     {1.0, 2.0, 1.0},
     {1, 1, 0},
     0.5,
     0.2,
     {16, 32, 64},
     8},
    {"ExplicitPeriodic3D",
     Scheme::Explicit,
     3,
     Boundary::Periodic,
     {1.0, 1.0, 1.5},
     {1, 1, 1},
     0.5,
     0.1,
     {16, 32},
     2},
    {"BackwardEulerPeriodic1D",
     Scheme::BackwardEuler,
     1,
     Boundary::Periodic,
     {1.0, 1.0, 1.0},
     {1, 0, 0},
     0.5,
     1.0,
     {32, 64, 128},
     2},
    {"BackwardEulerPeriodic2D",
     Scheme::BackwardEuler,
     2,
     Boundary::Periodic,
     {1.0, 2.0, 1.0},
     {1, 1, 0},
     0.5,
     0.5,
     {16, 32, 64},
     2},
    {"BackwardEulerPeriodic3D",
     Scheme::BackwardEuler,
     3,
     Boundary::Periodic,
     {1.0, 1.0, 1.5},
     {1, 1, 1},
     0.5,
     0.25,
     {16, 32},
     2},
    {"CrankNicolsonPeriodic1D",
     Scheme::CrankNicolson,
     1,
     Boundary::Periodic,
     {1.0, 1.0, 1.0},
     {1, 0, 0},
     0.5,
     1.0,
     {32, 64, 128},
     2},
    {"CrankNicolsonPeriodic2D",
     Scheme::CrankNicolson,
     2,
     Boundary::Periodic,
     {1.0, 2.0, 1.0},
     {1, 1, 0},
     0.5,
     0.5,
     {16, 32, 64},
     2},
    {"CrankNicolsonPeriodic3D",
     Scheme::CrankNicolson,
     3,
     Boundary::Periodic,
     {1.0, 1.0, 1.5},
     {1, 1, 1},
     0.5,
     0.25,
     {16, 32},
     2},
    {"ExplicitDirichlet1D",
     Scheme::Explicit,
     1,
     Boundary::ZeroDirichlet,
     {1.0, 1.0, 1.0},
     {2, 0, 0},
     0.5,
     0.4,
     {15, 31, 63},
     8},
    {"BackwardEulerDirichlet2D",
     Scheme::BackwardEuler,
     2,
     Boundary::ZeroDirichlet,
     {1.0, 1.0, 1.0},
     {1, 2, 0},
     0.5,
     0.5,
     {15, 31, 63},
     2},
    {"CrankNicolsonDirichlet2D",
     Scheme::CrankNicolson,
     2,
     Boundary::ZeroDirichlet,
     {1.0, 1.0, 1.0},
     {1, 2, 0},
     0.5,
     0.5,
     {15, 31, 63},
     2},
};

INSTANTIATE_TEST_SUITE_P(Diffusion, ModeDecay, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<ConvergenceCase>& param_info) {
                           return std::string(param_info.param.label);
                         });

// ---------------------------------------------------------------------------------------
// Input checks.  Every rank throws the same exception (validation is deterministic and
// precedes any collective creation), so EXPECT_THROW is safe under MPI.

GridSpec smallSpec(int dim = 2) {
  GridSpec s;
  s.dim = dim;
  s.n = {16, 16, 16};
  s.length = {1.0, 2.0, 1.0};
  return s;
}

// The matrix-free stencil apply against the assembled matrix, on grids whose owned boxes
// touch periodic boundaries in every way a decomposition allows (a rank owning a whole
// periodic axis reads the wrapped neighbours from its own array; other ghosts come from
// updateRemoteGhosts), with the plain and the streaming-store row bodies.
TEST(StencilApply, MatchesTheAssembledMatrixInEveryLayout) {
  const StreamingStores policies[] = {StreamingStores::Never, StreamingStores::Always,
                                      StreamingStores::Auto};
  for (int dim = 1; dim <= 3; ++dim)
    for (Boundary boundary : {Boundary::Periodic, Boundary::ZeroDirichlet})
      for (PetscInt dof : {1, 2}) {
        GridSpec spec;
        spec.dim = dim;
        spec.boundary = boundary;
        spec.dof = dof;
        // In 3D also long rows: the kernel then sweeps the planes in tiles of a few rows
        // along y (5 to 10 here, the last one shorter).
        std::vector<std::array<PetscInt, 3>> grids = {{dim == 1 ? 45 : 21, 13, 9}};
        if (dim == 3) grids.push_back({1536, 24, 6});
        for (const auto& sizes : grids) {
          for (int a = 0; a < dim; ++a) {
            spec.n[a] = sizes[a];
            spec.length[a] = 1.0 + 0.25 * a;
          }
          Grid grid(Environment::comm(), spec);
          ShiftedLaplacian op(grid, 0.7, -0.3, "stencil_test_");
          std::mt19937 gen(17);
          std::uniform_real_distribution<double> value(-1.0, 1.0);
          std::vector<double> natural(static_cast<size_t>(grid.size() * dof));
          for (double& v : natural) v = value(gen);
          OwnedVec x = grid.createGlobal(), y = grid.createGlobal(), ref = grid.createGlobal();
          grid.scatterNatural(natural, x);
          OwnedMat a;
          PG_CALL(DMCreateMatrix(grid.dm(), a.out()));
          op.assemble(a);
          PG_CALL(MatMult(a, x, ref));
          PetscReal ref_norm = 0.0;
          PG_CALL(VecNorm(ref, NORM_2, &ref_norm));
          for (StreamingStores policy : policies) {
            StarStencil::setStreamingStores(policy);
            op.apply(x, y);
            PG_CALL(VecAXPY(y, -1.0, ref));
            PetscReal diff = 0.0;
            PG_CALL(VecNorm(y, NORM_2, &diff));
            EXPECT_LE(diff / ref_norm, 1e-15)
                << dim << "D " << toString(boundary) << " dof " << dof << " n0 " << sizes[0]
                << " policy " << static_cast<int>(policy);
          }
          StarStencil::setStreamingStores(StreamingStores::Auto);
        }
      }
}

// Every rank of these tests runs on one machine, so all of them share its node; Auto
// streams once x and y of those ranks overflow the cache (at most 32 MiB), and never for
// a few KiB.
TEST(StencilApply, AutoStreamingCountsTheRanksSharingTheNode) {
  EXPECT_EQ(Environment::ranksOnNode(), Environment::size());
  const std::size_t ranks = static_cast<std::size_t>(Environment::ranksOnNode());
  const std::size_t above_cap = (std::size_t{16} << 20) / ranks + 64;
  const bool have = StarStencil::haveStreamingStores();
  StarStencil::setStreamingStores(StreamingStores::Auto);
  EXPECT_EQ(StarStencil::usesStreamingStores(above_cap), have);
  EXPECT_FALSE(StarStencil::usesStreamingStores(4096));
  StarStencil::setStreamingStores(StreamingStores::Never);
  EXPECT_FALSE(StarStencil::usesStreamingStores(above_cap));
  StarStencil::setStreamingStores(StreamingStores::Always);
  EXPECT_EQ(StarStencil::usesStreamingStores(4096), have);
  StarStencil::setStreamingStores(StreamingStores::Auto);
}

TEST(DiffusionInput, NegativeOrNonFiniteKappaIsRejected) {
  Grid grid(Environment::comm(), smallSpec());
  for (double kappa : {-1.0, -1e-300, std::nan(""), HUGE_VAL}) {
    EXPECT_THROW(ExplicitDiffusionStep(grid, {kappa, 1e-5}), InputError) << kappa;
    EXPECT_THROW(ImplicitDiffusionStep(grid, {kappa, 1e-2}, 1.0), InputError) << kappa;
    EXPECT_THROW(ImplicitDiffusionStep(grid, {kappa, 1e-2}, 0.5), InputError) << kappa;
  }
}

TEST(DiffusionInput, NonPositiveOrNonFiniteDtIsRejected) {
  Grid grid(Environment::comm(), smallSpec());
  for (double dt : {0.0, -0.0, -1e-3, std::nan(""), HUGE_VAL}) {
    EXPECT_THROW(ExplicitDiffusionStep(grid, {1.0, dt}), InputError) << dt;
    EXPECT_THROW(ImplicitDiffusionStep(grid, {1.0, dt}, 1.0), InputError) << dt;
    EXPECT_THROW(ImplicitDiffusionStep(grid, {1.0, dt}, 0.5), InputError) << dt;
  }
}

TEST(DiffusionInput, ThetaOutsideHalfToOneIsRejected) {
  Grid grid(Environment::comm(), smallSpec());
  for (double theta : {0.0, 0.49, 1.01, std::nan("")}) {
    EXPECT_THROW(ImplicitDiffusionStep(grid, {1.0, 1e-2}, theta), InputError) << theta;
  }
}

TEST(DiffusionInput, StableDtIsTheFtcsLimit) {
  for (int dim = 1; dim <= 3; ++dim) {
    Grid grid(Environment::comm(), smallSpec(dim));
    const double kappa = 0.3;
    double inv_h2 = 0.0;
    for (int a = 0; a < dim; ++a) inv_h2 += 1.0 / (grid.h(a) * grid.h(a));
    EXPECT_NEAR(ExplicitDiffusionStep::stableDt(grid, kappa), 1.0 / (2.0 * kappa * inv_h2),
                1e-15 / inv_h2)
        << "dim " << dim;
    EXPECT_TRUE(std::isinf(ExplicitDiffusionStep::stableDt(grid, 0.0)));
  }
}

TEST(DiffusionInput, ExplicitDtAboveStableLimitIsRejectedWithTheLimit) {
  Grid grid(Environment::comm(), smallSpec());
  const double kappa = 0.3;
  const double limit = ExplicitDiffusionStep::stableDt(grid, kappa);
  // At the limit the step is accepted (and is the marginally stable FTCS step).
  EXPECT_NO_THROW(ExplicitDiffusionStep(grid, {kappa, limit}));
  std::string message;
  try {
    ExplicitDiffusionStep step(grid, {kappa, limit * (1.0 + 1e-6)});
  } catch (const InputError& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "dt above the stable limit was accepted";
  EXPECT_NE(message.find("limit"), std::string::npos) << message;
  // The message must state the limit itself, so the user knows which dt to pick.
  char limit_text[32];
  std::snprintf(limit_text, sizeof(limit_text), "%.6g", limit);
  EXPECT_NE(message.find(limit_text), std::string::npos) << message << " lacks " << limit_text;
  // The implicit schemes have no such limit.
  EXPECT_NO_THROW(ImplicitDiffusionStep(grid, {kappa, 100.0 * limit}, 1.0));
  EXPECT_NO_THROW(ImplicitDiffusionStep(grid, {kappa, 100.0 * limit}, 0.5));
}

TEST(DiffusionInput, ZeroDiffusivityIsTheIdentity) {
  Grid grid(Environment::comm(), smallSpec());
  OwnedVec x = fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 7));
  OwnedVec y = grid.createGlobal();
  for (Scheme s : {Scheme::Explicit, Scheme::BackwardEuler, Scheme::CrankNicolson}) {
    auto step = makeStep(grid, s, {0.0, 1.0});
    step->forward(x, y);
    PG_CALL(VecAXPY(y, -1.0, x));
    PetscReal err = 0.0;
    PG_CALL(VecNorm(y, NORM_INFINITY, &err));
    EXPECT_LT(err, 1e-14) << schemeName(s);
  }
}

TEST(GridInput, NonPositiveSizesAreRejected) {
  for (int dim = 1; dim <= 3; ++dim) {
    for (int axis = 0; axis < dim; ++axis) {
      for (PetscInt bad : {PetscInt(0), PetscInt(-4)}) {
        for (Boundary b : {Boundary::Periodic, Boundary::ZeroDirichlet}) {
          GridSpec s = smallSpec(dim);
          s.boundary = b;
          s.n[axis] = bad;
          EXPECT_THROW(Grid(Environment::comm(), s), InputError)
              << "dim " << dim << " axis " << axis << " n " << bad;
        }
      }
      for (double bad : {0.0, -1.0, std::nan(""), HUGE_VAL}) {
        GridSpec s = smallSpec(dim);
        s.length[axis] = bad;
        EXPECT_THROW(Grid(Environment::comm(), s), InputError)
            << "dim " << dim << " axis " << axis << " length " << bad;
      }
    }
  }
  for (int dim : {0, 4, -1}) {
    GridSpec s = smallSpec();
    s.dim = dim;
    EXPECT_THROW(Grid(Environment::comm(), s), InputError) << "dim " << dim;
  }
  GridSpec s = smallSpec();
  s.stencil_width = 0;
  EXPECT_THROW(Grid(Environment::comm(), s), InputError) << "stencil width 0";
}

// Environment installs an allocator that starts every PETSc allocation on a 64-byte cache
// line (PETSc's own gives 16 bytes in Debian's build); the stencil kernels' vector loads
// depend on it for their speed, not their results.  Where a -malloc option may reach
// PETSc (PETSc's memory debugging brings its own allocator) Environment keeps PETSc's, and
// this test has nothing to check, unless PHYSGRAD_EXPECT_CACHE_LINES is set (CTest sets
// it: no such option is given there).
TEST(GridInput, PetscArraysStartOnACacheLine) {
  if (!Environment::petscAllocationsOnCacheLines()) {
    ASSERT_EQ(std::getenv("PHYSGRAD_EXPECT_CACHE_LINES"), nullptr)
        << "Environment kept PETSc's allocator although no -malloc option was given";
    GTEST_SKIP() << "a -malloc option may reach PETSc: PETSc's allocator was kept";
  }
  PetscBool debugging = PETSC_FALSE;
  ASSERT_EQ(PetscMallocGetDebug(&debugging, nullptr, nullptr), 0);
  EXPECT_FALSE(debugging);
  auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; };
  for (int dim = 1; dim <= 3; ++dim) {
    GridSpec s = smallSpec(dim);
    s.n = {17, 13, 11};  // odd sizes: no array length is a multiple of the line
    s.dof = dim;
    Grid grid(Environment::comm(), s);
    OwnedVec global = grid.createGlobal(), local = grid.createLocal();
    OwnedVec copy;
    ASSERT_EQ(VecDuplicate(global, copy.out()), 0);
    for (Vec v : {global.get(), local.get(), copy.get()}) {
      PetscScalar* a = nullptr;
      ASSERT_EQ(VecGetArray(v, &a), 0);
      EXPECT_TRUE(aligned(a)) << "dim " << dim << ": array at " << static_cast<const void*>(a);
      ASSERT_EQ(VecRestoreArray(v, &a), 0);
    }
  }
  // Reallocation keeps the alignment and the contents.
  double* p = nullptr;
  ASSERT_EQ(PetscMalloc1(3, &p), 0);
  EXPECT_TRUE(aligned(p));
  for (int e = 0; e < 3; ++e) p[e] = 1.0 + e;
  for (size_t bytes : {sizeof(double) * 5, sizeof(double) * 100001, sizeof(double) * 7}) {
    ASSERT_EQ(PetscRealloc(bytes, &p), 0);
    EXPECT_TRUE(aligned(p)) << bytes << " bytes";
    for (int e = 0; e < 3; ++e) EXPECT_EQ(p[e], 1.0 + e) << bytes << " bytes";
  }
  ASSERT_EQ(PetscFree(p), 0);
}

}  // namespace
}  // namespace physgrad
