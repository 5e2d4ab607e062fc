#include "physgrad/inverse/spectral_blend.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <sstream>

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {

/// Below this probability of signal (and above 1/2) the evidence is too weak to invert.
constexpr double kInverseThreshold = 0.68;
/// e^700 is about 1e304: a larger clamp could overflow the amplified coefficient.
constexpr double kMaxClamp = 700.0;

void fail(const char* field, const char* requirement, double value) {
  std::ostringstream os;
  os << "noise-aware spectral inverse: " << field << " must be " << requirement << " (got " << value
     << ")";
  throw InputError(os.str());
}

double checkedHeatExponent(double heat_exponent) {
  if (!(heat_exponent >= 0.0) || !std::isfinite(heat_exponent)) {
    fail("the heat exponent kappa t", "non-negative and finite", heat_exponent);
  }
  return heat_exponent;
}

NoiseAwareOptions checkedOptions(const NoiseAwareOptions& o) {
  o.validate();
  return o;
}

}  // namespace

void NoiseAwareOptions::validate() const {
  if (!(noise_level >= 0.0) || !std::isfinite(noise_level))
    fail("noise_level", "non-negative and finite", noise_level);
  if (!(noise_floor >= 0.0) || !std::isfinite(noise_floor))
    fail("noise_floor", "non-negative and finite", noise_floor);
  if (!(signal_amplitude > 0.0) || !std::isfinite(signal_amplitude))
    fail("signal_amplitude", "positive and finite", signal_amplitude);
  if (!(log_kernel_clamp > 0.0 && log_kernel_clamp <= kMaxClamp))
    fail("log_kernel_clamp", "in (0, 700]", log_kernel_clamp);
}

NoiseAwareSpectralInverse::NoiseAwareSpectralInverse(const Grid& grid, double heat_exponent,
                                                     NoiseAwareOptions options)
    : heat_exponent_(checkedHeatExponent(heat_exponent)), options_(checkedOptions(options)) {
  owned_transform_ = std::make_unique<SpectralTransform>(grid);
  transform_ = owned_transform_.get();
  orthonormal_scale_ = 1.0 / std::sqrt(static_cast<double>(grid.size()));
}

NoiseAwareSpectralInverse::NoiseAwareSpectralInverse(SpectralTransform& transform,
                                                     double heat_exponent,
                                                     NoiseAwareOptions options)
    : transform_(&transform),
      heat_exponent_(checkedHeatExponent(heat_exponent)),
      options_(checkedOptions(options)),
      orthonormal_scale_(1.0 / std::sqrt(static_cast<double>(transform.grid().size()))) {}

NoiseAwareSpectralInverse::~NoiseAwareSpectralInverse() = default;

double NoiseAwareSpectralInverse::logKernel(const Frequency& f) const {
  return std::min(heat_exponent_ * f.k2, options_.log_kernel_clamp);
}

double NoiseAwareSpectralInverse::expectedSignalAmplitude(const Frequency& f) const {
  return options_.signal_amplitude * std::exp(-logKernel(f));
}

double NoiseAwareSpectralInverse::noiseAmplitude(Vec residual) const {
  // A purely absolute noise model needs no pass over the field (and is then exact).
  if (options_.noise_level == 0.0) return options_.noise_floor;
  PetscInt n = 0;
  PG_CALL(VecGetLocalSize(residual, &n));
  const PetscScalar* r = nullptr;
  PG_CALL(VecGetArrayRead(residual, &r));
  double local = 0.0;
  for (PetscInt i = 0; i < n; ++i) {
    const double u = options_.noise_level * std::abs(r[i]) + options_.noise_floor;
    local += u * u;
  }
  PG_CALL(VecRestoreArrayRead(residual, &r));
  double total = 0.0;
  MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, transform_->grid().comm());
  return std::sqrt(total / static_cast<double>(transform_->grid().size()));
}

double NoiseAwareSpectralInverse::signalProbability(double amplitude, double expected,
                                                    double noise) {
  if (!(amplitude > 0.0)) return 0.5;  // nothing observed: no evidence either way
  if (!(noise > 0.0)) return 1.0;      // noise-free: anything non-zero is signal
  // p = S / (S + Nn) = 1 / (1 + Nn / S), Nn / S = exp((q_s^2 - q_n^2) / 2), evaluated without
  // forming S and Nn, which both underflow for large |a|.
  const double qs = amplitude / expected, qn = amplitude / noise;
  double log_noise_over_signal = 0.5 * (qs - qn) * (qs + qn);
  if (std::isnan(log_noise_over_signal)) {  // both ratios overflowed: compare the widths
    log_noise_over_signal = expected >= noise ? -std::numeric_limits<double>::infinity()
                                              : std::numeric_limits<double>::infinity();
  }
  return 1.0 / (1.0 + std::exp(log_noise_over_signal));
}

double NoiseAwareSpectralInverse::action(double amplitude, double expected, double noise) {
  const double p = signalProbability(amplitude, expected, noise);
  return (p <= 0.5 || p >= kInverseThreshold) ? 2.0 * (p - 0.5) : 0.0;
}

void NoiseAwareSpectralInverse::apply(Vec residual, Vec dx) {
  const double noise = noiseAmplitude(residual);  // before dx (possibly residual) is written
  local_actions_.clear();
  local_actions_.reserve(static_cast<size_t>(transform_->localFrequencyCount()));
  // inverse, identity, gradient, full inverse, full gradient: modes of the full spectrum
  long counts[5] = {0, 0, 0, 0, 0};
  double extremes[2] = {std::numeric_limits<double>::infinity(),   // min action
                        std::numeric_limits<double>::infinity()};  // -max action
  transform_->applyCoefficientMultiplier(
      residual, dx, [&](const Frequency& f, std::complex<double> c) {
        const double lk = logKernel(f);
        const double a = action(std::abs(c) * orthonormal_scale_,
                                options_.signal_amplitude * std::exp(-lk), noise);
        local_actions_.push_back(a);
        counts[a > 0.0 ? 0 : (a < 0.0 ? 2 : 1)] += f.multiplicity;
        if (a == 1.0) counts[3] += f.multiplicity;
        if (a == -1.0) counts[4] += f.multiplicity;
        extremes[0] = std::min(extremes[0], a);
        extremes[1] = std::min(extremes[1], -a);
        return std::exp(lk * a);
      });
  if (static_cast<PetscInt>(local_actions_.size()) != transform_->localFrequencyCount()) {
    throw PetscException(PETSC_ERR_PLIB, "NoiseAwareSpectralInverse: the transform visited " +
                                             std::to_string(local_actions_.size()) + " of " +
                                             std::to_string(transform_->localFrequencyCount()) +
                                             " local frequencies");
  }
  const MPI_Comm comm = transform_->grid().comm();
  long global_counts[5] = {0, 0, 0, 0, 0};
  double global_extremes[2] = {0.0, 0.0};
  MPI_Allreduce(counts, global_counts, 5, MPI_LONG, MPI_SUM, comm);
  MPI_Allreduce(extremes, global_extremes, 2, MPI_DOUBLE, MPI_MIN, comm);
  statistics_.inverse = global_counts[0];
  statistics_.identity = global_counts[1];
  statistics_.gradient = global_counts[2];
  statistics_.full_inverse = global_counts[3];
  statistics_.full_gradient = global_counts[4];
  statistics_.min_action = global_extremes[0];
  statistics_.max_action = -global_extremes[1];
  statistics_.noise_amplitude = noise;
}

// ---------------------------------------------------------------------------------------

BlendedSpectralDiffusionStep::BlendedSpectralDiffusionStep(const Grid& grid, double kappa,
                                                           double dt, NoiseAwareOptions options)
    : Step(grid),
      exact_(grid, kappa, dt),
      blend_(exact_.transform(), kappa * dt, options),
      work_(grid.createGlobal()) {}

void BlendedSpectralDiffusionStep::forward(Vec x, Vec y) { exact_.forward(x, y); }
void BlendedSpectralDiffusionStep::jvp(Vec x, Vec dx, Vec dy) { exact_.jvp(x, dx, dy); }
void BlendedSpectralDiffusionStep::vjp(Vec x, Vec w, Vec wx) { exact_.vjp(x, w, wx); }

void BlendedSpectralDiffusionStep::inverse(Vec x0, Vec y, Vec x) {
  if (!x0) {
    throw InputError(
        "the blended spectral inverse is a local inverse: it needs the point x0 (run it inside "
        "a Simulator, which records the states, or pass x0)");
  }
  exact_.forward(x0, work_);
  PG_CALL(VecAYPX(work_, -1.0, y));  // the residual y - S(x0)
  blend_.apply(work_, work_);
  if (x != x0) PG_CALL(VecCopy(x0, x));  // y is consumed already, so x may alias it
  PG_CALL(VecAXPY(x, 1.0, work_));
}

}  // namespace physgrad
