//! Reading back a RecordBatch v2 that this producer built, to split it when the broker answers
//! `MESSAGE_TOO_LARGE` (the Java client's `splitAndReenqueue`).
//!
//! Only the rare path uses this; every length is checked against the buffer (the bytes are
//! ours, but a bug must not become a panic). Header order and duplicate header keys are kept.

use crate::protocol::record_batch::{Compression, RECORD_BATCH_OVERHEAD};
use crate::record::Header;
use bytes::Bytes;
#[cfg(any(feature = "gzip", feature = "lz4"))]
use std::io::Read;

/// One record read back from a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Absolute timestamp (base timestamp + delta), ms.
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Bytes>,
    /// Value, `None` when null.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varlong(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    }
    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }
    fn bytes(&mut self, len: i32) -> Option<Option<&'a [u8]>> {
        if len < 0 {
            return Some(None);
        }
        let end = self.pos.checked_add(len as usize)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(Some(s))
    }
}

/// Decompresses the records section of a batch with the codec in its attributes.
fn decompress(compression: Compression, data: &[u8]) -> Option<Vec<u8>> {
    match compression {
        Compression::None => Some(data.to_vec()),
        #[cfg(feature = "gzip")]
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        }
        #[cfg(feature = "snappy")]
        Compression::Snappy => snap::raw::Decoder::new().decompress_vec(data).ok(),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            let mut out = Vec::new();
            lz4_flex::frame::FrameDecoder::new(data)
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::stream::decode_all(data).ok(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Reads every record of an encoded v2 batch. `None` if the bytes are not a well-formed batch.
pub fn decode_batch(batch: &[u8]) -> Option<Vec<DecodedRecord>> {
    if batch.len() < RECORD_BATCH_OVERHEAD || batch[16] != 2 {
        return None;
    }
    let attributes = i16::from_be_bytes([batch[21], batch[22]]);
    let base_timestamp = i64::from_be_bytes(batch[27..35].try_into().ok()?);
    let count = i32::from_be_bytes(batch[57..61].try_into().ok()?);
    let compression = match attributes & 0x07 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    };
    let section = decompress(compression, &batch[RECORD_BATCH_OVERHEAD..])?;
    let section = Bytes::from(section);
    let mut c = Cursor {
        buf: &section,
        pos: 0,
    };
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(section.len()));
    let slice = |s: &[u8]| section.slice_ref(s);
    for _ in 0..count {
        let len = c.varint()?;
        let start = c.pos;
        c.pos += 1; // attributes
        let ts_delta = c.varlong()?;
        let _offset_delta = c.varint()?;
        let key_len = c.varint()?;
        let key = c.bytes(key_len)?.map(slice);
        let value_len = c.varint()?;
        let value = c.bytes(value_len)?.map(slice);
        let n_headers = c.varint()?;
        let mut headers = Vec::with_capacity(usize::try_from(n_headers).ok()?.min(64));
        for _ in 0..n_headers {
            let kl = c.varint()?;
            let k = c.bytes(kl)??;
            let vl = c.varint()?;
            let v = c.bytes(vl)?.map(slice);
            headers.push(Header {
                key: String::from_utf8(k.to_vec()).ok()?,
                value: v,
            });
        }
        if c.pos != start + usize::try_from(len).ok()? {
            return None;
        }
        out.push(DecodedRecord {
            timestamp: base_timestamp + ts_delta,
            key,
            value,
            headers,
        });
    }
    Some(out)
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
    use crate::protocol::record_batch::RecordBatchBuilder;

    #[test]
    fn round_trip_with_duplicate_headers_and_nulls() {
        for compression in [Compression::None, Compression::Gzip] {
            let mut b = RecordBatchBuilder::new(1 << 16, compression, None);
            let headers = vec![Header::new("h", "1"), Header::new("h", "2")];
            assert!(b.try_append(1000, Some(b"k1"), Some(b"v1"), &headers, 1 << 16));
            assert!(b.try_append(990, None, None, &[], 1 << 16));
            assert!(b.try_append(2000, Some(b""), Some(&[7u8; 300]), &[], 1 << 16));
            let bytes = b.build(-1, -1, -1).unwrap();
            let recs = decode_batch(&bytes).expect("decodes");
            assert_eq!(recs.len(), 3);
            assert_eq!(recs[0].timestamp, 1000);
            assert_eq!(recs[0].headers, headers);
            assert_eq!(recs[1].timestamp, 990);
            assert_eq!((recs[1].key.clone(), recs[1].value.clone()), (None, None));
            assert_eq!(recs[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(recs[2].value.as_deref(), Some(&[7u8; 300][..]));
        }
    }

    #[test]
    fn garbage_is_none_not_panic() {
        assert!(decode_batch(&[0u8; 10]).is_none());
        let mut b = RecordBatchBuilder::new(1024, Compression::None, None);
        assert!(b.try_append(1, Some(b"k"), Some(b"v"), &[], 1024));
        let mut bytes = b.build(-1, -1, -1).unwrap().to_vec();
        let n = bytes.len();
        bytes[n - 3] = 0x7f; // corrupt a length
        let _ = decode_batch(&bytes);
        bytes.truncate(n - 2);
        assert!(decode_batch(&bytes).is_none());
    }
}
