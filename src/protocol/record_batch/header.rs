//! The RecordBatch v2 header: its layout (offsets of every field, see the module docs of
//! [`super`]), the big-endian writes into it, the KIP-98 producer state and the CRC-32C.

use super::*;
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
pub(super) const BATCH_LENGTH_OFFSET: usize = 8;
pub(super) const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub(super) const MAGIC_OFFSET: usize = 16;
pub(super) const CRC_OFFSET: usize = 17;
pub(super) const ATTRIBUTES_OFFSET: usize = 21;
pub(super) const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub(super) const BASE_TIMESTAMP_OFFSET: usize = 27;
pub(super) const MAX_TIMESTAMP_OFFSET: usize = 35;
pub(super) const PRODUCER_ID_OFFSET: usize = 43;
pub(super) const PRODUCER_EPOCH_OFFSET: usize = 51;
pub(super) const BASE_SEQUENCE_OFFSET: usize = 53;
pub(super) const RECORDS_COUNT_OFFSET: usize = 57;
/// Bytes before `partitionLeaderEpoch` that `batchLength` does not count.
pub(super) const LOG_OVERHEAD: usize = 12;
/// `attributes` bit 4.
pub(super) const TRANSACTIONAL_FLAG: i16 = 1 << 4;
/// `timestamp` value meaning "no timestamp".
pub(super) const NO_TIMESTAMP: i64 = -1;

#[inline(always)]
pub(super) fn put_i16(h: &mut [u8], at: usize, v: i16) {
    h[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(super) fn put_i32(h: &mut [u8], at: usize, v: i32) {
    h[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(super) fn put_i64(h: &mut [u8], at: usize, v: i64) {
    h[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn put_producer_state(
    h: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) {
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
pub(super) fn write_crc(buf: &mut [u8]) {
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}
