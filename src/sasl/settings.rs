//! The SASL settings of a producer, read once at start from `sasl.mechanism` (or librdkafka's
//! `sasl.mechanisms`), `sasl.jaas.config` (or librdkafka's `sasl.username` and
//! `sasl.password`), so that a bad value fails `start` with an error naming its key instead of
//! failing every connection later.

use std::time::SystemTime;

use super::{
    client_for, JaasConfig, Login, Mechanism, OAuthBearerClient, SaslClient, SaslError, Token,
};
use crate::config::{ConfigError, ProducerConfig, SecurityProtocol};

/// The mechanisms that work, for error messages.
const WORKING: &str = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER";

/// Where OAUTHBEARER tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthTokens {
    /// From `sasl.jaas.config` (a static token, or an unsecured JWS built at each login).
    FromConfig,
    /// From the application (the actors crate's `TokenProvider`): with OAUTHBEARER,
    /// `sasl.jaas.config` is not needed.
    FromApplication,
}

/// What a SASL connection authenticates with.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// The mechanism named in SaslHandshake.
    pub mechanism: Mechanism,
    /// The credentials; `None` when the application supplies OAUTHBEARER tokens.
    pub login: Option<Login>,
}

impl SaslSettings {
    /// The settings `config` asks for; `None` unless `security.protocol` is SASL_PLAINTEXT
    /// or SASL_SSL.
    pub fn from_config(
        config: &ProducerConfig,
        tokens: OAuthTokens,
    ) -> Result<Option<SaslSettings>, ConfigError> {
        if !matches!(
            config.security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        ) {
            return Ok(None);
        }
        let (key, name) = match (&config.sasl_mechanism, &config.sasl_mechanisms) {
            (Some(m), _) => ("sasl.mechanism", m.as_str()),
            (None, Some(m)) => ("sasl.mechanisms", m.as_str()),
            (None, None) => ("sasl.mechanism", "GSSAPI"),
        };
        let mechanism = Mechanism::from_name(name.trim()).ok_or_else(|| {
            let default = if config.sasl_mechanism.is_none() && config.sasl_mechanisms.is_none() {
                " (Java's default when unset)"
            } else {
                ""
            };
            ConfigError::Unsupported {
                key: key.into(),
                reason: format!(
                    "{}{default} is not supported; Herald speaks {WORKING}",
                    name.trim()
                ),
            }
        })?;
        if mechanism == Mechanism::OAuthBearer && tokens == OAuthTokens::FromApplication {
            return Ok(Some(SaslSettings {
                mechanism,
                login: None,
            }));
        }
        let login = match (&config.sasl_jaas_config, &config.sasl_username) {
            (Some(jaas), _) => JaasConfig::parse(jaas.expose())
                .and_then(|j| j.login())
                .map_err(|e| ConfigError::Unusable {
                    key: "sasl.jaas.config".into(),
                    // JaasError names the key itself and never quotes a value.
                    reason: e.to_string(),
                })?,
            (None, Some(username)) => Login::Password {
                username: username.clone(),
                password: config
                    .sasl_password
                    .clone()
                    .ok_or_else(|| ConfigError::Missing {
                        key: "sasl.password".into(),
                    })?,
            },
            (None, None) => {
                return Err(ConfigError::Missing {
                    key: "sasl.jaas.config".into(),
                })
            }
        };
        let settings = SaslSettings {
            mechanism,
            login: Some(login),
        };
        // A pairing that cannot work (a token for SCRAM, client credentials, a NUL in a PLAIN
        // username) fails here rather than on every connection.
        settings
            .client(SystemTime::now())
            .map_err(|e| ConfigError::Unusable {
                key: "sasl.jaas.config".into(),
                reason: e.to_string(),
            })?;
        Ok(Some(settings))
    }

    /// A client for one exchange (a connection, or a re-authentication), with the
    /// credentials of the config. For tokens from the application, see
    /// [`SaslSettings::client_with_token`].
    pub fn client(&self, now: SystemTime) -> Result<Box<dyn SaslClient>, SaslError> {
        match &self.login {
            Some(login) => client_for(self.mechanism, login, now),
            None => Err(SaslError::InvalidCredentials {
                mechanism: self.mechanism,
                reason: "the application supplies the tokens",
            }),
        }
    }

    /// Whether each exchange needs a token from the application first.
    pub fn needs_application_token(&self) -> bool {
        self.login.is_none()
    }

    /// An OAUTHBEARER client presenting `token` (from the application).
    pub fn client_with_token(&self, token: Token) -> Box<dyn SaslClient> {
        Box::new(OAuthBearerClient::new(token))
    }
}
