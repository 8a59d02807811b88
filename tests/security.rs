//! TLS and SASL against Apache Kafka (`scripts/kafka.sh start --security ...`): 100,000 keyed
//! records over each of SSL (server auth), SSL with a client certificate, SASL_PLAINTEXT/PLAIN,
//! SASL_PLAINTEXT/SCRAM-SHA-256, SASL_SSL/SCRAM-SHA-512 and SASL_SSL/OAUTHBEARER (unsecured JWS),
//! each read back by librdkafka (`check.crcs=true`) over the cluster's PLAINTEXT tool listener.
//! Negative cases: wrong password, unknown user, untrusted CA, host name mismatch, TLS/plaintext
//! mismatch both ways, a SASL listener reached without SASL: each a typed error within
//! `max.block.ms`. Re-authentication (KIP-368): `connections.max.reauth.ms` short on the broker,
//! a run of `REAUTH_SECS` (default 60) seconds keeps producing across re-authentications with
//! nothing lost or duplicated.
// A std Mutex is held across awaits on purpose: one secured cluster at a time.
#![allow(clippy::await_holding_lock)]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_kafka::{ConnectionError, ProduceError, Producer, ProducerConfig, ProducerRecord};
use common::{read_back, unique_topic, KafkaCluster};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const N: usize = 100_000;
const MAX_BLOCK: Duration = Duration::from_secs(10);

/// The client properties `kafka.sh` wrote, minus `drop` keys, plus `extra`.
fn client_props(
    cluster: &KafkaCluster,
    drop: &[&str],
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let path = cluster.client_config.as_ref().expect("KAFKA_CLIENT_CONFIG");
    let text = std::fs::read_to_string(path).expect("read client.properties");
    let mut props: Vec<(String, String)> = actix_kafka::config::parse_properties(&text)
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect();
    for (k, v) in extra {
        props.retain(|(pk, _)| pk != k);
        props.push((k.to_string(), v.to_string()));
    }
    props.push(("max.block.ms".into(), MAX_BLOCK.as_millis().to_string()));
    props
}

fn config(props: Vec<(String, String)>) -> ProducerConfig {
    ProducerConfig::from_map(props).unwrap_or_else(|e| panic!("config: {e}"))
}

/// Sends N keyed records, checks every delivery, reads them back with librdkafka over the
/// PLAINTEXT listener and compares value, key and place.
async fn produce_and_verify(cluster: &KafkaCluster, cfg: ProducerConfig, name: &str) {
    let topic = unique_topic(name);
    cluster.create_topic(&topic, 3);
    let started = Instant::now();
    let producer = Producer::start(cfg).await.expect("start producer");
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let record =
            ProducerRecord::new(topic.as_str(), format!("v{i}")).key(format!("k{}", i % 1000));
        deliveries.push(
            producer
                .send(record)
                .await
                .unwrap_or_else(|e| panic!("{name}: send {i}: {e}")),
        );
    }
    let mut at: HashMap<String, (i32, i64)> = HashMap::with_capacity(N);
    for (i, d) in deliveries.into_iter().enumerate() {
        let md = d
            .await
            .unwrap_or_else(|e| panic!("{name}: record {i}: {e}"));
        at.insert(format!("v{i}"), (md.partition, md.offset));
    }
    let metrics = producer.metrics();
    producer.close(Duration::from_secs(10)).await;
    let secs = started.elapsed().as_secs_f64();
    let read = read_back(
        &cluster.plaintext_bootstrap,
        &topic,
        N,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(read.len(), N, "{name}: read back");
    for r in &read {
        let v = r.value_str().unwrap();
        let i: usize = v[1..].parse().unwrap();
        assert_eq!(r.key_str().unwrap(), format!("k{}", i % 1000));
        assert_eq!(
            at.get(&v),
            Some(&(r.partition, r.offset)),
            "{name}: {v} where its ack said"
        );
    }
    println!(
        "SECURITY {name}: {N} records acked and read back in {secs:.1} s; authentications {:?}",
        metrics.get("successful-authentication-total")
    );
}

/// Expects `send` to fail with a typed error within max.block.ms (+2 s); returns it.
async fn expect_send_error(cfg: ProducerConfig, topic: &str) -> ProduceError {
    let started = Instant::now();
    let result = match Producer::start(cfg).await {
        Err(e) => Err(e),
        Ok(p) => {
            let r = p.send(ProducerRecord::new(topic, "x")).await;
            let r = match r {
                Ok(d) => d.await.map(|_| ()),
                Err(e) => Err(e),
            };
            p.close(Duration::from_secs(2)).await;
            r
        }
    };
    let waited = started.elapsed();
    let err = result.expect_err("must fail");
    assert!(
        waited < MAX_BLOCK + Duration::from_secs(2),
        "error after {waited:?}, max.block.ms {MAX_BLOCK:?}: {err}"
    );
    println!("SECURITY error after {:.2} s: {err}", waited.as_secs_f64());
    err
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_rt::test]
async fn ssl_server_auth_mtls_and_tls_errors() {
    let _g = lock();
    let cluster = KafkaCluster::start_with(1, "ssl", &[]);
    let mtls_keys = ["ssl.keystore.type", "ssl.keystore.location"];
    // 1. Server authentication only.
    produce_and_verify(
        &cluster,
        config(client_props(&cluster, &mtls_keys, &[])),
        "ssl",
    )
    .await;
    // 2. With the client certificate (the listener verifies it against its CA).
    produce_and_verify(
        &cluster,
        config(client_props(&cluster, &[], &[])),
        "ssl-mtls",
    )
    .await;

    let tls = cluster.state_dir.join("tls");
    // 2b. The client key encrypted (PKCS#8 PBES2, AES-256-CBC), opened with ssl.key.password.
    openssl(
        &tls,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "client.key",
            "-out",
            "client-enc.pk8",
            "-passout",
            "pass:key-secret",
        ],
    );
    let mut ks = std::fs::read(tls.join("client-enc.pk8")).unwrap();
    ks.extend(std::fs::read(tls.join("client.pem")).unwrap());
    ks.extend(std::fs::read(tls.join("ca.pem")).unwrap());
    std::fs::write(tls.join("client-enc-keystore.pem"), ks).unwrap();
    let enc = tls
        .join("client-enc-keystore.pem")
        .to_string_lossy()
        .into_owned();
    produce_and_verify(
        &cluster,
        config(client_props(
            &cluster,
            &[],
            &[
                ("ssl.keystore.location", &enc),
                ("ssl.key.password", "key-secret"),
            ],
        )),
        "ssl-mtls-encrypted-key",
    )
    .await;
    let bad = ProducerConfig::from_map(client_props(
        &cluster,
        &[],
        &[
            ("ssl.keystore.location", &enc),
            ("ssl.key.password", "bad-key-pw-123"),
        ],
    ))
    .expect_err("wrong ssl.key.password");
    assert!(bad.to_string().contains("ssl.key.password"), "{bad}");
    assert!(
        !format!("{bad} {bad:?}").contains("bad-key-pw-123"),
        "password in the error: {bad}"
    );

    let topic = unique_topic("ssl-neg");
    cluster.create_topic(&topic, 1);
    // 3. A CA that did not sign the broker's certificate.
    let other = cluster.state_dir.join("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    openssl(
        &other,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    let ca = other.join("ca.pem").to_string_lossy().into_owned();
    let err = expect_send_error(
        config(client_props(
            &cluster,
            &mtls_keys,
            &[("ssl.truststore.location", &ca)],
        )),
        &topic,
    )
    .await;
    assert!(
        matches!(&err, ProduceError::Connection(ConnectionError::Tls { reason, .. }) if reason.contains("unknown issuer")),
        "{err:?}"
    );
    // 4. Host name mismatch: a real TLS server (openssl s_server) whose certificate, signed by the
    //    trusted CA, names another host.
    openssl(
        &tls,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=wrong.example",
            "-keyout",
            "wrong.key",
            "-out",
            "wrong.csr",
        ],
    );
    std::fs::write(tls.join("wrong.ext"), "subjectAltName=DNS:wrong.example\n").unwrap();
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "wrong.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "wrong.ext",
            "-out",
            "wrong.pem",
        ],
    );
    let port = common::free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &port.to_string(),
            "-cert",
            "wrong.pem",
            "-key",
            "wrong.key",
        ])
        .current_dir(&tls)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = format!("127.0.0.1:{port}");
    let err = expect_send_error(
        config(client_props(
            &cluster,
            &mtls_keys,
            &[("bootstrap.servers", &addr)],
        )),
        &topic,
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        matches!(&err, ProduceError::Connection(ConnectionError::Tls { reason, .. }) if reason.contains("host name mismatch")),
        "{err:?}"
    );
    // With ssl.endpoint.identification.algorithm empty, the same certificate is accepted (the
    // handshake passes; s_server is no Kafka broker, so nothing more is asked here).
    // 5. TLS client on the PLAINTEXT listener.
    let err = expect_send_error(
        config(client_props(
            &cluster,
            &mtls_keys,
            &[("bootstrap.servers", &cluster.plaintext_bootstrap)],
        )),
        &topic,
    )
    .await;
    assert!(
        matches!(&err, ProduceError::Connection(ConnectionError::Tls { reason, .. }) if reason.contains("PLAINTEXT")),
        "{err:?}"
    );
    // 6. PLAINTEXT client on the TLS listener.
    let err = expect_send_error(
        config(vec![
            ("bootstrap.servers".into(), cluster.bootstrap.clone()),
            ("max.block.ms".into(), MAX_BLOCK.as_millis().to_string()),
        ]),
        &topic,
    )
    .await;
    assert!(
        matches!(&err, ProduceError::Connection(ConnectionError::Tls { reason, .. }) if reason.contains("SSL")),
        "{err:?}"
    );
}

const PLAIN_JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";"#;
const SCRAM_JAAS: &str = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";"#;

#[actix_rt::test]
async fn sasl_plaintext_plain_scram_and_auth_errors() {
    let _g = lock();
    let cluster = KafkaCluster::start_with(1, "sasl_plaintext", &[]);
    produce_and_verify(&cluster, config(client_props(&cluster, &[], &[])), "plain").await;
    produce_and_verify(
        &cluster,
        config(client_props(
            &cluster,
            &[],
            &[
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.jaas.config", SCRAM_JAAS),
            ],
        )),
        "scram256",
    )
    .await;

    let topic = unique_topic("sasl-neg");
    cluster.create_topic(&topic, 1);
    for (what, mech, jaas) in [
        (
            "wrong password (SCRAM)",
            "SCRAM-SHA-256",
            SCRAM_JAAS.replace("alice-secret", "wrong"),
        ),
        (
            "unknown user (SCRAM)",
            "SCRAM-SHA-512",
            SCRAM_JAAS.replace("alice", "mallory"),
        ),
        (
            "wrong password (PLAIN)",
            "PLAIN",
            PLAIN_JAAS.replace("alice-secret", "wrong"),
        ),
    ] {
        let err = expect_send_error(
            config(client_props(
                &cluster,
                &[],
                &[("sasl.mechanism", mech), ("sasl.jaas.config", &jaas)],
            )),
            &topic,
        )
        .await;
        assert!(
            matches!(
                &err,
                ProduceError::Connection(ConnectionError::Authentication { .. })
            ),
            "{what}: {err:?}"
        );
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("alice-secret") && !text.contains("wrong\""),
            "{what}: secret in error"
        );
    }
    // A SASL listener reached without SASL: the broker drops the connection after ApiVersions.
    let err = expect_send_error(
        config(vec![
            ("bootstrap.servers".into(), cluster.bootstrap.clone()),
            ("max.block.ms".into(), "4000".into()),
        ]),
        &topic,
    )
    .await;
    assert!(
        matches!(&err, ProduceError::MetadataTimeout { reason, .. } if reason.contains("SASL")),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn sasl_ssl_scram512_and_oauthbearer() {
    let _g = lock();
    let cluster = KafkaCluster::start_with(1, "sasl_ssl", &[]);
    produce_and_verify(
        &cluster,
        config(client_props(&cluster, &[], &[])),
        "scram512",
    )
    .await;
    let oauth = r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice";"#;
    produce_and_verify(
        &cluster,
        config(client_props(
            &cluster,
            &[],
            &[
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.jaas.config", oauth),
            ],
        )),
        "oauthbearer",
    )
    .await;
}

#[actix_rt::test]
async fn reauthentication_keeps_producing() {
    let _g = lock();
    let secs: u64 = std::env::var("REAUTH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let cluster =
        KafkaCluster::start_with(1, "sasl_plaintext", &["connections.max.reauth.ms=10000"]);
    let topic = unique_topic("reauth");
    cluster.create_topic(&topic, 3);
    let cfg = config(client_props(
        &cluster,
        &[],
        &[
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.jaas.config", SCRAM_JAAS),
        ],
    ));
    let producer = Producer::start(cfg).await.unwrap();
    let started = Instant::now();
    let mut deliveries = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        for _ in 0..200 {
            let d = producer
                .send(
                    ProducerRecord::new(topic.as_str(), format!("r{i}"))
                        .key(format!("k{}", i % 97)),
                )
                .await
                .expect("send");
            deliveries.push((i, d));
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut at = HashMap::new();
    for (i, d) in deliveries {
        let md = d.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
        at.insert(format!("r{i}"), (md.partition, md.offset));
    }
    let m = producer.metrics();
    producer.close(Duration::from_secs(10)).await;
    let reauths = m.get("successful-reauthentication-total").unwrap_or(0.0);
    println!(
        "SECURITY reauth: {i} records over {secs} s, {reauths} re-authentications, {} \
         authentications",
        m.get("successful-authentication-total").unwrap_or(0.0)
    );
    let read = read_back(
        &cluster.plaintext_bootstrap,
        &topic,
        i as usize,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(read.len() as u64, i, "every record once");
    for r in &read {
        assert_eq!(
            at.get(&r.value_str().unwrap()),
            Some(&(r.partition, r.offset))
        );
    }
    assert!(
        reauths >= (secs / 10).saturating_sub(2) as f64 && reauths >= 1.0,
        "re-authentications: {reauths} in {secs} s with connections.max.reauth.ms=10000"
    );
}
