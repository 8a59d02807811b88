//! Producer performance test for actix-kafka, modelled on Kafka's `kafka-producer-perf-test`.
//!
//! ```text
//! cargo run --release --example producer_perf -- --topic perf --num-records 1000000 \
//!     --record-size 100 --throughput -1 --bootstrap-server 127.0.0.1:9092 \
//!     [--producer-props acks=1 linger.ms=5 ...] [--producer.config FILE] \
//!     [--delivery callback|future] [--send-batch N] [--report-interval-ms 5000] [--stall-timeout-s 60]
//!     [--transactional-id ID [--transaction-duration-ms 3000]]
//!
//! `--send-batch N` (N > 1) hands records to `Producer::send_all_with_callback` N at a time
//! (one accumulator message per partition per call) instead of one `send` per record.
//! ```
//!
//! Sends `--num-records` records of `--record-size` random letters (prepared once) without
//! keys, as fast as possible (`--throughput -1`) or paced at that many records/s. Every ~5 s it
//! prints a progress line, at the end the Java tool's summary line with p50/p95/p99/p99.9
//! latency (send → broker acknowledgement), the client's CPU seconds and peak RSS, and one
//! machine-readable `RESULT impl=actix-kafka ...` line (see `benches/perf_common.rs`).
//!
//! `--delivery callback` (default) uses `send_with_callback` and records the latency in the
//! callback; `--delivery future` uses `send` and keeps the `DeliveryFuture`s in a
//! `FuturesUnordered` in the sending task, which takes the finished ones every 256 sends and
//! while it waits for its pace (a record's latency ends when its result is taken, at most 256
//! sends late). Neither makes the send loop wait for acknowledgements.
//!
//! Exit codes: 0 ok, 1 some record failed (the first errors are printed), 2 usage,
//! 3 configuration rejected, 4 stalled (no record completed for `--stall-timeout-s`).
//! `benches/race.sh` runs it side by side with `examples/rdkafka_perf.rs`.

#[path = "../benches/perf_common.rs"]
mod perf_common;

use actix_kafka::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use perf_common::{
    args_or_exit, init_stats, print_summary, process_cpu_seconds, start_reporter, stats,
    stop_reporter, Pacer, Payload, RunMeasure, EXIT_CONFIG_REJECTED, EXIT_FAILED, EXIT_USAGE,
};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOL: &str = "producer_perf";
const IMPL: &str = "actix-kafka";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Callback,
    Future,
}

#[actix::main]
async fn main() {
    let code = run().await;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

async fn run() -> i32 {
    // RUST_LOG=actix_kafka=debug shows the producer's own logs on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let args = args_or_exit(
        TOOL,
        IMPL,
        &[
            "--delivery",
            "--send-batch",
            "--transactional-id",
            "--transaction-duration-ms",
            "--topic-count",
        ],
        &["--keyed"],
        "\n         [--delivery callback|future]   how latency is collected (default callback)\
         \n         [--send-batch N]               send N records per send_all_with_callback call\
         \n         [--transactional-id ID]        transactional producer (as kafka-producer-perf-test)\
         \n         [--transaction-duration-ms MS] commit every MS ms (default 3000 with --transactional-id)\
         \n         [--topic-count N] [--keyed]    record i to TOPIC-(i % N), with an 8-byte key (benches/scale.sh)",
    );
    let mode = match args.extra("delivery").unwrap_or("callback") {
        "callback" => Mode::Callback,
        "future" | "futures" => Mode::Future,
        other => {
            eprintln!("{TOOL}: --delivery must be callback or future, not {other}");
            return EXIT_USAGE;
        }
    };
    let send_batch: u64 = match args.extra("send-batch").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        _ => {
            eprintln!("{TOOL}: --send-batch must be a whole number >= 1");
            return EXIT_USAGE;
        }
    };
    if send_batch > 1 && mode == Mode::Future {
        eprintln!("{TOOL}: --send-batch works with --delivery callback");
        return EXIT_USAGE;
    }
    let spread = match perf_common::Spread::or_usage(&args, TOOL) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let topics: Vec<Arc<str>> = spread
        .topics
        .iter()
        .map(|t| Arc::from(t.as_str()))
        .collect();
    let topic: Arc<str> = topics[0].clone();
    let mut props = args.merged_props();
    if let Some(id) = args.extra("transactional-id") {
        props.push(("transactional.id".into(), id.into()));
    }
    let txn_duration = match args.extra("transaction-duration-ms").map(str::parse::<u64>) {
        None => Duration::from_millis(3000),
        Some(Ok(ms)) if ms > 0 => Duration::from_millis(ms),
        _ => {
            eprintln!("{TOOL}: --transaction-duration-ms must be a whole number > 0");
            return EXIT_USAGE;
        }
    };
    let config = match ProducerConfig::from_map(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        Ok(c) => c,
        Err(e) => {
            println!("CONFIG_REJECTED impl={IMPL}: {e}");
            return EXIT_CONFIG_REJECTED;
        }
    };
    let props_text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{TOOL}: impl={IMPL} topic={topic} records={} size={} throughput={} delivery={} props: {}",
        args.num_records,
        args.record_size,
        args.throughput,
        if mode == Mode::Callback {
            "callback"
        } else {
            "future"
        },
        props_text.join(" ")
    );

    let producer = match Producer::start(config).await {
        Ok(p) => p,
        Err(e) => {
            println!("ERROR: cannot start the producer: {e}");
            return EXIT_FAILED;
        }
    };
    // Metadata (and the bootstrap connection) before the clock starts, for both tools alike.
    match producer.partitions_for(&topic).await {
        Ok(info) => println!(
            "{TOOL}: topic {topic} has {} partitions",
            info.partition_count()
        ),
        Err(e) => {
            println!("ERROR: no metadata for topic {topic}: {e}");
            producer.close(Duration::from_secs(1)).await;
            return EXIT_FAILED;
        }
    }

    let transactional = producer.config().transactional_id.is_some();
    if transactional {
        if let Err(e) = producer.init_transactions().await {
            println!("ERROR: init_transactions: {e}");
            producer.close(Duration::from_secs(1)).await;
            return EXIT_FAILED;
        }
    }
    let mut txn = Txn {
        on: transactional,
        duration: txn_duration,
        open_since: None,
        committed: 0,
    };

    let payload = Payload::new(args.record_size);
    // One shared buffer; each record's value is a zero-copy slice of it (the idiomatic way to
    // hand prepared bytes to this API).
    let pool = Bytes::from(payload.buf.clone());
    let size = args.record_size;
    let s = init_stats(size);

    // --delivery future: the delivery futures of the records in flight, in the send loop.
    let mut pending: FuturesUnordered<Timed> = FuturesUnordered::new();

    let diag = {
        let p = producer.clone();
        Arc::new(move || diagnostics(&p)) as Arc<dyn Fn() -> String + Send + Sync>
    };
    let reporter = start_reporter(args.report_interval, args.stall_timeout, diag);

    let pacer = Pacer::new(args.target_rps());
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let mut sent = 0u64;
    if send_batch > 1 {
        let mut i = 0u64;
        'outer: while i < args.num_records {
            let n = send_batch.min(args.num_records - i);
            if let Some(p) = &pacer {
                if let Some(d) = p.wait_before(i + n - 1) {
                    tokio::time::sleep(d).await;
                }
            }
            let records: Vec<ProducerRecord> = (i..i + n)
                .map(|j| {
                    let off = payload.offset(j);
                    ProducerRecord::new(topic.clone(), pool.slice(off..off + size))
                })
                .collect();
            if let Err(e) = txn.before_send(&producer).await {
                println!("ERROR: {e}");
                break 'outer;
            }
            let sent_ns = s.now_ns();
            let results = producer
                .send_all_with_callback(records, move |_, r| {
                    stats().complete(sent_ns, r.map(|_| ()).map_err(|e| e.to_string()))
                })
                .await;
            for (k, r) in results.into_iter().enumerate() {
                if let Err(e) = r {
                    s.send_failed(format!("record {}: {e}", i + k as u64));
                    println!(
                        "ERROR: send of record {} failed, stopping: {e}",
                        i + k as u64
                    );
                    break 'outer;
                }
            }
            i += n;
            sent = i;
            s.sent.store(sent, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = txn.after_send(&producer).await {
                println!("ERROR: {e}");
                break 'outer;
            }
        }
    }
    for i in (if send_batch > 1 { args.num_records } else { 0 })..args.num_records {
        if let Some(p) = &pacer {
            if let Some(d) = p.wait_before(i) {
                let until = tokio::time::Instant::now() + d;
                while let Ok(Some((t, r))) = tokio::time::timeout_at(until, pending.next()).await {
                    complete(t, r);
                }
                tokio::time::sleep_until(until).await;
            }
        }
        if let Err(e) = txn.before_send(&producer).await {
            println!("ERROR: {e}");
            break;
        }
        let off = payload.offset(i);
        let mut record = ProducerRecord::new(
            topics[spread.topic_of(i)].clone(),
            pool.slice(off..off + size),
        );
        if spread.keyed {
            record = record.key(Bytes::copy_from_slice(&perf_common::Spread::key(i)));
        }
        let sent_ns = s.now_ns();
        let res = match mode {
            Mode::Callback => {
                producer
                    .send_with_callback(record, move |r| {
                        stats().complete(sent_ns, r.map(|_| ()).map_err(|e| e.to_string()))
                    })
                    .await
            }
            Mode::Future => producer.send(record).await.map(|f| {
                pending.push(Timed(sent_ns, f));
                if i % 256 == 255 {
                    while let Some(Some((t, r))) = pending.next().now_or_never() {
                        complete(t, r);
                    }
                }
            }),
        };
        if let Err(e) = res {
            // Not accepted at all (e.g. QueueFull after max.block.ms): stop sending.
            s.send_failed(format!("record {i}: {e}"));
            println!("ERROR: send of record {i} failed, stopping: {e}");
            break;
        }
        sent = i + 1;
        s.sent.store(sent, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = txn.after_send(&producer).await {
            println!("ERROR: {e}");
            break;
        }
    }
    if let Err(e) = txn.finish(&producer).await {
        println!("ERROR: {e}");
    }
    while let Some((t, r)) = pending.next().await {
        complete(t, r);
    }
    producer.flush().await;
    let elapsed = t0.elapsed();
    let cpu_s = process_cpu_seconds() - cpu0;
    stop_reporter(reporter);

    if transactional {
        println!("{TOOL}: {} transactions committed", txn.committed);
    }
    let sender = producer.sender_stats().await;
    producer.close(Duration::from_secs(30)).await;
    let extra = match sender {
        Some(st) => {
            let per_req = if st.requests_sent > 0 {
                sent as f64 / st.requests_sent as f64
            } else {
                0.0
            };
            println!(
                "{TOOL}: {} produce requests ({per_req:.1} records/request), {} batches retried, \
                 producer id {:?}",
                st.requests_sent, st.batches_retried, st.producer_id
            );
            format!(
                "requests={} retried_batches={}",
                st.requests_sent, st.batches_retried
            )
        }
        None => String::new(),
    };
    print_summary(IMPL, &RunMeasure { elapsed, cpu_s }, &extra)
}

/// `--transactional-id`: a transaction is begun before the first record after a commit and
/// committed once `--transaction-duration-ms` have passed (Java's ProducerPerformance).
struct Txn {
    on: bool,
    duration: Duration,
    open_since: Option<Instant>,
    committed: u64,
}

impl Txn {
    async fn before_send(&mut self, p: &Producer) -> Result<(), String> {
        if self.on && self.open_since.is_none() {
            p.begin_transaction()
                .await
                .map_err(|e| format!("begin_transaction: {e}"))?;
            self.open_since = Some(Instant::now());
        }
        Ok(())
    }

    async fn after_send(&mut self, p: &Producer) -> Result<(), String> {
        match self.open_since {
            Some(t) if t.elapsed() >= self.duration => self.commit(p).await,
            _ => Ok(()),
        }
    }

    async fn finish(&mut self, p: &Producer) -> Result<(), String> {
        if self.open_since.is_some() {
            self.commit(p).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, p: &Producer) -> Result<(), String> {
        self.open_since = None;
        p.commit_transaction()
            .await
            .map_err(|e| format!("commit_transaction: {e}"))?;
        self.committed += 1;
        Ok(())
    }
}

/// A delivery future with its record's send time (ns on the stats clock).
struct Timed(u64, DeliveryFuture);

impl std::future::Future for Timed {
    type Output = (u64, actix_kafka::DeliveryResult);
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let t = self.0;
        std::pin::Pin::new(&mut self.1).poll(cx).map(|r| (t, r))
    }
}

fn complete(sent_ns: u64, r: actix_kafka::DeliveryResult) {
    stats().complete(sent_ns, r.map(|_| ()).map_err(|e| e.to_string()));
}

/// Producer state for the stall message (queried with a short timeout: a wedged actor must
/// not wedge the watchdog too).
fn diagnostics(p: &Producer) -> String {
    let pending = p.pending_records();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(futures::executor::block_on(p2.sender_stats()));
    });
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(Some(st)) => format!("pending_records={pending} sender={st:?}"),
        Ok(None) => format!("pending_records={pending} sender=stopped"),
        Err(_) => format!("pending_records={pending} sender=no answer within 2 s"),
    }
}
