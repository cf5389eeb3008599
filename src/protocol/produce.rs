//! ProduceRequest frames that carry their record batches by reference.
//!
//! A ProduceRequest is mostly its record batches, already encoded by the batch builder.
//! kafka-protocol's encoder writes the whole request into one buffer, which copies every
//! batch (every record's bytes) once more per request: about 110 instructions per 100-byte
//! record in a callgrind profile of the console producer. This encoder writes the request's
//! own fields and leaves each batch as a piece of its own, so the frame is a list of pieces
//! written in order with one vectored write, and the batches are never copied.
//!
//! It encodes the versions Herald speaks (3 to 12, flexible from 9: KIP-482) from
//! kafka-protocol's `ProduceRequest`, and the tests hold its output byte for byte to
//! kafka-protocol's for every one of them. A request with tagged fields this encoder does not
//! write goes to kafka-protocol's encoder instead ([`encode_produce`] says so with `None`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use kafka_protocol::protocol::StrBytes;

use super::PRODUCE;
use crate::error::ProtocolError;
use crate::varint::put_uvarint;

/// The first flexible Produce version (compact strings, arrays and bytes; tagged fields).
const FIRST_FLEXIBLE: i16 = 9;

/// One size-prefixed Produce frame as pieces to write in order: the request's fields, and
/// each partition's records by reference. `None` when the request has tagged fields of its
/// own, which only kafka-protocol's encoder writes.
pub fn encode_produce(
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &ProduceRequest,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    PRODUCE.check(version)?;
    let tagged = !request.unknown_tagged_fields.is_empty()
        || request.topic_data.iter().any(|t| {
            !t.unknown_tagged_fields.is_empty()
                || t.partition_data
                    .iter()
                    .any(|p| !p.unknown_tagged_fields.is_empty())
        });
    if tagged {
        return Ok(None);
    }
    let flexible = version >= FIRST_FLEXIBLE;
    let w = Fields { flexible };
    let client_id: &[u8] = client_id.as_bytes();
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.as_bytes());

    let batches = request
        .topic_data
        .iter()
        .map(|t| t.partition_data.len())
        .sum::<usize>();
    // The first piece is the size prefix, filled in once the rest is written: the pieces are
    // frozen as batches are spliced in, so the front cannot be patched in place.
    let mut pieces = Vec::with_capacity(2 * batches + 2);
    pieces.push(Bytes::new());
    let mut out = BytesMut::with_capacity(256);
    // Request header v1 (v2 when flexible: the same and an empty tag buffer); the client id
    // is a nullable string, never compact, in both.
    out.put_i16(ApiKey::Produce as i16);
    out.put_i16(version);
    out.put_i32(correlation_id);
    out.put_i16(client_id.len() as i16);
    out.put_slice(client_id);
    w.tags(&mut out);
    w.nullable_string(&mut out, transactional_id);
    out.put_i16(request.acks);
    out.put_i32(request.timeout_ms);
    w.length(&mut out, request.topic_data.len());
    for topic in &request.topic_data {
        w.string(&mut out, topic.name.0.as_bytes());
        w.length(&mut out, topic.partition_data.len());
        for p in &topic.partition_data {
            out.put_i32(p.index);
            match &p.records {
                Some(records) => {
                    w.length(&mut out, records.len());
                    if !records.is_empty() {
                        pieces.push(out.split().freeze());
                        pieces.push(records.clone());
                    }
                }
                None => w.null(&mut out),
            }
            w.tags(&mut out);
        }
        w.tags(&mut out);
    }
    w.tags(&mut out);
    pieces.push(out.freeze());
    let size: usize = pieces.iter().map(Bytes::len).sum();
    let prefix = i32::try_from(size).map_err(|_| ProtocolError::Encode {
        api: PRODUCE.name,
        reason: format!("request of {size} bytes"),
    })?;
    pieces[0] = Bytes::copy_from_slice(&prefix.to_be_bytes());
    Ok(Some(pieces))
}

/// How strings, bytes, arrays and tags are written at a version: the classic fixed-width
/// lengths, or KIP-482's compact ones (unsigned varint of length + 1, 0 for null).
#[derive(Debug, Clone, Copy)]
struct Fields {
    flexible: bool,
}

impl Fields {
    /// The length of an array, or of a non-null bytes field (its bytes follow).
    fn length(self, out: &mut BytesMut, len: usize) {
        if self.flexible {
            put_uvarint(out, len as u64 + 1);
        } else {
            out.put_i32(len as i32);
        }
    }

    /// A null bytes field.
    fn null(self, out: &mut BytesMut) {
        if self.flexible {
            out.put_u8(0);
        } else {
            out.put_i32(-1);
        }
    }

    fn string(self, out: &mut BytesMut, s: &[u8]) {
        if self.flexible {
            put_uvarint(out, s.len() as u64 + 1);
        } else {
            out.put_i16(s.len() as i16);
        }
        out.put_slice(s);
    }

    fn nullable_string(self, out: &mut BytesMut, s: Option<&[u8]>) {
        match s {
            Some(s) => self.string(out, s),
            None if self.flexible => out.put_u8(0),
            None => out.put_i16(-1),
        }
    }

    /// An empty tag buffer, in flexible versions.
    fn tags(self, out: &mut BytesMut) {
        if self.flexible {
            out.put_u8(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_request;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{TopicName, TransactionalId};

    fn request(transactional: bool, records: &[Option<Bytes>]) -> ProduceRequest {
        let partitions = |topic: usize| {
            records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    PartitionProduceData::default()
                        .with_index((topic * 10 + i) as i32)
                        .with_records(r.clone())
                })
                .collect()
        };
        ProduceRequest::default()
            .with_transactional_id(
                transactional.then(|| TransactionalId(StrBytes::from_static_str("txn-1"))),
            )
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partition_data(partitions(0)),
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string("a".repeat(200))))
                    .with_partition_data(partitions(1)),
            ])
    }

    /// Byte for byte what kafka-protocol's encoder writes, at every version Herald speaks,
    /// with and without a transactional id, with records large enough for multi-byte
    /// lengths, empty and null.
    #[test]
    fn frames_equal_kafka_protocols_at_every_version() {
        let big = Bytes::from((0..70_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let small = Bytes::from_static(b"batch bytes");
        let records = [Some(big.clone()), Some(small), Some(Bytes::new()), None];
        let client = StrBytes::from_static_str("herald-client");
        for version in PRODUCE.min..=PRODUCE.max {
            for transactional in [false, true] {
                let req = request(transactional, &records);
                let mut expected = BytesMut::new();
                encode_request(&mut expected, PRODUCE, version, 42, &client, &req).unwrap();
                let pieces = encode_produce(version, 42, &client, &req).unwrap().unwrap();
                let written: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                assert_eq!(
                    written, expected,
                    "version {version}, transactional {transactional}"
                );
                // The big batch travels by reference, not copied.
                assert!(
                    pieces.iter().any(|p| p.as_ptr() == big.as_ptr()),
                    "version {version}: batch copied"
                );
            }
        }
    }

    #[test]
    fn versions_outside_the_supported_range_are_refused() {
        let client = StrBytes::from_static_str("c");
        let req = request(false, &[None]);
        for version in [PRODUCE.min - 1, PRODUCE.max + 1] {
            assert!(matches!(
                encode_produce(version, 1, &client, &req),
                Err(ProtocolError::UnsupportedVersion { .. })
            ));
        }
    }

    #[test]
    fn a_request_with_tagged_fields_of_its_own_is_left_to_kafka_protocol() {
        let client = StrBytes::from_static_str("c");
        let mut req = request(false, &[None]);
        req.unknown_tagged_fields
            .insert(7, Bytes::from_static(b"x"));
        assert!(encode_produce(12, 1, &client, &req).unwrap().is_none());
    }
}
