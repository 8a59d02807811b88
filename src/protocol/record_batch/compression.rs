//! The codecs of a records section (`compression.type`) and their levels (KIP-390): the
//! format of each is in the [module docs](super#compression).

use super::*;
#[cfg(feature = "zstd")]
use std::cell::RefCell;
#[cfg(any(feature = "gzip", feature = "lz4"))]
use std::io::Write;
use std::ops::RangeInclusive;
/// Compression codec of a record batch: the low three bits of the batch `attributes`
/// (Kafka protocol guide, "Record Batch"; config `compression.type`).
///
/// All five codecs are implemented; see the [module docs](super#compression) for the exact
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

    pub(super) fn gzip_level(&self) -> Result<u32, BatchError> {
        let level = self.gzip.unwrap_or(DEFAULT_GZIP_LEVEL);
        if GZIP_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("gzip", level, &GZIP_LEVELS))
        }
    }

    pub(super) fn lz4_level(&self) -> Result<i32, BatchError> {
        let level = self.lz4.unwrap_or(DEFAULT_LZ4_LEVEL);
        if LZ4_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("lz4", level, &LZ4_LEVELS))
        }
    }

    pub(super) fn zstd_level(&self) -> Result<i32, BatchError> {
        let level = self.zstd.unwrap_or(DEFAULT_ZSTD_LEVEL);
        if ZSTD_LEVELS.contains(&level) {
            Ok(level)
        } else {
            Err(level_error("zstd", level, &ZSTD_LEVELS))
        }
    }
}

pub(super) fn level_error<T: std::fmt::Display>(
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

#[cfg(feature = "gzip")]
/// Gzips `buf[61..]` into a new buffer that starts with 61 (unfilled) header bytes. `level` is
/// in 0..=9.
pub(super) fn gzip_records(buf: &[u8], level: u32) -> Result<BytesMut, BatchError> {
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
pub(super) fn snappy_records(buf: &[u8]) -> Result<BytesMut, BatchError> {
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
pub(super) fn lz4_records(buf: &[u8]) -> Result<BytesMut, BatchError> {
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
pub(super) fn zstd_records(buf: &[u8], level: i32) -> Result<BytesMut, BatchError> {
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
