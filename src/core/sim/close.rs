//! `close(timeout)` in the simulation: in a share of the plain seeds (drawn from a generator of
//! their own, so the other seeds keep every choice) the application closes the producer while
//! records are on their way, with a timeout of 0, a few milliseconds, up to twice
//! `delivery.timeout.ms`, or `Duration::MAX`, and the harness runs `Producer::close_from`'s
//! sequence against the cores: sends are refused from then on; every accumulator gets a
//! `FlushBatch` and the close waits for the flush until 80% of the timeout (saturated: a
//! `Duration::MAX` never overflows); if the flush has not returned by then, every accumulator
//! and the sender core are aborted with `Closed` (queued batches and records fail at once), and
//! the close waits for the pending count to reach zero until the timeout; then the actors stop:
//! each accumulator's `stopped`, the sender core and the connections dropped with what they
//! hold (a batch dropped without a result fails `Closed`).
//!
//! Invariants: the close ends by its timeout (never later; with `Duration::MAX` once every
//! record has its outcome); when it has ended every record has exactly one outcome (the plain
//! end-of-seed checks: none lost, none twice, none after `delivery.timeout.ms`, a delivered one
//! in the log at its offset); a close that returned from its flush had every record delivered
//! or failed by the sender, not by the close.

use super::*;

/// What the close model did over a run of seeds (printed by `simulation`).
pub(super) static CLOSES: AtomicU64 = AtomicU64::new(0);
pub(super) static CLOSES_FLUSHED: AtomicU64 = AtomicU64::new(0);
pub(super) static CLOSES_ABORTED: AtomicU64 = AtomicU64::new(0);
pub(super) static RECORDS_CLOSED: AtomicU64 = AtomicU64::new(0);

/// When and how a seed closes.
#[derive(Debug, Clone, Copy)]
pub(super) struct CloseParams {
    pub(super) at_ms: u64,
    pub(super) timeout: Duration,
}

impl CloseParams {
    /// Whether seed `seed` closes the producer, when, and with what timeout.
    pub(super) fn for_seed(seed: u64, window_ms: u64, delivery_timeout_ms: u64) -> Option<Self> {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xc105_e000);
        if rng.u8(..4) != 0 {
            return None;
        }
        let timeout = match rng.u8(..5) {
            0 => Duration::ZERO,
            1 => Duration::from_millis(rng.u64(1..=50)),
            2 => Duration::MAX,
            _ => Duration::from_millis(rng.u64(1..=delivery_timeout_ms * 2)),
        };
        Some(CloseParams {
            at_ms: rng.u64(0..window_ms),
            timeout,
        })
    }
}

/// Where a close is.
pub(super) enum Closing {
    /// Waiting for the flush, until `abort_at` (ms; `None`: never, the timeout is too large to
    /// end before every record has its outcome).
    Flushing {
        flush: FlushWait,
        /// Records sent before the close (a send waiting for a mailbox slot may still get one
        /// after it: the flush does not wait for those).
        before: usize,
        deadline: Option<u64>,
    },
    /// Aborted; waiting for the pending count to reach zero until the close's deadline (an
    /// `Ev::CloseStop` then).
    Aborted,
    /// The actors stopped: the producer is gone.
    Stopped,
}

/// Milliseconds from now until `d` (saturated), `None` if that is past any run's horizon.
fn ms_after(now_ms: u64, d: Duration, horizon: u64) -> Option<u64> {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    now_ms.checked_add(ms).filter(|at| *at <= horizon)
}

impl Sim {
    /// The application calls `close(timeout)`.
    pub(super) fn close_start(&mut self, timeout: Duration) {
        if self.closing.is_some() {
            return;
        }
        CLOSES.fetch_add(1, Ordering::Relaxed);
        // As `close_from`: the deliver window is 80% of the timeout (saturated).
        let horizon = self.horizon_ms();
        let abort_at = ms_after(self.now_ms, timeout.mul_f64(0.8), horizon);
        let deadline = ms_after(self.now_ms, timeout, horizon);
        if self.trace {
            eprintln!(
                "{:>6} ms close({timeout:?}): abort at {abort_at:?}, deadline {deadline:?}",
                self.now_ms
            );
        }
        // Sends are refused from now on; then `flush`: a `FlushBatch` to every accumulator and
        // the wait.
        self.acc_flush();
        let flush = self.flush_future();
        let before = lock(&self.book).records.len();
        self.closing = Some(Closing::Flushing {
            flush,
            before,
            deadline,
        });
        if let Some(at) = abort_at {
            self.at(at, Ev::CloseAbort);
        }
        self.close_poll();
    }

    /// The deliver window ended before the flush returned: abort everything with `Closed`.
    pub(super) fn close_abort(&mut self) {
        let Some(Closing::Flushing { deadline, .. }) = &self.closing else {
            return;
        };
        let deadline = *deadline;
        CLOSES_ABORTED.fetch_add(1, Ordering::Relaxed);
        if self.trace {
            eprintln!("{:>6} ms close: flush not done, abort", self.now_ms);
        }
        let err = ProduceError::closed("producer closed before delivery");
        for partition in 0..self.p.partitions {
            let e = err.clone();
            self.acc_step(partition, move |c, now, out| c.abort(e, now, out));
        }
        self.core.abort(err);
        self.closing = Some(Closing::Aborted);
        if let Some(at) = deadline {
            self.at(at, Ev::CloseStop);
        }
    }

    /// After every step: a close whose flush returned, or whose records all have outcomes after
    /// the abort, stops the actors now.
    pub(super) fn close_poll(&mut self) {
        let stop = match &mut self.closing {
            Some(Closing::Flushing { flush, before, .. }) => poll_once(flush).then_some(*before),
            Some(Closing::Aborted) => (self.shared.pending.get() == 0).then_some(0),
            _ => None,
        };
        let Some(before) = stop else {
            return;
        };
        if matches!(self.closing, Some(Closing::Flushing { .. })) {
            CLOSES_FLUSHED.fetch_add(1, Ordering::Relaxed);
            // Every record sent before the close has its outcome, from the sender.
            let waiting = lock(&self.book).first_without_outcome(before);
            if let Some(i) = waiting {
                self.violation(format!(
                    "close's flush returned at {} ms while record {i} has no outcome",
                    self.now_ms
                ));
            }
        }
        self.close_stop();
    }

    /// The actors stop: what they hold fails `Closed`; the run ends here.
    pub(super) fn close_stop(&mut self) {
        if matches!(self.closing, Some(Closing::Stopped) | None) {
            return;
        }
        if self.trace {
            eprintln!("{:>6} ms close: the actors stop", self.now_ms);
        }
        let before = self.records_without_outcome();
        for partition in 0..self.p.partitions {
            self.acc_step(partition, |c, _, out| c.stopped(out));
        }
        if let Some(a) = self.acc.as_mut() {
            a.stop();
        }
        // The sender and the connections go with their arbiter: every batch they hold is
        // dropped (and fails `Closed`), their outcomes carried out first.
        self.core.settle_now(&self.shared);
        let config = Arc::new(self.p.config());
        drop(std::mem::replace(&mut self.core, SenderCore::new(config)));
        self.conns.clear();
        self.unwritten.clear();
        self.closing = Some(Closing::Stopped);
        RECORDS_CLOSED.fetch_add(before as u64, Ordering::Relaxed);
        // Nothing runs after the producer is gone.
        self.events.clear();
        self.poll_flushes();
        let waiting = self.records_without_outcome();
        if waiting > 0 {
            self.violation(format!(
                "{waiting} records without an outcome once close returned at {} ms",
                self.now_ms
            ));
        }
    }

    fn records_without_outcome(&self) -> usize {
        lock(&self.book)
            .records
            .iter()
            .filter(|r| r.outcome.is_none())
            .count()
    }

    /// `send` refuses records once the producer is closing.
    pub(super) fn closed(&self) -> bool {
        self.closing.is_some()
    }
}
