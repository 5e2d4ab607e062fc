#include "physgrad/grid/grid.hpp"

#include <cmath>
#include <sstream>

#include "physgrad/core/error.hpp"

namespace physgrad {

const char* toString(Boundary b) { return b == Boundary::Periodic ? "periodic" : "dirichlet"; }

Boundary parseBoundary(const std::string& text, const std::string& option) {
  if (text == "periodic") return Boundary::Periodic;
  if (text == "dirichlet") return Boundary::ZeroDirichlet;
  throw InputError("option " + option + ": unknown boundary '" + text +
                   "' (allowed: periodic, dirichlet)");
}

void GridSpec::validate() const {
  if (dim < 1 || dim > 3) {
    throw InputError("grid dimension must be 1, 2 or 3 (got " + std::to_string(dim) + ")");
  }
  static const char* axis_name[3] = {"x", "y", "z"};
  for (int a = 0; a < dim; ++a) {
    if (n[a] <= 0) {
      std::ostringstream os;
      os << "grid size along " << axis_name[a] << " must be positive (got " << n[a] << ")";
      throw InputError(os.str());
    }
    if (!(length[a] > 0.0) || !std::isfinite(length[a])) {
      std::ostringstream os;
      os << "domain length along " << axis_name[a] << " must be positive and finite (got "
         << length[a] << ")";
      throw InputError(os.str());
    }
    if (boundary == Boundary::Periodic && n[a] < 2 * stencil_width + 1) {
      std::ostringstream os;
      os << "periodic grid along " << axis_name[a] << " needs at least " << 2 * stencil_width + 1
         << " points for stencil width " << stencil_width << " (got " << n[a] << ")";
      throw InputError(os.str());
    }
  }
  if (stencil_width < 1) throw InputError("stencil width must be at least 1");
  if (dof < 1) throw InputError("components per point (dof) must be at least 1");
}

Grid::Grid(MPI_Comm comm, const GridSpec& spec) : spec_(spec) {
  spec_.validate();
  for (int a = spec_.dim; a < 3; ++a) spec_.n[a] = 1;
  const DMBoundaryType bt =
      spec_.boundary == Boundary::Periodic ? DM_BOUNDARY_PERIODIC : DM_BOUNDARY_GHOSTED;
  const PetscInt sw = spec_.stencil_width;
  switch (spec_.dim) {
    case 1:
      PG_CALL(DMDACreate1d(comm, bt, spec_.n[0], spec_.dof, sw, nullptr, dm_.out()));
      break;
    case 2:
      PG_CALL(DMDACreate2d(comm, bt, bt, DMDA_STENCIL_STAR, spec_.n[0], spec_.n[1], PETSC_DECIDE,
                           PETSC_DECIDE, spec_.dof, sw, nullptr, nullptr, dm_.out()));
      break;
    default:
      PG_CALL(DMDACreate3d(comm, bt, bt, bt, DMDA_STENCIL_STAR, spec_.n[0], spec_.n[1], spec_.n[2],
                           PETSC_DECIDE, PETSC_DECIDE, PETSC_DECIDE, spec_.dof, sw, nullptr,
                           nullptr, nullptr, dm_.out()));
      break;
  }
  PG_CALL(DMSetUp(dm_));
  for (int a = 0; a < spec_.dim; ++a) {
    h_[a] = spec_.boundary == Boundary::Periodic ? spec_.length[a] / spec_.n[a]
                                                 : spec_.length[a] / (spec_.n[a] + 1);
  }
  PetscInt xs, ys, zs, xm, ym, zm;
  PG_CALL(DMDAGetCorners(dm_, &xs, &ys, &zs, &xm, &ym, &zm));
  owned_.start = {xs, ys, zs};
  owned_.size = {xm, spec_.dim > 1 ? ym : 1, spec_.dim > 2 ? zm : 1};
  PG_CALL(DMDAGetGhostCorners(dm_, &xs, &ys, &zs, &xm, &ym, &zm));
  ghosted_.start = {xs, ys, zs};
  ghosted_.size = {xm, spec_.dim > 1 ? ym : 1, spec_.dim > 2 ? zm : 1};
  if (spec_.dim < 2) ghosted_.start[1] = 0;
  if (spec_.dim < 3) ghosted_.start[2] = 0;
  if (spec_.dim < 2) owned_.start[1] = 0;
  if (spec_.dim < 3) owned_.start[2] = 0;
}

MPI_Comm Grid::comm() const { return PetscObjectComm(reinterpret_cast<PetscObject>(dm_.get())); }

double Grid::cellVolume() const {
  double v = 1.0;
  for (int a = 0; a < spec_.dim; ++a) v *= h_[a];
  return v;
}

double Grid::coordinate(int axis, PetscInt i) const {
  return spec_.boundary == Boundary::Periodic ? (i + 0.5) * h_[axis] : (i + 1.0) * h_[axis];
}

OwnedVec Grid::createGlobal() const {
  OwnedVec v;
  PG_CALL(DMCreateGlobalVector(dm_, v.out()));
  PG_CALL(VecSet(v, 0.0));
  return v;
}

OwnedVec Grid::createLocal() const {
  OwnedVec v;
  PG_CALL(DMCreateLocalVector(dm_, v.out()));
  PG_CALL(VecSet(v, 0.0));
  return v;
}

void Grid::globalToLocal(Vec global, Vec local) const {
  PG_CALL(DMGlobalToLocalBegin(dm_, global, INSERT_VALUES, local));
  PG_CALL(DMGlobalToLocalEnd(dm_, global, INSERT_VALUES, local));
}

Handle<VecScatter, VecScatterDestroy> detail::createGhostScatter(DM dm, Vec global, Vec local,
                                                                 bool skip_own_images) {
  // Local (ghosted-array) positions of every ghost entry and the global (PETSc-ordered)
  // index it mirrors; entries outside a Dirichlet domain map to a negative index.
  PetscInt xs, ys, zs, xm, ym, zm, gxs, gys, gzs, gxm, gym, gzm, dof;
  PG_CALL(DMDAGetCorners(dm, &xs, &ys, &zs, &xm, &ym, &zm));
  PG_CALL(DMDAGetGhostCorners(dm, &gxs, &gys, &gzs, &gxm, &gym, &gzm));
  PG_CALL(DMDAGetInfo(dm, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &dof,
                      nullptr, nullptr, nullptr, nullptr, nullptr));
  std::vector<PetscInt> local_index, global_index;
  for (PetscInt k = gzs; k < gzs + gzm; ++k)
    for (PetscInt j = gys; j < gys + gym; ++j)
      for (PetscInt i = gxs; i < gxs + gxm; ++i) {
        const bool owned =
            i >= xs && i < xs + xm && j >= ys && j < ys + ym && k >= zs && k < zs + zm;
        if (owned) continue;
        const PetscInt base = (((k - gzs) * gym + (j - gys)) * gxm + (i - gxs)) * dof;
        for (PetscInt c = 0; c < dof; ++c) local_index.push_back(base + c);
      }
  global_index.resize(local_index.size());
  ISLocalToGlobalMapping map = nullptr;
  PG_CALL(DMGetLocalToGlobalMapping(dm, &map));
  PG_CALL(ISLocalToGlobalMappingApply(map, static_cast<PetscInt>(local_index.size()),
                                      local_index.data(), global_index.data()));
  PetscInt first = 0, last = 0;
  PG_CALL(VecGetOwnershipRange(global, &first, &last));
  size_t kept = 0;
  for (size_t t = 0; t < local_index.size(); ++t) {
    const bool own_image = global_index[t] >= first && global_index[t] < last;
    if (global_index[t] < 0 || (skip_own_images && own_image)) continue;
    local_index[kept] = local_index[t];
    global_index[kept] = global_index[t];
    ++kept;
  }
  Handle<IS, ISDestroy> from, to;
  PG_CALL(ISCreateGeneral(PETSC_COMM_SELF, static_cast<PetscInt>(kept), global_index.data(),
                          PETSC_COPY_VALUES, from.out()));
  PG_CALL(ISCreateGeneral(PETSC_COMM_SELF, static_cast<PetscInt>(kept), local_index.data(),
                          PETSC_COPY_VALUES, to.out()));
  Handle<VecScatter, VecScatterDestroy> scatter;
  PG_CALL(VecScatterCreate(global, from, local, to, scatter.out()));
  return scatter;
}

void Grid::updateRemoteGhosts(Vec global, Vec local) const {
  // Periodic images of entries this rank owns are read from its own array by the kernels
  // that use this exchange, so they are left out.
  if (!remote_ghost_scatter_)
    remote_ghost_scatter_ = detail::createGhostScatter(dm_, global, local, true);
  PG_CALL(VecScatterBegin(remote_ghost_scatter_, global, local, INSERT_VALUES, SCATTER_FORWARD));
  PG_CALL(VecScatterEnd(remote_ghost_scatter_, global, local, INSERT_VALUES, SCATTER_FORWARD));
}

std::vector<double> Grid::gatherNatural(Vec global) const {
  const PetscInt dof = spec_.dof;
  std::vector<double> mine(static_cast<size_t>(owned_.count() * dof));
  std::vector<PetscInt> index(mine.size());
  const PetscScalar* a = nullptr;
  PG_CALL(VecGetArrayRead(global, &a));
  forEachOwned(*this, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    for (PetscInt c = 0; c < dof; ++c) {
      mine[o * dof + c] = a[o * dof + c];
      index[o * dof + c] = naturalIndex(i, j, k) * dof + c;
    }
  });
  PG_CALL(VecRestoreArrayRead(global, &a));

  MPI_Comm c = comm();
  int size = 1;
  MPI_Comm_size(c, &size);
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(size), displs(size, 0);
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, c);
  for (int r = 1; r < size; ++r) displs[r] = displs[r - 1] + counts[r - 1];
  const int total = displs[size - 1] + counts[size - 1];
  std::vector<double> values(total);
  std::vector<PetscInt> indices(total);
  MPI_Allgatherv(mine.data(), count, MPI_DOUBLE, values.data(), counts.data(), displs.data(),
                 MPI_DOUBLE, c);
  MPI_Allgatherv(index.data(), count, MPIU_INT, indices.data(), counts.data(), displs.data(),
                 MPIU_INT, c);
  std::vector<double> natural(static_cast<size_t>(this->size() * dof));
  for (int t = 0; t < total; ++t) natural[indices[t]] = values[t];
  return natural;
}

void Grid::scatterNatural(const std::vector<double>& natural, Vec global) const {
  const PetscInt dof = spec_.dof;
  if (static_cast<PetscInt>(natural.size()) != size() * dof) {
    throw InputError("scatterNatural: field has " + std::to_string(natural.size()) +
                     " values, the grid needs " + std::to_string(size() * dof) + " (" +
                     std::to_string(size()) + " points x " + std::to_string(dof) + " components)");
  }
  PetscScalar* a = nullptr;
  PG_CALL(VecGetArray(global, &a));
  forEachOwned(*this, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    for (PetscInt c = 0; c < dof; ++c) a[o * dof + c] = natural[naturalIndex(i, j, k) * dof + c];
  });
  PG_CALL(VecRestoreArray(global, &a));
}

}  // namespace physgrad
