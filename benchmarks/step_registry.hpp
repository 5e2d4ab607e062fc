#pragma once
// The step types the benchmarks know, with the grid each runs on and its minimal memory
// traffic per grid point (0 for steps whose cost is an iterative solve: no single
// bandwidth figure describes them).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "physgrad/grid/grid.hpp"
#include "physgrad/physics/step.hpp"

namespace physgrad::benchmarks {

struct StepEntry {
  std::string name;
  std::function<bool(int dim)> supports;
  std::function<GridSpec(int dim, PetscInt n)> gridSpec;
  std::function<std::shared_ptr<Step>(const Grid&)> make;
  /// Minimal field traffic per grid point and field component (x read once, y written
  /// once: 16); 0 for solver steps, which have no single traffic model.
  double bytes_per_entry = 0.0;
};

const std::vector<StepEntry>& registry();
std::vector<std::string> stepNames();
std::string joinedNames();
/// Throws InputError listing the known names.
const StepEntry& findStep(const std::string& name);
/// A smooth field of amplitude ~1 (a few sine modes), the same for every rank count.
OwnedVec smoothField(const Grid& grid);

}  // namespace physgrad::benchmarks
