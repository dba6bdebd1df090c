#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (fuzz/README.md): builds the cargo-fuzz targets, runs
# each for SECONDS (default 60), one after the other, and prints executions and coverage per
# target. Seeds come from fuzz/corpus/<target> and fuzz/regressions/<target> (read only); what
# libFuzzer finds goes to fuzz/work/<target>, a crash to fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Uses the nightly toolchain when rustup has one, else the default (stable) toolchain with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags); FUZZ_TOOLCHAIN=stable forces the latter.
# Installs cargo-fuzz from crates.io when it is missing. Exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
[ $# -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

cargo=(cargo)
target_dir=fuzz/target
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  # Stable rustc accepts the -Z flags cargo-fuzz passes when told it is bootstrapping itself.
  export RUSTC_BOOTSTRAP=1
  target_dir=fuzz/target/stable
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked </dev/null
fi

fuzz=("${cargo[@]}" fuzz)
opts=(--fuzz-dir fuzz --target-dir "$target_dir" -O -a)
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

"${fuzz[@]}" build "${opts[@]}" </dev/null

results=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  log="fuzz/work/$t.log"
  seeds=("fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
  echo "==> $t (${secs}s)" >&2
  status=ok
  # -rss_limit_mb/-malloc_limit_mb catch unbounded allocation, -timeout quadratic blow-ups.
  if ! "${fuzz[@]}" run "${opts[@]}" "$t" "fuzz/work/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=512 -timeout=5 \
    -print_final_stats=1 </dev/null >"$log" 2>&1; then
    status=CRASH
    failed=1
    grep -aE 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written to' "$log" >&2 || tail -20 "$log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  corpus=$(find "fuzz/work/$t" -type f | wc -l)
  results+=("$(printf '%-20s %-6s %12s   %-22s %6s' "$t" "$status" "${execs:-?}" "${cov:-?}" "$corpus")")
done

printf '\n%-20s %-6s %12s   %-22s %6s\n' target status executions coverage corpus
printf '%s\n' "${results[@]}"
exit "$failed"
