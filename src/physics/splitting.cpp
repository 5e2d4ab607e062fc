#include "physgrad/physics/splitting.hpp"

#include <cmath>
#include <sstream>
#include <vector>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/burgers.hpp"
#include "physgrad/physics/diffusion.hpp"

namespace physgrad {

SplitOrder parseSplitOrder(const std::string& text, const std::string& option) {
  if (text == "advection-first") return SplitOrder::AdvectionFirst;
  if (text == "diffusion-first") return SplitOrder::DiffusionFirst;
  if (text == "strang") return SplitOrder::Strang;
  throw InputError("option " + option + ": unknown split order '" + text +
                   "' (allowed: advection-first, diffusion-first, strang)");
}

const char* toString(SplitOrder order) {
  switch (order) {
    case SplitOrder::AdvectionFirst:
      return "advection-first";
    case SplitOrder::DiffusionFirst:
      return "diffusion-first";
    case SplitOrder::Strang:
      return "strang";
  }
  return "unknown";
}

namespace {

/// The time step t_end / steps, after checking both.
double splitTimeStep(double t_end, PetscInt steps) {
  if (steps <= 0) {
    throw InputError("the number of time steps must be positive (got " + std::to_string(steps) +
                     ")");
  }
  if (!(t_end > 0.0) || !std::isfinite(t_end)) {
    std::ostringstream os;
    os << "the end time must be positive and finite (got " << t_end << ")";
    throw InputError(os.str());
  }
  return t_end / static_cast<double>(steps);
}

/// The K time steps of `order`, from the advection step over a full dt (`advect`), over
/// half of it (`half`, Strang only) and the diffusion step (`diffuse`, may be null: none).
std::vector<std::shared_ptr<Step>> interleave(PetscInt steps, SplitOrder order,
                                              const std::shared_ptr<Step>& advect,
                                              const std::shared_ptr<Step>& half,
                                              const std::shared_ptr<Step>& diffuse) {
  std::vector<std::shared_ptr<Step>> out;
  for (PetscInt k = 0; k < steps; ++k) {
    if (!diffuse) {
      out.push_back(advect);
      continue;
    }
    switch (order) {
      case SplitOrder::AdvectionFirst:
        out.insert(out.end(), {advect, diffuse});
        break;
      case SplitOrder::DiffusionFirst:
        out.insert(out.end(), {diffuse, advect});
        break;
      case SplitOrder::Strang:
        out.insert(out.end(), {half, diffuse, half});
        break;
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<Simulator> makeAdvectionDiffusionSimulator(
    const Grid& grid, const VelocityField& velocity, AdvectionScheme scheme, double kappa,
    double t_end, PetscInt steps, SplitOrder order, CheckpointOptions checkpointing,
    AdvectionSolveOptions advection_solve, LinearSolveOptions diffusion_solve) {
  const double dt = splitTimeStep(t_end, steps);
  const DiffusionParams diffusion{kappa, dt};
  diffusion.validate();
  std::shared_ptr<Step> advect, half;
  if (order == SplitOrder::Strang) {
    half = makeAdvectionStep(grid, scheme, velocity, 0.5 * dt, advection_solve);
  } else {
    advect = makeAdvectionStep(grid, scheme, velocity, dt, advection_solve);
  }
  auto diffuse = std::make_shared<ImplicitDiffusionStep>(grid, diffusion, 1.0, diffusion_solve);
  return std::make_unique<Simulator>(grid, interleave(steps, order, advect, half, diffuse),
                                     checkpointing);
}

std::unique_ptr<Simulator> makeViscousBurgersSimulator(const Grid& grid, double nu, double t_end,
                                                       PetscInt steps, Interpolation interpolation,
                                                       SplitOrder order,
                                                       CheckpointOptions checkpointing,
                                                       LinearSolveOptions diffusion_solve,
                                                       NewtonKrylovOptions advection_inverse) {
  const double dt = splitTimeStep(t_end, steps);
  if (!(nu >= 0.0) || !std::isfinite(nu)) {
    std::ostringstream os;
    os << "viscous Burgers: the viscosity nu must be non-negative and finite (got " << nu << ")";
    throw InputError(os.str());
  }
  std::shared_ptr<Step> advect, half, diffuse;
  if (nu > 0.0 && order == SplitOrder::Strang) {
    half = std::make_shared<SelfAdvectionStep>(grid, 0.5 * dt, interpolation, advection_inverse);
  } else {
    advect = std::make_shared<SelfAdvectionStep>(grid, dt, interpolation, advection_inverse);
  }
  if (nu > 0.0) {
    diffuse = std::make_shared<ImplicitDiffusionStep>(grid, DiffusionParams{nu, dt}, 1.0,
                                                      diffusion_solve);
  }
  return std::make_unique<Simulator>(grid, interleave(steps, order, advect, half, diffuse),
                                     checkpointing);
}

}  // namespace physgrad
