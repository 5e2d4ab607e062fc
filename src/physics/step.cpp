#include "physgrad/physics/step.hpp"

#include "physgrad/core/error.hpp"

namespace physgrad {

void Step::inverse(Vec, Vec, Vec) {
  throw NotImplemented("step '" + name() + "' provides no inverse");
}

}  // namespace physgrad
