//! Bounded decoders for the responses a producer reads: ApiVersions, Metadata, Produce
//! and InitProducerId, SaslHandshake and SaslAuthenticate, the transactional ones
//! (FindCoordinator, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn; KIP-98,
//! KIP-447), plus the response header.
//!
//! We keep `kafka-protocol`'s message types and its request encoders, but not its response
//! decoders: they reserve `Vec` capacity from counts read off the wire, so a corrupt or
//! hostile response can make one allocation large enough to abort the process. These
//! functions read through [`Reader`], which checks every length and count against the bytes
//! actually left, and fill `kafka-protocol`'s own structs exactly as its `Decodable` impls
//! would (same fields per version, same defaults for absent fields, same tagged fields), so
//! the rest of the client cannot tell which decoder ran. Property tests below compare the two
//! decoders on the same bytes.
//!
//! Field layouts per version are those of the Kafka protocol guide
//! (<https://kafka.apache.org/protocol>); flexible versions use compact encodings and tagged
//! fields as specified by KIP-482
//! (<https://cwiki.apache.org/confluence/display/KAFKA/KIP-482%3A+The+Kafka+Protocol+should+Support+Optional+Tagged+Fields>).
//!
//! `body` is always the bytes after the response header; bytes left over after a complete
//! body are ignored, as `kafka-protocol` ignores them.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiVersionsResponse, BrokerId,
    EndTxnResponse, FindCoordinatorResponse, InitProducerIdResponse, MetadataResponse,
    ProduceResponse, SaslAuthenticateResponse, SaslHandshakeResponse, TopicName,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::reader::Reader;
use crate::error::ProtocolError;

/// Decodes a response header and returns the correlation id and the header's length, so the
/// caller can slice off the body.
///
/// Header v1 (flexible versions) adds a tagged-field section, which carries nothing a
/// producer uses and is skipped.
pub fn decode_response_header(
    body: &[u8],
    header_version: i16,
) -> Result<(i32, usize), ProtocolError> {
    check_version("ResponseHeader", header_version, 0, 1)?;
    let mut r = Reader::new(body);
    let correlation_id = r.i32("ResponseHeader.correlation_id")?;
    if header_version >= 1 {
        r.skip_tagged_fields("ResponseHeader tagged fields")?;
    }
    Ok((correlation_id, r.position()))
}

/// Decodes an ApiVersions response body, versions 0 to 4 (flexible from 3).
pub fn decode_api_versions_response(
    body: &[u8],
    version: i16,
) -> Result<ApiVersionsResponse, ProtocolError> {
    check_version("ApiVersionsResponse", version, 0, 4)?;
    let flexible = version >= 3;
    let mut r = Reader::new(body);
    let mut m = ApiVersionsResponse::default();
    m.error_code = r.i16("ApiVersionsResponse.error_code")?;
    // api_key + min_version + max_version.
    m.api_keys = r.array_of(flexible, 6, "ApiVersionsResponse.api_keys", |r| {
        let mut k = ApiVersion::default();
        k.api_key = r.i16("ApiVersion.api_key")?;
        k.min_version = r.i16("ApiVersion.min_version")?;
        k.max_version = r.i16("ApiVersion.max_version")?;
        if flexible {
            k.unknown_tagged_fields = r.unknown_tagged_fields("ApiVersion tagged fields")?;
        }
        Ok(k)
    })?;
    if version >= 1 {
        m.throttle_time_ms = r.i32("ApiVersionsResponse.throttle_time_ms")?;
    }
    if flexible {
        let mut supported_features = None;
        let mut finalized_features_epoch = None;
        let mut finalized_features = None;
        let mut zk_migration_ready = None;
        let unknown = r.tagged_fields("ApiVersionsResponse tagged fields", |tag, f| {
            match tag {
                0 => {
                    supported_features = Some(f.array_of(
                        true,
                        6,
                        "ApiVersionsResponse.supported_features",
                        |r| {
                            let mut k = SupportedFeatureKey::default();
                            k.name = str_bytes(r.compact_string("SupportedFeatureKey.name")?);
                            k.min_version = r.i16("SupportedFeatureKey.min_version")?;
                            k.max_version = r.i16("SupportedFeatureKey.max_version")?;
                            k.unknown_tagged_fields =
                                r.unknown_tagged_fields("SupportedFeatureKey tagged fields")?;
                            Ok(k)
                        },
                    )?)
                }
                1 => {
                    finalized_features_epoch =
                        Some(f.i64("ApiVersionsResponse.finalized_features_epoch")?)
                }
                2 => {
                    finalized_features = Some(f.array_of(
                        true,
                        6,
                        "ApiVersionsResponse.finalized_features",
                        |r| {
                            let mut k = FinalizedFeatureKey::default();
                            k.name = str_bytes(r.compact_string("FinalizedFeatureKey.name")?);
                            k.max_version_level = r.i16("FinalizedFeatureKey.max_version_level")?;
                            k.min_version_level = r.i16("FinalizedFeatureKey.min_version_level")?;
                            k.unknown_tagged_fields =
                                r.unknown_tagged_fields("FinalizedFeatureKey tagged fields")?;
                            Ok(k)
                        },
                    )?)
                }
                3 => zk_migration_ready = Some(f.bool("ApiVersionsResponse.zk_migration_ready")?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if let Some(v) = supported_features {
            m.supported_features = v;
        }
        if let Some(v) = finalized_features_epoch {
            m.finalized_features_epoch = v;
        }
        if let Some(v) = finalized_features {
            m.finalized_features = v;
        }
        if let Some(v) = zk_migration_ready {
            m.zk_migration_ready = v;
        }
        m.unknown_tagged_fields = unknown;
    }
    Ok(m)
}

/// Decodes a Metadata response body, versions 0 to 13 (flexible from 9).
pub fn decode_metadata_response(
    body: &[u8],
    version: i16,
) -> Result<MetadataResponse, ProtocolError> {
    check_version("MetadataResponse", version, 0, 13)?;
    let flexible = version >= 9;
    let mut r = Reader::new(body);
    let mut m = MetadataResponse::default();
    if version >= 3 {
        m.throttle_time_ms = r.i32("MetadataResponse.throttle_time_ms")?;
    }
    // node_id + host + port: 10 bytes at v0, more later.
    m.brokers = r.array_of(flexible, 10, "MetadataResponse.brokers", |r| {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(r.i32("MetadataResponseBroker.node_id")?);
        b.host = str_bytes(string(r, flexible, "MetadataResponseBroker.host")?);
        b.port = r.i32("MetadataResponseBroker.port")?;
        if version >= 1 {
            b.rack = nullable_string(r, flexible, "MetadataResponseBroker.rack")?.map(str_bytes);
        }
        if flexible {
            b.unknown_tagged_fields =
                r.unknown_tagged_fields("MetadataResponseBroker tagged fields")?;
        }
        Ok(b)
    })?;
    if version >= 2 {
        m.cluster_id =
            nullable_string(&mut r, flexible, "MetadataResponse.cluster_id")?.map(str_bytes);
    }
    if version >= 1 {
        m.controller_id = BrokerId(r.i32("MetadataResponse.controller_id")?);
    }
    // error_code + name + partitions: 8 bytes at v0, more later.
    m.topics = r.array_of(flexible, 8, "MetadataResponse.topics", |r| {
        decode_metadata_topic(r, version, flexible)
    })?;
    if (8..=10).contains(&version) {
        m.cluster_authorized_operations =
            r.i32("MetadataResponse.cluster_authorized_operations")?;
    }
    if version >= 13 {
        m.error_code = r.i16("MetadataResponse.error_code")?;
    }
    if flexible {
        m.unknown_tagged_fields = r.unknown_tagged_fields("MetadataResponse tagged fields")?;
    }
    Ok(m)
}

fn decode_metadata_topic(
    r: &mut Reader<'_>,
    version: i16,
    flexible: bool,
) -> Result<MetadataResponseTopic, ProtocolError> {
    let mut t = MetadataResponseTopic::default();
    t.error_code = r.i16("MetadataResponseTopic.error_code")?;
    t.name = nullable_string(r, flexible, "MetadataResponseTopic.name")?
        .map(|s| TopicName(str_bytes(s)));
    if version >= 10 {
        t.topic_id = uuid(r, "MetadataResponseTopic.topic_id")?;
    }
    if version >= 1 {
        t.is_internal = r.bool("MetadataResponseTopic.is_internal")?;
    }
    // error_code + partition_index + leader_id + two replica lists: 18 bytes in every version.
    t.partitions = r.array_of(flexible, 18, "MetadataResponseTopic.partitions", |r| {
        let mut p = MetadataResponsePartition::default();
        p.error_code = r.i16("MetadataResponsePartition.error_code")?;
        p.partition_index = r.i32("MetadataResponsePartition.partition_index")?;
        p.leader_id = BrokerId(r.i32("MetadataResponsePartition.leader_id")?);
        if version >= 7 {
            p.leader_epoch = r.i32("MetadataResponsePartition.leader_epoch")?;
        }
        p.replica_nodes = broker_ids(r, flexible, "MetadataResponsePartition.replica_nodes")?;
        p.isr_nodes = broker_ids(r, flexible, "MetadataResponsePartition.isr_nodes")?;
        if version >= 5 {
            p.offline_replicas =
                broker_ids(r, flexible, "MetadataResponsePartition.offline_replicas")?;
        }
        if flexible {
            p.unknown_tagged_fields =
                r.unknown_tagged_fields("MetadataResponsePartition tagged fields")?;
        }
        Ok(p)
    })?;
    if version >= 8 {
        t.topic_authorized_operations =
            r.i32("MetadataResponseTopic.topic_authorized_operations")?;
    }
    if flexible {
        t.unknown_tagged_fields = r.unknown_tagged_fields("MetadataResponseTopic tagged fields")?;
    }
    Ok(t)
}

/// Decodes a Produce response body, versions 3 to 13 (flexible from 9).
pub fn decode_produce_response(
    body: &[u8],
    version: i16,
) -> Result<ProduceResponse, ProtocolError> {
    check_version("ProduceResponse", version, 3, 13)?;
    let flexible = version >= 9;
    let mut r = Reader::new(body);
    let mut m = ProduceResponse::default();
    // name or topic id + partition_responses (+ tagged fields): 3 bytes at v9, more elsewhere.
    m.responses = r.array_of(flexible, 3, "ProduceResponse.responses", |r| {
        let mut t = TopicProduceResponse::default();
        if version <= 12 {
            t.name = TopicName(str_bytes(string(r, flexible, "TopicProduceResponse.name")?));
        }
        if version >= 13 {
            t.topic_id = uuid(r, "TopicProduceResponse.topic_id")?;
        }
        // index + error_code + base_offset + log_append_time_ms.
        t.partition_responses = r.array_of(
            flexible,
            22,
            "TopicProduceResponse.partition_responses",
            |r| decode_produce_partition(r, version, flexible),
        )?;
        if flexible {
            t.unknown_tagged_fields =
                r.unknown_tagged_fields("TopicProduceResponse tagged fields")?;
        }
        Ok(t)
    })?;
    m.throttle_time_ms = r.i32("ProduceResponse.throttle_time_ms")?;
    if flexible {
        let mut node_endpoints = None;
        let unknown = r.tagged_fields("ProduceResponse tagged fields", |tag, f| {
            if tag != 0 {
                return Ok(false);
            }
            if version < 10 {
                return Err(tag_not_valid("ProduceResponse tagged fields", tag, version));
            }
            // node_id + host + port + rack + tagged fields.
            node_endpoints = Some(f.array_of(true, 11, "ProduceResponse.node_endpoints", |r| {
                let mut n = NodeEndpoint::default();
                n.node_id = BrokerId(r.i32("NodeEndpoint.node_id")?);
                n.host = str_bytes(r.compact_string("NodeEndpoint.host")?);
                n.port = r.i32("NodeEndpoint.port")?;
                n.rack = r
                    .compact_nullable_string("NodeEndpoint.rack")?
                    .map(str_bytes);
                n.unknown_tagged_fields = r.unknown_tagged_fields("NodeEndpoint tagged fields")?;
                Ok(n)
            })?);
            Ok(true)
        })?;
        if let Some(v) = node_endpoints {
            m.node_endpoints = v;
        }
        m.unknown_tagged_fields = unknown;
    }
    Ok(m)
}

fn decode_produce_partition(
    r: &mut Reader<'_>,
    version: i16,
    flexible: bool,
) -> Result<PartitionProduceResponse, ProtocolError> {
    let mut p = PartitionProduceResponse::default();
    p.index = r.i32("PartitionProduceResponse.index")?;
    p.error_code = r.i16("PartitionProduceResponse.error_code")?;
    p.base_offset = r.i64("PartitionProduceResponse.base_offset")?;
    p.log_append_time_ms = r.i64("PartitionProduceResponse.log_append_time_ms")?;
    if version >= 5 {
        p.log_start_offset = r.i64("PartitionProduceResponse.log_start_offset")?;
    }
    if version >= 8 {
        // batch_index + batch_index_error_message (+ tagged fields): 6 bytes.
        p.record_errors =
            r.array_of(flexible, 6, "PartitionProduceResponse.record_errors", |r| {
                let mut e = BatchIndexAndErrorMessage::default();
                e.batch_index = r.i32("BatchIndexAndErrorMessage.batch_index")?;
                e.batch_index_error_message = nullable_string(
                    r,
                    flexible,
                    "BatchIndexAndErrorMessage.batch_index_error_message",
                )?
                .map(str_bytes);
                if flexible {
                    e.unknown_tagged_fields =
                        r.unknown_tagged_fields("BatchIndexAndErrorMessage tagged fields")?;
                }
                Ok(e)
            })?;
        p.error_message =
            nullable_string(r, flexible, "PartitionProduceResponse.error_message")?.map(str_bytes);
    }
    if flexible {
        let mut current_leader = None;
        let unknown = r.tagged_fields("PartitionProduceResponse tagged fields", |tag, f| {
            if tag != 0 {
                return Ok(false);
            }
            if version < 10 {
                return Err(tag_not_valid(
                    "PartitionProduceResponse tagged fields",
                    tag,
                    version,
                ));
            }
            let mut l = LeaderIdAndEpoch::default();
            l.leader_id = BrokerId(f.i32("LeaderIdAndEpoch.leader_id")?);
            l.leader_epoch = f.i32("LeaderIdAndEpoch.leader_epoch")?;
            l.unknown_tagged_fields = f.unknown_tagged_fields("LeaderIdAndEpoch tagged fields")?;
            current_leader = Some(l);
            Ok(true)
        })?;
        if let Some(l) = current_leader {
            p.current_leader = l;
        }
        p.unknown_tagged_fields = unknown;
    }
    Ok(p)
}

/// Decodes an InitProducerId response body, versions 0 to 6 (flexible from 2).
pub fn decode_init_producer_id_response(
    body: &[u8],
    version: i16,
) -> Result<InitProducerIdResponse, ProtocolError> {
    check_version("InitProducerIdResponse", version, 0, 6)?;
    let mut r = Reader::new(body);
    let mut m = InitProducerIdResponse::default();
    m.throttle_time_ms = r.i32("InitProducerIdResponse.throttle_time_ms")?;
    m.error_code = r.i16("InitProducerIdResponse.error_code")?;
    m.producer_id = r.i64("InitProducerIdResponse.producer_id")?.into();
    m.producer_epoch = r.i16("InitProducerIdResponse.producer_epoch")?;
    if version >= 6 {
        m.ongoing_txn_producer_id = r
            .i64("InitProducerIdResponse.ongoing_txn_producer_id")?
            .into();
        m.ongoing_txn_producer_epoch =
            r.i16("InitProducerIdResponse.ongoing_txn_producer_epoch")?;
    }
    if version >= 2 {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("InitProducerIdResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes a FindCoordinator response body, versions 0 to 3 (flexible from 3; v4 batches
/// keys, which a producer asking for one coordinator at a time does not use).
pub fn decode_find_coordinator_response(
    body: &[u8],
    version: i16,
) -> Result<FindCoordinatorResponse, ProtocolError> {
    check_version("FindCoordinatorResponse", version, 0, 3)?;
    let flexible = version >= 3;
    let mut r = Reader::new(body);
    let mut m = FindCoordinatorResponse::default();
    if version >= 1 {
        m.throttle_time_ms = r.i32("FindCoordinatorResponse.throttle_time_ms")?;
    }
    m.error_code = r.i16("FindCoordinatorResponse.error_code")?;
    if version >= 1 {
        m.error_message =
            nullable_string(&mut r, flexible, "FindCoordinatorResponse.error_message")?
                .map(str_bytes);
    }
    m.node_id = BrokerId(r.i32("FindCoordinatorResponse.node_id")?);
    m.host = str_bytes(string(&mut r, flexible, "FindCoordinatorResponse.host")?);
    m.port = r.i32("FindCoordinatorResponse.port")?;
    if flexible {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("FindCoordinatorResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes an AddPartitionsToTxn response body, versions 0 to 3 (flexible from 3; v4 and
/// later are the brokers' own batched form).
pub fn decode_add_partitions_to_txn_response(
    body: &[u8],
    version: i16,
) -> Result<AddPartitionsToTxnResponse, ProtocolError> {
    check_version("AddPartitionsToTxnResponse", version, 0, 3)?;
    let flexible = version >= 3;
    let mut r = Reader::new(body);
    let mut m = AddPartitionsToTxnResponse::default();
    m.throttle_time_ms = r.i32("AddPartitionsToTxnResponse.throttle_time_ms")?;
    let context = "AddPartitionsToTxnResponse.results_by_topic";
    // name (at least its length) + partition array length.
    m.results_by_topic_v3_and_below = r.array_of(flexible, 2, context, |r| {
        let mut t = AddPartitionsToTxnTopicResult::default();
        t.name = TopicName(str_bytes(string(r, flexible, context)?));
        let context = "AddPartitionsToTxnResponse.results_by_partition";
        // partition_index + partition_error_code.
        t.results_by_partition = r.array_of(flexible, 6, context, |r| {
            let mut p = AddPartitionsToTxnPartitionResult::default();
            p.partition_index = r.i32(context)?;
            p.partition_error_code = r.i16(context)?;
            if flexible {
                p.unknown_tagged_fields = r.unknown_tagged_fields(context)?;
            }
            Ok(p)
        })?;
        if flexible {
            t.unknown_tagged_fields = r.unknown_tagged_fields(context)?;
        }
        Ok(t)
    })?;
    if flexible {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("AddPartitionsToTxnResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes an AddOffsetsToTxn response body, versions 0 to 4 (flexible from 3).
pub fn decode_add_offsets_to_txn_response(
    body: &[u8],
    version: i16,
) -> Result<AddOffsetsToTxnResponse, ProtocolError> {
    check_version("AddOffsetsToTxnResponse", version, 0, 4)?;
    let mut r = Reader::new(body);
    let mut m = AddOffsetsToTxnResponse::default();
    m.throttle_time_ms = r.i32("AddOffsetsToTxnResponse.throttle_time_ms")?;
    m.error_code = r.i16("AddOffsetsToTxnResponse.error_code")?;
    if version >= 3 {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("AddOffsetsToTxnResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes a TxnOffsetCommit response body, versions 0 to 5 (flexible from 3).
pub fn decode_txn_offset_commit_response(
    body: &[u8],
    version: i16,
) -> Result<TxnOffsetCommitResponse, ProtocolError> {
    check_version("TxnOffsetCommitResponse", version, 0, 5)?;
    let flexible = version >= 3;
    let mut r = Reader::new(body);
    let mut m = TxnOffsetCommitResponse::default();
    m.throttle_time_ms = r.i32("TxnOffsetCommitResponse.throttle_time_ms")?;
    let context = "TxnOffsetCommitResponse.topics";
    m.topics = r.array_of(flexible, 2, context, |r| {
        let mut t = TxnOffsetCommitResponseTopic::default();
        t.name = TopicName(str_bytes(string(r, flexible, context)?));
        let context = "TxnOffsetCommitResponse.partitions";
        t.partitions = r.array_of(flexible, 6, context, |r| {
            let mut p = TxnOffsetCommitResponsePartition::default();
            p.partition_index = r.i32(context)?;
            p.error_code = r.i16(context)?;
            if flexible {
                p.unknown_tagged_fields = r.unknown_tagged_fields(context)?;
            }
            Ok(p)
        })?;
        if flexible {
            t.unknown_tagged_fields = r.unknown_tagged_fields(context)?;
        }
        Ok(t)
    })?;
    if flexible {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("TxnOffsetCommitResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes an EndTxn response body, versions 0 to 5 (flexible from 3; v5 returns the
/// producer id and the epoch bumped by the end of the transaction, KIP-890).
pub fn decode_end_txn_response(body: &[u8], version: i16) -> Result<EndTxnResponse, ProtocolError> {
    check_version("EndTxnResponse", version, 0, 5)?;
    let mut r = Reader::new(body);
    let mut m = EndTxnResponse::default();
    m.throttle_time_ms = r.i32("EndTxnResponse.throttle_time_ms")?;
    m.error_code = r.i16("EndTxnResponse.error_code")?;
    if version >= 5 {
        m.producer_id = r.i64("EndTxnResponse.producer_id")?.into();
        m.producer_epoch = r.i16("EndTxnResponse.producer_epoch")?;
    }
    if version >= 3 {
        m.unknown_tagged_fields = r.unknown_tagged_fields("EndTxnResponse tagged fields")?;
    }
    Ok(m)
}

/// Decodes a SaslHandshake response body, versions 0 and 1 (KIP-43, KIP-152).
pub fn decode_sasl_handshake_response(
    body: &[u8],
    version: i16,
) -> Result<SaslHandshakeResponse, ProtocolError> {
    check_version("SaslHandshakeResponse", version, 0, 1)?;
    let mut r = Reader::new(body);
    let mut m = SaslHandshakeResponse::default();
    m.error_code = r.i16("SaslHandshakeResponse.error_code")?;
    let context = "SaslHandshakeResponse.mechanisms";
    m.mechanisms = r.array_of(false, 2, context, |r| Ok(str_bytes(r.string(context)?)))?;
    Ok(m)
}

/// Decodes a SaslAuthenticate response body, versions 0 to 2 (flexible from 2; v1 adds the
/// session lifetime of KIP-368).
pub fn decode_sasl_authenticate_response(
    body: &[u8],
    version: i16,
) -> Result<SaslAuthenticateResponse, ProtocolError> {
    check_version("SaslAuthenticateResponse", version, 0, 2)?;
    let flexible = version >= 2;
    let mut r = Reader::new(body);
    let mut m = SaslAuthenticateResponse::default();
    m.error_code = r.i16("SaslAuthenticateResponse.error_code")?;
    m.error_message =
        nullable_string(&mut r, flexible, "SaslAuthenticateResponse.error_message")?.map(str_bytes);
    let context = "SaslAuthenticateResponse.auth_bytes";
    m.auth_bytes = Bytes::copy_from_slice(if flexible {
        r.compact_bytes(context)?
    } else {
        r.bytes(context)?
    });
    if version >= 1 {
        m.session_lifetime_ms = r.i64("SaslAuthenticateResponse.session_lifetime_ms")?;
    }
    if flexible {
        m.unknown_tagged_fields =
            r.unknown_tagged_fields("SaslAuthenticateResponse tagged fields")?;
    }
    Ok(m)
}

fn check_version(api: &'static str, version: i16, min: i16, max: i16) -> Result<(), ProtocolError> {
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedVersion { api, version })
    }
}

fn tag_not_valid(context: &'static str, tag: u32, version: i16) -> ProtocolError {
    ProtocolError::Malformed {
        context,
        reason: format!("tag {tag} is not valid for version {version}"),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn string<'a>(
    r: &mut Reader<'a>,
    flexible: bool,
    context: &'static str,
) -> Result<&'a str, ProtocolError> {
    if flexible {
        r.compact_string(context)
    } else {
        r.string(context)
    }
}

fn nullable_string<'a>(
    r: &mut Reader<'a>,
    flexible: bool,
    context: &'static str,
) -> Result<Option<&'a str>, ProtocolError> {
    if flexible {
        r.compact_nullable_string(context)
    } else {
        r.nullable_string(context)
    }
}

fn broker_ids(
    r: &mut Reader<'_>,
    flexible: bool,
    context: &'static str,
) -> Result<Vec<BrokerId>, ProtocolError> {
    r.array_of(flexible, 4, context, |r| Ok(BrokerId(r.i32(context)?)))
}

/// Reads a UUID into `kafka-protocol`'s type. The `uuid` crate is not a direct dependency, so
/// the conversion goes through the `TryFrom<Vec<u8>>` it implements; 16 bytes always convert.
fn uuid<T>(r: &mut Reader<'_>, context: &'static str) -> Result<T, ProtocolError>
where
    T: TryFrom<Vec<u8>>,
{
    let bytes = r.uuid(context)?;
    T::try_from(bytes.to_vec()).map_err(|_| ProtocolError::Malformed {
        context,
        reason: "not a UUID".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    //! Differential tests against `kafka-protocol`'s own decoders.
    //!
    //! `kafka-protocol` only implements `Encodable` for responses behind its `broker` feature,
    //! which this crate does not enable, so valid bodies are produced by the small encoder
    //! below, written from the protocol guide. That encoder is not trusted: every body it
    //! produces must decode with `kafka-protocol` consuming every byte, and our decode must
    //! equal that decode. Garbage, truncated and mutated inputs only reach `kafka-protocol`
    //! after our decoder accepted them, so its unbounded allocations are never triggered.

    use std::collections::BTreeMap;
    use std::fmt::Debug;
    use std::time::{Duration, Instant};

    use bytes::{Buf, Bytes};
    use kafka_protocol::protocol::Decodable;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    // ---- a minimal encoder for test inputs ----

    fn uvarint(b: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
    }

    fn string(b: &mut Vec<u8>, flex: bool, s: &str) {
        if flex {
            uvarint(b, s.len() as u32 + 1);
        } else {
            b.extend_from_slice(&(s.len() as i16).to_be_bytes());
        }
        b.extend_from_slice(s.as_bytes());
    }

    fn nullable_string(b: &mut Vec<u8>, flex: bool, s: Option<&StrBytes>) {
        match s {
            Some(s) => string(b, flex, s),
            None if flex => uvarint(b, 0),
            None => b.extend_from_slice(&(-1i16).to_be_bytes()),
        }
    }

    fn array<T>(b: &mut Vec<u8>, flex: bool, items: &[T], mut f: impl FnMut(&mut Vec<u8>, &T)) {
        if flex {
            uvarint(b, items.len() as u32 + 1);
        } else {
            b.extend_from_slice(&(items.len() as i32).to_be_bytes());
        }
        for item in items {
            f(b, item);
        }
    }

    /// Known fields first (as `kafka-protocol` writes them), then the unknown ones.
    fn tags(b: &mut Vec<u8>, known: Vec<(u32, Vec<u8>)>, unknown: &BTreeMap<i32, Bytes>) {
        uvarint(b, (known.len() + unknown.len()) as u32);
        for (tag, data) in known {
            uvarint(b, tag);
            uvarint(b, data.len() as u32);
            b.extend_from_slice(&data);
        }
        for (tag, data) in unknown {
            uvarint(b, *tag as u32);
            uvarint(b, data.len() as u32);
            b.extend_from_slice(data);
        }
    }

    fn put<const N: usize>(b: &mut Vec<u8>, bytes: [u8; N]) {
        b.extend_from_slice(&bytes);
    }

    fn uuid_bytes<T: Into<Vec<u8>> + Clone>(u: &T) -> Vec<u8> {
        u.clone().into()
    }

    fn enc_api_versions(m: &ApiVersionsResponse, v: i16) -> Vec<u8> {
        let flex = v >= 3;
        let mut b = Vec::new();
        put(&mut b, m.error_code.to_be_bytes());
        array(&mut b, flex, &m.api_keys, |b, k| {
            put(b, k.api_key.to_be_bytes());
            put(b, k.min_version.to_be_bytes());
            put(b, k.max_version.to_be_bytes());
            if flex {
                tags(b, vec![], &k.unknown_tagged_fields);
            }
        });
        if v >= 1 {
            put(&mut b, m.throttle_time_ms.to_be_bytes());
        }
        if flex {
            let mut known = Vec::new();
            if !m.supported_features.is_empty() {
                let mut f = Vec::new();
                array(&mut f, true, &m.supported_features, |b, k| {
                    string(b, true, &k.name);
                    put(b, k.min_version.to_be_bytes());
                    put(b, k.max_version.to_be_bytes());
                    tags(b, vec![], &k.unknown_tagged_fields);
                });
                known.push((0, f));
            }
            if m.finalized_features_epoch != -1 {
                known.push((1, m.finalized_features_epoch.to_be_bytes().to_vec()));
            }
            if !m.finalized_features.is_empty() {
                let mut f = Vec::new();
                array(&mut f, true, &m.finalized_features, |b, k| {
                    string(b, true, &k.name);
                    put(b, k.max_version_level.to_be_bytes());
                    put(b, k.min_version_level.to_be_bytes());
                    tags(b, vec![], &k.unknown_tagged_fields);
                });
                known.push((2, f));
            }
            if m.zk_migration_ready {
                known.push((3, vec![1]));
            }
            tags(&mut b, known, &m.unknown_tagged_fields);
        }
        b
    }

    fn enc_metadata(m: &MetadataResponse, v: i16) -> Vec<u8> {
        let flex = v >= 9;
        let mut b = Vec::new();
        if v >= 3 {
            put(&mut b, m.throttle_time_ms.to_be_bytes());
        }
        array(&mut b, flex, &m.brokers, |b, br| {
            put(b, br.node_id.0.to_be_bytes());
            string(b, flex, &br.host);
            put(b, br.port.to_be_bytes());
            if v >= 1 {
                nullable_string(b, flex, br.rack.as_ref());
            }
            if flex {
                tags(b, vec![], &br.unknown_tagged_fields);
            }
        });
        if v >= 2 {
            nullable_string(&mut b, flex, m.cluster_id.as_ref());
        }
        if v >= 1 {
            put(&mut b, m.controller_id.0.to_be_bytes());
        }
        array(&mut b, flex, &m.topics, |b, t| {
            put(b, t.error_code.to_be_bytes());
            nullable_string(b, flex, t.name.as_ref().map(|n| &n.0));
            if v >= 10 {
                b.extend_from_slice(&uuid_bytes(&t.topic_id));
            }
            if v >= 1 {
                b.push(t.is_internal as u8);
            }
            array(b, flex, &t.partitions, |b, p| {
                put(b, p.error_code.to_be_bytes());
                put(b, p.partition_index.to_be_bytes());
                put(b, p.leader_id.0.to_be_bytes());
                if v >= 7 {
                    put(b, p.leader_epoch.to_be_bytes());
                }
                let ids = |b: &mut Vec<u8>, ids: &[BrokerId]| {
                    array(b, flex, ids, |b, id| put(b, id.0.to_be_bytes()))
                };
                ids(b, &p.replica_nodes);
                ids(b, &p.isr_nodes);
                if v >= 5 {
                    ids(b, &p.offline_replicas);
                }
                if flex {
                    tags(b, vec![], &p.unknown_tagged_fields);
                }
            });
            if v >= 8 {
                put(b, t.topic_authorized_operations.to_be_bytes());
            }
            if flex {
                tags(b, vec![], &t.unknown_tagged_fields);
            }
        });
        if (8..=10).contains(&v) {
            put(&mut b, m.cluster_authorized_operations.to_be_bytes());
        }
        if v >= 13 {
            put(&mut b, m.error_code.to_be_bytes());
        }
        if flex {
            tags(&mut b, vec![], &m.unknown_tagged_fields);
        }
        b
    }

    fn enc_produce(m: &ProduceResponse, v: i16) -> Vec<u8> {
        let flex = v >= 9;
        let mut b = Vec::new();
        array(&mut b, flex, &m.responses, |b, t| {
            if v <= 12 {
                string(b, flex, &t.name.0);
            } else {
                b.extend_from_slice(&uuid_bytes(&t.topic_id));
            }
            array(b, flex, &t.partition_responses, |b, p| {
                put(b, p.index.to_be_bytes());
                put(b, p.error_code.to_be_bytes());
                put(b, p.base_offset.to_be_bytes());
                put(b, p.log_append_time_ms.to_be_bytes());
                if v >= 5 {
                    put(b, p.log_start_offset.to_be_bytes());
                }
                if v >= 8 {
                    array(b, flex, &p.record_errors, |b, e| {
                        put(b, e.batch_index.to_be_bytes());
                        nullable_string(b, flex, e.batch_index_error_message.as_ref());
                        if flex {
                            tags(b, vec![], &e.unknown_tagged_fields);
                        }
                    });
                    nullable_string(b, flex, p.error_message.as_ref());
                }
                if flex {
                    let mut known = Vec::new();
                    if v >= 10 && p.current_leader != LeaderIdAndEpoch::default() {
                        let l = &p.current_leader;
                        let mut f = Vec::new();
                        put(&mut f, l.leader_id.0.to_be_bytes());
                        put(&mut f, l.leader_epoch.to_be_bytes());
                        tags(&mut f, vec![], &l.unknown_tagged_fields);
                        known.push((0, f));
                    }
                    tags(b, known, &p.unknown_tagged_fields);
                }
            });
            if flex {
                tags(b, vec![], &t.unknown_tagged_fields);
            }
        });
        put(&mut b, m.throttle_time_ms.to_be_bytes());
        if flex {
            let mut known = Vec::new();
            if v >= 10 && !m.node_endpoints.is_empty() {
                let mut f = Vec::new();
                array(&mut f, true, &m.node_endpoints, |b, n| {
                    put(b, n.node_id.0.to_be_bytes());
                    string(b, true, &n.host);
                    put(b, n.port.to_be_bytes());
                    nullable_string(b, true, n.rack.as_ref());
                    tags(b, vec![], &n.unknown_tagged_fields);
                });
                known.push((0, f));
            }
            tags(&mut b, known, &m.unknown_tagged_fields);
        }
        b
    }

    fn enc_init_producer_id(m: &InitProducerIdResponse, v: i16) -> Vec<u8> {
        let mut b = Vec::new();
        put(&mut b, m.throttle_time_ms.to_be_bytes());
        put(&mut b, m.error_code.to_be_bytes());
        put(&mut b, m.producer_id.0.to_be_bytes());
        put(&mut b, m.producer_epoch.to_be_bytes());
        if v >= 6 {
            put(&mut b, m.ongoing_txn_producer_id.0.to_be_bytes());
            put(&mut b, m.ongoing_txn_producer_epoch.to_be_bytes());
        }
        if v >= 2 {
            tags(&mut b, vec![], &m.unknown_tagged_fields);
        }
        b
    }

    // ---- generators ----

    fn text() -> impl Strategy<Value = StrBytes> {
        prop_oneof![
            4 => "[a-z0-9._-]{0,12}",
            1 => "\\PC{0,6}",
            1 => "[a-z]{130,140}", // length needs a 2-byte varint
        ]
        .prop_map(StrBytes::from_string)
    }

    fn opt_text() -> impl Strategy<Value = Option<StrBytes>> {
        prop::option::of(text())
    }

    /// Unknown tagged fields with tags from `first` on (lower tags are known fields).
    fn unknown_tags(first: i32) -> impl Strategy<Value = BTreeMap<i32, Bytes>> {
        let tag = prop_oneof![4 => first..first + 40, 1 => 200..i32::MAX];
        let data = prop_oneof![
            8 => vec(any::<u8>(), 0..6),
            1 => vec(any::<u8>(), 128..160),
        ]
        .prop_map(Bytes::from);
        btree_map(tag, data, 0..3)
    }

    fn uuid_of<T: TryFrom<Vec<u8>>>(bytes: [u8; 16]) -> T
    where
        T::Error: Debug,
    {
        T::try_from(bytes.to_vec()).unwrap()
    }

    fn api_versions() -> impl Strategy<Value = ApiVersionsResponse> {
        let key = (any::<(i16, i16, i16)>(), unknown_tags(0)).prop_map(|((a, b, c), t)| {
            let mut k = ApiVersion::default();
            k.api_key = a;
            k.min_version = b;
            k.max_version = c;
            k.unknown_tagged_fields = t;
            k
        });
        let supported =
            (text(), any::<(i16, i16)>(), unknown_tags(0)).prop_map(|(n, (a, b), t)| {
                let mut k = SupportedFeatureKey::default();
                k.name = n;
                k.min_version = a;
                k.max_version = b;
                k.unknown_tagged_fields = t;
                k
            });
        let finalized =
            (text(), any::<(i16, i16)>(), unknown_tags(0)).prop_map(|(n, (a, b), t)| {
                let mut k = FinalizedFeatureKey::default();
                k.name = n;
                k.max_version_level = a;
                k.min_version_level = b;
                k.unknown_tagged_fields = t;
                k
            });
        (
            any::<(i16, i32)>(),
            vec(key, 0..4),
            vec(supported, 0..4),
            prop_oneof![Just(-1i64), any::<i64>()],
            vec(finalized, 0..4),
            any::<bool>(),
            unknown_tags(4),
        )
            .prop_map(|((e, th), keys, sup, epoch, fin, zk, t)| {
                let mut m = ApiVersionsResponse::default();
                m.error_code = e;
                m.throttle_time_ms = th;
                m.api_keys = keys;
                m.supported_features = sup;
                m.finalized_features_epoch = epoch;
                m.finalized_features = fin;
                m.zk_migration_ready = zk;
                m.unknown_tagged_fields = t;
                m
            })
    }

    fn ids() -> impl Strategy<Value = Vec<BrokerId>> {
        vec(any::<i32>().prop_map(BrokerId), 0..4)
    }

    fn metadata() -> impl Strategy<Value = MetadataResponse> {
        let broker = (any::<(i32, i32)>(), text(), opt_text(), unknown_tags(0)).prop_map(
            |((id, port), host, rack, t)| {
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(id);
                b.host = host;
                b.port = port;
                b.rack = rack;
                b.unknown_tagged_fields = t;
                b
            },
        );
        let partition = (
            any::<(i16, i32, i32, i32)>(),
            ids(),
            ids(),
            ids(),
            unknown_tags(0),
        )
            .prop_map(|((e, idx, leader, epoch), r, i, o, t)| {
                let mut p = MetadataResponsePartition::default();
                p.error_code = e;
                p.partition_index = idx;
                p.leader_id = BrokerId(leader);
                p.leader_epoch = epoch;
                p.replica_nodes = r;
                p.isr_nodes = i;
                p.offline_replicas = o;
                p.unknown_tagged_fields = t;
                p
            });
        let topic = (
            any::<(i16, bool, i32, [u8; 16])>(),
            opt_text(),
            vec(partition, 0..4),
            unknown_tags(0),
        )
            .prop_map(|((e, internal, ops, id), name, parts, t)| {
                let mut topic = MetadataResponseTopic::default();
                topic.error_code = e;
                topic.name = name.map(TopicName);
                topic.topic_id = uuid_of(id);
                topic.is_internal = internal;
                topic.partitions = parts;
                topic.topic_authorized_operations = ops;
                topic.unknown_tagged_fields = t;
                topic
            });
        (
            any::<(i32, i32, i32, i16)>(),
            vec(broker, 0..4),
            opt_text(),
            vec(topic, 0..4),
            unknown_tags(0),
        )
            .prop_map(|((th, ctrl, ops, e), brokers, cluster, topics, t)| {
                let mut m = MetadataResponse::default();
                m.throttle_time_ms = th;
                m.brokers = brokers;
                m.cluster_id = cluster;
                m.controller_id = BrokerId(ctrl);
                m.topics = topics;
                m.cluster_authorized_operations = ops;
                m.error_code = e;
                m.unknown_tagged_fields = t;
                m
            })
    }

    fn produce() -> impl Strategy<Value = ProduceResponse> {
        let record_error = (any::<i32>(), opt_text(), unknown_tags(0)).prop_map(|(i, msg, t)| {
            let mut e = BatchIndexAndErrorMessage::default();
            e.batch_index = i;
            e.batch_index_error_message = msg;
            e.unknown_tagged_fields = t;
            e
        });
        let leader = prop_oneof![
            Just(LeaderIdAndEpoch::default()),
            (any::<(i32, i32)>(), unknown_tags(0)).prop_map(|((id, epoch), t)| {
                let mut l = LeaderIdAndEpoch::default();
                l.leader_id = BrokerId(id);
                l.leader_epoch = epoch;
                l.unknown_tagged_fields = t;
                l
            }),
        ];
        let partition = (
            any::<(i32, i16, i64, i64, i64)>(),
            vec(record_error, 0..3),
            opt_text(),
            leader,
            unknown_tags(1),
        )
            .prop_map(|((idx, e, base, append, start), errs, msg, leader, t)| {
                let mut p = PartitionProduceResponse::default();
                p.index = idx;
                p.error_code = e;
                p.base_offset = base;
                p.log_append_time_ms = append;
                p.log_start_offset = start;
                p.record_errors = errs;
                p.error_message = msg;
                p.current_leader = leader;
                p.unknown_tagged_fields = t;
                p
            });
        let topic = (
            text(),
            any::<[u8; 16]>(),
            vec(partition, 0..4),
            unknown_tags(0),
        )
            .prop_map(|(name, id, parts, t)| {
                let mut topic = TopicProduceResponse::default();
                topic.name = TopicName(name);
                topic.topic_id = uuid_of(id);
                topic.partition_responses = parts;
                topic.unknown_tagged_fields = t;
                topic
            });
        let endpoint = (any::<(i32, i32)>(), text(), opt_text(), unknown_tags(0)).prop_map(
            |((id, port), host, rack, t)| {
                let mut n = NodeEndpoint::default();
                n.node_id = BrokerId(id);
                n.host = host;
                n.port = port;
                n.rack = rack;
                n.unknown_tagged_fields = t;
                n
            },
        );
        (
            vec(topic, 0..4),
            any::<i32>(),
            vec(endpoint, 0..3),
            unknown_tags(1),
        )
            .prop_map(|(topics, th, nodes, t)| {
                let mut m = ProduceResponse::default();
                m.responses = topics;
                m.throttle_time_ms = th;
                m.node_endpoints = nodes;
                m.unknown_tagged_fields = t;
                m
            })
    }

    fn enc_sasl_handshake(m: &SaslHandshakeResponse, _v: i16) -> Vec<u8> {
        let mut b = Vec::new();
        put(&mut b, m.error_code.to_be_bytes());
        array(&mut b, false, &m.mechanisms, |b, s| string(b, false, s));
        b
    }

    fn enc_sasl_authenticate(m: &SaslAuthenticateResponse, v: i16) -> Vec<u8> {
        let flex = v >= 2;
        let mut b = Vec::new();
        put(&mut b, m.error_code.to_be_bytes());
        nullable_string(&mut b, flex, m.error_message.as_ref());
        if flex {
            uvarint(&mut b, m.auth_bytes.len() as u32 + 1);
        } else {
            put(&mut b, (m.auth_bytes.len() as i32).to_be_bytes());
        }
        b.extend_from_slice(&m.auth_bytes);
        if v >= 1 {
            put(&mut b, m.session_lifetime_ms.to_be_bytes());
        }
        if flex {
            tags(&mut b, vec![], &m.unknown_tagged_fields);
        }
        b
    }

    fn sasl_handshake() -> impl Strategy<Value = SaslHandshakeResponse> {
        (any::<i16>(), vec(text(), 0..4)).prop_map(|(e, mechanisms)| {
            let mut m = SaslHandshakeResponse::default();
            m.error_code = e;
            m.mechanisms = mechanisms;
            m
        })
    }

    fn sasl_authenticate() -> impl Strategy<Value = SaslAuthenticateResponse> {
        (
            any::<(i16, i64)>(),
            opt_text(),
            vec(any::<u8>(), 0..64),
            unknown_tags(0),
        )
            .prop_map(|((e, lifetime), message, auth, t)| {
                let mut m = SaslAuthenticateResponse::default();
                m.error_code = e;
                m.error_message = message;
                m.auth_bytes = Bytes::from(auth);
                m.session_lifetime_ms = lifetime;
                m.unknown_tagged_fields = t;
                m
            })
    }

    fn init_producer_id() -> impl Strategy<Value = InitProducerIdResponse> {
        (any::<(i32, i16, i64, i16, i64, i16)>(), unknown_tags(0)).prop_map(
            |((th, e, pid, epoch, opid, oepoch), t)| {
                let mut m = InitProducerIdResponse::default();
                m.throttle_time_ms = th;
                m.error_code = e;
                m.producer_id = pid.into();
                m.producer_epoch = epoch;
                m.ongoing_txn_producer_id = opid.into();
                m.ongoing_txn_producer_epoch = oepoch;
                m.unknown_tagged_fields = t;
                m
            },
        )
    }

    // ---- oracles ----

    type Ours<T> = fn(&[u8], i16) -> Result<T, ProtocolError>;

    /// `kafka-protocol`'s decode of `body`, and how many bytes it left unread.
    fn theirs<T: Decodable>(body: &[u8], version: i16) -> (Result<T, String>, usize) {
        let mut buf = Bytes::copy_from_slice(body);
        let result = T::decode(&mut buf, version).map_err(|e| e.to_string());
        (result, buf.remaining())
    }

    /// A well-formed body: both decoders accept it, `kafka-protocol` reads all of it, and the
    /// results are equal. Every strict prefix is rejected by ours.
    fn check_valid<T: Decodable + PartialEq + Debug>(body: &[u8], version: i16, ours: Ours<T>) {
        let (expected, left) = theirs::<T>(body, version);
        let expected = expected.unwrap_or_else(|e| {
            panic!("kafka-protocol rejects test encoding at v{version}: {e}; body {body:02x?}")
        });
        assert_eq!(left, 0, "test encoder wrote trailing bytes at v{version}");
        let actual = ours(body, version)
            .unwrap_or_else(|e| panic!("our decoder rejects a valid v{version} body: {e}"));
        assert_eq!(actual, expected, "v{version}");

        // Trailing bytes are ignored.
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(ours(&longer, version).unwrap(), expected);

        for cut in 0..body.len() {
            assert!(
                ours(&body[..cut], version).is_err(),
                "prefix of {cut}/{} bytes accepted at v{version}",
                body.len()
            );
        }
    }

    /// Arbitrary input: ours must not panic, and whatever it accepts `kafka-protocol` must
    /// accept identically. (Only then is it safe to run `kafka-protocol` on garbage: every
    /// count it will read has passed our bounds check.)
    fn check_any<T: Decodable + PartialEq + Debug>(body: &[u8], version: i16, ours: Ours<T>) {
        if let Ok(actual) = ours(body, version) {
            let (expected, _) = theirs::<T>(body, version);
            let expected = expected.unwrap_or_else(|e| {
                panic!("we accept what kafka-protocol rejects at v{version}: {e}; {body:02x?}")
            });
            assert_eq!(actual, expected, "v{version}, body {body:02x?}");
        }
    }

    fn mutate(body: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
        let mut out = body.to_vec();
        if !out.is_empty() {
            for &(at, byte) in edits {
                let at = at % out.len();
                out[at] = byte;
            }
        }
        out
    }

    fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
        vec(
            (
                any::<usize>(),
                prop_oneof![Just(0u8), Just(0xff), Just(0x80), any::<u8>()],
            ),
            1..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        #[test]
        fn api_versions_matches_kafka_protocol(m in api_versions(), ed in edits()) {
            for v in 0..=4 {
                let body = enc_api_versions(&m, v);
                check_valid(&body, v, decode_api_versions_response);
                check_any(&mutate(&body, &ed), v, decode_api_versions_response);
            }
        }

        #[test]
        fn metadata_matches_kafka_protocol(m in metadata(), ed in edits()) {
            for v in 0..=13 {
                let body = enc_metadata(&m, v);
                check_valid(&body, v, decode_metadata_response);
                check_any(&mutate(&body, &ed), v, decode_metadata_response);
            }
        }

        #[test]
        fn produce_matches_kafka_protocol(m in produce(), ed in edits()) {
            for v in 3..=13 {
                let body = enc_produce(&m, v);
                check_valid(&body, v, decode_produce_response);
                check_any(&mutate(&body, &ed), v, decode_produce_response);
            }
        }

        #[test]
        fn init_producer_id_matches_kafka_protocol(m in init_producer_id(), ed in edits()) {
            for v in 0..=6 {
                let body = enc_init_producer_id(&m, v);
                check_valid(&body, v, decode_init_producer_id_response);
                check_any(&mutate(&body, &ed), v, decode_init_producer_id_response);
            }
        }

        #[test]
        fn sasl_responses_match_kafka_protocol(
            h in sasl_handshake(),
            a in sasl_authenticate(),
            ed in edits(),
        ) {
            for v in 0..=1 {
                let body = enc_sasl_handshake(&h, v);
                check_valid(&body, v, decode_sasl_handshake_response);
                check_any(&mutate(&body, &ed), v, decode_sasl_handshake_response);
            }
            for v in 0..=2 {
                let body = enc_sasl_authenticate(&a, v);
                check_valid(&body, v, decode_sasl_authenticate_response);
                check_any(&mutate(&body, &ed), v, decode_sasl_authenticate_response);
            }
        }

        #[test]
        fn garbage_never_panics(body in prop_oneof![
            vec(any::<u8>(), 0..64),
            vec(prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff)], 0..256),
        ]) {
            for v in 0..=4 {
                check_any(&body, v, decode_api_versions_response);
            }
            for v in 0..=13 {
                check_any(&body, v, decode_metadata_response);
            }
            for v in 3..=13 {
                check_any(&body, v, decode_produce_response);
            }
            for v in 0..=6 {
                check_any(&body, v, decode_init_producer_id_response);
            }
            for v in 0..=1 {
                check_any(&body, v, decode_sasl_handshake_response);
            }
            for v in 0..=2 {
                check_any(&body, v, decode_sasl_authenticate_response);
            }
            for hv in 0..=1 {
                let _ = decode_response_header(&body, hv);
            }
        }
    }

    /// Arrays of the smallest possible elements, at the end of their enclosing structure,
    /// so the input left is exactly count x element size: proves the minimum element sizes
    /// used to reject impossible counts are never larger than a real element.
    #[test]
    fn smallest_elements_fit_the_count_check() {
        for n in [1usize, 3, 17] {
            let mut m = ApiVersionsResponse::default();
            m.api_keys = vec![ApiVersion::default(); n];
            m.supported_features = vec![SupportedFeatureKey::default(); n];
            m.finalized_features = vec![FinalizedFeatureKey::default(); n];
            for v in 0..=4 {
                check_valid(&enc_api_versions(&m, v), v, decode_api_versions_response);
            }

            let mut topic = MetadataResponseTopic::default();
            topic.name = None;
            let mut m = MetadataResponse::default();
            m.brokers = vec![MetadataResponseBroker::default(); n];
            m.topics = vec![topic.clone(); n];
            let mut one = MetadataResponse::default();
            topic.partitions = vec![MetadataResponsePartition::default(); n];
            one.topics = vec![topic];
            let mut brokers_only = MetadataResponse::default();
            brokers_only.brokers = vec![MetadataResponseBroker::default(); n];
            let mut partition = MetadataResponsePartition::default();
            partition.replica_nodes = vec![BrokerId(1); n];
            partition.isr_nodes = vec![BrokerId(1); n];
            partition.offline_replicas = vec![BrokerId(1); n];
            let mut topic = MetadataResponseTopic::default();
            topic.partitions = vec![partition];
            let mut replicas = MetadataResponse::default();
            replicas.topics = vec![topic];
            for v in 0..=13 {
                for msg in [&m, &one, &brokers_only, &replicas] {
                    check_valid(&enc_metadata(msg, v), v, decode_metadata_response);
                }
            }

            let mut m = ProduceResponse::default();
            m.responses = vec![TopicProduceResponse::default(); n];
            m.node_endpoints = vec![NodeEndpoint::default(); n];
            let mut partition = PartitionProduceResponse::default();
            partition.record_errors = vec![BatchIndexAndErrorMessage::default(); n];
            let mut topic = TopicProduceResponse::default();
            topic.partition_responses = vec![partition; n];
            let mut one = ProduceResponse::default();
            one.responses = vec![topic];
            for v in 3..=13 {
                check_valid(&enc_produce(&m, v), v, decode_produce_response);
                check_valid(&enc_produce(&one, v), v, decode_produce_response);
            }
        }
    }

    // ---- crafted inputs ----

    fn assert_invalid_length<T: Debug>(result: Result<T, ProtocolError>) {
        match result {
            Err(ProtocolError::InvalidLength { .. }) => {}
            other => panic!("expected InvalidLength, got {other:?}"),
        }
    }

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        let start = Instant::now();
        // ApiVersions v0: error_code, then api_keys count 0x7fffffff.
        let body = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_invalid_length(decode_api_versions_response(&body, 0));
        // ApiVersions v3: compact count 0xffffffff - 1.
        let body = [0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0];
        assert_invalid_length(decode_api_versions_response(&body, 3));
        // Metadata v1: brokers count 0x7fffffff.
        let body = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert_invalid_length(decode_metadata_response(&body, 1));
        // Metadata v1: no brokers, controller, one topic with partitions count 0x7fffffff.
        let body = [
            0, 0, 0, 0, // brokers
            0, 0, 0, 1, // controller
            0, 0, 0, 1, // topics
            0, 0, 0, 1, b't', 0, // error, name, is_internal
            0x7f, 0xff, 0xff, 0xff, // partitions
        ];
        assert_invalid_length(decode_metadata_response(&body, 1));
        // Produce v3: responses count 0x7fffffff.
        let body = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_invalid_length(decode_produce_response(&body, 3));
        // InitProducerId v2: tagged field count 0xffffffff.
        let mut body = vec![0; 16];
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_invalid_length(decode_init_producer_id_response(&body, 2));
        // A string longer than the input.
        let body = [0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, b'h'];
        assert_invalid_length(decode_metadata_response(&body, 0));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn unsupported_versions_are_errors() {
        let unsupported = |r: Result<(), ProtocolError>| {
            assert!(matches!(r, Err(ProtocolError::UnsupportedVersion { .. })));
        };
        unsupported(decode_api_versions_response(&[], 5).map(drop));
        unsupported(decode_api_versions_response(&[], -1).map(drop));
        unsupported(decode_metadata_response(&[], 14).map(drop));
        unsupported(decode_produce_response(&[], 2).map(drop));
        unsupported(decode_produce_response(&[], 14).map(drop));
        unsupported(decode_init_producer_id_response(&[], 7).map(drop));
        unsupported(decode_response_header(&[0; 8], 2).map(drop));
    }

    #[test]
    fn known_tag_in_a_version_without_it_is_rejected() {
        // Produce v9 with tag 0 (node_endpoints exists from v10 only): empty responses,
        // throttle, one tagged field 0 holding an empty compact array.
        let body = [1, 0, 0, 0, 0, 1, 0, 1, 1];
        assert!(matches!(
            decode_produce_response(&body, 9),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(decode_produce_response(&body, 10).is_ok());
    }

    #[test]
    fn response_header() {
        let body = [0, 0, 1, 2, 0, 0xaa];
        assert_eq!(decode_response_header(&body, 0).unwrap(), (0x102, 4));
        assert_eq!(decode_response_header(&body, 1).unwrap(), (0x102, 5));
        let body = [0, 0, 1, 2, 1, 7, 2, 0xaa, 0xbb, 0xcc];
        assert_eq!(decode_response_header(&body, 1).unwrap(), (0x102, 9));
        assert!(matches!(
            decode_response_header(&[0, 0, 1], 0),
            Err(ProtocolError::Truncated { needed: 1, .. })
        ));
        assert!(decode_response_header(&[0, 0, 1, 2, 1, 7, 9], 1).is_err());
    }

    #[test]
    fn decodes_a_realistic_produce_response() {
        let mut p = PartitionProduceResponse::default();
        p.index = 3;
        p.base_offset = 42;
        let mut t = TopicProduceResponse::default();
        t.name = TopicName(StrBytes::from_static_str("events"));
        t.partition_responses = vec![p];
        let mut m = ProduceResponse::default();
        m.responses = vec![t];
        for v in 3..=13 {
            let body = enc_produce(&m, v);
            let decoded = decode_produce_response(&body, v).unwrap();
            assert_eq!(decoded.responses[0].partition_responses[0].base_offset, 42);
            check_valid(&body, v, decode_produce_response);
        }
    }

    /// The transactional responses are checked against `kafka-protocol`'s own encoders
    /// (its `broker` feature is on in this crate's dev-dependencies): a body it encodes must
    /// decode identically with ours, every prefix must be refused, and mutations must never
    /// make ours accept what it rejects.
    mod transactional {
        use kafka_protocol::protocol::Encodable;

        use super::*;

        fn encode<T: Encodable>(m: &T, v: i16) -> Vec<u8> {
            let mut b = bytes::BytesMut::new();
            m.encode(&mut b, v)
                .expect("kafka-protocol encodes its own struct");
            b.to_vec()
        }

        fn tags() -> impl Strategy<Value = BTreeMap<i32, Bytes>> {
            unknown_tags(0)
        }

        fn find_coordinator(v: i16) -> impl Strategy<Value = FindCoordinatorResponse> {
            (
                any::<i32>(),
                any::<i16>(),
                opt_text(),
                any::<i32>(),
                text(),
                any::<i32>(),
                tags(),
            )
                .prop_map(move |(throttle, code, message, node, host, port, tags)| {
                    let mut m = FindCoordinatorResponse::default();
                    if v >= 1 {
                        m.throttle_time_ms = throttle;
                        m.error_message = message;
                    }
                    m.error_code = code;
                    m.node_id = BrokerId(node);
                    m.host = host;
                    m.port = port;
                    if v >= 3 {
                        m.unknown_tagged_fields = tags;
                    }
                    m
                })
        }

        fn add_partitions(v: i16) -> impl Strategy<Value = AddPartitionsToTxnResponse> {
            let flexible = v >= 3;
            let partition = (any::<i32>(), any::<i16>(), tags()).prop_map(move |(i, c, tags)| {
                let mut p = AddPartitionsToTxnPartitionResult::default();
                p.partition_index = i;
                p.partition_error_code = c;
                if flexible {
                    p.unknown_tagged_fields = tags;
                }
                p
            });
            let topic = (text(), vec(partition, 0..4), tags()).prop_map(move |(n, ps, tags)| {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(n);
                t.results_by_partition = ps;
                if flexible {
                    t.unknown_tagged_fields = tags;
                }
                t
            });
            (any::<i32>(), vec(topic, 0..4), tags()).prop_map(move |(throttle, ts, tags)| {
                let mut m = AddPartitionsToTxnResponse::default();
                m.throttle_time_ms = throttle;
                m.results_by_topic_v3_and_below = ts;
                if flexible {
                    m.unknown_tagged_fields = tags;
                }
                m
            })
        }

        fn add_offsets(v: i16) -> impl Strategy<Value = AddOffsetsToTxnResponse> {
            (any::<i32>(), any::<i16>(), tags()).prop_map(move |(throttle, code, tags)| {
                let mut m = AddOffsetsToTxnResponse::default();
                m.throttle_time_ms = throttle;
                m.error_code = code;
                if v >= 3 {
                    m.unknown_tagged_fields = tags;
                }
                m
            })
        }

        fn txn_offset_commit(v: i16) -> impl Strategy<Value = TxnOffsetCommitResponse> {
            let flexible = v >= 3;
            let partition = (any::<i32>(), any::<i16>(), tags()).prop_map(move |(i, c, tags)| {
                let mut p = TxnOffsetCommitResponsePartition::default();
                p.partition_index = i;
                p.error_code = c;
                if flexible {
                    p.unknown_tagged_fields = tags;
                }
                p
            });
            let topic = (text(), vec(partition, 0..4), tags()).prop_map(move |(n, ps, tags)| {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = TopicName(n);
                t.partitions = ps;
                if flexible {
                    t.unknown_tagged_fields = tags;
                }
                t
            });
            (any::<i32>(), vec(topic, 0..4), tags()).prop_map(move |(throttle, ts, tags)| {
                let mut m = TxnOffsetCommitResponse::default();
                m.throttle_time_ms = throttle;
                m.topics = ts;
                if flexible {
                    m.unknown_tagged_fields = tags;
                }
                m
            })
        }

        fn end_txn(v: i16) -> impl Strategy<Value = EndTxnResponse> {
            (
                any::<i32>(),
                any::<i16>(),
                any::<i64>(),
                any::<i16>(),
                tags(),
            )
                .prop_map(move |(throttle, code, pid, epoch, tags)| {
                    let mut m = EndTxnResponse::default();
                    m.throttle_time_ms = throttle;
                    m.error_code = code;
                    if v >= 5 {
                        m.producer_id = pid.into();
                        m.producer_epoch = epoch;
                    }
                    if v >= 3 {
                        m.unknown_tagged_fields = tags;
                    }
                    m
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn find_coordinator_matches_kafka_protocol(
                (v, m) in (0i16..=3).prop_flat_map(|v| (Just(v), find_coordinator(v))),
                ed in edits(),
            ) {
                let body = encode(&m, v);
                check_valid(&body, v, decode_find_coordinator_response);
                check_any(&mutate(&body, &ed), v, decode_find_coordinator_response);
            }

            #[test]
            fn add_partitions_to_txn_matches_kafka_protocol(
                (v, m) in (0i16..=3).prop_flat_map(|v| (Just(v), add_partitions(v))),
                ed in edits(),
            ) {
                let body = encode(&m, v);
                check_valid(&body, v, decode_add_partitions_to_txn_response);
                check_any(&mutate(&body, &ed), v, decode_add_partitions_to_txn_response);
            }

            #[test]
            fn add_offsets_to_txn_matches_kafka_protocol(
                (v, m) in (0i16..=4).prop_flat_map(|v| (Just(v), add_offsets(v))),
                ed in edits(),
            ) {
                let body = encode(&m, v);
                check_valid(&body, v, decode_add_offsets_to_txn_response);
                check_any(&mutate(&body, &ed), v, decode_add_offsets_to_txn_response);
            }

            #[test]
            fn txn_offset_commit_matches_kafka_protocol(
                (v, m) in (0i16..=5).prop_flat_map(|v| (Just(v), txn_offset_commit(v))),
                ed in edits(),
            ) {
                let body = encode(&m, v);
                check_valid(&body, v, decode_txn_offset_commit_response);
                check_any(&mutate(&body, &ed), v, decode_txn_offset_commit_response);
            }

            #[test]
            fn end_txn_matches_kafka_protocol(
                (v, m) in (0i16..=5).prop_flat_map(|v| (Just(v), end_txn(v))),
                ed in edits(),
            ) {
                let body = encode(&m, v);
                check_valid(&body, v, decode_end_txn_response);
                check_any(&mutate(&body, &ed), v, decode_end_txn_response);
            }

            #[test]
            fn transactional_garbage_never_panics(body in vec(
                prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
                0..128,
            )) {
                for v in 0..=3 {
                    check_any(&body, v, decode_find_coordinator_response);
                    check_any(&body, v, decode_add_partitions_to_txn_response);
                }
                for v in 0..=4 {
                    check_any(&body, v, decode_add_offsets_to_txn_response);
                }
                for v in 0..=5 {
                    check_any(&body, v, decode_txn_offset_commit_response);
                    check_any(&body, v, decode_end_txn_response);
                }
            }
        }

        #[test]
        fn a_huge_topic_count_is_refused_without_allocating() {
            // throttle_time_ms, then a count of i32::MAX topics with nothing behind it.
            let body = [0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
            assert_invalid_length(decode_add_partitions_to_txn_response(&body, 1));
            assert_invalid_length(decode_txn_offset_commit_response(&body, 1));
        }
    }
}
