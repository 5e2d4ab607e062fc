#include "physgrad/physics/checkpointing.hpp"

#include <limits>
#include <numeric>
#include <stdexcept>

namespace physgrad {
namespace checkpointing {

int64_t binomial(int64_t s, int64_t r) {
  if (s < 0 || r < 0) return 0;
  // C(s + r, min(s, r)) by the multiplicative formula; every partial product is itself a
  // binomial coefficient, so the division is exact.
  const int64_t k = s < r ? s : r;
  const int64_t n = s + r;
  const int64_t max = std::numeric_limits<int64_t>::max();
  int64_t value = 1;  // C(n - k + i - 1, i - 1) before step i
  for (int64_t i = 1; i <= k; ++i) {
    // value * (n - k + i) / i, exactly: divide out the common factor of value and i
    // first; the rest of i then divides n - k + i.
    const int64_t g = std::gcd(value, i);
    const int64_t factor = (n - k + i) / (i / g);
    value /= g;
    if (value > max / factor) return max;
    value *= factor;
  }
  return value;
}

int64_t minimalForwardSteps(int64_t l, int64_t s) {
  if (l < 1 || s < 1) throw std::invalid_argument("minimalForwardSteps needs l >= 1, s >= 1");
  int64_t r = 0;
  while (binomial(s, r) < l) ++r;  // now beta(s, r - 1) < l <= beta(s, r)
  return r * l - binomial(s + 1, r - 1);
}

int64_t optimalSplit(int64_t l, int64_t s) {
  if (l < 2 || s < 2) throw std::invalid_argument("optimalSplit needs l >= 2, s >= 2");
  const int64_t target = minimalForwardSteps(l, s);
  int64_t best_m = 1;
  int64_t best = std::numeric_limits<int64_t>::max();
  for (int64_t m = 1; m < l; ++m) {
    const int64_t cost = m + minimalForwardSteps(l - m, s - 1) + minimalForwardSteps(m, s);
    if (cost < best) {
      best = cost;
      best_m = m;
    }
  }
  // The closed form and the recurrence it solves must agree; if not, the schedule would
  // not be the optimum it claims to be.
  if (best != target) throw std::logic_error("binomial checkpointing: recurrence mismatch");
  return best_m;
}

}  // namespace checkpointing
}  // namespace physgrad
