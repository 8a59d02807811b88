//! # actix-kafka
//!
//! A Kafka producer built as a system of actix actors, speaking the Kafka wire protocol
//! (Produce v3+, record batch magic v2) to real clusters.
//!
//! ```no_run
//! use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
//! # async fn run() -> Result<(), actix_kafka::ProduceError> {
//! let config = ProducerConfig::builder().bootstrap_servers(["127.0.0.1:9092"]).build()?;
//! let producer = Producer::start(config).await?;
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("k1")).await?;
//! let md = delivery.await?;
//! println!("{}-{}@{}", md.topic, md.partition, md.offset);
//! producer.close(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! See `ARCHITECTURE.md` for the actors, their messages and the path of one record.
#![warn(missing_docs)]

pub mod actors;
mod backoff;
pub mod batch;
pub mod cluster;
pub mod config;
pub mod error;
pub mod health;
pub mod interceptor;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod partitioner;
pub mod protocol;
pub mod record;
pub mod security;
mod send;
pub mod serializer;
mod slots;

/// What most programs need: `use actix_kafka::prelude::*;`.
pub mod prelude {
    pub use crate::actors::producer::{
        Close, Flush, GetHandle, GetMetrics, KafkaProducer, Producer, SendRecord,
        SendRecordWithCallback,
    };
    pub use crate::batch::{DeliveryFuture, DeliveryResult};
    pub use crate::config::{Acks, ProducerConfig};
    pub use crate::error::{ConnectionError, ProduceError};
    pub use crate::health::HealthEvent;
    pub use crate::send::RecordSender;
    pub use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};
    pub use crate::security::{SaslMechanism, SecurityProtocol};
}

pub use actors::producer::{
    Close, Flush, GetHandle, GetMetrics, KafkaProducer, Producer, ProducerBuilder, SendRecord,
    SendRecordWithCallback,
};
pub use batch::{DeliveryFuture, DeliveryResult};
pub use config::{Acks, ConfigError, ProducerConfig};
pub use error::{ConnectionError, KafkaCode, ProduceError};
pub use health::HealthEvent;
pub use send::RecordSender;
pub use interceptor::ProducerInterceptor;
pub use metrics::MetricsSnapshot;
pub use record::{Header, ProducerRecord, RecordMetadata, TopicPartition};
pub use security::{OAuthBearerToken, OAuthTokenProvider, SaslMechanism, SecurityProtocol};
pub use secrecy::SecretString;
