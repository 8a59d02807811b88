//! Round trips of the RecordBatch v2 codec against kafka-protocol's decoder, sizes, codecs
//! and the estimator.

use super::*;
use kafka_protocol::records::{
    Compression as KCompression, RecordBatchDecoder, RecordSet, TimestampType,
};

const LIMIT: usize = usize::MAX;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn decode(wire: &Bytes) -> RecordSet {
    let mut buf = wire.clone();
    let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
    assert!(buf.is_empty(), "trailing bytes after the batch");
    set
}

/// One record as appended by a test.
#[derive(Clone, Debug)]
struct In {
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn rec(ts: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: Vec<Header>) -> In {
    In {
        ts,
        key: key.map(|k| k.to_vec()),
        value: value.map(|v| v.to_vec()),
        headers,
    }
}

fn append_all(b: &mut RecordBatchBuilder, recs: &[In]) {
    for r in recs {
        assert!(b.try_append(
            r.ts,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
            LIMIT
        ));
    }
}

/// Walks an uncompressed records section independently of kafka-protocol, checking that
/// every length prefix matches the record's actual extent. Returns the record count.
fn walk_records(mut s: &[u8]) -> usize {
    fn uvarint(s: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = s[0];
            *s = &s[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    fn varint(s: &mut &[u8]) -> i64 {
        let u = uvarint(s);
        ((u >> 1) as i64) ^ -((u & 1) as i64)
    }
    fn nullable(s: &mut &[u8]) {
        let n = varint(s);
        if n >= 0 {
            *s = &s[n as usize..];
        } else {
            assert_eq!(n, -1);
        }
    }
    let mut n = 0;
    while !s.is_empty() {
        let len = varint(&mut s) as usize;
        let before = s.len();
        assert_eq!(s[0], 0, "record attributes");
        s = &s[1..];
        varint(&mut s); // timestamp delta
        assert_eq!(varint(&mut s), n as i64, "offset delta");
        nullable(&mut s); // key
        nullable(&mut s); // value
        let headers = varint(&mut s);
        for _ in 0..headers {
            let k = varint(&mut s);
            assert!(k >= 0);
            s = &s[k as usize..];
            nullable(&mut s);
        }
        assert_eq!(before - s.len(), len, "record {n} length prefix");
        n += 1;
    }
    n
}

/// All codecs, `None` first.
const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Decompresses a built batch's records section with decoders independent of both the
/// builder and kafka-protocol's record decoding: flate2's gzip decoder, snap's raw decoder,
/// the reference C LZ4 frame decoder (liblz4 through the `lz4` crate, which also checks
/// the frame's header checksum) and `zstd::decode_all`.
fn decompress_records(compression: Compression, section: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(section),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(section)
                .read_to_end(&mut out)
                .expect("gzip stream");
        }
        Compression::Snappy => {
            out = snap::raw::Decoder::new()
                .decompress_vec(section)
                .expect("raw snappy");
        }
        Compression::Lz4 => {
            lz4::Decoder::new(section)
                .expect("lz4 frame header")
                .read_to_end(&mut out)
                .expect("lz4 frame");
        }
        Compression::Zstd => out = zstd::decode_all(section).expect("zstd frame"),
    }
    out
}

/// Builds `recs`, decodes the result and checks every field of every record and the raw
/// header fields the decoder does not expose.
fn round_trip(compression: Compression, recs: &[In], pid: i64, epoch: i16, seq: i32) -> Bytes {
    round_trip_levels(
        compression,
        CompressionLevels::default(),
        recs,
        pid,
        epoch,
        seq,
    )
}

/// [`round_trip`] with explicit levels. For compressed batches also checks that the
/// records section decompresses (with independent decoders) to exactly the uncompressed
/// records the builder encoded.
fn round_trip_levels(
    compression: Compression,
    levels: CompressionLevels,
    recs: &[In],
    pid: i64,
    epoch: i16,
    seq: i32,
) -> Bytes {
    let mut b = RecordBatchBuilder::with_levels(1024, compression, levels);
    append_all(&mut b, recs);
    assert_eq!(b.record_count() as usize, recs.len());
    let uncompressed_size = b.size_in_bytes();
    let plain_records = b.buf[RECORD_BATCH_OVERHEAD..].to_vec();
    assert_eq!(walk_records(&plain_records), recs.len());
    let base_ts = recs.first().map_or(-1, |r| r.ts);
    let max_ts = recs.iter().map(|r| r.ts).max().unwrap_or(-1);
    assert_eq!(b.base_timestamp(), base_ts);
    assert_eq!(b.max_timestamp(), max_ts);
    let wire = b.build(pid, epoch, seq).expect("builds");
    if compression == Compression::None {
        assert_eq!(wire.len(), uncompressed_size);
    }
    assert_eq!(
        decompress_records(compression, &wire[RECORD_BATCH_OVERHEAD..]),
        plain_records,
        "{compression:?} records section"
    );

    // Raw header.
    assert_eq!(be_i64(&wire, 0), 0, "baseOffset");
    assert_eq!(be_i32(&wire, 8) as usize, wire.len() - 12, "batchLength");
    assert_eq!(be_i32(&wire, 12), -1, "partitionLeaderEpoch");
    assert_eq!(wire[16], 2, "magic");
    assert_eq!(be_i32(&wire, 17) as u32, crc32c::crc32c(&wire[21..]), "crc");
    assert_eq!(
        be_i16(&wire, 21),
        compression.attribute_bits(),
        "attributes"
    );
    assert_eq!(be_i32(&wire, 23), recs.len() as i32 - 1, "lastOffsetDelta");
    assert_eq!(be_i64(&wire, 27), base_ts, "baseTimestamp");
    assert_eq!(be_i64(&wire, 35), max_ts, "maxTimestamp");
    assert_eq!(be_i64(&wire, 43), pid, "producerId");
    assert_eq!(be_i16(&wire, 51), epoch, "producerEpoch");
    assert_eq!(be_i32(&wire, 53), seq, "baseSequence");
    assert_eq!(be_i32(&wire, 57), recs.len() as i32, "recordsCount");

    // Decoded.
    let set = decode(&wire);
    assert_eq!(set.version, 2);
    let expected_codec = match compression {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    };
    assert_eq!(set.compression, expected_codec);
    assert_eq!(set.records.len(), recs.len());
    for (i, (got, want)) in set.records.iter().zip(recs).enumerate() {
        assert_eq!(got.offset, i as i64, "offset of {i}");
        assert_eq!(got.sequence, seq.wrapping_add(i as i32), "sequence of {i}");
        assert_eq!(got.timestamp, want.ts, "timestamp of {i}");
        assert_eq!(got.timestamp_type, TimestampType::Creation);
        assert_eq!(got.producer_id, pid);
        assert_eq!(got.producer_epoch, epoch);
        assert_eq!(got.partition_leader_epoch, -1);
        assert!(!got.transactional);
        assert!(!got.control);
        assert_eq!(got.key.as_deref(), want.key.as_deref(), "key of {i}");
        assert_eq!(got.value.as_deref(), want.value.as_deref(), "value of {i}");
        let got_headers: Vec<(String, Option<Bytes>)> = got
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        let want_headers: Vec<(String, Option<Bytes>)> = want
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        assert_eq!(got_headers, want_headers, "headers of {i}");
    }
    wire
}

fn two_headers() -> Vec<Header> {
    vec![
        Header::new("trace-id", &b"0af7651916cd43dd8448eb211c80319c"[..]),
        Header {
            key: "null-valued".into(),
            value: None,
        },
    ]
}

fn mixed_records(n: usize, base_ts: i64) -> Vec<In> {
    (0..n)
        .map(|i| {
            let value = vec![(i % 251) as u8; i % 300];
            let key = format!("key-{i}");
            let headers = if i % 3 == 0 {
                two_headers()
            } else {
                Vec::new()
            };
            In {
                ts: base_ts + (i as i64 * 7) % 1000 - 300,
                key: (i % 5 != 0).then(|| key.into_bytes()),
                value: (i % 11 != 0).then_some(value),
                headers,
            }
        })
        .collect()
}

#[test]
fn single_record_value_only() {
    let wire = round_trip(
        Compression::None,
        &[rec(1_700_000_000_000, None, Some(&b"hello"[..]), vec![])],
        -1,
        -1,
        -1,
    );
    // length(1) attrs(1) ts(1) off(1) key(1) vlen(1)+5 hdrs(1) = 12 bytes.
    assert_eq!(wire.len(), 61 + 12);
}

#[test]
fn single_record_with_key() {
    round_trip(
        Compression::None,
        &[rec(
            5,
            Some(&b"the-key"[..]),
            Some(&b"the-value"[..]),
            vec![],
        )],
        -1,
        -1,
        -1,
    );
}

#[test]
fn null_value_tombstone_and_null_key() {
    round_trip(
        Compression::None,
        &[
            rec(10, Some(&b"k"[..]), None, vec![]),
            rec(11, None, None, vec![]),
            rec(12, Some(&b""[..]), Some(&b""[..]), vec![]),
        ],
        -1,
        -1,
        -1,
    );
}

#[test]
fn headers_round_trip() {
    let mut headers = two_headers();
    headers.push(Header::new("ünïcode-ключ", vec![0u8; 200]));
    headers.push(Header::new("", &b""[..]));
    round_trip(
        Compression::None,
        &[
            rec(1, Some(&b"k"[..]), Some(&b"v"[..]), headers.clone()),
            rec(2, None, Some(&b"v2"[..]), vec![]),
            rec(3, Some(&b"k3"[..]), None, headers),
        ],
        -1,
        -1,
        -1,
    );
}

#[test]
fn idempotent_producer_fields() {
    round_trip(
        Compression::None,
        &mixed_records(10, 1_000),
        123_456_789_012,
        7,
        i32::MAX - 3, // sequences wrap around
    );
}

#[test]
fn thousand_records() {
    let recs = mixed_records(1000, 1_700_000_000_000);
    round_trip(Compression::None, &recs, 42, 3, 1000);
}

#[test]
fn timestamps_increasing() {
    let recs: Vec<In> = (0..50)
        .map(|i| rec(1_700_000_000_000 + i * 1_000, None, Some(&b"x"[..]), vec![]))
        .collect();
    round_trip(Compression::None, &recs, -1, -1, -1);
}

#[test]
fn timestamps_not_monotonic_and_extreme() {
    let recs = vec![
        rec(1_000_000, None, Some(&b"a"[..]), vec![]),
        rec(999_000, None, Some(&b"b"[..]), vec![]), // negative delta
        rec(5_000_000, None, Some(&b"c"[..]), vec![]),
        rec(0, None, Some(&b"d"[..]), vec![]),
        rec(4_000_000_000_000, None, Some(&b"e"[..]), vec![]), // multi-byte varlong
        rec(2_000_000, None, Some(&b"f"[..]), vec![]),
    ];
    let wire = round_trip(Compression::None, &recs, -1, -1, -1);
    assert_eq!(be_i64(&wire, 27), 1_000_000);
    assert_eq!(be_i64(&wire, 35), 4_000_000_000_000);
}

#[test]
fn large_values_need_multibyte_lengths() {
    let big = vec![0xabu8; 70_000];
    round_trip(
        Compression::None,
        &[
            rec(1, Some(&big[..200]), Some(&big), two_headers()),
            rec(2, Some(&big[..20_000]), Some(&big[..128]), vec![]),
        ],
        9,
        0,
        0,
    );
}

#[test]
fn gzip_round_trip() {
    let recs = mixed_records(500, 1_700_000_000_000);
    let mut plain = RecordBatchBuilder::new(0, Compression::None, None);
    append_all(&mut plain, &recs);
    let plain_len = plain.size_in_bytes();
    let wire = round_trip(Compression::Gzip, &recs, 77, 1, 0);
    assert!(wire.len() < plain_len, "{} >= {plain_len}", wire.len());
    // The records section is a gzip stream.
    assert_eq!(&wire[61..63], &[0x1f, 0x8b]);
}

#[test]
fn gzip_levels() {
    let recs = mixed_records(100, 0);
    for level in [0, 1, 9] {
        let mut b = RecordBatchBuilder::new(0, Compression::Gzip, Some(level));
        append_all(&mut b, &recs);
        let wire = b.build(-1, -1, -1).unwrap();
        assert_eq!(decode(&wire).records.len(), 100);
    }
    let mut b = RecordBatchBuilder::new(0, Compression::Gzip, Some(10));
    append_all(&mut b, &recs);
    assert!(matches!(
        b.build(-1, -1, -1),
        Err(BatchError::Compression(_))
    ));
}

/// Uncompressed size of `recs` in one batch, header included.
fn plain_size(recs: &[In]) -> usize {
    let mut plain = RecordBatchBuilder::new(0, Compression::None, None);
    append_all(&mut plain, recs);
    plain.size_in_bytes()
}

#[test]
fn snappy_round_trip_raw_format() {
    let recs = mixed_records(500, 1_700_000_000_000);
    let plain_len = plain_size(&recs);
    let wire = round_trip(Compression::Snappy, &recs, 77, 1, 0);
    assert!(wire.len() < plain_len, "{} >= {plain_len}", wire.len());
    let section = &wire[RECORD_BATCH_OVERHEAD..];
    // Raw snappy: starts with the uncompressed length as a varint, not with the xerial
    // header (0x82 "SNAPPY") nor the framing format's stream identifier (0xff).
    assert_ne!(section[0], 0x82);
    assert_ne!(section[0], 0xff);
    assert_eq!(
        snap::raw::decompress_len(section).unwrap(),
        plain_len - RECORD_BATCH_OVERHEAD
    );
}

#[test]
fn lz4_round_trip_standard_frame() {
    let recs = mixed_records(500, 1_700_000_000_000);
    let plain_len = plain_size(&recs);
    let wire = round_trip(Compression::Lz4, &recs, 77, 1, 0);
    assert!(wire.len() < plain_len, "{} >= {plain_len}", wire.len());
    let frame = &wire[RECORD_BATCH_OVERHEAD..];
    // Frame magic, FLG (version 01, independent blocks, no checksums, no content size),
    // BD (64 KiB max block size).
    assert_eq!(&frame[..4], &[0x04, 0x22, 0x4d, 0x18]);
    assert_eq!(frame[4], 0b0110_0000);
    assert_eq!(frame[5], 0x40);
    // Ends with the EndMark.
    assert_eq!(&frame[frame.len() - 4..], &[0, 0, 0, 0]);
    // The pure-Rust frame decoder agrees with liblz4 (used in `round_trip`).
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(frame), &mut out).unwrap();
    assert_eq!(out.len(), plain_len - RECORD_BATCH_OVERHEAD);
}

#[test]
fn lz4_header_checksum_is_checked_and_correct() {
    let mut b = RecordBatchBuilder::new(0, Compression::Lz4, None);
    append_all(&mut b, &mixed_records(50, 0));
    let wire = b.build(-1, -1, -1).unwrap();
    let frame = &wire[RECORD_BATCH_OVERHEAD..];
    // HC is the second byte of xxh32(FLG, BD) with seed 0; liblz4 accepts ours...
    assert_eq!(decompress_records(Compression::Lz4, frame).len(), {
        let mut p = RecordBatchBuilder::new(0, Compression::None, None);
        append_all(&mut p, &mixed_records(50, 0));
        p.size_in_bytes() - RECORD_BATCH_OVERHEAD
    });
    // ...and rejects the frame once the checksum byte is wrong, so the check is real.
    let mut bad = frame.to_vec();
    bad[6] ^= 0x5a;
    let res = lz4::Decoder::new(&bad[..]).and_then(|mut d| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out)
    });
    assert!(res.is_err(), "corrupt header checksum accepted");
    // kafka-protocol (liblz4 as well) rejects the whole batch too.
    let mut bad_wire = wire.to_vec();
    bad_wire[RECORD_BATCH_OVERHEAD + 6] ^= 0x5a;
    let crc = crc32c::crc32c(&bad_wire[21..]);
    bad_wire[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(RecordBatchDecoder::decode(&mut Bytes::from(bad_wire)).is_err());
}

#[test]
fn zstd_round_trip_standard_frame() {
    let recs = mixed_records(500, 1_700_000_000_000);
    let plain_len = plain_size(&recs);
    let wire = round_trip(Compression::Zstd, &recs, 77, 1, 0);
    assert!(wire.len() < plain_len, "{} >= {plain_len}", wire.len());
    let frame = &wire[RECORD_BATCH_OVERHEAD..];
    assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    assert_eq!(
        zstd::decode_all(frame).unwrap().len(),
        plain_len - RECORD_BATCH_OVERHEAD
    );
    // Exactly one frame.
    assert_eq!(
        zstd::zstd_safe::find_frame_compressed_size(frame).unwrap(),
        frame.len()
    );
    // The documented level range is the linked zstd's.
    assert_eq!(ZSTD_LEVELS, zstd::compression_level_range());
}

#[test]
fn every_codec_round_trips_with_varied_records() {
    let recs = mixed_records(300, 1_700_000_000_000);
    for c in ALL_CODECS {
        round_trip(c, &recs, 123_456_789_012, 7, i32::MAX - 3);
        round_trip(
            c,
            &[rec(1_700_000_000_000, None, Some(&b"x"[..]), vec![])],
            -1,
            -1,
            -1,
        );
    }
}

#[test]
fn every_codec_and_level_round_trips() {
    let recs = mixed_records(200, 1_700_000_000_000);
    let mut cases: Vec<(Compression, CompressionLevels)> =
        vec![(Compression::None, CompressionLevels::default())];
    for gzip in [None, Some(0), Some(1), Some(6), Some(9)] {
        let levels = CompressionLevels {
            gzip,
            ..Default::default()
        };
        cases.push((Compression::Gzip, levels));
    }
    cases.push((Compression::Snappy, CompressionLevels::default()));
    for lz4 in [None, Some(1), Some(9), Some(17)] {
        let levels = CompressionLevels {
            lz4,
            ..Default::default()
        };
        cases.push((Compression::Lz4, levels));
    }
    for zstd in [
        None,
        Some(-131_072),
        Some(-7),
        Some(0),
        Some(1),
        Some(3),
        Some(19),
        Some(22),
    ] {
        let levels = CompressionLevels {
            zstd,
            ..Default::default()
        };
        cases.push((Compression::Zstd, levels));
    }
    for (c, levels) in cases {
        let wire = round_trip_levels(c, levels, &recs, 5, 1, 100);
        // gzip level 0 stores; zstd's lowest level barely compresses.
        let weak = levels.gzip == Some(0) || levels.zstd == Some(-131_072);
        if c != Compression::None && !weak {
            assert!(wire.len() < plain_size(&recs), "{c:?} {levels:?}");
        }
    }
}

#[test]
fn zstd_level_is_applied() {
    let recs = mixed_records(500, 0);
    let build = |zstd| {
        let levels = CompressionLevels {
            zstd: Some(zstd),
            ..Default::default()
        };
        let mut b = RecordBatchBuilder::with_levels(0, Compression::Zstd, levels);
        append_all(&mut b, &recs);
        b.build(-1, -1, -1).unwrap()
    };
    let fast = build(-50);
    let default = build(3);
    let best = build(19);
    assert!(
        best.len() <= default.len(),
        "{} > {}",
        best.len(),
        default.len()
    );
    assert!(
        default.len() < fast.len(),
        "{} >= {}",
        default.len(),
        fast.len()
    );
    // `None` is level 3.
    let mut b = RecordBatchBuilder::new(0, Compression::Zstd, None);
    append_all(&mut b, &recs);
    assert_eq!(b.build(-1, -1, -1).unwrap(), default);
    // The reused per-thread context gives exactly what a fresh one gives, whatever level
    // it was used with before.
    let mut plain = RecordBatchBuilder::new(0, Compression::None, None);
    append_all(&mut plain, &recs);
    let plain = plain.buf[RECORD_BATCH_OVERHEAD..].to_vec();
    for (level, wire) in [(19, &best), (-50, &fast), (3, &default)] {
        let fresh = zstd::bulk::compress(&plain, level).unwrap();
        assert_eq!(&wire[RECORD_BATCH_OVERHEAD..], &fresh[..], "level {level}");
        assert_eq!(build(level), *wire, "level {level} rebuilt");
    }
}

#[test]
fn invalid_levels_are_rejected_by_build() {
    let cases = [
        (
            Compression::Gzip,
            CompressionLevels {
                gzip: Some(10),
                ..Default::default()
            },
        ),
        (
            Compression::Lz4,
            CompressionLevels {
                lz4: Some(0),
                ..Default::default()
            },
        ),
        (
            Compression::Lz4,
            CompressionLevels {
                lz4: Some(18),
                ..Default::default()
            },
        ),
        (
            Compression::Zstd,
            CompressionLevels {
                zstd: Some(23),
                ..Default::default()
            },
        ),
        (
            Compression::Zstd,
            CompressionLevels {
                zstd: Some(-131_073),
                ..Default::default()
            },
        ),
    ];
    for (c, levels) in cases {
        assert!(levels.validate(c).is_err(), "{c:?} {levels:?}");
        let mut b = RecordBatchBuilder::with_levels(0, c, levels);
        assert!(b.try_append(0, None, Some(&b"v"[..]), &[], LIMIT));
        match b.build(-1, -1, -1) {
            Err(BatchError::Compression(msg)) => {
                assert!(
                    msg.contains(c.name()) && msg.contains("out of range"),
                    "{msg}"
                )
            }
            other => panic!("{c:?} {levels:?}: {other:?}"),
        }
    }
}

#[test]
fn levels_of_other_codecs_are_ignored() {
    let bad = CompressionLevels {
        gzip: Some(99),
        lz4: Some(99),
        zstd: Some(99),
    };
    for c in ALL_CODECS {
        assert!(
            bad.validate(c).is_err()
                == matches!(c, Compression::Gzip | Compression::Lz4 | Compression::Zstd)
        );
    }
    for c in [Compression::None, Compression::Snappy] {
        let mut b = RecordBatchBuilder::with_levels(0, c, bad);
        assert_eq!(b.compression_levels(), bad);
        assert!(b.try_append(0, None, Some(&b"v"[..]), &[], LIMIT));
        assert_eq!(decode(&b.build(-1, -1, -1).unwrap()).records.len(), 1);
    }
    let ok_for_gzip = CompressionLevels {
        gzip: Some(1),
        ..bad
    };
    let mut b = RecordBatchBuilder::with_levels(0, Compression::Gzip, ok_for_gzip);
    assert!(b.try_append(0, None, Some(&b"v"[..]), &[], LIMIT));
    assert_eq!(decode(&b.build(-1, -1, -1).unwrap()).records.len(), 1);
    assert!(CompressionLevels::default()
        .validate(Compression::Zstd)
        .is_ok());
}

#[test]
fn new_equals_with_levels_gzip_only() {
    let recs = mixed_records(100, 0);
    for c in ALL_CODECS {
        let mut a = RecordBatchBuilder::new(0, c, Some(2));
        let mut b = RecordBatchBuilder::with_levels(
            0,
            c,
            CompressionLevels {
                gzip: Some(2),
                lz4: None,
                zstd: None,
            },
        );
        assert_eq!(a.compression_levels(), b.compression_levels());
        append_all(&mut a, &recs);
        append_all(&mut b, &recs);
        assert_eq!(
            a.build(1, 2, 3).unwrap(),
            b.build(1, 2, 3).unwrap(),
            "{c:?}"
        );
    }
}

#[test]
fn empty_batch_builds_with_every_codec() {
    for c in ALL_CODECS {
        let wire = RecordBatchBuilder::new(0, c, None)
            .build(-1, -1, -1)
            .unwrap();
        assert_eq!(be_i32(&wire, 57), 0);
        assert_eq!(be_i16(&wire, 21), c.attribute_bits());
        assert_eq!(be_i32(&wire, 17) as u32, crc32c::crc32c(&wire[21..]));
        assert!(decompress_records(c, &wire[RECORD_BATCH_OVERHEAD..]).is_empty());
    }
}

#[test]
fn ratio_estimator_starts_at_one_and_none_is_identity() {
    for c in ALL_CODECS {
        let e = CompressionRatioEstimator::new(c);
        assert_eq!(e.compression(), c);
        assert_eq!(e.estimate(), 1.0);
    }
    let mut none = CompressionRatioEstimator::new(Compression::None);
    none.observe(10_000, 1_000); // ignored
    assert_eq!(none.estimate(), 1.0);
    assert_eq!(none.uncompressed_limit(16_384), 16_384);
    assert_eq!(none.estimated_size(16_384), 16_384);
    // Before any observation the compressed estimate is pessimistic (5% margin).
    let fresh = CompressionRatioEstimator::new(Compression::Lz4);
    assert!(fresh.uncompressed_limit(16_384) < 16_384);
    assert!(fresh.estimated_size(16_384) > 16_384);
    // Tiny sizes pass through.
    assert_eq!(fresh.uncompressed_limit(61), 61);
    assert_eq!(fresh.estimated_size(10), 10);
}

#[test]
fn ratio_estimator_improves_slowly_and_deteriorates_fast() {
    let h = RECORD_BATCH_OVERHEAD;
    let mut e = CompressionRatioEstimator::new(Compression::Zstd);
    // Records section 10000 -> 2000 bytes: ratio 0.2, approached by 0.005 per batch.
    e.observe(h + 10_000, h + 2_000);
    assert!((e.estimate() - 0.995).abs() < 1e-6, "{}", e.estimate());
    for _ in 0..1000 {
        e.observe(h + 10_000, h + 2_000);
    }
    assert!((e.estimate() - 0.2).abs() < 1e-6, "{}", e.estimate());
    // Never below the observed ratio.
    e.observe(h + 10_000, h + 1_990);
    assert!((e.estimate() - 0.199).abs() < 1e-6, "{}", e.estimate());
    // Slightly worse: raised by at least 0.05.
    e.observe(h + 10_000, h + 2_000);
    assert!((e.estimate() - 0.249).abs() < 1e-6, "{}", e.estimate());
    // Much worse (incompressible): jumps straight to the observed ratio.
    e.observe(h + 10_000, h + 10_100);
    assert!((e.estimate() - 1.01).abs() < 1e-6, "{}", e.estimate());
    // Empty batches are ignored; all-zero data keeps the ratio positive.
    e.observe(h, h + 20);
    assert!((e.estimate() - 1.01).abs() < 1e-6);
    let mut z = CompressionRatioEstimator::new(Compression::Gzip);
    for _ in 0..1000 {
        z.observe(h + 1_000_000, h);
    }
    assert_eq!(z.estimate(), CompressionRatioEstimator::MIN_RATIO);
    assert!(z.uncompressed_limit(16_384) < usize::MAX);
}

#[test]
fn ratio_estimator_limit_inverts_estimated_size() {
    let h = RECORD_BATCH_OVERHEAD;
    let mut e = CompressionRatioEstimator::new(Compression::Snappy);
    for (u, c) in [(10_000, 6_000), (10_000, 3_333), (7_777, 1_234), (100, 100)] {
        for _ in 0..50 {
            e.observe(h + u, h + c);
        }
        for batch_size in [62usize, 100, 1_000, 16_384, 1 << 20, i32::MAX as usize] {
            let limit = e.uncompressed_limit(batch_size);
            assert!(
                e.estimated_size(limit) <= batch_size,
                "{batch_size} {}",
                e.estimate()
            );
            assert!(
                e.estimated_size(limit + 1) > batch_size,
                "{batch_size} {}",
                e.estimate()
            );
        }
    }
}

#[test]
fn ratio_estimator_fills_compressed_batches_near_batch_size() {
    const BATCH: usize = 16 * 1024;
    // Distinct text-like values that compress roughly 2-4x (a batch never repeats a value,
    // so the ratio hardly depends on the batch size).
    const POOL: usize = 4096;
    let mut rng = fastrand::Rng::with_seed(7);
    let words: [&[u8]; 6] = [b"\"id\":", b"\"name\":", b"true,", b"null,", b"{", b"}"];
    let values: Vec<Vec<u8>> = (0..POOL)
        .map(|_| {
            let mut v = Vec::new();
            while v.len() < 200 {
                if rng.u8(..3) == 0 {
                    v.push(rng.alphanumeric() as u8);
                } else {
                    v.extend_from_slice(words[rng.usize(..words.len())]);
                }
            }
            v
        })
        .collect();
    for c in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut e = CompressionRatioEstimator::new(c);
        let mut sizes = Vec::new();
        for batch in 0..400 {
            let limit = e.uncompressed_limit(BATCH);
            let mut b = RecordBatchBuilder::new(BATCH, c, None);
            let mut i = batch * 7;
            while b.try_append(i as i64, None, Some(&values[i % POOL]), &[], limit) {
                i += 1;
            }
            let uncompressed = b.size_in_bytes();
            let wire = b.build(-1, -1, -1).unwrap();
            e.observe(uncompressed, wire.len());
            sizes.push(wire.len());
        }
        assert!(e.estimate() < 0.9, "{c:?}: {}", e.estimate());
        // Converged: the last batches are well above what the uncompressed limit alone
        // gives, and do not overshoot batch.size.
        for &len in &sizes[350..] {
            assert!(len <= BATCH, "{c:?}: {len}");
            assert!(len >= BATCH * 8 / 10, "{c:?}: {len}");
        }
    }
}

#[test]
fn compression_bits_and_names() {
    let all = [
        (Compression::None, 0, "none"),
        (Compression::Gzip, 1, "gzip"),
        (Compression::Snappy, 2, "snappy"),
        (Compression::Lz4, 3, "lz4"),
        (Compression::Zstd, 4, "zstd"),
    ];
    for (c, bits, name) in all {
        assert_eq!(c.attribute_bits(), bits);
        assert_eq!(c.name(), name);
    }
    assert_eq!(Compression::default(), Compression::None);
}

#[test]
fn crc_independent_check() {
    let mut b = RecordBatchBuilder::new(0, Compression::None, None);
    append_all(&mut b, &mixed_records(20, 100));
    let wire = b.build(5, 6, 7).unwrap();
    let stored = u32::from_be_bytes(wire[17..21].try_into().unwrap());
    assert_eq!(stored, crc32c::crc32c(&wire[21..]));
    // Known CRC-32C check value ("123456789" -> 0xE3069283) guards the algorithm choice.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    // Flipping any byte after the CRC field breaks it.
    let mut bad = wire.to_vec();
    *bad.last_mut().unwrap() ^= 1;
    assert!(RecordBatchDecoder::decode(&mut Bytes::from(bad)).is_err());
}

#[test]
fn unsealed_then_patched_equals_built_with_producer_state() {
    let mk = || {
        let mut b = RecordBatchBuilder::new(1 << 20, Compression::None, None);
        for i in 0..10i64 {
            b.try_append(1_000 + i, Some(b"k"), Some(b"value"), &[], usize::MAX);
        }
        b
    };
    let sealed = mk().build(77, 3, 1_000).unwrap();
    let unsealed = mk().build_unsealed().unwrap();
    assert_eq!(
        &unsealed[17..21],
        &[0, 0, 0, 0],
        "no CRC computed before the drain"
    );
    let mut patched = bytes::BytesMut::from(&unsealed[..]);
    patch_producer_state(&mut patched, 77, 3, 1_000, false);
    assert_eq!(&patched[..], &sealed[..]);
}

#[test]
fn transactional_bit() {
    for c in ALL_CODECS {
        let mut b = RecordBatchBuilder::new(0, c, None);
        b.set_transactional(true);
        assert!(b.try_append(1, None, Some(&b"v"[..]), &[], LIMIT));
        let wire = b.build(1, 2, 3).unwrap();
        assert_eq!(be_i16(&wire, 21), c.attribute_bits() | (1 << 4));
        assert!(decode(&wire).records[0].transactional);
    }
}

#[test]
fn try_append_respects_size_limit() {
    let value = [7u8; 100];
    let mut b = RecordBatchBuilder::new(0, Compression::None, None);
    assert!(b.is_empty());
    assert_eq!(b.size_in_bytes(), 61);
    // An empty batch accepts even when the record alone exceeds the limit.
    assert!(b.try_append(0, None, Some(&value[..]), &[], 10));
    assert_eq!(b.record_count(), 1);
    let one = b.size_in_bytes() - 61; // 100 + 9 framing bytes (2-byte value and record lengths)
    assert_eq!(one, 109);
    // Not empty any more: a limit below the new size refuses and changes nothing.
    let limit = 61 + 2 * one;
    assert!(!b.try_append(1, None, Some(&value[..]), &[], limit - 1));
    assert_eq!(b.record_count(), 1);
    assert_eq!(b.size_in_bytes(), 61 + one);
    assert_eq!(b.max_timestamp(), 0);
    // Exactly at the limit is accepted.
    assert!(b.try_append(1, None, Some(&value[..]), &[], limit));
    assert_eq!(b.size_in_bytes(), limit);
    assert!(!b.try_append(2, None, Some(&b""[..]), &[], limit));
    assert_eq!(b.record_count(), 2);
    let wire = b.build(-1, -1, -1).unwrap();
    assert_eq!(wire.len(), limit);
    assert_eq!(decode(&wire).records.len(), 2);
}

#[test]
fn fill_to_batch_size() {
    let value = [1u8; 100];
    let mut b = RecordBatchBuilder::new(16384, Compression::None, None);
    let mut n = 0;
    while b.try_append(n, Some(&b"key"[..]), Some(&value[..]), &[], 16384) {
        n += 1;
    }
    assert!(b.size_in_bytes() <= 16384);
    assert!(b.size_in_bytes() + 120 > 16384);
    let wire = b.build(-1, -1, -1).unwrap();
    assert_eq!(decode(&wire).records.len() as i64, n);
}

#[test]
fn empty_batch_builds_header_only() {
    let b = RecordBatchBuilder::new(0, Compression::None, None);
    assert_eq!(b.base_timestamp(), -1);
    assert_eq!(b.max_timestamp(), -1);
    let wire = b.build(-1, -1, -1).unwrap();
    assert_eq!(wire.len(), 61);
    assert_eq!(be_i32(&wire, 23), -1);
    assert_eq!(be_i32(&wire, 57), 0);
    assert!(decode(&wire).records.is_empty());
}

#[test]
fn rewrite_producer_state_round_trip() {
    for compression in ALL_CODECS {
        let recs = mixed_records(30, 1_000);
        let mut b = RecordBatchBuilder::new(0, compression, None);
        append_all(&mut b, &recs);
        let wire = b.build(100, 1, 50).unwrap();
        let rewritten = rewrite_producer_state(&wire, 200, 2, 7).unwrap();
        assert_eq!(rewritten.len(), wire.len());
        assert_eq!(be_i64(&rewritten, 43), 200);
        assert_eq!(be_i16(&rewritten, 51), 2);
        assert_eq!(be_i32(&rewritten, 53), 7);
        assert_eq!(
            be_i32(&rewritten, 17) as u32,
            crc32c::crc32c(&rewritten[21..])
        );
        // Everything but the producer fields and CRC is unchanged.
        assert_eq!(rewritten[..17], wire[..17]);
        assert_eq!(rewritten[21..43], wire[21..43]);
        assert_eq!(rewritten[57..], wire[57..]);
        let set = decode(&rewritten);
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.producer_id, 200);
            assert_eq!(r.producer_epoch, 2);
            assert_eq!(r.sequence, 7 + i as i32);
            assert_eq!(r.value.as_deref(), recs[i].value.as_deref());
        }
        // Rewriting back restores the original bytes exactly.
        assert_eq!(
            rewrite_producer_state(&rewritten, 100, 1, 50).unwrap(),
            wire
        );
    }
}

#[test]
fn rewrite_producer_state_rejects_malformed() {
    let mut b = RecordBatchBuilder::new(0, Compression::None, None);
    assert!(b.try_append(0, None, Some(&b"v"[..]), &[], LIMIT));
    let wire = b.build(-1, -1, -1).unwrap();
    assert!(rewrite_producer_state(&wire[..60], 1, 1, 1).is_none());
    assert!(rewrite_producer_state(&wire[..wire.len() - 1], 1, 1, 1).is_none());
    let mut longer = wire.to_vec();
    longer.push(0);
    assert!(rewrite_producer_state(&longer, 1, 1, 1).is_none());
    let mut bad_magic = wire.to_vec();
    bad_magic[16] = 1;
    assert!(rewrite_producer_state(&bad_magic, 1, 1, 1).is_none());
    let mut negative = wire.to_vec();
    negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(rewrite_producer_state(&negative, 1, 1, 1).is_none());
    assert!(rewrite_producer_state(&[], 1, 1, 1).is_none());
}

#[test]
fn size_upper_bound_covers_actual_growth() {
    let sizes = [0usize, 1, 63, 64, 127, 128, 8191, 8192, 100_000];
    let big = vec![3u8; 100_000];
    let mut b = RecordBatchBuilder::new(0, Compression::None, None);
    let mut ts = 0i64;
    let mut cases = 0;
    for &ks in &sizes[..7] {
        for &vs in &sizes {
            for headers in [Vec::new(), two_headers()] {
                for (key, value) in [
                    (Some(&big[..ks]), Some(&big[..vs])),
                    (None, Some(&big[..vs])),
                    (Some(&big[..ks]), None),
                ] {
                    // Wildly varying timestamps exercise the widest timestamp deltas.
                    let jitter = ts % 7;
                    ts = if cases % 2 == 0 {
                        i64::MAX / 4
                    } else {
                        -(1 << 40)
                    };
                    ts += jitter;
                    let before = b.size_in_bytes();
                    let bound = record_size_upper_bound(key, value, &headers);
                    assert!(b.try_append(ts, key, value, &headers, LIMIT));
                    let grew = b.size_in_bytes() - before;
                    assert!(grew <= bound, "grew {grew} > bound {bound}");
                    // The bound is tight up to the worst-case framing.
                    assert!(bound - grew <= MAX_RECORD_OVERHEAD - 4);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(walk_records(&b.buf[61..]), cases);
    // The bound of a null record: 21 + key(1) + value(1) + headers count(1).
    assert_eq!(record_size_upper_bound(None, None, &[]), 24);
}

#[test]
fn varint_sizes() {
    for (v, n) in [
        (0u64, 1),
        (127, 1),
        (128, 2),
        (16383, 2),
        (16384, 3),
        (u32::MAX as u64, 5),
        (u64::MAX, 10),
    ] {
        assert_eq!(uvarint_size(v), n, "{v}");
    }
    assert_eq!(zigzag32(-1), 1);
    assert_eq!(zigzag32(1), 2);
    assert_eq!(zigzag32(i32::MIN), u32::MAX as u64);
    assert_eq!(zigzag64(i64::MIN), u64::MAX);
    assert_eq!(zigzag64(-2), 3);
}
