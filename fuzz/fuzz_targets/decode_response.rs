//! Feeds arbitrary bytes to the response decoder the producer runs on every frame a broker
//! sends (`actix_kafka::protocol::frame::decode_response`, size prefix already removed), for
//! each API and version the producer speaks.
//!
//! Input layout: byte 0 picks the API, byte 1 the version (wrapped into the API's range), the
//! rest is the frame (response header + body). The decoder must return `Ok` or `Err`: a panic,
//! an abort or an allocation beyond `-rss_limit_mb` is a finding.
#![no_main]

use actix_kafka::protocol::frame::decode_response;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, InitProducerIdRequest, MetadataRequest, ProduceRequest,
};
use libfuzzer_sys::fuzz_target;

/// (min, max) version of each API in `actix_kafka::protocol::frame::CLIENT_VERSIONS`.
const PRODUCE: (i16, i16) = (3, 11);
const METADATA: (i16, i16) = (1, 12);
const API_VERSIONS: (i16, i16) = (0, 3);
const INIT_PRODUCER_ID: (i16, i16) = (0, 4);

fn pick(range: (i16, i16), b: u8) -> i16 {
    range.0 + (b as i16) % (range.1 - range.0 + 1)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let frame = Bytes::copy_from_slice(&data[2..]);
    match data[0] % 4 {
        0 => {
            let _ = decode_response::<ProduceRequest>(frame, pick(PRODUCE, data[1]));
        }
        1 => {
            let _ = decode_response::<MetadataRequest>(frame, pick(METADATA, data[1]));
        }
        2 => {
            let _ = decode_response::<ApiVersionsRequest>(frame, pick(API_VERSIONS, data[1]));
        }
        _ => {
            let _ =
                decode_response::<InitProducerIdRequest>(frame, pick(INIT_PRODUCER_ID, data[1]));
        }
    }
});
