//! Issue 11: transactions on Apache Kafka 4 (scripts/kafka.sh), read back by librdkafka with
//! `isolation.level=read_committed` (and `read_uncommitted` to prove aborted records were
//! written); librdkafka's mock cluster injects coordinator errors.
mod common;

use actix_kafka::{
    ConsumerGroupMetadata, ProduceError, Producer, ProducerConfig, ProducerRecord, TransactionError,
};
use common::{read_all, read_all_committed, unique_topic, KafkaCluster, TestBroker};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READ: Duration = Duration::from_secs(60);

fn txn_config(bootstrap: &str, id: &str) -> actix_kafka::config::ProducerConfigBuilder {
    ProducerConfig::builder()
        .bootstrap_servers([bootstrap.to_string()])
        .transactional_id(id)
        .max_block(Duration::from_secs(30))
}

async fn start(bootstrap: &str, id: &str) -> Producer {
    let p = Producer::start(txn_config(bootstrap, id).build().unwrap())
        .await
        .unwrap();
    p.init_transactions().await.expect("init_transactions");
    p
}

/// Sends `values` keyed `k{i % 7}` and waits for every delivery.
async fn send_all(p: &Producer, topic: &str, values: &[String]) {
    let mut ds = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let r = ProducerRecord::new(topic, v.clone()).key(format!("k{}", i % 7));
        ds.push(p.send(r).await.expect("send in transaction"));
    }
    for d in ds {
        d.await.expect("delivery in transaction");
    }
}

fn values(of: &[common::ConsumedRecord]) -> Vec<String> {
    of.iter()
        .map(|r| r.value_str().unwrap_or_default())
        .collect()
}

/// Per key, values in the order they were read (partition order).
fn by_key(of: &[common::ConsumedRecord]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in of {
        m.entry(r.key_str().unwrap_or_default())
            .or_default()
            .push(r.value_str().unwrap_or_default());
    }
    m
}

/// Test 1: commit, abort, and 100 transactions of both kinds: a read_committed reader sees
/// exactly the committed records, in order; the aborted ones are in the log all the same.
#[actix_rt::test]
async fn commit_abort_and_a_hundred_mixed_transactions() {
    common::init_tracing();
    let broker = TestBroker::start();
    let topic = unique_topic("txn-mixed");
    broker.create_topic(&topic, 3);
    let p = start(&broker.bootstrap, &unique_topic("txn-id")).await;

    // Sending before begin_transaction is a state error, and nothing is enqueued.
    let err = p
        .send(ProducerRecord::new(topic.as_str(), "outside"))
        .await
        .expect_err("send outside a transaction must fail");
    assert!(
        matches!(
            err,
            ProduceError::Transaction(TransactionError::InvalidState { .. })
        ),
        "{err:?}"
    );

    // The committed transactions, each as sent (keys are k{index % 7} within a transaction).
    let mut committed: Vec<Vec<String>> = Vec::new();
    let mut aborted = 0usize;
    // One committed transaction of 1000, one aborted of 500 (delivered before the abort).
    p.begin_transaction().await.unwrap();
    let first: Vec<String> = (0..1000).map(|i| format!("c0-{i}")).collect();
    send_all(&p, &topic, &first).await;
    p.commit_transaction().await.expect("commit");
    committed.push(first);
    p.begin_transaction().await.unwrap();
    let gone: Vec<String> = (0..500).map(|i| format!("a0-{i}")).collect();
    send_all(&p, &topic, &gone).await;
    p.abort_transaction().await.expect("abort");
    aborted += gone.len();

    // 100 more: every third aborted.
    for t in 1..=100 {
        let abort = t % 3 == 0;
        let vals: Vec<String> = (0..20)
            .map(|i| format!("{}{t}-{i}", if abort { "a" } else { "c" }))
            .collect();
        p.begin_transaction().await.unwrap();
        send_all(&p, &topic, &vals).await;
        if abort {
            p.abort_transaction().await.expect("abort");
            aborted += vals.len();
        } else {
            p.commit_transaction().await.expect("commit");
            committed.push(vals);
        }
    }
    // A second commit with no transaction open is a state error (Java's IllegalStateException).
    assert!(matches!(
        p.commit_transaction().await,
        Err(TransactionError::InvalidState { .. })
    ));
    // close() aborts the open transaction (else the reader below would wait on it forever).
    p.begin_transaction().await.unwrap();
    let open: Vec<String> = (0..30).map(|i| format!("a-open-{i}")).collect();
    send_all(&p, &topic, &open).await;
    aborted += open.len();
    p.close(Duration::from_secs(5)).await;

    let read = read_all_committed(&broker.bootstrap, &topic, READ).await;
    let got = values(&read);
    let n_committed: usize = committed.iter().map(Vec::len).sum();
    assert_eq!(
        got.len(),
        n_committed,
        "read_committed must see exactly the committed records"
    );
    assert!(
        got.iter().all(|v| v.starts_with('c')),
        "an aborted record is visible"
    );
    // Same records, and per key in send order.
    let mut sent_by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for txn in &committed {
        for (i, v) in txn.iter().enumerate() {
            sent_by_key
                .entry(format!("k{}", i % 7))
                .or_default()
                .push(v.clone());
        }
    }
    assert_eq!(
        by_key(&read),
        sent_by_key,
        "committed records out of order or changed"
    );
    // The aborted records were written: read_uncommitted sees them.
    let all = read_all(&broker.bootstrap, &topic, READ).await;
    assert_eq!(all.len(), n_committed + aborted);
}

/// Test 2: a second producer with the same transactional.id fences the first; the first one's
/// commit fails with a fatal fenced error and nothing of its transaction becomes visible.
#[actix_rt::test]
async fn zombie_is_fenced() {
    common::init_tracing();
    let broker = TestBroker::start();
    let topic = unique_topic("txn-zombie");
    broker.create_topic(&topic, 2);
    let id = unique_topic("txn-id");
    let zombie = start(&broker.bootstrap, &id).await;
    zombie.begin_transaction().await.unwrap();
    let lost: Vec<String> = (0..200).map(|i| format!("zombie-{i}")).collect();
    send_all(&zombie, &topic, &lost).await;

    let fresh = start(&broker.bootstrap, &id).await;
    // The zombie's next send is refused by the broker (its epoch is old) and its commit fails
    // fatally.
    let late = zombie
        .send(ProducerRecord::new(topic.as_str(), "zombie-late"))
        .await;
    if let Ok(d) = late {
        let r = d.await;
        assert!(
            r.is_err(),
            "a fenced producer's record was acknowledged: {r:?}"
        );
    }
    let err = zombie.commit_transaction().await.unwrap_err();
    assert!(err.is_fatal(), "commit of a fenced producer: {err:?}");
    assert!(
        matches!(err, TransactionError::Fenced { .. }),
        "expected Fenced: {err:?}"
    );
    // Fatal means fatal: every later call fails the same way.
    assert!(zombie.begin_transaction().await.unwrap_err().is_fatal());
    assert!(zombie.abort_transaction().await.unwrap_err().is_fatal());
    zombie.close(Duration::from_secs(5)).await;

    fresh.begin_transaction().await.unwrap();
    let kept: Vec<String> = (0..100).map(|i| format!("fresh-{i}")).collect();
    send_all(&fresh, &topic, &kept).await;
    fresh.commit_transaction().await.unwrap();
    fresh.close(Duration::from_secs(5)).await;

    let read = read_all_committed(&broker.bootstrap, &topic, READ).await;
    let mut got = values(&read);
    got.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(
        got, want,
        "only the new producer's committed records are visible"
    );
}

/// Test 6: a transaction left open past transaction.timeout.ms is aborted by the broker; the
/// next commit gets the fenced error Java gives (ProducerFencedException) and nothing is visible.
#[actix_rt::test]
async fn transaction_timeout_aborts_and_fences() {
    common::init_tracing();
    // The coordinator looks for expired transactions every 10 s by default: a cluster of our own
    // that looks every 500 ms.
    let mut cluster = KafkaCluster::start_with(
        1,
        "plaintext",
        &["transaction.abort.timed.out.transaction.cleanup.interval.ms=500"],
    );
    let bootstrap = cluster.bootstrap.clone();
    let topic = unique_topic("txn-timeout");
    cluster.create_topic(&topic, 1);
    let cfg = txn_config(&bootstrap, &unique_topic("txn-id"))
        .transaction_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let p = Producer::start(cfg).await.unwrap();
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let vals: Vec<String> = (0..50).map(|i| format!("expired-{i}")).collect();
    send_all(&p, &topic, &vals).await;
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let err = p.commit_transaction().await.unwrap_err();
    assert!(
        err.is_fatal(),
        "commit after the transaction timed out: {err:?}"
    );
    assert!(matches!(err, TransactionError::Fenced { .. }), "{err:?}");
    p.close(Duration::from_secs(5)).await;
    let read = read_all_committed(&bootstrap, &topic, READ).await;
    assert!(
        read.is_empty(),
        "records of a timed-out transaction are visible: {read:?}"
    );
    assert_eq!(read_all(&bootstrap, &topic, READ).await.len(), vals.len());
    cluster.stop();
}

/// A binary built beside this test: `target/<profile>/{name}` or `.../examples/{name}`.
fn built(name: &str, example: bool) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = if example {
        profile.join("examples").join(name)
    } else {
        profile.join(name)
    };
    assert!(
        path.exists(),
        "{} is not built: run the tests with scripts/test.sh (it builds it), or first `cargo \
         build --release --features mock,test-hooks,cli,serde_json,actix-web,metrics,opentelemetry --example eos_pipeline --bin \
         actix-kafka`",
        path.display()
    );
    path
}

/// Waits until `topic` holds at least `n` records (high watermarks, read_uncommitted).
async fn wait_written(bootstrap: &str, topic: &str, n: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (b, t) = (bootstrap.to_string(), topic.to_string());
        let total: i64 = tokio::task::spawn_blocking(move || common::watermarks(&b, &t))
            .await
            .unwrap()
            .values()
            .map(|(_, hi)| *hi)
            .sum();
        if total >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {total} of {n} records written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Test 3: the producer process (the `actix-kafka produce` CLI) is killed with SIGKILL in the
/// middle of a transaction; a new producer with the same transactional.id aborts it in
/// `init_transactions`; read_committed sees none of the killed transaction's records.
#[actix_rt::test]
async fn killed_producer_transaction_is_aborted_on_restart() {
    use std::io::Write;
    common::init_tracing();
    let broker = TestBroker::start();
    let topic = unique_topic("txn-crash");
    broker.create_topic(&topic, 3);
    let id = unique_topic("txn-id");
    let mut child = Command::new(built("actix-kafka", false))
        .args([
            "produce",
            "--bootstrap-server",
            &broker.bootstrap,
            "--topic",
            &topic,
        ])
        .args(["--property", &format!("transactional.id={id}")])
        .args(["--transaction-size", "1000000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the CLI");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for i in 0..300 {
            writeln!(stdin, "killed-{i}").unwrap();
        }
        stdin.flush().unwrap();
    }
    // Once its records are in the log (inside the open transaction), kill -9.
    wait_written(&broker.bootstrap, &topic, 300, Duration::from_secs(60)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let p = start(&broker.bootstrap, &id).await;
    p.begin_transaction().await.unwrap();
    let after: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    send_all(&p, &topic, &after).await;
    p.commit_transaction().await.unwrap();
    p.close(Duration::from_secs(5)).await;

    let read = read_all_committed(&broker.bootstrap, &topic, READ).await;
    let mut got = values(&read);
    got.sort();
    let mut want = after.clone();
    want.sort();
    assert_eq!(got, want, "a record of the killed transaction is visible");
    assert_eq!(read_all(&broker.bootstrap, &topic, READ).await.len(), 310);
}

/// Test 4: the exactly-once pipeline (examples/eos_pipeline.rs) is killed with SIGKILL at random
/// points three times and restarted; the output is the transformed input, each record exactly
/// once, and per key in input order.
#[actix_rt::test]
async fn exactly_once_pipeline_survives_kill_9() {
    common::init_tracing();
    let broker = TestBroker::start();
    let input = unique_topic("eos-in");
    let output = unique_topic("eos-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 3);
    const N: usize = 20_000;
    // The input: non-transactional, keyed, values unique.
    let p = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([broker.bootstrap.clone()])
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut ds = Vec::with_capacity(N);
    for i in 0..N {
        let r = ProducerRecord::new(input.as_str(), format!("rec-{i}")).key(format!("k{}", i % 31));
        ds.push(p.send(r).await.unwrap());
    }
    for d in ds {
        d.await.unwrap();
    }
    p.close(Duration::from_secs(5)).await;

    let exe = built("eos_pipeline", true);
    let group = unique_topic("eos-group");
    let id = unique_topic("eos-txn");
    let run = |exit: bool| {
        let mut c = Command::new(&exe);
        c.args([
            "--bootstrap",
            &broker.bootstrap,
            "--input",
            &input,
            "--output",
            &output,
        ])
        .args([
            "--group",
            &group,
            "--transactional-id",
            &id,
            "--batch",
            "100",
        ])
        .stdout(Stdio::piped());
        if exit {
            c.arg("--exit-when-done");
        }
        c.spawn().expect("start eos_pipeline")
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut rng = fastrand::Rng::with_seed(seed);
    for kill in 0..3 {
        let mut child = run(false);
        let after = Duration::from_millis(rng.u64(300..1200));
        eprintln!("eos pipeline (seed {seed}): kill -9 #{kill} after {after:?}");
        tokio::time::sleep(after).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let child = run(true);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("eos_pipeline output");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "eos_pipeline failed: {summary}");
    eprintln!("eos pipeline final run: {summary}");
    // The kills landed before the work was done: the last run still had records to process.
    let records: u64 = summary
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        records > 0,
        "the killed runs finished everything: no kill landed mid-stream ({summary})"
    );

    let read = read_all_committed(&broker.bootstrap, &output, READ).await;
    let mut got = values(&read);
    got.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("REC-{i}")).collect();
    want.sort();
    assert_eq!(got.len(), N, "output records (seed {seed})");
    assert_eq!(
        got, want,
        "output is not the input exactly once (seed {seed})"
    );
    // Per key, in input order.
    for (key, vals) in by_key(&read) {
        let idx: Vec<usize> = vals
            .iter()
            .map(|v| v.trim_start_matches("REC-").parse().unwrap())
            .collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order"
        );
    }
}

/// Test 5: CONCURRENT_TRANSACTIONS, NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE injected on
/// every coordinator call (librdkafka's mock cluster) are retried and the transaction completes.
#[actix_rt::test]
async fn injected_coordinator_errors_are_retried() {
    use rdkafka::types::{RDKafkaApiKey as Api, RDKafkaRespErr::*};
    common::init_tracing();
    let mk = common::MockKafka::new(3);
    let topic = "txn-injected";
    mk.create_topic(topic, 4);
    let errors = [
        RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    ];
    mk.start_request_tracking();
    mk.push_request_errors(
        Api::FindCoordinator,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE],
    );
    for api in [Api::InitProducerId, Api::AddPartitionsToTxn, Api::EndTxn] {
        mk.push_request_errors(api, &errors);
    }
    let cfg = ProducerConfig::builder()
        .bootstrap_servers(mk.bootstrap().split(',').map(String::from))
        .transactional_id("injected-1")
        .max_block(Duration::from_secs(30))
        .retry_backoff(Duration::from_millis(20))
        .build()
        .unwrap();
    let p = Producer::start(cfg).await.unwrap();
    p.init_transactions()
        .await
        .expect("init despite injected errors");
    p.begin_transaction().await.unwrap();
    let vals: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    send_all(&p, topic, &vals).await;
    // Offsets too: AddOffsetsToTxn and TxnOffsetCommit.
    mk.push_request_errors(Api::AddOffsetsToTxn, &errors);
    mk.push_request_errors(
        Api::TxnOffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        ],
    );
    p.send_offsets_to_transaction(
        [(actix_kafka::TopicPartition::new(topic, 0), 42)],
        &ConsumerGroupMetadata::new("g1"),
    )
    .await
    .expect("offsets despite injected errors");
    p.commit_transaction()
        .await
        .expect("commit despite injected errors");
    // The second transaction: aborted, with errors again on EndTxn.
    p.begin_transaction().await.unwrap();
    send_all(&p, topic, &vals).await;
    mk.push_request_errors(Api::EndTxn, &errors);
    p.abort_transaction()
        .await
        .expect("abort despite injected errors");
    p.close(Duration::from_secs(5)).await;

    // Every injected error was answered by a retry: 4 EndTxn calls per transaction, 4 of each
    // other call.
    let count = |api: Api| mk.requests_of(api).len();
    assert!(
        count(Api::InitProducerId) >= 4,
        "InitProducerId: {}",
        count(Api::InitProducerId)
    );
    assert!(count(Api::AddPartitionsToTxn) >= 4);
    assert!(count(Api::AddOffsetsToTxn) >= 4);
    assert!(count(Api::TxnOffsetCommit) >= 3);
    assert_eq!(count(Api::EndTxn), 8, "EndTxn requests");
    assert!(count(Api::FindCoordinator) >= 2);
}

/// A commit that outlasts `max.block.ms` returns `Timeout` and goes on; calling it again waits
/// for the same EndTxn (one request, not two) and returns its result, as Java.
#[actix_rt::test]
async fn timed_out_commit_is_joined_by_the_next_call() {
    use rdkafka::types::RDKafkaApiKey as Api;
    common::init_tracing();
    let mk = common::MockKafka::new(1);
    let topic = "txn-slow";
    mk.create_topic(topic, 1);
    let cfg = ProducerConfig::builder()
        .bootstrap_servers(mk.bootstrap().split(',').map(String::from))
        .transactional_id("slow-1")
        .max_block(Duration::from_millis(300))
        .build()
        .unwrap();
    let p = Producer::start(cfg).await.unwrap();
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    send_all(&p, topic, &["a".to_string(), "b".to_string()]).await;
    mk.start_request_tracking();
    // Every answer now takes 1.2 s: longer than max.block.ms.
    mk.set_rtt(1, Duration::from_millis(1200));
    let first = p.commit_transaction().await;
    assert!(
        matches!(first, Err(TransactionError::Timeout { .. })),
        "{first:?}"
    );
    let mut calls = 1;
    let result = loop {
        calls += 1;
        match p.commit_transaction().await {
            Err(TransactionError::Timeout { .. }) if calls < 50 => continue,
            other => break other,
        }
    };
    assert_eq!(
        result,
        Ok(()),
        "the repeated commit returns the commit's result"
    );
    assert_eq!(
        mk.requests_of(Api::EndTxn).len(),
        1,
        "one EndTxn for all the calls"
    );
    // The commit really ended: a new transaction can begin, a third commit is a state error.
    assert!(matches!(
        p.commit_transaction().await,
        Err(TransactionError::InvalidState { .. })
    ));
    mk.set_rtt(1, Duration::ZERO);
    p.begin_transaction().await.unwrap();
    p.abort_transaction().await.unwrap();
    p.close(Duration::from_secs(5)).await;
}
