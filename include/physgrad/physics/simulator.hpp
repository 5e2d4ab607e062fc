#pragma once
// A simulator P = S_K o ... o S_1 of K steps on one Grid.  It is itself a Step, so the
// machinery that works on one step (Jacobian shells, inverses, checks) works on it.
//
// The forward pass records what the reverse sweeps (vjp, inverse) need: every state
// (store-all), or checkpoints placed by the binomial schedule with at most c stored
// states.  Store-all also keeps each step's linearisation record where the step offers
// one (Step::forwardAndRecord; MacCormack: its clamping pattern, at most 4 B per entry;
// self-advection: its Jacobian terms, dim^2 doubles per point), so that the sweep does not
// recompute them; a binomial sweep keeps at most c of them, those of the steps it visits
// next; with CheckpointOptions::records = false (-checkpoint_records false), none.  jvp,
// vjp and inverse reuse the recording when asked about the same x and recompute it
// otherwise.  Simulators of linear steps record nothing: their maps do not depend on the
// point.

#include <cstddef>
#include <map>
#include <memory>
#include <vector>

#include "physgrad/physics/step.hpp"

namespace physgrad {

/// How often each map of the steps has been applied (counts of single steps).
struct StepCounts {
  long forward = 0, jvp = 0, vjp = 0, inverse = 0;
  long recomputed = 0;  ///< forward steps re-run by reverse sweeps (included in `forward`)
};

/// Memory policy of the reverse sweeps.
struct CheckpointOptions {
  /// 0: store every state (K states, plus linearisation records where steps offer
  /// them).  c >= 1: at most c stored states (x_0 included), binomial schedule, and at
  /// most c linearisation records (those of the steps the sweep visits next, wherever a
  /// forward or recomputing pass made them); the sweep also holds the state being
  /// advanced and the input of the last step, which the forward pass leaves behind anyway.
  PetscInt checkpoints = 0;
  /// Keep the linearisation records too (false: every reverse visit recomputes what a
  /// record would hold, and no record memory is used).
  bool records = true;

  /// Reads -checkpoints and -checkpoint_records (listed in -help); throws InputError for
  /// negative values.
  static CheckpointOptions fromCommandLine(MPI_Comm comm);
};

class Simulator final : public Step {
 public:
  Simulator(const Grid& grid, std::vector<std::shared_ptr<Step>> steps,
            CheckpointOptions checkpointing = {});

  std::string name() const override;
  bool isLinear() const override;
  size_t numSteps() const { return steps_.size(); }
  Step& step(size_t k) { return *steps_[k]; }

  void forward(Vec x, Vec y) override;
  /// Tangent sweep alongside the forward states.
  void jvp(Vec x, Vec dx, Vec dy) override;
  /// Reverse sweep: wx = J_1^T ... J_K^T w.
  void vjp(Vec x, Vec w, Vec wx) override;
  /// Inverse time stepping: x_{k-1} = S_k^{-1}(x_k) around the forward state x_{k-1},
  /// for k = K ... 1, starting from x_K = y.
  void inverse(Vec x0, Vec y, Vec x) override;

  /// True when every step is linear and self-adjoint; then J^{-T} is available cheaply.
  bool hasSelfAdjointSteps() const;
  /// z = J^{-T} v for simulators of linear self-adjoint steps: J^T = S_1 ... S_K, so
  /// J^{-T} applies the step inverses in forward order.  Throws NotImplemented otherwise.
  void inverseTranspose(Vec v, Vec z);

  const StepCounts& counts() const { return counts_; }
  /// Forward steps the last reverse sweep recomputed.
  long lastRecomputed() const { return last_recomputed_; }
  /// Visits of the last binomial reverse sweep that found no linearisation record (for a
  /// step that offers records, each re-linearises its step: one more forward).
  long lastUnrecordedVisits() const { return last_unrecorded_; }
  /// Most linearisation records the binomial record cache held at once since the last
  /// forward pass (at most c).
  PetscInt lastPeakRecords() const { return last_peak_records_; }
  /// Most memory (bytes, this rank) the linearisation records held at once since the last
  /// forward pass: all K records with store-all, the record cache's peak with checkpoints.
  size_t lastPeakRecordBytes() const { return last_peak_record_bytes_; }
  /// Most checkpoint slots holding a state at once during the last reverse sweep.
  PetscInt lastPeakStored() const { return last_peak_stored_; }
  /// Slots available: K for store-all, c otherwise.
  PetscInt checkpointSlots() const { return static_cast<PetscInt>(slots_.size()); }

 private:
  using Visit = void (Simulator::*)(size_t k, Vec state, Vec in, Vec out);

  bool binomial() const { return binomial_; }
  /// Makes the recording that of x (recomputing unless it already is).
  void ensureRecorded(Vec x);
  /// Calls visit(k, x_k, ...) for k = K-1 ... 0, threading `first_in` through the
  /// visits into `last_out` (ping-pong through work vectors).
  void reverseSweep(Visit visit, Vec first_in, Vec last_out);
  using Records = std::vector<std::shared_ptr<const LinearisationRecord>>;
  void reverseSegment(size_t a, size_t b, size_t slot_a, size_t free_slots, bool fresh,
                      Visit visit);
  /// Advances the state in `from` (step index a) by n steps into `to`, offering each
  /// step's linearisation record to the record cache.
  void advance(size_t a, size_t n, Vec from, Vec to);
  /// Binomial sweeps: true when a record of step k would be kept, i.e. it is among the c
  /// records the sweep will use soonest (the highest steps not yet visited: the sweep
  /// visits downwards, so dropping the lowest is the optimal eviction).
  bool wantsRecord(size_t k) const;
  /// Keeps the record of step k (wantsRecord(k) was true), dropping the lowest if the
  /// cache is full; a null record is not kept.
  void keepRecord(size_t k, std::unique_ptr<LinearisationRecord> record);
  /// steps_[k]->forward(in, out), through forwardAndRecord where a record is wanted.
  std::unique_ptr<LinearisationRecord> runStep(size_t k, Vec in, Vec out, bool want_record);
  void visitVjp(size_t k, Vec state, Vec in, Vec out);
  void visitInverse(size_t k, Vec state, Vec in, Vec out);
  void callVisit(Visit visit, size_t k, Vec state);

  std::vector<std::shared_ptr<Step>> steps_;
  bool binomial_ = false;
  bool keep_records_ = true;     // CheckpointOptions::records
  std::vector<OwnedVec> slots_;  // store-all: slot k = x_k; binomial: checkpoints
  // Store-all: what forward(x_k) of step k left for its jvp/vjp (null if nothing).
  Records records_;
  // Binomial: at most c linearisation records by step, made wherever the forward pass or
  // an advance ran a step and used (then dropped) when the sweep visits it.
  std::map<size_t, std::shared_ptr<const LinearisationRecord>> record_cache_;
  std::vector<size_t> first_descent_;  // binomial: step indices stored by forward()
  OwnedVec last_input_;                // x_{K-1}, left by the forward pass
  OwnedVec recorded_at_;               // the x the recording belongs to
  bool recorded_ = false;
  OwnedVec adv_a_, adv_b_, rev_a_, rev_b_;  // advancing / reverse ping-pong
  // State of a running reverse sweep.
  Vec sweep_in_ = nullptr, sweep_out_ = nullptr;
  size_t sweep_visits_ = 0;
  PetscInt stored_now_ = 0;
  long last_recomputed_ = 0, last_unrecorded_ = 0;
  PetscInt last_peak_stored_ = 0, last_peak_records_ = 0;
  size_t last_peak_record_bytes_ = 0;
  StepCounts counts_;
};

}  // namespace physgrad
