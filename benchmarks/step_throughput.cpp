// Throughput of every time step against the memory-bandwidth limit measured in the same
// run, and the cost of a simulator gradient (its recording forward pass plus the reverse
// sweep) relative to K plain forward steps that record nothing.
//
// For each step type and grid: grid-point updates per second of forward(), and an
// effective bandwidth counting the minimal traffic of the step (bytes per point: e.g.
// one read of x and one write of y = 16 B for a matrix-free explicit stencil on a scalar
// field, 32 or 48 B for a velocity of 2 or 3 components), beside a
// STREAM-style triad a = b + s c run by every rank at once on arrays of the same local
// size, its repetitions interleaved with those of the step.  Times are the best of -reps
// repetitions (as STREAM does), maximised over ranks; beside the best-against-best ratio
// the median of the ratios within each (triad, step) pair, which a shared machine's
// changing load disturbs far less.

#include <petscsys.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"
#include "physgrad/core/main.hpp"
#include "physgrad/io/output.hpp"
#include "physgrad/physics/diffusion.hpp"
#include "physgrad/physics/shifted_laplacian.hpp"
#include "physgrad/physics/simulator.hpp"
#include "step_registry.hpp"

namespace pg = physgrad;
namespace benchmarks = physgrad::benchmarks;

static const char kHelp[] =
    "step_throughput: grid-point updates/s and effective GB/s of every time step beside a\n"
    "STREAM-style triad measured in the same run, and the gradient/forward cost ratio of\n"
    "simulators with store-all and with sqrt(K) checkpoints (gradient: the recording forward\n"
    "pass and the reverse sweep; forward: K plain steps), the store-all gradient's two parts\n"
    "timed on their own (pass + sweep, in forwards), and one step's vjp/forward.\n"
    "With -log_view, the timed forward steps of each throughput row (not their warm-up call)\n"
    "run in a PETSc log stage of their own, named '<dim>D <step>': its VecScatter events are\n"
    "that step's ghost exchanges.\n\n";

namespace {

struct BenchOptions {
  PetscInt n2 = 4096, n3 = 256, reps = 10, gradient_steps = 64, gradient_n = 512, gradient_n3 = 0,
           gradient_reps = 5;
  std::vector<std::string> steps, gradient_types;
  std::string output = "step_throughput.csv";
  PetscInt streaming = 0;  // index into kStreamingNames
};

const char* const kStreamingNames[] = {"auto", "always", "never"};

PetscErrorCode readOptions(BenchOptions* o) {
  PetscFunctionBeginUser;
  char* raw[32] = {};
  PetscInt count = 32;
  PetscBool set = PETSC_FALSE;
  char out[PETSC_MAX_PATH_LEN];
  PetscCall(PetscStrncpy(out, o->output.c_str(), sizeof out));
  const std::string help =
      "Step types to measure (default: all of " + benchmarks::joinedNames() + ")";
  PetscOptionsBegin(PETSC_COMM_WORLD, nullptr, "Step throughput benchmark", nullptr);
  PetscCall(PetscOptionsInt("-n2", "Points per axis of the 2D grid (0: skip 2D)", nullptr, o->n2,
                            &o->n2, nullptr));
  PetscCall(PetscOptionsInt("-n3", "Points per axis of the 3D grid (0: skip 3D)", nullptr, o->n3,
                            &o->n3, nullptr));
  PetscCall(PetscOptionsInt("-reps",
                            "Interleaved (triad, step) timing pairs: the best of each is "
                            "reported, and the median of the per-pair ratios",
                            nullptr, o->reps, &o->reps, nullptr));
  PetscCall(PetscOptionsInt("-gradient_steps", "K of the gradient-cost simulators (0: skip)",
                            nullptr, o->gradient_steps, &o->gradient_steps, nullptr));
  PetscCall(PetscOptionsInt("-gradient_reps",
                            "Interleaved (gradient, forward) timing pairs per simulator, and "
                            "(vjp, forward) pairs of one step: the forward time reported is the "
                            "best, the ratios the medians of the pairs",
                            nullptr, o->gradient_reps, &o->gradient_reps, nullptr));
  PetscCall(PetscOptionsInt("-gradient_n", "Points per axis of the 2D gradient-cost grid (0: skip)",
                            nullptr, o->gradient_n, &o->gradient_n, nullptr));
  PetscCall(PetscOptionsInt("-gradient_n3",
                            "Points per axis of the 3D gradient-cost grid (0, the default: skip)",
                            nullptr, o->gradient_n3, &o->gradient_n3, nullptr));
  char* graw[32] = {};
  PetscInt gcount = 32;
  PetscBool gset = PETSC_FALSE;
  PetscCall(PetscOptionsStringArray("-gradient_types",
                                    "Step types of the gradient-cost table (default: as -steps)",
                                    nullptr, graw, &gcount, &gset));
  if (gset) {
    for (PetscInt i = 0; i < gcount; ++i) {
      o->gradient_types.emplace_back(graw[i]);
      PetscCall(PetscFree(graw[i]));
    }
  }
  PetscCall(PetscOptionsStringArray("-steps", help.c_str(), nullptr, raw, &count, &set));
  PetscCall(PetscOptionsEList(
      "-streaming_stores",
      "Non-temporal stores in the stencil apply and the uniform interpolation "
      "sweeps: auto (when x and y of the node's ranks exceed the "
      "last-level cache, at most 32 MiB), always, never",
      nullptr, kStreamingNames, 3, kStreamingNames[o->streaming], &o->streaming, nullptr));
  PetscCall(PetscOptionsString("-output", "CSV file for the results", nullptr, out, out, sizeof out,
                               nullptr));
  PetscOptionsEnd();
  if (set) {
    for (PetscInt i = 0; i < count; ++i) {
      o->steps.emplace_back(raw[i]);
      PetscCall(PetscFree(raw[i]));
    }
  }
  o->output = out;
  PetscFunctionReturn(0);
}

// Wall time of one call of f, bracketed by barriers, maximised over ranks.
double timed(const std::function<void()>& f) {
  MPI_Barrier(PETSC_COMM_WORLD);
  const double t0 = pg::wallTime();
  f();
  double t = pg::wallTime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD);
  return t;
}

// Times of f and g over `reps` interleaved repetitions (f, g, f, g, ...) after one warm-up
// call of each (first-touch, solver set-up, plan creation): the best of each, and the
// median of the ratios t_f / t_g within each pair (neighbours in time see the same state of
// a shared machine, so the ratio varies far less than either time).
struct Interleaved {
  double best_f, best_g, median_f_over_g;
  std::vector<double> g_times;  // t_g of each pair, in order
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

Interleaved timeInterleaved(PetscInt reps, const std::function<void()>& f,
                            const std::function<void()>& g) {
  f();
  g();
  Interleaved out{1e300, 1e300, 0.0, {}};
  std::vector<double> ratios;
  for (PetscInt r = 0; r < reps; ++r) {
    const double tf = timed(f), tg = timed(g);
    out.best_f = std::min(out.best_f, tf);
    out.best_g = std::min(out.best_g, tg);
    out.g_times.push_back(tg);
    ratios.push_back(tf / tg);
  }
  out.median_f_over_g = median(ratios);
  return out;
}

// n doubles on 64-byte cache lines, as Environment places the library's Vec arrays, so that
// the triad and the plain loop run with the alignment the steps get (large std::vector
// blocks start 16 bytes into a line here, as PETSc's own arrays did, which slowed the
// library's stencil by a fifth).
class CacheLineArray {
 public:
  CacheLineArray(size_t n, double value)
      : data_(static_cast<double*>(::operator new(n * sizeof(double), kAlignment))) {
    std::fill(data_, data_ + n, value);
  }
  ~CacheLineArray() { ::operator delete(data_, kAlignment); }
  CacheLineArray(const CacheLineArray&) = delete;
  CacheLineArray& operator=(const CacheLineArray&) = delete;
  double* data() { return data_; }
  const double* data() const { return data_; }
  double operator[](size_t i) const { return data_[i]; }

 private:
  static constexpr std::align_val_t kAlignment{64};
  double* data_;
};

// STREAM triad a = b + s c on every rank at once, on arrays of (at least) a given local
// size; sweep() runs it once, bandwidth() turns the time of a sweep into aggregate GB/s
// counting 24 B per element.
class Triad {
 public:
  explicit Triad(PetscInt local_size)
      : n_(static_cast<size_t>(std::max<PetscInt>(local_size, 1 << 22))),
        a_(n_, 0.0),
        b_(n_, 1.0),
        c_(n_, 2.0) {}
  void sweep() {
    double* __restrict pa = a_.data();
    const double* __restrict pb = b_.data();
    const double* __restrict pc = c_.data();
    const double s = 3.0;
    for (size_t i = 0; i < n_; ++i) pa[i] = pb[i] + s * pc[i];
    // Keep the result alive so the loop cannot be dropped.
    volatile double sink = pa[n_ / 2];
    (void)sink;
  }
  /// Bytes one sweep moves on all ranks together (24 per element, as STREAM counts).
  double bytes() const { return 24.0 * static_cast<double>(n_) * pg::Environment::size(); }
  double bandwidth(double seconds) const { return bytes() / seconds / 1e9; }

 private:
  size_t n_;
  CacheLineArray a_, b_, c_;
};

// f beside the triad, repetitions interleaved (triad, f, triad, f, ...); each timed call is
// bracketed by barriers and maximised over ranks.  `bytes` is what one call of f moves on
// all ranks by the step's traffic model.
struct BesideTriad {
  double seconds;        // best time of f
  double triad_gbs;      // best triad bandwidth
  double percent_best;   // 100 (bytes / seconds) / triad_gbs: best against best, as STREAM
  double percent_pairs;  // the same from the median of the per-pair time ratios
};

BesideTriad timeBesideTriad(PetscInt reps, Triad& triad, double bytes,
                            const std::function<void()>& f) {
  const Interleaved t = timeInterleaved(
      reps, [&] { triad.sweep(); }, f);
  const double gbs = bytes / t.best_g / 1e9, triad_gbs = triad.bandwidth(t.best_f);
  return {t.best_g, triad_gbs, 100.0 * gbs / triad_gbs,
          100.0 * bytes / triad.bytes() * t.median_f_over_g};
}

// A plain 2D five-point loop over a row-major array of rows x width doubles per rank
// (no PETSc, no ghosts), every rank at once: how fast a straightforward stencil runs on
// this machine.  Returns aggregate GB/s counting 16 B per point, like the step rows.
BesideTriad plainStencilBandwidth(PetscInt width, PetscInt rows, PetscInt reps) {
  const size_t w = static_cast<size_t>(width), n = w * static_cast<size_t>(rows);
  CacheLineArray x(n, 1.0), y(n, 0.0);
  Triad triad(static_cast<PetscInt>(n));
  const double bytes = 16.0 * static_cast<double>(n) * pg::Environment::size();
  const BesideTriad result = timeBesideTriad(reps, triad, bytes, [&] {
    const double* __restrict b = x.data();
    double* __restrict a = y.data();
    for (size_t j = 1; j + 1 < static_cast<size_t>(rows); ++j)
      for (size_t i = 1; i + 1 < w; ++i) {
        const size_t k = j * w + i;
        a[k] = 0.2 * b[k] + 0.2 * (b[k - 1] + b[k + 1] + b[k - w] + b[k + w]);
      }
  });
  volatile double sink = y[n / 2];
  (void)sink;
  return result;
}

int run() {
  BenchOptions o;
  PG_CALL(readOptions(&o));
  if (pg::helpRequested()) return 0;
  if (o.reps < 1 || o.gradient_reps < 1)
    throw pg::InputError("options -reps and -gradient_reps must be >= 1");
  if (o.n2 < 0 || o.n3 < 0 || o.gradient_n < 0 || o.gradient_n3 < 0)
    throw pg::InputError("options -n2, -n3, -gradient_n and -gradient_n3 must be >= 0");
  if (o.gradient_steps < 0) throw pg::InputError("option -gradient_steps must be >= 0");
  if (o.steps.empty()) o.steps = benchmarks::stepNames();
  if (o.gradient_types.empty()) o.gradient_types = o.steps;
  for (const auto& s : o.steps) benchmarks::findStep(s);  // refuse unknown names early
  for (const auto& s : o.gradient_types) benchmarks::findStep(s);

  const int ranks = pg::Environment::size();
  const pg::StreamingStores policies[] = {pg::StreamingStores::Auto, pg::StreamingStores::Always,
                                          pg::StreamingStores::Never};
  pg::StarStencil::setStreamingStores(policies[o.streaming]);
  pg::rootPrintf(
      "step_throughput on %d rank(s); stencil streaming stores: %s (%s in this build)\n\n", ranks,
      kStreamingNames[o.streaming],
      pg::StarStencil::haveStreamingStores() ? "available" : "not available");
  pg::CsvWriter csv(o.output, {"ranks", "dim", "n", "step", "seconds_per_step", "mupdates_per_s",
                               "bytes_per_point", "effective_GBs", "triad_GBs", "percent_of_triad",
                               "percent_of_triad_paired_median"});
  pg::rootPrintf(
      "| ranks | grid | step | ms/step | Mupdates/s | B/point | eff. GB/s | %% triad "
      "| %% triad, paired median | triad GB/s |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
      "\n");
  if (o.n2 > 0) {
    const PetscInt rows = std::max<PetscInt>(3, o.n2 / ranks);
    const BesideTriad plain = plainStencilBandwidth(o.n2, rows, o.reps);
    const double gbs = plain.triad_gbs * plain.percent_best / 100.0;
    pg::rootPrintf(
        "| %d | %d^2 | reference: plain 5-point loop | - | - | 16 | %.2f | %.0f | %.0f | %.2f |\n",
        ranks, static_cast<int>(o.n2), gbs, plain.percent_best, plain.percent_pairs,
        plain.triad_gbs);
  }
  for (int dim : {2, 3}) {
    const PetscInt n = dim == 2 ? o.n2 : o.n3;
    if (n == 0) continue;
    for (const auto& name : o.steps) {
      const benchmarks::StepEntry& entry = benchmarks::findStep(name);
      if (!entry.supports(dim)) continue;
      pg::GridSpec spec = entry.gridSpec(dim, n);
      pg::Grid grid(PETSC_COMM_WORLD, spec);
      std::shared_ptr<pg::Step> step = entry.make(grid);
      pg::OwnedVec x = benchmarks::smoothField(grid), y = grid.createGlobal();
      Triad stream(grid.owned().count() * grid.dof());
      const double points = static_cast<double>(grid.size());
      // The timed calls in a log stage of their own; the warm-up call stays outside.
      PetscLogStage stage = 0;
      const std::string stage_name = std::to_string(dim) + "D " + name;
      PG_CALL(PetscLogStageRegister(stage_name.c_str(), &stage));
      bool warm = false;
      const double bytes_per_point = entry.bytes_per_entry * static_cast<double>(spec.dof);
      const BesideTriad m = timeBesideTriad(o.reps, stream, bytes_per_point * points, [&] {
        if (warm) PG_CALL(PetscLogStagePush(stage));
        step->forward(x, y);
        if (warm) PG_CALL(PetscLogStagePop());
        warm = true;
      });
      const double t = m.seconds, triad = m.triad_gbs;
      const double gbs = bytes_per_point * points / t / 1e9;
      // Solver steps have no single traffic model: no bandwidth figure for them.
      char bw[80] = "- | - | - | -";
      if (bytes_per_point > 0.0)
        std::snprintf(bw, sizeof bw, "%.0f | %.2f | %.0f | %.0f", bytes_per_point, gbs,
                      m.percent_best, m.percent_pairs);
      pg::rootPrintf("| %d | %d^%d | %s | %.3f | %.1f | %s | %.2f |\n", ranks, static_cast<int>(n),
                     dim, name.c_str(), 1e3 * t, points / t / 1e6, bw, triad);
      csv.row(std::vector<std::string>{
          std::to_string(ranks), std::to_string(dim), std::to_string(n), name,
          pg::CsvWriter::format(t), pg::CsvWriter::format(points / t / 1e6),
          pg::CsvWriter::format(bytes_per_point), pg::CsvWriter::format(gbs),
          pg::CsvWriter::format(triad), pg::CsvWriter::format(m.percent_best),
          pg::CsvWriter::format(m.percent_pairs)});
    }
  }

  if (o.gradient_steps > 0 && (o.gradient_n > 0 || o.gradient_n3 > 0)) {
    const PetscInt K = o.gradient_steps;
    const PetscInt sqrt_k = std::max<PetscInt>(1, static_cast<PetscInt>(std::lround(std::sqrt(K))));
    pg::rootPrintf(
        "\nGradient (the simulator's recording forward pass + its reverse sweep) / forward (K "
        "plain steps), median of interleaved pairs, K = %d steps, "
        "store-all vs %d checkpoints (linear steps store no states: both columns "
        "measure the same sweep); and one step's vjp right after its forward at the same state "
        "against that forward.  The store-all gradient's parts, each timed on its own: the "
        "recording forward pass and the reverse sweep, each / forward (medians of the pairs).  "
        "Recomputed steps and visits without a linearisation record "
        "(each re-linearises its step) are those of the checkpointed sweep; record memory is "
        "what store-all keeps besides the states, per point and step, against the state's "
        "own bytes per point:\n\n"
        "| grid | step | linear | forward ms | ratio store-all | ratio sqrt(K) checkpoints | "
        "store-all: pass + sweep | "
        "recomputed steps | visits without a record | one step: vjp / forward | "
        "store-all record B/point/step (state B/point) |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        static_cast<int>(K), static_cast<int>(sqrt_k));
    const std::pair<int, PetscInt> gradient_grids[] = {{2, o.gradient_n}, {3, o.gradient_n3}};
    for (const auto& [dim, points] : gradient_grids) {
      if (points == 0) continue;
      for (const auto& name : o.gradient_types) {
        const benchmarks::StepEntry& entry = benchmarks::findStep(name);
        if (!entry.supports(dim)) continue;
        pg::Grid grid(PETSC_COMM_WORLD, entry.gridSpec(dim, points));
        std::shared_ptr<pg::Step> step = entry.make(grid);
        pg::OwnedVec x = benchmarks::smoothField(grid), y = grid.createGlobal(),
                     w = benchmarks::smoothField(grid), g = grid.createGlobal(),
                     y2 = grid.createGlobal();
        // The reference: K plain forward steps, recording nothing (the simulator's own
        // forward pass also stores states and linearisation records for its reverse sweep,
        // and that cost belongs to the gradient).
        const auto plain_forward = [&] {
          Vec in = x;
          for (PetscInt k = 0; k < K; ++k) {
            Vec out = k % 2 == 0 ? y.get() : y2.get();
            step->forward(in, out);
            in = out;
          }
        };
        // One step: what a reverse sweep pays per step against the forward.
        const Interleaved single = timeInterleaved(
            o.gradient_reps, [&] { step->vjp(x, w, g); }, [&] { step->forward(x, y); });
        double ratio[2] = {0, 0};
        double pass_ratio = 0, sweep_ratio = 0;  // store-all: the two parts of the gradient
        double forward_time = 0;
        long recomputed = 0, unrecorded = 0;
        double record_bytes = 0;  // store-all, per owned point and step (this rank)
        for (int variant = 0; variant < 2; ++variant) {
          pg::CheckpointOptions cp;
          cp.checkpoints = variant == 0 ? 0 : sqrt_k;
          pg::Simulator sim(grid, std::vector<std::shared_ptr<pg::Step>>(K, step), cp);
          // Gradient and forward repetitions interleaved; the ratio is the median of the
          // per-pair ratios (robust to the load of a shared machine), the forward time the best.
          // Each part timed on its own as well (the warm-up call's first).
          std::vector<double> pass_times, sweep_times;
          const Interleaved t = timeInterleaved(
              o.gradient_reps,
              [&] {
                pass_times.push_back(timed([&] { sim.forward(x, y); }));
                sweep_times.push_back(timed([&] { sim.vjp(x, w, g); }));
              },
              plain_forward);
          const double tf = t.best_g;
          ratio[variant] = t.median_f_over_g;
          if (variant == 0) {
            std::vector<double> pass, sweep;
            for (size_t r = 0; r < t.g_times.size(); ++r) {
              pass.push_back(pass_times[r + 1] / t.g_times[r]);
              sweep.push_back(sweep_times[r + 1] / t.g_times[r]);
            }
            pass_ratio = median(pass);
            sweep_ratio = median(sweep);
            forward_time = tf;
            record_bytes = static_cast<double>(sim.lastPeakRecordBytes()) /
                           (static_cast<double>(K) * static_cast<double>(grid.owned().count()));
          }
          recomputed = sim.lastRecomputed();
          unrecorded = sim.lastUnrecordedVisits();
        }
        pg::rootPrintf(
            "| %d^%d | %s | %s | %.1f | %.2f | %.2f | %.2f + %.2f | %ld | %ld | %.2f | %.0f "
            "(%d) |\n",
            static_cast<int>(points), dim, name.c_str(), step->isLinear() ? "yes" : "no",
            1e3 * forward_time, ratio[0], ratio[1], pass_ratio, sweep_ratio, recomputed, unrecorded,
            single.median_f_over_g, record_bytes,
            static_cast<int>(grid.dof() * sizeof(PetscScalar)));
      }
    }
  }
  pg::rootPrintf("\nresults in %s\n", o.output.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pg::runMain(argc, argv, kHelp, run); }
