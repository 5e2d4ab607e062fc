#include "physgrad/physics/poisson.hpp"

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {

const Grid& checkedPoissonGrid(const Grid& grid) {
  if (grid.boundary() != Boundary::ZeroDirichlet) {
    throw InputError(std::string("the Poisson step needs a zero-Dirichlet grid (got a ") +
                     toString(grid.boundary()) +
                     " grid, on which the Laplacian is singular: constants are in its kernel)");
  }
  return grid;
}

}  // namespace

// Solver choice: CG with GAMG on the assembled stencil (ShiftedLaplacian's SPD branch; the
// apply stays matrix-free).  Measured against geometric multigrid (PCMG on the DMDA hierarchy
// from DMCoarsen/DMCreateInterpolation, Galerkin coarse operators) on the unit square,
// rtol 1e-13, 2 cores, ms per solve once set up (set-up plus first solve in parentheses),
// 1 / 2 ranks:
//   257^2 GAMG (default Chebyshev/Jacobi smoothing, 22 its)     55 / 28    (200 / 135)
//   257^2 PCMG, 8 levels, default Chebyshev/SOR (9-13 its)      60 / 45    ( 95 /  70)
//   257^2 PCMG, 8 levels, Chebyshev/Jacobi (13 its)             33 / 16.5  ( 55 /  47)
//   257^2 hypre BoomerAMG (9-11 its)                            42 / 31.5  (160 /  78)
//   255^2 GAMG                                                  53 / 28.5
// So geometric multigrid, tuned, is about 1.7x faster per solve, and GAMG as configured
// beats untuned PCMG.  GAMG stays the default because it works on every grid: DMDA
// coarsening of a non-periodic grid needs n - 1 divisible by 2 per level (n = 2^k + 1), so
// the natural Dirichlet sizes n = 2^k - 1 (h = 1/2^k; 255^2 above) coarsen only once, and the
// DMDA's coarse grids include the boundary points that this interior-node grid leaves out.
// -poisson_pc_type hypre switches to BoomerAMG without code changes.
PoissonStep::PoissonStep(const Grid& grid, LinearSolveOptions solve)
    : Step(grid), negative_laplacian_(checkedPoissonGrid(grid), 0.0, -1.0, "poisson_", solve) {}

void PoissonStep::solve(Vec x, Vec y) {
  negative_laplacian_.solve(x, y);
  PG_CALL(VecScale(y, -1.0));
}

void PoissonStep::forward(Vec x, Vec y) { solve(x, y); }
void PoissonStep::jvp(Vec, Vec dx, Vec dy) { solve(dx, dy); }
// Delta_h is symmetric, so J^T = J: the adjoint is the same solve (ShiftedLaplacian::solve
// is its own transpose, and never needs a transposed preconditioner apply).
void PoissonStep::vjp(Vec, Vec w, Vec wx) { solve(w, wx); }

void PoissonStep::inverse(Vec, Vec y, Vec x) {
  negative_laplacian_.apply(y, x);
  PG_CALL(VecScale(x, -1.0));
}

}  // namespace physgrad
