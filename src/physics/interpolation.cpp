#include "physgrad/physics/interpolation.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "physgrad/core/error.hpp"
#include "streaming.hpp"

namespace physgrad {

const char* toString(Interpolation kind) {
  return kind == Interpolation::Linear ? "linear" : "cubic";
}

Interpolation parseInterpolation(const std::string& text, const std::string& option) {
  if (text == "linear") return Interpolation::Linear;
  if (text == "cubic") return Interpolation::Cubic;
  throw InputError("option " + option + ": unknown interpolation '" + text +
                   "' (allowed: linear, cubic)");
}

// ---------------------------------------------------------------------------------------

LocalArrayLayout::LocalArrayLayout(const Grid& grid)
    : dim_(grid.dim()),
      dof_(grid.dof()),
      ghost_width_(grid.spec().stencil_width),
      periodic_(grid.boundary() == Boundary::Periodic),
      node_shift_(grid.boundary() == Boundary::Periodic ? 0.5 : 1.0) {
  const IndexBox& g = grid.ghosted();
  PetscInt stride = dof_;
  for (int a = 0; a < 3; ++a) {
    n_[a] = grid.n(a);
    ghost_start_[a] = g.start[a];
    ghost_size_[a] = g.size[a];
    owned_start_[a] = grid.owned().start[a];
    owned_size_[a] = grid.owned().size[a];
    stride_[a] = stride;
    stride *= g.size[a];
    h_[a] = grid.h(a);
  }
}

// ---------------------------------------------------------------------------------------

namespace {

/// Calls f(row, entries, first) for every row of owned points along x: `row` is the local-
/// array offset of component 0 of its first point, `entries` = points * dof, and `first`
/// the index of its first entry in a global Vec's array.
template <class F>
void forEachOwnedRow(const LocalArrayLayout& layout, F&& f) {
  const PetscInt entries = layout.ownedSize(0) * layout.dof();
  PetscInt first = 0;
  for (PetscInt k = 0; k < layout.ownedSize(2); ++k) {
    for (PetscInt j = 0; j < layout.ownedSize(1); ++j, first += entries) {
      f(layout.arrayOffset(layout.ownedStart(0), layout.ownedStart(1) + j,
                           layout.ownedStart(2) + k),
        entries, first);
    }
  }
}

}  // namespace

CornerGhostExchange::CornerGhostExchange(const Grid& grid) : layout_(grid) {
  DM dm = grid.dm();
  PetscInt dim = 0, M = 0, N = 0, P = 0, m = 0, n = 0, p = 0, dof = 0, width = 0;
  DMBoundaryType bx, by, bz;
  DMDAStencilType stencil;
  PG_CALL(DMDAGetInfo(dm, &dim, &M, &N, &P, &m, &n, &p, &dof, &width, &bx, &by, &bz, &stencil));
  if (dim == 1 || stencil == DMDA_STENCIL_BOX) {
    // The grid's own exchange already fills every ghost: share its DM.
    PG_CALL(PetscObjectReference(reinterpret_cast<PetscObject>(dm)));
    box_ = OwnedDM(dm);
    return;
  }
  const PetscInt *lx = nullptr, *ly = nullptr, *lz = nullptr;
  PG_CALL(DMDAGetOwnershipRanges(dm, &lx, &ly, &lz));
  MPI_Comm comm = grid.comm();
  if (dim == 2) {
    PG_CALL(
        DMDACreate2d(comm, bx, by, DMDA_STENCIL_BOX, M, N, m, n, dof, width, lx, ly, box_.out()));
  } else {
    PG_CALL(DMDACreate3d(comm, bx, by, bz, DMDA_STENCIL_BOX, M, N, P, m, n, p, dof, width, lx, ly,
                         lz, box_.out()));
  }
  PG_CALL(DMSetUp(box_));
  // The twin must index local arrays exactly like the grid (same ghost box on every rank).
  PetscInt xs, ys, zs, xm, ym, zm;
  PG_CALL(DMDAGetGhostCorners(box_, &xs, &ys, &zs, &xm, &ym, &zm));
  const IndexBox& g = grid.ghosted();
  const PetscInt start[3] = {xs, ys, zs}, size[3] = {xm, ym, zm};
  for (int a = 0; a < dim; ++a) {
    if (start[a] != g.start[a] || size[a] != g.size[a]) {
      throw std::logic_error(
          "CornerGhostExchange: the box-stencil twin of the grid's DMDA has a "
          "different ghost box");
    }
  }
}

OwnedVec CornerGhostExchange::createLocal() const {
  OwnedVec v;
  PG_CALL(DMCreateLocalVector(box_, v.out()));
  PG_CALL(VecSet(v, 0.0));
  return v;
}

void CornerGhostExchange::globalToLocal(Vec global, Vec local) const {
  // What DMGlobalToLocal gives, faster: the owned entries row by row with memcpy (PETSc's
  // scatter copies them one index at a time, a tenth of a Burgers step at 512^2), then the
  // ghosts through the ghost scatter.
  const PetscScalar* from = nullptr;
  PetscScalar* to = nullptr;
  PG_CALL(VecGetArrayRead(global, &from));
  PG_CALL(VecGetArray(local, &to));
  forEachOwnedRow(layout_, [&](PetscInt row, PetscInt entries, PetscInt first) {
    std::memcpy(to + row, from + first, sizeof(PetscScalar) * static_cast<size_t>(entries));
  });
  PG_CALL(VecRestoreArray(local, &to));
  PG_CALL(VecRestoreArrayRead(global, &from));
  ghostsToLocal(global, local);
}

void CornerGhostExchange::ghostsToLocal(Vec global, Vec local) const {
  // All ghosts, periodic images of owned entries included: kernels read them from local.
  if (!ghost_scatter_) ghost_scatter_ = detail::createGhostScatter(box_, global, local, false);
  PG_CALL(VecScatterBegin(ghost_scatter_, global, local, INSERT_VALUES, SCATTER_FORWARD));
  PG_CALL(VecScatterEnd(ghost_scatter_, global, local, INSERT_VALUES, SCATTER_FORWARD));
}

void CornerGhostExchange::addLocalToGlobal(Vec local, Vec global) const {
  PG_CALL(DMLocalToGlobalBegin(box_, local, ADD_VALUES, global));
  PG_CALL(DMLocalToGlobalEnd(box_, local, ADD_VALUES, global));
}

void CornerGhostExchange::addGhostsToGlobal(Vec local, Vec global) const {
  if (!ghost_scatter_) ghost_scatter_ = detail::createGhostScatter(box_, global, local, false);
  PG_CALL(VecScatterBegin(ghost_scatter_, local, global, ADD_VALUES, SCATTER_REVERSE));
  PG_CALL(VecScatterEnd(ghost_scatter_, local, global, ADD_VALUES, SCATTER_REVERSE));
}

// ---------------------------------------------------------------------------------------

SweepAccumulator::SweepAccumulator(const LocalArrayLayout& layout, PetscInt reach,
                                   PetscScalar* local, PetscScalar* global, bool zeroed, Into into)
    : layout_(layout),
      axis_(layout.dim() == 3 ? 2 : 1),
      reach_(reach),
      local_(local),
      global_(global),
      into_(into),
      current_(layout.ghostStart(axis_) - 1),
      zeroed_to_(zeroed ? layout.ghostStart(axis_) + layout.ghostSize(axis_)
                        : layout.ghostStart(axis_)),
      added_to_(layout.ownedStart(axis_)) {
  if (reach < 0) throw std::logic_error("SweepAccumulator: negative reach");
}

void SweepAccumulator::advanceTo(PetscInt line) {
  if (line < current_) throw std::logic_error("SweepAccumulator: lines must not decrease");
  current_ = line;
  const PetscInt start = layout_.ghostStart(axis_);
  const PetscInt zero_end = std::min(line + reach_ + 1, start + layout_.ghostSize(axis_));
  if (zero_end > zeroed_to_) {
    const PetscInt stride = layout_.stride(axis_);
    std::fill(local_ + (zeroed_to_ - start) * stride, local_ + (zero_end - start) * stride, 0.0);
    zeroed_to_ = zero_end;
  }
  // Points on lines >= `line` reach no line below line - reach.
  for (; added_to_ < line - reach_; ++added_to_) addLine(added_to_);
}

void SweepAccumulator::finishOwned() {
  const PetscInt end = layout_.ownedStart(axis_) + layout_.ownedSize(axis_);
  for (; added_to_ < end; ++added_to_) addLine(added_to_);
}

void SweepAccumulator::addLine(PetscInt line) {
  // Owned rows of the line: one row in 1D and 2D, the owned rows of a plane in 3D.
  const PetscInt dof = layout_.dof(), row = layout_.ownedSize(0) * dof;
  const PetscInt j0 = layout_.ownedStart(1), nj = layout_.ownedSize(1);
  const PetscInt k0 = layout_.ownedStart(2);
  const bool plane = axis_ == 2;
  for (PetscInt j = plane ? j0 : line; j < (plane ? j0 + nj : line + 1); ++j) {
    const PetscInt k = plane ? line : k0;
    PetscScalar* src = local_ + layout_.arrayOffset(layout_.ownedStart(0), j, k);
    PetscScalar* dst = global_ + ((k - k0) * nj + (j - j0)) * row;
    if (into_ == Into::Assign) {
      std::copy(src, src + row, dst);
    } else {
      for (PetscInt e = 0; e < row; ++e) dst[e] += src[e];
    }
    std::fill(src, src + row, 0.0);
  }
}

void zeroGhostEntries(const LocalArrayLayout& layout, PetscScalar* local) {
  // Whole lines outside the owned range, then the rows of owned lines outside the owned
  // range (3D), then the ends of owned rows.
  const int axis = layout.dim() == 3 ? 2 : 1;  // lines as in SweepAccumulator
  const PetscInt dof = layout.dof();
  const auto fill = [&](PetscInt from, PetscInt count) {
    std::fill(local + from, local + from + count, 0.0);
  };
  const PetscInt ls = layout.ghostStart(axis), lo = layout.ownedStart(axis);
  const PetscInt lend = ls + layout.ghostSize(axis), oend = lo + layout.ownedSize(axis);
  const PetscInt line = layout.stride(axis);
  fill(0, (lo - ls) * line);
  fill((oend - ls) * line, (lend - oend) * line);
  const PetscInt gs0 = layout.ghostStart(0), gs1 = layout.ghostStart(1);
  const PetscInt os0 = layout.ownedStart(0), os1 = layout.ownedStart(1);
  const PetscInt oe0 = os0 + layout.ownedSize(0), oe1 = os1 + layout.ownedSize(1);
  const PetscInt ge0 = gs0 + layout.ghostSize(0), ge1 = gs1 + layout.ghostSize(1);
  const PetscInt row = layout.stride(1);
  for (PetscInt u = lo; u < oend; ++u) {
    const PetscInt k = axis == 2 ? u : layout.ownedStart(2);
    if (axis == 2) {
      fill(layout.arrayOffset(gs0, gs1, k), (os1 - gs1) * row);
      fill(layout.arrayOffset(gs0, oe1, k), (ge1 - oe1) * row);
    }
    for (PetscInt j = axis == 2 ? os1 : u; j < (axis == 2 ? oe1 : u + 1); ++j) {
      fill(layout.arrayOffset(gs0, j, k), (os0 - gs0) * dof);
      fill(layout.arrayOffset(oe0, j, k), (ge0 - oe0) * dof);
    }
  }
}

// ---------------------------------------------------------------------------------------

namespace detail {

PetscInt buildAxisStencilGeneral(const LocalArrayLayout& layout, Interpolation kind, int axis,
                                 double q, PetscInt home, PetscInt* offset, double* weight,
                                 double* slope, std::uint8_t* inside) {
  const int nodes = nodesPerAxis(kind);
  const PetscInt home_offset = (home - layout.ghostStart(axis)) * layout.stride(axis);
  *inside = 0;
  if (!(std::abs(q) < kAbsurdIndex)) {
    // Non-finite (or absurd) points: the result becomes NaN (honest), or the reach says
    // the stencil is unusable, and memory stays safe either way.
    const double w = std::isnan(q) ? std::numeric_limits<double>::quiet_NaN() : 0.0;
    for (int m = 0; m < nodes; ++m) {
      offset[m] = home_offset;
      weight[m] = w;
      if (slope) slope[m] = w;
    }
    return std::isnan(q) ? 0 : std::numeric_limits<PetscInt>::max();
  }
  const double cell = std::floor(q + kStencilSnap);
  const PetscInt first = static_cast<PetscInt>(cell) - (kind == Interpolation::Cubic ? 1 : 0);
  double w[4], dw[4];
  axisWeights(kind, q - cell, w, dw);
  PetscInt reach = 0;
  for (int m = 0; m < nodes; ++m) {
    const PetscInt node = first + m;
    const bool in_domain = layout.insideDomain(axis, node);
    if (in_domain) reach = std::max(reach, node > home ? node - home : home - node);
    if (in_domain && layout.inGhostBox(axis, node)) {
      offset[m] = (node - layout.ghostStart(axis)) * layout.stride(axis);
      weight[m] = w[m];
      if (slope) slope[m] = dw[m];
      *inside = static_cast<std::uint8_t>(*inside | (1u << m));
    } else {
      offset[m] = home_offset;
      weight[m] = 0.0;
      if (slope) slope[m] = 0.0;
    }
  }
  return reach;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------

InterpolationTable::InterpolationTable(const LocalArrayLayout& layout, Interpolation kind)
    : layout_(layout),
      kind_(kind),
      dim_(layout.dim()),
      nodes_(nodesPerAxis(kind)),
      dof_(layout.dof()),
      count_(layout.ownedCount()) {}

std::unique_ptr<InterpolationTable> InterpolationTable::uniform(
    const LocalArrayLayout& layout, Interpolation kind, const std::array<double, 3>& displacement) {
  if (!layout.periodic()) {
    // On a zero-Dirichlet grid a stencil node outside the domain must count as 0 and be
    // kept out of the boundary ghosts, which only per-point stencils arrange.
    throw std::logic_error("InterpolationTable::uniform: periodic grids only");
  }
  std::unique_ptr<InterpolationTable> t(new InterpolationTable(layout, kind));
  t->uniform_ = true;
  const int dim = t->dim_, nodes = t->nodes_;
  // The 1D stencils, built as buildAxisStencil would at a point far from every edge.
  PetscInt axis_offset[3][4] = {};
  double(&axis_weight)[3][4] = t->axis_weight_;
  for (int a = 0; a < dim; ++a) {
    const double cell = std::floor(displacement[a] + kStencilSnap);
    const PetscInt first = static_cast<PetscInt>(cell) - (kind == Interpolation::Cubic ? 1 : 0);
    axisWeights(kind, displacement[a] - cell, axis_weight[a], nullptr);
    t->axis_first_[a] = first;
    for (int m = 0; m < nodes; ++m) axis_offset[a][m] = (first + m) * layout.stride(a);
    t->reach_ = std::max({t->reach_, first < 0 ? -first : first,
                          std::abs(first + static_cast<PetscInt>(nodes) - 1)});
  }
  // Tensor product, x fastest.
  const int mz = dim > 2 ? nodes : 1, my = dim > 1 ? nodes : 1;
  for (int c = 0; c < mz; ++c) {
    for (int b = 0; b < my; ++b) {
      for (int m = 0; m < nodes; ++m) {
        PetscInt offset = axis_offset[0][m];
        double weight = axis_weight[0][m];
        if (dim > 1) {
          offset += axis_offset[1][b];
          weight *= axis_weight[1][b];
        }
        if (dim > 2) {
          offset += axis_offset[2][c];
          weight *= axis_weight[2][c];
        }
        t->offset_.push_back(offset);
        t->weight_.push_back(weight);
      }
    }
  }
  return t;
}

InterpolationTable::InterpolationTable(const LocalArrayLayout& layout, Interpolation kind,
                                       const std::vector<double>& points)
    : InterpolationTable(layout, kind) {
  if (points.size() % static_cast<size_t>(dim_) != 0) {
    throw std::logic_error("InterpolationTable: points must hold dim coordinates per point");
  }
  if (static_cast<PetscInt>(points.size() / dim_) != layout.ownedCount()) {
    throw std::logic_error("InterpolationTable: one point per owned grid point expected");
  }
  const size_t per_point = static_cast<size_t>(dim_ * nodes_);
  offset_.resize(static_cast<size_t>(count_) * per_point);
  weight_.resize(offset_.size());
  inside_.resize(static_cast<size_t>(count_ * dim_));
  // Homes are the owned points in forEachOwned order (x fastest), the order of `points`.
  PetscInt p = 0;
  for (PetscInt k = 0; k < layout.ownedSize(2); ++k) {
    for (PetscInt j = 0; j < layout.ownedSize(1); ++j) {
      for (PetscInt i = 0; i < layout.ownedSize(0); ++i, ++p) {
        const PetscInt home[3] = {layout.ownedStart(0) + i, layout.ownedStart(1) + j,
                                  layout.ownedStart(2) + k};
        for (int a = 0; a < dim_; ++a) {
          const size_t at = static_cast<size_t>(p) * per_point + static_cast<size_t>(a * nodes_);
          const PetscInt r =
              buildAxisStencil(layout, kind, a, points[static_cast<size_t>(p * dim_ + a)], home[a],
                               &offset_[at], &weight_[at], nullptr, &inside_[p * dim_ + a]);
          reach_ = std::max(reach_, r);
        }
      }
    }
  }
}

namespace {

/// out[e] = sum_b w[b] in[b][e] for e < entries: combines N rows (or planes) of partial sums.
template <int N>
inline void combine(const double* const* in, const double* w, PetscInt entries,
                    double* __restrict out) {
  const double* __restrict i0 = in[0], * __restrict i1 = in[1];
  const double* __restrict i2 = N > 2 ? in[2] : in[0], * __restrict i3 = N > 3 ? in[3] : in[0];
  const double w0 = w[0], w1 = w[1], w2 = N > 2 ? w[2] : 0.0, w3 = N > 3 ? w[3] : 0.0;
  for (PetscInt e = 0; e < entries; ++e) {
    double s = w0 * i0[e];
    s += w1 * i1[e];
    if constexpr (N > 2) {
      s += w2 * i2[e];
      s += w3 * i3[e];
    }
    out[e] = s;
  }
}

/// out[e] = sum_m w[m] row[e + m * step] for e < entries: one 1D pass along x.
template <int N>
inline void rowPass(const PetscScalar* row, PetscInt step, const double* w, PetscInt entries,
                    double* __restrict out) {
  const double* in[4] = {row, row + step, row + 2 * step, row + 3 * step};
  combine<N>(in, w, entries, out);
}

/// combine<N> with non-temporal stores of whole cache lines (see StarStencil): the same
/// products and sums, in the same order, so the results are identical.
template <int N>
void combineStreaming(const double* const* in, const double* w, PetscInt entries,
                      double* __restrict out) {
#if defined(__AVX512F__)
  PetscInt head = 0;
  while (head < entries && (reinterpret_cast<std::uintptr_t>(out + head) & 63) != 0) ++head;
  combine<N>(in, w, head, out);
  const __m512d w0 = _mm512_set1_pd(w[0]), w1 = _mm512_set1_pd(w[1]);
  const __m512d w2 = _mm512_set1_pd(N > 2 ? w[2] : 0.0), w3 = _mm512_set1_pd(N > 3 ? w[3] : 0.0);
  PetscInt e = head;
  for (; e + 8 <= entries; e += 8) {
    // Multiply, then add, as combine<N> writes it; the compiler fuses multiply-adds (FMA
    // contraction, GCC's default for C++) in both alike: a standalone copy of the two loops
    // gave the same bits.
    __m512d s = _mm512_mul_pd(w0, _mm512_loadu_pd(in[0] + e));
    s = _mm512_add_pd(s, _mm512_mul_pd(w1, _mm512_loadu_pd(in[1] + e)));
    if constexpr (N > 2) {
      s = _mm512_add_pd(s, _mm512_mul_pd(w2, _mm512_loadu_pd(in[2] + e)));
      s = _mm512_add_pd(s, _mm512_mul_pd(w3, _mm512_loadu_pd(in[3] + e)));
    }
    _mm512_stream_pd(out + e, s);
  }
  const double* rest[4];
  for (int b = 0; b < N; ++b) rest[b] = in[b] + e;
  combine<N>(rest, w, entries - e, out + e);
#else
  combine<N>(in, w, entries, out);
#endif
}

/// The uniform tensor-product stencil applied separably: along x row by row, then the rows
/// combined along y, then the planes along z, the partial sums held in rings of N rows and
/// N planes (each row and plane of partial sums computed once).  The grid is swept in
/// columns of kChunk entries along x, so that the rings stay in cache.  The sums are nested
/// as in gatherAt (x innermost), so the result equals the per-point kernel's up to the
/// weights.  `first` is the first node's shift per axis (in points), `w` the 1D weights.
///
/// With `owned` non-null, the values of owned points come from it (the global Vec's array)
/// and `local` need hold only the ghosts: an owned source row is passed along x in place,
/// except for the few outputs at its ends whose taps reach ghost values, which go through
/// a scratch row.
/// With `combined`, every stretch of out is combined with its addend right after it is
/// written (InterpolationTable::transposeGatherSplit); the stretch is then written with
/// ordinary stores, to be in cache for that.
template <int N>
void separableGather(const LocalArrayLayout& layout, const PetscInt* first, const double (*w)[4],
                     const PetscScalar* owned, const PetscScalar* local, PetscScalar* out,
                     const InterpolationTable::Combination* combined = nullptr) {
  constexpr PetscInt kChunk = 8192;  // 64 KiB rows: the rings stay in L2
  const int dim = layout.dim();
  const PetscInt dof = layout.dof(), entries = layout.ownedSize(0) * dof;
  const PetscInt nx0 = layout.ownedStart(0), ny = layout.ownedSize(1), nz = layout.ownedSize(2);
  const PetscInt y0 = layout.ownedStart(1), z0 = layout.ownedStart(2);
  auto slot = [](PetscInt index) { return ((index % N) + N) % N; };
  const PetscInt chunk = std::min(kChunk, entries);  // the longest column of the sweep
  std::vector<double> rows(static_cast<size_t>(N * chunk));
  // Scratch for the ends of an owned source row (at most a chunk and the ghost width on
  // each side).
  const PetscInt halo = layout.ghostWidth() * dof;
  std::vector<double> assembled(owned ? static_cast<size_t>(chunk + 2 * halo) : 0);
  const PetscInt y_end = y0 + ny, z_end = z0 + nz;
  std::vector<double> planes(dim > 2 ? static_cast<size_t>(N * ny * chunk) : 0);
  const bool stream =
      !combined &&
      detail::streamingWorthIt(static_cast<std::size_t>(entries * ny * nz) * sizeof(PetscScalar));
  // dst[0, n) of out = scale dst + addend_scale addend, where asked for.
  auto combine_stretch = [&](double* dst, PetscInt n) {
    if (!combined) return;
    const double a = combined->scale, b = combined->addend_scale;
    const PetscScalar* __restrict add = combined->addend + (dst - out);
    for (PetscInt e = 0; e < n; ++e) dst[e] = a * dst[e] + b * add[e];
  };
  auto finish = [&](const double* const* in, const double* weights, PetscInt n, double* dst) {
    if (combined) {
      combine<N>(in, weights, n, dst);
      combine_stretch(dst, n);
    } else if (stream)
      combineStreaming<N>(in, weights, n, dst);
    else
      combine<N>(in, weights, n, dst);
  };
  for (PetscInt e0 = 0; e0 < entries; e0 += kChunk) {
    const PetscInt len = std::min(kChunk, entries - e0);
    // The pass along x of source row (j, k) at entry e0 of the column, into dst[0, len):
    // dst[e] = sum_m w_m src[e0 + e + shift + m dof].  Ghost rows are read from local.  Owned
    // rows are read from the owned array wherever all taps of an output lie inside the row;
    // the outputs near the row's ends go through a small scratch with their ghost values.
    auto passRow = [&](PetscInt j, PetscInt k, double* dst) {
      const PetscInt jj = dim > 1 ? j : 0, kk = dim > 2 ? k : 0;
      const PetscScalar* ghosted = local + layout.arrayOffset(nx0, jj, kk) + e0;
      const PetscInt shift = first[0] * dof, span = (N - 1) * dof;
      const bool owned_row =
          owned && (dim < 2 || (jj >= y0 && jj < y_end)) && (dim < 3 || (kk >= z0 && kk < z_end));
      if (!owned_row) {
        rowPass<N>(ghosted + shift, dof, w[0], len, dst);
        return;
      }
      const PetscScalar* row =
          owned + ((kk - (dim > 2 ? z0 : 0)) * ny + (jj - (dim > 1 ? y0 : 0))) * entries;
      // Row entry `at` (outside [0, entries): a ghost end, from local).
      auto value = [&](PetscInt at) {
        return at >= 0 && at < entries ? row[at] : ghosted[at - e0];
      };
      // Outputs [lo, hi) have every tap inside the owned row.
      const PetscInt lo = std::clamp<PetscInt>(-shift - e0, 0, len);
      const PetscInt hi = std::clamp<PetscInt>(entries - span - shift - e0, lo, len);
      auto throughScratch = [&](PetscInt from, PetscInt count) {
        double* t = assembled.data();
        for (PetscInt i = 0; i < count + span; ++i) t[i] = value(e0 + shift + from + i);
        rowPass<N>(t, dof, w[0], count, dst + from);
      };
      if (lo > 0) throughScratch(0, lo);
      rowPass<N>(row + e0 + shift + lo, dof, w[0], hi - lo, dst + lo);
      if (hi < len) throughScratch(hi, len - hi);
    };
    if (dim == 1) {
      passRow(0, 0, out + e0);
      combine_stretch(out + e0, len);
      continue;
    }
    // Rings packed at the chunk's length: rows kChunk apart would alias in the caches
    // (every row of a 3D plane ring in the same cache sets) and spread over many pages.
    auto row = [&](PetscInt index) { return rows.data() + slot(index) * len; };
    // x-then-y sums of source plane k for every owned j, into row j of dst (stride `pitch`).
    auto plane = [&](PetscInt k, double* dst, PetscInt pitch, bool output) {
      PetscInt next = y0 + first[1];  // the next source row to pass along x
      for (PetscInt j = y0; j < y0 + ny; ++j) {
        for (; next < j + first[1] + N; ++next) passRow(next, k, row(next));
        const double* in[4];
        for (int b = 0; b < N; ++b) in[b] = row(j + first[1] + b);
        if (output)
          finish(in, w[1], len, dst + (j - y0) * pitch);
        else
          combine<N>(in, w[1], len, dst + (j - y0) * pitch);
      }
    };
    if (dim == 2) {
      plane(0, out + e0, entries, true);
      continue;
    }
    auto plane_at = [&](PetscInt index) { return planes.data() + slot(index) * ny * len; };
    PetscInt next = z0 + first[2];
    for (PetscInt k = z0; k < z0 + nz; ++k) {
      for (; next < k + first[2] + N; ++next) plane(next, plane_at(next), len, false);
      for (PetscInt j = 0; j < ny; ++j) {
        const double* in[4];
        for (int c = 0; c < N; ++c) in[c] = plane_at(k + first[2] + c) + j * len;
        finish(in, w[2], len, out + ((k - z0) * ny + j) * entries + e0);
      }
    }
  }
#if defined(__AVX512F__)
  if (stream) _mm_sfence();  // the streamed stores before anything that reads out
#endif
}

/// The transpose: local[e + O_n] += W_n values[e], node by node along every owned row.
template <int K>
void uniformScatterAdd(const LocalArrayLayout& layout, const std::vector<PetscInt>& offsets,
                       const std::vector<double>& weights, const PetscScalar* values,
                       PetscScalar* local) {
  forEachOwnedRow(layout, [&](PetscInt row, PetscInt entries, PetscInt first) {
    const PetscScalar* __restrict v = values + first;
    for (int n = 0; n < K; ++n) {
      PetscScalar* __restrict z = local + row + offsets[static_cast<size_t>(n)];
      const double w = weights[static_cast<size_t>(n)];
      for (PetscInt e = 0; e < entries; ++e) z[e] += w * v[e];
    }
  });
}

/// scatterAddAt<D, N>(offset, weight, value, local) for a stencil whose rows are runs of
/// adjacent nodes (x offsets offset[0], offset[0] + 1, ...): each row updated as one vector,
/// with the same products and sums per node as scatterAddAt.
template <int D, int N>
inline void scatterAddRunsAt(const PetscInt* offset, const double* weight, double value,
                             PetscScalar* local) {
  using Run = detail::Doubles<N>;
  Run wx;
  detail::loadDoubles<N>(weight, wx);
  PetscScalar* base = local + offset[0];
  const auto update = [&](PetscScalar* run, double scale) {
    Run r;
    detail::loadDoubles<N>(run, r);
    r += wx * scale;
    detail::storeDoubles<N>(run, r);
  };
  if constexpr (D == 1) {
    update(base, value);
  } else if constexpr (D == 2) {
    for (int b = 0; b < N; ++b) update(base + offset[N + b], weight[N + b] * value);
  } else {
    for (int c = 0; c < N; ++c) {
      const double vc = weight[2 * N + c] * value;
      for (int b = 0; b < N; ++b)
        update(base + offset[2 * N + c] + offset[N + b], weight[N + b] * vc);
    }
  }
}

/// gatherAt<D, N>(offset, weight, local) for a stencil whose rows are runs of adjacent
/// nodes, columns first: col = sum over the rows (z outer, y inner, in index order) of
/// their weight times the row as one vector, then sum_m wx_m col_m.  The same terms as
/// gatherAt, summed in another (fixed) order: equal to round-off.
template <int D, int N>
inline double gatherRunsAt(const PetscInt* offset, const double* weight, const PetscScalar* local) {
  using Run = detail::Doubles<N>;
  const PetscScalar* base = local + offset[0];
  Run col, r;
  if constexpr (D == 1) {
    detail::loadDoubles<N>(base, col);
  } else if constexpr (D == 2) {
    detail::loadDoubles<N>(base + offset[N], col);
    col *= weight[N];
    for (int b = 1; b < N; ++b) {
      detail::loadDoubles<N>(base + offset[N + b], r);
      col += weight[N + b] * r;
    }
  } else {
    for (int c = 0; c < N; ++c) {
      const PetscScalar* plane = base + offset[2 * N + c];
      Run p;
      detail::loadDoubles<N>(plane + offset[N], p);
      p *= weight[N];
      for (int b = 1; b < N; ++b) {
        detail::loadDoubles<N>(plane + offset[N + b], r);
        p += weight[N + b] * r;
      }
      if (c == 0)
        col = weight[2 * N] * p;
      else
        col += weight[2 * N + c] * p;
    }
  }
  double s = weight[0] * col[0];
  for (int m = 1; m < N; ++m) s += weight[m] * col[m];
  return s;
}

/// The scatter-add of a scalar field's per-point stencils for the `count` points of one grid
/// row (stencils per_point entries apart from off and w, values from `values`; the table
/// holds `in_table` stencils from off and w on, this row's and the following ones).  Each
/// stencil row that is a run of adjacent nodes is updated as one vector.  Consecutive
/// points update overlapping runs, and a vector load that overlaps an earlier store only in
/// part cannot take its data from the store buffer: it waits until the store reaches the
/// cache.  So the points go in groups of kGroup, each in kPhases interleaved passes: 0, 4,
/// 8, ..., then 1, 5, 9, ... (a smooth velocity moves neighbours' departure points by about
/// a cell each, so points kPhases apart touch no common node, and a pass starts kGroup /
/// kPhases points after the one before).  A group's stencils stay in the L1 cache for its
/// passes.  Measured on the Xeon guest (2D cubic vortex, 512^2, before the gather by rows):
/// the vjp took 1.4-1.5 forwards with node-by-node updates in point order, 1.3-1.45 with
/// vector runs in passes over whole rows of 512 points, 1.07-1.2 with groups of 16 to 64
/// points.  Deterministic: the order depends on the row alone.
template <int D, int N>
void scatterAddRow(const PetscInt* off, const double* w, const PetscScalar* values, PetscInt count,
                   PetscInt in_table, PetscScalar* local) {
  constexpr int per_point = D * N, kPhases = 4, kGroup = 32;
  for (PetscInt group = 0; group < count; group += kGroup) {
    const PetscInt end = std::min<PetscInt>(count, group + kGroup);
    // One stencil of the next kGroup (into the next row) asked for per point processed:
    // the passes read this group's with a stride, which the hardware prefetchers do not
    // follow far enough ahead, and a burst of prefetches at the start of a group would
    // stall on the cache's fill buffers.
    PetscInt ahead = end;
    for (int phase = 0; phase < kPhases; ++phase) {
      for (PetscInt i = group + phase; i < end; i += kPhases) {
        if (ahead < in_table) {
          __builtin_prefetch(off + ahead * per_point);
          __builtin_prefetch(w + ahead * per_point);
          __builtin_prefetch(w + ahead * per_point + per_point - 1);
          ++ahead;
        }
        const PetscInt* o = off + i * per_point;
        const double* wi = w + i * per_point;
        if (detail::rowIsContiguous<N, 1, 1>(o))
          scatterAddRunsAt<D, N>(o, wi, values[i], local);
        else
          scatterAddAt<D, N>(o, wi, values[i], local);
      }
    }
  }
}

/// f(std::integral_constant<int, nodes^dim>) for a table's stencil shape.
template <class F>
void withNodeCount(int dim, Interpolation kind, F&& f) {
  withStencilShape(dim, kind, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    f(std::integral_constant < int, D == 1 ? N : (D == 2 ? N * N : N * N * N) > {});
  });
}

}  // namespace

void InterpolationTable::gather(const PetscScalar* local, PetscScalar* out) const {
  if (uniform_) {
    if (kind_ == Interpolation::Linear)
      separableGather<2>(layout_, axis_first_, axis_weight_, nullptr, local, out);
    else
      separableGather<4>(layout_, axis_first_, axis_weight_, nullptr, local, out);
    return;
  }
  withStencilShape(dim_, kind_, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    constexpr int per_point = D * N;
    const PetscInt* __restrict off = offset_.data();
    const double* __restrict w = weight_.data();
    if (dof_ == 1) {
      // The common scalar field on its own: a loop over points only.
      for (PetscInt p = 0; p < count_; ++p, off += per_point, w += per_point)
        out[p] = detail::rowIsContiguous<N, 1, 1>(off) ? gatherRunsAt<D, N>(off, w, local)
                                                       : gatherAt<D, N>(off, w, local);
      return;
    }
    for (PetscInt p = 0; p < count_; ++p, off += per_point, w += per_point) {
      for (PetscInt c = 0; c < dof_; ++c) out[p * dof_ + c] = gatherAt<D, N>(off, w, local + c);
    }
  });
}

void InterpolationTable::transposeGather(const PetscScalar* w_local, PetscScalar* out) const {
  transposeGatherSplit(nullptr, w_local, out);
}

void InterpolationTable::gatherSplit(const PetscScalar* owned, const PetscScalar* local,
                                     PetscScalar* out) const {
  if (!uniform_) throw std::logic_error("InterpolationTable::gatherSplit: uniform tables only");
  if (kind_ == Interpolation::Linear)
    separableGather<2>(layout_, axis_first_, axis_weight_, owned, local, out);
  else
    separableGather<4>(layout_, axis_first_, axis_weight_, owned, local, out);
}

void InterpolationTable::transposeGatherSplit(const PetscScalar* owned, const PetscScalar* w_local,
                                              PetscScalar* out, const Combination* combined) const {
  if (!uniform_) throw std::logic_error("InterpolationTable::transposeGather: uniform tables only");
  // (A^T w)_i = sum_m W_m w_{i - first - m}: node m of the mirror is node N - 1 - m.
  PetscInt first[3] = {0, 0, 0};
  double weight[3][4] = {};
  for (int a = 0; a < dim_; ++a) {
    first[a] = -(axis_first_[a] + nodes_ - 1);
    for (int m = 0; m < nodes_; ++m) weight[a][m] = axis_weight_[a][nodes_ - 1 - m];
  }
  if (kind_ == Interpolation::Linear)
    separableGather<2>(layout_, first, weight, owned, w_local, out, combined);
  else
    separableGather<4>(layout_, first, weight, owned, w_local, out, combined);
}

void InterpolationTable::scatterAdd(const PetscScalar* values, PetscScalar* local) const {
  if (uniform_) {
    withNodeCount(dim_, kind_, [&](auto k) {
      uniformScatterAdd<decltype(k)::value>(layout_, offset_, weight_, values, local);
    });
    return;
  }
  withStencilShape(dim_, kind_, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    constexpr int per_point = D * N;
    const PetscInt* __restrict off = offset_.data();
    const double* __restrict w = weight_.data();
    if (dof_ == 1) {
      // A scalar field row by row (see scatterAddRow).
      const PetscInt nx = layout_.ownedSize(0);
      for (PetscInt p = 0; p < count_; p += nx)
        scatterAddRow<D, N>(off + p * per_point, w + p * per_point, values + p, nx, count_ - p,
                            local);
      return;
    }
    for (PetscInt p = 0; p < count_; ++p, off += per_point, w += per_point) {
      for (PetscInt c = 0; c < dof_; ++c)
        scatterAddAt<D, N>(off, w, values[p * dof_ + c], local + c);
    }
  });
}

void InterpolationTable::buildNodeTranspose() {
  if (uniform_)
    throw std::logic_error("InterpolationTable::buildNodeTranspose: per-point tables only");
  if (hasNodeTranspose()) return;
  // The owned index of every point of the local array, -1 for ghosts.
  const PetscInt local_points = layout_.ghostSize(0) * (dim_ > 1 ? layout_.ghostSize(1) : 1) *
                                (dim_ > 2 ? layout_.ghostSize(2) : 1);
  std::vector<PetscInt> owned_of(static_cast<size_t>(local_points), -1);
  {
    PetscInt n = 0;
    for (PetscInt k = layout_.ownedStart(2); k < layout_.ownedStart(2) + layout_.ownedSize(2); ++k)
      for (PetscInt j = layout_.ownedStart(1); j < layout_.ownedStart(1) + layout_.ownedSize(1);
           ++j)
        for (PetscInt i = layout_.ownedStart(0); i < layout_.ownedStart(0) + layout_.ownedSize(0);
             ++i)
          owned_of[static_cast<size_t>(layout_.arrayOffset(i, j, k) / dof_)] = n++;
  }
  // Every stencil node of point p: its array offset and weight (x fastest).
  const int N = nodes_, my = dim_ > 1 ? N : 1, mz = dim_ > 2 ? N : 1;
  const auto forEachNode = [&](PetscInt p, auto&& f) {
    const PetscInt* o = &offset_[static_cast<size_t>(p * dim_ * N)];
    const double* w = &weight_[static_cast<size_t>(p * dim_ * N)];
    for (int c = 0; c < mz; ++c) {
      for (int b = 0; b < my; ++b) {
        for (int m = 0; m < N; ++m) {
          PetscInt entry = o[m];
          double weight = w[m];
          if (dim_ > 1) {
            entry += o[N + b];
            weight *= w[N + b];
          }
          if (dim_ > 2) {
            entry += o[2 * N + c];
            weight *= w[2 * N + c];
          }
          f(entry, weight);
        }
      }
    }
  };
  // Each owned node gets `slots` terms (as many as a stencil has nodes: the mean number of
  // terms per node when the departure points neither bunch up nor spread out), filled in
  // increasing point order; a node with fewer is padded with terms of weight +0 on a point
  // it already reads (on its own point if it has none), one with more has the rest listed
  // apart.  Fixed-length sums run without a branch per node.
  const int slots = N * my * mz;
  node_slots_ = slots;
  std::vector<PetscInt> filled(static_cast<size_t>(count_), 0);
  slot_point_.assign(static_cast<size_t>(count_) * static_cast<size_t>(slots), -1);
  slot_weight_.assign(slot_point_.size(), 0.0);
  for (PetscInt p = 0; p < count_; ++p) {
    forEachNode(p, [&](PetscInt entry, double w) {
      const PetscInt n = owned_of[static_cast<size_t>(entry / dof_)];
      if (n < 0) {
        ghost_entry_.push_back(entry);
        ghost_point_.push_back(p);
        ghost_weight_.push_back(w);
        return;
      }
      PetscInt& used = filled[static_cast<size_t>(n)];
      if (used < slots) {
        const size_t at =
            static_cast<size_t>(n) * static_cast<size_t>(slots) + static_cast<size_t>(used);
        slot_point_[at] = p;
        slot_weight_[at] = w;
      } else {
        extra_node_.push_back(n);
        extra_point_.push_back(p);
        extra_weight_.push_back(w);
      }
      ++used;
    });
  }
  for (PetscInt n = 0; n < count_; ++n) {
    const size_t first = static_cast<size_t>(n) * static_cast<size_t>(slots);
    const PetscInt pad = filled[static_cast<size_t>(n)] > 0 ? slot_point_[first] : n;
    for (PetscInt s = filled[static_cast<size_t>(n)]; s < slots; ++s)
      slot_point_[first + static_cast<size_t>(s)] = pad;
  }
}

size_t InterpolationTable::nodeTransposeBytes() const {
  return sizeof(PetscInt) * (slot_point_.size() + extra_node_.size() + extra_point_.size() +
                             ghost_entry_.size() + ghost_point_.size()) +
         sizeof(double) * (slot_weight_.size() + extra_weight_.size() + ghost_weight_.size());
}

namespace {
/// out[n * dof + c] = sum_s weight[n * K + s] values[point[n * K + s] * dof + c], s in order.
template <int K>
void slotSums(PetscInt count, PetscInt dof, const PetscInt* __restrict point,
              const double* __restrict weight, const PetscScalar* __restrict values,
              PetscScalar* __restrict out) {
  if (dof == 1) {
    for (PetscInt n = 0; n < count; ++n, point += K, weight += K) {
      double s = weight[0] * values[point[0]];
      for (int t = 1; t < K; ++t) s += weight[t] * values[point[t]];
      out[n] = s;
    }
    return;
  }
  for (PetscInt n = 0; n < count; ++n, point += K, weight += K) {
    for (PetscInt c = 0; c < dof; ++c) {
      double s = weight[0] * values[point[0] * dof + c];
      for (int t = 1; t < K; ++t) s += weight[t] * values[point[t] * dof + c];
      out[n * dof + c] = s;
    }
  }
}
}  // namespace

void InterpolationTable::transposeByNodes(const PetscScalar* values, PetscScalar* out,
                                          PetscScalar* local) const {
  if (!hasNodeTranspose())
    throw std::logic_error("InterpolationTable::transposeByNodes: call buildNodeTranspose first");
  const PetscInt* point = slot_point_.data();
  const double* weight = slot_weight_.data();
  // node_slots_ is nodes^dim, the count withNodeCount hands over.
  withNodeCount(dim_, kind_, [&](auto slots) {
    slotSums<decltype(slots)::value>(count_, dof_, point, weight, values, out);
  });
  for (size_t e = 0; e < extra_node_.size(); ++e) {
    for (PetscInt c = 0; c < dof_; ++c)
      out[extra_node_[e] * dof_ + c] += extra_weight_[e] * values[extra_point_[e] * dof_ + c];
  }
  for (size_t e = 0; e < ghost_entry_.size(); ++e) {
    for (PetscInt c = 0; c < dof_; ++c)
      local[ghost_entry_[e] + c] += ghost_weight_[e] * values[ghost_point_[e] * dof_ + c];
  }
}

namespace {
#if defined(__AVX512F__)
/// The scatter-add of a block of 8 points that buildRowWindows found lined up, for
/// stencils of N nodes per axis: weights [3][N][8] (lane fastest), values of the 8 points,
/// the window's first node at local + first; the N * N stencil rows (y inner, z outer) are
/// stride_y and stride_z apart.  Lane b's terms land on nodes b to b + N - 1 of each row:
/// the node-(b + m) terms move up m lanes, and those that move past lane 7 (nodes 8 to
/// 6 + N) are carried into the next block when that one continues the run (first 8 nodes
/// further), else flushed.
template <int N>
class RowWindow3 {
 public:
  static constexpr int kRows = N * N;

  RowWindow3(PetscInt stride_y, PetscInt stride_z) {
    for (int r = 0; r < kRows; ++r) row_[r] = (r % N) * stride_y + (r / N) * stride_z;
  }

  void add(PetscInt first, const double* weight, const PetscScalar* values, PetscScalar* local) {
    const bool continues = carrying_ && first == carried_first_ + 8;
    if (!continues) flush(local);
    const __m512d v = _mm512_loadu_pd(values);
    __m512d a[N];  // weight_x[m] value, lane-wise
    for (int m = 0; m < N; ++m) a[m] = _mm512_mul_pd(_mm512_loadu_pd(weight + m * 8), v);
    const __m512d zero = _mm512_setzero_pd();
    for (int r = 0; r < kRows; ++r) {
      const __m512d alpha = _mm512_mul_pd(_mm512_loadu_pd(weight + (2 * N + r / N) * 8),
                                          _mm512_loadu_pd(weight + (N + r % N) * 8));
      __m512d sum = _mm512_mul_pd(alpha, a[0]);
#pragma GCC unroll 3
      for (int m = 1; m < N; ++m) {
        const __m512d u = _mm512_mul_pd(alpha, a[m]);
        const __m512d before = continues ? carry_[r][m - 1] : zero;
        // lanes m to 7 take u's lanes 0 to 7 - m, the lanes below the carried ones
        sum = _mm512_add_pd(sum, shiftUp(u, before, m));
        carry_[r][m - 1] = u;
      }
      PetscScalar* at = local + first + row_[r];
      _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), sum));
    }
    carried_first_ = first;
    carrying_ = true;
  }

  /// Adds the carried nodes of each row into memory (at the end of a run).
  void flush(PetscScalar* local) {
    if (!carrying_) return;
    for (int r = 0; r < kRows; ++r) {
      alignas(64) double lanes[N - 1][8];
      for (int m = 1; m < N; ++m) _mm512_store_pd(lanes[m - 1], carry_[r][m - 1]);
      PetscScalar* at = local + carried_first_ + row_[r] + 8;
      for (int node = 0; node < N - 1; ++node) {  // nodes 8 on: lane 8 - m + node of u_m
        double extra = 0.0;
        for (int m = node + 1; m < N; ++m) extra += lanes[m - 1][8 - m + node];
        at[node] += extra;
      }
    }
    carrying_ = false;
  }

 private:
  /// The lanes of u moved up m places, the vacated lanes from the top m lanes of before.
  static __m512d shiftUp(__m512d u, __m512d before, int m) {
    const __m512i ui = _mm512_castpd_si512(u), bi = _mm512_castpd_si512(before);
    switch (m) {
      case 1:
        return _mm512_castsi512_pd(_mm512_alignr_epi64(ui, bi, 7));
      case 2:
        return _mm512_castsi512_pd(_mm512_alignr_epi64(ui, bi, 6));
      default:
        return _mm512_castsi512_pd(_mm512_alignr_epi64(ui, bi, 5));
    }
  }

  PetscInt row_[kRows];
  __m512d carry_[kRows][N - 1];
  PetscInt carried_first_ = 0;
  bool carrying_ = false;
};
#endif
}  // namespace

void InterpolationTable::buildRowWindows() {
#if defined(__AVX512F__)
  if (uniform_ || dim_ != 3 || dof_ != 1 || has_windows_) return;
  constexpr int L = 8;
  const int N = nodes_, per_point = 3 * N;
  const PetscInt nx = layout_.ownedSize(0), rows = count_ / std::max<PetscInt>(nx, 1);
  const PetscInt stride[3] = {1, layout_.stride(1), layout_.stride(2)};
  window_first_.clear();
  window_weight_.clear();
  for (PetscInt row = 0; row < rows; ++row) {
    for (PetscInt i = 0; i + L <= nx; i += L) {
      const PetscInt p0 = row * nx + i;
      const PetscInt* o0 = &offset_[static_cast<size_t>(p0 * per_point)];
      bool fits = true;
      for (int b = 0; b < L && fits; ++b) {
        const PetscInt* o = o0 + b * per_point;
        for (int a = 0; a < 3; ++a) {
          const PetscInt start = o[N * a], expected = o0[N * a] + (a == 0 ? b : 0);
          fits = fits && start == expected;
          for (int m = 1; m < N; ++m) fits = fits && o[N * a + m] == start + m * stride[a];
        }
      }
      window_first_.push_back(fits ? o0[0] + o0[N] + o0[2 * N] : -1);
      for (int e = 0; e < per_point; ++e)
        for (int b = 0; b < L; ++b)
          window_weight_.push_back(fits ? weight_[static_cast<size_t>((p0 + b) * per_point + e)]
                                        : 0.0);
    }
  }
  has_windows_ = true;
#endif
}

std::array<PetscInt, 2> InterpolationTable::rowWindowBlocks() const {
  PetscInt fitting = 0;
  for (PetscInt first : window_first_) fitting += first >= 0 ? 1 : 0;
  return {fitting, static_cast<PetscInt>(window_first_.size())};
}

void InterpolationTable::scatterAddSweep(const PetscScalar* values, PetscScalar* local,
                                         SweepAccumulator& sum) const {
  if (uniform_)
    throw std::logic_error("InterpolationTable::scatterAddSweep: per-point tables only");
#if defined(__AVX512F__)
  if (has_windows_) {
    // 3D, one component: blocks of 8 that line up in a register window, the rest point by
    // point.
    withStencilShape(dim_, kind_, [&](auto, auto n) {
      constexpr int N = decltype(n)::value, per_point = 3 * N, L = 8;
      const PetscInt nx = layout_.ownedSize(0), ny = layout_.ownedSize(1);
      const PetscInt k0 = layout_.ownedStart(2);
      RowWindow3<N> window(layout_.stride(1), layout_.stride(2));
      const auto pointwise = [&](PetscInt p) {
        const PetscInt* o = &offset_[static_cast<size_t>(p * per_point)];
        const double* w = &weight_[static_cast<size_t>(p * per_point)];
        if (detail::rowIsContiguous<N, 1, 1>(o))
          scatterAddRunsAt<3, N>(o, w, values[p], local);
        else
          scatterAddAt<3, N>(o, w, values[p], local);
      };
      PetscInt p = 0, block = 0;
      for (PetscInt k = k0; k < k0 + layout_.ownedSize(2); ++k) {
        sum.beginLine(k);  // after the window's flush at the end of the previous row
        for (PetscInt j = 0; j < ny; ++j) {
          PetscInt i = 0;
          for (; i + L <= nx; i += L, p += L, ++block) {
            const PetscInt first = window_first_[static_cast<size_t>(block)];
            if (first >= 0) {
              window.add(first, &window_weight_[static_cast<size_t>(block * per_point * L)],
                         values + p, local);
            } else {
              window.flush(local);
              for (int b = 0; b < L; ++b) pointwise(p + b);
            }
          }
          window.flush(local);
          for (; i < nx; ++i, ++p) pointwise(p);
        }
      }
    });
    sum.finishOwned();
    return;
  }
#endif
  withStencilShape(dim_, kind_, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    constexpr int per_point = D * N;
    const PetscInt* __restrict off = offset_.data();
    const double* __restrict w = weight_.data();
    const PetscInt nx = layout_.ownedSize(0), ny = layout_.ownedSize(1);
    const PetscInt j0 = layout_.ownedStart(1), k0 = layout_.ownedStart(2);
    PetscInt p = 0;
    for (PetscInt k = k0; k < k0 + layout_.ownedSize(2); ++k) {
      for (PetscInt j = j0; j < j0 + ny; ++j) {
        sum.beginLine(D == 3 ? k : j);
        if (dof_ == 1) {
          scatterAddRow<D, N>(off, w, values + p, nx, count_ - p, local);
          p += nx;
          off += nx * per_point;
          w += nx * per_point;
          continue;
        }
        for (PetscInt i = 0; i < nx; ++i, ++p, off += per_point, w += per_point) {
          for (PetscInt c = 0; c < dof_; ++c)
            scatterAddAt<D, N>(off, w, values[p * dof_ + c], local + c);
        }
      }
    }
  });
  sum.finishOwned();
}

}  // namespace physgrad
