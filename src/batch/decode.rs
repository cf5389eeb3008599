//! A strict decoder for v2 record batches (magic 2): the layout of the Kafka protocol
//! guide's "Record Batch" section (<https://kafka.apache.org/documentation/#recordbatch>),
//! introduced by KIP-98.
//!
//! The producer never reads batches on its hot path; this decoder exists to check what the
//! builder writes (tests, fixtures from other clients) and to be fuzzed. It treats its input
//! as hostile:
//!
//! - `batchLength` must cover at least the header and fit in the input; magic must be 2;
//!   the CRC-32C over attributes..end must match.
//! - `recordCount` is checked against the records actually present, in both directions, and
//!   is never trusted to size an allocation.
//! - Every record's length prefix must equal the bytes its fields take; lengths below -1 are
//!   errors, header keys must be UTF-8 (header keys are never null).
//! - Decompression stops at [`MAX_DECOMPRESSED`] bytes.
//!
//! Nothing here panics on any input, and memory stays proportional to the input, or to the
//! decompressed records section for a compressed batch (at most [`MAX_DECOMPRESSED`] bytes;
//! the decoded records take a constant factor more, at worst about 30x for a section made
//! only of empty headers).

use std::borrow::Cow;

use bytes::Bytes;

use super::{
    ATTRIBUTES_OFFSET, CONTROL_FLAG, CRC_OFFSET, LENGTH_OFFSET, LOG_OVERHEAD, MAGIC_OFFSET,
    RECORD_BATCH_OVERHEAD, TRANSACTIONAL_FLAG,
};
use crate::compression::{self, Compression};
use crate::error::ProtocolError;
use crate::record::Header;
use crate::varint::{get_varint, get_varlong};

/// The most bytes a compressed records section may inflate to (64 MiB).
///
/// Kafka itself puts no limit on decompression; a batch is bounded by the broker's
/// `message.max.bytes` (1 MiB by default) only in its compressed form. 64 MiB is far above
/// what a producer writes (`batch.size` defaults to 16 KiB) and keeps a decompression bomb
/// from costing more than that.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Smallest `batchLength`: the header after the length field, with no records.
const MIN_BATCH_LENGTH: usize = RECORD_BATCH_OVERHEAD - LOG_OVERHEAD;

/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
const MIN_RECORD_SIZE: usize = 7;

/// Smallest encoded header: an empty key and a null value.
const MIN_HEADER_SIZE: usize = 2;

/// One decoded record batch, every header field as it was on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// `baseOffset` (0 in what a producer sends).
    pub base_offset: i64,
    /// `partitionLeaderEpoch` (-1 in what a producer sends).
    pub partition_leader_epoch: i32,
    /// `attributes` as a whole.
    pub attributes: i16,
    /// The codec named by attribute bits 0-2.
    pub compression: Compression,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `baseTimestamp`.
    pub base_timestamp: i64,
    /// `maxTimestamp`.
    pub max_timestamp: i64,
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
    /// Attribute bit 4.
    pub is_transactional: bool,
    /// Attribute bit 5.
    pub is_control: bool,
    /// The records, as many as `recordCount` says.
    pub records: Vec<DecodedRecord>,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// `offsetDelta`, relative to the batch's base offset.
    pub offset_delta: i32,
    /// Absolute timestamp: `baseTimestamp + timestampDelta` (wrapping, as Java's `long`).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value.
    pub value: Option<Bytes>,
    /// Headers in wire order (duplicate keys kept).
    pub headers: Vec<Header>,
}

fn truncated(context: &'static str, needed: usize) -> ProtocolError {
    ProtocolError::Truncated { context, needed }
}

fn malformed(context: &'static str, reason: String) -> ProtocolError {
    ProtocolError::Malformed { context, reason }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decodes the record batch at the front of `input`; returns it and the bytes it took
/// (`12 + batchLength`). Bytes after the batch are left alone.
pub fn decode_batch(input: &[u8]) -> Result<(DecodedBatch, usize), ProtocolError> {
    if input.len() < LOG_OVERHEAD {
        return Err(truncated("record batch length", LOG_OVERHEAD - input.len()));
    }
    if let Some(&magic) = input.get(MAGIC_OFFSET) {
        if magic != 2 {
            return Err(malformed(
                "record batch",
                format!("magic {} is not supported (only 2)", magic as i8),
            ));
        }
    }
    let batch_length = be_i32(input, LENGTH_OFFSET);
    if batch_length < MIN_BATCH_LENGTH as i32 {
        return Err(ProtocolError::InvalidLength {
            context: "record batch",
            length: batch_length.into(),
        });
    }
    let total = LOG_OVERHEAD + batch_length as usize;
    if total > input.len() {
        return Err(truncated("record batch", total - input.len()));
    }
    let batch = &input[..total];

    let stored = u32::from_be_bytes([
        batch[CRC_OFFSET],
        batch[CRC_OFFSET + 1],
        batch[CRC_OFFSET + 2],
        batch[CRC_OFFSET + 3],
    ]);
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    if stored != computed {
        return Err(ProtocolError::CrcMismatch { stored, computed });
    }

    let attributes = be_i16(batch, ATTRIBUTES_OFFSET);
    let compression = Compression::from_attributes(attributes)?;
    let base_timestamp = be_i64(batch, 27);
    let record_count = be_i32(batch, 57);
    if record_count < 0 {
        return Err(ProtocolError::InvalidLength {
            context: "record batch record count",
            length: record_count.into(),
        });
    }

    let section = &batch[RECORD_BATCH_OVERHEAD..];
    let records_bytes = match compression {
        Compression::None => Bytes::copy_from_slice(section),
        codec => Bytes::from(compression::decompress(codec, section, MAX_DECOMPRESSED)?),
    };
    let records = decode_records(&records_bytes, record_count as usize, base_timestamp)?;

    Ok((
        DecodedBatch {
            base_offset: be_i64(batch, 0),
            partition_leader_epoch: be_i32(batch, 12),
            attributes,
            compression,
            last_offset_delta: be_i32(batch, 23),
            base_timestamp,
            max_timestamp: be_i64(batch, 35),
            producer_id: be_i64(batch, 43),
            producer_epoch: be_i16(batch, 51),
            base_sequence: be_i32(batch, 53),
            is_transactional: attributes & TRANSACTIONAL_FLAG != 0,
            is_control: attributes & CONTROL_FLAG != 0,
            records,
        },
        total,
    ))
}

/// Decodes every batch of a `records` field (batches back to back, as in a ProduceRequest
/// partition). The whole input must be batches: a partial batch at the end is an error.
pub fn decode_batches(input: &[u8]) -> Result<Vec<DecodedBatch>, ProtocolError> {
    let mut batches = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (batch, used) = decode_batch(rest)?;
        batches.push(batch);
        rest = &rest[used..];
    }
    Ok(batches)
}

/// Reads fields from the front of a slice of `Bytes`, so keys and values share its buffer.
struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn varint(&mut self) -> Result<i32, ProtocolError> {
        let (v, n) = get_varint(self.rest())?;
        self.pos += n;
        Ok(v)
    }

    fn varlong(&mut self) -> Result<i64, ProtocolError> {
        let (v, n) = get_varlong(self.rest())?;
        self.pos += n;
        Ok(v)
    }

    fn u8(&mut self, context: &'static str) -> Result<u8, ProtocolError> {
        let b = *self.rest().first().ok_or_else(|| truncated(context, 1))?;
        self.pos += 1;
        Ok(b)
    }

    /// A length that must be non-negative and fit in what is left.
    fn length(&mut self, context: &'static str) -> Result<usize, ProtocolError> {
        let len = self.varint()?;
        if len < 0 {
            return Err(ProtocolError::InvalidLength {
                context,
                length: len.into(),
            });
        }
        let len = len as usize;
        if len > self.remaining() {
            return Err(truncated(context, len - self.remaining()));
        }
        Ok(len)
    }

    fn take(&mut self, len: usize) -> Bytes {
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        b
    }

    /// Bytes behind a length prefix where -1 means null.
    fn nullable_bytes(&mut self, context: &'static str) -> Result<Option<Bytes>, ProtocolError> {
        let (len, n) = get_varint(self.rest())?;
        if len == -1 {
            self.pos += n;
            return Ok(None);
        }
        let len = self.length(context)?;
        Ok(Some(self.take(len)))
    }
}

fn decode_records(
    section: &Bytes,
    count: usize,
    base_timestamp: i64,
) -> Result<Vec<DecodedRecord>, ProtocolError> {
    let mut records = Vec::with_capacity(count.min(section.len() / MIN_RECORD_SIZE));
    let mut cur = Cursor {
        buf: section,
        pos: 0,
        end: section.len(),
    };
    for index in 0..count {
        if cur.remaining() == 0 {
            return Err(malformed(
                "record batch",
                format!("record count is {count} but only {index} records are present"),
            ));
        }
        let len = cur.length("record")?;
        let mut body = Cursor {
            buf: section,
            pos: cur.pos,
            end: cur.pos + len,
        };
        records.push(decode_record(&mut body, base_timestamp)?);
        if body.remaining() != 0 {
            return Err(malformed(
                "record",
                format!(
                    "length prefix says {len} bytes but the fields take {}",
                    len - body.remaining()
                ),
            ));
        }
        cur.pos = body.end;
    }
    if cur.remaining() != 0 {
        return Err(malformed(
            "record batch",
            format!(
                "{} bytes left after the {count} records the batch declares",
                cur.remaining()
            ),
        ));
    }
    Ok(records)
}

/// Decodes one record's fields; `body` ends where the record's length prefix says, so a
/// field that runs past it is reported as truncated.
fn decode_record(
    body: &mut Cursor<'_>,
    base_timestamp: i64,
) -> Result<DecodedRecord, ProtocolError> {
    let _attributes = body.u8("record attributes")?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes("record key")?;
    let value = body.nullable_bytes("record value")?;
    let header_count = body.varint()?;
    if header_count < 0 {
        return Err(ProtocolError::InvalidLength {
            context: "record header count",
            length: header_count.into(),
        });
    }
    let header_count = header_count as usize;
    if header_count > body.remaining() / MIN_HEADER_SIZE {
        return Err(malformed(
            "record",
            format!(
                "{header_count} headers cannot fit in the {} bytes left",
                body.remaining()
            ),
        ));
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key_len = body.length("record header key")?;
        let key = body.take(key_len);
        let key = std::str::from_utf8(&key)
            .map_err(|e| malformed("record header key", format!("not UTF-8: {e}")))?
            .to_owned();
        let value = body.nullable_bytes("record header value")?;
        headers.push(Header {
            key: Cow::Owned(key),
            value,
        });
    }
    Ok(DecodedRecord {
        offset_delta,
        timestamp: base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, ProducerIds};
    use proptest::prelude::*;

    const ALL_CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A record as the test generates it.
    #[derive(Debug, Clone)]
    struct Input {
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<Header>,
    }

    fn bytes_field() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(Vec::new())),
            4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
        ]
    }

    fn header() -> impl Strategy<Value = Header> {
        ("\\PC{0,8}", bytes_field()).prop_map(|(key, value)| Header {
            key: Cow::Owned(key),
            value: value.map(Bytes::from),
        })
    }

    fn input() -> impl Strategy<Value = Input> {
        (
            prop_oneof![3 => -1i64..2_000_000_000_000, 1 => any::<i64>()],
            bytes_field(),
            bytes_field(),
            proptest::collection::vec(header(), 0..3),
        )
            .prop_map(|(timestamp, key, value, headers)| Input {
                timestamp,
                key,
                value,
                headers,
            })
    }

    fn codec() -> impl Strategy<Value = Compression> {
        proptest::sample::select(&ALL_CODECS[..])
    }

    fn ids() -> impl Strategy<Value = ProducerIds> {
        (any::<i64>(), any::<i16>(), any::<i32>()).prop_map(
            |(producer_id, producer_epoch, base_sequence)| ProducerIds {
                producer_id,
                producer_epoch,
                base_sequence,
            },
        )
    }

    fn build(
        records: &[Input],
        codec: Compression,
        ids: ProducerIds,
        transactional: bool,
    ) -> Bytes {
        let mut b = BatchBuilder::new(1 << 20, codec, None);
        b.set_transactional(transactional);
        for r in records {
            b.try_append(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            )
            .expect("batch.size is large enough for every generated record");
        }
        b.close(ids).expect("closing a batch does not fail")
    }

    fn expected_records(records: &[Input]) -> Vec<DecodedRecord> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| DecodedRecord {
                offset_delta: i as i32,
                timestamp: r.timestamp,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r.headers.clone(),
            })
            .collect()
    }

    /// A batch with the given attributes, record count and raw records section, with a
    /// correct length and CRC: for inputs that must fail on their content, not their CRC.
    fn craft(attributes: i16, count: i32, section: &[u8]) -> Vec<u8> {
        let mut v = build(&[], Compression::None, ProducerIds::NONE, false).to_vec();
        v[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        v[57..61].copy_from_slice(&count.to_be_bytes());
        v.extend_from_slice(section);
        let len = (v.len() - LOG_OVERHEAD) as i32;
        v[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&v[ATTRIBUTES_OFFSET..]);
        v[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn builder_output_decodes_to_what_went_in(
            records in proptest::collection::vec(input(), 0..50),
            codec in codec(),
            ids in ids(),
            transactional in any::<bool>(),
        ) {
            let bytes = build(&records, codec, ids, transactional);
            let (batch, used) = decode_batch(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(batch.base_offset, 0);
            prop_assert_eq!(batch.partition_leader_epoch, -1);
            prop_assert_eq!(batch.compression, codec);
            let flag = if transactional { TRANSACTIONAL_FLAG } else { 0 };
            prop_assert_eq!(batch.attributes, codec.attribute_bits() | flag);
            prop_assert_eq!(batch.is_transactional, transactional);
            prop_assert!(!batch.is_control);
            prop_assert_eq!(batch.last_offset_delta, records.len() as i32 - 1);
            let base = records.first().map_or(0, |r| r.timestamp);
            let max = records.iter().map(|r| r.timestamp).max().unwrap_or(base);
            prop_assert_eq!(batch.base_timestamp, base);
            prop_assert_eq!(batch.max_timestamp, max);
            prop_assert_eq!(batch.producer_id, ids.producer_id);
            prop_assert_eq!(batch.producer_epoch, ids.producer_epoch);
            prop_assert_eq!(batch.base_sequence, ids.base_sequence);
            prop_assert_eq!(batch.records.len(), records.len());
            prop_assert_eq!(batch.records, expected_records(&records));
        }

        #[test]
        fn batches_back_to_back(
            first in proptest::collection::vec(input(), 0..5),
            second in proptest::collection::vec(input(), 0..5),
            codec in codec(),
        ) {
            let a = build(&first, Compression::None, ProducerIds::NONE, false);
            let b = build(&second, codec, ProducerIds::NONE, true);
            let both = [&a[..], &b[..]].concat();
            let batches = decode_batches(&both).unwrap();
            prop_assert_eq!(batches.len(), 2);
            prop_assert_eq!(&batches[0].records, &expected_records(&first));
            prop_assert_eq!(&batches[1].records, &expected_records(&second));
            prop_assert!(decode_batches(&both[..both.len() - 1]).is_err());
        }

        #[test]
        fn truncation_is_an_error(
            records in proptest::collection::vec(input(), 0..8),
            codec in codec(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let bytes = build(&records, codec, ProducerIds::NONE, false);
            let cut = cut.index(bytes.len());
            prop_assert!(decode_batch(&bytes[..cut]).is_err());
            prop_assert!(decode_batches(&bytes[..cut]).is_err() || cut == 0);
        }

        #[test]
        fn bit_flips_are_caught(
            records in proptest::collection::vec(input(), 0..8),
            codec in codec(),
            at in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let bytes = build(&records, codec, ProducerIds::NONE, false);
            let original = decode_batch(&bytes).unwrap().0;
            let mut flipped = bytes.to_vec();
            let at = at.index(flipped.len());
            flipped[at] ^= 1 << bit;
            let result = decode_batch(&flipped);
            match at {
                // baseOffset and partitionLeaderEpoch are outside the CRC: the batch still
                // decodes, with the same records.
                0..=7 | 12..=15 => {
                    let (batch, _) = result.unwrap();
                    prop_assert_eq!(batch.records, original.records);
                }
                // batchLength is outside the CRC too, but changes what the CRC covers: only
                // "no panic" is promised.
                8..=11 => {}
                // magic, the CRC itself and everything it covers.
                _ => prop_assert!(result.is_err(), "flip at {} bit {} accepted", at, bit),
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(&bytes);
            let _ = decode_batches(&bytes);
        }

        #[test]
        fn garbage_records_with_a_valid_crc_never_panic(
            attributes in any::<i16>(),
            count in prop_oneof![0i32..20, any::<i32>()],
            section in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let bytes = craft(attributes, count, &section);
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn mutated_records_sections_never_panic(
            records in proptest::collection::vec(input(), 1..8),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            // Valid records with one byte changed and the CRC fixed: exercises the record
            // parser rather than the CRC check.
            let bytes = build(&records, Compression::None, ProducerIds::NONE, false);
            let mut section = bytes[RECORD_BATCH_OVERHEAD..].to_vec();
            let at = at.index(section.len());
            section[at] = byte;
            let crafted = craft(0, records.len() as i32, &section);
            let _ = decode_batch(&crafted);
        }
    }

    fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8, 0, 0];
        crate::varint::put_varint(&mut body, key.len() as i32);
        body.extend_from_slice(key);
        crate::varint::put_varint(&mut body, value.len() as i32);
        body.extend_from_slice(value);
        body.push(0);
        let mut out = Vec::new();
        crate::varint::put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn crafted_batch_decodes() {
        let section = [record(b"k", b"v"), record(b"", b"w")].concat();
        let (batch, _) = decode_batch(&craft(0, 2, &section)).unwrap();
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.records[1].key.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn record_count_must_match_both_ways() {
        let section = [record(b"k", b"v"), record(b"k", b"v")].concat();
        assert!(matches!(
            decode_batch(&craft(0, 3, &section)),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            decode_batch(&craft(0, 1, &section)),
            Err(ProtocolError::Malformed { .. })
        ));
        // A huge count is refused, not preallocated.
        assert!(decode_batch(&craft(0, i32::MAX, &section)).is_err());
        assert!(matches!(
            decode_batch(&craft(0, -1, &section)),
            Err(ProtocolError::InvalidLength { .. })
        ));
    }

    #[test]
    fn record_length_must_match_its_fields() {
        let mut r = record(b"k", b"v");
        r[0] += 2; // length prefix 2 bytes too long (small varints: value * 2)
        r.push(0);
        assert!(matches!(
            decode_batch(&craft(0, 1, &r)),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut r = record(b"k", b"v");
        r[0] -= 2; // 1 byte too short: the header count falls outside the record
        assert!(decode_batch(&craft(0, 1, &r)).is_err());
    }

    #[test]
    fn bad_lengths_and_header_keys() {
        // key length -2
        let r = [&[0x0e, 0, 0, 0, 0x03][..], &[0; 9][..]].concat();
        assert!(matches!(
            decode_batch(&craft(0, 1, &r)),
            Err(ProtocolError::InvalidLength { .. })
        ));
        // one header whose key is not UTF-8
        let body = [0u8, 0, 0, 1, 1, 2, 4, 0xff, 0xfe, 1];
        let r = [&[(body.len() * 2) as u8][..], &body[..]].concat();
        assert!(matches!(
            decode_batch(&craft(0, 1, &r)),
            Err(ProtocolError::Malformed { .. })
        ));
        // the same header with a valid key
        let body = [0u8, 0, 0, 1, 1, 2, 4, b'h', b'i', 1];
        let r = [&[(body.len() * 2) as u8][..], &body[..]].concat();
        let (batch, _) = decode_batch(&craft(0, 1, &r)).unwrap();
        assert_eq!(
            batch.records[0].headers,
            vec![Header {
                key: "hi".into(),
                value: None
            }]
        );
        // a null header key (-1)
        let body = [0u8, 0, 0, 1, 1, 2, 1, 1];
        let r = [&[(body.len() * 2) as u8][..], &body[..]].concat();
        assert!(matches!(
            decode_batch(&craft(0, 1, &r)),
            Err(ProtocolError::InvalidLength { .. })
        ));
    }

    #[test]
    fn header_checks() {
        let good = build(&[], Compression::None, ProducerIds::NONE, false).to_vec();
        let mut magic1 = good.clone();
        magic1[MAGIC_OFFSET] = 1;
        assert!(matches!(
            decode_batch(&magic1),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut short = good.clone();
        short[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            decode_batch(&short),
            Err(ProtocolError::InvalidLength { .. })
        ));
        let mut long = good.clone();
        long[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_batch(&long),
            Err(ProtocolError::Truncated { .. })
        ));
        let mut crc = good.clone();
        crc[60] ^= 1;
        assert!(matches!(
            decode_batch(&crc),
            Err(ProtocolError::CrcMismatch { .. })
        ));
        assert!(matches!(
            decode_batch(&good[..5]),
            Err(ProtocolError::Truncated { .. })
        ));
        assert!(decode_batch(&craft(5, 0, &[])).is_err(), "unknown codec 5");
        assert_eq!(decode_batches(&[]).unwrap(), vec![]);
    }

    #[test]
    fn decompression_is_bounded() {
        let zeros = vec![0u8; MAX_DECOMPRESSED + 1];
        let mut section = bytes::BytesMut::new();
        compression::compress(Compression::Zstd, None, &zeros, &mut section).unwrap();
        let bytes = craft(Compression::Zstd.attribute_bits(), 1, &section);
        assert!(matches!(
            decode_batch(&bytes),
            Err(ProtocolError::Compression { .. })
        ));
    }

    #[test]
    fn every_codec_round_trips_a_large_batch() {
        let records: Vec<Input> = (0..2000)
            .map(|i| Input {
                timestamp: 1_700_000_000_000 + (i % 7) * 1000 - i,
                key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
                value: Some(vec![(i % 251) as u8; (i as usize * 13) % 300]),
                headers: vec![Header::new("trace", format!("{i}").into_bytes())],
            })
            .collect();
        for codec in ALL_CODECS {
            let bytes = build(&records, codec, ProducerIds::NONE, false);
            let (batch, _) = decode_batch(&bytes).unwrap();
            assert_eq!(batch.records, expected_records(&records), "{codec:?}");
        }
    }
}
