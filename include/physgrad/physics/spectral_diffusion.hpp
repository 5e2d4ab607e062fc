#pragma once
// The exact heat kernel on periodic grids, y = F^{-1}[exp(-kappa |k|^2 dt) F x], and the
// distributed FFT machinery behind it (PETSc's MATFFTW over FFTW-MPI), which any other
// per-frequency operator (a noise-aware blend of the forward and inverse kernels, a spectral
// filter) can reuse.
//
// Data path of one application (built once per transform, used for every call):
//
//   DMDA global Vec ──VecScatter (forward)──> FFTW input Vec ──MatMult (r2c)──> half spectrum
//        ^                                                                          │ x g(k) / N
//        └────────VecScatter (reverse)──── FFTW output Vec <──MatMultTranspose (c2r)┘
//
// - The DMDA partitions the grid into boxes and numbers each box's points contiguously (its
//   "PETSc ordering"); FFTW-MPI wants slabs of the natural row-major array, split along the
//   slowest axis.  One IS-based VecScatter maps every owned DMDA point straight to its place
//   in the FFTW array (no detour through the natural ordering), and the same scatter run in
//   reverse brings the result back, since the FFTW input and backward-output Vecs share a
//   layout.  PETSc's VecScatterPetscToFFTW / VecScatterFFTWToPetsc are not used: they expect
//   the natural ordering (a second scatter from the DMDA), build a new scatter on every
//   call, and in 3.18 refuse parallel real 3D transforms ("FFTW does not support parallel
//   3D real transform").
// - Debian's PETSc is real-scalar, so MATFFTW does real-to-complex (forward) and
//   complex-to-real (backward) transforms: only the half spectrum m_x = 0 ... n_x/2 of the
//   fastest (x) axis is stored, as interleaved (re, im) pairs.  In parallel FFTW pads each
//   x-row of the real array to 2 (n_x/2 + 1) entries; on one rank PETSc plans an
//   out-of-place transform on the unpadded array.  The scatter's target indices follow
//   whichever layout the transform uses.
// - FFTW's row-major dims are (n_z, n_y, n_x) in 3D, (n_y, n_x) in 2D and (1, n_x) in 1D:
//   FFTW-MPI has no parallel real 1D transform, so a 1D grid is a 2D transform with a single
//   row (FFTW then gathers the row onto one rank, which is what a 1D FFT amounts to anyway).
//   Each rank owns a contiguous block of rows of the slowest dimension, in the spectrum as
//   in real space (the plans are not transposed); the block is read off the ownership range
//   of FFTW's Vecs rather than recomputed, so it cannot disagree with what FFTW allocated.
// - The backward transform is unnormalised (it returns N times the input for N points);
//   the 1/N is folded into the multiplier.

#include <petscmat.h>
#include <petscvec.h>

#include <array>
#include <complex>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "physgrad/core/handle.hpp"
#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad {

using OwnedVecScatter = Handle<VecScatter, VecScatterDestroy>;

/// One entry of the half spectrum held by this rank.
struct Frequency {
  /// Signed frequency index per grid axis, -n/2 < m <= n/2 (0 on unused axes); the x index
  /// is never negative, the x >= 0 half standing for both halves.
  std::array<PetscInt, 3> m = {0, 0, 0};
  /// Continuous wavenumber k_d = 2 pi m_d / L_d per axis.
  std::array<double, 3> k = {0.0, 0.0, 0.0};
  /// |k|^2.
  double k2 = 0.0;
  /// How many entries of the full spectrum this one stands for: 1 on the m_x = 0 plane and,
  /// for even n_x, on the Nyquist plane m_x = n_x/2; 2 elsewhere (k and -k).  Sums over the
  /// full spectrum (Parseval, noise levels) weight each entry by it.
  int multiplicity = 1;
};

/// Real multiplier g(k) of a per-frequency operator.  It must be even, g(k) = g(-k): only
/// then is F^{-1}[g F x] real for real x, which is what the half-spectrum transform computes
/// (any function of |k| qualifies).
using FrequencyMultiplier = std::function<double(const Frequency&)>;
/// A multiplier that may also depend on the coefficient of the input at that frequency
/// (the unnormalised DFT, sum_n x_n exp(-2 pi i m.n / N)).  It must satisfy
/// g(-k, conj(c)) = g(k, c), e.g. by depending on the coefficient only through |c|.
using CoefficientMultiplier = std::function<double(const Frequency&, std::complex<double>)>;

/// FFTs of the scalar fields of one periodic Grid (dof = 1), distributed over the grid's
/// communicator.  Plans, work Vecs and the DMDA <-> FFTW scatter are created once, here.
class SpectralTransform {
 public:
  /// Throws InputError unless the grid is periodic with one component per point.
  explicit SpectralTransform(const Grid& grid);

  const Grid& grid() const { return *grid_; }
  /// Number of half-spectrum entries on this rank (the length of a tabulated multiplier).
  PetscInt localFrequencyCount() const { return local_count_; }

  /// out = F^{-1}[g(k) F in]; `in` and `out` are global Vecs of the grid and may coincide.
  void applyMultiplier(Vec in, Vec out, const FrequencyMultiplier& g);
  /// As applyMultiplier, with g evaluated on each input coefficient.
  void applyCoefficientMultiplier(Vec in, Vec out, const CoefficientMultiplier& g);
  /// g at this rank's frequencies, in the order applyTabulated expects: for a multiplier
  /// applied many times (a time step), tabulate once.
  std::vector<double> tabulate(const FrequencyMultiplier& g) const;
  /// out = F^{-1}[table F in] with a table from tabulate().
  void applyTabulated(Vec in, Vec out, const std::vector<double>& table);

 private:
  /// Calls f(frequency, t) for every local half-spectrum entry t = 0, 1, ... in storage order.
  template <typename F>
  void forEachLocalFrequency(F&& f) const;
  /// in -> spectrum_ (unnormalised forward DFT).
  void forwardTransform(Vec in);
  /// Scales entry t of spectrum_ by factor(t) / N, then spectrum_ -> out.
  template <typename F>
  void scaleAndInvert(Vec out, F&& factor);

  const Grid* grid_;
  std::array<PetscInt, 3> fftw_dims_ = {1, 1, 1};  // row-major (slowest first), padded to 3
  PetscInt rows_begin_ = 0, rows_count_ = 0;       // this rank's block of the slowest dim
  PetscInt local_count_ = 0;
  OwnedMat fft_;
  OwnedVec real_in_, spectrum_, real_out_;  // FFTW's own Vecs (its alignment, its layout)
  OwnedVecScatter to_fftw_;                 // DMDA global -> real_in_ (reverse: real_out_ -> DMDA)
};

/// The exact solution operator of u_t = kappa Delta u over one step dt on a periodic grid,
/// y = F^{-1}[exp(-kappa |k|^2 dt) F x] with the continuous wavenumbers k_d = 2 pi m_d / L_d,
/// so that a resolved Fourier mode decays exactly as in the PDE.  Linear and symmetric (the
/// multiplier is real and even): jvp and vjp are the forward map itself.
///
/// The inverse multiplies by exp(+kappa |k|^2 dt), capped at `inverse_amplification_cap`:
/// min(exp(kappa |k|^2 dt), cap).  It is therefore exact only for the modes whose
/// amplification is at most the cap; a mode above it comes back from S^{-1}(S(x))
/// attenuated by the factor cap exp(-kappa |k|^2 dt) < 1 instead of amplified into noise.
/// cap = +infinity is the exact inverse; if exp(kappa |k|^2 dt) overflows for some mode
/// of the grid, that inverse throws NonFiniteError (choose a finite cap).
class SpectralDiffusionStep final : public Step {
 public:
  /// Throws InputError unless the grid is periodic with dof = 1, kappa >= 0 and dt > 0
  /// (finite) and the cap is > 1 (NaN is refused, +infinity accepted).
  SpectralDiffusionStep(const Grid& grid, double kappa, double dt,
                        double inverse_amplification_cap = std::numeric_limits<double>::infinity());

  std::string name() const override { return "spectral-diffusion"; }
  bool isLinear() const override { return true; }
  bool isSelfAdjoint() const override { return true; }
  void forward(Vec x, Vec y) override;
  void jvp(Vec x, Vec dx, Vec dy) override;
  void vjp(Vec x, Vec w, Vec wx) override;
  void inverse(Vec x0, Vec y, Vec x) override;

  double kappa() const { return kappa_; }
  double dt() const { return dt_; }
  double inverseAmplificationCap() const { return cap_; }
  /// The machinery, for operators that blend this kernel with others per frequency.
  SpectralTransform& transform() { return fft_; }

 private:
  double kappa_, dt_, cap_;
  SpectralTransform fft_;
  std::vector<double> decay_;       // exp(-kappa |k|^2 dt) at the local frequencies
  std::vector<double> amplify_;     // min(exp(+kappa |k|^2 dt), cap)
  bool inverse_overflows_ = false;  // globally reduced: identical on every rank
};

}  // namespace physgrad
