#pragma once
// Diffusion time steps u_t = kappa Delta u on a Grid.  All are linear, so their jvp and
// inverse do not depend on the linearisation point, and, Delta_h being symmetric, their
// adjoints are the same operators applied (or solved) in transposed order.

#include <memory>

#include "physgrad/physics/shifted_laplacian.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

struct DiffusionParams {
  double kappa = 1.0;  ///< diffusivity, >= 0
  double dt = 1.0;     ///< time step, > 0
  void validate() const;
};

/// Forward Euler (FTCS): y = (I + dt kappa Delta_h) x.  Refuses dt above the stability
/// limit dt <= 1 / (2 kappa sum_d 1/h_d^2).  Inverse: Krylov solve with the same operator.
class ExplicitDiffusionStep final : public Step {
 public:
  ExplicitDiffusionStep(const Grid& grid, DiffusionParams p, LinearSolveOptions solve = {});
  std::string name() const override { return "explicit-diffusion"; }
  bool isLinear() const override { return true; }
  bool isSelfAdjoint() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  void inverse(Vec x0, Vec y, Vec x) override;

  /// The largest stable dt for this grid and diffusivity (infinite for kappa = 0).
  static double stableDt(const Grid& grid, double kappa);

 private:
  ShiftedLaplacian op_;
};

/// The theta scheme (I - theta dt kappa Delta_h) y = (I + (1 - theta) dt kappa Delta_h) x:
/// theta = 1 is backward Euler, theta = 1/2 Crank-Nicolson.  The implicit part is solved
/// by CG, Jacobi- or GAMG-preconditioned by stiffness (prefix -diffusion_); the inverse applies the
/// implicit stencil and, for theta < 1, solves with the explicit part.
class ImplicitDiffusionStep final : public Step {
 public:
  ImplicitDiffusionStep(const Grid& grid, DiffusionParams p, double theta = 1.0,
                        LinearSolveOptions solve = {});
  std::string name() const override;
  bool isLinear() const override { return true; }
  bool isSelfAdjoint() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  void inverse(Vec x0, Vec y, Vec x) override;

  /// Iterations of the last implicit solve.
  PetscInt lastSolveIterations() const { return implicit_.lastIterations(); }

 private:
  double theta_;
  ShiftedLaplacian implicit_;                   // I - theta dt kappa Delta_h
  std::unique_ptr<ShiftedLaplacian> explicit_;  // I + (1 - theta) dt kappa Delta_h, theta < 1
  OwnedVec work_;
};

}  // namespace physgrad

namespace physgrad {

enum class DiffusionScheme { Explicit, BackwardEuler, CrankNicolson };
/// Parses explicit | implicit (backward Euler) | cn; throws InputError naming `option`.
DiffusionScheme parseDiffusionScheme(const std::string& text, const std::string& option);
const char* toString(DiffusionScheme s);

class Simulator;
/// K equal steps of `scheme` from t = 0 to t_end with diffusivity kappa.
std::unique_ptr<Simulator> makeDiffusionSimulator(const Grid& grid, DiffusionScheme scheme,
                                                  double kappa, double t_end, PetscInt steps,
                                                  LinearSolveOptions solve = {});

}  // namespace physgrad
