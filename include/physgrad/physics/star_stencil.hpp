#pragma once
// A constant-coefficient star stencil, applied matrix-free:
//   y_i = center x_i + sum_d (minus_d x_{i - e_d} + plus_d x_{i + e_d})
// on every owned point and component, with neighbours outside a zero-Dirichlet domain
// equal to 0.  The kernel behind the explicit diffusion step (minus = plus) and the upwind
// step with a constant velocity (one of the two zero per axis).

#include <petscvec.h>

#include <array>
#include <cstddef>

#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"

namespace physgrad {

/// When the stencil apply writes y with non-temporal (cache-bypassing) stores.  Auto:
/// when the build has them (AVX-512) and x and y of all ranks on the node (2 × the local
/// part of y × Environment::ranksOnNode()) exceed the last-level cache, taken from sysfs
/// and capped at 32 MiB (virtual machines report a whole host socket's L3).
/// Always/never exist for tests and measurements.
enum class StreamingStores { Auto, Always, Never };

class StarStencil {
 public:
  StarStencil(const Grid& grid, double center, const std::array<double, 3>& minus,
              const std::array<double, 3>& plus);

  /// y = A x.  x and y must be different Vecs of the grid.
  void apply(Vec x, Vec y) const;
  /// The transpose A^T: minus and plus swapped (exact on periodic and zero-Dirichlet
  /// grids alike).
  StarStencil transposed() const { return StarStencil(*grid_, center_, plus_, minus_); }

  double center() const { return center_; }
  const std::array<double, 3>& minus() const { return minus_; }
  const std::array<double, 3>& plus() const { return plus_; }

  /// Process-wide policy for the streaming stores of apply() and of the uniform
  /// interpolation sweeps (InterpolationTable::uniform; default Auto).
  static void setStreamingStores(StreamingStores policy);
  static StreamingStores streamingStores();
  /// Whether this build has a streaming-store kernel at all.
  static bool haveStreamingStores();
  /// Whether, under the current policy, a kernel that writes `local_output_bytes` on this
  /// rank uses streaming stores (what Auto decides for that size).
  static bool usesStreamingStores(std::size_t local_output_bytes);

 private:
  const Grid* grid_;
  double center_;
  std::array<double, 3> minus_, plus_;
  bool symmetric_;
  mutable OwnedVec local_;  // only the ghosts other ranks own are filled
};

}  // namespace physgrad
