//! SASL authentication, the I/O-free half: the client side of each mechanism as a state
//! machine, and the parser of `sasl.jaas.config`.
//!
//! On a new connection the connection actor sends SaslHandshake (key 17) naming
//! [`Mechanism::name`], then one SaslAuthenticate (key 36) per message of the mechanism until
//! the client says [`Step::Done`]:
//!
//! ```text
//!   SaslClient                      connection actor                    broker
//!   initial_response() ──bytes──▶   SaslAuthenticate(auth_bytes) ──▶
//!                                   ◀── response: error 0, auth_bytes
//!   step(auth_bytes) ──Send(bytes)─▶ SaslAuthenticate(auth_bytes) ──▶   (SCRAM: client-final)
//!                                   ◀── response: error 0, auth_bytes
//!   step(auth_bytes) ──Done──────▶   authenticated: other APIs may flow
//!
//!   any response with an error code ──▶ rejected(code, message) ──▶ SaslError (fatal for
//!                                       this connection attempt)
//! ```
//!
//! Specifications followed:
//! - PLAIN: RFC 4616 (`authzid NUL authcid NUL passwd`, authzid left empty as Kafka does).
//! - SCRAM-SHA-256 and SCRAM-SHA-512: RFC 5802 and RFC 7677, as Kafka adopted them in
//!   KIP-84 (minimum of 4096 iterations; no SASLprep, as the Java client does none).
//! - OAUTHBEARER: RFC 7628, as KIP-255 brought it to Kafka, including the error exchange
//!   (the broker answers a bad token with a JSON status, the client answers `0x01`, the broker
//!   then fails the request).
//! - `sasl.jaas.config`: the grammar of the Java client's `JaasConfig` (KIP-85).
//!
//! Why the state machines are ours rather than a SASL crate's: each is a few dozen lines over
//! RustCrypto primitives (`hmac`, `sha2`, `pbkdf2`); Kafka's dialect differs from the RFCs in
//! small ways a general crate does not follow (no SASLprep, Kafka's iteration minimum, Kafka's
//! rules for OAUTHBEARER extensions); and the general crates we know (such as `rsasl`) bring
//! their own session and callback model, where the connection actor needs plain "bytes in,
//! bytes out" it can drive from its own mailbox, with typed errors it can report.
//! Keeping them here also keeps them free of I/O, so they are tested against RFC vectors and
//! fuzzed like every other parser of broker bytes (`fuzz/fuzz_targets/sasl.rs`).
//!
//! Every password and token is held in a [`Secret`], whose `Debug` prints `[hidden]`; no
//! error carries a credential.

use std::fmt;
use std::time::SystemTime;

use crate::error::KafkaCode;

pub mod jaas;
pub mod oauthbearer;
pub mod plain;
pub mod scram;
mod secret;
pub mod settings;
pub mod token_endpoint;

pub use jaas::{ControlFlag, JaasConfig, JaasError, Login, LoginModule};
pub use oauthbearer::{OAuthBearerClient, Token, UnsecuredJws};
pub use plain::PlainClient;
pub use scram::{ScramClient, ScramHash};
pub use secret::{AuthBytes, Secret};
pub use settings::{OAuthTokens, SaslSettings};
pub use token_endpoint::{ClientCredentials, EndpointError, EndpointUrl, TokenEndpoint};

/// A SASL mechanism Herald speaks, named on the wire as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// `PLAIN`: username and password in clear (use it over TLS only).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER`: a bearer token.
    OAuthBearer,
}

impl Mechanism {
    /// The name sent in SaslHandshake and written in `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of a `sasl.mechanism` value. Names are case-sensitive, as in Java.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the connection does after the client has read the broker's `auth_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Send these bytes in the next SaslAuthenticate request.
    Send(AuthBytes),
    /// Authenticated: the connection may carry other requests.
    Done,
}

/// The client side of one SASL exchange, for one connection attempt.
///
/// The driver calls [`initial_response`](SaslClient::initial_response) once, then
/// [`step`](SaslClient::step) with the `auth_bytes` of every SaslAuthenticate response whose
/// error code is 0, until it returns [`Step::Done`] or an error. A response with an error code
/// goes to [`rejected`](SaslClient::rejected) instead, which ends the exchange.
/// A client is not reused: re-authentication (KIP-368) starts a new one.
pub trait SaslClient: fmt::Debug + Send {
    /// The mechanism, to name in SaslHandshake.
    fn mechanism(&self) -> Mechanism;

    /// The bytes of the first SaslAuthenticate request.
    fn initial_response(&mut self) -> Result<AuthBytes, SaslError>;

    /// Reads the broker's `auth_bytes` from a successful SaslAuthenticate response.
    fn step(&mut self, auth_bytes: &[u8]) -> Result<Step, SaslError>;

    /// Turns a SaslAuthenticate response with a non-zero error code into the error the
    /// exchange ends with. Mechanisms that learned something earlier in the exchange (the
    /// OAUTHBEARER status) add it.
    fn rejected(&mut self, error_code: i16, error_message: Option<&str>) -> SaslError {
        SaslError::rejected(self.mechanism(), error_code, error_message)
    }
}

/// Why a SASL exchange failed. None of the variants carries a password or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The broker answered SaslAuthenticate with an error code (usually
    /// `SASL_AUTHENTICATION_FAILED`).
    #[error("{mechanism} authentication rejected by the broker: {code}{}", fmt_message(.message))]
    Rejected {
        /// The mechanism used.
        mechanism: Mechanism,
        /// The error code of the response.
        code: KafkaCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The broker sent bytes that do not parse as the mechanism's next message.
    #[error("malformed {context} from the broker: {reason}")]
    Malformed {
        /// Which message was being read.
        context: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// SCRAM: the server nonce does not start with the client nonce, or adds nothing to it.
    #[error("SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    /// SCRAM: the broker asked for fewer iterations than Kafka's minimum, or more than the
    /// work we agree to do.
    #[error("SCRAM iteration count {iterations} outside the accepted {minimum}..={maximum}")]
    IterationCount {
        /// The count the broker sent.
        iterations: u32,
        /// The least we accept.
        minimum: u32,
        /// The most we accept.
        maximum: u32,
    },
    /// SCRAM: the server signature in server-final is wrong, so the broker did not prove it
    /// knows the credential.
    #[error("SCRAM server signature does not match: the broker did not prove knowledge of the credential")]
    ServerSignatureMismatch,
    /// SCRAM: server-final carried `e=`.
    #[error("SCRAM authentication failed on the broker: {0}")]
    ScramServerError(String),
    /// OAUTHBEARER: the broker refused the token with a JSON status (RFC 7628 section 3.2.2).
    #[error("OAUTHBEARER token rejected by the broker: status {status}{}", fmt_message(.message))]
    TokenRejected {
        /// The `status` of the broker's JSON error, e.g. `invalid_token`.
        status: String,
        /// The broker's error message on the final response, if any.
        message: Option<String>,
    },
    /// The credentials cannot be put on the wire (e.g. a NUL in a PLAIN username, a character
    /// a bearer token may not hold). The reason never quotes the value.
    #[error("invalid {mechanism} credentials: {reason}")]
    InvalidCredentials {
        /// The mechanism.
        mechanism: Mechanism,
        /// What is wrong.
        reason: &'static str,
    },
    /// The driver called the client out of order (e.g. `step` after `Done`).
    #[error("{mechanism} client called out of order: {reason}")]
    OutOfOrder {
        /// The mechanism.
        mechanism: Mechanism,
        /// What was asked in which state.
        reason: &'static str,
    },
    /// The operating system's random source failed while drawing a nonce.
    #[error("could not draw a random nonce: {0}")]
    Random(String),
}

impl SaslError {
    /// The error for a SaslAuthenticate response with `error_code` (a code of 0, which is no
    /// error, is reported as `SASL_AUTHENTICATION_FAILED`: the caller said it failed).
    pub fn rejected(
        mechanism: Mechanism,
        error_code: i16,
        error_message: Option<&str>,
    ) -> SaslError {
        SaslError::Rejected {
            mechanism,
            code: KafkaCode::from_code(error_code).unwrap_or(KafkaCode::SASL_AUTHENTICATION_FAILED),
            message: error_message.map(str::to_owned),
        }
    }
}

/// The client for `mechanism` (from `sasl.mechanism`) with the credentials of `login` (from
/// `sasl.jaas.config`), for one connection attempt. An unsecured JWS is issued at `now`.
///
/// As in the Java client, a username and password serve PLAIN and both SCRAM mechanisms
/// whichever of their login modules named them. OAuth client credentials cannot be used here:
/// the token endpoint is called by the actors crate, which then builds an
/// [`OAuthBearerClient`] from the token it got.
pub fn client_for(
    mechanism: Mechanism,
    login: &Login,
    now: SystemTime,
) -> Result<Box<dyn SaslClient>, SaslError> {
    let mismatch = |reason| SaslError::InvalidCredentials { mechanism, reason };
    match (mechanism, login) {
        (Mechanism::Plain, Login::Password { username, password }) => Ok(Box::new(
            PlainClient::new(username.clone(), password.clone())?,
        )),
        (
            Mechanism::ScramSha256 | Mechanism::ScramSha512,
            Login::Password { username, password },
        ) => {
            let hash = ScramHash::from_mechanism(mechanism).expect("a SCRAM mechanism");
            Ok(Box::new(ScramClient::new(
                hash,
                username.clone(),
                password.clone(),
            )?))
        }
        (Mechanism::OAuthBearer, Login::StaticToken { token, extensions }) => Ok(Box::new(
            OAuthBearerClient::with_extensions(token.clone(), extensions.clone())?,
        )),
        (Mechanism::OAuthBearer, Login::UnsecuredJws { jws, extensions }) => Ok(Box::new(
            OAuthBearerClient::with_extensions(jws.build(now)?, extensions.clone())?,
        )),
        (Mechanism::OAuthBearer, Login::ClientCredentials { .. }) => Err(mismatch(
            "OAuth client credentials need a token from the token endpoint first",
        )),
        (Mechanism::OAuthBearer, _) => Err(mismatch(
            "sasl.jaas.config names a username and password, not a token",
        )),
        (_, _) => Err(mismatch(
            "sasl.jaas.config names a token, not a username and password",
        )),
    }
}

fn fmt_message(message: &Option<String>) -> String {
    match message {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in [
            Mechanism::Plain,
            Mechanism::ScramSha256,
            Mechanism::ScramSha512,
            Mechanism::OAuthBearer,
        ] {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("plain"), None);
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
    }

    fn login(config: &str) -> Login {
        JaasConfig::parse(config).unwrap().login().unwrap()
    }

    #[test]
    fn client_for_pairs_mechanisms_with_logins() {
        let now = SystemTime::UNIX_EPOCH;
        let password = login(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="alice" password="hunter2";"#,
        );
        let unsecured = login(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=admin;",
        );
        let credentials = login(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             clientId=app clientSecret=hunter2;",
        );
        for (mechanism, login) in [
            (Mechanism::Plain, &password),
            (Mechanism::ScramSha256, &password),
            (Mechanism::ScramSha512, &password),
            (Mechanism::OAuthBearer, &unsecured),
        ] {
            let mut client = client_for(mechanism, login, now).unwrap();
            assert_eq!(client.mechanism(), mechanism);
            assert!(!client.initial_response().unwrap().is_empty());
            assert!(!format!("{client:?}").contains("hunter2"));
        }
        for (mechanism, login) in [
            (Mechanism::OAuthBearer, &password),
            (Mechanism::OAuthBearer, &credentials),
            (Mechanism::Plain, &unsecured),
            (Mechanism::ScramSha256, &credentials),
        ] {
            let e = client_for(mechanism, login, now).unwrap_err();
            assert!(matches!(e, SaslError::InvalidCredentials { .. }), "{e:?}");
            assert!(!format!("{e:?}{e}").contains("hunter2"));
        }
    }

    #[test]
    fn rejected_names_the_code_and_message() {
        let e = SaslError::rejected(Mechanism::Plain, 58, Some("Invalid username or password"));
        assert_eq!(
            e.to_string(),
            "PLAIN authentication rejected by the broker: SASL_AUTHENTICATION_FAILED (58): \
             Invalid username or password"
        );
    }
}
