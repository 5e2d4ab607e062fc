#include "physgrad/physics/simulator.hpp"

#include "physgrad/core/error.hpp"

namespace physgrad {

Simulator::Simulator(const Grid& grid, std::vector<std::shared_ptr<Step>> steps)
    : Step(grid), steps_(std::move(steps)) {
  if (steps_.empty()) throw InputError("a simulator needs at least one step");
  for (const auto& s : steps_) {
    if (!s) throw InputError("a simulator step is null");
    if (&s->grid() != &grid) throw InputError("all steps of a simulator must share its grid");
  }
  states_.reserve(steps_.size());
  for (size_t k = 0; k < steps_.size(); ++k) states_.push_back(grid.createGlobal());
  recorded_at_ = grid.createGlobal();
  work_a_ = grid.createGlobal();
  work_b_ = grid.createGlobal();
}

std::string Simulator::name() const {
  return std::to_string(steps_.size()) + " x " + steps_.front()->name();
}

bool Simulator::isLinear() const {
  for (const auto& s : steps_)
    if (!s->isLinear()) return false;
  return true;
}

void Simulator::forward(Vec x, Vec y) {
  PG_CALL(VecCopy(x, states_[0]));
  for (size_t k = 0; k < steps_.size(); ++k) {
    Vec out = k + 1 < steps_.size() ? states_[k + 1].get() : y;
    steps_[k]->forward(states_[k], out);
    ++counts_.forward;
  }
  PG_CALL(VecCopy(x, recorded_at_));
  recorded_ = true;
}

void Simulator::ensureTrajectory(Vec x) {
  if (isLinear()) return;  // linear steps ignore the linearisation point
  PetscBool same = PETSC_FALSE;
  if (recorded_) PG_CALL(VecEqual(x, recorded_at_, &same));
  if (!same) forward(x, work_b_);
}

void Simulator::jvp(Vec x, Vec dx, Vec dy) {
  ensureTrajectory(x);
  Vec in = dx;
  for (size_t k = 0; k < steps_.size(); ++k) {
    Vec out = k + 1 == steps_.size() ? dy : (k % 2 == 0 ? work_a_.get() : work_b_.get());
    steps_[k]->jvp(states_[k], in, out);
    ++counts_.jvp;
    in = out;
  }
}

void Simulator::vjp(Vec x, Vec w, Vec wx) {
  ensureTrajectory(x);
  Vec in = w;
  for (size_t r = 0; r < steps_.size(); ++r) {
    const size_t k = steps_.size() - 1 - r;
    Vec out = k == 0 ? wx : (r % 2 == 0 ? work_a_.get() : work_b_.get());
    steps_[k]->vjp(states_[k], in, out);
    ++counts_.vjp;
    in = out;
  }
}

void Simulator::inverse(Vec x0, Vec y, Vec x) {
  ensureTrajectory(x0);
  Vec in = y;
  for (size_t r = 0; r < steps_.size(); ++r) {
    const size_t k = steps_.size() - 1 - r;
    Vec out = k == 0 ? x : (r % 2 == 0 ? work_a_.get() : work_b_.get());
    steps_[k]->inverse(states_[k], in, out);
    ++counts_.inverse;
    in = out;
  }
}

}  // namespace physgrad
