#pragma once
// Interpolation of grid fields at arbitrary points, read from the ghosted local array of the
// rank that owns the result: the building block of semi-Lagrangian steps (given velocity,
// MacCormack, and self-advection / Burgers, whose departure points depend on the field).
//
// Three operations share one stencil (a tensor product of 1D stencils along the used axes):
//   gather      u(q)      = sum_n W_n(q) u_n                    (interpolate)
//   scatter-add a_n      += W_n(q) c                            (the exact transpose)
//   gradient    du(q)/dq_d = sum_n dW_n(q)/dq_d u_n             (derivative w.r.t. the point)
// Positions q are index coordinates: along each axis, global grid node i sits at q = i
// (unwrapped on periodic grids, so q may be negative or >= N there).  A physical position x
// maps to q = x / h - 1/2 (periodic) or q = x / h - 1 (zero-Dirichlet), see
// LocalArrayLayout::indexCoordinate; d/dx = (1/h) d/dq.
//
// Multi-component fields: arrays interleave the dof components of a point, and every
// kernel takes the array already offset by the component (`local + c`), so one stencil
// serves all components (e.g. all velocity components in Burgers).
//
// Zero-Dirichlet grids: the field is zero outside the domain.  Stencil nodes outside it get
// weight 0 (and slope 0) and are redirected to the home point, so they never touch memory
// outside the array and a transposed scatter never writes into boundary ghosts; their
// `inside` bit is 0, so a limiter can still account for the zero they stand for.
//
// Ghost layers: the stencil of a point must lie within the rank's ghost box.  Builders
// report the reach (farthest in-domain node from the home point, per axis, in nodes); the
// stencil is valid only when reach <= LocalArrayLayout::ghostWidth().  Because a departure
// cell can be diagonal to the home point, the ghost values must include the box corners:
// use CornerGhostExchange (the Grid's DMDA uses a star stencil, whose corners stay stale).

#include <petscdmda.h>
#include <petscvec.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"

namespace physgrad {

enum class Interpolation {
  /// 2 nodes per axis (multilinear).  Exact for linear functions, error O(h^2), monotone
  /// (weights in [0, 1]), continuous with a gradient that jumps across cell faces.
  Linear,
  /// 4 nodes per axis, cubic Lagrange through nodes -1, 0, 1, 2 of the departure cell
  /// (tensor product).  Exact for cubics, error O(h^4); continuous, with a gradient that
  /// jumps across cell faces (chosen over Catmull-Rom, which is C1 but only O(h^3)
  /// accurate: the semi-Lagrangian step's accuracy is the interpolation's).
  Cubic
};
const char* toString(Interpolation kind);
/// Parses "linear" or "cubic"; throws InputError naming `option` otherwise.
Interpolation parseInterpolation(const std::string& text, const std::string& option);
/// Nodes of the 1D stencil: 2 (linear) or 4 (cubic).
inline int nodesPerAxis(Interpolation kind) { return kind == Interpolation::Linear ? 2 : 4; }

/// The cubic weights of axisWeights (and their slopes when `slope` is not null) for T a
/// double or a vector of doubles (GCC/Clang vector extension): one expression for both, so
/// that a stencil built lane by lane in a vector equals the one built point by point.
template <class T>
inline void cubicAxisWeights(const T& t, T* weight, T* slope) {
  // Lagrange basis through the nodes -1, 0, 1, 2 and its derivative in t.
  const T tm1 = t - 1.0, tm2 = t - 2.0, tp1 = t + 1.0;
  // Products with 1/6 and 1/2 instead of divisions: this runs for every axis of every
  // point each time a velocity-dependent stencil is built.
  constexpr double kSixth = 1.0 / 6.0;
  weight[0] = -t * tm1 * tm2 * kSixth;
  weight[1] = tp1 * tm1 * tm2 * 0.5;
  weight[2] = -tp1 * t * tm2 * 0.5;
  weight[3] = tp1 * t * tm1 * kSixth;
  if (slope) {
    const T t2 = t * t;
    slope[0] = -(3.0 * t2 - 6.0 * t + 2.0) * kSixth;
    slope[1] = (3.0 * t2 - 4.0 * t - 1.0) * 0.5;
    slope[2] = -(3.0 * t2 - 2.0 * t - 2.0) * 0.5;
    slope[3] = (3.0 * t2 - 1.0) * kSixth;
  }
}

/// The linear weights of axisWeights, for T as in cubicAxisWeights.
template <class T>
inline void linearAxisWeights(const T& t, T* weight, T* slope) {
  weight[0] = 1.0 - t;
  weight[1] = t;
  if (slope) {
    slope[0] = T{} - 1.0;  // T{} - c: the constant as a T (a broadcast where T is a vector)
    slope[1] = T{} + 1.0;
  }
}

/// 1D weights at the fraction t in [0, 1) of the cell between nodes 0 and 1, for the nodes
/// of nodesPerAxis(kind) starting at node 0 (linear) or -1 (cubic); `slope` (may be null)
/// receives dW/dt.
inline void axisWeights(Interpolation kind, double t, double* weight, double* slope) {
  if (kind == Interpolation::Linear)
    linearAxisWeights(t, weight, slope);
  else
    cubicAxisWeights(t, weight, slope);
}

/// Where each point of a grid lives in the ghosted local array of this rank.
class LocalArrayLayout {
 public:
  explicit LocalArrayLayout(const Grid& grid);

  int dim() const { return dim_; }
  PetscInt dof() const { return dof_; }
  PetscInt ghostWidth() const { return ghost_width_; }
  bool periodic() const { return periodic_; }
  PetscInt globalSize(int axis) const { return n_[axis]; }
  PetscInt ghostStart(int axis) const { return ghost_start_[axis]; }
  PetscInt ghostSize(int axis) const { return ghost_size_[axis]; }
  /// The owned box (unused axes: start 0, size 1).
  PetscInt ownedStart(int axis) const { return owned_start_[axis]; }
  PetscInt ownedSize(int axis) const { return owned_size_[axis]; }
  PetscInt ownedCount() const { return owned_size_[0] * owned_size_[1] * owned_size_[2]; }
  /// Array entries between neighbouring points along an axis: dof, dof * gx, dof * gx * gy.
  PetscInt stride(int axis) const { return stride_[axis]; }
  double spacing(int axis) const { return h_[axis]; }
  /// Index coordinate of the physical coordinate x along an axis (node i sits at i).
  double indexCoordinate(int axis, double x) const { return x / h_[axis] - node_shift_; }
  /// Physical coordinate of index coordinate q (the inverse of indexCoordinate).
  double physicalCoordinate(int axis, double q) const { return (q + node_shift_) * h_[axis]; }
  /// True when global node `index` carries data (always on periodic axes; inside [0, N)
  /// on zero-Dirichlet ones).
  bool insideDomain(int axis, PetscInt index) const {
    return periodic_ || (index >= 0 && index < n_[axis]);
  }
  /// True when global node `index` (unwrapped) lies in this rank's ghost box.
  bool inGhostBox(int axis, PetscInt index) const {
    return index >= ghost_start_[axis] && index < ghost_start_[axis] + ghost_size_[axis];
  }
  /// Array offset of component 0 of the global point (i, j, k), which must lie in the ghost
  /// box (unused axes: pass 0).
  PetscInt arrayOffset(PetscInt i, PetscInt j, PetscInt k) const {
    return (i - ghost_start_[0]) * stride_[0] + (j - ghost_start_[1]) * stride_[1] +
           (k - ghost_start_[2]) * stride_[2];
  }

 private:
  int dim_;
  PetscInt dof_, ghost_width_;
  bool periodic_;
  double node_shift_;
  std::array<PetscInt, 3> n_{}, ghost_start_{}, ghost_size_{}, owned_start_{}, owned_size_{},
      stride_{};
  std::array<double, 3> h_{};
};

/// Ghost exchange that also fills the corners of the ghost box.  It runs on a box-stencil
/// twin of the grid's DMDA with the identical parallel layout, so it works on the grid's
/// own global Vecs and on local Vecs of the grid's ghosted size.
class CornerGhostExchange {
 public:
  explicit CornerGhostExchange(const Grid& grid);
  /// A zeroed local Vec (boundary ghosts of zero-Dirichlet grids stay zero).
  OwnedVec createLocal() const;
  /// local <- global, all ghosts including corners.
  void globalToLocal(Vec global, Vec local) const;
  /// The ghost entries of local (corners and periodic images included) from global, and
  /// nothing else: the owned entries of local are left as they were.  For kernels that
  /// read owned values from the global Vec itself, saving the copy of the whole field.
  void ghostsToLocal(Vec global, Vec local) const;
  /// global += every entry of local (owned and ghost) added into its owner: the exact
  /// transpose of globalToLocal.  Boundary ghosts of zero-Dirichlet grids are dropped.
  void addLocalToGlobal(Vec local, Vec global) const;
  /// global += the ghost entries of local (corners and periodic images included) added
  /// into their owners, and nothing else: the transpose of ghostsToLocal.  With
  /// SweepAccumulator, which adds the owned entries itself.
  void addGhostsToGlobal(Vec local, Vec global) const;
  DM dm() const { return box_; }

 private:
  OwnedDM box_;
  LocalArrayLayout layout_;  // of the grid's local arrays (the twin's are the same)
  mutable Handle<VecScatter, VecScatterDestroy> ghost_scatter_;  // built on first use
};

/// The local array of an adjoint scatter-add (z += W^T w over the owned points), added
/// into the global result just behind the sweep that fills it and left zero for the next
/// sweep, so that neither the zeroing nor the owned part of the local-to-global sum costs
/// a pass over memory of its own (at large sizes each would be one more trip to DRAM).
///
/// The unit is a line: all entries with one index along the outermost axis of the grid
/// (a plane in 3D, a row in 2D, the whole array in 1D).  The sweep visits the owned points
/// in storage order, announces each line before scattering from its points (beginLine),
/// and scatters only into nodes at most `reach` lines from the point's own.  Unless the
/// array is zero already, a line is zeroed when a point comes within `reach` of it.  Once
/// the sweep is more than `reach` lines past a line, its owned entries are added into
/// `global` (global[e] += local[e], or global[e] = local[e] with Into::Assign, for a
/// global array holding nothing yet) and set to zero; finishOwned() does this for the rest.
/// The caller then sums the ghost entries into their owners
/// (CornerGhostExchange::addGhostsToGlobal) and zeroes them (zeroGhostEntries).  The result
/// equals zeroing local, scattering, and CornerGhostExchange::addLocalToGlobal, as long as
/// every stencil keeps within `reach` (a stencil beyond it stays inside the array but is
/// summed wrongly: callers check the reach and throw, and must not count on the array
/// being zero after a sweep that did not finish).
class SweepAccumulator {
 public:
  /// How a finished line goes into global: added to what is there, or written over it.
  enum class Into { Add, Assign };
  /// `zeroed`: every entry of local is zero already (e.g. left so by the previous sweep).
  SweepAccumulator(const LocalArrayLayout& layout, PetscInt reach, PetscScalar* local,
                   PetscScalar* global, bool zeroed, Into into = Into::Add);
  /// The sweep is about to scatter from the points of line `line` (global index along the
  /// outermost axis; non-decreasing from call to call).
  void beginLine(PetscInt line) {
    if (line != current_) advanceTo(line);
  }
  /// Adds the owned lines not yet added into global (and zeroes them).
  void finishOwned();

 private:
  void advanceTo(PetscInt line);
  void addLine(PetscInt line);

  LocalArrayLayout layout_;
  int axis_;  // the outermost axis: 2 in 3D, else 1 (of size 1 in 1D)
  PetscInt reach_;
  PetscScalar* local_;
  PetscScalar* global_;
  Into into_;
  PetscInt current_, zeroed_to_, added_to_;  // lines: [ghost start, zeroed_to_) are zero
};

/// Sets every entry of a local array outside the owned box to zero.
void zeroGhostEntries(const LocalArrayLayout& layout, PetscScalar* local);

namespace detail {
/// buildAxisStencil without its fast path: every case (non-finite q, nodes outside the
/// domain or the ghost box).
PetscInt buildAxisStencilGeneral(const LocalArrayLayout& layout, Interpolation kind, int axis,
                                 double q, PetscInt home, PetscInt* offset, double* weight,
                                 double* slope, std::uint8_t* inside);
}  // namespace detail

/// Snapping tolerance of buildAxisStencil in index units: far above the round-off of
/// q = x/h - shift for any grid that fits in memory, far below any displacement that
/// matters.
inline constexpr double kStencilSnap = 1e-9;
/// Index coordinates at least this large (or NaN) are not located on the grid at all: the
/// builders give them a stencil that stays at home (and an unusable reach), which also
/// keeps floor(q) within the range of a 32-bit PetscInt.
inline constexpr double kAbsurdIndex = 1e9;

/// buildAxisStencil for N = nodesPerAxis(kind) known at compile time.  The common case
/// (every node inside the domain and the ghost box) is inlined; the rest is left to the
/// general builder, which gives the same stencil where both apply.
template <int N>
inline PetscInt buildAxisStencilFor(const LocalArrayLayout& layout, int axis, double q,
                                    PetscInt home, PetscInt* offset, double* weight, double* slope,
                                    std::uint8_t* inside) {
  static_assert(N == 2 || N == 4, "2 (linear) or 4 (cubic) nodes per axis");
  constexpr Interpolation kind = N == 2 ? Interpolation::Linear : Interpolation::Cubic;
  if (std::abs(q) < kAbsurdIndex) {
    const double cell = std::floor(q + kStencilSnap);
    const PetscInt first = static_cast<PetscInt>(cell) - (N == 4 ? 1 : 0);
    const PetscInt last = first + N - 1;
    const PetscInt ghost_start = layout.ghostStart(axis);
    if (first >= ghost_start && last < ghost_start + layout.ghostSize(axis) &&
        (layout.periodic() || (first >= 0 && last < layout.globalSize(axis)))) {
      double w[4], dw[4];
      axisWeights(kind, q - cell, w, slope ? dw : nullptr);
      const PetscInt stride = layout.stride(axis);
      for (int m = 0; m < N; ++m) {
        offset[m] = (first + m - ghost_start) * stride;
        weight[m] = w[m];
        if (slope) slope[m] = dw[m];
      }
      *inside = static_cast<std::uint8_t>((1u << N) - 1u);
      return std::max(home - first, last - home);
    }
  }
  return detail::buildAxisStencilGeneral(layout, kind, axis, q, home, offset, weight, slope,
                                         inside);
}

/// Builds the 1D stencil along `axis` at index coordinate q for a result owned by the point
/// with global index `home` on that axis.  Writes nodesPerAxis(kind) entries of `offset`
/// (array offsets along the axis: (node - ghost start) * stride), `weight`, `slope`
/// (dW/dq; may be null) and the inside bitmask; returns the reach.  Nodes outside a
/// Dirichlet domain, and nodes outside the ghost box (then the stencil is invalid and the
/// reach exceeds the ghost width), are redirected to `home` with weight and slope 0.
/// A q within 1e-9 below a node snaps to the cell starting at that node (t slightly
/// negative), so that a displacement of exactly a whole number of cells, up to round-off,
/// needs no extra ghost layer.
inline PetscInt buildAxisStencil(const LocalArrayLayout& layout, Interpolation kind, int axis,
                                 double q, PetscInt home, PetscInt* offset, double* weight,
                                 double* slope, std::uint8_t* inside) {
  return kind == Interpolation::Linear
             ? buildAxisStencilFor<2>(layout, axis, q, home, offset, weight, slope, inside)
             : buildAxisStencilFor<4>(layout, axis, q, home, offset, weight, slope, inside);
}

/// A stencil at one point, for fields whose interpolation points change every apply
/// (Burgers).  Entries are stored axis-major ([axis][node]), the layout the kernels read.
template <int D, int N>
struct PointStencil {
  static_assert(D >= 1 && D <= 3 && (N == 2 || N == 4), "1-3 dimensions, 2 or 4 nodes per axis");
  // Zero-initialised: build() fills every entry, but not in a way the compiler can prove.
  PetscInt offset[D][N] = {};
  double weight[D][N] = {};
  double slope[D][N] = {};  ///< dW/dq along the axis
  std::uint8_t inside[D] = {};
  PetscInt reach = 0;  ///< max over axes of the 1D reach; valid iff <= ghost width

  /// Builds the stencil at index coordinates q[D] for the result owned by point home[D].
  void build(const LocalArrayLayout& layout, const double* q, const PetscInt* home) {
    reach = 0;
    for (int a = 0; a < D; ++a) {
      const PetscInt r = buildAxisStencilFor<N>(layout, a, q[a], home[a], offset[a], weight[a],
                                                slope[a], &inside[a]);
      if (r > reach) reach = r;
    }
  }
};

namespace detail {
/// L doubles as one value (GCC/Clang vector extension): a row of a 2D velocity stencil
/// (N nodes x 2 components), or one entry of the stencils of L points.  L is a power of 2.
template <int L>
struct DoubleVector {
  typedef double type __attribute__((vector_size(sizeof(double) * L)));
};
template <int L>
using Doubles = typename DoubleVector<L>::type;
/// L PetscInts as one value, likewise.
template <int L>
struct IndexVector {
  typedef PetscInt type __attribute__((vector_size(sizeof(PetscInt) * L)));
};
template <int L>
using Indices = typename IndexVector<L>::type;
}  // namespace detail

/// Points per StencilBlock in the kernels: one vector register of doubles where the build
/// machine has 512-bit vectors, else 4 (one AVX register, two SSE2 ones).  Vector types
/// wider than the machine's registers are split by the compiler, often through the stack;
/// with AVX2 a block of 8 made the 2D Burgers step 2.6 times slower than a block of 4.
#if defined(__AVX512F__)
inline constexpr int kStencilBlockLanes = 8;
#else
inline constexpr int kStencilBlockLanes = 4;
#endif

/// The stencils of up to B consecutive points of one grid row (x the fastest axis), stored
/// entry-major so that the build runs B points at a time in vector registers: entry (a, m) of
/// point b at [(a * N + m) * B + b], its inside bits at [a * B + b].  The *AtComponents
/// kernels read point b with stride S = B from `offset + b`, `weight + b`, `slope + b`.
/// Every stencil equals the one buildAxisStencilFor<N> builds at the same point.
template <int D, int N, int B>
struct StencilBlock {
  static_assert(D >= 1 && D <= 3 && (N == 2 || N == 4) && B >= 1 && (B & (B - 1)) == 0,
                "1-3 dimensions, 2 or 4 nodes, B a power of 2");
  PetscInt offset[D * N * B] = {};
  double weight[D * N * B] = {};
  double slope[D * N * B] = {};  ///< dW/dq along the axis (built only on request)
  std::uint8_t inside[D * B] = {};

  using Real = detail::Doubles<B>;   ///< one double per point of the block
  using Index = detail::Indices<B>;  ///< one PetscInt per point of the block

  /// Builds the stencils of the first `count` (<= B) points: point b at index coordinates
  /// q[a][b] (lane b of the vector q[a]), its result owned by the global point (home[0] + b,
  /// home[1], home[2]).  Builds slopes iff WithSlope.  Raises reach[b] to the reach of
  /// point b's stencil, for b < count.
  template <bool WithSlope>
  void build(const LocalArrayLayout& layout, const Real (&q)[D], const PetscInt* home, int count,
             Index& reach) {
    // All B points of an axis at once, lane by lane (GCC/Clang vector extension:
    // comparisons give lane masks of 0 / -1, `?:` selects lane by lane).  The common case
    // (every node inside the domain and the ghost box) is built for all lanes; the other
    // points are then redone by the general builder.
    constexpr Interpolation kind = N == 2 ? Interpolation::Linear : Interpolation::Cubic;
    constexpr PetscInt kBelow = N == 4 ? 1 : 0;  // nodes before the departure cell
    Index lane{};
    for (int b = 0; b < B; ++b) lane[b] = b;
    const Index counted = lane < count;
    for (int a = 0; a < D; ++a) {
      const PetscInt ghost_start = layout.ghostStart(a);
      const PetscInt lo = layout.periodic() ? ghost_start : std::max<PetscInt>(ghost_start, 0);
      const PetscInt ghost_end = ghost_start + layout.ghostSize(a);
      const PetscInt hi = layout.periodic() ? ghost_end : std::min(ghost_end, layout.globalSize(a));
      const PetscInt stride = layout.stride(a);
      const Index home_index = home[a] + (a == 0 ? lane : Index{});
      // |q| < kAbsurdIndex, false for NaN: other points go to the general builder, and the
      // fast path works on a harmless stand-in (the home node) meanwhile.
      const auto sane = (q[a] < kAbsurdIndex) & (q[a] > -kAbsurdIndex);
      const Real qs = sane ? q[a] : __builtin_convertvector(home_index, Real);
      // floor(qs + snap) exactly: truncation toward zero, one less where that rounded up
      // (|qs| < 1e9, so every value is an exact PetscInt).
      const Real shifted = qs + kStencilSnap;
      const Index truncated = __builtin_convertvector(shifted, Index);
      const Index cell = truncated + __builtin_convertvector(
                                         __builtin_convertvector(truncated, Real) > shifted, Index);
      const Real t = qs - __builtin_convertvector(cell, Real);
      Real w[N], dw[N];
      if constexpr (N == 4)
        cubicAxisWeights(t, w, WithSlope ? dw : nullptr);
      else
        linearAxisWeights(t, w, WithSlope ? dw : nullptr);
      const Index first = cell - kBelow;
#pragma GCC unroll 4
      for (int m = 0; m < N; ++m) {
        const Index off = (first + (m - ghost_start)) * stride;
        std::memcpy(offset + (a * N + m) * B, &off, sizeof off);
        std::memcpy(weight + (a * N + m) * B, &w[m], sizeof w[m]);
        if constexpr (WithSlope) std::memcpy(slope + (a * N + m) * B, &dw[m], sizeof dw[m]);
      }
      std::memset(inside + a * B, (1u << N) - 1u, B);
      const Index fast =
          __builtin_convertvector(sane, Index) & counted & (first >= lo) & (first + (N - 1) < hi);
      const Index below = home_index - first, above = first + (N - 1) - home_index;
      const Index lane_reach = below > above ? below : above;
      reach = fast & (lane_reach > reach) ? lane_reach : reach;
      const Index slow = counted & ~fast;
      std::uint64_t words[sizeof(Index) / 8], any_slow = 0;
      std::memcpy(words, &slow, sizeof words);
      for (std::uint64_t word : words) any_slow |= word;
      for (int b = 0; any_slow != 0 && b < count; ++b) {
        if (!slow[b]) continue;
        PetscInt o[N];
        double wb[N], dwb[N];
        const PetscInt r =
            detail::buildAxisStencilGeneral(layout, kind, a, q[a][b], home[a] + (a == 0 ? b : 0), o,
                                            wb, WithSlope ? dwb : nullptr, &inside[a * B + b]);
        reach[b] = std::max(reach[b], r);
        for (int m = 0; m < N; ++m) {
          offset[(a * N + m) * B + b] = o[m];
          weight[(a * N + m) * B + b] = wb[m];
          if constexpr (WithSlope) slope[(a * N + m) * B + b] = dwb[m];
        }
      }
    }
  }
};

/// Lane b of v[a] = component a of point b of `count` (<= B) consecutive points of D
/// interleaved components at u (u[b * D + a]); lanes from `count` on are 0.
template <int D, int B>
inline void loadComponentLanes(const PetscScalar* u, int count, detail::Doubles<B> (&v)[D]) {
  using Real = detail::Doubles<B>;
  if (count < B) {
    PetscScalar padded[D * B] = {};
    std::memcpy(padded, u, sizeof(PetscScalar) * static_cast<size_t>(count * D));
    loadComponentLanes<D, B>(padded, B, v);
    return;
  }
  if constexpr (D == 1) {
    std::memcpy(&v[0], u, sizeof v[0]);
#if defined(__clang__) || __GNUC__ >= 12
  } else if constexpr (D == 2 && B == 8) {
    Real r0, r1;
    std::memcpy(&r0, u, sizeof r0);
    std::memcpy(&r1, u + B, sizeof r1);
    v[0] = __builtin_shufflevector(r0, r1, 0, 2, 4, 6, 8, 10, 12, 14);
    v[1] = __builtin_shufflevector(r0, r1, 1, 3, 5, 7, 9, 11, 13, 15);
  } else if constexpr (D == 2 && B == 4) {
    Real r0, r1;
    std::memcpy(&r0, u, sizeof r0);
    std::memcpy(&r1, u + B, sizeof r1);
    v[0] = __builtin_shufflevector(r0, r1, 0, 2, 4, 6);
    v[1] = __builtin_shufflevector(r0, r1, 1, 3, 5, 7);
  } else if constexpr (D == 3 && B == 4) {
    // Component a of point b is element 3b + a of r0 r1 r2 (elements 8 on are r2's).
    Real r0, r1, r2;
    std::memcpy(&r0, u, sizeof r0);
    std::memcpy(&r1, u + B, sizeof r1);
    std::memcpy(&r2, u + 2 * B, sizeof r2);
    const Real t0 = __builtin_shufflevector(r0, r1, 0, 3, 6, 0);
    const Real t1 = __builtin_shufflevector(r0, r1, 1, 4, 7, 0);
    const Real t2 = __builtin_shufflevector(r0, r1, 2, 5, 0, 0);
    v[0] = __builtin_shufflevector(t0, r2, 0, 1, 2, 5);
    v[1] = __builtin_shufflevector(t1, r2, 0, 1, 2, 6);
    v[2] = __builtin_shufflevector(t2, r2, 0, 1, 4, 7);
  } else if constexpr (D == 3 && B == 8) {
    // Component a of point b is element 3b + a of r0 r1 r2: the first points' from r0 r1,
    // the rest from r2 (its elements are 16 on).
    Real r0, r1, r2;
    std::memcpy(&r0, u, sizeof r0);
    std::memcpy(&r1, u + B, sizeof r1);
    std::memcpy(&r2, u + 2 * B, sizeof r2);
    const Real t0 = __builtin_shufflevector(r0, r1, 0, 3, 6, 9, 12, 15, 0, 0);
    const Real t1 = __builtin_shufflevector(r0, r1, 1, 4, 7, 10, 13, 0, 0, 0);
    const Real t2 = __builtin_shufflevector(r0, r1, 2, 5, 8, 11, 14, 0, 0, 0);
    v[0] = __builtin_shufflevector(t0, r2, 0, 1, 2, 3, 4, 5, 10, 13);
    v[1] = __builtin_shufflevector(t1, r2, 0, 1, 2, 3, 4, 8, 11, 14);
    v[2] = __builtin_shufflevector(t2, r2, 0, 1, 2, 3, 4, 9, 12, 15);
#endif
  } else {
    for (int a = 0; a < D; ++a)
      for (int b = 0; b < B; ++b) v[a][b] = u[b * D + a];
  }
}

/// The inverse of loadComponentLanes for B points: u[b * D + a] = lane b of v[a].
template <int D, int B>
inline void storeComponentLanes(const detail::Doubles<B> (&v)[D], PetscScalar* u) {
  using Real = detail::Doubles<B>;
  if constexpr (false) {
#if defined(__clang__) || __GNUC__ >= 12
  } else if constexpr (D == 2 && B == 8) {
    const Real r[2] = {__builtin_shufflevector(v[0], v[1], 0, 8, 1, 9, 2, 10, 3, 11),
                       __builtin_shufflevector(v[0], v[1], 4, 12, 5, 13, 6, 14, 7, 15)};
    std::memcpy(u, r, sizeof r);
  } else if constexpr (D == 3 && B == 8) {
    // Entry e of the output is lane e / 3 of v[e % 3]: two lanes from v[0] and v[1],
    // then those of v[2] (indices 8 on are the second operand's).
    const Real t0 = __builtin_shufflevector(v[0], v[1], 0, 8, 0, 1, 9, 0, 2, 10);
    const Real t1 = __builtin_shufflevector(v[0], v[1], 0, 3, 11, 0, 4, 12, 0, 5);
    const Real t2 = __builtin_shufflevector(v[0], v[1], 13, 0, 6, 14, 0, 7, 15, 0);
    const Real r[3] = {__builtin_shufflevector(t0, v[2], 0, 1, 8, 3, 4, 9, 6, 7),
                       __builtin_shufflevector(t1, v[2], 10, 1, 2, 11, 4, 5, 12, 7),
                       __builtin_shufflevector(t2, v[2], 0, 13, 2, 3, 14, 5, 6, 15)};
    std::memcpy(u, r, sizeof r);
#endif
  } else {
    for (int a = 0; a < D; ++a)
      for (int b = 0; b < B; ++b) u[b * D + a] = v[a][b];
  }
}

// ---------------------------------------------------------------------------------------
// Kernels on one stencil.  `offset` and `weight` are [D][N] arrays (axis-major, flattened);
// `a` is the local array already offset by the component.  The order of the sums is fixed,
// so results do not depend on the parallel layout.

template <int D, int N>
inline double gatherAt(const PetscInt* offset, const double* weight, const PetscScalar* a) {
  if constexpr (D == 1) {
    double s = 0.0;
    for (int m = 0; m < N; ++m) s += weight[m] * a[offset[m]];
    return s;
  } else if constexpr (D == 2) {
    double s = 0.0;
    for (int b = 0; b < N; ++b) {
      const PetscScalar* row = a + offset[N + b];
      double r = 0.0;
      for (int m = 0; m < N; ++m) r += weight[m] * row[offset[m]];
      s += weight[N + b] * r;
    }
    return s;
  } else {
    double s = 0.0;
    for (int c = 0; c < N; ++c) {
      double plane = 0.0;
      for (int b = 0; b < N; ++b) {
        const PetscScalar* row = a + offset[2 * N + c] + offset[N + b];
        double r = 0.0;
        for (int m = 0; m < N; ++m) r += weight[m] * row[offset[m]];
        plane += weight[N + b] * r;
      }
      s += weight[2 * N + c] * plane;
    }
    return s;
  }
}

/// a_n += W_n value for every node: the transpose of gatherAt.
template <int D, int N>
inline void scatterAddAt(const PetscInt* offset, const double* weight, double value,
                         PetscScalar* a) {
  if constexpr (D == 1) {
    for (int m = 0; m < N; ++m) a[offset[m]] += weight[m] * value;
  } else if constexpr (D == 2) {
    for (int b = 0; b < N; ++b) {
      PetscScalar* row = a + offset[N + b];
      const double vb = weight[N + b] * value;
      for (int m = 0; m < N; ++m) row[offset[m]] += weight[m] * vb;
    }
  } else {
    for (int c = 0; c < N; ++c) {
      const double vc = weight[2 * N + c] * value;
      for (int b = 0; b < N; ++b) {
        PetscScalar* row = a + offset[2 * N + c] + offset[N + b];
        const double vb = weight[N + b] * vc;
        for (int m = 0; m < N; ++m) row[offset[m]] += weight[m] * vb;
      }
    }
  }
}

/// grad[d] = d u(q) / d q_d (index units; divide by h_d for d/dx_d).  `slope` is [D][N].
template <int D, int N>
inline void gradientAt(const PetscInt* offset, const double* weight, const double* slope,
                       const PetscScalar* a, double* grad) {
  if constexpr (D == 1) {
    double g = 0.0;
    for (int m = 0; m < N; ++m) g += slope[m] * a[offset[m]];
    grad[0] = g;
  } else if constexpr (D == 2) {
    double gx = 0.0, gy = 0.0;
    for (int b = 0; b < N; ++b) {
      const PetscScalar* row = a + offset[N + b];
      double r = 0.0, rx = 0.0;
      for (int m = 0; m < N; ++m) {
        r += weight[m] * row[offset[m]];
        rx += slope[m] * row[offset[m]];
      }
      gx += weight[N + b] * rx;
      gy += slope[N + b] * r;
    }
    grad[0] = gx;
    grad[1] = gy;
  } else {
    double gx = 0.0, gy = 0.0, gz = 0.0;
    for (int c = 0; c < N; ++c) {
      double p = 0.0, px = 0.0, py = 0.0;
      for (int b = 0; b < N; ++b) {
        const PetscScalar* row = a + offset[2 * N + c] + offset[N + b];
        double r = 0.0, rx = 0.0;
        for (int m = 0; m < N; ++m) {
          r += weight[m] * row[offset[m]];
          rx += slope[m] * row[offset[m]];
        }
        p += weight[N + b] * r;
        px += weight[N + b] * rx;
        py += slope[N + b] * r;
      }
      gx += weight[2 * N + c] * px;
      gy += weight[2 * N + c] * py;
      gz += slope[2 * N + c] * p;
    }
    grad[0] = gx;
    grad[1] = gy;
    grad[2] = gz;
  }
}

// The same three kernels for all C interleaved components of a node at once (a velocity
// field: C = D).  Per component they form the same sums in the same order as the kernels
// above, so the results are identical; the C adjacent values of a node are loaded and
// updated together, which the compiler turns into vector operations.  The exceptions are
// the gathers and gradients of the 2D velocity (D = C = 2) and of 3D fields: they sum each
// column of the stencil (along y, then z) first and the columns along x after, so that a
// row of N nodes (N * C values, adjacent in the array wherever all its nodes lie in the
// ghost box) enters as one vector; the order is fixed per kernel, not per point, so the
// results still do not depend on the parallel layout or on whether the row was
// contiguous.  Stencil entries are
// read with a stride S: entry (a, m) at offset[(a * N + m) * S], so S = 1 for one point's
// [D][N] arrays and S = B for a point of a StencilBlock<D, N, B>.

namespace detail {
/// Two doubles as one value (GCC/Clang vector extension): the two components of a 2D
/// velocity node, loaded, combined and stored together.  Element-wise arithmetic rounds
/// like the scalar code it replaces (the compiler fuses multiply-adds in vector-extension
/// and scalar code alike).
typedef double Pair __attribute__((vector_size(16)));
inline Pair loadPair(const double* p) {
  Pair v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storePair(double* p, Pair v) { std::memcpy(p, &v, sizeof v); }

// Vectors wider than the target's registers are passed by reference only: by value, GCC
// warns that their calling convention depends on the instruction set (-Wpsabi).
/// L doubles at any double-aligned address, as GCC's and Clang's own unaligned intrinsic
/// types are declared (may_alias: the load may read memory written as double).
template <int L>
struct UnalignedDoubleVector {
  typedef double type
      __attribute__((vector_size(sizeof(double) * L), aligned(alignof(double)), may_alias));
};

/// v = the L doubles at p, as one vector load.  (A memcpy per vector was merged by GCC into
/// one copy of a whole stencil row to the stack in 16-byte pieces, which the wider loads
/// after it could not forward from: with AVX2 the 3D Burgers step took 3.5 times as long.)
template <int L>
inline void loadDoubles(const double* p, Doubles<L>& v) {
  v = *reinterpret_cast<const typename UnalignedDoubleVector<L>::type*>(p);
}

/// Stores the L doubles of v at p (any double-aligned address), as one vector store.
template <int L>
inline void storeDoubles(double* p, const Doubles<L>& v) {
  *reinterpret_cast<typename UnalignedDoubleVector<L>::type*>(p) = v;
}

/// True when the N nodes of a stencil row (x offsets, S apart) are adjacent in the array,
/// C values each: the row is then one run of N * C values.
template <int N, int C, int S>
inline bool rowIsContiguous(const PetscInt* offset) {
  bool contiguous = true;
  for (int m = 1; m < N; ++m) contiguous &= offset[m * S] == offset[0] + m * C;
  return contiguous;
}

/// sum_m w_m {v[2m], v[2m + 1]} over the nodes m = 0, 1, ... in that order (w S apart).
template <int N, int S>
inline Pair weightedNodeSum(const double* w, const Doubles<2 * N>& v) {
  Pair s = w[0] * Pair{v[0], v[1]};
  for (int m = 1; m < N; ++m) s += w[m * S] * Pair{v[2 * m], v[2 * m + 1]};
  return s;
}

/// Column sums of a 2D two-component stencil at node m of the rows: sum_b wy_b u(b, m), in
/// the order of b (wy are the y weights, or slopes, S apart).
template <int N, int S>
inline Pair columnSum(const PetscScalar* a, const PetscInt* offset, const double* wy, int m) {
  Pair c = wy[0] * loadPair(a + offset[N * S] + offset[m * S]);
  for (int b = 1; b < N; ++b) c += wy[b * S] * loadPair(a + offset[(N + b) * S] + offset[m * S]);
  return c;
}

/// The gradient part of a 2D two-component stencil: gx = sum_m sx_m sum_b wy_b u(b, m)
/// and gy = sum_m wx_m sum_b sy_b u(b, m) (each a pair over the components), the column
/// sums taken as whole rows where the row is contiguous.  With `value` not null, also the
/// interpolated value sum_m wx_m sum_b wy_b u(b, m) from the same column sums, exactly as
/// gatherAtComponents forms it.
template <int N, int S>
inline void gradientOfPairs(const PetscInt* offset, const double* weight, const double* slope,
                            const PetscScalar* a, Pair& gx, Pair& gy, Pair* value = nullptr) {
  const double* wy = weight + N * S;
  const double* sy = slope + N * S;
  if (rowIsContiguous<N, 2, S>(offset)) {
    const PetscScalar* row = a + offset[0];
    Doubles<2 * N> v;
    loadDoubles<2 * N>(row + offset[N * S], v);
    Doubles<2 *N> cw = wy[0] * v, cs = sy[0] * v;
    for (int b = 1; b < N; ++b) {
      loadDoubles<2 * N>(row + offset[(N + b) * S], v);
      cw += wy[b * S] * v;
      cs += sy[b * S] * v;
    }
    gx = weightedNodeSum<N, S>(slope, cw);
    gy = weightedNodeSum<N, S>(weight, cs);
    if (value) *value = weightedNodeSum<N, S>(weight, cw);
    return;
  }
  for (int m = 0; m < N; ++m) {
    const Pair column = columnSum<N, S>(a, offset, wy, m);
    const Pair tx = slope[m * S] * column;
    const Pair ty = weight[m * S] * columnSum<N, S>(a, offset, sy, m);
    gx = m == 0 ? tx : gx + tx;
    gy = m == 0 ? ty : gy + ty;
    if (value) {
      const Pair t = weight[m * S] * column;
      *value = m == 0 ? t : *value + t;
    }
  }
}

/// A row of a 3D stencil of C-component nodes: N * C values, node-major (value m * C + c is
/// component c of node m), held as K vectors of W doubles.
template <int N, int C>
struct StencilRow {
  static constexpr int kValues = N * C;
  static constexpr int W = kValues % 4 == 0 ? 4 : (kValues % 2 == 0 ? 2 : 1);
  static constexpr int K = kValues / W;
  Doubles<W> v[K];
  double at(int e) const { return v[e / W][e % W]; }
};

/// Row b of plane k of a 3D stencil.  Contiguous: the row is one run of the array.
template <int N, int C, int S, bool Contiguous>
inline void loadRow(const PetscScalar* a, const PetscInt* offset, int k, int b,
                    StencilRow<N, C>& r) {
  using Row = StencilRow<N, C>;
  const PetscScalar* row = a + offset[(2 * N + k) * S] + offset[(N + b) * S];
  if constexpr (Contiguous) {
    for (int i = 0; i < Row::K; ++i) loadDoubles<Row::W>(row + offset[0] + i * Row::W, r.v[i]);
  } else {
    double v[N * C];
    for (int m = 0; m < N; ++m)
      for (int c = 0; c < C; ++c) v[m * C + c] = row[offset[m * S] + c];
    static_assert(sizeof r.v == sizeof v, "a row is N * C doubles");
    std::memcpy(r.v, v, sizeof v);
  }
}

/// t = w r (first term) or t += w r, vector by vector.
template <int N, int C>
inline void scaled(StencilRow<N, C>& t, double w, const StencilRow<N, C>& r) {
  for (int i = 0; i < StencilRow<N, C>::K; ++i) t.v[i] = w * r.v[i];
}
template <int N, int C>
inline void addScaled(StencilRow<N, C>& t, double w, const StencilRow<N, C>& r) {
  for (int i = 0; i < StencilRow<N, C>::K; ++i) t.v[i] += w * r.v[i];
}

/// out[c] = sum_m wx_m col[m * C + c], summed in the order of m (wx S apart).
template <int N, int C, int S>
inline void sumOverNodes(const double* wx, const StencilRow<N, C>& col, double* out) {
  for (int c = 0; c < C; ++c) {
    double s = wx[0] * col.at(c);
    for (int m = 1; m < N; ++m) s += wx[m * S] * col.at(m * C + c);
    out[c] = s;
  }
}

/// The 3D gather of C-component nodes, columns first: out[c] = sum_m wx_m sum_k wz_k
/// sum_b wy_b u(k, b, m, c), each sum in index order (first terms assigned, the rest
/// added), a row's N * C values combined as vectors.
template <int N, int C, int S, bool Contiguous>
inline void gather3(const PetscInt* offset, const double* weight, const PetscScalar* a,
                    double* out) {
  StencilRow<N, C> col, plane, r;
  // plane = sum_b wy_b row(k, b)
  const auto planeSum = [&](int k) {
    loadRow<N, C, S, Contiguous>(a, offset, k, 0, r);
    scaled(plane, weight[N * S], r);
    for (int b = 1; b < N; ++b) {
      loadRow<N, C, S, Contiguous>(a, offset, k, b, r);
      addScaled(plane, weight[(N + b) * S], r);
    }
  };
  planeSum(0);
  scaled(col, weight[2 * N * S], plane);
  for (int k = 1; k < N; ++k) {
    planeSum(k);
    addScaled(col, weight[(2 * N + k) * S], plane);
  }
  sumOverNodes<N, C, S>(weight, col, out);
}

/// The 3D gradient of C-component nodes in the order of gather3: grad[c * 3 + a] = d u_c /
/// d q_a, with the slope in place of the weight along axis a.  With `value` not null, also
/// the gather3 result (from the same column sums, the same numbers).
template <int N, int C, int S, bool Contiguous>
inline void gradient3(const PetscInt* offset, const double* weight, const double* slope,
                      const PetscScalar* a, double* grad, double* value = nullptr) {
  // cw: weights along y and z; cy: slope along y; cz: slope along z.
  StencilRow<N, C> cw, cy, cz, pw, py, r;
  // pw = sum_b wy_b row(k, b), py = sum_b sy_b row(k, b)
  const auto planeSums = [&](int k) {
    loadRow<N, C, S, Contiguous>(a, offset, k, 0, r);
    scaled(pw, weight[N * S], r);
    scaled(py, slope[N * S], r);
    for (int b = 1; b < N; ++b) {
      loadRow<N, C, S, Contiguous>(a, offset, k, b, r);
      addScaled(pw, weight[(N + b) * S], r);
      addScaled(py, slope[(N + b) * S], r);
    }
  };
  planeSums(0);
  scaled(cw, weight[2 * N * S], pw);
  scaled(cy, weight[2 * N * S], py);
  scaled(cz, slope[2 * N * S], pw);
  for (int k = 1; k < N; ++k) {
    planeSums(k);
    const double wz = weight[(2 * N + k) * S], sz = slope[(2 * N + k) * S];
    addScaled(cw, wz, pw);
    addScaled(cy, wz, py);
    addScaled(cz, sz, pw);
  }
  double gx[C], gy[C], gz[C];
  sumOverNodes<N, C, S>(slope, cw, gx);
  sumOverNodes<N, C, S>(weight, cy, gy);
  sumOverNodes<N, C, S>(weight, cz, gz);
  if (value) sumOverNodes<N, C, S>(weight, cw, value);
  for (int c = 0; c < C; ++c) {
    grad[c * 3] = gx[c];
    grad[c * 3 + 1] = gy[c];
    grad[c * 3 + 2] = gz[c];
  }
}
}  // namespace detail

/// out[c] = gatherAt<D, N>(offset, weight, a + c) for c < C.
template <int D, int N, int C, int S = 1>
inline void gatherAtComponents(const PetscInt* offset, const double* weight, const PetscScalar* a,
                               double* out) {
  double s[C] = {};
  if constexpr (D == 2 && C == 2) {
    // Columns first (see above): sum_m wx_m sum_b wy_b u(b, m), both components at once.
    using detail::Pair;
    const double* wy = weight + N * S;
    Pair sum;
    if (detail::rowIsContiguous<N, 2, S>(offset)) {
      const PetscScalar* row = a + offset[0];
      detail::Doubles<2 * N> v, col;
      detail::loadDoubles<2 * N>(row + offset[N * S], v);
      col = wy[0] * v;
      for (int b = 1; b < N; ++b) {
        detail::loadDoubles<2 * N>(row + offset[(N + b) * S], v);
        col += wy[b * S] * v;
      }
      sum = detail::weightedNodeSum<N, S>(weight, col);
    } else {
      for (int m = 0; m < N; ++m) {
        const Pair t = weight[m * S] * detail::columnSum<N, S>(a, offset, wy, m);
        sum = m == 0 ? t : sum + t;
      }
    }
    out[0] = sum[0];
    out[1] = sum[1];
    return;
  } else if constexpr (D == 1) {
    for (int m = 0; m < N; ++m)
      for (int c = 0; c < C; ++c) s[c] += weight[m * S] * a[offset[m * S] + c];
  } else if constexpr (D == 2) {
    for (int b = 0; b < N; ++b) {
      const PetscScalar* row = a + offset[(N + b) * S];
      double r[C] = {};
      for (int m = 0; m < N; ++m)
        for (int c = 0; c < C; ++c) r[c] += weight[m * S] * row[offset[m * S] + c];
      for (int c = 0; c < C; ++c) s[c] += weight[(N + b) * S] * r[c];
    }
  } else {
    // Columns first (see above).
    if (detail::rowIsContiguous<N, C, S>(offset))
      detail::gather3<N, C, S, true>(offset, weight, a, out);
    else
      detail::gather3<N, C, S, false>(offset, weight, a, out);
    return;
  }
  for (int c = 0; c < C; ++c) out[c] = s[c];
}

/// scatterAddAt<D, N>(offset, weight, value[c], a + c) for c < C.
template <int D, int N, int C, int S = 1>
inline void scatterAddAtComponents(const PetscInt* offset, const double* weight,
                                   const double* value, PetscScalar* a) {
  if constexpr (D == 1) {
    for (int m = 0; m < N; ++m)
      for (int c = 0; c < C; ++c) a[offset[m * S] + c] += weight[m * S] * value[c];
  } else if constexpr (D == 2) {
    for (int b = 0; b < N; ++b) {
      PetscScalar* row = a + offset[(N + b) * S];
      double vb[C];
      for (int c = 0; c < C; ++c) vb[c] = weight[(N + b) * S] * value[c];
      for (int m = 0; m < N; ++m)
        for (int c = 0; c < C; ++c) row[offset[m * S] + c] += weight[m * S] * vb[c];
    }
  } else {
    for (int k = 0; k < N; ++k) {
      double vk[C];
      for (int c = 0; c < C; ++c) vk[c] = weight[(2 * N + k) * S] * value[c];
      for (int b = 0; b < N; ++b) {
        PetscScalar* row = a + offset[(2 * N + k) * S] + offset[(N + b) * S];
        double vb[C];
        for (int c = 0; c < C; ++c) vb[c] = weight[(N + b) * S] * vk[c];
        if constexpr (C == 3) {
          // A node's first two components as one vector, the third alone: two updates of
          // memory per node instead of three, the same products.
          const detail::Pair vb01 = {vb[0], vb[1]};
          for (int m = 0; m < N; ++m) {
            PetscScalar* node = row + offset[m * S];
            detail::storePair(node, detail::loadPair(node) + weight[m * S] * vb01);
            node[2] += weight[m * S] * vb[2];
          }
        } else {
          for (int m = 0; m < N; ++m)
            for (int c = 0; c < C; ++c) row[offset[m * S] + c] += weight[m * S] * vb[c];
        }
      }
    }
  }
}

/// Along one row of nodes: r[c] = sum_m weight[m * S] row[offset[m * S] + c] and rx[c] the same
/// with slope, for c < C.
template <int N, int C, int S = 1>
inline void rowValueAndSlope(const PetscScalar* row, const PetscInt* offset, const double* weight,
                             const double* slope, double* r, double* rx) {
  for (int c = 0; c < C; ++c) r[c] = rx[c] = 0.0;
  for (int m = 0; m < N; ++m) {
    for (int c = 0; c < C; ++c) {
      const double v = row[offset[m * S] + c];
      r[c] += weight[m * S] * v;
      rx[c] += slope[m * S] * v;
    }
  }
}

/// gradientAt<D, N>(offset, weight, slope, a + c, grad + c * D) for c < C.
template <int D, int N, int C, int S = 1>
inline void gradientAtComponents(const PetscInt* offset, const double* weight, const double* slope,
                                 const PetscScalar* a, double* grad) {
  if constexpr (D == 1) {
    double g[C] = {};
    for (int m = 0; m < N; ++m)
      for (int c = 0; c < C; ++c) g[c] += slope[m * S] * a[offset[m * S] + c];
    for (int c = 0; c < C; ++c) grad[c] = g[c];
  } else if constexpr (D == 2 && C == 2) {
    detail::Pair gx, gy;
    detail::gradientOfPairs<N, S>(offset, weight, slope, a, gx, gy);
    grad[0] = gx[0];
    grad[1] = gy[0];
    grad[2] = gx[1];
    grad[3] = gy[1];
  } else if constexpr (D == 2) {
    double gx[C] = {}, gy[C] = {};
    for (int b = 0; b < N; ++b) {
      double r[C], rx[C];
      rowValueAndSlope<N, C, S>(a + offset[(N + b) * S], offset, weight, slope, r, rx);
      for (int c = 0; c < C; ++c) {
        gx[c] += weight[(N + b) * S] * rx[c];
        gy[c] += slope[(N + b) * S] * r[c];
      }
    }
    for (int c = 0; c < C; ++c) {
      grad[c * 2] = gx[c];
      grad[c * 2 + 1] = gy[c];
    }
  } else {
    // Columns first, as gatherAtComponents.
    if (detail::rowIsContiguous<N, C, S>(offset))
      detail::gradient3<N, C, S, true>(offset, weight, slope, a, grad);
    else
      detail::gradient3<N, C, S, false>(offset, weight, slope, a, grad);
  }
}

/// gatherAtComponents(offset, weight, a, out) and gradientAtComponents(offset, weight,
/// slope, a, grad) in one walk over the stencil, each node read once (in 2D and 3D the value
/// is the gradient's column sums taken with the weights).  The same sums in the same order:
/// equal numbers in 1D and 2D; in 3D the compiler may fuse the multiply-adds of the two
/// kernels differently (measured: values apart by 7e-17 relative).
template <int D, int N, int C, int S = 1>
inline void gatherAndGradientAtComponents(const PetscInt* offset, const double* weight,
                                          const double* slope, const PetscScalar* a, double* out,
                                          double* grad) {
  if constexpr (D == 2 && C == 2) {
    detail::Pair gx, gy, value;
    detail::gradientOfPairs<N, S>(offset, weight, slope, a, gx, gy, &value);
    out[0] = value[0];
    out[1] = value[1];
    grad[0] = gx[0];
    grad[1] = gy[0];
    grad[2] = gx[1];
    grad[3] = gy[1];
  } else if constexpr (D == 3) {
    if (detail::rowIsContiguous<N, C, S>(offset))
      detail::gradient3<N, C, S, true>(offset, weight, slope, a, grad, out);
    else
      detail::gradient3<N, C, S, false>(offset, weight, slope, a, grad, out);
  } else {
    gatherAtComponents<D, N, C, S>(offset, weight, a, out);
    gradientAtComponents<D, N, C, S>(offset, weight, slope, a, grad);
  }
}

/// scatterAddAtComponents<3, N, C, S> for a stencil whose rows are runs of adjacent nodes:
/// each row's N * C values updated as a few vectors, with the same products and sums per
/// entry.  Right in any order of calls, but a vector load that overlaps a recent store only
/// in part waits until that store reaches the cache: it pays where the next call's
/// overlapping rows come late enough (16 rows per 3D stencil) or touch other nodes.
template <int N, int C, int S>
inline void scatterAddRuns3(const PetscInt* offset, const double* weight, const double* value,
                            PetscScalar* a) {
  using Row = detail::StencilRow<N, C>;
  double coefficient[N * C];
  for (int m = 0; m < N; ++m)
    for (int c = 0; c < C; ++c) coefficient[m * C + c] = weight[m * S];
  Row wx, scaled;
  std::memcpy(wx.v, coefficient, sizeof coefficient);
  PetscScalar* base = a + offset[0];
  for (int k = 0; k < N; ++k) {
    double vk[C];
    for (int c = 0; c < C; ++c) vk[c] = weight[(2 * N + k) * S] * value[c];
    for (int b = 0; b < N; ++b) {
      double vb[N * C];
      for (int c = 0; c < C; ++c) vb[c] = weight[(N + b) * S] * vk[c];
      for (int m = 1; m < N; ++m)
        for (int c = 0; c < C; ++c) vb[m * C + c] = vb[c];
      std::memcpy(scaled.v, vb, sizeof vb);
      PetscScalar* row = base + offset[(2 * N + k) * S] + offset[(N + b) * S];
      for (int i = 0; i < Row::K; ++i) {
        detail::Doubles<Row::W> r;
        detail::loadDoubles<Row::W>(row + i * Row::W, r);
        r += wx.v[i] * scaled.v[i];
        detail::storeDoubles<Row::W>(row + i * Row::W, r);
      }
    }
  }
}

namespace detail {
/// scatterAddAtComponents<2, N, 2, S>, both components of a node as one vector value, node
/// by node: consecutive points update overlapping runs of nodes, and a run stored as one
/// wide vector would defeat the store-to-load forwarding of the next point's partially
/// overlapping load.  The same products as the general branch.
template <int N, int S>
inline void scatterAddPairs(const PetscInt* offset, const double* weight, const double* value,
                            PetscScalar* z) {
  const Pair val = {value[0], value[1]};
  for (int b = 0; b < N; ++b) {
    PetscScalar* zrow = z + offset[(N + b) * S];
    const Pair vb = weight[(N + b) * S] * val;
    for (int m = 0; m < N; ++m) {
      PetscScalar* node = zrow + offset[m * S];
      storePair(node, loadPair(node) + weight[m * S] * vb);
    }
  }
}
}  // namespace detail

/// The scatter-add of scatterAddAndGradientAtComponents alone: scatterAddAtComponents, the
/// same numbers, with the memory updates shaped for a sweep over consecutive points (see
/// there).
template <int D, int N, int C, int S = 1>
inline void adjointScatterAddAtComponents(const PetscInt* offset, const double* weight,
                                          const double* value, PetscScalar* z) {
  if constexpr (D == 3) {
    if (detail::rowIsContiguous<N, C, S>(offset))
      scatterAddRuns3<N, C, S>(offset, weight, value, z);
    else
      scatterAddAtComponents<D, N, C, S>(offset, weight, value, z);
  } else if constexpr (D == 2 && C == 2) {
    detail::scatterAddPairs<N, S>(offset, weight, value, z);
  } else {
    scatterAddAtComponents<D, N, C, S>(offset, weight, value, z);
  }
}

/// scatterAddAtComponents(offset, weight, value, z) and gradientAtComponents(offset, weight,
/// slope, a, grad) in one walk over the stencil (an adjoint needs both at each point): the
/// same results, with the offsets and weights read once.  z and a must not overlap.  In 3D
/// a stencil row of adjacent nodes is updated as a few vectors (scatterAddRuns3: with 16
/// rows per stencil the next point's overlapping loads come after the stores have left; on
/// the Xeon guest, Burgers 64^3, its vjp went from 3.7 to about 2.5 forwards.  In 2D, with
/// 4 rows per point, whole-row updates wait on the previous point's stores: node by node).
template <int D, int N, int C, int S = 1>
inline void scatterAddAndGradientAtComponents(const PetscInt* offset, const double* weight,
                                              const double* slope, const double* value,
                                              PetscScalar* z, const PetscScalar* a, double* grad) {
  if constexpr (D != 2) {
    adjointScatterAddAtComponents<D, N, C, S>(offset, weight, value, z);
    gradientAtComponents<D, N, C, S>(offset, weight, slope, a, grad);
  } else {
    PetscInt ox[N];
    double wx[N], sx[N];
    for (int m = 0; m < N; ++m) {
      ox[m] = offset[m * S];
      wx[m] = weight[m * S];
      sx[m] = slope[m * S];
    }
    if constexpr (C == 2) {
      // Both components of a node as one vector value, a contiguous row of the stencil as
      // one longer vector: the gradient as gradientAtComponents forms it, the scatter-add
      // with the same products as the general branch.
      using detail::Pair;
      Pair gx, gy;
      detail::gradientOfPairs<N, S>(offset, weight, slope, a, gx, gy);
      detail::scatterAddPairs<N, S>(offset, weight, value, z);
      grad[0] = gx[0];
      grad[1] = gy[0];
      grad[2] = gx[1];
      grad[3] = gy[1];
    } else {
      double gx[C] = {}, gy[C] = {};
      for (int b = 0; b < N; ++b) {
        const PetscScalar* row = a + offset[(N + b) * S];
        PetscScalar* zrow = z + offset[(N + b) * S];
        const double wy = weight[(N + b) * S], sy = slope[(N + b) * S];
        double r[C] = {}, rx[C] = {}, vb[C];
        for (int c = 0; c < C; ++c) vb[c] = wy * value[c];
        for (int m = 0; m < N; ++m) {
          for (int c = 0; c < C; ++c) {
            const double v = row[ox[m] + c];
            r[c] += wx[m] * v;
            rx[c] += sx[m] * v;
          }
        }
        for (int m = 0; m < N; ++m)
          for (int c = 0; c < C; ++c) zrow[ox[m] + c] += wx[m] * vb[c];
        for (int c = 0; c < C; ++c) {
          gx[c] += wy * rx[c];
          gy[c] += sy * r[c];
        }
      }
      for (int c = 0; c < C; ++c) {
        grad[c * 2] = gx[c];
        grad[c * 2 + 1] = gy[c];
      }
    }
  }
}

/// The smallest and largest value among the stencil's nodes (a limiter's bounds), with the
/// array offset (relative to `a`) of the node attaining each, or -1 when it is a node outside
/// a zero-Dirichlet domain (value 0).  Ties keep the first node in storage order.
struct NodeRange {
  double lo = 0.0, hi = 0.0;
  PetscInt lo_offset = -1, hi_offset = -1;
};

template <int D, int N>
inline NodeRange nodeRangeAt(const PetscInt* offset, const std::uint8_t* inside,
                             const PetscScalar* a) {
  // Gather first, then scan: the loads are independent and the scan compiles to selects.
  constexpr int kNodes = D == 1 ? N : (D == 2 ? N * N : N * N * N);
  double value[kNodes];
  PetscInt at[kNodes];
  int n = 0;
  for (int c = 0; c < (D > 2 ? N : 1); ++c) {
    const bool in_z = D < 3 || ((inside[D > 2 ? 2 : 0] >> c) & 1u);
    const PetscInt off_z = D > 2 ? offset[2 * N + c] : 0;
    for (int b = 0; b < (D > 1 ? N : 1); ++b) {
      const bool in_zy = in_z && (D < 2 || ((inside[D > 1 ? 1 : 0] >> b) & 1u));
      const PetscInt off_zy = off_z + (D > 1 ? offset[N + b] : 0);
      for (int m = 0; m < N; ++m, ++n) {
        const bool in = in_zy && ((inside[0] >> m) & 1u);
        const PetscInt off = off_zy + offset[m];
        const double v = a[off];  // always a valid address: outside nodes point home
        value[n] = in ? v : 0.0;
        at[n] = in ? off : -1;
      }
    }
  }
  NodeRange r{value[0], value[0], at[0], at[0]};
  for (int m = 1; m < kNodes; ++m) {
    const bool lower = value[m]<r.lo, higher = value[m]> r.hi;
    r.lo = lower ? value[m] : r.lo;
    r.lo_offset = lower ? at[m] : r.lo_offset;
    r.hi = higher ? value[m] : r.hi;
    r.hi_offset = higher ? at[m] : r.hi_offset;
  }
  return r;
}

/// Calls f(std::integral_constant<int, D>{}, std::integral_constant<int, N>{}) for the
/// grid dimension and interpolation kind, so that kernels run with compile-time loops.
template <typename F>
void withStencilShape(int dim, Interpolation kind, F&& f) {
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Three = std::integral_constant<int, 3>;
  using Four = std::integral_constant<int, 4>;
  const bool cubic = kind == Interpolation::Cubic;
  switch (dim) {
    case 1:
      cubic ? f(One{}, Four{}) : f(One{}, Two{});
      break;
    case 2:
      cubic ? f(Two{}, Four{}) : f(Two{}, Two{});
      break;
    default:
      cubic ? f(Three{}, Four{}) : f(Three{}, Two{});
      break;
  }
}

/// Precomputed stencils, one per owned point of a grid (in forEachOwned order), for
/// interpolation points that do not change between applies (the departure points of a
/// given velocity).  Memory: dim * nodesPerAxis * 16 bytes per point (3D cubic: 192 B).
///
/// A uniform table (InterpolationTable::uniform) holds one stencil for all points instead:
/// the interpolation point of every point lies at the same displacement from it (a constant
/// velocity on a periodic grid).  Its gather and scatterAdd are sweeps of a constant
/// stencil along the grid rows, which vectorize and need no per-point memory; they sum in
/// a different order than a per-point table would, so results agree to round-off.
class InterpolationTable {
 public:
  /// `points` holds dim index coordinates per owned point; the result at owned point p is
  /// interpolated at points[p * dim ...].  Not collective.
  InterpolationTable(const LocalArrayLayout& layout, Interpolation kind,
                     const std::vector<double>& points);
  /// The table whose interpolation point for every owned point i is i + displacement (index
  /// units, per used axis).  Only for periodic grids, where every stencil node carries data
  /// (throws std::logic_error otherwise).  Not collective.
  static std::unique_ptr<InterpolationTable> uniform(const LocalArrayLayout& layout,
                                                     Interpolation kind,
                                                     const std::array<double, 3>& displacement);

  Interpolation kind() const { return kind_; }
  int dim() const { return dim_; }
  int nodes() const { return nodes_; }
  PetscInt size() const { return count_; }
  /// Largest stencil reach on this rank; the table is valid iff it is <= the ghost width
  /// (check it collectively before applying).
  PetscInt reach() const { return reach_; }
  bool isUniform() const { return uniform_; }

  /// out[p * dof + c] = component c interpolated at point p, from a local array with
  /// valid corner ghosts.
  void gather(const PetscScalar* local, PetscScalar* out) const;
  /// local[...] += the transpose of gather applied to values (the caller zeroes local and
  /// sums the ghost contributions into their owners, CornerGhostExchange::addLocalToGlobal).
  /// values and local must not overlap.
  void scatterAdd(const PetscScalar* values, PetscScalar* local) const;
  /// Per-point tables: scatterAdd along a SweepAccumulator built on `local` with a reach of
  /// at least reach(): each line announced before its points scatter, finishOwned() at the
  /// end.  The caller then sums and zeroes the ghost entries as SweepAccumulator says.
  void scatterAddSweep(const PetscScalar* values, PetscScalar* local, SweepAccumulator& sum) const;

  /// Uniform tables only: gather with the owned values read from `owned` (the global Vec's
  /// array, forEachOwned order) and only the ghost values from `local`
  /// (CornerGhostExchange::ghostsToLocal): the same result as gather() from a full local
  /// copy.
  void gatherSplit(const PetscScalar* owned, const PetscScalar* local, PetscScalar* out) const;
  /// transposeGather from the same split source.  With `combined`, out = scale * (the
  /// transpose applied to w) + addend_scale * addend instead: each stretch of out is
  /// combined with the addend (an owned array like out) right after it is computed, while
  /// it is in cache, which saves a separate pass over memory.
  struct Combination {
    double scale = 1.0, addend_scale = 0.0;
    const PetscScalar* addend = nullptr;
  };
  void transposeGatherSplit(const PetscScalar* owned, const PetscScalar* w_local, PetscScalar* out,
                            const Combination* combined = nullptr) const;
  /// Uniform tables only: out = the transpose of gather applied to w, computed as a gather
  /// of the mirrored stencil from a local array of w with its ghosts (periodic images), so
  /// that no ghost contributions need summing afterwards.  The same sums as scatterAdd
  /// followed by the ghost sum, in a different order.
  void transposeGather(const PetscScalar* w_local, PetscScalar* out) const;

  /// Per-point tables: builds the transpose of gather as a table over the owned nodes
  /// (transposeByNodes reads it): nodes^dim slots per node (a point index, 4 B, and a
  /// weight, 8 B), 48 B per point for linear stencils in 2D and 96 B in 3D, plus 16 B for
  /// each term that lands on a ghost entry or beyond a node's slots.  Not collective;
  /// idempotent.
  void buildNodeTranspose();
  bool hasNodeTranspose() const { return node_slots_ > 0; }
  /// Bytes the transposed table takes (0 before buildNodeTranspose).
  size_t nodeTransposeBytes() const;
  /// After buildNodeTranspose: the transpose of gather applied to values, as a gather over
  /// the owned nodes.  out[n * dof + c] (owned node n, forEachOwned order) is assigned the
  /// sum of weight * values[p * dof + c] over the owned points p whose stencils hold node n,
  /// in increasing p; the terms whose node is a ghost entry of the local array are added
  /// into those entries of `local` (which the caller zeroes beforehand, then sums into
  /// their owners, CornerGhostExchange::addGhostsToGlobal); owned entries of local are not
  /// touched.  The result equals scatterAdd followed by the ghost sum up to the order of
  /// the sums (each term is the product of the stencil weights and the value, rounded
  /// differently), for finite values: the padding multiplies a value by 0, so a non-finite
  /// one can reach more nodes (as NaN) than through scatterAdd.  values must not overlap
  /// out or local.
  void transposeByNodes(const PetscScalar* values, PetscScalar* out, PetscScalar* local) const;

  /// Per-point 3D tables of a scalar field, in builds for AVX-512 (elsewhere a no-op): the
  /// stencils of the blocks of 8 points of a grid row (from the row's start) that line up,
  /// each run of nodes along x starting one node after the previous point's and all 8
  /// sharing their rows along y and z, stored again with the points as vector lanes (8 B
  /// per block, and 48 B per point for linear stencils, 96 B for cubic), for
  /// scatterAddSweep to sum
  /// such a block's scatter-add in registers over the window of 9 (linear) or 11 (cubic)
  /// nodes per stencil row, the nodes past the eighth carried into the next block of a
  /// run, instead of point by point.  Each term is then (weight_z weight_y) (weight_x
  /// value), the point-by-point product associated otherwise, and the sums run in another
  /// order.  (SemiLagrangianAdvectionStep builds them for linear stencils only: with cubic
  /// ones the sweep measured slower.)  Not collective; idempotent.
  void buildRowWindows();
  /// {blocks of 8 points that scatterAddSweep sums in a window, all full blocks of 8}.
  std::array<PetscInt, 2> rowWindowBlocks() const;

  /// Per-point tables: the stencil of point p, [dim][nodes] offsets / weights, and dim
  /// inside bitmasks.
  const PetscInt* offsets(PetscInt p) const { return &offset_[p * dim_ * nodes_]; }
  const double* weights(PetscInt p) const { return &weight_[p * dim_ * nodes_]; }
  const std::uint8_t* inside(PetscInt p) const { return &inside_[p * dim_]; }
  /// Uniform tables: the nodes^dim nodes of the one stencil (x fastest, the order of
  /// nodeRangeAt), as array offsets from the home point.
  const std::vector<PetscInt>& uniformOffsets() const { return offset_; }
  const LocalArrayLayout& layout() const { return layout_; }

 private:
  InterpolationTable(const LocalArrayLayout& layout, Interpolation kind);

  LocalArrayLayout layout_;
  Interpolation kind_;
  int dim_, nodes_;
  PetscInt dof_, count_, reach_ = 0;
  bool uniform_ = false;
  // Uniform tables: per axis the first node's shift from the home point (in points) and
  // the 1D weights.
  PetscInt axis_first_[3] = {0, 0, 0};
  double axis_weight_[3][4] = {};
  std::vector<PetscInt> offset_;
  std::vector<double> weight_;
  std::vector<std::uint8_t> inside_;
  // buildNodeTranspose: owned node n reads the points slot_point_[n * node_slots_ + s] with
  // the weights slot_weight_[...] (padded with weight 0); the terms beyond node_slots_ are
  // listed apart (node, point, weight), and so are the terms on ghost entries (array
  // offset of the entry, point, weight), each list in increasing point order.
  int node_slots_ = 0;
  // buildRowWindows: per full block of 8 points (rows in storage order), the offset of its
  // window's first node, -1 where the block does not line up; and its [3][nodes][8]
  // weights (lane fastest).
  std::vector<PetscInt> window_first_;
  std::vector<double> window_weight_;
  bool has_windows_ = false;
  std::vector<PetscInt> slot_point_, extra_node_, extra_point_, ghost_entry_, ghost_point_;
  std::vector<double> slot_weight_, extra_weight_, ghost_weight_;
};

}  // namespace physgrad
