#!/usr/bin/env bash
# Runs the benchmarks whose tables README.md quotes; results go to benchmarks/results/.
#   step throughput beside a STREAM triad, at 1 and 2 ranks: every step at 4096^2 and
#   256^3 (advection with a constant velocity: one stencil for all points), the
#   interpolating steps with a Taylor-Green vortex (per-point stencil tables) at 2048^2 and
#   128^3, and the gradient/forward cost ratios (K = 64 steps on 512^2 and on 64^3);
#   the explicit stencil with streaming stores always on and always off, beside a plain loop;
#   the optimiser race on the heat inverse problem (who reaches which error how fast).
# Usage: benchmarks/run_benchmarks.sh [max_ranks (default 2)] [part ...]
#   parts: throughput (step_throughput.md), tables (step_throughput_b.md: per-point tables
#   and gradient ratios), explicit (explicit_reference.md), race (heat_race/); default all.
# Results go to $PHYSGRAD_RESULTS when set (e.g. to keep another machine's run apart).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
usage_if_asked "$@"
max_ranks="${1:-2}"
if ! [[ "$max_ranks" =~ ^[1-9][0-9]*$ ]]; then
  echo "run_benchmarks.sh: max_ranks must be a positive integer (got '$max_ranks')" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(throughput tables explicit race)
for part in "${parts[@]}"; do
  case "$part" in
    throughput | tables | explicit | race) ;;
    *)
      echo "run_benchmarks.sh: unknown part '$part' (allowed: throughput tables explicit race)" >&2
      exit 2
      ;;
  esac
done
wanted() { [[ " ${parts[*]} " == *" $1 "* ]]; }
throughput() { mpirun -n "$1" --oversubscribe "$BUILD_DIR/benchmarks/step_throughput" "${@:2}"; }
install_dependencies
build_physgrad
out="${PHYSGRAD_RESULTS:-$PHYSGRAD_ROOT/benchmarks/results}"
machine="$(nproc) cores:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
mkdir -p "$out"
if wanted throughput; then
  {
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $machine"
    for np in $(seq 1 "$max_ranks"); do
      throughput "$np" -n2 4096 -n3 256 \
        -reps 5 -gradient_steps 0 \
        -steps explicit_diffusion,be_diffusion,cn_diffusion,spectral_diffusion,poisson,upwind_advection,sl_linear_advection,sl_cubic_advection,maccormack_advection,burgers_self_advection \
        -output "$out/step_throughput_np${np}_a.csv"
    done
  } | tee "$out/step_throughput.md"
fi
if wanted tables; then
  {
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $machine: advection with per-point tables; gradient/forward ratios"
    for np in $(seq 1 "$max_ranks"); do
      # A velocity that varies in space: per-point stencil tables (hundreds of bytes per point
      # in 3D), so these run smaller.
      throughput "$np" -n2 2048 -n3 128 \
        -reps 5 -gradient_steps 64 -gradient_n 512 -gradient_n3 64 -gradient_reps 9 \
        -steps upwind_advection_vortex,sl_linear_advection_vortex,sl_cubic_advection_vortex,maccormack_advection_vortex \
        -gradient_types explicit_diffusion,be_diffusion,sl_cubic_advection,sl_linear_advection_vortex,sl_cubic_advection_vortex,maccormack_advection,maccormack_advection_vortex,burgers_self_advection \
        -output "$out/step_throughput_np${np}_b.csv"
    done
  } | tee "$out/step_throughput_b.md"
fi
if wanted explicit; then
  {
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $machine: the explicit stencil with and without streaming stores"
    for np in $(seq 1 "$max_ranks"); do
      for mode in always never; do
        throughput "$np" -n2 4096 -n3 256 \
          -reps 10 -gradient_steps 0 -steps explicit_diffusion -streaming_stores "$mode" \
          -output "$out/explicit_reference_np${np}_${mode}.csv"
      done
    done
  } | tee "$out/explicit_reference.md"
fi
if wanted race; then
  mpirun -n "$max_ranks" --oversubscribe "$BUILD_DIR/problems/heat_inverse" -n 256 \
    -opt_type gd,gd_armijo,lbfgs,bncg,gn,ig,hig,pg,lbfgs_inv -opt_max_it 200 \
    -opt_time_budget 60 -opt_target_error 1e-6 -opt_monitor 0 -write_fields 0 \
    -output_dir "$out/heat_race" | tee "$out/heat_race.md"
fi
