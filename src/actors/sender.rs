//! `Sender`: the dispatcher between the partition accumulators and the broker connections.
//!
//! A thin shell around `SenderCore` (`src/core/sender.rs`), which decides everything: which
//! batches go to which broker in which request, retries, expiry, sequences and the producer
//! id. The actor feeds it batches, responses, metadata changes and timer ticks with the time of
//! now, and carries out the actions it returns: Produce and InitProducerId calls through the
//! broker connections, metadata refreshes, wake-ups. With `transactional.id` the actor also
//! runs the transaction's coordinator calls (`sender/transactions.rs`).

use crate::actors::connection::{call, ConnectionPool};
use crate::actors::metadata::{MetadataManager, MetadataUpdated, RefreshMetadata};
use crate::actors::{guarded, WakeTimer};
use crate::batch::{ProducerBatch, Shared};
use crate::cluster::Cluster;
use crate::config::{Acks, ProducerConfig};
use crate::core::sender::{Action, ProduceCall, SenderCore};
use crate::error::{ConnectionError, ProduceError};
use actix::prelude::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod transactions;
pub use crate::core::sender::SenderStats;
pub(crate) use transactions::{Receipt, Reply, Transactional, TxnRequest};

/// A closed batch, from a [`crate::actors::accumulator::PartitionAccumulator`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct BatchReady(pub ProducerBatch);

/// Fails every batch the sender holds that is not in flight, and every batch that arrives
/// later, with the given error (used by `close` once its timeout has passed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortAll(pub ProduceError);

/// `Producer::purge`'s second step (after every accumulator's `PurgeAccumulator`): fails the
/// batches queued here with `Purged`, and with `in_flight` those in flight too.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PurgeBatches {
    /// Batches in flight are failed too (their answers are then ignored).
    pub in_flight: bool,
}

/// Test hook (feature `test-hooks`): the sender's next drain panics. Not API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(feature = "test-hooks")]
impl Handler<InjectPanic> for Sender {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        self.core.panic_next_drain = true;
        self.drain(ctx);
    }
}

/// Snapshot of the sender's state, for tests, metrics and `close`.
#[derive(Message)]
#[rtype(result = "SenderStats")]
pub struct GetSenderStats;

/// See the module docs.
pub struct Sender {
    config: Arc<ProducerConfig>,
    cluster: Arc<Cluster>,
    pool: Arc<ConnectionPool>,
    metadata: Addr<MetadataManager>,
    core: SenderCore,
    wake: WakeTimer,
    shared: Arc<Shared>,
    /// The transaction (with `transactional.id`): state machine, partitions in it, calls.
    txn: Option<transactions::Txn>,
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
        let txn = config
            .transactional_id
            .as_deref()
            .map(|id| transactions::txn_core(id, &config));
        Sender {
            core: SenderCore::new(config.clone()),
            txn,
            config,
            cluster,
            pool,
            metadata,
            wake: WakeTimer::default(),
            shared,
        }
    }

    fn schedule_wake(&mut self, at: Instant, ctx: &mut Context<Self>) {
        WakeTimer::schedule(self, |a| &mut a.wake, at, ctx, |a, ctx| a.drain(ctx));
    }

    /// Runs the core's drain and carries out what it asks for.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let mut out = Vec::new();
        let (core, cluster, txn) = (&mut self.core, &self.cluster, &mut self.txn);
        guarded("sender", &self.shared.health, || {
            core.drain(Instant::now(), cluster, txn, &mut out)
        });
        self.txn_add_partitions(ctx);
        self.settle();
        self.execute(out, ctx);
    }

    /// Carries out the outcomes the core decided: completions run the records' callbacks and
    /// wake their futures here, in the shell, never inside the core.
    pub(crate) fn settle(&mut self) {
        for s in self.core.take_settled() {
            s.carry_out(&self.shared);
        }
    }

    fn execute(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        let mut refreshed = false;
        for action in actions {
            match action {
                Action::Produce(call) => self.send_request(call, ctx),
                Action::InitProducerId { previous } => self.init_producer_id(previous, ctx),
                Action::RefreshMetadata if !refreshed => {
                    refreshed = true;
                    self.metadata.do_send(RefreshMetadata);
                }
                Action::RefreshMetadata => {}
                Action::WantTopic(topic) => self
                    .metadata
                    .do_send(crate::actors::metadata::FetchTopic(topic)),
                Action::Wake(at) => self.schedule_wake(at, ctx),
                Action::LeaderHint(hint) => self
                    .metadata
                    .do_send(crate::actors::metadata::ApplyLeaderHint(hint)),
            }
        }
    }

    fn init_producer_id(&mut self, previous: Option<(i64, i16)>, ctx: &mut Context<Self>) {
        let known = self.cluster.brokers();
        let Some((broker, conn)) = self.pool.any(&known) else {
            // No broker known yet: the metadata update drains again.
            self.core.init_producer_id_not_sent();
            return;
        };
        let (old_id, old_epoch) = previous.unwrap_or((-1, -1));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(old_id.into())
            .with_producer_epoch(old_epoch);
        let timeout = self.config.request_timeout;
        let fut = async move { call(&conn, broker, request, true, timeout).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let res = match res {
                Ok(Some(r)) => Ok((r.error_code, r.producer_id.0, r.producer_epoch)),
                Ok(None) => Err(ConnectionError::Malformed {
                    broker: "InitProducerId".into(),
                    reason: "no response".into(),
                }),
                Err(e) => Err(e),
            };
            let core = &mut act.core;
            guarded("sender", &act.shared.health, || {
                core.on_init_producer_id(Instant::now(), res)
            });
            act.drain(ctx);
        }));
    }

    fn send_request(&mut self, produce: ProduceCall, ctx: &mut Context<Self>) {
        let ProduceCall {
            request_id,
            node,
            address,
            batches,
        } = produce;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let (partitions, records) = (batches.len(), 0usize);
        for (tp, bytes) in batches {
            let data = PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(bytes));
            match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
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
        let timeout = self.config.request_timeout;
        let span = tracing::debug_span!("produce", broker = node, partitions, records);
        let fut = tracing::Instrument::instrument(
            async move { call(&conn, address, request, acks != Acks::None, timeout).await },
            span,
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let mut out = Vec::new();
            let core = &mut act.core;
            guarded("sender", &act.shared.health, || {
                core.on_produce_response(Instant::now(), request_id, res, &mut out)
            });
            act.execute(out, ctx);
            act.drain(ctx);
        }));
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
            if act.core.has_in_flight() || act.core.has_queued() {
                act.drain(ctx);
            }
        });
    }
}

impl Handler<BatchReady> for Sender {
    type Result = ();
    fn handle(&mut self, msg: BatchReady, ctx: &mut Context<Self>) {
        let batch = msg.0;
        if let Some(Err(e)) = self.txn.as_ref().map(|t| t.admit()) {
            return batch.fail(ProduceError::Transaction(e));
        }
        // metadata.max.idle.ms counts from the last batch of the topic.
        self.cluster.touch(&batch.tp.topic, Instant::now());
        let core = &mut self.core;
        guarded("sender", &self.shared.health, || core.enqueue(batch));
        self.settle();
        if !self.core.saturated(&self.cluster) {
            self.drain(ctx);
        }
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
        self.core.abort(msg.0);
        self.drain(ctx);
    }
}

impl Handler<PurgeBatches> for Sender {
    type Result = ();
    fn handle(&mut self, msg: PurgeBatches, ctx: &mut Context<Self>) {
        let core = &mut self.core;
        guarded("sender", &self.shared.health, || core.purge(msg.in_flight));
        self.settle();
        self.drain(ctx);
    }
}

impl Handler<GetSenderStats> for Sender {
    type Result = MessageResult<GetSenderStats>;
    fn handle(&mut self, _: GetSenderStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.stats())
    }
}
