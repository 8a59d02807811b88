//! Apache Kafka for the integration tests, through `scripts/kafka.sh` (KRaft, Kafka 4.x).
//!
//! * [`TestBroker::start`]: the broker shared by the tests of this process. With
//!   `KAFKA_TEST_BOOTSTRAP` set (as `scripts/test.sh` does after starting one cluster for the
//!   whole run) that cluster is used; otherwise one single-node cluster is started for the test
//!   binary (on first use; a watchdog stops it when the process exits). Tests use unique topics.
//! * [`TestBroker::dedicated`] / [`KafkaCluster::start`]: a cluster of the test's own (1 or 3
//!   brokers), for tests that kill, pause or restart brokers. Stopped (SIGKILL) on drop; its
//!   state folder under `target/tmp/kafka-*` is removed unless the test panicked or
//!   `KAFKA_KEEP_LOGS` is set.
//!
//! Topics are created with librdkafka's admin API (no JVM start per topic).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::{log_dir, next_id, tail_of_file, wait_for_topic, TOPIC_TIMEOUT};

/// A KRaft cluster of this process, managed by `scripts/kafka.sh` with its own state folder.
pub struct KafkaCluster {
    /// `host:port,...` of the client listener.
    pub bootstrap: String,
    /// PLAINTEXT listener for tools (same as `bootstrap` for a plaintext cluster).
    pub plaintext_bootstrap: String,
    /// `client.properties` for the secured listener (`--security` other than plaintext).
    pub client_config: Option<PathBuf>,
    pub brokers: usize,
    pub state_dir: PathBuf,
    watchdog: Option<Child>,
    stopped: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

fn run_script(state_dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("KAFKA_STATE_DIR", state_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run scripts/kafka.sh {args:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "scripts/kafka.sh {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn line_value(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::to_string)
}

impl KafkaCluster {
    /// Starts a plaintext cluster of `brokers` nodes (1: combined broker+controller; 3: three
    /// combined nodes forming the quorum, replication 3, `min.insync.replicas=2`). Panics with the
    /// script's error (which names the log) when it does not come up.
    pub fn start(brokers: usize) -> KafkaCluster {
        Self::start_with(brokers, "plaintext", &[])
    }

    /// Like [`start`](Self::start) with `--security` and extra `server.properties` lines.
    pub fn start_with(brokers: usize, security: &str, broker_props: &[&str]) -> KafkaCluster {
        let state_dir = log_dir().join(format!("kafka-{}-{}", std::process::id(), next_id()));
        let brokers_arg = brokers.to_string();
        let mut last = String::new();
        for _attempt in 0..3 {
            let out = Command::new("bash")
                .arg(script())
                .args(["start", "--brokers", &brokers_arg, "--security", security])
                .env("KAFKA_STATE_DIR", &state_dir)
                .env("KAFKA_BROKER_PROPS", broker_props.join(";"))
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run scripts/kafka.sh start: {e}"));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                // Most likely a port picked free was taken before the broker bound it.
                last = format!("{}{}", stdout, String::from_utf8_lossy(&out.stderr));
                continue;
            }
            let bootstrap = line_value(&stdout, "KAFKA_BOOTSTRAP")
                .unwrap_or_else(|| panic!("kafka.sh start printed no KAFKA_BOOTSTRAP: {stdout}"));
            let plaintext_bootstrap = line_value(&stdout, "KAFKA_PLAINTEXT_BOOTSTRAP")
                .unwrap_or_else(|| bootstrap.clone());
            let client_config = line_value(&stdout, "KAFKA_CLIENT_CONFIG").map(PathBuf::from);
            let watchdog = spawn_watchdog(&state_dir);
            return KafkaCluster {
                bootstrap,
                plaintext_bootstrap,
                client_config,
                brokers,
                state_dir,
                watchdog,
                stopped: false,
            };
        }
        panic!("could not start Apache Kafka ({brokers} brokers, {security}): {last}");
    }

    /// `scripts/kafka.sh kill-broker ID` (SIGKILL).
    pub fn kill_broker(&self, id: i32) {
        self.run(&["kill-broker", &id.to_string()]);
    }

    /// `scripts/kafka.sh pause-broker ID` (SIGSTOP: sockets stay open, nothing is answered).
    pub fn pause_broker(&self, id: i32) {
        self.run(&["pause-broker", &id.to_string()]);
    }

    /// `scripts/kafka.sh resume-broker ID` (SIGCONT).
    pub fn resume_broker(&self, id: i32) {
        self.run(&["resume-broker", &id.to_string()]);
    }

    /// `scripts/kafka.sh start-broker ID`: restarts a stopped broker with its data and waits
    /// until it answers Metadata.
    pub fn start_broker(&self, id: i32) {
        self.run(&["start-broker", &id.to_string()]);
    }

    /// `scripts/kafka.sh stop-broker ID`: graceful (controlled shutdown), waits for the exit.
    pub fn stop_broker(&self, id: i32) {
        self.run(&["stop-broker", &id.to_string()]);
    }

    /// Runs a Kafka tool class (`scripts/kafka.sh run-class`) against the plaintext listener;
    /// panics with its output when it fails.
    pub fn run_tool(&self, class: &str, args: &[&str]) -> String {
        let mut all = vec![
            "run-class",
            class,
            "--bootstrap-server",
            &self.plaintext_bootstrap,
        ];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Moves the leader of every partition of `topic` to the next replica: the replica list
    /// of each partition is rotated by one (the same replicas, so no data moves) and the
    /// preferred leaders are elected. Returns the new leaders by partition.
    pub fn move_leaders(&self, topic: &str) -> Vec<(i32, i32)> {
        let layout = super::partition_layout(&self.plaintext_bootstrap, topic);
        let parts: Vec<String> = layout
            .iter()
            .map(|(p, _, replicas, _)| {
                let mut r = replicas.clone();
                r.rotate_left(1);
                let r: Vec<String> = r.iter().map(|x| x.to_string()).collect();
                format!(
                    r#"{{"topic":"{topic}","partition":{p},"replicas":[{}]}}"#,
                    r.join(",")
                )
            })
            .collect();
        let json = format!(r#"{{"version":1,"partitions":[{}]}}"#, parts.join(","));
        let file = self.state_dir.join(format!("reassign-{}.json", next_id()));
        std::fs::write(&file, json).expect("write reassignment json");
        let file = file.to_string_lossy().into_owned();
        self.run_tool(
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
            &["--reassignment-json-file", &file, "--execute"],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.run_tool(
                "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
                &["--reassignment-json-file", &file, "--verify"],
            );
            if !out.contains("still in progress") || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = run_script(
            &self.state_dir,
            &[
                "run-class",
                "org.apache.kafka.tools.LeaderElectionCommand",
                "--bootstrap-server",
                &self.plaintext_bootstrap,
                "--election-type",
                "PREFERRED",
                "--all-topic-partitions",
            ],
        );
        super::partition_layout(&self.plaintext_bootstrap, topic)
            .into_iter()
            .map(|(p, l, _, _)| (p, l))
            .collect()
    }

    /// Node ids with their pid (`None` when down), from `scripts/kafka.sh status`.
    pub fn status(&self) -> Vec<(i32, Option<u32>)> {
        self.run(&["status"])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "broker").then_some(())?;
                let id = w.next()?.parse().ok()?;
                Some((id, w.next()?.parse().ok()))
            })
            .collect()
    }

    fn run(&self, args: &[&str]) -> String {
        run_script(&self.state_dir, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a topic (replication: the cluster's default) and waits until every partition has
    /// a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(&self.plaintext_bootstrap, name, partitions, None, &[]);
    }

    /// Stops every broker (SIGKILL: the data is thrown away with the state folder).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Err(e) = run_script(&self.state_dir, &["stop", "--now"]) {
            eprintln!("{e}");
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Tail of broker `id`'s server log.
    pub fn log_tail(&self, id: i32, max_bytes: u64) -> String {
        tail_of_file(
            &self.state_dir.join(format!("broker-{id}/server.log")),
            max_bytes,
        )
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("KAFKA_KEEP_LOGS").is_some() {
            eprintln!(
                "[kafka cluster {}] state and logs kept in {}",
                self.bootstrap,
                self.state_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

/// A shell process that stops the cluster when this test process is gone (a panic that aborts,
/// SIGKILL, or simply the end of a test binary whose shared cluster lives in a static).
fn spawn_watchdog(state_dir: &Path) -> Option<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
             KAFKA_STATE_DIR=\"$2\" KAFKA_STOP_TIMEOUT=5 bash \"$3\" stop >/dev/null 2>&1; \
             [ -n \"$4\" ] && rm -rf \"$2\"; exit 0",
        )
        .arg("kafka-watchdog")
        .arg(std::process::id().to_string())
        .arg(state_dir)
        .arg(script())
        .arg(if std::env::var_os("KAFKA_KEEP_LOGS").is_some() {
            ""
        } else {
            "rm"
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().ok()
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .create()
        .expect("create rdkafka admin client")
}

/// Creates `name` (CreateTopics through librdkafka's admin client) and waits until metadata
/// shows exactly `partitions` partitions, each with a leader. `replication` `None` = the
/// broker's `default.replication.factor`. Panics if it cannot (an existing topic included).
pub fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication: Option<i32>,
    configs: &[(&str, &str)],
) {
    assert!(partitions > 0, "partitions must be > 0");
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication.unwrap_or(-1)),
    );
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deadline = Instant::now() + TOPIC_TIMEOUT;
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("CreateTopics {name} on {bootstrap}: {e}"));
    for r in results {
        if let Err((t, code)) = r {
            panic!("CreateTopics {t} on {bootstrap}: {code:?}");
        }
    }
    wait_for_topic(
        bootstrap,
        name,
        Some(partitions),
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5)),
    );
}

/// Grows `name` to `total` partitions (CreatePartitions through librdkafka's admin client).
#[allow(dead_code)]
pub fn add_partitions(bootstrap: &str, name: &str, total: usize) {
    let admin = admin(bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(
        admin.create_partitions([&NewPartitions::new(name, total)], &opts),
    )
    .unwrap_or_else(|e| panic!("CreatePartitions {name} on {bootstrap}: {e}"));
    for r in results {
        if let Err((t, code)) = r {
            panic!("CreatePartitions {t} on {bootstrap}: {code:?}");
        }
    }
}

/// The broker (shared or dedicated) a test talks to.
pub struct TestBroker {
    /// `bootstrap.servers` for the client listener.
    pub bootstrap: String,
    /// `Some` for a [`dedicated`](Self::dedicated) broker, which a test may stop and restart.
    pub cluster: Option<KafkaCluster>,
}

fn shared_cluster() -> &'static str {
    static SHARED: OnceLock<(String, Option<KafkaCluster>)> = OnceLock::new();
    &SHARED
        .get_or_init(|| match std::env::var("KAFKA_TEST_BOOTSTRAP") {
            Ok(b) if !b.trim().is_empty() => (b, None),
            _ => {
                let c = KafkaCluster::start(1);
                (c.bootstrap.clone(), Some(c))
            }
        })
        .0
}

impl TestBroker {
    /// The Apache Kafka shared by the tests of this process (see the module docs). Use unique
    /// topic names; never stop it.
    pub fn start() -> TestBroker {
        TestBroker {
            bootstrap: shared_cluster().to_string(),
            cluster: None,
        }
    }

    /// A single-node Apache Kafka of this test's own, which it may kill and restart.
    pub fn dedicated() -> TestBroker {
        let c = KafkaCluster::start(1);
        TestBroker {
            bootstrap: c.bootstrap.clone(),
            cluster: Some(c),
        }
    }

    fn own(&self) -> &KafkaCluster {
        self.cluster
            .as_ref()
            .expect("stop/restart need TestBroker::dedicated(), not the shared broker")
    }

    /// Creates `name` with `partitions` partitions and waits until each has a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(&self.bootstrap, name, partitions, None, &[]);
    }

    /// Like [`create_topic`](Self::create_topic) with topic configs, e.g.
    /// `&[("message.timestamp.type", "LogAppendTime")]`.
    pub fn create_topic_with_config(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        create_topic(&self.bootstrap, name, partitions, None, configs);
    }

    /// Whether the (dedicated) broker process is alive.
    pub fn is_running(&self) -> bool {
        self.own().status().iter().all(|(_, pid)| pid.is_some())
    }

    /// Kills the dedicated broker (SIGKILL: connections reset, like a crash). Its data stays.
    pub fn stop(&mut self) {
        if self.is_running() {
            self.own().kill_broker(1);
        }
    }

    /// Kills the dedicated broker if it runs and starts it again on the same port with its data
    /// (topics and records survive, as on a real crash and restart).
    pub fn restart(&mut self) {
        self.stop();
        self.own().start_broker(1);
    }

    /// Tail of the dedicated broker's server log (empty for the shared one).
    pub fn log_tail(&self, max_bytes: u64) -> String {
        self.cluster
            .as_ref()
            .map(|c| c.log_tail(1, max_bytes))
            .unwrap_or_default()
    }
}
