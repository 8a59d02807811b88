//! The real-cluster fault matrix: Apache Kafka, 3 brokers (`scripts/kafka.sh start --brokers 3`:
//! replication 3, `min.insync.replicas=2`), our defaults (`acks=all`, idempotence on), one topic
//! of 12 partitions, at least `CLUSTER_FAULT_RECORDS` (default 300,000) keyed records streamed by
//! one task while the fault happens, every record read back with librdkafka (`check.crcs=true`).
//!
//! 1. `kill_leader`: `kill -9` the broker leading most partitions mid-stream, restart it 5 s later;
//! 2. `rolling_restart`: graceful restart of all three brokers, one after the other, each once the
//!    previous one is back in every ISR;
//! 3. `zombie_leader`: SIGSTOP the broker leading most partitions for longer than
//!    `request.timeout.ms` (and than the controller's session timeout), then SIGCONT;
//! 4. `kill_all`: `kill -9` all three brokers, restart them with their data;
//! 5. `cut_connections`: every broker behind the test proxy, connections cut at random while
//!    the leaders of every partition move (reassignment + preferred election), three times.
//!
//! Each prints one `MATRIX` line: sent / acknowledged / failed (possibly written) / read back /
//! lost acknowledged / duplicated / reordered per key / offset mismatches / max send→outcome
//! against `delivery.timeout.ms` / recovery (the longest time without any acknowledgement).
//! Asserted: 0 lost, 0 duplicated, 0 reordered, every record exactly one outcome, no outcome later
//! than `delivery.timeout.ms` (+1 s), every acknowledged offset is where the record is, nothing
//! failed.
//!
//! Run one: `scripts/test.sh --test cluster_faults -- kill_leader --nocapture`.
//! `CLUSTER_FAULT_RECORDS=N` changes the record count.
// A std Mutex is held across awaits on purpose: it runs the scenarios one at a time.
#![allow(clippy::await_holding_lock)]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord};
use common::proxy::Proxy;
use common::{partition_layout, read_all, unique_topic, KafkaCluster};

const PARTITIONS: i32 = 12;
const KEYS: u64 = 1200;
const PADDING: &str = "|0123456789012345678901234567890123456789012345678901234567890123456789";

/// One matrix scenario at a time: each starts three JVMs of its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn records() -> u64 {
    std::env::var("CLUSTER_FAULT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
}

/// A record's outcome: when, and its (partition, offset) or error.
type Outcome = (Instant, Result<(i32, i64), ProduceError>);

/// What happened to one record.
#[derive(Default)]
struct Slot {
    sent_at: Option<Instant>,
    /// Outcome time and result (offset place or error).
    outcome: Option<Outcome>,
    /// Outcomes beyond the first (must stay 0).
    extra_outcomes: u32,
}

struct Outcomes {
    slots: Vec<Slot>,
    /// Times of acknowledgements, for the recovery figure.
    acks: Vec<Instant>,
}

type Shared = Arc<Mutex<Outcomes>>;

/// Streams records `0..` at `rate` records/s until at least `min` were sent and `stop` is set.
/// Each record: key `k<seq % KEYS>`, value `<seq><PADDING>`; outcomes via callbacks.
async fn stream(
    producer: Producer,
    topic: String,
    min: u64,
    rate: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    shared: Shared,
) -> (u64, u64) {
    let started = Instant::now();
    let mut refused = 0u64;
    let mut seq = 0u64;
    while seq < min || !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if seq.is_multiple_of(256) {
            let due = started + Duration::from_secs_f64(seq as f64 / rate);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let record = ProducerRecord::new(topic.as_str(), format!("{seq}{PADDING}"))
            .key(format!("k{}", seq % KEYS));
        {
            let mut o = shared.lock().unwrap();
            if o.slots.len() <= seq as usize {
                o.slots.resize_with(seq as usize + 1, Slot::default);
            }
            o.slots[seq as usize].sent_at = Some(Instant::now());
        }
        let s = shared.clone();
        let this = seq;
        let res = producer
            .send_with_callback(record, move |r| {
                let now = Instant::now();
                let mut o = s.lock().unwrap();
                if r.is_ok() {
                    o.acks.push(now);
                }
                let slot = &mut o.slots[this as usize];
                if slot.outcome.is_some() {
                    slot.extra_outcomes += 1;
                } else {
                    slot.outcome = Some((now, r.map(|md| (md.partition, md.offset))));
                }
            })
            .await;
        if let Err(e) = res {
            refused += 1;
            eprintln!("send of record {seq} refused: {e}");
            shared.lock().unwrap().slots[seq as usize].sent_at = None;
        }
        seq += 1;
    }
    (seq, refused)
}

struct Scenario {
    name: &'static str,
    /// Planned length of the stream (sets the send rate); it goes on until the fault is over.
    stream_secs: f64,
    delivery_timeout: Duration,
    request_timeout: Duration,
}

#[derive(Debug, Default)]
struct Row {
    sent: u64,
    refused: u64,
    acked: u64,
    failed: u64,
    failed_possibly_written: u64,
    read_back: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    misplaced: u64,
    no_outcome: u64,
    extra_outcomes: u64,
    max_latency_ms: u64,
    recovery_ms: u64,
    failed_but_written_unflagged: u64,
}

/// Runs `fault` (blocking, on its own thread) against a fresh 3-broker cluster while records
/// stream; returns the analysed row. `fault` gets the cluster, the topic and the proxies (if
/// `proxied`).
async fn run_scenario(
    sc: Scenario,
    proxied: bool,
    fault: impl FnOnce(&KafkaCluster, &str, &[Proxy]) + Send + 'static,
) -> Row {
    common::init_tracing();
    let cluster = Arc::new(KafkaCluster::start(3));
    let topic = unique_topic(sc.name);
    cluster.create_topic(&topic, PARTITIONS);
    let proxies: Arc<Vec<Proxy>> = Arc::new(if proxied {
        let ups: Vec<std::net::SocketAddr> = cluster
            .bootstrap
            .split(',')
            .map(|a| a.parse().unwrap())
            .collect();
        Proxy::start_group(&ups)
    } else {
        Vec::new()
    });
    let bootstrap: Vec<String> = if proxied {
        proxies.iter().map(|p| p.bootstrap()).collect()
    } else {
        cluster.bootstrap.split(',').map(str::to_string).collect()
    };
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers(bootstrap)
            .delivery_timeout(sc.delivery_timeout)
            .request_timeout(sc.request_timeout)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let cfg = producer.config();
    assert!(cfg.enable_idempotence, "our defaults: idempotence on");

    let n = records();
    let shared: Shared = Arc::new(Mutex::new(Outcomes {
        slots: Vec::with_capacity(n as usize + 100_000),
        acks: Vec::with_capacity(n as usize + 100_000),
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streaming = tokio::spawn(stream(
        producer.clone(),
        topic.clone(),
        n,
        n as f64 / sc.stream_secs,
        stop.clone(),
        shared.clone(),
    ));
    let started = Instant::now();
    let fault_task = {
        let (c, t, p) = (cluster.clone(), topic.clone(), proxies.clone());
        tokio::task::spawn_blocking(move || fault(&c, &t, &p))
    };
    let fault_result = fault_task.await;
    let fault_secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent_total, refused) = streaming.await.expect("stream task");
    let stream_secs = started.elapsed().as_secs_f64();
    if let Err(e) = fault_result {
        std::panic::resume_unwind(e.into_panic());
    }
    // Every outcome arrives by delivery.timeout.ms after its send.
    let deadline = Instant::now() + sc.delivery_timeout + Duration::from_secs(5);
    loop {
        let done = {
            let o = shared.lock().unwrap();
            o.slots
                .iter()
                .all(|s| s.sent_at.is_none() || s.outcome.is_some())
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = producer.sender_stats().await;
    producer.close(Duration::from_secs(10)).await;

    let read = read_all(
        &cluster.plaintext_bootstrap,
        &topic,
        Duration::from_secs(120),
    )
    .await;
    let o = shared.lock().unwrap();
    let mut row = Row {
        sent: sent_total - refused,
        refused,
        read_back: read.len() as u64,
        ..Row::default()
    };
    // Where each record was read (seq -> places).
    let mut places: HashMap<u64, Vec<(i32, i64)>> = HashMap::with_capacity(read.len());
    let mut last_per_key: BTreeMap<(i32, u64), u64> = BTreeMap::new();
    for r in &read {
        let v = r.value_str().unwrap_or_default();
        let seq: u64 = v
            .split('|')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("foreign record {v:?}"));
        places.entry(seq).or_default().push((r.partition, r.offset));
        let key = seq % KEYS;
        // read is sorted by (partition, offset): per key, sequence numbers must grow.
        if let Some(prev) = last_per_key.insert((r.partition, key), seq) {
            if prev > seq {
                row.reordered += 1;
            }
        }
    }
    row.duplicated = places.values().filter(|p| p.len() > 1).count() as u64;
    for (seq, slot) in o.slots.iter().enumerate() {
        let Some(sent_at) = slot.sent_at else {
            continue;
        };
        row.extra_outcomes += slot.extra_outcomes as u64;
        let seq = seq as u64;
        match &slot.outcome {
            None => row.no_outcome += 1,
            Some((at, res)) => {
                row.max_latency_ms = row
                    .max_latency_ms
                    .max(at.duration_since(sent_at).as_millis() as u64);
                match res {
                    Ok(place) => {
                        row.acked += 1;
                        match places.get(&seq) {
                            None => row.lost += 1,
                            Some(p) if !p.contains(place) => row.misplaced += 1,
                            Some(_) => {}
                        }
                    }
                    Err(e) => {
                        row.failed += 1;
                        let pw = matches!(
                            e,
                            ProduceError::DeliveryTimeout {
                                possibly_written: true,
                                ..
                            }
                        );
                        if pw {
                            row.failed_possibly_written += 1;
                        } else if places.contains_key(&seq) {
                            row.failed_but_written_unflagged += 1;
                        }
                        if row.failed <= 5 {
                            eprintln!("record {seq} failed: {e}");
                        }
                    }
                }
            }
        }
    }
    let mut acks = o.acks.clone();
    acks.sort();
    let mut prev = started;
    for a in acks.iter().filter(|a| **a >= started) {
        row.recovery_ms = row
            .recovery_ms
            .max(a.duration_since(prev).as_millis() as u64);
        prev = *a;
    }
    drop(o);
    println!(
        "MATRIX {} sent={} refused={} acked={} failed={} (possibly_written={}) read_back={} \
         lost_acked={} duplicated={} reordered={} misplaced={} no_outcome={} extra_outcomes={} \
         max_send_to_outcome_ms={} delivery_timeout_ms={} recovery_ms={} stream_s={:.1} fault_s={:.1}",
        sc.name,
        row.sent,
        row.refused,
        row.acked,
        row.failed,
        row.failed_possibly_written,
        row.read_back,
        row.lost,
        row.duplicated,
        row.reordered,
        row.misplaced,
        row.no_outcome,
        row.extra_outcomes,
        row.max_latency_ms,
        sc.delivery_timeout.as_millis(),
        row.recovery_ms,
        stream_secs,
        fault_secs,
    );
    println!("DETAIL {} sender stats: {stats:?}", sc.name);

    assert!(row.sent >= n, "{}: streamed {} < {n}", sc.name, row.sent);
    assert_eq!(row.refused, 0, "{}: send refused records", sc.name);
    assert_eq!(row.no_outcome, 0, "{}: records without an outcome", sc.name);
    assert_eq!(
        row.extra_outcomes, 0,
        "{}: records with two outcomes",
        sc.name
    );
    assert_eq!(row.lost, 0, "{}: acknowledged records lost", sc.name);
    assert_eq!(row.duplicated, 0, "{}: records written twice", sc.name);
    assert_eq!(
        row.reordered, 0,
        "{}: records reordered within a key",
        sc.name
    );
    assert_eq!(
        row.misplaced, 0,
        "{}: acks naming the wrong offset",
        sc.name
    );
    assert_eq!(
        row.failed_but_written_unflagged, 0,
        "{}: failed records written without possibly_written",
        sc.name
    );
    assert!(
        row.max_latency_ms <= sc.delivery_timeout.as_millis() as u64 + 1000,
        "{}: an outcome came {} ms after its send (delivery.timeout.ms {})",
        sc.name,
        row.max_latency_ms,
        sc.delivery_timeout.as_millis()
    );
    assert_eq!(
        row.failed, 0,
        "{}: records failed although delivery.timeout.ms covers the fault",
        sc.name
    );
    assert_eq!(
        row.read_back, row.acked,
        "{}: read back exactly the acknowledged records",
        sc.name
    );
    row
}

/// The broker leading most partitions of `topic`.
fn busiest_leader(cluster: &KafkaCluster, topic: &str) -> i32 {
    let mut count: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, leader, _, _) in partition_layout(&cluster.plaintext_bootstrap, topic) {
        *count.entry(leader).or_default() += 1;
    }
    count
        .into_iter()
        .filter(|(l, _)| *l > 0)
        .max_by_key(|(_, c)| *c)
        .map(|(l, _)| l)
        .expect("a leader")
}

/// Waits until every partition of `topic` has all three replicas in its ISR.
fn wait_full_isr(cluster: &KafkaCluster, topic: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let layout = partition_layout(&cluster.plaintext_bootstrap, topic);
        if layout.iter().all(|(_, l, _, isr)| *l > 0 && isr.len() == 3) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ISR not full after {timeout:?}: {layout:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader() {
    let _g = lock();
    let sc = Scenario {
        name: "kill_leader",
        stream_secs: 25.0,
        delivery_timeout: secs(120),
        request_timeout: secs(30),
    };
    run_scenario(sc, false, |c, topic, _| {
        std::thread::sleep(secs(5));
        let victim = busiest_leader(c, topic);
        println!("kill_leader: kill -9 broker {victim}");
        c.kill_broker(victim);
        std::thread::sleep(secs(5));
        c.start_broker(victim);
        wait_full_isr(c, topic, secs(60));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart() {
    let _g = lock();
    let sc = Scenario {
        name: "rolling_restart",
        stream_secs: 45.0,
        delivery_timeout: secs(120),
        request_timeout: secs(30),
    };
    run_scenario(sc, false, |c, topic, _| {
        std::thread::sleep(secs(4));
        for id in 1..=3 {
            println!("rolling_restart: restart broker {id}");
            c.stop_broker(id);
            c.start_broker(id);
            wait_full_isr(c, topic, secs(60));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_leader() {
    let _g = lock();
    // Paused longer than request.timeout.ms (10 s here) and than the controller's broker
    // session timeout (9 s): the controller fences it and moves its leaders; requests to the
    // zombie time out on our side.
    let sc = Scenario {
        name: "zombie_leader",
        stream_secs: 30.0,
        delivery_timeout: secs(120),
        request_timeout: secs(10),
    };
    run_scenario(sc, false, |c, topic, _| {
        std::thread::sleep(secs(5));
        let victim = busiest_leader(c, topic);
        println!("zombie_leader: SIGSTOP broker {victim} for 15 s");
        c.pause_broker(victim);
        std::thread::sleep(secs(15));
        c.resume_broker(victim);
        wait_full_isr(c, topic, secs(60));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all() {
    let _g = lock();
    let sc = Scenario {
        name: "kill_all",
        stream_secs: 40.0,
        delivery_timeout: secs(180),
        request_timeout: secs(30),
    };
    run_scenario(sc, false, |c, topic, _| {
        std::thread::sleep(secs(5));
        println!("kill_all: kill -9 brokers 1, 2, 3");
        for id in 1..=3 {
            c.kill_broker(id);
        }
        std::thread::sleep(secs(3));
        // Together: none of them can finish starting before a quorum of controllers is back.
        std::thread::scope(|s| {
            for id in 1..=3 {
                s.spawn(move || c.start_broker(id));
            }
        });
        wait_full_isr(c, topic, secs(90));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections() {
    let _g = lock();
    let sc = Scenario {
        name: "cut_connections",
        stream_secs: 30.0,
        delivery_timeout: secs(120),
        request_timeout: secs(30),
    };
    run_scenario(sc, true, |c, topic, proxies| {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let cuts = std::thread::scope(|s| {
            // Cuts: a random proxy's connections every 0.2-1.5 s, during the whole fault.
            let cutter = s.spawn(|| {
                let mut rng = fastrand::Rng::with_seed(8);
                let mut cuts = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
                    proxies[rng.usize(..proxies.len())].kill_connections();
                    cuts += 1;
                }
                cuts
            });
            let started = Instant::now();
            for moves in 1..=3u64 {
                let at = secs(2 + 6 * moves);
                std::thread::sleep(at.saturating_sub(started.elapsed()));
                let leaders = c.move_leaders(topic);
                println!("cut_connections: leaders moved ({moves}): {leaders:?}");
            }
            std::thread::sleep(secs(25).saturating_sub(started.elapsed()));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            cutter.join().expect("cutter thread")
        });
        println!("cut_connections: {cuts} connection cuts, 3 leader moves");
    })
    .await;
}
