//! # actix-kafka
//!
//! A Kafka producer built as a system of actix actors, speaking the Kafka wire protocol
//! (Produce v3+, record batch magic v2, idempotence, TLS and SASL) to real clusters. Works from
//! plain tokio (the `Producer` handle) and from actix (`Addr<KafkaProducer>`).
//!
//! ```no_run
//! use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
//! use std::time::Duration;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ProducerConfig::builder().bootstrap_servers(["127.0.0.1:9092"]).build()?;
//!     let producer = Producer::start(config).await?;
//!     // One call: enqueue and wait for the broker (Java's send(r).get()).
//!     let md = producer.send_and_wait(ProducerRecord::new("events", "hello").key("k1")).await?;
//!     println!("{}-{}@{}", md.topic, md.partition, md.offset);
//!     // Or enqueue now, await the delivery later.
//!     let delivery = producer.send(ProducerRecord::new("events", "again")).await?;
//!     delivery.await?;
//!     // Deliver or fail what is pending; dropping without close fails pending records.
//!     producer.close(Duration::from_secs(5)).await;
//!     Ok(())
//! }
//! ```
//!
//! With actix (`use actix_kafka::prelude::*`): `KafkaProducer::start_producer(config).await?`
//! gives an `Addr`; `addr.send(SendRecord(record)).await??.await?`.
//!
//! Features: `mock` ([`mock::MockProducer`], a test double), `cli` (the `actix-kafka` tool),
//! `serde_json` (`serializer::JsonSerializer`), `actix-web` (`ResponseError` for
//! [`ProduceError`]). Configuration keys are Java's ([`ProducerConfig`]); TLS and SASL are in
//! [`security`]; broker health events in [`health`].
//!
//! See `ARCHITECTURE.md` in the repository for the actors, their messages and the path of one
//! record.
#![warn(missing_docs)]
// No unwrap/expect/panic on any path network bytes can reach (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Internal: the actors, batches, cluster cache and wire protocol. Public only so that benches
// and tests reach what they measure; not part of the API (use the re-exports below).
#[doc(hidden)]
pub mod actors;
mod backoff;
#[doc(hidden)]
pub mod batch;
#[doc(hidden)]
pub mod cluster;
pub mod codes;
pub mod config;
mod core;
pub mod error;
pub mod health;
pub mod interceptor;
mod mailbox;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod partitioner;
mod producer;
#[doc(hidden)]
pub mod protocol;
pub mod record;
pub mod security;
mod send;
pub mod serializer;
mod time;

/// A concurrent map with seeded fast hashing (foldhash), for the maps `send` reads per record.
pub(crate) type FastMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;
mod completion;
pub mod transaction;

/// What most programs need: `use actix_kafka::prelude::*;`.
pub mod prelude {
    pub use crate::actors::producer::{
        AbortTransaction, BeginTransaction, Close, CommitTransaction, Flush, GetHandle, GetMetrics,
        InitTransactions, KafkaProducer, PurgeRecords, SendOffsetsToTransaction, SendRecord,
        SendRecordWithCallback,
    };
    pub use crate::batch::{DeliveryFuture, DeliveryResult};
    pub use crate::config::{Acks, ProducerConfig};
    pub use crate::error::{ConnectionError, ProduceError};
    pub use crate::health::HealthEvent;
    pub use crate::producer::{Producer, Purge};
    pub use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};
    pub use crate::security::{SaslMechanism, SecurityProtocol};
    pub use crate::send::RecordSender;
    pub use crate::transaction::{ConsumerGroupMetadata, TransactionError};
}

pub use actors::producer::{
    AbortTransaction, BeginTransaction, Close, CommitTransaction, Flush, GetHandle, GetMetrics,
    InitTransactions, KafkaProducer, PurgeRecords, SendOffsetsToTransaction, SendRecord,
    SendRecordWithCallback,
};
pub use actors::sender::SenderStats;
pub use batch::{Callback, DeliveryFuture, DeliveryResult, IndexedCallback};
pub use cluster::{BrokerInfo, PartitionInfo, TopicInfo};
pub use codes::{ErrorClass, ErrorCode};
pub use config::{Acks, ConfigError, ProducerConfig};
pub use error::{ConnectionError, KafkaCode, ProduceError};
pub use health::HealthEvent;
pub use interceptor::ProducerInterceptor;
pub use metrics::MetricsSnapshot;
pub use producer::{Producer, ProducerBuilder, Purge, SendError};
pub use protocol::record_batch::{Compression, CompressionLevels};
pub use record::{Header, ProducerRecord, RecordMetadata, TopicPartition};
pub use secrecy::SecretString;
pub use security::{OAuthBearerToken, OAuthTokenProvider, SaslMechanism, SecurityProtocol};
pub use send::RecordSender;
pub use transaction::{ConsumerGroupMetadata, TransactionError};
