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

/// Issue 19: `key.separator` is taken as written (a tab given explicitly, `\t` escaped, a
/// space, several characters), an empty one is an error, and the keys read back by librdkafka
/// are the ones before the separator.
#[tokio::test]
async fn key_separators_are_taken_as_written() {
    let broker = TestBroker::start();
    for (i, (sep, written)) in [
        ("\t", "\t"),
        ("\\t", "\t"),
        (" ", " "),
        ("::", "::"),
        (":", ":"),
    ]
    .into_iter()
    .enumerate()
    {
        let topic = unique_topic(&format!("clisep{i}"));
        broker.create_topic(&topic, 1);
        let mut child = cli()
            .args([
                "produce",
                "--bootstrap-server",
                &broker.bootstrap,
                "--topic",
                &topic,
            ])
            .args(["--property", "parse.key=true", "--property"])
            .arg(format!("key.separator={sep}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run actix-kafka produce");
        {
            let mut stdin = child.stdin.take().unwrap();
            for n in 0..20 {
                writeln!(stdin, "k{n}{written}v{n}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "separator {sep:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let read = read_back(&broker.bootstrap, &topic, 20, Duration::from_secs(30)).await;
        assert_eq!(read.len(), 20, "separator {sep:?}");
        for r in &read {
            let v = r.value_str().unwrap();
            let n = &v[1..];
            assert_eq!(
                r.key_str().as_deref(),
                Some(format!("k{n}").as_str()),
                "{sep:?}"
            );
        }
    }
    let out = cli()
        .args([
            "produce",
            "--bootstrap-server",
            &broker.bootstrap,
            "--topic",
            "t",
        ])
        .args([
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key.separator"));
}

/// Issue 19: deliveries print as they are acknowledged while input is still open (`tail -f |
/// actix-kafka produce`), and a failed record is reported and counted without ending the run.
#[tokio::test]
async fn produce_streams_deliveries_and_goes_on_after_a_failed_record() {
    use std::io::BufRead;
    let broker = TestBroker::start();
    let topic = unique_topic("clistream");
    broker.create_topic(&topic, 1);
    let mut child = cli()
        .args([
            "produce",
            "--bootstrap-server",
            &broker.bootstrap,
            "--topic",
            &topic,
        ])
        .args([
            "--producer-property",
            "max.request.size=2000",
            "--print-deliveries",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run actix-kafka produce");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "first").unwrap();
    stdin.flush().unwrap();
    // Input stays open: the first delivery must show anyway.
    let mut printed = String::new();
    stdout.read_line(&mut printed).unwrap();
    assert_eq!(printed.trim(), format!("line 1 -> {topic}-0@0"));
    // A record above max.request.size fails; the next one is still sent.
    writeln!(stdin, "{}", "x".repeat(5000)).unwrap();
    writeln!(stdin, "third").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}{stderr}");
    assert!(rest.contains(&format!("line 3 -> {topic}-0@1")), "{rest}");
    assert!(rest.contains("produced 2 of 3 records"), "{rest}");
    assert!(stderr.contains("line 2 failed"), "{stderr}");
    let read = read_back(&broker.bootstrap, &topic, 2, Duration::from_secs(30)).await;
    let values: Vec<String> = read.iter().map(|r| r.value_str().unwrap()).collect();
    assert_eq!(values, vec!["first".to_string(), "third".to_string()]);
}
