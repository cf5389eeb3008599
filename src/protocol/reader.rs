//! A bounded cursor over a Kafka response body.
//!
//! The `kafka-protocol` crate's decoders call `Vec::with_capacity(n)` with `n` taken straight
//! from the wire, so one corrupt count can ask for gigabytes and abort the process. A producer
//! reads bytes from the network and must survive any of them, so every length and count read
//! here is checked against the input that is actually left before it is used, and nothing is
//! preallocated beyond what that input could possibly hold.
//!
//! Primitive encodings follow the Kafka protocol guide (<https://kafka.apache.org/protocol>);
//! the compact lengths and tagged fields of "flexible" versions are those of KIP-482
//! (<https://cwiki.apache.org/confluence/display/KAFKA/KIP-482%3A+The+Kafka+Protocol+should+Support+Optional+Tagged+Fields>).
//!
//! Every method takes a `context` naming the field being read, so that an error on garbage
//! input says where the garbage was.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::ProtocolError;

/// Upper bound on the capacity reserved up front for a decoded array. Larger arrays still
/// decode; they grow as elements are actually read, so memory follows the input, not a count.
const MAX_PREALLOCATED: usize = 1024;

/// A cursor over a byte slice that never reads past its end and never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Whether the input is exhausted.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread part of the input.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, context: &'static str) -> Result<&'a [u8], ProtocolError> {
        let rest = self.rest();
        match rest.get(..n) {
            Some(bytes) => {
                // Cannot overflow: pos + n <= buf.len().
                self.pos += n;
                Ok(bytes)
            }
            None => Err(ProtocolError::Truncated {
                context,
                needed: n - rest.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, context: &'static str) -> Result<[u8; N], ProtocolError> {
        let bytes = self.take(N, context)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads an INT8.
    pub fn i8(&mut self, context: &'static str) -> Result<i8, ProtocolError> {
        Ok(i8::from_be_bytes(self.array(context)?))
    }

    /// Reads a byte.
    pub fn u8(&mut self, context: &'static str) -> Result<u8, ProtocolError> {
        Ok(u8::from_be_bytes(self.array(context)?))
    }

    /// Reads an INT16.
    pub fn i16(&mut self, context: &'static str) -> Result<i16, ProtocolError> {
        Ok(i16::from_be_bytes(self.array(context)?))
    }

    /// Reads a UINT16.
    pub fn u16(&mut self, context: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(context)?))
    }

    /// Reads an INT32.
    pub fn i32(&mut self, context: &'static str) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.array(context)?))
    }

    /// Reads a UINT32.
    pub fn u32(&mut self, context: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(context)?))
    }

    /// Reads an INT64.
    pub fn i64(&mut self, context: &'static str) -> Result<i64, ProtocolError> {
        Ok(i64::from_be_bytes(self.array(context)?))
    }

    /// Reads a UUID as its 16 raw bytes.
    pub fn uuid(&mut self, context: &'static str) -> Result<[u8; 16], ProtocolError> {
        self.array(context)
    }

    /// Reads a BOOLEAN. Any non-zero byte is true, as in the Java client.
    pub fn bool(&mut self, context: &'static str) -> Result<bool, ProtocolError> {
        Ok(self.u8(context)? != 0)
    }

    /// Reads an UNSIGNED_VARINT.
    ///
    /// At most 5 bytes, and the value must fit 32 bits: an encoder never writes more, and
    /// accepting more would let a run of continuation bytes stand for a silently wrapped value.
    pub fn unsigned_varint(&mut self, context: &'static str) -> Result<u32, ProtocolError> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let b = self.u8(context)?;
            if i == 4 && b > 0x0f {
                return Err(malformed(context, "unsigned varint does not fit 32 bits"));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        // Unreachable: the fifth byte is <= 0x0f, so its continuation bit is clear.
        Err(malformed(context, "unsigned varint longer than 5 bytes"))
    }

    /// Reads an unsigned varlong (at most 10 bytes, value within 64 bits).
    pub fn unsigned_varlong(&mut self, context: &'static str) -> Result<u64, ProtocolError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(context)?;
            if i == 9 && b > 0x01 {
                return Err(malformed(context, "unsigned varlong does not fit 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(context, "unsigned varlong longer than 10 bytes"))
    }

    /// Reads a zig-zag VARINT.
    pub fn varint(&mut self, context: &'static str) -> Result<i32, ProtocolError> {
        let z = self.unsigned_varint(context)?;
        Ok(((z >> 1) as i32) ^ -((z & 1) as i32))
    }

    /// Reads a zig-zag VARLONG.
    pub fn varlong(&mut self, context: &'static str) -> Result<i64, ProtocolError> {
        let z = self.unsigned_varlong(context)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// Takes `len` bytes after checking that a length read from the wire is possible.
    fn take_len(&mut self, len: u64, context: &'static str) -> Result<&'a [u8], ProtocolError> {
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => self.take(n, context),
            _ => Err(ProtocolError::InvalidLength {
                context,
                length: i64::try_from(len).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Reads a NULLABLE_STRING (INT16 length, -1 for null).
    pub fn nullable_string(
        &mut self,
        context: &'static str,
    ) -> Result<Option<&'a str>, ProtocolError> {
        let len = self.i16(context)?;
        if len == -1 {
            return Ok(None);
        }
        let len = u64::try_from(len).map_err(|_| ProtocolError::InvalidLength {
            context,
            length: i64::from(len),
        })?;
        let bytes = self.take_len(len, context)?;
        utf8(bytes, context).map(Some)
    }

    /// Reads a STRING, where null is not allowed.
    pub fn string(&mut self, context: &'static str) -> Result<&'a str, ProtocolError> {
        self.nullable_string(context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Reads a COMPACT_NULLABLE_STRING (UNSIGNED_VARINT length + 1, 0 for null).
    pub fn compact_nullable_string(
        &mut self,
        context: &'static str,
    ) -> Result<Option<&'a str>, ProtocolError> {
        match self.compact_nullable_bytes(context)? {
            None => Ok(None),
            Some(bytes) => utf8(bytes, context).map(Some),
        }
    }

    /// Reads a COMPACT_STRING, where null is not allowed.
    pub fn compact_string(&mut self, context: &'static str) -> Result<&'a str, ProtocolError> {
        self.compact_nullable_string(context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Reads a NULLABLE_BYTES (INT32 length, -1 for null).
    pub fn nullable_bytes(
        &mut self,
        context: &'static str,
    ) -> Result<Option<&'a [u8]>, ProtocolError> {
        let len = self.i32(context)?;
        if len == -1 {
            return Ok(None);
        }
        let len = u64::try_from(len).map_err(|_| ProtocolError::InvalidLength {
            context,
            length: i64::from(len),
        })?;
        self.take_len(len, context).map(Some)
    }

    /// Reads BYTES, where null is not allowed.
    pub fn bytes(&mut self, context: &'static str) -> Result<&'a [u8], ProtocolError> {
        self.nullable_bytes(context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Reads COMPACT_NULLABLE_BYTES (UNSIGNED_VARINT length + 1, 0 for null).
    pub fn compact_nullable_bytes(
        &mut self,
        context: &'static str,
    ) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.unsigned_varint(context)? {
            0 => Ok(None),
            n => self.take_len(u64::from(n) - 1, context).map(Some),
        }
    }

    /// Reads COMPACT_BYTES, where null is not allowed.
    pub fn compact_bytes(&mut self, context: &'static str) -> Result<&'a [u8], ProtocolError> {
        self.compact_nullable_bytes(context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Checks that `count` elements of at least `min_element_size` bytes each can fit in
    /// what is left; if not, the count is garbage and nothing is allocated for it.
    fn check_count(
        &self,
        count: u64,
        min_element_size: usize,
        context: &'static str,
    ) -> Result<usize, ProtocolError> {
        let min_element_size = min_element_size.max(1) as u64;
        let fits = count
            .checked_mul(min_element_size)
            .is_some_and(|needed| needed <= self.remaining() as u64);
        match usize::try_from(count) {
            Ok(n) if fits => Ok(n),
            _ => Err(ProtocolError::InvalidLength {
                context,
                length: i64::try_from(count).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Reads the INT32 count of a nullable ARRAY (-1 for null). `min_element_size` is the
    /// fewest bytes one element can take (at least 1), used to reject impossible counts.
    pub fn nullable_array_len(
        &mut self,
        min_element_size: usize,
        context: &'static str,
    ) -> Result<Option<usize>, ProtocolError> {
        let count = self.i32(context)?;
        if count == -1 {
            return Ok(None);
        }
        let count = u64::try_from(count).map_err(|_| ProtocolError::InvalidLength {
            context,
            length: i64::from(count),
        })?;
        self.check_count(count, min_element_size, context).map(Some)
    }

    /// Reads the INT32 count of an ARRAY, where null is not allowed.
    pub fn array_len(
        &mut self,
        min_element_size: usize,
        context: &'static str,
    ) -> Result<usize, ProtocolError> {
        self.nullable_array_len(min_element_size, context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Reads the UNSIGNED_VARINT count + 1 of a nullable COMPACT_ARRAY (0 for null).
    pub fn compact_nullable_array_len(
        &mut self,
        min_element_size: usize,
        context: &'static str,
    ) -> Result<Option<usize>, ProtocolError> {
        match self.unsigned_varint(context)? {
            0 => Ok(None),
            n => self
                .check_count(u64::from(n) - 1, min_element_size, context)
                .map(Some),
        }
    }

    /// Reads the count of a COMPACT_ARRAY, where null is not allowed.
    pub fn compact_array_len(
        &mut self,
        min_element_size: usize,
        context: &'static str,
    ) -> Result<usize, ProtocolError> {
        self.compact_nullable_array_len(min_element_size, context)?
            .ok_or_else(|| null_not_allowed(context))
    }

    /// Reads a non-nullable array, compact if `compact`, decoding each element with `element`.
    ///
    /// Capacity reserved up front is capped, so even a count that passed the size check costs
    /// no more memory than the elements actually decoded.
    pub fn array_of<T>(
        &mut self,
        compact: bool,
        min_element_size: usize,
        context: &'static str,
        mut element: impl FnMut(&mut Reader<'a>) -> Result<T, ProtocolError>,
    ) -> Result<Vec<T>, ProtocolError> {
        let count = if compact {
            self.compact_array_len(min_element_size, context)?
        } else {
            self.array_len(min_element_size, context)?
        };
        let mut out = Vec::with_capacity(count.min(MAX_PREALLOCATED));
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(out)
    }

    /// Reads a TAGGED_FIELDS section (KIP-482).
    ///
    /// For each field, `known` gets its tag and a reader over exactly that field's bytes and
    /// returns `Ok(true)` if it decoded the field, which must then have consumed all of them,
    /// or `Ok(false)` to keep the field, as raw bytes, in the returned map of unknown fields.
    /// A later field with the same tag replaces an earlier one, as in `kafka-protocol`.
    pub fn tagged_fields(
        &mut self,
        context: &'static str,
        mut known: impl FnMut(u32, &mut Reader<'a>) -> Result<bool, ProtocolError>,
    ) -> Result<BTreeMap<i32, Bytes>, ProtocolError> {
        let count = self.unsigned_varint(context)?;
        // Each field takes at least a tag byte and a size byte.
        let count = self.check_count(u64::from(count), 2, context)?;
        let mut unknown = BTreeMap::new();
        for _ in 0..count {
            let tag = self.unsigned_varint(context)?;
            let size = self.unsigned_varint(context)?;
            let data = self.take_len(u64::from(size), context)?;
            let mut field = Reader::new(data);
            if known(tag, &mut field)? {
                if !field.is_empty() {
                    return Err(malformed(
                        context,
                        format!(
                            "tagged field {tag} declares {size} bytes but its value takes {}",
                            field.position()
                        ),
                    ));
                }
            } else {
                // Kafka-protocol keeps tags as i32; the cast is its behaviour too.
                unknown.insert(tag as i32, Bytes::copy_from_slice(data));
            }
        }
        Ok(unknown)
    }

    /// Reads a TAGGED_FIELDS section and keeps every field as unknown.
    pub fn unknown_tagged_fields(
        &mut self,
        context: &'static str,
    ) -> Result<BTreeMap<i32, Bytes>, ProtocolError> {
        self.tagged_fields(context, |_, _| Ok(false))
    }

    /// Reads a TAGGED_FIELDS section and discards it.
    pub fn skip_tagged_fields(&mut self, context: &'static str) -> Result<(), ProtocolError> {
        let count = self.unsigned_varint(context)?;
        let count = self.check_count(u64::from(count), 2, context)?;
        for _ in 0..count {
            self.unsigned_varint(context)?;
            let size = self.unsigned_varint(context)?;
            self.take_len(u64::from(size), context)?;
        }
        Ok(())
    }
}

fn utf8<'a>(bytes: &'a [u8], context: &'static str) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(bytes).map_err(|e| malformed(context, format!("invalid UTF-8: {e}")))
}

fn null_not_allowed(context: &'static str) -> ProtocolError {
    ProtocolError::InvalidLength {
        context,
        length: -1,
    }
}

fn malformed(context: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        context,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_integers_are_big_endian() {
        let data = [
            0xff, 0x01, 0x02, 0x00, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 4,
        ];
        let mut r = Reader::new(&data);
        assert_eq!(r.i8("a").unwrap(), -1);
        assert_eq!(r.i16("b").unwrap(), 0x0102);
        assert_eq!(r.i32("c").unwrap(), 3);
        assert_eq!(r.i64("d").unwrap(), 4);
        assert!(r.is_empty());
        assert!(matches!(
            r.i8("e"),
            Err(ProtocolError::Truncated {
                context: "e",
                needed: 1
            })
        ));
    }

    #[test]
    fn truncation_reports_missing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        assert!(matches!(
            r.i64("x"),
            Err(ProtocolError::Truncated { needed: 6, .. })
        ));
        // A failed read consumes nothing.
        assert_eq!(r.position(), 0);
        assert_eq!(r.u16("y").unwrap(), 0x0102);
    }

    #[test]
    fn varints() {
        let mut r = Reader::new(&[0x00, 0x01, 0x02, 0x03, 0xd8, 0x04]);
        assert_eq!(r.varint("v").unwrap(), 0);
        assert_eq!(r.varint("v").unwrap(), -1);
        assert_eq!(r.varint("v").unwrap(), 1);
        assert_eq!(r.varint("v").unwrap(), -2);
        assert_eq!(r.varint("v").unwrap(), 300);

        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.unsigned_varint("u").unwrap(), u32::MAX);
        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.varint("v").unwrap(), i32::MAX);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.varint("v").unwrap(), i32::MIN);

        // Too long, or bits beyond 32.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(
            r.unsigned_varint("u"),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert!(matches!(
            r.unsigned_varint("u"),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut r = Reader::new(&[0x80, 0x80]);
        assert!(matches!(
            r.unsigned_varint("u"),
            Err(ProtocolError::Truncated { .. })
        ));

        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.varlong("l").unwrap(), i64::MAX);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert!(r.varlong("l").is_err());
    }

    #[test]
    fn strings() {
        let mut r = Reader::new(&[0, 2, b'h', b'i', 0xff, 0xff, 3, b'y', b'o', 0]);
        assert_eq!(r.string("s").unwrap(), "hi");
        assert_eq!(r.nullable_string("s").unwrap(), None);
        assert_eq!(r.compact_string("s").unwrap(), "yo");
        assert_eq!(r.compact_nullable_string("s").unwrap(), None);

        assert!(matches!(
            Reader::new(&[0xff, 0xff]).string("s"),
            Err(ProtocolError::InvalidLength { length: -1, .. })
        ));
        assert!(matches!(
            Reader::new(&[0xff, 0xfe]).nullable_string("s"),
            Err(ProtocolError::InvalidLength { length: -2, .. })
        ));
        assert!(matches!(
            Reader::new(&[0x7f, 0xff, b'a']).string("s"),
            Err(ProtocolError::InvalidLength { length: 32767, .. })
        ));
        assert!(matches!(
            Reader::new(&[0]).compact_string("s"),
            Err(ProtocolError::InvalidLength { .. })
        ));
        assert!(matches!(
            Reader::new(&[0, 1, 0xff]).string("s"),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn byte_strings() {
        let mut r = Reader::new(&[0, 0, 0, 1, 9, 0xff, 0xff, 0xff, 0xff, 2, 7, 0]);
        assert_eq!(r.bytes("b").unwrap(), &[9]);
        assert_eq!(r.nullable_bytes("b").unwrap(), None);
        assert_eq!(r.compact_bytes("b").unwrap(), &[7]);
        assert_eq!(r.compact_nullable_bytes("b").unwrap(), None);
        assert!(matches!(
            Reader::new(&[0x80, 0, 0, 0]).nullable_bytes("b"),
            Err(ProtocolError::InvalidLength { .. })
        ));
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).compact_bytes("b"),
            Err(ProtocolError::InvalidLength { .. })
        ));
    }

    #[test]
    fn counts_are_bounded_by_the_input() {
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.array_len(1, "a"),
            Err(ProtocolError::InvalidLength {
                length: 0x7fff_ffff,
                ..
            })
        ));
        // Two 4-byte elements do not fit in 7 bytes.
        let data = [0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7];
        assert!(Reader::new(&data).array_len(4, "a").is_err());
        assert_eq!(Reader::new(&data).array_len(3, "a").unwrap(), 2);
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff])
                .nullable_array_len(1, "a")
                .unwrap(),
            None
        );
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xfe])
            .nullable_array_len(1, "a")
            .is_err());
        assert!(Reader::new(&[0]).compact_array_len(1, "a").is_err());
        assert_eq!(Reader::new(&[1]).compact_array_len(1, "a").unwrap(), 0);
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f])
            .compact_array_len(1, "a")
            .is_err());
        // A zero minimum is treated as one byte.
        assert!(Reader::new(&[0, 0, 0, 1]).array_len(0, "a").is_err());
    }

    #[test]
    fn arrays_of_elements() {
        let data = [3, 0, 0, 0, 1, 0, 0, 0, 2];
        let v = Reader::new(&data)
            .array_of(true, 4, "a", |r| r.i32("e"))
            .unwrap();
        assert_eq!(v, vec![1, 2]);
    }

    #[test]
    fn tagged_fields_known_and_unknown() {
        // Two fields: tag 0 (4 bytes, known), tag 5 (2 bytes, unknown).
        let data = [2, 0, 4, 0, 0, 0, 7, 5, 2, 0xaa, 0xbb];
        let mut seen = None;
        let unknown = Reader::new(&data)
            .tagged_fields("t", |tag, r| {
                if tag == 0 {
                    seen = Some(r.i32("f")?);
                    Ok(true)
                } else {
                    Ok(false)
                }
            })
            .unwrap();
        assert_eq!(seen, Some(7));
        assert_eq!(unknown.len(), 1);
        assert_eq!(&unknown[&5][..], &[0xaa, 0xbb]);

        // A known field that does not fill its declared size is malformed.
        let data = [1, 0, 5, 0, 0, 0, 7, 0];
        let err = Reader::new(&data)
            .tagged_fields("t", |_, r| r.i32("f").map(|_| true))
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed { .. }));

        // A known field larger than its declared size is truncated.
        let data = [1, 0, 2, 0, 0, 0, 7];
        let err = Reader::new(&data)
            .tagged_fields("t", |_, r| r.i32("f").map(|_| true))
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Truncated { .. }));

        // Impossible counts and sizes.
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unknown_tagged_fields("t"),
            Err(ProtocolError::InvalidLength { .. })
        ));
        assert!(matches!(
            Reader::new(&[1, 0, 0x7f]).unknown_tagged_fields("t"),
            Err(ProtocolError::InvalidLength { .. })
        ));

        let mut r = Reader::new(&[1, 9, 1, 0, 42]);
        r.skip_tagged_fields("t").unwrap();
        assert_eq!(r.u8("x").unwrap(), 42);
    }

    #[test]
    fn never_panics_on_any_short_input() {
        for len in 0..12 {
            for fill in [0x00u8, 0x7f, 0x80, 0xff] {
                let data = vec![fill; len];
                let mut r = Reader::new(&data);
                let _ = r.clone().unsigned_varint("x");
                let _ = r.clone().varlong("x");
                let _ = r.clone().string("x");
                let _ = r.clone().compact_nullable_string("x");
                let _ = r.clone().bytes("x");
                let _ = r.clone().compact_bytes("x");
                let _ = r.clone().array_len(1, "x");
                let _ = r.clone().compact_array_len(usize::MAX, "x");
                let _ = r.clone().uuid("x");
                let _ = r.clone().unknown_tagged_fields("x");
                let _ = r.skip_tagged_fields("x");
            }
        }
    }
}
