#pragma once
// Losses live in y-space: value, gradient and their own Newton step.

#include <petscvec.h>

#include "physgrad/core/handle.hpp"

namespace physgrad {

class Loss {
 public:
  virtual ~Loss() = default;
  virtual double value(Vec y) = 0;
  /// g = dL/dy
  virtual void gradient(Vec y, Vec g) = 0;
  /// The Newton step of L in y: dy = -H^{-1} dL/dy.
  virtual void newtonStep(Vec y, Vec dy) = 0;
};

/// L(y) = w/2 ||y - y*||^2 (Euclidean, over all grid points; weight w > 0, default 1).
class SquaredLoss final : public Loss {
 public:
  /// Copies the target y*.
  explicit SquaredLoss(Vec target, double weight = 1.0);
  double value(Vec y) override;
  void gradient(Vec y, Vec g) override;     // w (y - y*)
  void newtonStep(Vec y, Vec dy) override;  // -(y - y*), independent of w
  Vec target() const { return target_; }
  double weight() const { return weight_; }

 private:
  OwnedVec target_, residual_;
  double weight_;
};

}  // namespace physgrad
