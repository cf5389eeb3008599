//! The SASL settings of a producer, read once at start from `sasl.mechanism` (or librdkafka's
//! `sasl.mechanisms`), `sasl.jaas.config` (or librdkafka's `sasl.username` and
//! `sasl.password`), so that a bad value fails `start` with an error naming its key instead of
//! failing every connection later.

use std::sync::Arc;
use std::time::SystemTime;

use super::token_endpoint::{Assertion, AssertionAlgorithm, AssertionSource, AssertionTemplate};
use super::{
    client_for, ClientCredentials, EndpointUrl, JaasConfig, JaasError, Login, Mechanism,
    OAuthBearerClient, SaslClient, SaslError, Token, TokenEndpoint,
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
    /// The credentials; `None` when OAUTHBEARER tokens come from the application or from a
    /// token endpoint.
    pub login: Option<Login>,
    /// The token endpoint OAUTHBEARER tokens come from (`sasl.oauthbearer.token.endpoint.url`),
    /// unless the application supplies them.
    pub token_endpoint: Option<Arc<TokenEndpoint>>,
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
                token_endpoint: None,
            }));
        }
        if let Some(url) = &config.sasl_oauthbearer_token_endpoint_url {
            if mechanism != Mechanism::OAuthBearer {
                return Err(ConfigError::Conflict {
                    key: "sasl.oauthbearer.token.endpoint.url".into(),
                    reason: format!("is for OAUTHBEARER, and sasl.mechanism is {mechanism}"),
                });
            }
            let settings = SaslSettings {
                mechanism,
                login: None,
                token_endpoint: Some(Arc::new(token_endpoint(config, url)?)),
            };
            // Extensions that break RFC 7628 fail here rather than on every connection.
            let probe = Token::new(crate::sasl::Secret::new("probe"), None).expect("a b64token");
            settings
                .client_with_token(probe)
                .map_err(|e| ConfigError::Unusable {
                    key: "sasl.jaas.config".into(),
                    reason: e.to_string(),
                })?;
            return Ok(Some(settings));
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
        if let Login::ClientCredentials { .. } = login {
            return Err(ConfigError::Missing {
                key: "sasl.oauthbearer.token.endpoint.url".into(),
            });
        }
        let settings = SaslSettings {
            mechanism,
            login: Some(login),
            token_endpoint: None,
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

    /// Whether each exchange needs a token from the application or the token endpoint first.
    pub fn needs_application_token(&self) -> bool {
        self.login.is_none()
    }

    /// An OAUTHBEARER client presenting `token` (from the application or the token
    /// endpoint), with the endpoint's SASL extensions.
    pub fn client_with_token(&self, token: Token) -> Result<Box<dyn SaslClient>, SaslError> {
        match &self.token_endpoint {
            Some(e) if !e.extensions.is_empty() => Ok(Box::new(
                OAuthBearerClient::with_extensions(token, e.extensions.clone())?,
            )),
            _ => Ok(Box::new(OAuthBearerClient::new(token))),
        }
    }
}

/// Java's retriever classes Herald follows.
const RETRIEVERS: [&str; 4] = [
    "DefaultJwtRetriever",
    "ClientCredentialsJwtRetriever",
    "JwtBearerJwtRetriever",
    "FileJwtRetriever",
];

/// The JWT bearer grant, when `sasl.oauthbearer.jwt.retriever.class` names Java's
/// `JwtBearerJwtRetriever`; the `assertion.*` keys are refused for any other retriever
/// rather than left unused.
fn assertion(config: &ProducerConfig) -> Result<Option<Assertion>, ConfigError> {
    const CLASS: &str = "sasl.oauthbearer.jwt.retriever.class";
    let retriever = match &config.sasl_oauthbearer_jwt_retriever_class {
        None => "DefaultJwtRetriever",
        Some(class) => {
            let simple = class.trim().rsplit('.').next().unwrap_or_default();
            let known = class
                .trim()
                .starts_with("org.apache.kafka.common.security.oauthbearer.")
                && RETRIEVERS.contains(&simple);
            if !known {
                return Err(ConfigError::Unsupported {
                    key: CLASS.into(),
                    reason: format!(
                        "a Java class; Herald follows org.apache.kafka.common.security.oauthbearer.{{{}}}",
                        RETRIEVERS.join(", ")
                    ),
                });
            }
            simple
        }
    };
    let c = config;
    let claims = [
        ("iss", &c.sasl_oauthbearer_assertion_claim_iss),
        ("sub", &c.sasl_oauthbearer_assertion_claim_sub),
        ("aud", &c.sasl_oauthbearer_assertion_claim_aud),
    ];
    let files = [
        ("file", &c.sasl_oauthbearer_assertion_file),
        (
            "private.key.file",
            &c.sasl_oauthbearer_assertion_private_key_file,
        ),
        ("template.file", &c.sasl_oauthbearer_assertion_template_file),
    ];
    let set_without = files
        .iter()
        .map(|(name, value)| (format!("sasl.oauthbearer.assertion.{name}"), value))
        .chain(
            claims
                .iter()
                .map(|(name, value)| (format!("sasl.oauthbearer.assertion.claim.{name}"), value)),
        )
        .find(|(_, value)| value.is_some());
    if retriever != "JwtBearerJwtRetriever" {
        if let Some((key, _)) = set_without {
            return Err(ConfigError::Conflict {
                key,
                reason: format!(
                    "is for the JWT bearer grant: set {CLASS}=org.apache.kafka.common.security.oauthbearer.JwtBearerJwtRetriever"
                ),
            });
        }
        return Ok(None);
    }
    let scope = c.sasl_oauthbearer_scope.clone();
    if let Some(file) = &c.sasl_oauthbearer_assertion_file {
        return Ok(Some(Assertion {
            source: AssertionSource::File(file.into()),
            scope,
        }));
    }
    let algorithm = match c.sasl_oauthbearer_assertion_algorithm.trim() {
        "RS256" => AssertionAlgorithm::Rs256,
        "ES256" => AssertionAlgorithm::Es256,
        _ => {
            return Err(ConfigError::Unusable {
                key: "sasl.oauthbearer.assertion.algorithm".into(),
                reason: "expected RS256 or ES256".into(),
            })
        }
    };
    let private_key_file = c
        .sasl_oauthbearer_assertion_private_key_file
        .clone()
        .ok_or_else(|| ConfigError::Missing {
            key: "sasl.oauthbearer.assertion.private.key.file".into(),
        })?;
    let claims = claims
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.as_ref()?.clone().into())))
        .collect();
    Ok(Some(Assertion {
        source: AssertionSource::Signed(AssertionTemplate {
            algorithm,
            private_key_file: private_key_file.into(),
            passphrase: c.sasl_oauthbearer_assertion_private_key_passphrase.clone(),
            template_file: c
                .sasl_oauthbearer_assertion_template_file
                .as_ref()
                .map(Into::into),
            header: serde_json::Map::new(),
            claims,
            exp: c.sasl_oauthbearer_assertion_claim_exp,
            nbf: c.sasl_oauthbearer_assertion_claim_nbf,
            jti: c.sasl_oauthbearer_assertion_claim_jti_include,
        }),
        scope,
    }))
}

/// The token endpoint `url` and what `sasl.jaas.config` and the `sasl.oauthbearer.*` and
/// `sasl.login.*` keys say about asking it.
fn token_endpoint(config: &ProducerConfig, url: &str) -> Result<TokenEndpoint, ConfigError> {
    const KEY: &str = "sasl.oauthbearer.token.endpoint.url";
    let url = EndpointUrl::parse(url).map_err(|reason| ConfigError::Unusable {
        key: KEY.into(),
        reason: reason.into(),
    })?;
    let jaas = |e: JaasError| ConfigError::Unusable {
        key: "sasl.jaas.config".into(),
        reason: e.to_string(),
    };
    let (mut credentials, extensions) = match &config.sasl_jaas_config {
        Some(text) => JaasConfig::parse(text.expose())
            .and_then(|j| j.client_credentials())
            .map_err(jaas)?,
        None => (None, Default::default()),
    };
    // Kafka 4.1's config keys stand in for the JAAS options.
    if credentials.is_none() {
        if let Some(id) = &config.sasl_oauthbearer_client_credentials_client_id {
            credentials = Some(ClientCredentials {
                client_id: id.clone(),
                client_secret: config
                    .sasl_oauthbearer_client_credentials_client_secret
                    .clone()
                    .ok_or_else(|| ConfigError::Missing {
                        key: "sasl.oauthbearer.client.credentials.client.secret".into(),
                    })?,
                scope: None,
            });
        }
    }
    if let Some(c) = credentials.as_mut() {
        c.scope = c
            .scope
            .take()
            .or_else(|| config.sasl_oauthbearer_scope.clone());
    }
    let assertion = assertion(config)?;
    if matches!(url, EndpointUrl::Http { .. }) && credentials.is_none() && assertion.is_none() {
        return Err(ConfigError::Unusable {
            key: "sasl.jaas.config".into(),
            reason: format!(
                "{KEY} is an http(s) URL: OAuthBearerLoginModule needs clientId and clientSecret \
                 (or sasl.oauthbearer.client.credentials.*, or the JWT bearer grant)"
            ),
        });
    }
    for (key, name) in [
        (
            "sasl.oauthbearer.sub.claim.name",
            &config.sasl_oauthbearer_sub_claim_name,
        ),
        (
            "sasl.oauthbearer.scope.claim.name",
            &config.sasl_oauthbearer_scope_claim_name,
        ),
    ] {
        if name.trim().is_empty() {
            return Err(ConfigError::Unusable {
                key: key.into(),
                reason: "must not be empty".into(),
            });
        }
    }
    let endpoint = TokenEndpoint {
        url,
        credentials,
        assertion,
        extensions,
        sub_claim: config.sasl_oauthbearer_sub_claim_name.trim().to_string(),
        scope_claim: config.sasl_oauthbearer_scope_claim_name.trim().to_string(),
        header_urlencode: config.sasl_oauthbearer_header_urlencode,
        connect_timeout: config.sasl_login_connect_timeout,
        read_timeout: config.sasl_login_read_timeout,
        retry_backoff: config.sasl_login_retry_backoff,
        retry_backoff_max: config.sasl_login_retry_backoff_max,
    };
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<SaslSettings>, ConfigError> {
        let mut all = vec![
            ("bootstrap.servers", "b:9092"),
            ("security.protocol", "SASL_SSL"),
        ];
        all.extend_from_slice(pairs);
        let config = ProducerConfig::from_pairs(all)?;
        SaslSettings::from_config(&config, OAuthTokens::FromConfig)
    }

    const OAUTH: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

    /// An unsecured JWS lifetime past what the clock holds fails `start` with an error
    /// naming the key, rather than a panic there and on every connection.
    #[test]
    fn an_unsecured_jws_lifetime_past_the_clock_is_an_error() {
        for seconds in ["18446744073709551615", "10000000000000000000"] {
            let jaas = format!(
                "{OAUTH} required unsecuredLoginStringClaim_sub=admin \
                 unsecuredLoginLifetimeSeconds={seconds};"
            );
            let pairs = [
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.jaas.config", &jaas),
            ];
            let got = std::panic::catch_unwind(|| settings(&pairs));
            let e = got
                .unwrap_or_else(|_| panic!("{seconds} panicked"))
                .unwrap_err();
            assert_eq!(e.key(), Some("sasl.jaas.config"), "{e}");
            assert!(e.to_string().contains("lifetime"), "{e}");
        }
    }

    #[test]
    fn a_token_endpoint_is_read_with_its_credentials_and_settings() {
        let jaas = format!(
            r#"{OAUTH} required clientId=app clientSecret="hunter2" scope=kafka extension_logicalCluster=lkc-1;"#
        );
        let s = settings(&[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", &jaas),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example/token",
            ),
            ("sasl.oauthbearer.sub.claim.name", "client_id"),
            ("sasl.login.retry.backoff.max.ms", "2000"),
        ])
        .unwrap()
        .unwrap();
        assert!(s.needs_application_token());
        let e = s.token_endpoint.as_deref().unwrap();
        let c = e.credentials.as_ref().unwrap();
        assert_eq!(
            (c.client_id.as_str(), c.scope.as_deref()),
            ("app", Some("kafka"))
        );
        assert_eq!(c.client_secret.expose(), "hunter2");
        assert_eq!(
            e.extensions.get("logicalCluster").map(String::as_str),
            Some("lkc-1")
        );
        assert_eq!(e.sub_claim, "client_id");
        assert_eq!(e.retry_backoff_max, std::time::Duration::from_secs(2));
        assert!(!format!("{s:?}").contains("hunter2"));

        // Kafka 4.1's keys for the client credentials and the scope, without JAAS options.
        let s = settings(&[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
            ("sasl.oauthbearer.client.credentials.client.id", "app"),
            (
                "sasl.oauthbearer.client.credentials.client.secret",
                "hunter2",
            ),
            ("sasl.oauthbearer.scope", "kafka"),
        ])
        .unwrap()
        .unwrap();
        let c = s
            .token_endpoint
            .as_deref()
            .unwrap()
            .credentials
            .clone()
            .unwrap();
        assert_eq!(
            (c.client_id.as_str(), c.scope.as_deref()),
            ("app", Some("kafka"))
        );
        assert!(!format!("{s:?}").contains("hunter2"));

        // The JWT bearer grant.
        let s = settings(&[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
            (
                "sasl.oauthbearer.jwt.retriever.class",
                "org.apache.kafka.common.security.oauthbearer.JwtBearerJwtRetriever",
            ),
            ("sasl.oauthbearer.assertion.private.key.file", "/k.pem"),
            (
                "sasl.oauthbearer.assertion.private.key.passphrase",
                "hunter2",
            ),
            ("sasl.oauthbearer.assertion.claim.sub", "svc"),
            ("sasl.oauthbearer.assertion.algorithm", "ES256"),
        ])
        .unwrap()
        .unwrap();
        let a = s
            .token_endpoint
            .as_deref()
            .unwrap()
            .assertion
            .clone()
            .unwrap();
        let AssertionSource::Signed(t) = a.source else {
            panic!("a signed assertion")
        };
        assert_eq!(t.algorithm, AssertionAlgorithm::Es256);
        assert_eq!(t.claims.get("sub"), Some(&"svc".into()));
        assert_eq!(t.exp, std::time::Duration::from_secs(300));
        assert!(!format!("{s:?}").contains("hunter2"));

        // A file: URL needs no credentials, nor a JAAS config.
        let s = settings(&[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.token.endpoint.url", "file:/var/run/token"),
        ])
        .unwrap()
        .unwrap();
        assert!(s.token_endpoint.unwrap().credentials.is_none());
    }

    #[test]
    fn token_endpoint_mistakes_fail_at_start_naming_the_key() {
        let with_id = format!(r#"{OAUTH} required clientId=app clientSecret="hunter2";"#);
        let bad_extension =
            format!(r#"{OAUTH} required clientId=app clientSecret="hunter2" extension_auth=x;"#);
        let unsecured = format!(r#"{OAUTH} required unsecuredLoginStringClaim_sub=me;"#);
        for (pairs, key) in [
            // Client credentials without an endpoint.
            (
                vec![
                    ("sasl.mechanism", "OAUTHBEARER"),
                    ("sasl.jaas.config", with_id.as_str()),
                ],
                "sasl.oauthbearer.token.endpoint.url",
            ),
            // A SASL extension RFC 7628 does not allow (`auth`).
            (
                vec![
                    ("sasl.mechanism", "OAUTHBEARER"),
                    ("sasl.jaas.config", bad_extension.as_str()),
                    ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
                ],
                "sasl.jaas.config",
            ),
            // An http(s) endpoint without client credentials.
            (
                vec![
                    ("sasl.mechanism", "OAUTHBEARER"),
                    ("sasl.jaas.config", unsecured.as_str()),
                    ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
                ],
                "sasl.jaas.config",
            ),
            // An endpoint for another mechanism.
            (
                vec![
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                    ("sasl.jaas.config", with_id.as_str()),
                    ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
                ],
                "sasl.oauthbearer.token.endpoint.url",
            ),
            // A URL that is not one, or carries a password.
            (
                vec![
                    ("sasl.mechanism", "OAUTHBEARER"),
                    ("sasl.jaas.config", with_id.as_str()),
                    (
                        "sasl.oauthbearer.token.endpoint.url",
                        "https://u:hunter2@idp/token",
                    ),
                ],
                "sasl.oauthbearer.token.endpoint.url",
            ),
            (
                vec![
                    ("sasl.mechanism", "OAUTHBEARER"),
                    ("sasl.jaas.config", with_id.as_str()),
                    ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
                    ("sasl.oauthbearer.sub.claim.name", " "),
                ],
                "sasl.oauthbearer.sub.claim.name",
            ),
        ] {
            let e = settings(&pairs).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        // The JWT bearer grant's keys without its retriever, an unknown retriever class, and
        // the grant without a key or with an unknown algorithm.
        let bearer = (
            "sasl.oauthbearer.jwt.retriever.class",
            "org.apache.kafka.common.security.oauthbearer.JwtBearerJwtRetriever",
        );
        let endpoint = ("sasl.oauthbearer.token.endpoint.url", "https://idp/token");
        let oauth = ("sasl.mechanism", "OAUTHBEARER");
        for (pairs, key) in [
            (
                vec![
                    oauth,
                    endpoint,
                    ("sasl.oauthbearer.assertion.claim.iss", "me"),
                ],
                "sasl.oauthbearer.assertion.claim.iss",
            ),
            (
                vec![
                    oauth,
                    endpoint,
                    ("sasl.oauthbearer.jwt.retriever.class", "com.example.R"),
                ],
                "sasl.oauthbearer.jwt.retriever.class",
            ),
            (
                vec![oauth, endpoint, bearer],
                "sasl.oauthbearer.assertion.private.key.file",
            ),
            (
                vec![
                    oauth,
                    endpoint,
                    bearer,
                    ("sasl.oauthbearer.assertion.private.key.file", "/k.pem"),
                    ("sasl.oauthbearer.assertion.algorithm", "HS256"),
                ],
                "sasl.oauthbearer.assertion.algorithm",
            ),
            (
                vec![
                    oauth,
                    endpoint,
                    ("sasl.oauthbearer.client.credentials.client.id", "app"),
                ],
                "sasl.oauthbearer.client.credentials.client.secret",
            ),
        ] {
            let e = settings(&pairs).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
        // Other callback handlers are Java classes.
        assert!(settings(&[("sasl.login.callback.handler.class", "com.example.Handler")]).is_err());
    }
}
