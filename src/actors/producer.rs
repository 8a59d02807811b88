//! The producer front end: [`Producer`], a cloneable handle usable from any tokio or actix code,
//! and [`KafkaProducer`], the actor users send [`SendRecord`] messages to.
//!
//! `send` follows the Java `KafkaProducer.send` path: wait for the topic's metadata (at most
//! `max.block.ms`), choose the partition (explicit, else the [`Partitioner`]), check the size
//! against `max.request.size`, then take a slot in the partition accumulator's mailbox (waiting
//! at most what is left of `max.block.ms`) and enqueue the record. It returns once the record
//! is enqueued, with a [`DeliveryFuture`] for its [`RecordMetadata`](crate::record::RecordMetadata).

use crate::actors::accumulator::{
    AbortAccumulator, AppendRecord, Drain, FlushBatch, PartitionAccumulator,
};
use crate::actors::connection::{ConnectionPool, ConnectionSettings};
use crate::actors::metadata::{MetadataManager, WaitForTopic};
use crate::actors::sender::{
    AbortAll, GetSenderStats, Receipt, Reply, Sender, SenderStats, Transactional, TxnRequest,
};
use crate::batch::{Callback, Delivery, DeliveryFuture, DeliveryResult, IndexedCallback, Shared};
use crate::cluster::{Cluster, TopicInfo};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::interceptor::{Interceptors, ProducerInterceptor};
use crate::mailbox::{Pushed, RecordMailbox};
use crate::metrics::MetricsSnapshot;
use crate::partitioner::{DefaultPartitioner, Partitioner};
use crate::protocol::record_batch::{record_size_upper_bound, RECORD_BATCH_OVERHEAD};
use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};
use crate::transaction::{ConsumerGroupMetadata, TransactionError};
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Whether the enqueue path may wait (franz-go's `produce(ctx, r, promise, block)`): for
/// metadata, for a partition the metadata does not have yet, for mailbox room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// Up to `max.block.ms` (`send`, `send_with_callback`, `send_returning`).
    Wait,
    /// Not at all: what would wait fails at once (`try_send`).
    Never,
}

/// What [`Producer::send_now`] did.
enum Now {
    /// Enqueued, or failed for good.
    Done(Result<(), SendError>),
    /// It would have to wait: the slow path takes it from here (with its route if it has
    /// one).
    Wait(ProducerRecord, Delivery, Option<Routed>),
}

/// A record's partition and that partition's accumulator.
struct Routed {
    tp: TopicPartition,
    slot: Arc<AccumulatorSlot>,
}

/// Records of one `send_all` call for one partition: (partition, its accumulator,
/// [(index in the call, record)]).
type PartitionChunk = (
    TopicPartition,
    Arc<AccumulatorSlot>,
    Vec<(usize, AppendRecord)>,
);

/// The accumulator directory: the partition accumulators started, by partition. An idle
/// accumulator removes its own entry when it retires (it holds a `Weak` of this map).
pub(crate) type Directory = crate::FastMap<TopicPartition, Arc<AccumulatorSlot>>;

pub(crate) struct AccumulatorSlot {
    addr: Addr<PartitionAccumulator>,
    /// The accumulator's records mailbox, `mailbox.capacity` records (see [`RecordMailbox`]).
    pub(crate) mailbox: Arc<RecordMailbox>,
}

struct Inner {
    config: Arc<ProducerConfig>,
    cluster: Arc<Cluster>,
    metadata: Addr<MetadataManager>,
    sender: Addr<Sender>,
    partitioner: Arc<dyn Partitioner>,
    accumulators: Arc<Directory>,
    /// When `try_send` last asked the metadata manager for a topic it found no metadata for.
    fetch_asked: crate::FastMap<Arc<str>, Instant>,
    accumulator_arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Every arbiter the producer started; the last hosts its [`KafkaProducer`] actors (see
    /// `close_from`).
    arbiters: Mutex<Vec<Arbiter>>,
    shared: Arc<Shared>,
    closed: AtomicBool,
    /// The actix system thread started for a producer created outside actix (plain tokio).
    own_system: Mutex<Option<(System, std::thread::JoinHandle<()>)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(arbiters) = self.arbiters.get_mut() {
            for a in arbiters.drain(..) {
                a.stop();
            }
        }
        if let Ok(own) = self.own_system.get_mut() {
            if let Some((system, _thread)) = own.take() {
                system.stop();
            }
        }
    }
}

/// A cloneable handle to a running producer. Cheap to clone; all clones share the actors.
///
/// Dropping the last clone stops the producer's arbiters; call [`Producer::close`] first to
/// deliver what is pending.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

use crate::record::now_ms;

impl Producer {
    /// Starts the producer's actors with the default partitioner.
    ///
    /// Inside an actix `System` the actors run on new arbiters of that system; from plain tokio
    /// (or any thread) a background actix system thread is started for them.
    ///
    /// # Errors
    /// [`ProduceError::Config`] for a configuration without bootstrap servers.
    pub async fn start(config: ProducerConfig) -> Result<Producer, ProduceError> {
        Self::builder(config).start().await
    }

    /// A builder for a producer with a custom [`Partitioner`] and/or interceptors.
    pub fn builder(config: ProducerConfig) -> ProducerBuilder {
        ProducerBuilder {
            config,
            partitioner: None,
            interceptors: Vec::new(),
        }
    }

    /// Starts the producer with a custom [`Partitioner`].
    ///
    /// # Errors
    /// As [`Producer::start`].
    pub async fn start_with_partitioner(
        config: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Producer, ProduceError> {
        Self::builder(config).partitioner(partitioner).start().await
    }

    async fn start_parts(
        config: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
        interceptors: Interceptors,
    ) -> Result<Producer, ProduceError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ProduceError::Config(crate::config::ConfigError::Missing {
                key: "bootstrap.servers".into(),
            }));
        }
        if System::try_current().is_some() {
            return Ok(Self::start_in_system(config, partitioner, interceptors));
        }
        // Plain tokio: run an actix system on a thread of its own (stopped and joined by
        // `close`, stopped when the last handle is dropped).
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("actix-kafka-system".into())
            .spawn(move || {
                let sys = System::new();
                let producer = sys.block_on(async move {
                    Self::start_in_system(config, partitioner, interceptors)
                });
                let _ = tx.send((producer, System::current()));
                sys.run().ok();
            })
            .map_err(|e| ProduceError::closed(format!("cannot start system thread: {e}")))?;
        let (producer, system) = rx
            .await
            .map_err(|_| ProduceError::closed("producer system thread failed to start"))?;
        if let Ok(mut own) = producer.inner.own_system.lock() {
            *own = Some((system, thread));
        }
        Ok(producer)
    }

    fn start_in_system(
        config: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
        interceptors: Interceptors,
    ) -> Producer {
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            interceptors,
            txn: crate::transaction::TxnShared::new(config.transactional_id.is_some()),
            ..Default::default()
        });
        shared
            .pending
            .set_limit(config.queue_buffering_max_messages as u64);
        let network = Arbiter::new();
        let accumulator_arbiter = Arbiter::new();
        let cluster = Arc::new(Cluster::default());
        let settings = ConnectionSettings {
            client_id: config.client_id.as_str().into(),
            connect_timeout: config.socket_connection_setup_timeout,
            reconnect_backoff: config.reconnect_backoff,
            reconnect_backoff_max: config.reconnect_backoff_max,
            request_timeout: config.request_timeout,
            max_idle: config.connections_max_idle,
            security: Arc::new(config.security.clone()),
            tls: config.tls_client_config.clone(),
            shared: shared.clone(),
        };
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .map(|s| Arc::<str>::from(s.as_str()))
            .collect();
        let pool = Arc::new(ConnectionPool::new(settings, network.handle(), bootstrap));
        let metadata = {
            let (config, cluster, pool) = (config.clone(), cluster.clone(), pool.clone());
            let forget = {
                let partitioner = partitioner.clone();
                Arc::new(move |topic: &str| partitioner.forget_topic(topic))
            };
            MetadataManager::start_in_arbiter(&network.handle(), move |_| {
                MetadataManager::new(config, cluster, pool).on_forget(forget)
            })
        };
        let sender = {
            let (config, cluster, pool, metadata, shared) = (
                config.clone(),
                cluster.clone(),
                pool.clone(),
                metadata.clone(),
                shared.clone(),
            );
            Sender::start_in_arbiter(&network.handle(), move |_| {
                Sender::new(config, cluster, pool, metadata, shared)
            })
        };
        let accumulator_arbiters = vec![accumulator_arbiter.handle()];
        Producer {
            inner: Arc::new(Inner {
                config,
                cluster,
                metadata,
                sender,
                partitioner,
                accumulators: Arc::new(Directory::default()),
                fetch_asked: crate::FastMap::default(),
                accumulator_arbiters,
                next_arbiter: AtomicUsize::new(0),
                // Last: the arbiter `actor()` starts KafkaProducer actors on.
                arbiters: Mutex::new(vec![network, accumulator_arbiter]),
                shared,
                closed: AtomicBool::new(false),
                own_system: Mutex::new(None),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Starts a [`KafkaProducer`] actor on this handle, for code that prefers an `Addr`. It runs
    /// on one of the producer's own arbiters, so this works from actix and from plain tokio
    /// (`#[tokio::main]`) alike.
    pub fn actor(&self) -> Addr<KafkaProducer> {
        let producer = self.clone();
        KafkaProducer::start_in_arbiter(&self.inner.accumulator_arbiters[0], move |_| {
            KafkaProducer { producer }
        })
    }

    /// Subscribes `recipient` to [`crate::HealthEvent`]s: brokers down (once per episode), back,
    /// up, and metadata changes. Events are sent without waiting; a subscriber whose mailbox is
    /// full misses them.
    pub fn subscribe_health(&self, recipient: Recipient<crate::HealthEvent>) {
        self.inner.shared.health.subscribe(recipient);
    }

    /// Sends a record and waits for its delivery: Java's `send(record).get()`, rdkafka's
    /// `FutureProducer::send`. Waits at most `max.block.ms` to enqueue, then at most
    /// `delivery.timeout.ms` for the broker.
    ///
    /// # Errors
    /// The errors of [`Producer::send`], then those of the delivery ([`ProduceError::DeliveryTimeout`],
    /// [`ProduceError::Broker`], ...).
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
    }

    /// The partition's accumulator, started if there is none or the one there retired (idle
    /// for `metadata.max.idle.ms`, see [`RecordMailbox::retire_if_unused`]).
    fn accumulator(&self, tp: &TopicPartition) -> Arc<AccumulatorSlot> {
        if let Some(slot) = self.inner.accumulators.get(tp) {
            if !slot.mailbox.retired() {
                return slot.clone();
            }
        }
        loop {
            // A retired one is gone (it removes itself; this covers the instant between).
            self.inner
                .accumulators
                .remove_if(tp, |_, s| s.mailbox.retired());
            let slot = self.start_accumulator(tp);
            if !slot.mailbox.retired() {
                return slot;
            }
        }
    }

    fn start_accumulator(&self, tp: &TopicPartition) -> Arc<AccumulatorSlot> {
        let inner = &self.inner;
        let directory = Arc::downgrade(&inner.accumulators);
        inner
            .accumulators
            .entry(tp.clone())
            .or_insert_with(|| {
                let i = inner.next_arbiter.fetch_add(1, Ordering::Relaxed);
                let arbiter = &inner.accumulator_arbiters[i % inner.accumulator_arbiters.len()];
                let (tp, config, sender, shared) = (
                    tp.clone(),
                    inner.config.clone(),
                    inner.sender.clone(),
                    inner.shared.clone(),
                );
                let mailbox = Arc::new(RecordMailbox::new(inner.config.mailbox_capacity));
                let queue = mailbox.clone();
                let addr = PartitionAccumulator::start_in_arbiter(arbiter, move |_| {
                    PartitionAccumulator::new(tp, config, sender, shared, queue, directory)
                });
                Arc::new(AccumulatorSlot { addr, mailbox })
            })
            .clone()
    }

    async fn topic(
        &self,
        topic: &Arc<str>,
        deadline: Instant,
    ) -> Result<Arc<TopicInfo>, ProduceError> {
        if let Some(t) = self.inner.cluster.topic(topic) {
            return Ok(t);
        }
        self.wait_topic(topic, 0, deadline).await
    }

    /// Asks the metadata manager for `topic` with at least `min_partitions` partitions.
    async fn wait_topic(
        &self,
        topic: &Arc<str>,
        min_partitions: i32,
        deadline: Instant,
    ) -> Result<Arc<TopicInfo>, ProduceError> {
        let wait = self.inner.metadata.send(WaitForTopic {
            topic: topic.clone(),
            min_partitions,
        });
        // The manager answers by max.block.ms itself; the outer timeout is a safety net.
        let slack = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match tokio::time::timeout(slack, wait).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(ProduceError::closed("metadata manager stopped")),
            Err(_) => Err(ProduceError::MetadataTimeout {
                topic: topic.clone(),
                waited_ms: self.inner.config.max_block.as_millis() as u64,
                reason: "metadata manager did not answer".into(),
            }),
        }
    }

    /// [`Self::route`]; an explicit partition at or above the cached partition count first
    /// waits (up to `max.block.ms` from `start`) for metadata that has it, as Java's
    /// `waitOnMetadata` (partitions may just have been added).
    async fn route_waiting(
        &self,
        record: &ProducerRecord,
        info: Arc<TopicInfo>,
        start: Instant,
    ) -> Result<TopicPartition, ProduceError> {
        match record.partition {
            Some(p) if p >= info.partition_count() => {
                let deadline = start + self.inner.config.max_block;
                let info = self
                    .wait_topic(&record.topic, p.saturating_add(1), deadline)
                    .await?;
                self.route(record, &info)
            }
            _ => self.route(record, &info),
        }
    }

    /// Partition and size checks: everything `send` does before taking a mailbox slot.
    fn route(
        &self,
        record: &ProducerRecord,
        info: &TopicInfo,
    ) -> Result<TopicPartition, ProduceError> {
        let n = info.partition_count();
        let partition = match record.partition {
            Some(p) if p >= 0 && p < n => p,
            Some(p) => {
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic.clone(),
                    partition: p,
                    partitions: n,
                })
            }
            None => {
                let value_len = record.value.as_ref().map_or(0, |v| v.len());
                let p = self.inner.partitioner.partition_with_metadata(
                    &record.topic,
                    record.key.as_deref(),
                    value_len,
                    info,
                );
                // A (custom) partitioner's answer outside 0..n is the same typed error as an
                // explicit partition out of range, never an index into the tables.
                if p < 0 || p >= n {
                    return Err(ProduceError::InvalidPartition {
                        topic: record.topic.clone(),
                        partition: p,
                        partitions: n,
                    });
                }
                p
            }
        };
        let size = record_size_upper_bound(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        ) + RECORD_BATCH_OVERHEAD;
        let limit = self.inner.config.max_request_size;
        if size > limit {
            return Err(ProduceError::RecordTooLarge { size, limit });
        }
        Ok(TopicPartition::new(record.topic.clone(), partition))
    }

    fn append_record(
        record: ProducerRecord,
        delivery: Delivery,
        enqueued: Instant,
        now_ms: impl FnOnce() -> i64,
        pending_slot: u8,
    ) -> AppendRecord {
        AppendRecord {
            pending_slot,
            enqueued,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
            delivery,
        }
    }

    /// Queues `n` records (their mailbox slots reserved, counted as pending in
    /// `pending_slot`) in an accumulator's mailbox and wakes it if it is not scheduled yet. A
    /// refused push (the accumulator stopped) gives the records back, slots and pending count
    /// released.
    fn enqueue(
        &self,
        tp: &TopicPartition,
        slot: &AccumulatorSlot,
        records: impl IntoIterator<Item = AppendRecord>,
        n: u64,
        pending_slot: u8,
    ) -> Result<(), Vec<AppendRecord>> {
        match slot.mailbox.push(records) {
            Ok(Pushed::Queued) => Ok(()),
            Ok(Pushed::Wake) => {
                match slot.addr.try_send(Drain) {
                    // actix's own capacity (16 until the actor's `started` lifts it) may say
                    // full: the mailbox above is the bound, deliver anyway.
                    Ok(()) => {}
                    Err(actix::dev::SendError::Full(_)) => slot.addr.do_send(Drain),
                    Err(actix::dev::SendError::Closed(_)) => {
                        // The actor is gone without closing its mailbox (its arbiter
                        // stopped): whatever is queued fails now, these records included.
                        tracing::warn!(%tp, "accumulator stopped");
                        let err = Self::stopped(tp);
                        let shared = &self.inner.shared;
                        for r in slot.mailbox.close() {
                            shared.fail_one(r.delivery, r.pending_slot, err.clone());
                        }
                    }
                }
                Ok(())
            }
            Err(back) => {
                tracing::warn!(%tp, "accumulator stopped");
                self.inner.shared.pending.done(pending_slot, n);
                Err(back)
            }
        }
    }

    /// Interceptors' `on_send`, once per record, before anything else (Java's
    /// `KafkaProducer.send`).
    fn intercepted(&self, record: ProducerRecord) -> ProducerRecord {
        let interceptors = &self.inner.shared.interceptors;
        if interceptors.is_empty() {
            record
        } else {
            interceptors.on_send(record)
        }
    }

    /// Interceptors see the errors raised before enqueueing too (Java's `onSendError`).
    fn refused_before_enqueue(&self, error: &ProduceError) {
        let interceptors = &self.inner.shared.interceptors;
        if !interceptors.is_empty() {
            interceptors.on_acknowledgement(&Err(error.clone()));
        }
    }

    /// The one enqueue path of single records: interceptors, admission, metadata, routing,
    /// back-pressure, as `block` allows. An error before the record is enqueued gives it back
    /// (the record `on_send` returned).
    /// `delivery` is built only once the record is taken or handed to the waiting path (a
    /// `try_send` that fails takes no completion slot).
    fn produce_now(
        &self,
        record: ProducerRecord,
        delivery: impl FnOnce() -> Delivery,
        block: Block,
    ) -> Now {
        let record = self.intercepted(record);
        let now = self.send_now(record, delivery, block);
        if let Now::Done(Err(e)) = &now {
            self.refused_before_enqueue(&e.error);
        }
        now
    }

    /// [`Self::produce_now`], then what it could not do without waiting (`Block::Wait`).
    #[allow(clippy::result_large_err)]
    async fn produce(&self, record: ProducerRecord, delivery: Delivery) -> Result<(), SendError> {
        match self.produce_now(record, || delivery, Block::Wait) {
            Now::Done(res) => res,
            Now::Wait(record, delivery, routed) => {
                let res = self.send_waiting(record, delivery, routed).await;
                if let Err(e) = &res {
                    self.refused_before_enqueue(&e.error);
                }
                res
            }
        }
    }

    /// Waits for at least one of `n` mailbox slots until `deadline`; returns how many it took.
    /// Waits (until `deadline`) until `n` more records fit under
    /// `queue.buffering.max.messages`.
    async fn wait_room(
        &self,
        n: u64,
        tp: &TopicPartition,
        start: Instant,
        deadline: Instant,
    ) -> Result<(), ProduceError> {
        let pending = &self.inner.shared.pending;
        if pending.has_room(n) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, pending.wait_room(n))
            .await
            .map_err(|_| ProduceError::QueueFull {
                topic_partition: tp.clone(),
                waited_ms: start.elapsed().as_millis() as u64,
            })
    }

    /// Waits (until `deadline`) for at least one of `n` slots of `tp`'s mailbox and takes as
    /// many as are free; if the accumulator in `slot` retires meanwhile, `slot` becomes the
    /// partition's new one.
    async fn wait_some_slots(
        &self,
        slot: &mut Arc<AccumulatorSlot>,
        n: usize,
        tp: &TopicPartition,
        start: Instant,
        deadline: Instant,
    ) -> Result<usize, ProduceError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, slot.mailbox.reserve_up_to(n))
                .await
                .map_err(|_| ProduceError::QueueFull {
                    topic_partition: tp.clone(),
                    waited_ms: start.elapsed().as_millis() as u64,
                })?;
            if got > 0 || n == 0 || !slot.mailbox.retired() {
                return Ok(got);
            }
            *slot = self.accumulator(tp);
        }
    }

    /// The checks before anything else: the producer is open, the transaction state allows
    /// sends.
    fn admit(&self) -> Result<(), ProduceError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ProduceError::closed("send after close"));
        }
        self.inner.shared.txn.check_send()
    }

    /// Queues a routed record whose mailbox slot is reserved: counts it as pending, stamps it
    /// (one clock read) and pushes it.
    // The error gives the record back by value (as `send_returning` does): no boxing on the
    // hot path for a rare error.
    #[allow(clippy::result_large_err)]
    fn commit(
        &self,
        routed: &Routed,
        record: ProducerRecord,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let pending_slot = self.inner.shared.pending.add(1);
        let (enqueued, wall_ms) = crate::record::send_clock();
        let rec = Self::append_record(record, delivery, enqueued, || wall_ms, pending_slot);
        // Not accepted (the producer is shutting down): the record comes back.
        self.enqueue(
            &routed.tp,
            &routed.slot,
            std::iter::once(rec),
            1,
            pending_slot,
        )
        .map_err(|recs| Self::refused(&routed.tp, recs))
    }

    /// The send path without awaiting anything: metadata cached, the partition known and a
    /// free mailbox slot. With `Block::Wait`, anything that would wait (metadata, a partition
    /// not yet in the metadata, a full mailbox) gives the record and its delivery back for
    /// [`Self::send_waiting`], with its route once it has one (a record is partitioned once);
    /// with `Block::Never` it fails at once. Errors are final.
    fn send_now(
        &self,
        record: ProducerRecord,
        delivery: impl FnOnce() -> Delivery,
        block: Block,
    ) -> Now {
        let fail = |error, record| Now::Done(Err(SendError { error, record }));
        if let Err(error) = self.admit() {
            return fail(error, record);
        }
        let Some(info) = self.inner.cluster.topic(&record.topic) else {
            return match block {
                Block::Wait => Now::Wait(record, delivery(), None),
                Block::Never => fail(self.fetch_without_waiting(&record.topic), record),
            };
        };
        let tp = match self.route(&record, &info) {
            Ok(tp) => tp,
            Err(ProduceError::InvalidPartition { .. })
                if record.partition.is_some() && block == Block::Wait =>
            {
                return Now::Wait(record, delivery(), None)
            }
            Err(error) => return fail(error, record),
        };
        let mut routed = Routed {
            slot: self.accumulator(&tp),
            tp,
        };
        let room = self.inner.shared.pending.has_room(1);
        let mut reserved = room && routed.slot.mailbox.try_reserve(1);
        if !reserved && room && routed.slot.mailbox.retired() {
            // It retired between the lookup and the reservation: its successor.
            routed.slot = self.accumulator(&routed.tp);
            reserved = routed.slot.mailbox.try_reserve(1);
        }
        if reserved {
            return Now::Done(self.commit(&routed, record, delivery()));
        }
        match block {
            Block::Wait => Now::Wait(record, delivery(), Some(routed)),
            Block::Never => fail(
                ProduceError::QueueFull {
                    topic_partition: routed.tp,
                    waited_ms: 0,
                },
                record,
            ),
        }
    }

    /// `try_send` found no metadata for `topic`: starts fetching it so a later `try_send` can
    /// succeed (no waiter, no task: the core keeps one entry per topic; at most one message
    /// per topic per `retry.backoff.ms`, so the metadata manager's mailbox does not grow with
    /// calls) and returns the error.
    fn fetch_without_waiting(&self, topic: &Arc<str>) -> ProduceError {
        let now = Instant::now();
        let backoff = self.inner.config.retry_backoff;
        let asked = &self.inner.fetch_asked;
        let recent = asked
            .get(topic)
            .is_some_and(|t| now < crate::time::deadline_after(*t, backoff));
        if !recent {
            if asked.len() >= 1024 {
                asked.retain(|_, t| now < crate::time::deadline_after(*t, backoff));
            }
            asked.insert(topic.clone(), now);
            self.inner
                .metadata
                .do_send(crate::actors::metadata::FetchTopic(topic.clone()));
        }
        ProduceError::MetadataTimeout {
            topic: topic.clone(),
            waited_ms: 0,
            reason: "metadata not cached yet (try_send does not wait)".into(),
        }
    }

    /// The error of records an accumulator that stopped did not take.
    fn stopped(tp: &TopicPartition) -> ProduceError {
        ProduceError::closed(format!("accumulator for {tp} stopped"))
    }

    /// The error (and the record, rebuilt) of a push the accumulator refused.
    fn refused(tp: &TopicPartition, mut recs: Vec<AppendRecord>) -> SendError {
        let error = Self::stopped(tp);
        let Some(r) = recs.pop() else {
            return SendError {
                error,
                record: ProducerRecord::new(tp.topic.clone(), bytes::Bytes::new()),
            };
        };
        SendError {
            error,
            record: ProducerRecord {
                topic: tp.topic.clone(),
                partition: Some(tp.partition),
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp: Some(r.timestamp),
            },
        }
    }

    /// What [`Self::send_now`] could not do without waiting: metadata (and a partition count
    /// that has the record's partition), then a mailbox slot, all within `max.block.ms`.
    async fn send_waiting(
        &self,
        record: ProducerRecord,
        delivery: Delivery,
        routed: Option<Routed>,
    ) -> Result<(), SendError> {
        let back = |error: ProduceError, record: ProducerRecord| SendError { error, record };
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        let routed = match routed {
            Some(r) => r,
            None => {
                let info = match self.topic(&record.topic, deadline).await {
                    Ok(t) => t,
                    Err(e) => return Err(back(e, record)),
                };
                let tp = match self.route_waiting(&record, info, start).await {
                    Ok(tp) => tp,
                    Err(e) => return Err(back(e, record)),
                };
                let routed = Routed {
                    slot: self.accumulator(&tp),
                    tp,
                };
                if self.inner.shared.pending.has_room(1) && routed.slot.mailbox.try_reserve(1) {
                    return self.commit(&routed, record, delivery);
                }
                routed
            }
        };
        let mut routed = routed;
        if let Err(e) = self.wait_room(1, &routed.tp, start, deadline).await {
            return Err(back(e, record));
        }
        if let Err(e) = self
            .wait_some_slots(&mut routed.slot, 1, &routed.tp, start, deadline)
            .await
        {
            return Err(back(e, record));
        }
        self.commit(&routed, record, delivery)
    }

    /// Like [`Producer::send`], but an error before the record was enqueued gives the record
    /// back, so the caller can retry or park it without having cloned it (as rdkafka's
    /// `FutureProducer::send` does).
    ///
    /// # Errors
    /// [`SendError`]: the error of [`Producer::send`] and the record. With interceptors, the
    /// record given back is the one their `on_send` returned.
    pub async fn send_returning(
        &self,
        record: ProducerRecord,
    ) -> Result<DeliveryFuture, SendError> {
        let (tx, rx) = crate::completion::pair();
        self.produce(record, Delivery::Future(tx)).await?;
        Ok(rx)
    }

    /// Sends many records with one accumulator message per partition (and chunk of at most
    /// `mailbox.capacity` records) instead of one per record: the batch form of
    /// [`Producer::send`], for producers whose own loop is the bottleneck. Records of one
    /// partition keep their order. Returns one result per input record, in input order: its
    /// [`DeliveryFuture`], or why it was not accepted (as for [`Producer::send`]; `max.block.ms`
    /// counts from the call).
    pub async fn send_all(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
    ) -> Vec<Result<DeliveryFuture, ProduceError>> {
        let mut futures: Vec<Option<DeliveryFuture>> = Vec::new();
        let results = self
            .send_many(records, |i| {
                let (tx, rx) = crate::completion::pair();
                futures.resize_with(i + 1, || None);
                futures[i] = Some(rx);
                Delivery::Future(tx)
            })
            .await;
        futures.resize_with(results.len(), || None);
        results
            .into_iter()
            .zip(futures)
            .map(|(r, f)| {
                r.and_then(|()| {
                    f.ok_or_else(|| {
                        ProduceError::closed("accepted record without a delivery future")
                    })
                })
            })
            .collect()
    }

    /// Like [`Producer::send_all`], with one callback for all records, called with the record's
    /// index in `records` and its result (no allocation per record for the completion). The
    /// callback runs on actor threads: keep it short. Returns, per record, whether it was
    /// accepted; the callback is called for exactly the accepted ones.
    pub async fn send_all_with_callback(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
        callback: impl Fn(usize, DeliveryResult) + Send + Sync + 'static,
    ) -> Vec<Result<(), ProduceError>> {
        let callback: IndexedCallback = Arc::new(callback);
        self.send_many(records, |i| Delivery::Indexed(callback.clone(), i))
            .await
    }

    async fn send_many(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
        mut delivery: impl FnMut(usize) -> Delivery,
    ) -> Vec<Result<(), ProduceError>> {
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        let capacity = self.inner.config.mailbox_capacity.max(1);
        let mut results: Vec<Result<(), ProduceError>> = Vec::new();
        let mut groups: Vec<PartitionChunk> = Vec::new();
        let mut last_topic: Option<Arc<TopicInfo>> = None;
        let mut call_ms: Option<i64> = None;
        for (i, record) in records.into_iter().enumerate() {
            let record = self.intercepted(record);
            results.push(Ok(()));
            if let Err(e) = self.admit() {
                results[i] = Err(e);
                continue;
            }
            let info = match &last_topic {
                Some(t) if *t.name == *record.topic => t.clone(),
                _ => match self.topic(&record.topic, deadline).await {
                    Ok(t) => {
                        last_topic = Some(t.clone());
                        t
                    }
                    Err(e) => {
                        results[i] = Err(e);
                        continue;
                    }
                },
            };
            let tp = match self.route_waiting(&record, info, start).await {
                Ok(tp) => tp,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            // One CreateTime for the whole call: its records are sent at the same instant.
            let rec = Self::append_record(
                record,
                delivery(i),
                start,
                || *call_ms.get_or_insert_with(now_ms),
                0,
            );
            match groups.iter_mut().find(|g| g.0 == tp) {
                Some(g) => g.2.push((i, rec)),
                None => {
                    let slot = self.accumulator(&tp);
                    groups.push((tp, slot, vec![(i, rec)]));
                }
            }
        }
        for (tp, mut slot, mut recs) in groups {
            while !recs.is_empty() {
                // As many slots as are free (at least one, waiting up to max.block.ms): a
                // chunk never needs the whole mailbox empty at one instant, so steady single
                // sends cannot starve it.
                let want = recs.len().min(capacity);
                if let Err(e) = self.wait_room(want as u64, &tp, start, deadline).await {
                    for (i, rec) in recs.drain(..) {
                        drop(rec);
                        results[i] = Err(e.clone());
                    }
                    continue;
                }
                let got = match slot.mailbox.try_reserve_up_to(want) {
                    0 => {
                        self.wait_some_slots(&mut slot, want, &tp, start, deadline)
                            .await
                    }
                    got => Ok(got),
                };
                let n = match got {
                    Ok(n) => n,
                    Err(e) => {
                        // Not accepted: the deliveries are dropped unused (no callback runs).
                        for (i, rec) in recs.drain(..) {
                            drop(rec);
                            results[i] = Err(e.clone());
                        }
                        continue;
                    }
                };
                let rest = recs.split_off(n.min(recs.len()));
                let chunk = std::mem::replace(&mut recs, rest);
                let (indices, mut records): (Vec<usize>, Vec<AppendRecord>) =
                    chunk.into_iter().unzip();
                let pending_slot = self.inner.shared.pending.add(n as u64);
                for r in &mut records {
                    r.pending_slot = pending_slot;
                }
                if let Err(back) = self.enqueue(&tp, &slot, records, n as u64, pending_slot) {
                    let err = Self::stopped(&tp);
                    drop(back);
                    for i in indices {
                        results[i] = Err(err.clone());
                    }
                }
            }
        }
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            self.refused_before_enqueue(e);
        }
        results
    }

    /// Sends a record. Returns once it is enqueued in its partition's accumulator, with a
    /// future for its delivery result.
    ///
    /// # Errors
    /// Before enqueueing (the record was not accepted): [`ProduceError::UnknownTopic`],
    /// [`ProduceError::MetadataTimeout`], [`ProduceError::TopicError`],
    /// [`ProduceError::InvalidPartition`], [`ProduceError::RecordTooLarge`],
    /// [`ProduceError::QueueFull`] (mailbox full for `max.block.ms`), [`ProduceError::Closed`].
    /// The delivery future carries the errors after enqueueing (timeouts, broker errors).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let (tx, rx) = crate::completion::pair();
        self.produce(record, Delivery::Future(tx)).await?;
        Ok(rx)
    }

    /// Sends a record and calls `callback` with its result (Java's `send(record, callback)`).
    /// The callback runs on an actor thread: keep it short. A panicking callback is logged and
    /// ignored.
    ///
    /// # Errors
    /// As [`Producer::send`]; on such an error the callback is not called.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(crate::batch::DeliveryResult) + Send + 'static,
    ) -> Result<(), ProduceError> {
        let cb = crate::batch::inline_callback(callback);
        self.produce(record, Delivery::Callback(cb))
            .await
            .map_err(ProduceError::from)
    }

    /// Sends without waiting: fails at once if the topic's metadata is not cached yet or the
    /// partition's mailbox is full.
    ///
    /// # Errors
    /// [`ProduceError::QueueFull`] (`waited_ms` 0), [`ProduceError::MetadataTimeout`] (`waited_ms`
    /// 0: no metadata cached yet), and the routing errors of [`Producer::send`].
    pub fn try_send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let mut rx = None;
        let delivery = || {
            let (tx, future) = crate::completion::pair();
            rx = Some(future);
            Delivery::Future(tx)
        };
        match self.produce_now(record, delivery, Block::Never) {
            Now::Done(Ok(())) => {
                rx.ok_or_else(|| ProduceError::closed("accepted record without a delivery future"))
            }
            Now::Done(Err(e)) => Err(e.into()),
            // Block::Never never waits.
            Now::Wait(..) => Err(ProduceError::closed("try_send would wait")),
        }
    }

    /// Transactions (KIP-98): registers the `transactional.id` with its transaction coordinator
    /// and gets the producer id and epoch. Fences every older producer with the same id (their
    /// next send or commit fails with [`TransactionError::Fenced`]) and completes or aborts the
    /// transaction one of them left open. Call once, before the first transaction. Waits at
    /// most `max.block.ms`.
    ///
    /// # Errors
    /// [`TransactionError::NotTransactional`] without `transactional.id`;
    /// [`TransactionError::Timeout`] after `max.block.ms` (the call goes on: call it again);
    /// [`TransactionError::Fenced`] / [`TransactionError::Fatal`] (e.g.
    /// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, `INVALID_TRANSACTION_TIMEOUT`): close the producer.
    pub async fn init_transactions(&self) -> Result<(), TransactionError> {
        self.txn_call(TxnRequest::Init, "init_transactions", None)
            .await
    }

    /// Starts a transaction: records sent until `commit_transaction` / `abort_transaction` are
    /// part of it. Local: no broker call.
    ///
    /// # Errors
    /// [`TransactionError::InvalidState`] unless `init_transactions` succeeded and no
    /// transaction is open; the fatal error once the producer is fenced.
    pub async fn begin_transaction(&self) -> Result<(), TransactionError> {
        self.txn_call(TxnRequest::Begin, "begin_transaction", None)
            .await
    }

    /// Adds consumer offsets to the open transaction (consume-transform-produce, KIP-98 and
    /// KIP-447): `offsets` are the *next* offsets to read (last processed + 1) per partition of
    /// the input topics; they are committed for `group` if and only if the transaction commits.
    /// AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to the group
    /// coordinator. Waits at most `max.block.ms`.
    ///
    /// # Errors
    /// [`TransactionError::Abortable`] (group authorization, `UNKNOWN_MEMBER_ID`,
    /// `ILLEGAL_GENERATION`, `FENCED_INSTANCE_ID`: a rebalance fenced this consumer), and the
    /// errors of [`Producer::commit_transaction`].
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), TransactionError> {
        let req = TxnRequest::SendOffsets {
            offsets: offsets.into_iter().collect(),
            group: group.clone(),
        };
        self.txn_call(req, "send_offsets_to_transaction", None)
            .await
    }

    /// Commits the open transaction: flushes (every record sent in it gets its result), then
    /// EndTxn(commit). Waits at most `max.block.ms` in all.
    ///
    /// # Errors
    /// [`TransactionError::Abortable`] if a record of the transaction failed (call
    /// [`Producer::abort_transaction`]); [`TransactionError::Timeout`] (call it again: the
    /// commit goes on and a second call waits for it or returns its result);
    /// [`TransactionError::Fenced`] (another producer took the id over, or the coordinator
    /// aborted the transaction after `transaction.timeout.ms`) and [`TransactionError::Fatal`]:
    /// close the producer; [`TransactionError::InvalidState`] with no transaction open.
    pub async fn commit_transaction(&self) -> Result<(), TransactionError> {
        self.end_transaction(true).await
    }

    /// Aborts the open transaction: its records not sent yet fail with
    /// [`TransactionError::Aborted`], those sent are completed, then EndTxn(abort) makes them
    /// invisible to `read_committed` consumers. After an error of the transaction this is the
    /// way back to a usable producer. Waits at most `max.block.ms`.
    ///
    /// # Errors
    /// As [`Producer::commit_transaction`], except `Abortable`.
    pub async fn abort_transaction(&self) -> Result<(), TransactionError> {
        self.end_transaction(false).await
    }

    async fn end_transaction(&self, commit: bool) -> Result<(), TransactionError> {
        let (operation, prepare, end) = if commit {
            (
                "commit_transaction",
                TxnRequest::PrepareCommit,
                TxnRequest::Commit,
            )
        } else {
            (
                "abort_transaction",
                TxnRequest::PrepareAbort,
                TxnRequest::Abort,
            )
        };
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        self.txn_call(prepare, operation, Some(deadline)).await?;
        if tokio::time::timeout_at(deadline.into(), self.flush())
            .await
            .is_err()
        {
            return Err(TransactionError::Timeout {
                operation,
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        self.txn_call(end, operation, Some(deadline)).await
    }

    /// One call to the sender's transaction, bounded by `deadline` (else `max.block.ms`).
    async fn txn_call(
        &self,
        req: TxnRequest,
        operation: &'static str,
        deadline: Option<Instant>,
    ) -> Result<(), TransactionError> {
        let start = Instant::now();
        let deadline = deadline.unwrap_or(start + self.inner.config.max_block);
        let (tx, rx) = oneshot::channel();
        let receipt = Receipt::default();
        self.inner.sender.do_send(Transactional {
            request: req,
            reply: Reply {
                tx,
                receipt: receipt.clone(),
            },
        });
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(res)) => {
                // The answer reached its caller: a repeated call is judged by the state now.
                receipt.take();
                res
            }
            Ok(Err(_)) => Err(TransactionError::Fatal {
                reason: "producer closed".into(),
            }),
            Err(_) => Err(TransactionError::Timeout {
                operation,
                waited_ms: start.elapsed().as_millis() as u64,
            }),
        }
    }

    /// Records accepted and not yet completed.
    pub fn pending_records(&self) -> u64 {
        self.inner.shared.pending.get()
    }

    /// A snapshot of the producer's metrics (Java names, see [`crate::metrics`]) and of each
    /// partition accumulator's mailbox depth.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut s = self.inner.shared.metrics.snapshot();
        s.mailbox_depth = self
            .inner
            .accumulators
            .iter()
            .map(|e| (e.key().clone(), e.value().mailbox.used()))
            .collect();
        s.mailbox_depth.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    /// Closes every open batch now and waits until every record accepted before the call has
    /// its result (Java's `flush`). Records sent meanwhile by other tasks are not waited for, so
    /// it returns under a continuous stream of sends.
    pub async fn flush(&self) {
        for slot in self.inner.accumulators.iter() {
            slot.addr.do_send(FlushBatch);
        }
        self.inner.shared.pending.wait_flushed().await;
    }

    /// Stops accepting records, delivers what it can, fails what is left with
    /// [`ProduceError::Closed`] and stops the producer's actors, returning by `timeout` (Java's
    /// `close(Duration)`): 80% of it for delivering, the rest for failing what is left. A record
    /// still without a result when it returns gets `Closed` as its actor stops, moments later;
    /// no record is left without a result. A transactional producer first aborts its open
    /// transaction (as Java's).
    pub async fn close(&self, timeout: Duration) {
        self.close_from(timeout, false).await
    }

    /// [`Producer::close`]; `from_actor`: called by the [`KafkaProducer`] actor, which runs on
    /// the producer's last arbiter. That arbiter (and the system thread of a plain-tokio
    /// producer) is then stopped last, with nothing awaited after it, so the actor's reply is
    /// sent before its arbiter goes (a `Close` message is never cut short by a
    /// `MailboxError`).
    async fn close_from(&self, timeout: Duration, from_actor: bool) {
        // A user's duration: saturated (`close(Duration::MAX)` must not overflow `Instant`).
        let now = tokio::time::Instant::now();
        let deadline = crate::time::tokio_deadline_after(now, timeout);
        let deliver_until = crate::time::tokio_deadline_after(now, timeout.mul_f64(0.8));
        let txn = &self.inner.shared.txn;
        if txn.enabled
            && matches!(
                txn.state(),
                crate::transaction::TxnState::InTransaction
                    | crate::transaction::TxnState::AbortableError
                    | crate::transaction::TxnState::Aborting
            )
        {
            // As Java's close: an open transaction is aborted, not left to time out.
            if let Ok(Err(e)) =
                tokio::time::timeout_at(deliver_until, self.abort_transaction()).await
            {
                tracing::warn!(error = %e, "abort of the open transaction at close failed");
            }
        }
        self.inner.closed.store(true, Ordering::Release);
        if tokio::time::timeout_at(deliver_until, self.flush())
            .await
            .is_err()
        {
            let err = ProduceError::closed(format!(
                "producer closed before delivery (close timeout {} ms)",
                timeout.as_millis()
            ));
            for slot in self.inner.accumulators.iter() {
                slot.addr.do_send(AbortAccumulator(err.clone()));
            }
            self.inner.sender.do_send(AbortAll(err));
            // Queued batches fail at once; batches in flight fail when their actors stop.
            let _ = tokio::time::timeout_at(deadline, self.inner.shared.pending.wait_zero()).await;
        }
        let mut arbiters: Vec<Arbiter> = match self.inner.arbiters.lock() {
            Ok(mut a) => a.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        // The KafkaProducer actor's arbiter (the last) waits when the actor is the caller.
        let last = if from_actor { arbiters.pop() } else { None };
        for a in arbiters {
            a.stop();
        }
        // Stopping the arbiters drops every actor and fails their records; wait for that while
        // the timeout lasts.
        let _ = tokio::time::timeout_at(deadline, self.inner.shared.pending.wait_zero()).await;
        // From plain tokio: stop the system thread started for us and join it (within the
        // timeout), so no thread outlives `close`.
        let own = self.inner.own_system.lock().ok().and_then(|mut o| o.take());
        if let Some((system, thread)) = own {
            // Called on one of the producer's own threads (the `Close` message to its actor):
            // the thread ends by itself once the actor has replied; a thread cannot join
            // itself.
            let inside = System::try_current().is_some_and(|s| s.id() == system.id());
            if inside {
                if let Some(a) = last {
                    a.stop();
                }
                // Asynchronous: the system stops after this poll, once the reply is sent.
                system.stop();
                return;
            }
            system.stop();
            let join = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout_at(deadline, join).await;
        }
        // Asynchronous too: the arbiter stops after the actor's reply is sent.
        if let Some(a) = last {
            a.stop();
        }
    }

    /// Test hook (feature `test-hooks`, not advertised): makes the sender actor panic once.
    /// Not API.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub async fn inject_sender_panic(&self) {
        let _ = self
            .inner
            .sender
            .send(crate::actors::sender::InjectPanic)
            .await;
    }

    /// The sender's counters (requests, retries, producer id).
    pub async fn sender_stats(&self) -> Option<SenderStats> {
        self.inner.sender.send(GetSenderStats).await.ok()
    }

    /// Cached metadata for `topic`, fetching it if needed (at most `max.block.ms`).
    ///
    /// # Errors
    /// As the metadata errors of [`Producer::send`].
    pub async fn partitions_for(&self, topic: &str) -> Result<Arc<TopicInfo>, ProduceError> {
        let topic: Arc<str> = topic.into();
        self.topic(&topic, Instant::now() + self.inner.config.max_block)
            .await
    }
}

/// Builds a [`Producer`] with a custom partitioner and interceptors.
pub struct ProducerBuilder {
    config: ProducerConfig,
    partitioner: Option<Arc<dyn Partitioner>>,
    interceptors: Vec<Arc<dyn ProducerInterceptor>>,
}

impl ProducerBuilder {
    /// Uses `partitioner` instead of the [`DefaultPartitioner`].
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }

    /// Adds an interceptor; interceptors run in the order they are added.
    pub fn interceptor(mut self, interceptor: impl ProducerInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Starts the producer.
    ///
    /// # Errors
    /// As [`Producer::start`].
    pub async fn start(self) -> Result<Producer, ProduceError> {
        let partitioner = self.partitioner.unwrap_or_else(|| {
            Arc::new(DefaultPartitioner::new(
                self.config.batch_size,
                self.config.partitioner_ignore_keys,
            ))
        });
        Producer::start_parts(
            self.config,
            partitioner,
            Interceptors::new(self.interceptors),
        )
        .await
    }
}

/// An error of [`Producer::send_returning`] before enqueueing, with the record it did not take.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// Why the record was not enqueued.
    pub error: ProduceError,
    /// The record, to retry or park.
    pub record: ProducerRecord,
}

impl From<SendError> for ProduceError {
    fn from(e: SendError) -> Self {
        e.error
    }
}

/// The producer as an actor. Send it [`SendRecord`], [`SendRecordWithCallback`], [`Flush`] and
/// [`Close`]. Start it with [`KafkaProducer::start_producer`] or [`Producer::actor`].
pub struct KafkaProducer {
    producer: Producer,
}

impl KafkaProducer {
    /// Starts a producer and its actor in the current actix system.
    ///
    /// # Errors
    /// As [`Producer::start`].
    pub async fn start_producer(
        config: ProducerConfig,
    ) -> Result<Addr<KafkaProducer>, ProduceError> {
        Ok(Producer::start(config).await?.actor())
    }

    /// The handle this actor wraps.
    pub fn handle(&self) -> &Producer {
        &self.producer
    }
}

impl Actor for KafkaProducer {
    type Context = Context<Self>;
}

/// Sends a record; resolves once it is enqueued, to its [`DeliveryFuture`]. See [`Producer::send`].
#[derive(Message)]
#[rtype(result = "Result<DeliveryFuture, ProduceError>")]
pub struct SendRecord(pub ProducerRecord);

/// Sends a record with a callback. See [`Producer::send_with_callback`].
#[derive(Message)]
#[rtype(result = "Result<(), ProduceError>")]
pub struct SendRecordWithCallback {
    /// The record.
    pub record: ProducerRecord,
    /// Called once with the record's result.
    pub callback: Callback,
}

/// Flushes. See [`Producer::flush`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Closes. See [`Producer::close`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub Duration);

/// Returns a metrics snapshot. See [`Producer::metrics`].
#[derive(Message)]
#[rtype(result = "MetricsSnapshot")]
pub struct GetMetrics;

impl Handler<GetMetrics> for KafkaProducer {
    type Result = MessageResult<GetMetrics>;
    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.producer.metrics())
    }
}

/// Returns the [`Producer`] handle behind the actor.
#[derive(Message)]
#[rtype(result = "Producer")]
pub struct GetHandle;

impl Handler<SendRecord> for KafkaProducer {
    type Result = ResponseFuture<Result<DeliveryFuture, ProduceError>>;
    fn handle(&mut self, msg: SendRecord, _: &mut Context<Self>) -> Self::Result {
        let p = self.producer.clone();
        Box::pin(async move { p.send(msg.0).await })
    }
}

impl Handler<SendRecordWithCallback> for KafkaProducer {
    type Result = ResponseFuture<Result<(), ProduceError>>;
    fn handle(&mut self, msg: SendRecordWithCallback, _: &mut Context<Self>) -> Self::Result {
        let p = self.producer.clone();
        Box::pin(async move { p.send_with_callback(msg.record, msg.callback).await })
    }
}

impl Handler<Flush> for KafkaProducer {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let p = self.producer.clone();
        Box::pin(async move { p.flush().await })
    }
}

impl Handler<Close> for KafkaProducer {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: Close, _: &mut Context<Self>) -> Self::Result {
        let p = self.producer.clone();
        Box::pin(async move { p.close_from(msg.0, true).await })
    }
}

impl Handler<GetHandle> for KafkaProducer {
    type Result = MessageResult<GetHandle>;
    fn handle(&mut self, _: GetHandle, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.producer.clone())
    }
}

/// [`Producer::init_transactions`] as a message.
#[derive(Message)]
#[rtype(result = "Result<(), TransactionError>")]
pub struct InitTransactions;

/// [`Producer::begin_transaction`] as a message.
#[derive(Message)]
#[rtype(result = "Result<(), TransactionError>")]
pub struct BeginTransaction;

/// [`Producer::send_offsets_to_transaction`] as a message.
#[derive(Message)]
#[rtype(result = "Result<(), TransactionError>")]
pub struct SendOffsetsToTransaction {
    /// Next offset to read per input partition.
    pub offsets: Vec<(TopicPartition, i64)>,
    /// The consumer group the offsets are committed for.
    pub group: ConsumerGroupMetadata,
}

/// [`Producer::commit_transaction`] as a message.
#[derive(Message)]
#[rtype(result = "Result<(), TransactionError>")]
pub struct CommitTransaction;

/// [`Producer::abort_transaction`] as a message.
#[derive(Message)]
#[rtype(result = "Result<(), TransactionError>")]
pub struct AbortTransaction;

macro_rules! txn_handler {
    ($msg:ty, |$p:ident, $m:ident| $call:expr) => {
        impl Handler<$msg> for KafkaProducer {
            type Result = ResponseFuture<Result<(), TransactionError>>;
            fn handle(&mut self, $m: $msg, _: &mut Context<Self>) -> Self::Result {
                let $p = self.producer.clone();
                Box::pin(async move { $call.await })
            }
        }
    };
}

txn_handler!(InitTransactions, |p, _m| p.init_transactions());
txn_handler!(BeginTransaction, |p, _m| p.begin_transaction());
txn_handler!(SendOffsetsToTransaction, |p, m| async move {
    p.send_offsets_to_transaction(m.offsets, &m.group).await
});
txn_handler!(CommitTransaction, |p, _m| p.commit_transaction());
txn_handler!(AbortTransaction, |p, _m| p.abort_transaction());
