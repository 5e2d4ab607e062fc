#pragma once
// Synthetic fields for experiments and tests. Every generator here produces the same field
// whatever the number of ranks: random numbers are either drawn identically on all ranks
// (a seeded std::mt19937_64 consumed in a fixed order) or derived from a point's natural
// index by a counter-based hash, and each rank then fills only the points it owns.

#include <petscvec.h>

#include <cstdint>

#include "physgrad/grid/grid.hpp"

namespace physgrad {

/// Soft-edged boxes as in the heat-equation experiment of the physical-gradient paper
/// (REFERENCES.md §3), generalised to 1D and 3D.
struct SoftBoxesOptions {
  uint64_t seed = 42;
  /// Grid extent (in cells) on which the half-sizes U[0, 10) are meant: half-sizes are
  /// scaled by extent / reference_size so that finer grids show the same picture.
  double reference_size = 64.0;
};

/// Overwrites the global Vec `x` of `grid` with a sum of 4..10 soft-edged boxes.
///
/// Everything is measured in cell units: point i of an axis sits at p_i = x_i / h, i.e.
/// i + 1/2 on a periodic grid and i + 1 on a Dirichlet grid, and the axis extent is E = L / h
/// (N periodic, N + 1 Dirichlet). Random numbers u in [0, 1) are u = (g() >> 11) * 2^-53 for
/// one std::mt19937_64 g seeded with `options.seed`, drawn in this order:
///   count = 4 + floor(7 u);
///   per box: centre c_a = E_a (0.1 + 0.8 u) for each used axis a, then the half-size
///   r_a = 10 u * E_a / reference_size for each axis, then the strength s = u.
/// The value of a box at a point is s * prod_a clamp(r_a + 1/2 - |p_a - c_a|, 0, 1), the
/// fraction of the cell covered by the box along each axis. That is exact for r_a >= 1/2;
/// thinner boxes (5% of the draws per axis at the reference size) get a peak of r_a + 1/2
/// instead of the exact 2 r_a, the soft-edge formula of the experiment being used unchanged
/// for all sizes. Boxes are cut at the domain boundary, not wrapped around periodic
/// boundaries. The field is the sum of the boxes, so it lies in [0, sum of strengths].
/// Throws InputError if reference_size is not positive and finite or the grid is not
/// scalar (dof != 1).
void fillSoftBoxes(const Grid& grid, Vec x, const SoftBoxesOptions& options = {});

/// Adds independent N(0, sigma^2) noise to every point of the global Vec `y`.
///
/// The normal at the point with natural index m uses outputs 2m and 2m + 1 of the splitmix64
/// sequence started at `seed` (random access, so no rank has to skip through the others'
/// numbers): u1 = ((a >> 11) + 1) 2^-53 in (0, 1], u2 = (b >> 11) 2^-53, and
/// z = sqrt(-2 ln u1) cos(2 pi u2) (Box-Muller). sigma < 0 (or NaN) throws InputError;
/// sigma == 0 leaves `y` unchanged.  Multi-component fields draw per entry of the natural
/// ordering (point-major, component fastest), so dof = 1 keeps the scalar numbers.
void addGaussianNoise(const Grid& grid, Vec y, double sigma, uint64_t seed);

}  // namespace physgrad
