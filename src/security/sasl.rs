//! SASL mechanisms as plain state machines (no I/O): the connection sends what they produce in
//! SaslAuthenticate requests (KIP-152) and feeds the broker's answers back.
//!
//! * PLAIN (RFC 4616): one message, `\0user\0password`.
//! * SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677; KIP-84): client-first, server-first,
//!   client-final with the proof, server-final whose signature we verify. HMAC, SHA-2 and
//!   PBKDF2 come from the RustCrypto crates.
//! * OAUTHBEARER (RFC 7628, KIP-255): one message carrying a token from an
//!   [`OAuthTokenProvider`], or an unsecured JWS (`alg: none`) for development brokers.
//!
//! Also: `sasl.jaas.config` parsing (Java's `LoginModule flag key="value" ...;`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// A supported `sasl.mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616). Use it only over TLS: the password travels as is.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255).
    OAuthBearer,
}

impl SaslMechanism {
    /// The name sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses a `sasl.mechanism` value. `Err` carries why it is refused (GSSAPI, AWS_MSK_IAM
    /// and unknown names).
    pub fn parse(name: &str) -> Result<SaslMechanism, String> {
        Ok(match name.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            "OAUTHBEARER" => SaslMechanism::OAuthBearer,
            "GSSAPI" => {
                return Err("GSSAPI (Kerberos, the Java default) is not supported; set \
                            sasl.mechanism to PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                    .into())
            }
            "AWS_MSK_IAM" => {
                return Err("AWS_MSK_IAM is not supported; MSK also offers SASL/SCRAM".into())
            }
            other => return Err(format!("unknown SASL mechanism `{other}`")),
        })
    }
}

/// An OAUTHBEARER token (KIP-255).
#[derive(Clone)]
pub struct OAuthBearerToken {
    /// The compact token (e.g. a JWT) sent as `auth=Bearer <value>`.
    pub value: SecretString,
    /// When it expires, in milliseconds since the epoch (informational; the broker's
    /// `session_lifetime_ms` drives re-authentication).
    pub lifetime_ms: i64,
    /// The principal it names (for logs).
    pub principal: String,
    /// SASL extensions (KIP-342), `key=value` pairs sent with the token.
    pub extensions: Vec<(String, String)>,
}

impl fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerToken")
            .field("value", &"[REDACTED]")
            .field("lifetime_ms", &self.lifetime_ms)
            .field("principal", &self.principal)
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// Supplies OAUTHBEARER tokens (Java's `AuthenticateCallbackHandler` for login). Called on a
/// connection's task before every authentication, re-authentications included: return a cached
/// token while it is valid and keep the call short.
pub trait OAuthTokenProvider: Send + Sync + 'static {
    /// The token to authenticate with.
    ///
    /// # Errors
    /// Why no token could be had; the connection fails with an authentication error naming it.
    fn token(&self) -> Result<OAuthBearerToken, String>;
}

impl<F> OAuthTokenProvider for F
where
    F: Fn() -> Result<OAuthBearerToken, String> + Send + Sync + 'static,
{
    fn token(&self) -> Result<OAuthBearerToken, String> {
        self()
    }
}

/// An unsecured JWS (`{"alg":"none"}`), as Java's `OAuthBearerUnsecuredLoginCallbackHandler`
/// makes for `unsecuredLoginStringClaim_sub`: subject `sub`, issued now, valid one hour. Only
/// brokers configured with the unsecured validator accept it.
pub fn unsecured_token(sub: &str, now_ms: i64) -> OAuthBearerToken {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let exp_ms = now_ms + 3_600_000;
    let claims = format!(
        r#"{{"iat":{},"exp":{},"sub":{}}}"#,
        now_ms as f64 / 1000.0,
        exp_ms as f64 / 1000.0,
        json_string(sub)
    );
    let payload = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    OAuthBearerToken {
        value: SecretString::from(format!("{header}.{payload}.")),
        lifetime_ms: exp_ms,
        principal: sub.to_string(),
        extensions: Vec::new(),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a mechanism wants next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send these bytes in a SaslAuthenticate request.
    Send(Vec<u8>),
    /// Authenticated (the last server message checked out).
    Done,
}

/// SCRAM's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScramHash {
    Sha256,
    Sha512,
}

/// Kafka's SCRAM iteration bounds (`ScramMechanism`: 4096..=16384): a server-first message
/// outside them is refused instead of spending its CPU (never trust a number off the wire).
const SCRAM_MIN_ITERATIONS: u32 = 4096;
const SCRAM_MAX_ITERATIONS: u32 = 16384;

impl ScramHash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                // Any key length is valid for HMAC.
                let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
                    return Vec::new();
                };
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let Ok(mut m) = Hmac::<Sha512>::new_from_slice(key) else {
                    return Vec::new();
                };
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

enum ScramState {
    Initial,
    /// client-first sent.
    SentFirst {
        client_first_bare: String,
    },
    /// client-final sent; the server signature we expect.
    SentFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

/// The client side of one SASL exchange.
pub(crate) struct SaslClient {
    mechanism: SaslMechanism,
    username: String,
    password: SecretString,
    token: Option<OAuthBearerToken>,
    nonce: String,
    scram: ScramState,
    plain_sent: bool,
}

impl SaslClient {
    /// A client for PLAIN or SCRAM.
    pub(crate) fn with_password(
        mechanism: SaslMechanism,
        username: &str,
        password: SecretString,
        nonce: String,
    ) -> SaslClient {
        SaslClient {
            mechanism,
            username: username.to_string(),
            password,
            token: None,
            nonce,
            scram: ScramState::Initial,
            plain_sent: false,
        }
    }

    /// A client for OAUTHBEARER.
    pub(crate) fn with_token(token: OAuthBearerToken) -> SaslClient {
        SaslClient {
            mechanism: SaslMechanism::OAuthBearer,
            username: token.principal.clone(),
            password: SecretString::from(String::new()),
            token: Some(token),
            nonce: String::new(),
            scram: ScramState::Initial,
            plain_sent: false,
        }
    }

    fn scram_hash(&self) -> ScramHash {
        if self.mechanism == SaslMechanism::ScramSha512 {
            ScramHash::Sha512
        } else {
            ScramHash::Sha256
        }
    }

    /// The first message to send.
    pub(crate) fn start(&mut self) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::Plain => {
                self.plain_sent = true;
                let mut m = Vec::new();
                m.push(0);
                m.extend_from_slice(self.username.as_bytes());
                m.push(0);
                m.extend_from_slice(self.password.expose_secret().as_bytes());
                m
            }
            SaslMechanism::OAuthBearer => {
                self.plain_sent = true;
                let mut m = String::from("n,,\x01auth=Bearer ");
                if let Some(t) = &self.token {
                    m.push_str(t.value.expose_secret());
                    for (k, v) in &t.extensions {
                        m.push('\x01');
                        m.push_str(k);
                        m.push('=');
                        m.push_str(v);
                    }
                }
                m.push_str("\x01\x01");
                m.into_bytes()
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let bare = format!("n={},r={}", scram_escape(&self.username), self.nonce);
                let msg = format!("n,,{bare}");
                self.scram = ScramState::SentFirst {
                    client_first_bare: bare,
                };
                msg.into_bytes()
            }
        }
    }

    /// Feeds the broker's answer (`auth_bytes` of SaslAuthenticate).
    ///
    /// # Errors
    /// A description of what is wrong with the server's message (bad nonce, iteration count out
    /// of Kafka's range, server signature mismatch: a server that does not know the password).
    pub(crate) fn step(&mut self, server: &[u8]) -> Result<Next, String> {
        match self.mechanism {
            SaslMechanism::Plain | SaslMechanism::OAuthBearer => {
                if !self.plain_sent {
                    return Err("SASL answer before the first message".into());
                }
                if self.mechanism == SaslMechanism::OAuthBearer && !server.is_empty() {
                    // RFC 7628 §3.2.3: an error JSON; the broker reports the failure in
                    // SaslAuthenticate's error code as well.
                    return Err(format!(
                        "OAUTHBEARER refused: {}",
                        String::from_utf8_lossy(&server[..server.len().min(300)])
                    ));
                }
                Ok(Next::Done)
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => self.scram_step(server),
        }
    }

    fn scram_step(&mut self, server: &[u8]) -> Result<Next, String> {
        let hash = self.scram_hash();
        let text = std::str::from_utf8(server).map_err(|_| "SCRAM message is not UTF-8")?;
        match std::mem::replace(&mut self.scram, ScramState::Done) {
            ScramState::SentFirst { client_first_bare } => {
                if let Some(e) = scram_attr(text, 'e') {
                    return Err(format!("SCRAM error from the broker: {e}"));
                }
                let nonce = scram_attr(text, 'r').ok_or("server-first without a nonce")?;
                if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
                    return Err("server nonce does not extend the client nonce".into());
                }
                let salt = STANDARD
                    .decode(scram_attr(text, 's').ok_or("server-first without a salt")?)
                    .map_err(|_| "salt is not base64")?;
                let iterations: u32 = scram_attr(text, 'i')
                    .ok_or("server-first without an iteration count")?
                    .parse()
                    .map_err(|_| "iteration count is not a number")?;
                if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
                    return Err(format!(
                        "iteration count {iterations} outside Kafka's \
                         {SCRAM_MIN_ITERATIONS}..={SCRAM_MAX_ITERATIONS}"
                    ));
                }
                let salted = hash.salted_password(
                    self.password.expose_secret().as_bytes(),
                    &salt,
                    iterations,
                );
                let client_key = hash.hmac(&salted, &[b"Client Key"]);
                let stored_key = hash.hash(&client_key);
                let without_proof = format!("c=biws,r={nonce}");
                let auth_message = format!("{client_first_bare},{text},{without_proof}");
                let signature = hash.hmac(&stored_key, &[auth_message.as_bytes()]);
                let proof: Vec<u8> = client_key
                    .iter()
                    .zip(&signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                let server_key = hash.hmac(&salted, &[b"Server Key"]);
                let server_signature = hash.hmac(&server_key, &[auth_message.as_bytes()]);
                self.scram = ScramState::SentFinal { server_signature };
                Ok(Next::Send(
                    format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
                ))
            }
            ScramState::SentFinal { server_signature } => {
                if let Some(e) = scram_attr(text, 'e') {
                    return Err(format!("SCRAM error from the broker: {e}"));
                }
                let v = STANDARD
                    .decode(scram_attr(text, 'v').ok_or("server-final without a signature")?)
                    .map_err(|_| "server signature is not base64")?;
                if v != server_signature {
                    return Err(
                        "the broker's SCRAM signature does not match (it does not know \
                                the password: a spoofed broker?)"
                            .into(),
                    );
                }
                Ok(Next::Done)
            }
            ScramState::Initial | ScramState::Done => Err("unexpected SCRAM message".into()),
        }
    }
}

/// RFC 5802 §5.1 saslname: `=` → `=3D`, `,` → `=2C`.
fn scram_escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `name` (`name=value`, comma-separated) in a SCRAM message.
fn scram_attr(msg: &str, name: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut c = part.chars();
        (c.next() == Some(name) && c.next() == Some('=')).then(|| &part[2..])
    })
}

/// A random client nonce: 24 bytes of OS randomness, base64 (printable, no comma).
pub(crate) fn client_nonce() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the SCRAM nonce: {e}"))?;
    Ok(STANDARD.encode(bytes))
}

/// What `sasl.jaas.config` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Jaas {
    /// The login module class, e.g. `org.apache.kafka.common.security.plain.PlainLoginModule`.
    pub module: String,
    /// Options (`key="value"`) in order.
    pub options: Vec<(String, String)>,
}

impl Jaas {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The mechanism family of the module: PLAIN, SCRAM or OAUTHBEARER.
    pub(crate) fn family(&self) -> Option<&'static str> {
        let simple = self.module.rsplit('.').next().unwrap_or("");
        match simple {
            "PlainLoginModule" => Some("PLAIN"),
            "ScramLoginModule" => Some("SCRAM"),
            "OAuthBearerLoginModule" => Some("OAUTHBEARER"),
            _ => None,
        }
    }
}

/// Parses Java's JAAS line: `Module flag key=value key2="quoted \" value";`. One login module
/// (as the client property allows).
///
/// # Errors
/// What is malformed (without echoing option values: they hold passwords).
pub(crate) fn parse_jaas(text: &str) -> Result<Jaas, String> {
    let mut chars = text.trim().chars().peekable();
    let word = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == ';' || c == '=' {
                break;
            }
            w.push(c);
            chars.next();
        }
        w
    };
    let module = word(&mut chars);
    if module.is_empty() {
        return Err("sasl.jaas.config: no login module".into());
    }
    let flag = word(&mut chars);
    if !matches!(
        flag.as_str(),
        "required" | "requisite" | "sufficient" | "optional"
    ) {
        return Err(format!(
            "sasl.jaas.config: expected a control flag (required) after {module}"
        ));
    }
    let mut options = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None => return Err("sasl.jaas.config: missing the final `;`".into()),
            Some(';') => break,
            _ => {}
        }
        let key = word(&mut chars);
        if key.is_empty() || chars.next() != Some('=') {
            return Err(format!(
                "sasl.jaas.config: expected key=value after `{key}`"
            ));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("sasl.jaas.config: unterminated quote in {key}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("sasl.jaas.config: dangling backslash".into()),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == ';' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        options.push((key, value));
    }
    Ok(Jaas { module, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 test vector (SCRAM-SHA-256, user "user", password "pencil").
    #[test]
    fn scram_sha256_rfc7677_vector() {
        let mut c = SaslClient::with_password(
            SaslMechanism::ScramSha256,
            "user",
            SecretString::from("pencil".to_string()),
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(c.start(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec());
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let Next::Send(fin) = c.step(server_first).unwrap() else {
            panic!("expected client-final")
        };
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            Next::Done
        );
    }

    #[test]
    fn scram_refuses_a_wrong_server_signature_and_hostile_iterations() {
        let mk = || {
            let mut c = SaslClient::with_password(
                SaslMechanism::ScramSha512,
                "u,=x",
                SecretString::from("p".to_string()),
                "abc".into(),
            );
            assert_eq!(c.start(), b"n,,n=u=2C=3Dx,r=abc".to_vec());
            c
        };
        let mut c = mk();
        assert!(matches!(
            c.step(b"r=abcdef,s=c2FsdA==,i=4096"),
            Ok(Next::Send(_))
        ));
        assert!(c.step(b"v=AAAA").unwrap_err().contains("does not match"));
        let mut c = mk();
        assert!(c
            .step(b"r=abcdef,s=c2FsdA==,i=2147483647")
            .unwrap_err()
            .contains("iteration"));
        let mut c = mk();
        assert!(c
            .step(b"r=zzz,s=c2FsdA==,i=4096")
            .unwrap_err()
            .contains("nonce"));
        let mut c = mk();
        assert!(c
            .step(b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
    }

    #[test]
    fn plain_and_oauthbearer_messages() {
        let mut p = SaslClient::with_password(
            SaslMechanism::Plain,
            "alice",
            SecretString::from("s3cret".to_string()),
            String::new(),
        );
        assert_eq!(p.start(), b"\0alice\0s3cret".to_vec());
        assert_eq!(p.step(b"").unwrap(), Next::Done);

        let t = unsecured_token("admin", 1_700_000_000_000);
        let mut o = SaslClient::with_token(t.clone());
        let first = String::from_utf8(o.start()).unwrap();
        assert!(
            first.starts_with("n,,\x01auth=Bearer eyJhbGciOiJub25lIn0."),
            "{first:?}"
        );
        assert!(first.ends_with(".\x01\x01"));
        let payload = t
            .value
            .expose_secret()
            .split('.')
            .nth(1)
            .unwrap()
            .to_string();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(claims.contains(r#""sub":"admin""#), "{claims}");
        assert!(o.step(br#"{"status":"invalid_token"}"#).is_err());
        assert!(!format!("{t:?}").contains(t.value.expose_secret()));
    }

    #[test]
    fn jaas_lines() {
        let j = parse_jaas(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="a \"b\" c";"#,
        )
        .unwrap();
        assert_eq!(j.family(), Some("PLAIN"));
        assert_eq!(j.get("username"), Some("alice"));
        assert_eq!(j.get("password"), Some(r#"a "b" c"#));
        let j = parse_jaas(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=admin ;",
        )
        .unwrap();
        assert_eq!(j.family(), Some("OAUTHBEARER"));
        assert_eq!(j.get("unsecuredLoginStringClaim_sub"), Some("admin"));
        assert!(parse_jaas("x.ScramLoginModule required username=\"a\"").is_err());
        assert!(parse_jaas("x.ScramLoginModule mandatory;").is_err());
        let e = parse_jaas(r#"x.ScramLoginModule required password="hunter2"#).unwrap_err();
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn mechanisms() {
        assert_eq!(
            SaslMechanism::parse("scram-sha-512"),
            Ok(SaslMechanism::ScramSha512)
        );
        assert!(SaslMechanism::parse("GSSAPI")
            .unwrap_err()
            .contains("Kerberos"));
        assert!(SaslMechanism::parse("AWS_MSK_IAM").is_err());
    }
}
