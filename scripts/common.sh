# Shared by the scripts in this directory: install missing Debian packages, configure and
# build physgrad.  Source it; do not run it.
set -euo pipefail

PHYSGRAD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$PHYSGRAD_ROOT/build}"
PACKAGES=(g++ make cmake pkg-config petsc-dev libeigen3-dev libgtest-dev openmpi-bin
          libopenmpi-dev)

# mpirun as root, and more ranks than cores, are both normal here.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# With -h, -help or --help as its first argument: prints the calling script's leading
# comment (its usage) and exits.
usage_if_asked() {
  case "${1:-}" in
    -h | -help | --help)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
      exit 0
      ;;
  esac
}

install_dependencies() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build_physgrad() {
  cmake -S "$PHYSGRAD_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}
