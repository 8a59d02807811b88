//! `PartitionAccumulator`: one actor per `TopicPartition`, created on first use. A thin shell
//! around `AccumulatorCore` (`src/core/accumulator.rs`), which owns the partition's open batch
//! and the records' completions and decides when a batch closes (the next record would not fit
//! in `batch.size` bytes, `linger.ms` passed since its first record, [`FlushBatch`]). The actor
//! arms the linger timer, holds the batch slots, and hands closed batches (built here, on the
//! accumulator's arbiter: compression, CRC-32C) to the [`Sender`] by move.
//!
//! Back-pressure: an accumulator has at most `max.pending.batches.per.partition` closed batches
//! not yet completed. When it has that many, it stops draining its `RecordMailbox`
//! (`ctx.wait`) until one completes; the mailbox then fills up to `mailbox.capacity` records
//! and `send` waits (up to `max.block.ms`) for a slot. Memory per partition is bounded by
//! `mailbox.capacity` records + (`max.pending.batches.per.partition` + 1) × `batch.size` bytes.

use crate::actors::sender::{BatchReady, Sender};
use crate::batch::{ProducerBatch, Shared};
use crate::config::ProducerConfig;
use crate::core::accumulator::{AccumulatorCore, Idle};
use crate::error::ProduceError;
use crate::mailbox::{Pushed, RecordMailbox};
use crate::record::TopicPartition;
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

pub use crate::batch::AppendRecord;

/// Appends what the partition's `RecordMailbox` holds. Sent by `send` only when the mailbox
/// was not already scheduled: one message per drain, not per record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Closes the open batch now (used by `flush` and `close`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushBatch;

/// Fails the open batch and every later record with the given error (used by `close`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortAccumulator(pub ProduceError);

pub(crate) use crate::batch::DROPPED_UNDELIVERED;

/// See the module docs.
pub struct PartitionAccumulator {
    config: Arc<ProducerConfig>,
    sender: Addr<Sender>,
    core: AccumulatorCore,
    /// A linger timer is pending. There is at most one, and it is never cancelled (actix
    /// cancels by scanning a list, which showed in profiles at one batch per 15 records): when
    /// it fires it closes the open batch if that batch is due, else re-arms for it.
    linger_armed: bool,
    /// `max.pending.batches.per.partition` slots; a closed batch holds one until it completes.
    batch_slots: Arc<Semaphore>,
    /// Closed batches waiting for a batch slot, oldest first.
    waiting: VecDeque<ProducerBatch>,
    /// A `ctx.wait` for a batch slot is pending.
    slot_waiter: bool,
    /// The records' mailbox (shared with the producer handle).
    mailbox: Arc<RecordMailbox>,
    /// Records taken from the mailbox and not appended yet, oldest first; their mailbox slots
    /// are still taken (non-empty only while a batch slot is awaited).
    backlog: VecDeque<AppendRecord>,
    /// A flush came while the backlog waited: close the open batch once it is appended.
    flush_requested: bool,
    /// The producer's accumulator directory, where a retiring accumulator removes its entry.
    directory: std::sync::Weak<crate::actors::producer::Directory>,
    /// Drains in a row that used far less of the backlog's allocation than it has.
    oversized_drains: u8,
}

impl PartitionAccumulator {
    pub(crate) fn new(
        tp: TopicPartition,
        config: Arc<ProducerConfig>,
        sender: Addr<Sender>,
        shared: Arc<Shared>,
        mailbox: Arc<RecordMailbox>,
        directory: std::sync::Weak<crate::actors::producer::Directory>,
    ) -> Self {
        let slots = config.max_pending_batches_per_partition.max(1);
        PartitionAccumulator {
            directory,
            oversized_drains: 0,
            core: AccumulatorCore::new(tp, config.clone(), shared, Instant::now()),
            config,
            sender,
            linger_armed: false,
            batch_slots: Arc::new(Semaphore::new(slots)),
            waiting: VecDeque::new(),
            slot_waiter: false,
            mailbox,
            backlog: VecDeque::new(),
            flush_requested: false,
        }
    }

    /// Arms the linger timer for the open batch, `linger.ms` after its first record was sent
    /// (it may have waited in the mailbox), unless a timer is pending already: that one fires
    /// no later (it was armed for an older batch) and re-arms.
    fn arm_linger(&mut self, ctx: &mut Context<Self>) {
        if self.linger_armed {
            return;
        }
        let Some(created) = self.core.open_since() else {
            return;
        };
        let due = (created + self.config.linger).saturating_duration_since(Instant::now());
        self.linger_armed = true;
        ctx.run_later(due, |act, ctx| act.linger_fired(ctx));
    }

    /// The linger timer fired: appends what the mailbox holds, closes the open batch if its
    /// `linger.ms` has passed, and arms the timer for the batch open then.
    fn linger_fired(&mut self, ctx: &mut Context<Self>) {
        self.linger_armed = false;
        self.drain_records(ctx);
        let due = self
            .core
            .open_since()
            .is_some_and(|created| created + self.config.linger <= Instant::now());
        if due {
            if let Some(batch) = self.core.close() {
                self.hand_over(batch, ctx);
            }
            self.fail_refused();
        }
        self.arm_linger(ctx);
        self.settle(ctx);
    }

    /// After each message: tells the mailbox whether the open batch lingers (its timer will
    /// drain the queue, so pushes need not wake this actor) and drains again if what is queued
    /// needs it now.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        if self.slot_waiter {
            // The pending batch slot resumes the drain; pushes meanwhile schedule a Drain.
            return;
        }
        let room = if self.linger_armed && !self.config.linger.is_zero() {
            self.core.open_room()
        } else {
            None
        };
        if self.mailbox.linger(room) == Pushed::Wake {
            ctx.notify(Drain);
        }
    }

    /// Closes the open batch now (flush).
    fn close_batch(&mut self, ctx: &mut Context<Self>) {
        if let Some(batch) = self.core.close() {
            self.hand_over(batch, ctx);
        }
        self.fail_refused();
    }

    /// Hands a closed batch to the sender with a batch slot, or queues it behind the others.
    fn hand_over(&mut self, mut batch: ProducerBatch, ctx: &mut Context<Self>) {
        if self.waiting.is_empty() {
            if let Ok(slot) = self.batch_slots.clone().try_acquire_owned() {
                batch._slot = Some(slot);
                self.sender.do_send(BatchReady(batch));
                return;
            }
        }
        self.waiting.push_back(batch);
        self.hand_over_waiting(ctx);
    }

    /// Hands closed batches to the sender in the order they were closed, one batch slot each.
    /// While none is free, a single `ctx.wait` stops the mailbox (back-pressure starts here);
    /// one waiter only, so batches cannot overtake each other.
    fn hand_over_waiting(&mut self, ctx: &mut Context<Self>) {
        while !self.waiting.is_empty() {
            match self.batch_slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let Some(mut batch) = self.waiting.pop_front() else {
                        return;
                    };
                    batch._slot = Some(slot);
                    self.sender.do_send(BatchReady(batch));
                }
                Err(_) => {
                    if self.slot_waiter {
                        return;
                    }
                    self.slot_waiter = true;
                    let slots = self.batch_slots.clone();
                    ctx.wait(
                        async move { slots.acquire_owned().await.ok() }
                            .into_actor(self)
                            .map(move |slot, act, ctx| {
                                act.slot_waiter = false;
                                if let Some(mut batch) = act.waiting.pop_front() {
                                    batch._slot = slot;
                                    act.sender.do_send(BatchReady(batch));
                                }
                                act.hand_over_waiting(ctx);
                                if !act.slot_waiter {
                                    act.drain(ctx);
                                }
                                act.settle(ctx);
                            }),
                    );
                    return;
                }
            }
        }
    }

    /// Appends the backlog, then everything the mailbox holds (one swap), giving their mailbox
    /// slots back. Stops early while a closed batch waits for a batch slot (the rest stays in
    /// the backlog, its slots taken: the mailbox fills and senders wait); the slot's arrival
    /// resumes it. Records pushed meanwhile schedule the next `Drain`.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        self.drain_records(ctx);
        if self.flush_requested && !self.slot_waiter {
            self.flush_requested = false;
            self.close_batch(ctx);
        }
    }

    /// [`Self::drain`] without the pending flush.
    fn drain_records(&mut self, ctx: &mut Context<Self>) {
        for round in 0..2 {
            if round == 1 {
                if !self.backlog.is_empty() {
                    break;
                }
                self.mailbox.take_all(&mut self.backlog);
            }
            let mut appended = 0;
            while !self.slot_waiter {
                let Some(record) = self.backlog.pop_front() else {
                    break;
                };
                self.append(record, ctx);
                appended += 1;
            }
            self.mailbox.release(appended);
            if self.slot_waiter {
                return;
            }
            // The emptied queue becomes the mailbox's at the next swap: keep it about the size
            // of this drain, not of the largest burst seen (two queues per partition at their
            // peak added up to tens of MiB over 2,000 partitions, benches/scale.sh).
            // Only after 8 drains in a row that needed far less: a busy partition whose drains
            // vary in size does not reallocate back and forth.
            if self.backlog.capacity() > 2 * appended + 16 {
                self.oversized_drains = self.oversized_drains.saturating_add(1);
                if self.oversized_drains >= 8 {
                    self.backlog.shrink_to(appended.max(8));
                    self.oversized_drains = 0;
                }
            } else {
                self.oversized_drains = 0;
            }
        }
    }

    /// Fails what the core refused (the records' callbacks run here, not in the core).
    fn fail_refused(&mut self) {
        for r in self.core.take_refused() {
            r.carry_out(self.core.shared());
        }
    }

    fn append(&mut self, record: AppendRecord, ctx: &mut Context<Self>) {
        let done = self.core.append(record);
        self.fail_refused();
        let [first, second] = done.closed;
        if let Some(batch) = first {
            self.hand_over(batch, ctx);
        }
        if let Some(batch) = second {
            self.hand_over(batch, ctx);
        }
        if done.opened.is_some() {
            self.arm_linger(ctx);
        }
    }
}

impl PartitionAccumulator {
    /// The idle timer: retires the accumulator once its core says so (see
    /// [`AccumulatorCore::idle_check`]) and no slot of its mailbox is taken, removing its
    /// directory entry (the next send to the partition starts a new one); else re-arms.
    fn idle_check(&mut self, ctx: &mut Context<Self>) {
        let slots = self.config.max_pending_batches_per_partition.max(1);
        let held = !self.waiting.is_empty()
            || !self.backlog.is_empty()
            || self.slot_waiter
            || self.batch_slots.available_permits() < slots
            || self.mailbox.used() > 0;
        let now = Instant::now();
        match self.core.idle_check(now, held) {
            Idle::Retire if self.mailbox.retire_if_unused() => {
                if let Some(directory) = self.directory.upgrade() {
                    let mine = &self.mailbox;
                    directory.remove_if(self.core.topic_partition(), |_, slot| {
                        Arc::ptr_eq(&slot.mailbox, mine)
                    });
                }
                tracing::debug!(tp = %self.core.topic_partition(), "idle partition accumulator retired");
                ctx.stop();
            }
            Idle::Retire => self.arm_idle(now, ctx),
            Idle::CheckAt(at) => self.arm_idle(at, ctx),
        }
    }

    fn arm_idle(&mut self, at: Instant, ctx: &mut Context<Self>) {
        // At least a second apart: a mailbox in use is checked again, not spun on.
        let due = at.saturating_duration_since(Instant::now()).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(86_400),
        );
        ctx.run_later(due, |act, ctx| act.idle_check(ctx));
    }

    /// Fails every record still queued or in the backlog (`Closed`), and closes the mailbox.
    fn fail_queued(&mut self) {
        let n = self.backlog.len();
        let mut rest: Vec<AppendRecord> = self.backlog.drain(..).collect();
        self.mailbox.release(n);
        rest.extend(self.mailbox.close());
        if rest.is_empty() {
            return;
        }
        let err = ProduceError::closed(DROPPED_UNDELIVERED);
        let shared = self.core.shared();
        for r in rest {
            shared.deliver(r.delivery, Err(err.clone()));
            shared.finished_one(r.pending_slot, false);
        }
    }
}

impl Drop for PartitionAccumulator {
    fn drop(&mut self) {
        // An arbiter stopped without `stopped` being called: queued records still get their
        // outcome.
        self.fail_queued();
    }
}

impl Actor for PartitionAccumulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The mailbox bound is enforced by the producer's per-partition slot semaphore
        // (`mailbox.capacity`); actix's own bound (0 = unbounded here) only parks the sending address.
        ctx.set_mailbox_capacity(0);
        let first = crate::time::deadline_after(
            Instant::now(),
            self.config
                .metadata_max_idle
                .max(self.config.delivery_timeout),
        );
        self.arm_idle(first, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.core.stopped();
        self.fail_refused();
        self.fail_queued();
    }
}

impl Handler<Drain> for PartitionAccumulator {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.drain(ctx);
        self.settle(ctx);
    }
}

impl Handler<FlushBatch> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, _: FlushBatch, ctx: &mut Context<Self>) {
        // Records sent before the flush are in the mailbox or the backlog: append them first.
        self.flush_requested = true;
        self.drain(ctx);
        self.settle(ctx);
    }
}

impl Handler<AbortAccumulator> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, msg: AbortAccumulator, ctx: &mut Context<Self>) {
        for batch in self.waiting.drain(..) {
            batch.fail(msg.0.clone());
        }
        self.core.abort(msg.0);
        // Queued records fail now too (the core refuses them), not after a batch slot frees.
        let n = self.backlog.len();
        for record in self.backlog.drain(..) {
            self.core.append(record);
        }
        self.fail_refused();
        self.mailbox.release(n);
        self.drain(ctx);
        self.settle(ctx);
    }
}
