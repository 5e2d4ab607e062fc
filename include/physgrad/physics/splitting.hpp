#pragma once
// Operator-split simulators: advection (by a given velocity, or self-advection for Burgers)
// alternated with backward-Euler diffusion.  Each is an ordinary Simulator of the split
// steps, so its jvp is the tangent sweep through them, its vjp the reverse sweep (with the
// simulator's checkpointing), and its inverse inverse time stepping through the steps in
// reverse order (each step's own inverse: GMRES or Newton-Krylov for advection, a stencil
// apply for backward Euler).
//
// With A(dt) the advection step and D(dt) the diffusion step, one time step is
//   AdvectionFirst:  D(dt) A(dt)            (advect, then diffuse)
//   DiffusionFirst:  A(dt) D(dt)            (diffuse, then advect)
//   Strang:          A(dt/2) D(dt) A(dt/2)  (half-steps of advection around diffusion)
// Lie splitting (the first two) commits an O(dt) error over a fixed time, from the commutator
// of the two operators, so the two orders differ by O(dt).  Strang splitting cancels that
// commutator to O(dt^2), which the whole scheme only shows when both parts are second-order
// in time (not the single-stage self-advection step of Burgers, which is first-order).  The
// half-steps of neighbouring time steps are not merged: a Strang simulator has 3K steps.

#include <memory>
#include <string>

#include "physgrad/physics/advection.hpp"
#include "physgrad/physics/burgers.hpp"
#include "physgrad/physics/interpolation.hpp"
#include "physgrad/physics/shifted_laplacian.hpp"
#include "physgrad/physics/simulator.hpp"
#include "physgrad/physics/velocity.hpp"

namespace physgrad {

enum class SplitOrder { AdvectionFirst, DiffusionFirst, Strang };
/// Parses advection-first | diffusion-first | strang; throws InputError naming `option` and
/// listing the allowed values otherwise.
SplitOrder parseSplitOrder(const std::string& text, const std::string& option);
const char* toString(SplitOrder order);

/// u_t + v . grad u = kappa Delta u on [0, t_end] in K = `steps` split steps: `scheme`
/// advection by the given velocity and backward-Euler diffusion (kappa >= 0).  One step
/// object of each kind is shared by all K time steps.  Throws InputError for steps < 1, a
/// non-positive or non-finite t_end, or whatever the steps refuse (CFL, ghost width).
std::unique_ptr<Simulator> makeAdvectionDiffusionSimulator(
    const Grid& grid, const VelocityField& velocity, AdvectionScheme scheme, double kappa,
    double t_end, PetscInt steps, SplitOrder order, CheckpointOptions checkpointing = {},
    AdvectionSolveOptions advection_solve = {}, LinearSolveOptions diffusion_solve = {});

/// Viscous Burgers u_t + (u . grad) u = nu Delta u on a grid with one velocity component per
/// dimension, on [0, t_end] in K = `steps` split steps: SelfAdvectionStep with
/// `interpolation`, and backward-Euler diffusion of every component (nu >= 0; nu = 0 leaves
/// the diffusion out, giving K inviscid steps whatever the order).  Nonlinear, so the
/// reverse sweeps use the recorded states: all of them, or `checkpointing`.  The CFL of the
/// ghost layers is checked at every self-advection step (CflError).
std::unique_ptr<Simulator> makeViscousBurgersSimulator(
    const Grid& grid, double nu, double t_end, PetscInt steps,
    Interpolation interpolation = Interpolation::Cubic,
    SplitOrder order = SplitOrder::AdvectionFirst, CheckpointOptions checkpointing = {},
    LinearSolveOptions diffusion_solve = {},
    NewtonKrylovOptions advection_inverse = defaultSelfAdvectionInverseOptions());

}  // namespace physgrad
