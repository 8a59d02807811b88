//! Serializers: turn typed keys and values into the bytes a [`ProducerRecord`] carries.
//!
//! Shapes follow Java's `org.apache.kafka.common.serialization`: [`StringSerializer`] (UTF-8),
//! [`IntegerSerializer`] (4 bytes big-endian), [`LongSerializer`] (8 bytes big-endian),
//! [`BytesSerializer`] (as is). Implement [`Serializer`] for your own types.

use crate::error::ProduceError;
use crate::record::ProducerRecord;
use bytes::Bytes;
use std::sync::Arc;

/// Converts a `T` into the bytes written as a record key or value.
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// Serializes `data` for `topic`.
    ///
    /// # Errors
    /// [`ProduceError::Serialization`] when `data` cannot be encoded.
    fn serialize(&self, topic: &str, data: &T) -> Result<Bytes, ProduceError>;
}

/// UTF-8 bytes of a string (Java's `StringSerializer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StringSerializer;
impl Serializer<str> for StringSerializer {
    fn serialize(&self, _topic: &str, data: &str) -> Result<Bytes, ProduceError> {
        Ok(Bytes::copy_from_slice(data.as_bytes()))
    }
}
impl Serializer<String> for StringSerializer {
    fn serialize(&self, _topic: &str, data: &String) -> Result<Bytes, ProduceError> {
        Ok(Bytes::copy_from_slice(data.as_bytes()))
    }
}

/// 4-byte big-endian `i32` (Java's `IntegerSerializer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct IntegerSerializer;
impl Serializer<i32> for IntegerSerializer {
    fn serialize(&self, _topic: &str, data: &i32) -> Result<Bytes, ProduceError> {
        Ok(Bytes::copy_from_slice(&data.to_be_bytes()))
    }
}

/// 8-byte big-endian `i64` (Java's `LongSerializer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LongSerializer;
impl Serializer<i64> for LongSerializer {
    fn serialize(&self, _topic: &str, data: &i64) -> Result<Bytes, ProduceError> {
        Ok(Bytes::copy_from_slice(&data.to_be_bytes()))
    }
}

/// Bytes as they are (Java's `ByteArraySerializer`); a `Bytes` clone, no copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesSerializer;
impl Serializer<Bytes> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &Bytes) -> Result<Bytes, ProduceError> {
        Ok(data.clone())
    }
}
impl Serializer<[u8]> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &[u8]) -> Result<Bytes, ProduceError> {
        Ok(Bytes::copy_from_slice(data))
    }
}

impl ProducerRecord {
    /// Builds a record from a typed key and value with the given serializers.
    ///
    /// # Errors
    /// The serializer's [`ProduceError::Serialization`].
    pub fn serialized<K: ?Sized, V: ?Sized>(
        topic: impl Into<Arc<str>>,
        key: Option<&K>,
        key_serializer: &dyn Serializer<K>,
        value: Option<&V>,
        value_serializer: &dyn Serializer<V>,
    ) -> Result<ProducerRecord, ProduceError> {
        let topic: Arc<str> = topic.into();
        let key = key
            .map(|k| key_serializer.serialize(&topic, k))
            .transpose()?;
        let value = value
            .map(|v| value_serializer.serialize(&topic, v))
            .transpose()?;
        Ok(ProducerRecord {
            topic,
            partition: None,
            key,
            value,
            headers: Vec::new(),
            timestamp: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_compatible_encodings() {
        assert_eq!(
            IntegerSerializer.serialize("t", &258).unwrap().as_ref(),
            &[0, 0, 1, 2]
        );
        assert_eq!(
            IntegerSerializer.serialize("t", &-1).unwrap().as_ref(),
            &[0xff; 4]
        );
        assert_eq!(
            LongSerializer.serialize("t", &1).unwrap().as_ref(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            StringSerializer
                .serialize("t", "Message_1")
                .unwrap()
                .as_ref(),
            b"Message_1"
        );
        let r = ProducerRecord::serialized(
            "t",
            Some(&7),
            &IntegerSerializer,
            Some("v"),
            &StringSerializer,
        )
        .unwrap();
        assert_eq!(r.key.unwrap().as_ref(), &[0, 0, 0, 7]);
        assert_eq!(r.value.unwrap().as_ref(), b"v");
    }
}
