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
//! Perf mode: a `BaseProducer` driven the way librdkafka's own `rdkafka_performance` tool
//! drives librdkafka: the send loop serves delivery reports (a poll with timeout 0) after every
//! record, so they are handled promptly on the sending thread, with no extra thread and no
//! per-record future. The per-record opaque is the send timestamp (a `usize`, no allocation).
//! The producer properties are passed to librdkafka as they are (it understands the Java names
//! `acks`, `linger.ms`, `batch.size`, `compression.type`, `enable.idempotence`, ...). Output and
//! exit codes as `producer_perf`.
//!
//! `--poll native` (default) serves the delivery reports straight from librdkafka's main queue
//! (`rd_kafka_queue_poll`, returning as soon as events were served, like `rd_kafka_poll`).
//! `--poll crate` uses `BaseProducer::poll` and `ProducerContext::delivery` instead; that is
//! the crate's ordinary API, but its poll keeps looping until the timeout has passed and turns
//! the last sub-millisecond of every timeout into a busy loop (it truncates the remaining time
//! to whole milliseconds), which costs CPU and delays the send loop while waiting for room or
//! pacing; so it understates librdkafka.
//!
//! `--api future` drives rdkafka's `FutureProducer` instead (`send_result` per record, the
//! crate's future API): its delivery futures are kept in a `FuturesUnordered` in the send
//! loop and the finished ones taken every 256 sends and while pacing, exactly as
//! `producer_perf --delivery future` does with ours.
//!
//! Mock-cluster mode (`--mock-cluster N`): starts librdkafka's in-process mock cluster with `N`
//! brokers, creates each `--topic NAME[:PARTITIONS]` (default `--partitions`, else 1), prints
//! `MOCK_BOOTSTRAP=host:port,...` and sleeps until killed.

#[path = "../benches/perf_common.rs"]
mod perf_common;

use perf_common::{
    args_or_exit, init_stats, print_summary, process_cpu_seconds, start_reporter, stats,
    stop_reporter, Pacer, Payload, RunMeasure, EXIT_CONFIG_REJECTED, EXIT_FAILED, EXIT_OK,
    EXIT_USAGE,
};
use rdkafka::bindings as rd;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::ffi::CStr;
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

/// Serves delivery reports straight from librdkafka's main queue (see the module docs).
struct NativePoller {
    queue: *mut rd::rd_kafka_queue_t,
}

impl NativePoller {
    fn new(producer: &BaseProducer<PerfContext>) -> NativePoller {
        // SAFETY: a valid handle; the queue reference is released in Drop, before the producer
        // (declared earlier in `run`) is dropped.
        let queue = unsafe { rd::rd_kafka_queue_get_main(producer.client().native_ptr()) };
        assert!(!queue.is_null(), "rd_kafka_queue_get_main returned null");
        NativePoller { queue }
    }

    /// Waits up to `timeout` (rounded up to whole ms) for an event, then serves it and every
    /// event already queued. Returns the number of events served.
    fn poll(&self, timeout: Duration) -> usize {
        let mut ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut served = 0;
        loop {
            // SAFETY: valid queue; each event returned is destroyed below.
            let ev = unsafe { rd::rd_kafka_queue_poll(self.queue, ms) };
            if ev.is_null() {
                return served;
            }
            unsafe {
                match rd::rd_kafka_event_type(ev) {
                    rd::RD_KAFKA_EVENT_DR => loop {
                        let msg = rd::rd_kafka_event_message_next(ev);
                        if msg.is_null() {
                            break;
                        }
                        let err = (*msg).err;
                        let sent_ns = (*msg)._private as usize as u64;
                        let res = if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                            Ok(())
                        } else {
                            Err(CStr::from_ptr(rd::rd_kafka_err2str(err))
                                .to_string_lossy()
                                .into_owned())
                        };
                        stats().complete(sent_ns, res);
                    },
                    rd::RD_KAFKA_EVENT_ERROR => {
                        let msg =
                            CStr::from_ptr(rd::rd_kafka_event_error_string(ev)).to_string_lossy();
                        eprintln!("{TOOL}: librdkafka error event: {msg}");
                    }
                    _ => {}
                }
                rd::rd_kafka_event_destroy(ev);
            }
            served += 1;
            ms = 0;
        }
    }
}

impl Drop for NativePoller {
    fn drop(&mut self) {
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

/// How delivery reports are served (`--poll`).
enum Poller {
    Native(NativePoller),
    Crate,
}

impl Poller {
    fn poll(&self, producer: &BaseProducer<PerfContext>, timeout: Duration) {
        match self {
            Poller::Native(p) => {
                p.poll(timeout);
            }
            Poller::Crate => producer.poll(timeout),
        }
    }
}

fn main() {
    let args = args_or_exit(
        TOOL,
        IMPL,
        &[
            "--mock-cluster",
            "--partitions",
            "--poll",
            "--api",
            "--topic-count",
            "--create-topics",
        ],
        &["--keyed"],
        "\n         [--poll native|crate]   how delivery reports are served (default native)\n\
         \x20      [--api base|future]     BaseProducer (default) or FutureProducer\n\
         \x20      [--topic-count N] [--keyed]  record i to TOPIC-(i % N), with an 8-byte key (base API)\n\
         \x20      | --mock-cluster N --topic NAME[:PARTITIONS] ... [--partitions P]\n\
         \x20                      start librdkafka's mock cluster, print MOCK_BOOTSTRAP=..., sleep until killed",
    );
    let code = if args.extra("mock-cluster").is_some() {
        mock_cluster(&args)
    } else if args.extra("create-topics").is_some() {
        create_topics(&args)
    } else {
        match args.extra("api").unwrap_or("base") {
            "base" => run(&args),
            "future" => run_future(&args),
            other => {
                eprintln!("{TOOL}: --api must be base or future, not {other}");
                EXIT_USAGE
            }
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// `--create-topics P` (benches/scale.sh): creates the topics of `--topic-count` with P
/// partitions each (replication 1) through librdkafka's admin client, in one CreateTopics
/// request per 100 topics; topics that exist are not an error.
fn create_topics(args: &perf_common::Args) -> i32 {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let Some(parts) = args
        .extra("create-topics")
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        eprintln!("{TOOL}: --create-topics needs a partition count > 0");
        return EXIT_USAGE;
    };
    let spread = match perf_common::Spread::or_usage(args, TOOL) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut cfg = ClientConfig::new();
    for (k, v) in args.merged_props() {
        cfg.set(k, v);
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = match cfg.create() {
        Ok(a) => a,
        Err(e) => {
            println!("ERROR: admin client: {e}");
            return EXIT_FAILED;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERROR: runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for chunk in spread.topics.chunks(100) {
        let new: Vec<NewTopic> = chunk
            .iter()
            .map(|t| NewTopic::new(t, parts, TopicReplication::Fixed(1)))
            .collect();
        match rt.block_on(admin.create_topics(&new, &opts)) {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((t, e)) => {
                            println!("ERROR: create topic {t}: {e}");
                            return EXIT_FAILED;
                        }
                    }
                }
            }
            Err(e) => {
                println!("ERROR: CreateTopics: {e}");
                return EXIT_FAILED;
            }
        }
    }
    println!(
        "{TOOL}: {} topics with {parts} partitions ready",
        spread.topics.len()
    );
    EXIT_OK
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
    for t in args
        .topics
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
    {
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
    let native = match args.extra("poll").unwrap_or("native") {
        "native" => true,
        "crate" => false,
        other => {
            eprintln!("{TOOL}: --poll must be native or crate, not {other}");
            return EXIT_USAGE;
        }
    };
    let spread = match perf_common::Spread::or_usage(args, TOOL) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let topic = spread.topics[0].clone();
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
        "{TOOL}: impl={IMPL} librdkafka {} topic={topic} records={} size={} throughput={} \
         poll={} props: {}",
        rdkafka::util::get_rdkafka_version().1,
        args.num_records,
        args.record_size,
        args.throughput,
        if native { "native" } else { "crate" },
        props_text.join(" ")
    );
    // Metadata (and the bootstrap connection) before the clock starts, for both tools alike.
    if !metadata_ready(producer.client(), &topic) {
        return EXIT_FAILED;
    }

    let payload = Payload::new(args.record_size);
    let s = init_stats(args.record_size);
    let poller = if native {
        Poller::Native(NativePoller::new(&producer))
    } else {
        Poller::Crate
    };
    let diag = Arc::new(String::new) as Arc<dyn Fn() -> String + Send + Sync>;
    let reporter = start_reporter(args.report_interval, args.stall_timeout, diag);

    let pacer = Pacer::new(args.target_rps());
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    'send: for i in 0..args.num_records {
        if let Some(p) = &pacer {
            while let Some(d) = p.wait_before(i) {
                // Serve delivery reports while waiting.
                poller.poll(&producer, d.min(Duration::from_millis(5)));
            }
        }
        let sent_ns = s.now_ns() as usize;
        let key = perf_common::Spread::key(i);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
            &spread.topics[spread.topic_of(i)],
            sent_ns,
        )
        .payload(payload.value(i));
        if spread.keyed {
            record = record.key(&key[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Back-pressure: librdkafka's queue is full; serve callbacks and retry.
                    record = r;
                    poller.poll(&producer, Duration::from_millis(1));
                }
                Err((e, _)) => {
                    s.send_failed(format!("record {i}: {e}"));
                    println!("ERROR: send of record {i} failed, stopping: {e}");
                    break 'send;
                }
            }
        }
        s.sent.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        poller.poll(&producer, Duration::ZERO);
    }
    // Flush: rdkafka's `flush` polls in 100 ms steps, which would add up to 100 ms to the
    // measured time; serve the reports as they come instead. (in_flight_count counts queued
    // and in-flight messages and delivery reports not served yet.)
    let flush_deadline = Instant::now() + Duration::from_secs(300);
    while producer.in_flight_count() > 0 && Instant::now() < flush_deadline {
        poller.poll(
            &producer,
            Duration::from_millis(if native { 10 } else { 1 }),
        );
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
    let code = print_summary(
        IMPL,
        &RunMeasure { elapsed, cpu_s },
        if native { "poll=native" } else { "poll=crate" },
    );
    if producer.in_flight_count() > 0 {
        return EXIT_FAILED;
    }
    code
}

/// `--api future`: rdkafka's `FutureProducer` (see the module docs).
fn run_future(args: &perf_common::Args) -> i32 {
    use futures::stream::{FuturesUnordered, StreamExt};
    use futures::FutureExt;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = args.topic.clone().unwrap_or_default();
    let props = args.merged_props();
    let mut cfg = ClientConfig::new();
    for (k, v) in &props {
        cfg.set(k, v);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERROR: tokio runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let _guard = rt.enter();
    let producer: FutureProducer = match cfg.create() {
        Ok(p) => p,
        Err(e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
    };
    let props_text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{TOOL}: impl={IMPL} librdkafka {} topic={topic} records={} size={} throughput={} \
         api=future props: {}",
        rdkafka::util::get_rdkafka_version().1,
        args.num_records,
        args.record_size,
        args.throughput,
        props_text.join(" ")
    );
    if !metadata_ready(producer.client(), &topic) {
        return EXIT_FAILED;
    }
    let payload = Payload::new(args.record_size);
    let s = init_stats(args.record_size);
    let diag = Arc::new(String::new) as Arc<dyn Fn() -> String + Send + Sync>;
    let reporter = start_reporter(args.report_interval, args.stall_timeout, diag);
    let pacer = Pacer::new(args.target_rps());
    let complete = |t: u64, r: Result<(), String>| stats().complete(t, r);
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut pending = FuturesUnordered::new();
        'send: for i in 0..args.num_records {
            if let Some(p) = &pacer {
                if let Some(d) = p.wait_before(i) {
                    let until = tokio::time::Instant::now() + d;
                    while let Ok(Some((t, r))) =
                        tokio::time::timeout_at(until, pending.next()).await
                    {
                        complete(t, r);
                    }
                    tokio::time::sleep_until(until).await;
                }
            }
            let sent_ns = s.now_ns();
            let mut record = FutureRecord::<(), [u8]>::to(&topic).payload(payload.value(i));
            loop {
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push(f.map(move |r| {
                            let r = match r {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(e.to_string()),
                                Err(_) => Err("delivery future canceled".to_string()),
                            };
                            (sent_ns, r)
                        }));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Back-pressure: take finished deliveries (or wait 1 ms) and retry.
                        record = r;
                        if let Ok(Some((t, r))) =
                            tokio::time::timeout(Duration::from_millis(1), pending.next()).await
                        {
                            complete(t, r);
                        }
                    }
                    Err((e, _)) => {
                        s.send_failed(format!("record {i}: {e}"));
                        println!("ERROR: send of record {i} failed, stopping: {e}");
                        break 'send;
                    }
                }
            }
            s.sent.store(i + 1, std::sync::atomic::Ordering::Relaxed);
            if i % 256 == 255 {
                while let Some(Some((t, r))) = pending.next().now_or_never() {
                    complete(t, r);
                }
            }
        }
        while let Some((t, r)) = pending.next().await {
            complete(t, r);
        }
    });
    let elapsed = t0.elapsed();
    let cpu_s = process_cpu_seconds() - cpu0;
    stop_reporter(reporter);
    print_summary(IMPL, &RunMeasure { elapsed, cpu_s }, "api=future")
}

/// Metadata (and the bootstrap connection) before the clock starts, for every tool alike;
/// `false` (after printing why) when the topic has none.
fn metadata_ready<C: ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) -> bool {
    match client.fetch_metadata(Some(topic), Duration::from_secs(30)) {
        Ok(md) => {
            let parts = md.topics().first().map_or(0, |t| t.partitions().len());
            println!("{TOOL}: topic {topic} has {parts} partitions");
            true
        }
        Err(e) => {
            println!("ERROR: no metadata for topic {topic}: {e}");
            false
        }
    }
}
