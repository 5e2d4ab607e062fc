#include "physgrad/physics/star_stencil.hpp"

#include <petscdmda.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "streaming.hpp"

namespace physgrad {
namespace {

// y = center x + m_d x[-e_d] + p_d x[+e_d] summed over the D used axes, on owned points,
// component by component (Sym: m_d = p_d, summed as m_d (x[-e_d] + x[+e_d])).  Owned
// values are read straight from the global array `xg`; only neighbours outside the owned
// box come from the ghosted local array `xl` (whose ghost entries alone are filled).  That
// keeps the traffic at one read of x and one write of y per point.  Components are
// interleaved: along x the neighbour of an entry is dof entries away, and a row of xm
// points is one contiguous run of xm * dof entries.
struct Coefficients {
  double center;
  double m[3], p[3];
};

// The value at one entry from its centre and its neighbours (l, r along x; ym, yp; zm, zp).
template <int D, bool Sym>
inline double pointValue(const Coefficients& k, double centre, double l, double r, double ym,
                         double yp, double zm, double zp) {
  double v;
  if constexpr (Sym) {
    v = k.center * centre + k.m[0] * (l + r);
    if constexpr (D > 1) v += k.m[1] * (ym + yp);
    if constexpr (D > 2) v += k.m[2] * (zm + zp);
  } else {
    v = k.center * centre + k.m[0] * l + k.p[0] * r;
    if constexpr (D > 1) v += k.m[1] * ym + k.p[1] * yp;
    if constexpr (D > 2) v += k.m[2] * zm + k.p[2] * zp;
  }
  return v;
}

// The interior of one row, e in [begin, end): no ghost values needed.  Restrict-qualified
// so that the compiler vectorises it.
template <int D, bool Sym>
void rowBody(const PetscScalar* __restrict p, const PetscScalar* __restrict ym,
             const PetscScalar* __restrict yp, const PetscScalar* __restrict zm,
             const PetscScalar* __restrict zp, PetscScalar* __restrict q, PetscInt sx, PetscInt end,
             PetscInt begin, const Coefficients& k) {
  for (PetscInt e = begin; e < end; ++e) {
    q[e] = pointValue<D, Sym>(k, p[e], p[e - sx], p[e + sx], D > 1 ? ym[e] : 0.0,
                              D > 1 ? yp[e] : 0.0, D > 2 ? zm[e] : 0.0, D > 2 ? zp[e] : 0.0);
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
template <int D, bool Sym>
void rowBodyStreaming(const PetscScalar* __restrict p, const PetscScalar* __restrict ym,
                      const PetscScalar* __restrict yp, const PetscScalar* __restrict zm,
                      const PetscScalar* __restrict zp, PetscScalar* __restrict q, PetscInt sx,
                      PetscInt end, PetscInt begin, const Coefficients& k) {
#if defined(__AVX512F__)
  constexpr PetscInt kPrefetchAhead = 512;  // entries: 4 KiB
  PetscInt e = begin;
  // Scalar entries up to the first cache-line boundary of q.
  PetscInt head = begin;
  while (head < end && (reinterpret_cast<std::uintptr_t>(q + head) & 63) != 0) ++head;
  rowBody<D, Sym>(p, ym, yp, zm, zp, q, sx, head, begin, k);
  e = head;
  const __m512d vc = _mm512_set1_pd(k.center);
  const __m512d mx = _mm512_set1_pd(k.m[0]), my = _mm512_set1_pd(k.m[1]),
                mz = _mm512_set1_pd(k.m[2]);
  const __m512d px = _mm512_set1_pd(k.p[0]), py = _mm512_set1_pd(k.p[1]),
                pz = _mm512_set1_pd(k.p[2]);
  for (; e + 8 <= end; e += 8) {
    // The rows that come from memory or the last-level cache (2D: row j + 1; 3D: the
    // planes k -+ 1) are fetched 4 KiB ahead: the hardware prefetchers alone keep too few
    // misses in flight.  Measured: 256^3 24 -> 20 ms; 4096^2 15.4-17.0 -> 13.4-15.1 ms on one
    // rank and 8.7-9.0 -> 7.7-8.1 ms on two (interleaved A/B runs).  A prefetch never
    // faults, so running past the row is harmless.
    if constexpr (D > 2) {
      _mm_prefetch(reinterpret_cast<const char*>(zm + e + kPrefetchAhead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(zp + e + kPrefetchAhead), _MM_HINT_T0);
    } else if constexpr (D == 2) {
      _mm_prefetch(reinterpret_cast<const char*>(yp + e + kPrefetchAhead), _MM_HINT_T0);
    }
    __m512d v;
    if constexpr (Sym) {
      v = _mm512_mul_pd(mx,
                        _mm512_add_pd(_mm512_loadu_pd(p + e - sx), _mm512_loadu_pd(p + e + sx)));
      v = _mm512_fmadd_pd(vc, _mm512_loadu_pd(p + e), v);
      if constexpr (D > 1)
        v = _mm512_fmadd_pd(my, _mm512_add_pd(_mm512_loadu_pd(ym + e), _mm512_loadu_pd(yp + e)), v);
      if constexpr (D > 2)
        v = _mm512_fmadd_pd(mz, _mm512_add_pd(_mm512_loadu_pd(zm + e), _mm512_loadu_pd(zp + e)), v);
    } else {
      v = _mm512_mul_pd(vc, _mm512_loadu_pd(p + e));
      v = _mm512_fmadd_pd(mx, _mm512_loadu_pd(p + e - sx), v);
      v = _mm512_fmadd_pd(px, _mm512_loadu_pd(p + e + sx), v);
      if constexpr (D > 1) {
        v = _mm512_fmadd_pd(my, _mm512_loadu_pd(ym + e), v);
        v = _mm512_fmadd_pd(py, _mm512_loadu_pd(yp + e), v);
      }
      if constexpr (D > 2) {
        v = _mm512_fmadd_pd(mz, _mm512_loadu_pd(zm + e), v);
        v = _mm512_fmadd_pd(pz, _mm512_loadu_pd(zp + e), v);
      }
    }
    _mm512_stream_pd(q + e, v);
  }
  rowBody<D, Sym>(p, ym, yp, zm, zp, q, sx, end, e, k);
#else
  rowBody<D, Sym>(p, ym, yp, zm, zp, q, sx, end, begin, k);
#endif
}

// The last-level cache a rank's kernels can count on, in bytes: the size Linux sysfs gives
// (what lscpu shows), at most 32 MiB, else 32 MiB; the ranks on a node share it.
// sysconf() is not asked, and sysfs is capped, because on the virtual machines we ran on
// both gave a whole host socket's L3, shared with other guests: sysconf 320 and 508 MiB on
// two EPYC guests, sysfs 480 MiB (for 2 cores) on a Xeon guest, where the stencil ran
// 1.3-1.7x faster with streaming stores at every size from 256^2 to 4096^2.  32 MiB is one
// Zen CCD's L3, what sysfs gave on the Zen guests.
std::size_t lastLevelCacheBytes() {
  static const std::size_t bytes = [] {
    constexpr std::size_t kCap = std::size_t{32} << 20;
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
    return best_size > 0 ? std::min(best_size, kCap) : kCap;
  }();
  return bytes;
}

StreamingStores g_streaming = StreamingStores::Auto;

}  // namespace

// Streaming stores pay off once input and output (about twice the output) of all ranks
// on the node no longer fit their shared last-level cache: y would be evicted before the
// next step reads it anyway, and writing it through the cache costs a read per line.
bool detail::streamingWorthIt(std::size_t output_bytes) {
  if (!kHaveStreamingStores || g_streaming == StreamingStores::Never) return false;
  if (g_streaming == StreamingStores::Always) return true;
  const auto ranks = static_cast<std::size_t>(Environment::ranksOnNode());
  return 2 * output_bytes * ranks > lastLevelCacheBytes();
}

namespace {

// Bytes of the three planes' rows that a 3D tile keeps in the core's cache (see
// stencilKernel): 384 KiB, a tile of 64 rows of 256 values, the best of 16, 32, 64 and 128
// rows on 256^3 (one rank, Zen 5; 1 MiB of L2 per core).
constexpr std::size_t kTileBytes = std::size_t{384} << 10;

template <int D, bool Sym>
void stencilKernel(const Grid& grid, const PetscScalar* xg, const PetscScalar* xl, PetscScalar* y,
                   const Coefficients& coef) {
  const bool stream = detail::streamingWorthIt(
      static_cast<std::size_t>(grid.owned().count() * grid.dof()) * sizeof(PetscScalar));
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
  // 3D: the rows in tiles along y, each tile swept through all planes, so that the tile's
  // rows of planes k and k - 1 are still in the core's cache when plane k + 1 reads them
  // (three whole planes of a large grid do not fit).  The rows are independent: the order
  // changes no result.
  const PetscInt tile =
      D == 3 ? std::clamp<PetscInt>(
                   static_cast<PetscInt>(kTileBytes /
                                         (3 * sizeof(PetscScalar) *
                                          static_cast<std::size_t>(std::max<PetscInt>(run, 1)))),
                   1, std::max<PetscInt>(o.size[1], 1))
             : o.size[1];
  for (PetscInt j0 = o.start[1]; j0 < o.start[1] + o.size[1]; j0 += tile)
    for (PetscInt k = o.start[2]; k < o.start[2] + o.size[2]; ++k) {
      for (PetscInt j = j0; j < std::min(j0 + tile, o.start[1] + o.size[1]); ++j) {
        const PetscInt out = ((k - o.start[2]) * o.size[1] + (j - o.start[1])) * run;
        const PetscScalar* p = row(j, k);
        const PetscScalar* ghost_row = local_row(j, k);
        const PetscScalar* ym = D > 1 ? row(j - 1, k) : nullptr;
        const PetscScalar* yp = D > 1 ? row(j + 1, k) : nullptr;
        const PetscScalar* zm = D > 2 ? row(j, k - 1) : nullptr;
        const PetscScalar* zp = D > 2 ? row(j, k + 1) : nullptr;
        PetscScalar* q = y + out;
        auto value = [&](PetscInt e, double left, double right) {
          return pointValue<D, Sym>(coef, p[e], left, right, D > 1 ? ym[e] : 0.0,
                                    D > 1 ? yp[e] : 0.0, D > 2 ? zm[e] : 0.0, D > 2 ? zp[e] : 0.0);
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
          rowBodyStreaming<D, Sym>(p, ym, yp, zm, zp, q, dof, run - dof, dof, coef);
        else
          rowBody<D, Sym>(p, ym, yp, zm, zp, q, dof, run - dof, dof, coef);
        for (PetscInt e = body_end; e < run; ++e) edge(e);
      }
    }
#if defined(__AVX512F__)
  // Order the streamed stores before anything that reads y next.
  if (stream) _mm_sfence();
#endif
}

}  // namespace

void StarStencil::setStreamingStores(StreamingStores policy) { g_streaming = policy; }
StreamingStores StarStencil::streamingStores() { return g_streaming; }
bool StarStencil::haveStreamingStores() { return kHaveStreamingStores; }
bool StarStencil::usesStreamingStores(std::size_t local_output_bytes) {
  return detail::streamingWorthIt(local_output_bytes);
}

StarStencil::StarStencil(const Grid& grid, double center, const std::array<double, 3>& minus,
                         const std::array<double, 3>& plus)
    : grid_(&grid),
      center_(center),
      minus_(minus),
      plus_(plus),
      symmetric_(minus == plus),
      local_(grid.createLocal()) {
  for (int a = grid.dim(); a < 3; ++a) minus_[a] = plus_[a] = 0.0;
}

void StarStencil::apply(Vec x, Vec y) const {
  if (x == y) throw std::logic_error("StarStencil::apply: x and y must differ");
  grid_->updateRemoteGhosts(x, local_);
  const Coefficients k{center_, {minus_[0], minus_[1], minus_[2]}, {plus_[0], plus_[1], plus_[2]}};
  const PetscScalar *xl = nullptr, *xg = nullptr;
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArrayRead(local_, &xl));
  PG_CALL(VecGetArrayRead(x, &xg));
  PG_CALL(VecGetArray(y, &ya));
  auto run = [&](auto sym) {
    constexpr bool S = decltype(sym)::value;
    switch (grid_->dim()) {
      case 1:
        stencilKernel<1, S>(*grid_, xg, xl, ya, k);
        break;
      case 2:
        stencilKernel<2, S>(*grid_, xg, xl, ya, k);
        break;
      default:
        stencilKernel<3, S>(*grid_, xg, xl, ya, k);
        break;
    }
  };
  if (symmetric_)
    run(std::true_type{});
  else
    run(std::false_type{});
  PG_CALL(VecRestoreArray(y, &ya));
  PG_CALL(VecRestoreArrayRead(x, &xg));
  PG_CALL(VecRestoreArrayRead(local_, &xl));
  PG_CALL(PetscLogFlops(static_cast<PetscLogDouble>(grid_->owned().count() * grid_->dof()) *
                        (1.0 + (symmetric_ ? 3.0 : 4.0) * grid_->dim())));
}

}  // namespace physgrad
