//! Framing and version negotiation around the `kafka-protocol` message types.
//!
//! Kafka frames are a 4-byte big-endian size followed by a header and a body
//! (<https://kafka.apache.org/protocol#protocol_common>). Requests are encoded with
//! kafka-protocol's encoders; the responses a producer reads are decoded by [`responses`],
//! our bounded decoders, because kafka-protocol's own decoders trust wire counts for
//! allocation. Header versions (including flexible versions, KIP-482) come from
//! kafka-protocol's `HeaderVersion` tables.

pub mod produce;
pub mod reader;
pub mod responses;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::error::ProtocolError;

/// The largest response frame we accept. Producer responses are small; metadata for a very
/// large cluster is the biggest and stays far below this.
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024 * 1024;

/// An API this client uses, with the versions it can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    /// The API.
    pub key: ApiKey,
    /// Display name for errors.
    pub name: &'static str,
    /// Lowest version we speak.
    pub min: i16,
    /// Highest version we speak.
    pub max: i16,
}

impl ApiSupport {
    /// `version`, if it is one this client speaks.
    pub fn check(self, version: i16) -> Result<(), ProtocolError> {
        if version < self.min || version > self.max {
            return Err(ProtocolError::UnsupportedVersion {
                api: self.name,
                version,
            });
        }
        Ok(())
    }
}

/// ApiVersions: v3+ is flexible; v0 is the fallback every broker answers.
pub const API_VERSIONS: ApiSupport = ApiSupport {
    key: ApiKey::ApiVersions,
    name: "ApiVersions",
    min: 0,
    max: 3,
};
/// Metadata: v4 is the lowest Kafka 4.0 still serves (KIP-896); v13 adds nothing we use.
pub const METADATA: ApiSupport = ApiSupport {
    key: ApiKey::Metadata,
    name: "Metadata",
    min: 1,
    max: 12,
};
/// Produce: v3 is the first with v2 record batches and the lowest Kafka 4.0 accepts; v13
/// addresses topics by id, which we do not track.
pub const PRODUCE: ApiSupport = ApiSupport {
    key: ApiKey::Produce,
    name: "Produce",
    min: 3,
    max: 12,
};
/// InitProducerId, for idempotence.
pub const INIT_PRODUCER_ID: ApiSupport = ApiSupport {
    key: ApiKey::InitProducerId,
    name: "InitProducerId",
    min: 0,
    max: 5,
};

/// FindCoordinator, for the transaction coordinator (key type 1) and a consumer group's
/// (key type 0). v4 batches keys (KIP-699), which one coordinator at a time does not need;
/// Kafka 4.0 dropped v0 (KIP-896).
pub const FIND_COORDINATOR: ApiSupport = ApiSupport {
    key: ApiKey::FindCoordinator,
    name: "FindCoordinator",
    min: 1,
    max: 3,
};
/// AddPartitionsToTxn (KIP-98): v3 is the last a client sends; v4+ is the brokers' own
/// batched form (KIP-890).
pub const ADD_PARTITIONS_TO_TXN: ApiSupport = ApiSupport {
    key: ApiKey::AddPartitionsToTxn,
    name: "AddPartitionsToTxn",
    min: 1,
    max: 3,
};
/// AddOffsetsToTxn (KIP-98); v4 only adds TRANSACTION_ABORTABLE to the errors.
pub const ADD_OFFSETS_TO_TXN: ApiSupport = ApiSupport {
    key: ApiKey::AddOffsetsToTxn,
    name: "AddOffsetsToTxn",
    min: 1,
    max: 4,
};
/// TxnOffsetCommit: v3 carries the group's generation and member (KIP-447), so a zombie
/// member's offsets are fenced; v5 adds the group to the transaction implicitly
/// (transaction version 2, KIP-890).
pub const TXN_OFFSET_COMMIT: ApiSupport = ApiSupport {
    key: ApiKey::TxnOffsetCommit,
    name: "TxnOffsetCommit",
    min: 1,
    max: 5,
};
/// EndTxn (KIP-98); v5 bumps the epoch at every end and returns it (transaction version 2,
/// KIP-890).
pub const END_TXN: ApiSupport = ApiSupport {
    key: ApiKey::EndTxn,
    name: "EndTxn",
    min: 1,
    max: 5,
};

/// The highest version of `api` a transactional producer may use under transaction
/// protocol version 1 or 2 (KIP-890). Version 2 starts at Produce v12 (partitions added
/// implicitly), TxnOffsetCommit v5 (the group added implicitly) and EndTxn v5 (a new epoch
/// at every end); a version-1 transaction must not use them, or the broker mixes the two
/// protocols (Java caps them alike). `None`: no cap.
pub fn transaction_version_cap(api: ApiKey, transaction_v2: bool) -> Option<i16> {
    match (api, transaction_v2) {
        (ApiKey::Produce, false) => Some(11),
        (ApiKey::TxnOffsetCommit, false) => Some(4),
        (ApiKey::EndTxn, false) => Some(4),
        // Version 2 needs these versions at least; the broker that finalized
        // transaction.version 2 has them.
        _ => None,
    }
}

/// The finalized `transaction.version` feature level a broker advertises in ApiVersions
/// (KIP-890; 0 when it names none, as brokers before 4.0 do).
pub fn transaction_version(broker: &ApiVersionsResponse) -> i16 {
    broker
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map_or(0, |f| f.max_version_level)
}

/// SaslHandshake (KIP-43): v1 is the one after which SaslAuthenticate requests carry the
/// mechanism's bytes (KIP-152); Kafka 4.0 serves only v1.
pub const SASL_HANDSHAKE: ApiSupport = ApiSupport {
    key: ApiKey::SaslHandshake,
    name: "SaslHandshake",
    min: 1,
    max: 1,
};
/// SaslAuthenticate: v1 adds the session lifetime (KIP-368), v2 is flexible.
pub const SASL_AUTHENTICATE: ApiSupport = ApiSupport {
    key: ApiKey::SaslAuthenticate,
    name: "SaslAuthenticate",
    min: 0,
    max: 2,
};

/// The versions both sides speak, one per API we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedVersions {
    /// Metadata version.
    pub metadata: i16,
    /// Produce version.
    pub produce: i16,
    /// InitProducerId version, `None` when the broker lacks it (idempotence then fails
    /// with a clear error, not at connect time).
    pub init_producer_id: Option<i16>,
    /// The transactional APIs, each `None` when the broker lacks a common version (a
    /// transactional request then fails with that reason, not the connection).
    pub transactions: TransactionVersions,
    /// The broker's finalized `transaction.version` feature level (0: none).
    pub transaction_version: i16,
}

/// The negotiated versions of the transactional APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransactionVersions {
    /// FindCoordinator.
    pub find_coordinator: Option<i16>,
    /// AddPartitionsToTxn.
    pub add_partitions_to_txn: Option<i16>,
    /// AddOffsetsToTxn.
    pub add_offsets_to_txn: Option<i16>,
    /// TxnOffsetCommit.
    pub txn_offset_commit: Option<i16>,
    /// EndTxn.
    pub end_txn: Option<i16>,
}

/// Picks the highest version both sides support for `api`.
pub fn pick_version(api: ApiSupport, broker: &ApiVersionsResponse) -> Result<i16, ProtocolError> {
    let entry = broker
        .api_keys
        .iter()
        .find(|k| k.api_key == api.key as i16)
        .ok_or(ProtocolError::MissingApi { api: api.name })?;
    let high = entry.max_version.min(api.max);
    let low = entry.min_version.max(api.min);
    if high < low {
        return Err(ProtocolError::NoCommonVersion {
            api: api.name,
            broker_min: entry.min_version,
            broker_max: entry.max_version,
            ours_min: api.min,
            ours_max: api.max,
        });
    }
    Ok(high)
}

/// Negotiates every API the producer uses from a broker's ApiVersions response.
pub fn negotiate(broker: &ApiVersionsResponse) -> Result<NegotiatedVersions, ProtocolError> {
    Ok(NegotiatedVersions {
        metadata: pick_version(METADATA, broker)?,
        produce: pick_version(PRODUCE, broker)?,
        init_producer_id: pick_version(INIT_PRODUCER_ID, broker).ok(),
        transactions: TransactionVersions {
            find_coordinator: pick_version(FIND_COORDINATOR, broker).ok(),
            add_partitions_to_txn: pick_version(ADD_PARTITIONS_TO_TXN, broker).ok(),
            add_offsets_to_txn: pick_version(ADD_OFFSETS_TO_TXN, broker).ok(),
            txn_offset_commit: pick_version(TXN_OFFSET_COMMIT, broker).ok(),
            end_txn: pick_version(END_TXN, broker).ok(),
        },
        transaction_version: transaction_version(broker),
    })
}

/// Appends one size-prefixed request frame to `out`.
pub fn encode_request<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    api: ApiSupport,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    body: &R,
) -> Result<(), ProtocolError> {
    api.check(version)?;
    fn encode_err<E: std::fmt::Display>(api: ApiSupport) -> impl Fn(E) -> ProtocolError {
        move |e| ProtocolError::Encode {
            api: api.name,
            reason: e.to_string(),
        }
    }
    let start = out.len();
    let header = RequestHeader::default()
        .with_request_api_key(api.key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = R::header_version(version);
    // One allocation for the whole frame: grown by doubling, a ProduceRequest of a few
    // batches was copied several times over and left the allocator consolidating.
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(version)?))
        .map_err(encode_err(api))?;
    out.reserve(4 + size);
    out.put_i32(0);
    header
        .encode(out, header_version)
        .map_err(encode_err(api))?;
    body.encode(out, version).map_err(encode_err(api))?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The response header version for `api` at `version` (ApiVersions is always v0).
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    api.response_header_version(version)
}

/// Takes one complete frame (without its size prefix) off the front of `buf`, if there is
/// one. A size prefix that is negative or over `max` is an error before any allocation.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 || size as usize > max {
        return Err(ProtocolError::FrameTooLarge {
            size: size as i64,
            max,
        });
    }
    let size = size as usize;
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::MetadataRequest;

    fn broker(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        let mut r = ApiVersionsResponse::default();
        for &(k, min, max) in ranges {
            r.api_keys.push(
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            );
        }
        r
    }

    #[test]
    fn negotiation_picks_highest_common_version() {
        // Kafka 2.8: Produce 0..9, Metadata 0..11, InitProducerId 0..4.
        let kafka28 = broker(&[
            (ApiKey::Produce, 0, 9),
            (ApiKey::Metadata, 0, 11),
            (ApiKey::InitProducerId, 0, 4),
        ]);
        let v = negotiate(&kafka28).unwrap();
        assert_eq!(
            (v.produce, v.metadata, v.init_producer_id),
            (9, 11, Some(4))
        );
        // Kafka 4.x: Produce 3..12 (13 with topic ids), Metadata 0..13.
        let kafka4 = broker(&[(ApiKey::Produce, 3, 13), (ApiKey::Metadata, 0, 13)]);
        let v = negotiate(&kafka4).unwrap();
        assert_eq!((v.produce, v.metadata, v.init_producer_id), (12, 12, None));
        assert_eq!(v.transactions, TransactionVersions::default());
        // Kafka 4.1's transactional APIs.
        let kafka41 = broker(&[
            (ApiKey::Produce, 3, 13),
            (ApiKey::Metadata, 0, 13),
            (ApiKey::FindCoordinator, 0, 6),
            (ApiKey::AddPartitionsToTxn, 0, 5),
            (ApiKey::AddOffsetsToTxn, 0, 4),
            (ApiKey::TxnOffsetCommit, 0, 5),
            (ApiKey::EndTxn, 0, 5),
        ]);
        let mut kafka41 = kafka41;
        kafka41.finalized_features.push(
            kafka_protocol::messages::api_versions_response::FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str("transaction.version"))
                .with_min_version_level(0)
                .with_max_version_level(2),
        );
        let v = negotiate(&kafka41).unwrap();
        assert_eq!(
            v.transactions,
            TransactionVersions {
                find_coordinator: Some(3),
                add_partitions_to_txn: Some(3),
                add_offsets_to_txn: Some(4),
                txn_offset_commit: Some(5),
                end_txn: Some(5),
            }
        );
        assert_eq!(v.transaction_version, 2);
        assert_eq!(negotiate(&kafka28).unwrap().transaction_version, 0);
    }

    #[test]
    fn transaction_version_1_caps_the_apis_version_2_changed() {
        for (api, v1) in [
            (ApiKey::Produce, 11),
            (ApiKey::TxnOffsetCommit, 4),
            (ApiKey::EndTxn, 4),
        ] {
            assert_eq!(transaction_version_cap(api, false), Some(v1), "{api:?}");
            assert_eq!(transaction_version_cap(api, true), None, "{api:?}");
        }
        assert_eq!(transaction_version_cap(ApiKey::Metadata, false), None);
    }

    #[test]
    fn negotiation_names_the_api_that_has_no_common_version() {
        let old = broker(&[(ApiKey::Produce, 0, 2), (ApiKey::Metadata, 0, 5)]);
        let err = negotiate(&old).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::NoCommonVersion { api: "Produce", .. }
        ));
        assert!(err.to_string().contains("Produce"), "{err}");
        let missing = broker(&[(ApiKey::Produce, 3, 9)]);
        assert_eq!(
            negotiate(&missing).unwrap_err(),
            ProtocolError::MissingApi { api: "Metadata" }
        );
    }

    #[test]
    fn frames_are_prefixed_and_split() {
        let mut out = BytesMut::new();
        let client = StrBytes::from_static_str("herald");
        encode_request(
            &mut out,
            METADATA,
            12,
            77,
            &client,
            &MetadataRequest::default(),
        )
        .unwrap();
        encode_request(
            &mut out,
            METADATA,
            4,
            78,
            &client,
            &MetadataRequest::default(),
        )
        .unwrap();
        let first = split_frame(&mut out, 1024).unwrap().unwrap();
        // api key, version, correlation id
        assert_eq!(&first[..8], &[0, 3, 0, 12, 0, 0, 0, 77]);
        let second = split_frame(&mut out, 1024).unwrap().unwrap();
        assert_eq!(&second[..8], &[0, 3, 0, 4, 0, 0, 0, 78]);
        assert!(out.is_empty());
        assert!(split_frame(&mut out, 1024).unwrap().is_none());
        assert!(encode_request(
            &mut out,
            PRODUCE,
            2,
            1,
            &client,
            &MetadataRequest::default()
        )
        .is_err());
    }

    #[test]
    fn oversized_or_negative_prefix_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0][..]);
        assert!(matches!(
            split_frame(&mut buf, MAX_RESPONSE_SIZE),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut buf, MAX_RESPONSE_SIZE).is_err());
        let mut partial = BytesMut::from(&[0, 0, 0, 10, 1, 2][..]);
        assert!(split_frame(&mut partial, 100).unwrap().is_none());
    }
}
