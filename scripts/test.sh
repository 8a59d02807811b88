#!/usr/bin/env bash
# The one test command of this crate (see README):
#
#   scripts/test.sh [CARGO TEST ARGS...] [-- TEST BINARY ARGS...]
#
# Installs Apache Kafka if needed (scripts/kafka.sh install: Maven resolves it into
# ~/.cache/actix-kafka), starts one single-node KRaft cluster for the run unless
# KAFKA_TEST_BOOTSTRAP names one already, exports KAFKA_TEST_BOOTSTRAP, builds the programs the
# tests start as processes (examples/eos_pipeline.rs, the `actix-kafka` CLI), runs
#
#   cargo test --release --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --lib core::sim -- --nocapture
#   cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --lib --tests --examples [ARGS]
#   cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --doc [ARGS]
#
# and stops the cluster it started (by pid) at the end. Tests that kill, pause or restart
# brokers start clusters of their own (tests/common/kafka.rs) and stop them when done. When ARGS select targets themselves
# (--test NAME, --lib, --doc, --example, --bench, --bins, ...), a single
# `cargo test --release --no-fail-fast ARGS` is run instead. Examples:
#
#   scripts/test.sh                      # everything
#   scripts/test.sh --test harness       # one integration test file
#   scripts/test.sh -- --nocapture       # pass arguments to the test binaries
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

state_dir=""
finish() {
    local rc=$?
    if [[ -n "$state_dir" ]]; then
        KAFKA_STATE_DIR="$state_dir" bash scripts/kafka.sh stop >/dev/null 2>&1 || true
        rm -rf "$state_dir"
    fi
    if ((rc == 0)); then
        echo "scripts/test.sh: ALL TESTS PASSED ($((SECONDS - started)) s)"
    else
        echo "scripts/test.sh: TESTS FAILED (exit code ${rc}, $((SECONDS - started)) s)" >&2
    fi
}
trap finish EXIT
trap 'exit 143' TERM INT

bash scripts/kafka.sh install >/dev/null
if [[ -z "${KAFKA_TEST_BOOTSTRAP:-}" ]]; then
    state_dir="$(mktemp -d "${TMPDIR:-/tmp}/actix-kafka-test.XXXXXX")"
    out="$(KAFKA_STATE_DIR="$state_dir" bash scripts/kafka.sh start)"
    KAFKA_TEST_BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' <<<"$out")"
    echo "scripts/test.sh: Apache Kafka at ${KAFKA_TEST_BOOTSTRAP} (state ${state_dir})"
fi
export KAFKA_TEST_BOOTSTRAP

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

# Programs the tests run as child processes (tests/transactions.rs kills them with SIGKILL):
# the exactly-once example as a plain executable (`cargo test --examples` builds examples with
# the test harness) and the CLI.
cargo build --release --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --example eos_pipeline --bin actix-kafka

# --no-fail-fast: run every test binary even when one fails (the exit code still says so).
if ((selects_targets)); then
    cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry "$@"
else
    rc=0
    # The deterministic simulations first (the producer's cores; the same with a transactional
    # id), with their seed counts and times shown (SIM_SEEDS=n / SIM_TXN_SEEDS=n for more
    # seeds; a failing seed replays with SIM_SEED=s / SIM_TXN_SEED=s).
    if sim_out="$(cargo test --release --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --lib core::sim -- --nocapture 2>&1)"; then
        grep -E '^(transactional )?simulation:' <<<"$sim_out"
    else
        rc=1
        echo "$sim_out" | tail -n 60
    fi
    skip=(--skip core::sim::simulation --skip core::sim::transactional_simulation)
    if [[ " $* " == *" -- "* ]]; then
        cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --lib --tests --examples "$@" "${skip[@]}" || rc=$?
    else
        cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --lib --tests --examples "$@" -- "${skip[@]}" || rc=$?
    fi
    cargo test --release --no-fail-fast --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --doc "$@" || rc=$?
    exit "$rc"
fi
