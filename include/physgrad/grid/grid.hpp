#pragma once
// A structured grid over a PETSc DMDA: 1D/2D/3D, periodic or zero-Dirichlet, with the
// physical spacing the stencils need and the field helpers every layer above uses.

#include <petscdmda.h>

#include <array>
#include <string>
#include <vector>

#include "physgrad/core/handle.hpp"

namespace physgrad {

enum class Boundary {
  Periodic,      ///< cell-centred nodes x_i = (i + 1/2) h, h = L / N
  ZeroDirichlet  ///< interior nodes x_i = (i + 1) h, h = L / (N + 1); the field is 0 outside
};

const char* toString(Boundary b);
/// Parses "periodic" or "dirichlet"; throws InputError naming `option` otherwise.
Boundary parseBoundary(const std::string& text, const std::string& option);

struct GridSpec {
  int dim = 2;                                     ///< 1, 2 or 3
  std::array<PetscInt, 3> n = {64, 64, 1};         ///< nodes per axis (axes >= dim are ignored)
  std::array<double, 3> length = {1.0, 1.0, 1.0};  ///< physical extent per axis
  Boundary boundary = Boundary::Periodic;
  PetscInt stencil_width = 1;  ///< ghost layers exchanged
  PetscInt dof = 1;            ///< components per grid point (e.g. dim for a velocity field)

  /// Throws InputError with a message naming the offending field.
  void validate() const;
};

/// Index box of owned (or ghosted) points; unused axes have start 0 and size 1.
struct IndexBox {
  std::array<PetscInt, 3> start = {0, 0, 0};
  std::array<PetscInt, 3> size = {1, 1, 1};
  PetscInt count() const { return size[0] * size[1] * size[2]; }
};

class Grid {
 public:
  Grid(MPI_Comm comm, const GridSpec& spec);

  MPI_Comm comm() const;
  DM dm() const { return dm_; }
  const GridSpec& spec() const { return spec_; }
  int dim() const { return spec_.dim; }
  /// Components per point; Vec arrays interleave them (point-major, component fastest).
  PetscInt dof() const { return spec_.dof; }
  PetscInt n(int axis) const { return axis < spec_.dim ? spec_.n[axis] : 1; }
  /// Total number of grid points (a global Vec has size() * dof() entries).
  PetscInt size() const { return n(0) * n(1) * n(2); }
  double h(int axis) const { return h_[axis]; }
  Boundary boundary() const { return spec_.boundary; }
  /// Volume of one cell (product of the spacings of the used axes).
  double cellVolume() const;
  /// Physical coordinate of node index i on an axis.
  double coordinate(int axis, PetscInt i) const;

  OwnedVec createGlobal() const;  ///< zero-initialised
  OwnedVec createLocal() const;   ///< zero-initialised, including boundary ghosts
  /// Fills the ghost layers of `local` from `global` (boundary ghosts stay zero if Dirichlet).
  void globalToLocal(Vec global, Vec local) const;
  /// Fills only those ghost entries of `local` (points of the ghosted box outside the
  /// owned box) whose value lives on another rank, and leaves the rest untouched: owned
  /// entries, and ghosts that wrap around a periodic axis onto this rank's own points
  /// (on one rank with a periodic grid it moves nothing).  For stencil kernels that read
  /// owned values, wrapped ones included, straight from the global array, so that no
  /// field is copied.
  void updateRemoteGhosts(Vec global, Vec local) const;

  const IndexBox& owned() const { return owned_; }
  const IndexBox& ghosted() const { return ghosted_; }

  /// The whole field in natural ordering (component fastest, then i, then j, then k), on
  /// every rank.
  std::vector<double> gatherNatural(Vec global) const;
  /// Sets the owned entries of `global` from a whole field in natural ordering.
  void scatterNatural(const std::vector<double>& natural, Vec global) const;

  /// Natural (rank-independent) linear index of a grid point.
  PetscInt naturalIndex(PetscInt i, PetscInt j, PetscInt k) const {
    return (k * n(1) + j) * n(0) + i;
  }

 private:
  GridSpec spec_;
  OwnedDM dm_;
  std::array<double, 3> h_ = {1.0, 1.0, 1.0};
  IndexBox owned_, ghosted_;
  mutable Handle<VecScatter, VecScatterDestroy> remote_ghost_scatter_;  // built on first use
};

namespace detail {
/// A scatter from the global Vec of the DMDA `dm` into its local (ghosted) Vec over ghost
/// entries only: every entry outside the rank's owned box, except those outside a
/// zero-Dirichlet domain and, with `skip_own_images`, the periodic images of entries the
/// rank owns itself.  Owned entries of the local Vec are never written.
Handle<VecScatter, VecScatterDestroy> createGhostScatter(DM dm, Vec global, Vec local,
                                                         bool skip_own_images);
}  // namespace detail

/// Calls f(i, j, k, owned_offset) for every owned point; owned_offset * dof + c indexes
/// component c in the array of a global Vec obtained with VecGetArray.
template <typename F>
void forEachOwned(const Grid& grid, F&& f) {
  const IndexBox& b = grid.owned();
  PetscInt offset = 0;
  for (PetscInt k = b.start[2]; k < b.start[2] + b.size[2]; ++k)
    for (PetscInt j = b.start[1]; j < b.start[1] + b.size[1]; ++j)
      for (PetscInt i = b.start[0]; i < b.start[0] + b.size[0]; ++i) f(i, j, k, offset++);
}

}  // namespace physgrad
