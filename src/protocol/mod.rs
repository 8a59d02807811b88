//! Wire protocol: our RecordBatch v2 builder (the hot path) plus framing and version
//! negotiation on top of the `kafka-protocol` crate's message schemas.
pub mod decode;
pub mod frame;
pub mod guard;
pub mod record_batch;
