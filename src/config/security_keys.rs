//! The TLS and SASL keys (`security.protocol`, `ssl.*`, `sasl.*`), each declared once: its
//! documented default, meaning, Java's default where ours differs, and how its properties text
//! fills [`SecurityConfig`](crate::security::SecurityConfig). `build` then reads the PEM stores
//! and checks the mechanism against its credentials ([`check_security`]).

use super::{invalid, unsupported, ConfigError, KeyDoc, ProducerConfig};
use crate::security::sasl::{parse_jaas, SaslMechanism};
use crate::security::{PemSource, SecurityProtocol};
use secrecy::SecretString;
use std::path::PathBuf;

/// A key of this table: its row and how it applies a value (trimmed) to the configuration.
pub(super) struct SecurityKey {
    pub(super) key: &'static str,
    pub(super) default: &'static str,
    pub(super) java_default: Option<&'static str>,
    pub(super) meaning: &'static str,
    pub(super) apply: fn(&mut ProducerConfig, &str) -> Result<(), ConfigError>,
}

impl SecurityKey {
    pub(super) fn doc(&self) -> KeyDoc {
        KeyDoc {
            key: self.key,
            default: self.default.to_string(),
            meaning: self.meaning,
            java_default: self.java_default,
        }
    }
}

/// Every TLS/SASL key. An empty value unsets an optional one (Java treats it as `null`).
pub(super) static SECURITY_KEYS: &[SecurityKey] = &[
    SecurityKey {
        key: "security.protocol",
        default: "PLAINTEXT",
        java_default: None,
        meaning: "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        apply: |c, v| {
            c.security.protocol = v.parse::<SecurityProtocol>().map_err(|_| {
                invalid(
                    "security.protocol",
                    v,
                    "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                )
            })?;
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.truststore.type",
        default: "PEM",
        java_default: Some("JKS"),
        meaning: "Only PEM (JKS and PKCS12 are refused: convert them to PEM).",
        apply: |_, v| pem_only("ssl.truststore.type", v),
    },
    SecurityKey {
        key: "ssl.truststore.location",
        default: "",
        java_default: None,
        meaning: "PEM file of the CA certificates to trust; without it (and without \
            ssl.truststore.certificates) the system's roots.",
        apply: |c, v| {
            c.security.tls.truststore = (!v.is_empty()).then(|| PemSource::File(PathBuf::from(v)));
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.truststore.certificates",
        default: "",
        java_default: None,
        meaning: "The CA certificates as inline PEM.",
        apply: |c, v| {
            c.security.tls.truststore = (!v.is_empty()).then(|| PemSource::Inline(v.to_string()));
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.truststore.password",
        default: "",
        java_default: None,
        meaning: "Ignored: PEM files carry no store password (Java ignores it for PEM too).",
        apply: |_, _| Ok(()),
    },
    SecurityKey {
        key: "ssl.keystore.type",
        default: "PEM",
        java_default: Some("JKS"),
        meaning: "Only PEM: the client key and certificate chain for mutual TLS.",
        apply: |_, v| pem_only("ssl.keystore.type", v),
    },
    SecurityKey {
        key: "ssl.keystore.location",
        default: "",
        java_default: None,
        meaning: "PEM file holding the client's private key (PKCS#8) and certificate chain (mTLS).",
        apply: |c, v| {
            c.security.tls.keystore = (!v.is_empty()).then(|| PemSource::File(PathBuf::from(v)));
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.keystore.certificate.chain",
        default: "",
        java_default: None,
        meaning: "The client certificate chain as inline PEM (with ssl.keystore.key).",
        apply: |c, v| {
            c.security.tls.keystore = (!v.is_empty()).then(|| PemSource::Inline(v.to_string()));
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.keystore.key",
        default: "",
        java_default: None,
        meaning: "The client private key as inline PEM (unencrypted PKCS#8).",
        apply: |c, v| {
            c.security.tls.keystore_key = secret(v);
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.keystore.password",
        default: "",
        java_default: None,
        meaning: "Ignored: PEM files carry no store password (Java ignores it for PEM too).",
        apply: |_, _| Ok(()),
    },
    SecurityKey {
        key: "ssl.key.password",
        default: "",
        java_default: None,
        meaning:
            "Password of an encrypted PKCS#8 private key (PBES2: PBKDF2 + AES-CBC, as openssl \
            pkcs8 -topk8 -v2 aes-256-cbc writes).",
        apply: |c, v| {
            c.security.tls.key_password = secret(v);
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.endpoint.identification.algorithm",
        default: "https",
        java_default: None,
        meaning: "https: the broker certificate must name the host; empty: not checked (INSECURE).",
        apply: |c, v| {
            c.security.tls.verify_hostname = match v.to_ascii_lowercase().as_str() {
                "https" => true,
                "" => false,
                _ => {
                    return Err(invalid(
                        "ssl.endpoint.identification.algorithm",
                        v,
                        "expected https or empty",
                    ))
                }
            };
            Ok(())
        },
    },
    SecurityKey {
        key: "ssl.enabled.protocols",
        default: "TLSv1.2,TLSv1.3",
        java_default: None,
        meaning: "TLS versions offered.",
        apply: |c, v| tls_versions(c, "ssl.enabled.protocols", v),
    },
    SecurityKey {
        key: "ssl.protocol",
        default: "TLSv1.3",
        java_default: None,
        meaning: "The newest TLS version to use (TLSv1.2, TLSv1.3 or TLS); TLSv1.2 is offered too.",
        apply: |c, v| tls_versions(c, "ssl.protocol", v),
    },
    SecurityKey {
        key: "sasl.mechanism",
        default: "GSSAPI",
        java_default: None,
        meaning: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; the Java default GSSAPI \
            (Kerberos) is refused.",
        apply: |c, v| {
            c.security.sasl.mechanism_name = v.to_ascii_uppercase();
            c.security.sasl.mechanism = SaslMechanism::parse(v).ok();
            Ok(())
        },
    },
    SecurityKey {
        key: "sasl.jaas.config",
        default: "",
        java_default: None,
        meaning: "Java JAAS line: PlainLoginModule / ScramLoginModule required username=\"..\" \
            password=\"..\"; or OAuthBearerLoginModule required \
            unsecuredLoginStringClaim_sub=\"..\";",
        apply: jaas,
    },
    SecurityKey {
        key: "sasl.username",
        default: "",
        java_default: None,
        meaning: "Convenience (librdkafka's name): the SASL user instead of sasl.jaas.config.",
        apply: |c, v| {
            c.security.sasl.username = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
    },
    SecurityKey {
        key: "sasl.password",
        default: "",
        java_default: None,
        meaning: "Convenience (librdkafka's name): the SASL password instead of sasl.jaas.config.",
        apply: |c, v| {
            c.security.sasl.password = secret(v);
            Ok(())
        },
    },
];

fn secret(v: &str) -> Option<SecretString> {
    (!v.is_empty()).then(|| SecretString::from(v.to_string()))
}

fn pem_only(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.eq_ignore_ascii_case("PEM") {
        return Ok(());
    }
    Err(unsupported(
        key,
        v,
        "only PEM stores are read: convert JKS/PKCS12 to PEM (keytool -importkeystore to \
         PKCS12, then openssl pkcs12 -nodes)",
    ))
}

/// `ssl.enabled.protocols` (the versions offered) or `ssl.protocol` (Java: the newest to use;
/// TLSv1.2 is allowed below it).
fn tls_versions(c: &mut ProducerConfig, key: &str, v: &str) -> Result<(), ConfigError> {
    let (mut tls12, mut tls13) = (false, false);
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" | "TLS" => tls13 = true,
            _ => return Err(invalid(key, v, "only TLSv1.2 and TLSv1.3 are offered")),
        }
    }
    if key == "ssl.protocol" {
        tls12 = true;
    }
    c.security.tls.tls12 = tls12;
    c.security.tls.tls13 = tls13;
    Ok(())
}

/// `sasl.jaas.config`: the login module and its options (empty unsets it).
fn jaas(c: &mut ProducerConfig, v: &str) -> Result<(), ConfigError> {
    const KEY: &str = "sasl.jaas.config";
    let sasl = &mut c.security.sasl;
    if v.is_empty() {
        sasl.jaas_family = None;
        sasl.unsecured_sub = None;
        return Ok(());
    }
    let jaas = parse_jaas(v).map_err(|reason| invalid(KEY, "(hidden)", reason))?;
    sasl.jaas_family = jaas.family();
    if sasl.jaas_family.is_none() {
        return Err(unsupported(
            KEY,
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
    Ok(())
}

/// `security.protocol` with its `ssl.*` / `sasl.*` keys: builds the TLS configuration (reading
/// the PEM stores) and checks that SASL has a supported mechanism and its credentials.
pub(super) fn check_security(c: &mut ProducerConfig) -> Result<(), ConfigError> {
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
