//! `purge` in the simulation: in a share of the plain seeds (drawn from a generator of their
//! own, so the other seeds keep every choice) the application purges once or twice while
//! records are on their way — what is queued only, or what is queued and in flight — and the
//! harness runs `Producer::purge`'s sequence against the cores: every accumulator's `purge`
//! (mailbox, open batch, batches waiting for a slot), then the sender core's, then its drain.
//!
//! The plain invariants cover it: every record gets exactly one outcome; a record purged with
//! `possibly_written: false` is not in the log (nor written later); with idempotence no record
//! is written twice and the written records of a partition keep their order, across the
//! producer-id reset a purged sequence needs; and the records sent after a purge are delivered
//! once the faults stop.

use super::*;

/// What the purge model did over a run of seeds (printed by `simulation`).
pub(super) static PURGES: AtomicU64 = AtomicU64::new(0);
pub(super) static PURGES_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
pub(super) static RECORDS_PURGED: AtomicU64 = AtomicU64::new(0);
pub(super) static RECORDS_PURGED_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// When seed `seed` purges (ms within `window`), and whether in flight too.
pub(super) fn purges_for_seed(seed: u64, window_ms: u64) -> Vec<(u64, bool)> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e_0e6e);
    if rng.u8(..4) != 0 {
        return Vec::new();
    }
    (0..rng.usize(1..=2))
        .map(|_| (rng.u64(0..window_ms), rng.bool()))
        .collect()
}

impl Sim {
    /// The application calls `purge` (`in_flight`: [`crate::Purge::QueuedAndInFlight`]). The
    /// event loop drains the sender core afterwards, as the `Sender` shell does.
    pub(super) fn purge(&mut self, in_flight: bool) {
        if self.closed() {
            // `purge` on a closed producer does nothing.
            return;
        }
        PURGES.fetch_add(1, Ordering::Relaxed);
        if in_flight {
            PURGES_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        }
        if self.trace {
            eprintln!("{:>6} ms purge (in flight: {in_flight})", self.now_ms);
        }
        for partition in 0..self.p.partitions {
            self.acc_step(partition, |c, _, out| c.purge(out));
        }
        self.core.purge(in_flight);
    }
}
