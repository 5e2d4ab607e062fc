#pragma once
// Internal to src/io: file systems are touched on rank 0 only, so its errors must reach
// every rank before the next collective call.

#include <mpi.h>

#include <string>

#include "physgrad/core/error.hpp"

namespace physgrad::io_detail {

inline int rankOf(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  return rank;
}

/// Broadcasts rank 0's error message (empty: success) and throws it as InputError on every
/// rank.  The broadcast also orders everything rank 0 did before it ahead of everything the
/// others do after it.
inline void raiseRootError(MPI_Comm comm, const std::string& root_message) {
  std::string message = rankOf(comm) == 0 ? root_message : std::string();
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, comm);
  message.resize(static_cast<size_t>(length));
  if (length > 0) MPI_Bcast(message.data(), length, MPI_CHAR, 0, comm);
  if (length > 0) throw InputError(message);
}

}  // namespace physgrad::io_detail
