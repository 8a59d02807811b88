//! Sizes of the zigzag LEB128 varints of a record, and of a whole record, computed before it is
//! written (so its length prefix is written once).

use super::*;
// ---------------------------------------------------------------------------------------------
// Varint helpers
// ---------------------------------------------------------------------------------------------

/// Bytes of the unsigned LEB128 encoding of `v` (1..=10).
#[inline(always)]
pub(super) const fn uvarint_size(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Zigzag encoding of a varint (i32).
#[inline(always)]
pub(super) const fn zigzag32(n: i32) -> u64 {
    (((n as u32) << 1) ^ ((n >> 31) as u32)) as u64
}

/// Zigzag encoding of a varlong (i64).
#[inline(always)]
pub(super) const fn zigzag64(n: i64) -> u64 {
    ((n as u64) << 1) ^ ((n >> 63) as u64)
}

/// Zigzag encoding of a non-negative length (fits in i32 when the record is encodable).
#[inline(always)]
pub(super) const fn zigzag_len(len: usize) -> u64 {
    (len as u64) << 1
}

/// Encoded size of a nullable byte field: length varint + bytes, or the single byte of -1.
#[inline(always)]
pub(super) fn nullable_field_size(field: Option<&[u8]>) -> usize {
    match field {
        None => 1,
        Some(b) => uvarint_size(zigzag_len(b.len())) + b.len(),
    }
}

/// Encoded size of key, value and headers of a record (Java's `DefaultRecord.sizeOf(key, value,
/// headers)`): everything in the record body after `offsetDelta`.
#[inline]
pub(super) fn key_value_headers_size(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
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
