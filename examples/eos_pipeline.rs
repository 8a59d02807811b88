//! Exactly-once consume-transform-produce (KIP-98, KIP-447): read `--input` with a librdkafka
//! consumer (`read_committed`), upper-case each value, write it to `--output` and commit the
//! consumer offsets *in the same transaction*. Killed at any point and restarted with the same
//! `--transactional-id`, it neither loses nor duplicates an output record: `init_transactions`
//! aborts what the killed instance left open, and reading resumes at the offsets committed with
//! the last committed transaction.
//!
//! ```text
//! scripts/kafka.sh start            # prints KAFKA_BOOTSTRAP
//! cargo run --release --example eos_pipeline -- --bootstrap $KAFKA_BOOTSTRAP \
//!     --input in --output out --group upper --transactional-id upper-0 --exit-when-done
//! ```
//!
//! The consumer is assigned every input partition (no group membership: one instance per
//! transactional id); offsets go through the producer's transaction with
//! `ConsumerGroupMetadata::new(group)`. With a subscribing consumer, pass its generation and
//! member id instead so a rebalanced-away instance is fenced too.
use actix_kafka::{
    ConsumerGroupMetadata, Producer, ProducerConfig, ProducerRecord, TopicPartition,
    TransactionError,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Args {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
    transactional_id: String,
    batch: usize,
    exit_when_done: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        bootstrap: std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        input: String::new(),
        output: String::new(),
        group: "eos-pipeline".into(),
        transactional_id: "eos-pipeline-0".into(),
        batch: 500,
        exit_when_done: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value()?,
            "--input" => a.input = value()?,
            "--output" => a.output = value()?,
            "--group" => a.group = value()?,
            "--transactional-id" => a.transactional_id = value()?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--exit-when-done" => a.exit_when_done = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.input.is_empty() || a.output.is_empty() {
        return Err("--input and --output are required".into());
    }
    Ok(a)
}

fn consumer(a: &Args) -> Result<(BaseConsumer, Vec<i32>), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("group.id", &a.group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(&a.input), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    Ok((c, partitions))
}

/// Assigns every input partition at the offset committed with the last transaction; returns
/// those offsets (0 where none is committed).
fn rewind(c: &BaseConsumer, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, String> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| format!("committed offsets: {e}"))?;
    let mut assign = TopicPartitionList::new();
    let mut at = BTreeMap::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => {
                at.insert(e.partition(), o);
                Offset::Offset(o)
            }
            _ => {
                at.insert(e.partition(), 0);
                Offset::Beginning
            }
        };
        assign
            .add_partition_offset(topic, e.partition(), offset)
            .map_err(|e| e.to_string())?;
    }
    c.assign(&assign).map_err(|e| e.to_string())?;
    Ok(at)
}

/// True when every partition was read up to its high watermark (`at`: the next offset to read
/// per partition as we track it; librdkafka's position also counts skipped transaction markers).
fn caught_up(c: &BaseConsumer, topic: &str, at: &BTreeMap<i32, i64>) -> bool {
    let pos = c.position().ok();
    at.iter().all(|(&p, &ours)| {
        let hi = c
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map(|w| w.1)
            .unwrap_or(i64::MAX);
        let theirs = pos
            .as_ref()
            .and_then(|pos| pos.find_partition(topic, p))
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        ours.max(theirs) >= hi
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let config = ProducerConfig::builder()
        .bootstrap_servers([a.bootstrap.clone()])
        .transactional_id(a.transactional_id.clone())
        .build()?;
    let producer = Producer::start(config).await?;
    // Fences an older instance and aborts the transaction it left open.
    producer.init_transactions().await?;
    let (consumer, partitions) = consumer(&a)?;
    let mut at = rewind(&consumer, &a.input, &partitions)?;
    let group = ConsumerGroupMetadata::new(a.group.clone());
    let (mut transactions, mut records) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        // Gather up to --batch records.
        let mut batch = Vec::new();
        while batch.len() < a.batch {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                )),
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => break,
            }
        }
        if batch.is_empty() {
            if a.exit_when_done && caught_up(&consumer, &a.input, &at) {
                break;
            }
            continue;
        }
        producer.begin_transaction().await?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut sent = Ok(());
        for (partition, offset, key, value) in &batch {
            let out = String::from_utf8_lossy(value).to_uppercase();
            let mut record = ProducerRecord::new(a.output.as_str(), out);
            if let Some(k) = key {
                record = record.key(k.clone());
            }
            if let Err(e) = producer.send(record).await {
                sent = Err(e);
                break;
            }
            next.insert(*partition, offset + 1);
        }
        let offsets: Vec<(TopicPartition, i64)> = next
            .iter()
            .map(|(p, o)| (TopicPartition::new(a.input.as_str(), *p), *o))
            .collect();
        let result: Result<(), TransactionError> = match sent {
            Err(e) => Err(TransactionError::Abortable {
                reason: e.to_string().into(),
            }),
            Ok(()) => match producer.send_offsets_to_transaction(offsets, &group).await {
                Ok(()) => producer.commit_transaction().await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                transactions += 1;
                records += batch.len() as u64;
                at.extend(next);
            }
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                // Abortable: undo the transaction and read again from the committed offsets.
                eprintln!("transaction aborted: {e}");
                producer.abort_transaction().await?;
                at = rewind(&consumer, &a.input, &partitions)?;
            }
        }
    }
    producer.close(Duration::from_secs(10)).await;
    println!(
        "committed {transactions} transactions, {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
