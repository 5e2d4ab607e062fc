#include "physgrad/physics/interpolation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "physgrad/core/error.hpp"

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

CornerGhostExchange::CornerGhostExchange(const Grid& grid) {
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
  PG_CALL(DMGlobalToLocalBegin(box_, global, INSERT_VALUES, local));
  PG_CALL(DMGlobalToLocalEnd(box_, global, INSERT_VALUES, local));
}

void CornerGhostExchange::addLocalToGlobal(Vec local, Vec global) const {
  PG_CALL(DMLocalToGlobalBegin(box_, local, ADD_VALUES, global));
  PG_CALL(DMLocalToGlobalEnd(box_, local, ADD_VALUES, global));
}

// ---------------------------------------------------------------------------------------

namespace detail {

PetscInt buildAxisStencilGeneral(const LocalArrayLayout& layout, Interpolation kind, int axis,
                                 double q, PetscInt home, PetscInt* offset, double* weight,
                                 double* slope, std::uint8_t* inside) {
  const int nodes = nodesPerAxis(kind);
  const PetscInt home_offset = (home - layout.ghostStart(axis)) * layout.stride(axis);
  *inside = 0;
  if (!(std::abs(q) < 1e12)) {
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

InterpolationTable::InterpolationTable(const LocalArrayLayout& layout, Interpolation kind,
                                       const std::vector<double>& points)
    : kind_(kind), dim_(layout.dim()), nodes_(nodesPerAxis(kind)), dof_(layout.dof()) {
  if (points.size() % static_cast<size_t>(dim_) != 0) {
    throw std::logic_error("InterpolationTable: points must hold dim coordinates per point");
  }
  count_ = static_cast<PetscInt>(points.size() / dim_);
  if (count_ != layout.ownedCount()) {
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

void InterpolationTable::gather(const PetscScalar* local, PetscScalar* out) const {
  withStencilShape(dim_, kind_, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    for (PetscInt p = 0; p < count_; ++p) {
      const PetscInt* off = offsets(p);
      const double* w = weights(p);
      for (PetscInt c = 0; c < dof_; ++c) out[p * dof_ + c] = gatherAt<D, N>(off, w, local + c);
    }
  });
}

void InterpolationTable::scatterAdd(const PetscScalar* values, PetscScalar* local) const {
  withStencilShape(dim_, kind_, [&](auto d, auto n) {
    constexpr int D = decltype(d)::value, N = decltype(n)::value;
    for (PetscInt p = 0; p < count_; ++p) {
      const PetscInt* off = offsets(p);
      const double* w = weights(p);
      for (PetscInt c = 0; c < dof_; ++c)
        scatterAddAt<D, N>(off, w, values[p * dof_ + c], local + c);
    }
  });
}

}  // namespace physgrad
