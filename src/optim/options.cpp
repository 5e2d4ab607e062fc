#include <petscsys.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "physgrad/core/error.hpp"
#include "physgrad/optim/optimizer.hpp"

namespace physgrad {

const std::vector<std::string>& OptimizerOptions::knownTypes() {
  static const std::vector<std::string> types = {
      "gd", "gd_armijo", "lbfgs", "bqnls", "bncg", "gn", "newton", "ig", "pg", "hig", "lbfgs_inv"};
  return types;
}

namespace {
std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

void requirePositive(double value, const char* option) {
  if (!(value > 0.0) || !std::isfinite(value)) {
    std::ostringstream os;
    os << "option -opt_" << option << " must be positive and finite (got " << value << ")";
    throw InputError(os.str());
  }
}

void requireNonNegative(double value, const char* option) {
  if (!(value >= 0.0) || !std::isfinite(value)) {
    std::ostringstream os;
    os << "option -opt_" << option << " must be non-negative and finite (got " << value << ")";
    throw InputError(os.str());
  }
}

void requireFraction(double value, const char* option) {
  if (!(value > 0.0 && value < 1.0)) {
    std::ostringstream os;
    os << "option -opt_" << option << " must lie strictly between 0 and 1 (got " << value << ")";
    throw InputError(os.str());
  }
}
}  // namespace

void OptimizerOptions::validate() const {
  if (types.empty()) {
    throw InputError("option -opt_type: no optimiser given (allowed: " + joined(knownTypes()) +
                     ")");
  }
  for (const auto& t : types) {
    const auto& known = knownTypes();
    if (std::find(known.begin(), known.end(), t) == known.end()) {
      throw InputError("option -opt_type: unknown optimiser '" + t +
                       "' (allowed: " + joined(known) + ")");
    }
  }
  if (max_it < 0) {
    throw InputError("option -opt_max_it must be non-negative (got " + std::to_string(max_it) +
                     ")");
  }
  requireNonNegative(loss_tol, "loss_tol");
  requireNonNegative(residual_rtol, "residual_rtol");
  requireNonNegative(grad_rtol, "grad_rtol");
  requireNonNegative(target_error, "target_error");
  requireNonNegative(time_budget, "time_budget");
  requirePositive(gd_step, "gd_step");
  requireFraction(armijo_c1, "armijo_c1");
  requireFraction(armijo_shrink, "armijo_shrink");
  if (armijo_max_backtracks < 1) throw InputError("option -opt_armijo_max_backtracks must be >= 1");
  requirePositive(pg_eta, "pg_eta");
  requireFraction(pg_shrink, "pg_shrink");
  if (pg_max_shrinks < 0) throw InputError("option -opt_pg_max_shrinks must be >= 0");
  if (ig_method != "gmres" && ig_method != "lsqr" && ig_method != "cgls" &&
      ig_method != "normal_cg") {
    throw InputError("option -opt_ig_method: unknown method '" + ig_method +
                     "' (allowed: gmres, lsqr, cgls, normal_cg)");
  }
  requirePositive(ig_rtol, "ig_rtol");
  if (ig_max_it < 1) throw InputError("option -opt_ig_max_it must be >= 1");
  requireNonNegative(ig_damping, "ig_damping");
  if (ig_damping > 0.0 && ig_method != "normal_cg")
    throw InputError("option -opt_ig_damping needs -opt_ig_method normal_cg");
  requireNonNegative(gn_damping, "gn_damping");
  if (gn_max_cg < 1) throw InputError("option -opt_gn_max_cg must be >= 1");
  requirePositive(newton_eta, "newton_eta");
  requirePositive(newton_rtol, "newton_rtol");
  requirePositive(hig_eta, "hig_eta");
  requireFraction(hig_rcond, "hig_rcond");
  if (hig_lanczos < 1) throw InputError("option -opt_hig_lanczos must be >= 1");
}

namespace {
PetscErrorCode readOptions(MPI_Comm comm, const char* prefix, OptimizerOptions* o) {
  PetscFunctionBeginUser;
  constexpr PetscInt kMaxTypes = 16;
  PetscInt ntypes = kMaxTypes;
  PetscBool set = PETSC_FALSE;
  std::string help = "Comma-separated optimisers to run, in order (allowed: " +
                     joined(OptimizerOptions::knownTypes()) + "; default: " + joined(o->types) +
                     ")";
  PetscOptionsBegin(comm, prefix, "Optimizer options", nullptr);
  {
    char* raw[kMaxTypes] = {};
    PetscCall(PetscOptionsStringArray("-type", help.c_str(), nullptr, raw, &ntypes, &set));
    if (set) {
      o->types.clear();
      for (PetscInt i = 0; i < ntypes; ++i) {
        o->types.emplace_back(raw[i]);
        PetscCall(PetscFree(raw[i]));
      }
    }
    PetscCall(PetscOptionsInt("-max_it", "Iterations per optimiser", nullptr, o->max_it, &o->max_it,
                              nullptr));
    PetscCall(PetscOptionsReal("-loss_tol", "Stop when the loss falls to this value (0: off)",
                               nullptr, o->loss_tol, &o->loss_tol, nullptr));
    PetscCall(PetscOptionsReal("-residual_rtol",
                               "Stop when sqrt(loss / initial loss) falls to this (0: off)",
                               nullptr, o->residual_rtol, &o->residual_rtol, nullptr));
    PetscCall(PetscOptionsReal("-grad_rtol",
                               "Stop when |gradient| falls to this times its first value (0: off)",
                               nullptr, o->grad_rtol, &o->grad_rtol, nullptr));
    PetscCall(PetscOptionsReal("-target_error",
                               "Stop when the relative L2 error of x reaches this (0: off)",
                               nullptr, o->target_error, &o->target_error, nullptr));
    PetscCall(PetscOptionsReal("-time_budget", "Wall-clock seconds per optimiser (0: off)", nullptr,
                               o->time_budget, &o->time_budget, nullptr));
    PetscCall(PetscOptionsReal("-gd_step", "GD step size (fixed GD) / first trial step (Armijo)",
                               nullptr, o->gd_step, &o->gd_step, nullptr));
    PetscCall(PetscOptionsReal("-armijo_c1", "Armijo sufficient-decrease constant", nullptr,
                               o->armijo_c1, &o->armijo_c1, nullptr));
    PetscCall(PetscOptionsReal("-armijo_shrink", "Armijo backtracking factor", nullptr,
                               o->armijo_shrink, &o->armijo_shrink, nullptr));
    PetscCall(PetscOptionsInt("-armijo_max_backtracks", "Armijo backtracking steps before failure",
                              nullptr, o->armijo_max_backtracks, &o->armijo_max_backtracks,
                              nullptr));
    PetscCall(PetscOptionsReal("-pg_eta", "PG/IG step in y-space (1: full Newton step of the loss)",
                               nullptr, o->pg_eta, &o->pg_eta, nullptr));
    PetscCall(PetscOptionsReal("-pg_shrink",
                               "Factor on eta when PG/IG/HIG do not decrease the loss", nullptr,
                               o->pg_shrink, &o->pg_shrink, nullptr));
    PetscCall(PetscOptionsInt("-pg_max_shrinks",
                              "Shrinks of eta before PG falls back to IG, then GD", nullptr,
                              o->pg_max_shrinks, &o->pg_max_shrinks, nullptr));
    char method[32];
    PetscCall(PetscStrncpy(method, o->ig_method.c_str(), sizeof method));
    PetscCall(PetscOptionsString("-ig_method", "IG Krylov method: gmres, lsqr, cgls, normal_cg",
                                 nullptr, method, method, sizeof method, nullptr));
    o->ig_method = method;
    PetscCall(PetscOptionsReal("-ig_rtol", "IG Krylov tolerance (also J^{-1}J^{-T} of lbfgs_inv)",
                               nullptr, o->ig_rtol, &o->ig_rtol, nullptr));
    PetscCall(PetscOptionsInt("-ig_max_it", "IG Krylov iteration cap", nullptr, o->ig_max_it,
                              &o->ig_max_it, nullptr));
    PetscCall(PetscOptionsReal("-ig_damping", "Tikhonov damping of the IG solve (normal_cg)",
                               nullptr, o->ig_damping, &o->ig_damping, nullptr));
    PetscCall(PetscOptionsReal("-gn_damping", "Damping mu of Gauss-Newton (J^T J + mu I)", nullptr,
                               o->gn_damping, &o->gn_damping, nullptr));
    PetscCall(PetscOptionsInt("-gn_max_cg", "CG iterations per Gauss-Newton step", nullptr,
                              o->gn_max_cg, &o->gn_max_cg, nullptr));
    PetscCall(PetscOptionsReal("-newton_eta", "Fixed Newton step factor", nullptr, o->newton_eta,
                               &o->newton_eta, nullptr));
    PetscCall(PetscOptionsReal("-newton_rtol", "CG tolerance of the Newton system", nullptr,
                               o->newton_rtol, &o->newton_rtol, nullptr));
    PetscCall(
        PetscOptionsReal("-hig_eta", "HIG step factor", nullptr, o->hig_eta, &o->hig_eta, nullptr));
    PetscCall(PetscOptionsReal("-hig_rcond", "HIG: drop singular values below rcond*sigma_max",
                               nullptr, o->hig_rcond, &o->hig_rcond, nullptr));
    PetscCall(PetscOptionsInt("-hig_lanczos", "HIG: Lanczos steps on J^T J per update", nullptr,
                              o->hig_lanczos, &o->hig_lanczos, nullptr));
    PetscBool mon = o->monitor ? PETSC_TRUE : PETSC_FALSE;
    PetscCall(
        PetscOptionsBool("-monitor", "Print one line per iteration", nullptr, mon, &mon, nullptr));
    o->monitor = mon == PETSC_TRUE;
  }
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}
}  // namespace

OptimizerOptions OptimizerOptions::fromCommandLine(MPI_Comm comm, const std::string& prefix) {
  return fromCommandLine(comm, prefix, OptimizerOptions{});
}

OptimizerOptions OptimizerOptions::fromCommandLine(MPI_Comm comm, const std::string& prefix,
                                                   OptimizerOptions defaults) {
  PG_CALL(readOptions(comm, prefix.c_str(), &defaults));
  defaults.validate();
  return defaults;
}

}  // namespace physgrad
