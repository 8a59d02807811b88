//! Request/response framing on top of `kafka-protocol` (protocol guide, "Protocol Primitives"
//! and "Common Request and Response Structure"): a 4-byte big-endian size, then the header,
//! then the body.
//!
//! Lengths read from the wire are never trusted: frames are capped at [`MAX_RESPONSE_SIZE`] by the
//! codec, and decoding errors become [`crate::error::ConnectionError::Malformed`].

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;

/// Largest response frame accepted, in bytes (a hostile length prefix beyond it resets the
/// connection).
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024 * 1024;

/// The API versions this client can speak: `(api key, min, max)` (the table with the reason
/// for each maximum is in ARCHITECTURE.md, "Protocol versions").
/// Produce starts at v3 (magic 2 only, KIP-896) and stops at v11: v12 is the transaction
/// protocol 2 (KIP-890), v13 names topics by id (KIP-516).
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    // v13: a top-level error code (KIP-1102's REBOOTSTRAP_REQUIRED).
    (ApiKey::Metadata, 1, 13),
    // v4 is v3 with KAFKA-17011's fix (a supported feature may have min version 0); v5 is
    // beyond kafka-protocol 0.18.
    (ApiKey::ApiVersions, 0, 4),
    // v5 is v4 for this producer (its new error codes are KIP-890's, mapped in the error
    // table); v6 is KIP-939's two-phase commit.
    (ApiKey::InitProducerId, 0, 5),
    // Transactions (KIP-98, KIP-447), the classic protocol: explicit AddPartitionsToTxn (v4+ are
    // broker-to-broker), EndTxn up to v4 (v5 is transaction protocol 2, KIP-890), TxnOffsetCommit
    // v3+ carry the group generation and member (KIP-447). FindCoordinator up to v3 (v4 batches
    // keys).
    (ApiKey::FindCoordinator, 1, 3),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    // v1: SASL tokens in SaslAuthenticate requests (KIP-152); v0's raw tokens are not spoken.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Versions negotiated with one broker: for each API the highest version both sides support.
#[derive(Clone, Debug, Default)]
pub struct NegotiatedVersions {
    versions: HashMap<i16, i16>,
}

impl NegotiatedVersions {
    /// Intersects the broker's ApiVersions answer `(key, min, max)` with [`CLIENT_VERSIONS`].
    pub fn negotiate(broker: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        let broker: HashMap<i16, (i16, i16)> =
            broker.into_iter().map(|(k, a, b)| (k, (a, b))).collect();
        let mut versions = HashMap::new();
        for (key, min, max) in CLIENT_VERSIONS {
            if let Some((bmin, bmax)) = broker.get(&(*key as i16)) {
                let lo = (*min).max(*bmin);
                let hi = (*max).min(*bmax);
                if lo <= hi {
                    versions.insert(*key as i16, hi);
                }
            }
        }
        NegotiatedVersions { versions }
    }

    /// The version to use for `key`, `None` if the broker and we share none.
    pub fn get(&self, key: i16) -> Option<i16> {
        self.versions.get(&key).copied()
    }
}

/// Encodes a full frame (size prefix, header v1/v2, body) for `request`.
///
/// # Errors
/// The encoder's message when a field cannot be encoded at `version`.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, String> {
    encode_into(request, version, correlation_id, client_id, |size| {
        BytesMut::with_capacity(4 + size)
    })
    .map(BytesMut::freeze)
}

/// Writes the size prefix, header v1/v2 and body of `request` into the buffer `new_buf` makes
/// for a frame of that many bytes (after the prefix).
fn encode_into<R: Request, B: kafka_protocol::protocol::buf::ByteBufMut>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    new_buf: impl FnOnce(usize) -> B,
) -> Result<B, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| request.compute_size(version).map(|b| h + b))
        .map_err(|e| e.to_string())?;
    let mut buf = new_buf(size);
    buf.put_u32(size as u32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    request
        .encode(&mut buf, version)
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Payloads at least this long are referenced, not copied, by [`encode_request_segments`].
const SEGMENT_MIN: usize = 1024;

/// A request frame as segments for one vectored write: the encoded header and fields, with the
/// large payloads (Produce's record batches) as references to their own buffers.
pub type Segments = Vec<Bytes>;

/// A `BufMut` that encodes into a `BytesMut` but takes each of `large` (when the encoder puts
/// exactly that slice) as a segment of its own instead of copying it. Only forward writes are
/// supported; an encoder that seeks back (gaps: none of the request encoders used here) marks
/// it `failed`, and the caller falls back to [`encode_request`].
struct SegmentBuf<'a> {
    large: &'a [Bytes],
    done: Segments,
    /// Bytes in `done`.
    done_len: usize,
    cur: BytesMut,
    failed: bool,
    /// Where `large` is expected next (they are encoded in order).
    next: usize,
    /// What `range` hands out after a failure (its contents are thrown away).
    scratch: Vec<u8>,
}

impl SegmentBuf<'_> {
    fn flush_cur(&mut self) {
        if !self.cur.is_empty() {
            let chunk = self.cur.split().freeze();
            self.done_len += chunk.len();
            self.done.push(chunk);
        }
    }
}

// SAFETY: every method forwards to the `BytesMut` being written (`cur`), which upholds
// `BufMut`'s contract itself; `put_slice` only adds whole segments besides.
unsafe impl bytes::BufMut for SegmentBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `cur`'s chunk (BufMut's contract).
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SEGMENT_MIN {
            let same = |b: &Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
            // The next one in order, else any (a linear search only off the usual path).
            let found = match self.large.get(self.next) {
                Some(b) if same(b) => Some(self.next),
                _ => self.large.iter().position(same),
            };
            if let Some(b) = found.and_then(|i| self.large.get(i)) {
                self.next = found.map_or(0, |i| i + 1);
                self.flush_cur();
                self.done_len += b.len();
                self.done.push(b.clone());
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl kafka_protocol::protocol::buf::ByteBufMut for SegmentBuf<'_> {
    fn offset(&self) -> usize {
        self.done_len + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.done_len) {
            Some(at) if at >= self.cur.len() => self.cur.resize(at, 0),
            _ => self.failed = true,
        }
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let (start, end) = (
            r.start.wrapping_sub(self.done_len),
            r.end.wrapping_sub(self.done_len),
        );
        if r.start >= self.done_len && self.cur.get(start..end).is_some() {
            // In bounds: checked just above.
            return &mut self.cur[start..end];
        }
        self.failed = true;
        self.scratch.clear();
        self.scratch.resize(r.len(), 0);
        &mut self.scratch
    }
}

/// [`encode_request`] as [`Segments`]: each of `large` that the request's encoding contains
/// (by identity: the same buffer) is referenced instead of copied into the frame. The
/// segments concatenated are byte for byte what [`encode_request`] returns.
///
/// # Errors
/// As [`encode_request`].
pub fn encode_request_segments<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    large: &[Bytes],
) -> Result<Segments, String> {
    if large.is_empty() {
        return encode_request(request, version, correlation_id, client_id).map(|f| vec![f]);
    }
    let large_len: usize = large.iter().map(Bytes::len).sum();
    let mut buf = encode_into(request, version, correlation_id, client_id, |size| {
        SegmentBuf {
            large,
            done: Vec::with_capacity(2 * large.len() + 1),
            done_len: 0,
            cur: BytesMut::with_capacity(4 + size.saturating_sub(large_len)),
            failed: false,
            next: 0,
            scratch: Vec::new(),
        }
    })?;
    if buf.failed {
        return encode_request(request, version, correlation_id, client_id).map(|f| vec![f]);
    }
    buf.flush_cur();
    Ok(buf.done)
}

/// Reads the correlation id at the start of a response frame (size prefix already removed).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes a response frame (size prefix removed) of request type `R` at `version`.
///
/// Trailing bytes after the body are ignored (logged): newer brokers may append fields an
/// older schema does not know, and librdkafka's mock cluster adds one to Metadata v12.
///
/// # Errors
/// A description of what did not decode.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<R::Response, String> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    kafka_protocol::messages::ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("response header: {e}"))?;
    crate::protocol::guard::check_body(R::KEY, version, &frame)?;
    let body = <R::Response as Decodable>::decode(&mut frame, version)
        .map_err(|e| format!("response body: {e}"))?;
    if frame.has_remaining() {
        tracing::debug!(
            api_key = R::KEY,
            version,
            trailing = frame.remaining(),
            "trailing bytes after response ignored"
        );
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn segmented_produce_frames_equal_the_copied_ones_and_reference_the_batches() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, TopicName};
        let batches: Vec<Bytes> = (0..3u8)
            .map(|i| Bytes::from(vec![i; 3000 + i as usize]))
            .collect();
        let small = Bytes::from_static(b"tiny batch");
        let topic = |name: &str, bs: &[Bytes]| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_partition_data(
                    bs.iter()
                        .enumerate()
                        .map(|(i, b)| {
                            PartitionProduceData::default()
                                .with_index(i as i32)
                                .with_records(Some(b.clone()))
                        })
                        .collect(),
                )
        };
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic("a", &batches[..2]),
                topic("b", &[batches[2].clone(), small.clone()]),
            ]);
        let client = StrBytes::from_static_str("c");
        let mut large = batches.clone();
        large.push(small);
        for version in 3..=11 {
            let whole = encode_request(&req, version, 7, &client).unwrap();
            let segs = encode_request_segments(&req, version, 7, &client, &large).unwrap();
            assert_eq!(segs.concat(), whole.to_vec(), "v{version}");
            for b in &batches {
                assert!(
                    segs.iter().any(|s| s.as_ptr() == b.as_ptr()),
                    "v{version}: a batch is referenced, not copied"
                );
            }
        }
    }

    #[test]
    fn negotiation_takes_highest_common_version() {
        let v = NegotiatedVersions::negotiate([(0, 0, 9), (3, 0, 20), (18, 0, 2)]);
        assert_eq!(v.get(ApiKey::Produce as i16), Some(9));
        assert_eq!(v.get(ApiKey::Metadata as i16), Some(13));
        assert_eq!(v.get(ApiKey::ApiVersions as i16), Some(2));
        assert_eq!(v.get(ApiKey::InitProducerId as i16), None);
        // A broker that only speaks Produce v0-2 (pre KIP-896) shares nothing with us.
        let old = NegotiatedVersions::negotiate([(0, 0, 2)]);
        assert_eq!(old.get(ApiKey::Produce as i16), None);
    }

    /// What Apache Kafka 4.4 advertises (`BrokerApiVersionsCommand` against scripts/kafka.sh)
    /// and what we use of it: the table of ARCHITECTURE.md, "Protocol versions".
    #[test]
    fn the_versions_used_with_kafka_4_4() {
        let advertised = [
            (ApiKey::Produce, 13),
            (ApiKey::Metadata, 13),
            (ApiKey::ApiVersions, 5),
            (ApiKey::InitProducerId, 5),
            (ApiKey::FindCoordinator, 6),
            (ApiKey::AddPartitionsToTxn, 5),
            (ApiKey::AddOffsetsToTxn, 4),
            (ApiKey::EndTxn, 5),
            (ApiKey::TxnOffsetCommit, 6),
            (ApiKey::SaslHandshake, 1),
            (ApiKey::SaslAuthenticate, 2),
        ];
        let v =
            NegotiatedVersions::negotiate(advertised.iter().map(|(k, max)| (*k as i16, 0, *max)));
        let used: Vec<(ApiKey, Option<i16>)> = advertised
            .iter()
            .map(|(k, _)| (*k, v.get(*k as i16)))
            .collect();
        assert_eq!(
            used,
            [
                (ApiKey::Produce, Some(11)),
                (ApiKey::Metadata, Some(13)),
                (ApiKey::ApiVersions, Some(4)),
                (ApiKey::InitProducerId, Some(5)),
                (ApiKey::FindCoordinator, Some(3)),
                (ApiKey::AddPartitionsToTxn, Some(3)),
                (ApiKey::AddOffsetsToTxn, Some(4)),
                (ApiKey::EndTxn, Some(4)),
                (ApiKey::TxnOffsetCommit, Some(4)),
                (ApiKey::SaslHandshake, Some(1)),
                (ApiKey::SaslAuthenticate, Some(2)),
            ]
        );
    }

    #[test]
    fn frames_carry_size_header_and_correlation_id() {
        let req = MetadataRequest::default();
        let frame = encode_request(&req, 9, 77, &StrBytes::from_static_str("c")).unwrap();
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let mut body = frame.slice(4..);
        let header = RequestHeader::decode(&mut body, MetadataRequest::header_version(9)).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.correlation_id, 77);
        let _ = ApiVersionsRequest::default();
    }

    #[test]
    fn truncated_and_garbage_responses_are_errors() {
        use kafka_protocol::messages::MetadataRequest;
        assert!(decode_response::<MetadataRequest>(Bytes::from_static(&[0, 0, 0, 1]), 9).is_err());
        assert!(decode_response::<MetadataRequest>(
            Bytes::from_static(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff]),
            9
        )
        .is_err());
        assert_eq!(peek_correlation_id(&[0, 0, 1, 0]), Some(256));
        assert_eq!(peek_correlation_id(&[0, 0]), None);
    }
}
