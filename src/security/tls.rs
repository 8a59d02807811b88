//! TLS client configuration (rustls, `ring` provider) from the `ssl.*` settings, and the
//! handshake with errors that name their cause.
//!
//! Trust: `ssl.truststore.*` (PEM) or the system's roots. Mutual TLS: a PEM key and chain
//! (`ssl.keystore.location` holding both, as Kafka's PEM keystores do, KIP-651; or the inline
//! `ssl.keystore.certificate.chain` + `ssl.keystore.key`). SNI is sent for host names.

use super::{PemSource, TlsSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use secrecy::ExposeSecret;
use std::sync::Arc;

fn read_pem(src: &PemSource, what: &str) -> Result<Vec<u8>, String> {
    match src {
        PemSource::File(p) => {
            std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
        }
        PemSource::Inline(s) => Ok(s.as_bytes().to_vec()),
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!(
            "{what}: no PEM certificate found (JKS and PKCS12 stores are not supported: \
             convert them to PEM, e.g. `openssl pkcs12 -in store.p12 -nokeys -out ca.pem`)"
        ));
    }
    Ok(certs)
}

/// Builds the rustls client configuration.
///
/// # Errors
/// Unreadable or non-PEM stores, a missing or encrypted private key, no protocol enabled.
pub(crate) fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &s.truststore {
        Some(src) => {
            for c in certs(&read_pem(src, "truststore")?, "ssl.truststore")? {
                roots
                    .add(c)
                    .map_err(|e| format!("ssl.truststore: unusable CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "no system root certificates found; set ssl.truststore.location".into(),
                );
            }
        }
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if s.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if s.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err("ssl.enabled.protocols enables neither TLSv1.2 nor TLSv1.3".into());
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS verifier: {e}"))?;
    let builder = if s.verify_hostname {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier(verifier)))
    };
    let config = match &s.keystore {
        None => builder.with_no_client_auth(),
        Some(src) => {
            let pem = read_pem(src, "keystore")?;
            let chain = certs(&pem, "ssl.keystore")?;
            let key_pem: Vec<u8> = match &s.keystore_key {
                Some(k) => k.expose_secret().as_bytes().to_vec(),
                None => pem.clone(),
            };
            let key = if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED PRIVATE KEY") {
                let password = s.key_password.as_ref().ok_or(
                    "ssl.keystore: the private key is encrypted and ssl.key.password is not set",
                )?;
                decrypt_pkcs8(&key_pem, password.expose_secret())?
            } else {
                PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|_| "ssl.keystore: no PEM private key found".to_string())?
            };
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("ssl.keystore: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` PEM block (PKCS#8 PBES2, as `openssl pkcs8 -topk8 -v2
/// aes-256-cbc` and Java's keytool write) with `ssl.key.password`.
fn decrypt_pkcs8(pem: &[u8], password: &str) -> Result<PrivateKeyDer<'static>, String> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let body = text
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(b, _)| b)
        .ok_or("ssl.keystore: malformed ENCRYPTED PRIVATE KEY block")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "ssl.keystore: the encrypted key is not base64".to_string())?;
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| format!("ssl.keystore: not an encrypted PKCS#8 key ({e})"))?;
    let doc = info.decrypt(password.as_bytes()).map_err(|_| {
        "ssl.keystore: cannot decrypt the private key (wrong ssl.key.password, or an \
         unsupported cipher: PBES2 with PBKDF2 and AES-CBC are supported)"
            .to_string()
    })?;
    Ok(PrivateKeyDer::Pkcs8(doc.as_bytes().to_vec().into()))
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain must still be valid and trusted,
/// but it need not name the broker.
#[derive(Debug)]
struct NoHostnameVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The name to verify and send as SNI for `host` (an IP address is verified against the
/// certificate's IP SANs and sent without SNI).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid TLS server name {host}: {e}"))
}

/// A readable cause for a failed TLS handshake (`io::Error` from tokio-rustls).
pub(crate) fn describe_handshake_error(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => "the broker's certificate is not signed by a \
                     trusted CA (unknown issuer: check ssl.truststore.location)"
                    .into(),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "the broker's certificate does not name this host (host name mismatch; \
                     ssl.endpoint.identification.algorithm=https)"
                        .into()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the broker's certificate has expired".into()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "the broker's certificate is not valid yet".into()
                }
                other => format!("invalid broker certificate: {other:?}"),
            },
            rustls::Error::AlertReceived(alert) => format!(
                "the broker refused the TLS handshake ({alert:?}; a client certificate it does \
                 not trust?)"
            ),
            other => format!("TLS handshake failed: {other}"),
        };
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "the broker closed the connection during the TLS handshake: is this a PLAINTEXT \
                or SASL_PLAINTEXT listener? (security.protocol mismatch)"
            .into();
    }
    format!("TLS handshake failed: {e}")
}
