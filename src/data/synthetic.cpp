#include "physgrad/data/synthetic.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <sstream>
#include <vector>

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {

// 2^-53: maps the top 53 bits of a 64-bit word onto the doubles k 2^-53 in [0, 1), every
// one exactly representable, so the mapping is the same on every platform (unlike
// std::uniform_real_distribution, whose algorithm the standard leaves open).
constexpr double kTwoPowMinus53 = 1.0 / 9007199254740992.0;

double unitFromBits(uint64_t bits) { return static_cast<double>(bits >> 11) * kTwoPowMinus53; }

// Output number `index` (0-based) of the splitmix64 generator started at `seed`. The state
// after i steps is seed + (i + 1) * gamma, so any output can be computed directly.
uint64_t splitmix64(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct SoftBox {
  std::array<double, 3> centre = {0.0, 0.0, 0.0};
  std::array<double, 3> half_size = {0.0, 0.0, 0.0};
  double strength = 0.0;
};

// Draws the boxes; every rank runs this with the same seed and gets the same list.
std::vector<SoftBox> drawBoxes(const Grid& grid, const SoftBoxesOptions& options) {
  std::mt19937_64 engine(options.seed);
  auto uniform = [&engine]() { return unitFromBits(engine()); };
  const int dim = grid.dim();
  std::array<double, 3> extent = {1.0, 1.0, 1.0};
  for (int a = 0; a < dim; ++a) extent[a] = grid.spec().length[a] / grid.h(a);

  const int count = 4 + static_cast<int>(7.0 * uniform());
  std::vector<SoftBox> boxes(static_cast<size_t>(count));
  for (SoftBox& box : boxes) {
    for (int a = 0; a < dim; ++a) box.centre[a] = extent[a] * (0.1 + 0.8 * uniform());
    for (int a = 0; a < dim; ++a) {
      box.half_size[a] = 10.0 * uniform() * extent[a] / options.reference_size;
    }
    box.strength = uniform();
  }
  return boxes;
}

// Guards the raw array accesses below against a Vec from another grid or layout.
void checkLayout(const Grid& grid, Vec v, const char* what) {
  PetscInt local = 0;
  PG_CALL(VecGetLocalSize(v, &local));
  if (local != grid.owned().count() * grid.dof()) {
    std::ostringstream os;
    os << what << ": the vector has " << local << " local entries, the grid owns "
       << grid.owned().count() << " points of " << grid.dof() << " components on this rank";
    throw InputError(os.str());
  }
}

// Fraction of the unit cell around p covered by the interval [c - r, c + r] (soft edge).
double coverage(double p, double c, double r) {
  return std::clamp(r + 0.5 - std::abs(p - c), 0.0, 1.0);
}

}  // namespace

void fillSoftBoxes(const Grid& grid, Vec x, const SoftBoxesOptions& options) {
  if (!(options.reference_size > 0.0) || !std::isfinite(options.reference_size)) {
    std::ostringstream os;
    os << "soft boxes: reference_size must be positive and finite (got " << options.reference_size
       << ")";
    throw InputError(os.str());
  }
  if (grid.dof() != 1)
    throw InputError("soft boxes: a scalar field is needed (the grid has " +
                     std::to_string(grid.dof()) + " components per point)");
  checkLayout(grid, x, "soft boxes");
  const std::vector<SoftBox> boxes = drawBoxes(grid, options);
  const int dim = grid.dim();
  PetscScalar* a = nullptr;
  PG_CALL(VecGetArray(x, &a));
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    const std::array<PetscInt, 3> index = {i, j, k};
    std::array<double, 3> p = {0.0, 0.0, 0.0};
    // Cell units: the physical coordinate divided by the spacing (i + 1/2 or i + 1).
    for (int ax = 0; ax < dim; ++ax) p[ax] = grid.coordinate(ax, index[ax]) / grid.h(ax);
    double value = 0.0;
    for (const SoftBox& box : boxes) {
      double weight = box.strength;
      for (int ax = 0; ax < dim && weight != 0.0; ++ax) {
        weight *= coverage(p[ax], box.centre[ax], box.half_size[ax]);
      }
      value += weight;
    }
    a[o] = value;
  });
  PG_CALL(VecRestoreArray(x, &a));
}

void addGaussianNoise(const Grid& grid, Vec y, double sigma, uint64_t seed) {
  if (!(sigma >= 0.0)) {
    std::ostringstream os;
    os << "gaussian noise: sigma must be non-negative (got sigma = " << sigma << ")";
    throw InputError(os.str());
  }
  checkLayout(grid, y, "gaussian noise");
  if (sigma == 0.0) return;
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  PetscScalar* a = nullptr;
  PG_CALL(VecGetArray(y, &a));
  const PetscInt dof = grid.dof();
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    for (PetscInt c = 0; c < dof; ++c) {
      // Entry m of the natural ordering (component fastest): rank-independent draws.
      const uint64_t m = static_cast<uint64_t>(grid.naturalIndex(i, j, k) * dof + c);
      // u1 in (0, 1] keeps the logarithm finite.
      const double u1 = static_cast<double>((splitmix64(seed, 2 * m) >> 11) + 1) * kTwoPowMinus53;
      const double u2 = unitFromBits(splitmix64(seed, 2 * m + 1));
      a[o * dof + c] += sigma * std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
    }
  });
  PG_CALL(VecRestoreArray(y, &a));
}

}  // namespace physgrad
