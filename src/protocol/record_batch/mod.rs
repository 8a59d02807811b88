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

use crate::record::Header;

mod compression;
mod estimator;
mod header;
mod varint;
mod writer;

pub use compression::*;
pub use estimator::CompressionRatioEstimator;
pub use header::*;
pub use varint::*;
use writer::*;

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

        write_record(
            &mut self.buf,
            total,
            body,
            timestamp_delta,
            offset_delta,
            (key, value, headers),
        );

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

#[cfg(all(
    test,
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
))]
mod tests;
