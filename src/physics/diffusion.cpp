#include "physgrad/physics/diffusion.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "physgrad/core/error.hpp"

namespace physgrad {

void DiffusionParams::validate() const {
  if (!(kappa >= 0.0) || !std::isfinite(kappa)) {
    std::ostringstream os;
    os << "diffusivity kappa must be non-negative and finite (got " << kappa << ")";
    throw InputError(os.str());
  }
  if (!(dt > 0.0) || !std::isfinite(dt)) {
    std::ostringstream os;
    os << "time step dt must be positive and finite (got " << dt << ")";
    throw InputError(os.str());
  }
}

namespace {
DiffusionParams checked(const Grid& grid, DiffusionParams p, bool explicit_scheme) {
  p.validate();
  if (explicit_scheme) {
    const double limit = ExplicitDiffusionStep::stableDt(grid, p.kappa);
    // A relative slack of a few ulps so that dt computed as exactly the limit passes.
    if (p.dt > limit * (1.0 + 1e-12)) {
      std::ostringstream os;
      os.precision(6);
      os << "explicit diffusion is unstable: dt = " << p.dt << " exceeds the FTCS limit "
         << "dt <= 1/(2 kappa sum_d 1/h_d^2) = " << limit << " (kappa = " << p.kappa
         << ", h = " << grid.h(0) << "); use more steps or an implicit scheme";
      throw InputError(os.str());
    }
  }
  return p;
}
}  // namespace

double ExplicitDiffusionStep::stableDt(const Grid& grid, double kappa) {
  if (kappa == 0.0) return std::numeric_limits<double>::infinity();
  return 2.0 / (kappa * ShiftedLaplacian::laplacianBound(grid));
}

ExplicitDiffusionStep::ExplicitDiffusionStep(const Grid& grid, DiffusionParams p,
                                             LinearSolveOptions solve)
    : Step(grid),
      op_(grid, 1.0, checked(grid, p, true).dt * p.kappa, "explicit_diffusion_inv_", solve) {}

void ExplicitDiffusionStep::forward(Vec x, Vec y) { op_.apply(x, y); }
void ExplicitDiffusionStep::jvp(Vec, Vec dx, Vec dy) { op_.apply(dx, dy); }
void ExplicitDiffusionStep::vjp(Vec, Vec w, Vec wx) { op_.apply(w, wx); }
void ExplicitDiffusionStep::inverse(Vec, Vec y, Vec x) { op_.solve(y, x); }

ImplicitDiffusionStep::ImplicitDiffusionStep(const Grid& grid, DiffusionParams p, double theta,
                                             LinearSolveOptions solve)
    : Step(grid),
      theta_(theta),
      implicit_(grid, 1.0, -theta * checked(grid, p, false).dt * p.kappa, "diffusion_", solve),
      work_(grid.createGlobal()) {
  if (!(theta >= 0.5 && theta <= 1.0)) {
    std::ostringstream os;
    os << "implicit diffusion needs theta in [0.5, 1] (got " << theta << ")";
    throw InputError(os.str());
  }
  if (theta < 1.0) {
    explicit_ = std::make_unique<ShiftedLaplacian>(grid, 1.0, (1.0 - theta) * p.dt * p.kappa,
                                                   "diffusion_inv_", solve);
  }
}

std::string ImplicitDiffusionStep::name() const {
  if (theta_ == 1.0) return "backward-euler-diffusion";
  if (theta_ == 0.5) return "crank-nicolson-diffusion";
  return "theta-diffusion";
}

void ImplicitDiffusionStep::forward(Vec x, Vec y) {
  if (explicit_) {
    explicit_->apply(x, work_);
    implicit_.solve(work_, y);
  } else {
    implicit_.solve(x, y);
  }
}

void ImplicitDiffusionStep::jvp(Vec, Vec dx, Vec dy) { forward(dx, dy); }

void ImplicitDiffusionStep::vjp(Vec, Vec w, Vec wx) {
  // J = I^{-1} E (implicit solve after the explicit part), so J^T = E^T I^{-T}.
  if (explicit_) {
    implicit_.solveTranspose(w, work_);
    explicit_->apply(work_, wx);
  } else {
    implicit_.solveTranspose(w, wx);
  }
}

void ImplicitDiffusionStep::inverse(Vec, Vec y, Vec x) {
  if (explicit_) {
    implicit_.apply(y, work_);
    explicit_->solve(work_, x);
  } else {
    implicit_.apply(y, x);
  }
}

}  // namespace physgrad

#include "physgrad/physics/simulator.hpp"

namespace physgrad {

DiffusionScheme parseDiffusionScheme(const std::string& text, const std::string& option) {
  if (text == "explicit") return DiffusionScheme::Explicit;
  if (text == "implicit" || text == "be") return DiffusionScheme::BackwardEuler;
  if (text == "cn") return DiffusionScheme::CrankNicolson;
  throw InputError("option " + option + ": unknown diffusion scheme '" + text +
                   "' (allowed: explicit, implicit, cn)");
}

const char* toString(DiffusionScheme s) {
  switch (s) {
    case DiffusionScheme::Explicit:
      return "explicit";
    case DiffusionScheme::BackwardEuler:
      return "implicit";
    case DiffusionScheme::CrankNicolson:
      return "cn";
  }
  return "unknown";
}

std::unique_ptr<Simulator> makeDiffusionSimulator(const Grid& grid, DiffusionScheme scheme,
                                                  double kappa, double t_end, PetscInt steps,
                                                  LinearSolveOptions solve) {
  if (steps <= 0) {
    throw InputError("the number of time steps must be positive (got " + std::to_string(steps) +
                     ")");
  }
  if (!(t_end > 0.0) || !std::isfinite(t_end)) {
    std::ostringstream os;
    os << "the end time must be positive and finite (got " << t_end << ")";
    throw InputError(os.str());
  }
  const DiffusionParams p{kappa, t_end / static_cast<double>(steps)};
  // The steps are identical and stateless between calls, so one object serves all K.
  std::shared_ptr<Step> step;
  switch (scheme) {
    case DiffusionScheme::Explicit:
      step = std::make_shared<ExplicitDiffusionStep>(grid, p, solve);
      break;
    case DiffusionScheme::BackwardEuler:
      step = std::make_shared<ImplicitDiffusionStep>(grid, p, 1.0, solve);
      break;
    case DiffusionScheme::CrankNicolson:
      step = std::make_shared<ImplicitDiffusionStep>(grid, p, 0.5, solve);
      break;
  }
  return std::make_unique<Simulator>(grid, std::vector<std::shared_ptr<Step>>(steps, step));
}

}  // namespace physgrad
