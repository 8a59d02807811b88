#!/usr/bin/env bash
# The one test command of this crate (see README):
#
#   scripts/test.sh [CARGO TEST ARGS...] [-- TEST BINARY ARGS...]
#
# Installs the Tansu broker used by the integration tests if needed (scripts/tansu.sh install,
# cached in ${TANSU_ROOT:-$HOME/.cache/actix-kafka/tansu}), exports TANSU_BIN, then runs
#
#   cargo test --release --no-fail-fast --lib --tests --examples [ARGS]
#   cargo test --release --no-fail-fast --doc [ARGS]
#
# The tests start their own brokers (tests/common). When ARGS select targets themselves
# (--test NAME, --lib, --doc, --example, --bench, --bins, ...), a single
# `cargo test --release --no-fail-fast ARGS` is run instead. Examples:
#
#   scripts/test.sh                      # everything
#   scripts/test.sh --test harness       # one integration test file
#   scripts/test.sh -- --nocapture       # pass arguments to the test binaries
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

finish() {
    local rc=$?
    if ((rc == 0)); then
        echo "scripts/test.sh: ALL TESTS PASSED ($((SECONDS - started)) s)"
    else
        echo "scripts/test.sh: TESTS FAILED (exit code ${rc}, $((SECONDS - started)) s)" >&2
    fi
}
trap finish EXIT

TANSU_BIN="$(bash scripts/tansu.sh install | sed -n 's/^TANSU_BIN=//p' | tail -n 1)"
[[ -n "$TANSU_BIN" && -x "$TANSU_BIN" ]] || { echo "scripts/test.sh: tansu is not installed" >&2; exit 1; }
export TANSU_BIN
echo "scripts/test.sh: using $("$TANSU_BIN" --version) at ${TANSU_BIN}"

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# Does the caller pick the targets? (Only cargo's own arguments count, not those after `--`.)
selects_targets=0
for arg in "$@"; do
    [[ "$arg" == "--" ]] && break
    case "$arg" in
        --lib | --bins | --bin | --bin=* | --examples | --example | --example=* | --tests | \
            --test | --test=* | --benches | --bench | --bench=* | --all-targets | --doc)
            selects_targets=1 ;;
    esac
done

# --no-fail-fast: run every test binary even when one fails (the exit code still says so).
if ((selects_targets)); then
    cargo test --release --no-fail-fast "$@"
else
    rc=0
    cargo test --release --no-fail-fast --lib --tests --examples "$@" || rc=$?
    cargo test --release --no-fail-fast --doc "$@" || rc=$?
    exit "$rc"
fi
