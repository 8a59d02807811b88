//! Shared code of the producer perf tools `examples/producer_perf.rs` (actix-kafka) and
//! `examples/rdkafka_perf.rs` (librdkafka via the `rdkafka` crate): command line, payload pool,
//! latency histogram, progress reporter, stall watchdog, process CPU / RSS and the output lines.
//!
//! Both examples include this file with `#[path = "../benches/perf_common.rs"] mod perf_common;`
//! so the two tools measure and print in exactly the same way. It only uses `std`. (Cargo also
//! picks it up as a harness bench target of its own; it then just runs the unit tests below.)
//!
//! Output follows Kafka's `kafka-producer-perf-test`:
//!
//! ```text
//! 123456 records sent, 24691.2 records/sec (2.35 MB/sec), 3.4 ms avg latency, 12.0 ms max latency.
//! 300000 records sent, 25000.000000 records/sec (2.38 MB/sec), 3.41 ms avg latency, 12.00 ms max latency, 3.10 ms 50th, 6.02 ms 95th, 8.90 ms 99th, 11.50 ms 99.9th.
//! RESULT impl=... records=300000 rps=... mbps=... p50_ms=... p99_ms=... cpu_s=... cpu_s_per_M=... rss_peak_mb=...
//! ```
//! Latency is send → acknowledgement (the time taken before `send` includes any back-pressure
//! wait, as in the Java tool). MB are MiB, as in the Java tool.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Exit codes shared by both tools (benches/race.sh relies on them).
pub const EXIT_OK: i32 = 0;
/// Some records failed, or the run failed.
pub const EXIT_FAILED: i32 = 1;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// The client rejected the configuration (e.g. an unsupported `compression.type`).
pub const EXIT_CONFIG_REJECTED: i32 = 3;
/// No record completed for `--stall-timeout-s` while records were outstanding.
pub const EXIT_STALLED: i32 = 4;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Parsed command line of the perf tools.
#[derive(Debug, Clone)]
pub struct Args {
    pub topic: Option<String>,
    pub num_records: u64,
    pub record_size: usize,
    /// Records per second; <= 0 means unlimited.
    pub throughput: f64,
    /// Properties in the order they apply: `--producer.config` file, then `--producer-props`,
    /// then `--bootstrap-server`.
    pub props: Vec<(String, String)>,
    pub report_interval: Duration,
    /// 0 disables the watchdog.
    pub stall_timeout: Duration,
    /// Tool-specific flags (`--flag value`), e.g. `--delivery` or `--mock-cluster`.
    pub extra: BTreeMap<String, String>,
    /// `--topic` given several times (the mock-cluster mode creates each).
    pub topics: Vec<String>,
}

impl Args {
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra.get(key).map(String::as_str)
    }

    /// Properties with later entries overriding earlier ones, first-seen order kept.
    pub fn merged_props(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.props {
            if let Some(slot) = out.iter_mut().find(|(ok, _)| ok == k) {
                slot.1 = v.clone();
            } else {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// Records per second target, `None` for unlimited.
    pub fn target_rps(&self) -> Option<f64> {
        (self.throughput > 0.0).then_some(self.throughput)
    }
}

pub fn usage(tool: &str, impl_name: &str, extra_help: &str) -> String {
    format!(
        "{tool}: producer performance test ({impl_name}), modelled on kafka-producer-perf-test\n\
         \n\
         usage: {tool} --topic TOPIC --num-records N --record-size BYTES --throughput RPS\n\
         \x20        [--producer-props KEY=VALUE ...] [--producer.config FILE] [--bootstrap-server HOST:PORT]\n\
         \x20        [--report-interval-ms MS] [--stall-timeout-s S]{extra_help}\n\
         \n\
         \x20 --topic                topic to produce to (required)\n\
         \x20 --num-records          number of records to send (required)\n\
         \x20 --record-size          value size in bytes (required)\n\
         \x20 --throughput           records/s to pace sending at; -1 = as fast as possible (required)\n\
         \x20 --producer-props       producer properties KEY=VALUE... (Java key names), up to the next --flag\n\
         \x20 --producer.config      a properties file (KEY=VALUE lines, # comments); --producer-props win\n\
         \x20 --bootstrap-server     shorthand for --producer-props bootstrap.servers=HOST:PORT\n\
         \x20 --report-interval-ms   progress line period (default 5000)\n\
         \x20 --stall-timeout-s      give up (exit {EXIT_STALLED}) when no record completes for this long while\n\
         \x20                        records are outstanding (default 60, 0 = never)\n\
         \n\
         exit codes: 0 ok, {EXIT_FAILED} records failed, {EXIT_USAGE} usage, {EXIT_CONFIG_REJECTED} configuration rejected, {EXIT_STALLED} stalled\n"
    )
}

/// Parses `argv[1..]`. `extra_flags` are the tool's own `--flag value` options; `extra_switches`
/// its own value-less flags (stored with value "true").
pub fn parse_args(
    argv: &[String],
    extra_flags: &[&str],
    extra_switches: &[&str],
) -> Result<Args, String> {
    let mut a = Args {
        topic: None,
        num_records: 0,
        record_size: 0,
        throughput: -1.0,
        props: Vec::new(),
        report_interval: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(60),
        extra: BTreeMap::new(),
        topics: Vec::new(),
    };
    let mut file_props: Vec<(String, String)> = Vec::new();
    let mut cli_props: Vec<(String, String)> = Vec::new();
    let mut bootstrap: Option<String> = None;
    let (mut have_n, mut have_size, mut have_tp) = (false, false, false);
    let mut i = 0;
    fn value<'a>(argv: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
        *i += 1;
        argv.get(*i)
            .map(String::as_str)
            .ok_or_else(|| format!("{flag} needs a value"))
    }
    while i < argv.len() {
        let flag = argv[i].as_str();
        // Accept --flag=value too.
        let (flag, inline): (&str, Option<&str>) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") && f != "--producer-props" => (f, Some(v)),
            _ => (flag, None),
        };
        let take = |i: &mut usize| -> Result<String, String> {
            match inline {
                Some(v) => Ok(v.to_string()),
                None => value(argv, i, flag).map(str::to_string),
            }
        };
        match flag {
            "--topic" => {
                let t = take(&mut i)?;
                a.topics.push(t.clone());
                a.topic = Some(t);
            }
            "--num-records" => {
                a.num_records = parse_num(flag, &take(&mut i)?)?;
                have_n = true;
            }
            "--record-size" => {
                a.record_size = parse_num(flag, &take(&mut i)?)? as usize;
                have_size = true;
            }
            "--throughput" => {
                let v = take(&mut i)?;
                a.throughput = v
                    .parse::<f64>()
                    .map_err(|_| format!("--throughput: not a number: {v}"))?;
                have_tp = true;
            }
            "--producer-props" => {
                let start = i + 1;
                let mut j = start;
                while j < argv.len() && !argv[j].starts_with("--") {
                    cli_props.push(parse_prop(&argv[j])?);
                    j += 1;
                }
                if j == start {
                    return Err("--producer-props needs KEY=VALUE arguments".into());
                }
                i = j - 1;
            }
            "--producer.config" | "--producer-config" => {
                let path = take(&mut i)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--producer.config {path}: {e}"))?;
                file_props.extend(parse_properties(&text)?);
            }
            "--bootstrap-server" | "--bootstrap-servers" => bootstrap = Some(take(&mut i)?),
            "--report-interval-ms" => {
                a.report_interval = Duration::from_millis(parse_num(flag, &take(&mut i)?)?.max(100))
            }
            "--stall-timeout-s" => {
                a.stall_timeout = Duration::from_secs(parse_num(flag, &take(&mut i)?)?)
            }
            "-h" | "--help" => return Err(String::new()),
            f if extra_flags.contains(&f) => {
                let v = take(&mut i)?;
                a.extra.insert(f.trim_start_matches('-').to_string(), v);
            }
            f if extra_switches.contains(&f) => {
                a.extra
                    .insert(f.trim_start_matches('-').to_string(), "true".into());
            }
            other => return Err(format!("unknown argument: {other}")),
        }
        i += 1;
    }
    a.props.extend(file_props);
    a.props.extend(cli_props);
    if let Some(b) = bootstrap {
        a.props.push(("bootstrap.servers".into(), b));
    }
    // The perf-test flags are required unless the tool runs in a special mode.
    if !a.extra.contains_key("mock-cluster") {
        let mut missing = Vec::new();
        if a.topic.is_none() {
            missing.push("--topic");
        }
        if !have_n {
            missing.push("--num-records");
        }
        if !have_size {
            missing.push("--record-size");
        }
        if !have_tp {
            missing.push("--throughput");
        }
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        if a.prop("bootstrap.servers").is_none() {
            return Err("no bootstrap.servers: give --bootstrap-server or --producer-props bootstrap.servers=..".into());
        }
    }
    Ok(a)
}

fn parse_num(flag: &str, v: &str) -> Result<u64, String> {
    v.replace('_', "")
        .parse::<u64>()
        .map_err(|_| format!("{flag}: not a non-negative integer: {v}"))
}

fn parse_prop(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("producer property is not KEY=VALUE: {s}")),
    }
}

/// Minimal Java-properties reading: `key=value` or `key: value` lines, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let pos = line
            .find(['=', ':'])
            .ok_or_else(|| format!("properties line {}: no '=' in {line:?}", n + 1))?;
        let (k, v) = (line[..pos].trim(), line[pos + 1..].trim());
        if k.is_empty() {
            return Err(format!("properties line {}: empty key", n + 1));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parses the command line of the process or prints usage and exits.
pub fn args_or_exit(
    tool: &str,
    impl_name: &str,
    extra_flags: &[&str],
    extra_switches: &[&str],
    extra_help: &str,
) -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&argv, extra_flags, extra_switches) {
        Ok(a) => a,
        Err(e) => {
            let help = usage(tool, impl_name, extra_help);
            if e.is_empty() {
                print!("{help}");
                std::process::exit(EXIT_OK);
            }
            eprintln!("{tool}: {e}\n\n{help}");
            std::process::exit(EXIT_USAGE);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payload
// ---------------------------------------------------------------------------------------------

/// A buffer of random upper-case letters (what the Java tool fills its payload with), prepared
/// once. Record `i` uses the `record_size` bytes at [`Payload::offset`]`(i)`, so consecutive
/// records differ (a single repeated payload would make compression unrealistically good).
pub struct Payload {
    pub buf: Vec<u8>,
    pub record_size: usize,
    slots: usize,
}

impl Payload {
    pub fn new(record_size: usize) -> Payload {
        let len = (record_size * 64).max(1 << 20) + record_size;
        let mut buf = Vec::with_capacity(len);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while buf.len() < len {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            for b in r.to_le_bytes() {
                if buf.len() < len {
                    buf.push(b'A' + (b % 26));
                }
            }
        }
        let slots = len - record_size;
        Payload {
            buf,
            record_size,
            slots: slots.max(1),
        }
    }

    /// Start of record `i`'s value in `buf`.
    #[inline]
    pub fn offset(&self, i: u64) -> usize {
        // A large odd stride walks the buffer without obvious repetition.
        ((i.wrapping_mul(7919 * 13)) % self.slots as u64) as usize
    }

    #[inline]
    pub fn value(&self, i: u64) -> &[u8] {
        let o = self.offset(i);
        &self.buf[o..o + self.record_size]
    }
}

// ---------------------------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------------------------

/// Log-linear histogram of microsecond values: exact below 256 µs, then 128 buckets per power
/// of two (relative error < 0.8 %). Fixed size (~60 KiB), so its memory does not grow with
/// the number of records and does not distort the RSS figure.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BITS: u32 = 7; // 128 sub-buckets per octave
const LINEAR: u64 = 1 << (SUB_BITS + 1); // 256: exact region

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        let octaves = 64 - (SUB_BITS + 1) as usize;
        Histogram {
            counts: vec![0; LINEAR as usize + octaves * (1 << SUB_BITS)],
            total: 0,
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros(); // >= SUB_BITS + 1
        let shift = msb - SUB_BITS; // v >> shift in [128, 255]
        let sub = (v >> shift) - (1 << SUB_BITS);
        LINEAR as usize + ((msb - SUB_BITS - 1) as usize) * (1 << SUB_BITS) + sub as usize
    }

    /// Highest value that falls in bucket `idx`.
    fn upper(idx: usize) -> u64 {
        if idx < LINEAR as usize {
            return idx as u64;
        }
        let rel = idx - LINEAR as usize;
        let octave = (rel >> SUB_BITS) as u32;
        let sub = (rel & ((1 << SUB_BITS) - 1)) as u64;
        let shift = octave + 1;
        (((1u64 << SUB_BITS) + sub + 1) << shift) - 1
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at percentile `p` (0..=100): the bucket's highest value, as HdrHistogram does.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i);
            }
        }
        Self::upper(self.counts.len() - 1)
    }
}

// ---------------------------------------------------------------------------------------------
// Run statistics
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Window {
    count: u64,
    lat_sum_us: u64,
    lat_max_us: u64,
}

#[derive(Default)]
struct Inner {
    hist: Histogram,
    ok: u64,
    lat_sum_us: u128,
    lat_max_us: u64,
    errors: u64,
    first_errors: Vec<String>,
    window: Window,
}

/// Statistics of one run, shared by the send loop, the delivery callbacks and the reporter.
pub struct Stats {
    pub start: Instant,
    pub record_size: usize,
    /// Records handed to the client so far (set by the send loop).
    pub sent: AtomicU64,
    /// Records completed (acknowledged or failed).
    pub completed: AtomicU64,
    inner: Mutex<Inner>,
    done: AtomicBool,
}

static STATS: OnceLock<Stats> = OnceLock::new();

/// Creates the run's statistics (once per process).
pub fn init_stats(record_size: usize) -> &'static Stats {
    STATS.get_or_init(|| Stats {
        start: Instant::now(),
        record_size,
        sent: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        inner: Mutex::new(Inner::default()),
        done: AtomicBool::new(false),
    })
}

/// The run's statistics (after [`init_stats`]).
#[inline]
pub fn stats() -> &'static Stats {
    STATS.get().expect("init_stats not called")
}

impl Stats {
    /// Nanoseconds since the stats were created: the send timestamp to pass to [`Stats::complete`].
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one completion; `sent_ns` is the [`Stats::now_ns`] taken before `send`.
    #[inline]
    pub fn complete(&self, sent_ns: u64, result: Result<(), String>) {
        let lat_us = self.now_ns().saturating_sub(sent_ns) / 1_000;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                g.ok += 1;
                g.hist.record(lat_us);
                g.lat_sum_us += lat_us as u128;
                g.lat_max_us = g.lat_max_us.max(lat_us);
                g.window.count += 1;
                g.window.lat_sum_us += lat_us;
                g.window.lat_max_us = g.window.lat_max_us.max(lat_us);
            }
            Err(e) => {
                g.errors += 1;
                if g.first_errors.len() < 5 {
                    g.first_errors.push(e);
                }
            }
        }
        drop(g);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// A record that was not accepted by `send` at all.
    pub fn send_failed(&self, e: String) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.errors += 1;
        if g.first_errors.len() < 5 {
            g.first_errors.push(format!("send: {e}"));
        }
    }

    pub fn errors(&self) -> (u64, Vec<String>) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (g.errors, g.first_errors.clone())
    }

    fn take_window(&self) -> Window {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut g.window)
    }
}

// ---------------------------------------------------------------------------------------------
// Progress reporter and stall watchdog
// ---------------------------------------------------------------------------------------------

/// Prints a progress line every `interval`; exits the process with [`EXIT_STALLED`] when no
/// record completes for `stall_timeout` while some are outstanding. `diag` adds
/// client-specific state to the stall message.
pub fn start_reporter(
    interval: Duration,
    stall_timeout: Duration,
    diag: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::thread::JoinHandle<()> {
    let s = stats();
    std::thread::Builder::new()
        .name("perf-reporter".into())
        .spawn(move || {
            let mut window_start = Instant::now();
            let mut last_completed = 0u64;
            let mut last_progress = Instant::now();
            let tick = Duration::from_millis(100);
            while !s.done.load(Ordering::Acquire) {
                std::thread::sleep(tick);
                let now = Instant::now();
                let completed = s.completed.load(Ordering::Relaxed);
                let sent = s.sent.load(Ordering::Relaxed);
                if completed != last_completed || sent <= completed {
                    last_completed = completed;
                    last_progress = now;
                }
                if now.duration_since(window_start) >= interval {
                    let w = s.take_window();
                    let secs = now.duration_since(window_start).as_secs_f64();
                    window_start = now;
                    print_window(&w, secs, s.record_size);
                }
                if !stall_timeout.is_zero()
                    && sent > completed
                    && now.duration_since(last_progress) >= stall_timeout
                {
                    let (errors, first) = s.errors();
                    println!(
                        "STALLED: no record completed for {:.0} s: sent={sent} \
                         completed={completed} outstanding={} errors={errors} elapsed={:.1} s {}",
                        stall_timeout.as_secs_f64(),
                        sent - completed,
                        s.start.elapsed().as_secs_f64(),
                        diag()
                    );
                    for e in first {
                        println!("  error: {e}");
                    }
                    let _ = std::io::stdout().flush();
                    std::process::exit(EXIT_STALLED);
                }
            }
        })
        .expect("spawn reporter")
}

/// Stops the reporter thread.
pub fn stop_reporter(h: std::thread::JoinHandle<()>) {
    stats().done.store(true, Ordering::Release);
    let _ = h.join();
}

fn print_window(w: &Window, secs: f64, record_size: usize) {
    let rps = w.count as f64 / secs;
    let mbps = rps * record_size as f64 / (1024.0 * 1024.0);
    let avg = if w.count > 0 {
        w.lat_sum_us as f64 / w.count as f64 / 1000.0
    } else {
        0.0
    };
    println!(
        "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max \
         latency.",
        w.count,
        rps,
        mbps,
        avg,
        w.lat_max_us as f64 / 1000.0
    );
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// Pacing
// ---------------------------------------------------------------------------------------------

/// Paces sending at `rps` records/s (like the Java tool's throttler): record `i` is due at
/// `start + i / rps`.
pub struct Pacer {
    start: Instant,
    ns_per_record: f64,
}

impl Pacer {
    pub fn new(rps: Option<f64>) -> Option<Pacer> {
        rps.map(|r| Pacer {
            start: Instant::now(),
            ns_per_record: 1e9 / r,
        })
    }

    /// How long to wait before sending record `i`, if at least 1 ms (shorter waits are
    /// skipped and made up by the next ones, so sleeping stays coarse).
    #[inline]
    pub fn wait_before(&self, i: u64) -> Option<Duration> {
        let due = Duration::from_nanos((i as f64 * self.ns_per_record) as u64);
        let now = self.start.elapsed();
        (due > now + Duration::from_millis(1)).then(|| due - now)
    }
}

// ---------------------------------------------------------------------------------------------
// Process resources
// ---------------------------------------------------------------------------------------------

/// User + system CPU seconds of this process (all threads), from /proc/self/stat.
/// utime/stime are in USER_HZ ticks, which Linux fixes at 100 for user space.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let Some(rest) = stat.rfind(')').map(|p| &stat[p + 1..]) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14, stime field 15 → indices 11 and 12 from field 3.
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Peak resident set size in MiB (VmHWM from /proc/self/status).
pub fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:").map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Final summary
// ---------------------------------------------------------------------------------------------

/// What the tool measured around its send loop.
pub struct RunMeasure {
    /// Send of the first record → every record completed.
    pub elapsed: Duration,
    /// Process CPU seconds over the same span.
    pub cpu_s: f64,
}

/// Prints the Java-style summary, the percentile line, the resources and the RESULT line.
/// Returns the process exit code (non-zero if any record failed).
pub fn print_summary(impl_name: &str, m: &RunMeasure, extra_kv: &str) -> i32 {
    let s = stats();
    let g = s.inner.lock().unwrap_or_else(|e| e.into_inner());
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let ok = g.ok;
    let rps = ok as f64 / secs;
    let mbps = rps * s.record_size as f64 / (1024.0 * 1024.0);
    let avg_ms = if ok > 0 {
        g.lat_sum_us as f64 / ok as f64 / 1000.0
    } else {
        0.0
    };
    let max_ms = g.lat_max_us as f64 / 1000.0;
    let pct = |p: f64| g.hist.percentile(p) as f64 / 1000.0;
    let (p50, p95, p99, p999) = (pct(50.0), pct(95.0), pct(99.0), pct(99.9));
    println!(
        "{ok} records sent, {rps:.6} records/sec ({mbps:.2} MB/sec), {avg_ms:.2} ms avg latency, \
         {max_ms:.2} ms max latency, {p50:.2} ms 50th, {p95:.2} ms 95th, {p99:.2} ms 99th, \
         {p999:.2} ms 99.9th."
    );
    let rss = peak_rss_mb();
    let cpu_per_m = if ok > 0 {
        m.cpu_s / ok as f64 * 1e6
    } else {
        f64::NAN
    };
    println!(
        "latency percentiles (send -> ack): p50 {p50:.3} ms, p95 {p95:.3} ms, p99 {p99:.3} ms, \
         p99.9 {p999:.3} ms"
    );
    println!(
        "client resources: {:.2} s CPU (user+sys, whole process) over {secs:.2} s = {:.0}% of \
         one core, {cpu_per_m:.2} CPU s per million records, peak RSS {rss:.1} MiB",
        m.cpu_s,
        m.cpu_s / secs * 100.0
    );
    if g.errors > 0 {
        println!("ERROR: {} records failed; first errors:", g.errors);
        for e in &g.first_errors {
            println!("  {e}");
        }
    }
    println!(
        "RESULT impl={impl_name} records={ok} size={} errors={} secs={secs:.3} rps={rps:.1} \
         mbps={mbps:.3} avg_ms={avg_ms:.3} p50_ms={p50:.3} p95_ms={p95:.3} p99_ms={p99:.3} \
         p999_ms={p999:.3} max_ms={max_ms:.3} cpu_s={:.2} cpu_s_per_M={cpu_per_m:.3} \
         rss_peak_mb={rss:.1}{}{extra_kv}",
        s.record_size,
        g.errors,
        m.cpu_s,
        if extra_kv.is_empty() { "" } else { " " },
    );
    let _ = std::io::stdout().flush();
    if g.errors > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn histogram_percentiles_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (p, want) in [(50.0, 50_000.0), (99.0, 99_000.0), (99.9, 99_900.0)] {
            let got = h.percentile(p) as f64;
            assert!((got - want).abs() / want < 0.01, "p{p}: {got} vs {want}");
        }
        assert!(h.percentile(100.0) >= 100_000);
        let mut small = Histogram::new();
        small.record(3);
        assert_eq!(small.percentile(50.0), 3);
    }

    #[test]
    fn histogram_buckets_are_monotonic() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            511,
            512,
            1 << 20,
            (1 << 20) + 12345,
            u64::MAX / 2,
        ] {
            let i = Histogram::index(v);
            assert!(i >= last, "index not monotonic at {v}");
            assert!(Histogram::upper(i) >= v, "upper({i}) < {v}");
            last = i;
        }
    }

    #[test]
    fn parses_java_style_command_line() {
        let a = parse_args(
            &argv("--topic t --num-records 1_000 --record-size 100 --throughput -1 --producer-props acks=1 linger.ms=5 --bootstrap-server 127.0.0.1:9"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(a.topic.as_deref(), Some("t"));
        assert_eq!(a.num_records, 1000);
        assert!(a.target_rps().is_none());
        assert_eq!(a.prop("acks"), Some("1"));
        assert_eq!(a.prop("bootstrap.servers"), Some("127.0.0.1:9"));
        assert_eq!(a.merged_props().len(), 3);
        assert!(parse_args(&argv("--topic t"), &[], &[]).is_err());
    }

    #[test]
    fn properties_file_syntax() {
        let p = parse_properties("# c\nacks = all\n\nlinger.ms:5\n").unwrap();
        assert_eq!(
            p,
            vec![
                ("acks".into(), "all".into()),
                ("linger.ms".into(), "5".into())
            ]
        );
    }

    #[test]
    fn payload_is_letters_and_varies() {
        let p = Payload::new(100);
        assert!(p.value(0).iter().all(|b| b.is_ascii_uppercase()));
        assert_ne!(p.value(0), p.value(1));
        assert_eq!(p.value(123_456).len(), 100);
    }
}

// ---------------------------------------------------------------------------------------------
// The scale workload: many topics, keyed records
// ---------------------------------------------------------------------------------------------

/// `--topic-count N` and `--keyed` (benches/scale.sh): record `i` goes to topic `i % N`, named
/// `TOPIC-0` .. `TOPIC-{N-1}` (just `TOPIC` when N is 1), with an 8-byte key that spreads the
/// records over the partitions by murmur2 as Java's producer does.
#[derive(Debug, Clone)]
pub struct Spread {
    pub topics: Vec<String>,
    pub keyed: bool,
}

impl Spread {
    /// From `--topic-count` (default 1) and `--keyed`; `Err` with a message for a bad count.
    pub fn from_args(args: &Args) -> Result<Spread, String> {
        let base = args.topic.clone().unwrap_or_default();
        let n = match args.extra("topic-count") {
            None => 1,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => return Err(format!("--topic-count must be 1..=100000, not {v}")),
            },
        };
        let topics = if n == 1 {
            vec![base]
        } else {
            (0..n).map(|i| format!("{base}-{i}")).collect()
        };
        Ok(Spread {
            topics,
            keyed: args.extra("keyed").is_some(),
        })
    }

    /// [`Spread::from_args`], or the usage exit code after printing why.
    pub fn or_usage(args: &Args, tool: &str) -> Result<Spread, i32> {
        Spread::from_args(args).map_err(|e| {
            eprintln!("{tool}: {e}");
            EXIT_USAGE
        })
    }

    /// The topic index of record `i`.
    pub fn topic_of(&self, i: u64) -> usize {
        (i % self.topics.len() as u64) as usize
    }

    /// The key of record `i` (a multiplicative hash of `i`, big-endian).
    pub fn key(i: u64) -> [u8; 8] {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes()
    }
}
