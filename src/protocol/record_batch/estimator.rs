//! How well a codec compresses, so that compressed batches fill `batch.size`.

use super::*;
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
