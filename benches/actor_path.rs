//! Cost of one record through the actor path, without the network in the timed part:
//! `Producer::send` (partition, mailbox slot, `Append` message, append into the batch builder)
//! and `send_all` (one `AppendMany` per chunk). Metadata comes from an in-process librdkafka
//! mock cluster before timing; `linger.ms` is long and `batch.size` large so no batch is sent
//! while a sample is measured; a flush between samples empties the pipeline.
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::time::{Duration, Instant};

fn actor_path(c: &mut Criterion) {
    let mock: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).expect("mock cluster");
    mock.create_topic("bench", 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let sys = actix_rt::System::new();
    let producer = sys.block_on(async {
        let config = ProducerConfig::from_map([
            ("bootstrap.servers", bootstrap.as_str()),
            ("linger.ms", "10000"),
            ("batch.size", "16777216"),
            ("max.request.size", "33554432"),
            ("mailbox.capacity", "65536"),
            ("acks", "1"),
        ])
        .unwrap();
        let p = Producer::start(config).await.unwrap();
        p.partitions_for("bench").await.unwrap();
        p
    });
    let value = Bytes::from(vec![b'x'; 100]);
    let mut g = c.benchmark_group("actor_path");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("send_100B", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(20_000);
                    let t = Instant::now();
                    for _ in 0..n {
                        let d = producer
                            .send(ProducerRecord::new("bench", value.clone()))
                            .await
                            .unwrap();
                        drop(d);
                    }
                    total += t.elapsed();
                    producer.flush().await;
                    left -= n;
                }
                total
            })
        })
    });
    g.bench_function("send_all_100B_x512", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(20_480);
                    let t = Instant::now();
                    let mut sent = 0;
                    while sent < n {
                        let k = (n - sent).min(512);
                        let records: Vec<ProducerRecord> = (0..k)
                            .map(|_| ProducerRecord::new("bench", value.clone()))
                            .collect();
                        producer.send_all_with_callback(records, |_, _| {}).await;
                        sent += k;
                    }
                    total += t.elapsed();
                    producer.flush().await;
                    left -= n;
                }
                total
            })
        })
    });
    g.finish();
    sys.block_on(producer.close(Duration::from_secs(5)));
}

criterion_group!(benches, actor_path);
criterion_main!(benches);
