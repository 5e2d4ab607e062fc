#include "physgrad/physics/shifted_laplacian.hpp"

#include <petscdmda.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {

PetscErrorCode shellMult(Mat A, Vec x, Vec y) {
  PG_CALLBACK_BEGIN
  void* ctx = nullptr;
  PG_CALL(MatShellGetContext(A, &ctx));
  static_cast<const ShiftedLaplacian*>(ctx)->apply(x, y);
  PG_CALLBACK_END("ShiftedLaplacian::apply")
}

}  // namespace

ShiftedLaplacian::ShiftedLaplacian(const Grid& grid, double alpha, double beta, std::string prefix,
                                   LinearSolveOptions solve)
    : grid_(&grid),
      alpha_(alpha),
      beta_(beta),
      prefix_(std::move(prefix)),
      solve_opts_(solve),
      stencil_(makeStencil(grid, alpha, beta)) {}

StarStencil ShiftedLaplacian::makeStencil(const Grid& grid, double alpha, double beta) {
  std::array<double, 3> c = {0.0, 0.0, 0.0};
  double center = alpha;
  for (int a = 0; a < grid.dim(); ++a) {
    c[a] = beta / (grid.h(a) * grid.h(a));
    center -= 2.0 * c[a];
  }
  return StarStencil(grid, center, c, c);
}

double ShiftedLaplacian::laplacianBound(const Grid& grid) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) s += 4.0 / (grid.h(a) * grid.h(a));
  return s;
}

void ShiftedLaplacian::apply(Vec x, Vec y) const { stencil_.apply(x, y); }

void ShiftedLaplacian::assemble(Mat A) const {
  PG_CALL(MatZeroEntries(A));
  double c[3] = {0.0, 0.0, 0.0};
  double center = alpha_;
  for (int a = 0; a < grid_->dim(); ++a) {
    c[a] = beta_ / (grid_->h(a) * grid_->h(a));
    center -= 2.0 * c[a];
  }
  const bool dirichlet = grid_->boundary() == Boundary::ZeroDirichlet;
  forEachOwned(*grid_, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt) {
    for (PetscInt comp = 0; comp < grid_->dof(); ++comp) {
      MatStencil row{};
      row.i = i;
      row.j = j;
      row.k = k;
      row.c = comp;
      MatStencil cols[7];
      PetscScalar vals[7];
      int nc = 0;
      cols[nc] = row;
      vals[nc++] = center;
      for (int a = 0; a < grid_->dim(); ++a) {
        for (int s = -1; s <= 1; s += 2) {
          MatStencil col = row;
          PetscInt* idx = a == 0 ? &col.i : (a == 1 ? &col.j : &col.k);
          *idx += s;
          if (dirichlet && (*idx < 0 || *idx >= grid_->n(a))) continue;  // zero outside
          cols[nc] = col;
          vals[nc++] = c[a];
        }
      }
      PG_CALL(MatSetValuesStencil(A, 1, &row, nc, cols, vals, ADD_VALUES));
    }
  });
  PG_CALL(MatAssemblyBegin(A, MAT_FINAL_ASSEMBLY));
  PG_CALL(MatAssemblyEnd(A, MAT_FINAL_ASSEMBLY));
}

void ShiftedLaplacian::setUpSolver() const {
  if (ksp_) return;
  const PetscInt nlocal = grid_->owned().count() * grid_->dof();
  const PetscInt nglobal = grid_->size() * grid_->dof();
  PG_CALL(MatCreateShell(grid_->comm(), nlocal, nlocal, nglobal, nglobal,
                         const_cast<ShiftedLaplacian*>(this), shell_.out()));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT, reinterpret_cast<void (*)(void)>(shellMult)));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT_TRANSPOSE,
                               reinterpret_cast<void (*)(void)>(shellMult)));
  PG_CALL(MatSetOption(shell_, MAT_SYMMETRIC, PETSC_TRUE));

  PG_CALL(KSPCreate(grid_->comm(), ksp_.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp_, prefix_.c_str()));
  PG_CALL(KSPSetTolerances(ksp_, solve_opts_.rtol, solve_opts_.atol, PETSC_DEFAULT,
                           solve_opts_.max_it));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp_, &pc));
  // Spectrum of A lies in [alpha - max(beta,0) L, alpha + max(-beta,0) L], L = laplacianBound.
  const double lam = laplacianBound(*grid_);
  // alpha = 0, beta < 0 on a zero-Dirichlet grid is |beta| (-Delta_h), the Poisson operator:
  // SPD (the Dirichlet Laplacian has no kernel), but with a condition number that grows like
  // h^-2 and no identity part to bound it, so it takes the SPD branch with an infinite bound.
  // On a periodic grid the same operator is singular and keeps the branches below.
  const bool dirichlet_poisson =
      alpha_ == 0.0 && beta_ < 0.0 && grid_->boundary() == Boundary::ZeroDirichlet;
  if (beta_ < 0.0 && (alpha_ > 0.0 || dirichlet_poisson)) {
    // alpha I - |beta| Delta: SPD, the implicit-diffusion case, with condition number at
    // most 1 + |beta| L / alpha.  CG; the apply stays matrix-free.  Algebraic multigrid
    // on the assembled stencil pays off only for stiff steps: measured on 256^2, 2 ranks,
    // rtol 1e-13 (ms per solve, CG+Jacobi vs CG+GAMG): kappa dt/h^2 = 1: 5 vs 17;
    // 10: 16 vs 21; 100: 39 vs 33.  Hence GAMG above a condition bound of ~400
    // (kappa dt/h^2 ~ 50 in 2D), Jacobi below.  -diffusion_pc_type overrides either.
    // (beta = 0, i.e. kappa = 0, goes to the branch below: GAMG's setup breaks down on a
    // diagonal matrix in parallel, and CG needs one iteration there anyway.)
    const double condition_bound =
        alpha_ > 0.0 ? 1.0 - beta_ * lam / alpha_ : std::numeric_limits<double>::infinity();
    PG_CALL(DMCreateMatrix(grid_->dm(), pmat_.out()));
    assemble(pmat_);
    PG_CALL(KSPSetOperators(ksp_, shell_, pmat_));
    PG_CALL(KSPSetType(ksp_, KSPCG));
    PG_CALL(PCSetType(pc, condition_bound > 400.0 ? PCGAMG : PCJACOBI));
    PG_CALL(KSPSetNormType(ksp_, KSP_NORM_UNPRECONDITIONED));
  } else if (alpha_ - beta_ * lam > 0.0) {
    // alpha I + beta Delta with beta > 0 but still positive definite: well conditioned,
    // unpreconditioned CG.
    PG_CALL(KSPSetOperators(ksp_, shell_, shell_));
    PG_CALL(KSPSetType(ksp_, KSPCG));
    PG_CALL(PCSetType(pc, PCNONE));
  } else {
    // Symmetric but possibly indefinite (large explicit dt): MINRES.  A nearly singular
    // operator shows up as a stated convergence failure, never as a silent result.
    PG_CALL(KSPSetOperators(ksp_, shell_, shell_));
    PG_CALL(KSPSetType(ksp_, KSPMINRES));
    PG_CALL(PCSetType(pc, PCNONE));
  }
  PG_CALL(KSPSetFromOptions(ksp_));
  PG_CALL(KSPSetUp(ksp_));
}

void ShiftedLaplacian::checkConverged(const char* what) const {
  KSPConvergedReason reason;
  PG_CALL(KSPGetConvergedReason(ksp_, &reason));
  PG_CALL(KSPGetIterationNumber(ksp_, &last_its_));
  if (reason == KSP_DIVERGED_NANORINF) {
    throw NonFiniteError(std::string(what) + " (options prefix -" + prefix_ +
                         "): Inf or NaN in the iteration");
  }
  if (reason < 0) {
    std::ostringstream os;
    os << what << " with (" << alpha_ << ") I + (" << beta_
       << ") Laplacian did not converge: " << KSPConvergedReasons[reason] << " after " << last_its_
       << " iterations (options prefix -" << prefix_ << ")";
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  }
}

void ShiftedLaplacian::solve(Vec b, Vec x) const {
  setUpSolver();
  PG_CALL(KSPSolve(ksp_, b, x));
  checkConverged("linear solve");
}

void ShiftedLaplacian::solveTranspose(Vec b, Vec x) const {
  // A = alpha I + beta Delta_h is symmetric for both boundary types, so A^T x = b is the
  // same solve.  Using KSPSolve (not KSPSolveTranspose) keeps every preconditioner usable:
  // some (hypre's BoomerAMG) have no transpose apply.
  solve(b, x);
}

}  // namespace physgrad
