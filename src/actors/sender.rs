//! `Sender`: the dispatcher between the partition accumulators and the broker connections.
//!
//! It owns every closed batch that is not in an accumulator: a FIFO queue per partition
//! (ordered by sequence), the count of batches and requests in flight, the idempotent
//! producer's id, epoch and next sequence per partition (KIP-98). On each event (a batch is
//! ready, a response arrives, metadata changed, a retry backoff ends) it *drains*: it groups the
//! heads of the partition queues by leader broker and builds, per broker, Produce requests of
//! at most one batch per partition and at most `max.request.size` bytes, while that broker has
//! fewer than `max.in.flight.requests.per.connection` requests in flight. Responses complete
//! the batches' records, or put the batches back for a retry (`retry.backoff.ms` growing to
//! `retry.backoff.max.ms` with jitter, KIP-580) until `delivery.timeout.ms`.
//!
//! Ordering: a partition has at most `max.in.flight.requests.per.connection` batches in
//! flight, and a batch being retried is resent only once nothing else of its partition is in
//! flight, in sequence order. With idempotence this keeps each partition in order; without it
//! and with more than one in flight, a retry can reorder records (as in the Java client).

use crate::actors::connection::{call, ConnectionPool};
use crate::actors::metadata::{MetadataManager, MetadataUpdated, RefreshMetadata};
use crate::batch::{ProducerBatch, Shared};
use crate::cluster::Cluster;
use crate::config::{Acks, ProducerConfig};
use crate::error::{ConnectionError, KafkaCode, ProduceError};
use crate::record::TopicPartition;
use actix::prelude::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod transactions;
pub(crate) use transactions::{Transactional, TxnRequest};

/// A closed batch, from a [`crate::actors::accumulator::PartitionAccumulator`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct BatchReady(pub ProducerBatch);

/// Fails every batch the sender holds that is not in flight, and every batch that arrives
/// later, with the given error (used by `close` once its timeout has passed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortAll(pub ProduceError);

/// Snapshot of the sender's state, for tests, metrics and `close`.
#[derive(Message)]
#[rtype(result = "SenderStats")]
pub struct GetSenderStats;

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

#[derive(Default)]
struct PartitionQueue {
    queue: VecDeque<ProducerBatch>,
    in_flight: usize,
    next_sequence: i32,
    /// The producer-id generation under which a batch of this partition was last acknowledged.
    /// Until one is (a new producer id, or the partition's first batch), the broker has no
    /// sequence state for us and accepts *any* first sequence (Kafka's `checkSequence`), so a
    /// later batch could be written before an earlier one that failed: one batch in flight.
    confirmed_generation: u64,
}

impl PartitionQueue {
    /// The head batch, if it may be sent now: not backing off, fewer than `max_in_flight`
    /// batches of the partition in flight, and a retried batch only once nothing of its
    /// partition is in flight (so retries keep the partition's order).
    ///
    /// With idempotence (`generation` is the current producer-id generation), a partition whose
    /// sequence the broker has not confirmed under that generation gets one batch in flight.
    fn ready_head(
        &self,
        now: Instant,
        max_in_flight: usize,
        generation: Option<u64>,
    ) -> Option<&ProducerBatch> {
        let head = self.queue.front()?;
        let max_in_flight = match generation {
            Some(g) if self.confirmed_generation != g => 1,
            _ => max_in_flight,
        };
        let backing_off = head.retry_at.is_some_and(|at| at > now);
        let blocked = self.in_flight >= max_in_flight || (head.attempts > 0 && self.in_flight > 0);
        (!backing_off && !blocked).then_some(head)
    }
}

#[derive(Clone, Debug)]
enum ProducerIdState {
    Disabled,
    Unknown,
    Initializing,
    Ready { id: i64, epoch: i16 },
    Failed(ProduceError),
}

/// See the module docs.
pub struct Sender {
    config: Arc<ProducerConfig>,
    cluster: Arc<Cluster>,
    pool: Arc<ConnectionPool>,
    metadata: Addr<MetadataManager>,
    partitions: HashMap<TopicPartition, PartitionQueue>,
    broker_in_flight: HashMap<i32, usize>,
    pid: ProducerIdState,
    aborted: Option<ProduceError>,
    wake: Option<(Instant, SpawnHandle)>,
    stats: SenderStats,
    previous_pid: Option<(i64, i16)>,
    /// Incremented on every producer id obtained; batches sequenced in an older generation are
    /// re-sequenced.
    pid_generation: u64,
    shared: Arc<Shared>,
    /// Batches of the Produce requests in flight, by request number. A batch whose
    /// `delivery.timeout.ms` passes while its request is out is failed and its slot emptied
    /// (Java's `getExpiredInflightBatches`); its answer, when it comes, only updates counters.
    in_flight_requests: HashMap<u64, Vec<(TopicPartition, Option<ProducerBatch>)>>,
    next_request: u64,
    /// Brokers that asked us to back off (`throttle_time_ms`, KIP-219): nothing is sent to them
    /// before this instant.
    throttled_until: HashMap<i32, Instant>,
    /// The transaction (with `transactional.id`): state machine, partitions in it, calls.
    txn: Option<transactions::TxnCore>,
}

impl Sender {
    /// A sender for the given cluster view and connections.
    pub(crate) fn new(
        config: Arc<ProducerConfig>,
        cluster: Arc<Cluster>,
        pool: Arc<ConnectionPool>,
        metadata: Addr<MetadataManager>,
        shared: Arc<Shared>,
    ) -> Self {
        let pid = if config.enable_idempotence {
            ProducerIdState::Unknown
        } else {
            ProducerIdState::Disabled
        };
        let txn = config.transactional_id.as_deref().map(|id| {
            transactions::TxnCore::new(id, pool.clone(), cluster.clone(), config.clone())
        });
        Sender {
            txn,
            config,
            cluster,
            pool,
            metadata,
            partitions: HashMap::new(),
            broker_in_flight: HashMap::new(),
            pid,
            aborted: None,
            wake: None,
            stats: SenderStats {
                producer_id: (-1, -1),
                ..Default::default()
            },
            previous_pid: None,
            in_flight_requests: HashMap::new(),
            next_request: 0,
            throttled_until: HashMap::new(),
            pid_generation: 0,
            shared,
        }
    }

    /// Asks for a metadata refresh; the manager coalesces and paces them.
    fn request_metadata(&mut self) {
        self.metadata.do_send(RefreshMetadata);
    }

    /// Exponential backoff with +-20% jitter (KIP-580).
    fn backoff(&self, attempts: u32) -> Duration {
        crate::backoff::exponential(
            self.config.retry_backoff,
            self.config.retry_backoff_max,
            attempts,
        )
    }

    fn schedule_wake(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((when, handle)) = self.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.drain(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn init_producer_id(&mut self, ctx: &mut Context<Self>) {
        let known = self.cluster.brokers();
        let Some((broker, conn)) = self.pool.any(&known) else {
            return;
        };
        self.pid = ProducerIdState::Initializing;
        let (old_id, old_epoch) = self.previous_pid.unwrap_or((-1, -1));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(old_id.into())
            .with_producer_epoch(old_epoch);
        let timeout = self.config.request_timeout;
        let fut = async move { call(&conn, broker, request, true, timeout).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            match res {
                Ok(Some(resp)) if resp.error_code == 0 => {
                    act.set_producer_id(resp.producer_id.0, resp.producer_epoch);
                }
                Ok(Some(resp)) if act.previous_pid.is_some() && resp.error_code != 0 => {
                    // The broker does not know the old id (e.g. it lost its state): ask afresh.
                    tracing::debug!(code = %KafkaCode(resp.error_code), "epoch bump refused; new producer id");
                    act.previous_pid = None;
                    act.pid = ProducerIdState::Unknown;
                }
                Err(ConnectionError::UnsupportedVersion { .. }) if act.previous_pid.is_some() => {
                    // InitProducerId below v3 (brokers before 2.5) cannot carry the old id and
                    // epoch (KIP-360): ask for a fresh producer id instead.
                    tracing::debug!("InitProducerId cannot bump the epoch on this broker; new producer id");
                    act.previous_pid = None;
                    act.pid = ProducerIdState::Unknown;
                }
                Ok(Some(resp)) if !KafkaCode(resp.error_code).is_retriable() => {
                    let err = ProduceError::Fatal(
                        format!("InitProducerId failed: {}", KafkaCode(resp.error_code)).into(),
                    );
                    tracing::error!(error = %err, "idempotent producer cannot start");
                    act.pid = ProducerIdState::Failed(err);
                }
                other => {
                    if let Err(e) = other {
                        tracing::debug!(error = %e, "InitProducerId failed; retrying");
                    }
                    act.pid = ProducerIdState::Unknown;
                    let at = Instant::now() + act.backoff(1);
                    act.schedule_wake(at, ctx);
                }
            }
            act.drain(ctx);
        }));
    }

    /// Fails every batch waiting in the sender (not those in flight) with `err`.
    fn fail_queued(&mut self, err: ProduceError) {
        for q in self.partitions.values_mut() {
            for b in q.queue.drain(..) {
                b.fail(err.clone());
            }
        }
    }

    /// Fails queued batches older than `delivery.timeout.ms`; returns the earliest deadline left.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let timeout = self.config.delivery_timeout;
        let mut earliest: Option<Instant> = None;
        let mut sequenced: Option<(u64, i32, TopicPartition)> = None;
        for (tp, q) in self.partitions.iter_mut() {
            let mut kept = VecDeque::with_capacity(q.queue.len());
            for b in q.queue.drain(..) {
                let deadline = b.created + timeout;
                if deadline <= now {
                    let err = ProduceError::DeliveryTimeout {
                        topic_partition: tp.clone(),
                        timeout_ms: timeout.as_millis() as u64,
                        possibly_written: b.maybe_written,
                    };
                    if let Some(last) = &b.last_error {
                        tracing::debug!(%tp, last_error = %last, "batch expired");
                    }
                    if b.base_sequence >= 0 {
                        sequenced.get_or_insert((b.pid_generation, b.base_sequence, tp.clone()));
                    }
                    b.fail(err);
                } else {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                    kept.push_back(b);
                }
            }
            q.queue = kept;
        }
        for slots in self.in_flight_requests.values_mut() {
            for (tp, slot) in slots.iter_mut() {
                let Some(b) = slot else { continue };
                let deadline = b.created + timeout;
                if deadline <= now {
                    if let Some(b) = slot.take() {
                        tracing::debug!(%tp, "in-flight batch expired (delivery.timeout.ms)");
                        if b.base_sequence >= 0 {
                            sequenced.get_or_insert((
                                b.pid_generation,
                                b.base_sequence,
                                tp.clone(),
                            ));
                        }
                        b.fail(ProduceError::DeliveryTimeout {
                            topic_partition: tp.clone(),
                            timeout_ms: timeout.as_millis() as u64,
                            // It was sent: the broker may have written it.
                            possibly_written: true,
                        });
                    }
                } else {
                    earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
                }
            }
        }
        if let Some((generation, seq, tp)) = sequenced {
            self.sequenced_batch_failed(generation, seq, &tp);
        }
        earliest
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = &self.txn {
            let err = match t.sm.state() {
                // Retried batches of an aborting transaction are not sent again.
                crate::transaction::TxnState::Aborting => Some(ProduceError::Transaction(
                    crate::transaction::TransactionError::Aborted,
                )),
                // Batches that wait can never be sent in this transaction: fail them now
                // (Java's abortUndrainedBatches), with the transaction's error.
                crate::transaction::TxnState::FatalError
                | crate::transaction::TxnState::AbortableError => Some(ProduceError::Transaction(
                    t.sm.refuse(crate::transaction::TxnOp::Commit),
                )),
                _ => None,
            };
            if let Some(err) = err {
                self.fail_queued(err);
            }
        }
        if let Some(err) = self.aborted.clone() {
            self.fail_queued(err);
            return;
        }
        let now = Instant::now();
        let mut wake_at = self.expire(now);
        let producer = match &self.pid {
            ProducerIdState::Disabled => None,
            ProducerIdState::Ready { id, epoch } => Some((*id, *epoch)),
            ProducerIdState::Unknown => {
                // A transactional producer gets its id from init_transactions only.
                if self.txn.is_none() && self.partitions.values().any(|q| !q.queue.is_empty()) {
                    self.init_producer_id(ctx);
                }
                if let Some(at) = wake_at {
                    self.schedule_wake(at, ctx);
                }
                return;
            }
            ProducerIdState::Initializing => {
                if let Some(at) = wake_at {
                    self.schedule_wake(at, ctx);
                }
                return;
            }
            ProducerIdState::Failed(err) => {
                let err = err.clone();
                self.fail_queued(err);
                return;
            }
        };
        if self.txn.as_ref().is_some_and(|t| t.ending()) {
            // EndTxn is out: nothing more of this transaction may be sent.
            if let Some(at) = wake_at {
                self.schedule_wake(at, ctx);
            }
            return;
        }
        let max_in_flight = self.config.max_in_flight_requests_per_connection.max(1);
        let generation = producer.map(|_| self.pid_generation);
        // Eligible partitions grouped by leader.
        let mut by_broker: HashMap<i32, (Arc<str>, Vec<TopicPartition>)> = HashMap::new();
        let mut missing_leader = false;
        for (tp, q) in &self.partitions {
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
            // In a transaction, only partitions the coordinator has added (others are queued
            // for AddPartitionsToTxn).
            if !Self::txn_partition_ready(&mut self.txn, tp) {
                continue;
            }
            match self.cluster.leader(&tp.topic, tp.partition) {
                Some(b) => by_broker
                    .entry(b.node_id)
                    .or_insert_with(|| (b.address.clone(), Vec::new()))
                    .1
                    .push(tp.clone()),
                None => missing_leader = true,
            }
        }
        if missing_leader {
            self.request_metadata();
        }
        self.txn_add_partitions(ctx);
        for (node, (address, tps)) in by_broker {
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
                let batches = self.take_request(&tps, producer, max_in_flight);
                if batches.is_empty() {
                    break;
                }
                self.send_request(node, address.clone(), batches, ctx);
            }
        }
        if let Some(at) = wake_at {
            self.schedule_wake(at, ctx);
        }
    }

    /// Takes at most one batch per partition, within `max.request.size`.
    fn take_request(
        &mut self,
        tps: &[TopicPartition],
        producer: Option<(i64, i16)>,
        max_in_flight: usize,
    ) -> Vec<ProducerBatch> {
        let now = Instant::now();
        let generation = producer.map(|_| self.pid_generation);
        let limit = self.config.max_request_size;
        let mut size = 0usize;
        let mut out = Vec::new();
        for tp in tps {
            let Some(q) = self.partitions.get_mut(tp) else {
                continue;
            };
            let Some(head) = q.ready_head(now, max_in_flight, generation) else {
                continue;
            };
            if !out.is_empty() && size + head.size_in_bytes() > limit {
                continue;
            }
            let Some(mut batch) = q.queue.pop_front() else {
                continue;
            };
            if let Some((id, epoch)) = producer {
                if batch.base_sequence < 0 || batch.pid_generation != self.pid_generation {
                    let seq = q.next_sequence;
                    let n = batch.record_count() as i32;
                    // Sequences wrap to 0 after i32::MAX (KIP-98).
                    q.next_sequence = if seq > i32::MAX - n {
                        n - (i32::MAX - seq) - 1
                    } else {
                        seq + n
                    };
                    batch.set_producer_state(id, epoch, seq);
                    batch.pid_generation = self.pid_generation;
                }
            }
            let metrics = &self.shared.metrics;
            if batch.attempts > 0 {
                self.stats.batches_retried += 1;
                self.stats.records_retried += batch.record_count() as u64;
                metrics.records_retried.fetch_add(
                    batch.record_count() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            } else {
                metrics.batch_size.record(batch.size_in_bytes() as u64);
                metrics
                    .record_queue_time_ms
                    .record(batch.created.elapsed().as_millis() as u64);
            }
            batch.attempts += 1;
            q.in_flight += 1;
            size += batch.size_in_bytes();
            out.push(batch);
        }
        out
    }

    fn send_request(
        &mut self,
        node: i32,
        address: Arc<str>,
        batches: Vec<ProducerBatch>,
        ctx: &mut Context<Self>,
    ) {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for b in &batches {
            let data = PartitionProduceData::default()
                .with_index(b.tp.partition)
                .with_records(Some(b.records.clone()));
            match topics.iter_mut().find(|t| *t.name.0 == *b.tp.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(b.tp.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let acks = self.config.acks;
        let transactional_id = self.txn.as_ref().map(|t| {
            kafka_protocol::messages::TransactionalId(StrBytes::from_string(t.id().to_string()))
        });
        let request = ProduceRequest::default()
            .with_transactional_id(transactional_id)
            .with_acks(acks.as_i16())
            .with_timeout_ms(
                self.config
                    .request_timeout
                    .as_millis()
                    .min(i32::MAX as u128) as i32,
            )
            .with_topic_data(topics);
        let conn = self.pool.get(node, &address);
        *self.broker_in_flight.entry(node).or_insert(0) += 1;
        self.stats.requests_sent += 1;
        let bytes: usize = batches.iter().map(|b| b.size_in_bytes()).sum();
        let records: usize = batches.iter().map(|b| b.record_count()).sum();
        let metrics = &self.shared.metrics;
        metrics.records_per_request.record(records as u64);
        metrics
            .outgoing_bytes
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        metrics
            .requests_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = self.config.request_timeout;
        let span = tracing::debug_span!(
            "produce",
            broker = node,
            partitions = batches.len(),
            records,
            bytes
        );
        let sent = Instant::now();
        let request_id = self.next_request;
        self.next_request += 1;
        self.in_flight_requests.insert(
            request_id,
            batches
                .into_iter()
                .map(|b| (b.tp.clone(), Some(b)))
                .collect(),
        );
        let fut = tracing::Instrument::instrument(
            async move { call(&conn, address, request, acks != Acks::None, timeout).await },
            span,
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let m = &act.shared.metrics;
            m.request_latency_ms
                .record(sent.elapsed().as_millis() as u64);
            m.requests_in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(Some(r)) = &res {
                m.throttle_time_ms.record(r.throttle_time_ms.max(0) as u64);
            }
            let batches = act
                .in_flight_requests
                .remove(&request_id)
                .unwrap_or_default();
            act.on_response(node, batches, res, ctx)
        }));
    }

    fn on_response(
        &mut self,
        node: i32,
        slots: Vec<(TopicPartition, Option<ProducerBatch>)>,
        res: Result<Option<ProduceResponse>, ConnectionError>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(n) = self.broker_in_flight.get_mut(&node) {
            *n = n.saturating_sub(1);
        }
        for (tp, _) in &slots {
            if let Some(q) = self.partitions.get_mut(tp) {
                q.in_flight = q.in_flight.saturating_sub(1);
            }
        }
        // Batches that expired while in flight already have their outcome.
        let batches: Vec<ProducerBatch> = slots.into_iter().filter_map(|(_, b)| b).collect();
        match res {
            Err(e) => {
                tracing::debug!(broker = node, error = %e, "produce request failed");
                self.request_metadata();
                let retriable = e.is_retriable();
                // A request that never reached a socket cannot have been written.
                let maybe_written = !matches!(
                    e,
                    ConnectionError::Connect { .. }
                        | ConnectionError::UnsupportedVersion { .. }
                        | ConnectionError::Authentication { .. }
                        | ConnectionError::Tls { .. }
                );
                for mut b in batches {
                    b.maybe_written |= maybe_written;
                    self.retry_or_fail(b, ProduceError::Connection(e.clone()), retriable);
                }
            }
            Ok(None) => {
                for b in batches {
                    b.complete(-1, -1);
                }
            }
            Ok(Some(resp)) => {
                if resp.throttle_time_ms > 0 {
                    // KIP-219: the broker answered at once and asks us not to send to it for
                    // this long (it would mute the connection otherwise). Capped at 5 minutes.
                    let ms = (resp.throttle_time_ms as u64).min(300_000);
                    tracing::debug!(broker = node, throttle_ms = ms, "throttled by the broker");
                    self.throttled_until
                        .insert(node, Instant::now() + Duration::from_millis(ms));
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
                    outcomes.push((
                        b,
                        p.map(|p| {
                            (
                                KafkaCode(p.error_code),
                                p.base_offset,
                                p.log_append_time_ms,
                                p.error_message
                                    .as_ref()
                                    .map(|m| Arc::<str>::from(m.as_str())),
                            )
                        }),
                    ));
                }
                drop(by_tp);
                for (mut b, outcome) in outcomes {
                    if let Some((code, base_offset, _, _)) = &outcome {
                        // REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND: appended, maybe.
                        b.maybe_written |= matches!(code.0, 7 | 20);
                        tracing::trace!(tp = %b.tp, seq = b.base_sequence, records = b.record_count(), code = code.0, base_offset, "partition response");
                    }
                    match outcome {
                        None => {
                            // The response does not answer for this partition: a protocol
                            // error of the broker. Retry (bounded by delivery.timeout.ms) after
                            // a metadata refresh, as for a leader change.
                            tracing::warn!(broker = node, tp = %b.tp, "Produce response without an answer for a partition sent");
                            b.maybe_written = true;
                            refresh = true;
                            let err = ProduceError::Connection(ConnectionError::Malformed {
                                broker: format!("node {node}").into(),
                                reason: format!("no response for {}", b.tp).into(),
                            });
                            self.retry_or_fail(b, err, true);
                        }
                        // Success with an invalid offset: we cannot tell the user where the
                        // records are. Retry like a malformed answer (idempotence turns the
                        // resend into DUPLICATE_SEQUENCE_NUMBER with the real offset).
                        Some((KafkaCode(0), base_offset, _, _)) if base_offset < 0 => {
                            tracing::warn!(broker = node, tp = %b.tp, base_offset, "Produce response: error 0 with a negative base_offset");
                            b.maybe_written = true;
                            refresh = true;
                            let err = ProduceError::Connection(ConnectionError::Malformed {
                                broker: format!("node {node}").into(),
                                reason: format!(
                                    "base_offset {base_offset} with error 0 for {}",
                                    b.tp
                                )
                                .into(),
                            });
                            self.retry_or_fail(b, err, true);
                        }
                        Some((code, base_offset, append_time, message)) => match code.0 {
                            0 => {
                                self.confirm_sequence(&b);
                                b.complete(base_offset, append_time)
                            }
                            // DUPLICATE_SEQUENCE_NUMBER: already written (idempotence).
                            46 => {
                                self.confirm_sequence(&b);
                                tracing::debug!(tp = %b.tp, seq = b.base_sequence, base_offset, "DUPLICATE_SEQUENCE_NUMBER: already written");
                                b.complete(base_offset, append_time)
                            }
                            // MESSAGE_TOO_LARGE: split and resend, as Java (not
                            // RECORD_LIST_TOO_LARGE: the request, not the batch, was too large).
                            10 if b.record_count() > 1 => {
                                if let Err(b) = self.split(b) {
                                    self.sequenced_batch_failed(
                                        b.pid_generation,
                                        b.base_sequence,
                                        &b.tp,
                                    );
                                    let err = ProduceError::Broker {
                                        topic_partition: b.tp.clone(),
                                        code,
                                        message,
                                    };
                                    b.fail(err);
                                }
                            }
                            _ => {
                                if matches!(code.0, 47 | 90) {
                                    self.shared.health.emit(
                                        crate::health::HealthEvent::ProducerFenced {
                                            producer_id: b.producer_id,
                                            epoch: b.producer_epoch,
                                        },
                                    );
                                }
                                refresh |= code.needs_metadata_refresh();
                                if code.0 == 31 && self.config.enable_idempotence {
                                    // CLUSTER_AUTHORIZATION_FAILED: fatal for an idempotent
                                    // producer, as Java (its producer id is not authorized).
                                    let fatal = ProduceError::Fatal(
                                        format!("{code} on a produce request").into(),
                                    );
                                    tracing::error!(error = %fatal, "idempotent producer stops");
                                    self.pid = ProducerIdState::Failed(fatal);
                                }
                                let err = ProduceError::Broker {
                                    topic_partition: b.tp.clone(),
                                    code,
                                    message,
                                };
                                let mut retriable =
                                    code.is_retriable() || (code.0 == 45 && self.has_earlier(&b));
                                // (In a transaction these make it abortable instead; the abort
                                // bumps the epoch.)
                                if !retriable
                                    && matches!(code.0, 45 | 59)
                                    && self.config.retries > 0
                                    && self.txn.is_none()
                                {
                                    // UNKNOWN_PRODUCER_ID, or a sequence gap nothing pending explains
                                    // (e.g. the broker lost its state): KIP-360 — get a new producer
                                    // id/epoch, restart sequences at 0, resend the batch.
                                    if let Some(q) = self.partitions.get(&b.tp) {
                                        tracing::warn!(
                                            tp = %b.tp, %code, seq = b.base_sequence,
                                            records = b.record_count(), number = b.number,
                                            attempts = b.attempts, in_flight = q.in_flight,
                                            queued = ?q.queue.iter().map(|o| (o.number, o.base_sequence, o.attempts)).collect::<Vec<_>>(),
                                            "sequence error with nothing earlier pending"
                                        );
                                    }
                                    self.reset_producer_id(&b);
                                    retriable = true;
                                }
                                self.retry_or_fail(b, err, retriable);
                            }
                        },
                    }
                }
                if refresh {
                    self.request_metadata();
                }
            }
        }
        self.drain(ctx);
    }

    /// The broker acknowledged `b`: if it carried a sequence of the current producer id, the
    /// broker now has sequence state for its partition (see `confirmed_generation`).
    fn confirm_sequence(&mut self, b: &ProducerBatch) {
        if b.base_sequence >= 0 && b.pid_generation == self.pid_generation {
            if let Some(q) = self.partitions.get_mut(&b.tp) {
                q.confirmed_generation = self.pid_generation;
            }
        }
    }

    /// Forgets the producer id the batch was sent with (once per id/epoch): the next drain
    /// sends InitProducerId again (with the old id and epoch, so a KIP-360 broker bumps the
    /// epoch) and re-sequences every batch from 0.
    fn reset_producer_id(&mut self, b: &ProducerBatch) {
        self.reset_generation(b.pid_generation, &b.tp);
    }

    fn reset_generation(&mut self, generation: u64, tp: &TopicPartition) {
        if let ProducerIdState::Ready { id, epoch } = self.pid {
            if generation != self.pid_generation {
                return;
            }
            // InitProducerId with the current id and epoch (KIP-360): the drain pauses until the
            // answer, so batches in flight under the old epoch come back first. (A local epoch
            // bump, as Java's idempotent producer does, would skip the round trip but needs
            // per-partition tracking of in-flight batches of the old epoch; the librdkafka mock
            // scenario `sequence_errors_recover` reorders without it.)
            {
                tracing::warn!(producer_id = id, epoch, %tp, "producer id reset (KIP-360)");
                self.previous_pid = Some((id, epoch));
                self.pid = ProducerIdState::Unknown;
                self.stats.producer_id_resets += 1;
            }
        }
    }

    /// A batch that carried a sequence of the current producer id failed or expired: whether
    /// the broker wrote it is unknown, so the partition's next sequence cannot be trusted. Bump
    /// the epoch now (KIP-360, Java's `bumpIdempotentEpochAndResetIdIfNeeded`) instead of
    /// waiting for an OUT_OF_ORDER_SEQUENCE_NUMBER on a later batch. Not in a transaction (its
    /// abort bumps the epoch).
    fn sequenced_batch_failed(&mut self, generation: u64, base_sequence: i32, tp: &TopicPartition) {
        if base_sequence >= 0 && self.txn.is_none() {
            self.reset_generation(generation, tp);
        }
    }

    /// True if a batch of the same partition with a lower sequence is still pending: an
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` for `b` is then the echo of that batch's retry.
    fn has_earlier(&self, b: &ProducerBatch) -> bool {
        self.partitions
            .get(&b.tp)
            .is_some_and(|q| q.in_flight > 0 || q.queue.iter().any(|o| o.number < b.number))
    }

    fn retry_or_fail(&mut self, mut b: ProducerBatch, err: ProduceError, retriable: bool) {
        let delivery_timeout = self.config.delivery_timeout;
        let backoff = self.backoff(b.attempts);
        let deadline = b.created + delivery_timeout;
        let now = Instant::now();
        let expired = now >= deadline;
        if !retriable || b.attempts > self.config.retries {
            self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
            b.fail(err);
            return;
        }
        if expired {
            self.sequenced_batch_failed(b.pid_generation, b.base_sequence, &b.tp);
            let tp = b.tp.clone();
            tracing::debug!(%tp, last_error = %err, "batch expired while retrying");
            let possibly_written = b.maybe_written;
            b.fail(ProduceError::DeliveryTimeout {
                topic_partition: tp,
                timeout_ms: delivery_timeout.as_millis() as u64,
                possibly_written,
            });
            return;
        }
        tracing::debug!(tp = %b.tp, attempt = b.attempts, error = %err, "retrying batch");
        // Not past the deadline: a backoff reaching beyond it ends there (the drain then expires
        // the batch on time rather than a backoff early).
        b.retry_at = Some((now + backoff).min(deadline));
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
            let mut builder = crate::protocol::record_batch::RecordBatchBuilder::with_levels(
                self.config.batch_size,
                self.config.compression,
                self.config.compression_levels(),
            );
            for r in part {
                builder.try_append(
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                    usize::MAX,
                );
            }
            match builder.build(-1, -1, -1) {
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
        tracing::info!(tp = %b.tp, records = mid * 2, "batch too large for the broker; split in two");
        self.shared
            .metrics
            .batches_split
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut halves = Vec::with_capacity(2);
        for (i, (records, thunks)) in [(first_records, thunks), (second_records, second_thunks)]
            .into_iter()
            .enumerate()
        {
            let mut half = ProducerBatch {
                tp: b.tp.clone(),
                records,
                thunks,
                created: b.created,
                attempts: b.attempts,
                retry_at: None,
                base_sequence: -1,
                producer_id: -1,
                producer_epoch: -1,
                pid_generation: 0,
                // Halves keep their place: number and number + 1/2 as a tie-break below.
                number: b.number,
                _slot: None,
                shared: b.shared.clone(),
                maybe_written: b.maybe_written,
                last_error: b.last_error.clone(),
            };
            if b.base_sequence >= 0 {
                let seq = b.base_sequence + if i == 0 { 0 } else { mid as i32 };
                half.set_producer_state(b.producer_id, b.producer_epoch, seq);
                half.pid_generation = b.pid_generation;
            }
            halves.push(half);
        }
        halves[0]._slot = slot;
        for half in halves.into_iter().rev() {
            self.requeue(half);
        }
        Ok(())
    }

    /// Puts a batch back in its partition queue, in the order the batches were closed in (Java's
    /// `reenqueue` puts it at the front; older batches of the partition are never behind it).
    fn requeue(&mut self, b: ProducerBatch) {
        let q = self.partitions.entry(b.tp.clone()).or_default();
        // Back in the order the batches were closed in (before any equal number: the halves of a
        // split are queued second half first).
        let pos = q
            .queue
            .iter()
            .position(|o| o.number >= b.number)
            .unwrap_or(q.queue.len());
        q.queue.insert(pos, b);
    }
}

impl Actor for Sender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        self.metadata.do_send(crate::actors::metadata::Subscribe(
            ctx.address().recipient(),
        ));
        // Expiry of queued batches does not depend on other events.
        ctx.run_interval(Duration::from_millis(100), |act, ctx| {
            if !act.in_flight_requests.is_empty()
                || act.partitions.values().any(|q| !q.queue.is_empty())
            {
                act.drain(ctx);
            }
        });
    }
}

impl Handler<BatchReady> for Sender {
    type Result = ();
    fn handle(&mut self, msg: BatchReady, ctx: &mut Context<Self>) {
        let batch = msg.0;
        if let Some(err) = &self.aborted {
            batch.fail(err.clone());
            return;
        }
        if let Some(t) = &self.txn {
            use crate::transaction::{TransactionError, TxnState};
            match t.sm.state() {
                TxnState::InTransaction | TxnState::Committing if !t.ending() => {}
                TxnState::Aborting => {
                    return batch.fail(ProduceError::Transaction(TransactionError::Aborted));
                }
                state => {
                    // Sent outside a transaction (a send racing its commit or abort).
                    return batch.fail(ProduceError::Transaction(TransactionError::InvalidState {
                        operation: "send",
                        state,
                    }));
                }
            }
        }
        self.partitions
            .entry(batch.tp.clone())
            .or_default()
            .queue
            .push_back(batch);
        self.drain(ctx);
    }
}

impl Handler<MetadataUpdated> for Sender {
    type Result = ();
    fn handle(&mut self, _: MetadataUpdated, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl Handler<AbortAll> for Sender {
    type Result = ();
    fn handle(&mut self, msg: AbortAll, ctx: &mut Context<Self>) {
        self.aborted = Some(msg.0);
        self.drain(ctx);
    }
}

impl Handler<GetSenderStats> for Sender {
    type Result = MessageResult<GetSenderStats>;
    fn handle(&mut self, _: GetSenderStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.queued_batches = self.partitions.values().map(|q| q.queue.len()).sum();
        s.requests_in_flight = self.broker_in_flight.values().sum();
        MessageResult(s)
    }
}
