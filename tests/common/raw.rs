//! Hand-made record batches sent verbatim over a raw Produce request.

use super::*;

/// (key, value) of a record for [`encode_batch`].
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes `records` (key, value) as one uncompressed v2 record batch with kafka-protocol.
pub fn encode_batch(records: &[KeyValue<'_>]) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: k.map(bytes::Bytes::copy_from_slice),
            value: v.map(bytes::Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Sends one Produce request (v7, acks=-1) carrying `batch` verbatim for `topic`/`partition` over
/// a fresh connection to `bootstrap` (a single `host:port`) and returns the partition's
/// `(error_code, base_offset)`. For feeding brokers hand-made (e.g. deliberately corrupt) batches.
pub fn produce_raw_batch(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    batch: bytes::Bytes,
) -> (i16, i64) {
    use bytes::{Buf, BufMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use std::io::Write;

    const VERSION: i16 = 7;
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("actix-kafka-test-raw")));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let mut body = bytes::BytesMut::new();
    header.encode(&mut body, 1).unwrap();
    request.encode(&mut body, VERSION).unwrap();
    let mut frame = bytes::BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);

    let mut stream =
        TcpStream::connect(bootstrap).unwrap_or_else(|e| panic!("connect {bootstrap}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .expect("read Produce response size");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut resp).expect("read Produce response");
    let mut resp = bytes::Bytes::from(resp);
    let rh = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(rh.correlation_id, 1);
    let pr = ProduceResponse::decode(&mut resp, VERSION).unwrap();
    assert!(
        !resp.has_remaining() || resp.remaining() < 8,
        "trailing bytes in Produce response"
    );
    let p = &pr.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}
