#!/usr/bin/env bash
# Quick start 2: install what is missing, build, and run the whole test suite (every
# suite at 1, 2 and 4 MPI ranks) with CTest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
install_dependencies
build_physgrad
cd "$BUILD_DIR"
ctest --output-on-failure "$@"
