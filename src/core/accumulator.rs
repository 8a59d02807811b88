//! One partition's accumulator, without actix or a clock: [`AccumulatorCore`].
//!
//! It appends records to the open [`RecordBatchBuilder`] and closes the batch when the next
//! record would not fit in `batch.size` (divided by the estimated compression ratio when
//! compressing), when the batch fills, when its `linger.ms` timer fires, or on flush. Closing
//! builds the batch (compression; the CRC-32C too unless idempotence writes it at drain time)
//! and numbers it (its place in the partition).
//!
//! It also owns the partition's back-pressure: a closed batch goes to the sender with one of
//! `max.pending.batches.per.partition` batch slots and holds it until it completes. While no
//! slot is free, closed batches wait here in order, the record mailbox is not drained, the
//! mailbox fills up to `mailbox.capacity` records, and `send` waits (up to `max.block.ms`).
//! What one partition holds is therefore bounded: `mailbox.capacity` records, the open batch,
//! and `max.pending.batches.per.partition` + 3 closed batches (the slot holders, the two one
//! append can close, and the open one a flush or linger closes while a slot is awaited).
//!
//! Time comes in (`now`), decisions go out as [`Action`]s, in order; the
//! [`crate::actors::accumulator::PartitionAccumulator`] actor carries them out (sends the
//! batches, arms the timers, awaits a slot, fails records, counts metrics) and runs no rule of
//! its own. The simulation (`src/core/sim/`) drives the same core.

use crate::batch::{AppendRecord, DROPPED_UNDELIVERED};
use crate::batch::{ProducerBatch, RecordThunk, Shared};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::mailbox::{Pushed, RecordMailbox};
use crate::metrics::Count;
use crate::protocol::record_batch::{CompressionRatioEstimator, RecordBatchBuilder};
use crate::record::TopicPartition;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the core asks its shell to do, in order.
// A batch is moved through once (boxing it would allocate per batch).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Action {
    /// Hand this closed batch, which holds a batch slot, to the sender.
    Ready(ProducerBatch),
    /// Call [`AccumulatorCore::linger_fired`] after this long.
    ArmLinger(Duration),
    /// Wait for a batch slot ([`AccumulatorCore::slots`]), then call
    /// [`AccumulatorCore::slot_arrived`] with it. Other calls may come meanwhile.
    WaitSlot,
    /// Call [`AccumulatorCore::drain`] soon (records wait that need appending now).
    Drain,
    /// Fail these records (their callbacks are user code: never run in the core).
    Fail(Refused),
    /// Fail this batch's records.
    FailBatch(ProducerBatch, ProduceError),
    /// A metric update.
    Count(Count),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Ready(b) => write!(f, "Ready({} #{})", b.tp, b.number),
            Action::ArmLinger(d) => write!(f, "ArmLinger({d:?})"),
            Action::WaitSlot => write!(f, "WaitSlot"),
            Action::Drain => write!(f, "Drain"),
            Action::Fail(_) => write!(f, "Fail(..)"),
            Action::FailBatch(b, e) => write!(f, "FailBatch({} #{}, {e})", b.tp, b.number),
            Action::Count(c) => write!(f, "Count({c:?})"),
        }
    }
}

struct OpenBatch {
    builder: RecordBatchBuilder,
    thunks: Vec<RecordThunk>,
    created: Instant,
}

/// What one append did.
#[derive(Default)]
pub(crate) struct Appended {
    /// Batches it closed, oldest first: the open one the record did not fit in, then the one
    /// it filled.
    pub(crate) closed: [Option<ProducerBatch>; 2],
    /// It opened a batch, which will close as this number: arm its `linger.ms` timer.
    pub(crate) opened: Option<u64>,
}

/// What an idle check decided (see [`AccumulatorCore::idle_check`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Idle long enough: retire (release the partition's accumulator and mailbox).
    Retire,
    /// Check again at this instant.
    CheckAt(Instant),
}

/// Records the core refused, for the shell to fail ([`Action::Fail`]): their callbacks are
/// user code and never run inside the core.
pub(crate) enum Refused {
    /// A record refused before it joined a batch (the accumulator was aborted), with its
    /// pending-record slot.
    Record(crate::batch::Delivery, u8, ProduceError),
    /// The records of a batch that could not be built, or that was open when the actor ended.
    Records(Vec<RecordThunk>, ProduceError),
}

impl Refused {
    /// Fails the records: for the shell to call once the core call has returned (their
    /// callbacks run here).
    pub(crate) fn carry_out(self, shared: &Shared) {
        match self {
            Refused::Record(delivery, slot, err) => {
                shared.fail_one(delivery, slot, err);
            }
            Refused::Records(thunks, err) => shared.fail_thunks(thunks, &err),
        }
    }
}

/// See the module docs.
pub(crate) struct AccumulatorCore {
    tp: TopicPartition,
    config: Arc<ProducerConfig>,
    /// Handed to each batch it closes (a batch's completion needs it); the core itself calls
    /// nothing on it.
    shared: Arc<Shared>,
    /// Actions decided inside a step (refused records, counts), moved out at its end.
    deferred: Vec<Action>,
    open: Option<OpenBatch>,
    aborted: Option<ProduceError>,
    /// Compressed/uncompressed ratio seen so far: keeps compressed batches near `batch.size`.
    ratio: CompressionRatioEstimator,
    /// Uncompressed bytes the open batch may hold (`batch.size` / estimated ratio).
    limit: usize,
    /// Number of the next closed batch.
    next_number: u64,
    /// When the accumulator started or last appended a record (the latest record's send
    /// time): the idle clock.
    last_active: Instant,
    /// Bytes the last closed batch held: a new batch's buffer starts at that size (rounded up
    /// to a power of two, at least `MIN_BATCH_BUFFER`), not at `batch.size`, so thousands of
    /// partitions with a record or two per batch do not each hold `batch.size` bytes per
    /// batch (the buffer grows by doubling when records need more).
    last_batch_bytes: usize,
    /// Records the last closed batch held: a new batch's completion list starts with room
    /// for that many (at least 4), likewise.
    last_batch_records: usize,
    /// The records' mailbox: `send` queues into it, [`AccumulatorCore::drain`] takes from it.
    mailbox: Arc<RecordMailbox>,
    /// `max.pending.batches.per.partition` slots; a closed batch holds one until it completes
    /// (the permit travels in the batch and is given back when it is dropped).
    slots: Arc<Semaphore>,
    /// Closed batches waiting for a batch slot, oldest first.
    waiting: VecDeque<ProducerBatch>,
    /// The shell awaits a batch slot for the head of `waiting` ([`Action::WaitSlot`]): at most
    /// one wait, so batches cannot overtake each other, and the mailbox is not drained.
    slot_waiter: bool,
    /// Records taken from the mailbox and not appended yet, oldest first; their mailbox slots
    /// are still taken (non-empty only while a batch slot is awaited).
    backlog: VecDeque<AppendRecord>,
    /// A flush came while the backlog waited: close the open batch once it is appended.
    flush_requested: bool,
    /// A linger timer is pending. There is at most one, and it is never cancelled (actix
    /// cancels by scanning a list, which showed in profiles at one batch per 15 records): when
    /// it fires it closes the open batch if that batch is due, else re-arms for it.
    linger_armed: bool,
    /// Records the recent drains needed: the largest drain, decaying by an eighth per drain
    /// (see [`Self::drain_records`]).
    recent_need: usize,
}

/// The smallest buffer a new batch starts with (bytes).
const MIN_BATCH_BUFFER: usize = 512;

impl AccumulatorCore {
    pub(crate) fn new(
        tp: TopicPartition,
        config: Arc<ProducerConfig>,
        shared: Arc<Shared>,
        mailbox: Arc<RecordMailbox>,
        now: Instant,
    ) -> Self {
        let slots = config.max_pending_batches_per_partition.max(1);
        AccumulatorCore {
            deferred: Vec::new(),
            last_active: now,
            ratio: CompressionRatioEstimator::new(config.compression),
            limit: config.batch_size,
            tp,
            config,
            shared,
            open: None,
            aborted: None,
            next_number: 0,
            last_batch_bytes: 0,
            last_batch_records: 0,
            mailbox,
            slots: Arc::new(Semaphore::new(slots)),
            waiting: VecDeque::new(),
            slot_waiter: false,
            backlog: VecDeque::new(),
            flush_requested: false,
            linger_armed: false,
            recent_need: 0,
        }
    }

    /// The batch slots, for the shell to await one ([`Action::WaitSlot`]).
    pub(crate) fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }

    /// The records' mailbox.
    pub(crate) fn mailbox(&self) -> &Arc<RecordMailbox> {
        &self.mailbox
    }

    /// What the partition holds now: (records, closed batches not completed). Records are the
    /// mailbox's taken slots (queued, or taken and not appended) plus the open batch's; closed
    /// batches are the ones waiting here plus the slot holders (sent, not completed).
    pub(crate) fn holdings(&self) -> (usize, usize) {
        let slots = self.config.max_pending_batches_per_partition.max(1);
        let open = self.open.as_ref().map_or(0, |o| o.thunks.len());
        let out = slots.saturating_sub(self.slots.available_permits());
        (self.mailbox.used() + open, self.waiting.len() + out)
    }

    /// Records are queued: append them (and run a pending flush).
    pub(crate) fn drain(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.drain_and_flush(now, out);
        self.settle(out);
    }

    /// Flush: append what is queued, then close the open batch (once no batch slot is
    /// awaited: what was sent before the flush is appended first).
    pub(crate) fn flush(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.flush_requested = true;
        self.drain(now, out);
    }

    /// The linger timer fired: appends what the mailbox holds, closes the open batch if its
    /// `linger.ms` has passed, and arms the timer for the batch open then.
    ///
    /// Not while a batch slot is awaited: the open batch would only wait behind the others,
    /// and under back-pressure its first record has usually waited out `linger.ms` in the
    /// mailbox already, so closing it now would send about every other batch with one record.
    /// The slot's arrival appends the backlog into it first and arms the timer again.
    pub(crate) fn linger_fired(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.linger_armed = false;
        if self.slot_waiter && self.aborted.is_none() {
            return;
        }
        self.drain_records(now, out);
        let due = self
            .open
            .as_ref()
            .is_some_and(|o| crate::time::deadline_after(o.created, self.config.linger) <= now);
        if due {
            self.close_and_hand_over(out);
        }
        self.arm_linger(now, out);
        self.settle(out);
    }

    /// The batch slot [`Action::WaitSlot`] waited for (`None` if the semaphore closed, which
    /// it never is): the head of the waiting batches goes, then the rest as slots allow, then
    /// the drain resumes.
    pub(crate) fn slot_arrived(
        &mut self,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.slot_waiter = false;
        if let Some(mut batch) = self.waiting.pop_front() {
            batch._slot = permit;
            out.push(Action::Ready(batch));
        }
        self.hand_over_waiting(out);
        if !self.slot_waiter {
            self.drain_and_flush(now, out);
        }
        // A linger timer that fired during the wait closed nothing (see `linger_fired`).
        self.arm_linger(now, out);
        self.settle(out);
    }

    /// Fails the open batch, the closed batches waiting for a slot, what is queued, and every
    /// later record with `err` (used by `close`).
    pub(crate) fn abort(&mut self, err: ProduceError, now: Instant, out: &mut Vec<Action>) {
        for batch in self.waiting.drain(..) {
            out.push(Action::FailBatch(batch, err.clone()));
        }
        self.abort_open(err);
        self.drain(now, out);
    }

    /// `Producer::purge`: fails what the partition holds and has not handed to the sender —
    /// the closed batches waiting for a batch slot, the open batch, the records taken from the
    /// mailbox and not appended, and the mailbox's records — with `Purged` (none of them was
    /// sent: not possibly written). Unlike [`Self::abort`], later records are accepted as
    /// before. Closed batches already handed over are the sender's to purge.
    pub(crate) fn purge(&mut self, out: &mut Vec<Action>) {
        let err = ProduceError::Purged {
            possibly_written: false,
        };
        for batch in self.waiting.drain(..) {
            out.push(Action::FailBatch(batch, err.clone()));
        }
        if let Some(open) = self.open.take() {
            self.deferred
                .push(Action::Fail(Refused::Records(open.thunks, err.clone())));
        }
        // The backlog's records hold their mailbox slots; the mailbox's are taken with them.
        let mut rest = std::mem::take(&mut self.backlog);
        let mut queued = VecDeque::new();
        self.mailbox.take_all(&mut queued);
        self.mailbox.release(rest.len() + queued.len());
        rest.append(&mut queued);
        for r in rest {
            self.deferred.push(Action::Fail(Refused::Record(
                r.delivery,
                r.pending_slot,
                err.clone(),
            )));
        }
        // Nothing is left to flush: a flush waiting for the open batch waits for none.
        self.flush_requested = false;
        out.append(&mut self.deferred);
        self.settle(out);
    }

    /// Whether the accumulator may retire at `now` (issue 19's defect 9: a partition nothing
    /// is sent to any more costs nothing): no open batch, nothing held (records in its mailbox
    /// or backlog, closed batches waiting or not completed), and no record appended for
    /// `metadata.max.idle.ms` (Java drops an idle topic's metadata after it) and
    /// `delivery.timeout.ms` (so every batch it closed has its outcome: a new accumulator
    /// numbers batches from 0 again, and none of the old ones can be left). On
    /// [`Idle::Retire`] the mailbox is retired too (a later `send` starts a new accumulator).
    pub(crate) fn idle_check(&self, now: Instant) -> Idle {
        // Closed batches (waiting, or holding a slot) keep it. Records queued or in the backlog
        // hold mailbox slots, which `retire_if_unused` never retires over (and a slot is awaited
        // only for a waiting batch), so they need no test of their own here.
        let (_, batches) = self.holdings();
        let held = batches > 0;
        let idle = self
            .config
            .metadata_max_idle
            .max(self.config.delivery_timeout);
        if held || self.open.is_some() {
            return Idle::CheckAt(crate::time::deadline_after(now, idle));
        }
        let at = crate::time::deadline_after(self.last_active, idle);
        if at > now {
            Idle::CheckAt(at)
        } else if self.mailbox.retire_if_unused() {
            Idle::Retire
        } else {
            // A record took a mailbox slot just now: look again.
            Idle::CheckAt(now)
        }
    }

    /// The actor stops: the open batch, the batches waiting for a slot and every queued record
    /// fail (`Closed`), never silently; the mailbox takes no more records.
    pub(crate) fn stopped(&mut self, out: &mut Vec<Action>) {
        let err = ProduceError::closed(DROPPED_UNDELIVERED);
        if let Some(open) = self.open.take() {
            self.deferred
                .push(Action::Fail(Refused::Records(open.thunks, err.clone())));
        }
        for batch in self.waiting.drain(..) {
            out.push(Action::FailBatch(batch, err.clone()));
        }
        let n = self.backlog.len();
        let mut rest: VecDeque<AppendRecord> = std::mem::take(&mut self.backlog);
        self.mailbox.release(n);
        rest.extend(self.mailbox.close());
        for r in rest {
            self.deferred.push(Action::Fail(Refused::Record(
                r.delivery,
                r.pending_slot,
                err.clone(),
            )));
        }
        out.append(&mut self.deferred);
    }

    /// Appends the backlog, then everything the mailbox holds (one swap), giving their mailbox
    /// slots back, then runs a pending flush. Stops early while a closed batch waits for a
    /// batch slot (the rest stays in the backlog, its slots taken: the mailbox fills and
    /// senders wait); the slot's arrival resumes it.
    fn drain_and_flush(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.drain_records(now, out);
        if self.flush_requested && !self.slot_waiter {
            self.flush_requested = false;
            self.close_and_hand_over(out);
        }
        out.append(&mut self.deferred);
    }

    /// [`Self::drain_and_flush`] without the flush. An aborted accumulator drains even while a
    /// slot is awaited: its records fail at once instead of waiting for a slot.
    fn drain_records(&mut self, now: Instant, out: &mut Vec<Action>) {
        for round in 0..2 {
            if round == 1 {
                if !self.backlog.is_empty() {
                    break;
                }
                self.mailbox.take_all(&mut self.backlog);
            }
            let mut appended = 0;
            while !self.slot_waiter || self.aborted.is_some() {
                let Some(record) = self.backlog.pop_front() else {
                    break;
                };
                self.append_one(record, now, out);
                appended += 1;
            }
            self.mailbox.release(appended);
            if self.slot_waiter && self.aborted.is_none() {
                break;
            }
            // The emptied queue becomes the mailbox's at the next swap: keep it about the size
            // the recent drains needed, not of the largest burst seen (two queues per partition
            // at their peak added up to tens of MiB over 2,000 partitions, benches/scale.sh).
            // The need decays by an eighth per drain, so a busy partition whose drains vary in
            // size does not reallocate back and forth. (The two queues trade places at every
            // swap, so each is judged when it is the backlog; a count of oversized drains in a
            // row was reset by the other, small queue every second drain and never shrank.)
            self.recent_need = appended.max(self.recent_need - self.recent_need / 8);
            if self.backlog.capacity() > 2 * self.recent_need + 16 {
                self.backlog.shrink_to(self.recent_need.max(8));
            }
        }
        out.append(&mut self.deferred);
    }

    fn append_one(&mut self, record: AppendRecord, now: Instant, out: &mut Vec<Action>) {
        let done = self.append(record);
        let [first, second] = done.closed;
        if let Some(batch) = first {
            self.hand_over(batch, out);
        }
        if let Some(batch) = second {
            self.hand_over(batch, out);
        }
        if done.opened.is_some() {
            self.arm_linger(now, out);
        }
    }

    /// Closes the open batch now and hands it over.
    fn close_and_hand_over(&mut self, out: &mut Vec<Action>) {
        if let Some(batch) = self.close() {
            self.hand_over(batch, out);
        }
        out.append(&mut self.deferred);
    }

    /// Arms the linger timer for the open batch, `linger.ms` after its first record was sent
    /// (it may have waited in the mailbox), unless a timer is pending already: that one fires
    /// no later (it was armed for an older batch) and re-arms.
    fn arm_linger(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.linger_armed {
            return;
        }
        let Some(created) = self.open_since() else {
            return;
        };
        let due = crate::time::deadline_after(created, self.config.linger);
        self.linger_armed = true;
        out.push(Action::ArmLinger(due.saturating_duration_since(now)));
    }

    /// At the end of each step: tells the mailbox whether the open batch lingers (its timer
    /// will drain the queue, so pushes need not wake the accumulator) and asks for a drain if
    /// what is queued needs it now. Nothing while a slot is awaited: the slot resumes the
    /// drain, and pushes meanwhile ask for a `Drain` the mailbox remembers as scheduled.
    fn settle(&mut self, out: &mut Vec<Action>) {
        if self.slot_waiter {
            return;
        }
        let room = if self.linger_armed && !self.config.linger.is_zero() {
            self.open_room()
        } else {
            None
        };
        if self.mailbox.linger(room) == Pushed::Wake {
            out.push(Action::Drain);
        }
    }

    /// Hands a closed batch to the sender with a batch slot, or queues it behind the others.
    fn hand_over(&mut self, mut batch: ProducerBatch, out: &mut Vec<Action>) {
        if self.waiting.is_empty() {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                batch._slot = Some(slot);
                out.push(Action::Ready(batch));
                return;
            }
        }
        self.waiting.push_back(batch);
        self.hand_over_waiting(out);
    }

    /// Hands closed batches to the sender in the order they were closed, one batch slot each.
    /// While none is free, one [`Action::WaitSlot`] (back-pressure starts here).
    fn hand_over_waiting(&mut self, out: &mut Vec<Action>) {
        while !self.waiting.is_empty() {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                if !self.slot_waiter {
                    self.slot_waiter = true;
                    out.push(Action::WaitSlot);
                }
                return;
            };
            if let Some(mut batch) = self.waiting.pop_front() {
                batch._slot = Some(slot);
                out.push(Action::Ready(batch));
            }
        }
    }

    fn new_batch(&mut self, created: Instant) -> u64 {
        self.limit = self
            .ratio
            .uncompressed_limit(self.config.batch_size)
            .min(self.config.max_request_size);
        let start = self
            .last_batch_bytes
            .max(MIN_BATCH_BUFFER)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .min(self.limit);
        self.open = Some(OpenBatch {
            builder: RecordBatchBuilder::with_levels(
                start,
                self.config.compression,
                self.config.compression_levels(),
            ),
            thunks: Vec::with_capacity(self.last_batch_records.clamp(4, 4096)),
            created,
        });
        self.next_number
    }

    /// Bytes and completion slots allocated for the open batch, if one is open.
    #[cfg(test)]
    fn open_allocation(&self) -> Option<(usize, usize)> {
        self.open
            .as_ref()
            .map(|o| (o.builder.capacity(), o.thunks.capacity()))
    }

    /// The partition.
    pub(crate) fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// What every completion needs (for records failed outside a batch).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Bytes the open batch can still take (uncompressed), if one is open.
    pub(crate) fn open_room(&self) -> Option<usize> {
        let open = self.open.as_ref()?;
        Some(self.limit.saturating_sub(open.builder.size_in_bytes()))
    }

    /// When the open batch's first record was sent, if one is open.
    pub(crate) fn open_since(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.created)
    }

    /// Appends to the open batch within the current limit; `false` if it would not fit.
    fn try_append_open(&mut self, r: &AppendRecord) -> bool {
        let limit = self.limit;
        self.open.as_mut().is_some_and(|open| {
            open.builder.try_append(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
                limit,
            )
        })
    }

    /// Appends one record (its `delivery.timeout.ms` clock is `record.enqueued`).
    fn append(&mut self, record: AppendRecord) -> Appended {
        let mut done = Appended::default();
        self.last_active = self.last_active.max(record.enqueued);
        if let Some(err) = &self.aborted {
            self.deferred.push(Action::Fail(Refused::Record(
                record.delivery,
                record.pending_slot,
                err.clone(),
            )));
            return done;
        }
        if self.open.is_none() {
            done.opened = Some(self.new_batch(record.enqueued));
        }
        if !self.try_append_open(&record) {
            done.closed[0] = self.close();
            done.opened = Some(self.new_batch(record.enqueued));
            let ok = self.try_append_open(&record);
            debug_assert!(ok, "an empty batch accepts any record");
        }
        let AppendRecord {
            timestamp,
            key,
            value,
            delivery,
            pending_slot,
            ..
        } = record;
        let Some(open) = self.open.as_mut() else {
            // Unreachable: a batch was opened above. Never lose the record all the same.
            self.deferred.push(Action::Fail(Refused::Record(
                delivery,
                pending_slot,
                ProduceError::closed("accumulator has no open batch"),
            )));
            return done;
        };
        open.thunks.push(RecordThunk {
            delivery,
            timestamp,
            key_size: key.as_ref().map_or(-1, |k| k.len() as i32),
            value_size: value.as_ref().map_or(-1, |v| v.len() as i32),
            pending_slot,
        });
        if open.builder.size_in_bytes() >= self.limit {
            done.closed[1] = self.close();
        }
        done
    }

    /// The linger timer of batch `number` fired: closes it if it is still the open one.
    #[cfg(test)]
    pub(crate) fn linger_expired(&mut self, number: u64) -> Option<ProducerBatch> {
        (self.next_number == number && self.open.is_some())
            .then(|| self.close())
            .flatten()
    }

    /// Closes the open batch (flush, linger, full). A batch that cannot be built fails its
    /// records (`ProduceError::Batch`).
    fn close(&mut self) -> Option<ProducerBatch> {
        let open = self.open.take()?;
        let uncompressed = open.builder.size_in_bytes() as u64;
        self.last_batch_bytes = open.builder.size_in_bytes();
        self.last_batch_records = open.thunks.len();
        // With idempotence the sender writes producer id, epoch and sequence at drain time and
        // computes the CRC then: once per batch, not twice.
        let built = if self.config.enable_idempotence {
            open.builder.build_unsealed()
        } else {
            open.builder.build(-1, -1, -1)
        };
        let records = match built {
            Ok(r) => r,
            Err(e) => {
                self.deferred.push(Action::Fail(Refused::Records(
                    open.thunks,
                    ProduceError::Batch(e),
                )));
                return None;
            }
        };
        if uncompressed > 0 {
            self.ratio.observe(uncompressed as usize, records.len());
            let ppm = records.len() as u64 * 1_000_000 / uncompressed;
            self.deferred
                .push(Action::Count(Count::Compression { ppm }));
        }
        self.next_number += 1;
        Some(ProducerBatch::new(
            self.tp.clone(),
            records,
            open.thunks,
            open.created,
            self.next_number - 1,
            self.shared.clone(),
        ))
    }

    /// Fails the open batch and every later record with `err`.
    fn abort_open(&mut self, err: ProduceError) {
        if let Some(open) = self.open.take() {
            self.deferred
                .push(Action::Fail(Refused::Records(open.thunks, err.clone())));
        }
        self.aborted = Some(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Delivery;
    use std::sync::Mutex;

    fn core(props: &[(&str, &str)]) -> AccumulatorCore {
        let mut b = ProducerConfig::builder().bootstrap_servers(["b:9092"]);
        for (k, v) in props {
            b = b.set(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let config = Arc::new(b.build().unwrap_or_else(|e| panic!("{e}")));
        let mailbox = Arc::new(RecordMailbox::new(config.mailbox_capacity.max(1)));
        AccumulatorCore::new(
            TopicPartition::new("t", 0),
            config,
            Arc::new(Shared::default()),
            mailbox,
            Instant::now(),
        )
    }

    fn record(value: &[u8], log: &Arc<Mutex<Vec<String>>>) -> AppendRecord {
        let log = log.clone();
        AppendRecord {
            timestamp: 1,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            delivery: Delivery::Callback(crate::batch::inline_callback(move |r| {
                log.lock().unwrap().push(format!("{:?}", r.err()));
            })),
            enqueued: Instant::now(),
            pending_slot: 0,
        }
    }

    #[test]
    fn batches_close_when_full_numbered_in_order_and_linger_closes_only_its_own_batch() {
        let mut c = core(&[("batch.size", "200"), ("enable.idempotence", "false")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = c.append(record(&[1; 50], &log));
        assert_eq!(first.opened, Some(0));
        assert!(first.closed.iter().all(Option::is_none));
        let mut closed = Vec::new();
        for _ in 0..10 {
            let a = c.append(record(&[2; 50], &log));
            closed.extend(a.closed.into_iter().flatten());
        }
        assert!(!closed.is_empty());
        let numbers: Vec<u64> = closed.iter().map(|b| b.number).collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
        assert!(closed.iter().all(|b| b.size_in_bytes() <= 200 + 61));
        // A stale linger timer (batch 0's) does not close the batch open now.
        assert!(c.linger_expired(0).is_none());
        let open = numbers.len() as u64;
        let last = c.linger_expired(open);
        assert!(last.is_some());
        assert!(c.linger_expired(open).is_none(), "nothing open");
        // Abort: later records fail at once.
        c.append(record(&[3; 10], &log));
        let mut out = Vec::new();
        c.abort(ProduceError::closed("test"), Instant::now(), &mut out);
        c.append(record(&[4; 10], &log));
        c.drain(Instant::now(), &mut out);
        assert_eq!(
            log.lock().unwrap().len(),
            0,
            "no user code runs in the core"
        );
        let shared = c.shared().clone();
        for a in out {
            if let Action::Fail(r) = a {
                r.carry_out(&shared);
            }
        }
        assert_eq!(log.lock().unwrap().len(), 2);
        drop((closed, last));
    }

    /// Retires only with nothing open and nothing held, after both `metadata.max.idle.ms` and
    /// `delivery.timeout.ms` since the last record.
    #[test]
    fn an_idle_accumulator_retires_after_the_idle_time_and_never_with_work_left() {
        let mut c = core(&[
            ("metadata.max.idle.ms", "5000"),
            ("delivery.timeout.ms", "30000"),
            ("linger.ms", "0"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let sec = std::time::Duration::from_secs;
        c.append(record(&[1; 10], &log));
        let last = t0 + sec(1);
        let mut r = record(&[1; 10], &log);
        r.enqueued = last;
        c.append(r);
        // An open batch is never retired, whatever the time.
        assert!(matches!(c.idle_check(last + sec(3600)), Idle::CheckAt(_)));
        let mut out = Vec::new();
        c.flush(last, &mut out);
        let batch = out.into_iter().find_map(|a| match a {
            Action::Ready(b) => Some(b),
            _ => None,
        });
        assert!(batch.is_some());
        // A batch not completed keeps it.
        assert!(matches!(c.idle_check(last + sec(3600)), Idle::CheckAt(_)));
        drop(batch);
        // delivery.timeout.ms (the larger) counts from the last record.
        assert_eq!(c.idle_check(last + sec(10)), Idle::CheckAt(last + sec(30)));
        // A record queued keeps it.
        assert!(c.mailbox().try_reserve(1));
        assert!(matches!(c.idle_check(last + sec(30)), Idle::CheckAt(_)));
        c.mailbox().release(1);
        assert_eq!(c.idle_check(last + sec(30)), Idle::Retire);
        assert!(c.mailbox().retired(), "retiring retires the mailbox");
    }

    /// Queues a record as `send` does (a mailbox slot, then the push).
    fn send(c: &AccumulatorCore, value: &[u8], log: &Arc<Mutex<Vec<String>>>) -> bool {
        assert!(c.mailbox().try_reserve(1), "mailbox full");
        c.mailbox()
            .push(std::iter::once(record(value, log)))
            .map(|p| p == Pushed::Wake)
            .unwrap_or(false)
    }

    fn split(out: Vec<Action>) -> (Vec<ProducerBatch>, Vec<Action>) {
        let mut batches = Vec::new();
        let mut rest = Vec::new();
        for a in out {
            match a {
                Action::Ready(b) => batches.push(b),
                other => rest.push(other),
            }
        }
        (batches, rest)
    }

    /// Back-pressure: with every batch slot taken, a closed batch waits (one `WaitSlot`),
    /// nothing more is drained from the mailbox (it fills and `send` waits), a flush waits for
    /// what was sent before it, and the slot's arrival resumes all of it, in order.
    #[test]
    fn a_full_partition_stops_draining_until_a_batch_slot_frees() {
        let mut c = core(&[
            ("batch.size", "120"),
            ("linger.ms", "0"),
            ("max.pending.batches.per.partition", "1"),
            ("mailbox.capacity", "4"),
            ("enable.idempotence", "false"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        // Three records of 50 bytes: a batch holds one (61-byte header + record > 120 / 2).
        for _ in 0..3 {
            send(&c, &[1; 50], &log);
        }
        let mut out = Vec::new();
        c.drain(now, &mut out);
        let (first, rest) = split(out);
        assert_eq!(first.len(), 1, "one batch slot: one batch out");
        assert_eq!(
            rest.iter()
                .filter(|a| matches!(a, Action::WaitSlot))
                .count(),
            1,
            "one wait for the next slot: {rest:?}"
        );
        // Records sent now stay queued: the mailbox fills, and send would wait.
        for _ in 0..4 {
            send(&c, &[2; 50], &log);
        }
        let mut out = Vec::new();
        c.drain(now, &mut out);
        assert!(
            !c.mailbox().try_reserve(1),
            "the mailbox fills while a slot is awaited"
        );
        assert_eq!(
            c.holdings(),
            (5, 2),
            "4 queued + 1 open; 1 sent + 1 waiting"
        );
        // A drain or a flush meanwhile sends nothing and asks for no second wait.
        c.flush(now, &mut out);
        assert!(
            out.iter()
                .all(|a| !matches!(a, Action::Ready(_) | Action::WaitSlot)),
            "{out:?}"
        );
        // The slot frees (the first batch completes): the next batch goes with it.
        let numbers = |b: &[ProducerBatch]| b.iter().map(|b| b.number).collect::<Vec<_>>();
        assert_eq!(numbers(&first), vec![0]);
        assert!(
            log.lock().unwrap().is_empty(),
            "no user code ran in the core"
        );
        // (Dropping a batch fails its records, as one the sender gave up.)
        drop(first);
        let mut sent = Vec::new();
        for _ in 0..10 {
            let permit = c.slots().clone().try_acquire_owned().ok();
            if permit.is_none() {
                break;
            }
            let mut out = Vec::new();
            c.slot_arrived(permit, now, &mut out);
            let (batches, rest) = split(out);
            let more = rest.iter().any(|a| matches!(a, Action::WaitSlot));
            sent.extend(batches.iter().map(|b| b.number));
            drop(batches);
            if !more {
                break;
            }
        }
        // Every record sent before the flush is in a batch, in order, and nothing is held.
        assert_eq!(sent, vec![1, 2, 3, 4, 5, 6], "batches in the order closed");
        assert_eq!(c.holdings(), (0, 0));
        assert!(c.mailbox().try_reserve(4), "the mailbox emptied");
        c.mailbox().release(4);
    }

    /// Found in review: under back-pressure the open batch's first record has usually waited
    /// out `linger.ms` in the mailbox, so a linger timer that fired while a slot was awaited
    /// closed a one-record batch each time (about every other batch sent). It closes nothing
    /// then; the slot's arrival appends the backlog into the batch and arms the timer again.
    #[test]
    fn a_linger_timer_closes_nothing_while_a_slot_is_awaited() {
        let mut c = core(&[
            ("batch.size", "120"),
            ("linger.ms", "5"),
            ("max.pending.batches.per.partition", "1"),
            ("mailbox.capacity", "8"),
            ("enable.idempotence", "false"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        for _ in 0..3 {
            send(&c, &[1; 50], &log);
        }
        let mut out = Vec::new();
        c.drain(now, &mut out);
        let (first, _) = split(out);
        assert_eq!(first.len(), 1);
        assert_eq!(
            c.holdings(),
            (1, 2),
            "one record open, one batch out, one waiting"
        );
        let mut out = Vec::new();
        c.linger_fired(now + std::time::Duration::from_millis(10), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(c.holdings(), (1, 2), "the open batch stays open");
        drop(first);
        let permit = c.slots().clone().try_acquire_owned().ok();
        let mut out = Vec::new();
        c.slot_arrived(permit, now + std::time::Duration::from_millis(10), &mut out);
        assert!(
            out.iter().any(|a| matches!(a, Action::ArmLinger(_))),
            "the timer is armed again: {out:?}"
        );
        let (sent, _) = split(out);
        assert_eq!(sent.iter().map(|b| b.number).collect::<Vec<_>>(), vec![1]);
        drop(sent);
    }

    /// Found by missed mutants (settle, open_room): a push wakes the accumulator only when it
    /// must. With no batch open, or with `linger.ms=0`, every push after a drain wakes it;
    /// while a batch lingers (its timer will drain the queue) a small push does not, and one
    /// that brings enough bytes to fill the open batch does. Outcomes do not depend on it
    /// (the simulation could not tell); the actor wake-ups per batch do.
    #[test]
    fn a_push_wakes_the_accumulator_only_when_it_must() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let mut out = Vec::new();
        let mut c = core(&[
            ("linger.ms", "1000"),
            ("batch.size", "1000"),
            ("mailbox.capacity", "64"),
            ("enable.idempotence", "false"),
        ]);
        assert!(send(&c, &[1; 10], &log), "no batch open: wake");
        c.drain(now, &mut out);
        assert!(c.open_room().is_some(), "a batch lingers");
        assert!(
            !send(&c, &[1; 10], &log),
            "a small push while the batch lingers"
        );
        assert!(!send(&c, &[1; 10], &log));
        assert!(
            send(&c, &[1; 1000], &log),
            "enough bytes to fill the open batch"
        );
        // linger.ms=0: nothing lingers, every push after a drain wakes.
        let mut c = core(&[("linger.ms", "0"), ("enable.idempotence", "false")]);
        assert!(send(&c, &[1; 10], &log));
        c.drain(now, &mut out);
        assert!(send(&c, &[1; 10], &log), "linger.ms=0: a push wakes");
    }

    /// Found by a missed mutant: the queues that trade places between the mailbox and the
    /// backlog at each drain both come back to what recent drains need after one burst.
    #[test]
    fn the_record_queues_shrink_after_a_burst() {
        let mut c = core(&[("linger.ms", "0"), ("mailbox.capacity", "4096")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..2000 {
            send(&c, &[1; 10], &log);
        }
        c.drain(now, &mut out);
        assert!(c.backlog.capacity() >= 2000, "the burst's queue");
        for _ in 0..40 {
            send(&c, &[1; 10], &log);
            c.drain(now, &mut out);
            out.clear();
        }
        let mut taken = VecDeque::new();
        c.mailbox().take_all(&mut taken);
        let (backlog, mailbox) = (c.backlog.capacity(), taken.capacity());
        assert!(
            backlog <= 64 && mailbox <= 64,
            "after the burst: backlog {backlog}, mailbox {mailbox} records of room"
        );
    }

    /// `close` aborts: the batches waiting for a slot and every queued record fail at once,
    /// not after a slot frees; later records fail too. No callback runs in the core.
    #[test]
    fn an_abort_while_a_slot_is_awaited_fails_what_waits_at_once() {
        let mut c = core(&[
            ("batch.size", "120"),
            ("linger.ms", "0"),
            ("max.pending.batches.per.partition", "1"),
            ("mailbox.capacity", "8"),
            ("enable.idempotence", "false"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        for _ in 0..5 {
            send(&c, &[1; 50], &log);
        }
        let mut out = Vec::new();
        c.drain(now, &mut out);
        let (held, _) = split(out);
        assert_eq!(held.len(), 1);
        let mut out = Vec::new();
        c.abort(ProduceError::closed("closing"), now, &mut out);
        send(&c, &[3; 10], &log);
        c.drain(now, &mut out);
        assert!(
            log.lock().unwrap().is_empty(),
            "no user code ran in the core"
        );
        let shared = c.shared().clone();
        for a in out {
            match a {
                Action::Fail(r) => r.carry_out(&shared),
                Action::FailBatch(b, e) => b.fail(e),
                Action::Ready(b) => panic!("an aborted accumulator sent batch {}", b.number),
                _ => {}
            }
        }
        // Four queued or waiting records and the one sent after the abort; the slot holder
        // is the sender's to complete.
        assert_eq!(log.lock().unwrap().len(), 5, "{:?}", log.lock().unwrap());
        assert_eq!(c.holdings(), (0, 1));
        drop(held);
        assert_eq!(c.holdings(), (0, 0));
    }

    /// `purge` fails what waits here — the batches waiting for a slot, the backlog, the
    /// mailbox, the open batch — with `Purged` (not possibly written), leaves the slot holder
    /// to the sender, and accepts later records as before (unlike an abort). No callback runs
    /// in the core.
    #[test]
    fn a_purge_fails_what_waits_here_and_later_records_are_accepted() {
        let mut c = core(&[
            ("batch.size", "120"),
            ("linger.ms", "10000"),
            ("max.pending.batches.per.partition", "1"),
            ("mailbox.capacity", "8"),
            ("enable.idempotence", "false"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        for _ in 0..5 {
            send(&c, &[1; 50], &log);
        }
        let mut out = Vec::new();
        c.drain(now, &mut out);
        let (held, _) = split(out);
        assert_eq!(held.len(), 1, "one batch holds the only slot");
        // Two more records stay in the mailbox (the drain waits for the slot).
        send(&c, &[2; 50], &log);
        send(&c, &[2; 50], &log);
        let mut out = Vec::new();
        c.purge(&mut out);
        assert!(
            log.lock().unwrap().is_empty(),
            "no user code ran in the core"
        );
        let shared = c.shared().clone();
        for a in out {
            match a {
                Action::Fail(r) => r.carry_out(&shared),
                Action::FailBatch(b, e) => b.fail(e),
                Action::Ready(b) => panic!("a purge sent batch {}", b.number),
                _ => {}
            }
        }
        let purged = log.lock().unwrap().clone();
        let sent = held[0].record_count();
        assert_eq!(purged.len(), 7 - sent, "{purged:?}");
        let expected = format!(
            "{:?}",
            Some(ProduceError::Purged {
                possibly_written: false
            })
        );
        assert!(purged.iter().all(|e| *e == expected), "{purged:?}");
        assert_eq!(c.holdings(), (0, 1), "the slot holder is the sender's");
        drop(held);
        assert_eq!(c.holdings(), (0, 0));
        let before = log.lock().unwrap().len();
        // Not aborted: a later record joins a new open batch.
        let mut out = Vec::new();
        send(&c, &[3; 10], &log);
        c.drain(now, &mut out);
        assert_eq!(c.holdings(), (1, 0));
        assert!(out.iter().all(|a| !matches!(a, Action::Fail(_))));
        assert_eq!(
            log.lock().unwrap().len(),
            before,
            "no outcome for the later record"
        );
    }

    /// A partition with a record or two per batch does not allocate `batch.size` bytes (and
    /// room for 64 completions) for each batch: thousands of such partitions held hundreds of
    /// MiB (benches/scale.sh, 2,000 partitions). A new batch starts at what the last one
    /// needed; a full one still gets `batch.size` at once.
    #[test]
    fn a_batch_allocates_what_the_last_one_needed_not_batch_size() {
        let mut c = core(&[("batch.size", "16384"), ("linger.ms", "5")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        c.append(record(&[1; 100], &log));
        let small = c.close();
        c.append(record(&[1; 100], &log));
        let (bytes, slots) = c.open_allocation().unwrap_or_default();
        assert!(bytes <= 1024, "a one-record batch allocated {bytes} bytes");
        assert!(slots <= 8, "room for {slots} completions");
        // Fill batches: the next one starts at batch.size.
        let mut closed = Vec::new();
        for _ in 0..400 {
            closed.extend(
                c.append(record(&[2; 100], &log))
                    .closed
                    .into_iter()
                    .flatten(),
            );
        }
        assert!(!closed.is_empty());
        let (bytes, _) = c.open_allocation().unwrap_or_default();
        assert!(
            bytes >= 16384,
            "a full partition's batch starts at {bytes} bytes"
        );
        drop((small, closed));
    }

    /// What a closed batch carries beyond its records (mutants of `append` and `close` the
    /// simulation cannot see): a null key or value is size -1 in the record's thunk (it becomes
    /// `RecordMetadata.serialized_key_size`, -1 as Java); without idempotence the batch is
    /// sealed with no producer id, epoch or sequence (-1 each) and a valid CRC; every close
    /// counts its compression ratio (`compression-rate`), in parts per million.
    #[test]
    fn a_closed_batch_carries_null_sizes_no_producer_state_and_its_compression_ratio() {
        let mut c = core(&[("enable.idempotence", "false")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        c.append(record(b"vvv", &log));
        let mut keyed = record(b"", &log);
        keyed.key = Some(bytes::Bytes::from_static(b"kk"));
        keyed.value = None;
        c.append(keyed);
        let Some(batch) = c.close() else {
            panic!("a batch closes")
        };
        let sizes: Vec<(i32, i32)> = batch
            .thunks
            .iter()
            .map(|t| (t.key_size, t.value_size))
            .collect();
        assert_eq!(sizes, vec![(-1, 3), (2, -1)]);
        let r = &batch.records[..];
        let i64_at = |at: usize| i64::from_be_bytes(r[at..at + 8].try_into().unwrap_or([0; 8]));
        let i16_at = |at: usize| i16::from_be_bytes([r[at], r[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(r[at..at + 4].try_into().unwrap_or([0; 4]));
        assert_eq!((i64_at(43), i16_at(51), i32_at(53)), (-1, -1, -1));
        assert_eq!(i32_at(17) as u32, crc32c::crc32c(&r[21..]), "sealed");
        let ppm = |c: &AccumulatorCore| -> Vec<u64> {
            c.deferred
                .iter()
                .filter_map(|a| match a {
                    Action::Count(Count::Compression { ppm }) => Some(*ppm),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            ppm(&c),
            vec![1_000_000],
            "uncompressed: the wire size is the size"
        );

        #[cfg(feature = "gzip")]
        {
            let mut c = core(&[("compression.type", "gzip")]);
            for _ in 0..50 {
                c.append(record(&[7; 100], &log));
            }
            let Some(batch) = c.close() else {
                panic!("a batch closes")
            };
            let uncompressed = c.last_batch_bytes as u64;
            let expected = batch.records.len() as u64 * 1_000_000 / uncompressed;
            assert_eq!(ppm(&c), vec![expected]);
            assert!(
                expected < 200_000,
                "50 equal records compress: {expected} ppm"
            );
        }
    }
}
