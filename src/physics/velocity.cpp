#include "physgrad/physics/velocity.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {
constexpr double kTwoPi = 6.28318530717958647692;

std::string formatVector(const std::array<double, 3>& v) {
  std::ostringstream os;
  os << "(" << v[0] << ", " << v[1] << ", " << v[2] << ")";
  return os.str();
}
}  // namespace

void VelocityField::checkGrid(const Grid&) const {}

void ConstantVelocity::at(const double[3], double v[3]) const {
  v[0] = v_[0];
  v[1] = v_[1];
  v[2] = v_[2];
}

std::string ConstantVelocity::name() const { return "constant velocity " + formatVector(v_); }

RigidRotation RigidRotation::aboutDomainCentre(const Grid& grid, double omega) {
  const auto& l = grid.spec().length;
  return RigidRotation(omega, {0.5 * l[0], 0.5 * l[1], 0.5 * l[2]});
}

void RigidRotation::at(const double pos[3], double v[3]) const {
  v[0] = -omega_ * (pos[1] - centre_[1]);
  v[1] = omega_ * (pos[0] - centre_[0]);
  v[2] = 0.0;
}

std::string RigidRotation::name() const {
  std::ostringstream os;
  os << "rigid rotation (omega = " << omega_ << " about " << formatVector(centre_) << ")";
  return os.str();
}

void RigidRotation::checkGrid(const Grid& grid) const {
  if (grid.dim() < 2) throw InputError("a rigid rotation needs a 2D or 3D grid (got a 1D grid)");
}

TaylorGreenVortex::TaylorGreenVortex(double amplitude, const std::array<double, 3>& length)
    : amplitude_(amplitude) {
  for (int a = 0; a < 3; ++a) {
    if (!(length[a] > 0.0) || !std::isfinite(length[a])) {
      std::ostringstream os;
      os << "Taylor-Green vortex: domain lengths must be positive and finite (got "
         << formatVector(length) << ")";
      throw InputError(os.str());
    }
    k_[a] = kTwoPi / length[a];
  }
  kbar_ = 0.5 * (k_[0] + k_[1]);
}

TaylorGreenVortex TaylorGreenVortex::onDomainOf(const Grid& grid, double amplitude) {
  return TaylorGreenVortex(amplitude, grid.spec().length);
}

void TaylorGreenVortex::at(const double pos[3], double v[3]) const {
  const double sx = std::sin(k_[0] * pos[0]), cx = std::cos(k_[0] * pos[0]);
  const double sy = std::sin(k_[1] * pos[1]), cy = std::cos(k_[1] * pos[1]);
  const double cz = std::cos(k_[2] * pos[2]);
  v[0] = amplitude_ * (k_[1] / kbar_) * sx * cy * cz;
  v[1] = -amplitude_ * (k_[0] / kbar_) * cx * sy * cz;
  v[2] = 0.0;
}

std::string TaylorGreenVortex::name() const {
  std::ostringstream os;
  os << "Taylor-Green vortex (amplitude " << amplitude_ << ")";
  return os.str();
}

double maxSpeed(const Grid& grid, const VelocityField& velocity) {
  double local = 0.0;
  bool finite = true;
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt) {
    const PetscInt idx[3] = {i, j, k};
    double pos[3] = {0.0, 0.0, 0.0}, v[3];
    for (int a = 0; a < grid.dim(); ++a) pos[a] = grid.coordinate(a, idx[a]);
    velocity.at(pos, v);
    double s2 = 0.0;
    for (int a = 0; a < grid.dim(); ++a) s2 += v[a] * v[a];
    if (!std::isfinite(s2)) finite = false;
    local = std::max(local, std::sqrt(s2));
  });
  // NaN does not survive MPI_MAX reliably, so non-finiteness travels as its own flag.
  double reduced[2] = {local, finite ? 0.0 : 1.0}, global[2];
  MPI_Allreduce(reduced, global, 2, MPI_DOUBLE, MPI_MAX, grid.comm());
  return global[1] > 0.0 ? std::numeric_limits<double>::quiet_NaN() : global[0];
}

double advectiveCfl(const Grid& grid, const VelocityField& velocity, double dt) {
  double inv_h = 0.0;
  for (int a = 0; a < grid.dim(); ++a) inv_h += 1.0 / grid.h(a);
  return maxSpeed(grid, velocity) * dt * inv_h;
}

}  // namespace physgrad
