#!/usr/bin/env bash
# Parallel scaling of the distributed steps: step_throughput at 1, 2, 4, ... ranks on one
# machine, strong (the same global grid at every rank count) and weak (the same number of
# points per rank), each rank count beside the STREAM-style triad of that many ranks, so
# that a memory-bound step can be judged against the bandwidth the ranks actually have.
# Usage: benchmarks/scaling.sh [max_ranks (default: nproc)] [n2 (default 4096)] [n3 (default 256)]
#   Strong scaling runs n2^2 and n3^3; weak scaling gives each rank (n2/2)^2 and (n3/2)^3
#   points (the global grid grows with the rank count, rounded to whole points per axis).
#   Results: scaling.md and scaling_{strong,weak}_np<r>.csv in $PHYSGRAD_RESULTS
#   (default benchmarks/results).
# Environment, for a machine where nothing can be installed or built (all optional):
#   PHYSGRAD_PREBUILT=1   skip the package check and the build; run what is there.
#   STEP_THROUGHPUT=path  the program to run (default $BUILD_DIR/benchmarks/step_throughput).
#   MPIRUN="cmd opts"     the launcher, split at blanks (default mpirun).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
usage_if_asked "$@"
max_ranks="${1:-$(nproc)}"
n2="${2:-4096}"
n3="${3:-256}"
for v in "$max_ranks" "$n2" "$n3"; do
  if ! [[ "$v" =~ ^[1-9][0-9]*$ ]]; then
    echo "scaling.sh: max_ranks, n2 and n3 must be positive integers (got '$v')" >&2
    exit 2
  fi
done
if [ "${PHYSGRAD_PREBUILT:-0}" != 1 ]; then
  install_dependencies
  build_physgrad
fi
program="${STEP_THROUGHPUT:-$BUILD_DIR/benchmarks/step_throughput}"
read -r -a launcher <<<"${MPIRUN:-mpirun}"
if [ ! -x "$program" ]; then
  echo "scaling.sh: $program is not an executable program" >&2
  exit 2
fi
out="${PHYSGRAD_RESULTS:-$PHYSGRAD_ROOT/benchmarks/results}"
mkdir -p "$out"
steps=explicit_diffusion,upwind_advection,sl_cubic_advection,sl_cubic_advection_vortex,burgers_self_advection,be_diffusion

# 1, 2, 4, ... up to max_ranks, and max_ranks itself.
ranks=()
for ((r = 1; r < max_ranks; r *= 2)); do ranks+=("$r"); done
ranks+=("$max_ranks")

run() {  # run <kind> <ranks> <n2> <n3>
  "${launcher[@]}" -n "$2" "$program" -n2 "$3" -n3 "$4" -reps 5 \
    -gradient_steps 0 -steps "$steps" -output "$out/scaling_$1_np$2.csv" >/dev/null
}

for r in "${ranks[@]}"; do
  echo "strong scaling: $r rank(s), ${n2}^2 and ${n3}^3" >&2
  run strong "$r" "$n2" "$n3"
  # Weak: (n2/2)^2 and (n3/2)^3 points per rank.
  w2=$(awk -v n="$n2" -v r="$r" 'BEGIN { printf "%d", n / 2 * sqrt(r) + 0.5 }')
  w3=$(awk -v n="$n3" -v r="$r" 'BEGIN { printf "%d", n / 2 * r ^ (1 / 3) + 0.5 }')
  echo "weak scaling: $r rank(s), ${w2}^2 and ${w3}^3" >&2
  run weak "$r" "$w2" "$w3"
done

# One table per kind: time per step, speedup (strong) or efficiency (weak) against one
# rank, and the triad of the same ranks against one rank's triad.
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  for kind in strong weak; do
    echo
    if [ "$kind" = strong ]; then
      echo "Strong scaling (${n2}^2, ${n3}^3): speedup = t(1) / t(r); triad ratio = triad(r) / triad(1), the speedup a memory-bound step could reach."
    else
      echo "Weak scaling ((n2/2)^2 and (n3/2)^3 points per rank): efficiency = t(1) / t(r); triad ratio = triad(r) / triad(1) / r."
    fi
    echo
    echo "| step | dim | ranks | n | ms/step | $([ "$kind" = strong ] && echo speedup || echo efficiency) | triad GB/s | triad ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for r in "${ranks[@]}"; do tail -n +2 "$out/scaling_${kind}_np$r.csv"; done |
      awk -F, -v kind="$kind" '
        { key = $4 "," $2; t = $5; triad = $9
          if ($1 == 1) { t1[key] = t; triad1[key] = triad }
          rows[NR] = $0 }
        END {
          for (i = 1; i <= NR; ++i) {
            split(rows[i], f, ","); key = f[4] "," f[2]
            s = (key in t1 && f[5] > 0) ? t1[key] / f[5] : 0
            q = (key in triad1 && triad1[key] > 0) ? f[9] / triad1[key] : 0
            if (kind == "weak") q = q / f[1]
            printf "%s|%s|%s|%s|%.3f|%.2f|%.1f|%.2f\n", f[4], f[2], f[1], f[3], 1e3 * f[5], s, f[9], q
          }
        }' | sort -t'|' -k1,1 -k2,2n -k3,3n |
      awk -F'|' '{ printf "| %s | %sD | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  done
} | tee "$out/scaling.md"
