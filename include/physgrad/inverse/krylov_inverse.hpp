#pragma once
// Krylov solves with the Jacobian of a step or simulator (the IG update), and regularised
// inverses for dissipative physics, whose exact inverse amplifies noise without bound.

#include <memory>
#include <string>

#include "physgrad/physics/jacobian.hpp"

namespace physgrad {

/// How to solve J dx = dy.
enum class InverseJacobianMethod {
  Gmres,     ///< square solve (J must be invertible); no damping
  Lsqr,      ///< least squares min ||J dx - dy|| (PETSc KSPLSQR)
  Cgls,      ///< least squares by CG on the normal equations, in CGLS form (KSPCGLS)
  NormalCg,  ///< CG on (J^T J + mu I) dx = J^T dy: the damped (Tikhonov) least-squares form
};
/// Parses gmres | lsqr | cgls | normal_cg; throws InputError naming `option`.
InverseJacobianMethod parseInverseJacobianMethod(const std::string& text,
                                                 const std::string& option);

struct InverseJacobianOptions {
  InverseJacobianMethod method = InverseJacobianMethod::Gmres;
  double rtol = 1e-10;
  double atol = 0.0;
  PetscInt max_it = 500;
  /// Tikhonov damping mu >= 0.  mu > 0 requires NormalCg (GMRES, LSQR and CGLS solve the
  /// undamped problem; asking them for damping is refused, not ignored).
  double damping = 0.0;
  std::string prefix = "ig_";  ///< options prefix of the KSP
  /// LSQR only: > 0 stops exactly when the residual ||J dx - dy|| reaches this value (the
  /// discrepancy principle), replacing LSQR's default tests (which also stop on a small
  /// normal-equations residual).
  double residual_target = 0.0;
  void validate() const;
};

/// Solves J dx = dy (or its least-squares / damped form) from dx = 0.  The report states
/// iterations, the residual ||J dx - dy|| and PETSc's reason; it never throws for
/// non-convergence.
SolveReport solveInverseJacobian(JacobianOperator& jacobian, Vec dy, Vec dx,
                                 const InverseJacobianOptions& options = {});

/// Regularised local inverse for noisy data y = S(x) + noise with noise std sigma per
/// entry.  Linearised at x0: x = x0 + d with J(x0) d ~ y - S(x0) (exact for linear S).
struct RegularizedInverseOptions {
  enum class Kind {
    Tikhonov,      ///< (J^T J + alpha I) d = J^T (y - S(x0)) by CG
    EarlyStopping  ///< CGLS on J d = y - S(x0), stopped by the discrepancy principle
  };
  Kind kind = Kind::Tikhonov;
  double noise_sigma = 0.0;  ///< noise std per entry; 0 = no noise (exact solve)
  double tau = 1.1;          ///< discrepancy target ||S(x) - y|| = tau sigma sqrt(N)
  /// Tikhonov alpha; < 0 = chosen by the discrepancy principle (bisection in log alpha).
  double alpha = -1.0;
  PetscInt max_it = 1000;  ///< Krylov cap (the early-stopping cap when sigma = 0)
  double rtol = 1e-12;     ///< inner tolerance of the Tikhonov CG solves
  void validate() const;
};

/// What a regularised solve chose and reached.
struct RegularizedReport {
  double alpha = 0.0;            ///< Tikhonov parameter used (0 for early stopping)
  PetscInt iterations = 0;       ///< Krylov iterations of the final solve
  double residual = 0.0;         ///< ||S(x0) + J d - y||
  double target_residual = 0.0;  ///< tau sigma sqrt(N)
  std::string reason;
};

RegularizedReport regularizedInverse(Step& step, Vec x0, Vec y, Vec x,
                                     const RegularizedInverseOptions& options);

/// A step whose inverse is the regularised one; forward, jvp and vjp are the inner step's.
/// Put it into a Simulator to get noise-aware inverse time stepping.
class RegularizedInverseStep final : public Step {
 public:
  RegularizedInverseStep(std::shared_ptr<Step> inner, RegularizedInverseOptions options);
  std::string name() const override { return "regularized(" + inner_->name() + ")"; }
  bool isLinear() const override { return inner_->isLinear(); }
  void forward(Vec x, Vec y) override { inner_->forward(x, y); }
  void jvp(Vec x, Vec dx, Vec dy) override { inner_->jvp(x, dx, dy); }
  void vjp(Vec x, Vec w, Vec wx) override { inner_->vjp(x, w, wx); }
  void inverse(Vec x0, Vec y, Vec x) override;
  const RegularizedReport& lastReport() const { return last_; }

 private:
  std::shared_ptr<Step> inner_;
  RegularizedInverseOptions options_;
  RegularizedReport last_;
};

}  // namespace physgrad
