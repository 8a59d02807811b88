//! Kafka RecordBatch v2 (magic 2) builder — the producer's hot path.
//!
//! A batch is what a `Produce` request carries per partition. Layout (Kafka protocol guide,
//! "Record Batch"; all integers big-endian, offsets in bytes):
//!
//! ```text
//!  0  baseOffset            i64   always 0 from a producer (the broker assigns offsets)
//!  8  batchLength           i32   bytes after this field (= total length - 12)
//! 12  partitionLeaderEpoch  i32   -1 from a producer
//! 16  magic                 i8    2
//! 17  crc                   u32   CRC-32C (Castagnoli) of bytes 21..end
//! 21  attributes            i16   bits 0-2 codec, bit 3 timestampType, bit 4 isTransactional, bit 5 isControl
//! 23  lastOffsetDelta       i32   recordsCount - 1
//! 27  baseTimestamp         i64   ms, the first record's timestamp
//! 35  maxTimestamp          i64   ms, the largest record timestamp
//! 43  producerId            i64   KIP-98; -1 without idempotence
//! 51  producerEpoch         i16   KIP-98; -1 without idempotence
//! 53  baseSequence          i32   KIP-98; -1 without idempotence
//! 57  recordsCount          i32
//! 61  records...                  compressed as a whole when attributes say so
//! ```
//!
//! Each record is `length varint, attributes i8 (0), timestampDelta varlong, offsetDelta varint,
//! keyLength varint + key, valueLength varint + value, headersCount varint, headers...`, where a
//! header is `keyLength varint + key (UTF-8), valueLength varint + value`, and length -1 means
//! null. Varints are zigzag-encoded LEB128 (protobuf style).
//!
//! [`RecordBatchBuilder`] writes each record straight into one growing [`BytesMut`]: the record's
//! size is computed arithmetically first, so its length prefix is written exactly once and no
//! per-record temporary buffer or allocation is needed (beyond amortised buffer growth).
//!
//! # Compression
//!
//! [`RecordBatchBuilder::build`] is the only place where compression happens: the whole records
//! section (everything after the 61-byte header) is compressed as one unit and the codec id is
//! stored in bits 0-2 of `attributes`; the header itself is never compressed. Formats:
//!
//! | codec | `compression.type` | format of the records section | level key (KIP-390) |
//! |-------|--------------------|-------------------------------|---------------------|
//! | 1 | `gzip` | RFC 1952 gzip stream (`flate2`) | `compression.gzip.level` 0..=9, default 6 |
//! | 2 | `snappy` | raw snappy (block format, no xerial or framing header; `snap`), as librdkafka writes | none |
//! | 3 | `lz4` | standard LZ4 frame (`lz4_flex`): 64 KiB independent blocks, no checksums, correct header checksum | `compression.lz4.level` 1..=17, validated but **not applied** (one fast level) |
//! | 4 | `zstd` | one standard Zstandard frame with the content size (`zstd`, KIP-110) | `compression.zstd.level` -131072..=22, default 3 |
//!
//! [`CompressionRatioEstimator`] tracks how well a codec compresses so that callers can fill
//! compressed batches close to `batch.size` (see its docs).

use bytes::{BufMut, Bytes, BytesMut};
#[cfg(feature = "zstd")]
use std::cell::RefCell;
#[cfg(any(feature = "gzip", feature = "lz4"))]
use std::io::Write;
use std::mem::MaybeUninit;
use std::ops::RangeInclusive;

use crate::record::Header;

/// Size in bytes of the RecordBatch v2 header that precedes the records (Kafka protocol guide,
/// "Record Batch"): everything from `baseOffset` to `recordsCount` inclusive.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// The `magic` byte (message format version) of the batches built here.
pub const MAGIC_V2: i8 = 2;

/// Worst-case per-record framing in bytes, excluding key, value and headers: length varint (5) +
/// attributes (1) + timestampDelta varlong (10) + offsetDelta varint (5). Same as Java's
/// `DefaultRecord.MAX_RECORD_OVERHEAD`.
pub const MAX_RECORD_OVERHEAD: usize = 21;

// Byte offsets of the header fields (see the module docs).
const BATCH_LENGTH_OFFSET: usize = 8;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;
/// Bytes before `partitionLeaderEpoch` that `batchLength` does not count.
const LOG_OVERHEAD: usize = 12;
/// `attributes` bit 4.
const TRANSACTIONAL_FLAG: i16 = 1 << 4;
/// `timestamp` value meaning "no timestamp".
const NO_TIMESTAMP: i64 = -1;

/// Compression codec of a record batch: the low three bits of the batch `attributes`
/// (Kafka protocol guide, "Record Batch"; config `compression.type`).
///
/// All five codecs are implemented; see the [module docs](self#compression) for the exact
/// format of each and [`CompressionLevels`] for their levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (codec 0).
    #[default]
    None,
    /// gzip (codec 1): an RFC 1952 stream over the records section.
    Gzip,
    /// Snappy (codec 2): the records section in raw snappy block format (no xerial header).
    Snappy,
    /// LZ4 (codec 3): the records section as one standard LZ4 frame.
    Lz4,
    /// Zstandard (codec 4): the records section as one standard zstd frame.
    Zstd,
}

impl Compression {
    /// The codec id as stored in bits 0-2 of the batch `attributes` (0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd).
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The `compression.type` config name: `"none"`, `"gzip"`, `"snappy"`, `"lz4"` or `"zstd"`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Default gzip level (zlib's default; what Kafka's `compression.gzip.level=-1` means).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Valid gzip levels for [`CompressionLevels::gzip`] (0 = stored, no compression). Kafka's
/// `compression.gzip.level` itself allows -1 (default) or 1..=9.
pub const GZIP_LEVELS: RangeInclusive<u32> = 0..=9;
/// Default LZ4 level of the Java producer (`compression.lz4.level`, KIP-390).
pub const DEFAULT_LZ4_LEVEL: i32 = 9;
/// Valid LZ4 levels (`compression.lz4.level`, KIP-390): 1..=17.
pub const LZ4_LEVELS: RangeInclusive<i32> = 1..=17;
/// Default zstd level (`compression.zstd.level`, KIP-390; also zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Valid zstd levels (`compression.zstd.level`, KIP-390): `ZSTD_minCLevel()..=ZSTD_maxCLevel()`
/// of zstd 1.5, i.e. -131072..=22. Negative levels are faster and compress less; 0 means the
/// default (3).
pub const ZSTD_LEVELS: RangeInclusive<i32> = -131_072..=22;

/// Compression levels per codec (KIP-390: `compression.gzip.level`, `compression.lz4.level`,
/// `compression.zstd.level`). `None` means the codec's default. Only the level of the batch's
/// codec is used and validated (by [`RecordBatchBuilder::build`]); the others are ignored.
///
/// ```
/// use actix_kafka::protocol::record_batch::{Compression, CompressionLevels, RecordBatchBuilder};
/// let levels = CompressionLevels { zstd: Some(9), ..CompressionLevels::default() };
/// let mut b = RecordBatchBuilder::with_levels(16 * 1024, Compression::Zstd, levels);
/// assert!(b.try_append(1_700_000_000_000, None, Some(&b"value"[..]), &[], 16 * 1024));
/// let wire = b.build(-1, -1, -1).unwrap();
/// assert_eq!(wire[22] & 0x07, 4); // attributes: codec 4 = zstd
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CompressionLevels {
    /// gzip level in [`GZIP_LEVELS`] (0..=9); `None` = [`DEFAULT_GZIP_LEVEL`] (6).
    pub gzip: Option<u32>,
    /// LZ4 level in [`LZ4_LEVELS`] (1..=17); `None` = [`DEFAULT_LZ4_LEVEL`] (9).
    ///
    /// Validated but **not applied yet**: the pure-Rust `lz4_flex` encoder has a single level
    /// (LZ4's fast compressor), so every valid level produces the same bytes.
    pub lz4: Option<i32>,
    /// zstd level in [`ZSTD_LEVELS`] (-131072..=22); `None` = [`DEFAULT_ZSTD_LEVEL`] (3).
    pub zstd: Option<i32>,
}

impl CompressionLevels {
    /// Checks the level that `compression` would use (the others are ignored, as in
    /// [`RecordBatchBuilder::build`]).
    ///
    /// # Errors
    ///
    /// [`BatchError::Compression`] naming the codec and the valid range.
    pub fn validate(&self, compression: Compression) -> Result<(), BatchError> {
        match compression {
            Compression::None | Compression::Snappy => Ok(()),
            Compression::Gzip => self.gzip_level().map(drop),
            Compression::Lz4 => self.lz4_level().map(drop),
            Compression::Zstd => self.zstd_level().map(drop),
        }
    }

    fn gzip_level(&self) -> Result<u32, BatchError> {
        let level = self.gzip.unwrap_or(DEFAULT_GZIP_LEVEL);
        if GZIP_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("gzip", level, &GZIP_LEVELS))
        }
    }

    fn lz4_level(&self) -> Result<i32, BatchError> {
        let level = self.lz4.unwrap_or(DEFAULT_LZ4_LEVEL);
        if LZ4_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("lz4", level, &LZ4_LEVELS))
        }
    }

    fn zstd_level(&self) -> Result<i32, BatchError> {
        let level = self.zstd.unwrap_or(DEFAULT_ZSTD_LEVEL);
        if ZSTD_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("zstd", level, &ZSTD_LEVELS))
        }
    }
}

fn level_error<T: std::fmt::Display>(
    codec: &str,
    level: T,
    range: &RangeInclusive<T>,
) -> BatchError {
    BatchError::Compression(format!(
        "{codec} level {level} is out of range {}..={}",
        range.start(),
        range.end()
    ))
}

/// Why a record batch could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The configured codec (its `compression.type` name) is not implemented by this crate.
    ///
    /// No longer returned: every codec is implemented. Kept so that existing matches compile.
    #[error("compression codec `{0}` is not supported")]
    UnsupportedCompression(&'static str),
    /// The compressor failed, or its configuration (e.g. its level) is invalid.
    #[error("compression failed: {0}")]
    Compression(String),
    /// The batch cannot be represented on the wire: its `batchLength` would exceed `i32::MAX`
    /// bytes.
    #[error("record batch too large for the wire format (batchLength > i32::MAX)")]
    TooManyRecords,
}

// ---------------------------------------------------------------------------------------------
// Varint helpers
// ---------------------------------------------------------------------------------------------

/// Bytes of the unsigned LEB128 encoding of `v` (1..=10).
#[inline(always)]
const fn uvarint_size(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Zigzag encoding of a varint (i32).
#[inline(always)]
const fn zigzag32(n: i32) -> u64 {
    (((n as u32) << 1) ^ ((n >> 31) as u32)) as u64
}

/// Zigzag encoding of a varlong (i64).
#[inline(always)]
const fn zigzag64(n: i64) -> u64 {
    ((n as u64) << 1) ^ ((n >> 63) as u64)
}

/// Zigzag encoding of a non-negative length (fits in i32 when the record is encodable).
#[inline(always)]
const fn zigzag_len(len: usize) -> u64 {
    (len as u64) << 1
}

/// Encoded size of a nullable byte field: length varint + bytes, or the single byte of -1.
#[inline(always)]
fn nullable_field_size(field: Option<&[u8]>) -> usize {
    match field {
        None => 1,
        Some(b) => uvarint_size(zigzag_len(b.len())) + b.len(),
    }
}

/// Encoded size of key, value and headers of a record (Java's `DefaultRecord.sizeOf(key, value,
/// headers)`): everything in the record body after `offsetDelta`.
#[inline]
fn key_value_headers_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let mut size = nullable_field_size(key)
        + nullable_field_size(value)
        + uvarint_size(zigzag_len(headers.len()));
    for h in headers {
        let k = h.key.len();
        size += uvarint_size(zigzag_len(k)) + k + nullable_field_size(h.value.as_deref());
    }
    size
}

/// Upper bound in bytes of the encoded size of one record (Java's
/// `DefaultRecord.estimateSizeInBytesUpperBound`): [`MAX_RECORD_OVERHEAD`] (21 bytes, the
/// worst-case length, attributes, timestamp-delta and offset-delta fields) plus the exact size of
/// key, value and headers with their length prefixes.
///
/// Used for `max.request.size` / `buffer.memory` checks before the record is appended. It does
/// not include the 61-byte batch header: a single-record batch is at most
/// `RECORD_BATCH_OVERHEAD + record_size_upper_bound(..)` bytes uncompressed. The actual growth of
/// [`RecordBatchBuilder::size_in_bytes`] from appending the record never exceeds this value.
pub fn record_size_upper_bound(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    MAX_RECORD_OVERHEAD + key_value_headers_size(key, value, headers)
}

/// Writes sequentially into uninitialised spare capacity. Every write goes at `pos` and
/// advances it by exactly the bytes written, so `dst[..pos]` is always initialised.
struct SpareWriter<'a> {
    dst: &'a mut [MaybeUninit<u8>],
    pos: usize,
}

impl SpareWriter<'_> {
    #[inline(always)]
    fn put_u8(&mut self, b: u8) {
        self.dst[self.pos].write(b);
        self.pos += 1;
    }

    #[inline(always)]
    fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.put_u8(v as u8);
    }

    #[inline(always)]
    fn put_slice(&mut self, src: &[u8]) {
        // SAFETY: `MaybeUninit<u8>` has the same layout as `u8`, and viewing initialised bytes
        // as `MaybeUninit` for reading is always valid; the view is never written through.
        let src: &[MaybeUninit<u8>] = unsafe { &*(src as *const [u8] as *const [MaybeUninit<u8>]) };
        let end = self.pos + src.len();
        self.dst[self.pos..end].copy_from_slice(src);
        self.pos = end;
    }

    #[inline(always)]
    fn put_nullable(&mut self, field: Option<&[u8]>) {
        match field {
            None => self.put_u8(1), // zigzag(-1)
            Some(b) => {
                self.put_uvarint(zigzag_len(b.len()));
                self.put_slice(b);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/// Builds one RecordBatch v2 (Kafka protocol guide, "Record Batch") for one partition.
///
/// Records are encoded as they are appended, straight into a single [`BytesMut`] that starts with
/// 61 reserved header bytes; [`build`](Self::build) compresses the records section if configured,
/// fills the header and computes the CRC-32C. Appending performs no allocation besides
/// amortised growth of that buffer (none at all while `size_in_bytes` stays within the initial
/// `capacity`).
///
/// Offsets are relative: the n-th appended record (from 0) gets `offsetDelta` n; the broker
/// assigns the real base offset. Timestamps are CreateTime in ms since the Unix epoch; the first
/// record's timestamp becomes `baseTimestamp` and later ones are stored as (possibly negative)
/// deltas from it.
///
/// ```
/// use actix_kafka::protocol::record_batch::{Compression, RecordBatchBuilder};
/// let mut b = RecordBatchBuilder::new(16 * 1024, Compression::None, None);
/// assert!(b.try_append(1_700_000_000_000, Some(&b"k"[..]), Some(&b"v"[..]), &[], 16 * 1024));
/// let wire = b.build(-1, -1, -1).unwrap(); // non-idempotent producer
/// assert_eq!(wire.len(), 61 + 9);
/// ```
#[derive(Debug)]
pub struct RecordBatchBuilder {
    /// Header placeholder (61 bytes) followed by the encoded, uncompressed records.
    buf: BytesMut,
    compression: Compression,
    levels: CompressionLevels,
    transactional: bool,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatchBuilder {
    /// An empty batch.
    ///
    /// * `capacity`: initial buffer capacity in bytes, header included (typically `batch.size`;
    ///   raised to at least 61).
    /// * `compression`: codec applied by [`build`](Self::build) to the records section.
    /// * `gzip_level`: gzip level 0..=9 (`compression.gzip.level`, KIP-390); `None` = 6, the
    ///   zlib default. Ignored for other codecs; validated by `build`.
    ///
    /// LZ4 and zstd use their default levels; see [`with_levels`](Self::with_levels).
    pub fn new(capacity: usize, compression: Compression, gzip_level: Option<u32>) -> Self {
        let levels = CompressionLevels {
            gzip: gzip_level,
            ..CompressionLevels::default()
        };
        Self::with_levels(capacity, compression, levels)
    }

    /// An empty batch with explicit per-codec levels (KIP-390).
    ///
    /// * `capacity`: initial buffer capacity in bytes, header included (typically `batch.size`;
    ///   raised to at least 61).
    /// * `compression`: codec applied by [`build`](Self::build) to the records section.
    /// * `levels`: only the level of `compression` is used; it is validated by `build` (see
    ///   [`CompressionLevels::validate`]).
    pub fn with_levels(
        capacity: usize,
        compression: Compression,
        levels: CompressionLevels,
    ) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(RECORD_BATCH_OVERHEAD));
        buf.put_bytes(0, RECORD_BATCH_OVERHEAD);
        RecordBatchBuilder {
            buf,
            compression,
            levels,
            transactional: false,
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// Sets the `isTransactional` attribute bit (KIP-98): the batch is part of a transaction
    /// and needs a producer id/epoch. Default `false`.
    pub fn set_transactional(&mut self, transactional: bool) {
        self.transactional = transactional;
    }

    /// The codec [`build`](Self::build) will apply.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The compression levels given at construction.
    pub fn compression_levels(&self) -> CompressionLevels {
        self.levels
    }

    /// Appends one record with CreateTime `timestamp_ms` (ms since the Unix epoch), an optional
    /// key and value, and `headers` in order. Returns `true` if the record was appended.
    ///
    /// The first record's timestamp becomes the batch's base timestamp. If the batch already
    /// holds records and appending would make the uncompressed size
    /// ([`size_in_bytes`](Self::size_in_bytes), header included) exceed `size_limit` bytes, or
    /// the batch already holds `i32::MAX` records, nothing is appended and `false` is returned.
    /// An empty batch always accepts: one record may exceed `batch.size`; checking
    /// `max.request.size` (see [`record_size_upper_bound`]) is the caller's job.
    ///
    /// # Panics
    ///
    /// If the encoded record alone would exceed `i32::MAX` bytes (not representable on the wire).
    #[inline]
    pub fn try_append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        size_limit: usize,
    ) -> bool {
        let first = self.count == 0;
        let timestamp_delta = if first {
            0
        } else {
            timestamp_ms.wrapping_sub(self.base_timestamp)
        };
        let offset_delta = self.count;
        let body = 1 // attributes
            + uvarint_size(zigzag64(timestamp_delta))
            + uvarint_size(zigzag32(offset_delta))
            + key_value_headers_size(key, value, headers);
        assert!(
            body <= i32::MAX as usize,
            "record of {body} bytes exceeds the wire format limit"
        );
        let total = uvarint_size(zigzag_len(body)) + body;
        if !first && (self.buf.len() + total > size_limit || self.count == i32::MAX) {
            return false;
        }

        self.buf.reserve(total);
        let len = self.buf.len();
        let mut w = SpareWriter {
            dst: &mut self.buf.spare_capacity_mut()[..total],
            pos: 0,
        };
        w.put_uvarint(zigzag_len(body));
        w.put_u8(0); // record attributes: unused
        w.put_uvarint(zigzag64(timestamp_delta));
        w.put_uvarint(zigzag32(offset_delta));
        w.put_nullable(key);
        w.put_nullable(value);
        w.put_uvarint(zigzag_len(headers.len()));
        for h in headers {
            w.put_uvarint(zigzag_len(h.key.len()));
            w.put_slice(h.key.as_bytes());
            w.put_nullable(h.value.as_deref());
        }
        // Soundness of `set_len`: the writer initialised `dst[..pos]` contiguously.
        assert_eq!(w.pos, total, "record size computation out of sync");
        // SAFETY: `total` bytes after `len` were reserved and have just been initialised.
        unsafe { self.buf.set_len(len + total) };

        if first {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else if timestamp_ms > self.max_timestamp {
            self.max_timestamp = timestamp_ms;
        }
        self.count += 1;
        true
    }

    /// Number of records appended so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// `true` if no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes allocated for the batch so far (its buffer's capacity).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Uncompressed size so far in bytes, including the 61-byte header (61 when empty).
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The first record's timestamp in ms (the batch `baseTimestamp`), or -1 when empty.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// The largest record timestamp in ms (the batch `maxTimestamp`), or -1 when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Closes the batch and returns its wire bytes.
    ///
    /// Compresses the records section if configured (as one unit, in the format given in the
    /// [module docs](self#compression)), then fills the header: baseOffset 0,
    /// batchLength, partitionLeaderEpoch -1, magic 2, attributes (codec, CreateTime,
    /// isTransactional if set), lastOffsetDelta (`record_count - 1`), base/max timestamps, and
    /// the producer fields as given (KIP-98: `producer_id`, `producer_epoch` and the sequence
    /// number of the first record, `base_sequence`; pass -1/-1/-1 for a non-idempotent
    /// producer), and finally the CRC-32C over bytes 21..end.
    ///
    /// An empty builder yields a header-only batch (recordsCount 0, lastOffsetDelta -1,
    /// timestamps -1), which brokers reject; callers should not send it.
    ///
    /// # Errors
    ///
    /// * [`BatchError::Compression`] if the level of the batch's codec is out of range (gzip
    ///   0..=9, lz4 1..=17, zstd -131072..=22) or the compressor fails.
    /// * [`BatchError::TooManyRecords`] if the batch is longer than `i32::MAX + 12` bytes.
    pub fn build(
        self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Result<Bytes, BatchError> {
        self.build_inner(producer_id, producer_epoch, base_sequence, true)
    }

    /// Like [`build`](Self::build) with the producer fields unset (-1) and **without** the
    /// CRC-32C (left 0): for a batch whose producer id, epoch and sequence are written when it
    /// is drained, which computes the CRC then, once ([`patch_producer_state`]).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_unsealed(self) -> Result<Bytes, BatchError> {
        self.build_inner(-1, -1, -1, false)
    }

    fn build_inner(
        self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        seal: bool,
    ) -> Result<Bytes, BatchError> {
        let mut out = match self.compression {
            Compression::None => self.buf,
            #[cfg(feature = "gzip")]
            Compression::Gzip => gzip_records(&self.buf, self.levels.gzip_level()?)?,
            #[cfg(feature = "snappy")]
            Compression::Snappy => snappy_records(&self.buf)?,
            #[cfg(feature = "lz4")]
            Compression::Lz4 => {
                // Validated only: lz4_flex has a single compression level.
                self.levels.lz4_level()?;
                lz4_records(&self.buf)?
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => zstd_records(&self.buf, self.levels.zstd_level()?)?,
            #[allow(unreachable_patterns)]
            other => {
                return Err(BatchError::Compression(format!(
                    "{} support is not compiled in (cargo feature `{}`)",
                    other.name(),
                    other.name()
                )))
            }
        };
        let batch_length =
            i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| BatchError::TooManyRecords)?;
        let mut attributes = self.compression.attribute_bits();
        if self.transactional {
            attributes |= TRANSACTIONAL_FLAG;
        }

        let h = &mut out[..RECORD_BATCH_OVERHEAD];
        put_i64(h, 0, 0); // baseOffset
        put_i32(h, BATCH_LENGTH_OFFSET, batch_length);
        put_i32(h, PARTITION_LEADER_EPOCH_OFFSET, -1);
        h[MAGIC_OFFSET] = MAGIC_V2 as u8;
        put_i16(h, ATTRIBUTES_OFFSET, attributes);
        put_i32(h, LAST_OFFSET_DELTA_OFFSET, self.count - 1);
        put_i64(h, BASE_TIMESTAMP_OFFSET, self.base_timestamp);
        put_i64(h, MAX_TIMESTAMP_OFFSET, self.max_timestamp);
        put_producer_state(h, producer_id, producer_epoch, base_sequence);
        put_i32(h, RECORDS_COUNT_OFFSET, self.count);
        if seal {
            write_crc(&mut out);
        }
        Ok(out.freeze())
    }
}

#[cfg(feature = "gzip")]
/// Gzips `buf[61..]` into a new buffer that starts with 61 (unfilled) header bytes. `level` is
/// in 0..=9.
fn gzip_records(buf: &[u8], level: u32) -> Result<BytesMut, BatchError> {
    let records = &buf[RECORD_BATCH_OVERHEAD..];
    let mut out = BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + records.len() / 2 + 64);
    out.put_bytes(0, RECORD_BATCH_OVERHEAD);
    let mut enc = flate2::write::GzEncoder::new(out.writer(), flate2::Compression::new(level));
    let result = enc.write_all(records).and_then(|()| enc.finish());
    match result {
        Ok(w) => Ok(w.into_inner()),
        Err(e) => Err(BatchError::Compression(format!("gzip: {e}"))),
    }
}

#[cfg(feature = "snappy")]
/// Compresses `buf[61..]` in raw snappy format (one snappy block stream: varint uncompressed
/// length, then literals and copies; no xerial or framing-format header) into a new buffer that
/// starts with 61 (unfilled) header bytes.
fn snappy_records(buf: &[u8]) -> Result<BytesMut, BatchError> {
    let records = &buf[RECORD_BATCH_OVERHEAD..];
    let max = snap::raw::max_compress_len(records.len());
    if max == 0 && !records.is_empty() {
        return Err(BatchError::Compression(
            "snappy: records section too large".to_string(),
        ));
    }
    let mut out = BytesMut::zeroed(RECORD_BATCH_OVERHEAD + max);
    let n = snap::raw::Encoder::new()
        .compress(records, &mut out[RECORD_BATCH_OVERHEAD..])
        .map_err(|e| BatchError::Compression(format!("snappy: {e}")))?;
    out.truncate(RECORD_BATCH_OVERHEAD + n);
    Ok(out)
}

#[cfg(feature = "lz4")]
/// Compresses `buf[61..]` as one standard LZ4 frame (magic `04 22 4D 18`, frame format
/// version 1, independent blocks of at most 64 KiB, no block or content checksum, no content
/// size, correct header checksum) into a new buffer that starts with 61 (unfilled) header bytes.
///
/// These are the frame settings of the Java producer and librdkafka; Java brokers decode every
/// block on its own, so blocks must be independent.
fn lz4_records(buf: &[u8]) -> Result<BytesMut, BatchError> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let records = &buf[RECORD_BATCH_OVERHEAD..];
    let mut out = BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + records.len() / 2 + 64);
    out.put_bytes(0, RECORD_BATCH_OVERHEAD);
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false);
    let mut enc = FrameEncoder::with_frame_info(info, out.writer());
    let result = enc
        .write_all(records)
        .map_err(|e| e.to_string())
        .and_then(|()| enc.finish().map_err(|e| e.to_string()));
    match result {
        Ok(w) => Ok(w.into_inner()),
        Err(e) => Err(BatchError::Compression(format!("lz4: {e}"))),
    }
}

#[cfg(feature = "zstd")]
/// Compresses `buf[61..]` as one standard zstd frame (content size in the frame header, no
/// checksum, no dictionary) at `level` into a new buffer that starts with 61 (unfilled) header
/// bytes.
///
/// The zstd compression context is kept per thread and reused (about 25% faster for 16 KiB
/// batches than a fresh context each time); zstd itself shrinks the context's workspace again
/// when it stays oversized, e.g. after one huge batch at a high level.
fn zstd_records(buf: &[u8], level: i32) -> Result<BytesMut, BatchError> {
    thread_local! {
        static ZSTD_CONTEXT: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    let records = &buf[RECORD_BATCH_OVERHEAD..];
    let bound = zstd::zstd_safe::compress_bound(records.len());
    let mut out = BytesMut::zeroed(RECORD_BATCH_OVERHEAD + bound);
    let n = ZSTD_CONTEXT
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            let ctx = match slot.as_mut() {
                Some(ctx) => {
                    ctx.set_compression_level(level)?;
                    ctx
                }
                None => slot.insert(zstd::bulk::Compressor::new(level)?),
            };
            ctx.compress_to_buffer(records, &mut out[RECORD_BATCH_OVERHEAD..])
        })
        .map_err(|e| BatchError::Compression(format!("zstd: {e}")))?;
    out.truncate(RECORD_BATCH_OVERHEAD + n);
    Ok(out)
}

/// Running estimate of how well a codec compresses records sections, so that a caller can fill
/// compressed batches close to `batch.size` (the idea of the Java producer's
/// `CompressionRatioEstimator`).
///
/// [`RecordBatchBuilder::try_append`] limits the *uncompressed* size; with compression the wire
/// batch ends up much smaller than `batch.size` unless the limit is raised by the expected ratio.
/// The estimate is the ratio compressed / uncompressed of the records section (the 61-byte header
/// is never compressed). It starts at 1.0 (no gain assumed); each built batch is fed to
/// [`observe`](Self::observe): a worse ratio than estimated raises the estimate at once, by at
/// least [`DETERIORATE_STEP`](Self::DETERIORATE_STEP), so batches quickly stop overshooting; a
/// better one lowers it by at most [`IMPROVE_STEP`](Self::IMPROVE_STEP) per batch. Sizes derived
/// from the estimate include a [`SAFETY_FACTOR`](Self::SAFETY_FACTOR) margin. For
/// [`Compression::None`] the estimate is always 1.0 and every size passes through unchanged.
///
/// Keep one per codec and topic (or partition):
///
/// ```
/// use actix_kafka::protocol::record_batch::{
///     Compression, CompressionRatioEstimator, RecordBatchBuilder,
/// };
/// let batch_size = 16 * 1024;
/// let mut est = CompressionRatioEstimator::new(Compression::Zstd);
/// for _ in 0..20 {
///     let limit = est.uncompressed_limit(batch_size); // >= batch_size once data compresses
///     let mut b = RecordBatchBuilder::new(batch_size, Compression::Zstd, None);
///     let mut ts = 0;
///     while b.try_append(ts, None, Some(&b"{\"id\":12345,\"name\":\"user\"}"[..]), &[], limit) {
///         ts += 1;
///     }
///     let uncompressed = b.size_in_bytes();
///     let wire = b.build(-1, -1, -1).unwrap();
///     est.observe(uncompressed, wire.len());
/// }
/// assert!(est.estimate() < 1.0);
/// assert!(est.uncompressed_limit(batch_size) > batch_size);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompressionRatioEstimator {
    compression: Compression,
    ratio: f32,
}

impl CompressionRatioEstimator {
    /// The estimate before any batch was observed: no gain assumed.
    pub const INITIAL_RATIO: f32 = 1.0;
    /// Minimum raise of the estimate when a batch compressed worse than estimated.
    pub const DETERIORATE_STEP: f32 = 0.05;
    /// Maximum decrease of the estimate when a batch compressed better than estimated.
    pub const IMPROVE_STEP: f32 = 0.005;
    /// Margin applied by [`estimated_size`](Self::estimated_size) and
    /// [`uncompressed_limit`](Self::uncompressed_limit) (estimates are 5% pessimistic).
    pub const SAFETY_FACTOR: f32 = 1.05;
    /// Smallest estimate kept, so that limits stay finite even for all-zero data.
    pub const MIN_RATIO: f32 = 0.001;

    /// A fresh estimator for `compression`, at [`INITIAL_RATIO`](Self::INITIAL_RATIO).
    pub fn new(compression: Compression) -> Self {
        CompressionRatioEstimator {
            compression,
            ratio: Self::INITIAL_RATIO,
        }
    }

    /// The codec this estimator tracks.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The current estimate of compressed / uncompressed size of a records section (1.0 for
    /// [`Compression::None`]; may exceed 1.0 for incompressible data).
    pub fn estimate(&self) -> f32 {
        self.ratio
    }

    /// Feeds one built batch: `uncompressed` is [`RecordBatchBuilder::size_in_bytes`] just
    /// before [`build`](RecordBatchBuilder::build) and `compressed` the length of the bytes it
    /// returned (both header included). Batches without records, and any batch for
    /// [`Compression::None`], leave the estimate unchanged.
    pub fn observe(&mut self, uncompressed: usize, compressed: usize) {
        if self.compression == Compression::None || uncompressed <= RECORD_BATCH_OVERHEAD {
            return;
        }
        let observed = (compressed.saturating_sub(RECORD_BATCH_OVERHEAD) as f64
            / (uncompressed - RECORD_BATCH_OVERHEAD) as f64) as f32;
        let next = if observed > self.ratio {
            observed.max(self.ratio + Self::DETERIORATE_STEP)
        } else {
            observed.max(self.ratio - Self::IMPROVE_STEP)
        };
        self.ratio = next.max(Self::MIN_RATIO);
    }

    /// Estimated wire size of a batch whose [`RecordBatchBuilder::size_in_bytes`] is
    /// `uncompressed` (header included), with the safety margin. Identity for
    /// [`Compression::None`].
    pub fn estimated_size(&self, uncompressed: usize) -> usize {
        if self.compression == Compression::None || uncompressed <= RECORD_BATCH_OVERHEAD {
            return uncompressed;
        }
        let records = (uncompressed - RECORD_BATCH_OVERHEAD) as f64;
        let factor = f64::from(self.ratio) * f64::from(Self::SAFETY_FACTOR);
        // Float-to-int `as` saturates.
        RECORD_BATCH_OVERHEAD.saturating_add((records * factor).ceil() as usize)
    }

    /// The largest uncompressed batch size (header included) whose
    /// [`estimated_size`](Self::estimated_size) is at most `batch_size`: pass it as the
    /// `size_limit` of [`RecordBatchBuilder::try_append`] (and compare
    /// [`size_in_bytes`](RecordBatchBuilder::size_in_bytes) against it to decide that a batch is
    /// full) so that compressed batches come out close to `batch_size`. Identity for
    /// [`Compression::None`]; may exceed `batch_size` several times for compressible data, so
    /// callers should still cap it, e.g. by `max.request.size`.
    pub fn uncompressed_limit(&self, batch_size: usize) -> usize {
        if self.compression == Compression::None || batch_size <= RECORD_BATCH_OVERHEAD {
            return batch_size;
        }
        let records = (batch_size - RECORD_BATCH_OVERHEAD) as f64;
        let factor = f64::from(self.ratio) * f64::from(Self::SAFETY_FACTOR);
        let mut limit = RECORD_BATCH_OVERHEAD.saturating_add((records / factor).floor() as usize);
        // Guard against float rounding: the limit must map back to at most `batch_size`.
        while limit > RECORD_BATCH_OVERHEAD && self.estimated_size(limit) > batch_size {
            limit -= 1;
        }
        limit
    }
}

#[inline(always)]
fn put_i16(h: &mut [u8], at: usize, v: i16) {
    h[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn put_i32(h: &mut [u8], at: usize, v: i32) {
    h[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn put_i64(h: &mut [u8], at: usize, v: i64) {
    h[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn put_producer_state(h: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    put_i64(h, PRODUCER_ID_OFFSET, producer_id);
    put_i16(h, PRODUCER_EPOCH_OFFSET, producer_epoch);
    put_i32(h, BASE_SEQUENCE_OFFSET, base_sequence);
}

/// Returns a copy of a built batch with `producerId`, `producerEpoch` and `baseSequence`
/// replaced (KIP-98 fields) and the CRC-32C recomputed. Used when an idempotent producer bumps
/// its epoch and re-sequences in-flight batches (KIP-360).
///
/// `batch` must be exactly one v2 batch as returned by [`RecordBatchBuilder::build`]. Returns
/// `None` if its header is not well-formed: shorter than 61 bytes, magic not 2, or `batchLength`
/// not equal to `batch.len() - 12`. The records (possibly compressed) are copied unchanged; the
/// old CRC is not verified.
pub fn rewrite_producer_state(
    batch: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Option<Bytes> {
    if batch.len() < RECORD_BATCH_OVERHEAD || batch[MAGIC_OFFSET] as i8 != MAGIC_V2 {
        return None;
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]);
    let batch_length = i32::from_be_bytes(len);
    if batch_length < 0 || batch_length as usize + LOG_OVERHEAD != batch.len() {
        return None;
    }
    let mut out = BytesMut::from(batch);
    patch_producer_state(&mut out, producer_id, producer_epoch, base_sequence, false);
    Some(out.freeze())
}

/// Writes `producerId`, `producerEpoch` and `baseSequence` into a built batch in place (and the
/// `isTransactional` attribute bit if `transactional`), then its CRC-32C: the one place the
/// sender writes producer state (KIP-98) at drain time. A buffer shorter than the 61-byte
/// header is left alone.
pub(crate) fn patch_producer_state(
    buf: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
) {
    if buf.len() < RECORD_BATCH_OVERHEAD {
        return;
    }
    if transactional {
        let attributes = i16::from_be_bytes([buf[ATTRIBUTES_OFFSET], buf[ATTRIBUTES_OFFSET + 1]]);
        put_i16(buf, ATTRIBUTES_OFFSET, attributes | TRANSACTIONAL_FLAG);
    }
    put_producer_state(buf, producer_id, producer_epoch, base_sequence);
    write_crc(buf);
}

/// The CRC-32C of bytes 21.. (attributes to the end), written at offset 17.
fn write_crc(buf: &mut [u8]) {
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(all(
    test,
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
))]
mod tests {
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
        std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(frame), &mut out)
            .unwrap();
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
}
