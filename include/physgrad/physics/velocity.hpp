#pragma once
// Given (prescribed, time-independent) velocity fields v(x) for the advection steps
// u_t + v . grad u = 0, evaluated at physical positions, plus the speed bounds that the
// steps' CFL checks use.
//
// Positions and velocities always have three entries; on a grid of dimension d < 3 the
// positions carry 0 in the unused coordinates and the steps ignore the unused velocity
// components.

#include <array>
#include <string>

#include "physgrad/grid/grid.hpp"

namespace physgrad {

class VelocityField {
 public:
  virtual ~VelocityField() = default;
  /// v(pos), pos in physical coordinates (the frame of Grid::coordinate).
  virtual void at(const double pos[3], double v[3]) const = 0;
  virtual std::string name() const = 0;
  /// Throws InputError when the field is not meaningful on `grid` (e.g. a rotation in 1D).
  virtual void checkGrid(const Grid& grid) const;
};

/// v(x) = v0 everywhere.
class ConstantVelocity final : public VelocityField {
 public:
  explicit ConstantVelocity(const std::array<double, 3>& v) : v_(v) {}
  void at(const double pos[3], double v[3]) const override;
  std::string name() const override;

 private:
  std::array<double, 3> v_;
};

/// Rigid rotation with angular speed omega (counter-clockwise for omega > 0) about `centre`:
/// v = omega (-(y - cy), x - cx, 0).  In 3D this is the rotation about the axis parallel to z
/// through the centre.  Not defined in 1D.
class RigidRotation final : public VelocityField {
 public:
  RigidRotation(double omega, const std::array<double, 3>& centre)
      : omega_(omega), centre_(centre) {}
  /// The rotation about the centre of the grid's domain (L_x / 2, L_y / 2, L_z / 2).
  static RigidRotation aboutDomainCentre(const Grid& grid, double omega);
  void at(const double pos[3], double v[3]) const override;
  std::string name() const override;
  void checkGrid(const Grid& grid) const override;

 private:
  double omega_;
  std::array<double, 3> centre_;
};

/// The Taylor-Green vortex of amplitude A on the box [0, L_x] x [0, L_y] x [0, L_z], with
/// k_d = 2 pi / L_d and kbar = (k_x + k_y) / 2:
///   v_x =  A (k_y / kbar) sin(k_x x) cos(k_y y) cos(k_z z)
///   v_y = -A (k_x / kbar) cos(k_x x) sin(k_y y) cos(k_z z)
///   v_z = 0.
/// On a square domain in 2D (z = 0) this is A (sin(2 pi x/L) cos(2 pi y/L),
/// -cos(2 pi x/L) sin(2 pi y/L)); the factors k/kbar keep it divergence-free when L_x != L_y.
/// In 3D it is the classic Taylor-Green initial field (cos(k_z z) modulated, still
/// divergence-free because v_z = 0 and the x-y part is).  Periodic on the box, with zero
/// normal velocity on every wall, so on a zero-Dirichlet grid nothing flows in or out.
/// In 1D it reduces to v_x = A sin(k_x x) (compressive, but a valid given velocity).
class TaylorGreenVortex final : public VelocityField {
 public:
  TaylorGreenVortex(double amplitude, const std::array<double, 3>& length);
  /// The vortex on the grid's domain.
  static TaylorGreenVortex onDomainOf(const Grid& grid, double amplitude);
  void at(const double pos[3], double v[3]) const override;
  std::string name() const override;

 private:
  double amplitude_;
  std::array<double, 3> k_;
  double kbar_;
};

/// max over the grid nodes of |v| (Euclidean norm over the grid's used axes); collective.
/// Returns NaN if the velocity is not finite at some node.
double maxSpeed(const Grid& grid, const VelocityField& velocity);

/// The advective CFL number max|v| dt sum_d 1/h_d (collective).  It bounds the exact
/// positivity limit of first-order upwinding, dt sum_d |v_d| / h_d, from above.
double advectiveCfl(const Grid& grid, const VelocityField& velocity, double dt);

}  // namespace physgrad
