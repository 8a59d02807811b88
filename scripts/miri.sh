#!/usr/bin/env bash
# Runs the tests that exercise the crate's `unsafe` code (the record writer's `put_slice` and
# `set_len` in src/protocol/record_batch/writer.rs, the forwarding `unsafe impl BufMut` of
# src/protocol/frame.rs) and the shared delivery slots and mailbox under Miri, which checks
# them for undefined behaviour and data races. Opt-in (not in CI): needs the nightly toolchain with the `miri` and
# `rust-src` components (`rustup component add --toolchain nightly miri rust-src`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" cargo +nightly miri test --lib -- \
    protocol::record_batch::tests::single_record protocol::record_batch::tests::headers_round_trip \
    protocol::record_batch::tests::thousand_records protocol::record_batch::tests::large_values \
    protocol::record_batch::tests::try_append_respects protocol::record_batch::tests::unsealed_then_patched \
    protocol::record_batch::tests::null_value \
    protocol::frame::tests::segmented_produce_frames_equal_the_copied_ones_and_reference_the_batches \
    completion::tests mailbox::tests::one_wake_per_drain_and_order_kept
