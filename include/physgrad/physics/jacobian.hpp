#pragma once
// The Jacobian of a Step (or a Simulator) at a point, as a PETSc MatShell: MatMult is the
// step's jvp and MatMultTranspose its vjp, so every KSP (GMRES, CG on normal equations,
// LSQR, CGLS) works on it unchanged.  Also the generic local inverse of a step: a
// matrix-free Newton-Krylov solve of S(x) = y.

#include <petscksp.h>

#include <string>
#include <vector>

#include "physgrad/core/handle.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

class JacobianOperator {
 public:
  /// J(x) of `step`; x is copied (the linearisation point).
  JacobianOperator(Step& step, Vec x);
  JacobianOperator(const JacobianOperator&) = delete;
  JacobianOperator& operator=(const JacobianOperator&) = delete;

  /// Moves the linearisation point.
  void setPoint(Vec x);
  Vec point() const { return point_; }
  Mat mat() const { return shell_; }
  Step& step() const { return *step_; }
  /// Applications so far.
  long jvpCount() const { return jvp_count_; }
  long vjpCount() const { return vjp_count_; }

 private:
  static PetscErrorCode mult(Mat A, Vec x, Vec y);
  static PetscErrorCode multTranspose(Mat A, Vec x, Vec y);

  Step* step_;
  OwnedVec point_;
  OwnedMat shell_;
  long jvp_count_ = 0, vjp_count_ = 0;
};

/// Outcome of an iterative solve; `converged` false is a stated failure, not an error.
struct SolveReport {
  bool converged = false;
  PetscInt iterations = 0;               ///< Krylov iterations (summed over Newton steps)
  PetscInt newton_iterations = 0;        ///< Newton steps (0 for a linear solve)
  double residual = 0.0;                 ///< final residual norm
  double relative_residual = 0.0;        ///< residual / ||right-hand side||
  std::string reason;                    ///< PETSc's reason, or what stopped the Newton loop
  std::vector<double> residual_history;  ///< Newton: ||S(x_k) - y|| for k = 0, 1, ...
};

struct NewtonKrylovOptions {
  double rtol = 1e-12;  ///< stop when ||S(x) - y|| <= rtol ||y|| (+ atol)
  double atol = 1e-300;
  PetscInt max_newton = 20;
  double krylov_rtol = 1e-8;  ///< GMRES tolerance of each Newton correction
  PetscInt krylov_max_it = 500;
  std::string prefix = "newton_inverse_";  ///< options prefix of the inner KSP
};

/// Solves S(x) = y by Newton's method with GMRES on the jvp (matrix-free), starting at the
/// x given.  Never throws for non-convergence: the report says what happened.
SolveReport newtonKrylovInverse(Step& step, Vec y, Vec x, const NewtonKrylovOptions& options = {});

}  // namespace physgrad
