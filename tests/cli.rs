//! The `actix-kafka` command-line tool (feature `cli`) against Apache Kafka, its output read
//! back by librdkafka.
mod common;

use common::{read_back, unique_topic, TestBroker};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_actix-kafka"))
}

#[tokio::test]
async fn produce_lines_with_keys_then_perf() {
    let broker = TestBroker::start();
    let topic = unique_topic("cli");
    broker.create_topic(&topic, 3);
    let mut child = cli()
        .args([
            "produce",
            "--bootstrap-server",
            &broker.bootstrap,
            "--topic",
            &topic,
        ])
        .args([
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ])
        .args(["--producer-property", "linger.ms=1", "--print-deliveries"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run actix-kafka produce");
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..500 {
            writeln!(stdin, "key-{}:value-{i}", i % 7).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("produced 500 of 500 records"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("line ")).count(), 500);

    let read = read_back(&broker.bootstrap, &topic, 500, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 500);
    let mut values: Vec<String> = read.iter().map(|r| r.value_str().unwrap()).collect();
    values.sort();
    let mut want: Vec<String> = (0..500).map(|i| format!("value-{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    for r in &read {
        let i: usize = r.value_str().unwrap()["value-".len()..].parse().unwrap();
        assert_eq!(r.key_str().unwrap(), format!("key-{}", i % 7));
        // Each printed delivery names where the record really is.
        let line = format!("line {} -> {topic}-{}@{}", i + 1, r.partition, r.offset);
        assert!(text.contains(&line), "missing `{line}`");
    }

    let out = cli()
        .args([
            "perf",
            "--topic",
            &topic,
            "--num-records",
            "20000",
            "--record-size",
            "100",
        ])
        .args(["--throughput", "-1", "--producer-props"])
        .arg(format!("bootstrap.servers={}", broker.bootstrap))
        .arg("acks=1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("20000 records sent"), "{text}");

    // A bad property is a clear error and exit code 2.
    let out = cli()
        .args([
            "produce",
            "--bootstrap-server",
            &broker.bootstrap,
            "--topic",
            &topic,
        ])
        .args(["--producer-property", "acks=maybe"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("acks"));
}
