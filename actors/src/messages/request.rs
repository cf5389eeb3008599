//! Metadata → connection: the Kafka requests other than Produce, one message per request kind,
//! each answered with its own response type.

use actix::prelude::*;
use herald::ProtocolError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
};

/// Metadata → connection: ask the broker for cluster metadata.
#[derive(Debug, Message)]
#[rtype(result = "Result<MetadataResponse, RequestError>")]
pub(crate) struct GetMetadata(pub(crate) MetadataRequest);

/// Metadata → connection: obtain a producer id, or bump the epoch of the one given (KIP-360).
#[derive(Debug, Message)]
#[rtype(result = "Result<InitProducerIdResponse, RequestError>")]
pub(crate) struct InitProducerId(pub(crate) InitProducerIdRequest);

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
