#include <cstdio>
#include <sstream>

#include "physgrad/optim/optimizer.hpp"

namespace physgrad {

namespace {
std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}
}  // namespace

std::string Summary::briefReport() const {
  std::ostringstream os;
  os << optimizer << ": " << toString(termination) << " after " << iterations
     << " iterations, loss " << format("%.4e", initial_loss) << " -> "
     << format("%.4e", final_loss);
  if (has_truth) os << ", relative x-error " << format("%.3e", x_error.relative_l2);
  os << ", " << format("%.1f", solves.total()) << " PDE solves, " << format("%.3f", wall) << " s";
  return os.str();
}

std::string Summary::fullReport() const {
  std::ostringstream os;
  os << "Optimiser           " << optimizer << "\n"
     << "Termination         " << toString(termination)
     << (detail.empty() ? "" : " (" + detail + ")") << "\n"
     << "Iterations          " << iterations << "\n"
     << "Initial loss        " << format("%.6e", initial_loss) << "\n"
     << "Final loss          " << format("%.6e", final_loss) << "\n";
  if (has_truth) {
    os << "x-error, rel. L2    " << format("%.6e", x_error.relative_l2) << "\n"
       << "x-error, mean abs   " << format("%.6e", x_error.mean_abs) << "\n"
       << "x-error, sum abs    " << format("%.6e", x_error.sum_abs) << "\n";
  }
  os << "Simulator runs      forward " << format("%.1f", solves.forward) << ", adjoint "
     << format("%.1f", solves.adjoint) << ", tangent " << format("%.1f", solves.tangent)
     << ", inverse " << format("%.1f", solves.inverse) << "\n"
     << "Fallbacks           " << fallbacks << " (to IG " << fallbacks_ig << ", to GD "
     << fallbacks_gd << ")\n"
     << "Wall time           " << format("%.3f", wall) << " s\n";
  return os.str();
}

std::string comparisonTable(const std::vector<Summary>& runs) {
  std::ostringstream os;
  os << "| optimizer | iterations | final loss | rel. L2 x-error | mean abs x-error | simulator "
        "runs (F/A/T/I) | wall [s] | termination |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---|\n";
  for (const auto& s : runs) {
    os << "| " << s.optimizer << " | " << s.iterations << " | " << format("%.4e", s.final_loss)
       << " | " << (s.has_truth ? format("%.4e", s.x_error.relative_l2) : "-") << " | "
       << (s.has_truth ? format("%.4e", s.x_error.mean_abs) : "-") << " | "
       << format("%.0f", s.solves.total()) << " (" << format("%.0f", s.solves.forward) << "/"
       << format("%.0f", s.solves.adjoint) << "/" << format("%.0f", s.solves.tangent) << "/"
       << format("%.0f", s.solves.inverse) << ") | " << format("%.3f", s.wall) << " | "
       << toString(s.termination)
       << (s.fallbacks_ig ? ", " + std::to_string(s.fallbacks_ig) + " IG fallbacks" : "")
       << (s.fallbacks_gd ? ", " + std::to_string(s.fallbacks_gd) + " GD fallbacks" : "") << " |\n";
  }
  return os.str();
}

}  // namespace physgrad
