//! The actors: one file each, with the messages they accept beside them.
//!
//! - [`producer::KafkaProducer`]: the address users send records to.
//! - [`metadata::MetadataManager`]: brokers, topics, leaders.
//! - [`accumulator::PartitionAccumulator`]: one per partition, builds batches.
//! - [`sender::Sender`]: drains ready batches by leader into Produce requests.
//! - [`connection::BrokerConnection`]: one supervised TCP session per broker.
pub mod accumulator;
pub mod connection;
pub mod metadata;
pub mod producer;
pub mod sender;
