#pragma once
// Derivative checks for any physgrad::Step (a single step or a Simulator), in the spirit of
// ROL's checks: a Taylor table of a scalar function whose gradient comes from vjp, the
// adjoint identity <w, J v> = <J^T w, v>, and the inverse round trip S^{-1}(S(x)) = x.
//
// Every number returned is a globally reduced quantity (norms and dot products of
// distributed Vecs), identical on all ranks, so tests may branch and assert on it without
// one rank leaving a test while the others enter a collective.

#include <gtest/gtest.h>
#include <petscvec.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fields.hpp"
#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/core/handle.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad::testutil {

/// Remainders of the first-order Taylor expansion of f along a direction.
struct TaylorTable {
  double f0 = 0.0;                ///< f(x)
  double slope = 0.0;             ///< <grad f(x), v>
  std::vector<double> eps;        ///< decreasing step lengths
  std::vector<double> remainder;  ///< |f(x + eps v) - f(x) - eps <grad f(x), v>|

  /// Observed orders log(r_i / r_{i+1}) / log(eps_i / eps_{i+1}); 2 for a correct gradient
  /// of a smooth f, 1 for a wrong one.
  std::vector<double> orders() const {
    std::vector<double> out;
    for (size_t i = 0; i + 1 < eps.size(); ++i) {
      out.push_back(std::log(remainder[i] / remainder[i + 1]) / std::log(eps[i] / eps[i + 1]));
    }
    return out;
  }
  double smallestRemainder() const {
    return remainder.empty() ? 0.0 : *std::min_element(remainder.begin(), remainder.end());
  }
};

/// Taylor test of f(x) = 1/2 ||S(x) - y*||^2 with gradient J(x)^T (S(x) - y*) from the step's
/// vjp.  A linear S has a remainder exactly eps^2/2 ||J v||^2 whatever the adjoint is, so the
/// check of the map itself would be empty; through f, a wrong vjp gives order 1.
/// eps runs over eps0, eps0 * factor, ..., `count` values.
inline TaylorTable taylorTable(Step& step, Vec x, Vec v, Vec target, double eps0, int count,
                               double factor = 0.5) {
  const Grid& grid = step.grid();
  OwnedVec y = grid.createGlobal(), residual = grid.createGlobal(), grad = grid.createGlobal(),
           xp = grid.createGlobal();
  auto half_squared_misfit = [&](Vec at) {
    step.forward(at, y);
    PG_CALL(VecAXPY(y, -1.0, target));
    PetscReal norm = 0.0;
    PG_CALL(VecNorm(y, NORM_2, &norm));
    return 0.5 * norm * norm;
  };
  TaylorTable table;
  // The gradient right after the forward run at x, so a Simulator reuses that trajectory.
  step.forward(x, residual);
  PG_CALL(VecAXPY(residual, -1.0, target));
  PetscReal norm = 0.0;
  PG_CALL(VecNorm(residual, NORM_2, &norm));
  table.f0 = 0.5 * norm * norm;
  step.vjp(x, residual, grad);
  PG_CALL(VecDot(grad, v, &table.slope));
  double eps = eps0;
  for (int i = 0; i < count; ++i, eps *= factor) {
    PG_CALL(VecWAXPY(xp, eps, v, x));
    const double f = half_squared_misfit(xp);
    table.eps.push_back(eps);
    table.remainder.push_back(std::abs(f - table.f0 - eps * table.slope));
  }
  return table;
}

/// |<w, J v> - <J^T w, v>| / (||w|| ||J v||) at the point x: round-off for an exact adjoint.
inline double adjointMismatch(Step& step, Vec x, Vec v, Vec w) {
  const Grid& grid = step.grid();
  OwnedVec jv = grid.createGlobal(), jtw = grid.createGlobal();
  step.jvp(x, v, jv);
  step.vjp(x, w, jtw);
  PetscScalar w_jv = 0.0, jtw_v = 0.0;
  PetscReal norm_w = 0.0, norm_jv = 0.0;
  PG_CALL(VecDot(w, jv, &w_jv));
  PG_CALL(VecDot(jtw, v, &jtw_v));
  PG_CALL(VecNorm(w, NORM_2, &norm_w));
  PG_CALL(VecNorm(jv, NORM_2, &norm_jv));
  return std::abs(w_jv - jtw_v) / (norm_w * norm_jv);
}

/// ||S^{-1}(S(x)) - x|| / ||x||, the inverse taken around x itself.
inline double inverseMismatch(Step& step, Vec x) {
  const Grid& grid = step.grid();
  OwnedVec y = grid.createGlobal(), back = grid.createGlobal();
  step.forward(x, y);
  step.inverse(x, y, back);
  PG_CALL(VecAXPY(back, -1.0, x));
  PetscReal err = 0.0, norm = 0.0;
  PG_CALL(VecNorm(back, NORM_2, &err));
  PG_CALL(VecNorm(x, NORM_2, &norm));
  return err / norm;
}

/// Asserts that a distributed run and a serial copy of the same operator agree: `R` holds
/// the gathered natural-order results `forward`, `jvp`, `vjp` and `inverse` of each run.
/// The differences are rank-maximised, so every rank takes the same branch.
template <typename R>
void expectSameAcrossRanks(const std::string& label, const R& distributed, const R& serial,
                           double tolerance = 1e-12) {
  const MPI_Comm world = PETSC_COMM_WORLD;
  const double d_forward = maxRelativeDifference(distributed.forward, serial.forward, world);
  const double d_jvp = maxRelativeDifference(distributed.jvp, serial.jvp, world);
  const double d_vjp = maxRelativeDifference(distributed.vjp, serial.vjp, world);
  const double d_inverse = maxRelativeDifference(distributed.inverse, serial.inverse, world);
  rootPrintf("  %-40s distributed vs serial: forward %.2e jvp %.2e vjp %.2e inverse %.2e\n",
             label.c_str(), d_forward, d_jvp, d_vjp, d_inverse);
  EXPECT_LE(d_forward, tolerance);
  EXPECT_LE(d_jvp, tolerance);
  EXPECT_LE(d_vjp, tolerance);
  EXPECT_LE(d_inverse, tolerance);
}

}  // namespace physgrad::testutil
