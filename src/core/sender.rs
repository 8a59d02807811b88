//! The sender's decisions, without actix, sockets or a clock: [`SenderCore`].
//!
//! It owns every closed batch that is not in an accumulator: a queue per partition (ordered by
//! batch number, i.e. by sequence), the batches of each Produce request in flight, the
//! idempotent producer's id, epoch and next sequence per partition (KIP-98), the per-broker
//! in-flight counts and throttle deadlines (KIP-219). Every entry point takes the time as an
//! argument and pushes what must be done into a `Vec<Action>`: requests to send, a producer id
//! to ask for, a metadata refresh, the next instant to be woken at. The
//! [`crate::actors::sender::Sender`] actor carries the actions out; the simulation tests
//! (`src/core/sim.rs`) carry them out against a model cluster with virtual time.
//!
//! Draining: the heads of the partition queues are grouped by leader broker and, per broker,
//! packed into Produce requests of at most one batch per partition and `max.request.size`
//! bytes while that broker has fewer than `max.in.flight.requests.per.connection` requests in
//! flight. The scan starts one partition further on every drain, so no partition is always
//! last in line for a full request (franz-go's rotating drain start).
//!
//! Ordering: a partition has at most `max.in.flight.requests.per.connection` batches in
//! flight, and a batch being retried is resent only once nothing else of its partition is in
//! flight, in batch order. With idempotence a partition whose sequence the broker has not
//! confirmed under the current producer id gets one batch in flight, and nothing of a new
//! producer id is sent to a partition while a batch of the old one is in flight there.

use crate::batch::{ProducerBatch, Shared};
use crate::cluster::Cluster;
use crate::codes::ErrorCode;
use crate::config::ProducerConfig;
use crate::error::{ConnectionError, KafkaCode, ProduceError};
use crate::metrics::Count;
use crate::protocol::decode::DecodedRecord;
use crate::record::TopicPartition;
use bytes::Bytes;
use kafka_protocol::messages::ProduceResponse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An outcome the core decided, for the shell to carry out once the core call that decided it
/// has returned ([`SenderCore::take_settled`]): completing a batch runs its records' callbacks
/// and wakes their futures, which is user code, so it never runs inside the core (a panicking
/// callback cannot leave the core's state half updated).
// The batch is moved through once (boxing it would allocate per batch).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Settle {
    /// The batch is done: written at (base offset, log append time), or failed.
    Batch(ProducerBatch, Result<(i64, i64), ProduceError>),
    /// Records taken out of their batch fail (KIP-467 record errors).
    Records(Vec<crate::batch::RecordThunk>, ProduceError),
    /// A health event to emit.
    Health(crate::health::HealthEvent),
    /// A metric update.
    Count(Count),
}

impl Settle {
    /// Carries it out: for the shell to call once the core call has returned (the batch's
    /// callbacks run here).
    pub(crate) fn carry_out(self, shared: &Shared) {
        match self {
            Settle::Batch(b, Ok((offset, time))) => b.complete(offset, time),
            Settle::Batch(b, Err(e)) => b.fail(e),
            Settle::Records(thunks, e) => shared.fail_thunks(thunks, &e),
            Settle::Health(event) => shared.health.emit(event),
            Settle::Count(count) => shared.metrics.apply(count),
        }
    }
}

/// What the core asks its shell to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send one Produce request; answer with [`SenderCore::on_produce_response`].
    Produce(ProduceCall),
    /// Ask any broker for a producer id (with the previous id and epoch: a KIP-360 epoch
    /// bump); answer with [`SenderCore::on_init_producer_id`].
    InitProducerId {
        /// The id and epoch to bump, if any.
        previous: Option<(i64, i16)>,
    },
    /// Ask the metadata manager for a refresh (it paces them).
    RefreshMetadata,
    /// A queued batch's topic is not in the metadata cache at all (it was dropped as idle
    /// while the batch's record was being sent): ask the metadata manager to fetch it again
    /// (a refresh fetches only the topics in its set).
    WantTopic(Arc<str>),
    /// Drain again at this instant (a backoff, a throttle or a delivery deadline ends).
    Wake(Instant),
    /// A Produce answer named the partition's current leader (KIP-951, Produce v10+): tell
    /// the metadata manager, which applies it if its leader epoch is newer than the cached one.
    LeaderHint(LeaderHint),
}

/// The current leader of a partition as a Produce answer gave it (KIP-951).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// The partition.
    pub topic_partition: TopicPartition,
    /// Its leader's node id.
    pub leader: i32,
    /// Its leader epoch.
    pub leader_epoch: i32,
    /// The leader's address, when the answer listed it (`node_endpoints`).
    pub address: Option<Arc<str>>,
}

/// One Produce request to send: its batches' encoded bytes (shared, not copied).
#[derive(Debug)]
pub(crate) struct ProduceCall {
    pub(crate) request_id: u64,
    pub(crate) node: i32,
    pub(crate) address: Arc<str>,
    pub(crate) batches: Vec<(TopicPartition, Bytes)>,
}

/// What the transaction (if any) allows the drain to do.
pub(crate) trait DrainGate {
    /// With `transactional.id`: the producer id comes from `init_transactions` only, and
    /// sequence errors make the transaction abortable instead of bumping the epoch.
    fn transactional(&self) -> bool;
    /// An error for every queued batch (the transaction is aborting or failed), if any.
    fn refuse_queued(&self) -> Option<ProduceError>;
    /// EndTxn is out: nothing may be sent.
    fn ending(&self) -> bool;
    /// Whether `tp` may be sent to now (added to the transaction); queues it to be added if not.
    fn partition_ready(&mut self, tp: &TopicPartition) -> bool;
}

/// No transaction: everything may be sent.
#[cfg(test)]
pub(crate) struct NoTransaction;

#[cfg(test)]
impl DrainGate for NoTransaction {
    fn transactional(&self) -> bool {
        false
    }
    fn refuse_queued(&self) -> Option<ProduceError> {
        None
    }
    fn ending(&self) -> bool {
        false
    }
    fn partition_ready(&mut self, _: &TopicPartition) -> bool {
        true
    }
}

/// Counters kept by the sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Batches waiting in the sender (not in flight).
    pub queued_batches: usize,
    /// Produce requests in flight.
    pub requests_in_flight: usize,
    /// Produce requests sent so far.
    pub requests_sent: u64,
    /// Batches sent again after a retriable error.
    pub batches_retried: u64,
    /// Records sent again after a retriable error.
    pub records_retried: u64,
    /// Producer id and epoch (idempotence), `(-1, -1)` when none.
    pub producer_id: (i64, i16),
    /// Times the producer id was reset after `UNKNOWN_PRODUCER_ID` / an unexplained sequence gap.
    pub producer_id_resets: u64,
}

struct PartitionQueue {
    tp: TopicPartition,
    queue: VecDeque<ProducerBatch>,
    in_flight: usize,
    /// Batches in flight that were unresolved when sent (see `ProducerBatch::unresolved`).
    /// Nothing else of the partition goes out meanwhile: batches written behind it would push
    /// it out of the broker's window of five batches per producer in which a resend is
    /// recognised as a duplicate (it would be refused as OUT_OF_ORDER_SEQUENCE_NUMBER instead).
    unresolved_in_flight: usize,
    /// The broker the batches in flight went to. After a leader change nothing goes to the new
    /// leader until they are answered: answers on one connection come in order, so no batch is
    /// acknowledged ahead of an earlier one still unanswered (which could then fall out of the
    /// broker's window of five recent batches and not be recognised as a duplicate on resend).
    in_flight_node: i32,
    /// The producer-id generation of the batches in flight (all of one generation: a batch of
    /// a newer one waits until they are answered, so a retried old batch cannot land behind it).
    in_flight_generation: u64,
    next_sequence: i32,
    /// The producer-id generation under which a batch of this partition was last acknowledged.
    /// Until one is (a new producer id, or the partition's first batch), the broker has no
    /// sequence state for us and accepts *any* first sequence (Kafka's `checkSequence`), so a
    /// later batch could be written before an earlier one that failed: one batch in flight.
    confirmed_generation: u64,
    /// In `SenderCore::with_data` (its queue is not empty, or was at the last drain).
    listed: bool,
    /// The last time a batch of the partition was queued, sent or answered: a partition idle
    /// for `metadata.max.idle.ms` with nothing queued or in flight is dropped (`sweep`).
    last_active: Instant,
}

impl PartitionQueue {
    fn new(tp: TopicPartition, now: Instant) -> Self {
        PartitionQueue {
            tp,
            listed: false,
            last_active: now,
            queue: VecDeque::new(),
            in_flight: 0,
            unresolved_in_flight: 0,
            in_flight_node: -1,
            in_flight_generation: 0,
            next_sequence: 0,
            confirmed_generation: 0,
        }
    }

    /// The head batch, if it may be sent now: not backing off, fewer than `max_in_flight`
    /// batches of the partition in flight, and a retried batch only once nothing of its
    /// partition is in flight (so retries keep the partition's order).
    ///
    /// With idempotence (`generation` is the current producer-id generation), a partition whose
    /// sequence the broker has not confirmed under that generation gets one batch in flight,
    /// and none while batches of an older generation are in flight (Java's
    /// `isNextSequence`/epoch check in `RecordAccumulator.drain`).
    fn ready_head(
        &self,
        now: Instant,
        max_in_flight: usize,
        generation: Option<u64>,
    ) -> Option<&ProducerBatch> {
        let head = self.queue.front()?;
        let max_in_flight = match generation {
            Some(g) if self.in_flight > 0 && self.in_flight_generation != g => 0,
            Some(g) if self.confirmed_generation != g => 1,
            _ => max_in_flight,
        };
        let backing_off = head.retry_at.is_some_and(|at| at > now);
        let blocked = self.in_flight >= max_in_flight
            || (head.attempts > 0 && self.in_flight > 0)
            || self.unresolved_in_flight > 0;
        (!backing_off && !blocked).then_some(head)
    }
}

/// State of the idempotent producer's id.
#[derive(Clone, Debug)]
pub(crate) enum ProducerIdState {
    Disabled,
    Unknown,
    Initializing,
    Ready { id: i64, epoch: i16 },
    Failed(ProduceError),
}

/// See the module docs.
pub(crate) struct SenderCore {
    config: Arc<ProducerConfig>,
    /// Outcomes decided and not yet carried out by the shell (see [`Settle`]).
    settled: Vec<Settle>,
    /// See [`SenderCore::sequence_gap`].
    sequence_gap: bool,
    /// The partitions with batches queued, in flight or used within `metadata.max.idle.ms`
    /// (older idle ones are dropped by `sweep`), found by `index`.
    queues: Vec<PartitionQueue>,
    index: HashMap<TopicPartition, usize>,
    /// Indices into `queues` of the partitions with batches queued (a drain and the expiry
    /// scan look at these only: their cost follows the partitions with data, not every
    /// partition ever used).
    with_data: Vec<usize>,
    /// With idempotence: the sequence state of partitions `sweep` dropped (next sequence, the
    /// generation it was confirmed under), restored when they are used again: the broker still
    /// holds the producer's sequence for them. Cleared by a new producer id.
    dormant: HashMap<TopicPartition, (i32, u64)>,
    /// No `sweep` before this instant.
    next_sweep: Option<Instant>,
    /// Where the next drain starts scanning `with_data`.
    rotate: usize,
    broker_in_flight: HashMap<i32, usize>,
    pub(crate) pid: ProducerIdState,
    /// No InitProducerId before this instant (backoff after a failed one).
    init_after: Option<Instant>,
    aborted: Option<ProduceError>,
    stats: SenderStats,
    previous_pid: Option<(i64, i16)>,
    /// Incremented on every producer id obtained; batches sequenced in an older generation are
    /// re-sequenced.
    pid_generation: u64,
    /// Batches of the Produce requests in flight, by request number, and when it was sent. A
    /// batch whose `delivery.timeout.ms` passes while its request is out is failed and its slot
    /// emptied (Java's `getExpiredInflightBatches`); its answer only updates counters.
    in_flight_requests: BTreeMap<u64, InFlight>,
    next_request: u64,
    /// Brokers that asked us to back off (`throttle_time_ms`, KIP-219): nothing is sent to them
    /// before this instant.
    throttled_until: HashMap<i32, Instant>,
    transactional: bool,
    /// A producer-id reset is due but waits (librdkafka's drain before an epoch bump): until
    /// nothing is in flight and no batch is unresolved under the current producer id, only
    /// unresolved batches are sent (with their sequence, so a duplicate is recognised); new
    /// batches wait. Re-sequencing a batch that may have been written would write it twice.
    reset_pending: bool,
    /// Since when the pending reset has waited with nothing in flight.
    reset_since: Option<Instant>,
    /// Test hook (feature `mock`): the next drain panics, to show the actor survives it.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_next_drain: bool,
}

struct InFlight {
    sent: Instant,
    node: i32,
    /// Per batch: its partition, whether it was unresolved when sent, the batch (taken out if
    /// it expires in flight).
    batches: Vec<(TopicPartition, bool, Option<ProducerBatch>)>,
}

impl SenderCore {
    /// A core for `config` (idempotence and `transactional.id` read from it).
    pub(crate) fn new(config: Arc<ProducerConfig>) -> Self {
        let pid = if config.enable_idempotence {
            ProducerIdState::Unknown
        } else {
            ProducerIdState::Disabled
        };
        SenderCore {
            settled: Vec::new(),
            sequence_gap: false,
            transactional: config.transactional_id.is_some(),
            config,
            queues: Vec::new(),
            index: HashMap::new(),
            with_data: Vec::new(),
            dormant: HashMap::new(),
            next_sweep: None,
            rotate: 0,
            broker_in_flight: HashMap::new(),
            pid,
            init_after: None,
            aborted: None,
            stats: SenderStats {
                producer_id: (-1, -1),
                ..Default::default()
            },
            previous_pid: None,
            pid_generation: 0,
            in_flight_requests: BTreeMap::new(),
            next_request: 0,
            throttled_until: HashMap::new(),
            reset_pending: false,
            reset_since: None,
            #[cfg(feature = "test-hooks")]
            panic_next_drain: false,
        }
    }

    /// The counters, with the queued and in-flight counts of now.
    pub(crate) fn stats(&self) -> SenderStats {
        let mut s = self.stats.clone();
        s.queued_batches = self.queued().map(|q| q.queue.len()).sum();
        s.requests_in_flight = self.broker_in_flight.values().sum();
        s
    }

    /// Batches waiting (not in flight).
    pub(crate) fn has_queued(&self) -> bool {
        self.queued().any(|q| !q.queue.is_empty())
    }

    /// Produce requests out.
    pub(crate) fn has_in_flight(&self) -> bool {
        !self.in_flight_requests.is_empty()
    }

    /// The producer id and epoch, if one is ready.
    pub(crate) fn producer(&self) -> Option<(i64, i16)> {
        match self.pid {
            ProducerIdState::Ready { id, epoch } => Some((id, epoch)),
            _ => None,
        }
    }

    /// Whether a drain now could send nothing more than the last one did: the producer id is
    /// settled (none, or ready with no reset due) and every broker of `cluster` has
    /// `max.in.flight.requests.per.connection` requests out. A batch arriving then waits for
    /// the next answer's drain (which comes, or the request times out); with thousands of
    /// partitions closing batches in one linger period, a drain per batch would scan them all
    /// each time for nothing.
    pub(crate) fn saturated(&self, cluster: &Cluster) -> bool {
        let settled = match self.pid {
            ProducerIdState::Disabled => true,
            ProducerIdState::Ready { .. } => !self.reset_pending,
            _ => false,
        };
        let max = self.config.max_in_flight_requests_per_connection.max(1);
        settled
            && self.aborted.is_none()
            && !cluster.brokers.is_empty()
            && cluster.brokers.iter().all(|b| {
                self.broker_in_flight
                    .get(b.key())
                    .is_some_and(|n| *n >= max)
            })
    }

    /// The partitions listed in `with_data`.
    fn queued(&self) -> impl Iterator<Item = &PartitionQueue> {
        self.with_data.iter().filter_map(|i| self.queues.get(*i))
    }

    /// The queue of `tp` (created, with its dormant sequence state, if needed), listed in
    /// `with_data` for the batch about to be queued.
    fn queue_for_push(&mut self, tp: &TopicPartition, now: Instant) -> &mut PartitionQueue {
        let i = match self.index.get(tp) {
            Some(i) => *i,
            None => {
                let mut q = PartitionQueue::new(tp.clone(), now);
                if let Some((next, confirmed)) = self.dormant.remove(tp) {
                    q.next_sequence = next;
                    q.confirmed_generation = confirmed;
                }
                self.queues.push(q);
                let i = self.queues.len() - 1;
                self.index.insert(tp.clone(), i);
                i
            }
        };
        let q = &mut self.queues[i];
        q.last_active = q.last_active.max(now);
        if !q.listed {
            q.listed = true;
            self.with_data.push(i);
        }
        &mut self.queues[i]
    }

    /// Drops the partitions idle for `metadata.max.idle.ms` (nothing queued, nothing in
    /// flight, no batch queued, sent or answered meanwhile): a topic used once costs nothing
    /// after that (issue 19's defect 9). With idempotence their sequence state is kept in
    /// `dormant` (the broker keeps the producer's sequence for `producer.id.expiration.ms`).
    /// Runs at most every quarter of `metadata.max.idle.ms`.
    fn sweep(&mut self, now: Instant) {
        let idle = self.config.metadata_max_idle;
        match self.next_sweep {
            None => {
                self.next_sweep = Some(crate::time::deadline_after(now, idle / 4));
                return;
            }
            Some(at) if at > now => return,
            Some(_) => {}
        }
        self.next_sweep = Some(crate::time::deadline_after(now, idle / 4));
        let keep_sequences = !matches!(self.pid, ProducerIdState::Disabled);
        let before = self.queues.len();
        let mut kept = Vec::with_capacity(before);
        for q in self.queues.drain(..) {
            let idle_now = q.queue.is_empty()
                && q.in_flight == 0
                && q.unresolved_in_flight == 0
                && !q.listed
                && crate::time::deadline_after(q.last_active, idle) <= now;
            if !idle_now {
                kept.push(q);
                continue;
            }
            if keep_sequences && (q.next_sequence != 0 || q.confirmed_generation != 0) {
                self.dormant
                    .insert(q.tp.clone(), (q.next_sequence, q.confirmed_generation));
            }
        }
        if kept.len() == before {
            self.queues = kept;
            return;
        }
        tracing::debug!(
            dropped = before - kept.len(),
            "idle partitions dropped from the sender"
        );
        self.queues = kept;
        self.index.clear();
        self.with_data.clear();
        for (i, q) in self.queues.iter().enumerate() {
            self.index.insert(q.tp.clone(), i);
            if q.listed {
                self.with_data.push(i);
            }
        }
        self.index.shrink_to_fit();
        self.queues.shrink_to_fit();
    }

    /// Partitions held (queued, in flight or recently used) and dormant sequence entries.
    #[cfg(test)]
    pub(crate) fn partitions_held(&self) -> (usize, usize) {
        (self.queues.len(), self.dormant.len())
    }

    fn queue(&self, tp: &TopicPartition) -> Option<&PartitionQueue> {
        self.index.get(tp).and_then(|i| self.queues.get(*i))
    }

    /// The outcomes decided since the last call, for the shell to carry out now, in order
    /// (the buffer is kept for the next ones).
    pub(crate) fn take_settled(&mut self) -> std::vec::Drain<'_, Settle> {
        self.settled.drain(..)
    }

    /// Tests: carries out what was settled, as a shell does.
    #[cfg(test)]
    pub(crate) fn settle_now(&mut self, shared: &Shared) {
        for s in self.take_settled() {
            s.carry_out(shared);
        }
    }

    /// A closed batch arrives (after the shell's transaction checks).
    pub(crate) fn enqueue(&mut self, batch: ProducerBatch) {
        if let Some(err) = &self.aborted {
            return self.settled.push(Settle::Batch(batch, Err(err.clone())));
        }
        let created = batch.created;
        self.queue_for_push(&batch.tp, created)
            .queue
            .push_back(batch);
    }

    /// Fails every batch held that is not in flight, and every later one, with `err`.
    pub(crate) fn abort(&mut self, err: ProduceError) {
        self.aborted = Some(err);
    }

    /// Fails every batch waiting (not those in flight) with `err`.
    pub(crate) fn fail_queued(&mut self, err: ProduceError) {
        for q in self.queues.iter_mut().filter(|q| q.listed) {
            for b in q.queue.drain(..) {
                self.sequence_gap |= b.base_sequence >= 0;
                self.settled.push(Settle::Batch(b, Err(err.clone())));
            }
        }
        self.unlist_empty();
    }

    /// `Producer::purge`: fails every batch queued here with `Purged` (possibly written if a
    /// request carried it before: a retry), and with `in_flight` every batch in flight too
    /// (possibly written); their requests stay registered, so the answers only update counters
    /// (as for a batch that expired in flight). A failed batch that had a sequence leaves a
    /// gap in its partition: without a transactional id the producer id is reset once what may
    /// have been written is settled (KIP-360); with one the abort bumps the epoch.
    pub(crate) fn purge(&mut self, in_flight: bool) {
        let mut sequenced: Vec<(u64, i32, TopicPartition)> = Vec::new();
        for q in self.queues.iter_mut().filter(|q| q.listed) {
            for b in q.queue.drain(..) {
                if b.base_sequence >= 0 {
                    sequenced.push((b.pid_generation, b.base_sequence, q.tp.clone()));
                }
                let possibly_written = b.maybe_written;
                let err = ProduceError::Purged { possibly_written };
                self.settled.push(Settle::Batch(b, Err(err)));
            }
        }
        self.unlist_empty();
        if in_flight {
            for request in self.in_flight_requests.values_mut() {
                for (tp, _, slot) in request.batches.iter_mut() {
                    let Some(b) = slot.take() else { continue };
                    if b.base_sequence >= 0 {
                        sequenced.push((b.pid_generation, b.base_sequence, tp.clone()));
                    }
                    let err = ProduceError::Purged {
                        possibly_written: true,
                    };
                    self.settled.push(Settle::Batch(b, Err(err)));
                }
            }
        }
        self.sequence_gap |= !sequenced.is_empty();
        for (generation, seq, tp) in sequenced {
            self.sequenced_batch_failed(generation, seq, &tp);
        }
    }

    /// Fails the batches waiting for `tp` with `err`.
    pub(crate) fn fail_partition(&mut self, tp: &TopicPartition, err: &ProduceError) {
        if let Some(i) = self.index.get(tp) {
            if let Some(q) = self.queues.get_mut(*i) {
                for b in q.queue.drain(..) {
                    self.sequence_gap |= b.base_sequence >= 0;
                    self.settled.push(Settle::Batch(b, Err(err.clone())));
                }
            }
        }
    }

    /// A batch that had been given a sequence (sent at least once) was failed from the queue
    /// since the producer id was set: its partition's next sequence skips it, so the broker
    /// would answer the next batch `OUT_OF_ORDER_SEQUENCE_NUMBER`. With a transactional id
    /// the abort then bumps the epoch (KIP-360), which restarts every sequence.
    pub(crate) fn sequence_gap(&self) -> bool {
        self.sequence_gap
    }

    /// Exponential backoff with +-20% jitter (KIP-580).
    fn backoff(&self, attempts: u32) -> Duration {
        crate::backoff::exponential(
            self.config.retry_backoff,
            self.config.retry_backoff_max,
            attempts,
        )
    }

    /// Takes a new producer id/epoch: sequences restart from 0 in a new generation.
    pub(crate) fn set_producer_id(&mut self, id: i64, epoch: i16) {
        tracing::debug!(producer_id = id, epoch, "producer id");
        self.pid = ProducerIdState::Ready { id, epoch };
        self.stats.producer_id = (id, epoch);
        self.previous_pid = None;
        self.init_after = None;
        self.pid_generation += 1;
        self.sequence_gap = false;
        for q in &mut self.queues {
            q.next_sequence = 0;
        }
        self.dormant.clear();
    }

    /// The shell could not send the InitProducerId asked for (no broker known yet): the next
    /// drain asks again.
    pub(crate) fn init_producer_id_not_sent(&mut self) {
        if matches!(self.pid, ProducerIdState::Initializing) {
            self.pid = ProducerIdState::Unknown;
        }
    }

    /// The answer to [`Action::InitProducerId`]: `Ok((error_code, producer_id, epoch))`.
    pub(crate) fn on_init_producer_id(
        &mut self,
        now: Instant,
        res: Result<(i16, i64, i16), ConnectionError>,
    ) {
        match res {
            Ok((0, id, epoch)) if id >= 0 && epoch >= 0 => self.set_producer_id(id, epoch),
            Ok((code, _, _)) if self.previous_pid.is_some() && code != 0 => {
                // The broker does not know the old id (e.g. it lost its state): ask afresh.
                tracing::debug!(code = %KafkaCode(code), "epoch bump refused; new producer id");
                self.previous_pid = None;
                self.pid = ProducerIdState::Unknown;
            }
            Err(ConnectionError::UnsupportedVersion { .. }) if self.previous_pid.is_some() => {
                // InitProducerId below v3 (brokers before 2.5) cannot carry the old id and
                // epoch (KIP-360): ask for a fresh producer id instead.
                tracing::debug!(
                    "InitProducerId cannot bump the epoch on this broker; new producer id"
                );
                self.previous_pid = None;
                self.pid = ProducerIdState::Unknown;
            }
            Ok((code, _, _)) if code != 0 && !KafkaCode(code).is_retriable() => {
                let err = ProduceError::Fatal(
                    format!("InitProducerId failed: {}", KafkaCode(code)).into(),
                );
                tracing::error!(error = %err, "idempotent producer cannot start");
                self.pid = ProducerIdState::Failed(err);
            }
            other => {
                match other {
                    Err(e) => tracing::debug!(error = %e, "InitProducerId failed; retrying"),
                    Ok((code, id, epoch)) => {
                        tracing::debug!(code, id, epoch, "InitProducerId refused; retrying")
                    }
                }
                self.pid = ProducerIdState::Unknown;
                self.init_after = Some(now + self.backoff(1));
            }
        }
    }

    /// Fails batches (queued or in flight) whose `delivery.timeout.ms` has passed; returns the
    /// earliest deadline left.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let timeout = self.config.delivery_timeout;
        let timeout_ms = timeout.as_millis() as u64;
        let mut earliest: Option<Instant> = None;
        let mut sequenced: Vec<(u64, i32, TopicPartition)> = Vec::new();
        for &i in &self.with_data {
            let Some(q) = self.queues.get_mut(i) else {
                continue;
            };
            // Batches are queued in the order they were closed in, and a batch's clock starts
            // with its first record: the expired ones are (nearly always) at the front; check
            // them all anyway, a retried split half may not be.
            if !q.queue.iter().any(|b| b.created + timeout <= now) {
                if let Some(d) = q.queue.iter().map(|b| b.created + timeout).min() {
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                }
                continue;
            }
            let mut kept = VecDeque::with_capacity(q.queue.len());
            for b in q.queue.drain(..) {
                let deadline = b.created + timeout;
                if deadline <= now {
                    if let Some(last) = &b.last_error {
                        tracing::debug!(tp = %q.tp, last_error = %last, "batch expired");
                    }
                    if b.base_sequence >= 0 {
                        sequenced.push((b.pid_generation, b.base_sequence, q.tp.clone()));
                    }
                    let possibly_written = b.maybe_written;
                    let err = ProduceError::DeliveryTimeout {
                        topic_partition: q.tp.clone(),
                        timeout_ms,
                        possibly_written,
                    };
                    self.settled.push(Settle::Batch(b, Err(err)));
                } else {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                    kept.push_back(b);
                }
            }
            q.queue = kept;
        }
        for request in self.in_flight_requests.values_mut() {
            for (tp, _, slot) in request.batches.iter_mut() {
                let Some(b) = slot else { continue };
                let deadline = b.created + timeout;
                if deadline > now {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                    continue;
                }
                if let Some(b) = slot.take() {
                    tracing::debug!(%tp, "in-flight batch expired (delivery.timeout.ms)");
                    if b.base_sequence >= 0 {
                        sequenced.push((b.pid_generation, b.base_sequence, tp.clone()));
                    }
                    let err = ProduceError::DeliveryTimeout {
                        topic_partition: tp.clone(),
                        timeout_ms,
                        // It was sent: the broker may have written it.
                        possibly_written: true,
                    };
                    self.settled.push(Settle::Batch(b, Err(err)));
                }
            }
        }
        for (generation, seq, tp) in sequenced {
            self.sequenced_batch_failed(generation, seq, &tp);
        }
        earliest
    }

    /// Sends what may be sent now: the core's main step, run on every event.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        cluster: &Cluster,
        gate: &mut dyn DrainGate,
        out: &mut Vec<Action>,
    ) {
        #[cfg(feature = "test-hooks")]
        if std::mem::take(&mut self.panic_next_drain) {
            // Fires only after `InjectPanic` (feature `mock`, a test hook); no network byte or
            // user input sets the flag.
            #[allow(clippy::panic)]
            {
                panic!("injected panic (test hook)");
            }
        }
        if let Some(err) = gate.refuse_queued() {
            self.fail_queued(err);
        }
        if let Some(err) = self.aborted.clone() {
            self.fail_queued(err);
            // What is in flight still expires by its `delivery.timeout.ms` (a `close` that
            // aborted waits for it up to its own timeout, which may be longer).
            let wake_at = self.expire(now);
            out.extend(wake_at.map(Action::Wake));
            return;
        }
        let mut wake_at = self.expire(now);
        self.unlist_empty();
        self.sweep(now);
        if self.reset_pending {
            self.maybe_start_reset(now, cluster);
        }
        let producer = match &self.pid {
            ProducerIdState::Disabled => None,
            ProducerIdState::Ready { id, epoch } => Some((*id, *epoch)),
            ProducerIdState::Unknown => {
                // A transactional producer gets its id from init_transactions only.
                if !gate.transactional() && self.has_queued() {
                    match self.init_after.filter(|at| *at > now) {
                        Some(at) => wake_at = Some(wake_at.map_or(at, |w| w.min(at))),
                        None => {
                            self.pid = ProducerIdState::Initializing;
                            out.push(Action::InitProducerId {
                                previous: self.previous_pid,
                            });
                        }
                    }
                }
                out.extend(wake_at.map(Action::Wake));
                return;
            }
            ProducerIdState::Initializing => {
                out.extend(wake_at.map(Action::Wake));
                return;
            }
            ProducerIdState::Failed(err) => {
                let err = err.clone();
                self.fail_queued(err);
                return;
            }
        };
        if gate.ending() {
            // EndTxn is out: nothing more of this transaction may be sent.
            out.extend(wake_at.map(Action::Wake));
            return;
        }
        let max_in_flight = self.config.max_in_flight_requests_per_connection.max(1);
        let generation = producer.map(|_| self.pid_generation);
        // Eligible partitions grouped by leader, scanning from a rotating start.
        let mut by_broker: Vec<(i32, Arc<str>, Vec<usize>)> = Vec::new();
        let mut missing_leader = false;
        let mut wanted: Vec<Arc<str>> = Vec::new();
        let n = self.with_data.len();
        if n > 0 {
            self.rotate = (self.rotate + 1) % n;
        }
        for k in 0..n {
            let Some(&i) = self.with_data.get((self.rotate + k) % n) else {
                continue;
            };
            let Some(q) = self.queues.get(i) else {
                continue;
            };
            if q.ready_head(now, max_in_flight, generation).is_none() {
                // A backing-off head wakes the drain when its backoff ends.
                if let Some(at) = q
                    .queue
                    .front()
                    .and_then(|h| h.retry_at)
                    .filter(|at| *at > now)
                {
                    wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                }
                continue;
            }
            if self.reset_pending
                && q.queue
                    .front()
                    .is_none_or(|h| self.first_unsettled(q).is_none_or(|u| !std::ptr::eq(u, h)))
            {
                // A reset is due: only what must be settled under the current id goes out.
                continue;
            }
            if !gate.partition_ready(&q.tp) {
                continue;
            }
            match cluster.leader(&q.tp.topic, q.tp.partition) {
                Some(b) if q.in_flight > 0 && q.in_flight_node != b.node_id => {
                    // The leader moved: the old leader answers first.
                }
                Some(b) => match by_broker.iter_mut().find(|(id, _, _)| *id == b.node_id) {
                    Some((_, _, list)) => list.push(i),
                    None => by_broker.push((b.node_id, b.address.clone(), vec![i])),
                },
                None if cluster.topic(&q.tp.topic).is_none() => {
                    if !wanted.contains(&q.tp.topic) {
                        wanted.push(q.tp.topic.clone());
                    }
                }
                None => missing_leader = true,
            }
        }
        if missing_leader {
            out.push(Action::RefreshMetadata);
        }
        out.extend(wanted.into_iter().map(Action::WantTopic));
        for (node, address, queues) in by_broker {
            if let Some(until) = self.throttled_until.get(&node).copied() {
                if until > now {
                    wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
                    continue;
                }
                self.throttled_until.remove(&node);
            }
            loop {
                let in_flight = self.broker_in_flight.get(&node).copied().unwrap_or(0);
                if in_flight >= max_in_flight {
                    break;
                }
                let batches = self.take_request(now, &queues, producer, max_in_flight);
                if batches.is_empty() {
                    break;
                }
                out.push(Action::Produce(self.start_request(
                    now,
                    node,
                    address.clone(),
                    batches,
                )));
            }
        }
        self.unlist_empty();
        out.extend(wake_at.map(Action::Wake));
    }

    /// Takes the partitions whose queue emptied out of `with_data`.
    fn unlist_empty(&mut self) {
        let queues = &mut self.queues;
        self.with_data.retain(|&i| match queues.get_mut(i) {
            Some(q) if q.queue.is_empty() => {
                q.listed = false;
                false
            }
            Some(_) => true,
            None => false,
        });
    }

    /// Takes at most one batch per partition, within `max.request.size`.
    fn take_request(
        &mut self,
        now: Instant,
        queues: &[usize],
        producer: Option<(i64, i16)>,
        max_in_flight: usize,
    ) -> Vec<ProducerBatch> {
        let generation = producer.map(|_| self.pid_generation);
        let pid_generation = self.pid_generation;
        let limit = self.config.max_request_size;
        let mut size = 0usize;
        let mut out = Vec::new();
        for i in queues {
            let Some(q) = self.queues.get_mut(*i) else {
                continue;
            };
            let Some(head) = q.ready_head(now, max_in_flight, generation) else {
                continue;
            };
            if !out.is_empty() && size + head.size_in_bytes() > limit {
                continue;
            }
            if self.reset_pending
                && !(head.unresolved
                    && head.base_sequence >= 0
                    && head.pid_generation == pid_generation)
            {
                // A reset is due: only what must be settled under the current id goes out.
                continue;
            }
            let Some(mut batch) = q.queue.pop_front() else {
                continue;
            };
            q.last_active = q.last_active.max(now);
            if let Some((id, epoch)) = producer {
                if batch.base_sequence < 0 || batch.pid_generation != pid_generation {
                    let seq = q.next_sequence;
                    q.next_sequence = increment_sequence(seq, batch.record_count());
                    batch.set_producer_state(id, epoch, seq);
                    batch.pid_generation = pid_generation;
                }
            }
            if batch.attempts > 0 {
                self.stats.batches_retried += 1;
                self.stats.records_retried += batch.record_count() as u64;
                self.settled.push(Settle::Count(Count::Retried {
                    records: batch.record_count() as u64,
                }));
            } else {
                self.settled.push(Settle::Count(Count::BatchSent {
                    bytes: batch.size_in_bytes() as u64,
                    queue_ms: now.saturating_duration_since(batch.created).as_millis() as u64,
                }));
            }
            batch.attempts += 1;
            size += batch.size_in_bytes();
            out.push(batch);
        }
        out
    }

    /// Records a request as in flight and describes it for the shell.
    fn start_request(
        &mut self,
        now: Instant,
        node: i32,
        address: Arc<str>,
        batches: Vec<ProducerBatch>,
    ) -> ProduceCall {
        *self.broker_in_flight.entry(node).or_insert(0) += 1;
        self.stats.requests_sent += 1;
        let bytes: usize = batches.iter().map(|b| b.size_in_bytes()).sum();
        let records: usize = batches.iter().map(|b| b.record_count()).sum();
        self.settled.push(Settle::Count(Count::Request {
            records: records as u64,
            bytes: bytes as u64,
        }));
        // The partitions' in-flight state, counted where the request is registered (so the
        // counts and the registered batches cannot drift apart).
        for b in &batches {
            if let Some(q) = self.index.get(&b.tp).and_then(|i| self.queues.get_mut(*i)) {
                q.in_flight += 1;
                q.in_flight_node = node;
                if b.unresolved {
                    q.unresolved_in_flight += 1;
                }
                if b.base_sequence >= 0 {
                    q.in_flight_generation = b.pid_generation;
                }
            }
        }
        let request_id = self.next_request;
        self.next_request += 1;
        let call = ProduceCall {
            request_id,
            node,
            address,
            batches: batches
                .iter()
                .map(|b| (b.tp.clone(), b.records.clone()))
                .collect(),
        };
        self.in_flight_requests.insert(
            request_id,
            InFlight {
                sent: now,
                node,
                batches: batches
                    .into_iter()
                    .map(|b| (b.tp.clone(), b.unresolved, Some(b)))
                    .collect(),
            },
        );
        call
    }

    /// The answer to [`Action::Produce`]: `Ok(None)` for `acks=0`.
    pub(crate) fn on_produce_response(
        &mut self,
        now: Instant,
        request_id: u64,
        res: Result<Option<ProduceResponse>, ConnectionError>,
        out: &mut Vec<Action>,
    ) {
        let Some(request) = self.in_flight_requests.remove(&request_id) else {
            return;
        };
        let node = request.node;
        self.settled.push(Settle::Count(Count::Answered {
            latency_ms: now.saturating_duration_since(request.sent).as_millis() as u64,
            throttle_ms: match &res {
                Ok(Some(r)) => Some(r.throttle_time_ms.max(0) as u64),
                _ => None,
            },
        }));
        if let Some(n) = self.broker_in_flight.get_mut(&node) {
            *n = n.saturating_sub(1);
        }
        for (tp, unresolved, _) in &request.batches {
            if let Some(i) = self.index.get(tp) {
                if let Some(q) = self.queues.get_mut(*i) {
                    q.last_active = q.last_active.max(now);
                    q.in_flight = q.in_flight.saturating_sub(1);
                    if *unresolved {
                        q.unresolved_in_flight = q.unresolved_in_flight.saturating_sub(1);
                    }
                }
            }
        }
        // Batches that expired while in flight already have their outcome.
        let batches: Vec<ProducerBatch> = request
            .batches
            .into_iter()
            .filter_map(|(_, _, b)| b)
            .collect();
        match res {
            Err(e) => {
                tracing::debug!(broker = node, error = %e, "produce request failed");
                out.push(Action::RefreshMetadata);
                let retriable = e.is_retriable();
                // A request that never reached a socket cannot have been written.
                let maybe_written = e.reached_broker();
                for mut b in batches {
                    b.maybe_written |= maybe_written;
                    b.unresolved |= maybe_written;
                    self.retry_or_fail(now, b, ProduceError::Connection(e.clone()), retriable);
                }
            }
            Ok(None) => {
                for b in batches {
                    self.settled.push(Settle::Batch(b, Ok((-1, -1))));
                }
            }
            Ok(Some(resp)) => self.on_partition_responses(now, node, batches, &resp, out),
        }
    }

    /// Per-partition answers of a Produce response.
    fn on_partition_responses(
        &mut self,
        now: Instant,
        node: i32,
        batches: Vec<ProducerBatch>,
        resp: &ProduceResponse,
        out: &mut Vec<Action>,
    ) {
        if resp.throttle_time_ms > 0 {
            // KIP-219: the broker answered at once and asks us not to send to it for this
            // long (it would mute the connection otherwise). Capped at 5 minutes.
            let ms = (resp.throttle_time_ms as u64).min(300_000);
            tracing::debug!(broker = node, throttle_ms = ms, "throttled by the broker");
            self.throttled_until
                .insert(node, now + Duration::from_millis(ms));
        }
        let mut by_tp = HashMap::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                by_tp.insert((t.name.0.as_str(), p.index), p);
            }
        }
        let mut refresh = false;
        let mut outcomes = Vec::with_capacity(batches.len());
        for b in batches {
            let p = by_tp.get(&(&*b.tp.topic, b.tp.partition)).copied();
            let outcome = p.map(|p| Answer {
                code: KafkaCode(p.error_code),
                base_offset: p.base_offset,
                log_append_time: p.log_append_time_ms,
                message: p
                    .error_message
                    .as_ref()
                    .map(|m| Arc::<str>::from(m.as_str())),
                record_errors: p
                    .record_errors
                    .iter()
                    .map(|e| {
                        (
                            e.batch_index,
                            e.batch_index_error_message
                                .as_ref()
                                .map(|m| Arc::<str>::from(m.as_str())),
                        )
                    })
                    .collect(),
                leader_hint: (p.current_leader.leader_id.0 >= 0).then(|| LeaderHint {
                    topic_partition: b.tp.clone(),
                    leader: p.current_leader.leader_id.0,
                    leader_epoch: p.current_leader.leader_epoch,
                    address: resp
                        .node_endpoints
                        .iter()
                        .find(|n| n.node_id == p.current_leader.leader_id)
                        .map(|n| format!("{}:{}", n.host.as_str(), n.port).into()),
                }),
            });
            outcomes.push((b, outcome));
        }
        drop(by_tp);
        for (mut b, outcome) in outcomes {
            let Some(mut a) = outcome else {
                // The response does not answer for this partition: a protocol error of the
                // broker. Retry (bounded by delivery.timeout.ms) after a metadata refresh, as
                // for a leader change.
                tracing::warn!(
                    broker = node,
                    tp = %b.tp,
                    "Produce response without an answer for a partition sent"
                );
                b.maybe_written = true;
                b.unresolved = true;
                refresh = true;
                let err = malformed(node, format!("no response for {}", b.tp));
                self.retry_or_fail(now, b, err, true);
                continue;
            };
            // REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND: appended, maybe.
            let named = a.code.named();
            let appended_maybe = matches!(
                named,
                ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicasAfterAppend
            );
            b.maybe_written |= appended_maybe;
            b.unresolved |= appended_maybe;
            if matches!(
                named,
                ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId
            ) {
                // The partition's sequence check refused it: not written under this sequence
                // (a write of an earlier attempt would have been answered as a duplicate).
                b.unresolved = false;
                b.maybe_written &= named == ErrorCode::UnknownProducerId;
            }
            tracing::trace!(
                tp = %b.tp,
                seq = b.base_sequence,
                records = b.record_count(),
                code = a.code.0,
                a.base_offset,
                "partition response"
            );
            match named {
                // Success with an invalid offset: we cannot tell the user where the records
                // are. Retry like a malformed answer (idempotence turns the resend into
                // DUPLICATE_SEQUENCE_NUMBER with the real offset).
                // An offset off the wire is checked: the batch's last record must have one too
                // (`base_offset + count - 1` within i64).
                ErrorCode::None
                    if a.base_offset < 0
                        || a.base_offset
                            .checked_add(b.record_count().saturating_sub(1) as i64)
                            .is_none() =>
                {
                    tracing::warn!(
                        broker = node,
                        tp = %b.tp,
                        a.base_offset,
                        "Produce response: error 0 with a negative or overflowing base_offset"
                    );
                    b.maybe_written = true;
                    b.unresolved = true;
                    refresh = true;
                    let err = malformed(
                        node,
                        format!("base_offset {} with error 0 for {}", a.base_offset, b.tp),
                    );
                    self.retry_or_fail(now, b, err, true);
                }
                // Written; DUPLICATE_SEQUENCE_NUMBER: written before (idempotence).
                ErrorCode::None | ErrorCode::DuplicateSequenceNumber => {
                    self.confirm_sequence(&b);
                    if named == ErrorCode::DuplicateSequenceNumber {
                        tracing::debug!(
                            tp = %b.tp,
                            seq = b.base_sequence,
                            a.base_offset,
                            "DUPLICATE_SEQUENCE_NUMBER: already written"
                        );
                    }
                    self.settled
                        .push(Settle::Batch(b, Ok((a.base_offset, a.log_append_time))));
                }
                // MESSAGE_TOO_LARGE: split and resend, as Java (not RECORD_LIST_TOO_LARGE:
                // the request, not the batch, was too large).
                ErrorCode::MessageTooLarge if b.record_count() > 1 => {
                    if let Err(b) = self.split(b) {
                        self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
                        let topic_partition = b.tp.clone();
                        let err = ProduceError::Broker {
                            topic_partition,
                            code: a.code,
                            message: a.message,
                        };
                        self.settled.push(Settle::Batch(b, Err(err)));
                    }
                }
                _ => {
                    let code = a.code;
                    if matches!(
                        named,
                        ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced
                    ) {
                        self.settled.push(Settle::Health(
                            crate::health::HealthEvent::ProducerFenced {
                                producer_id: b.producer_id,
                                epoch: b.producer_epoch,
                            },
                        ));
                    }
                    if code.needs_metadata_refresh() {
                        // KIP-951: the answer may name the new leader; the metadata manager
                        // applies it at once instead of a full refresh.
                        match a.leader_hint.take() {
                            Some(hint) => out.push(Action::LeaderHint(hint)),
                            None => refresh = true,
                        }
                    }
                    if named == ErrorCode::InvalidRecord && !a.record_errors.is_empty() {
                        // Per-record errors (e.g. a keyless record on a compacted topic): only
                        // those records fail; the others are sent again.
                        self.fail_records(now, b, &a);
                        continue;
                    }
                    if named == ErrorCode::ClusterAuthorizationFailed
                        && self.config.enable_idempotence
                    {
                        // CLUSTER_AUTHORIZATION_FAILED: fatal for an idempotent producer, as
                        // Java (its producer id is not authorized).
                        let fatal =
                            ProduceError::Fatal(format!("{code} on a produce request").into());
                        tracing::error!(error = %fatal, "idempotent producer stops");
                        self.pid = ProducerIdState::Failed(fatal);
                    }
                    let err = ProduceError::Broker {
                        topic_partition: b.tp.clone(),
                        code,
                        message: a.message,
                    };
                    let mut retriable = code.is_retriable()
                        || (named == ErrorCode::OutOfOrderSequenceNumber && self.has_earlier(&b));
                    // (In a transaction these make it abortable instead; the abort bumps the
                    // epoch.)
                    if !retriable
                        && matches!(
                            named,
                            ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId
                        )
                        && self.config.retries > 0
                        && !self.transactional
                    {
                        // UNKNOWN_PRODUCER_ID, or a sequence gap nothing pending explains
                        // (e.g. the broker lost its state): KIP-360 — get a new producer
                        // id/epoch, restart sequences at 0, resend the batch.
                        tracing::warn!(
                            tp = %b.tp,
                            %code,
                            seq = b.base_sequence,
                            records = b.record_count(),
                            "sequence error with nothing earlier pending"
                        );
                        self.reset_generation(b.pid_generation, &b.tp);
                        retriable = true;
                    }
                    self.retry_or_fail(now, b, err, retriable);
                }
            }
        }
        if refresh {
            out.push(Action::RefreshMetadata);
        }
    }

    /// INVALID_RECORD with `record_errors` (KIP-467): fails the records named, with their
    /// messages, and queues the others again as a new batch in the same place. The broker
    /// wrote none of the batch; with idempotence its sequence range is now a gap, so the
    /// producer id is reset (every batch re-sequenced). If the batch cannot be read back, all
    /// its records fail.
    fn fail_records(&mut self, now: Instant, mut b: ProducerBatch, a: &Answer) {
        let whole = |b: ProducerBatch| {
            let topic_partition = b.tp.clone();
            let err = ProduceError::Broker {
                topic_partition,
                code: a.code,
                message: a.message.clone(),
            };
            Settle::Batch(b, Err(err))
        };
        self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
        if self.transactional || self.config.retries == 0 {
            // No resend: in a transaction a new sequence after the gap would be refused, and
            // `retries=0` means none (Java fails the whole batch either way).
            return self.settled.push(whole(b));
        }
        let Some(records) = crate::protocol::decode::decode_batch(&b.records) else {
            return self.settled.push(whole(b));
        };
        if records.len() != b.thunks.len() {
            return self.settled.push(whole(b));
        }
        // Indexes off the wire: only those inside the batch count.
        let mut bad: HashMap<usize, Option<Arc<str>>> = HashMap::new();
        for (i, m) in &a.record_errors {
            if let Ok(i) = usize::try_from(*i) {
                if i < records.len() {
                    bad.insert(i, m.clone().or_else(|| a.message.clone()));
                }
            }
        }
        if bad.is_empty() {
            return self.settled.push(whole(b));
        }
        let total = records.len();
        let thunks = std::mem::take(&mut b.thunks);
        let mut kept = Vec::with_capacity(thunks.len());
        let mut kept_records = Vec::with_capacity(thunks.len());
        for (i, (t, r)) in thunks.into_iter().zip(records.iter()).enumerate() {
            match bad.remove(&i) {
                Some(message) => {
                    let err = ProduceError::Broker {
                        topic_partition: b.tp.clone(),
                        code: a.code,
                        message,
                    };
                    self.settled.push(Settle::Records(vec![t], err));
                }
                None => {
                    kept_records.push(r);
                    kept.push(t);
                }
            }
        }
        if kept.is_empty() {
            return;
        }
        let rebuilt = match self.rebuild(&kept_records) {
            Ok(r) => r,
            Err(e) => {
                b.thunks = kept;
                tracing::warn!(tp = %b.tp, error = %e, "batch could not be rebuilt");
                return self.settled.push(whole(b));
            }
        };
        tracing::info!(
            tp = %b.tp,
            failed = total - kept.len(),
            resent = kept.len(),
            "INVALID_RECORD for some records; the others are sent again"
        );
        b.thunks = kept;
        b.records = rebuilt;
        // The broker refused the whole batch under its sequence: it stays "sent under this
        // producer id and known not written", so nothing behind it can have been written
        // either and a pending reset is not held by what follows (`first_unsettled`). It is
        // re-sequenced with everything else once the reset gives a new epoch (its generation
        // is then old); had it lost its sequence, an unresolved batch behind it would hold
        // the reset while the drain, waiting for that reset, sent nothing.
        if b.base_sequence >= 0 {
            b.set_producer_state(b.producer_id, b.producer_epoch, b.base_sequence);
        }
        b.unresolved = false;
        b.retry_at = Some(now);
        self.requeue(b);
    }

    /// The broker acknowledged `b`: if it carried a sequence of the current producer id, the
    /// broker now has sequence state for its partition (see `confirmed_generation`).
    fn confirm_sequence(&mut self, b: &ProducerBatch) {
        if b.base_sequence >= 0 && b.pid_generation == self.pid_generation {
            let generation = self.pid_generation;
            if let Some(i) = self.index.get(&b.tp) {
                if let Some(q) = self.queues.get_mut(*i) {
                    q.confirmed_generation = generation;
                }
            }
        }
    }

    /// Forgets the producer id of `generation` (once per id/epoch): the next drain sends
    /// InitProducerId with the old id and epoch (so a KIP-360 broker bumps the epoch) and
    /// re-sequences every batch from 0.
    fn reset_generation(&mut self, generation: u64, tp: &TopicPartition) {
        if let ProducerIdState::Ready { id, epoch } = self.pid {
            if generation != self.pid_generation {
                return;
            }
            // InitProducerId with the current id and epoch (KIP-360), once what may have been
            // written under them is settled (`reset_pending`). (Java's idempotent producer
            // bumps the epoch locally, skipping the round trip.)
            if !self.reset_pending {
                tracing::warn!(producer_id = id, epoch, %tp, "producer id reset (KIP-360)");
                self.reset_pending = true;
                self.stats.producer_id_resets += 1;
            }
        }
    }

    /// The first batch of `q` that holds a pending reset: unresolved under the current
    /// producer id with no earlier batch of it known not written (see `maybe_start_reset`).
    fn first_unsettled<'q>(&self, q: &'q PartitionQueue) -> Option<&'q ProducerBatch> {
        for b in &q.queue {
            if b.base_sequence < 0 || b.pid_generation != self.pid_generation {
                continue;
            }
            if self.unresolved(b) {
                return Some(b);
            }
            // Sent under this producer id and known not written: nothing after it was.
            return None;
        }
        None
    }

    /// Whether `b` may have been written under the current producer id and sequence, with no
    /// answer settling it yet.
    fn unresolved(&self, b: &ProducerBatch) -> bool {
        b.unresolved && b.base_sequence >= 0 && b.pid_generation == self.pid_generation
    }

    /// Starts the pending producer-id reset once nothing is in flight and nothing queued is
    /// unresolved under the current producer id.
    ///
    /// A queued unresolved batch does not hold the reset when an earlier batch of its
    /// partition under the same producer id is known not written (the broker accepts sequences
    /// only contiguously, so nothing after it can have been written either), nor, once the
    /// reset has waited `request.timeout.ms`, when its partition has no leader to resend it to
    /// (it is then re-sequenced like the others, as librdkafka and Java do).
    fn maybe_start_reset(&mut self, now: Instant, cluster: &Cluster) {
        if !self.in_flight_requests.is_empty() {
            return;
        }
        let since = *self.reset_since.get_or_insert(now);
        let waited = now >= since + self.config.request_timeout;
        let blocking = self.queues.iter().any(|q| {
            self.first_unsettled(q)
                .is_some_and(|_| !waited || cluster.leader(&q.tp.topic, q.tp.partition).is_some())
        });
        if blocking {
            return;
        }
        self.reset_pending = false;
        self.reset_since = None;
        if let ProducerIdState::Ready { id, epoch } = self.pid {
            self.previous_pid = Some((id, epoch));
            self.pid = ProducerIdState::Unknown;
        }
    }

    /// A batch that carried a sequence of the current producer id failed or expired: whether
    /// the broker wrote it is unknown, so the partition's next sequence cannot be trusted. Bump
    /// the epoch now (KIP-360, Java's `bumpIdempotentEpochAndResetIdIfNeeded`) instead of
    /// waiting for an OUT_OF_ORDER_SEQUENCE_NUMBER on a later batch. Not in a transaction (its
    /// abort bumps the epoch).
    fn sequenced_batch_failed(&mut self, generation: u64, base_sequence: i32, tp: &TopicPartition) {
        if base_sequence >= 0 && !self.transactional {
            self.reset_generation(generation, tp);
        }
    }

    /// True if a batch of the same partition with a lower number is still pending: an
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` for `b` is then the echo of that batch's retry.
    fn has_earlier(&self, b: &ProducerBatch) -> bool {
        self.queue(&b.tp)
            .is_some_and(|q| q.in_flight > 0 || q.queue.iter().any(|o| o.number < b.number))
    }

    fn retry_or_fail(
        &mut self,
        now: Instant,
        mut b: ProducerBatch,
        err: ProduceError,
        retriable: bool,
    ) {
        let delivery_timeout = self.config.delivery_timeout;
        let deadline = b.created + delivery_timeout;
        if !retriable || b.attempts > self.config.retries {
            self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
            return self.settled.push(Settle::Batch(b, Err(err)));
        }
        if now >= deadline {
            self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
            tracing::debug!(tp = %b.tp, last_error = %err, "batch expired while retrying");
            let possibly_written = b.maybe_written;
            let topic_partition = b.tp.clone();
            let err = ProduceError::DeliveryTimeout {
                topic_partition,
                timeout_ms: delivery_timeout.as_millis() as u64,
                possibly_written,
            };
            return self.settled.push(Settle::Batch(b, Err(err)));
        }
        tracing::debug!(tp = %b.tp, attempt = b.attempts, error = %err, "retrying batch");
        // A backoff reaching beyond the deadline ends there (the drain then expires the batch
        // on time rather than a backoff early).
        b.retry_at = Some((now + self.backoff(b.attempts)).min(deadline));
        b.last_error = Some(err);
        self.requeue(b);
    }

    /// Splits a batch the broker found too large into two halves (by record count) and queues
    /// them in its place. With idempotence the halves take the original base sequence and
    /// base + half, so the partition's sequence stays gap-free. `Err` gives the batch back when
    /// it cannot be split (one record, or unreadable).
    #[allow(clippy::result_large_err)] // the rare path; the batch is moved back, not copied
    fn split(&mut self, mut b: ProducerBatch) -> Result<(), ProducerBatch> {
        let Some(records) = crate::protocol::decode::decode_batch(&b.records) else {
            return Err(b);
        };
        if records.len() != b.thunks.len() || records.len() < 2 {
            return Err(b);
        }
        let mid = records.len() / 2;
        let mut built = Vec::with_capacity(2);
        for part in [&records[..mid], &records[mid..]] {
            let part: Vec<&DecodedRecord> = part.iter().collect();
            match self.rebuild(&part) {
                Ok(bytes) => built.push(bytes),
                Err(_) => return Err(b),
            }
        }
        let (Some(second_records), Some(first_records)) = (built.pop(), built.pop()) else {
            return Err(b);
        };
        let mut thunks = std::mem::take(&mut b.thunks);
        let second_thunks = thunks.split_off(mid);
        let slot = b._slot.take();
        tracing::info!(
            tp = %b.tp,
            records = mid * 2,
            "batch too large for the broker; split in two"
        );
        self.settled.push(Settle::Count(Count::Split));
        let mut halves = Vec::with_capacity(2);
        for (i, (records, thunks)) in [(first_records, thunks), (second_records, second_thunks)]
            .into_iter()
            .enumerate()
        {
            // Halves keep their place: number and number + 1/2 as a tie-break below.
            let mut half = ProducerBatch::new(
                b.tp.clone(),
                records,
                thunks,
                b.created,
                b.number,
                b.shared.clone(),
            );
            half.attempts = b.attempts;
            half.maybe_written = b.maybe_written;
            half.last_error = b.last_error.clone();
            if b.base_sequence >= 0 {
                let seq = increment_sequence(b.base_sequence, if i == 0 { 0 } else { mid });
                half.set_producer_state(b.producer_id, b.producer_epoch, seq);
                half.pid_generation = b.pid_generation;
            }
            halves.push(half);
        }
        if let Some(first) = halves.first_mut() {
            first._slot = slot;
        }
        for half in halves.into_iter().rev() {
            self.requeue(half);
        }
        Ok(())
    }

    /// Encodes `records` (read back from a batch) as a new batch, producer state unset (the
    /// drain writes it when it sequences the batch).
    fn rebuild(
        &self,
        records: &[&DecodedRecord],
    ) -> Result<Bytes, crate::protocol::record_batch::BatchError> {
        let mut builder = crate::protocol::record_batch::RecordBatchBuilder::with_levels(
            self.config.batch_size,
            self.config.compression,
            self.config.compression_levels(),
        );
        for r in records {
            builder.try_append(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
                usize::MAX,
            );
        }
        builder.build(-1, -1, -1)
    }

    /// Puts a batch back in its partition queue, in the order the batches were closed in (Java's
    /// `reenqueue` puts it at the front; older batches of the partition are never behind it).
    fn requeue(&mut self, b: ProducerBatch) {
        let created = b.created;
        let q = self.queue_for_push(&b.tp, created);
        // Before any equal number: the halves of a split are queued second half first.
        let pos = q
            .queue
            .iter()
            .position(|o| o.number >= b.number)
            .unwrap_or(q.queue.len());
        q.queue.insert(pos, b);
    }
}

/// `sequence + n` as Kafka counts sequences: after `i32::MAX` they wrap to 0 (KIP-98, Java's
/// `DefaultRecordBatch.incrementSequence`). `n` is a record count (at most `i32::MAX`).
pub(crate) fn increment_sequence(sequence: i32, n: usize) -> i32 {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    if sequence > i32::MAX - n {
        n - (i32::MAX - sequence) - 1
    } else {
        sequence + n
    }
}

/// One partition's answer in a Produce response.
struct Answer {
    code: KafkaCode,
    base_offset: i64,
    log_append_time: i64,
    message: Option<Arc<str>>,
    /// `(batch_index, message)` of records refused one by one (KIP-467).
    record_errors: Vec<(i32, Option<Arc<str>>)>,
    /// The current leader (KIP-951), when the answer gives it.
    leader_hint: Option<LeaderHint>,
}

fn malformed(node: i32, reason: String) -> ProduceError {
    ProduceError::Connection(ConnectionError::Malformed {
        broker: format!("node {node}").into(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::BrokerInfo;
    use crate::codes::ErrorCode as E;

    fn config(props: &[(&str, &str)]) -> Arc<ProducerConfig> {
        let mut b = ProducerConfig::builder().bootstrap_servers(["b:9092"]);
        for (k, v) in props {
            b = b.set(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        Arc::new(b.build().unwrap_or_else(|e| panic!("{e}")))
    }

    /// `core` holds `q` as its only partition; its sweep is due at `sweep_at`.
    fn hold(core: &mut SenderCore, q: PartitionQueue, sweep_at: Instant) {
        core.index.insert(q.tp.clone(), 0);
        core.queues.push(q);
        core.next_sweep = Some(sweep_at);
    }

    fn batch(now: Instant) -> ProducerBatch {
        let shared = Arc::new(Shared::default());
        crate::batch::one_record_batch(TopicPartition::new("t", 0), 0, now, &shared)
    }

    /// `purge` fails the queued batches with `Purged` (possibly written only if a request
    /// carried one: a retry) and keeps what is in flight; `purge` of the in-flight ones too
    /// fails the batches of the requests out (possibly written), whose answers then only
    /// update counters. A purged batch that had a sequence resets the producer id (KIP-360):
    /// the simulation cannot see a missing reset (the broker's `OUT_OF_ORDER_SEQUENCE_NUMBER`
    /// to the next batch starts one too, a round trip later), so it is checked here.
    #[test]
    fn purge_fails_queued_then_in_flight_batches_and_resets_a_sequence_it_leaves_open() {
        let now = Instant::now();
        let mut core = SenderCore::new(config(&[]));
        core.set_producer_id(7, 0);
        let generation = core.pid_generation;
        let outcomes = |core: &mut SenderCore| -> Vec<Option<bool>> {
            core.take_settled()
                .filter_map(|s| match s {
                    Settle::Batch(_, Err(ProduceError::Purged { possibly_written })) => {
                        Some(Some(possibly_written))
                    }
                    Settle::Batch(..) => Some(None),
                    _ => None,
                })
                .collect()
        };
        // Queued: a fresh batch, then a retry of one sent under the producer id.
        core.enqueue(batch(now));
        let mut retry = batch(now);
        retry.base_sequence = 0;
        retry.pid_generation = generation;
        retry.maybe_written = true;
        core.enqueue(retry);
        // In flight: one request with one sequenced batch.
        let mut sent = batch(now);
        sent.base_sequence = 1;
        sent.pid_generation = generation;
        let tp = sent.tp.clone();
        core.in_flight_requests.insert(
            0,
            InFlight {
                sent: now,
                node: 0,
                batches: vec![(tp.clone(), false, Some(sent))],
            },
        );
        assert!(!core.reset_pending);

        core.purge(false);
        assert_eq!(outcomes(&mut core), [Some(false), Some(true)]);
        assert!(!core.has_queued(), "nothing queued is left");
        assert!(
            core.in_flight_requests[&0].batches[0].2.is_some(),
            "in flight kept"
        );
        assert!(core.reset_pending, "the retry's sequence is left open");
        assert!(core.sequence_gap());
        assert_eq!(core.stats().producer_id_resets, 1);

        core.purge(true);
        assert_eq!(outcomes(&mut core), [Some(true)]);
        assert!(core.in_flight_requests[&0].batches[0].2.is_none());
        assert_eq!(core.stats().producer_id_resets, 1, "one reset for both");

        // A purge with nothing sequenced leaves the producer id alone.
        let mut core = SenderCore::new(config(&[]));
        core.set_producer_id(7, 0);
        core.enqueue(batch(now));
        core.purge(true);
        assert_eq!(outcomes(&mut core), [Some(false)]);
        assert!(!core.reset_pending && !core.sequence_gap());
    }

    /// An aborted sender fails every batch that arrives later with the abort's error, and the
    /// next drain fails what was queued (mutant `abort` → `()` of shard 2/8 missed: the
    /// simulation's closes also stop the actors, which fail what is held).
    #[test]
    fn an_aborted_sender_fails_what_is_queued_and_what_arrives_later() {
        let now = Instant::now();
        let mut core = SenderCore::new(config(&[("enable.idempotence", "false")]));
        core.enqueue(batch(now));
        let err = ProduceError::closed("closing");
        core.abort(err.clone());
        core.enqueue(batch(now));
        let later: Vec<_> = core
            .take_settled()
            .filter_map(|s| match s {
                Settle::Batch(_, Err(e)) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(later.len(), 1, "the batch that came after the abort");
        assert_eq!(later[0], err);
        let mut out = Vec::new();
        core.drain(now, &Cluster::default(), &mut NoTransaction, &mut out);
        let queued: Vec<_> = core
            .take_settled()
            .filter_map(|s| match s {
                Settle::Batch(_, Err(e)) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(queued, [err], "the batch queued before it");
        assert!(!core.has_queued());
    }

    /// `fail_partition` fails the partition's queued batches, and leaves a sequence gap only
    /// if one of them had a sequence (mutants `fail_partition` → `()`, `|=` → `&=` and
    /// `>=` → `<` of shard 2/8 missed).
    #[test]
    fn failing_a_partition_fails_its_batches_and_notes_a_gap_only_for_a_sequenced_one() {
        let now = Instant::now();
        let err = ProduceError::closed("refused");
        for sequenced in [false, true] {
            let mut core = SenderCore::new(config(&[]));
            core.set_producer_id(1, 0);
            let mut b = batch(now);
            if sequenced {
                b.base_sequence = 0;
                b.pid_generation = core.pid_generation;
            }
            let tp = b.tp.clone();
            core.enqueue(b);
            core.enqueue(batch(now));
            assert!(!core.sequence_gap(), "a new core has no gap");
            core.fail_partition(&tp, &err);
            let failed = core
                .take_settled()
                .filter(|s| matches!(s, Settle::Batch(_, Err(e)) if *e == err))
                .count();
            assert_eq!(failed, 2, "sequenced: {sequenced}");
            assert_eq!(core.sequence_gap(), sequenced);
            // Another partition's batches are not touched.
            core.enqueue(batch(now));
            core.fail_partition(&TopicPartition::new("other", 0), &err);
            assert_eq!(core.take_settled().count(), 0);
        }
    }

    /// An InitProducerId the shell could not send is asked for again; only while one is being
    /// asked for (mutant `init_producer_id_not_sent` → `()` of shard 2/8 missed).
    #[test]
    fn an_init_producer_id_not_sent_is_asked_for_again() {
        let mut core = SenderCore::new(config(&[]));
        core.pid = ProducerIdState::Initializing;
        core.init_producer_id_not_sent();
        assert!(matches!(core.pid, ProducerIdState::Unknown));
        core.set_producer_id(3, 1);
        core.init_producer_id_not_sent();
        assert!(matches!(
            core.pid,
            ProducerIdState::Ready { id: 3, epoch: 1 }
        ));
    }

    /// Each InitProducerId answer leads where it must (the guards of `on_init_producer_id`,
    /// mutants of shard 2/8 missed: in the simulation every refused answer is retried and
    /// ends well, whichever arm took it): an id and epoch both valid are taken; an invalid one
    /// is retried after a backoff; a refused epoch bump asks afresh at once; a bump the broker
    /// cannot carry (below v3) too; a non-retriable code is fatal; a retriable one backs off.
    #[test]
    fn each_init_producer_id_answer_leads_where_it_must() {
        let now = Instant::now();
        let cfg = config(&[("retry.backoff.ms", "100")]);
        let unsupported = || ConnectionError::UnsupportedVersion {
            broker: "b:9092".into(),
            api_key: 22,
        };
        let lost = || ConnectionError::Disconnected {
            broker: "b:9092".into(),
            reason: "gone".into(),
        };
        #[derive(Debug, PartialEq)]
        enum Then {
            Ready,
            RetryLater,
            AskAfresh,
            Fatal,
        }
        type Case = (bool, Result<(i16, i64, i16), ConnectionError>, Then);
        let cases: Vec<Case> = vec![
            (false, Ok((0, 5, 0)), Then::Ready),
            (false, Ok((0, -1, 0)), Then::RetryLater),
            (false, Ok((0, 5, -1)), Then::RetryLater),
            (true, Ok((0, -1, 0)), Then::RetryLater),
            (
                true,
                Ok((E::InvalidProducerEpoch.code(), -1, -1)),
                Then::AskAfresh,
            ),
            (true, Err(unsupported()), Then::AskAfresh),
            (false, Err(unsupported()), Then::RetryLater),
            (false, Err(lost()), Then::RetryLater),
            (
                false,
                Ok((E::ClusterAuthorizationFailed.code(), -1, -1)),
                Then::Fatal,
            ),
            (
                false,
                Ok((E::CoordinatorNotAvailable.code(), -1, -1)),
                Then::RetryLater,
            ),
        ];
        for (i, (bump, answer, expected)) in cases.into_iter().enumerate() {
            let mut core = SenderCore::new(cfg.clone());
            if bump {
                core.previous_pid = Some((5, 0));
            }
            core.pid = ProducerIdState::Initializing;
            core.on_init_producer_id(now, answer);
            let then = match &core.pid {
                ProducerIdState::Ready { .. } => Then::Ready,
                ProducerIdState::Failed(_) => Then::Fatal,
                ProducerIdState::Unknown if core.init_after.is_some_and(|at| at > now) => {
                    Then::RetryLater
                }
                ProducerIdState::Unknown => Then::AskAfresh,
                other => panic!("case {i}: left {other:?}"),
            };
            assert_eq!(then, expected, "case {i}");
            if expected == Then::AskAfresh {
                assert_eq!(core.previous_pid, None, "case {i}: the old id is dropped");
            }
        }
    }

    /// A batch that expires (queued or in flight) with a sequence resets the producer id
    /// (KIP-360); one without does not (mutants `>=` → `<` of `expire`, shard 3/8, missed: the
    /// broker's OUT_OF_ORDER answer to the next batch starts the reset a round trip later,
    /// which the simulation cannot tell from this one).
    #[test]
    fn an_expired_batch_resets_the_producer_id_only_if_it_had_a_sequence() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(200);
        for (in_flight, sequenced) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut core = SenderCore::new(config(&[("delivery.timeout.ms", "120000")]));
            core.set_producer_id(1, 0);
            let mut b = batch(t0);
            if sequenced {
                b.base_sequence = 0;
                b.pid_generation = core.pid_generation;
            }
            if in_flight {
                let tp = b.tp.clone();
                core.in_flight_requests.insert(
                    0,
                    InFlight {
                        sent: t0,
                        node: 0,
                        batches: vec![(tp, false, Some(b))],
                    },
                );
            } else {
                core.enqueue(b);
            }
            core.expire(later);
            let expired = core
                .take_settled()
                .filter(|s| {
                    matches!(
                        s,
                        Settle::Batch(_, Err(ProduceError::DeliveryTimeout { .. }))
                    )
                })
                .count();
            assert_eq!(expired, 1, "in flight {in_flight}, sequenced {sequenced}");
            assert_eq!(
                core.reset_pending, sequenced,
                "in flight {in_flight}, sequenced {sequenced}"
            );
        }
    }

    /// An idempotent producer without a transactional id asks for its producer id once a batch
    /// waits, not before; a transactional one never asks in the drain (init_transactions does)
    /// (mutant `&&` → `||` of the drain, shard 3/8, missed: the first batch always arrives
    /// before the first drain in the simulation).
    #[test]
    fn the_drain_asks_for_a_producer_id_only_for_a_waiting_batch_and_never_in_a_transaction() {
        struct Transactional;
        impl DrainGate for Transactional {
            fn transactional(&self) -> bool {
                true
            }
            fn refuse_queued(&self) -> Option<ProduceError> {
                None
            }
            fn ending(&self) -> bool {
                false
            }
            fn partition_ready(&mut self, _: &TopicPartition) -> bool {
                true
            }
        }
        let now = Instant::now();
        let asks = |out: &[Action]| {
            out.iter()
                .filter(|a| matches!(a, Action::InitProducerId { .. }))
                .count()
        };
        let cluster = Cluster::default();
        let mut core = SenderCore::new(config(&[]));
        let mut out = Vec::new();
        core.drain(now, &cluster, &mut NoTransaction, &mut out);
        assert_eq!(asks(&out), 0, "nothing waits: {out:?}");
        core.enqueue(batch(now));
        core.drain(now, &cluster, &mut NoTransaction, &mut out);
        assert_eq!(asks(&out), 1, "a batch waits: {out:?}");
        let mut core = SenderCore::new(config(&[]));
        core.enqueue(batch(now));
        let mut out = Vec::new();
        core.drain(now, &cluster, &mut Transactional, &mut out);
        assert_eq!(asks(&out), 0, "transactional: {out:?}");
    }

    /// A batch whose partition has no leader asks for a metadata refresh; one whose topic the
    /// cache does not hold at all (dropped as idle) asks for the topic (a refresh fetches only
    /// the topics in its set) (mutant of the `is_none()` guard, shard 3/8, missed: either ask
    /// ends with the topic's metadata in the simulation).
    #[test]
    fn a_missing_leader_asks_for_a_refresh_and_a_missing_topic_for_the_topic() {
        use crate::cluster::{PartitionInfo, TopicInfo};
        let now = Instant::now();
        let asks = |out: &[Action]| {
            let refresh = out.iter().any(|a| matches!(a, Action::RefreshMetadata));
            let want = out
                .iter()
                .any(|a| matches!(a, Action::WantTopic(t) if &**t == "t"));
            (refresh, want)
        };
        let plain = config(&[("enable.idempotence", "false")]);
        // The topic is cached, its partition has no leader.
        let cluster = Cluster::default();
        cluster.topics.insert(
            "t".into(),
            Arc::new(TopicInfo {
                name: "t".into(),
                partitions: vec![PartitionInfo {
                    leader: -1,
                    leader_epoch: 0,
                }],
                topic_id: [0; 16],
            }),
        );
        let mut core = SenderCore::new(plain.clone());
        core.enqueue(batch(now));
        let mut out = Vec::new();
        core.drain(now, &cluster, &mut NoTransaction, &mut out);
        assert_eq!(asks(&out), (true, false), "no leader: {out:?}");
        // The topic is not cached at all.
        let mut core = SenderCore::new(plain);
        core.enqueue(batch(now));
        let mut out = Vec::new();
        core.drain(now, &Cluster::default(), &mut NoTransaction, &mut out);
        assert_eq!(asks(&out), (false, true), "no topic: {out:?}");
    }

    /// While batches of a partition are in flight to its old leader, nothing of it goes to the
    /// new one (the old leader's answers come first, in order); to the same leader more may
    /// go (mutant `!=` → `==` of the drain, shard 3/8, missed: with idempotence a partition
    /// has one batch in flight until the broker confirmed one, and the simulation's leader
    /// moves found it in no other state).
    #[test]
    fn a_partition_in_flight_to_its_old_leader_waits_and_to_its_leader_pipelines() {
        use crate::cluster::{PartitionInfo, TopicInfo};
        let now = Instant::now();
        for (leader, sends) in [(1, false), (0, true)] {
            let cluster = Cluster::default();
            for id in [0, 1] {
                cluster.brokers.insert(
                    id,
                    BrokerInfo {
                        node_id: id,
                        address: format!("b{id}:9092").into(),
                    },
                );
            }
            cluster.topics.insert(
                "t".into(),
                Arc::new(TopicInfo {
                    name: "t".into(),
                    partitions: vec![PartitionInfo {
                        leader,
                        leader_epoch: 0,
                    }],
                    topic_id: [0; 16],
                }),
            );
            let mut core = SenderCore::new(config(&[("enable.idempotence", "false")]));
            core.enqueue(batch(now));
            // One batch of the partition is out to broker 0.
            core.queues[0].in_flight = 1;
            core.queues[0].in_flight_node = 0;
            core.broker_in_flight.insert(0, 1);
            let mut out = Vec::new();
            core.drain(now, &cluster, &mut NoTransaction, &mut out);
            let sent = out.iter().any(|a| matches!(a, Action::Produce(_)));
            assert_eq!(sent, sends, "leader {leader}: {out:?}");
        }
    }

    /// Each drain starts its scan one partition further, so partitions that each have more
    /// batches than one request takes are served in turn, not the first one until it is empty
    /// (mutants of the rotation, shard 3/8, missed: the simulation checks outcomes, not the
    /// order partitions are served in). (`% n` → `+ n` is equivalent while `n` is unchanged:
    /// the same start modulo `n`.)
    #[test]
    fn successive_drains_start_at_successive_partitions() {
        use crate::cluster::{PartitionInfo, TopicInfo};
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use kafka_protocol::messages::TopicName;
        let now = Instant::now();
        let cluster = Cluster::default();
        cluster.brokers.insert(
            0,
            BrokerInfo {
                node_id: 0,
                address: "b:9092".into(),
            },
        );
        let leaders = (0..3).map(|_| PartitionInfo {
            leader: 0,
            leader_epoch: 0,
        });
        cluster.topics.insert(
            "t".into(),
            Arc::new(TopicInfo {
                name: "t".into(),
                partitions: leaders.collect(),
                topic_id: [0; 16],
            }),
        );
        // One batch per request (max.request.size below a batch), one request at a time.
        let mut core = SenderCore::new(config(&[
            ("enable.idempotence", "false"),
            ("max.request.size", "1"),
            ("max.in.flight.requests.per.connection", "1"),
        ]));
        let shared = Arc::new(Shared::default());
        for number in 0..3 {
            for p in 0..3 {
                let tp = TopicPartition::new("t", p);
                core.enqueue(crate::batch::one_record_batch(tp, number, now, &shared));
            }
        }
        let mut served = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            core.drain(now, &cluster, &mut NoTransaction, &mut out);
            let calls: Vec<&ProduceCall> = out
                .iter()
                .filter_map(|a| match a {
                    Action::Produce(c) => Some(c),
                    _ => None,
                })
                .collect();
            let [call] = calls[..] else {
                panic!("one request per drain: {out:?}");
            };
            let [(tp, _)] = &call.batches[..] else {
                panic!("one batch per request");
            };
            served.push(tp.partition);
            let answer = kafka_protocol::messages::ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(TopicName(tp.topic.to_string().into()))
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default().with_index(tp.partition)
                    ]),
            ]);
            let id = call.request_id;
            let mut out = Vec::new();
            core.on_produce_response(now, id, Ok(Some(answer)), &mut out);
        }
        served.sort_unstable();
        assert_eq!(
            served,
            [0, 1, 2],
            "each partition served once in three drains"
        );
    }

    /// A retried head waits out its backoff exactly: not ready before `retry_at`, ready at it
    /// (a mutant of `ready_head`'s `at > now` that the simulation missed: its timers fire at
    /// or after the deadline, and an early retry changes no outcome it checks).
    #[test]
    fn a_retried_head_waits_until_its_backoff_ends_and_not_longer() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut q = PartitionQueue::new(TopicPartition::new("t", 0), now);
        let mut b = batch(now);
        b.attempts = 1;
        b.retry_at = Some(now + ms(100));
        q.queue.push_back(b);
        for early in [0, 50, 99] {
            assert!(
                q.ready_head(now + ms(early), 5, None).is_none(),
                "{early} ms"
            );
        }
        assert!(q.ready_head(now + ms(100), 5, None).is_some());
        // A retry also waits until nothing of its partition is in flight.
        q.in_flight = 1;
        assert!(q.ready_head(now + ms(100), 5, None).is_none());
    }

    /// With idempotence the sender is saturated (an arriving batch skips the drain) only while
    /// no producer-id reset is due: a reset's drain must run (mutants of `saturated` shard 1/8
    /// missed; they cost drains, not outcomes, so the simulation cannot see them).
    #[test]
    fn saturated_with_idempotence_only_while_no_reset_is_due() {
        let mut core = SenderCore::new(config(&[]));
        let cluster = Cluster::default();
        cluster.brokers.insert(
            0,
            BrokerInfo {
                node_id: 0,
                address: "b:9092".into(),
            },
        );
        core.broker_in_flight.insert(0, 5);
        assert!(
            !core.saturated(&cluster),
            "no producer id yet: the drain asks for one"
        );
        core.set_producer_id(1, 0);
        assert!(
            core.saturated(&cluster),
            "5 requests out to the only broker"
        );
        core.reset_pending = true;
        assert!(
            !core.saturated(&cluster),
            "a reset is due: the drain starts it"
        );
        core.reset_pending = false;
        core.broker_in_flight.insert(0, 4);
        assert!(!core.saturated(&cluster), "a free slot");
    }

    /// A partition is dropped as idle only when all of it holds: nothing queued, nothing in
    /// flight, nothing unresolved in flight, not listed with data, and `metadata.max.idle.ms`
    /// since it was last active (the sweep's `&&`→`||` mutants of shard 1/8 missed: with the
    /// simulation's timeouts a partition idle that long never has work left).
    #[test]
    fn a_partition_is_dropped_as_idle_only_when_every_condition_holds() {
        let config = config(&[("metadata.max.idle.ms", "5000")]);
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        for case in 0..6 {
            let mut core = SenderCore::new(config.clone());
            let mut q = PartitionQueue::new(tp.clone(), t0);
            match case {
                0 => q.queue.push_back(batch(t0)),
                1 => q.in_flight = 1,
                2 => q.unresolved_in_flight = 1,
                3 => q.listed = true,
                4 => q.last_active = t0 + Duration::from_secs(10),
                _ => {}
            }
            hold(&mut core, q, t0);
            core.sweep(t0 + Duration::from_secs(6));
            assert_eq!(core.queues.len() == 1, case < 5, "case {case}");
        }
    }

    /// With idempotence an idle partition dropped by the sweep keeps its sequence state
    /// (`dormant`) if it has any: a next sequence, or a confirmed generation (mutants of the
    /// sweep's keep rule, shard 1/8, missed).
    #[test]
    fn an_idle_partition_keeps_its_sequence_state_when_it_has_any() {
        let idempotent = config(&[("metadata.max.idle.ms", "5000")]);
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        for (next, confirmed, kept) in [(3, 0, true), (0, 2, true), (3, 2, true), (0, 0, false)] {
            let mut core = SenderCore::new(idempotent.clone());
            core.set_producer_id(1, 0);
            let mut q = PartitionQueue::new(tp.clone(), t0);
            q.next_sequence = next;
            q.confirmed_generation = confirmed;
            hold(&mut core, q, t0);
            core.sweep(t0 + Duration::from_secs(6));
            assert!(core.queues.is_empty(), "dropped as idle");
            let dormant = core.dormant.get(&tp).copied();
            assert_eq!(
                dormant.is_some(),
                kept,
                "({next}, {confirmed}): {dormant:?}"
            );
            if kept {
                assert_eq!(dormant, Some((next, confirmed)));
            }
        }
        // Without idempotence there is no sequence state to keep.
        let plain = config(&[
            ("metadata.max.idle.ms", "5000"),
            ("enable.idempotence", "false"),
        ]);
        let mut core = SenderCore::new(plain);
        let mut q = PartitionQueue::new(tp.clone(), t0);
        q.next_sequence = 3;
        q.confirmed_generation = 2;
        hold(&mut core, q, t0);
        core.sweep(t0 + Duration::from_secs(6));
        assert!(core.queues.is_empty() && core.dormant.is_empty());
    }

    /// The sweep runs at most every quarter of `metadata.max.idle.ms`: not before its time,
    /// at its time, and then a quarter later (mutants of its pacing, shard 1/8, missed: pacing
    /// costs scans, not outcomes).
    #[test]
    fn the_idle_sweep_runs_every_quarter_of_the_idle_time() {
        let config = config(&[("metadata.max.idle.ms", "8000")]);
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(9);
        let tp = TopicPartition::new("t", 0);
        for (now, swept) in [(at - Duration::from_millis(1), false), (at, true)] {
            let mut core = SenderCore::new(config.clone());
            hold(&mut core, PartitionQueue::new(tp.clone(), t0), at);
            core.sweep(now);
            assert_eq!(core.queues.is_empty(), swept, "{now:?}");
            let next = if swept {
                now + Duration::from_secs(2)
            } else {
                at
            };
            assert_eq!(core.next_sweep, Some(next));
        }
        let mut core = SenderCore::new(config);
        core.sweep(t0);
        assert_eq!(
            core.next_sweep,
            Some(t0 + Duration::from_secs(2)),
            "the first is armed"
        );
    }

    /// An `OUT_OF_ORDER_SEQUENCE_NUMBER` is the echo of an earlier batch's retry (retriable,
    /// no producer-id reset) only while the partition has a batch in flight or an earlier one
    /// queued (`queue` returning nothing, a mutant of shard 1/8, cost a reset the simulation
    /// could not tell from a needed one).
    #[test]
    fn a_sequence_error_is_an_echo_only_with_something_earlier_pending() {
        let mut core = SenderCore::new(config(&[]));
        let t0 = Instant::now();
        let tp = TopicPartition::new("t", 0);
        let mut late = batch(t0);
        late.number = 5;
        assert!(!core.has_earlier(&late), "no queue at all");
        hold(&mut core, PartitionQueue::new(tp.clone(), t0), t0);
        assert!(!core.has_earlier(&late), "nothing pending");
        core.queues[0].in_flight = 1;
        assert!(core.has_earlier(&late), "a batch in flight");
        core.queues[0].in_flight = 0;
        core.queues[0].queue.push_back(batch(t0));
        assert!(core.has_earlier(&late), "batch 0 queued before batch 5");
    }
}
