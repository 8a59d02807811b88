//! Producer configuration: the Java producer's config names and Java 4.x defaults.
//!
//! Build a [`ProducerConfig`] with the typed [`ProducerConfigBuilder`]
//! (`ProducerConfig::builder()`), or load one from Kafka-style properties with
//! [`ProducerConfig::from_properties_str`], [`ProducerConfig::from_properties_file`] or
//! [`ProducerConfig::from_map`]. Keys, defaults and validation rules follow the Java
//! client's `ProducerConfig` (Apache Kafka 4.x) unless a doc comment says otherwise;
//! two keys are ours (`mailbox.capacity`, `max.pending.batches.per.partition`) and one is
//! librdkafka's (`queue.buffering.max.messages`).
//! Java keys we do not implement yet are rejected with [`ConfigError::Unsupported`]
//! rather than silently ignored, and any other key is a [`ConfigError::UnknownKey`].

//!
//! Every key is declared once: the keys with a field of their own in `keys.rs` (a table the
//! [`ProducerConfig`] struct, its defaults, setters, parser, checks and documented rows are
//! generated from), the TLS/SASL keys in `security_keys.rs`, the value types (parsers and
//! validators) in `kinds.rs`, and the rules across keys (idempotence, transactions, delivery
//! timeout, security) in one table in `rules.rs`.

mod keys;
mod kinds;
mod properties;
mod rules;
mod security_keys;

pub use keys::ProducerConfig;
pub use properties::parse_properties;

use crate::protocol::record_batch::CompressionLevels;
use crate::security::sasl::SaslMechanism;
use crate::security::{OAuthTokenProvider, PemSource, SecurityProtocol};
use secrecy::SecretString;
use security_keys::SECURITY_KEYS;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

/// Largest value of a Java `int` config (`Integer.MAX_VALUE`).
pub(super) const JAVA_INT_MAX: u64 = i32::MAX as u64;
/// Largest value of a Java `long` config (`Long.MAX_VALUE`).
pub(super) const JAVA_LONG_MAX: u64 = i64::MAX as u64;
/// Java's `MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION_FOR_IDEMPOTENCE`.
pub(super) const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = 5;

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

pub(super) fn invalid(
    key: &str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn unsupported(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// One documented key: its properties name, its default as properties text (empty: none),
/// its meaning, and Java's default where ours differs.
pub(super) struct KeyDoc {
    pub(super) key: &'static str,
    pub(super) default: String,
    pub(super) meaning: &'static str,
    pub(super) java_default: Option<&'static str>,
}

/// Every documented key, in table order: the keys with fields, then TLS/SASL.
fn key_docs() -> Vec<KeyDoc> {
    let mut docs = keys::field_docs();
    docs.extend(SECURITY_KEYS.iter().map(security_keys::SecurityKey::doc));
    docs
}

/// [`ProducerConfig::documented_keys`]: built once (each default printed once, kept for the
/// process).
static DOCUMENTED_KEYS: LazyLock<Vec<(&'static str, &'static str, &'static str)>> =
    LazyLock::new(|| {
        key_docs()
            .into_iter()
            .map(|d| (d.key, &*d.default.leak(), d.meaning))
            .collect()
    });

/// The keys set on a builder (by a setter or `set`), for the rules that depend on whether a
/// key was set explicitly (`enable.idempotence`, `delivery.timeout.ms`).
pub(super) type SetKeys = BTreeSet<&'static str>;

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
    ///
    /// # Errors
    /// As [`ProducerConfigBuilder::set`] and [`ProducerConfigBuilder::build`].
    pub fn from_properties_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_map(parse_properties(text))
    }

    /// Read a UTF-8 properties file and parse it like [`ProducerConfig::from_properties_str`].
    ///
    /// # Errors
    /// Read failures are [`ConfigError::Io`]; else as
    /// [`ProducerConfig::from_properties_str`].
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
    ///
    /// # Errors
    /// As [`ProducerConfigBuilder::set`] and [`ProducerConfigBuilder::build`].
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
    /// `--help`. A key without a default (`bootstrap.servers`, `transactional.id`, the
    /// optional `ssl.*`/`sasl.*` keys) has an empty value.
    pub fn documented_keys() -> &'static [(&'static str, &'static str, &'static str)] {
        DOCUMENTED_KEYS.as_slice()
    }

    /// The configuration table as Markdown (`| key | default | meaning |`, one row per
    /// [`ProducerConfig::documented_keys`] entry): the README's "Configuration keys" table,
    /// printed by `cargo run --example config_keys`. A key without a default shows `(none)`
    /// (unset; `bootstrap.servers` says in its meaning that it is required); where Java's
    /// default differs, the meaning ends with it.
    pub fn keys_markdown() -> String {
        let mut table = String::from("| key | default | meaning |\n|---|---|---|\n");
        for d in key_docs() {
            let default = if d.default.is_empty() {
                "(none)".to_string()
            } else {
                format!("`{}`", d.default)
            };
            let mut meaning = d.meaning.replace('|', "\\|");
            if let Some(java) = d.java_default {
                let java = if java.is_empty() {
                    "empty".to_string()
                } else {
                    format!("`{java}`")
                };
                meaning.push_str(&format!(" Java's default: {java}."));
            }
            table.push_str(&format!("| `{}` | {default} | {meaning} |\n", d.key));
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
}

/// Builder for [`ProducerConfig`]: typed setters (one per key, named after the field)
/// and [`set`](ProducerConfigBuilder::set) for string properties. Starts from the
/// Java 4.x defaults; [`build`](ProducerConfigBuilder::build) validates.
#[derive(Clone, Debug)]
pub struct ProducerConfigBuilder {
    config: ProducerConfig,
    /// The keys set so far (the only record of "set explicitly").
    set_keys: SetKeys,
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
            set_keys: SetKeys::new(),
        }
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

    /// Set one key from its string form (value trimmed).
    ///
    /// # Errors
    /// Unparsable or out-of-range values are [`ConfigError::InvalidValue`], Java keys we do
    /// not implement are [`ConfigError::Unsupported`], anything else is
    /// [`ConfigError::UnknownKey`]. Cross-key rules are checked by [`build`](Self::build).
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, ConfigError> {
        let key = key.trim();
        let v = value.trim();
        if let Some(res) = self.set_field(key, v) {
            return res.map(|()| self);
        }
        if let Some(k) = SECURITY_KEYS.iter().find(|k| k.key == key) {
            (k.apply)(&mut self.config, v)?;
            self.set_keys.insert(k.key);
            return Ok(self);
        }
        Err(match unsupported_reason(key) {
            Some(reason) => unsupported(key, v, reason),
            None => ConfigError::UnknownKey {
                key: key.to_string(),
            },
        })
    }

    /// Validate and return the config.
    ///
    /// # Errors
    /// In order: `bootstrap.servers` missing ([`ConfigError::Missing`]); a value out of its
    /// key's range ([`ConfigError::InvalidValue`]); then the rules across keys
    /// (`rules.rs`: transactions, idempotence (KIP-679, Java 3.2+: set explicitly,
    /// conflicts with `acks`, `retries` or in-flight are a [`ConfigError::Conflict`]; not set,
    /// idempotence is turned off instead), `delivery.timeout.ms >= linger.ms +
    /// request.timeout.ms` (a `Conflict` if set explicitly, else the default is raised to that
    /// sum, as Java), and security (unreadable PEM stores, a SASL mechanism without its
    /// credentials)).
    pub fn build(self) -> Result<ProducerConfig, ConfigError> {
        let mut c = self.config;
        if c.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing {
                key: "bootstrap.servers".to_string(),
            });
        }
        c.check_fields()?;
        c.enable_idempotence_explicit = self.set_keys.contains("enable.idempotence");
        for rule in rules::RULES {
            rule(&mut c, &self.set_keys)?;
        }
        Ok(c)
    }
}

/// Why a Java producer key (or key family) is not supported; `None` for unknown keys.
fn unsupported_reason(key: &str) -> Option<&'static str> {
    if key.starts_with("sasl.login.") || key.starts_with("sasl.oauthbearer.") {
        return Some(
            "OAUTHBEARER tokens come from an OAuthTokenProvider in code (or the unsecured JWS of \
             sasl.jaas.config)",
        );
    }
    if key.starts_with("sasl.kerberos.") {
        return Some("GSSAPI (Kerberos) is not supported");
    }
    if key.starts_with("sasl.") {
        return Some("this SASL setting is not supported; see the README's security section");
    }
    if key.starts_with("ssl.") {
        return Some(
            "this TLS setting is not supported (PEM stores, TLSv1.2/1.3, host name verification \
             are)",
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::Compression;
    use std::time::Duration;

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

    /// `partitioner.rack.aware` needs `client.rack` (Java's `PartitionerConfig` check).
    #[test]
    fn rack_awareness_needs_a_client_rack() {
        let b = || ProducerConfig::builder().bootstrap_servers(["b:9092"]);
        let on = |b: ProducerConfigBuilder| b.set("partitioner.rack.aware", "true");
        for rack in [None, Some(""), Some("  ")] {
            let mut builder = on(b()).unwrap_or_else(|e| panic!("{e}"));
            if let Some(r) = rack {
                builder = builder
                    .set("client.rack", r)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            assert!(
                matches!(builder.build(), Err(ConfigError::Conflict { .. })),
                "{rack:?}"
            );
        }
        let c = on(b())
            .and_then(|b| b.set("client.rack", "use1-az2"))
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.partitioner_rack_aware);
        assert_eq!(c.client_rack, "use1-az2");
        // A rack alone (Java allows it: consumers use it too) is fine.
        assert!(b().client_rack("az").build().is_ok());
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
