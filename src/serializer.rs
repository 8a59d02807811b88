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

/// JSON via `serde_json` (feature `serde_json`): any `T: Serialize`.
#[cfg(feature = "serde_json")]
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonSerializer;

#[cfg(feature = "serde_json")]
impl<T: serde::Serialize + ?Sized> Serializer<T> for JsonSerializer {
    fn serialize(&self, _topic: &str, data: &T) -> Result<Bytes, ProduceError> {
        serde_json::to_vec(data)
            .map(Bytes::from)
            .map_err(|e| ProduceError::Serialization(e.to_string().into()))
    }
}

/// A producer of typed records (Java's `KafkaProducer<K, V>`): the serializers are given once,
/// and `send(topic, key, value)` takes typed keys and values.
///
/// ```no_run
/// # async fn run() -> Result<(), actix_kafka::ProduceError> {
/// use actix_kafka::serializer::{IntegerSerializer, StringSerializer, TypedProducer};
/// use actix_kafka::{Producer, ProducerConfig};
/// let producer = Producer::start(ProducerConfig::builder().bootstrap_servers(["127.0.0.1:9092"]).build()?).await?;
/// let typed: TypedProducer<i32, String> = TypedProducer::new(producer, IntegerSerializer, StringSerializer);
/// let md = typed.send("numbers", Some(&7), &"seven".to_string()).await?.await?;
/// # Ok(()) }
/// ```
pub struct TypedProducer<K: ?Sized, V: ?Sized> {
    producer: crate::Producer,
    key: Arc<dyn Serializer<K>>,
    value: Arc<dyn Serializer<V>>,
}

impl<K: ?Sized, V: ?Sized> Clone for TypedProducer<K, V> {
    fn clone(&self) -> Self {
        TypedProducer {
            producer: self.producer.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K: ?Sized, V: ?Sized> TypedProducer<K, V> {
    /// Wraps `producer` with a key and a value serializer.
    pub fn new(
        producer: crate::Producer,
        key: impl Serializer<K> + 'static,
        value: impl Serializer<V> + 'static,
    ) -> Self {
        TypedProducer {
            producer,
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }

    /// The untyped producer underneath (flush, close, metrics, ...).
    pub fn producer(&self) -> &crate::Producer {
        &self.producer
    }

    /// Serializes and sends (see [`crate::Producer::send`]); `key` `None` is a null key.
    ///
    /// # Errors
    /// [`ProduceError::Serialization`], then the errors of [`crate::Producer::send`].
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&K>,
        value: &V,
    ) -> Result<crate::DeliveryFuture, ProduceError> {
        let record = ProducerRecord::serialized(topic, key, &*self.key, Some(value), &*self.value)?;
        self.producer.send(record).await
    }

    /// Serializes, sends and waits for the delivery.
    ///
    /// # Errors
    /// As [`send`](Self::send), then the delivery's errors.
    pub async fn send_and_wait(
        &self,
        topic: &str,
        key: Option<&K>,
        value: &V,
    ) -> Result<crate::RecordMetadata, ProduceError> {
        self.send(topic, key, value).await?.await
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
