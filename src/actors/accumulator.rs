//! `PartitionAccumulator`: one actor per `TopicPartition`, created on first use. A thin shell
//! around `AccumulatorCore` (`src/core/accumulator.rs`), which owns the partition's open
//! batch, its batch slots and its record mailbox's consumer side, and decides when a batch
//! closes (the next record would not fit in `batch.size` bytes, `linger.ms` passed since its
//! first record, [`FlushBatch`]) and when it may go to the [`Sender`]. The actor carries out
//! the core's actions: it hands closed batches (built here, on the accumulator's arbiter:
//! compression, CRC-32C) to the sender by move, arms the linger timer, awaits a batch slot,
//! fails refused records and counts metrics.
//!
//! Back-pressure: an accumulator has at most `max.pending.batches.per.partition` closed batches
//! not yet completed. When it has that many, the core stops draining its `RecordMailbox` until
//! one completes; the mailbox then fills up to `mailbox.capacity` records and `send` waits (up
//! to `max.block.ms`) for a slot. Memory per partition is bounded by `mailbox.capacity`
//! records + (`max.pending.batches.per.partition` + 4) × `batch.size` bytes (see the core).

use crate::actors::sender::{BatchReady, Sender};
use crate::batch::Shared;
use crate::config::ProducerConfig;
use crate::core::accumulator::{AccumulatorCore, Action, Idle};
use crate::error::ProduceError;
use crate::mailbox::RecordMailbox;
use crate::record::TopicPartition;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Instant;

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

/// `Producer::purge`'s first step: fails what the accumulator holds and has not handed to the
/// sender (mailbox, open batch, batches waiting for a slot) with `Purged`; later records are
/// accepted as before. Answered once those records have their outcomes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PurgeAccumulator;

/// See the module docs.
pub struct PartitionAccumulator {
    config: Arc<ProducerConfig>,
    sender: Addr<Sender>,
    shared: Arc<Shared>,
    core: AccumulatorCore,
    /// The actions buffer, kept between steps (no allocation per message).
    actions: Vec<Action>,
    /// The producer's accumulator directory, where a retiring accumulator removes its entry.
    directory: std::sync::Weak<crate::producer::Directory>,
}

impl PartitionAccumulator {
    pub(crate) fn new(
        tp: TopicPartition,
        config: Arc<ProducerConfig>,
        sender: Addr<Sender>,
        shared: Arc<Shared>,
        mailbox: Arc<RecordMailbox>,
        directory: std::sync::Weak<crate::producer::Directory>,
    ) -> Self {
        PartitionAccumulator {
            directory,
            core: AccumulatorCore::new(tp, config.clone(), shared.clone(), mailbox, Instant::now()),
            config,
            sender,
            shared,
            actions: Vec::new(),
        }
    }

    /// Runs one core step and carries out what it decided, in order.
    fn step(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut AccumulatorCore, Instant, &mut Vec<Action>),
    ) {
        let mut out = std::mem::take(&mut self.actions);
        f(&mut self.core, Instant::now(), &mut out);
        for action in out.drain(..) {
            self.execute(action, ctx);
        }
        // An abort fails a whole mailbox one action each: do not keep that much room.
        out.shrink_to(64);
        self.actions = out;
    }

    fn execute(&mut self, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::Ready(batch) => self.sender.do_send(BatchReady(batch)),
            Action::ArmLinger(due) => {
                ctx.run_later(due, |act, ctx| {
                    act.step(ctx, |c, now, out| c.linger_fired(now, out));
                });
            }
            Action::WaitSlot => {
                // Spawned, not `ctx.wait`: the core takes flushes, aborts and linger timers
                // meanwhile (it drains nothing until the slot arrives).
                let slots = self.core.slots().clone();
                ctx.spawn(
                    async move { slots.acquire_owned().await.ok() }
                        .into_actor(self)
                        .map(|permit, act, ctx| {
                            act.step(ctx, |c, now, out| c.slot_arrived(permit, now, out));
                        }),
                );
            }
            Action::Drain => ctx.notify(Drain),
            Action::Fail(refused) => refused.carry_out(&self.shared),
            Action::FailBatch(batch, err) => batch.fail(err),
            Action::Count(count) => self.shared.metrics.apply(count),
        }
    }

    /// The idle timer: retires the accumulator once its core says so (see
    /// [`AccumulatorCore::idle_check`]), removing its directory entry (the next send to the
    /// partition starts a new one); else re-arms.
    fn idle_check(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match self.core.idle_check(now) {
            Idle::Retire => {
                if let Some(directory) = self.directory.upgrade() {
                    let mine = self.core.mailbox();
                    directory.remove_if(self.core.topic_partition(), |_, slot| {
                        Arc::ptr_eq(&slot.mailbox, mine)
                    });
                }
                tracing::debug!(
                    tp = %self.core.topic_partition(),
                    "idle partition accumulator retired"
                );
                ctx.stop();
            }
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

    /// Fails everything the core still holds (`Closed`), outside an actor step.
    fn fail_held(&mut self) {
        let mut out = Vec::new();
        self.core.stopped(&mut out);
        for action in out {
            match action {
                Action::Fail(refused) => refused.carry_out(&self.shared),
                Action::FailBatch(batch, err) => batch.fail(err),
                Action::Count(count) => self.shared.metrics.apply(count),
                // Stopping sends, arms and drains nothing.
                Action::Ready(_) | Action::ArmLinger(_) | Action::WaitSlot | Action::Drain => {}
            }
        }
    }
}

impl Drop for PartitionAccumulator {
    fn drop(&mut self) {
        // An arbiter stopped without `stopped` being called: queued records still get their
        // outcome.
        self.fail_held();
    }
}

impl Actor for PartitionAccumulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The mailbox bound is enforced by the producer's per-partition slot semaphore
        // (`mailbox.capacity`); actix's own bound (0 = unbounded here) only parks the sending
        // address.
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
        self.fail_held();
    }
}

impl Handler<Drain> for PartitionAccumulator {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.step(ctx, |c, now, out| c.drain(now, out));
    }
}

impl Handler<FlushBatch> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, _: FlushBatch, ctx: &mut Context<Self>) {
        // Records sent before the flush are in the mailbox or the backlog: the core appends
        // them first.
        self.step(ctx, |c, now, out| c.flush(now, out));
    }
}

impl Handler<AbortAccumulator> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, msg: AbortAccumulator, ctx: &mut Context<Self>) {
        self.step(ctx, |c, now, out| c.abort(msg.0, now, out));
    }
}

impl Handler<PurgeAccumulator> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, _: PurgeAccumulator, ctx: &mut Context<Self>) {
        self.step(ctx, |c, _, out| c.purge(out));
    }
}
