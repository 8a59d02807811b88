//! The producer performance test of `examples/producer_perf.rs` (actix-kafka) and
//! `examples/rdkafka_perf.rs` (librdkafka), run with the pure-Rust `krafka` crate, for
//! `benches/race.sh`. A standalone crate (not in the actix-kafka workspace, not built by CI):
//!
//! ```text
//! cd benches/krafka_perf && cargo build --release
//! ./target/release/krafka_perf --topic perf --num-records 1000000 --record-size 100 \
//!     --throughput -1 --bootstrap-server 127.0.0.1:9092 \
//!     [--producer-props acks=1 linger.ms=5 ...] [--producer.config FILE] \
//!     [--runtime multi|current] [--workers N]
//! ```
//!
//! Sending: krafka's `Producer::send` awaits the acknowledgement (it is
//! `enqueue(record).await?.await`), so the tool uses `Producer::enqueue`, which returns as soon
//! as the record is queued (it only waits for buffer memory, `buffer.memory`, i.e. the
//! back-pressure) and hands back a `DeliveryHandle` future. The handles are kept in a
//! `FuturesUnordered` in the send loop, the finished ones taken every 256 sends and while it
//! waits for its pace, as `producer_perf --delivery future` and `rdkafka_perf --api future`
//! do. Each value is a zero-copy `Bytes` slice of one shared payload buffer.
//!
//! Properties (Java names) mapped onto krafka's builders; any other property, or a value krafka
//! cannot honour, prints `CONFIG_REJECTED impl=krafka: ...` and exits 3:
//!
//! | property                                | krafka                                           |
//! |-----------------------------------------|--------------------------------------------------|
//! | bootstrap.servers                       | `Kafka::builder(..)`                             |
//! | client.id                               | `KafkaBuilder::client_id`                        |
//! | request.timeout.ms                      | `KafkaBuilder::request_timeout`                  |
//! | max.in.flight.requests.per.connection   | `KafkaBuilder::max_in_flight_requests` (1)       |
//! | security.protocol                       | PLAINTEXT only                                   |
//! | acks (0, 1, all/-1)                     | `ProducerBuilder::acks` (None, Leader, All)      |
//! | linger.ms                               | `ProducerBuilder::linger`                        |
//! | batch.size                              | `ProducerBuilder::batch_size`                    |
//! | compression.type                        | `ProducerBuilder::compression`                   |
//! | enable.idempotence                      | `ProducerBuilder::idempotent` (2)                |
//! | delivery.timeout.ms                     | `ProducerBuilder::delivery_timeout`              |
//! | retry.backoff.ms                        | `ProducerBuilder::retry_backoff`                 |
//! | max.request.size                        | `ProducerBuilder::max_request_size`              |
//! | max.block.ms                            | `ProducerBuilder::max_block`                     |
//! | buffer.memory                           | `ProducerBuilder::buffer_memory`                 |
//!
//! (1) krafka's cap on outstanding requests per connection (default 10). Its send engine has
//! in addition fixed limits the property cannot raise: one batch per partition on the wire and
//! at most 5 Produce requests per broker; the tool prints a note when the value exceeds 5.
//! (2) As in the Java client: on by default unless `acks` is not `all` (then off); set
//! explicitly with `acks` other than `all`, krafka rejects it.
//!
//! Output and exit codes as `producer_perf` (see `benches/perf_common.rs`).

#[path = "../../perf_common.rs"]
mod perf_common;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use krafka::producer::{Acks, DeliveryHandle, Producer};
use krafka::prelude::Compression;
use krafka::{Kafka, KrafkaError, Record};
use perf_common::{
    args_or_exit, init_stats, print_summary, process_cpu_seconds, start_reporter, stats,
    stop_reporter, Pacer, Payload, RunMeasure, EXIT_CONFIG_REJECTED, EXIT_FAILED, EXIT_USAGE,
};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOL: &str = "krafka_perf";
const IMPL: &str = "krafka";
/// The krafka version pinned in Cargo.toml (keep in sync).
const KRAFKA_VERSION: &str = "0.28.1";
/// krafka 0.28's fixed cap of Produce requests in flight per broker.
const KRAFKA_PRODUCE_IN_FLIGHT_PER_BROKER: usize = 5;

fn main() {
    let args = args_or_exit(
        TOOL,
        IMPL,
        &["--runtime", "--workers"],
        &[],
        "\n         [--runtime multi|current]   tokio runtime (default multi)\
         \n         [--workers N]               worker threads of the multi runtime (default: tokio's)",
    );
    let mut rt = match args.extra("runtime").unwrap_or("multi") {
        "multi" => tokio::runtime::Builder::new_multi_thread(),
        "current" => tokio::runtime::Builder::new_current_thread(),
        other => {
            eprintln!("{TOOL}: --runtime must be multi or current, not {other}");
            std::process::exit(EXIT_USAGE);
        }
    };
    if let Some(w) = args.extra("workers") {
        match w.parse::<usize>() {
            Ok(n) if n > 0 => {
                rt.worker_threads(n);
            }
            _ => {
                eprintln!("{TOOL}: --workers must be a whole number > 0");
                std::process::exit(EXIT_USAGE);
            }
        }
    }
    let code = match rt.enable_all().build() {
        Ok(rt) => rt.block_on(run(&args)),
        Err(e) => {
            println!("ERROR: tokio runtime: {e}");
            EXIT_FAILED
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The settings taken from the properties.
#[derive(Default)]
struct Settings {
    bootstrap: Option<String>,
    client_id: Option<String>,
    request_timeout: Option<Duration>,
    max_in_flight: Option<usize>,
    acks: Option<Acks>,
    linger: Option<Duration>,
    batch_size: Option<usize>,
    compression: Option<Compression>,
    idempotent: Option<bool>,
    delivery_timeout: Option<Duration>,
    retry_backoff: Option<Duration>,
    max_request_size: Option<usize>,
    max_block: Option<Duration>,
    buffer_memory: Option<usize>,
    notes: Vec<String>,
}

fn parse_settings(props: &[(String, String)]) -> Result<Settings, String> {
    let mut s = Settings::default();
    fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
        v.trim()
            .parse::<T>()
            .map_err(|_| format!("{k}={v}: not a valid non-negative whole number"))
    }
    let ms = |k: &str, v: &str| num::<u64>(k, v).map(Duration::from_millis);
    for (k, v) in props {
        let v = v.as_str();
        match k.as_str() {
            "bootstrap.servers" => s.bootstrap = Some(v.to_string()),
            "client.id" => s.client_id = Some(v.to_string()),
            "request.timeout.ms" => s.request_timeout = Some(ms(k, v)?),
            "max.in.flight.requests.per.connection" => {
                let n: usize = num(k, v)?;
                if n == 0 {
                    return Err(format!("{k}={v}: must be at least 1"));
                }
                if n > KRAFKA_PRODUCE_IN_FLIGHT_PER_BROKER {
                    s.notes.push(format!(
                        "{k}={n}: krafka sends at most {KRAFKA_PRODUCE_IN_FLIGHT_PER_BROKER} \
                         Produce requests per broker and one batch per partition at a time"
                    ));
                }
                s.max_in_flight = Some(n);
            }
            "security.protocol" => {
                if !v.eq_ignore_ascii_case("plaintext") {
                    return Err(format!(
                        "{k}={v}: this tool supports PLAINTEXT only (krafka's TLS/SASL settings \
                         are not mapped)"
                    ));
                }
            }
            "acks" => {
                s.acks = Some(match v.trim().to_ascii_lowercase().as_str() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(format!("{k}={v}: must be 0, 1, all or -1")),
                })
            }
            "linger.ms" => s.linger = Some(ms(k, v)?),
            "batch.size" => s.batch_size = Some(num(k, v)?),
            "compression.type" => {
                s.compression = Some(match v.trim().to_ascii_lowercase().as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(format!(
                            "{k}={v}: krafka supports none, gzip, snappy, lz4, zstd"
                        ))
                    }
                })
            }
            "enable.idempotence" => {
                s.idempotent = Some(match v.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("{k}={v}: must be true or false")),
                })
            }
            "delivery.timeout.ms" => s.delivery_timeout = Some(ms(k, v)?),
            "retry.backoff.ms" => s.retry_backoff = Some(ms(k, v)?),
            "max.request.size" => s.max_request_size = Some(num(k, v)?),
            "max.block.ms" => s.max_block = Some(ms(k, v)?),
            "buffer.memory" => s.buffer_memory = Some(num(k, v)?),
            _ => return Err(format!("{k}={v}: property not supported by krafka_perf")),
        }
    }
    Ok(s)
}

/// A delivery handle with its record's send time (ns on the stats clock).
struct Timed(u64, DeliveryHandle);

impl std::future::Future for Timed {
    type Output = (u64, Result<(), String>);
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let t = self.0;
        std::pin::Pin::new(&mut self.1)
            .poll(cx)
            .map(|r| (t, r.map(|_| ()).map_err(|e| e.to_string())))
    }
}

fn complete((sent_ns, r): (u64, Result<(), String>)) {
    stats().complete(sent_ns, r);
}

fn is_config_error(e: &KrafkaError) -> bool {
    matches!(e, KrafkaError::Config { .. })
}

async fn run(args: &perf_common::Args) -> i32 {
    let runtime = args.extra("runtime").unwrap_or("multi").to_string();
    let topic = args.topic.clone().unwrap_or_default();
    let props = args.merged_props();
    let settings = match parse_settings(&props) {
        Ok(s) => s,
        Err(e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
    };
    let Some(bootstrap) = settings.bootstrap.clone() else {
        eprintln!("{TOOL}: bootstrap.servers is required (--bootstrap-server HOST:PORT)");
        return EXIT_USAGE;
    };
    let acks = settings.acks.unwrap_or(Acks::All);
    // Java's rule: idempotence defaults to on, and is dropped when acks is not all unless set.
    let idempotent = settings.idempotent.unwrap_or(acks == Acks::All);

    let mut kb = Kafka::builder(bootstrap).client_id(
        settings
            .client_id
            .clone()
            .unwrap_or_else(|| "krafka_perf".to_string()),
    );
    if let Some(t) = settings.request_timeout {
        kb = kb.request_timeout(t);
    }
    if let Some(n) = settings.max_in_flight {
        kb = kb.max_in_flight_requests(n);
    }
    let props_text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{TOOL}: impl={IMPL} krafka {} topic={topic} records={} size={} throughput={} \
         runtime={runtime} idempotent={idempotent} props: {}",
        KRAFKA_VERSION,
        args.num_records,
        args.record_size,
        args.throughput,
        props_text.join(" ")
    );
    for n in &settings.notes {
        println!("{TOOL}: note: {n}");
    }
    let kafka = match kb.connect().await {
        Ok(k) => k,
        Err(e) if is_config_error(&e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
        Err(e) => {
            println!("ERROR: cannot connect: {e}");
            return EXIT_FAILED;
        }
    };
    let mut pb = kafka.producer().acks(acks).idempotent(idempotent);
    if let Some(v) = settings.linger {
        pb = pb.linger(v);
    }
    if let Some(v) = settings.batch_size {
        pb = pb.batch_size(v);
    }
    if let Some(v) = settings.compression {
        pb = pb.compression(v);
    }
    if let Some(v) = settings.delivery_timeout {
        pb = pb.delivery_timeout(v);
    }
    if let Some(v) = settings.retry_backoff {
        pb = pb.retry_backoff(v);
    }
    if let Some(v) = settings.max_request_size {
        pb = pb.max_request_size(v);
    }
    if let Some(v) = settings.max_block {
        pb = pb.max_block(v);
    }
    if let Some(v) = settings.buffer_memory {
        pb = pb.buffer_memory(v);
    }
    let producer: Arc<Producer> = match pb.build().await {
        Ok(p) => Arc::new(p),
        Err(e) if is_config_error(&e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
        Err(e) => {
            println!("ERROR: cannot start the producer: {e}");
            return EXIT_FAILED;
        }
    };
    // Metadata (and the bootstrap connection) before the clock starts, like the other tools.
    match producer.partitions_for(&topic).await {
        Ok(parts) => println!("{TOOL}: topic {topic} has {} partitions", parts.len()),
        Err(e) => {
            println!("ERROR: no metadata for topic {topic}: {e}");
            let _ = producer
                .close_with(krafka::CloseOptions::new().timeout(Duration::from_secs(1)))
                .await;
            return EXIT_FAILED;
        }
    }

    let payload = Payload::new(args.record_size);
    // One shared buffer; each record's value is a zero-copy slice of it.
    let pool = Bytes::from(payload.buf.clone());
    let size = args.record_size;
    let s = init_stats(size);
    let mut pending: FuturesUnordered<Timed> = FuturesUnordered::new();
    let diag = {
        let p = Arc::clone(&producer);
        Arc::new(move || {
            let m = p.metrics().producer;
            format!(
                "buffered_records={} batches_sent={} retries={} errors={}",
                m.buffered_records, m.batches_sent, m.retries, m.errors
            )
        }) as Arc<dyn Fn() -> String + Send + Sync>
    };
    let reporter = start_reporter(args.report_interval, args.stall_timeout, diag);

    let pacer = Pacer::new(args.target_rps());
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    for i in 0..args.num_records {
        if let Some(p) = &pacer {
            if let Some(d) = p.wait_before(i) {
                let until = tokio::time::Instant::now() + d;
                while let Ok(Some(r)) = tokio::time::timeout_at(until, pending.next()).await {
                    complete(r);
                }
                tokio::time::sleep_until(until).await;
            }
        }
        let off = payload.offset(i);
        let record = Record::new(topic.as_str(), pool.slice(off..off + size));
        let sent_ns = s.now_ns();
        match producer.enqueue(record).await {
            Ok(h) => pending.push(Timed(sent_ns, h)),
            Err(e) => {
                // Not queued at all (e.g. no buffer memory within max.block.ms): stop sending.
                s.send_failed(format!("record {i}: {e}"));
                println!("ERROR: send of record {i} failed, stopping: {e}");
                break;
            }
        }
        s.sent.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        if i % 256 == 255 {
            while let Some(Some(r)) = pending.next().now_or_never() {
                complete(r);
            }
        }
    }
    while let Some(r) = pending.next().await {
        complete(r);
    }
    let elapsed = t0.elapsed();
    let cpu_s = process_cpu_seconds() - cpu0;
    stop_reporter(reporter);

    let m = producer.metrics().producer;
    let per_batch = if m.batches_sent > 0 {
        m.records_sent as f64 / m.batches_sent as f64
    } else {
        0.0
    };
    println!(
        "{TOOL}: {} batches sent ({per_batch:.1} records/batch), {} retries",
        m.batches_sent, m.retries
    );
    if let Err(e) = producer
        .close_with(krafka::CloseOptions::new().timeout(Duration::from_secs(30)))
        .await
    {
        println!("{TOOL}: close: {e}");
    }
    print_summary(
        IMPL,
        &RunMeasure { elapsed, cpu_s },
        &format!(
            "runtime={runtime} batches={} retries={}",
            m.batches_sent, m.retries
        ),
    )
}
