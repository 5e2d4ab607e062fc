#pragma once
// Inviscid Burgers equation u_t + (u . grad) u = 0 as a semi-Lagrangian self-advection
// step: the velocity field u (one component per dimension, Grid::dof() == Grid::dim())
// advects itself.  Viscous Burgers is this step split with diffusion (splitting.hpp).
//
// One step of length dt, at every owned node x_i:
//   X_i = x_i - dt u(x_i)                (single-stage departure point)
//   y_c(x_i) = I[u_c](X_i)               (each component interpolated there, linear or cubic)
// The exact solution carries u along straight characteristics, y(x) = u(x - dt y(x)), which
// is implicit in y; the step takes the arrival value u(x) for y(x).  That costs O(dt^2) per
// step (about dt^2 u |grad u|^2), so the step is first-order accurate in time (O(h) at a
// fixed Courant number) whatever the interpolation, and exact for a constant field.
// Zero-Dirichlet grids read u = 0 outside the domain.  Valid before shocks form (dt
// max|grad u| < 1 keeps the map invertible); after that the interpolation's dissipation
// acts as the shock-capturing viscosity.
//
// What is exact and what is approximate:
//   forward  deterministic, independent of the number of ranks (fixed summation order).
//   jvp      the exact derivative of the discrete map wherever it is differentiable (off the
//            measure-zero set where a departure point sits on a cell face, where the
//            interpolant's gradient jumps; there the gradient of the cell the point is
//            assigned to is used):
//              dy_c(x_i) = I[du_c](X_i) - dt sum_d (d I[u_c] / dx_d)(X_i) du_d(x_i).
//   vjp      the exact transpose of jvp: scatter-add of the interpolation weights (ghost
//            contributions summed into their owners), plus the pointwise transpose of the
//            -dt grad u term.
//   approximateInverse  the step run backwards (departure x_i + dt y(x_i)): an inverse up
//            to O(dt^2) per step plus the interpolation error, i.e. O(h^2) on smooth fields
//            at a fixed Courant number.
//   inverse  Newton-Krylov on S(x) = y, started from the better of x0 and the approximate
//            inverse, GMRES right-preconditioned by the Jacobian of the approximate
//            inverse; exact to the tolerance (relative residual 1e-12), or an exception.
//
// The departure points move with u, so the interpolation stencils change at every apply,
// and the CFL condition of the ghost layers is checked at every forward (not once, as for a
// given velocity): a state whose stencils would reach beyond GridSpec::stencil_width throws
// CflError, on every rank alike.

#include <array>
#include <memory>
#include <string>

#include "physgrad/core/error.hpp"
#include "physgrad/core/handle.hpp"
#include "physgrad/physics/interpolation.hpp"
#include "physgrad/physics/jacobian.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

namespace detail {
struct JacobianRecordPool;  // spare buffers of self-advection records; see burgers.cpp
}  // namespace detail

/// A state whose departure points lie beyond the grid's ghost layers.  An InputError (the
/// usual fix is a longer stencil_width or a shorter dt), with the numbers for callers that
/// want to react (e.g. an optimiser rejecting a trial point).
class CflError : public StateOutOfRange {
 public:
  CflError(const std::string& what, double cfl, PetscInt ghost_width, PetscInt required_width)
      : StateOutOfRange(what),
        cfl_(cfl),
        ghost_width_(ghost_width),
        required_width_(required_width) {}
  /// max|u| dt sum_d 1/h_d of the offending state.
  double cfl() const { return cfl_; }
  /// GridSpec::stencil_width of the grid.
  PetscInt ghostWidth() const { return ghost_width_; }
  /// The ghost width the state's interpolation stencils need.
  PetscInt requiredWidth() const { return required_width_; }

 private:
  double cfl_;
  PetscInt ghost_width_, required_width_;
};

/// Options of the Newton-Krylov inverse of a self-advection step (the generic defaults, with
/// the options prefix -burgers_inverse_ for the inner GMRES).
NewtonKrylovOptions defaultSelfAdvectionInverseOptions();

class SelfAdvectionStep final : public Step {
 public:
  /// Throws InputError unless grid.dof() == grid.dim() and dt is positive and finite.
  SelfAdvectionStep(const Grid& grid, double dt, Interpolation kind = Interpolation::Cubic,
                    NewtonKrylovOptions inverse_options = defaultSelfAdvectionInverseOptions());
  ~SelfAdvectionStep() override;

  std::string name() const override;
  bool isLinear() const override { return false; }

  /// y = S(x).  Throws CflError (collectively) if a stencil at x reaches beyond the ghost
  /// layers, NonFiniteError if x is not finite.
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  /// vjp(x, ...) with a record of this step at x restored reads the Jacobian terms from it
  /// instead of interpolating the state's gradient (jvp ignores records).
  void vjp(Vec x, Vec w, Vec wx) override;
  /// forward(x, y), also computing the Jacobian terms G (dim^2 doubles per point, 32 B in 2D,
  /// 72 B in 3D) from the same stencils: the record.  A plain forward() records nothing.
  std::unique_ptr<LinearisationRecord> forwardAndRecord(Vec x, Vec y) override;
  void restoreLinearisation(std::shared_ptr<const LinearisationRecord> record, Vec x) override;
  /// Newton-Krylov from the better (smaller residual) of x0 (may be null) and
  /// approximateInverse(y); throws PetscException with the residual history if it does not
  /// reach ||S(x) - y|| <= rtol ||y||.
  void inverse(Vec x0, Vec y, Vec x) override;
  /// The backwards step: x(x_i) = I[y](x_i + dt y(x_i)).
  void approximateInverse(Vec y, Vec x);
  /// Newton-Krylov on S(x) = y from the x given (updated in place); never throws for
  /// non-convergence (the report says what happened).  Each correction solves
  /// J(x_k) d = S(x_k) - y by GMRES preconditioned with the approximate inverse's Jacobian
  /// at y; a correction that does not reduce the residual is halved (at most 10 times).
  SolveReport solveInverse(Vec y, Vec x, const NewtonKrylovOptions& options);
  SolveReport solveInverse(Vec y, Vec x) { return solveInverse(y, x, inverse_options_); }
  /// The report of the last inverse().
  const SolveReport& lastInverseReport() const { return last_report_; }

  Interpolation interpolation() const { return kind_; }
  double dt() const { return dt_; }
  // Of the state last advanced or linearised at (forward, or jvp / vjp at a new state):
  /// max|u| dt sum_d 1/h_d.
  double lastCfl() const;
  /// Largest departure distance in cells along any axis.
  double lastDepartureCells() const;
  /// The ghost width its interpolation stencils needed.
  PetscInt lastRequiredWidth() const;
  /// Of the last vjp that read a linearisation record, on this rank: {blocks of 8 points
  /// whose scatter-add was summed in a register window, of those the blocks whose window
  /// is wider than one stencil, all blocks}.  The window serves cubic stencils in builds
  /// for AVX-512 (elsewhere the first two numbers are 0): in 2D where the 8 stencils share
  /// their rows and start at consecutive nodes, in 3D also where some of them start one
  /// node later along an axis (a wider window).  A diagnostic.
  std::array<PetscInt, 3> lastWindowedBlocks() const;

  class Linearisation;  // departure stencils and Jacobian at one state (burgers.cpp)

 private:
  /// Makes ahead_ the linearisation at x (rebuilding unless it already is).
  void linearise(Vec x);
  /// Applies the Jacobian of a linearisation (tangent) or its transpose (adjoint).
  void tangent(Linearisation& lin, Vec dx, Vec dy);
  /// wx = J^T w with lin's tables (x null), or building lin's stencils at x on the fly,
  /// with the Jacobian terms from `jac` where given (a record's; x not null).
  void adjoint(Linearisation& lin, Vec x, Vec w, Vec wx, const double* jac = nullptr);
  void setUpSolver(Vec x);
  static PetscErrorCode applyPreconditioner(PC pc, Vec r, Vec z);

  Interpolation kind_;
  double dt_;
  NewtonKrylovOptions inverse_options_;
  CornerGhostExchange exchange_;
  std::unique_ptr<Linearisation> ahead_, back_;  // forward step at x, backwards step at y
  OwnedVec local_work_, residual_, trial_, trial_residual_, correction_;
  bool work_is_zero_ = true;  // local_work_ is all zero (left so by the one-pass adjoint)
  std::unique_ptr<JacobianOperator> jacobian_;
  // Buffers of released records, reused by forwardAndRecord (a fresh one costs page faults
  // on every step of a recording pass); shared with the records, which may outlive the step.
  std::shared_ptr<detail::JacobianRecordPool> record_pool_;
  std::shared_ptr<const LinearisationRecord> restored_record_;  // held until the next forward
  VecStamp restored_at_;                                        // the Vec it belongs to
  OwnedKSP ksp_;
  SolveReport last_report_;
};

}  // namespace physgrad
