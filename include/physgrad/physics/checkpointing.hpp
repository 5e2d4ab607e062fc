#pragma once
// Binomial checkpointing (the schedule of Griewank's revolve) for reversing K steps with
// at most c stored states.  Debian's PETSc has no revolve, so the schedule is computed
// here.  Model: one step at a time; the reverse sweep visits step k with its input state
// x_k; stored states are checkpoints ("snapshots"), the state being advanced is not.

#include <cstdint>

namespace physgrad {
namespace checkpointing {

/// beta(s, r) = (s + r)! / (s! r!), saturating at INT64_MAX.
int64_t binomial(int64_t s, int64_t r);

/// Minimal number of forward steps needed to visit steps l-1, ..., 0 in reverse order,
/// given the state at step 0 stored in one of s >= 1 checkpoint slots (Griewank 1992):
/// t = r l - beta(s + 1, r - 1) with r the integer such that beta(s, r-1) < l <= beta(s, r).
/// t(l, 1) = l (l - 1) / 2 and t(l, s) = l - 1 for s >= l - 1.
int64_t minimalForwardSteps(int64_t l, int64_t s);

/// Where to place the next checkpoint when reversing l >= 2 steps with s >= 2 slots: the
/// m in [1, l - 1] minimising m + t(l - m, s - 1) + t(m, s).
int64_t optimalSplit(int64_t l, int64_t s);

}  // namespace checkpointing
}  // namespace physgrad
