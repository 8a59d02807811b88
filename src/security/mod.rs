//! Security settings: `security.protocol`, TLS (`ssl.*`) and SASL (`sasl.*`), with the Java
//! client's key names and defaults.
//!
//! * `tls`: a `rustls` client configuration from PEM trust and key stores (KIP-651 layout).
//! * `sasl`: the SASL mechanisms (PLAIN, SCRAM-SHA-256/512 per RFC 5802/7677, OAUTHBEARER per
//!   RFC 7628 / KIP-255) as plain state machines, and `sasl.jaas.config` parsing.
//!
//! Secrets (passwords, keys, tokens) are [`secrecy::SecretString`]s: redacted in `Debug`,
//! zeroized on drop, never put into errors or logs.

pub(crate) mod sasl;
pub(crate) mod tls;

use secrecy::SecretString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use sasl::{OAuthBearerToken, OAuthTokenProvider, SaslMechanism};

/// `security.protocol`: how the producer talks to brokers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Plain TCP (the default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the connection is wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the connection authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// The Java name, e.g. `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return Err(()),
        })
    }
}

/// Where PEM text comes from: a file (`*.location`) or the value itself (inline keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    /// `ssl.truststore.location` / `ssl.keystore.location`.
    File(PathBuf),
    /// `ssl.truststore.certificates` / `ssl.keystore.certificate.chain`.
    Inline(String),
}

/// TLS settings (`ssl.*`). Only PEM stores are read; JKS and PKCS12 are refused with a hint
/// to convert them.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// CA certificates to trust; `None`: the system's roots.
    pub truststore: Option<PemSource>,
    /// Client certificate chain for mutual TLS (`ssl.keystore.location` holds key and chain;
    /// `ssl.keystore.certificate.chain` the chain alone).
    pub keystore: Option<PemSource>,
    /// `ssl.keystore.key`: the private key, inline PEM (with `ssl.keystore.certificate.chain`).
    pub keystore_key: Option<SecretString>,
    /// `ssl.key.password`: set when the private key is an encrypted PKCS#8 key.
    pub key_password: Option<SecretString>,
    /// `ssl.endpoint.identification.algorithm=https` (default): the broker's certificate must
    /// name the host we connect to. Empty disables it (**insecure**: any certificate signed by a
    /// trusted CA is accepted for any broker).
    pub verify_hostname: bool,
    /// `ssl.enabled.protocols`: `TLSv1.2`, `TLSv1.3` (default both).
    pub tls12: bool,
    /// See `tls12`.
    pub tls13: bool,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("truststore", &self.truststore)
            .field("keystore", &self.keystore.as_ref().map(|_| "[set]"))
            .field(
                "keystore_key",
                &self.keystore_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "[REDACTED]"),
            )
            .field("verify_hostname", &self.verify_hostname)
            .field("tls12", &self.tls12)
            .field("tls13", &self.tls13)
            .finish()
    }
}

/// SASL settings (`sasl.*`).
#[derive(Clone, Default)]
pub struct SaslSettings {
    /// `sasl.mechanism` (Java's default is GSSAPI, which we refuse when SASL is used).
    pub mechanism: Option<SaslMechanism>,
    /// The mechanism name as configured (for errors about unsupported ones).
    pub mechanism_name: String,
    /// From `sasl.jaas.config` (`username="..."`) or `sasl.username`.
    pub username: Option<String>,
    /// From `sasl.jaas.config` (`password="..."`) or `sasl.password`.
    pub password: Option<SecretString>,
    /// OAUTHBEARER unsecured JWS (`unsecuredLoginStringClaim_sub` in the JAAS config): the
    /// token's subject. For tests and development brokers only.
    pub unsecured_sub: Option<String>,
    /// OAUTHBEARER tokens from the application.
    pub token_provider: Option<Arc<dyn OAuthTokenProvider>>,
    /// The mechanism family of the `sasl.jaas.config` login module, to check it against
    /// `sasl.mechanism`.
    pub(crate) jaas_family: Option<&'static str>,
}

impl fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("unsecured_sub", &self.unsecured_sub)
            .field(
                "token_provider",
                &self.token_provider.as_ref().map(|_| "[set]"),
            )
            .finish()
    }
}

/// Everything a connection needs to secure itself.
#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// `ssl.*`.
    pub tls: TlsSettings,
    /// `sasl.*`.
    pub sasl: SaslSettings,
}

impl SecurityConfig {
    /// Java's defaults: PLAINTEXT, host name verification on, TLSv1.2 and TLSv1.3.
    pub fn defaults() -> Self {
        SecurityConfig {
            protocol: SecurityProtocol::Plaintext,
            tls: TlsSettings {
                verify_hostname: true,
                tls12: true,
                tls13: true,
                ..TlsSettings::default()
            },
            sasl: SaslSettings {
                mechanism_name: "GSSAPI".into(),
                ..SaslSettings::default()
            },
        }
    }
}
