#!/usr/bin/env bash
# Runs the record-batch tests that exercise the crate's two `unsafe` blocks (the writer's
# `put_slice` and `set_len` in src/protocol/record_batch.rs) under Miri, which checks them for
# undefined behaviour. Opt-in (not in CI): needs the nightly toolchain with the `miri` and
# `rust-src` components (`rustup component add --toolchain nightly miri rust-src`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" cargo +nightly miri test --lib -- \
    protocol::record_batch::tests::single_record protocol::record_batch::tests::headers_round_trip \
    protocol::record_batch::tests::thousand_records protocol::record_batch::tests::large_values \
    protocol::record_batch::tests::try_append_respects protocol::record_batch::tests::unsealed_then_patched \
    protocol::record_batch::tests::null_value
