//! The same producer performance test as `examples/producer_perf.rs`, run with librdkafka
//! (the `rdkafka` crate, bundled librdkafka) for side-by-side comparisons.
//!
//! ```text
//! cargo run --release --example rdkafka_perf -- --topic perf --num-records 1000000 \
//!     --record-size 100 --throughput -1 --bootstrap-server 127.0.0.1:9092 \
//!     [--producer-props acks=1 linger.ms=5 ...] [--producer.config FILE]
//!
//! cargo run --release --example rdkafka_perf -- --mock-cluster 3 \
//!     --topic perf1 --topic perf12:12 [--partitions 1]
//! ```
//!
//! Perf mode: a `BaseProducer` with a delivery callback (the fastest way to drive
//! librdkafka, as its own `rdkafka_performance` tool does): the send loop calls `poll(0)` after
//! every record, so callbacks run promptly on the sending thread and no extra thread or
//! per-record future is involved. The per-record opaque is the send timestamp (a `usize`, no
//! allocation). The producer properties are passed to librdkafka as they are (it understands
//! the Java names `acks`, `linger.ms`, `batch.size`, `compression.type`,
//! `enable.idempotence`, ...). Output and exit codes as `producer_perf`.
//!
//! Mock-cluster mode (`--mock-cluster N`): starts librdkafka's in-process mock cluster with `N`
//! brokers, creates each `--topic NAME[:PARTITIONS]` (default `--partitions`, else 1), prints
//! `MOCK_BOOTSTRAP=host:port,...` and sleeps until killed.

#[path = "../benches/perf_common.rs"]
mod perf_common;

use perf_common::{
    args_or_exit, init_stats, print_summary, process_cpu_seconds, start_reporter, stats,
    stop_reporter, Pacer, Payload, RunMeasure, EXIT_CONFIG_REJECTED, EXIT_FAILED, EXIT_USAGE,
};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOL: &str = "rdkafka_perf";
const IMPL: &str = "librdkafka";

struct PerfContext;

impl ClientContext for PerfContext {}

impl ProducerContext for PerfContext {
    /// Send timestamp, ns since the stats' start.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        stats().complete(
            sent_ns as u64,
            result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string()),
        );
    }
}

fn main() {
    let args = args_or_exit(
        TOOL,
        IMPL,
        &["--mock-cluster", "--partitions"],
        &[],
        "\n         | --mock-cluster N --topic NAME[:PARTITIONS] ... [--partitions P]\n\
         \x20                      start librdkafka's mock cluster, print MOCK_BOOTSTRAP=..., sleep until killed",
    );
    let code = if args.extra("mock-cluster").is_some() {
        mock_cluster(&args)
    } else {
        run(&args)
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn mock_cluster(args: &perf_common::Args) -> i32 {
    let parse = |flag: &str, v: &str| -> Option<i32> {
        match v.parse::<i32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                eprintln!("{TOOL}: {flag} must be a positive integer, not {v}");
                None
            }
        }
    };
    let Some(brokers) = parse("--mock-cluster", args.extra("mock-cluster").unwrap_or("")) else {
        return EXIT_USAGE;
    };
    let default_parts = match args.extra("partitions") {
        Some(p) => match parse("--partitions", p) {
            Some(n) => n,
            None => return EXIT_USAGE,
        },
        None => 1,
    };
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{TOOL}: cannot start the mock cluster: {e}");
            return EXIT_FAILED;
        }
    };
    for t in args.topics.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()) {
        let (name, parts) = match t.split_once(':') {
            Some((n, p)) => match parse("--topic NAME:PARTITIONS", p) {
                Some(p) => (n, p),
                None => return EXIT_USAGE,
            },
            None => (t, default_parts),
        };
        if let Err(e) = cluster.create_topic(name, parts, 1) {
            eprintln!("{TOOL}: cannot create topic {name}: {e}");
            return EXIT_FAILED;
        }
        eprintln!("{TOOL}: mock topic {name} with {parts} partitions");
    }
    println!("MOCK_BOOTSTRAP={}", cluster.bootstrap_servers());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run(args: &perf_common::Args) -> i32 {
    let topic = args.topic.clone().unwrap_or_default();
    let props = args.merged_props();
    let mut cfg = ClientConfig::new();
    for (k, v) in &props {
        cfg.set(k, v);
    }
    let producer: BaseProducer<PerfContext> = match cfg.create_with_context(PerfContext) {
        Ok(p) => p,
        Err(e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
    };
    let props_text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{TOOL}: impl={IMPL} librdkafka {} topic={topic} records={} size={} throughput={} props: {}",
        rdkafka::util::get_rdkafka_version().1,
        args.num_records,
        args.record_size,
        args.throughput,
        props_text.join(" ")
    );
    // Metadata (and the bootstrap connection) before the clock starts, for both tools alike.
    match producer
        .client()
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
    {
        Ok(md) => {
            let parts = md.topics().first().map_or(0, |t| t.partitions().len());
            println!("{TOOL}: topic {topic} has {parts} partitions");
        }
        Err(e) => {
            println!("ERROR: no metadata for topic {topic}: {e}");
            return EXIT_FAILED;
        }
    }

    let payload = Payload::new(args.record_size);
    let s = init_stats(args.record_size);
    let diag = Arc::new(String::new) as Arc<dyn Fn() -> String + Send + Sync>;
    let reporter = start_reporter(args.report_interval, args.stall_timeout, diag);

    let pacer = Pacer::new(args.target_rps());
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    'send: for i in 0..args.num_records {
        if let Some(p) = &pacer {
            while let Some(d) = p.wait_before(i) {
                // Serve delivery reports while waiting.
                producer.poll(d.min(Duration::from_millis(5)));
            }
        }
        let sent_ns = s.now_ns() as usize;
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, sent_ns)
            .payload(payload.value(i));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Back-pressure: librdkafka's queue is full; serve callbacks and retry.
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    s.send_failed(format!("record {i}: {e}"));
                    println!("ERROR: send of record {i} failed, stopping: {e}");
                    break 'send;
                }
            }
        }
        s.sent.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        producer.poll(Duration::ZERO);
    }
    // Flush: rdkafka's `flush` polls in 100 ms steps, which would add up to 100 ms to the
    // measured time; wait in 1 ms steps instead.
    let flush_deadline = Instant::now() + Duration::from_secs(300);
    while producer.in_flight_count() > 0 && Instant::now() < flush_deadline {
        producer.poll(Duration::from_millis(1));
    }
    let elapsed = t0.elapsed();
    let cpu_s = process_cpu_seconds() - cpu0;
    stop_reporter(reporter);
    if producer.in_flight_count() > 0 {
        println!(
            "ERROR: {} records still in flight after the flush deadline",
            producer.in_flight_count()
        );
    }
    let code = print_summary(IMPL, &RunMeasure { elapsed, cpu_s }, "");
    if producer.in_flight_count() > 0 {
        return EXIT_FAILED;
    }
    code
}
