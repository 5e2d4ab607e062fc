// The heat-equation experiment of the scale-invariant-physics (SIP) paper (REFERENCES.md §3):
// recover soft boxes x* from y* = P(x*) (+ noise), P the exact heat kernel over nu t = 8 on a
// 64 x 64 periodic grid of cell size 1, from x0 = 0 with gradient descent, L-BFGS and the
// physical gradient whose inverse is the noise-aware per-frequency blend.  Reports the paper's
// error measure (sum over cells of |x - x*|) next to the relative L2 error.

#include <petscsys.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/core/main.hpp"
#include "physgrad/data/synthetic.hpp"
#include "physgrad/inverse/inverse_problem.hpp"
#include "physgrad/inverse/spectral_blend.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/optim/optimizer.hpp"
#include "physgrad/physics/simulator.hpp"
#include "physgrad/physics/spectral_diffusion.hpp"

namespace pg = physgrad;

static const char kHelp[] =
    "heat_sip: the heat-equation experiment of the SIP paper.  x* = soft boxes (seeded,\n"
    "independent of the rank count) on an N x N periodic grid of cell size 1; y* = P(x*) plus\n"
    "optional Gaussian noise, P the exact heat kernel exp(-4 pi^2 |k|^2 nu t) (k in cycles per\n"
    "cell).  From x0 = 0: GD (fixed step), PG whose inverse is the noise-aware per-frequency\n"
    "blend (x += blend(y* - P(x)), the reference's update), and L-BFGS (TAO).\n"
    "The optimisers are fixed (gd, pg, lbfgs; -gd_its/-pg_its/-lbfgs_its 0 skips one), so\n"
    "-opt_type, -opt_max_it and -opt_gd_step are refused; the other -opt_* options apply to all\n"
    "three (the per-iteration monitor is off unless -opt_monitor is given).\n"
    "Outputs in -output_dir: history_<optimizer>.csv, summary.md, summary.csv and\n"
    "fields.h5 + fields.xmf (ParaView).\n\n";

namespace {

struct SipOptions {
  PetscInt n = 64;
  PetscReal nu_t = 8.0;
  PetscReal noise = 0.0;
  PetscInt seed = 42;
  PetscReal noise_level = 1e-6;
  PetscReal noise_floor = -1.0;  // default: max(1e-8, noise)
  PetscReal signal_amplitude = 1.0;
  PetscReal log_kernel_clamp = 88.0;
  PetscInt gd_its = 1000;
  PetscReal gd_step = 1.0;
  PetscInt pg_its = 100;
  PetscInt lbfgs_its = 1000;
  std::string output_dir = "heat_sip_out";
  PetscBool write_fields = PETSC_TRUE;
};

PetscErrorCode readSipOptions(SipOptions* o) {
  PetscFunctionBeginUser;
  char out[PETSC_MAX_PATH_LEN];
  PetscCall(PetscStrncpy(out, o->output_dir.c_str(), sizeof out));
  PetscOptionsBegin(PETSC_COMM_WORLD, nullptr, "SIP heat experiment", nullptr);
  PetscCall(PetscOptionsInt("-n", "Grid points per axis (N x N, periodic, cell size 1)", nullptr,
                            o->n, &o->n, nullptr));
  PetscCall(PetscOptionsReal("-nu_t", "Diffusion nu t in cells^2 (> 0)", nullptr, o->nu_t, &o->nu_t,
                             nullptr));
  PetscCall(PetscOptionsReal("-noise", "Std. deviation of Gaussian noise added to y* (>= 0)",
                             nullptr, o->noise, &o->noise, nullptr));
  PetscCall(PetscOptionsInt("-seed", "Seed of the boxes (the noise uses seed + 1)", nullptr,
                            o->seed, &o->seed, nullptr));
  PetscCall(PetscOptionsReal("-noise_level",
                             "Blend: relative noise per cell, u = noise_level |r| + noise_floor",
                             nullptr, o->noise_level, &o->noise_level, nullptr));
  PetscCall(PetscOptionsReal("-noise_floor",
                             "Blend: absolute noise per cell (default: max(1e-8, -noise))", nullptr,
                             o->noise_floor, &o->noise_floor, nullptr));
  PetscCall(PetscOptionsReal("-signal_amplitude",
                             "Blend: expected RMS of x (orthonormal amplitude per mode)", nullptr,
                             o->signal_amplitude, &o->signal_amplitude, nullptr));
  PetscCall(PetscOptionsReal("-log_kernel_clamp", "Blend: largest log-amplification, in (0, 700]",
                             nullptr, o->log_kernel_clamp, &o->log_kernel_clamp, nullptr));
  PetscCall(PetscOptionsInt("-gd_its", "GD iterations (0: skip)", nullptr, o->gd_its, &o->gd_its,
                            nullptr));
  PetscCall(PetscOptionsReal("-gd_step", "GD step size (> 0)", nullptr, o->gd_step, &o->gd_step,
                             nullptr));
  PetscCall(PetscOptionsInt("-pg_its", "PG iterations (0: skip)", nullptr, o->pg_its, &o->pg_its,
                            nullptr));
  PetscCall(PetscOptionsInt("-lbfgs_its", "L-BFGS iterations (0: skip)", nullptr, o->lbfgs_its,
                            &o->lbfgs_its, nullptr));
  PetscCall(PetscOptionsString("-output_dir", "Directory for histories, summary and fields",
                               nullptr, out, out, sizeof out, nullptr));
  PetscCall(PetscOptionsBool("-write_fields", "Write the HDF5/XDMF fields", nullptr,
                             o->write_fields, &o->write_fields, nullptr));
  PetscOptionsEnd();
  o->output_dir = out;
  PetscFunctionReturn(0);
}

void validate(const SipOptions& o) {
  auto fail = [](const char* option, const char* requirement, double value) {
    std::ostringstream os;
    os << "option " << option << " must be " << requirement << " (got " << value << ")";
    throw pg::InputError(os.str());
  };
  auto finite = [](double v) { return std::isfinite(v); };
  if (o.n < 2) fail("-n", ">= 2", static_cast<double>(o.n));
  if (!(o.nu_t > 0.0) || !finite(o.nu_t)) fail("-nu_t", "positive and finite", o.nu_t);
  if (!(o.noise >= 0.0) || !finite(o.noise)) fail("-noise", "non-negative and finite", o.noise);
  if (o.seed < 0) fail("-seed", "non-negative", static_cast<double>(o.seed));
  if (!(o.noise_level >= 0.0) || !finite(o.noise_level))
    fail("-noise_level", "non-negative and finite", o.noise_level);
  if (o.noise_floor != -1.0 && (!(o.noise_floor >= 0.0) || !finite(o.noise_floor)))
    fail("-noise_floor", "non-negative and finite", o.noise_floor);
  if (!(o.signal_amplitude > 0.0) || !finite(o.signal_amplitude))
    fail("-signal_amplitude", "positive and finite", o.signal_amplitude);
  if (!(o.log_kernel_clamp > 0.0 && o.log_kernel_clamp <= 700.0))
    fail("-log_kernel_clamp", "in (0, 700]", o.log_kernel_clamp);
  if (o.gd_its < 0) fail("-gd_its", "non-negative", static_cast<double>(o.gd_its));
  if (!(o.gd_step > 0.0) || !finite(o.gd_step)) fail("-gd_step", "positive and finite", o.gd_step);
  if (o.pg_its < 0) fail("-pg_its", "non-negative", static_cast<double>(o.pg_its));
  if (o.lbfgs_its < 0) fail("-lbfgs_its", "non-negative", static_cast<double>(o.lbfgs_its));
  for (const char* fixed : {"-opt_type", "-opt_max_it", "-opt_gd_step"}) {
    PetscBool given = PETSC_FALSE;
    PG_CALL(PetscOptionsHasName(nullptr, nullptr, fixed, &given));
    if (given) {
      throw pg::InputError(std::string("option ") + fixed +
                           " is not used by heat_sip: the optimisers are gd, pg and lbfgs, set "
                           "by -gd_its, -gd_step, -pg_its and -lbfgs_its");
    }
  }
}

// Rank 0 writes; a failure is reported on every rank.
void writeTextFile(const std::string& path, const std::string& text) {
  int ok = 1;
  if (pg::isRoot()) {
    FILE* f = std::fopen(path.c_str(), "w");
    ok = f && std::fputs(text.c_str(), f) >= 0;
    if (f && std::fclose(f) != 0) ok = 0;
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, PETSC_COMM_WORLD);
  if (!ok) throw pg::InputError("cannot write " + path);
}

/// One optimiser's run and the SIP error measure along it.
struct SipRun {
  pg::Summary summary;
  std::vector<std::vector<double>> history;  // rows of the history CSV
};

const std::vector<std::string> kHistoryHeader = {
    "iteration",           "loss",   "grad_norm",           "x_rel_l2_error",
    "x_sum_abs_error",     "step",   "forward_solves",      "adjoint_solves",
    "inverse_solves",      "wall_s", "blend_inverse_modes", "blend_identity_modes",
    "blend_gradient_modes"};

SipRun runOne(const std::string& type, pg::InverseProblem& problem,
              const pg::OptimizerOptions& options, pg::BlendedSpectralDiffusionStep* blend, Vec x) {
  SipRun run;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto record = [&](const std::string&, const pg::IterationRecord& r, Vec xi) {
    const pg::XError e = problem.xError(xi);
    std::vector<double> row = {static_cast<double>(r.iteration),
                               r.loss,
                               r.grad_norm,
                               e.relative_l2,
                               e.sum_abs,
                               r.step,
                               r.solves.forward,
                               r.solves.adjoint,
                               r.solves.inverse,
                               r.wall,
                               nan,
                               nan,
                               nan};
    // The blend's regimes at its last application (the accepted PG step).
    if (blend && r.iteration > 0) {
      const pg::BlendStatistics& s = blend->blend().lastStatistics();
      row[10] = static_cast<double>(s.inverse);
      row[11] = static_cast<double>(s.identity);
      row[12] = static_cast<double>(s.gradient);
    }
    run.history.push_back(std::move(row));
  };
  run.summary = pg::runOptimizer(type, problem, x, options, record);
  return run;
}

std::string sipTable(const std::vector<pg::Summary>& runs, const pg::XError& start, long points) {
  std::ostringstream os;
  char line[512];
  os << "| optimizer | iterations | sum abs x-error (SIP) | mean abs x-error | rel. L2 x-error "
        "| final loss | wall [s] | termination |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---|\n";
  std::snprintf(line, sizeof line, "| x0 = 0 | 0 | %.4e | %.4e | %.4e | - | - | - |\n",
                start.sum_abs, start.sum_abs / static_cast<double>(points), start.relative_l2);
  os << line;
  for (const auto& s : runs) {
    std::snprintf(line, sizeof line, "| %s | %d | %.4e | %.4e | %.4e | %.4e | %.3f | %s |\n",
                  s.optimizer.c_str(), s.iterations, s.x_error.sum_abs, s.x_error.mean_abs,
                  s.x_error.relative_l2, s.final_loss, s.wall, pg::toString(s.termination));
    os << line;
  }
  return os.str();
}

int run() {
  SipOptions so;
  PG_CALL(readSipOptions(&so));
  pg::OptimizerOptions base = pg::OptimizerOptions::fromCommandLine(PETSC_COMM_WORLD);
  if (pg::helpRequested()) return 0;
  validate(so);
  PetscBool monitor_given = PETSC_FALSE;
  PG_CALL(PetscOptionsHasName(nullptr, nullptr, "-opt_monitor", &monitor_given));
  if (!monitor_given) base.monitor = false;  // 1000 GD lines help nobody by default

  pg::GridSpec spec;
  spec.dim = 2;
  spec.n = {so.n, so.n, 1};
  spec.length = {static_cast<double>(so.n), static_cast<double>(so.n), 1.0};  // cell size 1
  spec.boundary = pg::Boundary::Periodic;
  pg::Grid grid(PETSC_COMM_WORLD, spec);

  // With h = 1, exp(-4 pi^2 |k_c|^2 nu t) = exp(-kappa |k|^2 t) for kappa t = nu t.
  pg::NoiseAwareOptions blend_options;
  blend_options.noise_level = so.noise_level;
  blend_options.noise_floor = so.noise_floor >= 0.0 ? so.noise_floor : std::max(1e-8, so.noise);
  blend_options.signal_amplitude = so.signal_amplitude;
  blend_options.log_kernel_clamp = so.log_kernel_clamp;
  auto exact_step = std::make_shared<pg::SpectralDiffusionStep>(grid, 1.0, so.nu_t);
  auto blend_step =
      std::make_shared<pg::BlendedSpectralDiffusionStep>(grid, 1.0, so.nu_t, blend_options);
  // GD and L-BFGS need only the forward map and its adjoint; PG runs on the blended step.
  pg::Simulator exact_sim(grid, {exact_step});
  pg::Simulator blend_sim(grid, {blend_step});

  pg::OwnedVec truth = grid.createGlobal(), observed = grid.createGlobal();
  pg::SoftBoxesOptions boxes;
  boxes.seed = static_cast<uint64_t>(so.seed);
  pg::fillSoftBoxes(grid, truth, boxes);
  exact_sim.forward(truth, observed);
  pg::addGaussianNoise(grid, observed, so.noise, static_cast<uint64_t>(so.seed) + 1);

  pg::SquaredLoss loss(observed);
  pg::InverseProblem exact_problem(exact_sim, loss, truth);
  pg::InverseProblem blend_problem(blend_sim, loss, truth);

  pg::rootPrintf(
      "heat_sip: %d x %d periodic, cell size 1, nu t = %g, noise %g, seed %d, %d ranks\n"
      "blend: noise level %g, floor %g, signal amplitude %g, log-kernel clamp %g\n",
      static_cast<int>(so.n), static_cast<int>(so.n), so.nu_t, so.noise, static_cast<int>(so.seed),
      pg::Environment::size(), blend_options.noise_level, blend_options.noise_floor,
      blend_options.signal_amplitude, blend_options.log_kernel_clamp);

  pg::ensureDirectory(so.output_dir);
  pg::OwnedVec zero = grid.createGlobal();
  const pg::XError start = exact_problem.xError(zero);

  struct Plan {
    std::string type;
    PetscInt iterations;
    pg::InverseProblem* problem;
    pg::BlendedSpectralDiffusionStep* blend;
  };
  const std::vector<Plan> plans = {{"gd", so.gd_its, &exact_problem, nullptr},
                                   {"pg", so.pg_its, &blend_problem, blend_step.get()},
                                   {"lbfgs", so.lbfgs_its, &exact_problem, nullptr}};
  std::vector<pg::Summary> runs;
  std::vector<pg::OwnedVec> results;
  for (const Plan& plan : plans) {
    if (plan.iterations == 0) continue;
    pg::OptimizerOptions o = base;
    o.types = {plan.type};
    o.max_it = plan.iterations;
    o.gd_step = so.gd_step;
    pg::OwnedVec x = grid.createGlobal();  // x0 = 0
    SipRun r = runOne(plan.type, *plan.problem, o, plan.blend, x);
    pg::CsvWriter csv(so.output_dir + "/history_" + plan.type + ".csv", kHistoryHeader);
    for (const auto& row : r.history) csv.row(row);
    csv.close();
    runs.push_back(std::move(r.summary));
    results.push_back(std::move(x));
  }

  const std::string table = sipTable(runs, start, static_cast<long>(grid.size()));
  const std::string solves = runs.empty() ? "" : pg::comparisonTable(runs);
  pg::rootPrintf("\n%s\n%s\n", table.c_str(), solves.c_str());
  {
    pg::CsvWriter csv(so.output_dir + "/summary.csv",
                      {"optimizer", "termination", "iterations", "final_loss", "x_sum_abs_error",
                       "x_mean_abs_error", "x_rel_l2_error", "forward_solves", "adjoint_solves",
                       "inverse_solves", "wall_s"});
    for (const auto& s : runs) {
      csv.row(std::vector<std::string>{
          s.optimizer, pg::toString(s.termination), std::to_string(s.iterations),
          pg::CsvWriter::format(s.final_loss), pg::CsvWriter::format(s.x_error.sum_abs),
          pg::CsvWriter::format(s.x_error.mean_abs), pg::CsvWriter::format(s.x_error.relative_l2),
          pg::CsvWriter::format(s.solves.forward), pg::CsvWriter::format(s.solves.adjoint),
          pg::CsvWriter::format(s.solves.inverse), pg::CsvWriter::format(s.wall)});
    }
    csv.close();
  }
  writeTextFile(so.output_dir + "/summary.md", "# SIP heat experiment\n\n" + table + "\n" + solves);
  if (so.write_fields) {
    pg::FieldWriter writer(grid, so.output_dir + "/fields.h5");
    writer.write(truth, "truth");
    writer.write(observed, "observation");
    for (size_t i = 0; i < runs.size(); ++i)
      writer.write(results[i], "reconstruction_" + runs[i].optimizer);
    writer.close();
  }
  pg::rootPrintf("outputs written to %s/\n", so.output_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pg::runMain(argc, argv, kHelp, run); }
