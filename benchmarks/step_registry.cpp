#include "step_registry.hpp"

#include <cmath>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/advection.hpp"
#include "physgrad/physics/burgers.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/poisson.hpp"
#include "physgrad/physics/spectral_diffusion.hpp"
#include "physgrad/physics/velocity.hpp"

namespace physgrad::benchmarks {
namespace {

GridSpec periodicGrid(int dim, PetscInt n, PetscInt stencil_width = 1) {
  GridSpec s;
  s.dim = dim;
  s.n = {n, dim > 1 ? n : 1, dim > 2 ? n : 1};
  s.length = {1.0, 1.0, 1.0};
  s.boundary = Boundary::Periodic;
  s.stencil_width = stencil_width;
  return s;
}

GridSpec dirichletGrid(int dim, PetscInt n) {
  GridSpec s = periodicGrid(dim, n);
  s.boundary = Boundary::ZeroDirichlet;
  return s;
}

bool anyDim(int) { return true; }

// A constant drift, the same object for every advection entry (steps keep a reference).
const VelocityField& drift() {
  static const ConstantVelocity v({0.7, 0.4, 0.2});
  return v;
}

// A Taylor-Green vortex on the unit box (every benchmark grid's domain), |v| <= 0.81: the
// departure points vary from point to point, so the interpolating steps keep per-point
// stencil tables.
const VelocityField& vortex() {
  static const TaylorGreenVortex v(0.81, {1.0, 1.0, 1.0});
  return v;
}

// dt giving the advective CFL number max|v| dt sum_d 1/h_d = cfl (|v| <= 0.81).
double dtForCfl(const Grid& grid, double cfl) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) s += 1.0 / grid.h(a);
  return cfl / (0.81 * s);
}

// dt giving kappa dt sum_d 1/h_d^2 = r (kappa = 1).
double dtForRatio(const Grid& grid, double r) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) s += 1.0 / (grid.h(a) * grid.h(a));
  return r / s;
}

std::vector<StepEntry> buildRegistry() {
  std::vector<StepEntry> r;
  r.push_back({"explicit_diffusion", anyDim, [](int d, PetscInt n) { return periodicGrid(d, n); },
               [](const Grid& g) -> std::shared_ptr<Step> {
                 return std::make_shared<ExplicitDiffusionStep>(
                     g, DiffusionParams{1.0, dtForRatio(g, 0.4)});
               },
               16.0});
  r.push_back({"be_diffusion", anyDim, [](int d, PetscInt n) { return periodicGrid(d, n); },
               [](const Grid& g) -> std::shared_ptr<Step> {
                 return std::make_shared<ImplicitDiffusionStep>(
                     g, DiffusionParams{1.0, dtForRatio(g, 2.0)}, 1.0);
               },
               0.0});
  r.push_back({"cn_diffusion", anyDim, [](int d, PetscInt n) { return periodicGrid(d, n); },
               [](const Grid& g) -> std::shared_ptr<Step> {
                 return std::make_shared<ImplicitDiffusionStep>(
                     g, DiffusionParams{1.0, dtForRatio(g, 0.4)}, 0.5);
               },
               0.0});
  // Advection: field traffic only (x read, y written).  With the constant drift every
  // step applies one stencil to all points (no tables); with the vortex ("_vortex") the
  // precomputed per-point coefficient and interpolation tables the kernels also stream are
  // not counted.
  struct Advection {
    const char* name;
    AdvectionScheme scheme;
    const VelocityField& (*velocity)();
  };
  const Advection advection[] = {
      {"upwind_advection", AdvectionScheme::Upwind, drift},
      {"sl_linear_advection", AdvectionScheme::SemiLagrangianLinear, drift},
      {"sl_cubic_advection", AdvectionScheme::SemiLagrangianCubic, drift},
      {"maccormack_advection", AdvectionScheme::MacCormack, drift},
      {"upwind_advection_vortex", AdvectionScheme::Upwind, vortex},
      {"sl_linear_advection_vortex", AdvectionScheme::SemiLagrangianLinear, vortex},
      {"sl_cubic_advection_vortex", AdvectionScheme::SemiLagrangianCubic, vortex},
      {"maccormack_advection_vortex", AdvectionScheme::MacCormack, vortex}};
  for (const Advection& a : advection) {
    const double cfl = a.scheme == AdvectionScheme::Upwind ? 0.5 : 0.9;
    r.push_back(
        {a.name, anyDim, [](int d, PetscInt n) { return periodicGrid(d, n, 2); },
         [scheme = a.scheme, velocity = a.velocity, cfl](const Grid& g) -> std::shared_ptr<Step> {
           return makeAdvectionStep(g, scheme, velocity(), dtForCfl(g, cfl));
         },
         16.0});
  }
  // Burgers: the field is the velocity (dof = dim); a smooth field of amplitude ~1 moves
  // about 0.3 cells per step at this dt.
  r.push_back({"burgers_self_advection", anyDim,
               [](int d, PetscInt n) {
                 GridSpec s = periodicGrid(d, n, 2);
                 s.dof = d;
                 return s;
               },
               [](const Grid& g) -> std::shared_ptr<Step> {
                 return std::make_shared<SelfAdvectionStep>(g, dtForCfl(g, 0.3),
                                                            Interpolation::Cubic);
               },
               16.0});
  r.push_back({"spectral_diffusion", anyDim, [](int d, PetscInt n) { return periodicGrid(d, n); },
               [](const Grid& g) -> std::shared_ptr<Step> {
                 return std::make_shared<SpectralDiffusionStep>(g, 1.0, dtForRatio(g, 2.0));
               },
               0.0});
  r.push_back(
      {"poisson", anyDim, [](int d, PetscInt n) { return dirichletGrid(d, n); },
       [](const Grid& g) -> std::shared_ptr<Step> { return std::make_shared<PoissonStep>(g); },
       0.0});
  return r;
}

}  // namespace

const std::vector<StepEntry>& registry() {
  static const std::vector<StepEntry> entries = buildRegistry();
  return entries;
}

std::vector<std::string> stepNames() {
  std::vector<std::string> names;
  for (const auto& e : registry()) names.push_back(e.name);
  return names;
}

std::string joinedNames() {
  std::string s;
  for (const auto& e : registry()) s += (s.empty() ? "" : ", ") + e.name;
  return s;
}

const StepEntry& findStep(const std::string& name) {
  for (const auto& e : registry())
    if (e.name == name) return e;
  throw InputError("option -steps: unknown step '" + name + "' (allowed: " + joinedNames() + ")");
}

OwnedVec smoothField(const Grid& grid) {
  OwnedVec v = grid.createGlobal();
  PetscScalar* a = nullptr;
  PG_CALL(VecGetArray(v, &a));
  const double two_pi = 2.0 * M_PI;
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt o) {
    const double x = grid.coordinate(0, i) / grid.spec().length[0];
    const double y = grid.dim() > 1 ? grid.coordinate(1, j) / grid.spec().length[1] : 0.0;
    const double z = grid.dim() > 2 ? grid.coordinate(2, k) / grid.spec().length[2] : 0.0;
    for (PetscInt c = 0; c < grid.dof(); ++c) {
      a[o * grid.dof() + c] = 0.5 * std::sin(two_pi * (x + c * 0.1)) * std::cos(two_pi * y) +
                              0.3 * std::sin(two_pi * 2.0 * z + 0.3) + 0.2;
    }
  });
  PG_CALL(VecRestoreArray(v, &a));
  return v;
}

}  // namespace physgrad::benchmarks
