#pragma once
// The Poisson solve as a step: y solves Delta_h y = x on a zero-Dirichlet grid (the 3/5/7-point
// Laplacian with the grid's spacings), the forward model of the Poisson experiment in the
// physical-gradient paper.  Its inverse is the exact discrete Laplacian apply, which is what
// makes the physical-gradient update exact for this problem.

#include <string>

#include "physgrad/physics/shifted_laplacian.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

/// y = Delta_h^{-1} x on a zero-Dirichlet grid.  The solve is -Delta_h y = -x by CG with
/// algebraic multigrid (GAMG on the assembled stencil; options prefix -poisson_, e.g.
/// -poisson_ksp_rtol, -poisson_pc_type), to the tolerances of `solve` (rtol 1e-13 by default).
/// Linear and symmetric: jvp is the forward map, vjp the same solve with w, and the inverse
/// is the stencil apply Delta_h y (exact, no solve).
class PoissonStep final : public Step {
 public:
  /// Throws InputError unless the grid has zero-Dirichlet boundaries (on a periodic grid
  /// Delta_h is singular: constants are in its kernel).
  explicit PoissonStep(const Grid& grid, LinearSolveOptions solve = {});

  std::string name() const override { return "poisson"; }
  bool isLinear() const override { return true; }
  bool isSelfAdjoint() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  void inverse(Vec x0, Vec y, Vec x) override;

  /// Iterations of the last solve.
  PetscInt lastSolveIterations() const { return negative_laplacian_.lastIterations(); }

 private:
  /// Solves Delta_h y = x as -Delta_h (-y) = x, so no work Vec is needed.
  void solve(Vec x, Vec y);

  ShiftedLaplacian negative_laplacian_;  // 0 I + (-1) Delta_h: SPD on a zero-Dirichlet grid
};

}  // namespace physgrad
