//! Key and value serializers, mirroring Java's `org.apache.kafka.common.serialization`.
//!
//! A serializer turns a typed key or value into the bytes that go on the wire, or into `None`
//! for a null (as Java's serializers return `null` for `null` input; a null value is a
//! tombstone on compacted topics, a null key is partitioned stickily).
//!
//! The partitioner hashes the *serialized* key, never the typed value. That is what makes
//! placement interoperable: an `i32` key 42 serialized by [`IntegerSerializer`] is the
//! big-endian bytes `[0, 0, 0, 42]`, exactly what Java's `IntegerSerializer` produces, so
//! [`crate::partitioner::partition_for_key`] puts it where a Java producer puts `Integer` 42.
//! Serializing the same key with another encoding (little-endian, text) would send it to a
//! different partition and break per-key ordering across clients.
//!
//! Every serializer also accepts `&T` and `Option<T>` where it accepts `T`; `None` serializes
//! to null. ([`JsonSerializer`] is the exception: serde renders `None` as the JSON text
//! `null`, which is not a Kafka null.)

use bytes::Bytes;

/// Converts a `T` into the bytes of a record key or value.
///
/// `Send + Sync` so that one serializer can be shared by every task producing to a topic.
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// Serializes `data` for `topic`; `Ok(None)` is a null key or value.
    fn serialize(&self, topic: &str, data: &T) -> Result<Option<Bytes>, SerializeError>;
}

/// A serializer refused its input.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct SerializeError {
    /// What went wrong.
    pub message: String,
    /// The underlying error, if any (e.g. from serde).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl SerializeError {
    /// An error with a message and no underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message wrapping the error that caused it.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Raw bytes, unchanged (Java's `ByteArraySerializer` / `BytesSerializer`). [`Bytes`] input is
/// reference-counted, not copied.
///
/// The serializers here that copy borrowed data copy it with [`crate::arena::copy`]: small
/// keys and values share a chunk instead of an allocation each.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerializer;

impl Serializer<[u8]> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &[u8]) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(crate::arena::copy(data)))
    }
}

impl<const N: usize> Serializer<[u8; N]> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &[u8; N]) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(crate::arena::copy(data)))
    }
}

impl Serializer<Vec<u8>> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &Vec<u8>) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(crate::arena::copy(data)))
    }
}

impl Serializer<Bytes> for BytesSerializer {
    fn serialize(&self, _topic: &str, data: &Bytes) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(data.clone()))
    }
}

/// UTF-8 text (Java's `StringSerializer` with its default encoding).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerializer;

impl Serializer<str> for StringSerializer {
    fn serialize(&self, _topic: &str, data: &str) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(crate::arena::copy(data.as_bytes())))
    }
}

impl Serializer<String> for StringSerializer {
    fn serialize(&self, _topic: &str, data: &String) -> Result<Option<Bytes>, SerializeError> {
        Ok(Some(crate::arena::copy(data.as_bytes())))
    }
}

macro_rules! big_endian_serializer {
    ($(#[$doc:meta])* $name:ident, $ty:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serializer<$ty> for $name {
            fn serialize(&self, _topic: &str, data: &$ty) -> Result<Option<Bytes>, SerializeError> {
                Ok(Some(crate::arena::copy(&data.to_be_bytes())))
            }
        }
    };
}

big_endian_serializer!(
    /// `i32` as 4 big-endian bytes (Java's `IntegerSerializer`).
    IntegerSerializer,
    i32
);
big_endian_serializer!(
    /// `i64` as 8 big-endian bytes (Java's `LongSerializer`).
    LongSerializer,
    i64
);
big_endian_serializer!(
    /// `i16` as 2 big-endian bytes (Java's `ShortSerializer`).
    ShortSerializer,
    i16
);
big_endian_serializer!(
    /// `f32` as its 4 IEEE 754 bytes, big-endian (Java's `FloatSerializer`).
    FloatSerializer,
    f32
);
big_endian_serializer!(
    /// `f64` as its 8 IEEE 754 bytes, big-endian (Java's `DoubleSerializer`).
    DoubleSerializer,
    f64
);

// `&T` and `Option<T>` for every non-JSON serializer: `None` is null, as Java serializes a
// `null` reference. (A blanket impl over all serializers would overlap JsonSerializer's.)
macro_rules! ref_and_option {
    ($($name:ident),*) => {$(
        impl<T: ?Sized> Serializer<&T> for $name
        where
            $name: Serializer<T>,
        {
            fn serialize(&self, topic: &str, data: &&T) -> Result<Option<Bytes>, SerializeError> {
                <$name as Serializer<T>>::serialize(self, topic, *data)
            }
        }

        impl<T> Serializer<Option<T>> for $name
        where
            $name: Serializer<T>,
        {
            fn serialize(
                &self,
                topic: &str,
                data: &Option<T>,
            ) -> Result<Option<Bytes>, SerializeError> {
                match data {
                    Some(data) => <$name as Serializer<T>>::serialize(self, topic, data),
                    None => Ok(None),
                }
            }
        }
    )*};
}

ref_and_option!(
    BytesSerializer,
    StringSerializer,
    IntegerSerializer,
    LongSerializer,
    ShortSerializer,
    FloatSerializer,
    DoubleSerializer
);

/// Any `serde::Serialize` value as compact JSON text (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

#[cfg(feature = "json")]
impl<T: serde::Serialize + ?Sized> Serializer<T> for JsonSerializer {
    fn serialize(&self, _topic: &str, data: &T) -> Result<Option<Bytes>, SerializeError> {
        serde_json::to_vec(data)
            .map(|json| Some(Bytes::from(json)))
            .map_err(|e| SerializeError::with_source(format!("JSON serialization failed: {e}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::{murmur2, partition_for_key};

    fn bytes<S: Serializer<T>, T: ?Sized>(s: &S, data: &T) -> Vec<u8> {
        s.serialize("t", data).unwrap().unwrap().to_vec()
    }

    #[test]
    fn bytes_serializer() {
        assert_eq!(bytes(&BytesSerializer, &b"abc"[..]), b"abc");
        assert_eq!(bytes(&BytesSerializer, b"abc"), b"abc");
        assert_eq!(bytes(&BytesSerializer, &vec![1u8, 2, 3]), [1, 2, 3]);
        assert_eq!(bytes(&BytesSerializer, &b""[..]), b"");

        let original = Bytes::from_static(b"shared");
        let out = BytesSerializer.serialize("t", &original).unwrap().unwrap();
        assert_eq!(out, original);
        assert_eq!(out.as_ptr(), original.as_ptr(), "Bytes must not be copied");
    }

    #[test]
    fn string_serializer() {
        assert_eq!(bytes(&StringSerializer, "héllo"), "héllo".as_bytes());
        assert_eq!(bytes(&StringSerializer, &String::from("x")), b"x");
        assert_eq!(bytes(&StringSerializer, &"borrowed"), b"borrowed");
    }

    #[test]
    fn numeric_serializers_are_big_endian() {
        assert_eq!(bytes(&IntegerSerializer, &42), [0, 0, 0, 42]);
        assert_eq!(bytes(&IntegerSerializer, &-1), [0xff; 4]);
        assert_eq!(
            bytes(&LongSerializer, &0x0102_0304_0506_0708),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(bytes(&ShortSerializer, &0x0102), [1, 2]);
        assert_eq!(bytes(&FloatSerializer, &1.0f32), [0x3f, 0x80, 0, 0]);
        assert_eq!(
            bytes(&DoubleSerializer, &1.0f64),
            [0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn option_none_is_null() {
        assert!(IntegerSerializer
            .serialize("t", &None::<i32>)
            .unwrap()
            .is_none());
        assert!(StringSerializer
            .serialize("t", &None::<&str>)
            .unwrap()
            .is_none());
        assert_eq!(bytes(&StringSerializer, &Some("a")), b"a");
        assert_eq!(
            bytes(&LongSerializer, &Some(1i64)),
            [0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn integer_key_partitions_like_java() {
        let key = IntegerSerializer.serialize("t", &42).unwrap().unwrap();
        // Java 4.1.2: `Utils.toPositive(Utils.murmur2(new IntegerSerializer().serialize("t",
        // 42))) % n` (jshell with the kafka-clients jar); murmur2 is 1606757304.
        assert_eq!(murmur2(&key), 1_606_757_304);
        for (n, java) in [(1, 0), (3, 0), (7, 5), (12, 0), (100, 4)] {
            assert_eq!(partition_for_key(&key, n), java, "{n} partitions");
        }
    }

    #[test]
    fn error_displays_message() {
        let e = SerializeError::new("bad input");
        assert_eq!(e.to_string(), "bad input");
        assert!(std::error::Error::source(&e).is_none());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_serializer() {
        #[derive(serde::Serialize)]
        struct Order<'a> {
            id: u32,
            item: &'a str,
        }
        let out = bytes(&JsonSerializer, &Order { id: 7, item: "tea" });
        assert_eq!(out, br#"{"id":7,"item":"tea"}"#);
        assert_eq!(bytes(&JsonSerializer, "s"), br#""s""#);

        // A map with non-string keys cannot be JSON: an error, with its source.
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        let err = JsonSerializer.serialize("t", &bad).unwrap_err();
        assert!(err.message.contains("JSON"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
