#pragma once
// Test-only steps that do not commute with diffusion: a pointwise scaling (linear) and a
// pointwise cubic (nonlinear, so simulators containing it need their recorded states).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fields.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {
namespace testutil {

/// y = a(x) * x pointwise with a smooth a in [0.7, 1.3]: linear and symmetric, but a
/// multiplication by a non-constant field does not commute with the Laplacian.
class PointwiseScaleStep final : public Step {
 public:
  explicit PointwiseScaleStep(const Grid& grid) : Step(grid), scale_(grid.createGlobal()) {
    std::vector<double> a = smoothRandomNatural(grid, 99, 3);
    double amax = 0.0;
    for (double v : a) amax = std::max(amax, std::abs(v));
    for (double& v : a) v = 1.0 + 0.3 * v / amax;
    grid.scatterNatural(a, scale_);
  }
  std::string name() const override { return "pointwise-scale"; }
  bool isLinear() const override { return true; }
  void forward(Vec x, Vec y) override { PG_CALL(VecPointwiseMult(y, scale_, x)); }
  void jvp(Vec, Vec dx, Vec dy) override { PG_CALL(VecPointwiseMult(dy, scale_, dx)); }
  void vjp(Vec, Vec w, Vec wx) override { PG_CALL(VecPointwiseMult(wx, scale_, w)); }
  void inverse(Vec, Vec y, Vec x) override { PG_CALL(VecPointwiseDivide(x, y, scale_)); }

 private:
  OwnedVec scale_;
};

/// y = x + alpha x^3 pointwise (alpha > 0, so strictly monotone and globally invertible):
/// a nonlinear step whose Jacobian diag(1 + 3 alpha x^2) depends on the point.
class PointwiseCubicStep final : public Step {
 public:
  PointwiseCubicStep(const Grid& grid, double alpha) : Step(grid), alpha_(alpha) {}
  std::string name() const override { return "pointwise-cubic"; }
  bool isLinear() const override { return false; }
  void forward(Vec x, Vec y) override {
    map(x, x, y, [this](double xi, double) { return xi + alpha_ * xi * xi * xi; });
  }
  void jvp(Vec x, Vec dx, Vec dy) override {
    map(x, dx, dy, [this](double xi, double di) { return (1.0 + 3.0 * alpha_ * xi * xi) * di; });
  }
  void vjp(Vec x, Vec w, Vec wx) override { jvp(x, w, wx); }  // diagonal Jacobian
  void inverse(Vec x0, Vec y, Vec x) override {
    // Newton on each point from the linearisation point; the cubic is convex-concave and
    // monotone, so a bounded number of iterations reaches round-off.
    map(x0, y, x, [this](double start, double yi) {
      double xi = start;
      for (int it = 0; it < 100; ++it) {
        const double r = xi + alpha_ * xi * xi * xi - yi;
        const double step = r / (1.0 + 3.0 * alpha_ * xi * xi);
        xi -= step;
        if (std::abs(step) <= 1e-16 * (1.0 + std::abs(xi))) break;
      }
      return xi;
    });
  }

 private:
  template <typename F>
  void map(Vec a, Vec b, Vec out, F&& f) const {
    PetscInt n = 0;
    PG_CALL(VecGetLocalSize(out, &n));
    const PetscScalar *pa = nullptr, *pb = nullptr;
    PetscScalar* po = nullptr;
    PG_CALL(VecGetArrayRead(a, &pa));
    PG_CALL(VecGetArrayRead(b, &pb));
    PG_CALL(VecGetArray(out, &po));
    for (PetscInt i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    PG_CALL(VecRestoreArray(out, &po));
    PG_CALL(VecRestoreArrayRead(b, &pb));
    PG_CALL(VecRestoreArrayRead(a, &pa));
  }
  double alpha_;
};

}  // namespace testutil
}  // namespace physgrad
