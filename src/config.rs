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
//! Accepted but not used (validated and kept in [`ProducerConfig::extra`], so copied Java
//! configs still load): `send.buffer.bytes`, `receive.buffer.bytes`,
//! `socket.connection.setup.timeout.ms`, `socket.connection.setup.timeout.max.ms`,
//! `partitioner.availability.timeout.ms`, `client.dns.lookup`, `metrics.sample.window.ms`,
//! `metrics.num.samples`, `metrics.recording.level`, `key.serializer`, `value.serializer`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::compression::Compression;

/// Numbers the default client ids `producer-1`, `producer-2`, ... as the Java client does.
static CLIENT_ID_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// The keys Herald uses, in the order [`ProducerConfig::to_pairs`] lists them.
const KEYS: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "acks",
    "linger.ms",
    "batch.size",
    "buffer.memory",
    "max.block.ms",
    "max.request.size",
    "request.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "max.in.flight.requests.per.connection",
    "enable.idempotence",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "partitioner.ignore.keys",
    "partitioner.adaptive.partitioning.enable",
    "metadata.max.age.ms",
    "metadata.max.idle.ms",
    "connections.max.idle.ms",
    "transactional.id",
    "transaction.timeout.ms",
    "security.protocol",
];

/// Java keys that are accepted and validated but not used by Herald yet.
const EXTRA_KEYS: &[&str] = &[
    "send.buffer.bytes",
    "receive.buffer.bytes",
    "socket.connection.setup.timeout.ms",
    "socket.connection.setup.timeout.max.ms",
    "partitioner.availability.timeout.ms",
    "client.dns.lookup",
    "metrics.sample.window.ms",
    "metrics.num.samples",
    "metrics.recording.level",
    "key.serializer",
    "value.serializer",
];

/// Largest value of a Java `int` setting.
const JAVA_INT_MAX: u128 = i32::MAX as u128;
/// Largest value of a Java `long` setting.
const JAVA_LONG_MAX: u128 = i64::MAX as u128;
/// Java's `MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION_FOR_IDEMPOTENCE`: more would break ordering.
const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = 5;
/// Java's default levels; a level equal to one of these is stored as `None`.
const GZIP_DEFAULT_LEVEL: i32 = -1;
const LZ4_DEFAULT_LEVEL: i32 = 9;
const ZSTD_DEFAULT_LEVEL: i32 = 3;

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

/// `security.protocol`. Only `PLAINTEXT` works today; the others parse so that Java configs
/// load, and [`ProducerConfig::validate_supported`] rejects them at start.
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

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a configuration was rejected; every variant but `Io` names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key neither Herald nor the accepted Java keys know.
    #[error("unknown config key \"{key}\"{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as given.
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
    /// A valid setting that Herald cannot honour yet.
    #[error("unsupported {key}: {reason}")]
    Unsupported {
        /// The key.
        key: String,
        /// What is missing.
        reason: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean \"{s}\"?"),
        None => String::new(),
    }
}

impl ConfigError {
    /// The key the error is about (`None` for I/O errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Conflict { key, .. }
            | ConfigError::Missing { key }
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
#[derive(Debug, Clone, PartialEq)]
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
    /// `enable.idempotence` as it takes effect, after the Java disabling rules.
    pub enable_idempotence: bool,
    /// `compression.type`.
    pub compression: Compression,
    /// `compression.gzip.level`; `None` is the codec default (Java's -1).
    pub compression_gzip_level: Option<i32>,
    /// `compression.lz4.level`; `None` is the codec default (Java's 9).
    pub compression_lz4_level: Option<i32>,
    /// `compression.zstd.level`; `None` is the codec default (Java's 3).
    pub compression_zstd_level: Option<i32>,
    /// `partitioner.ignore.keys`: partition keyed records as if they had no key.
    pub partitioner_ignore_keys: bool,
    /// `partitioner.adaptive.partitioning.enable`.
    pub partitioner_adaptive_partitioning_enable: bool,
    /// `metadata.max.age.ms`.
    pub metadata_max_age: Duration,
    /// `metadata.max.idle.ms`.
    pub metadata_max_idle: Duration,
    /// `connections.max.idle.ms`.
    pub connections_max_idle: Duration,
    /// `transactional.id`.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// The accepted-but-unused Java keys that were set, as given (trimmed).
    pub extra: BTreeMap<String, String>,
}

impl ProducerConfig {
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

    /// Builds from a Java `.properties` file.
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_properties_str(&text)
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
    /// (TLS/SASL, transactions). Separate from validation so that such configs still load
    /// and print.
    pub fn validate_supported(&self) -> Result<(), ConfigError> {
        if self.security_protocol != SecurityProtocol::Plaintext {
            return Err(ConfigError::Unsupported {
                key: "security.protocol".into(),
                reason: format!(
                    "{}: TLS and SASL are not supported yet, only PLAINTEXT",
                    self.security_protocol
                ),
            });
        }
        if self.transactional_id.is_some() {
            return Err(ConfigError::Unsupported {
                key: "transactional.id".into(),
                reason: "transactions are not supported yet".into(),
            });
        }
        Ok(())
    }

    /// Every key with its effective value (plus the extra keys that were set), for logging
    /// and for feeding back into [`ProducerConfig::from_pairs`]. `transactional.id` is
    /// listed only when set.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let level = |l: Option<i32>, default: i32| l.unwrap_or(default).to_string();
        let mut pairs: Vec<(&str, String)> = vec![
            ("bootstrap.servers", self.bootstrap_servers.join(",")),
            ("client.id", self.client_id.clone()),
            ("acks", self.acks.name().to_string()),
            ("linger.ms", ms(self.linger)),
            ("batch.size", self.batch_size.to_string()),
            ("buffer.memory", self.buffer_memory.to_string()),
            ("max.block.ms", ms(self.max_block)),
            ("max.request.size", self.max_request_size.to_string()),
            ("request.timeout.ms", ms(self.request_timeout)),
            ("delivery.timeout.ms", ms(self.delivery_timeout)),
            ("retries", self.retries.to_string()),
            ("retry.backoff.ms", ms(self.retry_backoff)),
            ("retry.backoff.max.ms", ms(self.retry_backoff_max)),
            ("reconnect.backoff.ms", ms(self.reconnect_backoff)),
            ("reconnect.backoff.max.ms", ms(self.reconnect_backoff_max)),
            (
                "max.in.flight.requests.per.connection",
                self.max_in_flight_requests_per_connection.to_string(),
            ),
            ("enable.idempotence", self.enable_idempotence.to_string()),
            ("compression.type", self.compression.name().to_string()),
            (
                "compression.gzip.level",
                level(self.compression_gzip_level, GZIP_DEFAULT_LEVEL),
            ),
            (
                "compression.lz4.level",
                level(self.compression_lz4_level, LZ4_DEFAULT_LEVEL),
            ),
            (
                "compression.zstd.level",
                level(self.compression_zstd_level, ZSTD_DEFAULT_LEVEL),
            ),
            (
                "partitioner.ignore.keys",
                self.partitioner_ignore_keys.to_string(),
            ),
            (
                "partitioner.adaptive.partitioning.enable",
                self.partitioner_adaptive_partitioning_enable.to_string(),
            ),
            ("metadata.max.age.ms", ms(self.metadata_max_age)),
            ("metadata.max.idle.ms", ms(self.metadata_max_idle)),
            ("connections.max.idle.ms", ms(self.connections_max_idle)),
        ];
        if let Some(id) = &self.transactional_id {
            pairs.push(("transactional.id", id.clone()));
        }
        pairs.push(("transaction.timeout.ms", ms(self.transaction_timeout)));
        pairs.push((
            "security.protocol",
            self.security_protocol.name().to_string(),
        ));
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// The Java defaults, before validation; `bootstrap_servers` and `client_id` empty.
    fn java_defaults() -> Self {
        ProducerConfig {
            bootstrap_servers: Vec::new(),
            client_id: String::new(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            buffer_memory: 33_554_432,
            max_block: Duration::from_millis(60_000),
            max_request_size: 1_048_576,
            request_timeout: Duration::from_millis(30_000),
            delivery_timeout: Duration::from_millis(120_000),
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1_000),
            max_in_flight_requests_per_connection: 5,
            enable_idempotence: true,
            compression: Compression::None,
            compression_gzip_level: None,
            compression_lz4_level: None,
            compression_zstd_level: None,
            partitioner_ignore_keys: false,
            partitioner_adaptive_partitioning_enable: true,
            metadata_max_age: Duration::from_millis(300_000),
            metadata_max_idle: Duration::from_millis(300_000),
            connections_max_idle: Duration::from_millis(540_000),
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
            security_protocol: SecurityProtocol::Plaintext,
            extra: BTreeMap::new(),
        }
    }
}

/// Collects settings, typed or as Java key/value strings, and validates them all in
/// [`ProducerConfigBuilder::build`]. It remembers which keys were set explicitly, because
/// the Java rules (idempotence, delivery timeout, reconnect backoff, client id) depend on it.
#[derive(Debug, Clone)]
pub struct ProducerConfigBuilder {
    draft: ProducerConfig,
    explicit: BTreeSet<&'static str>,
    /// Parse errors of `set` calls, at most one per key; a later good value clears it.
    errors: Vec<ConfigError>,
}

impl Default for ProducerConfigBuilder {
    fn default() -> Self {
        ProducerConfigBuilder {
            draft: ProducerConfig::java_defaults(),
            explicit: BTreeSet::new(),
            errors: Vec::new(),
        }
    }
}

macro_rules! typed_setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $key:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.draft.$name = value;
                self.mark($key);
                self
            }
        )*
    };
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
        self
    }

    /// `bootstrap.servers` as the Java client takes it: `host:port` entries separated by commas.
    pub fn bootstrap_servers(self, servers: impl AsRef<str>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.draft.client_id = id.into();
        self.mark("client.id");
        self
    }

    /// `transactional.id`.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.draft.transactional_id = Some(id.into());
        self.mark("transactional.id");
        self
    }

    /// `compression.type`.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.draft.compression = codec;
        self.mark("compression.type");
        self
    }

    /// `compression.gzip.level`: 1..=9, or -1 for the default.
    pub fn compression_gzip_level(mut self, level: i32) -> Self {
        self.draft.compression_gzip_level = Some(level);
        self.mark("compression.gzip.level");
        self
    }

    /// `compression.lz4.level`: 1..=17.
    pub fn compression_lz4_level(mut self, level: i32) -> Self {
        self.draft.compression_lz4_level = Some(level);
        self.mark("compression.lz4.level");
        self
    }

    /// `compression.zstd.level`: -131072..=22.
    pub fn compression_zstd_level(mut self, level: i32) -> Self {
        self.draft.compression_zstd_level = Some(level);
        self.mark("compression.zstd.level");
        self
    }

    typed_setters! {
        /// `acks`.
        acks: Acks => "acks";
        /// `linger.ms`.
        linger: Duration => "linger.ms";
        /// `batch.size`.
        batch_size: usize => "batch.size";
        /// `buffer.memory`.
        buffer_memory: usize => "buffer.memory";
        /// `max.block.ms`.
        max_block: Duration => "max.block.ms";
        /// `max.request.size`.
        max_request_size: usize => "max.request.size";
        /// `request.timeout.ms`.
        request_timeout: Duration => "request.timeout.ms";
        /// `delivery.timeout.ms`.
        delivery_timeout: Duration => "delivery.timeout.ms";
        /// `retries`.
        retries: u32 => "retries";
        /// `retry.backoff.ms`.
        retry_backoff: Duration => "retry.backoff.ms";
        /// `retry.backoff.max.ms`.
        retry_backoff_max: Duration => "retry.backoff.max.ms";
        /// `reconnect.backoff.ms`.
        reconnect_backoff: Duration => "reconnect.backoff.ms";
        /// `reconnect.backoff.max.ms`.
        reconnect_backoff_max: Duration => "reconnect.backoff.max.ms";
        /// `max.in.flight.requests.per.connection`.
        max_in_flight_requests_per_connection: usize => "max.in.flight.requests.per.connection";
        /// `enable.idempotence`; setting it (even to `true`) turns conflicts into errors.
        enable_idempotence: bool => "enable.idempotence";
        /// `partitioner.ignore.keys`.
        partitioner_ignore_keys: bool => "partitioner.ignore.keys";
        /// `partitioner.adaptive.partitioning.enable`.
        partitioner_adaptive_partitioning_enable: bool => "partitioner.adaptive.partitioning.enable";
        /// `metadata.max.age.ms`.
        metadata_max_age: Duration => "metadata.max.age.ms";
        /// `metadata.max.idle.ms`.
        metadata_max_idle: Duration => "metadata.max.idle.ms";
        /// `connections.max.idle.ms`.
        connections_max_idle: Duration => "connections.max.idle.ms";
        /// `transaction.timeout.ms`.
        transaction_timeout: Duration => "transaction.timeout.ms";
        /// `security.protocol`.
        security_protocol: SecurityProtocol => "security.protocol";
    }

    /// Validates everything and applies the Java post-processing rules.
    pub fn build(&self) -> Result<ProducerConfig, ConfigError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        finish(self.draft.clone(), &self.explicit)
    }

    fn mark(&mut self, key: &'static str) {
        self.explicit.insert(key);
        self.errors.retain(|e| e.key() != Some(key));
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let Some(&k) = KEYS.iter().find(|k| **k == key) else {
            if let Some(&x) = EXTRA_KEYS.iter().find(|k| **k == key) {
                check_extra(x, value)?;
                self.draft
                    .extra
                    .insert(x.to_string(), value.trim().to_string());
                self.errors.retain(|e| e.key() != Some(x));
                return Ok(());
            }
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                suggestion: suggest(key),
            });
        };
        let value = value.trim();
        let d = &mut self.draft;
        match k {
            "bootstrap.servers" => {
                d.bootstrap_servers = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
            }
            "client.id" => d.client_id = value.to_string(),
            "acks" => {
                d.acks = Acks::parse(value)
                    .ok_or_else(|| invalid(k, value, "expected all, -1, 0 or 1"))?;
            }
            "linger.ms" => d.linger = parse_ms(k, value)?,
            "batch.size" => d.batch_size = parse_bytes(k, value)?,
            "buffer.memory" => d.buffer_memory = parse_bytes(k, value)?,
            "max.block.ms" => d.max_block = parse_ms(k, value)?,
            "max.request.size" => d.max_request_size = parse_bytes(k, value)?,
            "request.timeout.ms" => d.request_timeout = parse_ms(k, value)?,
            "delivery.timeout.ms" => d.delivery_timeout = parse_ms(k, value)?,
            "retries" => {
                d.retries = value
                    .parse::<i32>()
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid(k, value, "expected an integer from 0 to 2147483647"))?;
            }
            "retry.backoff.ms" => d.retry_backoff = parse_ms(k, value)?,
            "retry.backoff.max.ms" => d.retry_backoff_max = parse_ms(k, value)?,
            "reconnect.backoff.ms" => d.reconnect_backoff = parse_ms(k, value)?,
            "reconnect.backoff.max.ms" => d.reconnect_backoff_max = parse_ms(k, value)?,
            "max.in.flight.requests.per.connection" => {
                d.max_in_flight_requests_per_connection = value
                    .parse::<i32>()
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| invalid(k, value, "expected a positive integer"))?;
            }
            "enable.idempotence" => d.enable_idempotence = parse_bool(k, value)?,
            "compression.type" => {
                d.compression = Compression::from_name(&value.to_ascii_lowercase())
                    .ok_or_else(|| invalid(k, value, "expected none, gzip, snappy, lz4 or zstd"))?;
            }
            "compression.gzip.level" => d.compression_gzip_level = Some(parse_i32(k, value)?),
            "compression.lz4.level" => d.compression_lz4_level = Some(parse_i32(k, value)?),
            "compression.zstd.level" => d.compression_zstd_level = Some(parse_i32(k, value)?),
            "partitioner.ignore.keys" => d.partitioner_ignore_keys = parse_bool(k, value)?,
            "partitioner.adaptive.partitioning.enable" => {
                d.partitioner_adaptive_partitioning_enable = parse_bool(k, value)?;
            }
            "metadata.max.age.ms" => d.metadata_max_age = parse_ms(k, value)?,
            "metadata.max.idle.ms" => d.metadata_max_idle = parse_ms(k, value)?,
            "connections.max.idle.ms" => d.connections_max_idle = parse_ms(k, value)?,
            "transactional.id" => d.transactional_id = Some(value.to_string()),
            "transaction.timeout.ms" => d.transaction_timeout = parse_ms(k, value)?,
            "security.protocol" => {
                d.security_protocol = SecurityProtocol::from_name(value).ok_or_else(|| {
                    invalid(
                        k,
                        value,
                        "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    )
                })?;
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    suggestion: None,
                })
            }
        }
        self.mark(k);
        Ok(())
    }
}

fn parse_ms(key: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_millis)
        .ok_or_else(|| invalid(key, value, "expected a non-negative integer (milliseconds)"))
}

fn parse_bytes(key: &str, value: &str) -> Result<usize, ConfigError> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(key, value, "expected a non-negative integer (bytes)"))
}

fn parse_i32(key: &str, value: &str) -> Result<i32, ConfigError> {
    value
        .parse::<i32>()
        .map_err(|_| invalid(key, value, "expected an integer"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(key, value, "expected true or false"))
    }
}

/// Validates an accepted-but-unused key with the Java rule for it.
fn check_extra(key: &str, value: &str) -> Result<(), ConfigError> {
    let value = value.trim();
    let long_at_least = |min: i64| value.parse::<i64>().is_ok_and(|n| n >= min);
    let int_at_least = |min: i32| value.parse::<i32>().is_ok_and(|n| n >= min);
    let (ok, expected) = match key {
        "send.buffer.bytes" | "receive.buffer.bytes" => (
            int_at_least(-1),
            "expected an integer >= -1 (-1: OS default)",
        ),
        "metrics.num.samples" => (int_at_least(1), "expected a positive integer"),
        "client.dns.lookup" => (
            [
                "use_all_dns_ips",
                "resolve_canonical_bootstrap_servers_only",
            ]
            .contains(&value),
            "expected use_all_dns_ips or resolve_canonical_bootstrap_servers_only",
        ),
        "metrics.recording.level" => (
            ["INFO", "DEBUG", "TRACE"].contains(&value),
            "expected INFO, DEBUG or TRACE",
        ),
        "key.serializer" | "value.serializer" => (!value.is_empty(), "expected a class name"),
        _ => (
            long_at_least(0),
            "expected a non-negative integer (milliseconds)",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value, expected))
    }
}

/// The known key closest to `key`, if within edit distance 2.
fn suggest(key: &str) -> Option<String> {
    KEYS.iter()
        .chain(EXTRA_KEYS)
        .map(|k| (edit_distance(key, k), *k))
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

fn check_millis(key: &str, d: Duration, max: u128) -> Result<(), ConfigError> {
    if d.as_millis() > max {
        return Err(invalid(
            key,
            d.as_millis(),
            format!("must be at most {max} milliseconds"),
        ));
    }
    Ok(())
}

fn check_count(key: &str, n: usize, min: usize, max: u128) -> Result<(), ConfigError> {
    if n < min || n as u128 > max {
        let reason = if min == 1 {
            format!("must be greater than 0 and at most {max}")
        } else {
            format!("must be at most {max}")
        };
        return Err(invalid(key, n, reason));
    }
    Ok(())
}

/// Checks a compression level and stores the Java default level as `None`.
fn check_level(
    key: &str,
    level: Option<i32>,
    ok: impl Fn(i32) -> bool,
    default: i32,
    expected: &str,
) -> Result<Option<i32>, ConfigError> {
    match level {
        Some(l) if l == default => Ok(None),
        Some(l) if ok(l) => Ok(Some(l)),
        Some(l) => Err(invalid(key, l, expected)),
        None => Ok(None),
    }
}

/// The one validation path: range checks, then the Java post-processing rules.
fn finish(
    mut c: ProducerConfig,
    explicit: &BTreeSet<&'static str>,
) -> Result<ProducerConfig, ConfigError> {
    const SERVERS: &str = "bootstrap.servers";
    if c.bootstrap_servers.is_empty() {
        return Err(ConfigError::Missing {
            key: SERVERS.into(),
        });
    }
    let mut seen = BTreeSet::new();
    for entry in &c.bootstrap_servers {
        check_host_port(entry).map_err(|reason| invalid(SERVERS, entry, reason))?;
        if !seen.insert(entry.as_str()) {
            return Err(invalid(SERVERS, entry, "duplicate entry"));
        }
    }

    check_count("batch.size", c.batch_size, 1, JAVA_INT_MAX)?;
    check_count("buffer.memory", c.buffer_memory, 1, JAVA_LONG_MAX)?;
    check_count("max.request.size", c.max_request_size, 1, JAVA_INT_MAX)?;
    check_count(
        "max.in.flight.requests.per.connection",
        c.max_in_flight_requests_per_connection,
        1,
        JAVA_INT_MAX,
    )?;
    if c.retries as u128 > JAVA_INT_MAX {
        return Err(invalid(
            "retries",
            c.retries,
            format!("must be at most {JAVA_INT_MAX}"),
        ));
    }
    for (key, d, max) in [
        ("linger.ms", c.linger, JAVA_LONG_MAX),
        ("max.block.ms", c.max_block, JAVA_LONG_MAX),
        ("request.timeout.ms", c.request_timeout, JAVA_INT_MAX),
        ("delivery.timeout.ms", c.delivery_timeout, JAVA_INT_MAX),
        ("retry.backoff.ms", c.retry_backoff, JAVA_LONG_MAX),
        ("retry.backoff.max.ms", c.retry_backoff_max, JAVA_LONG_MAX),
        ("reconnect.backoff.ms", c.reconnect_backoff, JAVA_LONG_MAX),
        (
            "reconnect.backoff.max.ms",
            c.reconnect_backoff_max,
            JAVA_LONG_MAX,
        ),
        ("metadata.max.age.ms", c.metadata_max_age, JAVA_LONG_MAX),
        ("metadata.max.idle.ms", c.metadata_max_idle, JAVA_LONG_MAX),
        (
            "connections.max.idle.ms",
            c.connections_max_idle,
            JAVA_LONG_MAX,
        ),
        (
            "transaction.timeout.ms",
            c.transaction_timeout,
            JAVA_INT_MAX,
        ),
    ] {
        check_millis(key, d, max)?;
    }
    if c.metadata_max_idle < Duration::from_millis(5_000) {
        return Err(invalid(
            "metadata.max.idle.ms",
            c.metadata_max_idle.as_millis(),
            "must be at least 5000 milliseconds",
        ));
    }

    c.compression_gzip_level = check_level(
        "compression.gzip.level",
        c.compression_gzip_level,
        |l| (1..=9).contains(&l),
        GZIP_DEFAULT_LEVEL,
        "expected 1 to 9, or -1 for the default",
    )?;
    c.compression_lz4_level = check_level(
        "compression.lz4.level",
        c.compression_lz4_level,
        |l| (1..=17).contains(&l),
        LZ4_DEFAULT_LEVEL,
        "expected 1 to 17",
    )?;
    c.compression_zstd_level = check_level(
        "compression.zstd.level",
        c.compression_zstd_level,
        |l| (-131_072..=22).contains(&l),
        ZSTD_DEFAULT_LEVEL,
        "expected -131072 to 22",
    )?;

    if let Some(id) = &c.transactional_id {
        if id.trim().is_empty() {
            return Err(invalid("transactional.id", id, "must not be empty"));
        }
    }

    // Java: reconnect.backoff.ms alone means a constant reconnect backoff.
    if explicit.contains("reconnect.backoff.ms") && !explicit.contains("reconnect.backoff.max.ms") {
        c.reconnect_backoff_max = c.reconnect_backoff;
    }
    // Java: a base above its maximum gives a constant backoff of the maximum.
    c.retry_backoff = c.retry_backoff.min(c.retry_backoff_max);
    c.reconnect_backoff = c.reconnect_backoff.min(c.reconnect_backoff_max);

    // Java: a too-small delivery.timeout.ms is an error only if the user chose it.
    let floor = c.linger.saturating_add(c.request_timeout);
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

    // Java: conflicting settings switch default idempotence off, but contradict an explicit one.
    if c.enable_idempotence {
        let user_chose = explicit.contains("enable.idempotence");
        let conflicts = [
            (
                c.acks != Acks::All,
                "acks",
                "must be all (-1) when enable.idempotence is true".to_string(),
            ),
            (
                c.retries == 0,
                "retries",
                "must be greater than 0 when enable.idempotence is true".to_string(),
            ),
            (
                c.max_in_flight_requests_per_connection > MAX_IN_FLIGHT_FOR_IDEMPOTENCE,
                "max.in.flight.requests.per.connection",
                format!(
                    "must be at most {MAX_IN_FLIGHT_FOR_IDEMPOTENCE} when enable.idempotence is true, got {}",
                    c.max_in_flight_requests_per_connection
                ),
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
        let e = base().batch_size(0).build().unwrap_err();
        assert_eq!(e.key(), Some("batch.size"));
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
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
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
        assert_invalid(&[("batch.size", "0")], "batch.size");
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
        assert_invalid(&[("send.buffer.bytes", "-2")], "send.buffer.bytes");
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
        let e = ProducerConfig::from_pairs([("bootstrap.servers", "a:1,a:1")]).unwrap_err();
        assert_eq!(e.key(), Some("bootstrap.servers"));
        let ok = ProducerConfig::from_pairs([(
            "bootstrap.servers",
            "[::1]:9092,10.0.0.1:1,h-1.x:65535,",
        )]);
        assert_eq!(ok.unwrap().bootstrap_servers.len(), 3);
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
        assert!(!pairs_ok(&[("max.in.flight.requests.per.connection", "6")]).enable_idempotence);
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
        let e = c.validate_supported().unwrap_err();
        assert!(matches!(e, ConfigError::Unsupported { .. }));
        assert_eq!(e.key(), Some("transactional.id"));
        assert!(
            e.to_string().contains("transactions are not supported yet"),
            "{e}"
        );
    }

    #[test]
    fn security_protocol_unsupported_at_start() {
        let c = pairs_ok(&[("security.protocol", "SASL_SSL")]);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        let e = c.validate_supported().unwrap_err();
        assert_eq!(e.key(), Some("security.protocol"));
        assert!(
            e.to_string().contains("TLS and SASL are not supported yet"),
            "{e}"
        );
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
        for c in configs {
            let pairs = c.to_pairs();
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            for k in KEYS {
                assert!(
                    keys.contains(k) || (*k == "transactional.id" && c.transactional_id.is_none()),
                    "{k} missing from to_pairs"
                );
            }
            let back = ProducerConfig::from_pairs(pairs.clone()).unwrap();
            assert_eq!(back, c, "{pairs:?}");
        }
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
