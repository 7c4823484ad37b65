#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 60), seeded from fuzz/seeds/TARGET.
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags.
#   bash tools/fuzz.sh 600          # ten minutes per target
#   bash tools/fuzz.sh 60 amf0      # one target
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O
log=$(mktemp)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  if cargo fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz $t: ${secs}s clean, $runs runs"
  else
    tail -40 "$log" >&2
    echo "FUZZ FAILURE in $t (crash input under fuzz/artifacts/$t)" >&2
    exit 1
  fi
done
rm -f "$log"
