#pragma once
// The noise-aware per-frequency inverse of the heat kernel (REFERENCES.md §3, the heat
// experiment of the scale-invariant-physics (SIP) paper), and a Step that uses it as its
// local inverse so that the optimiser's "pg" rule runs the paper's iteration.
//
// For a residual r = y* - y with spectrum a(k), the update is
//
//   dx = F^{-1}[ a(k) exp(lk(k) action(k)) ],   lk(k) = min(kappa t |k|^2, clamp),
//
// a per-frequency choice between the full inverse (action = +1: a e^{lk}), the identity
// (action = 0) and the forward kernel (action = -1: a e^{-lk}, the gradient direction since
// the heat kernel is symmetric), made by asking whether |a(k)| looks more like signal or
// like noise.  A mode whose signal the forward map has damped below the noise is not worth
// amplifying: the inverse would amplify the noise with it.
//
// Units.  k is the wavenumber in radians per length (k_d = 2 pi m_d / L_d), as in
// SpectralDiffusionStep, so the forward multiplier is exp(-kappa t |k|^2).  The reference
// writes it as exp(-4 pi^2 |k_c|^2 nu t) with k_c in cycles per cell; since
// k = 2 pi k_c / h, its nu t (in cells^2) is kappa t / h^2, i.e. kappa t = nu t h^2
// (equal for the reference's cell size 1).
//
// Scaling of |a|.  Every amplitude here is on the orthonormal scale of the DFT,
// a_hat = (unnormalised DFT) / sqrt(N), N the number of grid points, on which a field and
// its spectrum have the same Euclidean norm (Parseval):
//   - |a_hat(k)| is the complex modulus of the orthonormal coefficient;
//   - the expected signal amplitude is E(k) = signal_amplitude exp(-lk(k)): a field x of
//     RMS sigma spread evenly over the modes has coefficients of modulus sigma, damped by
//     the kernel; the reference's N exp(-lk) on its unnormalised 64 x 64 numpy FFT is
//     exactly sqrt(N) times this for signal_amplitude = 1 (sqrt(64 * 64) = 64).  For other
//     grids the reference's "N" (points per axis) generalises to sqrt(N_total), which is the
//     geometric mean sqrt(n_x n_y) of the points per axis on any 2D grid; 1D and 3D grids
//     follow the same Parseval reasoning instead of the per-axis count.
//   - the noise amplitude is f = sqrt(mean over cells of u^2), u = noise_level |r| +
//     noise_floor: white noise of per-cell standard deviation u has orthonormal
//     coefficients of RMS modulus u.  The reference's sqrt(sum u^2) is sqrt(N) times this.
// Both ratios |a|/E and |a|/f, and hence every threshold, are therefore identical to the
// reference's on its 64 x 64 grid (up to rounding).
//
// Decision.  With q_s = |a|/E and q_n = |a|/f the reference forms S = exp(-q_s^2/2)/2,
// Nn = exp(-q_n^2/2)/2 and p = S / (S + Nn); here p is evaluated as the equal expression
// p = 1 / (1 + exp((q_s^2 - q_n^2) / 2)), which never divides 0 by 0: where both S and Nn
// underflow in double (|a| beyond about 38.6 E and 38.6 f) the reference's quotient is
// undefined (NaN), while this form gives its limit (the hypothesis with the larger
// likelihood wins: p -> 1 if E > f, p -> 0 if E < f).  f = 0 gives p = 1 for every
// non-zero coefficient, a zero coefficient p = 1/2.  Then
//   action = 2 (p - 1/2)  if p <= 1/2 or p >= 0.68,  else 0
// (the band 1/2 < p < 0.68 of weak evidence for signal keeps the identity).

#include <petscvec.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "physgrad/physics/spectral_diffusion.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

/// Parameters of the signal / noise decision; the defaults are the reference's.
struct NoiseAwareOptions {
  /// Relative noise per cell: u = noise_level |r| + noise_floor.
  double noise_level = 1e-6;
  /// Absolute noise per cell (the data's noise standard deviation, when known).
  double noise_floor = 1e-8;
  /// RMS of the x the data come from, as expected a priori (orthonormal spectral amplitude
  /// of x per mode); 1 reproduces the reference's N exp(-lk) on an N x N grid.
  double signal_amplitude = 1.0;
  /// The log-kernel is clamped here, so no mode is amplified by more than e^clamp.
  double log_kernel_clamp = 88.0;

  /// Throws InputError naming the field: levels must be >= 0 and finite, the signal
  /// amplitude > 0 and finite, the clamp in (0, 700] (e^700 still fits a double).
  void validate() const;
};

/// The three regimes of the per-frequency decision.
enum class BlendRegime { Gradient, Identity, Inverse };

/// Where the last application put the spectrum: counts over the full spectrum (each
/// half-spectrum entry weighted by the number of modes it stands for), so they add up to the
/// number of grid points.  Globally reduced: identical on every rank.
struct BlendStatistics {
  long inverse = 0;   ///< action > 0 (of which full_inverse have action == +1)
  long identity = 0;  ///< action == 0
  long gradient = 0;  ///< action < 0 (of which full_gradient have action == -1)
  long full_inverse = 0, full_gradient = 0;
  double min_action = 0.0, max_action = 0.0;
  double noise_amplitude = 0.0;  ///< f on the orthonormal scale
};

/// dx = F^{-1}[a exp(lk action)] for residuals r of one periodic scalar grid.  Collective
/// over the grid's communicator.  See the file comment for every definition.
class NoiseAwareSpectralInverse {
 public:
  /// Owns its own transform.  heat_exponent = kappa t >= 0 (finite); throws InputError
  /// for bad options or a grid that is not periodic with dof = 1.
  NoiseAwareSpectralInverse(const Grid& grid, double heat_exponent, NoiseAwareOptions options = {});
  /// Borrows `transform` (e.g. SpectralDiffusionStep::transform()), which must outlive this.
  NoiseAwareSpectralInverse(SpectralTransform& transform, double heat_exponent,
                            NoiseAwareOptions options = {});
  ~NoiseAwareSpectralInverse();
  NoiseAwareSpectralInverse(const NoiseAwareSpectralInverse&) = delete;
  NoiseAwareSpectralInverse& operator=(const NoiseAwareSpectralInverse&) = delete;

  /// dx from the residual r; r and dx are global Vecs of the grid and may coincide.
  /// Records the action of every local frequency and the global statistics.
  void apply(Vec residual, Vec dx);

  /// Actions of the last apply() at this rank's half-spectrum entries, in the order of
  /// SpectralTransform::tabulate (tabulate the frequencies to know which is which).
  const std::vector<double>& lastLocalActions() const { return local_actions_; }
  const BlendStatistics& lastStatistics() const { return statistics_; }

  /// lk = min(kappa t |k|^2, clamp).
  double logKernel(const Frequency& f) const;
  /// E = signal_amplitude exp(-lk), orthonormal scale.
  double expectedSignalAmplitude(const Frequency& f) const;
  /// f = sqrt(mean u^2), u = noise_level |r| + noise_floor; orthonormal scale, collective.
  double noiseAmplitude(Vec residual) const;
  /// Orthonormal scale of a coefficient of SpectralTransform (its unnormalised DFT):
  /// multiply by this, 1 / sqrt(N).
  double orthonormalScale() const { return orthonormal_scale_; }

  /// The decision for one coefficient of modulus `amplitude` against the expected signal
  /// `expected` (> 0) and the noise `noise` (>= 0), all on one scale: p = S / (S + Nn) in
  /// the overflow-free form of the file comment.
  static double signalProbability(double amplitude, double expected, double noise);
  /// 2 (p - 1/2) if p <= 1/2 or p >= 0.68, else 0.
  static double action(double amplitude, double expected, double noise);
  static BlendRegime regime(double action) {
    return action > 0.0 ? BlendRegime::Inverse
                        : (action < 0.0 ? BlendRegime::Gradient : BlendRegime::Identity);
  }

  double heatExponent() const { return heat_exponent_; }
  const NoiseAwareOptions& options() const { return options_; }
  SpectralTransform& transform() { return *transform_; }

 private:
  std::unique_ptr<SpectralTransform> owned_transform_;  // null when borrowing
  SpectralTransform* transform_;
  double heat_exponent_;
  NoiseAwareOptions options_;
  double orthonormal_scale_;
  std::vector<double> local_actions_;
  BlendStatistics statistics_;
};

/// The exact heat kernel forward (y = F^{-1}[exp(-kappa |k|^2 dt) F x], as
/// SpectralDiffusionStep) whose local inverse is the noise-aware blend around the point:
///
///   inverse(x0, y, x):  x = x0 + blend(y - S(x0)).
///
/// Inside the optimiser's "pg" rule, which sets the y-space target y + eta (y* - y) with
/// y = P(x0) and then x = P^{-1}_{(x0, y)}(target), this gives
///
///   x = x0 + blend(eta (y* - P(x0))),
///
/// which for eta = 1 (the default -opt_pg_eta) and a simulator of one such step is exactly
/// the reference's "x += inverse(y* - P(x))".  (The blend is not linear in the residual,
/// so eta != 1 is not eta times the reference step.)  With eta = 1 the step multiplies each
/// residual mode by 1 - e^{lk action - kappa |k|^2 dt}, which lies in [0, 1) because
/// action <= 1 and lk <= kappa |k|^2 dt: a step never increases the loss, and the loop's
/// decrease test accepts the reference step in every iteration where the loss still moves
/// (past round-off the loop shrinks eta and falls back, as for any PG).
///
/// In a simulator of K such steps, inverse time stepping blends each step's own residual;
/// that is the reference's update only for K = 1 (one exact step of the whole time).
///
/// The forward map is linear, but the inverse depends on the point x0, so isLinear() is
/// false: the Simulator then records the states the inverse sweep needs.  (For the same
/// reason isSelfAdjoint() is false, although J = J^T.)  Each inverse costs one extra
/// forward apply for S(x0).
class BlendedSpectralDiffusionStep final : public Step {
 public:
  /// As SpectralDiffusionStep(grid, kappa, dt) with the blend's options; the blend's heat
  /// exponent is kappa dt.  Throws InputError for bad parameters.
  BlendedSpectralDiffusionStep(const Grid& grid, double kappa, double dt,
                               NoiseAwareOptions options = {});

  std::string name() const override { return "blended-spectral-diffusion"; }
  bool isLinear() const override { return false; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  /// x = x0 + blend(y - S(x0)); x0 is required (InputError when null).
  void inverse(Vec x0, Vec y, Vec x) override;

  NoiseAwareSpectralInverse& blend() { return blend_; }
  SpectralDiffusionStep& exactStep() { return exact_; }

 private:
  SpectralDiffusionStep exact_;  // the forward kernel and the FFT machinery the blend borrows
  NoiseAwareSpectralInverse blend_;
  OwnedVec work_;
};

}  // namespace physgrad
