// GoogleTest main for MPI suites: PETSc is initialised before the tests and finalised
// after them; only rank 0 prints the test report, but every rank runs every test.
#include <gtest/gtest.h>

#include "physgrad/core/environment.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  physgrad::Environment env(&argc, &argv);
  if (!physgrad::isRoot()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int result = RUN_ALL_TESTS();
  // A failure on any rank fails the run on every rank.
  int global = 0;
  MPI_Allreduce(&result, &global, 1, MPI_INT, MPI_MAX, physgrad::Environment::comm());
  return global;
}
