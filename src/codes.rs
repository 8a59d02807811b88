//! Kafka error codes by name, with how the producer treats each: one table.
//!
//! Source: the protocol guide's "Error Codes" table (code, name, retriable) and the Java
//! producer's handling (`InvalidMetadataException` subclasses refresh metadata; authorization
//! and fencing errors stop an idempotent or transactional producer). Codes a producer never
//! sees are kept as [`ErrorCode::Other`], classed by kafka-protocol's retriable flag.

use kafka_protocol::error::ParseResponseErrorCode;

/// How the producer treats a broker error code on a produce.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// No error.
    Success,
    /// Retried (until `delivery.timeout.ms`).
    Retriable,
    /// Retried after a metadata refresh: the client's view of leaders or topics is stale
    /// (Java's `InvalidMetadataException` family).
    RefreshMetadata,
    /// The batch fails; the producer goes on.
    Permanent,
    /// The producer cannot go on (its producer id is not authorized, or it was fenced).
    Fatal,
}

macro_rules! error_codes {
    ($( $code:literal $name:ident $wire:literal $class:ident, )*) => {
        /// A Kafka error code by name (protocol guide, "Error Codes").
        #[non_exhaustive]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $wire, "` (", stringify!($code), ").")]
                $name,
            )*
            /// Any other code.
            Other(i16),
        }

        impl ErrorCode {
            /// The code read off the wire.
            pub fn from_code(code: i16) -> ErrorCode {
                match code {
                    $( $code => ErrorCode::$name, )*
                    other => ErrorCode::Other(other),
                }
            }

            /// The wire value.
            pub const fn code(self) -> i16 {
                match self {
                    $( ErrorCode::$name => $code, )*
                    ErrorCode::Other(code) => code,
                }
            }

            /// The protocol guide's name, e.g. `NOT_LEADER_OR_FOLLOWER`.
            pub fn wire_name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $wire, )*
                    ErrorCode::Other(_) => "UNKNOWN",
                }
            }

            /// How a producer treats it.
            pub fn class(self) -> ErrorClass {
                match self {
                    $( ErrorCode::$name => ErrorClass::$class, )*
                    ErrorCode::Other(code) => match code.err() {
                        None => ErrorClass::Success,
                        Some(e) if e.is_retriable() => ErrorClass::Retriable,
                        Some(_) => ErrorClass::Permanent,
                    },
                }
            }
        }
    };
}

error_codes! {
    0 None "NONE" Success,
    -1 UnknownServerError "UNKNOWN_SERVER_ERROR" Permanent,
    1 OffsetOutOfRange "OFFSET_OUT_OF_RANGE" Permanent,
    2 CorruptMessage "CORRUPT_MESSAGE" Retriable,
    3 UnknownTopicOrPartition "UNKNOWN_TOPIC_OR_PARTITION" RefreshMetadata,
    5 LeaderNotAvailable "LEADER_NOT_AVAILABLE" RefreshMetadata,
    6 NotLeaderOrFollower "NOT_LEADER_OR_FOLLOWER" RefreshMetadata,
    7 RequestTimedOut "REQUEST_TIMED_OUT" Retriable,
    8 BrokerNotAvailable "BROKER_NOT_AVAILABLE" Permanent,
    9 ReplicaNotAvailable "REPLICA_NOT_AVAILABLE" RefreshMetadata,
    10 MessageTooLarge "MESSAGE_TOO_LARGE" Permanent,
    13 NetworkException "NETWORK_EXCEPTION" RefreshMetadata,
    14 CoordinatorLoadInProgress "COORDINATOR_LOAD_IN_PROGRESS" Retriable,
    15 CoordinatorNotAvailable "COORDINATOR_NOT_AVAILABLE" Retriable,
    16 NotCoordinator "NOT_COORDINATOR" Retriable,
    17 InvalidTopicException "INVALID_TOPIC_EXCEPTION" Permanent,
    18 RecordListTooLarge "RECORD_LIST_TOO_LARGE" Permanent,
    19 NotEnoughReplicas "NOT_ENOUGH_REPLICAS" Retriable,
    20 NotEnoughReplicasAfterAppend "NOT_ENOUGH_REPLICAS_AFTER_APPEND" Retriable,
    21 InvalidRequiredAcks "INVALID_REQUIRED_ACKS" Permanent,
    22 IllegalGeneration "ILLEGAL_GENERATION" Permanent,
    25 UnknownMemberId "UNKNOWN_MEMBER_ID" Permanent,
    29 TopicAuthorizationFailed "TOPIC_AUTHORIZATION_FAILED" Permanent,
    30 GroupAuthorizationFailed "GROUP_AUTHORIZATION_FAILED" Permanent,
    31 ClusterAuthorizationFailed "CLUSTER_AUTHORIZATION_FAILED" Fatal,
    32 InvalidTimestamp "INVALID_TIMESTAMP" Permanent,
    35 UnsupportedVersion "UNSUPPORTED_VERSION" Permanent,
    41 NotController "NOT_CONTROLLER" Retriable,
    42 InvalidRequest "INVALID_REQUEST" Permanent,
    43 UnsupportedForMessageFormat "UNSUPPORTED_FOR_MESSAGE_FORMAT" Permanent,
    44 PolicyViolation "POLICY_VIOLATION" Permanent,
    45 OutOfOrderSequenceNumber "OUT_OF_ORDER_SEQUENCE_NUMBER" Permanent,
    46 DuplicateSequenceNumber "DUPLICATE_SEQUENCE_NUMBER" Success,
    47 InvalidProducerEpoch "INVALID_PRODUCER_EPOCH" Fatal,
    48 InvalidTxnState "INVALID_TXN_STATE" Fatal,
    49 InvalidProducerIdMapping "INVALID_PRODUCER_ID_MAPPING" Permanent,
    50 InvalidTransactionTimeout "INVALID_TRANSACTION_TIMEOUT" Permanent,
    51 ConcurrentTransactions "CONCURRENT_TRANSACTIONS" Permanent,
    53 TransactionalIdAuthorizationFailed "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" Fatal,
    55 OperationNotAttempted "OPERATION_NOT_ATTEMPTED" Permanent,
    56 KafkaStorageError "KAFKA_STORAGE_ERROR" RefreshMetadata,
    58 SaslAuthenticationFailed "SASL_AUTHENTICATION_FAILED" Fatal,
    59 UnknownProducerId "UNKNOWN_PRODUCER_ID" Permanent,
    72 ListenerNotFound "LISTENER_NOT_FOUND" RefreshMetadata,
    74 FencedLeaderEpoch "FENCED_LEADER_EPOCH" RefreshMetadata,
    75 UnknownLeaderEpoch "UNKNOWN_LEADER_EPOCH" RefreshMetadata,
    76 UnsupportedCompressionType "UNSUPPORTED_COMPRESSION_TYPE" Permanent,
    80 PreferredLeaderNotAvailable "PREFERRED_LEADER_NOT_AVAILABLE" Retriable,
    82 FencedInstanceId "FENCED_INSTANCE_ID" Permanent,
    83 EligibleLeadersNotAvailable "ELIGIBLE_LEADERS_NOT_AVAILABLE" Retriable,
    87 InvalidRecord "INVALID_RECORD" Permanent,
    89 ThrottlingQuotaExceeded "THROTTLING_QUOTA_EXCEEDED" Retriable,
    90 ProducerFenced "PRODUCER_FENCED" Fatal,
    100 UnknownTopicId "UNKNOWN_TOPIC_ID" RefreshMetadata,
    103 InconsistentTopicId "INCONSISTENT_TOPIC_ID" RefreshMetadata,
    120 TransactionAbortable "TRANSACTION_ABORTABLE" Permanent,
    129 RebootstrapRequired "REBOOTSTRAP_REQUIRED" Permanent,
}

impl ErrorCode {
    /// Retried, with or without a metadata refresh.
    pub fn is_retriable(self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Retriable | ErrorClass::RefreshMetadata
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_round_trips_and_agrees_with_the_protocol_guide() {
        let mut wrong = Vec::new();
        for code in -1..=130i16 {
            let named = ErrorCode::from_code(code);
            assert_eq!(named.code(), code);
            if let ErrorCode::Other(_) = named {
                continue;
            }
            // Our retriable flag is the protocol guide's (kafka-protocol's table). (The
            // transaction calls have their own per-request table: `transaction::classify`,
            // which retries CONCURRENT_TRANSACTIONS as Java does.)
            let guide = code.err().is_some_and(|e| e.is_retriable());
            if !matches!(named, ErrorCode::None | ErrorCode::DuplicateSequenceNumber)
                && named.is_retriable() != guide
            {
                wrong.push(named);
            }
            let wire = named.wire_name().replace('_', "").to_lowercase();
            let guide_name = code
                .err()
                .map(|e| format!("{e:?}").to_lowercase())
                .unwrap_or_else(|| "none".into());
            assert_eq!(wire, guide_name, "{named:?}");
        }
        assert!(
            wrong.is_empty(),
            "retriable flag differs from the guide: {wrong:?}"
        );
        assert_eq!(ErrorCode::from_code(6).class(), ErrorClass::RefreshMetadata);
        assert_eq!(ErrorCode::from_code(31).class(), ErrorClass::Fatal);
        assert_eq!(ErrorCode::from_code(9999), ErrorCode::Other(9999));
    }
}
