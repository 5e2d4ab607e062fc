#pragma once
// The comparison harness: several optimisers on one problem, from the same x0 with the
// same budget (the options' iteration cap, time budget and tolerances apply to each),
// and the outputs a reader compares them by.

#include <string>
#include <vector>

#include "physgrad/optim/optimizer.hpp"

namespace physgrad {

struct ComparisonOptions {
  std::string output_dir;  ///< created if missing; empty: write nothing
  std::string title;       ///< over the figure and the table
  bool write_figure = true;
};

struct Comparison {
  std::vector<Summary> runs;
  std::vector<OwnedVec> solutions;  ///< final iterate of each run, in run order
};

/// Runs every optimiser of options.types from a copy of x0.  Writes into output_dir:
/// comparison.md and comparison.csv (one row per optimiser), history_<optimiser>.csv
/// (one row per iteration), and convergence.svg (loss and relative x-error against
/// iterations and against wall time; x-error panels only when the truth is known).
Comparison compareOptimizers(InverseProblem& problem, Vec x0, const OptimizerOptions& options,
                             const ComparisonOptions& comparison,
                             const IterationCallback& callback = {});

}  // namespace physgrad
