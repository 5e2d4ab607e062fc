#include "physgrad/physics/spectral_diffusion.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/diffusion.hpp"

// PETSc 3.18's MatDestroy_FFTW ends with fftw_mpi_cleanup(), which destroys FFTW's global
// planner and the solver objects that the plans of every *other* live MATFFTW still point
// to.  FFTW's manual: after a cleanup "all existing plans become undefined, and you should
// not attempt to execute them nor to destroy them".  Valgrind shows the consequence as soon
// as two transforms coexist (a serial copy next to a distributed one, two steps with
// different dt): destroying the survivor reads the freed solvers.  The cleanup only
// releases FFTW's small persistent planner state, which the manual calls optional, so this
// definition, which the executable exports and which therefore takes the place of FFTW's
// own for PETSc's call, makes it a no-op: the planner then lives until the process ends and
// no plan is ever orphaned.  (fftw_mpi_init(), called by every MatCreateFFT, stays
// idempotent.)
extern "C" void fftw_mpi_cleanup(void) {}

namespace physgrad {
namespace {

using OwnedIS = Handle<IS, ISDestroy>;

constexpr double kTwoPi = 6.28318530717958647692;

/// Index 0 ... n-1 of a DFT axis as the signed frequency -n/2 < m <= n/2.
PetscInt signedFrequency(PetscInt index, PetscInt n) { return index <= n / 2 ? index : index - n; }

const Grid& checkedSpectralGrid(const Grid& grid) {
  if (grid.boundary() != Boundary::Periodic) {
    throw InputError(std::string("spectral transforms need a periodic grid (got a ") +
                     toString(grid.boundary()) + " grid)");
  }
  if (grid.dof() != 1) {
    throw InputError("spectral transforms act on scalar fields (dof = 1); the grid has dof = " +
                     std::to_string(grid.dof()));
  }
  return grid;
}

}  // namespace

SpectralTransform::SpectralTransform(const Grid& grid) : grid_(&checkedSpectralGrid(grid)) {
  const MPI_Comm comm = grid.comm();
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);

  // FFTW's dims, slowest first: (n_z, n_y, n_x), (n_y, n_x), or (1, n_x) because FFTW-MPI has
  // no parallel real 1D transform.
  const int fftw_ndim = std::max(grid.dim(), 2);
  if (grid.dim() == 3) {
    fftw_dims_ = {grid.n(2), grid.n(1), grid.n(0)};
  } else {
    fftw_dims_ = {grid.dim() == 2 ? grid.n(1) : 1, grid.n(0), 1};
  }
  PG_CALL(MatCreateFFT(comm, fftw_ndim, fftw_dims_.data(), MATFFTW, fft_.out()));
  PG_CALL(MatCreateVecsFFTW(fft_, real_in_.out(), spectrum_.out(), real_out_.out()));
  // The padding of FFTW's real arrays is never written by the scatter: keep it defined.
  PG_CALL(VecSet(real_in_, 0.0));
  PG_CALL(VecSet(real_out_, 0.0));
  PG_CALL(VecSet(spectrum_, 0.0));

  // This rank's block of spectrum rows, from the size FFTW gave its Vec: each row of the
  // slowest dimension holds (middle dims) x (n_x/2 + 1) complex numbers.
  const PetscInt nx = grid.n(0);
  const PetscInt half_x = nx / 2 + 1;
  const PetscInt middle = grid.dim() == 3 ? grid.n(1) : 1;
  const PetscInt row_doubles = 2 * middle * half_x;
  PetscInt spectrum_begin = 0, spectrum_end = 0;
  PG_CALL(VecGetOwnershipRange(spectrum_, &spectrum_begin, &spectrum_end));
  const PetscInt spectrum_local = spectrum_end - spectrum_begin;
  if (spectrum_begin % row_doubles != 0 || spectrum_local % row_doubles != 0) {
    std::ostringstream os;
    os << "SpectralTransform: FFTW's spectrum block [" << spectrum_begin << ", " << spectrum_end
       << ") is not made of whole rows of " << row_doubles << " values";
    throw PetscException(PETSC_ERR_PLIB, os.str());
  }
  rows_begin_ = spectrum_begin / row_doubles;
  rows_count_ = spectrum_local / row_doubles;
  local_count_ = rows_count_ * middle * half_x;

  // Where each owned DMDA point goes in FFTW's real array.  In parallel FFTW pads every
  // x-row to 2 (n_x/2 + 1) values; PETSc's one-rank transform is out-of-place on the
  // unpadded array.  Rows are numbered k n_y + j in every dimension (k = 0 below 3D, j = 0
  // in 1D), which is the row-major order of FFTW's dims.
  const PetscInt row_stride = ranks > 1 ? 2 * half_x : nx;
  const PetscInt ny = grid.n(1);
  std::vector<PetscInt> targets(static_cast<size_t>(grid.owned().count()));
  forEachOwned(grid, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt offset) {
    targets[offset] = (k * ny + j) * row_stride + i;
  });
  OwnedVec dmda_template = grid.createGlobal();
  PetscInt dmda_begin = 0;
  PG_CALL(VecGetOwnershipRange(dmda_template, &dmda_begin, nullptr));
  OwnedIS from, to;
  const auto count = static_cast<PetscInt>(targets.size());
  PG_CALL(ISCreateStride(PETSC_COMM_SELF, count, dmda_begin, 1, from.out()));
  PG_CALL(ISCreateGeneral(PETSC_COMM_SELF, count, targets.data(), PETSC_COPY_VALUES, to.out()));
  PG_CALL(VecScatterCreate(dmda_template, from, real_in_, to, to_fftw_.out()));

  // Plan now rather than on the first MatMult (PETSc plans lazily): the first step then
  // costs what every later one does, and a measuring planner (-mat_fftw_plannerflags),
  // which overwrites its arrays while it plans, sees only these zeros.
  PG_CALL(MatMult(fft_, real_in_, spectrum_));
  PG_CALL(MatMultTranspose(fft_, spectrum_, real_out_));
}

template <typename F>
void SpectralTransform::forEachLocalFrequency(F&& f) const {
  const Grid& g = *grid_;
  const int dim = g.dim();
  const PetscInt nx = g.n(0);
  const PetscInt half_x = nx / 2 + 1;
  const PetscInt middle = dim == 3 ? g.n(1) : 1;
  double k_unit[3] = {0.0, 0.0, 0.0};  // 2 pi / L per axis
  for (int a = 0; a < dim; ++a) k_unit[a] = kTwoPi / g.spec().length[a];

  Frequency freq;
  PetscInt t = 0;
  for (PetscInt row = rows_begin_; row < rows_begin_ + rows_count_; ++row) {
    // The slowest FFTW dimension is z in 3D, y in 2D, and the single dummy row in 1D.
    if (dim == 3) {
      freq.m[2] = signedFrequency(row, g.n(2));
    } else if (dim == 2) {
      freq.m[1] = signedFrequency(row, g.n(1));
    }
    for (PetscInt mid = 0; mid < middle; ++mid) {
      if (dim == 3) freq.m[1] = signedFrequency(mid, g.n(1));
      for (PetscInt q = 0; q < half_x; ++q, ++t) {
        freq.m[0] = q;
        freq.k2 = 0.0;
        for (int a = 0; a < 3; ++a) {
          freq.k[a] = k_unit[a] * static_cast<double>(freq.m[a]);
          freq.k2 += freq.k[a] * freq.k[a];
        }
        freq.multiplicity = (q == 0 || (nx % 2 == 0 && q == nx / 2)) ? 1 : 2;
        f(static_cast<const Frequency&>(freq), t);
      }
    }
  }
}

void SpectralTransform::forwardTransform(Vec in) {
  PG_CALL(VecScatterBegin(to_fftw_, in, real_in_, INSERT_VALUES, SCATTER_FORWARD));
  PG_CALL(VecScatterEnd(to_fftw_, in, real_in_, INSERT_VALUES, SCATTER_FORWARD));
  PG_CALL(MatMult(fft_, real_in_, spectrum_));
}

template <typename F>
void SpectralTransform::scaleAndInvert(Vec out, F&& factor) {
  // FFTW's backward transform is unnormalised: c2r(r2c(x)) = N x.
  const double inv_n = 1.0 / static_cast<double>(grid_->size());
  PetscScalar* c = nullptr;
  PG_CALL(VecGetArray(spectrum_, &c));
  for (PetscInt t = 0; t < local_count_; ++t) {
    const double s = factor(t) * inv_n;
    c[2 * t] *= s;
    c[2 * t + 1] *= s;
  }
  PG_CALL(VecRestoreArray(spectrum_, &c));
  PG_CALL(PetscLogFlops(3.0 * static_cast<PetscLogDouble>(local_count_)));
  PG_CALL(MatMultTranspose(fft_, spectrum_, real_out_));
  PG_CALL(VecScatterBegin(to_fftw_, real_out_, out, INSERT_VALUES, SCATTER_REVERSE));
  PG_CALL(VecScatterEnd(to_fftw_, real_out_, out, INSERT_VALUES, SCATTER_REVERSE));
}

std::vector<double> SpectralTransform::tabulate(const FrequencyMultiplier& g) const {
  std::vector<double> table(static_cast<size_t>(local_count_));
  forEachLocalFrequency([&](const Frequency& f, PetscInt t) { table[t] = g(f); });
  return table;
}

void SpectralTransform::applyTabulated(Vec in, Vec out, const std::vector<double>& table) {
  if (static_cast<PetscInt>(table.size()) != local_count_) {
    throw InputError("SpectralTransform::applyTabulated: the table has " +
                     std::to_string(table.size()) + " entries, this rank holds " +
                     std::to_string(local_count_) + " frequencies");
  }
  forwardTransform(in);
  scaleAndInvert(out, [&](PetscInt t) { return table[t]; });
}

void SpectralTransform::applyMultiplier(Vec in, Vec out, const FrequencyMultiplier& g) {
  applyTabulated(in, out, tabulate(g));
}

void SpectralTransform::applyCoefficientMultiplier(Vec in, Vec out,
                                                   const CoefficientMultiplier& g) {
  forwardTransform(in);
  // Evaluate g on the unnormalised coefficients before any of them is scaled.
  std::vector<double> table(static_cast<size_t>(local_count_));
  const PetscScalar* c = nullptr;
  PG_CALL(VecGetArrayRead(spectrum_, &c));
  forEachLocalFrequency([&](const Frequency& f, PetscInt t) {
    table[t] = g(f, std::complex<double>(c[2 * t], c[2 * t + 1]));
  });
  PG_CALL(VecRestoreArrayRead(spectrum_, &c));
  scaleAndInvert(out, [&](PetscInt t) { return table[t]; });
}

// ---------------------------------------------------------------------------------------

namespace {

const Grid& checkedDiffusionGrid(const Grid& grid, double kappa, double dt, double cap) {
  DiffusionParams{kappa, dt}.validate();
  if (!(cap > 1.0)) {
    std::ostringstream os;
    os << "the inverse amplification cap of spectral diffusion must be > 1 (got " << cap
       << "); use +infinity for the exact inverse";
    throw InputError(os.str());
  }
  return grid;
}

}  // namespace

SpectralDiffusionStep::SpectralDiffusionStep(const Grid& grid, double kappa, double dt,
                                             double inverse_amplification_cap)
    : Step(grid),
      kappa_(kappa),
      dt_(dt),
      cap_(inverse_amplification_cap),
      fft_(checkedDiffusionGrid(grid, kappa, dt, inverse_amplification_cap)) {
  decay_ = fft_.tabulate([this](const Frequency& f) { return std::exp(-kappa_ * f.k2 * dt_); });
  // min(exp(e), cap) rather than exp(min(e, log cap)): below the cap the factor is then
  // exactly exp(e), the reciprocal of the forward factor to round-off.
  amplify_ = fft_.tabulate(
      [this](const Frequency& f) { return std::min(std::exp(kappa_ * f.k2 * dt_), cap_); });
  int overflow = 0;
  for (double a : amplify_) overflow |= std::isfinite(a) ? 0 : 1;
  int any_overflow = 0;
  MPI_Allreduce(&overflow, &any_overflow, 1, MPI_INT, MPI_MAX, grid.comm());
  inverse_overflows_ = any_overflow != 0;
}

void SpectralDiffusionStep::forward(Vec x, Vec y) { fft_.applyTabulated(x, y, decay_); }

// The multiplier is real and even, so the operator is symmetric: J = J^T = S.
void SpectralDiffusionStep::jvp(Vec, Vec dx, Vec dy) { fft_.applyTabulated(dx, dy, decay_); }
void SpectralDiffusionStep::vjp(Vec, Vec w, Vec wx) { fft_.applyTabulated(w, wx, decay_); }

void SpectralDiffusionStep::inverse(Vec, Vec y, Vec x) {
  if (inverse_overflows_) {
    std::ostringstream os;
    os << "the exact inverse of spectral diffusion overflows on this grid: exp(kappa |k|^2 dt) "
          "exceeds the double range for its highest modes (kappa = "
       << kappa_ << ", dt = " << dt_ << "); give a finite inverse amplification cap";
    throw NonFiniteError(os.str());
  }
  fft_.applyTabulated(y, x, amplify_);
}

}  // namespace physgrad
