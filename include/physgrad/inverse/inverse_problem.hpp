#pragma once
// min_x L(P(x)): the simulator, the loss and (when known) the true x, with counts of
// every PDE solve the optimisers spend.

#include <functional>
#include <memory>
#include <string>

#include "physgrad/inverse/loss.hpp"
#include "physgrad/physics/jacobian.hpp"
#include "physgrad/physics/simulator.hpp"

namespace physgrad {

/// Whole-simulator runs, measured in step applications divided by the number of steps:
/// forward (P, including recomputations the simulator does for its own trajectory),
/// adjoint (J^T, one reverse sweep), tangent (J), inverse (P^{-1}).
struct SolveCounts {
  double forward = 0, adjoint = 0, tangent = 0, inverse = 0;
  double total() const { return forward + adjoint + tangent + inverse; }
};

/// Reconstruction error of x against the truth.
struct XError {
  double relative_l2 = 0.0;  ///< ||x - x*|| / ||x*||
  double mean_abs = 0.0;     ///< mean over points of |x - x*|
  double sum_abs = 0.0;      ///< sum over points of |x - x*| (the SIP paper's measure)
};

class InverseProblem {
 public:
  /// `truth` may be null when x* is unknown.
  InverseProblem(Simulator& sim, Loss& loss, Vec truth = nullptr);

  Simulator& simulator() { return *sim_; }
  Loss& loss() { return *loss_; }
  const Grid& grid() const { return sim_->grid(); }
  bool hasTruth() const { return static_cast<bool>(truth_); }

  /// y = P(x); returns L(y).  A repeated call at the same x reuses the last output
  /// instead of solving again.  Returns NaN (y undefined) when the solve meets Inf/NaN or
  /// the state leaves a step's range (StateOutOfRange): optimisers reject such trials.
  double evaluate(Vec x, Vec y);
  /// g = dL/dx = J^T dL/dy at x (forward + reverse sweep); returns L(P(x)), or NaN
  /// (g undefined) when a solve meets Inf/NaN.
  double valueAndGradient(Vec x, Vec g);
  /// x = P^{-1}(y) by inverse time stepping around the trajectory of x0.  Returns false
  /// (x undefined, reason in lastRejection()) when a solve meets Inf/NaN, a state leaves a
  /// step's range, or a local inverse does not converge.
  bool inverse(Vec x0, Vec y, Vec x);

  /// The Jacobian of the simulator at x (the returned operator is reused between calls).
  JacobianOperator& jacobian(Vec x);

  /// Hv = (d^2 L(P(x)) / dx^2) v, for problems small or special enough to supply it
  /// (the Newton update rule needs it).
  using HessianAction = std::function<void(Vec x, Vec v, Vec Hv)>;
  void setHessianAction(HessianAction h) { hessian_ = std::move(h); }
  const HessianAction& hessianAction() const { return hessian_; }

  /// Requires the truth.
  XError xError(Vec x) const;

  OwnedVec createField() const { return grid().createGlobal(); }
  /// Simulator runs since construction or the last resetCounts().
  SolveCounts counts() const;
  void resetCounts() { baseline_ = sim_->counts(); }
  /// Why the last rejected evaluation or inverse failed (empty if none was).
  const std::string& lastRejection() const { return last_rejection_; }
  /// Forgets the cached forward solve, so that a new run pays for its own first one.
  void clearCache() { have_last_ = false; }

 private:
  Simulator* sim_;
  Loss* loss_;
  OwnedVec truth_;
  OwnedVec y_work_, gy_work_;
  OwnedVec last_x_, last_y_;  // the most recent forward solve
  bool have_last_ = false;
  double last_loss_ = 0.0;
  mutable OwnedVec diff_;
  StepCounts baseline_;
  std::unique_ptr<JacobianOperator> jacobian_;
  HessianAction hessian_;
  std::string last_rejection_;
};

}  // namespace physgrad
