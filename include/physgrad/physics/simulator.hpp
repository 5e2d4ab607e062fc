#pragma once
// A simulator P = S_K o ... o S_1 of K steps on one Grid.  It is itself a Step, so the
// machinery that works on one step (Jacobian shells, inverses, checks) works on it.
//
// The forward pass records the trajectory x_0 = x, x_k = S_k(x_{k-1}); jvp, vjp and
// inverse reuse it when they are asked about the same x, and recompute it otherwise.

#include <memory>
#include <vector>

#include "physgrad/physics/step.hpp"

namespace physgrad {

/// How often each map of the steps has been applied (counts of single steps).
struct StepCounts {
  long forward = 0, jvp = 0, vjp = 0, inverse = 0;
};

class Simulator final : public Step {
 public:
  Simulator(const Grid& grid, std::vector<std::shared_ptr<Step>> steps);

  std::string name() const override;
  bool isLinear() const override;
  size_t numSteps() const { return steps_.size(); }
  Step& step(size_t k) { return *steps_[k]; }

  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  /// Reverse sweep through the recorded trajectory (all states stored).
  void vjp(Vec x, Vec w, Vec wx) override;
  /// Inverse time stepping: x_{k-1} = S_k^{-1}(x_k) around the recorded state x_{k-1},
  /// for k = K ... 1, starting from x_K = y.
  void inverse(Vec x0, Vec y, Vec x) override;

  const StepCounts& counts() const { return counts_; }

 private:
  /// Makes states_ the trajectory of x (recomputing unless it already is).
  void ensureTrajectory(Vec x);

  std::vector<std::shared_ptr<Step>> steps_;
  std::vector<OwnedVec> states_;  // states_[k] = input of step k
  OwnedVec recorded_at_;          // the x the trajectory belongs to
  bool recorded_ = false;
  OwnedVec work_a_, work_b_;
  StepCounts counts_;
};

}  // namespace physgrad
