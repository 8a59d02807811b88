//! `PartitionAccumulator`: one actor per `TopicPartition`, created on first use. It owns the
//! partition's open batch (a [`RecordBatchBuilder`]) and the records' completions.
//!
//! It appends each [`Append`] to the open batch and closes the batch when the next record
//! would not fit in `batch.size` bytes, when `linger.ms` has passed since the batch's first
//! record, or on [`FlushBatch`]. A closed batch is built (CRC-32C, compression) here, on the
//! accumulator's arbiter, and handed to the [`Sender`] by move.
//!
//! Back-pressure: an accumulator has at most `max.pending.batches.per.partition` closed batches
//! not yet completed. When it has that many, it stops reading its mailbox (`ctx.wait`) until one
//! completes; the mailbox then fills up to `mailbox.capacity` records and `send` waits (up to
//! `max.block.ms`) for a slot. Memory per partition is bounded by
//! `mailbox.capacity` records + (`max.pending.batches.per.partition` + 1) × `batch.size` bytes.

use crate::actors::sender::{BatchReady, Sender};
use crate::batch::{Delivery, ProducerBatch, RecordThunk, Shared};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::protocol::record_batch::{CompressionRatioEstimator, RecordBatchBuilder};
use crate::record::{Header, TopicPartition};
use crate::slots::SlotPermit;
use actix::prelude::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

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

/// Appends one record.
pub struct Append {
    pub(crate) record: AppendRecord,
    /// The mailbox slot this message occupies; released once it is appended.
    pub(crate) _slot: SlotPermit,
}

impl Message for Append {
    type Result = ();
}

/// Appends several records of this partition, in order (`Producer::send_all`): one message,
/// one mailbox wake-up, for the whole chunk.
pub struct AppendMany {
    pub(crate) records: Vec<AppendRecord>,
    /// One mailbox slot per record; released once all are appended.
    pub(crate) _slots: SlotPermit,
}

impl Message for AppendMany {
    type Result = ();
}

/// Closes the open batch now (used by `flush` and `close`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushBatch;

/// Fails the open batch and every later record with the given error (used by `close`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortAccumulator(pub ProduceError);

/// The `Closed` reason of records whose producer went away before delivering them.
pub(crate) const DROPPED_UNDELIVERED: &str = "the producer stopped before this record was \
     delivered: it was dropped without close(), or its actix System ended; call \
     Producer::close(timeout) before dropping the last handle";

struct OpenBatch {
    builder: RecordBatchBuilder,
    thunks: Vec<RecordThunk>,
    created: Instant,
}

/// See the module docs.
pub struct PartitionAccumulator {
    tp: TopicPartition,
    config: Arc<ProducerConfig>,
    sender: Addr<Sender>,
    open: Option<OpenBatch>,
    linger: Option<SpawnHandle>,
    /// `max.pending.batches.per.partition` slots; a closed batch holds one until it completes.
    batch_slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    aborted: Option<ProduceError>,
    /// Compressed/uncompressed ratio seen so far: keeps compressed batches near `batch.size`.
    ratio: CompressionRatioEstimator,
    /// Uncompressed bytes a batch may hold (`batch.size` / estimated ratio).
    limit: usize,
    /// Number of the next closed batch.
    next_number: u64,
    /// Closed batches waiting for a batch slot, oldest first.
    waiting: VecDeque<ProducerBatch>,
    /// A `ctx.wait` for a batch slot is pending.
    slot_waiter: bool,
}

impl PartitionAccumulator {
    pub(crate) fn new(
        tp: TopicPartition,
        config: Arc<ProducerConfig>,
        sender: Addr<Sender>,
        shared: Arc<Shared>,
    ) -> Self {
        let slots = config.max_pending_batches_per_partition.max(1);
        let ratio = CompressionRatioEstimator::new(config.compression);
        let limit = config.batch_size;
        PartitionAccumulator {
            tp,
            config,
            sender,
            open: None,
            linger: None,
            batch_slots: Arc::new(Semaphore::new(slots)),
            ratio,
            limit,
            next_number: 0,
            waiting: VecDeque::new(),
            slot_waiter: false,
            shared,
            aborted: None,
        }
    }

    fn new_batch(&mut self, created: Instant, ctx: &mut Context<Self>) -> &mut OpenBatch {
        let linger = self.config.linger;
        // The open batch will be closed as number `next_number`. actix cancels timers lazily
        // (a cancelled one can still fire in the same poll), so the timer only closes the batch
        // it was set for.
        let number = self.next_number;
        self.linger = Some(ctx.run_later(linger, move |act, ctx| {
            if act.next_number == number && act.open.is_some() {
                act.linger = None;
                act.close_batch(ctx);
            }
        }));
        self.limit = self
            .ratio
            .uncompressed_limit(self.config.batch_size)
            .min(self.config.max_request_size);
        self.open.insert(OpenBatch {
            builder: RecordBatchBuilder::with_levels(
                self.limit,
                self.config.compression,
                self.config.compression_levels(),
            ),
            thunks: Vec::with_capacity(64),
            created,
        })
    }

    fn close_batch(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.linger.take() {
            ctx.cancel_future(h);
        }
        let Some(open) = self.open.take() else { return };
        let uncompressed = open.builder.size_in_bytes() as u64;
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
                self.shared
                    .fail_thunks(open.thunks, &ProduceError::Batch(e));
                return;
            }
        };
        if uncompressed > 0 {
            self.ratio.observe(uncompressed as usize, records.len());
            let ppm = records.len() as u64 * 1_000_000 / uncompressed;
            self.shared.metrics.compression_ppm.record(ppm);
        }
        self.next_number += 1;
        let mut batch = ProducerBatch {
            tp: self.tp.clone(),
            records,
            thunks: open.thunks,
            created: open.created,
            attempts: 0,
            retry_at: None,
            base_sequence: -1,
            producer_id: -1,
            producer_epoch: -1,
            pid_generation: 0,
            number: self.next_number - 1,
            _slot: None,
            shared: self.shared.clone(),
            maybe_written: false,
            unresolved: false,
            last_error: None,
        };
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
                            }),
                    );
                    return;
                }
            }
        }
    }
}

impl Actor for PartitionAccumulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The mailbox bound is enforced by the producer's per-partition slot semaphore
        // (`mailbox.capacity`); actix's own bound (0 = unbounded here) only parks the sending address.
        ctx.set_mailbox_capacity(0);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(open) = self.open.take() {
            self.shared
                .fail_thunks(open.thunks, &ProduceError::closed(DROPPED_UNDELIVERED));
        }
    }
}

impl PartitionAccumulator {
    /// Appends to the open batch within the current limit; `false` if it would not fit.
    fn try_append_open(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> bool {
        let limit = self.limit;
        self.open.as_mut().is_some_and(|open| {
            open.builder
                .try_append(timestamp, key, value, headers, limit)
        })
    }

    fn append(&mut self, record: AppendRecord, ctx: &mut Context<Self>) {
        let AppendRecord {
            timestamp,
            key,
            value,
            headers,
            delivery,
            enqueued,
            pending_slot,
        } = record;
        if let Some(err) = &self.aborted {
            self.shared.deliver(delivery, Err(err.clone()));
            self.shared.finished_one(pending_slot, false);
            return;
        }
        if self.open.is_none() {
            self.new_batch(enqueued, ctx);
        }
        let (key_ref, value_ref) = (key.as_deref(), value.as_deref());
        if !self.try_append_open(timestamp, key_ref, value_ref, &headers) {
            self.close_batch(ctx);
            self.new_batch(enqueued, ctx);
            let ok = self.try_append_open(timestamp, key_ref, value_ref, &headers);
            debug_assert!(ok, "an empty batch accepts any record");
        }
        let Some(open) = self.open.as_mut() else {
            // Unreachable: a batch was opened above. Never lose the record all the same.
            self.shared.deliver(
                delivery,
                Err(ProduceError::closed("accumulator has no open batch")),
            );
            self.shared.finished_one(pending_slot, false);
            return;
        };
        open.thunks.push(RecordThunk {
            delivery,
            timestamp,
            key_size: key.as_ref().map_or(-1, |k| k.len() as i32),
            value_size: value.as_ref().map_or(-1, |v| v.len() as i32),
            pending_slot,
        });
        if open.builder.size_in_bytes() >= self.limit {
            self.close_batch(ctx);
        }
    }
}

impl Handler<Append> for PartitionAccumulator {
    type Result = ();

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) {
        self.append(msg.record, ctx);
    }
}

impl Handler<AppendMany> for PartitionAccumulator {
    type Result = ();

    fn handle(&mut self, msg: AppendMany, ctx: &mut Context<Self>) {
        for record in msg.records {
            self.append(record, ctx);
        }
    }
}

impl Handler<FlushBatch> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, _: FlushBatch, ctx: &mut Context<Self>) {
        self.close_batch(ctx);
    }
}

impl Handler<AbortAccumulator> for PartitionAccumulator {
    type Result = ();
    fn handle(&mut self, msg: AbortAccumulator, ctx: &mut Context<Self>) {
        if let Some(h) = self.linger.take() {
            ctx.cancel_future(h);
        }
        if let Some(open) = self.open.take() {
            self.shared.fail_thunks(open.thunks, &msg.0);
        }
        for batch in self.waiting.drain(..) {
            batch.fail(msg.0.clone());
        }
        self.aborted = Some(msg.0);
    }
}
