// The book's toy problem y = (x0, x1^2), L = |y|^2 from x = (3, 3): the trajectories of GD,
// Newton, IG and PG equal their closed-form recurrences iteration by iteration.  The toy
// has two unknowns, so every rank runs it on its own PETSC_COMM_SELF grid.

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <vector>

#include "physgrad/core/error.hpp"
#include "physgrad/inverse/inverse_problem.hpp"
#include "physgrad/optim/optimizer.hpp"
#include "physgrad/physics/simulator.hpp"
#include "physgrad/physics/toy.hpp"

namespace physgrad {
namespace {

using Point = std::array<double, 2>;

std::vector<Point> runToy(const std::string& type, OptimizerOptions o) {
  Grid grid(PETSC_COMM_SELF, toyGridSpec());
  auto step = std::make_shared<BookToyStep>(grid);
  Simulator sim(grid, {step});
  OwnedVec zero = grid.createGlobal(), x = grid.createGlobal();
  SquaredLoss loss(zero, 2.0);  // L = |y|^2
  InverseProblem problem(sim, loss);
  problem.setHessianAction(bookToyHessian());
  PG_CALL(VecSet(x, 3.0));
  std::vector<Point> path;
  o.max_it = 10;
  o.monitor = false;
  o.residual_rtol = 0.0;
  runOptimizer(type, problem, x, o, [&](const std::string&, const IterationRecord&, Vec xi) {
    const PetscScalar* a = nullptr;
    PG_CALL(VecGetArrayRead(xi, &a));
    path.push_back({a[0], a[1]});
    PG_CALL(VecRestoreArrayRead(xi, &a));
  });
  return path;
}

void expectPath(const std::vector<Point>& path, const std::function<Point(Point)>& next,
                double tol) {
  ASSERT_EQ(path.size(), 11u);
  Point expected = {3.0, 3.0};
  for (size_t k = 0; k < path.size(); ++k) {
    for (int c = 0; c < 2; ++c)
      EXPECT_NEAR(path[k][c], expected[c], tol * std::abs(expected[c])) << "iteration " << k;
    expected = next(expected);
  }
}

TEST(BookToy, GradientDescent) {
  OptimizerOptions o;
  o.gd_step = 0.01;
  expectPath(
      runToy("gd", o),
      [](Point p) {
        return Point{p[0] - 0.01 * 2.0 * p[0], p[1] - 0.01 * 4.0 * p[1] * p[1] * p[1]};
      },
      1e-13);
}

TEST(BookToy, Newton) {
  OptimizerOptions o;
  o.newton_eta = 1.0 / 3.0;
  // Hessian diag(2, 12 x1^2): dx = -(x0, x1 / 3), scaled by 1/3.
  expectPath(
      runToy("newton", o),
      [](Point p) {
        return Point{p[0] - p[0] / 3.0, p[1] - p[1] / 9.0};
      },
      1e-12);
}

TEST(BookToy, PhysicalGradient) {
  OptimizerOptions o;
  o.pg_eta = 0.3;
  // y <- 0.7 y, x = (y0, sqrt(y1))
  expectPath(
      runToy("pg", o),
      [](Point p) {
        return Point{0.7 * p[0], std::sqrt(0.7 * p[1] * p[1])};
      },
      1e-13);
}

TEST(BookToy, InverseGradient) {
  OptimizerOptions o;
  o.pg_eta = 0.3;
  o.ig_rtol = 1e-14;
  // dy = -0.3 y, dx = diag(1, 1 / (2 x1)) dy = -(0.3 x0, 0.15 x1)
  expectPath(
      runToy("ig", o),
      [](Point p) {
        return Point{0.7 * p[0], 0.85 * p[1]};
      },
      1e-12);
}

}  // namespace
}  // namespace physgrad
