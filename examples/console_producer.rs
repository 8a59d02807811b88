//! Console producer (like `kafka-console-producer`): reads lines from a file or stdin and
//! produces one record per line, optionally `key<sep>value`, then prints a delivery summary.
//!
//! ```text
//! cargo run --release --example console_producer -- --bootstrap 127.0.0.1:9092 --topic lines \
//!     [--file README.md] [--key-separator '\t'] [--property linger.ms=5 ...] [--print-each] \
//!     [--producer.config client.properties] [--producer-property k=v ...]
//! ```
//!
//! `--producer.config FILE` reads Java client properties (as `kafka-console-producer` does), e.g.
//! the `KAFKA_CLIENT_CONFIG` that `scripts/kafka.sh start --security ...` prints: its
//! `bootstrap.servers` is used unless `--bootstrap-server` is given; `--producer-property` /
//! `--property` override single keys.
use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

struct Args {
    bootstrap: Option<String>,
    producer_config: Option<String>,
    topic: String,
    file: Option<String>,
    key_separator: Option<String>,
    properties: Vec<(String, String)>,
    print_each: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bootstrap: None,
        producer_config: None,
        topic: "lines".into(),
        file: None,
        key_separator: None,
        properties: Vec::new(),
        print_each: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" | "--bootstrap-server" => a.bootstrap = Some(value()?),
            "--producer.config" | "--command-config" => a.producer_config = Some(value()?),
            "--topic" => a.topic = value()?,
            "--file" => a.file = Some(value()?),
            "--key-separator" => a.key_separator = Some(value()?.replace("\\t", "\t")),
            "--property" | "--producer-property" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or(format!("--property {kv}: want k=v"))?;
                a.properties.push((k.to_string(), v.to_string()));
            }
            "--print-each" => a.print_each = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut props: Vec<(String, String)> = Vec::new();
    if let Some(path) = &args.producer_config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--producer.config {path}: {e}"))?;
        props.extend(parse_properties(&text));
    }
    let has_bootstrap = props.iter().any(|(k, _)| k == "bootstrap.servers");
    match (&args.bootstrap, has_bootstrap) {
        (Some(b), _) => props.push(("bootstrap.servers".to_string(), b.clone())),
        (None, true) => {}
        (None, false) => props.push((
            "bootstrap.servers".to_string(),
            std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into()),
        )),
    }
    props.extend(args.properties.iter().cloned());
    let config = ProducerConfig::from_map(props)?;
    let producer = Producer::start(config).await?;

    let reader: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let start = Instant::now();
    let mut deliveries = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        let mut record = match args
            .key_separator
            .as_deref()
            .and_then(|s| line.split_once(s))
        {
            Some((k, v)) => {
                ProducerRecord::new(args.topic.as_str(), v.to_string()).key(k.to_string())
            }
            None => ProducerRecord::new(args.topic.as_str(), line.clone()),
        };
        record = record.header("line", (n + 1).to_string());
        deliveries.push((n + 1, producer.send(record).await?));
    }
    let mut per_partition: BTreeMap<i32, (u64, i64, i64)> = BTreeMap::new();
    let mut errors: Vec<(usize, ProduceError)> = Vec::new();
    let total = deliveries.len();
    for (line_no, d) in deliveries {
        match d.await {
            Ok(RecordMetadata {
                partition, offset, ..
            }) => {
                if args.print_each {
                    println!("line {line_no} -> {}-{partition}@{offset}", args.topic);
                }
                let e = per_partition.entry(partition).or_insert((0, i64::MAX, -1));
                e.0 += 1;
                e.1 = e.1.min(offset);
                e.2 = e.2.max(offset);
            }
            Err(e) => errors.push((line_no, e)),
        }
    }
    let elapsed = start.elapsed();
    producer.close(Duration::from_secs(10)).await;
    println!(
        "produced {} of {} records to `{}` in {:.1} ms",
        total - errors.len(),
        total,
        args.topic,
        elapsed.as_secs_f64() * 1e3
    );
    for (p, (n, lo, hi)) in &per_partition {
        println!("  partition {p}: {n} records, offsets {lo}..={hi}");
    }
    for (line, e) in errors.iter().take(10) {
        eprintln!("  line {line} failed: {e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} records failed", errors.len()).into())
    }
}

/// `key=value` lines of a Java properties file (comments and blank lines skipped).
fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('=').or_else(|| l.split_once(':')))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
