//! Issue #4: every codec and level, 50,000 records each, read back by librdkafka
//! (`check.crcs=true`) from a real broker.
mod common;

use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use common::{read_back, unique_topic, TestBroker};
use std::time::{Duration, Instant};

const N: usize = 50_000;

async fn round_trip(broker: &mut TestBroker, props: &[(&str, &str)]) {
    let name = props
        .iter()
        .map(|(k, v)| format!("{}-{v}", k.rsplit('.').nth(1).unwrap_or(k)))
        .collect::<Vec<_>>()
        .join("-")
        .replace(['.', '_'], "-");
    let topic = unique_topic(&format!("c-{name}"));
    broker.create_topic(&topic, 2);
    let mut map = vec![
        ("bootstrap.servers", broker.bootstrap.as_str()),
        ("linger.ms", "20"),
    ];
    map.extend_from_slice(props);
    let producer = Producer::start(ProducerConfig::from_map(map).unwrap())
        .await
        .unwrap();
    let t = Instant::now();
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        // Compressible but not trivial: repeated words plus the sequence number.
        let value = format!(
            "record {i} of the compression test: lorem ipsum dolor sit amet {}",
            i % 97
        );
        deliveries.push(
            producer
                .send(
                    ProducerRecord::new(topic.as_str(), value)
                        .key(format!("k{}", i % 1000))
                        .header("i", i.to_string()),
                )
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.expect("acknowledged");
    }
    let m = producer.metrics();
    let ratio = m.get("compression-rate-avg").unwrap();
    println!(
        "{props:?}: {N} records in {:?}, compression-rate-avg {ratio:.3}, batch-size-avg {:.0}",
        t.elapsed(),
        m.get("batch-size-avg").unwrap()
    );
    if !props.iter().any(|(_, v)| *v == "none") {
        assert!(ratio < 0.8, "{props:?} compresses (ratio {ratio})");
    }
    producer.close(Duration::from_secs(10)).await;
    let read = read_back(&broker.bootstrap, &topic, N, Duration::from_secs(120)).await;
    assert_eq!(read.len(), N);
    let mut seen = vec![false; N];
    for r in read {
        let i: usize = String::from_utf8(r.headers[0].1.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(!seen[i], "{props:?}: record {i} twice");
        seen[i] = true;
        assert_eq!(
            r.value_str().unwrap(),
            format!(
                "record {i} of the compression test: lorem ipsum dolor sit amet {}",
                i % 97
            )
        );
        assert_eq!(r.key_str().unwrap(), format!("k{}", i % 1000));
    }
}

#[actix_rt::test]
async fn gzip_levels() {
    let mut broker = TestBroker::start();
    for level in ["-1", "1", "9"] {
        round_trip(
            &mut broker,
            &[
                ("compression.type", "gzip"),
                ("compression.gzip.level", level),
            ],
        )
        .await;
    }
}

#[actix_rt::test]
async fn snappy() {
    let mut broker = TestBroker::start();
    round_trip(&mut broker, &[("compression.type", "snappy")]).await;
}

#[actix_rt::test]
async fn lz4_levels() {
    let mut broker = TestBroker::start();
    for level in ["1", "9", "17"] {
        round_trip(
            &mut broker,
            &[
                ("compression.type", "lz4"),
                ("compression.lz4.level", level),
            ],
        )
        .await;
    }
}

#[actix_rt::test]
async fn zstd_levels() {
    let mut broker = TestBroker::start();
    for level in ["-5", "3", "19"] {
        round_trip(
            &mut broker,
            &[
                ("compression.type", "zstd"),
                ("compression.zstd.level", level),
            ],
        )
        .await;
    }
}

#[actix_rt::test]
async fn no_compression() {
    let mut broker = TestBroker::start();
    round_trip(&mut broker, &[("compression.type", "none")]).await;
}
