#include "physgrad/physics/advection.hpp"

#include <petscksp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <sstream>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/simulator.hpp"

namespace physgrad {

void AdvectionSolveOptions::validate() const {
  auto fail = [](const std::string& what, double got) {
    std::ostringstream os;
    os << "advection solve options: " << what << " (got " << got << ")";
    throw InputError(os.str());
  };
  if (!(rtol > 0.0 && rtol < 1.0)) fail("rtol must lie in (0, 1)", rtol);
  if (!(atol >= 0.0) || !std::isfinite(atol)) fail("atol must be non-negative and finite", atol);
  if (max_it < 1) fail("max_it must be at least 1", static_cast<double>(max_it));
  if (restart < 1) fail("restart must be at least 1", static_cast<double>(restart));
  if (max_newton < 1) fail("max_newton must be at least 1", static_cast<double>(max_newton));
  if (!(newton_rtol > 0.0 && newton_rtol < 1.0))
    fail("newton_rtol must lie in (0, 1)", newton_rtol);
}

// ---------------------------------------------------------------------------------------
// GMRES on a MatShell of a linear map, right-preconditioned by a PCSHELL.

namespace detail {

/// A Krylov solve with a matrix-free operator: GMRES right-preconditioned by a PCSHELL
/// (the exact inverses), or unpreconditioned LSQR on the operator and its transpose (least
/// squares; the fallback for the singular Jacobians of the MacCormack limiter).
class KrylovSolver {
 public:
  using Apply = std::function<void(Vec, Vec)>;
  /// `what` names the solve in error messages; `prefix` is the KSP's options prefix.
  /// GMRES needs `preconditioner`, LSQR `transpose`.
  KrylovSolver(const Grid& grid, KSPType type, std::string what, std::string prefix,
               AdvectionSolveOptions opts, Apply op, Apply preconditioner, Apply transpose = {})
      : grid_(&grid),
        type_(type),
        what_(std::move(what)),
        prefix_(std::move(prefix)),
        opts_(opts),
        op_(std::move(op)),
        preconditioner_(std::move(preconditioner)),
        transpose_(std::move(transpose)) {}

  /// Solves op(x) = b from the initial guess in x.  Converged means a true residual
  /// ||b - op(x)|| <= max(rtol ||b||, atol); anything else throws.
  void solve(Vec b, Vec x) {
    const Outcome out = attempt(b, x);
    if (!out.converged) throw PetscException(PETSC_ERR_NOT_CONVERGED, describe(out));
  }

  struct Outcome {
    bool converged = false;
    KSPConvergedReason reason = KSP_CONVERGED_ITERATING;
    double bnorm = 0.0, residual = 0.0;  ///< ||b|| and the true ||b - op(x)||
  };
  /// As solve, but reports instead of throwing (NaN and Inf still throw).
  Outcome attempt(Vec b, Vec x) {
    setUp();
    Outcome out;
    PG_CALL(VecNorm(b, NORM_2, &out.bnorm));
    const double target = std::max(opts_.rtol * out.bnorm, opts_.atol);
    its_ = 0;
    OwnedVec r;
    PG_CALL(VecDuplicate(b, r.out()));
    // GMRES monitors a recurrence estimate of the residual; at tolerances near round-off it
    // can drift from the true one, so the true residual decides, with up to two restarts
    // from the current iterate.
    for (int pass = 0; pass < 3; ++pass) {
      PG_CALL(KSPSolve(ksp_, b, x));
      PetscInt its = 0;
      PG_CALL(KSPGetIterationNumber(ksp_, &its));
      its_ += its;
      PG_CALL(KSPGetConvergedReason(ksp_, &out.reason));
      if (out.reason == KSP_DIVERGED_NANORINF) {
        throw NonFiniteError(what_ + " (options prefix -" + prefix_ +
                             "): Inf or NaN in the Krylov iteration");
      }
      op_(x, r);
      PG_CALL(VecAYPX(r, -1.0, b));
      PG_CALL(VecNorm(r, NORM_2, &out.residual));
      if (!std::isfinite(out.residual))
        throw NonFiniteError(what_ + ": the residual is not finite");
      if (out.reason < 0 || out.residual <= 10.0 * target) break;
    }
    out.converged = out.reason > 0 && out.residual <= 10.0 * target;
    return out;
  }

  std::string describe(const Outcome& out) const {
    std::ostringstream os;
    os.precision(3);
    os << what_ << " did not converge: " << type_ << " stopped with "
       << (out.reason < 0 ? KSPConvergedReasons[out.reason] : "a true residual above the tolerance")
       << " after " << its_ << " iterations, ||b - A x|| / ||b|| = "
       << (out.bnorm > 0.0 ? out.residual / out.bnorm : out.residual) << " (rtol " << opts_.rtol
       << ", options prefix -" << prefix_ << ")";
    return os.str();
  }

  PetscInt lastIterations() const { return its_; }

 private:
  void setUp() {
    if (ksp_) return;
    const PetscInt nlocal = grid_->owned().count() * grid_->dof();
    const PetscInt nglobal = grid_->size() * grid_->dof();
    PG_CALL(MatCreateShell(grid_->comm(), nlocal, nlocal, nglobal, nglobal, this, shell_.out()));
    PG_CALL(MatShellSetOperation(shell_, MATOP_MULT, reinterpret_cast<void (*)(void)>(mult)));
    if (transpose_) {
      PG_CALL(MatShellSetOperation(shell_, MATOP_MULT_TRANSPOSE,
                                   reinterpret_cast<void (*)(void)>(multTranspose)));
    }
    PG_CALL(KSPCreate(grid_->comm(), ksp_.out()));
    PG_CALL(KSPSetOptionsPrefix(ksp_, prefix_.c_str()));
    PG_CALL(KSPSetOperators(ksp_, shell_, shell_));
    PG_CALL(KSPSetType(ksp_, type_));
    PC pc = nullptr;
    PG_CALL(KSPGetPC(ksp_, &pc));
    if (std::string(type_) == KSPGMRES) {
      PG_CALL(KSPGMRESSetRestart(ksp_, opts_.restart));
      // Classical Gram-Schmidt loses orthogonality near round-off tolerances unless refined.
      PG_CALL(KSPGMRESSetCGSRefinementType(ksp_, KSP_GMRES_CGS_REFINE_IFNEEDED));
      PG_CALL(KSPSetPCSide(ksp_, PC_RIGHT));
      PG_CALL(KSPSetNormType(ksp_, KSP_NORM_UNPRECONDITIONED));
      PG_CALL(PCSetType(pc, PCSHELL));
      PG_CALL(PCShellSetContext(pc, this));
      PG_CALL(PCShellSetApply(pc, precondition));
      PG_CALL(PCShellSetName(pc, "approximate inverse (reverse velocity)"));
    } else {
      PG_CALL(PCSetType(pc, PCNONE));
    }
    PG_CALL(KSPSetTolerances(ksp_, opts_.rtol, opts_.atol, PETSC_DEFAULT, opts_.max_it));
    PG_CALL(KSPSetInitialGuessNonzero(ksp_, PETSC_TRUE));
    PG_CALL(KSPSetFromOptions(ksp_));
    PG_CALL(KSPSetUp(ksp_));
  }

  static KrylovSolver* self(Mat A) {
    void* ctx = nullptr;
    PG_CALL(MatShellGetContext(A, &ctx));
    return static_cast<KrylovSolver*>(ctx);
  }

  static PetscErrorCode mult(Mat A, Vec x, Vec y) {
    PG_CALLBACK_BEGIN
    self(A)->op_(x, y);
    PG_CALLBACK_END("advection KrylovSolver operator")
  }

  static PetscErrorCode multTranspose(Mat A, Vec x, Vec y) {
    PG_CALLBACK_BEGIN
    self(A)->transpose_(x, y);
    PG_CALLBACK_END("advection KrylovSolver transposed operator")
  }

  static PetscErrorCode precondition(PC pc, Vec x, Vec y) {
    PG_CALLBACK_BEGIN
    void* ctx = nullptr;
    PG_CALL(PCShellGetContext(pc, &ctx));
    static_cast<KrylovSolver*>(ctx)->preconditioner_(x, y);
    PG_CALLBACK_END("advection KrylovSolver preconditioner")
  }

  const Grid* grid_;
  KSPType type_;
  std::string what_, prefix_;
  AdvectionSolveOptions opts_;
  Apply op_, preconditioner_, transpose_;
  OwnedMat shell_;
  OwnedKSP ksp_;
  PetscInt its_ = 0;
};

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Shared set-up: time step and velocity checks, departure points.

namespace {

constexpr PetscInt kNoPoint = std::numeric_limits<PetscInt>::max();

double checkedTimeStep(const std::string& scheme, double dt) {
  if (!(dt > 0.0) || !std::isfinite(dt)) {
    std::ostringstream os;
    os << scheme << ": the time step dt must be positive and finite (got dt = " << dt << ")";
    throw InputError(os.str());
  }
  return dt;
}

/// Physical position of grid node (i, j, k); unused coordinates are 0.
void nodePosition(const Grid& grid, PetscInt i, PetscInt j, PetscInt k, double pos[3]) {
  const PetscInt idx[3] = {i, j, k};
  for (int a = 0; a < 3; ++a) pos[a] = a < grid.dim() ? grid.coordinate(a, idx[a]) : 0.0;
}

/// v(pos) with the components of unused axes zeroed; false if a used one is not finite.
bool velocityAt(const Grid& grid, const VelocityField& velocity, const double pos[3], double v[3]) {
  velocity.at(pos, v);
  bool finite = true;
  for (int a = 0; a < 3; ++a) {
    if (a >= grid.dim()) {
      v[a] = 0.0;
    } else if (!std::isfinite(v[a])) {
      finite = false;
    }
  }
  return finite;
}

/// Collective: throws the same InputError on every rank if some rank met a non-finite
/// velocity; `local_first_bad` is this rank's smallest natural index of such a node.
void throwIfNonFiniteVelocity(const Grid& grid, const VelocityField& velocity,
                              const std::string& scheme, PetscInt local_first_bad) {
  PetscInt first = kNoPoint;
  MPI_Allreduce(&local_first_bad, &first, 1, MPIU_INT, MPI_MIN, grid.comm());
  if (first == kNoPoint) return;
  const PetscInt i = first % grid.n(0), j = (first / grid.n(0)) % grid.n(1),
                 k = first / (grid.n(0) * grid.n(1));
  double pos[3];
  nodePosition(grid, i, j, k, pos);
  std::ostringstream os;
  os << scheme << ": the velocity field '" << velocity.name()
     << "' is not finite at or along the backtrack from the node (" << pos[0] << ", " << pos[1]
     << ", " << pos[2] << ") (index " << i << ", " << j << ", " << k << ")";
  throw InputError(os.str());
}

/// Departure points of every owned node (dim index coordinates each, forEachOwned order) by
/// the midpoint rule X = x - s dt v(x - s dt/2 v(x)), s = +1 (forward) or -1 (reverse).
struct Departures {
  std::vector<double> points;
  double max_cells = 0.0;         ///< largest |X_d - x_d| / h_d on this rank
  PetscInt first_bad = kNoPoint;  ///< natural index of the first node with a non-finite v
  /// Per axis, the smallest and largest displacement X_d - x_d in cells (finite nodes).
  std::array<double, 3> min_shift{{HUGE_VAL, HUGE_VAL, HUGE_VAL}},
      max_shift{{-HUGE_VAL, -HUGE_VAL, -HUGE_VAL}};
};

Departures computeDepartures(const Grid& grid, const LocalArrayLayout& layout,
                             const VelocityField& velocity, double dt, double sign) {
  Departures out;
  const int dim = grid.dim();
  out.points.resize(static_cast<size_t>(grid.owned().count() * dim));
  const bool periodic = grid.boundary() == Boundary::Periodic;
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    const PetscInt idx[3] = {i, j, k};
    double pos[3], v[3], mid[3];
    nodePosition(grid, i, j, k, pos);
    bool finite = velocityAt(grid, velocity, pos, v);
    for (int a = 0; a < 3; ++a) {
      mid[a] = pos[a] - 0.5 * sign * dt * v[a];
      if (periodic && a < dim) {
        const double length = grid.spec().length[a];
        mid[a] -= length * std::floor(mid[a] / length);
      }
    }
    finite = velocityAt(grid, velocity, mid, v) && finite;
    for (int a = 0; a < dim; ++a) {
      const double q = layout.indexCoordinate(a, pos[a] - sign * dt * v[a]);
      out.points[static_cast<size_t>(o * dim + a)] = q;
      if (finite) {
        const double shift = q - static_cast<double>(idx[a]);
        out.max_cells = std::max(out.max_cells, std::abs(shift));
        out.min_shift[a] = std::min(out.min_shift[a], shift);
        out.max_shift[a] = std::max(out.max_shift[a], shift);
      }
    }
    if (!finite) out.first_bad = std::min(out.first_bad, grid.naturalIndex(i, j, k));
  });
  return out;
}

/// The interpolation table of departure points (collective).  Where they all lie at the
/// same displacement from their nodes, up to the round-off of index coordinates (a constant
/// velocity), on a periodic grid, a uniform table with the midrange displacement: one
/// stencil for all points, applied at stencil speed.  Otherwise one stencil per point.
std::unique_ptr<InterpolationTable> departureTable(const Grid& grid, const LocalArrayLayout& layout,
                                                   Interpolation kind, const Departures& d) {
  // -min and max per axis, reduced together (a rank without points contributes -inf).
  double bounds[6];
  for (int a = 0; a < 3; ++a) {
    bounds[a] = -d.min_shift[a];
    bounds[3 + a] = d.max_shift[a];
  }
  MPI_Allreduce(MPI_IN_PLACE, bounds, 6, MPI_DOUBLE, MPI_MAX, grid.comm());
  // q = x / h - shift carries a few ulps of the largest index coordinate.
  PetscInt largest = 1;
  for (int a = 0; a < grid.dim(); ++a) largest = std::max(largest, grid.n(a));
  const double tolerance = 16.0 * std::numeric_limits<double>::epsilon() * largest;
  bool uniform = grid.boundary() == Boundary::Periodic;
  std::array<double, 3> displacement{{0.0, 0.0, 0.0}};
  for (int a = 0; a < grid.dim(); ++a) {
    const double lo = -bounds[a], hi = bounds[3 + a];
    uniform = uniform && std::isfinite(lo) && std::isfinite(hi) && hi - lo <= tolerance;
    displacement[a] = 0.5 * (lo + hi);
  }
  if (uniform) return InterpolationTable::uniform(layout, kind, displacement);
  return std::make_unique<InterpolationTable>(layout, kind, d.points);
}

/// Interpolation tables at the forward and the reverse departure points, checked
/// collectively: finite velocity, and stencils within the grid's ghost layers.
struct DepartureTables {
  std::unique_ptr<InterpolationTable> ahead, back;
  double cfl = 0.0;
  PetscInt required_width = 0;
};

DepartureTables buildDepartureTables(const Grid& grid, const VelocityField& velocity, double dt,
                                     Interpolation kind, const std::string& scheme) {
  const LocalArrayLayout layout(grid);
  Departures ahead = computeDepartures(grid, layout, velocity, dt, 1.0);
  Departures back = computeDepartures(grid, layout, velocity, dt, -1.0);
  throwIfNonFiniteVelocity(grid, velocity, scheme, std::min(ahead.first_bad, back.first_bad));

  DepartureTables t;
  t.ahead = departureTable(grid, layout, kind, ahead);
  t.back = departureTable(grid, layout, kind, back);
  // Reach and CFL as doubles in one reduction (reaches are far below 2^53).
  double local[2] = {static_cast<double>(std::max(t.ahead->reach(), t.back->reach())),
                     std::max(ahead.max_cells, back.max_cells)};
  double global[2] = {0.0, 0.0};
  MPI_Allreduce(local, global, 2, MPI_DOUBLE, MPI_MAX, grid.comm());
  t.required_width = static_cast<PetscInt>(global[0]);
  t.cfl = global[1];
  const PetscInt width = grid.spec().stencil_width;
  if (global[0] > static_cast<double>(width)) {
    std::ostringstream os;
    os.precision(4);
    os << scheme << ": CFL = " << t.cfl << " (the largest departure distance in cells, dt = " << dt
       << ") needs interpolation stencils reaching " << global[0]
       << " ghost layers, but the grid's ghost width is GridSpec::stencil_width = " << width
       << "; build the grid with stencil_width >= " << global[0] << " or reduce dt";
    throw InputError(os.str());
  }
  return t;
}

/// out = the uniform table's sweep of `in` (its transpose if `transposed`), reading owned
/// values from `in` itself and only the ghosts, copied into `ghosts` (a local Vec).  With
/// `combined` (transposed sweeps only), out = scale * (the sweep) + addend_scale * addend
/// instead, combined as the sweep goes (no pass of its own); addend must not be out.
struct SweepCombination {
  double scale, addend_scale;
  Vec addend;
};
void uniformSweep(const CornerGhostExchange& exchange, const InterpolationTable& table,
                  bool transposed, Vec in, Vec ghosts, Vec out,
                  const SweepCombination* combined = nullptr) {
  if (combined && !transposed)
    throw std::logic_error("uniformSweep: a combined sweep must be a transposed one");
  exchange.ghostsToLocal(in, ghosts);
  const PetscScalar *ia = nullptr, *gl = nullptr, *aa = nullptr;
  PetscScalar* oa = nullptr;
  PG_CALL(VecGetArrayRead(in, &ia));
  PG_CALL(VecGetArrayRead(ghosts, &gl));
  if (combined) PG_CALL(VecGetArrayRead(combined->addend, &aa));
  PG_CALL(VecGetArray(out, &oa));
  if (combined) {
    InterpolationTable::Combination c;
    c.scale = combined->scale;
    c.addend_scale = combined->addend_scale;
    c.addend = aa;
    table.transposeGatherSplit(ia, gl, oa, &c);
  } else if (transposed) {
    table.transposeGatherSplit(ia, gl, oa);
  } else {
    table.gatherSplit(ia, gl, oa);
  }
  PG_CALL(VecRestoreArray(out, &oa));
  if (combined) PG_CALL(VecRestoreArrayRead(combined->addend, &aa));
  PG_CALL(VecRestoreArrayRead(ghosts, &gl));
  PG_CALL(VecRestoreArrayRead(in, &ia));
}

/// The entry of the global (owned) array holding local-array entry `local`, or -1 when that
/// entry is a ghost.
PetscInt ownedEntry(const LocalArrayLayout& layout, PetscInt local) {
  PetscInt rest = local, owned = 0;
  for (int a = 2; a >= 0; --a) {
    const PetscInt stride = layout.stride(a);
    const PetscInt i = rest / stride + layout.ghostStart(a) - layout.ownedStart(a);
    rest %= stride;
    if (i < 0 || i >= layout.ownedSize(a)) return -1;
    owned = owned * layout.ownedSize(a) + i;
  }
  return owned * layout.dof() + rest;
}

/// u = w on the entries the limiter left unclamped, 0 elsewhere; `to_node` lists the entries
/// clamped to a node (those with active >= 0; few on resolved fields), all in one pass.
void maskUnclamped(const std::vector<PetscInt>& active, const PetscScalar* w, PetscScalar* u,
                   std::vector<PetscInt>& to_node, PetscInt unclamped_tag) {
  to_node.clear();
  const PetscInt entries = static_cast<PetscInt>(active.size());
  PetscInt e = 0;
#if defined(__AVX512F__)
  static_assert(sizeof(PetscInt) == 4, "the pattern is read as 32-bit integers");
  const __m512i unclamped = _mm512_set1_epi32(unclamped_tag), zero = _mm512_setzero_si512();
  for (; e + 16 <= entries; e += 16) {
    const __m512i a = _mm512_loadu_si512(active.data() + e);
    const __mmask16 keep = _mm512_cmpeq_epi32_mask(a, unclamped);
    _mm512_storeu_pd(u + e,
                     _mm512_maskz_mov_pd(static_cast<__mmask8>(keep), _mm512_loadu_pd(w + e)));
    _mm512_storeu_pd(u + e + 8, _mm512_maskz_mov_pd(static_cast<__mmask8>(keep >> 8),
                                                    _mm512_loadu_pd(w + e + 8)));
    for (unsigned c = _mm512_cmpge_epi32_mask(a, zero); c != 0; c &= c - 1)
      to_node.push_back(e + __builtin_ctz(c));
  }
#endif
  for (; e < entries; ++e) {
    u[e] = active[e] == unclamped_tag ? w[e] : 0.0;
    if (active[e] >= 0) to_node.push_back(e);
  }
}

/// The global count of entries of `active` other than `unclamped` (collective).
PetscInt countClamped(const Grid& grid, const std::vector<PetscInt>& active, PetscInt unclamped) {
  PetscInt local = 0, global = 0;
  for (PetscInt a : active) local += a != unclamped ? 1 : 0;
  MPI_Allreduce(&local, &global, 1, MPIU_INT, MPI_SUM, grid.comm());
  return global;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Upwind.

UpwindAdvectionStep::UpwindAdvectionStep(const Grid& grid, const VelocityField& velocity, double dt,
                                         AdvectionSolveOptions solve)
    : Step(grid),
      dt_(checkedTimeStep("upwind advection", dt)),
      dof_(grid.dof()),
      local_(grid.createLocal()) {
  solve.validate();
  velocity.checkGrid(grid);
  PetscInt first_bad = kNoPoint;
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt) {
    double pos[3], v[3];
    nodePosition(grid, i, j, k, pos);
    if (!velocityAt(grid, velocity, pos, v)) {
      first_bad = std::min(first_bad, grid.naturalIndex(i, j, k));
    }
  });
  throwIfNonFiniteVelocity(grid, velocity, "upwind advection", first_bad);
  cfl_ = advectiveCfl(grid, velocity, dt_);
  // A few ulps of slack, so that a dt computed as exactly the limit passes.
  if (cfl_ > 1.0 + 1e-12) {
    std::ostringstream os;
    os.precision(6);
    const double max_speed = maxSpeed(grid, velocity);
    os << "upwind advection is unstable: CFL = max|v| dt sum_d 1/h_d = " << cfl_
       << " exceeds the limit 1 (max|v| = " << max_speed << ", dt = " << dt_
       << "); use dt <= " << dt_ / cfl_ << ", more steps, or the semi-Lagrangian step";
    throw InputError(os.str());
  }
  if (const auto courant = uniformCourant(velocity)) {
    uniform_forward_.emplace(uniformStencil(*courant));
    uniform_adjoint_.emplace(uniform_forward_->transposed());
    std::array<double, 3> back = *courant;
    for (double& c : back) c = -c;
    uniform_reverse_.emplace(uniformStencil(back));
  } else {
    build(velocity, 1.0, downwind_);
    build(velocity, -1.0, reverse_);
  }
  solver_ = std::make_unique<detail::KrylovSolver>(
      grid, KSPGMRES, "inverse of the upwind advection step", "advection_upwind_inv_", solve,
      [this](Vec a, Vec b) { forward(a, b); }, [this](Vec a, Vec b) { approximateInverse(a, b); });
}

UpwindAdvectionStep::~UpwindAdvectionStep() = default;

void UpwindAdvectionStep::build(const VelocityField& velocity, double sign, Coefficients& c) const {
  const Grid& g = grid();
  const LocalArrayLayout layout(g);
  const int dim = g.dim();
  const PetscInt count = g.owned().count();
  c.center.assign(static_cast<size_t>(count), 0.0);
  c.side.assign(static_cast<size_t>(count * dim), 0.0);
  c.neighbour.assign(static_cast<size_t>(count * (dim + 1)), 0);
  forEachOwned(g, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    double pos[3], v[3];
    nodePosition(g, i, j, k, pos);
    velocityAt(g, velocity, pos, v);  // non-finite values are reported by the constructor
    PetscInt idx[3] = {i, j, k};
    const PetscInt home = layout.arrayOffset(i, j, k);
    c.neighbour[static_cast<size_t>(o * (dim + 1))] = home;
    double center = 1.0;
    for (int a = 0; a < dim; ++a) {
      const double courant = sign * dt_ * v[a] / g.h(a);
      const PetscInt step = courant > 0.0 ? -1 : 1;  // the upwind side
      idx[a] += step;
      const bool inside = layout.insideDomain(a, idx[a]);
      // A neighbour outside a Dirichlet domain holds 0: its coefficient drops out, and the
      // offset points home so that the transpose never writes into a boundary ghost.
      c.side[static_cast<size_t>(o * dim + a)] = inside ? std::abs(courant) : 0.0;
      c.neighbour[static_cast<size_t>(o * (dim + 1) + 1 + a)] =
          inside ? layout.arrayOffset(idx[0], idx[1], idx[2]) : home;
      idx[a] -= step;
      center -= std::abs(courant);
    }
    c.center[static_cast<size_t>(o)] = center;
  });
}

std::optional<std::array<double, 3>> UpwindAdvectionStep::uniformCourant(
    const VelocityField& velocity) const {
  const Grid& g = grid();
  // lo = -min over points, hi = max, reduced together.
  double bounds[6] = {-1e300, -1e300, -1e300, -1e300, -1e300, -1e300};
  forEachOwned(g, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt) {
    double pos[3], v[3] = {0.0, 0.0, 0.0};
    nodePosition(g, i, j, k, pos);
    velocityAt(g, velocity, pos, v);
    for (int a = 0; a < g.dim(); ++a) {
      const double courant = dt_ * v[a] / g.h(a);
      bounds[a] = std::max(bounds[a], -courant);
      bounds[3 + a] = std::max(bounds[3 + a], courant);
    }
  });
  MPI_Allreduce(MPI_IN_PLACE, bounds, 6, MPI_DOUBLE, MPI_MAX, g.comm());
  std::array<double, 3> courant = {0.0, 0.0, 0.0};
  for (int a = 0; a < g.dim(); ++a) {
    if (-bounds[a] != bounds[3 + a]) return std::nullopt;
    courant[a] = bounds[3 + a];
  }
  return courant;
}

StarStencil UpwindAdvectionStep::uniformStencil(const std::array<double, 3>& courant) const {
  // Row for row what build() tabulates: the upwind neighbour is at -e_d for a positive
  // Courant number, at +e_d otherwise (with coefficient 0 when it is 0).
  std::array<double, 3> minus = {0.0, 0.0, 0.0}, plus = {0.0, 0.0, 0.0};
  double center = 1.0;
  for (int a = 0; a < grid().dim(); ++a) {
    (courant[a] > 0.0 ? minus : plus)[a] = std::abs(courant[a]);
    center -= std::abs(courant[a]);
  }
  return StarStencil(grid(), center, minus, plus);
}

void UpwindAdvectionStep::apply(const Coefficients& c, Vec x, Vec y) {
  if (uniform_forward_) {
    (&c == &downwind_ ? *uniform_forward_ : *uniform_reverse_).apply(x, y);
    return;
  }
  grid().globalToLocal(x, local_);
  const int dim = grid().dim();
  const PetscInt count = grid().owned().count();
  const PetscScalar* xl = nullptr;
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArrayRead(local_, &xl));
  PG_CALL(VecGetArray(y, &ya));
  for (PetscInt p = 0; p < count; ++p) {
    const PetscInt* nb = &c.neighbour[static_cast<size_t>(p * (dim + 1))];
    const double* side = &c.side[static_cast<size_t>(p * dim)];
    for (PetscInt comp = 0; comp < dof_; ++comp) {
      double v = c.center[static_cast<size_t>(p)] * xl[nb[0] + comp];
      for (int a = 0; a < dim; ++a) v += side[a] * xl[nb[1 + a] + comp];
      ya[p * dof_ + comp] = v;
    }
  }
  PG_CALL(VecRestoreArray(y, &ya));
  PG_CALL(VecRestoreArrayRead(local_, &xl));
}

void UpwindAdvectionStep::forward(Vec x, Vec y) { apply(downwind_, x, y); }

void UpwindAdvectionStep::jvp(Vec, Vec dx, Vec dy) { apply(downwind_, dx, dy); }

void UpwindAdvectionStep::vjp(Vec, Vec w, Vec wx) {
  if (uniform_adjoint_) {
    uniform_adjoint_->apply(w, wx);
    return;
  }
  const int dim = grid().dim();
  const PetscInt count = grid().owned().count();
  PG_CALL(VecSet(local_, 0.0));
  const PetscScalar* wa = nullptr;
  PetscScalar* zl = nullptr;
  PG_CALL(VecGetArrayRead(w, &wa));
  PG_CALL(VecGetArray(local_, &zl));
  for (PetscInt p = 0; p < count; ++p) {
    const PetscInt* nb = &downwind_.neighbour[static_cast<size_t>(p * (dim + 1))];
    const double* side = &downwind_.side[static_cast<size_t>(p * dim)];
    for (PetscInt comp = 0; comp < dof_; ++comp) {
      const double value = wa[p * dof_ + comp];
      zl[nb[0] + comp] += downwind_.center[static_cast<size_t>(p)] * value;
      for (int a = 0; a < dim; ++a) zl[nb[1 + a] + comp] += side[a] * value;
    }
  }
  PG_CALL(VecRestoreArray(local_, &zl));
  PG_CALL(VecRestoreArrayRead(w, &wa));
  // Upwind neighbours are star neighbours, which the grid's own exchange covers.
  PG_CALL(VecSet(wx, 0.0));
  PG_CALL(DMLocalToGlobalBegin(grid().dm(), local_, ADD_VALUES, wx));
  PG_CALL(DMLocalToGlobalEnd(grid().dm(), local_, ADD_VALUES, wx));
}

void UpwindAdvectionStep::approximateInverse(Vec y, Vec x) { apply(reverse_, y, x); }

void UpwindAdvectionStep::inverse(Vec, Vec y, Vec x) {
  approximateInverse(y, x);
  solver_->solve(y, x);
}

PetscInt UpwindAdvectionStep::lastInverseIterations() const { return solver_->lastIterations(); }

// ---------------------------------------------------------------------------------------
// Semi-Lagrangian.

SemiLagrangianAdvectionStep::SemiLagrangianAdvectionStep(const Grid& grid,
                                                         const VelocityField& velocity, double dt,
                                                         Interpolation kind,
                                                         AdvectionSolveOptions solve)
    : Step(grid),
      kind_(kind),
      dt_(checkedTimeStep("semi-Lagrangian advection", dt)),
      exchange_(grid),
      local_(exchange_.createLocal()) {
  solve.validate();
  velocity.checkGrid(grid);
  DepartureTables tables = buildDepartureTables(grid, velocity, dt_, kind, name());
  departure_ = std::move(tables.ahead);
  reverse_departure_ = std::move(tables.back);
  cfl_ = tables.cfl;
  required_width_ = tables.required_width;
  if (!departure_->isUniform() && kind_ == Interpolation::Linear && grid.dim() <= 2)
    departure_->buildNodeTranspose();
  // One component only; a no-op without AVX-512.  Cubic windows measured slower than the
  // point-by-point scatter (64^3 vortex, one rank: sweep 1.16-1.49 against 1.07-1.26
  // forwards), so only linear steps use them.
  if (!departure_->isUniform() && kind_ == Interpolation::Linear && grid.dim() == 3)
    departure_->buildRowWindows();
  solver_ = std::make_unique<detail::KrylovSolver>(
      grid, KSPGMRES, "inverse of the " + name() + " step", "advection_sl_inv_", solve,
      [this](Vec a, Vec b) { forward(a, b); }, [this](Vec a, Vec b) { approximateInverse(a, b); });
}

SemiLagrangianAdvectionStep::~SemiLagrangianAdvectionStep() = default;

std::string SemiLagrangianAdvectionStep::name() const {
  return std::string("semi-lagrangian-") + toString(kind_) + "-advection";
}

void SemiLagrangianAdvectionStep::interpolate(const InterpolationTable& table, Vec x, Vec y) {
  local_is_zero_ = false;
  if (table.isUniform()) {
    // Owned values straight from x, only the ghosts copied: no copy of the whole field.
    uniformSweep(exchange_, table, false, x, local_, y);
    return;
  }
  exchange_.globalToLocal(x, local_);
  const PetscScalar* xl = nullptr;
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArrayRead(local_, &xl));
  PG_CALL(VecGetArray(y, &ya));
  table.gather(xl, ya);
  PG_CALL(VecRestoreArray(y, &ya));
  PG_CALL(VecRestoreArrayRead(local_, &xl));
}

void SemiLagrangianAdvectionStep::forward(Vec x, Vec y) { interpolate(*departure_, x, y); }

void SemiLagrangianAdvectionStep::jvp(Vec, Vec dx, Vec dy) { interpolate(*departure_, dx, dy); }

void SemiLagrangianAdvectionStep::vjp(Vec, Vec w, Vec wx) {
  const bool zeroed = local_is_zero_;
  local_is_zero_ = false;
  if (departure_->isUniform()) {
    // The mirrored stencil gathered from w and its ghosts: no scatter, no ghost sum.
    uniformSweep(exchange_, *departure_, true, w, local_, wx);
    return;
  }
  const LocalArrayLayout& layout = departure_->layout();
  if (departure_->hasNodeTranspose()) {
    // wx by nodes, straight from w; the terms on ghost entries go into local_ (its owned
    // entries are not touched) and then to their owners.
    Vec source = w;
    if (w == wx) {
      if (!vjp_source_) vjp_source_ = grid().createGlobal();
      PG_CALL(VecCopy(w, vjp_source_));
      source = vjp_source_;
    }
    const PetscScalar* wa = nullptr;
    PetscScalar *zl = nullptr, *wxa = nullptr;
    PG_CALL(VecGetArrayRead(source, &wa));
    PG_CALL(VecGetArray(local_, &zl));
    PG_CALL(VecGetArray(wx, &wxa));
    if (!zeroed) zeroGhostEntries(layout, zl);
    departure_->transposeByNodes(wa, wxa, zl);
    PG_CALL(VecRestoreArray(wx, &wxa));
    PG_CALL(VecRestoreArray(local_, &zl));
    PG_CALL(VecRestoreArrayRead(source, &wa));
    exchange_.addGhostsToGlobal(local_, wx);
    PG_CALL(VecGetArray(local_, &zl));
    zeroGhostEntries(layout, zl);
    PG_CALL(VecRestoreArray(local_, &zl));
    local_is_zero_ = zeroed;  // all zero again iff the owned entries were
    return;
  }
  // The scatter-add into local_, whose owned lines are written into wx right behind the
  // sweep (SweepAccumulator; a line is done once the sweep is a ghost width past it, and
  // every stencil keeps within the ghost width); then only the ghost entries are summed
  // into their owners.  local_ is left zero for the next vjp.  Lines of wx are written
  // only behind the lines of w being read, so wx may be w.
  const PetscScalar* wa = nullptr;
  PetscScalar *zl = nullptr, *wxa = nullptr;
  PG_CALL(VecGetArrayRead(w, &wa));
  PG_CALL(VecGetArray(local_, &zl));
  PG_CALL(VecGetArray(wx, &wxa));
  SweepAccumulator sum(layout, grid().spec().stencil_width, zl, wxa, zeroed,
                       SweepAccumulator::Into::Assign);
  departure_->scatterAddSweep(wa, zl, sum);
  PG_CALL(VecRestoreArray(wx, &wxa));
  PG_CALL(VecRestoreArray(local_, &zl));
  PG_CALL(VecRestoreArrayRead(w, &wa));
  exchange_.addGhostsToGlobal(local_, wx);
  PG_CALL(VecGetArray(local_, &zl));
  zeroGhostEntries(layout, zl);
  PG_CALL(VecRestoreArray(local_, &zl));
  local_is_zero_ = true;
}

void SemiLagrangianAdvectionStep::approximateInverse(Vec y, Vec x) {
  interpolate(*reverse_departure_, y, x);
}

void SemiLagrangianAdvectionStep::inverse(Vec, Vec y, Vec x) {
  approximateInverse(y, x);
  solver_->solve(y, x);
}

PetscInt SemiLagrangianAdvectionStep::lastInverseIterations() const {
  return solver_->lastIterations();
}

// ---------------------------------------------------------------------------------------
// MacCormack.

MacCormackAdvectionStep::MacCormackAdvectionStep(const Grid& grid, const VelocityField& velocity,
                                                 double dt, AdvectionSolveOptions solve)
    : Step(grid),
      dt_(checkedTimeStep("MacCormack advection", dt)),
      solve_(solve),
      exchange_(grid),
      local_a_(exchange_.createLocal()),
      local_b_(exchange_.createLocal()),
      work_a_(grid.createGlobal()),
      work_b_(grid.createGlobal()),
      work_c_(grid.createGlobal()),
      pattern_pool_(std::make_shared<detail::PatternPool>()) {
  solve_.validate();
  velocity.checkGrid(grid);
  DepartureTables tables =
      buildDepartureTables(grid, velocity, dt_, Interpolation::Linear, "MacCormack advection");
  departure_ = std::move(tables.ahead);
  reverse_departure_ = std::move(tables.back);
  cfl_ = tables.cfl;
  required_width_ = tables.required_width;
  const size_t entries = static_cast<size_t>(grid.owned().count() * grid.dof());
  active_.assign(entries, kUnclamped);
  scratch_active_.assign(entries, kUnclamped);
  AdvectionSolveOptions newton = solve_;
  newton.rtol = solve_.newton_rtol;
  newton_gmres_ = std::make_unique<detail::KrylovSolver>(
      grid, KSPGMRES, "GMRES Newton step of the MacCormack inverse", "advection_maccormack_newton_",
      newton, [this](Vec a, Vec b) { tangent(a, b); },
      [this](Vec a, Vec b) { reverseLinear(a, b); });
  newton_lsqr_ = std::make_unique<detail::KrylovSolver>(
      grid, KSPLSQR, "LSQR Newton step of the MacCormack inverse", "advection_maccormack_lsqr_",
      newton, [this](Vec a, Vec b) { tangent(a, b); }, detail::KrylovSolver::Apply{},
      [this](Vec a, Vec b) { adjoint(a, b); });
}

MacCormackAdvectionStep::~MacCormackAdvectionStep() = default;

void MacCormackAdvectionStep::apply(const InterpolationTable& ahead, const InterpolationTable& back,
                                    Vec x, Vec y, std::vector<PetscInt>& active,
                                    std::vector<PetscInt>& clamped) {
  clamped.clear();
  // With a constant velocity every kernel reads the owned values of x from x itself and only
  // the ghosts from local_a_; otherwise the per-point tables read the full local copy.
  const bool uniform = ahead.isUniform() && back.isUniform();
  if (uniform)
    exchange_.ghostsToLocal(x, local_a_);
  else
    exchange_.globalToLocal(x, local_a_);
  const PetscScalar *xl = nullptr, *xa = nullptr;
  PetscScalar* tilde = nullptr;
  PG_CALL(VecGetArrayRead(local_a_, &xl));
  PG_CALL(VecGetArrayRead(x, &xa));
  PG_CALL(VecGetArray(work_a_, &tilde));
  if (uniform)
    ahead.gatherSplit(xa, xl, tilde);
  else
    ahead.gather(xl, tilde);
  PG_CALL(VecRestoreArray(work_a_, &tilde));
  if (uniform)
    uniformSweep(exchange_, back, false, work_a_, local_b_, work_b_);
  else
    gatherThrough(back, work_a_, local_b_, work_b_);

  const PetscScalar *ta = nullptr, *ha = nullptr;
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArrayRead(work_a_, &ta));
  PG_CALL(VecGetArrayRead(work_b_, &ha));
  PG_CALL(VecGetArray(y, &ya));
  if (ahead.isUniform()) {  // reads owned values from xa: right with either exchange
    limitUniform(ahead, xa, ta, ha, xl, ya, active, clamped);
  } else {
    limitPerPoint(ahead, xa, ta, ha, xl, ya, active, clamped);
  }
  PG_CALL(VecRestoreArray(y, &ya));
  PG_CALL(VecRestoreArrayRead(work_b_, &ha));
  PG_CALL(VecRestoreArrayRead(work_a_, &ta));
  PG_CALL(VecRestoreArrayRead(x, &xa));
  PG_CALL(VecRestoreArrayRead(local_a_, &xl));
}

void MacCormackAdvectionStep::limitPerPoint(const InterpolationTable& ahead, const PetscScalar* xa,
                                            const PetscScalar* ta, const PetscScalar* ha,
                                            const PetscScalar* xl, PetscScalar* ya,
                                            std::vector<PetscInt>& active,
                                            std::vector<PetscInt>& clamped) const {
  const PetscInt dof = grid().dof();
  withStencilShape(grid().dim(), Interpolation::Linear, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    for (PetscInt p = 0; p < ahead.size(); ++p) {
      const PetscInt* off = ahead.offsets(p);
      const std::uint8_t* in = ahead.inside(p);
      for (PetscInt c = 0; c < dof; ++c) {
        const PetscInt e = p * dof + c;
        const double corrected = ta[e] + 0.5 * (xa[e] - ha[e]);
        const NodeRange r = nodeRangeAt<D, N>(off, in, xl + c);
        if (corrected < r.lo) {
          ya[e] = r.lo;
          active[static_cast<size_t>(e)] = r.lo_offset < 0 ? kExterior : r.lo_offset + c;
          clamped.push_back(e);
        } else if (corrected > r.hi) {
          ya[e] = r.hi;
          active[static_cast<size_t>(e)] = r.hi_offset < 0 ? kExterior : r.hi_offset + c;
          clamped.push_back(e);
        } else {
          ya[e] = corrected;
          active[static_cast<size_t>(e)] = kUnclamped;
        }
      }
    }
  });
}

void MacCormackAdvectionStep::limitUniform(const InterpolationTable& ahead, const PetscScalar* xa,
                                           const PetscScalar* ta, const PetscScalar* ha,
                                           const PetscScalar* xl, PetscScalar* ya,
                                           std::vector<PetscInt>& active,
                                           std::vector<PetscInt>& clamped) const {
  // The same bounds, node order and tie rule as nodeRangeAt, with the stencil's nodes at
  // fixed offsets from each entry (every node carries data: periodic grids only).  x is
  // split: owned values in xa (the global array), ghosts in xl (the local array, whose
  // owned entries are not read).  A node of an entry lies in a row of the owned box or in
  // a ghost row; in an owned row, entries near the row ends reach x-ghosts.  So each row
  // runs a body, where every node is read straight from its source row, 8 entries at a
  // time, and two ends, where each node value is looked up.  Clamped entries (few) then
  // look up the node they took; the pattern holds local-array offsets.
  const LocalArrayLayout& layout = ahead.layout();
  const std::vector<PetscInt>& nodes = ahead.uniformOffsets();
  const PetscInt dof = layout.dof();
  const PetscInt entries = layout.ownedSize(0) * dof;
  withStencilShape(grid().dim(), Interpolation::Linear, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    constexpr int K = D == 1 ? N : (D == 2 ? N * N : N * N * N);
    // Node m as a displacement in points (dx, dy, dz): o[m] = dx dof + dy s1 + dz s2, each
    // term far below half the next stride (a stencil reaches at most the ghost width).
    PetscInt o[K], dx[K], dy[K], dz[K];
    PetscInt dx_min = 0, dx_max = 0;
    for (int m = 0; m < K; ++m) {
      o[m] = nodes[static_cast<size_t>(m)];
      PetscInt rest = o[m];
      const auto take = [&rest](PetscInt stride) {
        const PetscInt q =
            rest >= 0 ? (rest + stride / 2) / stride : -((-rest + stride / 2) / stride);
        rest -= q * stride;
        return q;
      };
      dz[m] = D > 2 ? take(layout.stride(2)) : 0;
      dy[m] = D > 1 ? take(layout.stride(1)) : 0;
      dx[m] = take(dof);
      dx_min = std::min(dx_min, dx[m]);
      dx_max = std::max(dx_max, dx[m]);
    }
    // The body: entries whose nodes in owned rows stay inside the row (the vector loop's
    // range; the scalar loop handles the row ends, and everything without AVX-512).
    const PetscInt body_begin = std::min(entries, -dx_min * dof);
    [[maybe_unused]] const PetscInt body_end = std::max(body_begin, entries - dx_max * dof);
    const PetscInt ny = layout.ownedSize(1), nz = layout.ownedSize(2);
    PetscInt first = 0;
    for (PetscInt k = 0; k < nz; ++k) {
      for (PetscInt j = 0; j < ny; ++j, first += entries) {
        const PetscInt row = layout.arrayOffset(layout.ownedStart(0), layout.ownedStart(1) + j,
                                                layout.ownedStart(2) + k);
        // src[m][e]: node m of entry e in the body; owned[m]: its row is an owned one.
        const PetscScalar* src[K];
        bool owned[K];
        for (int m = 0; m < K; ++m) {
          const PetscInt jm = j + dy[m], km = k + dz[m];
          owned[m] = jm >= 0 && jm < ny && km >= 0 && km < nz;
          src[m] = owned[m] ? xa + (km * ny + jm) * entries + dx[m] * dof : xl + row + o[m];
        }
        // Node m of any entry e of the row.
        const auto node = [&](int m, PetscInt e) {
          const PetscInt at = e + dx[m] * dof;
          return owned[m] && (at < 0 || at >= entries) ? xl[row + e + o[m]] : src[m][e];
        };
        const PetscScalar *t = ta + first, *h = ha + first, *xo = xa + first;
        PetscScalar* y = ya + first;
        PetscInt* act = active.data() + first;
        // The node a clamped entry e took its value from: the first attaining the bound (a
        // bound is a node's value, so the search always ends there).
        const auto clampedTo = [&](PetscInt e) {
          int m = 0;
          while (m + 1 < K && node(m, e) != y[e]) ++m;
          return row + e + o[m];
        };
        const auto limitOne = [&](PetscInt i) {
          double lo = node(0, i), hi = lo;
          for (int m = 1; m < K; ++m) {
            const double v = node(m, i);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
          }
          const double corrected = t[i] + 0.5 * (xo[i] - h[i]);
          const bool below = corrected<lo, above = corrected> hi;
          y[i] = below ? lo : (above ? hi : corrected);
          act[i] = kUnclamped;
          if (below || above) {
            act[i] = clampedTo(i);
            clamped.push_back(first + i);
          }
        };
        for (PetscInt i = 0; i < body_begin; ++i) limitOne(i);
        PetscInt i = body_begin;
#if defined(__AVX512F__)
        // GCC 12 leaves this loop scalar: min/max select like `v < lo ? v : lo`, and the
        // corrected value formed with the same operations.  Clamping is rare on resolved
        // fields: a block without it writes its pattern as one vector store.
        const __m512d half = _mm512_set1_pd(0.5);
        const __m256i unclamped = _mm256_set1_epi32(kUnclamped);
        static_assert(sizeof(PetscInt) == 4, "the pattern is stored as 32-bit integers");
        for (; i + 8 <= body_end; i += 8) {
          __m512d lo = _mm512_loadu_pd(src[0] + i), hi = lo;
          for (int m = 1; m < K; ++m) {
            const __m512d v = _mm512_loadu_pd(src[m] + i);
            lo = _mm512_min_pd(v, lo);
            hi = _mm512_max_pd(v, hi);
          }
          const __m512d corrected = _mm512_add_pd(
              _mm512_loadu_pd(t + i),
              _mm512_mul_pd(half, _mm512_sub_pd(_mm512_loadu_pd(xo + i), _mm512_loadu_pd(h + i))));
          const __mmask8 below = _mm512_cmp_pd_mask(corrected, lo, _CMP_LT_OQ);
          const __mmask8 above = _mm512_cmp_pd_mask(corrected, hi, _CMP_GT_OQ);
          __m512d out = _mm512_mask_blend_pd(above, corrected, hi);
          out = _mm512_mask_blend_pd(below, out, lo);
          _mm512_storeu_pd(y + i, out);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(act + i), unclamped);
          for (unsigned bits = static_cast<unsigned>(below | above); bits != 0; bits &= bits - 1) {
            const PetscInt e = i + __builtin_ctz(bits);
            act[e] = clampedTo(e);
            clamped.push_back(first + e);
          }
        }
#endif
        for (; i < entries; ++i) limitOne(i);
      }
    }
  });
}

void MacCormackAdvectionStep::forward(Vec x, Vec y) {
  apply(*departure_, *reverse_departure_, x, y, active_, clamped_);
  linearised_at_ = VecStamp::of(x);
  linearised_ = true;
  restored_ = false;
  restored_record_.reset();
  pattern_ = &active_;
}

namespace detail {
struct PatternPool {
  std::vector<std::vector<PetscInt>> spare;
};
}  // namespace detail

namespace {
/// The clamping pattern of one forward pass.  Dense: a copy of the step's pattern (one
/// PetscInt per entry), its buffer from and back to the step's pool.  Sparse, when at most
/// one entry in kSparseShare was clamped: the clamped entries and what each took, as pairs
/// (entry, pattern value), every other entry being unclamped.  A resolved field clamps few
/// entries, and writing and keeping the short list costs a fraction of the dense copy.
struct ClampingPattern final : LinearisationRecord {
  static constexpr size_t kSparseShare = 8;
  std::vector<PetscInt> data;
  bool sparse = false;
  size_t entries = 0;  // of the pattern
  std::shared_ptr<detail::PatternPool> pool;

  size_t bytes() const override { return data.capacity() * sizeof(PetscInt); }

  ~ClampingPattern() override {
    if (sparse) return;
    try {
      pool->spare.push_back(std::move(data));
    } catch (const std::bad_alloc&) {  // the pool's own list could not grow: free the buffer
    }
  }
};
}  // namespace

std::unique_ptr<LinearisationRecord> MacCormackAdvectionStep::recordLinearisation() {
  if (!linearised_) return nullptr;
  auto record = std::make_unique<ClampingPattern>();
  record->pool = pattern_pool_;
  record->entries = active_.size();
  if (clamped_.size() * ClampingPattern::kSparseShare <= active_.size()) {
    record->sparse = true;
    record->data.resize(2 * clamped_.size());
    for (size_t i = 0; i < clamped_.size(); ++i) {
      record->data[2 * i] = clamped_[i];
      record->data[2 * i + 1] = active_[static_cast<size_t>(clamped_[i])];
    }
    return record;
  }
  std::vector<std::vector<PetscInt>>& spare = pattern_pool_->spare;
  if (!spare.empty()) {
    record->data = std::move(spare.back());
    spare.pop_back();
  }
  record->data.assign(active_.begin(), active_.end());  // no allocation with a spare buffer
  return record;
}

void MacCormackAdvectionStep::restoreLinearisation(
    std::shared_ptr<const LinearisationRecord> record, Vec x) {
  const auto* pattern = dynamic_cast<const ClampingPattern*>(record.get());
  if (!pattern || pattern->entries != active_.size())
    throw std::logic_error("MacCormackAdvectionStep: a linearisation record of another step");
  // A dense record is read in place (no copy), a sparse one expanded when first used; either
  // is held until the next restore or forward.
  restored_record_ = std::move(record);
  restored_ = true;
  restored_expanded_ = false;
  restored_at_ = VecStamp::of(x);
}

PetscInt MacCormackAdvectionStep::clampedAtLinearisation() const {
  return countClamped(grid(), *pattern_, kUnclamped);
}

void MacCormackAdvectionStep::linearise(Vec x) {
  const VecStamp at = VecStamp::of(x);
  if (restored_ && at == restored_at_) {
    const auto& record = static_cast<const ClampingPattern&>(*restored_record_);
    if (!record.sparse) {
      pattern_ = &record.data;
      return;
    }
    if (!restored_expanded_) {
      // Only the entries the last sparse record set are undone: O(clamped), not a pass.
      if (restored_active_.size() != record.entries) {
        restored_active_.assign(record.entries, kUnclamped);
        patched_.clear();
      }
      for (const PetscInt e : patched_) restored_active_[static_cast<size_t>(e)] = kUnclamped;
      patched_.clear();
      for (size_t i = 0; i < record.data.size(); i += 2) {
        restored_active_[static_cast<size_t>(record.data[i])] = record.data[i + 1];
        patched_.push_back(record.data[i]);
      }
      restored_expanded_ = true;
    }
    pattern_ = &restored_active_;
    return;
  }
  if (linearised_ && at == linearised_at_) {
    pattern_ = &active_;
    return;
  }
  forward(x, work_c_);  // pattern_ = &active_
}

void MacCormackAdvectionStep::tangent(Vec dx, Vec dy) {
  const std::vector<PetscInt>& active = *pattern_;
  exchange_.globalToLocal(dx, local_a_);
  const PetscScalar* dl = nullptr;
  PetscScalar* tilde = nullptr;
  PG_CALL(VecGetArrayRead(local_a_, &dl));
  PG_CALL(VecGetArray(work_a_, &tilde));
  departure_->gather(dl, tilde);
  PG_CALL(VecRestoreArray(work_a_, &tilde));
  gatherThrough(*reverse_departure_, work_a_, local_b_, work_b_);

  const PetscScalar *da = nullptr, *ta = nullptr, *ha = nullptr;
  PetscScalar* out = nullptr;
  PG_CALL(VecGetArrayRead(dx, &da));
  PG_CALL(VecGetArrayRead(work_a_, &ta));
  PG_CALL(VecGetArrayRead(work_b_, &ha));
  PG_CALL(VecGetArray(dy, &out));
  for (size_t e = 0; e < active.size(); ++e) {
    const PetscInt a = active[e];
    out[e] = a == kUnclamped ? ta[e] + 0.5 * (da[e] - ha[e]) : (a == kExterior ? 0.0 : dl[a]);
  }
  PG_CALL(VecRestoreArray(dy, &out));
  PG_CALL(VecRestoreArrayRead(work_b_, &ha));
  PG_CALL(VecRestoreArrayRead(work_a_, &ta));
  PG_CALL(VecRestoreArrayRead(dx, &da));
  PG_CALL(VecRestoreArrayRead(local_a_, &dl));
}

void MacCormackAdvectionStep::adjoint(Vec w, Vec wx) {
  const std::vector<PetscInt>& active = *pattern_;
  // J = M (A + I/2 - B A / 2) + P  (M: unclamped rows, P: selection of the active node), so
  // J^T w = A^T (u - B^T u / 2) + u / 2 + P^T w  with  u = M w.
  if (departure_->isUniform() && reverse_departure_->isUniform()) {
    adjointUniform(w, wx);
    return;
  }
  const PetscScalar* wa = nullptr;
  PetscScalar* u = nullptr;
  PG_CALL(VecGetArrayRead(w, &wa));
  PG_CALL(VecGetArray(work_a_, &u));
  maskUnclamped(active, wa, u, clamped_entries_, kUnclamped);  // u = M w
  PG_CALL(VecSet(local_b_, 0.0));
  PetscScalar* lb = nullptr;
  PG_CALL(VecGetArray(local_b_, &lb));
  reverse_departure_->scatterAdd(u, lb);
  PG_CALL(VecRestoreArray(local_b_, &lb));
  PG_CALL(VecSet(work_b_, 0.0));
  exchange_.addLocalToGlobal(local_b_, work_b_);  // B^T u
  PetscScalar* r = nullptr;
  PG_CALL(VecGetArray(work_b_, &r));
  for (size_t e = 0; e < active.size(); ++e) r[e] = u[e] - 0.5 * r[e];
  PG_CALL(VecSet(local_a_, 0.0));
  PetscScalar* la = nullptr;
  PG_CALL(VecGetArray(local_a_, &la));
  departure_->scatterAdd(r, la);
  for (const PetscInt c : clamped_entries_) la[active[c]] += wa[c];  // + P^T w
  PG_CALL(VecRestoreArray(local_a_, &la));
  PG_CALL(VecRestoreArray(work_b_, &r));
  PG_CALL(VecRestoreArray(work_a_, &u));
  PG_CALL(VecRestoreArrayRead(w, &wa));
  PG_CALL(VecSet(wx, 0.0));
  exchange_.addLocalToGlobal(local_a_, wx);
  PG_CALL(VecAXPY(wx, 0.5, work_a_));
}

void MacCormackAdvectionStep::adjointUniform(Vec w, Vec wx) {
  const std::vector<PetscInt>& active = *pattern_;
  // As adjoint(), with A^T and B^T as gathers of the mirrored stencils (no scatter-add, no
  // ghost sum); only P^T w, which lands on arbitrary nodes, goes through the ghost exchange.
  const PetscScalar* wa = nullptr;
  PetscScalar* u = nullptr;
  PG_CALL(VecGetArrayRead(w, &wa));
  PG_CALL(VecGetArray(work_a_, &u));
  maskUnclamped(active, wa, u, clamped_entries_, kUnclamped);  // u = M w
  PG_CALL(VecRestoreArray(work_a_, &u));
  // work_b_ = u - B^T u / 2 and wx = A^T (u - B^T u / 2) + u / 2, each combined as its
  // sweep goes.
  const SweepCombination minus_half{-0.5, 1.0, work_a_}, plus_half_u{1.0, 0.5, work_a_};
  uniformSweep(exchange_, *reverse_departure_, true, work_a_, local_b_, work_b_, &minus_half);
  uniformSweep(exchange_, *departure_, true, work_b_, local_a_, wx, &plus_half_u);
  // + P^T w.  Clamped entries are few: each adds its w into wx at the node it took where
  // this rank owns that node, else into the ghost entry of local_b_ (whose ghost entries
  // alone are zeroed first), which the ghost-only exchange sums into the owner.
  const LocalArrayLayout& layout = departure_->layout();
  PetscScalar *pl = nullptr, *wxa = nullptr;
  PG_CALL(VecGetArray(local_b_, &pl));
  PG_CALL(VecGetArray(wx, &wxa));
  zeroGhostEntries(layout, pl);
  for (const PetscInt c : clamped_entries_) {
    const PetscInt node = active[c];
    const PetscInt owned = ownedEntry(layout, node);
    if (owned >= 0)
      wxa[owned] += wa[c];
    else
      pl[node] += wa[c];
  }
  PG_CALL(VecRestoreArray(wx, &wxa));
  PG_CALL(VecRestoreArray(local_b_, &pl));
  PG_CALL(VecRestoreArrayRead(w, &wa));
  exchange_.addGhostsToGlobal(local_b_, wx);
}

void MacCormackAdvectionStep::jvp(Vec x, Vec dx, Vec dy) {
  linearise(x);
  tangent(dx, dy);
}

void MacCormackAdvectionStep::vjp(Vec x, Vec w, Vec wx) {
  linearise(x);
  adjoint(w, wx);
}

void MacCormackAdvectionStep::approximateInverse(Vec y, Vec x) {
  apply(*reverse_departure_, *departure_, y, x, scratch_active_, scratch_clamped_);
}

void MacCormackAdvectionStep::reverseLinear(Vec y, Vec x) {
  gatherThrough(*reverse_departure_, y, local_a_, x);
}

void MacCormackAdvectionStep::gatherThrough(const InterpolationTable& table, Vec in, Vec local,
                                            Vec out) {
  exchange_.globalToLocal(in, local);
  const PetscScalar* l = nullptr;
  PetscScalar* o = nullptr;
  PG_CALL(VecGetArrayRead(local, &l));
  PG_CALL(VecGetArray(out, &o));
  table.gather(l, o);
  PG_CALL(VecRestoreArray(out, &o));
  PG_CALL(VecRestoreArrayRead(local, &l));
}

double MacCormackAdvectionStep::residualNorm(Vec x, Vec y, Vec residual) {
  forward(x, residual);  // also linearises at x
  PG_CALL(VecAXPY(residual, -1.0, y));
  PetscReal norm = 0.0;
  PG_CALL(VecNorm(residual, NORM_2, &norm));
  if (!std::isfinite(norm)) throw NonFiniteError("MacCormack inverse: the residual is not finite");
  return norm;
}

void MacCormackAdvectionStep::inverse(Vec x0, Vec y, Vec x) {
  OwnedVec residual = grid().createGlobal(), step = grid().createGlobal(),
           trial = grid().createGlobal();
  // Start from the better of the linearisation point (the local inverse around x0 passes
  // through it) and the reverse-velocity MacCormack step.
  approximateInverse(y, x);
  double rnorm = residualNorm(x, y, residual);
  if (x0) {
    const double r0 = residualNorm(x0, y, trial);  // linearises at x0
    if (r0 < rnorm) {
      PG_CALL(VecCopy(x0, x));
      PG_CALL(VecCopy(trial, residual));
      rnorm = r0;
    } else {
      rnorm = residualNorm(x, y, residual);  // back to the linearisation at x
    }
  }
  PetscReal ynorm = 0.0;
  PG_CALL(VecNorm(y, NORM_2, &ynorm));
  const double target = std::max(solve_.rtol * ynorm, solve_.atol);
  krylov_its_ = 0;
  std::ostringstream history;
  history.precision(2);
  auto relative = [&](double r) { return ynorm > 0.0 ? r / ynorm : r; };
  history << relative(rnorm);
  auto fail = [&](const std::string& why) {
    std::ostringstream os;
    os << "MacCormack inverse did not converge: " << why << "; ||S(x) - y|| / ||y|| per Newton "
       << "iteration: " << history.str() << " (rtol " << solve_.rtol << ")";
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  };
  for (newton_its_ = 0; rnorm > target; ++newton_its_) {
    if (newton_its_ >= solve_.max_newton) {
      fail("no convergence in " + std::to_string(solve_.max_newton) + " Newton iterations");
    }
    // Newton step J d = S(x) - y: GMRES first; where the limiter makes J singular (two
    // values clamped to the same node) GMRES stagnates, and LSQR still finds the
    // least-squares step.
    reverseLinear(residual, step);
    const detail::KrylovSolver::Outcome gmres = newton_gmres_->attempt(residual, step);
    krylov_its_ += newton_gmres_->lastIterations();
    if (!gmres.converged) {
      PG_CALL(VecSet(step, 0.0));
      const detail::KrylovSolver::Outcome lsqr = newton_lsqr_->attempt(residual, step);
      krylov_its_ += newton_lsqr_->lastIterations();
      if (!(lsqr.residual < 0.99 * lsqr.bnorm)) {
        fail("the Newton step makes no progress (" + newton_gmres_->describe(gmres) + "; " +
             newton_lsqr_->describe(lsqr) + ")");
      }
    }
    // S is piecewise linear: a full step that crosses into another piece can overshoot or
    // cycle between pieces, so the step is halved until the residual decreases.
    double t = 1.0, trial_norm = 0.0;
    for (int halving = 0;; ++halving) {
      PG_CALL(VecWAXPY(trial, -t, step, x));
      trial_norm = residualNorm(trial, y, residual);
      if (trial_norm < rnorm) break;
      if (halving == 8) fail("no step length along the Newton direction reduces the residual");
      t *= 0.5;
    }
    PG_CALL(VecCopy(trial, x));  // the residual (and the linearisation) belong to it already
    rnorm = trial_norm;
    history << ", " << relative(rnorm);
  }
}

// ---------------------------------------------------------------------------------------
// Factories.

AdvectionScheme parseAdvectionScheme(const std::string& text, const std::string& option) {
  if (text == "upwind") return AdvectionScheme::Upwind;
  if (text == "sl-linear") return AdvectionScheme::SemiLagrangianLinear;
  if (text == "sl-cubic") return AdvectionScheme::SemiLagrangianCubic;
  if (text == "maccormack") return AdvectionScheme::MacCormack;
  throw InputError("option " + option + ": unknown advection scheme '" + text +
                   "' (allowed: upwind, sl-linear, sl-cubic, maccormack)");
}

const char* toString(AdvectionScheme scheme) {
  switch (scheme) {
    case AdvectionScheme::Upwind:
      return "upwind";
    case AdvectionScheme::SemiLagrangianLinear:
      return "sl-linear";
    case AdvectionScheme::SemiLagrangianCubic:
      return "sl-cubic";
    case AdvectionScheme::MacCormack:
      return "maccormack";
  }
  return "unknown";
}

std::shared_ptr<Step> makeAdvectionStep(const Grid& grid, AdvectionScheme scheme,
                                        const VelocityField& velocity, double dt,
                                        AdvectionSolveOptions solve) {
  switch (scheme) {
    case AdvectionScheme::Upwind:
      return std::make_shared<UpwindAdvectionStep>(grid, velocity, dt, solve);
    case AdvectionScheme::SemiLagrangianLinear:
      return std::make_shared<SemiLagrangianAdvectionStep>(grid, velocity, dt,
                                                           Interpolation::Linear, solve);
    case AdvectionScheme::SemiLagrangianCubic:
      return std::make_shared<SemiLagrangianAdvectionStep>(grid, velocity, dt, Interpolation::Cubic,
                                                           solve);
    case AdvectionScheme::MacCormack:
      return std::make_shared<MacCormackAdvectionStep>(grid, velocity, dt, solve);
  }
  throw InputError("unknown advection scheme");
}

std::unique_ptr<Simulator> makeAdvectionSimulator(const Grid& grid, AdvectionScheme scheme,
                                                  const VelocityField& velocity, double t_end,
                                                  PetscInt steps, AdvectionSolveOptions solve) {
  if (steps <= 0) {
    throw InputError("the number of time steps must be positive (got " + std::to_string(steps) +
                     ")");
  }
  if (!(t_end > 0.0) || !std::isfinite(t_end)) {
    std::ostringstream os;
    os << "the end time must be positive and finite (got " << t_end << ")";
    throw InputError(os.str());
  }
  // The steps are identical, so one object serves all K (a nonlinear step relinearises
  // when asked about a different state).
  std::shared_ptr<Step> step =
      makeAdvectionStep(grid, scheme, velocity, t_end / static_cast<double>(steps), solve);
  return std::make_unique<Simulator>(grid, std::vector<std::shared_ptr<Step>>(steps, step));
}

}  // namespace physgrad
