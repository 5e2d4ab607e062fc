#pragma once
// One time step S: x -> y on a Grid, with its tangent, exact discrete adjoint and a local
// inverse. All fields are global Vecs of the step's Grid.

#include <petscvec.h>

#include <cstddef>
#include <memory>
#include <string>

#include "physgrad/grid/grid.hpp"

namespace physgrad {

/// What forward(x) of a nonlinear step computed that a jvp/vjp at x would otherwise compute
/// again (for a limited scheme: which branch the limiter took at every point).  Opaque:
/// only the step that made it reads it.
class LinearisationRecord {
 public:
  virtual ~LinearisationRecord() = default;
  /// The memory the record holds, in bytes.
  virtual size_t bytes() const = 0;
};

/// Identity and modification count of a Vec: equal stamps mean the same object, not
/// written since (PETSc bumps the state on every write access).
struct VecStamp {
  PetscObjectId id = 0;
  PetscObjectState state = -1;
  static VecStamp of(Vec v);
  bool operator==(const VecStamp& o) const { return id == o.id && state == o.state; }
};

class Step {
 public:
  explicit Step(const Grid& grid) : grid_(&grid) {}
  virtual ~Step() = default;
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;

  virtual std::string name() const = 0;
  /// True when S is linear, so that jvp/vjp/inverse do not depend on the point x.
  virtual bool isLinear() const = 0;
  /// True when S is linear and J = J^T in the Euclidean inner product (e.g. diffusion).
  virtual bool isSelfAdjoint() const { return false; }

  /// y = S(x)
  virtual void forward(Vec x, Vec y) = 0;
  /// dy = J(x) dx  (tangent)
  virtual void jvp(Vec x, Vec dx, Vec dy) = 0;
  /// wx = J(x)^T w  (exact discrete adjoint in the Euclidean inner product)
  virtual void vjp(Vec x, Vec w, Vec wx) = 0;
  /// x = local inverse of S around the point x0 applied to y.  The default solves
  /// S(x) = y by matrix-free Newton-Krylov (GMRES on the jvp) from x0 and throws
  /// PetscException if that does not converge; steps that know a better inverse (a
  /// stencil apply, a reverse-velocity step, a Fourier multiplier) override it.
  virtual void inverse(Vec x0, Vec y, Vec x);

  /// The linearisation of the last forward() call, for a caller that keeps the input x
  /// unchanged and will call jvp/vjp at it later (a reverse sweep); nullptr when the step
  /// has nothing worth keeping (linear steps; steps whose record would cost far more
  /// memory than the state, or as much work to make as the jvp/vjp saves).
  virtual std::unique_ptr<LinearisationRecord> recordLinearisation() { return nullptr; }
  /// forward(x, y) then recordLinearisation(), for a caller that wants the record.  A step
  /// whose record takes work a plain forward does not do (Burgers: its Jacobian terms)
  /// makes it only here, in the same pass as y.
  virtual std::unique_ptr<LinearisationRecord> forwardAndRecord(Vec x, Vec y) {
    forward(x, y);
    return recordLinearisation();
  }
  /// Makes the next jvp/vjp at exactly this Vec x, unmodified since, use `record` (from
  /// recordLinearisation() right after forward(x), or forwardAndRecord(x, y)) instead of
  /// recomputing it.  The step
  /// may hold on to the record (it reads it in place) until the next restore or forward.
  virtual void restoreLinearisation(std::shared_ptr<const LinearisationRecord> record, Vec x) {
    (void)record;
    (void)x;
  }

  const Grid& grid() const { return *grid_; }

 private:
  const Grid* grid_;
};

}  // namespace physgrad
