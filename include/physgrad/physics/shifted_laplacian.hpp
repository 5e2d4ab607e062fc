#pragma once
// The operator A = alpha I + beta Delta_h (second-order central Laplacian) as a matrix-free
// stencil apply and as a Krylov solve.  Every diffusion step is built from two of these.

#include <petscksp.h>

#include <string>

#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/star_stencil.hpp"

namespace physgrad {

/// Tolerances of an inner linear solve; defaults are tight because the steps promise
/// adjoints and inverses that are exact to far below the optimiser's accuracy.
struct LinearSolveOptions {
  double rtol = 1e-13;
  double atol = 1e-50;
  PetscInt max_it = 10000;
};

class ShiftedLaplacian {
 public:
  /// `prefix` is the PETSc options prefix of the inner KSP (e.g. "be_"), so that
  /// -be_ksp_type / -be_pc_type override the defaults.
  ShiftedLaplacian(const Grid& grid, double alpha, double beta, std::string prefix,
                   LinearSolveOptions solve = {});

  double alpha() const { return alpha_; }
  double beta() const { return beta_; }

  /// y = A x (matrix-free; A is symmetric, so this is also the transpose apply).
  void apply(Vec x, Vec y) const;
  /// Solves A x = b.  Throws PetscException if the Krylov solve does not converge.
  void solve(Vec b, Vec x) const;
  /// Solves A^T x = b (the same solve: A is symmetric).
  void solveTranspose(Vec b, Vec x) const;
  /// Iterations of the last solve.
  PetscInt lastIterations() const { return last_its_; }
  /// Upper bound on the spectral radius of -Delta_h: 4 sum_d 1/h_d^2.
  static double laplacianBound(const Grid& grid);

  /// Assembles A into a matrix from DMCreateMatrix (for preconditioners).
  void assemble(Mat A) const;

 private:
  void setUpSolver() const;
  void checkConverged(const char* what) const;

  const Grid* grid_;
  double alpha_, beta_;
  std::string prefix_;
  LinearSolveOptions solve_opts_;
  static StarStencil makeStencil(const Grid& grid, double alpha, double beta);

  StarStencil stencil_;
  mutable OwnedMat shell_, pmat_;
  mutable OwnedKSP ksp_;
  mutable PetscInt last_its_ = 0;
};

}  // namespace physgrad
