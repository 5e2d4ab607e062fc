#include "physgrad/physics/toy.hpp"

#include <cmath>

#include "physgrad/core/error.hpp"

namespace physgrad {

GridSpec toyGridSpec() {
  GridSpec s;
  s.dim = 1;
  s.n = {2, 1, 1};
  s.length = {3.0, 1.0, 1.0};
  s.boundary = Boundary::ZeroDirichlet;
  return s;
}

namespace {
// Applies f(i, a_i, b_i) -> out_i over the two entries (all on one rank).
template <typename F>
void pointwise(Vec a, Vec b, Vec out, F&& f) {
  PetscInt n = 0;
  PG_CALL(VecGetLocalSize(out, &n));
  const PetscScalar *pa = nullptr, *pb = nullptr;
  PetscScalar* po = nullptr;
  PG_CALL(VecGetArrayRead(a, &pa));
  PG_CALL(VecGetArrayRead(b, &pb));
  PG_CALL(VecGetArray(out, &po));
  PetscInt start = 0;
  PG_CALL(VecGetOwnershipRange(out, &start, nullptr));
  for (PetscInt i = 0; i < n; ++i) po[i] = f(start + i, pa[i], pb[i]);
  PG_CALL(VecRestoreArray(out, &po));
  PG_CALL(VecRestoreArrayRead(b, &pb));
  PG_CALL(VecRestoreArrayRead(a, &pa));
}
}  // namespace

BookToyStep::BookToyStep(const Grid& grid) : Step(grid) {
  if (grid.size() * grid.dof() != 2) throw InputError("the book toy lives on a two-point grid");
}

void BookToyStep::forward(Vec x, Vec y) {
  pointwise(x, x, y, [](PetscInt i, double xi, double) { return i == 0 ? xi : xi * xi; });
}

void BookToyStep::jvp(Vec x, Vec dx, Vec dy) {
  pointwise(x, dx, dy, [](PetscInt i, double xi, double d) { return i == 0 ? d : 2.0 * xi * d; });
}

void BookToyStep::vjp(Vec x, Vec w, Vec wx) { jvp(x, w, wx); }  // J is diagonal

void BookToyStep::inverse(Vec x0, Vec y, Vec x) {
  bool ok = true;
  pointwise(x0, y, x, [&ok](PetscInt i, double x0i, double yi) {
    if (i == 0) return yi;
    if (yi < 0.0) ok = false;
    return std::copysign(std::sqrt(std::max(yi, 0.0)), x0i);
  });
  if (!ok) throw NonFiniteError("book toy: x1^2 = y1 < 0 has no real solution");
}

InverseProblem::HessianAction bookToyHessian() {
  return [](Vec x, Vec v, Vec hv) {
    pointwise(x, v, hv, [](PetscInt i, double xi, double vi) {
      return i == 0 ? 2.0 * vi : 12.0 * xi * xi * vi;
    });
  };
}

}  // namespace physgrad
