//! `actix-kafka`: the command-line tool of the crate (feature `cli`).
//!
//! ```text
//! cargo install --path . --features cli
//! actix-kafka produce --bootstrap-server 127.0.0.1:9092 --topic lines < file.txt
//! actix-kafka produce --bootstrap-server HOST:9093 --topic t --producer.config client.properties \
//!     --property parse.key=true --property key.separator=: --print-deliveries
//! actix-kafka perf --topic t --num-records 1000000 --record-size 100 --throughput -1 \
//!     --producer-props bootstrap.servers=127.0.0.1:9092 acks=1
//! actix-kafka produce --topic t --property transactional.id=lines-1 --transaction-size 500 < f
//! actix-kafka perf --topic t --num-records 1000000 --record-size 100 --throughput -1 \
//!     --transactional-id perf-1 --transaction-duration-ms 100 --bootstrap-server HOST:9092
//! ```
//!
//! `produce` takes `kafka-console-producer`'s flags (lines from stdin, or `--file`), `perf` those
//! of `kafka-producer-perf-test` and prints its progress and summary lines.
use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "actix-kafka",
    version,
    about = "Produce to Kafka with actix-kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce each line of stdin (or --file) as a record, like kafka-console-producer.
    Produce(ProduceArgs),
    /// Measure throughput and latency, like kafka-producer-perf-test.
    Perf(PerfArgs),
}

#[derive(Args)]
struct ProduceArgs {
    /// Brokers, host:port[,host:port...] (else bootstrap.servers of --producer.config, else
    /// $KAFKA_BOOTSTRAP).
    #[arg(long = "bootstrap-server")]
    bootstrap_server: Option<String>,
    /// Topic to produce to.
    #[arg(long)]
    topic: String,
    /// Java client properties file (e.g. the KAFKA_CLIENT_CONFIG of scripts/kafka.sh).
    #[arg(long = "producer.config")]
    producer_config: Option<String>,
    /// Producer property k=v (repeatable), applied after --producer.config.
    #[arg(long = "producer-property")]
    producer_property: Vec<String>,
    /// Reader property: parse.key=true, key.separator=SEP (default a tab), ignore.error=true;
    /// transactional.id=ID makes the input transactional (see --transaction-size).
    #[arg(long = "property")]
    property: Vec<String>,
    /// With a transactional.id: commit a transaction every N lines, and at the end of input.
    #[arg(long = "transaction-size", default_value_t = 1000)]
    transaction_size: u64,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<String>,
    /// Print each record's partition@offset as it is acknowledged.
    #[arg(long = "print-deliveries")]
    print_deliveries: bool,
    /// Stop at the first record that fails (by default a failed record is reported on stderr
    /// and counted, and the run goes on, as kafka-console-producer does).
    #[arg(long = "stop-on-error")]
    stop_on_error: bool,
}

#[derive(Args)]
struct PerfArgs {
    /// Topic to produce to.
    #[arg(long)]
    topic: String,
    /// Records to send.
    #[arg(long = "num-records")]
    num_records: u64,
    /// Value size in bytes.
    #[arg(long = "record-size")]
    record_size: usize,
    /// Records per second; -1 for as fast as possible.
    #[arg(long, allow_hyphen_values = true)]
    throughput: f64,
    /// Producer properties k=v ... (bootstrap.servers among them, or --bootstrap-server).
    #[arg(long = "producer-props", num_args = 1..)]
    producer_props: Vec<String>,
    /// Java client properties file.
    #[arg(long = "producer.config")]
    producer_config: Option<String>,
    /// Brokers (overrides bootstrap.servers).
    #[arg(long = "bootstrap-server")]
    bootstrap_server: Option<String>,
    /// Progress line interval in ms.
    #[arg(long = "reporting-interval", default_value_t = 5000)]
    reporting_interval: u64,
    /// Transactional producer with this transactional.id (as kafka-producer-perf-test).
    #[arg(long = "transactional-id")]
    transactional_id: Option<String>,
    /// With --transactional-id: commit a transaction every this many ms (default 3000).
    #[arg(long = "transaction-duration-ms")]
    transaction_duration_ms: Option<u64>,
}

fn kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{s}`: expected key=value"))
}

/// File properties, then the given ones, then the bootstrap flag (or $KAFKA_BOOTSTRAP if none).
fn config(
    file: Option<&str>,
    props: &[String],
    bootstrap: Option<&str>,
) -> Result<ProducerConfig, String> {
    let mut all: Vec<(String, String)> = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        all.extend(actix_kafka::config::parse_properties(&text));
    }
    for p in props {
        all.push(kv(p)?);
    }
    match bootstrap {
        Some(b) => all.push(("bootstrap.servers".into(), b.into())),
        None if !all.iter().any(|(k, _)| k == "bootstrap.servers") => {
            let b = std::env::var("KAFKA_BOOTSTRAP")
                .map_err(|_| "no --bootstrap-server, bootstrap.servers or $KAFKA_BOOTSTRAP")?;
            all.push(("bootstrap.servers".into(), b));
        }
        None => {}
    }
    ProducerConfig::from_map(all).map_err(|e| e.to_string())
}

/// A `--property` of the console producer: the key is trimmed, the value taken as written (a
/// separator may be a tab or a space).
fn reader_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: expected key=value"))
}

/// Deliveries not yet acknowledged that the reader lets wait before it reads more lines: the
/// tool's own memory bound on endless input (the producer bounds the rest).
const DELIVERY_WINDOW: usize = 10_000;

/// What `produce` has seen so far: outcomes are counted (and printed) as they arrive.
#[derive(Default)]
struct ProduceTally {
    sent: u64,
    failed: u64,
    per_partition: BTreeMap<i32, (u64, i64, i64)>,
}

impl ProduceTally {
    /// One record's outcome; returns false if it failed.
    fn outcome(
        &mut self,
        topic: &str,
        line: usize,
        result: Result<RecordMetadata, ProduceError>,
        print: bool,
    ) -> bool {
        match result {
            Ok(RecordMetadata {
                partition, offset, ..
            }) => {
                if print {
                    println!("line {line} -> {topic}-{partition}@{offset}");
                }
                let e = self
                    .per_partition
                    .entry(partition)
                    .or_insert((0, i64::MAX, -1));
                e.0 += 1;
                e.1 = e.1.min(offset);
                e.2 = e.2.max(offset);
                true
            }
            Err(e) => {
                self.failed += 1;
                eprintln!("line {line} failed: {e}");
                false
            }
        }
    }
}

async fn produce(a: ProduceArgs) -> Result<bool, String> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use tokio::io::AsyncBufReadExt;
    let mut parse_key = false;
    let mut separator = "\t".to_string();
    let mut ignore_error = false;
    let mut producer_props = a.producer_property.clone();
    for p in &a.property {
        match reader_property(p)? {
            (k, v) if k == "transactional.id" => producer_props.push(format!("{k}={v}")),
            (k, v) if k == "parse.key" => parse_key = v.trim() == "true",
            (k, v) if k == "key.separator" => {
                separator = v.replace("\\t", "\t");
                if separator.is_empty() {
                    return Err("key.separator must not be empty".into());
                }
            }
            (k, v) if k == "ignore.error" => ignore_error = v.trim() == "true",
            (k, _) => return Err(format!("unknown --property {k}")),
        }
    }
    let cfg = config(
        a.producer_config.as_deref(),
        &producer_props,
        a.bootstrap_server.as_deref(),
    )?;
    let transactional = cfg.transactional_id.is_some();
    let producer = Producer::start(cfg).await.map_err(|e| e.to_string())?;
    let mut txn = Txn::start(&producer, transactional, a.transaction_size).await?;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &a.file {
        Some(p) => Box::new(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| format!("{p}: {e}"))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = tokio::io::BufReader::new(reader).lines();
    let started = Instant::now();
    let mut tally = ProduceTally::default();
    let mut deliveries = FuturesUnordered::new();
    let mut n = 0usize;
    // Lines are read while deliveries print as they are acknowledged (`tail -f | produce`
    // shows each one), with at most DELIVERY_WINDOW of them waiting.
    let stopped = loop {
        let line = tokio::select! {
            Some((line, result)) = deliveries.next(), if !deliveries.is_empty() => {
                if !tally.outcome(&a.topic, line, result, a.print_deliveries) && a.stop_on_error {
                    break true;
                }
                continue;
            }
            line = lines.next_line(), if deliveries.len() < DELIVERY_WINDOW => line,
        };
        let Some(line) = line.map_err(|e| e.to_string())? else {
            break false;
        };
        n += 1;
        let record = match parse_key
            .then(|| line.split_once(separator.as_str()))
            .flatten()
        {
            Some((k, v)) => ProducerRecord::new(a.topic.as_str(), v.to_string()).key(k.to_string()),
            None if parse_key && !ignore_error => {
                // kafka-console-producer logs the bad line and goes on.
                tally.sent += 1;
                tally.failed += 1;
                eprintln!("line {n} failed: no key separator {separator:?}");
                if a.stop_on_error {
                    break true;
                }
                continue;
            }
            None => ProducerRecord::new(a.topic.as_str(), line),
        };
        tally.sent += 1;
        match producer.send(record).await {
            Ok(d) => deliveries.push(async move { (n, d.await) }),
            Err(e) if transactional => {
                txn.abort(&producer).await;
                producer.close(Duration::from_secs(5)).await;
                return Err(format!("line {n}: {e}"));
            }
            Err(e) => {
                if !tally.outcome(&a.topic, n, Err(e), false) && a.stop_on_error {
                    break true;
                }
            }
        }
        txn.record_sent(&producer).await?;
    };
    if stopped {
        txn.abort(&producer).await;
    } else {
        txn.finish(&producer).await?;
    }
    while let Some((line, result)) = deliveries.next().await {
        tally.outcome(&a.topic, line, result, a.print_deliveries);
    }
    producer.close(Duration::from_secs(10)).await;
    println!(
        "produced {} of {} records to `{}` in {:.1} ms",
        tally.sent.saturating_sub(tally.failed),
        tally.sent,
        a.topic,
        started.elapsed().as_secs_f64() * 1e3
    );
    for (p, (n, lo, hi)) in &tally.per_partition {
        println!("  partition {p}: {n} records, offsets {lo}..={hi}");
    }
    if tally.failed > 0 {
        eprintln!("{} records failed", tally.failed);
    }
    Ok(tally.failed == 0)
}

/// The transactions of `produce --property transactional.id=..` and `perf --transactional-id`:
/// begin, commit every `size` records (or `duration`), commit at the end.
struct Txn {
    on: bool,
    size: u64,
    duration: Option<Duration>,
    in_txn: u64,
    opened: Instant,
    pub committed: u64,
}

impl Txn {
    async fn start(p: &Producer, on: bool, size: u64) -> Result<Txn, String> {
        if on {
            p.init_transactions()
                .await
                .map_err(|e| format!("init_transactions: {e}"))?;
            p.begin_transaction()
                .await
                .map_err(|e| format!("begin_transaction: {e}"))?;
        }
        Ok(Txn {
            on,
            size: size.max(1),
            duration: None,
            in_txn: 0,
            opened: Instant::now(),
            committed: 0,
        })
    }

    async fn record_sent(&mut self, p: &Producer) -> Result<(), String> {
        if !self.on {
            return Ok(());
        }
        self.in_txn += 1;
        let due = match self.duration {
            Some(d) => self.opened.elapsed() >= d,
            None => self.in_txn >= self.size,
        };
        if due {
            self.commit(p).await?;
            p.begin_transaction()
                .await
                .map_err(|e| format!("begin_transaction: {e}"))?;
            self.opened = Instant::now();
        }
        Ok(())
    }

    async fn commit(&mut self, p: &Producer) -> Result<(), String> {
        if let Err(e) = p.commit_transaction().await {
            if e.is_abortable() {
                self.abort(p).await;
            }
            return Err(format!("commit_transaction: {e}"));
        }
        self.committed += 1;
        self.in_txn = 0;
        Ok(())
    }

    async fn finish(&mut self, p: &Producer) -> Result<(), String> {
        if self.on {
            self.commit(p).await?;
        }
        Ok(())
    }

    async fn abort(&self, p: &Producer) {
        if self.on {
            if let Err(e) = p.abort_transaction().await {
                eprintln!("abort_transaction: {e}");
            }
        }
    }
}

/// Latencies in ms of acknowledged records, for the percentiles.
#[derive(Default)]
struct Stats {
    latencies: Vec<u32>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn perf(a: PerfArgs) -> Result<bool, String> {
    let mut props = a.producer_props.clone();
    if let Some(id) = &a.transactional_id {
        props.push(format!("transactional.id={id}"));
    }
    let cfg = config(
        a.producer_config.as_deref(),
        &props,
        a.bootstrap_server.as_deref(),
    )?;
    let transactional = cfg.transactional_id.is_some();
    let producer = Producer::start(cfg).await.map_err(|e| e.to_string())?;
    let mut txn = Txn::start(&producer, transactional, u64::MAX).await?;
    txn.duration = Some(Duration::from_millis(
        a.transaction_duration_ms.unwrap_or(3000).max(1),
    ));
    let payload = bytes::Bytes::from(
        (0..a.record_size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let stats = Arc::new(Mutex::new(Stats::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let report = {
        let (acked, every) = (
            acked.clone(),
            Duration::from_millis(a.reporting_interval.max(100)),
        );
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                let n = acked.load(Ordering::Relaxed);
                let secs = last.0.elapsed().as_secs_f64();
                eprintln!(
                    "{} records sent, {:.1} records/sec",
                    n - last.1,
                    (n - last.1) as f64 / secs
                );
                last = (Instant::now(), n);
            }
        })
    };
    for i in 0..a.num_records {
        if a.throughput > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / a.throughput);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep(due - now).await;
            }
        }
        let sent = Instant::now();
        let (stats, acked) = (stats.clone(), acked.clone());
        let size = payload.len() as u64;
        producer
            .send_with_callback(
                ProducerRecord::new(a.topic.as_str(), payload.clone()),
                move |r| {
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(_) => {
                            s.latencies
                                .push(sent.elapsed().as_millis().min(u32::MAX as u128) as u32);
                            s.bytes += size;
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            s.errors += 1;
                            s.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                },
            )
            .await
            .map_err(|e| format!("record {i}: {e}"))?;
        txn.record_sent(&producer).await?;
    }
    txn.finish(&producer).await?;
    producer.flush().await;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    report.abort();
    producer.close(Duration::from_secs(10)).await;
    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
    s.latencies.sort_unstable();
    let n = s.latencies.len();
    let pct = |p: f64| {
        if n == 0 {
            0
        } else {
            s.latencies[((n as f64 * p) as usize).min(n - 1)]
        }
    };
    let avg = if n == 0 {
        0.0
    } else {
        s.latencies.iter().map(|&l| l as f64).sum::<f64>() / n as f64
    };
    println!(
        "{n} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.2} ms avg latency, {} ms max \
         latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
        n as f64 / secs,
        s.bytes as f64 / secs / 1_048_576.0,
        s.latencies.last().copied().unwrap_or(0),
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(0.999)
    );
    if let Some(e) = &s.first_error {
        eprintln!("{} records failed; first error: {e}", s.errors);
    }
    if transactional {
        println!("{} transactions committed", txn.committed);
    }
    Ok(s.errors == 0)
}

#[actix::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(a) => produce(a).await,
        Command::Perf(a) => perf(a).await,
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("actix-kafka: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
