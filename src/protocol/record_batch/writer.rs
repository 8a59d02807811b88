//! The one unsafe part of the hot path: records written straight into a buffer's spare
//! capacity. Every `unsafe` block carries its SAFETY argument.

use super::*;
use std::mem::MaybeUninit;
/// Writes sequentially into uninitialised spare capacity. Every write goes at `pos` and
/// advances it by exactly the bytes written, so `dst[..pos]` is always initialised.
pub(super) struct SpareWriter<'a> {
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

/// Appends one record to `buf`: its length prefix (`body` bytes follow it, `total` bytes in
/// all, as [`super::RecordBatchBuilder::try_append`] computed them), attributes, timestamp and
/// offset deltas, key, value and headers, written once into the spare capacity.
///
/// # Panics
/// If `total` is not the record's encoded size (the size computation and the writer out of
/// sync): never past the reserved room, and never with uninitialised bytes exposed.
#[inline(always)]
pub(super) fn write_record(
    buf: &mut BytesMut,
    total: usize,
    body: usize,
    timestamp_delta: i64,
    offset_delta: i32,
    (key, value, headers): (Option<&[u8]>, Option<&[u8]>, &[Header]),
) {
    buf.reserve(total);
    let len = buf.len();
    let mut w = SpareWriter {
        dst: &mut buf.spare_capacity_mut()[..total],
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
    unsafe { buf.set_len(len + total) };
}
