#include "physgrad/physics/shifted_laplacian.hpp"

#include <petscdmda.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "physgrad/core/error.hpp"

namespace physgrad {
namespace {

// y = center x + c_d (x[+e_d] + x[-e_d]) summed over the D used axes, on owned points,
// component by component.  Owned values are read straight from the global array `xg`;
// only neighbours outside the owned box come from the ghosted local array `xl` (whose
// ghost entries alone are filled).  That keeps the traffic at one read of x and one
// write of y per point.  Components are interleaved: along x the neighbour of an entry is
// dof entries away, and a row of xm points is one contiguous run of xm * dof entries.
// The interior of one row, e in [begin, end): no ghost values needed.  Restrict-qualified
// so that the compiler vectorises it.
template <int D>
void rowBody(const PetscScalar* __restrict p, const PetscScalar* __restrict ym,
             const PetscScalar* __restrict yp, const PetscScalar* __restrict zm,
             const PetscScalar* __restrict zp, PetscScalar* __restrict q, PetscInt sx, PetscInt end,
             PetscInt begin, double center, const double c[3]) {
  const double cx = c[0], cy = c[1], cz = c[2];
  for (PetscInt e = begin; e < end; ++e) {
    double v = center * p[e] + cx * (p[e - sx] + p[e + sx]);
    if constexpr (D > 1) v += cy * (ym[e] + yp[e]);
    if constexpr (D > 2) v += cz * (zm[e] + zp[e]);
    q[e] = v;
  }
}

// Whether this build has the streaming row body below.
#if defined(__AVX512F__)
constexpr bool kHaveStreamingStores = true;
#else
constexpr bool kHaveStreamingStores = false;
#endif

// The same row with non-temporal stores of whole 64-byte cache lines: y bypasses the
// caches, so the line is not first read from memory (write-allocate).  That saves a
// third of the traffic (24 -> 16 B per point) when y is larger than the last-level cache
// and would be evicted before its next use anyway; for smaller y it would cost a trip to
// memory, so the caller decides (streamingWorthIt).  Same terms as rowBody; the two agree
// to rounding (this one fuses the multiply-adds explicitly).
template <int D>
void rowBodyStreaming(const PetscScalar* __restrict p, const PetscScalar* __restrict ym,
                      const PetscScalar* __restrict yp, const PetscScalar* __restrict zm,
                      const PetscScalar* __restrict zp, PetscScalar* __restrict q, PetscInt sx,
                      PetscInt end, PetscInt begin, double center, const double c[3]) {
#if defined(__AVX512F__)
  constexpr PetscInt kPrefetchAhead = 512;  // entries: 4 KiB
  PetscInt e = begin;
  // Scalar entries up to the first cache-line boundary of q.
  PetscInt head = begin;
  while (head < end && (reinterpret_cast<std::uintptr_t>(q + head) & 63) != 0) ++head;
  rowBody<D>(p, ym, yp, zm, zp, q, sx, head, begin, center, c);
  e = head;
  const __m512d vc = _mm512_set1_pd(center), vx = _mm512_set1_pd(c[0]), vy = _mm512_set1_pd(c[1]),
                vz = _mm512_set1_pd(c[2]);
  for (; e + 8 <= end; e += 8) {
    // In 3D the planes k -+ 1 come from memory and from the last-level cache as separate
    // streams that the hardware prefetchers alone do not keep up with; fetching them
    // 4 KiB ahead measured 62-67% -> 69-74% of the triad on 256^3 in a stand-alone loop
    // (a prefetch never faults, so running past the row is harmless).
    if constexpr (D > 2) {
      _mm_prefetch(reinterpret_cast<const char*>(zm + e + kPrefetchAhead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(zp + e + kPrefetchAhead), _MM_HINT_T0);
    }
    __m512d v =
        _mm512_mul_pd(vx, _mm512_add_pd(_mm512_loadu_pd(p + e - sx), _mm512_loadu_pd(p + e + sx)));
    v = _mm512_fmadd_pd(vc, _mm512_loadu_pd(p + e), v);
    if constexpr (D > 1)
      v = _mm512_fmadd_pd(vy, _mm512_add_pd(_mm512_loadu_pd(ym + e), _mm512_loadu_pd(yp + e)), v);
    if constexpr (D > 2)
      v = _mm512_fmadd_pd(vz, _mm512_add_pd(_mm512_loadu_pd(zm + e), _mm512_loadu_pd(zp + e)), v);
    _mm512_stream_pd(q + e, v);
  }
  rowBody<D>(p, ym, yp, zm, zp, q, sx, end, e, center, c);
#else
  rowBody<D>(p, ym, yp, zm, zp, q, sx, end, begin, center, c);
#endif
}

// Size of the last-level cache in bytes: from Linux sysfs (what lscpu shows), else from
// the C library, else 32 MiB.  Inside virtual machines sysconf() may report the host's
// cache (320 MiB on one EPYC guest where sysfs said 32 MiB), so sysfs comes first.
std::size_t lastLevelCacheBytes() {
  static const std::size_t bytes = [] {
    std::size_t best_level = 0, best_size = 0;
    for (int index = 0; index < 16; ++index) {
      const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
      std::ifstream level_file(dir + "/level"), size_file(dir + "/size");
      std::size_t level = 0, size = 0;
      std::string unit;
      if (!(level_file >> level) || !(size_file >> size)) continue;
      size_file >> unit;  // "K" or "M" directly after the number
      if (unit == "K") size <<= 10;
      if (unit == "M") size <<= 20;
      if (level > best_level) best_level = level, best_size = size;
    }
    if (best_size > 0) return best_size;
    long l3 = -1;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return l3 > 0 ? static_cast<std::size_t>(l3) : std::size_t{32} << 20;
  }();
  return bytes;
}

StreamingStores g_streaming = StreamingStores::Auto;

// Streaming stores pay off once the output alone no longer fits the last-level cache.
bool streamingWorthIt(std::size_t output_bytes) {
  if (!kHaveStreamingStores || g_streaming == StreamingStores::Never) return false;
  return g_streaming == StreamingStores::Always || output_bytes > lastLevelCacheBytes();
}

template <int D>
void stencilKernel(const Grid& grid, const PetscScalar* xg, const PetscScalar* xl, PetscScalar* y,
                   double center, const double c[3]) {
  const bool stream = streamingWorthIt(static_cast<std::size_t>(grid.owned().count() * grid.dof()) *
                                       sizeof(PetscScalar));
  const IndexBox& o = grid.owned();
  const IndexBox& g = grid.ghosted();
  const PetscInt dof = grid.dof();
  const PetscInt run = o.size[0] * dof;
  const bool x_wraps = grid.boundary() == Boundary::Periodic && o.size[0] == grid.n(0);
  // Pointer to entry (o.start[0], j, k) of the owned row j, k if that row is owned, else
  // of the ghosted local array; both are then indexed by i * dof + c.
  // A neighbour row across a periodic boundary that this rank owns itself is read from
  // the owned array too; only rows owned by other ranks (or outside a Dirichlet domain)
  // come from the local array, whose other ghosts updateRemoteGhosts leaves unfilled.
  const bool periodic = grid.boundary() == Boundary::Periodic;
  auto wrap = [&](PetscInt i, int axis) {
    const PetscInt n = grid.n(axis);
    return periodic ? (i % n + n) % n : i;
  };
  auto row = [&](PetscInt j, PetscInt k) -> const PetscScalar* {
    const PetscInt jw = wrap(j, 1), kw = wrap(k, 2);
    const bool owned_row = jw >= o.start[1] && jw < o.start[1] + o.size[1] && kw >= o.start[2] &&
                           kw < o.start[2] + o.size[2];
    if (owned_row) return xg + ((kw - o.start[2]) * o.size[1] + (jw - o.start[1])) * run;
    return xl + (((k - g.start[2]) * g.size[1] + (j - g.start[1])) * g.size[0] +
                 (o.start[0] - g.start[0])) *
                    dof;
  };
  auto local_row = [&](PetscInt j, PetscInt k) {
    return xl + (((k - g.start[2]) * g.size[1] + (j - g.start[1])) * g.size[0] +
                 (o.start[0] - g.start[0])) *
                    dof;
  };
  PetscInt out = 0;
  for (PetscInt k = o.start[2]; k < o.start[2] + o.size[2]; ++k) {
    for (PetscInt j = o.start[1]; j < o.start[1] + o.size[1]; ++j) {
      const PetscScalar* p = row(j, k);
      const PetscScalar* ghost_row = local_row(j, k);
      const PetscScalar* ym = D > 1 ? row(j - 1, k) : nullptr;
      const PetscScalar* yp = D > 1 ? row(j + 1, k) : nullptr;
      const PetscScalar* zm = D > 2 ? row(j, k - 1) : nullptr;
      const PetscScalar* zp = D > 2 ? row(j, k + 1) : nullptr;
      PetscScalar* q = y + out;
      auto value = [&](PetscInt e, double left, double right) {
        double v = center * p[e] + c[0] * (left + right);
        if constexpr (D > 1) v += c[1] * (ym[e] + yp[e]);
        if constexpr (D > 2) v += c[2] * (zm[e] + zp[e]);
        return v;
      };
      // The first and last point of the row take their x-neighbour from the ghost row, or,
      // when this rank owns the whole periodic row, from its other end: the ghost entry
      // holds the same value, but reading it costs a cache line per row end (6% of the
      // 256^3 sweep).
      auto edge = [&](PetscInt e) {
        const PetscInt l = e - dof, r = e + dof;
        const double left = l >= 0 ? p[l] : x_wraps ? p[l + run] : ghost_row[l];
        const double right = r < run ? p[r] : x_wraps ? p[r - run] : ghost_row[r];
        q[e] = value(e, left, right);
      };
      const PetscInt body_end = std::max(run - dof, dof);
      for (PetscInt e = 0; e < std::min(dof, run); ++e) edge(e);
      if (stream)
        rowBodyStreaming<D>(p, ym, yp, zm, zp, q, dof, run - dof, dof, center, c);
      else
        rowBody<D>(p, ym, yp, zm, zp, q, dof, run - dof, dof, center, c);
      for (PetscInt e = body_end; e < run; ++e) edge(e);
      out += run;
    }
  }
#if defined(__AVX512F__)
  // Order the streamed stores before anything that reads y next.
  if (stream) _mm_sfence();
#endif
}

PetscErrorCode shellMult(Mat A, Vec x, Vec y) {
  PG_CALLBACK_BEGIN
  void* ctx = nullptr;
  PG_CALL(MatShellGetContext(A, &ctx));
  static_cast<const ShiftedLaplacian*>(ctx)->apply(x, y);
  PG_CALLBACK_END("ShiftedLaplacian::apply")
}

}  // namespace

void ShiftedLaplacian::setStreamingStores(StreamingStores policy) { g_streaming = policy; }
StreamingStores ShiftedLaplacian::streamingStores() { return g_streaming; }
bool ShiftedLaplacian::haveStreamingStores() { return kHaveStreamingStores; }

ShiftedLaplacian::ShiftedLaplacian(const Grid& grid, double alpha, double beta, std::string prefix,
                                   LinearSolveOptions solve)
    : grid_(&grid),
      alpha_(alpha),
      beta_(beta),
      prefix_(std::move(prefix)),
      solve_opts_(solve),
      local_(grid.createLocal()) {}

double ShiftedLaplacian::laplacianBound(const Grid& grid) {
  double s = 0.0;
  for (int a = 0; a < grid.dim(); ++a) s += 4.0 / (grid.h(a) * grid.h(a));
  return s;
}

void ShiftedLaplacian::apply(Vec x, Vec y) const {
  grid_->updateRemoteGhosts(x, local_);
  double c[3] = {0.0, 0.0, 0.0};
  double center = alpha_;
  for (int a = 0; a < grid_->dim(); ++a) {
    c[a] = beta_ / (grid_->h(a) * grid_->h(a));
    center -= 2.0 * c[a];
  }
  if (x == y) throw std::logic_error("ShiftedLaplacian::apply: x and y must differ");
  const PetscScalar *xl = nullptr, *xg = nullptr;
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArrayRead(local_, &xl));
  PG_CALL(VecGetArrayRead(x, &xg));
  PG_CALL(VecGetArray(y, &ya));
  switch (grid_->dim()) {
    case 1:
      stencilKernel<1>(*grid_, xg, xl, ya, center, c);
      break;
    case 2:
      stencilKernel<2>(*grid_, xg, xl, ya, center, c);
      break;
    default:
      stencilKernel<3>(*grid_, xg, xl, ya, center, c);
      break;
  }
  PG_CALL(VecRestoreArray(y, &ya));
  PG_CALL(VecRestoreArrayRead(x, &xg));
  PG_CALL(VecRestoreArrayRead(local_, &xl));
  PG_CALL(PetscLogFlops(static_cast<PetscLogDouble>(grid_->owned().count() * grid_->dof()) *
                        (2.0 + 3.0 * grid_->dim())));
}

void ShiftedLaplacian::assemble(Mat A) const {
  PG_CALL(MatZeroEntries(A));
  double c[3] = {0.0, 0.0, 0.0};
  double center = alpha_;
  for (int a = 0; a < grid_->dim(); ++a) {
    c[a] = beta_ / (grid_->h(a) * grid_->h(a));
    center -= 2.0 * c[a];
  }
  const bool dirichlet = grid_->boundary() == Boundary::ZeroDirichlet;
  forEachOwned(*grid_, [&](PetscInt i, PetscInt j, PetscInt k, PetscInt) {
    for (PetscInt comp = 0; comp < grid_->dof(); ++comp) {
      MatStencil row{};
      row.i = i;
      row.j = j;
      row.k = k;
      row.c = comp;
      MatStencil cols[7];
      PetscScalar vals[7];
      int nc = 0;
      cols[nc] = row;
      vals[nc++] = center;
      for (int a = 0; a < grid_->dim(); ++a) {
        for (int s = -1; s <= 1; s += 2) {
          MatStencil col = row;
          PetscInt* idx = a == 0 ? &col.i : (a == 1 ? &col.j : &col.k);
          *idx += s;
          if (dirichlet && (*idx < 0 || *idx >= grid_->n(a))) continue;  // zero outside
          cols[nc] = col;
          vals[nc++] = c[a];
        }
      }
      PG_CALL(MatSetValuesStencil(A, 1, &row, nc, cols, vals, ADD_VALUES));
    }
  });
  PG_CALL(MatAssemblyBegin(A, MAT_FINAL_ASSEMBLY));
  PG_CALL(MatAssemblyEnd(A, MAT_FINAL_ASSEMBLY));
}

void ShiftedLaplacian::setUpSolver() const {
  if (ksp_) return;
  const PetscInt nlocal = grid_->owned().count() * grid_->dof();
  const PetscInt nglobal = grid_->size() * grid_->dof();
  PG_CALL(MatCreateShell(grid_->comm(), nlocal, nlocal, nglobal, nglobal,
                         const_cast<ShiftedLaplacian*>(this), shell_.out()));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT, reinterpret_cast<void (*)(void)>(shellMult)));
  PG_CALL(MatShellSetOperation(shell_, MATOP_MULT_TRANSPOSE,
                               reinterpret_cast<void (*)(void)>(shellMult)));
  PG_CALL(MatSetOption(shell_, MAT_SYMMETRIC, PETSC_TRUE));

  PG_CALL(KSPCreate(grid_->comm(), ksp_.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp_, prefix_.c_str()));
  PG_CALL(KSPSetTolerances(ksp_, solve_opts_.rtol, solve_opts_.atol, PETSC_DEFAULT,
                           solve_opts_.max_it));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp_, &pc));
  // Spectrum of A lies in [alpha - max(beta,0) L, alpha + max(-beta,0) L], L = laplacianBound.
  const double lam = laplacianBound(*grid_);
  // alpha = 0, beta < 0 on a zero-Dirichlet grid is |beta| (-Delta_h), the Poisson operator:
  // SPD (the Dirichlet Laplacian has no kernel), but with a condition number that grows like
  // h^-2 and no identity part to bound it, so it takes the SPD branch with an infinite bound.
  // On a periodic grid the same operator is singular and keeps the branches below.
  const bool dirichlet_poisson =
      alpha_ == 0.0 && beta_ < 0.0 && grid_->boundary() == Boundary::ZeroDirichlet;
  if (beta_ < 0.0 && (alpha_ > 0.0 || dirichlet_poisson)) {
    // alpha I - |beta| Delta: SPD, the implicit-diffusion case, with condition number at
    // most 1 + |beta| L / alpha.  CG; the apply stays matrix-free.  Algebraic multigrid
    // on the assembled stencil pays off only for stiff steps: measured on 256^2, 2 ranks,
    // rtol 1e-13 (ms per solve, CG+Jacobi vs CG+GAMG): kappa dt/h^2 = 1: 5 vs 17;
    // 10: 16 vs 21; 100: 39 vs 33.  Hence GAMG above a condition bound of ~400
    // (kappa dt/h^2 ~ 50 in 2D), Jacobi below.  -diffusion_pc_type overrides either.
    // (beta = 0, i.e. kappa = 0, goes to the branch below: GAMG's setup breaks down on a
    // diagonal matrix in parallel, and CG needs one iteration there anyway.)
    const double condition_bound =
        alpha_ > 0.0 ? 1.0 - beta_ * lam / alpha_ : std::numeric_limits<double>::infinity();
    PG_CALL(DMCreateMatrix(grid_->dm(), pmat_.out()));
    assemble(pmat_);
    PG_CALL(KSPSetOperators(ksp_, shell_, pmat_));
    PG_CALL(KSPSetType(ksp_, KSPCG));
    PG_CALL(PCSetType(pc, condition_bound > 400.0 ? PCGAMG : PCJACOBI));
    PG_CALL(KSPSetNormType(ksp_, KSP_NORM_UNPRECONDITIONED));
  } else if (alpha_ - beta_ * lam > 0.0) {
    // alpha I + beta Delta with beta > 0 but still positive definite: well conditioned,
    // unpreconditioned CG.
    PG_CALL(KSPSetOperators(ksp_, shell_, shell_));
    PG_CALL(KSPSetType(ksp_, KSPCG));
    PG_CALL(PCSetType(pc, PCNONE));
  } else {
    // Symmetric but possibly indefinite (large explicit dt): MINRES.  A nearly singular
    // operator shows up as a stated convergence failure, never as a silent result.
    PG_CALL(KSPSetOperators(ksp_, shell_, shell_));
    PG_CALL(KSPSetType(ksp_, KSPMINRES));
    PG_CALL(PCSetType(pc, PCNONE));
  }
  PG_CALL(KSPSetFromOptions(ksp_));
  PG_CALL(KSPSetUp(ksp_));
}

void ShiftedLaplacian::checkConverged(const char* what) const {
  KSPConvergedReason reason;
  PG_CALL(KSPGetConvergedReason(ksp_, &reason));
  PG_CALL(KSPGetIterationNumber(ksp_, &last_its_));
  if (reason == KSP_DIVERGED_NANORINF) {
    throw NonFiniteError(std::string(what) + " (options prefix -" + prefix_ +
                         "): Inf or NaN in the iteration");
  }
  if (reason < 0) {
    std::ostringstream os;
    os << what << " with (" << alpha_ << ") I + (" << beta_
       << ") Laplacian did not converge: " << KSPConvergedReasons[reason] << " after " << last_its_
       << " iterations (options prefix -" << prefix_ << ")";
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  }
}

void ShiftedLaplacian::solve(Vec b, Vec x) const {
  setUpSolver();
  PG_CALL(KSPSolve(ksp_, b, x));
  checkConverged("linear solve");
}

void ShiftedLaplacian::solveTranspose(Vec b, Vec x) const {
  // A = alpha I + beta Delta_h is symmetric for both boundary types, so A^T x = b is the
  // same solve.  Using KSPSolve (not KSPSolveTranspose) keeps every preconditioner usable:
  // some (hypre's BoomerAMG) have no transpose apply.
  solve(b, x);
}

}  // namespace physgrad
