//! Hot-path benchmarks: record append, batch close (CRC-32C) without compression and with each
//! codec (gzip, snappy, lz4, zstd), murmur2.
//!
//! `cargo bench --bench record_batch` (about 20 s) or `-- --quick` (a few seconds).

use std::hint::black_box;
use std::time::{Duration, Instant};

use actix_kafka::partitioner::murmur2;
use actix_kafka::protocol::record_batch::{Compression, RecordBatchBuilder};
use actix_kafka::record::Header;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BATCH_SIZE: usize = 16 * 1024;
const TIMESTAMP: i64 = 1_700_000_000_000;

/// Deterministic, mildly compressible text-like bytes (like JSON payloads).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    const WORDS: [&[u8]; 8] = [
        b"\"id\":",
        b"\"name\":",
        b"true,",
        b"null,",
        b"\"user\",",
        b"{",
        b"}",
        b"12345,",
    ];
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        if rng.u8(..4) == 0 {
            out.push(rng.alphanumeric() as u8);
        } else {
            out.extend_from_slice(WORDS[rng.usize(..WORDS.len())]);
        }
    }
    out.truncate(len);
    out
}

fn headers() -> Vec<Header> {
    vec![
        Header::new(
            "traceparent",
            &b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..],
        ),
        Header::new("content-type", &b"application/json"[..]),
    ]
}

/// A builder filled with 100-byte-value records up to `BATCH_SIZE` bytes.
fn full_batch(compression: Compression, value: &[u8], key: &[u8]) -> RecordBatchBuilder {
    let mut b = RecordBatchBuilder::new(BATCH_SIZE, compression, None);
    let mut ts = TIMESTAMP;
    while b.try_append(ts, Some(key), Some(value), &[], BATCH_SIZE) {
        ts += 1;
    }
    b
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    let key = payload(16, 1);
    for value_len in [10usize, 100, 1000] {
        let value = payload(value_len, 2);
        for (label, hdrs) in [("0h", Vec::new()), ("2h", headers())] {
            g.bench_function(format!("{value_len}B_{label}"), |bch| {
                // ns per record: fill fresh 16 KiB batches, timing only the appends (builder
                // creation and drop are outside the measured sections).
                bch.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    let mut done = 0u64;
                    let mut ts = TIMESTAMP;
                    while done < iters {
                        let mut b = RecordBatchBuilder::new(BATCH_SIZE, Compression::None, None);
                        let start = Instant::now();
                        while done < iters
                            && b.try_append(ts, Some(&key), Some(&value), &hdrs, BATCH_SIZE)
                        {
                            done += 1;
                            ts += 1;
                        }
                        elapsed += start.elapsed();
                        black_box(&b);
                    }
                    elapsed
                });
            });
        }
    }
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let key = payload(16, 1);
    let value = payload(100, 2);
    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Bytes(BATCH_SIZE as u64));
    g.bench_function("close_16KiB_none", |bch| {
        bch.iter_batched(
            || full_batch(Compression::None, &value, &key),
            |b| b.build(1, 0, 0).unwrap(),
            BatchSize::SmallInput,
        );
    });
    // Varied values so the codecs have realistic (not trivially repetitive) input. Each bench
    // builds (compresses, fills the header, CRCs) one full 16 KiB batch at the codec's
    // default level; throughput is in uncompressed bytes.
    let values: Vec<Vec<u8>> = (0..200).map(|i| payload(100, 10 + i)).collect();
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let fill = || {
            let mut b = RecordBatchBuilder::new(BATCH_SIZE, compression, None);
            let mut i = 0;
            while b.try_append(
                TIMESTAMP + i as i64,
                Some(&key),
                Some(&values[i % 200]),
                &[],
                BATCH_SIZE,
            ) {
                i += 1;
            }
            b
        };
        let sample = fill();
        let uncompressed = sample.size_in_bytes();
        let wire = sample.build(1, 0, 0).unwrap().len();
        eprintln!(
            "build/close_16KiB_{}: {uncompressed} -> {wire} bytes (ratio {:.2})",
            compression.name(),
            wire as f64 / uncompressed as f64
        );
        g.bench_function(format!("close_16KiB_{}", compression.name()), |bch| {
            bch.iter_batched(fill, |b| b.build(1, 0, 0).unwrap(), BatchSize::SmallInput);
        });
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let data = payload(BATCH_SIZE, 3);
    let mut g = c.benchmark_group("crc32c");
    g.throughput(Throughput::Bytes(BATCH_SIZE as u64));
    g.bench_function("16KiB", |bch| bch.iter(|| crc32c::crc32c(black_box(&data))));
    g.finish();
}

fn bench_murmur2(c: &mut Criterion) {
    let key = payload(16, 4);
    let mut g = c.benchmark_group("murmur2");
    g.throughput(Throughput::Elements(1));
    g.bench_function("16B_key", |bch| bch.iter(|| murmur2(black_box(&key))));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_append, bench_build, bench_crc, bench_murmur2
}
criterion_main!(benches);
