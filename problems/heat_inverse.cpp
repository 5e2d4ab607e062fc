// The heat-equation inverse problem: which initial temperature x produced the observed
// field y* = P(x) + noise after diffusing for a time T?  Runs several optimisers from the
// same start and compares them.

#include <petscsys.h>

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/core/main.hpp"
#include "physgrad/data/synthetic.hpp"
#include "physgrad/inverse/inverse_problem.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/optim/comparison.hpp"
#include "physgrad/optim/optimizer.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/simulator.hpp"

namespace pg = physgrad;

static const char kHelp[] =
    "heat_inverse: recover the initial temperature of a 2D periodic heat equation from the\n"
    "field observed at time T, with gradient descent, L-BFGS (TAO) and the physical\n"
    "gradient (inverse time stepping).  Data: random soft-edged boxes (seeded, independent of\n"
    "the rank count), diffused to T, plus optional Gaussian noise.\n"
    "Outputs in -output_dir: fields.h5 + fields.xmf (ParaView), history_<optimizer>.csv,\n"
    "comparison.md, comparison.csv and convergence.svg (loss and x-error curves).\n"
    "Inner solves: -diffusion_ksp_* / -diffusion_pc_* (implicit part: CG with Jacobi, or GAMG for "
    "stiff steps),\n"
    "-explicit_diffusion_inv_ksp_* and -diffusion_inv_ksp_* (inverse solves); L-BFGS: any\n"
    "-opt_lbfgs_tao_* option.\n\n";

namespace {

struct HeatOptions {
  PetscInt n = 256;
  PetscReal length = -1.0;  // default: n (cell size 1, as in the reference experiment)
  PetscReal kappa = 1.0;
  PetscReal t_end = 8.0;
  PetscInt steps = 8;
  std::string scheme = "implicit";
  PetscReal noise = 0.0;
  PetscInt seed = 42;
  std::string output_dir = "heat_inverse_out";
  PetscBool write_fields = PETSC_TRUE;
  PetscBool full_report = PETSC_FALSE;
};

PetscErrorCode readHeatOptions(HeatOptions* o) {
  PetscFunctionBeginUser;
  char scheme[64], out[PETSC_MAX_PATH_LEN];
  PetscCall(PetscStrncpy(scheme, o->scheme.c_str(), sizeof scheme));
  PetscCall(PetscStrncpy(out, o->output_dir.c_str(), sizeof out));
  PetscOptionsBegin(PETSC_COMM_WORLD, nullptr, "Heat-equation inverse problem", nullptr);
  PetscCall(PetscOptionsInt("-n", "Grid points per axis (N x N, periodic)", nullptr, o->n, &o->n,
                            nullptr));
  PetscCall(PetscOptionsReal("-length", "Domain side length (default: N, i.e. cell size 1)",
                             nullptr, o->length, &o->length, nullptr));
  PetscCall(
      PetscOptionsReal("-kappa", "Diffusivity (>= 0)", nullptr, o->kappa, &o->kappa, nullptr));
  PetscCall(PetscOptionsReal("-t_end", "End time T of the simulation (> 0)", nullptr, o->t_end,
                             &o->t_end, nullptr));
  PetscCall(PetscOptionsInt("-steps", "Number of time steps K (> 0)", nullptr, o->steps, &o->steps,
                            nullptr));
  PetscCall(PetscOptionsString("-scheme", "Time step: explicit, implicit (backward Euler), cn",
                               nullptr, scheme, scheme, sizeof scheme, nullptr));
  PetscCall(PetscOptionsReal("-noise", "Std. deviation of Gaussian observation noise (>= 0)",
                             nullptr, o->noise, &o->noise, nullptr));
  PetscCall(PetscOptionsInt("-seed", "Seed of the synthetic data and noise", nullptr, o->seed,
                            &o->seed, nullptr));
  PetscCall(PetscOptionsString("-output_dir", "Directory for fields, histories and summary",
                               nullptr, out, out, sizeof out, nullptr));
  PetscCall(PetscOptionsBool("-write_fields", "Write the HDF5/XDMF fields", nullptr,
                             o->write_fields, &o->write_fields, nullptr));
  PetscCall(PetscOptionsBool("-full_report", "Print each optimiser's full report", nullptr,
                             o->full_report, &o->full_report, nullptr));
  PetscOptionsEnd();
  o->scheme = scheme;
  o->output_dir = out;
  PetscFunctionReturn(0);
}

void validate(const HeatOptions& o) {
  auto fail = [](const char* option, const char* requirement, double value) {
    std::ostringstream os;
    os << "option " << option << " must be " << requirement << " (got " << value << ")";
    throw pg::InputError(os.str());
  };
  if (o.n <= 0) fail("-n", "positive", static_cast<double>(o.n));
  if (o.length != -1.0 && !(o.length > 0.0)) fail("-length", "positive", o.length);
  if (!(o.kappa >= 0.0) || !std::isfinite(o.kappa)) fail("-kappa", "non-negative", o.kappa);
  if (!(o.t_end > 0.0) || !std::isfinite(o.t_end)) fail("-t_end", "positive", o.t_end);
  if (o.steps <= 0) fail("-steps", "positive", static_cast<double>(o.steps));
  if (!(o.noise >= 0.0) || !std::isfinite(o.noise)) fail("-noise", "non-negative", o.noise);
  if (o.seed < 0) fail("-seed", "non-negative", static_cast<double>(o.seed));
}

int run() {
  HeatOptions ho;
  PG_CALL(readHeatOptions(&ho));
  pg::OptimizerOptions oo = pg::OptimizerOptions::fromCommandLine(PETSC_COMM_WORLD);
  if (pg::helpRequested()) return 0;
  validate(ho);
  const pg::DiffusionScheme scheme = pg::parseDiffusionScheme(ho.scheme, "-scheme");

  pg::GridSpec spec;
  spec.dim = 2;
  spec.n = {ho.n, ho.n, 1};
  const double length = ho.length > 0.0 ? ho.length : static_cast<double>(ho.n);
  spec.length = {length, length, 1.0};
  spec.boundary = pg::Boundary::Periodic;
  pg::Grid grid(PETSC_COMM_WORLD, spec);
  auto sim = pg::makeDiffusionSimulator(grid, scheme, ho.kappa, ho.t_end, ho.steps);

  // Data: x* (soft boxes), y* = P(x*) + noise.
  pg::OwnedVec truth = grid.createGlobal(), observed = grid.createGlobal();
  pg::SoftBoxesOptions boxes;
  boxes.seed = static_cast<uint64_t>(ho.seed);
  pg::fillSoftBoxes(grid, truth, boxes);
  sim->forward(truth, observed);
  pg::addGaussianNoise(grid, observed, ho.noise, static_cast<uint64_t>(ho.seed) + 1);

  pg::SquaredLoss loss(observed);
  pg::InverseProblem problem(*sim, loss, truth);

  pg::rootPrintf(
      "heat_inverse: %d x %d periodic grid, h = %g, kappa = %g, T = %g, %d %s steps, "
      "noise %g, %d ranks\n",
      static_cast<int>(ho.n), static_cast<int>(ho.n), grid.h(0), ho.kappa, ho.t_end,
      static_cast<int>(ho.steps), pg::toString(scheme), ho.noise, pg::Environment::size());

  pg::ComparisonOptions co;
  co.output_dir = ho.output_dir;
  std::ostringstream title;
  title << "heat inverse problem, " << ho.n << "^2, " << ho.steps << " " << pg::toString(scheme)
        << " steps, kappa T = " << ho.kappa * ho.t_end << ", noise " << ho.noise;
  co.title = title.str();
  pg::OwnedVec x0 = grid.createGlobal();  // x0 = 0 for every optimiser
  pg::Comparison cmp = pg::compareOptimizers(problem, x0, oo, co);
  const std::vector<pg::Summary>& runs = cmp.runs;
  pg::rootPrintf("\n%s\n", pg::comparisonTable(runs).c_str());
  for (const auto& s : runs)
    pg::rootPrintf("%s\n", (ho.full_report ? s.fullReport() : s.briefReport()).c_str());

  if (ho.write_fields) {
    pg::FieldWriter writer(grid, ho.output_dir + "/fields.h5");
    writer.write(truth, "truth");
    writer.write(observed, "observation");
    for (size_t i = 0; i < runs.size(); ++i)
      writer.write(cmp.solutions[i], "reconstruction_" + runs[i].optimizer);
    writer.close();
  }
  pg::rootPrintf("outputs written to %s/\n", ho.output_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pg::runMain(argc, argv, kHelp, run); }
