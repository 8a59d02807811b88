//! Typed errors: what can go wrong between `send` and `RecordMetadata`.
//!
//! [`ProduceError`] is the final result of a record that was not delivered. It is `Clone`
//! because one broker answer fails every record of a batch. Kafka error codes are kept as
//! [`KafkaCode`] with the name and retriable flag from the protocol guide's error table.

use crate::codes::{ErrorClass, ErrorCode};
use crate::config::ConfigError;
use crate::record::TopicPartition;
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use std::fmt;
use std::sync::Arc;

/// A Kafka error code (protocol guide, "Error Codes") with its name and retriable flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    /// `NONE` (0): no error.
    pub const NONE: KafkaCode = KafkaCode(0);
    /// The kafka-protocol view of the code, `None` for 0.
    pub fn error(self) -> Option<ResponseError> {
        self.0.err()
    }
    /// The code by name ([`ErrorCode`]).
    pub fn named(self) -> ErrorCode {
        ErrorCode::from_code(self.0)
    }
    /// How a producer treats it (the table in [`crate::codes`]).
    pub fn class(self) -> ErrorClass {
        self.named().class()
    }
    /// True for codes that are retried (the protocol guide's retriable flag, e.g.
    /// `NOT_LEADER_OR_FOLLOWER`).
    pub fn is_retriable(self) -> bool {
        self.named().is_retriable()
    }
    /// Codes after which the client refreshes its metadata before retrying (stale leader,
    /// unknown partition, fenced/unknown leader epoch, leader not available, ...: Java's
    /// `InvalidMetadataException` family).
    pub fn needs_metadata_refresh(self) -> bool {
        self.class() == ErrorClass::RefreshMetadata
    }
    /// The protocol-guide name, e.g. `NOT_LEADER_OR_FOLLOWER`, or `UNKNOWN_CODE_n`.
    pub fn name(self) -> String {
        match self.error() {
            None => "NONE".to_string(),
            Some(e) => format!("{e:?}"),
        }
    }
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.name(), self.0)
    }
}

impl From<ErrorCode> for KafkaCode {
    fn from(code: ErrorCode) -> KafkaCode {
        KafkaCode(code.code())
    }
}

/// Errors of one broker connection (TCP, framing, protocol).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    /// TCP connect failed or timed out (`socket.connection.setup.timeout.ms`).
    #[error("cannot connect to broker {broker}: {reason}")]
    Connect {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// OS or timeout message.
        reason: Arc<str>,
    },
    /// The connection dropped while the request was queued or in flight; it may have been written.
    #[error("connection to broker {broker} lost: {reason}")]
    Disconnected {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// Why the connection ended.
        reason: Arc<str>,
    },
    /// No response within `request.timeout.ms`.
    #[error("request to broker {broker} timed out after {timeout_ms} ms")]
    RequestTimeout {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// The configured `request.timeout.ms`.
        timeout_ms: u64,
    },
    /// The broker does not support a version of this API we can speak (ApiVersions negotiation).
    #[error("broker {broker} supports no usable version of API {api_key}")]
    UnsupportedVersion {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// Kafka API key.
        api_key: i16,
    },
    /// The broker sent bytes we could not decode (bad length, wrong correlation id, garbage);
    /// the connection is reset.
    #[error("malformed response from broker {broker}: {reason}")]
    Malformed {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// What was wrong.
        reason: Arc<str>,
    },
    /// SASL authentication failed: wrong password, unknown user, a mechanism the broker does not
    /// enable, a refused token (SaslHandshake / SaslAuthenticate, KIP-152). Not retried: the
    /// records fail at once (Java's `SaslAuthenticationException`).
    #[error("authentication with broker {broker} failed: {reason}")]
    Authentication {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// The broker's message or what our side found wrong (never a secret).
        reason: Arc<str>,
    },
    /// TLS failed: untrusted or mismatched certificate, refused client certificate, or a TLS /
    /// plaintext mismatch between `security.protocol` and the listener. Not retried (Java's
    /// `SslAuthenticationException`).
    #[error("TLS with broker {broker} failed: {reason}")]
    Tls {
        /// `host:port` of the broker.
        broker: Arc<str>,
        /// The cause (unknown issuer, host name mismatch, expired, protocol mismatch, ...).
        reason: Arc<str>,
    },
}

impl ConnectionError {
    /// Whether a request may be resent on a new connection: everything but an unusable API
    /// version and failed authentication or TLS (retrying cannot fix those).
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self,
            ConnectionError::UnsupportedVersion { .. }
                | ConnectionError::Authentication { .. }
                | ConnectionError::Tls { .. }
        )
    }

    /// Whether a request that failed with this error may have reached the broker (and been
    /// written): every error but those raised before a request is written (no connection, an
    /// API version the broker lacks, failed authentication or TLS). A request that cannot have
    /// been written is retried without leaving its batch's sequence unresolved.
    pub fn reached_broker(&self) -> bool {
        !matches!(
            self,
            ConnectionError::Connect { .. }
                | ConnectionError::UnsupportedVersion { .. }
                | ConnectionError::Authentication { .. }
                | ConnectionError::Tls { .. }
        )
    }

    /// Whether this is an authentication or TLS failure (fatal for `send` and deliveries).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ConnectionError::Authentication { .. } | ConnectionError::Tls { .. }
        )
    }
}

/// Why a record was not delivered (the error side of a delivery result).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProduceError {
    /// Invalid configuration.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// The record's serialized size is over `max.request.size` (Java's `RecordTooLargeException`).
    #[error("record of {size} bytes is larger than max.request.size ({limit} bytes)")]
    RecordTooLarge {
        /// Upper bound of the record's encoded size in bytes.
        size: usize,
        /// The configured `max.request.size` in bytes.
        limit: usize,
    },
    /// The topic does not exist (metadata said `UNKNOWN_TOPIC_OR_PARTITION` until `max.block.ms`
    /// ran out).
    #[error("topic `{topic}` not present in metadata after {waited_ms} ms (max.block.ms)")]
    UnknownTopic {
        /// Topic name.
        topic: Arc<str>,
        /// How long `send` waited, in ms.
        waited_ms: u64,
    },
    /// The topic name is invalid (`INVALID_TOPIC_EXCEPTION`) or not authorized.
    #[error("topic `{topic}` refused by the cluster: {code}")]
    TopicError {
        /// Topic name.
        topic: Arc<str>,
        /// The Kafka error code.
        code: KafkaCode,
    },
    /// No metadata could be fetched within `max.block.ms` (e.g. unreachable bootstrap servers).
    #[error("no metadata for topic `{topic}` within {waited_ms} ms (max.block.ms): {reason}")]
    MetadataTimeout {
        /// Topic name.
        topic: Arc<str>,
        /// How long `send` waited, in ms.
        waited_ms: u64,
        /// The last error seen while fetching metadata.
        reason: Arc<str>,
    },
    /// An explicit partition is outside the topic's partition count.
    #[error("partition {partition} of topic `{topic}` does not exist ({partitions} partitions)")]
    InvalidPartition {
        /// Topic name.
        topic: Arc<str>,
        /// Requested partition.
        partition: i32,
        /// Partition count from metadata.
        partitions: i32,
    },
    /// The partition's mailbox stayed full for `max.block.ms` (back-pressure), or was full at
    /// once for `try_send`. The record was not enqueued.
    #[error("queue for {topic_partition} full for {waited_ms} ms (mailbox.capacity reached)")]
    QueueFull {
        /// The partition whose accumulator is full.
        topic_partition: TopicPartition,
        /// How long `send` waited, in ms.
        waited_ms: u64,
    },
    /// The record was not acknowledged within `delivery.timeout.ms`.
    #[error(
        "record for {topic_partition} expired after {timeout_ms} ms (delivery.timeout.ms); \
         possibly written: {possibly_written}"
    )]
    DeliveryTimeout {
        /// The record's partition.
        topic_partition: TopicPartition,
        /// The configured `delivery.timeout.ms`.
        timeout_ms: u64,
        /// True if a request carrying the record was sent, so the broker may have written it.
        possibly_written: bool,
    },
    /// The broker answered with a non-retriable error, or retries ran out.
    #[error(
        "broker refused the batch for {topic_partition}: {code}{}",
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Broker {
        /// The record's partition.
        topic_partition: TopicPartition,
        /// The Kafka error code.
        code: KafkaCode,
        /// The broker's error message, if any.
        message: Option<Arc<str>>,
    },
    /// A connection error that could not be retried (retries exhausted or not retriable).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The batch could not be built (e.g. compression failed).
    #[error("cannot build record batch: {0}")]
    Batch(#[from] crate::protocol::record_batch::BatchError),
    /// Key or value serialization failed.
    #[error("serialization failed: {0}")]
    Serialization(Arc<str>),
    /// The producer is closed (or its actors stopped); the record was not accepted or not
    /// delivered.
    #[error("producer closed: {0}")]
    Closed(Arc<str>),
    /// The idempotent producer hit a fatal error (e.g. `PRODUCER_FENCED`, authorization); the
    /// producer stops accepting records.
    #[error("fatal producer error: {0}")]
    Fatal(Arc<str>),
    /// A transactional call failed, or the record's transaction did (see
    /// [`crate::transaction::TransactionError`] for what to do next).
    #[error(transparent)]
    Transaction(#[from] crate::transaction::TransactionError),
    /// The application purged the record ([`crate::Producer::purge`]; librdkafka's
    /// `RD_KAFKA_RESP_ERR__PURGE_QUEUE` / `__PURGE_INFLIGHT`, franz-go's
    /// `AbortBufferedRecords`) before the broker acknowledged it.
    #[error("record purged before delivery; possibly written: {possibly_written}")]
    Purged {
        /// True if a request carrying the record had been sent (a batch in flight, or one
        /// queued for a retry), so the broker may have written it.
        possibly_written: bool,
    },
}

impl ProduceError {
    /// Shorthand for [`ProduceError::Closed`].
    pub fn closed(why: impl Into<Arc<str>>) -> Self {
        ProduceError::Closed(why.into())
    }
}

impl From<actix::MailboxError> for ProduceError {
    /// The producer actor could not take or answer a message (it stopped: the producer was
    /// closed). Lets `addr.send(SendRecord(r)).await??.await?` use `?` throughout.
    fn from(e: actix::MailboxError) -> Self {
        ProduceError::closed(format!("producer actor unavailable: {e}"))
    }
}

/// HTTP statuses for the errors, so an actix-web handler can return `Result<_, ProduceError>`
/// (feature `actix-web`): back-pressure and timeouts are 503/504, bad input 400/413, a cluster
/// that refuses us 502, a closed producer 503.
#[cfg(feature = "actix-web")]
impl actix_web::ResponseError for ProduceError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            ProduceError::QueueFull { .. }
            | ProduceError::Closed(_)
            | ProduceError::Purged { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProduceError::MetadataTimeout { .. } | ProduceError::DeliveryTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProduceError::RecordTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProduceError::UnknownTopic { .. }
            | ProduceError::InvalidPartition { .. }
            | ProduceError::Serialization(_) => StatusCode::BAD_REQUEST,
            ProduceError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

#[cfg(all(test, feature = "actix-web"))]
mod http_tests {
    use super::*;
    use actix_web::ResponseError;

    #[test]
    fn statuses() {
        let tp = TopicPartition::new("t", 0);
        let queue = ProduceError::QueueFull {
            topic_partition: tp.clone(),
            waited_ms: 1,
        };
        assert_eq!(queue.status_code().as_u16(), 503);
        let large = ProduceError::RecordTooLarge { size: 2, limit: 1 };
        assert_eq!(large.status_code().as_u16(), 413);
        let timeout = ProduceError::DeliveryTimeout {
            topic_partition: tp,
            timeout_ms: 1,
            possibly_written: false,
        };
        assert_eq!(timeout.status_code().as_u16(), 504);
        assert_eq!(ProduceError::closed("x").status_code().as_u16(), 503);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the errors raised before a request is written leave it unwritten (so its batch's
    /// sequence is not in doubt); every other one may have reached the broker.
    #[test]
    fn which_connection_errors_may_have_reached_the_broker() {
        let b: Arc<str> = "b:9092".into();
        let r: Arc<str> = "why".into();
        for (e, reached) in [
            (
                ConnectionError::Connect {
                    broker: b.clone(),
                    reason: r.clone(),
                },
                false,
            ),
            (
                ConnectionError::UnsupportedVersion {
                    broker: b.clone(),
                    api_key: 0,
                },
                false,
            ),
            (
                ConnectionError::Authentication {
                    broker: b.clone(),
                    reason: r.clone(),
                },
                false,
            ),
            (
                ConnectionError::Tls {
                    broker: b.clone(),
                    reason: r.clone(),
                },
                false,
            ),
            (
                ConnectionError::Disconnected {
                    broker: b.clone(),
                    reason: r.clone(),
                },
                true,
            ),
            (
                ConnectionError::RequestTimeout {
                    broker: b.clone(),
                    timeout_ms: 1,
                },
                true,
            ),
            (
                ConnectionError::Malformed {
                    broker: b.clone(),
                    reason: r.clone(),
                },
                true,
            ),
        ] {
            assert_eq!(e.reached_broker(), reached, "{e}");
        }
    }

    #[test]
    fn codes_have_names_and_retriable_flags() {
        let nl = KafkaCode::from(ErrorCode::NotLeaderOrFollower);
        assert_eq!(nl.name(), "NotLeaderOrFollower");
        assert!(nl.is_retriable());
        assert!(nl.needs_metadata_refresh());
        let too_large = KafkaCode::from(ErrorCode::MessageTooLarge);
        assert!(!too_large.is_retriable());
        assert!(!too_large.needs_metadata_refresh());
        assert!(!KafkaCode::NONE.is_retriable());
        assert_eq!(KafkaCode::NONE.name(), "NONE");
        let replicas = KafkaCode::from(ErrorCode::NotEnoughReplicas);
        assert!(replicas.is_retriable());
        assert!(!replicas.needs_metadata_refresh());
        for code in [9, 72, 103] {
            assert!(KafkaCode(code).needs_metadata_refresh(), "{code}");
        }
    }
}
