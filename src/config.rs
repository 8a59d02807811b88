//! Producer configuration: the Java producer's config names and Java 4.x defaults.
//!
//! Build a [`ProducerConfig`] with the typed [`ProducerConfigBuilder`]
//! (`ProducerConfig::builder()`), or load one from Kafka-style properties with
//! [`ProducerConfig::from_properties_str`], [`ProducerConfig::from_properties_file`] or
//! [`ProducerConfig::from_map`]. Keys, defaults and validation rules follow the Java
//! client's `ProducerConfig` (Apache Kafka 4.x) unless a doc comment says otherwise;
//! two keys are ours (`mailbox.capacity`, `max.pending.batches.per.partition`).
//! Java keys we do not implement yet are rejected with [`ConfigError::Unsupported`]
//! rather than silently ignored, and any other key is a [`ConfigError::UnknownKey`].

use crate::security::sasl::{parse_jaas, SaslMechanism};
use crate::security::{OAuthTokenProvider, PemSource, SecurityConfig, SecurityProtocol};
use secrecy::SecretString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::protocol::record_batch::{
    Compression, CompressionLevels, DEFAULT_LZ4_LEVEL, DEFAULT_ZSTD_LEVEL, LZ4_LEVELS, ZSTD_LEVELS,
};

/// Largest value of a Java `int` config (`Integer.MAX_VALUE`).
const JAVA_INT_MAX: u64 = i32::MAX as u64;
/// Largest value of a Java `long` config (`Long.MAX_VALUE`).
const JAVA_LONG_MAX: u64 = i64::MAX as u64;
/// Java's `MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION_FOR_IDEMPOTENCE`.
const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = 5;

/// `acks`: how many replica acknowledgments the leader waits for before answering a
/// produce request. Java default since 3.0 (KIP-679): [`Acks::All`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no response is awaited; the record counts as sent once written to the socket.
    None,
    /// `acks=1`: the partition leader has written the record to its log.
    Leader,
    /// `acks=all` (or `-1`): all in-sync replicas have the record. Required for idempotence.
    All,
}

impl Acks {
    /// The wire value of the produce request's `acks` field: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl fmt::Display for Acks {
    /// The properties spelling: `0`, `1` or `all`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

impl FromStr for Acks {
    type Err = ConfigError;

    /// Parses `all` (any case), `-1`, `0` or `1`, as Java's `acks` validator; anything
    /// else is [`ConfigError::InvalidValue`] for key `acks`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "-1" => Ok(Acks::All),
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            _ if s.eq_ignore_ascii_case("all") => Ok(Acks::All),
            _ => Err(invalid("acks", s, "expected one of all, -1, 0, 1")),
        }
    }
}

/// Errors from building or loading a [`ProducerConfig`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is neither a Java producer key nor one of ours (typo?).
    #[error("unknown config key `{key}`")]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// The value does not parse as the key's type or is out of its range.
    #[error("invalid value `{value}` for config key `{key}`: {reason}")]
    InvalidValue {
        /// The config key.
        key: String,
        /// The value as given (or as formatted, for typed setters).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A valid Kafka key or value that actix-kafka does not support yet.
    #[error("config `{key}={value}` is not supported by actix-kafka yet: {reason}")]
    Unsupported {
        /// The config key.
        key: String,
        /// The value as given.
        value: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// Several keys are individually valid but contradict each other
    /// (e.g. `enable.idempotence=true` with `acks=1`).
    #[error("conflicting config: {reason}")]
    Conflict {
        /// Which keys conflict and how to fix it.
        reason: String,
    },
    /// A required key (`bootstrap.servers`) was not set or is empty.
    #[error("missing required config key `{key}`")]
    Missing {
        /// The missing key.
        key: String,
    },
    /// A properties file could not be read.
    #[error("cannot read config file `{path}`: {reason}")]
    Io {
        /// The file path, as displayed.
        path: String,
        /// The I/O error message.
        reason: String,
    },
}

fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn unsupported(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A validated producer configuration. Field docs give the Kafka key, unit and default.
///
/// Build one with [`ProducerConfig::builder`] or load one from properties; constructing
/// the struct by hand skips validation.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: `host:port` brokers to fetch the initial metadata from.
    /// Required, no default; in properties a comma-separated list.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent with every request, for broker logs and quotas.
    /// Default `"actix-kafka"` (Java's default is empty, then generated `producer-N`).
    pub client_id: String,
    /// `acks`: replica acknowledgments required. Default [`Acks::All`] (KIP-679, Kafka 3.0).
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    /// Milliseconds; default 5 ms (KIP-1030, Kafka 4.0).
    pub linger: Duration,
    /// `batch.size`: target size of one record batch, in bytes. Default 16384.
    /// 0 disables batching (one record per batch), as in Java.
    pub batch_size: usize,
    /// `max.request.size`: largest produce request (and largest record) in bytes.
    /// Default 1048576 (1 MiB).
    pub max_request_size: usize,
    /// `request.timeout.ms`: how long to wait for a broker's response before retrying.
    /// Milliseconds; default 30000.
    pub request_timeout: Duration,
    /// `delivery.timeout.ms`: upper bound from `send` to success or failure, retries
    /// included (KIP-91). Milliseconds; default 120000; must be
    /// `>= linger.ms + request.timeout.ms`.
    pub delivery_timeout: Duration,
    /// `max.block.ms`: how long `send` may wait for metadata or mailbox room before failing.
    /// Milliseconds; default 60000.
    pub max_block: Duration,
    /// `retries`: how many times a failed batch is resent (still bounded by
    /// `delivery.timeout.ms`). Count; default 2147483647 (KIP-91), range 0..=2147483647.
    pub retries: u32,
    /// `retry.backoff.ms`: initial wait before retrying a failed request; grows
    /// exponentially up to `retry.backoff.max.ms` (KIP-580). Milliseconds; default 100.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: cap of the exponential retry backoff (KIP-580, Kafka 3.7).
    /// Milliseconds; default 1000. If smaller than `retry.backoff.ms`, it is used as a
    /// constant backoff, as in Java.
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`: initial wait before reconnecting to a broker; grows
    /// exponentially up to `reconnect.backoff.max.ms`. Milliseconds; default 50.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: cap of the exponential reconnect backoff (KIP-144).
    /// Milliseconds; default 1000.
    pub reconnect_backoff_max: Duration,
    /// `metadata.max.age.ms`: metadata is refreshed at least this often even without
    /// errors. Milliseconds; default 300000 (5 min).
    pub metadata_max_age: Duration,
    /// `max.in.flight.requests.per.connection`: unacknowledged produce requests per
    /// broker connection. Count; default 5; at least 1, at most 5 with idempotence.
    pub max_in_flight_requests_per_connection: usize,
    /// `compression.type`: batch compression codec: `none` (default), `gzip`, `snappy`, `lz4`
    /// or `zstd` (case-insensitive in properties).
    pub compression: Compression,
    /// `compression.gzip.level`: gzip level (KIP-390, Kafka 3.8). Default -1 = the codec's
    /// default level (6); otherwise 1..=9.
    pub compression_gzip_level: i32,
    /// `compression.lz4.level`: LZ4 level (KIP-390, Kafka 3.8). Default 9; 1..=17.
    /// Validated but not applied yet: the LZ4 encoder used has a single (fast) level.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`: zstd level (KIP-390, Kafka 3.8). Default 3; -131072..=22
    /// (negative levels are faster and compress less).
    pub compression_zstd_level: i32,
    /// `enable.idempotence`: producer ids and sequence numbers so retries cannot
    /// duplicate or reorder records. Default `true` (KIP-679, Kafka 3.0). When not set
    /// explicitly and `acks`, `retries` or `max.in.flight.requests.per.connection`
    /// conflict with it, it is turned off, as Java 3.2+ does.
    pub enable_idempotence: bool,
    /// Whether `enable.idempotence` was set explicitly (then conflicts are errors
    /// instead of silently disabling idempotence). Not a Kafka key.
    pub enable_idempotence_explicit: bool,
    /// `partitioner.ignore.keys`: if `true`, keyed records are spread like unkeyed ones
    /// instead of hashed by key (KIP-794, Kafka 3.3). Default `false`.
    pub partitioner_ignore_keys: bool,
    /// `allow.auto.create.topics`: let the broker auto-create topics the producer asks
    /// metadata for (KIP-487, if the broker allows it too). Default `true`.
    pub allow_auto_create_topics: bool,
    /// `metadata.max.idle.ms`: a topic nothing was sent to for this long (and for
    /// `delivery.timeout.ms`, so none of its records can still be pending) is dropped from the
    /// metadata the producer keeps and refreshes; the next `send` to it fetches it again.
    /// Default 5 min, at least 5 s (Java's bounds).
    pub metadata_max_idle: Duration,
    /// `metadata.recovery.strategy` (KIP-899): `rebootstrap` (default, as Java 4.0) goes back to
    /// `bootstrap.servers` for metadata when no known broker answers; `none` never does.
    pub metadata_rebootstrap: bool,
    /// `metadata.recovery.rebootstrap.trigger.ms` (KIP-1102): rebootstrap also when no metadata
    /// answer came for this long. Default 5 min.
    pub metadata_rebootstrap_trigger: Duration,
    /// `connections.max.idle.ms`: close broker connections idle this long.
    /// Milliseconds; default 540000 (9 min).
    pub connections_max_idle: Duration,
    /// `socket.connection.setup.timeout.ms`: how long a TCP connect may take (KIP-601).
    /// Milliseconds; default 10000.
    pub socket_connection_setup_timeout: Duration,
    /// `mailbox.capacity` (actix-kafka only, not a Java key): records a per-partition
    /// accumulator mailbox holds before `send` waits. Count; default 1024; at least 1.
    pub mailbox_capacity: usize,
    /// `queue.buffering.max.messages` (librdkafka's name and default; Java bounds bytes with
    /// `buffer.memory` instead): records accepted by `send` and not yet completed, over all
    /// partitions. Past it `send` waits (at most `max.block.ms`, then `QueueFull`) and
    /// `try_send` fails with `QueueFull`, so the producer's memory stays bounded however many
    /// partitions it writes to (each partition's `mailbox.capacity` alone would let 2,000
    /// partitions hold 2 million records). Count; default 100000; at least 1. A bound within
    /// the records of the calls in progress (each takes its room before it queues).
    pub queue_buffering_max_messages: usize,
    /// `max.pending.batches.per.partition` (actix-kafka only, not a Java key): closed
    /// batches per partition not yet acknowledged before the accumulator stops taking
    /// records. Count; default 5; at least 1.
    pub max_pending_batches_per_partition: usize,
    /// `transactional.id`: makes the producer transactional (KIP-98): `init_transactions`
    /// fences older producers with the same id, and records are sent inside transactions.
    /// Implies `enable.idempotence` (an explicit `false`, or `acks`/`retries`/in-flight values
    /// that conflict with it, are errors). Default none.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: how long the transaction coordinator lets a transaction stay
    /// open before aborting it (and fencing this producer's epoch). Milliseconds; default
    /// 60000; at most the broker's `transaction.max.timeout.ms` (else `init_transactions`
    /// fails with `INVALID_TRANSACTION_TIMEOUT`).
    pub transaction_timeout: Duration,
    /// `security.protocol`, `ssl.*`, `sasl.*`: TLS and SASL (see [`crate::security`]).
    pub security: SecurityConfig,
    /// The rustls client configuration built from `ssl.*` by `build()` (TLS protocols only).
    pub(crate) tls_client_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Every supported key, its default (as a properties value) and its meaning.
static DOCUMENTED_KEYS: &[(&str, &str, &str)] = &[
    ("bootstrap.servers", "", "Required. Comma-separated host:port brokers for the initial metadata."),
    ("client.id", "actix-kafka", "Id sent with every request, for broker logs and quotas."),
    ("acks", "all", "Replica acknowledgments required: all (= -1), 1 (leader only) or 0 (none). Default all since Kafka 3.0 (KIP-679)."),
    ("linger.ms", "5", "Milliseconds a batch waits for more records before it is sent (default 5 since Kafka 4.0, KIP-1030)."),
    ("batch.size", "16384", "Target record batch size in bytes; 0 disables batching."),
    ("max.request.size", "1048576", "Largest produce request (and record) in bytes."),
    ("request.timeout.ms", "30000", "Milliseconds to wait for a broker response before retrying."),
    ("delivery.timeout.ms", "120000", "Milliseconds from send to success or failure, retries included (KIP-91); must be >= linger.ms + request.timeout.ms."),
    ("max.block.ms", "60000", "Milliseconds send may wait for metadata or mailbox room."),
    ("retries", "2147483647", "How many times a failed batch is resent, within delivery.timeout.ms (KIP-91)."),
    ("retry.backoff.ms", "100", "Initial milliseconds before retrying a failed request; grows exponentially (KIP-580)."),
    ("retry.backoff.max.ms", "1000", "Cap in milliseconds of the exponential retry backoff (KIP-580)."),
    ("reconnect.backoff.ms", "50", "Initial milliseconds before reconnecting to a broker; grows exponentially."),
    ("reconnect.backoff.max.ms", "1000", "Cap in milliseconds of the exponential reconnect backoff (KIP-144)."),
    ("metadata.max.age.ms", "300000", "Milliseconds after which metadata is refreshed even without errors."),
    ("max.in.flight.requests.per.connection", "5", "Unacknowledged produce requests per broker connection; >= 1, <= 5 with idempotence."),
    ("compression.type", "none", "Batch compression: none, gzip, snappy, lz4 or zstd."),
    ("compression.gzip.level", "-1", "Gzip level: -1 for the codec default, else 1..=9 (KIP-390)."),
    ("compression.lz4.level", "9", "LZ4 level, 1..=17 (KIP-390); validated but not applied yet (the LZ4 encoder has one fast level)."),
    ("compression.zstd.level", "3", "Zstd level, -131072..=22 (KIP-390); negative levels are faster and compress less."),
    ("enable.idempotence", "true", "Idempotent producer (no duplicates on retry); default true since Kafka 3.0 (KIP-679); silently disabled on conflicts unless set explicitly."),
    ("partitioner.ignore.keys", "false", "If true, keyed records are partitioned like unkeyed ones (KIP-794)."),
    ("allow.auto.create.topics", "true", "Let the broker auto-create topics the producer requests metadata for (KIP-487)."),
    ("metadata.max.idle.ms", "300000", "Milliseconds after which a topic nothing is sent to is dropped from the metadata kept (at least 5000)."),
    ("metadata.recovery.strategy", "rebootstrap", "rebootstrap: ask bootstrap.servers again when no known broker answers (KIP-899); none: never."),
    ("metadata.recovery.rebootstrap.trigger.ms", "300000", "Milliseconds without a metadata answer after which the producer rebootstraps."),
    ("connections.max.idle.ms", "540000", "Milliseconds after which idle broker connections are closed."),
    ("socket.connection.setup.timeout.ms", "10000", "Milliseconds a TCP connect may take (KIP-601)."),
    ("transactional.id", "", "Makes the producer transactional (KIP-98); implies enable.idempotence. Use init_transactions, begin_transaction, commit_transaction / abort_transaction."),
    ("transaction.timeout.ms", "60000", "Milliseconds the coordinator lets a transaction stay open before aborting it; <= the broker's transaction.max.timeout.ms."),
    ("security.protocol", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
    ("ssl.truststore.type", "PEM", "Only PEM (JKS and PKCS12 are refused: convert them to PEM)."),
    ("ssl.truststore.location", "", "PEM file of the CA certificates to trust; without it (and without ssl.truststore.certificates) the system's roots."),
    ("ssl.truststore.certificates", "", "The CA certificates as inline PEM."),
    ("ssl.keystore.type", "PEM", "Only PEM: the client key and certificate chain for mutual TLS."),
    ("ssl.keystore.location", "", "PEM file holding the client's private key (PKCS#8) and certificate chain (mTLS)."),
    ("ssl.keystore.certificate.chain", "", "The client certificate chain as inline PEM (with ssl.keystore.key)."),
    ("ssl.keystore.key", "", "The client private key as inline PEM (unencrypted PKCS#8)."),
    ("ssl.key.password", "", "Password of an encrypted PKCS#8 private key (PBES2: PBKDF2 + AES-CBC, as openssl pkcs8 -topk8 -v2 aes-256-cbc writes)."),
    ("ssl.endpoint.identification.algorithm", "https", "https: the broker certificate must name the host; empty: not checked (INSECURE)."),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", "TLS versions offered."),
    ("sasl.mechanism", "GSSAPI", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; the Java default GSSAPI (Kerberos) is refused."),
    ("sasl.jaas.config", "", "Java JAAS line: PlainLoginModule / ScramLoginModule required username=\"..\" password=\"..\"; or OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"..\";"),
    ("sasl.username", "", "Convenience (librdkafka's name): the SASL user instead of sasl.jaas.config."),
    ("sasl.password", "", "Convenience (librdkafka's name): the SASL password instead of sasl.jaas.config."),
    ("mailbox.capacity", "1024", "actix-kafka only: records a per-partition accumulator mailbox holds before send waits."),
    ("max.pending.batches.per.partition", "5", "actix-kafka only: closed, unacknowledged batches per partition before the accumulator stops taking records."),
    ("queue.buffering.max.messages", "100000", "librdkafka's key: records accepted and not yet completed, over all partitions, before send waits (max.block.ms) or try_send fails (QueueFull)."),
];

impl ProducerConfig {
    /// A builder starting from the Java 4.x defaults (and no bootstrap servers).
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder::new()
    }

    /// Parse `key=value` lines (Java .properties subset: `#`/`!` comments, blank lines,
    /// `key=value` or `key: value`, surrounding whitespace trimmed).
    ///
    /// Like Java, a key may also be separated from its value by whitespace alone, a line
    /// ending in an odd number of backslashes continues on the next line, and a later
    /// duplicate key wins. Other escape sequences are not interpreted.
    pub fn from_properties_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_map(parse_properties(text))
    }

    /// Read a UTF-8 properties file and parse it like [`ProducerConfig::from_properties_str`].
    /// Read failures are [`ConfigError::Io`].
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_properties_str(&text)
    }

    /// Build from `(key, value)` string pairs, applied in order with
    /// [`ProducerConfigBuilder::set`] (later duplicates win), then validated.
    pub fn from_map<I, K, V>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        entries
            .into_iter()
            .try_fold(Self::builder(), |b, (k, v)| b.set(k.as_ref(), v.as_ref()))?
            .build()
    }

    /// (key, value, meaning) for every supported key with its default, for README and
    /// `--help`. `bootstrap.servers` has no default (its value is empty).
    pub fn documented_keys() -> &'static [(&'static str, &'static str, &'static str)] {
        DOCUMENTED_KEYS
    }

    /// The configuration table as Markdown (`| key | default | meaning |`, one row per
    /// [`ProducerConfig::documented_keys`] entry): the README's "Configuration keys" table,
    /// printed by `cargo run --example config_keys`. A key without a default shows `(none)`
    /// (unset; `bootstrap.servers` says in its meaning that it is required).
    pub fn keys_markdown() -> String {
        let mut table = String::from("| key | default | meaning |\n|---|---|---|\n");
        for (key, default, meaning) in DOCUMENTED_KEYS {
            let default = if default.is_empty() {
                "(none)".to_string()
            } else {
                format!("`{default}`")
            };
            let meaning = meaning.replace('|', "\\|");
            table.push_str(&format!("| `{key}` | {default} | {meaning} |\n"));
        }
        table
    }

    /// The KIP-390 levels of all codecs in the form
    /// [`RecordBatchBuilder::with_levels`](crate::protocol::record_batch::RecordBatchBuilder::with_levels)
    /// takes: gzip -1 becomes `None` (the codec default), lz4 and zstd are always `Some`.
    pub fn compression_levels(&self) -> CompressionLevels {
        CompressionLevels {
            gzip: u32::try_from(self.compression_gzip_level).ok(),
            lz4: Some(self.compression_lz4_level),
            zstd: Some(self.compression_zstd_level),
        }
    }

    fn defaults() -> Self {
        ProducerConfig {
            bootstrap_servers: Vec::new(),
            client_id: "actix-kafka".to_string(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16384,
            max_request_size: 1_048_576,
            request_timeout: Duration::from_millis(30_000),
            delivery_timeout: Duration::from_millis(120_000),
            max_block: Duration::from_millis(60_000),
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            metadata_max_age: Duration::from_millis(300_000),
            max_in_flight_requests_per_connection: 5,
            compression: Compression::None,
            compression_gzip_level: -1,
            compression_lz4_level: DEFAULT_LZ4_LEVEL,
            compression_zstd_level: DEFAULT_ZSTD_LEVEL,
            enable_idempotence: true,
            enable_idempotence_explicit: false,
            partitioner_ignore_keys: false,
            allow_auto_create_topics: true,
            metadata_max_idle: Duration::from_millis(300_000),
            metadata_rebootstrap: true,
            metadata_rebootstrap_trigger: Duration::from_millis(300_000),
            connections_max_idle: Duration::from_millis(540_000),
            socket_connection_setup_timeout: Duration::from_millis(10_000),
            mailbox_capacity: 1024,
            queue_buffering_max_messages: 100_000,
            max_pending_batches_per_partition: 5,
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
            security: SecurityConfig::defaults(),
            tls_client_config: None,
        }
    }
}

/// Splits Java properties text into trimmed `(key, value)` pairs, in order (the parser behind
/// [`ProducerConfig::from_properties_str`]; for tools that merge a file with overrides before
/// [`ProducerConfig::from_map`]).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut line = first.trim_start().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        // Java line continuation: an odd number of trailing backslashes.
        while ends_with_odd_backslashes(&line) {
            line.pop();
            match lines.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        let line = line.trim_end();
        let sep = line
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(line.len());
        let key = &line[..sep];
        let mut rest = line[sep..].trim_start();
        if let Some(stripped) = rest.strip_prefix(['=', ':']) {
            rest = stripped.trim_start();
        }
        out.push((key.to_string(), rest.to_string()));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Builder for [`ProducerConfig`]: typed setters (one per key, named after the field)
/// and [`set`](ProducerConfigBuilder::set) for string properties. Starts from the
/// Java 4.x defaults; [`build`](ProducerConfigBuilder::build) validates.
#[derive(Clone, Debug)]
pub struct ProducerConfigBuilder {
    config: ProducerConfig,
    delivery_timeout_explicit: bool,
}

impl Default for ProducerConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProducerConfigBuilder {
    /// Same as [`ProducerConfig::builder`].
    pub fn new() -> Self {
        ProducerConfigBuilder {
            config: ProducerConfig::defaults(),
            delivery_timeout_explicit: false,
        }
    }

    /// `bootstrap.servers`: `host:port` brokers (required).
    pub fn bootstrap_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.bootstrap_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// `client.id` (default `"actix-kafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }

    /// `acks` (default [`Acks::All`]).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.config.acks = acks;
        self
    }

    /// `linger.ms` (default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// `batch.size` in bytes (default 16384).
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.config.batch_size = bytes;
        self
    }

    /// `max.request.size` in bytes (default 1048576).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.config.max_request_size = bytes;
        self
    }

    /// `request.timeout.ms` (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// `delivery.timeout.ms` (default 120 s). Setting it makes the
    /// `>= linger.ms + request.timeout.ms` rule an error instead of a silent raise.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.config.delivery_timeout = timeout;
        self.delivery_timeout_explicit = true;
        self
    }

    /// `max.block.ms` (default 60 s).
    pub fn max_block(mut self, timeout: Duration) -> Self {
        self.config.max_block = timeout;
        self
    }

    /// `retries` (default 2147483647; at most 2147483647).
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// `retry.backoff.ms` (default 100 ms).
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.config.retry_backoff = backoff;
        self
    }

    /// `retry.backoff.max.ms` (default 1 s, KIP-580).
    pub fn retry_backoff_max(mut self, backoff: Duration) -> Self {
        self.config.retry_backoff_max = backoff;
        self
    }

    /// `reconnect.backoff.ms` (default 50 ms).
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.config.reconnect_backoff = backoff;
        self
    }

    /// `reconnect.backoff.max.ms` (default 1 s).
    pub fn reconnect_backoff_max(mut self, backoff: Duration) -> Self {
        self.config.reconnect_backoff_max = backoff;
        self
    }

    /// `metadata.max.age.ms` (default 5 min).
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.config.metadata_max_age = age;
        self
    }

    /// `max.in.flight.requests.per.connection` (default 5, at least 1).
    pub fn max_in_flight_requests_per_connection(mut self, n: usize) -> Self {
        self.config.max_in_flight_requests_per_connection = n;
        self
    }

    /// `compression.type` (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// `compression.gzip.level` (-1 = default, else 1..=9).
    pub fn compression_gzip_level(mut self, level: i32) -> Self {
        self.config.compression_gzip_level = level;
        self
    }

    /// `compression.lz4.level` (default 9, 1..=17; validated but not applied yet).
    pub fn compression_lz4_level(mut self, level: i32) -> Self {
        self.config.compression_lz4_level = level;
        self
    }

    /// `compression.zstd.level` (default 3, -131072..=22).
    pub fn compression_zstd_level(mut self, level: i32) -> Self {
        self.config.compression_zstd_level = level;
        self
    }

    /// `enable.idempotence` (default true). Setting it, even to `true`, makes conflicts
    /// with `acks`, `retries` and `max.in.flight.requests.per.connection` errors (KIP-679).
    pub fn enable_idempotence(mut self, enable: bool) -> Self {
        self.config.enable_idempotence = enable;
        self.config.enable_idempotence_explicit = true;
        self
    }

    /// `transactional.id` (default none): makes the producer transactional; implies
    /// idempotence. See [`crate::Producer::init_transactions`].
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.config.transactional_id = Some(id.into());
        self
    }

    /// `transaction.timeout.ms` (default 60 s).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.config.transaction_timeout = timeout;
        self
    }

    /// `partitioner.ignore.keys` (default false, KIP-794).
    pub fn partitioner_ignore_keys(mut self, ignore: bool) -> Self {
        self.config.partitioner_ignore_keys = ignore;
        self
    }

    /// `allow.auto.create.topics` (default true).
    pub fn allow_auto_create_topics(mut self, allow: bool) -> Self {
        self.config.allow_auto_create_topics = allow;
        self
    }

    /// `metadata.max.idle.ms` (default 5 min, at least 5 s).
    pub fn metadata_max_idle(mut self, idle: Duration) -> Self {
        self.config.metadata_max_idle = idle;
        self
    }

    /// `metadata.recovery.strategy`: `true` = `rebootstrap` (default), `false` = `none`.
    pub fn metadata_rebootstrap(mut self, rebootstrap: bool) -> Self {
        self.config.metadata_rebootstrap = rebootstrap;
        self
    }

    /// `metadata.recovery.rebootstrap.trigger.ms` (default 5 min).
    pub fn metadata_rebootstrap_trigger(mut self, trigger: Duration) -> Self {
        self.config.metadata_rebootstrap_trigger = trigger;
        self
    }

    /// `connections.max.idle.ms` (default 9 min).
    pub fn connections_max_idle(mut self, idle: Duration) -> Self {
        self.config.connections_max_idle = idle;
        self
    }

    /// `socket.connection.setup.timeout.ms` (default 10 s).
    pub fn socket_connection_setup_timeout(mut self, timeout: Duration) -> Self {
        self.config.socket_connection_setup_timeout = timeout;
        self
    }

    /// `queue.buffering.max.messages` (records over all partitions, default 100000, at least
    /// 1).
    pub fn queue_buffering_max_messages(mut self, records: usize) -> Self {
        self.config.queue_buffering_max_messages = records;
        self
    }

    /// `mailbox.capacity` (ours; records, default 1024, at least 1).
    pub fn mailbox_capacity(mut self, records: usize) -> Self {
        self.config.mailbox_capacity = records;
        self
    }

    /// `max.pending.batches.per.partition` (ours; batches, default 5, at least 1).
    pub fn max_pending_batches_per_partition(mut self, batches: usize) -> Self {
        self.config.max_pending_batches_per_partition = batches;
        self
    }

    /// `security.protocol` (default PLAINTEXT).
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.config.security.protocol = protocol;
        self
    }

    /// `ssl.truststore.location`: PEM file of the CA certificates to trust.
    pub fn ssl_truststore_location(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.security.tls.truststore = Some(PemSource::File(path.into()));
        self
    }

    /// `ssl.keystore.location`: PEM file with the client's private key and certificate chain.
    pub fn ssl_keystore_location(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.security.tls.keystore = Some(PemSource::File(path.into()));
        self
    }

    /// `ssl.endpoint.identification.algorithm`: `true` = `https` (default); `false` = empty,
    /// which accepts a trusted certificate for any host name (**insecure**).
    pub fn ssl_endpoint_identification(mut self, verify_hostname: bool) -> Self {
        self.config.security.tls.verify_hostname = verify_hostname;
        self
    }

    /// `sasl.mechanism`.
    pub fn sasl_mechanism(mut self, mechanism: SaslMechanism) -> Self {
        self.config.security.sasl.mechanism_name = mechanism.name().to_string();
        self.config.security.sasl.mechanism = Some(mechanism);
        self
    }

    /// SASL user and password (PLAIN, SCRAM), as `sasl.jaas.config` would set them.
    pub fn sasl_credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.config.security.sasl.username = Some(username.into());
        self.config.security.sasl.password = Some(password);
        self
    }

    /// OAUTHBEARER tokens from the application (sets `sasl.mechanism=OAUTHBEARER`).
    pub fn oauth_token_provider(
        mut self,
        provider: std::sync::Arc<dyn OAuthTokenProvider>,
    ) -> Self {
        self.config.security.sasl.token_provider = Some(provider);
        self.sasl_mechanism(SaslMechanism::OAuthBearer)
    }

    /// Set one key from its string form (value trimmed). Unparsable or out-of-range
    /// values are [`ConfigError::InvalidValue`], Java keys we do not implement are
    /// [`ConfigError::Unsupported`], anything else is [`ConfigError::UnknownKey`].
    /// Cross-key rules are checked by [`build`](Self::build).
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, ConfigError> {
        let key = key.trim();
        let v = value.trim();
        Ok(match key {
            "bootstrap.servers" => {
                let servers = parse_servers(v)?;
                self.bootstrap_servers(servers)
            }
            "client.id" => self.client_id(v),
            "acks" => self.acks(v.parse()?),
            "linger.ms" => self.linger(parse_ms(key, v, JAVA_LONG_MAX)?),
            "batch.size" => self.batch_size(parse_count(key, v, 0, JAVA_INT_MAX)?),
            "max.request.size" => self.max_request_size(parse_count(key, v, 0, JAVA_INT_MAX)?),
            "request.timeout.ms" => self.request_timeout(parse_ms(key, v, JAVA_INT_MAX)?),
            "delivery.timeout.ms" => self.delivery_timeout(parse_ms(key, v, JAVA_INT_MAX)?),
            "max.block.ms" => self.max_block(parse_ms(key, v, JAVA_LONG_MAX)?),
            "retries" => self.retries(parse_count(key, v, 0, JAVA_INT_MAX)? as u32),
            "retry.backoff.ms" => self.retry_backoff(parse_ms(key, v, JAVA_LONG_MAX)?),
            "retry.backoff.max.ms" => self.retry_backoff_max(parse_ms(key, v, JAVA_LONG_MAX)?),
            "reconnect.backoff.ms" => self.reconnect_backoff(parse_ms(key, v, JAVA_LONG_MAX)?),
            "reconnect.backoff.max.ms" => {
                self.reconnect_backoff_max(parse_ms(key, v, JAVA_LONG_MAX)?)
            }
            "metadata.max.age.ms" => self.metadata_max_age(parse_ms(key, v, JAVA_LONG_MAX)?),
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection(parse_count(key, v, 1, JAVA_INT_MAX)?)
            }
            "compression.type" => self.compression(parse_compression(v)?),
            "compression.gzip.level" => {
                let level = parse_level(key, v)?;
                check_gzip_level(level)?;
                self.compression_gzip_level(level)
            }
            "compression.lz4.level" => {
                let level = parse_level(key, v)?;
                check_lz4_level(level)?;
                self.compression_lz4_level(level)
            }
            "compression.zstd.level" => {
                let level = parse_level(key, v)?;
                check_zstd_level(level)?;
                self.compression_zstd_level(level)
            }
            "enable.idempotence" => self.enable_idempotence(parse_bool(key, v)?),
            "transactional.id" => {
                self.config.transactional_id = (!v.is_empty()).then(|| v.to_string());
                self
            }
            "transaction.timeout.ms" => self.transaction_timeout(parse_ms(key, v, JAVA_INT_MAX)?),
            "partitioner.ignore.keys" => self.partitioner_ignore_keys(parse_bool(key, v)?),
            "allow.auto.create.topics" => self.allow_auto_create_topics(parse_bool(key, v)?),
            "metadata.max.idle.ms" => self.metadata_max_idle(parse_ms(key, v, JAVA_LONG_MAX)?),
            "metadata.recovery.strategy" => match v.to_ascii_lowercase().as_str() {
                "rebootstrap" => self.metadata_rebootstrap(true),
                "none" => self.metadata_rebootstrap(false),
                _ => return Err(invalid(key, v, "expected rebootstrap or none")),
            },
            "metadata.recovery.rebootstrap.trigger.ms" => {
                self.metadata_rebootstrap_trigger(parse_ms(key, v, JAVA_LONG_MAX)?)
            }
            "connections.max.idle.ms" => {
                self.connections_max_idle(parse_ms(key, v, JAVA_LONG_MAX)?)
            }
            "socket.connection.setup.timeout.ms" => {
                self.socket_connection_setup_timeout(parse_ms(key, v, JAVA_LONG_MAX)?)
            }
            "mailbox.capacity" => self.mailbox_capacity(parse_count(key, v, 1, JAVA_INT_MAX)?),
            "queue.buffering.max.messages" => {
                self.queue_buffering_max_messages(parse_count(key, v, 1, JAVA_INT_MAX)?)
            }
            "max.pending.batches.per.partition" => {
                self.max_pending_batches_per_partition(parse_count(key, v, 1, JAVA_INT_MAX)?)
            }
            "security.protocol" => {
                let protocol: SecurityProtocol = v.parse().map_err(|_| {
                    invalid(
                        key,
                        v,
                        "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                    )
                })?;
                self.security_protocol(protocol)
            }
            "ssl.truststore.type" | "ssl.keystore.type" => {
                if !v.eq_ignore_ascii_case("PEM") {
                    return Err(unsupported(
                        key,
                        v,
                        "only PEM stores are read: convert JKS/PKCS12 to PEM (keytool -importkeystore \
                         to PKCS12, then openssl pkcs12 -nodes)",
                    ));
                }
                self
            }
            // Empty values unset the optional security keys (Java treats them as null).
            "ssl.truststore.location"
            | "ssl.truststore.certificates"
            | "ssl.keystore.location"
            | "ssl.keystore.certificate.chain"
                if v.is_empty() =>
            {
                if key.starts_with("ssl.truststore") {
                    self.config.security.tls.truststore = None;
                } else {
                    self.config.security.tls.keystore = None;
                }
                self
            }
            "ssl.keystore.key" | "ssl.key.password" | "sasl.jaas.config" | "sasl.username"
            | "sasl.password"
                if v.is_empty() =>
            {
                match key {
                    "ssl.keystore.key" => self.config.security.tls.keystore_key = None,
                    "ssl.key.password" => self.config.security.tls.key_password = None,
                    "sasl.username" => self.config.security.sasl.username = None,
                    "sasl.password" => self.config.security.sasl.password = None,
                    _ => {
                        let sasl = &mut self.config.security.sasl;
                        sasl.jaas_family = None;
                        sasl.unsecured_sub = None;
                    }
                }
                self
            }
            "ssl.truststore.location" => {
                self.config.security.tls.truststore = Some(PemSource::File(PathBuf::from(v)));
                self
            }
            "ssl.truststore.certificates" => {
                self.config.security.tls.truststore = Some(PemSource::Inline(v.to_string()));
                self
            }
            // PEM files carry no store password (Java ignores it for PEM too).
            "ssl.truststore.password" | "ssl.keystore.password" => self,
            "ssl.keystore.location" => {
                self.config.security.tls.keystore = Some(PemSource::File(PathBuf::from(v)));
                self
            }
            "ssl.keystore.certificate.chain" => {
                self.config.security.tls.keystore = Some(PemSource::Inline(v.to_string()));
                self
            }
            "ssl.keystore.key" => {
                self.config.security.tls.keystore_key = Some(SecretString::from(v.to_string()));
                self
            }
            "ssl.key.password" => {
                self.config.security.tls.key_password = Some(SecretString::from(v.to_string()));
                self
            }
            "ssl.endpoint.identification.algorithm" => match v.to_ascii_lowercase().as_str() {
                "https" => self.ssl_endpoint_identification(true),
                "" => self.ssl_endpoint_identification(false),
                _ => return Err(invalid(key, v, "expected https or empty")),
            },
            "ssl.enabled.protocols" | "ssl.protocol" => {
                let (mut tls12, mut tls13) = (false, false);
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match p {
                        "TLSv1.2" => tls12 = true,
                        "TLSv1.3" | "TLS" => tls13 = true,
                        _ => return Err(invalid(key, v, "only TLSv1.2 and TLSv1.3 are offered")),
                    }
                }
                if key == "ssl.protocol" {
                    // Java's ssl.protocol names the newest version to use; allow both below it.
                    tls12 = true;
                }
                self.config.security.tls.tls12 = tls12;
                self.config.security.tls.tls13 = tls13;
                self
            }
            "sasl.mechanism" => {
                self.config.security.sasl.mechanism_name = v.to_ascii_uppercase();
                self.config.security.sasl.mechanism = SaslMechanism::parse(v).ok();
                self
            }
            "sasl.jaas.config" => {
                let jaas = parse_jaas(v).map_err(|reason| invalid(key, "(hidden)", reason))?;
                let sasl = &mut self.config.security.sasl;
                sasl.jaas_family = jaas.family();
                if sasl.jaas_family.is_none() {
                    return Err(unsupported(
                        key,
                        &jaas.module,
                        "login modules: PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule",
                    ));
                }
                if let Some(u) = jaas.get("username") {
                    sasl.username = Some(u.to_string());
                }
                if let Some(p) = jaas.get("password") {
                    sasl.password = Some(SecretString::from(p.to_string()));
                }
                if let Some(sub) = jaas.get("unsecuredLoginStringClaim_sub") {
                    sasl.unsecured_sub = Some(sub.to_string());
                }
                self
            }
            "sasl.username" => {
                self.config.security.sasl.username = Some(v.to_string());
                self
            }
            "sasl.password" => {
                self.config.security.sasl.password = Some(SecretString::from(v.to_string()));
                self
            }
            _ => {
                return Err(match unsupported_reason(key) {
                    Some(reason) => unsupported(key, v, reason),
                    None => ConfigError::UnknownKey {
                        key: key.to_string(),
                    },
                })
            }
        })
    }

    /// Validate and return the config.
    ///
    /// Checks, in order: `bootstrap.servers` present ([`ConfigError::Missing`]) and
    /// well-formed; per-key ranges (compression levels included); idempotence (KIP-679, Java 3.2+:
    /// an explicit `enable.idempotence=true` with `acks` other than all, `retries=0` or
    /// more than 5 in-flight requests is a [`ConfigError::Conflict`]; when not explicit,
    /// idempotence is turned off instead); and `delivery.timeout.ms >= linger.ms +
    /// request.timeout.ms` (as Java: a `Conflict` if `delivery.timeout.ms` was set
    /// explicitly, otherwise the default is raised to that sum).
    pub fn build(self) -> Result<ProducerConfig, ConfigError> {
        let mut c = self.config;

        if c.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing {
                key: "bootstrap.servers".to_string(),
            });
        }
        for server in &c.bootstrap_servers {
            check_server(server)?;
        }

        check_ms("linger.ms", c.linger, JAVA_LONG_MAX)?;
        check_range("batch.size", c.batch_size as u64, 0, JAVA_INT_MAX)?;
        check_range(
            "max.request.size",
            c.max_request_size as u64,
            0,
            JAVA_INT_MAX,
        )?;
        check_ms("request.timeout.ms", c.request_timeout, JAVA_INT_MAX)?;
        check_ms("delivery.timeout.ms", c.delivery_timeout, JAVA_INT_MAX)?;
        check_ms("max.block.ms", c.max_block, JAVA_LONG_MAX)?;
        check_range("retries", u64::from(c.retries), 0, JAVA_INT_MAX)?;
        check_ms("retry.backoff.ms", c.retry_backoff, JAVA_LONG_MAX)?;
        check_ms("retry.backoff.max.ms", c.retry_backoff_max, JAVA_LONG_MAX)?;
        check_ms("reconnect.backoff.ms", c.reconnect_backoff, JAVA_LONG_MAX)?;
        check_ms(
            "reconnect.backoff.max.ms",
            c.reconnect_backoff_max,
            JAVA_LONG_MAX,
        )?;
        check_ms("metadata.max.age.ms", c.metadata_max_age, JAVA_LONG_MAX)?;
        check_range(
            "max.in.flight.requests.per.connection",
            c.max_in_flight_requests_per_connection as u64,
            1,
            JAVA_INT_MAX,
        )?;
        check_gzip_level(c.compression_gzip_level)?;
        check_lz4_level(c.compression_lz4_level)?;
        check_zstd_level(c.compression_zstd_level)?;
        if c.metadata_max_idle < Duration::from_secs(5) {
            return Err(invalid(
                "metadata.max.idle.ms",
                c.metadata_max_idle.as_millis().to_string(),
                "must be at least 5000",
            ));
        }
        check_ms(
            "connections.max.idle.ms",
            c.connections_max_idle,
            JAVA_LONG_MAX,
        )?;
        check_ms(
            "socket.connection.setup.timeout.ms",
            c.socket_connection_setup_timeout,
            JAVA_LONG_MAX,
        )?;
        check_range(
            "mailbox.capacity",
            c.mailbox_capacity as u64,
            1,
            JAVA_INT_MAX,
        )?;
        check_range(
            "queue.buffering.max.messages",
            c.queue_buffering_max_messages as u64,
            1,
            JAVA_INT_MAX,
        )?;
        check_range(
            "max.pending.batches.per.partition",
            c.max_pending_batches_per_partition as u64,
            1,
            JAVA_INT_MAX,
        )?;

        if c.transactional_id.is_some() {
            check_ms(
                "transaction.timeout.ms",
                c.transaction_timeout,
                JAVA_INT_MAX,
            )?;
            if c.transaction_timeout.is_zero() {
                return Err(invalid(
                    "transaction.timeout.ms",
                    "0",
                    "must be at least 1 ms",
                ));
            }
            if !c.enable_idempotence {
                return Err(ConfigError::Conflict {
                    reason: "transactional.id requires enable.idempotence=true (KIP-98)".into(),
                });
            }
            // A transactional producer is idempotent: conflicts below are errors, never a
            // silent downgrade.
            c.enable_idempotence_explicit = true;
        }
        if c.enable_idempotence {
            let mut conflicts = Vec::new();
            if c.acks != Acks::All {
                conflicts.push(format!("acks={} (must be all)", c.acks));
            }
            if c.retries == 0 {
                conflicts.push("retries=0 (must be > 0)".to_string());
            }
            if c.max_in_flight_requests_per_connection > MAX_IN_FLIGHT_FOR_IDEMPOTENCE {
                conflicts.push(format!(
                    "max.in.flight.requests.per.connection={} (must be <= {})",
                    c.max_in_flight_requests_per_connection, MAX_IN_FLIGHT_FOR_IDEMPOTENCE
                ));
            }
            if !conflicts.is_empty() {
                if c.enable_idempotence_explicit {
                    return Err(ConfigError::Conflict {
                        reason: format!(
                            "enable.idempotence=true conflicts with {}; fix those keys or set \
                             enable.idempotence=false",
                            conflicts.join(", ")
                        ),
                    });
                }
                c.enable_idempotence = false;
            }
        }

        let floor = c.linger.saturating_add(c.request_timeout);
        if c.delivery_timeout < floor {
            if self.delivery_timeout_explicit {
                return Err(ConfigError::Conflict {
                    reason: format!(
                        "delivery.timeout.ms={} must be >= linger.ms ({}) + request.timeout.ms ({})",
                        c.delivery_timeout.as_millis(),
                        c.linger.as_millis(),
                        c.request_timeout.as_millis()
                    ),
                });
            }
            // Java raises the default for backward compatibility (capped at Integer.MAX_VALUE).
            c.delivery_timeout = floor.min(Duration::from_millis(JAVA_INT_MAX));
        }

        check_security(&mut c)?;
        Ok(c)
    }
}

/// `security.protocol` with its `ssl.*` / `sasl.*` keys: builds the TLS configuration (reading
/// the PEM stores) and checks that SASL has a supported mechanism and its credentials.
fn check_security(c: &mut ProducerConfig) -> Result<(), ConfigError> {
    let protocol = c.security.protocol;
    c.tls_client_config = None;
    if protocol.uses_tls() {
        let tls = crate::security::tls::client_config(&c.security.tls)
            .map_err(|reason| invalid("ssl.*", protocol.name(), reason))?;
        c.tls_client_config = Some(tls);
    }
    if !protocol.uses_sasl() {
        return Ok(());
    }
    let sasl = &c.security.sasl;
    let Some(mechanism) = sasl.mechanism else {
        let name = sasl.mechanism_name.clone();
        let reason = SaslMechanism::parse(&name)
            .err()
            .unwrap_or_else(|| "unsupported".into());
        return Err(unsupported("sasl.mechanism", &name, reason));
    };
    let family = match mechanism {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => "SCRAM",
        SaslMechanism::OAuthBearer => "OAUTHBEARER",
    };
    if let Some(j) = sasl.jaas_family {
        if j != family {
            return Err(ConfigError::Conflict {
                reason: format!(
                    "sasl.jaas.config uses the {j} login module but sasl.mechanism is {}",
                    mechanism.name()
                ),
            });
        }
    }
    match mechanism {
        SaslMechanism::OAuthBearer => {
            if sasl.token_provider.is_none() && sasl.unsecured_sub.is_none() {
                return Err(ConfigError::Missing {
                    key: "sasl.jaas.config (OAuthBearerLoginModule with \
                          unsecuredLoginStringClaim_sub) or an OAuthTokenProvider"
                        .into(),
                });
            }
        }
        _ => {
            if sasl.username.as_deref().is_none_or(str::is_empty) || sasl.password.is_none() {
                return Err(ConfigError::Missing {
                    key:
                        "sasl.jaas.config (username and password) or sasl.username + sasl.password"
                            .into(),
                });
            }
        }
    }
    Ok(())
}

/// Why a Java producer key (or key family) is not supported; `None` for unknown keys.
fn unsupported_reason(key: &str) -> Option<&'static str> {
    if key.starts_with("sasl.login.") || key.starts_with("sasl.oauthbearer.") {
        return Some("OAUTHBEARER tokens come from an OAuthTokenProvider in code (or the unsecured JWS of sasl.jaas.config)");
    }
    if key.starts_with("sasl.kerberos.") {
        return Some("GSSAPI (Kerberos) is not supported");
    }
    if key.starts_with("sasl.") {
        return Some("this SASL setting is not supported; see the README's security section");
    }
    if key.starts_with("ssl.") {
        return Some("this TLS setting is not supported (PEM stores, TLSv1.2/1.3, host name verification are)");
    }
    Some(match key {
        "buffer.memory" => {
            "back-pressure is mailbox limits: use mailbox.capacity / \
             max.pending.batches.per.partition / queue.buffering.max.messages"
        }
        "transaction.two.phase.commit.enable" => {
            "two-phase commit with an external coordinator (KIP-939) is not supported"
        }
        "key.serializer" | "value.serializer" => "pass serializers in code",
        "partitioner.class" => "pass a custom partitioner in code",
        "interceptor.classes" => "producer interceptors are not supported",
        "security.providers" => "TLS uses rustls with its ring provider",
        "partitioner.adaptive.partitioning.enable" | "partitioner.availability.timeout.ms" => {
            "adaptive partitioning (KIP-794) is not implemented yet"
        }
        "metric.reporters"
        | "metrics.num.samples"
        | "metrics.recording.level"
        | "metrics.sample.window.ms"
        | "auto.include.jmx.reporter"
        | "enable.metrics.push" => "Java metrics reporting is not implemented",
        "send.buffer.bytes" | "receive.buffer.bytes" => "socket buffer sizes use OS defaults",
        "client.dns.lookup" => "bootstrap addresses are resolved with the system resolver",
        "socket.connection.setup.timeout.max.ms" => "not implemented yet",
        _ => return None,
    })
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(key, v, "expected true or false"))
    }
}

/// An integer in `min..=max`.
fn parse_count(key: &str, v: &str, min: u64, max: u64) -> Result<usize, ConfigError> {
    let n: i128 = v
        .parse()
        .map_err(|_| invalid(key, v, "expected an integer"))?;
    if n < i128::from(min) || n > i128::from(max) {
        return Err(invalid(key, v, format!("must be in {min}..={max}")));
    }
    usize::try_from(n).map_err(|_| invalid(key, v, "too large for this platform"))
}

/// A non-negative integer number of milliseconds, at most `max`.
fn parse_ms(key: &str, v: &str, max: u64) -> Result<Duration, ConfigError> {
    let n: i128 = v
        .parse()
        .map_err(|_| invalid(key, v, "expected an integer number of milliseconds"))?;
    if n < 0 || n > i128::from(max) {
        return Err(invalid(
            key,
            v,
            format!("milliseconds must be in 0..={max}"),
        ));
    }
    Ok(Duration::from_millis(n as u64))
}

fn check_range(key: &str, n: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if n < min || n > max {
        return Err(invalid(key, n, format!("must be in {min}..={max}")));
    }
    Ok(())
}

fn check_ms(key: &str, d: Duration, max: u64) -> Result<(), ConfigError> {
    if d.as_millis() > u128::from(max) {
        return Err(invalid(
            key,
            d.as_millis(),
            format!("milliseconds must be in 0..={max}"),
        ));
    }
    Ok(())
}

fn check_gzip_level(level: i32) -> Result<(), ConfigError> {
    if level == -1 || (1..=9).contains(&level) {
        Ok(())
    } else {
        Err(invalid(
            "compression.gzip.level",
            level,
            "expected -1 (default) or 1..=9",
        ))
    }
}

fn check_lz4_level(level: i32) -> Result<(), ConfigError> {
    if LZ4_LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(invalid(
            "compression.lz4.level",
            level,
            format!("expected {}..={}", LZ4_LEVELS.start(), LZ4_LEVELS.end()),
        ))
    }
}

fn check_zstd_level(level: i32) -> Result<(), ConfigError> {
    if ZSTD_LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(invalid(
            "compression.zstd.level",
            level,
            format!("expected {}..={}", ZSTD_LEVELS.start(), ZSTD_LEVELS.end()),
        ))
    }
}

/// A compression level: a Java `int`.
fn parse_level(key: &str, v: &str) -> Result<i32, ConfigError> {
    v.parse::<i32>()
        .map_err(|_| invalid(key, v, "expected an integer"))
}

/// `compression.type`: none, gzip, snappy, lz4 or zstd, in any case.
fn parse_compression(v: &str) -> Result<Compression, ConfigError> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => {
            return Err(invalid(
                "compression.type",
                v,
                "expected one of none, gzip, snappy, lz4, zstd",
            ))
        }
    })
    .and_then(|c| {
        let compiled = match c {
            Compression::None => true,
            Compression::Gzip => cfg!(feature = "gzip"),
            Compression::Snappy => cfg!(feature = "snappy"),
            Compression::Lz4 => cfg!(feature = "lz4"),
            Compression::Zstd => cfg!(feature = "zstd"),
        };
        if compiled {
            Ok(c)
        } else {
            Err(unsupported(
                "compression.type",
                v,
                format!("built without the `{}` cargo feature", c.name()),
            ))
        }
    })
}

/// Split a comma-separated `bootstrap.servers` value, dropping empty entries.
fn parse_servers(v: &str) -> Result<Vec<String>, ConfigError> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| check_server(s).map(|()| s.to_string()))
        .collect()
}

/// `host:port` (IPv6 hosts in brackets, `[::1]:9092`), port 1..=65535.
fn check_server(s: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| invalid("bootstrap.servers", s, reason);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() || host == "[]" || host.chars().any(char::is_whitespace) {
        return Err(bad("expected host:port with a non-empty host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("expected host:port with a port in 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ProducerConfigBuilder {
        ProducerConfig::builder().bootstrap_servers(["localhost:9092"])
    }

    #[test]
    fn defaults_match_java() {
        let c = base().build().unwrap();
        assert_eq!(c.bootstrap_servers, vec!["localhost:9092".to_string()]);
        assert_eq!(c.client_id, "actix-kafka");
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.acks.as_i16(), -1);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.max_request_size, 1_048_576);
        assert_eq!(c.request_timeout, Duration::from_millis(30_000));
        assert_eq!(c.delivery_timeout, Duration::from_millis(120_000));
        assert_eq!(c.max_block, Duration::from_millis(60_000));
        assert_eq!(c.retries, 2_147_483_647);
        assert_eq!(c.retry_backoff, Duration::from_millis(100));
        assert_eq!(c.retry_backoff_max, Duration::from_millis(1000));
        assert_eq!(c.reconnect_backoff, Duration::from_millis(50));
        assert_eq!(c.reconnect_backoff_max, Duration::from_millis(1000));
        assert_eq!(c.metadata_max_age, Duration::from_millis(300_000));
        assert_eq!(c.max_in_flight_requests_per_connection, 5);
        assert!(matches!(c.compression, Compression::None));
        assert_eq!(c.compression_gzip_level, -1);
        assert_eq!(c.compression_lz4_level, 9);
        assert_eq!(c.compression_zstd_level, 3);
        assert!(c.enable_idempotence);
        assert!(!c.enable_idempotence_explicit);
        assert!(!c.partitioner_ignore_keys);
        assert!(c.allow_auto_create_topics);
        assert_eq!(c.connections_max_idle, Duration::from_millis(540_000));
        assert_eq!(
            c.socket_connection_setup_timeout,
            Duration::from_millis(10_000)
        );
        assert_eq!(c.mailbox_capacity, 1024);
        assert_eq!(c.max_pending_batches_per_partition, 5);
    }

    #[test]
    fn documented_defaults_equal_builder_defaults() {
        let mut entries: Vec<(String, String)> = ProducerConfig::documented_keys()
            .iter()
            .map(|(k, v, _)| (k.to_string(), v.to_string()))
            .collect();
        entries.push(("bootstrap.servers".into(), "localhost:9092".into()));
        let from_docs = ProducerConfig::from_map(entries).unwrap();
        let defaults = base().build().unwrap();
        // Only enable_idempotence_explicit differs: the docs list sets it.
        assert!(from_docs.enable_idempotence_explicit);
        let mut from_docs = from_docs;
        from_docs.enable_idempotence_explicit = false;
        assert_eq!(format!("{from_docs:?}"), format!("{defaults:?}"));
    }

    /// The README's configuration table is the generated one: this fails when a key, default
    /// or meaning changed and the README was not regenerated
    /// (`cargo run --example config_keys`).
    #[test]
    fn the_readme_configuration_table_is_current() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme
            .find("| key | default | meaning |")
            .expect("the README has the configuration table");
        let table: String = readme[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            table,
            ProducerConfig::keys_markdown(),
            "README.md is stale: regenerate its table with `cargo run --example config_keys`"
        );
    }

    #[test]
    fn every_documented_key_is_accepted_by_set() {
        for (key, value, meaning) in ProducerConfig::documented_keys() {
            assert!(!meaning.is_empty(), "{key} has no meaning");
            ProducerConfig::builder()
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
    }

    #[test]
    fn acks_parsing() {
        for (s, a) in [
            ("all", Acks::All),
            ("ALL", Acks::All),
            ("-1", Acks::All),
            ("1", Acks::Leader),
            ("0", Acks::None),
        ] {
            assert_eq!(s.parse::<Acks>().unwrap(), a);
        }
        assert_eq!(Acks::Leader.as_i16(), 1);
        assert_eq!(Acks::None.as_i16(), 0);
        assert!(matches!(
            "2".parse::<Acks>(),
            Err(ConfigError::InvalidValue { key, .. }) if key == "acks"
        ));
    }

    #[test]
    fn parses_properties_text_with_comments() {
        let text = "\
# a comment
! another comment

bootstrap.servers = broker1:9092, broker2:9093 ,
client.id: my-app
   acks=1
enable.idempotence=false
linger.ms 20
compression.type=gzip
compression.gzip.level=9
compression.lz4.level=12
compression.zstd.level=-3
max.request.size=\\
    2097152
delivery.timeout.ms=60000\r
mailbox.capacity=64
";
        let c = ProducerConfig::from_properties_str(text).unwrap();
        assert_eq!(c.bootstrap_servers, vec!["broker1:9092", "broker2:9093"]);
        assert_eq!(c.client_id, "my-app");
        assert_eq!(c.acks, Acks::Leader);
        assert!(!c.enable_idempotence);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert!(matches!(c.compression, Compression::Gzip));
        assert_eq!(c.compression_gzip_level, 9);
        assert_eq!(c.compression_lz4_level, 12);
        assert_eq!(c.compression_zstd_level, -3);
        assert_eq!(c.max_request_size, 2_097_152);
        assert_eq!(c.delivery_timeout, Duration::from_millis(60_000));
        assert_eq!(c.mailbox_capacity, 64);
    }

    #[test]
    fn properties_file_and_io_error() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "actix-kafka-config-test-{}.properties",
            std::process::id()
        ));
        std::fs::write(&path, "bootstrap.servers=[::1]:9092\nretries=3\n").unwrap();
        let c = ProducerConfig::from_properties_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.bootstrap_servers, vec!["[::1]:9092"]);
        assert_eq!(c.retries, 3);

        let missing = dir.join("actix-kafka-config-test-does-not-exist.properties");
        let err = ProducerConfig::from_properties_file(&missing).unwrap_err();
        assert!(matches!(&err, ConfigError::Io { path, .. } if path.contains("does-not-exist")));
    }

    #[test]
    fn unknown_key() {
        let err = base().set("foo.bar", "1").unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "foo.bar".into()
            }
        );
        assert_eq!(err.to_string(), "unknown config key `foo.bar`");
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (key, value) in [
            ("linger.ms", "abc"),
            ("linger.ms", "-1"),
            ("batch.size", "1.5"),
            ("retries", "-1"),
            ("retries", "2147483648"),
            ("request.timeout.ms", "2147483648"),
            ("max.in.flight.requests.per.connection", "0"),
            ("acks", "2"),
            ("enable.idempotence", "yes"),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.gzip.level", "-2"),
            ("compression.gzip.level", "six"),
            ("compression.lz4.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.lz4.level", "-1"),
            ("compression.lz4.level", "1.5"),
            ("compression.zstd.level", "23"),
            ("compression.zstd.level", "-131073"),
            ("compression.zstd.level", "2147483648"),
            ("compression.zstd.level", "fast"),
            ("mailbox.capacity", "0"),
            ("max.pending.batches.per.partition", "0"),
            ("bootstrap.servers", "localhost"),
            ("bootstrap.servers", "localhost:0"),
            ("bootstrap.servers", ":9092"),
            ("security.protocol", "TLS"),
        ] {
            match base().set(key, value) {
                Err(ConfigError::InvalidValue {
                    key: k, value: v, ..
                }) => {
                    assert_eq!(k, key);
                    assert!(value.contains(&v) || v.contains(value), "{v} vs {value}");
                }
                other => panic!("{key}={value}: expected InvalidValue, got {other:?}"),
            }
        }
        // Typed setters are checked by build.
        let err = base()
            .max_in_flight_requests_per_connection(0)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. }
            if key == "max.in.flight.requests.per.connection"));
        let err = base().compression_gzip_level(0).build().unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. }
            if key == "compression.gzip.level"));
        let err = base().compression_lz4_level(18).build().unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. }
            if key == "compression.lz4.level"));
        let err = base().compression_zstd_level(23).build().unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. }
            if key == "compression.zstd.level"));
        let err = base().mailbox_capacity(0).build().unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. } if key == "mailbox.capacity"));
        let err = ProducerConfig::builder()
            .bootstrap_servers(["nope"])
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key, .. } if key == "bootstrap.servers"));
    }

    #[test]
    fn unsupported_keys_and_values() {
        for (key, value, hint) in [
            ("buffer.memory", "33554432", "mailbox.capacity"),
            (
                "transaction.two.phase.commit.enable",
                "true",
                "two-phase commit",
            ),
            ("ssl.truststore.type", "JKS", "PEM"),
            ("ssl.keystore.type", "PKCS12", "PEM"),
            ("sasl.kerberos.service.name", "kafka", "GSSAPI"),
            (
                "sasl.login.callback.handler.class",
                "a.B",
                "OAuthTokenProvider",
            ),
            ("ssl.engine.factory.class", "a.B", "TLS setting"),
            ("interceptor.classes", "a.B", "interceptors"),
            ("partitioner.class", "a.B", "in code"),
            ("key.serializer", "a.B", "pass serializers in code"),
            ("value.serializer", "a.B", "pass serializers in code"),
        ] {
            match base().set(key, value) {
                Err(ConfigError::Unsupported { key: k, reason, .. }) => {
                    assert_eq!(k, key);
                    assert!(reason.contains(hint), "{key}: {reason}");
                }
                other => panic!("{key}={value}: expected Unsupported, got {other:?}"),
            }
        }
        assert!(base().set("security.protocol", "plaintext").is_ok());
    }

    #[test]
    fn security_settings_are_validated_at_build() {
        let sasl = |props: &[(&str, &str)]| {
            let mut b = base().set("security.protocol", "SASL_PLAINTEXT").unwrap();
            for (k, v) in props {
                b = b.set(k, v).unwrap();
            }
            b.build()
        };
        // Java's default mechanism is GSSAPI: refused with a hint.
        match sasl(&[("sasl.username", "u"), ("sasl.password", "p")]) {
            Err(ConfigError::Unsupported { reason, .. }) => assert!(reason.contains("Kerberos")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sasl(&[("sasl.mechanism", "SCRAM-SHA-256")]),
            Err(ConfigError::Missing { .. })
        ));
        let jaas = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cr3t-pw";"#;
        let c = sasl(&[
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", jaas),
        ])
        .unwrap();
        assert_eq!(c.security.sasl.username.as_deref(), Some("alice"));
        assert!(!format!("{c:?}").contains("s3cr3t-pw"), "password in Debug");
        assert!(matches!(
            sasl(&[("sasl.mechanism", "PLAIN"), ("sasl.jaas.config", jaas)]),
            Err(ConfigError::Conflict { .. })
        ));
        let oauth = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";";
        assert!(sasl(&[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", oauth)
        ])
        .is_ok());
        assert!(matches!(
            sasl(&[("sasl.mechanism", "OAUTHBEARER")]),
            Err(ConfigError::Missing { .. })
        ));
        // TLS: an unreadable truststore is an error naming the file at build time.
        let e = base()
            .set("security.protocol", "SSL")
            .unwrap()
            .set("ssl.truststore.location", "/nonexistent/ca.pem")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = base()
            .set("security.protocol", "SSL")
            .unwrap()
            .set("ssl.truststore.certificates", "not a pem")
            .unwrap()
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("PEM"), "{e}");
    }

    #[test]
    fn every_compression_type_is_accepted() {
        for (value, want) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
            ("NONE", Compression::None),
            ("Gzip", Compression::Gzip),
            ("SNAPPY", Compression::Snappy),
            ("LZ4", Compression::Lz4),
            (" ZStd ", Compression::Zstd),
        ] {
            let c = base()
                .set("compression.type", value)
                .unwrap_or_else(|e| panic!("{value}: {e}"))
                .build()
                .unwrap();
            assert_eq!(c.compression, want, "{value}");
            assert_eq!(want.name(), value.trim().to_ascii_lowercase());
        }
        for c in [Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert_eq!(base().compression(c).build().unwrap().compression, c);
        }
    }

    #[test]
    fn compression_levels_keys() {
        let c = ProducerConfig::from_map([
            ("bootstrap.servers", "b:9092"),
            ("compression.type", "zstd"),
            ("compression.gzip.level", "1"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "-131072"),
        ])
        .unwrap();
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.compression_gzip_level, 1);
        assert_eq!(c.compression_lz4_level, 17);
        assert_eq!(c.compression_zstd_level, -131_072);
        assert_eq!(
            c.compression_levels(),
            CompressionLevels {
                gzip: Some(1),
                lz4: Some(17),
                zstd: Some(-131_072),
            }
        );
        // Range ends are accepted.
        for (key, value) in [
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "9"),
            ("compression.lz4.level", "1"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "22"),
            ("compression.zstd.level", "0"),
            ("compression.zstd.level", " -5 "),
        ] {
            base()
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"))
                .build()
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        // Defaults map to the codec defaults.
        let d = base().build().unwrap().compression_levels();
        assert_eq!(
            d,
            CompressionLevels {
                gzip: None,
                lz4: Some(9),
                zstd: Some(3),
            }
        );
        // Typed setters.
        let c = base()
            .compression(Compression::Lz4)
            .compression_lz4_level(4)
            .compression_zstd_level(19)
            .build()
            .unwrap();
        assert_eq!(c.compression_lz4_level, 4);
        assert_eq!(c.compression_zstd_level, 19);
        // The levels are valid for the batch builder too.
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            assert!(c.compression_levels().validate(codec).is_ok());
            assert!(d.validate(codec).is_ok());
        }
    }

    #[test]
    fn missing_bootstrap_servers() {
        let missing = ConfigError::Missing {
            key: "bootstrap.servers".into(),
        };
        assert_eq!(ProducerConfig::builder().build().unwrap_err(), missing);
        assert_eq!(
            ProducerConfig::from_properties_str("acks=1\n").unwrap_err(),
            missing
        );
        assert_eq!(
            ProducerConfig::from_map([("bootstrap.servers", " , ")]).unwrap_err(),
            missing
        );
    }

    #[test]
    fn explicit_idempotence_conflicts() {
        let err = base()
            .enable_idempotence(true)
            .acks(Acks::Leader)
            .build()
            .unwrap_err();
        assert!(matches!(&err, ConfigError::Conflict { reason }
            if reason.contains("enable.idempotence") && reason.contains("acks")));

        let err = ProducerConfig::from_map([
            ("bootstrap.servers", "b:9092"),
            ("enable.idempotence", "true"),
            ("retries", "0"),
            ("max.in.flight.requests.per.connection", "6"),
        ])
        .unwrap_err();
        let ConfigError::Conflict { reason } = err else {
            panic!("expected Conflict, got {err:?}");
        };
        assert!(reason.contains("retries"), "{reason}");
        assert!(
            reason.contains("max.in.flight.requests.per.connection"),
            "{reason}"
        );

        // Explicit true without conflicts is fine.
        let c = base().enable_idempotence(true).build().unwrap();
        assert!(c.enable_idempotence && c.enable_idempotence_explicit);
    }

    #[test]
    fn implicit_idempotence_is_disabled_on_conflict() {
        let c = base().acks(Acks::Leader).build().unwrap();
        assert!(!c.enable_idempotence);
        let c = base().retries(0).build().unwrap();
        assert!(!c.enable_idempotence);
        let c = base()
            .max_in_flight_requests_per_connection(6)
            .build()
            .unwrap();
        assert!(!c.enable_idempotence);
        let c = base()
            .max_in_flight_requests_per_connection(5)
            .build()
            .unwrap();
        assert!(c.enable_idempotence);
        // Explicitly off: no conflict either.
        let c = base()
            .enable_idempotence(false)
            .acks(Acks::None)
            .build()
            .unwrap();
        assert!(!c.enable_idempotence);
    }

    #[test]
    fn delivery_timeout_rule() {
        // Explicit delivery.timeout.ms below linger + request timeout: Conflict.
        let err = base()
            .linger(Duration::from_millis(100))
            .request_timeout(Duration::from_millis(1000))
            .delivery_timeout(Duration::from_millis(1099))
            .build()
            .unwrap_err();
        assert!(matches!(&err, ConfigError::Conflict { reason }
            if reason.contains("delivery.timeout.ms") && reason.contains("request.timeout.ms")));
        // Equal is fine.
        let c = base()
            .linger(Duration::from_millis(100))
            .request_timeout(Duration::from_millis(1000))
            .delivery_timeout(Duration::from_millis(1100))
            .build()
            .unwrap();
        assert_eq!(c.delivery_timeout, Duration::from_millis(1100));
        // Default delivery.timeout.ms is raised, as Java does.
        let c = base()
            .request_timeout(Duration::from_millis(200_000))
            .build()
            .unwrap();
        assert_eq!(c.delivery_timeout, Duration::from_millis(200_005));
        // Same through properties.
        let err = ProducerConfig::from_map([
            ("bootstrap.servers", "b:9092"),
            ("delivery.timeout.ms", "1000"),
        ])
        .unwrap_err();
        assert!(matches!(err, ConfigError::Conflict { .. }));
    }

    #[test]
    fn typed_setters() {
        let c = ProducerConfig::builder()
            .bootstrap_servers(vec!["a:1".to_string(), "b:2".to_string()])
            .client_id("svc")
            .acks(Acks::All)
            .linger(Duration::from_millis(7))
            .batch_size(65536)
            .max_request_size(2 << 20)
            .request_timeout(Duration::from_secs(10))
            .delivery_timeout(Duration::from_secs(60))
            .max_block(Duration::from_secs(1))
            .retries(10)
            .retry_backoff(Duration::from_millis(20))
            .retry_backoff_max(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(10))
            .reconnect_backoff_max(Duration::from_millis(200))
            .metadata_max_age(Duration::from_secs(30))
            .max_in_flight_requests_per_connection(3)
            .compression(Compression::Gzip)
            .compression_gzip_level(1)
            .compression_lz4_level(2)
            .compression_zstd_level(-1)
            .enable_idempotence(true)
            .partitioner_ignore_keys(true)
            .allow_auto_create_topics(false)
            .connections_max_idle(Duration::from_secs(60))
            .socket_connection_setup_timeout(Duration::from_secs(3))
            .mailbox_capacity(16)
            .max_pending_batches_per_partition(2)
            .build()
            .unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.client_id, "svc");
        assert_eq!(c.linger, Duration::from_millis(7));
        assert_eq!(c.batch_size, 65536);
        assert_eq!(c.max_request_size, 2 << 20);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.delivery_timeout, Duration::from_secs(60));
        assert_eq!(c.max_block, Duration::from_secs(1));
        assert_eq!(c.retries, 10);
        assert_eq!(c.retry_backoff, Duration::from_millis(20));
        assert_eq!(c.retry_backoff_max, Duration::from_millis(500));
        assert_eq!(c.reconnect_backoff, Duration::from_millis(10));
        assert_eq!(c.reconnect_backoff_max, Duration::from_millis(200));
        assert_eq!(c.metadata_max_age, Duration::from_secs(30));
        assert_eq!(c.max_in_flight_requests_per_connection, 3);
        assert!(matches!(c.compression, Compression::Gzip));
        assert_eq!(c.compression_gzip_level, 1);
        assert_eq!(c.compression_lz4_level, 2);
        assert_eq!(c.compression_zstd_level, -1);
        assert!(c.enable_idempotence && c.enable_idempotence_explicit);
        assert!(c.partitioner_ignore_keys);
        assert!(!c.allow_auto_create_topics);
        assert_eq!(c.connections_max_idle, Duration::from_secs(60));
        assert_eq!(c.socket_connection_setup_timeout, Duration::from_secs(3));
        assert_eq!(c.mailbox_capacity, 16);
        assert_eq!(c.max_pending_batches_per_partition, 2);
    }

    #[test]
    fn error_messages() {
        let e = invalid(
            "linger.ms",
            "x",
            "expected an integer number of milliseconds",
        );
        assert_eq!(
            e.to_string(),
            "invalid value `x` for config key `linger.ms`: expected an integer number of milliseconds"
        );
        let e = base().set("buffer.memory", "1").unwrap_err();
        assert!(e.to_string().contains("buffer.memory"));
        let e = ConfigError::Missing {
            key: "bootstrap.servers".into(),
        };
        assert_eq!(
            e.to_string(),
            "missing required config key `bootstrap.servers`"
        );
    }
}
