#include "physgrad/physics/simulator.hpp"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <set>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/checkpointing.hpp"

namespace physgrad {

namespace {
PetscErrorCode readCheckpointOptions(MPI_Comm comm, CheckpointOptions* o) {
  PetscFunctionBeginUser;
  PetscBool flag = PETSC_TRUE, set = PETSC_FALSE;
  PetscOptionsBegin(comm, nullptr, "Reverse-sweep memory", nullptr);
  PetscCall(PetscOptionsInt("-checkpoints",
                            "States stored for reverse sweeps of nonlinear simulators: 0 = all "
                            "K, c >= 1 = at most c with binomial recomputation",
                            nullptr, o->checkpoints, &o->checkpoints, nullptr));
  PetscCall(PetscOptionsBool(
      "-checkpoint_records",
      "Also keep the steps' linearisation records (K with store-all, at most c with "
      "checkpoints), so that reverse sweeps do not recompute them; self-advection records "
      "take dim^2 doubles per point (2x the state in 2D, 3x in 3D)",
      nullptr, o->records ? PETSC_TRUE : PETSC_FALSE, &flag, &set));
  if (set) o->records = flag == PETSC_TRUE;
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}
}  // namespace

CheckpointOptions CheckpointOptions::fromCommandLine(MPI_Comm comm) {
  CheckpointOptions o;
  PG_CALL(readCheckpointOptions(comm, &o));
  if (o.checkpoints < 0) {
    throw InputError("option -checkpoints must be >= 0 (0: store all states; got " +
                     std::to_string(o.checkpoints) + ")");
  }
  return o;
}

Simulator::Simulator(const Grid& grid, std::vector<std::shared_ptr<Step>> steps,
                     CheckpointOptions checkpointing)
    : Step(grid), steps_(std::move(steps)) {
  if (steps_.empty()) throw InputError("a simulator needs at least one step");
  for (const auto& s : steps_) {
    if (!s) throw InputError("a simulator step is null");
    if (&s->grid() != &grid) throw InputError("all steps of a simulator must share its grid");
  }
  if (checkpointing.checkpoints < 0) {
    throw InputError("option -checkpoints must be >= 0 (0: store all states; got " +
                     std::to_string(checkpointing.checkpoints) + ")");
  }
  const size_t K = steps_.size();
  keep_records_ = checkpointing.records;
  binomial_ = checkpointing.checkpoints > 0 && static_cast<size_t>(checkpointing.checkpoints) < K;
  const size_t nslots = binomial_ ? static_cast<size_t>(checkpointing.checkpoints) : K;
  if (!isLinear()) {
    for (size_t k = 0; k < nslots; ++k) slots_.push_back(grid.createGlobal());
  }
  if (binomial_) {
    // The forward pass stores the checkpoints of the schedule's first descent; the
    // reverse sweep then starts from them instead of recomputing.
    size_t a = 0, free = nslots - 1;
    while (K - a > 1 && free > 0) {
      a += static_cast<size_t>(
          checkpointing::optimalSplit(static_cast<int64_t>(K - a), static_cast<int64_t>(free + 1)));
      first_descent_.push_back(a);
      --free;
    }
  }
  last_input_ = grid.createGlobal();
  recorded_at_ = grid.createGlobal();
  adv_a_ = grid.createGlobal();
  adv_b_ = grid.createGlobal();
  rev_a_ = grid.createGlobal();
  rev_b_ = grid.createGlobal();
}

std::string Simulator::name() const {
  return std::to_string(steps_.size()) + " x " + steps_.front()->name();
}

bool Simulator::isLinear() const {
  for (const auto& s : steps_)
    if (!s->isLinear()) return false;
  return true;
}

bool Simulator::hasSelfAdjointSteps() const {
  for (const auto& s : steps_)
    if (!s->isSelfAdjoint()) return false;
  return true;
}

void Simulator::inverseTranspose(Vec v, Vec z) {
  if (!hasSelfAdjointSteps()) {
    throw NotImplemented("inverseTranspose needs linear self-adjoint steps; simulator '" + name() +
                         "' has others");
  }
  const size_t K = steps_.size();
  Vec in = v;
  for (size_t k = 0; k < K; ++k) {
    Vec out = k + 1 == K ? z : (k % 2 == 0 ? rev_a_.get() : rev_b_.get());
    steps_[k]->inverse(nullptr, in, out);
    ++counts_.inverse;
    in = out;
  }
}

void Simulator::forward(Vec x, Vec y) {
  const size_t K = steps_.size();
  const bool record = !slots_.empty();
  size_t next_checkpoint = 0;  // index into first_descent_
  // Until this pass completes (it may throw part-way), the slots describe no x.
  recorded_ = false;
  if (record) PG_CALL(VecCopy(x, slots_[0]));
  if (record && !binomial_) {
    records_.clear();
    records_.resize(K);
  }
  record_cache_.clear();
  last_peak_records_ = 0;
  last_peak_record_bytes_ = 0;
  Vec in = x;
  for (size_t k = 0; k < K; ++k) {
    if (k + 1 == K && record) {
      PG_CALL(VecCopy(in, last_input_));
      in = last_input_;
    }
    Vec out;
    if (k + 1 == K) {
      out = y;
    } else if (record && !binomial_) {
      out = slots_[k + 1];
    } else if (record && next_checkpoint < first_descent_.size() &&
               first_descent_[next_checkpoint] == k + 1) {
      out = slots_[1 + next_checkpoint++];
    } else {
      out = (in == adv_a_.get()) ? adv_b_.get() : adv_a_.get();
    }
    // Binomial: the sweep's record cache ends the pass holding the last c steps' records
    // (the ones its policy would keep), so only those are made.
    const bool keep_in_cache = binomial_ && k + slots_.size() >= K && wantsRecord(k);
    auto made = runStep(k, in, out, (record && !binomial_ && keep_records_) || keep_in_cache);
    if (record && !binomial_ && made) {
      last_peak_record_bytes_ += made->bytes();
      records_[k] = std::move(made);
    }
    if (keep_in_cache) keepRecord(k, std::move(made));
    in = out;
  }
  if (record) {
    PG_CALL(VecCopy(x, recorded_at_));
    recorded_ = true;
  }
}

void Simulator::ensureRecorded(Vec x) {
  if (slots_.empty()) return;  // linear steps ignore the linearisation point
  PetscBool same = PETSC_FALSE;
  if (recorded_) PG_CALL(VecEqual(x, recorded_at_, &same));
  if (!same) {
    // The output is not wanted; rev_b_ is free until the sweep starts.
    forward(x, rev_b_);
  }
}

bool Simulator::wantsRecord(size_t k) const {
  const size_t capacity = slots_.size();
  if (!keep_records_ || capacity == 0 || record_cache_.count(k)) return false;
  // Full: the record used last (the lowest step: the sweep visits steps downwards) would
  // go, unless that is the one on offer.
  return record_cache_.size() < capacity || record_cache_.begin()->first < k;
}

void Simulator::keepRecord(size_t k, std::unique_ptr<LinearisationRecord> record) {
  if (!record) return;
  if (record_cache_.size() == slots_.size()) record_cache_.erase(record_cache_.begin());
  record_cache_.emplace(k, std::move(record));
  last_peak_records_ = std::max(last_peak_records_, static_cast<PetscInt>(record_cache_.size()));
  size_t bytes = 0;
  for (const auto& kept : record_cache_) bytes += kept.second->bytes();
  last_peak_record_bytes_ = std::max(last_peak_record_bytes_, bytes);
}

std::unique_ptr<LinearisationRecord> Simulator::runStep(size_t k, Vec in, Vec out,
                                                        bool want_record) {
  std::unique_ptr<LinearisationRecord> record;
  if (want_record)
    record = steps_[k]->forwardAndRecord(in, out);
  else
    steps_[k]->forward(in, out);
  ++counts_.forward;
  return record;
}

void Simulator::advance(size_t a, size_t n, Vec from, Vec to) {
  // Intermediate states alternate between `to` and another buffer, by parity, so that
  // the last one lands in `to` and no step reads and writes the same Vec.
  Vec other = to == adv_a_.get() ? adv_b_.get() : adv_a_.get();
  // The cache ends this advance holding the c highest steps among those it holds and those
  // advanced through: only their records are made (a record made and then evicted within
  // the advance is wasted work, which for self-advection is most of a forward step).
  std::set<size_t> candidates;
  for (const auto& kept : record_cache_) candidates.insert(kept.first);
  for (size_t i = 0; i < n; ++i) candidates.insert(a + i);
  size_t lowest_kept = 0;
  if (!slots_.empty() && candidates.size() > slots_.size())
    lowest_kept = *std::next(candidates.rbegin(), static_cast<std::ptrdiff_t>(slots_.size()) - 1);
  Vec in = from;
  for (size_t i = 0; i < n; ++i) {
    Vec out = (n - 1 - i) % 2 == 0 ? to : other;
    const bool keep = a + i >= lowest_kept && wantsRecord(a + i);
    auto made = runStep(a + i, in, out, keep);
    ++counts_.recomputed;
    ++last_recomputed_;
    if (keep) keepRecord(a + i, std::move(made));
    in = out;
  }
}

void Simulator::callVisit(Visit visit, size_t k, Vec state) {
  Vec in = sweep_visits_ == 0 ? sweep_in_ : (sweep_visits_ % 2 ? rev_a_.get() : rev_b_.get());
  Vec out = k == 0 ? sweep_out_ : (sweep_visits_ % 2 ? rev_b_.get() : rev_a_.get());
  if (binomial_ && !slots_.empty()) {
    auto cached = record_cache_.find(k);
    if (cached != record_cache_.end()) {
      steps_[k]->restoreLinearisation(cached->second, state);
      record_cache_.erase(cached);  // a step is visited once per sweep
    } else {
      ++last_unrecorded_;
    }
  }
  (this->*visit)(k, state, in, out);
  ++sweep_visits_;
}

void Simulator::reverseSegment(size_t a, size_t b, size_t slot_a, size_t free_slots, bool fresh,
                               Visit visit) {
  const size_t l = b - a;
  if (l == 1) {
    callVisit(visit, a, slots_[slot_a]);
    return;
  }
  if (free_slots == 0) {
    // One slot: recompute from x_a for every step of the segment.  In a fresh sweep the
    // input of the last step is still held from the forward pass.  The linearisation
    // records of the steps these advances pass through land in the record cache.
    for (size_t j = b; j-- > a;) {
      if (j == a) {
        callVisit(visit, a, slots_[slot_a]);
      } else if (fresh && j == b - 1) {
        callVisit(visit, j, last_input_);
      } else {
        advance(a, j - a, slots_[slot_a], adv_a_);
        callVisit(visit, j, adv_a_);
      }
    }
    return;
  }
  const size_t m = static_cast<size_t>(
      checkpointing::optimalSplit(static_cast<int64_t>(l), static_cast<int64_t>(free_slots + 1)));
  const size_t slot_new = slot_a + 1;
  // In a fresh sweep the forward pass already stored x_{a+m} in slot_new (the first
  // descent uses slots 1, 2, ... in order, exactly as this recursion does).
  if (!fresh) advance(a, m, slots_[slot_a], slots_[slot_new]);
  ++stored_now_;
  last_peak_stored_ = std::max(last_peak_stored_, stored_now_);
  reverseSegment(a + m, b, slot_new, free_slots - 1, fresh, visit);
  --stored_now_;
  reverseSegment(a, a + m, slot_a, free_slots, false, visit);
}

void Simulator::reverseSweep(Visit visit, Vec first_in, Vec last_out) {
  const size_t K = steps_.size();
  sweep_in_ = first_in;
  sweep_out_ = last_out;
  sweep_visits_ = 0;
  last_recomputed_ = 0;
  last_unrecorded_ = 0;
  if (slots_.empty()) {  // linear: states are not needed
    for (size_t k = K; k-- > 0;) callVisit(visit, k, nullptr);
    last_peak_stored_ = 0;
    return;
  }
  if (!binomial_) {
    for (size_t k = K; k-- > 0;) {
      Vec state = k + 1 == K ? last_input_.get() : slots_[k].get();
      if (records_[k]) steps_[k]->restoreLinearisation(records_[k], state);
      callVisit(visit, k, state);
    }
    last_peak_stored_ = static_cast<PetscInt>(K);
    return;
  }
  stored_now_ = 1;  // x_0
  last_peak_stored_ = 1;
  reverseSegment(0, K, 0, slots_.size() - 1, true, visit);
  record_cache_.clear();
  // The sweep reused the slots for later checkpoints: the recording is spent, and a
  // further sweep at the same x starts with a fresh forward pass.
  recorded_ = false;
}

void Simulator::visitVjp(size_t k, Vec state, Vec in, Vec out) {
  steps_[k]->vjp(state, in, out);
  ++counts_.vjp;
}

void Simulator::visitInverse(size_t k, Vec state, Vec in, Vec out) {
  steps_[k]->inverse(state, in, out);
  ++counts_.inverse;
}

void Simulator::jvp(Vec x, Vec dx, Vec dy) {
  const size_t K = steps_.size();
  ensureRecorded(x);
  // Store-all and linear simulators have the states (or need none); with checkpoints the
  // states are re-advanced alongside the tangent, each step run forward before its jvp so
  // that the jvp finds the step linearised at its state (the last step, which is not
  // re-run, takes its record from the forward pass where the cache holds it).
  Vec state = binomial_ ? slots_[0].get() : nullptr;
  Vec in = dx;
  for (size_t k = 0; k < K; ++k) {
    Vec s = nullptr;
    if (!slots_.empty()) s = binomial_ ? state : (k + 1 == K ? last_input_.get() : slots_[k].get());
    Vec out = k + 1 == K ? dy : (k % 2 == 0 ? rev_a_.get() : rev_b_.get());
    if (!binomial_ && !slots_.empty() && records_[k])
      steps_[k]->restoreLinearisation(records_[k], s);
    Vec next = nullptr;
    if (binomial_ && k + 1 < K) {
      next = (state == adv_a_.get()) ? adv_b_.get() : adv_a_.get();
      steps_[k]->forward(state, next);
      ++counts_.forward;
      ++counts_.recomputed;
    } else if (binomial_) {
      auto cached = record_cache_.find(k);
      if (cached != record_cache_.end()) steps_[k]->restoreLinearisation(cached->second, s);
    }
    steps_[k]->jvp(s, in, out);
    ++counts_.jvp;
    if (next) state = next;
    in = out;
  }
}

void Simulator::vjp(Vec x, Vec w, Vec wx) {
  ensureRecorded(x);
  reverseSweep(&Simulator::visitVjp, w, wx);
}

void Simulator::inverse(Vec x0, Vec y, Vec x) {
  ensureRecorded(x0);
  reverseSweep(&Simulator::visitInverse, y, x);
}

}  // namespace physgrad
