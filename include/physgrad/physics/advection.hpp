#pragma once
// Advection steps u_t + v . grad u = 0 by a given, time-independent velocity field v, over one
// time step dt, on periodic and zero-Dirichlet grids (Dirichlet: the field is zero outside
// the domain, so inflow brings zeros).  A multi-component field (Grid::dof() > 1) has every
// component advected by the same velocity.
//
// Everything that depends on the velocity (upwind coefficients, departure points and their
// interpolation weights) is computed once, in the constructor; an apply is a ghost exchange
// plus a sweep over precomputed stencils.  A constant velocity (on a periodic grid, for the
// semi-Lagrangian and MacCormack steps) makes every point's stencil the same: then one
// stencil is kept and applied as a constant-coefficient sweep (upwind: StarStencil;
// interpolation: a separable sweep, InterpolationTable::uniform), with no tables at all.
// Results do not depend on the number of ranks: each output value is summed in a fixed
// order from the same inputs; transposes sum ghost contributions across ranks, which
// changes round-off only.
//
// What is exact and what is approximate:
//   upwind, semi-Lagrangian: linear; jvp = forward, vjp = the exact transpose (scatter-add);
//     inverse = GMRES on the step, exact to its tolerance; approximateInverse = the same
//     scheme with -v (an O(h)-accurate (upwind) or O(h^p) (semi-Lagrangian) inverse).
//   MacCormack: nonlinear (limiter); jvp / vjp = the exact derivative of the limited scheme
//     wherever it is differentiable (see MacCormackAdvectionStep); inverse = Newton-Krylov,
//     exact to its tolerance where it converges (else an exception).
//
// Conditioning of the exact inverses: interpolation is dissipative, most of all at a
// fractional departure offset of half a cell, where linear interpolation annihilates the
// grid-scale mode (symbol 1 - 2 alpha).  A velocity whose offsets sweep through 1/2 (a
// vortex at more than half a cell per step) makes the semi-Lagrangian inverse
// ill-conditioned; the unlimited MacCormack operator is nearly singular at Nyquist for some
// Courant numbers in (1, 2) (symbol a + (1 - |a|^2)/2, 0.02 at 1.3 cells); and where the
// limiter clamps two values to the same node its Jacobian is singular, so S is not locally
// injective.  The solvers then report non-convergence (or, for MacCormack, return one of
// several preimages) rather than a silently wrong result.

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "physgrad/core/handle.hpp"
#include "physgrad/physics/interpolation.hpp"
#include "physgrad/physics/star_stencil.hpp"
#include "physgrad/physics/step.hpp"
#include "physgrad/physics/velocity.hpp"

namespace physgrad {

/// Tolerances of the Krylov solves behind the exact inverses.  The inverse of an advection
/// step is a non-symmetric solve, hence GMRES (right-preconditioned, so that the tolerance
/// applies to the true residual ||S x - y|| <= rtol ||y||).
struct AdvectionSolveOptions {
  double rtol = 1e-12;
  double atol = 1e-50;
  PetscInt max_it = 2000;
  PetscInt restart = 60;      ///< GMRES restart length
  PetscInt max_newton = 20;   ///< Newton iterations of the MacCormack inverse
  double newton_rtol = 1e-6;  ///< relative tolerance of each Newton step's GMRES solve
  /// Throws InputError naming the offending field.
  void validate() const;
};

namespace detail {
class KrylovSolver;  // GMRES + PCSHELL (or LSQR) on a MatShell; see advection.cpp
struct PatternPool;  // spare clamping-pattern buffers; see advection.cpp
}  // namespace detail

/// First-order upwind in advective form, with v taken at the node:
///   y_i = x_i - dt sum_d [ max(v_d,0) (x_i - x_{i-e_d}) + min(v_d,0) (x_{i+e_d} - x_i) ] / h_d.
/// Refuses CFL = max|v| dt sum_d 1/h_d > 1 (a sufficient condition for the positivity limit
/// dt sum_d |v_d|/h_d <= 1, under which the step is monotone and max-norm stable).
class UpwindAdvectionStep final : public Step {
 public:
  UpwindAdvectionStep(const Grid& grid, const VelocityField& velocity, double dt,
                      AdvectionSolveOptions solve = {});
  ~UpwindAdvectionStep() override;

  std::string name() const override { return "upwind-advection"; }
  bool isLinear() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  /// The exact transpose: scatter-add of the coefficients into a zeroed ghosted vector,
  /// then the ghost contributions are summed into their owners.
  void vjp(Vec x, Vec w, Vec wx) override;
  /// Solves S x = y by GMRES, preconditioned by and started from approximateInverse(y);
  /// throws (naming the reason) if it does not converge to the tolerance.
  void inverse(Vec x0, Vec y, Vec x) override;
  /// The upwind step with -v: S(-v) S(v) = I + O(dt h) on smooth fields.
  void approximateInverse(Vec y, Vec x);

  double dt() const { return dt_; }
  double cfl() const { return cfl_; }
  /// GMRES iterations of the last inverse.
  PetscInt lastInverseIterations() const;

 private:
  /// center[p], then per axis a coefficient and an array offset of the upwind neighbour.
  struct Coefficients {
    std::vector<double> center, side;
    std::vector<PetscInt> neighbour;
  };
  void build(const VelocityField& velocity, double sign, Coefficients& c) const;
  void apply(const Coefficients& c, Vec x, Vec y);
  /// The Courant number dt v_d / h_d per axis if it is the same at every grid point (a
  /// constant velocity; collective), else nothing.
  std::optional<std::array<double, 3>> uniformCourant(const VelocityField& velocity) const;
  /// The upwind update for uniform Courant numbers as a constant-coefficient stencil.
  StarStencil uniformStencil(const std::array<double, 3>& courant) const;

  double dt_, cfl_ = 0.0;
  PetscInt dof_;
  Coefficients downwind_, reverse_;  // with v and with -v
  // A constant velocity makes every row the same: then these apply the step (and its
  // transpose, and the step with -v) matrix-free at stencil speed, and the tables above
  // stay empty.
  std::optional<StarStencil> uniform_forward_, uniform_adjoint_, uniform_reverse_;
  OwnedVec local_;
  std::unique_ptr<detail::KrylovSolver> solver_;
};

/// Semi-Lagrangian step y(x_i) = x(X_i), interpolated (linear or cubic Lagrange) at the
/// departure point of a two-stage midpoint (RK2) backtrack
///   X_i = x_i - dt v(x_i - dt/2 v(x_i)),
/// whose local error is O(dt^3) (exact for constant velocity).  On periodic grids the velocity is
/// evaluated at the periodic image of the midpoint. CFL numbers above 1 are allowed as long as
/// every interpolation stencil lies within the grid's ghost layers (GridSpec::stencil_width);
/// otherwise the constructor throws an InputError stating the CFL, the ghost width and the width
/// needed.
class SemiLagrangianAdvectionStep final : public Step {
 public:
  SemiLagrangianAdvectionStep(const Grid& grid, const VelocityField& velocity, double dt,
                              Interpolation kind = Interpolation::Cubic,
                              AdvectionSolveOptions solve = {});
  ~SemiLagrangianAdvectionStep() override;

  std::string name() const override;
  bool isLinear() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  /// The exact transpose of the interpolation.  Linear per-point stencils in 1D and 2D: a
  /// gather over the nodes through a transposed table (InterpolationTable::
  /// buildNodeTranspose, built by the constructor: about 48 B per point in 2D), the terms
  /// that land on ghost entries summed into their owners.  Otherwise a scatter-add and the
  /// ghost sum, which measured faster there (512^2 and 64^3 vortex, Zen 5 guest): the 16
  /// indexed loads per node of a 2D cubic transposed table took 3 forwards against 1.05,
  /// the 8 of a 3D linear one 1.5-1.9 against 1.2-1.35.
  void vjp(Vec x, Vec w, Vec wx) override;
  /// Solves S x = y by GMRES, preconditioned by and started from approximateInverse(y);
  /// exact to the solver tolerance, or an exception.
  void inverse(Vec x0, Vec y, Vec x) override;
  /// The reverse-velocity step (departure points x_i + dt v(x_i + dt/2 v(x_i))), an inverse
  /// up to the interpolation error: ||P^-1 P x - x|| = O(h^2) (linear) or O(h^4) (cubic) per
  /// step for smooth x at a fixed CFL.  When v varies, the reverse backtrack inverts the
  /// forward one up to O(dt^3) at worst (measured O(h^4) for a Taylor-Green vortex).
  void approximateInverse(Vec y, Vec x);

  Interpolation interpolation() const { return kind_; }
  double dt() const { return dt_; }
  /// Largest departure distance, in cells along any axis: the CFL number of the step.
  double cfl() const { return cfl_; }
  /// The ghost width the interpolation stencils need (<= the grid's stencil width).
  PetscInt requiredGhostWidth() const { return required_width_; }
  /// True when every departure point lies at the same displacement from its node (a
  /// constant velocity on a periodic grid, up to the round-off of index coordinates): then
  /// one stencil serves all points and the step runs as a separable stencil sweep.  (The
  /// reverse-velocity step's departure points are checked on their own.)
  bool usesUniformStencil() const { return departure_->isUniform(); }
  PetscInt lastInverseIterations() const;

 private:
  void interpolate(const InterpolationTable& table, Vec x, Vec y);

  Interpolation kind_;
  double dt_, cfl_ = 0.0;
  PetscInt required_width_ = 0;
  CornerGhostExchange exchange_;
  std::unique_ptr<InterpolationTable> departure_, reverse_departure_;
  OwnedVec local_;
  // local_ is all zero, as a per-point vjp leaves it (its next vjp skips the zeroing);
  // any other use of local_ clears this.
  bool local_is_zero_ = false;
  OwnedVec vjp_source_;  // a copy of w for a vjp in place (wx = w) by the transposed table
  std::unique_ptr<detail::KrylovSolver> solver_;
};

/// MacCormack (BFECC-type) correction of the linear semi-Lagrangian step A (departure
/// points as in SemiLagrangianAdvectionStep) with its reverse-velocity step B, limited:
///   x~ = A x,   x^ = B x~,   c = x~ + (x - x^) / 2,
///   y_i = clamp(c_i, lo_i, hi_i),
/// where lo_i / hi_i are the smallest / largest of the 2^d linear-interpolation node values
/// of x at the departure point of A (a node outside a Dirichlet domain counts as 0).
/// Second-order accurate on smooth data; the limiter keeps it free of new extrema.
///
/// Derivative (the limiter makes S piecewise linear, and S(x) = J(x) x):
///   unclamped (lo_i <= c_i <= hi_i):  dy_i = (A dx)_i + (dx_i - (B A dx)_i) / 2;
///   clamped (c_i < lo_i or c_i > hi_i): dy_i = dx_n for the node n attaining the active
///     bound (the first such node in stencil order on ties), or 0 for an exterior node.
/// Boundaries between the pieces (c_i equal to a bound, or ties between node values) are
/// a set of measure zero; there the one-sided derivative above is used (equality counts as
/// unclamped).  jvp / vjp linearise at x, and vjp is the exact transpose of jvp.  The
/// linearisation is cached per Vec: jvp / vjp at the Vec last passed to forward(), unmodified
/// since, reuse its clamping pattern; any other Vec (even with equal values) is linearised
/// afresh.
class MacCormackAdvectionStep final : public Step {
 public:
  MacCormackAdvectionStep(const Grid& grid, const VelocityField& velocity, double dt,
                          AdvectionSolveOptions solve = {});
  ~MacCormackAdvectionStep() override;

  std::string name() const override { return "maccormack-advection"; }
  bool isLinear() const override { return false; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  /// The clamping pattern of the last forward(): the list of clamped entries (8 bytes each)
  /// when at most one entry in 8 was clamped, else 4 bytes per entry.
  std::unique_ptr<LinearisationRecord> recordLinearisation() override;
  void restoreLinearisation(std::shared_ptr<const LinearisationRecord> record, Vec x) override;
  /// Solves S(x) = y by a semismooth Newton method, started from whichever of x0 (the local
  /// inverse around x0 passes through it) and approximateInverse(y) has the smaller
  /// residual.  Each Newton step solves J(x_k) d = S(x_k) - y by GMRES preconditioned with
  /// the reverse linear semi-Lagrangian step; where GMRES fails (the limiter makes J singular
  /// when it clamps two values to the same node) by LSQR on J and J^T (the least-squares
  /// step).  Steps are halved until ||S(x) - y|| decreases.  Converged when
  /// ||S(x) - y|| <= rtol ||y||; otherwise throws, stating why and the residual history.
  /// Where J is singular at the solution, S is not locally injective and the x found is one
  /// of several preimages.
  void inverse(Vec x0, Vec y, Vec x) override;
  /// The reverse-velocity MacCormack step (A and B swapped).
  void approximateInverse(Vec y, Vec x);

  double dt() const { return dt_; }
  double cfl() const { return cfl_; }
  PetscInt requiredGhostWidth() const { return required_width_; }
  /// As SemiLagrangianAdvectionStep::usesUniformStencil (then the limiter reads its bounds
  /// at fixed offsets as well).
  bool usesUniformStencil() const { return departure_->isUniform(); }
  /// Values clamped by the limiter at the last linearisation point (global count;
  /// collective).
  PetscInt clampedAtLinearisation() const;
  /// Newton iterations and total Krylov (GMRES and LSQR) iterations of the last inverse.
  PetscInt lastNewtonIterations() const { return newton_its_; }
  PetscInt lastKrylovIterations() const { return krylov_its_; }

 private:
  // Markers in active_: the limiter left the value alone, or clamped it to the zero outside
  // a Dirichlet domain; otherwise active_ holds the local-array offset of the active node.
  static constexpr PetscInt kUnclamped = -2;
  static constexpr PetscInt kExterior = -1;

  /// y = limited MacCormack with first step `ahead` and back step `back`; records the
  /// clamping pattern in `active` and the entries it clamped, in increasing order, in
  /// `clamped`.
  void apply(const InterpolationTable& ahead, const InterpolationTable& back, Vec x, Vec y,
             std::vector<PetscInt>& active, std::vector<PetscInt>& clamped);
  /// The limiter of apply(): y = the corrected value c = tilde + (x - hat) / 2 clamped to
  /// the bounds of the node values of x (local array xl) at the departure points of
  /// `ahead`, per-point or uniform table; appends the clamped entries to `clamped`.
  void limitPerPoint(const InterpolationTable& ahead, const PetscScalar* x,
                     const PetscScalar* tilde, const PetscScalar* hat, const PetscScalar* xl,
                     PetscScalar* y, std::vector<PetscInt>& active,
                     std::vector<PetscInt>& clamped) const;
  void limitUniform(const InterpolationTable& ahead, const PetscScalar* x, const PetscScalar* tilde,
                    const PetscScalar* hat, const PetscScalar* xl, PetscScalar* y,
                    std::vector<PetscInt>& active, std::vector<PetscInt>& clamped) const;
  void linearise(Vec x);
  void tangent(Vec dx, Vec dy);
  void adjoint(Vec w, Vec wx);
  void adjointUniform(Vec w, Vec wx);
  void reverseLinear(Vec y, Vec x);
  /// out = table applied to `in`, through the ghosted scratch vector `local`.
  void gatherThrough(const InterpolationTable& table, Vec in, Vec local, Vec out);
  /// ||S(x) - y|| with S(x) - y in `residual`; linearises at x.
  double residualNorm(Vec x, Vec y, Vec residual);

  double dt_, cfl_ = 0.0;
  PetscInt required_width_ = 0;
  AdvectionSolveOptions solve_;
  CornerGhostExchange exchange_;
  std::unique_ptr<InterpolationTable> departure_, reverse_departure_;
  OwnedVec local_a_, local_b_, work_a_, work_b_, work_c_;
  std::vector<PetscInt> active_, scratch_active_;
  std::vector<PetscInt> clamped_, scratch_clamped_;  // their clamped entries (see apply)
  std::vector<PetscInt> clamped_entries_;            // adjointUniform: entries clamped to a node
  VecStamp linearised_at_;  // the input of the last forward() (which active_ belongs to)
  bool linearised_ = false;
  VecStamp restored_at_;  // the Vec a restored record belongs to
  bool restored_ = false;
  std::shared_ptr<const LinearisationRecord> restored_record_;
  // The pattern of a sparse restored record: all unclamped but the entries in `patched_`,
  // which hold the record's values (undone entry by entry when the next one is applied).
  std::vector<PetscInt> restored_active_, patched_;
  bool restored_expanded_ = false;
  // Buffers of released records, reused by recordLinearisation() (a fresh buffer per record
  // costs page faults on every forward pass of a recording sweep); shared with the records,
  // which may outlive the step.  Holds at most as many buffers as records were once alive.
  std::shared_ptr<detail::PatternPool> pattern_pool_;
  // The clamping pattern jvp/vjp use: active_ (left by forward) or the restored record's.
  const std::vector<PetscInt>* pattern_ = &active_;
  PetscInt newton_its_ = 0, krylov_its_ = 0;
  std::unique_ptr<detail::KrylovSolver> newton_gmres_, newton_lsqr_;
};

// ---------------------------------------------------------------------------------------
// Factories for drivers.

enum class AdvectionScheme { Upwind, SemiLagrangianLinear, SemiLagrangianCubic, MacCormack };
/// Parses upwind | sl-linear | sl-cubic | maccormack; throws InputError naming `option`.
AdvectionScheme parseAdvectionScheme(const std::string& text, const std::string& option);
const char* toString(AdvectionScheme scheme);

/// One advection step of `scheme`.
std::shared_ptr<Step> makeAdvectionStep(const Grid& grid, AdvectionScheme scheme,
                                        const VelocityField& velocity, double dt,
                                        AdvectionSolveOptions solve = {});

class Simulator;
/// K equal steps of `scheme` from t = 0 to t_end (one step object shared by all K).
std::unique_ptr<Simulator> makeAdvectionSimulator(const Grid& grid, AdvectionScheme scheme,
                                                  const VelocityField& velocity, double t_end,
                                                  PetscInt steps, AdvectionSolveOptions solve = {});

}  // namespace physgrad
