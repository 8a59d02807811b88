//! `ProducerBatch`: a closed record batch on its way from an accumulator to the broker, with
//! the per-record completions (futures or callbacks) it owes.
//!
//! A batch is owned by exactly one actor at a time (accumulator → sender → back to sender on
//! retry) and is handed over by move. Every record's completion runs exactly once: on success,
//! on failure, or — if the batch is dropped without either — with [`ProduceError::Closed`], so a
//! record is never lost silently.

use crate::error::ProduceError;
use crate::record::{Header, RecordMetadata, TopicPartition};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// Result of one record's delivery.
pub type DeliveryResult = Result<RecordMetadata, ProduceError>;

/// A user callback (Java's `Callback.onCompletion`), run on an actor thread: keep it short.
pub type Callback = Box<dyn FnOnce(DeliveryResult) + Send + 'static>;

/// How a record reports its result.
pub(crate) enum Delivery {
    Future(crate::completion::Completer),
    /// A `send_with_callback` callback, stored inline when it is small (no allocation).
    Callback(InlineCallback),
    /// One callback shared by the records of a `send_all_with_callback` call, with the
    /// record's index in that call (an `Arc` clone per record instead of a `Box`).
    Indexed(IndexedCallback, usize),
    /// Feature `opentelemetry`: the record's span, ended with its outcome, then the delivery.
    #[cfg(feature = "opentelemetry")]
    Traced(Box<(crate::otel::SendSpan, Delivery)>),
}

/// A callback of at most 4 words stored in place (larger ones go to the heap), called once.
pub(crate) type InlineCallback =
    smallbox::SmallBox<dyn FnMut(DeliveryResult) + Send + Unpin + 'static, smallbox::space::S4>;

/// A callback called at most once. `Unpin` whatever it holds: it is never pinned.
struct Once<F>(Option<F>);

impl<F> Unpin for Once<F> {}

impl<F: FnOnce(DeliveryResult)> Once<F> {
    fn call(&mut self, r: DeliveryResult) {
        if let Some(f) = self.0.take() {
            f(r)
        }
    }
}

/// `callback` as an [`InlineCallback`].
pub(crate) fn inline_callback(
    callback: impl FnOnce(DeliveryResult) + Send + 'static,
) -> InlineCallback {
    let mut once = Once(Some(callback));
    smallbox::smallbox!(move |r: DeliveryResult| once.call(r))
}

/// The callback of [`crate::Producer::send_all_with_callback`]: `(index in the call, result)`.
pub type IndexedCallback = Arc<dyn Fn(usize, DeliveryResult) + Send + Sync + 'static>;

impl Delivery {
    pub(crate) fn complete(self, result: DeliveryResult) {
        match self {
            Delivery::Future(c) => c.complete(result),
            Delivery::Callback(mut cb) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(result))).is_err() {
                    tracing::error!("delivery callback panicked; ignored");
                }
            }
            Delivery::Indexed(cb, i) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(i, result))).is_err()
                {
                    tracing::error!("delivery callback panicked; ignored");
                }
            }
            #[cfg(feature = "opentelemetry")]
            Delivery::Traced(traced) => {
                let (span, delivery) = *traced;
                // Ended before the caller is woken: its span is complete when it looks.
                span.finish(&result);
                delivery.complete(result);
            }
        }
    }

    /// The record was refused before it was enqueued (the error goes back to the `send`
    /// caller, not to this delivery): a span it carries ends with the error.
    pub(crate) fn refused(self, error: &crate::error::ProduceError) {
        #[cfg(feature = "opentelemetry")]
        if let Delivery::Traced(traced) = self {
            let (span, _) = *traced;
            span.failed(error);
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = (self, error);
    }

    /// Feature `opentelemetry`: `delivery`, ending `span` with the outcome first.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn traced(span: Option<crate::otel::SendSpan>, delivery: Delivery) -> Delivery {
        match span {
            Some(span) => Delivery::Traced(Box::new((span, delivery))),
            None => delivery,
        }
    }
}

pub use crate::completion::DeliveryFuture;

/// One record for this partition, already serialized, partitioned and size-checked.
pub struct AppendRecord {
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    pub(crate) delivery: Delivery,
    /// When `send` accepted it: `delivery.timeout.ms` counts from here (Java: "after send()
    /// returns").
    pub(crate) enqueued: Instant,
    /// Its flush generation slot (`PendingRecords::add`).
    pub(crate) pending_slot: u8,
}

impl AppendRecord {
    /// Its size in a batch, roughly (bytes): what the mailbox counts toward the open batch.
    pub(crate) fn size_hint(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 4)
            .sum();
        len(&self.key) + len(&self.value) + headers + 8
    }
}

/// The `Closed` reason of records whose producer went away before delivering them.
pub(crate) const DROPPED_UNDELIVERED: &str = "the producer stopped before this record was \
     delivered: it was dropped without close(), or its actix System ended; call \
     Producer::close(timeout) before dropping the last handle";

/// What every completion needs: the pending count, the interceptors, the metrics.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) pending: PendingRecords,
    pub(crate) interceptors: crate::interceptor::Interceptors,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) health: crate::health::HealthHub,
    /// The open transaction's state as `send` sees it (inactive unless `transactional.id`).
    pub(crate) txn: crate::transaction::TxnShared,
}

impl Shared {
    /// Delivers one record's result: interceptors first (Java order), then the user.
    #[inline]
    pub(crate) fn deliver(&self, delivery: Delivery, result: DeliveryResult) {
        if !self.interceptors.is_empty() {
            self.interceptors.on_acknowledgement(&result);
        }
        delivery.complete(result);
    }

    /// Fails records that never made it into a sent batch.
    pub(crate) fn fail_thunks(&self, thunks: Vec<RecordThunk>, err: &ProduceError) {
        let n = thunks.len() as u64;
        if n > 0 && self.txn.enabled {
            self.txn.record_failed(err);
        }
        // Counted before the first delivery: a caller woken by it sees the metric include it.
        self.count(n, false);
        let mut done = DoneRuns::new(&self.pending);
        for t in thunks {
            done.add(t.pending_slot);
            self.deliver(t.delivery, Err(err.clone()));
        }
        done.finish();
    }

    /// Fails one record that is not in a batch (`pending_slot` from [`PendingRecords::add`]):
    /// counted, delivered, then no longer pending (so `flush` returns after its delivery).
    pub(crate) fn fail_one(&self, delivery: Delivery, pending_slot: u8, err: ProduceError) {
        // A record of the open transaction that fails before joining a batch (purged from a
        // mailbox) fails the transaction too, as one failed in a batch does.
        if self.txn.enabled {
            self.txn.record_failed(&err);
        }
        self.count(1, false);
        self.deliver(delivery, Err(err));
        self.pending.done(pending_slot, 1);
    }

    fn count(&self, n: u64, ok: bool) {
        if n == 0 {
            return;
        }
        let counter = if ok {
            &self.metrics.records_sent
        } else {
            &self.metrics.records_errored
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Number of flush generations tracked at once (see [`PendingRecords`]).
const PENDING_SLOTS: usize = 64;

/// Records accepted and not yet completed, counted per *flush generation*: `flush` waits only
/// for the records accepted before it was called (Java's semantics), so it returns even while
/// other tasks keep sending. A record is counted in the slot of the generation current when it
/// was accepted; `flush` starts a new generation and waits until every other slot is empty.
/// `close` waits for all of them ([`PendingRecords::wait_zero`]).
pub(crate) struct PendingRecords {
    generation: AtomicU64,
    slots: [AtomicU64; PENDING_SLOTS],
    zero: Notify,
    /// One flush switches generations at a time.
    flush: tokio::sync::Mutex<()>,
    /// Records pending over all slots (`queue.buffering.max.messages` counts these).
    admitted: AtomicU64,
    /// `queue.buffering.max.messages` (`u64::MAX` until the producer sets it).
    limit: AtomicU64,
    /// Senders waiting for room (see [`PendingRecords::wait_room`]).
    room: Notify,
    room_waiters: std::sync::atomic::AtomicUsize,
}

impl Default for PendingRecords {
    fn default() -> Self {
        PendingRecords {
            generation: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            zero: Notify::new(),
            flush: tokio::sync::Mutex::new(()),
            admitted: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            room: Notify::new(),
            room_waiters: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for PendingRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecords")
            .field("count", &self.get())
            .finish()
    }
}

impl PendingRecords {
    /// Counts `n` accepted records; returns their slot, to give back to [`done`](Self::done).
    pub(crate) fn add(&self, n: u64) -> u8 {
        // A counter: wake-ups are ordered by `done`/`wait_room` (SeqCst), not by this.
        self.admitted.fetch_add(n, Ordering::Relaxed);
        let slot = (self.generation.load(Ordering::Acquire) % PENDING_SLOTS as u64) as usize;
        // One atomic per record on each side: the total is the sum of the slots.
        if let Some(s) = self.slots.get(slot) {
            s.fetch_add(n, Ordering::AcqRel);
        }
        slot as u8
    }

    /// `n` records of `slot` completed.
    pub(crate) fn done(&self, slot: u8, n: u64) {
        if n == 0 {
            return;
        }
        // The last record of a slot empties it: flush and close wait for empty slots.
        let slot_empty = self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.fetch_sub(n, Ordering::AcqRel) == n);
        if slot_empty {
            self.zero.notify_waiters();
        }
        // SeqCst with `wait_room`'s waiter count: a completion cannot miss a waiter that saw
        // no room.
        self.admitted.fetch_sub(n, Ordering::SeqCst);
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Sets `queue.buffering.max.messages`.
    pub(crate) fn set_limit(&self, records: u64) {
        self.limit.store(records.max(1), Ordering::Release);
    }

    /// Whether `n` more records fit under `queue.buffering.max.messages` now (a call of more
    /// records than the limit fits when nothing is pending, so it cannot wait forever).
    pub(crate) fn has_room(&self, n: u64) -> bool {
        self.room_for(n, Ordering::Relaxed)
    }

    fn room_for(&self, n: u64, order: Ordering) -> bool {
        let admitted = self.admitted.load(order);
        admitted == 0 || admitted.saturating_add(n) <= self.limit.load(Ordering::Relaxed)
    }

    /// Waits until `n` more records fit (see [`PendingRecords::has_room`]). Cancel-safe; the
    /// caller bounds it by `max.block.ms`.
    pub(crate) async fn wait_room(&self, n: u64) {
        loop {
            if self.has_room(n) {
                return;
            }
            self.room_waiters.fetch_add(1, Ordering::SeqCst);
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiting = crate::mailbox::Waiting(&self.room_waiters);
            if self.room_for(n, Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Acquire)).sum()
    }

    /// Waits until no record is pending.
    pub(crate) async fn wait_zero(&self) {
        self.wait_until(|| self.get() == 0).await
    }

    /// Waits until every record accepted before the call has completed (records accepted
    /// meanwhile belong to the next generation and are not waited for).
    pub(crate) async fn wait_flushed(&self) {
        let _one = self.flush.lock().await;
        // The slot the new generation will use may still hold records of the generation
        // `PENDING_SLOTS` before it (flushes cancelled or timed out meanwhile): switching now
        // would mix them into the new generation, which this flush does not wait for. Those
        // records only complete (nothing new joins that slot until the switch), so wait for
        // them first. A cancelled flush switches nothing.
        let next = ((self.generation.load(Ordering::Acquire) + 1) % PENDING_SLOTS as u64) as usize;
        self.wait_until(|| {
            self.slots
                .get(next)
                .is_none_or(|s| s.load(Ordering::Acquire) == 0)
        })
        .await;
        let previous = self.generation.fetch_add(1, Ordering::AcqRel);
        let current = ((previous + 1) % PENDING_SLOTS as u64) as usize;
        self.wait_until(|| {
            self.slots
                .iter()
                .enumerate()
                .all(|(i, s)| i == current || s.load(Ordering::Acquire) == 0)
        })
        .await
    }

    async fn wait_until(&self, done: impl Fn() -> bool) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }
}

/// Gives completed records back to their slots, one atomic per run of equal slots.
struct DoneRuns<'a> {
    pending: &'a PendingRecords,
    run: Option<(u8, u64)>,
}

impl<'a> DoneRuns<'a> {
    fn new(pending: &'a PendingRecords) -> Self {
        DoneRuns { pending, run: None }
    }
    #[inline]
    fn add(&mut self, slot: u8) {
        match &mut self.run {
            Some((s, n)) if *s == slot => *n += 1,
            _ => {
                self.finish();
                self.run = Some((slot, 1));
            }
        }
    }
    fn finish(&mut self) {
        if let Some((slot, n)) = self.run.take() {
            self.pending.done(slot, n);
        }
    }
}

impl Drop for DoneRuns<'_> {
    /// A panic between `add` and `finish` still gives the records counted so far back (else
    /// `flush` and `close` would wait for them forever).
    fn drop(&mut self) {
        self.finish();
    }
}

/// Per-record data kept beside the encoded batch to build its `RecordMetadata`.
pub(crate) struct RecordThunk {
    pub(crate) delivery: Delivery,
    pub(crate) timestamp: i64,
    pub(crate) key_size: i32,
    pub(crate) value_size: i32,
    /// The record's flush generation slot ([`PendingRecords::add`]).
    pub(crate) pending_slot: u8,
}

/// A closed batch of one partition: encoded RecordBatch v2 bytes and their completions.
pub struct ProducerBatch {
    pub(crate) tp: TopicPartition,
    /// Encoded batch (magic 2). Producer id/epoch/sequence are patched in by the sender.
    pub(crate) records: Bytes,
    pub(crate) thunks: Vec<RecordThunk>,
    /// When the first record was appended (`delivery.timeout.ms` counts from here).
    pub(crate) created: Instant,
    /// Produce attempts so far.
    pub(crate) attempts: u32,
    /// Not before this instant (retry backoff).
    pub(crate) retry_at: Option<Instant>,
    /// Base sequence assigned at first dispatch (idempotence), `-1` before.
    pub(crate) base_sequence: i32,
    /// Producer id and epoch the sequence belongs to.
    pub(crate) producer_id: i64,
    /// See `producer_id`.
    pub(crate) producer_epoch: i16,
    /// The sender's producer-id generation the sequence was assigned in (a broker that lost
    /// its state may hand out the same id and epoch again, so id/epoch alone cannot tell).
    pub(crate) pid_generation: u64,
    /// Position of the batch in its partition (assigned when closed, 0, 1, 2, ...): the order
    /// records were sent in, which retries and splits keep.
    pub(crate) number: u64,
    /// Holds one of the partition's `max.pending.batches.per.partition` slots.
    pub(crate) _slot: Option<OwnedSemaphorePermit>,
    pub(crate) shared: Arc<Shared>,
    /// True once an attempt may have reached the broker's log (sent on a live connection and
    /// not refused): what `DeliveryTimeout::possibly_written` reports.
    pub(crate) maybe_written: bool,
    /// The last attempt under the batch's sequence may have been written and no answer from
    /// the partition's sequence check has settled it since (a lost answer, a timeout, a
    /// disconnect, `REQUEST_TIMED_OUT`): only a resend with the same producer id, epoch and
    /// sequence can tell (the broker answers it as a duplicate). A producer-id reset waits for it.
    pub(crate) unresolved: bool,
    /// Last retriable error, reported if the batch expires.
    pub(crate) last_error: Option<ProduceError>,
}

impl ProducerBatch {
    /// A closed batch not sent yet: no attempt, no producer state, no batch slot.
    pub(crate) fn new(
        tp: TopicPartition,
        records: Bytes,
        thunks: Vec<RecordThunk>,
        created: Instant,
        number: u64,
        shared: Arc<Shared>,
    ) -> Self {
        ProducerBatch {
            tp,
            records,
            thunks,
            created,
            attempts: 0,
            retry_at: None,
            base_sequence: -1,
            producer_id: -1,
            producer_epoch: -1,
            pid_generation: 0,
            number,
            _slot: None,
            shared,
            maybe_written: false,
            unresolved: false,
            last_error: None,
        }
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.thunks.len()
    }

    /// Encoded size in bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.records.len()
    }

    /// Completes every record: offset `base_offset + i` (`-1` stays `-1`), timestamp the broker's
    /// LogAppendTime when given (not `-1`), else the record's CreateTime.
    pub(crate) fn complete(mut self, base_offset: i64, log_append_time: i64) {
        let n = self.thunks.len() as u64;
        let shared = self.shared.clone();
        // Counted before the first delivery: a caller woken by it sees the metric include it.
        shared.count(n, true);
        let mut done = DoneRuns::new(&shared.pending);
        for (i, t) in self.thunks.drain(..).enumerate() {
            done.add(t.pending_slot);
            let md = RecordMetadata {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                // The sender checked `base_offset + count - 1` fits; saturate regardless.
                offset: if base_offset < 0 {
                    -1
                } else {
                    base_offset.saturating_add(i as i64)
                },
                timestamp: if log_append_time >= 0 {
                    log_append_time
                } else {
                    t.timestamp
                },
                serialized_key_size: t.key_size,
                serialized_value_size: t.value_size,
            };
            self.shared.deliver(t.delivery, Ok(md));
        }
        done.finish();
    }

    /// Fails every record with `err`.
    pub(crate) fn fail(mut self, err: ProduceError) {
        self.fail_in_place(err);
    }

    fn fail_in_place(&mut self, err: ProduceError) {
        let thunks = std::mem::take(&mut self.thunks);
        self.shared.fail_thunks(thunks, &err);
    }

    /// Writes producer id, epoch and base sequence into the batch header and recomputes the
    /// CRC-32C (KIP-98 fields; protocol guide "Record Batch").
    pub(crate) fn set_producer_state(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) {
        let transactional = self.shared.txn.enabled;
        // The batch's bytes are normally owned by it alone here (a request that carried them is
        // gone): patch them in place instead of copying the batch.
        let records = std::mem::take(&mut self.records);
        let mut buf = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        crate::protocol::record_batch::patch_producer_state(
            &mut buf,
            producer_id,
            epoch,
            base_sequence,
            transactional,
        );
        self.records = buf.freeze();
        self.base_sequence = base_sequence;
        self.producer_id = producer_id;
        self.producer_epoch = epoch;
    }
}

impl Drop for ProducerBatch {
    fn drop(&mut self) {
        if !self.thunks.is_empty() {
            self.fail_in_place(ProduceError::closed(DROPPED_UNDELIVERED));
        }
    }
}

/// A batch of one record (value `v`, no key, built unsealed) for the cores' tests, counted as
/// pending in `shared`.
#[cfg(test)]
pub(crate) fn one_record_batch(
    tp: TopicPartition,
    number: u64,
    now: Instant,
    shared: &Arc<Shared>,
) -> ProducerBatch {
    use crate::protocol::record_batch::{Compression, RecordBatchBuilder};
    let mut builder = RecordBatchBuilder::new(1024, Compression::None, None);
    builder.try_append(0, None, Some(&b"v"[..]), &[], usize::MAX);
    let records = builder.build_unsealed().unwrap_or_else(|e| panic!("{e}"));
    shared.pending.add(1);
    ProducerBatch::new(
        tp,
        records,
        vec![RecordThunk {
            delivery: Delivery::Callback(inline_callback(|_| {})),
            timestamp: 0,
            key_size: -1,
            value_size: 1,
            pending_slot: 0,
        }],
        now,
        number,
        shared.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Issue 19 defect 6: after `PENDING_SLOTS - 1` cancelled flushes the next generation's slot
    /// is the one the old records are counted in; the flush must still wait for them.
    #[tokio::test]
    async fn flush_waits_for_old_records_after_many_cancelled_flushes() {
        let pending = PendingRecords::default();
        let old = pending.add(3);
        for _ in 0..(PENDING_SLOTS as u32 * 2) {
            // Each flush is cancelled: its records are never done.
            let cancelled =
                tokio::time::timeout(Duration::from_millis(1), pending.wait_flushed()).await;
            assert!(
                cancelled.is_err(),
                "a flush returned with 3 records pending"
            );
        }
        pending.done(old, 3);
        tokio::time::timeout(Duration::from_secs(5), pending.wait_flushed())
            .await
            .expect("flush returns once the records are done");
    }

    /// The record counters include a record by the time its delivery runs (CI, stop 29:
    /// `metrics_match_a_known_workload` read `record-send-total` right after the last future
    /// resolved, on another thread, before the batch was counted).
    #[test]
    fn a_record_is_counted_before_its_delivery_runs() {
        let shared = Arc::new(Shared::default());
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let observer = |shared: &Arc<Shared>, seen: &Arc<AtomicU64>, ok: bool| {
            let (shared, seen) = (shared.clone(), seen.clone());
            Delivery::Callback(inline_callback(move |_| {
                let m = &shared.metrics;
                let counter = if ok {
                    &m.records_sent
                } else {
                    &m.records_errored
                };
                seen.store(counter.load(Ordering::SeqCst), Ordering::SeqCst);
            }))
        };
        let thunk = |delivery, slot| RecordThunk {
            delivery,
            timestamp: 0,
            key_size: -1,
            value_size: 1,
            pending_slot: slot,
        };
        let tp = TopicPartition::new("t", 0);

        let slot = shared.pending.add(2);
        let thunks = vec![
            thunk(Delivery::Callback(inline_callback(|_| {})), slot),
            thunk(observer(&shared, &seen, true), slot),
        ];
        let batch = ProducerBatch::new(
            tp.clone(),
            Bytes::new(),
            thunks,
            Instant::now(),
            0,
            shared.clone(),
        );
        batch.complete(0, -1);
        assert_eq!(seen.load(Ordering::SeqCst), 2, "a completed batch");

        let slot = shared.pending.add(1);
        let thunks = vec![thunk(observer(&shared, &seen, false), slot)];
        shared.fail_thunks(thunks, &ProduceError::closed("x"));
        assert_eq!(seen.load(Ordering::SeqCst), 1, "failed records");

        let slot = shared.pending.add(1);
        shared.fail_one(
            observer(&shared, &seen, false),
            slot,
            ProduceError::closed("x"),
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2, "one failed record");
        assert_eq!(shared.pending.get(), 0);
    }

    /// A record completed while its batch panics midway is still given back to its slot.
    #[test]
    fn done_runs_give_back_on_unwind() {
        let pending = PendingRecords::default();
        let slot = pending.add(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut done = DoneRuns::new(&pending);
            done.add(slot);
            done.add(slot);
            panic!("a completion panicked");
        }));
        assert!(r.is_err());
        assert_eq!(pending.get(), 0);
    }
}
