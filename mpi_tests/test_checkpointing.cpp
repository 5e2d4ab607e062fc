// Binomial checkpointing: the closed-form optimum against a brute-force recurrence, and
// checkpointed reverse sweeps (vjp and inverse time stepping) of a nonlinear simulator
// against store-all: equal results, the optimal number of recomputed steps, and never
// more than c stored states.

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/physics/checkpointing.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/simulator.hpp"
#include "test_steps.hpp"

namespace physgrad {
namespace {

// t(l, s) by dynamic programming over every first-checkpoint position.
std::vector<std::vector<int64_t>> bruteForceTable(int64_t lmax, int64_t smax) {
  std::vector<std::vector<int64_t>> t(lmax + 1, std::vector<int64_t>(smax + 1, 0));
  for (int64_t l = 1; l <= lmax; ++l) {
    t[l][1] = l * (l - 1) / 2;
    for (int64_t s = 2; s <= smax; ++s) {
      int64_t best = l == 1 ? 0 : std::numeric_limits<int64_t>::max();
      for (int64_t m = 1; m < l; ++m) best = std::min(best, m + t[l - m][s - 1] + t[m][s]);
      t[l][s] = best;
    }
  }
  return t;
}

TEST(Checkpointing, ClosedFormEqualsTheRecurrence) {
  const auto t = bruteForceTable(80, 8);
  for (int64_t l = 1; l <= 80; ++l)
    for (int64_t s = 1; s <= 8; ++s)
      EXPECT_EQ(checkpointing::minimalForwardSteps(l, s), t[l][s]) << "l=" << l << " s=" << s;
  EXPECT_EQ(checkpointing::binomial(3, 2), 10);
  EXPECT_EQ(checkpointing::binomial(30, 30), 118264581564861424LL);
  EXPECT_EQ(checkpointing::binomial(100, 100), std::numeric_limits<int64_t>::max());
}

GridSpec smallGrid() {
  GridSpec s;
  s.dim = 2;
  s.n = {12, 10, 1};
  s.length = {12.0, 10.0, 1.0};
  return s;
}

// K steps alternating a pointwise cubic (nonlinear) and an explicit diffusion step.
std::unique_ptr<Simulator> nonlinearSimulator(const Grid& grid, size_t K, PetscInt c) {
  auto cubic = std::make_shared<testutil::PointwiseCubicStep>(grid, 0.3);
  auto diffusion = std::make_shared<ExplicitDiffusionStep>(grid, DiffusionParams{1.0, 0.1});
  std::vector<std::shared_ptr<Step>> steps;
  for (size_t k = 0; k < K; ++k) steps.push_back(k % 2 ? std::shared_ptr<Step>(diffusion) : cubic);
  CheckpointOptions opts;
  opts.checkpoints = c;
  return std::make_unique<Simulator>(grid, steps, opts);
}

double relativeDifference(Vec a, Vec b) {
  OwnedVec d;
  PG_CALL(VecDuplicate(a, d.out()));
  PG_CALL(VecWAXPY(d, -1.0, a, b));
  PetscReal nd = 0, na = 0;
  PG_CALL(VecNorm(d, NORM_2, &nd));
  PG_CALL(VecNorm(a, NORM_2, &na));
  return nd / na;
}

TEST(Checkpointing, SweepsEqualStoreAllWithTheOptimalRecomputation) {
  Grid grid(PETSC_COMM_WORLD, smallGrid());
  OwnedVec x = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 3));
  OwnedVec w = testutil::fieldFromNatural(grid, testutil::roughRandomNatural(grid, 4));
  PG_CALL(VecScale(x, 0.5));
  for (size_t K : {1u, 2u, 7u, 20u, 33u}) {
    auto reference = nonlinearSimulator(grid, K, 0);
    OwnedVec y_ref = grid.createGlobal(), g_ref = grid.createGlobal(), t_ref = grid.createGlobal(),
             inv_ref = grid.createGlobal();
    reference->forward(x, y_ref);
    reference->vjp(x, w, g_ref);
    reference->jvp(x, w, t_ref);
    reference->inverse(x, y_ref, inv_ref);
    EXPECT_EQ(reference->lastRecomputed(), 0);
    for (PetscInt c : {1, 2, 3, 5, static_cast<int>(K) - 1}) {
      if (c < 1) continue;
      SCOPED_TRACE("K=" + std::to_string(K) + " c=" + std::to_string(c));
      auto sim = nonlinearSimulator(grid, K, c);
      OwnedVec y = grid.createGlobal(), g = grid.createGlobal(), t = grid.createGlobal(),
               inv = grid.createGlobal();
      sim->forward(x, y);
      EXPECT_EQ(relativeDifference(y_ref, y), 0.0);
      sim->vjp(x, w, g);
      EXPECT_LE(relativeDifference(g_ref, g), 1e-14);
      const bool binomial = static_cast<size_t>(c) < K;
      if (binomial) {
        // forward + reverse together run t(K, c) + 1 forward steps: the optimum, with the
        // last step's forward producing y.
        EXPECT_EQ(sim->lastRecomputed(),
                  checkpointing::minimalForwardSteps(static_cast<int64_t>(K), c) -
                      static_cast<int64_t>(K - 1));
      }
      EXPECT_LE(sim->lastPeakStored(), c);
      EXPECT_LE(sim->checkpointSlots(), c);
      // A second sweep at the same x must not trust slots the first one reused.
      sim->vjp(x, w, g);
      EXPECT_LE(relativeDifference(g_ref, g), 1e-14);
      sim->jvp(x, w, t);
      EXPECT_LE(relativeDifference(t_ref, t), 1e-14);
      sim->inverse(x, y_ref, inv);
      EXPECT_LE(relativeDifference(inv_ref, inv), 1e-14);
      EXPECT_LE(sim->lastPeakStored(), c);
    }
  }
}

TEST(Checkpointing, InverseTimeSteppingRecoversTheStart) {
  Grid grid(PETSC_COMM_WORLD, smallGrid());
  OwnedVec x = testutil::fieldFromNatural(grid, testutil::smoothRandomNatural(grid, 5));
  // A moderate amplitude: each explicit step damps the checkerboard mode to 0.2, so the
  // inverse amplifies round-off by up to 5 per step, and a large cubic term would add
  // its own conditioning on top; the bound below is for this well-conditioned regime.
  PG_CALL(VecScale(x, 0.2));
  for (PetscInt c : {0, 1, 3}) {
    for (size_t K : {1u, 2u, 5u, 12u}) {
      auto sim = nonlinearSimulator(grid, K, c);
      OwnedVec y = grid.createGlobal(), back = grid.createGlobal();
      sim->forward(x, y);
      sim->inverse(x, y, back);
      EXPECT_LE(relativeDifference(x, back), 1e-10) << "K=" << K << " c=" << c;
    }
  }
}

TEST(Checkpointing, NegativeBudgetIsRefused) {
  Grid grid(PETSC_COMM_WORLD, smallGrid());
  EXPECT_THROW(nonlinearSimulator(grid, 4, -1), InputError);
}

}  // namespace
}  // namespace physgrad
