#pragma once
// The shape of every physgrad program: Environment first, errors reported once, a
// non-zero exit code, and no rank left waiting in a collective.

#include <functional>

namespace physgrad {

/// Constructs the Environment, runs `body`, and maps failures to exit codes:
/// - InputError (bad options; every rank sees the same options and fails alike): the
///   message is printed once on rank 0 and the program exits with status 2;
/// - any other exception: printed by the rank that raised it, then MPI_Abort, because the
///   other ranks may be blocked in a collective that will never complete.
int runMain(int argc, char** argv, const char* help, const std::function<int()>& body);

/// True when -help was given (the program should print its options and stop).
bool helpRequested();

}  // namespace physgrad
