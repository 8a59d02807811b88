//! The producer front end: [`Producer`], a cloneable handle usable from any tokio or actix code
//! (its actor, [`KafkaProducer`], is in `actors/producer.rs`).
//!
//! `send` follows the Java `KafkaProducer.send` path: wait for the topic's metadata (at most
//! `max.block.ms`), choose the partition (explicit, else the [`Partitioner`]), check the size
//! against `max.request.size`, then take a slot in the partition accumulator's mailbox (waiting
//! at most what is left of `max.block.ms`) and enqueue the record. It returns once the record
//! is enqueued, with a [`DeliveryFuture`] for its
//! [`RecordMetadata`](crate::record::RecordMetadata).
//!
//! - `mod.rs`: the handle and its public send, flush, close and metrics calls;
//! - `runtime.rs`: starting (arbiters, the actix system thread) and closing;
//! - `routing.rs`: topic wait, partitioning, size check, the accumulator directory;
//! - `enqueue.rs`: the one enqueue path, with its [`Block`] mode;
//! - `transactions.rs`: the transactional calls.

mod enqueue;
mod routing;
mod runtime;
mod transactions;

pub use runtime::ProducerBuilder;

use crate::actors::accumulator::{
    AbortAccumulator, AppendRecord, Drain, FlushBatch, PartitionAccumulator, PurgeAccumulator,
};
use crate::actors::connection::{ConnectionPool, ConnectionSettings};
use crate::actors::metadata::{MetadataManager, WaitForTopic};
use crate::actors::producer::KafkaProducer;
use crate::actors::sender::{
    AbortAll, GetSenderStats, PurgeBatches, Receipt, Reply, Sender, SenderStats, Transactional,
    TxnRequest,
};
use crate::batch::{Delivery, DeliveryFuture, DeliveryResult, IndexedCallback, Shared};
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

/// What [`Producer::purge`] fails (librdkafka's `RD_KAFKA_PURGE_F_QUEUE` and
/// `RD_KAFKA_PURGE_F_INFLIGHT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purge {
    /// Records not sent yet (`possibly_written` false), and batches queued for a retry
    /// (`possibly_written` true: an earlier attempt reached the broker).
    Queued,
    /// [`Purge::Queued`], and the batches of requests in flight (`possibly_written` true).
    QueuedAndInFlight,
}

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
    /// Feature `metrics`: what was exported to the `metrics` facade (see `metrics::export`).
    #[cfg(feature = "metrics")]
    exporter: Arc<Mutex<crate::metrics::export::Exporter>>,
    /// What the builder set beside the configuration keys.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    options: runtime::Options,
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
    /// The errors of [`Producer::send`], then those of the delivery
    /// ([`ProduceError::DeliveryTimeout`], [`ProduceError::Broker`], ...).
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
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

    /// Fails, at once, every record accepted and not sent yet with [`ProduceError::Purged`]
    /// (librdkafka's `rd_kafka_purge`, franz-go's `AbortBufferedRecords`): records in the
    /// partition mailboxes, in open batches, and in closed batches waiting for a batch slot or
    /// for the sender's drain; with [`Purge::QueuedAndInFlight`] also the batches of requests
    /// in flight, whose answers are then ignored. `possibly_written` is true for a record that
    /// a request carried (in flight, or queued for a retry): the broker may have written it.
    /// Returns once every purged record has its result (callbacks run, futures resolved).
    /// Later sends are accepted as before; records sent while the purge runs may or may not
    /// be purged. Does nothing on a closed producer.
    ///
    /// A purged batch that had a sequence (idempotence) leaves a gap in its partition: the
    /// producer id is then reset (KIP-360) once what is in flight has its answers, as after a
    /// batch that expired. In a transaction a purged record fails the transaction as any
    /// failed record does: `commit_transaction` then fails (abortable), and
    /// `abort_transaction` ends it (bumping the epoch if a sequence was left open).
    pub async fn purge(&self, scope: Purge) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        // Every accumulator first: a batch one hands over before its purge is in the sender's
        // mailbox before the sender's purge message, so the sender fails it too. The messages
        // are queued at once, then awaited (a retired accumulator answers nothing: skipped).
        let asked: Vec<_> = self
            .inner
            .accumulators
            .iter()
            .map(|slot| slot.addr.send(PurgeAccumulator))
            .collect();
        for answer in asked {
            let _ = answer.await;
        }
        let in_flight = scope == Purge::QueuedAndInFlight;
        let _ = self.inner.sender.send(PurgeBatches { in_flight }).await;
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
