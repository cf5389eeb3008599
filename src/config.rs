//! Producer configuration under the Java client's key names, defaults (Kafka 4.x) and rules,
//! so that a `producer.properties` written for the Java `KafkaProducer` works here unchanged
//! and behaves the same way.
//!
//! Every construction path (the typed [`ProducerConfigBuilder`], [`ProducerConfig::from_pairs`]
//! and the `.properties` readers) ends in the same validation, which applies the Java
//! post-processing: idempotence silently switched off by conflicting settings the user did not
//! pair with `enable.idempotence`, `delivery.timeout.ms` raised to `linger.ms +
//! request.timeout.ms` unless set explicitly, backoff bases capped by their maximums, and the
//! `producer-N` client id.
//!
//! # One table of keys
//!
//! Each key is written once, as a row of the `keys!` table below:
//!
//! ```text
//! /// backoff before the first reconnection; set alone, the backoff is constant
//! "reconnect.backoff.ms" reconnect_backoff(Duration) = ms(50), Millis::LONG;
//!  └ Java name           └ field and setter (argument) └ default └ kind
//! ```
//!
//! From the rows come the typed setter (documented by the row's doc line), the Java defaults,
//! `set("key", "text")`, the range checks of `build`, [`ProducerConfig::to_pairs`] (in row
//! order), the suggestion for a misspelt key, and the README's configuration table (a test
//! compares them). The kind (`Millis`, `Bytes`, `Count`, `Flag`, `Choice`, `Level`, ...)
//! parses, range-checks and prints a value; its errors say what was expected, and the table
//! adds the key, so every error names its key. Rules across keys (idempotence, delivery
//! timeout, backoffs, client id) stay in `finish`, after the per-key checks.
//!
//! Java keys accepted but not used yet are rows of `ACCEPTED`: validated with the Java rule and
//! kept in [`ProducerConfig::extra`], so copied Java configs still load.
//!
//! ## Adding a key
//!
//! 1. Add the field to [`ProducerConfig`] (the defaults are built from the table, so the
//!    compiler asks for the row).
//! 2. Add the row where `to_pairs` should list the key, with a one-line doc. The setter takes
//!    the field's type unless the row converts, as in `client_id(impl Into<String> =>
//!    Into::into)`. Use an existing kind or write one: a type implementing `Kind`. A key that
//!    was in `ACCEPTED` leaves it.
//! 3. A rule that involves other keys goes into `finish`.
//! 4. `cargo test -p herald --lib config`: on failure, the README test prints the table to paste.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::compression::Compression;
use crate::sasl::Secret;

/// Numbers the default client ids `producer-1`, `producer-2`, ... as the Java client does.
static CLIENT_ID_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// Largest value of a Java `int` setting.
const JAVA_INT_MAX: u128 = i32::MAX as u128;
/// Largest value of a Java `long` setting.
const JAVA_LONG_MAX: u128 = i64::MAX as u128;
/// Java's `MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION_FOR_IDEMPOTENCE`: more would break ordering.
const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = 5;

/// How many replicas must have a batch before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// `0`: the broker sends no response; records may be lost without notice.
    None,
    /// `1`: the partition leader has written the batch.
    Leader,
    /// `all` / `-1`: every in-sync replica has the batch; required for idempotence.
    #[default]
    All,
}

impl Acks {
    /// The value of the `acks` field of a Produce request.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses an `acks` value as the Java client accepts it: `all`, `-1`, `0` or `1`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("all") {
            return Some(Acks::All);
        }
        match value {
            "-1" => Some(Acks::All),
            "0" => Some(Acks::None),
            "1" => Some(Acks::Leader),
            _ => None,
        }
    }

    /// The canonical `acks` value: `all`, `0` or `1`.
    pub fn name(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `security.protocol`: TLS for `SSL` and `SASL_SSL`, SASL (PLAIN, SCRAM, OAUTHBEARER) for
/// `SASL_PLAINTEXT` and `SASL_SSL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// `PLAINTEXT`.
    #[default]
    Plaintext,
    /// `SSL`.
    Ssl,
    /// `SASL_PLAINTEXT`.
    SaslPlaintext,
    /// `SASL_SSL`.
    SaslSsl,
}

impl SecurityProtocol {
    /// The Java name, e.g. `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses a Java name, case-insensitively as Java does.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// `metadata.recovery.strategy` (KIP-899): what the producer does when every broker it
/// knows is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetadataRecoveryStrategy {
    /// `rebootstrap` (Kafka 4.x's default): ask the `bootstrap.servers` entries again, which
    /// may now resolve to other brokers.
    #[default]
    Rebootstrap,
    /// `none`: keep asking the brokers it knows.
    None,
}

impl MetadataRecoveryStrategy {
    /// The Java name.
    pub fn name(self) -> &'static str {
        match self {
            MetadataRecoveryStrategy::Rebootstrap => "rebootstrap",
            MetadataRecoveryStrategy::None => "none",
        }
    }

    /// Parses a Java name, case-insensitively as Java does.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [
            MetadataRecoveryStrategy::Rebootstrap,
            MetadataRecoveryStrategy::None,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The format of a truststore or keystore file (`ssl.truststore.type`, `ssl.keystore.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreType {
    /// PEM text: certificates, and for a keystore a PKCS#8 private key.
    Pem,
    /// PKCS#12, protected by the store's password.
    Pkcs12,
    /// Java's own keystore format (Kafka's default type), read as the JDK writes it.
    Jks,
}

impl StoreType {
    /// The Java name.
    pub fn name(self) -> &'static str {
        match self {
            StoreType::Pem => "PEM",
            StoreType::Pkcs12 => "PKCS12",
            StoreType::Jks => "JKS",
        }
    }

    /// Parses a Java name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        [StoreType::Pem, StoreType::Pkcs12, StoreType::Jks]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// `ssl.endpoint.identification.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EndpointIdentification {
    /// `https`: the broker's certificate must name the host (or IP address) connected to.
    #[default]
    Https,
    /// Empty: any name is accepted (the certificate must still chain to a trusted CA).
    None,
}

impl EndpointIdentification {
    /// The Java value: `https` or the empty string.
    pub fn name(self) -> &'static str {
        match self {
            EndpointIdentification::Https => "https",
            EndpointIdentification::None => "",
        }
    }

    /// Parses the Java value (case-insensitively).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            "" => Some(EndpointIdentification::None),
            n if n.eq_ignore_ascii_case("https") => Some(EndpointIdentification::Https),
            _ => None,
        }
    }
}

/// A TLS version of `ssl.enabled.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `TLSv1.2`.
    V1_2,
    /// `TLSv1.3`.
    V1_3,
}

impl TlsVersion {
    /// The Java name.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }

    /// Parses a Java name.
    pub fn from_name(name: &str) -> Option<Self> {
        [TlsVersion::V1_2, TlsVersion::V1_3]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Parses an `ssl.protocol` value: a version's name, or `TLS` (the JDK's context of
    /// every version it has, up to TLS 1.3).
    fn from_protocol_name(name: &str) -> Option<Self> {
        if name.trim().eq_ignore_ascii_case("TLS") {
            return Some(TlsVersion::V1_3);
        }
        Self::from_name(name)
    }
}

/// Why a configuration was rejected; every variant but `Io` names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key neither Herald nor the accepted Java keys know.
    #[error("{}", unknown_key(.key, .suggestion))]
    UnknownKey {
        /// The key as given, or empty when it does not look like a config key: then it may
        /// be part of a value, such as a secret's second line in a properties file.
        key: String,
        /// The closest known key, if one is within edit distance 2.
        suggestion: Option<String>,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value \"{value}\" for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as given (or the typed value, printed).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A value that is fine alone but contradicts another setting.
    #[error("conflicting config {key}: {reason}")]
    Conflict {
        /// The key to change.
        key: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A required key was not set.
    #[error("{key} is required")]
    Missing {
        /// The key.
        key: String,
    },
    /// A properties file could not be read.
    #[error("cannot read {}: {reason}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error, printed.
        reason: String,
    },
    /// A setting whose value parses but whose target cannot be used: a file that cannot be
    /// read, a certificate store that does not open. The reason never quotes a secret.
    #[error("{key}: {reason}")]
    Unusable {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A valid setting that Herald cannot honour yet.
    #[error("unsupported {key}: {reason}")]
    Unsupported {
        /// The key.
        key: String,
        /// What is missing.
        reason: String,
    },
}

fn unknown_key(key: &str, suggestion: &Option<String>) -> String {
    // The builder leaves out a key it will not show (see `looks_like_key`).
    if key.is_empty() {
        return "unknown config key, not shown since it may be part of a value (in a \
                properties file, a value over several lines needs a backslash at the end of \
                each line but the last)"
            .to_string();
    }
    match suggestion {
        Some(s) => format!("unknown config key \"{key}\"; did you mean \"{s}\"?"),
        None => format!("unknown config key \"{key}\""),
    }
}

/// Whether `key` is written as config keys are, so that quoting it shows no value: an
/// unknown "key" may be a continuation line of a secret that lacks the backslash before it.
fn looks_like_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

impl ConfigError {
    /// The key the error is about (`None` for I/O errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Conflict { key, .. }
            | ConfigError::Missing { key }
            | ConfigError::Unusable { key, .. }
            | ConfigError::Unsupported { key, .. } => Some(key),
            ConfigError::Io { .. } => None,
        }
    }
}

fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn conflict(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Conflict {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A validated producer configuration: Java key names as snake_case fields, Java defaults.
///
/// Obtained only through validation ([`ProducerConfig::builder`], [`ProducerConfig::from_pairs`],
/// [`ProducerConfig::from_properties_str`]), so the cross-field rules always hold.
///
/// `Debug` shows each value as `to_pairs` does, secrets hidden.
#[derive(Clone, PartialEq)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: `host:port` entries; any subset of the cluster is enough.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`; `producer-N` (or `producer-<transactional.id>`) unless set.
    pub client_id: String,
    /// `acks`.
    pub acks: Acks,
    /// `linger.ms`.
    pub linger: Duration,
    /// `batch.size`: bytes per partition batch.
    pub batch_size: usize,
    /// `buffer.memory`: total bytes buffered before `send` blocks.
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` may block on a full buffer or missing metadata.
    pub max_block: Duration,
    /// `max.request.size`.
    pub max_request_size: usize,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `delivery.timeout.ms`; always `>= linger + request_timeout`.
    pub delivery_timeout: Duration,
    /// `retries`.
    pub retries: u32,
    /// `retry.backoff.ms`; never above `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`.
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`; never above `reconnect_backoff_max`.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`.
    pub reconnect_backoff_max: Duration,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight_requests_per_connection: usize,
    /// `max.in.flight.batches.per.partition` (Herald's own key): batches of one partition in
    /// flight at once; no more than `max_in_flight_requests_per_connection` take effect. 1
    /// (the default) keeps order on any broker; 0: one, or more while they hold few records
    /// (see [`pipelines_small_batches`](Self::pipelines_small_batches)).
    pub max_in_flight_batches_per_partition: u32,
    /// `enable.idempotence` as it takes effect, after the Java disabling rules.
    pub enable_idempotence: bool,
    /// `compression.type`.
    pub compression: Compression,
    /// `compression.gzip.level`; `None` is the codec default (Java's -1).
    pub compression_gzip_level: Option<i32>,
    /// `compression.lz4.level`; `None` is the codec default (Java's 9), LZ4's fast
    /// compressor; any other level searches for matches harder, as Java's LZ4 HC does.
    pub compression_lz4_level: Option<i32>,
    /// `compression.zstd.level`; `None` is the codec default (Java's 3).
    pub compression_zstd_level: Option<i32>,
    /// `partitioner.ignore.keys`: partition keyed records as if they had no key.
    pub partitioner_ignore_keys: bool,
    /// `partitioner.adaptive.partitioning.enable`: weigh the draw of a new sticky partition
    /// against partitions whose unsent batches pile up.
    pub partitioner_adaptive_partitioning_enable: bool,
    /// `partitioner.availability.timeout.ms`: with adaptive partitioning, a partition whose
    /// oldest ready batch has waited longer than this is left out of sticky draws; zero
    /// leaves none out.
    pub partitioner_availability_timeout: Duration,
    /// `partitioner.rack.aware` (KIP-1123): with `client.rack` set, records the default
    /// partitioner places stickily go to partitions whose leader is in that rack, when any
    /// is.
    pub partitioner_rack_aware: bool,
    /// `client.rack`: the rack (availability zone) the producer runs in; empty: none.
    pub client_rack: String,
    /// `metadata.max.age.ms`.
    pub metadata_max_age: Duration,
    /// `metadata.max.idle.ms`.
    pub metadata_max_idle: Duration,
    /// `metadata.recovery.strategy`: what to do when every known broker is unreachable.
    pub metadata_recovery_strategy: MetadataRecoveryStrategy,
    /// `metadata.recovery.rebootstrap.trigger.ms` (KIP-1102): with `rebootstrap`, how long
    /// metadata requests may keep failing before the bootstrap servers are asked again.
    pub metadata_recovery_rebootstrap_trigger: Duration,
    /// `connections.max.idle.ms`: how long a connection may go unused before it is closed
    /// (`Duration::MAX`, from a negative value: never).
    pub connections_max_idle: Duration,
    /// `socket.connection.setup.timeout.ms`: how long the first attempt to set up a
    /// connection (TCP, the TLS handshake, and with SASL the authentication) may take; each
    /// failed attempt doubles it (with 20% jitter) up to
    /// `socket.connection.setup.timeout.max.ms`, as Java's does.
    pub socket_connection_setup_timeout: Duration,
    /// `socket.connection.setup.timeout.max.ms`: the longest setup timeout.
    pub socket_connection_setup_timeout_max: Duration,
    /// `send.buffer.bytes`: the socket's send buffer (SO_SNDBUF); `None` (-1) leaves the
    /// operating system's, which the kernel then tunes.
    pub send_buffer_bytes: Option<u32>,
    /// `receive.buffer.bytes`: the socket's receive buffer (SO_RCVBUF); `None` (-1) leaves
    /// the operating system's.
    pub receive_buffer_bytes: Option<u32>,
    /// `metrics.sample.window.ms`: the span of one sample of the windowed metrics.
    pub metrics_sample_window: Duration,
    /// `metrics.num.samples`: how many samples the windowed metrics keep.
    pub metrics_num_samples: usize,
    /// `transactional.id`.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// `sasl.mechanism`; unset means Java's default, GSSAPI (Kerberos), which Herald lacks.
    pub sasl_mechanism: Option<String>,
    /// `sasl.mechanisms`, librdkafka's name for `sasl.mechanism` (used when that is unset).
    pub sasl_mechanisms: Option<String>,
    /// `sasl.jaas.config`: the login module and its options, credentials included.
    pub sasl_jaas_config: Option<Secret>,
    /// `sasl.username` (librdkafka's): PLAIN and SCRAM user when there is no JAAS config.
    pub sasl_username: Option<String>,
    /// `sasl.password` (librdkafka's).
    pub sasl_password: Option<Secret>,
    /// `sasl.oauthbearer.token.endpoint.url`: where OAUTHBEARER tokens come from (an OAuth
    /// token endpoint, or a `file:` URL).
    pub sasl_oauthbearer_token_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim a token from the endpoint names its
    /// subject in.
    pub sasl_oauthbearer_sub_claim_name: String,
    /// `sasl.oauthbearer.scope.claim.name`: the claim holding a token's scope.
    pub sasl_oauthbearer_scope_claim_name: String,
    /// `sasl.oauthbearer.header.urlencode`: URL-encode the client id and secret in the
    /// token request's `Authorization` header.
    pub sasl_oauthbearer_header_urlencode: bool,
    /// `sasl.login.connect.timeout.ms`: connecting to the token endpoint.
    pub sasl_login_connect_timeout: Duration,
    /// `sasl.login.read.timeout.ms`: the token endpoint's whole response.
    pub sasl_login_read_timeout: Duration,
    /// `sasl.login.retry.backoff.ms`: the first wait before asking the endpoint again.
    pub sasl_login_retry_backoff: Duration,
    /// `sasl.login.retry.backoff.max.ms`: the longest wait, and the most waited in all.
    pub sasl_login_retry_backoff_max: Duration,
    /// `sasl.login.refresh.window.factor`: an OAUTHBEARER token is renewed after this share
    /// of its lifetime.
    pub sasl_login_refresh_window_factor: f64,
    /// `sasl.login.refresh.window.jitter`: up to this much more, at random.
    pub sasl_login_refresh_window_jitter: f64,
    /// `sasl.login.refresh.min.period.seconds`: no renewal sooner than this after a token
    /// was obtained.
    pub sasl_login_refresh_min_period: Duration,
    /// `sasl.login.refresh.buffer.seconds`: renew at the latest this long before expiry.
    pub sasl_login_refresh_buffer: Duration,
    /// `sasl.oauthbearer.jwt.retriever.class`: Java's class choosing how tokens are asked
    /// for; `JwtBearerJwtRetriever` selects the JWT bearer grant.
    pub sasl_oauthbearer_jwt_retriever_class: Option<String>,
    /// `sasl.oauthbearer.scope`: the scope asked for (besides JAAS's `scope`).
    pub sasl_oauthbearer_scope: Option<String>,
    /// `sasl.oauthbearer.client.credentials.client.id` (besides JAAS's `clientId`).
    pub sasl_oauthbearer_client_credentials_client_id: Option<String>,
    /// `sasl.oauthbearer.client.credentials.client.secret` (besides JAAS's `clientSecret`).
    pub sasl_oauthbearer_client_credentials_client_secret: Option<Secret>,
    /// `sasl.oauthbearer.assertion.algorithm`: RS256 or ES256.
    pub sasl_oauthbearer_assertion_algorithm: String,
    /// `sasl.oauthbearer.assertion.claim.aud`.
    pub sasl_oauthbearer_assertion_claim_aud: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.iss`.
    pub sasl_oauthbearer_assertion_claim_iss: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.sub`.
    pub sasl_oauthbearer_assertion_claim_sub: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.exp.seconds`.
    pub sasl_oauthbearer_assertion_claim_exp: Duration,
    /// `sasl.oauthbearer.assertion.claim.nbf.seconds`.
    pub sasl_oauthbearer_assertion_claim_nbf: Duration,
    /// `sasl.oauthbearer.assertion.claim.jti.include`.
    pub sasl_oauthbearer_assertion_claim_jti_include: bool,
    /// `sasl.oauthbearer.assertion.file`: a ready-made assertion.
    pub sasl_oauthbearer_assertion_file: Option<String>,
    /// `sasl.oauthbearer.assertion.private.key.file`: the PKCS#8 key that signs assertions.
    pub sasl_oauthbearer_assertion_private_key_file: Option<String>,
    /// `sasl.oauthbearer.assertion.private.key.passphrase`: that key's passphrase.
    pub sasl_oauthbearer_assertion_private_key_passphrase: Option<Secret>,
    /// `sasl.oauthbearer.assertion.template.file`: JSON `header` and `payload` claims.
    pub sasl_oauthbearer_assertion_template_file: Option<String>,
    /// `ssl.truststore.type`: PEM, PKCS12 or JKS; unset: read from the file.
    pub ssl_truststore_type: Option<StoreType>,
    /// `ssl.truststore.location`: a file of trusted certificates.
    pub ssl_truststore_location: Option<String>,
    /// `ssl.truststore.password`: a PKCS12 or JKS truststore's password.
    pub ssl_truststore_password: Option<Secret>,
    /// `ssl.truststore.certificates`: trusted certificates inline, in PEM.
    pub ssl_truststore_certificates: Option<String>,
    /// `ssl.keystore.type`: PEM, PKCS12 or JKS; unset: read from the file.
    pub ssl_keystore_type: Option<StoreType>,
    /// `ssl.keystore.location`: the client's certificate chain and key.
    pub ssl_keystore_location: Option<String>,
    /// `ssl.keystore.password`: a PKCS12 or JKS keystore's password.
    pub ssl_keystore_password: Option<Secret>,
    /// `ssl.keystore.certificate.chain`: the client's certificate chain inline, in PEM.
    pub ssl_keystore_certificate_chain: Option<String>,
    /// `ssl.keystore.key`: the client's private key inline, in PEM (PKCS#8).
    pub ssl_keystore_key: Option<Secret>,
    /// `ssl.key.password`: the password of an encrypted private key.
    pub ssl_key_password: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm`: `https` verifies the broker's host name.
    pub ssl_endpoint_identification_algorithm: EndpointIdentification,
    /// `ssl.protocol`: the newest version offered (Java's SSLContext protocol).
    pub ssl_protocol: TlsVersion,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3 (older names given are skipped).
    pub ssl_enabled_protocols: Vec<TlsVersion>,
    /// `ssl.cipher.suites`: the suites offered, by their IANA names as Java takes them
    /// (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...); empty:
    /// every suite rustls offers. Checked against those when the producer starts.
    pub ssl_cipher_suites: Vec<String>,
    /// `ssl.ca.location` (librdkafka's): trusted CA certificates, a PEM file.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location` (librdkafka's): the client's certificate, a PEM file.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location` (librdkafka's): the client's private key, a PEM file.
    pub ssl_key_location: Option<String>,
    /// The accepted-but-unused Java keys that were set, as given (trimmed).
    pub extra: BTreeMap<String, String>,
}

impl ProducerConfig {
    /// The rack whose leaders sticky partitioning prefers: `client.rack` when
    /// `partitioner.rack.aware` is on and the rack is not blank (Java's rule, KIP-1123).
    pub fn partitioning_rack(&self) -> Option<&str> {
        let rack = self.client_rack.trim();
        (self.partitioner_rack_aware && !rack.is_empty()).then_some(rack)
    }

    /// A builder holding the Java defaults; only `bootstrap.servers` must be set.
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder::default()
    }

    /// Builds from `key = value` pairs (later pairs win), e.g. a map read from elsewhere.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        pairs
            .into_iter()
            .fold(Self::builder(), |b, (k, v)| b.set(k, v))
            .build()
    }

    /// Builds from the text of a Java `.properties` file.
    pub fn from_properties_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_pairs(parse_properties(text))
    }

    /// Builds from a Java `.properties` file: UTF-8, or, when it is not valid UTF-8,
    /// ISO-8859-1, which is how Java's `Properties.load(InputStream)` (and so Kafka's tools)
    /// reads every file: one that loads in Java loads here.
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        Self::from_properties_str(&text)
    }

    /// Batches of one partition that may be in flight at once, whatever they hold:
    /// `max.in.flight.batches.per.partition`, but never more than the requests a connection
    /// may have in flight. 0 counts as one here; see
    /// [`pipelines_small_batches`](Self::pipelines_small_batches) for when it allows more.
    pub fn partition_in_flight(&self) -> usize {
        (self.max_in_flight_batches_per_partition as usize)
            .min(self.max_in_flight_requests_per_connection)
            .max(1)
    }

    /// Whether `max.in.flight.batches.per.partition` is 0: an idempotent producer then sends
    /// a partition's next batch while those in flight hold fewer than [`SMALL_IN_FLIGHT`]
    /// records, as librdkafka's idempotent producer allows a partition `5 - messages in
    /// flight` more requests; otherwise one batch at a time. Not the default: a retried small
    /// batch can land behind a younger one on a broker that does not check idempotent
    /// sequences (librdkafka's mock cluster; the fault-injection test caught it there).
    pub fn pipelines_small_batches(&self) -> bool {
        self.max_in_flight_batches_per_partition == 0
    }

    /// The level for the selected codec, as [`crate::compression::compress`] takes it.
    pub fn compression_level(&self) -> Option<i32> {
        match self.compression {
            Compression::Gzip => self.compression_gzip_level,
            Compression::Lz4 => self.compression_lz4_level,
            Compression::Zstd => self.compression_zstd_level,
            Compression::None | Compression::Snappy => None,
        }
    }

    /// Rejects settings that are valid Kafka configuration but that Herald cannot honour yet
    /// (GSSAPI). Separate from validation so that such configs still load and print.
    pub fn validate_supported(&self) -> Result<(), ConfigError> {
        self.validate_supported_for(crate::sasl::OAuthTokens::FromConfig)
    }

    /// [`ProducerConfig::validate_supported`], for a producer whose OAUTHBEARER tokens come
    /// from `tokens` (with tokens from the application, `sasl.jaas.config` is not needed).
    pub fn validate_supported_for(
        &self,
        tokens: crate::sasl::OAuthTokens,
    ) -> Result<(), ConfigError> {
        // Every protocol works; SASL's mechanism and credentials are checked here (TLS's
        // stores are opened by the actors crate when it starts the producer).
        crate::sasl::SaslSettings::from_config(self, tokens)?;
        Ok(())
    }

    /// Every key with its effective value (plus the extra keys that were set), for logging
    /// and for feeding back into [`ProducerConfig::from_pairs`]. `transactional.id` is
    /// listed only when set. Secrets are left out, and the token endpoint URL is listed
    /// without user information or query, which may carry credentials: fed back, such a
    /// config lacks them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        KEYS.iter()
            .filter_map(|key| Some((key.name.to_string(), (key.get)(self)?)))
            .chain(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }
}

/// Collects settings, typed or as Java key/value strings, and validates them all in
/// [`ProducerConfigBuilder::build`]. It remembers which keys were set explicitly, because
/// the Java rules (idempotence, delivery timeout, reconnect backoff, client id) depend on it.
///
/// Besides [`set`](ProducerConfigBuilder::set), it has one typed setter per key, named after
/// the [`ProducerConfig`] field.
#[derive(Debug, Clone)]
pub struct ProducerConfigBuilder {
    draft: ProducerConfig,
    explicit: BTreeSet<&'static str>,
    /// Parse errors of `set` calls, at most one per key; a later good value clears it.
    errors: Vec<ConfigError>,
    /// The `ssl.*` and `sasl.*` keys whose last `set` was blank (see [`blank_is_unset`]).
    blank: BTreeSet<&'static str>,
}

impl Default for ProducerConfigBuilder {
    fn default() -> Self {
        ProducerConfigBuilder {
            draft: ProducerConfig::java_defaults(),
            explicit: BTreeSet::new(),
            errors: Vec::new(),
            blank: BTreeSet::new(),
        }
    }
}

impl ProducerConfigBuilder {
    /// Sets a key by its Java name, e.g. `.set("linger.ms", "10")`. Errors (unknown key,
    /// malformed value) surface from [`ProducerConfigBuilder::build`].
    pub fn set(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let key = key.as_ref().trim();
        if let Err(e) = self.apply(key, value.as_ref()) {
            self.errors.retain(|old| old.key() != Some(key));
            self.errors.push(e);
        }
        let security = KEYS
            .iter()
            .map(|k| k.name)
            .find(|n| *n == key && (n.starts_with("ssl.") || n.starts_with("sasl.")));
        match security {
            Some(name) if value.as_ref().trim().is_empty() => self.blank.insert(name),
            _ => self.blank.remove(key),
        };
        self
    }

    /// Validates everything and applies the Java post-processing rules.
    pub fn build(&self) -> Result<ProducerConfig, ConfigError> {
        let unset: Vec<&Key> = KEYS
            .iter()
            .filter(|k| self.blank.contains(k.name) && blank_is_unset(&self.draft, k))
            .collect();
        let ignored = |name: &str| unset.iter().any(|k| k.name == name);
        if let Some(e) = self.errors.iter().find(|e| !e.key().is_some_and(ignored)) {
            return Err(e.clone());
        }
        let mut draft = self.draft.clone();
        for k in unset {
            (k.reset)(&mut draft);
        }
        finish(draft, &self.explicit)
    }

    fn mark(&mut self, key: &'static str) {
        self.explicit.insert(key);
        self.errors.retain(|e| e.key() != Some(key));
        // A typed setter's value is not a blank `set` any more (`set` notes blanks after).
        self.blank.remove(key);
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        if let Some(k) = KEYS.iter().find(|k| k.name == key) {
            (k.set)(&mut self.draft, value)?;
            self.mark(k.name);
            return Ok(());
        }
        if let Some((name, rule)) = ACCEPTED.iter().find(|(name, _)| *name == key) {
            rule.check(value)
                .map_err(|reason| invalid(name, value, reason))?;
            self.draft.extra.insert(name.to_string(), value.to_string());
            self.errors.retain(|e| e.key() != Some(name));
            return Ok(());
        }
        if let Some(reason) = unsupported(key) {
            return Err(ConfigError::Unsupported {
                key: key.to_string(),
                reason: reason.to_string(),
            });
        }
        // A word without a dot is a key only if it is a typo of one (`ack`); otherwise it may
        // be a lone line of a value, which is not shown either.
        let suggestion = suggest(key);
        if !looks_like_key(key) || (!key.contains('.') && suggestion.is_none()) {
            return Err(ConfigError::UnknownKey {
                key: String::new(),
                suggestion: None,
            });
        }
        Err(ConfigError::UnknownKey {
            key: key.to_string(),
            suggestion,
        })
    }
}

/// Whether a blank `set` of `key` counts as unset in `c`, as Java loads it (a templated
/// config leaves its placeholders blank): a text setting whose blank would be refused, that
/// nothing in `c` reads. A blank that is a value (an empty
/// `ssl.endpoint.identification.algorithm` turns host name checks off) stays; so does a blank
/// number or boolean, which Java's parser refuses whether the key is used or not.
fn blank_is_unset(c: &ProducerConfig, key: &Key) -> bool {
    let text_like = ![
        ".ms",
        ".seconds",
        ".factor",
        ".jitter",
        ".urlencode",
        ".jti.include",
    ]
    .iter()
    .any(|end| key.name.ends_with(end));
    let refused = || {
        let mut d = ProducerConfig::java_defaults();
        (key.set)(&mut d, "").is_err() || (key.check)(&mut d).is_err()
    };
    text_like && !security_key_read(c, key.name) && refused()
}

/// Whether `c` reads the `ssl.*` or `sasl.*` setting `key`.
fn security_key_read(c: &ProducerConfig, key: &str) -> bool {
    let tls = matches!(
        c.security_protocol,
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
    );
    let sasl = matches!(
        c.security_protocol,
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
    );
    let mechanism = c.sasl_mechanism.as_deref().or(c.sasl_mechanisms.as_deref());
    let oauth = mechanism.is_some_and(|m| m.trim().eq_ignore_ascii_case("OAUTHBEARER"));
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    // TLS also reaches an https token endpoint, with the same trust settings.
    let endpoint = sasl && oauth && set(&c.sasl_oauthbearer_token_endpoint_url);
    match key {
        // A store's type and password are read only with its file, as in Java.
        "ssl.truststore.type" | "ssl.truststore.password" => {
            (tls || endpoint) && set(&c.ssl_truststore_location)
        }
        "ssl.keystore.type" | "ssl.keystore.password" => tls && set(&c.ssl_keystore_location),
        _ if key.starts_with("ssl.") => tls || endpoint,
        _ if key.starts_with("sasl.oauthbearer.") => sasl && oauth,
        _ => sasl,
    }
}

/// One row of the key table, as `keys!` makes it from the row's field and kind. Errors get
/// their key here, so a kind never needs to know which key it serves.
struct Key {
    /// The Java name.
    name: &'static str,
    /// One line: the typed setter's documentation and the README table's notes.
    #[cfg_attr(not(test), allow(dead_code))] // read at run time only by the README test
    doc: &'static str,
    /// The default as the README shows it, where printing the default value would mislead.
    #[cfg_attr(not(test), allow(dead_code))]
    shown: Option<&'static str>,
    /// Parses a trimmed text value into the field.
    set: fn(&mut ProducerConfig, &str) -> Result<(), ConfigError>,
    /// Range-checks (and normalises) the field, however it was set; run by `finish`.
    check: fn(&mut ProducerConfig) -> Result<(), ConfigError>,
    /// The field as `to_pairs` lists it; `None` leaves the key out.
    get: fn(&ProducerConfig) -> Option<String>,
    /// Puts the field back to its default (a blank nothing reads, see [`blank_is_unset`]).
    reset: fn(&mut ProducerConfig),
}

/// Declares the keys: `KEYS`, `ProducerConfig::java_defaults` and the typed setters of
/// [`ProducerConfigBuilder`]. The module documentation describes a row.
macro_rules! keys {
    (@convert $value:ident) => { $value };
    (@convert $value:ident $convert:path) => { $convert($value) };
    (@shown) => { None };
    (@shown $shown:literal) => { Some($shown) };
    ($(
        #[doc = $doc:literal]
        $key:literal $field:ident($argument:ty $(=> $convert:path)?) = $default:expr,
            $kind:expr $(, shown $shown:literal)?;
    )*) => {
        /// The keys Herald uses, in the order [`ProducerConfig::to_pairs`] lists them.
        static KEYS: &[Key] = &[$(
            Key {
                name: $key,
                doc: $doc,
                shown: keys!(@shown $($shown)?),
                set: |config, text| {
                    config.$field =
                        Kind::parse(&$kind, text).map_err(|reason| invalid($key, text, reason))?;
                    Ok(())
                },
                check: |config| {
                    Kind::check(&$kind, &mut config.$field).map_err(|r| r.naming($key))
                },
                get: |config| Kind::print(&$kind, &config.$field),
                reset: |config| config.$field = $default,
            },
        )*];

        impl fmt::Debug for ProducerConfig {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut d = f.debug_struct("ProducerConfig");
                $(d.field(stringify!($field), &Shown(&$kind, &self.$field));)*
                d.field("extra", &self.extra).finish()
            }
        }

        impl ProducerConfig {
            /// The Java defaults, before validation; `bootstrap_servers` and `client_id` empty.
            fn java_defaults() -> Self {
                ProducerConfig {
                    $($field: $default,)*
                    extra: BTreeMap::new(),
                }
            }
        }

        impl ProducerConfigBuilder {
            $(
                #[doc = concat!("`", $key, "`:", $doc)]
                pub fn $field(mut self, value: $argument) -> Self {
                    self.draft.$field = keys!(@convert value $($convert)?);
                    self.mark($key);
                    self
                }
            )*
        }
    };
}

/// Records of a partition in flight below which an idempotent producer sends its next batch
/// without waiting (with `max.in.flight.batches.per.partition=0`): librdkafka's
/// `RD_KAFKA_IDEMP_MAX_INFLIGHT`, also the batches per partition Kafka remembers to recognise
/// a producer's duplicates.
pub const SMALL_IN_FLIGHT: usize = 5;

keys! {
    /// `host:port` entries separated by commas (a listener's `PLAINTEXT://` or `SASL_SSL://` in front is skipped, as Java does); any subset of the cluster is enough
    "bootstrap.servers" bootstrap_servers(impl AsRef<str> => split_servers) = Vec::new(),
        Servers, shown "(required)";
    /// sent with every request, for broker logs and quotas
    "client.id" client_id(impl Into<String> => Into::into) = String::new(),
        Text, shown "producer-N";
    /// 0 (no response), 1 (the leader wrote it), all or -1 (every in-sync replica has it)
    "acks" acks(Acks) = Acks::All,
        Choice(Acks::parse, Acks::name, "expected all, -1, 0 or 1");
    /// how long a partition's batch waits for more records before it is sent (not while a record waits for buffer.memory)
    "linger.ms" linger(Duration) = ms(5), Millis::LONG;
    /// uncompressed bytes per partition batch, at most buffer.memory; one that waits for its partition's batch in flight grows on; 0 is taken as 1 (a batch of one record), as Java does
    "batch.size" batch_size(usize) = 16_384, BatchBytes;
    /// shared by all partitions; a full buffer holds records up to max.block.ms; Producer::send's records waiting for batches share it, then it refuses with QueueFull
    "buffer.memory" buffer_memory(usize) = 33_554_432, Bytes::LONG;
    /// how long sending may block on a full buffer or on a topic's metadata
    "max.block.ms" max_block(Duration) = ms(60_000), Millis::LONG;
    /// larger records fail with RecordTooLarge
    "max.request.size" max_request_size(usize) = 1_048_576, Bytes::INT;
    /// how long a request waits for its response (with acks=0: to be written) before the connection is dropped and it is retried
    "request.timeout.ms" request_timeout(Duration) = ms(30_000), Millis::INT;
    /// a record's outcome is due within this; at least linger.ms + request.timeout.ms
    "delivery.timeout.ms" delivery_timeout(Duration) = ms(120_000), Millis::INT;
    /// how often a failed batch is sent again, within delivery.timeout.ms
    "retries" retries(u32) = i32::MAX as u32, NonNegativeInt;
    /// backoff before the first retry; exponential with jitter up to retry.backoff.max.ms
    "retry.backoff.ms" retry_backoff(Duration) = ms(100), Millis::LONG;
    /// the longest backoff before a retry
    "retry.backoff.max.ms" retry_backoff_max(Duration) = ms(1_000), Millis::LONG;
    /// backoff before the first reconnection; set alone, the backoff is constant
    "reconnect.backoff.ms" reconnect_backoff(Duration) = ms(50), Millis::LONG;
    /// the longest backoff before a reconnection
    "reconnect.backoff.max.ms" reconnect_backoff_max(Duration) = ms(1_000), Millis::LONG;
    /// requests in flight on one connection; at most 5 with idempotence
    "max.in.flight.requests.per.connection" max_in_flight_requests_per_connection(usize) = 5,
        Count;
    /// Herald's own; 1: order on any broker; 0: one, more while they hold under 5 records (idempotent, as librdkafka)
    "max.in.flight.batches.per.partition" max_in_flight_batches_per_partition(u32) = 1,
        NonNegativeInt;
    /// silently off with acks≠all or retries=0 unless set explicitly; max.in.flight>5 needs it set to false
    "enable.idempotence" enable_idempotence(bool) = true, Flag;
    /// none, gzip, snappy, lz4 or zstd
    "compression.type" compression(Compression) = Compression::None,
        Choice(lowercase_compression, Compression::name, "expected none, gzip, snappy, lz4 or zstd");
    /// 1 to 9, or -1 for the codec's default
    "compression.gzip.level" compression_gzip_level(i32 => Some) = None, Level::GZIP;
    /// 1 to 17
    "compression.lz4.level" compression_lz4_level(i32 => Some) = None, Level::LZ4;
    /// -131072 to 22
    "compression.zstd.level" compression_zstd_level(i32 => Some) = None, Level::ZSTD;
    /// partition keyed records as if they had no key
    "partitioner.ignore.keys" partitioner_ignore_keys(bool) = false, Flag;
    /// weigh sticky draws against partitions whose unsent batches pile up (Java's KIP-794)
    "partitioner.adaptive.partitioning.enable" partitioner_adaptive_partitioning_enable(bool) =
        true, Flag;
    /// with adaptive partitioning, leave out of sticky draws the partitions of a leader that kept a ready batch waiting longer; 0 = never
    "partitioner.availability.timeout.ms" partitioner_availability_timeout(Duration) = ms(0),
        Millis::LONG;
    /// with client.rack: keyless records go to partitions led in that rack when any is (KIP-1123), to save cross-zone traffic
    "partitioner.rack.aware" partitioner_rack_aware(bool) = false, Flag;
    /// the rack (availability zone) this producer runs in, as brokers' broker.rack name them
    "client.rack" client_rack(impl Into<String> => Into::into) = String::new(), Text;
    /// metadata is refreshed at least this often
    "metadata.max.age.ms" metadata_max_age(Duration) = ms(300_000), Millis::LONG;
    /// at least 5000; a topic nothing was produced to or asked about (partitions_for) for this long leaves the metadata requests
    "metadata.max.idle.ms" metadata_max_idle(Duration) = ms(300_000),
        Millis::LONG.at_least(5_000);
    /// rebootstrap (ask bootstrap.servers again when every known broker is unreachable) or none
    "metadata.recovery.strategy" metadata_recovery_strategy(MetadataRecoveryStrategy) =
        MetadataRecoveryStrategy::Rebootstrap,
        Choice(
            MetadataRecoveryStrategy::from_name,
            MetadataRecoveryStrategy::name,
            "expected rebootstrap or none"
        );
    /// with rebootstrap: ask bootstrap.servers again after metadata requests failed this long
    "metadata.recovery.rebootstrap.trigger.ms" metadata_recovery_rebootstrap_trigger(Duration) =
        ms(300_000), Millis::LONG;
    /// an unused connection is closed after this long (opened again when needed); negative: never
    "connections.max.idle.ms" connections_max_idle(Duration) = ms(540_000), MillisOrNever;
    /// the first attempt to set up a connection (TCP, TLS, SASL) gives up after this; each failed one doubles it
    "socket.connection.setup.timeout.ms" socket_connection_setup_timeout(Duration) = ms(10_000),
        Millis::LONG;
    /// the longest connection setup timeout
    "socket.connection.setup.timeout.max.ms" socket_connection_setup_timeout_max(Duration) =
        ms(30_000), Millis::LONG;
    /// SO_SNDBUF in bytes; -1: the OS default, which the kernel tunes (Java's default is 131072)
    "send.buffer.bytes" send_buffer_bytes(u32 => Some) = None, SocketBuffer, shown "-1";
    /// SO_RCVBUF in bytes; -1: the OS default, which the kernel tunes (Java's default is 32768)
    "receive.buffer.bytes" receive_buffer_bytes(u32 => Some) = None, SocketBuffer, shown "-1";
    /// the windowed metrics (rates, averages, maxima) keep samples this long each; at least 1
    "metrics.sample.window.ms" metrics_sample_window(Duration) = ms(30_000),
        Millis::LONG.at_least(1);
    /// how many samples the windowed metrics keep
    "metrics.num.samples" metrics_num_samples(usize) = 2, Count;
    /// makes the producer transactional (and idempotent); see the README's transactions section
    "transactional.id" transactional_id(impl Into<String> => some_string) = None,
        OptionalText, shown "(none)";
    /// how long the broker lets a transaction stay open before it aborts it
    "transaction.timeout.ms" transaction_timeout(Duration) = ms(60_000), Millis::INT;
    /// PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS); see the README's security section
    "security.protocol" security_protocol(SecurityProtocol) = SecurityProtocol::Plaintext,
        Choice(
            SecurityProtocol::from_name,
            SecurityProtocol::name,
            "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
        );
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (Java's default GSSAPI is not supported)
    "sasl.mechanism" sasl_mechanism(impl Into<String> => some_string) = None,
        OptionalText, shown "GSSAPI";
    /// librdkafka's name for sasl.mechanism, used when that is unset
    "sasl.mechanisms" sasl_mechanisms(impl Into<String> => some_string) = None, OptionalText;
    /// the login module and its options, e.g. `...PlainLoginModule required username="u" password="p";`
    "sasl.jaas.config" sasl_jaas_config(impl Into<Secret> => some_secret) = None, SecretText;
    /// librdkafka's: the PLAIN or SCRAM user when sasl.jaas.config is unset
    "sasl.username" sasl_username(impl Into<String> => some_string) = None, OptionalText;
    /// librdkafka's: that user's password
    "sasl.password" sasl_password(impl Into<Secret> => some_secret) = None, SecretText;
    /// OAUTHBEARER tokens from this OAuth token endpoint (http or https; clientId and clientSecret in sasl.jaas.config), or from the file a file: URL names
    "sasl.oauthbearer.token.endpoint.url" sasl_oauthbearer_token_endpoint_url(
        impl Into<String> => some_string) = None, UrlText;
    /// the claim of a token from the endpoint that names its subject (checked before use, as Java does)
    "sasl.oauthbearer.sub.claim.name" sasl_oauthbearer_sub_claim_name(
        impl Into<String> => Into::into) = "sub".to_string(), Text;
    /// the claim of a token from the endpoint that holds its scope (a string or a list of strings when present)
    "sasl.oauthbearer.scope.claim.name" sasl_oauthbearer_scope_claim_name(
        impl Into<String> => Into::into) = "scope".to_string(), Text;
    /// URL-encode the client id and secret in the token request's Authorization header (RFC 6749 2.3.1)
    "sasl.oauthbearer.header.urlencode" sasl_oauthbearer_header_urlencode(bool) = false, Flag;
    /// connecting to the token endpoint (TCP and TLS) gives up after this (Java: no limit by default)
    "sasl.login.connect.timeout.ms" sasl_login_connect_timeout(Duration) = ms(10_000),
        Millis::INT.at_least(1);
    /// the token endpoint's whole response must arrive within this (Java: no limit by default)
    "sasl.login.read.timeout.ms" sasl_login_read_timeout(Duration) = ms(10_000),
        Millis::INT.at_least(1);
    /// the wait before asking the token endpoint again after a failure it may recover from; doubled each time (0: not asked again, as in Java)
    "sasl.login.retry.backoff.ms" sasl_login_retry_backoff(Duration) = ms(100), Millis::LONG;
    /// the longest wait between token requests, and the most waited in all before the failure is reported
    "sasl.login.retry.backoff.max.ms" sasl_login_retry_backoff_max(Duration) = ms(10_000),
        Millis::LONG;
    /// an OAUTHBEARER token (from any source) is renewed after this share of its lifetime, 0.5 to 1.0
    "sasl.login.refresh.window.factor" sasl_login_refresh_window_factor(f64) = 0.8,
        Ratio { min: 0.5, max: 1.0 };
    /// up to this share more, at random, 0 to 0.25
    "sasl.login.refresh.window.jitter" sasl_login_refresh_window_jitter(f64) = 0.05,
        Ratio { min: 0.0, max: 0.25 };
    /// a token is not renewed sooner than this after it was obtained, 0 to 900 (unless its lifetime leaves no room for both buffers)
    "sasl.login.refresh.min.period.seconds" sasl_login_refresh_min_period(Duration) =
        Duration::from_secs(60), Seconds { max: 900 };
    /// a token is renewed at the latest this long before it expires, 0 to 3600 (unless its lifetime leaves no room for both buffers)
    "sasl.login.refresh.buffer.seconds" sasl_login_refresh_buffer(Duration) =
        Duration::from_secs(300), Seconds { max: 3600 };
    /// Java's retriever class: JwtBearerJwtRetriever asks the token endpoint with a signed assertion (the JWT bearer grant); DefaultJwtRetriever or ClientCredentialsJwtRetriever with client credentials
    "sasl.oauthbearer.jwt.retriever.class" sasl_oauthbearer_jwt_retriever_class(
        impl Into<String> => some_string) = None, OptionalText, shown "DefaultJwtRetriever";
    /// the scope to ask the token endpoint for (JAAS's scope option wins when both are set)
    "sasl.oauthbearer.scope" sasl_oauthbearer_scope(impl Into<String> => some_string) = None,
        OptionalText;
    /// the client id for the client credentials grant, when JAAS has no clientId
    "sasl.oauthbearer.client.credentials.client.id"
        sasl_oauthbearer_client_credentials_client_id(impl Into<String> => some_string) = None,
        OptionalText;
    /// that client's secret, when JAAS has no clientSecret
    "sasl.oauthbearer.client.credentials.client.secret"
        sasl_oauthbearer_client_credentials_client_secret(impl Into<Secret> => some_secret) =
        None, SecretText;
    /// RS256 or ES256: how the JWT bearer grant's assertion is signed
    "sasl.oauthbearer.assertion.algorithm" sasl_oauthbearer_assertion_algorithm(
        impl Into<String> => Into::into) = "RS256".to_string(), Text;
    /// the assertion's aud claim
    "sasl.oauthbearer.assertion.claim.aud" sasl_oauthbearer_assertion_claim_aud(
        impl Into<String> => some_string) = None, OptionalText;
    /// the assertion's iss claim
    "sasl.oauthbearer.assertion.claim.iss" sasl_oauthbearer_assertion_claim_iss(
        impl Into<String> => some_string) = None, OptionalText;
    /// the assertion's sub claim
    "sasl.oauthbearer.assertion.claim.sub" sasl_oauthbearer_assertion_claim_sub(
        impl Into<String> => some_string) = None, OptionalText;
    /// the assertion expires this long after it is made (its exp claim)
    "sasl.oauthbearer.assertion.claim.exp.seconds" sasl_oauthbearer_assertion_claim_exp(Duration) =
        Duration::from_secs(300), Seconds { max: 86_400 };
    /// the assertion is valid from this long before it is made (its nbf claim)
    "sasl.oauthbearer.assertion.claim.nbf.seconds" sasl_oauthbearer_assertion_claim_nbf(Duration) =
        Duration::from_secs(60), Seconds { max: 3_600 };
    /// give each assertion a random jti claim
    "sasl.oauthbearer.assertion.claim.jti.include" sasl_oauthbearer_assertion_claim_jti_include(
        bool) = false, Flag;
    /// a ready-made assertion, read again for every token (instead of signing one)
    "sasl.oauthbearer.assertion.file" sasl_oauthbearer_assertion_file(
        impl Into<String> => some_string) = None, OptionalText;
    /// the PKCS#8 private key (PEM) that signs assertions
    "sasl.oauthbearer.assertion.private.key.file" sasl_oauthbearer_assertion_private_key_file(
        impl Into<String> => some_string) = None, OptionalText;
    /// the passphrase of an encrypted private key
    "sasl.oauthbearer.assertion.private.key.passphrase"
        sasl_oauthbearer_assertion_private_key_passphrase(impl Into<Secret> => some_secret) =
        None, SecretText;
    /// a JSON file of header and payload claims added to each assertion
    "sasl.oauthbearer.assertion.template.file" sasl_oauthbearer_assertion_template_file(
        impl Into<String> => some_string) = None, OptionalText;
    /// PEM, PKCS12 or JKS (a file that starts as JKS is read as one); unset: read from the file
    "ssl.truststore.type" ssl_truststore_type(StoreType => Some) = None, StoreTypeKind;
    /// a file of trusted CA certificates; unset (and no certificates inline): the system's roots
    "ssl.truststore.location" ssl_truststore_location(impl Into<String> => some_string) = None,
        OptionalText;
    /// the password of a PKCS12 or JKS truststore (a JKS one without it is read unchecked)
    "ssl.truststore.password" ssl_truststore_password(impl Into<Secret> => some_secret) = None,
        SecretText;
    /// trusted CA certificates inline, in PEM
    "ssl.truststore.certificates" ssl_truststore_certificates(impl Into<String> => some_string)
        = None, OptionalText;
    /// PEM, PKCS12 or JKS (a file that starts as JKS is read as one); unset: read from the file
    "ssl.keystore.type" ssl_keystore_type(StoreType => Some) = None, StoreTypeKind;
    /// the client's certificate chain and private key, for brokers that require one
    "ssl.keystore.location" ssl_keystore_location(impl Into<String> => some_string) = None,
        OptionalText;
    /// the password of a PKCS12 or JKS keystore
    "ssl.keystore.password" ssl_keystore_password(impl Into<Secret> => some_secret) = None,
        SecretText;
    /// the client's certificate chain inline, in PEM
    "ssl.keystore.certificate.chain" ssl_keystore_certificate_chain(
        impl Into<String> => some_string) = None, OptionalText;
    /// the client's private key inline, in PEM (PKCS#8, encrypted with ssl.key.password or not)
    "ssl.keystore.key" ssl_keystore_key(impl Into<Secret> => some_secret) = None, SecretText;
    /// the password of an encrypted private key (a JKS key's; unset there: the keystore's password)
    "ssl.key.password" ssl_key_password(impl Into<Secret> => some_secret) = None, SecretText;
    /// https: the broker's certificate must name the host connected to; empty: not checked
    "ssl.endpoint.identification.algorithm" ssl_endpoint_identification_algorithm(
        EndpointIdentification) = EndpointIdentification::Https,
        Choice(
            EndpointIdentification::from_name,
            EndpointIdentification::name,
            "expected https or an empty value"
        );
    /// the newest TLS version used, as Java's SSLContext protocol: TLSv1.3 (or TLS) offers every version of ssl.enabled.protocols, TLSv1.2 none above 1.2
    "ssl.protocol" ssl_protocol(TlsVersion) = TlsVersion::V1_3,
        Choice(
            TlsVersion::from_protocol_name,
            TlsVersion::name,
            "expected TLSv1.2, TLSv1.3 or TLS"
        );
    /// TLS versions offered, comma-separated: TLSv1.2, TLSv1.3 (TLSv1.1, TLSv1, SSLv3 and SSLv2Hello are taken and skipped, as Java 17 skips them; a list of those alone is refused)
    "ssl.enabled.protocols" ssl_enabled_protocols(Vec<TlsVersion>) =
        vec![TlsVersion::V1_2, TlsVersion::V1_3], TlsVersions;
    /// cipher suites offered, comma-separated IANA names as Java's; empty: all of rustls's (TLS 1.3 and TLS 1.2 ECDHE AEAD)
    "ssl.cipher.suites" ssl_cipher_suites(Vec<String>) = Vec::new(), SuiteNames;
    /// librdkafka's: trusted CA certificates, a PEM file (as ssl.truststore.location with PEM)
    "ssl.ca.location" ssl_ca_location(impl Into<String> => some_string) = None, OptionalText;
    /// librdkafka's: the client's certificate (chain), a PEM file
    "ssl.certificate.location" ssl_certificate_location(impl Into<String> => some_string) = None,
        OptionalText;
    /// librdkafka's: the client's private key, a PEM file
    "ssl.key.location" ssl_key_location(impl Into<String> => some_string) = None, OptionalText;
}

/// Java keys that are accepted and validated (with the Java rule) but not used by Herald yet;
/// the values are kept in [`ProducerConfig::extra`].
const ACCEPTED: &[(&str, Accept)] = &[
    // What Herald does: a broker's addresses are tried in turn, each attempt starting at
    // the next one. Java's other choice resolves bootstrap names to canonical ones, which
    // only Kerberos needs.
    (
        "client.dns.lookup",
        Accept::OneOf(
            &["use_all_dns_ips"],
            "expected use_all_dns_ips (resolve_canonical_bootstrap_servers_only, for Kerberos, is not supported)",
        ),
    ),
    // Herald pushes no client metrics to brokers (KIP-714); the Java default, true, asks
    // for that, so only false is honest.
    (
        "enable.metrics.push",
        Accept::OneOf(
            &["false"],
            "expected false: pushing client metrics to the broker (KIP-714) is not supported",
        ),
    ),
    (
        "metrics.recording.level",
        Accept::OneOf(&["INFO", "DEBUG", "TRACE"], "expected INFO, DEBUG or TRACE"),
    ),
    // The handler Java needs for token endpoints; Herald asks the endpoint whenever
    // sasl.oauthbearer.token.endpoint.url is set.
    (
        "sasl.login.callback.handler.class",
        Accept::OneOf(
            &[
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
                "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler",
            ],
            "expected OAuthBearerLoginCallbackHandler (for sasl.oauthbearer.token.endpoint.url); other handlers are Java classes",
        ),
    ),
    // Kafka 4.x's two-phase commit (KIP-939) for external transaction coordinators; off by
    // default, and off is all Herald does.
    (
        "transaction.two.phase.commit.enable",
        Accept::OneOf(
            &["false"],
            "expected false: two-phase commit with an external coordinator (KIP-939) is not supported",
        ),
    ),
    ("key.serializer", Accept::NonEmpty("expected a class name")),
    (
        "value.serializer",
        Accept::NonEmpty("expected a class name"),
    ),
];

/// Java producer keys (or key prefixes, ending in '.') that Herald cannot honour, with what
/// to do instead: for a config brought from Java, "unsupported, and why" helps where
/// "unknown key" would not.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "partitioner.class",
        "a Java class; give a Rust partitioner to ProducerBuilder::partitioner",
    ),
    (
        "interceptor.classes",
        "Java classes; give Rust interceptors to ProducerBuilder::interceptor",
    ),
    (
        "metric.reporters",
        "Java classes; metrics go through the `metrics` facade to the recorder the application installs",
    ),
    (
        "auto.include.jmx.reporter",
        "there is no JMX; metrics go through the `metrics` facade",
    ),
    (
        "config.providers",
        "Java classes that expand ${provider:path:key} placeholders; Herald takes values as they are written",
    ),
    ("security.providers", JVM_TLS),
    ("ssl.provider", JVM_TLS),
    ("ssl.engine.factory.class", JVM_TLS),
    ("ssl.keymanager.algorithm", JVM_TLS),
    ("ssl.trustmanager.algorithm", JVM_TLS),
    ("ssl.secure.random.implementation", JVM_TLS),
    ("sasl.client.callback.handler.class", SASL_CLASSES),
    ("sasl.login.class", SASL_CLASSES),
    (
        "sasl.kerberos.",
        "GSSAPI (Kerberos) is not supported",
    ),
    (
        "sasl.oauthbearer.",
        "a broker-side OAuth setting (token validation: JWKS, expected audience and issuer, clock skew) or a Java class; a producer asks sasl.oauthbearer.token.endpoint.url for tokens (see the README's Security section)",
    ),
];

const JVM_TLS: &str = "a JVM security provider setting; TLS here is rustls, configured by the ssl.* keys in the README";
const SASL_CLASSES: &str =
    "Java classes; for OAUTHBEARER tokens give a TokenProvider to ProducerBuilder::token_provider";

/// Why `key` cannot be honoured, if it is a Java key Herald knows and cannot use.
fn unsupported(key: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(name, _)| {
            if name.ends_with('.') {
                key.starts_with(name)
            } else {
                key == *name
            }
        })
        .map(|(_, reason)| *reason)
}

/// The Java rule for an accepted-but-unused key, with what the error says was expected.
enum Accept {
    /// One of these names, exactly.
    OneOf(&'static [&'static str], &'static str),
    /// Anything but nothing.
    NonEmpty(&'static str),
}

impl Accept {
    fn check(&self, value: &str) -> Result<(), &'static str> {
        let (ok, expected) = match *self {
            Accept::OneOf(names, expected) => (names.contains(&value), expected),
            Accept::NonEmpty(expected) => (!value.is_empty(), expected),
        };
        if ok {
            Ok(())
        } else {
            Err(expected)
        }
    }
}

/// How one kind of value is read from text, range-checked and printed back. Its errors say
/// what was expected; the table adds the key.
trait Kind {
    /// The field's type.
    type Value;

    /// Parses a trimmed text value; on failure, what was expected.
    fn parse(&self, text: &str) -> Result<Self::Value, &'static str>;

    /// Range-checks a value however it was set (typed setters skip `parse`), and normalises
    /// it where Java has two spellings of one setting.
    fn check(&self, _value: &mut Self::Value) -> Result<(), Rejection> {
        Ok(())
    }

    /// The value as `to_pairs` lists it and `parse` reads it back; `None`: not listed.
    fn print(&self, value: &Self::Value) -> Option<String>;

    /// The value as `ProducerConfig`'s `Debug` shows it.
    fn debug(&self, value: &Self::Value, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        Self::Value: fmt::Debug,
    {
        fmt::Debug::fmt(value, f)
    }
}

/// A field as its kind shows it in `Debug`.
struct Shown<'a, K: Kind>(&'a K, &'a K::Value);

impl<K: Kind> fmt::Debug for Shown<'_, K>
where
    K::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(self.1, f)
    }
}

/// Why [`Kind::check`] refused a value.
enum Rejection {
    /// Out of range: the value, printed, and the rule it breaks.
    Invalid { value: String, reason: String },
    /// A required value is absent.
    Missing,
}

impl Rejection {
    fn invalid(value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Rejection::Invalid {
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn naming(self, key: &str) -> ConfigError {
        match self {
            Rejection::Invalid { value, reason } => invalid(key, value, reason),
            Rejection::Missing => ConfigError::Missing {
                key: key.to_string(),
            },
        }
    }
}

/// `host:port` entries separated by commas, at least one. An entry named twice (a templated
/// list, `a:9092,PLAINTEXT://a:9092`) is kept once: Java accepts it, and one connection per
/// address is all a second naming could ask for.
struct Servers;

impl Kind for Servers {
    type Value = Vec<String>;

    fn parse(&self, text: &str) -> Result<Vec<String>, &'static str> {
        Ok(split_servers(text))
    }

    fn check(&self, servers: &mut Vec<String>) -> Result<(), Rejection> {
        if servers.is_empty() {
            return Err(Rejection::Missing);
        }
        let mut seen = BTreeSet::new();
        let mut kept = Vec::with_capacity(servers.len());
        for entry in servers.iter() {
            let address = without_scheme(entry).unwrap_or(entry);
            check_host_port(address).map_err(|reason| Rejection::invalid(entry, reason))?;
            // Connections take host:port, as Java's do.
            if seen.insert(address.to_string()) {
                kept.push(address.to_string());
            }
        }
        *servers = kept;
        Ok(())
    }

    fn print(&self, servers: &Vec<String>) -> Option<String> {
        Some(servers.join(","))
    }
}

/// Any text.
struct Text;

impl Kind for Text {
    type Value = String;

    fn parse(&self, text: &str) -> Result<String, &'static str> {
        Ok(text.to_string())
    }

    fn print(&self, text: &String) -> Option<String> {
        Some(text.clone())
    }
}

/// Text that may be absent, but not blank; listed only when present.
struct OptionalText;

impl Kind for OptionalText {
    type Value = Option<String>;

    fn parse(&self, text: &str) -> Result<Option<String>, &'static str> {
        Ok(Some(text.to_string()))
    }

    fn check(&self, text: &mut Option<String>) -> Result<(), Rejection> {
        match text {
            Some(t) if t.trim().is_empty() => Err(Rejection::invalid(t, "must not be empty")),
            _ => Ok(()),
        }
    }

    fn print(&self, text: &Option<String>) -> Option<String> {
        text.clone()
    }
}

/// A URL that may be absent, shown without what may carry a credential (user information,
/// query), so that `to_pairs` can be logged; its value then reads back as another URL.
struct UrlText;

impl Kind for UrlText {
    type Value = Option<String>;

    fn parse(&self, text: &str) -> Result<Option<String>, &'static str> {
        OptionalText.parse(text)
    }

    fn check(&self, text: &mut Option<String>) -> Result<(), Rejection> {
        OptionalText.check(text)
    }

    fn print(&self, url: &Option<String>) -> Option<String> {
        url.as_deref().map(url_without_credentials)
    }

    fn debug(&self, url: &Option<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.print(url), f)
    }
}

/// `url` without user information, query and fragment. An `@` anywhere before the query ends
/// the user information, so that a password holding a `/` is not shown either.
fn url_without_credentials(url: &str) -> String {
    let url = url.trim().split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}{rest}")
}

/// A password, token, private key or JAAS config: may be absent, never printed. `to_pairs`
/// leaves it out, so its output can be logged; errors never quote it.
struct SecretText;

impl Kind for SecretText {
    type Value = Option<Secret>;

    fn parse(&self, text: &str) -> Result<Option<Secret>, &'static str> {
        Ok(Some(Secret::new(text)))
    }

    fn check(&self, text: &mut Option<Secret>) -> Result<(), Rejection> {
        match text {
            Some(t) if t.expose().trim().is_empty() => {
                Err(Rejection::invalid("", "must not be empty"))
            }
            _ => Ok(()),
        }
    }

    fn print(&self, _: &Option<Secret>) -> Option<String> {
        None
    }
}

/// `ssl.truststore.type` and `ssl.keystore.type`: absent, or one of [`StoreType`]'s names.
struct StoreTypeKind;

impl Kind for StoreTypeKind {
    type Value = Option<StoreType>;

    fn parse(&self, text: &str) -> Result<Option<StoreType>, &'static str> {
        StoreType::from_name(text)
            .map(Some)
            .ok_or("expected PEM, PKCS12 or JKS")
    }

    fn print(&self, value: &Option<StoreType>) -> Option<String> {
        value.map(|t| t.name().to_string())
    }
}

/// `ssl.cipher.suites`: names, comma-separated; whether rustls has them is checked when
/// the TLS configuration is made.
struct SuiteNames;

impl Kind for SuiteNames {
    type Value = Vec<String>;

    fn parse(&self, text: &str) -> Result<Vec<String>, &'static str> {
        let names: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let well_formed = |n: &String| {
            n.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        };
        if names.iter().all(well_formed) {
            Ok(names)
        } else {
            Err("expected cipher suite names such as TLS_AES_128_GCM_SHA256, comma-separated")
        }
    }

    fn print(&self, value: &Vec<String>) -> Option<String> {
        (!value.is_empty()).then(|| value.join(","))
    }
}

/// `ssl.enabled.protocols`: TLS versions, comma-separated, at least one of TLSv1.2 and
/// TLSv1.3. The JDK's older names (`TLSv1.1`, `TLSv1`, `SSLv3`, `SSLv2Hello`) are taken and
/// skipped: Kafka's security docs long listed `TLSv1.2,TLSv1.1,TLSv1`, and Java 17, which
/// disables them, then speaks TLSv1.2 with such a list; rustls has none of them. A list of
/// old names alone is refused, where Java would fail its handshakes.
struct TlsVersions;

/// Names the JDK knows for protocols below TLSv1.2.
const OLD_TLS_NAMES: [&str; 4] = ["TLSv1.1", "TLSv1", "SSLv3", "SSLv2Hello"];

const TLS_VERSIONS_EXPECTED: &str =
    "expected TLSv1.2 and/or TLSv1.3 (TLSv1.1, TLSv1, SSLv3 and SSLv2Hello are skipped)";

impl Kind for TlsVersions {
    type Value = Vec<TlsVersion>;

    fn parse(&self, text: &str) -> Result<Vec<TlsVersion>, &'static str> {
        let mut versions = Vec::new();
        let mut old = false;
        for name in text.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            match TlsVersion::from_name(name) {
                Some(v) => versions.push(v),
                None if OLD_TLS_NAMES.iter().any(|o| o.eq_ignore_ascii_case(name)) => old = true,
                None => return Err(TLS_VERSIONS_EXPECTED),
            }
        }
        if versions.is_empty() && old {
            return Err("only versions below TLSv1.2, which Herald does not speak: expected TLSv1.2 and/or TLSv1.3");
        }
        Ok(versions)
    }

    fn check(&self, versions: &mut Vec<TlsVersion>) -> Result<(), Rejection> {
        if versions.is_empty() {
            return Err(Rejection::invalid("", TLS_VERSIONS_EXPECTED));
        }
        versions.sort_unstable();
        versions.dedup();
        Ok(())
    }

    fn print(&self, versions: &Vec<TlsVersion>) -> Option<String> {
        Some(
            versions
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// One of an enum's names: its parser, its canonical name, and what the error expects.
struct Choice<T>(fn(&str) -> Option<T>, fn(T) -> &'static str, &'static str);

impl<T: Copy> Kind for Choice<T> {
    type Value = T;

    fn parse(&self, text: &str) -> Result<T, &'static str> {
        (self.0)(text).ok_or(self.2)
    }

    fn print(&self, value: &T) -> Option<String> {
        Some((self.1)(*value).to_string())
    }
}

/// A fraction in `min..=max` (a Java `double`).
struct Ratio {
    min: f64,
    max: f64,
}

impl Kind for Ratio {
    type Value = f64;

    fn parse(&self, text: &str) -> Result<f64, &'static str> {
        text.parse::<f64>().map_err(|_| "expected a number")
    }

    fn check(&self, value: &mut f64) -> Result<(), Rejection> {
        if !(self.min..=self.max).contains(value) {
            let reason = format!("must be between {} and {}", self.min, self.max);
            return Err(Rejection::invalid(*value, reason));
        }
        Ok(())
    }

    fn print(&self, value: &f64) -> Option<String> {
        Some(value.to_string())
    }
}

/// Whole seconds, at most `max` (a Java `short`).
struct Seconds {
    max: u64,
}

impl Kind for Seconds {
    type Value = Duration;

    fn parse(&self, text: &str) -> Result<Duration, &'static str> {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "expected a non-negative integer (seconds)")
    }

    fn check(&self, value: &mut Duration) -> Result<(), Rejection> {
        if value.as_secs() > self.max || value.subsec_nanos() != 0 {
            let reason = format!("must be whole seconds, at most {}", self.max);
            return Err(Rejection::invalid(value.as_secs_f64(), reason));
        }
        Ok(())
    }

    fn print(&self, value: &Duration) -> Option<String> {
        Some(value.as_secs().to_string())
    }
}

/// `true` or `false`, in any case.
struct Flag;

impl Kind for Flag {
    type Value = bool;

    fn parse(&self, text: &str) -> Result<bool, &'static str> {
        if text.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if text.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err("expected true or false")
        }
    }

    fn print(&self, value: &bool) -> Option<String> {
        Some(value.to_string())
    }
}

/// Milliseconds: a Java `int` or `long` setting, possibly with a floor.
struct Millis {
    min: u64,
    max: u128,
}

impl Millis {
    const INT: Millis = Millis {
        min: 0,
        max: JAVA_INT_MAX,
    };
    const LONG: Millis = Millis {
        min: 0,
        max: JAVA_LONG_MAX,
    };

    const fn at_least(self, min: u64) -> Millis {
        Millis { min, ..self }
    }
}

impl Kind for Millis {
    type Value = Duration;

    fn parse(&self, text: &str) -> Result<Duration, &'static str> {
        text.parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .map(Duration::from_millis)
            .ok_or("expected a non-negative integer (milliseconds)")
    }

    fn check(&self, value: &mut Duration) -> Result<(), Rejection> {
        let ms = value.as_millis();
        if ms > self.max {
            let reason = format!("must be at most {} milliseconds", self.max);
            return Err(Rejection::invalid(ms, reason));
        }
        if ms < u128::from(self.min) {
            let reason = format!("must be at least {} milliseconds", self.min);
            return Err(Rejection::invalid(ms, reason));
        }
        Ok(())
    }

    fn print(&self, value: &Duration) -> Option<String> {
        Some(value.as_millis().to_string())
    }
}

/// Milliseconds as a Java `long` where a negative value means "never", as Java's
/// `connections.max.idle.ms` takes -1; never is `Duration::MAX`.
struct MillisOrNever;

impl Kind for MillisOrNever {
    type Value = Duration;

    fn parse(&self, text: &str) -> Result<Duration, &'static str> {
        match text.parse::<i64>() {
            Ok(n) if n < 0 => Ok(Duration::MAX),
            Ok(n) => Ok(Duration::from_millis(n as u64)),
            Err(_) => Err("expected an integer (milliseconds; negative: never)"),
        }
    }

    fn check(&self, value: &mut Duration) -> Result<(), Rejection> {
        if *value == Duration::MAX {
            return Ok(());
        }
        Millis::LONG.check(value)
    }

    fn print(&self, value: &Duration) -> Option<String> {
        if *value == Duration::MAX {
            return Some("-1".to_string());
        }
        Some(value.as_millis().to_string())
    }
}

/// A positive number of bytes, read as a Java `long`, at most `max`.
struct Bytes {
    max: u128,
}

impl Bytes {
    const INT: Bytes = Bytes { max: JAVA_INT_MAX };
    const LONG: Bytes = Bytes { max: JAVA_LONG_MAX };
}

impl Kind for Bytes {
    type Value = usize;

    fn parse(&self, text: &str) -> Result<usize, &'static str> {
        text.parse::<i64>()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("expected a non-negative integer (bytes)")
    }

    fn check(&self, value: &mut usize) -> Result<(), Rejection> {
        check_positive(*value, self.max)
    }

    fn print(&self, value: &usize) -> Option<String> {
        Some(value.to_string())
    }
}

/// `batch.size`: a non-negative Java `int`. Java's validator takes 0, documented as
/// "disables batching", and its producer then uses 1, so a Java config with 0 starts here
/// too, with the same meaning: every batch is full at its first record.
struct BatchBytes;

impl Kind for BatchBytes {
    type Value = usize;

    fn parse(&self, text: &str) -> Result<usize, &'static str> {
        Bytes::INT.parse(text)
    }

    fn check(&self, value: &mut usize) -> Result<(), Rejection> {
        *value = (*value).max(1);
        Bytes::INT.check(value)
    }

    fn print(&self, value: &usize) -> Option<String> {
        Bytes::INT.print(value)
    }
}

/// A socket buffer size: a positive Java `int`, or -1 for the operating system's (`None`).
/// Java's validator also takes 0, which its socket then refuses; here it is refused at once.
struct SocketBuffer;

impl Kind for SocketBuffer {
    type Value = Option<u32>;

    fn parse(&self, text: &str) -> Result<Option<u32>, &'static str> {
        const EXPECTED: &str = "expected -1 (the OS default) or a positive number of bytes";
        match text.parse::<i32>() {
            Ok(-1) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n as u32)),
            _ => Err(EXPECTED),
        }
    }

    fn check(&self, value: &mut Option<u32>) -> Result<(), Rejection> {
        match *value {
            Some(n) if n == 0 || u128::from(n) > JAVA_INT_MAX => Err(Rejection::invalid(
                n,
                format!("must be -1 (the OS default) or from 1 to {JAVA_INT_MAX}"),
            )),
            _ => Ok(()),
        }
    }

    fn print(&self, value: &Option<u32>) -> Option<String> {
        Some(value.map_or_else(|| "-1".to_string(), |n| n.to_string()))
    }
}

/// A positive Java `int`.
struct Count;

impl Kind for Count {
    type Value = usize;

    fn parse(&self, text: &str) -> Result<usize, &'static str> {
        text.parse::<i32>()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("expected a positive integer")
    }

    fn check(&self, value: &mut usize) -> Result<(), Rejection> {
        check_positive(*value, JAVA_INT_MAX)
    }

    fn print(&self, value: &usize) -> Option<String> {
        Some(value.to_string())
    }
}

fn check_positive(n: usize, max: u128) -> Result<(), Rejection> {
    if n < 1 || n as u128 > max {
        return Err(Rejection::invalid(
            n,
            format!("must be greater than 0 and at most {max}"),
        ));
    }
    Ok(())
}

/// A non-negative Java `int`.
struct NonNegativeInt;

impl Kind for NonNegativeInt {
    type Value = u32;

    fn parse(&self, text: &str) -> Result<u32, &'static str> {
        text.parse::<i32>()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("expected an integer from 0 to 2147483647")
    }

    fn check(&self, value: &mut u32) -> Result<(), Rejection> {
        if u128::from(*value) > JAVA_INT_MAX {
            let reason = format!("must be at most {JAVA_INT_MAX}");
            return Err(Rejection::invalid(*value, reason));
        }
        Ok(())
    }

    fn print(&self, value: &u32) -> Option<String> {
        Some(value.to_string())
    }
}

/// A compression level: `None` is the codec's default, which Java spells as a number.
struct Level {
    /// Java's default level; set explicitly, it is stored as `None`.
    default: i32,
    min: i32,
    max: i32,
    expected: &'static str,
}

impl Level {
    const GZIP: Level = Level {
        default: -1,
        min: 1,
        max: 9,
        expected: "expected 1 to 9, or -1 for the default",
    };
    const LZ4: Level = Level {
        default: 9,
        min: 1,
        max: 17,
        expected: "expected 1 to 17",
    };
    const ZSTD: Level = Level {
        default: 3,
        min: -131_072,
        max: 22,
        expected: "expected -131072 to 22",
    };
}

impl Kind for Level {
    type Value = Option<i32>;

    fn parse(&self, text: &str) -> Result<Option<i32>, &'static str> {
        text.parse::<i32>()
            .map(Some)
            .map_err(|_| "expected an integer")
    }

    fn check(&self, level: &mut Option<i32>) -> Result<(), Rejection> {
        match *level {
            Some(l) if l == self.default => *level = None,
            Some(l) if (self.min..=self.max).contains(&l) => {}
            Some(l) => return Err(Rejection::invalid(l, self.expected)),
            None => {}
        }
        Ok(())
    }

    fn print(&self, level: &Option<i32>) -> Option<String> {
        Some(level.unwrap_or(self.default).to_string())
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `bootstrap.servers` text to entries: split at commas, trimmed, empty ones dropped.
fn split_servers(text: impl AsRef<str>) -> Vec<String> {
    text.as_ref()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn some_string(text: impl Into<String>) -> Option<String> {
    Some(text.into())
}

fn some_secret(text: impl Into<Secret>) -> Option<Secret> {
    Some(text.into())
}

fn lowercase_compression(name: &str) -> Option<Compression> {
    Compression::from_name(&name.to_ascii_lowercase())
}

/// The known key closest to `key`, if within edit distance 2.
fn suggest(key: &str) -> Option<String> {
    KEYS.iter()
        .map(|k| k.name)
        .chain(ACCEPTED.iter().map(|(name, _)| *name))
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The entry after a listener-style `scheme://` (`PLAINTEXT://host:9092`,
/// `SASL_SSL://host:9093`), which Java's `Utils.getHost` skips: its `HOST_PORT_PATTERN`
/// takes any run of letters, digits, `-`, `%`, `.` and `_` there, even none. `None` without
/// one.
fn without_scheme(entry: &str) -> Option<&str> {
    let (scheme, rest) = entry.split_once("://")?;
    scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-%._".contains(c))
        .then_some(rest)
}

/// Checks one `bootstrap.servers` entry: `host:port` or `[ipv6]:port`, port 1..=65535.
fn check_host_port(entry: &str) -> Result<(), &'static str> {
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or("expected [address]:port")?,
        None => entry.rsplit_once(':').ok_or("expected host:port")?,
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-%._:".contains(c));
    if !host_ok {
        return Err("expected host:port with a valid host name or address");
    }
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => Ok(()),
        _ => Err("expected host:port with a port from 1 to 65535"),
    }
}

/// The one validation path: every key's own check, in table order, then the Java
/// post-processing rules that involve several keys.
fn finish(
    mut c: ProducerConfig,
    explicit: &BTreeSet<&'static str>,
) -> Result<ProducerConfig, ConfigError> {
    for key in KEYS {
        (key.check)(&mut c)?;
    }

    // Java: reconnect.backoff.ms alone means a constant reconnect backoff.
    if explicit.contains("reconnect.backoff.ms") && !explicit.contains("reconnect.backoff.max.ms") {
        c.reconnect_backoff_max = c.reconnect_backoff;
    }
    // Java: a base above its maximum gives a constant backoff of the maximum; the same for
    // the connection setup timeout (Java's ExponentialBackoff takes the smaller as its base).
    c.retry_backoff = c.retry_backoff.min(c.retry_backoff_max);
    c.reconnect_backoff = c.reconnect_backoff.min(c.reconnect_backoff_max);
    c.socket_connection_setup_timeout = c
        .socket_connection_setup_timeout
        .min(c.socket_connection_setup_timeout_max);

    // Java's token retriever refuses a login retry maximum below its base (secured/Retry),
    // on every fetch; here the loop would give up after one attempt instead.
    if c.sasl_oauthbearer_token_endpoint_url.is_some()
        && c.sasl_login_retry_backoff_max < c.sasl_login_retry_backoff
    {
        return Err(conflict(
            "sasl.login.retry.backoff.max.ms",
            format!(
                "{} ms is below sasl.login.retry.backoff.ms ({} ms)",
                c.sasl_login_retry_backoff_max.as_millis(),
                c.sasl_login_retry_backoff.as_millis()
            ),
        ));
    }

    // Java's SSLContext of `ssl.protocol` offers no version above it, whatever
    // ssl.enabled.protocols lists; with none left its handshakes fail, so say it here.
    if !c.ssl_enabled_protocols.iter().any(|v| *v <= c.ssl_protocol) {
        return Err(conflict(
            "ssl.protocol",
            format!(
                "{} leaves none of ssl.enabled.protocols ({})",
                c.ssl_protocol.name(),
                TlsVersions
                    .print(&c.ssl_enabled_protocols)
                    .unwrap_or_default()
            ),
        ));
    }

    // Java: a too-small delivery.timeout.ms is an error only if the user chose it.
    // In Java's ints: linger.ms and the sum capped at Integer.MAX_VALUE.
    let int_max = Duration::from_millis(JAVA_INT_MAX as u64);
    let floor = c
        .linger
        .min(int_max)
        .saturating_add(c.request_timeout)
        .min(int_max);
    if c.delivery_timeout < floor {
        if explicit.contains("delivery.timeout.ms") {
            return Err(conflict(
                "delivery.timeout.ms",
                format!(
                    "must be at least linger.ms + request.timeout.ms ({} + {} = {} ms), got {} ms",
                    c.linger.as_millis(),
                    c.request_timeout.as_millis(),
                    floor.as_millis(),
                    c.delivery_timeout.as_millis()
                ),
            ));
        }
        c.delivery_timeout = floor;
    }

    // A batch reserves batch.size of buffer.memory when it starts: a larger batch.size could
    // never get memory, and every record would wait max.block.ms and fail (in Java, every
    // send throws at once). Named here instead, on the key the user set.
    if c.batch_size > c.buffer_memory {
        let key = if explicit.contains("batch.size") || !explicit.contains("buffer.memory") {
            "batch.size"
        } else {
            "buffer.memory"
        };
        return Err(conflict(
            key,
            format!(
                "batch.size ({}) must be at most buffer.memory ({}): a batch reserves \
                 batch.size of buffer.memory when it starts",
                c.batch_size, c.buffer_memory
            ),
        ));
    }

    // Java: acks and retries switch default idempotence off, but contradict an explicit one.
    if c.enable_idempotence {
        // Java 4.x refuses more than 5 in flight unless idempotence is explicitly false (3.x
        // switched default idempotence off with a warning that 4.0 would make it an error),
        // whatever acks and retries say: Java checks it before it acts on those.
        if c.max_in_flight_requests_per_connection > MAX_IN_FLIGHT_FOR_IDEMPOTENCE {
            return Err(conflict(
                "max.in.flight.requests.per.connection",
                format!(
                    "must be at most {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} unless enable.idempotence \
                     is false, got {}",
                    c.max_in_flight_requests_per_connection
                ),
            ));
        }
        let user_chose = explicit.contains("enable.idempotence");
        let conflicts = [
            (
                c.acks != Acks::All,
                "acks",
                "must be all (-1) when enable.idempotence is true",
            ),
            (
                c.retries == 0,
                "retries",
                "must be greater than 0 when enable.idempotence is true",
            ),
        ];
        for (hit, key, reason) in conflicts {
            if hit {
                if user_chose {
                    return Err(conflict(key, reason));
                }
                c.enable_idempotence = false;
            }
        }
    }
    if !c.enable_idempotence && c.transactional_id.is_some() {
        if explicit.contains("enable.idempotence") {
            return Err(conflict(
                "transactional.id",
                "a transactional producer is idempotent: enable.idempotence=false cannot be \
                 combined with transactional.id",
            ));
        }
        return Err(conflict(
            "transactional.id",
            "requires idempotence (enable.idempotence, acks=all, retries > 0, \
             max.in.flight.requests.per.connection <= 5)",
        ));
    }

    if !explicit.contains("client.id") {
        c.client_id = match &c.transactional_id {
            Some(id) => format!("producer-{id}"),
            None => format!(
                "producer-{}",
                CLIENT_ID_SEQUENCE.fetch_add(1, Ordering::Relaxed)
            ),
        };
    }
    Ok(c)
}

/// Splits the text of a Java `.properties` file into key/value pairs, in order.
///
/// Handles `#`/`!` comments, blank lines, `=`, `:` or whitespace separators, backslash line
/// continuation and the usual escapes (`\t`, `\n`, `\uXXXX`, `\=`...). Values are trimmed.
fn parse_properties(text: &str) -> Vec<(String, String)> {
    const WS: &[char] = &[' ', '\t', '\x0c'];
    let mut pairs = Vec::new();
    let mut logical = String::new();
    let mut continuing = false;
    for line in text.lines() {
        let line = line.trim_start_matches(WS);
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        pairs.push(split_property(&logical));
        logical.clear();
    }
    if continuing && !logical.is_empty() {
        pairs.push(split_property(&logical));
    }
    pairs
}

/// Splits one logical line at the first unescaped `=`, `:` or whitespace.
fn split_property(line: &str) -> (String, String) {
    let is_ws = |c: char| c == ' ' || c == '\t' || c == '\x0c';
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_ws(c) {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start_matches(is_ws);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches(is_ws);
    }
    (unescape(key), unescape(rest).trim_end().to_string())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        chars.nth(3);
                    }
                    _ => out.push('u'),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn base() -> ProducerConfigBuilder {
        ProducerConfig::builder().bootstrap_servers("localhost:9092")
    }

    fn pairs_err(pairs: &[(&str, &str)]) -> ConfigError {
        let mut all = vec![("bootstrap.servers", "localhost:9092")];
        all.extend_from_slice(pairs);
        match ProducerConfig::from_pairs(all) {
            Ok(c) => panic!("expected an error for {pairs:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    fn pairs_ok(pairs: &[(&str, &str)]) -> ProducerConfig {
        let mut all = vec![("bootstrap.servers", "localhost:9092")];
        all.extend_from_slice(pairs);
        match ProducerConfig::from_pairs(all) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error for {pairs:?}: {e}"),
        }
    }

    fn assert_invalid(pairs: &[(&str, &str)], key: &str) {
        let e = pairs_err(pairs);
        assert!(
            matches!(e, ConfigError::InvalidValue { .. }),
            "{pairs:?}: {e:?}"
        );
        assert_eq!(e.key(), Some(key), "{e}");
    }

    fn assert_conflict(pairs: &[(&str, &str)], key: &str) -> String {
        let e = pairs_err(pairs);
        assert!(
            matches!(e, ConfigError::Conflict { .. }),
            "{pairs:?}: {e:?}"
        );
        assert_eq!(e.key(), Some(key), "{e}");
        e.to_string()
    }

    #[test]
    fn defaults_match_java_table() {
        let c = base().build().unwrap();
        assert_eq!(c.bootstrap_servers, vec!["localhost:9092".to_string()]);
        assert!(c.client_id.starts_with("producer-"));
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, ms(5));
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.buffer_memory, 33_554_432);
        assert_eq!(c.max_block, ms(60_000));
        assert_eq!(c.max_request_size, 1_048_576);
        assert_eq!(c.request_timeout, ms(30_000));
        assert_eq!(c.delivery_timeout, ms(120_000));
        assert_eq!(c.retries, 2_147_483_647);
        assert_eq!(c.retry_backoff, ms(100));
        assert_eq!(c.retry_backoff_max, ms(1000));
        assert_eq!(c.reconnect_backoff, ms(50));
        assert_eq!(c.reconnect_backoff_max, ms(1000));
        assert_eq!(c.max_in_flight_requests_per_connection, 5);
        assert!(c.enable_idempotence);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.compression_gzip_level, None);
        assert_eq!(c.compression_lz4_level, None);
        assert_eq!(c.compression_zstd_level, None);
        assert_eq!(c.compression_level(), None);
        assert!(!c.partitioner_ignore_keys);
        assert!(c.partitioner_adaptive_partitioning_enable);
        assert_eq!(c.partitioner_availability_timeout, Duration::ZERO);
        assert_eq!(c.metadata_max_age, ms(300_000));
        assert_eq!(c.metadata_max_idle, ms(300_000));
        assert_eq!(c.connections_max_idle, ms(540_000));
        assert_eq!(c.transactional_id, None);
        assert_eq!(c.transaction_timeout, ms(60_000));
        assert_eq!(c.security_protocol, SecurityProtocol::Plaintext);
        assert!(c.extra.is_empty());
        assert_eq!(c.validate_supported(), Ok(()));
    }

    #[test]
    fn typed_builder() {
        let c = ProducerConfig::builder()
            .bootstrap_servers("a:9092, b:9093")
            .client_id("me")
            .acks(Acks::Leader)
            .linger(ms(20))
            .batch_size(65536)
            .buffer_memory(1 << 20)
            .max_block(ms(1000))
            .max_request_size(2 << 20)
            .request_timeout(ms(10_000))
            .delivery_timeout(ms(60_000))
            .retries(3)
            .retry_backoff(ms(10))
            .retry_backoff_max(ms(500))
            .reconnect_backoff(ms(20))
            .reconnect_backoff_max(ms(2000))
            .max_in_flight_requests_per_connection(1)
            .compression(Compression::Zstd)
            .compression_zstd_level(10)
            .partitioner_ignore_keys(true)
            .partitioner_adaptive_partitioning_enable(false)
            .metadata_max_age(ms(10_000))
            .metadata_max_idle(ms(20_000))
            .connections_max_idle(ms(30_000))
            .transaction_timeout(ms(5000))
            .security_protocol(SecurityProtocol::SaslSsl)
            .build()
            .unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:9092", "b:9093"]);
        assert_eq!(c.client_id, "me");
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, ms(20));
        assert_eq!(c.batch_size, 65536);
        assert_eq!(c.delivery_timeout, ms(60_000));
        assert_eq!(c.retries, 3);
        assert_eq!(c.reconnect_backoff_max, ms(2000));
        assert!(
            !c.enable_idempotence,
            "acks=1 silently disables idempotence"
        );
        assert_eq!(c.compression_level(), Some(10));
        assert!(c.partitioner_ignore_keys);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
    }

    #[test]
    fn typed_values_go_through_validation() {
        let e = base()
            .batch_size(i32::MAX as usize + 1)
            .build()
            .unwrap_err();
        assert_eq!(e.key(), Some("batch.size"));
        let e = base()
            .request_timeout(ms(i32::MAX as u64 + 1))
            .build()
            .unwrap_err();
        assert_eq!(e.key(), Some("request.timeout.ms"));
        let e = base().transactional_id("").build().unwrap_err();
        assert_eq!(e.key(), Some("transactional.id"));
    }

    #[test]
    fn set_errors_are_deferred_and_overridable() {
        let b = base().set("linger.ms", "abc");
        assert_eq!(b.build().unwrap_err().key(), Some("linger.ms"));
        assert_eq!(
            b.clone().set("linger.ms", "7").build().unwrap().linger,
            ms(7)
        );
        assert_eq!(b.linger(ms(8)).build().unwrap().linger, ms(8));
    }

    /// Java keys Herald cannot honour are refused as unsupported, saying what to do
    /// instead; an unknown key stays unknown.
    #[test]
    fn java_only_keys_are_unsupported_with_the_alternative() {
        let refused = |key: &str, value: &str| {
            ProducerConfig::from_pairs([("bootstrap.servers", "k:9092"), (key, value)]).unwrap_err()
        };
        for (key, hint) in [
            ("partitioner.class", "ProducerBuilder::partitioner"),
            ("interceptor.classes", "ProducerBuilder::interceptor"),
            ("metric.reporters", "facade"),
            ("ssl.provider", "rustls"),
            ("sasl.kerberos.service.name", "GSSAPI"),
            ("sasl.oauthbearer.jwks.endpoint.url", "token.endpoint.url"),
            ("sasl.oauthbearer.expected.audience", "token.endpoint.url"),
            ("sasl.client.callback.handler.class", "TokenProvider"),
        ] {
            let e = refused(key, "x");
            assert!(
                matches!(&e, ConfigError::Unsupported { key: k, .. } if k == key),
                "{key}: {e:?}"
            );
            assert!(e.to_string().contains(hint), "{key}: {e}");
        }
        assert!(matches!(
            refused("sasl.kerberosx", "x"),
            ConfigError::UnknownKey { .. }
        ));
        let c = pairs_ok(&[(
            "ssl.cipher.suites",
            "TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        )]);
        assert_eq!(
            c.ssl_cipher_suites,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert_invalid(&[("ssl.cipher.suites", "aes-gcm")], "ssl.cipher.suites");
        // enable.metrics.push: false is what Herald does; true asks for KIP-714.
        let c = pairs_ok(&[("enable.metrics.push", "false")]);
        assert_eq!(c.extra["enable.metrics.push"], "false");
        let e = refused("enable.metrics.push", "true");
        assert!(e.to_string().contains("KIP-714"), "{e}");
    }

    #[test]
    fn socket_keys_are_read_with_the_os_default_for_buffers() {
        let c = pairs_ok(&[]);
        assert_eq!(c.socket_connection_setup_timeout, ms(10_000));
        assert_eq!(c.socket_connection_setup_timeout_max, ms(30_000));
        assert_eq!((c.send_buffer_bytes, c.receive_buffer_bytes), (None, None));
        let c = pairs_ok(&[
            ("send.buffer.bytes", "131072"),
            ("receive.buffer.bytes", "-1"),
            ("socket.connection.setup.timeout.ms", "250"),
            ("socket.connection.setup.timeout.max.ms", "1000"),
        ]);
        assert_eq!(c.send_buffer_bytes, Some(131_072));
        assert_eq!(c.receive_buffer_bytes, None);
        assert_eq!(c.socket_connection_setup_timeout, ms(250));
        assert_eq!(c.socket_connection_setup_timeout_max, ms(1_000));
        let pairs = c.to_pairs();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("send.buffer.bytes").as_deref(), Some("131072"));
        assert_eq!(get("receive.buffer.bytes").as_deref(), Some("-1"));
    }

    #[test]
    fn from_pairs_path() {
        let c = ProducerConfig::from_pairs([
            ("bootstrap.servers", "k1:9092,k2:9092"),
            ("acks", "1"),
            ("linger.ms", "0"),
            ("compression.type", "lz4"),
            ("compression.lz4.level", "12"),
            ("retries", "5"),
            ("enable.idempotence", "false"),
            ("security.protocol", "ssl"),
            ("client.dns.lookup", "use_all_dns_ips"),
            (
                "key.serializer",
                "org.apache.kafka.common.serialization.StringSerializer",
            ),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers.len(), 2);
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::ZERO);
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.compression_level(), Some(12));
        assert_eq!(c.retries, 5);
        assert!(!c.enable_idempotence);
        assert_eq!(c.security_protocol, SecurityProtocol::Ssl);
        assert_eq!(c.extra["client.dns.lookup"], "use_all_dns_ips");
        assert_eq!(c.extra.len(), 2);
        assert!(!c.extra.contains_key("send.buffer.bytes"));

        // Strings as well as &str; later pairs win.
        let owned = vec![
            ("bootstrap.servers".to_string(), "x:1".to_string()),
            ("linger.ms".to_string(), "1".to_string()),
            ("linger.ms".to_string(), "2".to_string()),
        ];
        assert_eq!(ProducerConfig::from_pairs(owned).unwrap().linger, ms(2));
    }

    #[test]
    fn properties_path() {
        let text = "\
# a comment
! another comment
   # indented comment

bootstrap.servers = b1:9092,\\
                    b2:9092,\\
    b3:9092
acks: all
linger.ms 10
client.id=my\\=app
  batch.size   =   32768   
compression.type:gzip
compression.gzip.level=9
metrics.recording.level=DEBUG
";
        let c = ProducerConfig::from_properties_str(text).unwrap();
        assert_eq!(c.bootstrap_servers, vec!["b1:9092", "b2:9092", "b3:9092"]);
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, ms(10));
        assert_eq!(c.client_id, "my=app");
        assert_eq!(c.batch_size, 32768);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.compression_level(), Some(9));
        assert_eq!(c.extra["metrics.recording.level"], "DEBUG");
    }

    #[test]
    fn properties_parser_details() {
        let pairs = parse_properties(
            "a=1\r\nb\n# c=3\nd = x\\\\\ne=\\u0041\\tB\nf=g\\\n  # not a comment\n",
        );
        let expected: Vec<(String, String)> = [
            ("a", "1"),
            ("b", ""),
            ("d", "x\\"),
            ("e", "A\tB"),
            ("f", "g# not a comment"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn properties_file_path() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "herald-config-test-{}.properties",
            std::process::id()
        ));
        std::fs::write(&path, "bootstrap.servers=f:9092\nlinger.ms=3\n").unwrap();
        let c = ProducerConfig::from_properties_file(&path);
        let _ = std::fs::remove_file(&path);
        let c = c.unwrap();
        assert_eq!(c.linger, ms(3));

        let missing = dir.join("herald-config-test-does-not-exist.properties");
        let e = ProducerConfig::from_properties_file(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert_eq!(e.key(), None);
        assert!(e.to_string().contains("does-not-exist"), "{e}");
    }

    /// Java takes a negative `connections.max.idle.ms` as "never close idle connections";
    /// so does Herald, and writes it back as -1.
    #[test]
    fn connections_max_idle_takes_a_negative_value_as_never() {
        assert_eq!(
            pairs_ok(&[("connections.max.idle.ms", "1500")]).connections_max_idle,
            ms(1500)
        );
        let never = pairs_ok(&[("connections.max.idle.ms", "-1")]);
        assert_eq!(never.connections_max_idle, Duration::MAX);
        let listed = never.to_pairs();
        assert!(listed
            .iter()
            .any(|(k, v)| k == "connections.max.idle.ms" && v == "-1"));
        let again = ProducerConfig::from_pairs(listed).expect("listed pairs load again");
        assert_eq!(again.connections_max_idle, Duration::MAX);
        let e = pairs_err(&[("connections.max.idle.ms", "soon")]);
        assert!(e.to_string().contains("connections.max.idle.ms"), "{e}");
    }

    #[test]
    fn unknown_keys() {
        let e = pairs_err(&[("lingr.ms", "5")]);
        assert_eq!(
            e,
            ConfigError::UnknownKey {
                key: "lingr.ms".into(),
                suggestion: Some("linger.ms".into())
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown config key \"lingr.ms\"; did you mean \"linger.ms\"?"
        );
        let e = pairs_err(&[("ack", "all")]);
        assert!(
            matches!(&e, ConfigError::UnknownKey { suggestion: Some(s), .. } if s == "acks"),
            "{e:?}"
        );
        let e = pairs_err(&[("totally.unknown", "1")]);
        assert!(
            matches!(
                &e,
                ConfigError::UnknownKey {
                    suggestion: None,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.key(), Some("totally.unknown"));
        assert_eq!(e.to_string(), "unknown config key \"totally.unknown\"");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    /// A secret over several lines of a properties file, without the backslashes that join
    /// them: its second line reads as a key, which the error must not show.
    #[test]
    fn a_stray_value_line_is_not_quoted_as_an_unknown_key() {
        let text = "bootstrap.servers=k:9092\n\
                    ssl.keystore.key=-----BEGIN PRIVATE KEY-----\n\
                    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7hunter2\n\
                    -----END PRIVATE KEY-----\n";
        let e = ProducerConfig::from_properties_str(text).unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::UnknownKey {
                    suggestion: None,
                    ..
                }
            ),
            "{e:?}"
        );
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("MIIE"), "{shown}");
        assert!(
            shown.contains("backslash at the end of each line"),
            "{shown}"
        );
        // A name written as keys are is still quoted, whatever its length up to 100.
        let long = format!("x.{}", "y".repeat(98));
        let e = pairs_err(&[(long.as_str(), "1")]);
        assert!(e.to_string().contains(&long), "{e}");
        let e = pairs_err(&[(format!("{long}y").as_str(), "1")]);
        assert!(!e.to_string().contains(&long), "{e}");
        // A lone lowercase word is shown only as a typo of a key; a line of a value is not.
        let e = pairs_err(&[("ack", "1")]);
        assert!(e.to_string().contains("did you mean \"acks\""), "{e}");
        let e = ProducerConfig::from_properties_str("bootstrap.servers=k:9092\nhunter2secret\n")
            .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    }

    #[test]
    fn malformed_values() {
        let e = pairs_err(&[("linger.ms", "abc")]);
        assert_eq!(
            e.to_string(),
            "invalid value \"abc\" for linger.ms: expected a non-negative integer (milliseconds)"
        );
        assert_invalid(&[("linger.ms", "-1")], "linger.ms");
        assert_invalid(&[("request.timeout.ms", "1.5")], "request.timeout.ms");
        assert_invalid(&[("batch.size", "3000000000")], "batch.size");
        assert_invalid(&[("batch.size", "-5")], "batch.size");
        assert_invalid(&[("buffer.memory", "0")], "buffer.memory");
        assert_invalid(&[("max.request.size", "0")], "max.request.size");
        assert_invalid(&[("compression.type", "brotli")], "compression.type");
        assert_invalid(&[("acks", "2")], "acks");
        assert_invalid(&[("acks", "most")], "acks");
        assert_invalid(&[("retries", "-1")], "retries");
        assert_invalid(&[("retries", "2147483648")], "retries");
        assert_invalid(&[("enable.idempotence", "yes")], "enable.idempotence");
        assert_invalid(
            &[("max.in.flight.requests.per.connection", "0")],
            "max.in.flight.requests.per.connection",
        );
        assert_invalid(&[("metadata.max.idle.ms", "1000")], "metadata.max.idle.ms");
        assert_invalid(
            &[("delivery.timeout.ms", "3000000000")],
            "delivery.timeout.ms",
        );
        assert_invalid(&[("security.protocol", "TLS")], "security.protocol");
        assert_invalid(&[("transactional.id", "  ")], "transactional.id");
        assert_invalid(&[("client.dns.lookup", "default")], "client.dns.lookup");
        assert_invalid(&[("metrics.num.samples", "0")], "metrics.num.samples");
        // Java's ranges for the token refresh settings.
        for (key, value) in [
            ("sasl.login.refresh.window.factor", "0.4"),
            ("sasl.login.refresh.window.factor", "1.01"),
            ("sasl.login.refresh.window.factor", "soon"),
            ("sasl.login.refresh.window.jitter", "0.3"),
            ("sasl.login.refresh.window.jitter", "-0.1"),
            ("sasl.login.refresh.min.period.seconds", "901"),
            ("sasl.login.refresh.min.period.seconds", "-1"),
            ("sasl.login.refresh.buffer.seconds", "3601"),
        ] {
            assert_invalid(&[(key, value)], key);
        }
        let edges = ProducerConfig::from_pairs([
            ("bootstrap.servers", "b:9092"),
            ("sasl.login.refresh.window.factor", "0.5"),
            ("sasl.login.refresh.window.jitter", "0.25"),
            ("sasl.login.refresh.min.period.seconds", "900"),
            ("sasl.login.refresh.buffer.seconds", "0"),
        ])
        .unwrap();
        assert_eq!(edges.sasl_login_refresh_window_factor, 0.5);
        assert_eq!(
            edges.sasl_login_refresh_min_period,
            Duration::from_secs(900)
        );
        assert_invalid(&[("send.buffer.bytes", "-2")], "send.buffer.bytes");
        // Java's validator takes 0, which its socket then refuses at every connect.
        assert_invalid(&[("receive.buffer.bytes", "0")], "receive.buffer.bytes");
        assert_invalid(
            &[("socket.connection.setup.timeout.ms", "-1")],
            "socket.connection.setup.timeout.ms",
        );
        let e = ProducerConfig::from_pairs([
            ("bootstrap.servers", "k:9092"),
            (
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only",
            ),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        for bad in [
            "host",
            "host:",
            "host:0",
            "host:70000",
            "host:abc",
            ":9092",
            "a b:1",
            "[::1]",
        ] {
            let e = ProducerConfig::from_pairs([("bootstrap.servers", bad)]).unwrap_err();
            assert!(
                matches!(e, ConfigError::InvalidValue { .. }),
                "{bad}: {e:?}"
            );
            assert_eq!(e.key(), Some("bootstrap.servers"));
        }
        let ok = ProducerConfig::from_pairs([(
            "bootstrap.servers",
            "[::1]:9092,10.0.0.1:1,h-1.x:65535,",
        )]);
        assert_eq!(ok.unwrap().bootstrap_servers.len(), 3);
    }

    /// Java's `Utils.getHost`/`getPort` take an entry with a listener-style scheme in front
    /// (`PLAINTEXT://host:9092`, as broker listeners are written), and connect to host:port.
    /// Its pattern (`^(?:[0-9a-zA-Z\-%._]*://)?`) takes underscores and an empty scheme.
    #[test]
    fn bootstrap_servers_take_a_scheme_prefix_as_java_does() {
        let c = pairs_ok(&[(
            "bootstrap.servers",
            "PLAINTEXT://k1:9092,SSL://[::1]:9093,SASL_SSL://k3:9094,://k4:1,k5:9094",
        )]);
        assert_eq!(
            c.bootstrap_servers,
            ["k1:9092", "[::1]:9093", "k3:9094", "k4:1", "k5:9094"]
        );
        for bad in ["x y://k:1", "a/b://k:1", "x://", "x://k"] {
            let e = ProducerConfig::from_pairs([("bootstrap.servers", bad)]).unwrap_err();
            assert_eq!(e.key(), Some("bootstrap.servers"), "{bad}: {e}");
        }
    }

    /// Java keeps a bootstrap entry named twice (one bootstrap node each); a templated list
    /// that repeats a service name must load. Herald keeps it once, in first place.
    #[test]
    fn a_bootstrap_server_named_twice_is_kept_once() {
        let c = pairs_ok(&[(
            "bootstrap.servers",
            "k1:9092,k2:9092,PLAINTEXT://k1:9092,k2:9092,k3:9092",
        )]);
        assert_eq!(c.bootstrap_servers, ["k1:9092", "k2:9092", "k3:9092"]);
        assert_eq!(
            c.to_pairs()
                .into_iter()
                .find(|(k, _)| k == "bootstrap.servers")
                .map(|(_, v)| v),
            Some("k1:9092,k2:9092,k3:9092".to_string())
        );
    }

    /// Java reads a `.properties` file as ISO-8859-1: a Latin-1 `é` in a comment or a value
    /// loads there, and here. UTF-8 is read as UTF-8.
    #[test]
    fn a_latin1_properties_file_loads_as_in_java() {
        let dir = std::env::temp_dir().join(format!("herald-latin1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let latin1 = dir.join("latin1.properties");
        let mut bytes = b"# r\xe9seau\nbootstrap.servers=k:9092\nclient.id=caf".to_vec();
        bytes.push(0xE9);
        bytes.push(b'\n');
        std::fs::write(&latin1, &bytes).unwrap();
        let c = ProducerConfig::from_properties_file(&latin1).expect("loads");
        assert_eq!(c.client_id, "caf\u{e9}");
        let utf8 = dir.join("utf8.properties");
        std::fs::write(&utf8, "bootstrap.servers=k:9092\nclient.id=caf\u{e9}\n").unwrap();
        let c = ProducerConfig::from_properties_file(&utf8).expect("loads");
        assert_eq!(c.client_id, "caf\u{e9}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bootstrap_servers_required() {
        let e = ProducerConfig::builder().build().unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                key: "bootstrap.servers".into()
            }
        );
        assert_eq!(e.to_string(), "bootstrap.servers is required");
        let e = ProducerConfig::from_pairs([("bootstrap.servers", " , ")]).unwrap_err();
        assert_eq!(e.to_string(), "bootstrap.servers is required");
    }

    #[test]
    fn idempotence_silently_disabled_by_default_conflicts() {
        assert!(!pairs_ok(&[("acks", "1")]).enable_idempotence);
        assert!(!pairs_ok(&[("acks", "0")]).enable_idempotence);
        assert!(!pairs_ok(&[("retries", "0")]).enable_idempotence);
        assert!(
            pairs_ok(&[
                ("acks", "-1"),
                ("max.in.flight.requests.per.connection", "5")
            ])
            .enable_idempotence
        );
        // An explicit false is compatible with anything.
        let c = pairs_ok(&[
            ("enable.idempotence", "false"),
            ("acks", "0"),
            ("retries", "0"),
        ]);
        assert!(!c.enable_idempotence);
    }

    /// `ssl.protocol`, as Java configs carry it: TLSv1.3 (the default) and TLS offer every
    /// enabled version, TLSv1.2 none above it, so with only TLSv1.3 enabled nothing is left
    /// and the config says so (Java's handshakes would fail).
    #[test]
    fn ssl_protocol_takes_javas_names_and_must_leave_an_enabled_version() {
        assert_eq!(pairs_ok(&[]).ssl_protocol, TlsVersion::V1_3);
        assert_eq!(
            pairs_ok(&[("ssl.protocol", "TLS")]).ssl_protocol,
            TlsVersion::V1_3
        );
        assert_eq!(
            pairs_ok(&[("ssl.protocol", "TLSv1.2")]).ssl_protocol,
            TlsVersion::V1_2
        );
        assert_invalid(&[("ssl.protocol", "SSLv3")], "ssl.protocol");
        let e = ProducerConfig::from_pairs([
            ("bootstrap.servers", "k:9092"),
            ("ssl.protocol", "TLSv1.2"),
            ("ssl.enabled.protocols", "TLSv1.3"),
        ])
        .unwrap_err();
        assert_eq!(e.key(), Some("ssl.protocol"), "{e}");
        assert!(
            e.to_string()
                .contains("TLSv1.2 leaves none of ssl.enabled.protocols (TLSv1.3)"),
            "{e}"
        );
    }

    /// Java 4.x refuses more than 5 requests in flight unless idempotence is explicitly off,
    /// also when acks or retries would have switched default idempotence off (Java checks the
    /// count first): `ProducerConfigTest` expects the error for max.in.flight=6 alone.
    #[test]
    fn more_than_five_in_flight_needs_idempotence_explicitly_off() {
        for pairs in [
            &[("max.in.flight.requests.per.connection", "6")][..],
            &[
                ("acks", "1"),
                ("max.in.flight.requests.per.connection", "10"),
            ],
            &[
                ("retries", "0"),
                ("max.in.flight.requests.per.connection", "6"),
            ],
        ] {
            let msg = assert_conflict(pairs, "max.in.flight.requests.per.connection");
            assert!(msg.contains("unless enable.idempotence is false"), "{msg}");
        }
        let c = pairs_ok(&[
            ("enable.idempotence", "false"),
            ("max.in.flight.requests.per.connection", "6"),
        ]);
        assert_eq!(c.max_in_flight_requests_per_connection, 6);
        assert!(!c.enable_idempotence);
    }

    #[test]
    fn idempotence_explicit_true_conflicts() {
        let msg = assert_conflict(&[("enable.idempotence", "true"), ("acks", "1")], "acks");
        assert_eq!(
            msg,
            "conflicting config acks: must be all (-1) when enable.idempotence is true"
        );
        assert_conflict(
            &[("enable.idempotence", "true"), ("retries", "0")],
            "retries",
        );
        assert_conflict(
            &[
                ("enable.idempotence", "true"),
                ("max.in.flight.requests.per.connection", "6"),
            ],
            "max.in.flight.requests.per.connection",
        );
        let e = base()
            .enable_idempotence(true)
            .acks(Acks::None)
            .build()
            .unwrap_err();
        assert_eq!(e.key(), Some("acks"));
    }

    #[test]
    fn transactional_id_rules() {
        assert_conflict(
            &[("transactional.id", "tx"), ("acks", "1")],
            "transactional.id",
        );
        let c = pairs_ok(&[("transactional.id", "tx")]);
        assert_eq!(c.client_id, "producer-tx");
        assert!(c.enable_idempotence);
        assert_eq!(c.transaction_timeout, ms(60_000));
        c.validate_supported().unwrap();
        let e = ProducerConfig::from_pairs([
            ("bootstrap.servers", "a:1"),
            ("transactional.id", "tx"),
            ("enable.idempotence", "false"),
        ])
        .unwrap_err();
        assert_eq!(e.key(), Some("transactional.id"));
        let text = e.to_string();
        assert!(
            text.contains("enable.idempotence") && text.contains("transactional.id"),
            "{text}"
        );
    }

    #[test]
    fn sasl_settings_are_checked_at_start() {
        // Plain protocols and TLS need no SASL settings.
        for p in ["PLAINTEXT", "SSL"] {
            pairs_ok(&[("security.protocol", p)])
                .validate_supported()
                .unwrap();
        }
        // Java's default mechanism, GSSAPI, is refused with the ones that work.
        let c = pairs_ok(&[("security.protocol", "SASL_SSL")]);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        let e = c.validate_supported().unwrap_err();
        assert_eq!(e.key(), Some("sasl.mechanism"));
        let msg = e.to_string();
        assert!(
            msg.contains("GSSAPI (Java's default when unset) is not supported"),
            "{msg}"
        );
        assert!(
            msg.contains("PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"),
            "{msg}"
        );
        // librdkafka's alias names the key it came from.
        let e = pairs_ok(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "GSSAPI"),
        ])
        .validate_supported()
        .unwrap_err();
        assert_eq!(e.key(), Some("sasl.mechanisms"));
        // No credentials at all.
        let e = pairs_ok(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
        ])
        .validate_supported()
        .unwrap_err();
        assert_eq!(e.key(), Some("sasl.jaas.config"));
        // A username without its password.
        let e = pairs_ok(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
        ])
        .validate_supported()
        .unwrap_err();
        assert_eq!(e.key(), Some("sasl.password"));
        // A JAAS config that does not parse, or names a token for SCRAM: the key, never the
        // password.
        for jaas in [
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required password="hunter2""#,
            r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required token="hunter2";"#,
            r#"com.sun.security.auth.module.Krb5LoginModule required password="hunter2";"#,
        ] {
            let c = pairs_ok(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.jaas.config", jaas),
            ]);
            let e = c.validate_supported().unwrap_err();
            assert_eq!(e.key(), Some("sasl.jaas.config"), "{e}");
            assert!(!format!("{e}{e:?}{c:?}").contains("hunter2"), "{e}");
        }
        // OAUTHBEARER needs a token in sasl.jaas.config, unless the application supplies
        // them.
        let c = pairs_ok(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
        ]);
        assert_eq!(
            c.validate_supported().unwrap_err().key(),
            Some("sasl.jaas.config")
        );
        c.validate_supported_for(crate::sasl::OAuthTokens::FromApplication)
            .unwrap();
        // Both ways of giving a password work.
        for extra in [
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="hunter2";"#,
            ),
            ("sasl.username", "alice"),
        ] {
            let c = pairs_ok(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.password", "hunter2"),
                extra,
            ]);
            c.validate_supported().unwrap();
            assert!(!format!("{c:?}").contains("hunter2"));
            assert!(!format!("{:?}", c.to_pairs()).contains("hunter2"));
        }
    }

    /// Java's validator takes 0 and its producer uses 1 ("disables batching"): a Java
    /// config with it starts, and every batch is full at its first record.
    #[test]
    fn batch_size_zero_is_one_record_per_batch() {
        let c = pairs_ok(&[("batch.size", "0")]);
        assert_eq!(c.batch_size, 1);
        assert_eq!(base().batch_size(0).build().unwrap().batch_size, 1);
        let listed = c.to_pairs();
        assert!(listed.iter().any(|(k, v)| k == "batch.size" && v == "1"));
    }

    #[test]
    fn batch_size_must_fit_buffer_memory() {
        let msg = assert_conflict(
            &[("batch.size", "65536"), ("buffer.memory", "32768")],
            "batch.size",
        );
        assert!(
            msg.contains("batch.size (65536) must be at most buffer.memory (32768)"),
            "{msg}"
        );
        // Only buffer.memory set, below the default batch.size: that is the key to change.
        assert_conflict(&[("buffer.memory", "8192")], "buffer.memory");
        // Equal is fine.
        let c = pairs_ok(&[("batch.size", "32768"), ("buffer.memory", "32768")]);
        assert_eq!(c.batch_size, c.buffer_memory);
    }

    #[test]
    fn delivery_timeout_rule() {
        let msg = assert_conflict(
            &[("delivery.timeout.ms", "30000"), ("linger.ms", "100")],
            "delivery.timeout.ms",
        );
        assert!(
            msg.contains("(100 + 30000 = 30100 ms), got 30000 ms"),
            "{msg}"
        );
        // Equal is fine.
        let c = pairs_ok(&[("delivery.timeout.ms", "30100"), ("linger.ms", "100")]);
        assert_eq!(c.delivery_timeout, ms(30_100));
        // Not set by the user: raised, as Java does.
        let c = pairs_ok(&[("request.timeout.ms", "200000")]);
        assert_eq!(c.delivery_timeout, ms(200_005));
    }

    #[test]
    fn backoff_clamping() {
        let c = pairs_ok(&[("retry.backoff.ms", "5000")]);
        assert_eq!((c.retry_backoff, c.retry_backoff_max), (ms(1000), ms(1000)));
        let c = pairs_ok(&[("retry.backoff.ms", "200"), ("retry.backoff.max.ms", "100")]);
        assert_eq!((c.retry_backoff, c.retry_backoff_max), (ms(100), ms(100)));
        let c = pairs_ok(&[("reconnect.backoff.ms", "200")]);
        assert_eq!(
            (c.reconnect_backoff, c.reconnect_backoff_max),
            (ms(200), ms(200))
        );
        let c = pairs_ok(&[
            ("reconnect.backoff.ms", "2000"),
            ("reconnect.backoff.max.ms", "500"),
        ]);
        assert_eq!(
            (c.reconnect_backoff, c.reconnect_backoff_max),
            (ms(500), ms(500))
        );
    }

    #[test]
    fn compression_levels() {
        assert_eq!(
            pairs_ok(&[
                ("compression.type", "GZIP"),
                ("compression.gzip.level", "1")
            ])
            .compression_level(),
            Some(1)
        );
        assert_eq!(
            pairs_ok(&[("compression.gzip.level", "-1")]).compression_gzip_level,
            None
        );
        assert_eq!(
            pairs_ok(&[("compression.lz4.level", "9")]).compression_lz4_level,
            None
        );
        assert_eq!(
            pairs_ok(&[("compression.zstd.level", "3")]).compression_zstd_level,
            None
        );
        assert_eq!(
            pairs_ok(&[("compression.zstd.level", "-131072")]).compression_zstd_level,
            Some(-131_072)
        );
        // A level for another codec is kept but not selected.
        let c = pairs_ok(&[
            ("compression.type", "snappy"),
            ("compression.zstd.level", "22"),
        ]);
        assert_eq!(c.compression_level(), None);
        assert_eq!(c.compression_zstd_level, Some(22));
        for (key, bad) in [
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.gzip.level", "-2"),
            ("compression.lz4.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
            ("compression.zstd.level", "-131073"),
            ("compression.zstd.level", "x"),
        ] {
            assert_invalid(&[(key, bad)], key);
        }
    }

    #[test]
    fn client_ids_count_up() {
        let a = base().build().unwrap().client_id;
        let b = base().build().unwrap().client_id;
        assert!(a.starts_with("producer-") && b.starts_with("producer-"));
        assert_ne!(a, b);
        assert_eq!(base().client_id("mine").build().unwrap().client_id, "mine");
        assert_eq!(base().set("client.id", "").build().unwrap().client_id, "");
    }

    /// Rules Java's client applies that Herald had not: the setup timeout capped at its
    /// maximum (Java's ExponentialBackoff), a login retry maximum below its base refused
    /// (Java's secured Retry), the assertion's exp and nbf within Java's ranges, Java's
    /// int arithmetic in the delivery timeout's floor, and Kafka 4.x's two-phase commit and
    /// config provider keys named, not unknown.
    #[test]
    fn java_rules_found_by_comparing_with_its_config() {
        let c = pairs_ok(&[
            ("socket.connection.setup.timeout.ms", "60000"),
            ("socket.connection.setup.timeout.max.ms", "30000"),
        ]);
        assert_eq!(c.socket_connection_setup_timeout, Duration::from_secs(30));

        let endpoint = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example/token",
            ),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 clientId=\"app\" clientSecret=\"s\";",
            ),
            ("sasl.login.retry.backoff.ms", "500"),
        ];
        let mut below = endpoint.to_vec();
        below.push(("sasl.login.retry.backoff.max.ms", "100"));
        let e = pairs_err(&below);
        assert_eq!(e.key(), Some("sasl.login.retry.backoff.max.ms"), "{e}");
        pairs_ok(&endpoint);

        for (key, max) in [
            ("sasl.oauthbearer.assertion.claim.exp.seconds", 86_400),
            ("sasl.oauthbearer.assertion.claim.nbf.seconds", 3_600),
        ] {
            pairs_ok(&[(key, &max.to_string())]);
            let e = pairs_err(&[(key, &(max + 1).to_string())]);
            assert_eq!(e.key(), Some(key), "{e}");
        }

        pairs_ok(&[
            ("linger.ms", "3000000000"),
            ("delivery.timeout.ms", "2147483647"),
        ]);

        pairs_ok(&[("transaction.two.phase.commit.enable", "false")]);
        let e = pairs_err(&[("transaction.two.phase.commit.enable", "true")]);
        assert!(e.to_string().contains("KIP-939"), "{e}");
        let e = pairs_err(&[("config.providers", "file")]);
        assert!(matches!(e, ConfigError::Unsupported { .. }), "{e:?}");
    }

    /// The keys `to_pairs` leaves out of a config that sets none of them.
    const LEFT_OUT_UNSET: &[&str] = &[
        "transactional.id",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.jaas.config",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.jwt.retriever.class",
        "sasl.oauthbearer.scope",
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.claim.aud",
        "sasl.oauthbearer.assertion.claim.iss",
        "sasl.oauthbearer.assertion.claim.sub",
        "sasl.oauthbearer.assertion.file",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.template.file",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.certificates",
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.keystore.certificate.chain",
        "ssl.keystore.key",
        "ssl.key.password",
        "ssl.cipher.suites",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
    ];

    #[test]
    fn round_trip_through_pairs() {
        let configs = [
            base().build().unwrap(),
            ProducerConfig::from_pairs([
                ("bootstrap.servers", "a:1,b:2"),
                ("acks", "0"),
                ("linger.ms", "50"),
                ("compression.type", "zstd"),
                ("compression.zstd.level", "-5"),
                ("compression.gzip.level", "4"),
                ("reconnect.backoff.ms", "70"),
                ("retry.backoff.ms", "3000"),
                ("request.timeout.ms", "150000"),
                ("transaction.timeout.ms", "1000"),
                ("security.protocol", "SASL_PLAINTEXT"),
                ("partitioner.ignore.keys", "TRUE"),
                ("metrics.num.samples", "3"),
                ("value.serializer", "x.Y"),
            ])
            .unwrap(),
            base().transactional_id("t-1").build().unwrap(),
        ];
        for (i, c) in configs.into_iter().enumerate() {
            let pairs = c.to_pairs();
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            // Only the unset optional keys and the secrets are left out: named here, since
            // `to_pairs` leaves out what the getters say is unset, and a getter that lost a
            // value would otherwise go unseen.
            let left_out: Vec<&str> = KEYS
                .iter()
                .map(|k| k.name)
                .filter(|k| !keys.contains(k))
                .collect();
            let mut expected = LEFT_OUT_UNSET.to_vec();
            if i == 2 {
                expected.retain(|k| *k != "transactional.id");
            }
            assert_eq!(left_out, expected, "config {i}");
            let back = ProducerConfig::from_pairs(pairs.clone()).unwrap();
            assert_eq!(back, c, "{pairs:?}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_errors_and_pairs() {
        let c = ProducerConfig::from_pairs([
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"u\" password=\"hunter2-jaas\";",
            ),
            ("sasl.password", "hunter2-rd"),
            ("ssl.truststore.password", "hunter2-ts"),
            ("ssl.keystore.password", "hunter2-ks"),
            ("ssl.keystore.key", "-----BEGIN PRIVATE KEY-----hunter2-key"),
            ("ssl.key.password", "hunter2-kp"),
        ])
        .unwrap();
        let shown = format!("{c:?} {c:#?} {:?}", c.to_pairs());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("sasl_mechanism: Some(\"SCRAM-SHA-512\")"),
            "{shown}"
        );
        assert_eq!(c.sasl_password.as_ref().unwrap().expose(), "hunter2-rd");
        // The token endpoint's URL without its query or user information (refused when the
        // producer starts, but shown before that), whatever the URL looks like.
        for (url, expected) in [
            (
                "https://idp.example:8443/oauth2/token?client_secret=hunter2-q#hunter2-f",
                "https://idp.example:8443/oauth2/token",
            ),
            ("https://app:hunter2-u@idp/token", "https://idp/token"),
            ("http://app:hunter2/u@idp:80/t?a=hunter2", "http://idp:80/t"),
            ("idp/token?hunter2=1", "idp/token"),
            ("file:/run/token", "file:/run/token"),
        ] {
            let c = ProducerConfig::from_pairs([
                ("bootstrap.servers", "a:1"),
                ("sasl.oauthbearer.token.endpoint.url", url),
            ])
            .unwrap();
            let shown = format!("{c:?} {c:#?} {:?}", c.to_pairs());
            assert!(!shown.contains("hunter2"), "{shown}");
            let listed = c.to_pairs();
            let listed = listed
                .iter()
                .find(|(k, _)| k == "sasl.oauthbearer.token.endpoint.url");
            assert_eq!(listed.map(|(_, v)| v.as_str()), Some(expected));
            assert!(shown.contains(&format!("Some({expected:?})")), "{shown}");
            assert_eq!(c.sasl_oauthbearer_token_endpoint_url.as_deref(), Some(url));
        }
        let e = ProducerConfig::from_pairs([
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.password", " "),
        ])
        .unwrap_err();
        assert_eq!(e.key(), Some("sasl.password"));
    }

    /// Java loads a blank `ssl.*` or `sasl.*` setting the security protocol does not use (a
    /// templated config leaves its placeholders blank); one it uses fails where it is used.
    /// Herald takes the unused ones as unset and refuses the used ones.
    #[test]
    fn blank_security_settings_count_only_where_the_protocol_uses_them() {
        let blanks = [
            ("ssl.truststore.location", ""),
            ("ssl.truststore.password", " "),
            ("ssl.truststore.type", ""),
            ("ssl.keystore.key", ""),
            ("ssl.enabled.protocols", ""),
            ("sasl.mechanism", ""),
            ("sasl.jaas.config", ""),
            ("sasl.oauthbearer.token.endpoint.url", ""),
            ("sasl.oauthbearer.assertion.algorithm", ""),
        ];
        let c = pairs_ok(&blanks);
        assert_eq!(c.ssl_truststore_location, None);
        assert!(c.ssl_truststore_password.is_none());
        assert_eq!(c.ssl_truststore_type, None);
        assert_eq!(
            c.ssl_enabled_protocols,
            vec![TlsVersion::V1_2, TlsVersion::V1_3]
        );
        assert!(c.sasl_jaas_config.is_none());
        assert_eq!(c.sasl_mechanism, None);
        // Used: refused, naming the key.
        let with = |extra: &[(&'static str, &'static str)], blank: (&'static str, &'static str)| {
            let mut pairs = extra.to_vec();
            pairs.push(blank);
            pairs_err(&pairs)
        };
        let e = with(
            &[("security.protocol", "SSL")],
            ("ssl.truststore.location", ""),
        );
        assert_eq!(e.key(), Some("ssl.truststore.location"), "{e}");
        let e = with(
            &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.truststore.location", "/etc/ts.p12"),
            ],
            ("ssl.truststore.type", ""),
        );
        assert_eq!(e.key(), Some("ssl.truststore.type"), "{e}");
        // A store's type without its file is not read (public CAs, as Java).
        let c = pairs_ok(&[
            ("security.protocol", "SASL_SSL"),
            ("ssl.truststore.type", ""),
            ("ssl.truststore.password", ""),
        ]);
        assert_eq!(c.ssl_truststore_type, None);
        // Java refuses a blank number or boolean whether used or not.
        let e = pairs_err(&[("sasl.login.retry.backoff.ms", "")]);
        assert_eq!(e.key(), Some("sasl.login.retry.backoff.ms"), "{e}");
        let e = pairs_err(&[("sasl.oauthbearer.header.urlencode", "")]);
        assert_eq!(e.key(), Some("sasl.oauthbearer.header.urlencode"), "{e}");
        // An https token endpoint uses the TLS trust settings under SASL_PLAINTEXT too.
        let e = with(
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "OAUTHBEARER"),
                (
                    "sasl.oauthbearer.token.endpoint.url",
                    "https://idp.example/token",
                ),
            ],
            ("ssl.truststore.location", ""),
        );
        assert_eq!(e.key(), Some("ssl.truststore.location"), "{e}");
        // A typed setter after a blank `set` counts.
        let c = ProducerConfig::builder()
            .set("bootstrap.servers", "k:9092")
            .set("ssl.truststore.location", "")
            .ssl_truststore_location("/etc/ts.jks")
            .build()
            .expect("valid");
        assert_eq!(c.ssl_truststore_location.as_deref(), Some("/etc/ts.jks"));
        let sasl = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
        ];
        let e = with(&sasl, ("sasl.oauthbearer.token.endpoint.url", ""));
        assert_eq!(e.key(), Some("sasl.oauthbearer.token.endpoint.url"), "{e}");
        // SASL with PLAIN leaves the OAUTHBEARER settings unused; TLS settings too.
        let c = pairs_ok(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.oauthbearer.scope", ""),
            ("ssl.keystore.location", ""),
        ]);
        assert_eq!(c.sasl_oauthbearer_scope, None);
        // The last value counts: a blank after a real one unsets it when unused, and a
        // real one after a blank is taken.
        let c = pairs_ok(&[
            ("ssl.truststore.location", "/etc/ts.jks"),
            ("ssl.truststore.location", ""),
        ]);
        assert_eq!(c.ssl_truststore_location, None);
        let c = pairs_ok(&[
            ("security.protocol", "SSL"),
            ("ssl.truststore.location", ""),
            ("ssl.truststore.location", "/etc/ts.jks"),
        ]);
        assert_eq!(c.ssl_truststore_location.as_deref(), Some("/etc/ts.jks"));
    }

    #[test]
    fn tls_keys() {
        let c = pairs_ok(&[
            ("ssl.truststore.type", "pkcs12"),
            ("ssl.keystore.type", "PEM"),
            ("ssl.endpoint.identification.algorithm", ""),
            ("ssl.enabled.protocols", "TLSv1.3"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ]);
        assert_eq!(c.ssl_truststore_type, Some(StoreType::Pkcs12));
        assert_eq!(c.ssl_keystore_type, Some(StoreType::Pem));
        assert_eq!(
            c.ssl_endpoint_identification_algorithm,
            EndpointIdentification::None
        );
        assert_eq!(c.ssl_enabled_protocols, vec![TlsVersion::V1_3]);
        assert_eq!(
            pairs_ok(&[]).ssl_enabled_protocols,
            vec![TlsVersion::V1_2, TlsVersion::V1_3]
        );
        assert_invalid(
            &[("ssl.enabled.protocols", "SSLv3")],
            "ssl.enabled.protocols",
        );
        assert_invalid(
            &[("ssl.enabled.protocols", "TLSv1.1,TLSv1")],
            "ssl.enabled.protocols",
        );
        assert_invalid(
            &[("ssl.enabled.protocols", "TLSv1.2,TLSv9")],
            "ssl.enabled.protocols",
        );
        // The list Kafka's security docs showed for years: Java 17 speaks TLSv1.2 with it.
        assert_eq!(
            pairs_ok(&[("ssl.enabled.protocols", "TLSv1.2,TLSv1.1,TLSv1")]).ssl_enabled_protocols,
            vec![TlsVersion::V1_2]
        );
        assert_invalid(&[("ssl.enabled.protocols", ",")], "ssl.enabled.protocols");
        assert_invalid(&[("ssl.truststore.type", "BKS")], "ssl.truststore.type");
        assert_invalid(
            &[("ssl.endpoint.identification.algorithm", "http")],
            "ssl.endpoint.identification.algorithm",
        );
    }

    /// The README's configuration table, as the key table makes it.
    fn readme_table() -> String {
        let defaults = ProducerConfig::java_defaults();
        let mut table = String::from("| key | default | notes |\n|---|---|---|\n");
        for key in KEYS {
            let default = key
                .shown
                .map(String::from)
                .or_else(|| (key.get)(&defaults))
                .unwrap_or_default();
            table += &format!("| {} | {default} | {} |\n", key.name, key.doc.trim());
        }
        let accepted: Vec<String> = ACCEPTED
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        table += &format!(
            "\nAccepted so that Java configs load, validated, not used: {}.\n",
            accepted.join(", ")
        );
        table
    }

    #[test]
    fn every_key_is_listed_once() {
        let names: Vec<&str> = KEYS
            .iter()
            .map(|k| k.name)
            .chain(ACCEPTED.iter().map(|(name, _)| *name))
            .collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a key twice: {names:?}");
    }

    #[test]
    fn readme_table_matches_the_key_table() {
        let table = readme_table();
        assert!(
            include_str!("../README.md").contains(&table),
            "README.md's configuration table differs from the key table in src/config.rs; \
             replace it with:\n\n{table}"
        );
    }

    #[test]
    fn acks_parsing() {
        assert_eq!(Acks::parse("all"), Some(Acks::All));
        assert_eq!(Acks::parse(" ALL "), Some(Acks::All));
        assert_eq!(Acks::parse("-1"), Some(Acks::All));
        assert_eq!(Acks::parse("0"), Some(Acks::None));
        assert_eq!(Acks::parse("1"), Some(Acks::Leader));
        assert_eq!(Acks::parse("2"), None);
        assert_eq!(
            [Acks::None, Acks::Leader, Acks::All].map(Acks::as_i16),
            [0, 1, -1]
        );
    }
}
