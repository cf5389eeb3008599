//! Metadata and transaction manager → connection: the Kafka requests other than Produce, one
//! message per request kind, each answered with its own response type; the transactional
//! requests travel in one message, [`Transact`], answered with the matching response.

use actix::prelude::*;
use herald::ProtocolError;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    MetadataResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

/// Metadata → connection: ask the broker for cluster metadata.
#[derive(Debug, Message)]
#[rtype(result = "Result<MetadataResponse, RequestError>")]
pub(crate) struct GetMetadata(pub(crate) MetadataRequest);

/// Metadata → connection: obtain a producer id, or bump the epoch of the one given (KIP-360).
#[derive(Debug, Message)]
#[rtype(result = "Result<InitProducerIdResponse, RequestError>")]
pub(crate) struct InitProducerId(pub(crate) InitProducerIdRequest);

/// Transaction manager → connection: one transactional request; answered with the
/// [`TxnAnswer`] of the same kind.
#[derive(Debug, Message)]
#[rtype(result = "Result<TxnAnswer, RequestError>")]
pub(crate) struct Transact(pub(crate) TxnCall);

/// A transactional request.
#[derive(Debug, Clone)]
pub(crate) enum TxnCall {
    FindCoordinator(FindCoordinatorRequest),
    InitProducerId(InitProducerIdRequest),
    AddPartitions(AddPartitionsToTxnRequest),
    AddOffsets(AddOffsetsToTxnRequest),
    CommitOffsets(TxnOffsetCommitRequest),
    EndTxn(EndTxnRequest),
}

/// The response to a [`TxnCall`], of the same kind.
#[derive(Debug)]
pub(crate) enum TxnAnswer {
    FindCoordinator(FindCoordinatorResponse),
    InitProducerId(InitProducerIdResponse),
    AddPartitions(AddPartitionsToTxnResponse),
    AddOffsets(AddOffsetsToTxnResponse),
    CommitOffsets(TxnOffsetCommitResponse),
    EndTxn(EndTxnResponse),
}

impl TxnAnswer {
    /// How long the broker asked the client to wait before its next request (quotas).
    pub(crate) fn throttle_time_ms(&self) -> i32 {
        match self {
            TxnAnswer::FindCoordinator(r) => r.throttle_time_ms,
            TxnAnswer::InitProducerId(r) => r.throttle_time_ms,
            TxnAnswer::AddPartitions(r) => r.throttle_time_ms,
            TxnAnswer::AddOffsets(r) => r.throttle_time_ms,
            TxnAnswer::CommitOffsets(r) => r.throttle_time_ms,
            TxnAnswer::EndTxn(r) => r.throttle_time_ms,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RequestError {
    /// The connection could not be made or was lost.
    #[error("connection to {0} failed: {1}")]
    Connection(String, String),
    /// The broker refused to authenticate this client (SASL or TLS); the text names the
    /// broker and the mechanism or the TLS reason.
    #[error("{0}")]
    Authentication(std::sync::Arc<str>),
    /// The broker lacks a version of the API, or its response could not be decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}
