//! `RecordMailbox`: a partition accumulator's mailbox for records, bounded by
//! `mailbox.capacity`.
//!
//! A record does not travel as an actix message of its own. `send` pushes it onto its
//! partition's queue (one short lock) and sends the accumulator a [`Drain`] message only when
//! the accumulator has to look now: nothing is scheduled yet, and the partition has no open
//! batch waiting out its `linger.ms` — or the queue holds enough to fill that batch, or half of
//! `mailbox.capacity`. While a batch lingers, its linger timer drains the queue before it
//! closes the batch. The actor takes everything queued in one swap, so a busy partition costs
//! about one wake-up per batch, not one per record: the Java producer appends in the caller's
//! thread and wakes its sender only when a batch fills or a new one starts, for the same reason.
//!
//! The bound is counted: a record takes a slot before it is queued (one compare-and-swap; a
//! sender that finds the mailbox full parks on a `Notify`) and the accumulator gives slots back
//! once it has appended the records. While the accumulator holds back (its closed batches wait
//! for batch slots) the queue fills and senders wait: back-pressure is this limit.
//!
//! [`Drain`]: crate::actors::accumulator::Drain

use crate::batch::AppendRecord;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Set in `used` when the accumulator retired (see [`RecordMailbox::retire_if_unused`]): no
/// slot can be taken any more.
const RETIRED: usize = 1 << (usize::BITS - 1);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecordMailbox {
    /// Records queued (slots taken), including the ones the accumulator took but has not
    /// appended yet.
    used: AtomicUsize,
    capacity: usize,
    waiters: AtomicUsize,
    notify: Notify,
    queue: Mutex<Queue>,
    /// Queued records that wake a lingering accumulator (half the capacity).
    wake_count: usize,
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<AppendRecord>,
    /// Size estimate of the queued records, bytes (uncompressed).
    bytes: usize,
    /// A `Drain` is on its way: no other is needed.
    scheduled: bool,
    /// The accumulator has an open batch whose linger timer will drain the queue; only
    /// `wake_bytes` queued bytes (the room left in that batch) or `wake_count` records wake it
    /// sooner.
    lingering: bool,
    wake_bytes: usize,
    /// The accumulator stopped: nothing is queued any more.
    closed: bool,
}

/// What a push asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Send the accumulator a `Drain`: nothing was scheduled.
    Wake,
    /// A `Drain` is already on its way.
    Queued,
}

impl std::fmt::Debug for AppendRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRecord")
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl RecordMailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        RecordMailbox {
            used: AtomicUsize::new(0),
            capacity: capacity.max(1),
            waiters: AtomicUsize::new(0),
            notify: Notify::new(),
            queue: Mutex::new(Queue::default()),
            wake_count: (capacity / 2).max(1),
        }
    }

    /// The queue. A poisoned lock (a panic while it was held: no code here panics) still
    /// holds a consistent queue: every change under it is a single step.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Slots in use: records queued and not yet appended.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed) & !RETIRED
    }

    /// Whether the accumulator retired this mailbox: the caller looks the partition's
    /// accumulator up again (a new one is started).
    pub(crate) fn retired(&self) -> bool {
        self.used.load(Ordering::SeqCst) & RETIRED != 0
    }

    /// An idle accumulator retires its mailbox, if no slot is taken: one compare-and-swap from
    /// 0, so a sender either took its slot before (and the accumulator stays) or finds the
    /// mailbox retired and never queues into it. Waiting senders are woken to look again.
    pub(crate) fn retire_if_unused(&self) -> bool {
        if self
            .used
            .compare_exchange(0, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        self.lock().closed = true;
        self.notify.notify_waiters();
        true
    }

    /// Takes `n` (≤ capacity) slots if they are free.
    pub(crate) fn try_reserve(&self, n: usize) -> bool {
        // Compare-and-swap: a failed attempt leaves the count alone and wakes nobody (an
        // add-then-undo would notify the waiters, this caller included, and spin).
        // SeqCst: a waiter's `waiters` increment and `used` read must not pass a releaser's
        // `used` decrement and `waiters` read (store buffering would lose the wake-up).
        let mut cur = self.used.load(Ordering::SeqCst);
        loop {
            if cur + n > self.capacity {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes as many of `n` slots as are free now (0 if none): a caller with many records
    /// queues what fits and waits for the rest, instead of waiting for `n` free at one instant
    /// (which steady single sends could starve).
    pub(crate) fn try_reserve_up_to(&self, n: usize) -> usize {
        let mut cur = self.used.load(Ordering::SeqCst);
        loop {
            let take = n.min(self.capacity.saturating_sub(cur));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return take,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Waits until at least one of `n` slots is free and takes as many as are (at most `n`);
    /// 0 at once if the mailbox retired (see [`RecordMailbox::retired`]). Cancel-safe: slots
    /// are taken only when it returns.
    pub(crate) async fn reserve_up_to(&self, n: usize) -> usize {
        loop {
            let got = self.try_reserve_up_to(n);
            if got > 0 || n == 0 || self.retired() {
                return got;
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiting = Waiting(&self.waiters);
            let got = self.try_reserve_up_to(n);
            if got > 0 || self.retired() {
                return got;
            }
            notified.await;
        }
    }

    /// Gives back `n` slots (records appended, or not queued after all).
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Queues records whose slots were reserved. Gives them back if the accumulator stopped
    /// (their slots are released then).
    pub(crate) fn push(
        &self,
        records: impl IntoIterator<Item = AppendRecord>,
    ) -> Result<Pushed, Vec<AppendRecord>> {
        let mut q = self.lock();
        if q.closed {
            drop(q);
            let back: Vec<AppendRecord> = records.into_iter().collect();
            self.release(back.len());
            return Err(back);
        }
        for r in records {
            q.bytes += r.size_hint();
            q.records.push_back(r);
        }
        Ok(self.wake_if_due(&mut q))
    }

    /// Schedules a `Drain` if the queue needs one now (see the module docs).
    fn wake_if_due(&self, q: &mut Queue) -> Pushed {
        let due = !q.records.is_empty()
            && !q.scheduled
            && (!q.lingering || q.bytes >= q.wake_bytes || q.records.len() >= self.wake_count);
        if due {
            q.scheduled = true;
            Pushed::Wake
        } else {
            Pushed::Queued
        }
    }

    /// The accumulator takes every queued record into `into` (which must be empty; the queue
    /// keeps `into`'s old allocation). Until it calls [`linger`](Self::linger) again, the next
    /// push schedules a new `Drain`. The slots stay taken until [`release`](Self::release).
    pub(crate) fn take_all(&self, into: &mut VecDeque<AppendRecord>) {
        let mut q = self.lock();
        debug_assert!(into.is_empty());
        q.scheduled = false;
        q.lingering = false;
        q.bytes = 0;
        std::mem::swap(&mut q.records, into);
    }

    /// The accumulator's state after it handled a message: `Some(room)` while its open batch
    /// lingers with `room` bytes left (its linger timer drains the queue), `None` when pushes
    /// must wake it. Returns [`Pushed::Wake`] when what is queued already needs a `Drain`,
    /// which the accumulator then sends itself.
    pub(crate) fn linger(&self, room: Option<usize>) -> Pushed {
        let mut q = self.lock();
        q.lingering = room.is_some();
        q.wake_bytes = room.unwrap_or(0);
        self.wake_if_due(&mut q)
    }

    /// The accumulator stopped: refuses later pushes and returns what is queued (slots
    /// released), for the caller to fail.
    pub(crate) fn close(&self) -> VecDeque<AppendRecord> {
        let rest = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.records)
        };
        self.release(rest.len());
        rest
    }
}

/// Counts a waiter out when it stops waiting (returned or cancelled); also
/// `PendingRecords::wait_room`'s.
pub(crate) struct Waiting<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Delivery;
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn rec(ts: i64) -> AppendRecord {
        AppendRecord {
            timestamp: ts,
            key: None,
            value: None,
            headers: Vec::new(),
            delivery: Delivery::Callback(crate::batch::inline_callback(|_| {})),
            enqueued: Instant::now(),
            pending_slot: 0,
        }
    }

    /// Retiring is all or nothing against reservations: never with a slot taken, and no slot
    /// can be taken (nor waited for) once retired, from any number of threads.
    #[test]
    fn a_mailbox_retires_only_unused_and_takes_nothing_after() {
        let m = RecordMailbox::new(4);
        assert!(m.try_reserve(1));
        assert!(!m.retire_if_unused(), "a slot is taken");
        m.release(1);
        assert!(m.retire_if_unused());
        assert!(m.retired());
        assert_eq!(m.used(), 0);
        assert!(!m.try_reserve(1));
        assert_eq!(m.try_reserve_up_to(3), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(m.reserve_up_to(2)),
            0,
            "no wait on a retired mailbox"
        );
        // Racing threads: every reservation that succeeds happened before the retirement.
        for _ in 0..200 {
            let m = Arc::new(RecordMailbox::new(8));
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    let m = m.clone();
                    std::thread::spawn(move || m.try_reserve(1))
                })
                .collect();
            let retired = m.retire_if_unused();
            let taken = takers
                .into_iter()
                .map(|t| t.join())
                .filter(|r| matches!(r, Ok(true)))
                .count();
            if retired {
                assert_eq!(taken, 0, "a slot taken in a retired mailbox");
            } else {
                assert!(taken > 0);
            }
        }
    }

    #[test]
    fn one_wake_per_drain_and_order_kept() {
        let m = RecordMailbox::new(10);
        assert_eq!(m.linger(None), Pushed::Queued, "nothing queued");
        assert!(m.try_reserve(3));
        assert_eq!(m.push([rec(1)]).unwrap(), Pushed::Wake);
        assert_eq!(m.push([rec(2), rec(3)]).unwrap(), Pushed::Queued);
        let mut got = VecDeque::new();
        m.take_all(&mut got);
        let ts: Vec<i64> = got.iter().map(|r| r.timestamp).collect();
        assert_eq!(ts, [1, 2, 3]);
        assert_eq!(m.used(), 3, "slots stay taken until released");
        m.release(3);
        got.clear();
        assert!(m.try_reserve(1));
        assert_eq!(
            m.push([rec(4)]).unwrap(),
            Pushed::Wake,
            "drained: wake again"
        );
    }

    #[test]
    fn a_lingering_batch_is_woken_only_when_the_queue_would_fill_it_or_half_the_mailbox() {
        let m = RecordMailbox::new(8);
        let mut got = VecDeque::new();
        // Room for two records of this size.
        let room = 2 * rec(0).size_hint();
        assert_eq!(m.linger(Some(room)), Pushed::Queued);
        assert!(m.try_reserve(8));
        assert_eq!(
            m.push([rec(1)]).unwrap(),
            Pushed::Queued,
            "the linger timer drains"
        );
        assert_eq!(
            m.push([rec(2)]).unwrap(),
            Pushed::Wake,
            "fills the open batch"
        );
        assert_eq!(
            m.push([rec(3)]).unwrap(),
            Pushed::Queued,
            "a Drain is on its way"
        );
        m.take_all(&mut got);
        m.release(got.len());
        got.clear();
        assert_eq!(m.linger(Some(usize::MAX)), Pushed::Queued);
        let pushed: Vec<Pushed> = (0..4).map(|i| m.push([rec(i)]).unwrap()).collect();
        assert_eq!(pushed.last(), Some(&Pushed::Wake), "4 records: half of 8");
        assert!(pushed[..3].iter().all(|p| *p == Pushed::Queued));
        m.take_all(&mut got);
        got.clear();
        // Records queued while the accumulator worked and no batch lingers: it drains again.
        m.push([rec(5)]).unwrap();
        assert_eq!(
            m.linger(None),
            Pushed::Queued,
            "the push already scheduled a Drain"
        );
        m.take_all(&mut got);
        got.clear();
        assert_eq!(m.linger(Some(room)), Pushed::Queued);
        m.push([rec(6)]).unwrap();
        assert_eq!(
            m.linger(None),
            Pushed::Wake,
            "the batch closed: queued records need a drain"
        );
    }

    #[test]
    fn closed_mailbox_gives_records_back_and_their_slots() {
        let m = RecordMailbox::new(4);
        assert!(m.try_reserve(2));
        m.push([rec(1)]).unwrap();
        let rest = m.close();
        assert_eq!(rest.len(), 1);
        let back = m.push([rec(2)]).unwrap_err();
        assert_eq!(back.len(), 1);
        assert_eq!(m.used(), 0);
    }

    #[tokio::test]
    async fn bounded_and_wakes_waiters() {
        let m = Arc::new(RecordMailbox::new(3));
        assert!(m.try_reserve(2));
        assert!(!m.try_reserve(2), "2 + 2 > 3");
        assert!(m.try_reserve(1));
        let m2 = m.clone();
        let waiter = tokio::spawn(async move { m2.reserve_up_to(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while full");
        m.release(2);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(m.used(), 3);
        m.release(3);
        assert_eq!(m.used(), 0);
        assert_eq!(m.waiters.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_waiter_sleeps_while_full_and_cancelling_leaves_no_trace() {
        let m = Arc::new(RecordMailbox::new(1));
        assert!(m.try_reserve(1));
        let polls = Arc::new(AtomicUsize::new(0));
        let (m2, p) = (m.clone(), polls.clone());
        let waiter = tokio::spawn(async move {
            let reserve = m2.reserve_up_to(1);
            tokio::pin!(reserve);
            std::future::poll_fn(|cx| {
                p.fetch_add(1, Ordering::Relaxed);
                reserve.as_mut().poll(cx)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(polls.load(Ordering::Relaxed) <= 3, "polled {:?}", polls);
        m.release(1);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        // A cancelled wait takes no slot and leaves no waiter behind.
        let r = tokio::time::timeout(Duration::from_millis(10), m.reserve_up_to(1)).await;
        assert!(r.is_err());
        assert_eq!(m.used(), 1);
        assert_eq!(m.waiters.load(Ordering::Relaxed), 0);
    }

    /// Issue 19 defect 12: a `send_all` chunk takes the slots that are free and waits for the
    /// rest, so single sends that keep the mailbox from ever being empty cannot starve it.
    #[tokio::test]
    async fn a_bulk_reservation_is_not_starved_by_single_sends() {
        let m = Arc::new(RecordMailbox::new(4));
        assert!(m.try_reserve(3));
        let churn = {
            let m = m.clone();
            tokio::spawn(async move {
                // One slot freed and taken again by single sends, never four free at once.
                for _ in 0..200 {
                    m.release(1);
                    m.reserve_up_to(1).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got < 4 && tokio::time::Instant::now() < deadline {
            let n = tokio::time::timeout(Duration::from_millis(100), m.reserve_up_to(4 - got))
                .await
                .unwrap_or(0);
            got += n;
            // What was taken is queued and drained by the accumulator: give it back.
            m.release(n);
        }
        churn.await.unwrap();
        assert!(got >= 4, "the bulk reservation starved: {got} of 4 slots");
    }
}
