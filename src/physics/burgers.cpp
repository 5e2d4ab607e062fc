#include "physgrad/physics/burgers.hpp"

#include <petscksp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace physgrad {

NewtonKrylovOptions defaultSelfAdvectionInverseOptions() {
  NewtonKrylovOptions o;
  o.prefix = "burgers_inverse_";
  return o;
}

// ---------------------------------------------------------------------------------------
// The departure stencils of one state, and the Jacobian terms that come with them.

#if defined(__AVX512F__)
// GCC 12 can report the undefined placeholder operand inside its own intrinsics (extract,
// insert, broadcast, alignr) as used uninitialised, depending on what gets inlined where:
// a false positive, silenced for these kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace {
/// The scatter-add of the 2D cubic stencils of a velocity field (2 components), eight
/// points of a grid row at a time where their stencils share their rows and start at
/// consecutive nodes (a smooth velocity: all but the blocks where a component changes
/// sign).  The eight stencils then cover a window of 11 nodes per stencil row, whose sums
/// are formed in registers and added to memory once; the window's last 3 nodes are
/// carried into the next block when that one continues the run (its first 3 nodes), so
/// that no node is written twice and no load has to wait for an overlapping store.  Point
/// by point, consecutive points update 12 of the same 16 nodes, each through memory.
/// Each term is the product the point-by-point scatter forms (weight_x (weight_y value));
/// the sums run in another order.
class WindowScatter2D {
 public:
  static constexpr int kLanes = 8, kNodes = 4;

  /// True when the block's stencils (offsets [2][4][8], lane fastest) share their rows
  /// and start at consecutive nodes (2 entries apart), every row a run of 4 nodes.
  static bool fits(const PetscInt* offset, int count) {
    if (count != kLanes) return false;
    using Index = detail::Indices<kLanes>;
    Index lane{}, first, row, next;
    for (int b = 0; b < kLanes; ++b) lane[b] = b;
    std::memcpy(&first, offset, sizeof first);
    Index ok = first == first[0] + 2 * lane;
    for (int m = 1; m < kNodes; ++m) {
      std::memcpy(&next, offset + m * kLanes, sizeof next);
      ok &= next == first + 2 * m;
    }
    for (int r = 0; r < kNodes; ++r) {
      std::memcpy(&row, offset + (kNodes + r) * kLanes, sizeof row);
      ok &= row == row[0];
    }
    std::uint64_t words[sizeof(Index) / 8], all = ~std::uint64_t{0};
    std::memcpy(words, &ok, sizeof words);
    for (std::uint64_t word : words) all &= word;
    return all == ~std::uint64_t{0};
  }

  /// Adds the block's terms (value[b * 2 + c] for lane b) into z; the block must fit().
  void add(const PetscInt* offset, const double* weight, const double* value, PetscScalar* z) {
    const __m512d zero = _mm512_setzero_pd();
    PetscScalar* base[kNodes];
    bool continues = carrying_;
    for (int r = 0; r < kNodes; ++r) {
      base[r] = z + offset[0] + offset[(kNodes + r) * kLanes];
      continues = continues && base[r] == carry_at_[r];
    }
    if (!continues) flush();
    // Node pair m of lane b: weight_x[m] (weight_y[r] value[b]).  wx[b] = the 4 x weights
    // of lane b, each twice (one per component), picked from the rows of x weights 0 and 1
    // (lower half) and 2 and 3 (upper half); vp[b] = lane b's value pair, four times.
    __m512d wx[kLanes], vp[kLanes];
    {
      const __m512d w0 = _mm512_loadu_pd(weight), w1 = _mm512_loadu_pd(weight + kLanes),
                    w2 = _mm512_loadu_pd(weight + 2 * kLanes),
                    w3 = _mm512_loadu_pd(weight + 3 * kLanes);
      for (int b = 0; b < kLanes; ++b) {
        const __m512i pick = _mm512_setr_epi64(b, b, 8 + b, 8 + b, b, b, 8 + b, 8 + b);
        const __m512d lo = _mm512_permutex2var_pd(w0, pick, w1);
        const __m512d hi = _mm512_permutex2var_pd(w2, pick, w3);
        wx[b] = _mm512_insertf64x4(lo, _mm512_castpd512_pd256(hi), 1);
        vp[b] = _mm512_broadcast_f64x2(_mm_loadu_pd(value + 2 * b));
      }
    }
    for (int r = 0; r < kNodes; ++r) {
      const double* wy = weight + (kNodes + r) * kLanes;
      __m512d a0 = continues ? carry_[r] : zero, a1 = zero, a2 = zero;
      const auto term = [&](int b) {
        return _mm512_mul_pd(wx[b], _mm512_mul_pd(_mm512_set1_pd(wy[b]), vp[b]));
      };
      a0 = _mm512_add_pd(a0, term(0));
      shifted<2>(term(1), a0, a1);
      shifted<4>(term(2), a0, a1);
      shifted<6>(term(3), a0, a1);
      a1 = _mm512_add_pd(a1, term(4));
      shifted<2>(term(5), a1, a2);
      shifted<4>(term(6), a1, a2);
      shifted<6>(term(7), a1, a2);
      PetscScalar* at = base[r];
      _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), a0));
      _mm512_storeu_pd(at + 8, _mm512_add_pd(_mm512_loadu_pd(at + 8), a1));
      carry_[r] = a2;
      carry_at_[r] = at + 16;
    }
    carrying_ = true;
  }

  /// Adds the carried nodes into memory (at the end of a run).
  void flush() {
    if (!carrying_) return;
    constexpr __mmask8 kCarried = 0x3F;  // 3 nodes x 2 components
    for (int r = 0; r < kNodes; ++r) {
      PetscScalar* at = carry_at_[r];
      _mm512_mask_storeu_pd(at, kCarried,
                            _mm512_add_pd(_mm512_maskz_loadu_pd(kCarried, at), carry_[r]));
    }
    carrying_ = false;
  }

 private:
  /// lo += t moved up by S doubles, hi += the S doubles that move out of lo.
  template <int S>
  static void shifted(__m512d t, __m512d& lo, __m512d& hi) {
    const __m512i ti = _mm512_castpd_si512(t), zi = _mm512_setzero_si512();
    lo = _mm512_add_pd(lo, _mm512_castsi512_pd(_mm512_alignr_epi64(ti, zi, 8 - S)));
    hi = _mm512_add_pd(hi, _mm512_castsi512_pd(_mm512_alignr_epi64(zi, ti, 8 - S)));
  }

  __m512d carry_[kNodes];
  PetscScalar* carry_at_[kNodes] = {};
  bool carrying_ = false;
};

/// The union of the 3D cubic stencils (velocity field, 3 components) of a block of eight
/// points of a grid row.  A block fits when along each axis every stencil is a run of 4
/// adjacent nodes and the runs of the 8 points start at most one node apart (after the
/// step from point to point along x): a smooth velocity, where a component's sign change
/// inside the block moves some of the stencils by one node.  Along x the union is then a
/// window of 4 nodes per point (11 in all, 33 values from the first point's first node) or,
/// where the stencils moved, of 5 (each point's weights padded with a zero on the side it
/// did not move to); along y and z it is 4 or 5 rows and planes, 16 to 25 window rows,
/// with zero weights where a point's stencil has no row.  The window reads and writes
/// whole rows of it, so every node from its first to its last along x must lie in the
/// ghosted box: the window ends at the last point's last node (node 10, or 11 where that
/// run moved), and where the first point's run moved, the window's node 0 (no stencil's)
/// must not lie before the box.
class BlockUnion3D {
 public:
  static constexpr int kLanes = 8, kNodes = 4, kValues = 3;
  static constexpr int kMaxRows = (kNodes + 1) * (kNodes + 1);

  /// Where a block's stencils lie, from fit().
  struct Shape {
    bool fits = false;
    int x_nodes = kNodes, y_rows = kNodes, z_planes = kNodes;  // 4, or 5 where runs moved
    PetscInt first = 0;      // offset of the window's first node (x, y and z)
    __mmask8 moved[3] = {};  // lanes whose run starts one node later than the window
    __mmask8 tail = 0x01;    // window values from 32 on (node 10, or 10 and 11)
  };

  /// stride_y, stride_z: the local array's strides along y and z.
  BlockUnion3D(PetscInt stride_y, PetscInt stride_z) : stride_{kValues, stride_y, stride_z} {}

  PetscInt stride(int axis) const { return stride_[axis]; }

  /// The shape of a block's stencils (offsets [3][4][8], lane fastest); fits = false
  /// unless count is 8 and the stencils lie as the class comment says.
  Shape fit(const PetscInt* offset, int count) const {
    Shape shape;
    if (count != kLanes) return shape;
    using Index = detail::Indices<kLanes>;
    Index lane{}, start, node;
    for (int b = 0; b < kLanes; ++b) lane[b] = b;
    Index ok = lane >= 0;  // every lane
    bool inside = true;
    for (int a = 0; a < 3; ++a) {
      const PetscInt* o = offset + a * kNodes * kLanes;
      std::memcpy(&start, o, sizeof start);
      for (int m = 1; m < kNodes; ++m) {
        std::memcpy(&node, o + m * kLanes, sizeof node);
        ok &= node == start + m * stride_[a];
      }
      // The run's start, less the step from point to point along x.
      const Index home = a == 0 ? start - kValues * lane : start;
      PetscInt lowest = home[0];
      for (int b = 1; b < kLanes; ++b) lowest = std::min(lowest, home[b]);
      const Index moved = home == lowest + stride_[a];
      ok &= (home == lowest) | moved;
      shape.first += lowest;
      if (a == 0) inside = lowest >= 0;  // x offsets count from the box's first node
      __mmask8 mask = 0;
      for (int b = 0; b < kLanes; ++b)
        if (moved[b]) mask = static_cast<__mmask8>(mask | (1u << b));
      shape.moved[a] = mask;
      const int extent = mask != 0 ? kNodes + 1 : kNodes;
      (a == 0 ? shape.x_nodes : (a == 1 ? shape.y_rows : shape.z_planes)) = extent;
    }
    std::uint64_t words[sizeof(Index) / 8], all = ~std::uint64_t{0};
    std::memcpy(words, &ok, sizeof words);
    for (std::uint64_t word : words) all &= word;
    shape.fits = all == ~std::uint64_t{0} && inside;
    shape.tail = (shape.moved[0] & 0x80) != 0 ? 0x0F : 0x01;
    return shape;
  }

  /// The lane vector of an axis's weights (or slopes; [4][8], lane fastest) at the
  /// window's node `at`: lanes in `moved` take their node at - 1, nodes outside a lane's
  /// stencil give 0.  extent: the window's nodes along the axis.
  static __m512d windowWeight(const double* weight, int at, __mmask8 moved, int extent) {
    const __m512d zero = _mm512_setzero_pd();
    if (extent == kNodes) return _mm512_loadu_pd(weight + at * kLanes);
    const __m512d same = at < kNodes ? _mm512_loadu_pd(weight + at * kLanes) : zero;
    const __m512d later = at > 0 ? _mm512_loadu_pd(weight + (at - 1) * kLanes) : zero;
    return _mm512_mask_blend_pd(moved, same, later);
  }

 private:
  PetscInt stride_[3];
};

/// The scatter-add of the 3D cubic stencils of a block of 8 points that fits a
/// BlockUnion3D, summed in registers over the union of their stencils.
///
/// Along every window row, point b adds alpha_b(row) T_b: T_b holds its products
/// weight_x[m] value[c] (the same in all rows), alpha_b(row) = weight_z weight_y of the
/// row.  T_b is placed at window position 3b once per block (19 or 22 vectors that are not
/// all zero, over the 8 points), so a row costs that many multiply-adds with broadcast
/// alphas and a read and write of 3 vectors; point by point it is 16 rows of
/// read-modify-writes that overlap the previous point's.  The window's positions from 24
/// on (the last 3 or 4 nodes) are carried into the next block when that one continues the
/// run (the same rows, 8 nodes further), as in WindowScatter2D.  Each term is (weight_z
/// weight_y) (weight_x value), the point-by-point scatter's product associated otherwise,
/// and the sums run in another order.  The padding's zero weights multiply the values too,
/// so a non-finite adjoint value also reaches the nodes next to its stencil.
class WindowScatter3D {
 public:
  using Shape = BlockUnion3D::Shape;
  static constexpr int kLanes = BlockUnion3D::kLanes, kNodes = BlockUnion3D::kNodes,
                       kValues = BlockUnion3D::kValues;

  explicit WindowScatter3D(const BlockUnion3D& blocks) : blocks_(&blocks) {}

  /// Adds the block's terms (value[b * 3 + c] for lane b) into z; shape = fit(offset, 8).
  void add(const Shape& shape, const double* weight, const double* value, PetscScalar* z) {
    if (shape.x_nodes == kNodes)
      addPlaced<kNodes>(shape, weight, value, z);
    else
      addPlaced<kNodes + 1>(shape, weight, value, z);
  }

  /// Adds the carried nodes into memory (at the end of a run).
  void flush() {
    if (!carrying_) return;
    for (int row = 0; row < rows_; ++row) {
      PetscScalar* at = carry_at_ + row_offset_[row];
      _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), carry_[row][0]));
      _mm512_mask_storeu_pd(
          at + 8, carry_mask_,
          _mm512_add_pd(_mm512_maskz_loadu_pd(carry_mask_, at + 8), carry_[row][1]));
    }
    carrying_ = false;
  }

 private:
  static constexpr int kWindowVectors = 5;  // up to 36 values
  static constexpr int kMaxRows = BlockUnion3D::kMaxRows;

  /// slot[b][j]: where T_b's part in window vector j is kept, -1 where it has none (T_b
  /// covers positions 3b to 3b + 3X - 1); count: the parts that are kept.
  template <int X>
  struct Placement {
    int slot[kLanes][kWindowVectors] = {};
    int count = 0;
    constexpr Placement() {
      for (int b = 0; b < kLanes; ++b)
        for (int j = 0; j < kWindowVectors; ++j)
          slot[b][j] = (8 * j < kValues * (b + X) && kValues * b < 8 * (j + 1)) ? count++ : -1;
    }
  };

  template <int X>
  void addPlaced(const Shape& shape, const double* weight, const double* value, PetscScalar* z) {
    static constexpr Placement<X> kPlace{};
    const int rows = shape.y_rows * shape.z_planes;
    PetscScalar* base = z + shape.first;
    const bool continues =
        carrying_ && base == carry_at_ && rows == rows_ && shape.y_rows == y_rows_;
    if (!continues) {
      flush();
      rows_ = rows;
      y_rows_ = shape.y_rows;
      for (int kz = 0; kz < shape.z_planes; ++kz)
        for (int ky = 0; ky < shape.y_rows; ++ky)
          row_offset_[kz * shape.y_rows + ky] = kz * blocks_->stride(2) + ky * blocks_->stride(1);
    }
    // alpha[row][b] = weight_z weight_y of lane b in window row (ky, kz).
    alignas(64) double alpha[kMaxRows][kLanes];
    {
      __m512d wy[kNodes + 1];
      for (int ky = 0; ky < shape.y_rows; ++ky)
        wy[ky] =
            BlockUnion3D::windowWeight(weight + kNodes * kLanes, ky, shape.moved[1], shape.y_rows);
      for (int kz = 0; kz < shape.z_planes; ++kz) {
        const __m512d wz = BlockUnion3D::windowWeight(weight + 2 * kNodes * kLanes, kz,
                                                      shape.moved[2], shape.z_planes);
        for (int ky = 0; ky < shape.y_rows; ++ky)
          _mm512_store_pd(alpha[kz * shape.y_rows + ky], _mm512_mul_pd(wz, wy[ky]));
      }
    }
    // T_b (3X products, node-major) as two vectors, then placed at window position 3b.
    __m512d wx[kNodes + 1];
    for (int m = 0; m < X; ++m) wx[m] = BlockUnion3D::windowWeight(weight, m, shape.moved[0], X);
    for (int m = X; m < kNodes + 1; ++m) wx[m] = _mm512_setzero_pd();
    double padded[kLanes * kValues + kLanes] = {};
    std::memcpy(padded, value, sizeof(double) * kLanes * kValues);
    const __m512i values_lo = _mm512_setr_epi64(0, 1, 2, 0, 1, 2, 0, 1);
    const __m512i values_hi = _mm512_setr_epi64(2, 0, 1, 2, 0, 1, 2, 0);
    const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    constexpr __mmask8 kHiValid = X == kNodes ? 0x0F : 0x7F;  // T_b elements 8 to 3X - 1
    __m512d placed[kPlace.count];
#pragma GCC unroll 8
    for (int b = 0; b < kLanes; ++b) {
      const __m512d v = _mm512_loadu_pd(padded + kValues * b);
      const __m512i lo_nodes = _mm512_setr_epi64(b, b, b, 8 + b, 8 + b, 8 + b, b, b);
      const __m512i hi_nodes = _mm512_setr_epi64(b, 8 + b, 8 + b, 8 + b, b, b, b, b);
      const __m512d wlo = _mm512_mask_blend_pd(0xC0, _mm512_permutex2var_pd(wx[0], lo_nodes, wx[1]),
                                               _mm512_permutexvar_pd(lo_nodes, wx[2]));
      const __m512d whi = _mm512_mask_blend_pd(0xF0, _mm512_permutex2var_pd(wx[2], hi_nodes, wx[3]),
                                               _mm512_permutexvar_pd(hi_nodes, wx[4]));
      const __m512d tlo = _mm512_mul_pd(wlo, _mm512_permutexvar_pd(values_lo, v));
      const __m512d thi = _mm512_maskz_mul_pd(kHiValid, whi, _mm512_permutexvar_pd(values_hi, v));
#pragma GCC unroll 5
      for (int j = 0; j < kWindowVectors; ++j) {
        const int slot = kPlace.slot[b][j];
        if (slot < 0) continue;
        // window position 8 j + e holds T_b element 8 j + e - 3 b where that is 0 to 3X - 1
        const int shift = 8 * j - kValues * b;
        const int lo = std::max(0, -shift), hi = std::min(8, kValues * X - shift);
        const __mmask8 mask = static_cast<__mmask8>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        placed[slot] = _mm512_maskz_permutex2var_pd(
            mask, tlo, _mm512_add_epi64(iota, _mm512_set1_epi64(shift)), thi);
      }
    }
    const __m512d zero = _mm512_setzero_pd();
    for (int row = 0; row < rows; ++row) {
      __m512d acc[kWindowVectors] = {continues ? carry_[row][0] : zero,
                                     continues ? carry_[row][1] : zero, zero, zero, zero};
#pragma GCC unroll 8
      for (int b = 0; b < kLanes; ++b) {
        const __m512d a = _mm512_set1_pd(alpha[row][b]);
#pragma GCC unroll 5
        for (int j = 0; j < kWindowVectors; ++j)
          if (kPlace.slot[b][j] >= 0)
            acc[j] = _mm512_fmadd_pd(a, placed[kPlace.slot[b][j]], acc[j]);
      }
      PetscScalar* at = base + row_offset_[row];
      for (int j = 0; j < 3; ++j)
        _mm512_storeu_pd(at + 8 * j, _mm512_add_pd(_mm512_loadu_pd(at + 8 * j), acc[j]));
      carry_[row][0] = acc[3];
      carry_[row][1] = acc[4];
    }
    carry_at_ = base + 24;
    carry_mask_ = shape.tail;
    carrying_ = true;
  }

  const BlockUnion3D* blocks_;
  __m512d carry_[kMaxRows][2];
  PetscInt row_offset_[kMaxRows] = {};
  PetscScalar* carry_at_ = nullptr;  // the carried window's first node (its row 0)
  int rows_ = 0, y_rows_ = 0;
  __mmask8 carry_mask_ = 0;
  bool carrying_ = false;
};

/// The value and the Jacobian terms forwardAndJacobianOnePass forms for a block of 8
/// points that fits a BlockUnion3D (x_nodes = X), with the points as vector lanes.  Each
/// window row is read once (5 vectors), split into its components with a node per lane
/// (nodes 0 to 7, and the rest), and node m of every lane's stencil is one shift of those;
/// the sums along x come first, per row (sum_m weight_x u and sum_m slope_x u), then the
/// rows' sums weighted by weight_z weight_y (value, d/dx), slope_y weight_z (d/dy) and
/// weight_y slope_z (d/dz).  The point-by-point kernel sums along y, then z, then x: the
/// same interpolant, summed in another order (the numbers agree to the last few bits).
/// out: the 8 points' component triples; jac: their terms with the points as lanes,
/// jac[(c * 3 + a) * 8 + b] = dq_du[a] d u_c / d q_a of point b.
template <int X>
inline void gatherAndGradientLanesX(const BlockUnion3D& blocks, const BlockUnion3D::Shape& shape,
                                    const double* weight, const double* slope,
                                    const PetscScalar* local, const double* dq_du, PetscScalar* out,
                                    double* jac) {
  constexpr int L = BlockUnion3D::kLanes, N = BlockUnion3D::kNodes, C = 3;
  using U = BlockUnion3D;
  __m512d wx[X], sx[X];
  for (int m = 0; m < X; ++m) {
    wx[m] = U::windowWeight(weight, m, shape.moved[0], X);
    sx[m] = U::windowWeight(slope, m, shape.moved[0], X);
  }
  // The rows' factors, lane-wise: alpha[0] = weight_z weight_y, alpha[1] = weight_z
  // slope_y, alpha[2] = slope_z weight_y (kept in memory: the registers go to the sums).
  alignas(64) double alpha[3][U::kMaxRows][L];
  {
    __m512d wy[N + 1], sy[N + 1];
    for (int k = 0; k < shape.y_rows; ++k) {
      wy[k] = U::windowWeight(weight + N * L, k, shape.moved[1], shape.y_rows);
      sy[k] = U::windowWeight(slope + N * L, k, shape.moved[1], shape.y_rows);
    }
    for (int kz = 0; kz < shape.z_planes; ++kz) {
      const __m512d wz = U::windowWeight(weight + 2 * N * L, kz, shape.moved[2], shape.z_planes);
      const __m512d sz = U::windowWeight(slope + 2 * N * L, kz, shape.moved[2], shape.z_planes);
      for (int ky = 0; ky < shape.y_rows; ++ky) {
        const int row = kz * shape.y_rows + ky;
        _mm512_store_pd(alpha[0][row], _mm512_mul_pd(wz, wy[ky]));
        _mm512_store_pd(alpha[1][row], _mm512_mul_pd(wz, sy[ky]));
        _mm512_store_pd(alpha[2][row], _mm512_mul_pd(sz, wy[ky]));
      }
    }
  }
  // Component c of nodes 0 to 7 (values 3n + c of the row's first 24) ...
  const __m512i first_c[C] = {_mm512_setr_epi64(0, 3, 6, 9, 12, 15, 0, 0),
                              _mm512_setr_epi64(1, 4, 7, 10, 13, 0, 0, 0),
                              _mm512_setr_epi64(2, 5, 8, 11, 14, 0, 0, 0)};
  const __m512i last_c[C] = {_mm512_setr_epi64(0, 0, 0, 0, 0, 0, 2, 5),
                             _mm512_setr_epi64(0, 0, 0, 0, 0, 0, 3, 6),
                             _mm512_setr_epi64(0, 0, 0, 0, 0, 1, 4, 7)};
  const __mmask8 last_mask[C] = {0xC0, 0xE0, 0xE0};
  // ... and of nodes 8 to 11 (values 24 on).
  const __m512i tail_c[C] = {_mm512_setr_epi64(0, 3, 6, 9, 0, 0, 0, 0),
                             _mm512_setr_epi64(1, 4, 7, 10, 0, 0, 0, 0),
                             _mm512_setr_epi64(2, 5, 8, 11, 0, 0, 0, 0)};
  const __m512d zero = _mm512_setzero_pd();
  __m512d value[C] = {zero, zero, zero}, gx[C] = {zero, zero, zero}, gy[C] = {zero, zero, zero},
          gz[C] = {zero, zero, zero};
  const PetscScalar* base = local + shape.first;
  for (int kz = 0; kz < shape.z_planes; ++kz) {
    for (int ky = 0; ky < shape.y_rows; ++ky) {
      const PetscScalar* row = base + kz * blocks.stride(2) + ky * blocks.stride(1);
      const __m512d r0 = _mm512_loadu_pd(row), r1 = _mm512_loadu_pd(row + L),
                    r2 = _mm512_loadu_pd(row + 2 * L), r3 = _mm512_loadu_pd(row + 3 * L),
                    r4 = _mm512_maskz_loadu_pd(shape.tail, row + 4 * L);
      const int at = kz * shape.y_rows + ky;
      const __m512d alpha_w = _mm512_load_pd(alpha[0][at]), alpha_y = _mm512_load_pd(alpha[1][at]),
                    alpha_z = _mm512_load_pd(alpha[2][at]);
#pragma GCC unroll 3
      for (int c = 0; c < C; ++c) {
        const __m512d lo = _mm512_mask_permutexvar_pd(_mm512_permutex2var_pd(r0, first_c[c], r1),
                                                      last_mask[c], last_c[c], r2);
        const __m512d hi = _mm512_permutex2var_pd(r3, tail_c[c], r4);
        const auto node = [&](auto m) {  // node m of every lane's stencil
          constexpr int M = decltype(m)::value;
          if constexpr (M == 0)
            return lo;
          else
            return _mm512_castsi512_pd(
                _mm512_alignr_epi64(_mm512_castpd_si512(hi), _mm512_castpd_si512(lo), M));
        };
        __m512d along = _mm512_mul_pd(wx[0], lo), slope_x = _mm512_mul_pd(sx[0], lo);
        const auto next = [&](auto m) {
          constexpr int M = decltype(m)::value;
          if constexpr (M < X) {
            const __m512d u = node(m);
            along = _mm512_fmadd_pd(wx[M], u, along);
            slope_x = _mm512_fmadd_pd(sx[M], u, slope_x);
          }
        };
        next(std::integral_constant<int, 1>{});
        next(std::integral_constant<int, 2>{});
        next(std::integral_constant<int, 3>{});
        next(std::integral_constant<int, 4>{});
        value[c] = _mm512_fmadd_pd(alpha_w, along, value[c]);
        gx[c] = _mm512_fmadd_pd(alpha_w, slope_x, gx[c]);
        gy[c] = _mm512_fmadd_pd(alpha_y, along, gy[c]);
        gz[c] = _mm512_fmadd_pd(alpha_z, along, gz[c]);
      }
    }
  }
  detail::Doubles<L> lanes[C];
  std::memcpy(lanes, value, sizeof lanes);
  storeComponentLanes<C, L>(lanes, out);
  const __m512d dq[C] = {_mm512_set1_pd(dq_du[0]), _mm512_set1_pd(dq_du[1]),
                         _mm512_set1_pd(dq_du[2])};
  for (int c = 0; c < C; ++c) {
    _mm512_storeu_pd(jac + (c * C + 0) * L, _mm512_mul_pd(dq[0], gx[c]));
    _mm512_storeu_pd(jac + (c * C + 1) * L, _mm512_mul_pd(dq[1], gy[c]));
    _mm512_storeu_pd(jac + (c * C + 2) * L, _mm512_mul_pd(dq[2], gz[c]));
  }
}

/// gatherAndGradientLanesX for the block's window width along x.
inline void gatherAndGradientLanes3(const BlockUnion3D& blocks, const BlockUnion3D::Shape& shape,
                                    const double* weight, const double* slope,
                                    const PetscScalar* local, const double* dq_du, PetscScalar* out,
                                    double* jac) {
  if (shape.x_nodes == BlockUnion3D::kNodes)
    gatherAndGradientLanesX<BlockUnion3D::kNodes>(blocks, shape, weight, slope, local, dq_du, out,
                                                  jac);
  else
    gatherAndGradientLanesX<BlockUnion3D::kNodes + 1>(blocks, shape, weight, slope, local, dq_du,
                                                      out, jac);
}

/// gatherAndGradientAtComponents<2, 4, 2, 8> (WithGradient; else gatherAtComponents) and
/// the Jacobian terms of forwardAndJacobianOnePass for the 8 points of a block that
/// WindowScatter2D::fits, with the points as the lanes of the vectors: node m of stencil
/// row r of every lane is one strided read of the window, and the column sums, the
/// weighted node sums and the products are lane-wise, in the order of the point-by-point
/// kernel (a product first, then fused multiply-adds).  That kernel's compiled code fuses
/// its products where the compiler chooses, so the two can differ in the last bit; the
/// plain and the recording forward both take this path for such blocks and agree bit for
/// bit.  out: the 8 points' value pairs; jac: their 2 x 2 terms with the points as lanes,
/// jac[(c * 2 + a) * 8 + b] = dq_du[a] d u_c / d q_a of point b.
template <bool WithGradient>
inline void gatherAndGradientLanes(const PetscInt* offset, const double* weight,
                                   const double* slope, const PetscScalar* local,
                                   const double* dq_du, PetscScalar* out, double* jac) {
  constexpr int L = WindowScatter2D::kLanes, N = WindowScatter2D::kNodes;
  const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
  // cw[m][c] = sum_r wy_r u(r, m, c), cs[m][c] = sum_r sy_r u(r, m, c), lane by lane.
  __m512d cw[N][2], cs[N][2];
  for (int r = 0; r < N; ++r) {
    const PetscScalar* row = local + offset[0] + offset[(N + r) * L];
    const __m512d wy = _mm512_loadu_pd(weight + (N + r) * L);
    for (int m = 0; m < N; ++m) {
      const __m512d lo = _mm512_loadu_pd(row + 2 * m), hi = _mm512_loadu_pd(row + 2 * m + L);
      const __m512d u[2] = {_mm512_permutex2var_pd(lo, even, hi),
                            _mm512_permutex2var_pd(lo, odd, hi)};
      for (int c = 0; c < 2; ++c) {
        cw[m][c] = r == 0 ? _mm512_mul_pd(wy, u[c]) : _mm512_fmadd_pd(wy, u[c], cw[m][c]);
        if constexpr (WithGradient) {
          const __m512d sy = _mm512_loadu_pd(slope + (N + r) * L);
          cs[m][c] = r == 0 ? _mm512_mul_pd(sy, u[c]) : _mm512_fmadd_pd(sy, u[c], cs[m][c]);
        }
      }
    }
  }
  __m512d value[2], gx[2], gy[2];
  for (int c = 0; c < 2; ++c) {
    const __m512d wx0 = _mm512_loadu_pd(weight);
    value[c] = _mm512_mul_pd(wx0, cw[0][c]);
    if constexpr (WithGradient) {
      gx[c] = _mm512_mul_pd(_mm512_loadu_pd(slope), cw[0][c]);
      gy[c] = _mm512_mul_pd(wx0, cs[0][c]);
    }
    for (int m = 1; m < N; ++m) {
      const __m512d wx = _mm512_loadu_pd(weight + m * L);
      value[c] = _mm512_fmadd_pd(wx, cw[m][c], value[c]);
      if constexpr (WithGradient) {
        gx[c] = _mm512_fmadd_pd(_mm512_loadu_pd(slope + m * L), cw[m][c], gx[c]);
        gy[c] = _mm512_fmadd_pd(wx, cs[m][c], gy[c]);
      }
    }
  }
  // Lanes back to points: value pairs.  The Jacobian terms stay lane-major.
  const __m512i first = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
  const __m512i second = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  _mm512_storeu_pd(out, _mm512_permutex2var_pd(value[0], first, value[1]));
  _mm512_storeu_pd(out + L, _mm512_permutex2var_pd(value[0], second, value[1]));
  if constexpr (!WithGradient) return;
  const __m512d dq0 = _mm512_set1_pd(dq_du[0]), dq1 = _mm512_set1_pd(dq_du[1]);
  _mm512_storeu_pd(jac, _mm512_mul_pd(dq0, gx[0]));
  _mm512_storeu_pd(jac + L, _mm512_mul_pd(dq1, gy[0]));
  _mm512_storeu_pd(jac + 2 * L, _mm512_mul_pd(dq0, gx[1]));
  _mm512_storeu_pd(jac + 3 * L, _mm512_mul_pd(dq1, gy[1]));
}
}  // namespace
#pragma GCC diagnostic pop
#endif

namespace {
/// out[a] = sum_c g[c * D + a] value[c]: the Jacobian terms' share of the adjoint at one
/// point, from its G (g[c * D + a] = G[c][a]).
template <int D>
inline void jacobianTransposeAt(const double* g, const double* value, PetscScalar* out) {
  for (int a = 0; a < D; ++a) {
    double sum = 0.0;
    for (int c = 0; c < D; ++c) sum += g[c * D + a] * value[c];
    out[a] = sum;
  }
}
}  // namespace

namespace {
/// jacobianTransposeAt<D> for a block of 8 points whose terms are stored with the points
/// as lanes (jac[(c * D + a) * 8 + b] = G[c][a] of point b; value and out: the points'
/// component pairs or triples): the same products, summed in the same order, lane-wise.
template <int D>
inline void jacobianTransposeLanes(const double* jac, const double* value, PetscScalar* out) {
  constexpr int L = 8;
  using Real = detail::Doubles<L>;
  Real v[D], o[D], g;
  loadComponentLanes<D, L>(value, L, v);
  for (int a = 0; a < D; ++a) {
    std::memcpy(&g, jac + a * L, sizeof g);
    o[a] = g * v[0];
    for (int c = 1; c < D; ++c) {
      std::memcpy(&g, jac + (c * D + a) * L, sizeof g);
      o[a] += g * v[c];
    }
  }
  storeComponentLanes<D, L>(o, out);
}

}  // namespace

class SelfAdvectionStep::Linearisation {
  // Over the stencils of the owned points: the reach (nodes from home), departure distance
  // (cells), CFL, and a non-finite flag; reduced over the ranks by reduceAndCheck.
  struct Maxima {
    double reach = 0.0, cells = 0.0, cfl = 0.0, nonfinite = 0.0;
  };

 public:
  /// `signed_dt` is +dt for the forward step and -dt for the backwards one.
  Linearisation(const Grid& grid, const CornerGhostExchange& exchange, Interpolation kind,
                double signed_dt)
      : grid_(&grid),
        exchange_(&exchange),
        layout_(grid),
        kind_(kind),
        signed_dt_(signed_dt),
        nodes_(nodesPerAxis(kind)),
        local_(exchange.createLocal()),
        point_(grid.createGlobal()) {
    for (int a = 0; a < grid.dim(); ++a) dq_du_[a] = -signed_dt / grid.h(a);
  }

  /// Departure points and stencils of the state x (collective).  Throws NonFiniteError if
  /// x is not finite and CflError if a stencil reaches beyond the ghost layers; either way
  /// on every rank, and the linearisation is then invalid.
  void build(Vec x, const std::string& scheme) {
    if (offset_.empty()) allocateTables();
    forEachStencil<true>(
        x, scheme,
        [&](auto d, auto n, auto s, PetscInt p, const PetscInt* off, const double* w,
            const double* slope, const std::uint8_t* inside, const PetscScalar*) {
          constexpr int D = decltype(d)::value, N = decltype(n)::value, S = decltype(s)::value;
          const size_t at = static_cast<size_t>(p * D * N);
          for (int e = 0; e < D * N; ++e) {
            offset_[at + e] = off[e * S];
            weight_[at + e] = w[e * S];
            slope_[at + e] = slope[e * S];
          }
          for (int a = 0; a < D; ++a) inside_[static_cast<size_t>(p * D + a)] = inside[a * S];
        });
    PG_CALL(VecCopy(x, point_));
    valid_ = true;
  }

  /// The adjoint at the state x in one pass over the points, without tables: each stencil
  /// is built, used and dropped.  gather^T values and G^T values per point are the numbers
  /// scatterAddWithJacobianTranspose after build(x) gives, for a fraction of the memory
  /// traffic.  A reverse sweep meets every state once, so it has
  /// no use for the tables; this leaves no linearisation behind.  Throws like build().
  ///
  /// Here gtw is the adjoint's global array and local its scatter target, added into gtw
  /// along the sweep (SweepAccumulator; `zeroed`: local is all zero on entry): on return
  /// gtw holds G^T values plus the owned part of gather^T values, and only the ghost
  /// entries of local remain to be summed into their owners
  /// (CornerGhostExchange::addGhostsToGlobal) and zeroed (zeroGhostEntries).
  void adjointOnePass(Vec x, const std::string& scheme, const PetscScalar* values,
                      PetscScalar* local, PetscScalar* gtw, bool zeroed) {
    SweepAccumulator sum(layout_, grid_->spec().stencil_width, local, gtw, zeroed);
#if defined(__AVX512F__)
    // Cubic blocks that fit a window: the Jacobian terms 8 at a time as the recording
    // forward forms them, the scatter-add in the window, as the recorded adjoint does.
    WindowScatter2D window;
    const BlockUnion3D blocks3(layout_.stride(1), layout_.stride(2));
    WindowScatter3D window3(blocks3);
#endif
    forEachStencil<true, false, true>(
        x, scheme,
        [&](auto d, auto n, auto s, PetscInt p, int count, const auto& block,
            const PetscScalar* xl) {
          constexpr int D = decltype(d)::value, N = decltype(n)::value, S = decltype(s)::value;
#if defined(__AVX512F__)
          if constexpr (D == 2 && N == 4 && S == WindowScatter2D::kLanes) {
            if (WindowScatter2D::fits(block.offset, count)) {
              double value[S * D], jac[S * D * D], interpolated[S * D];
              for (int e = 0; e < S * D; ++e) value[e] = values[p * D + e];
              gatherAndGradientLanes<true>(block.offset, block.weight, block.slope, xl, dq_du_,
                                           interpolated, jac);
              window.add(block.offset, block.weight, value, local);
              jacobianTransposeLanes<D>(jac, value, gtw + p * D);
              return;
            }
            window.flush();
          } else if constexpr (D == 3 && N == 4 && S == BlockUnion3D::kLanes) {
            const BlockUnion3D::Shape shape = blocks3.fit(block.offset, count);
            if (shape.fits) {
              double value[S * D], jac[S * D * D], interpolated[S * D];
              for (int e = 0; e < S * D; ++e) value[e] = values[p * D + e];
              gatherAndGradientLanes3(blocks3, shape, block.weight, block.slope, xl, dq_du_,
                                      interpolated, jac);
              window3.add(shape, block.weight, value, local);
              jacobianTransposeLanes<D>(jac, value, gtw + p * D);
              return;
            }
            window3.flush();
          }
#endif
          for (int b = 0; b < count; ++b)
            adjointAt<D, N, S>(p + b, block.offset + b, block.weight + b, block.slope + b, xl,
                               values, local, gtw);
        },
        [&](PetscInt line) {
#if defined(__AVX512F__)
          window.flush();  // before earlier lines are finished
          window3.flush();
#endif
          sum.beginLine(line);
        });
#if defined(__AVX512F__)
    window.flush();
    window3.flush();
#endif
    sum.finishOwned();
  }

  /// The step itself in one pass over the points, without tables: out[p * dim + c] = the
  /// state's component c interpolated at the departure point of p, the numbers build(x)
  /// then gather() would give.  A forward is followed by a linearisation at the same state
  /// only in a Newton solve, so the tables are built on demand (linearise) instead.  Leaves
  /// no linearisation behind; throws like build().
  void forwardOnePass(Vec x, const std::string& scheme, PetscScalar* out) {
    forEachStencil<false, false, true>(
        x, scheme,
        [&](auto d, auto n, auto s, PetscInt p, int count, const auto& block,
            const PetscScalar* xl) {
          constexpr int D = decltype(d)::value, N = decltype(n)::value, S = decltype(s)::value;
#if defined(__AVX512F__)
          if constexpr (D == 2 && N == 4 && S == WindowScatter2D::kLanes) {
            // The same numbers as forwardAndJacobianOnePass gives for this block.
            if (WindowScatter2D::fits(block.offset, count)) {
              gatherAndGradientLanes<false>(block.offset, block.weight, nullptr, xl, nullptr,
                                            out + p * D, nullptr);
              return;
            }
          }
#endif
          for (int b = 0; b < count; ++b)
            gatherAtComponents<D, N, D, S>(block.offset + b, block.weight + b, xl,
                                           out + (p + b) * D);
        });
  }

  /// forwardOnePass (its numbers; in 3D up to the last bit, see
  /// gatherAndGradientAtComponents), and the Jacobian terms in the same walk over each
  /// stencil: jac[(p * dim + c) * dim + a] = G[p][c][a], the numbers jacobian() gives after
  /// build(x).  In 2D and 3D, in a full block of 8 points (p0 to p0 + 7), the block's terms
  /// are stored with the points as lanes instead: jac[p0 * dim^2 + (c * dim + a) * 8 + p -
  /// p0] (the layout adjointOnePassWithJacobian reads; jacobianInLanes).
  void forwardAndJacobianOnePass(Vec x, const std::string& scheme, PetscScalar* out, double* jac) {
#if defined(__AVX512F__)
    const BlockUnion3D blocks3(layout_.stride(1), layout_.stride(2));
#endif
    forEachStencil<true, false, true>(
        x, scheme,
        [&](auto d, auto n, auto s, PetscInt p, int count, const auto& block,
            const PetscScalar* xl) {
          constexpr int D = decltype(d)::value, N = decltype(n)::value, S = decltype(s)::value;
#if defined(__AVX512F__)
          if constexpr (D == 2 && N == 4 && S == WindowScatter2D::kLanes) {
            if (WindowScatter2D::fits(block.offset, count)) {
              gatherAndGradientLanes<true>(block.offset, block.weight, block.slope, xl, dq_du_,
                                           out + p * D, jac + p * D * D);
              return;
            }
          } else if constexpr (D == 3 && N == 4 && S == BlockUnion3D::kLanes) {
            const BlockUnion3D::Shape shape = blocks3.fit(block.offset, count);
            if (shape.fits) {
              gatherAndGradientLanes3(blocks3, shape, block.weight, block.slope, xl, dq_du_,
                                      out + p * D, jac + p * D * D);
              return;
            }
          }
#endif
          // Entries of G apart in jac, and the distance between points.
          const bool lanes = jacobianInLanes<D, S>(count);
          const int entry = lanes ? S : 1, point = lanes ? 1 : D * D;
          for (int b = 0; b < count; ++b) {
            double grad[D * D];  // grad[c * D + a] = d u_c / d q_a
            gatherAndGradientAtComponents<D, N, D, S>(block.offset + b, block.weight + b,
                                                      block.slope + b, xl, out + (p + b) * D, grad);
            double* g = jac + p * D * D + b * point;
            for (int c = 0; c < D; ++c)
              for (int a = 0; a < D; ++a) g[(c * D + a) * entry] = dq_du_[a] * grad[c * D + a];
          }
        });
  }

  /// True where forwardAndJacobianOnePass stores a block's Jacobian terms with the points
  /// as lanes: full blocks of 8 in 2D and 3D (their transposed product is then lane-wise).
  template <int D, int S>
  static constexpr bool jacobianInLanes(int count) {
    return D >= 2 && S == 8 && count == S;
  }

  /// adjointOnePass with the Jacobian terms read from jac (forwardAndJacobianOnePass at the
  /// same x) instead of computed: the same numbers, without the slopes and without the
  /// gradient's reads of the state.
  void adjointOnePassWithJacobian(Vec x, const std::string& scheme, const double* jac,
                                  const PetscScalar* values, PetscScalar* local, PetscScalar* gtw,
                                  bool zeroed) {
    SweepAccumulator sum(layout_, grid_->spec().stencil_width, local, gtw, zeroed);
    windowed_blocks_ = widened_blocks_ = blocks_ = 0;
#if defined(__AVX512F__)
    WindowScatter2D window;
    const BlockUnion3D blocks3(layout_.stride(1), layout_.stride(2));
    WindowScatter3D window3(blocks3);
#endif
    forEachStencil<false, true, true>(
        x, scheme,
        [&](auto d, auto n, auto s, PetscInt p, int count, const auto& block, const PetscScalar*) {
          constexpr int D = decltype(d)::value, N = decltype(n)::value, S = decltype(s)::value;
          double value[S * D];  // read before gtw is written: wx may be the Vec w
          for (int e = 0; e < count * D; ++e) value[e] = values[p * D + e];
          bool scattered = false;
          ++blocks_;
#if defined(__AVX512F__)
          if constexpr (D == 2 && N == 4 && S == WindowScatter2D::kLanes) {
            if (WindowScatter2D::fits(block.offset, count)) {
              window.add(block.offset, block.weight, value, local);
              scattered = true;
              ++windowed_blocks_;
            } else {
              window.flush();
            }
          } else if constexpr (D == 3 && N == 4 && S == WindowScatter3D::kLanes) {
            const BlockUnion3D::Shape shape = blocks3.fit(block.offset, count);
            if (shape.fits) {
              window3.add(shape, block.weight, value, local);
              if (shape.x_nodes + shape.y_rows + shape.z_planes > 3 * N) ++widened_blocks_;
              scattered = true;
              ++windowed_blocks_;
            } else {
              window3.flush();
            }
          }
#endif
          if (jacobianInLanes<D, S>(count)) {
            if (!scattered) {
              for (int b = 0; b < count; ++b)
                adjointScatterAddAtComponents<D, N, D, S>(block.offset + b, block.weight + b,
                                                          value + b * D, local);
            }
            jacobianTransposeLanes<D>(jac + p * D * D, value, gtw + p * D);
            return;
          }
          for (int b = 0; b < count; ++b) {
            const double* vb = value + b * D;
            if (!scattered)
              adjointScatterAddAtComponents<D, N, D, S>(block.offset + b, block.weight + b, vb,
                                                        local);
            jacobianTransposeAt<D>(jac + (p + b) * D * D, vb, gtw + (p + b) * D);
          }
        },
        [&](PetscInt line) {
#if defined(__AVX512F__)
          window.flush();  // before earlier lines are finished
          window3.flush();
#endif
          sum.beginLine(line);
        });
#if defined(__AVX512F__)
    window.flush();
    window3.flush();
#endif
    sum.finishOwned();
  }

  /// True when the linearisation belongs to x (collective).
  bool isAt(Vec x) const {
    if (!valid_) return false;
    PetscBool same = PETSC_FALSE;
    PG_CALL(VecEqual(x, point_, &same));
    return same == PETSC_TRUE;
  }

  /// out[p * dim + c] = component c of the local field interpolated at departure point p
  /// (the field is a velocity: dof = dim, checked by the step's constructor).
  void gather(const PetscScalar* local, PetscScalar* out) const {
    withStencilShape(grid_->dim(), kind_, [&](auto d, auto n) {
      constexpr int D = decltype(d)::value, N = decltype(n)::value;
      const PetscInt count = grid_->owned().count();
      for (PetscInt p = 0; p < count; ++p) {
        const size_t at = static_cast<size_t>(p * D * N);
        gatherAtComponents<D, N, D>(&offset_[at], &weight_[at], local, out + p * D);
      }
    });
  }

  /// The adjoint's two parts in one pass over the stencils, without storing G:
  /// local += gather^T values, and gtw[p * dim + a] = sum_c G[p][c][a] values[p * dim + c]
  /// (the same products, summed in the same order, as jacobian() then a G^T product).
  void scatterAddWithJacobianTranspose(const PetscScalar* values, PetscScalar* local,
                                       PetscScalar* gtw) const {
    const PetscScalar* xl = nullptr;
    PG_CALL(VecGetArrayRead(local_, &xl));
    withStencilShape(grid_->dim(), kind_, [&](auto d, auto n) {
      constexpr int D = decltype(d)::value, N = decltype(n)::value;
      const PetscInt count = grid_->owned().count();
      for (PetscInt p = 0; p < count; ++p) {
        const size_t at = static_cast<size_t>(p * D * N);
        adjointAt<D, N>(p, &offset_[at], &weight_[at], &slope_[at], xl, values, local, gtw);
      }
    });
    PG_CALL(VecRestoreArrayRead(local_, &xl));
  }

  /// G[p][c][a] = d y_c(x_p) / d u_a(x_p) through the departure point:
  /// -signed_dt / h_a times the derivative of I[u_c] along axis a (in index units) at X_p.
  const std::vector<double>& jacobian() {
    if (jacobian_ready_) return jacobian_;
    const PetscScalar* xl = nullptr;
    PG_CALL(VecGetArrayRead(local_, &xl));
    withStencilShape(grid_->dim(), kind_, [&](auto d, auto n) {
      constexpr int D = decltype(d)::value, N = decltype(n)::value;
      const PetscInt count = grid_->owned().count();
      for (PetscInt p = 0; p < count; ++p) {
        const size_t at = static_cast<size_t>(p * D * N);
        double grad[D * D];  // grad[c * D + a] = d u_c / d q_a
        gradientAtComponents<D, N, D>(&offset_[at], &weight_[at], &slope_[at], xl, grad);
        for (int c = 0; c < D; ++c) {
          for (int a = 0; a < D; ++a) {
            jacobian_[static_cast<size_t>((p * D + c) * D + a)] = dq_du_[a] * grad[c * D + a];
          }
        }
      }
    });
    PG_CALL(VecRestoreArrayRead(local_, &xl));
    jacobian_ready_ = true;
    return jacobian_;
  }

  /// Of the last adjointOnePassWithJacobian: blocks summed in a register window, of those
  /// the blocks of a wider window, all blocks.
  std::array<PetscInt, 3> windowedBlocks() const {
    return {windowed_blocks_, widened_blocks_, blocks_};
  }
  Vec local() const { return local_; }
  const LocalArrayLayout& layout() const { return layout_; }
  double cfl() const { return cfl_; }
  double departureCells() const { return departure_cells_; }
  PetscInt requiredWidth() const { return required_width_; }

 private:
  /// The tables of build(): allocated on first use (a step that is only run forward and
  /// differentiated in reverse never needs them; 3D cubic they take about 300 B per point).
  void allocateTables() {
    const size_t count = static_cast<size_t>(grid_->owned().count());
    const size_t per_point = static_cast<size_t>(grid_->dim() * nodes_);
    offset_.resize(count * per_point);
    weight_.resize(count * per_point);
    slope_.resize(count * per_point);
    inside_.resize(count * static_cast<size_t>(grid_->dim()));
    jacobian_.resize(count * static_cast<size_t>(grid_->dim() * grid_->dim()));
  }

  /// Point p's share of the adjoint, from its stencil ([D][N] offsets, weights, slopes,
  /// entries S apart).
  template <int D, int N, int S = 1>
  void adjointAt(PetscInt p, const PetscInt* off, const double* w, const double* slope,
                 const PetscScalar* xl, const PetscScalar* values, PetscScalar* local,
                 PetscScalar* gtw) const {
    double value[D];  // read before gtw is written: wx may be the Vec w
    for (int c = 0; c < D; ++c) value[c] = values[p * D + c];
    double grad[D * D];  // grad[c * D + a] = d u_c / d q_a
    scatterAddAndGradientAtComponents<D, N, D, S>(off, w, slope, value, local, xl, grad);
    for (int a = 0; a < D; ++a) {
      double sum = 0.0;
      for (int c = 0; c < D; ++c) sum += (dq_du_[a] * grad[c * D + a]) * value[c];
      gtw[p * D + a] = sum;
    }
  }

  /// Exchanges x into local_ and builds the departure stencils of the owned points, a block
  /// of kBlock points of a grid row at a time, then calls
  ///   use(D, N, S, p, offset, weight, slope, inside, local array)
  /// for each point p with its stencil (entries S apart; slope null unless WithSlope),
  /// and before each grid row begin_line(index of the row along the outermost axis).
  /// OwnedOnly: for a `use` that reads no state values (the stencils need only the owned
  /// velocities), x is read in place, without the exchange, and the local array passed on
  /// is null.
  /// Afterwards the reach, CFL and finiteness are reduced over the ranks and checked as
  /// build() documents.  The tables no longer describe local_: the linearisation is
  /// invalid until the next build().
  /// ByBlock: `use` is called once per block instead, as
  ///   use(D, N, S, p, count, block, local array)
  /// with the block's first point p and its `count` points (the stencil of point p + b at
  /// block.offset + b, ..., entries S apart).
  template <bool WithSlope, bool OwnedOnly = false, bool ByBlock = false, class Use,
            class BeginLine = void (*)(PetscInt)>
  void forEachStencil(
      Vec x, const std::string& scheme, Use&& use, BeginLine&& begin_line = [](PetscInt) {}) {
    valid_ = false;
    jacobian_ready_ = false;
    if (!OwnedOnly) exchange_->globalToLocal(x, local_);
    double inverse_h_sum = 0.0;
    for (int a = 0; a < grid_->dim(); ++a) inverse_h_sum += 1.0 / grid_->h(a);
    Maxima m;
    const PetscScalar *xl = nullptr, *xa = nullptr;  // local_, or x itself if OwnedOnly
    PG_CALL(VecGetArrayRead(OwnedOnly ? x : local_.get(), OwnedOnly ? &xa : &xl));
    withStencilShape(grid_->dim(), kind_, [&](auto d, auto n) {
      constexpr int D = decltype(d)::value, N = decltype(n)::value, B = kBlock;
      using Stride = std::integral_constant<int, B>;
      using Block = StencilBlock<D, N, B>;
      using Real = typename Block::Real;
      using Index = typename Block::Index;
      // Departure distance in cells per unit speed along each axis, signed_dt / h: one
      // product per point instead of a division (d q_a / d u_a = -cells_per_speed[a]
      // exactly, the dq_du_ of the Jacobian terms).
      double cells_per_speed[D];
      for (int a = 0; a < D; ++a) cells_per_speed[a] = -dq_du_[a];
      // B points at a time, lane by lane (see StencilBlock::build); the running maxima and
      // the finiteness are kept per lane and reduced over the lanes at the end.
      Real lane{};
      for (int b = 0; b < B; ++b) lane[b] = b;
      Real departure{}, speed2{};  // departure distance (cells), |u|^2
      Index reach{};
      const auto all = lane == lane;  // a lane mask, every lane true
      auto finite = all;
      Block block;
      const IndexBox& o = grid_->owned();
      const PetscInt row_end = o.start[0] + o.size[0];
      PetscInt p = 0;
      for (PetscInt k = o.start[2]; k < o.start[2] + o.size[2]; ++k) {
        for (PetscInt j = o.start[1]; j < o.start[1] + o.size[1]; ++j) {
          begin_line(D == 3 ? k : j);
          for (PetscInt i = o.start[0]; i < row_end; i += B) {
            const int count = static_cast<int>(std::min<PetscInt>(B, row_end - i));
            Real v[D], q[D];
            // dof = D; owned point p at p * D of the global array
            loadComponentLanes<D, B>(OwnedOnly ? xa + p * D : xl + layout_.arrayOffset(i, j, k),
                                     count, v);
            auto f = all;
            Real s2{};
            for (int a = 0; a < D; ++a) {
              f = f & (v[a] > -HUGE_VAL) & (v[a] < HUGE_VAL);
              s2 += v[a] * v[a];
            }
            finite = finite & f;
            s2 = f ? s2 : Real{};
            speed2 = s2 > speed2 ? s2 : speed2;
            for (int a = 0; a < D; ++a) {
              const double home_a = static_cast<double>(a == 0 ? i : (a == 1 ? j : k));
              Real c = v[a] * cells_per_speed[a];
              // A non-finite state is reported later; its stencils stay at home meanwhile.
              c = f ? c : Real{};
              q[a] = (home_a + (a == 0 ? lane : Real{})) - c;
              const Real size = c < 0.0 ? -c : c;
              departure = size > departure ? size : departure;
            }
            const PetscInt home[3] = {i, j, k};
            block.template build<WithSlope>(layout_, q, home, count, reach);
            if constexpr (ByBlock) {
              use(d, n, Stride{}, p, count, block, xl);
            } else {
              for (int b = 0; b < count; ++b) {
                use(d, n, Stride{}, p + b, block.offset + b, block.weight + b,
                    WithSlope ? block.slope + b : nullptr, block.inside + b, xl);
              }
            }
            p += count;
          }
        }
      }
      for (int b = 0; b < B; ++b) {
        m.reach = std::max(m.reach, static_cast<double>(reach[b]));
        m.cells = std::max(m.cells, departure[b]);
        // max_p sqrt(|u_p|^2) c = sqrt(max_p |u_p|^2) c exactly (both are monotone and
        // correctly rounded).
        m.cfl = std::max(m.cfl, std::sqrt(speed2[b]) * std::abs(signed_dt_) * inverse_h_sum);
        if (!finite[b]) m.nonfinite = 1.0;
      }
    });
    PG_CALL(VecRestoreArrayRead(OwnedOnly ? x : local_.get(), OwnedOnly ? &xa : &xl));
    reduceAndCheck(m, scheme);
  }

  /// Reduces the maxima of the stencils just built over the ranks, stores them, and throws
  /// (on every rank) if the state was not finite or a stencil reaches beyond the ghost
  /// layers.
  void reduceAndCheck(const Maxima& m, const std::string& scheme) {
    const double stats[4] = {m.reach, m.cells, m.cfl, m.nonfinite};
    double global[4] = {0.0, 0.0, 0.0, 0.0};
    MPI_Allreduce(stats, global, 4, MPI_DOUBLE, MPI_MAX, grid_->comm());
    required_width_ = static_cast<PetscInt>(global[0]);
    departure_cells_ = global[1];
    cfl_ = global[2];
    if (global[3] != 0.0) {
      throw NonFiniteError(scheme + ": the velocity field (the state) is not finite");
    }
    const PetscInt width = grid_->spec().stencil_width;
    if (required_width_ > width) {
      std::ostringstream os;
      os.precision(4);
      os << scheme << ": CFL = max|u| dt sum_d 1/h_d = " << cfl_
         << " (dt = " << std::abs(signed_dt_) << ", largest departure distance " << departure_cells_
         << " cells) needs " << toString(kind_) << " interpolation stencils reaching "
         << required_width_
         << " ghost layers, but the grid's ghost width is GridSpec::stencil_width = " << width
         << "; the velocity changes during a simulation, so build the grid with stencil_width >= "
         << required_width_ << " (or more, for headroom) or use more, shorter steps";
      throw CflError(os.str(), cfl_, width, required_width_);
    }
  }

  static constexpr int kBlock = kStencilBlockLanes;  // points per StencilBlock

  const Grid* grid_;
  const CornerGhostExchange* exchange_;
  LocalArrayLayout layout_;
  Interpolation kind_;
  double signed_dt_;
  int nodes_;
  OwnedVec local_;  // the state with all ghosts (corners included)
  OwnedVec point_;  // the state the linearisation belongs to
  bool valid_ = false, jacobian_ready_ = false;
  std::vector<PetscInt> offset_;
  std::vector<double> weight_, slope_, jacobian_;
  std::vector<std::uint8_t> inside_;
  double cfl_ = 0.0, departure_cells_ = 0.0;
  PetscInt required_width_ = 0, windowed_blocks_ = 0, widened_blocks_ = 0, blocks_ = 0;
  double dq_du_[3] = {0.0, 0.0, 0.0};  // d q_a / d u_a = -signed_dt / h_a
};

// ---------------------------------------------------------------------------------------

namespace {

double checkedStep(const Grid& grid, double dt) {
  if (grid.dof() != grid.dim()) {
    std::ostringstream os;
    os << "self-advection (Burgers) needs one velocity component per dimension: the grid has "
       << grid.dof() << " component(s) per point in " << grid.dim()
       << "D; build it with GridSpec::dof = " << grid.dim();
    throw InputError(os.str());
  }
  if (!(dt > 0.0) || !std::isfinite(dt)) {
    std::ostringstream os;
    os << "self-advection (Burgers): the time step dt must be positive and finite (got dt = " << dt
       << ")";
    throw InputError(os.str());
  }
  return dt;
}

}  // namespace

namespace detail {
struct JacobianRecordPool {
  std::vector<std::vector<double>> spare;
};
}  // namespace detail

namespace {
// A record of forwardAndRecord: the Jacobian terms G at the state it was made at.
struct JacobianRecord final : LinearisationRecord {
  // jac[(p * dim + c) * dim + a] = G[p][c][a]; in 2D and 3D full blocks of 8 points with
  // the points as lanes (see forwardAndJacobianOnePass)
  std::vector<double> jac;
  std::shared_ptr<detail::JacobianRecordPool> pool;

  size_t bytes() const override { return jac.capacity() * sizeof(double); }

  ~JacobianRecord() override {
    try {
      pool->spare.push_back(std::move(jac));
    } catch (const std::bad_alloc&) {  // the pool's own list could not grow: free the buffer
    }
  }
};
}  // namespace

SelfAdvectionStep::SelfAdvectionStep(const Grid& grid, double dt, Interpolation kind,
                                     NewtonKrylovOptions inverse_options)
    : Step(grid),
      kind_(kind),
      dt_(checkedStep(grid, dt)),
      inverse_options_(std::move(inverse_options)),
      exchange_(grid),
      local_work_(exchange_.createLocal()),
      residual_(grid.createGlobal()),
      trial_(grid.createGlobal()),
      trial_residual_(grid.createGlobal()),
      correction_(grid.createGlobal()) {
  ahead_ = std::make_unique<Linearisation>(grid, exchange_, kind_, dt_);
  back_ = std::make_unique<Linearisation>(grid, exchange_, kind_, -dt_);
  record_pool_ = std::make_shared<detail::JacobianRecordPool>();
}

SelfAdvectionStep::~SelfAdvectionStep() = default;

std::string SelfAdvectionStep::name() const {
  return std::string("self-advection-") + toString(kind_);
}

double SelfAdvectionStep::lastCfl() const { return ahead_->cfl(); }
double SelfAdvectionStep::lastDepartureCells() const { return ahead_->departureCells(); }
PetscInt SelfAdvectionStep::lastRequiredWidth() const { return ahead_->requiredWidth(); }
std::array<PetscInt, 3> SelfAdvectionStep::lastWindowedBlocks() const {
  return ahead_->windowedBlocks();
}

void SelfAdvectionStep::forward(Vec x, Vec y) {
  restored_record_.reset();
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArray(y, &ya));
  try {
    ahead_->forwardOnePass(x, name(), ya);
  } catch (...) {
    PG_CALL(VecRestoreArray(y, &ya));  // build errors are collective
    throw;
  }
  PG_CALL(VecRestoreArray(y, &ya));
}

std::unique_ptr<LinearisationRecord> SelfAdvectionStep::forwardAndRecord(Vec x, Vec y) {
  restored_record_.reset();
  auto record = std::make_unique<JacobianRecord>();
  record->pool = record_pool_;
  std::vector<std::vector<double>>& spare = record_pool_->spare;
  if (!spare.empty()) {
    record->jac = std::move(spare.back());
    spare.pop_back();
  }
  const int dim = grid().dim();
  // No allocation (nor zeroing) with a spare buffer: every record has this size.
  record->jac.resize(static_cast<size_t>(grid().owned().count() * dim * dim));
  PetscScalar* ya = nullptr;
  PG_CALL(VecGetArray(y, &ya));
  try {
    ahead_->forwardAndJacobianOnePass(x, name(), ya, record->jac.data());
  } catch (...) {
    PG_CALL(VecRestoreArray(y, &ya));  // build errors are collective
    throw;
  }
  PG_CALL(VecRestoreArray(y, &ya));
  return record;
}

void SelfAdvectionStep::restoreLinearisation(std::shared_ptr<const LinearisationRecord> record,
                                             Vec x) {
  const auto* jacobian = dynamic_cast<const JacobianRecord*>(record.get());
  const size_t expected = static_cast<size_t>(grid().owned().count() * grid().dim() * grid().dim());
  if (!jacobian || jacobian->jac.size() != expected)
    throw std::logic_error("SelfAdvectionStep: a linearisation record of another step");
  restored_record_ = std::move(record);
  restored_at_ = VecStamp::of(x);
}

void SelfAdvectionStep::linearise(Vec x) {
  if (!ahead_->isAt(x)) ahead_->build(x, name());
}

void SelfAdvectionStep::tangent(Linearisation& lin, Vec dx, Vec dy) {
  const std::vector<double>& g = lin.jacobian();
  work_is_zero_ = false;
  exchange_.globalToLocal(dx, local_work_);
  const PetscScalar *dl = nullptr, *da = nullptr;
  PetscScalar* out = nullptr;
  PG_CALL(VecGetArrayRead(local_work_, &dl));
  PG_CALL(VecGetArrayRead(dx, &da));
  PG_CALL(VecGetArray(dy, &out));
  lin.gather(dl, out);
  const int dim = grid().dim();
  const PetscInt count = grid().owned().count();
  for (PetscInt p = 0; p < count; ++p) {
    const double* gp = &g[static_cast<size_t>(p * dim * dim)];
    const PetscScalar* du = da + p * dim;
    for (int c = 0; c < dim; ++c) {
      double s = 0.0;
      for (int a = 0; a < dim; ++a) s += gp[c * dim + a] * du[a];
      out[p * dim + c] += s;
    }
  }
  PG_CALL(VecRestoreArray(dy, &out));
  PG_CALL(VecRestoreArrayRead(dx, &da));
  PG_CALL(VecRestoreArrayRead(local_work_, &dl));
}

void SelfAdvectionStep::adjoint(Linearisation& lin, Vec x, Vec w, Vec wx, const double* jac) {
  // wx = G^T w per point (the -dt grad u term couples the components of one point only),
  // written straight into wx, plus gather^T w added through the ghost exchange.  With x
  // given the stencils are built on the fly (adjointOnePass; local_work_ is added into wx
  // as the sweep goes and left zero for the next adjoint); otherwise lin's tables are used.
  const bool zeroed = work_is_zero_;
  work_is_zero_ = false;
  if (!x) PG_CALL(VecSet(local_work_, 0.0));
  const PetscScalar* wa = nullptr;
  PetscScalar *zl = nullptr, *gtw = nullptr;
  PG_CALL(VecGetArrayRead(w, &wa));
  PG_CALL(VecGetArray(local_work_, &zl));
  PG_CALL(VecGetArray(wx, &gtw));
  // Arrays are handed back before an exception leaves (build errors are collective).
  auto restore = [&] {
    PG_CALL(VecRestoreArray(wx, &gtw));
    PG_CALL(VecRestoreArray(local_work_, &zl));
    PG_CALL(VecRestoreArrayRead(w, &wa));
  };
  try {
    if (x && jac)
      lin.adjointOnePassWithJacobian(x, name(), jac, wa, zl, gtw, zeroed);
    else if (x)
      lin.adjointOnePass(x, name(), wa, zl, gtw, zeroed);
    else
      lin.scatterAddWithJacobianTranspose(wa, zl, gtw);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  if (!x) {
    exchange_.addLocalToGlobal(local_work_, wx);
    return;
  }
  exchange_.addGhostsToGlobal(local_work_, wx);
  PG_CALL(VecGetArray(local_work_, &zl));
  zeroGhostEntries(lin.layout(), zl);
  PG_CALL(VecRestoreArray(local_work_, &zl));
  work_is_zero_ = true;
}

void SelfAdvectionStep::jvp(Vec x, Vec dx, Vec dy) {
  linearise(x);
  tangent(*ahead_, dx, dy);
}

void SelfAdvectionStep::vjp(Vec x, Vec w, Vec wx) {
  // A restored record of x gives the Jacobian terms.  Tables already built at x (by a jvp
  // there) are reused; otherwise the stencils are built and used in one pass, which costs
  // less than building the tables.
  if (restored_record_ && VecStamp::of(x) == restored_at_)
    adjoint(*ahead_, x, w, wx, static_cast<const JacobianRecord&>(*restored_record_).jac.data());
  else if (ahead_->isAt(x))
    adjoint(*ahead_, nullptr, w, wx);
  else
    adjoint(*ahead_, x, w, wx);
}

void SelfAdvectionStep::approximateInverse(Vec y, Vec x) {
  back_->build(y, name() + " (backwards, approximate inverse)");
  const PetscScalar* yl = nullptr;
  PetscScalar* xa = nullptr;
  PG_CALL(VecGetArrayRead(back_->local(), &yl));
  PG_CALL(VecGetArray(x, &xa));
  back_->gather(yl, xa);
  PG_CALL(VecRestoreArray(x, &xa));
  PG_CALL(VecRestoreArrayRead(back_->local(), &yl));
}

// ---------------------------------------------------------------------------------------
// Newton-Krylov inverse.

PetscErrorCode SelfAdvectionStep::applyPreconditioner(PC pc, Vec r, Vec z) {
  PG_CALLBACK_BEGIN
  void* ctx = nullptr;
  PG_CALL(PCShellGetContext(pc, &ctx));
  auto* self = static_cast<SelfAdvectionStep*>(ctx);
  // The backwards step T approximates S^{-1}, so its Jacobian at y approximates J^{-1}.
  self->tangent(*self->back_, r, z);
  PG_CALLBACK_END("SelfAdvectionStep preconditioner (Jacobian of the backwards step)")
}

void SelfAdvectionStep::setUpSolver(Vec x) {
  if (ksp_) return;
  jacobian_ = std::make_unique<JacobianOperator>(*this, x);
  PG_CALL(KSPCreate(grid().comm(), ksp_.out()));
  PG_CALL(KSPSetOptionsPrefix(ksp_, inverse_options_.prefix.c_str()));
  PG_CALL(KSPSetOperators(ksp_, jacobian_->mat(), jacobian_->mat()));
  PG_CALL(KSPSetType(ksp_, KSPGMRES));
  PG_CALL(KSPGMRESSetRestart(ksp_, 60));
  // Classical Gram-Schmidt loses orthogonality at tight tolerances unless refined.
  PG_CALL(KSPGMRESSetCGSRefinementType(ksp_, KSP_GMRES_CGS_REFINE_IFNEEDED));
  // Right preconditioning: the tolerance applies to the true residual of the correction.
  PG_CALL(KSPSetPCSide(ksp_, PC_RIGHT));
  PG_CALL(KSPSetNormType(ksp_, KSP_NORM_UNPRECONDITIONED));
  PC pc = nullptr;
  PG_CALL(KSPGetPC(ksp_, &pc));
  PG_CALL(PCSetType(pc, PCSHELL));
  PG_CALL(PCShellSetContext(pc, this));
  PG_CALL(PCShellSetApply(pc, applyPreconditioner));
  PG_CALL(PCShellSetName(pc, "Jacobian of the backwards self-advection step"));
  PG_CALL(KSPSetTolerances(ksp_, inverse_options_.krylov_rtol, 0.0, PETSC_DEFAULT,
                           inverse_options_.krylov_max_it));
  PG_CALL(KSPSetFromOptions(ksp_));
}

SolveReport SelfAdvectionStep::solveInverse(Vec y, Vec x, const NewtonKrylovOptions& o) {
  if (!back_->isAt(y)) back_->build(y, name() + " (backwards, preconditioner)");
  setUpSolver(x);
  PG_CALL(KSPSetTolerances(ksp_, o.krylov_rtol, 0.0, PETSC_DEFAULT, o.krylov_max_it));
  PetscReal ynorm = 0.0;
  PG_CALL(VecNorm(y, NORM_2, &ynorm));
  const double tol = o.rtol * ynorm + o.atol;
  SolveReport report;
  auto record = [&](double rnorm) {
    report.residual = rnorm;
    report.relative_residual = ynorm > 0.0 ? rnorm / ynorm : rnorm;
    report.residual_history.push_back(rnorm);
  };
  // ||S(at) - y|| into `into`, or infinity where S is not defined at `at` (a trial point
  // beyond the CFL limit of the ghost layers, or not finite): collective either way.
  auto residual_norm = [&](Vec at, Vec into) {
    try {
      forward(at, into);
    } catch (const CflError&) {
      return HUGE_VAL;
    } catch (const NonFiniteError&) {
      return HUGE_VAL;
    }
    PG_CALL(VecAXPY(into, -1.0, y));
    PetscReal norm = 0.0;
    PG_CALL(VecNorm(into, NORM_2, &norm));
    return static_cast<double>(norm);
  };
  double rnorm = residual_norm(x, residual_);
  record(rnorm);
  for (PetscInt it = 0;; ++it) {
    report.newton_iterations = it;
    if (!std::isfinite(rnorm)) {
      report.reason = "the residual is not finite (or the start lies beyond the CFL limit)";
      return report;
    }
    if (rnorm <= tol) {
      report.converged = true;
      report.reason = "residual below tolerance";
      return report;
    }
    if (it == o.max_newton) {
      report.reason = "Newton iteration cap reached";
      return report;
    }
    jacobian_->setPoint(x);  // its products linearise at x (tables built once per point)
    PG_CALL(VecSet(correction_, 0.0));
    PG_CALL(KSPSolve(ksp_, residual_, correction_));
    KSPConvergedReason reason;
    PG_CALL(KSPGetConvergedReason(ksp_, &reason));
    PetscInt its = 0;
    PG_CALL(KSPGetIterationNumber(ksp_, &its));
    report.iterations += its;
    if (reason < 0 && reason != KSP_DIVERGED_ITS) {
      report.reason = std::string("inner GMRES failed: ") + KSPConvergedReasons[reason];
      return report;
    }
    // The interpolant's gradient jumps across cell faces, so a full step can overshoot
    // far from the solution; halve it until the residual decreases.
    double t = 1.0, trial_norm = HUGE_VAL;
    for (int halving = 0;; ++halving) {
      PG_CALL(VecWAXPY(trial_, -t, correction_, x));
      trial_norm = residual_norm(trial_, trial_residual_);
      if (trial_norm < rnorm) break;
      if (halving == 10) {
        report.reason = "no step length along the Newton direction reduces the residual";
        return report;
      }
      t *= 0.5;
    }
    PG_CALL(VecCopy(trial_, x));
    PG_CALL(VecCopy(trial_residual_, residual_));
    rnorm = trial_norm;
    record(rnorm);
  }
}

void SelfAdvectionStep::inverse(Vec x0, Vec y, Vec x) {
  approximateInverse(y, x);  // also linearises the backwards step at y: the preconditioner
  if (x0) {
    // The local inverse around x0 passes through x0: where y is (nearly) S(x0), x0 is the
    // better start, and exactly the answer when y = S(x0).
    PetscReal from_guess = 0.0, from_x0 = 0.0;
    forward(x, residual_);
    PG_CALL(VecAXPY(residual_, -1.0, y));
    PG_CALL(VecNorm(residual_, NORM_2, &from_guess));
    forward(x0, residual_);
    PG_CALL(VecAXPY(residual_, -1.0, y));
    PG_CALL(VecNorm(residual_, NORM_2, &from_x0));
    if (from_x0 < from_guess) PG_CALL(VecCopy(x0, x));
  }
  last_report_ = solveInverse(y, x);
  if (!last_report_.converged) {
    std::ostringstream os;
    os.precision(2);
    PetscReal ynorm = 0.0;
    PG_CALL(VecNorm(y, NORM_2, &ynorm));
    os << "Newton-Krylov inverse of step '" << name()
       << "' did not converge: " << last_report_.reason << " after "
       << last_report_.newton_iterations << " Newton steps; ||S(x) - y|| / ||y|| per iteration:";
    for (double r : last_report_.residual_history) os << " " << (ynorm > 0.0 ? r / ynorm : r);
    os << " (rtol " << inverse_options_.rtol << ", options prefix -" << inverse_options_.prefix
       << ")";
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  }
}

}  // namespace physgrad
