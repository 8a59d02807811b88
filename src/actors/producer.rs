//! [`KafkaProducer`]: the producer as an actor, over a [`Producer`] handle. Its messages first,
//! then the actor and its handlers (each forwards to the handle).

use crate::batch::{Callback, DeliveryFuture};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::metrics::MetricsSnapshot;
use crate::producer::{Producer, Purge};
use crate::record::{ProducerRecord, TopicPartition};
use crate::transaction::{ConsumerGroupMetadata, TransactionError};
use actix::prelude::*;
use std::time::Duration;

/// The handle, also reachable here (internal path, kept for code that used it).
#[doc(hidden)]
pub use crate::producer::{ProducerBuilder, SendError};

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

/// Purges what is buffered (and, with [`Purge::QueuedAndInFlight`], in flight). See
/// [`Producer::purge`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct PurgeRecords(pub Purge);

/// Closes. See [`Producer::close`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub Duration);

/// Returns a metrics snapshot. See [`Producer::metrics`].
#[derive(Message)]
#[rtype(result = "MetricsSnapshot")]
pub struct GetMetrics;

/// Returns the [`Producer`] handle behind the actor.
#[derive(Message)]
#[rtype(result = "Producer")]
pub struct GetHandle;

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

/// The producer as an actor. Send it [`SendRecord`], [`SendRecordWithCallback`], [`Flush`] and
/// [`Close`]. Start it with [`KafkaProducer::start_producer`] or [`Producer::actor`].
pub struct KafkaProducer {
    pub(crate) producer: Producer,
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

impl Handler<GetMetrics> for KafkaProducer {
    type Result = MessageResult<GetMetrics>;
    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.producer.metrics())
    }
}

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

impl Handler<PurgeRecords> for KafkaProducer {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: PurgeRecords, _: &mut Context<Self>) -> Self::Result {
        let p = self.producer.clone();
        Box::pin(async move { p.purge(msg.0).await })
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
