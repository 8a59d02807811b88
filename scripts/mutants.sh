#!/usr/bin/env bash
# Mutation testing of the sans-IO cores (issue 19): cargo-mutants (crates.io) mutates the code
# under src/core/ and runs the library tests (the simulation included) against each mutant; a
# mutant the tests do not catch ("missed") is either a gap in the simulation's model or
# invariants, or equivalent to the original (say which in the report). Opt-in and slow (one
# rebuild per mutant): a file or a shard at a time on 2 cores.
#
# Usage: scripts/mutants.sh [FILE ...] [-- cargo-mutants options]
#   scripts/mutants.sh src/core/accumulator.rs
#   scripts/mutants.sh src/core/sender.rs -- --shard 0/8
# Installs cargo-mutants with `cargo install --locked cargo-mutants` if it is missing. Results
# in mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo mutants --version >/dev/null 2>&1 ||
    cargo install --locked cargo-mutants
files=()
while (($#)) && [[ "$1" != "--" ]]; do files+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
((${#files[@]})) || files=(src/core/*.rs)
args=()
for f in "${files[@]}"; do
    case "$f" in src/core/sim/*|src/core/mod.rs) continue ;; esac # the harness, not a core
    args+=(--file "$f")
done
# The library tests only (the simulation at its default 2000 seeds, the cores' unit tests and
# scenarios); the broker tests are not what judges a core.
rc=0
SIM_SEEDS="${SIM_SEEDS:-2000}" cargo mutants "${args[@]}" --features mock --profile mutants \
    --cargo-arg=--lib --timeout-multiplier 3 "$@" || rc=$?
echo "scripts/mutants.sh: caught $(wc -l <mutants.out/caught.txt), missed $(wc -l <mutants.out/missed.txt), timeout $(wc -l <mutants.out/timeout.txt 2>/dev/null || echo 0), unviable $(wc -l <mutants.out/unviable.txt 2>/dev/null || echo 0) (details: mutants.out/missed.txt)"
exit "$rc"
