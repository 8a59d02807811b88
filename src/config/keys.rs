//! Every configuration key with a field of its own, declared once (Java's
//! `ConfigDef.define(name, type, default, validator, importance, doc)`): its field, type,
//! default, [`Kind`] (parser, validator, printer), Java's default where ours differs, its
//! typed setter and its one-line meaning. [`keys!`] generates from that the field and its docs,
//! the defaults, the setter, the `set` arm, the build-time check and the documented row.
//! The TLS/SASL keys, which fill [`SecurityConfig`](crate::security::SecurityConfig), are in
//! `security_keys.rs`; rules across keys in `rules.rs`.
//!
//! Adding a key: one entry here, plus its use.

use super::kinds::{
    count, AcksKind, Choice, CompressionKind, Flag, Kind, Level, Ms, OptText, Servers, Text,
};
use super::{Acks, ConfigError, KeyDoc, ProducerConfigBuilder, JAVA_INT_MAX, JAVA_LONG_MAX};
use crate::protocol::record_batch::{
    Compression, DEFAULT_LZ4_LEVEL, DEFAULT_ZSTD_LEVEL, LZ4_LEVELS, ZSTD_LEVELS,
};
use crate::security::SecurityConfig;
use std::time::Duration;

/// The setter's assignment: the argument converted, or the argument itself.
macro_rules! convert {
    ($arg:ident) => {
        $arg
    };
    ($arg:ident, $conv:expr) => {
        $conv
    };
}

macro_rules! java_default {
    () => {
        None
    };
    ($java:literal) => {
        Some($java)
    };
}

macro_rules! keys {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr;
            $key:literal, $kind:expr $(, java $java:literal)?;
            fn($arg:ident: $argty:ty) $(= $conv:expr)?;
            $meaning:literal;
    )*) => {
        /// A validated producer configuration. Field docs give the Kafka key, unit and default.
        ///
        /// Build one with [`ProducerConfig::builder`] or load one from properties; constructing
        /// the struct by hand skips validation.
        #[derive(Clone, Debug)]
        pub struct ProducerConfig {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
            /// Whether `enable.idempotence` was set explicitly (then conflicts are errors
            /// instead of silently disabling idempotence); set by `build`. Not a Kafka key.
            pub enable_idempotence_explicit: bool,
            /// `security.protocol`, `ssl.*`, `sasl.*`: TLS and SASL (see [`crate::security`]).
            pub security: SecurityConfig,
            /// The rustls client configuration built from `ssl.*` by `build()` (TLS protocols
            /// only).
            pub(crate) tls_client_config: Option<std::sync::Arc<rustls::ClientConfig>>,
        }

        impl ProducerConfig {
            /// The defaults of every key (and no bootstrap servers).
            pub(super) fn defaults() -> Self {
                ProducerConfig {
                    $($field: $default,)*
                    enable_idempotence_explicit: false,
                    security: SecurityConfig::defaults(),
                    tls_client_config: None,
                }
            }

            /// Every field's value is valid for its key (typed setters skip parsing).
            pub(super) fn check_fields(&self) -> Result<(), ConfigError> {
                $(Kind::check(&$kind, $key, &self.$field)?;)*
                Ok(())
            }
        }

        impl ProducerConfigBuilder {
            $(
                #[doc = concat!("`", $key, "`: sets [`ProducerConfig::", stringify!($field), "`].")]
                pub fn $field(mut self, $arg: $argty) -> Self {
                    self.config.$field = convert!($arg $(, $conv)?);
                    self.set_keys.insert($key);
                    self
                }
            )*

            /// Sets a key of this table from its properties text; `None` if the key is not
            /// one of them.
            pub(super) fn set_field(
                &mut self,
                key: &str,
                v: &str,
            ) -> Option<Result<(), ConfigError>> {
                Some(match key {
                    $($key => Kind::parse(&$kind, $key, v).map(|value| {
                        self.config.$field = value;
                        self.set_keys.insert($key);
                    }),)*
                    _ => return None,
                })
            }
        }

        /// The documented row of every key of this table, its default printed by its kind.
        pub(super) fn field_docs() -> Vec<KeyDoc> {
            let d = ProducerConfig::defaults();
            vec![$(KeyDoc {
                key: $key,
                default: Kind::show(&$kind, &d.$field),
                meaning: $meaning,
                java_default: java_default!($($java)?),
            },)*]
        }
    };
}

keys! {
    /// `bootstrap.servers`: `host:port` brokers to fetch the initial metadata from.
    /// Required, no default; in properties a comma-separated list.
    bootstrap_servers: Vec<String> = Vec::new();
        "bootstrap.servers", Servers;
        fn(servers: impl IntoIterator<Item = impl Into<String>>) =
            servers.into_iter().map(Into::into).collect();
        "Required. Comma-separated host:port brokers for the initial metadata.";

    /// `client.id`: sent with every request, for broker logs and quotas.
    /// Default `"actix-kafka"` (Java's default is empty, then generated `producer-N`).
    client_id: String = "actix-kafka".to_string();
        "client.id", Text, java "";
        fn(id: impl Into<String>) = id.into();
        "Id sent with every request, for broker logs and quotas.";

    /// `acks`: replica acknowledgments required. Default [`Acks::All`] (KIP-679, Kafka 3.0).
    acks: Acks = Acks::All;
        "acks", AcksKind;
        fn(acks: Acks);
        "Replica acknowledgments required: all (= -1), 1 (leader only) or 0 (none). Default all \
        since Kafka 3.0 (KIP-679).";

    /// `linger.ms`: how long a batch waits for more records before it is sent.
    /// Milliseconds; default 5 ms (KIP-1030, Kafka 4.0).
    linger: Duration = Duration::from_millis(5);
        "linger.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(linger: Duration);
        "Milliseconds a batch waits for more records before it is sent (default 5 since Kafka 4.0, \
        KIP-1030).";

    /// `batch.size`: target size of one record batch, in bytes. Default 16384.
    /// 0 disables batching (one record per batch), as in Java.
    batch_size: usize = 16384;
        "batch.size", count::<usize>(0, JAVA_INT_MAX);
        fn(bytes: usize);
        "Target record batch size in bytes; 0 disables batching.";

    /// `max.request.size`: largest produce request (and largest record) in bytes.
    /// Default 1048576 (1 MiB).
    max_request_size: usize = 1_048_576;
        "max.request.size", count::<usize>(0, JAVA_INT_MAX);
        fn(bytes: usize);
        "Largest produce request (and record) in bytes.";

    /// `request.timeout.ms`: how long to wait for a broker's response before retrying.
    /// Milliseconds; default 30000.
    request_timeout: Duration = Duration::from_millis(30_000);
        "request.timeout.ms", Ms { min: 0, max: JAVA_INT_MAX };
        fn(timeout: Duration);
        "Milliseconds to wait for a broker response before retrying.";

    /// `delivery.timeout.ms`: upper bound from `send` to success or failure, retries
    /// included (KIP-91). Milliseconds; default 120000; must be
    /// `>= linger.ms + request.timeout.ms` (set explicitly, a smaller value is a conflict;
    /// else the default is raised to that sum, as Java).
    delivery_timeout: Duration = Duration::from_millis(120_000);
        "delivery.timeout.ms", Ms { min: 0, max: JAVA_INT_MAX };
        fn(timeout: Duration);
        "Milliseconds from send to success or failure, retries included (KIP-91); must be >= \
        linger.ms + request.timeout.ms.";

    /// `max.block.ms`: how long `send` may wait for metadata or mailbox room before failing.
    /// Milliseconds; default 60000.
    max_block: Duration = Duration::from_millis(60_000);
        "max.block.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(timeout: Duration);
        "Milliseconds send may wait for metadata or mailbox room.";

    /// `retries`: how many times a failed batch is resent (still bounded by
    /// `delivery.timeout.ms`). Count; default 2147483647 (KIP-91), range 0..=2147483647.
    retries: u32 = i32::MAX as u32;
        "retries", count::<u32>(0, JAVA_INT_MAX);
        fn(retries: u32);
        "How many times a failed batch is resent, within delivery.timeout.ms (KIP-91).";

    /// `retry.backoff.ms`: initial wait before retrying a failed request; grows
    /// exponentially up to `retry.backoff.max.ms` (KIP-580). Milliseconds; default 100.
    retry_backoff: Duration = Duration::from_millis(100);
        "retry.backoff.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(backoff: Duration);
        "Initial milliseconds before retrying a failed request; grows exponentially (KIP-580).";

    /// `retry.backoff.max.ms`: cap of the exponential retry backoff (KIP-580, Kafka 3.7).
    /// Milliseconds; default 1000. If smaller than `retry.backoff.ms`, it is used as a
    /// constant backoff, as in Java.
    retry_backoff_max: Duration = Duration::from_millis(1000);
        "retry.backoff.max.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(backoff: Duration);
        "Cap in milliseconds of the exponential retry backoff (KIP-580).";

    /// `reconnect.backoff.ms`: initial wait before reconnecting to a broker; grows
    /// exponentially up to `reconnect.backoff.max.ms`. Milliseconds; default 50.
    reconnect_backoff: Duration = Duration::from_millis(50);
        "reconnect.backoff.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(backoff: Duration);
        "Initial milliseconds before reconnecting to a broker; grows exponentially.";

    /// `reconnect.backoff.max.ms`: cap of the exponential reconnect backoff (KIP-144).
    /// Milliseconds; default 1000.
    reconnect_backoff_max: Duration = Duration::from_millis(1000);
        "reconnect.backoff.max.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(backoff: Duration);
        "Cap in milliseconds of the exponential reconnect backoff (KIP-144).";

    /// `metadata.max.age.ms`: metadata is refreshed at least this often even without
    /// errors. Milliseconds; default 300000 (5 min).
    metadata_max_age: Duration = Duration::from_millis(300_000);
        "metadata.max.age.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(age: Duration);
        "Milliseconds after which metadata is refreshed even without errors.";

    /// `max.in.flight.requests.per.connection`: unacknowledged produce requests per
    /// broker connection. Count; default 5; at least 1, at most 5 with idempotence.
    max_in_flight_requests_per_connection: usize = 5;
        "max.in.flight.requests.per.connection", count::<usize>(1, JAVA_INT_MAX);
        fn(n: usize);
        "Unacknowledged produce requests per broker connection; >= 1, <= 5 with idempotence.";

    /// `compression.type`: batch compression codec: `none` (default), `gzip`, `snappy`, `lz4`
    /// or `zstd` (case-insensitive in properties).
    compression: Compression = Compression::None;
        "compression.type", CompressionKind;
        fn(compression: Compression);
        "Batch compression: none, gzip, snappy, lz4 or zstd.";

    /// `compression.gzip.level`: gzip level (KIP-390, Kafka 3.8). Default -1 = the codec's
    /// default level (6); otherwise 1..=9.
    compression_gzip_level: i32 = -1;
        "compression.gzip.level", Level { levels: 1..=9, also: Some(-1) };
        fn(level: i32);
        "Gzip level: -1 for the codec default, else 1..=9 (KIP-390).";

    /// `compression.lz4.level`: LZ4 level (KIP-390, Kafka 3.8). Default 9; 1..=17.
    /// Validated but not applied yet: the LZ4 encoder used has a single (fast) level.
    compression_lz4_level: i32 = DEFAULT_LZ4_LEVEL;
        "compression.lz4.level", Level { levels: LZ4_LEVELS, also: None };
        fn(level: i32);
        "LZ4 level, 1..=17 (KIP-390); validated but not applied yet (the LZ4 encoder has one fast \
        level).";

    /// `compression.zstd.level`: zstd level (KIP-390, Kafka 3.8). Default 3; -131072..=22
    /// (negative levels are faster and compress less).
    compression_zstd_level: i32 = DEFAULT_ZSTD_LEVEL;
        "compression.zstd.level", Level { levels: ZSTD_LEVELS, also: None };
        fn(level: i32);
        "Zstd level, -131072..=22 (KIP-390); negative levels are faster and compress less.";

    /// `enable.idempotence`: producer ids and sequence numbers so retries cannot
    /// duplicate or reorder records. Default `true` (KIP-679, Kafka 3.0). When not set
    /// explicitly and `acks`, `retries` or `max.in.flight.requests.per.connection`
    /// conflict with it, it is turned off, as Java 3.2+ does; set (even to `true`), the
    /// conflicts are errors.
    enable_idempotence: bool = true;
        "enable.idempotence", Flag;
        fn(enable: bool);
        "Idempotent producer (no duplicates on retry); default true since Kafka 3.0 (KIP-679); \
        silently disabled on conflicts unless set explicitly.";

    /// `partitioner.ignore.keys`: if `true`, keyed records are spread like unkeyed ones
    /// instead of hashed by key (KIP-794, Kafka 3.3). Default `false`.
    partitioner_ignore_keys: bool = false;
        "partitioner.ignore.keys", Flag;
        fn(ignore: bool);
        "If true, keyed records are partitioned like unkeyed ones (KIP-794).";

    /// `partitioner.rack.aware`: keyless records prefer partitions whose leader is in
    /// `client.rack` (KIP-1123, Kafka 4.1), falling back to every partition with a leader when
    /// none is there. Needs `client.rack`. Default `false`. Only the built-in partitioner.
    partitioner_rack_aware: bool = false;
        "partitioner.rack.aware", Flag;
        fn(rack_aware: bool);
        "Keyless records prefer partitions led in client.rack (KIP-1123); needs client.rack.";

    /// `client.rack`: the rack (availability zone) the producer runs in, compared with the
    /// brokers' `broker.rack` by `partitioner.rack.aware`. Default empty.
    client_rack: String = String::new();
        "client.rack", Text;
        fn(rack: impl Into<String>) = rack.into();
        "The producer's rack, for partitioner.rack.aware (KIP-1123).";

    /// `allow.auto.create.topics`: let the broker auto-create topics the producer asks
    /// metadata for (KIP-487, if the broker allows it too). Default `true`.
    allow_auto_create_topics: bool = true;
        "allow.auto.create.topics", Flag;
        fn(allow: bool);
        "Let the broker auto-create topics the producer requests metadata for (KIP-487).";

    /// `metadata.max.idle.ms`: a topic nothing was sent to for this long (and for
    /// `delivery.timeout.ms`, so none of its records can still be pending) is dropped from the
    /// metadata the producer keeps and refreshes; the next `send` to it fetches it again.
    /// Default 5 min, at least 5 s (Java's bounds).
    metadata_max_idle: Duration = Duration::from_millis(300_000);
        "metadata.max.idle.ms", Ms { min: 5000, max: JAVA_LONG_MAX };
        fn(idle: Duration);
        "Milliseconds after which a topic nothing is sent to is dropped from the metadata kept (at \
        least 5000).";

    /// `metadata.recovery.strategy` (KIP-899): `rebootstrap` (default, as Java 4.0) goes back to
    /// `bootstrap.servers` for metadata when no known broker answers; `none` never does.
    metadata_rebootstrap: bool = true;
        "metadata.recovery.strategy", Choice { yes: "rebootstrap", no: "none" };
        fn(rebootstrap: bool);
        "rebootstrap: ask bootstrap.servers again when no known broker answers (KIP-899); none: \
        never.";

    /// `metadata.recovery.rebootstrap.trigger.ms` (KIP-1102): rebootstrap also when no metadata
    /// answer came for this long. Default 5 min.
    metadata_rebootstrap_trigger: Duration = Duration::from_millis(300_000);
        "metadata.recovery.rebootstrap.trigger.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(trigger: Duration);
        "Milliseconds without a metadata answer after which the producer rebootstraps.";

    /// `connections.max.idle.ms`: close broker connections idle this long.
    /// Milliseconds; default 540000 (9 min).
    connections_max_idle: Duration = Duration::from_millis(540_000);
        "connections.max.idle.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(idle: Duration);
        "Milliseconds after which idle broker connections are closed.";

    /// `socket.connection.setup.timeout.ms`: how long a TCP connect may take (KIP-601).
    /// Milliseconds; default 10000.
    socket_connection_setup_timeout: Duration = Duration::from_millis(10_000);
        "socket.connection.setup.timeout.ms", Ms { min: 0, max: JAVA_LONG_MAX };
        fn(timeout: Duration);
        "Milliseconds a TCP connect may take (KIP-601).";

    /// `transactional.id`: makes the producer transactional (KIP-98): `init_transactions`
    /// fences older producers with the same id, and records are sent inside transactions.
    /// Implies `enable.idempotence` (an explicit `false`, or `acks`/`retries`/in-flight values
    /// that conflict with it, are errors). Default none (empty in properties).
    transactional_id: Option<String> = None;
        "transactional.id", OptText;
        fn(id: impl Into<String>) = Some(id.into());
        "Makes the producer transactional (KIP-98); implies enable.idempotence. Use \
        init_transactions, begin_transaction, commit_transaction / abort_transaction.";

    /// `transaction.timeout.ms`: how long the transaction coordinator lets a transaction stay
    /// open before aborting it (and fencing this producer's epoch). Milliseconds; default
    /// 60000; at least 1 with a `transactional.id`; at most the broker's
    /// `transaction.max.timeout.ms` (else `init_transactions` fails with
    /// `INVALID_TRANSACTION_TIMEOUT`).
    transaction_timeout: Duration = Duration::from_millis(60_000);
        "transaction.timeout.ms", Ms { min: 0, max: JAVA_INT_MAX };
        fn(timeout: Duration);
        "Milliseconds the coordinator lets a transaction stay open before aborting it; <= the \
        broker's transaction.max.timeout.ms.";

    /// `mailbox.capacity` (actix-kafka only, not a Java key): records a per-partition
    /// accumulator mailbox holds before `send` waits. Count; default 1024; at least 1.
    mailbox_capacity: usize = 1024;
        "mailbox.capacity", count::<usize>(1, JAVA_INT_MAX);
        fn(records: usize);
        "actix-kafka only: records a per-partition accumulator mailbox holds before send waits.";

    /// `max.pending.batches.per.partition` (actix-kafka only, not a Java key): closed
    /// batches per partition not yet acknowledged before the accumulator stops taking
    /// records. Count; default 5; at least 1.
    max_pending_batches_per_partition: usize = 5;
        "max.pending.batches.per.partition", count::<usize>(1, JAVA_INT_MAX);
        fn(batches: usize);
        "actix-kafka only: closed, unacknowledged batches per partition before the accumulator \
        stops taking records.";

    /// `queue.buffering.max.messages` (librdkafka's name and default; Java bounds bytes with
    /// `buffer.memory` instead): records accepted by `send` and not yet completed, over all
    /// partitions. Past it `send` waits (at most `max.block.ms`, then `QueueFull`) and
    /// `try_send` fails with `QueueFull`, so the producer's memory stays bounded however many
    /// partitions it writes to (each partition's `mailbox.capacity` alone would let 2,000
    /// partitions hold 2 million records). Count; default 100000; at least 1. A bound within
    /// the records of the calls in progress (each takes its room before it queues).
    queue_buffering_max_messages: usize = 100_000;
        "queue.buffering.max.messages", count::<usize>(1, JAVA_INT_MAX);
        fn(records: usize);
        "librdkafka's key: records accepted and not yet completed, over all partitions, before \
        send waits (max.block.ms) or try_send fails (QueueFull).";
}
