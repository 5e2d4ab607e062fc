#!/usr/bin/env bash
# Quick start 1: install what is missing, build, and run the heat-equation inverse problem
# on 2 MPI ranks.  Extra arguments go to the driver (e.g. -n 512 -opt_type pg,lbfgs).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
install_dependencies
build_physgrad
cd "$PHYSGRAD_ROOT"
mpirun -n "${NP:-2}" --oversubscribe "$BUILD_DIR/problems/heat_inverse" "$@"
