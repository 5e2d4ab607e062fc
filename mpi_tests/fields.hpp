#pragma once
// Test fields that do not depend on the number of ranks: every value is a function of the
// natural grid index only (coordinates, or a fixed-seed random stream drawn identically on
// every rank), and Grid::scatterNatural keeps just the owned part.

#include <petscvec.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "physgrad/core/error.hpp"
#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"

namespace physgrad::testutil {

inline constexpr double kPi = 3.14159265358979323846;

/// Wavenumber of mode m along an axis: periodic fields repeat over the length L, zero-Dirichlet
/// sine modes vanish at both walls x = 0 and x = L (where the grid has its zero ghosts).
inline double wavenumber(const Grid& grid, int axis, int m) {
  const double length = grid.spec().length[axis];
  return grid.boundary() == Boundary::Periodic ? 2.0 * kPi * m / length : kPi * m / length;
}

/// The separable Fourier mode prod_d f_d(k_d x_d) in natural ordering.  Periodic grids get
/// a different phase per axis (sin, cos, shifted cos), so that the test is not blind to
/// a symmetric error; Dirichlet grids get sines, the only modes with zero boundary values.
/// Either way it is an exact eigenvector of the discrete Laplacian.
inline std::vector<double> fourierModeNatural(const Grid& grid, const std::array<int, 3>& m) {
  static const double phase[3] = {-0.5 * kPi, 0.0, 0.7};
  std::vector<double> out(static_cast<size_t>(grid.size()));
  auto factor = [&](int axis, PetscInt i) {
    if (axis >= grid.dim()) return 1.0;
    const double kx = wavenumber(grid, axis, m[axis]) * grid.coordinate(axis, i);
    return grid.boundary() == Boundary::Periodic ? std::cos(kx + phase[axis]) : std::sin(kx);
  };
  for (PetscInt k = 0; k < grid.n(2); ++k)
    for (PetscInt j = 0; j < grid.n(1); ++j)
      for (PetscInt i = 0; i < grid.n(0); ++i)
        out[grid.naturalIndex(i, j, k)] = factor(0, i) * factor(1, j) * factor(2, k);
  return out;
}

/// |k|^2 of the mode: the decay rate of the continuous heat equation per unit kappa t.
inline double continuousEigenvalue(const Grid& grid, const std::array<int, 3>& m) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) s += std::pow(wavenumber(grid, a, m[a]), 2);
  return s;
}

/// The eigenvalue of -Delta_h (three-point stencil per axis) on the mode:
/// sum_d 4/h_d^2 sin^2(k_d h_d / 2).
inline double discreteEigenvalue(const Grid& grid, const std::array<int, 3>& m) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) {
    const double h = grid.h(a);
    s += 4.0 / (h * h) * std::pow(std::sin(0.5 * wavenumber(grid, a, m[a]) * h), 2);
  }
  return s;
}

/// A smooth field: a few separable modes with low wavenumbers and amplitudes and phases
/// drawn from a fixed-seed stream (identical on every rank), compatible with the grid's
/// boundary condition.  Smooth data keep the inverse problems well conditioned.
inline std::vector<double> smoothRandomNatural(const Grid& grid, unsigned seed, int modes = 5) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> amplitude(-1.0, 1.0), phase(0.0, 2.0 * kPi);
  const bool periodic = grid.boundary() == Boundary::Periodic;
  std::uniform_int_distribution<int> wave(periodic ? 0 : 1, 3);
  std::vector<double> out(static_cast<size_t>(grid.size()), 0.0);
  for (int t = 0; t < modes; ++t) {
    const double a = amplitude(gen);
    std::array<int, 3> m{};
    std::array<double, 3> phi{};
    for (int d = 0; d < 3; ++d) {
      m[d] = wave(gen);
      phi[d] = periodic ? phase(gen) : 0.0;
    }
    auto factor = [&](int axis, PetscInt i) {
      if (axis >= grid.dim()) return 1.0;
      const double kx = wavenumber(grid, axis, m[axis]) * grid.coordinate(axis, i);
      return periodic ? std::cos(kx + phi[axis]) : std::sin(kx);
    };
    for (PetscInt k = 0; k < grid.n(2); ++k)
      for (PetscInt j = 0; j < grid.n(1); ++j)
        for (PetscInt i = 0; i < grid.n(0); ++i)
          out[grid.naturalIndex(i, j, k)] += a * factor(0, i) * factor(1, j) * factor(2, k);
  }
  return out;
}

/// White noise in [-1, 1] from a fixed-seed stream: every frequency present, which is where a
/// wrong transpose (e.g. a boundary row) hides from smooth test vectors.
inline std::vector<double> roughRandomNatural(const Grid& grid, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  std::vector<double> out(static_cast<size_t>(grid.size()));
  for (double& v : out) v = value(gen);
  return out;
}

/// A global Vec of `grid` holding the natural-ordered field.
inline OwnedVec fieldFromNatural(const Grid& grid, const std::vector<double>& natural) {
  OwnedVec v = grid.createGlobal();
  grid.scatterNatural(natural, v);
  return v;
}

/// ||a - b|| / ||b|| for two whole fields held on every rank, maximised over the ranks of
/// `comm` so that every rank sees (and branches on) the same number.
inline double maxRelativeDifference(const std::vector<double>& a, const std::vector<double>& b,
                                    MPI_Comm comm) {
  if (a.size() != b.size()) throw InputError("maxRelativeDifference: sizes differ");
  double diff = 0.0, norm = 0.0;
  for (size_t t = 0; t < a.size(); ++t) {
    diff += (a[t] - b[t]) * (a[t] - b[t]);
    norm += b[t] * b[t];
  }
  double local = std::sqrt(diff) / std::sqrt(norm), global = 0.0;
  MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_MAX, comm);
  return global;
}

}  // namespace physgrad::testutil
