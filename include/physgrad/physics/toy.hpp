#pragma once
// The physical-gradient chapter's toy problem: y(x) = (x0, x1^2) with L = |y|^2, on a
// two-point grid, so that every update rule of the library can be run on it and checked
// against closed-form recurrences.

#include <memory>

#include "physgrad/grid/grid.hpp"
#include "physgrad/inverse/inverse_problem.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

/// A 1D zero-Dirichlet grid of two points on `comm` (use PETSC_COMM_SELF: two unknowns
/// cannot be spread over more ranks than that).
GridSpec toyGridSpec();

/// S(x) = (x0, x1^2); J = diag(1, 2 x1); the inverse takes the root with the sign of the
/// linearisation point's x1 (the branch the iterate is on).
class BookToyStep final : public Step {
 public:
  explicit BookToyStep(const Grid& grid);
  std::string name() const override { return "book-toy"; }
  bool isLinear() const override { return false; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  void inverse(Vec x0, Vec y, Vec x) override;
};

/// Hessian of L(x) = x0^2 + x1^4 (the toy's loss as a function of x): diag(2, 12 x1^2).
InverseProblem::HessianAction bookToyHessian();

}  // namespace physgrad
